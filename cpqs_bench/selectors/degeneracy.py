"""Degenerate-score detection for any selector's rows: ties, distinct values, NaNs, correlation with length.

A selector that rates every example the same (a judge that always answers "5", a reward model that saturates)
selects by tie-breaking alone (``select`` breaks ties by id): the arm is then an id-ordered subset, not a
selection. :func:`report` measures it on the eligible rows (``exclude`` is None):

* ``distinct``: number of distinct eligible scores; ``tie_fraction``: fraction of eligible rows whose score is
  shared with at least one other eligible row;
* ``nan``: rows whose score is missing / not finite (eligible or not), ``excluded``: rows with a reason;
* ``spearman_length``: Spearman's rho (``scipy.stats.spearmanr``) between eligible scores and ``n_tokens`` (the
  response length in tokens every selector reports): near +1 means the selector is mostly ``longest``;
* ``degenerate``: True when at least two rows are eligible and all share one score, or none is eligible.

``line(name, report)`` is the one-line form ``compare`` prints.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping

from cpqs_bench.selectors.base import ScoreRow


def _as_dict(row: ScoreRow | Mapping[str, Any]) -> Mapping[str, Any]:
    return row.to_dict() if isinstance(row, ScoreRow) else row


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def report(rows: Iterable[ScoreRow | Mapping[str, Any]]) -> dict[str, Any]:
    """Degeneracy statistics of one selector's rows (ScoreRow objects or score-file dicts)."""
    dicts = [_as_dict(r) for r in rows]
    eligible = [r for r in dicts if r.get("exclude") is None and _finite(r.get("score"))]
    scores = [float(r["score"]) for r in eligible]
    counts = Counter(scores)
    tied = sum(c for c in counts.values() if c > 1)
    rho = None
    if len(eligible) >= 3 and len(counts) > 1:
        lengths = [int(r.get("n_tokens") or 0) for r in eligible]
        if len(set(lengths)) > 1:
            from scipy.stats import spearmanr

            value = float(spearmanr(scores, lengths).statistic)
            rho = value if math.isfinite(value) else None
    return {
        "n": len(dicts),
        "eligible": len(eligible),
        "excluded": sum(1 for r in dicts if r.get("exclude") is not None),
        "nan": sum(1 for r in dicts if not _finite(r.get("score"))),
        "distinct": len(counts),
        "tie_fraction": tied / len(eligible) if eligible else None,
        "spearman_length": rho,
        "degenerate": (len(eligible) >= 2 and len(counts) == 1) or (len(dicts) > 0 and not eligible),
    }


def line(name: str, rep: Mapping[str, Any]) -> str:
    """``name: 291/300 eligible, 287 distinct, ties 2.7%, NaN 9, rho(len) +0.41`` (+ ``DEGENERATE`` when so)."""
    ties = "-" if rep["tie_fraction"] is None else f"{100 * rep['tie_fraction']:.1f}%"
    rho = "-" if rep["spearman_length"] is None else f"{rep['spearman_length']:+.2f}"
    text = (
        f"{name}: {rep['eligible']}/{rep['n']} eligible, {rep['distinct']} distinct, ties {ties}, "
        f"NaN {rep['nan']}, rho(len) {rho}"
    )
    return text + ("  DEGENERATE" if rep["degenerate"] else "")
