"""Small helpers the step modules share, and the one function that builds a step's config part of its stage key."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from cpqs_bench.config import Config, to_dict

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Provides(Protocol[T_co]):
    """An upstream provider of a step: a step of the same pipeline (its ``output`` set once it has run or been
    verified) or :class:`cpqs_bench.pipeline.Given` for an artifact a verb read at the edge."""

    @property
    def output(self) -> T_co: ...


class StageNotRun(RuntimeError):
    """A step's output read before the executor ran (or verified) its stage."""


class Produces(Generic[T]):
    """A step's artifact: set by the executor once the stage is finished (or verified), typed for the steps
    downstream (``Provides[T]``); reading it earlier is an error naming the step, not a ``None`` passed on."""

    _output: T | None = None

    @property
    def output(self) -> T:
        if self._output is None:
            raise StageNotRun(f"{getattr(self, 'name', type(self).__name__)}: output read before the stage ran")
        return self._output

    @output.setter
    def output(self, value: T) -> None:
        self._output = value


class MetricsTracker(Protocol):
    """What a stage logs to (``cpqs_bench.publish.tracking.Tracker``; ``None`` when tracking is off)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...


# What no stage's outputs depend on, per config section: dropped from the key wherever a step declares the section.
#   selectors: which selectors run, the budget, the bottom arms and the full arm decide which stages exist, not what a
#     score is
#   evaluate.pairwise: the pairwise judge evaluation has stages of its own (answers, judge); turning it on or off
#     leaves every lm-eval stage's key as it was
NOT_KEYED: dict[str, tuple[str, ...]] = {
    "selectors": ("names", "budget", "budget_unit", "bottom_arms", "full_arm"),
    "evaluate": ("pairwise",),
}


def section_of(cfg: Config, path: str) -> object:
    """The config section at dotted ``path`` (``"model"``, ``"selectors.cpqs"``); a clear error for a wrong name."""
    obj: object = cfg
    for part in path.split("."):
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            raise KeyError(f"no config section {path!r} (at {part!r})")
        obj = getattr(obj, part)
    if not dataclasses.is_dataclass(obj):
        raise KeyError(f"{path!r} is a config field, not a section")
    return obj


def section_key(
    cfg: Config,
    sections: Sequence[str],
    *,
    drop: Mapping[str, Collection[str]] | None = None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The config part of a step's stage key: every field of each section in ``sections`` (dotted paths, keyed by
    their last component unless ``names`` renames one) but the :data:`NOT_KEYED` ones and those ``drop`` names for
    that section (a step whose outputs do not depend on them).

    Each step class declares ``sections`` (the config sections its key holds whole, through this function), where
    its outputs do not depend on some fields of a section, ``drop`` (passed on here: section -> those fields) and,
    where other parts of its key read single config fields (a derived setting, a file's content), ``reads`` (those
    fields' dotted paths); ``tests/test_stage_keys.py`` checks that no other config field changes a step's key."""
    out: dict[str, Any] = {}
    for path in sections:
        values = to_dict(section_of(cfg, path))
        for key in (*NOT_KEYED.get(path, ()), *((drop or {}).get(path, ()))):
            values.pop(key, None)
        name = (names or {}).get(path, path.rsplit(".", 1)[-1])
        if name in out:
            raise ValueError(f"two sections keyed {name!r} in {list(sections)}")
        out[name] = values
    return out


def log_numbers(tracker: MetricsTracker | None, values: Mapping[str, Any], prefix: str = "") -> None:
    """Log the numeric fields of ``values`` to a stage's tracker (none when tracking is off)."""
    if tracker is None:
        return
    tracker.log_metrics(
        {f"{prefix}{k}": v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    )


def seed_suffix(seed: int | None) -> str:
    return "" if seed is None else f"-s{seed}"


def seed_label(seed: int | None) -> str:
    return "" if seed is None else f" seed {seed}"
