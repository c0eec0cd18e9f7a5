"""The negatives stage: a weaker model answers the CPQS pairs pool's instructions (``pairs_source: generate``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cpqs_bench.config import Config
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.artifacts import FileArtifact, PoolArtifact, examples_key
from cpqs_bench.stages.common import Produces, section_key

if TYPE_CHECKING:
    from cpqs_bench.publish.tracking import Tracker
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.stages.common import Provides


@dataclass
class NegativesStep(Produces[FileArtifact]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ("model", "prompt", "selectors.cpqs")
    pool: Provides[PoolArtifact]  # provider of a PoolArtifact whose ``pairs_pool`` holds the instructions to answer
    loader: ModelLoader | None = None
    progress: bool = True
    name: str = "negatives"
    label: str = "negatives"
    code: Sequence[str] = ("cpqs_bench.selectors.cpqs.negatives",)
    files: Sequence[Path] = ()
    track: bool = False

    def _prompts(self) -> PoolArtifact:
        return self.pool.output

    def inputs(self) -> dict[str, Any]:
        cq = self.cfg.selectors.cpqs
        return {
            "prompts": examples_key(self._prompts().pairs_pool),
            "generator": cq.generator,
            **section_key(self.cfg, self.sections),
        }

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.selectors.cpqs.negatives import make_negatives

        summary = make_negatives(
            self.cfg,
            self._prompts().pairs_pool,
            None,
            st.file("negatives.jsonl"),
            loader=self.loader,
            progress=self.progress,
        )
        return {"summary": summary}

    def collect(self, st: Stage) -> FileArtifact:
        return FileArtifact.of(st.file("negatives.jsonl"))
