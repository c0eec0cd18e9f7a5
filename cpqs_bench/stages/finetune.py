"""The finetune stage: one arm × seed under the frozen LoRA recipe (:func:`cpqs_bench.finetune.sft.finetune_arm`).

The adapter goes to ``<stage>/adapter``; the arm's training record is in the stage manifest (``recipe_hash``, loss,
tokens); the executor writes the manifest and ``DONE``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpqs_bench.config import Config, to_dict
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.artifacts import AdapterArtifact, folder_key
from cpqs_bench.stages.common import log_numbers

ADAPTER = "adapter"
_MANIFEST_KEYS = (
    "recipe_hash",
    "train_loss",
    "train_data_loss",
    "training",
    "n_examples",
    "trained_tokens",
    "supervised_tokens",
    "optimizer_steps",
    "model_id",
    "model_revision",
    "seconds_train",
)


@dataclass
class FinetuneStep:
    cfg: Config
    arm: str
    seed: int
    pool: Any  # provider of the PoolArtifact the selection indexes
    selection: Any  # provider of a SelectionArtifact (anything with ``.path`` and ``.key``)
    loader: Any = None
    merge: bool | None = None
    progress_bar: bool = True
    empty_ok: bool = False  # an empty selection gives no adapter (MoDS's seed set) instead of an error
    code: Sequence[str] = ("cpqs_bench.finetune.sft", "cpqs_bench.stages.finetune")
    files: Sequence[Path] = ()
    track: bool = True
    output: AdapterArtifact | None = None

    def __post_init__(self) -> None:
        self.name = f"finetune/{self.arm}-s{self.seed}"
        self.label = f"finetune {self.arm} seed {self.seed}"

    def inputs(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "seed": self.seed,
            "selection": self.selection.output.key,
            "finetune": to_dict(self.cfg.finetune),
            "model": to_dict(self.cfg.model),
            "prompt": to_dict(self.cfg.prompt),
            "pool": self.pool.output.key,
        }

    def _empty(self) -> bool:
        from cpqs_bench.io import read_jsonl

        return self.empty_ok and not any(r.get("kept") for r in read_jsonl(self.selection.output.path))

    def run(self, st: Stage, tracker: Any) -> dict[str, Any]:
        from cpqs_bench.finetune.sft import finetune_arm

        if self._empty():
            return {"arm": self.arm, "seed": self.seed, "adapter": None, "recipe_hash": None}
        manifest = finetune_arm(
            self.cfg,
            Path(self.selection.output.path),
            self.pool.output.examples,
            st.path / ADAPTER,
            seed=self.seed,
            arm=self.arm,
            loader=self.loader,
            merge=self.merge,
            progress_bar=self.progress_bar,
            pool_summary=self.pool.output.summary or None,
        )
        log_numbers(tracker, manifest)
        return {"arm": self.arm, "seed": self.seed, **{k: manifest[k] for k in _MANIFEST_KEYS if k in manifest}}

    def collect(self, st: Stage) -> AdapterArtifact:
        m = st.manifest()
        path = st.path / ADAPTER
        if m.get("recipe_hash") is None and not path.exists():
            return AdapterArtifact(None, None, self.arm, self.seed, None)
        return AdapterArtifact(path, folder_key(path), self.arm, self.seed, m.get("recipe_hash"))
