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
   high-quality subset or a count). MoDS embeds ``d["instruction"]`` with ``bert-base-uncased``: the ``[CLS]``
   vector (``last_hidden_state[:, 0]``), unnormalised, ``max_length=96``. Here ``selectors.mods.embedding``
   (``target``: the target model; or a model spec), ``embedding_pooling`` (``cls`` as MoDS, or ``mean``: mean-pooled
   and L2-normalised), ``embedding_text`` (``instruction`` as MoDS, or ``whole``: instruction + input) and
   ``embedding_max_length`` (MoDS: 96; None: ``selectors.diversity.max_length``) — :func:`instruction_embeddings`.
   The greedy is :func:`cpqs_bench.selectors.diversity.kcenter_greedy` (deterministic first center, see there).
   **Seed-set size:** MoDS's code has no rule — ``run.py`` takes ``K`` on its command line (``top_k`` in the
   README) and the paper reports only the final 4,000-example set; ``seed_count = 0.3`` (of the high-quality subset)
   is this project's choice, to be set per experiment.
3. **Necessity** (``inference/instruction_filter.py``, ``necessity-evaluation/necessity-evaluation.py``,
   ``necessity-instruction-extraction.py``): the model fine-tuned on the seed set answers every other high-quality
   instruction, the reward model scores those answers, and an instruction whose answer scores below
   ``necessity_threshold`` is "necessary". The final MoDS set is seed ∪ necessary (``merge.py``). MoDS answers by
   beam search (``GenerationConfig(num_beams=4, temperature=0.1, top_p=0.75)`` without sampling, so the last two
   are inert) up to ``model_max_length`` = 1,024 new tokens: ``selectors.mods.necessity_num_beams`` /
   ``necessity_max_new_tokens`` (defaults: greedy, ``max_new_tokens`` = 128; MoDS's values in ``paper_gsm8k``).

**Seed model.** A selector cannot fine-tune, so the three phases are separate functions —
:func:`quality_and_coverage` (phases 1–2 → :class:`Coverage`), :func:`necessity` (phase 3, given the seed model →
:class:`Necessity`) and :func:`mods_rows` (the ranking) — and a pipeline runs them as stages around a fine-tune.
``cpqs-bench reproduce`` does exactly what the paper does: a ``score/mods-seed`` stage (phases 1–2), a
``finetune/mods-seed`` stage (a LoRA adapter on the seed set, the experiment's frozen recipe, its first seed), then
the ``score/mods`` stage, whose necessity answers come from the target model with that adapter attached; every row
records ``seed_model: "target + LoRA fine-tuned on the MoDS seed set (N examples, stage <hash>)"``. The stage hands
the phases to this selector as a folder (``ScoringContext.checkpoint``, ``--selector DIR`` on the command line):
``coverage.jsonl`` (:meth:`Coverage.write`) and, optionally, ``necessity.json`` (:meth:`Necessity.write`); what
the folder lacks is computed here.

**Outside reproduce** (``cpqs-bench score mods`` without a folder holding ``necessity.json``) the seed model is
``selectors.mods.seed_model`` (a path / spec, e.g. a checkpoint fine-tuned on the seed ids this selector reports
in ``extra["mods"] == "seed"``). When that is unset the target model itself answers: necessity then means "what
the *untuned* target model answers badly" — a documented deviation that applies only outside reproduce, labelled
on every row as ``seed_model: "target (not fine-tuned on the seed set)"``. Every seed model answers under the
training template (``prompt.template`` / ``prompt.system_prompt``), the format a fine-tuned seed model learnt.

**Scores.** MoDS produces a set; the contract wants a ranking. ``score = tier + fraction``: tier 2 the seed set
(fraction = 1 - pick_index / k, first k-center pick highest), tier 1 the necessary instructions (lower seed-answer
reward = higher), tier 0 the rest of the high-quality subset (higher quality = higher). ``select``'s top-k is then
seed ∪ necessary when the budget equals their number, seeds first when it is smaller, and filled by quality when
it is larger. ``extra`` carries ``mods`` (seed / necessary / quality_only), ``quality`` and ``seed_answer_reward``.

**Differences from the reference** (CASIA-LM/MoDS ``quality-evaluation/quality-evaluation.py``,
``diverse-data-selection/run.py``, ``inference/instruction_filter.py``, ``necessity-evaluation/*.py``, ``train/``):

1. The reward model's input is cut at ``selectors.mods.reward_max_length`` (default 512); MoDS does not cut
   (``tokenizer(question, answer, return_tensors='pt')``): ``reward_max_length: null`` (``paper_gsm8k``).
2. Embeddings: mean-pooled, L2-normalised, instruction + input at ``selectors.diversity.max_length`` by default;
   MoDS's ``[CLS]`` of the instruction at 96 tokens with ``embedding_pooling: cls``, ``embedding_text:
   instruction``, ``embedding_max_length: 96``. Without the Alpaca fields in the metadata the instruction is the user
   text before its first blank line (:func:`cpqs_bench.prompts.alpaca_fields`: wrong for ~1 % of Alpaca rows).
3. Necessity answers are greedy, 128 new tokens by default (the numbers cut GSM8K chains of thought short and can
   inflate the "necessary" tier); MoDS's 4 beams and 1,024 tokens with ``necessity_num_beams`` /
   ``necessity_max_new_tokens``. The prompt is the training template (``prompt.template``), what the seed model was
   fine-tuned on here; MoDS prompts with the Alpaca ``PROMPT_DICT`` its seed model was fine-tuned on.
4. The seed model is a LoRA adapter on the target (the experiment's frozen recipe) in ``reproduce``; MoDS fine-tunes
   all weights (``train/run.sh``). Outside ``reproduce`` the untuned target stands in, labelled on every row.
5. The seed-set size has no rule in MoDS (a command-line ``K``); ``seed_count`` is this project's choice.
6. MoDS returns a set; here a ranking (seed, necessary, quality tiers) so ``select`` can take any budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from cpqs_bench.data.example import Example
from cpqs_bench.io import read_json, read_jsonl, write_json, write_jsonl
from cpqs_bench.judge.backends import generate
from cpqs_bench.selectors.base import (
    EMPTY_RESPONSE,
    Needs,
    ScoreRow,
    ScoringContext,
    is_empty_response,
    response_tokens,
)
from cpqs_bench.selectors.diversity import _encoder, count, kcenter_greedy

LOW_QUALITY = "mods_low_quality"
UNTUNED = "target (not fine-tuned on the seed set)"
NO_SEED_MODEL = "none (no high-quality instruction outside the seed set to answer)"
COVERAGE_FILE = "coverage.jsonl"
NECESSITY_FILE = "necessity.json"
# the selectors.mods fields phases 1–2 read (a pipeline keys its coverage stage on these, not on the necessity ones)
COVERAGE_SETTINGS = (
    "reward_model",
    "reward_revision",
    "reward_batch_size",
    "reward_max_length",
    "quality_threshold",
    "seed_count",
    "embedding",
    "embedding_pooling",
    "embedding_text",
    "embedding_max_length",
)


from cpqs_bench.selectors import reward as _reward  # noqa: E402  (the one reward implementation)
from cpqs_bench.selectors.reward import load_reward_model as _load_reward  # noqa: E402
from cpqs_bench.selectors.reward import question_text  # noqa: E402, F401  (re-exported: embedding_text uses it)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cpqs_bench.selectors.config import SelectorsConfig


def reward_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 8,
    max_length: int | None = None,
) -> list[float]:
    """MoDS's quality-evaluation.py call, ``tokenizer(question, answer)``: the shared implementation, pair format."""
    return _reward.reward_scores(model, tokenizer, pairs, batch_size, max_length, fmt="pair")


def embedding_text(ex: Example, which: str) -> str:
    """What the k-center embeddings see: ``instruction`` = MoDS's ``d["instruction"]`` (``run.py`` ``main``) — the
    Alpaca instruction field (:func:`cpqs_bench.prompts.alpaca_fields`; a GSM8K question or a code prompt is all
    instruction); ``whole`` = :func:`question_text` (instruction + input)."""
    if which == "whole":
        return question_text(ex)
    if which != "instruction":
        raise ValueError(f"selectors.mods.embedding_text must be 'instruction' or 'whole', got {which!r}")
    from cpqs_bench.prompts import alpaca_fields

    return alpaca_fields(ex)[0]


def cls_embeddings(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, batch_size: int
) -> np.ndarray:
    """MoDS ``run.py`` ``bert_embedding``: ``last_hidden_state[:, 0]`` (the ``[CLS]`` vector), unnormalised, of
    ``tokenizer(texts, truncation=True, padding=True, max_length=...)`` (right padding: position 0 is the first
    token of every row). On a causal model position 0 is its first token (BOS when it adds one)."""
    import torch

    from cpqs_bench.features import backbone

    base = backbone(model)
    device = next(base.parameters()).device
    out: np.ndarray = np.zeros((len(texts), int(model.config.hidden_size)), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    side = getattr(tokenizer, "padding_side", "right")
    tokenizer.padding_side = "right"
    try:
        for start in range(0, len(order), max(1, batch_size)):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            with torch.inference_mode():
                hidden = base(**enc).last_hidden_state.float()
            out[idx] = hidden[:, 0].cpu().numpy()
    finally:
        tokenizer.padding_side = side
    return out


def instruction_embeddings(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], sel: SelectorsConfig
) -> np.ndarray:
    """The k-center inputs of phase 2 as configured (``selectors.mods.embedding_pooling`` / ``embedding_text`` /
    ``embedding_max_length``; MoDS: ``cls`` / ``instruction`` / 96)."""
    from cpqs_bench.selectors.diversity import embed_texts

    m, d = sel.mods, sel.diversity
    texts = [embedding_text(ex, m.embedding_text) for ex in examples]
    max_length = m.embedding_max_length if m.embedding_max_length is not None else d.max_length
    if m.embedding_pooling == "cls":
        return cls_embeddings(model, tokenizer, texts, max_length, d.batch_size)
    if m.embedding_pooling != "mean":
        raise ValueError(f"selectors.mods.embedding_pooling must be 'cls' or 'mean', got {m.embedding_pooling!r}")
    return embed_texts(model, tokenizer, texts, max_length, d.batch_size)


def _rank_fraction(values: dict[str, float], higher_first: bool) -> dict[str, float]:
    """id -> fraction in [0, 1): the best value gets the largest fraction; ties broken by id."""
    ids = sorted(values, key=lambda i: (-values[i] if higher_first else values[i], i))
    n = len(ids)
    return {i: (n - 1 - r) / n for r, i in enumerate(ids)}


def coverage_settings(sel: SelectorsConfig) -> dict[str, Any]:
    """What phases 1–2 depend on in ``selectors`` (the reward model, the thresholds and the embedding that pick the
    seed set), so a changed necessity setting leaves the seed set — and the seed model fine-tuned on it — as is."""
    m, d = sel.mods, sel.diversity
    return {
        "mods": {k: getattr(m, k) for k in COVERAGE_SETTINGS},
        "diversity": {"max_length": d.max_length, "batch_size": d.batch_size},
    }


# --------------------------------------------------------------------------------------------- phases 1–2
@dataclass(frozen=True)
class Coverage:
    """Phases 1–2: the reward of every non-empty example, the high-quality subset and the k-center seed set."""

    quality: dict[str, float]  # id -> reward of (question, response); every non-empty example
    high: tuple[str, ...]  # high-quality ids (reward > quality_threshold), sorted
    seeds: tuple[str, ...]  # the seed set, in k-center pick order

    @property
    def rest(self) -> tuple[str, ...]:
        """The high-quality instructions outside the seed set: what the seed model answers (phase 3)."""
        seed_set = set(self.seeds)
        return tuple(i for i in self.high if i not in seed_set)

    def rows(self, examples: Sequence[Example]) -> list[dict[str, Any]]:
        """One row per example, in pool order: ``id``, ``quality`` (null for an empty response), ``high_quality``,
        ``seed_pick`` (k-center pick index, null outside the seed set)."""
        high, pick = set(self.high), {sid: j for j, sid in enumerate(self.seeds)}
        return [
            {
                "id": ex.id,
                "quality": self.quality.get(ex.id),
                "high_quality": ex.id in high,
                "seed_pick": pick.get(ex.id),
            }
            for ex in examples
        ]

    def write(self, path: str | Path, examples: Sequence[Example]) -> Path:
        write_jsonl(path, self.rows(examples))
        return Path(path)

    @classmethod
    def read(cls, path: str | Path, examples: Sequence[Example]) -> "Coverage":
        """A ``coverage.jsonl`` of exactly these examples (same ids, same order), checked."""
        rows = read_jsonl(path)
        if [r["id"] for r in rows] != [ex.id for ex in examples]:
            raise ValueError(
                f"{path}: {len(rows)} rows whose ids do not match the {len(examples)} pool examples in "
                "order (phases 1–2 were run on a different pool)"
            )
        quality = {r["id"]: float(r["quality"]) for r in rows if r["quality"] is not None}
        high = tuple(sorted(r["id"] for r in rows if r["high_quality"]))
        picks = sorted((r["seed_pick"], r["id"]) for r in rows if r["seed_pick"] is not None)
        if [j for j, _ in picks] != list(range(len(picks))):
            raise ValueError(f"{path}: seed_pick values are not 0..{len(picks) - 1}")
        if any(i not in quality for i in high) or not {i for _, i in picks} <= set(high):
            raise ValueError(
                f"{path}: a high-quality or seed row without a quality, or a seed outside the high-quality subset"
            )
        return cls(quality, high, tuple(i for _, i in picks))


def quality_and_coverage(examples: Sequence[Example], ctx: ScoringContext) -> Coverage:
    """MoDS phases 1–2: reward-model quality of every non-empty example, then k-center greedy on the instruction
    embeddings of the high-quality subset (the seed set)."""
    cfg = ctx.config
    m = cfg.selectors.mods
    rmodel, rtok = _load_reward(ctx, m.reward_model, m.reward_revision)
    live = [ex for ex in examples if not is_empty_response(ex)]
    quality = dict(
        zip(
            (ex.id for ex in live),
            reward_scores(
                rmodel,
                rtok,
                [(question_text(ex), ex.response) for ex in live],
                m.reward_batch_size,
                m.reward_max_length,
            ),
        )
    )
    high = sorted((ex for ex in live if quality[ex.id] > m.quality_threshold), key=lambda ex: ex.id)
    seeds: list[str] = []
    if high:
        if m.embedding == "target":
            emodel, etok, _ = ctx.model()
        else:
            emodel, etok = _encoder(ctx, m.embedding)
        emb = instruction_embeddings(emodel, etok, high, cfg.selectors)
        picks, _ = kcenter_greedy(emb.astype(np.float64), count(m.seed_count, len(high)))
        seeds = [high[i].id for i in picks]
    return Coverage(quality, tuple(ex.id for ex in high), tuple(seeds))


# ------------------------------------------------------------------------------------------------ phase 3
@dataclass(frozen=True)
class SeedModel:
    """The model that answers in phase 3 (``model`` / ``tokenizer`` None only when there is nothing to answer)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    label: str  # what it is, recorded on every row (e.g. "target + LoRA fine-tuned on the MoDS seed set (...)")


@dataclass(frozen=True)
class Necessity:
    """Phase 3: the seed model's greedy answer to every high-quality instruction outside the seed set, and the
    reward of that answer."""

    seed_model: str
    answers: dict[str, str] = field(default_factory=dict)
    reward: dict[str, float] = field(default_factory=dict)

    def write(self, path: str | Path) -> Path:
        answers = [{"id": i, "answer": a, "reward": self.reward[i]} for i, a in self.answers.items()]
        write_json(path, {"seed_model": self.seed_model, "answers": answers})
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> "Necessity":
        doc = read_json(path)
        rows = doc["answers"]
        return cls(
            str(doc["seed_model"]), {r["id"]: r["answer"] for r in rows}, {r["id"]: float(r["reward"]) for r in rows}
        )


def necessity(examples: Sequence[Example], coverage: Coverage, ctx: ScoringContext, seed: SeedModel) -> Necessity:
    """MoDS phase 3: ``seed`` answers every high-quality instruction outside the seed set (greedy, under the
    training template), the reward model scores each answer."""
    cfg = ctx.config
    m = cfg.selectors.mods
    by_id = {ex.id: ex for ex in examples}
    rest = [by_id[i] for i in coverage.rest]
    if not rest:
        return Necessity(seed.label)
    if seed.model is None:
        raise ValueError(
            f"MoDS necessity: {len(rest)} high-quality instructions to answer but no seed model ({seed.label})"
        )
    from cpqs_bench import prompts

    texts = [
        prompts.prompt_text(seed.tokenizer, ex, cfg.prompt.template, system_prompt=cfg.prompt.system_prompt)
        for ex in rest
    ]
    g = necessity_generation(cfg.selectors)
    if g["num_beams"] > 1:
        answers = beam_generate(
            seed.model, seed.tokenizer, texts, g["max_new_tokens"], g["num_beams"], m.generation_batch_size
        )
    else:
        answers = generate(seed.model, seed.tokenizer, texts, g["max_new_tokens"], m.generation_batch_size)
    rmodel, rtok = _load_reward(ctx, m.reward_model, m.reward_revision)
    rewards = reward_scores(
        rmodel,
        rtok,
        [(question_text(ex), a) for ex, a in zip(rest, answers)],
        m.reward_batch_size,
        m.reward_max_length,
    )
    return Necessity(seed.label, {ex.id: a for ex, a in zip(rest, answers)}, {ex.id: r for ex, r in zip(rest, rewards)})


def beam_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_new_tokens: int,
    num_beams: int,
    batch_size: int,
) -> list[str]:
    """Beam-search answers (MoDS ``inference/instruction_filter.py``: ``GenerationConfig(num_beams=4, ...)``
    without sampling, so temperature / top_p are inert) to prompt texts, input order; left-padded batches of
    similar length, stopped at the tokenizer's EOS (the special tokens are not decoded)."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (len(encoded[i]), texts[i]))
    device = next(model.parameters()).device
    out = [""] * len(texts)
    for start in range(0, len(order), max(1, batch_size)):
        idx = order[start : start + batch_size]
        rows = [encoded[i] for i in idx]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[b, width - len(r) :] = 1
        with torch.inference_mode():
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                do_sample=False,
                num_beams=num_beams,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        for b, i in enumerate(idx):
            out[i] = tokenizer.decode(gen[b, width:], skip_special_tokens=True)
    return out


def necessity_generation(sel: SelectorsConfig) -> dict[str, int]:
    """The necessity phase's decoding settings as they run (``necessity_max_new_tokens`` wins over
    ``max_new_tokens``)."""
    m = sel.mods
    max_new = m.necessity_max_new_tokens if m.necessity_max_new_tokens is not None else m.max_new_tokens
    return {"num_beams": max(1, int(m.necessity_num_beams)), "max_new_tokens": int(max_new)}


def necessity_cost(sel: SelectorsConfig, n_answers: int) -> dict[str, int]:
    """An upper bound of the necessity phase's decoding work for ``n_answers`` instructions (the high-quality rows
    outside the seed set): ``beam_tokens = n_answers x num_beams x max_new_tokens`` (every beam decodes every step;
    answers that stop early cost less), for the preflight's time estimate."""
    g = necessity_generation(sel)
    return {"answers": int(n_answers), **g, "beam_tokens": int(n_answers) * g["num_beams"] * g["max_new_tokens"]}


def standalone_seed_model(ctx: ScoringContext) -> SeedModel:
    """Outside reproduce: ``selectors.mods.seed_model`` when set, else the untuned target (the labelled deviation)."""
    m = ctx.config.selectors.mods
    if m.seed_model:
        model, tok, _ = ctx.model(m.seed_model, m.seed_model_revision)
        return SeedModel(model, tok, m.seed_model)
    model, tok, _ = ctx.model()
    return SeedModel(model, tok, UNTUNED)


# ------------------------------------------------------------------------------------------------ ranking
def mods_rows(examples: Sequence[Example], coverage: Coverage, nec: Necessity, ctx: ScoringContext) -> list[ScoreRow]:
    """One row per example (input order) from the three phases: seed tier, necessary tier, quality tier."""
    cfg = ctx.config
    m = cfg.selectors.mods
    if set(nec.reward) != set(coverage.rest):
        raise ValueError(
            f"MoDS necessity answers {len(nec.reward)} instructions, but the coverage phase left "
            f"{len(coverage.rest)} high-quality non-seed instructions: the phases disagree"
        )
    seeds, seed_set = coverage.seeds, set(coverage.seeds)
    necessary = {i: r for i, r in nec.reward.items() if r < m.necessity_threshold}
    others = {i: coverage.quality[i] for i in coverage.rest if i not in necessary}
    k = max(1, len(seeds))
    score = {sid: 2.0 + (k - j) / (k + 1) for j, sid in enumerate(seeds)}
    score.update({i: 1.0 + f for i, f in _rank_fraction(necessary, higher_first=False).items()})
    score.update({i: f for i, f in _rank_fraction(others, higher_first=True).items()})
    tok = ctx.tokenizer()
    rows = []
    for ex in examples:
        n = len(response_tokens(tok, ex, cfg.prompt))
        if ex.id not in coverage.quality:
            rows.append(ScoreRow(ex.id, math.nan, n, exclude=EMPTY_RESPONSE))
            continue
        extra = {"quality": coverage.quality[ex.id], "reward_model": m.reward_model, "seed_model": nec.seed_model}
        if ex.id not in score:
            rows.append(ScoreRow(ex.id, coverage.quality[ex.id], n, exclude=LOW_QUALITY, extra=extra))
            continue
        kind = "seed" if ex.id in seed_set else "necessary" if ex.id in necessary else "quality_only"
        if ex.id in nec.reward:
            extra["seed_answer_reward"] = nec.reward[ex.id]
        rows.append(ScoreRow(ex.id, score[ex.id], n, extra={**extra, "mods": kind}))
    return rows


class MoDSSelector:
    """The three phases in one call; a phase folder (``ctx.checkpoint``: ``coverage.jsonl`` [+ ``necessity.json``],
    what a pipeline's earlier stages wrote) supplies the phases it holds."""

    name = "mods"
    needs = Needs.TARGET_MODEL

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        folder = Path(ctx.checkpoint) if ctx.checkpoint is not None else None
        if folder is not None and not (folder / COVERAGE_FILE).is_file():
            raise FileNotFoundError(f"{folder}: a MoDS phase folder holds {COVERAGE_FILE} (phases 1–2)")
        coverage = (
            Coverage.read(folder / COVERAGE_FILE, examples)
            if folder is not None
            else quality_and_coverage(examples, ctx)
        )
        if folder is not None and (folder / NECESSITY_FILE).is_file():
            nec = Necessity.read(folder / NECESSITY_FILE)
        else:
            nec = necessity(examples, coverage, ctx, standalone_seed_model(ctx))
        return mods_rows(examples, coverage, nec, ctx)


def seed_ids(rows: Sequence[ScoreRow | dict[str, Any]]) -> list[str]:
    """The seed set of a ``mods`` score file (what reproduce fine-tunes the seed model on)."""
    out = []
    for r in rows:
        d = r.to_dict() if isinstance(r, ScoreRow) else r
        if d.get("mods") == "seed":
            out.append(d["id"])
    return out
