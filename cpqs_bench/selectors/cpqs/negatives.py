"""``cpqs-bench make-negatives``: answer a pool's instructions with a weaker model (CPQS's generated negatives).

The paper's recipe for contrastive data is "the same instruction, answered by a smaller model". This stage runs
batched greedy generation over the pool's prompts (the generation prefix comes from
:func:`cpqs_bench.prompts.prompt_text`, the same prefix training and features use) and writes one JSON line per
example: ``{"id", "response", "generator", "n_new_tokens", "finished"}``.

Generation pads on the left (every row's prompt then ends at the same column, so the new tokens of every row start
at the input width); each row's answer is cut at its first stop token. Work is saved in append-only part files
(``<out>.parts/part-XXXXX.jsonl``, each written atomically), so an interrupted run resumes where it stopped and
skips ids already answered; the final ``--out`` file is assembled in pool order at the end.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Sequence

from cpqs_bench import prompts
from cpqs_bench.data.example import Example
from cpqs_bench.io import read_json, write_json, write_jsonl


def parts_dir(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def done_rows(out: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Rows already generated (from the part files); a torn part cannot exist (atomic writes)."""
    rows: dict[str, dict[str, Any]] = {}
    d = parts_dir(out)
    for part in sorted(d.glob("part-*.jsonl")) if d.exists() else []:
        with open(part, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{part}:{lineno}: invalid JSON ({exc.msg})") from None
                    rows[str(row["id"])] = row
    return rows


def guard_settings(out: str | os.PathLike, settings: dict[str, Any]) -> None:
    """Parts are reused by id only, so parts made with another generator or generation settings must never be
    resumed into (they would silently mix into the output): record the settings, refuse a mismatch. The batch and
    part sizes are not settings (batched generation equals unbatched)."""
    d = parts_dir(out)
    path = d / "settings.json"
    if path.exists():
        prev = read_json(path)
        if prev != settings:
            diff = sorted(k for k in set(prev) | set(settings) if prev.get(k) != settings.get(k))
            raise ValueError(f"{d} holds answers made with different {', '.join(diff)} "
                             f"({ {k: prev.get(k) for k in diff} } vs { {k: settings.get(k) for k in diff} }); "
                             "use another --out or delete it")
        return
    write_json(path, settings)


def _stop_ids(tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id}
    for tok in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>"):
        tid = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
        if tid is not None:
            ids.add(tid)
    return {i for i in ids if i is not None}


def generate_batch(model: Any, tokenizer: Any, texts: Sequence[str], max_new_tokens: int) -> list[tuple[str, int, bool]]:
    """Greedy answers for prompt texts: ``(answer, n_new_tokens, finished)`` per row, in input order.

    Left padding; the generated part of every row is ``output[row, input_width:]``, cut at the first stop token.
    """
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, width - len(e):] = torch.tensor(e, dtype=torch.long)
        mask[row, width - len(e):] = 1
    device = next(model.parameters()).device
    stops = _stop_ids(tokenizer)
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=sorted(stops),
                             temperature=None, top_p=None, top_k=None)
    results = []
    for row in range(len(encoded)):
        new = out[row, width:].tolist()
        cut = next((i for i, t in enumerate(new) if t in stops), None)
        finished = cut is not None
        new = new[:cut] if finished else new
        results.append((tokenizer.decode(new, skip_special_tokens=True).strip(), len(new), finished))
    return results


def make_negatives(examples: Sequence[Example], model: Any, tokenizer: Any, out: str | os.PathLike, *,
                   generator: str, template: str = "chat", system_prompt: str | None = None,
                   max_new_tokens: int = 256, batch_size: int = 8, part_size: int | None = None,
                   progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Generate missing answers into part files, then assemble ``out`` in pool order. Returns a summary.

    ``stop_after`` (batches) exists for tests of resumption: the run stops as if interrupted.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    guard_settings(out, {"generator": generator, "template": template, "system_prompt": system_prompt,
                         "max_new_tokens": max_new_tokens})
    done = done_rows(out)
    todo = [ex for ex in examples if ex.id not in done]
    # Longest prompts first within the todo list would waste less padding, but pool order keeps parts readable
    # and resumption simple; sort by prompt length inside each part instead.
    part_size = part_size or batch_size * 8
    d = parts_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    n_parts = len(list(d.glob("part-*.jsonl")))
    batches = 0
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task(f"make-negatives ({generator})", total=len(examples), completed=len(done))
        for start in range(0, len(todo), part_size):
            chunk = todo[start: start + part_size]
            texts = {ex.id: prompts.prompt_text(tokenizer, ex, template, system_prompt) for ex in chunk}
            order = sorted(chunk, key=lambda ex: len(texts[ex.id]))
            rows: dict[str, dict[str, Any]] = {}
            for b in range(0, len(order), batch_size):
                group = order[b: b + batch_size]
                answers = generate_batch(model, tokenizer, [texts[ex.id] for ex in group], max_new_tokens)
                for ex, (answer, n_new, finished) in zip(group, answers):
                    rows[ex.id] = {"id": ex.id, "response": answer, "generator": generator,
                                   "n_new_tokens": n_new, "finished": finished}
                bar.advance(task, len(group))
                batches += 1
                if stop_after is not None and batches >= stop_after:
                    break
            write_jsonl(d / f"part-{n_parts:05d}.jsonl", [rows[ex.id] for ex in chunk if ex.id in rows])
            n_parts += 1
            if stop_after is not None and batches >= stop_after:
                return {"complete": False, "generated": len(done_rows(out)), "total": len(examples)}
    done = done_rows(out)
    missing = [ex.id for ex in examples if ex.id not in done]
    if missing:
        raise RuntimeError(f"make-negatives: {len(missing)} ids missing after generation (first: {missing[0]})")
    n = write_jsonl(out, (done[ex.id] for ex in examples))
    summary = {"complete": True, "total": n, "generator": generator, "template": template,
               "max_new_tokens": max_new_tokens, "empty": sum(1 for ex in examples if not done[ex.id]["response"]),
               "unfinished": sum(1 for ex in examples if not done[ex.id]["finished"])}
    write_json(Path(str(out) + ".summary.json"), summary)
    return summary


def main(data: str, generator: str, out: str, *, config: str = "smoke", overrides: Sequence[str] = (),
         limit: int | None = None, batch_size: int | None = None, max_new_tokens: int | None = None,
         progress: bool = True) -> dict[str, Any]:
    """Library entry of ``cpqs-bench make-negatives``: read the pool, load the generator, generate."""
    from cpqs_bench import models
    from cpqs_bench.config import load_config
    from cpqs_bench.data.pool import read_pool

    cfg = load_config(config, list(overrides))
    cq = cfg.selectors.cpqs
    pool = read_pool(data, schema=cfg.data.schema, field_map=cfg.data.field_map, mirror=cfg.data.mirror,
                     limit=limit, max_rejected_fraction=cfg.data.max_rejected_fraction)
    model, tok, info = models.load(generator, dtype=cfg.model.dtype, device=cfg.model.device)
    tok.padding_side = "left"
    return make_negatives(pool.examples, model, tok, out, generator=f"{info.spec}@{info.revision}",
                          template=cfg.prompt.template, system_prompt=cfg.prompt.system_prompt,
                          max_new_tokens=max_new_tokens or cq.generation_max_new_tokens,
                          batch_size=batch_size or cq.generation_batch_size, progress=progress)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="pool: named dataset, file or hf: spec")
    p.add_argument("--generator", default="embedded", help="the weaker model (spec as for --model)")
    p.add_argument("--out", required=True, help="output JSONL (resumable; parts kept in OUT.parts/)")
    p.add_argument("--config", default="smoke", help="preset name or YAML path")
    p.add_argument("--limit", type=int, default=None, help="only the first N pool examples")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("overrides", nargs="*", help="config overrides key=value")


def run_cli(args: argparse.Namespace) -> int:
    summary = main(args.data, args.generator, args.out, config=args.config, overrides=args.overrides,
                   limit=args.limit, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    print(json.dumps(summary))
    return 0
