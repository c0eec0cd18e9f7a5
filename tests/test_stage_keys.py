"""A step's stage key is built from the config sections it declares (``sections``, through
:func:`cpqs_bench.stages.common.section_key`) and nothing else of the config (issue #31): for every step kind of a
small plan, changing a field outside its sections (or one of them it ``drop``s, and outside the fields its derived
key parts read, ``reads``) leaves the key as it was, and changing any keyed field inside them changes it. No stage runs: the upstream steps get
stand-in outputs with fixed content keys."""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, get_args, get_origin

import pytest

from cpqs_bench.config import Config, load_config
from cpqs_bench.data.example import Example
from cpqs_bench.io import stable_hash
from cpqs_bench.reproduce import plan
from cpqs_bench.stages import select as select_stage
from cpqs_bench.stages.common import NOT_KEYED, section_key

OVERRIDES = [
    "selectors.names=[random,longest,ifd,cpqs,random~cpqs,mods,less,random@tokens:cpqs]",
    "selectors.bottom_arms=[ifd]",
    "evaluate.pairwise.sets=[vicuna]",
]


def _leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted path, value, annotation) of every non-section field under ``obj``."""
    out = []
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out += _leaves(value, path + ".")
        else:
            out.append((path, value, hints[f.name]))
    return out


def _changed(value: Any, tp: Any) -> Any:
    """Another valid value of a probe-able field (bool, int, float, a Literal choice); None: not probed."""
    if get_origin(tp) is Literal:
        others = [c for c in get_args(tp) if c != value]
        return others[0] if others else None
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.5
    return None


def _with(cfg: Any, path: str, value: Any) -> Any:
    head, _, rest = path.partition(".")
    return dataclasses.replace(cfg, **{head: _with(getattr(cfg, head), rest, value) if rest else value})


def _under(path: str, prefixes: typing.Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def _keyed(path: str, sections: tuple[str, ...], drop: typing.Mapping[str, tuple[str, ...]]) -> bool:
    """``path`` is keyed by ``section_key(cfg, sections, drop=drop)``: inside a declared section, neither a NOT_KEYED
    field nor one the step drops."""
    for sec in sections:
        unkeyed = (*NOT_KEYED.get(sec, ()), *drop.get(sec, ()))
        if _under(path, [sec]) and not _under(path, [f"{sec}.{k}" for k in unkeyed]):
            return True
    return False


def _kind(step: object) -> str:
    """The step class of :mod:`cpqs_bench.stages` a planned step is (reproduce subclasses EvaluateStep)."""
    return next(c.__name__ for c in type(step).__mro__ if c.__module__.startswith("cpqs_bench.stages."))


@pytest.fixture(scope="module")
def steps(mirror: Path) -> tuple[Config, dict[str, Any]]:
    cfg = load_config("smoke", OVERRIDES)
    p = plan(cfg, Path("runs"), None, log=lambda s: None)
    ex = [Example(id="e0", prompt=({"role": "user", "content": "hi"},), response="yo")]
    for s in p.steps:
        s.output = SimpleNamespace(
            key=f"k-{getattr(s, 'name', s.label)}",
            path=Path("/nonexistent"),
            examples=ex,
            pairs_pool=ex,
            info={"coverage_key": "cov", "n_seed": 1},
            summary={},
            sha256="sha",
            arm=getattr(s, "arm", None),
            seed=getattr(s, "seed", None),
        )
    kinds: dict[str, Any] = {}
    for s in p.steps:  # one step of each kind, a seed-independent one where there is one
        if not hasattr(s, "inputs"):  # pipeline.Always: no stage directory, no key
            continue
        kind = _kind(s)
        if kind not in kinds or getattr(s, "seed", 0) is None:
            kinds[kind] = s
    return cfg, kinds


@pytest.fixture(autouse=True)
def _token_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    # the pool's token counts are a content key (counted with the tokenizer from the pool); stand in for them
    monkeypatch.setattr(select_stage.PoolTokens, "key", lambda self, what: f"tokens-{what}")


def _key(step: Any, cfg: Config) -> str:
    s = copy.copy(step)
    s.cfg = cfg
    return stable_hash(s.inputs())


def test_plan_has_every_step_kind(steps: tuple[Config, dict[str, Any]]) -> None:
    _, kinds = steps
    expected = {"DataStep", "NegativesStep", "TrainSelectorStep", "ScoreStep", "ModsCoverageStep", "ModsScoreStep"}
    expected |= {"SelectStep", "ControlStep", "ContaminationStep", "FinetuneStep", "EvaluateStep", "ValidateStep"}
    expected |= {"AnswersStep", "JudgeStep", "LessWarmupStep"}
    assert expected <= set(kinds)
    for name, step in kinds.items():
        assert isinstance(type(step).sections, tuple), f"{name} declares no config sections"


def test_key_follows_declared_sections_only(steps: tuple[Config, dict[str, Any]]) -> None:
    cfg, kinds = steps
    probes = [(p, _changed(v, tp)) for p, v, tp in _leaves(cfg)]
    probes = [(p, v) for p, v in probes if v is not None]
    wrong: list[str] = []
    for name, step in kinds.items():
        sections, reads = type(step).sections, getattr(type(step), "reads", ())
        drop = getattr(type(step), "drop", {})
        base = _key(step, cfg)
        inside = outside = 0
        for path, value in probes:
            changed = _key(step, _with(cfg, path, value)) != base
            if _keyed(path, sections, drop):
                inside += 1
                if not changed:
                    wrong.append(f"{name}: {path} is in its sections {sections} but the key ignores it")
            elif not _under(path, reads):
                outside += 1
                if changed:
                    wrong.append(f"{name}: {path} is outside its sections {sections} but changes the key")
        assert outside > 0 and (inside > 0 or not sections), (name, inside, outside)
    assert not wrong, "\n".join(wrong)


def test_section_key_names_sections_and_drops_unkeyed_fields() -> None:
    cfg = Config()
    key = section_key(cfg, ("model", "selectors.cpqs", "evaluate"), names={"model": "target"})
    assert set(key) == {"target", "cpqs", "evaluate"}
    assert key["target"]["id"] == cfg.model.id and "pairwise" not in key["evaluate"]
    assert "n_pairs" not in section_key(cfg, ("selectors.cpqs",), drop={"selectors.cpqs": ("n_pairs",)})["cpqs"]
    with pytest.raises(KeyError, match="no config section 'modle'"):
        section_key(cfg, ("modle",))
    with pytest.raises(KeyError, match="is a config field"):
        section_key(cfg, ("model.id",))
