"""``cpqs-bench config [show] [--config PRESET] [key=value ...]``: print the resolved config and its hash.

``cpqs-bench config --config smoke finetune.lr=1e-4`` (the README's form) and ``cpqs-bench config show smoke
finetune.lr=1e-4`` (the older form, preset as a bare word) both work: the optional action is not an argparse
positional with choices (which would swallow the first ``key=value`` as an invalid action), it is read from the
words themselves: ``show`` first is the action; one other bare word without ``=`` is the preset when ``--config`` is
not given.
"""

from __future__ import annotations

import argparse

from cpqs_bench.cli.common import add_config_arguments, resolve

ACTIONS = ("show",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.epilog = "actions: show (print the resolved preset as YAML and its hash; the default)"


def run(args: argparse.Namespace) -> int:
    from cpqs_bench.config import config_hash, to_yaml

    words = list(args.overrides or [])
    if words and words[0] in ACTIONS:
        words = words[1:]
    bare = [o for o in words if "=" not in o]
    if bare:
        if args.config is not None or len(bare) > 1:
            raise ValueError(
                f"expected key=value overrides, got {bare} (the preset goes in --config PRESET; actions: {ACTIONS})"
            )
        args.config = bare[0]
    args.overrides = [o for o in words if "=" in o]
    resolved = resolve(args)
    print(f"# config hash: {config_hash(resolved.cfg)}\n{to_yaml(resolved.cfg)}", end="")
    return 0
