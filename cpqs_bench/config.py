"""Typed experiment configuration: frozen dataclasses, YAML presets, ``key=value`` overrides, a stable hash.

Each stage owns its section dataclass beside its code (TRL style: a Config next to its Trainer); this module
composes them into :class:`Config` and provides the generic machinery:

* ``load_config("smoke", ["finetune.lr=1e-4"])`` — a preset name (``cpqs_bench/configs/<name>.yaml``) or a path, plus overrides;
* unknown keys are rejected with a did-you-mean; values are type-checked against the dataclass annotations;
* ``config_hash(cfg)`` — sha256 over the resolved values (key order independent); ``to_dict``/``to_yaml`` print it.

Safety at load (issue #34): presets are parsed by :class:`NoAliasLoader` (PyYAML's safe loader that refuses anchors
and aliases, so a "billion laughs" document is refused at its first ``&anchor`` with ``file:line`` instead of being
expanded), and :func:`validate` checks the settings' meaning before any stage runs (budget, seeds, names used as
path segments, sizes), naming the key. Checks that need the pool (a budget larger than the pool) are in
:func:`validate_against_pool`, for the caller that has read the pool. Every ``*_env`` key of the config (the judges'
``api_key_env``) is registered with the one secret scrubber (:mod:`cpqs_bench.provenance`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from cpqs_bench import provenance, resources
from cpqs_bench.evaluate.config import EvaluateConfig
from cpqs_bench.finetune.config import FinetuneConfig
from cpqs_bench.io import stable_hash
from cpqs_bench.publish.config import PublishConfig
from cpqs_bench.selectors.config import SelectorsConfig

CONFIG_DIR = resources.CONFIGS_DIR


_Section = TypeVar("_Section")  # Config or one of its section dataclasses


class ConfigError(ValueError):
    """A preset or override that does not fit the schema (unknown key, wrong type)."""


# --------------------------------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "smoke"
    seeds: tuple[int, ...] = (0,)
    output_dir: str = "runs"
    description: str = ""


@dataclass(frozen=True)
class ModelConfig:
    id: str = "embedded"  # "embedded" | Hub id "owner/name" | local directory
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"


@dataclass(frozen=True)
class PromptConfig:
    template: str = "chat"  # "chat" (tokenizer's chat template) | "alpaca" | "none" | "llama2"
    system_prompt: str | None = None  # None: whatever the chat template does by default
    train_eot: bool = True  # the end-of-turn token after the answer is part of the response span
    max_length: int = 2048
    overflow: Literal["truncate", "drop"] = "truncate"  # response tail truncated, or example dropped (counted)


@dataclass(frozen=True)
class DataConfig:
    mirror: str | None = None  # local mirror directory for named datasets (env CPQS_DATA_MIRROR wins if unset)
    pool: str = "alpaca_gpt4"  # named dataset, file path, or "hf:owner/name[:config][@revision][#split]"
    pool_limit: int | None = None
    pool_offset: int = 0
    schema: str | None = None  # None = detect
    field_map: dict[str, str] = field(default_factory=dict)
    max_rejected_fraction: float = 0.05
    # contamination: n-gram overlap of the pool with every evaluation task; drop = remove overlapping pool rows
    decontaminate: Literal["report", "drop"] = "report"
    contamination_n: int = 13
    # a record (one JSONL line, or one row of a JSON / Parquet / Hub pool) larger than this is quarantined with its
    # file:line (reason "record_too_large") instead of being read, scored and picked as the "longest" example
    max_record_bytes: int = 1_000_000


@dataclass(frozen=True)
class ValidateConfig:
    """Selector validity tracks (``cpqs-bench validate`` and the ``validate`` stage of ``reproduce``)."""

    enabled: bool = False
    tracks: tuple[str, ...] = ("planted", "pairs")
    clean: str = "alpaca_gpt4"  # clean pool the planted track corrupts (strong-model answers)
    math_pool: str = "gsm8k_train"  # rows for the math kind (a chain of thought with a wrong final number)
    code_pool: str = "codealpaca"  # rows for the code kind (a solution with an injected bug)
    n_clean: int = 300
    kinds: tuple[str, ...] = ()  # defect kinds (empty: every registered kind)
    n_planted_per_kind: int = 40
    pairs_strong: str = "gpt4"  # alpaca_eval generator names: stronger vs weaker answers to the same prompts
    pairs_weak: str = "alpaca-7b"
    n_pairs: int = 200
    n_boot: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class LeaderboardConfig:
    references: tuple[str, ...] = ("random",)  # arms the delta columns compare against; the first is the default
    out_dir: str | None = None  # also write the pages here (e.g. the tracked leaderboards/); None = the run dir only


@dataclass(frozen=True)
class Config:
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    data: DataConfig = field(default_factory=DataConfig)
    selectors: SelectorsConfig = field(default_factory=SelectorsConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    leaderboard: LeaderboardConfig = field(default_factory=LeaderboardConfig)


# ---------------------------------------------------------------------------------------------------- conversion
def _type_name(tp: object) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: object, tp: object, where: str) -> Any:
    """Check ``value`` against annotation ``tp`` (after YAML parsing) and convert lists to tuples where declared."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}")
    if origin is Literal:
        if value not in get_args(tp):
            close = difflib.get_close_matches(str(value), [str(a) for a in get_args(tp)], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}.{hint}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return build(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        k_tp, v_tp = get_args(tp) or (Any, Any)
        return {_coerce(k, k_tp, where): _coerce(v, v_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a mapping, rejecting unknown keys with a did-you-mean."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" Did you mean {(where + '.' if where else '') + close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {path!r}.{hint} Valid keys here: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def to_dict(obj: object) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def to_yaml(obj: object) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True)


def config_hash(obj: object) -> str:
    """Stable hash of resolved values (dict order and list/tuple spelling do not matter)."""
    return stable_hash(to_dict(obj))


# ------------------------------------------------------------------------------------------------------- loading
def preset_path(preset: str | os.PathLike) -> Path:
    return resources.config_path(preset)  # a preset name, a file, or the old configs/<name>.yaml


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value (e.g. finetune.lr=1e-4)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = safe_load_yaml(raw, f"override {key}") if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
    if isinstance(value, str) and _looks_float(value):  # YAML 1.1 reads "1e-4" as a string
        value = float(value)
    return key.split("."), value


class NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors (``&a``) and aliases (``*a``) where the composer meets them, before any
    node is built or expanded: a config never needs them, and an alias bomb would otherwise expand exponentially."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            mark = event.start_mark
            raise ConfigError(
                f"{mark.name}:{mark.line + 1}: YAML {kind}{event.anchor} is not allowed in a config "
                "(anchors and aliases are refused; write the value out)"
            )
        return super().compose_node(parent, index)


def safe_load_yaml(stream: str | IO[str], name: str | None = None) -> Any:
    """``yaml.safe_load`` without anchors/aliases; ``name`` is the file named in errors."""
    loader = NoAliasLoader(stream)
    if name is not None:
        loader.name = name
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _looks_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return any(c in text.lower() for c in ".e") and text.strip().lower() not in ("nan", "inf", "-inf")


def _fix_floats(obj: object) -> Any:
    if isinstance(obj, dict):
        return {k: _fix_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fix_floats(v) for v in obj]
    if isinstance(obj, str) and _looks_float(obj):
        return float(obj)
    return obj


def _set(tree: dict[str, Any], keys: list[str], value: object) -> None:
    node = tree
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {'.'.join(keys)}: {k!r} is not a section")
        node = nxt
    node[keys[-1]] = value


def load_config(preset: str | os.PathLike | None = "smoke", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Resolve a preset plus ``key=value`` overrides into a frozen :class:`Config`."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if preset is not None:
        path = preset_path(preset)
        source = str(path)
        with open(path, encoding="utf-8") as fh:
            try:
                loaded = safe_load_yaml(fh, str(path)) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        raw = _fix_floats(loaded)
    try:
        build(Config, raw)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    for item in overrides:
        keys, value = parse_override(item)
        _set(raw, keys, value)
    try:
        cfg = build(Config, raw)
    except ConfigError as exc:
        raise ConfigError(f"override ({' '.join(overrides)}): {exc}") from None
    try:
        validate(cfg)
    except ConfigError as exc:
        where = f"{source}" + (f" + overrides ({' '.join(overrides)})" if overrides else "")
        raise ConfigError(f"{where}: {exc}") from None
    provenance.register_config_secrets(cfg)
    return cfg


def replace(cfg: _Section, **changes: object) -> _Section:
    """``dataclasses.replace`` that accepts dotted keys: ``replace(cfg, **{"finetune.lr": 1e-4})``."""
    tree = to_dict(cfg)
    for dotted, value in changes.items():
        _set(tree, dotted.split("."), value)
    return build(type(cfg), tree)


# ---------------------------------------------------------------------------------------------------- validation
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+:=~@-]*$")


def check_segment(value: str, key: str) -> None:
    """``value`` is used as one path segment (a folder name): no separator, no ``..``, no control characters."""
    if not isinstance(value, str) or not value or len(value) > 128 or not _SEGMENT.match(value) or ".." in value:
        raise ConfigError(
            f"{key}={value!r} is not safe as a folder name: use letters, digits and . _ - + : = ~ @ "
            "(no '/', no '..', not starting with '.' or '-', at most 128 characters)"
        )


def check_amount(value: float, key: str, what: str = "examples") -> None:
    """A budget-like amount: a fraction in (0, 1] of the pool, or a whole count >= 1 (1.5 is neither)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be > 0: a fraction in (0, 1] of the pool or a count of {what} >= 1")
    if value > 1 and value != int(value):
        raise ConfigError(
            f"{key}={value!r} is neither a fraction in (0, 1] nor a whole count of {what} (a value above 1 is a count)"
        )


def _positive(value: object, key: str, *, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


def validate(cfg: Config) -> None:
    """Check what the types cannot: meaning and ranges, naming the key. Raises :class:`ConfigError` on the first
    problem. Called by :func:`load_config`; call it after building a ``Config`` any other way."""
    exp = cfg.experiment
    check_segment(exp.name, "experiment.name")
    if not exp.seeds:
        raise ConfigError("experiment.seeds=[] is empty: give at least one seed, e.g. experiment.seeds=[0]")
    if len(set(exp.seeds)) != len(exp.seeds):
        raise ConfigError(f"experiment.seeds={list(exp.seeds)} repeats a seed")
    if not exp.output_dir or "\0" in exp.output_dir:
        raise ConfigError(f"experiment.output_dir={exp.output_dir!r} must be a directory path")
    sel = cfg.selectors
    unit = "tokens" if sel.budget_unit == "tokens" else "examples"
    check_amount(sel.budget, "selectors.budget", unit)
    check_amount(sel.pre_fraction, "selectors.pre_fraction")
    check_amount(sel.mods.seed_count, "selectors.mods.seed_count")
    if not sel.names:
        raise ConfigError("selectors.names=[] is empty: name at least one selector, e.g. selectors.names=[random]")
    for i, name in enumerate(sel.names):
        check_segment(name, f"selectors.names[{i}]")
    if len(set(sel.names)) != len(sel.names):
        raise ConfigError(f"selectors.names={list(sel.names)} repeats a selector")
    if sel.external.label is not None:
        check_segment(sel.external.label, "selectors.external.label")
    pw = cfg.evaluate.pairwise
    if pw.enabled and pw.reference == "full" and not sel.full_arm:
        raise ConfigError(
            "evaluate.pairwise.reference=full but selectors.full_arm=false: there is no full arm to compare with "
            "(set evaluate.pairwise.reference=base, or selectors.full_arm=true)"
        )
    data = cfg.data
    if not 0 <= data.max_rejected_fraction <= 1:
        raise ConfigError(f"data.max_rejected_fraction={data.max_rejected_fraction!r} must be in [0, 1]")
    _positive(data.pool_limit, "data.pool_limit", allow_none=True)
    _positive(data.pool_offset, "data.pool_offset", allow_zero=True)
    _positive(data.max_record_bytes, "data.max_record_bytes")
    _positive(data.contamination_n, "data.contamination_n")
    _positive(cfg.prompt.max_length, "prompt.max_length")
    ft = cfg.finetune
    for key in ("lr", "epochs", "batch_size", "micro_batch_size", "max_length", "lora_r"):
        _positive(getattr(ft, key), f"finetune.{key}")
    if ft.batch_size % ft.micro_batch_size:
        raise ConfigError(
            f"finetune.batch_size={ft.batch_size} is not a multiple of finetune.micro_batch_size={ft.micro_batch_size}"
        )
    if not 0 <= ft.warmup_ratio < 1:
        raise ConfigError(f"finetune.warmup_ratio={ft.warmup_ratio!r} must be in [0, 1)")
    for where, judge in (("selectors.judge", sel.judge), ("evaluate.judge", getattr(cfg.evaluate, "judge", None))):
        if judge is None:
            continue
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", judge.api_key_env or ""):
            raise ConfigError(f"{where}.api_key_env={judge.api_key_env!r} must be the NAME of an environment variable")
        for key in ("timeout_s", "concurrency", "batch_size", "max_new_tokens"):
            _positive(getattr(judge, key), f"{where}.{key}")
        _positive(judge.max_retries, f"{where}.max_retries", allow_zero=True)
    pub = cfg.publish
    _positive(getattr(pub, "timeout_s", 1.0), "publish.timeout_s")
    _positive(getattr(pub, "max_retries", 0), "publish.max_retries", allow_zero=True)


def validate_against_pool(cfg: Config, n_examples: int) -> int:
    """The budget checked against the pool it selects from (call it once the pool is read, before scoring):
    a count larger than the pool is refused, naming the key. Returns the number of examples an arm keeps
    (``budget_unit=tokens``: the pool size is not the limit, so only the pool's emptiness is checked)."""
    sel = cfg.selectors
    check_amount(sel.budget, "selectors.budget")
    if n_examples <= 0:
        raise ConfigError("the pool is empty: nothing to select from")
    if sel.budget_unit == "tokens":
        return n_examples
    if sel.budget >= 1:  # a count, as cpqs_bench.select.budget_count reads it
        k = int(sel.budget)
        if k > n_examples:
            raise ConfigError(
                f"selectors.budget={k} is larger than the pool ({n_examples} examples): every arm would be the "
                f"whole pool; lower selectors.budget or give a fraction such as 0.05"
            )
        return k
    return max(1, int(round(sel.budget * n_examples)))


def experiment_dir(cfg: Config) -> Path:
    """``experiment.output_dir / experiment.name``, refused unless it lies inside the output dir (the name is one
    path segment; this is the last check before anything is written)."""
    check_segment(cfg.experiment.name, "experiment.name")
    root = Path(cfg.experiment.output_dir).resolve()
    out = (root / cfg.experiment.name).resolve()
    if out.parent != root:
        raise ConfigError(f"experiment.name={cfg.experiment.name!r} resolves to {out}, outside {root}")
    return out
