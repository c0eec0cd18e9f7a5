"""MoDS on tiny stand-ins: a tiny sequence-classification model as the reward model, the tiny LM as seed model."""
import math

import pytest

from cpqs_bench.selectors import registry
from cpqs_bench.selectors.base import ScoringContext
from cpqs_bench.selectors.mods import LOW_QUALITY, MoDSSelector, reward_scores, seed_ids
from cpqs_bench.testing import check_selector, contract_config, contract_examples, tiny_loader, tiny_reward_loader


def _ctx(tmp_path, **over):
    cfg = contract_config(**{"selectors.mods.max_new_tokens": 4, **over})
    return ScoringContext(cfg, tmp_path, loader=tiny_loader(), reward_loader=tiny_reward_loader())


def test_mods_contract():
    check_selector("mods")


def test_mods_tiers_seed_then_necessary_then_quality(tmp_path):
    # threshold below every reward: the whole pool is high quality; necessity threshold above every reward
    rows = MoDSSelector().score(contract_examples(), _ctx(
        tmp_path, **{"selectors.mods.quality_threshold": -1e9, "selectors.mods.seed_count": 3,
                     "selectors.mods.necessity_threshold": 1e9}))
    live = [r for r in rows if r.exclude is None]
    assert len(live) == 8
    kinds = {r.id: r.extra["mods"] for r in live}
    assert sum(k == "seed" for k in kinds.values()) == 3
    assert all(k in ("seed", "necessary") for k in kinds.values())
    assert all(r.score > 2 for r in live if kinds[r.id] == "seed")
    assert all(1 <= r.score < 2 for r in live if kinds[r.id] == "necessary")
    assert all("seed_answer_reward" in r.extra for r in live if kinds[r.id] != "seed")
    assert len(seed_ids(rows)) == 3 and seed_ids([r.to_dict() for r in rows]) == seed_ids(rows)
    assert all(r.extra["seed_model"].startswith("target") for r in live)
    # nothing necessary: non-seeds are ranked by quality below the seeds
    rows2 = MoDSSelector().score(contract_examples(), _ctx(
        tmp_path / "b", **{"selectors.mods.quality_threshold": -1e9, "selectors.mods.seed_count": 3,
                           "selectors.mods.necessity_threshold": -1e9}))
    q = sorted((r for r in rows2 if r.exclude is None and r.extra["mods"] == "quality_only"), key=lambda r: -r.score)
    assert [r.extra["quality"] for r in q] == sorted((r.extra["quality"] for r in q), reverse=True)


def test_low_quality_is_excluded_with_its_reward(tmp_path):
    rows = MoDSSelector().score(contract_examples(), _ctx(tmp_path, **{"selectors.mods.quality_threshold": 1e9}))
    assert all(r.exclude in (LOW_QUALITY, "empty_response") for r in rows)
    assert all(math.isfinite(r.score) and r.score == r.extra["quality"] for r in rows if r.exclude == LOW_QUALITY)


def test_reward_scores_do_not_depend_on_order_or_batch():
    model, tok = tiny_reward_loader()("x")
    pairs = [("What is 2+2?", "4"), ("Name a colour.", "Blue, like the sea."), ("Hi", "Hello there, friend!")]
    a = reward_scores(model, tok, pairs, batch_size=2)
    b = reward_scores(model, tok, list(reversed(pairs)), batch_size=1)
    assert a == pytest.approx(list(reversed(b)), abs=1e-5)


def test_registered():
    assert registry.get("mods").name == "mods"
