"""Publishing settings: Hub repos for adapters and results, W&B tracking. Tokens never live here (environment only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PublishConfig:
    enabled: bool = False
    dry_run: bool = True
    hub_namespace: str | None = None  # user or org; required for a real push
    private: bool = True
    space: bool = False  # also push the leaderboard page as a static Space <namespace>/<experiment>-leaderboard
    wandb: bool = False  # one W&B run per pipeline stage
    wandb_mode: Literal["auto", "offline", "online"] = "auto"  # auto: online iff WANDB_API_KEY is set
    wandb_project: str = "cpqs-bench"
    # every Hub request is bounded: no connect/read/write may wait longer than this (huggingface_hub's own client
    # has no timeout), and a push retries a failed request at most max_retries times (408/429/5xx/transport errors)
    timeout_s: float = 60.0
    max_retries: int = 5
