"""Leaderboard renderer: one Markdown page, its machine-readable JSON twin and a bar chart per experiment.

Why a single intermediate document: the Markdown and the PNG are both drawn from the JSON document built by
``build_document``, so the three files cannot disagree about a number. Every row of the provenance table carries
the commit, config hash, data checksums, model revision, package versions, hardware and seeds of the run it
describes, because a leaderboard number without them cannot be reproduced or audited.

Layout (the paper's): one table per domain (general / math / code, from the task name or the manifests' ``domain``)
with arms as rows, the selection budget as a fraction of the pool and the kept count, and per task the score with
Δ vs full and Δ vs random; then one detailed table per task with every Δ (vs random, full and base), its hierarchical
bootstrap CI, the item- and seed-level p-values, the power of that comparison (smallest attainable p and the
minimum detectable effect) and the verdict (see :mod:`cpqs_bench.stats` for the rules). The JSON twin holds the
per-item scores of every arm × seed (``items[task][arm][seed]``, seed ``"null"`` for base) so any row can be re-tested.

When the run has pairwise judge stages (``evaluate.pairwise``), a "general (pairwise judge)" section follows the
domain tables (``pairwise`` in the JSON): per arm, win / tie / lose / unparsed summed over seeds against the
reference arm, the win rate, the winning score ``(W - L) / N + 1``, the sign-test p and the bootstrap CI of the net
score over prompts (:func:`cpqs_bench.evaluate.judge.summarize_over_seeds`), the judge, and "weak judge: a pipeline
check" when the judge is the embedded / target model itself.

Accuracy-like scores (exact match, pass@1) are fractions in [0, 1] in the JSON; the Markdown shows percent (means)
and percentage points (differences). Continuous proxy metrics (NLL per byte or token, bits per byte; lower is better)
are shown in their own unit with 3 decimals and labelled "proxy".
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from cpqs_bench.io import write_bytes, write_json, write_text
from cpqs_bench.stats import DEFAULT_REFERENCES, DOMAINS, ArmResult, load_arm_result, summarize, task_domain

SCHEMA = "cpqs-bench/leaderboard/v1"
PACKAGES = ("torch", "transformers", "peft", "trl", "lm_eval")
MISSING = "missing"
UP, DOWN = "▲", "▼"


# ----------------------------------------------------------------------------------------------- formatting


def fmt_pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def fmt_pp(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.1f}"


# Proxies (NLL per byte, ~0.5-2.5) differ between arms in the third or fourth decimal: with three, a smoke run read
# "± 0.000" and "+0.000 [-0.001, +0.001]" where the data held a difference.
RAW_DECIMALS = 4
P_FLOOR = 1e-10  # smaller p-values print as "< 1e-10": 2/2^40 and 1.6e-58 say the same to a reader


def fmt_value(x: float | None, unit: str) -> str:
    return fmt_pct(x) if unit == "pct" else ("—" if x is None else f"{x:.{RAW_DECIMALS}f}")


def fmt_delta(x: float | None, unit: str) -> str:
    return fmt_pp(x) if unit == "pct" else ("—" if x is None else f"{x:+.{RAW_DECIMALS}f}")


def task_unit(facts: dict[str, Any]) -> str:
    """ "pct" for accuracy-like metrics (shown in % / pp), "raw" for proxies (own unit)."""
    return "raw" if facts.get("proxy") or not facts.get("higher_is_better", True) else "pct"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    if p < P_FLOOR:
        return f"< {P_FLOOR:.0e}"
    return f"{p:.3f}" if round(p, 3) >= 0.001 else f"{p:.1e}"


def _cell(value: Any) -> str:
    """Markdown-safe table cell: pipes escaped and newlines flattened so a value cannot break the table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _compact(value: Any) -> str:
    """Short text for a provenance value that may be a string, a mapping or a list (``None`` inside: "null")."""
    if value is None or value == {} or value == [] or value == "":
        return MISSING
    return _compact_inner(value)


def _compact_inner(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_compact_inner(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    if isinstance(value, (list, tuple)):
        return ",".join(_compact_inner(v) for v in value)
    return str(value)


# ----------------------------------------------------------------------------------------------- document


def provenance_row(result: ArmResult) -> dict[str, Any]:
    """Provenance of one (arm, seed) from its manifest; absent fields are the string ``"missing"``, never guessed."""
    m = result.manifest
    packages = m.get("package_versions") or m.get("packages") or {}
    versions = {_norm_pkg(k): v for k, v in packages.items()} if isinstance(packages, dict) else {}
    data = m.get("data_sha256") or {}
    model = m.get("model") if isinstance(m.get("model"), dict) else {}
    inputs = m.get("inputs") if isinstance(m.get("inputs"), dict) else {}
    info = m.get("arm_info") if isinstance(m.get("arm_info"), dict) else {}
    return {
        "arm": result.arm,
        "seed": result.seed,
        "recipe_hash": result.recipe_hash,
        "commit": _commit(m),
        "config_hash": m.get("config_hash") or MISSING,
        "data_sha256": dict(sorted(data.items())) if isinstance(data, dict) else {"?": str(data)},
        # the harness writes model: {spec, revision} (and inputs.model_revision); model_id/model_revision: older
        "model_id": m.get("model_id") or model.get("spec") or inputs.get("model") or MISSING,
        "model_revision": model.get("revision") or inputs.get("model_revision") or m.get("model_revision") or MISSING,
        "arm_info": {k: info[k] for k in ("kept", "budget_k", "total", "selector") if k in info},
        "package_versions": {p: versions.get(p) or MISSING for p in PACKAGES},
        "hardware": m.get("hardware") or MISSING,
        "seeds": m.get("seeds") or MISSING,
    }


def _commit(manifest: dict[str, Any]) -> str:
    """``commit``, or ``git.sha`` as written by ``cpqs_bench.provenance``; a dirty tree is marked, not hidden."""
    if manifest.get("commit"):
        return str(manifest["commit"])
    git = manifest.get("git")
    if isinstance(git, dict) and git.get("sha"):
        return str(git["sha"]) + ("+dirty" if git.get("dirty") else "")
    return MISSING


def _norm_pkg(name: str) -> str:
    return name.lower().replace("-", "_")


def _task_rows(task_summary: dict[str, Any], arms: list[str], refs: list[str]) -> list[dict[str, Any]]:
    rows = []
    for arm in arms:
        stats = task_summary["arms"].get(arm)
        if stats is None:
            continue
        vs = {ref: (None if arm == ref else task_summary["comparisons"].get(ref, {}).get(arm)) for ref in refs}
        rows.append(
            {
                "arm": arm,
                "mean": stats["mean"],
                "std": stats["std"],
                "n_seeds": stats["n_seeds"],
                "n_items": stats["n_items"],
                "item_mean": stats["item_mean"],
                "item_ci_low": stats["item_ci_low"],
                "item_ci_high": stats["item_ci_high"],
                "vs": vs,
                "marker": _marker(arm, vs),
            }
        )
    return rows


def _marker(arm: str, vs: dict[str, dict[str, Any] | None]) -> str:
    return "; ".join(f"{ref}: {_verdict_text(arm, ref, cmp)}" for ref, cmp in vs.items()) or "—"


def _verdict_text(arm: str, ref: str, cmp: dict[str, Any] | None) -> str:
    """▲/▼ only for a significant comparison; otherwise the reason there is none ("cannot reach α (n = …)",
    "seed variation not estimable", "no verdict (seeds disagree)", "n.s.")."""
    if ref == arm:
        return "reference"
    if cmp is None or cmp["label"] == "n/a":
        return "n/a"
    if cmp["significant"]:
        return UP if cmp["direction"] == "better" else DOWN
    return cmp["label"]


def _domains(summary: dict[str, Any]) -> dict[str, list[str]]:
    facts = summary.get("task_facts") or {}
    found: dict[str, list[str]] = {}
    for task in summary["tasks"]:
        found.setdefault(str((facts.get(task) or {}).get("domain") or task_domain(task)), []).append(task)
    order = {d: i for i, d in enumerate(DOMAINS)}
    return {d: found[d] for d in sorted(found, key=lambda d: (order.get(d, len(order)), d))}


def _items_by_arm_seed(results: Sequence[ArmResult]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for r in results:
        for task, scores in r.items.items():
            out.setdefault(task, {}).setdefault(r.arm, {})["null" if r.seed is None else str(r.seed)] = dict(
                sorted(scores.items())
            )
    return out


def _power_table(summary: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "n_paired",
        "n_nonzero",
        "n_seeds_paired",
        "p_min_item",
        "p_min_seed",
        "can_reach_alpha",
        "sd_diff",
        "mde",
        "seed_variation_estimable",
    )
    return {
        task: {
            ref: {arm: {k: cmp.get(k) for k in keys} for arm, cmp in per_ref.items()}
            for ref, per_ref in summary["per_task"][task]["comparisons"].items()
        }
        for task in summary["tasks"]
    }


def figure_caption(summary: dict[str, Any]) -> str:
    return (
        f"Bars: mean over items of the per-item score (averaged over seeds first), in %, for the accuracy-like "
        f"metrics (continuous proxies are in the tables). Error bars: "
        f"{100 * summary['ci_level']:.0f}% percentile bootstrap CI of that mean over items "
        f"({summary['n_boot']:,} resamples), i.e. benchmark-sampling uncertainty; seed-to-seed variation is "
        f"the ± std in the tables."
    )


def load_pairwise(
    judge_dirs: Sequence[str | Path], arm_order: Sequence[str] = (), n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """The pairwise-judge section from judge stage directories (``summary.json``, ``judgements.jsonl`` and the
    stage ``manifest.json``): one row per (arm, reference, judge), its seeds pooled."""
    from cpqs_bench.evaluate.judge import read_judgements, summarize_over_seeds
    from cpqs_bench.io import read_json

    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for d in map(Path, judge_dirs):
        missing = [n for n in ("manifest.json", "summary.json", "judgements.jsonl") if not (d / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{d}: not a finished pairwise judge directory (missing {', '.join(missing)})")
        m, doc = read_json(d / "manifest.json"), read_json(d / "summary.json")
        key = (m["arm"], m["reference"], doc["judge_identity"], doc["rule"])
        groups.setdefault(key, []).append(
            {"dir": str(d), "manifest": m, "doc": doc, "judgements": read_judgements(d / "judgements.jsonl")}
        )
    rank = {a: i for i, a in enumerate(arm_order)}
    rows = []
    for (arm, reference, _identity, rule), runs in sorted(
        groups.items(), key=lambda kv: (rank.get(kv[0][0], len(rank)), kv[0])
    ):
        runs.sort(
            key=lambda r: (
                r["manifest"].get("seed")
                if r["manifest"].get("seed") is not None
                else r["manifest"].get("reference_seed") or 0
            )
        )
        first = runs[0]["doc"]
        stats = summarize_over_seeds([r["judgements"] for r in runs], n_boot=n_boot, seed=seed)
        sets = list(dict.fromkeys(j.id.split("/")[0] for r in runs for j in r["judgements"]))
        rows.append(
            {
                "arm": arm,
                "reference": reference,
                "rule": rule,
                "judge": first.get("judge_name") or first["judge"],
                "judge_label": first["judge"],
                "weak_judge": bool(first.get("weak_judge")),
                "seeds": [r["manifest"].get("seed") for r in runs],
                "reference_seeds": [r["manifest"].get("reference_seed") for r in runs],
                "sets": sets,
                **stats,
                "per_seed": [
                    {
                        "seed": r["manifest"].get("seed"),
                        "reference_seed": r["manifest"].get("reference_seed"),
                        **r["doc"]["summary"],
                    }
                    for r in runs
                ],
                "dirs": [r["dir"] for r in runs],
            }
        )
    return {
        "title": "general (pairwise judge)",
        "rows": rows,
        "n_boot": n_boot,
        "seed": seed,
        "judge_prompt": sorted(
            {r["doc"].get("judge_prompt") for g in groups.values() for r in g if r["doc"].get("judge_prompt")}
        ),
    }


def build_document(
    summary: dict[str, Any],
    results: Sequence[ArmResult],
    experiment: str,
    title_note: str,
    pairwise: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The machine-readable leaderboard: everything the Markdown shows, plus the full statistics summary."""
    refs = list(summary["references"])
    arms = list(summary["arms"])
    rank = {a: i for i, a in enumerate(arms)}
    ordered = sorted(results, key=lambda r: (rank.get(r.arm, len(rank)), r.arm, r.seed is not None, r.seed or 0))
    provenance = [provenance_row(r) for r in ordered]
    return {
        "schema": SCHEMA,
        "experiment": experiment,
        "note": title_note,
        "score_unit": "fraction in [0, 1] (Markdown shows % and percentage points)",
        "stats": {
            k: summary[k]
            for k in (
                "alpha",
                "ci_level",
                "n_boot",
                "n_perm",
                "seed",
                "exact_max_nonzero",
                "min_seeds_for_verdict",
                "references",
                "missing_references",
                "recipe_hash",
            )
        }
        | {"p_adjustment": "none"},
        "arms": arms,
        "tasks": list(summary["tasks"]),
        "conditional_on": summary.get("conditional_on"),
        "task_facts": {
            t: {**summary["task_facts"][t], "unit": task_unit(summary["task_facts"][t])} for t in summary["tasks"]
        },
        "domains": _domains(summary),
        "arm_info": summary.get("arm_info") or {},
        "tables": {t: _task_rows(summary["per_task"][t], arms, refs) for t in summary["tasks"]},
        "power": _power_table(summary),
        "items": _items_by_arm_seed(ordered),
        "provenance": provenance,
        "figure": {"file": f"{experiment}.png", "caption": figure_caption(summary)},
        "warnings": list(summary["warnings"]),
        "summary": summary,
        **({"pairwise": pairwise} if pairwise else {}),
    }


# ----------------------------------------------------------------------------------------------- markdown


def render_markdown(doc: dict[str, Any]) -> str:
    st = doc["stats"]
    refs = st["references"]
    alpha = st["alpha"]
    conditional = doc.get("conditional_on") or "the evaluation items and the drawn fine-tuning seeds"
    lines = [f"# Leaderboard: {doc['experiment']}", "", f"> **Note:** {doc['note']}", ""]
    lines += [
        f"Fine-tuning recipe hash: `{st['recipe_hash'] or MISSING}`. Arms: {', '.join(doc['arms'])}.",
        "",
        f"**All inference here is conditional on {conditional}**: it says how sure we can be on these items with "
        "these fine-tuning runs, not on other "
        "benchmarks or other seeds.",
        "",
        "How to read: *mean ± std* is the task score over seeds (std with ddof=1; — for one seed), in % for "
        "accuracy-like metrics and in the metric's own unit for continuous *proxy* metrics (NLL per byte, bits "
        "per byte of the reference solution: lower is better; they are reported beside, never instead of, exact "
        "match and pass@1). *Δ vs X* is the paired mean per-item difference (arm − X; pp for % metrics). "
        f"Brackets: {100 * st['ci_level']:.0f}% hierarchical paired bootstrap CI ({st['n_boot']:,} resamples: "
        "seeds resampled, then items), so training noise is part of the interval. *p items / seeds*: two-sided "
        "sign-flip permutation p-values over the per-item differences averaged over seeds (exact when at most "
        f"{st['exact_max_nonzero']} are non-zero, else {st['n_perm']:,} Monte Carlo flips with the +1 correction) "
        "and over the per-seed mean differences (exact). *Power*: the smallest p this comparison's exact item test "
        f"can reach (2/2^m for m non-zero differences) and the minimum detectable effect at 80% power, α = {alpha} "
        "two-sided, from the observed sd of the item differences (normal approximation). "
        f"{UP}/{DOWN}: better/worse in the metric's direction, given only when ≥ {st['min_seeds_for_verdict']} "
        f"paired seeds exist, the CIs exclude 0, the item p < {alpha} and the seed-level test agrees (its p < "
        f"{alpha}, or — with fewer than 6 seeds, where it cannot reach {alpha} — every seed's difference has the "
        "sign of Δ). Otherwise the cell says why there is no verdict: *cannot reach α (n = m)* (the test has no "
        "power: even m/m same-sign differences give p ≥ α), *seed variation not estimable* (fewer than "
        f"{st['min_seeds_for_verdict']} seeds), *no verdict (seeds disagree)*, or *n.s.*. p-values are not "
        "adjusted for multiple comparisons. *ρ(score, length)*: Spearman correlation of the selector's scores with "
        "response length (tokens) over the scored pool, mean over seeds where the selection is redrawn per seed — "
        "the length-confound check: near +1, the selector mostly keeps the longest answers.",
        "",
    ]
    if st["missing_references"]:
        lines += [f"Reference arm(s) not in this run: {', '.join(st['missing_references'])}.", ""]
    short = [a for a, info in (doc.get("arm_info") or {}).items() if info.get("short")]
    if short:
        lines += [f"**Warning:** arm(s) {', '.join(short)} trained on fewer examples than the budget k (see Kept).", ""]
    facts = doc["task_facts"]
    for domain, tasks in doc["domains"].items():
        lines += [f"## Domain: {domain}", "", *_domain_table(doc, tasks), ""]
        for task in tasks:
            f = facts[task]
            kind = (
                f"metric `{f['metric']}`"
                + (", proxy" if f["proxy"] else "")
                + (", lower is better" if not f["higher_is_better"] else "")
            )
            lines += [
                f"### {task}",
                "",
                f"*{kind}.* {_mde_sentence(doc['tables'][task], refs, task_unit(f))}",
                "",
                *_task_table(doc["tables"][task], refs, st["ci_level"], task_unit(f)),
                "",
            ]
    if doc.get("pairwise"):
        lines += _pairwise_section(doc["pairwise"])
    fig = doc["figure"]
    lines += [
        "## Figure",
        "",
        f"![{doc['experiment']} scores per task and arm]({fig['file']})",
        "",
        f"*{fig['caption']}*",
        "",
    ]
    lines += ["## Provenance", "", *_provenance_table(doc["provenance"]), ""]
    if doc["warnings"]:
        lines += ["## Warnings", "", *(f"- {_cell(w)}" for w in doc["warnings"]), ""]
    return "\n".join(lines)


def _pairwise_section(section: dict[str, Any]) -> list[str]:
    rows = section["rows"]
    lines = [
        f"## Domain: {section['title']}",
        "",
        "Each model's greedy answers on the general-domain prompt sets, compared by an LLM judge with the "
        "reference arm's answers to the same prompts (a fine-tuned reference of the same seed), asked twice "
        "with the order swapped. *strict* rule: a win needs both orders to prefer the arm, a loss both to "
        "prefer the reference, anything else is a tie; *unparsed*: the judge's first line held no two scores "
        "(left out of N). Counts are summed over seeds; *win rate* = (W + T/2) / N; *winning score* = "
        "(W − L) / N + 1 (1 = even); *sign-test p*: two-sided, prompts the arm wins on average over seeds vs "
        f"loses; *net CI*: 95% bootstrap interval of (W − L) / N over prompts ({section['n_boot']:,} "
        "resamples). A weak judge (the embedded / target model judging) is a pipeline check, not a quality "
        "signal.",
        "",
        "| arm | vs | seeds | sets | win | tie | lose | unparsed | win rate (%) | winning score | sign-test p "
        "| net (W−L)/N [95% CI] | judge |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seeds = ",".join(
            "—" if s is None else str(s)
            for s in (r["seeds"] if r["arm"] != "base" or r["reference"] == "base" else r["reference_seeds"])
        )
        net = None if r["winning_score"] is None else r["winning_score"] - 1
        ci = r["net_ci95"]
        net_cell = "—" if net is None else (f"{net:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""))
        judge = r["judge"] + (f" ({r['rule']}); weak judge: a pipeline check" if r["weak_judge"] else f" ({r['rule']})")
        lines.append(
            "| "
            + " | ".join(
                _cell(c)
                for c in (
                    r["arm"],
                    r["reference"],
                    seeds,
                    ", ".join(r["sets"]),
                    r["win"],
                    r["tie"],
                    r["lose"],
                    r["unparsed"],
                    fmt_pct(r["win_rate"]),
                    "—" if r["winning_score"] is None else f"{r['winning_score']:.3f}",
                    fmt_p(r["sign_test_p"]),
                    net_cell,
                    judge,
                )
            )
            + " |"
        )
    labels = sorted({r["judge_label"] for r in rows})
    lines += ["", "Judge(s): " + "; ".join(labels) + ".", ""]
    return lines


def _mde_sentence(rows: list[dict[str, Any]], refs: list[str], unit: str) -> str:
    """What this design can detect at all: the range of minimum detectable effects per reference, over arms."""
    parts = []
    for ref in refs:
        mdes = [
            row["vs"][ref]["mde"]
            for row in rows
            if row["arm"] != ref and row["vs"].get(ref) and row["vs"][ref].get("mde") is not None
        ]
        if mdes:
            lo, hi = fmt_value(min(mdes), unit), fmt_value(max(mdes), unit)
            parts.append(f"vs {ref} {lo}" + ("" if lo == hi else f"–{hi}"))
    n = max((row["n_items"] for row in rows), default=0)
    return (
        (
            f"n = {n} items; minimum detectable effect at 80% power{' (pp)' if unit == 'pct' else ''}: "
            + "; ".join(parts)
            + "."
        )
        if parts
        else f"n = {n} items."
    )


def _arm_budget_cells(info: dict[str, Any] | None) -> list[str]:
    info = info or {}
    sel = info.get("selector")
    sel = ", ".join(sel) if isinstance(sel, list) else (sel or "—")
    frac = info.get("budget_fraction")
    k = info.get("budget_k")
    budget = "—" if k is None else (f"{frac:.3g} (k = {k})" if frac is not None else f"k = {k}")
    kept = info.get("kept") or []
    kept_s = "—" if not kept else "/".join(map(str, kept)) + (" ⚠ < k" if info.get("short") else "")
    rho = info.get("length_spearman")
    return [str(sel), budget, kept_s, "—" if rho is None else f"{rho:+.2f}"]


def _domain_table(doc: dict[str, Any], tasks: list[str]) -> list[str]:
    """The paper's layout: arms as rows, budget as a fraction of the pool, per task the score and Δ vs full/random."""
    refs = [r for r in ("full", "random") if r in doc["stats"]["references"]]
    header = ["Arm", "Selector", "Budget (fraction of pool)", "Kept", "ρ(score, length)"]
    for task in tasks:
        unit = task_unit(doc["task_facts"][task])
        header += [f"{task} ({'%' if unit == 'pct' else 'proxy'})", *(f"Δ vs {r}" for r in refs)]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * (len(header) - 4)) + "|"]
    for arm in doc["arms"]:
        cells = [arm, *_arm_budget_cells((doc.get("arm_info") or {}).get(arm))]
        any_row = False
        for task in tasks:
            unit = task_unit(doc["task_facts"][task])
            row = next((r for r in doc["tables"][task] if r["arm"] == arm), None)
            any_row |= row is not None
            cells.append("—" if row is None else fmt_value(row["mean"], unit))
            for ref in refs:
                cmp = None if row is None else row["vs"].get(ref)
                if row is not None and arm == ref:
                    cells.append("(ref)")
                elif cmp is None or cmp.get("mean_diff") is None:
                    cells.append("—")
                else:
                    mark = _verdict_text(arm, ref, cmp)
                    cells.append(f"{fmt_delta(cmp['mean_diff'], unit)}" + (f" {mark}" if mark in (UP, DOWN) else ""))
        if any_row:
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return out


def _task_table(rows: list[dict[str, Any]], refs: list[str], level: float, unit: str = "pct") -> list[str]:
    header = ["Arm", f"Mean ± std{' (%)' if unit == 'pct' else ''}", "n seeds"]
    for ref in refs:
        header += [
            f"Δ vs {ref}{' (pp)' if unit == 'pct' else ''} [{100 * level:.0f}% CI]",
            "p items / seeds",
            "power: min p items / seeds; MDE",
        ]
    header.append("Verdict")
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + ["---"]) + "|"]
    for row in rows:
        std = "—" if row["std"] is None else fmt_value(row["std"], unit)
        cells = [row["arm"], f"{fmt_value(row['mean'], unit)} ± {std}", str(row["n_seeds"])]
        for ref in refs:
            cmp = row["vs"].get(ref)
            if row["arm"] == ref:
                cells += ["(reference)", "—", "—"]
            elif cmp is None or cmp["mean_diff"] is None:
                cells += ["n/a", "—", "—"]
            else:
                mde = cmp.get("mde")
                cells += [
                    f"{fmt_delta(cmp['mean_diff'], unit)} [{fmt_delta(cmp['ci_low'], unit)}, "
                    f"{fmt_delta(cmp['ci_high'], unit)}]",
                    f"{fmt_p(cmp['p_value'])} / {fmt_p(cmp.get('p_value_seed'))}",
                    f"{fmt_p(cmp.get('p_min_item'))} / {fmt_p(cmp.get('p_min_seed'))}; "
                    f"{'—' if mde is None else fmt_value(mde, unit).lstrip('+')}"
                    f"{'' if cmp.get('can_reach_alpha', True) else ' (cannot reach α)'}",
                ]
        cells.append(row["marker"])
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return out


def _provenance_table(rows: list[dict[str, Any]]) -> list[str]:
    header = [
        "Arm",
        "Seed",
        "Commit",
        "Config hash",
        "Recipe hash",
        "Data sha256",
        "Model",
        "Revision",
        *PACKAGES,
        "Hardware",
        "Seeds",
        "Kept / k",
    ]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for r in rows:
        data = ", ".join(f"{k}:{str(v)[:8]}" for k, v in r["data_sha256"].items()) or MISSING
        cells = [
            r["arm"],
            "—" if r["seed"] is None else r["seed"],
            _short_commit(r["commit"]),
            r["config_hash"],
            r["recipe_hash"] or "— (not fine-tuned)",
            data,
            r["model_id"],
            r["model_revision"],
            *(r["package_versions"][p] for p in PACKAGES),
            _compact(r["hardware"]),
            _compact(r["seeds"]),
            _kept_k(r.get("arm_info") or {}),
        ]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return out


def _kept_k(info: dict[str, Any]) -> str:
    if not info:
        return "—"
    return f"{info.get('kept', '?')} / {info.get('budget_k', '?')}"


def _short_commit(commit: str) -> str:
    return commit if commit == MISSING else commit[:10] + ("+dirty" if commit.endswith("+dirty") else "")


# ----------------------------------------------------------------------------------------------- figure


def render_png(doc: dict[str, Any]) -> bytes:
    """Grouped bars (one group per task, one bar per arm) with bootstrap CI error bars; Agg, no global state."""
    import matplotlib  # imported here: plotting is only needed when rendering
    from matplotlib.figure import Figure

    arms = doc["arms"]
    pct = [t for t in doc["tasks"] if task_unit(doc["task_facts"][t]) == "pct"]
    tasks = pct or list(doc["tasks"])
    scale = 100.0 if pct else 1.0
    width = 0.8 / max(1, len(arms))
    fig = Figure(figsize=(max(7.0, 2.8 + len(tasks) * len(arms) * 0.33), 4.8), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["tab10"]
    colors = [cmap(i % 10) for i in range(len(arms))]
    for i, arm in enumerate(arms):
        xs, ys, lo, hi = [], [], [], []
        for t, task in enumerate(tasks):
            row = next((r for r in doc["tables"][task] if r["arm"] == arm), None)
            if row is None:
                continue
            y = row["item_mean"] if row["item_mean"] is not None else row["mean"]
            xs.append(t + (i - (len(arms) - 1) / 2) * width)
            ys.append(scale * y)
            has_ci = row["item_ci_low"] is not None
            lo.append(scale * (y - row["item_ci_low"]) if has_ci else 0.0)
            hi.append(scale * (row["item_ci_high"] - y) if has_ci else 0.0)
        if xs:
            ax.bar(
                xs,
                ys,
                width * 0.95,
                yerr=[lo, hi],
                capsize=3,
                label=arm,
                color=colors[i],
                error_kw={"elinewidth": 1, "ecolor": "black"},
            )
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks)
    ax.set_ylabel("score (%)" if pct else "proxy value (lower is better)")
    if pct:
        ax.set_ylim(0, max(5.0, min(100.0, _ymax(doc, tasks) * 1.15)))
    ax.set_title(f"{doc['experiment']}\n{_wrap(doc['note'], 110)}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.text(0.01, 0.01, _wrap(doc["figure"]["caption"], int(fig.get_figwidth() * 17)), fontsize=6.5, va="bottom")
    fig.subplots_adjust(left=0.08, right=0.82, bottom=0.2, top=0.86)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _ymax(doc: dict[str, Any], tasks: Sequence[str]) -> float:
    tops = [
        100 * (r["item_ci_high"] if r["item_ci_high"] is not None else r["mean"])
        for t in tasks
        for r in doc["tables"][t]
    ]
    return max(tops, default=0.0)


def _wrap(text: str, width: int) -> str:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return "\n".join([*lines, cur])


# ----------------------------------------------------------------------------------------------- entry points


def render(
    summary: dict[str, Any],
    results: Sequence[ArmResult],
    out_dir: str | Path,
    experiment: str,
    title_note: str,
    pairwise: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``<experiment>.md``, ``.json`` and ``.png`` atomically under ``out_dir``; return their paths."""
    _check_experiment_name(experiment)
    if not title_note or not title_note.strip():
        raise ValueError("title_note must say what this run is (e.g. 'Smoke run of a 135M model on CPU')")
    out_dir = Path(out_dir)
    doc = build_document(summary, results, experiment, title_note.strip(), pairwise)
    paths = {
        "md": out_dir / f"{experiment}.md",
        "json": out_dir / f"{experiment}.json",
        "png": out_dir / f"{experiment}.png",
    }
    write_bytes(paths["png"], render_png(doc))
    write_json(paths["json"], doc)
    write_text(paths["md"], render_markdown(doc))
    return paths


def _check_experiment_name(experiment: str) -> None:
    if not experiment or "/" in experiment or "\\" in experiment or experiment.startswith("."):
        raise ValueError(f"experiment name {experiment!r} must be a plain file stem (no path separators)")


def find_eval_dirs(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Evaluation directories among ``inputs``: each input is an eval dir itself or a run dir searched recursively.

    An eval dir is one holding ``manifest.json``, ``items.jsonl`` and ``metrics.json`` together, so other manifests
    in a run directory (training, selection) are not mistaken for evaluation results.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    found: list[Path] = []
    for root in map(Path, inputs):
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a directory")
        hits = (
            [root]
            if _is_eval_dir(root)
            else sorted(p.parent for p in root.rglob("items.jsonl") if _is_eval_dir(p.parent))
        )
        if not hits:
            raise FileNotFoundError(f"{root}: no evaluation directory (manifest.json + items.jsonl + metrics.json)")
        found += [h for h in hits if h not in found]
    return found


def _is_eval_dir(d: Path) -> bool:
    # DONE is written last by the evaluation: without it the directory is an interrupted run, never a result
    return all((d / n).is_file() for n in ("manifest.json", "items.jsonl", "metrics.json", "DONE"))


def find_judge_dirs(inputs: str | Path | Sequence[str | Path], *, required: bool = False) -> list[Path]:
    """Finished pairwise judge stage directories among ``inputs`` (the ``pairwise`` argument of :func:`main`): each
    input is a judge dir itself or a run dir searched recursively, like :func:`find_eval_dirs`.

    A judge dir holds ``manifest.json``, ``summary.json``, ``judgements.jsonl`` and ``DONE`` (written last, so an
    interrupted stage is never a result). A run without pairwise judging has none: ``[]``, unless ``required``,
    where an input without one raises ``FileNotFoundError`` (an explicitly named judge directory must be one).
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    names = ("manifest.json", "summary.json", "judgements.jsonl", "DONE")
    found: list[Path] = []
    for root in map(Path, inputs):
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a directory")
        hits = (
            [root]
            if all((root / n).is_file() for n in names)
            else sorted(
                p.parent for p in root.rglob("judgements.jsonl") if all((p.parent / n).is_file() for n in names)
            )
        )
        if required and not hits:
            raise FileNotFoundError(f"{root}: no finished pairwise judge directory ({' + '.join(names)})")
        found += [h for h in hits if h not in found]
    return found


def default_note(results: Sequence[ArmResult]) -> str:
    """A factual note from the manifests, for when the caller gives none; it never claims a paper result."""
    models = sorted({str(r.manifest.get("model_id") or MISSING) for r in results})
    hardware = sorted({_compact(r.manifest.get("hardware")) for r in results})
    n_seeds = sorted({sum(1 for o in results if o.arm == r.arm) for r in results if r.arm != "base"})
    return (
        f"Model(s): {', '.join(models)}; hardware: {'; '.join(hardware)}; seeds per fine-tuned arm: "
        f"{', '.join(map(str, n_seeds)) or '0'}. Generated by cpqs-bench; check provenance before citing."
    )


def main(
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    experiment: str,
    title_note: str | None = None,
    *,
    references: Sequence[str] = DEFAULT_REFERENCES,
    n_boot: int = 10_000,
    seed: int = 0,
    compare_base: bool = True,
    pairwise: Sequence[str | Path] = (),
) -> dict[str, Path]:
    """``cpqs-bench leaderboard``: load evaluation results, compute statistics, write the leaderboard files.

    ``inputs`` is one or more evaluation directories or run directories (searched recursively for evaluation
    directories); every arm is also compared with ``base`` when present unless ``compare_base`` is false. Raises
    ``RecipeMismatch`` if fine-tuned arms disagree on the recipe and ``ValueError`` /
    ``FileNotFoundError`` for malformed or missing inputs. ``pairwise``: pairwise judge stage directories (the
    "general (pairwise judge)" section; none: no such section). Returns ``{"md"|"json"|"png": path}``.
    """
    results = [load_arm_result(d) for d in find_eval_dirs(inputs)]
    summary = summarize(results, references=references, n_boot=n_boot, seed=seed, compare_base=compare_base)
    section = load_pairwise(pairwise, summary["arms"], n_boot=n_boot, seed=seed) if pairwise else None
    return render(summary, results, out_dir, experiment, title_note or default_note(results), section)


__all__ = [
    "render",
    "main",
    "build_document",
    "load_pairwise",
    "render_markdown",
    "render_png",
    "find_eval_dirs",
    "provenance_row",
    "default_note",
    "fmt_pct",
    "fmt_pp",
    "fmt_p",
    "fmt_value",
]
