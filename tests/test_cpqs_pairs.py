"""Contrastive pairs: paired file, two-file join, multi-model (AlpacaEval), generated; instruction-disjoint split."""

from __future__ import annotations

import json

import pytest

from cpqs_bench.data.example import Example
from cpqs_bench.selectors.cpqs import pairs as P


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _paired_rows():
    return [
        {
            "instruction": "Name a fruit.",
            "input": "",
            "output_gpt4": "An apple, a sweet red fruit.",
            "output_davinci003": "Apple",
            "src": "good",
        },
        {"instruction": "Add numbers.", "input": "2 and 3", "output_gpt4": "5", "output_davinci003": " 5 "},
        {"instruction": "Say hi.", "input": "", "output_gpt4": "Hello there!", "output_davinci003": "hi", "src": "bad"},
        {"instruction": "Broken row", "input": "", "output_gpt4": None, "output_davinci003": "x"},
        {"instruction": "Name a fruit.", "input": "", "output_gpt4": "Pear", "output_davinci003": "Plum"},
    ]


def test_paired_file_labels_groups_and_skips(tmp_path):
    f = _write(tmp_path / "pairs.jsonl", _paired_rows())
    ps = P.from_paired_file(str(f), exclude={"src": ["bad"]})
    assert ps.n_pairs == 1 and len(ps.items) == 2
    assert dict(ps.skipped) == {"identical": 1, "excluded": 1, "missing_field": 1, "duplicate_prompt": 1}
    pos, neg = ps.items
    assert (pos.label, neg.label) == (1, 0) and pos.group == neg.group
    assert pos.example.response.startswith("An apple") and neg.example.response == "Apple"
    assert pos.example.id != neg.example.id
    keep_identical = P.from_paired_file(str(f), drop_identical=False)
    assert keep_identical.n_pairs == 3


def test_two_files_join_on_instruction_and_input(tmp_path):
    strong = _write(
        tmp_path / "s.jsonl",
        [
            {"instruction": "A", "input": "x", "output": "long good answer"},
            {"instruction": "B", "input": "", "output": "good B"},
            {"instruction": "C", "input": "", "output": "only strong"},
        ],
    )
    weak = _write(
        tmp_path / "w.jsonl",
        [
            {"instruction": "B", "input": "", "output": "bad B"},
            {"instruction": "A", "input": "y", "output": "different input"},
            {"instruction": "A", "input": "x", "output": "bad A"},
        ],
    )
    ps = P.from_two_files(str(strong), str(weak))
    got = {(x.example.instruction, x.label): x.example.response for x in ps.items}
    assert got == {("A\n\nx", 1): "long good answer", ("A\n\nx", 0): "bad A", ("B", 1): "good B", ("B", 0): "bad B"}
    assert ps.skipped["no_negative"] == 1 and ps.skipped["no_positive"] == 1


def test_multi_model_alpaca_eval(mirror):
    ps = P.from_multi_model(["gpt4"], ["pythia-12b-mix-sft", "alpaca-7b"], n_pairs=50, seed=1, mirror=mirror)
    assert ps.n_pairs == 50 and len(ps.items) == 100
    by_group: dict[str, list] = {}
    for x in ps.items:
        by_group.setdefault(x.group, []).append(x)
    for items in by_group.values():  # every labelled example of a group has the same instruction
        assert len({x.example.instruction for x in items}) == 1
    assert {x.example.id.rsplit(":", 1)[1] for x in ps.items if x.label == 1} == {"gpt4"}
    assert P.from_multi_model(["gpt4"], ["alpaca-7b"], n_pairs=50, seed=1, mirror=mirror).n_pairs == 50
    with pytest.raises(P.PairsError, match="both positive and negative"):
        P.from_multi_model(["gpt4"], ["gpt4"], mirror=mirror)


def test_generated_negatives_join_on_id(tmp_path):
    pool = [Example(f"p{i}", ({"role": "user", "content": f"q{i}"},), f"strong {i}") for i in range(4)]
    neg = _write(
        tmp_path / "neg.jsonl",
        [{"id": "p0", "response": "weak 0"}, {"id": "p1", "response": ""}, {"id": "p2", "response": "strong 2"}],
    )
    ps = P.from_generated(pool, neg)
    assert ps.n_pairs == 1 and {x.example.response for x in ps.items} == {"strong 0", "weak 0"}
    assert dict(ps.skipped) == {"empty_negative": 1, "identical": 1, "no_negative": 1}


def test_real_pairs_file_and_split_is_instruction_disjoint(mirror):
    ps = P.from_paired_file(
        "alpaca_gpt4_vs_davinci003", exclude={"gpt4_from": ["nuggets_alpaca_gpt4_bad"]}, mirror=mirror
    )
    assert ps.n_pairs > 1000 and ps.skipped["excluded"] == 8831
    train, val = P.split_by_group(ps.items, 0.1, seed=0)
    assert not {x.group for x in train} & {x.group for x in val}
    assert len(train) + len(val) == len(ps.items)
    assert abs(len({x.group for x in val}) - 0.1 * ps.n_pairs) <= 1
    train2, val2 = P.split_by_group(list(reversed(ps.items)), 0.1, seed=0)  # order-independent
    assert {x.group for x in val2} == {x.group for x in val}
    _, val3 = P.split_by_group(ps.items, 0.1, seed=1)
    assert {x.group for x in val3} != {x.group for x in val}


def test_subsample_is_seeded_whole_pairs(tmp_path):
    rows = [
        {"instruction": f"I{i}", "input": "", "output_gpt4": f"good {i}", "output_davinci003": f"bad {i}"}
        for i in range(20)
    ]
    f = _write(tmp_path / "p.jsonl", rows)
    a = P.from_paired_file(str(f), n_pairs=5, seed=3)
    b = P.from_paired_file(str(f), n_pairs=5, seed=3)
    assert [x.example.id for x in a.items] == [x.example.id for x in b.items]
    assert a.n_pairs == 5 and sorted(x.label for x in a.items) == [0] * 5 + [1] * 5
    assert P.parse_exclude(["a=1", "a=2", "b=x"]) == {"a": ["1", "2"], "b": ["x"]}
    with pytest.raises(P.PairsError):
        P.parse_exclude(["nokey"])
