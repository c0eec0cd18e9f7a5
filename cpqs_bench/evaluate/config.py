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
    apply_chat_template: bool = True
    sandbox_min_level: Literal["namespaces", "rlimits"] = "namespaces"
    code_workers: int = 2
    code_timeout_s: float = 10.0
