"""CPQS training on a tiny backbone: metrics, checkpoint round trip, wrong backbone, per-epoch resume, selector."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from cpqs_bench import features as F
from cpqs_bench import tiny
from cpqs_bench.config import load_config
from cpqs_bench.data.example import Example
from cpqs_bench.io import read_json
from cpqs_bench.selectors.base import ScoringContext
from cpqs_bench.selectors.cpqs import checkpoint as C
from cpqs_bench.selectors.cpqs import pairs as P
from cpqs_bench.selectors.cpqs import selector as S
from cpqs_bench.selectors.cpqs import train as T
from cpqs_bench.selectors.cpqs.config import CPQSConfig
from cpqs_bench.selectors.cpqs.textcnn import TextCNN

torch.set_num_threads(1)
CQ = CPQSConfig(
    num_filters=8, mlp_hidden=16, epochs=2, grad_accum=2, batch_size=2, val_fraction=0.25, extract_batch_size=4
)


@dataclass(frozen=True)
class Info:
    spec: str
    revision: str | None


def _pairset(n: int = 24) -> P.PairSet:
    items = []
    for i in range(n):
        prompt = ({"role": "user", "content": f"Question {i}: write about the sea"},)
        good = Example("g", prompt, "The quick brown fox jumps over the lazy dog. " * (1 + i % 3))
        bad = Example("b", prompt, "Hello" if i % 2 else "ok")
        items += P._pair(P.prompt_key(prompt), good, bad)
    return P.PairSet("synthetic", items, n_pairs=n)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cpqs")
    model, tok = tiny.model("chatml", num_layers=2)
    metrics = T.fit_selector(
        model,
        tok,
        {"spec": "tiny-a", "revision": "r1"},
        _pairset(),
        CQ,
        F.FeatureSpec(max_length=128),
        root / "ckpt",
        options=T.TrainOptions(progress=False, log=lambda _msg: None, cache_root=root / "cache"),
    )
    return model, tok, root, metrics


def test_binary_metrics_known_values():
    m = T.binary_metrics([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1])
    assert m["accuracy"] == 0.5 and m["f1"] == 0.5 and m["auc"] == 0.75
    assert T.roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert math.isnan(T.roc_auc([1, 1], [0.2, 0.3]))


def test_checkpoint_has_everything_to_score(trained):
    _, _, root, metrics = trained
    meta = read_json(root / "ckpt" / C.META)
    assert meta["backbone"]["spec"] == "tiny-a" and meta["backbone"]["revision"] == "r1"
    assert meta["layer_indices"] == [0, 1, 2] and meta["template"] == "chat" and meta["max_length"] == 128
    assert meta["textcnn"]["num_layers"] == 3 and meta["textcnn"]["hidden_size"] == 32
    assert set(meta["train_metrics"]["val"]) >= {"accuracy", "f1", "auc"}
    assert metrics["n_train"] + metrics["n_val"] == 48 and metrics["n_val"] == 12
    assert len(metrics["history"]) == 2 and (root / "ckpt" / "metrics.json").exists()
    length = metrics["length"]  # the length confound check on held-out pairs
    assert length["pairs"] == 6 and length["positive_longer"] == 1.0  # every good answer here is the longer one
    assert length["length_matched_pairs"] == 0 and length["flagged"] is None  # nothing length-matched to judge
    assert -1 <= length["spearman_score_length"] <= 1


def test_checkpoint_round_trip_scores_equal(trained):
    model, tok, root, _ = trained
    cnn, meta = C.load_checkpoint(root / "ckpt")
    state = torch.load(root / "ckpt" / T.STATE, weights_only=False)["model"]
    fresh = TextCNN(cnn.cfg)
    fresh.load_state_dict(state)
    exs = [x.example for x in _pairset(6).items]
    spec = S.spec_from_meta(meta)
    a = S.score_chunk(cnn, model, tok, exs, spec, batch_size=4)
    b = S.score_chunk(fresh, model, tok, exs, spec, batch_size=4)
    assert [r["score"] for r in a] == [r["score"] for r in b]


def test_batched_scores_equal_unbatched(trained):
    model, tok, root, _ = trained
    cnn, meta = C.load_checkpoint(root / "ckpt")
    exs = [x.example for x in _pairset(8).items]
    one = S.score_chunk(cnn, model, tok, exs, S.spec_from_meta(meta), batch_size=1)
    many = S.score_chunk(cnn, model, tok, exs, S.spec_from_meta(meta), batch_size=5)
    assert [r["id"] for r in one] == [ex.id for ex in exs] == [r["id"] for r in many]
    for r1, r2 in zip(one, many):
        assert r1["n_tokens"] == r2["n_tokens"] > 0
        assert abs(r1["score"] - r2["score"]) < 1e-5


def _ctx(tmp_path: Path, root: Path, model, tok, info: Info) -> ScoringContext:
    cfg = load_config("smoke", ["selectors.cpqs.extract_batch_size=3"])
    return ScoringContext(
        config=cfg,
        workdir=tmp_path / "work",
        checkpoint=root / "ckpt",
        loader=lambda spec, rev, dtype: (model, tok, info),
    )


def test_selector_scores_and_refuses_wrong_backbone(trained, tmp_path):
    model, tok, root, _ = trained
    exs = [x.example for x in _pairset(5).items] + [Example("empty", ({"role": "user", "content": "q"},), " ")]
    rows = S.CPQSSelector().score(exs, _ctx(tmp_path, root, model, tok, Info("tiny-a", "r1")))
    assert [r.id for r in rows] == [ex.id for ex in exs]
    assert all(0 <= r.score <= 1 for r in rows[:-1]) and rows[-1].exclude == "empty_response"
    with pytest.raises(S.BackboneMismatch, match="tiny-a.*r1.*tiny-b.*r2"):
        S.CPQSSelector().score(exs, _ctx(tmp_path, root, model, tok, Info("tiny-b", "r2")))
    other, _ = tiny.model("chatml", num_layers=3)  # same spec and revision, different architecture
    with pytest.raises(S.BackboneMismatch, match="config"):
        S.CPQSSelector().score(exs, _ctx(tmp_path, root, other, tok, Info("tiny-a", "r1")))


def test_interrupted_scoring_resumes_with_identical_scores(trained, tmp_path):
    model, tok, root, _ = trained
    cnn, meta = C.load_checkpoint(root / "ckpt")
    exs = [x.example for x in _pairset(7).items]
    spec = S.spec_from_meta(meta)
    scorer = S.CNNScorer(cnn, model, tok, spec, 4)
    full = scorer.resumable(exs, tmp_path / "a", shard_size=4)
    with pytest.raises(KeyboardInterrupt):
        scorer.resumable(exs, tmp_path / "b", shard_size=4, stop_after=2)
    assert len(list((tmp_path / "b").glob("shard-*.jsonl"))) == 2
    resumed = scorer.resumable(exs, tmp_path / "b", shard_size=4)
    assert resumed == full
    assert len(list((tmp_path / "b").glob("shard-*.jsonl"))) == 4


def test_training_resumes_per_epoch(trained, tmp_path):
    model, tok, root, _ = trained
    ps = _pairset()
    train, val = P.split_by_group(ps.items, 0.25, 0)
    cache = F.FeatureCache(root / "cache", F.model_identity(model, "r1"), F.FeatureSpec(max_length=128))
    cfg = T.textcnn_config(CQ, 3, 32)
    quiet = T.TrainOptions(progress=False, log=lambda _msg: None)

    def run(epochs, state):
        torch.manual_seed(0)
        cnn = TextCNN(cfg)
        cq = replace(CQ, lr=1e-3, grad_accum=2, batch_size=2, seed=0, epochs=epochs)
        hist = T.fit(cnn, cache, train, val, cq, None, state_path=state, options=quiet)
        return cnn, hist

    straight, h1 = run(2, tmp_path / "s1.pt")
    run(1, tmp_path / "s2.pt")  # "interrupted" after epoch 1
    resumed, h2 = run(2, tmp_path / "s2.pt")
    assert [e["train_loss"] for e in h1] == [e["train_loss"] for e in h2]
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_train_selector_cli_generate_end_to_end(tmp_path, monkeypatch, capsys):
    """pairs_source=generate through the CLI: the pairs pool is read without data.pool_limit and without the
    instructions of the pool to be scored; make-negatives runs first; training writes a finished stage."""
    import json

    from cpqs_bench import cli

    monkeypatch.setenv("CPQS_CACHE", str(tmp_path / "cache"))
    model, tok = tiny.model("chatml", num_layers=2)
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(
            json.dumps(
                {
                    "instruction": f"Write about the sea {i}",
                    "input": "",
                    "output": "The quick brown fox jumps. " * (1 + i % 3),
                }
            )
            + "\n"
            for i in range(12)
        )
    )
    overrides = [
        f"model.id={tmp_path / 'tiny'}",
        "model.dtype=float32",
        "model.device=cpu",
        f"experiment.output_dir={tmp_path / 'runs'}",
        f"data.pool={pool}",
        "data.pool_limit=4",
        "selectors.cpqs.pairs_source=generate",
        f"selectors.cpqs.pairs={pool}",
        f"selectors.cpqs.generator={tmp_path / 'tiny'}",
        "selectors.cpqs.generation_max_new_tokens=5",
        "selectors.cpqs.generation_drop_unfinished=false",
        "selectors.cpqs.n_pairs=6",
        "selectors.cpqs.num_filters=8",
        "selectors.cpqs.mlp_hidden=16",
        "selectors.cpqs.epochs=1",
        "selectors.cpqs.val_fraction=0.34",
        "selectors.cpqs.feature_max_length=96",
    ]
    assert cli.main(["train-selector", "--config", "smoke", *overrides, "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ckpt = Path(result["checkpoint"])
    stage = ckpt.parent  # the train-selector stage the executor finished (the same step reproduce runs)
    assert (stage / "DONE").exists() and (ckpt / C.META).exists() and (ckpt / C.WEIGHTS).exists()
    assert "code" in read_json(stage / "inputs.json")  # keyed on its code version too
    metrics = read_json(ckpt / "metrics.json")
    assert metrics["pairs"]["source"].startswith("generated(") and metrics["pairs"]["pairs"] == 6
    assert metrics["overlap"] == {"checked_against": 4, "dropped_pairs": 0, "overlap_in_training": 0}
    (neg_file,) = (tmp_path / "runs").rglob("negatives/*/negatives.jsonl")  # the negatives stage ran first
    negs = [json.loads(line) for line in neg_file.read_text().splitlines()]
    # 12 instructions, minus the 4 of the scored pool, capped at n_pairs=6 (data.pool_limit=4 did not apply)
    scored = read_pool_examples(pool)[:4]
    assert len(negs) == 6 and {r["id"] for r in negs}.isdisjoint({ex.id for ex in scored})
    assert C.training_instruction_overlap(ckpt, scored)["overlap"] == 0
    assert C.training_instruction_overlap(ckpt, read_pool_examples(pool))["overlap"] == 6  # the check can count
    assert cli.main(["train-selector", "--config", "smoke", *overrides, "--no-progress"]) == 0  # finished: reused
    out = capsys.readouterr().out
    again = json.loads(out.strip().splitlines()[-1])
    assert again["checkpoint"] == result["checkpoint"] and "train-selector: skip (DONE)" in out


def read_pool_examples(path):
    from cpqs_bench.data.pool import read_pool

    return read_pool(str(path)).examples
