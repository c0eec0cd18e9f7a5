"""LESS's warm-up as a stage of its own (:func:`cpqs_bench.finetune.less_warmup.warmup`): a LoRA on a seeded
``selectors.less.warmup_fraction`` of the pool through the project's fine-tuning code, every epoch's adapter and
optimizer state kept; the ``less`` scoring stage reads it as its checkpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cpqs_bench.config import Config
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.artifacts import FileArtifact
from cpqs_bench.stages.common import Produces, section_key

if TYPE_CHECKING:
    from cpqs_bench.publish.tracking import Tracker
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.stages.artifacts import PoolArtifact
    from cpqs_bench.stages.common import Provides

WARMUP = "warmup"
_QUERY_FIELDS = (
    "queries",
    "query_limit",
    "query_offset",
    "query_task_field",
    "projection_dim",
)  # scoring's, not the warm-up's


@dataclass
class LessWarmupStep(Produces[FileArtifact]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ("selectors.less", "model", "prompt", "finetune")
    drop: ClassVar[Mapping[str, tuple[str, ...]]] = {"selectors.less": _QUERY_FIELDS}
    pool: Provides[PoolArtifact]
    loader: ModelLoader | None = None
    name: str = "less-warmup"
    label: str = "less warm-up (LoRA on a random share of the pool)"
    code: Sequence[str] = ("cpqs_bench.finetune.less_warmup", "cpqs_bench.stages.less")
    files: Sequence[Path] = ()
    track: bool = True

    def inputs(self) -> dict[str, Any]:
        return {"pool": self.pool.output.key, **section_key(self.cfg, self.sections, drop=self.drop)}

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.finetune.less_warmup import warmup

        record = warmup(
            self.cfg, self.pool.output.examples, st.path / WARMUP, seed=self.cfg.selectors.less.seed, loader=self.loader
        )
        return {"warmup": {k: v for k, v in record.items() if isinstance(v, (int, float, str, bool))}}

    def collect(self, st: Stage) -> FileArtifact:
        return FileArtifact.of(st.path / WARMUP)
