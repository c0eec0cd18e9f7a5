"""Power helpers against hand-computed values, and the cells they produce."""

from __future__ import annotations

import numpy as np
import pytest

from cpqs_bench import stats


@pytest.mark.parametrize(
    "m, expected", [(0, 1.0), (1, 1.0), (2, 0.5), (3, 0.25), (5, 0.0625), (6, 0.03125), (10, 2 / 1024)]
)
def test_attainable_p_is_two_over_two_to_the_m(m, expected):
    assert stats.attainable_p(m) == pytest.approx(expected)


def test_attainable_p_is_what_the_exact_test_gives_on_same_sign_differences():
    for m in range(1, 9):
        p, method = stats.sign_flip_pvalue(np.ones(m), np.random.default_rng(0))
        assert method == "exact" and p == pytest.approx(stats.attainable_p(m))


def test_mde_by_hand():
    # (1.959964 + 0.841621) * 0.5 / sqrt(100) = 0.1400793
    assert stats.min_detectable_effect(0.5, 100) == pytest.approx(0.1400793, rel=1e-5)
    # alpha 0.01: (2.575829 + 0.841621) * 1 / sqrt(25) = 0.68349
    assert stats.min_detectable_effect(1.0, 25, alpha=0.01) == pytest.approx(0.68349, rel=1e-4)
    assert stats.min_detectable_effect(1.0, 1) is None


def test_five_items_cannot_reach_alpha_even_when_all_improve():
    seeds = (1, 2, 3)
    rand = [stats.ArmResult("random", s, "r", {}, {"t": {str(i): 0.0 for i in range(5)}}, {}) for s in seeds]
    cpqs = [stats.ArmResult("cpqs", s, "r", {}, {"t": {str(i): 1.0 for i in range(5)}}, {}) for s in seeds]
    c = stats.summarize(rand + cpqs, n_boot=200)["per_task"]["t"]["comparisons"]["random"]["cpqs"]
    assert c["p_min_item"] == pytest.approx(0.0625) and c["can_reach_alpha"] is False
    assert c["label"] == "cannot reach α (n = 5)" and "n.s." not in c["label"]
    assert c["p_min_seed"] == pytest.approx(0.25)


def test_mde_in_a_comparison_uses_seed_averaged_item_differences():
    rng = np.random.default_rng(0)
    base = rng.random(50)
    arm = [
        stats.ArmResult(
            "cpqs", s, "r", {}, {"t": {str(i): float(v + 0.01 * s) for i, v in enumerate(rng.random(50))}}, {}
        )
        for s in (1, 2, 3)
    ]
    ref = stats.ArmResult("base", None, None, {}, {"t": {str(i): float(v) for i, v in enumerate(base)}}, {})
    c = stats.summarize([ref, *arm], references=("base",), n_boot=200)["per_task"]["t"]["comparisons"]["base"]["cpqs"]
    d = np.mean([[arm_r.items["t"][str(i)] - base[i] for i in range(50)] for arm_r in arm], axis=0)
    assert c["sd_diff"] == pytest.approx(d.std(ddof=1))
    assert c["mde"] == pytest.approx(stats.min_detectable_effect(d.std(ddof=1), 50))
    assert c["pairing"] == "reference broadcast" and c["n_seeds_paired"] == 3
