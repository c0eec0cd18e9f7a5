"""Run directories: ``runs/<experiment>/<stage>/<input-hash>/`` with ``manifest.json`` and a ``DONE`` marker last.

A stage's directory name is the hash of everything that determines its output (config section, upstream hashes,
data sha256s, model revision). If that directory holds ``DONE``, the stage is complete and is skipped; a changed
input hashes to a new directory, so stale results are never reused. Partial work inside an unfinished directory is
the stage's own resume state (shards, checkpoints), written atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpqs_bench import provenance
from cpqs_bench.io import read_json, stable_hash, write_json, write_text

DONE = "DONE"
MANIFEST = "manifest.json"


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

    def begin(self) -> "Stage":
        self.path.mkdir(parents=True, exist_ok=True)
        inputs_file = self.path / "inputs.json"
        if not inputs_file.exists():
            write_json(inputs_file, self.inputs)
        return self

    def file(self, name: str) -> Path:
        return self.path / name

    def finish(self, **extra: Any) -> dict[str, Any]:
        """Write the manifest, then ``DONE`` (last: its presence means every other file is complete)."""
        manifest = {
            "experiment": self.experiment,
            "stage": self.stage,
            "input_hash": self.input_hash,
            "inputs": self.inputs,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **provenance.collect(),
            **extra,
        }
        write_json(self.path / MANIFEST, manifest)
        write_text(self.path / DONE, self.input_hash + "\n")
        return manifest

    def manifest(self) -> dict[str, Any]:
        return read_json(self.path / MANIFEST)


def stage(root: str | Path, experiment: str, stage_name: str, inputs: dict[str, Any]) -> Stage:
    h = stable_hash(inputs)
    return Stage(Path(root) / experiment / stage_name / h, experiment, stage_name, inputs, h)
