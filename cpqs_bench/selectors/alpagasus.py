"""``alpagasus``: an LLM judge rates each (instruction, response) for accuracy on a 0–5 scale; higher = keep.

AlpaGasus (Chen et al., ICLR 2024, "AlpaGasus: Training a Better Alpaca with Fewer Data", arXiv:2307.08701) asks
ChatGPT to rate the *accuracy* of each Alpaca response to its instruction and input on a 0–5 scale, score first on
its own line then an explanation, and keeps the examples rated >= 4.5. The authors' repository
(Lichang-Chen/AlpaGasus) holds no code; the reimplementation followed here is ``rating/chatgpt_rating.py`` and
``rating/filter.py`` of gpt4life/alpagasus (system + user prompt, first-line score, threshold 4.5).

Differences, on purpose:

* the prompt text below is our own, written in the spirit of the paper's accuracy prompt (not copied);
* the judge is configurable (``selectors.judge``: a local HF chat model or any OpenAI-compatible endpoint,
  :mod:`cpqs_bench.judge`); the offline default is the target model (the embedded SmolLM2-135M-Instruct), and every
  row then says ``weak_judge: true`` with the judge label — a pipeline check, not AlpaGasus's quality signal;
* parsing (:func:`parse_rating`) accepts the first number on the first non-empty line, or after "score"/"rating",
  or ``x/5``; the reference falls back to ``-1`` for an unparseable review and keeps the row, here it is excluded
  with ``exclude="judge_unparseable"`` (or ``judge_out_of_range`` for a number outside 0–5) and counted;
* the selector ranks by rating (``select`` takes the top budget); ``selectors.alpagasus.threshold`` (4.5 in the
  paper) additionally excludes rows rated below it. Ties are common (a 0–5 scale): ``select`` breaks them by id.

The multi-turn prompt is flattened into the instruction (earlier turns as "role: text" lines), the system message
of the example is dropped (the judge gets its own). Answers are cached per (judge, prompt, example)
(:class:`cpqs_bench.judge.cache.JudgeCache`), in ``ctx.shared("judge")`` unless ``selectors.judge.cache_dir`` is set.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.judge.backends import make_judge
from cpqs_bench.selectors.base import (
    EMPTY_RESPONSE,
    Needs,
    ScoreRow,
    ScoringContext,
    is_empty_response,
    response_tokens,
)

PROMPT_VERSION = "cpqs-bench-alpagasus-v1"
SYSTEM = (
    "You are a careful reviewer. You judge how accurately an AI assistant's response carries out the "
    "instruction it was given."
)
USER = (
    "[Instruction]\n{instruction}\n\n[Response]\n{response}\n\n"
    "Rate the accuracy of the response to the instruction on a scale from 0 to 5, where 0 means wrong or "
    "unrelated and 5 means fully correct and complete. Write only the score on the first line. On the next "
    "line, briefly explain your rating without letting the response's length sway you."
)
UNPARSEABLE = "judge_unparseable"
OUT_OF_RANGE = "judge_out_of_range"
BELOW = "alpagasus<threshold"

_NUM = r"(-?\d+(?:\.\d+)?)"
_PATTERNS = (
    re.compile(rf"(?:score|rating)\s*[\])*:=]*\s*(?:is|of)?\s*[:=]?\s*\**\s*{_NUM}", re.I),
    re.compile(rf"{_NUM}\s*(?:/|out of)\s*5\b", re.I),
)


def parse_rating(text: str) -> tuple[float | None, str | None]:
    """(rating, None) or (None, reason). First line's leading number, else "score: x" / "x/5" anywhere."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    value = None
    if lines:
        m = re.match(
            rf"^[\s*#\[(]*(?:score|rating)?\s*[:=]?\s*\**\s*{_NUM}\s*\**\s*(?:/\s*5)?\s*[\])]?\s*\.?\s*$",
            lines[0],
            re.I,
        )
        if m:
            value = float(m.group(1))
    if value is None:
        for pat in _PATTERNS:
            m = pat.search(text)
            if m:
                value = float(m.group(1))
                break
    if value is None or not math.isfinite(value):
        return None, UNPARSEABLE
    if not 0.0 <= value <= 5.0:
        return None, OUT_OF_RANGE
    return value, None


def instruction_text(ex: Example) -> str:
    turns = [m for m in ex.prompt if m["role"] != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in turns)


def conversation(ex: Example) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": USER.format(instruction=instruction_text(ex), response=ex.response)},
    ]


class AlpaGasusSelector:
    name = "alpagasus"
    needs = Needs.TARGET_MODEL  # the offline default judge is the target model; an endpoint judge needs none

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        cfg = ctx.config
        judge = make_judge(
            cfg.selectors.judge,
            lambda spec, rev: ctx.model(spec, rev),
            target_spec=cfg.model.id,
            target_revision=cfg.model.revision,
            cache_dir=ctx.shared("judge"),
        )
        todo = [ex for ex in examples if not is_empty_response(ex)]
        answers = dict(zip((ex.id for ex in todo), judge.complete([conversation(ex) for ex in todo])))
        if judge.cache is not None:
            judge.cache.close()
        threshold = cfg.selectors.alpagasus.threshold
        tok = ctx.tokenizer()
        label = {"judge": judge.label, "weak_judge": judge.weak, "judge_prompt": PROMPT_VERSION}
        rows = []
        for ex in examples:
            n = len(response_tokens(tok, ex, cfg.prompt))
            if ex.id not in answers:
                rows.append(ScoreRow(ex.id, math.nan, n, exclude=EMPTY_RESPONSE, extra=label))
                continue
            text = answers[ex.id]
            rating, reason = parse_rating(text)
            extra = {**label, "judge_answer": text[:300]}
            if rating is None:
                rows.append(ScoreRow(ex.id, math.nan, n, exclude=reason, extra=extra))
            else:
                below = threshold is not None and rating < threshold
                rows.append(ScoreRow(ex.id, rating, n, exclude=BELOW if below else None, extra=extra))
        return rows


def counts(rows: Sequence[ScoreRow]) -> dict[str, int]:
    """How many rows were rated, unparseable, out of range, below the threshold, empty."""
    out = {"rated": 0, UNPARSEABLE: 0, OUT_OF_RANGE: 0, EMPTY_RESPONSE: 0}
    for r in rows:
        bucket = "rated" if r.exclude in (None, BELOW) else r.exclude
        out[bucket] = out.get(bucket, 0) + 1
    out[BELOW] = sum(1 for r in rows if r.exclude == BELOW)  # a subset of "rated"
    return out
