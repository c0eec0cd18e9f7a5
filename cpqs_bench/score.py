"""Score a pool with any selector (``cpqs-bench score``, :func:`score_pool`).

Generic over the registry: ``registry.get(name)`` builds the selector, a :class:`ScoringContext` gives it the config,
a resumable work directory, the seed and (for ``cpqs``) the checkpoint. The output has one JSON line per pool
example, in pool order: ``{"id", "score", "n_tokens"[, "exclude"]}`` (a non-finite score is written as null and
must carry an exclusion reason), written atomically, with ``<out>.summary.json`` beside it.

Multi-process: under ``accelerate launch`` (or ``torchrun``) each process scores ``examples[rank::world]`` into its
own part file; after a barrier, rank 0 merges the parts in pool order. A single process skips all of that. The
selector's own resume state (e.g. cpqs shards) lives in a per-rank work directory, so an interrupted multi-process
run resumes too.

The plugin output contract is enforced here, on every selector's output (built-in or plugin), not only in the
contract kit (:func:`cpqs_bench.testing.check_selector`): :func:`score_examples` materialises whatever iterable
``score`` returns, requires exactly one :class:`ScoreRow` per example with the example's id in pool order, one
finite float score per row (numpy scalars converted; a string, bool, NaN, inf or None is refused unless the row
carries an ``exclude`` reason, as the protocol allows, and is then written as null), a whole ``n_tokens >= 0``, and an
``extra`` that does not shadow ``id`` / ``score`` / ``n_tokens`` / ``exclude``. Any breach, and any exception the
selector raises (except an ``OSError``: a full disk or a missing file is reported as such), becomes one
:class:`ScoreContractError` line naming the selector and the first offending row.
"""

from __future__ import annotations

import json
import math
import numbers
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.io import read_jsonl, write_json, write_jsonl
from cpqs_bench.selectors import degeneracy
from cpqs_bench.selectors.base import ModelLoader, ScoreRow, ScoringContext, Selector

if TYPE_CHECKING:
    from cpqs_bench.config import Config


class ScoreError(RuntimeError):
    pass


class ScoreContractError(ScoreError):
    """A selector broke the output contract (or raised); the message names the selector and the first bad row."""


RESERVED = ("id", "score", "n_tokens", "exclude")


def _plain(value: object) -> Any:
    """numpy scalars as Python numbers (JSON writes them as numbers, not as their ``str``)."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()
    return value


def check_row(row: object, index: int, expected_id: str, selector: str = "?") -> dict[str, Any]:
    """One output row checked against the contract, as a JSON-safe dict (a missing / non-finite score of an
    excluded row becomes null). ``index`` / ``expected_id``: the example it must describe."""
    where = f"selector {selector!r}: row {index} (example {expected_id!r})"
    if not isinstance(row, ScoreRow):
        raise ScoreContractError(f"{where}: expected a ScoreRow, got {type(row).__name__}: {str(row)[:80]!r}")
    if row.id != expected_id:
        raise ScoreContractError(f"{where}: id {row.id!r} does not match the example (rows must follow input order)")
    if row.exclude is not None and (not isinstance(row.exclude, str) or not row.exclude.strip()):
        raise ScoreContractError(f"{where}: exclude must be None or a non-empty reason string, got {row.exclude!r}")
    score = _plain(row.score)
    if score is None or isinstance(score, (float, int)) and not isinstance(score, bool) and not math.isfinite(score):
        if row.exclude is None:
            raise ScoreContractError(
                f"{where}: score {score!r} is not a finite number and the row carries no exclude reason"
            )
        score = None
    elif isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise ScoreContractError(f"{where}: score must be a finite number, got {type(row.score).__name__} {score!r}")
    else:
        score = float(score)
    n_tokens = _plain(row.n_tokens)
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, numbers.Integral) or n_tokens < 0:
        raise ScoreContractError(f"{where}: n_tokens must be a whole number >= 0, got {row.n_tokens!r}")
    if not isinstance(row.extra, dict):
        raise ScoreContractError(f"{where}: extra must be a dict, got {type(row.extra).__name__}")
    shadow = sorted(k for k in row.extra if k in RESERVED)
    if shadow:
        raise ScoreContractError(f"{where}: extra may not set {shadow} (reserved: {list(RESERVED)})")
    bad_keys = [k for k in row.extra if not isinstance(k, str)]
    if bad_keys:
        raise ScoreContractError(f"{where}: extra keys must be strings, got {bad_keys[:3]!r}")
    out: dict[str, Any] = {"id": row.id, "score": score, "n_tokens": int(n_tokens)}
    if row.exclude is not None:
        out["exclude"] = row.exclude
    for k, v in row.extra.items():
        out[k] = _plain(v)
    try:
        json.dumps(out, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ScoreContractError(f"{where}: extra is not JSON-serialisable ({exc})") from None
    return out


def row_dict(row: ScoreRow) -> dict[str, Any]:
    """A JSON-safe output row; a missing/non-finite score is only allowed with an exclusion reason."""
    return check_row(row, 0, row.id)


def score_examples(
    selector: Selector, examples: Sequence[Example], ctx: ScoringContext, name: str | None = None
) -> list[dict[str, Any]]:
    """Run one selector and check its output contract (see the module docstring); any breach or exception is one
    :class:`ScoreContractError` line naming the selector (``name``: as registered; default its ``name``) and the
    first offending row."""
    name = name or str(getattr(selector, "name", type(selector).__name__))
    examples = list(examples)
    first = f" (first example {examples[0].id!r})" if examples else ""
    try:
        rows = selector.score(list(examples), ctx)
        if rows is None or isinstance(rows, (str, bytes, dict)) or not hasattr(rows, "__iter__"):
            raise ScoreContractError(
                f"selector {name!r}: score() returned {type(rows).__name__}, not a list of ScoreRow "
                f"(one per example, {len(examples)} expected)"
            )
        rows = list(rows)  # a generator / tuple / any iterable: materialised once, here
    except (ScoreContractError, OSError):  # an OSError (full disk, missing file) is the machine's, not the plugin's
        raise
    except Exception as exc:  # a plugin's failure, reported as one line (CPQS_DEBUG=1 shows the traceback)
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise ScoreContractError(
            f"selector {name!r} failed while scoring {len(examples)} examples{first}: {type(exc).__name__}: {msg}"
        ) from exc
    out = []
    for i, ex in enumerate(examples):
        if i >= len(rows):
            raise ScoreContractError(
                f"selector {name!r}: returned {len(rows)} rows for {len(examples)} examples; "
                f"first missing: row {i} (example {ex.id!r})"
            )
        out.append(check_row(rows[i], i, ex.id, name))
    if len(rows) > len(examples):
        extra_row = rows[len(examples)]
        raise ScoreContractError(
            f"selector {name!r}: returned {len(rows)} rows for {len(examples)} examples; first extra: row "
            f"{len(examples)} ({getattr(extra_row, 'id', extra_row)!r})"
        )
    return out


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


@dataclass(frozen=True)
class PoolFacts:
    """What a score summary says about the pool it scored: ``source`` (the summary's ``data``), its ``sha256``
    (``data_sha256``) and, when given, ``overlap`` (e.g. a selector's training overlap with this pool), recorded as
    is; none of them changes a score."""

    source: str | None = None
    sha256: str | None = None
    overlap: dict[str, Any] | None = None


def score_pool(
    cfg: Config,
    examples: Sequence[Example],
    out: str | Path,
    *,
    selector: str,
    checkpoint: str | Path | None = None,
    workdir: str | Path | None = None,
    loader: ModelLoader | None = None,
    facts: PoolFacts = PoolFacts(),
) -> dict[str, Any]:
    """Score ``examples`` with the registered ``selector`` into ``out`` (one row per example, pool order); returns the
    summary (rank 0) or this rank's part info. ``facts`` describe the pool in the summary (:class:`PoolFacts`)."""
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
        # scratch that selectors scoring this pool from one workdir reuse (IFD's losses: ifd, ifd_ppl, perplexity;
        # keyed on their code and inputs), per rank
        shared_workdir=work / "shared" / f"rank{rank}-of{world}",
    )
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    mine = examples[rank::world]
    t0 = time.perf_counter()
    rows = score_examples(sel, mine, ctx, name=selector)
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
        "data": facts.source,
        "data_sha256": facts.sha256,
        "n": n,
        "excluded": sum(1 for r in rows if r.get("exclude") is not None),
        "processes": world,
        "seconds": seconds,
        "examples_per_second": n / seconds if seconds > 0 else None,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "degeneracy": degeneracy.report(rows),
    }  # ties, distinct values, NaN count, Spearman with length
    if facts.overlap is not None:
        summary["overlap"] = facts.overlap
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
