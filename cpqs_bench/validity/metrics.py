"""Validity metrics: paired / unpaired AUC, pairwise accuracy, percentile bootstrap CIs. Ties count one half.

Scores are "higher = keep". A row the selector excludes (``exclude`` set, or a missing/non-finite score) ranks below
every eligible row, as selection treats it (it is never kept); two excluded rows tie. :func:`rank_key` applies that.

* **paired AUC** — over (clean, planted) pairs where the planted row is a variant of that clean row: the mean of
  1 / 0.5 / 0 for clean above / tied with / below its variant. Bootstrap: resample pairs.
* **unpaired AUC** — Mann-Whitney: P(score(clean) > score(planted)) + ½ P(tie) over all clean x planted rows.
  Bootstrap: resample the clean and the planted rows independently (stratified).
* **pairwise accuracy** — P(score(strong) > score(weak)) + ½ P(tie) over labelled pairs. Bootstrap: resample pairs.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def rank_key(row: dict[str, Any]) -> float:
    """The value a row is ranked by: its score, or -inf when excluded (the selector's lowest)."""
    s = row.get("score")
    if row.get("exclude") is not None or not isinstance(s, (int, float)) or not math.isfinite(s):
        return -math.inf
    return float(s)


def win(a: float, b: float) -> float:
    """1 when a ranks above b, 0.5 on a tie, else 0."""
    return 1.0 if a > b else 0.5 if a == b else 0.0


def paired_outcomes(pairs: Sequence[tuple[float, float]]) -> np.ndarray:
    """Per (better, worse) pair: 1 / 0.5 / 0."""
    return np.array([win(a, b) for a, b in pairs], dtype=float)


def paired_auc(pairs: Sequence[tuple[float, float]]) -> float:
    if not pairs:
        return math.nan
    return float(paired_outcomes(pairs).mean())


def unpaired_auc(better: Sequence[float], worse: Sequence[float]) -> float:
    """P(X > Y) + ½ P(X = Y) for X from ``better``, Y from ``worse`` (exact, via midranks; -inf allowed)."""
    x = np.asarray(better, dtype=float)
    y = np.asarray(worse, dtype=float)
    if x.size == 0 or y.size == 0:
        return math.nan
    return float(_mw(x[None, :], y[None, :])[0])


def _mw(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Mann-Whitney AUC of batches ``x`` (B, n) and ``y`` (B, m)."""
    from scipy.stats import rankdata

    n, m = x.shape[1], y.shape[1]
    both = np.concatenate([x, y], axis=1)
    finite_floor = np.where(np.isfinite(both), both, np.nan)
    low = np.nanmin(finite_floor) - 1.0 if np.isfinite(finite_floor).any() else 0.0
    both = np.where(np.isneginf(both), low, both)  # -inf rows tie with each other, below every finite row
    ranks = rankdata(both, axis=1)
    return (ranks[:, :n].sum(axis=1) - n * (n + 1) / 2) / (n * m)


def _percentile(stats: np.ndarray, level: float) -> list[float]:
    alpha = (1 - level) / 2
    return [float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))]


def mean_ci(
    values: Sequence[float] | np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.95
) -> list[float]:
    """Percentile bootstrap CI of a mean (resampling items with replacement)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return [math.nan, math.nan]
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    return _percentile(v[idx].mean(axis=1), level)


def unpaired_ci(
    better: Sequence[float], worse: Sequence[float], n_boot: int, rng: np.random.Generator, level: float = 0.95
) -> list[float]:
    """Stratified percentile bootstrap CI of :func:`unpaired_auc`."""
    x = np.asarray(better, dtype=float)
    y = np.asarray(worse, dtype=float)
    if x.size == 0 or y.size == 0:
        return [math.nan, math.nan]
    stats = []
    step = max(1, 2_000_000 // (x.size + y.size))
    for start in range(0, n_boot, step):
        b = min(step, n_boot - start)
        xs = x[rng.integers(0, x.size, size=(b, x.size))]
        ys = y[rng.integers(0, y.size, size=(b, y.size))]
        stats.append(_mw(xs, ys))
    return _percentile(np.concatenate(stats), level)


def pairwise_accuracy(pairs: Sequence[tuple[float, float]], n_boot: int, rng: np.random.Generator) -> dict[str, Any]:
    """``{"n", "accuracy", "ci"}`` of (strong, weak) rank keys."""
    out = paired_outcomes(pairs)
    if out.size == 0:
        return {"n": 0, "accuracy": None, "ci": [None, None]}
    return {"n": int(out.size), "accuracy": float(out.mean()), "ci": mean_ci(out, n_boot, rng)}


def length_matched(len_a: int, len_b: int, band: float) -> bool:
    """CPQS's length-matched rule (``selectors/cpqs/train.py: length_report``): max <= (1 + band) * min."""
    return max(len_a, len_b) <= (1 + band) * min(len_a, len_b)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho; None when undefined (fewer than 3 points or a constant side)."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)
