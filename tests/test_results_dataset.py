"""`publish --dry-run` writes a results dataset that `datasets` loads, `.eval_results` YAMLs the Hub can read, and
the static page; every number agrees with the evaluation files it came from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fake_run import ARMS, N_ITEMS, SEEDS, TASKS, make_run
from huggingface_hub.repocard import metadata_load

from cpqs_bench.publish.config import PublishConfig
from cpqs_bench.publish.eval_results import percent
from cpqs_bench.publish.run import publish_run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("pub"))
    report = publish_run(run, PublishConfig(space=True), dry_run=True)
    return run, report


def _metrics(run: Path) -> dict[tuple[str, int | None], dict[str, float]]:
    out = {}
    for d in json.loads((run / "index.json").read_text())["evaluations"]:
        m = json.loads((Path(d) / "manifest.json").read_text())
        out[(m["arm"], m["seed"])] = json.loads((Path(d) / "metrics.json").read_text())
    return out


def test_dry_run_plans_every_repo(dry):
    run, report = dry
    expected = {f"dry-run/exp-{a}-s{s}" for a in ARMS for s in SEEDS} | {
        "dry-run/exp-results",
        "dry-run/exp-leaderboard",
    }
    assert set(report["repos"]) == expected
    assert {e["repo_type"] for r, e in report["repos"].items() if r.endswith("-leaderboard")} == {"space"}
    assert json.loads((run / "publish" / "dry-run" / "plan.json").read_text())["repos"].keys() == expected


def test_datasets_loads_both_configs_and_numbers_match(dry, tmp_path):
    datasets = pytest.importorskip("datasets")
    run, _ = dry
    folder = run / "publish" / "dry-run" / "dry-run__exp-results"
    runs = datasets.load_dataset(str(folder), "runs", split="train", cache_dir=str(tmp_path / "cache"))
    items = datasets.load_dataset(str(folder), "items", split="train", cache_dir=str(tmp_path / "cache"))
    n_evals = 1 + len(ARMS) * len(SEEDS)
    assert runs.num_rows == n_evals * len(TASKS)
    assert items.num_rows == n_evals * len(TASKS) * N_ITEMS
    metrics = _metrics(run)
    for row in runs:
        assert row["value"] == metrics[(row["arm"], row["seed"])][row["task"]]
        assert row["n_items"] == N_ITEMS
        assert row["domain"] == ("math" if "gsm8k" in row["task"] else "code")
        assert (row["adapter_repo"] is None) == (row["arm"] == "base")
    assert {r["dataset_id"] for r in runs} == {"openai/gsm8k", "openai/openai_humaneval"}
    assert {r["commit"] for r in runs} == {"c0ffee" * 6 + "abcd"} and {r["model_id"] for r in runs} == {"tiny/model"}
    base = [r for r in runs if r["arm"] == "base"]
    assert base and all(r["seed"] is None and r["budget_k"] is None for r in base)
    assert {r["budget_k"] for r in runs if r["arm"] == "cpqs"} == {4}
    # per-item rows average to the task metric
    by_key: dict = {}
    for it in items:
        by_key.setdefault((it["arm"], it["seed"], it["task"]), []).append(it["score"])
    for (arm, seed, task), scores in by_key.items():
        assert sum(scores) / len(scores) == pytest.approx(metrics[(arm, seed)][task])


def test_dataset_card_declares_configs_schema_and_licences(dry):
    run, _ = dry
    folder = run / "publish" / "dry-run" / "dry-run__exp-results"
    meta = metadata_load(folder / "README.md")
    assert [c["config_name"] for c in meta["configs"]] == ["runs", "items"]
    text = (folder / "README.md").read_text()
    assert "`value`" in text and "`prediction`" in text and "licence mit" in text
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "README.md",
        "data/items.parquet",
        "data/runs.parquet",
        "leaderboards/exp.json",
        "leaderboards/exp.md",
        "leaderboards/exp.png",
        "page/index.html",
        "summary.json",
    ]


def test_every_arm_repo_has_eval_results_consistent_with_model_index(dry):
    run, _ = dry
    metrics = _metrics(run)
    for arm in ARMS:
        for seed in SEEDS:
            folder = run / "publish" / "dry-run" / f"dry-run__exp-{arm}-s{seed}"
            files = sorted((folder / ".eval_results").glob("*.yaml"))
            assert [f.stem for f in files] == sorted(TASKS)
            index = metadata_load(folder / "README.md")["model-index"][0]["results"]
            by_dataset = {r["dataset"]["type"]: r["metrics"][0]["value"] for r in index}
            for f in files:
                (entry,) = yaml.safe_load(f.read_text())
                assert set(entry) == {"dataset", "value", "date", "source", "notes"}
                assert entry["value"] == percent(metrics[(arm, seed)][f.stem])
                assert entry["dataset"]["id"] in ("openai/gsm8k", "openai/openai_humaneval")
                assert entry["source"]["url"] == "https://huggingface.co/datasets/dry-run/exp-results"
                assert len(entry["date"]) == 10 and entry["date"][4] == "-"
                assert f"{N_ITEMS} items" in entry["notes"] and f"seed {seed}" in entry["notes"]
                assert by_dataset[entry["dataset"]["id"]] == entry["value"]  # model-index says the same


def test_space_folder_is_a_static_space_with_the_page(dry):
    run, _ = dry
    folder = run / "publish" / "dry-run" / "dry-run__exp-leaderboard"
    meta = metadata_load(folder / "README.md")
    assert meta["sdk"] == "static" and meta["app_file"] == "index.html"
    page = (folder / "index.html").read_text()
    assert "<script src" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert (run / "publish" / "page" / "exp" / "index.html").read_text() == page


def test_rebuild_is_byte_identical(dry):
    run, _ = dry
    folder = run / "publish" / "dry-run" / "dry-run__exp-results"
    before = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    publish_run(run, PublishConfig(space=True), dry_run=True)
    after = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert before == after


def test_cli_publish_dry_run_writes_dataset_repos_and_page(tmp_path):
    run = make_run(tmp_path, experiment="cli")
    proc = subprocess.run(
        [sys.executable, "-m", "cpqs_bench", "publish", "--run", str(run), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dry = run / "publish" / "dry-run"
    assert (dry / "dry-run__cli-results" / "data" / "runs.parquet").is_file()
    assert (dry / "dry-run__cli-cpqs-s0" / ".eval_results" / "cpqs_gsm8k_chat.yaml").is_file()
    assert (run / "publish" / "page" / "cli" / "index.html").is_file()
    assert not (dry / "dry-run__cli-leaderboard").exists()  # the Space only with publish.space=true


def test_contamination_and_validity_configs_and_the_figure_on_the_card(tmp_path):
    """Issue 30: the card opens with the per-domain sentences and the forest plot; the contamination and validity
    blocks of the leaderboard JSON become configs whose rows equal the blocks."""
    from test_leaderboard_glance import CONTAMINATION, VALIDITY

    run = make_run(tmp_path, contamination=CONTAMINATION, validity=VALIDITY)
    publish_run(run, PublishConfig(space=False), dry_run=True)
    folder = run / "publish" / "dry-run" / "dry-run__exp-results"
    meta = metadata_load(folder / "README.md")
    assert [c["config_name"] for c in meta["configs"]] == ["runs", "items", "contamination", "validity"]
    text = (folder / "README.md").read_text()
    board = json.loads((run / "leaderboards" / "exp.json").read_text())
    assert "## At a glance" in text and "](leaderboards/exp.png)" in text
    for g in board["glance"]:
        assert g["sentence"] in text
    import pyarrow.parquet as pq

    cont = pq.read_table(folder / "data" / "contamination.parquet").to_pylist()
    task = CONTAMINATION["tasks"]["toy_acc"]
    pool = next(r for r in cont if r["scope"] == "pool")
    assert (pool["overlapping_items"], pool["fraction"], pool["items"], pool["n"]) == (3.0, 0.075, 40, 13)
    cpqs = [r for r in cont if r["scope"] == "cpqs"]
    assert [(r["seed"], r["overlapping_items"]) for r in cpqs] == [(None, 2.0), (1, 2.0), (2, 2.0), (3, 2.0)]
    assert cpqs[1]["fraction"] == 2 / task["items"]
    val = pq.read_table(folder / "data" / "validity.parquet").to_pylist()
    assert [(r["track"], r["selector"], r["group"], r["value"]) for r in val] == [
        ("planted", "cpqs", "truncated", 0.9),
        ("planted", "longest", "padded", 0.1),
        ("pairs", "cpqs", "all", 0.71),
    ]
    assert (val[0]["ci_low"], val[0]["ci_high"], val[1]["excluded"]) == (0.8, 0.97, 1)
