"""Turn a selector's scores into a selection: top-k (or bottom-k) of the eligible examples, every id accounted for.

Budget units (``selectors.budget_unit``):

* ``examples`` (default): an integer >= 1 is a count; a number in (0, 1) is a fraction of the scored pool (rounded,
  at least 1).
* ``tokens``: the budget counts *trained tokens* — the tokens of an example's SFT row as the frozen recipe renders
  and truncates it (prompt + response with the template's special tokens, after ``max_length``, no padding, one
  epoch), given per id by ``tokens`` (``cpqs_bench.finetune.dataset.trained_token_counts``: id -> (trained,
  supervised)). An integer >= 1 is a token count; a number in (0, 1) is that fraction of the whole scored pool's
  trained tokens (rounded down). The stop rule (:func:`cpqs_bench.selectors.matched.take_within`): examples are
  taken in rank order and the selection stops **before** the first example that would take the total over the
  budget — no skip-and-continue fill, so the kept set is always a prefix of the ranking.

Ties break by id so the result does not depend on file order. Each output row says kept or not, its rank among the
eligible examples, and why (``top-k``, ``bottom-k``, ``top within token budget``, ``bottom within token budget``,
``beyond budget``, ``beyond token budget``, or the selector's exclusion reason).

:func:`selection_summary` gives what every arm records (``n_examples``, ``trained_tokens``, ``supervised_tokens``,
one epoch); :func:`optimizer_steps` counts the optimizer steps the Trainer takes on ``n_rows`` rows under the frozen
recipe and :func:`training_totals` turns a one-epoch summary into the arm's totals over its epochs.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping

from cpqs_bench.io import read_jsonl, write_json, write_jsonl
from cpqs_bench.selectors.matched import ControlError, check_counts, take_within, token_summary, trained_of

if TYPE_CHECKING:
    from cpqs_bench.finetune.config import FinetuneConfig

UNITS = ("examples", "tokens")
Unit = Literal["examples", "tokens"]


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


def token_budget(budget: float, pool_trained_tokens: int) -> int:
    """A token budget: >= 1 is a whole number of trained tokens; in (0, 1) that fraction of the pool's trained
    tokens, rounded down (the budget is a ceiling the stop rule never crosses)."""
    if budget <= 0:
        raise SelectionError(f"budget must be positive, got {budget}")
    if budget >= 1:
        if budget != int(budget):
            raise SelectionError(f"a token budget >= 1 is a count of tokens and must be whole, got {budget}")
        return int(budget)
    return int(math.floor(budget * pool_trained_tokens))


def _check_unit(unit: str, tokens: Mapping[str, Any] | None) -> None:
    if unit not in UNITS:
        raise SelectionError(f"budget unit must be one of {UNITS}, got {unit!r}")
    if unit == "tokens" and tokens is None:
        raise SelectionError("a token budget needs the trained-token counts of the pool (tokens=...)")


def select(
    rows: Iterable[dict[str, Any]],
    budget: float,
    bottom: bool = False,
    *,
    unit: Unit = "examples",
    tokens: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Rank the eligible rows by score (descending, or ascending with ``bottom``), keep the budget's worth.

    ``unit="tokens"`` needs ``tokens`` (id -> trained tokens or (trained, supervised), one epoch) for every row of
    the pool: the budget is in trained tokens and the stop rule keeps the longest prefix of the ranking within it."""
    rows = list(rows)
    _check_unit(unit, tokens)
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise SelectionError("scores contain duplicate ids")
    for r in rows:
        if r.get("exclude") is None and (
            r.get("score") is None or isinstance(r["score"], float) and math.isnan(r["score"])
        ):
            raise SelectionError(f"example {r['id']!r} has no score and no exclusion reason")
    eligible = [r for r in rows if r.get("exclude") is None]
    eligible.sort(key=lambda r: (r["score"], r["id"]) if bottom else (-r["score"], r["id"]))
    if unit == "examples":
        k = budget_count(budget, len(rows))
        kept_reason, other = ("bottom-k" if bottom else "top-k"), "beyond budget"
    else:
        assert tokens is not None
        try:
            check_counts(ids, tokens, "trained-token counts")
            pool_tokens = sum(trained_of(tokens[i]) for i in ids)
            limit = token_budget(budget, pool_tokens)
            k = take_within([r["id"] for r in eligible], tokens, limit)
        except ControlError as exc:
            raise SelectionError(str(exc)) from None
        if k == 0 and eligible:
            first = eligible[0]["id"]
            raise SelectionError(
                f"token budget {budget} ({limit} trained tokens of the pool's {pool_tokens}) is smaller than the "
                f"first-ranked example {first!r} ({trained_of(tokens[first])} trained tokens): nothing can be kept"
            )
        kept_reason = ("bottom" if bottom else "top") + " within token budget"
        other = "beyond token budget"
    out = []
    for rank, r in enumerate(eligible, 1):
        kept = rank <= k
        out.append(
            {
                "id": r["id"],
                "score": r["score"],
                "rank": rank,
                "kept": kept,
                "reason": kept_reason if kept else other,
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


def selection_summary(selection: Iterable[dict[str, Any]], tokens: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What every arm records about its data, one epoch: ``n_examples`` (kept), ``n_rows`` (kept with at least one
    trained token: the rows the Trainer sees once the length policy dropped what it drops), ``trained_tokens`` and
    ``supervised_tokens`` (None without ``tokens``; ``supervised_tokens`` also None when ``tokens`` holds trained
    tokens only)."""
    try:
        return token_summary(kept_ids(selection), tokens)
    except ControlError as exc:
        raise SelectionError(str(exc)) from None


def _grad_accum(batch_size: int, micro_batch_size: int, processes: int) -> int:
    """Gradient accumulation as :func:`cpqs_bench.finetune.sft.grad_accum` computes it (same refusal)."""
    per_step = micro_batch_size * processes
    if batch_size % per_step:
        raise SelectionError(
            f"finetune.batch_size={batch_size} is not a multiple of micro_batch_size×processes="
            f"{micro_batch_size}×{processes}; the effective batch is part of the recipe and must be exact"
        )
    return batch_size // per_step


def optimizer_steps(n_rows: int, ft_cfg: FinetuneConfig, world_size: int = 1) -> int:
    """Optimizer steps the Trainer takes on ``n_rows`` rows under the recipe ``ft_cfg`` (a ``FinetuneConfig``).

    As ``finetune.sft`` sets it up (transformers' ``Trainer.set_initial_training_values`` and accelerate's
    ``BatchSamplerShard``, ``drop_last=False``, ``even_batches=True``): ``micro_batch_size`` rows per micro-batch
    (packing turns a micro-batch into one row but keeps its count), ``ceil(ceil(n_rows / micro) / world_size)``
    micro-batches per process and epoch, ``accum = batch_size / (micro × world_size)`` micro-batches per step with
    a short last step, so ``updates = max(ceil(micro_batches / accum), 1)`` per epoch; ``max_steps > 0`` wins,
    else ``ceil(epochs × updates)``."""
    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 1:
        raise SelectionError(f"optimizer_steps needs at least one training row, got {n_rows!r}")
    if world_size < 1:
        raise SelectionError(f"world_size must be >= 1, got {world_size}")
    micro = int(ft_cfg.micro_batch_size)
    accum = _grad_accum(int(ft_cfg.batch_size), micro, world_size)
    micro_batches = math.ceil(math.ceil(n_rows / micro) / world_size)
    updates = max(math.ceil(micro_batches / accum), 1)
    if ft_cfg.max_steps > 0:
        return int(ft_cfg.max_steps)
    return math.ceil(ft_cfg.epochs * updates)


def training_totals(summary: Mapping[str, Any], ft_cfg: FinetuneConfig, world_size: int = 1) -> dict[str, Any]:
    """An arm's training totals from its one-epoch :func:`selection_summary`: ``optimizer_steps``, ``epochs`` (the
    epochs those steps cover: ``steps / updates per epoch``), ``trained_tokens`` and ``supervised_tokens`` summed
    over them. Exact when every epoch is complete (whole ``finetune.epochs``, no ``max_steps`` cut); a partial
    last epoch is charged pro rata (its rows depend on the seeded order) and ``tokens_exact`` says so."""
    n_rows = summary.get("n_rows")
    if n_rows is None:
        raise SelectionError("training_totals needs a selection summary made with token counts (n_rows is None)")
    steps = optimizer_steps(int(n_rows), ft_cfg, world_size)
    per_epoch = optimizer_steps(int(n_rows), dataclasses.replace(ft_cfg, epochs=1, max_steps=-1), world_size)
    epochs = steps / per_epoch
    exact = float(epochs).is_integer()

    def times(v: int | None) -> int | None:
        return None if v is None else (int(v * epochs) if exact else int(round(v * epochs)))

    return {
        "n_examples": summary.get("n_examples"),
        "n_rows": n_rows,
        "optimizer_steps": steps,
        "epochs": epochs,
        "trained_tokens": times(summary.get("trained_tokens")),
        "supervised_tokens": times(summary.get("supervised_tokens")),
        "trained_tokens_per_epoch": summary.get("trained_tokens"),
        "tokens_exact": exact,
    }


def select_file(
    scores: str | Path,
    budget: float,
    out: str | Path,
    bottom: bool = False,
    *,
    unit: Unit = "examples",
    tokens: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Read a scores JSONL (``cpqs-bench score``), write the selection JSONL and a summary beside it."""
    rows = read_jsonl(scores)
    if not rows:
        raise SelectionError(f"{scores}: no scores")
    try:
        selection = select(rows, budget, bottom, unit=unit, tokens=tokens)
    except SelectionError as exc:
        raise SelectionError(f"{scores}: {exc}") from None
    write_jsonl(out, selection)
    n_kept = sum(r["kept"] for r in selection)
    summary = {
        "scores": str(scores),
        "budget": budget,
        "budget_unit": unit,
        "bottom": bottom,
        "pool": len(rows),
        "kept": n_kept,
        "excluded": sum(r["rank"] is None for r in selection),
        **selection_summary(selection, tokens),
    }
    if unit == "examples" and n_kept < budget_count(budget, len(rows)):
        summary["warning"] = f"only {n_kept} eligible examples for a budget of {budget_count(budget, len(rows))}"
    if unit == "tokens":
        assert tokens is not None
        limit = token_budget(budget, sum(trained_of(tokens[r["id"]]) for r in rows))
        summary["budget_tokens"] = limit
        if n_kept == sum(r["rank"] is not None for r in selection) and summary["trained_tokens"] < limit:
            summary["warning"] = (
                f"every eligible example kept: {summary['trained_tokens']} trained tokens for a budget of {limit}"
            )
    write_json(Path(out).with_suffix(".summary.json"), summary)
    return summary
