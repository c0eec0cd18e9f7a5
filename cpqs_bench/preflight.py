"""``reproduce --preflight``: prove a preset will run before the first GPU hour is spent.

Two parts, both before any real stage runs:

1. **Checks** — resolve everything the preset needs and print one table of ``OK`` / ``WARN`` / ``PROBLEM`` lines:
   datasets (reachable, schema detected, rows kept after quarantine, pairs available vs ``n_pairs``), model and
   tokenizer (revision, chat template vs the evaluation tasks under the one-template rule, BOS behaviour, context
   length vs ``max_length``), proxy and generator models, selectors (registry), tasks (exist, data offline,
   template-compatible), the frozen recipe and its hash, free disk for features and adapters, and the work per stage
   (tokens to score, tokens to train per arm × seed, evaluation requests) with a time estimate from a small
   throughput table (CPU figures measured on this project's 2-core machine, GPU figures marked as estimates).
2. **A scratch run** — every stage of the pipeline on a handful of examples, with a tiny random stand-in model that
   has the preset's tokenizer family (offline, ``--preflight``) or the real model (``--preflight=full``), in a
   temporary directory that is deleted afterwards.

Offline, a Hub model cannot be opened; its facts come from the Hub config when cached, else from
:data:`KNOWN_MODELS` (labelled as such in the table), and the scratch run uses the stand-in family.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from cpqs_bench.config import Config, config_hash, replace, to_dict
from cpqs_bench.data.example import Example

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

# Facts about Hub models the paper presets use, for offline checks (from each model's config.json /
# tokenizer_config.json on the Hub). family = tiny stand-in tokenizer family with the same BOS / template behaviour.
KNOWN_MODELS: dict[str, dict[str, Any]] = {
    "meta-llama/Llama-2-7b-hf": {
        "family": "llama2",
        "chat_template": False,
        "bos": True,
        "context": 4096,
        "params_b": 6.7,
    },
    "meta-llama/Llama-2-7b-chat-hf": {
        "family": "llama2",
        "chat_template": True,
        "bos": True,
        "context": 4096,
        "params_b": 6.7,
    },
    "Qwen/Qwen2.5-7B-Instruct": {
        "family": "chatml",
        "chat_template": True,
        "bos": False,
        "context": 32768,
        "params_b": 7.6,
    },
    "Qwen/Qwen2.5-7B": {"family": "chatml", "chat_template": True, "bos": False, "context": 131072, "params_b": 7.6},
    "Qwen/Qwen2.5-0.5B-Instruct": {
        "family": "chatml",
        "chat_template": True,
        "bos": False,
        "context": 32768,
        "params_b": 0.49,
    },
    "Qwen/Qwen2.5-1.5B-Instruct": {
        "family": "chatml",
        "chat_template": True,
        "bos": False,
        "context": 32768,
        "params_b": 1.5,
    },
    "Qwen/Qwen2.5-Coder-7B-Instruct": {
        "family": "chatml",
        "chat_template": True,
        "bos": False,
        "context": 32768,
        "params_b": 7.6,
    },
    "Qwen/Qwen2.5-Coder-0.5B-Instruct": {
        "family": "chatml",
        "chat_template": True,
        "bos": False,
        "context": 32768,
        "params_b": 0.49,
    },
    "meta-llama/Llama-3.1-8B-Instruct": {
        "family": "chatml",
        "chat_template": True,
        "bos": True,
        "context": 131072,
        "params_b": 8.0,
    },
    "OpenAssistant/reward-model-deberta-v3-large-v2": {
        "family": "gpt2",
        "chat_template": False,
        "bos": True,
        "context": 512,
        "params_b": 0.435,
    },
    # DEITA's scorers (model cards: "Finetuned from model: Llama-1-13b-hf"; LLaMA-1 tokenizer, BOS, 2,048 positions)
    "hkust-nlp/deita-complexity-scorer": {
        "family": "llama2",
        "chat_template": False,
        "bos": True,
        "context": 2048,
        "params_b": 13.0,
    },
    "hkust-nlp/deita-quality-scorer": {
        "family": "llama2",
        "chat_template": False,
        "bos": True,
        "context": 2048,
        "params_b": 13.0,
    },
    # reward-model options named in selectors/reward.py (Llama-3.1-8B backbone; chat-templated input)
    "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2": {
        "family": "chatml",
        "chat_template": True,
        "bos": True,
        "context": 131072,
        "params_b": 8.0,
    },
    "gpt2": {"family": "gpt2", "chat_template": False, "bos": False, "context": 1024, "params_b": 0.124},
    "embedded": {"family": "chatml", "chat_template": True, "bos": False, "context": 8192, "params_b": 0.135},
}

# tokens/s per billion parameters, measured on this project's 2-core CPU with the 135M embedded model (bf16) and
# scaled linearly in parameters; GPU rows are estimates for one H200 (bf16) and say so.
THROUGHPUT = {
    "cpu": {"forward": 900 * 0.135, "train": 240 * 0.135, "generate": 125 * 0.135, "measured": True},
    "cuda": {"forward": 40000 * 7.0, "train": 6000 * 7.0, "generate": 2500 * 7.0, "measured": False},
}

OK, WARN, PROBLEM, INFO = "OK", "WARN", "PROBLEM", "INFO"


@dataclass
class Check:
    area: str
    item: str
    status: str
    detail: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    work: dict[str, Any] = field(default_factory=dict)
    offline_tasks: list[str] = field(default_factory=list)  # tasks whose data loaded here (the scratch run's)
    scratch_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return not any(c.status == PROBLEM for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == PROBLEM]

    def add(self, area: str, item: str, status: str, detail: str) -> None:
        self.checks.append(Check(area, item, status, detail))

    def guard(self, area: str, item: str, fn: Callable[[], tuple[str, str]]) -> None:
        """Run one check; an exception is that check's PROBLEM line (with its message), never a crash."""
        try:
            status, detail = fn()
        except Exception as exc:  # noqa: BLE001 — every failure becomes a reported problem line
            status, detail = PROBLEM, f"{type(exc).__name__}: {exc}"
        self.add(area, item, status, detail)

    def lines(self) -> list[str]:
        w = max([len(c.area) + len(c.item) + 3 for c in self.checks] + [10])
        out = [f"{'status':<8} {'check':<{w}} detail"]
        for c in self.checks:
            out.append(f"{c.status:<8} {(c.area + ' / ' + c.item):<{w}} {c.detail}")
        n_p = len(self.problems)
        out.append(f"preflight: {'PASSED' if not n_p else f'FAILED ({n_p} problem(s))'}")
        return out


# ----------------------------------------------------------------------------------------------------- helpers
def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("0", "")


def model_facts(spec: str, revision: str | None, mode: str) -> dict[str, Any]:
    """What the checks need to know about a model: family, chat template, BOS, context length, size.

    The embedded model and local directories are opened (tokenizer + config, no weights); a Hub id is opened when
    it can be (online, or in the local HF cache), else its facts come from :data:`KNOWN_MODELS`."""
    from cpqs_bench import models

    local = spec == models.EMBEDDED or Path(spec.split("@")[0]).is_dir()
    if local or mode == "full" or not offline():
        try:
            tok = models.load_tokenizer(spec, revision)
            from transformers import AutoConfig

            path, rev = models.resolve(spec, revision)
            conf = AutoConfig.from_pretrained(path, revision=rev if not Path(path).is_dir() else None)
            ctx = getattr(conf, "max_position_embeddings", None) or getattr(conf, "n_positions", None)
            bos = tok("x")["input_ids"][:1] == [tok.bos_token_id] if tok.bos_token_id is not None else False
            known = KNOWN_MODELS.get(spec, {})
            n_params = _param_count_b(conf) or known.get("params_b")
            family = known.get("family") or _family_of(tok)
            return {
                "source": "opened",
                "family": family,
                "chat_template": bool(tok.chat_template),
                "bos": bos,
                "context": ctx,
                "params_b": n_params,
                "revision": rev,
            }
        except Exception as exc:  # noqa: BLE001 — fall back to the table below, and say so
            if local:
                raise
            err = f"{type(exc).__name__}: {str(exc)[:80]}"
        else:  # pragma: no cover - returned above
            err = None
    else:
        err = "offline"
    base = spec.split("@")[0]
    if base in KNOWN_MODELS:
        return {"source": f"known-model table ({err})", "revision": revision, **KNOWN_MODELS[base]}
    raise LookupError(
        f"model {spec!r} cannot be opened ({err}) and is not in preflight.KNOWN_MODELS; run "
        f"--preflight=full online, or cache it locally first"
    )


def _family_of(tok: PreTrainedTokenizerBase) -> str:
    vocab = tok.get_vocab()
    if "<|im_start|>" in vocab:
        return "chatml"
    if tok.bos_token == "<s>":
        return "llama2"
    return "gpt2"


def _param_count_b(conf: PretrainedConfig) -> float | None:
    h = getattr(conf, "hidden_size", None) or getattr(conf, "n_embd", None)
    n = getattr(conf, "num_hidden_layers", None) or getattr(conf, "n_layer", None)
    v = getattr(conf, "vocab_size", None)
    inter = getattr(conf, "intermediate_size", None) or (4 * h if h else None)
    if not (h and n and v):
        return None
    return (n * (4 * h * h + 3 * h * inter) + 2 * v * h) / 1e9


def _mean_tokens(examples: Sequence[Example], tok: PreTrainedTokenizerBase | None) -> float:
    if not examples:
        return 0.0
    sample = examples[:200]
    if tok is None:  # ~4 characters a token
        return sum(len(e.instruction) + len(e.response) for e in sample) / len(sample) / 4
    return sum(len(tok(e.instruction + "\n" + e.response)["input_ids"]) for e in sample) / len(sample)


def _fmt_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ------------------------------------------------------------------------------------------------------- checks
def check_data(cfg: Config, rep: Report) -> list[Example]:
    from cpqs_bench.data.pool import read_pool, resolve_source

    d = cfg.data
    found: dict[str, Any] = {"pool": []}

    def pool_check() -> tuple[str, str]:
        source, _ = resolve_source(d.pool, d.mirror)
        if source.startswith("hf:") and offline():
            return PROBLEM, (
                f"{d.pool} resolves to {source}, unreachable offline (no mirror copy): name a mirrored "
                f"dataset or run --preflight=full online"
            )
        pool = read_pool(
            d.pool,
            schema=d.schema,
            field_map=d.field_map,
            mirror=d.mirror,
            limit=d.pool_limit,
            offset=d.pool_offset,
            max_rejected_fraction=d.max_rejected_fraction,
        )
        found["pool"] = pool.examples
        s = pool.summary()
        return OK, (
            f"{source}: schema {s['schema']}, read {s['read']}, kept {s['kept']}, rejected {s['rejected']}"
            + (f" (limited by data.pool_limit={d.pool_limit})" if d.pool_limit else "")
        )

    rep.guard("data", f"pool {d.pool}", pool_check)
    pw = cfg.evaluate.pairwise
    for name in pw.sets:
        rep.guard("data", f"pairwise prompt set {name}", functools.partial(_prompt_set_check, cfg, name))
    if "cpqs" in cfg.selectors.names:
        rep.guard(
            "data",
            f"cpqs pairs ({cfg.selectors.cpqs.pairs_source}: {cfg.selectors.cpqs.pairs})",
            lambda: _pairs_check(cfg, found["pool"]),
        )
    return found["pool"]


def _prompt_set_check(cfg: Config, name: str) -> tuple[str, str]:
    from cpqs_bench.evaluate.judge import prompt_set_path, read_prompts

    path = prompt_set_path(name, cfg.data.mirror)  # a missing set raises: the guard reports it as a problem
    n = len(read_prompts(path))
    limit = cfg.evaluate.pairwise.limit
    return OK, f"{path}: {n} prompts" + (f", the first {min(n, limit)} used (evaluate.pairwise.limit)" if limit else "")


def _pairs_check(cfg: Config, pool: list[Any]) -> tuple[str, str]:
    """The CNN's pairs exist, are instruction-disjoint from the pool, and reach ``n_pairs``."""
    from cpqs_bench.data import mirror as _mirror
    from cpqs_bench.data.pool import read_pool, resolve_source
    from cpqs_bench.selectors.cpqs.train import build_pairs

    cq, d = cfg.selectors.cpqs, cfg.data
    want = cq.n_pairs
    if cq.pairs_source == "generate":  # positives from the pairs pool; negatives generated later
        source, _ = resolve_source(cq.pairs, d.mirror)
        if source.startswith("hf:") and offline():
            return PROBLEM, f"{cq.pairs} resolves to {source}: unreachable offline (not in the mirror)"
        rows = read_pool(cq.pairs, mirror=d.mirror, max_rejected_fraction=d.max_rejected_fraction).examples
        from cpqs_bench.stages.data import disjoint_prompts  # the data stage's rule (overlap_key)

        n = len(disjoint_prompts(pool, rows, None))
        detail = (
            f"{source}: {len(rows)} rows, {n} with instructions disjoint from the pool to answer with "
            f"{', '.join(cq.generators) or cq.generator} (n_pairs = {want})"
        )
    else:
        pairset = build_pairs(cfg, avoid=pool)  # as training builds them: overlap dropped first, then drawn
        n = pairset.n_pairs
        source = pairset.source
        dropped = pairset.skipped.get("overlap_with_pool", 0)
        detail = (
            f"{source}: {dropped} pairs dropped as overlapping the pool, {n} drawn (n_pairs = {want}, short by "
            f"{pairset.skipped.get('short_of_n_pairs', 0)}); skipped {dict(pairset.skipped) or 'none'}"
        )
    if want is not None and n < want:
        named = _mirror.NAMED.get(cq.pairs)
        if named is not None and "mirror" in named.description and not str(source).startswith("hf:"):
            return WARN, detail + "; the mirror holds a sample of the Hub set, the Hub set is larger"
        if n == 0:
            return PROBLEM, detail + "; no usable pairs"
        return WARN, detail + "; fewer than n_pairs: training uses what there is"
    return OK, detail


def check_models(cfg: Config, rep: Report, mode: str, task_chat: dict[str, bool]) -> dict[str, Any]:
    facts: dict[str, Any] = {}

    def target() -> tuple[str, str]:
        f = model_facts(cfg.model.id, cfg.model.revision, mode)
        facts.update(f)
        return OK, (
            f"family {f['family']}, chat template {'yes' if f['chat_template'] else 'no'}, "
            f"BOS {'added' if f['bos'] else 'none'}, context {f['context']}, "
            f"~{f['params_b']:.2f}B params, revision {f.get('revision') or 'unpinned'} [{f['source']}]"
        )

    rep.guard("model", cfg.model.id, target)
    if not facts:
        return facts
    rep.guard("model", "prompt template vs tasks", lambda: _template_check(cfg, facts, task_chat))
    for key, limit in (
        ("prompt.max_length", cfg.prompt.max_length),
        ("finetune.max_length", cfg.finetune.max_length),
        ("selectors.cpqs.feature_max_length", cfg.selectors.cpqs.feature_max_length),
    ):
        ctx = facts.get("context")
        rep.add(
            "model",
            key,
            PROBLEM if ctx and limit > ctx else OK,
            f"{limit} {'>' if ctx and limit > ctx else '<='} context length {ctx}",
        )
    extra = []
    if "superfiltering" in cfg.selectors.names:
        extra.append(("proxy", cfg.selectors.proxy_model))
    cq = cfg.selectors.cpqs
    if "cpqs" in cfg.selectors.names and cq.pairs_source == "generate":
        extra.append(("negatives generator", cq.generator))
    j = cfg.selectors.judge
    if "alpagasus" in cfg.selectors.names:
        if j.backend == "openai":
            rep.add(
                "model",
                f"judge {j.model} @ {j.base_url}",
                WARN if offline() or not os.environ.get(j.api_key_env) else OK,
                f"OpenAI-compatible endpoint; key from ${j.api_key_env} "
                f"({'set' if os.environ.get(j.api_key_env) else 'NOT set'}); not contacted offline",
            )
        elif j.model:
            extra.append(("judge", j.model))
    pj = cfg.evaluate.pairwise.judge
    if cfg.evaluate.pairwise.enabled:
        if pj.backend == "openai":
            rep.add(
                "model",
                f"pairwise judge {pj.model} @ {pj.base_url}",
                WARN if offline() or not os.environ.get(pj.api_key_env) else OK,
                f"OpenAI-compatible endpoint; key from ${pj.api_key_env} "
                f"({'set' if os.environ.get(pj.api_key_env) else 'NOT set'}); not contacted offline",
            )
        elif pj.model:
            extra.append(("pairwise judge", pj.model))
        else:
            rep.add(
                "model",
                "pairwise judge",
                WARN,
                "evaluate.pairwise.judge names no model: the target model judges "
                "its own arms (a weak judge: a pipeline check, labelled so)",
            )
    if "mods" in cfg.selectors.names:
        extra.append(("reward model", cfg.selectors.mods.reward_model))
    bases = {n.partition("+")[0] for n in cfg.selectors.names}
    if "reward" in bases and ("reward model", cfg.selectors.reward.model) not in extra:
        extra.append(("reward model", cfg.selectors.reward.model))
    if "deita" in bases:
        extra.append(("deita complexity scorer", cfg.selectors.deita.complexity_model))
        extra.append(("deita quality scorer", cfg.selectors.deita.quality_model))
    for role, spec in extra:
        rep.guard("model", f"{role} {spec}", functools.partial(_other_model, spec, mode))
    return facts


def _other_model(spec: str, mode: str) -> tuple[str, str]:
    f = model_facts(spec, None, mode)
    return OK, f"family {f['family']}, context {f['context']} [{f['source']}]"


def _template_check(cfg: Config, facts: dict[str, Any], task_chat: dict[str, bool]) -> tuple[str, str]:
    chat_tasks = [t for t, chat in task_chat.items() if chat]
    tpl = cfg.prompt.template
    if tpl == "chat" and not facts["chat_template"]:
        if chat_tasks:
            return PROBLEM, (
                f"prompt.template=chat but {cfg.model.id} has no chat template, and chat tasks "
                f"{chat_tasks} need one: set prompt.template (alpaca, llama2, none or a Jinja template); "
                f"the harness then evaluates with that same template"
            )
        return PROBLEM, f"prompt.template=chat but {cfg.model.id} has no chat template"
    how = "the tokenizer's own chat template" if tpl == "chat" else f"the {tpl!r} template set as the chat template"
    return OK, (
        f"training and evaluation both use {how}"
        + (f"; chat tasks {chat_tasks}" if chat_tasks else "")
        + "; system prompt "
        + (repr(cfg.prompt.system_prompt) if cfg.prompt.system_prompt else "the template's default")
    )


def _query_set(cfg: Config, base: str) -> tuple[str, list[Example]]:
    """The query set a target-aware selector reads, as it reads it (``rds``: :func:`rds.load_queries`; ``less``:
    :func:`less.read_queries`, which applies LESS's own limit and offset)."""
    from cpqs_bench.selectors import less, rds

    spec = getattr(cfg.selectors, base).queries
    if not spec:
        raise ValueError(f"selectors.{base}.queries names no query set (target-aware selectors need one)")
    if base == "less":
        return spec, less.read_queries(cfg)[0]
    return spec, [q for _, q in rds.load_queries(cfg)]


def check_query_sets(cfg: Config, names: list[str], pool: Sequence[Example] = ()) -> tuple[str, str]:
    """A target-aware selector's query (dev) set must never be evaluation items: refused on an exact (normalised)
    instruction match or any shared 13-gram with an evaluation item (the contamination index), or on a normalised
    match with a pairwise-judge prompt (``evaluate.pairwise.sets``). Nor may it hold a pool example (normalised
    instruction): the selector would rank the query's own copy first (the selectors refuse that too,
    :func:`cpqs_bench.selectors.rds.refuse_pool_queries`)."""
    from cpqs_bench.contamination import ContaminationIndex, available_task_items
    from cpqs_bench.selectors.rds import check_queries_disjoint

    items, unavailable = available_task_items(cfg.evaluate.tasks, cfg.evaluate.include_path, cfg.data.mirror, None)
    index = ContaminationIndex.build(items, cfg.data.contamination_n)
    eval_prompts = [it.texts[0] for its in items.values() for it in its if it.texts]
    pw = cfg.evaluate.pairwise
    judged: list[str] = []
    if pw.enabled and pw.sets:
        from cpqs_bench.evaluate.judge import load_prompt_sets

        judged = [p["question"] for p in load_prompt_sets(pw.sets, cfg.data.mirror, None)]
    details = []
    for name in names:
        base = name.partition("+")[0]
        spec, queries = _query_set(cfg, base)
        setting = f"selectors.{base}.queries"
        problems = check_queries_disjoint(queries, eval_prompts, setting=setting)
        problems += check_queries_disjoint(queries, judged, what="pairwise-judge prompts", setting=setting)
        in_pool = check_queries_disjoint(queries, pool, show=3, what="pool examples", setting=setting)
        hits = index.overlapping_ids(queries)
        found = []
        if problems or hits:
            shown = problems[:3] + [f"{qid} shares an n-gram with {sorted(h)[:2]}" for qid, h in list(hits.items())[:3]]
            found.append("overlaps evaluation items: " + "; ".join(shown))
        if in_pool:
            found.append("overlaps the pool: " + "; ".join(in_pool[:3]))
        if found:
            return PROBLEM, f"{name}: the query set {spec} " + "; and ".join(found)
        sel = getattr(cfg.selectors, base)
        where = (f", rows from {sel.query_offset}" if sel.query_offset else "") + (
            f", tasks {list(sel.query_tasks)}" if getattr(sel, "query_tasks", ()) else ""
        )
        details.append(
            f"{name}: {len(queries)} queries from {spec}{where}, none in the evaluation items"
            + (f", the {len(judged)} pairwise prompts" if judged else "")
            + f" or the {len(pool)} pool examples"
        )
    if unavailable:
        details.append(f"not checked against {sorted(unavailable)} (data not offline)")
    return OK, "; ".join(details)


def check_selectors(cfg: Config, rep: Report, pool: Sequence[Example] = ()) -> None:
    from cpqs_bench.reproduce import is_control, is_control_of

    target_aware = [n for n in cfg.selectors.names if n.partition("+")[0] in ("rds", "less")]
    if target_aware:
        rep.guard("selectors", "target-aware query sets", lambda: check_query_sets(cfg, target_aware, pool))
    for name in cfg.selectors.names:
        if is_control(name):
            ref = is_control_of(name)
            rep.guard("selectors", name, functools.partial(_control_check, cfg, ref))
            continue
        rep.guard("selectors", name, functools.partial(_registered_check, cfg, name))


def _control_check(cfg: Config, ref: str) -> tuple[str, str]:
    if ref in cfg.selectors.names:
        return OK, f"matched random control of {ref} (cpqs_bench.selectors.matched), redrawn per seed"
    return PROBLEM, f"its reference arm {ref!r} is not in selectors.names"


def _registered_check(cfg: Config, name: str) -> tuple[str, str]:
    from cpqs_bench.selectors import registry

    return OK, type(registry.get(name, dict(cfg.selectors.plugins))).__module__


def check_tasks(cfg: Config, rep: Report) -> dict[str, bool]:
    """Every task exists (ours, the user's include_path, or lm-eval's); its data loads here (offline: from the
    mirror). An lm-eval task whose dataset only the Hub has is a WARN offline (checked by --preflight=full)."""
    from cpqs_bench.evaluate import harness

    chat: dict[str, bool] = {}
    rep.offline_tasks = []

    def one(task: str) -> tuple[str, str]:
        (name,), src = harness.resolve_tasks([task], cfg.evaluate)
        try:
            info = harness.task_info(name, cfg.evaluate)
        except Exception as exc:  # noqa: BLE001 — classified below, never silent
            if src.defaults and offline():
                chat[task] = False
                return WARN, (
                    f"lm-eval task; its dataset is not available offline ({type(exc).__name__}); "
                    f"checked by --preflight=full online, left out of the scratch run"
                )
            raise
        chat[task] = bool(info.get("chat"))
        rep.offline_tasks.append(task)
        return OK, (
            f"{info.get('output_type', '?')}, metric {info.get('metric', '?')}, "
            f"{'chat' if chat[task] else 'completion'}"
            + (", proxy" if info.get("proxy") else "")
            + (f", {info['n_docs']} docs" if info.get("n_docs") else "")
        )

    from cpqs_bench.contamination import shares_source

    for task in cfg.evaluate.tasks:
        rep.guard("tasks", task, functools.partial(one, task))
        shared = shares_source(cfg.data.pool, task, cfg.evaluate.include_path)
        if shared:  # named, allowed: the contamination table on every page measures the overlap
            rep.add("contamination", f"{cfg.data.pool} vs {task}", WARN, shared)
    return chat


def check_recipe(cfg: Config, rep: Report) -> None:
    from cpqs_bench.finetune.recipe import recipe, recipe_hash

    precision = cfg.finetune.precision
    rec = recipe(cfg, precision=precision, model_revision=cfg.model.revision)
    rep.guard(
        "recipe",
        "frozen SFT recipe",
        lambda: (
            OK,
            f"hash {recipe_hash(rec)} (precision {precision}); LoRA r="
            f"{cfg.finetune.lora_r} α={cfg.finetune.lora_alpha}, "
            f"{cfg.finetune.epochs} epochs, lr {cfg.finetune.lr}",
        ),
    )
    rep.add("recipe", "config", OK, f"hash {config_hash(cfg)}; seeds {list(cfg.experiment.seeds)}")


OWN_COST_LINES = ("rds", "reward", "less", "deita")  # selectors whose work is estimated on a line of their own
DEITA_TEMPLATE_TOKENS = 40  # the scorers' prompt template around the instruction / response (deita.py)


def _size_b(spec: str) -> float | None:
    """Billions of parameters of a model the preset names, from :data:`KNOWN_MODELS` (None: not known offline)."""
    return KNOWN_MODELS.get(spec.split("@")[0], {}).get("params_b")


def _n_queries(cfg: Config, base: str) -> int:
    """An upper bound on a target-aware selector's query count: ``query_limit`` per comma-separated source (a
    source without a limit counted as 1,000 rows; the preflight's query-set check reads the real set)."""
    from cpqs_bench.selectors.rds import query_sources

    sel = getattr(cfg.selectors, base)
    return len(query_sources(sel.queries or "")) * (sel.query_limit or 1000)


def less_gradient_bytes(cfg: Config, n_pool: int) -> int:
    """Disk for LESS's projected gradients (float32, cached per warm-up checkpoint in the scoring work dir): one
    ``projection_dim`` vector per pool example and query, per checkpoint (one per warm-up epoch)."""
    lc = cfg.selectors.less
    return lc.warmup_epochs * (n_pool + _n_queries(cfg, "less")) * lc.projection_dim * 4


def selector_work(
    cfg: Config, n_pool: int, tok_per_ex: float, params: float, tp: dict[str, float | bool], rep: Report
) -> dict[str, float]:
    """One work line per selector with its own models and passes (``rds``, ``reward``, ``less``, ``deita``): the
    models, the tokens, and a time from :data:`THROUGHPUT` scaled by each model's size; seconds per line."""
    bases = {n.partition("+")[0] for n in cfg.selectors.names}
    label = "measured here" if tp["measured"] else "ESTIMATE (GPU figures not measured)"
    fwd_per_b, train_per_b = float(tp["forward"]), float(tp["train"])
    target = cfg.model.id
    pool_tokens = n_pool * tok_per_ex
    seconds: dict[str, float] = {}

    def timed(tokens: float, size_b: float | None, per_b: float) -> tuple[float, str]:
        if size_b is None:
            return 0.0, "time not estimated (model size unknown offline)"
        t = tokens / (per_b / size_b)
        return t, f"≈ {_fmt_time(t)} [{label}]"

    if "rds" in bases:
        n_q = _n_queries(cfg, "rds")
        t, when = timed((n_pool + n_q) * tok_per_ex, params, fwd_per_b)
        seconds["rds"] = t
        rep.add(
            "work",
            "rds",
            INFO,
            f"{target}: one forward pass (last hidden state) over {n_pool} pool examples + ≤ {n_q} queries "
            f"({(n_pool + n_q) * tok_per_ex / 1e6:.2f}M tokens) {when}",
        )
    if "reward" in bases:
        r = cfg.selectors.reward
        size = _size_b(r.model)
        t, when = timed(pool_tokens, size, fwd_per_b)
        seconds["reward"] = t
        rep.add(
            "work",
            "reward",
            INFO,
            f"{r.model} (~{size if size is not None else '?'}B): one forward pass over {n_pool} (prompt, response) "
            f"pairs ({pool_tokens / 1e6:.2f}M tokens) {when}",
        )
    if "less" in bases:
        lc = cfg.selectors.less
        n_q = _n_queries(cfg, "less")
        n_warm = max(1, round(lc.warmup_fraction * n_pool))
        warm_tokens = n_warm * tok_per_ex * lc.warmup_epochs
        grad_tokens = lc.warmup_epochs * (n_pool + n_q) * tok_per_ex
        t_warm, when_warm = timed(warm_tokens, params, train_per_b)
        t_grad, when_grad = timed(grad_tokens, params, train_per_b)
        seconds["less warm-up"], seconds["less gradients"] = t_warm, t_grad
        rep.add(
            "work",
            "less",
            INFO,
            f"{target}: warm-up LoRA (r={lc.lora_r}) on {n_warm} examples ({lc.warmup_fraction:g} of the pool) × "
            f"{lc.warmup_epochs} epochs = {warm_tokens / 1e6:.2f}M trained tokens {when_warm}; gradients: a forward + "
            f"backward pass per example at each of {lc.warmup_epochs} checkpoints over {n_pool} pool examples + "
            f"≤ {n_q} queries = {grad_tokens / 1e6:.2f}M tokens, one example per pass {when_grad}; projected "
            f"gradients {less_gradient_bytes(cfg, n_pool) / 1e9:.2f} GB on disk ({lc.projection_dim} dims, float32)",
        )
    if "deita" in bases:
        dc = cfg.selectors.deita
        sizes = {m: _size_b(m) for m in (dc.complexity_model, dc.quality_model)}
        scorer_tokens = pool_tokens + n_pool * DEITA_TEMPLATE_TOKENS  # ≤: complexity reads the instruction only
        total = 0.0
        parts = []
        for m, size in sizes.items():
            t, when = timed(scorer_tokens, size, fwd_per_b)
            total += t
            parts.append(f"{m} (~{size if size is not None else '?'}B) {when}")
        emb = ""
        if dc.embedding == "target":
            t, when = timed(pool_tokens, params, fwd_per_b)
            total += t
            emb = f"; filter embeddings: {target}, one forward pass {when}"
        seconds["deita"] = total
        rep.add(
            "work",
            "deita",
            INFO,
            f"two scorer passes over {n_pool} examples (≤ {scorer_tokens / 1e6:.2f}M tokens each, one forward pass "
            "per prompt, the rating read at its next token): " + "; ".join(parts) + emb,
        )
    return seconds


def estimate_work(cfg: Config, pool: list[Any], facts: dict[str, Any], device: str, rep: Report) -> dict[str, Any]:
    """Tokens and requests per stage, and time from :data:`THROUGHPUT` (scaled by parameters)."""
    from cpqs_bench.reproduce import arms, scored
    from cpqs_bench.select import budget_count
    from cpqs_bench.selectors import diversity
    from cpqs_bench.stages.mods import builds_mods_seed

    n_pool = len(pool) if not cfg.data.pool_limit else min(len(pool), cfg.data.pool_limit)
    n_pool = max(n_pool, 1)
    tok_per_ex = _mean_tokens(pool, None)
    params = facts.get("params_b") or 1.0
    tp = THROUGHPUT["cuda" if device.startswith("cuda") else "cpu"]
    fwd = tp["forward"] / params
    train = tp["train"] / params
    gen = tp["generate"] / params
    # forward passes of the target model over the pool; the selectors with their own models and passes (rds,
    # reward, less, deita) are charged on lines of their own (selector_work); external scores cost nothing here
    passes = {"ifd": 2, "ifd_ppl": 2, "perplexity": 1, "cpqs": 1, "superfiltering": 0, "random": 0, "longest": 0}
    passes.update(dict.fromkeys(OWN_COST_LINES + ("external",), 0))
    score_tokens = sum(passes.get(n.partition("+")[0], 1) for n in scored(cfg)) * n_pool * tok_per_ex
    # an arm's examples: the pool for full; the budget for a selector and for a matched control (its reference
    # arm's count, or under budget_unit=tokens its reference arm's tokens); a token budget is a fraction of the
    # pool's tokens (< 1) or a token count
    pool_tokens = n_pool * tok_per_ex
    if cfg.selectors.budget_unit == "tokens":
        budget_tokens = cfg.selectors.budget * pool_tokens if cfg.selectors.budget < 1 else cfg.selectors.budget
        arm_budget = min(budget_tokens, pool_tokens)
    else:
        arm_budget = budget_count(cfg.selectors.budget, n_pool) * tok_per_ex
    arm_sizes = {a: (pool_tokens if a == "full" else arm_budget) for a, _, _ in arms(cfg)}
    train_tokens = {a: int(t * cfg.finetune.epochs) for a, t in arm_sizes.items()}
    # MoDS's seed model (one fine-tune per run; its seed set is a share of the high-quality subset: bounded by the pool)
    seed_tokens = (
        int(diversity.count(cfg.selectors.mods.seed_count, n_pool) * tok_per_ex * cfg.finetune.epochs)
        if builds_mods_seed(cfg)
        else 0
    )
    n_models = 1 + len(arm_sizes) * len(cfg.experiment.seeds)
    per_task = {t: cfg.evaluate.task_limits.get(t, cfg.evaluate.limit) or 500 for t in cfg.evaluate.tasks}
    requests = n_models * sum(per_task.values())
    proxy = {t for t in cfg.evaluate.tasks if t.endswith("_nll")}  # loglikelihood: one forward, no generation
    gen_tokens = (
        n_models * sum(n for t, n in per_task.items() if t not in proxy) * (cfg.evaluate.max_new_tokens or 512) * 0.5
    )
    ll_tokens = n_models * sum(n for t, n in per_task.items() if t in proxy) * 2 * tok_per_ex
    seconds = {
        "score": score_tokens / fwd,
        "finetune": (sum(train_tokens.values()) * len(cfg.experiment.seeds) + seed_tokens) / train,
        "evaluate": gen_tokens / gen + ll_tokens / fwd,
    }
    label = "measured here" if tp["measured"] else "ESTIMATE (GPU figures not measured)"
    rep.add(
        "work",
        "scoring",
        INFO,
        f"{score_tokens / 1e6:.2f}M tokens ({n_pool} examples × ~{tok_per_ex:.0f} tokens "
        f"× forward passes) ≈ {_fmt_time(seconds['score'])} [{label}]",
    )
    seconds.update(selector_work(cfg, n_pool, tok_per_ex, params, tp, rep))
    rep.add(
        "work",
        "fine-tuning",
        INFO,
        "per arm × seed: "
        + ", ".join(f"{a} {t / 1e3:.0f}k" for a, t in train_tokens.items())
        + f" tokens; {len(arm_sizes) * len(cfg.experiment.seeds)} runs"
        + (f" + the MoDS seed model (≤ {seed_tokens / 1e3:.0f}k tokens)" if seed_tokens else "")
        + f" ≈ {_fmt_time(seconds['finetune'])} [{label}]",
    )
    rep.add(
        "work",
        "evaluation",
        INFO,
        f"{requests} requests ({n_models} models × items per task "
        f"{per_task}; 500 assumed where unlimited) ≈ "
        f"{_fmt_time(seconds['evaluate'])} [{label}]",
    )
    pw = cfg.evaluate.pairwise
    if pw.enabled:
        from cpqs_bench.evaluate.judge import load_prompt_sets

        n_prompts = len(load_prompt_sets(pw.sets, cfg.data.mirror, pw.limit))
        n_judged = len(arm_sizes) * len(cfg.experiment.seeds)  # every model but the reference, per seed
        seconds["pairwise answers"] = n_models * n_prompts * pw.max_new_tokens * 0.5 / gen
        rep.add(
            "work",
            "pairwise judge",
            INFO,
            f"answers: {n_models} models × {n_prompts} prompts ≈ {_fmt_time(seconds['pairwise answers'])} "
            f"[{label}]; judge: {n_judged} comparisons × {n_prompts} prompts × 2 orders = "
            f"{2 * n_judged * n_prompts} judge calls ({pw.judge.backend}"
            + (f" {pw.judge.model}" if pw.judge.model else ", the target model")
            + ")",
        )
    rep.add("work", "total", INFO, f"≈ {_fmt_time(sum(seconds.values()))} on {device} [{label}]")
    return {"score_tokens": score_tokens, "train_tokens": train_tokens, "eval_requests": requests, "seconds": seconds}


def check_disk(cfg: Config, rep: Report, facts: dict[str, Any], n_pool: int) -> None:
    out = Path(cfg.experiment.output_dir)
    probe = out if out.exists() else Path(".").resolve()
    free = shutil.disk_usage(probe).free
    params = (facts.get("params_b") or 1.0) * 1e9
    hidden = math.sqrt(params / 12 / 32) * 1.0 if params else 4096  # rough: 12·L·h² with L≈32
    cq = cfg.selectors.cpqs
    feats = 0.0
    if "cpqs" in cfg.selectors.names and cq.feature_cache:
        feats = min(cq.feature_cache_max_gb * 1e9, (cq.n_pairs or 0) * 2 * 200 * 32 * hidden * 2)
    lora = cfg.finetune.lora_r * 2 * hidden * 7 * 32 * 4  # r × (in + out) × 7 linear layers × L layers × fp32
    adapters = lora * len(cfg.experiment.seeds) * (2 + len(cfg.selectors.names) + len(cfg.selectors.bottom_arms))
    grads = 0.0
    if any(n.partition("+")[0] == "less" for n in cfg.selectors.names):
        grads = float(less_gradient_bytes(cfg, n_pool))
    need = feats + adapters + grads
    rep.add(
        "disk",
        str(probe),
        PROBLEM if need > free else OK,
        f"free {free / 1e9:.1f} GB; need ≈ {need / 1e9:.2f} GB (features {feats / 1e9:.2f}, adapters "
        f"{adapters / 1e9:.2f}" + (f", LESS projected gradients {grads / 1e9:.2f}" if grads else "") + ")",
    )


# -------------------------------------------------------------------------------------------------- scratch run
def scratch_config(cfg: Config, out_dir: Path, model_dir: Path | None, tasks: list[str] | None = None) -> Config:
    """The preset shrunk to a handful of examples, one seed, tiny sizes, writing only under ``out_dir``."""
    changes: dict[str, Any] = {
        "experiment.name": f"preflight-{cfg.experiment.name}",
        "experiment.seeds": [cfg.experiment.seeds[0]],
        "experiment.output_dir": str(out_dir / "runs"),
        "leaderboard.out_dir": None,  # the scratch board stays in the scratch run dir, never in the tracked pages
        "data.pool_limit": 4,
        # two examples, or (budget_unit=tokens) half the scratch pool's trained tokens
        "selectors.budget": 2 if cfg.selectors.budget_unit == "examples" else 0.5,
        "selectors.batch_size": 2,
        "selectors.cpqs.n_pairs": 4,
        "selectors.cpqs.epochs": 1,
        "selectors.cpqs.grad_accum": 1,
        "selectors.cpqs.batch_size": 2,
        "selectors.cpqs.num_filters": 4,
        "selectors.cpqs.mlp_hidden": 8,
        "selectors.cpqs.feature_cache": False,
        "selectors.cpqs.generation_max_new_tokens": 4,
        "selectors.cpqs.generation_drop_unfinished": False,  # a random stand-in never finishes in 4 tokens
        "selectors.cpqs.generation_batch_size": 2,
        "selectors.cpqs.extract_batch_size": 2,
        "selectors.cpqs.val_fraction": 0.5,
        "prompt.max_length": min(cfg.prompt.max_length, 256),
        "finetune.max_length": min(cfg.finetune.max_length, 256),
        "selectors.cpqs.feature_max_length": min(cfg.selectors.cpqs.feature_max_length, 256),
        "finetune.epochs": 1,
        "finetune.lr": 1e-2,  # one step must move the stand-in's LoRA past the probe
        "finetune.warmup_ratio": 0.0,
        "finetune.batch_size": 2,
        "finetune.micro_batch_size": 2,
        "finetune.max_steps": 1,
        "finetune.save_steps": 1,
        "finetune.logging_steps": 1,
        "finetune.precision": "fp32",
        "evaluate.limit": 1,
        "evaluate.task_limits": {},
        "evaluate.max_new_tokens": 4,
        "evaluate.batch_size": 2,
        "evaluate.code_workers": 1,
        "publish.dry_run": True,
        "publish.wandb": False,
        "evaluate.pairwise.limit": 1,
        "evaluate.pairwise.max_new_tokens": 4,
        "evaluate.pairwise.batch_size": 2,
        "evaluate.pairwise.n_boot": 50,
        "selectors.drop_ifd_ge_1": False,  # a random stand-in often has IFD >= 1 everywhere: arms would be empty
        "selectors.mods.necessity_max_new_tokens": 4,  # its beams (MoDS: 4) still exercise the beam path
        # target-aware selectors: two queries (from the preset's own query set, offset and tasks kept)
        "selectors.rds.query_limit": 2,
        "selectors.rds.batch_size": 2,
        "selectors.rds.max_length": min(cfg.selectors.rds.max_length, 256),
        "selectors.less.query_limit": 2,
        # LESS: its warm-up draws one example (a fraction of 4, at least 1) and makes one optimizer step per epoch;
        # two epochs, because the first step's learning rate is 0 under the reference's linear warm-up (ratio 0.03
        # of 1 step rounds up to 1 step) and a checkpoint needs a positive mean rate to weigh its gradients
        "selectors.less.warmup_epochs": 2,
        "selectors.less.lora_r": 4,
        "selectors.less.lora_alpha": 16,
        "selectors.less.projection_dim": 64,
        "selectors.less.max_length": min(cfg.selectors.less.max_length, 256),
        "selectors.deita.batch_size": 2,
        # deita.max_length as the preset's: the stand-in's context (512) caps it, room for a pool instruction + template
        "selectors.reward.batch_size": 2,
        "selectors.reward.max_length": 256,
    }
    if tasks is not None:
        changes["evaluate.tasks"] = list(tasks)
    if model_dir is not None and "alpagasus" in cfg.selectors.names:
        # a random stand-in judge never writes a parseable rating: every row would be excluded and the arm empty
        changes["selectors.names"] = [n for n in cfg.selectors.names if n.partition("+")[0] != "alpagasus"]
        changes["selectors.bottom_arms"] = [n for n in cfg.selectors.bottom_arms if n != "alpagasus"]
    if model_dir is not None:  # every model the preset names is stood in for by the tiny one
        changes.update(
            {
                "model.id": str(model_dir),
                "model.revision": None,
                "model.dtype": "float32",
                "evaluate.dtype": "float32",
                "selectors.proxy_model": str(model_dir),
                "selectors.cpqs.generator": str(model_dir),
                "selectors.judge.backend": "local",
                "selectors.judge.model": None,
                "selectors.judge.max_new_tokens": 4,
                # the pairwise judge too (an endpoint is not contacted offline; a random stand-in's
                # reviews do not parse: every prompt is "unparsed", the stages and the section still run)
                "evaluate.pairwise.judge.backend": "local",
                "evaluate.pairwise.judge.model": None,
                "evaluate.pairwise.judge.max_new_tokens": 4,
                "selectors.mods.reward_model": str(model_dir),
                "selectors.mods.embedding": "target",
                "selectors.mods.seed_model": None,
                "selectors.mods.max_new_tokens": 4,
                "selectors.diversity.embedding": "target",
                # the reward model and DEITA's scorers: the stand-in (a sequence-classification head on it, random
                # weights, for the reward model; its next-token logits of the rating tokens for DEITA)
                "selectors.reward.model": str(model_dir),
                "selectors.reward.revision": None,
                "selectors.deita.complexity_model": str(model_dir),
                "selectors.deita.quality_model": str(model_dir),
                "selectors.deita.revision": None,
                "selectors.deita.embedding": "target",
            }
        )
    return replace(cfg, **changes)


def scratch_run(cfg: Config, facts: dict[str, Any], mode: str, rep: Report, log: Callable[[str], None]) -> None:
    from cpqs_bench import tiny
    from cpqs_bench.reproduce import reproduce

    tmp = Path(tempfile.mkdtemp(prefix="cpqs-preflight-"))
    t0 = time.monotonic()
    try:
        model_dir = None
        if mode != "full":
            family = facts.get("family") or "chatml"
            model_dir = tmp / f"tiny-{family}"
            m, tok = tiny.model(family)
            if family == "llama2" and facts.get("bos"):  # as the real Llama tokenizers: <s> added by default
                from tokenizers.processors import TemplateProcessing

                tok._tokenizer.post_processor = TemplateProcessing(
                    single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.bos_token_id)]
                )
            if not facts.get("chat_template", True):
                tok.chat_template = None  # the stand-in behaves as the real tokenizer: no template of its own
            m.save_pretrained(model_dir)
            tok.save_pretrained(model_dir)
        small = scratch_config(cfg, tmp, model_dir, rep.offline_tasks if mode != "full" else None)
        left_out = sorted(set(cfg.selectors.names) - set(small.selectors.names))
        if left_out:
            rep.add(
                "scratch run",
                "judge selectors",
                INFO,
                f"{left_out} left out: a random stand-in judge cannot rate (their parsing and caching are unit-tested)",
            )
        lines: list[str] = []
        result = reproduce(small, log=lines.append)
        ran = len(result["ran"])
        rep.add(
            "scratch run",
            f"{'real model' if mode == 'full' else 'tiny ' + str(facts.get('family'))} stand-in",
            OK,
            f"{ran} stages ran on {small.data.pool_limit} examples in {time.monotonic() - t0:.0f} s "
            f"(scratch dir deleted)",
        )
    except Exception as exc:  # noqa: BLE001 — the scratch run's failure is the preflight's finding
        rep.add("scratch run", "pipeline", PROBLEM, f"{type(exc).__name__}: {str(exc)[:300]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        rep.scratch_seconds = time.monotonic() - t0


def preflight(
    cfg: Config,
    *,
    mode: str = "offline",
    preset: str | None = None,
    log: Callable[[str], None] = print,
    scratch: bool = True,
) -> Report:
    """All checks, then (when no check failed) the scratch run; prints the table; returns the report."""
    from cpqs_bench import models

    rep = Report()
    log(
        f"preflight of {preset or cfg.experiment.name} ({mode}{', offline' if offline() else ''}): "
        f"config hash {config_hash(cfg)}"
    )
    pool = check_data(cfg, rep)
    task_chat = check_tasks(cfg, rep)
    facts = check_models(cfg, rep, mode, task_chat)
    check_selectors(cfg, rep, pool)
    check_recipe(cfg, rep)
    device = (
        models.pick_device(cfg.model.device)
        if mode == "full"
        else ("cuda" if cfg.model.id in KNOWN_MODELS and cfg.model.id != "embedded" else "cpu")
    )
    rep.guard("work", "estimate", lambda: (INFO, f"device for the estimate: {device}"))
    if pool and facts:
        rep.work = estimate_work(cfg, pool, facts, device, rep)
        check_disk(cfg, rep, facts, len(pool))
    if scratch and rep.ok:
        scratch_run(cfg, facts, mode, rep, log)
    elif scratch:
        rep.add("scratch run", "pipeline", INFO, "not run: fix the problems above first")
    for line in rep.lines():
        log(line)
    return rep


__all__ = ["preflight", "Report", "Check", "KNOWN_MODELS", "THROUGHPUT", "scratch_config", "to_dict"]
