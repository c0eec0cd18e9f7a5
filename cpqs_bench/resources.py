"""Where the packaged presets and task YAMLs are: ``cpqs_bench/configs`` and ``cpqs_bench/tasks``, package data that
ships in the wheel, so a non-editable install finds them as well as a checkout does."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIGS_DIR = PACKAGE_DIR / "configs"  # the presets: ``--config <name>`` is ``CONFIGS_DIR / "<name>.yaml"``
TASKS_DIR = PACKAGE_DIR / "tasks"  # the project's lm-eval task YAMLs (``$CPQS_TASKS_DIR`` overrides, see harness)
