"""``random``: the control every selector must beat. Seeded, and independent of pool order.

Each example's score is a uniform number in [0, 1) derived from ``sha256(seed, id)``, not from a shared RNG stream,
so the same example gets the same score whatever else is in the pool and wherever it sits in the file: a top-k of
these scores is a uniform random subset for a given seed, and adding rows to a pool never reshuffles the old ones.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.selectors.base import Needs, ScoreRow, ScoringContext, token_score_rows

_DENOMINATOR = float(1 << 53)


def uniform(seed: int, example_id: str) -> float:
    """A deterministic uniform float in [0, 1) for (seed, id); 53 bits, the full double mantissa."""
    digest = hashlib.sha256(f"{seed}\x00{example_id}".encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / _DENOMINATOR


class RandomSelector:
    name = "random"
    needs = Needs.NOTHING

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        return token_score_rows(examples, ctx, lambda ex, ids: uniform(ctx.seed, ex.id))
