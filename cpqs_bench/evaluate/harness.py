"""``cpqs-bench evaluate``: one evaluation path for the base model and every arm, through lm-evaluation-harness.

``main(model, out, adapter=...)`` loads the model with lm-eval's HF backend (``HFLM``; a PEFT adapter via ``peft=``),
refuses an adapter that does not change the model (probe logits equal with and without it), runs our offline task
YAMLs (``tasks/``) with ``simple_evaluate`` and per-sample logging, and writes, atomically:

* ``items.jsonl``   one row per (task, doc): ``task, doc_id, item_id, prediction, extracted, correct`` — what the
  statistics stage pairs across arms;
* ``metrics.json``  ``{task: score}`` (GSM8K exact match, HumanEval/HumanEval+ pass@1);
* ``lm_eval_results.json`` and ``samples/<task>.jsonl``  lm-eval's own results and logged samples;
* ``manifest.json`` provenance, model revision, adapter hash, generation settings, sandbox isolation level;
* ``DONE`` last, after every file above was read back (lm-eval's own tracker can swallow write errors; we do not
  use it, and we verify our files).

Chat tasks (``*_chat``, ``*_instruct``) run with the tokenizer's chat template, completion tasks without, so a mixed
task list is evaluated in one call per mode. lm-eval keys its request cache on the request alone, so the cache path
here includes the model revision, the adapter hash and the generation settings.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from cpqs_bench import models, provenance
from cpqs_bench.evaluate import tasks_utils
from cpqs_bench.evaluate.config import EvaluateConfig
from cpqs_bench.io import read_json, read_jsonl, sha256_file, stable_hash, write_json, write_jsonl, write_text

TASKS_DIR_ENV = "CPQS_TASKS_DIR"
CHAT_TASKS = frozenset({"cpqs_gsm8k_chat", "cpqs_humaneval_instruct", "cpqs_humaneval_plus_instruct"})
COMPLETION_TASKS = frozenset({"cpqs_gsm8k_5shot", "cpqs_humaneval", "cpqs_humaneval_plus"})
KNOWN_TASKS = CHAT_TASKS | COMPLETION_TASKS
CODE_TASKS = frozenset(t for t in KNOWN_TASKS if "humaneval" in t)
METRIC = {t: ("pass@1" if t in CODE_TASKS else "exact_match") for t in KNOWN_TASKS}
FILTER = "judge"  # the filter name every task YAML uses
PROBE_PROMPT = "Question: Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer:"
OUTPUT_FILES = ("items.jsonl", "metrics.json", "lm_eval_results.json", "manifest.json")


class EvaluationError(RuntimeError):
    """The evaluation cannot run or its outputs are incomplete."""


class AdapterInactiveError(EvaluationError):
    """The adapter does not change the model's outputs: evaluating it would silently re-evaluate the base model."""


# ----------------------------------------------------------------------------------------------------------------------
# tasks
# ----------------------------------------------------------------------------------------------------------------------

def tasks_dir() -> Path:
    """The task YAML folder: ``$CPQS_TASKS_DIR``, else ``tasks/`` at the repository root."""
    env = os.environ.get(TASKS_DIR_ENV)
    path = Path(env) if env else provenance.REPO_ROOT / "tasks"
    if not (path / "cpqs_gsm8k_chat.yaml").exists():
        raise EvaluationError(f"task YAMLs not found in {path} (set {TASKS_DIR_ENV} to the folder holding them)")
    return path


def task_manager():
    """lm-eval TaskManager over our YAMLs only (lm-eval's built-in tasks would reach for the Hub)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(tasks_dir()), include_defaults=False)


def parse_tasks(tasks: str | list[str] | tuple[str, ...]) -> list[str]:
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    unknown = [t for t in names if t not in KNOWN_TASKS]
    if unknown or not names:
        raise EvaluationError(f"unknown or empty task list {unknown or names}; known tasks: {sorted(KNOWN_TASKS)}")
    return list(dict.fromkeys(names))


# ----------------------------------------------------------------------------------------------------------------------
# model, adapter
# ----------------------------------------------------------------------------------------------------------------------

def adapter_fingerprint(adapter: str) -> dict[str, Any]:
    """Content hash of a local adapter folder (every file), or the Hub id when it is not a local folder."""
    path = Path(adapter)
    if not path.is_dir():
        return {"path": adapter, "hash": f"hub:{adapter}", "files": {}}
    files = {p.name: sha256_file(p) for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")}
    if "adapter_config.json" not in files:
        raise EvaluationError(f"{path} is not a PEFT adapter folder (no adapter_config.json)")
    return {"path": str(path.resolve()), "hash": stable_hash(files, length=16), "files": files}


def adapter_logit_delta(model: Any, tokenizer: Any, prompt: str = PROBE_PROMPT) -> float:
    """Max |logit(adapted) - logit(base)| on a probe prompt, using the same PeftModel with the adapter disabled."""
    import torch

    if not hasattr(model, "disable_adapter"):
        raise AdapterInactiveError(f"an adapter was given but the loaded model ({type(model).__name__}) has none")
    enc = tokenizer(prompt, return_tensors="pt").to(model.device)
    with torch.no_grad():
        adapted = model(**enc).logits.float()
        with model.disable_adapter():
            base = model(**enc).logits.float()
    return float((adapted - base).abs().max().item())


def check_adapter_active(model: Any, tokenizer: Any, adapter: str, atol: float = 1e-6) -> float:
    """Refuse an adapter whose logits equal the base model's (untrained LoRA, wrong target modules, not loaded)."""
    delta = adapter_logit_delta(model, tokenizer)
    if not delta > atol:
        raise AdapterInactiveError(
            f"adapter {adapter} is inactive: logits with and without it differ by at most {delta:.3g} (<= {atol:g}) "
            "on a probe prompt. An untrained LoRA (B = 0), target modules that match nothing, or a failed load would "
            "make this 'arm' the base model; refusing to evaluate it.")
    return delta


def build_lm(path: str, hub_revision: str | None, adapter: str | None, settings: EvaluateConfig, device: str):
    """lm-eval's HF backend (``HFLM``) for a model folder or Hub id, with an optional PEFT adapter."""
    if settings.backend == "vllm":
        return _build_vllm(path, hub_revision, adapter, settings)
    from lm_eval.models.huggingface import HFLM

    dtype = models.torch_dtype(settings.dtype, device)
    return HFLM(pretrained=path, revision=hub_revision or "main", peft=adapter, dtype=dtype,
                batch_size=settings.batch_size, device=device)


def _build_vllm(path: str, hub_revision: str | None, adapter: str | None, settings: EvaluateConfig):
    """vLLM backend (optional extra ``cpqs-bench[vllm]``, GPU only)."""
    try:
        from lm_eval.models.vllm_causallms import VLLM
    except ImportError as exc:
        raise EvaluationError("backend 'vllm' needs the optional extra: pip install 'cpqs-bench[vllm]'") from exc
    kwargs: dict[str, Any] = {"pretrained": path, "revision": hub_revision, "dtype": settings.dtype,
                              "batch_size": "auto", "max_gen_toks": settings.max_new_tokens}
    if adapter:
        kwargs["lora_local_path"] = adapter
    return VLLM(**kwargs)


def _probe_adapter_hf(path: str, hub_revision: str | None, adapter: str, device: str, dtype: str) -> float:
    """Adapter check for backends without a toggle (vLLM): load base + PEFT with transformers and compare."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(path, revision=hub_revision, dtype=models.torch_dtype(dtype, device))
    tok = AutoTokenizer.from_pretrained(path, revision=hub_revision)
    model = PeftModel.from_pretrained(base.to(device).eval(), adapter)
    try:
        return check_adapter_active(model, tok, adapter)
    finally:
        del model, base


# ----------------------------------------------------------------------------------------------------------------------
# running lm-eval and collecting its outputs
# ----------------------------------------------------------------------------------------------------------------------

def generation_settings(settings: EvaluateConfig) -> dict[str, Any]:
    """What, besides the request itself, decides a generation (part of the request-cache key and the manifest)."""
    return {"max_gen_toks": settings.max_new_tokens, "do_sample": False, "dtype": settings.dtype,
            "batch_size": settings.batch_size, "backend": settings.backend,
            "apply_chat_template": settings.apply_chat_template}


def cache_path(model_path: str, revision: str | None, adapter_hash: str | None, settings: EvaluateConfig,
               chat: bool, root: Path | None = None) -> str:
    """lm-eval request-cache prefix; lm-eval appends ``_rank<N>.db``. Distinct per model/adapter/settings."""
    key = {"model": model_path, "revision": revision, "adapter": adapter_hash, "chat": chat,
           "generation": generation_settings(settings)}
    root = root or (models.cache_root() / "lm_eval_requests")
    return str(root / f"req-{stable_hash(key, length=20)}")


def _run_group(lm: Any, tasks: list[str], chat: bool, limit: int | None, settings: EvaluateConfig,
               use_cache: str | None) -> dict[str, Any]:
    from lm_eval import simple_evaluate

    results = simple_evaluate(
        model=lm, tasks=tasks, limit=limit, log_samples=True, apply_chat_template=chat,
        fewshot_as_multiturn=chat, gen_kwargs={"max_gen_toks": settings.max_new_tokens},
        task_manager=task_manager(), use_cache=use_cache, bootstrap_iters=0, confirm_run_unsafe_code=True)
    if results is None:
        raise EvaluationError("lm-eval returned no results (non-zero rank?)")
    missing = [t for t in tasks if t not in results.get("results", {}) or t not in results.get("samples", {})]
    if missing:
        raise EvaluationError(f"lm-eval returned no results or samples for {missing}")
    return results


def _item_id(doc: dict) -> str:
    return str(doc["task_id"]) if "task_id" in doc else str(doc.get("idx"))


def items_from_samples(task: str, samples: list[dict]) -> list[dict]:
    """Per-item rows from lm-eval's logged samples (first repeat's text; ``correct`` = the doc's metric)."""
    rows = []
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        judged = s["filtered_resps"][0]
        if not judged:
            raise EvaluationError(f"{task} doc {s['doc_id']}: no judged response in lm-eval's samples")
        row = {"task": task, "doc_id": int(s["doc_id"]), "item_id": _item_id(s["doc"]),
               "prediction": s["resps"][0][0], "extracted": judged[0]["extracted"],
               "correct": float(s[METRIC[task]]), "n_repeats": len(judged)}
        if "status" in judged[0]:
            row["status"] = judged[0]["status"]
        rows.append(row)
    return rows


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _clear_outputs(out: Path) -> None:
    """Remove a previous run's outputs (``--force``, or a run killed mid-write) before writing new ones: DONE and
    manifest.json first, so that an interruption never leaves new items beside old metrics in a directory that
    looks like a finished evaluation (the leaderboard reads manifest + items + metrics)."""
    for name in ("DONE", "manifest.json", *OUTPUT_FILES):
        (out / name).unlink(missing_ok=True)
    if (out / "samples").is_dir():
        for path in (out / "samples").glob("*.jsonl"):
            path.unlink()


def _verify_outputs(out: Path, tasks: list[str]) -> None:
    """Read every output back: a missing or torn file fails the run before DONE is written."""
    for name in OUTPUT_FILES:
        if not (out / name).is_file() or (out / name).stat().st_size == 0:
            raise EvaluationError(f"{out / name} was not written")
    items = read_jsonl(out / "items.jsonl")
    metrics = read_json(out / "metrics.json")
    read_json(out / "lm_eval_results.json")
    read_json(out / "manifest.json")
    for t in tasks:
        if t not in metrics:
            raise EvaluationError(f"{out / 'metrics.json'} lacks task {t}")
        if not any(r["task"] == t for r in items):
            raise EvaluationError(f"{out / 'items.jsonl'} has no rows for task {t}")
        if not (out / "samples" / f"{t}.jsonl").is_file():
            raise EvaluationError(f"{out / 'samples' / (t + '.jsonl')} was not written")


# ----------------------------------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------------------------------

def main(model: str = models.EMBEDDED, out: str | Path = "runs/eval", adapter: str | None = None,
         tasks: str | list[str] | tuple[str, ...] | None = None, limit: int | None = None,
         revision: str | None = None, settings: EvaluateConfig = EvaluateConfig(), device: str = "auto",
         cache_root: str | Path | None = None, force: bool = False,
         extra_manifest: dict[str, Any] | None = None) -> dict[str, float]:
    """Evaluate ``model`` (+ optional ``adapter``) on ``tasks``; write results into ``out``; return ``{task: score}``.

    Base model and adapters go through exactly this function. ``extra_manifest`` (e.g. the pipeline's arm, seed and
    recipe hash, which the statistics stage reads) is merged into ``manifest.json``. A finished ``out`` (``DONE``) with the same inputs is
    returned as is; one with different inputs is refused unless ``force``.
    """
    task_list = parse_tasks(tasks if tasks is not None else settings.tasks)
    limit = limit if limit is not None else settings.limit
    out = Path(out)
    t0 = time.monotonic()

    path, model_rev = models.resolve(model, revision)
    hub_revision = None if Path(path).is_dir() else model_rev
    fingerprint = adapter_fingerprint(adapter) if adapter else None
    inputs = {"model": model, "model_path": path, "model_revision": model_rev,
              "adapter_hash": fingerprint["hash"] if fingerprint else None, "tasks": task_list, "limit": limit,
              "settings": dataclasses.asdict(settings)}
    inputs_hash = stable_hash(inputs, length=16)
    if (out / "DONE").exists():
        if (out / "DONE").read_text().strip() == inputs_hash and not force:
            return read_json(out / "metrics.json")
        if not force:
            raise EvaluationError(f"{out} holds a finished evaluation of different inputs; use another --out or "
                                  "--force to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out)

    code_tasks = [t for t in task_list if t in CODE_TASKS]
    tasks_utils.configure(tasks_utils.ExecSettings(
        workers=settings.code_workers, timeout_s=settings.code_timeout_s, min_isolation=settings.sandbox_min_level,
        allow_weaker=settings.allow_weaker_sandbox,
        cache_dir=str(Path(cache_root) / "humanevalplus-expected") if cache_root else None))
    sandbox_info = tasks_utils.sandbox_manifest() if code_tasks else None  # probe + refuse before loading a model

    dev = models.pick_device(device)
    lm = build_lm(path, hub_revision, adapter, settings, dev)
    tokenizer = getattr(lm, "tokenizer", None)
    adapter_delta = None
    if adapter:
        adapter_delta = (check_adapter_active(lm.model, tokenizer, adapter) if settings.backend == "hf"
                         else _probe_adapter_hf(path, hub_revision, adapter, dev, settings.dtype))

    chat_tasks = [t for t in task_list if t in CHAT_TASKS]
    if chat_tasks and settings.apply_chat_template and tokenizer is not None and not tokenizer.chat_template:
        raise EvaluationError(f"tasks {chat_tasks} need a chat model, but {model}'s tokenizer has no chat template "
                              "(use the completion tasks cpqs_gsm8k_5shot, cpqs_humaneval, cpqs_humaneval_plus)")
    groups = [(True, chat_tasks), (False, [t for t in task_list if t in COMPLETION_TASKS])]
    metrics: dict[str, float] = {}
    items: list[dict] = []
    raw: dict[str, Any] = {}
    caches: dict[str, str] = {}
    for chat, group in groups:
        if not group:
            continue
        use_chat = chat and settings.apply_chat_template
        cache = (cache_path(path, model_rev, inputs["adapter_hash"], settings, use_chat,
                            Path(cache_root) / "lm_eval_requests" if cache_root else None)
                 if settings.use_cache else None)
        results = _run_group(lm, group, use_chat, limit, settings, cache)
        for t in group:
            metrics[t] = float(results["results"][t][f"{METRIC[t]},{FILTER}"])
            items.extend(items_from_samples(t, results["samples"][t]))
            write_jsonl(out / "samples" / f"{t}.jsonl", _jsonable(results["samples"][t]))
            if cache:
                caches[t] = cache
        raw[f"chat={use_chat}"] = _jsonable({k: v for k, v in results.items() if k != "samples"})

    write_jsonl(out / "items.jsonl", items)
    write_json(out / "metrics.json", metrics)
    write_json(out / "lm_eval_results.json", raw)
    task_cfgs = {t: r.get("configs", {}).get(t, {}) for r in raw.values() for t in r.get("configs", {})}
    write_json(out / "manifest.json", {
        "stage": "evaluate", "inputs": inputs, "inputs_hash": inputs_hash,
        "model": {"spec": model, "path": path, "revision": model_rev, "device": dev,
                  "dtype": str(models.torch_dtype(settings.dtype, dev)).replace("torch.", "")},
        "adapter": ({**fingerprint, "probe_max_abs_logit_delta": adapter_delta} if fingerprint else None),
        "generation": {"settings": generation_settings(settings),
                       "per_task": {t: c.get("generation_kwargs") for t, c in task_cfgs.items()}},
        "chat_template": {t: (t in CHAT_TASKS and settings.apply_chat_template) for t in task_list},
        "task_versions": {t: (c.get("metadata") or {}).get("version") for t, c in task_cfgs.items()},
        "n_items": {t: sum(r["task"] == t for r in items) for t in task_list},
        "metrics": metrics, "sandbox": sandbox_info, "request_cache": caches,
        "wall_s": round(time.monotonic() - t0, 2), **provenance.collect(), **(extra_manifest or {})})
    _verify_outputs(out, task_list)
    write_text(out / "DONE", inputs_hash + "\n")
    return metrics


# ----------------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = EvaluateConfig()
    parser.add_argument("--model", default=models.EMBEDDED, help="model folder, Hub id[@revision], or 'embedded'")
    parser.add_argument("--adapter", default=None, help="PEFT adapter folder (refused if it does not change logits)")
    parser.add_argument("--revision", default=None, help="Hub revision of --model")
    parser.add_argument("--tasks", default=",".join(d.tasks), help=f"comma-separated; known: {sorted(KNOWN_TASKS)}")
    parser.add_argument("--limit", type=int, default=None, help="first N items per task (smoke runs)")
    parser.add_argument("--out", default="runs/eval", help="output folder (items.jsonl, metrics.json, manifest.json)")
    parser.add_argument("--backend", choices=["hf", "vllm"], default=d.backend)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    parser.add_argument("--dtype", default=d.dtype, choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-chat-template", action="store_true", help="render chat tasks without the template")
    parser.add_argument("--no-cache", action="store_true", help="do not use lm-eval's request cache")
    parser.add_argument("--cache-root", default=None, help="request cache + HumanEval+ expected outputs folder")
    parser.add_argument("--code-workers", type=int, default=d.code_workers)
    parser.add_argument("--code-timeout", type=float, default=d.code_timeout_s)
    parser.add_argument("--sandbox-min-level", choices=["namespaces", "rlimits"], default=d.sandbox_min_level)
    parser.add_argument("--allow-weaker-sandbox", action="store_true",
                        help="run generated code even when the host cannot reach --sandbox-min-level")
    parser.add_argument("--force", action="store_true", help="overwrite a finished --out of different inputs")


def run_cli(args: argparse.Namespace) -> int:
    settings = EvaluateConfig(
        tasks=tuple(parse_tasks(args.tasks)), limit=args.limit, backend=args.backend, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, apply_chat_template=not args.no_chat_template, dtype=args.dtype,
        use_cache=not args.no_cache, sandbox_min_level=args.sandbox_min_level,
        allow_weaker_sandbox=args.allow_weaker_sandbox, code_workers=args.code_workers,
        code_timeout_s=args.code_timeout)
    metrics = main(args.model, args.out, adapter=args.adapter, revision=args.revision, settings=settings,
                   device=args.device, cache_root=args.cache_root, force=args.force)
    for task, score in metrics.items():
        print(f"{task}\t{METRIC[task]}\t{score:.4f}")
    print(f"results in {args.out}")
    return 0
