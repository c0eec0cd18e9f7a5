import gzip
import json

import pytest

from cpqs_bench.data.mirror import lookup, resolve
from cpqs_bench.data.pool import DataError, read_pool
from cpqs_bench.io import read_jsonl


def _good(i, out=None):
    return json.dumps({"instruction": f"Task {i}", "input": "", "output": out or f"Answer {i}"})


@pytest.fixture
def planted(tmp_path):
    """A JSONL file with every kind of bad line the data layer must quarantine, plus good ones."""
    lines = [
        b"\xef\xbb\xbf" + _good(1).encode(),  # 1 BOM on first line: fine
        _good(2).encode() + b"\r",  # 2 CRLF: fine
        b'{"instruction": "x", "output": ',  # 3 malformed JSON
        b'{"instruction": "caf\xe9", "output": "ok"}',  # 4 invalid UTF-8
        json.dumps({"instruction": "no output"}).encode(),  # 5 missing field
        json.dumps({"instruction": "null out", "output": None}).encode(),  # 6 null
        json.dumps({"instruction": "num", "output": 42}).encode(),  # 7 wrong type
        json.dumps({"instruction": "blank", "output": "   "}).encode(),  # 8 whitespace-only response
        json.dumps({"id": "a", "instruction": "q", "output": "r1"}).encode(),  # 9 ok
        json.dumps({"id": "a", "instruction": "q", "output": "r2"}).encode(),  # 10 conflicting duplicate id
        _good(1).encode(),  # 11 exact duplicate of line 1
        b"",  # 12 blank line: not a record
        b"[1, 2]",  # 13 not an object
        _good(3).encode(),  # 14 ok
        b'{"instruction": "trunc", "output": "cut',  # 15 truncated last line (no newline)
    ]
    path = tmp_path / "planted.jsonl"
    path.write_bytes(b"\n".join(lines))
    return path


def test_planted_bad_lines_are_quarantined_with_reason_and_line(planted, tmp_path):
    rej = tmp_path / "rejected.jsonl"
    pool = read_pool(str(planted), max_rejected_fraction=None, rejected_path=rej)
    assert len(pool.examples) + len(pool.rejected) == pool.n_read == 14
    assert [e.response for e in pool.examples] == ["Answer 1", "Answer 2", "r1", "Answer 3"]
    where = {r["location"].rsplit(":", 1)[1]: r["reason"] for r in pool.rejected}
    assert where == {
        "3": "malformed_json",
        "4": "invalid_utf8",
        "5": "missing_field",
        "6": "missing_field",
        "7": "wrong_type",
        "8": "empty_field",
        "10": "duplicate_conflict",
        "11": "duplicate",
        "13": "wrong_type",
        "15": "truncated_json",
    }
    written = read_jsonl(rej)
    assert len(written) == len(pool.rejected) and all(r["detail"] for r in written)
    assert str(planted) in written[0]["location"]


def test_rejected_fraction_limit_fails_clearly(planted):
    with pytest.raises(DataError, match=r"10 of 14 records rejected .*max_rejected_fraction.*planted.jsonl:3"):
        read_pool(str(planted), max_rejected_fraction=0.5)


def test_empty_file_and_all_bad(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="no records"):
        read_pool(str(empty))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n{also bad\n")
    with pytest.raises(DataError, match="2 of 2 records rejected"):
        read_pool(str(bad))


def test_formats_json_jsonl_gz_parquet(tmp_path):
    rows = [{"instruction": f"I{i}", "input": "ctx" if i == 0 else "", "output": f"O{i}"} for i in range(3)]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    results = [read_pool(str(tmp_path / n)) for n in ("a.json", "a.jsonl", "a.jsonl.gz", "a.parquet")]
    for pool in results:
        assert [e.response for e in pool.examples] == ["O0", "O1", "O2"]
        assert pool.examples[0].prompt[0]["content"] == "I0\n\nctx"
    assert len({tuple(e.id for e in p.examples) for p in results}) == 1  # content-hash ids are format independent


def test_schema_detection_and_field_map(tmp_path):
    f = tmp_path / "mixed.jsonl"
    rows = {
        "sharegpt": {
            "id": "s1",
            "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}],
        },
        "messages": {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
            ]
        },
        "gsm8k": {"question": "1+1?", "answer": "2\n#### 2"},
        "code": {"prompt": "def f():", "completion": "    return 1"},
    }
    for schema, rec in rows.items():
        f.write_text(json.dumps(rec) + "\n")
        pool = read_pool(str(f))
        assert pool.schema == schema
    f.write_text(json.dumps(rows["messages"]) + "\n")
    ex = read_pool(str(f)).examples[0]
    assert ex.prompt == ({"role": "system", "content": "be brief"}, {"role": "user", "content": "q"})
    assert ex.response == "a" and ex.instruction == "q"
    f.write_text(
        json.dumps({"instruction": "q", "input": "", "output_gpt4": "good", "output_davinci003": "meh"}) + "\n"
    )
    assert read_pool(str(f), schema="alpaca", field_map={"output": "output_gpt4"}).examples[0].response == "good"
    f.write_text(json.dumps({"conversations": [{"from": "gpt", "value": "no question"}]}) + "\n")
    pool = read_pool(str(f), max_rejected_fraction=None)
    assert pool.rejected[0]["reason"] == "bad_turns"


def test_undetectable_schema_names_file_and_line(tmp_path):
    f = tmp_path / "odd.jsonl"
    f.write_text(json.dumps({"foo": 1}) + "\n")
    with pytest.raises(DataError, match=r"odd.jsonl:1: cannot detect the record schema"):
        read_pool(str(f))


def test_named_datasets_resolve_to_mirror(mirror):
    source, schema = resolve("gsm8k", mirror)
    assert source.endswith("gsm8k/test.jsonl") and schema == "gsm8k"
    with pytest.raises(KeyError, match="Did you mean: gsm8k"):
        lookup("gsm8kk")
    pool = read_pool("alpaca_gpt4", mirror=mirror)
    assert pool.n_read == 999 and len(pool.examples) + len(pool.rejected) == 999
    assert pool.sha256 == "6541fa21f1c5850a4247788cf3848b6360f72e597923cff961e496b6d12368f6"


def test_named_dataset_goes_to_hub_without_mirror(tmp_path):
    source, _ = resolve("gsm8k", tmp_path)  # an empty mirror: fall back to the Hub spec
    assert source == "hf:openai/gsm8k:main#test"


def test_limit_and_offset(mirror):
    a = read_pool("alpaca_gpt4", mirror=mirror, limit=10)
    b = read_pool("alpaca_gpt4", mirror=mirror, limit=5, offset=5)
    assert len(a.examples) == 10 and [e.id for e in b.examples] == [e.id for e in a.examples[5:]]
