"""MoDS on tiny stand-ins: a tiny sequence-classification model as the reward model, the tiny LM as seed model."""

import math

import pytest

from cpqs_bench.selectors import mods, registry
from cpqs_bench.selectors.base import ScoringContext
from cpqs_bench.selectors.mods import LOW_QUALITY, UNTUNED, MoDSSelector, reward_scores, seed_ids
from cpqs_bench.testing import check_selector, contract_config, contract_examples, tiny_loader, tiny_reward_loader


def _ctx(tmp_path, **over):
    cfg = contract_config(**{"selectors.mods.max_new_tokens": 4, **over})
    return ScoringContext(cfg, tmp_path, loader=tiny_loader(), reward_loader=tiny_reward_loader())


def test_mods_contract():
    check_selector("mods")


def test_mods_tiers_seed_then_necessary_then_quality(tmp_path):
    # threshold below every reward: the whole pool is high quality; necessity threshold above every reward
    rows = MoDSSelector().score(
        contract_examples(),
        _ctx(
            tmp_path,
            **{
                "selectors.mods.quality_threshold": -1e9,
                "selectors.mods.seed_count": 3,
                "selectors.mods.necessity_threshold": 1e9,
            },
        ),
    )
    live = [r for r in rows if r.exclude is None]
    assert len(live) == 8
    kinds = {r.id: r.extra["mods"] for r in live}
    assert sum(k == "seed" for k in kinds.values()) == 3
    assert all(k in ("seed", "necessary") for k in kinds.values())
    assert all(r.score > 2 for r in live if kinds[r.id] == "seed")
    assert all(1 <= r.score < 2 for r in live if kinds[r.id] == "necessary")
    assert all("seed_answer_reward" in r.extra for r in live if kinds[r.id] != "seed")
    assert len(seed_ids(rows)) == 3 and seed_ids([r.to_dict() for r in rows]) == seed_ids(rows)
    assert all(r.extra["seed_model"] == UNTUNED for r in live)  # standalone, no seed_model: the labelled deviation
    # nothing necessary: non-seeds are ranked by quality below the seeds
    rows2 = MoDSSelector().score(
        contract_examples(),
        _ctx(
            tmp_path / "b",
            **{
                "selectors.mods.quality_threshold": -1e9,
                "selectors.mods.seed_count": 3,
                "selectors.mods.necessity_threshold": -1e9,
            },
        ),
    )
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


ALL_HIGH = {
    "selectors.mods.quality_threshold": -1e9,
    "selectors.mods.seed_count": 3,
    "selectors.mods.necessity_threshold": 0.5,
}


def test_the_phases_run_separately_compose_to_the_selector(tmp_path):
    ex = contract_examples()
    ctx = _ctx(tmp_path, **ALL_HIGH)
    cov = mods.quality_and_coverage(ex, ctx)
    assert len(cov.seeds) == 3 and set(cov.seeds) <= set(cov.high) and len(cov.rest) == len(cov.high) - 3
    nec = mods.necessity(ex, cov, ctx, mods.standalone_seed_model(ctx))
    assert set(nec.answers) == set(nec.reward) == set(cov.rest) and nec.seed_model == UNTUNED
    by_hand = [r.to_dict() for r in mods.mods_rows(ex, cov, nec, ctx)]
    assert by_hand == [r.to_dict() for r in MoDSSelector().score(ex, _ctx(tmp_path / "b", **ALL_HIGH))]


def test_a_phase_folder_supplies_the_phases_it_holds(tmp_path):
    """What reproduce hands the selector: coverage.jsonl (+ necessity.json). The folder's answers decide the tiers."""
    ex = contract_examples()
    ctx = _ctx(tmp_path, **ALL_HIGH)
    cov = mods.quality_and_coverage(ex, ctx)
    folder = tmp_path / "phases"
    folder.mkdir()
    cov.write(folder / mods.COVERAGE_FILE, ex)
    assert mods.Coverage.read(folder / mods.COVERAGE_FILE, ex) == cov
    rest = sorted(cov.rest)
    necessary = set(rest[:2])  # rewards below necessity_threshold=0.5 for two of them, above for the others
    made = mods.Necessity(
        "a seed model of the test", {i: "answer" for i in rest}, {i: (0.0 if i in necessary else 1.0) for i in rest}
    )
    made.write(folder / mods.NECESSITY_FILE)
    assert mods.Necessity.read(folder / mods.NECESSITY_FILE) == made
    rows = MoDSSelector().score(
        ex,
        ScoringContext(
            ctx.config, tmp_path / "w", checkpoint=folder, loader=tiny_loader(), reward_loader=tiny_reward_loader()
        ),
    )
    kinds = {r.id: r.extra["mods"] for r in rows if r.exclude is None}
    assert {i for i, k in kinds.items() if k == "necessary"} == necessary
    assert {i for i, k in kinds.items() if k == "seed"} == set(cov.seeds)
    assert all(r.extra["seed_model"] == "a seed model of the test" for r in rows if r.exclude is None)
    # coverage only: necessity is computed with the standalone seed model
    (folder / mods.NECESSITY_FILE).unlink()
    rows = MoDSSelector().score(
        ex,
        ScoringContext(
            ctx.config, tmp_path / "w2", checkpoint=folder, loader=tiny_loader(), reward_loader=tiny_reward_loader()
        ),
    )
    assert {r.extra["seed_model"] for r in rows if r.exclude is None} == {UNTUNED}
    with pytest.raises(FileNotFoundError, match="coverage.jsonl"):
        MoDSSelector().score(
            ex,
            ScoringContext(
                ctx.config,
                tmp_path / "w3",
                checkpoint=tmp_path / "w3",
                loader=tiny_loader(),
                reward_loader=tiny_reward_loader(),
            ),
        )


def test_phases_that_disagree_are_refused(tmp_path):
    ex = contract_examples()
    ctx = _ctx(tmp_path, **ALL_HIGH)
    cov = mods.quality_and_coverage(ex, ctx)
    cov.write(tmp_path / "c.jsonl", ex)
    with pytest.raises(ValueError, match="different pool"):
        mods.Coverage.read(tmp_path / "c.jsonl", ex[:-1])
    with pytest.raises(ValueError, match="phases disagree"):
        mods.mods_rows(ex, cov, mods.Necessity("x", {}, {}), ctx)
    with pytest.raises(ValueError, match="no seed model"):
        mods.necessity(ex, cov, ctx, mods.SeedModel(None, None, "nothing"))


def test_a_named_seed_model_is_recorded(tmp_path):
    rows = MoDSSelector().score(
        contract_examples(), _ctx(tmp_path, **ALL_HIGH, **{"selectors.mods.seed_model": "my/seed-model"})
    )
    assert {r.extra["seed_model"] for r in rows if r.exclude is None} == {"my/seed-model"}


def test_coverage_settings_leave_out_the_necessity_phase():
    """reproduce keys its seed stages on these: a necessity change must not retrain the seed model."""
    base = contract_config()
    same = contract_config(
        **{
            "selectors.mods.necessity_threshold": 3.0,
            "selectors.mods.max_new_tokens": 99,
            "selectors.mods.generation_batch_size": 1,
        }
    )
    assert mods.coverage_settings(same.selectors) == mods.coverage_settings(base.selectors)
    seeded = contract_config(**{"selectors.mods.seed_count": 5})
    assert mods.coverage_settings(seeded.selectors) != mods.coverage_settings(base.selectors)
