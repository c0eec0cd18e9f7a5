"""A right-padded forward with and without the attention mask: why IFD and the CPQS features keep the mask.

Causal attention already keeps real tokens of a right-padded batch from seeing their row's later pads, so the mask
could be dropped; it was (12d591f) and reverted (bceb036) after this benchmark found no speedup on this CPU
(``docs/performance.md``).

Builds one right-padded batch of random token ids (``--batch`` rows, lengths spread evenly from ``--length`` down to
``(1 - --spread) * --length``; ``--spread 0``: no padding at all), checks that the real tokens' hidden states (every layer) are equal with and without the mask, then
times interleaved repetitions of both forwards through the backbone (no LM head) and prints the minimum and median
tokens per second of each.

    .venv/bin/python benchmarks/causal_mask.py [--batch 16] [--length 320] [--spread 0.75] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cpqs_bench import models, prompts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=320)
    ap.add_argument("--spread", type=float, default=0.75)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    model, _, _ = models.load(args.model, revision=None, dtype="auto", device="cpu")
    gen = torch.Generator().manual_seed(0)
    lengths = [max(1, args.length - i * (3 * args.length // 4) // max(1, args.batch - 1)) for i in range(args.batch)]
    rows = [torch.randint(100, 20000, (n,), generator=gen).tolist() for n in lengths]
    ids, mask = prompts.right_pad(rows, pad_id=0)
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model

    with torch.inference_mode():
        a = base(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        b = base(input_ids=ids, output_hidden_states=True).hidden_states
    worst = max(
        float((x[r, :n].float() - y[r, :n].float()).abs().max()) for x, y in zip(a, b) for r, n in enumerate(lengths)
    )
    print(f"dtype {next(model.parameters()).dtype}, threads {torch.get_num_threads()}, lengths {lengths}")
    print(f"max |difference| of real tokens' hidden states (all layers), mask vs none: {worst:.3g}")

    real = sum(lengths)
    times: dict[str, list[float]] = {"mask": [], "none": []}
    with torch.inference_mode():
        base(input_ids=ids)  # warm-up
        for _ in range(args.reps):
            for name, m in (("mask", mask), ("none", None)):
                t0 = time.perf_counter()
                base(input_ids=ids, attention_mask=m)
                times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(
            f"{name:>5}: {real / min(ts):7.0f} real tok/s best, {real / statistics.median(ts):7.0f} median "
            f"({args.batch} x {args.length} padded)"
        )


if __name__ == "__main__":
    main()
