"""The pairwise LLM-judge evaluation as pipeline stages (``evaluate.pairwise``): answers per evaluated model, one
judge stage per arm × seed vs the reference arm, a "general (pairwise judge)" leaderboard section — and, while it is
off, not one existing stage's inputs changed. (Position swap and the tie rule: tests/test_pairwise_judge.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from openai_standin import StandIn
from test_reproduce import run_preset, tiny_preset

from cpqs_bench import tiny
from cpqs_bench.config import load_config, replace
from cpqs_bench.io import read_jsonl, stable_hash

KEY_ENV = "CPQS_TEST_PAIRWISE_KEY"
SECRET = "sk-pairwise-standin-0123456789abcdef"
PAIRWISE = [
    "evaluate.pairwise.sets=[vicuna,koala]",
    "evaluate.pairwise.limit=2",
    "evaluate.pairwise.max_new_tokens=6",
    "evaluate.pairwise.batch_size=2",
    "evaluate.pairwise.judge.max_new_tokens=6",
    "evaluate.pairwise.n_boot=200",
]


# ------------------------------------------------------------------------------------------- off = nothing changes
NLL_TASKS = ("cpqs_gsm8k_chat_nll", "cpqs_humaneval_instruct_nll")


def test_pairwise_off_leaves_the_committed_presets_stage_inputs_unchanged():
    """Golden values from before the pairwise section existed: the number of stages and the evaluation stages'
    ``evaluate`` input; turning pairwise on adds stages but changes no existing input."""
    from cpqs_bench.reproduce import stage_count as count_stages
    from cpqs_bench.stages.evaluate import evaluation_settings

    # the preset as it was when the golden hash was taken (it has since cut max_new_tokens to 128 and the NLL items
    # from 50 to 30 for time): 60 stages (49, + the random~cpqs control's 3 selections, 3 fine-tunes, 3 evaluations,
    # + the contamination stage, + validate), its evaluation stages' `evaluate` input as before the pairwise section
    # existed
    as_then = ["evaluate.max_new_tokens=192"] + [f"evaluate.task_limits.{t}=50" for t in NLL_TASKS]
    smoke = load_config("smoke", as_then)
    assert count_stages(smoke) == 60 and stable_hash(evaluation_settings(smoke)) == "426225fe3230"
    for preset in ("smoke", "cpu_study"):
        cfg = load_config(preset)
        assert not cfg.evaluate.pairwise.enabled
        n = count_stages(cfg)
        assert "pairwise" not in evaluation_settings(cfg)
        # a preset without the full arm (cpu_study) compares with base; the judged pairs are counted the same way
        ref = {} if cfg.selectors.full_arm else {"evaluate.pairwise.reference": "base"}
        on = replace(cfg, **{"evaluate.pairwise.sets": ["vicuna"], **ref})
        assert evaluation_settings(on) == evaluation_settings(cfg)
        models = len(cfg.experiment.seeds) * (
            cfg.selectors.full_arm + len(cfg.selectors.names) + len(cfg.selectors.bottom_arms)
        )
        assert count_stages(on) == n + (1 + models) + models


def test_pairwise_config_is_checked_at_the_edge():
    from cpqs_bench.config import ConfigError

    cfg = load_config(None, ["evaluate.pairwise.sets=[vicuna]", "evaluate.pairwise.reference=base"])
    assert cfg.evaluate.pairwise.sets == ("vicuna",) and cfg.evaluate.pairwise.judge.backend == "local"
    with pytest.raises(ConfigError, match="reference"):
        load_config(None, ["evaluate.pairwise.reference=random"])
    with pytest.raises(ConfigError, match="Did you mean"):
        load_config(None, ["evaluate.pairwise.judge.modle=x"])
    with pytest.raises(ConfigError, match="no full arm"):
        load_config(None, ["evaluate.pairwise.sets=[vicuna]", "selectors.full_arm=false"])
    assert (
        load_config(
            None, ["evaluate.pairwise.sets=[vicuna]", "selectors.full_arm=false", "evaluate.pairwise.reference=base"]
        ).evaluate.pairwise.reference
        == "base"
    )


# ----------------------------------------------------------------------------------------------------- tiny runs
def small_preset(tmp: Path, model_dir: Path) -> Path:
    """test_reproduce's tiny preset cut to two fine-tuned arms (full, random) × two seeds, one task."""
    path = tiny_preset(tmp, model_dir, name="pw")
    cfg = yaml.safe_load(path.read_text())
    cfg["selectors"]["names"], cfg["selectors"]["bottom_arms"] = ["random"], []
    cfg["evaluate"].update({"tasks": ["cpqs_gsm8k_chat"], "limit": 1, "max_new_tokens": 4})
    cfg["data"]["pool_limit"], cfg["selectors"]["budget"] = 8, 2
    cfg["finetune"].update({"epochs": 1, "max_steps": 1, "lr": 1e-2})  # one step moves the LoRA past the probe
    cfg["publish"] = {"enabled": False, "wandb": False}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from cpqs_bench.model_cache import ModelCache

    tmp = tmp_path_factory.mktemp("pairwise")
    model_dir = tmp / "chatml"
    m, tok = tiny.model("chatml", hidden_size=32, num_layers=2)
    m.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    preset = small_preset(tmp, model_dir)
    cache = ModelCache(device="cpu")
    off = run_preset(preset, loader=cache)
    off["board"] = json.loads(Path(off["index"]["leaderboard"]["json"]).read_text())  # the next run rewrites them
    off["md"] = Path(off["index"]["leaderboard"]["md"]).read_text()
    lines: list[str] = []
    on = run_preset(preset, PAIRWISE, loader=cache, log=lines.append)
    return {"tmp": tmp, "preset": preset, "off": off, "on": on, "log": lines}


def _judge_dirs(out: dict) -> list[Path]:
    return [Path(d) for d in out["index"]["pairwise"]]


def test_turning_pairwise_on_reruns_no_existing_stage(runs):
    off, on = runs["off"], runs["on"]
    stages = set(off["ran"]) - {r for r in off["ran"] if r.startswith("leaderboard")}
    assert stages <= set(on["skipped"]), sorted(stages - set(on["skipped"]))
    new = {r for r in on["ran"] if not r.startswith("leaderboard")}
    # base + (full, random) × 2 seeds answer; base vs full per seed and random vs full per seed are judged
    assert new == {
        "answers base",
        "answers full seed 0",
        "answers full seed 1",
        "answers random seed 0",
        "answers random seed 1",
        "judge base-vs-full-s0",
        "judge base-vs-full-s1",
        "judge random-s0-vs-full-s0",
        "judge random-s1-vs-full-s1",
    }, sorted(new)
    from cpqs_bench.reproduce import stage_count as count_stages

    cfg = load_config(str(runs["preset"]), PAIRWISE)
    assert len(on["ran"]) + len(on["skipped"]) == count_stages(cfg)  # the leaderboard included; publish is off
    assert any(
        re.match(r"\[stage \d+/%d\] judge random-s1-vs-full-s1: run" % count_stages(cfg), ln) for ln in runs["log"]
    )


def test_judge_stages_write_judgements_and_the_summary(runs):
    dirs = _judge_dirs(runs["on"])
    assert len(dirs) == 4
    for d in dirs:
        assert (d / "DONE").is_file()
        rows = read_jsonl(d / "judgements.jsonl")
        assert [r["id"] for r in rows] == ["vicuna/1", "vicuna/2", "koala/koala_0", "koala/koala_1"]
        doc = json.loads((d / "summary.json").read_text())
        s = doc["summary"]
        assert s["total"] == 4 and s["win"] + s["tie"] + s["lose"] + s["unparsed"] == 4
        assert set(doc["per_set"]) == {"vicuna", "koala"}
        assert doc["weak_judge"] is True and doc["rule"] == "strict"
        manifest = json.loads((d / "manifest.json").read_text())
        assert manifest["reference"] == "full" and manifest["inputs"]["judge"]["target"]["id"].endswith("chatml")
    (base,) = (dirs[0].parents[2] / "answers" / "base").glob("*/answers.jsonl")
    answers = read_jsonl(base)
    assert [a["set"] for a in answers] == ["vicuna", "vicuna", "koala", "koala"]
    assert all(isinstance(a["answer"], str) for a in answers)


def test_leaderboard_has_the_pairwise_section_with_a_weak_judge_label(runs):
    board = runs["on"]["index"]["leaderboard"]
    md = Path(board["md"]).read_text()
    assert "## Domain: general (pairwise judge)" in md
    section = md.split("## Domain: general (pairwise judge)")[1].split("## Figure")[0]
    assert "weak judge: a pipeline check" in section
    doc = json.loads(Path(board["json"]).read_text())
    rows = {r["arm"]: r for r in doc["pairwise"]["rows"]}
    assert set(rows) == {"base", "random"} and all(r["reference"] == "full" for r in rows.values())
    assert rows["random"]["seeds"] == [0, 1] and rows["base"]["reference_seeds"] == [0, 1]
    assert rows["random"]["total"] == 8 and rows["random"]["weak_judge"]
    # without pairwise the leaderboard has no such section (the JSON no such key)
    assert "pairwise" not in runs["off"]["board"]
    assert "pairwise judge" not in runs["off"]["md"]


def test_rerun_with_pairwise_skips_every_stage(runs):
    again = run_preset(runs["preset"], PAIRWISE)
    assert [r for r in again["ran"] if not r.startswith("leaderboard")] == []
    assert len(again["skipped"]) == len(runs["on"]["ran"]) + len(runs["on"]["skipped"]) - 1  # all but the leaderboard


def _length_judge(messages: list[dict]) -> str:
    """Prefers the longer answer (a deterministic stand-in that is consistent across the position swap)."""
    text = messages[-1]["content"]
    one = text.split("[Assistant 1's answer begins]\n")[1].split("\n[Assistant 1's answer ends]")[0]
    two = text.split("[Assistant 2's answer begins]\n")[1].split("\n[Assistant 2's answer ends]")[0]
    return f"{5 + (len(one) > len(two)) * 3} {5 + (len(two) > len(one)) * 3}\nBecause of the detail."


def test_an_endpoint_judge_reruns_only_the_judge_stages_and_its_counts_are_the_answers(runs, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with StandIn(SECRET, _length_judge) as server:
        out = run_preset(
            runs["preset"],
            PAIRWISE
            + [
                "evaluate.pairwise.judge.backend=openai",
                f"evaluate.pairwise.judge.base_url={server.base_url}",
                "evaluate.pairwise.judge.model=standin-judge",
                f"evaluate.pairwise.judge.api_key_env={KEY_ENV}",
            ],
        )
    ran = {r for r in out["ran"] if not r.startswith("leaderboard")}
    assert ran == {
        "judge base-vs-full-s0",
        "judge base-vs-full-s1",
        "judge random-s0-vs-full-s0",
        "judge random-s1-vs-full-s1",
    }
    calls = [json.loads((d / "manifest.json").read_text())["judge_calls"] for d in _judge_dirs(out)]
    assert sum(c["cache_hits"] + c["cache_misses"] for c in calls) == 4 * 4 * 2  # stages × prompts × both orders
    assert len(server.requests) == sum(c["cache_misses"] for c in calls)  # a repeated conversation is asked once
    expected = {"win": 0, "tie": 0, "lose": 0}
    for d in _judge_dirs(out):
        if "random-" not in d.parent.name:
            continue
        for row in read_jsonl(d / "judgements.jsonl"):
            la, lr = len(row["answer"]), len(row["reference"])
            want = "win" if la > lr else "lose" if la < lr else "tie"
            assert row["outcome"] == want, row
            expected[want] += 1
    doc = json.loads(Path(out["index"]["leaderboard"]["json"]).read_text())
    row = next(r for r in doc["pairwise"]["rows"] if r["arm"] == "random")
    assert {k: row[k] for k in expected} == expected and row["unparsed"] == 0
    assert row["judge"] == "standin-judge" and not row["weak_judge"]
    n = sum(expected.values())
    assert row["winning_score"] == pytest.approx((expected["win"] - expected["lose"]) / n + 1)
    md = Path(out["index"]["leaderboard"]["md"]).read_text()
    assert "standin-judge" in md and SECRET not in md
    for path in (runs["tmp"] / "runs").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_over_seeds_with_one_seed_is_exactly_summarize():
    from cpqs_bench.evaluate.judge import Judgement, summarize, summarize_over_seeds

    outcomes = ["win", "win", "lose", "tie", "unparsed", "win", "lose", "win"]
    js = [Judgement(str(i), o, None, None, "", "") for i, o in enumerate(outcomes)]
    one, pooled = summarize(js, n_boot=300, seed=3), summarize_over_seeds([js], n_boot=300, seed=3)
    assert {k: pooled[k] for k in one} == one
    # two seeds disagreeing on a prompt average to 0 there: the prompt counts neither as won nor lost
    other = [Judgement(j.id, {"win": "lose"}.get(j.outcome, j.outcome), None, None, "", "") for j in js]
    both = summarize_over_seeds([js, other], n_boot=300)
    assert both["win"] == 4 + 0 and both["lose"] == 2 + 6 and both["n_prompts"] == 7
    assert both["prompts_won"] == 0 and both["prompts_lost"] == 2
