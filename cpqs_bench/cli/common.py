"""What every verb shares: the one override syntax, config resolution at the edge, and the counts line.

``cpqs-bench VERB [--config PRESET] [key=value ...] [verb flags]``. Without ``--config`` a verb starts from the
dataclass defaults (no preset's limits). A verb flag that mirrors a config key is an *alias* of the override
``key=value`` (declared with :func:`alias`), never a second path: :func:`resolve` turns it into an override, so the
printed config, its hash and the run all see the same value.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Sequence

ALIASES = "_config_aliases"


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """``--config PRESET`` and trailing ``key=value`` overrides (parsed intermixed with the verb's flags)."""
    p.add_argument(
        "--config",
        default=None,
        metavar="PRESET",
        help="preset name (packaged: cpqs_bench/configs/<name>.yaml) or YAML path; default: built-in defaults, no preset",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. finetune.lr=1e-4 data.pool_limit=100",
    )


def alias(p: argparse.ArgumentParser, flag: str, key: str, *, type: Any = str, help: str = "", **kw: Any) -> None:
    """A verb flag that is shorthand for the override ``key=value``."""
    dest = "alias__" + key.replace(".", "__")
    p.add_argument(flag, dest=dest, type=type, default=None, help=f"{help} (= {key}=VALUE)".strip(), **kw)
    table = p.get_default(ALIASES) or {}
    p.set_defaults(**{ALIASES: {**table, dest: key}})


@dataclass(frozen=True)
class Resolved:
    cfg: Any  # cpqs_bench.config.Config
    preset: str | None
    overrides: tuple[str, ...]


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value) + "]"
    return "null" if value is None else str(value)


def overrides_of(args: argparse.Namespace) -> list[str]:
    """Positional overrides, then alias flags (which win, being more specific to this call)."""
    items = list(getattr(args, "overrides", None) or [])
    for dest, key in (getattr(args, ALIASES, None) or {}).items():
        value = getattr(args, dest, None)
        if value is not None:
            items.append(f"{key}={_fmt(value)}")
    return items


def resolve(args: argparse.Namespace) -> Resolved:
    """The one place a verb turns argv into a :class:`Config`."""
    from cpqs_bench.config import load_config

    overrides = overrides_of(args)
    preset = getattr(args, "config", None)
    cfg = load_config(preset, overrides)
    return Resolved(cfg, preset, tuple(overrides))


def limit_origin(resolved: Resolved, key: str = "data.pool_limit") -> str:
    """Where a limit in force came from: an override/flag, or the preset."""
    if any(o.split("=", 1)[0].strip() == key for o in resolved.overrides):
        return "command line"
    return f"preset {resolved.preset}" if resolved.preset else "defaults"


def print_counts(pool: Any, *, limit: int | None, origin: str, file: Any = None) -> None:
    """``read / kept / rejected / limited`` for a pool read at the edge; a limit always names its origin."""
    s = pool.summary()
    line = f"{s['source']}: read {s['read']}, kept {s['kept']}, rejected {s['rejected']}"
    if limit is not None:
        line += f", limited to {len(pool.examples)} by data.pool_limit={limit} ({origin})"
    print(line, file=file or sys.stderr)


def read_pool_at_edge(
    resolved: Resolved, data: str | None = None, *, rejected_path: Any = None, limit_key: str = "data.pool_limit"
) -> Any:
    """Read the pool named by ``data`` (or ``data.pool``) with the config's reader settings; print its counts."""
    from cpqs_bench.data.pool import read_pool

    d = resolved.cfg.data
    pool = read_pool(
        data or d.pool,
        schema=d.schema,
        field_map=d.field_map,
        mirror=d.mirror,
        limit=d.pool_limit,
        offset=d.pool_offset,
        max_rejected_fraction=d.max_rejected_fraction,
        rejected_path=rejected_path,
        max_record_bytes=d.max_record_bytes,
    )
    print_counts(pool, limit=d.pool_limit, origin=limit_origin(resolved, limit_key))
    return pool


def csv(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def key_values(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    """``NAME=VALUE`` pairs of a repeatable flag (e.g. ``--selector-checkpoint cpqs=DIR``)."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{flag} {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out
