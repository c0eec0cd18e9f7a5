"""What a stage cost, recorded in its manifest (``cost``: :class:`cpqs_bench.compute.StageCost`), and an arm's
selection + training compute, charged in full (issue #27).

Measured: every stage's wall seconds (the executor's clock) and the tokens a fine-tune trained on (the Trainer's
count of input tokens, over every epoch). Estimated: FLOPs from the rules in :mod:`cpqs_bench.compute`; a scoring
stage's forward tokens are its selector's forward passes over the pool (:data:`FORWARD_PASSES`) × the pool's tokens as
the SFT template renders them — an estimate from the pool, not a count inside the selector, and labelled so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cpqs_bench.selectors.base import ModelLoader


# forward passes of the scoring model over every pool example, per selector (the base name of BASE+STEP); a
# selector not listed is charged one pass. random / longest run no model.
FORWARD_PASSES = {
    "random": 0,
    "longest": 0,
    "ifd": 2,  # conditioned + direct-answer pass (Cherry)
    "ifd_ppl": 2,
    "superfiltering": 2,  # the same two passes, on the small proxy model
    "perplexity": 1,
    "cpqs": 1,  # hidden states of every layer in one pass (+ a TextCNN, negligible)
    "kcenter": 1,
    "facility_location": 1,
    "rds": 1,
    "reward": 1,
    "external": 0,  # scores computed elsewhere: their cost is not known here
}
ESTIMATE_NOTE = "FLOPs estimated: forward passes × 2·N × pool tokens (SFT rendering); wall seconds measured"


_PARAMS: dict[tuple[str, str | None], int] = {}


def params_of(loader: ModelLoader | None, spec: str, revision: str | None, dtype: str = "auto") -> int:
    """N (matmul parameters) of a model the stage ran: counted on the model the shared cache already holds (any
    dtype; never a second load), else loaded through ``loader`` once per process."""
    from cpqs_bench.compute import matmul_params

    key = (spec, revision)
    if key not in _PARAMS:
        if loader is None:
            return 0
        peek = getattr(loader, "peek", None)
        model = peek(spec, revision) if peek is not None else None
        if model is None:
            model = loader(spec, revision, dtype)[0]
        _PARAMS[key] = matmul_params(model)[0]
    return _PARAMS[key]


def scoring_cost(
    stage: str, selector: str, seconds: float, pool_tokens: int, n_params: int, device: str
) -> dict[str, Any]:
    from cpqs_bench.compute import StageCost

    passes = FORWARD_PASSES.get(selector.partition("+")[0], 1)
    cost = StageCost.estimate(stage, seconds, device, n_params if passes else 0, forward_tokens=passes * pool_tokens)
    return {**cost.as_dict(), "estimate": ESTIMATE_NOTE}


def arm_compute(selection_costs: list[dict[str, Any]], training_cost: dict[str, Any] | None) -> dict[str, Any]:
    """The fields the leaderboard shows per arm × seed: selection FLOPs and seconds (every stage the selection
    depends on, in full), training FLOPs, and their total."""
    from cpqs_bench.compute import StageCost, selection_cost, total_compute

    fields = {f for f in StageCost.__dataclass_fields__}
    sel = selection_cost([{k: v for k, v in c.items() if k in fields} for c in selection_costs])
    out = {"selection_flops": sel["flops"], "selection_seconds": sel["wall_seconds"]}
    if training_cost is not None:
        tot = total_compute(sel, {k: v for k, v in training_cost.items() if k in fields})
        out.update(training_flops=tot["training"]["flops"], total_flops=tot["total"]["flops"])
    return out
