"""Static HTML leaderboard pages: ``leaderboards/<experiment>/index.html`` and ``leaderboards/index.html``.

The page is one self-contained file: the data is inlined as JSON (``<script type="application/json">``) and the
behaviour is a few hundred lines of vanilla JS in the same file, so it opens from disk or from a static Hub Space
with no server and no network.

Top to bottom (issue #30), drawn here as static HTML from the leaderboard JSON (:func:`render_static`, the same cells
as the Markdown): the summary at a glance (per domain the sentence that says exactly the verdicts and the ranked
arms with Δ vs the reference [CI], ▲/▼ coloured by the leaderboard's better/worse in the metric's direction, and the
compute recorded per arm), the forest plot as inline SVG (:func:`forest_svg`: one ``g.mark`` per arm × metric
carrying ``data-delta`` / ``data-lo`` / ``data-hi``, the exact values of the JSON; Δ against total compute when
recorded), the compute, contamination and selector-validity blocks when the run has them, and "Details" in a
``<details>`` element (power in words, one table per task and reference arm). Below, in a second ``<details>``, the
sortable board page.js draws: per domain (``metadata.domain`` of the task YAMLs), a table of arms ×
tasks with the mean score, the item-bootstrap CI drawn as an error bar and the paired difference to the first
reference arm; columns sort on click; filters narrow the rows by model, budget and selector; a click on a row
opens a drawer with the run's provenance, per-seed scores, every paired comparison and the per-item outcomes.
A "what this can and cannot show" note states the sample sizes and, per task, the power in words. Every value is
in its metric's unit (``task_facts[task].unit``, from the task YAML); no mean is taken across metrics.
When the leaderboard has a pairwise LLM-judge section (``pairwise`` in its JSON), the page shows it after the domain
tables as a static table drawn here, text escaped, numbers formatted as in the Markdown: per arm vs the reference
arm, win / tie / lose / unparsed, the win rate, the net score (W − L) / N with its bootstrap CI, the sign-test p and
the judge, labelled "weak judge: a pipeline check" when the judge is the embedded / target model itself.

The page state (sort and filters) lives in the URL fragment (``#sort=<domain>:<column>:<asc|desc>&selector=random``)
so a view can be shared as a link; the browser test drives the page through it.

Inputs: the leaderboard JSON written by :mod:`cpqs_bench.leaderboard` (keys read defensively: later fields such as
power analyses or kept counts are shown when present), and optionally the evaluation directories it was computed
from (their manifests give each arm's model, budget and kept count; their ``items.jsonl`` the per-item outcomes).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from cpqs_bench import leaderboard as lb
from cpqs_bench.io import read_json, read_jsonl, write_text
from cpqs_bench.leaderboard import fmt_p, fmt_pct
from cpqs_bench.stats import find_task_yaml

SCHEMA = "cpqs-bench/leaderboard/v1"
PAGE_SCHEMA = "cpqs-bench/leaderboard-page/v1"
DEFAULT_DOMAIN = "other"
PAIRWISE_TITLE = "general (pairwise judge)"
WEAK_JUDGE = "weak judge: a pipeline check"

# The project's own task YAMLs load their data through these functions (``custom_dataset: !function ...``): the
# Hub dataset and the domain they stand for. Used only when the task's YAML metadata does not say
# (``metadata.dataset_id`` / ``metadata.domain`` win).
_LOADER_FACTS: dict[str, dict[str, str]] = {
    "load_gsm8k": {"dataset_id": "openai/gsm8k", "dataset_name": "GSM8K", "domain": "math", "license": "mit"},
    "load_humaneval": {
        "dataset_id": "openai/openai_humaneval",
        "dataset_name": "HumanEval",
        "domain": "code",
        "license": "mit",
    },
    "load_humaneval_plus": {
        "dataset_id": "evalplus/humanevalplus",
        "dataset_name": "HumanEval+",
        "domain": "code",
        "license": "apache-2.0",
    },
}


# ----------------------------------------------------------------------------------------------- task facts
def task_facts(
    tasks: Iterable[str], manifests: Sequence[Mapping[str, Any]] = (), folders: Sequence[str | Path] | None = None
) -> dict[str, dict[str, Any]]:
    """Per task: ``domain``, ``metric``, ``higher_is_better``, ``dataset_id``, ``dataset_name``, ``license``.

    Sources, first wins per field: the evaluation manifests' ``tasks`` entries (what the harness read from the task
    config, including a user's ``evaluate.include_path`` tasks), the task YAML's ``metadata`` in ``folders``
    (default: the project's task folder; ``include:`` chains followed), the facts of the project's own data loaders
    (``custom_dataset``), else ``domain="other"`` and no dataset id.
    """
    if folders is None:  # the project's task folder, as the harness finds it ($CPQS_TASKS_DIR, else tasks/)
        from cpqs_bench.evaluate.harness import tasks_dir

        folders = [tasks_dir()]
    folder_paths = [Path(f) for f in folders if Path(f).is_dir()]
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        facts: dict[str, Any] = {}
        for m in manifests:
            info = (m.get("tasks") or {}).get(task) if isinstance(m.get("tasks"), dict) else None
            if isinstance(info, dict):
                for k in ("domain", "metric", "higher_is_better", "dataset_id", "dataset_name", "license"):
                    if info.get(k) is not None:
                        facts.setdefault(k, info[k])
        cfg, _ = find_task_yaml(task, folder_paths)
        meta = lb.dict_at(cfg, "metadata")
        for k in ("domain", "dataset_id", "dataset_name", "license", "metric"):
            if meta.get(k) is not None:
                facts.setdefault(k, meta[k])
        metrics = cfg.get("metric_list") or []
        if metrics and isinstance(metrics[0], dict):
            facts.setdefault("metric", str(metrics[0].get("metric")))
            facts.setdefault("higher_is_better", bool(metrics[0].get("higher_is_better", True)))
        loader = (str(cfg.get("custom_dataset") or "").split() or [""])[-1].rsplit(".", 1)[-1]
        for k, v in _LOADER_FACTS.get(loader, {}).items():
            facts.setdefault(k, v)
        facts.setdefault("domain", DEFAULT_DOMAIN)
        facts.setdefault("metric", "score")
        facts.setdefault("higher_is_better", True)
        facts.setdefault("dataset_id", None)
        facts.setdefault("dataset_name", facts["dataset_id"] or task)
        facts.setdefault("license", None)
        out[task] = facts
    return out


# ----------------------------------------------------------------------------------------------- eval extras
def read_eval_extras(eval_dirs: Iterable[str | Path]) -> dict[str, Any]:
    """What the page shows beyond the leaderboard JSON, from the evaluation directories: per (arm, seed) the model,
    arm_info (budget k, kept, selector) and per-item scores ``items[arm][seed][task] = [[doc_id, score], ...]``."""
    arms: dict[str, dict[str, Any]] = {}
    items: dict[str, dict[str, dict[str, list]]] = {}
    manifests = []
    for d in eval_dirs:
        d = Path(d)
        m = read_json(d / "manifest.json")
        manifests.append(m)
        arm, seed = str(m.get("arm", d.name)), m.get("seed")
        info = lb.dict_at(m, "arm_info")
        a = arms.setdefault(arm, {"model": m.get("model_id"), "seeds": [], "arm_info": {}})
        a["seeds"].append(seed)
        a["arm_info"][str(seed)] = info
        per_task: dict[str, list] = {}
        if (d / "items.jsonl").exists():
            for row in read_jsonl(d / "items.jsonl"):
                score = row.get("score", row.get("correct"))
                if isinstance(score, bool):
                    score = float(score)
                per_task.setdefault(str(row.get("task")), []).append(
                    [row.get("doc_id"), score if isinstance(score, (int, float)) else None]
                )
        items.setdefault(arm, {})[str(seed)] = per_task
    return {"arms": arms, "items": items, "manifests": manifests}


# ----------------------------------------------------------------------------------------------- page data
def _num(x: object) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
        return None
    return float(x)


def _first(*values: object) -> Any:
    return next((v for v in values if v not in (None, "", "missing")), None)


def _count(x: object) -> int | None:
    return int(x) if isinstance(x, int) and not isinstance(x, bool) else None


def pairwise_data(section: object) -> dict[str, Any] | None:
    """The leaderboard JSON's ``pairwise`` section as the page shows it (None when the run had none).

    Fields a row lacks are shown as "—"; a section that is not ``{"rows": [{...}, ...]}`` is an error (it is written
    by :func:`cpqs_bench.leaderboard.load_pairwise`, so another shape is a corrupt file, not an older one)."""
    if section is None:
        return None
    rows = section.get("rows") if isinstance(section, dict) else None
    if not isinstance(section, dict) or not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(
            'pairwise: expected a section {"title", "rows": [{...}, ...]}, got '
            f"{type(rows if isinstance(section, dict) else section).__name__}"
        )
    out = []
    for r in rows:
        arm, reference = str(r.get("arm")), str(r.get("reference"))
        # base has no seed of its own: it is judged against the reference arm of every seed (as in the Markdown)
        seeds = r.get("reference_seeds") if arm == "base" and reference != "base" else r.get("seeds")
        ci = r.get("net_ci95")
        ci = [_num(ci[0]), _num(ci[1])] if isinstance(ci, list) and len(ci) == 2 else None
        score = _num(r.get("winning_score"))
        out.append(
            {
                "arm": arm,
                "reference": reference,
                "seeds": [_count(s) for s in seeds] if isinstance(seeds, list) else [],
                "sets": [str(x) for x in r.get("sets") or []],
                **{k: _count(r.get(k)) for k in ("win", "tie", "lose", "unparsed", "n", "n_prompts")},
                "win_rate": _num(r.get("win_rate")),
                "winning_score": score,
                "net": None if score is None else score - 1,
                "net_ci95": None if ci is None or None in ci else ci,
                "sign_test_p": _num(r.get("sign_test_p")),
                "judge": str(_first(r.get("judge"), r.get("judge_label"), "unknown")),
                "judge_label": str(r.get("judge_label") or ""),
                "rule": str(r.get("rule") or "?"),
                "weak_judge": r.get("weak_judge") is True,
            }
        )
    return {
        "title": str(section.get("title") or PAIRWISE_TITLE),
        "rows": out,
        "n_boot": _count(section.get("n_boot")),
        "judge_prompt": [str(x) for x in section.get("judge_prompt") or []],
    }


def _items_from_board(items: object) -> dict[str, Any]:
    """The drawer's per-item outcomes ``[arm][seed][task] = [[doc_id, score], ...]`` from the board JSON's
    ``items[task][arm][seed]`` (when the page is written without the evaluation directories, e.g. --from-json)."""
    out: dict[str, Any] = {}
    if not isinstance(items, dict):
        return out
    for task, per_arm in items.items():
        for arm, per_seed in (per_arm or {}).items():
            for seed, scores in (per_seed or {}).items():
                seed_key = "None" if seed == "null" else str(seed)
                out.setdefault(str(arm), {}).setdefault(seed_key, {})[str(task)] = [
                    [k, _num(v)] for k, v in (scores or {}).items()
                ]
    return out


def page_data(
    doc: Mapping[str, Any],
    extras: Mapping[str, Any] | None = None,
    facts: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON inlined in the page: the leaderboard document reshaped per domain, plus arm attributes."""
    extras = extras or {}
    summary = lb.dict_at(doc, "summary")
    tables = lb.dict_at(doc, "tables")
    tasks = [str(t) for t in (doc.get("tasks") or list(tables))]
    arms = [str(a) for a in (doc.get("arms") or [])]
    for t in tasks:
        for row in tables.get(t) or []:
            if isinstance(row, dict) and row.get("arm") not in arms and row.get("arm") is not None:
                arms.append(str(row["arm"]))
    facts = dict(facts or task_facts(tasks, extras.get("manifests") or ()))
    board_facts = lb.dict_at(doc, "task_facts")
    facts = {t: {**(facts.get(t) or {}), **(board_facts.get(t) or {})} for t in set(facts) | set(board_facts)}
    refs = [str(r) for r in (doc.get("stats") or {}).get("references") or summary.get("references") or []]
    provenance = [p for p in doc.get("provenance") or [] if isinstance(p, dict)]
    ext_arms = extras.get("arms") or {}

    arm_rows: dict[str, dict[str, Any]] = {}
    for arm in arms:
        prov = [p for p in provenance if p.get("arm") == arm]
        ext = ext_arms.get(arm) or {}
        infos = [i for i in (ext.get("arm_info") or {}).values() if isinstance(i, dict) and i]
        infos += [p["arm_info"] for p in prov if isinstance(p.get("arm_info"), dict)]
        info = infos[0] if infos else {}
        budget = _first(info.get("budget_k"), info.get("budget"), info.get("k"))
        kept = sorted({k for i in infos if (k := i.get("kept")) is not None})
        arm_rows[arm] = {
            "arm": arm,
            "selector": str(_first(info.get("selector"), arm if arm != "base" else "none (base model)")),
            "model": str(_first(ext.get("model"), *(p.get("model_id") for p in prov), "unknown")),
            "budget": "all" if arm == "full" and budget is None else ("—" if budget is None else str(budget)),
            "kept": kept,
            "seeds": sorted({s for s in (summary.get("seeds") or {}).get(arm, []) if s is not None}),
        }
    per_task = lb.dict_at(summary, "per_task")
    cells: dict[str, dict[str, Any]] = {}
    for t in tasks:
        cells[t] = {}
        for row in tables.get(t) or []:
            if not isinstance(row, dict) or row.get("arm") is None:
                continue
            arm = str(row["arm"])
            arm_sum = ((per_task.get(t) or {}).get("arms") or {}).get(arm) or {}
            vs = lb.dict_at(row, "vs")
            cells[t][arm] = {
                "mean": _num(row.get("mean")),
                "std": _num(row.get("std")),
                "ci_low": _num(row.get("item_ci_low")),
                "ci_high": _num(row.get("item_ci_high")),
                "item_mean": _num(row.get("item_mean")),
                "n_items": row.get("n_items"),
                "n_seeds": row.get("n_seeds"),
                "marker": row.get("marker") or "",
                "per_seed": [s for s in arm_sum.get("per_seed") or [] if isinstance(s, dict)],
                "vs": {
                    str(r): (
                        {
                            k: (_num(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                            for k, v in c.items()
                        }
                        | {"judgement": lb.verdict_of(c)[1]}
                        if isinstance(c, dict)
                        else None
                    )
                    for r, c in vs.items()
                },
            }
    domains: dict[str, list[str]] = {}
    for t in tasks:
        domains.setdefault(str(facts.get(t, {}).get("domain") or DEFAULT_DOMAIN), []).append(t)
    known = [
        k
        for k in (
            "note",
            "warnings",
            "score_unit",
            "figure",
            "power",
            "stats",
            "experiment",
            "schema",
            "tasks",
            "arms",
            "tables",
            "summary",
            "provenance",
            "pairwise",
            "task_facts",
            "domains",
            "arm_info",
            "compute",
            "glance",
            "forest",
            "reference",
            "items",
            "runs",
            "conditional_on",
            "contamination",
            "validity",
        )
    ]
    return {
        "schema": PAGE_SCHEMA,
        "source_schema": doc.get("schema"),
        "experiment": str(doc.get("experiment") or "?"),
        "note": doc.get("note") or "",
        "warnings": [str(w) for w in doc.get("warnings") or []],
        "references": refs,
        "ci_level": _num((doc.get("stats") or {}).get("ci_level") or summary.get("ci_level")),
        "alpha": _num((doc.get("stats") or {}).get("alpha") or summary.get("alpha")),
        "stats": lb.dict_at(doc, "stats"),
        "power": doc.get("power") if doc.get("power") is not None else summary.get("power"),
        "tasks": [{"name": t, **{k: v for k, v in facts.get(t, {}).items()}} for t in tasks],
        "domains": [{"name": d, "tasks": ts} for d, ts in domains.items()],
        "arms": arm_rows,
        "arm_order": arms,
        "cells": cells,
        "provenance": provenance,
        "items": extras.get("items") or _items_from_board(doc.get("items")),
        "static": static_data(doc),
        "pairwise": pairwise_data(doc.get("pairwise")),
        "extra_keys": sorted(k for k in doc if k not in known),
    }


# ----------------------------------------------------------------------------------------------- static sections
# The summary, the figure, the optional blocks and the details are drawn here as static HTML / inline SVG from the
# leaderboard JSON (the same cells as the Markdown, :mod:`cpqs_bench.leaderboard`), so they show without JavaScript
# and the tests can read them; page.js draws the sortable board and the provenance drawer inside "Details".


def static_data(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What the static sections need, from a leaderboard JSON that has them (older or partial JSONs: ``{}``)."""
    if not all(k in doc for k in ("forest", "glance", "task_facts", "stats", "tables", "reference", "domains")):
        return {}
    d = dict(doc)
    st = d["stats"]
    ref = d["reference"]["arm"]
    details = []
    for domain, tasks in d["domains"].items():
        for task in tasks:
            f = d["task_facts"][task]
            details.append(
                {
                    "domain": domain,
                    "task": task,
                    "kind": f"metric {f['metric']} ({f['unit_label']}), {lb.direction_words(f['higher_is_better'])}"
                    + (", proxy" if f["proxy"] else "")
                    + f"; direction from {f.get('direction_source', '?')}",
                    "tables": [
                        dict(zip(("header", "rows"), lb.ref_table(d["tables"][task], r, st["ci_level"], f)), ref=r)
                        for r in st["references"]
                    ],
                }
            )
    out: dict[str, Any] = {
        "reference": d["reference"],
        "forest": d["forest"],
        "caption": (d.get("figure") or {}).get("caption") or "",
        "ci_level": st["ci_level"],
        "glance": lb.glance_tables(d),
        "power_lines": [
            lb.power_line(t, d["tables"][t], ref, d["task_facts"][t], st["alpha"])
            for ts in d["domains"].values()
            for t in ts
            if ref
        ],
        "details": details,
    }
    if d.get("compute"):
        out["compute_table"] = dict(zip(("header", "rows"), lb.compute_table(d)))
    if d.get("contamination"):
        out["contamination"] = {
            "n": d["contamination"].get("n"),
            **dict(zip(("header", "rows"), lb.contamination_table(d["contamination"], d.get("arms") or ()))),
        }
    if d.get("validity"):
        v = d["validity"]
        out["validity"] = {
            "model": v.get("model"),
            "tables": [{"title": t, "header": h, "rows": r} for t, h, r in lb.validity_tables(v)],
            "planted": ((v.get("tracks") or {}).get("planted") or {}).get("rows") or [],
        }
    return out


def _attr(x: object) -> str:
    """An exact, parseable attribute value: ``repr`` of a float round-trips to the same float."""
    return "" if x is None else html.escape(repr(float(x)) if isinstance(x, (int, float)) else str(x))


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _tick_text(x: float, unit: str) -> str:
    v = 100 * x if unit == "pct" else x
    return f"{v:g}" if unit == "pct" else f"{v:.4g}"


def forest_svg(panel: Mapping[str, Any], ref: str | None) -> str:
    """One forest panel as inline SVG: a ``g.mark`` per arm carrying ``data-arm``, ``data-metric``, ``data-delta``,
    ``data-lo``, ``data-hi`` (exact values of the JSON), the zero line, ▲/▼; better is always to the right."""
    e = html.escape
    rows = panel["rows"]
    label_w, plot_w, row_h, bottom = 120, 330, 24, 44
    w = label_w + plot_w + 20
    unit = panel["unit"]
    du = lb.delta_unit(unit, panel["unit_label"])
    direction = "higher is better" if panel["higher_is_better"] else "lower is better (axis reversed)"
    # titles wrap to the panel's width (about 7 px per character at 13 px, 6.3 at 12 px)
    t1 = _svg_lines(f"{panel['domain']}: {panel['task']}", w // 8)
    t2 = _svg_lines(
        f"{panel['metric']}{' (proxy)' if panel['proxy'] else ''} in {panel['unit_label']}, {direction}", w // 7
    )
    top = 16 * (len(t1) + len(t2)) + 26
    h = top + row_h * len(rows) + bottom
    lo = min([0.0, *(r["lo"] for r in rows)])
    hi = max([0.0, *(r["hi"] for r in rows)])
    pad = 0.06 * ((hi - lo) or 1.0)
    lo, hi = lo - pad, hi + pad
    flip = not panel["higher_is_better"]

    def x(v: float) -> float:
        t = (v - lo) / (hi - lo)
        return round(label_w + plot_w * (1 - t if flip else t), 2)

    parts = [
        f'<svg class="forest" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'role="img" data-domain="{e(panel["domain"])}" data-task="{e(panel["task"])}" '
        f'data-metric="{e(panel["metric"])}" data-reference="{e(str(ref))}" '
        f'data-higher-is-better="{str(bool(panel["higher_is_better"])).lower()}">',
        f"<title>{e(panel['domain'])}: {e(panel['task'])}, Δ vs {e(str(ref))} ({e(du)})</title>",
        *(f'<text class="t1" x="4" y="{16 + 16 * i}">{e(line)}</text>' for i, line in enumerate(t1)),
        *(f'<text class="t2" x="4" y="{16 + 16 * (len(t1) + i)}">{e(line)}</text>' for i, line in enumerate(t2)),
    ]
    y0, y1 = top - 8, top + row_h * len(rows)
    for t in _nice_ticks(lo, hi):
        parts.append(f'<line class="grid" x1="{x(t)}" x2="{x(t)}" y1="{y0}" y2="{y1}"/>')
        parts.append(f'<text class="tick" x="{x(t)}" y="{y1 + 14}">{e(_tick_text(t, unit))}</text>')
    parts.append(f'<line class="zero" x1="{x(0.0)}" x2="{x(0.0)}" y1="{y0}" y2="{y1}"/>')
    parts.append(
        f'<text class="xlabel" x="{label_w + plot_w / 2}" y="{y1 + 32}">Δ vs {e(str(ref))} ({e(du)}); better →</text>'
    )
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        cls = r["judgement"] or "none"
        mark = f" {r['verdict']}" if r["verdict"] else ""
        parts.append(
            f'<g class="mark {cls}" data-arm="{e(r["arm"])}" data-task="{e(panel["task"])}" '
            f'data-metric="{e(panel["metric"])}" data-delta="{_attr(r["delta"])}" data-lo="{_attr(r["lo"])}" '
            f'data-hi="{_attr(r["hi"])}" data-verdict="{e(r["verdict"] or "")}">'
            f"<title>{e(r['arm'])}: Δ {e(lb.fmt_delta(r['delta'], unit))} [{e(lb.fmt_delta(r['lo'], unit))}, "
            f"{e(lb.fmt_delta(r['hi'], unit))}] {e(du)}; {e(r['verdict'] or r['label'])}</title>"
            f'<text class="arm" x="{label_w - 8}" y="{y + 4}">{e(r["arm"])}{e(mark)}</text>'
            f'<line class="ci" x1="{x(r["lo"])}" x2="{x(r["hi"])}" y1="{y}" y2="{y}"/>'
            f'<circle class="pt" cx="{x(r["delta"])}" cy="{y}" r="4.5"/></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _svg_lines(text: str, width: int) -> list[str]:
    """``text`` wrapped at word boundaries to at most ``width`` characters a line (a long word is cut)."""
    lines: list[str] = []
    for word in text.split():
        while len(word) > width:
            lines.append(word[:width])
            word = word[width:]
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def compute_svg(c: Mapping[str, Any], ref: str | None) -> str:
    """Δ on a domain's lead metric against total compute (log FLOPs), one ``g.cpoint`` per arm."""
    e = html.escape
    pts = c["points"]
    left, plot_w, plot_h = 56, 330, 200
    w = left + plot_w + 150  # room for the labels right of the points
    du = lb.delta_unit(c["unit"], c["unit_label"])
    title = _svg_lines(f"{c['domain']}: Δ vs {ref} on {c['task']} ({du}; better ↑) against total compute", w // 8)
    top = 16 * len(title) + 24
    h = top + plot_h + 44
    xs = [math.log10(p["total_flops"]) for p in pts if p["total_flops"] and p["total_flops"] > 0]
    if not xs:
        return ""
    xlo, xhi = min(xs) - 0.1, max(xs) + 0.1
    lo = min([0.0, *(p["lo"] for p in pts)])
    hi = max([0.0, *(p["hi"] for p in pts)])
    pad = 0.08 * ((hi - lo) or 1.0)
    lo, hi = lo - pad, hi + pad

    def px(v: float) -> float:
        return round(left + plot_w * (math.log10(v) - xlo) / ((xhi - xlo) or 1.0), 2)

    flip = not c.get("higher_is_better", True)  # better is always up

    def py(v: float) -> float:
        t = (v - lo) / (hi - lo)
        return round(top + plot_h * (t if flip else 1 - t), 2)

    parts = [
        f'<svg class="compute" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'role="img" data-task="{e(c["task"])}">',
        *(f'<text class="t1" x="4" y="{16 + 16 * i}">{e(line)}</text>' for i, line in enumerate(title)),
        f'<line class="zero" x1="{left}" x2="{left + plot_w}" y1="{py(0.0)}" y2="{py(0.0)}"/>',
        f'<text class="xlabel" x="{left + plot_w / 2}" y="{top + plot_h + 34}">total FLOPs (selection + training, '
        "log scale)</text>",
    ]
    for t in _nice_ticks(lo, hi):
        parts.append(f'<text class="tick y" x="{left - 6}" y="{py(t) + 4}">{e(_tick_text(t, c["unit"]))}</text>')
    for p in pts:
        if not p["total_flops"] or p["total_flops"] <= 0:
            continue
        cls = "ref" if p.get("reference") else (p["judgement"] or "none")
        parts.append(
            f'<g class="cpoint {cls}" data-arm="{e(p["arm"])}" data-flops="{_attr(p["total_flops"])}" '
            f'data-delta="{_attr(p["delta"])}">'
            f'<line class="ci" x1="{px(p["total_flops"])}" x2="{px(p["total_flops"])}" y1="{py(p["lo"])}" '
            f'y2="{py(p["hi"])}"/><circle class="pt" cx="{px(p["total_flops"])}" cy="{py(p["delta"])}" r="4"/>'
            f'<text class="lbl" x="{px(p["total_flops"]) + 6}" y="{py(p["delta"]) - 5}">'
            f"{e(p['arm'])}{e(' ' + p['verdict'] if p['verdict'] else '')} ({p['total_flops']:.2g})</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def validity_svg(rows: Sequence[Mapping[str, Any]]) -> str:
    """Planted-defect AUCs as dots with CIs, one row per selector × kind, the chance line at 0.5."""
    e = html.escape
    rows = [r for r in rows if _num(r.get("paired_auc")) is not None]
    if not rows:
        return ""
    label_w, plot_w, row_h, top = 230, 320, 20, 30
    w, h = label_w + plot_w + 30, top + row_h * len(rows) + 40

    def x(v: float) -> float:
        return round(label_w + plot_w * min(1.0, max(0.0, v)), 2)

    selectors = list(dict.fromkeys(str(r.get("selector")) for r in rows))
    parts = [
        f'<svg class="validity" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'role="img">',
        '<text class="t1" x="4" y="16">Planted defects: paired AUC per kind and selector (0.5 = chance)</text>',
    ]
    y1 = top + row_h * len(rows)
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line class="{"zero" if t == 0.5 else "grid"}" x1="{x(t)}" x2="{x(t)}" y1="{top}" y2="{y1}"/>')
        parts.append(f'<text class="tick" x="{x(t)}" y="{y1 + 14}">{t:g}</text>')
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        k = selectors.index(str(r.get("selector"))) % len(SERIES)
        ci = r.get("paired_ci") if isinstance(r.get("paired_ci"), (list, tuple)) else None
        line = (
            f'<line class="ci" x1="{x(ci[0])}" x2="{x(ci[1])}" y1="{y}" y2="{y}" stroke="{SERIES[k]}"/>'
            if ci and None not in ci
            else ""
        )
        parts.append(
            f'<g class="vpoint" data-selector="{e(str(r.get("selector")))}" data-kind="{e(str(r.get("kind")))}" '
            f'data-auc="{_attr(r.get("paired_auc"))}"><text class="arm" x="{label_w - 8}" y="{y + 4}">'
            f"{e(str(r.get('kind')))} · {e(str(r.get('selector')))}</text>{line}"
            f'<circle cx="{x(r["paired_auc"])}" cy="{y}" r="4" fill="{SERIES[k]}"/></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


SERIES = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")  # Okabe–Ito


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str, attrs: str = "") -> str:
    e = html.escape
    head = "".join(f'<th scope="col">{e(str(h))}</th>' for h in header)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            text, judgement = c if isinstance(c, (list, tuple)) else (c, None)
            tag = "th" if i == (1 if cls == "glance" else 0) else "td"
            klass = f' class="{judgement}"' if judgement else ""
            cells.append(f"<{tag}{klass}>{e(str(text))}</{tag}>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table class="{cls}"{attrs}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def render_static(s: Mapping[str, Any]) -> str:
    """The summary (above the fold), the figure, the optional blocks and the collapsible details, as HTML."""
    if not s:
        return ""
    e = html.escape
    ref = s["reference"]["arm"]
    out = [f'<section id="summary"><h2>At a glance: Δ vs {e(str(ref))}</h2>']
    if s["reference"].get("note"):
        out.append(f'<p class="refnote">{e(s["reference"]["note"])}</p>')
    for g in s["glance"]:
        out.append(f'<div class="glance-domain" data-domain="{e(g["domain"])}">')
        out.append(f'<p class="sentence" data-domain="{e(g["domain"])}">{e(g["sentence"])}</p>')
        if g["rows"]:
            out.append(_html_table(g["header"], g["rows"], "glance", f' data-domain="{e(g["domain"])}"'))
        if g["no_signal"]:
            out.append(
                f'<p class="nosignal">No signal (all arms equal), listed not drawn: {e(", ".join(g["no_signal"]))}.</p>'
            )
        out.append("</div>")
    out.append("</section>")
    panels = [p for p in s["forest"]["panels"] if not p["no_signal"] and p["rows"]]
    out.append('<section id="figure"><h2>Forest plot of differences</h2><div class="panels">')
    out += [forest_svg(p, ref) for p in panels]
    out += [compute_svg(c, ref) for c in s["forest"].get("compute") or []]
    out.append("</div>")
    flat = s["forest"]["no_signal"]
    if flat:
        out.append(
            f'<p class="nosignal" id="no-signal">No signal (all arms equal), not drawn: {e(", ".join(flat))}.</p>'
        )
    out.append(f'<p class="caption">{e(s["caption"])}</p></section>')
    if s.get("compute_table"):
        c = s["compute_table"]
        out.append(
            '<section id="compute"><h2>Compute</h2><p class="explain">Per arm, mean over seeds as recorded by the '
            "run (selection cost: every stage the selection depends on, charged in full; total = selection + "
            f"training).</p>{_html_table(c['header'], c['rows'], 'plain')}</section>"
        )
    if s.get("contamination"):
        c = s["contamination"]
        out.append(
            f'<section id="contamination"><h2>Contamination</h2><p class="explain">Evaluation items with any '
            f"normalised {e(str(c.get('n') or '?'))}-gram overlap in the pool and in each arm's selection (arms: "
            "mean over seeds); items shorter than n tokens are undetectable, never counted as clean.</p>"
            f"{_html_table(c['header'], c['rows'], 'plain')}</section>"
        )
    if s.get("validity"):
        v = s["validity"]
        out.append(
            f'<section id="validity"><h2>Selector validity</h2><p class="explain">Scored by '
            f"{e(str(v.get('model') or '?'))} before any fine-tuning.</p>{validity_svg(v['planted'])}"
        )
        for t in v["tables"]:
            out.append(f"<h3>{e(t['title'])}</h3>{_html_table(t['header'], t['rows'], 'plain')}")
        out.append("</section>")
    out.append(
        '<details id="details"><summary>Details: power, p-values and MDE per task, one table per reference arm'
        '</summary><h3>Power</h3><ul class="power">'
        + "".join(f"<li>{e(line)}</li>" for line in s["power_lines"])
        + "</ul>"
    )
    for d in s["details"]:
        out.append(
            f'<div class="task-detail" data-task="{e(d["task"])}"><h3>{e(d["domain"])} / {e(d["task"])}</h3>'
            f'<p class="explain">{e(d["kind"])}.</p>'
        )
        for t in d["tables"]:
            out.append(
                f"<h4>vs {e(t['ref'])}</h4>"
                + _html_table(t["header"], t["rows"], "detail", f' data-task="{e(d["task"])}" data-ref="{e(t["ref"])}"')
            )
        out.append("</div>")
    out.append("</details>")
    return "".join(out)


# ----------------------------------------------------------------------------------------------- rendering
def _inline_json(data: object) -> str:
    """JSON safe inside a <script> element: no ``</script>``, no ``<!--``, no U+2028/9 surprises."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


_ASSET_DIR = Path(__file__).resolve().parent / "leaderboard_assets"


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.3f}"


def render_pairwise(section: Mapping[str, Any] | None) -> str:
    """The pairwise-judge section (:func:`pairwise_data`) as static HTML, every text escaped; "" when there is none.
    The page's script moves it after the domain tables; without the script it still shows. Each number cell carries
    its exact value in ``data-value``."""
    if not section:
        return ""
    e = html.escape
    cols = [
        ("arm", "arm"),
        ("reference", "vs"),
        ("seeds", "seeds"),
        ("sets", "sets"),
        ("win", "win"),
        ("tie", "tie"),
        ("lose", "lose"),
        ("unparsed", "unparsed"),
        ("win_rate", "win rate (%)"),
        ("winning_score", "winning score"),
        ("net", "net (W−L)/N [95% CI]"),
        ("sign_test_p", "sign-test p"),
        ("judge", "judge"),
    ]
    head = "".join(f'<th scope="col" data-col="{c}">{e(label)}</th>' for c, label in cols)
    body = []
    for r in section["rows"]:
        ci = r["net_ci95"]
        text = {
            "seeds": ",".join("—" if s is None else str(s) for s in r["seeds"]) or "—",
            "sets": ", ".join(r["sets"]) or "—",
            **{k: "—" if r[k] is None else str(r[k]) for k in ("win", "tie", "lose", "unparsed")},
            "win_rate": fmt_pct(r["win_rate"]),
            "winning_score": "—" if r["winning_score"] is None else f"{r['winning_score']:.3f}",
            "net": _signed(r["net"]) + ("" if ci is None else f" [{_signed(ci[0])}, {_signed(ci[1])}]"),
            "sign_test_p": fmt_p(r["sign_test_p"]),
        }
        cells = [
            f'<th scope="row" class="arm" data-col="arm">{e(r["arm"])}</th>',
            f'<td class="txt" data-col="reference">{e(r["reference"])}</td>',
        ]
        for c in ("seeds", "sets", "win", "tie", "lose", "unparsed", "win_rate", "winning_score", "net", "sign_test_p"):
            value = r.get(c) if c not in ("seeds", "sets") else None
            attr = "" if value is None else f' data-value="{e(repr(value))}"'
            cells.append(f'<td data-col="{c}"{attr}>{e(text[c])}</td>')
        weak = f' <span class="weak">{e(WEAK_JUDGE)}</span>' if r["weak_judge"] else ""
        cells.append(
            f'<td class="txt" data-col="judge" title="{e(r["judge_label"])}">'
            f"{e(r['judge'])} ({e(r['rule'])}){weak}</td>"
        )
        body.append(f'<tr data-arm="{e(r["arm"])}" data-reference="{e(r["reference"])}">{"".join(cells)}</tr>')
    if not body:
        body.append(f'<tr><td colspan="{len(cols)}">no pairwise comparisons</td></tr>')
    n_boot = section.get("n_boot")
    explain = (
        "Each model's greedy answers on the general-domain prompt sets, compared by an LLM judge with the "
        "reference arm's answers to the same prompts, asked twice with the order swapped (rule strict: a "
        "win needs both orders to prefer the arm, a loss both to prefer the reference; rule sum: the sign of "
        "the two orders' preferences added). Counts are summed "
        "over seeds; unparsed judgements are left out of N. Win rate = (W + T/2) / N; winning score = "
        "(W − L) / N + 1 (1 = even); net CI: 95% bootstrap interval of (W − L) / N over prompts"
        + (f" ({n_boot:,} resamples)" if n_boot else "")
        + "; sign-test p: two-sided, prompts won vs lost. "
        "A weak judge (the embedded / target model judging) is a pipeline check, not a quality signal."
    )
    prompt = (
        f'<p class="foot">Judge prompt: {e(", ".join(section["judge_prompt"]))}.</p>'
        if section.get("judge_prompt")
        else ""
    )
    title = e(section["title"])
    return (
        f'<section class="domain pairwise" id="pairwise"><h2>Domain: {title}</h2><p class="explain">'
        f'{e(explain)}</p><div class="scroll"><table class="pairwise" data-domain="{title}"><thead><tr>{head}'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>{prompt}</section>"
    )


def render_page(data: Mapping[str, Any]) -> str:
    css = (_ASSET_DIR / "page.css").read_text(encoding="utf-8")
    js = (_ASSET_DIR / "page.js").read_text(encoding="utf-8")
    title = html.escape(f"cpqs-bench leaderboard: {data['experiment']}")
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        f"style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
        f"<title>{title}</title>\n<style>\n{css}</style>\n</head>\n<body>\n"
        f'<header><a class="up" href="../index.html">all experiments</a><h1>{title}</h1>'
        f'<p id="note">{html.escape(str(data.get("note") or ""))}</p></header>\n<main>'
        f"{render_static(data.get('static') or {})}"
        f'<details id="board-box"><summary>All scores: sortable tables per domain with filters; click an arm for '
        f"its provenance and per-item results</summary>"
        f'<div id="app"><noscript>This part needs JavaScript to draw its '
        f"tables; the same numbers are in the leaderboard's .md and .json files.</noscript>"
        f"{render_pairwise(data.get('pairwise'))}</div></details></main>\n"
        f'<aside id="drawer" hidden></aside>\n'
        f'<script type="application/json" id="board-data">{_inline_json(data)}</script>\n'
        f"<script>\n{js}</script>\n</body>\n</html>\n"
    )


def render_index(entries: Sequence[Mapping[str, Any]]) -> str:
    css = (_ASSET_DIR / "page.css").read_text(encoding="utf-8")
    rows = []
    for e in entries:
        name = html.escape(str(e["experiment"]))
        rows.append(
            f'<tr><td><a href="{html.escape(str(e["href"]))}">{name}</a></td>'
            f"<td>{html.escape(', '.join(e['domains']))}</td><td>{len(e['tasks'])}</td>"
            f'<td>{len(e["arms"])}</td><td class="txt">{html.escape(str(e["note"]))}</td></tr>'
        )
    body = "\n".join(rows) or '<tr><td colspan="5">no leaderboards yet</td></tr>'
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        f"<title>cpqs-bench leaderboards</title>\n<style>\n{css}</style>\n</head>\n<body>\n"
        f"<header><h1>cpqs-bench leaderboards</h1><p>One page per experiment: arms (data selectors) compared "
        f"end to end, select → LoRA fine-tune → evaluate. Each page is static and works offline.</p></header>\n"
        f'<main><table id="experiments"><thead><tr><th>experiment</th><th>domains</th><th>tasks</th>'
        f"<th>arms</th><th>note</th></tr></thead>\n<tbody>\n{body}\n</tbody></table></main>\n</body>\n</html>\n"
    )


_DATA_OPEN = '<script type="application/json" id="board-data">'


def read_page_data(page: str | Path) -> dict[str, Any]:
    """The JSON inlined in a page written by :func:`write_pages` (what the tests compare the DOM with)."""
    text = Path(page).read_text(encoding="utf-8")
    start = text.index(_DATA_OPEN) + len(_DATA_OPEN)
    return json.loads(text[start : text.index("</script>", start)])


def write_index(out_dir: str | Path) -> Path:
    """``out_dir/index.html`` listing every experiment page ``out_dir/<experiment>/index.html``."""
    out_dir = Path(out_dir)
    entries = []
    for page in sorted(out_dir.glob("*/index.html")):
        try:
            data = read_page_data(page)
        except (OSError, ValueError):
            continue  # not one of our pages
        if data.get("schema") != PAGE_SCHEMA:
            continue
        entries.append(
            {
                "experiment": data["experiment"],
                "href": f"{page.parent.name}/index.html",
                "tasks": [t["name"] for t in data["tasks"]],
                "arms": list(data["arms"]),
                "domains": [d["name"] for d in data["domains"]]
                + ([data["pairwise"]["title"]] if data.get("pairwise") else []),
                "note": data.get("note") or "",
            }
        )
    path = out_dir / "index.html"
    write_text(path, render_index(entries))
    return path


def write_pages(
    board_json: str | Path,
    out_dir: str | Path,
    *,
    eval_dirs: Sequence[str | Path] | None = None,
    facts: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``out_dir/<experiment>/index.html`` from ``board_json`` and refresh ``out_dir/index.html``.

    ``eval_dirs`` (optional): the evaluation directories behind the board, for per-item results, models and
    budgets. Returns the experiment page's path.
    """
    board_json, out_dir = Path(board_json), Path(out_dir)
    try:
        doc = json.loads(board_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{board_json}:{e.lineno}: not valid JSON: {e.msg}") from e
    if not isinstance(doc, dict):
        raise ValueError(f"{board_json}: a leaderboard JSON object was expected, got {type(doc).__name__}")
    experiment = str(doc.get("experiment") or board_json.stem)
    if "/" in experiment or experiment.startswith("."):
        raise ValueError(f"{board_json}: experiment name {experiment!r} cannot name a folder")
    extras = read_eval_extras(eval_dirs) if eval_dirs else None
    try:
        data = page_data({**doc, "experiment": experiment}, extras, facts)
    except ValueError as e:
        raise ValueError(f"{board_json}: {e}") from e
    page = out_dir / experiment / "index.html"
    write_text(page, render_page(data))
    write_index(out_dir)
    return page


__all__ = [
    "write_pages",
    "write_index",
    "read_page_data",
    "page_data",
    "pairwise_data",
    "render_page",
    "render_pairwise",
    "task_facts",
    "read_eval_extras",
]
