"""``cpqs-bench leaderboard DIR... --out-dir DIR [--experiment NAME] [--config PRESET] [key=value ...]``.

Leaderboard files from evaluation results: ``<out-dir>/<experiment>.md``, ``.json`` and ``.png``
(:mod:`cpqs_bench.leaderboard`), the static page ``<out-dir>/<experiment>/index.html`` and the index of all pages
``<out-dir>/index.html`` (:mod:`cpqs_bench.leaderboard_page`). ``DIR`` are evaluation directories, or run directories searched recursively for
them. Positional words of the form ``section.key=value`` are config overrides (the one override syntax); every other
positional word is an input directory. The experiment name defaults to the config's ``experiment.name``.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

DEFAULT_REFERENCES = "random,full"  # kept equal to cpqs_bench.stats.DEFAULT_REFERENCES (checked in tests)
_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+=")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from cpqs_bench.cli.common import add_config_arguments

    add_config_arguments(p)  # positional words: input directories and key=value overrides (split in run)
    p.add_argument("--inputs", nargs="+", type=Path, default=[], help="input directories (same as positional DIRs)")
    p.add_argument("--experiment", default=None,
                   help="file stem of the outputs (<experiment>.md/.json/.png); default: experiment.name")
    p.add_argument("--out-dir", type=Path, required=True, help="where the leaderboard files are written")
    p.add_argument("--note", default=None,
                   help="plain note at the top, e.g. 'Smoke run of a 135M model on CPU - not a paper result' "
                        "(default: a factual note built from the manifests)")
    p.add_argument("--references", default=DEFAULT_REFERENCES,
                   help="comma-separated reference arms for paired comparisons (default: %(default)s)")
    p.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap/permutation RNG (default: 0)")
    p.add_argument("--no-page", action="store_true",
                   help="skip the static HTML page (<out-dir>/<experiment>/index.html and <out-dir>/index.html)")


def split_positionals(words: list[str]) -> tuple[list[Path], list[str]]:
    """``section.key=value`` words are overrides; the others are input directories."""
    overrides = [w for w in words if _OVERRIDE.match(w)]
    return [Path(w) for w in words if not _OVERRIDE.match(w)], overrides


def run(args: argparse.Namespace) -> int:
    from cpqs_bench import leaderboard
    from cpqs_bench.cli.common import csv, resolve

    inputs, args.overrides = split_positionals(list(args.overrides or []))
    inputs += list(args.inputs)
    if not inputs:
        raise ValueError("no input directories: give evaluation or run directories (positional or --inputs)")
    experiment = args.experiment or resolve(args).cfg.experiment.name
    paths = leaderboard.main(inputs, args.out_dir, experiment, args.note,
                             references=tuple(csv(args.references)), n_boot=args.n_boot, seed=args.seed)
    if not args.no_page:
        from cpqs_bench.leaderboard_page import write_pages

        paths = {**paths, "html": write_pages(paths["json"], args.out_dir, eval_dirs=leaderboard.find_eval_dirs(inputs)),
                 "index": Path(args.out_dir) / "index.html"}
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
