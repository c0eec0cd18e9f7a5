"""``cpqs-bench leaderboard DIR... --out-dir DIR [--experiment NAME] [--config PRESET] [key=value ...]``.

Leaderboard files from evaluation results: ``<out-dir>/<experiment>.md``, ``.json`` and ``.png``
(:mod:`cpqs_bench.leaderboard`), the static page ``<out-dir>/<experiment>/index.html`` and the index of all pages
``<out-dir>/index.html`` (:mod:`cpqs_bench.leaderboard_page`). ``DIR`` are evaluation directories, or run directories searched recursively for
them. Positional words of the form ``section.key=value`` are config overrides (the one override syntax); every other
positional word is an input directory. The experiment name defaults to the config's ``experiment.name``.

``cpqs-bench leaderboard --from-json leaderboards/X.json [--out-dir DIR]`` re-renders every output (Markdown, JSON,
PNG, the page and the index) from a committed leaderboard JSON, which holds the per-item results, without the run
directories (:func:`cpqs_bench.leaderboard.from_json`); ``--out-dir`` defaults to the JSON's folder.
``--contamination FILE`` / ``--validity FILE``: JSON blocks produced by the contamination check and the validity
tracks, rendered on every page and kept in the board JSON. Reference arms: ``--references a,b`` (alias of
``leaderboard.references``; the first is the one at a glance and in the figure).

Pairwise LLM-judge results (``evaluate.pairwise``): the finished judge stage directories under the inputs
(``judge/<arm>-vs-<ref>/<hash>/``, found recursively like the evaluation directories) and those named by
``--pairwise DIR...`` (judge dirs, or folders holding some) give the "general (pairwise judge)" section. Two judge
directories of the same comparison (arm, seed, reference, reference seed, judge, rule), e.g. a stale stage beside a
rerun, are an error rather than pooled as two seeds: name the directories to use explicitly.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+=")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from cpqs_bench.cli.common import add_config_arguments

    add_config_arguments(p)  # positional words: input directories and key=value overrides (split in run)
    p.add_argument("--inputs", nargs="+", type=Path, default=[], help="input directories (same as positional DIRs)")
    p.add_argument(
        "--experiment",
        default=None,
        help="file stem of the outputs (<experiment>.md/.json/.png); default: experiment.name",
    )
    p.add_argument(
        "--out-dir", type=Path, default=None, help="where the leaderboard files are written (--from-json: its folder)"
    )
    p.add_argument(
        "--from-json",
        type=Path,
        default=None,
        metavar="BOARD_JSON",
        help="re-render every output from a committed leaderboard JSON (no input directories)",
    )
    p.add_argument("--contamination", type=Path, default=None, help="contamination JSON block to render")
    p.add_argument("--validity", type=Path, default=None, help="selector-validity JSON block to render")
    p.add_argument(
        "--note",
        default=None,
        help="plain note at the top, e.g. 'Smoke run of a 135M model on CPU - not a paper result' "
        "(default: a factual note built from the manifests)",
    )
    p.add_argument(
        "--references",
        default=None,
        help="comma-separated reference arms for paired comparisons; the first is the one at a glance "
        "(default: leaderboard.references; --from-json: those of the JSON)",
    )
    p.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap/permutation RNG (default: 0)")
    p.add_argument(
        "--pairwise",
        nargs="+",
        type=Path,
        default=[],
        metavar="DIR",
        help="pairwise judge stage directories (or folders holding them) besides those found under the "
        "inputs; each must hold at least one finished judge directory",
    )
    p.add_argument(
        "--no-page",
        action="store_true",
        help="skip the static HTML page (<out-dir>/<experiment>/index.html and <out-dir>/index.html)",
    )


def split_positionals(words: list[str]) -> tuple[list[Path], list[str]]:
    """``section.key=value`` words are overrides; the others are input directories."""
    overrides = [w for w in words if _OVERRIDE.match(w)]
    return [Path(w) for w in words if not _OVERRIDE.match(w)], overrides


def run(args: argparse.Namespace) -> int:
    from cpqs_bench import leaderboard
    from cpqs_bench.cli.common import csv, resolve

    inputs, args.overrides = split_positionals(list(args.overrides or []))
    inputs += list(args.inputs)
    contamination = _read_block(args.contamination)
    validity = _read_block(args.validity)
    if args.from_json is not None:
        if inputs:
            raise ValueError("--from-json re-renders a board JSON: give no input directories with it")
        paths = leaderboard.from_json(
            args.from_json,
            args.out_dir,
            references=tuple(csv(args.references)) or None,
            contamination=contamination,
            validity=validity,
        )
        if not args.no_page:
            from cpqs_bench.leaderboard_page import write_pages

            out = Path(args.out_dir or args.from_json.parent)
            paths = {**paths, "html": write_pages(paths["json"], out), "index": out / "index.html"}
        for kind, path in paths.items():
            print(f"{kind}: {path}")
        return 0
    if not inputs:
        raise ValueError("no input directories: give evaluation or run directories (positional or --inputs)")
    if args.out_dir is None:
        raise ValueError("--out-dir is required (except with --from-json)")
    cfg = resolve(args).cfg
    experiment = args.experiment or cfg.experiment.name
    references = tuple(csv(args.references)) or tuple(cfg.leaderboard.references)
    judge_dirs = leaderboard.find_judge_dirs(inputs)
    known = {d.resolve() for d in judge_dirs}  # a judge dir under an input and also named by --pairwise: once
    judge_dirs += [d for d in leaderboard.find_judge_dirs(args.pairwise, required=True) if d.resolve() not in known]
    from cpqs_bench.stages.report import write_leaderboard

    paths = write_leaderboard(
        inputs,
        judge_dirs,
        args.out_dir,
        experiment,
        args.note,
        page=not args.no_page,
        stats=leaderboard.StatsOptions(references=references, n_boot=args.n_boot, seed=args.seed),
        blocks=leaderboard.BoardBlocks(contamination=contamination, validity=validity),
    )
    if not args.no_page:
        paths["index"] = Path(args.out_dir) / "index.html"
    if judge_dirs:
        print(f"pairwise: {len(judge_dirs)} judge director{'y' if len(judge_dirs) == 1 else 'ies'}")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _read_block(path: Path | None) -> dict | None:
    """A JSON object from ``path`` (None: none); a file that is not one is an error naming it and the line."""
    import json

    if path is None:
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from e
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc
