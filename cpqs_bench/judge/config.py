"""Judge settings (a leaf module): which model judges, through which backend, how requests are limited and cached."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class JudgeConfig:
    # "local": a Hugging Face chat model, batched greedy generation in this process (transformers generate; no
    # vLLM path yet); "openai": any OpenAI-compatible /chat/completions endpoint (vLLM's server included).
    backend: Literal["local", "openai"] = "local"
    model: str | None = None  # local: model spec (None = the target model, i.e. the embedded model offline);
    #                           openai: the endpoint's model name (required)
    revision: str | None = None
    base_url: str | None = None  # openai: e.g. https://api.openai.com/v1 (required for backend=openai)
    api_key_env: str = "OPENAI_API_KEY"  # the *name* of the environment variable holding the key; never the key
    concurrency: int = 4  # openai: requests in flight at once
    max_retries: int = 6  # openai: retries on 429 / 5xx / connection errors (exponential backoff, Retry-After)
    backoff_s: float = 1.0
    timeout_s: float = 120.0
    batch_size: int = 8  # local: prompts per generate() call
    max_new_tokens: int = 64
    temperature: float = 0.0
    cache: bool = True  # cache every answer per (judge, prompt, example); a rerun costs nothing
    cache_dir: str | None = None  # None = the run's own scratch (a rerun / resume of that run costs nothing); set
    #                               a folder (e.g. ~/.cache/cpqs-bench/judge) to share answers across runs
