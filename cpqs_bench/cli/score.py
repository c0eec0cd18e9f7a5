"""``cpqs-bench score SELECTOR --data POOL --out S [--selector DIR] [--config PRESET] [key=value ...]``.

Scores a pool with any registered selector (cpqs, ifd, superfiltering, random, longest, plugins): one JSON line per
pool example, in pool order, ``<out>.summary.json`` beside it. The pool is read here with the config's reader
settings; without ``--config`` no preset's limit applies (``--limit N`` = ``data.pool_limit=N``), and the counts
line says what was read, kept, rejected and limited, and where a limit came from.

The verb runs the same scoring step as ``reproduce`` (:class:`cpqs_bench.stages.score.ScoreStep`) through a one-step
pipeline in the run directory (``experiment.output_dir``/``experiment.name``/``score/<selector>/<hash>``: same key,
manifest, code version, resume), then copies ``scores.jsonl`` and its summary to ``--out``.

Multi-process: ``accelerate launch --num_processes N -m cpqs_bench.cli score ...`` (each rank scores a slice).
"""

from __future__ import annotations

import argparse
import json
import sys

from cpqs_bench.cli.common import add_config_arguments, alias, read_pool_at_edge, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("selector", help="registered selector name (cpqs, ifd, superfiltering, random, longest, plugins)")
    add_config_arguments(p)  # after the selector: `score NAME k=v` gives NAME to the selector
    p.add_argument("--data", default=None, help="pool: named dataset, file or hf: spec (default: data.pool)")
    p.add_argument(
        "--selector",
        dest="checkpoint",
        default=None,
        help="trained selector directory (cpqs: the TextCNN checkpoint; mods: a phases folder)",
    )
    p.add_argument("--out", required=True, help="scores JSONL")
    alias(p, "--limit", "data.pool_limit", type=int, metavar="N", help="only the first N pool examples")
    alias(p, "--model", "model.id", metavar="MODEL", help="target model: Hub id, folder or 'embedded'")


def run(args: argparse.Namespace) -> int:
    resolved = resolve(args)
    pool = read_pool_at_edge(resolved, args.data)
    from cpqs_bench.pipeline import Given
    from cpqs_bench.stages.artifacts import FileArtifact, PoolArtifact
    from cpqs_bench.stages.score import ScoreStep
    from cpqs_bench.stages.verb import deliver_file, main_process, run_one

    cfg = resolved.cfg
    step = ScoreStep(
        cfg,
        Given(PoolArtifact.of(pool.examples, pool.sha256, pool.summary())),
        args.selector,
        checkpoint=Given(FileArtifact.of(args.checkpoint)) if args.checkpoint else None,
        source=pool.source,
    )
    art = run_one(cfg, step, main_process=main_process())
    if art is not None:
        deliver_file(art.path, args.out, ".summary.json")
        summary = art.info["summary"]
        overlap = (summary.get("overlap") or {}).get("overlap")
        if overlap:
            print(
                f"warning: {overlap} of {len(pool.examples)} pool instructions were in the selector's training "
                "pairs (it scores answers it was trained on); train it with this pool excluded",
                file=sys.stderr,
            )
        print(json.dumps({**summary, "rejected_records": len(pool.rejected)}))
    return 0
