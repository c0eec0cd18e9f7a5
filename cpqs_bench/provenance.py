"""What produced a result: git sha + dirty flag, package versions, hardware, Python. Recorded in every manifest.

Nothing secret is collected: no environment variables are read here except to *check* a token is set (never its
value), and :func:`scrub` removes known token values from any text before it is written.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any, Iterable

PACKAGES = (
    "cpqs-bench",
    "torch",
    "transformers",
    "datasets",
    "peft",
    "trl",
    "accelerate",
    "lm_eval",
    "evaluate",
    "huggingface_hub",
    "safetensors",
    "gguf",
    "wandb",
    "numpy",
)
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
REPO_ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def git_info() -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


def collect() -> dict[str, Any]:
    return {"git": git_info(), "packages": package_versions(), "hardware": hardware()}


def secret_values() -> list[str]:
    return [v for k in SECRET_ENV if (v := os.environ.get(k)) and len(v) >= 4]


def scrub(text: str, extra: Iterable[str | None] = ()) -> str:
    """Replace token values from the environment, any ``extra`` secrets (e.g. a token passed explicitly), and
    anything shaped like an HF token in ``text``. The one scrubber every log line and error message goes through."""
    for value in [*secret_values(), *(e for e in extra if e)]:
        text = text.replace(value, "***")
    return re.sub(r"hf_[A-Za-z0-9]{20,}", "hf_***", text)
