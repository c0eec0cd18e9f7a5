"""HumanEval / HumanEval+ execution: canonical solutions pass, wrong ones fail, EvalPlus comparison rules hold."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("CPQS_DATA_MIRROR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cpqs_bench.evaluate import code_exec  # noqa: E402
from cpqs_bench.evaluate.code_exec import (  # noqa: E402
    TimeLimits,
    evaluate_humaneval,
    load_problems,
    pass_at_k,
    summarize,
)
from cpqs_bench.evaluate.sandbox import Sandbox, SandboxLimits  # noqa: E402

# Cheap tasks covering: plain ints, float atol (2), find_zero (32), tuples (8), strings (163).
SUBSET = ["HumanEval/0", "HumanEval/2", "HumanEval/8", "HumanEval/32", "HumanEval/163"]


@pytest.fixture(scope="module")
def box() -> Sandbox:
    return Sandbox(SandboxLimits(timeout_s=30.0), allow_weaker=True)


@pytest.fixture(scope="module")
def problems_base():
    return load_problems(False)


@pytest.fixture(scope="module")
def problems_plus():
    return load_problems(True)


@pytest.fixture(scope="module")
def gt_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gt-cache")


def _canonical(problems, ids):
    return [{"task_id": t, "completion": problems[t].canonical_solution} for t in ids]


def test_loads_all_164_problems(problems_base, problems_plus):
    assert len(problems_base) == 164 and len(problems_plus) == 164
    assert problems_plus["HumanEval/32"].atol == pytest.approx(1e-4)
    assert len(problems_plus["HumanEval/0"].plus_input) > 0


def test_malformed_problem_file_names_line(tmp_path):
    bad = tmp_path / "he.jsonl"
    bad.write_text('{"task_id": "x", "prompt": "", "entry_point": "f", "canonical_solution": "", "test": ""}\n{oops\n')
    with pytest.raises(ValueError, match=r"he\.jsonl:2"):
        load_problems(False, bad)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (10, 0, 1, 0.0),
        (10, 10, 1, 1.0),
        (5, 2, 1, 0.4),
        (4, 1, 2, 0.5),
        (10, 3, 5, 1 - math.comb(7, 5) / math.comb(10, 5)),
        (3, 2, 2, 1.0),
    ],
)
def test_pass_at_k_matches_closed_form(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 5)


def test_canonical_subset_passes_base(box, problems_base):
    res = evaluate_humaneval(_canonical(problems_base, SUBSET), plus=False, sandbox=box, problems=problems_base)
    assert [r["status"] for r in res] == ["pass"] * len(SUBSET)
    assert summarize(res)["pass@1"] == 1.0


def test_canonical_subset_passes_plus_and_caches_expected_outputs(box, problems_plus, gt_cache, monkeypatch):
    samples = _canonical(problems_plus, SUBSET)
    res = evaluate_humaneval(samples, plus=True, sandbox=box, problems=problems_plus, cache_dir=gt_cache)
    assert [r["status"] for r in res] == ["pass"] * len(SUBSET), res
    cached = sorted(p.name for p in gt_cache.rglob("*.pkl.z"))
    assert cached == sorted(t.replace("/", "_") + ".pkl.z" for t in SUBSET)
    sha = code_exec.sha256_file(code_exec.resolve_path("humaneval_plus"))
    assert all(sha[:16] in str(p.parent) for p in gt_cache.rglob("*.pkl.z"))

    def must_not_run(*a, **k):
        raise AssertionError("expected outputs should come from the cache")

    monkeypatch.setattr(code_exec, "compute_ground_truth", must_not_run)
    again = evaluate_humaneval(samples, plus=True, sandbox=box, problems=problems_plus, cache_dir=gt_cache)
    assert all(r["passed"] for r in again)


WRONG = {
    "HumanEval/0": "    return False\n",  # constant answer
    "HumanEval/2": "    return round(number % 1.0, 2)\n",  # beyond atol 1e-6
    "HumanEval/8": "    return [sum(numbers), 1]\n",  # list instead of tuple, wrong product
    "HumanEval/32": "    return 0.5\n",  # not a root
    "HumanEval/163": "    return list(range(min(a, b), max(a, b) + 1))\n",  # includes odd digits
}


@pytest.mark.parametrize("plus", [False, True])
def test_wrong_solutions_score_zero(box, problems_base, problems_plus, gt_cache, plus):
    problems = problems_plus if plus else problems_base
    samples = [{"task_id": t, "completion": body} for t, body in WRONG.items()]
    res = evaluate_humaneval(samples, plus=plus, sandbox=box, problems=problems, cache_dir=gt_cache)
    assert [r["passed"] for r in res] == [False] * len(WRONG), res
    assert summarize(res)["pass@1"] == 0.0


@pytest.mark.parametrize("plus", [False, True])
@pytest.mark.parametrize("exit_call", ["import sys; sys.exit(0)", "import os; os._exit(0)"])
def test_exit_zero_before_the_checks_fails(box, problems_base, problems_plus, gt_cache, plus, exit_call):
    problems = problems_plus if plus else problems_base
    p = problems["HumanEval/0"]
    solution = p.prompt + p.canonical_solution + "\n" + exit_call + "\n"
    res = evaluate_humaneval(
        [{"task_id": p.task_id, "solution": solution}], plus=plus, sandbox=box, problems=problems, cache_dir=gt_cache
    )
    assert not res[0]["passed"] and res[0]["status"] in {"early_exit", "fail"}


def test_list_instead_of_tuple_fails_plus_like_evalplus(box, problems_plus, gt_cache):
    body = "    s, p = 0, 1\n    for n in numbers:\n        s += n\n        p *= n\n    return [s, p]\n"
    res = evaluate_humaneval(
        [{"task_id": "HumanEval/8", "completion": body}],
        plus=True,
        sandbox=box,
        problems=problems_plus,
        cache_dir=gt_cache,
    )
    assert not res[0]["passed"]


def test_float_within_atol_and_any_valid_find_zero_root_pass(box, problems_plus, gt_cache):
    # A stricter Newton tolerance lands on different roots/points than the canonical solution for hundreds of
    # inputs; EvalPlus' find_zero oracle accepts any x with |poly(xs, x)| <= atol.
    p32 = problems_plus["HumanEval/32"]
    stricter = p32.canonical_solution.replace("1e-5", "1e-8")
    assert stricter != p32.canonical_solution
    samples = [
        {"task_id": "HumanEval/2", "completion": "    return number - int(number)\n"},
        {"task_id": "HumanEval/32", "completion": stricter},
        {"task_id": "HumanEval/32", "completion": stricter.replace("return x", "return x + 1.0")},
    ]
    res = evaluate_humaneval(samples, plus=True, sandbox=box, problems=problems_plus, cache_dir=gt_cache)
    assert [r["passed"] for r in res] == [True, True, False], res


def test_timeout_is_retried_alone(box, problems_base, problems_plus, gt_cache):
    hang = "    while True:\n        pass\n"
    t0 = time.monotonic()
    base = evaluate_humaneval(
        [{"task_id": "HumanEval/0", "completion": hang}],
        plus=False,
        sandbox=box,
        problems=problems_base,
        limits=TimeLimits(timeout_s=2.0),
    )
    plus = evaluate_humaneval(
        [{"task_id": "HumanEval/0", "completion": hang}],
        plus=True,
        sandbox=box,
        problems=problems_plus,
        cache_dir=gt_cache,
        limits=TimeLimits(min_time_limit=1.0),
    )
    for r in base + plus:
        assert r["status"] == "timeout" and r["retried"] and r["first_status"] == "timeout" and not r["passed"]
    assert time.monotonic() - t0 < 45


def test_time_limits_follow_evalplus_rule():
    gt = code_exec.GroundTruth(b"", [0.001, 2.0])
    assert code_exec._time_limits(gt, 4.0, 4.0) == [4.0, 8.0]


def test_unknown_task_id_is_an_error(box, problems_base):
    with pytest.raises(KeyError, match="HumanEval/999"):
        evaluate_humaneval(
            [{"task_id": "HumanEval/999", "completion": ""}], plus=False, sandbox=box, problems=problems_base
        )


@pytest.mark.slow
@pytest.mark.parametrize("plus", [False, True])
def test_all_164_canonical_solutions_pass(plus, tmp_path):
    problems = load_problems(plus)
    box = Sandbox(SandboxLimits(timeout_s=60.0))
    t0 = time.monotonic()
    res = evaluate_humaneval(
        _canonical(problems, list(problems)),
        plus=plus,
        sandbox=box,
        problems=problems,
        cache_dir=tmp_path,
        limits=TimeLimits(timeout_s=60.0),
    )
    failed = [(r["task_id"], r["status"], r["detail"]) for r in res if not r["passed"]]
    assert failed == [] and summarize(res)["pass@1"] == 1.0 and summarize(res)["n_tasks"] == 164
    print(f"{'HumanEval+' if plus else 'HumanEval'}: 164/164 canonical pass in {time.monotonic() - t0:.1f}s")
