"""Evaluation throughput: the harness's generation path vs bare batched ``generate`` on the same prompts.

* **harness** — :func:`cpqs_bench.evaluate.harness.evaluate_model` as the pipeline calls it (the base model from the
  shared loader, lm-eval ``simple_evaluate`` over the task YAML, per-item files, outputs verified), on a
  generation-only task (``cpqs_gsm8k_chat``: no sandbox), request cache off. Timed cold (first call in the process:
  tasks built) and warm (a second arm: tasks already built, model already loaded) — the warm call is what every
  arm after the first costs.
* **bare** — ``model.generate`` on exactly the prompts lm-eval built (read back from the harness's samples file),
  left-padded batches of the same size, greedy, the same new-token budget, stopping at EOS.

Generated tokens are counted the same way for both (tokens of the decoded continuation before the stop). Prints
tokens/s and the ratios harness/bare. Asserts nothing.

    .venv/bin/python benchmarks/bench_eval.py --limit 8 [--max-new-tokens 64] [--batch-size 8] [--out bench_eval.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from cpqs_bench.config import load_config
from cpqs_bench.evaluate.harness import evaluate_model
from cpqs_bench.io import read_jsonl
from cpqs_bench.model_cache import ModelCache


def bare_generate(model, tok, prompts: list[str], batch: int, max_new: int) -> tuple[float, int]:
    """Seconds and generated tokens (before EOS) of left-padded greedy batches over ``prompts``."""
    side = tok.padding_side
    tok.padding_side = "left"
    eos = tok.eos_token_id
    n_tokens = 0
    t0 = time.perf_counter()
    try:
        for i in range(0, len(prompts), batch):
            enc = tok(prompts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(
                    **enc.to(model.device), max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id
                )
            for row in out[:, enc["input_ids"].shape[1] :].tolist():
                n_tokens += row.index(eos) if eos in row else len(row)
    finally:
        tok.padding_side = side
    return time.perf_counter() - t0, n_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--task", default="cpqs_gsm8k_chat")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="warm harness calls and bare runs; the best time counts")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's; 1 is steadier on a shared, oversubscribed machine)",
    )
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = load_config(
        "smoke",
        [
            f"model.id={args.model}",
            f"evaluate.tasks=[{args.task}]",
            f"evaluate.limit={args.limit}",
            f"evaluate.max_new_tokens={args.max_new_tokens}",
            f"evaluate.batch_size={args.batch_size}",
            "evaluate.use_cache=false",
        ],
    )
    cache = ModelCache(device=cfg.model.device)
    model, tok, info = cache(cfg.model.id, cfg.model.revision, cfg.evaluate.dtype)
    print(
        f"model {args.model} ({info.dtype}, {info.device}); task {args.task}, {args.limit} items, batch "
        f"{args.batch_size}, {args.max_new_tokens} new tokens; torch threads {torch.get_num_threads()}; shared "
        "machine: ratios are the signal, absolute numbers vary",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        times: dict[str, float] = {}
        for k, name in enumerate(["cold"] + ["warm"] * args.rounds):
            t0 = time.perf_counter()
            evaluate_model(cfg, Path(tmp) / f"{name}{k}", loader=cache)
            seconds = time.perf_counter() - t0
            times[name] = min(times.get(name, seconds), seconds)
            print(f"harness {name}: {seconds:.2f} s", flush=True)
        samples = read_jsonl(Path(tmp) / "warm1" / "samples" / f"{args.task}.jsonl")
        prompts = [
            s["arguments"]["gen_args_0"]["arg_0"] if isinstance(s["arguments"], dict) else s["arguments"][0][0]
            for s in sorted(samples, key=lambda s: s["doc_id"])
        ]
        harness_tokens = sum(len(tok(s["resps"][0][0], add_special_tokens=False)["input_ids"]) for s in samples)
        bare_generate(model, tok, prompts[:1], 1, 4)  # warm-up
        bare_s = float("inf")
        for _ in range(args.rounds):
            seconds, bare_tokens = bare_generate(model, tok, prompts, args.batch_size, args.max_new_tokens)
            bare_s = min(bare_s, seconds)
            print(f"bare generate: {seconds:.2f} s", flush=True)
    result = {
        "items": len(prompts),
        "harness_tokens": harness_tokens,
        "bare_tokens": bare_tokens,
        "harness_cold_tokens_per_s": harness_tokens / times["cold"],
        "harness_warm_tokens_per_s": harness_tokens / times["warm"],
        "bare_tokens_per_s": bare_tokens / bare_s,
    }
    result["ratio_warm"] = result["harness_warm_tokens_per_s"] / result["bare_tokens_per_s"]
    result["ratio_cold"] = result["harness_cold_tokens_per_s"] / result["bare_tokens_per_s"]
    print("\nEvaluation, harness vs bare batched generate (same prompts, same process)")
    for k, v in result.items():
        print(f"{k:>28}: {v:.3f}" if isinstance(v, float) else f"{k:>28}: {v}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
