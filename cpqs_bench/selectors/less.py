"""``less``: LESS (Xia et al. 2024, "LESS: Selecting Influential Data for Targeted Instruction Tuning").

Target-aware: an example scores high when its (Adam-preconditioned) LoRA gradient points where the gradients of a
query set (``selectors.less.queries``: a named dev set, never evaluation items) point. Followed, in
``princeton-nlp/LESS``:

* warm-up: ``less/scripts/train/base_training_args.sh`` + ``warmup_lora_train.sh`` — LoRA (r 128, α 512, dropout
  0.1, on q/k/v/o projections), lr 2e-5, linear schedule, warm-up ratio 0.03, weight decay 0, effective batch 32,
  AdamW, 4 epochs, a checkpoint (adapter + optimizer state) saved at the end of every epoch, trained on a random
  ``warmup_fraction`` (5 %) of the pool. Here through the project's own fine-tuning code
  (:func:`cpqs_bench.finetune.sft.finetune_arm` with ``ArmOptions(keep_epoch_checkpoints=True)``):
  :func:`cpqs_bench.finetune.less_warmup.warmup` (in the finetune layer: a selector may not import it).
* gradients: ``less/data_selection/collect_grad_reps.py`` — one example per backward pass, the mean token loss over
  the response, the gradient of every trainable (LoRA) parameter concatenated in ``named_parameters`` order; training
  examples get ``obtain_gradients_with_adam``: with Adam's saved moments m, v of the checkpoint, ``m' = β1·m +
  (1−β1)·g``, ``v' = β2·v + (1−β2)·g²``, direction ``m' / sqrt(v' + ε)`` (β1 0.9, β2 0.999, ε 1e-8; ε *inside* the
  square root and no bias correction, exactly as the reference code computes it); query examples plain gradients
  (``obtain_gradients``); a Rademacher random projection to ``projection_dim`` (8192) dims, seed 0, output blocks of
  128 (trak's ``BasicProjector`` scheme: block i drawn from a generator seeded ``seed + 1000·i``, ±1 entries); each
  projected gradient L2-normalised (``merge_and_normalize_info``).
* score: ``less/data_selection/matching.py`` — per checkpoint the dot products of normalised training and query
  gradients, weighted by the checkpoint's learning rate (the weights renormalised to sum to 1), summed over
  checkpoints; then, per training example, the mean over each target task's query examples and the max over tasks.

Differences from the reference:

1. The projection is our own :class:`RademacherProjector`: trak's ``BasicProjector`` scheme re-implemented in a few
   lines of torch (trak, ``traker`` 0.3.2 on PyPI, installs on CPU but is not a project dependency; on CPU in
   float32 our projection equals ``BasicProjector(..., ProjectionType.rademacher, block_size=128)`` bit for bit,
   checked against the 0.3.2 sdist). The reference uses trak's ``CudaProjector`` (``fast_jl``) when available, a
   different matrix for the same seed, and draws in the model dtype. With a grad dim too large for one block in
   memory, a block is drawn in row chunks (then no longer trak's exact matrix; still a seeded Rademacher one).
   Gradients are projected in float32 (the reference casts them to float16 first).
2. The checkpoint weight is the mean learning rate over the optimizer steps of that epoch, read from the warm-up's
   log (the paper's η̄_i; the reference scripts pass per-checkpoint rates by hand).
3. Gradients are taken in the model's loaded dtype on ``model.device`` (the reference: bf16 on GPU), with the model in
   eval mode (as the reference's ``from_pretrained`` leaves it: no dropout).
4. LoRA targets are the reference's q/k/v/o projections (a regex on module names); a model without such modules is
   refused by peft with its own error. The warm-up's micro-batch is the largest divisor of 32 not above
   ``finetune.micro_batch_size`` (the reference: 1 × 32 accumulation steps; same effective batch, same sum).
5. The warm-up subset is the ``warmup_fraction`` of the pool (non-empty responses) whose ``sha256(seed:id)`` is
   smallest, trained in id order — a seeded draw that does not depend on the pool's order (the reference draws with
   ``numpy`` on the file order).
6. Query set as ``rds`` (:func:`cpqs_bench.selectors.rds.load_queries`): each comma-separated source is one task
   (or ``query_task_field`` names a metadata field), ``query_offset`` rows skipped and ``query_limit`` kept per source (the reference's query sets are a
   few shots per sub-task, e.g. MMLU's 57). A named test split an evaluation task of the config reads (``gsm8k``
   under ``cpqs_gsm8k_chat``) is refused here; the preflight's ``rds.check_queries_disjoint`` applies to ``less`` as to ``rds``, and a query that
   is a pool example is refused by the selector (``rds.refuse_pool_queries``).
7. Sharded under ``accelerate launch`` as every scorer (:func:`cpqs_bench.score.score_pool`): each process computes
   the gradients of its slice of the pool (``examples[rank::world]``) and of the whole query set at every checkpoint,
   and the main process merges the rows. Exact: an example's score depends on its own gradient and the query
   gradients only (the projection is seeded, the same on every process); the query gradients are computed by every
   process (a small share: ``query_limit`` per source against the pool). The reference shards by hand (one job per
   data file).

Stage split: the warm-up (:func:`cpqs_bench.finetune.less_warmup.warmup`) is a step of its own, before scoring (the
selectors layer may not import the fine-tuning code, ``tests/test_layers.py``); its folder is this selector's
checkpoint (``Needs.CHECKPOINT``: ``ScoringContext.checkpoint``, ``compare --selector-checkpoint less=DIR``).
:func:`score_with_warmup` scores against it.
"""

from __future__ import annotations

import logging
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.io import read_json, sha256_file, stable_hash
from cpqs_bench.selectors.base import EMPTY_RESPONSE, Needs, ScoreRow, ScoringContext, is_empty_response

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cpqs_bench.config import Config

log = logging.getLogger(__name__)

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # collect_grad_reps.obtain_gradients_with_adam
BLOCK_SIZE = 128  # collect_grad_reps.collect_grads: block_size
PROJECTION_SEED = 0  # collect_grad_reps.collect_grads: seed=0, model_id=0
LENGTH_DROPPED = "dropped_by_length_policy"
WARMUP_RECORD = "warmup.json"  # the warm-up folder's record (cpqs_bench.finetune.less_warmup writes it)
# written by the fine-tuning code into every checkpoint (cpqs_bench.finetune.sft.OPTIMIZER_PARAMS; the selectors
# layer may not import finetune, tests/test_layers.py): the names of each optimizer param group's parameters
OPTIMIZER_PARAMS = "optimizer_params.json"
MAX_BLOCK_ELEMENTS = 1 << 28  # projection matrix block drawn at most this many entries at a time (1 GiB float32)


# ------------------------------------------------------------------------------------------------- math pieces
def adam_direction(
    grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, beta1: float = BETA1, beta2: float = BETA2
) -> torch.Tensor:
    """The reference's Adam update direction for one gradient (``obtain_gradients_with_adam``)."""
    import torch

    m = beta1 * exp_avg + (1 - beta1) * grad
    v = beta2 * exp_avg_sq + (1 - beta2) * grad**2
    return m / torch.sqrt(v + EPS)


class RademacherProjector:
    """``grads [n, grad_dim] -> [n, proj_dim]`` with a seeded ±1 matrix, drawn block by block of ``block_size``
    output dims (block i from ``torch.Generator().manual_seed(seed + 1000·i)``, ``bernoulli_(0.5)·2 − 1``: trak's
    ``BasicProjector`` with ``ProjectionType.rademacher``). Unscaled, as trak's (the vectors are normalised after)."""

    def __init__(self, grad_dim: int, proj_dim: int, seed: int = PROJECTION_SEED, block_size: int = BLOCK_SIZE):
        if grad_dim <= 0 or proj_dim <= 0:
            raise ValueError(f"projection needs positive dims, got grad_dim={grad_dim}, proj_dim={proj_dim}")
        self.grad_dim, self.proj_dim, self.seed = grad_dim, proj_dim, seed
        self.block_size = min(proj_dim, block_size)

    def block(self, index: int) -> torch.Tensor:
        import torch

        gen = torch.Generator().manual_seed(self.seed + 1000 * index)
        mat = torch.empty(self.grad_dim, self.block_size, dtype=torch.float32)
        mat.bernoulli_(0.5, generator=gen)
        mat.mul_(2.0).sub_(1.0)
        return mat

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        import torch

        grads = grads.detach().to("cpu", torch.float32)
        if grads.shape[1] != self.grad_dim:
            raise ValueError(f"gradients have {grads.shape[1]} dims, the projector {self.grad_dim}")
        out = torch.zeros(grads.shape[0], self.proj_dim, dtype=torch.float32)
        n_blocks = math.ceil(self.proj_dim / self.block_size)
        chunk = max(1, MAX_BLOCK_ELEMENTS // self.block_size)
        for b in range(n_blocks):
            st, ed = b * self.block_size, min((b + 1) * self.block_size, self.proj_dim)
            if self.grad_dim <= chunk:
                out[:, st:ed] = grads @ self.block(b)[:, : ed - st]
                continue
            # a block too large to hold: rows drawn in chunks from the same seeded stream (see the module notes)
            gen = torch.Generator().manual_seed(self.seed + 1000 * b)
            for r0 in range(0, self.grad_dim, chunk):
                r1 = min(r0 + chunk, self.grad_dim)
                mat = torch.empty(r1 - r0, self.block_size, dtype=torch.float32).bernoulli_(0.5, generator=gen)
                mat.mul_(2.0).sub_(1.0)
                out[:, st:ed] += grads[:, r0:r1] @ mat[:, : ed - st]
        return out


def checkpoint_weights(rates: Sequence[float]) -> list[float]:
    """The learning rates of the checkpoints, renormalised to sum to 1 (``matching.py``)."""
    if not rates or any(r is None or not math.isfinite(r) or r < 0 for r in rates) or sum(rates) <= 0:
        raise ValueError(f"LESS needs a positive learning rate per checkpoint, got {list(rates)}")
    total = float(sum(rates))
    return [float(r) / total for r in rates]


def influence(
    train: Sequence[torch.Tensor], queries: Sequence[torch.Tensor], weights: Sequence[float], tasks: Sequence[str]
) -> tuple[list[float], dict[str, list[float]]]:
    """``matching.py``: ``Σ_i w_i · train_i @ query_iᵀ`` over checkpoints i, then per training row the mean over
    each task's query columns and the max over tasks. ``train[i]`` [N, d], ``queries[i]`` [Q, d] (normalised);
    ``tasks``: one task name per query column. Returns (scores, per-task means)."""
    import torch

    if not (len(train) == len(queries) == len(weights)) or not train:
        raise ValueError("influence: one train and one query matrix per checkpoint weight")
    total = sum(
        (w * (t.float() @ q.float().T) for t, q, w in zip(train[1:], queries[1:], weights[1:])),
        weights[0] * (train[0].float() @ queries[0].float().T),
    )
    names = sorted(set(tasks))
    per_task = {}
    for name in names:
        cols = torch.tensor([i for i, t in enumerate(tasks) if t == name])
        per_task[name] = total[:, cols].mean(dim=1)
    stacked = torch.stack([per_task[n] for n in names], dim=1)
    return stacked.max(dim=1).values.tolist(), {n: v.tolist() for n, v in per_task.items()}


# ------------------------------------------------------------------------------------------------- gradients
def trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters that require gradients (the LoRA weights), in ``named_parameters`` order."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    bad = [n for n, _ in params if "lora" not in n.lower()]
    if bad:  # collect_grad_reps.get_number_of_params asserts the same
        raise ValueError(f"only LoRA parameters may require gradients, found {bad[:3]}")
    if not params:
        raise ValueError("the model has no trainable (LoRA) parameters")
    return params


def example_gradient(
    model: torch.nn.Module, params: Sequence[tuple[str, torch.nn.Parameter]], row: dict[str, list[int]]
) -> torch.Tensor:
    """One example's gradient of its mean response-token loss (``model(**batch).loss``, batch of one), flattened
    over ``params`` in order."""
    import torch

    device = params[0][1].device
    model.zero_grad(set_to_none=True)
    ids = torch.tensor([row["input_ids"]], device=device)
    labels = torch.tensor([row["labels"]], device=device)
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for _, p in params]
    out = torch.cat(grads).detach().float().cpu()
    model.zero_grad(set_to_none=True)
    return out


def optimizer_moments(checkpoint: Path, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam's ``exp_avg`` and ``exp_avg_sq`` of a saved Trainer checkpoint, flattened in ``names`` order
    (``prepare_optimizer_state``). ``optimizer.pt`` numbers its params 0.. across param groups; the names of each
    group come from :data:`OPTIMIZER_PARAMS`, written with every checkpoint by the fine-tuning code."""
    import torch

    opt_path, names_path = checkpoint / "optimizer.pt", checkpoint / OPTIMIZER_PARAMS
    for p in (opt_path, names_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing; LESS needs the warm-up's optimizer state (keep_epoch_checkpoints)")
    state_dict = torch.load(opt_path, map_location="cpu", weights_only=True)
    groups = read_json(names_path)
    index: dict[str, int] = {}
    for g_names, g in zip(groups, state_dict["param_groups"]):
        if len(g_names) != len(g["params"]):
            raise ValueError(f"{names_path}: param group sizes do not match {opt_path}")
        index.update(zip(g_names, g["params"]))
    m, v = [], []
    for name in names:
        if name not in index or index[name] not in state_dict["state"]:
            raise KeyError(f"{opt_path}: no Adam state for parameter {name!r}")
        st = state_dict["state"][index[name]]
        m.append(st["exp_avg"].reshape(-1).float())
        v.append(st["exp_avg_sq"].reshape(-1).float())
    return torch.cat(m), torch.cat(v)


# ----------------------------------------------------------------------------------------------------- queries
def _evaluated_test_split(spec: str, tasks: Sequence[str]) -> str | None:
    """The evaluation task that reads ``spec`` when ``spec`` is a named test split whose name is part of a task's
    name (``gsm8k`` in ``cpqs_gsm8k_chat``, ``humaneval`` in ``cpqs_humaneval_instruct``), else None. A backstop
    for ``compare`` and the verbs; the preflight checks every query against the evaluation items by content. A
    test split nothing here evaluates (``mbpp_plus`` under HumanEval tasks: MBPP+ has no other split) is allowed."""
    from cpqs_bench.data import mirror

    named = mirror.NAMED.get(spec)
    if named is None or not str(named.hub).endswith("#test"):
        return None
    return next((t for t in tasks if re.search(rf"(^|_){re.escape(spec)}(_|$)", t)), None)


def read_queries(cfg: Config) -> tuple[list[Example], list[str]]:
    """The query examples and their task names, by RDS's rule (:func:`cpqs_bench.selectors.rds.load_queries` on
    ``selectors.less.{queries, query_limit, query_task_field}``): comma-separated sources, each one task (or the
    ``query_task_field`` metadata value), at most ``query_limit`` each, read through the data mirror."""
    from cpqs_bench.config import replace
    from cpqs_bench.selectors import rds

    lc = cfg.selectors.less
    if not lc.queries:
        raise ValueError(
            "selectors.less.queries is not set: LESS is target-aware and needs a query (dev) set, e.g. "
            "selectors.less.queries=gsm8k_train (a named dataset, a file, or hf:owner/name); never evaluation items"
        )
    for source in rds.query_sources(lc.queries):
        task = _evaluated_test_split(source, cfg.evaluate.tasks)
        if task is not None:
            raise ValueError(
                f"selectors.less.queries: {source!r} is the test split evaluation task {task!r} reads; queries are "
                "never evaluation items"
            )
    as_rds = replace(
        cfg,
        **{
            "selectors.rds.queries": lc.queries,
            "selectors.rds.query_limit": lc.query_limit,
            "selectors.rds.query_offset": lc.query_offset,
            "selectors.rds.query_task_field": lc.query_task_field,
            "selectors.rds.query_tasks": (),
        },
    )
    pairs = rds.load_queries(as_rds)
    return [ex for _, ex in pairs], [task for task, _ in pairs]


# -------------------------------------------------------------------------------------------------------- score
def _rows(
    examples: Sequence[Example], tok: PreTrainedTokenizerBase, cfg: Config, max_length: int
) -> dict[str, dict[str, list[int]]]:
    """id -> SFT row for examples that have one: the prompt layer's render with the training template, labels =
    ``Rendered.labels()`` (the response span, + end-of-turn under ``prompt.train_eot``), as the SFT rows are built
    (:func:`cpqs_bench.finetune.dataset.tokenize`); an example the length policy drops has none."""
    from cpqs_bench.prompts import render

    out = {}
    for ex in examples:
        if is_empty_response(ex):
            continue
        r = render(
            tok,
            ex,
            cfg.prompt.template,
            system_prompt=cfg.prompt.system_prompt,
            train_eot=cfg.prompt.train_eot,
            max_length=max_length,
            overflow=cfg.prompt.overflow,
        )
        if r is not None:
            out[ex.id] = {"input_ids": list(r.input_ids), "labels": r.labels(-100)}
    return out


def _attach(model: PreTrainedModel, adapter: Path) -> tuple[PreTrainedModel, dict[str, bool]]:
    from peft import PeftModel

    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    peft_model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    for n, p in peft_model.named_parameters():
        p.requires_grad_("lora_" in n)
    peft_model.eval()  # the reference's from_pretrained models are in eval mode: no dropout
    return peft_model, flags


def _detach(peft_model: PreTrainedModel, flags: dict[str, bool]) -> None:
    base = peft_model.unload()
    for n, p in base.named_parameters():
        p.requires_grad_(flags.get(n, p.requires_grad))
    base.eval()


def checkpoint_gradients(
    model: PreTrainedModel,
    checkpoint: Path,
    train_rows: Sequence[dict[str, list[int]]],
    query_rows: Sequence[dict[str, list[int]]],
    projection_dim: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised projected gradients at one warm-up checkpoint: training rows with the Adam direction of the
    checkpoint's optimizer state, query rows plain gradients; one projection for both."""
    import torch

    peft_model, flags = _attach(model, checkpoint)
    try:
        params = trainable(peft_model)
        m, v = optimizer_moments(checkpoint, [n for n, _ in params])
        full = [adam_direction(example_gradient(peft_model, params, r), m, v) for r in train_rows]
        full += [example_gradient(peft_model, params, r) for r in query_rows]
    finally:
        _detach(peft_model, flags)
    grads = torch.stack(full)
    projected = RademacherProjector(grads.shape[1], projection_dim).project(grads)
    projected = torch.nn.functional.normalize(projected, dim=1)
    return projected[: len(train_rows)], projected[len(train_rows) :]


def score_with_warmup(examples: Sequence[Example], ctx: ScoringContext, warmup_dir: str | Path) -> list[ScoreRow]:
    """LESS scores of ``examples`` against ``selectors.less.queries`` with a finished warm-up folder
    (:func:`cpqs_bench.finetune.less_warmup.warmup`: its :data:`WARMUP_RECORD` lists the epoch checkpoints, paths
    relative to the folder). Projected gradients are cached per checkpoint in ``ctx.workdir`` (a rerun reads them)."""
    import torch

    from cpqs_bench.models import model_max_length
    from cpqs_bench.selectors.base import response_tokens

    warmup_dir = Path(warmup_dir)
    if not (warmup_dir / WARMUP_RECORD).is_file():
        raise FileNotFoundError(f"{warmup_dir / WARMUP_RECORD}: not a finished LESS warm-up folder")
    warmup_record = read_json(warmup_dir / WARMUP_RECORD)
    from cpqs_bench.selectors.rds import refuse_pool_queries

    cfg, lc = ctx.config, ctx.config.selectors.less
    queries, tasks = read_queries(cfg)
    refuse_pool_queries(queries, examples, "selectors.less.queries")
    model, tok, _ = ctx.model()
    limit = model_max_length(model)
    max_length = lc.max_length if limit is None else min(lc.max_length, limit)
    rows = _rows(examples, tok, cfg, max_length)
    qrows = _rows(queries, tok, cfg, max_length)
    q_keep = [i for i, q in enumerate(queries) if q.id in qrows]
    if not q_keep:
        raise ValueError(f"{lc.queries}: no query example survives the length policy (max_length={max_length})")
    q_rows = [qrows[queries[i].id] for i in q_keep]
    q_tasks = [tasks[i] for i in q_keep]
    order = sorted({ex.id for ex in examples if ex.id in rows})  # order-free computation
    t_rows = [rows[i] for i in order]
    ckpts = warmup_record["checkpoints"]
    weights = checkpoint_weights([c["mean_lr"] for c in ckpts])
    # a checkpoint of weight 0 (an epoch spent entirely in the lr warm-up, e.g. one step at lr 0) adds nothing
    ckpts, weights = [c for c, w in zip(ckpts, weights) if w > 0], [w for w in weights if w > 0]
    trains, qs = [], []
    if t_rows:
        for c in ckpts:
            path = warmup_dir / c["path"]
            key = stable_hash(
                {
                    "adapter": sha256_file(path / "adapter_model.safetensors"),
                    "train": [stable_hash(r, 16) for r in t_rows],
                    "query": [stable_hash(r, 16) for r in q_rows],
                    "dim": lc.projection_dim,
                    "dtype": str(next(model.parameters()).dtype),
                },
                24,
            )
            cache = Path(ctx.workdir) / f"less-grads-{c['step']}-{key}.pt"
            if cache.is_file():
                saved = torch.load(cache, weights_only=True)
                t, q = saved["train"], saved["query"]
            else:
                t0 = time.perf_counter()
                t, q = checkpoint_gradients(model, path, t_rows, q_rows, lc.projection_dim)
                log.info(
                    "less: %s: %d training + %d query gradients projected to %d dims in %.1f s",
                    path.name,
                    len(t_rows),
                    len(q_rows),
                    lc.projection_dim,
                    time.perf_counter() - t0,
                )
                tmp = cache.with_name(cache.name + ".tmp")
                torch.save({"train": t, "query": q}, tmp)
                tmp.replace(cache)
            trains.append(t)
            qs.append(q)
        scores, per_task = influence(trains, qs, weights, q_tasks)
    else:
        scores, per_task = [], {}
    by_id = {i: n for n, i in enumerate(order)}
    out = []
    for ex in examples:
        n_tokens = len(response_tokens(tok, ex, cfg.prompt))
        if is_empty_response(ex):
            out.append(ScoreRow(ex.id, math.nan, n_tokens, exclude=EMPTY_RESPONSE))
        elif ex.id not in by_id:
            out.append(ScoreRow(ex.id, math.nan, n_tokens, exclude=LENGTH_DROPPED))
        else:
            n = by_id[ex.id]
            extra = {"less_task_means": {t: round(v[n], 6) for t, v in per_task.items()}} if len(per_task) > 1 else {}
            out.append(ScoreRow(ex.id, float(scores[n]), n_tokens, extra=extra))
    return out


class LESSSelector:
    """LESS: Adam-preconditioned LoRA gradients of a warm-up, matched to a query set's gradients."""

    name = "less"
    # the warm-up folder is this selector's trained checkpoint (ctx.checkpoint, `--selector-checkpoint less=DIR`);
    # the target model is loaded too (gradients)
    needs = Needs.CHECKPOINT
    target_aware = True

    def __init__(self, warmup_dir: str | Path | None = None):
        self.warmup_dir = Path(warmup_dir) if warmup_dir is not None else None

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        read_queries(ctx.config)  # fail on a missing / forbidden query set first
        warmup_dir = self.warmup_dir or ctx.checkpoint
        if warmup_dir is None:
            raise ValueError(
                "selector 'less' needs its warm-up folder as its checkpoint (--selector-checkpoint less=DIR; "
                "reproduce runs the warm-up as a step of its own): train it with "
                "cpqs_bench.finetune.less_warmup.warmup(cfg, pool, DIR, seed=cfg.selectors.less.seed)"
            )
        return score_with_warmup(examples, ctx, warmup_dir)
