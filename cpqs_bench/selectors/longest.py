"""``longest``: score = response length in tokens of the target tokenizer ("Long Is More for Alignment", 2024).

A strong, cheap control: several quality selectors turn out to be length proxies, and ``compare`` reports every
score's correlation with this length. Tokens are counted on the *response text only*, through the prompt layer
(``prompts.render`` with the configured template, no end-of-turn token, no truncation), so "length" means the same
tokens IFD and SFT see, and the score does not depend on ``prompt.max_length``.
"""

from __future__ import annotations

from typing import Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.selectors.base import Needs, ScoreRow, ScoringContext, token_score_rows


class LongestSelector:
    name = "longest"
    needs = Needs.NOTHING  # a tokenizer only, no weights

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        return token_score_rows(examples, ctx, lambda ex, ids: float(len(ids)))
