"""The LESS warm-up (``selectors.less``): LoRA on a seeded fraction of the pool, every epoch's adapter and optimizer
state kept, through :func:`cpqs_bench.finetune.sft.finetune_arm` (``ArmOptions(keep_epoch_checkpoints=True)``).

Reference: ``princeton-nlp/LESS`` ``less/scripts/train/base_training_args.sh`` + ``warmup_lora_train.sh`` (LoRA r 128,
α 512, dropout 0.1 on q/k/v/o projections; lr 2e-5, linear schedule, warm-up ratio 0.03, weight decay 0; effective
batch 32; AdamW; 4 epochs, ``--save_strategy epoch``; ``--percentage 0.05`` of the training data). The selector
(:mod:`cpqs_bench.selectors.less`) reads the folder this writes; it lives here because the selectors layer may not
import the fine-tuning code (``tests/test_layers.py``), while the warm-up must be one. See the selector's module
docstring for the differences from the reference (micro-batch, the order-free seeded draw).

Stage: :func:`warmup` is a reproduce step of its own; inputs that determine its output: the pool's ids + content,
``selectors.less.{warmup_fraction, warmup_epochs, lora_r, lora_alpha, lr, max_length}``, ``seed``, ``model.*``,
``prompt.*``, ``finetune.precision`` and ``finetune.micro_batch_size``, the transformers / peft versions (in the
recipe hash), the code of this module and of :mod:`cpqs_bench.finetune.sft`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.finetune.sft import ArmConfig, ArmOptions, epoch_checkpoints, finetune_arm
from cpqs_bench.io import sha256_file, write_json, write_jsonl
from cpqs_bench.selectors.base import is_empty_response
from cpqs_bench.selectors.less import WARMUP_RECORD

if TYPE_CHECKING:
    from cpqs_bench.config import Config

LORA_DROPOUT = 0.1  # base_training_args.sh
TARGET_MODULES = r".*\.(q_proj|k_proj|v_proj|o_proj)"  # base_training_args.sh --lora_target_modules q k v o
EFFECTIVE_BATCH = 32  # per_device_train_batch_size 1 x gradient_accumulation_steps 32
LR_SCHEDULER = "linear"
WARMUP_RATIO = 0.03


def warmup_subset(pool: Sequence[Example], fraction: float, seed: int) -> list[Example]:
    """The seeded, order-free warm-up draw: the ``fraction`` (at least 1) of non-empty examples with the smallest
    ``sha256(seed:id)``, in id order."""
    if not 0 < fraction <= 1:
        raise ValueError(f"selectors.less.warmup_fraction must be in (0, 1], got {fraction}")
    eligible = [ex for ex in pool if not is_empty_response(ex)]
    if not eligible:
        raise ValueError("LESS warm-up: no example with a non-empty response in the pool")
    k = max(1, round(fraction * len(eligible)))
    key = lambda ex: hashlib.sha256(f"{seed}:{ex.id}".encode()).hexdigest()  # noqa: E731
    return sorted(sorted(eligible, key=key)[:k], key=lambda ex: ex.id)


def warmup_config(cfg: Config) -> Config:
    """The project config with the reference's warm-up recipe in its finetune section."""
    from cpqs_bench.config import replace

    lc = cfg.selectors.less
    micro = max(
        d
        for d in range(1, EFFECTIVE_BATCH + 1)
        if EFFECTIVE_BATCH % d == 0 and d <= max(1, cfg.finetune.micro_batch_size)
    )
    return replace(
        cfg,
        **{
            "finetune.lora_r": lc.lora_r,
            "finetune.lora_alpha": lc.lora_alpha,
            "finetune.lora_dropout": LORA_DROPOUT,
            "finetune.target_modules": TARGET_MODULES,
            "finetune.lr": lc.lr,
            "finetune.epochs": float(lc.warmup_epochs),
            "finetune.max_steps": -1,
            "finetune.lr_scheduler": LR_SCHEDULER,
            "finetune.warmup_ratio": WARMUP_RATIO,
            "finetune.weight_decay": 0.0,
            "finetune.batch_size": EFFECTIVE_BATCH,
            "finetune.micro_batch_size": micro,
            "finetune.max_length": lc.max_length,
            "finetune.group_by_length": False,
            "finetune.packing": False,
            "finetune.optim": "adamw_torch",
            "finetune.max_grad_norm": 1.0,
            "finetune.logging_steps": 1,
            "finetune.merge": False,
            "finetune.measure_train_loss": False,
        },
    )


def _info_loader(loader: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """finetune_arm reads ``info.revision`` / ``info.path``; custom loaders (tests) may return a plain dict."""
    if loader is None:
        return None

    def load(spec: str, revision: str | None, dtype: str) -> tuple[Any, Any, Any]:
        model, tok, info = loader(spec, revision, dtype)
        if not hasattr(info, "revision"):
            info = SimpleNamespace(revision=revision, path=str(spec), detail=info)
        return model, tok, info

    return load


def warmup(
    cfg: Config, pool: Sequence[Example], out_dir: str | Path, *, seed: int, loader: Callable[..., Any] | None = None
) -> dict[str, Any]:
    """Train the LESS warm-up into ``out_dir`` (resumable; a finished one is returned as is) and return its record:
    ``{"adapter": "adapter", "checkpoints": [{step, epoch, path, mean_lr}], "n_warmup", "warmup_ids_sha256",
    "recipe_hash", ...}`` (also written to ``out_dir/warmup.json``). Inputs that determine it: the pool's ids +
    content, ``selectors.less`` (fraction, epochs, LoRA, lr, max_length), ``model``, ``prompt``,
    ``finetune.precision`` / ``micro_batch_size``, ``seed``. ``loader(spec, revision, dtype)``: as finetune_arm's.
    Paths in the record are relative to ``out_dir`` (the folder may move)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lc = cfg.selectors.less
    chosen = warmup_subset(pool, lc.warmup_fraction, seed)
    selection = out / "warmup_selection.jsonl"
    write_jsonl(selection, [{"id": ex.id, "kept": True} for ex in chosen])
    record = finetune_arm(
        ArmConfig.of(warmup_config(cfg)),
        selection,
        chosen,
        out / "adapter",
        seed=seed,
        arm="less-warmup",
        loader=_info_loader(loader),
        options=ArmOptions(progress_bar=False, keep_epoch_checkpoints=True),
    )
    ckpts = epoch_checkpoints(out / "adapter")  # from disk (the record's paths are those of the training run)
    if len(ckpts) != lc.warmup_epochs:
        raise RuntimeError(f"{out}: the warm-up kept {len(ckpts)} epoch checkpoints, expected {lc.warmup_epochs}")
    for c in ckpts:
        c["path"] = Path(c["path"]).relative_to(out).as_posix()
    result = {
        "adapter": "adapter",
        "checkpoints": ckpts,
        "n_warmup": len(chosen),
        "n_pool": len(pool),
        "warmup_ids_sha256": sha256_file(selection),
        "recipe_hash": record["recipe_hash"],
        "seed": seed,
        "train_loss": record["training"]["train_loss"],
    }
    write_json(out / WARMUP_RECORD, result)
    return result
