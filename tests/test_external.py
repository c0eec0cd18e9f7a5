import gzip
import json
import math

import pytest

from cpqs_bench.data.pool import read_pool
from cpqs_bench.io import read_json
from cpqs_bench.select import kept_ids, select
from cpqs_bench.selectors import registry
from cpqs_bench.selectors.base import ScoringContext
from cpqs_bench.selectors.external import (
    NO_SCORE,
    UNMATCHED,
    ExternalError,
    ExternalSelector,
    arm_name,
    example_key,
)
from cpqs_bench.testing import check_selector, contract_config, contract_examples, tiny_loader

POOL_RECORDS = [
    {"id": "a", "instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"id": "b", "instruction": "Name a colour.", "input": "", "output": "Blue."},
    {"id": "c", "instruction": "Say hi.", "input": "", "output": "Hi!"},
    {"id": "d", "instruction": "Count to three.", "input": "", "output": "1, 2, 3"},
    {"id": "e", "instruction": "Reply with nothing.", "input": "", "output": " "},
]


def _pool(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in POOL_RECORDS))
    return read_pool(str(path), max_rejected_fraction=None).examples


def _write_jsonl_gz(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def _score(examples, tmp_path, **external):
    overrides = {f"selectors.external.{k}": v for k, v in external.items()}
    ctx = ScoringContext(contract_config(**overrides), tmp_path / "work", loader=tiny_loader())
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    return ExternalSelector().score(examples, ctx), read_json(ctx.workdir / "external_join.json")


def test_hash_join_counts_and_excludes_unmatched(tmp_path, capsys):
    examples = _pool(tmp_path)
    assert len(examples) == 4  # the blank-output record is quarantined by the reader
    examples.append(examples[0].__class__("blank", examples[0].prompt, "  "))
    source = _write_jsonl_gz(
        tmp_path / "scored.jsonl.gz",
        [
            # OpenDataArena / MoDS join instruction and input with one newline; the reader uses two: same key
            {"instruction": "Add the numbers.\n2 and 3", "output": "5", "q": {"reward": 0.7}},
            {"instruction": "  Name a   colour.", "input": "", "output": "Blue.\r\n", "q": {"reward": -1.5}},
            {"instruction": "Count to three.", "output": "1, 2, 3", "q": {"reward": None}},
            {"instruction": "Not in the pool.", "output": "x", "q": {"reward": 9.0}},
        ],
    )
    rows, report = _score(examples, tmp_path, source=source, column="q.reward")
    by_id = {r.id: r for r in rows}
    assert [r.id for r in rows] == [ex.id for ex in examples]
    assert by_id["a"].score == 0.7 and by_id["a"].exclude is None
    assert by_id["b"].score == -1.5 and by_id["b"].exclude is None
    assert by_id["c"].exclude == UNMATCHED and math.isnan(by_id["c"].score)
    assert by_id["d"].exclude == NO_SCORE and math.isnan(by_id["d"].score)
    assert by_id["blank"].exclude == "empty_response"
    assert by_id["a"].extra["external_at"].endswith("scored.jsonl.gz:1")
    assert report["matched"] == 2 and report["unmatched"] == 1 and report["no_score"] == 1
    assert report["source_records"] == 4 and report["source_unused"] == 1 and report["arm"] == "external"
    assert by_id["a"].extra["external"] == {"matched": 2, "unmatched": 1, "no_score": 1}
    assert "2/5 pool rows scored" in capsys.readouterr().err
    # unmatched rows are never selected, whatever the budget
    assert set(kept_ids(select([r.to_dict() for r in rows], budget=4))) == {"a", "b"}


def test_id_join_parquet_and_json(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    examples = _pool(tmp_path)
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"uid": ["a", "c", "zzz"], "s": [1.0, 3.0, 2.0]}), path)
    rows, report = _score(examples, tmp_path, source=str(path), column="s", join="uid")
    assert [(r.id, r.score if r.exclude is None else r.exclude) for r in rows] == [
        ("a", 1.0),
        ("b", UNMATCHED),
        ("c", 3.0),
        ("d", UNMATCHED),
    ]
    assert report["unmatched"] == 2 and report["source_unused"] == 1 and report["join"] == "uid"
    jpath = tmp_path / "scores.json"
    jpath.write_text(json.dumps([{"idx": 3, "s": 0.5}, {"idx": "b", "s": 0.25}]))
    numbered = [ex.__class__("3", ex.prompt, ex.response) if ex.id == "a" else ex for ex in examples]
    rows, _ = _score(numbered, tmp_path, source=str(jpath), column="s", join="idx")
    assert {r.id: r.score for r in rows if r.exclude is None} == {"3": 0.5, "b": 0.25}


def test_bad_sources_are_errors_naming_the_place(tmp_path):
    examples = _pool(tmp_path)
    conflict = tmp_path / "conflict.jsonl"
    conflict.write_text(
        json.dumps({"instruction": "Say hi.", "output": "Hi!", "s": 1})
        + "\n"
        + json.dumps({"instruction": "Say  hi.", "output": "Hi!", "s": 2})
        + "\n"
    )
    with pytest.raises(ExternalError, match=r"conflict.jsonl:2: the same content as .*conflict.jsonl:1"):
        _score(examples, tmp_path, source=str(conflict), column="s")
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi!", "score": 1}) + "\n{bad json\n")
    with pytest.raises(ExternalError, match=r"missing.jsonl:1: no score column 's'"):
        _score(examples, tmp_path, source=str(missing), column="s")
    with pytest.raises(ExternalError, match=r"missing.jsonl:2: unreadable"):
        _score(examples, tmp_path, source=str(missing), column="score")
    text = tmp_path / "text.jsonl"
    text.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi!", "s": "high"}) + "\n")
    with pytest.raises(ExternalError, match=r"text.jsonl:1: score column 's' holds 'high'"):
        _score(examples, tmp_path, source=str(text), column="s")
    with pytest.raises(ExternalError, match="needs selectors.external.source"):
        _score(examples, tmp_path)


def test_arm_name_is_never_a_path():
    assert arm_name(None) == "external" and arm_name("oda-deberta") == "external:oda-deberta"
    assert ExternalSelector("oda").name == "external:oda"
    for bad in ("/tmp/x.jsonl", "../x", "a/b", ""):
        with pytest.raises(ExternalError, match="never a path"):
            arm_name(bad)


def test_contract(tmp_path):
    examples = contract_examples()
    rows = [
        {"messages": [*ex.prompt, {"role": "assistant", "content": ex.response}], "s": float(i)}
        for i, ex in enumerate(examples)
        if ex.response.strip() and ex.id != "dup_b"  # dup_a / dup_b share content: one record scores both
    ]
    source = _write_jsonl_gz(tmp_path / "contract.jsonl.gz", rows)
    cfg = contract_config(**{"selectors.external.source": source, "selectors.external.column": "s"})
    report = check_selector(registry.get("external"), config=cfg)
    by_id = {r.id: r for r in report.rows}
    assert by_id["dup_a"].score == by_id["dup_b"].score and example_key(examples[5]) == example_key(examples[6])
    assert all(r.exclude is None for r in report.rows if r.id not in ("empty", "blank"))
