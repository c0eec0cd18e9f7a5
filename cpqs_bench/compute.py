"""What a stage cost: wall time, device, model size, tokens processed, and estimated FLOPs; an arm's selection cost
and its total compute (issue #27).

FLOPs per token, with N the parameters that take part in matrix multiplies (:func:`matmul_params`: every linear
layer's weight, the output embedding even when tied, not the input or position embeddings, which are lookups):

* forward (scoring, a judge's or reward model's pass, the prompt of a generation): ``2·N``;
* generation: ``2·N`` per generated token, plus the prompt's forward;
* LoRA training: ``4·N`` — the forward (2·N) plus the activation gradients (2·N); the frozen base weights get no
  weight gradients. The adapter's own ``N_a`` parameters train in full: ``6·N_a``. Gradient checkpointing repeats
  the forward: ``+ 2·(N + N_a)``;
* full fine-tuning: ``6·N`` (forward, activation gradients, weight gradients); ``+ 2·N`` with checkpointing.

Attention's own matrix multiplies (scores and the weighted sum, no parameters) add ``4·L·S·d`` per token in a
forward pass over a sequence of S tokens (L layers, d the attention width), three times that in training (the
backward pass needs both operands' gradients) — :func:`attention_flops_per_token`, optional everywhere (0 when the
sequence length is not known); it is small next to ``2·N`` while ``S ≪ N / (2·L·d)``.

References: Kaplan et al. 2020, "Scaling Laws for Neural Language Models" (arXiv:2001.08361), Table 1
(``C_forward ≈ 2N + 2·n_layer·n_ctx·d_attn``, training ≈ 3× the forward) — the convention issue #27 names — and the
code followed for the training formula, ``karpathy/nanoGPT`` ``model.py`` ``GPT.estimate_mfu`` (after PaLM,
arXiv:2204.02311, Appendix B): ``flops_per_token = 6*N + 12*L*H*Q*T``, N counting the (tied) token embedding once
and not the position embedding. ``training_flops(method="full", attention_per_token=attention_flops_per_token(L,
H·Q, T))`` is exactly that expression. Differences from the reference:

1. LoRA: the frozen weights cost ``4·N`` (no weight gradients), the adapter ``6·N_a``; nanoGPT only trains in full.
2. N counts matmul weights (:func:`matmul_params`) — nanoGPT counts every parameter but the position embedding,
   including norms and biases (a fraction of a percent); an *untied* input embedding is a lookup and is left out
   here, where nanoGPT's tied model has none.
3. The attention term uses each pass's own sequence length (nanoGPT: the block size) and is optional (0 when
   unknown); forward passes and generation get ``4·L·S·d`` per token, training three times that.
4. Not modelled: the first layer's input projections under LoRA need no input gradient (the embedding is frozen),
   so the estimate is high by ``2·(q+k+v weights of one layer)`` per token — 5 % on the 2-layer test model, about
   0.2 % on a 30-layer one. Measured by ``tests/test_equal_compute.py`` against
   ``torch.utils.flop_counter.FlopCounterMode`` (eager attention, one training step): full fine-tuning 1.000×,
   LoRA 1.04-1.05×, LoRA with gradient checkpointing 1.07× of the counted FLOPs.

Charging: an arm's :func:`selection_cost` is the sum over every stage its selection depends on, each charged in
full (a scoring stage shared by two arms is charged to both: the question is what it costs to make *this*
selection, not how to split a bill); :func:`total_compute` adds the arm's training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel


FORWARD = 2  # FLOPs per parameter per token of a forward pass
LORA_TRAIN = 4  # frozen weights in training: forward + activation gradients
FULL_TRAIN = 6  # trained weights: forward + activation gradients + weight gradients
CHECKPOINT_EXTRA = 2  # gradient checkpointing repeats the forward

TrainMethod = Literal["lora", "full"]


class CostError(ValueError):
    """Inconsistent cost inputs (negative counts, a selection charged to no stage, a stage that is not a cost)."""


def _count(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise CostError(f"{name} must be a non-negative int, got {v!r}")
    return v


def attention_flops_per_token(n_layers: int, d_attn: int, seq_len: float) -> float:
    """Forward FLOPs of attention's parameter-free matmuls per token: ``4·L·S·d`` (QKᵀ and the weighted sum over a
    dense ``S×S`` score matrix). ``seq_len``: the (mean) sequence length of the pass."""
    return 4.0 * n_layers * d_attn * seq_len


def attention_shape(model: PreTrainedModel | PretrainedConfig) -> tuple[int, int]:
    """``(L, d)`` for :func:`attention_flops_per_token` from a transformers model's config: layers, and the query
    width ``heads × head_dim`` (with grouped-query attention the scores still run over every query head)."""
    cfg = getattr(model, "config", model)
    get = lambda *names: next((getattr(cfg, n) for n in names if getattr(cfg, n, None) is not None), None)  # noqa: E731
    layers = get("num_hidden_layers", "n_layer", "num_layers")
    hidden = get("hidden_size", "n_embd", "d_model")
    heads = get("num_attention_heads", "n_head")
    if layers is None or hidden is None:
        raise CostError(f"cannot read the layer count and width from {type(cfg).__name__}")
    head_dim = get("head_dim")
    return int(layers), int(heads * head_dim) if heads and head_dim else int(hidden)


def token_weighted_length(lengths: Iterable[int]) -> float:
    """The sequence length a token sees on average, ``Σ S² / Σ S``: with it, ``tokens × attention_flops_per_token(L,
    d, token_weighted_length(rows))`` is the exact sum of ``4·L·d·S²`` over the rows."""
    ls = [_count("length", n) for n in lengths]
    total = sum(ls)
    return sum(n * n for n in ls) / total if total else 0.0


def forward_flops(tokens: int, n_params: int, *, attention_per_token: float = 0.0) -> float:
    """``tokens`` through a forward pass: ``2·N`` per token (+ attention)."""
    return _count("tokens", tokens) * (FORWARD * _count("n_params", n_params) + attention_per_token)


def generation_flops(
    prompt_tokens: int, generated_tokens: int, n_params: int, *, attention_per_token: float = 0.0
) -> float:
    """The prompt's forward plus ``2·N`` per generated token (with a KV cache each generated token is one forward
    position)."""
    n = _count("n_params", n_params)
    per = FORWARD * n + attention_per_token
    return (_count("prompt_tokens", prompt_tokens) + _count("generated_tokens", generated_tokens)) * per


def training_flops(
    tokens: int,
    n_params: int,
    *,
    method: TrainMethod = "lora",
    adapter_params: int = 0,
    gradient_checkpointing: bool = False,
    attention_per_token: float = 0.0,
) -> float:
    """FLOPs to train on ``tokens`` tokens (summed over epochs; every non-padding position of a row, prompt
    included: the forward and backward run over all of them).

    ``lora``: ``4·N`` for the frozen model + ``6·N_a`` for the adapter (``adapter_params``); ``full``: ``6·N``.
    Checkpointing adds a forward (``2·N`` + ``2·N_a``). ``attention_per_token``: the forward attention FLOPs per
    token (:func:`attention_flops_per_token`), charged 3× (+1× with checkpointing)."""
    t, n, a = _count("tokens", tokens), _count("n_params", n_params), _count("adapter_params", adapter_params)
    per: float
    if method == "lora":
        per = LORA_TRAIN * n + FULL_TRAIN * a
    elif method == "full":
        if a:
            raise CostError("full fine-tuning has no adapter parameters (adapter_params must be 0)")
        per = FULL_TRAIN * n
    else:
        raise CostError(f"training method must be 'lora' or 'full', got {method!r}")
    per += 3 * attention_per_token
    if gradient_checkpointing:
        per += CHECKPOINT_EXTRA * (n + a) + attention_per_token
    return t * per


@dataclass(frozen=True)
class TrainingWork:
    """The training a stage did, as :func:`training_flops` charges it: ``tokens`` trained (summed over epochs), the
    ``method``, the adapter's size (``adapter_params``, LoRA) and whether activations were recomputed
    (``gradient_checkpointing``)."""

    tokens: int = 0
    method: TrainMethod = "lora"
    adapter_params: int = 0
    gradient_checkpointing: bool = False


def matmul_params(model: torch.nn.Module) -> tuple[int, int]:
    """``(N, N_a)`` of a torch model: weights of every linear layer (``nn.Linear``, GPT-2's ``Conv1D``) plus the
    output embedding (counted once even when tied to the input embedding); ``N_a`` the LoRA adapter's (peft's
    ``lora_`` modules), which are not in ``N``. Input/position embeddings, norms and biases are not counted."""
    import torch
    from transformers.pytorch_utils import Conv1D

    seen: set[int] = set()
    base = adapter = 0
    for name, module in model.named_modules():
        if not isinstance(module, (torch.nn.Linear, Conv1D)):
            continue
        w = module.weight
        if id(w) in seen:
            continue
        seen.add(id(w))
        if any(part.startswith("lora_") for part in name.split(".")):
            adapter += w.numel()
        else:
            base += w.numel()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and id(head.weight) not in seen:  # a head that is not a Linear module
        base += head.weight.numel()
    return base, adapter


@dataclass(frozen=True)
class StageCost:
    """One stage's cost, as the stage's manifest records it (``as_dict`` / ``from_dict``).

    ``model_params``: N of the model the stage ran (:func:`matmul_params`; 0 for a stage with no model); tokens
    processed by kind; ``flops``: the estimate from the rules above (:meth:`estimate` fills it)."""

    stage: str
    wall_seconds: float
    device: str
    model_params: int = 0
    forward_tokens: int = 0
    generated_tokens: int = 0
    trained_tokens: int = 0
    flops: float = 0.0

    def __post_init__(self) -> None:
        if not self.stage:
            raise CostError("a stage cost needs the stage's name")
        if not (isinstance(self.wall_seconds, (int, float)) and self.wall_seconds >= 0):
            raise CostError(f"{self.stage}: wall_seconds must be a non-negative number, got {self.wall_seconds!r}")
        for f in ("model_params", "forward_tokens", "generated_tokens", "trained_tokens"):
            _count(f"{self.stage}: {f}", getattr(self, f))
        if not (isinstance(self.flops, (int, float)) and self.flops >= 0 and math.isfinite(self.flops)):
            raise CostError(f"{self.stage}: flops must be a finite non-negative number, got {self.flops!r}")

    @classmethod
    def estimate(
        cls,
        stage: str,
        wall_seconds: float,
        device: str,
        model_params: int,
        *,
        forward_tokens: int = 0,
        prompt_tokens: int = 0,
        generated_tokens: int = 0,
        training: TrainingWork = TrainingWork(),
        attention_per_token: float = 0.0,
    ) -> StageCost:
        """A stage cost with its FLOPs estimated: ``forward_tokens`` scored, ``prompt_tokens`` +
        ``generated_tokens`` generated, ``training.tokens`` trained (method, adapter, checkpointing as
        :func:`training_flops`). ``forward_tokens`` recorded = scored + prompt tokens."""
        flops = forward_flops(forward_tokens, model_params, attention_per_token=attention_per_token)
        flops += generation_flops(
            prompt_tokens, generated_tokens, model_params, attention_per_token=attention_per_token
        )
        flops += training_flops(
            training.tokens,
            model_params,
            method=training.method,
            adapter_params=training.adapter_params,
            gradient_checkpointing=training.gradient_checkpointing,
            attention_per_token=attention_per_token,
        )
        return cls(
            stage=stage,
            wall_seconds=float(wall_seconds),
            device=device,
            model_params=model_params,
            forward_tokens=forward_tokens + prompt_tokens,
            generated_tokens=generated_tokens,
            trained_tokens=training.tokens,
            flops=flops,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageCost:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise CostError(f"stage cost has unknown fields {sorted(unknown)} (known: {sorted(names)})")
        return cls(**d)


def _as_cost(c: StageCost | Mapping[str, Any]) -> StageCost:
    return c if isinstance(c, StageCost) else StageCost.from_dict(c)


_SUMMED = ("wall_seconds", "forward_tokens", "generated_tokens", "trained_tokens", "flops")


def _total(costs: list[StageCost]) -> dict[str, Any]:
    out: dict[str, Any] = {k: sum(getattr(c, k) for c in costs) for k in _SUMMED}
    out["devices"] = sorted({c.device for c in costs})
    return out


def selection_cost(stage_costs: Iterable[StageCost | Mapping[str, Any]]) -> dict[str, Any]:
    """An arm's selection cost: every stage its selection depends on (negatives, selector training, scoring, judge,
    warm-up, ...; ``StageCost`` objects or their ``as_dict``), each charged in full. A stage listed twice is charged
    once (it ran once for this selection). Returns the sums (``wall_seconds``, tokens by kind, ``flops``), the
    devices, and the per-stage costs. An arm with no stages (``random``, ``full``) costs 0."""
    by_stage: dict[str, StageCost] = {}
    for c in map(_as_cost, stage_costs):
        prev = by_stage.get(c.stage)
        if prev is not None and prev != c:
            raise CostError(f"stage {c.stage!r} is listed twice with different costs: {prev} vs {c}")
        by_stage[c.stage] = c
    costs = [by_stage[k] for k in sorted(by_stage)]
    return {**_total(costs), "stages": [c.as_dict() for c in costs]}


def total_compute(
    selection: Mapping[str, Any], training: StageCost | Mapping[str, Any] | Iterable[StageCost | Mapping[str, Any]]
) -> dict[str, Any]:
    """Selection + training: ``selection`` is :func:`selection_cost`'s result; ``training`` the arm's fine-tune
    stage cost (or several: one per seed, summed). Returns ``{"selection": ..., "training": ..., "total": ...}``
    with the summed fields of each and the selection's share of the total FLOPs."""
    missing = [k for k in _SUMMED if k not in selection]
    if missing:
        raise CostError(f"selection cost lacks {missing}: pass selection_cost(...)'s result")
    if isinstance(training, (StageCost, Mapping)):
        training = [training]
    train_costs = [_as_cost(c) for c in training]
    if not train_costs:
        raise CostError("total_compute needs the arm's training cost")
    train = _total(train_costs)
    total = {k: selection[k] + train[k] for k in _SUMMED}
    total["devices"] = sorted(set(selection.get("devices", [])) | set(train["devices"]))
    share = selection["flops"] / total["flops"] if total["flops"] else None
    sel = {k: v for k, v in selection.items() if k != "stages"}
    return {"selection": sel, "training": train, "total": total, "selection_flops_share": share}
