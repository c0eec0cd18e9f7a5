"""``cpqs-bench select --scores FILE --budget K [--bottom] --out selection.jsonl``."""
from __future__ import annotations

import argparse
import json

from cpqs_bench import select


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", required=True, help="scores JSONL from `cpqs-bench score`")
    p.add_argument("--budget", required=True, type=float, help="count (>= 1) or fraction of the pool (< 1)")
    p.add_argument("--bottom", action="store_true", help="keep the lowest-scored examples (sanity arm)")
    p.add_argument("--out", required=True, help="selection JSONL (kept and dropped ids with rank and reason)")


def run_cli(args: argparse.Namespace) -> int:
    print(json.dumps(select.main(args.scores, args.budget, args.out, args.bottom), indent=2))
    return 0
