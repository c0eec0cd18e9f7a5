"""The select stage: an arm's kept examples from its selector's scores (top or bottom budget), or the full pool."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpqs_bench.config import Config
from cpqs_bench.io import read_json, read_jsonl, sha256_file, write_jsonl
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.artifacts import SelectionArtifact
from cpqs_bench.stages.common import seed_label, seed_suffix

SELECTION = "selection.jsonl"


def length_spearman(scores: Path | None) -> float | None:
    """Spearman(score, response length) of the scores an arm was selected by, from the scoring stage's degeneracy
    report (None for the full pool): the length-confound check."""
    if scores is None:
        return None
    manifest = Path(scores).parent / "manifest.json"
    deg = (read_json(manifest).get("summary") or {}).get("degeneracy") if manifest.exists() else None
    return deg.get("spearman_length") if isinstance(deg, dict) else None


@dataclass
class SelectStep:
    cfg: Config
    arm: str
    pool: Any  # provider of the PoolArtifact
    scores: Any | None  # provider of the selector's scores FileArtifact; None = the full pool
    selector: str | None = None
    bottom: bool = False
    seed: int | None = None  # set when the scores were redrawn per experiment seed
    log: Callable[[str], None] = print
    code: Sequence[str] = ("cpqs_bench.select", "cpqs_bench.stages.select")
    files: Sequence[Path] = ()
    track: bool = False
    output: SelectionArtifact | None = None

    def __post_init__(self) -> None:
        self.name = f"select/{self.arm}{seed_suffix(self.seed)}"
        self.label = f"select {self.arm}{seed_label(self.seed)}"

    def inputs(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "budget": self.cfg.selectors.budget,
            "bottom": self.bottom,
            "pool": self.pool.output.key,
            "scores": self.scores.output.key if self.scores is not None else None,
        }

    def run(self, st: Stage, tracker: Any) -> dict[str, Any]:
        from cpqs_bench.select import select

        if self.scores is None:  # the full pool: every example kept
            rows = [
                {"id": ex.id, "score": None, "rank": k + 1, "kept": True, "reason": "full pool"}
                for k, ex in enumerate(self.pool.output.examples)
            ]
        else:
            rows = select(read_jsonl(self.scores.output.path), self.cfg.selectors.budget, bottom=self.bottom)
        write_jsonl(st.file(SELECTION), rows)
        return {"kept": sum(r["kept"] for r in rows), "total": len(rows)}

    def collect(self, st: Stage) -> SelectionArtifact:
        from cpqs_bench.select import budget_count

        m = st.manifest()
        n_pool = len(self.pool.output.examples)
        budget_k = n_pool if self.scores is None else budget_count(self.cfg.selectors.budget, m["total"])
        info = {
            "kept": m["kept"],
            "total": m["total"],
            "budget_k": budget_k,
            "selector": self.selector,
            "bottom": self.bottom,
            "redrawn_per_seed": self.seed is not None,
            "length_spearman": length_spearman(self.scores.output.path if self.scores is not None else None),
        }
        if info["kept"] < budget_k:
            msg = (
                f"arm {self.arm} keeps {info['kept']} examples, fewer than its budget k = {budget_k} "
                "(the selector excluded some)"
            )
            if self.cfg.selectors.min_kept == "error":
                raise ValueError(msg + "; selectors.min_kept=error")
            self.log("warning: " + msg)
        return SelectionArtifact(st.file(SELECTION), sha256_file(st.file(SELECTION)), self.arm, self.seed, info)
