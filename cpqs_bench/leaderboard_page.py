"""Static HTML leaderboard pages: ``leaderboards/<experiment>/index.html`` and ``leaderboards/index.html``.

The page is one self-contained file: the data is inlined as JSON (``<script type="application/json">``) and the
behaviour is a few hundred lines of vanilla JS in the same file, so it opens from disk or from a static Hub Space
with no server and no network. It shows, per domain (``metadata.domain`` of the task YAMLs), a table of arms ×
tasks with the mean score, the item-bootstrap CI drawn as an error bar and the paired difference to the first
reference arm; columns sort on click; filters narrow the rows by model, budget and selector; a click on a row
opens a drawer with the run's provenance, per-seed scores, every paired comparison and the per-item outcomes.
A "what this can and cannot show" note states the sample sizes and the smallest differences they can resolve.
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
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from cpqs_bench.io import read_json, read_jsonl, write_text
from cpqs_bench.leaderboard import fmt_p, fmt_pct

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
class _TaskYamlLoader(yaml.SafeLoader):
    """Reads lm-eval task YAMLs without importing anything: ``!function x.y`` becomes the string ``x.y``."""


_TaskYamlLoader.add_multi_constructor(
    "!",
    lambda loader, suffix, node: (
        f"{suffix}" if not isinstance(node, yaml.ScalarNode) else f"{suffix} {loader.construct_scalar(node)}".strip()
    ),
)


def _load_task_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    """One task YAML with its ``include:`` chain merged (the including file wins; ``metadata`` merged by key)."""
    cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskYamlLoader)
    if not isinstance(cfg, dict):
        return {}
    inc = cfg.get("include")
    if isinstance(inc, str) and depth < 8 and (path.parent / inc).is_file():
        base = _load_task_yaml(path.parent / inc, depth + 1)
        meta = {**(base.get("metadata") or {}), **(cfg.get("metadata") or {})}
        cfg = {**base, **cfg, "metadata": meta}
    return cfg


def _task_yaml(task: str, folders: Sequence[Path]) -> dict[str, Any]:
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.yaml")):
            try:
                text = path.read_text(encoding="utf-8")
                if task not in text:
                    continue
                cfg = _load_task_yaml(path)
            except (OSError, yaml.YAMLError):
                continue  # not a task file we can read; lm-eval reports such files itself
            if cfg.get("task") == task:
                return cfg
    return {}


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
        folders = [Path(os.environ.get("CPQS_TASKS_DIR") or Path(__file__).resolve().parent.parent / "tasks")]
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
        cfg = _task_yaml(task, folder_paths)
        meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
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
        info = m.get("arm_info") if isinstance(m.get("arm_info"), dict) else {}
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
def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
        return None
    return float(x)


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, "", "missing")), None)


def _count(x: Any) -> int | None:
    return int(x) if isinstance(x, int) and not isinstance(x, bool) else None


def pairwise_data(section: Any) -> dict[str, Any] | None:
    """The leaderboard JSON's ``pairwise`` section as the page shows it (None when the run had none).

    Fields a row lacks are shown as "—"; a section that is not ``{"rows": [{...}, ...]}`` is an error (it is written
    by :func:`cpqs_bench.leaderboard.load_pairwise`, so another shape is a corrupt file, not an older one)."""
    if section is None:
        return None
    rows = section.get("rows") if isinstance(section, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
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


def page_data(
    doc: Mapping[str, Any],
    extras: Mapping[str, Any] | None = None,
    facts: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON inlined in the page: the leaderboard document reshaped per domain, plus arm attributes."""
    extras = extras or {}
    summary = doc.get("summary") if isinstance(doc.get("summary"), dict) else {}
    tables = doc.get("tables") if isinstance(doc.get("tables"), dict) else {}
    tasks = [str(t) for t in (doc.get("tasks") or list(tables))]
    arms = [str(a) for a in (doc.get("arms") or [])]
    for t in tasks:
        for row in tables.get(t) or []:
            if isinstance(row, dict) and row.get("arm") not in arms and row.get("arm") is not None:
                arms.append(str(row["arm"]))
    facts = dict(facts or task_facts(tasks, extras.get("manifests") or ()))
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
        kept = sorted({i.get("kept") for i in infos if i.get("kept") is not None})
        arm_rows[arm] = {
            "arm": arm,
            "selector": str(_first(info.get("selector"), arm if arm != "base" else "none (base model)")),
            "model": str(_first(ext.get("model"), *(p.get("model_id") for p in prov), "unknown")),
            "budget": "all" if arm == "full" and budget is None else ("—" if budget is None else str(budget)),
            "kept": kept,
            "seeds": sorted({s for s in (summary.get("seeds") or {}).get(arm, []) if s is not None}),
        }
    per_task = summary.get("per_task") if isinstance(summary.get("per_task"), dict) else {}
    cells: dict[str, dict[str, Any]] = {}
    for t in tasks:
        cells[t] = {}
        for row in tables.get(t) or []:
            if not isinstance(row, dict) or row.get("arm") is None:
                continue
            arm = str(row["arm"])
            arm_sum = ((per_task.get(t) or {}).get("arms") or {}).get(arm) or {}
            vs = row.get("vs") if isinstance(row.get("vs"), dict) else {}
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
        "stats": doc.get("stats") if isinstance(doc.get("stats"), dict) else {},
        "power": doc.get("power") if doc.get("power") is not None else summary.get("power"),
        "tasks": [{"name": t, **{k: v for k, v in facts.get(t, {}).items()}} for t in tasks],
        "domains": [{"name": d, "tasks": ts} for d, ts in domains.items()],
        "arms": arm_rows,
        "arm_order": arms,
        "cells": cells,
        "provenance": provenance,
        "items": extras.get("items") or {},
        "pairwise": pairwise_data(doc.get("pairwise")),
        "extra_keys": sorted(k for k in doc if k not in known),
    }


# ----------------------------------------------------------------------------------------------- rendering
def _inline_json(data: Any) -> str:
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
        f'<p id="note"></p></header>\n<main id="app"><noscript>This page needs JavaScript to draw its '
        f"tables; the same numbers are in the leaderboard's .md and .json files.</noscript>"
        f"{render_pairwise(data.get('pairwise'))}</main>\n"
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
