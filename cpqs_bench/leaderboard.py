"""Leaderboard renderer: a Markdown page, its machine-readable JSON twin and a forest-plot PNG per experiment.

Why a single intermediate document: the Markdown, the PNG and the static page (:mod:`cpqs_bench.leaderboard_page`)
are all drawn from the JSON document built by :func:`build_document`, so they cannot disagree about a number, and
:func:`from_json` re-renders every output from a committed JSON (it holds the per-item results, ``items``) without
the run directories.

What a reader sees, top to bottom (issue #30):

* **At a glance**: per domain, one generated sentence that says exactly the verdicts (:func:`domain_sentence`), and
  the arms ranked with Δ vs the reference arm [CI] and ▲/▼ per metric, examples, trained tokens and selection cost
  where the run recorded them. The reference is the first of ``references`` (``leaderboard.references``), else
  ``base``, said on the page (:func:`choose_reference`).
* **The figure**: a forest plot of differences — one panel per domain × metric (proxies included, direction
  marked), each arm's Δ vs the reference with its hierarchical bootstrap CI, the zero line, ▲/▼, arms ordered by Δ
  from the best; a metric where every arm scores alike is listed as "no signal (all arms equal)", not drawn; with
  recorded compute a second panel plots Δ against total FLOPs. Colours: Okabe–Ito (colour-blind safe), and the
  verdict is also a glyph.
* The optional **Compute**, **Contamination** and **Selector validity** blocks when the run has them.
* **Details**: how to read, the arms' budgets, the power of every comparison in words (one line per task), and per
  task one table per reference arm (mean ± std, Δ [CI], p items / seeds, smallest attainable p, MDE, verdict); then
  the pairwise-judge section, provenance and warnings. No mean is ever taken across metrics of different units.

Metric direction and unit come from the task YAML (:func:`cpqs_bench.stats.metric_facts`), never from a name;
"better" / "worse" is decided in one place, :func:`cpqs_bench.stats.better_or_worse` (through :func:`verdict_of`).
"pct" metrics (exact match, pass@1) are fractions in [0, 1] in the JSON, shown in % and percentage points; other
metrics (NLL per byte: nats/byte, lower is better) in their own unit with four decimals.

Every provenance row carries the commit, config hash, data checksums, model revision, package versions, hardware and
seeds of the run it describes, because a leaderboard number without them cannot be reproduced or audited.

Forest plot layout: after the forest plots of meta-analyses (one row per study, a point and its CI, a vertical line
of no effect), as in ``forestplot`` (github.com/LSYS/forestplot, ``forestplot/plot.py``: rows sorted by estimate,
whiskers for CIs, the null line: ``sort_data``, ``draw_ci``, ``draw_ref_xline``). Differences from the reference:
panels per metric in a grid instead of one long table, rows sorted best-first in the metric's own direction (the x
axis of a lower-is-better metric is inverted so better is always to the right), and no pooled "overall" row
(metrics of different units are never pooled).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from cpqs_bench.io import write_bytes, write_json, write_text
from cpqs_bench.stats import (
    DOMAINS,
    KNOWN_UNITS,
    ArmResult,
    better_or_worse,
    load_arm_result,
    metric_facts,
    summarize,
    task_domain,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

SCHEMA = "cpqs-bench/leaderboard/v1"
PACKAGES = ("torch", "transformers", "peft", "lm_eval")
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


def dict_at(m: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``m[key]`` when it is an object, else an empty dict (a manifest or leaderboard field that may be absent)."""
    value = m.get(key)
    return value if isinstance(value, dict) else {}


def _cell(value: object) -> str:
    """Markdown-safe table cell: pipes escaped and newlines flattened so a value cannot break the table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _compact(value: object) -> str:
    """Short text for a provenance value that may be a string, a mapping or a list (``None`` inside: "null")."""
    if value is None or value == {} or value == [] or value == "":
        return MISSING
    return _compact_inner(value)


def _compact_inner(value: object) -> str:
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
    model = dict_at(m, "model")
    inputs = dict_at(m, "inputs")
    info = dict_at(m, "arm_info")
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
            # in the evaluation's own order: means summed in the same order give the same floats on re-render
            out.setdefault(task, {}).setdefault(r.arm, {})["null" if r.seed is None else str(r.seed)] = dict(scores)
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


# ----------------------------------------------------------------------------------------------- at a glance

COMPUTE_KEYS = (
    "n_examples",
    "trained_tokens",
    "supervised_tokens",
    "optimizer_steps",
    "selection_flops",
    "selection_seconds",
    "training_flops",
    "total_flops",
    "target_aware",
)
# Okabe & Ito (2008) colour-blind-safe palette: better / worse / no verdict, never told apart by colour alone (▲/▼)
COLORS = {"better": "#0072B2", "worse": "#D55E00", None: "#6E6E6E", "ref": "#000000"}


def verdict_of(cmp: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(▲ / ▼ / None, "better" / "worse" / None) of one comparison: only a significant one has a verdict, and its
    judgement is :func:`cpqs_bench.stats.better_or_worse` of Δ in the metric's direction."""
    if not cmp or not cmp.get("significant") or cmp.get("mean_diff") is None:
        return None, None
    judgement = better_or_worse(cmp["mean_diff"], cmp.get("higher_is_better", True))
    return (UP if judgement == "better" else DOWN if judgement == "worse" else None), judgement


def arm_compute(results: Sequence[ArmResult]) -> dict[str, dict[str, Any]]:
    """Per arm, the compute its manifests' ``arm_info`` records (:data:`COMPUTE_KEYS`): ``per_seed`` values and the
    mean over seeds of each number (``target_aware``: true when any seed says so). Arms recording none: absent."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        info = dict_at(r.manifest, "arm_info")
        got = {k: info[k] for k in COMPUTE_KEYS if info.get(k) is not None}
        if got:
            out.setdefault(r.arm, {"per_seed": {}})["per_seed"][str(r.seed)] = got
    for entry in out.values():
        seeds = list(entry["per_seed"].values())
        for k in COMPUTE_KEYS:
            vals = [s[k] for s in seeds if k in s]
            if not vals:
                continue
            if k == "target_aware":
                entry[k] = any(bool(v) for v in vals)
            elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                entry[k] = float(sum(vals) / len(vals))
        entry["n_seeds"] = len(seeds)
    return out


def no_signal_tasks(results: Sequence[ArmResult], tasks: Sequence[str]) -> list[str]:
    """Tasks on which every arm × seed scored every common item alike: nothing to draw ("no signal")."""
    flat = []
    for task in tasks:
        runs = [r.items[task] for r in results if r.items.get(task)]
        if len(runs) < 2:
            continue
        common = set.intersection(*(set(x) for x in runs))
        if common and all(len({x[k] for x in runs}) == 1 for k in common):
            flat.append(task)
    return flat


def choose_reference(summary: dict[str, Any], requested: Sequence[str]) -> tuple[str | None, str | None]:
    """The arm every Δ of the summary, figure and sentences is against: the first of ``requested`` when the run
    has it, else ``base`` (said in the returned note), else the first reference present."""
    present = list(summary.get("references") or [])
    first = requested[0] if requested else (present[0] if present else None)
    if first in present:
        return first, None
    for alt in ("base", *present):
        if alt in present:
            return alt, (
                f"The reference arm {first!r} is not in this run; every Δ at a glance is against {alt!r}"
                + (" (the model before fine-tuning)" if alt == "base" else "")
                + " instead."
            )
    return None, f"No reference arm ({first!r} or base) is in this run: no Δ can be shown."


def build_forest(
    summary: dict[str, Any], facts: dict[str, Any], domains: dict[str, list[str]], ref: str | None, flat: list[str]
) -> dict[str, Any]:
    """The figure's data: one panel per domain × metric with each arm's Δ vs ``ref`` and its hierarchical CI, arms
    ordered by Δ from the best (in the metric's direction) down; metrics where every arm scored alike are flagged
    ``no_signal`` and carry no rows."""
    panels = []
    for domain, tasks in domains.items():
        for task in tasks:
            f = facts[task]
            panel = {
                "domain": domain,
                "task": task,
                "metric": f["metric"],
                "unit": f["unit"],
                "unit_label": f["unit_label"],
                "higher_is_better": f["higher_is_better"],
                "proxy": f["proxy"],
                "no_signal": task in flat,
                "rows": [],
            }
            comps = (summary["per_task"][task]["comparisons"].get(ref) or {}) if ref else {}
            if task not in flat:
                for arm, c in comps.items():
                    if c.get("mean_diff") is None:
                        continue
                    verdict, judgement = verdict_of(c)
                    panel["rows"].append(
                        {
                            "arm": arm,
                            "delta": c["mean_diff"],
                            "lo": c["ci_low"],
                            "hi": c["ci_high"],
                            "verdict": verdict,
                            "judgement": judgement,
                            "label": c["label"],
                            "can_reach_alpha": bool(c.get("can_reach_alpha")),
                        }
                    )
                sign = 1.0 if f["higher_is_better"] else -1.0
                panel["rows"].sort(key=lambda r: (-sign * r["delta"], r["arm"]))
            panels.append(panel)
    return {"reference": ref, "panels": panels, "no_signal": [p["task"] for p in panels if p["no_signal"]]}


def _lead_panel(panels: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The metric a domain's ranking and compute plot use: among the metrics with signal, the one on which the most
    comparisons can reach α at all (the one with power), then accuracy before proxy, then the domain's order."""
    signal = [p for p in panels if not p["no_signal"] and p["rows"]]
    if not signal:
        return None
    return min(
        enumerate(signal),
        key=lambda ip: (-sum(r.get("can_reach_alpha", False) for r in ip[1]["rows"]), ip[1]["proxy"], ip[0]),
    )[1]


def compute_points(forest: dict[str, Any], compute: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Δ against total compute (selection + training FLOPs) on each domain's lead metric; [] when no arm records
    ``total_flops``."""
    if not any("total_flops" in c for c in compute.values()):
        return []
    out = []
    for domain in dict.fromkeys(p["domain"] for p in forest["panels"]):
        lead = _lead_panel([p for p in forest["panels"] if p["domain"] == domain])
        if lead is None:
            continue
        points = [
            {k: r[k] for k in ("arm", "delta", "lo", "hi", "verdict", "judgement")}
            | {"total_flops": compute[r["arm"]]["total_flops"]}
            for r in lead["rows"]
            if "total_flops" in compute.get(r["arm"], {})
        ]
        ref = forest["reference"]
        if ref in compute and "total_flops" in compute[ref]:
            points.append(
                {"arm": ref, "delta": 0.0, "lo": 0.0, "hi": 0.0, "verdict": None, "judgement": None}
                | {"total_flops": compute[ref]["total_flops"], "reference": True}
            )
        if points:
            keys = ("domain", "task", "metric", "unit", "unit_label", "higher_is_better")
            out.append({**{k: lead[k] for k in keys}, "points": points})
    return out


def domain_sentence(domain: str, ref: str | None, verdicts: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> str:
    """One sentence per domain that says exactly the verdicts: ``verdicts`` is ``[(arm, [(task, ▲|▼|""), ...])]``
    over every arm × drawn metric compared with ``ref``."""
    if ref is None:
        return f"{domain}: no reference arm, so no verdict."
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}  # arms with the same verdicts share one clause
    n_all, n_with = 0, 0
    for mark in (UP, DOWN):
        for arm, cells in verdicts:
            tasks = tuple(t for t, v in cells if v == mark)
            if tasks:
                groups.setdefault((mark, tasks), []).append(arm)
    for _, cells in verdicts:
        n_all += len(cells)
        n_with += sum(1 for _, v in cells if v in (UP, DOWN))
    parts = []
    for (mark, tasks), arms in groups.items():
        who = arms[0] if len(arms) == 1 else ", ".join(arms[:-1]) + " and " + arms[-1]
        verb = "is" if len(arms) == 1 else "are"
        parts.append(f"{who} {verb} {'better' if mark == UP else 'worse'} ({mark}) on {', '.join(tasks)}")
    if not parts:
        return f"{domain}: no arm has a verdict vs {ref} on any metric."
    rest = "" if n_with == n_all else "; no other arm × metric has a verdict"
    # "(vs REF):" keeps the reference apart from the list of arms (a reference named like an arm list, e.g.
    # "random@tokens:cpqs, random~cpqs and cpqs are worse", read as one more arm)
    return f"{domain} (vs {ref}): " + "; ".join(parts) + rest + "."


def at_a_glance(
    forest: dict[str, Any], arms: Sequence[str], compute: dict[str, dict[str, Any]], arm_infos: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per domain: arms ranked (net verdicts ▲ − ▼ over the drawn metrics, then Δ on the lead metric in its
    direction), each with its Δ [CI] and verdict per metric and its compute, plus the sentence."""
    ref = forest["reference"]
    out = []
    for domain in dict.fromkeys(p["domain"] for p in forest["panels"]):
        panels = [p for p in forest["panels"] if p["domain"] == domain]
        drawn = [p for p in panels if not p["no_signal"] and p["rows"]]
        lead = _lead_panel(panels)
        present = {r["arm"] for p in drawn for r in p["rows"]} | ({ref} if ref and drawn else set())
        rows = []
        for arm in [a for a in arms if a in present]:
            cells = {}
            for p in drawn:
                r = next((x for x in p["rows"] if x["arm"] == arm), None)
                cells[p["task"]] = r
            ups = sum(1 for r in cells.values() if r and r["verdict"] == UP)
            downs = sum(1 for r in cells.values() if r and r["verdict"] == DOWN)
            lead_row = cells.get(lead["task"]) if lead else None
            sign = 1.0 if (lead or {}).get("higher_is_better", True) else -1.0
            lead_delta = 0.0 if arm == ref else (sign * lead_row["delta"] if lead_row else None)
            info = arm_infos.get(arm) or {}
            comp = dict(compute.get(arm) or {})
            comp.pop("per_seed", None)
            if "n_examples" not in comp and info.get("kept"):
                comp["kept"] = info["kept"]
            rows.append(
                {
                    "arm": arm,
                    "reference": arm == ref,
                    "ups": ups,
                    "downs": downs,
                    "lead_delta": lead_delta,
                    "cells": cells,
                    "compute": comp,
                }
            )
        order = {a: i for i, a in enumerate(arms)}
        rows.sort(
            key=lambda r: (
                -(r["ups"] - r["downs"]),
                -r["lead_delta"] if r["lead_delta"] is not None else float("inf"),
                order[r["arm"]],
            )
        )
        for i, r in enumerate(rows, 1):
            r["rank"] = i
        verdicts = [
            (r["arm"], [(t, (c or {}).get("verdict") or "") for t, c in r["cells"].items() if c])
            for r in rows
            if not r["reference"]
        ]
        out.append(
            {
                "domain": domain,
                "reference": ref,
                "lead_task": lead["task"] if lead else None,
                "tasks": [p["task"] for p in drawn],
                "no_signal": [p["task"] for p in panels if p["no_signal"]],
                "rows": rows,
                "sentence": domain_sentence(domain, ref, verdicts),
            }
        )
    return out


def figure_caption(summary: dict[str, Any], reference: str | None = None) -> str:
    return (
        f"Forest plot: each arm's paired difference Δ = arm − {reference or 'reference'} per item, averaged over "
        f"items and seeds, one panel per domain × metric (proxies included), oriented so that better is to the right (the axis "
        "of a lower-is-better metric is reversed). "
        f"Whiskers: {100 * summary['ci_level']:.0f}% hierarchical paired bootstrap CI ({summary['n_boot']:,} "
        "resamples: seeds, then items). ▲ / ▼: a verdict (better / worse in the metric's direction; see Details); "
        "no mark: no verdict. Arms ordered by Δ, best on top. Metrics where every arm scored alike are listed, "
        "not drawn."
    )


@dataclass(frozen=True)
class BoardExtras:
    """What a leaderboard document holds besides the statistics summary and the results (:func:`build_document`):
    the requested reference arms, the task facts, the optional contamination / validity blocks, provenance rows kept
    from an earlier document and warnings carried over from it."""

    references: Sequence[str] = ("random",)
    facts: dict[str, dict[str, Any]] | None = None
    contamination: dict[str, Any] | None = None
    validity: dict[str, Any] | None = None
    provenance: list[dict[str, Any]] | None = None
    carried_warnings: Sequence[str] = ()


def build_document(
    summary: dict[str, Any],
    results: Sequence[ArmResult],
    experiment: str,
    title_note: str,
    pairwise: dict[str, Any] | None = None,
    extras: BoardExtras = BoardExtras(),
) -> dict[str, Any]:
    """The machine-readable leaderboard: everything the Markdown, the PNG and the page show, plus the full statistics
    summary and what :func:`from_json` needs to re-render it (``items``, ``runs``, ``provenance``)."""
    references, facts, contamination = extras.references, extras.facts, extras.contamination
    validity, provenance, carried_warnings = extras.validity, extras.provenance, extras.carried_warnings
    refs = list(summary["references"])
    arms = list(summary["arms"])
    rank = {a: i for i, a in enumerate(arms)}
    ordered = sorted(results, key=lambda r: (rank.get(r.arm, len(rank)), r.arm, r.seed is not None, r.seed or 0))
    facts = facts or {t: _facts_from_summary(summary["task_facts"][t]) for t in summary["tasks"]}
    task_facts = {t: {**summary["task_facts"][t], **facts[t]} for t in summary["tasks"]}
    domains = _domains(summary)
    ref, ref_note = choose_reference(summary, references)
    flat = no_signal_tasks(ordered, summary["tasks"])
    forest = build_forest(summary, task_facts, domains, ref, flat)
    compute = arm_compute(ordered)
    forest["compute"] = compute_points(forest, compute)
    return {
        "schema": SCHEMA,
        "experiment": experiment,
        "note": title_note,
        "score_unit": "each task in its metric's unit (task_facts[task].unit_label); 'pct' metrics are fractions in "
        "[0, 1] shown as % and percentage points",
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
        | {"p_adjustment": "none", "requested_references": list(references)},
        "reference": {"arm": ref, "requested": list(references), "note": ref_note},
        "arms": arms,
        "tasks": list(summary["tasks"]),
        "conditional_on": summary.get("conditional_on"),
        "task_facts": task_facts,
        "domains": domains,
        "arm_info": summary.get("arm_info") or {},
        "compute": compute,
        "glance": at_a_glance(forest, arms, compute, summary.get("arm_info") or {}),
        "forest": forest,
        "tables": {t: _task_rows(summary["per_task"][t], arms, refs) for t in summary["tasks"]},
        "power": _power_table(summary),
        "items": _items_by_arm_seed(ordered),
        "runs": [_run_record(r) for r in ordered],
        "provenance": provenance if provenance is not None else [provenance_row(r) for r in ordered],
        "figure": {"file": f"{experiment}.png", "caption": figure_caption(summary, ref)},
        "warnings": list(dict.fromkeys([*summary["warnings"], *carried_warnings])),
        "summary": summary,
        **({"pairwise": pairwise} if pairwise else {}),
        **({"contamination": contamination} if contamination else {}),
        **({"validity": validity} if validity else {}),
    }


def _facts_from_summary(f: dict[str, Any]) -> dict[str, Any]:
    """Facts of a summary computed without :func:`metric_facts` (direction known, unit from the metric name)."""
    unit, label = KNOWN_UNITS.get(str(f.get("metric")), ("raw" if f.get("proxy") else "pct", None))
    return {
        "unit": unit,
        "unit_label": label or ("%" if unit == "pct" else str(f.get("metric"))),
        "direction_source": f.get("direction_source") or "evaluation manifest",
    }


def _run_record(r: ArmResult) -> dict[str, Any]:
    """What :func:`from_json` needs to rebuild one arm × seed without its directory (the items are in ``items``)."""
    m = r.manifest
    return {
        "arm": r.arm,
        "seed": r.seed,
        "recipe_hash": r.recipe_hash,
        "metrics": dict(sorted(r.metrics.items())),
        "arm_info": dict_at(m, "arm_info"),
        "tasks": dict_at(m, "tasks"),
    }


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


# ----------------------------------------------------------------------------------------------- markdown


def delta_unit(unit: str, label: str) -> str:
    """The unit of a difference: percentage points for % metrics, else the metric's own unit."""
    return "pp" if unit == "pct" else label


def direction_words(higher_is_better: bool) -> str:
    return "higher is better" if higher_is_better else "lower is better"


def fmt_count(x: float | list[float | None] | None) -> str:
    if x is None:
        return "—"
    if isinstance(x, list):
        return "/".join(fmt_count(v) for v in x) or "—"
    return f"{x:,.0f}"


def fmt_sci(x: float | None) -> str:
    return "—" if x is None else f"{float(x):.3g}"


def fmt_ci_cell(r: dict[str, Any] | None, unit: str) -> str:
    """``Δ [lo, hi] ▲`` of one arm on one metric (the reference: "0 (reference)")."""
    if r is None:
        return "—"
    text = f"{fmt_delta(r['delta'], unit)} [{fmt_delta(r['lo'], unit)}, {fmt_delta(r['hi'], unit)}]"
    return text + (f" {r['verdict']}" if r.get("verdict") else "")


def selection_cost(comp: dict[str, Any]) -> str:
    parts = []
    if comp.get("selection_flops") is not None:
        parts.append(f"{fmt_sci(comp['selection_flops'])} FLOPs")
    if comp.get("selection_seconds") is not None:
        parts.append(f"{comp['selection_seconds']:,.0f} s")
    if comp.get("target_aware"):
        parts.append("target-aware")
    return ", ".join(parts) or "—"


def glance_tables(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per domain, the at-a-glance table as ``{"domain", "sentence", "header", "rows": [[(text, judgement)]],
    "no_signal"}``: the Markdown and the page draw the same cells."""
    facts = doc["task_facts"]
    has_compute = bool(doc.get("compute"))
    out = []
    for g in doc["glance"]:
        header = ["Rank", "Arm"]
        for t in g["tasks"]:
            f = facts[t]
            header.append(
                f"{t} Δ ({delta_unit(f['unit'], f['unit_label'])}; {direction_words(f['higher_is_better'])}"
                f"{'; proxy' if f['proxy'] else ''}) [{100 * doc['stats']['ci_level']:.0f}% CI]"
            )
        header += ["Examples", *(["Trained tokens", "Selection cost"] if has_compute else [])]
        rows = []
        for r in g["rows"]:
            cells: list[tuple[str, str | None]] = [(str(r["rank"]), None), (r["arm"], None)]
            for t in g["tasks"]:
                if r["reference"]:
                    cells.append(("0 (reference)", None))
                else:
                    c = r["cells"].get(t)
                    cells.append((fmt_ci_cell(c, facts[t]["unit"]), (c or {}).get("judgement")))
            comp = r["compute"]
            cells.append((fmt_count(comp.get("n_examples", comp.get("kept"))), None))
            if has_compute:
                cells += [(fmt_count(comp.get("trained_tokens")), None), (selection_cost(comp), None)]
            rows.append(cells)
        no_signal = [f"{t} ({facts[t]['metric']})" for t in g["no_signal"]]
        out.append(
            {"domain": g["domain"], "sentence": g["sentence"], "header": header, "rows": rows, "no_signal": no_signal}
        )
    return out


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> list[str]:
    sep = align or "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"
    return [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        sep,
        *("| " + " | ".join(_cell(c[0] if isinstance(c, tuple) else c) for c in row) + " |" for row in rows),
    ]


COMPUTE_COLUMNS = (
    ("n_examples", "Examples", fmt_count),
    ("trained_tokens", "Trained tokens", fmt_count),
    ("supervised_tokens", "Supervised tokens", fmt_count),
    ("optimizer_steps", "Optimizer steps", fmt_count),
    ("selection_flops", "Selection FLOPs", fmt_sci),
    ("selection_seconds", "Selection s", lambda x: "—" if x is None else f"{x:,.1f}"),
    ("training_flops", "Training FLOPs", fmt_sci),
    ("total_flops", "Total FLOPs", fmt_sci),
    ("target_aware", "Target-aware", lambda x: "—" if x is None else ("yes" if x else "no")),
)


def compute_table(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    comp = doc.get("compute") or {}
    cols = [c for c in COMPUTE_COLUMNS if any(c[0] in v for v in comp.values())]
    header = ["Arm", "Seeds", *(c[1] for c in cols)]
    rows = [
        [arm, str(comp[arm]["n_seeds"]), *(f(comp[arm].get(k)) for k, _, f in cols)]
        for arm in doc["arms"]
        if arm in comp
    ]
    return header, rows


def contamination_table(section: dict[str, Any], arm_order: Sequence[str] = ()) -> tuple[list[str], list[list[str]]]:
    """Per task: evaluation items, undetectable ones (shorter than n tokens), and items with an n-gram overlap in the
    pool and in each arm's selection (count and fraction; arms: mean over seeds)."""
    tasks = section.get("tasks") or {}
    rank = {a: i for i, a in enumerate(arm_order)}
    arms = sorted(
        dict.fromkeys(a for t in tasks.values() for a in (t.get("arms") or {})),
        key=lambda a: (rank.get(a, len(rank)), a),
    )
    header = ["Task", "Items", "Undetectable", "Pool", *arms]
    rows = []
    for task, t in tasks.items():
        pool = t.get("pool") or {}

        def cell(x: dict[str, Any] | None) -> str:
            if not x:
                return "—"
            n, frac = x.get("overlapping_items"), x.get("fraction")
            n_text = "—" if n is None else (f"{n:g}" if isinstance(n, (int, float)) else str(n))
            return n_text + ("" if frac is None else f" ({100 * frac:.1f}%)")

        rows.append(
            [task, fmt_count(t.get("items")), fmt_count(t.get("undetectable")), cell(pool)]
            + [cell((t.get("arms") or {}).get(a)) for a in arms]
        )
    return header, rows


def _ci_text(x: float | None, ci: object, digits: int = 3) -> str:
    if x is None:
        return "—"
    text = f"{x:.{digits}f}"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


def validity_tables(section: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The selector-validity tables: planted defects (AUC per kind), labelled pairs (accuracy), cost, and whether
    the screen predicts the fine-tuning outcome."""
    tracks = section.get("tracks") or {}
    out = []
    planted = (tracks.get("planted") or {}).get("rows") or []
    if planted:
        out.append(
            (
                "Planted defects (AUC: 1 = every defective answer scored below its clean source; 0.5 = chance)",
                ["Selector", "Kind", "n", "Paired AUC [95% CI]", "Unpaired AUC [95% CI]", "Excluded"],
                [
                    [
                        str(r.get("selector")),
                        str(r.get("kind")),
                        fmt_count(r.get("n")),
                        _ci_text(r.get("paired_auc"), r.get("paired_ci")),
                        _ci_text(r.get("unpaired_auc"), r.get("unpaired_ci")),
                        fmt_count(r.get("excluded")),
                    ]
                    for r in planted
                ],
            )
        )
    pairs = (tracks.get("pairs") or {}).get("rows") or []
    if pairs:
        out.append(
            (
                "Labelled pairs (accuracy: P(score(stronger answer) > score(weaker)); CPQS is partly in-distribution "
                "here)",
                ["Selector", "Subset", "n", "Accuracy [95% CI]"],
                [
                    [
                        str(r.get("selector")),
                        str(r.get("subset")),
                        fmt_count(r.get("n")),
                        _ci_text(r.get("accuracy"), r.get("ci")),
                    ]
                    for r in pairs
                ],
            )
        )
    cost = section.get("cost") or {}
    if cost:
        out.append(
            (
                "Scoring cost",
                ["Selector", "Seconds", "Tokens"],
                [
                    [str(s), "—" if c.get("seconds") is None else f"{c['seconds']:,.1f}", fmt_count(c.get("tokens"))]
                    for s, c in cost.items()
                ],
            )
        )
    pred = section.get("predicts_outcome") or []
    if pred:
        out.append(
            (
                "Does the screen predict the outcome? (Spearman across selectors between a validity metric and the "
                "arm's Δ vs random)",
                ["Validity metric", "Task", "Spearman", "Selectors"],
                [
                    [
                        str(r.get("metric")),
                        str(r.get("task")),
                        "—" if r.get("spearman") is None else f"{r['spearman']:+.2f}",
                        fmt_count(r.get("n_selectors")),
                    ]
                    for r in pred
                ],
            )
        )
    return out


def power_line(task: str, rows: list[dict[str, Any]], ref: str, f: dict[str, Any], alpha: float) -> str:
    """The power of the comparisons vs ``ref`` on one task, in words."""
    unit = f["unit"]
    cmps = [row["vs"].get(ref) for row in rows if row["arm"] != ref and row["vs"].get(ref)]
    n = max((row["n_items"] for row in rows), default=0)
    if not cmps:
        return f"{task}: n = {n} items; no comparison with {ref}."
    reach = sum(1 for c in cmps if c.get("can_reach_alpha"))
    mdes = [c["mde"] for c in cmps if c.get("mde") is not None and c.get("sd_diff")]  # sd 0: no MDE to speak of
    du = delta_unit(unit, f["unit_label"])
    mde = (
        ""
        if not mdes
        else f"; the smallest difference it would detect with 80% power is {fmt_value(min(mdes), unit)}"
        + ("" if fmt_value(min(mdes), unit) == fmt_value(max(mdes), unit) else f"–{fmt_value(max(mdes), unit)}")
        + f" {du}"
    )
    if reach == len(cmps):
        can = f"every comparison vs {ref} can reach p < {alpha}"
    elif reach == 0:
        can = f"no comparison vs {ref} can reach p < {alpha} (too few items differ), so no verdict is possible"
    else:
        can = f"{reach} of {len(cmps)} comparisons vs {ref} can reach p < {alpha}"
    return f"{task}: n = {n} items; {can}{mde}."


def _ref_table(rows: list[dict[str, Any]], ref: str, level: float, f: dict[str, Any]) -> list[str]:
    header, body = ref_table(rows, ref, level, f)
    return _md_table(header, body, "|---|---:|---:|---:|---:|---:|---:|---|")


def ref_table(
    rows: list[dict[str, Any]], ref: str, level: float, f: dict[str, Any]
) -> tuple[list[str], list[list[tuple[str, str | None]]]]:
    """One task's table against one reference: header and rows of ``(text, judgement)`` cells (the judgement,
    "better" / "worse" / None, colours the Δ cell on the page)."""
    unit = f["unit"]
    du = delta_unit(unit, f["unit_label"])
    header = [
        "Arm",
        f"Mean ± std ({f['unit_label']})",
        "n seeds",
        f"Δ vs {ref} ({du}) [{100 * level:.0f}% CI]",
        "p items / seeds",
        "min p items / seeds",
        f"MDE ({du})",
        "Verdict",
    ]
    body = []
    for row in rows:
        std = "—" if row["std"] is None else fmt_value(row["std"], unit)
        cells = [row["arm"], f"{fmt_value(row['mean'], unit)} ± {std}", str(row["n_seeds"])]
        cmp = row["vs"].get(ref)
        if row["arm"] == ref:
            cells += ["(reference)", "—", "—", "—", "reference"]
        elif cmp is None or cmp["mean_diff"] is None:
            cells += ["n/a", "—", "—", "—", "n/a"]
        else:
            mde = cmp.get("mde")
            cells += [
                f"{fmt_delta(cmp['mean_diff'], unit)} [{fmt_delta(cmp['ci_low'], unit)}, "
                f"{fmt_delta(cmp['ci_high'], unit)}]",
                f"{fmt_p(cmp['p_value'])} / {fmt_p(cmp.get('p_value_seed'))}",
                f"{fmt_p(cmp.get('p_min_item'))} / {fmt_p(cmp.get('p_min_seed'))}",
                ("— (no item differs)" if not cmp.get("sd_diff") else "—" if mde is None else fmt_value(mde, unit))
                + ("" if cmp.get("can_reach_alpha", True) else " (cannot reach α)"),
                _verdict_text(row["arm"], ref, cmp),
            ]
        judgement = verdict_of(cmp)[1] if row["arm"] != ref else None
        body.append([(c, judgement if i == 3 else None) for i, c in enumerate(cells)])
    return header, body


HOW_TO_READ = (
    "*Mean ± std* is the task score over seeds (std with ddof=1; — for one seed) in the metric's unit (% for "
    "accuracy-like metrics; continuous *proxy* metrics such as NLL per byte in their own unit, reported beside, never "
    "instead of, exact match and pass@1). *Δ vs X* is the paired mean per-item difference (arm − X; percentage points "
    "for % metrics). Brackets: {level}% hierarchical paired bootstrap CI ({n_boot:,} resamples: seeds resampled, then "
    "items), so training noise is part of the interval. *p items / seeds*: two-sided sign-flip permutation p-values "
    "over the per-item differences averaged over seeds (exact when at most {exact} are non-zero, else {n_perm:,} "
    "Monte Carlo flips with the +1 correction) and over the per-seed mean differences (exact). *min p*: the smallest p "
    "the exact test can reach (2/2^m for m non-zero differences); *MDE*: minimum detectable effect at 80% power, α = "
    "{alpha} two-sided, from the observed sd of the item differences (normal approximation). ▲/▼: better/worse in the "
    "metric's direction (from its task YAML), given only when ≥ {min_seeds} paired seeds exist, the CIs exclude 0, the "
    "item p < {alpha} and the seed-level test agrees (its p < {alpha}, or — with fewer than 6 seeds, where it cannot "
    "reach {alpha} — every seed's difference has the sign of Δ). Otherwise the cell says why there is none: *cannot "
    "reach α (n = m)*, *seed variation not estimable* (fewer than {min_seeds} seeds), *no verdict (seeds disagree)*, "
    "or *n.s.*. p-values are not adjusted for multiple comparisons. *ρ(score, length)*: Spearman correlation of the "
    "selector's scores with response length over the scored pool — near +1, the selector mostly keeps the longest "
    "answers. Arms at a glance are ranked by (number of ▲ − number of ▼) over the domain's metrics, then by Δ on the "
    "domain's lead metric in that metric's direction: among the metrics with signal, the one on which the most "
    "comparisons can reach α (then accuracy before proxy)."
)


def render_markdown(doc: dict[str, Any]) -> str:
    st = doc["stats"]
    refs = st["references"]
    ref = doc["reference"]["arm"]
    facts = doc["task_facts"]
    conditional = doc.get("conditional_on") or "the evaluation items and the drawn fine-tuning seeds"
    lines = [f"# Leaderboard: {doc['experiment']}", "", f"> **Note:** {doc['note']}", ""]
    lines += [
        f"Reference arm: **{ref or 'none'}** (requested: {', '.join(doc['reference']['requested']) or '—'}). "
        f"Arms: {', '.join(doc['arms'])}. Fine-tuning recipe hash: `{st['recipe_hash'] or MISSING}`. All inference "
        f"is conditional on {conditional}.",
        "",
    ]
    if doc["reference"]["note"]:
        lines += [f"**{doc['reference']['note']}**", ""]
    lines += [f"## At a glance (Δ vs {ref or '—'})", ""]
    for g in glance_tables(doc):
        lines += [f"### {g['domain']}", "", g["sentence"], ""]
        if g["rows"]:
            lines += [*_md_table(g["header"], g["rows"]), ""]
        if g["no_signal"]:
            lines += [f"No signal (all arms equal), listed not drawn: {', '.join(g['no_signal'])}.", ""]
    fig = doc["figure"]
    lines += [f"![{doc['experiment']}: Δ vs {ref} per domain and metric]({fig['file']})", "", f"*{fig['caption']}*", ""]
    if doc.get("compute"):
        header, rows = compute_table(doc)
        lines += [
            "## Compute",
            "",
            "Per arm, mean over seeds as recorded by the run (selection cost: every stage the arm's selection depends "
            "on, charged in full; total = selection + training).",
            "",
            *_md_table(header, rows),
            "",
        ]
    if doc.get("contamination"):
        c = doc["contamination"]
        header, rows = contamination_table(c, doc["arms"])
        lines += [
            "## Contamination",
            "",
            f"Evaluation items with any normalised {c.get('n', '?')}-gram overlap in the pool and in each arm's "
            "selection (count and fraction of the task's items; arms: mean over seeds). Items shorter than n tokens "
            "cannot be checked and are counted as undetectable, never as clean.",
            "",
            *_md_table(header, rows),
            "",
        ]
    if doc.get("validity"):
        v = doc["validity"]
        lines += ["## Selector validity", "", f"Scored by the model {v.get('model', '?')}, before any fine-tuning.", ""]
        for title, header, rows in validity_tables(v):
            lines += [f"**{title}**", "", *_md_table(header, rows), ""]
    lines += [
        "## Details",
        "",
        HOW_TO_READ.format(
            level=f"{100 * st['ci_level']:.0f}",
            n_boot=st["n_boot"],
            exact=st["exact_max_nonzero"],
            n_perm=st["n_perm"],
            alpha=st["alpha"],
            min_seeds=st["min_seeds_for_verdict"],
        ),
        "",
    ]
    if st["missing_references"]:
        lines += [f"Reference arm(s) not in this run: {', '.join(st['missing_references'])}.", ""]
    short = [a for a, info in (doc.get("arm_info") or {}).items() if info.get("short")]
    if short:
        lines += [f"**Warning:** arm(s) {', '.join(short)} trained on fewer examples than the budget k (see Kept).", ""]
    lines += [
        "### Arms",
        "",
        *_md_table(
            ["Arm", "Selector", "Budget (fraction of pool)", "Kept", "ρ(score, length)"],
            [[arm, *_arm_budget_cells((doc.get("arm_info") or {}).get(arm))] for arm in doc["arms"]],
            "|---|---|---|---|---:|",
        ),
        "",
        "### Power",
        "",
        *(
            f"- {power_line(t, doc['tables'][t], ref, facts[t], st['alpha'])}"
            for ts in doc["domains"].values()
            for t in ts
            if ref
        ),
        "",
    ]
    for domain, tasks in doc["domains"].items():
        for task in tasks:
            f = facts[task]
            kind = (
                f"metric `{f['metric']}` ({f['unit_label']}), {direction_words(f['higher_is_better'])}"
                + (", proxy" if f["proxy"] else "")
                + f"; direction from {f.get('direction_source', '?')}"
            )
            lines += [f"### {domain} / {task}", "", f"*{kind}.*", ""]
            for r in refs:
                lines += [f"#### {task} vs {r}", "", *_ref_table(doc["tables"][task], r, st["ci_level"], f), ""]
    if doc.get("pairwise"):
        lines += _pairwise_section(doc["pairwise"])
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


def _scale(unit: str) -> float:
    return 100.0 if unit == "pct" else 1.0


def render_png(doc: dict[str, Any]) -> bytes:
    """The forest plot (one panel per drawn domain × metric, Δ vs the reference with its CI, zero line, ▲/▼, arms
    ordered by Δ) and, when the run recorded compute, Δ against total FLOPs; Agg, no global state."""
    from matplotlib.figure import Figure  # imported here: plotting is only needed when rendering

    forest = doc["forest"]
    drawn = [p for p in forest["panels"] if not p["no_signal"] and p["rows"]]
    compute = forest.get("compute") or []
    # one row of panels per domain (its drawn metrics), then one row of compute panels
    grid = [[p for p in drawn if p["domain"] == d] for d in dict.fromkeys(p["domain"] for p in drawn)]
    planted = figure_validity_rows(doc)
    grid = (
        [row for row in grid if row] + ([compute] if compute else []) + ([[{"validity": planted}]] if planted else [])
    )
    ncols = max([1, *(len(row) for row in grid)])
    n_arms = max((len(p["rows"]) for p in drawn), default=3)
    panel_h, title_h = max(1.3, 0.3 * n_arms + 0.35), 0.95  # inches: plot area, and its title + x labels
    head, foot = 0.55, 0.55
    width = max(7.5, 5.6 * ncols + 0.8)
    nrows = max(1, len(grid))
    total_h = head + nrows * (panel_h + title_h) + foot
    fig = Figure(figsize=(width, total_h), dpi=110)
    ref = forest["reference"]
    title = f"{doc['experiment']}: Δ vs {ref or '—'} (arm − reference), {100 * doc['stats']['ci_level']:.0f}% CI"
    fig.suptitle(_wrap(title, int(width * 13)), fontsize=11, y=1 - 0.1 / total_h)
    gs = fig.add_gridspec(
        nrows,
        ncols,
        top=1 - (head + title_h * 0.6) / total_h,
        bottom=(foot + title_h * 0.4) / total_h,
        left=1.3 / width,
        right=1 - 0.3 / width,
        hspace=title_h / panel_h,
        wspace=1.5 / ((width - 1.6) / ncols - 1.5),
    )
    for i, row in enumerate(grid):
        for j, p in enumerate(row):
            ax = fig.add_subplot(gs[i, j])
            if "validity" in p:
                _validity_panel(ax, p["validity"], width / ncols)
            elif "points" in p:
                _compute_panel(ax, p, ref, width / ncols)
            else:
                _forest_panel(ax, p, width / ncols, ref)
    if not grid:
        ax = fig.add_subplot(gs[0, 0])
        ax.axis("off")
        ax.text(0.5, 0.5, "nothing to draw: no metric separates the arms", ha="center", va="center")
    notes = []
    if forest["no_signal"]:
        notes.append("No signal (all arms equal), not drawn: " + ", ".join(forest["no_signal"]) + ".")
    if doc["reference"]["note"]:
        notes.append(doc["reference"]["note"])
    notes.append(
        "▲ better / ▼ worse: a verdict in the metric's direction; blue = better, vermillion = worse, grey = no verdict."
    )
    fig.text(0.01, 0.08 / total_h, _wrap(" ".join(notes), int(width * 17)), fontsize=7.5, va="bottom")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def figure_validity_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The planted-defect rows the figure draws: each selector's ``overall`` paired AUC (the per-kind rows, 8 per
    selector, made the panel unreadable; they are in the validity table and the validate figure)."""
    rows = (((doc.get("validity") or {}).get("tracks") or {}).get("planted") or {}).get("rows") or []
    return [r for r in rows if isinstance(r.get("paired_auc"), (int, float)) and r.get("kind") == "overall"]


def _panel_title(p: dict[str, Any], width_in: float) -> str:
    arrow = "higher is better" if p["higher_is_better"] else "lower is better (axis reversed)"
    sub = f"{p['metric']}{' (proxy)' if p['proxy'] else ''} in {p['unit_label']}, {arrow}"
    return _wrap(f"{p['domain']}: {p['task']}", int(width_in * 11)) + "\n" + _wrap(sub, int(width_in * 13))


def _forest_panel(ax: Axes, p: dict[str, Any], width_in: float, ref: str | None) -> None:
    s = _scale(p["unit"])
    rows = p["rows"]
    ys = list(range(len(rows)))[::-1]  # best on top
    for y, r in zip(ys, rows):
        color = COLORS[r["judgement"]]
        ax.plot([s * r["lo"], s * r["hi"]], [y, y], color=color, lw=2, solid_capstyle="butt")
        ax.plot([s * r["delta"]], [y], "o", color=color, ms=6)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([r["arm"] + (f" {r['verdict']}" if r["verdict"] else "") for r in rows], fontsize=8.5)
    for tick, r in zip(ax.get_yticklabels(), rows):
        tick.set_color(COLORS[r["judgement"]] if r["judgement"] else "black")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    lo = min([0.0, *(s * r["lo"] for r in rows)])
    hi = max([0.0, *(s * r["hi"] for r in rows)])
    pad = 0.08 * ((hi - lo) or 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    if not p["higher_is_better"]:
        ax.invert_xaxis()  # better is always to the right
    ax.tick_params(axis="x", labelsize=7.5)
    ax.set_xlabel(f"Δ vs {ref} ({delta_unit(p['unit'], p['unit_label'])});  better →", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(_panel_title(p, width_in), fontsize=8.5, loc="left")


def _compute_panel(ax: Axes, c: dict[str, Any], ref: str | None, width_in: float) -> None:
    s = _scale(c["unit"])
    for pt in c["points"]:
        color = COLORS["ref"] if pt.get("reference") else COLORS[pt["judgement"]]
        x = pt["total_flops"]
        ax.plot([x, x], [s * pt["lo"], s * pt["hi"]], color=color, lw=1.5)
        ax.plot([x], [s * pt["delta"]], "o" if not pt.get("reference") else "s", color=color, ms=5)
        ax.annotate(
            pt["arm"] + (f" {pt['verdict']}" if pt["verdict"] else ""),
            (x, s * pt["delta"]),
            fontsize=7.5,
            xytext=(4, 3),
            textcoords="offset points",
        )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xscale("log")
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

    # labels at 1, 2 and 5 x 10^k only: matplotlib's default labelled every minor tick of a short range (2, 3, 4, 6 x
    # 10^k ran into each other) and none at all when the range holds no power of ten
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
    ax.xaxis.set_minor_formatter(NullFormatter())
    xs = [pt["total_flops"] for pt in c["points"] if pt["total_flops"] and pt["total_flops"] > 0]
    if xs:  # room for the labels right of the points, in decades
        lo, hi = math.log10(min(xs)), math.log10(max(xs))
        span = max(hi - lo, 0.5)
        ax.set_xlim(10 ** (lo - 0.08 * span), 10 ** (hi + 0.3 * span))
    if not c.get("higher_is_better", True):
        ax.invert_yaxis()  # better is always up
    ax.set_xlabel("total compute (selection + training FLOPs)", fontsize=8)
    ax.tick_params(labelsize=7.5)
    ax.grid(alpha=0.3)
    du = delta_unit(c["unit"], c["unit_label"])
    ax.set_ylabel(f"Δ ({du}); better ↑", fontsize=8)
    ax.set_title(
        _wrap(f"{c['domain']}: Δ vs {ref} on {c['task']} ({du}) against compute", int(width_in * 11)),
        fontsize=8.5,
        loc="left",
    )


def _validity_panel(ax: Axes, rows: list[dict[str, Any]], width_in: float) -> None:
    """Planted-defect paired AUC per selector (the ``overall`` rows) with its CI; the chance line at 0.5."""
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows):
        ci = r.get("paired_ci")
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
            ax.plot([ci[0], ci[1]], [y, y], color=COLORS[None], lw=2)
        ax.plot([r["paired_auc"]], [y], "o", color=COLORS["ref"], ms=5)
    ax.axvline(0.5, color="black", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_yticks(ys)
    ax.set_yticklabels([str(r.get("selector")) for r in rows], fontsize=8.5)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("paired AUC (0.5 = chance; 1 = every planted defect scored below its clean source)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7.5)
    ax.grid(axis="x", alpha=0.3)
    n = max((int(r.get("n") or 0) for r in rows), default=0)
    title = f"Selector validity: planted defects, all kinds (n={n}); per kind in the validity table"
    ax.set_title(_wrap(title, int(width_in * 11)), fontsize=8.5, loc="left")


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
    extras: BoardExtras = BoardExtras(),
) -> dict[str, Path]:
    """Write ``<experiment>.md``, ``.json`` and ``.png`` atomically under ``out_dir``; return their paths.
    ``extras``: what the document holds besides the statistics (:class:`BoardExtras`)."""
    _check_experiment_name(experiment)
    if not title_note or not title_note.strip():
        raise ValueError("title_note must say what this run is (e.g. 'Smoke run of a 135M model on CPU')")
    out_dir = Path(out_dir)
    doc = build_document(summary, results, experiment, title_note.strip(), pairwise, extras)
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


def _check_section(name: str, section: object, keys: Sequence[str]) -> dict[str, Any] | None:
    """An optional block (contamination / validity) must be an object holding ``keys``; None passes."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ValueError(f"{name}: expected a JSON object, got {type(section).__name__}")
    missing = [k for k in keys if k not in section]
    if missing:
        raise ValueError(f"{name}: missing key(s) {', '.join(missing)}")
    return section


@dataclass(frozen=True)
class StatsOptions:
    """How :func:`main` computes the statistics: ``references``, the reference arms (the first is the one at a
    glance and in the figure; ``base`` when it is absent), the bootstrap's ``n_boot`` and ``seed``, and whether every
    arm is also compared with ``base`` when present (``compare_base``)."""

    references: Sequence[str] = ("random",)
    n_boot: int = 10_000
    seed: int = 0
    compare_base: bool = True


@dataclass(frozen=True)
class BoardBlocks:
    """What other stages produced, joined into the board by :func:`main`: ``contamination`` / ``validity``, the
    optional blocks (shapes in :func:`contamination_table` / :func:`validity_tables`), rendered and kept in the JSON;
    ``compute``: arm → seed → the compute fields (:data:`COMPUTE_KEYS`) the pipeline recorded, merged into each
    result's ``arm_info``."""

    contamination: dict[str, Any] | None = None
    validity: dict[str, Any] | None = None
    compute: dict[str, dict[str, dict[str, Any]]] | None = None


def main(
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    experiment: str,
    title_note: str | None = None,
    *,
    stats: StatsOptions = StatsOptions(),
    pairwise: Sequence[str | Path] = (),
    blocks: BoardBlocks = BoardBlocks(),
    task_folders: Sequence[str | Path] | None = None,
) -> dict[str, Path]:
    """``cpqs-bench leaderboard``: load evaluation results, compute statistics, write the leaderboard files.

    ``inputs`` is one or more evaluation directories or run directories (searched recursively for evaluation
    directories). ``stats``: reference arms, bootstrap size and seed, comparison with ``base``
    (:class:`StatsOptions`). Metric direction and unit come from the task YAMLs in ``task_folders`` (default: the
    project's) and the manifests (:func:`cpqs_bench.stats.metric_facts`). ``pairwise``: pairwise judge stage
    directories (the "general (pairwise judge)" section). ``blocks``: contamination, validity and compute from other
    stages (:class:`BoardBlocks`). Raises ``RecipeMismatch`` if fine-tuned arms disagree on the recipe and
    ``ValueError`` / ``FileNotFoundError`` for malformed or missing inputs. Returns ``{"md"|"json"|"png": path}``.
    """
    references, n_boot, seed, compare_base = stats.references, stats.n_boot, stats.seed, stats.compare_base
    compute = blocks.compute
    contamination = _check_section("contamination", blocks.contamination, ("tasks",))
    validity = _check_section("validity", blocks.validity, ("tracks",))
    results = [load_arm_result(d) for d in find_eval_dirs(inputs)]
    for r in results:  # compute recorded by the pipeline (arm -> seed -> fields of COMPUTE_KEYS) joins arm_info
        extra = ((compute or {}).get(r.arm) or {}).get(str(r.seed))
        if extra:
            r.manifest["arm_info"] = {**(r.manifest.get("arm_info") or {}), **extra}
    tasks = sorted({t for r in results for t in (*r.items, *r.metrics)})
    facts = metric_facts(tasks, [r.manifest for r in results], task_folders)
    summary = summarize(
        results, references=references, n_boot=n_boot, seed=seed, compare_base=compare_base, facts=facts
    )
    section = load_pairwise(pairwise, summary["arms"], n_boot=n_boot, seed=seed) if pairwise else None
    return render(
        summary,
        results,
        out_dir,
        experiment,
        title_note or default_note(results),
        section,
        BoardExtras(references=references, facts=facts, contamination=contamination, validity=validity),
    )


def read_board(path: str | Path) -> dict[str, Any]:
    """A leaderboard JSON written by :func:`render`, checked for what :func:`from_json` needs."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from e
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a leaderboard JSON (schema {SCHEMA!r})")
    missing = [k for k in ("experiment", "note", "items", "stats", "task_facts", "provenance") if k not in doc]
    if missing:
        raise ValueError(f"{path}: cannot re-render, missing key(s) {', '.join(missing)} (per-item results: items)")
    return doc


def results_from_board(doc: dict[str, Any]) -> list[ArmResult]:
    """The arm × seed results a leaderboard JSON was computed from: per-item scores from ``items``, manifests'
    ``arm_info`` / ``tasks`` and ``metrics.json`` values from ``runs`` (older JSONs: from ``arm_info`` per seed,
    ``task_facts`` and the provenance rows; their metrics are the item means)."""
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for task, per_arm in doc["items"].items():
        for arm, per_seed in per_arm.items():
            for seed_key, scores in per_seed.items():
                entry = runs.setdefault((arm, seed_key), {"items": {}})
                entry["items"][task] = {str(k): float(v) for k, v in scores.items()}
    records = {(r["arm"], "null" if r["seed"] is None else str(r["seed"])): r for r in doc.get("runs") or []}
    prov = {(p["arm"], "null" if p.get("seed") is None else str(p["seed"])): p for p in doc["provenance"]}
    recipe = doc["stats"].get("recipe_hash")
    old_tasks = {
        t: {k: f[k] for k in ("metric", "higher_is_better", "proxy", "domain") if k in f}
        for t, f in doc["task_facts"].items()
    }
    out = []
    for (arm, seed_key), entry in runs.items():
        seed = None if seed_key in ("null", "None") else int(seed_key)
        rec = records.get((arm, seed_key))
        if rec is not None:
            manifest = {"arm": arm, "seed": seed, "arm_info": rec["arm_info"], "tasks": rec["tasks"]}
            recipe_hash, metrics = rec["recipe_hash"], {t: float(v) for t, v in rec["metrics"].items()}
        else:
            per_seed = ((doc.get("arm_info") or {}).get(arm) or {}).get("per_seed") or {}
            info = per_seed.get(str(seed)) or {}
            manifest = {"arm": arm, "seed": seed, "arm_info": info, "tasks": old_tasks}
            p = prov.get((arm, seed_key)) or {}
            recipe_hash = p.get("recipe_hash", None if arm == "base" else recipe)
            metrics = {}
        manifest["recipe_hash"] = recipe_hash
        out.append(ArmResult(arm, seed, recipe_hash, manifest, entry["items"], metrics))
    return out


def from_json(
    board_json: str | Path,
    out_dir: str | Path | None = None,
    *,
    references: Sequence[str] | None = None,
    contamination: dict[str, Any] | None = None,
    validity: dict[str, Any] | None = None,
    task_folders: Sequence[str | Path] | None = None,
) -> dict[str, Path]:
    """``cpqs-bench leaderboard --from-json X.json``: recompute the statistics from the per-item results a committed
    leaderboard JSON holds (same bootstrap seed and sizes, so the same numbers) and re-render the Markdown, JSON and
    PNG into ``out_dir`` (default: beside the JSON), with no run directory. The provenance rows, note, pairwise
    section and contamination / validity blocks are carried over (``contamination`` / ``validity`` given here
    replace them). ``references`` default: those the JSON was computed with."""
    board_json = Path(board_json)
    doc = read_board(board_json)
    st = doc["stats"]
    refs = list(references or st.get("requested_references") or [r for r in st["references"] if r != "base"])
    results = results_from_board(doc)
    facts = metric_facts(doc["task_facts"], [r.manifest for r in results], task_folders, known=doc["task_facts"])
    summary = summarize(
        results,
        references=refs,
        n_boot=st["n_boot"],
        seed=st["seed"],
        n_perm=st["n_perm"],
        alpha=st["alpha"],
        level=st["ci_level"],
        compare_base="base" in st["references"],
        facts=facts,
    )
    # metrics.json values are not in older JSONs (nor in boards re-rendered from them): keep their warnings
    complete = bool(results) and all(r.metrics for r in results)
    carried = [] if complete else [w for w in doc.get("warnings") or [] if "metrics.json" in w]
    return render(
        summary,
        results,
        board_json.parent if out_dir is None else out_dir,
        doc["experiment"],
        doc["note"],
        doc.get("pairwise"),
        BoardExtras(
            references=refs,
            facts=facts,
            contamination=_check_section("contamination", contamination or doc.get("contamination"), ("tasks",)),
            validity=_check_section("validity", validity or doc.get("validity"), ("tracks",)),
            provenance=doc["provenance"],
            carried_warnings=carried,
        ),
    )


__all__ = [
    "BoardExtras",
    "render",
    "main",
    "from_json",
    "read_board",
    "results_from_board",
    "build_document",
    "build_forest",
    "at_a_glance",
    "domain_sentence",
    "choose_reference",
    "verdict_of",
    "load_pairwise",
    "render_markdown",
    "render_png",
    "glance_tables",
    "compute_table",
    "contamination_table",
    "validity_tables",
    "power_line",
    "ref_table",
    "find_eval_dirs",
    "provenance_row",
    "default_note",
    "fmt_pct",
    "fmt_pp",
    "fmt_p",
    "fmt_value",
]
