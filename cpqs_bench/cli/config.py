"""``cpqs-bench config show PRESET [key=value ...]``: print the resolved config and its hash."""
from __future__ import annotations

import argparse

from cpqs_bench.config import config_hash, load_config, to_yaml


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="print the resolved preset (YAML) and its hash")
    show.add_argument("preset", help="preset name (configs/<name>.yaml) or path")
    show.add_argument("overrides", nargs="*", help="key=value overrides, e.g. finetune.lr=1e-4")


def main(preset: str, overrides: list[str]) -> str:
    cfg = load_config(preset, overrides)
    return f"# config hash: {config_hash(cfg)}\n{to_yaml(cfg)}"


def run_cli(args: argparse.Namespace) -> int:
    print(main(args.preset, args.overrides), end="")
    return 0
