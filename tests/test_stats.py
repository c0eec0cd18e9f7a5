"""Statistics: hand-computable cases for seeds, paired bootstrap, sign-flip permutation and recipe checks."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from cpqs_bench import stats
from cpqs_bench.stats import ArmResult, RecipeMismatch


def _arm(arm: str, seed: int | None, scores: dict[str, list[float]], recipe: str | None = "r1") -> ArmResult:
    items = {task: {str(i): float(v) for i, v in enumerate(vals)} for task, vals in scores.items()}
    metrics = {task: float(np.mean(vals)) for task, vals in scores.items()}
    return ArmResult(
        arm=arm,
        seed=seed,
        recipe_hash=None if arm == "base" else recipe,
        manifest={"arm": arm, "seed": seed},
        items=items,
        metrics=metrics,
    )


# ------------------------------------------------------------------ seeds


def test_seed_mean_std_by_hand():
    s = stats.seed_stats([0.2, 0.4, 0.9])
    assert s["mean"] == pytest.approx(0.5)
    # deviations -0.3, -0.1, 0.4 -> squares 0.09 + 0.01 + 0.16 = 0.26; / (3 - 1) = 0.13
    assert s["std"] == pytest.approx(math.sqrt(0.13))
    assert s["n_seeds"] == 3
    one = stats.seed_stats([0.7])
    assert one == {"mean": 0.7, "std": None, "n_seeds": 1}


def test_summarize_seed_stats_use_item_means_per_seed():
    results = [
        _arm("cpqs", 1, {"t": [1, 0, 0, 0]}),
        _arm("cpqs", 2, {"t": [1, 1, 0, 0]}),
        _arm("cpqs", 3, {"t": [1, 1, 1, 0]}),
    ]
    s = stats.summarize(results, n_boot=200)
    a = s["per_task"]["t"]["arms"]["cpqs"]
    assert a["mean"] == pytest.approx(0.5)
    assert a["std"] == pytest.approx(0.25)  # 0.25, 0.5, 0.75: deviations ±0.25, sum of squares 0.125 / 2
    assert a["n_seeds"] == 3
    assert [p["seed"] for p in a["per_seed"]] == [1, 2, 3]
    assert s["seeds"]["cpqs"] == [1, 2, 3]


# ------------------------------------------------------------------ permutation


def _enumerate_p(d: list[float]) -> float:
    """Independent reference: every sign pattern written out with itertools."""
    obs = abs(sum(d))
    hits = sum(
        1
        for signs in itertools.product((1, -1), repeat=len(d))
        if abs(sum(s * x for s, x in zip(signs, d))) >= obs - 1e-12
    )
    return hits / 2 ** len(d)


def test_sign_flip_exact_matches_hand_values():
    rng = np.random.default_rng(0)
    # All five +1: only all-plus and all-minus reach |sum| = 5 -> 2 / 32.
    assert stats.sign_flip_pvalue([1, 1, 1, 1, 1], rng) == (2 / 32, "exact")
    # [3, 1, 1]: sums 5, 3, 3, 1, -1, -3, -3, -5 -> |s| >= 5 twice -> 2 / 8.
    assert stats.sign_flip_pvalue([3, 1, 1], rng)[0] == pytest.approx(0.25)
    # [1, -1]: sums 0, 2, -2, 0 with observed 0 -> all 4 are as extreme -> 1.
    assert stats.sign_flip_pvalue([1, -1], rng)[0] == pytest.approx(1.0)
    # Zeros are dropped from the enumeration: same as [1, 1, 1, 1, 1].
    assert stats.sign_flip_pvalue([0, 1, 0, 1, 1, 1, 1], rng) == (2 / 32, "exact")
    # Many ties (zeros) still allow exact enumeration: only the 3 non-zero differences count -> 2 / 8.
    assert stats.sign_flip_pvalue([0.0] * 30 + [1, 1, 1], rng) == (0.25, "exact")


@pytest.mark.parametrize("d", [[0.5, -0.25, 1, 1, 0.75], [1, 1, 1, -1, 1, 1, 0.5, 1, -0.5, 1], [2, -1, -1, 0.3]])
def test_sign_flip_exact_equals_enumeration(d):
    assert stats.sign_flip_pvalue(d, np.random.default_rng(0))[0] == pytest.approx(_enumerate_p(d))


def test_sign_flip_monte_carlo_close_to_exact_and_plus_one():
    d = np.array([1.0] * 11 + [-1.0] * 5 + [0.5] * 2)  # 18 non-zero -> Monte Carlo
    exact = _exact_p_vectorised(d)
    p, method = stats.sign_flip_pvalue(d, np.random.default_rng(1), n_perm=20_000)
    assert method == "monte_carlo"
    assert p == pytest.approx(exact, abs=0.01)
    # An extreme sample: no random pattern reaches it, yet the +1 correction keeps p > 0.
    p_all, _ = stats.sign_flip_pvalue(np.ones(40), np.random.default_rng(1), n_perm=999)
    assert p_all == pytest.approx(1 / 1000)


def _exact_p_vectorised(d: np.ndarray) -> float:
    m = d.size
    codes = np.arange(2**m, dtype=np.int64)[:, None]
    signs = 1 - 2 * ((codes >> np.arange(m)) & 1)
    return float(np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-9))


# ------------------------------------------------------------------ bootstrap and comparisons


def test_identical_arms_zero_diff_ci_zero_p_one():
    scores = {"t": [1, 0, 1, 1, 0, 0.5]}
    results = [_arm("random", 1, scores), _arm("cpqs", 1, scores)]
    c = stats.summarize(results, n_boot=500)["per_task"]["t"]["comparisons"]["random"]["cpqs"]
    assert c["mean_diff"] == 0.0
    assert (c["ci_low"], c["ci_high"]) == (0.0, 0.0)
    assert c["p_value"] == 1.0
    # no non-zero difference: the test has no power at all, and one seed cannot show seed variation
    assert c["significant"] is False and c["label"] == "cannot reach α (n = 0); seed variation not estimable"


def test_arm_better_on_every_item_is_significant():
    n = 30
    seeds = (1, 2, 3)
    results = [_arm("random", s, {"t": [0] * n}) for s in seeds] + [_arm("cpqs", s, {"t": [1] * n}) for s in seeds]
    c = stats.summarize(results, n_boot=1000)["per_task"]["t"]["comparisons"]["random"]["cpqs"]
    assert c["mean_diff"] == 1.0 and c["ci_low"] == 1.0 and c["ci_high"] == 1.0
    assert c["p_method"] == "monte_carlo" and c["p_value"] == pytest.approx(1 / 10_001)
    assert c["significant"] is True and c["direction"] == "better" and c["label"] == "sig"
    # and the other way round: the reference beats the arm
    worse = stats.summarize(results, references=("cpqs",), n_boot=1000)["per_task"]["t"]["comparisons"]["cpqs"]
    assert worse["random"]["direction"] == "worse" and worse["random"]["significant"] is True


def test_two_seeds_never_give_a_verdict():
    n = 30
    results = [_arm("random", s, {"t": [0] * n}) for s in (1, 2)] + [_arm("cpqs", s, {"t": [1] * n}) for s in (1, 2)]
    c = stats.summarize(results, n_boot=500)["per_task"]["t"]["comparisons"]["random"]["cpqs"]
    assert c["p_value"] < 0.05 and c["ci_low"] == 1.0  # the item-level evidence alone would say "better"
    assert c["significant"] is False and c["verdict"] is None
    assert c["label"] == "seed variation not estimable" and c["n_seeds_paired"] == 2


def test_seeds_that_disagree_give_no_verdict():
    # seed 1 and 2: cpqs better on every item; seed 3: much worse -> item-level significant, seeds disagree
    n = 40
    rand = [_arm("random", s, {"t": [0.0] * n}) for s in (1, 2, 3)]
    cpqs = [_arm("cpqs", 1, {"t": [1.0] * n}), _arm("cpqs", 2, {"t": [1.0] * n}), _arm("cpqs", 3, {"t": [0.0] * n})]
    c = stats.summarize(rand + cpqs, n_boot=2000)["per_task"]["t"]["comparisons"]["random"]["cpqs"]
    assert c["seed_diffs"] == [1.0, 1.0, 0.0]
    assert c["p_value"] < 0.05 and c["seed_agrees"] is False
    assert c["significant"] is False and c["label"] == "no verdict (seeds disagree)"
    # the hierarchical CI sees the seed spread: the item-only CI (seeds averaged first) is far narrower
    assert c["ci_high"] - c["ci_low"] > 5 * (c["item_ci_high"] - c["item_ci_low"])


def test_lower_is_better_metric_flips_direction():
    n = 30
    seeds = (1, 2, 3)
    rand = [_arm("random", s, {"gsm8k_nll": [2.0] * n}) for s in seeds]
    cpqs = [_arm("cpqs", s, {"gsm8k_nll": [1.5 + 0.01 * s] * n}) for s in seeds]
    s = stats.summarize(rand + cpqs, n_boot=500)
    task = s["per_task"]["gsm8k_nll"]
    assert task["higher_is_better"] is False and task["proxy"] is True and task["domain"] == "math"
    c = task["comparisons"]["random"]["cpqs"]
    assert c["mean_diff"] < 0 and c["direction"] == "better" and c["verdict"] == "▲"


def test_manifest_marks_direction_proxy_and_domain():
    r = _arm("random", 1, {"mystery": [3.0, 4.0]})
    r.manifest["tasks"] = {"mystery": {"metric": "loss", "higher_is_better": False, "domain": "code"}}
    facts = stats.task_facts("mystery", [r])
    assert facts == {"metric": "loss", "higher_is_better": False, "proxy": True, "domain": "code"}
    assert stats.task_facts("arc_challenge", [r])["domain"] == "general"
    assert stats.task_facts("humaneval_plus", [r])["domain"] == "code"


def test_short_arm_is_warned_and_reported():
    r = _arm("ifd", 1, {"t": [1, 0]})
    r.manifest["arm_info"] = {"kept": 7, "budget_k": 10, "total": 100, "selector": "ifd"}
    s = stats.summarize([r, _arm("random", 1, {"t": [0, 0]})], n_boot=50)
    info = s["arm_info"]["ifd"]
    assert info["kept"] == [7] and info["budget_k"] == 10 and info["budget_fraction"] == 0.1 and info["short"]
    assert any("fewer examples than its budget" in w and "k = 10" in w for w in s["warnings"])


def test_small_sample_ci_excludes_zero_but_p_not_small_is_ns():
    # 3 items all +1: CI is [1, 1] but the exact p-value is 2/8 = 0.25 -> not significant.
    results = [_arm("random", 1, {"t": [0, 0, 0]}), _arm("cpqs", 1, {"t": [1, 1, 1]})]
    c = stats.summarize(results, n_boot=200)["per_task"]["t"]["comparisons"]["random"]["cpqs"]
    assert c["ci_low"] == 1.0 and c["p_value"] == pytest.approx(0.25) and c["p_method"] == "exact"
    assert c["p_min_item"] == pytest.approx(0.25) and c["can_reach_alpha"] is False
    assert c["significant"] is False and c["label"] == "cannot reach α (n = 3); seed variation not estimable"


def test_bootstrap_ci_covers_true_difference():
    rng = np.random.default_rng(123)
    true = 0.1
    covered = 0
    trials = 60
    for i in range(trials):
        d = rng.normal(true, 0.5, size=200)
        low, high = stats.bootstrap_mean_ci(d, 2000, np.random.default_rng(i))
        assert low < d.mean() < high
        covered += low <= true <= high
    assert covered / trials >= 0.85  # nominal 95%; 60 trials leave room for chance without accepting a broken CI


def test_bootstrap_ci_width_matches_normal_theory():
    d = np.random.default_rng(7).normal(0, 1, size=400)
    low, high = stats.bootstrap_mean_ci(d, 10_000, np.random.default_rng(0))
    expected_half = 1.96 * d.std(ddof=1) / math.sqrt(d.size)
    assert (high - low) / 2 == pytest.approx(expected_half, rel=0.1)


def test_bootstrap_is_seeded_and_chunking_is_consistent(monkeypatch):
    d = np.random.default_rng(3).random(50)
    a = stats.bootstrap_mean_ci(d, 3000, np.random.default_rng(5))
    b = stats.bootstrap_mean_ci(d, 3000, np.random.default_rng(5))
    assert a == b
    monkeypatch.setattr(stats, "_CHUNK_CELLS", 1000)  # 20 resamples per chunk: different draws, similar CI
    c = stats.bootstrap_mean_ci(d, 3000, np.random.default_rng(5))
    assert c[0] == pytest.approx(a[0], abs=0.02) and c[1] == pytest.approx(a[1], abs=0.02)


def test_per_item_seed_averaging_and_unpaired_counts():
    # cpqs seeds disagree on doc "0": averaged to 0.5. Doc "3" exists only in cpqs, doc "4" only in random.
    cpqs1 = ArmResult("cpqs", 1, "r1", {}, {"t": {"0": 1.0, "1": 1.0, "2": 0.0, "3": 1.0}}, {})
    cpqs2 = ArmResult("cpqs", 2, "r1", {}, {"t": {"0": 0.0, "1": 1.0, "2": 0.0, "3": 1.0}}, {})
    rand = ArmResult("random", 1, "r1", {}, {"t": {"0": 0.0, "1": 0.0, "2": 0.0, "4": 1.0}}, {})
    s = stats.summarize([cpqs1, cpqs2, rand], n_boot=300)
    c = s["per_task"]["t"]["comparisons"]["random"]["cpqs"]
    assert c["n_paired"] == 3 and c["n_unpaired_arm"] == 1 and c["n_unpaired_reference"] == 1
    assert c["mean_diff"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert c["n_nonzero"] == 2
    assert any("only in cpqs" in w for w in s["warnings"])


def test_summary_is_json_serialisable_and_deterministic():
    rng = np.random.default_rng(0)
    results = [
        _arm(a, s, {"gsm8k": list(rng.integers(0, 2, 40)), "humaneval": list(rng.random(20))})
        for a in ("random", "full", "cpqs")
        for s in (1, 2)
    ]
    results.append(_arm("base", None, {"gsm8k": [0] * 40, "humaneval": [0.0] * 20}))
    one = stats.summarize(results, n_boot=500)
    two = stats.summarize(list(reversed(results)), n_boot=500)
    assert json.loads(json.dumps(one)) == one
    assert one == two  # independent of input order
    assert one["arms"] == ["base", "full", "random", "cpqs"]
    assert set(one["per_task"]["gsm8k"]["comparisons"]["full"]) == {"base", "random", "cpqs"}
    assert one["per_task"]["gsm8k"]["arms"]["base"]["std"] is None
    assert one["recipe_hash"] == "r1"


def test_missing_reference_is_reported():
    s = stats.summarize([_arm("full", 1, {"t": [1, 0]}), _arm("cpqs", 1, {"t": [1, 1]})], n_boot=100)
    assert s["references"] == ["full"] and s["missing_references"] == ["random"]


# ------------------------------------------------------------------ validation


def test_recipe_mismatch_raises_naming_arms_and_hashes():
    results = [
        _arm("random", 1, {"t": [1]}, recipe="aaa"),
        _arm("cpqs", 1, {"t": [1]}, recipe="bbb"),
        _arm("base", None, {"t": [0]}),
    ]
    with pytest.raises(RecipeMismatch) as exc:
        stats.summarize(results)
    msg = str(exc.value)
    assert "aaa" in msg and "bbb" in msg and "random" in msg and "cpqs" in msg


def test_recipe_check_ignores_base_and_rejects_missing_hash():
    assert stats.check_recipes([_arm("base", None, {"t": [0]}), _arm("cpqs", 1, {"t": [1]})]) == "r1"
    with pytest.raises(RecipeMismatch, match="no recipe hash"):
        stats.check_recipes([ArmResult("cpqs", 1, None, {}, {}, {})])


def test_duplicate_arm_seed_rejected():
    with pytest.raises(ValueError, match="duplicate result"):
        stats.summarize([_arm("cpqs", 1, {"t": [1]}), _arm("cpqs", 1, {"t": [0]})])


# ------------------------------------------------------------------ loading


def _write_eval_dir(path, manifest, rows, metrics):
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "items.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_load_arm_result_round_trip(tmp_path):
    d = _write_eval_dir(
        tmp_path / "e",
        {"arm": "cpqs", "seed": 3, "recipe_hash": "abc", "commit": "deadbeef"},
        [
            {"task": "gsm8k", "doc_id": 0, "correct": True, "extra": "x"},
            {"task": "gsm8k", "doc_id": "1", "correct": 0},
            {"task": "humaneval", "doc_id": "HumanEval/0", "correct": 0.5},
        ],
        {"gsm8k": 0.5, "humaneval": 0.5},
    )
    r = stats.load_arm_result(d)
    assert (r.arm, r.seed, r.recipe_hash) == ("cpqs", 3, "abc")
    assert r.items == {"gsm8k": {"0": 1.0, "1": 0.0}, "humaneval": {"HumanEval/0": 0.5}}
    assert r.metrics == {"gsm8k": 0.5, "humaneval": 0.5}
    assert r.manifest["commit"] == "deadbeef"


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ("{not json", "invalid JSON"),
        ({"task": "gsm8k", "doc_id": "2"}, "missing key 'correct'"),
        ({"task": "gsm8k", "doc_id": "2", "correct": float("nan")}, r"finite number"),
        ({"task": "gsm8k", "doc_id": "2", "correct": "yes"}, r"boolean or a finite number"),
        ({"task": "", "doc_id": "2", "correct": 1}, "non-empty string"),
        ({"task": "gsm8k", "doc_id": "0", "correct": 1}, "duplicate item.*line 1"),
    ],
)
def test_load_malformed_item_names_file_and_line(tmp_path, bad_row, message):
    d = _write_eval_dir(
        tmp_path / "e",
        {"arm": "cpqs", "seed": 1, "recipe_hash": "abc"},
        [{"task": "gsm8k", "doc_id": "0", "correct": 1}, "", bad_row],
        {"gsm8k": 1.0},
    )
    with pytest.raises(ValueError, match=message) as exc:
        stats.load_arm_result(d)
    assert f"{d / 'items.jsonl'}:3:" in str(exc.value)


def test_load_rejects_bad_manifest_and_missing_files(tmp_path):
    d = _write_eval_dir(tmp_path / "a", {"arm": "cpqs", "seed": 1}, [], {})
    with pytest.raises(ValueError, match="manifest.json: missing key 'recipe_hash'"):
        stats.load_arm_result(d)
    d = _write_eval_dir(tmp_path / "b", {"arm": "cpqs", "seed": 1, "recipe_hash": None}, [], {})
    with pytest.raises(ValueError, match="null for fine-tuned arm"):
        stats.load_arm_result(d)
    d = _write_eval_dir(tmp_path / "c", {"arm": "base", "seed": None, "recipe_hash": None}, [], {"t": "high"})
    with pytest.raises(ValueError, match="metrics.json: metric 't'"):
        stats.load_arm_result(d)
    (d / "items.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="items.jsonl"):
        stats.load_arm_result(d)


def test_metric_disagreeing_with_items_is_warned():
    r = ArmResult("random", 1, "r1", {}, {"t": {"0": 1.0, "1": 0.0}}, {"t": 0.9})
    s = stats.summarize([r], n_boot=100)
    assert s["per_task"]["t"]["arms"]["random"]["mean"] == 0.5
    assert any("differs from its item mean" in w for w in s["warnings"])


def test_an_items_file_cut_below_its_recorded_count_is_refused(tmp_path):
    """A cut items.jsonl would silently move the arm's mean (issue #34): the count recorded in the manifest wins."""
    rows = [{"task": "gsm8k", "doc_id": i, "correct": i % 2} for i in range(10)]
    manifest = {"arm": "cpqs", "seed": 0, "recipe_hash": "abc", "n_items": {"gsm8k": 10}}
    ok = stats.load_arm_result(_write_eval_dir(tmp_path / "ok", manifest, rows, {"gsm8k": 0.5}))
    assert len(ok.items["gsm8k"]) == 10
    with pytest.raises(
        ValueError, match=r"items.jsonl: item count differs from manifest.json n_items \(gsm8k: 9 rows, 10 recorded\)"
    ):
        stats.load_arm_result(_write_eval_dir(tmp_path / "cut", manifest, rows[:9], {"gsm8k": 0.5}))
