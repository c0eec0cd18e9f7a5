"""Every stage defined once (issue #25): the verbs and ``reproduce`` run the same steps (same key, same output), only
the executor writes ``DONE`` / ``manifest.json``, the stage count is the plan's length, and the four divergences the
two copies used to have are gone. Also the executor's verified reuse and the run-directory lock (issue #34)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_reproduce import tiny_preset  # tests/ is on sys.path (rootdir conftest)

from cpqs_bench import cli, tiny
from cpqs_bench.config import load_config
from cpqs_bench.data.example import Example
from cpqs_bench.model_cache import ModelCache
from cpqs_bench.pipeline import Pipeline
from cpqs_bench.reproduce import plan

MARKERS = ("DONE", "manifest.json")


def markers_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name in MARKERS]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny model, its preset, and the reproduce steps data → negatives → train-selector → score longest / cpqs →
    select longest → finetune longest seed 0 → evaluate longest seed 0, run through the executor."""
    tmp = tmp_path_factory.mktemp("stages")
    model_dir = tmp / "chatml"
    m, tok = tiny.model("chatml", hidden_size=32, num_layers=2)
    m.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    preset = tiny_preset(tmp, model_dir)
    cfg = load_config(str(preset), ["selectors.names=[longest,cpqs]", "selectors.bottom_arms=[]"])
    loader = ModelCache(device="cpu")
    p = plan(cfg, Path(cfg.experiment.output_dir), loader, log=lambda s: None)
    score = p.scores["longest"][None]
    select = p.selections["longest"][None]
    finetune = p.adapters[("longest", 0)]
    evaluate = next(e for e in p.evaluations if e.arm == "longest" and e.seed == 0)
    steps = [p.data, p.checkpoint.negatives, p.checkpoint, score, p.scores["cpqs"][None], select, finetune, evaluate]
    pipe = Pipeline(Path(cfg.experiment.output_dir), cfg.experiment.name, log=lambda s: None)
    pipe.run_all(steps)
    return {
        "tmp": tmp,
        "preset": preset,
        "cfg": cfg,
        "plan": p,
        "model_dir": model_dir,
        "pipe": pipe,
        "overrides": ["selectors.names=[longest,cpqs]", "selectors.bottom_arms=[]"],
    }


def run_verb(world, capsys, *argv: str) -> str:
    capsys.readouterr()
    assert cli.main([*argv, "--config", str(world["preset"]), *world["overrides"]]) == 0
    return capsys.readouterr().out


def test_verbs_reach_the_stages_reproduce_ran(world, capsys):
    """score, select, finetune, evaluate and train-selector as verbs: each finds the stage reproduce finished (same
    key: it is skipped) and delivers the same bytes to --out."""
    tmp, p = world["tmp"], world["plan"]
    pool_file = tmp / "pool.jsonl"
    rows = [json.loads(line) for line in p.data.output.path.read_text().splitlines()]
    pool_file.write_text("".join(json.dumps(r) + "\n" for r in rows))  # the pool as the data stage wrote it

    out = run_verb(world, capsys, "score", "longest", "--data", str(pool_file), "--out", str(tmp / "s.jsonl"))
    assert "score longest: skip (DONE)" in out
    assert (tmp / "s.jsonl").read_bytes() == p.scores["longest"][None].output.path.read_bytes()

    out = run_verb(world, capsys, "select", "--scores", str(tmp / "s.jsonl"), "--out", str(tmp / "sel.jsonl"))
    assert "select longest: skip (DONE)" in out
    assert (tmp / "sel.jsonl").read_bytes() == p.selections["longest"][None].output.path.read_bytes()

    out = run_verb(
        world,
        capsys,
        "finetune",
        "--selection",
        str(tmp / "sel.jsonl"),
        "--pool",
        str(pool_file),
        "--arm",
        "longest",
        "--seed",
        "0",
        "--out",
        str(tmp / "arm"),
        "--no-progress",
    )
    assert "finetune longest seed 0: skip (DONE)" in out
    adapter = p.adapters[("longest", 0)].output.path
    assert (tmp / "arm" / "adapter_model.safetensors").read_bytes() == (
        adapter / "adapter_model.safetensors"
    ).read_bytes()

    out = run_verb(
        world,
        capsys,
        "evaluate",
        "--adapter",
        str(tmp / "arm"),
        "--arm",
        "longest",
        "--seed",
        "0",
        "--out",
        str(tmp / "ev"),
    )
    assert "evaluate longest seed 0: skip (DONE)" in out
    ev = next(e for e in p.evaluations if e.arm == "longest" and e.seed == 0).output.path
    assert (tmp / "ev" / "items.jsonl").read_bytes() == (ev / "items.jsonl").read_bytes()

    out = run_verb(world, capsys, "train-selector", "--out", str(tmp / "ckpt"), "--no-progress")
    assert "negatives: skip (DONE)" in out and "train-selector: skip (DONE)" in out  # one key, code version included
    assert sorted(f.name for f in (tmp / "ckpt").iterdir()) == sorted(
        f.name for f in p.checkpoint.output.path.iterdir()
    )


def test_only_the_executor_writes_markers(world, tmp_path):
    """finetune_arm, evaluate_model and train_selector called outside any pipeline write their outputs only."""
    from cpqs_bench.evaluate.harness import evaluate_model
    from cpqs_bench.finetune.sft import ArmConfig, ArmOptions, finetune_arm
    from cpqs_bench.selectors.cpqs.train import TrainOptions, train_selector

    cfg, p = world["cfg"], world["plan"]
    loader = ModelCache(device="cpu")
    sel = p.selections["longest"][None].output.path
    finetune_arm(
        ArmConfig.of(cfg),
        sel,
        p.data.output.examples,
        tmp_path / "arm",
        seed=0,
        arm="longest",
        loader=loader,
        options=ArmOptions(progress_bar=False),
    )
    evaluate_model(cfg, tmp_path / "ev", adapter=tmp_path / "arm", loader=loader)
    train_selector(
        cfg,
        tmp_path / "ckpt",
        pairs=p.data.output.pairs_pool,
        negatives=p.checkpoint.negatives.output.path,
        exclude=p.data.output.examples,
        loader=loader,
        options=TrainOptions(progress=False),
    )
    assert (tmp_path / "arm" / "adapter_model.safetensors").exists() and (tmp_path / "ev" / "items.jsonl").exists()
    assert markers_under(tmp_path) == []
    # ... while every stage directory the executor finished has both
    stage_dirs = {Path(d).parent for d in (world["tmp"] / "runs").rglob("DONE")}
    assert len(stage_dirs) == len(world["pipe"].ran) and all((d / "manifest.json").exists() for d in stage_dirs)


def test_stage_count_is_the_plan(world):
    """No arithmetic that must track the loops: the count printed is the number of steps planned."""
    cfg = load_config(str(world["preset"]))
    p = plan(cfg, Path(cfg.experiment.output_dir), None)
    names = [s.label for s in p.steps]
    assert len(names) == len(set(names))
    n_arms = 1 + len(cfg.selectors.names) + len(cfg.selectors.bottom_arms)
    assert sum(n.startswith("finetune ") for n in names) == n_arms * len(cfg.experiment.seeds)
    assert sum(n.startswith("evaluate ") for n in names) == 1 + n_arms * len(cfg.experiment.seeds)


# ------------------------------------------------------------------------------------------------ the divergences
def ex(i: int, instruction: str) -> Example:
    return Example(id=f"e{i}", prompt=({"role": "user", "content": instruction},), response=f"answer {i}")


def test_generated_negatives_prompts_are_disjoint_by_overlap_key():
    """The data stage used the exact instruction string; the CLI the normalised overlap_key. One rule now."""
    from cpqs_bench.selectors.cpqs.pairs import overlap_key
    from cpqs_bench.stages.data import disjoint_prompts

    pool = [ex(0, "Name three primary colours."), ex(1, "Write a haiku")]
    candidates = [ex(2, "name three   primary colours."), ex(3, "Write a haiku "), ex(4, "Sum 2 and 3")]
    assert overlap_key(candidates[0]) == overlap_key(pool[0])  # the normalisation the pairs use
    assert [e.id for e in disjoint_prompts(pool, candidates, None)] == ["e4"]
    assert disjoint_prompts(pool, candidates, 0) == []


def test_reproduce_rejects_two_judge_dirs_of_one_comparison(tmp_path):
    """The verb checked it; reproduce's leaderboard did not. Both go through write_leaderboard now."""
    from cpqs_bench.stages.report import write_leaderboard

    dirs = []
    for k in range(2):
        d = tmp_path / f"judge{k}"
        d.mkdir()
        (d / "manifest.json").write_text(
            json.dumps({"arm": "cpqs", "seed": 0, "reference": "base", "reference_seed": None})
        )
        (d / "summary.json").write_text(json.dumps({"judge_identity": "j", "rule": "swap"}))
        dirs.append(d)
    with pytest.raises(ValueError, match="two pairwise judge directories"):
        write_leaderboard([tmp_path], dirs, tmp_path / "out", "x")


def test_one_tasks_dir_rule(tmp_path, monkeypatch):
    """The tasks hashed into evaluation keys, read by the harness and shown by the page are one folder."""
    from cpqs_bench.evaluate.harness import tasks_dir
    from cpqs_bench.stages.evaluate import evaluation_files
    from cpqs_bench.stats import default_task_folders

    (tmp_path / "my_task.yaml").write_text("task: my_task\n")
    monkeypatch.setenv("CPQS_TASKS_DIR", str(tmp_path))
    cfg = load_config("smoke")
    assert tasks_dir() == tmp_path
    assert evaluation_files(cfg)[0] == tmp_path
    assert default_task_folders() == [tmp_path]


def test_leaderboards_go_where_the_preset_says(tmp_path):
    """Never chosen by the experiment's name: smoke writes the tracked folder only through leaderboard.out_dir."""
    from cpqs_bench.stages.report import leaderboard_dir

    cfg = load_config("smoke", [f"experiment.output_dir={tmp_path}", "leaderboard.out_dir=null"])
    assert leaderboard_dir(cfg, tmp_path) == tmp_path / "smoke" / "leaderboards"
    assert leaderboard_dir(load_config("smoke"), tmp_path) == Path("leaderboards")
    # the preflight's scratch run of smoke writes its board into the scratch run dir, not the tracked pages
    from cpqs_bench.preflight import scratch_config

    scratch = scratch_config(load_config("smoke"), tmp_path, None)
    assert leaderboard_dir(scratch, Path(scratch.experiment.output_dir)).is_relative_to(tmp_path)


# ------------------------------------------------------------------------------- verified reuse and the lock
class Echo:
    """A step writing ``out.txt`` with its text; counts its runs."""

    def __init__(self, text: str) -> None:
        self.name, self.label, self.code, self.files, self.track = "echo", "echo", (), (), False
        self.text, self.runs, self.output = text, 0, None

    def inputs(self):
        return {"text": self.text}

    def run(self, st, tracker):
        self.runs += 1
        st.file("out.txt").write_text(self.text)
        (st.path / "work").mkdir(exist_ok=True)
        (st.path / "work" / "scratch").write_text(str(self.runs))  # resume state: not an output
        return {}

    def collect(self, st):
        return st.file("out.txt")


@pytest.mark.parametrize("damage", ["garble", "cut", "delete"])
def test_a_changed_output_reruns_the_stage(tmp_path, damage):
    lines: list[str] = []
    step = Echo("hello world " * 100)
    Pipeline(tmp_path, "x", log=lines.append).run_all([step])
    out = step.output
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert set(manifest["outputs"]) == {"out.txt"}  # the scratch folder is not recorded
    (out.parent / "work" / "scratch").write_text("changed")  # resume state may change: still reused
    Pipeline(tmp_path, "x", log=lines.append).run_all([step])
    assert step.runs == 1
    if damage == "garble":  # same size, other bytes
        data = bytearray(out.read_bytes())
        data[10:14] = b"XXXX"
        out.write_bytes(bytes(data))
    elif damage == "cut":
        out.write_text(out.read_text()[:50])
    else:
        out.unlink()
    lines.clear()
    Pipeline(tmp_path, "x", log=lines.append).run_all([step])
    assert step.runs == 2 and out.read_text() == step.text
    assert any("out.txt" in ln and "re-running" in ln for ln in lines), lines


def test_a_second_process_on_one_run_directory_is_refused(tmp_path):
    from cpqs_bench.rundir import RunDirLocked, lock

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from cpqs_bench.rundir import lock\n"
            f"with lock({str(tmp_path)!r}):\n    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirLocked, match="in use by pid"):
            with lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with lock(tmp_path):  # released when the holder died
        pass
