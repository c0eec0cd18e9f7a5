"""``cpqs-bench select --scores FILE --budget K [--bottom] --out selection.jsonl``: top (or bottom) budget.

The same selection step as ``reproduce`` (:class:`cpqs_bench.stages.select.SelectStep`) through a one-step pipeline,
keyed on the scores' content; ``--out`` receives ``selection.jsonl`` and ``<out stem>.summary.json``. A token budget
(``selectors.budget_unit=tokens``) counts trained tokens of the pool the scores index (``--pool``, else
``data.pool``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cpqs_bench.cli.common import add_config_arguments, alias, read_pool_at_edge, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--scores", required=True, help="scores JSONL from `cpqs-bench score`")
    alias(p, "--budget", "selectors.budget", type=float, metavar="K", help="count (>= 1) or fraction of the pool (< 1)")
    alias(p, "--unit", "selectors.budget_unit", metavar="examples|tokens", help="what the budget counts")
    p.add_argument("--bottom", action="store_true", help="keep the lowest-scored examples (sanity arm)")
    p.add_argument("--pool", default=None, help="with a token budget: the pool the scores index (default data.pool)")
    p.add_argument("--arm", default=None, help="arm name (default: the scores' selector, -bottom with --bottom)")
    p.add_argument("--out", required=True, help="selection JSONL (kept and dropped ids with rank and reason)")


def run(args: argparse.Namespace) -> int:
    resolved = resolve(args)
    cfg = resolved.cfg
    from cpqs_bench.io import read_json, read_jsonl
    from cpqs_bench.pipeline import Given
    from cpqs_bench.stages.artifacts import FileArtifact, PoolArtifact
    from cpqs_bench.stages.select import PoolTokens, SelectStep
    from cpqs_bench.stages.verb import deliver_file, run_one

    scores = Path(args.scores)
    first = next(iter(read_jsonl(scores)), {})
    summary_file = Path(str(scores) + ".summary.json")
    selector = read_json(summary_file).get("selector") if summary_file.exists() else first.get("selector")
    arm = args.arm or ((selector or scores.stem) + ("-bottom" if args.bottom else ""))
    tokens = None
    if cfg.selectors.budget_unit == "tokens":
        pool = read_pool_at_edge(resolved, args.pool)
        tokens = PoolTokens(cfg, Given(PoolArtifact.of(pool.examples, pool.sha256)))
    step = SelectStep(
        cfg, arm, Given(None), Given(FileArtifact.of(scores)), selector=selector, bottom=args.bottom, tokens=tokens
    )
    art = run_one(cfg, step)
    out = deliver_file(art.path, args.out)
    m = read_json(Path(art.path).parent / "manifest.json")
    keep = (
        "budget",
        "budget_unit",
        "bottom",
        "pool",
        "kept",
        "excluded",
        "n_examples",
        "trained_tokens",
        "supervised_tokens",
        "budget_tokens",
        "warning",
    )
    summary = {"scores": str(scores), **{k: m[k] for k in keep if k in m}}
    from cpqs_bench.io import write_json

    write_json(out.with_suffix(".summary.json"), summary)
    print(json.dumps(summary, indent=2))
    return 0
