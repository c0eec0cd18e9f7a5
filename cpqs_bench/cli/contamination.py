"""``cpqs-bench contamination [--config P] [k=v ...] --data POOL --tasks T1,T2 [--selection [ARM[@SEED]=]FILE ...]
--out DIR``.

Word n-gram overlap (``--n`` = ``data.contamination_n``, default 13) of the pool, and of each given selection, with
every evaluation item of the tasks (as their YAMLs render them). Writes ``DIR/contamination.json`` (the report:
per task, items, undetectable items, overlapping items in the pool and in each arm) and ``DIR/manifest.json``
(inputs, pool counts, tasks whose data could not be loaded, timings), and prints the table. ``--selection`` takes a
selection JSONL (``cpqs-bench select``: rows ``{"id", "kept"}``; a row without ``kept`` counts as selected), named
``ARM`` (default: the file name) for ``SEED`` (default: none); repeat it for more arms or seeds. A task whose data
cannot be loaded offline is an error, or, with ``--skip-unavailable``, named and left out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from cpqs_bench.cli.common import add_config_arguments, alias, csv, read_pool_at_edge, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--data", help="pool: named dataset, file, or hf:owner/name (default: data.pool)")
    alias(p, "--tasks", "evaluate.tasks", type=csv, metavar="T1,T2", help="comma-separated task names")
    alias(
        p, "--include-path", "evaluate.include_path", type=csv, metavar="DIR[,DIR]", help="extra lm-eval task folders"
    )
    alias(p, "--limit", "evaluate.limit", type=int, metavar="N", help="first N items per task")
    alias(p, "--pool-limit", "data.pool_limit", type=int, metavar="N", help="first N pool examples")
    alias(p, "--n", "data.contamination_n", type=int, metavar="N", help="n-gram length in words")
    p.add_argument(
        "--selection",
        action="append",
        metavar="[ARM[@SEED]=]FILE",
        help="a selection JSONL of this pool (cpqs-bench select), repeatable",
    )
    p.add_argument("--skip-unavailable", action="store_true", help="leave out (and name) tasks whose data won't load")
    p.add_argument("--out", required=True, help="output directory")


def _selection_spec(spec: str) -> tuple[str, str | None, Path]:
    """``[ARM[@SEED]=]FILE`` -> (arm, seed, file)."""
    label, _, path = spec.rpartition("=")
    file = Path(path)
    label = label or file.name.removesuffix(".gz").removesuffix(".jsonl")
    arm, _, seed = label.partition("@")
    if not arm:
        raise ValueError(f"--selection {spec!r}: empty arm name")
    return arm, (seed or None), file


def read_selection(path: Path) -> list[str]:
    """The selected ids of a selection JSONL; a bad row is an error naming the file and line."""
    from cpqs_bench.io import iter_jsonl_objects

    ids: list[str] = []
    for line_no, row in iter_jsonl_objects(path):
        if "id" not in row:
            raise ValueError(f"{path}:{line_no}: expected an object with an 'id' (a selection row)")
        kept = row.get("kept", True)
        if not isinstance(kept, bool):
            raise ValueError(f"{path}:{line_no}: 'kept' must be true or false, got {kept!r}")
        if kept:
            ids.append(str(row["id"]))
    return ids


def run(args: argparse.Namespace) -> int:
    from cpqs_bench.contamination import ContaminationIndex, available_task_items, markdown_table, report, task_items
    from cpqs_bench.io import write_json

    resolved = resolve(args)
    cfg = resolved.cfg
    selections: dict[str, dict[Any, list[str]]] = {}
    for spec in args.selection or []:
        arm, seed, file = _selection_spec(spec)
        if seed in selections.get(arm, {}):
            raise ValueError(f"--selection {spec!r}: arm {arm} seed {seed} given twice")
        selections.setdefault(arm, {})[seed] = read_selection(file)
    pool = read_pool_at_edge(resolved, args.data)
    ev = cfg.evaluate
    t0 = time.perf_counter()
    if args.skip_unavailable:
        items, unavailable = available_task_items(ev.tasks, ev.include_path, cfg.data.mirror, ev.limit, ev.task_limits)
        for task, why in unavailable.items():
            print(f"contamination: left out {task}: its data cannot be loaded ({why})", file=sys.stderr)
        if not items:
            raise ValueError("no task's data could be loaded")
    else:
        items = task_items(ev.tasks, ev.include_path, cfg.data.mirror, ev.limit, ev.task_limits)
        unavailable = {}
    t1 = time.perf_counter()
    index = ContaminationIndex.build(items, cfg.data.contamination_n)
    t2 = time.perf_counter()
    overlaps = index.overlapping_ids(pool.examples)
    t3 = time.perf_counter()
    result = report(index, pool.examples, selections, overlaps=overlaps)
    out = Path(args.out)
    write_json(out / "contamination.json", result)
    write_json(
        out / "manifest.json",
        {
            "pool": args.data or cfg.data.pool,
            "pool_summary": pool.summary(),
            "tasks": list(items),
            "unavailable": unavailable,
            "template_ngrams": index.template_ngrams,
            "n": index.n,
            "selections": {a: {str(s): len(ids) for s, ids in by.items()} for a, by in selections.items()},
            "overlapping_examples": len(overlaps),
            "seconds": {"load_tasks": t1 - t0, "build_index": t2 - t1, "scan_pool": t3 - t2},
        },
    )
    print(markdown_table(result))
    print(
        f"{len(pool.examples)} pool examples scanned in {t3 - t2:.1f} s (index of {index.keys.size} n-grams built in "
        f"{t2 - t1:.1f} s; tasks loaded in {t1 - t0:.1f} s); wrote {out / 'contamination.json'}",
        file=sys.stderr,
    )
    return 0
