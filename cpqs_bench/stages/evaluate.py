"""The evaluate stage: the base model or one arm × seed through lm-evaluation-harness
(:func:`cpqs_bench.evaluate.harness.evaluate_model`), keyed on the adapter's content (its weights, not a manifest)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cpqs_bench.config import Config, config_hash
from cpqs_bench.io import read_json
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.artifacts import EvalArtifact
from cpqs_bench.stages.common import Produces, section_key, seed_label, seed_suffix

if TYPE_CHECKING:
    from cpqs_bench.publish.tracking import Tracker
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.stages.artifacts import AdapterArtifact
    from cpqs_bench.stages.common import Provides


EVAL_DATA = ("gsm8k", "humaneval", "humanevalplus", "general_eval")  # mirror folders the evaluation tasks read
# the executor's own manifest keys: the evaluation record's fields of the same name are kept as evaluation_<key>
PIPELINE_KEYS = ("experiment", "stage", "input_hash", "inputs", "finished_at", "seconds", "outputs")


def evaluation_settings(cfg: Config) -> dict[str, Any]:
    """What the lm-eval stages depend on in ``evaluate``: everything but the pairwise judge evaluation (its own
    stages), so turning that on or off leaves every evaluation stage's inputs as they were."""
    return section_key(cfg, ("evaluate",))["evaluate"]


def evaluation_files(cfg: Config) -> list[Path]:
    """What the evaluation stages read besides code: the task YAMLs (the harness's one tasks folder and the user's)
    and the evaluation data."""
    from cpqs_bench.data.mirror import mirror_dir
    from cpqs_bench.evaluate.harness import tasks_dir

    files = [tasks_dir()] + [Path(p) for p in cfg.evaluate.include_path or ()]
    root = mirror_dir(cfg.data.mirror)
    if root is not None:
        files += [root / d for d in EVAL_DATA if (root / d).exists()]
    return files


@dataclass
class EvaluateStep(Produces[EvalArtifact]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ("evaluate", "model", "prompt")
    arm: str
    seed: int | None
    adapter: Provides[AdapterArtifact] | None  # provider of an AdapterArtifact; None = the base model
    arm_info: dict[str, Any] = field(default_factory=dict)  # selection facts recorded with the results
    pool_sha256: str | None = None
    loader: ModelLoader | None = None
    cache_root: Path | None = None
    code: Sequence[str] = ("cpqs_bench.evaluate.harness", "cpqs_bench.stages.evaluate")
    track: bool = True

    def __post_init__(self) -> None:
        self.name = f"evaluate/{self.arm}{seed_suffix(self.seed)}"
        self.label = f"evaluate {self.arm}{seed_label(self.seed)}"
        self.files = evaluation_files(self.cfg)

    def inputs(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "seed": self.seed,
            "adapter": self.adapter.output.key if self.adapter is not None else None,
            **section_key(self.cfg, self.sections),
        }  # the arm's selection facts are recorded (run), not keyed: its adapter's content already is

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.evaluate.harness import EVALUATION_RECORD, evaluate_model

        cfg = self.cfg
        adapter = self.adapter.output if self.adapter is not None else None
        extra = {
            "arm": self.arm,
            "seed": self.seed,
            "recipe_hash": adapter.recipe_hash if adapter is not None else None,
            "config_hash": config_hash(cfg),
            "seeds": list(cfg.experiment.seeds),
            "data_sha256": {"pool": self.pool_sha256},
            "model_id": cfg.model.id,
            "arm_info": self.arm_info,
        }
        metrics = evaluate_model(
            cfg,
            st.path,
            adapter=adapter.path if adapter is not None else None,
            extra_manifest=extra,
            loader=self.loader,
            cache_root=self.cache_root,
        )
        if tracker is not None:
            tracker.log_metrics(metrics)
        own = read_json(st.path / EVALUATION_RECORD)
        return {("evaluation_" + k if k in PIPELINE_KEYS else k): v for k, v in own.items()}

    def collect(self, st: Stage) -> EvalArtifact:
        return EvalArtifact(st.path, self.arm, self.seed)
