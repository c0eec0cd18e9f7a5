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

**Backends** (``selectors.cpqs.generation_backend``): ``auto`` (the default) runs **vLLM on a GPU** — when ``vllm``
is importable and the model device (``model.device``, ``auto`` = CUDA when available) is CUDA — and HF ``generate``
otherwise (CPU, MPS, or no vLLM); ``hf`` / ``vllm`` force one (``vllm`` fails when it is not installed). Both get the
same prompt token ids (the ``prompt_text`` string encoded without added special tokens: vLLM is handed the ids, not
the string, since its own encoding of a string would add a second BOS), the same stop tokens, greedy decoding
(``temperature=0``) or the configured sampling, and ``max_new_tokens`` (vLLM ``max_tokens``); a vLLM answer is
unfinished when ``finish_reason == "length"``, and its text is decoded from its token ids (stop token removed) by the
same tokenizer call as the HF path. vLLM sampling is seeded per request from ``(seed, example id)``, so a sampled
answer does not depend on batching or resumption. The vLLM engine is loaded from the generator's resolved path and
revision in ``model.dtype`` (a shared HF ``loader`` is not used for it); a vLLM run records ``"backend": "vllm"``
in its settings, so HF and vLLM parts never mix on resume. Greedy vLLM and HF answers agree up to kernel numerics,
not bit for bit.

**Differences from the reference** (Victory0431/CPQS-Tuning has no generation script: its ``train_cnn.py`` reads
ready-made negative files, ``alpaca_gpt4_data_llama.json`` / ``alpaca_gpt4_data_qwen251.json``, whose names are all
it says of their models): the generators, the prompt (the training template's generation prefix) and the decoding
settings are this project's choices, recorded with every answer; unfinished answers are dropped rather than kept.

HF generation pads on the left (every row's prompt then ends at the same column, so the new tokens of every row start
at the input width); each row's answer is cut at its first stop token. vLLM gets a whole part per call (its own
continuous batching). Work is saved in append-only part files
(``<out>.parts/<generator>/part-XXXXX.jsonl``, each written atomically), so an interrupted run resumes where it
stopped and skips ids already answered; the final ``out`` file is assembled in pool order at the end.
"""

from __future__ import annotations

import gc
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from cpqs_bench import prompts
from cpqs_bench.data.example import Example
from cpqs_bench.io import read_json, stable_hash, write_json, write_jsonl

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from vllm import LLM

    from cpqs_bench.config import Config
    from cpqs_bench.models import ModelInfo
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.selectors.cpqs.config import CPQSConfig


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
            raise ValueError(
                f"{d} holds answers made with different {', '.join(diff)} "
                f"({ {k: prev.get(k) for k in diff} } vs { {k: settings.get(k) for k in diff} }); "
                "use another --out or delete it"
            )
        return
    write_json(path, settings)


def _stop_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids = {tokenizer.eos_token_id}
    for tok in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>"):
        tid = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
        if tid is not None:
            ids.add(tid)
    return {i for i in ids if i is not None}


def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_new_tokens: int,
    *,
    sampling: dict[str, Any] | None = None,
) -> list[tuple[str, int, bool]]:
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
        ids[row, width - len(e) :] = torch.tensor(e, dtype=torch.long)
        mask[row, width - len(e) :] = 1
    device = next(model.parameters()).device
    stops = _stop_ids(tokenizer)
    sampling = dict(sampling or {})
    if sampling.get("do_sample"):
        gen_kw = {
            "do_sample": True,
            "temperature": float(sampling.get("temperature", 1.0)),
            "top_p": float(sampling.get("top_p", 1.0)),
            "top_k": None,
        }
    else:
        gen_kw = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    with torch.no_grad():
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=sorted(stops),
            **gen_kw,
        )
    results = []
    for row in range(len(encoded)):
        new = out[row, width:].tolist()
        cut = next((i for i, t in enumerate(new) if t in stops), None)
        finished = cut is not None
        new = new[:cut] if finished else new
        results.append((tokenizer.decode(new, skip_special_tokens=True).strip(), len(new), finished))
    return results


BACKENDS = ("auto", "hf", "vllm")
VLLM_PART_SIZE = 512  # prompts per vLLM call (and per part file) unless part_size says otherwise


def vllm_importable() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: str) -> str:
    """``hf`` or ``vllm`` for ``selectors.cpqs.generation_backend`` on ``device`` (a resolved device name)."""
    if backend not in BACKENDS:
        raise ValueError(f"selectors.cpqs.generation_backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "vllm" if str(device).startswith("cuda") and vllm_importable() else "hf"
    if backend == "vllm" and not vllm_importable():
        raise ValueError(
            "selectors.cpqs.generation_backend=vllm but the vllm package is not importable "
            "(pip install vllm, or use generation_backend=hf)"
        )
    return backend


def _request_seed(seed: int, example_id: str) -> int:
    return int(stable_hash([seed, example_id], 8), 16) % (2**31)


def vllm_generate_batch(
    llm: LLM,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_new_tokens: int,
    *,
    sampling: dict[str, Any] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[tuple[str, int, bool]]:
    """:func:`generate_batch` on a ``vllm.LLM``: same prompt ids, stop tokens, decoding and ``(answer,
    n_new_tokens, finished)`` rows; ``finished`` is ``finish_reason == "stop"``, ``"length"`` is unfinished."""
    from vllm import SamplingParams

    stops = _stop_ids(tokenizer)
    sampling = dict(sampling or {})
    common = {"max_tokens": int(max_new_tokens), "stop_token_ids": sorted(stops), "n": 1}
    if sampling.get("do_sample"):
        if seeds is None or len(seeds) != len(texts):
            raise ValueError("vLLM sampling needs one seed per prompt")
        params: Any = [
            SamplingParams(
                temperature=float(sampling.get("temperature", 1.0)),
                top_p=float(sampling.get("top_p", 1.0)),
                seed=int(sd),
                **common,
            )
            for sd in seeds
        ]
    else:
        params = SamplingParams(temperature=0.0, top_p=1.0, **common)
    requests = [{"prompt_token_ids": list(tokenizer(t, add_special_tokens=False)["input_ids"])} for t in texts]
    outputs = llm.generate(requests, params, use_tqdm=False)
    if len(outputs) != len(texts):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(texts)} prompts")
    results = []
    for out in outputs:  # LLM.generate returns outputs in prompt order
        completion = out.outputs[0]
        reason = completion.finish_reason
        if reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM finished a request with finish_reason={reason!r}")
        new = list(completion.token_ids)
        finished = reason == "stop"
        if finished and new and new[-1] in stops:  # vLLM keeps the stop token in token_ids; HF's cut drops it
            new = new[:-1]
        results.append((tokenizer.decode(new, skip_special_tokens=True).strip(), len(new), finished))
    return results


def load_vllm(spec: str, dtype: str, seed: int, device: str = "cuda") -> tuple[LLM, PreTrainedTokenizerBase, ModelInfo]:
    """(vllm.LLM, the project's tokenizer for ``spec``, ModelInfo) for a generator model."""
    from vllm import LLM

    from cpqs_bench import models

    path, rev = models.resolve(spec)
    tok = models.load_tokenizer(spec)
    hub_rev = rev if not Path(path).is_dir() else None
    llm = LLM(model=path, revision=hub_rev, tokenizer=path, tokenizer_revision=hub_rev, dtype=dtype, seed=seed)
    return llm, tok, models.ModelInfo(spec=spec, path=path, revision=rev, dtype=dtype, device=device)


@dataclass(frozen=True)
class GenerationSettings:
    """How one generator answers: ``generator`` (its name as recorded), the prompt ``template`` / ``system_prompt``,
    ``max_new_tokens``, ``sampling`` (greedy unless ``{"do_sample": True, "temperature": t, "top_p": p}``) and its
    ``seed``, the ``backend`` (``hf``: a transformers model; ``vllm``: a ``vllm.LLM``, one call per part); how it
    batches (``batch_size``, ``part_size``: rows per part file, None: the backend's default) and whether unfinished
    answers (no stop token within ``max_new_tokens``) are left out of the output (``drop_unfinished``)."""

    generator: str
    template: str = "chat"
    system_prompt: str | None = None
    max_new_tokens: int = 256
    batch_size: int = 8
    part_size: int | None = None
    sampling: dict[str, Any] | None = None
    seed: int = 0
    drop_unfinished: bool = True
    backend: str = "hf"


def generate_negatives(
    examples: Sequence[Example],
    model: PreTrainedModel | LLM,
    tokenizer: PreTrainedTokenizerBase,
    out: str | os.PathLike,
    gen: GenerationSettings,
    *,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """One generator's answers (``gen``): generate missing ones into part files, then assemble ``out`` in pool order.

    Unfinished answers stay in the parts but are left out of ``out`` and counted when ``gen.drop_unfinished``.
    ``stop_after`` (generate calls) exists for tests of resumption: the run stops as if interrupted. Returns a
    summary.
    """
    generator, template, system_prompt = gen.generator, gen.template, gen.system_prompt
    max_new_tokens, batch_size, part_size, sampling = gen.max_new_tokens, gen.batch_size, gen.part_size, gen.sampling
    seed, drop_unfinished, backend = gen.seed, gen.drop_unfinished, gen.backend
    if backend not in ("hf", "vllm"):
        raise ValueError(f"generate_negatives: backend must be 'hf' or 'vllm', got {backend!r}")
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    sampling = dict(sampling) if sampling and sampling.get("do_sample") else {"do_sample": False}
    settings: dict[str, Any] = {
        "generator": generator,
        "template": template,
        "system_prompt": system_prompt,
        "max_new_tokens": max_new_tokens,
    }
    if sampling.get("do_sample"):  # greedy runs keep the settings file of earlier versions valid
        settings.update(sampling=sampling, seed=seed)
    if backend == "vllm":  # HF runs keep the settings file of earlier versions valid
        settings["backend"] = "vllm"
    guard_settings(out, settings)
    done = done_rows(out)
    todo = [ex for ex in examples if ex.id not in done]
    part_size = part_size or (VLLM_PART_SIZE if backend == "vllm" else batch_size * 8)
    step = part_size if backend == "vllm" else batch_size
    d = parts_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    n_parts = len(list(d.glob("part-*.jsonl")))
    batches = 0
    if sampling.get("do_sample") and backend == "hf":
        torch.manual_seed(seed + n_parts)  # a resumed run continues with a seed of its own part number
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not progress,
    ) as bar:
        task = bar.add_task(f"make-negatives ({generator})", total=len(examples), completed=len(examples) - len(todo))
        for start in range(0, len(todo), part_size):
            chunk = todo[start : start + part_size]
            texts = {ex.id: prompts.prompt_text(tokenizer, ex, template, system_prompt) for ex in chunk}
            order = sorted(chunk, key=lambda ex: len(texts[ex.id]))  # less padding inside a part
            rows: dict[str, dict[str, Any]] = {}
            for b in range(0, len(order), step):
                group = order[b : b + step]
                if backend == "vllm":
                    answers = vllm_generate_batch(
                        model,
                        tokenizer,
                        [texts[ex.id] for ex in group],
                        max_new_tokens,
                        sampling=sampling,
                        seeds=[_request_seed(seed, ex.id) for ex in group],
                    )
                else:
                    answers = generate_batch(
                        model, tokenizer, [texts[ex.id] for ex in group], max_new_tokens, sampling=sampling
                    )
                for ex, (answer, n_new, finished) in zip(group, answers):
                    rows[ex.id] = {
                        "id": ex.id,
                        "response": answer,
                        "generator": generator,
                        "n_new_tokens": n_new,
                        "finished": finished,
                    }
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
    summary = {
        "complete": True,
        "total": len(examples),
        "written": n,
        "generator": generator,
        "backend": backend,
        "template": template,
        "max_new_tokens": max_new_tokens,
        "sampling": sampling,
        "empty": sum(1 for ex in examples if not done[ex.id]["response"]),
        "unfinished": len(unfinished),
        "dropped_unfinished": len(unfinished) if drop_unfinished else 0,
    }
    write_json(Path(str(out) + ".summary.json"), summary)
    return summary


def _slug(generator: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", generator).strip("_") or "generator"


def generators_of(cq: CPQSConfig, generator: str | Sequence[str] | None = None) -> list[str]:
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


def make_negatives(
    cfg: Config,
    examples: Sequence[Example],
    generator: str | Sequence[str] | None,
    out: str | os.PathLike,
    *,
    loader: ModelLoader | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Answer ``examples`` with each generator model into ``out`` (JSONL, pool order, generator by generator).

    ``generator``: a model spec, a comma list or a list of specs (``None``: ``selectors.cpqs.generators`` or
    ``generator``). Settings come from ``cfg.selectors.cpqs`` (``generation_*``) and ``cfg.prompt`` (template,
    system prompt). ``loader(spec, revision, dtype) -> (model, tokenizer, info)`` shares loaded models with the
    caller (default: :func:`cpqs_bench.models.load`) on the HF backend; the vLLM backend
    (``selectors.cpqs.generation_backend``, see the module docstring) loads its own engine. Returns a summary with
    per-generator counts.
    """
    from cpqs_bench import models

    cq = cfg.selectors.cpqs
    names = generators_of(cq, generator)
    device = models.pick_device(cfg.model.device)
    backend = resolve_backend(cq.generation_backend, device)
    out = Path(out)
    sampling = {
        "do_sample": bool(cq.generation_do_sample),
        "temperature": cq.generation_temperature,
        "top_p": cq.generation_top_p,
    }
    per: dict[str, Any] = {}
    files: list[Path] = []
    for name in names:
        if backend == "vllm":
            model, tok, info = load_vllm(name, cfg.model.dtype, cq.seed, device)
        elif loader is not None:
            model, tok, info = loader(name, None, cfg.model.dtype)
        else:
            model, tok, info = models.load(name, dtype=cfg.model.dtype, device=cfg.model.device)
        target = out if len(names) == 1 else out.with_name(f"{out.name}.by-generator") / f"{_slug(name)}.jsonl"
        gen = GenerationSettings(
            generator=f"{info.spec}@{info.revision}",
            template=cfg.prompt.template,
            system_prompt=cfg.prompt.system_prompt,
            max_new_tokens=cq.generation_max_new_tokens,
            batch_size=cq.generation_batch_size,
            sampling=sampling,
            seed=cq.seed,
            drop_unfinished=cq.generation_drop_unfinished,
            backend=backend,
        )
        per[name] = generate_negatives(examples, model, tok, target, gen, progress=progress)
        files.append(target)
        if backend == "vllm":  # free the engine's GPU memory before the next generator's engine starts
            del model
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    if len(names) > 1:
        from cpqs_bench.io import read_jsonl

        write_jsonl(out, (row for f in files for row in read_jsonl(f)))
    summary = {
        "complete": all(s.get("complete") for s in per.values()),
        "total": len(examples),
        "generators": names,
        "backend": backend,
        "per_generator": per,
        "written": sum(s.get("written", 0) for s in per.values()),
        "unfinished": sum(s.get("unfinished", 0) for s in per.values()),
        "dropped_unfinished": sum(s.get("dropped_unfinished", 0) for s in per.values()),
        "max_new_tokens": cq.generation_max_new_tokens,
        "sampling": sampling,
    }
    write_json(Path(str(out) + ".summary.json"), summary)
    return summary
