import math

import numpy as np
import pytest

from cpqs_bench.data.example import Example
from cpqs_bench.select import select
from cpqs_bench.selectors import registry
from cpqs_bench.selectors.base import ScoreRow, ScoringContext
from cpqs_bench.selectors.diversity import (
    BEYOND_PRE,
    Composed,
    compose,
    diversity_scores,
    facility_location_greedy,
    kcenter_greedy,
    similarity,
)
from cpqs_bench.testing import check_selector, contract_config, contract_examples, tiny_loader


def _blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    return np.concatenate([c + 0.1 * rng.standard_normal((5, 2)) for c in centers]), [0] * 5 + [1] * 5 + [2] * 5


def test_kcenter_covers_every_cluster():
    x, label = _blobs()
    picks, min_d = kcenter_greedy(x, 3)
    assert sorted(label[i] for i in picks) == [0, 1, 2]
    assert min_d.max() < 1.0 and all(min_d[i] == 0 for i in picks)


def test_facility_location_matches_brute_force_greedy_and_covers_clusters():
    x, label = _blobs()
    sim = similarity(x, "euclidean")
    picks, gains = facility_location_greedy(sim, 3)
    assert sorted(label[i] for i in picks) == [0, 1, 2]
    cover, brute = np.zeros(len(x)), []
    for _ in range(3):  # the non-lazy greedy: lazy evaluation must not change the picks
        g = np.maximum(sim - cover[:, None], 0).sum(0)
        g[brute] = -1
        j = int(np.argmax(g))
        brute.append(j)
        cover = np.maximum(cover, sim[:, j])
    assert picks == brute
    assert all(gains[i] == 0 for i in picks)


def test_scores_rank_picks_first():
    x, _ = _blobs()
    ids = [f"e{i:02d}" for i in range(len(x))]
    s = diversity_scores(ids, x, 3, "kcenter", "euclidean")
    top = sorted(ids, key=lambda i: -s[i])[:3]
    picks, _ = kcenter_greedy(x, 3)
    assert top == [ids[i] for i in picks] and all(s[i] < 1 for i in ids if i not in top)
    with pytest.raises(ValueError, match="unknown diversity step"):
        diversity_scores(ids, x, 3, "dpp", "euclidean")


@pytest.mark.parametrize("name", ["kcenter", "facility_location", "ifd+facility_location", "longest+kcenter"])
def test_diversity_contract(name):
    check_selector(name)


def _pool(n=20):
    return [
        Example(
            f"x{i:02d}",
            ({"role": "user", "content": f"Question number {i} about topic {i % 4}?"},),
            ("answer " * (1 + i % 7)) + str(i),
        )
        for i in range(n)
    ]


def test_compose_keeps_top_pre_fraction_then_diversifies(tmp_path):
    cfg = contract_config(**{"selectors.budget": 3, "selectors.pre_fraction": 0.4, "selectors.then": "kcenter"})
    pool = _pool()
    ctx = ScoringContext(cfg, tmp_path, loader=tiny_loader())
    base = [ScoreRow(ex.id, float(i), 1) for i, ex in enumerate(pool)]  # higher index = better
    rows = compose(base, pool, cfg.selectors.budget, ctx)
    assert [r.id for r in rows] == [ex.id for ex in pool]
    pre = {r.id for r in rows if r.exclude is None}
    assert pre == {f"x{i:02d}" for i in range(12, 20)}  # top 40 % of 20 by the base score
    assert all(
        r.exclude == BEYOND_PRE and r.extra["pre_score"] == float(int(r.id[1:])) for r in rows if r.id not in pre
    )
    kept = [s["id"] for s in select([r.to_dict() for r in rows], budget=3) if s["kept"]]
    assert (
        len(kept) == 3
        and set(kept) <= pre
        and all(r.extra["picked"] == (r.id in kept) for r in rows if r.exclude is None)
    )
    with pytest.raises(ValueError, match="fewer than the budget"):
        compose(base, pool, 10, ctx, pre_fraction=0.2)


def test_registry_builds_composed_and_rejects_unknown_step():
    sel = registry.get("superfiltering+facility_location")
    assert isinstance(sel, Composed) and sel.name == "superfiltering+facility_location"
    with pytest.raises(ValueError, match="unknown diversity step"):
        registry.get("ifd+dpp")


def test_model_spec_encoder_embeds_text(tmp_path):
    cfg = contract_config(
        **{"selectors.diversity.embedding": "some/encoder", "selectors.diversity.text": "instruction"}
    )
    ctx = ScoringContext(cfg, tmp_path, loader=tiny_loader())
    sel = registry.get("kcenter")
    rows = sel.score(contract_examples(), ctx)
    ok = [r for r in rows if r.exclude is None]
    assert len(ok) == 8 and sum(r.score > 1 for r in ok) == 1 and all(math.isfinite(r.score) for r in ok)
    # dup_a and dup_b have the same instruction: the same embedding, so the same stop distance
    by = {r.id: r.score for r in rows}
    assert by["dup_a"] == pytest.approx(by["dup_b"]) or max(by["dup_a"], by["dup_b"]) > 1


def test_encoder_shares_the_model_cache_without_breaking_tokenizer_lookup(tmp_path, monkeypatch):
    from cpqs_bench import models
    from cpqs_bench.selectors import diversity

    model, tok, info = tiny_loader()("x", None, "float32")
    monkeypatch.setattr(models, "load", lambda spec, **kw: (model, tok, info))
    cfg = contract_config()
    cache = {("embedded", None, cfg.model.dtype): (model, tok, info)}
    ctx = ScoringContext(cfg, tmp_path, _cache=cache)
    assert diversity._encoder(ctx, "sentence-transformers/all-MiniLM-L6-v2")[0] is model
    assert len(cache) == 2 and ctx.tokenizer() is tok


def test_embeddings_are_computed_once_per_run(tmp_path, monkeypatch):
    from cpqs_bench.selectors import diversity

    calls = []
    real = diversity._embed
    monkeypatch.setattr(diversity, "_embed", lambda todo, ctx: calls.append(len(todo)) or real(todo, ctx))
    cfg = contract_config()
    loader = tiny_loader()
    a = registry.get("kcenter").score(
        contract_examples(), ScoringContext(cfg, tmp_path / "k", loader=loader, shared_workdir=tmp_path / "s")
    )
    b = registry.get("facility_location").score(
        contract_examples(), ScoringContext(cfg, tmp_path / "f", loader=loader, shared_workdir=tmp_path / "s")
    )
    assert calls == [8] and len(a) == len(b) == 10
    again = registry.get("kcenter").score(
        list(reversed(contract_examples())),
        ScoringContext(cfg, tmp_path / "k2", loader=loader, shared_workdir=tmp_path / "s"),
    )
    assert calls == [8] and {r.id: r.score for r in again} == pytest.approx({r.id: r.score for r in a}, nan_ok=True)


def test_resolve_names_the_composed_target():
    assert registry.resolve("ifd+kcenter") == registry.BUILTIN["ifd"] + "+kcenter"
    with pytest.raises(registry.UnknownSelector, match="unknown diversity step"):
        registry.resolve("ifd+dpp")
    with pytest.raises(registry.UnknownSelector, match="Did you mean"):
        registry.resolve("ifdd+kcenter")
