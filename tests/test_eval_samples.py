"""Scoring externally produced samples files: formats, malformed lines, unknown and missing ids."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("CPQS_DATA_MIRROR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cpqs_bench.data.mirror import resolve_path  # noqa: E402
from cpqs_bench.evaluate.code_exec import load_problems  # noqa: E402
from cpqs_bench.evaluate.samples import eval_samples  # noqa: E402
from cpqs_bench.evaluate.sandbox import Sandbox, SandboxLimits  # noqa: E402


@pytest.fixture(scope="module")
def box() -> Sandbox:
    return Sandbox(SandboxLimits(timeout_s=30.0), allow_weaker=True)


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def problems():
    return load_problems(False)


def test_humaneval_solutions_and_completions_with_unknown_and_missing(tmp_path, box, problems):
    p0, p1 = problems["HumanEval/0"], problems["HumanEval/1"]
    rows = [
        {"task_id": "HumanEval/0", "solution": p0.prompt + p0.canonical_solution},
        {"task_id": "HumanEval/1", "completion": p1.canonical_solution},
        {"task_id": "HumanEval/1", "completion": "    return []\n"},
        {"task_id": "HumanEval/9999", "completion": "    return 1\n"},
    ]
    out = eval_samples("humaneval", _write(tmp_path / "s.jsonl", rows), sandbox=box)
    assert out["metric"] == "pass@1"
    # per-task pass@1: task0 = 1, task1 = 1/2, 162 missing tasks = 0
    assert out["pass@1"] == pytest.approx((1 + 0.5) / 164)
    assert out["n_unknown"] == 1 and out["unknown_ids"] == ["HumanEval/9999 (line 4)"]
    assert out["n_missing"] == 162 and "HumanEval/2" in out["missing_ids"]
    assert "missing" in out["missing_policy"] and out["n_rows"] == 4 and out["isolation"] == box.isolation
    scored = [i for i in out["items"] if i.get("status") != "missing"]
    assert [(i["doc_id"], i["correct"]) for i in scored] == [
        ("HumanEval/0", True),
        ("HumanEval/1", True),
        ("HumanEval/1", False),
    ]
    assert scored[1]["extracted"].startswith(p1.prompt)  # completion was appended to the prompt
    assert {"task", "doc_id", "prediction", "extracted", "correct"} <= set(scored[0])
    missing_items = [i for i in out["items"] if i.get("status") == "missing"]
    assert len(missing_items) == 162 and not any(i["correct"] for i in missing_items)


def test_humaneval_plus_gzip_input(tmp_path, box):
    plus = load_problems(True)
    p = plus["HumanEval/0"]
    path = tmp_path / "s.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"task_id": p.task_id, "completion": p.canonical_solution}) + "\n")
    out = eval_samples("humaneval+", path, sandbox=box, cache_dir=tmp_path / "cache")
    assert out["task"] == "humaneval_plus" and out["pass@1"] == pytest.approx(1 / 164) and out["n_missing"] == 163


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("{not json", r"s\.jsonl:2: invalid JSON"),
        ("[1, 2]", r"s\.jsonl:2: expected a JSON object"),
        ('{"task_id": "HumanEval/0"}', r"s\.jsonl:2: .*'solution' or 'completion'"),
        ('{"task_id": 5, "completion": "x"}', r"s\.jsonl:2: field 'task_id'"),
    ],
)
def test_malformed_code_lines_name_file_and_line(tmp_path, box, line, match):
    path = _write(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "    return True\n"}, line])
    with pytest.raises(ValueError, match=match):
        eval_samples("humaneval", path, sandbox=box)


def _gsm8k_golds() -> list[str]:
    lines = resolve_path("gsm8k").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["answer"] for line in lines if line.strip()]


def test_gsm8k_scoring_unknown_and_missing(tmp_path):
    golds = _gsm8k_golds()
    gold0 = golds[0].rsplit("####", 1)[1].strip()
    rows = [
        {"idx": 0, "response": f"Reasoning...\n#### {gold0}"},
        {"idx": 1, "response": "I am not sure, maybe \\boxed{123456789}"},
        {"idx": 2, "response": "no idea"},
        {"idx": 5000, "response": "#### 1"},
    ]
    out = eval_samples("gsm8k", _write(tmp_path / "g.jsonl", rows))
    assert out["metric"] == "accuracy" and out["accuracy"] == pytest.approx(1 / len(golds))
    assert out["n_unknown"] == 1 and out["unknown_ids"] == ["5000 (line 4)"]
    assert out["n_missing"] == len(golds) - 3
    by_id = {i["doc_id"]: i for i in out["items"] if i.get("status") != "missing"}
    assert by_id[0]["correct"] and by_id[0]["extracted"] == gold0.replace(",", "")
    assert by_id[1]["extracted"] == "123456789" and not by_id[1]["correct"]
    assert by_id[2]["extracted"] is None and not by_id[2]["correct"]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"idx": "0", "response": "1"}', r"g\.jsonl:1: field 'idx'"),
        ('{"idx": 0}', r"g\.jsonl:1: field 'response'"),
        ("nope", r"g\.jsonl:1: invalid JSON"),
    ],
)
def test_malformed_gsm8k_lines_name_file_and_line(tmp_path, line, match):
    with pytest.raises(ValueError, match=match):
        eval_samples("gsm8k", _write(tmp_path / "g.jsonl", [line]))


def test_unknown_task_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        eval_samples("mbpp", tmp_path / "x.jsonl")
    with pytest.raises(FileNotFoundError):
        eval_samples("gsm8k", tmp_path / "absent.jsonl")


def test_cli_writes_summary_and_items(tmp_path):
    from cpqs_bench.cli import main

    golds = _gsm8k_golds()
    gold0 = golds[0].rsplit("####", 1)[1].strip()
    samples = _write(tmp_path / "g.jsonl", [{"idx": 0, "response": f"#### {gold0}"}])
    assert main(["eval-samples", "gsm8k", str(samples), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["accuracy"] == pytest.approx(1 / len(golds)) and "items" not in summary
    items = (tmp_path / "out" / "items.jsonl").read_text().splitlines()
    assert len(items) == len(golds) and json.loads(items[0])["correct"] is True
