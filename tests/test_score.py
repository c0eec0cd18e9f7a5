"""``cpqs-bench score`` / ``score_pool``: generic over selectors, one row per pool example (no hidden limit),
2-process sharding == 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cpqs_bench import cli, models, score, tiny
from cpqs_bench import features as F
from cpqs_bench.config import load_config
from cpqs_bench.data.example import Example
from cpqs_bench.data.pool import read_pool
from cpqs_bench.io import read_jsonl
from cpqs_bench.selectors.cpqs import pairs as P
from cpqs_bench.selectors.cpqs import train as T
from cpqs_bench.selectors.cpqs.config import CPQSConfig

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model saved as a local model directory, a CPQS checkpoint trained on it, and a small pool file."""
    root = tmp_path_factory.mktemp("score")
    model, tok = tiny.model("chatml", num_layers=2)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    loaded, ltok, info = models.load(str(root / "tiny"), dtype="float32", device="cpu")
    items = []
    for i in range(12):
        prompt = ({"role": "user", "content": f"Question {i} about the sea"},)
        items += P._pair(
            P.prompt_key(prompt),
            Example("g", prompt, "The quick brown fox jumps. " * (1 + i % 3)),
            Example("b", prompt, "Hello"),
        )
    cq = CPQSConfig(num_filters=8, mlp_hidden=16, epochs=1, grad_accum=2, batch_size=2, val_fraction=0.25)
    T.fit_selector(
        loaded,
        ltok,
        {"spec": info.spec, "revision": info.revision},
        P.PairSet("t", items, n_pairs=12),
        cq,
        F.FeatureSpec(max_length=128),
        root / "ckpt",
        options=T.TrainOptions(progress=False, log=lambda _msg: None, cache_root=root / "cache"),
    )
    pool = root / "pool.jsonl"
    rows = [
        {"instruction": f"Write about topic {i}", "input": "", "output": "Hello world. " * (1 + i % 4)}
        for i in range(9)
    ]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = [
        f"model.id={root / 'tiny'}",
        "model.dtype=float32",
        "model.device=cpu",
        "selectors.cpqs.extract_batch_size=2",
    ]
    return root, pool, overrides


def _score(selector, pool, out, *, overrides, **kw):
    """What the CLI does: resolve the config once, read the pool at the edge, one library call."""
    cfg = load_config(None, list(overrides))
    return score.score_pool(cfg, read_pool(str(pool)).examples, out, selector=selector, **kw)


def test_score_cpqs_single_process(setup, tmp_path):
    root, pool, overrides = setup
    summary = _score("cpqs", pool, tmp_path / "s.jsonl", checkpoint=root / "ckpt", overrides=overrides)
    rows = read_jsonl(tmp_path / "s.jsonl")
    assert summary["n"] == 9 and [r["id"] for r in rows] == [r["id"] for r in read_jsonl(tmp_path / "s.jsonl")]
    assert all(0 < r["score"] < 1 and r["n_tokens"] > 0 for r in rows)
    again = _score(
        "cpqs",
        pool,
        tmp_path / "s2.jsonl",
        checkpoint=root / "ckpt",
        overrides=overrides,
        workdir=tmp_path / "s.jsonl.work",
    )  # resumes from the first run's shards
    assert read_jsonl(tmp_path / "s2.jsonl") == rows and again["n"] == 9


def test_score_is_generic_over_registry(setup, tmp_path):
    root, pool, overrides = setup
    _score("longest", pool, tmp_path / "l.jsonl", overrides=overrides)
    rows = read_jsonl(tmp_path / "l.jsonl")
    assert len(rows) == 9 and all(r["score"] == r["n_tokens"] > 0 for r in rows)
    with pytest.raises(KeyError, match="Did you mean"):
        _score("longst", pool, tmp_path / "x.jsonl", overrides=overrides)


def test_row_without_score_needs_reason():
    from cpqs_bench.selectors.base import ScoreRow

    assert score.row_dict(ScoreRow("a", float("nan"), 0, exclude="too_long"))["score"] is None
    with pytest.raises(score.ScoreError):
        score.row_dict(ScoreRow("a", float("nan"), 0))


def test_two_processes_merge_equals_single_process(setup, tmp_path):
    root, pool, overrides = setup
    single = tmp_path / "one.jsonl"
    _score("cpqs", pool, single, checkpoint=root / "ckpt", overrides=overrides)
    multi = tmp_path / "two.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "CPQS_DATA_MIRROR": os.environ.get("CPQS_DATA_MIRROR", ""),
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "cpqs_bench",
        "score",
        "cpqs",
        "--data",
        str(pool),
        "--selector",
        str(root / "ckpt"),
        "--out",
        str(multi),
        "--config",
        "smoke",
        *overrides,
        f"experiment.output_dir={tmp_path / 'runs'}",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # each rank scored its slice inside the one stage directory the verb ran; rank 0 merged and delivered --out
    (parts_dir,) = (tmp_path / "runs").rglob("scores.jsonl.parts")
    parts = sorted(p.name for p in parts_dir.glob("*.jsonl"))
    assert parts == ["rank000-of002.jsonl", "rank001-of002.jsonl"]
    assert len(read_jsonl(parts_dir / parts[0])) == 5
    one_rows, two_rows = read_jsonl(single), read_jsonl(multi)
    assert [r["id"] for r in two_rows] == [r["id"] for r in one_rows]
    for a, b in zip(one_rows, two_rows):
        assert a["n_tokens"] == b["n_tokens"] and abs(a["score"] - b["score"]) < 1e-6
    assert json.loads((tmp_path / "two.jsonl.summary.json").read_text())["processes"] == 2


def test_cli_score_without_config_writes_every_row_of_a_large_pool(setup, tmp_path, capsys):
    """No --config: no preset limit (the smoke preset's data.pool_limit is 96); every row of a 130-row pool is
    scored, and the counts line says so. An explicit --limit is applied and named as coming from the command line."""
    root, _, _ = setup
    big = tmp_path / "big.jsonl"
    big.write_text(
        "".join(
            json.dumps({"instruction": f"Topic {i}", "input": "", "output": "word " * (1 + i % 7)}) + "\n"
            for i in range(130)
        )
    )
    out = tmp_path / "s.jsonl"
    assert cli.main(["score", "longest", "--data", str(big), "--out", str(out), "--model", str(root / "tiny")]) == 0
    assert len(read_jsonl(out)) == 130
    err = capsys.readouterr().err
    assert "read 130, kept 130, rejected 0" in err and "limited" not in err
    assert (
        cli.main(
            [
                "score",
                "longest",
                "--data",
                str(big),
                "--out",
                str(tmp_path / "l.jsonl"),
                "--limit",
                "100",
                "--model",
                str(root / "tiny"),
            ]
        )
        == 0
    )
    assert len(read_jsonl(tmp_path / "l.jsonl")) == 100
    assert "limited to 100 by data.pool_limit=100 (command line)" in capsys.readouterr().err


def test_cpqs_work_key_includes_the_checkpoint_weights(setup, tmp_path):
    """Retraining into the same checkpoint directory must not reuse the old weights' shards."""
    import shutil

    from cpqs_bench.io import read_json
    from cpqs_bench.selectors.cpqs.checkpoint import load_checkpoint, write_checkpoint

    root, pool, overrides = setup
    ck = tmp_path / "ckpt"
    shutil.copytree(root / "ckpt", ck)
    work = tmp_path / "work"
    first = _score("cpqs", pool, tmp_path / "a.jsonl", checkpoint=ck, overrides=overrides, workdir=work)
    cnn, meta = load_checkpoint(ck)
    with torch.no_grad():
        cnn.fc[3].bias += torch.tensor([-3.0, 3.0])  # new weights, same selector.json
    meta = {k: v for k, v in read_json(ck / "selector.json").items() if k not in ("format", "textcnn")}
    write_checkpoint(ck, cnn, meta)
    _score("cpqs", pool, tmp_path / "b.jsonl", checkpoint=ck, overrides=overrides, workdir=work)
    a, b = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "b.jsonl")
    assert first["n"] == len(b) == 9
    assert all(y["score"] > x["score"] for x, y in zip(a, b))  # rescored with the new weights, not reused
