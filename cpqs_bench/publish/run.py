"""Push a finished experiment to the Hub (``cpqs-bench publish --run runs/<experiment> [--dry-run]``).

Reads the run's ``index.json`` (written by ``reproduce``), builds one model repo per fine-tuned arm and seed
(``<namespace>/<experiment>-<arm>-s<seed>``: adapter, model card with ``model-index`` results, selection ids,
manifest) and one results dataset repo (``<namespace>/<experiment>-results``: leaderboard files, statistics summary,
per-item results of every evaluation), then hands them to :func:`cpqs_bench.publish.hub.publish` (single commits,
idempotent, bounded retries). ``--dry-run`` writes the exact folders that would be pushed under
``runs/<experiment>/publish/``. Tokens come only from the environment (``HF_TOKEN``) or ``HF_HOME``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cpqs_bench.publish import hub
from cpqs_bench.publish.config import PublishConfig
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


def publish_run(run_dir: str | os.PathLike, cfg: PublishConfig, *, dry_run: bool,
                endpoint: str | None = None) -> dict[str, Any]:
    """Publish the experiment in ``run_dir`` (its ``index.json``): to ``cfg.hub_namespace`` on the Hub, or, with
    ``dry_run``, into ``run_dir/publish/dry-run/`` (the exact folders a push would send, plus ``plan.json``)."""
    run_dir = Path(run_dir)
    if not dry_run and not cfg.hub_namespace:
        raise ValueError("a real push needs a Hub namespace (publish.hub_namespace=USER_OR_ORG, or --namespace)")
    folders = build_folders(run_dir, cfg.hub_namespace or DRY_RUN_NAMESPACE)
    return hub.publish(folders, dry_run=dry_run, dry_run_dir=run_dir / "publish" / "dry-run" if dry_run else None,
                       endpoint=endpoint, private=cfg.private)
