"""Evaluation settings shared by every arm and the base model (one evaluation path for all)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cpqs_bench.judge.config import JudgeConfig


@dataclass(frozen=True)
class PairwiseConfig:
    """General-domain pairwise LLM-judge evaluation (``cpqs_bench.evaluate.judge``): every evaluated model answers the
    prompt sets greedily, and a judge compares each arm's answers with the reference arm's, in both orders.

    Off while ``sets`` is empty (the default): no stage is added and no other stage's inputs change."""

    # prompt sets: vicuna, koala, wizardlm, self_instruct (the mirror's general_eval/ files, the CPQS paper's sets),
    # or paths of JSONL prompt files
    sets: tuple[str, ...] = ()
    limit: int | None = None  # prompts per set (the first N; None: all)
    reference: Literal["full", "base"] = "full"  # the arm every other model is compared with (fine-tuned: same seed)
    max_new_tokens: int = 512  # answer length (greedy)
    batch_size: int = 8  # answers per generate() call
    rule: Literal["strict", "sum"] = "strict"  # strict: a win needs both orders (CPQS); sum: Superfiltering's rule
    n_boot: int = 2000  # bootstrap resamples of the net score's interval
    # the judge (same shape as selectors.judge): the offline default is the target model itself, a *weak* judge
    judge: JudgeConfig = field(default_factory=JudgeConfig)

    @property
    def enabled(self) -> bool:
        return bool(self.sets)


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
    # The pairwise judge evaluation (its own stages; not part of the lm-eval stages' inputs).
    pairwise: PairwiseConfig = field(default_factory=PairwiseConfig)
