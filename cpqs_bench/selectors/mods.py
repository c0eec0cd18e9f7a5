"""``mods``: Model-oriented Data Selection (Du et al. 2023, "MoDS: Model-oriented Data Selection for Instruction
Tuning", arXiv:2311.15653; code CASIA-LM/MoDS) — quality, then coverage, then necessity.

Followed files of CASIA-LM/MoDS:

1. **Quality** (``quality-evaluation/quality-evaluation.py``, ``high-quality-data-extraction.py``): a reward model
   scores ``tokenizer(question, answer)`` (question = instruction [+ "\\n" + input]); its first logit is the
   quality. High-quality = ``reward > selectors.mods.quality_threshold`` (README: ``0.0``). Default reward model:
   ``OpenAssistant/reward-model-deberta-v3-large-v2`` (the paper's; ~435M parameters, a GPU or a patient CPU; not
   cached here, so offline runs must name a local one). Rows at or below the threshold are excluded
   (``mods_low_quality``), keeping their reward as the score for diagnostics.
2. **Coverage** (``diverse-data-selection/run.py``, ``kcenter_greedy.py``): k-center greedy on sentence embeddings
   of the *instructions* of the high-quality subset picks the seed set (``seed_count``: a fraction of the
   high-quality subset or a count). MoDS embeds with ``bert-base-uncased``; here ``selectors.mods.embedding``
   (``target``: the target model's mean-pooled last hidden state over the instruction text; or a model spec).
   The greedy is :func:`cpqs_bench.selectors.diversity.kcenter_greedy` (deterministic first center, see there).
3. **Necessity** (``inference/instruction_filter.py``, ``necessity-evaluation/necessity-evaluation.py``,
   ``necessity-instruction-extraction.py``): the model fine-tuned on the seed set answers every other high-quality
   instruction (greedy), the reward model scores those answers, and an instruction whose answer scores below
   ``necessity_threshold`` is "necessary". The final MoDS set is seed ∪ necessary (``merge.py``).

**Seed model.** A selector cannot fine-tune (that is a later stage), so the fine-tuned-on-seed model is an input:
``selectors.mods.seed_model`` (a path / spec, e.g. the LoRA-merged checkpoint a ``finetune`` stage produced on the
seed ids this selector reports in ``extra["mods"] == "seed"``). When it is unset the target model itself answers:
necessity then means "what the *untuned* target model answers badly" (a documented deviation, labelled on every
row as ``seed_model: "target (not fine-tuned on the seed set)"``).

**Scores.** MoDS produces a set; the contract wants a ranking. ``score = tier + fraction``: tier 2 the seed set
(fraction = 1 - pick_index / k, first k-center pick highest), tier 1 the necessary instructions (lower seed-answer
reward = higher), tier 0 the rest of the high-quality subset (higher quality = higher). ``select``'s top-k is then
seed ∪ necessary when the budget equals their number, seeds first when it is smaller, and filled by quality when
it is larger. ``extra`` carries ``mods`` (seed / necessary / quality_only), ``quality`` and ``seed_answer_reward``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from cpqs_bench.data.example import Example
from cpqs_bench.judge.backends import generate, prompt_text
from cpqs_bench.selectors.base import EMPTY_RESPONSE, Needs, ScoreRow, ScoringContext, is_empty_response, response_tokens
from cpqs_bench.selectors.diversity import _encoder, count, embed_texts, kcenter_greedy

LOW_QUALITY = "mods_low_quality"
UNTUNED = "target (not fine-tuned on the seed set)"


def question_text(ex: Example) -> str:
    """MoDS's ``question``: the instruction (earlier turns joined by newlines; the system message dropped)."""
    return "\n".join(m["content"] for m in ex.prompt if m["role"] != "system")


def _load_reward(ctx: ScoringContext, spec: str, revision: str | None) -> tuple[Any, Any]:
    if ctx.reward_loader is not None:
        return ctx.reward_loader(spec, revision)
    key = (f"reward:{spec}", revision, "reward")  # the model cache's (spec, revision, dtype) shape, prefixed spec
    if key not in ctx._cache:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from cpqs_bench import models

        device = models.pick_device(ctx.config.model.device)
        model = AutoModelForSequenceClassification.from_pretrained(spec, revision=revision).to(device).eval()
        ctx._cache[key] = (model, AutoTokenizer.from_pretrained(spec, revision=revision), None)
    model, tok, _ = ctx._cache[key]
    return model, tok


def reward_scores(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], batch_size: int = 8,
                  max_length: int = 512) -> list[float]:
    """First logit of ``model(**tokenizer(question, answer))`` per pair (quality-evaluation.py), batched with
    right padding; pairs sorted by length so batches do not depend on the input order."""
    import torch

    device = next(model.parameters()).device
    out = [math.nan] * len(pairs)
    order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i][0]) + len(pairs[i][1]), pairs[i]))
    for start in range(0, len(order), max(1, batch_size)):
        idx = order[start: start + batch_size]
        enc = tokenizer([pairs[i][0] for i in idx], [pairs[i][1] for i in idx], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.inference_mode():
            logits = model(**enc).logits.float()
        for b, i in enumerate(idx):
            out[i] = float(logits[b, 0])
    return out


def _rank_fraction(values: dict[str, float], higher_first: bool) -> dict[str, float]:
    """id -> fraction in [0, 1): the best value gets the largest fraction; ties broken by id."""
    ids = sorted(values, key=lambda i: (-values[i] if higher_first else values[i], i))
    n = len(ids)
    return {i: (n - 1 - r) / n for r, i in enumerate(ids)}


class MoDSSelector:
    name = "mods"
    needs = Needs.TARGET_MODEL

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        cfg = ctx.config
        m = cfg.selectors.mods
        rmodel, rtok = _load_reward(ctx, m.reward_model, m.reward_revision)
        live = [ex for ex in examples if not is_empty_response(ex)]
        quality = dict(zip((ex.id for ex in live), reward_scores(
            rmodel, rtok, [(question_text(ex), ex.response) for ex in live], m.reward_batch_size)))
        high = sorted((ex for ex in live if quality[ex.id] > m.quality_threshold), key=lambda ex: ex.id)
        # coverage: k-center greedy on instruction embeddings of the high-quality subset
        seeds: list[str] = []
        if high:
            if m.embedding == "target":
                emodel, etok, _ = ctx.model()
            else:
                emodel, etok = _encoder(ctx, m.embedding)
            emb = embed_texts(emodel, etok, [question_text(ex) for ex in high],
                              cfg.selectors.diversity.max_length, cfg.selectors.diversity.batch_size)
            picks, _ = kcenter_greedy(emb.astype(np.float64), count(m.seed_count, len(high)))
            seeds = [high[i].id for i in picks]
        seed_set = set(seeds)
        # necessity: the seed model answers the other high-quality instructions; low reward = necessary
        rest = [ex for ex in high if ex.id not in seed_set]
        seed_reward: dict[str, float] = {}
        if rest:
            smodel, stok, _ = ctx.model(m.seed_model, m.seed_model_revision) if m.seed_model else ctx.model()
            answers = generate(smodel, stok, [prompt_text(stok, ex.prompt) for ex in rest], m.max_new_tokens,
                               m.generation_batch_size)
            seed_reward = dict(zip((ex.id for ex in rest), reward_scores(
                rmodel, rtok, [(question_text(ex), a) for ex, a in zip(rest, answers)], m.reward_batch_size)))
        necessary = {i: r for i, r in seed_reward.items() if r < m.necessity_threshold}
        others = {ex.id: quality[ex.id] for ex in rest if ex.id not in necessary}
        k = max(1, len(seeds))
        score = {sid: 2.0 + (k - j) / (k + 1) for j, sid in enumerate(seeds)}
        score.update({i: 1.0 + f for i, f in _rank_fraction(necessary, higher_first=False).items()})
        score.update({i: f for i, f in _rank_fraction(others, higher_first=True).items()})
        seed_label = m.seed_model or UNTUNED
        tok = ctx.tokenizer()
        rows = []
        for ex in examples:
            n = len(response_tokens(tok, ex, cfg))
            if ex.id not in quality:
                rows.append(ScoreRow(ex.id, math.nan, n, exclude=EMPTY_RESPONSE))
                continue
            extra = {"quality": quality[ex.id], "reward_model": m.reward_model, "seed_model": seed_label}
            if ex.id not in score:
                rows.append(ScoreRow(ex.id, quality[ex.id], n, exclude=LOW_QUALITY, extra=extra))
                continue
            kind = "seed" if ex.id in seed_set else "necessary" if ex.id in necessary else "quality_only"
            if ex.id in seed_reward:
                extra["seed_answer_reward"] = seed_reward[ex.id]
            rows.append(ScoreRow(ex.id, score[ex.id], n, extra={**extra, "mods": kind}))
        return rows


def seed_ids(rows: Sequence[ScoreRow | dict[str, Any]]) -> list[str]:
    """The seed set of a ``mods`` score file (what a pipeline fine-tunes on to build ``selectors.mods.seed_model``)."""
    out = []
    for r in rows:
        d = r.to_dict() if isinstance(r, ScoreRow) else r
        if d.get("mods") == "seed":
            out.append(d["id"])
    return out
