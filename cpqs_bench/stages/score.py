"""The score stage: one selector over the pool, one JSON line per example (:func:`cpqs_bench.score.score_pool`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cpqs_bench.config import Config, replace
from cpqs_bench.io import read_jsonl
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.artifacts import FileArtifact
from cpqs_bench.stages.common import Produces, section_key, seed_label, seed_suffix

if TYPE_CHECKING:
    from cpqs_bench.publish.tracking import Tracker
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.stages.artifacts import PoolArtifact
    from cpqs_bench.stages.common import Provides
    from cpqs_bench.stages.select import PoolTokens


SCORES = "scores.jsonl"


def scoring_settings(cfg: Config) -> dict[str, Any]:
    """What a selector's scores depend on: not the budget, the arm list or which selectors run."""
    return section_key(cfg, ("selectors",))["selectors"]


def selector_code(cfg: Config, name: str) -> tuple[list[str], list[Path]]:
    """Entry modules (ours) or files (a plugin's package folder) whose change re-runs a selector's scoring."""
    from cpqs_bench.selectors import registry

    module = type(registry.get(name, dict(cfg.selectors.plugins))).__module__
    if module.startswith("cpqs_bench"):
        return [module], []
    spec = importlib.util.find_spec(module.split(".")[0])
    return [], [Path(spec.origin).parent] if spec and spec.origin else []


def selector_sources(cfg: Config, name: str) -> dict[str, str]:
    """The data a selector reads besides the pool — a target-aware query set (``rds``, ``less``), imported scores
    (``external``) — by content (sha256 of the file a spec resolves to; a Hub spec as itself)."""
    from cpqs_bench.data.pool import resolve_source
    from cpqs_bench.io import sha256_file

    base = name.partition("+")[0]
    specs: list[str] = []
    if base in ("rds", "less"):
        specs = [s.strip() for s in (getattr(cfg.selectors, base).queries or "").split(",") if s.strip()]
    elif base == "external" and cfg.selectors.external.source:
        specs = [cfg.selectors.external.source]
    out = {}
    for spec in specs:
        source, _ = resolve_source(spec, cfg.data.mirror)
        out[spec] = sha256_file(source) if Path(source).is_file() else source
    return out


def log_scores(tracker: Tracker | None, name: str, scores: Path) -> None:
    if tracker is not None:
        tracker.log_histogram(f"scores/{name}", [r["score"] for r in read_jsonl(scores) if r.get("score") is not None])


@dataclass
class ScoreStep(Produces[FileArtifact]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ("selectors", "model", "prompt")
    reads: ClassVar[tuple[str, ...]] = ("data.mirror",)
    pool: Provides[PoolArtifact]  # provider of a PoolArtifact
    selector: str
    seed: int | None = None  # random redrawn per experiment seed: that seed becomes selectors.seed
    checkpoint: Provides[FileArtifact] | None = None  # provider of the trained selector's FileArtifact (cpqs) or None
    loader: ModelLoader | None = None
    source: str | None = None  # how the pool was named (recorded in the summary)
    tokens: PoolTokens | None = None  # PoolTokens: the pool's token counts, for the cost estimate
    track: bool = True
    files: Sequence[Path] = ()

    def __post_init__(self) -> None:
        if self.seed is not None:
            self.cfg = replace(self.cfg, **{"selectors.seed": self.seed})
        own, self.files = selector_code(self.cfg, self.selector)
        self.code = ["cpqs_bench.score", *own]
        self.name = f"score/{self.selector}{seed_suffix(self.seed)}"
        self.label = f"score {self.selector}{seed_label(self.seed)}"

    def inputs(self) -> dict[str, Any]:
        return {
            "pool": self.pool.output.key,
            "selector": self.selector,
            **section_key(self.cfg, self.sections),
            "checkpoint": self.checkpoint.output.key if self.checkpoint is not None else None,
            "sources": selector_sources(self.cfg, self.selector) or None,
        }

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.score import PoolFacts, score_pool

        pool = self.pool.output
        summary = score_pool(
            self.cfg,
            pool.examples,
            st.file(SCORES),
            selector=self.selector,
            checkpoint=self.checkpoint.output.path if self.checkpoint is not None else None,
            workdir=st.path / "work",
            loader=self.loader,
            facts=PoolFacts(source=self.source, sha256=pool.sha256),
        )
        if summary.get("rank", 0) != 0:
            return {"summary": summary}
        log_scores(tracker, self.selector, st.file(SCORES))
        return {"summary": summary, "cost": self.cost(float(summary.get("seconds") or 0.0))}

    def cost(self, seconds: float) -> dict[str, Any]:
        from cpqs_bench.models import pick_device
        from cpqs_bench.selectors.matched import trained_of
        from cpqs_bench.stages.cost import FORWARD_PASSES, params_of, scoring_cost

        cfg, base = self.cfg, self.selector.partition("+")[0]
        pool_tokens = sum(trained_of(v) for v in self.tokens.trained().values()) if self.tokens is not None else 0
        n = 0
        if FORWARD_PASSES.get(base, 1):
            spec = cfg.selectors.proxy_model if base == "superfiltering" else cfg.model.id
            rev = None if base == "superfiltering" else cfg.model.revision
            n = params_of(self.loader, spec, rev)
        return scoring_cost(self.name, self.selector, seconds, pool_tokens, n, pick_device(cfg.model.device))

    def collect(self, st: Stage) -> FileArtifact:
        summary = st.manifest().get("summary") or {}
        return FileArtifact.of(st.file(SCORES), selector=self.selector, seed=self.seed, summary=summary)
