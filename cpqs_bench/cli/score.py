"""``cpqs-bench score SELECTOR --data POOL --out S [--selector DIR] [--config PRESET] [key=value ...]``.

Scores a pool with any registered selector (cpqs, ifd, superfiltering, random, longest, plugins): one JSON line per
pool example, in pool order, ``<out>.summary.json`` beside it. The pool is read here with the config's reader
settings; without ``--config`` no preset's limit applies (``--limit N`` = ``data.pool_limit=N``), and the counts
line says what was read, kept, rejected and limited, and where a limit came from.

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
    p.add_argument("--workdir", default=None, help="resume state (default: OUT.work/)")


def run(args: argparse.Namespace) -> int:
    resolved = resolve(args)
    pool = read_pool_at_edge(resolved, args.data)
    from cpqs_bench.score import score_pool

    summary = score_pool(
        resolved.cfg,
        pool.examples,
        args.out,
        selector=args.selector,
        checkpoint=args.checkpoint,
        workdir=args.workdir,
        source=pool.source,
        data_sha256=pool.sha256,
    )
    if summary.get("rank", 0) == 0:
        overlap = (summary.get("overlap") or {}).get("overlap")
        if overlap:
            print(
                f"warning: {overlap} of {len(pool.examples)} pool instructions were in the selector's training "
                "pairs (it scores answers it was trained on); train it with this pool excluded",
                file=sys.stderr,
            )
        print(json.dumps({**summary, "rejected_records": len(pool.rejected)}))
    return 0
