"""MoDS as its paper builds it, as three stages of its own: phases 1–2 (``score/mods-seed``: quality + coverage → the
seed set), the seed model (``finetune/mods-seed-s<seed>``: a LoRA fine-tuned on the seed set with the frozen recipe
and the experiment's first seed), then necessity answered by that model and the usual scoring (``score/<mods...>``).
The first two are built once per run, whatever number of mods selectors (``mods``, ``mods+STEP``) use them."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cpqs_bench.config import Config
from cpqs_bench.io import write_jsonl
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.artifacts import FileArtifact
from cpqs_bench.stages.common import Produces, section_key
from cpqs_bench.stages.finetune import FinetuneStep
from cpqs_bench.stages.score import log_scores, selector_code

if TYPE_CHECKING:
    from cpqs_bench.publish.tracking import Tracker
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.stages.artifacts import PoolArtifact
    from cpqs_bench.stages.common import Provides


def builds_mods_seed(cfg: Config) -> bool:
    """MoDS (plain or composed) with no ``selectors.mods.seed_model`` given: the pipeline builds its seed model."""
    return cfg.selectors.mods.seed_model is None and any(n.partition("+")[0] == "mods" for n in cfg.selectors.names)


@dataclass
class ModsCoverageStep(Produces[FileArtifact]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ("model",)
    reads: ClassVar[tuple[str, ...]] = ("selectors",)
    pool: Provides[PoolArtifact]
    loader: ModelLoader | None = None
    name: str = "score/mods-seed"
    label: str = "score mods seed set (quality + coverage)"
    code: Sequence[str] = ("cpqs_bench.selectors.mods", "cpqs_bench.stages.mods")
    files: Sequence[Path] = ()
    track: bool = False
    # the seed set as a selection file; info: coverage path, n_seed

    def inputs(self) -> dict[str, Any]:
        from cpqs_bench.selectors import mods

        return {
            "pool": self.pool.output.key,
            "selector": "mods",
            "phases": "quality+coverage",
            "settings": mods.coverage_settings(self.cfg.selectors),
            **section_key(self.cfg, self.sections),
        }

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.selectors import mods
        from cpqs_bench.selectors.base import ScoringContext

        pool = self.pool.output.examples
        ctx = ScoringContext(self.cfg, st.path / "work", seed=self.cfg.selectors.seed, loader=self.loader)
        cov = mods.quality_and_coverage(pool, ctx)
        cov.write(st.file(mods.COVERAGE_FILE), pool)
        pick = {sid: j for j, sid in enumerate(cov.seeds)}
        write_jsonl(
            st.file("selection.jsonl"),
            (
                {
                    "id": ex.id,
                    "score": None,
                    "rank": pick[ex.id] + 1 if ex.id in pick else None,
                    "kept": ex.id in pick,
                    "reason": f"MoDS seed set (k-center pick {pick[ex.id]})"
                    if ex.id in pick
                    else "not in the seed set",
                }
                for ex in pool
            ),
        )
        return {"n": len(pool), "n_scored": len(cov.quality), "n_high_quality": len(cov.high), "n_seed": len(cov.seeds)}

    def collect(self, st: Stage) -> FileArtifact:
        from cpqs_bench.selectors import mods

        return FileArtifact.of(
            st.file("selection.jsonl"),
            coverage=st.file(mods.COVERAGE_FILE),
            coverage_key=FileArtifact.of(st.file(mods.COVERAGE_FILE)).key,
            n_seed=int(st.manifest()["n_seed"]),
        )


def seed_finetune_step(
    cfg: Config, pool: Provides[PoolArtifact], coverage: ModsCoverageStep, loader: ModelLoader | None
) -> FinetuneStep:
    """The seed model: the frozen recipe on the seed set (no adapter when the seed set is empty)."""
    step = FinetuneStep(cfg, "mods-seed", cfg.experiment.seeds[0], pool, coverage, loader=loader, empty_ok=True)
    step.label = f"finetune mods seed set seed {step.seed}"
    return step


@dataclass
class ModsScoreStep(Produces[FileArtifact]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ("selectors", "model", "prompt")
    pool: Provides[PoolArtifact]
    selector: str  # mods or mods+STEP
    coverage: ModsCoverageStep
    seed_model: FinetuneStep
    loader: ModelLoader | None = None
    track: bool = True

    def __post_init__(self) -> None:
        own, self.files = selector_code(self.cfg, self.selector)
        code = [
            "cpqs_bench.score",
            "cpqs_bench.selectors.mods",
            "cpqs_bench.evaluate.harness",
            "cpqs_bench.stages.mods",
        ]
        self.code = code + [m for m in own if m not in code]
        self.name = f"score/{self.selector}"
        self.label = f"score {self.selector}"

    def seed_label(self) -> str:
        from cpqs_bench.selectors import mods

        n_seed = self.coverage.output.info["n_seed"]
        adapter = self.seed_model.output
        if not n_seed or adapter.path is None:
            return mods.NO_SEED_MODEL
        return f"target + LoRA fine-tuned on the MoDS seed set ({n_seed} examples, adapter {adapter.key})"

    def inputs(self) -> dict[str, Any]:
        return {
            "pool": self.pool.output.key,
            "selector": self.selector,
            **section_key(self.cfg, self.sections),
            "checkpoint": None,
            "mods_seed": {"coverage": self.coverage.output.info["coverage_key"], "adapter": self.seed_model.output.key},
        }

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.evaluate.harness import Attached
        from cpqs_bench.score import score_pool
        from cpqs_bench.selectors import mods
        from cpqs_bench.selectors.base import ScoringContext

        cfg, pool = self.cfg, self.pool.output.examples
        label, adapter = self.seed_label(), self.seed_model.output.path
        phases = st.path / "phases"
        phases.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.coverage.output.info["coverage"], phases / mods.COVERAGE_FILE)
        coverage = mods.Coverage.read(phases / mods.COVERAGE_FILE, pool)
        ctx = ScoringContext(cfg, st.path / "work", seed=cfg.selectors.seed, loader=self.loader)
        if adapter is None:
            nec = mods.necessity(pool, coverage, ctx, mods.SeedModel(None, None, label))
        else:
            base, tok, _ = ctx.model()
            with Attached(base, str(adapter)) as model:
                nec = mods.necessity(pool, coverage, ctx, mods.SeedModel(model, tok, label))
        nec.write(phases / mods.NECESSITY_FILE)
        summary = score_pool(
            cfg,
            pool,
            st.file("scores.jsonl"),
            selector=self.selector,
            checkpoint=phases,
            workdir=st.path / "work",
            loader=self.loader,
        )
        log_scores(tracker, self.selector, st.file("scores.jsonl"))
        threshold = cfg.selectors.mods.necessity_threshold
        return {
            "summary": summary,
            "seed_model": label,
            "necessity": {"answered": len(nec.reward), "necessary": sum(r < threshold for r in nec.reward.values())},
        }

    def collect(self, st: Stage) -> FileArtifact:
        return FileArtifact.of(
            st.file("scores.jsonl"), selector=self.selector, seed=None, summary=st.manifest().get("summary") or {}
        )
