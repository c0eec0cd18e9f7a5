"""LoRA SFT arms on tiny random models: recipe guard, kill -9 resume, 2-process accelerate, the adapter's effect.

Tolerances: on CPU in fp32 a resumed run replays the same batches, dropout masks (RNG state restored from the
checkpoint) and optimizer state, so its adapter must match the uninterrupted one to 1e-6 (observed: bit-identical).
The 2-process run (gloo) sums the same examples per optimizer step as the 1-process run with gradient accumulation;
with dropout off the adapters agree to 1e-5 (reduction order differs, nothing else).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cpqs_bench import tiny
from cpqs_bench.config import load_config
from cpqs_bench.data.pool import read_pool
from cpqs_bench.finetune import checkpoints, sft
from cpqs_bench.finetune.recipe import RecipeMismatch, check_same_recipe, recipe, recipe_hash

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A saved tiny ChatML model (loadable by path, also from subprocesses) and a 16-example selection."""
    os.environ.setdefault("CPQS_DATA_MIRROR", str(REPO.parent / "shared" / "data"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    root = tmp_path_factory.mktemp("ft")
    model, tok = tiny.model("chatml", hidden_size=32)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    pool = read_pool("alpaca_gpt4", limit=24)
    rows = [
        {"id": ex.id, "kept": i < 16, "rank": i + 1, "score": float(-i), "reason": "top-k" if i < 16 else "beyond"}
        for i, ex in enumerate(pool.examples)
    ]
    (root / "sel.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def overrides(env: Path, **extra) -> list[str]:
    base = {
        "model.id": str(env / "model"),
        "finetune.max_length": 96,
        "finetune.batch_size": 4,
        "finetune.micro_batch_size": 2,
        "finetune.max_steps": 8,
        "finetune.save_steps": 3,
        "finetune.save_interval_s": 0,
        "finetune.logging_steps": 1,
        "finetune.precision": "fp32",
        "finetune.lr": 1e-2,
        "finetune.warmup_ratio": 0.0,
        "finetune.lora_r": 4,
        "finetune.lora_alpha": 8,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def pool_examples():
    return read_pool("alpaca_gpt4", limit=24).examples


def train(
    env: Path, out: Path, ov: list[str], *, seed: int = 0, loader=None, arm=None, keep_epoch_checkpoints=False
) -> dict:
    """The library entry as the CLI calls it: a resolved Config's sections, the pool's Examples, the selection file."""
    return sft.finetune_arm(
        sft.ArmConfig.of(load_config("smoke", ov)),
        env / "sel.jsonl",
        pool_examples(),
        out,
        seed=seed,
        arm=arm,
        loader=loader,
        options=sft.ArmOptions(progress_bar=False, keep_epoch_checkpoints=keep_epoch_checkpoints),
    )


def adapter(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(out / "adapter_model.safetensors")


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def baseline(env):
    """One uninterrupted single-process run, shared by several tests."""
    out = env / "baseline"
    manifest = train(env, out, overrides(env, **{"finetune.measure_train_loss": True}), arm="test")
    return out, manifest


# ------------------------------------------------------------------------------------------------- recipe guard
def test_recipe_hash_guard(env, baseline):
    cfg = load_config("smoke", overrides(env))
    same = recipe_hash(
        recipe(load_config("smoke", overrides(env, **{"finetune.save_steps": 7})), precision="fp32", model_revision="r")
    )
    assert recipe_hash(recipe(cfg, precision="fp32", model_revision="r")) == same  # operational keys don't count
    assert recipe_hash(recipe(cfg, precision="bf16", model_revision="r")) != same  # resolved precision does
    other = load_config("smoke", overrides(env, **{"finetune.lora_alpha": 16}))
    m1 = {"arm": "a", "recipe_hash": same, "recipe": recipe(cfg, precision="fp32", model_revision="r")}
    m2 = {
        "arm": "b",
        "recipe_hash": recipe_hash(recipe(other, precision="fp32", model_revision="r")),
        "recipe": recipe(other, precision="fp32", model_revision="r"),
    }
    assert check_same_recipe([m1, dict(m1, arm="c")]) == same
    with pytest.raises(RecipeMismatch, match="lora_alpha: 8 != 16"):
        check_same_recipe([m1, m2])
    with pytest.raises(RecipeMismatch, match="no recipe_hash"):
        check_same_recipe([m1, {"arm": "base"}])
    # Real manifests: a finished arm directory is accepted as is.
    out, manifest = baseline
    assert check_same_recipe([out, manifest]) == manifest["recipe_hash"]
    assert manifest["seeds"] == {"data_order": 0, "lora_init": 0, "dropout": 0}


def test_out_dir_of_another_recipe_is_refused(env, baseline):
    out = env / "guard"
    train(env, out, overrides(env, **{"finetune.max_steps": 2}))
    (out / sft.TRAINING_RECORD).unlink()  # pretend it was interrupted, then resume with a different recipe
    with pytest.raises(RecipeMismatch, match="recipe_hash"):
        train(env, out, overrides(env, **{"finetune.max_steps": 2, "finetune.lora_alpha": 16}))


# ---------------------------------------------------------------------------------------------- adapter effect
def test_adapter_changes_model_and_loss_decreases(env, baseline):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, manifest = baseline
    assert not (out / "checkpoints").exists()
    # issue #25: only the pipeline's executor writes DONE / manifest.json; the arm writes its outputs and its record
    assert not (out / "DONE").exists() and not (out / "manifest.json").exists()
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "training_config.yaml",
        "recipe.json",
        sft.TRAINING_RECORD,
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / sft.TRAINING_RECORD).read_text()) == json.loads(json.dumps(manifest))
    loss = manifest["train_data_loss"]
    assert loss["after"] < loss["before"] - 0.05, loss
    curve = [p["loss"] for p in manifest["training"]["loss_curve"]]
    assert len(curve) == 8 and curve[-1] < curve[0]
    assert manifest["training"]["session"]["tokens_per_s"] > 0
    assert manifest["selection"]["kept"] == 16 and manifest["data"]["rows"] + manifest["data"]["dropped"] == 16
    assert manifest["data"]["rows"] >= 8

    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    base = AutoModelForCausalLM.from_pretrained(env / "model").eval()
    with torch.no_grad():
        base_logits = base(ids).logits
        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(env / "model"), out).eval()
        tuned_logits = tuned(ids).logits
    assert (tuned_logits - base_logits).abs().max().item() > 1e-3

    merged = sft.merge(out, env / "merged")
    with torch.no_grad():
        merged_logits = AutoModelForCausalLM.from_pretrained(merged).eval()(ids).logits
    assert torch.allclose(merged_logits, tuned_logits, atol=1e-4)


# ----------------------------------------------------------------------------------------------------- resume
DRIVER = """
import json, sys, time
import torch
torch.set_num_threads(1)
from transformers import Trainer
_step = Trainer.training_step
def slow(self, *a, **k):  # slow the run down so the kill lands mid-training
    time.sleep(0.15)
    return _step(self, *a, **k)
Trainer.training_step = slow
from cpqs_bench.config import load_config
from cpqs_bench.data.pool import read_pool
from cpqs_bench.finetune import sft
pool = read_pool("alpaca_gpt4", limit=24).examples
sft.finetune_arm(sft.ArmConfig.of(load_config("smoke", json.loads(sys.argv[3]))), sys.argv[1], pool, sys.argv[2], seed=0,
                 options=sft.ArmOptions(progress_bar=False))
"""


def test_resume_after_kill9_equals_uninterrupted(env, baseline, tmp_path):
    out = tmp_path / "killed"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.Popen(
        [PY, str(driver), str(env / "sel.jsonl"), str(out), json.dumps(overrides(env))],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    try:
        while checkpoints.newest_complete(out / "checkpoints", deep=False) is None:
            assert proc.poll() is None, f"run ended before its first checkpoint: {proc.stderr.read().decode()[-2000:]}"
            assert time.time() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (out / sft.TRAINING_RECORD).exists()
    newest = checkpoints.newest_complete(out / "checkpoints")
    step = checkpoints.step_of(newest)
    assert step is not None and step < 8
    # A torn save after it (what kill -9 in the middle of a save leaves): no marker, partial files.
    torn = out / "checkpoints" / "checkpoint-7"
    if not torn.exists():
        torn.mkdir()
        (torn / "adapter_model.safetensors").write_bytes(b"\0" * 10)

    manifest = train(env, out, overrides(env), arm="test")
    assert manifest["training"]["resumed_from"].endswith(f"checkpoint-{step}")
    assert manifest["training"]["global_steps"] == 8
    assert manifest["recipe_hash"] == baseline[1]["recipe_hash"]
    assert max_diff(adapter(out), adapter(baseline[0])) <= 1e-6
    assert len(manifest["training"]["loss_curve"]) == 8  # the curve before the kill survived in trainer_state
    # issue #34 item 11: train_loss averages over all 8 steps, not only those after the resume
    assert manifest["training"]["train_loss_over"] == "all steps"
    assert manifest["training"]["train_loss"] == pytest.approx(baseline[1]["training"]["train_loss"], rel=1e-6)
    curve = baseline[1]["training"]["loss_curve"]  # logging_steps=1: one logged loss per step
    assert baseline[1]["training"]["train_loss"] == pytest.approx(sum(p["loss"] for p in curve) / 8, rel=1e-6)


def test_incomplete_checkpoints_are_never_resumed(tmp_path):
    root = tmp_path / "checkpoints"
    good = root / "checkpoint-3"
    good.mkdir(parents=True)
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "adapter_model.safetensors", "rng_state.pth"):
        (good / name).write_text(name)
    with pytest.raises(RuntimeError, match="missing"):
        checkpoints.mark_complete(good, world_size=2)  # rank 1's RNG file is absent
    checkpoints.mark_complete(good, world_size=1)
    (root / "checkpoint-6").mkdir()
    (root / "checkpoint-6" / "optimizer.pt").write_text("half")
    assert checkpoints.newest_complete(root) == good
    (good / "optimizer.pt").write_text("OPTIMIZER.PT")  # same size, different bytes
    assert checkpoints.verify(good) and not checkpoints.verify(good, deep=True)
    (good / "optimizer.pt").write_text("optimizer.pt")
    assert checkpoints.remove_incomplete(root) == [root / "checkpoint-6"]


# ------------------------------------------------------------------------------------------------- accelerate
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_accelerate_matches_single_process(env, tmp_path):
    ov = overrides(env, **{"finetune.lora_dropout": 0.0, "finetune.max_steps": 4, "finetune.save_steps": 2})
    single = train(env, tmp_path / "one", ov)
    cmd = [
        str(Path(PY).parent / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "cpqs_bench.cli",
        "finetune",
        "--config",
        "smoke",
        "--selection",
        str(env / "sel.jsonl"),
        "--out",
        str(tmp_path / "two"),
        "--no-progress",
        *ov,
    ]
    res = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    two = json.loads((tmp_path / "two" / sft.TRAINING_RECORD).read_text())
    assert two["training"]["processes"] == 2 and two["training"]["backend"] == "gloo"
    assert two["training"]["grad_accum"] == 1 and single["training"]["grad_accum"] == 2
    assert two["training"]["effective_batch"] == single["training"]["effective_batch"] == 4
    assert two["recipe_hash"] == single["recipe_hash"]
    assert max_diff(adapter(tmp_path / "two"), adapter(tmp_path / "one")) <= 1e-5


# -------------------------------------------------------------------------------------------------------- W&B
def test_wandb_failure_never_fails_training(env, tmp_path, monkeypatch):
    from transformers.integrations import WandbCallback

    def boom(self, *a, **k):
        raise ConnectionError("wandb backend unreachable")

    monkeypatch.setattr(WandbCallback, "setup", boom)
    monkeypatch.setenv("WANDB_MODE", "offline")
    manifest = train(env, tmp_path / "wb", overrides(env, **{"finetune.max_steps": 2, "publish.wandb": True}))
    assert (tmp_path / "wb" / sft.TRAINING_RECORD).exists()
    assert manifest["wandb"]["mode"] == "offline"
    assert any("wandb backend unreachable" in e for e in manifest["wandb"]["errors"])


# ------------------------------------------------------------------------------------- many arms, one base load
SEPARATE = """
import json, sys
import torch
torch.set_num_threads(1)
from cpqs_bench.config import load_config
from cpqs_bench.data.pool import read_pool
from cpqs_bench.finetune import sft
sel, out, seed, ov = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
sft.finetune_arm(sft.ArmConfig.of(load_config("smoke", ov)), sel, read_pool("alpaca_gpt4", limit=24).examples, out,
                 seed=seed, options=sft.ArmOptions(progress_bar=False))
"""


def test_arms_in_one_process_equal_separate_runs_and_the_base_stays_clean(env, tmp_path):
    """fp32, tiny model: three arms (two selections, two seeds) trained one after another on one loaded base give
    the adapters that three separate processes give; the shared base is untouched afterwards."""
    from cpqs_bench.model_cache import ModelCache

    rows = [json.loads(line) for line in (env / "sel.jsonl").read_text().splitlines()]
    (tmp_path / "sel2.jsonl").write_text(
        "".join(json.dumps({**r, "kept": 8 <= i < 24}) + "\n" for i, r in enumerate(rows))
    )
    ov = overrides(env, **{"finetune.max_steps": 3})
    arms = [(env / "sel.jsonl", 0), (tmp_path / "sel2.jsonl", 0), (env / "sel.jsonl", 1)]
    cache = ModelCache(device="cpu")
    base = cache(str(env / "model"), None, "float32")[0]
    before = {k: v.clone() for k, v in base.state_dict().items()}
    for k, (sel, seed) in enumerate(arms):
        sft.finetune_arm(
            sft.ArmConfig.of(load_config("smoke", ov)),
            sel,
            pool_examples(),
            tmp_path / f"shared{k}",
            seed=seed,
            loader=cache,
            options=sft.ArmOptions(progress_bar=False),
        )
    assert len(cache.loads) == 1
    assert not any("lora" in n for n, _ in base.named_modules())
    after = base.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    script = tmp_path / "separate.py"
    script.write_text(SEPARATE)
    for k, (sel, seed) in enumerate(arms):
        res = subprocess.run(
            [PY, str(script), str(sel), str(tmp_path / f"alone{k}"), str(seed), json.dumps(ov)],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        assert max_diff(adapter(tmp_path / f"shared{k}"), adapter(tmp_path / f"alone{k}")) == 0.0, k
    assert max_diff(adapter(tmp_path / "shared0"), adapter(tmp_path / "shared2")) > 0  # the seed matters


# ---------------------------------------------------------------------------------------------------- packing
def test_packed_micro_batch_keeps_examples_apart(env):
    """One packed row (restarting position ids, no mask) gives every example the logits it gets alone, and the
    same summed supervised loss; the same row without position ids mixes the examples (so the check can fail)."""
    from transformers import AutoModelForCausalLM

    from cpqs_bench.finetune.dataset import PackCollator, PadCollator

    model = AutoModelForCausalLM.from_pretrained(env / "model", attn_implementation="sdpa").eval()
    rows = [
        {"input_ids": [5, 17, 42, 99, 7, 3, 11], "labels": [-100, -100, 42, 99, 7, 3, 11]},
        {"input_ids": [8, 9, 10, 12], "labels": [-100, 9, 10, 12]},
        {"input_ids": [20, 21, 22, 23, 24, 25], "labels": [20, 21, -100, 23, 24, 25]},
    ]  # first label set
    packed = PackCollator()(rows)
    assert packed["input_ids"].shape == (1, 17) and packed["attention_mask"].all()
    assert packed["position_ids"].tolist() == [list(range(7)) + list(range(4)) + list(range(6))]
    assert packed["labels"][0, 11].item() == -100  # never predicted from the previous example's last token
    with torch.no_grad():
        # use_cache=False as in training: with a KV cache transformers does not look for packed position ids
        out = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
        mixed = model(input_ids=packed["input_ids"], use_cache=False).logits[0]
        start = 0
        for r in rows:
            alone = model(input_ids=torch.tensor([r["input_ids"]])).logits[0]
            n = len(r["input_ids"])
            assert (out[start : start + n] - alone).abs().max().item() < 1e-5
            start += n
        assert (mixed[7:] - out[7:]).abs().max().item() > 1e-3
        padded = PadCollator(0)(rows)

        def loss_sum(logits, labels):
            return torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), reduction="sum"
            )

        lp = loss_sum(model(input_ids=padded["input_ids"]).logits, padded["labels"])
        lk = loss_sum(out[None], packed["labels"])
        assert (padded["labels"][:, 1:] != -100).sum() == (packed["labels"][:, 1:] != -100).sum()
    assert abs(lp.item() - lk.item()) < 1e-4


def test_packing_is_in_the_recipe_and_trains_what_padding_trains(env, tmp_path):
    """Same examples per step, same normalisation: with dropout off, packed and padded arms agree up to float
    reduction order; the recipe hash tells them apart; packing under an unsupported attention is refused."""
    ov = {"finetune.lora_dropout": 0.0, "finetune.max_steps": 3}
    packed = train(env, tmp_path / "packed", overrides(env, **ov, **{"finetune.packing": True}))
    padded = train(env, tmp_path / "padded", overrides(env, **ov))
    assert "packing" not in padded["recipe"]["finetune"]  # off: the recipe (and hash) as before the option
    assert packed["training"]["packing"] is True and padded["training"]["packing"] is False
    assert packed["recipe_hash"] != padded["recipe_hash"]
    assert packed["training"]["total_input_tokens"] == padded["training"]["total_input_tokens"]
    assert max_diff(adapter(tmp_path / "packed"), adapter(tmp_path / "padded")) <= 1e-4
    for a, b in zip(packed["training"]["loss_curve"], padded["training"]["loss_curve"]):
        assert abs(a["loss"] - b["loss"]) < 1e-4

    class Odd:
        class config:
            _attn_implementation = "some_kernel"

    ft = load_config("smoke", overrides(env, **{"finetune.packing": True})).finetune
    with pytest.raises(ValueError, match="finetune.packing"):
        sft.collator(ft, Odd(), None)


# ----------------------------------------------------------------------------- finished folders, epoch checkpoints
def test_finished_arm_is_returned_as_is_and_a_garbled_one_retrained(env, tmp_path):
    out = tmp_path / "arm"
    ov = overrides(env, **{"finetune.max_steps": 2})
    first = train(env, out, ov)
    assert not (out / "DONE").exists() and not (out / "manifest.json").exists()
    stamp = (out / sft.TRAINING_RECORD).stat().st_mtime_ns
    assert train(env, out, ov) == json.loads((out / sft.TRAINING_RECORD).read_text())  # returned, not retrained
    assert (out / sft.TRAINING_RECORD).stat().st_mtime_ns == stamp
    weights = out / "adapter_model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-64:] = bytes(64)  # garble the tail of the tensor data, same size
    weights.write_bytes(bytes(raw))
    again = train(env, out, ov)
    assert again["finished_at"] >= first["finished_at"] and again["adapter_sha256"] == first["adapter_sha256"]
    assert (out / sft.TRAINING_RECORD).stat().st_mtime_ns != stamp


def test_keep_epoch_checkpoints_keeps_adapter_and_optimizer_of_every_epoch(env, tmp_path):
    out = tmp_path / "warm"
    ov = overrides(env, **{"finetune.max_steps": -1, "finetune.epochs": 2, "finetune.save_steps": 1})
    rec = train(env, out, ov, keep_epoch_checkpoints=True)
    kept = rec["epoch_checkpoints"]
    # 16 selected rows (minus any the length policy drops), batch 4 -> ceil(rows/4) steps per epoch, 2 epochs
    per_epoch = -(-rec["data"]["rows"] // 4)
    assert [k["step"] for k in kept] == [per_epoch, 2 * per_epoch]
    assert [round(k["epoch"]) for k in kept] == [1, 2]
    for k in kept:
        path = Path(k["path"])
        assert (path / "optimizer.pt").is_file() and (path / "adapter_model.safetensors").is_file()
        assert checkpoints.verify(path, deep=True)
        assert k["mean_lr"] is not None and 0 < k["mean_lr"] <= 1e-2
        state = torch.load(path / "optimizer.pt", weights_only=True)["state"]
        assert state and all("exp_avg" in v and "exp_avg_sq" in v for v in state.values())
    assert kept[0]["mean_lr"] > kept[1]["mean_lr"]  # cosine decay: the second epoch's rates are lower
    assert sft.epoch_checkpoints(out) == kept  # listed again from disk (what LESS reads)
