"""``cpqs-bench publish --run runs/<experiment> [--dry-run]``: push a finished experiment to the Hub.

Reads the run's ``index.json`` (written by ``reproduce``), builds one model repo per fine-tuned arm and seed
(``<namespace>/<experiment>-<arm>-s<seed>``: adapter, model card with ``model-index`` results, selection ids,
manifest) and one results dataset repo (``<namespace>/<experiment>-results``: leaderboard files, statistics summary,
per-item results of every evaluation), then hands them to :func:`cpqs_bench.publish.publish` (single commits,
idempotent, bounded retries). ``--dry-run`` writes the exact folders that would be pushed under
``runs/<experiment>/publish/``. Tokens come only from the environment (``HF_TOKEN``) or ``HF_HOME``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from cpqs_bench import publish as hub
from cpqs_bench.io import read_json

DRY_RUN_NAMESPACE = "dry-run"


def build_folders(run_dir: Path, namespace: str) -> dict[str, tuple[Path, str]]:
    index_file = run_dir / "index.json"
    if not index_file.exists():
        raise FileNotFoundError(f"{index_file} not found: run `cpqs-bench reproduce` for this experiment first")
    index = read_json(index_file)
    experiment = index["experiment"]
    stage_dir = run_dir / "publish" / "folders"
    evals = {}
    for d in index["evaluations"]:
        m = read_json(Path(d) / "manifest.json")
        key = m["arm"] if m.get("seed") is None else f"{m['arm']}-s{m['seed']}"
        evals[key] = Path(d)
    base_model = str(read_json(evals["base"] / "manifest.json").get("model_id", "unknown"))
    folders: dict[str, tuple[Path, str]] = {}
    for key, adapter in sorted(index["adapters"].items()):
        arm = key.rsplit("-s", 1)[0]
        ev = evals[key]
        manifest = read_json(Path(adapter) / "manifest.json")
        metrics = read_json(ev / "metrics.json")
        folder = hub.build_arm_folder(key, adapter, index["selections"][arm], manifest, metrics, base_model,
                                      experiment, stage_dir / key)
        folders[f"{namespace}/{experiment}-{key}"] = (folder, "model")
    board = index["leaderboard"]
    results = hub.build_results_folder(experiment, [board["md"], board["json"], board["png"]], board["json"],
                                       {k: v / "items.jsonl" for k, v in evals.items()}, stage_dir / "results")
    folders[f"{namespace}/{experiment}-results"] = (results, "dataset")
    return folders


def main(run: str | os.PathLike, *, dry_run: bool = True, namespace: str | None = None,
         endpoint: str | None = None) -> dict[str, Any]:
    run_dir = Path(run)
    if not dry_run and not namespace:
        raise ValueError("a real push needs a Hub namespace (--namespace or publish.hub_namespace)")
    folders = build_folders(run_dir, namespace or DRY_RUN_NAMESPACE)
    return hub.publish(folders, dry_run=dry_run, dry_run_dir=run_dir / "publish" / "dry-run" if dry_run else None,
                       endpoint=endpoint)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="runs/<experiment> directory of a finished reproduce run")
    p.add_argument("--dry-run", action="store_true", help="write the folders that would be pushed; push nothing")
    p.add_argument("--namespace", help="Hub user or organisation (required for a real push)")
    p.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")


def run_cli(args: argparse.Namespace) -> int:
    report = main(args.run, dry_run=args.dry_run, namespace=args.namespace, endpoint=args.endpoint)
    print(json.dumps({r: {k: v for k, v in e.items() if k != "files"} for r, e in report["repos"].items()}, indent=2))
    return 0
