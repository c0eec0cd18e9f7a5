"""``cpqs-bench finetune --selection S --out ARM [--config PRESET] [key=value ...]``: LoRA fine-tune one arm.

Multi-process (one process per GPU, or gloo on CPU):
``accelerate launch --multi_gpu --num_processes 2 -m cpqs_bench.cli finetune --selection S --out ARM ...``.
The pool the selection indexes is read here (``--pool``, else ``data.pool``) with the config's reader settings and
no row limit (every selected id must be found); the library call gets the ``Example`` objects.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging

from cpqs_bench.cli.common import add_config_arguments, alias, read_pool_at_edge, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--selection", required=True, help="selection JSONL from `cpqs-bench select`")
    p.add_argument("--pool", default=None, help="pool the selection was made on (default: the config's data.pool)")
    p.add_argument("--out", required=True, help="arm directory (adapter, tokenizer, manifest.json, DONE)")
    p.add_argument("--seed", type=int, default=None, help="default: the first of experiment.seeds")
    p.add_argument("--arm", default=None, help="arm name recorded in the manifest (e.g. cpqs, random)")
    alias(p, "--model", "model.id", metavar="MODEL", help="base model: Hub id, folder or 'embedded'")
    p.add_argument("--merge", action="store_true", default=None, help="also write merged full weights to OUT/merged")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    resolved = resolve(args)
    from cpqs_bench.config import replace
    from cpqs_bench.finetune.sft import finetune_arm

    # The selection names ids of the whole pool: read it without a row limit (a limit would only drop selected ids).
    unlimited = dataclasses.replace(resolved, cfg=replace(resolved.cfg, **{"data.pool_limit": None}))
    pool = read_pool_at_edge(unlimited, args.pool)
    cfg = resolved.cfg
    seed = cfg.experiment.seeds[0] if args.seed is None else args.seed
    manifest = finetune_arm(
        cfg,
        args.selection,
        pool.examples,
        args.out,
        seed=seed,
        arm=args.arm,
        merge=args.merge,
        progress_bar=not args.no_progress,
        pool_summary=pool.summary(),
    )
    if manifest.get("process_index", 0) == 0:
        summary = {k: manifest.get(k) for k in ("recipe_hash", "seed", "arm", "train_data_loss")}
        summary["training"] = {k: v for k, v in manifest.get("training", {}).items() if k != "loss_curve"}
        print(json.dumps(summary, indent=2, default=str))
    return 0
