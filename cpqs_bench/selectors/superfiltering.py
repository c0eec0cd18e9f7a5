"""Superfiltering (Li et al., ACL 2024): IFD computed by a *small proxy* model, then drop IFD >= 1, keep the top.

Weak-to-strong: a small model's IFD ranking agrees well with a large one's, so a GPT-2-sized proxy filters data for
a much larger target. Faithful to the paper: the perplexity-ratio IFD (``ifd_ppl``), the proxy's plain ``none``
prompt (``"{instruction}\\n"`` then the answer; no chat template, no system prompt), the IFD >= 1 rule. Config:
``selectors.proxy_model`` (``gpt2`` on the Hub; the smoke preset uses the embedded model offline) and
``selectors.proxy_template``. The direct-answer context of the unconditioned pass is Superfiltering's own:
the proxy tokenizer's default BOS or nothing (``tokenizer.encode(output_i)`` in tianyi-lab/Superfiltering
``code_ifd/data_analysis.py``; GPT-2 adds no BOS, so ``r_1`` is left out of both means, see
:mod:`cpqs_bench.selectors.ifd`); ``selectors.proxy_ifd_context: cherry`` scores after the proxy template's response
header instead. Unlike the original script, nothing here assumes the Alpaca pool size: the budget is
applied later by :mod:`cpqs_bench.select` (a count or a fraction of whatever pool was scored).

**Differences from the reference** (tianyi-lab/Superfiltering ``code_ifd/data_analysis.py``,
``code_ifd/put_analysis_to_data.py``, ``code_ifd/select_data.py``, ``scripts/step1_select_data_analysis_gpt2.sh``):

1. The proxy prompt: ``selectors.proxy_template`` (``none``: ``"{user text}\\n"``, the Alpaca input pasted into the
   user text as ``instruction\\n\\ninput``) unless ``selectors.ifd.prompt: reference``, which renders
   ``PROMPT_DICT_NONE`` exactly (``"{instruction}\\n{input}\\n"`` / ``"{instruction}\\n"``) and tokenises the whole text
   as ``data_analysis.py`` does.
2. Length: ``selectors.ifd.proxy_max_length`` (Superfiltering's default 1024; paper presets) else
   ``prompt.max_length``; one truncation shared by both passes (the script cuts ``output`` alone at
   ``max_length - len(instruction ids) + 1``).
3. ``r_1`` of a GPT-2 proxy (no BOS) is left out of both means; the script keeps it in the conditioned loss only.
4. Selection: ``select`` takes the top-k by IFD of the rows with IFD < 1 (``select_data.py`` sorts and takes a
   ratio of the Alpaca pool); ``Superfiltering.D`` is ``selectors.then: facility_location`` on the top
   ``pre_fraction`` (``code_diversity_fla/do_fla.py``), see :mod:`cpqs_bench.selectors.diversity`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpqs_bench.selectors.base import Needs, ScoringContext
from cpqs_bench.selectors.ifd import IFDPerplexitySelector, IFDSettings

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class SuperfilteringSelector(IFDPerplexitySelector):
    name = "superfiltering"
    needs = Needs.PROXY_MODEL
    default_context = "superfiltering"
    context_key = "proxy_ifd_context"

    def model_spec(self, ctx: ScoringContext) -> str:
        return ctx.config.selectors.proxy_model

    def max_length(self, ctx: ScoringContext) -> int:
        """``selectors.ifd.proxy_max_length`` (Superfiltering's data_analysis.py default: 1024), else
        ``prompt.max_length``."""
        value = getattr(getattr(ctx.config.selectors, "ifd", None), "proxy_max_length", None)
        return int(value) if value is not None else ctx.config.prompt.max_length

    def settings(self, ctx: ScoringContext, model: PreTrainedModel) -> IFDSettings:
        sel = ctx.config.selectors
        return self._settings(sel.proxy_model, sel.proxy_template, None, ctx, model)
