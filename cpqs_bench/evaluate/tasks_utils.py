"""Python hooks for the lm-eval task YAMLs in ``tasks/`` (referenced there as ``!function cpqs_bench.evaluate...``).

Why these exist instead of lm-eval's own hooks:

* Datasets: lm-eval's built-in tasks call ``datasets.load_dataset("openai/gsm8k")`` which needs the Hub. Our tasks use
  ``custom_dataset`` hooks that read the project's data layer (local mirror offline, Hub online), so evaluation runs
  offline and on exactly the bytes the rest of the pipeline records.
* Scoring: lm-eval's humaneval metric calls ``evaluate.load("code_eval")`` (Hub, and an in-process ``exec`` guard).
  Ours runs every program in :mod:`cpqs_bench.evaluate.sandbox` through :mod:`.code_exec` (EvalPlus semantics for
  HumanEval+), and GSM8K answers go through :mod:`.gsm8k` extraction.

Scoring happens in a *filter* (it sees the whole task at once, so code runs in parallel workers); each filtered
response is a list of judgement dicts ``{"extracted", "correct", ...}`` (one per repeat), which lm-eval logs per
sample, and ``process_results`` turns into the metric. Sandbox settings come from :func:`configure` (the harness sets
them from ``EvaluateConfig``; a bare ``lm_eval`` run uses the defaults below).
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cpqs_bench.data.mirror import resolve
from cpqs_bench.evaluate import code_exec, gsm8k
from cpqs_bench.evaluate.config import EvaluateConfig
from cpqs_bench.io import read_jsonl

_DEFAULTS = EvaluateConfig()


# ----------------------------------------------------------------------------------------------------------------------
# execution settings
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecSettings:
    """How generated code is executed while scoring (recorded in the evaluation manifest)."""

    workers: int = _DEFAULTS.code_workers
    timeout_s: float = _DEFAULTS.code_timeout_s
    min_isolation: str = _DEFAULTS.sandbox_min_level
    allow_weaker: bool = False
    cache_dir: str | None = None  # HumanEval+ expected outputs; None -> <cpqs cache>/humanevalplus-expected


_lock = threading.Lock()
_settings = ExecSettings()


def configure(settings: ExecSettings) -> None:
    """Set the execution settings used by the code filters (process-wide: lm-eval gives filters no context)."""
    global _settings
    with _lock:
        changed = settings != _settings
        _settings = settings
    if changed:  # the same settings reuse the probed sandbox (evaluations of many arms in one process)
        _sandbox.cache_clear()


def current_settings() -> ExecSettings:
    return _settings


def expected_cache_dir(settings: ExecSettings | None = None) -> Path:
    settings = settings or _settings
    if settings.cache_dir:
        return Path(settings.cache_dir)
    from cpqs_bench.models import cache_root

    return cache_root() / "humanevalplus-expected"


@functools.lru_cache(maxsize=1)
def _sandbox():
    """The sandbox for the current settings (probing isolation once; refuses below the configured minimum)."""
    from cpqs_bench.evaluate.sandbox import Sandbox, SandboxLimits

    s = _settings
    return Sandbox(SandboxLimits(timeout_s=s.timeout_s), min_isolation=s.min_isolation, allow_weaker=s.allow_weaker)


def sandbox_manifest() -> dict[str, Any]:
    """Isolation level and limits actually in force (for the manifest)."""
    return {
        **_sandbox().manifest(),
        "workers": _settings.workers,
        "min_isolation": _settings.min_isolation,
        "allow_weaker": _settings.allow_weaker,
    }


# ----------------------------------------------------------------------------------------------------------------------
# datasets (lm-eval ``custom_dataset`` hooks)
# ----------------------------------------------------------------------------------------------------------------------

_HUB_SPEC = re.compile(r"^hf:(?P<repo>[^:@#]+)(?::(?P<config>[^@#]+))?(?:@(?P<rev>[^#]+))?#(?P<split>.+)$")


def named_rows(name: str) -> list[dict]:
    """Rows of a named dataset: the mirror file when present, else the Hub (which fails cleanly offline)."""
    source, _ = resolve(name)
    m = _HUB_SPEC.match(source)
    if m is None:
        return read_jsonl(Path(source))
    import datasets

    ds = datasets.load_dataset(m["repo"], m["config"], revision=m["rev"], split=m["split"])
    return [dict(r) for r in ds]


def _gsm8k_docs(name: str) -> list[dict]:
    source = resolve(name)[0]
    docs = []
    for i, row in enumerate(named_rows(name)):
        where = f"{source}: record {i + 1}"
        if not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
            raise ValueError(f"{where}: needs string fields 'question' and 'answer'")
        try:  # a row without a numeric gold is a data error, not a silent 0
            gsm8k.gold_answer(row["answer"])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        docs.append({"idx": i, "question": row["question"], "answer": row["answer"]})
    return docs


def load_gsm8k(splits: tuple[str, ...] | list[str] = ("test",), **_metadata: object) -> dict[str, Any]:
    """``custom_dataset`` for GSM8K: ``test`` (1319) and, for few-shot tasks, ``train`` (7473)."""
    import datasets

    names = {"test": "gsm8k", "train": "gsm8k_train"}
    unknown = set(splits) - set(names)
    if unknown:
        raise ValueError(f"GSM8K splits must be among {sorted(names)}, got {sorted(unknown)}")
    return {s: datasets.Dataset.from_list(_gsm8k_docs(names[s])) for s in splits}


@functools.lru_cache(maxsize=2)
def problems(plus: bool) -> dict[str, code_exec.Problem]:
    """HumanEval / HumanEval+ problems from the data layer, parsed once per process."""
    return code_exec.load_problems(plus)


def _humaneval_dataset(plus: bool) -> dict[str, Any]:
    import datasets

    # Only small string fields go into docs: HumanEval+ inputs are large mixed-type lists that Arrow cannot hold,
    # and the scorer looks the full problem up by task_id anyway.
    docs = [
        {
            "task_id": p.task_id,
            "prompt": p.prompt,
            "entry_point": p.entry_point,
            "canonical_solution": p.canonical_solution,
        }  # the proxy task's reference (cpqs_humaneval_instruct_nll)
        for p in problems(plus).values()
    ]
    return {"test": datasets.Dataset.from_list(docs)}


def load_humaneval(**_metadata: object) -> dict[str, Any]:
    """``custom_dataset`` for HumanEval (164)."""
    return _humaneval_dataset(plus=False)


def load_humaneval_plus(**_metadata: object) -> dict[str, Any]:
    """``custom_dataset`` for HumanEval+ v0.1.10 (164)."""
    return _humaneval_dataset(plus=True)


# ----------------------------------------------------------------------------------------------------------------------
# GSM8K scoring
# ----------------------------------------------------------------------------------------------------------------------


def gsm8k_judge(resps: list[list[str]], docs: list[dict]) -> list[list[dict]]:
    """Filter: extract and score every response (``####``, else ``\\boxed{}``, else the last number)."""
    out = []
    for resp, doc in zip(resps, docs, strict=True):
        judged = []
        for r in resp:
            s = gsm8k.score_response(r, doc["answer"])
            judged.append({"extracted": s["extracted"], "gold": s["gold"], "correct": bool(s["correct"])})
        out.append(judged)
    return out


def gsm8k_results(doc: dict, results: list[list[dict]]) -> dict[str, float]:
    """``process_results``: accuracy over the repeats of this doc (0/1 with one repeat)."""
    judged = _single_request(results)
    return {"exact_match": sum(j["correct"] for j in judged) / len(judged)}


# ----------------------------------------------------------------------------------------------------------------------
# HumanEval scoring
# ----------------------------------------------------------------------------------------------------------------------

_FENCE = "```"


def completion_program(response: str, doc: dict) -> str:
    """Completion (base-model) variant: the prompt followed by the generated body, as human-eval builds it."""
    return doc["prompt"] + response


def instruct_program(response: str, doc: dict) -> str:
    """Instruct (chat) variant: the response continues the prompt inside a fenced block (lm-eval's ``gen_prefix``).

    As lm-eval's ``humaneval_instruct`` builds it: the function prompt followed by the response up to its closing
    fence (the whole response when the fence never closes, e.g. at the token limit).
    """
    cut = response.find(_FENCE)
    return doc["prompt"] + (response if cut == -1 else response[:cut])


def _single_request(results: list) -> list[dict]:
    if len(results) != 1:
        raise ValueError(f"expected one generate_until request per doc, got {len(results)}")
    judged = results[0]
    if not judged:
        raise ValueError("no judged responses for this doc")
    return judged


def _code_judge(
    resps: list[list[str]], docs: list[dict], plus: bool, build: Callable[[str, dict], str]
) -> list[list[dict]]:
    """Run every (doc, repeat) program in the sandbox, in parallel, and regroup the verdicts per doc."""
    samples, owner = [], []
    for d, (resp, doc) in enumerate(zip(resps, docs, strict=True)):
        for r in resp:
            samples.append({"task_id": doc["task_id"], "solution": build(r, doc)})
            owner.append(d)
    if not samples:
        return [[] for _ in docs]
    settings = _settings
    verdicts = code_exec.evaluate_humaneval(
        samples,
        plus,
        settings.workers,
        sandbox=_sandbox(),
        problems=problems(plus),
        cache_dir=expected_cache_dir(settings) if plus else None,
        limits=code_exec.TimeLimits(timeout_s=settings.timeout_s),
    )
    out: list[list[dict]] = [[] for _ in docs]
    for sample, owner_idx, v in zip(samples, owner, verdicts, strict=True):
        out[owner_idx].append(
            {
                "extracted": sample["solution"],
                "correct": bool(v["passed"]),
                "status": v["status"],
                "detail": v["detail"],
                "retried": v["retried"],
            }
        )
    return out


def humaneval_judge(resps: list[list[str]], docs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return _code_judge(resps, docs, False, completion_program)


def humaneval_plus_judge(resps: list[list[str]], docs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return _code_judge(resps, docs, True, completion_program)


def humaneval_instruct_judge(resps: list[list[str]], docs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return _code_judge(resps, docs, False, instruct_program)


def humaneval_plus_instruct_judge(resps: list[list[str]], docs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return _code_judge(resps, docs, True, instruct_program)


def pass_at_1_results(doc: dict, results: list[list[dict]]) -> dict[str, float]:
    """``process_results``: unbiased pass@1 over this doc's repeats (0/1 with one repeat)."""
    judged = _single_request(results)
    return {"pass@1": code_exec.pass_at_k(len(judged), sum(j["correct"] for j in judged), 1)}


__all__ = [
    "ExecSettings",
    "configure",
    "current_settings",
    "sandbox_manifest",
    "load_gsm8k",
    "load_humaneval",
    "load_humaneval_plus",
    "gsm8k_judge",
    "gsm8k_results",
    "humaneval_judge",
    "humaneval_plus_judge",
    "humaneval_instruct_judge",
    "humaneval_plus_instruct_judge",
    "pass_at_1_results",
    "completion_program",
    "instruct_program",
    "named_rows",
    "problems",
]
