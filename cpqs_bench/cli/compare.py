"""``cpqs-bench compare --selectors A,B --out DIR (--data POOL | --tiers A,B | --pairs FILE) [--config P] [k=v ...]``.

Scores one pool with several selectors and writes the diagnostics report (histograms, pairwise Spearman, top-k
Jaccard, each selector's length correlation, pairwise accuracy on quality tiers, training overlap of checkpointed
selectors). ``--data`` is read here with the config's reader settings (``--limit`` = ``data.pool_limit``); with
``--tiers``/``--pairs``, ``--limit`` caps the shared instructions. ``--contamination`` adds, per evaluation task
(``--tasks`` = ``evaluate.tasks``), the items that the pool and each selector's top budget share a word n-gram with
(``data.contamination_n``; see ``cpqs-bench contamination``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cpqs_bench.cli.common import add_config_arguments, alias, csv, key_values, read_pool_at_edge, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--selectors", required=True, help="comma-separated names (built-ins and plugins)")
    p.add_argument("--data", help="pool: named dataset, file, or hf:owner/name (not needed with --tiers/--pairs)")
    alias(p, "--budget", "selectors.budget", type=float, metavar="K", help="count (>= 1) or fraction (< 1)")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--scores", action="append", metavar="NAME=FILE", help="reuse a scores JSONL, repeatable")
    p.add_argument(
        "--selector-checkpoint",
        action="append",
        metavar="NAME=DIR",
        help="checkpoint for a selector that needs one (e.g. cpqs=DIR), repeatable",
    )
    p.add_argument(
        "--tiers",
        help="pools answering the same instructions, strongest first, comma-separated "
        "(e.g. alpaca_eval/gpt4,alpaca_eval/pythia-12b-mix-sft)",
    )
    p.add_argument("--pairs", help="same-instruction pairs file (e.g. alpaca_gpt4_vs_davinci003)")
    p.add_argument(
        "--pair-fields",
        default="output_gpt4,output_davinci003",
        help="stronger,weaker answer fields of --pairs (default: output_gpt4,output_davinci003)",
    )
    p.add_argument(
        "--limit",
        type=int,
        help="at most this many examples (= data.pool_limit for --data; instructions with --tiers/--pairs)",
    )
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for pairwise-accuracy CIs")
    alias(p, "--seed", "selectors.seed", type=int, metavar="N", help="selection/bootstrap seed")
    p.add_argument(
        "--contamination",
        action="store_true",
        help="report each top budget's n-gram overlap with the evaluation tasks (evaluate.tasks)",
    )
    alias(p, "--tasks", "evaluate.tasks", type=csv, metavar="T1,T2", help="evaluation tasks for --contamination")


def run(args: argparse.Namespace) -> int:
    from cpqs_bench.compare import CompareError, CompareSettings, compare_selectors, markdown, tiered_pool

    fields = csv(args.pair_fields)
    if len(fields) != 2:
        raise CompareError(f"--pair-fields expects two comma-separated names, got {args.pair_fields!r}")
    tiers = csv(args.tiers) or None
    if args.limit is not None and not (tiers or args.pairs):
        args.overrides = [*(args.overrides or []), f"data.pool_limit={args.limit}"]
    resolved = resolve(args)
    cfg = resolved.cfg
    if tiers or args.pairs:
        pool = tiered_pool(
            cfg.data, tiers=tiers, pairs=args.pairs, pair_fields=(fields[0], fields[1]), limit=args.limit
        )
    elif args.data:
        read = read_pool_at_edge(resolved, args.data)
        pool = tiered_pool(cfg.data, examples=read.examples, source=read.source)
        pool.sources = {args.data: read.summary()}
    else:
        raise CompareError("give a pool: --data POOL, or --tiers A,B, or --pairs FILE")
    index = None
    if args.contamination:
        from cpqs_bench.contamination import ContaminationIndex, task_items

        ev = cfg.evaluate
        items = task_items(ev.tasks, ev.include_path, cfg.data.mirror, ev.limit, ev.task_limits)
        index = ContaminationIndex.build(items, cfg.data.contamination_n)
    result = compare_selectors(
        cfg,
        csv(args.selectors),
        args.out,
        pool=pool,
        scores=key_values(args.scores, "--scores"),
        checkpoints=key_values(args.selector_checkpoint, "--selector-checkpoint"),
        settings=CompareSettings(n_boot=args.n_boot),
        contamination=index,
    )
    print(markdown(result))
    print(f"wrote {Path(args.out) / 'report.md'} and {Path(args.out) / 'compare.json'}")
    return 0
