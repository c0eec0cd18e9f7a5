"""The CPQS selector checkpoint format, shared by training (writes) and scoring (reads).

A checkpoint is a directory:

* ``model.safetensors`` — the TextCNN weights;
* ``selector.json`` — ``{"format": "cpqs-selector/1", ...}``: everything scoring needs (backbone spec, revision and
  config digest, layer selection and the resolved indices, template, system prompt, max length, feature span and
  question format (``response`` / ``project`` when absent: checkpoints before #26), feature dtype, TextCNN config)
  plus the training metrics, so ``cpqs-bench score cpqs --selector DIR`` never asks for a training
  flag again.

Scoring imports this module, never the training module.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable

import torch

from cpqs_bench.io import read_json, write_json
from cpqs_bench.selectors.cpqs.textcnn import TextCNN, TextCNNConfig

CHECKPOINT_FORMAT = "cpqs-selector/1"
WEIGHTS = "model.safetensors"
META = "selector.json"


def write_checkpoint(out_dir: str | Path, cnn: TextCNN, meta: dict[str, Any]) -> Path:
    """``model.safetensors`` + ``selector.json`` (weights first, so a readable JSON implies complete weights)."""
    from safetensors.torch import save

    from cpqs_bench.io import write_bytes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes(out_dir / WEIGHTS, save({k: v.contiguous() for k, v in cnn.state_dict().items()}))
    write_json(out_dir / META, {"format": CHECKPOINT_FORMAT, **meta, "textcnn": cnn.cfg.to_dict()})
    return out_dir


def read_meta(path: str | Path) -> dict[str, Any]:
    """``selector.json`` of a checkpoint directory, with a clear error for a directory that is not one."""
    path = Path(path)
    if not (path / META).exists() or not (path / WEIGHTS).exists():
        raise FileNotFoundError(
            f"{path} is not a CPQS selector checkpoint (needs {META} and {WEIGHTS}); train one "
            "with cpqs-bench train-selector"
        )
    meta = read_json(path / META)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path / META}: format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    return meta


def weights_sha256(path: str | Path) -> str:
    """Hash of the checkpoint's weights file (part of every scoring work key: new weights never reuse old shards)."""
    h = hashlib.sha256()
    with open(Path(path) / WEIGHTS, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[TextCNN, dict[str, Any]]:
    """(TextCNN in eval mode, selector.json) of a checkpoint directory, with clear errors for a bad directory."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_meta(path)
    cnn = TextCNN(TextCNNConfig.from_dict(meta["textcnn"]))
    cnn.load_state_dict(load_file(str(path / WEIGHTS)))
    return cnn.to(device).eval(), meta


def autocast_dtype(device: torch.device | str, mixed_precision: bool) -> torch.dtype | None:
    """The autocast dtype training validates under and scoring therefore scores under: bf16 where the hardware
    runs it natively, fp16 on CUDA devices without bf16 (training then uses a ``GradScaler``), else None (fp32)."""
    from cpqs_bench.models import best_dtype

    device = torch.device(device)
    if not mixed_precision:
        return None
    dt = best_dtype(device.type)
    return dt if dt in (torch.bfloat16, torch.float16) and (device.type == "cuda" or dt == torch.bfloat16) else None


INSTRUCTIONS = "training_instructions.json"


def instruction_hash(key: str) -> str:
    from cpqs_bench.io import stable_hash

    return stable_hash(key, 16)


def write_training_instructions(out_dir: str | Path, keys: Iterable[str]) -> None:
    """Hashes of the instructions (``pairs.overlap_key``) the selector was trained or validated on, so any later
    scoring can count its overlap with the pool it scores."""
    write_json(Path(out_dir) / INSTRUCTIONS, {"hashes": sorted({instruction_hash(k) for k in keys})})


def training_instruction_overlap(checkpoint: str | Path, examples: Iterable[Any]) -> dict[str, Any]:
    """``{"pool", "overlap"}``: how many of ``examples`` have an instruction the checkpoint was trained on."""
    from cpqs_bench.selectors.cpqs.pairs import overlap_key

    path = Path(checkpoint) / INSTRUCTIONS
    examples = list(examples)
    if not path.exists():
        return {"pool": len(examples), "overlap": None, "reason": f"{path.name} missing (older checkpoint)"}
    seen = set(read_json(path)["hashes"])
    return {"pool": len(examples), "overlap": sum(1 for ex in examples if instruction_hash(overlap_key(ex)) in seen)}
