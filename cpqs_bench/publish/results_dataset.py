"""The experiment's results dataset: Parquet configs ``runs`` and ``items`` plus a card, loadable with ``datasets``.

Layout (one commit, like every repo :mod:`cpqs_bench.publish.hub` pushes)::

    README.md                 dataset card; YAML ``configs:`` so ``load_dataset(repo_or_folder, "runs")`` works
    data/runs.parquet         one row per arm × seed × task (the numbers the leaderboard aggregates)
    data/items.parquet        one row per arm × seed × task × item (every statistic can be recomputed from these)
    data/pairwise.parquet     only when the run has pairwise LLM-judge stages: one row per arm × seed judged
                              against the reference arm (win / tie / lose / unparsed, win rate, net score CI)
    data/contamination.parquet  only when the leaderboard JSON has a ``contamination`` block: per task, the
                              n-gram overlap of the evaluation items with the pool and each arm's selection
    data/validity.parquet     only when it has a ``validity`` block: planted-defect AUCs and labelled-pair
                              accuracies per selector
    summary.json              the leaderboard JSON (statistics: CIs, paired tests)
    leaderboards/*            the leaderboard's Markdown / JSON / PNG
    page/index.html           the static leaderboard page (opens from disk)

Parquet is written with pyarrow and an explicit schema (stable column types, nullable seed for the base model);
the bytes are deterministic for the same inputs, so an unchanged re-publish makes no commit. The ``pairwise``
config is added beside ``runs`` and ``items`` (whose schemas do not change) only when the leaderboard has a pairwise
section; its rows are the leaderboard JSON's per-seed pairwise results (:func:`pairwise_rows`), and the statistics
pooled over seeds stay in ``summary.json`` (``pairwise``). The card opens with the leaderboard's per-domain
sentences and its forest plot (``leaderboards/<experiment>.png``), the same figure as the page and the Markdown.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard, DatasetCardData

from cpqs_bench.io import read_json, read_jsonl, write_text

RUNS_SCHEMA = pa.schema(
    [
        pa.field("experiment", pa.string(), False, {"description": "experiment name"}),
        pa.field("arm", pa.string(), False, {"description": "arm: the data selector (base = no fine-tuning)"}),
        pa.field("seed", pa.int64(), True, {"description": "experiment seed (null for the base model)"}),
        pa.field("task", pa.string(), False, {"description": "lm-eval task name"}),
        pa.field("domain", pa.string(), False, {"description": "task domain (task YAML metadata.domain)"}),
        pa.field("dataset_id", pa.string(), True, {"description": "Hub id of the evaluation dataset"}),
        pa.field("metric", pa.string(), False, {"description": "the task's metric"}),
        pa.field(
            "value",
            pa.float64(),
            False,
            {
                "description": "metric value in the task's unit: a fraction in [0, 1] for accuracy-like metrics, the "
                "metric's own unit for proxies (NLL per byte: nats/byte, lower is better)"
            },
        ),
        pa.field("n_items", pa.int64(), False, {"description": "items evaluated"}),
        pa.field("model_id", pa.string(), True, {"description": "base model"}),
        pa.field("selector", pa.string(), True, {"description": "selector that picked the fine-tuning data"}),
        pa.field("budget_k", pa.int64(), True, {"description": "examples the selector was asked to keep"}),
        pa.field("kept", pa.int64(), True, {"description": "examples it kept"}),
        pa.field("recipe_hash", pa.string(), True, {"description": "fine-tuning recipe hash (equal across arms)"}),
        pa.field("config_hash", pa.string(), True, {"description": "resolved config hash"}),
        pa.field("commit", pa.string(), True, {"description": "git commit of cpqs-bench"}),
        pa.field("adapter_repo", pa.string(), True, {"description": "Hub repo of the arm's adapter"}),
    ]
)
ITEMS_SCHEMA = pa.schema(
    [
        pa.field("experiment", pa.string(), False, {"description": "experiment name"}),
        pa.field("arm", pa.string(), False, {"description": "arm"}),
        pa.field("seed", pa.int64(), True, {"description": "experiment seed (null for the base model)"}),
        pa.field("task", pa.string(), False, {"description": "lm-eval task name"}),
        pa.field("doc_id", pa.string(), False, {"description": "item id within the task (as text)"}),
        pa.field("item_id", pa.string(), True, {"description": "the dataset's own id of the item, when it has one"}),
        pa.field(
            "score",
            pa.float64(),
            True,
            {"description": "the item's score (accuracy-like: 1 = correct / passed; proxies: the item's value)"},
        ),
        pa.field("prediction", pa.string(), True, {"description": "the model's output"}),
        pa.field("extracted", pa.string(), True, {"description": "the answer the scorer extracted from it"}),
    ]
)
PAIRWISE_SCHEMA = pa.schema(
    [
        pa.field("experiment", pa.string(), False, {"description": "experiment name"}),
        pa.field("arm", pa.string(), False, {"description": "arm whose answers were judged"}),
        pa.field("seed", pa.int64(), True, {"description": "experiment seed (null for the base model)"}),
        pa.field("reference", pa.string(), False, {"description": "the reference arm it was compared with"}),
        pa.field("reference_seed", pa.int64(), True, {"description": "the reference's seed (null for base)"}),
        pa.field("sets", pa.list_(pa.string()), False, {"description": "general-domain prompt sets judged"}),
        pa.field("judge", pa.string(), False, {"description": "the judge model"}),
        pa.field(
            "weak_judge",
            pa.bool_(),
            False,
            {"description": "true: the embedded / target model judged (a pipeline check, not a quality signal)"},
        ),
        pa.field("rule", pa.string(), False, {"description": "tie rule over the two orders (strict or sum)"}),
        pa.field("win", pa.int64(), False, {"description": "prompts won (both orders, strict rule)"}),
        pa.field("tie", pa.int64(), False, {"description": "prompts tied"}),
        pa.field("lose", pa.int64(), False, {"description": "prompts lost"}),
        pa.field("unparsed", pa.int64(), False, {"description": "prompts whose judgement held no two scores"}),
        pa.field("n", pa.int64(), False, {"description": "win + tie + lose (unparsed left out)"}),
        pa.field("win_rate", pa.float64(), True, {"description": "(win + tie / 2) / n"}),
        pa.field("winning_score", pa.float64(), True, {"description": "(win - lose) / n + 1 (1 = even)"}),
        pa.field("sign_test_p", pa.float64(), True, {"description": "two-sided sign test, wins vs losses"}),
        pa.field("net_ci_low", pa.float64(), True, {"description": "95% bootstrap CI of (win - lose) / n, low"}),
        pa.field("net_ci_high", pa.float64(), True, {"description": "95% bootstrap CI of (win - lose) / n, high"}),
    ]
)
CONTAMINATION_SCHEMA = pa.schema(
    [
        pa.field("experiment", pa.string(), False, {"description": "experiment name"}),
        pa.field("task", pa.string(), False, {"description": "evaluation task"}),
        pa.field("n", pa.int64(), True, {"description": "n of the normalised n-grams compared"}),
        pa.field("scope", pa.string(), False, {"description": "'pool', or the arm whose selection was checked"}),
        pa.field("seed", pa.int64(), True, {"description": "the arm's seed (null: pool, or mean over seeds)"}),
        pa.field("items", pa.int64(), True, {"description": "evaluation items of the task"}),
        pa.field("undetectable", pa.int64(), True, {"description": "items shorter than n tokens (never 'clean')"}),
        pa.field("overlapping_items", pa.float64(), True, {"description": "items with any n-gram overlap"}),
        pa.field("fraction", pa.float64(), True, {"description": "overlapping_items / items"}),
    ]
)
VALIDITY_SCHEMA = pa.schema(
    [
        pa.field("experiment", pa.string(), False, {"description": "experiment name"}),
        pa.field("model", pa.string(), True, {"description": "the model the selectors scored with"}),
        pa.field("track", pa.string(), False, {"description": "'planted' (defects) or 'pairs' (labelled pairs)"}),
        pa.field("selector", pa.string(), False, {"description": "selector"}),
        pa.field("group", pa.string(), True, {"description": "defect kind (planted) or subset (pairs)"}),
        pa.field("n", pa.int64(), True, {"description": "rows or pairs scored"}),
        pa.field("value", pa.float64(), True, {"description": "paired AUC (planted) or pairwise accuracy (pairs)"}),
        pa.field("ci_low", pa.float64(), True, {"description": "95% bootstrap CI, low"}),
        pa.field("ci_high", pa.float64(), True, {"description": "95% bootstrap CI, high"}),
        pa.field("unpaired_auc", pa.float64(), True, {"description": "unpaired AUC (planted only)"}),
        pa.field("excluded", pa.int64(), True, {"description": "rows the selector excluded (scored lowest)"}),
    ]
)
CONFIGS = [
    {"config_name": "runs", "data_files": [{"split": "train", "path": "data/runs.parquet"}], "default": True},
    {"config_name": "items", "data_files": [{"split": "train", "path": "data/items.parquet"}]},
]
PAIRWISE_CONFIG = {"config_name": "pairwise", "data_files": [{"split": "train", "path": "data/pairwise.parquet"}]}
CONTAMINATION_CONFIG = {
    "config_name": "contamination",
    "data_files": [{"split": "train", "path": "data/contamination.parquet"}],
}
VALIDITY_CONFIG = {"config_name": "validity", "data_files": [{"split": "train", "path": "data/validity.parquet"}]}


def contamination_rows(experiment: str, section: Mapping[str, Any] | None, source: str) -> list[dict[str, Any]]:
    """``contamination`` rows from the leaderboard JSON's block (None: none): per task the pool, each arm (mean over
    seeds, ``seed`` null) and each arm × seed."""
    if section is None:
        return []
    tasks = section.get("tasks") if isinstance(section, dict) else None
    if not isinstance(tasks, dict):
        raise ValueError(f"{source}: contamination.tasks must be an object")
    out = []
    for task, t in sorted(tasks.items()):
        base: dict[str, Any] = {
            "experiment": experiment,
            "task": str(task),
            "n": _int(section.get("n")),
            "items": _int(t.get("items")),
            "undetectable": _int(t.get("undetectable")),
        }
        pool = t.get("pool") or {}
        out.append(
            base
            | {"scope": "pool", "seed": None}
            | {"overlapping_items": _float(pool.get("overlapping_items")), "fraction": _float(pool.get("fraction"))}
        )
        for arm, a in sorted((t.get("arms") or {}).items()):
            out.append(
                base
                | {"scope": str(arm), "seed": None}
                | {"overlapping_items": _float(a.get("overlapping_items")), "fraction": _float(a.get("fraction"))}
            )
            items = _int(t.get("items"))
            # "none": an arm selected once for every seed (contamination.seed_key)
            per_seed = (a.get("per_seed") or {}).items()
            for seed, count in sorted(per_seed, key=lambda kv: (kv[0] == "none", int(kv[0]) if kv[0] != "none" else 0)):
                out.append(
                    base
                    | {
                        "scope": str(arm),
                        "seed": None if seed == "none" else int(seed),
                        "overlapping_items": _float(count),
                    }
                    | {"fraction": (count / items) if items and _float(count) is not None else None}
                )
    return out


def validity_rows(experiment: str, section: Mapping[str, Any] | None, source: str) -> list[dict[str, Any]]:
    """``validity`` rows from the leaderboard JSON's block (None: none): one per planted-defect row and per
    labelled-pairs row."""
    if section is None:
        return []
    tracks = section.get("tracks") if isinstance(section, dict) else None
    if not isinstance(tracks, dict):
        raise ValueError(f"{source}: validity.tracks must be an object")

    def ci(v: object) -> tuple[float | None, float | None]:
        return (_float(v[0]), _float(v[1])) if isinstance(v, (list, tuple)) and len(v) == 2 else (None, None)

    out = []
    for r in (tracks.get("planted") or {}).get("rows") or []:
        lo, hi = ci(r.get("paired_ci"))
        out.append(
            {
                "experiment": experiment,
                "model": _text(section.get("model")),
                "track": "planted",
                "selector": str(r.get("selector")),
                "group": _text(r.get("kind")),
                "n": _int(r.get("n")),
                "value": _float(r.get("paired_auc")),
                "ci_low": lo,
                "ci_high": hi,
                "unpaired_auc": _float(r.get("unpaired_auc")),
                "excluded": _int(r.get("excluded")),
            }
        )
    for r in (tracks.get("pairs") or {}).get("rows") or []:
        lo, hi = ci(r.get("ci"))
        out.append(
            {
                "experiment": experiment,
                "model": _text(section.get("model")),
                "track": "pairs",
                "selector": str(r.get("selector")),
                "group": _text(r.get("subset")),
                "n": _int(r.get("n")),
                "value": _float(r.get("accuracy")),
                "ci_low": lo,
                "ci_high": hi,
                "unpaired_auc": None,
                "excluded": None,
            }
        )
    return out


def _text(v: object) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)


def _int(v: object) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def _commit(m: Mapping[str, Any]) -> str | None:
    """``commit``, or ``git.sha`` as :mod:`cpqs_bench.provenance` writes it (``+dirty`` for a dirty tree)."""
    if m.get("commit"):
        return _text(m["commit"])
    git = m.get("git")
    if isinstance(git, dict) and git.get("sha"):
        return f"{git['sha']}{'+dirty' if git.get('dirty') else ''}"
    return None


def collect_rows(
    experiment: str,
    eval_dirs: Sequence[str | os.PathLike],
    facts: Mapping[str, Mapping[str, Any]],
    adapter_repos: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``runs`` and ``items`` rows from evaluation directories (``manifest.json``, ``metrics.json``, ``items.jsonl``)."""
    runs, items = [], []
    for d in eval_dirs:
        d = Path(d)
        m, metrics = read_json(d / "manifest.json"), read_json(d / "metrics.json")
        arm, seed = str(m.get("arm", d.name)), _int(m.get("seed"))
        key = arm if seed is None else f"{arm}-s{seed}"
        info = m.get("arm_info") if isinstance(m.get("arm_info"), dict) else {}
        rows = read_jsonl(d / "items.jsonl") if (d / "items.jsonl").exists() else []
        for task in sorted(metrics):
            value = metrics[task]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{d / 'metrics.json'}: metric {task!r} is not a number: {value!r}")
            f = facts.get(task) or {}
            task_items = [r for r in rows if r.get("task") == task]
            runs.append(
                {
                    "experiment": experiment,
                    "arm": arm,
                    "seed": seed,
                    "task": task,
                    "domain": str(f.get("domain") or "other"),
                    "dataset_id": f.get("dataset_id"),
                    "metric": str(f.get("metric") or "score"),
                    "value": float(value),
                    "n_items": int(
                        (m.get("n_items") or {}).get(task, len(task_items))
                        if isinstance(m.get("n_items"), dict)
                        else len(task_items)
                    ),
                    "model_id": _text(m.get("model_id")),
                    "selector": _text(info.get("selector") or (None if arm == "base" else arm)),
                    "budget_k": _int(info.get("budget_k")),
                    "kept": _int(info.get("kept")),
                    "recipe_hash": _text(m.get("recipe_hash")),
                    "config_hash": _text(m.get("config_hash")),
                    "commit": _commit(m),
                    "adapter_repo": (adapter_repos or {}).get(key),
                }
            )
            for r in task_items:
                score = r.get("score", r.get("correct"))
                items.append(
                    {
                        "experiment": experiment,
                        "arm": arm,
                        "seed": seed,
                        "task": task,
                        "doc_id": str(r.get("doc_id")),
                        "item_id": _text(r.get("item_id")),
                        "score": float(score) if isinstance(score, (int, float)) else None,
                        "prediction": _text(r.get("prediction")),
                        "extracted": _text(r.get("extracted")),
                    }
                )
    runs.sort(key=lambda r: (r["arm"], r["seed"] is not None, r["seed"] or 0, r["task"]))
    items.sort(key=lambda r: (r["arm"], r["seed"] is not None, r["seed"] or 0, r["task"], r["doc_id"]))
    return runs, items


def pairwise_rows(
    experiment: str, section: Mapping[str, Any] | None, source: str = "leaderboard JSON"
) -> list[dict[str, Any]]:
    """``pairwise`` rows from the leaderboard JSON's pairwise section (``None``: a run without one, no rows): one per
    arm × seed × reference × judge, the per-seed counts and statistics of that judge stage. ``source`` names the
    file in errors."""
    if section is None:
        return []
    rows = section.get("rows") if isinstance(section, dict) else None
    if not isinstance(rows, list):
        raise ValueError(f"{source}: pairwise.rows must be a list")
    out = []
    for i, r in enumerate(rows):
        where = f"{source}: pairwise.rows[{i}]"
        missing = [
            k
            for k in ("arm", "reference", "judge", "rule", "weak_judge", "sets", "per_seed")
            if not isinstance(r, dict) or k not in r
        ]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        for j, ps in enumerate(r["per_seed"]):
            missing = [
                k
                for k in ("seed", "reference_seed", "win", "tie", "lose", "unparsed", "n")
                if not isinstance(ps, dict) or k not in ps
            ]
            if missing:
                raise ValueError(f"{where}.per_seed[{j}]: missing {', '.join(missing)}")
            ci = ps.get("net_ci95")
            if ci is not None and not (isinstance(ci, list) and len(ci) == 2):
                raise ValueError(f"{where}.per_seed[{j}]: net_ci95 must be [low, high] or null, got {ci!r}")
            out.append(
                {
                    "experiment": experiment,
                    "arm": str(r["arm"]),
                    "seed": _int(ps["seed"]),
                    "reference": str(r["reference"]),
                    "reference_seed": _int(ps["reference_seed"]),
                    "sets": [str(x) for x in r["sets"]],
                    "judge": str(r["judge"]),
                    "weak_judge": r["weak_judge"] is True,
                    "rule": str(r["rule"]),
                    **{k: int(ps[k]) for k in ("win", "tie", "lose", "unparsed", "n")},
                    **{k: _float(ps.get(k)) for k in ("win_rate", "winning_score", "sign_test_p")},
                    "net_ci_low": _float(ci[0]) if ci else None,
                    "net_ci_high": _float(ci[1]) if ci else None,
                }
            )
    out.sort(
        key=lambda r: (
            r["arm"],
            r["seed"] is not None,
            r["seed"] or 0,
            r["reference"],
            r["reference_seed"] is not None,
            r["reference_seed"] or 0,
            r["judge"],
            r["rule"],
        )
    )
    return out


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def write_parquet(rows: Sequence[Mapping[str, Any]], schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pylist(list(rows), schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd", write_statistics=False)
    os.replace(tmp, path)


def _schema_table(schema: pa.Schema) -> list[str]:
    lines = ["| column | type | description |", "|---|---|---|"]
    for f in schema:
        desc = (f.metadata or {}).get(b"description", b"").decode()
        lines.append(f"| `{f.name}` | {f.type}{'' if f.nullable else ', not null'} | {desc} |")
    return lines


@dataclass(frozen=True)
class OptionalConfigs:
    """The rows of the dataset's optional configs; each is written (and described in the card) only when non-empty."""

    pairwise: Sequence[Mapping[str, Any]] = ()
    contamination: Sequence[Mapping[str, Any]] = ()
    validity: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class BoardFiles:
    """The leaderboard files a results dataset carries: its JSON (``summary.json``), the rendered leaderboards
    (Markdown, PNG, ...: ``leaderboards/``) and, optionally, the HTML page (``page/index.html``)."""

    summary_json: str | os.PathLike
    leaderboards: Sequence[str | os.PathLike]
    page: str | os.PathLike | None = None


def build_results_card(
    experiment: str,
    runs: Sequence[Mapping[str, Any]],
    facts: Mapping[str, Mapping[str, Any]],
    leaderboard_names: Sequence[str],
    pool: str | None = None,
    repo_id: str | None = None,
    board: Mapping[str, Any] | None = None,
    optional: OptionalConfigs = OptionalConfigs(),
) -> DatasetCard:
    """The card. ``board``: the leaderboard JSON, whose per-domain sentences and forest plot (``leaderboards/<x>.png``
    when among ``leaderboard_names``) open the card; ``optional``: the rows of the pairwise / contamination /
    validity configs."""
    pairwise, contamination, validity = optional.pairwise, optional.contamination, optional.validity
    tasks = sorted({r["task"] for r in runs})
    arms = sorted({r["arm"] for r in runs})
    data = DatasetCardData(
        pretty_name=f"cpqs-bench results: {experiment}",
        license="other",
        tags=["cpqs-bench", "evaluation", "data-selection", "leaderboard"],
        configs=CONFIGS
        + ([PAIRWISE_CONFIG] if pairwise else [])
        + ([CONTAMINATION_CONFIG] if contamination else [])
        + ([VALIDITY_CONFIG] if validity else []),
    )
    repo = repo_id or "<this repo or folder>"
    pairwise_text: list[str] = []
    if pairwise:
        refs = sorted({r["reference"] for r in pairwise})
        judges = sorted({r["judge"] + (" (weak judge: a pipeline check)" if r["weak_judge"] else "") for r in pairwise})
        pairwise_text = [
            "### `pairwise`",
            "",
            f'`load_dataset("{repo}", "pairwise", split="train")` ({len(pairwise)} rows): general-domain pairwise '
            f"LLM-judge results, one row per arm and seed against the reference arm ({', '.join(refs)}); judge: "
            f"{'; '.join(judges)}. A weak judge (the embedded / target model judging) is a pipeline check, not a "
            "quality signal. The statistics pooled over seeds are in `summary.json` (`pairwise`).",
            "",
            *_schema_table(PAIRWISE_SCHEMA),
            "",
        ]

    extra_text: list[str] = []
    if contamination:
        extra_text += [
            "### `contamination`",
            "",
            f'`load_dataset("{repo}", "contamination", split="train")` ({len(contamination)} rows): per task, the '
            "evaluation items with any normalised n-gram overlap in the pool and in each arm's selection (per seed, "
            "and the mean over seeds with `seed` null). Items shorter than n tokens are undetectable, never clean.",
            "",
            *_schema_table(CONTAMINATION_SCHEMA),
            "",
        ]
    if validity:
        extra_text += [
            "### `validity`",
            "",
            f'`load_dataset("{repo}", "validity", split="train")` ({len(validity)} rows): selector validity tracks '
            "scored before any fine-tuning: AUC against planted defects and accuracy on labelled answer pairs.",
            "",
            *_schema_table(VALIDITY_SCHEMA),
            "",
        ]
    glance: list[str] = []
    if board and board.get("glance"):
        ref = (board.get("reference") or {}).get("arm")
        glance = ["## At a glance", "", f"Δ vs the reference arm **{ref}**, per domain:", ""]
        glance += [f"* {g['sentence']}" for g in board["glance"]]
        png = f"{board.get('experiment')}.png"
        if png in leaderboard_names:
            glance += ["", f"![forest plot of Δ vs {ref}](leaderboards/{png})"]
            caption = (board.get("figure") or {}).get("caption")
            glance += ["", f"*{caption}*"] if caption else []
        glance.append("")
    licences = []
    for t in tasks:
        f = facts.get(t) or {}
        licences.append(
            f"* `{t}`: {f.get('dataset_id') or 'no Hub dataset id'}, licence "
            f"{f.get('license') or 'unknown (see the source)'}"
        )
    text = [
        f"# cpqs-bench results: {experiment}",
        "",
        "Evaluation results of instruction-tuning data selectors compared end to end by "
        "cpqs-bench: each arm's selector picks a budget of examples from one candidate pool, a "
        "LoRA adapter is fine-tuned on them with one fixed recipe (same recipe hash for every arm), and the adapter is "
        "evaluated with lm-evaluation-harness. Arms differ only in their data.",
        "",
        "```python",
        "from datasets import load_dataset",
        f'runs = load_dataset("{repo}", "runs", split="train")    # {len(runs)} rows',
        f'items = load_dataset("{repo}", "items", split="train")  # per-item outcomes',
        "```",
        "",
        f"Arms: {', '.join(arms) or 'none'}. Tasks: {', '.join(tasks) or 'none'}.",
        "",
        *glance,
        "## How the numbers were produced",
        "",
        "* `runs.value` is the task's metric (the task YAML's `metric_list`) for one arm and seed: a fraction in [0, 1] "
        "for exact match and pass@1, the metric's own unit for proxies (NLL per byte, lower is better).",
        "* `items.score` is each item's score; `runs.value` is its mean over the task's items.",
        "* `summary.json` holds the statistics of the leaderboard: means over seeds, 95% percentile bootstrap CIs over "
        "items, paired sign-flip permutation tests against the reference arms.",
        "* Provenance (commit, config hash, recipe hash, model) is in every `runs` row; the model repos hold the "
        "adapters, their selections and manifests.",
        "",
        "## Configs",
        "",
        "### `runs`",
        "",
        *_schema_table(RUNS_SCHEMA),
        "",
        "### `items`",
        "",
        *_schema_table(ITEMS_SCHEMA),
        "",
        *pairwise_text,
        *extra_text,
        "## Files",
        "",
        f"* `leaderboards/`: {', '.join(f'`{n}`' for n in leaderboard_names) or '(none)'}; `page/index.html`: the "
        "static leaderboard page (opens from disk, no network).",
        "",
        "## Licence of the underlying data",
        "",
        "The `items` config contains model outputs on the evaluation datasets below, which keep their own licences; "
        "these results are released under the same terms. The fine-tuning pool"
        + (f" (`{pool}`)" if pool else "")
        + " is not redistributed here.",
        "",
        *licences,
        "",
    ]
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(text))


def build_results_folder(
    experiment: str,
    eval_dirs: Sequence[str | os.PathLike],
    files: BoardFiles,
    out_dir: str | os.PathLike,
    *,
    facts: Mapping[str, Mapping[str, Any]],
    adapter_repos: Mapping[str, str] | None = None,
    pool: str | None = None,
    repo_id: str | None = None,
    pairwise: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Assemble the results dataset folder (see the module docstring) from the evaluations and the leaderboard
    ``files``. ``pairwise``: the rows of the ``pairwise`` config (:func:`pairwise_rows` of the leaderboard JSON; none:
    no such config). Returns ``out_dir``."""
    from cpqs_bench.publish.hub import _build_dir, _copy_file

    out_dir, summary_json, page = Path(out_dir), Path(files.summary_json), files.page
    leaderboards = [Path(p) for p in files.leaderboards]
    for path in [summary_json, *leaderboards, *([Path(page)] if page else [])]:
        if not path.is_file():
            raise FileNotFoundError(f"results file missing: {path}")
    names = [p.name for p in leaderboards]
    if len(set(names)) != len(names):
        raise ValueError(f"leaderboard files must have distinct names, got {names}")
    try:
        board = json.loads(summary_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{summary_json}:{e.lineno}: not valid JSON: {e.msg}") from e
    board = board if isinstance(board, dict) else {}
    contamination = contamination_rows(experiment, board.get("contamination"), str(summary_json))
    validity = validity_rows(experiment, board.get("validity"), str(summary_json))
    runs, items = collect_rows(experiment, eval_dirs, facts, adapter_repos)
    card = build_results_card(
        experiment, runs, facts, names, pool, repo_id, board, OptionalConfigs(pairwise, contamination, validity)
    )

    def fill(tmp: Path) -> None:
        write_parquet(runs, RUNS_SCHEMA, tmp / "data" / "runs.parquet")
        write_parquet(items, ITEMS_SCHEMA, tmp / "data" / "items.parquet")
        if pairwise:
            write_parquet(pairwise, PAIRWISE_SCHEMA, tmp / "data" / "pairwise.parquet")
        if contamination:
            write_parquet(contamination, CONTAMINATION_SCHEMA, tmp / "data" / "contamination.parquet")
        if validity:
            write_parquet(validity, VALIDITY_SCHEMA, tmp / "data" / "validity.parquet")
        _copy_file(summary_json, tmp / "summary.json")
        for path in leaderboards:
            _copy_file(path, tmp / "leaderboards" / path.name)
        if page:
            _copy_file(Path(page), tmp / "page" / "index.html")
        write_text(tmp / "README.md", str(card))

    return _build_dir(out_dir, fill)
