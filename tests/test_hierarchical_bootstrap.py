"""The hierarchical (seeds, then items) paired bootstrap against a brute-force enumeration of every resample."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cpqs_bench import stats


def _exact_distribution(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All S**S × n**n equally likely (seed draw, item draw) pairs: the exact law of the resampled mean."""
    n_seeds, n_items = d.shape
    values = []
    for rows in itertools.product(range(n_seeds), repeat=n_seeds):
        for cols in itertools.product(range(n_items), repeat=n_items):
            values.append(d[np.ix_(rows, cols)].mean())
    values = np.sort(np.array(values))
    return values, np.full(values.size, 1.0 / values.size)


def _cdf(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_values, x, side="right") / sorted_values.size


@pytest.mark.parametrize(
    "d",
    [
        np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]]),  # 2 seeds × 3 items (binary-ish differences)
        np.array([[0.3, -0.2, 0.9], [0.1, 0.4, -0.5], [0.0, 0.2, 0.7]]),  # 3 × 3, continuous
        np.array([[1.0, -1.0, 0.0, 1.0]]),  # 1 seed: reduces to the item bootstrap
    ],
)
def test_bootstrap_distribution_matches_enumeration(d):
    exact, _ = _exact_distribution(d)
    exact = np.round(exact, 9)  # the same mean summed in another order differs in the last bits: align the atoms
    draws = np.sort(np.round(stats.hierarchical_bootstrap_means(d, 40_000, np.random.default_rng(0)), 9))
    grid = np.unique(np.concatenate([exact, draws]))
    ks = np.max(np.abs(_cdf(exact, grid) - _cdf(draws, grid)))
    assert ks < 0.015  # Kolmogorov distance of 40,000 draws from the exact law (99.9 % bound ≈ 0.0098)
    assert draws.mean() == pytest.approx(exact.mean(), abs=0.01)
    assert draws.std() == pytest.approx(exact.std(), rel=0.03)
    for q in (0.025, 0.5, 0.975):
        lo, hi = np.quantile(exact, [max(0.0, q - 0.01), min(1.0, q + 0.01)])
        assert lo - 1e-12 <= np.quantile(draws, q) <= hi + 1e-12


def test_one_seed_is_the_item_bootstrap_and_seed_noise_widens_the_ci():
    rng = np.random.default_rng(4)
    items = rng.normal(0.1, 1.0, size=60)
    one = stats.percentile_ci(stats.hierarchical_bootstrap_means(items[None, :], 20_000, np.random.default_rng(1)))
    ref = stats.bootstrap_mean_ci(items, 20_000, np.random.default_rng(2))
    assert one == pytest.approx(ref, abs=0.03)
    # three seeds that shift every item by -0.5, 0, +0.5: the seed spread must appear in the CI
    noisy = np.stack([items - 0.5, items, items + 0.5])
    wide = stats.percentile_ci(stats.hierarchical_bootstrap_means(noisy, 20_000, np.random.default_rng(1)))
    assert (wide[1] - wide[0]) > 1.5 * (one[1] - one[0])


def test_bootstrap_is_seeded_and_chunk_independent_in_law(monkeypatch):
    d = np.random.default_rng(3).random((3, 20))
    a = stats.hierarchical_bootstrap_means(d, 3000, np.random.default_rng(5))
    b = stats.hierarchical_bootstrap_means(d, 3000, np.random.default_rng(5))
    assert np.array_equal(a, b)
    monkeypatch.setattr(stats, "_CHUNK_CELLS", 100)  # 4 resamples per chunk
    c = stats.hierarchical_bootstrap_means(d, 3000, np.random.default_rng(5))
    assert c.size == 3000 and np.quantile(c, 0.5) == pytest.approx(np.quantile(a, 0.5), abs=0.02)


def test_rejects_empty_or_flat_input():
    with pytest.raises(ValueError, match="seeds × items"):
        stats.hierarchical_bootstrap_means(np.zeros((2, 0)), 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="seeds × items"):
        stats.hierarchical_bootstrap_means(np.zeros(5), 10, np.random.default_rng(0))
