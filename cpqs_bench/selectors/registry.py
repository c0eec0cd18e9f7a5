"""Lazy selector registry: name -> ``"module:Class"``, imported only when used, with did-you-mean on typos.

Sources, later ones overriding earlier: the built-ins below, installed plugins (entry-point group
``cpqs_bench.selectors``), and ``selectors.plugins`` in the experiment config. Adding a selector = one file + one
line here (or one entry point in a plugin package) + passing :mod:`cpqs_bench.testing`'s contract kit.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points

from cpqs_bench.selectors.base import Selector

ENTRY_POINT_GROUP = "cpqs_bench.selectors"

BUILTIN: dict[str, str] = {
    "random": "cpqs_bench.selectors.random:RandomSelector",
    "longest": "cpqs_bench.selectors.longest:LongestSelector",
    "ifd": "cpqs_bench.selectors.ifd:IFDSelector",
    "ifd_ppl": "cpqs_bench.selectors.ifd:IFDPerplexitySelector",
    "superfiltering": "cpqs_bench.selectors.superfiltering:SuperfilteringSelector",
    "cpqs": "cpqs_bench.selectors.cpqs.selector:CPQSSelector",
    "perplexity": "cpqs_bench.selectors.perplexity:PerplexitySelector",
    "kcenter": "cpqs_bench.selectors.diversity:KCenterSelector",
    "facility_location": "cpqs_bench.selectors.diversity:FacilityLocationSelector",
    "alpagasus": "cpqs_bench.selectors.alpagasus:AlpaGasusSelector",
    "mods": "cpqs_bench.selectors.mods:MoDSSelector",
    "rds": "cpqs_bench.selectors.rds:RDSSelector",
    "reward": "cpqs_bench.selectors.reward:RewardSelector",
    "external": "cpqs_bench.selectors.external:ExternalSelector",
    "less": "cpqs_bench.selectors.less:LESSSelector",
    "deita": "cpqs_bench.selectors.deita:DEITASelector",
}


class UnknownSelector(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def available(extra: dict[str, str] | None = None) -> dict[str, str]:
    names = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        names[ep.name] = ep.value
    names.update(extra or {})
    return names


def resolve(name: str, extra: dict[str, str] | None = None) -> str:
    """``"module:Class"`` of ``name``; for a composed ``BASE+STEP`` the base's target followed by ``+STEP``."""
    if "+" in name:
        from cpqs_bench.selectors.diversity import STEPS

        base, _, step = name.partition("+")
        if step not in STEPS:
            raise UnknownSelector(f"unknown diversity step {step!r} in {name!r}; use one of {', '.join(STEPS)}")
        return f"{resolve(base, extra)}+{step}"
    names = available(extra)
    if name in names:
        return names[name]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownSelector(f"unknown selector {name!r}.{hint} Available: {', '.join(sorted(names))}")


def load_class(target: str) -> type:
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"selector target {target!r} must be 'module:Class'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"{module_name} has no attribute {attr!r} (selector target {target!r})") from None


def get(name: str, extra: dict[str, str] | None = None, **kwargs: object) -> Selector:
    """Instantiate the selector registered as ``name``; ``"BASE+STEP"`` (e.g. ``superfiltering+facility_location``)
    is BASE's scores followed by a diversity step (:class:`cpqs_bench.selectors.diversity.Composed`)."""
    if "+" in name:
        from cpqs_bench.selectors.diversity import Composed

        base, _, step = name.partition("+")
        return Composed(get(base, extra, **kwargs), step)
    cls = load_class(resolve(name, extra))
    selector = cls(**kwargs)
    if not isinstance(selector, Selector):
        raise TypeError(
            f"{name!r} ({cls.__module__}.{cls.__qualname__}) does not implement the Selector protocol "
            "(name, needs, score(examples, ctx))"
        )
    return selector
