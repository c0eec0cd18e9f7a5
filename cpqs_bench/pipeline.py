"""The stage executor (the idea of datatrove's ``executor/base.py``): a step only says what it reads and how it runs.

A :class:`Step` declares its ``inputs`` (config sections, upstream hashes, data sha256s), the ``code`` it runs (entry
module names; see :mod:`cpqs_bench.code_version`) and the ``files`` it reads besides them (task YAMLs, evaluation
data), and implements ``run(stage, tracker) -> dict`` that writes its outputs into ``stage.path`` and returns extra
manifest fields. The :class:`Pipeline` owns everything else: the input hash (inputs + code version), the run
directory, skipping a DONE stage, announcing ``[stage i/N]`` with an ETA, the W&B tracker, the manifest and the DONE
marker (last), and the per-stage time breakdown (compute vs model loading) printed at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from cpqs_bench import rundir
from cpqs_bench.code_version import code_version


class Step(Protocol):
    name: str  # run-directory name, e.g. "score/ifd"
    inputs: dict[str, Any]
    code: Sequence[str]  # entry modules whose import closure computes the output
    files: Sequence[Path]  # extra files read (task YAMLs, evaluation data)

    def run(self, stage: rundir.Stage, tracker: Any) -> dict[str, Any]: ...


@dataclass
class FnStep:
    """A step from a function: the common case (``run`` closes over its upstream artifacts)."""

    name: str
    inputs: dict[str, Any]
    fn: Callable[[rundir.Stage, Any], dict[str, Any] | None]
    code: Sequence[str] = ()
    files: Sequence[Path] = ()
    track: bool = True

    def run(self, stage: rundir.Stage, tracker: Any) -> dict[str, Any]:
        return self.fn(stage, tracker) or {}


@dataclass
class Timing:
    name: str
    seconds: float
    load_seconds: float
    skipped: bool


@dataclass
class Pipeline:
    root: Path
    experiment: str
    n_stages: int
    log: Callable[[str], None] = print
    tracker_factory: Callable[[str], Any] | None = None
    load_clock: Callable[[], float] = lambda: 0.0  # seconds spent loading models so far (the model cache's)
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    i: int = 0

    def stage_for(self, step: Step) -> rundir.Stage:
        inputs = {**step.inputs, "code": code_version(step.code, step.files) if step.code else None}
        return rundir.stage(self.root, self.experiment, step.name, inputs)

    def announce(self, label: str, status: str, where: Any = "") -> None:
        self.i += 1
        elapsed = time.monotonic() - self.t0
        eta = ""
        if self.ran and self.i > 1:
            per = sum(t.seconds for t in self.timings if not t.skipped) / max(1, len(self.ran))
            eta = f", ETA ~{per * (self.n_stages - self.i + 1) / 60:.1f} min"
        self.log(f"[stage {self.i}/{self.n_stages}] {label}: {status}  ({elapsed / 60:.1f} min elapsed{eta})  {where}")

    def run(self, step: Step, label: str | None = None) -> rundir.Stage:
        """Run ``step`` unless its stage directory is DONE; return the (finished) stage."""
        label = label or step.name
        st = self.stage_for(step)
        self.announce(label, "skip (DONE)" if st.done else "run", st.path)
        if st.done:
            self.skipped.append(label)
            self.timings.append(Timing(label, 0.0, 0.0, True))
            return st
        t = time.monotonic()
        l0 = self.load_clock()
        st.begin()
        tracker = self._tracker(step.name) if getattr(step, "track", True) else None
        if tracker is not None:
            with tracker as tr:
                extra = step.run(st, tr)
        else:
            extra = step.run(st, None)
        seconds = time.monotonic() - t
        st.finish(seconds=round(seconds, 3), **extra)
        self.ran.append(label)
        self.timings.append(Timing(label, seconds, self.load_clock() - l0, False))
        return st

    def step_always(self, label: str, fn: Callable[[], Any]) -> Any:
        """A step with no run directory of its own (leaderboard, publish): always runs, timed and announced."""
        self.announce(label, "run")
        t, l0 = time.monotonic(), self.load_clock()
        out = fn()
        self.ran.append(label)
        self.timings.append(Timing(label, time.monotonic() - t, self.load_clock() - l0, False))
        return out

    def _tracker(self, name: str) -> Any:
        return self.tracker_factory(name.replace("/", "-")) if self.tracker_factory else None

    def breakdown(self) -> list[str]:
        """Per-stage wall time, model-loading time, and the totals; fixed overhead = loading + skipped bookkeeping."""
        total = time.monotonic() - self.t0
        lines = [f"{'stage':<34} {'wall s':>8} {'load s':>8}"]
        for t in self.timings:
            lines.append(f"{t.name:<34} {t.seconds:8.1f} {t.load_seconds:8.1f}" + ("  (skipped)" if t.skipped else ""))
        staged = sum(t.seconds for t in self.timings)
        load = sum(t.load_seconds for t in self.timings)
        overhead = load + max(0.0, total - staged)
        lines.append(
            f"{'total':<34} {total:8.1f} {load:8.1f}   fixed overhead (model loads + pipeline) "
            f"{overhead:.1f} s = {overhead / total:.1%}"
            if total > 0
            else "total 0"
        )
        return lines
