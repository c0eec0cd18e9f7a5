"""``cpqs-bench finetune``: one LoRA SFT arm = one selection trained with the experiment's frozen recipe.

transformers' ``Trainer`` + peft LoRA, fed pre-tokenised rows from :mod:`cpqs_bench.finetune.dataset` (labels from
the prompt layer, never re-templated or re-masked — a plain map-style dataset and our own collator, so the Trainer
has nothing to re-process). TRL's SFTTrainer is not used: it re-tokenises/re-masks unless carefully disabled, and
the plain Trainer does exactly what we need.

Reproducibility: the seed drives LoRA initialisation (``set_seed`` right before ``get_peft_model``), dropout
(Trainer ``seed``) and data order (Trainer ``data_seed``); all three are recorded. Resume after ``kill -9`` uses the
newest checkpoint whose completeness marker verifies (:mod:`cpqs_bench.finetune.checkpoints`). The output directory
holds the adapter, the tokenizer, the resolved config, ``recipe.json`` and the arm's training record
:data:`TRAINING_RECORD` (``training.json``: recipe hash, model id/revision, train loss, ..., and the sha256 of the
adapter weights), written last. This function writes no ``DONE`` and no ``manifest.json``: those belong to the
pipeline's executor (issue #25); it returns the record, and a rerun into a folder whose record is complete and whose
adapter weights match it returns the record as is. ``train_loss`` is the mean over *all* optimizer steps, also after a
resume (the running loss sum is saved in every checkpoint, :data:`LOSS_SUM`).

Library entry: :func:`finetune_arm` (the config sections it reads, :class:`ArmConfig`, the selection file, the pool as ``Example`` objects, an
optional ``loader``). With a shared loader (the pipeline's model cache) the base model is loaded once per process for
all arms: each arm adds a fresh LoRA (seeded, so identical to a separate process) and removes it again before
returning, so the cached base stays clean. Rows are tokenised once per process (:data:`dataset.TOKEN_CACHE`),
micro-batches are length-grouped (``finetune.group_by_length``) and, with ``finetune.packing`` (off by default), each
is packed into one padding-free row with restarting position ids (examples never attend to each other), checkpoints are written by time
(``finetune.save_interval_s``) or every ``finetune.save_steps``, and the full-selection loss passes run only when
``finetune.measure_train_loss`` asks for them. Warmup: ``finetune.warmup_ratio`` × the optimizer steps, rounded up,
computed here and handed to transformers as a step count (same meaning on every supported release).

Multi-process: run under ``accelerate launch --multi_gpu --num_processes 2 -m cpqs_bench.cli finetune ...``; on a
CPU-only machine the processes talk over gloo. The effective batch (``finetune.batch_size``) is kept fixed: gradient
accumulation = batch_size / (micro_batch_size × processes), which must divide exactly.

W&B (``publish.wandb``): the Trainer's own ``WandbCallback`` (what ``report_to="wandb"`` installs), wrapped so an
exception in any W&B hook is recorded in the manifest and disables W&B instead of failing training. Offline mode
unless ``WANDB_API_KEY`` is set.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from cpqs_bench import models, provenance, templates
from cpqs_bench.config import Config, config_hash, to_dict, to_yaml
from cpqs_bench.data.example import Example, content_hash
from cpqs_bench.finetune import checkpoints, progress
from cpqs_bench.finetune.dataset import (
    PACKING_ATTENTION,
    LengthGroupedSampler,
    PackCollator,
    PadCollator,
    RowDataset,
    SFTData,
    pick,
    read_selection,
    tokenize,
)
from cpqs_bench.finetune.recipe import RecipeMismatch, RecipeSections, recipe, recipe_hash
from cpqs_bench.io import read_json, sha256_file, write_json, write_text
from cpqs_bench.prompts import pad_token_id

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import (
        PreTrainedModel,
        PreTrainedTokenizerBase,
        Trainer,
        TrainerCallback,
        TrainerControl,
        TrainerState,
        TrainingArguments,
    )

    from cpqs_bench.config import ModelConfig, PromptConfig
    from cpqs_bench.finetune.config import FinetuneConfig
    from cpqs_bench.publish.config import PublishConfig

log = logging.getLogger(__name__)

CKPT_DIR = "checkpoints"
TRAINING_RECORD = "training.json"  # the arm's training record (what manifest.json held before issue #25)
LOSS_SUM = "loss_sum.json"  # in every checkpoint: the sum of the per-step training losses up to that step
# in every checkpoint: the parameter names of each optimizer param group, in the order ``optimizer.pt`` indexes its
# state (torch numbers the params 0.. across groups); LESS reads Adam's moments by name through it
OPTIMIZER_PARAMS = "optimizer_params.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


# --------------------------------------------------------------------------------------------- resolution helpers
def resolve_precision(precision: str, device: str) -> str:
    """ "auto" → bf16 where the hardware runs it natively (CUDA bf16, CPUs with AVX512-BF16/AMX), fp16 on older
    CUDA, else fp32. The Trainer accepts bf16 on CPU when ``use_cpu`` is set (torch CPU autocast)."""
    if precision != "auto":
        return precision
    import torch

    dt = models.best_dtype(device)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dt, "fp32")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def grad_accum(batch_size: int, micro_batch_size: int, processes: int) -> int:
    per_step = micro_batch_size * processes
    if batch_size % per_step:
        raise ValueError(
            f"finetune.batch_size={batch_size} is not a multiple of micro_batch_size×processes="
            f"{micro_batch_size}×{processes}; the effective batch is part of the recipe and must be exact"
        )
    return batch_size // per_step


# -------------------------------------------------------------------------------------------------------- W&B
def _guarded(inner: TrainerCallback, errors: list[str]) -> TrainerCallback:
    """Wrap a TrainerCallback: the first exception is recorded in ``errors`` and the callback goes inert."""
    from transformers import TrainerCallback

    class Guarded(TrainerCallback):
        pass

    def make(name: str) -> Callable[..., object]:
        def hook(
            self: TrainerCallback,
            args: TrainingArguments,
            state: TrainerState,
            control: TrainerControl,
            **kwargs: object,
        ) -> object:
            if errors:
                return None
            try:
                return getattr(inner, name)(args, state, control, **kwargs)
            except Exception as exc:  # documented policy: W&B never fails training; the reason is recorded
                msg = provenance.scrub(f"wandb {name}: {type(exc).__name__}: {exc}")
                log.warning("%s; W&B disabled for the rest of this run", msg)
                errors.append(msg)
                return None

        return hook

    for name in [n for n in dir(TrainerCallback) if n.startswith("on_")]:
        setattr(Guarded, name, make(name))
    return Guarded()


def wandb_env(project: str, out: Path, run_name: str) -> dict[str, str]:
    """Environment for the Trainer's WandbCallback: offline unless a key is set (the key is only checked for)."""
    mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    return {
        "WANDB_MODE": mode,
        "WANDB_PROJECT": os.environ.get("WANDB_PROJECT", project),
        "WANDB_DIR": os.environ.get("WANDB_DIR", str(out)),
        "WANDB_NAME": run_name,
    }


@contextlib.contextmanager
def scoped_env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of training only (library callers keep their environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _finish_wandb(errors: list[str]) -> None:
    """The Trainer's callback leaves the run open; close it so offline files are complete (failures recorded)."""
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception as exc:  # documented policy: W&B never fails training
        errors.append(provenance.scrub(f"wandb finish: {type(exc).__name__}: {exc}"))


def wandb_callback(enabled: bool, errors: list[str]) -> TrainerCallback | None:
    """The Trainer's own W&B callback, guarded; None when disabled or when wandb cannot even be imported."""
    if not enabled:
        return None
    try:
        from transformers.integrations import WandbCallback

        return _guarded(WandbCallback(), errors)
    except Exception as exc:  # wandb missing or broken import: recorded, training goes on without it
        errors.append(provenance.scrub(f"wandb setup: {type(exc).__name__}: {exc}"))
        log.warning("W&B unavailable (%s); training without it", errors[-1])
        return None


# ------------------------------------------------------------------------------------------------- model + args
Loader = Callable[[str, "str | None", str], "tuple[PreTrainedModel, PreTrainedTokenizerBase, models.ModelInfo]"]


def base_dtype(precision: str) -> str:
    """Base weights in bf16 for bf16 runs (frozen; LoRA weights stay fp32 via peft), else fp32."""
    return {"bf16": "bfloat16", "fp16": "float32", "fp32": "float32"}[precision]


def add_lora(model: PreTrainedModel, ft: FinetuneConfig, seed: int) -> PeftModel:
    import transformers
    from peft import LoraConfig, get_peft_model

    transformers.set_seed(seed)  # LoRA A matrices are random: their init is part of the seeded state
    lora = LoraConfig(
        r=ft.lora_r,
        lora_alpha=ft.lora_alpha,
        lora_dropout=ft.lora_dropout,
        target_modules=ft.target_modules,
        task_type="CAUSAL_LM",
        bias="none",
    )
    peft_model = get_peft_model(model, lora)
    if ft.gradient_checkpointing:
        peft_model.enable_input_require_grads()
    return peft_model


def remove_lora(peft_model: PeftModel, base: PreTrainedModel, ft: FinetuneConfig, use_cache: bool | None) -> None:
    """Undo what training did to a (possibly shared) base model: LoRA layers out, hooks off, eval mode."""
    if ft.gradient_checkpointing:
        with contextlib.suppress(Exception):
            peft_model.disable_input_require_grads()
        with contextlib.suppress(Exception):
            base.gradient_checkpointing_disable()
    peft_model.unload()  # removes the LoRA modules, restoring the original linear layers (weights untouched)
    base.config.use_cache = use_cache
    for p in base.parameters():
        p.requires_grad_(True)
    base.eval()


def training_arguments(
    ft: FinetuneConfig, ckpt_dir: Path, seed: int, precision: str, accum: int, run_name: str, epoch_saves: bool = False
) -> TrainingArguments:
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(ckpt_dir),
        run_name=run_name,
        seed=seed,
        data_seed=seed,
        per_device_train_batch_size=ft.micro_batch_size,
        gradient_accumulation_steps=accum,
        num_train_epochs=ft.epochs,
        max_steps=ft.max_steps,
        learning_rate=ft.lr,
        lr_scheduler_type=ft.lr_scheduler,
        warmup_steps=0,
        weight_decay=ft.weight_decay,  # warmup: see _trainer
        optim=ft.optim,
        max_grad_norm=ft.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=ft.gradient_checkpointing,
        save_strategy="epoch" if epoch_saves else ("steps" if ft.save_steps > 0 else "no"),
        save_steps=max(ft.save_steps, 1),
        save_total_limit=None,  # we rotate, after verifying
        logging_strategy="steps",
        logging_steps=ft.logging_steps,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        ddp_find_unused_parameters=False,
    )


def warmup_steps(ratio: float, num_training_steps: int) -> int:
    """``ceil(ratio × steps)``: the step count transformers >= 5 derives from a ratio, computed here so that the
    recipe means the same on transformers 4.x (which reads ``warmup_steps=0.03`` as zero steps)."""
    return math.ceil(num_training_steps * ratio) if ratio > 0 else 0


def _trainer(ft: FinetuneConfig, rows: list[dict[str, Any]], seed: int, group: int, **kwargs: object) -> Trainer:
    """transformers' Trainer with two recipe-level hooks: the length-grouped sampler and the warmup step count."""
    from transformers import Trainer

    lengths = [len(r["input_ids"]) for r in rows]

    class SFTTrainer(Trainer):
        def _get_train_sampler(self, *args: object, **kw: object) -> torch.utils.data.Sampler:
            if not ft.group_by_length:
                return super()._get_train_sampler(*args, **kw)
            return LengthGroupedSampler(lengths, group, seed)

        def compute_loss(
            self, model: torch.nn.Module, inputs: dict[str, Any], *args: object, **kw: object
        ) -> torch.Tensor:
            # Right-padded rows under causal attention: no real token can see a pad (pads come after it), and pads
            # carry label -100, so the mask changes nothing in the loss. Without it the attention takes its fused
            # causal path instead of building a 4-D mask. (The mask stays in the batch for the token counter.)
            inputs = {k: v for k, v in inputs.items() if k != "attention_mask"}
            if "position_ids" in inputs:  # packed row: transformers separates the examples only without a KV cache
                inputs["use_cache"] = False
            return super().compute_loss(model, inputs, *args, **kw)

        def create_scheduler(
            self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
        ) -> torch.optim.lr_scheduler.LRScheduler:
            self.args.warmup_steps = warmup_steps(ft.warmup_ratio, num_training_steps)
            self.warmup_steps_used = self.args.warmup_steps
            return super().create_scheduler(num_training_steps, optimizer)

        def _save_checkpoint(self, model: torch.nn.Module, trial: object) -> None:
            super()._save_checkpoint(model, trial)
            # The Trainer's own train_loss covers only the steps of this train() call; the running sum saved with
            # every checkpoint lets a resumed run average over all steps. Every rank gathers (a collective).
            from transformers.trainer_pt_utils import nested_gather

            pending = nested_gather(self._tr_loss.detach().clone(), self.args.parallel_mode).mean().item()
            total = self.loss_sum_before + self._total_loss_scalar + pending
            if self.args.process_index == 0:
                path = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
                write_json(path / LOSS_SUM, {"global_step": self.state.global_step, "loss_sum": total})
                names = {id(p): n for n, p in self.model.named_parameters()}
                groups = [[names[id(p)] for p in g["params"]] for g in self.optimizer.param_groups]
                write_json(path / OPTIMIZER_PARAMS, groups)

        def train_loss_all_steps(self) -> float:
            """Mean per-step training loss over every optimizer step of the arm (before and after a resume)."""
            return (self.loss_sum_before + self._total_loss_scalar) / max(self.state.global_step, 1)

    trainer = SFTTrainer(train_dataset=RowDataset(rows), **kwargs)
    trainer.loss_sum_before = 0.0  # set from the resumed checkpoint's LOSS_SUM
    return trainer


def collator(ft: FinetuneConfig, model: PreTrainedModel, tok: PreTrainedTokenizerBase) -> PadCollator | PackCollator:
    """Packed micro-batches (``finetune.packing``) where the attention implementation keeps packed examples apart,
    else right-padded ones. Packing under any other implementation is refused, never silently done or skipped."""
    if not ft.packing:
        return PadCollator(pad_token_id(tok))
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in PACKING_ATTENTION:
        raise ValueError(
            f"finetune.packing=true needs an attention implementation that separates packed examples "
            f"by position ids ({sorted(PACKING_ATTENTION)}); this model uses {impl!r}. "
            "Set finetune.packing=false (a different recipe)."
        )
    return PackCollator()


def mean_response_loss(
    model: torch.nn.Module, data: SFTData, pad_id: int, precision: str, batch_size: int = 4
) -> float:
    """Token-weighted mean cross-entropy over supervised (response) tokens — the quantity SFT minimises."""
    import torch

    collate = PadCollator(pad_id)
    total, count = 0.0, 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.no_grad(), autocast:
        for i in range(0, len(data.rows), batch_size):
            batch = {k: v.to(device) for k, v in collate(data.rows[i : i + batch_size]).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            shift_logits, shift_labels = logits[:, :-1], batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)),
                shift_labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total += float(loss)
            count += int((shift_labels != -100).sum())
    model.train(was_training)
    return total / max(count, 1)


def _backend(args: TrainingArguments) -> str | None:
    """The process-group backend accelerate chose (gloo for multi-process CPU); None for a single process."""
    state = getattr(args, "distributed_state", None)
    return getattr(state, "backend", None) if state is not None and state.num_processes > 1 else None


# ---------------------------------------------------------------------------------------------------- run state
def _guard_out_dir(out: Path, run_id: dict[str, Any]) -> None:
    """A directory holding checkpoints of another recipe/seed/selection must not be resumed into."""
    path = out / "run.json"
    if path.exists():
        prev = read_json(path)
        if prev != run_id:
            diff = {k: (prev.get(k), run_id.get(k)) for k in set(prev) | set(run_id) if prev.get(k) != run_id.get(k)}
            raise RecipeMismatch(
                f"{out} holds a run with different {sorted(diff)} ({diff}); use a new --out or delete it"
            )


def pool_fingerprint(pool: Sequence[Example]) -> dict[str, Any]:
    """What the manifest records about the pool the selection indexes (ids + content, order-sensitive)."""
    h = content_hash((), "\n".join(f"{ex.id}\t{ex.content_key()}" for ex in pool))
    return {"examples": len(pool), "sha256": h}


def build_data(
    cfg: RecipeSections,
    selection: Path,
    pool: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    context: int | None = None,
) -> SFTData:
    """Tokenise the selection; ``context`` (the model's maximum positions) caps ``finetune.max_length`` so a
    sample longer than the model's context is truncated/dropped by the length policy instead of crashing."""
    examples = pick(pool, read_selection(selection), str(selection))
    return tokenize(
        tokenizer,
        examples,
        template=cfg.prompt.template,
        system_prompt=cfg.prompt.system_prompt,
        train_eot=cfg.prompt.train_eot,
        max_length=min(cfg.finetune.max_length, context) if context else cfg.finetune.max_length,
        overflow=cfg.prompt.overflow,
    )


def _default_loader(
    spec: str, revision: str | None, dtype: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, models.ModelInfo]:
    return models.load(spec, revision, dtype=dtype, device="cpu")  # the Trainer moves it to the accelerator


def finished_record(out: Path) -> dict[str, Any] | None:
    """The training record of a finished arm folder, or None: the record must parse and the adapter weights must be
    present with the sha256 it records (a folder cut or garbled after the fact is trained again)."""
    path = out / TRAINING_RECORD
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ValueError as exc:
        log.warning("%s: unreadable training record (%s); training again", path, exc)
        return None
    weights = out / ADAPTER_WEIGHTS
    want = record.get("adapter_sha256") if isinstance(record, dict) else None
    if not want or not weights.is_file() or sha256_file(weights) != want:
        log.warning("%s: adapter weights missing or not the ones %s records; training again", weights, path)
        return None
    return record


def epoch_checkpoints(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete checkpoints an arm trained with ``keep_epoch_checkpoints=True`` kept, oldest first: step,
    epoch, path, and the mean learning rate over the optimizer steps of that epoch (from the trainer state's log,
    ``logging_steps`` apart; LESS weighs each checkpoint by it)."""
    root = Path(out) / CKPT_DIR
    found = [p for p in checkpoints.checkpoints(root) if checkpoints.verify(p)]
    if not found:
        return []
    history = read_json(found[-1] / "trainer_state.json").get("log_history", [])
    rates = [(h["step"], h["learning_rate"], h.get("epoch")) for h in history if "learning_rate" in h and "loss" in h]
    result, prev_step = [], 0
    for p in found:
        state = read_json(p / "trainer_state.json")
        step = int(state["global_step"])
        lrs = [lr for s, lr, _ in rates if prev_step < s <= step]
        result.append(
            {
                "step": step,
                "epoch": state.get("epoch"),
                "path": str(p),
                "mean_lr": sum(lrs) / len(lrs) if lrs else None,
            }
        )
        prev_step = step
    return result


# -------------------------------------------------------------------------------------------------------- main
@dataclass(frozen=True)
class ConfigRecord:
    """What an arm's training record keeps of the experiment it belongs to, none of it read by the training: the
    experiment's name (the run name's prefix), the whole resolved config (``training_config.yaml`` and the record's
    ``config``) and its hash (``config_hash``)."""

    experiment: str
    config: dict[str, Any]
    config_hash: str

    @classmethod
    def of(cls, cfg: Config) -> ConfigRecord:
        return cls(cfg.experiment.name, to_dict(cfg), config_hash(cfg))


@dataclass(frozen=True)
class ArmConfig:
    """The config an arm's training reads: the recipe's sections (``model``, ``prompt``, ``finetune``), W&B's
    (``publish``) and what its training record keeps of the whole config (:class:`ConfigRecord`)."""

    model: ModelConfig
    prompt: PromptConfig
    finetune: FinetuneConfig
    publish: PublishConfig
    record: ConfigRecord

    @classmethod
    def of(cls, cfg: Config) -> ArmConfig:
        return cls(cfg.model, cfg.prompt, cfg.finetune, cfg.publish, ConfigRecord.of(cfg))


@dataclass(frozen=True)
class ArmOptions:
    """How an arm's training goes about its work, never what it learns (none of it is part of the recipe):
    ``merge`` also writes merged full weights (None: ``finetune.merge``), ``progress_bar``, and
    ``keep_epoch_checkpoints`` (LESS's warm-up uses it): save a checkpoint at the end of every epoch (instead of by
    step count / time) and keep all of them, adapter *and* optimizer state, after training
    (:func:`epoch_checkpoints` lists them)."""

    merge: bool | None = None
    progress_bar: bool = True
    keep_epoch_checkpoints: bool = False


def finetune_arm(
    cfg: ArmConfig,
    selection: str | os.PathLike,
    pool: Sequence[Example],
    out: str | os.PathLike,
    *,
    seed: int,
    arm: str | None = None,
    loader: Loader | None = None,
    options: ArmOptions = ArmOptions(),
    pool_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune one arm; return its training record (also written to ``out/training.json``, last). A folder whose
    record is complete (:func:`finished_record`) is returned as is. Writes no ``DONE`` / ``manifest.json``.

    ``cfg``: the sections of the resolved config the training reads (``ArmConfig.of(cfg)``). ``selection``: a
    ``cpqs-bench select`` file whose ids index ``pool`` (``Example`` objects, e.g.
    :func:`cpqs_bench.data.pool.read_project_pool`). ``loader(spec, revision, dtype) -> (model, tokenizer, info)``:
    where the base model comes from (default: a fresh load). A loaded base may be shared: the LoRA is added for this
    arm and removed before returning (also on error). ``options``: merge, progress bar, epoch checkpoints
    (:class:`ArmOptions`). ``pool_summary``: the pool reader's counts, recorded in the manifest (default: size +
    content hash).
    """
    merge, progress_bar, keep_epoch_checkpoints = options.merge, options.progress_bar, options.keep_epoch_checkpoints
    out, selection = Path(out), Path(selection)
    done = finished_record(out)
    if done is not None:
        log.info("%s is complete (%s verifies); skipping", out, TRAINING_RECORD)
        return done
    ft = cfg.finetune
    merge = ft.merge if merge is None else merge
    device = models.pick_device(cfg.model.device)
    precision = resolve_precision(ft.precision, device)
    t_load = time.perf_counter()
    load = loader if loader is not None else _default_loader
    model, tok, info = load(cfg.model.id, cfg.model.revision, base_dtype(precision))
    load_seconds = time.perf_counter() - t_load
    rec = recipe(cfg, precision=precision, model_revision=info.revision)
    rhash = recipe_hash(rec)

    data = build_data(cfg, selection, pool, tok, models.model_max_length(model))
    pool_summary = dict(pool_summary) if pool_summary else pool_fingerprint(pool)
    selection_sha = sha256_file(selection)
    run_id = {"recipe_hash": rhash, "seed": seed, "selection_sha256": selection_sha, "data_sha256": data.sha256()}
    processes = world_size()
    accum = grad_accum(ft.batch_size, ft.micro_batch_size, processes)
    run_name = f"{cfg.record.experiment}-{arm or selection.stem}-s{seed}"

    args = training_arguments(ft, out / CKPT_DIR, seed, precision, accum, run_name, keep_epoch_checkpoints)
    _guard_out_dir(out, run_id)  # every rank checks (read-only), so a refusal cannot strand the others at a barrier
    checkpoints._barrier()
    if args.process_index == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "run.json", run_id)
        checkpoints.remove_incomplete(out / CKPT_DIR)
    checkpoints._barrier()
    resume_from = checkpoints.newest_complete(out / CKPT_DIR)

    use_cache = getattr(model.config, "use_cache", None)
    model.config.use_cache = False
    peft_model = add_lora(model, ft, seed)
    try:
        return _ArmRun(
            cfg=cfg,
            peft_model=peft_model,
            tok=tok,
            info=info,
            data=data,
            args=args,
            out=out,
            selection=selection,
            selection_sha=selection_sha,
            pool_summary=pool_summary,
            seed=seed,
            arm=arm,
            rec=rec,
            rhash=rhash,
            precision=precision,
            processes=processes,
            accum=accum,
            run_name=run_name,
            resume_from=resume_from,
            merge=merge,
            progress_bar=progress_bar,
            load_seconds=load_seconds,
            keep_epoch_checkpoints=keep_epoch_checkpoints,
        ).train()
    finally:
        remove_lora(peft_model, model, ft, use_cache)


@dataclass
class _ArmRun:
    """One arm's training, everything :func:`finetune_arm` resolved before the Trainer runs (model with its fresh
    LoRA, tokenised data, Trainer arguments, the recipe and where it resumes from)."""

    cfg: ArmConfig
    peft_model: PeftModel
    tok: PreTrainedTokenizerBase
    info: models.ModelInfo
    data: SFTData
    args: TrainingArguments
    out: Path
    selection: Path
    selection_sha: str
    pool_summary: dict[str, Any]
    seed: int
    arm: str | None
    rec: dict[str, Any]
    rhash: str
    precision: str
    processes: int
    accum: int
    run_name: str
    resume_from: Path | None
    merge: bool
    progress_bar: bool
    load_seconds: float
    keep_epoch_checkpoints: bool = False

    def train(self) -> dict[str, Any]:
        """Train, save the adapter (and the merged copy when asked), and write the arm's training record last."""
        cfg, ft, peft_model, tok, info, data, args = (
            self.cfg,
            self.cfg.finetune,
            self.peft_model,
            self.tok,
            self.info,
            self.data,
            self.args,
        )
        out, selection, selection_sha, pool_summary, seed, arm = (
            self.out,
            self.selection,
            self.selection_sha,
            self.pool_summary,
            self.seed,
            self.arm,
        )
        rec, rhash, precision, processes, accum, run_name = (
            self.rec,
            self.rhash,
            self.precision,
            self.processes,
            self.accum,
            self.run_name,
        )
        resume_from, merge, progress_bar = self.resume_from, self.merge, self.progress_bar
        load_seconds, keep_epoch_checkpoints = self.load_seconds, self.keep_epoch_checkpoints
        wandb_errors: list[str] = []
        callbacks = [
            checkpoints.callback(10**9 if keep_epoch_checkpoints else ft.save_total_limit),
            progress.callback(progress_bar),
            checkpoints.timed_saves(0 if keep_epoch_checkpoints else ft.save_interval_s),
        ]
        wandb_vars = wandb_env(cfg.publish.wandb_project, out, run_name) if cfg.publish.wandb else {}
        wandb_mode = wandb_vars.get("WANDB_MODE", "disabled")
        wandb_cb = wandb_callback(cfg.publish.wandb, wandb_errors)
        if wandb_cb is not None and args.process_index == 0:
            callbacks.append(wandb_cb)
        # The adapter's tokenizer carries the training template as its chat template (one prompt format: lm-eval renders
        # it for the arm exactly as prompts.render did for training); a copy, the loaded tokenizer may be shared.
        saved_tok = templates.apply(copy.deepcopy(tok), cfg.prompt)
        trainer = _trainer(
            ft,
            data.rows,
            seed,
            ft.micro_batch_size,
            model=peft_model,
            args=args,
            data_collator=collator(ft, peft_model, tok),
            processing_class=saved_tok,
            callbacks=callbacks,
        )
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # our progress bar shows loss/tokens/s; no raw dict prints
        loss_over_all_steps = True
        if resume_from is not None:
            if (resume_from / LOSS_SUM).is_file():
                trainer.loss_sum_before = float(read_json(resume_from / LOSS_SUM)["loss_sum"])
            else:  # a checkpoint written before the running sum existed: the post-resume mean, said so in the record
                loss_over_all_steps = False
        prog = callbacks[1]
        if args.process_index == 0:
            if data.dropped_ids:
                log.warning(
                    "%d of %d selected examples dropped by the length policy (finetune.max_length=%d, "
                    "prompt.overflow=%s); listed in the manifest",
                    len(data.dropped_ids),
                    data.n_selected,
                    ft.max_length,
                    cfg.prompt.overflow,
                )
            log.info(
                "finetune %s: %d rows, %d tokens (%d supervised), precision=%s, processes=%d, accum=%d, "
                "recipe=%s, resume_from=%s",
                run_name,
                len(data.rows),
                data.n_tokens,
                data.n_supervised,
                precision,
                processes,
                accum,
                rhash,
                resume_from,
            )
        t0 = time.perf_counter()
        with scoped_env(wandb_vars):
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            if wandb_cb is not None and not wandb_errors:
                _finish_wandb(wandb_errors)
        wall = time.perf_counter() - t0
        checkpoints._barrier()
        if args.process_index != 0:
            return {"recipe_hash": rhash, "process_index": args.process_index}

        t_save = time.perf_counter()
        trainer.save_model(str(out))  # adapter_config.json + adapter_model.safetensors + tokenizer files
        write_text(out / "training_config.yaml", to_yaml(cfg.record.config))
        write_json(out / "recipe.json", {"recipe_hash": rhash, "recipe": rec})
        loss = {}
        if ft.measure_train_loss:
            with peft_model.disable_adapter():
                loss["before"] = mean_response_loss(peft_model, data, pad_token_id(tok), precision)
            loss["after"] = mean_response_loss(peft_model, data, pad_token_id(tok), precision)
        merged_dir = None
        if merge:
            merged_dir = merge_copy(peft_model, saved_tok, out / "merged")
        history = [h for h in trainer.state.log_history if "loss" in h]
        manifest = {
            "stage": "finetune",
            "arm": arm,
            "seed": seed,
            "recipe_hash": rhash,
            "recipe": rec,
            "config_hash": cfg.record.config_hash,
            "config": cfg.record.config,
            "model_id": cfg.model.id,
            "model_path": info.path,
            "model_revision": info.revision,
            "seeds": {"data_order": seed, "lora_init": seed, "dropout": seed},
            "selection": {"path": str(selection), "sha256": selection_sha, "kept": data.n_selected},
            "pool": pool_summary,
            "data_sha256": {"selection": selection_sha, "pool": pool_summary.get("sha256"), "tokenized": data.sha256()},
            "data": data.summary(),
            "dropped_ids": data.dropped_ids,
            "training": {
                "precision": precision,
                "processes": processes,
                "backend": _backend(args),
                "micro_batch_size": ft.micro_batch_size,
                "grad_accum": accum,
                "effective_batch": ft.micro_batch_size * accum * processes,
                "global_steps": trainer.state.global_step,
                "epochs": trainer.state.epoch,
                "warmup_steps": getattr(trainer, "warmup_steps_used", None),
                "group_by_length": ft.group_by_length,
                "packing": ft.packing,
                "resumed_from": str(resume_from) if resume_from else None,
                "train_loss": trainer.train_loss_all_steps() if loss_over_all_steps else result.training_loss,
                "train_loss_over": "all steps" if loss_over_all_steps else "steps after the resume only",
                "wall_seconds": round(wall, 3),
                "load_seconds": round(load_seconds, 3),
                "save_seconds": round(time.perf_counter() - t_save, 3),
                "total_input_tokens": trainer.state.num_input_tokens_seen,
                "session": prog.report(),
                "loss_curve": [{"step": h["step"], "loss": h["loss"], "lr": h.get("learning_rate")} for h in history],
            },
            "train_data_loss": loss,
            "wandb": {"mode": wandb_mode, "errors": wandb_errors},
            "merged": str(merged_dir) if merged_dir else None,
            "adapter_sha256": sha256_file(out / ADAPTER_WEIGHTS),
            "epoch_checkpoints": epoch_checkpoints(out) if keep_epoch_checkpoints else None,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **provenance.collect(),
        }
        write_json(
            out / TRAINING_RECORD, manifest
        )  # last: the record marks the folder complete (with the weights' hash)
        if not (ft.keep_checkpoints or keep_epoch_checkpoints):
            shutil.rmtree(out / CKPT_DIR, ignore_errors=True)  # best effort: the record is written, the result complete
        return manifest


# ------------------------------------------------------------------------------------------------------- merging
def merge_loaded(peft_model: PeftModel, tokenizer: PreTrainedTokenizerBase, out: Path) -> Path:
    """Fold the LoRA weights into the base weights and save a plain model directory (atomic via rename)."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def merge_copy(peft_model: PeftModel, tokenizer: PreTrainedTokenizerBase, out: Path) -> Path:
    """Merge into a *copy* of the base (the loaded base may be shared with other stages and must stay clean)."""
    return merge_loaded(copy.deepcopy(peft_model), tokenizer, out)


def merge(adapter_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Merge a finished arm's adapter into its base model (read from the arm's training record) for export."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    manifest = read_json(adapter_dir / TRAINING_RECORD)
    model, tok, _ = models.load(
        manifest["model_id"],
        manifest["model_revision"] if manifest["model_id"] != models.EMBEDDED else None,
        dtype="float32",
        device="cpu",
    )
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
    return merge_loaded(peft_model, tok, Path(out))
