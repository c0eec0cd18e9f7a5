"""``rds``: RDS+ (Ivison et al. 2025, "Large-Scale Data Selection for Instruction Tuning", arXiv:2503.01807; code
``hamishivi/automated-instruction-selection``) — cosine similarity of the target model's pooled last hidden states
to a small query (dev) set.

Followed files of hamishivi/automated-instruction-selection:

1. **Pooling** (``minimal_multitask/compute_influence_cosinesim.py``, ``--pooling weighted_mean``, the default and
   what ``shell_scripts/core_commands/index_selection_and_creation/rds/*.sh`` run): the last hidden state
   (``hidden_states[-1]``, after the final norm) of the whole conversation — prompt and response, the response
   followed by the end-of-turn token (``encode_with_messages_format`` appends EOS) — averaged with the SGPT position
   weights ``w_t = (t + 1) / sum_s (s + 1)``, then L2-normalised; the same for pool and query examples.
2. **Score** (same file): ``cos(query, pool)``, a matrix of query x pool; per task (one eval dataset = one pickle)
   ``get_top_aggregated_influences.py --selection_method max`` reduces it to each pool example's **max** cosine
   over that task's query examples.
3. **Several tasks** (``get_top_aggregated_influences.py --aggregation_method round_robin``): each task's pool
   examples sorted by that max, best first; the tasks take turns popping their next best example; an example
   another task already took is skipped (that turn is spent), until the budget is full.

**Scores.** With one task the score *is* the max cosine (higher = keep; round robin over one task is exactly that
order). With several tasks the round robin is run over the whole pool and exposed as a **pick-order score**, as
``kcenter`` does: the j-th pick of ``n`` eligible rows scores ``1 - j / n``, so ``select``'s top-k for any budget
is the reference's round-robin selection of k. ``extra`` carries ``max_cos`` (task -> max cosine) and, with several
tasks, ``rr_task`` (the task whose turn took it) and ``rr_pick`` (the pick index).

**Query set.** ``selectors.rds.queries``: a named dataset (resolved through the data mirror), a file, or an
``hf:`` spec, read by :func:`cpqs_bench.data.pool.read_pool`; several comma-separated sources are several tasks
(each source one task). ``query_task_field`` instead names a metadata field that gives each query's task (e.g.
``dataset`` of ``alpaca_eval/gpt4``: selfinstruct, oasst, koala, helpful_base, vicuna) and ``query_tasks`` keeps
only some of those tasks (``paper_general``: oasst and helpful_base; the other three are the Self-Instruct, Koala and
Vicuna prompts its pairwise judge evaluates on). ``query_offset`` skips the
first rows of each source and ``query_limit`` caps it, so a query set can be a slice of the pool's own dataset that
the pool does not hold (``paper_gsm8k``: GSM8K-train rows after the pool's ``data.pool_limit``). The code sets of the mirror store the solution as ``canonical_solution``: :data:`QUERY_FIELD_MAPS` maps
it to the ``code`` schema's ``completion`` for ``mbpp_plus`` / ``humaneval`` / ``humaneval_plus``.

**Target-aware.** The score depends on a sample of the target *task* distribution, so ``RDSSelector.target_aware``
is True (the leaderboard marks such arms) and the query set must never be evaluation items:
:func:`check_queries_disjoint` lists every query whose instruction is an evaluation item's (the preflight refuses
the run when the list is not empty). Nor may a query be a pool example (the pool example would score a perfect
cosine against itself): :func:`rds_rows` refuses a query set whose instruction matches a pool example's, and the
preflight says so before any stage runs.

Differences from the reference:

* **Attention mask applied** in the position weighting (``w_t = (t + 1) m_t / sum_s (s + 1) m_s``). The reference
  weights every position of the padded batch; it runs with ``--batch_size 1`` (no padding), where the two agree,
  and here batches are right-padded, so padding positions must get weight 0.
* The conversation is rendered with the experiment's prompt template (:func:`cpqs_bench.prompts.render`, the SFT
  format) instead of the reference's Tulu ``<|user|>``/``<|assistant|>`` format; a response longer than
  ``min(selectors.rds.max_length, model context)`` is truncated from the end (reference: ``max_seq_length=2048``,
  tokenizer truncation); an example whose prompt alone does not fit is excluded (``rds_prompt_too_long``).
* Round robin over the whole pool (a ranking), not stopped at the budget; ties in a task's ordering are broken by
  id (the reference: Python's stable sort over the pickle's order).
* Embeddings in float32 from the model's dtype; empty responses are excluded (the data policy), not embedded.
* Several processes (``accelerate launch``: :func:`cpqs_bench.score.score_pool` gives each its slice of the pool):
  each embeds its slice and the whole query set; with one task the max cosine of an example is its own, with
  several the per-task max cosines are gathered (:func:`cpqs_bench.selectors.distributed.all_gather`) and every
  process runs the same round robin over the whole pool, so the merged scores equal one process's.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from cpqs_bench import prompts
from cpqs_bench.data.example import Example
from cpqs_bench.models import model_max_length
from cpqs_bench.selectors.base import (
    EMPTY_RESPONSE,
    Needs,
    ScoreRow,
    ScoringContext,
    is_empty_response,
    response_tokens,
)
from cpqs_bench.selectors.distributed import all_gather

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cpqs_bench.config import Config

PROMPT_TOO_LONG = "rds_prompt_too_long"
DEFAULT_TASK = "queries"
# mirror code sets whose solution field the readers do not detect: read with the ``code`` schema's field map
QUERY_FIELD_MAPS: dict[str, dict[str, str]] = {
    "mbpp_plus": {"completion": "canonical_solution"},
    "humaneval": {"completion": "canonical_solution"},
    "humaneval_plus": {"completion": "canonical_solution"},
}


# --------------------------------------------------------------------------------------------------- pooling
def weighted_mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SGPT position-weighted mean of ``hidden`` (batch, T, H) under ``mask`` (batch, T): weight ``t + 1`` on real
    position ``t``, 0 on padding, normalised per row; then L2-normalised (compute_influence_cosinesim.py)."""
    import torch

    mask = mask.to(hidden.dtype)
    pos = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype).unsqueeze(0)
    w = pos * mask
    w = w / w.sum(dim=1, keepdim=True).clamp(min=1e-12)
    pooled = (hidden * w.unsqueeze(-1)).sum(dim=1)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def _render(tok: PreTrainedTokenizerBase, ex: Example, cfg: Config, max_length: int) -> prompts.Rendered | None:
    return prompts.render(
        tok,
        ex,
        cfg.prompt.template,
        system_prompt=cfg.prompt.system_prompt,
        train_eot=True,
        max_length=max_length,
        overflow="truncate",
    )


def rds_max_length(model: PreTrainedModel, cfg: Config) -> int:
    """``selectors.rds.max_length`` capped at the model's context length."""
    limit = model_max_length(model)
    m = int(cfg.selectors.rds.max_length)
    return m if limit is None else min(m, limit)


def embed(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    cfg: Config,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """id -> the L2-normalised position-weighted mean of the last hidden state over the rendered conversation, for
    every example that renders (empty responses and prompts longer than the limit have none)."""
    import torch

    from cpqs_bench.features import backbone

    batch_size = max(1, int(batch_size or cfg.selectors.rds.batch_size))
    max_length = rds_max_length(model, cfg)
    rendered: list[tuple[str, tuple[int, ...]]] = []
    for ex in examples:
        if is_empty_response(ex):
            continue
        r = _render(tok, ex, cfg, max_length)
        if r is not None:
            rendered.append((ex.id, r.input_ids))
    rendered.sort(key=lambda x: (len(x[1]), x[0]))  # similar lengths per batch; batches independent of input order
    base = backbone(model)
    device = next(base.parameters()).device
    pad = prompts.pad_token_id(tok)
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(rendered), batch_size):
        chunk = rendered[start : start + batch_size]
        ids, mask = prompts.right_pad([seq for _, seq in chunk], pad)
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        pooled = weighted_mean_pool(hidden, mask).cpu().numpy().astype(np.float32)
        for (ex_id, _), vec in zip(chunk, pooled):
            out[ex_id] = vec
    return out


# --------------------------------------------------------------------------------------------------- scoring
def max_cosine(pool: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Per pool row, the max cosine over the query rows (rows already L2-normalised)."""
    if len(queries) == 0:
        raise ValueError("RDS+: no query embedding to compare with")
    return (pool.astype(np.float64) @ queries.astype(np.float64).T).max(axis=1)


def round_robin(per_task: Mapping[str, Mapping[str, float]]) -> list[tuple[str, str]]:
    """get_top_aggregated_influences.py's round robin over the whole pool: ``[(id, task), ...]`` in pick order.

    Each task's ids sorted by its score (highest first, ties by id); tasks take turns in the given order popping
    their next id; an id already picked is skipped and that turn is spent."""
    queues = {t: sorted(s, key=lambda i: (-s[i], i)) for t, s in per_task.items()}
    pos = dict.fromkeys(queues, 0)
    picked: dict[str, str] = {}
    total = len({i for s in per_task.values() for i in s})
    while len(picked) < total:
        for task, queue in queues.items():
            if pos[task] >= len(queue):
                continue
            i = queue[pos[task]]
            pos[task] += 1
            if i not in picked:
                picked[i] = task
    return list(picked.items())


# --------------------------------------------------------------------------------------------------- queries
def query_sources(spec: str) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()]


def load_queries(cfg: Config, spec: str | None = None, limit: int | None = -1) -> list[tuple[str, Example]]:
    """``[(task, query example), ...]`` from ``selectors.rds.queries`` (or ``spec``): each comma-separated source
    read by :func:`cpqs_bench.data.pool.read_pool` with the data mirror, at most ``query_limit`` each; the task is
    ``query_task_field``'s metadata value when set, else the source."""
    from cpqs_bench.data.pool import read_pool

    r = cfg.selectors.rds
    spec = spec if spec is not None else r.queries
    if not spec:
        raise ValueError(
            "selector 'rds' needs a query set: selectors.rds.queries=NAME (a named dev set, a file or an hf: spec; "
            "never evaluation items), e.g. gsm8k_train or alpaca_eval/gpt4"
        )
    limit = r.query_limit if limit == -1 else limit
    if r.query_tasks and not r.query_task_field:
        raise ValueError("selectors.rds.query_tasks needs selectors.rds.query_task_field (the field naming the task)")
    mirror = cfg.data.mirror  # None: read_pool falls back to $CPQS_DATA_MIRROR
    out: list[tuple[str, Example]] = []
    for source in query_sources(spec):
        pool = read_pool(
            source, mirror=mirror, limit=limit, offset=r.query_offset, field_map=QUERY_FIELD_MAPS.get(source)
        )
        for ex in pool.examples:
            if r.query_task_field:
                task = ex.metadata.get(r.query_task_field)
                if task is None:
                    raise ValueError(
                        f"{pool.source}: query {ex.id!r} has no metadata field {r.query_task_field!r} "
                        f"(selectors.rds.query_task_field); fields: {sorted(ex.metadata)}"
                    )
                if not r.query_tasks or str(task) in r.query_tasks:
                    out.append((str(task), ex))
            else:
                out.append((source, ex))
    if not out:
        raise ValueError(
            f"selectors.rds.queries={spec!r}: no query examples read"
            + (f" (query_tasks {list(r.query_tasks)})" if r.query_tasks else "")
        )
    return out


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()


def _instruction(item: Example | str) -> str:
    if isinstance(item, Example):
        return "\n".join(m["content"] for m in item.prompt if m["role"] != "system")
    return str(item)


def check_queries_disjoint(
    queries: Sequence[Example | tuple[str, Example]],
    eval_items: Sequence[Example | str],
    show: int = 10,
    what: str = "evaluation items",
    setting: str = "selectors.rds.queries",
) -> list[str]:
    """Problems (empty = fine): every query whose instruction, normalised (NFKC, whitespace collapsed, casefolded),
    equals an item's of ``eval_items`` (an :class:`Example`'s non-system prompt turns, or a string). The preflight
    refuses a run with a non-empty list: a query set must never be evaluation items (``what``), nor pool examples
    (``what="pool examples"``, also refused by the selectors themselves)."""
    index: dict[str, str] = {}
    for n, item in enumerate(eval_items):
        key = _norm(_instruction(item))
        if key:
            index.setdefault(key, item.id if isinstance(item, Example) else f"#{n}")
    hits = []
    for q in queries:
        ex = q[1] if isinstance(q, tuple) else q
        key = _norm(_instruction(ex))
        if key in index:
            hits.append(f"query {ex.id!r} is {what[:-1] if what.endswith('s') else what} {index[key]!r}: {key[:80]!r}")
    if not hits:
        return []
    problems = [
        f"{setting}: {len(hits)} of {len(queries)} query examples are {what} (a query set must be a dev set "
        "disjoint from the pool and from what is evaluated)"
    ]
    problems += hits[:show]
    if len(hits) > show:
        problems.append(f"... and {len(hits) - show} more")
    return problems


def refuse_pool_queries(
    queries: Sequence[Example | tuple[str, Example]], pool: Sequence[Example], setting: str
) -> None:
    """Raise when a query is a pool example (normalised instruction, :func:`check_queries_disjoint`): a target-aware
    selector would rank the query's own copy first. Take the queries from rows the pool does not hold (another split,
    or ``query_offset`` past the pool's ``data.pool_limit``)."""
    problems = check_queries_disjoint(queries, pool, show=3, what="pool examples", setting=setting)
    if problems:
        raise ValueError(
            "; ".join(problems) + f"; take {setting} from rows the pool does not hold (another split, or "
            f"{setting.rpartition('.')[0]}.query_offset past the pool's data.pool_limit)"
        )


# --------------------------------------------------------------------------------------------------- selector
def rds_rows(
    examples: Sequence[Example], ctx: ScoringContext, queries: Sequence[tuple[str, Example]]
) -> list[ScoreRow]:
    """Rows (input order) of RDS+ over ``examples`` against ``[(task, query), ...]``."""
    cfg = ctx.config
    refuse_pool_queries(queries, examples, "selectors.rds.queries")
    model, tok, _ = ctx.model()
    pool_emb = embed(model, tok, examples, cfg)
    q_emb = embed(model, tok, [q for _, q in queries], cfg)
    tasks: dict[str, list[np.ndarray]] = {}
    for task, q in queries:
        if q.id in q_emb:
            tasks.setdefault(task, []).append(q_emb[q.id])
    if not tasks:
        raise ValueError(f"RDS+: none of the {len(queries)} query examples renders within the length limit")
    ids = sorted(pool_emb)
    per_task: dict[str, dict[str, float]] = {}
    if ids:
        mat = np.stack([pool_emb[i] for i in ids])
        for task, vecs in tasks.items():
            per_task[task] = dict(zip(ids, (float(v) for v in max_cosine(mat, np.stack(vecs)))))
    score: dict[str, float] = {}
    pick: dict[str, tuple[int, str]] = {}
    if len(tasks) == 1:
        score = dict(next(iter(per_task.values()), {}))
    else:
        # the round robin is a pick order over the whole pool: under several processes (score_pool's slices) every
        # process ranks the pool from everyone's max cosines (selectors/distributed.py) and keeps its own rows
        merged: dict[str, dict[str, float]] = {t: {} for t in tasks}
        for part in all_gather(per_task):
            for task, s in part.items():
                merged[task].update(s)
        order = round_robin(merged) if any(merged.values()) else []
        n = len(order)
        for j, (i, task) in enumerate(order):
            score[i] = 1.0 - j / n
            pick[i] = (j, task)
    rows = []
    for ex in examples:
        n_tok = len(response_tokens(tok, ex, cfg.prompt))
        if is_empty_response(ex):
            rows.append(ScoreRow(ex.id, math.nan, n_tok, exclude=EMPTY_RESPONSE))
        elif ex.id not in score:
            rows.append(ScoreRow(ex.id, math.nan, n_tok, exclude=PROMPT_TOO_LONG))
        else:
            extra: dict[str, Any] = {"max_cos": {t: s[ex.id] for t, s in per_task.items()}}
            if ex.id in pick:
                extra["rr_pick"], extra["rr_task"] = pick[ex.id]
            rows.append(ScoreRow(ex.id, score[ex.id], n_tok, extra=extra))
    return rows


class RDSSelector:
    """RDS+ against ``selectors.rds.queries`` with the target model (see the module docstring)."""

    name = "rds"
    needs = Needs.TARGET_MODEL
    target_aware = True  # scores depend on a sample of the target tasks (the leaderboard marks the arm)

    def __init__(self, queries: Sequence[tuple[str, Example]] | None = None):
        self.queries = list(queries) if queries is not None else None  # tests / callers that hold the set already

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        queries = self.queries if self.queries is not None else load_queries(ctx.config)
        return rds_rows(examples, ctx, queries)
