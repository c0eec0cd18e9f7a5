"""The train-selector stage: the CPQS TextCNN on contrastive pairs, none of whose instructions is in the pool it will
score (``selectors.cpqs.overlap: exclude``; the pairs are checked by the normalised ``overlap_key``), or the pool
scored out of fold (``out_of_fold``: the stage also writes ``scores.jsonl``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cpqs_bench.config import Config
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.artifacts import FileArtifact, examples_key
from cpqs_bench.stages.common import Produces, log_numbers, section_key

if TYPE_CHECKING:
    from cpqs_bench.publish.tracking import Tracker
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.stages.artifacts import PoolArtifact
    from cpqs_bench.stages.common import Provides
    from cpqs_bench.stages.select import PoolTokens


CHECKPOINT = "checkpoint"


@dataclass
class TrainSelectorStep(Produces[FileArtifact]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ("selectors.cpqs", "model", "prompt")
    pool: Provides[PoolArtifact] | None  # provider of the PoolArtifact the selector will score (None: no overlap check)
    negatives: Provides[FileArtifact] | None = None  # provider of the negatives FileArtifact (pairs_source: generate)
    row_filter: dict[str, Sequence[Any]] | None = None
    loader: ModelLoader | None = None
    progress: bool = True
    tokens: PoolTokens | None = None  # PoolTokens: mean example tokens, for the cost estimate
    name: str = "train-selector"
    label: str = "train-selector"
    code: Sequence[str] = ("cpqs_bench.selectors.cpqs.train", "cpqs_bench.stages.train_selector")
    files: Sequence[Path] = ()
    track: bool = True
    oof_scores: Path | None = field(default=None, repr=False)

    @property
    def out_of_fold(self) -> bool:
        return (
            self.cfg.selectors.cpqs.overlap == "out_of_fold"
            and self.pool is not None
            and bool(self.pool.output.examples)
        )

    def inputs(self) -> dict[str, Any]:
        pool = self.pool.output if self.pool is not None else None
        return {
            "pool": pool.key if pool is not None else None,
            "pairs_pool": examples_key(pool.pairs_pool) if pool is not None and pool.pairs_pool else None,
            "negatives": self.negatives.output.key if self.negatives is not None else None,
            **section_key(self.cfg, self.sections),
            "row_filter": self.row_filter,
        }

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.selectors.cpqs import train as T

        t0 = time.monotonic()
        pool = self.pool.output if self.pool is not None else None
        pairs = (pool.pairs_pool or None) if pool is not None else None
        negatives = self.negatives.output.path if self.negatives is not None else self.cfg.selectors.cpqs.negatives
        out = st.path / CHECKPOINT
        if self.out_of_fold and pool is not None:  # out_of_fold: a pool with examples
            metrics = T.train_out_of_fold(
                self.cfg,
                out,
                pool.examples,
                st.file("scores.jsonl"),
                pairs=pairs,
                negatives=negatives,
                row_filter=self.row_filter,
                loader=self.loader,
                options=T.TrainOptions(progress=self.progress),
            )
        else:
            metrics = T.train_selector(
                self.cfg,
                out,
                pairs=pairs,
                negatives=negatives,
                exclude=pool.examples if pool is not None else None,
                row_filter=self.row_filter,
                loader=self.loader,
                options=T.TrainOptions(progress=self.progress),
            )
        log_numbers(tracker, metrics.get("val") or {}, "val/")
        keep = ("val", "train", "n_pairs", "pairs", "overlap", "length", "folds")
        return {"metrics": {k: v for k, v in metrics.items() if k in keep}, "cost": self.cost(metrics, t0)}

    def cost(self, metrics: dict[str, Any], t0: float) -> dict[str, Any]:
        """Hidden states of both answers of every pair (one forward each; the TextCNN's own cost is negligible)."""
        from cpqs_bench.compute import StageCost
        from cpqs_bench.models import pick_device
        from cpqs_bench.selectors.matched import trained_of
        from cpqs_bench.stages.cost import params_of

        counts = self.tokens.trained() if self.tokens is not None else {}
        mean = sum(trained_of(v) for v in counts.values()) / len(counts) if counts else 0.0
        # texts the features were extracted from: the pair set's count (reference compositions hold 3 per group)
        n_pairs = metrics.get("n_pairs") or 0
        n_pairs = sum(n_pairs) if isinstance(n_pairs, list) else int(n_pairs)  # out of fold: one count per fold
        n_texts = int((metrics.get("pairs") or {}).get("examples") or 2 * n_pairs)
        cost = StageCost.estimate(
            self.name,
            time.monotonic() - t0,
            pick_device(self.cfg.model.device),
            params_of(self.loader, self.cfg.model.id, self.cfg.model.revision),
            forward_tokens=round(n_texts * mean),
        )
        return {**cost.as_dict(), "estimate": "FLOPs estimated: 2 texts per pair × the pool's mean tokens × 2·N"}

    def collect(self, st: Stage) -> FileArtifact:
        scores = st.file("scores.jsonl")
        self.oof_scores = scores if scores.exists() else None
        return FileArtifact.of(st.path / CHECKPOINT, metrics=st.manifest().get("metrics", {}))
