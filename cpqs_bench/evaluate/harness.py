"""Evaluation: one path for the base model and every arm, through lm-evaluation-harness.

:func:`evaluate_model` ``(cfg, out, adapter=..., loader=...)`` evaluates ``cfg.model`` (+ an optional PEFT adapter) on
``cfg.evaluate.tasks`` with lm-eval's HF backend (``HFLM`` over an already loaded model, so a pipeline's model cache
serves every arm: the adapter is attached with peft for this call and removed afterwards), refuses an adapter that
does not change the model (probe logits equal with and without it), runs ``simple_evaluate`` with per-sample logging,
and writes, atomically:

* ``items.jsonl``   one row per (task, doc): ``task, doc_id, item_id, prediction, extracted, correct`` — what the
  statistics stage pairs across arms (``correct`` is the task's per-item metric value);
* ``metrics.json``  ``{task: score}`` (the task's metric: GSM8K exact match, HumanEval/HumanEval+ pass@1, ...);
* ``lm_eval_results.json`` and ``samples/<task>.jsonl``  lm-eval's own results and logged samples;
* ``evaluation.json`` provenance, model revision, adapter hash, generation settings, sandbox isolation level
  (the stage manifest that the executor writes carries the same fields);

and reads every file back before returning (lm-eval's own tracker can swallow write errors; we do not use it, and we
verify our files). It writes no ``DONE`` and no ``manifest.json``: the executor (:mod:`cpqs_bench.pipeline`) does,
for ``reproduce`` and the ``evaluate`` verb alike.

Tasks are defined by their YAML alone (:func:`task_info`): chat vs completion is the YAML's ``metadata.chat``
(default: completion), the metric is ``metadata.metric`` or the first entry of ``metric_list``, the filter whose
score is reported is the first of ``filter_list`` (``none`` without one), code execution (the sandbox) is lm-eval's
``unsafe_code``. Task folders: the project's ``tasks/`` plus ``evaluate.include_path``; a name found in neither is
looked up in lm-eval's own task index (any lm-eval task that runs offline), and an unknown name gets lm-eval's
did-you-mean. Chat and completion tasks are evaluated in one ``simple_evaluate`` call per mode. lm-eval keys its
request cache on the request alone, so the cache path here includes the model revision, the adapter hash and the
generation settings.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from cpqs_bench import models, provenance, resources, templates
from cpqs_bench.config import to_dict
from cpqs_bench.evaluate import tasks_utils
from cpqs_bench.evaluate.config import EvaluateConfig
from cpqs_bench.io import read_json, read_jsonl, sha256_file, stable_hash, write_json, write_jsonl

if TYPE_CHECKING:
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cpqs_bench.config import Config


TASKS_DIR_ENV = "CPQS_TASKS_DIR"
PROBE_PROMPT = "Question: Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer:"
EVALUATION_RECORD = "evaluation.json"  # what was evaluated and how (the stage manifest carries it too)
OUTPUT_FILES = ("items.jsonl", "metrics.json", "lm_eval_results.json", EVALUATION_RECORD)
Loader = Callable[[str, "str | None", str], tuple[Any, Any, Any]]


class EvaluationError(RuntimeError):
    """The evaluation cannot run or its outputs are incomplete."""


class AdapterInactiveError(EvaluationError):
    """The adapter does not change the model's outputs: evaluating it would silently re-evaluate the base model."""


# ----------------------------------------------------------------------------------------------------------------------
# tasks: defined by their YAML alone
# ----------------------------------------------------------------------------------------------------------------------


def tasks_dir() -> Path:
    """The project's task YAML folder: ``$CPQS_TASKS_DIR``, else the packaged ``cpqs_bench/tasks``."""
    env = os.environ.get(TASKS_DIR_ENV)
    path = Path(env) if env else resources.TASKS_DIR
    if not path.is_dir() or not any(path.glob("*.yaml")):
        raise EvaluationError(f"task YAMLs not found in {path} (set {TASKS_DIR_ENV} to the folder holding them)")
    return path


def include_paths(settings: EvaluateConfig | None = None) -> tuple[str, ...]:
    """The project's task folder, then the user's ``evaluate.include_path`` folders (later ones win on a name)."""
    extra = tuple(str(Path(p).expanduser()) for p in ((settings.include_path if settings else ()) or ()))
    for p in extra:
        if not Path(p).is_dir():
            raise EvaluationError(f"evaluate.include_path: {p} is not a folder")
    return (str(tasks_dir()), *extra)


@functools.lru_cache(maxsize=4)
def _task_manager(paths: tuple[str, ...], defaults: bool) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(paths), include_defaults=defaults)


def task_manager(settings: EvaluateConfig | None = None, *, defaults: bool = False) -> Any:
    """lm-eval TaskManager over our YAMLs and the user's folders; ``defaults`` adds lm-eval's own task index (slow
    to build, consulted only for names the folders do not define)."""
    return _task_manager(include_paths(settings), defaults)


def parse_tasks(tasks: str | Sequence[str]) -> list[str]:
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    if not names:
        raise EvaluationError("empty task list (evaluate.tasks)")
    return list(dict.fromkeys(names))


def _unknown_task_message(name: str, known: Sequence[str]) -> str:
    try:  # lm-eval's own did-you-mean (the message its registries give)
        from lm_eval.api.registry import _build_key_error_msg

        return _build_key_error_msg("task", name, known)
    except ImportError:  # a future lm-eval without the helper: a did-you-mean of our own
        import difflib

        close = difflib.get_close_matches(name, known, n=3)
        return f"Unknown task '{name}'." + (f" Did you mean: {', '.join(close)}?" if close else "")


@dataclasses.dataclass(frozen=True)
class TaskSource:
    """Where a task list is defined: the task folders, and whether lm-eval's own index is needed."""

    paths: tuple[str, ...]
    defaults: bool

    @property
    def manager(self) -> Any:
        return _task_manager(self.paths, self.defaults)


def resolve_tasks(tasks: str | Sequence[str], settings: EvaluateConfig | None = None) -> tuple[list[str], TaskSource]:
    """(task names, where they are defined); an unknown name is an error with lm-eval's did-you-mean."""
    names = parse_tasks(tasks)
    src = TaskSource(include_paths(settings), False)
    if any(n not in src.manager.all_subtasks for n in names):
        src = TaskSource(src.paths, True)
    known = src.manager.all_subtasks
    for n in names:
        if n not in known:
            raise EvaluationError(
                _unknown_task_message(n, known) + f"\n(task folders: {', '.join(src.paths)} and "
                "lm-eval's own tasks; add folders with evaluate.include_path)"
            )
    return names, src


@functools.lru_cache(maxsize=64)
def _built(src: TaskSource, name: str, mirror: str | None) -> tuple[Any, Any]:
    task = src.manager.load([name])["tasks"][name]
    return task, copy.deepcopy(task._config)


def built_task(name: str, src: TaskSource) -> Any:
    """Task ``name`` built once per process (docs loaded once), its config reset to the YAML's on every call:
    lm-eval's ``simple_evaluate`` overwrites a task's config (generation kwargs, few-shot settings) in place.
    Keyed also by the data mirror in force (the task hooks read their docs from it)."""
    task, pristine = _built(src, name, os.environ.get("CPQS_DATA_MIRROR"))
    task._config = copy.deepcopy(pristine)
    return task


def _metric_name(metric: object) -> str:
    return metric if isinstance(metric, str) else getattr(metric, "__name__", str(metric))


def task_config_info(name: str, cfg: object) -> dict[str, Any]:
    """What the harness needs to know about a task, from its config (YAML) alone."""
    meta = dict(getattr(cfg, "metadata", None) or {})
    metrics = list(getattr(cfg, "metric_list", None) or [])
    metric = meta.get("metric") or (_metric_name(metrics[0]["metric"]) if metrics else None)
    if metric is None:
        raise EvaluationError(f"task {name}: no metric (set metric_list, or metadata.metric, in its YAML)")
    entry: dict[str, Any] = next((m for m in metrics if _metric_name(m.get("metric")) == metric), {})
    filters = list(getattr(cfg, "filter_list", None) or [])
    flt = meta.get("filter") or (filters[0]["name"] if filters and isinstance(filters[0], dict) else "none")
    return {
        "task": name,
        "output_type": getattr(cfg, "output_type", None),
        "metric": metric,
        "filter": flt,
        "higher_is_better": entry.get("higher_is_better", True),
        "chat": bool(meta.get("chat", False)),
        "unsafe_code": bool(getattr(cfg, "unsafe_code", False)),
        "proxy": bool(meta.get("proxy", False)),
        "version": meta.get("version"),
        "domain": meta.get("domain"),
        "dataset_id": meta.get("dataset_id"),
        "generation_kwargs": copy.deepcopy(getattr(cfg, "generation_kwargs", None)),
    }


def task_info(task: str, settings: EvaluateConfig | None = None) -> dict[str, Any]:
    """Task facts from its YAML (see the module docstring) and ``n_docs``: the task is built, which loads its data,
    so a task that cannot run offline fails here (preflight), before any model is loaded."""
    (name,), src = resolve_tasks([task], settings)
    t = built_task(name, src)
    return {**task_config_info(name, t.config), "n_docs": len(t.eval_docs)}


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


def adapter_logit_delta(model: PeftModel, tokenizer: PreTrainedTokenizerBase, prompt: str = PROBE_PROMPT) -> float:
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


def check_adapter_active(
    model: PeftModel, tokenizer: PreTrainedTokenizerBase, adapter: str, atol: float = 1e-6
) -> float:
    """Refuse an adapter whose logits equal the base model's (untrained LoRA, wrong target modules, not loaded)."""
    delta = adapter_logit_delta(model, tokenizer)
    if not delta > atol:
        raise AdapterInactiveError(
            f"adapter {adapter} is inactive: logits with and without it differ by at most {delta:.3g} (<= {atol:g}) "
            "on a probe prompt. An untrained LoRA (B = 0), target modules that match nothing, or a failed load would "
            "make this 'arm' the base model; refusing to evaluate it."
        )
    return delta


def request_key(args: tuple) -> str:
    """What decides a generation request's answer: its context and its settings (greedy decoding)."""
    return json.dumps(list(args), sort_keys=True, default=str)


def answer_once(requests: list[Any], generate: Callable[[list[Any]], list[str]]) -> list[str]:
    """``generate`` over the distinct requests only, answers fanned back out in request order. HumanEval and
    HumanEval+ send the very same prompts with the same settings (HumanEval+ grades the same completion against more
    tests), so a run of both decodes each prompt once instead of twice."""
    first: dict[str, int] = {}
    unique: list[Any] = []
    keys = [request_key(r.args) for r in requests]
    for r, k in zip(requests, keys):
        if k not in first:
            first[k] = len(unique)
            unique.append(r)
    answers = generate(unique) if unique else []
    return [answers[first[k]] for k in keys]


@functools.lru_cache(maxsize=1)
def _hflm_class() -> type:
    from lm_eval.models.huggingface import HFLM

    class HFLMOnce(HFLM):
        """lm-eval's HF backend; identical generation requests of one call are decoded once (``answer_once``)."""

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            return answer_once(requests, lambda reqs: super(HFLMOnce, self).generate_until(reqs, disable_tqdm))

    return HFLMOnce


def build_lm(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: EvaluateConfig) -> HFLM:
    """lm-eval's HF backend over an already loaded model (plain or with a PEFT adapter attached), identical
    generation requests answered once."""
    return _hflm_class()(pretrained=model, tokenizer=tokenizer, batch_size=settings.batch_size)


def _build_vllm(path: str, hub_revision: str | None, adapter: str | None, settings: EvaluateConfig):
    """vLLM backend (optional extra ``cpqs-bench[vllm]``, GPU only)."""
    try:
        from lm_eval.models.vllm_causallms import VLLM
    except ImportError as exc:
        raise EvaluationError("backend 'vllm' needs the optional extra: pip install 'cpqs-bench[vllm]'") from exc
    kwargs: dict[str, Any] = {
        "pretrained": path,
        "revision": hub_revision,
        "dtype": settings.dtype,
        "batch_size": "auto",
        "max_gen_toks": settings.max_new_tokens,
    }
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
    return {
        "max_gen_toks": settings.max_new_tokens,
        "do_sample": False,
        "dtype": settings.dtype,
        "batch_size": settings.batch_size,
        "backend": settings.backend,
        "apply_chat_template": settings.apply_chat_template,
    }


def cache_path(
    model_path: str,
    revision: str | None,
    adapter_hash: str | None,
    settings: EvaluateConfig,
    chat: bool,
    root: Path | None = None,
    prompt: dict[str, Any] | None = None,
) -> str:
    """lm-eval request-cache prefix; lm-eval appends ``_rank<N>.db``. Distinct per model/adapter/settings/prompt and
    per code version of this module's import closure (how the model is loaded, the adapter attached and the requests
    answered): the cache lives outside the run dir, so without the code a re-run evaluation stage after a harness
    change would read the old code's answers for the same adapter files."""
    from cpqs_bench.code_version import code_version

    key = {
        "model": model_path,
        "revision": revision,
        "adapter": adapter_hash,
        "chat": chat,
        "generation": generation_settings(settings),
        "code": code_version([__name__]),
    }
    if prompt:
        key["prompt"] = prompt
    root = root or (models.cache_root() / "lm_eval_requests")
    return str(root / f"req-{stable_hash(key, length=20)}")


def _run_group(
    lm: HFLM,
    tasks: list[Any],
    chat: bool,
    limit: int | None,
    settings: EvaluateConfig,
    use_cache: str | None,
    system_instruction: str | None = None,
    manager: TaskManager | None = None,
) -> dict[str, Any]:
    """One ``simple_evaluate`` call over built ``tasks``. ``manager``: the TaskManager that built them; without one,
    lm-eval indexes its whole task tree (thousands of YAMLs, seconds per call) only to pass the objects through."""
    from lm_eval import simple_evaluate

    names = [t.task_name for t in tasks]
    gen = {"max_gen_toks": settings.max_new_tokens} if settings.max_new_tokens is not None else None
    results = simple_evaluate(
        model=lm,
        tasks=tasks,
        limit=limit,
        log_samples=True,
        apply_chat_template=chat,
        fewshot_as_multiturn=chat,
        gen_kwargs=gen,
        system_instruction=system_instruction,
        use_cache=use_cache,
        bootstrap_iters=0,
        confirm_run_unsafe_code=True,
        task_manager=manager,
    )
    if results is None:
        raise EvaluationError("lm-eval returned no results (non-zero rank?)")
    missing = [t for t in names if t not in results.get("results", {}) or t not in results.get("samples", {})]
    if missing:
        raise EvaluationError(f"lm-eval returned no results or samples for {missing}")
    return results


def _item_id(doc: dict) -> str:
    for key in ("task_id", "idx", "id"):
        if key in doc:
            return str(doc[key])
    return ""


def items_from_samples(task: str, samples: list[dict], info: dict[str, Any]) -> list[dict]:
    """Per-item rows from lm-eval's logged samples: ``correct`` = the doc's value of the task's metric; ``extracted``
    = what the task's filter kept (our judges' ``extracted`` program/answer; else the filtered response)."""
    rows = []
    metric = info["metric"]
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        if metric not in s:
            raise EvaluationError(f"{task} doc {s['doc_id']}: lm-eval's sample has no {metric!r} value")
        filtered = s.get("filtered_resps") or []
        first_resp = (s.get("resps") or [[None]])[0]
        prediction = first_resp[0] if isinstance(first_resp, list) and first_resp else first_resp
        row = {
            "task": task,
            "doc_id": int(s["doc_id"]),
            "item_id": _item_id(s["doc"]),
            "prediction": prediction if isinstance(prediction, str) else _jsonable(prediction),
            "correct": float(s[metric]),
            "n_repeats": len(first_resp) if isinstance(first_resp, list) else 1,
        }
        judged = filtered[0] if filtered else None
        if info["output_type"] == "generate_until" and isinstance(judged, list):
            if not judged:
                raise EvaluationError(f"{task} doc {s['doc_id']}: no judged response in lm-eval's samples")
            head = judged[0]
            row["n_repeats"] = len(judged)
            if isinstance(head, dict):  # our judges: {"extracted", "correct", "status", ...} per repeat
                row["extracted"] = head.get("extracted")
                if "status" in head:
                    row["status"] = head["status"]
            else:
                row["extracted"] = head if isinstance(head, str) else _jsonable(head)
        else:
            row["extracted"] = judged if isinstance(judged, (str, type(None))) else _jsonable(judged)
        rows.append(row)
    return rows


def _jsonable(obj: object) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _clear_outputs(out: Path) -> None:
    """Remove a previous (interrupted) run's outputs before writing new ones, so that new items never sit beside old
    metrics; the directory is a finished evaluation only once the executor has written its manifest and DONE."""
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    if (out / "samples").is_dir():
        for path in (out / "samples").glob("*.jsonl"):
            path.unlink()


def _verify_outputs(out: Path, tasks: list[str]) -> None:
    """Read every output back: a missing or torn file fails the run (so the executor never marks it DONE)."""
    for name in OUTPUT_FILES:
        if not (out / name).is_file() or (out / name).stat().st_size == 0:
            raise EvaluationError(f"{out / name} was not written")
    items = read_jsonl(out / "items.jsonl")
    metrics = read_json(out / "metrics.json")
    read_json(out / "lm_eval_results.json")
    read_json(out / EVALUATION_RECORD)
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


def default_loader(device: str) -> Loader:
    def load(spec: str, revision: str | None, dtype: str) -> tuple[Any, Any, Any]:
        return models.load(spec, revision, dtype=dtype, device=device)

    return load


class Attached:
    """A PEFT adapter attached to a (possibly shared) base model for one evaluation, removed on exit.

    The LoRA weights run in the base model's dtype when that is bf16/fp16. peft loads them in fp32 (its
    ``autocast_adapter_dtype``), which without autocast made every LoRA matmul an fp32 one with casts around it: in
    the smoke run an adapter's loglikelihood requests took 37 s against the base model's 20 s, and a forward of
    4 x 350 tokens on the embedded model took 1.23 s with fp32 LoRA, 0.72 s with bf16 LoRA, 0.56 s without an adapter
    (2-core CPU). The recipe trains under bf16 autocast, which runs the LoRA matmuls in bf16 too, so bf16 LoRA
    weights compute at evaluation what training computed; an fp32 base keeps fp32 adapters."""

    def __init__(self, base: PreTrainedModel, adapter: str | None) -> None:
        self.base, self.adapter, self.model = base, adapter, base

    def __enter__(self) -> Any:
        if self.adapter:
            import torch
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.base, self.adapter, is_trainable=False).eval()
            dtype = getattr(self.base, "dtype", None)
            if dtype in (torch.bfloat16, torch.float16):
                for name, param in self.model.named_parameters():
                    if "lora_" in name and param.dtype != dtype:
                        param.data = param.data.to(dtype)
        return self.model

    def __exit__(self, *exc: object) -> None:
        if self.model is not self.base:
            self.model.unload()  # the LoRA modules out again: the cached base is the base model
            self.base.eval()


def evaluate_model(
    cfg: Config,
    out: str | Path,
    *,
    adapter: str | Path | None = None,
    extra_manifest: dict[str, Any] | None = None,
    loader: Loader | None = None,
    cache_root: str | Path | None = None,
) -> dict[str, float]:
    """Evaluate ``cfg.model`` (+ optional ``adapter``) on ``cfg.evaluate.tasks``; write results into ``out``; return
    ``{task: score}``.

    ``cfg``: the resolved :class:`cpqs_bench.config.Config` (``model``, ``evaluate`` and ``prompt`` are read).
    ``loader(spec, revision, dtype) -> (model, tokenizer, info)``: where the base model comes from (default: a
    fresh load); a shared base gets the adapter for this call only. Base model and adapters go through exactly
    this function. ``extra_manifest`` (e.g. the pipeline's arm, seed and recipe hash, which the statistics stage
    reads) is merged into ``evaluation.json``. Earlier outputs in ``out`` are replaced. ``cache_root``: request cache
    + HumanEval+ expected outputs (default: the user cache).
    """
    settings: EvaluateConfig = cfg.evaluate
    task_list, src = resolve_tasks(settings.tasks, settings)
    limit = settings.limit
    out = Path(out)
    adapter = str(adapter) if adapter else None
    t0 = time.monotonic()

    model_spec = cfg.model.id
    path, model_rev = models.resolve(model_spec, cfg.model.revision)
    hub_revision = None if Path(path).is_dir() else model_rev
    fingerprint = adapter_fingerprint(adapter) if adapter else None
    prompt = to_dict(cfg.prompt)
    inputs: dict[str, Any] = {
        "model": model_spec,
        "model_path": path,
        "model_revision": model_rev,
        "adapter_hash": fingerprint["hash"] if fingerprint else None,
        "tasks": task_list,
        "limit": limit,
        "settings": dataclasses.asdict(settings),
        "prompt": {k: prompt.get(k) for k in ("template", "system_prompt")},
    }
    inputs_hash = stable_hash(inputs, length=16)
    out.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out)

    tasks = {t: built_task(t, src) for t in task_list}
    infos = {t: task_config_info(t, tasks[t].config) for t in task_list}
    code_tasks = [t for t in task_list if infos[t]["unsafe_code"]]
    tasks_utils.configure(
        tasks_utils.ExecSettings(
            workers=settings.code_workers,
            timeout_s=settings.code_timeout_s,
            min_isolation=settings.sandbox_min_level,
            allow_weaker=settings.allow_weaker_sandbox,
            cache_dir=str(Path(cache_root) / "humanevalplus-expected") if cache_root else None,
        )
    )
    sandbox_info = tasks_utils.sandbox_manifest() if code_tasks else None  # probe + refuse before loading a model

    dev = models.pick_device(cfg.model.device)
    load_s = 0.0
    if settings.backend == "vllm":
        lm = _build_vllm(path, hub_revision, adapter, settings)
        tokenizer = getattr(lm, "tokenizer", None)
        adapter_delta = _probe_adapter_hf(path, hub_revision, adapter, dev, settings.dtype) if adapter else None
        attached = Attached(None, None)
        base = None
    else:
        t_load = time.monotonic()
        load = loader if loader is not None else default_loader(dev)
        base, tokenizer, _info = load(model_spec, cfg.model.revision, settings.dtype)
        load_s = time.monotonic() - t_load
        attached = Attached(base, adapter)
        lm = None
    chat_tasks = [t for t in task_list if infos[t]["chat"]]
    template_hash = None
    if chat_tasks and settings.apply_chat_template and tokenizer is not None:
        # One prompt format: the training template (prompt.template) becomes the tokenizer's chat template, on a
        # copy (the loader's tokenizer may be shared), so lm-eval renders exactly what the arms were trained on.
        try:
            tokenizer = templates.apply(copy.deepcopy(tokenizer), cfg.prompt)
        except templates.TemplateError as exc:
            raise EvaluationError(f"tasks {chat_tasks} are chat tasks (metadata.chat: true): {exc}") from None
        template_hash = stable_hash(tokenizer.chat_template, length=16)

    metrics: dict[str, float] = {}
    items: list[dict] = []
    raw: dict[str, Any] = {}
    caches: dict[str, str] = {}
    with attached as model:
        if lm is None:
            adapter_delta = check_adapter_active(model, tokenizer, adapter) if adapter else None
            lm = build_lm(model, tokenizer, settings)

        def task_limit(t: str) -> int | None:
            return settings.task_limits.get(t, limit)

        groups = [
            (chat, lim)
            for chat in (True, False)
            for lim in sorted(
                {task_limit(t) for t in task_list if infos[t]["chat"] == chat}, key=lambda x: (x is None, x or 0)
            )
        ]
        for chat, group_limit in groups:  # one lm-eval call per (chat template?, items per task)
            group = [t for t in task_list if infos[t]["chat"] == chat and task_limit(t) == group_limit]
            if not group:
                continue
            use_chat = chat and settings.apply_chat_template
            lm.add_bos_token = templates.lm_eval_model_args(use_chat).get("add_bos_token")  # the template has BOS
            cache = (
                cache_path(
                    path,
                    model_rev,
                    inputs["adapter_hash"],
                    settings,
                    use_chat,
                    Path(cache_root) / "lm_eval_requests" if cache_root else None,
                    {**inputs["prompt"], "chat_template": template_hash if use_chat else None},
                )
                if settings.use_cache
                else None
            )
            results = _run_group(
                lm,
                [tasks[t] for t in group],
                use_chat,
                group_limit,
                settings,
                cache,
                cfg.prompt.system_prompt if use_chat else None,
                src.manager,
            )
            for t in group:
                info = infos[t]
                key = f"{info['metric']},{info['filter']}"
                if key not in results["results"][t]:
                    raise EvaluationError(
                        f"lm-eval's results for {t} have no {key!r} (metric, filter) entry; "
                        f"found {sorted(results['results'][t])}"
                    )
                metrics[t] = float(results["results"][t][key])
                items.extend(items_from_samples(t, results["samples"][t], info))
                write_jsonl(out / "samples" / f"{t}.jsonl", _jsonable(results["samples"][t]))
                if cache:
                    caches[t] = cache
            raw[f"chat={use_chat}" + ("" if group_limit == limit else f",limit={group_limit}")] = _jsonable(
                {k: v for k, v in results.items() if k != "samples"}
            )
        del lm

    write_jsonl(out / "items.jsonl", items)
    write_json(out / "metrics.json", metrics)
    write_json(out / "lm_eval_results.json", raw)
    task_cfgs = {t: r.get("configs", {}).get(t, {}) for r in raw.values() for t in r.get("configs", {})}
    write_json(
        out / EVALUATION_RECORD,
        {
            "stage": "evaluate",
            "inputs": inputs,
            "inputs_hash": inputs_hash,
            "model": {
                "spec": model_spec,
                "path": path,
                "revision": model_rev,
                "device": dev,
                "dtype": str(models.torch_dtype(settings.dtype, dev)).replace("torch.", ""),
            },
            "adapter": ({**fingerprint, "probe_max_abs_logit_delta": adapter_delta} if fingerprint else None),
            "generation": {
                "settings": generation_settings(settings),
                "per_task": {t: c.get("generation_kwargs") for t, c in task_cfgs.items()},
            },
            "chat_template": {t: (infos[t]["chat"] and settings.apply_chat_template) for t in task_list},
            "chat_template_sha": template_hash,
            "tasks": {t: {k: v for k, v in infos[t].items() if k != "generation_kwargs"} for t in task_list},
            "task_versions": {t: (c.get("metadata") or {}).get("version") for t, c in task_cfgs.items()},
            "n_items": {t: sum(r["task"] == t for r in items) for t in task_list},
            "metrics": metrics,
            "sandbox": sandbox_info,
            "request_cache": caches,
            "timing": {"load_s": round(load_s, 3), "wall_s": round(time.monotonic() - t0, 3)},
            "wall_s": round(time.monotonic() - t0, 2),
            **provenance.collect(),
            **(extra_manifest or {}),
        },
    )
    _verify_outputs(out, task_list)
    return metrics
