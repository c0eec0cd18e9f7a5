"""``cpqs-bench make-negatives``: answer instructions with weaker models (CPQS's generated negatives).

The paper's recipe for contrastive data is "the same instruction, answered by a smaller model" (reference:
``renllll/CPQS-Tuning``, whose official negatives ``alpaca_gpt4_data_llama.json`` / ``alpaca_gpt4_data_qwen251.json``
hold small-model answers in ``模型输出``). This stage runs batched generation over the prompts (the generation
prefix comes from :func:`cpqs_bench.prompts.prompt_text`, the same prefix training and features use) with each
generator model of ``selectors.cpqs.generators`` (or the one ``generator``) and writes one JSON line per
(example, generator): ``{"id", "response", "generator", "n_new_tokens", "finished"}``.

* Sampling: greedy by default; ``generation_do_sample`` / ``generation_temperature`` / ``generation_top_p`` (seeded by
  ``selectors.cpqs.seed``) otherwise.
* An answer that reached ``max_new_tokens`` without a stop token is *unfinished*: it is kept in the part files (so a
  resumed run does not regenerate it) but dropped from the output and counted (``dropped_unfinished``) when
  ``generation_drop_unfinished`` (the default) — a truncated answer would teach the classifier "cut off = bad".
  Deliberate difference from a plain generate loop: nothing is closed with an end-of-turn token.

Generation pads on the left (every row's prompt then ends at the same column, so the new tokens of every row start
at the input width); each row's answer is cut at its first stop token. Work is saved in append-only part files
(``<out>.parts/<generator>/part-XXXXX.jsonl``, each written atomically), so an interrupted run resumes where it
stopped and skips ids already answered; the final ``out`` file is assembled in pool order at the end.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

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


def generate_batch(model: Any, tokenizer: Any, texts: Sequence[str], max_new_tokens: int, *,
                   sampling: dict[str, Any] | None = None) -> list[tuple[str, int, bool]]:
    """Answers for prompt texts: ``(answer, n_new_tokens, finished)`` per row, in input order.

    Greedy unless ``sampling = {"do_sample": True, "temperature": t, "top_p": p}``. Left padding; the generated part
    of every row is ``output[row, input_width:]``, cut at the first stop token (``finished`` = a stop token came).
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
    sampling = dict(sampling or {})
    if sampling.get("do_sample"):
        gen_kw = {"do_sample": True, "temperature": float(sampling.get("temperature", 1.0)),
                  "top_p": float(sampling.get("top_p", 1.0)), "top_k": None}
    else:
        gen_kw = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             pad_token_id=pad, eos_token_id=sorted(stops), **gen_kw)
    results = []
    for row in range(len(encoded)):
        new = out[row, width:].tolist()
        cut = next((i for i, t in enumerate(new) if t in stops), None)
        finished = cut is not None
        new = new[:cut] if finished else new
        results.append((tokenizer.decode(new, skip_special_tokens=True).strip(), len(new), finished))
    return results


def generate_negatives(examples: Sequence[Example], model: Any, tokenizer: Any, out: str | os.PathLike, *,
                       generator: str, template: str = "chat", system_prompt: str | None = None,
                       max_new_tokens: int = 256, batch_size: int = 8, part_size: int | None = None,
                       sampling: dict[str, Any] | None = None, seed: int = 0, drop_unfinished: bool = True,
                       progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """One generator's answers: generate missing ones into part files, then assemble ``out`` in pool order.

    Unfinished answers (no stop token within ``max_new_tokens``) stay in the parts but are left out of ``out`` and
    counted when ``drop_unfinished``. ``stop_after`` (batches) exists for tests of resumption: the run stops as if
    interrupted. Returns a summary.
    """
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    sampling = {"do_sample": False} if not (sampling or {}).get("do_sample") else dict(sampling)
    settings = {"generator": generator, "template": template, "system_prompt": system_prompt,
                "max_new_tokens": max_new_tokens}
    if sampling.get("do_sample"):  # greedy runs keep the settings file of earlier versions valid
        settings.update(sampling=sampling, seed=seed)
    guard_settings(out, settings)
    done = done_rows(out)
    todo = [ex for ex in examples if ex.id not in done]
    part_size = part_size or batch_size * 8
    d = parts_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    n_parts = len(list(d.glob("part-*.jsonl")))
    batches = 0
    if sampling.get("do_sample"):
        torch.manual_seed(seed + n_parts)  # a resumed run continues with a seed of its own part number
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task(f"make-negatives ({generator})", total=len(examples), completed=len(examples) - len(todo))
        for start in range(0, len(todo), part_size):
            chunk = todo[start: start + part_size]
            texts = {ex.id: prompts.prompt_text(tokenizer, ex, template, system_prompt) for ex in chunk}
            order = sorted(chunk, key=lambda ex: len(texts[ex.id]))  # less padding inside a part
            rows: dict[str, dict[str, Any]] = {}
            for b in range(0, len(order), batch_size):
                group = order[b: b + batch_size]
                answers = generate_batch(model, tokenizer, [texts[ex.id] for ex in group], max_new_tokens,
                                         sampling=sampling)
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
    unfinished = [ex.id for ex in examples if not done[ex.id]["finished"]]
    keep = [ex for ex in examples if done[ex.id]["finished"] or not drop_unfinished]
    n = write_jsonl(out, (done[ex.id] for ex in keep))
    summary = {"complete": True, "total": len(examples), "written": n, "generator": generator, "template": template,
               "max_new_tokens": max_new_tokens, "sampling": sampling,
               "empty": sum(1 for ex in examples if not done[ex.id]["response"]),
               "unfinished": len(unfinished), "dropped_unfinished": len(unfinished) if drop_unfinished else 0}
    write_json(Path(str(out) + ".summary.json"), summary)
    return summary


def _slug(generator: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", generator).strip("_") or "generator"


def generators_of(cq: Any, generator: str | Sequence[str] | None = None) -> list[str]:
    """The generator models to run: ``generator`` (a name or a list) if given, else ``selectors.cpqs.generators``,
    else ``selectors.cpqs.generator``."""
    if generator is None:
        names = list(cq.generators) or [cq.generator]
    elif isinstance(generator, str):
        names = [g.strip() for g in generator.split(",") if g.strip()]
    else:
        names = list(generator)
    if not names:
        raise ValueError("make-negatives: no generator model named")
    if len(set(names)) != len(names):
        raise ValueError(f"make-negatives: a generator is named twice: {names}")
    return names


def make_negatives(cfg: Any, examples: Sequence[Example], generator: str | Sequence[str] | None,
                   out: str | os.PathLike, *, loader: Callable[..., Any] | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Answer ``examples`` with each generator model into ``out`` (JSONL, pool order, generator by generator).

    ``generator``: a model spec, a comma list or a list of specs (``None``: ``selectors.cpqs.generators`` or
    ``generator``). Settings come from ``cfg.selectors.cpqs`` (``generation_*``) and ``cfg.prompt`` (template,
    system prompt). ``loader(spec, revision, dtype) -> (model, tokenizer, info)`` shares loaded models with the
    caller (default: :func:`cpqs_bench.models.load`). Returns a summary with per-generator counts.
    """
    from cpqs_bench import models

    cq = cfg.selectors.cpqs
    names = generators_of(cq, generator)
    out = Path(out)
    sampling = {"do_sample": bool(cq.generation_do_sample), "temperature": cq.generation_temperature,
                "top_p": cq.generation_top_p}
    per: dict[str, Any] = {}
    files: list[Path] = []
    for name in names:
        if loader is not None:
            model, tok, info = loader(name, None, cfg.model.dtype)
        else:
            model, tok, info = models.load(name, dtype=cfg.model.dtype, device=cfg.model.device)
        target = out if len(names) == 1 else out.with_name(f"{out.name}.by-generator") / f"{_slug(name)}.jsonl"
        per[name] = generate_negatives(
            examples, model, tok, target, generator=f"{info.spec}@{info.revision}", template=cfg.prompt.template,
            system_prompt=cfg.prompt.system_prompt, max_new_tokens=cq.generation_max_new_tokens,
            batch_size=cq.generation_batch_size, sampling=sampling, seed=cq.seed,
            drop_unfinished=cq.generation_drop_unfinished, progress=progress)
        files.append(target)
    if len(names) > 1:
        from cpqs_bench.io import read_jsonl

        write_jsonl(out, (row for f in files for row in read_jsonl(f)))
    summary = {"complete": all(s.get("complete") for s in per.values()), "total": len(examples),
               "generators": names, "per_generator": per,
               "written": sum(s.get("written", 0) for s in per.values()),
               "unfinished": sum(s.get("unfinished", 0) for s in per.values()),
               "dropped_unfinished": sum(s.get("dropped_unfinished", 0) for s in per.values()),
               "max_new_tokens": cq.generation_max_new_tokens, "sampling": sampling}
    write_json(Path(str(out) + ".summary.json"), summary)
    return summary
