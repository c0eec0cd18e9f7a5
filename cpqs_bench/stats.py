"""Statistics across arms × seeds: seed means, paired bootstrap CIs and sign-flip permutation tests.

Why paired, per item: every arm is evaluated on the same benchmark items, so the item-to-item variation (some
GSM8K problems are simply hard) cancels in per-item differences. Comparing task means alone would hide that and
either overstate or understate a selector's effect. Seeds are averaged per item first, so a comparison asks
"does this selection beat the reference on the same questions, averaged over training noise?".

Inputs (written by the evaluation stage), one directory per (arm, seed):

``eval_dir/manifest.json``
    A JSON object. Required keys: ``arm`` (non-empty str: "base", "full", "random", "longest", "ifd",
    "superfiltering", "cpqs", "cpqs-bottom", or a plugin name), ``seed`` (int, or null for "base"),
    ``recipe_hash`` (str; null only for "base", which is not fine-tuned). Provenance keys read by the leaderboard
    (all optional, shown as "missing" when absent): ``commit`` (or ``git: {sha, dirty}`` as written by
    ``cpqs_bench.provenance``), ``config_hash``, ``data_sha256`` ({name: sha256}), ``model_id``, ``model_revision``,
    ``package_versions`` or ``packages`` ({package: version}), ``hardware`` (str or object), ``seeds`` (object or
    list).
``eval_dir/items.jsonl``
    One JSON object per line: ``{"task": str, "doc_id": str|int, "correct": bool|number in [0, 1], ...}`` — the
    per-item correctness (GSM8K exact match, HumanEval pass@1). Extra keys are ignored. ``(task, doc_id)`` must be
    unique within the file.
``eval_dir/metrics.json``
    ``{task: float}``, the task mean as reported by the evaluator. The statistics use the item scores; a task mean
    that disagrees with its items is reported as a warning (it usually means a different filter was reported).

Conventions: std over seeds uses ddof=1 (``None`` for a single seed); CIs are 95% percentile bootstrap intervals;
p-values are two-sided sign-flip permutation p-values, exact when at most ``EXACT_MAX_NONZERO`` differences are
non-zero, else Monte Carlo with the +1 correction so a p-value is never 0. A difference is ``significant`` only
when the CI excludes 0 AND p < alpha; p-values are not adjusted for multiple comparisons.
"""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from cpqs_bench.finetune.recipe import RecipeMismatch  # one definition, shared with the SFT guard
from cpqs_bench.io import iter_jsonl_objects

BASE_ARM = "base"
DEFAULT_REFERENCES: tuple[str, ...] = ("random", "full")
EXACT_MAX_NONZERO = 16
ZERO_TOL = 1e-12
METRIC_TOL = 1e-6
# Bootstrap / permutation matrices are processed in chunks of about this many cells, to bound memory on
# large benchmarks (10,000 resamples × 1,319 GSM8K items would otherwise be a 100 MB index matrix).
_CHUNK_CELLS = 2_000_000
SCHEMA = "cpqs-bench/summary/v1"


@dataclass(frozen=True)
class ArmResult:
    """Evaluation of one arm at one seed. ``items[task][doc_id]`` is a score in [0, 1]."""

    arm: str
    seed: int | None
    recipe_hash: str | None
    manifest: dict[str, Any] = field(default_factory=dict)
    items: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- loading


def load_arm_result(eval_dir: str | Path) -> ArmResult:
    """Read one evaluation directory; malformed input raises ``ValueError`` naming the file (and line)."""
    eval_dir = Path(eval_dir)
    manifest_path, items_path, metrics_path = (eval_dir / n for n in ("manifest.json", "items.jsonl", "metrics.json"))
    for p in (manifest_path, items_path, metrics_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing (expected an evaluation directory with manifest.json, "
                                    "items.jsonl, metrics.json)")
    manifest = _read_json_object(manifest_path)
    arm, seed, recipe_hash = _parse_identity(manifest, manifest_path)
    return ArmResult(arm=arm, seed=seed, recipe_hash=recipe_hash, manifest=manifest,
                     items=_read_items(items_path), metrics=_read_metrics(metrics_path))


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _parse_identity(manifest: dict[str, Any], path: Path) -> tuple[str, int | None, str | None]:
    for key in ("arm", "seed", "recipe_hash"):
        if key not in manifest:
            raise ValueError(f"{path}: missing key {key!r}")
    arm, seed, recipe_hash = manifest["arm"], manifest["seed"], manifest["recipe_hash"]
    if not isinstance(arm, str) or not arm:
        raise ValueError(f"{path}: 'arm' must be a non-empty string, got {arm!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"{path}: 'seed' must be an integer or null, got {seed!r}")
    if recipe_hash is not None and (not isinstance(recipe_hash, str) or not recipe_hash):
        raise ValueError(f"{path}: 'recipe_hash' must be a non-empty string or null, got {recipe_hash!r}")
    if recipe_hash is None and arm != BASE_ARM:
        raise ValueError(f"{path}: 'recipe_hash' is null for fine-tuned arm {arm!r} (only {BASE_ARM!r} may omit it)")
    return arm, seed, recipe_hash


def _read_items(path: Path) -> dict[str, dict[str, float]]:
    items: dict[str, dict[str, float]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for lineno, row in iter_jsonl_objects(path):
        where = f"{path}:{lineno}"
        task, doc_id, score = _parse_item(row, where)
        key = (task, doc_id)
        if key in first_line:
            raise ValueError(f"{where}: duplicate item task={task!r} doc_id={doc_id!r} "
                             f"(first seen on line {first_line[key]})")
        first_line[key] = lineno
        items.setdefault(task, {})[doc_id] = score
    return items


def _parse_item(row: Any, where: str) -> tuple[str, str, float]:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("task", "doc_id", "correct"):
        if key not in row:
            raise ValueError(f"{where}: missing key {key!r}")
    task, doc_id, correct = row["task"], row["doc_id"], row["correct"]
    if not isinstance(task, str) or not task:
        raise ValueError(f"{where}: 'task' must be a non-empty string, got {task!r}")
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise ValueError(f"{where}: 'doc_id' must be a string or integer, got {doc_id!r}")
    return task, str(doc_id), _as_unit_score(correct, f"{where}: 'correct'")


def _as_unit_score(value: Any, what: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be a boolean or a number in [0, 1], got {value!r}")
    return float(value)


def _read_metrics(path: Path) -> dict[str, float]:
    obj = _read_json_object(path)
    return {str(task): _as_unit_score(value, f"{path}: metric {task!r}") for task, value in obj.items()}


# ----------------------------------------------------------------------------------------------- validation


def check_recipes(results: Sequence[ArmResult]) -> str | None:
    """Return the single recipe hash shared by all fine-tuned results, or raise ``RecipeMismatch``.

    Base (not fine-tuned) carries ``None`` and is ignored. Nothing is dropped: a mismatch is an error, because a
    leaderboard over different recipes would silently attribute recipe effects to data selection.
    """
    by_hash: dict[str, set[str]] = {}
    for r in results:
        if r.recipe_hash is None:
            if r.arm != BASE_ARM:
                raise RecipeMismatch(f"arm {r.arm!r} (seed {r.seed}) has no recipe hash; only {BASE_ARM!r} may omit it")
            continue
        by_hash.setdefault(r.recipe_hash, set()).add(r.arm if r.seed is None else f"{r.arm}@seed{r.seed}")
    if len(by_hash) > 1:
        detail = "; ".join(f"{h}: {', '.join(sorted(arms))}" for h, arms in sorted(by_hash.items()))
        raise RecipeMismatch(f"fine-tuned arms use different recipes ({detail})")
    return next(iter(by_hash), None)


def _group_by_arm(results: Sequence[ArmResult]) -> dict[str, list[ArmResult]]:
    """Group results per arm (sorted by seed), rejecting a duplicated (arm, seed)."""
    groups: dict[str, list[ArmResult]] = {}
    for r in results:
        if any(o.seed == r.seed for o in groups.get(r.arm, [])):
            raise ValueError(f"duplicate result for arm {r.arm!r} seed {r.seed}")
        groups.setdefault(r.arm, []).append(r)
    for runs in groups.values():
        runs.sort(key=lambda r: (r.seed is not None, r.seed if r.seed is not None else 0))
    return groups


# Canonical display order; plugins follow alphabetically.
ARM_ORDER = ("base", "full", "random", "longest", "ifd", "superfiltering", "cpqs", "cpqs-bottom")


def order_arms(arms: Iterable[str]) -> list[str]:
    rank = {a: i for i, a in enumerate(ARM_ORDER)}
    return sorted(set(arms), key=lambda a: (rank.get(a, len(rank)), a))


# ----------------------------------------------------------------------------------------------- seeds


def seed_stats(scores: Sequence[float]) -> dict[str, Any]:
    """Mean ± std (ddof=1) over per-seed task scores; std is None when there is a single seed."""
    arr = np.asarray(scores, dtype=float)
    if arr.size == 0:
        raise ValueError("seed_stats needs at least one score")
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
            "n_seeds": int(arr.size)}


def _seed_task_score(r: ArmResult, task: str) -> float | None:
    scores = r.items.get(task)
    if scores:
        return float(np.mean(list(scores.values())))
    return r.metrics.get(task)


def doc_means(runs: Sequence[ArmResult], task: str) -> tuple[dict[str, float], int]:
    """Per-doc score averaged over the seeds that have the doc; also how many docs miss from some seed."""
    per_doc: dict[str, list[float]] = {}
    for r in runs:
        for doc, score in r.items.get(task, {}).items():
            per_doc.setdefault(doc, []).append(score)
    n_partial = sum(1 for v in per_doc.values() if len(v) < len(runs))
    return {doc: float(np.mean(v)) for doc, v in per_doc.items()}, n_partial


# ----------------------------------------------------------------------------------------------- resampling


def rng_for(seed: int, *key: str) -> np.random.Generator:
    """A generator that depends on the seed and the comparison, not on the order comparisons are run in."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode("utf-8")) for k in key)])


def _chunks(total: int, width: int) -> Iterable[int]:
    size = max(1, _CHUNK_CELLS // max(1, width))
    done = 0
    while done < total:
        step = min(size, total - done)
        yield step
        done += step


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, n_boot: int, rng: np.random.Generator,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (resampling items with replacement, vectorised in chunks)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap of an empty sample")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    means = np.empty(n_boot)
    pos = 0
    for step in _chunks(n_boot, x.size):
        idx = rng.integers(0, x.size, size=(step, x.size))
        means[pos:pos + step] = x[idx].mean(axis=1)
        pos += step
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def sign_flip_pvalue(diffs: Sequence[float] | np.ndarray, rng: np.random.Generator, n_perm: int = 10_000,
                     exact_max: int = EXACT_MAX_NONZERO) -> tuple[float, str]:
    """Two-sided paired permutation p-value for H0 "mean difference is 0", by flipping signs of differences.

    Zero differences are unchanged by a flip, so only non-zero ones are permuted. With ``m <= exact_max`` of them all
    2**m sign patterns are enumerated; otherwise ``n_perm`` random patterns with p = (1 + #extreme) / (1 + n_perm).
    Returns ``(p, method)`` with method "exact", "monte_carlo" or "degenerate" (no non-zero difference: p = 1).
    """
    d = np.asarray(diffs, dtype=float)
    d = d[np.abs(d) > ZERO_TOL]
    m = d.size
    if m == 0:
        return 1.0, "degenerate"
    observed = abs(float(d.sum()))
    threshold = observed - 1e-9 * max(1.0, observed)  # float sums of the same values may differ in the last bits
    if m <= exact_max:
        codes = np.arange(2 ** m, dtype=np.int64)[:, None]
        signs = 1.0 - 2.0 * ((codes >> np.arange(m)) & 1)
        extreme = int(np.count_nonzero(np.abs(signs @ d) >= threshold))
        return extreme / float(2 ** m), "exact"
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    extreme = 0
    for step in _chunks(n_perm, m):
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(step, m))
        extreme += int(np.count_nonzero(np.abs(signs @ d) >= threshold))
    return (1 + extreme) / (1.0 + n_perm), "monte_carlo"


# ----------------------------------------------------------------------------------------------- comparisons


def paired_comparison(arm_scores: Mapping[str, float], ref_scores: Mapping[str, float], *, rng: np.random.Generator,
                      n_boot: int = 10_000, n_perm: int = 10_000, alpha: float = 0.05,
                      level: float = 0.95) -> dict[str, Any]:
    """Compare per-doc scores of an arm with a reference on the docs both have; unpaired docs are counted."""
    common = sorted(set(arm_scores) & set(ref_scores))
    out: dict[str, Any] = {
        "n_paired": len(common),
        "n_unpaired_arm": len(set(arm_scores) - set(ref_scores)),
        "n_unpaired_reference": len(set(ref_scores) - set(arm_scores)),
    }
    if not common:
        out.update(mean_diff=None, ci_low=None, ci_high=None, p_value=None, p_method=None, n_nonzero=0,
                   significant=False, direction=None, label="n/a")
        return out
    d = np.array([arm_scores[k] - ref_scores[k] for k in common])
    d[np.abs(d) <= ZERO_TOL] = 0.0
    low, high = bootstrap_mean_ci(d, n_boot, rng, level)
    p, method = sign_flip_pvalue(d, rng, n_perm=n_perm)
    excludes_zero = low > 0 or high < 0
    significant = bool(excludes_zero and p < alpha)
    mean = float(d.mean())
    direction = ("better" if mean > 0 else "worse") if significant else None
    out.update(mean_diff=mean, ci_low=low, ci_high=high, p_value=p, p_method=method,
               n_nonzero=int(np.count_nonzero(d)), significant=significant, direction=direction,
               label="sig" if significant else "n.s.")
    return out


# ----------------------------------------------------------------------------------------------- summary


def summarize(results: Sequence[ArmResult], references: Sequence[str] = DEFAULT_REFERENCES, n_boot: int = 10_000,
              seed: int = 0, *, n_perm: int = 10_000, alpha: float = 0.05, level: float = 0.95) -> dict[str, Any]:
    """All statistics the leaderboard shows, as a JSON-serialisable dict (see module docstring for conventions)."""
    if not results:
        raise ValueError("summarize: no results")
    recipe_hash = check_recipes(results)
    groups = _group_by_arm(results)
    arms = order_arms(groups)
    tasks = sorted({t for r in results for t in (*r.items, *r.metrics)})
    present_refs = [ref for ref in references if ref in groups]
    warnings = _metric_warnings(results)
    per_task = {}
    for task in tasks:
        per_task[task] = _summarize_task(task, arms, groups, present_refs, warnings,
                                         n_boot=n_boot, n_perm=n_perm, seed=seed, alpha=alpha, level=level)
    return {
        "schema": SCHEMA, "alpha": alpha, "ci_level": level, "n_boot": n_boot, "n_perm": n_perm, "seed": seed,
        "exact_max_nonzero": EXACT_MAX_NONZERO, "references": present_refs,
        "missing_references": [r for r in references if r not in groups], "recipe_hash": recipe_hash,
        "arms": arms, "tasks": tasks,
        "seeds": {a: [r.seed for r in groups[a]] for a in arms},
        "per_task": per_task, "warnings": warnings,
    }


def _summarize_task(task: str, arms: list[str], groups: dict[str, list[ArmResult]], refs: list[str],
                    warnings: list[str], *, n_boot: int, n_perm: int, seed: int, alpha: float,
                    level: float) -> dict[str, Any]:
    arm_stats: dict[str, Any] = {}
    docs: dict[str, dict[str, float]] = {}
    for arm in arms:
        runs = groups[arm]
        scored = [(r.seed, s) for r in runs if (s := _seed_task_score(r, task)) is not None]
        if not scored:
            warnings.append(f"{task}: arm {arm!r} has no score")
            continue
        if len(scored) < len(runs):
            warnings.append(f"{task}: arm {arm!r} is scored for {len(scored)} of {len(runs)} seeds")
        stats = seed_stats([s for _, s in scored])
        docs[arm], n_partial = doc_means(runs, task)
        item_ci = (bootstrap_mean_ci(list(docs[arm].values()), n_boot, rng_for(seed, "item-ci", task, arm), level)
                   if docs[arm] else (None, None))
        stats.update(per_seed=[{"seed": s, "score": v} for s, v in scored], n_items=len(docs[arm]),
                     n_items_partial_seeds=n_partial,
                     item_mean=float(np.mean(list(docs[arm].values()))) if docs[arm] else None,
                     item_ci_low=item_ci[0], item_ci_high=item_ci[1])
        arm_stats[arm] = stats
    comparisons: dict[str, dict[str, Any]] = {}
    for ref in refs:
        if not docs.get(ref):
            warnings.append(f"{task}: reference {ref!r} has no per-item scores; no paired comparison")
            continue
        comparisons[ref] = {}
        for arm in arms:
            if arm == ref or arm not in docs:
                continue
            cmp = paired_comparison(docs[arm], docs[ref], rng=rng_for(seed, "paired", task, arm, ref),
                                    n_boot=n_boot, n_perm=n_perm, alpha=alpha, level=level)
            if cmp["n_unpaired_arm"] or cmp["n_unpaired_reference"]:
                warnings.append(f"{task}: {arm} vs {ref}: {cmp['n_unpaired_arm']} docs only in {arm}, "
                                f"{cmp['n_unpaired_reference']} only in {ref} (excluded from the pairing)")
            comparisons[ref][arm] = cmp
    return {"arms": arm_stats, "comparisons": comparisons}


def _metric_warnings(results: Sequence[ArmResult]) -> list[str]:
    """Flag reported task means that disagree with the mean of their own items (a sign of mixed-up filters)."""
    out = []
    for r in results:
        for task, value in r.metrics.items():
            scores = r.items.get(task)
            if scores and abs(float(np.mean(list(scores.values()))) - value) > METRIC_TOL:
                out.append(f"{r.arm} seed {r.seed}: metrics.json {task}={value:.6g} differs from its item mean "
                           f"{np.mean(list(scores.values())):.6g}; the item mean is used")
    return out
