"""Run directories: ``runs/<experiment>/<stage>/<input-hash>/`` with ``manifest.json`` and a ``DONE`` marker last.

A stage's directory name is the hash of everything that determines its output (config section, upstream content
hashes, data sha256s, model revision, code version). If that directory holds ``DONE`` and every output file recorded
in its manifest still has its size and sha256, the stage is complete and is skipped; a changed input hashes to a new
directory, so stale results are never reused, and a changed output file re-runs the stage. Partial work inside an
unfinished directory is the stage's own resume state (shards, checkpoints), written atomically.

Only :mod:`cpqs_bench.pipeline` calls :meth:`Stage.finish` (the manifest and ``DONE``); one process at a time holds a
run directory (:func:`lock`).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpqs_bench import provenance
from cpqs_bench.io import read_json, sha256_file, stable_hash, write_json, write_text

DONE = "DONE"
MANIFEST = "manifest.json"
INPUTS = "inputs.json"
# not outputs: the executor's own files, and resume/scratch state a stage may leave (feature caches can be GBs)
UNRECORDED_DIRS = ("work", "checkpoints", "cache")


class RunDirLocked(RuntimeError):
    """Another process holds the run directory."""


@dataclass(frozen=True)
class Stage:
    path: Path
    experiment: str
    stage: str
    inputs: dict[str, Any]
    input_hash: str

    @property
    def done(self) -> bool:
        return (self.path / DONE).exists()

    def begin(self) -> Stage:
        self.path.mkdir(parents=True, exist_ok=True)
        inputs_file = self.path / INPUTS
        if not inputs_file.exists():
            write_json(inputs_file, self.inputs)
        return self

    def file(self, name: str) -> Path:
        return self.path / name

    def output_files(self) -> list[Path]:
        """Every file the stage wrote, but the executor's own and the resume/scratch folders."""
        out = []
        for p in sorted(self.path.rglob("*")):
            rel = p.relative_to(self.path)
            if not p.is_file() or rel.parts[0] in UNRECORDED_DIRS or str(rel) in (DONE, MANIFEST, INPUTS):
                continue
            out.append(p)
        return out

    def finish(self, **extra: object) -> dict[str, Any]:
        """Write the manifest (with size + sha256 of every output file), then ``DONE`` (last: its presence means
        every other file is complete)."""
        outputs = {
            str(p.relative_to(self.path)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in self.output_files()
        }
        manifest = {
            "experiment": self.experiment,
            "stage": self.stage,
            "input_hash": self.input_hash,
            "inputs": self.inputs,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **provenance.collect(),
            **extra,
            "outputs": outputs,
        }
        write_json(self.path / MANIFEST, manifest)
        write_text(self.path / DONE, self.input_hash + "\n")
        return manifest

    def manifest(self) -> dict[str, Any]:
        return read_json(self.path / MANIFEST)

    def reuse_problem(self, mode: str = "full") -> str | None:
        """Why a DONE stage may not be reused (None: it may). ``mode``: "full" checks the size and sha256 of every
        recorded output, "size" sizes only, "off" trusts DONE."""
        if mode == "off":
            return None
        try:
            recorded = self.manifest().get("outputs")
        except (OSError, ValueError) as exc:
            return f"its manifest cannot be read ({exc})"
        if recorded is None:
            return "its manifest records no output checksums (written before outputs were verified)"
        for rel, facts in recorded.items():
            p = self.path / rel
            if not p.is_file():
                return f"output {rel} is missing"
            if p.stat().st_size != facts["size"]:
                return f"output {rel} has {p.stat().st_size} bytes, {facts['size']} when the stage finished"
            if mode == "full" and sha256_file(p) != facts["sha256"]:
                return f"output {rel} changed since the stage finished (sha256 differs)"
        return None

    def invalidate(self) -> None:
        """Remove the marker and manifest of a stage whose outputs no longer verify (its files are rewritten)."""
        for name in (DONE, MANIFEST):
            (self.path / name).unlink(missing_ok=True)


def stage(root: str | Path, experiment: str, stage_name: str, inputs: dict[str, Any]) -> Stage:
    h = stable_hash(inputs)
    return Stage(Path(root) / experiment / stage_name / h, experiment, stage_name, inputs, h)


@contextmanager
def lock(run_dir: str | Path, *, wait: bool = False) -> Iterator[Path]:
    """Hold ``run_dir/.lock`` (an OS file lock, released when the process dies) for the whole run: a second process
    on the same run directory exits with a clear message, or waits for the first with ``wait=True``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunDirLocked(
                f"{run_dir} is in use by {holder}: one run per directory (wait for it, pass --wait, or choose "
                "another experiment.output_dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
