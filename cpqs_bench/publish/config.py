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
