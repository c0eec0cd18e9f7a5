"""Evaluation settings shared by every arm and the base model (one evaluation path for all)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class EvaluateConfig:
    tasks: tuple[str, ...] = ("cpqs_gsm8k_chat", "cpqs_humaneval_instruct", "cpqs_humaneval_plus_instruct")
    limit: int | None = None  # items per task (None: all)
    task_limits: dict[str, int] = field(default_factory=dict)  # per-task items, overriding `limit` (e.g. more
    #                                                            items for the cheap loglikelihood proxy tasks)
    backend: Literal["hf", "vllm"] = "hf"
    batch_size: int = 8
    max_new_tokens: int | None = None  # cap on generated tokens for every task; None: each task's own budget
    apply_chat_template: bool = True  # chat tasks (task YAML metadata.chat: true) use the tokenizer's chat template
    dtype: str = "auto"  # "auto" = bf16 where the hardware runs it natively, else fp32
    use_cache: bool = True  # lm-eval request cache, keyed by model revision + adapter hash + generation settings
    sandbox_min_level: Literal["namespaces", "rlimits"] = "namespaces"
    allow_weaker_sandbox: bool = False  # explicit opt-in to run generated code below sandbox_min_level
    code_workers: int = 2
    code_timeout_s: float = 10.0
    # Extra lm-eval task folders (YAMLs) searched after the project's tasks/; any lm-eval task that runs offline may
    # be listed in ``tasks`` too (lm-eval's own task index is consulted for names not found in these folders).
    include_path: tuple[str, ...] = ()
