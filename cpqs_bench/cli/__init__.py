"""``cpqs-bench`` command line: the edge. Only this package reads argv or calls ``load_config``.

One file per verb in this package (``cpqs_bench/cli/<verb>.py``), registered lazily by module path so ``--help`` and
start-up import only that verb. A verb module provides ``add_arguments(parser)`` and ``run(args) -> int | None``; it
resolves the config once (:func:`cpqs_bench.cli.common.resolve`), reads inputs, and makes one library call with the
parsed objects. One override syntax for every verb: ``cpqs-bench VERB [--config PRESET] [key=value ...] [flags]``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys

VERBS: dict[str, tuple[str, str]] = {
    "data": ("cpqs_bench.cli.data", "inspect an instruction pool: counts, rejected records, token lengths"),
    "config": ("cpqs_bench.cli.config", "show a resolved preset and its hash"),
    "model": ("cpqs_bench.cli.model", "prepare or inspect the embedded default model"),
    "make-negatives": (
        "cpqs_bench.cli.make_negatives",
        "answer a pool's instructions with a weaker model (CPQS negatives)",
    ),
    "train-selector": ("cpqs_bench.cli.train_selector", "train the CPQS TextCNN on contrastive pairs"),
    "score": (
        "cpqs_bench.cli.score",
        "score a pool with a selector (cpqs, ifd, superfiltering, random, longest, plugins)",
    ),
    "select": ("cpqs_bench.cli.select", "keep the top (or bottom) budget of a scores file"),
    "validate": (
        "cpqs_bench.cli.validate",
        "screen selectors on ground truth (planted defects, strong-vs-weak pairs) before any fine-tune",
    ),
    "contamination": ("cpqs_bench.cli.contamination", "n-gram overlap of a pool with the evaluation tasks"),
    "compare": ("cpqs_bench.cli.compare", "score a pool with several selectors and write a diagnostics report"),
    "finetune": ("cpqs_bench.cli.finetune", "LoRA fine-tune one arm on a selection"),
    "evaluate": ("cpqs_bench.cli.evaluate", "evaluate a model/adapter with lm-evaluation-harness"),
    "eval-samples": ("cpqs_bench.cli.eval_samples", "score completions produced elsewhere"),
    "reproduce": ("cpqs_bench.cli.reproduce", "run a whole experiment: select, fine-tune, evaluate, compare, publish"),
    "leaderboard": ("cpqs_bench.cli.leaderboard", "regenerate leaderboard files from results"),
    "publish": ("cpqs_bench.cli.publish", "push adapters and results to the Hugging Face Hub (or --dry-run)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cpqs-bench", description="Compare instruction-tuning data selectors end to end."
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (_, help_text) in VERBS.items():
        sub.add_parser(verb, help=help_text, add_help=False)
    return parser


def build_parser(verb: str) -> argparse.ArgumentParser:
    """A parser for one verb; only that verb's module is imported (keeps ``--help`` and startup fast)."""
    module_name, help_text = VERBS[verb]
    p = argparse.ArgumentParser(prog=f"cpqs-bench {verb}", description=help_text)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        module = None
    if module is None or not hasattr(module, "run"):
        p.set_defaults(_missing=module_name)
        return p
    module.add_arguments(p)
    p.set_defaults(_run=module.run)
    return p


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
    args = build_parser(verb).parse_intermixed_args(argv[1:])  # key=value may stand between flags
    if getattr(args, "_missing", None):
        print(
            f"cpqs-bench {verb}: not built yet ({args._missing} has no command-line entry in this version)",
            file=sys.stderr,
        )
        return 3
    from cpqs_bench.io import bound_hub_requests

    bound_hub_requests()  # every Hub request of the verb (model and data downloads, uploads) has a timeout
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
