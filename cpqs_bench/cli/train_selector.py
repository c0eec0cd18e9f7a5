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
    from pathlib import Path

    resolved = resolve(args)
    cfg = resolved.cfg
    cq = cfg.selectors.cpqs
    from cpqs_bench import rundir
    from cpqs_bench.config import replace, to_dict
    from cpqs_bench.io import read_json, stable_hash
    from cpqs_bench.selectors.cpqs import pairs as P
    from cpqs_bench.selectors.cpqs import train as T

    progress = not args.no_progress
    target = None
    if not args.no_exclude_pool:
        target = read_pool_at_edge(resolved, args.exclude_pool).examples
    pairs_examples = None
    negatives = cq.negatives
    if cq.pairs_source == "generate":
        # the pairs pool: never limited by data.pool_limit (the scored pool's limit)
        unlimited = dataclasses.replace(resolved, cfg=replace(cfg, **{"data.pool_limit": None, "data.pool_offset": 0}))
        pairs_examples = read_pool_at_edge(unlimited, args.data or cq.pairs).examples
        if target is not None and cq.overlap == "exclude":
            taken = {P.overlap_key(ex) for ex in target}
            pairs_examples = [ex for ex in pairs_examples if P.overlap_key(ex) not in taken]
        if cq.n_pairs is not None:
            pairs_examples = pairs_examples[: cq.n_pairs]
    row_filter = P.parse_exclude(args.exclude) or None
    inputs = {
        "cpqs": to_dict(cfg)["selectors"]["cpqs"],
        "model": to_dict(cfg.model),
        "prompt": to_dict(cfg.prompt),
        "pairs_pool": stable_hash([ex.content_key() for ex in pairs_examples], 16) if pairs_examples else None,
        "exclude": stable_hash(sorted(P.overlap_key(ex) for ex in target), 16) if target else None,
        "row_filter": row_filter,
    }
    stage = None
    if args.out is not None:
        out = Path(args.out)
    else:
        stage = rundir.stage(cfg.experiment.output_dir, cfg.experiment.name, "train-selector", inputs).begin()
        out = stage.path
        if stage.done:
            print(
                json.dumps(
                    {
                        "checkpoint": str(out),
                        **{
                            k: v
                            for k, v in read_json(out / "metrics.json").items()
                            if k in ("val", "length", "overlap")
                        },
                    }
                )
            )
            return 0
    if cq.pairs_source == "generate" and not negatives:
        from cpqs_bench.selectors.cpqs.negatives import make_negatives

        negatives = str(out / "negatives.jsonl")
        make_negatives(cfg, pairs_examples, None, negatives, progress=progress)
    if cq.overlap == "out_of_fold" and target is not None:
        if not args.score_out:
            raise ValueError("selectors.cpqs.overlap=out_of_fold scores the pool while training: give --score-out")
        result = T.train_out_of_fold(
            cfg,
            out,
            target,
            args.score_out,
            pairs=pairs_examples,
            negatives=negatives,
            row_filter=row_filter,
            progress=progress,
        )
    else:
        result = T.train_selector(
            cfg,
            out,
            pairs=pairs_examples,
            negatives=negatives,
            exclude=target if cq.overlap == "exclude" else None,
            row_filter=row_filter,
            progress=progress,
        )
    if stage is not None:
        stage.finish(metrics={"val": result.get("val"), "length": result.get("length")})
    print(
        json.dumps(
            {k: result.get(k) for k in ("checkpoint", "n_pairs", "val", "length", "overlap", "folds") if k in result},
            default=str,
        )
    )
    return 0
