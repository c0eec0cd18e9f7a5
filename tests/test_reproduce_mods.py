"""MoDS inside ``reproduce`` as its paper describes it: phases 1–2 (``score/mods-seed``), a LoRA fine-tuned on the
seed set (``finetune/mods-seed-s<first seed>``), then the necessity phase answered by the target model *with that
adapter attached* — on a tiny random model and a tiny saved reward model, offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from test_reproduce import run_preset, tiny_preset

from cpqs_bench import tiny
from cpqs_bench.config import load_config
from cpqs_bench.data.pool import read_project_pool
from cpqs_bench.io import read_jsonl

SEED = 3  # the experiment's (only, hence first) seed: the seed model is trained with it


def mods_preset(tmp: Path, model_dir: Path, reward_dir: Path) -> Path:
    path = tiny_preset(tmp, model_dir, name="mods")
    cfg = yaml.safe_load(path.read_text())
    cfg["experiment"]["seeds"] = [SEED]
    cfg["data"]["pool_limit"] = 8
    # everything is high quality, 2 k-center seeds, every seed answer "necessary": the arm = 2 seeds + 2 necessary
    cfg["selectors"] = {
        "names": ["mods"],
        "bottom_arms": [],
        "budget": 4,
        "batch_size": 4,
        "mods": {
            "reward_model": str(reward_dir),
            "embedding": "target",
            "quality_threshold": -1.0e9,
            "seed_count": 2,
            "necessity_threshold": 1.0e9,
            "max_new_tokens": 8,
            "generation_batch_size": 4,
            "reward_batch_size": 4,
        },
    }
    cfg["finetune"].update({"epochs": 2, "lr": 2e-2})  # enough for the seed adapter to change greedy answers
    cfg["evaluate"].update({"tasks": ["cpqs_gsm8k_chat"], "limit": 1, "max_new_tokens": 4})
    cfg["publish"] = {"enabled": False, "wandb": False}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from cpqs_bench.model_cache import ModelCache
    from cpqs_bench.testing import tiny_reward_loader

    tmp = tmp_path_factory.mktemp("mods")
    model_dir, reward_dir = tmp / "chatml", tmp / "reward"
    m, tok = tiny.model("chatml", hidden_size=32, num_layers=2)
    m.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    rm, rtok = tiny_reward_loader()("reward")  # saved whole: every load gets the same reward head
    rm.save_pretrained(reward_dir)
    rtok.save_pretrained(reward_dir)
    preset = mods_preset(tmp, model_dir, reward_dir)
    lines: list[str] = []
    out = run_preset(preset, log=lines.append, loader=ModelCache(device="cpu"))
    return {"tmp": tmp, "preset": preset, "out": out, "log": lines, "model_dir": model_dir}


def test_the_seed_stages_run_and_count_stages_counts_them(run):
    from cpqs_bench.reproduce import stage_count as count_stages

    out, cfg = run["out"], load_config(str(run["preset"]))
    ran = out["ran"]
    assert ran[:4] == [
        "data",
        "score mods seed set (quality + coverage)",
        f"finetune mods seed set seed {SEED}",
        "score mods",
    ], ran
    assert (
        len(ran) + len(out["skipped"]) == count_stages(cfg) == 13
    )  # + select/finetune/evaluate, contamination, leaderboard
    assert any(re.match(r"\[stage 3/13\] finetune mods seed set seed %d: run" % SEED, ln) for ln in run["log"])
    seed = out["index"]["mods_seed"]
    assert Path(seed["adapter"], "adapter_model.safetensors").is_file()
    manifest = json.loads(Path(seed["adapter"], "training.json").read_text())  # the adapter's training record
    arm = json.loads(Path(out["index"]["adapters"][f"mods-s{SEED}"], "training.json").read_text())
    assert manifest["seed"] == SEED and manifest["selection"]["kept"] == 2
    assert manifest["recipe_hash"] == arm["recipe_hash"]  # the experiment's one frozen recipe
    # the seed model's training set is exactly the k-center seed set of phases 1–2
    cov = read_jsonl(seed["coverage"])
    seeds = {r["id"] for r in cov if r["seed_pick"] is not None}
    selection = Path(seed["coverage"]).with_name("selection.jsonl")
    assert len(seeds) == 2 and {r["id"] for r in read_jsonl(selection) if r["kept"]} == seeds
    # the seed adapter is no arm: nothing publishes or evaluates it
    assert all("mods-seed" not in k for k in out["index"]["adapters"])


def test_necessity_is_answered_by_the_adapted_target_model(run):
    """Recompute phase 3 by hand with the base model and with base + the seed adapter: the stage's answers are the
    adapted model's, and those differ from the untuned model's (so the check can tell the two apart)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cpqs_bench.selectors import mods
    from cpqs_bench.selectors.base import ScoringContext

    out, cfg = run["out"], load_config(str(run["preset"]))
    stage = Path(out["index"]["scores"]["mods"][None]).parent
    pool = read_project_pool(out["index"]["data"]["pool"]).examples
    coverage = mods.Coverage.read(stage / "phases" / mods.COVERAGE_FILE, pool)
    assert len(coverage.rest) == 6
    recorded = mods.Necessity.read(stage / "phases" / mods.NECESSITY_FILE)

    base = AutoModelForCausalLM.from_pretrained(run["model_dir"]).eval()
    tok = AutoTokenizer.from_pretrained(run["model_dir"])
    ctx = ScoringContext(cfg, run["tmp"] / "ctx", loader=lambda spec, rev, dtype: (base, tok, None))
    untuned = mods.necessity(pool, coverage, ctx, mods.SeedModel(base, tok, "untuned"))
    adapted_model = PeftModel.from_pretrained(base, out["index"]["mods_seed"]["adapter"]).eval()
    adapted = mods.necessity(pool, coverage, ctx, mods.SeedModel(adapted_model, tok, "adapted"))
    assert adapted.answers != untuned.answers, "the seed adapter did not change any greedy answer: no signal"
    assert recorded.answers == adapted.answers
    assert recorded.reward == pytest.approx(adapted.reward, abs=1e-5)
    # the score rows carry those rewards and say what the seed model was (not the untuned deviation)
    rows = {r["id"]: r for r in read_jsonl(stage / "scores.jsonl")}
    label = out["index"]["mods_seed"]["seed_model"]
    assert re.fullmatch(r"target \+ LoRA fine-tuned on the MoDS seed set \(2 examples, adapter \w+\)", label)
    assert all(r["seed_model"] == label for r in rows.values()) and label != mods.UNTUNED
    assert {i: rows[i]["seed_answer_reward"] for i in coverage.rest} == pytest.approx(adapted.reward, abs=1e-5)
    assert sorted(i for i, r in rows.items() if r["mods"] == "seed") == sorted(coverage.seeds)
    manifest = json.loads((stage / "manifest.json").read_text())
    assert manifest["seed_model"] == label and manifest["necessity"] == {"answered": 6, "necessary": 6}
    assert manifest["inputs"]["mods_seed"]["adapter"] is not None  # the adapter is part of the stage's key


def test_rerun_skips_every_stage(run):
    again = run_preset(run["preset"])
    assert [r for r in again["ran"] if not r.startswith("leaderboard")] == []
    assert len(again["skipped"]) == len(run["out"]["ran"]) - 1
    assert again["index"]["mods_seed"] == run["out"]["index"]["mods_seed"]
