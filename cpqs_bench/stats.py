"""Statistics across arms × seeds: hierarchical paired bootstrap CIs, item- and seed-level sign-flip tests, power.

Why paired, per item: every arm is evaluated on the same benchmark items, so the item-to-item variation (some
GSM8K problems are simply hard) cancels in per-item differences. Why hierarchical: a fine-tuning run is itself a
random draw (LoRA init, data order), so a lucky seed must not read as a selector effect. For a comparison "arm vs
reference" on one task the unit of data is the matrix ``D[s, i] = arm_s(i) − ref_s(i)`` over paired seeds ``s``
(the same experiment seed on both sides; a single-run side such as ``base`` is broadcast against every seed of the
other) and paired items ``i``. From it:

* Δ = mean of D; its CI is a **hierarchical (two-stage, crossed) paired bootstrap**: resample the seeds (rows) with
  replacement, then the items (columns) with replacement, and take the mean of the resampled sub-matrix
  (:func:`hierarchical_bootstrap_means`). With a single seed it reduces to the item bootstrap. Method: the
  hierarchical bootstrap of Saravanan, Berman & Sober (2020), "Application of the hierarchical bootstrap to
  multi-level data in neuroscience" (resample the top level, then the level below; cf. the README of
  github.com/alexpiet/hierarchical_bootstrap and rishi-kulkarni/hierarch docs/user/overview.rst). Deliberate
  difference: there the levels are nested (cells within subjects) and the lower level is redrawn within each drawn
  unit; here items are *crossed* with seeds (every seed is evaluated on the same items), so one item draw is shared
  by all drawn seeds, which keeps the pairing of items across seeds.
* item-level test: exact / Monte-Carlo sign-flip permutation over the per-item differences averaged over seeds
  (:func:`sign_flip_pvalue`), i.e. conditional on the drawn seeds;
* seed-level test: exact sign-flip over the per-seed mean differences (rows of D averaged over items).
* power (:func:`attainable_p`, :func:`min_detectable_effect`): the smallest p the exact sign-flip test can give
  for m non-zero differences (2 / 2**m, two-sided) and the minimum detectable effect at 80 % power from the
  observed sd of the item differences (normal approximation).

Verdict (▲ better / ▼ worse, in the metric's own direction): only when at least ``MIN_SEEDS_FOR_VERDICT`` (3)
paired seeds exist, the item level says so (item-bootstrap CI of the seed-averaged differences excludes 0 and the
item sign-flip p < alpha) and the seed level agrees: the hierarchical CI excludes 0 and the seed-level sign-flip
p < alpha or — since with S seeds its smallest p is 2 / 2**S, which is ≥ 0.05 for S ≤ 5 — every seed's mean
difference has the sign of Δ (its p is then the smallest attainable). Item-level evidence without seed agreement
reads "no verdict (seeds disagree)". With fewer
than 3 seeds the label is "seed variation not estimable"; when the item test cannot reach alpha at all, the label is
"cannot reach α (n = m)", never "n.s.". All inference is conditional on the evaluation items and the drawn seeds: it
says nothing about other benchmarks or about seeds beyond what the seed bootstrap/test can see.

Inputs (written by the evaluation stage), one directory per (arm, seed):

``eval_dir/manifest.json``
    A JSON object. Required keys: ``arm`` (non-empty str: "base", "full", "random", "longest", "ifd",
    "superfiltering", "cpqs", "cpqs-bottom", or a plugin name), ``seed`` (int, or null for "base"),
    ``recipe_hash`` (str; null only for "base", which is not fine-tuned). Optional: ``tasks`` ({task: {metric,
    higher_is_better, proxy, domain}} as written by :mod:`cpqs_bench.evaluate.harness`), ``arm_info`` ({kept,
    budget_k, selector, total}) and the provenance keys read by the leaderboard.
``eval_dir/items.jsonl``
    One JSON object per line: ``{"task": str, "doc_id": str|int, "correct": bool|finite number, ...}`` — the
    per-item value of the task's metric (exact match, pass@1, or a continuous proxy such as a mean per-token NLL;
    ``score`` or ``value`` are accepted in place of ``correct``). ``(task, doc_id)`` must be unique within the file.
``eval_dir/metrics.json``
    ``{task: float}``, the task mean as reported by the evaluator. The statistics use the item scores; a task mean
    that disagrees with its items is reported as a warning (it usually means a different filter was reported).

Metric direction and unit (:func:`metric_facts`, what the leaderboard passes to :func:`summarize` as ``facts``):
from the task YAML (``metric_list[].higher_is_better`` of the metric the evaluation reported; ``metadata.unit`` or
the metric's known unit), else from the evaluation manifests' ``tasks`` entries (which the harness copies from the
same YAML), else higher-is-better with a stated "direction unknown" source — never from a task or metric name.
:func:`better_or_worse` is the one place that turns a difference and a direction into "better" / "worse".
:func:`task_facts` (used only when :func:`summarize` is given no ``facts``) keeps the older name-marker fallback
for callers that have neither a YAML nor a manifest.

Conventions: std over seeds uses ddof=1 (``None`` for a single seed); CIs are 95% percentile bootstrap intervals;
item p-values are two-sided sign-flip permutation p-values, exact when at most ``EXACT_MAX_NONZERO`` differences are
non-zero, else Monte Carlo with the +1 correction so a p-value is never 0. p-values are not adjusted for multiple
comparisons.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import yaml

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
SCHEMA = "cpqs-bench/summary/v2"
SCORE_KEYS = ("correct", "score", "value")
MIN_SEEDS_FOR_VERDICT = 3
POWER = 0.8
LOWER_IS_BETTER_MARKERS = ("nll", "bits_per_byte", "perplexity")
DOMAINS = ("general", "math", "code")
NOT_ESTIMABLE = "seed variation not estimable"


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
            raise FileNotFoundError(
                f"{p}: missing (expected an evaluation directory with manifest.json, items.jsonl, metrics.json)"
            )
    manifest = _read_json_object(manifest_path)
    arm, seed, recipe_hash = _parse_identity(manifest, manifest_path)
    items = _read_items(items_path)
    expected = manifest.get("n_items")
    if isinstance(expected, dict):  # a cut or padded items.jsonl would silently move the arm's mean
        got = {t: len(v) for t, v in items.items()}
        wrong = {t: (n, got.get(t, 0)) for t, n in expected.items() if got.get(t, 0) != n}
        if wrong:
            detail = ", ".join(f"{t}: {have} rows, {n} recorded" for t, (n, have) in sorted(wrong.items()))
            raise ValueError(f"{items_path}: item count differs from {manifest_path.name} n_items ({detail})")
    return ArmResult(
        arm=arm,
        seed=seed,
        recipe_hash=recipe_hash,
        manifest=manifest,
        items=items,
        metrics=_read_metrics(metrics_path),
    )


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
            raise ValueError(
                f"{where}: duplicate item task={task!r} doc_id={doc_id!r} (first seen on line {first_line[key]})"
            )
        first_line[key] = lineno
        items.setdefault(task, {})[doc_id] = score
    return items


def _parse_item(row: object, where: str) -> tuple[str, str, float]:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("task", "doc_id"):
        if key not in row:
            raise ValueError(f"{where}: missing key {key!r}")
    value_key = next((k for k in SCORE_KEYS if k in row), None)
    if value_key is None:
        raise ValueError(f"{where}: missing key 'correct' (or one of {SCORE_KEYS[1:]})")
    task, doc_id, correct = row["task"], row["doc_id"], row[value_key]
    if not isinstance(task, str) or not task:
        raise ValueError(f"{where}: 'task' must be a non-empty string, got {task!r}")
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise ValueError(f"{where}: 'doc_id' must be a string or integer, got {doc_id!r}")
    return task, str(doc_id), _as_score(correct, f"{where}: {value_key!r}")


def _as_score(value: object, what: str) -> float:
    """A per-item or per-task value: a boolean (exact match) or any finite number (accuracy, pass@1, NLL, ...)."""
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a boolean or a finite number, got {value!r}")
    return float(value)


def _read_metrics(path: Path) -> dict[str, float]:
    obj = _read_json_object(path)
    return {str(task): _as_score(value, f"{path}: metric {task!r}") for task, value in obj.items()}


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
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
        "n_seeds": int(arr.size),
    }


def _seed_task_score(r: ArmResult, task: str) -> float | None:
    scores = r.items.get(task)
    if scores:  # summed in doc-id order: the same items give the same float whatever order a file listed them in
        return float(np.mean([scores[k] for k in sorted(scores)]))
    return r.metrics.get(task)


def doc_means(runs: Sequence[ArmResult], task: str) -> tuple[dict[str, float], int]:
    """Per-doc score averaged over the seeds that have the doc; also how many docs miss from some seed."""
    per_doc: dict[str, list[float]] = {}
    for r in runs:
        scores = r.items.get(task, {})
        for doc in sorted(scores):  # doc-id order (see _seed_task_score)
            per_doc.setdefault(doc, []).append(scores[doc])
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


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.95
) -> tuple[float, float]:
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
        means[pos : pos + step] = x[idx].mean(axis=1)
        pos += step
    tail = (1.0 - level) / 2.0
    bounds: np.ndarray = np.quantile(means, [tail, 1.0 - tail])
    return float(bounds[0]), float(bounds[1])


def sign_flip_pvalue(
    diffs: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
    n_perm: int = 10_000,
    exact_max: int = EXACT_MAX_NONZERO,
) -> tuple[float, str]:
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
        codes = np.arange(2**m, dtype=np.int64)[:, None]
        signs = 1.0 - 2.0 * ((codes >> np.arange(m)) & 1)
        extreme = int(np.count_nonzero(np.abs(signs @ d) >= threshold))
        return extreme / float(2**m), "exact"
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    extreme = 0
    for step in _chunks(n_perm, m):
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(step, m))
        extreme += int(np.count_nonzero(np.abs(signs @ d) >= threshold))
    return (1 + extreme) / (1.0 + n_perm), "monte_carlo"


# ----------------------------------------------------------------------------------------------- hierarchy, power


def hierarchical_bootstrap_means(diffs: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Two-stage paired bootstrap of the mean of a seeds × items difference matrix.

    Each resample draws S seeds (rows) with replacement, then n items (columns) with replacement — the same item
    draw for every drawn seed, because the items are crossed with the seeds (every seed is evaluated on every item)
    — and returns the mean of the resampled S × n sub-matrix. Drawing rows ``a`` and columns ``b`` gives
    ``mean(D[a][:, b]) = w_s · D · w_i / (S n)`` with ``w_s``, ``w_i`` the multinomial draw counts, which is how it
    is computed (chunked, without materialising the sub-matrices). With S = 1 this is the plain item bootstrap.
    """
    d = np.asarray(diffs, dtype=float)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"hierarchical bootstrap needs a non-empty seeds × items matrix, got shape {d.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n_seeds, n_items = d.shape
    out = np.empty(n_boot)
    pos = 0
    for step in _chunks(n_boot, n_seeds + n_items):
        ws = _draw_counts(rng, step, n_seeds)
        wi = _draw_counts(rng, step, n_items)
        out[pos : pos + step] = np.sum(ws * (wi @ d.T), axis=1) / (n_seeds * n_items)
        pos += step
    return out


def _draw_counts(rng: np.random.Generator, n_rows: int, size: int) -> np.ndarray:
    """Counts of each index in ``n_rows`` draws of ``size`` indices with replacement (one row per draw)."""
    idx = rng.integers(0, size, size=(n_rows, size), dtype=np.int64) + (np.arange(n_rows) * size)[:, None]
    return np.bincount(idx.ravel(), minlength=n_rows * size).reshape(n_rows, size).astype(float)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return float(low), float(high)


def attainable_p(n_nonzero: int) -> float:
    """Smallest two-sided p the exact sign-flip test can give with ``n_nonzero`` non-zero differences: 2 / 2**m.

    Only the all-positive and all-negative sign patterns reach the observed |sum| when every difference has the
    same sign, hence 2 of 2**m patterns (1.0 when there is no non-zero difference).
    """
    if n_nonzero < 0:
        raise ValueError(f"n_nonzero must be >= 0, got {n_nonzero}")
    return 1.0 if n_nonzero == 0 else min(1.0, 2.0 / 2.0**n_nonzero)


def min_detectable_effect(sd_diff: float, n: int, alpha: float = 0.05, power: float = POWER) -> float | None:
    """MDE of a paired two-sided test: (z_{1-α/2} + z_{power}) · sd_diff / √n (normal approximation).

    ``sd_diff``: sd (ddof=1) of the per-item differences; ``n``: paired items. ``None`` when n < 2 (no sd).
    """
    from scipy.stats import norm

    if n < 2 or not math.isfinite(sd_diff):
        return None
    return float((norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power)) * sd_diff / math.sqrt(n))


# ----------------------------------------------------------------------------------------------- metric facts


def task_facts(task: str, results: Sequence[ArmResult]) -> dict[str, Any]:
    """Metric name, direction, proxy flag and domain of a task, from the manifests' ``tasks`` entries and its name."""
    info: dict[str, Any] = {}
    for r in results:
        entry = (r.manifest.get("tasks") or {}).get(task) if isinstance(r.manifest.get("tasks"), dict) else None
        if isinstance(entry, dict):
            info = {**entry, **info}  # first manifest that says something wins
    metric = str(info.get("metric") or task)
    names = f"{task} {metric}".lower()
    lower = any(m in names for m in LOWER_IS_BETTER_MARKERS) or info.get("higher_is_better") is False
    return {
        "metric": metric,
        "higher_is_better": not lower,
        "proxy": bool(info.get("proxy")) or lower,
        "domain": str(info.get("domain") or task_domain(task)),
    }


# Units of the metrics cpqs-bench's tasks report; a task YAML's ``metadata.unit`` (or ``unit`` in its metric_list
# entry) wins. "pct": a fraction in [0, 1] shown in % (differences in percentage points); "raw": the metric's own unit.
KNOWN_UNITS: dict[str, tuple[str, str]] = {
    "exact_match": ("pct", "%"),
    "pass@1": ("pct", "%"),
    "acc": ("pct", "%"),
    "acc_norm": ("pct", "%"),
    "nll_per_byte": ("raw", "nats/byte"),
    "nll_per_token": ("raw", "nats/token"),
    "bits_per_byte": ("raw", "bits/byte"),
    "word_perplexity": ("raw", "perplexity"),
}
PCT_UNITS = ("%", "pct", "percent", "fraction")


class _TaskYamlLoader(yaml.SafeLoader):
    """Reads lm-eval task YAMLs without importing anything: ``!function x.y`` becomes the string ``x.y``."""


_TaskYamlLoader.add_multi_constructor(
    "!",
    lambda loader, suffix, node: (
        f"{suffix}" if not isinstance(node, yaml.ScalarNode) else f"{suffix} {loader.construct_scalar(node)}".strip()
    ),
)


def load_task_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    """One task YAML with its ``include:`` chain merged (the including file wins; ``metadata`` merged by key)."""
    try:
        cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskYamlLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ValueError(f"{path}:{'?' if mark is None else mark.line + 1}: not a readable task YAML: {e}") from e
    if not isinstance(cfg, dict):
        return {}
    inc = cfg.get("include")
    if isinstance(inc, str) and depth < 8 and (path.parent / inc).is_file():
        base = load_task_yaml(path.parent / inc, depth + 1)
        meta = {**(base.get("metadata") or {}), **(cfg.get("metadata") or {})}
        cfg = {**base, **cfg, "metadata": meta}
    return cfg


def default_task_folders() -> list[Path]:
    """The project's task folder, as the harness finds it ($CPQS_TASKS_DIR, else tasks/)."""
    from cpqs_bench.evaluate.harness import tasks_dir

    return [tasks_dir()]


def find_task_yaml(task: str, folders: Sequence[str | Path] | None = None) -> tuple[dict[str, Any], Path | None]:
    """The merged config of ``task`` from the first YAML in ``folders`` whose ``task:`` is it (``({}, None)`` if none).
    Files that do not mention the task are not parsed; a file that does and cannot be parsed is an error."""
    for folder in default_task_folders() if folders is None else folders:
        if not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).rglob("*.yaml")):
            if task not in path.read_text(encoding="utf-8"):
                continue
            cfg = load_task_yaml(path)
            if cfg.get("task") == task:
                return cfg, path
    return {}, None


def _metric_name(m: object) -> str:
    return str(m.get("metric") if isinstance(m, dict) else m)


def metric_facts(
    tasks: Iterable[str],
    manifests: Sequence[Mapping[str, Any]] = (),
    folders: Sequence[str | Path] | None = None,
    known: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per task: ``metric``, ``higher_is_better``, ``direction_source``, ``proxy``, ``domain``, ``unit`` ("pct" or
    "raw") and ``unit_label`` ("%", "nats/byte", ...).

    The metric is the one the evaluation reported (the manifests' ``tasks[task].metric``, else ``metadata.metric``,
    else the YAML's first ``metric_list`` entry). Direction: that metric's ``metric_list`` entry in the task YAML
    (``folders``: default the project's task folder), else the manifests' ``higher_is_better`` (the harness copies it
    from the same YAML), else ``known`` (facts stored in a leaderboard JSON), else higher-is-better with
    ``direction_source`` saying it is unknown. Never from the task's or metric's name.
    """
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        info: dict[str, Any] = {}
        for m in manifests:
            entry = (m.get("tasks") or {}).get(task) if isinstance(m.get("tasks"), dict) else None
            if isinstance(entry, dict):
                info = {**entry, **info}  # the first manifest that says something wins
        old = dict((known or {}).get(task) or {})
        cfg, path = find_task_yaml(task, folders)
        declared = cfg.get("metadata")
        meta = declared if isinstance(declared, dict) else {}
        metrics = [m for m in cfg.get("metric_list") or [] if isinstance(m, dict)]
        metric = str(
            info.get("metric")
            or meta.get("metric")
            or (metrics and _metric_name(metrics[0]))
            or old.get("metric")
            or ""
        )
        entry = next((m for m in metrics if _metric_name(m) == metric), None)
        if entry is not None and "higher_is_better" in entry:
            hib, source = bool(entry["higher_is_better"]), f"task YAML {path.name if path else '?'}"
        elif isinstance(info.get("higher_is_better"), bool):
            hib, source = info["higher_is_better"], "evaluation manifest (from the task YAML)"
        elif isinstance(old.get("higher_is_better"), bool):
            hib, source = old["higher_is_better"], old.get("direction_source") or "leaderboard JSON"
        else:
            hib, source = True, "unknown: no task YAML or manifest says; assumed higher is better"
        label = (entry or {}).get("unit") or meta.get("unit") or old.get("unit_label")
        if label is None and metric in KNOWN_UNITS:
            unit, label = KNOWN_UNITS[metric]
        elif label is not None:
            unit = "pct" if str(label).lower() in PCT_UNITS else "raw"
            label = "%" if unit == "pct" else str(label)
        else:
            unit, label = "raw", (metric or "score")
        proxy = bool(meta.get("proxy", info.get("proxy", old.get("proxy", False))))
        out[task] = {
            "metric": metric or task,
            "higher_is_better": hib,
            "direction_source": source,
            "proxy": proxy,
            "domain": str(meta.get("domain") or info.get("domain") or old.get("domain") or task_domain(task)),
            "unit": unit,
            "unit_label": label,
        }
    return out


def better_or_worse(delta: float | None, higher_is_better: bool) -> str | None:
    """ "better" / "worse" for a difference (arm − reference) in a metric of this direction; None for 0 or None.
    The one place every output (Markdown, page, PNG, cards) turns a sign into a judgement."""
    if delta is None or delta == 0 or (isinstance(delta, float) and math.isnan(delta)):
        return None
    return "better" if (delta > 0) == bool(higher_is_better) else "worse"


def task_domain(task: str) -> str:
    """The paper's table a task belongs to, from its name: math (GSM8K, MATH), code (HumanEval, MBPP), else general."""
    name = task.lower()
    if "gsm8k" in name or name.startswith("math") or "_math" in name or "minerva" in name:
        return "math"
    if "humaneval" in name or "mbpp" in name or "code" in name:
        return "code"
    return "general"


def arm_info(runs: Sequence[ArmResult]) -> dict[str, Any]:
    """Kept count, budget k, pool size, selector and Spearman(score, response length) of the scores the arm was selected
    by (mean over seeds when redrawn per seed) from its manifests' ``arm_info`` (read defensively)."""
    per_seed: dict[str, dict[str, Any]] = {}
    for r in runs:
        raw = r.manifest.get("arm_info")
        if not isinstance(raw, dict):
            extra = r.manifest.get("extra")
            raw = extra.get("arm_info") if isinstance(extra, dict) else None
        if isinstance(raw, dict):
            per_seed[str(r.seed)] = {
                k: raw.get(k) for k in ("kept", "budget_k", "total", "selector", "length_spearman") if k in raw
            }
    kept = sorted({v["kept"] for v in per_seed.values() if isinstance(v.get("kept"), int)})
    budget = sorted({v["budget_k"] for v in per_seed.values() if isinstance(v.get("budget_k"), int)})
    total = sorted({v["total"] for v in per_seed.values() if isinstance(v.get("total"), int)})
    selector = sorted({str(v["selector"]) for v in per_seed.values() if v.get("selector")})
    k = budget[0] if len(budget) == 1 else None
    rhos = [
        float(v["length_spearman"]) for v in per_seed.values() if isinstance(v.get("length_spearman"), (int, float))
    ]
    return {
        "per_seed": per_seed,
        "length_spearman": (sum(rhos) / len(rhos)) if rhos else None,
        "kept": kept,
        "budget_k": k,
        "total": total[0] if len(total) == 1 else None,
        "selector": selector[0] if len(selector) == 1 else (selector or None),
        "budget_fraction": (k / total[0]) if k is not None and len(total) == 1 and total[0] else None,
        "short": bool(k is not None and kept and min(kept) < k),
    }


# ----------------------------------------------------------------------------------------------- comparisons


def paired_matrix(arm_runs: Sequence[ArmResult], ref_runs: Sequence[ArmResult], task: str) -> dict[str, Any] | None:
    """The seeds × items difference matrix of ``arm − reference`` on one task (None when a side has no items).

    Seeds are paired by experiment seed (the same seed trained both arms); a side with a single run (``base``) is
    broadcast against every run of the other side; two multi-seed sides without a common seed are paired in seed
    order (reported as ``pairing: "by order"``). Items are the docs every involved run has.
    """
    a = [r for r in arm_runs if r.items.get(task)]
    b = [r for r in ref_runs if r.items.get(task)]
    if not a or not b:
        return None
    if len(a) == 1 and len(b) == 1:
        pairs, pairing = [(a[0], b[0])], "single run"
    elif len(b) == 1:
        pairs, pairing = [(x, b[0]) for x in a], "reference broadcast"
    elif len(a) == 1:
        pairs, pairing = [(a[0], y) for y in b], "arm broadcast"
    else:
        common = sorted({x.seed for x in a} & {y.seed for y in b}, key=lambda s: (s is None, s or 0))
        if common:
            pairs = [(next(x for x in a if x.seed == s), next(y for y in b if y.seed == s)) for s in common]
            pairing = "by seed"
        else:
            pairs, pairing = list(zip(a, b)), "by order"
    involved = {id(r): r for pair in pairs for r in pair}.values()
    docs = sorted(set.intersection(*(set(r.items[task]) for r in involved)))
    all_arm = set().union(*(set(r.items[task]) for r in a))
    all_ref = set().union(*(set(r.items[task]) for r in b))
    d = np.array([[x.items[task][k] - y.items[task][k] for k in docs] for x, y in pairs], dtype=float)
    if docs:
        d[np.abs(d) <= ZERO_TOL] = 0.0
    return {
        "diffs": d.reshape(len(pairs), len(docs)),
        "docs": docs,
        "pairing": pairing,
        "seeds": [[x.seed, y.seed] for x, y in pairs],
        "n_unpaired_arm": len(all_arm - set(docs)),
        "n_unpaired_reference": len(all_ref - set(docs)),
    }


def compare_matrix(
    diffs: np.ndarray,
    *,
    rng: np.random.Generator,
    higher_is_better: bool = True,
    n_boot: int = 10_000,
    n_perm: int = 10_000,
    alpha: float = 0.05,
    level: float = 0.95,
) -> dict[str, Any]:
    """Δ, hierarchical CI, item- and seed-level tests, power and the verdict for one seeds × items matrix."""
    d = np.asarray(diffs, dtype=float)
    n_seeds, n_items = d.shape if d.ndim == 2 else (0, 0)
    if n_items == 0 or n_seeds == 0:
        return {
            "n_paired": 0,
            "n_seeds_paired": n_seeds,
            "mean_diff": None,
            "ci_low": None,
            "ci_high": None,
            "p_value": None,
            "p_method": None,
            "p_value_seed": None,
            "n_nonzero": 0,
            "significant": False,
            "direction": None,
            "label": "n/a",
            "verdict": None,
        }
    item_d = d.mean(axis=0)
    item_d[np.abs(item_d) <= ZERO_TOL] = 0.0
    seed_d = d.mean(axis=1)
    seed_d[np.abs(seed_d) <= ZERO_TOL] = 0.0
    mean = float(d.mean())
    low, high = percentile_ci(hierarchical_bootstrap_means(d, n_boot, rng), level)
    item_low, item_high = bootstrap_mean_ci(item_d, n_boot, rng, level)
    p_item, method = sign_flip_pvalue(item_d, rng, n_perm=n_perm)
    p_seed, seed_method = sign_flip_pvalue(seed_d, rng, n_perm=n_perm)
    m = int(np.count_nonzero(item_d))
    p_min_item = attainable_p(m)
    p_min_seed = attainable_p(int(np.count_nonzero(seed_d)))
    sd = float(item_d.std(ddof=1)) if n_items > 1 else float("nan")
    mde = min_detectable_effect(sd, n_items, alpha)
    can_reach = p_min_item < alpha
    # item level (seeds averaged first): the item CI excludes 0 and the sign-flip p < alpha
    item_sig = bool((item_low > 0 or item_high < 0) and p_item < alpha)
    same_sign = bool(mean != 0 and np.all(np.sign(seed_d) == np.sign(mean)))
    seed_agrees = bool((p_seed < alpha or same_sign) and (low > 0 or high < 0))  # + the hierarchical CI
    estimable = n_seeds >= MIN_SEEDS_FOR_VERDICT
    significant = bool(estimable and item_sig and seed_agrees)
    better = better_or_worse(mean, higher_is_better) == "better"
    direction = ("better" if better else "worse") if significant else None
    if significant:
        label = "sig"
    else:
        parts = []
        if not can_reach:
            parts.append(f"cannot reach α (n = {m})")
        if not estimable:
            parts.append(NOT_ESTIMABLE)
        elif can_reach and item_sig and not seed_agrees:
            parts.append("no verdict (seeds disagree)")
        label = "; ".join(parts) or "n.s."
    return {
        "n_paired": n_items,
        "n_seeds_paired": n_seeds,
        "mean_diff": mean,
        "ci_low": low,
        "ci_high": high,
        "ci_method": "hierarchical bootstrap (seeds, then items)",
        "item_ci_low": item_low,
        "item_ci_high": item_high,
        "p_value": p_item,
        "p_method": method,
        "n_nonzero": m,
        "p_value_seed": p_seed,
        "p_seed_method": seed_method,
        "seed_diffs": [float(x) for x in seed_d],
        "seed_agrees": seed_agrees,
        "seed_variation_estimable": estimable,
        "p_min_item": p_min_item,
        "p_min_seed": p_min_seed,
        "can_reach_alpha": can_reach,
        "sd_diff": None if math.isnan(sd) else sd,
        "mde": mde,
        "power": POWER,
        "higher_is_better": higher_is_better,
        "significant": significant,
        "direction": direction,
        "verdict": ("▲" if better else "▼") if significant else None,
        "label": label,
    }


def paired_comparison(
    arm_scores: Mapping[str, float],
    ref_scores: Mapping[str, float],
    *,
    rng: np.random.Generator,
    n_boot: int = 10_000,
    n_perm: int = 10_000,
    alpha: float = 0.05,
    level: float = 0.95,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """Compare per-doc scores (one run, or already averaged over seeds) of an arm with a reference on the docs both
    have; unpaired docs are counted. One row of :func:`compare_matrix`: seed variation is not estimable here."""
    common = sorted(set(arm_scores) & set(ref_scores))
    d = np.array([[arm_scores[k] - ref_scores[k] for k in common]], dtype=float).reshape(1, len(common))
    out = compare_matrix(
        d, rng=rng, higher_is_better=higher_is_better, n_boot=n_boot, n_perm=n_perm, alpha=alpha, level=level
    )
    out.update(
        n_unpaired_arm=len(set(arm_scores) - set(ref_scores)),
        n_unpaired_reference=len(set(ref_scores) - set(arm_scores)),
    )
    return out


# ----------------------------------------------------------------------------------------------- summary


def summarize(
    results: Sequence[ArmResult],
    references: Sequence[str] = DEFAULT_REFERENCES,
    n_boot: int = 10_000,
    seed: int = 0,
    *,
    n_perm: int = 10_000,
    alpha: float = 0.05,
    level: float = 0.95,
    compare_base: bool = True,
    facts: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """All statistics the leaderboard shows, as a JSON-serialisable dict (see module docstring for conventions).

    ``compare_base``: also compare every arm with ``base`` when a base result exists (Δ vs base: does fine-tuning
    move the metric at all?), even if ``references`` does not list it. ``facts``: per task at least
    ``higher_is_better`` (:func:`metric_facts`); without it, :func:`task_facts` decides.
    """
    if not results:
        raise ValueError("summarize: no results")
    recipe_hash = check_recipes(results)
    groups = _group_by_arm(results)
    arms = order_arms(groups)
    tasks = sorted({t for r in results for t in (*r.items, *r.metrics)})
    refs = list(dict.fromkeys([*references, *([BASE_ARM] if compare_base else [])]))
    present_refs = [ref for ref in refs if ref in groups]
    warnings = _metric_warnings(results)
    infos = {arm: arm_info(groups[arm]) for arm in arms}
    for arm, info in infos.items():
        if info["short"]:
            warnings.append(
                f"arm {arm!r} trained on fewer examples than its budget: kept "
                f"{', '.join(map(str, info['kept']))} < k = {info['budget_k']}"
            )
    facts = {t: dict(facts[t]) if facts and t in facts else task_facts(t, results) for t in tasks}
    resampling = _Resampling(n_boot, n_perm, seed, alpha, level)
    per_task = {}
    for task in tasks:
        per_task[task] = _summarize_task(task, arms, groups, present_refs, warnings, facts[task], resampling)
    return {
        "schema": SCHEMA,
        "alpha": alpha,
        "ci_level": level,
        "n_boot": n_boot,
        "n_perm": n_perm,
        "seed": seed,
        "exact_max_nonzero": EXACT_MAX_NONZERO,
        "min_seeds_for_verdict": MIN_SEEDS_FOR_VERDICT,
        "power": POWER,
        "references": present_refs,
        "missing_references": [r for r in references if r not in groups],
        "recipe_hash": recipe_hash,
        "arms": arms,
        "tasks": tasks,
        "task_facts": facts,
        "arm_info": infos,
        "seeds": {a: [r.seed for r in groups[a]] for a in arms},
        "per_task": per_task,
        "warnings": warnings,
        "conditional_on": "the evaluation items and the drawn fine-tuning seeds",
    }


@dataclass(frozen=True)
class _Resampling:
    """The test settings of one summary: bootstrap draws, permutations, the seed of every RNG, alpha, CI level."""

    n_boot: int
    n_perm: int
    seed: int
    alpha: float
    level: float


def _summarize_task(
    task: str,
    arms: list[str],
    groups: dict[str, list[ArmResult]],
    refs: list[str],
    warnings: list[str],
    facts: Mapping[str, Any],
    resampling: _Resampling,
) -> dict[str, Any]:
    n_boot, n_perm, seed, alpha, level = (
        resampling.n_boot,
        resampling.n_perm,
        resampling.seed,
        resampling.alpha,
        resampling.level,
    )
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
        item_ci = (
            # items in doc-id order, so the same items give the same CI whatever order the files listed them in
            bootstrap_mean_ci(
                [docs[arm][k] for k in sorted(docs[arm])], n_boot, rng_for(seed, "item-ci", task, arm), level
            )
            if docs[arm]
            else (None, None)
        )
        stats.update(
            per_seed=[{"seed": s, "score": v} for s, v in scored],
            n_items=len(docs[arm]),
            n_items_partial_seeds=n_partial,
            item_mean=float(np.mean([docs[arm][k] for k in sorted(docs[arm])])) if docs[arm] else None,
            item_ci_low=item_ci[0],
            item_ci_high=item_ci[1],
        )
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
            mat = paired_matrix(groups[arm], groups[ref], task)
            if mat is None:
                continue
            cmp = compare_matrix(
                mat["diffs"],
                rng=rng_for(seed, "paired", task, arm, ref),
                higher_is_better=facts["higher_is_better"],
                n_boot=n_boot,
                n_perm=n_perm,
                alpha=alpha,
                level=level,
            )
            cmp.update(
                pairing=mat["pairing"],
                seed_pairs=mat["seeds"],
                n_unpaired_arm=mat["n_unpaired_arm"],
                n_unpaired_reference=mat["n_unpaired_reference"],
            )
            if mat["pairing"] == "by order":
                warnings.append(f"{task}: {arm} vs {ref}: no common seed; seeds paired in seed order")
            if cmp["n_unpaired_arm"] or cmp["n_unpaired_reference"]:
                warnings.append(
                    f"{task}: {arm} vs {ref}: {cmp['n_unpaired_arm']} docs only in {arm}, "
                    f"{cmp['n_unpaired_reference']} only in {ref} (excluded from the pairing)"
                )
            comparisons[ref][arm] = cmp
    return {**facts, "arms": arm_stats, "comparisons": comparisons}


def _metric_warnings(results: Sequence[ArmResult]) -> list[str]:
    """Flag reported task means that disagree with the mean of their own items (a sign of mixed-up filters)."""
    out = []
    for r in results:
        for task, value in r.metrics.items():
            scores = r.items.get(task)
            if scores and abs(float(np.mean(list(scores.values()))) - value) > METRIC_TOL * max(1.0, abs(value)):
                out.append(
                    f"{r.arm} seed {r.seed}: metrics.json {task}={value:.6g} differs from its item mean "
                    f"{np.mean(list(scores.values())):.6g}; the item mean is used"
                )
    return out
