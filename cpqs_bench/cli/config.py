"""``cpqs-bench config [show] [--config PRESET] [key=value ...]``: print the resolved config and its hash.

``cpqs-bench config show smoke finetune.lr=1e-4`` (the older form, preset as a bare word) still works: one bare
word without ``=`` is taken as the preset when ``--config`` is not given.
"""

from __future__ import annotations

import argparse

from cpqs_bench.cli.common import add_config_arguments, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    # a positional with choices, not a subparser: the dispatcher parses intermixed args, which subparsers refuse
    p.add_argument(
        "action",
        nargs="?",
        choices=["show"],
        default="show",
        help="show: print the resolved preset (YAML) and its hash (the default)",
    )
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    from cpqs_bench.config import config_hash, to_yaml

    bare = [o for o in args.overrides if "=" not in o]
    if bare:
        if args.config is not None or len(bare) > 1:
            raise ValueError(f"expected key=value overrides, got {bare} (the preset goes in --config PRESET)")
        args.config = bare[0]
        args.overrides = [o for o in args.overrides if "=" in o]
    resolved = resolve(args)
    print(f"# config hash: {config_hash(resolved.cfg)}\n{to_yaml(resolved.cfg)}", end="")
    return 0
