"""The SFT recipe. Frozen and hashed: every arm of an experiment trains with the same one (only the data differs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class FinetuneConfig:
    lora_r: int = 16
    lora_alpha: int = 8
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"
    epochs: float = 3.0
    lr: float = 5e-5
    batch_size: int = 16  # effective batch = micro_batch_size * grad_accum * processes
    micro_batch_size: int = 4
    max_length: int = 2048
    warmup_ratio: float = 0.03  # share of the optimizer steps; turned into a step count by us (same on every
    # transformers release: only transformers >= 5 reads a float warmup_steps < 1 as a ratio)
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    gradient_checkpointing: bool = False
    group_by_length: bool = True  # micro-batches of similar lengths (seeded; see dataset.length_grouped_order)
    # Each micro-batch as one padding-free row (position ids restart per example; transformers keeps examples apart
    # with a block-diagonal causal mask; see dataset.PackCollator). Same examples per micro-batch and per optimizer
    # step and the same loss normalisation (supervised tokens of the whole step) as padded batches; only float
    # reduction order and the dropout masks differ, so it is part of the recipe (recorded only when on: an arm
    # trained padded keeps the recipe hash it had before the option existed). Off by default: on the CPU bench the
    # block-diagonal mask cost about what the padding saved (bench_sft.py --padded).
    packing: bool = False
    save_steps: int = 0  # checkpoint every N optimizer steps (0: by time only, save_interval_s)
    save_interval_s: float = 300.0  # checkpoint when this many seconds passed since the last one (0: off)
    save_total_limit: int = 2
    logging_steps: int = 5
    max_steps: int = -1
    merge: bool = False  # also export merged full weights
    # Frozen explicitly (not left to the library default, which can change between transformers releases).
    optim: str = "adamw_torch"
    max_grad_norm: float = 1.0
    # Operational (not part of the recipe hash): measure the mean response loss on the training rows with the
    # adapter disabled and enabled after training (two extra forward passes over the selection; off by default,
    # the loss curve of training is always recorded).
    measure_train_loss: bool = False
    keep_checkpoints: bool = (
        False  # keep checkpoints/ after the adapter is written (else removed once training.json is written)
    )
