"""``cpqs-bench publish --run runs/<experiment> [--dry-run | --push] [--config PRESET] [key=value ...]``.

The ``publish`` config section decides what happens; the flags are aliases of its keys: ``--dry-run`` is
``publish.dry_run=true`` (the default: nothing leaves the machine), ``--push`` is ``publish.dry_run=false``,
``--namespace NS`` is ``publish.hub_namespace=NS``. Tokens come only from the environment (``HF_TOKEN``) or
``HF_HOME``. Every Hub request waits at most ``publish.timeout_s``; a push records each repo that went live in
``RUN/publish/state.json`` and a rerun resumes after them (``--recheck`` asks the Hub about every repo again).
"""

from __future__ import annotations

import argparse
import json

from cpqs_bench.cli.common import add_config_arguments, alias, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--run", required=True, help="runs/<experiment> directory of a finished reproduce run")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        dest="mode",
        action="store_const",
        const="true",
        help="write the folders that would be pushed under RUN/publish/dry-run; push nothing "
        "(= publish.dry_run=true, the default)",
    )
    mode.add_argument(
        "--push",
        dest="mode",
        action="store_const",
        const="false",
        help="push to the Hub (= publish.dry_run=false; needs publish.hub_namespace)",
    )
    alias(
        p,
        "--namespace",
        "publish.hub_namespace",
        metavar="NS",
        help="Hub user or organisation (required for a real push)",
    )
    p.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    p.add_argument(
        "--recheck",
        action="store_true",
        help="ask the Hub again about repos RUN/publish/state.json records as live (default: skip them)",
    )


def run(args: argparse.Namespace) -> int:
    if args.mode is not None:  # an alias of the override, never a second path
        args.overrides = [*(args.overrides or []), f"publish.dry_run={args.mode}"]
    resolved = resolve(args)
    from cpqs_bench.publish.run import publish_run

    pub = resolved.cfg.publish
    report = publish_run(args.run, pub, dry_run=pub.dry_run, endpoint=args.endpoint, recheck=args.recheck)
    print(json.dumps({r: {k: v for k, v in e.items() if k != "files"} for r, e in report["repos"].items()}, indent=2))
    return 0
