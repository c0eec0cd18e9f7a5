"""Turn a selector's scores into a selection: top-k (or bottom-k) of the eligible examples, every id accounted for.

Budget: an integer >= 1 is a count; a number in (0, 1) is a fraction of the scored pool (rounded, at least 1).
Ties break by id so the result does not depend on file order. Each output row says kept or not, its rank among the
eligible examples, and why (``top-k``, ``bottom-k``, ``beyond budget``, or the selector's exclusion reason).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from cpqs_bench.io import read_jsonl, write_json, write_jsonl


class SelectionError(ValueError):
    pass


def budget_count(budget: float, pool_size: int) -> int:
    if budget <= 0:
        raise SelectionError(f"budget must be positive, got {budget}")
    if budget >= 1:
        if budget != int(budget):
            raise SelectionError(f"a budget >= 1 is a count and must be whole, got {budget}")
        return int(budget)
    return max(1, int(round(budget * pool_size)))


def select(rows: Iterable[dict[str, Any]], budget: float, bottom: bool = False) -> list[dict[str, Any]]:
    rows = list(rows)
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise SelectionError("scores contain duplicate ids")
    for r in rows:
        if r.get("exclude") is None and (
            r.get("score") is None or isinstance(r["score"], float) and math.isnan(r["score"])
        ):
            raise SelectionError(f"example {r['id']!r} has no score and no exclusion reason")
    k = budget_count(budget, len(rows))
    eligible = [r for r in rows if r.get("exclude") is None]
    eligible.sort(key=lambda r: (r["score"], r["id"]) if bottom else (-r["score"], r["id"]))
    out = []
    for rank, r in enumerate(eligible, 1):
        kept = rank <= k
        out.append(
            {
                "id": r["id"],
                "score": r["score"],
                "rank": rank,
                "kept": kept,
                "reason": ("bottom-k" if bottom else "top-k") if kept else "beyond budget",
            }
        )
    for r in rows:
        if r.get("exclude") is not None:
            out.append(
                {
                    "id": r["id"],
                    "score": r.get("score"),
                    "rank": None,
                    "kept": False,
                    "reason": f"excluded: {r['exclude']}",
                }
            )
    assert len(out) == len(rows)
    return out


def kept_ids(selection: Iterable[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in selection if r["kept"]]


def select_file(scores: str | Path, budget: float, out: str | Path, bottom: bool = False) -> dict[str, Any]:
    """Read a scores JSONL (``cpqs-bench score``), write the selection JSONL and a summary beside it."""
    rows = read_jsonl(scores)
    if not rows:
        raise SelectionError(f"{scores}: no scores")
    selection = select(rows, budget, bottom)
    write_jsonl(out, selection)
    n_kept = sum(r["kept"] for r in selection)
    summary = {
        "scores": str(scores),
        "budget": budget,
        "bottom": bottom,
        "pool": len(rows),
        "kept": n_kept,
        "excluded": sum(r["rank"] is None for r in selection),
    }
    if n_kept < budget_count(budget, len(rows)):
        summary["warning"] = f"only {n_kept} eligible examples for a budget of {budget_count(budget, len(rows))}"
    write_json(Path(out).with_suffix(".summary.json"), summary)
    return summary
