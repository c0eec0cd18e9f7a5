"""SFT throughput: the project's fine-tuning path vs a bare packed LoRA loop. Same process, same model, same rows.

* **project** — :func:`cpqs_bench.finetune.sft.finetune_arm` as the pipeline calls it (base model from the shared
  loader, Trainer + peft LoRA, length-grouped micro-batches, checkpoints by time, no extra loss passes), timed twice:
  the training loop alone (the manifest's ``training.wall_seconds``) and the whole call (tokenise, Trainer set-up,
  train, save the adapter + manifest), with the base model already loaded.
* **bare** — plain PyTorch + peft: the same LoRA (r, alpha, all-linear), the same tokenised rows concatenated and
  cut into packed rows of ``max_length`` (no padding at all; packed rows attend across examples, which the project
  never does — this is an upper bound, not a recipe), the same micro-batch, accumulation, AdamW, precision
  (bf16 autocast where the project resolves bf16), one pass over the same tokens.

``--padded`` times the project twice per round, side by side: with ``finetune.packing=true`` (each micro-batch one
padding-free row, examples kept apart by the block-diagonal causal mask transformers builds from restarting position
ids) as "project", and with the default padded micro-batches as "padded".

Also a third timing, **bare on the project's batches** (the same length-grouped micro-batches, right-padded (the
``finetune.packing=false`` layout), plain loop): project/that ratio is the framework's own overhead, project/bare-packed adds padding and row length.
Prints tokens/s (all real input tokens and supervised tokens), the ratios project/bare, and the padding
fraction of the project's micro-batches with length grouping vs the plain random order. Asserts nothing.

    .venv/bin/python benchmarks/bench_sft.py --n 32 [--model embedded] [--max-length 384] [--out bench_sft.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cpqs_bench.config import load_config
from cpqs_bench.data.pool import read_pool
from cpqs_bench.finetune import sft
from cpqs_bench.finetune.dataset import IGNORE_INDEX, length_grouped_order, padding_fraction
from cpqs_bench.model_cache import ModelCache
from cpqs_bench.prompts import pad_token_id, right_pad


def packed_rows(rows: list[dict], width: int) -> list[dict]:
    """Concatenate every row (ids + labels) and cut into ``width``-token rows: zero padding."""
    ids = [t for r in rows for t in r["input_ids"]]
    labels = [t for r in rows for t in r["labels"]]
    return [{"input_ids": ids[i : i + width], "labels": labels[i : i + width]} for i in range(0, len(ids), width)]


def bare_loop(
    model: Any, ft: Any, rows: list[dict], precision: str, accum: int, seed: int, pad_id: int | None = None
) -> dict[str, float]:
    """One pass of plain LoRA training over ``rows``: packed (equal width; the ragged last row trimmed), or with
    ``pad_id`` the rows as they come, right-padded per micro-batch (the project's batches without the Trainer)."""
    peft_model = sft.add_lora(model, ft, seed)
    use_cache = model.config.use_cache
    try:
        peft_model.train()
        params = [p for p in peft_model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=ft.lr, weight_decay=ft.weight_decay)
        device = next(peft_model.parameters()).device
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        mb = ft.micro_batch_size
        tokens = supervised = 0
        t0 = time.perf_counter()
        for step, i in enumerate(range(0, len(rows), mb)):
            chunk = rows[i : i + mb]
            if pad_id is None:
                width = min(len(r["input_ids"]) for r in chunk)  # the ragged last row is trimmed, never padded
                ids = torch.tensor([r["input_ids"][:width] for r in chunk], device=device)
                labels = torch.tensor([r["labels"][:width] for r in chunk], device=device)
            else:
                ids, _, labels = right_pad(
                    [r["input_ids"] for r in chunk], pad_id, fill=[r["labels"] for r in chunk], fill_pad=IGNORE_INDEX
                )
                ids, labels = ids.to(device), labels.to(device)
            with autocast:
                loss = peft_model(input_ids=ids, labels=labels).loss / accum
            loss.backward()
            tokens += sum(min(len(r["input_ids"]), ids.shape[1]) for r in chunk)  # real tokens only
            supervised += int((labels[:, 1:] != IGNORE_INDEX).sum())
            if (step + 1) % accum == 0:
                torch.nn.utils.clip_grad_norm_(params, ft.max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()  # the optimizer steps are queued, not done, until the device catches up
        seconds = time.perf_counter() - t0
    finally:
        sft.remove_lora(peft_model, model, ft, use_cache)
    return {"seconds": seconds, "tokens": tokens, "supervised": supervised}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32, help="rows (examples) in the arm")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--pool", default="alpaca_gpt4")
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--rounds", type=int, default=1, help="repetitions; the best time per path counts")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's; 1 is steadier on a shared, oversubscribed machine)",
    )
    ap.add_argument(
        "--padded",
        action="store_true",
        help="also time the project path with finetune.packing=false (the padded micro-batches), "
        "side by side in every round",
    )
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    overrides = [
        f"model.id={args.model}",
        "finetune.epochs=1",
        f"finetune.max_length={args.max_length}",
        f"finetune.precision={args.precision}",
        "finetune.logging_steps=1000",
        "publish.wandb=false",
    ]
    cfg = load_config("smoke", [*overrides, "finetune.packing=true"] if args.padded else overrides)
    ft = cfg.finetune
    pool = read_pool(args.pool, limit=args.n).examples
    device = sft.models.pick_device(cfg.model.device)
    precision = sft.resolve_precision(ft.precision, device)
    cache = ModelCache(device=device)
    model, tok, _ = cache(cfg.model.id, cfg.model.revision, sft.base_dtype(precision))
    accum = sft.grad_accum(ft.batch_size, ft.micro_batch_size, 1)
    with tempfile.TemporaryDirectory() as tmp:
        sel = Path(tmp) / "sel.jsonl"
        sel.write_text("".join(json.dumps({"id": ex.id, "kept": True}) + "\n" for ex in pool))
        data = sft.build_data(cfg, sel, pool, tok, sft.models.model_max_length(model))
        n_tokens, n_sup = data.n_tokens, data.n_supervised
        print(
            f"model {args.model} ({precision}, {device}); {len(data.rows)} rows, {n_tokens} tokens "
            f"({n_sup} supervised); micro-batch {ft.micro_batch_size} x accum {accum}; torch threads "
            f"{torch.get_num_threads()}; shared machine: ratios are the signal, absolute numbers vary",
            flush=True,
        )
        bare_rows = packed_rows(data.rows, args.max_length)
        bare_loop(model, ft, bare_rows[: ft.micro_batch_size], precision, 1, 0)  # warm-up (kernels, allocator)
        grouped = length_grouped_order([len(r["input_ids"]) for r in data.rows], ft.micro_batch_size, 0, 0)
        best: dict[str, Any] = {}

        def train(c: Any, out: Path) -> dict[str, Any]:  # the project's path: one arm through finetune_arm
            return sft.finetune_arm(
                sft.ArmConfig.of(c),
                sel,
                pool,
                out,
                seed=0,
                arm="bench",
                loader=cache,
                options=sft.ArmOptions(progress_bar=False),
            )

        for rnd in range(args.rounds):
            t0 = time.perf_counter()
            manifest = train(cfg, Path(tmp) / f"arm{rnd}")
            call = time.perf_counter() - t0
            loop = manifest["training"]["wall_seconds"]
            if args.padded:
                cfg_pad = load_config("smoke", [*overrides, "finetune.packing=false"])
                padded = train(cfg_pad, Path(tmp) / f"pad{rnd}")["training"]["wall_seconds"]
                print(f"[round {rnd}] project loop with packing=false {padded:.2f} s", flush=True)
                best["padded"] = min(best.get("padded", padded), padded)
            bare = bare_loop(model, ft, bare_rows, precision, accum, 0)
            same = bare_loop(model, ft, [data.rows[i] for i in grouped], precision, accum, 0, pad_token_id(tok))
            print(
                f"[round {rnd}] project loop {loop:.2f} s, call {call:.2f} s; bare packed {bare['seconds']:.2f} s; "
                f"bare on the project's batches {same['seconds']:.2f} s",
                flush=True,
            )
            if "loop" not in best or loop < best["loop"]:
                best.update(loop=loop, call=call)
            if "bare" not in best or bare["seconds"] < best["bare"]["seconds"]:
                best["bare"] = bare
            if "same" not in best or same["seconds"] < best["same"]["seconds"]:
                best["same"] = same
        shuffled = list(torch.randperm(len(data.rows), generator=torch.Generator().manual_seed(0)).tolist())
        bare = best["bare"]
        result = {
            "rows": len(data.rows),
            "tokens": n_tokens,
            "supervised_tokens": n_sup,
            "precision": precision,
            "project_loop_tokens_per_s": n_tokens / best["loop"],
            "project_loop_supervised_per_s": n_sup / best["loop"],
            "project_call_tokens_per_s": n_tokens / best["call"],
            "bare_tokens_per_s": bare["tokens"] / bare["seconds"],
            "bare_supervised_per_s": bare["supervised"] / bare["seconds"],
            "bare_same_batches_tokens_per_s": best["same"]["tokens"] / best["same"]["seconds"],
            "padding_fraction_grouped": padding_fraction(data.rows, grouped, ft.micro_batch_size),
            "padding_fraction_random_order": padding_fraction(data.rows, shuffled, ft.micro_batch_size),
        }
        if "padded" in best:
            result["project_loop_padded_tokens_per_s"] = n_tokens / best["padded"]
            result["ratio_loop_padded_tokens"] = (
                result["project_loop_padded_tokens_per_s"] / result["bare_tokens_per_s"]
            )
            result["ratio_loop_padded_supervised"] = (n_sup / best["padded"]) / result["bare_supervised_per_s"]
        result["ratio_loop_tokens"] = result["project_loop_tokens_per_s"] / result["bare_tokens_per_s"]
        result["ratio_loop_supervised"] = result["project_loop_supervised_per_s"] / result["bare_supervised_per_s"]
        result["ratio_call_tokens"] = result["project_call_tokens_per_s"] / result["bare_tokens_per_s"]
        result["ratio_loop_vs_bare_same_batches"] = (
            result["project_loop_tokens_per_s"] / result["bare_same_batches_tokens_per_s"]
        )
    print("\nSFT, project vs bare packed LoRA loop (same rows, same process)")
    for k, v in result.items():
        print(f"{k:>32}: {v:.3f}" if isinstance(v, float) else f"{k:>32}: {v}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
