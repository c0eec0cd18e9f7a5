"""Evaluation settings shared by every arm and the base model (one evaluation path for all)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class EvaluateConfig:
    tasks: tuple[str, ...] = ("cpqs_gsm8k_chat", "cpqs_humaneval_instruct", "cpqs_humaneval_plus_instruct")
    limit: int | None = None
    backend: Literal["hf", "vllm"] = "hf"
    batch_size: int = 8
    max_new_tokens: int = 512
    apply_chat_template: bool = True  # chat tasks (*_chat, *_instruct) use the tokenizer's chat template
    dtype: str = "auto"  # "auto" = bf16 where the hardware runs it natively, else fp32
    use_cache: bool = True  # lm-eval request cache, keyed by model revision + adapter hash + generation settings
    sandbox_min_level: Literal["namespaces", "rlimits"] = "namespaces"
    allow_weaker_sandbox: bool = False  # explicit opt-in to run generated code below sandbox_min_level
    code_workers: int = 2
    code_timeout_s: float = 10.0
