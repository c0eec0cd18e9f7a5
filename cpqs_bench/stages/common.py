"""Small helpers the step modules share."""

from __future__ import annotations

from typing import Any


def log_numbers(tracker: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Log the numeric fields of ``values`` to a stage's tracker (none when tracking is off)."""
    if tracker is None:
        return
    tracker.log_metrics(
        {f"{prefix}{k}": v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    )


def seed_suffix(seed: int | None) -> str:
    return "" if seed is None else f"-s{seed}"


def seed_label(seed: int | None) -> str:
    return "" if seed is None else f" seed {seed}"
