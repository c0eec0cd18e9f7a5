"""``cpqs-bench validate --selectors A,B [--tracks planted,pairs] --out DIR [--selector DIR] [--config P] [k=v ...]``.

Screens selectors on ground truth before any fine-tune: planted defects (known-bad variants of clean answers) and
labelled pairs (a stronger and a weaker model's answers to the same prompt), see :mod:`cpqs_bench.validity.run`.
``longest`` and ``random`` are always scored beside the selectors named. ``cpqs`` uses ``--selector DIR`` (a trained
TextCNN checkpoint) or trains one on the configured pairs (``selectors.cpqs.*``) with the validity instructions held
out. Writes ``validity.json``, ``validity.md``, ``validity.png`` and ``fixture.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cpqs_bench.cli.common import add_config_arguments, alias, csv, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--selectors", required=True, help="comma-separated names (built-ins, plugins, BASE+STEP)")
    alias(p, "--tracks", "validate.tracks", type=csv, metavar="T,T", help="planted, pairs or both")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--selector",
        dest="checkpoint",
        default=None,
        help="trained CPQS checkpoint directory (default: train one here on the configured pairs)",
    )
    alias(p, "--seed", "validate.seed", type=int, metavar="N", help="fixture and bootstrap seed")
    alias(p, "--model", "model.id", metavar="MODEL", help="target model: Hub id, folder or 'embedded'")


def run(args: argparse.Namespace) -> int:
    from cpqs_bench.model_cache import ModelCache
    from cpqs_bench.validity.run import validate

    resolved = resolve(args)
    cfg = resolved.cfg
    if args.checkpoint is not None and not Path(args.checkpoint).is_dir():
        print(f"error: --selector {args.checkpoint}: not a directory", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    doc = validate(
        cfg,
        csv(args.selectors),
        Path(args.out),
        checkpoint=args.checkpoint,
        loader=ModelCache(device=cfg.model.device, capacity=2),
    )
    from cpqs_bench.config import config_hash
    from cpqs_bench.io import sha256_file, write_json
    from cpqs_bench.provenance import collect
    from cpqs_bench.validity.report import markdown

    out = Path(args.out)
    # what produced this table (the reproduce stage gets the same from the executor's manifest)
    doc["provenance"] = {
        "command": " ".join(
            ["cpqs-bench validate", f"--selectors {args.selectors}", f"--config {args.config}" if args.config else ""]
            + ([f"--selector {args.checkpoint}"] if args.checkpoint else [])
            + list(args.overrides)
        ).replace("  ", " "),
        "config_hash": config_hash(cfg),
        "seed": cfg.validate.seed,
        "model_id": cfg.model.id,
        "fixture_sha256": sha256_file(out / "fixture.json"),
        "seconds": round(time.perf_counter() - t0, 1),
        **collect(),
    }
    write_json(out / "validity.json", doc)
    print(markdown(doc))
    print(f"wrote {Path(args.out) / 'validity.md'}, validity.json, validity.png in {time.perf_counter() - t0:.0f} s")
    return 0
