"""``cpqs-bench train-selector [--config PRESET] [key=value ...] [--out DIR]``: train the CPQS TextCNN.

Pairs come from ``selectors.cpqs.pairs_source`` (``official`` = the paper's ``renlll/CPQS_data``). For
``pairs_source=generate`` the instructions are read from ``--data`` (default ``selectors.cpqs.pairs``) with no row
limit — ``data.pool_limit`` is the scored pool's limit, never the pairs' (``selectors.cpqs.n_pairs`` sizes them) —
and answered by ``make-negatives`` first unless ``--negatives`` names its output.

No overlap with the pool the selector will score: that pool (``--exclude-pool``, default ``data.pool`` read as
``score`` reads it, ``--no-exclude-pool`` to skip) is read here and every training pair whose instruction it holds is
dropped; the count is in ``metrics.json`` (``overlap``). With ``selectors.cpqs.overlap=out_of_fold`` and
``--score-out S``, the pool is instead scored out of fold: ``oof_folds`` CNNs, each trained without one fold's
instructions and scoring that fold.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Sequence

from cpqs_bench.cli.common import add_config_arguments, alias, read_pool_at_edge, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--out", default=None, help="checkpoint directory (default: the run directory)")
    p.add_argument(
        "--data",
        default=None,
        help="pairs_source=generate: pool whose instructions were answered (default: selectors.cpqs.pairs)",
    )
    alias(
        p,
        "--negatives",
        "selectors.cpqs.negatives",
        metavar="FILE",
        help="make-negatives output (pairs_source=generate)",
    )
    p.add_argument(
        "--exclude-pool",
        default=None,
        metavar="POOL",
        help="the pool this selector will score (default: data.pool); its instructions are excluded",
    )
    p.add_argument("--no-exclude-pool", action="store_true", help="do not check the pairs against a pool")
    p.add_argument(
        "--score-out",
        default=None,
        metavar="SCORES",
        help="with selectors.cpqs.overlap=out_of_fold: write the pool's out-of-fold scores here",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="drop paired-file rows with FIELD=VALUE (repeatable), e.g. gpt4_from=nuggets_alpaca_gpt4_bad",
    )
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """The same steps as ``reproduce`` (:mod:`cpqs_bench.stages`: negatives when generated, then the train-selector
    step) through the executor: one key, one overlap rule (``overlap_key``), code-versioned, resumable; ``--out``
    receives the checkpoint folder (default: the run directory's ``train-selector/<hash>/checkpoint``)."""
    resolved = resolve(args)
    cfg = resolved.cfg
    cq = cfg.selectors.cpqs
    from cpqs_bench.config import replace
    from cpqs_bench.pipeline import Given, Pipeline
    from cpqs_bench.selectors.cpqs import pairs as P
    from cpqs_bench.stages.artifacts import FileArtifact, PoolArtifact
    from cpqs_bench.stages.data import disjoint_prompts
    from cpqs_bench.stages.negatives import NegativesStep
    from cpqs_bench.stages.train_selector import TrainSelectorStep
    from cpqs_bench.stages.verb import deliver_file, deliver_folder

    if cq.overlap == "out_of_fold" and not args.no_exclude_pool and not args.score_out:
        raise ValueError("selectors.cpqs.overlap=out_of_fold scores the pool while training: give --score-out")
    target = None if args.no_exclude_pool else read_pool_at_edge(resolved, args.exclude_pool)
    pool = PoolArtifact.of(target.examples, target.sha256, target.summary()) if target is not None else None
    pairs_examples: list = []
    if cq.pairs_source == "generate":
        # the pairs pool: never limited by data.pool_limit (the scored pool's limit); disjoint from the pool
        unlimited = dataclasses.replace(resolved, cfg=replace(cfg, **{"data.pool_limit": None, "data.pool_offset": 0}))
        candidates = read_pool_at_edge(unlimited, args.data or cq.pairs).examples
        pairs_examples = disjoint_prompts(pool.examples if pool else [], candidates, cq.n_pairs)
    if pool is None:
        pool = PoolArtifact.of([], None)
        provider = None
    else:
        provider = Given(pool)
    holder = Given(PoolArtifact(pool.examples, pool.key, pool.sha256, pool.summary, pairs_examples))
    steps: list = []
    negatives: NegativesStep | Given | None = None
    if cq.pairs_source == "generate" and not cq.negatives:
        negatives = NegativesStep(cfg, holder, progress=not args.no_progress)
        steps.append(negatives)
    elif cq.negatives:
        negatives = Given(FileArtifact.of(cq.negatives))
    row_filter: dict[str, Sequence[str]] = dict(P.parse_exclude(args.exclude))
    train = TrainSelectorStep(
        cfg,
        holder if provider is not None or pairs_examples else None,
        negatives,
        row_filter=row_filter or None,
        progress=not args.no_progress,
    )
    steps.append(train)
    Pipeline(Path(cfg.experiment.output_dir), cfg.experiment.name).run_all(steps)
    art = train.output
    if art is None:
        raise RuntimeError("train-selector: the stage finished without a checkpoint artifact")
    checkpoint = deliver_folder(art.path, args.out) if args.out else art.path
    if train.oof_scores is not None and args.score_out:
        deliver_file(train.oof_scores, args.score_out)
    metrics = art.info.get("metrics") or {}
    print(
        json.dumps(
            {
                "checkpoint": str(checkpoint),
                **{k: metrics.get(k) for k in ("n_pairs", "val", "length", "overlap", "folds") if k in metrics},
            },
            default=str,
        )
    )
    return 0
