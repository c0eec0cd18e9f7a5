"""The select stage: an arm's kept examples from its selector's scores (top or bottom budget), or the full pool."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cpqs_bench.config import Config
from cpqs_bench.io import read_json, read_jsonl, sha256_file, write_jsonl
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.artifacts import SelectionArtifact
from cpqs_bench.stages.common import Produces, seed_label, seed_suffix

if TYPE_CHECKING:
    from cpqs_bench.publish.tracking import Tracker
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.stages.artifacts import FileArtifact, PoolArtifact
    from cpqs_bench.stages.common import Provides


SELECTION = "selection.jsonl"


@dataclass
class PoolTokens:
    """The pool's per-example token counts under the frozen SFT recipe (trained, supervised; one epoch) and its
    response tokens, counted once per run with the target tokenizer and shared by every selection that needs them."""

    cfg: Config
    pool: Provides[PoolArtifact]  # provider of the PoolArtifact
    loader: ModelLoader | None = None
    _trained: dict[str, tuple[int, int]] | None = None
    _response: dict[str, int] | None = None

    def _tokenizer(self) -> Any:
        from cpqs_bench.models import load_tokenizer

        return load_tokenizer(self.cfg.model.id, self.cfg.model.revision)

    def trained(self) -> dict[str, tuple[int, int]]:
        if self._trained is None:
            from cpqs_bench.finetune.dataset import trained_token_counts

            ex = self.pool.output.examples
            self._trained = trained_token_counts(ex, self._tokenizer(), self.cfg.prompt, self.cfg.finetune)
        return self._trained

    def response(self) -> dict[str, int]:
        if self._response is None:
            from cpqs_bench.selectors.matched import pool_response_tokens

            self._response = pool_response_tokens(self.pool.output.examples, self._tokenizer(), self.cfg.prompt)
        return self._response

    def key(self, what: str) -> str:
        from cpqs_bench.selectors.matched import counts_sha256

        return counts_sha256(self.trained() if what == "trained" else self.response())


def length_spearman(scores: Path | None) -> float | None:
    """Spearman(score, response length) of the scores an arm was selected by, from the scoring stage's degeneracy
    report (None for the full pool): the length-confound check."""
    if scores is None:
        return None
    manifest = Path(scores).parent / "manifest.json"
    deg = (read_json(manifest).get("summary") or {}).get("degeneracy") if manifest.exists() else None
    return deg.get("spearman_length") if isinstance(deg, dict) else None


@dataclass
class SelectStep(Produces[SelectionArtifact]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ("selectors.budget", "selectors.budget_unit")
    arm: str
    pool: Provides[PoolArtifact | None]  # the pool; Given(None) where the scores hold every id (not read)
    scores: Provides[FileArtifact] | None  # provider of the selector's scores FileArtifact; None = the full pool
    selector: str | None = None
    bottom: bool = False
    seed: int | None = None  # set when the scores were redrawn per experiment seed
    tokens: PoolTokens | None = None  # needed under selectors.budget_unit=tokens
    log: Callable[[str], None] = print
    code: Sequence[str] = ("cpqs_bench.select", "cpqs_bench.stages.select")
    files: Sequence[Path] = ()
    track: bool = False

    def __post_init__(self) -> None:
        self.name = f"select/{self.arm}{seed_suffix(self.seed)}"
        self.label = f"select {self.arm}{seed_label(self.seed)}"

    @property
    def by_tokens(self) -> bool:
        return self.cfg.selectors.budget_unit == "tokens" and self.scores is not None

    def _tokens(self) -> dict[str, tuple[int, int]] | None:
        if self.tokens is None:
            return None
        return self.tokens.trained()

    def _pool(self) -> PoolArtifact:
        pool = self.pool.output
        if pool is None:
            raise ValueError(f"{self.label}: a selection without scores keeps the whole pool, and no pool was given")
        return pool

    def inputs(self) -> dict[str, Any]:
        sel = self.cfg.selectors
        return {
            "arm": self.arm,
            "budget": sel.budget if self.scores is not None else None,
            "budget_unit": sel.budget_unit if self.scores is not None else None,
            "bottom": self.bottom,
            # a selection from scores depends on the scores (which hold every pool id), not on how the pool was read
            "pool": self._pool().key if self.scores is None else None,
            "scores": self.scores.output.key if self.scores is not None else None,
            "tokens": self.tokens.key("trained") if self.by_tokens and self.tokens is not None else None,
        }

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.select import select_file, selection_summary

        if self.scores is None:  # the full pool: every example kept
            rows = [
                {"id": ex.id, "score": None, "rank": k + 1, "kept": True, "reason": "full pool"}
                for k, ex in enumerate(self._pool().examples)
            ]
            write_jsonl(st.file(SELECTION), rows)
            summary = {"pool": len(rows), "kept": len(rows), **selection_summary(rows, self._tokens())}
        else:
            if self.by_tokens and self.tokens is None:
                raise ValueError(f"select {self.arm}: selectors.budget_unit=tokens needs the pool's token counts")
            summary = select_file(
                self.scores.output.path,
                self.cfg.selectors.budget,
                st.file(SELECTION),
                self.bottom,
                unit=self.cfg.selectors.budget_unit,
                tokens=self._tokens() if self.by_tokens else None,
            )
            summary.pop("scores", None)  # a path; the key holds its content
        return {"total": summary["pool"], **summary}

    def collect(self, st: Stage) -> SelectionArtifact:
        from cpqs_bench.select import budget_count

        m = st.manifest()
        if self.scores is None:
            budget_k = len(self._pool().examples)
        elif self.by_tokens:  # the stop rule decides the count; the budget is in tokens
            budget_k = m["kept"]
        else:
            budget_k = budget_count(self.cfg.selectors.budget, m["total"])
        info: dict[str, Any] = {
            "kept": m["kept"],
            "total": m["total"],
            "budget_k": budget_k,
            "budget_unit": self.cfg.selectors.budget_unit if self.scores is not None else None,
            **{k: m[k] for k in ("n_examples", "trained_tokens", "supervised_tokens", "budget_tokens") if k in m},
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


@dataclass
class ControlStep(Produces[SelectionArtifact]):
    """A matched random control arm (``random@tokens:ARM`` or ``random~ARM``), redrawn per experiment seed from the
    reference arm's selection of the same seed (:func:`cpqs_bench.selectors.matched.draw_control`)."""

    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ()
    arm: str  # the control's name, e.g. random~cpqs
    seed: int
    pool: Provides[PoolArtifact]
    reference: Provides[SelectionArtifact]  # ARM's selection step for this seed (or its one seed-independent selection)
    tokens: PoolTokens
    code: Sequence[str] = ("cpqs_bench.selectors.matched", "cpqs_bench.stages.select")
    files: Sequence[Path] = ()
    track: bool = False

    def __post_init__(self) -> None:
        from cpqs_bench.selectors.matched import parse_control

        parsed = parse_control(self.arm)
        if parsed is None:
            raise ValueError(f"{self.arm!r} is not a control arm (random@tokens:ARM or random~ARM)")
        self.kind, self.reference_arm = parsed
        self.name = f"select/{self.arm}{seed_suffix(self.seed)}"
        self.label = f"select {self.arm}{seed_label(self.seed)}"

    def inputs(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "seed": self.seed,
            "pool": self.pool.output.key,
            "reference": self.reference.output.key,
            "counts": self.tokens.key("trained" if self.kind == "tokens" else "response"),
        }

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.select import selection_summary
        from cpqs_bench.selectors.matched import draw_control, matched_report

        ref_rows = read_jsonl(self.reference.output.path)
        ref_kept = [r["id"] for r in ref_rows if r["kept"]]
        ids = [ex.id for ex in self.pool.output.examples]
        trained = self.tokens.trained()
        rows = draw_control(
            self.arm,
            ids,
            self.seed,
            arm_kept=ref_kept,
            tokens=trained,
            response_tokens=self.tokens.response() if self.kind != "tokens" else None,
        )
        write_jsonl(st.file(SELECTION), rows)
        kept = [r["id"] for r in rows if r["kept"]]
        return {
            "total": len(rows),
            "kept": len(kept),
            **selection_summary(rows, trained),
            "matched": matched_report(kept, ref_kept, trained),
        }

    def collect(self, st: Stage) -> SelectionArtifact:
        m = st.manifest()
        info: dict[str, Any] = {
            "kept": m["kept"],
            "total": m["total"],
            "budget_k": m["kept"],
            "selector": None,
            "control_of": self.reference_arm,
            "control": "token-matched" if self.kind == "tokens" else "length-matched (response-token deciles)",
            "bottom": False,
            "redrawn_per_seed": True,
            "length_spearman": None,
            "matched": m.get("matched"),
            **{k: m[k] for k in ("n_examples", "trained_tokens", "supervised_tokens") if k in m},
        }
        return SelectionArtifact(st.file(SELECTION), sha256_file(st.file(SELECTION)), self.arm, self.seed, info)
