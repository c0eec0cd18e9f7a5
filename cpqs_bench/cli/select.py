"""``cpqs-bench select --scores FILE --budget K [--bottom] --out selection.jsonl``: top (or bottom) budget."""

from __future__ import annotations

import argparse
import json

from cpqs_bench.cli.common import add_config_arguments, alias, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--scores", required=True, help="scores JSONL from `cpqs-bench score`")
    alias(p, "--budget", "selectors.budget", type=float, metavar="K", help="count (>= 1) or fraction of the pool (< 1)")
    p.add_argument("--bottom", action="store_true", help="keep the lowest-scored examples (sanity arm)")
    p.add_argument("--out", required=True, help="selection JSONL (kept and dropped ids with rank and reason)")


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args).cfg
    from cpqs_bench.select import select_file

    print(json.dumps(select_file(args.scores, cfg.selectors.budget, args.out, args.bottom), indent=2))
    return 0
