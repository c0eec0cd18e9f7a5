"""The Hub's Eval Results files (``.eval_results/<task>.yaml``) and a ``model-index`` that says the same thing.

Format followed: Hub docs, "Evaluation Results" (https://huggingface.co/docs/hub/eval-results), as written by
huggingface/community-evals: a YAML list of results, each::

    - dataset:
        id: openai/gsm8k        # Hub dataset id of the benchmark (required)
        task_id: default        # the benchmark's task (its eval.yaml); "default" unless the task YAML says
      value: 31.25              # metric value, in percent as the Hub's leaderboards show them
      date: "2026-12-01"        # ISO-8601 date of the evaluation
      source:                   # attribution: where the numbers come from
        url: https://huggingface.co/datasets/<ns>/<experiment>-results
        name: cpqs-bench results dataset
      notes: "..."              # what differs from the benchmark's standard setting

One file per task. Deliberate choices: a task without a Hub dataset id (``metadata.dataset_id`` in its YAML, or one
of the project's own loaders) gets no file, since the Hub cannot attach it to a benchmark; it is listed in
:func:`skipped_tasks` and the card says so. ``notes`` always states the item count and the arm/seed, because a
smoke run on 5 items is not comparable with a full-benchmark score. The ``model-index`` of the model card carries
the same values (percent), the same dataset ids and the same source, so the two cannot disagree.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import yaml
from huggingface_hub import EvalResult

EVAL_RESULTS_DIR = ".eval_results"


def percent(value: float) -> float:
    """A fraction in [0, 1] as the percent the Hub shows (4 decimals, so the YAML and model-index agree exactly)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"metric value must be a finite number, got {value!r}")
    return round(100.0 * float(value), 4)


def _facts(task: str, facts: Mapping[str, Mapping[str, Any]] | None) -> Mapping[str, Any]:
    return (facts or {}).get(task) or {}


def skipped_tasks(metrics: Mapping[str, float], facts: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    return sorted(t for t in metrics if not _facts(t, facts).get("dataset_id"))


def eval_result_entry(
    task: str,
    value: float,
    facts: Mapping[str, Any],
    *,
    date: str | None,
    source_url: str | None,
    source_name: str,
    notes: str | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "dataset": {"id": str(facts["dataset_id"]), "task_id": str(facts.get("task_id") or "default")},
        "value": percent(value),
    }
    if facts.get("dataset_revision"):
        entry["dataset"]["revision"] = str(facts["dataset_revision"])
    if date:
        entry["date"] = date
    if source_url:
        entry["source"] = {"url": source_url, "name": source_name}
    if notes:
        entry["notes"] = notes
    return entry


def eval_result_files(
    metrics: Mapping[str, float],
    facts: Mapping[str, Mapping[str, Any]] | None,
    *,
    date: str | None = None,
    source_url: str | None = None,
    source_name: str = "cpqs-bench results dataset",
    notes: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """``{".eval_results/<task>.yaml": yaml_text}`` for every task with a Hub dataset id."""
    out = {}
    for task in sorted(metrics):
        f = _facts(task, facts)
        if not f.get("dataset_id"):
            continue
        entry = eval_result_entry(
            task,
            metrics[task],
            f,
            date=date,
            source_url=source_url,
            source_name=source_name,
            notes=(notes or {}).get(task),
        )
        out[f"{EVAL_RESULTS_DIR}/{task}.yaml"] = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True)
    return out


def model_index_results(
    metrics: Mapping[str, float],
    facts: Mapping[str, Mapping[str, Any]] | None,
    *,
    source_url: str | None = None,
    source_name: str = "cpqs-bench results dataset",
) -> list[EvalResult]:
    """``model-index`` results with the same values (percent), dataset ids and source as the eval-results files."""
    results = []
    for task in sorted(metrics):
        f = _facts(task, facts)
        metric = str(f.get("metric") or "score")
        pretty = str(f.get("dataset_name") or task)
        results.append(
            EvalResult(
                task_type="text-generation",
                task_name=f"Text Generation ({task})",
                dataset_type=str(f.get("dataset_id") or task),
                dataset_name=pretty,
                dataset_split="test",
                metric_type=metric,
                metric_name=f"{pretty} {metric} (%)",
                metric_value=percent(metrics[task]),
                source_url=source_url,
                source_name=source_name if source_url else None,
            )
        )
    return results
