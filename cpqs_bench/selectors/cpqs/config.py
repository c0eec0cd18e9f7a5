"""CPQS hyper-parameters (paper defaults). Every one is a config key under ``selectors.cpqs``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class CPQSConfig:
    # contrastive training data
    pairs_source: Literal["pairs", "join", "multi_model", "generate"] = "pairs"
    pairs: str = "alpaca_gpt4_vs_davinci003"  # named dataset / path of the paired file (or of the positives)
    negatives: str | None = None  # "join": the second file; "generate": where generated answers go (None = run dir)
    positive_field: str = "output_gpt4"
    negative_field: str = "output_davinci003"
    positive_generators: tuple[str, ...] = ("gpt4",)  # "multi_model": AlpacaEval generator names
    negative_generators: tuple[str, ...] = ("pythia-12b-mix-sft",)
    generator: str = "embedded"  # "generate": the weaker model answering the pool's instructions
    generation_max_new_tokens: int = 256
    generation_batch_size: int = 8
    n_pairs: int | None = 15000
    drop_identical: bool = True  # pairs whose two answers are equal carry no contrast
    # features
    layers: str = "all"  # all | last | front | middle | back | comma list "0,4,8"
    feature_max_length: int = 2048
    extract_batch_size: int = 8
    feature_cache: bool = True
    feature_cache_max_gb: float = 20.0
    # TextCNN
    num_filters: int = 256
    kernel_sizes: tuple[int, ...] = (3, 4, 5)
    mlp_hidden: int = 512
    dropout: float = 0.5
    # training
    lr: float = 1e-4
    grad_accum: int = 16
    batch_size: int = 1
    epochs: int = 3
    val_fraction: float = 0.1
    seed: int = 0
    mixed_precision: bool = True
