"""``cpqs-bench finetune --selection S --out ARM [--config PRESET] [key=value ...]``: LoRA fine-tune one arm.

Multi-process (one process per GPU, or gloo on CPU):
``accelerate launch --multi_gpu --num_processes 2 -m cpqs_bench.cli finetune --selection S --out ARM ...``.
The same fine-tune step as ``reproduce`` (:class:`cpqs_bench.stages.finetune.FinetuneStep`) through a one-step
pipeline (run directory ``finetune/<arm>-s<seed>/<hash>``: same key, manifest, resume from checkpoints after a kill);
``--out`` receives the adapter folder (weights, tokenizer, ``recipe.json``, ``training.json``).

The pool the selection indexes is read here (``--pool``, else ``data.pool``) with the config's reader settings and
no row limit (every selected id must be found); the library call gets the ``Example`` objects.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from cpqs_bench.cli.common import add_config_arguments, alias, read_pool_at_edge, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--selection", required=True, help="selection JSONL from `cpqs-bench select`")
    p.add_argument("--pool", default=None, help="pool the selection was made on (default: the config's data.pool)")
    p.add_argument("--out", required=True, help="arm directory (adapter, tokenizer, recipe.json, training.json)")
    p.add_argument("--seed", type=int, default=None, help="default: the first of experiment.seeds")
    p.add_argument("--arm", default=None, help="arm name recorded in the manifest (e.g. cpqs, random)")
    alias(p, "--model", "model.id", metavar="MODEL", help="base model: Hub id, folder or 'embedded'")
    p.add_argument("--merge", action="store_true", default=None, help="also write merged full weights to OUT/merged")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    resolved = resolve(args)
    from cpqs_bench.config import replace
    from cpqs_bench.io import read_json
    from cpqs_bench.pipeline import Given
    from cpqs_bench.stages.artifacts import FileArtifact, PoolArtifact
    from cpqs_bench.stages.finetune import FinetuneStep
    from cpqs_bench.stages.verb import deliver_folder, main_process, run_one

    # The selection names ids of the whole pool: read it without a row limit (a limit would only drop selected ids).
    unlimited = dataclasses.replace(resolved, cfg=replace(resolved.cfg, **{"data.pool_limit": None}))
    pool = read_pool_at_edge(unlimited, args.pool)
    cfg = resolved.cfg
    seed = cfg.experiment.seeds[0] if args.seed is None else args.seed
    arm = args.arm or Path(args.selection).stem
    step = FinetuneStep(
        cfg,
        arm,
        seed,
        Given(PoolArtifact.of(pool.examples, pool.sha256, pool.summary())),
        Given(FileArtifact.of(Path(args.selection))),
        merge=args.merge,
        progress_bar=not args.no_progress,
    )
    art = run_one(cfg, step, main_process=main_process())
    if art is not None:
        deliver_folder(art.path, args.out)
        m = read_json(Path(art.path).parent / "manifest.json")
        summary = {
            k: m.get(k)
            for k in (
                "recipe_hash",
                "seed",
                "arm",
                "train_data_loss",
                "n_examples",
                "trained_tokens",
                "optimizer_steps",
            )
        }
        summary["training"] = {k: v for k, v in (m.get("training") or {}).items() if k != "loss_curve"}
        summary["adapter"] = str(args.out)
        print(json.dumps(summary, indent=2, default=str))
    return 0
