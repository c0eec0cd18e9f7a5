"""CPQS trained as the paper trains it (#13): the official contrastive data (a fixture shaped like renlll/CPQS_data),
both compositions, no overlap with the scored pool (exclusion and out-of-fold), the length-confound report, and the
scoring-side fidelity checks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from cpqs_bench import tiny
from cpqs_bench.config import Config, replace
from cpqs_bench.data.example import Example
from cpqs_bench.io import read_json, read_jsonl
from cpqs_bench.selectors.cpqs import checkpoint as C
from cpqs_bench.selectors.cpqs import pairs as P
from cpqs_bench.selectors.cpqs import train as T

torch.set_num_threads(1)
NEG = "模型输出"


@dataclass(frozen=True)
class Info:
    spec: str
    revision: str | None


def official_fixture(root: Path, n: int = 16) -> Path:
    """Three JSON arrays as in renlll/CPQS_data: GPT-4 positives (instruction/input/output) and two small-model
    negative files whose answer is in 模型输出 (one instruction missing from the second set)."""
    root.mkdir(parents=True, exist_ok=True)
    pos = [
        {
            "instruction": f"Describe sea creature number {i}",
            "input": "in one paragraph" if i % 3 == 0 else "",
            "output": "A detailed and careful answer about the sea. " * (1 + i % 3),
        }
        for i in range(n)
    ]
    llama = [
        {**{k: r[k] for k in ("instruction", "input")}, "output": r["output"], NEG: f"sea {i}"}
        for i, r in enumerate(pos)
    ]
    qwen = [
        {**{k: r[k] for k in ("instruction", "input")}, NEG: "I do not know." if i % 2 else "fish"}
        for i, r in enumerate(pos)
        if i != 1
    ]
    for name, rows in (
        ("alpaca_gpt4_data.json", pos),
        ("alpaca_gpt4_data_llama.json", llama),
        ("alpaca_gpt4_data_qwen251.json", qwen),
    ):
        (root / name).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return root


def cfg_for(data: Path, **kw) -> Config:
    values = {
        "selectors.cpqs.pairs_source": "official",
        "selectors.cpqs.pairs": str(data),
        "selectors.cpqs.n_pairs": None,
        "selectors.cpqs.num_filters": 8,
        "selectors.cpqs.mlp_hidden": 16,
        "selectors.cpqs.epochs": 1,
        "selectors.cpqs.grad_accum": 2,
        "selectors.cpqs.batch_size": 2,
        "selectors.cpqs.val_fraction": 0.25,
        "selectors.cpqs.extract_batch_size": 4,
        "selectors.cpqs.feature_cache": False,
        "prompt.max_length": 128,
        "model.device": "cpu",
        **kw,
    }
    return replace(Config(), **values)


@pytest.fixture(scope="module")
def backbone():
    model, tok = tiny.model("chatml", num_layers=2)
    return model, tok, Info("tiny-a", "r1")


def loader_of(backbone):
    return lambda spec, revision, dtype: backbone


def test_official_source_paired_and_reference_compositions(tmp_path):
    data = official_fixture(tmp_path / "cpqs_data")
    paired = P.from_official(P.OfficialFiles(str(data)))
    s = paired.summary()
    assert s["pairs"] == 16 and s["positives"] == s["negatives"] == 16  # 1:1, one negative per instruction
    sets = {x.example.metadata["negative_set"] for x in paired.items if x.label == 0}
    assert sets == {"alpaca_gpt4_data_llama.json", "alpaca_gpt4_data_qwen251.json"}  # both sets used (rotation)
    ref = P.from_official(P.OfficialFiles(str(data)), composition="reference").summary()
    # the reference's union: every positive and both negative sets (instruction 1 lacks the second negative)
    assert ref["positives"] == 16 and ref["negatives"] == 31 and ref["groups"] == 16
    assert P.from_official(P.OfficialFiles(str(data)), n_pairs=5).n_pairs == 5


def test_reference_question_format(tmp_path):
    data = official_fixture(tmp_path / "cpqs_data")
    ps = P.from_official(P.OfficialFiles(str(data)), question_format="reference")
    texts = {x.example.prompt[0]["content"] for x in ps.items}
    assert "Describe sea creature number 0\nInput:in one paragraph" in texts
    assert "Describe sea creature number 2\nInput:" in texts  # the Input: line even with an empty input
    # overlap checks still see the project's format of the same question
    pool = [Example("p", ({"role": "user", "content": "Describe sea creature number 0\n\nin one paragraph"},), "a")]
    kept, dropped = P.disjoint_pairs(ps, pool)
    assert dropped == 1 and kept.n_pairs == 15


def test_official_files_resolve_from_the_mirror_and_name_what_is_missing(tmp_path, monkeypatch):
    from cpqs_bench.data.mirror import dataset_files

    files = ["alpaca_gpt4_data.json", "alpaca_gpt4_data_llama.json", "alpaca_gpt4_data_qwen251.json"]
    official_fixture(tmp_path / "mirror" / "cpqs_data")
    got = dataset_files("renlll/CPQS_data", files, tmp_path / "mirror", offline=True)
    assert got["alpaca_gpt4_data.json"] == tmp_path / "mirror" / "cpqs_data" / "alpaca_gpt4_data.json"
    (tmp_path / "mirror" / "cpqs_data" / "alpaca_gpt4_data_qwen251.json").unlink()
    with pytest.raises(FileNotFoundError, match="alpaca_gpt4_data_qwen251.json not found.*renlll/CPQS_data"):
        dataset_files("cpqs_data", files, tmp_path / "mirror", offline=True)
    ps = P.build(
        cfg_for(tmp_path / "x").selectors.cpqs.__class__(
            pairs_source="official",
            pairs="cpqs_data",
            official_negatives=("alpaca_gpt4_data_llama.json",),
            n_pairs=None,
        ),
        mirror=tmp_path / "mirror",
    )
    assert ps.n_pairs == 16  # one negative set named: the mirror has it


def test_disjoint_pairs_counts_and_refuses_total_overlap():
    items = []
    for i in range(4):
        prompt = ({"role": "user", "content": f"Q {i}"},)
        items += P._pair(P.prompt_key(prompt), Example("g", prompt, "good"), Example("b", prompt, "bad"))
    ps = P.PairSet("s", items, n_pairs=4)
    pool = [Example("x", ({"role": "user", "content": "  q 1 "},), "whatever")]  # case and spacing ignored
    kept, n = P.disjoint_pairs(ps, pool)
    assert n == 1 and kept.n_pairs == 3 and kept.skipped["overlap_with_pool"] == 1
    assert P.disjoint_pairs(ps, [])[1] == 0
    everything = [Example(str(i), ({"role": "user", "content": f"Q {i}"},), "a") for i in range(4)]
    with pytest.raises(P.PairsError, match="every training pair"):
        P.disjoint_pairs(ps, everything)


def test_length_report_flags_a_length_only_classifier():
    items, probs, lengths = [], [], []
    for g in range(20):
        for label, n in ((1, 10 + g % 3), (0, 10 + (g + 1) % 3)):  # length-matched pairs (within 25 %)
            items.append(P.Labelled(Example(f"{g}{label}", (), "x"), label, f"g{g}"))
            lengths.append(n)
            probs.append(n / 20)  # "score = length": knows nothing about quality
    rep = T.length_report(items, probs, lengths, band=0.25, floor=0.6, overall_auc=0.9)
    assert rep["length_matched_pairs"] == 20 and rep["spearman_score_length"] == pytest.approx(1.0)
    assert rep["length_matched_auc"] < 0.6 and rep["flagged"] is True
    good = T.length_report(items, [float(x.label) for x in items], lengths, band=0.25, floor=0.6, overall_auc=1.0)
    assert good["length_matched_auc"] == 1.0 and good["flagged"] is False


def test_train_from_the_official_fixture_then_score_a_pool_with_zero_overlap(tmp_path, backbone):
    """Training pairs that the pool to be scored shares are excluded; scoring that pool records overlap 0."""
    from cpqs_bench.score import score_pool

    data = official_fixture(tmp_path / "cpqs_data")
    cfg = cfg_for(data)
    # the pool to score: 4 of the training instructions + 3 new ones
    pool = [
        Example(f"p{i}", ({"role": "user", "content": f"Describe sea creature number {i}"},), "Sea. " * (i + 1))
        for i in (2, 4, 5, 7)
    ]
    pool += [
        Example(f"n{i}", ({"role": "user", "content": f"Name a mountain {i}"},), "Everest. " * i) for i in range(1, 4)
    ]
    metrics = T.train_selector(
        cfg,
        tmp_path / "ckpt",
        exclude=pool,
        loader=loader_of(backbone),
        options=T.TrainOptions(progress=False, log=lambda _m: None),
    )
    assert metrics["overlap"] == {"checked_against": 7, "dropped_pairs": 4, "overlap_in_training": 0}
    assert metrics["n_pairs"] == 12 and metrics["pairs"]["source"].startswith("official(")
    assert set(metrics["length"]) >= {"length_matched_auc", "spearman_score_length", "flagged"}
    assert read_json(tmp_path / "ckpt" / "metrics.json")["overlap"]["overlap_in_training"] == 0
    summary = score_pool(
        cfg, pool, tmp_path / "s.jsonl", selector="cpqs", checkpoint=tmp_path / "ckpt", loader=loader_of(backbone)
    )
    assert summary["overlap"] == {"pool": 7, "overlap": 0}
    rows = read_jsonl(tmp_path / "s.jsonl")
    assert [r["id"] for r in rows] == [ex.id for ex in pool] and all(0 < r["score"] < 1 for r in rows)
    # without the exclusion the same check finds the 4 shared instructions
    T.train_selector(
        cfg, tmp_path / "ckpt2", loader=loader_of(backbone), options=T.TrainOptions(progress=False, log=lambda _m: None)
    )
    assert C.training_instruction_overlap(tmp_path / "ckpt2", pool) == {"pool": 7, "overlap": 4}


def test_out_of_fold_scores_a_pool_that_holds_training_instructions(tmp_path, backbone):
    """The pool is the positives themselves: every example is scored by a CNN that never saw its instruction."""
    data = official_fixture(tmp_path / "cpqs_data")
    cfg = cfg_for(data, **{"selectors.cpqs.oof_folds": 2, "selectors.cpqs.overlap": "out_of_fold"})
    from cpqs_bench.data.pool import read_pool

    pool = read_pool(str(data / "alpaca_gpt4_data.json")).examples[:8]
    res = T.train_out_of_fold(
        cfg,
        tmp_path / "oof",
        pool,
        tmp_path / "oof.jsonl",
        loader=loader_of(backbone),
        options=T.TrainOptions(progress=False, log=lambda _m: None),
    )
    rows = read_jsonl(tmp_path / "oof.jsonl")
    assert [r["id"] for r in rows] == [ex.id for ex in pool] and all(0 < r["score"] < 1 for r in rows)
    assert len(res["folds"]) == 2 and sum(f["pool"] for f in res["folds"]) == 8
    assert sum(f["dropped_pairs"] for f in res["folds"]) == 8  # each fold's instructions left its CNN's training
    for f in res["folds"]:
        fold = [ex for ex, r in zip(pool, rows) if r["fold"] == f["fold"]]
        assert C.training_instruction_overlap(tmp_path / "oof" / f"fold-{f['fold']}", fold)["overlap"] == 0
    assert res["overlap"]["overlap_in_training"] == 0


def test_cli_train_selector_out_of_fold_and_exclusion(tmp_path, backbone, monkeypatch, capsys):
    """train-selector on a pool containing training instructions: excluded by default, out of fold on request."""
    from cpqs_bench import cli

    model, tok, _ = backbone
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    data = official_fixture(tmp_path / "cpqs_data")
    pool = data / "alpaca_gpt4_data.json"
    common = [
        "selectors.cpqs.pairs_source=official",
        f"selectors.cpqs.pairs={data}",
        "selectors.cpqs.n_pairs=null",
        "selectors.cpqs.num_filters=8",
        "selectors.cpqs.mlp_hidden=16",
        "selectors.cpqs.epochs=1",
        "selectors.cpqs.val_fraction=0.25",
        "selectors.cpqs.feature_cache=false",
        "prompt.max_length=128",
        f"model.id={tmp_path / 'tiny'}",
        "model.dtype=float32",
        "model.device=cpu",
        f"data.pool={pool}",
        "data.pool_limit=6",
        "--no-progress",
    ]
    assert cli.main(["train-selector", "--out", str(tmp_path / "ex"), *common]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["overlap"]["dropped_pairs"] == 6 and out["n_pairs"] == 10
    assert (
        cli.main(
            [
                "train-selector",
                "--out",
                str(tmp_path / "oof"),
                "selectors.cpqs.overlap=out_of_fold",
                "selectors.cpqs.oof_folds=2",
                "--score-out",
                str(tmp_path / "oof.jsonl"),
                *common,
            ]
        )
        == 0
    )
    assert len(read_jsonl(tmp_path / "oof.jsonl")) == 6


def test_scoring_refuses_other_feature_dtype_and_follows_feature_eot(tmp_path, backbone):
    from cpqs_bench.selectors.base import ScoringContext
    from cpqs_bench.selectors.cpqs import selector as S

    data = official_fixture(tmp_path / "cpqs_data", n=8)
    cfg = cfg_for(data, **{"selectors.cpqs.feature_eot": False, "prompt.train_eot": True})
    T.train_selector(
        cfg, tmp_path / "ckpt", loader=loader_of(backbone), options=T.TrainOptions(progress=False, log=lambda _m: None)
    )
    meta = read_json(tmp_path / "ckpt" / "selector.json")
    assert meta["train_eot"] is False and meta["feature_dtype"] == "torch.float32"
    fed = cfg_for(data)
    assert T.feature_spec(fed.prompt, fed.selectors.cpqs).train_eot is True  # None follows prompt.train_eot
    model, tok, info = backbone
    import copy

    half = copy.deepcopy(model).to(torch.bfloat16)  # the same backbone, run in another dtype
    ctx = ScoringContext(cfg, tmp_path / "w", checkpoint=tmp_path / "ckpt", loader=lambda s, r, d: (half, tok, info))
    ex = [Example("a", ({"role": "user", "content": "q"},), "an answer")]
    with pytest.raises(S.BackboneMismatch, match="float32 features"):
        S.CPQSSelector().score(ex, ctx)
