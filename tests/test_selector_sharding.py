"""``less``, ``deita`` and multi-task ``rds`` under two processes (``torch.distributed.run``, as
tests/test_score.py shards cpqs): each process scores its slice, the main process merges, and the merged scores equal
one process's — for DEITA's global score-first filter and RDS+'s round robin too (selectors/distributed.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cpqs_bench import cli, models, tiny
from cpqs_bench.config import load_config
from cpqs_bench.data.pool import read_pool
from cpqs_bench.io import read_jsonl

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model folder (target, and DEITA's stand-in scorers), a 9-row pool, 3 queries in two files (two tasks)."""
    root = tmp_path_factory.mktemp("shard")
    model, tok = tiny.model("chatml", num_layers=2, hidden_size=32)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    pool = root / "pool.jsonl"
    pool.write_text(
        "".join(
            json.dumps({"instruction": f"Write about topic {i}", "input": "", "output": "Hello world. " * (1 + i % 4)})
            + "\n"
            for i in range(9)
        )
    )
    (root / "math.jsonl").write_text(json.dumps({"instruction": "What is 3 times 4?", "output": "12"}) + "\n")
    (root / "poem.jsonl").write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in (
                {"instruction": "Write a poem about rain.", "output": "Rain falls."},
                {"instruction": "Name a colour of the sky.", "output": "Blue."},
            )
        )
    )
    queries = f"{root / 'math.jsonl'},{root / 'poem.jsonl'}"  # two sources: two query tasks
    base = [f"model.id={root / 'tiny'}", "model.dtype=float32", "model.device=cpu", "finetune.precision=fp32"]
    return root, pool, queries, base


def _overrides(setup, selector: str) -> tuple[list[str], list[str]]:
    """(key=value overrides, extra verb arguments) for one selector."""
    root, _, queries, base = setup
    if selector == "deita":
        scorer = str(root / "tiny")
        return [
            *base,
            f"selectors.deita.complexity_model={scorer}",
            f"selectors.deita.quality_model={scorer}",
            "selectors.deita.batch_size=2",
            "selectors.deita.max_length=128",
            "selectors.deita.diversity_threshold=0.999",  # random tiny embeddings are close: keep some, drop some
        ], []
    if selector == "rds":
        return [
            *base,
            f"selectors.rds.queries={queries}",  # two tasks: the round robin is a pick order over the whole pool
            "selectors.rds.batch_size=2",
        ], []
    warm = root / "warm"
    overrides = [
        *base,
        f"selectors.less.queries={queries}",
        "selectors.less.lora_r=4",
        "selectors.less.lora_alpha=16",
        "selectors.less.lr=1e-3",
        "selectors.less.warmup_fraction=0.5",
        "selectors.less.warmup_epochs=2",
        "selectors.less.projection_dim=64",
        "selectors.less.max_length=96",
        "finetune.micro_batch_size=4",
    ]
    if not (warm / "warmup.json").is_file():
        from cpqs_bench.finetune.less_warmup import warmup

        os.environ.setdefault("WANDB_MODE", "disabled")
        cfg = load_config(None, overrides)

        def loader(spec, revision, dtype):
            return models.load(spec, revision, dtype="float32", device="cpu")

        warmup(cfg, read_pool(str(setup[1])).examples, warm, seed=0, loader=loader)
    return overrides, ["--selector", str(warm)]


@pytest.mark.parametrize("selector, port", [("deita", 29541), ("less", 29542), ("rds", 29543)])
def test_two_processes_merge_equals_one_process(setup, tmp_path, selector, port):
    _, pool, _, _ = setup
    overrides, extra = _overrides(setup, selector)
    single = tmp_path / "one.jsonl"
    common = ["score", selector, "--data", str(pool), *extra]
    one_dir = f"experiment.output_dir={tmp_path / 'runs1'}"
    assert cli.main([*common, "--out", str(single), *overrides, one_dir]) == 0
    multi = tmp_path / "two.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        "-m",
        "cpqs_bench",
        *common,
        "--out",
        str(multi),
        *overrides,
        f"experiment.output_dir={tmp_path / 'runs2'}",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (parts_dir,) = (tmp_path / "runs2").rglob("scores.jsonl.parts")  # each rank scored its own slice
    parts = sorted(p.name for p in parts_dir.glob("*.jsonl"))
    assert parts == ["rank000-of002.jsonl", "rank001-of002.jsonl"]
    assert [len(read_jsonl(parts_dir / p)) for p in parts] == [5, 4]
    one_rows, two_rows = read_jsonl(single), read_jsonl(multi)
    assert [r["id"] for r in two_rows] == [r["id"] for r in one_rows]
    scores = [r["score"] for r in one_rows if r["score"] is not None]
    assert len(set(scores)) > 1, one_rows  # a non-degenerate ranking, so that the comparison means something
    for a, b in zip(one_rows, two_rows):
        assert a.get("exclude") == b.get("exclude") and a["n_tokens"] == b["n_tokens"]
        assert (a["score"] is None) == (b["score"] is None)
        if a["score"] is not None:
            assert abs(a["score"] - b["score"]) < 1e-5, (a, b)
    if selector == "deita":  # the filter ran over the whole pool in both: the same examples kept
        assert [r["deita_kept_by_filter"] for r in one_rows] == [r["deita_kept_by_filter"] for r in two_rows]
        assert {r["deita_kept_by_filter"] for r in one_rows} == {True, False}
    if selector == "rds":  # a pick order over both slices: rank 1's rows interleave with rank 0's
        assert sorted(r["rr_pick"] for r in two_rows) == list(range(9))
    assert json.loads((tmp_path / "two.jsonl.summary.json").read_text())["processes"] == 2
