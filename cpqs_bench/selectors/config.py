"""Selector settings: which selectors score the pool, the selection budget, baseline options, CPQS."""
from __future__ import annotations

from dataclasses import dataclass, field

from cpqs_bench.selectors.cpqs.config import CPQSConfig


@dataclass(frozen=True)
class SelectorsConfig:
    names: tuple[str, ...] = ("random", "longest", "ifd", "superfiltering", "cpqs")
    budget: float = 0.05  # >= 1: number of examples; < 1: fraction of the pool
    bottom_arms: tuple[str, ...] = ("cpqs",)  # selectors that also get a bottom-k sanity arm
    batch_size: int = 8
    seed: int = 0
    drop_ifd_ge_1: bool = True  # both IFD papers drop samples with IFD >= 1 before ranking
    proxy_model: str = "gpt2"  # Superfiltering's small proxy (the smoke preset uses the embedded model offline)
    proxy_template: str = "none"
    plugins: dict[str, str] = field(default_factory=dict)  # extra name -> "module:Class"
    cpqs: CPQSConfig = field(default_factory=CPQSConfig)
