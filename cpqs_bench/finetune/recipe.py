"""The frozen training recipe of an experiment and its hash: arms may differ in their data and seed, nothing else.

``recipe(cfg, precision=..., model_revision=...)`` collects everything that changes what a fine-tuned adapter is,
*except* the selection and the seed: the finetune section (minus purely operational keys such as checkpoint
cadence), the prompt section (template, system prompt, end-of-turn policy, length policy), the base model id and its
resolved revision, the transformers and peft versions, and the resolved precision ("auto" is resolved first, so an
arm trained in bf16 and one in fp32 never share a hash). ``recipe_hash`` is a stable hash of that mapping. Every arm's manifest carries both, and
:func:`check_same_recipe` refuses to let arms with different recipes meet in one comparison.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Protocol

from cpqs_bench.config import to_dict
from cpqs_bench.io import stable_hash

if TYPE_CHECKING:
    from cpqs_bench.config import ModelConfig, PromptConfig
    from cpqs_bench.finetune.config import FinetuneConfig


class RecipeSections(Protocol):
    """The config sections the recipe is made of: a whole :class:`cpqs_bench.config.Config` or the sections an arm's
    training gets (:class:`cpqs_bench.finetune.sft.ArmConfig`)."""

    @property
    def model(self) -> ModelConfig: ...

    @property
    def prompt(self) -> PromptConfig: ...

    @property
    def finetune(self) -> FinetuneConfig: ...


# Keys of the finetune section that do not change the trained adapter.
OPERATIONAL_KEYS = frozenset(
    {
        "save_steps",
        "save_interval_s",
        "save_total_limit",
        "logging_steps",
        "merge",
        "measure_train_loss",
        "keep_checkpoints",
        "precision",
    }
)  # precision enters resolved, below


class RecipeMismatch(ValueError):
    """Arms trained with different recipes: comparing them would confound the data with the recipe."""


def recipe(cfg: RecipeSections, *, precision: str, model_revision: str | None) -> dict[str, Any]:
    """The recipe mapping for a resolved :class:`cpqs_bench.config.Config` (its model, prompt and finetune
    sections)."""
    ft = {k: v for k, v in to_dict(cfg.finetune).items() if k not in OPERATIONAL_KEYS}
    if not ft.get("packing"):
        ft.pop("packing", None)  # padded = the recipe as it was before finetune.packing existed (same hash)
    return {
        "finetune": ft,
        "precision": precision,
        "prompt": to_dict(cfg.prompt),
        "model": {"id": cfg.model.id, "revision": model_revision},
        "versions": library_versions(),
    }


def library_versions() -> dict[str, str | None]:
    """Versions that change what the same recipe trains (optimizer, scheduler, LoRA layers): part of the hash."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("transformers", "peft"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def recipe_hash(rec: Mapping[str, Any]) -> str:
    return stable_hash(dict(rec), length=16)


def _load(m: Mapping[str, Any] | str | Path) -> tuple[str, Mapping[str, Any]]:
    if isinstance(m, Mapping):
        return str(m.get("arm") or m.get("out") or "?"), m
    path = Path(m)
    if path.is_dir():  # an arm folder: its training record (sft.TRAINING_RECORD; not imported: sft is heavier)
        path = path / "training.json"
    with open(path, encoding="utf-8") as fh:
        return str(path), json.load(fh)


def _diff(a: object, b: object, prefix: str = "") -> list[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [f"{prefix}: {a!r} != {b!r}"]


def check_same_recipe(manifests: Iterable[Mapping[str, Any] | str | Path]) -> str:
    """Return the shared recipe hash, or raise :class:`RecipeMismatch` naming the arms and the differing keys.

    Accepts manifest / training-record dicts or paths, or arm directories (their ``training.json``). A manifest
    without ``recipe_hash`` is refused (an arm of unknown recipe cannot be compared).
    """
    loaded = [_load(m) for m in manifests]
    if not loaded:
        raise ValueError("check_same_recipe: no manifests")
    for name, m in loaded:
        if not m.get("recipe_hash"):
            raise RecipeMismatch(f"{name}: manifest has no recipe_hash (not a fine-tuned arm, or an old format)")
    ref_name, ref = loaded[0]
    for name, m in loaded[1:]:
        if m["recipe_hash"] != ref["recipe_hash"]:
            details = _diff(ref.get("recipe"), m.get("recipe")) if ref.get("recipe") and m.get("recipe") else []
            shown = "; ".join(details[:8]) or "recipes not recorded"
            raise RecipeMismatch(
                f"arms trained with different recipes: {ref_name} ({ref['recipe_hash']}) vs {name} "
                f"({m['recipe_hash']}): {shown}"
            )
    return str(ref["recipe_hash"])
