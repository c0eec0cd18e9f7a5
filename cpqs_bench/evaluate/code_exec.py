"""HumanEval / HumanEval+ functional-correctness checks with EvalPlus semantics, run in :mod:`.sandbox`.

* HumanEval (base): the program is ``code + test + check(entry_point)`` exactly as openai/human-eval builds it.
* HumanEval+: like EvalPlus, expected outputs come from running the canonical solution on ``base_input`` and
  ``plus_input`` (in the sandbox, timed per input), cached on disk keyed by the dataset file's sha256. A candidate
  passes when every output matches: exact equality, else ``np.testing.assert_allclose`` with the task's ``atol``
  (``atol == 0`` and float outputs -> 1e-6), with ``find_zero`` judged by ``|poly(xs, out)| <= atol``. Each input has
  the time limit ``max(min_time_limit, gt_time_limit_factor * canonical_time)`` (EvalPlus defaults 4.0 s and 4.0).
* A sample passes only if its program reaches the end of the checks and prints a random per-run sentinel, so
  ``sys.exit(0)`` / ``os._exit(0)`` before the checks fail.
* A timed-out sample is re-run once alone after the parallel pass, to tell machine contention from a real hang.
"""

from __future__ import annotations

import json
import math
import secrets
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from cpqs_bench.data.mirror import resolve_path
from cpqs_bench.evaluate.sandbox import Sandbox, SandboxLimits, SandboxResult
from cpqs_bench.io import iter_jsonl_objects, read_json, sha256_file, write_bytes, write_json

if TYPE_CHECKING:
    from rich.progress import Progress

DEFAULT_MIN_TIME_LIMIT = 4.0  # EvalPlus config.DEFAULT_MIN_TIME_LIMIT
DEFAULT_GT_TIME_LIMIT_FACTOR = 4.0  # EvalPlus config.DEFAULT_GT_TIME_LIMIT_FACTOR
TIME_LIMIT_EXIT = 3  # runner exit code: an input exceeded its per-input time limit
_STARTUP_SLACK_S = 10.0
GT_FILE_LIMIT = 512 << 20

# Runner executed inside the sandbox. It reads its job and deletes the files *before* running untrusted code, runs
# the code in a separate namespace (``__name__`` is not "__main__", as in human-eval/EvalPlus exec), swallows the
# candidate's stdout like EvalPlus' swallow_io, and prints the sentinel only after every check passed.
_RUNNER = r"""
import json, math, os, pickle, signal, sys, time, zlib
job = json.load(open("job.json")); os.unlink("job.json")
expected = None
if os.path.exists("expected.pkl.z"):
    expected = pickle.loads(zlib.decompress(open("expected.pkl.z", "rb").read())); os.unlink("expected.pkl.z")
sentinel = job.pop("sentinel")
real_stdout = sys.stdout
sys.stdout = open(os.devnull, "w")

class _TimeLimit(BaseException):
    pass

def _alarm(signum, frame):
    raise _TimeLimit()

def _is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)):
        return all(isinstance(i, float) for i in x)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, np.ndarray):
        return x.dtype == np.float64 or x.dtype == np.float32
    return False

def _poly(xs, x):
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))

def _check(out, exp, inp, atol, entry):
    if entry == "find_zero":
        assert abs(_poly(*inp, out)) <= atol, "find_zero: |poly(xs, out)| > atol"
        return
    exact = out == exp
    if atol == 0 and _is_floats(exp):
        atol = 1e-6
    if not exact and atol != 0:
        import numpy as np
        np.testing.assert_allclose(out, exp, atol=atol)
    else:
        assert exact, "output differs from the expected output"

def _call(fn, inp, limit):
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return fn(*inp)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

signal.signal(signal.SIGALRM, _alarm)
ns = {"__name__": "solution", "__builtins__": __builtins__}
mode = job["mode"]
try:
    if mode == "base":
        exec(compile(job["code"] + "\n" + job["test"] + "\n" + "check(" + job["entry_point"] + ")\n",
                     "solution.py", "exec"), ns)
    else:
        exec(compile(job["code"], "solution.py", "exec"), ns)
        fn = ns[job["entry_point"]]
        if mode == "groundtruth":
            import copy
            outs, times = [], []
            for inp in job["inputs"]:
                t0 = time.time()
                outs.append(_call(fn, copy.deepcopy(inp), job["limit"]))
                times.append(time.time() - t0)
            open("expected.out.pkl.z", "wb").write(zlib.compress(pickle.dumps(outs), 6))
            json.dump(times, open("times.json", "w"))
        else:
            assert len(expected) == len(job["inputs"]), "expected outputs do not match the inputs"
            for i, inp in enumerate(job["inputs"]):
                out = _call(fn, inp, job["time_limits"][i])
                _check(out, expected[i], inp, job["atol"], job["entry_point"])
except _TimeLimit:
    sys.stderr.write("per-input time limit exceeded\n")
    sys.stderr.flush()
    os._exit(3)
sys.stdout = real_stdout
print(sentinel, flush=True)
"""


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str
    atol: float = 0.0
    base_input: list | None = None
    plus_input: list | None = None

    @property
    def inputs(self) -> list:
        return list(self.base_input or []) + list(self.plus_input or [])


def load_problems(plus: bool, path: str | Path | None = None) -> dict[str, Problem]:
    """Read HumanEval (``plus=False``) or HumanEval+ from the mirror (gzip JSONL); errors name file and line."""
    path = Path(path) if path is not None else resolve_path("humaneval_plus" if plus else "humaneval")
    problems: dict[str, Problem] = {}
    for lineno, row in iter_jsonl_objects(path):
        try:
            p = Problem(
                row["task_id"],
                row["prompt"],
                row["entry_point"],
                row["canonical_solution"],
                row.get("test", ""),
                float(row.get("atol") or 0.0),
                row.get("base_input") if plus else None,
                row.get("plus_input") if plus else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{lineno}: malformed problem row ({exc!r})") from exc
        if plus and p.base_input is None:
            raise ValueError(f"{path}:{lineno}: HumanEval+ row {p.task_id} has no base_input")
        problems[p.task_id] = p
    return problems


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), computed as a stable product."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task, got n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def sample_code(sample: dict, problem: Problem) -> str:
    """EvalPlus rule: a ``solution`` is the full program; a ``completion`` is appended to the prompt."""
    if "solution" in sample and sample["solution"] is not None:
        return str(sample["solution"])
    if "completion" in sample and sample["completion"] is not None:
        return problem.prompt + str(sample["completion"])
    raise ValueError(f"sample for {problem.task_id} has neither 'solution' nor 'completion'")


# ----------------------------------------------------------------------------------------------------------------------
# expected outputs (HumanEval+)
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroundTruth:
    expected_blob: bytes  # zlib-compressed pickle, opaque to the parent: only ever unpickled inside the sandbox
    times: list[float]


def _gt_cache_files(cache_dir: Path, dataset_sha: str, task_id: str) -> tuple[Path, Path]:
    d = cache_dir / f"humanevalplus-expected-{dataset_sha[:16]}"
    stem = task_id.replace("/", "_")
    return d / f"{stem}.pkl.z", d / f"{stem}.times.json"


def compute_ground_truth(problem: Problem, sandbox: Sandbox, timeout_s: float = 300.0) -> GroundTruth:
    """Run the canonical solution on all inputs in the sandbox, timing each call like EvalPlus' trusted_exec."""
    job: dict[str, Any] = {
        "mode": "groundtruth",
        "code": problem.prompt + problem.canonical_solution,
        "entry_point": problem.entry_point,
        "inputs": problem.inputs,
        "limit": timeout_s,
        "sentinel": secrets.token_hex(16),
    }
    # Some expected outputs are large (HumanEval/15: ~150 MB pickled, compressible), hence the raised file limits.
    res = sandbox.run(
        _RUNNER,
        {"job.json": json.dumps(job)},
        timeout_s=timeout_s,
        collect=("expected.out.pkl.z", "times.json"),
        fsize_bytes=GT_FILE_LIMIT,
        tmpfs_bytes=GT_FILE_LIMIT,
    )
    if not _reached_end(res, job["sentinel"]) or "expected.out.pkl.z" not in res.files or "times.json" not in res.files:
        raise RuntimeError(
            f"canonical solution of {problem.task_id} failed in the sandbox "
            f"(rc={res.returncode}, timed_out={res.timed_out}): {res.stderr[-2000:]}"
        )
    times = json.loads(res.files["times.json"])
    if len(times) != len(problem.inputs):
        raise RuntimeError(f"{problem.task_id}: {len(times)} timings for {len(problem.inputs)} inputs")
    return GroundTruth(res.files["expected.out.pkl.z"], [float(t) for t in times])


def ground_truths(
    problems: Iterable[Problem],
    sandbox: Sandbox,
    cache_dir: str | Path | None,
    dataset_path: str | Path | None = None,
    workers: int = 2,
    progress: Callable[[str], None] | None = None,
) -> dict[str, GroundTruth]:
    """Expected outputs per task, from the on-disk cache when present (resumable), else computed and cached."""
    problems = list(problems)
    dataset_sha = sha256_file(dataset_path or resolve_path("humaneval_plus")) if cache_dir is not None else ""
    out: dict[str, GroundTruth] = {}
    todo: list[Problem] = []
    for p in problems:
        if cache_dir is not None:
            pkl, tms = _gt_cache_files(Path(cache_dir), dataset_sha, p.task_id)
            if pkl.exists() and tms.exists():
                out[p.task_id] = GroundTruth(pkl.read_bytes(), [float(t) for t in read_json(tms)])
                continue
        todo.append(p)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(compute_ground_truth, p, sandbox): p for p in todo}
        for fut in as_completed(futures):
            p = futures[fut]
            gt = fut.result()
            if cache_dir is not None:
                pkl, tms = _gt_cache_files(Path(cache_dir), dataset_sha, p.task_id)
                write_bytes(pkl, gt.expected_blob)
                write_json(tms, gt.times)
            out[p.task_id] = gt
            if progress:
                progress(p.task_id)
    return out


# ----------------------------------------------------------------------------------------------------------------------
# checking samples
# ----------------------------------------------------------------------------------------------------------------------


def _reached_end(res: SandboxResult, sentinel: str) -> bool:
    """Pass condition: clean exit 0 *and* the sentinel line printed after the last check."""
    return res.ok and sentinel in res.stdout.splitlines()


def _classify(res: SandboxResult, sentinel: str) -> tuple[bool, str]:
    if _reached_end(res, sentinel):
        return True, "pass"
    if res.timed_out or res.returncode == TIME_LIMIT_EXIT:
        return False, "timeout"
    if res.output_limited:
        return False, "output_limit"
    if res.returncode == 0:
        return False, "early_exit"  # exited 0 without reaching the end of the checks
    return False, "fail"


@dataclass(frozen=True)
class TimeLimits:
    """How long a program may run: ``timeout_s`` for a HumanEval check (and the default sandbox's limit); for
    HumanEval+ each input's limit ``max(min_time_limit, gt_time_limit_factor * canonical time)``, the run capped at
    ``max_timeout_s``."""

    timeout_s: float = 20.0
    min_time_limit: float = DEFAULT_MIN_TIME_LIMIT
    gt_time_limit_factor: float = DEFAULT_GT_TIME_LIMIT_FACTOR
    max_timeout_s: float = 300.0


def _time_limits(gt: GroundTruth, min_time_limit: float, factor: float) -> list[float]:
    return [max(min_time_limit, factor * t) for t in gt.times]


def check_sample(
    code: str,
    problem: Problem,
    sandbox: Sandbox,
    *,
    plus: bool,
    gt: GroundTruth | None = None,
    limits: TimeLimits = TimeLimits(),
) -> dict[str, Any]:
    """Run one program against one task (within ``limits``); returns {passed, status, detail, wall_s}."""
    sentinel = secrets.token_hex(16)
    files: dict[str, str | bytes]
    if plus:
        if gt is None:
            raise ValueError(f"{problem.task_id}: HumanEval+ check needs ground-truth outputs")
        per_input = _time_limits(gt, limits.min_time_limit, limits.gt_time_limit_factor)
        job = {
            "mode": "plus",
            "code": code,
            "entry_point": problem.entry_point,
            "inputs": problem.inputs,
            "time_limits": per_input,
            "atol": problem.atol,
            "sentinel": sentinel,
        }
        files = {"job.json": json.dumps(job), "expected.pkl.z": gt.expected_blob}
        timeout = min(limits.max_timeout_s, sum(per_input) + _STARTUP_SLACK_S)
    else:
        job = {
            "mode": "base",
            "code": code,
            "test": problem.test,
            "entry_point": problem.entry_point,
            "sentinel": sentinel,
        }
        files = {"job.json": json.dumps(job)}
        timeout = limits.timeout_s
    res = sandbox.run(_RUNNER, files, timeout_s=timeout)
    passed, status = _classify(res, sentinel)
    detail = "" if passed else (res.stderr.strip().splitlines() or [""])[-1][:500]
    return {"passed": passed, "status": status, "detail": detail, "wall_s": round(res.wall_s, 3)}


def evaluate_humaneval(
    samples: list[dict],
    plus: bool,
    workers: int = 2,
    *,
    sandbox: Sandbox | None = None,
    problems: dict[str, Problem] | None = None,
    cache_dir: str | Path | None = None,
    dataset_path: str | Path | None = None,
    limits: TimeLimits = TimeLimits(),
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Check every sample (``task_id`` + ``solution`` or ``completion``); one result dict per sample, in order.
    ``limits``: how long each may run (:class:`TimeLimits`).

    Result: {task_id, sample_index, passed, status, detail, wall_s, retried}. ``status`` is one of pass, fail,
    timeout, output_limit, early_exit. Samples that time out in the parallel pass are re-run once, alone.
    """
    sandbox = sandbox or Sandbox(SandboxLimits(timeout_s=limits.timeout_s))
    problems = problems if problems is not None else load_problems(plus, dataset_path)
    unknown = sorted({str(s.get("task_id")) for s in samples} - set(problems))
    if unknown:
        raise KeyError(f"unknown task ids: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
    codes = [sample_code(s, problems[s["task_id"]]) for s in samples]
    gts: dict[str, GroundTruth] = {}
    if plus:
        needed = [problems[t] for t in dict.fromkeys(s["task_id"] for s in samples)]
        gts = ground_truths(needed, sandbox, cache_dir, dataset_path, workers)

    def one(i: int) -> dict[str, Any]:
        task = samples[i]["task_id"]
        r = check_sample(
            codes[i],
            problems[task],
            sandbox,
            plus=plus,
            gt=gts.get(task),
            limits=limits,
        )
        return {"task_id": task, "sample_index": i, **r, "retried": False}

    results: list[dict[str, Any] | None] = [None] * len(samples)
    with _progress(progress, len(samples), "HumanEval+" if plus else "HumanEval") as advance:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {pool.submit(one, i): i for i in range(len(samples))}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                advance()
    for i, r in enumerate(results):
        assert r is not None
        if r["status"] == "timeout":  # re-run alone: no contention from the other worker
            again = one(i)
            again["retried"] = True
            again["first_status"] = r["status"]
            results[i] = again
    return results  # type: ignore[return-value]


class _progress:
    """Rich progress bar when asked (long stages), a no-op otherwise."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled, self.total, self.label = enabled, total, label
        self._bar: Progress | None = None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.progress import Progress

        bar = self._bar = Progress(transient=False)
        bar.start()
        task = bar.add_task(self.label, total=self.total)
        return lambda: bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """pass@1 over tasks (mean over tasks of the per-task unbiased estimate), plus counts."""
    by_task: dict[str, list[bool]] = {}
    for r in results:
        by_task.setdefault(r["task_id"], []).append(bool(r["passed"]))
    per_task = {t: pass_at_k(len(v), sum(v), 1) for t, v in by_task.items()}
    return {
        "pass@1": (sum(per_task.values()) / len(per_task)) if per_task else math.nan,
        "n_tasks": len(per_task),
        "n_samples": len(results),
        "n_passed": sum(bool(r["passed"]) for r in results),
    }
