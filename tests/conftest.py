"""Hermetic test environment: no network, the data mirror at ../shared/data, W&B off, small thread counts."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("CPQS_DATA_MIRROR", str(REPO.parent / "shared" / "data"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

MIRROR = Path(os.environ["CPQS_DATA_MIRROR"])


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not MIRROR.is_dir():
        pytest.fail(f"data mirror {MIRROR} is missing: set CPQS_DATA_MIRROR to the shared/data directory")
    return MIRROR


@pytest.fixture(scope="session")
def embedded_tokenizer():
    from cpqs_bench import models

    return models.load_tokenizer("embedded")
