"""Score one pool with several selectors and report how they relate — before any GPU hours (``cpqs-bench compare``,
:func:`compare_selectors`).

Writes to ``out``: ``compare.json`` (everything), ``report.md`` (short), ``histograms.png``,
``agreement.png`` (pairwise Spearman and top-k Jaccard), ``pairwise_accuracy.png`` (with tiers), the per-selector
scores under ``scores/`` and ``manifest.json`` (inputs + provenance).

* **Score histograms** of the eligible (non-excluded) scores, with exclusion counts by reason.
* **Pairwise Spearman** over the examples both selectors leave eligible; **top-k Jaccard** of the selections that
  :func:`cpqs_bench.select.select` makes at ``--budget``.
* **Length correlation**: Spearman of each score with the response length in target-tokenizer tokens.
* **Training overlap**: for a selector with a checkpoint (cpqs), how many pool instructions it was trained on.
* **Contamination** (with a :class:`cpqs_bench.contamination.ContaminationIndex` of the evaluation tasks): per task,
  the evaluation items that the pool and each selector's top-k share a word n-gram with
  (:func:`cpqs_bench.contamination.report`, one arm per selector); a selector that prefers benchmark-like rows shows a
  higher fraction than ``random``.
* **Pairwise accuracy** when the pool carries quality tiers — ``--tiers A,B[,C...]`` (pools answering the same
  instructions, strongest first, e.g. ``alpaca_eval/gpt4,alpaca_eval/pythia-12b-mix-sft``; joined on the
  instruction text) or ``--pairs FILE --pair-fields strong,weak`` (a same-instruction pairs file): for each
  instruction and each ordered tier pair, 1 if the selector ranks the stronger answer higher, 0.5 on a tie, else 0.
  An excluded answer ranks below every eligible one (it would never be selected); two excluded answers tie. The CI is
  a percentile bootstrap over pairs (``--n-boot``, seeded; with more than two tiers the pairs of one
  instruction are resampled independently, which makes the CI somewhat optimistic).

Scores are computed through the registry (built-ins and plugins alike), one shared model cache for the run, or read
from ``--scores NAME=FILE``; computed scores are reused on a rerun when their inputs did not change.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cpqs_bench.contamination import ContaminationIndex, markdown_table
from cpqs_bench.contamination import report as contamination_report
from cpqs_bench.data.example import Example
from cpqs_bench.io import read_json, read_jsonl, stable_hash, write_bytes, write_json, write_jsonl, write_text
from cpqs_bench.selectors import degeneracy, registry
from cpqs_bench.selectors.base import Needs, ScoringContext

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cpqs_bench.config import Config, DataConfig
    from cpqs_bench.data.pool import Pool
    from cpqs_bench.models import ModelInfo
    from cpqs_bench.selectors.base import ModelLoader


class CompareError(ValueError):
    pass


@dataclass
class TieredPool:
    examples: list[Example]
    pairs: list[tuple[str, str]]  # (stronger answer id, weaker answer id)
    tiers: list[str]
    sources: dict[str, Any]


@dataclass(frozen=True)
class CompareSettings:
    """The comparison's own knobs: the top-``budget`` whose overlap (Jaccard, contamination) is reported, the
    bootstrap's ``n_boot`` for pairwise accuracy and the ``seed`` (scoring and bootstrap); ``None``: the config's
    ``selectors.budget`` / ``selectors.seed``."""

    budget: float | None = None
    n_boot: int = 2000
    seed: int | None = None


# ------------------------------------------------------------------------------------------------ pools
def _label(spec: str) -> str:
    name = Path(spec).name
    for suffix in (".gz", ".jsonl", ".json", ".parquet"):
        name = name.removesuffix(suffix)
    return name


def _read(spec: str, data: DataConfig, field_map: dict[str, str] | None = None, schema: str | None = None) -> Pool:
    from cpqs_bench.data.pool import read_pool

    return read_pool(
        spec,
        schema=schema,
        field_map=field_map,
        mirror=data.mirror,
        max_rejected_fraction=data.max_rejected_fraction,
    )


def join_tiers(
    tier_pools: Sequence[tuple[str, Sequence[Example]]], limit: int | None
) -> tuple[list[Example], list[tuple[str, str]]]:
    """Examples ``<tier>#<k>`` for the instructions every tier answers (first tier's order), and the ordered pairs."""
    maps = []
    for _, exs in tier_pools:
        by_instruction: dict[str, Example] = {}
        for ex in exs:
            by_instruction.setdefault(ex.instruction, ex)  # duplicates: the first answer stands for the instruction
        maps.append(by_instruction)
    shared = [ins for ins in maps[0] if all(ins in m for m in maps[1:])]
    if limit is not None:
        shared = shared[:limit]
    if not shared:
        raise CompareError("the tiers share no instruction; check that they answer the same prompts")
    examples, pairs = [], []
    for k, ins in enumerate(shared):
        ids = []
        for rank, ((label, _), m) in enumerate(zip(tier_pools, maps)):
            src = m[ins]
            ex_id = f"{label}#{k}"
            examples.append(
                Example(
                    ex_id,
                    src.prompt,
                    src.response,
                    {**src.metadata, "tier": label, "tier_rank": rank, "group": k, "source_id": src.id},
                )
            )
            ids.append(ex_id)
        pairs += [(ids[i], ids[j]) for i in range(len(ids)) for j in range(i + 1, len(ids))]
    return examples, pairs


def tiered_pool(
    data: DataConfig,
    *,
    examples: Sequence[Example] | None = None,
    source: str = "pool",
    tiers: Sequence[str] | None = None,
    pairs: str | None = None,
    pair_fields: tuple[str, str] = ("output_gpt4", "output_davinci003"),
    limit: int | None = None,
) -> TieredPool:
    """The pool to compare on: ``examples`` as given (read at the edge), or the instructions several tier pools
    share (``tiers``, strongest first), or both sides of a same-instruction pairs file (``pairs``); ``limit`` caps
    the shared instructions of tiers/pairs (a user's explicit ask only)."""
    if tiers:
        if len(tiers) < 2:
            raise CompareError("--tiers needs at least two pools, strongest first")
        loaded = [(spec, _read(spec, data)) for spec in tiers]
        labels = [_label(s) for s in tiers]
        if len(set(labels)) != len(labels):
            raise CompareError(f"--tiers labels must differ, got {labels}")
        exs, pair_ids = join_tiers([(lab, p.examples) for lab, (_, p) in zip(labels, loaded)], limit)
        return TieredPool(exs, pair_ids, labels, {s: p.summary() for s, p in loaded})
    if pairs:
        strong, weak = pair_fields
        sides = [
            (strong, _read(pairs, data, {"output": strong}, "alpaca")),
            (weak, _read(pairs, data, {"output": weak}, "alpaca")),
        ]
        exs, pair_ids = join_tiers([(lab, p.examples) for lab, p in sides], limit)
        return TieredPool(exs, pair_ids, [strong, weak], {f"{pairs}:{lab}": p.summary() for lab, p in sides})
    if examples is None:
        raise CompareError("give a pool: --data POOL, or --tiers A,B, or --pairs FILE")
    return TieredPool(list(examples), [], [], {source: {"n": len(examples)}})


# ------------------------------------------------------------------------------------------------ scoring
def _scores_from_file(name: str, path: str | Path, ids: list[str]) -> list[dict[str, Any]]:
    rows = read_jsonl(path)
    by_id = {}
    for i, r in enumerate(rows, 1):
        if "id" not in r or "score" not in r:
            raise CompareError(f"{path}:{i}: a scores row needs 'id' and 'score'")
        by_id[str(r["id"])] = r
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise CompareError(
            f"--scores {name}={path}: {len(missing)} of {len(ids)} pool ids have no score "
            f"(first: {missing[0]!r}); was it scored on this pool?"
        )
    return [by_id[i] for i in ids]


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """Same convention as ``cpqs-bench score``: a non-finite score is written as null (it must be excluded)."""
    s = row.get("score")
    if isinstance(s, float) and not math.isfinite(s):
        if row.get("exclude") is None:
            raise CompareError(f"example {row['id']!r}: score {s} without an exclusion reason")
        row["score"] = None
    return row


def score_all(
    names: Sequence[str],
    examples: list[Example],
    cfg: Config,
    out: Path,
    *,
    seed: int,
    scores: dict[str, str],
    checkpoints: dict[str, str],
    loader: ModelLoader | None,
) -> tuple[dict[str, list[dict[str, Any]]], ScoringContext]:
    """Per selector: rows in pool order (from a file, a previous identical run, or scored now)."""
    from cpqs_bench.config import config_hash

    ids = [ex.id for ex in examples]
    pool_key = stable_hash([ex.to_dict() for ex in examples])
    cache: dict[
        tuple[str, str | None, str | None], tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo | None]
    ] = {}
    base = ScoringContext(cfg, out / "work", seed=seed, loader=loader, _cache=cache)
    result = {}
    for name in names:
        if name in scores:
            result[name] = _scores_from_file(name, scores[name], ids)
            continue
        selector = registry.get(name, extra=cfg.selectors.plugins)
        ckpt = checkpoints.get(name)
        if selector.needs is Needs.CHECKPOINT and ckpt is None:
            raise CompareError(
                f"selector {name!r} needs a trained checkpoint: --selector-checkpoint {name}=DIR "
                f"(or --scores {name}=FILE)"
            )
        key = stable_hash(
            {
                "pool": pool_key,
                "config": config_hash(cfg),
                "seed": seed,
                "checkpoint": ckpt,
                "target": registry.resolve(name, cfg.selectors.plugins),
            }
        )
        path, meta = out / "scores" / f"{name}.jsonl", out / "scores" / f"{name}.meta.json"
        if path.exists() and meta.exists() and read_json(meta).get("key") == key:
            result[name] = read_jsonl(path)
            continue
        ctx = ScoringContext(
            cfg, out / "work" / name, seed=seed, checkpoint=Path(ckpt) if ckpt else None, loader=loader, _cache=cache
        )
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        rows = [_json_row(r.to_dict()) for r in selector.score(examples, ctx)]
        if [r["id"] for r in rows] != ids:
            raise CompareError(f"selector {name!r} returned {len(rows)} rows not matching the pool's {len(ids)} ids")
        write_jsonl(path, rows)
        write_json(meta, {"key": key, "selector": name, "n": len(rows)})
        result[name] = rows
    return result, base


# ------------------------------------------------------------------------------------------------ metrics
def _eligible(row: dict[str, Any]) -> bool:
    s = row.get("score")
    return row.get("exclude") is None and isinstance(s, (int, float)) and math.isfinite(s)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho; None when undefined (fewer than 3 points or a constant side)."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def pairwise_spearman(rows: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    names = list(rows)
    out: dict[str, dict[str, dict[str, Any]]] = {a: {} for a in names}
    for a in names:
        for b in names:
            both = [(ra["score"], rb["score"]) for ra, rb in zip(rows[a], rows[b]) if _eligible(ra) and _eligible(rb)]
            out[a][b] = {"rho": spearman([p[0] for p in both], [p[1] for p in both]), "n": len(both)}
    return out


def topk_sets(rows: dict[str, list[dict[str, Any]]], budget: float) -> dict[str, set[str]]:
    from cpqs_bench.select import kept_ids, select

    return {name: set(kept_ids(select(r, budget))) for name, r in rows.items()}


def jaccard(a: set[str], b: set[str]) -> float | None:
    union = a | b
    return len(a & b) / len(union) if union else None


def pair_outcomes(rows: list[dict[str, Any]], pairs: Sequence[tuple[str, str]]) -> list[float]:
    """1 / 0.5 / 0 per (stronger, weaker) pair; an excluded answer ranks below every eligible one."""
    key = {r["id"]: (r["score"] if _eligible(r) else -math.inf) for r in rows}
    out = []
    for strong, weak in pairs:
        a, b = key[strong], key[weak]
        out.append(1.0 if a > b else 0.5 if a == b else 0.0)
    return out


def pairwise_accuracy(
    rows: list[dict[str, Any]], pairs: Sequence[tuple[str, str]], n_boot: int, seed: int, name: str
) -> dict[str, Any]:
    from cpqs_bench.stats import bootstrap_mean_ci, rng_for

    outcomes = pair_outcomes(rows, pairs)
    eligible = {r["id"] for r in rows if _eligible(r)}
    low, high = bootstrap_mean_ci(outcomes, n_boot, rng_for(seed, "pairwise_accuracy", name))
    both = [o for o, (s, w) in zip(outcomes, pairs) if s in eligible and w in eligible]
    return {
        "accuracy": sum(outcomes) / len(outcomes),
        "ci95": [low, high],
        "n_pairs": len(outcomes),
        "ties": sum(o == 0.5 for o in outcomes),
        "both_eligible": len(both),
        "accuracy_both_eligible": sum(both) / len(both) if both else None,
    }


def summarize_scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    vals = np.array([r["score"] for r in rows if _eligible(r)], dtype=float)
    reasons: dict[str, int] = {}
    for r in rows:
        if r.get("exclude") is not None:
            reasons[r["exclude"]] = reasons.get(r["exclude"], 0) + 1
    stats = {"n": len(rows), "eligible": int(vals.size), "excluded": reasons}
    if vals.size:
        stats.update(
            mean=float(vals.mean()),
            std=float(vals.std()),
            min=float(vals.min()),
            max=float(vals.max()),
            median=float(np.median(vals)),
        )
    return stats


# ------------------------------------------------------------------------------------------------ figures, report
def _png(fig: Figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def _figures(out: Path, rows: dict[str, list[dict[str, Any]]], rho: dict, jac: dict, acc: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(rows)
    made = []
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        vals = [r["score"] for r in rows[name] if _eligible(r)]
        ax.hist(vals, bins=30, color="#4477aa")
        ax.set_title(f"{name} (n={len(vals)})", fontsize=9)
    _png(fig, out / "histograms.png")
    made.append("histograms.png")
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.6 * len(names), 0.8 + 0.8 * len(names)))
    for ax, (title, m) in zip(
        axes, [("Spearman rho", {a: {b: rho[a][b]["rho"] for b in names} for a in names}), ("top-k Jaccard", jac)]
    ):
        grid = np.array([[np.nan if m[a][b] is None else m[a][b] for b in names] for a in names], dtype=float)
        im = ax.imshow(grid, vmin=-1 if "rho" in title else 0, vmax=1, cmap="RdBu_r" if "rho" in title else "viridis")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        for i in range(len(names)):
            for j in range(len(names)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    _png(fig, out / "agreement.png")
    made.append("agreement.png")
    if acc:
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(acc), 3))
        means = [acc[n]["accuracy"] for n in acc]
        err = [[m - acc[n]["ci95"][0] for n, m in zip(acc, means)], [acc[n]["ci95"][1] - m for n, m in zip(acc, means)]]
        ax.bar(list(acc), means, yerr=err, capsize=4, color="#66aa55")
        ax.axhline(0.5, color="grey", lw=1, ls="--")
        ax.set_ylim(0, 1)
        ax.set_ylabel("pairwise accuracy (95% CI)")
        ax.tick_params(axis="x", rotation=45)
        _png(fig, out / "pairwise_accuracy.png")
        made.append("pairwise_accuracy.png")
    return made


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def markdown(result: dict[str, Any]) -> str:
    names = list(result["selectors"])
    budget = result["budget"]
    budget = int(budget) if float(budget).is_integer() else budget
    lines = [
        "# Selector comparison",
        "",
        f"Pool: {result['pool']['n']} examples; budget {budget} (top {result['k']}).",
        "",
    ]
    lines += ["| selector | eligible | excluded | mean | rho vs length |", "|---|---|---|---|---|"]
    for n in names:
        s = result["selectors"][n]
        excl = ", ".join(f"{k}: {v}" for k, v in s["excluded"].items()) or "0"
        lines.append(
            f"| {n} | {s['eligible']} | {excl} | {_fmt(s.get('mean'))} | {_fmt(result['length_spearman'][n]['rho'])} |"
        )
    lines += ["", "Degeneracy (a selector whose scores cannot rank the pool):", ""]
    lines += [f"- {degeneracy.line(n, result['degeneracy'][n])}" for n in names if n in result.get("degeneracy", {})]
    lines += [
        "",
        "Pairwise Spearman (over examples both leave eligible) / top-k Jaccard:",
        "",
        "| | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for a in names:
        cells = [f"{_fmt(result['spearman'][a][b]['rho'])} / {_fmt(result['jaccard'][a][b])}" for b in names]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    if result.get("pairwise_accuracy"):
        tiers = " > ".join(result["pool"]["tiers"])
        lines += [
            "",
            f"Pairwise accuracy ({tiers}; {result['pool']['n_pairs']} pairs; 95% bootstrap CI):",
            "",
            "| selector | accuracy | 95% CI | ties | both eligible | accuracy when both eligible |",
            "|---|---|---|---|---|---|",
        ]
        for n, a in result["pairwise_accuracy"].items():
            lines.append(
                f"| {n} | {a['accuracy']:.3f} | [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}] | {a['ties']} | "
                f"{a['both_eligible']} | {_fmt(a['accuracy_both_eligible'])} |"
            )
    for n, o in (result.get("training_overlap") or {}).items():
        lines += [
            "",
            f"{n}: {o.get('overlap')} of {o.get('pool')} pool instructions were in its training pairs"
            + (" (should be 0: score a pool disjoint from the selector's training data)" if o.get("overlap") else ""),
        ]
    if result.get("contamination"):
        lines += ["", f"Top-{result['k']} selections: " + markdown_table(result["contamination"])]
    lines += ["", "Figures: " + ", ".join(f"![{f}]({f})" for f in result["figures"]), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ entry point
def compare_selectors(
    cfg: Config,
    selectors: Sequence[str],
    out: str | Path,
    *,
    pool: TieredPool,
    settings: CompareSettings = CompareSettings(),
    scores: dict[str, str] | None = None,
    checkpoints: dict[str, str] | None = None,
    loader: ModelLoader | None = None,
    contamination: ContaminationIndex | None = None,
) -> dict[str, Any]:
    """Score (or read) each selector on ``pool`` and write the comparison report to ``out``; returns the JSON.
    ``settings``: budget, bootstrap size and seed (:class:`CompareSettings`); ``scores`` / ``checkpoints``: per
    selector, a scores file read instead of scoring / the checkpoint it scores with.
    ``contamination``: an index of the evaluation items; the report then holds, per task, the items overlapping the
    pool and each selector's top-k (``result["contamination"]``, :func:`cpqs_bench.contamination.report`)."""
    from cpqs_bench import provenance
    from cpqs_bench.config import config_hash, to_dict
    from cpqs_bench.select import budget_count
    from cpqs_bench.selectors.base import response_tokens

    if not selectors:
        raise CompareError("--selectors is empty")
    if len(set(selectors)) != len(selectors):
        raise CompareError(f"--selectors lists a name twice: {list(selectors)}")
    seed = cfg.selectors.seed if settings.seed is None else settings.seed
    budget = cfg.selectors.budget if settings.budget is None else settings.budget
    n_boot = settings.n_boot
    out = Path(out)
    rows, base = score_all(
        selectors,
        pool.examples,
        cfg,
        out,
        seed=seed,
        scores=dict(scores or {}),
        checkpoints=dict(checkpoints or {}),
        loader=loader,
    )
    tok = base.tokenizer()
    lengths = {ex.id: len(response_tokens(tok, ex, cfg.prompt)) for ex in pool.examples}
    tops = topk_sets(rows, budget)
    result: dict[str, Any] = {
        "pool": {"n": len(pool.examples), "sources": pool.sources, "tiers": pool.tiers, "n_pairs": len(pool.pairs)},
        "budget": budget,
        "k": budget_count(budget, len(pool.examples)),
        "seed": seed,
        "selectors": {n: summarize_scores(r) for n, r in rows.items()},
        "degeneracy": {n: degeneracy.report(r) for n, r in rows.items()},
        "spearman": pairwise_spearman(rows),
        "jaccard": {a: {b: jaccard(tops[a], tops[b]) for b in rows} for a in rows},
        "length_spearman": {},
        "pairwise_accuracy": {},
        "training_overlap": {},
        "contamination": None,
    }
    for name, r in rows.items():
        el = [x for x in r if _eligible(x)]
        result["length_spearman"][name] = {
            "rho": spearman([x["score"] for x in el], [lengths[x["id"]] for x in el]),
            "n": len(el),
        }
    for name, ckpt in (checkpoints or {}).items():
        if name in rows and (Path(ckpt) / "selector.json").exists():
            from cpqs_bench.selectors.cpqs.checkpoint import training_instruction_overlap

            result["training_overlap"][name] = training_instruction_overlap(ckpt, pool.examples)
    if contamination is not None:
        result["contamination"] = contamination_report(
            contamination, pool.examples, {name: {None: sorted(tops[name])} for name in rows}
        )
    if pool.pairs:
        for name, r in rows.items():
            result["pairwise_accuracy"][name] = pairwise_accuracy(r, pool.pairs, n_boot, seed, name)
    result["figures"] = _figures(out, rows, result["spearman"], result["jaccard"], result["pairwise_accuracy"])
    write_json(out / "compare.json", result)
    write_text(out / "report.md", markdown(result))
    write_json(
        out / "manifest.json",
        {
            "selectors": list(selectors),
            "config": to_dict(cfg),
            "config_hash": config_hash(cfg),
            "scores_files": dict(scores or {}),
            "checkpoints": dict(checkpoints or {}),
            "contamination": None
            if contamination is None
            else {"n": contamination.n, "tasks": contamination.tasks, "template_ngrams": contamination.template_ngrams},
            **provenance.collect(),
        },
    )
    return result
