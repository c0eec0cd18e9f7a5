"""``reward``: a reward model's score of (instruction, response) — the one reward implementation of the project
(MoDS's quality and necessity phases call :func:`reward_scores` too).

Followed file: ``quality-evaluation/quality-evaluation.py`` of ``CASIA-LM/MoDS`` (MoDS's quality phase):
``rank_model(**tokenizer(question, answer)).logits[0]`` with ``question = instruction [+ "\\n" + input]`` and
``AutoModelForSequenceClassification`` / ``AutoTokenizer`` of ``OpenAssistant/reward-model-deberta-v3-large-v2``
(its model card scores ``tokenizer(question, answer)`` the same way). OpenDataArena (``OpenDataArena-Tool``) ranks
data by such reward-model scores among its scorers.

**Models** (``selectors.reward.model`` / ``revision``; every one is a ``*ForSequenceClassification`` with one logit):

* ``OpenAssistant/reward-model-deberta-v3-large-v2`` (default; MoDS's model): ~435M parameters, a 512-token cross
  encoder of the (question, answer) *pair*; ~1.7 GB in fp32, a few examples/s on a laptop CPU, hundreds/s on a GPU.
* ``Skywork/Skywork-Reward-Llama-3.1-8B-v0.2`` (or ``Skywork/Skywork-Reward-V2-Llama-3.1-8B``): 8B, scores the
  *chat-templated* conversation; ~16 GB in bf16, one 24 GB+ GPU, roughly 20x the DeBERTa model's FLOPs per token.
* ``infly/INF-ORM-Llama3.1-70B``: 70B, chat-templated; ~140 GB in bf16 — two 80 GB GPUs (or 4-bit on one),
  roughly 9x Skywork-8B's compute. Both top RewardBench at their release; use them only where a GPU budget allows.

**Input format** (:data:`FORMATS`): ``pair`` = ``tokenizer(question, answer)`` (the DeBERTa cross encoders; what
MoDS does); ``chat`` = the tokenizer's chat template over the prompt messages and the answer as the assistant turn
(``apply_chat_template``, then tokenised without adding special tokens again; Skywork / INF-ORM model cards);
``auto`` (default) = ``chat`` when the tokenizer has a chat template, else ``pair``.

**Length.** :func:`reward_scores` truncates to ``max_length`` tokens when given (``pair``: longest-first, as
``truncation=True``; ``chat``: the tail) and not at all when None — MoDS's ``tokenizer(question, answer)``, which
``selectors.mods.reward_max_length`` None keeps. The ``reward`` selector's ``selectors.reward.max_length`` None
means the model's own limit (:func:`reward_limit`: the smaller of the tokenizer's ``model_max_length`` and the
model's position count; 512 for the DeBERTa model); a row cut there records ``truncated: true``.

Differences from the reference:

* Batched (right padding, pairs sorted by length so batches do not depend on the pool order) instead of one pair at
  a time; scores equal the unbatched call up to float rounding.
* Inputs longer than the limit are truncated and flagged; ``quality-evaluation.py`` wraps each call in a bare
  ``try/except: continue``, silently dropping any example that fails (too long among them).
* Empty responses are excluded (``empty_response``), not scored (the data policy).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

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

if TYPE_CHECKING:
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

FORMATS = ("auto", "pair", "chat")
DEFAULT_FORMAT = "auto"  # a library call's default; the selector reads selectors.reward.format
_NO_LIMIT = 1_000_000  # tokenizers without a limit report ~1e30 as model_max_length

Prompt = str | Sequence[dict[str, str]]  # a question, or the prompt messages before the answer


def question_text(ex: Example) -> str:
    """MoDS's ``question``: the instruction (earlier turns joined by newlines; the system message dropped)."""
    return "\n".join(m["content"] for m in ex.prompt if m["role"] != "system")


def load_reward_model(
    ctx: ScoringContext, spec: str, revision: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``(model, tokenizer)`` of a reward model: ``ctx.reward_loader`` when set (tests: a tiny stand-in), else
    transformers' ``AutoModelForSequenceClassification`` on ``model.device``, cached in the context (one load per
    run for every selector that scores with it)."""
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


def resolve_format(tokenizer: PreTrainedTokenizerBase, fmt: str = "auto") -> str:
    if fmt not in FORMATS:
        raise ValueError(f"reward input format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt != "auto":
        return fmt
    return "chat" if getattr(tokenizer, "chat_template", None) else "pair"


def reward_limit(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None
) -> int | None:
    """The token limit: ``max_length`` when given, else the smaller of the tokenizer's and the model's (None when
    neither says)."""
    if max_length is not None:
        return int(max_length)
    limits = [model_max_length(model)]
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < _NO_LIMIT:
        limits.append(tok_limit)
    known = [x for x in limits if x is not None]
    return min(known) if known else None


def _messages(prompt: Prompt, answer: str) -> list[dict[str, str]]:
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    return msgs + [{"role": "assistant", "content": answer}]


def _question(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(m["content"] for m in prompt if m["role"] != "system")


def _encode(
    tokenizer: PreTrainedTokenizerBase, batch: Sequence[tuple[Prompt, str]], fmt: str, limit: int | None, pad: bool
) -> BatchEncoding:
    trunc = {"truncation": limit is not None, "max_length": limit}
    if fmt == "pair":
        return tokenizer(
            [_question(p) for p, _ in batch], [a for _, a in batch], padding=pad, return_tensors="pt", **trunc
        )
    texts = [tokenizer.apply_chat_template(_messages(p, a), tokenize=False) for p, a in batch]
    return tokenizer(texts, add_special_tokens=False, padding=pad, return_tensors="pt", **trunc)


def _full_length(tokenizer: PreTrainedTokenizerBase, item: tuple[Prompt, str], fmt: str) -> int:
    if fmt == "pair":
        return len(tokenizer(_question(item[0]), item[1])["input_ids"])
    text = tokenizer.apply_chat_template(_messages(*item), tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def reward_scores_detailed(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[Prompt, str]],
    batch_size: int = 8,
    max_length: int | None = None,
    fmt: str = DEFAULT_FORMAT,
) -> list[tuple[float, bool]]:
    """``(reward, truncated)`` per ``(prompt, answer)`` pair: the first logit of the sequence-classification head
    (see the module docstring for the formats); inputs cut to ``max_length`` tokens (None: no truncation); pairs
    sorted by length so batches do not depend on the input order. A tokenizer without a pad token is run one pair
    at a time."""
    import torch

    fmt = resolve_format(tokenizer, fmt)
    limit = max_length
    if tokenizer.pad_token_id is None:
        batch_size = 1
    device = next(model.parameters()).device
    out: list[tuple[float, bool]] = [(math.nan, False)] * len(pairs)
    key = [(len(_question(p)) + len(a), _question(p), a) for p, a in pairs]
    order = sorted(range(len(pairs)), key=lambda i: (key[i], i))
    for start in range(0, len(order), max(1, batch_size)):
        idx = order[start : start + max(1, batch_size)]
        enc = _encode(tokenizer, [pairs[i] for i in idx], fmt, limit, pad=len(idx) > 1)
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.inference_mode():
            logits = model(**enc).logits.float()
        for b, i in enumerate(idx):
            truncated = limit is not None and _full_length(tokenizer, pairs[i], fmt) > limit
            out[i] = (float(logits[b, 0]), truncated)
    return out


def reward_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[Prompt, str]],
    batch_size: int = 8,
    max_length: int | None = None,
    fmt: str = DEFAULT_FORMAT,
) -> list[float]:
    """The reward of each ``(prompt, answer)`` pair (:func:`reward_scores_detailed` without the truncation flags)."""
    return [r for r, _ in reward_scores_detailed(model, tokenizer, pairs, batch_size, max_length, fmt)]


class RewardSelector:
    """A reward model's score of (prompt, response), higher = keep (``selectors.reward``)."""

    name = "reward"
    needs = Needs.PROXY_MODEL  # a model other than the target: the reward model

    def __init__(self, fmt: str = DEFAULT_FORMAT):
        if fmt not in FORMATS:
            raise ValueError(f"reward input format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.fmt = fmt

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        r = ctx.config.selectors.reward
        fmt = self.fmt if self.fmt != DEFAULT_FORMAT else r.format
        model, tok = load_reward_model(ctx, r.model, r.revision)
        limit = reward_limit(model, tok, r.max_length)
        live = [ex for ex in examples if not is_empty_response(ex)]
        scored = dict(
            zip(
                (ex.id for ex in live),
                reward_scores_detailed(model, tok, [(ex.prompt, ex.response) for ex in live], r.batch_size, limit, fmt),
            )
        )
        fmt = resolve_format(tok, self.fmt)
        target_tok = ctx.tokenizer()
        rows = []
        for ex in examples:
            n = len(response_tokens(target_tok, ex, ctx.config.prompt))
            if ex.id not in scored:
                rows.append(ScoreRow(ex.id, math.nan, n, exclude=EMPTY_RESPONSE))
                continue
            value, truncated = scored[ex.id]
            extra = {"reward_model": r.model, "reward_format": fmt, "truncated": truncated}
            rows.append(ScoreRow(ex.id, value, n, extra=extra))
        return rows
