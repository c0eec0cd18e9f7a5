"""compare: tier joining, pairwise accuracy and its CI, agreement metrics, score reuse, CLI, error paths."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import pytest
import torch

from cpqs_bench import compare
from cpqs_bench.data.example import Example
from cpqs_bench.selectors.base import Needs, ScoreRow, ScoringContext
from cpqs_bench.testing import contract_config, tiny_loader


def run_compare(selectors, out, *, cfg, tiers=None, limit=None, budget=None, n_boot=2000, **kw):
    """What the CLI does: build the tiered pool, then one library call."""
    pool = compare.tiered_pool(cfg.data, tiers=tiers, limit=limit)
    settings = compare.CompareSettings(budget=budget, n_boot=n_boot)
    return compare.compare_selectors(cfg, selectors, out, pool=pool, settings=settings, **kw)


torch.set_num_threads(1)


def _ex(i: str, ins: str, resp: str) -> Example:
    return Example(i, ({"role": "user", "content": ins},), resp)


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_join_tiers_keeps_shared_instructions_in_first_tier_order():
    strong = [_ex("s1", "A", "a+"), _ex("s2", "B", "b+"), _ex("s3", "C", "c+")]
    mid = [_ex("m3", "C", "c"), _ex("m1", "A", "a")]
    weak = [_ex("w1", "A", "a-"), _ex("w3", "C", "c-"), _ex("w9", "Z", "z-")]
    exs, pairs = compare.join_tiers([("s", strong), ("m", mid), ("w", weak)], limit=None)
    assert [e.id for e in exs] == ["s#0", "m#0", "w#0", "s#1", "m#1", "w#1"]
    assert [e.response for e in exs] == ["a+", "a", "a-", "c+", "c", "c-"]
    assert pairs[:3] == [("s#0", "m#0"), ("s#0", "w#0"), ("m#0", "w#0")] and len(pairs) == 6
    assert exs[2].metadata["tier_rank"] == 2 and exs[2].metadata["source_id"] == "w1"
    exs, pairs = compare.join_tiers([("s", strong), ("w", weak)], limit=1)
    assert len(exs) == 2 and pairs == [("s#0", "w#0")]
    with pytest.raises(compare.CompareError, match="share no instruction"):
        compare.join_tiers([("s", strong[1:2]), ("w", weak)], None)


def test_pair_outcomes_ties_and_exclusions():
    rows = [
        {"id": "a", "score": 2.0},
        {"id": "b", "score": 1.0},
        {"id": "c", "score": 1.0},
        {"id": "d", "score": 9.0, "exclude": "ifd>=1"},
        {"id": "e", "score": math.nan, "exclude": "empty_response"},
    ]
    pairs = [("a", "b"), ("b", "a"), ("b", "c"), ("a", "d"), ("d", "a"), ("d", "e")]
    assert compare.pair_outcomes(rows, pairs) == [1.0, 0.0, 0.5, 1.0, 0.0, 0.5]
    acc = compare.pairwise_accuracy(rows, pairs, n_boot=500, seed=0, name="x")
    assert acc["accuracy"] == pytest.approx(3 / 6) and acc["ties"] == 2 and acc["both_eligible"] == 3
    assert acc["accuracy_both_eligible"] == pytest.approx(1.5 / 3)
    lo, hi = acc["ci95"]
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    assert compare.pairwise_accuracy(rows, pairs, 500, 0, "x") == acc  # seeded


def _tier_files(tmp_path: Path) -> list[str]:
    strong = [{"instruction": f"Q{i}", "output": "long answer " * (i + 3)} for i in range(6)]
    weak = [{"instruction": f"Q{i}", "output": "short " * (i + 1)} for i in range(6)]
    return [_write(tmp_path / "strong.jsonl", strong), _write(tmp_path / "weak.jsonl", weak)]


def test_compare_with_given_scores_files(tmp_path):
    tiers = _tier_files(tmp_path)
    ids = [f"{t}#{k}" for k in range(6) for t in ("strong", "weak")]
    perfect = _write(
        tmp_path / "perfect.jsonl",
        [{"id": i, "score": (1.0 if i.startswith("strong") else 0.0) + int(i[-1]) / 10} for i in ids],
    )
    reverse = _write(
        tmp_path / "reverse.jsonl",
        [{"id": i, "score": -(1.0 if i.startswith("strong") else 0.0) - int(i[-1]) / 10} for i in ids],
    )
    res = run_compare(
        ["perfect", "reverse"],
        tmp_path / "out",
        tiers=tiers,
        budget=6,
        cfg=contract_config(),
        scores={"perfect": perfect, "reverse": reverse},
        loader=tiny_loader(),
        n_boot=200,
    )
    acc = res["pairwise_accuracy"]
    assert acc["perfect"]["accuracy"] == 1.0 and acc["perfect"]["ci95"] == [1.0, 1.0]
    assert acc["reverse"]["accuracy"] == 0.0
    assert res["spearman"]["perfect"]["reverse"]["rho"] == pytest.approx(-1.0)
    assert res["jaccard"]["perfect"]["reverse"] == 0.0 and res["jaccard"]["perfect"]["perfect"] == 1.0
    assert res["k"] == 6 and res["pool"]["n_pairs"] == 6
    for f in ("compare.json", "report.md", "histograms.png", "agreement.png", "pairwise_accuracy.png", "manifest.json"):
        assert (tmp_path / "out" / f).stat().st_size > 0
    with pytest.raises(compare.CompareError, match="have no score"):
        bad = _write(tmp_path / "bad.jsonl", [{"id": "strong#0", "score": 1.0}])
        run_compare(
            ["bad"],
            tmp_path / "out2",
            tiers=tiers,
            budget=2,
            cfg=contract_config(),
            scores={"bad": bad},
            loader=tiny_loader(),
        )


class Counting:
    name = "counting"
    needs = Needs.NOTHING
    calls = 0

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        Counting.calls += 1
        return [ScoreRow(e.id, float(len(e.response)), 0) for e in examples]


class NeedsCheckpoint(Counting):
    name = "needs_ckpt"
    needs = Needs.CHECKPOINT


def test_computed_scores_are_reused_and_lengths_correlate(tmp_path):
    cfg = contract_config(
        **{"selectors.plugins": {"counting": f"{__name__}:Counting", "needs_ckpt": f"{__name__}:NeedsCheckpoint"}}
    )
    tiers = _tier_files(tmp_path)
    Counting.calls = 0
    res = run_compare(["counting", "longest"], tmp_path / "out", tiers=tiers, budget=4, cfg=cfg, loader=tiny_loader())
    run_compare(["counting", "longest"], tmp_path / "out", tiers=tiers, budget=4, cfg=cfg, loader=tiny_loader())
    assert Counting.calls == 1
    assert res["length_spearman"]["longest"]["rho"] == pytest.approx(1.0)
    assert res["pairwise_accuracy"]["longest"]["accuracy"] == 1.0  # strong answers are longer here
    with pytest.raises(compare.CompareError, match="--selector-checkpoint needs_ckpt=DIR"):
        run_compare(["needs_ckpt"], tmp_path / "out3", tiers=tiers, budget=2, cfg=cfg, loader=tiny_loader())


def test_alpaca_eval_tiers_end_to_end_tiny(tmp_path):
    res = run_compare(
        ["longest", "random", "ifd"],
        tmp_path / "out",
        tiers=["alpaca_eval/gpt4", "alpaca_eval/pythia-12b-mix-sft"],
        limit=6,
        budget=3,
        cfg=contract_config(**{"prompt.max_length": 256}),
        loader=tiny_loader(),
        n_boot=200,
    )
    assert res["pool"]["n"] == 12 and res["pool"]["tiers"] == ["gpt4", "pythia-12b-mix-sft"]
    rows = {r["id"]: r["score"] for r in map(json.loads, (tmp_path / "out/scores/longest.jsonl").open())}
    manual = (
        sum(
            (rows[f"gpt4#{k}"] > rows[f"pythia-12b-mix-sft#{k}"])
            + 0.5 * (rows[f"gpt4#{k}"] == rows[f"pythia-12b-mix-sft#{k}"])
            for k in range(6)
        )
        / 6
    )
    assert res["pairwise_accuracy"]["longest"]["accuracy"] == pytest.approx(manual)


def test_cli_compare_with_scores_only(tmp_path, capsys):
    from cpqs_bench import cli, models

    models.fetch_embedded()  # cached on this machine; the CLI counts lengths with the target (embedded) tokenizer
    pool = _write(tmp_path / "pool.jsonl", [{"instruction": f"Q{i}", "output": "x " * (i + 1)} for i in range(5)])
    from cpqs_bench.data.pool import read_pool

    ids = [e.id for e in read_pool(pool).examples]
    sc = _write(tmp_path / "s.jsonl", [{"id": i, "score": float(k)} for k, i in enumerate(ids)])
    rc = cli.main(
        [
            "compare",
            "--selectors",
            "mine",
            "--scores",
            f"mine={sc}",
            "--data",
            pool,
            "--budget",
            "2",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "Selector comparison" in out and "| mine | 5 |" in out
    assert json.loads((tmp_path / "out" / "compare.json").read_text())["length_spearman"]["mine"][
        "rho"
    ] == pytest.approx(1.0)
    assert cli.main(["compare", "--selectors", "mine", "--scores", "oops", "--data", pool, "--out", "x"]) == 1


def test_contamination_of_each_top_budget(tmp_path):
    from cpqs_bench.contamination import ContaminationIndex, EvalItem

    words = [f"w{k}" for k in range(300)]
    items = [EvalItem("bench", i, str(i), (" ".join(words[20 * i : 20 * i + 20]),)) for i in range(4)]
    index = ContaminationIndex.build({"bench": items}, n=13)
    pool = [_ex(f"q{k}", f"Question {k}: " + items[k].texts[0], "answer") for k in range(3)]
    pool += [_ex(f"c{k}", f"Clean instruction number {k}, nothing quoted.", "answer") for k in range(7)]
    dirty = _write(tmp_path / "dirty.jsonl", [{"id": e.id, "score": float(e.id[0] == "q")} for e in pool])
    clean = _write(tmp_path / "clean.jsonl", [{"id": e.id, "score": float(e.id[0] == "c")} for e in pool])
    cfg = contract_config()
    res = compare.compare_selectors(
        cfg,
        ["dirty", "clean"],
        tmp_path / "out",
        pool=compare.tiered_pool(cfg.data, examples=pool, source="synthetic"),
        settings=compare.CompareSettings(budget=3),
        scores={"dirty": dirty, "clean": clean},
        loader=tiny_loader(),
        contamination=index,
    )
    bench = res["contamination"]["tasks"]["bench"]
    assert bench["pool"] == {"overlapping_items": 3, "fraction": 0.75, "overlapping_examples": 3}
    assert bench["arms"]["dirty"]["per_seed"] == {"none": 3} and bench["arms"]["dirty"]["fraction"] == 0.75
    assert bench["arms"]["clean"]["per_seed"] == {"none": 0} and bench["arms"]["clean"]["fraction"] == 0.0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| bench | 4 | 0 | 3 (75.0%) | 3 | 3 (75.0%) | 0 (0.0%) |" in report
    assert json.loads((tmp_path / "out" / "compare.json").read_text())["contamination"] == res["contamination"]
    # without an index the key is there, empty, and the report has no table
    res = compare.compare_selectors(
        cfg,
        ["dirty"],
        tmp_path / "out2",
        pool=compare.tiered_pool(cfg.data, examples=pool, source="synthetic"),
        settings=compare.CompareSettings(budget=3),
        scores={"dirty": dirty},
        loader=tiny_loader(),
    )
    assert res["contamination"] is None and "Contamination" not in (tmp_path / "out2" / "report.md").read_text()


def test_cli_compare_contamination_flag(tmp_path, capsys, mirror):
    from cpqs_bench import cli, models
    from cpqs_bench.data.pool import read_pool

    models.fetch_embedded()
    test_q = read_pool("gsm8k", mirror=str(mirror)).examples[0].instruction  # item 0 of cpqs_gsm8k_chat
    rows = [{"instruction": test_q, "output": "18"}] + [
        {"instruction": f"Q{i}", "output": "x " * (i + 1)} for i in range(4)
    ]
    pool = _write(tmp_path / "pool.jsonl", rows)
    ids = [e.id for e in read_pool(pool).examples]
    sc = _write(tmp_path / "s.jsonl", [{"id": i, "score": -float(k)} for k, i in enumerate(ids)])
    argv = ["compare", "--selectors", "mine", "--scores", f"mine={sc}", "--data", pool, "--budget", "1"]
    rc = cli.main([*argv, "--contamination", "--tasks", "cpqs_gsm8k_chat", "evaluate.limit=2", "--out", str(tmp_path)])
    assert rc == 0
    assert "| cpqs_gsm8k_chat | 2 | 0 | 1 (50.0%) | 1 | 1 (50.0%) |" in capsys.readouterr().out
