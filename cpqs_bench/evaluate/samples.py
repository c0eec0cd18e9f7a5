"""Score completions produced elsewhere (another harness, an API model, a hand-written baseline).

Inputs are JSONL (optionally gzip):

* HumanEval / HumanEval+ (EvalPlus style): ``{"task_id": ..., "solution": <full program>}`` or
  ``{"task_id": ..., "completion": <body appended to the prompt>}``; several rows per task are allowed (pass@k).
* GSM8K: ``{"idx": <0-based line of the GSM8K test file>, "response": <model text>}``.

A malformed line is an error naming ``file:line``. Ids that the benchmark does not know are reported and counted
but not scored; benchmark items absent from the input are counted as failures (stated in the result), so a partial
file cannot inflate the score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cpqs_bench.data.mirror import resolve_path
from cpqs_bench.evaluate import code_exec, gsm8k
from cpqs_bench.evaluate.sandbox import Sandbox
from cpqs_bench.io import iter_jsonl_objects, sha256_file

TASK_ALIASES = {
    "humaneval": "humaneval",
    "humaneval_plus": "humaneval_plus",
    "humaneval+": "humaneval_plus",
    "humanevalplus": "humaneval_plus",
    "gsm8k": "gsm8k",
}
MISSING_POLICY = "benchmark items missing from the samples file count as failures"


def _require_str(row: dict, key: str, path: Path, lineno: int) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{path}:{lineno}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def _read_code_samples(path: Path) -> list[dict]:
    samples = []
    for lineno, row in iter_jsonl_objects(path):
        task_id = _require_str(row, "task_id", path, lineno)
        if isinstance(row.get("solution"), str):
            samples.append({"task_id": task_id, "solution": row["solution"], "_line": lineno})
        elif isinstance(row.get("completion"), str):
            samples.append({"task_id": task_id, "completion": row["completion"], "_line": lineno})
        else:
            raise ValueError(f"{path}:{lineno}: row for {task_id!r} needs a string 'solution' or 'completion'")
    return samples


def _read_gsm8k_samples(path: Path) -> list[dict]:
    samples = []
    for lineno, row in iter_jsonl_objects(path):
        idx = row.get("idx")
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise ValueError(f"{path}:{lineno}: field 'idx' must be an integer, got {type(idx).__name__}")
        samples.append({"idx": idx, "response": _require_str(row, "response", path, lineno), "_line": lineno})
    return samples


def _summary(
    task: str,
    path: Path,
    metric: str,
    per_doc: dict[Any, list[bool]],
    items: list[dict],
    unknown: list,
    missing: list,
    n_rows: int,
    extra: dict,
) -> dict[str, Any]:
    """Metric = mean over benchmark docs of the per-doc pass@1 (c/n); missing docs contribute 0."""
    scores = [code_exec.pass_at_k(len(v), sum(v), 1) if v else 0.0 for v in per_doc.values()]
    value = sum(scores) / len(scores) if scores else 0.0
    return {
        "task": task,
        "samples_path": str(path),
        "samples_sha256": sha256_file(path),
        "metric": metric,
        metric: value,
        "n_docs": len(per_doc),
        "n_rows": n_rows,
        "n_scored_rows": n_rows - len(unknown),
        "n_unknown": len(unknown),
        "unknown_ids": unknown,
        "n_missing": len(missing),
        "missing_ids": missing,
        "missing_policy": MISSING_POLICY,
        "items": items,
        **extra,
    }


def _eval_code(
    task: str,
    path: Path,
    workers: int,
    sandbox: Sandbox | None,
    cache_dir: str | Path | None,
    mirror: str | Path | None,
    progress: bool,
) -> dict[str, Any]:
    plus = task == "humaneval_plus"
    dataset_path = resolve_path(task, mirror)
    problems = code_exec.load_problems(plus, dataset_path)
    samples = _read_code_samples(path)
    known = [s for s in samples if s["task_id"] in problems]
    unknown = [f"{s['task_id']} (line {s['_line']})" for s in samples if s["task_id"] not in problems]
    results = code_exec.evaluate_humaneval(
        known,
        plus,
        workers,
        sandbox=sandbox,
        problems=problems,
        cache_dir=cache_dir,
        dataset_path=dataset_path,
        progress=progress,
    )
    per_doc: dict[str, list[bool]] = {t: [] for t in problems}
    items = []
    for s, r in zip(known, results):
        per_doc[s["task_id"]].append(bool(r["passed"]))
        items.append(
            {
                "task": task,
                "doc_id": s["task_id"],
                "prediction": s.get("solution", s.get("completion")),
                "extracted": code_exec.sample_code(s, problems[s["task_id"]]),
                "correct": bool(r["passed"]),
                "status": r["status"],
                "detail": r["detail"],
                "retried": r["retried"],
                "line": s["_line"],
            }
        )
    missing = [t for t, v in per_doc.items() if not v]
    for t in missing:
        items.append(
            {"task": task, "doc_id": t, "prediction": None, "extracted": None, "correct": False, "status": "missing"}
        )
    isolation = sandbox.isolation if sandbox is not None else None
    return _summary(
        task,
        path,
        "pass@1",
        per_doc,
        items,
        unknown,
        missing,
        len(samples),
        {"dataset_sha256": sha256_file(dataset_path), "isolation": isolation},
    )


def _eval_gsm8k(path: Path, mirror: str | Path | None) -> dict[str, Any]:
    gold_path = resolve_path("gsm8k", mirror)
    golds = []
    for lineno, row in iter_jsonl_objects(gold_path):
        if not isinstance(row.get("answer"), str):
            raise ValueError(f"{gold_path}:{lineno}: malformed GSM8K row (no string 'answer')")
        golds.append(row["answer"])
    samples = _read_gsm8k_samples(path)
    per_doc: dict[int, list[bool]] = {i: [] for i in range(len(golds))}
    items, unknown = [], []
    for s in samples:
        if not 0 <= s["idx"] < len(golds):
            unknown.append(f"{s['idx']} (line {s['_line']})")
            continue
        scored = gsm8k.score_response(s["response"], golds[s["idx"]])
        per_doc[s["idx"]].append(scored["correct"])
        items.append(
            {
                "task": "gsm8k",
                "doc_id": s["idx"],
                "prediction": s["response"],
                "extracted": scored["extracted"],
                "gold": scored["gold"],
                "correct": scored["correct"],
                "line": s["_line"],
            }
        )
    missing = [i for i, v in per_doc.items() if not v]
    for i in missing:
        items.append(
            {
                "task": "gsm8k",
                "doc_id": i,
                "prediction": None,
                "extracted": None,
                "gold": gsm8k.gold_answer(golds[i]),
                "correct": False,
                "status": "missing",
            }
        )
    return _summary(
        "gsm8k",
        path,
        "accuracy",
        per_doc,
        items,
        unknown,
        missing,
        len(samples),
        {"dataset_sha256": sha256_file(gold_path)},
    )


def eval_samples(
    task: str,
    samples_path: str | Path,
    *,
    workers: int = 2,
    sandbox: Sandbox | None = None,
    cache_dir: str | Path | None = None,
    mirror: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score a samples file for ``task`` (humaneval, humaneval_plus, gsm8k); see the module docstring for formats.

    Returns pass@1 (code) or accuracy (GSM8K) with counts of rows, unknown ids and missing items, and per-item rows
    ``{"task", "doc_id", "prediction", "extracted", "correct", ...}``. Code runs in ``sandbox`` (default: a
    :class:`Sandbox` requiring namespace isolation).
    """
    key = TASK_ALIASES.get(task.lower())
    if key is None:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(set(TASK_ALIASES))}")
    path = Path(samples_path)
    if not path.is_file():
        raise FileNotFoundError(f"samples file not found: {path}")
    if key == "gsm8k":
        return _eval_gsm8k(path, mirror)
    sandbox = sandbox or Sandbox()
    return _eval_code(key, path, workers, sandbox, cache_dir, mirror, progress)
