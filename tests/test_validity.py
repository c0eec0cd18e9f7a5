"""Selector validity tracks (issue #29): defect kinds, metrics against hand-computed values, the length-matched rule,
a length-scoring selector on a synthetic fixture, overlap exclusion, the outcome link and the end-to-end output."""

from __future__ import annotations

import json
import math
from typing import Sequence

import pytest
import torch

from cpqs_bench.data.example import Example
from cpqs_bench.selectors.base import Needs, ScoreRow, ScoringContext
from cpqs_bench.selectors.cpqs.checkpoint import write_training_instructions
from cpqs_bench.selectors.cpqs.pairs import overlap_key
from cpqs_bench.validity import defects, metrics, tracks
from cpqs_bench.validity.run import (
    pair_subsets,
    pairs_rows,
    planted_rows,
    predicts_outcome,
    selector_names,
    validate,
)

torch.set_num_threads(1)

NINF = -math.inf


def _ex(i: str, instruction: str, response: str) -> Example:
    return Example(i, ({"role": "user", "content": instruction},), response)


LONG = (
    "Photosynthesis turns light into chemical energy. Plants take in carbon dioxide through their leaves. "
    "Water comes up from the roots. Chlorophyll absorbs mostly red and blue light! The products are glucose "
    "and oxygen. Oxygen leaves through the stomata. Glucose feeds the plant and builds cellulose?"
)
GSM = "She read 12 x 2 = <<12*2=24>>24 pages.\nIn total 12 + 24 = <<12+24=36>>36 pages.\n#### 36"
CODE = "```python\ndef count(xs, t):\n    n = 0\n    for i in range(len(xs)):\n        if xs[i] == t:\n" + (
    "            n = n + 1\n    return n\n```\nThis counts occurrences."
)


# ------------------------------------------------------------------------------------------------ defect kinds
def test_each_kind_changes_the_text_as_documented_and_is_deterministic():
    src = _ex("a", "Explain photosynthesis.", LONG)
    donor = _ex("b", "Name a prime number.", "Seven is a prime number.")
    same_ins = _ex("c", "  explain PHOTOSYNTHESIS. ", "Not a donor: same instruction.")
    donors = [src, donor, same_ins]
    out = {k: defects.plant(defects.get(k), src, 0, donors) for k in ("irrelevant", "truncated", "shuffled")}
    out |= {k: defects.plant(defects.get(k), src, 0, donors) for k in ("generic", "padded")}
    assert out["irrelevant"] == donor.response  # the only donor with another instruction
    words = LONG.split(" ")
    cut = out["truncated"].split(" ")
    assert cut == words[: len(cut)] and 0.2 * len(words) - 1 <= len(cut) <= 0.5 * len(words)
    assert out["shuffled"] != LONG and sorted(defects.sentences(out["shuffled"])) == sorted(defects.sentences(LONG))
    assert out["generic"] in defects.GENERIC
    copies = out["padded"].split("\n\n")
    assert len(copies) in (2, 3) and set(copies) == {LONG}
    math_src = _ex("m", "How many pages?", GSM)
    wrong = defects.plant(defects.get("math_wrong_final"), math_src, 0, [])
    assert wrong.rsplit("####", 1)[0] == GSM.rsplit("####", 1)[0]
    assert defects.final_number(wrong) not in (None, "36")
    code_src = _ex("k", "Count occurrences.", CODE)
    bug = defects.plant(defects.get("code_bug"), code_src, 0, [])
    assert bug != CODE and len(bug.splitlines()) == len(CODE.splitlines())
    changed = [(a, b) for a, b in zip(CODE.splitlines(), bug.splitlines()) if a != b]
    assert len(changed) == 1 and "This counts occurrences." in bug
    # deterministic per seed; another seed gives another variant for the random kinds
    for name in ("truncated", "shuffled", "padded", "math_wrong_final", "code_bug", "generic", "irrelevant"):
        kind = defects.get(name)
        row = {"math_wrong_final": math_src, "code_bug": code_src}.get(name, src)
        assert defects.plant(kind, row, 3, donors) == defects.plant(kind, row, 3, donors)
    variants = {defects.plant(defects.get("truncated"), src, s, donors) for s in range(8)}
    assert len(variants) > 1


def test_kinds_that_do_not_apply_return_none():
    short = _ex("s", "Say hi.", "Hi.")
    assert defects.plant(defects.get("truncated"), short, 0, []) is None  # < 20 words
    assert defects.plant(defects.get("shuffled"), short, 0, []) is None  # < 3 sentences
    assert defects.plant(defects.get("math_wrong_final"), short, 0, []) is None  # no #### N
    assert defects.plant(defects.get("code_bug"), _ex("c", "x", "print(x)"), 0, []) is None  # no bug site
    assert defects.plant(defects.get("irrelevant"), short, 0, [short]) is None  # no other instruction


def test_kind_registry_accepts_a_plugin_and_rejects_unknown_names():
    kind = defects.DefectKind("upper_test", "general", lambda ex, rng, d: ex.response.upper(), "shouting")
    defects.register(kind)
    try:
        assert defects.get("upper_test") is kind
        assert defects.plant(kind, _ex("a", "x", "quiet"), 0, []) == "QUIET"
        with pytest.raises(defects.DefectError, match="already registered"):
            defects.register(defects.DefectKind("upper_test", "general", lambda *a: "x"))
    finally:
        defects.KINDS.pop("upper_test")
    with pytest.raises(defects.DefectError, match="unknown defect kind"):
        defects.get("no_such_kind")
    with pytest.raises(defects.DefectError, match="domain"):
        defects.register(defects.DefectKind("x", "poetry", lambda *a: "x"))


# ------------------------------------------------------------------------------------------------ metrics
def test_paired_auc_hand_computed_with_ties_and_exclusions():
    # clean above, tie, below, excluded variant (lowest), both excluded (tie)
    pairs = [(3.0, 1.0), (2.0, 2.0), (1.0, 5.0), (0.1, NINF), (NINF, NINF)]
    assert metrics.paired_auc(pairs) == pytest.approx((1 + 0.5 + 0 + 1 + 0.5) / 5)


def test_unpaired_auc_hand_computed_with_ties_and_exclusions():
    clean = [3.0, 1.0, NINF]
    planted = [2.0, 1.0]
    # pairs: (3,2)=1 (3,1)=1 (1,2)=0 (1,1)=.5 (-inf,2)=0 (-inf,1)=0 -> 2.5/6
    assert metrics.unpaired_auc(clean, planted) == pytest.approx(2.5 / 6)
    assert metrics.unpaired_auc([NINF], [NINF, 0.0]) == pytest.approx(0.25)
    assert math.isnan(metrics.unpaired_auc([], [1.0]))


def test_pairwise_accuracy_hand_computed_and_ci_brackets_it():
    import numpy as np

    pairs = [(2.0, 1.0), (1.0, 1.0), (0.0, 1.0), (5.0, NINF)]
    acc = metrics.pairwise_accuracy(pairs, 500, np.random.default_rng(0))
    assert acc["n"] == 4 and acc["accuracy"] == pytest.approx(2.5 / 4)
    lo, hi = acc["ci"]
    assert 0 <= lo <= acc["accuracy"] <= hi <= 1 and lo < hi
    ci = metrics.unpaired_ci([3.0, 2.0, 1.0], [0.0, 1.0], 300, np.random.default_rng(1))
    assert 0 <= ci[0] <= metrics.unpaired_auc([3.0, 2.0, 1.0], [0.0, 1.0]) <= ci[1] <= 1


def test_length_matched_rule_is_exact():
    band = 0.25
    assert metrics.length_matched(100, 125, band) and metrics.length_matched(125, 100, band)
    assert not metrics.length_matched(100, 126, band) and not metrics.length_matched(126, 100, band)
    assert metrics.length_matched(4, 5, band) and not metrics.length_matched(4, 6, band)
    fixture = tracks.PairsFixture([], [("s1", "w1"), ("s2", "w2"), ("s3", "w3"), ("s4", "w4")])
    lengths = {"s1": 100, "w1": 125, "s2": 100, "w2": 126, "s3": 80, "w3": 64, "s4": 10, "w4": 10}
    sub = pair_subsets(fixture, lengths, band)
    assert sub["length_matched"] == [("s1", "w1"), ("s3", "w3"), ("s4", "w4")]  # 80/64 = 1.25 exactly
    assert sub["strong_shorter"] == [("s1", "w1"), ("s2", "w2")]  # equal lengths are not "shorter"
    rows = pairs_rows("x", {i: {"id": i, "score": float(n)} for i, n in lengths.items()}, sub, n_boot=50, seed=0)
    by = {r["subset"]: r for r in rows}
    assert by["overall"]["accuracy"] == pytest.approx((0 + 0 + 1 + 0.5) / 4)
    assert by["strong_shorter"]["accuracy"] == 0.0 and by["length_matched"]["n"] == 3


# ------------------------------------------------------------------------------------------------ fixtures
SENT = [
    "The river bends around the old mill.",
    "Farmers bring grain there every autumn.",
    "The wheel turns slowly in the current.",
    "Flour is packed into cloth sacks.",
    "Children watch from the wooden bridge.",
    "At dusk the miller locks the door.",
]


def _general_pool(n: int) -> list[Example]:
    rows = []
    for i in range(n):
        body = " ".join(SENT[(i + j) % len(SENT)] for j in range(4 + i % 3))
        rows.append(_ex(f"g{i}", f"Describe scene number {i}.", body))
    return rows


def _fixture(n_clean: int = 16, n_per_kind: int = 8, kinds: Sequence[str] = ("truncated", "padded", "generic")):
    pools = {
        "general": _general_pool(n_clean),
        "math": [_ex(f"m{i}", f"Pages {i}?", GSM.replace("36", str(36 + i))) for i in range(6)],
        "code": [_ex(f"c{i}", f"Count task {i}.", CODE) for i in range(6)],
    }
    return tracks.build_planted(pools, defects.resolve(kinds), n_clean=n_clean, n_per_kind=n_per_kind, seed=0)


def test_planted_fixture_ids_sources_and_determinism():
    fx = _fixture(kinds=("truncated", "math_wrong_final", "code_bug"))
    again = _fixture(kinds=("truncated", "math_wrong_final", "code_bug"))
    assert [e.to_dict() for e in fx.examples] == [e.to_dict() for e in again.examples]
    clean = {e.id: e for e in fx.clean}
    assert {e.metadata["domain"] for e in fx.clean} == {"general", "math", "code"}
    for v in fx.planted:
        src = clean[v.metadata["source"]]
        assert v.prompt == src.prompt and v.response != src.response
        assert v.metadata["domain"] == src.metadata["domain"] == defects.get(v.metadata["kind"]).domain
    assert sum(v.metadata["kind"] == "truncated" for v in fx.planted) == 8
    assert sum(v.metadata["kind"] == "math_wrong_final" for v in fx.planted) == 6  # 6 math rows: short by 2
    assert fx.skipped == {"math_wrong_final": 2, "code_bug": 2}


def _length_rows(examples: Sequence[Example]) -> dict[str, dict]:
    return {e.id: {"id": e.id, "score": float(len(e.response.split())), "n_tokens": 0} for e in examples}


def test_length_scoring_selector_solves_cutoff_and_inverts_padding():
    fx = _fixture(n_clean=30, n_per_kind=20, kinds=("truncated", "padded"))
    rows = {r["kind"]: r for r in planted_rows("len", _length_rows(fx.examples), fx, n_boot=200, seed=0)}
    assert rows["truncated"]["paired_auc"] == pytest.approx(1.0)
    assert rows["truncated"]["unpaired_auc"] > 0.9
    assert rows["padded"]["paired_auc"] == pytest.approx(0.0) and rows["padded"]["unpaired_auc"] < 0.5
    assert rows["overall"]["n"] == 40 and rows["truncated"]["excluded"] == 0
    lo, hi = rows["padded"]["unpaired_ci"]
    assert lo <= rows["padded"]["unpaired_auc"] <= hi


def test_an_excluded_row_counts_as_the_lowest_score_and_is_counted():
    fx = _fixture(n_clean=10, n_per_kind=4, kinds=("padded",))
    rows = _length_rows(fx.examples)
    for v in fx.planted:  # the selector excludes every padded variant: clean wins every pair
        rows[v.id] = {"id": v.id, "score": None, "exclude": "ifd>=1", "n_tokens": 0}
    r = {x["kind"]: x for x in planted_rows("s", rows, fx, n_boot=50, seed=0)}["padded"]
    assert r["paired_auc"] == 1.0 and r["unpaired_auc"] == 1.0 and r["excluded"] == 4


def test_rows_overlapping_the_cnn_training_instructions_are_excluded_and_counted(tmp_path):
    fx = _fixture(n_clean=12, n_per_kind=6, kinds=("padded", "generic"))
    pairs = tracks.PairsFixture(
        [_ex("pairs/strong/0", "Describe scene number 3.", "a"), _ex("pairs/weak/0", "Describe scene number 3.", "b")]
        + [_ex("pairs/strong/1", "Other.", "c"), _ex("pairs/weak/1", "Other.", "d")],
        [("pairs/strong/0", "pairs/weak/0"), ("pairs/strong/1", "pairs/weak/1")],
    )
    hit = next(e for e in fx.clean if e.instruction == "Describe scene number 3.")
    n_variants = sum(v.metadata["source"] == hit.id for v in fx.planted)
    write_training_instructions(tmp_path, [overlap_key(hit), "unrelated instruction"])
    planted, kept_pairs, counts = tracks.drop_overlap(fx, pairs, tracks.training_keys(tmp_path))
    assert counts["planted"]["clean"] == 1 and sum(counts["planted"]["by_kind"].values()) == n_variants
    assert counts["pairs"] == 1 and kept_pairs.pairs == [("pairs/strong/1", "pairs/weak/1")]
    assert hit.id not in {e.id for e in planted.clean}
    assert all(v.metadata["source"] != hit.id for v in planted.planted)
    with pytest.raises(tracks.FixtureError, match="training_instructions.json"):
        tracks.training_keys(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------ end to end
class WordCount:
    """A checkpoint selector for the test: score = number of words (reads nothing from the checkpoint)."""

    name = "wordcount_ckpt"
    needs = Needs.CHECKPOINT

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        assert ctx.checkpoint is not None
        return [
            ScoreRow(e.id, float(len(e.response.split())), 0, None if e.response.strip() else "empty_response")
            for e in examples
        ]


def test_validate_end_to_end_on_a_tiny_model(tmp_path):
    from cpqs_bench.config import replace
    from cpqs_bench.testing import contract_config, tiny_loader

    cfg = replace(
        contract_config(),
        **{"validate.n_boot": 100, "selectors.plugins": {"wordcount_ckpt": "tests.test_validity:WordCount"}},
    )
    fx = _fixture(n_clean=10, n_per_kind=5, kinds=("truncated", "padded"))
    hit = fx.clean[0]
    ckpt = tmp_path / "ckpt"
    write_training_instructions(ckpt, [overlap_key(hit)])
    strong = [_ex(f"s{i}", f"Q{i}?", " ".join(SENT[: 2 + i % 4])) for i in range(6)]
    weak = [_ex(f"w{i}", f"Q{i}?", SENT[i % len(SENT)]) for i in range(6)]
    ex, pr, _ = tracks.join_pairs(strong, weak, n_pairs=5, seed=0)
    pairs = tracks.PairsFixture(ex, pr)
    doc = validate(
        cfg, ["wordcount_ckpt"], tmp_path / "out", checkpoint=ckpt, loader=tiny_loader(), planted=fx, pairs=pairs
    )
    assert set(doc) == {"model", "tracks", "cost"}
    assert {r["selector"] for r in doc["tracks"]["planted"]["rows"]} == {"wordcount_ckpt", "longest", "random"}
    row = next(
        r for r in doc["tracks"]["planted"]["rows"] if r["selector"] == "wordcount_ckpt" and r["kind"] == "truncated"
    )
    assert set(row) == {"selector", "kind", "n", "paired_auc", "paired_ci", "unpaired_auc", "unpaired_ci", "excluded"}
    assert row["paired_auc"] == 1.0
    pair_row = doc["tracks"]["pairs"]["rows"][0]
    assert set(pair_row) == {"selector", "subset", "n", "accuracy", "ci"} and pair_row["n"] == 5
    assert set(doc["cost"]) == {"wordcount_ckpt", "longest", "random"}
    assert all(set(c) == {"seconds", "tokens"} for c in doc["cost"].values())
    assert doc["cost"]["longest"]["tokens"] > 0
    out = tmp_path / "out"
    assert json.loads((out / "validity.json").read_text()) == doc
    meta = json.loads((out / "fixture.json").read_text())
    assert meta["excluded_overlapping_training"]["planted"]["clean"] == 1
    md = (out / "validity.md").read_text()
    assert "Paired AUC" in md and "wordcount_ckpt" in md
    assert (out / "validity.png").read_bytes()[:4] == b"\x89PNG"
    assert hit.id not in {json.loads(x)["id"] for x in (out / "scores" / "longest.jsonl").read_text().splitlines()}


def test_selector_names_always_adds_longest_and_random():
    assert selector_names(["ifd", "random"]) == ["ifd", "random", "longest"]


def test_predicts_outcome_spearman_across_selectors():
    validity = {
        "tracks": {
            "planted": {
                "rows": [
                    {"selector": s, "kind": "overall", "paired_auc": a, "unpaired_auc": a}
                    for s, a in [("random", 0.5), ("longest", 0.6), ("ifd", 0.7), ("cpqs", 0.9)]
                ]
            }
        }
    }
    diffs = {"longest": -0.01, "ifd": -0.02, "cpqs": -0.03}  # nll: lower is better -> improvements 0.01 < ... 0.03
    board = {
        "task_facts": {"t_nll": {"proxy": True, "higher_is_better": False}, "t_em": {"proxy": False}},
        "tables": {
            "t_nll": [{"arm": "random", "vs": {"random": None}}]
            + [{"arm": a, "vs": {"random": {"mean_diff": d}}} for a, d in diffs.items()],
            "t_em": [{"arm": "cpqs", "vs": {"random": {"mean_diff": 0.1}}}],
        },
    }
    rows = predicts_outcome(validity, board)
    assert {r["task"] for r in rows} == {"t_nll"}  # proxy metrics only
    r = next(x for x in rows if x["metric"] == "planted/overall/paired_auc")
    assert r["n_selectors"] == 4 and r["spearman"] == pytest.approx(1.0)


def test_validate_verb_flags_are_config_aliases():
    import argparse

    from cpqs_bench.cli import validate as verb
    from cpqs_bench.cli.common import resolve

    p = argparse.ArgumentParser()
    verb.add_arguments(p)
    args = p.parse_intermixed_args(
        ["--selectors", "ifd,cpqs", "--tracks", "planted", "--out", "o", "--seed", "3", "validate.n_clean=5"]
    )
    cfg = resolve(args).cfg
    assert cfg.validate.tracks == ("planted",) and cfg.validate.seed == 3 and cfg.validate.n_clean == 5


def test_validate_verb_records_what_produced_the_table(tmp_path, monkeypatch):
    """The verb's validity.json names its command, config hash, seed, fixture sha256, git and package versions."""
    import argparse
    from pathlib import Path

    from cpqs_bench.cli import validate as verb
    from cpqs_bench.io import read_json, write_json
    from cpqs_bench.validity import run as vrun

    def fake_validate(cfg, selectors, out_dir, **kw):
        write_json(Path(out_dir) / "fixture.json", {"rows": [1, 2]})
        doc = {"model": "m", "tracks": {}, "cost": {}}
        write_json(Path(out_dir) / "validity.json", doc)
        return doc

    monkeypatch.setattr(vrun, "validate", fake_validate)
    p = argparse.ArgumentParser()
    verb.add_arguments(p)
    out = tmp_path / "v"
    args = p.parse_intermixed_args(["--selectors", "ifd", "--out", str(out), "--seed", "4", "validate.n_clean=5"])
    assert verb.run(args) == 0
    prov = read_json(out / "validity.json")["provenance"]
    assert prov["command"].startswith("cpqs-bench validate --selectors ifd") and "validate.n_clean=5" in prov["command"]
    assert prov["seed"] == 4 and len(prov["config_hash"]) >= 8 and len(prov["fixture_sha256"]) == 64
    assert {"git", "packages", "hardware"} <= set(prov)
