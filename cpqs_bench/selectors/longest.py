"""``longest``: score = response length in tokens of the target tokenizer ("Long Is More for Alignment", 2024).

A strong, cheap control: several quality selectors turn out to be length proxies, and ``compare`` reports every
score's correlation with this length. Tokens are counted on the *response text only*, through the prompt layer
(``prompts.render`` with the configured template, no end-of-turn token, no truncation), so "length" means the same
tokens IFD and SFT see, and the score does not depend on ``prompt.max_length``.
"""
from __future__ import annotations

from typing import Any, Sequence

from cpqs_bench import prompts
from cpqs_bench.data.example import Example
from cpqs_bench.selectors.base import EMPTY_RESPONSE, Needs, ScoreRow, ScoringContext, is_empty_response


def response_tokens(tokenizer: Any, example: Example, config: Any) -> tuple[int, ...]:
    """The response's token ids under the configured template (empty tuple for an empty response)."""
    rendered = prompts.render(tokenizer, example, config.prompt.template, system_prompt=config.prompt.system_prompt,
                              train_eot=False, max_length=None)
    return () if rendered is None else rendered.response_ids


class LongestSelector:
    name = "longest"
    needs = Needs.NOTHING  # a tokenizer only, no weights

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        tok = ctx.tokenizer()
        rows = []
        for ex in examples:
            n = len(response_tokens(tok, ex, ctx.config))
            excl = EMPTY_RESPONSE if is_empty_response(ex) else None
            rows.append(ScoreRow(ex.id, float(n), n, exclude=excl))
        return rows
