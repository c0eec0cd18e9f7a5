"""Crash-safe Trainer checkpoints: a checkpoint counts only once a completeness marker was written after it.

transformers' Trainer writes ``checkpoint-N/`` file by file (adapter, optimizer, scheduler, RNG states, trainer
state); ``kill -9`` in the middle leaves a directory that looks like a checkpoint but cannot be resumed. So:

* the Trainer's own rotation is off (``save_total_limit=None``); after every save, :class:`CompleteMarker` (a
  ``TrainerCallback``) waits for all processes (their RNG files), checks the expected files are there, and writes
  ``COMPLETE.json`` atomically with each file's size and sha256;
* only then are older checkpoints pruned (keeping ``keep`` complete ones), so there is always one verified
  checkpoint on disk;
* on resume, :func:`newest_complete` picks the newest checkpoint whose marker verifies; unmarked directories are
  removed by :func:`remove_incomplete` (they are the torn remains of a killed save).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpqs_bench.io import read_json, sha256_file, write_json

if TYPE_CHECKING:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


log = logging.getLogger(__name__)

MARKER = "COMPLETE.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin", "pytorch_model.bin")
REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


def step_of(path: Path) -> int | None:
    m = _STEP.match(path.name)
    return int(m.group(1)) if m else None


def checkpoints(root: Path) -> list[Path]:
    """``checkpoint-N`` directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(step_of(p), p) for p in root.iterdir() if p.is_dir() and step_of(p) is not None]
    return [p for _, p in sorted(found)]


def expected_files(path: Path, world_size: int) -> list[str]:
    weights = [w for w in WEIGHT_FILES if (path / w).exists()]
    rng = ["rng_state.pth"] if world_size <= 1 else [f"rng_state_{i}.pth" for i in range(world_size)]
    return list(REQUIRED) + weights[:1] + rng


def mark_complete(path: Path, world_size: int) -> dict[str, Any]:
    """Verify a just-saved checkpoint and write its marker; raise if a file is missing (the save failed)."""
    names = expected_files(path, world_size)
    missing = [n for n in names if not (path / n).is_file()]
    if missing or not any((path / w).exists() for w in WEIGHT_FILES):
        raise RuntimeError(f"{path}: checkpoint incomplete after save, missing {missing or 'adapter weights'}")
    files = {}
    for p in sorted(path.iterdir()):
        if p.is_file() and p.name != MARKER:
            files[p.name] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    marker = {"step": step_of(path), "world_size": world_size, "files": files}
    write_json(path / MARKER, marker)
    return marker


def verify(path: Path, deep: bool = False) -> bool:
    """True when the marker exists and every listed file is present with its size (and hash, when ``deep``)."""
    marker_path = path / MARKER
    if not marker_path.is_file():
        return False
    try:
        marker = read_json(marker_path)
    except ValueError as exc:  # a torn marker cannot happen with atomic writes, but a hand-edited one can
        log.warning("%s: unreadable marker (%s); treating checkpoint as incomplete", marker_path, exc)
        return False
    for name, meta in marker.get("files", {}).items():
        p = path / name
        if not p.is_file() or p.stat().st_size != meta["size"]:
            return False
        if deep and sha256_file(p) != meta["sha256"]:
            return False
    return bool(marker.get("files"))


def newest_complete(root: Path, deep: bool = True) -> Path | None:
    for p in reversed(checkpoints(root)):
        if verify(p, deep=deep):
            return p
    return None


def remove_incomplete(root: Path) -> list[Path]:
    """Delete checkpoint directories without a verifying marker (torn saves); returns what was removed."""
    removed = []
    for p in checkpoints(root):
        if not verify(p):
            log.warning("removing incomplete checkpoint %s (no valid %s)", p, MARKER)
            shutil.rmtree(p)
            removed.append(p)
    return removed


def prune(root: Path, keep: int) -> list[Path]:
    """Keep the newest ``keep`` complete checkpoints (at least 1); older ones and older torn ones are removed."""
    keep = max(1, keep)
    complete = [p for p in checkpoints(root) if verify(p)]
    if not complete:
        return []
    survivors = set(complete[-keep:])
    newest = step_of(complete[-1]) or 0
    removed = []
    for p in checkpoints(root):
        if p not in survivors and (step_of(p) or 0) < newest:
            shutil.rmtree(p)
            removed.append(p)
    return removed


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def callback(keep: int) -> TrainerCallback:
    """A ``TrainerCallback`` that marks each save complete, then prunes (built lazily: transformers is heavy)."""
    from transformers import TrainerCallback

    class CompleteMarker(TrainerCallback):
        def on_save(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
        ) -> TrainerControl:  # Trainer callback signature
            _barrier()  # every rank has written its RNG state / shards before rank 0 checks the directory
            if state.is_world_process_zero:
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                mark_complete(path, args.world_size)
                prune(Path(args.output_dir), keep)
            _barrier()  # nobody proceeds (or gets killed mid-prune by a launcher) before the marker exists
            return control

    return CompleteMarker()


def timed_saves(interval_s: float) -> TrainerCallback:
    """A ``TrainerCallback`` asking for a checkpoint when ``interval_s`` seconds passed since the last one.

    Checkpoint cadence by time rather than by step count: a short arm (a handful of steps) pays for no checkpoint
    at all, a long one loses at most ``interval_s`` of work to a crash. The decision is rank 0's clock, broadcast so
    every process saves at the same step (a save is collective)."""
    import time

    from transformers import TrainerCallback

    class TimedSaves(TrainerCallback):
        def __init__(self) -> None:
            self.last = time.monotonic()

        def on_train_begin(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
        ) -> TrainerControl:
            self.last = time.monotonic()
            return control

        def on_step_end(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
        ) -> TrainerControl:
            due = interval_s > 0 and time.monotonic() - self.last >= interval_s and state.global_step < state.max_steps
            if _broadcast_flag(due):
                control.should_save = True
            return control

        def on_save(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
        ) -> TrainerControl:
            self.last = time.monotonic()
            return control

    return TimedSaves()


def _broadcast_flag(flag: bool) -> bool:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())
