"""A verb runs its step through a one-step :class:`~cpqs_bench.pipeline.Pipeline` — the same key, manifest,
code-version hash, verification and resume as ``reproduce`` — in the run directory
``<experiment.output_dir>/<experiment.name>/<stage>/<hash>/``, then copies the artifact to the user's ``--out``
(a file, or a folder's files), atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

from cpqs_bench.config import Config
from cpqs_bench.pipeline import Pipeline, Step


def main_process() -> bool:
    """False on every rank but the first under ``accelerate launch`` (its environment names the rank)."""
    return int(os.environ.get("RANK", "0")) == 0


def run_one(cfg: Config, step: Step, *, log: Callable[[str], None] = print, main_process: bool = True) -> Any:
    """Run ``step`` (and nothing else) as ``reproduce`` would; return its artifact (None on a process other than the
    main one under ``accelerate launch`` / ``torch.distributed.run``: that rank ran its slice, the main one records
    and delivers)."""
    pipe = Pipeline(Path(cfg.experiment.output_dir), cfg.experiment.name, log=log, main_process=main_process)
    pipe.run_all([step])
    return step.output if main_process else None


def deliver_file(src: Path, out: str | os.PathLike, *extra_suffixes: str) -> Path:
    """Copy ``src`` (and ``src<suffix>`` siblings) to ``out`` atomically; ``out`` is the path the user asked for."""
    from cpqs_bench.io import WriteError

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", *extra_suffixes):
        s = Path(str(src) + suffix)
        if s.exists():
            dest, tmp = Path(str(out) + suffix), Path(str(out) + suffix + ".tmp")
            try:
                shutil.copyfile(s, tmp)
                os.replace(tmp, dest)
            except OSError as exc:  # disk full, read-only: one line naming the file the user asked for
                tmp.unlink(missing_ok=True)
                raise WriteError(dest, exc) from exc
    return out


def deliver_folder(src: Path, out: str | os.PathLike, *, skip: tuple[str, ...] = ("work", "checkpoints")) -> Path:
    """Copy the files of folder ``src`` into ``out`` (created; files of the same name replaced)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp-copy")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(*skip))
    out.mkdir(parents=True, exist_ok=True)
    for p in sorted(tmp.rglob("*")):
        dest = out / p.relative_to(tmp)
        if p.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            os.replace(p, dest)
    shutil.rmtree(tmp)
    return out
