"""Score a pool with any selector (``cpqs-bench score``, :func:`score_pool`).

Generic over the registry: ``registry.get(name)`` builds the selector, a :class:`ScoringContext` gives it the config,
a resumable work directory, the seed and (for ``cpqs``) the checkpoint. The output has one JSON line per pool
example, in pool order: ``{"id", "score", "n_tokens"[, "exclude"]}`` (a non-finite score is written as null and
must carry an exclusion reason), written atomically, with ``<out>.summary.json`` beside it.

Multi-process: under ``accelerate launch`` (or ``torchrun``) each process scores ``examples[rank::world]`` into its
own part file; after a barrier, rank 0 merges the parts in pool order. A single process skips all of that. The
selector's own resume state (e.g. cpqs shards) lives in a per-rank work directory, so an interrupted multi-process
run resumes too.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.io import read_jsonl, write_json, write_jsonl
from cpqs_bench.selectors import degeneracy
from cpqs_bench.selectors.base import ScoreRow, ScoringContext


class ScoreError(RuntimeError):
    pass


def row_dict(row: ScoreRow) -> dict[str, Any]:
    """A JSON-safe output row; a missing/non-finite score is only allowed with an exclusion reason."""
    out = row.to_dict()
    score = out.get("score")
    if score is None or (isinstance(score, float) and not math.isfinite(score)):
        if row.exclude is None:
            raise ScoreError(f"example {row.id!r}: score {score!r} without an exclusion reason")
        out["score"] = None
    return out


def score_examples(selector: Any, examples: Sequence[Example], ctx: ScoringContext) -> list[dict[str, Any]]:
    """Run one selector and check its contract (one row per example, same ids, same order)."""
    rows = selector.score(list(examples), ctx)
    if [r.id for r in rows] != [ex.id for ex in examples]:
        raise ScoreError(
            f"selector {selector.name!r} returned {len(rows)} rows whose ids do not match the "
            f"{len(examples)} examples in order"
        )
    return [row_dict(r) for r in rows]


def _dist() -> Any:
    """accelerate's PartialState when launched with several processes, else None (no process group needed)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    # Without an accelerator, accelerate only forms a (gloo) CPU group when asked to: cpu=True.
    state = PartialState(cpu=not torch.cuda.is_available())
    world = int(os.environ["WORLD_SIZE"])
    if state.num_processes != world:  # every process would otherwise write the whole output
        raise ScoreError(f"launched with WORLD_SIZE={world} but accelerate formed a group of {state.num_processes}")
    return state


def parts_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def score_pool(
    cfg: Any,
    examples: Sequence[Example],
    out: str | Path,
    *,
    selector: str,
    checkpoint: str | Path | None = None,
    workdir: str | Path | None = None,
    loader: Any = None,
    source: str | None = None,
    data_sha256: str | None = None,
    overlap: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score ``examples`` with the registered ``selector`` into ``out`` (one row per example, pool order); returns the
    summary (rank 0) or this rank's part info. ``source`` / ``data_sha256`` describe the pool in the summary;
    ``overlap`` (e.g. a selector's training overlap with this pool) is recorded in it as given."""
    from cpqs_bench.selectors import registry

    examples = list(examples)
    sel = registry.get(selector, dict(cfg.selectors.plugins))
    state = _dist()
    rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)
    out = Path(out)
    work = Path(workdir) if workdir is not None else out.with_name(out.name + ".work")
    ctx = ScoringContext(
        config=cfg,
        workdir=work / selector / f"rank{rank}-of{world}",
        seed=cfg.selectors.seed,
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
        loader=loader,
    )
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    mine = examples[rank::world]
    t0 = time.perf_counter()
    rows = score_examples(sel, mine, ctx)
    seconds = time.perf_counter() - t0
    if world > 1:
        part = parts_dir(out) / f"rank{rank:03d}-of{world:03d}.jsonl"
        write_jsonl(part, rows)
        write_json(part.with_suffix(".json"), {"seconds": seconds, "n": len(rows)})
        state.wait_for_everyone()
        if rank == 0:
            rows = merge_parts(out, examples, world)
            seconds = max(read_jsonl_meta(parts_dir(out) / f"rank{r:03d}-of{world:03d}.json") for r in range(world))
        state.wait_for_everyone()
        if rank != 0:
            return {"rank": rank, "world": world, "scored": len(mine)}
    n = write_jsonl(out, rows)
    summary = {
        "selector": selector,
        "data": source,
        "data_sha256": data_sha256,
        "n": n,
        "excluded": sum(1 for r in rows if r.get("exclude") is not None),
        "processes": world,
        "seconds": seconds,
        "examples_per_second": n / seconds if seconds > 0 else None,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "degeneracy": degeneracy.report(rows),
    }  # ties, distinct values, NaN count, Spearman with length
    if overlap is not None:
        summary["overlap"] = overlap
    elif checkpoint is not None and selector == "cpqs":
        summary["overlap"] = training_overlap(checkpoint, examples)
    write_json(out.with_name(out.name + ".summary.json"), summary)
    return summary


def training_overlap(checkpoint: str | Path, examples: Sequence[Example]) -> dict[str, Any]:
    """How many pool instructions a CPQS checkpoint was trained on (from its ``training_instructions.json``)."""
    from cpqs_bench.selectors.cpqs.checkpoint import training_instruction_overlap

    return training_instruction_overlap(checkpoint, examples)


def read_jsonl_meta(path: Path) -> float:
    return float(json.loads(path.read_text())["seconds"])


def merge_parts(out: str | Path, examples: Sequence[Example], world: int) -> list[dict[str, Any]]:
    """Rows of every rank's part, back in pool order; every example exactly once."""
    by_id: dict[str, dict[str, Any]] = {}
    for r in range(world):
        part = parts_dir(out) / f"rank{r:03d}-of{world:03d}.jsonl"
        if not part.exists():
            raise ScoreError(f"{part} is missing: rank {r} did not finish")
        for row in read_jsonl(part):
            if row["id"] in by_id:
                raise ScoreError(f"{part}: id {row['id']!r} scored by two ranks")
            by_id[row["id"]] = row
    missing = [ex.id for ex in examples if ex.id not in by_id]
    if missing or len(by_id) != len(examples):
        raise ScoreError(
            f"merged parts hold {len(by_id)} rows for {len(examples)} examples (first missing: {missing[:1]})"
        )
    return [by_id[ex.id] for ex in examples]
