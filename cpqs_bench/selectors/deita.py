"""``deita``: DEITA (Liu et al. 2024, "What Makes Good Data for Alignment?"): complexity × quality, score-first
diversity filter.

Followed, in ``hkust-nlp/deita``:

* scorers: ``src/deita/selection/scorer/base.py`` (``Scorer.infer_score``) and ``llama_scorer.py`` /
  ``mistral_scorer.py`` (the prompts, identical in both) — the complexity scorer
  (``hkust-nlp/deita-complexity-scorer``) reads :data:`COMPLEXITY_TEMPLATE` filled with the instruction, the quality
  scorer (``hkust-nlp/deita-quality-scorer``) :data:`QUALITY_TEMPLATE` with instruction and response; the raw prompt
  is tokenised with the scorer's tokenizer (``tokenizer.encode``: its BOS, no chat template); the score is the
  *expected rating* ``Σ_k k · softmax(logits[id_k])`` over the logits of the rating tokens "1" … "6" at the first
  generated position (:func:`expected_score`).
* per conversation: ``src/deita/pipeline/score_pipeline.py`` (``_load_sharegpt``) scores every (user turn, answer)
  pair; ``src/deita/selection/filter/combined_filter.py`` multiplies complexity and quality per turn and sums over
  turns: the evol score ``Σ_turns complexity × quality``.
* selection: ``src/deita/selection/filter/base.py`` (``IterativeFilter.filter``): examples sorted by the evol score
  (highest first); walking that order, an example is kept when its cosine similarity to every example kept so far
  is at most ``threshold`` (``--threshold 0.9``), until ``data_size`` are kept (:func:`score_first_filter`).
  Here that order becomes a pick-order score (:func:`pick_order`): the kept examples in filter order, then the
  filtered-out ones by evol score, so ``select``'s top-k is DEITA's pick for any budget.

Differences from the reference:

1. The token id of each rating is found in the scorer's own tokenizer (the id whose token decodes to the digit,
   :func:`rating_token_ids`) instead of hard-coded Llama / Mistral ids (the same ids for those tokenizers; tiny
   stand-in scorers in tests have others). The readout uses the next-token logits of one forward pass (the
   reference's ``generate(..., output_scores=True).scores[0]``: the same logits under greedy decoding, no
   processors). No fallback score of 3.0: a rating token missing from the vocabulary is an error.
2. Prompts longer than ``selectors.deita.max_length`` tokens (capped by the scorer's context; the reference: no
   limit) have the filled-in field (the instruction, or for quality the response) cut in tokens so that the template's
   tail ("##Quality: ") is always read; the pieces are then tokenised separately (the reference tokenises the whole
   string).
3. Multi-turn prompts: system turns are skipped; each user turn is paired with the assistant turn after it and the
   last user turn with the example's response (the reference's ShareGPT pairing).
4. Embeddings for the filter: ``selectors.deita.embedding`` — ``"target"``: the target model's pooled last hidden
   state over the response span, as the diversity selectors' (:func:`cpqs_bench.selectors.diversity.embed_examples`;
   the reference embeds with its own Llama embedder, ``selection/embedder``); or a model spec (mean-pooled).
   Similarity ``> threshold`` rejects, as the reference (its ``threshold`` is on cosine *similarity*, its code
   calls it distance); processed one example at a time (the reference's ``batch_size`` 1 default).
5. Batching: prompts of one scorer are batched (``selectors.deita.batch_size``), left-padded with explicit position
   ids so a padded prompt gives the logits it gives alone (up to float noise); the reference scores one at a time.
6. Several processes (``accelerate launch``, :func:`cpqs_bench.score.score_pool`'s slices): each process runs the
   scorers and embeddings over its slice; the evol scores and embeddings are gathered to every process
   (:func:`cpqs_bench.selectors.distributed.all_gather`), each runs the same global filter and writes its slice's
   rows: the merged scores equal one process's. The reference runs one process.
"""

from __future__ import annotations

import math
from dataclasses import replace as dc_replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from cpqs_bench.data.example import Example
from cpqs_bench.selectors.base import EMPTY_RESPONSE, Needs, ScoreRow, ScoringContext, is_empty_response
from cpqs_bench.selectors.distributed import all_gather

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# llama_scorer.py / mistral_scorer.py (identical strings, including the spaces)
COMPLEXITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
    "##Query: {instruction}  \n##Complexity: "
)
QUALITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the quality score of the Response corresponding to the Question. "
    "\n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: "
)
RATINGS = (1, 2, 3, 4, 5, 6)  # base.py score_template
NO_EMBEDDING = "no_embedding"


# --------------------------------------------------------------------------------------------------- readout
def rating_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The vocabulary id of each rating "1" … "6": the last id of ``encode(digit)`` when it decodes to the digit."""
    ids = []
    for k in RATINGS:
        enc = tokenizer.encode(str(k), add_special_tokens=False)
        if not enc or tokenizer.decode([enc[-1]]).strip() != str(k):
            raise ValueError(f"the scorer's tokenizer has no single token for the rating {k} (encodes as {enc})")
        ids.append(int(enc[-1]))
    return ids


def expected_score(logits: torch.Tensor | Sequence[float], rating_ids: Sequence[int]) -> float:
    """``base.py infer_score``: softmax over the rating tokens' logits, times 1 … 6, summed."""
    import torch

    sel = torch.as_tensor(logits, dtype=torch.float64)[list(rating_ids)]
    probs = torch.softmax(sel, dim=0)
    return float((probs * torch.tensor(RATINGS, dtype=torch.float64)).sum())


def turns(ex: Example) -> list[tuple[str, str]]:
    """(instruction, response) per user turn: each user turn with the assistant turn after it, the last one with the
    example's response; system turns skipped."""
    msgs = [m for m in ex.prompt if m["role"] != "system"]
    out: list[tuple[str, str]] = []
    for i, m in enumerate(msgs):
        if m["role"] != "user":
            continue
        nxt = msgs[i + 1] if i + 1 < len(msgs) else None
        if nxt is not None and nxt["role"] == "assistant":
            out.append((m["content"], nxt["content"]))
        elif nxt is None:
            out.append((m["content"], ex.response))
    if not out:  # no user turn: the response scored against an empty instruction
        out.append(("", ex.response))
    return out


def prompt_ids(
    tokenizer: PreTrainedTokenizerBase, template: str, fields: dict[str, str], cut: str, max_length: int
) -> list[int]:
    """The filled template's token ids (``tokenizer.encode``); over ``max_length``, the field ``cut`` is shortened
    in tokens so that the template's tail is kept."""
    ids = tokenizer.encode(template.format(**fields))
    if len(ids) <= max_length:
        return list(ids)
    marker = "\x00CUT\x00"
    head, tail = template.format(**{**fields, cut: marker}).split(marker)
    head_ids = tokenizer.encode(head)
    tail_ids = tokenizer.encode(tail, add_special_tokens=False)
    room = max_length - len(head_ids) - len(tail_ids)
    if room <= 0:
        raise ValueError(f"selectors.deita.max_length={max_length} leaves no room for the {cut!r} field")
    body = tokenizer.encode(fields[cut], add_special_tokens=False)[:room]
    return list(head_ids) + list(body) + list(tail_ids)


def next_token_logits(model: PreTrainedModel, seqs: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Logits of the token after each sequence (left-padded batch, explicit position ids)."""
    import torch

    device = next(model.parameters()).device
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(list(s))
        mask[i, width - len(s) :] = 1
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device))
    return out.logits[:, -1, :].float().cpu()


def expected_scores(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Sequence[int]], batch_size: int
) -> list[float]:
    from cpqs_bench.prompts import pad_token_id

    rating = rating_token_ids(tokenizer)
    pad = pad_token_id(tokenizer)
    out = [0.0] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))  # similar lengths per batch
    for st in range(0, len(order), max(1, batch_size)):
        idx = order[st : st + max(1, batch_size)]
        logits = next_token_logits(model, [prompts[i] for i in idx], pad)
        for row, i in enumerate(idx):
            out[i] = expected_score(logits[row], rating)
    return out


# ------------------------------------------------------------------------------------------------- the filter
def score_first_filter(scores: Sequence[float], emb: np.ndarray, threshold: float) -> tuple[list[int], list[int]]:
    """``IterativeFilter.filter`` (batch size 1): indices sorted by score (highest first; ties by index); an index
    is kept when its cosine similarity to every kept one is ``<= threshold``. Returns (kept, rejected), each in
    score order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    unit = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
    kept: list[int] = []
    rejected: list[int] = []
    for i in order:
        if kept and float(np.max(unit[kept] @ unit[i])) > threshold:
            rejected.append(i)
        else:
            kept.append(i)
    return kept, rejected


def pick_order(scores: Sequence[float], emb: np.ndarray, threshold: float) -> tuple[list[float], list[bool]]:
    """A score per index whose descending order is the filter's pick order (kept ones first, in filter order, then
    the rejected ones by score): ``n − position``. Also whether the filter kept each index."""
    kept, rejected = score_first_filter(scores, emb, threshold)
    n = len(scores)
    out = [0.0] * n
    flags = [False] * n
    for pos, i in enumerate(kept + rejected):
        out[i] = float(n - pos)
    for i in kept:
        flags[i] = True
    return out, flags


# --------------------------------------------------------------------------------------------------- selector
def _scorer(ctx: ScoringContext, spec: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, int]:
    """The scorer model, its tokenizer and the prompt limit: ``selectors.deita.max_length`` capped by its context."""
    from cpqs_bench.models import model_max_length

    dc = ctx.config.selectors.deita
    model, tok, _ = ctx.model(spec, dc.revision)
    limit = model_max_length(model)
    return model, tok, dc.max_length if limit is None else min(dc.max_length, limit)


def evol_scores(examples: Sequence[Example], ctx: ScoringContext) -> dict[str, dict[str, Any]]:
    """id -> {"complexity": [...per turn], "quality": [...], "evol": Σ c·q} for the non-empty examples."""
    dc = ctx.config.selectors.deita
    todo = [ex for ex in examples if not is_empty_response(ex)]
    pairs = [(ex.id, t) for ex in todo for t in turns(ex)]
    model, tok, max_length = _scorer(ctx, dc.complexity_model)
    c_prompts = [
        prompt_ids(tok, COMPLEXITY_TEMPLATE, {"instruction": q}, "instruction", max_length) for _, (q, _) in pairs
    ]
    complexity = expected_scores(model, tok, c_prompts, dc.batch_size)
    model, tok, max_length = _scorer(ctx, dc.quality_model)
    q_prompts = [
        prompt_ids(tok, QUALITY_TEMPLATE, {"instruction": q, "output": r}, "output", max_length) for _, (q, r) in pairs
    ]
    quality = expected_scores(model, tok, q_prompts, dc.batch_size)
    out: dict[str, dict[str, Any]] = {ex.id: {"complexity": [], "quality": []} for ex in todo}
    for (ex_id, _), c, q in zip(pairs, complexity, quality):
        out[ex_id]["complexity"].append(c)
        out[ex_id]["quality"].append(q)
    for v in out.values():
        v["evol"] = float(sum(c * q for c, q in zip(v["complexity"], v["quality"])))
    return out


def _embeddings(examples: Sequence[Example], ctx: ScoringContext) -> dict[str, np.ndarray]:
    from cpqs_bench.config import replace
    from cpqs_bench.selectors.diversity import embed_examples

    dc = ctx.config.selectors.deita
    cfg = replace(ctx.config, **{"selectors.diversity.embedding": dc.embedding})
    return embed_examples(examples, dc_replace(ctx, config=cfg))


class DEITASelector:
    """DEITA: complexity × quality (expected ratings of the two scorers), then the score-first diversity filter."""

    name = "deita"
    needs = Needs.PROXY_MODEL  # the two scorer models (the target model too, for "target" embeddings)

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        from cpqs_bench.selectors.diversity import _n_tokens

        dc = ctx.config.selectors.deita
        if not 0 <= dc.diversity_threshold <= 1:
            raise ValueError(f"selectors.deita.diversity_threshold must be in [0, 1], got {dc.diversity_threshold}")
        evol = evol_scores(examples, ctx)
        emb = _embeddings(examples, ctx)
        n_tok = _n_tokens(ctx, examples)
        # the filter is global: under several processes each scored its slice; every process ranks the whole pool
        # from everyone's evol scores and embeddings (selectors/distributed.py) and keeps its slice's rows
        all_evol: dict[str, float] = {}
        all_emb: dict[str, np.ndarray] = {}
        for part_evol, part_emb in all_gather(({i: v["evol"] for i, v in evol.items()}, emb)):
            all_evol.update(part_evol)
            all_emb.update(part_emb)
        ids = sorted(i for i in all_evol if i in all_emb)  # order-free
        order_score, kept = (
            pick_order([all_evol[i] for i in ids], np.stack([all_emb[i] for i in ids]), dc.diversity_threshold)
            if ids
            else ([], [])
        )
        by_id = {i: n for n, i in enumerate(ids)}
        rows = []
        for ex in examples:
            if is_empty_response(ex):
                rows.append(ScoreRow(ex.id, math.nan, n_tok[ex.id], exclude=EMPTY_RESPONSE))
                continue
            e = evol[ex.id]
            extra = {
                "deita_complexity": [round(x, 6) for x in e["complexity"]],
                "deita_quality": [round(x, 6) for x in e["quality"]],
                "deita_evol": round(e["evol"], 6),
            }
            if ex.id not in by_id:
                rows.append(ScoreRow(ex.id, math.nan, n_tok[ex.id], exclude=NO_EMBEDDING, extra=extra))
                continue
            n = by_id[ex.id]
            extra["deita_kept_by_filter"] = kept[n]
            rows.append(ScoreRow(ex.id, order_score[n], n_tok[ex.id], extra=extra))
        return rows
