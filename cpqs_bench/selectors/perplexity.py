"""``perplexity``: the mean response NLL under the target model (the conditioned half of IFD) as a baseline.

Score = ``-L_c`` by default (``selectors.perplexity_keep: low`` keeps the examples the target model finds *most*
likely, the perplexity-pruning baseline of Marion et al. 2023, "When Less is More: Investigating Data Pruning for
Pretraining LLMs at Scale"); ``perplexity_keep: high`` scores ``+L_c`` (keep the hardest). ``extra`` carries
``loss_cond`` and ``ppl = exp(L_c)``.

**No second forward.** The losses come from :func:`cpqs_bench.selectors.ifd.compute_losses`, the very function
``ifd`` / ``ifd_ppl`` run, with the very settings ``IFDSelector.settings`` builds (same template, length policy,
batching), so the shards it writes are keyed by the same fingerprint. They are stored under
``ctx.shared("ifd")``: when the caller sets ``ScoringContext.shared_workdir`` (one folder per scoring run) and the
IFD selectors store theirs there too, a run of ``ifd`` + ``perplexity`` computes each loss once. Run alone, the
shards also hold ``L_u`` (the unconditioned pass is part of the shared computation; one extra short pass, kept so
the shards stay interchangeable with IFD's).

Rows that IFD skips (empty response, dropped by the length policy) are excluded with the same reasons.

**Differences from the reference** (Marion et al. 2023 publish no code; the loss is Cherry_LLM's conditioned pass,
``cherry_seletion/data_analysis.py`` ``get_perplexity_and_embedding_part_text``): the NLL of the *response given
its prompt* under the *target* model (the paper: the whole text's perplexity under a separate reference model, for
pretraining data); rendering and length follow ``selectors.ifd.prompt`` / ``selectors.ifd.max_length`` (Cherry's
prompt with ``reference``), as the IFD shards it shares; see :mod:`cpqs_bench.selectors.ifd`.
"""

from __future__ import annotations

import math
from typing import Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.selectors.base import Needs, ScoreRow, ScoringContext
from cpqs_bench.selectors.ifd import IFDSelector, Losses, compute_losses

KEEP = ("low", "high")


class PerplexitySelector:
    name = "perplexity"
    needs = Needs.TARGET_MODEL

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        keep = getattr(ctx.config.selectors, "perplexity_keep", "low")
        if keep not in KEEP:
            raise ValueError(f"selectors.perplexity_keep must be one of {KEEP}, got {keep!r}")
        ifd = IFDSelector()
        model, tok, info = ctx.model(ifd.model_spec(ctx))
        settings = ifd.settings(ctx, model)
        losses = compute_losses(model, tok, info, examples, settings, ctx.shared("ifd"))
        sign = -1.0 if keep == "low" else 1.0
        return [self.row(x, sign) for x in losses]

    @staticmethod
    def row(x: Losses, sign: float) -> ScoreRow:
        if x.skip is not None:
            return ScoreRow(x.id, math.nan, x.n_tokens, exclude=x.skip)
        assert x.loss_cond is not None
        return ScoreRow(
            x.id,
            sign * x.loss_cond,
            x.n_tokens,
            extra={"loss_cond": x.loss_cond, "ppl": math.exp(min(x.loss_cond, 700.0)), "truncated": x.truncated},
        )
