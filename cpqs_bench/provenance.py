"""What produced a result: git sha + dirty flag, package versions, hardware, Python. Recorded in every manifest.

Nothing secret is collected: no environment variables are read here except to *check* a token is set (never its
value), and :func:`scrub` removes known token values from any text before it is written.

The one secret scrubber (issue #34): :func:`scrub` replaces, by value, the value of every secret environment
variable -- the fixed :data:`SECRET_ENV` (Hub, W&B, the usual LLM API keys) plus every variable a config names
(``*.api_key_env``; :func:`register_config_secrets`, called by ``load_config``) -- and anything shaped like an HF
token or a ``Bearer`` credential. It is used for exceptions (the CLI's error line), log records
(:func:`install_log_scrubber`: every record's message, whatever handler prints it), W&B errors, Hub errors and every
JSON document written through :func:`cpqs_bench.io.write_json` (manifests, summaries, plans).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import platform
import re
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterable

PACKAGES = (
    "cpqs-bench",
    "torch",
    "transformers",
    "datasets",
    "peft",
    "accelerate",
    "lm_eval",
    "huggingface_hub",
    "safetensors",
    "gguf",
    "wandb",
    "numpy",
)
SECRET_ENV = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "WANDB_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "MISTRAL_API_KEY",
    "TOGETHER_API_KEY",
)
MIN_SECRET_LEN = 6  # shorter values are not scrubbed by value (they would mangle ordinary text); see scrub()
_registered: set[str] = set()  # names of further secret variables (a config's api_key_env), see register_secret_env
_registered_lock = threading.Lock()
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
    out: dict[str, str | None] = {}
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


def register_secret_env(*names: str) -> None:
    """Scrub the values of these environment variables too (from now on, in this process)."""
    with _registered_lock:
        _registered.update(n for n in names if n)


def secret_env_names() -> list[str]:
    with _registered_lock:
        return sorted({*SECRET_ENV, *_registered})


def config_secret_envs(cfg: object) -> list[str]:
    """Every ``*_env`` string field anywhere in a (nested, dataclass) config: the names of its secret variables."""
    import dataclasses

    found: list[str] = []

    def walk(obj: object) -> None:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if f.name.endswith("_env") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)

    walk(cfg)
    return sorted(set(found))


def register_config_secrets(cfg: object) -> list[str]:
    """Register every secret variable a config names (``selectors.judge.api_key_env``, ``evaluate.judge...``) and
    install the log scrubber; returns the names registered."""
    names = config_secret_envs(cfg)
    register_secret_env(*names)
    install_log_scrubber()
    return names


def secret_values() -> list[str]:
    values = {v for k in secret_env_names() if (v := os.environ.get(k)) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)  # longest first: a key that contains another is scrubbed whole


# a credential next to its label: "Bearer <x>", "api_key=<x>", "token: <x>" (an explicit separator is required after
# api_key / token, so prose such as "token embeddings" is left alone)
_CREDENTIAL = re.compile(
    r"(?i)\b(bearer\s+|(?:api[_-]?key|access[_-]?token|token)\s*[:=]\s*[\"']?)([A-Za-z0-9._~+/-]{8,}=*)"
)


def scrub(text: str, extra: Iterable[str | None] = ()) -> str:
    """Replace token values from the environment (every registered secret variable), any ``extra`` secrets (e.g. a
    token passed explicitly), anything shaped like an HF token and any ``Bearer``/``api_key`` credential in
    ``text``. The one scrubber every log line, error message and manifest goes through."""
    text = str(text)
    for value in [*secret_values(), *(e for e in extra if e and len(e) >= 4)]:
        text = text.replace(value, "***")
    text = re.sub(r"hf_[A-Za-z0-9]{20,}", "hf_***", text)
    return _CREDENTIAL.sub(lambda m: f"{m.group(1)}***", text)


def scrub_obj(obj: object, extra: Iterable[str | None] = ()) -> Any:
    """``obj`` (JSON-like: dicts, lists, strings) with every string scrubbed; keys too."""
    extra = list(extra)
    if isinstance(obj, str):
        return scrub(obj, extra)
    if isinstance(obj, dict):
        return {scrub(k, extra) if isinstance(k, str) else k: scrub_obj(v, extra) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(scrub_obj(v, extra) for v in obj)
    return obj


class _ScrubbedRecord(logging.LogRecord):
    def getMessage(self) -> str:  # noqa: N802 (logging's name)
        return scrub(super().getMessage())


_factory_lock = threading.Lock()


def install_log_scrubber() -> None:
    """Make every log record's message go through :func:`scrub`, whatever logger, handler or formatter prints it
    (a LogRecord factory, so handlers added later are covered too). Idempotent."""
    with _factory_lock:
        current = logging.getLogRecordFactory()
        if getattr(current, "_cpqs_scrubbed", False):
            return

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = current(*args, **kwargs)
            if type(record) is logging.LogRecord:
                record.__class__ = _ScrubbedRecord
            return record

        factory._cpqs_scrubbed = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
