"""Where the packaged presets and task YAMLs are, and how a ``--config`` value resolves to a preset file.

``cpqs_bench/configs`` and ``cpqs_bench/tasks`` are package data: they ship in the wheel, so a non-editable install
finds them as well as a checkout does. ``--config`` takes a preset name (``smoke``), any YAML file that exists, or
the path the presets had before they moved into the package (``configs/smoke.yaml``): when that relative path does
not exist, it means the packaged preset of the same name, and a note on stderr says so (once per process).
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIGS_DIR = PACKAGE_DIR / "configs"  # the presets: ``--config <name>`` is ``CONFIGS_DIR / "<name>.yaml"``
TASKS_DIR = PACKAGE_DIR / "tasks"  # the project's lm-eval task YAMLs (``$CPQS_TASKS_DIR`` overrides, see harness)
LEGACY_CONFIGS = "configs"  # the presets' folder at the repository root before they became package data
YAML_SUFFIXES = (".yaml", ".yml")

_noted: set[str] = set()  # legacy paths already reported on stderr


def preset_names() -> list[str]:
    """The packaged presets, by name."""
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))


def _legacy_preset(p: Path) -> Path | None:
    """The packaged preset a missing ``configs/<name>.yaml`` (relative, as the Makefile and old docs spell it)
    stands for; None when ``p`` is not of that form or no such preset exists."""
    if p.is_absolute() or len(p.parts) != 2 or p.parts[0] != LEGACY_CONFIGS or p.suffix not in YAML_SUFFIXES:
        return None
    packaged = CONFIGS_DIR / f"{p.stem}.yaml"
    return packaged if packaged.is_file() else None


def config_path(value: str | os.PathLike[str]) -> Path:
    """The preset file a ``--config`` value names: an existing file as given; a missing relative
    ``configs/<name>.yaml`` as the packaged preset ``<name>`` (noted on stderr); a bare name as the packaged preset
    (even where a folder of that name is in the cwd).
    Anything else is a :class:`~cpqs_bench.config.ConfigError` naming the presets there are."""
    from cpqs_bench.config import ConfigError  # config imports this module: resolve the cycle at call time

    p = Path(value)
    if p.is_file():
        return p
    if p.suffix in YAML_SUFFIXES or len(p.parts) > 1:
        if p.exists():
            raise ConfigError(f"config {str(value)!r} is not a file")
        legacy = _legacy_preset(p)
        if legacy is None:
            raise ConfigError(f"config file not found: {p} (presets: {', '.join(preset_names())})")
        if str(p) not in _noted:
            _noted.add(str(p))
            print(
                f"note: {p} is not here; using the packaged preset {legacy.stem!r} ({legacy}). "
                f"Presets ship inside the package now: --config {legacy.stem}",
                file=sys.stderr,
            )
        return legacy
    candidate = CONFIGS_DIR / f"{value}.yaml"
    if candidate.is_file():
        return candidate
    known = preset_names()
    close = difflib.get_close_matches(str(value), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown preset {str(value)!r}.{hint} Presets: {', '.join(known)}")
