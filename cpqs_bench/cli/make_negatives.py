"""``cpqs-bench make-negatives --data POOL --out FILE [--generator M[,M2]] [--config PRESET] [key=value ...]``.

Answers the pool's instructions with weaker generator models (CPQS's small-model negatives). ``--generator`` is an
alias of ``selectors.cpqs.generators`` (one or several models); answers cut off at ``max_new_tokens`` are dropped
and counted (``selectors.cpqs.generation_drop_unfinished``). Resumable: parts are kept in ``OUT.parts/``.
``--backend`` (``selectors.cpqs.generation_backend``): ``auto`` (default) generates with vLLM on a CUDA device when
``vllm`` is installed, else with HF ``generate``; ``hf`` / ``vllm`` force one.
"""

from __future__ import annotations

import argparse
import json

from cpqs_bench.cli.common import add_config_arguments, alias, csv, read_pool_at_edge, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--data", default=None, help="pool: named dataset, file or hf: spec (default: data.pool)")
    alias(
        p,
        "--generator",
        "selectors.cpqs.generators",
        type=csv,
        metavar="MODEL[,MODEL]",
        help="the weaker model(s) (spec as for --model); default selectors.cpqs.generators or .generator",
    )
    p.add_argument("--out", required=True, help="output JSONL (resumable; parts kept in OUT.parts/)")
    alias(p, "--limit", "data.pool_limit", type=int, metavar="N", help="only the first N pool examples")
    alias(p, "--batch-size", "selectors.cpqs.generation_batch_size", type=int, metavar="N")
    alias(p, "--max-new-tokens", "selectors.cpqs.generation_max_new_tokens", type=int, metavar="N")
    alias(
        p,
        "--backend",
        "selectors.cpqs.generation_backend",
        choices=("auto", "hf", "vllm"),
        help="generation engine: auto = vLLM on CUDA when importable, else HF generate",
    )
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    resolved = resolve(args)
    pool = read_pool_at_edge(resolved, args.data)
    from cpqs_bench.selectors.cpqs.negatives import make_negatives

    summary = make_negatives(resolved.cfg, pool.examples, None, args.out, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "per_generator"}))
    return 0
