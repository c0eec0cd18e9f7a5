"""``vocab_diversity``: moving-average type-token ratio (MATTR) of the response's tokens.

Plain type-token ratio falls with length, so it would just be an inverse length score; MATTR averages the ratio
over every window of ``WINDOW`` consecutive tokens (a response shorter than the window uses its whole length),
which makes it comparable across lengths. Tokens come from the target tokenizer through the project's prompt
layer, the same response tokens the other selectors see. Empty responses follow the project's data policy.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.selectors.base import Needs, ScoreRow, ScoringContext, token_score_rows

WINDOW = 50


def mattr(tokens: Sequence[int], window: int = WINDOW) -> float:
    """Mean over all length-``window`` windows of (distinct tokens / window); O(n) with a sliding counter."""
    n = len(tokens)
    if n == 0:
        return 0.0
    w = min(window, n)
    counts = Counter(tokens[:w])
    total = len(counts)
    for i in range(w, n):
        counts[tokens[i]] += 1
        old = tokens[i - w]
        counts[old] -= 1
        if counts[old] == 0:
            del counts[old]
        total += len(counts)
    return total / ((n - w + 1) * w)


class VocabDiversitySelector:
    name = "vocab_diversity"
    needs = Needs.NOTHING

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        return token_score_rows(examples, ctx, lambda ex, ids: mattr(ids))
