"""LM head + cross-entropy per chunk of scored positions: the measurement behind ``ifd.head_chunk`` on a CPU.

Over the same hidden states (real text through the model's backbone, ``--positions`` of them), times interleaved
repetitions of, per chunk size: the head alone; head + cross-entropy on the logits in their dtype (what IFD runs);
head + fp32 copy + fp32 cross-entropy (what IFD ran before). Prints the minimum and median per variant.

    .venv/bin/python benchmarks/ifd_head_chunk.py [--chunks 64,128,192,256,512] [--reps 9]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from cpqs_bench import models
from cpqs_bench.data.pool import read_pool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--pool", default="alpaca_gpt4")
    ap.add_argument("--positions", type=int, default=2048)
    ap.add_argument("--chunks", default="64,128,192,256,512")
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()

    model, tok, info = models.load(args.model, dtype="auto")
    head = model.get_output_embeddings()
    text = "\n".join(ex.response for ex in read_pool(args.pool, limit=200).examples)
    ids = tok(text, return_tensors="pt")["input_ids"][:, : args.positions + 1].to(info.device)
    with torch.inference_mode():
        hidden = model.base_model(input_ids=ids[:, :-1]).last_hidden_state[0]
    targets = ids[0, 1:]
    n = hidden.shape[0]

    variants = {
        "head": lambda h, t: head(h),
        "head + CE (logits' dtype)": lambda h, t: F.cross_entropy(head(h), t, reduction="none"),
        "head + CE (fp32 copy)": lambda h, t: F.cross_entropy(head(h).float(), t, reduction="none"),
    }
    chunks = [int(c) for c in args.chunks.split(",")]
    times: dict[tuple[str, int], list[float]] = {(v, c): [] for v in variants for c in chunks}
    with torch.inference_mode():
        for _ in range(args.reps):
            for (name, chunk), out in times.items():
                fn = variants[name]
                t0 = time.perf_counter()
                for i in range(0, n, chunk):
                    fn(hidden[i : i + chunk], targets[i : i + chunk])
                if info.device.startswith("cuda"):
                    torch.cuda.synchronize()
                out.append(time.perf_counter() - t0)
    print(
        f"model {info.spec} dtype {info.dtype} device {info.device}; {n} positions, vocab {head.weight.shape[0]}; "
        f"torch threads {torch.get_num_threads()}; {args.reps} interleaved repetitions"
    )
    for (name, chunk), out in times.items():
        print(f"{name:>26} @ {chunk:>4}: min {min(out) * 1e3:6.0f} ms, median {statistics.median(out) * 1e3:6.0f} ms")


if __name__ == "__main__":
    main()
