"""``cpqs-bench`` command line. Each verb parses its flags and makes one library call; nothing else lives here.

Verbs are registered lazily as ``"module"`` paths: the module provides ``add_arguments(parser)`` and
``run_cli(args) -> int | None``. A verb whose module is not built yet says so plainly instead of failing obscurely.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys

VERBS: dict[str, tuple[str, str]] = {
    "data": ("cpqs_bench.data.inspect", "inspect an instruction pool: counts, rejected records, token lengths"),
    "config": ("cpqs_bench.config_cli", "show a resolved preset and its hash"),
    "model": ("cpqs_bench.model_cli", "prepare or inspect the embedded default model"),
    "make-negatives": ("cpqs_bench.data.negatives", "answer a pool's instructions with a weaker model (CPQS negatives)"),
    "train-selector": ("cpqs_bench.selectors.cpqs.train", "train the CPQS TextCNN on contrastive pairs"),
    "score": ("cpqs_bench.score", "score a pool with a selector (cpqs, ifd, superfiltering, random, longest, plugins)"),
    "select": ("cpqs_bench.select_cli", "keep the top (or bottom) budget of a scores file"),
    "compare": ("cpqs_bench.compare", "score a pool with several selectors and write a diagnostics report"),
    "finetune": ("cpqs_bench.finetune.sft", "LoRA fine-tune one arm on a selection"),
    "evaluate": ("cpqs_bench.evaluate.harness", "evaluate a model/adapter with lm-evaluation-harness"),
    "eval-samples": ("cpqs_bench.evaluate.samples", "score completions produced elsewhere"),
    "reproduce": ("cpqs_bench.reproduce", "run a whole experiment: select, fine-tune, evaluate, compare, publish"),
    "leaderboard": ("cpqs_bench.leaderboard", "regenerate leaderboard files from results"),
    "publish": ("cpqs_bench.publish_run", "push adapters and results to the Hugging Face Hub (or --dry-run)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cpqs-bench", description="Compare instruction-tuning data selectors end to end.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (_, help_text) in VERBS.items():
        sub.add_parser(verb, help=help_text, add_help=False)
    return parser


def build_parser(verb: str) -> argparse.ArgumentParser:
    """A parser for one verb; only that verb's module is imported (keeps ``--help`` and startup fast)."""
    module_name, help_text = VERBS[verb]
    parser = argparse.ArgumentParser(prog="cpqs-bench", description="Compare instruction-tuning data selectors end to end.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = sub.add_parser(verb, help=help_text, description=help_text)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        module = None
    if module is None or not hasattr(module, "run_cli"):
        p.set_defaults(_missing=module_name)
        return parser
    module.add_arguments(p)
    p.set_defaults(_run=module.run_cli)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0 if argv else 2
    verb = argv[0]
    if verb not in VERBS:
        close = difflib.get_close_matches(verb, VERBS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        print(f"cpqs-bench: unknown verb {verb!r}.{hint} Verbs: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    args = build_parser(verb).parse_args(argv)
    if getattr(args, "_missing", None):
        print(f"cpqs-bench {verb}: not built yet ({args._missing} has no command-line entry in this version)",
              file=sys.stderr)
        return 3
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        # Known user-facing errors (bad config, bad data, missing files, read-only or full disk, unreachable Hub):
        # one clear line and a non-zero exit, no traceback. CPQS_DEBUG=1 shows the traceback.
        if os.environ.get("CPQS_DEBUG"):
            raise
        from cpqs_bench.provenance import scrub

        print(f"cpqs-bench {verb}: error: {scrub(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
