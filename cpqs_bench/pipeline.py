"""The stage executor (the idea of datatrove's ``executor/base.py``): a step only says what it reads and how it runs.

A :class:`Step` (one class per stage kind in :mod:`cpqs_bench.stages`) declares its ``inputs()`` — the config sections
it uses and the *content* keys of the upstream artifacts it consumes — the ``code`` it runs (entry module names; see
:mod:`cpqs_bench.code_version`) and the ``files`` it reads besides them (task YAMLs, evaluation data). It implements
``run(stage, tracker) -> dict`` that writes its outputs into ``stage.path`` and returns extra manifest fields, and
``collect(stage)`` that turns a finished stage directory into the artifact later steps consume.

The :class:`Pipeline` owns everything else, for ``reproduce`` and for every verb alike (a verb runs its one step
through a one-step pipeline): the input hash (inputs + code version), the run directory, the manifest with the
sha256 of every output file, the ``DONE`` marker (last), verifying a DONE stage's outputs before reusing it (a
changed or missing file re-runs the stage, with a line naming it), numbering ``[stage i/N]`` over the steps it was
given with an ETA, the W&B tracker, and the per-stage time breakdown (compute vs model loading) printed at the end.
No library function writes ``DONE`` or ``manifest.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from cpqs_bench import rundir
from cpqs_bench.code_version import code_version

if TYPE_CHECKING:
    from cpqs_bench.publish.tracking import Tracker


T = TypeVar("T")


class Step(Protocol):
    # read-only members (a step may hold them as plain attributes of a narrower type, e.g. ``code`` as a list)
    @property
    def name(self) -> str: ...  # run-directory name, e.g. "score/ifd"

    @property
    def label(self) -> str: ...  # what the progress line says, e.g. "score ifd seed 1"

    @property
    def code(self) -> Sequence[str]: ...  # entry modules whose import closure computes the output

    @property
    def files(self) -> Sequence[Path]: ...  # extra files read (task YAMLs, evaluation data)

    @property
    def track(self) -> bool: ...  # open a W&B tracker for this stage

    output: Any  # the artifact, set by the executor once the stage is finished (or verified)

    def inputs(self) -> dict[str, Any]: ...  # called when every upstream step has its output

    def run(self, stage: rundir.Stage, tracker: Tracker | None) -> dict[str, Any]: ...

    def collect(self, stage: rundir.Stage) -> Any: ...


class StageError(OSError):
    """An OS error inside a stage, with the stage named (the CLI prints it as one line)."""


@dataclass
class Given(Generic[T]):
    """An artifact that exists already (a verb's input read at the edge): stands where an upstream step would."""

    output: T


@dataclass
class Always:
    """A step with no run directory of its own (leaderboard, publish): always runs; counted, timed and announced."""

    label: str
    fn: Callable[[], Any]
    output: Any = None


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
    n_stages: int = 0
    log: Callable[[str], None] = print
    tracker_factory: Callable[[str], Any] | None = None
    load_clock: Callable[[], float] = lambda: 0.0  # seconds spent loading models so far (the model cache's)
    verify: str = "full"  # reuse check of a DONE stage: "full" (size + sha256), "size", "off"
    main_process: bool = True  # under `accelerate launch`, only the main process marks stages done
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    i: int = 0

    def run_all(self, steps: Sequence[Step | Always]) -> None:
        """Run every step in order (upstream before downstream); the stage count is the number of steps."""
        self.n_stages = max(self.n_stages, self.i + len(steps))
        for step in steps:
            if isinstance(step, Always):
                step.output = self.step_always(step.label, step.fn)
            else:
                self.run(step)

    def stage_for(self, step: Step) -> rundir.Stage:
        inputs = {**step.inputs(), "code": code_version(step.code, step.files) if step.code else None}
        return rundir.stage(self.root, self.experiment, step.name, inputs)

    def announce(self, label: str, status: str, where: object = "") -> None:
        self.i += 1
        elapsed = time.monotonic() - self.t0
        eta = ""
        if self.ran and self.i > 1:
            per = sum(t.seconds for t in self.timings if not t.skipped) / max(1, len(self.ran))
            eta = f", ETA ~{per * (self.n_stages - self.i + 1) / 60:.1f} min"
        n = max(self.n_stages, self.i)
        self.log(f"[stage {self.i}/{n}] {label}: {status}  ({elapsed / 60:.1f} min elapsed{eta})  {where}")

    def run(self, step: Step) -> Any:
        """Run ``step`` unless its stage directory is DONE and its outputs verify; return its artifact."""
        label = step.label or step.name
        st = self.stage_for(step)
        reason = st.reuse_problem(self.verify) if st.done else None
        if st.done and reason is None:
            self.announce(label, "skip (DONE)", st.path)
            self.skipped.append(label)
            self.timings.append(Timing(label, 0.0, 0.0, True))
            step.output = step.collect(st)
            return step.output
        if reason is not None:
            self.log(f"warning: {st.path}: {reason}; re-running the stage")
            st.invalidate()
        self.announce(label, "run", st.path)
        t = time.monotonic()
        l0 = self.load_clock()
        st.begin()
        tracker = self._tracker(step.name) if step.track else None
        try:
            if tracker is not None:
                with tracker as tr:
                    extra = step.run(st, tr)
            else:
                extra = step.run(st, None)
        except OSError as exc:  # disk full, read-only, missing file: one line naming the stage (and the path)
            where = getattr(exc, "filename", None) or getattr(exc, "path", None)
            raise StageError(
                f"stage {label} ({st.path}): {exc}" + (f" [{where}]" if where and str(where) not in str(exc) else "")
            ) from exc
        seconds = time.monotonic() - t
        if not self.main_process:  # another rank scored its slice; the main process merges and records
            return None
        st.finish(seconds=round(seconds, 3), **(extra or {}))
        self.ran.append(label)
        self.timings.append(Timing(label, seconds, self.load_clock() - l0, False))
        step.output = step.collect(st)
        return step.output

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
