"""Robustness suite (issue 8): bad inputs, injected faults and secrets that other test files do not already cover.

Each test is named after the case it checks and asserts the defined outcome: quarantined with a reason and counted,
or a clear one-line error naming the file (and line), or — for faults — a loud failure / a resumed run whose
artifacts equal the uninterrupted run's. Cases already covered elsewhere are listed in the closing note of issue 8.

Kill -9 faults are injected for real: a child process replaces ``os.replace`` with a hook that SIGKILLs the process
right after the n-th matching temp file is fully written and before it is renamed over its target — the widest
window in which a torn or half-finished artifact could exist. The test then checks that nothing partial is read as
complete and that a rerun produces exactly (bit-identically) what an uninterrupted run produces.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from cpqs_bench import tiny
from cpqs_bench.config import load_config
from cpqs_bench.data.example import Example
from cpqs_bench.data.pool import read_pool

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
PY = sys.executable
CANARY_HF = "hf_ROBUSTcanaryROBUSTcanary0123456789"
CANARY_WANDB = "wandb-robust-canary-0123456789abcdef0123456789"

torch.set_num_threads(1)


def child_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        **extra,
    }


def _examples(n: int, words: int = 6) -> list[Example]:
    return [
        Example(
            f"ex{i}",
            ({"role": "user", "content": f"Question {i}: write about the sea"},),
            " ".join(["The quick brown fox jumps."] * (1 + (i * 7) % words)),
        )
        for i in range(n)
    ]


def _write_pool(path: Path, n: int = 8) -> Path:
    path.write_text(
        "".join(
            json.dumps(
                {"instruction": f"Task {i}: describe the sky", "input": "", "output": "The sky is blue. " * (1 + i % 3)}
            )
            + "\n"
            for i in range(n)
        )
    )
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _tmp_leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp")]


# ================================================================================================= bad inputs
def test_sample_longer_than_model_context_is_truncated_and_counted_and_scoring_and_sft_do_not_crash(tmp_path):
    """A GPT-2-style model (absolute positions, 512) and a ~2,000-token answer under max_length=2048 settings."""
    from cpqs_bench import features as F
    from cpqs_bench.config import load_config
    from cpqs_bench.finetune import sft
    from cpqs_bench.prompts import LengthStats, render
    from cpqs_bench.selectors.base import ScoringContext
    from cpqs_bench.selectors.ifd import IFDSelector

    model, tok = tiny.model("gpt2")
    context = model.config.n_positions
    long = Example(
        "long",
        ({"role": "user", "content": "Write about the sea."},),
        "The quick brown fox jumps over the lazy dog. " * 300,
    )
    short = _examples(1)[0]
    stats = LengthStats()
    full = render(tok, long, "alpaca")
    assert len(full.input_ids) > 3 * context  # really longer than the context
    r = render(tok, long, "alpaca", max_length=context, stats=stats)
    assert r.truncated and len(r.input_ids) == context and stats.truncated == 1 and stats.kept == 1

    # CPQS features: the spec asks for 2048 tokens; extraction caps at the model's context instead of crashing.
    ex_stats = F.ExtractStats()
    batches = list(
        F.iter_batches(
            model,
            tok,
            [long, short],
            F.FeatureSpec(template="alpaca", max_length=2048),
            F.ExtractOptions(2),
            stats=ex_stats,
        )
    )
    assert sorted(i for b in batches for i in b.ids) == ["ex0", "long"]
    assert ex_stats.lengths.truncated == 1 and max(ex_stats.lengths.lengths) == context

    # IFD: prompt.max_length=2048 is capped at the model's context; the long sample gets a finite score.
    cfg = load_config("smoke", ["prompt.template=alpaca", "prompt.max_length=2048", "selectors.batch_size=2"])
    ctx = ScoringContext(
        config=cfg,
        workdir=tmp_path / "ifd",
        seed=0,
        checkpoint=None,
        loader=lambda spec, rev, dtype: (model, tok, None),
    )
    rows = IFDSelector().score([long, short], ctx)
    assert [r.id for r in rows] == ["long", "ex0"]
    assert all(torch.isfinite(torch.tensor(r.score)) or r.exclude for r in rows)

    # SFT: finetune.max_length=2048 is capped at the context; the long sample is truncated (counted), the batch
    # then trains (a forward + backward at the full context does not crash).
    root = tmp_path / "ft"
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    pool = root / "pool.jsonl"
    pool.write_text(
        json.dumps({"instruction": "Write about the sea.", "input": "", "output": long.response})
        + "\n"
        + json.dumps({"instruction": "Say hi.", "input": "", "output": "Hi there."})
        + "\n"
    )
    sel = root / "sel.jsonl"
    from cpqs_bench.data.pool import read_pool

    ids = [e.id for e in read_pool(str(pool)).examples]
    sel.write_text(
        "".join(
            json.dumps({"id": i, "kept": True, "rank": n + 1, "score": 0.0, "reason": "top-k"}) + "\n"
            for n, i in enumerate(ids)
        )
    )
    from cpqs_bench.config import load_config

    cfg = load_config(
        None,
        [
            f"model.id={root / 'model'}",
            "prompt.template=alpaca",
            "finetune.max_length=2048",
            "finetune.batch_size=2",
            "finetune.micro_batch_size=2",
            "finetune.max_steps=1",
            "finetune.precision=fp32",
            "finetune.save_steps=10",
            "finetune.measure_train_loss=false",
        ],
    )
    manifest = sft.finetune_arm(
        sft.ArmConfig.of(cfg),
        sel,
        read_pool(str(pool)).examples,
        root / "out",
        seed=0,
        options=sft.ArmOptions(progress_bar=False),
    )
    assert (root / "out" / sft.TRAINING_RECORD).exists()  # the record marks the adapter complete (no DONE: #25)
    assert manifest["data"]["length_stats"]["truncated"] == 1 and manifest["dropped_ids"] == []


def test_single_50mb_record_is_read_with_bounded_memory_kept_and_a_50mb_bad_record_is_quarantined(tmp_path):
    """Without a size cap (``max_record_bytes=None``; the default 1 MB cap quarantines both, see
    test_reliability.py): a valid huge record is kept (the length policy truncates it at tokenisation); a huge
    malformed one is quarantined with its raw text capped at 500 characters. Memory stays a small multiple of the
    record size."""
    from cpqs_bench.data.pool import read_pool

    size = 50 * 1024 * 1024
    good = json.dumps({"instruction": "Summarise this.", "input": "", "output": "a" * size})
    bad = '{"instruction": "broken", "output": "' + "b" * size  # unterminated string, then a newline
    path = tmp_path / "huge.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"instruction": "small", "input": "", "output": "ok"}) + "\n")
        fh.write(good + "\n")
        for _ in range(3):
            fh.write(bad + "\n")
    del good, bad
    assert path.stat().st_size > 4 * size
    rejected = tmp_path / "rejected.jsonl"
    tracemalloc.start()
    try:
        pool = read_pool(str(path), max_rejected_fraction=None, rejected_path=rejected, max_record_bytes=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pool.n_read == 5 and len(pool.examples) == 2 and len(pool.rejected) == 3
    assert len(pool.examples[1].response) == size
    assert [r["location"] for r in pool.rejected] == [f"{path}:{n}" for n in (3, 4, 5)]
    assert {r["reason"] for r in pool.rejected} == {"malformed_json"}
    assert all(len(r["raw"]) <= 500 for r in pool.rejected) and rejected.stat().st_size < 10_000
    # Lines are streamed: the peak is a few copies of one record (bytes, text, parsed value, content hash, plus the
    # kept example), independent of how many huge lines follow — well below the 200 MiB file.
    assert peak < 6 * size, f"peak {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB record"


def test_unknown_task_ids_and_missing_tasks_in_eval_samples_cli_are_counted(tmp_path, capsys):
    from cpqs_bench.cli import main
    from cpqs_bench.evaluate.samples import eval_samples

    n_docs = eval_samples("gsm8k", _jsonl(tmp_path / "probe.jsonl", [{"idx": 0, "response": "x"}]))["n_docs"]
    samples = _jsonl(
        tmp_path / "g.jsonl",
        [{"idx": 0, "response": "#### 1"}, {"idx": 999999, "response": "#### 2"}, {"idx": 1, "response": "#### 3"}],
    )
    assert main(["eval-samples", "gsm8k", str(samples), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_unknown"] == 1 and summary["unknown_ids"] == ["999999 (line 2)"]
    assert summary["n_missing"] == n_docs - 2  # missing items count as failures, not silently dropped
    assert f"{n_docs - 2} missing counted as failures, 1 unknown ids ignored" in out
    items = (tmp_path / "out" / "items.jsonl").read_text().splitlines()
    assert len(items) == n_docs
    # an unknown task is a one-line error, exit code 1
    assert main(["eval-samples", "mbpp", str(samples)]) == 1
    err = capsys.readouterr().err
    assert "unknown task 'mbpp'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"pool\.jsonl: no records"),
        (
            b"{oops\n" + json.dumps({"instruction": "a", "output": "b"}).encode() + b"\n{bad",
            r"2 of 3 records rejected.*"
            r"pool\.jsonl:1: malformed_json",
        ),
        (
            b"\xef\xbb\xbf" + json.dumps({"instruction": "a"}).encode() + b"\r\n",
            r"pool\.jsonl:1: cannot detect the record schema",
        ),
    ],
)
def test_bad_pool_via_cli_is_a_one_line_error_naming_file_and_line(tmp_path, capsys, content, message):
    import re

    from cpqs_bench.cli import main

    (tmp_path / "pool.jsonl").write_bytes(content)
    rc = main(["score", "random", "--data", str(tmp_path / "pool.jsonl"), "--out", str(tmp_path / "s.jsonl")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "s.jsonl").exists()


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("finetune.nope=1", "unknown config key 'finetune.nope'"),
        ("finetune.lr=fast", "finetune.lr"),
        ("selectors.budget=[1, 2]", "selectors.budget"),
    ],
)
def test_config_with_unknown_key_or_wrong_type_via_cli_is_a_one_line_error(tmp_path, capsys, override, message):
    from cpqs_bench.cli import main

    pool = _write_pool(tmp_path / "pool.jsonl")
    rc = main(
        ["score", "random", "--data", str(pool), "--out", str(tmp_path / "s.jsonl"), "--config", "smoke", override]
    )
    err = capsys.readouterr().err
    assert rc == 1 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.jsonl").exists()


def test_config_file_with_unknown_key_or_wrong_type_names_the_file(tmp_path, capsys):
    from cpqs_bench.cli import main

    for name, body, message in [
        ("unknown.yaml", "finetune:\n  lrr: 0.1\n", "finetune.lrr"),
        ("wrongtype.yaml", "finetune:\n  epochs: many\n", "finetune.epochs"),
    ]:
        (tmp_path / name).write_text(body)
        assert main(["config", "show", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert message in err and name in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------- CPQS checkpoint fixtures
@dataclass(frozen=True)
class Info:
    spec: str
    revision: str | None


def tiny_backbone() -> tuple:
    return tiny.model("chatml", seed=0, num_layers=2)


def train_tiny_selector(out: Path, cache: Path, **cq_changes) -> dict:
    """A CPQS selector trained (1 epoch, tiny TextCNN) on the tiny ChatML backbone named ``tiny-a@r1``."""
    from cpqs_bench import features as F
    from cpqs_bench.selectors.cpqs import pairs as P
    from cpqs_bench.selectors.cpqs import train as T
    from cpqs_bench.selectors.cpqs.config import CPQSConfig

    items = []
    for i in range(12):
        prompt = ({"role": "user", "content": f"Question {i}: write about the sea"},)
        good = Example("g", prompt, "The quick brown fox jumps over the lazy dog. " * (1 + i % 3))
        bad = Example("b", prompt, "Hello" if i % 2 else "ok")
        items += P._pair(P.prompt_key(prompt), good, bad)
    model, tok = tiny_backbone()
    cq = CPQSConfig(
        **{
            "num_filters": 4,
            "mlp_hidden": 8,
            "epochs": 1,
            "grad_accum": 1,
            "batch_size": 4,
            "val_fraction": 0.25,
            "extract_batch_size": 4,
            **cq_changes,
        }
    )
    return T.fit_selector(
        model,
        tok,
        {"spec": "tiny-a", "revision": "r1"},
        P.PairSet("synthetic", items, n_pairs=12),
        cq,
        F.FeatureSpec(max_length=128),
        out,
        options=T.TrainOptions(progress=False, log=lambda _msg: None, cache_root=cache),
    )


@pytest.fixture(scope="module")
def cpqs_checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cpqs")
    train_tiny_selector(root / "ckpt", root / "cache")
    return root / "ckpt"


def test_changed_selector_training_config_in_the_same_output_never_reuses_stale_state(tmp_path):
    """train-selector resumes per epoch from OUT/train_state.pt; a run with other settings must not pick it up
    (before the fix it did: with epochs already reached it trained nothing and wrote the old weights)."""
    from safetensors.torch import load_file

    from cpqs_bench.selectors.cpqs import checkpoint as C

    train_tiny_selector(tmp_path / "a", tmp_path / "cache")
    weights = load_file(tmp_path / "a" / C.WEIGHTS)
    with pytest.raises(ValueError, match=r"train_state\.pt holds the training state of a run with different inputs"):
        train_tiny_selector(tmp_path / "a", tmp_path / "cache", lr=5e-3)
    assert all(torch.equal(v, load_file(tmp_path / "a" / C.WEIGHTS)[k]) for k, v in weights.items())
    # the same settings resume (one more epoch continues from the saved state) ...
    train_tiny_selector(tmp_path / "a", tmp_path / "cache", epochs=2)
    # ... and equal an uninterrupted two-epoch run
    train_tiny_selector(tmp_path / "b", tmp_path / "cache", epochs=2)
    a, b = load_file(tmp_path / "a" / C.WEIGHTS), load_file(tmp_path / "b" / C.WEIGHTS)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_selector_checkpoint_for_a_different_backbone_via_cli_is_a_one_line_error(cpqs_checkpoint, tmp_path, capsys):
    from cpqs_bench.cli import main

    other, tok = tiny.model("chatml", seed=0, num_layers=3)  # a different model than the one the selector knows
    other.save_pretrained(tmp_path / "other")
    tok.save_pretrained(tmp_path / "other")
    pool = _write_pool(tmp_path / "pool.jsonl", 4)
    capsys.readouterr()  # drop the progress output of saving the model
    rc = main(
        [
            "score",
            "cpqs",
            "--data",
            str(pool),
            "--selector",
            str(cpqs_checkpoint),
            "--out",
            str(tmp_path / "s.jsonl"),
            "--config",
            "smoke",
            f"model.id={tmp_path / 'other'}",
            "model.dtype=float32",
            "model.device=cpu",
        ]
    )
    err = capsys.readouterr().err  # besides the error: only transformers' "Loading weights" progress bar
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert rc == 1 and "Traceback" not in err and len(errors) == 1
    # one line: the contract's prefix names the selector, then the selector's own message
    assert errors[0].startswith("cpqs-bench score: error: selector 'cpqs' failed while scoring")
    assert "CPQS selector" in errors[0] and "'tiny-a'" in errors[0]
    assert str(cpqs_checkpoint) in errors[0] and "train a new selector" in errors[0]
    assert not (tmp_path / "s.jsonl").exists()


def test_changed_config_in_the_same_score_output_never_reuses_stale_results(tmp_path):
    """``score ifd`` twice into the same --out (same resume work dir) with a different prompt.max_length: the second
    run's scores equal a fresh run's, not the first run's cached losses."""
    from cpqs_bench import score

    model, tok = tiny_backbone()
    loader = lambda spec, rev, dtype: (model, tok, Info("tiny-a", "r1"))  # noqa: E731
    pool = _write_pool(tmp_path / "pool.jsonl", 6)
    out = tmp_path / "same" / "scores.jsonl"
    short = ["prompt.max_length=40", "selectors.batch_size=2"]
    long = ["prompt.max_length=256", "selectors.batch_size=2"]
    score.score_pool(load_config(None, short), read_pool(str(pool)).examples, out, selector="ifd", loader=loader)
    first = out.read_bytes()
    score.score_pool(load_config(None, long), read_pool(str(pool)).examples, out, selector="ifd", loader=loader)
    score.score_pool(
        load_config(None, long),
        read_pool(str(pool)).examples,
        tmp_path / "fresh" / "scores.jsonl",
        selector="ifd",
        loader=loader,
    )
    assert out.read_bytes() == (tmp_path / "fresh" / "scores.jsonl").read_bytes() != first


def test_changed_data_with_the_same_ids_in_the_same_score_output_never_reuses_stale_results(tmp_path):
    """A pool with explicit ids whose responses are edited, rescored into the same --out: fresh scores, not the
    cached losses of the old text under the same ids."""
    from cpqs_bench import score

    model, tok = tiny_backbone()
    loader = lambda spec, rev, dtype: (model, tok, Info("tiny-a", "r1"))  # noqa: E731
    rows = [
        {"id": f"r{i}", "instruction": f"Task {i}: describe the sky", "input": "", "output": "The sky is blue."}
        for i in range(4)
    ]
    pool = _jsonl(tmp_path / "pool.jsonl", rows)
    out = tmp_path / "same" / "scores.jsonl"
    score.score_pool(
        load_config(None, ["selectors.batch_size=2"]), read_pool(str(pool)).examples, out, selector="ifd", loader=loader
    )
    first = out.read_bytes()
    rows[1]["output"] = "Photosynthesis converts light energy into chemical energy."
    _jsonl(pool, rows)
    score.score_pool(
        load_config(None, ["selectors.batch_size=2"]), read_pool(str(pool)).examples, out, selector="ifd", loader=loader
    )
    score.score_pool(
        load_config(None, ["selectors.batch_size=2"]),
        read_pool(str(pool)).examples,
        tmp_path / "fresh" / "scores.jsonl",
        selector="ifd",
        loader=loader,
    )
    assert out.read_bytes() == (tmp_path / "fresh" / "scores.jsonl").read_bytes() != first


def test_changed_generation_settings_in_the_same_negatives_output_are_refused(tmp_path):
    """make-negatives resumes from its parts by id; parts made with other settings must not be mixed in."""
    from cpqs_bench.selectors.cpqs import negatives as N

    model, tok = tiny_backbone()
    out = tmp_path / "neg.jsonl"
    N.generate_negatives(
        _examples(3),
        model,
        tok,
        out,
        N.GenerationSettings(drop_unfinished=False, generator="tiny", max_new_tokens=4, batch_size=3),
        progress=False,
    )
    first = out.read_bytes()
    for changed in ({"max_new_tokens": 2}, {"generator": "other"}, {"template": "alpaca"}):
        kwargs = {"generator": "tiny", "max_new_tokens": 4, **changed}
        key = next(iter(changed))
        with pytest.raises(ValueError, match=rf"neg\.jsonl\.parts holds answers made with different {key}"):
            N.generate_negatives(
                _examples(3),
                model,
                tok,
                out,
                N.GenerationSettings(drop_unfinished=False, batch_size=3, **kwargs),
                progress=False,
            )
    assert out.read_bytes() == first
    # the same settings resume (nothing regenerated; a different batch size is not a different setting)
    N.generate_negatives(
        _examples(3),
        model,
        tok,
        out,
        N.GenerationSettings(drop_unfinished=False, generator="tiny", max_new_tokens=4, batch_size=1),
        progress=False,
    )
    assert out.read_bytes() == first


# ===================================================================================== kill -9 (injected) faults
KILL_HOOK = r"""
import os, signal, sys
match, nth = sys.argv[1], int(sys.argv[2])
real_replace, seen = os.replace, [0]
def replace(src, dst, *a, **k):
    if match in os.path.basename(os.fspath(dst)):
        seen[0] += 1
        if seen[0] == nth:  # the temp file is complete and fsync'ed; the rename never happens
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *a, **k)
os.replace = replace
sys.path.insert(0, sys.argv[3])
import test_robustness as t
getattr(t, sys.argv[4])(*sys.argv[5:])
print("JOB FINISHED WITHOUT BEING KILLED")
"""


def kill_during(match: str, nth: int, job: str, *args: str, timeout: int = 240) -> None:
    """Run ``job(*args)`` in a child that is SIGKILLed at the n-th rename onto a file whose name contains ``match``."""
    proc = subprocess.run(
        [PY, "-c", KILL_HOOK, match, str(nth), str(TESTS), job, *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert proc.returncode == -signal.SIGKILL, f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


# --- jobs: module-level so the child can import and run them; deterministic given their arguments
def job_features(cache_root: str) -> None:
    from cpqs_bench import features as F

    model, tok = tiny_backbone()
    spec = F.FeatureSpec(max_length=128)
    cache = F.FeatureCache(cache_root, F.model_identity(model, "r1"), spec)
    F.cached_features(model, tok, _examples(6), spec, cache, F.ExtractOptions(batch_size=2))


def job_score(checkpoint: str, workdir: str) -> None:
    from cpqs_bench.selectors.cpqs import checkpoint as C
    from cpqs_bench.selectors.cpqs import selector as S

    model, tok = tiny_backbone()
    from cpqs_bench.io import write_jsonl

    cnn, meta = C.load_checkpoint(Path(checkpoint))
    rows = S.CNNScorer(cnn, model, tok, S.spec_from_meta(meta), 2).resumable(_examples(7), Path(workdir), shard_size=2)
    write_jsonl(Path(workdir).with_suffix(".scores.jsonl"), rows)


def job_negatives(out: str) -> None:
    from cpqs_bench.selectors.cpqs import negatives as N

    model, tok = tiny_backbone()
    N.generate_negatives(
        _examples(6),
        model,
        tok,
        out,
        N.GenerationSettings(drop_unfinished=False, generator="tiny", max_new_tokens=6, batch_size=2, part_size=2),
        progress=False,
    )


def job_evaluate(model_dir: str, out: str, limit: str = "2") -> None:
    from cpqs_bench.config import Config, replace
    from cpqs_bench.evaluate import harness

    cfg = replace(
        Config(),
        **{
            "model.id": model_dir,
            "model.device": "cpu",
            "evaluate.tasks": ["cpqs_gsm8k_chat"],
            "evaluate.limit": int(limit),
            "evaluate.batch_size": 2,
            "evaluate.max_new_tokens": 6,
            "evaluate.dtype": "float32",
            "evaluate.use_cache": False,
        },
    )
    harness.evaluate_model(cfg, out)  # replaces earlier outputs in out (no --force since the stages rework)


def test_kill9_during_feature_cache_shard_write_then_rerun_gives_identical_features(tmp_path):
    from cpqs_bench import features as F

    job_features(str(tmp_path / "ref"))
    kill_during("shard-", 1, "job_features", str(tmp_path / "killed"))
    [key_dir] = list((tmp_path / "killed").iterdir())
    assert list(key_dir.glob("shard-*.safetensors")) == [] and _tmp_leftovers(key_dir)  # only the temp file
    model, _ = tiny_backbone()
    spec = F.FeatureSpec(max_length=128)
    cache = F.FeatureCache(tmp_path / "killed", F.model_identity(model, "r1"), spec)
    assert not any(ex.content_key() in cache for ex in _examples(6))  # nothing partial is read as complete
    job_features(str(tmp_path / "killed"))
    keys = [ex.content_key() for ex in _examples(6)]
    ref = F.FeatureCache(tmp_path / "ref", F.model_identity(model, "r1"), spec).get_many(keys)
    again = F.FeatureCache(tmp_path / "killed", F.model_identity(model, "r1"), spec).get_many(keys)
    assert ref.keys() == again.keys() == set(keys)
    assert all(torch.equal(ref[k], again[k]) for k in keys)


def test_kill9_during_scoring_then_rerun_gives_identical_scores(cpqs_checkpoint, tmp_path):
    from cpqs_bench.io import read_jsonl

    job_score(str(cpqs_checkpoint), str(tmp_path / "ref"))
    kill_during("shard-", 2, "job_score", str(cpqs_checkpoint), str(tmp_path / "killed"))
    assert len(list((tmp_path / "killed").glob("shard-*.jsonl"))) == 1  # shard 2 exists only as a temp file
    assert _tmp_leftovers(tmp_path / "killed") and not (tmp_path / "killed.scores.jsonl").exists()
    job_score(str(cpqs_checkpoint), str(tmp_path / "killed"))
    assert (tmp_path / "killed.scores.jsonl").read_bytes() == (tmp_path / "ref.scores.jsonl").read_bytes()
    assert len(read_jsonl(tmp_path / "ref.scores.jsonl")) == 7


def test_kill9_during_negative_generation_then_rerun_gives_identical_negatives(tmp_path):
    job_negatives(str(tmp_path / "ref.jsonl"))
    kill_during("part-", 2, "job_negatives", str(tmp_path / "killed.jsonl"))
    parts = tmp_path / "killed.jsonl.parts"
    assert len(list(parts.glob("part-*.jsonl"))) == 1 and _tmp_leftovers(parts)
    assert not (tmp_path / "killed.jsonl").exists()
    job_negatives(str(tmp_path / "killed.jsonl"))
    assert (tmp_path / "killed.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny") / "chatml"
    model, tok = tiny_backbone()
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_kill9_during_evaluation_results_write_then_rerun_gives_identical_results(tiny_model_dir, tmp_path):
    """The killed run is a rerun over a finished evaluation of other inputs (limit 1), the worst case: its new
    items.jsonl must never sit beside the old run's metrics/record as a readable evaluation."""
    from cpqs_bench import leaderboard
    from cpqs_bench.evaluate.harness import EVALUATION_RECORD

    job_evaluate(str(tiny_model_dir), str(tmp_path / "ref"))
    killed = tmp_path / "killed"
    job_evaluate(str(tiny_model_dir), str(killed), "1")
    kill_during("metrics.json", 1, "job_evaluate", str(tiny_model_dir), str(killed), "2")
    assert (killed / "items.jsonl").exists() and not (killed / "metrics.json").exists()
    assert not (killed / EVALUATION_RECORD).exists() and _tmp_leftovers(killed)
    assert not leaderboard._is_eval_dir(killed)  # the leaderboard does not read a half-written evaluation
    job_evaluate(str(tiny_model_dir), str(killed))
    assert (killed / EVALUATION_RECORD).exists()
    for name in ("items.jsonl", "metrics.json", "samples/cpqs_gsm8k_chat.jsonl"):
        assert (killed / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name


# ============================================================================== read-only and full output dirs
def _unshare_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


def test_read_only_output_directory_fails_loudly(tmp_path):
    pool = _write_pool(tmp_path / "pool.jsonl")
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    cmd = f"{PY} -m cpqs_bench score random --data {pool} --out {out_dir}/scores.jsonl"
    if _unshare_works():  # a real read-only bind mount (running as root, chmod would not stop writes)
        proc = subprocess.run(
            [
                "unshare",
                "-rm",
                "sh",
                "-c",
                f"mount --bind {out_dir} {out_dir} && mount -o remount,ro,bind {out_dir} && exec {cmd}",
            ],
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=REPO,
            timeout=120,
        )
        assert proc.returncode != 0 and "Read-only file system" in proc.stderr, proc.stderr[-2000:]
    else:  # pragma: no cover - hosts without user namespaces
        pytest.skip("unshare -rm is not available for a read-only bind mount")
    assert list(out_dir.iterdir()) == []


def _dev_full_mkstemp(real):
    """``mkstemp`` whose file descriptor is /dev/full: every write/flush fails with ENOSPC, like a full disk."""

    def mkstemp(*args, **kwargs):
        fd, path = real(*args, **kwargs)
        os.close(fd)
        os.unlink(path)
        return os.open("/dev/full", os.O_WRONLY), path

    return mkstemp


def test_full_disk_fails_loudly_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import tempfile

    from cpqs_bench import io, score
    from cpqs_bench.rundir import stage

    pool = _write_pool(tmp_path / "pool.jsonl")
    monkeypatch.setattr(io.tempfile, "mkstemp", _dev_full_mkstemp(tempfile.mkstemp))
    with pytest.raises(OSError) as exc:
        score.score_pool(
            load_config(None), read_pool(str(pool)).examples, tmp_path / "out" / "scores.jsonl", selector="random"
        )
    assert exc.value.errno == errno.ENOSPC
    assert not (tmp_path / "out" / "scores.jsonl").exists() and not _tmp_leftovers(tmp_path)
    # a pipeline stage cannot be marked done on a full disk either
    st = stage(tmp_path / "runs", "exp", "data", {"x": 1})
    with pytest.raises(OSError):
        st.begin()
        st.finish()
    assert not st.done


def test_lm_eval_swallowed_write_error_is_caught_by_output_verification(tmp_path):
    """lm-eval's tracker logs and swallows some write errors; the harness reads every output back before DONE."""
    from cpqs_bench.evaluate import harness

    out = tmp_path / "eval"
    (out / "samples").mkdir(parents=True)
    task = "cpqs_gsm8k_chat"
    files = {
        "items.jsonl": json.dumps({"task": task, "doc_id": 0, "correct": 1.0}) + "\n",
        "metrics.json": json.dumps({task: 1.0}),
        "lm_eval_results.json": "{}",
        harness.EVALUATION_RECORD: "{}",
        f"samples/{task}.jsonl": "{}\n",
    }
    for name, text in files.items():
        (out / name).write_text(text)
    harness._verify_outputs(out, [task])  # complete: accepted
    for name in harness.OUTPUT_FILES:
        saved = (out / name).read_text()
        (out / name).unlink()
        with pytest.raises(harness.EvaluationError, match=f"{name} was not written"):
            harness._verify_outputs(out, [task])
        (out / name).write_text("")  # created but never filled (a swallowed error mid-write)
        with pytest.raises(harness.EvaluationError, match=f"{name} was not written"):
            harness._verify_outputs(out, [task])
        (out / name).write_text(saved)
    (out / "samples" / f"{task}.jsonl").unlink()
    with pytest.raises(harness.EvaluationError, match="samples"):
        harness._verify_outputs(out, [task])


# ====================================================================================================== W&B
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wandb_unreachable_training_completes(tmp_path, monkeypatch):
    """W&B online with a key but nothing listening at WANDB_BASE_URL: training finishes, the failure is recorded."""
    from cpqs_bench.data.pool import read_pool

    model, tok = tiny_backbone()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    pool = _write_pool(tmp_path / "pool.jsonl", 4)
    sel = _jsonl(
        tmp_path / "sel.jsonl",
        [
            {"id": e.id, "kept": True, "rank": i + 1, "score": 0.0, "reason": "top-k"}
            for i, e in enumerate(read_pool(str(pool)).examples)
        ],
    )
    # A fresh process: wandb keeps process-wide setup state, so an earlier test (or `make test`'s
    # WANDB_MODE=disabled) must not decide what this run does.
    env = {
        **os.environ,
        "WANDB_MODE": "online",
        "WANDB_BASE_URL": f"http://127.0.0.1:{_closed_port()}",
        "WANDB_API_KEY": CANARY_WANDB,
        "WANDB_INIT_TIMEOUT": "3",
        "WANDB_DIR": str(tmp_path / "wandb"),
    }
    overrides = [
        f"model.id={tmp_path / 'model'}",
        "finetune.max_length=64",
        "finetune.batch_size=2",
        "finetune.micro_batch_size=2",
        "finetune.max_steps=2",
        "finetune.precision=fp32",
        "finetune.save_steps=10",
        "finetune.measure_train_loss=false",
        "publish.wandb=true",
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpqs_bench",
            "finetune",
            "--selection",
            str(sel),
            "--pool",
            str(pool),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
            *overrides,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert CANARY_WANDB not in proc.stdout + proc.stderr
    manifest = json.loads((tmp_path / "out" / "training.json").read_text())  # sft.TRAINING_RECORD (issue #25)
    assert manifest["training"]["global_steps"] == 2
    assert manifest["wandb"]["mode"] == "online" and manifest["wandb"]["errors"]  # recorded, not raised
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in written if CANARY_WANDB.encode() in p.read_bytes()]


# ==================================================================================================== secrets
def _fake_run(root: Path) -> Path:
    """A finished-looking reproduce run directory with one fine-tuned arm: what ``publish --run`` reads."""
    run = root / "runs" / "exp"
    run.mkdir(parents=True)
    sel = _jsonl(run / "sel.jsonl", [{"id": "a", "kept": True}])
    adapter = run / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    (adapter / "adapter_model.safetensors").write_bytes(bytes(range(256)))
    (adapter / "manifest.json").write_text(json.dumps({"selector": "random", "seed": 0, "pool": "alpaca"}))
    evals = {}
    for key, arm, seed in (("base", "base", None), ("random-s0", "random", 0)):
        ev = run / "eval" / key
        ev.mkdir(parents=True)
        (ev / "manifest.json").write_text(json.dumps({"arm": arm, "seed": seed, "model_id": "tiny"}))
        (ev / "metrics.json").write_text(json.dumps({"cpqs_gsm8k_chat": 0.5}))
        (ev / "items.jsonl").write_text(json.dumps({"task": "cpqs_gsm8k_chat", "doc_id": 0, "correct": 0.5}) + "\n")
        evals[key] = str(ev)
    board = {}
    for ext, text in (("md", "# board\n"), ("json", "{}"), ("png", "png")):
        (run / f"board.{ext}").write_text(text)
        board[ext] = str(run / f"board.{ext}")
    (run / "index.json").write_text(
        json.dumps(
            {
                "experiment": "exp",
                "evaluations": list(evals.values()),
                "adapters": {"random-s0": str(adapter)},
                "selections": {"random": str(sel)},
                "leaderboard": board,
            }
        )
    )
    return run


def test_canary_secrets_never_reach_publish_dry_run_folders_or_logs(tmp_path):
    run = _fake_run(tmp_path)
    proc = subprocess.run(
        [PY, "-m", "cpqs_bench", "publish", "--run", str(run), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=child_env(HF_TOKEN=CANARY_HF, WANDB_API_KEY=CANARY_WANDB, CPQS_DEBUG="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dry = run / "publish" / "dry-run"
    plan = json.loads((dry / "plan.json").read_text())
    assert set(plan["repos"]) == {"dry-run/exp-random-s0", "dry-run/exp-results"}
    logs = proc.stdout + proc.stderr
    assert logs.strip() and CANARY_HF not in logs and CANARY_WANDB not in logs
    files = _files(tmp_path)
    assert len([p for p in files if p.startswith("runs/exp/publish/")]) >= 6
    assert [p for p, data in files.items() if CANARY_HF.encode() in data or CANARY_WANDB.encode() in data] == []
