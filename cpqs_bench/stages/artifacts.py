"""What stages hand each other: small frozen records of a finished stage's output, each with a content ``key``.

A step keys its stage on the ``key`` of every artifact it consumes (the content of what it reads: the pool's
examples, the scores file's sha256, the adapter's weights), never on where the artifact came from, so a verb that
reads its input at the edge and ``reproduce`` that produced it upstream reach the same stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpqs_bench.data.example import Example
from cpqs_bench.io import sha256_file, stable_hash


def examples_key(examples: list[Example]) -> str:
    """Content key of a list of examples (ids, prompts, responses, in order)."""
    return stable_hash([[ex.id, ex.content_key()] for ex in examples], 16)


# records about a run (times, losses, provenance) that sit beside an output but are not part of its content
RECORDS = ("manifest.json", "training.json", "DONE", "run.json")


def folder_key(path: Path) -> str:
    """Content key of a folder: sha256 of every file below it by relative path, run records and resume state
    (``checkpoints/``) aside, so two runs that wrote the same weights have the same key."""
    path = Path(path)
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.name not in RECORDS and p.relative_to(path).parts[0] != "checkpoints"
    )
    return stable_hash({str(p.relative_to(path)): sha256_file(p) for p in files}, 16)


@dataclass(frozen=True)
class PoolArtifact:
    examples: list[Example] = field(repr=False, compare=False)
    key: str  # content of the examples
    sha256: str | None  # the source file's sha256 (None for a Hub spec)
    summary: dict[str, Any] = field(default_factory=dict, compare=False)
    pairs_pool: list[Example] = field(default_factory=list, repr=False, compare=False)  # generated-negatives prompts
    path: Path | None = None

    @classmethod
    def of(
        cls, examples: list[Example], sha256: str | None = None, summary: dict[str, Any] | None = None
    ) -> PoolArtifact:
        return cls(list(examples), examples_key(list(examples)), sha256, summary or {})


@dataclass(frozen=True)
class FileArtifact:
    """One output file (negatives, a CPQS checkpoint's weights file, scores, a selection, answers)."""

    path: Path
    key: str  # sha256 of the file (or of the folder for a checkpoint)
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, path: Path, **info: object) -> FileArtifact:
        path = Path(path)
        return cls(path, folder_key(path) if path.is_dir() else sha256_file(path), info)


@dataclass(frozen=True)
class SelectionArtifact:
    path: Path
    key: str  # sha256 of selection.jsonl
    arm: str
    seed: int | None  # None: one selection for every experiment seed
    info: dict[str, Any] = field(default_factory=dict, compare=False)  # kept, total, budget_k, selector, ...


@dataclass(frozen=True)
class AdapterArtifact:
    path: Path | None  # None: no adapter (an empty MoDS seed set)
    key: str | None  # content of the adapter folder (weights included)
    arm: str
    seed: int
    recipe_hash: str | None


@dataclass(frozen=True)
class EvalArtifact:
    path: Path
    arm: str
    seed: int | None
