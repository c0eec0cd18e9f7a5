"""The finetune stage: one arm × seed under the frozen LoRA recipe (:func:`cpqs_bench.finetune.sft.finetune_arm`).

The adapter goes to ``<stage>/adapter``; the arm's training record is in the stage manifest (``recipe_hash``, loss,
tokens); the executor writes the manifest and ``DONE``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cpqs_bench.config import Config
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.artifacts import AdapterArtifact, folder_key
from cpqs_bench.stages.common import Produces, log_numbers, section_key

if TYPE_CHECKING:
    from cpqs_bench.publish.tracking import Tracker
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.stages.artifacts import FileArtifact, PoolArtifact, SelectionArtifact
    from cpqs_bench.stages.common import Provides


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


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def training_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    """What every arm reports about its training data: examples, trained / supervised tokens over every epoch (the
    Trainer's own input-token count where it has one), optimizer steps."""
    data, tr = manifest.get("data") or {}, manifest.get("training") or {}
    epochs = float(tr.get("epochs") or 0.0)
    trained = tr.get("total_input_tokens") or round((data.get("tokens") or 0) * epochs)
    return {
        "n_examples": (manifest.get("selection") or {}).get("kept"),
        "trained_tokens": int(trained),
        "supervised_tokens": round((data.get("supervised_tokens") or 0) * epochs),
        "optimizer_steps": tr.get("global_steps"),
    }


@dataclass
class FinetuneStep(Produces[AdapterArtifact]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ("finetune", "model", "prompt")
    arm: str
    seed: int
    pool: Provides[PoolArtifact]  # provider of the PoolArtifact the selection indexes
    selection: Provides[SelectionArtifact | FileArtifact]  # the arm's selection (MoDS's seed set: a FileArtifact)
    loader: ModelLoader | None = None
    merge: bool | None = None
    progress_bar: bool = True
    empty_ok: bool = False  # an empty selection gives no adapter (MoDS's seed set) instead of an error
    code: Sequence[str] = ("cpqs_bench.finetune.sft", "cpqs_bench.stages.finetune")
    files: Sequence[Path] = ()
    track: bool = True

    def __post_init__(self) -> None:
        self.name = f"finetune/{self.arm}-s{self.seed}"
        self.label = f"finetune {self.arm} seed {self.seed}"

    def inputs(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "seed": self.seed,
            "selection": self.selection.output.key,
            **section_key(self.cfg, self.sections),
            "pool": self.pool.output.key,
        }

    def _empty(self) -> bool:
        from cpqs_bench.io import read_jsonl

        return self.empty_ok and not any(r.get("kept") for r in read_jsonl(self.selection.output.path))

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.finetune.sft import ArmConfig, ArmOptions, finetune_arm

        if self._empty():
            return {"arm": self.arm, "seed": self.seed, "adapter": None, "recipe_hash": None}
        manifest = finetune_arm(
            ArmConfig.of(self.cfg),
            Path(self.selection.output.path),
            self.pool.output.examples,
            st.path / ADAPTER,
            seed=self.seed,
            arm=self.arm,
            loader=self.loader,
            options=ArmOptions(merge=self.merge, progress_bar=self.progress_bar),
            pool_summary=self.pool.output.summary or None,
        )
        log_numbers(tracker, manifest)
        facts = training_facts(manifest)
        return {
            "arm": self.arm,
            "seed": self.seed,
            **{k: manifest[k] for k in _MANIFEST_KEYS if k in manifest},
            **facts,
            "cost": self.cost(manifest, facts, st.path / ADAPTER),
        }

    def cost(self, manifest: dict[str, Any], facts: dict[str, Any], adapter: Path) -> dict[str, Any]:
        from safetensors import safe_open

        from cpqs_bench.compute import StageCost, TrainingWork
        from cpqs_bench.models import pick_device
        from cpqs_bench.stages.cost import params_of

        n_adapter = 0
        for f in adapter.glob("*.safetensors"):
            with safe_open(str(f), "pt") as fh:
                n_adapter += sum(_numel(fh.get_slice(k).get_shape()) for k in fh.keys())
        tr = manifest.get("training") or {}
        cost = StageCost.estimate(
            self.name,
            float(tr.get("wall_seconds") or 0.0),
            pick_device(self.cfg.model.device),
            params_of(self.loader, self.cfg.model.id, self.cfg.model.revision),
            training=TrainingWork(
                tokens=int(facts.get("trained_tokens") or 0),
                method="lora",
                adapter_params=n_adapter,
                gradient_checkpointing=self.cfg.finetune.gradient_checkpointing,
            ),
        )
        return {**cost.as_dict(), "estimate": "FLOPs estimated (LoRA: 4·N + 6·N_a per trained token); tokens counted"}

    def collect(self, st: Stage) -> AdapterArtifact:
        m = st.manifest()
        path = st.path / ADAPTER
        if m.get("recipe_hash") is None and not path.exists():
            return AdapterArtifact(None, None, self.arm, self.seed, None)
        return AdapterArtifact(path, folder_key(path), self.arm, self.seed, m.get("recipe_hash"))
