"""``cpqs-bench model fetch [--force] [--generate PROMPT]``: prepare the embedded default model (dequantise the GGUF
once, cache safetensors); instant when already cached."""

from __future__ import annotations

import argparse
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    # a positional with choices, not a subparser: the dispatcher parses intermixed args, which subparsers refuse
    p.add_argument("action", choices=["fetch"], help="fetch: prepare the embedded model (instant when cached)")
    p.add_argument("--force", action="store_true", help="rebuild the cached copy")
    p.add_argument("--generate", metavar="PROMPT", help="also generate a short answer to PROMPT as a check")


def run(args: argparse.Namespace) -> int:
    from cpqs_bench import models

    t0 = time.perf_counter()
    path = models.fetch_embedded(force=args.force)
    print(f"embedded model ready: {path} ({time.perf_counter() - t0:.2f} s)")
    if args.generate:
        print(models.generate_check(str(path), args.generate))
    return 0
