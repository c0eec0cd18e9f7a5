"""Push a finished experiment to the Hub (``cpqs-bench publish --run runs/<experiment> [--dry-run]``).

Reads the run's ``index.json`` (written by ``reproduce``) and builds, under ``runs/<experiment>/publish/folders/``:

* one model repo per fine-tuned arm and seed (``<namespace>/<experiment>-<arm>-s<seed>``): adapter, model card with
  ``model-index``, ``.eval_results/<task>.yaml`` (the Hub's Eval Results format), selection ids, manifest; with a
  pairwise LLM-judge section in the leaderboard, the card also has that arm and seed's pairwise table;
* the results dataset (``<namespace>/<experiment>-results``): Parquet configs ``runs`` and ``items`` (and
  ``pairwise``, from the leaderboard JSON's pairwise section, when it has one), card, leaderboard files and the
  static page (:mod:`cpqs_bench.publish.results_dataset`);
* with ``publish.space=true``, a static Space (``<namespace>/<experiment>-leaderboard``) serving the page.

The leaderboard page itself is written to ``runs/<experiment>/publish/page/<experiment>/index.html``. Then the
folders go to :func:`cpqs_bench.publish.hub.publish` (one commit per repo, none when nothing changed, bounded
retries, every request bounded by ``publish.timeout_s``; each repo recorded in ``runs/<experiment>/publish/state.json``
as it goes live, so a rerun resumes). A dry run writes the exact folders that would be pushed under
``runs/<experiment>/publish/dry-run/``. Each arm's training record is read from the adapter's ``training.json``
(``manifest.json`` for adapters made before it).
Tokens come only from the environment (``HF_TOKEN``) or ``HF_HOME``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from cpqs_bench.io import read_json
from cpqs_bench.leaderboard_page import task_facts, write_pages
from cpqs_bench.publish import hub
from cpqs_bench.publish.config import PublishConfig
from cpqs_bench.publish.results_dataset import BoardFiles, build_results_folder, pairwise_rows
from cpqs_bench.publish.space import build_space_folder

DRY_RUN_NAMESPACE = "dry-run"
HUB_URL = "https://huggingface.co"


def _eval_date(eval_dir: Path) -> str:
    """The evaluation's date (UTC) from its ``metrics.json``: deterministic for a given evaluation."""
    ts = (eval_dir / "metrics.json").stat().st_mtime
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).date().isoformat()


def _is_board(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and bool(doc.get("tables"))


def build_folders(run_dir: Path, namespace: str, *, space: bool = False) -> dict[str, tuple[Path, str]]:
    index_file = run_dir / "index.json"
    if not index_file.exists():
        raise FileNotFoundError(f"{index_file} not found: run `cpqs-bench reproduce` for this experiment first")
    index = read_json(index_file)
    experiment = index["experiment"]
    stage_dir = run_dir / "publish" / "folders"
    evals: dict[str, Path] = {}
    manifests = []
    for d in index["evaluations"]:
        m = read_json(Path(d) / "manifest.json")
        manifests.append(m)
        key = m["arm"] if m.get("seed") is None else f"{m['arm']}-s{m['seed']}"
        if key in evals:
            raise ValueError(f"{index_file}: two evaluations for {key}: {evals[key]} and {d}")
        evals[key] = Path(d)
    if "base" not in evals:
        raise ValueError(f"{index_file}: no evaluation of the base model (arm 'base')")
    base_model = str(read_json(evals["base"] / "manifest.json").get("model_id", "unknown"))
    tasks = sorted({t for d in evals.values() for t in read_json(d / "metrics.json")})
    facts = task_facts(tasks, manifests)
    results_repo = f"{namespace}/{experiment}-results"
    source_url = f"{HUB_URL}/datasets/{results_repo}"
    adapter_repos = {key: f"{namespace}/{experiment}-{key}" for key in index["adapters"]}
    board = index["leaderboard"]
    board_json = Path(board["json"])
    is_board = _is_board(board_json)
    pairwise = pairwise_rows(experiment, read_json(board_json).get("pairwise"), str(board_json)) if is_board else []

    folders: dict[str, tuple[Path, str]] = {}
    for key, adapter in sorted(index["adapters"].items()):
        arm, seed = key.rsplit("-s", 1)
        if key not in evals:
            raise ValueError(f"{index_file}: adapter {key} has no evaluation")
        ev = evals[key]
        manifest = hub.read_training_record(adapter)
        metrics = read_json(ev / "metrics.json")
        n_items = read_json(ev / "manifest.json").get("n_items") or {}
        notes = {
            t: f"cpqs-bench experiment {experiment}, arm {arm} (data selector), seed {seed}; "
            f"task {t}" + (f" on {n_items[t]} items" if isinstance(n_items, dict) and t in n_items else "")
            for t in metrics
        }
        selection = index["selections"].get(key) or index["selections"][arm]  # per-seed (random) or per-arm
        mine = [r for r in pairwise if r["arm"] == arm and r["seed"] == int(seed)]
        folder = hub.build_arm_folder(
            key,
            adapter,
            selection,
            manifest,
            metrics,
            base_model,
            experiment,
            stage_dir / key,
            hub.CardFacts(facts=facts, eval_date=_eval_date(ev), source_url=source_url, notes=notes, pairwise=mine),
        )
        folders[adapter_repos[key]] = (folder, "model")

    page = None
    if is_board:
        page = write_pages(board_json, run_dir / "publish" / "page", eval_dirs=list(evals.values()), facts=facts)
    results = build_results_folder(
        experiment,
        list(evals.values()),
        BoardFiles(board_json, [board["md"], board["json"], board["png"]], page),
        stage_dir / "results",
        facts=facts,
        adapter_repos=adapter_repos,
        repo_id=results_repo,
        pool=(index.get("data") or {}).get("pool_name") if isinstance(index.get("data"), dict) else None,
        pairwise=pairwise,
    )
    folders[results_repo] = (results, "dataset")
    if space:
        if page is None:
            raise ValueError(f"{board_json}: not a leaderboard document; cannot build the Space page")
        folders[f"{namespace}/{experiment}-leaderboard"] = (
            build_space_folder(page, experiment, stage_dir / "space", results_repo=results_repo),
            "space",
        )
    return folders


def publish_run(
    run_dir: str | os.PathLike,
    cfg: PublishConfig,
    *,
    dry_run: bool,
    endpoint: str | None = None,
    recheck: bool = False,
) -> dict[str, Any]:
    """Publish the experiment in ``run_dir`` (its ``index.json``): to ``cfg.hub_namespace`` on the Hub, or, with
    ``dry_run``, into ``run_dir/publish/dry-run/`` (the exact folders a push would send, plus ``plan.json``).
    A push records each repo in ``run_dir/publish/state.json``; ``recheck`` asks the Hub again for repos recorded
    there."""
    run_dir = Path(run_dir)
    if not dry_run and not cfg.hub_namespace:
        raise ValueError("a real push needs a Hub namespace (publish.hub_namespace=USER_OR_ORG, or --namespace)")
    folders = build_folders(run_dir, cfg.hub_namespace or DRY_RUN_NAMESPACE, space=cfg.space)
    return hub.publish(
        folders,
        dry_run=dry_run,
        dry_run_dir=run_dir / "publish" / "dry-run" if dry_run else None,
        connection=hub.HubConnection(endpoint=endpoint, timeout_s=cfg.timeout_s, max_retries=cfg.max_retries),
        private=cfg.private,
        state_path=None if dry_run else run_dir / "publish" / "state.json",
        recheck=recheck,
    )
