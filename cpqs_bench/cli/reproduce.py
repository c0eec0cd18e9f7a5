"""``cpqs-bench reproduce [--config PRESET] [key=value ...] [--preflight[=full]]``: the whole experiment."""

from __future__ import annotations

import argparse

from cpqs_bench.cli.common import add_config_arguments, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument(
        "--preflight",
        nargs="?",
        const="offline",
        choices=("offline", "full"),
        default=None,
        help="check everything the preset needs and run every stage on a few examples with a tiny "
        "stand-in (offline) or the real model (full), then exit; non-zero on any problem",
    )
    p.add_argument("--wait", action="store_true", help="wait for another run holding the run directory (default: exit)")


def run(args: argparse.Namespace) -> int:
    if args.config is None:
        args.config = "smoke"  # the experiment a bare `reproduce` means: the offline smoke run
    resolved = resolve(args)
    if args.preflight:
        from cpqs_bench.preflight import preflight

        report = preflight(resolved.cfg, mode=args.preflight, preset=resolved.preset)
        return 0 if report.ok else 1
    from cpqs_bench.reproduce import reproduce

    reproduce(resolved.cfg, preset=resolved.preset, overrides=resolved.overrides, wait=args.wait)
    return 0
