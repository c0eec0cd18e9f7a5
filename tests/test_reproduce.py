"""End to end: the whole pipeline on a tiny random model, offline — skip on rerun, resume after kill -9, no secrets.

One uninterrupted run (module fixture) is the reference; the kill -9 test interrupts a second run mid-way, reruns
it, and requires the same leaderboard tables.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cpqs_bench import tiny

CANARY_HF = "hf_CANARYcanaryCANARYcanary0123456789"
CANARY_WANDB = "wandb-canary-0123456789abcdef0123456789abcdef"


def tiny_preset(tmp: Path, model_dir: Path, name: str = "tiny") -> Path:
    cfg = {
        "experiment": {
            "name": name,
            "seeds": [0, 1],
            "output_dir": str(tmp / "runs"),
            "description": "Test run of a tiny random model: a pipeline check, not a result.",
        },
        "model": {"id": str(model_dir), "dtype": "float32"},
        "prompt": {"template": "chat", "max_length": 384},
        "data": {"pool": "alpaca_gpt4", "pool_limit": 16},
        "selectors": {
            "names": ["random", "longest", "ifd", "superfiltering", "cpqs"],
            "budget": 4,
            "bottom_arms": ["cpqs"],
            "proxy_model": str(model_dir),
            "batch_size": 4,
            "cpqs": {
                "pairs_source": "generate",
                "pairs": "alpaca_gpt4",
                "generator": str(model_dir),
                "generation_max_new_tokens": 8,
                "generation_batch_size": 4,
                "n_pairs": 12,
                "generation_drop_unfinished": False,
                "feature_max_length": 384,
                "extract_batch_size": 4,
                "epochs": 1,
                "grad_accum": 2,
                "num_filters": 8,
                "mlp_hidden": 16,
                "feature_cache": False,
            },
        },
        "finetune": {
            "epochs": 2,
            "lr": 1e-3,
            "warmup_ratio": 0.0,
            "batch_size": 4,
            "micro_batch_size": 2,
            "save_steps": 1,
            "logging_steps": 1,
            "precision": "fp32",
            "max_length": 384,
        },
        "evaluate": {
            "tasks": ["cpqs_gsm8k_chat", "cpqs_humaneval_instruct"],
            "limit": 2,
            "max_new_tokens": 8,
            "batch_size": 4,
            "code_workers": 1,
            "dtype": "float32",
        },
        "publish": {"enabled": True, "dry_run": True, "wandb": True, "wandb_mode": "offline"},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tinymodel") / "chatml"
    m, tok = tiny.model("chatml", hidden_size=32, num_layers=2)
    m.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def run_preset(preset: Path, overrides: list[str] | tuple[str, ...] = (), **kw) -> dict:
    """The library entry as the CLI uses it: the preset parsed once at the edge, the Config passed inward."""
    from cpqs_bench.config import load_config
    from cpqs_bench.reproduce import reproduce

    kw.setdefault("log", lambda s: None)
    return reproduce(load_config(str(preset), list(overrides)), preset=str(preset), overrides=tuple(overrides), **kw)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_model_dir):
    from cpqs_bench.model_cache import ModelCache

    tmp = tmp_path_factory.mktemp("ref")
    preset = tiny_preset(tmp, tiny_model_dir)
    with pytest.MonkeyPatch.context() as mp:  # module scope: the function-scoped monkeypatch is not available
        mp.setenv("HF_TOKEN", CANARY_HF)
        mp.setenv("WANDB_API_KEY", CANARY_WANDB)
        t0 = time.monotonic()
        lines: list[str] = []
        cache = ModelCache(device="cpu")
        out = run_preset(preset, log=lines.append, loader=cache)
        out["seconds"] = time.monotonic() - t0
        out["log"] = lines
        out["cache"] = cache
        out["wandb_runs"] = sorted((tmp / "runs" / "tiny" / "wandb").glob("offline-run-*"))
    return tmp, preset, out


def _tables(board_json: Path) -> dict:
    return json.loads(Path(board_json).read_text())["tables"]


def test_pipeline_produces_leaderboard_and_publish_folders(reference_run):
    tmp, _, out = reference_run
    index = out["index"]
    board = {k: Path(v) for k, v in index["leaderboard"].items()}
    assert all(p.exists() for p in board.values())
    doc = json.loads(board["json"].read_text())
    assert set(doc["arms"]) == {"base", "full", "random", "longest", "ifd", "superfiltering", "cpqs", "cpqs-bottom"}
    assert set(doc["tasks"]) == {"cpqs_gsm8k_chat", "cpqs_humaneval_instruct"}
    md = board["md"].read_text()
    assert "tiny random model" in md and "cpqs-bottom" in md
    # the budget is a count (4 of 16), whether the config holds it as 4 or 4.0; no arm is reported short
    assert doc["arm_info"]["cpqs"]["budget_k"] == 4 and doc["arm_info"]["full"]["budget_k"] == 16
    assert not [w for w in doc["warnings"] if "fewer examples than its budget" in w]
    # the length-confound column: longest ranks by response tokens, the full pool was not ranked at all
    assert doc["arm_info"]["longest"]["length_spearman"] > 0.95 and doc["arm_info"]["full"]["length_spearman"] is None
    assert "ρ(score, length)" in md
    # every selection keeps exactly the budget (or everything, for full)
    for arm, sel in index["selections"].items():
        rows = [json.loads(line) for line in Path(sel).read_text().splitlines()]
        assert len(rows) == 16 and sum(r["kept"] for r in rows) == (16 if arm == "full" else 4)
    dry = Path(index["data"]["pool"]).parents[2] / "publish" / "dry-run"
    plan = json.loads((dry / "plan.json").read_text())
    assert len(plan["repos"]) == 7 * 2 + 1  # one repo per arm and seed, plus the results dataset


def test_rerun_skips_every_stage(reference_run):
    _, preset, first = reference_run
    again = run_preset(preset)
    always = {r for r in first["ran"] if r.startswith(("leaderboard", "publish"))}  # regenerated from DONE stages
    assert set(again["ran"]) == always and len(again["skipped"]) == len(first["ran"]) - len(always) + len(
        first["skipped"]
    )
    assert _tables(again["index"]["leaderboard"]["json"]) == _tables(first["index"]["leaderboard"]["json"])


def test_changed_config_never_reuses_stale_results(reference_run):
    _, preset, first = reference_run
    changed = run_preset(preset, ["selectors.budget=5"])
    ran = set(changed["ran"])
    assert "data" not in ran and "score random" not in ran  # upstream of the change: reused
    assert {"select random seed 0", "finetune random seed 0", "evaluate random seed 0"} <= ran
    assert "evaluate base" not in ran  # the base model does not depend on the budget


def test_wandb_offline_run_per_stage(reference_run):
    tmp, _, out = reference_run
    runs = out["wandb_runs"]  # as the reference run left them (later tests add runs of their own)
    # one per stage that ran (train-selector, scores, fine-tunes, evaluations): not data, negatives, the
    # selections, contamination, the leaderboard and publish
    assert len(runs) == len(out["ran"]) - 2 - len(out["index"]["selections"]) - 1 - 2  # - contamination


def test_no_secret_in_any_artifact(reference_run):
    tmp, _, _ = reference_run
    hits = []
    for path in (tmp / "runs").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if CANARY_HF.encode() in data or CANARY_WANDB.encode() in data:
                hits.append(str(path))
    assert hits == []
    log = "\n".join(reference_run[2]["log"])
    assert "[stage 1/" in log and CANARY_HF not in log and CANARY_WANDB not in log


def test_kill9_then_rerun_gives_the_same_leaderboard(reference_run, tiny_model_dir, tmp_path):
    _, _, first = reference_run
    preset = tiny_preset(tmp_path, tiny_model_dir)
    cmd = [sys.executable, "-m", "cpqs_bench", "reproduce", "--config", str(preset)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    killed_at = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if "finetune random seed 1: run" in line:
            time.sleep(2.0)  # mid-way through a training run
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = line.strip()
            break
    proc.wait(timeout=60)
    assert killed_at is not None, "the pipeline finished before it could be interrupted"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "data: skip (DONE)" in done.stdout
    board = tmp_path / "runs" / "tiny" / "leaderboards" / "tiny.json"
    assert _tables(board) == _tables(first["index"]["leaderboard"]["json"])


def test_a_code_change_reruns_exactly_the_stages_it_affects(reference_run, monkeypatch):
    """A one-line edit of the GSM8K answer extractor: the evaluations and the leaderboard rerun, nothing upstream."""
    from cpqs_bench import code_version

    _, preset, first = reference_run
    target = code_version.module_file("cpqs_bench.evaluate.gsm8k")
    edited = target.read_text() + "\n# one edited line\n"
    real = code_version._file_digest
    monkeypatch.setattr(
        code_version,
        "_file_digest",
        lambda p: code_version.hashlib.sha256(edited.encode()).hexdigest() if p == target else real(p),
    )
    again = run_preset(preset)
    ran = set(again["ran"])
    evaluations = {r for r in ran if r.startswith("evaluate ")}
    assert evaluations and len(evaluations) == sum(
        1 for r in first["ran"] + first["skipped"] if r.startswith("evaluate ")
    )
    assert any(r.startswith("leaderboard") for r in ran)
    # the contamination stage renders the evaluation items through the task code: it reruns too (it is cheap)
    downstream = ("evaluate ", "leaderboard", "publish", "contamination")
    upstream = {r for r in ran if not r.startswith(downstream)}
    assert upstream == set(), upstream


def test_the_preset_is_parsed_once_per_reproduce(reference_run, monkeypatch):
    """`cpqs-bench reproduce` loads the config at the edge, once; no stage parses it again."""
    from cpqs_bench import config
    from cpqs_bench.cli import main

    _, preset, _ = reference_run
    calls = []
    real = config.load_config
    monkeypatch.setattr(config, "load_config", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert main(["reproduce", "--config", str(preset)]) == 0
    assert len(calls) == 1


def test_the_target_model_is_loaded_once_for_all_scoring_stages(reference_run, tiny_model_dir):
    _, _, out = reference_run
    scoring_stages = [t for t in out["timings"] if t.name.startswith("score ")]
    # random is drawn per seed (2 seeds); longest, ifd, superfiltering and cpqs once each
    assert len(scoring_stages) == 2 + 4, [t.name for t in scoring_stages]
    loads_of_target = [k for k in out["model_loads"] if k[0] == str(tiny_model_dir)]
    # ifd, superfiltering (same stand-in as proxy) and cpqs share one load; fine-tuning and evaluation reuse it too
    assert len(loads_of_target) == 1, out["model_loads"]
