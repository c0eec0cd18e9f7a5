"""``cpqs-bench train-selector``: train the CPQS TextCNN on contrastive pairs and save a self-describing checkpoint.

Follows ``train_cnn.py`` of the reference (``renllll/CPQS-Tuning``, fork ``Victory0431/CPQS-Tuning``): Adam (lr
1e-4), batch 1 with 16-step gradient accumulation, cross-entropy over {bad, good}, autocast with a ``GradScaler``
when it runs in float16. Steps: build pairs (:mod:`.pairs`), dropping every group whose instruction is in the pool to
be scored *before* ``n_pairs`` are drawn (:func:`.pairs.select`, counted in the metrics as ``overlap``; the
``out_of_fold`` path drops each fold's instructions, then draws) -> split by instruction group (no
instruction on both sides) -> hidden-state features of the target model for every example, once, into the feature
cache (:mod:`cpqs_bench.features`) -> train -> report accuracy / F1 / AUC on the held-out instructions, the AUC on
*length-matched* held-out pairs and Spearman(score, response length) (the length confound: a classifier that only
learned "longer = better" keeps its AUC overall and loses it on length-matched pairs; it is then flagged) -> write
the checkpoint (:mod:`.checkpoint`).

**Differences from the reference** (``train_cnn.py`` of Victory0431/CPQS-Tuning at ``ce89a54``, the original
authors' file: ``build_dataset``, ``select_hidden_states``, ``build_prompts``, ``train``):

1. Training data: ``composition: paired`` / ``reference`` draw ``n_pairs`` instruction *groups* and train
   ``epochs`` over them with a held-out split by instruction (and its metrics: accuracy, F1, AUC, the
   length-matched AUC); the reference draws ``max_steps`` = 15,000 *texts* from the shuffled union of positives and
   both negative sets, unpaired, one pass, nothing held out — ``composition: reference_mix``
   (``reference_mix_texts``; one epoch, no validation split, so train loss only).
2. The pool-overlap drop (the reference trains on Alpaca-GPT4 instructions it may later score).
3. Features: ``feature_span: response`` (the default) is the project's answer span under ``prompt.template``;
   ``reference`` renders as ``build_prompts`` + ``train`` do (:func:`cpqs_bench.prompts.render_reference`), the span's
   tail cut at ``feature_max_length`` (the reference never cuts).
4. Question text: the project's ``instruction\\n\\ninput`` unless ``question_format: reference``
   (``instruction\\nInput:input``, ``build_dataset``).
5. Batches of ``batch_size`` padded examples through the CNN (the reference: batch 1); features computed once and
   cached instead of a forward per step.
6. bf16 autocast where the hardware has it (no scaler needed), fp16 + ``GradScaler`` on GPUs without bf16, fp32 on
   CPUs without bf16 (the reference always runs CUDA fp16 autocast with a scaler).

Training resumes per epoch: ``train_state.pt`` (weights, optimizer, epoch, metrics so far) is written atomically after
every epoch, and a rerun with the same inputs continues from there.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
import torch.nn.functional as F

from cpqs_bench import features as feats
from cpqs_bench.data.example import Example
from cpqs_bench.io import atomic_open, stable_hash, write_json
from cpqs_bench.selectors.cpqs.checkpoint import (
    autocast_dtype,  # noqa: F401
    write_checkpoint,
)
from cpqs_bench.selectors.cpqs.pairs import Labelled, PairSet
from cpqs_bench.selectors.cpqs.textcnn import TextCNN, TextCNNConfig, collate

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cpqs_bench.config import Config, ModelConfig, PromptConfig
    from cpqs_bench.models import ModelInfo
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.selectors.cpqs.config import CPQSConfig

STATE = "train_state.pt"


# ------------------------------------------------------------------------------------------------------ metrics
def binary_metrics(labels: Sequence[int], probs: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision/recall/F1 of the positive class and ROC AUC (rank statistic, ties count half)."""
    if not labels:
        return {"n": 0}
    pred = [int(p >= threshold) for p in probs]
    tp = sum(1 for y, p in zip(labels, pred) if y == 1 and p == 1)
    fp = sum(1 for y, p in zip(labels, pred) if y == 0 and p == 1)
    fn = sum(1 for y, p in zip(labels, pred) if y == 1 and p == 0)
    acc = sum(1 for y, p in zip(labels, pred) if y == p) / len(labels)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": len(labels),
        "accuracy": acc,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auc": roc_auc(labels, probs),
    }


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """P(score of a random positive > score of a random negative); NaN when one class is absent."""
    from scipy.stats import rankdata

    n_pos = sum(1 for y in labels if y == 1)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(list(scores))
    rank_sum = sum(r for r, y in zip(ranks, labels) if y == 1)
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ------------------------------------------------------------------------------------------------------ pieces
def textcnn_config(cq: CPQSConfig, num_layers: int, hidden_size: int) -> TextCNNConfig:
    return TextCNNConfig(
        num_layers=num_layers,
        hidden_size=hidden_size,
        kernel_sizes=tuple(cq.kernel_sizes),
        num_filters=cq.num_filters,
        fc_hidden=cq.mlp_hidden,
        dropout=cq.dropout,
    )


def _batches(items: Sequence[Labelled], batch_size: int, order: Sequence[int]) -> list[list[Labelled]]:
    return [[items[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]


def _load_batch(
    cache: feats.FeatureCache, batch: Sequence[Labelled], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    keys = [x.example.content_key() for x in batch]
    got = cache.get_many(keys)
    x, lengths = collate([got[k] for k in keys])
    y = torch.tensor([it.label for it in batch], dtype=torch.long)
    return x.to(device), lengths.to(device), y.to(device)


@torch.no_grad()
def predict(
    cnn: TextCNN,
    cache: feats.FeatureCache,
    items: Sequence[Labelled],
    batch_size: int,
    device: torch.device,
    amp: torch.dtype | None,
    lengths_out: list[int] | None = None,
) -> list[float]:
    """P(good) for cached items, in order (``lengths_out`` receives each item's response length in tokens)."""
    out: list[float] = []
    for batch in _batches(items, batch_size, list(range(len(items)))):
        x, lengths, _ = _load_batch(cache, batch, device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out.extend(cnn.score(x, lengths).tolist())
        if lengths_out is not None:
            lengths_out.extend(int(n) for n in lengths.tolist())
    return out


def length_report(
    items: Sequence[Labelled],
    probs: Sequence[float],
    lengths: Sequence[int],
    *,
    band: float,
    floor: float,
    overall_auc: float | None,
) -> dict[str, Any]:
    """The length confound on held-out items: Spearman(score, response tokens), Spearman(label, length), and the AUC
    / pairwise accuracy over the (good, bad) pairs of one instruction whose lengths are within ``1 + band`` of each
    other. ``flagged`` when that length-matched AUC is below ``floor`` (or more than 0.1 below the overall AUC)."""
    from scipy.stats import spearmanr

    def rho(a: Sequence[float], b: Sequence[float]) -> float | None:
        if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
            return None
        return float(spearmanr(a, b).statistic)

    by_group: dict[str, dict[int, list[int]]] = {}
    for i, x in enumerate(items):
        by_group.setdefault(x.group, {}).setdefault(x.label, []).append(i)
    matched: list[tuple[int, int]] = []
    all_pairs = 0
    pos_longer = 0
    for sides in by_group.values():
        for i in sides.get(1, []):
            for j in sides.get(0, []):
                all_pairs += 1
                pos_longer += lengths[i] > lengths[j]
                if max(lengths[i], lengths[j]) <= (1 + band) * min(lengths[i], lengths[j]):
                    matched.append((i, j))
    idx = sorted({k for pair in matched for k in pair})
    auc = roc_auc([items[k].label for k in idx], [probs[k] for k in idx]) if matched else float("nan")
    wins = [1.0 if probs[i] > probs[j] else 0.5 if probs[i] == probs[j] else 0.0 for i, j in matched]
    out: dict[str, Any] = {
        "band": band,
        "pairs": all_pairs,
        "positive_longer": pos_longer / all_pairs if all_pairs else None,
        "length_matched_pairs": len(matched),
        "length_matched_auc": None if math.isnan(auc) else auc,
        "length_matched_pair_accuracy": sum(wins) / len(wins) if wins else None,
        "spearman_score_length": rho(list(probs), [float(n) for n in lengths]),
        "spearman_label_length": rho([float(x.label) for x in items], [float(n) for n in lengths]),
    }
    lm = out["length_matched_auc"]
    if lm is None or len(matched) < 10:
        out["flagged"] = None
        out["flag_reason"] = f"too few length-matched held-out pairs ({len(matched)}) to judge"
    else:
        collapsed = lm < floor or (overall_auc is not None and not math.isnan(overall_auc) and overall_auc - lm > 0.1)
        out["flagged"] = bool(collapsed)
        out["flag_reason"] = (
            f"length-matched AUC {lm:.3f} vs overall {overall_auc:.3f}: the classifier may be ranking by length"
            if collapsed
            else None
        )
    return out


def _save_state(
    path: Path, cnn: TextCNN, opt: torch.optim.Optimizer, epoch: int, history: list[dict], key: str | None = None
) -> None:
    with atomic_open(path, "wb") as fh:
        torch.save(
            {
                "model": cnn.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch,
                "history": history,
                "torch_rng": torch.get_rng_state(),
                "key": key,
            },
            fh,
        )


@dataclass(frozen=True)
class TrainOptions:
    """How a training run goes about its work, never what it learns: progress bars, where log lines go, the
    feature cache's root (None: the user cache) and how hidden states are taken (:data:`features.Method`)."""

    progress: bool = True
    log: Callable[[str], None] = print
    cache_root: str | Path | None = None
    method: feats.Method = "auto"


def fit(
    cnn: TextCNN,
    cache: feats.FeatureCache,
    train: Sequence[Labelled],
    val: Sequence[Labelled],
    cq: CPQSConfig,
    amp: torch.dtype | None,
    *,
    state_path: Path | None = None,
    state_key: str | None = None,
    options: TrainOptions = TrainOptions(),
) -> list[dict[str, Any]]:
    """Train ``cnn`` in place (on the device it is on) with ``cq``'s ``lr``, ``grad_accum``, ``batch_size``,
    ``epochs`` and ``seed``; returns per-epoch history (train loss, validation metrics). Resumes from
    ``state_path`` only when it was saved under the same ``state_key`` (a hash of everything but the epoch count),
    so a changed config in the same output directory never continues — or silently reuses — another run's
    weights."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    lr, grad_accum, batch_size, epochs, seed = cq.lr, cq.grad_accum, cq.batch_size, cq.epochs, cq.seed
    device = next(cnn.parameters()).device
    progress, log = options.progress, options.log

    if grad_accum < 1 or batch_size < 1 or epochs < 1:
        raise ValueError(f"grad_accum, batch_size and epochs must be >= 1 (got {grad_accum}, {batch_size}, {epochs})")
    opt = torch.optim.Adam(cnn.parameters(), lr=lr)
    # fp16 autocast underflows small gradients: scale the loss (the reference's GradScaler); bf16 needs none
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if state_path is not None and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        if state.get("key") != state_key:
            raise ValueError(
                f"{state_path} holds the training state of a run with different inputs (backbone, "
                "features, pairs or training settings); use another --out or delete it"
            )
        cnn.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"], state["history"]
        torch.set_rng_state(state["torch_rng"])
        log(f"resuming training after epoch {start_epoch}")
    else:
        torch.manual_seed(seed)
    n_batches = math.ceil(len(train) / batch_size)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not progress,
    ) as bar:
        for epoch in range(start_epoch, epochs):
            task = bar.add_task(f"epoch {epoch + 1}/{epochs}", total=n_batches)
            order = list(range(len(train)))
            random.Random(seed * 1000 + epoch).shuffle(order)
            cnn.train()
            opt.zero_grad(set_to_none=True)
            total, seen, t0 = 0.0, 0, time.perf_counter()
            batches = _batches(train, batch_size, order)
            for step, batch in enumerate(batches, 1):
                x, lengths, y = _load_batch(cache, batch, device)
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    logits = cnn(x, lengths)
                loss = F.cross_entropy(logits.float(), y)
                # Each optimizer step averages over its accumulated micro-batches (the last group may be short).
                group = min(grad_accum, len(batches) - ((step - 1) // grad_accum) * grad_accum)
                if scaler is not None:
                    scaler.scale(loss / group).backward()
                else:
                    (loss / group).backward()
                total += loss.item() * len(batch)
                seen += len(batch)
                if step % grad_accum == 0 or step == len(batches):
                    if scaler is not None:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.step()
                    opt.zero_grad(set_to_none=True)
                bar.advance(task)
            metrics = binary_metrics([x.label for x in val], predict(cnn, cache, val, max(batch_size, 8), device, amp))
            entry = {
                "epoch": epoch + 1,
                "train_loss": total / max(seen, 1),
                "seconds": time.perf_counter() - t0,
                "val": metrics,
            }
            history.append(entry)
            log(json.dumps(entry))
            if state_path is not None:
                _save_state(state_path, cnn, opt, epoch + 1, history, state_key)
    return history


# ------------------------------------------------------------------------------------------------------ library
def fit_selector(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    backbone: dict[str, Any],
    pairset: PairSet,
    cq: CPQSConfig,
    spec: feats.FeatureSpec,
    out_dir: str | Path,
    *,
    options: TrainOptions = TrainOptions(),
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train on ``pairset`` with the features of ``model`` and write the checkpoint into ``out_dir``.

    ``backbone`` = ``{"spec", "revision"}`` of the target model as the user named it; the model's config digest is
    added, so scoring can refuse a different model even when both specs look alike.
    """
    from cpqs_bench.selectors.cpqs.pairs import split_by_group

    cache_root, progress, method, log = options.cache_root, options.progress, options.method, options.log
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if getattr(cq, "composition", None) == "reference_mix":  # the reference's one pass, nothing held out
        from dataclasses import replace

        cq = replace(cq, epochs=1, val_fraction=0.0)
    device = next(model.parameters()).device
    model_id = feats.model_identity(model, backbone.get("revision"))
    layers = feats.resolve_layers(spec.layers, feats.num_blocks(model))
    train, val = split_by_group(pairset.items, cq.val_fraction, cq.seed)
    overlap = {x.group for x in train} & {x.group for x in val}
    assert not overlap, "split_by_group leaked an instruction across the split"

    scratch = None
    if cq.feature_cache:
        root = Path(cache_root) if cache_root is not None else feats.default_cache_root()
    else:  # features still go to disk once (epochs re-read them); removed after training
        root = scratch = out_dir / "feature_scratch"
    cache = feats.FeatureCache(root, model_id, spec, cq.feature_cache_max_gb)
    stats = feats.ExtractStats()
    dropped: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    everything = [x.example for x in pairset.items]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not progress,
    ) as bar:
        task = bar.add_task("features", total=len(everything))
        computed = feats.cached_features(
            model,
            tokenizer,
            everything,
            spec,
            cache,
            feats.ExtractOptions(cq.extract_batch_size, method=method),
            stats=stats,
            dropped=dropped,
            progress=lambda n: bar.advance(task, n),
        )
    extract_s = time.perf_counter() - t0
    if dropped:  # a pair missing one side is no pair: drop both sides of its group
        bad_groups = {x.group for x in pairset.items if x.example.id in {i for i, _ in dropped}}
        train = [x for x in train if x.group not in bad_groups]
        val = [x for x in val if x.group not in bad_groups]
        log(f"dropped {len(bad_groups)} pairs whose answer the length policy dropped")

    hidden = int(getattr(model.config, "hidden_size", 0) or model.config.n_embd)
    torch.manual_seed(cq.seed)
    cnn = TextCNN(textcnn_config(cq, len(layers), hidden)).to(device)
    amp = autocast_dtype(device, cq.mixed_precision)
    t1 = time.perf_counter()
    state_key = stable_hash(
        {
            "model": model_id,
            "spec": spec.as_dict(),
            "textcnn": cnn.cfg.to_dict(),
            "training": {
                k: getattr(cq, k) for k in ("lr", "grad_accum", "batch_size", "seed", "val_fraction", "mixed_precision")
            },
            "train": [(x.example.content_key(), x.label) for x in train],
            "val": [(x.example.content_key(), x.label) for x in val],
        },
        16,
    )
    history = fit(cnn, cache, train, val, cq, amp, state_path=out_dir / STATE, state_key=state_key, options=options)
    train_s = time.perf_counter() - t1
    final = history[-1]["val"] if history else {}
    val_lengths: list[int] = []
    val_probs = predict(cnn, cache, val, max(cq.batch_size, 8), device, amp, val_lengths) if val else []
    length = length_report(
        val,
        val_probs,
        val_lengths,
        band=getattr(cq, "length_band", 0.25),
        floor=getattr(cq, "length_matched_auc_floor", 0.6),
        overall_auc=final.get("auc"),
    )
    if length.get("flagged"):
        log(f"warning: {length['flag_reason']}")
    metrics = {
        "val": final,
        "history": history,
        "n_train": len(train),
        "n_val": len(val),
        "train_groups": len({x.group for x in train}),
        "val_groups": len({x.group for x in val}),
        "features_computed": computed,
        "extract_seconds": extract_s,
        "train_seconds": train_s,
        "extract": stats.as_dict(),
        "autocast": str(amp) if amp else None,
        "pairs": pairset.summary(),
        "length": length,
        **(extra_meta or {}),
    }
    write_json(out_dir / "metrics.json", metrics)
    meta = {
        "backbone": {**backbone, "config_digest": model_id["config"]},
        "layers": spec.layers,
        "layer_indices": layers,
        "template": spec.template,
        "system_prompt": spec.system_prompt,
        "train_eot": spec.train_eot,
        "max_length": spec.max_length,
        # what scoring must render the same way (CPQSSelector refuses a config that says otherwise)
        "feature_span": spec.span,
        "question_format": getattr(cq, "question_format", "project"),
        "composition": getattr(cq, "composition", None),
        "feature_dtype": model_id["dtype"],
        "autocast": str(amp).replace("torch.", "") if amp else None,
        "train_metrics": {
            "val": final,
            "n_train": len(train),
            "n_val": len(val),
            "length": length,
            **(extra_meta or {}),
        },
        "training": {
            k: getattr(cq, k)
            for k in ("lr", "grad_accum", "batch_size", "epochs", "val_fraction", "seed", "mixed_precision")
        },
    }
    write_checkpoint(out_dir, cnn, meta)
    from cpqs_bench.selectors.cpqs.checkpoint import write_training_instructions
    from cpqs_bench.selectors.cpqs.pairs import overlap_key

    write_training_instructions(out_dir, (overlap_key(x.example) for x in [*train, *val]))
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    return metrics


def feature_spec(prompt: PromptConfig, cq: CPQSConfig) -> feats.FeatureSpec:
    """The features a CPQS selector trains on, from the resolved config: ``prompt.template``/``system_prompt``,
    ``selectors.cpqs.layers``, ``min(feature_max_length, prompt.max_length)``, ``selectors.cpqs.feature_eot``
    (None: follow ``prompt.train_eot``, the SFT labels' end-of-turn rule), ``selectors.cpqs.feature_span`` and, with
    the reference span, ``selectors.cpqs.question_format`` (the question text every example is rendered with)."""
    eot = prompt.train_eot if cq.feature_eot is None else bool(cq.feature_eot)
    span = getattr(cq, "feature_span", "response")
    return feats.FeatureSpec(
        prompt.template,
        cq.layers,
        min(cq.feature_max_length, prompt.max_length),
        prompt.system_prompt,
        eot,
        span,
        cq.question_format if span == "reference" else "project",
    )


def load_target(
    model: ModelConfig, loader: ModelLoader | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
    """(model, tokenizer, info) of ``model.*`` through ``loader(spec, revision, dtype)`` or :func:`models.load`."""
    from cpqs_bench import models

    if loader is not None:
        return loader(model.id, model.revision, model.dtype)
    return models.load(model.id, revision=model.revision, dtype=model.dtype, device=model.device)


def build_pairs(
    cfg: Config,
    *,
    pairs: PairSet | Sequence[Example] | None = None,
    negatives: str | Path | None = None,
    row_filter: dict[str, Sequence[Any]] | None = None,
    avoid: Sequence[Example] | None = None,
    full: bool = False,
) -> PairSet:
    """The training pairs: a given :class:`PairSet`; for ``pairs_source=generate`` the given pool examples (the
    positives) joined with the make-negatives file ``negatives``; else the configured source. Never limited by
    ``data.pool_limit`` (``selectors.cpqs.n_pairs`` is the pairs' own size).

    ``avoid``: the pool to be scored. Its instructions are dropped FIRST and only then are ``n_pairs`` drawn (or
    ``reference_mix_texts`` texts), so a source that overlaps the pool still gives ``n_pairs`` when it can
    (``skipped["short_of_n_pairs"]`` is the shortfall after the drop). ``full=True``: the whole set, undrawn (a
    given PairSet is returned as is)."""
    from cpqs_bench.selectors.cpqs import pairs as P

    cq = cfg.selectors.cpqs
    if isinstance(pairs, PairSet):
        return pairs if full else P.select(pairs, cq, avoid)
    if cq.pairs_source == "generate" and pairs is None:
        raise P.PairsError("pairs_source=generate: pass the examples whose instructions were answered (pairs=...)")
    return P.build(
        cq,
        mirror=cfg.data.mirror,
        pool_examples=list(pairs) if pairs is not None else None,
        negatives_path=negatives,
        exclude=row_filter,
        avoid=avoid,
        full=full,
    )


def train_selector(
    cfg: Config,
    out: str | Path,
    *,
    pairs: PairSet | Sequence[Example] | None = None,
    negatives: str | Path | None = None,
    exclude: Sequence[Example] | None = None,
    row_filter: dict[str, Sequence[Any]] | None = None,
    loader: ModelLoader | None = None,
    options: TrainOptions = TrainOptions(),
) -> dict[str, Any]:
    """Train the CPQS TextCNN of ``cfg`` into the checkpoint directory ``out``; returns its metrics.

    ``pairs``: a :class:`PairSet`, or for ``pairs_source=generate`` the examples whose instructions ``negatives``
    (a make-negatives file) answers; None builds the configured source. ``exclude``: the pool the selector will
    score: every pair whose instruction it holds is dropped first, before ``n_pairs`` are drawn
    (``metrics["overlap"]`` records how many groups; ``overlap_in_training`` is then 0). ``row_filter``: ``{field: [values]}`` rows of a paired file to skip.
    ``loader(spec, revision, dtype) -> (model, tokenizer, info)`` shares the target model with other stages;
    ``options``: progress, log lines, the feature cache's root (:class:`TrainOptions`).
    """
    log = options.log
    pairset = build_pairs(cfg, pairs=pairs, negatives=negatives, row_filter=row_filter, avoid=exclude)
    dropped = int(pairset.skipped.get("overlap_with_pool", 0)) if exclude is not None else 0
    if dropped:
        log(f"dropped {dropped} instruction groups in the scored pool before drawing the training pairs")
    if pairset.skipped.get("short_of_n_pairs"):
        log(f"warning: {pairset.skipped['short_of_n_pairs']} pairs short of selectors.cpqs.n_pairs after the drop")
    overlap = {
        "checked_against": len(exclude) if exclude is not None else None,
        "dropped_pairs": dropped,
        "overlap_in_training": 0 if exclude is not None else None,
    }
    model, tok, info = load_target(cfg.model, loader)
    spec = feature_spec(cfg.prompt, cfg.selectors.cpqs)
    metrics = fit_selector(
        model,
        tok,
        {"spec": info.spec, "revision": info.revision},
        pairset,
        cfg.selectors.cpqs,
        spec,
        out,
        options=options,
        extra_meta={"overlap": overlap},
    )
    return {"checkpoint": str(out), "n_pairs": pairset.n_pairs, **metrics}


def fold_of(ex: Example, folds: int) -> int:
    """The out-of-fold fold of a pool example, by instruction (repeated instructions share a fold)."""
    from cpqs_bench.selectors.cpqs.checkpoint import instruction_hash
    from cpqs_bench.selectors.cpqs.pairs import overlap_key

    return int(instruction_hash(overlap_key(ex))[:8], 16) % folds


def train_out_of_fold(
    cfg: Config,
    out: str | Path,
    pool_examples: Sequence[Example],
    score_out: str | Path,
    *,
    pairs: PairSet | Sequence[Example] | None = None,
    negatives: str | Path | None = None,
    row_filter: dict[str, Sequence[Any]] | None = None,
    loader: ModelLoader | None = None,
    options: TrainOptions = TrainOptions(),
) -> dict[str, Any]:
    """Score ``pool_examples`` out of fold: ``selectors.cpqs.oof_folds`` CNNs (``out/fold-K``), each trained on the
    pairs minus every instruction of fold K of the pool and scoring fold K. Writes ``score_out`` (one row per pool
    example, pool order, as ``cpqs-bench score``) and returns per-fold metrics; every fold's overlap is 0."""
    from cpqs_bench.io import write_jsonl
    from cpqs_bench.selectors.base import ScoringContext
    from cpqs_bench.selectors.cpqs import pairs as P
    from cpqs_bench.selectors.cpqs.selector import CPQSSelector

    cq = cfg.selectors.cpqs
    if cq.oof_folds < 2:
        raise ValueError(f"selectors.cpqs.oof_folds must be >= 2, got {cq.oof_folds}")
    out = Path(out)
    pool_examples = list(pool_examples)
    pairset = build_pairs(cfg, pairs=pairs, negatives=negatives, row_filter=row_filter, full=True)
    loaded = load_target(cfg.model, loader)

    def shared(
        spec: str, revision: str | None, dtype: str
    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
        """The one loaded target model for every fold's scoring (other specs go to ``loader``)."""
        if spec == cfg.model.id:
            return loaded
        if loader is None:
            raise ValueError(f"out-of-fold scoring needs only the target model, asked for {spec!r}")
        return loader(spec, revision, dtype)

    model, tok, info = loaded
    spec = feature_spec(cfg.prompt, cfg.selectors.cpqs)
    by_id: dict[str, dict[str, Any]] = {}
    folds = []
    for k in range(cq.oof_folds):
        fold = [ex for ex in pool_examples if fold_of(ex, cq.oof_folds) == k]
        if not fold:
            continue
        # drop this fold's instructions FIRST, then draw n_pairs (or reference_mix_texts) from what is left
        kept = P.select(pairset, cq, fold)
        dropped = int(kept.skipped.get("overlap_with_pool", 0)) - int(pairset.skipped.get("overlap_with_pool", 0))
        ck = out / f"fold-{k}"
        m = fit_selector(
            model,
            tok,
            {"spec": info.spec, "revision": info.revision},
            kept,
            cq,
            spec,
            ck,
            options=options,
            extra_meta={
                "overlap": {"checked_against": len(fold), "dropped_pairs": dropped, "overlap_in_training": 0},
                "fold": k,
            },
        )
        ctx = ScoringContext(cfg, out / "work" / f"fold-{k}", seed=cfg.selectors.seed, checkpoint=ck, loader=shared)
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        for r in CPQSSelector().score(fold, ctx):
            row = r.to_dict()
            if row.get("score") is not None and isinstance(row["score"], float) and math.isnan(row["score"]):
                row["score"] = None
            by_id[r.id] = {**row, "fold": k}
        folds.append(
            {
                "fold": k,
                "pool": len(fold),
                "dropped_pairs": dropped,
                "n_pairs": kept.n_pairs,
                "short_of_n_pairs": kept.skipped.get("short_of_n_pairs", 0),
                "val": m["val"],
                "length": m["length"],
            }
        )
    rows = [by_id[ex.id] for ex in pool_examples]
    write_jsonl(score_out, rows)
    summary = {
        "checkpoint": str(out),
        "folds": folds,
        "n": len(rows),
        "n_pairs": pairset.n_pairs,  # the whole source; each fold draws its own (n_pairs_per_fold)
        "n_pairs_per_fold": [f["n_pairs"] for f in folds],
        "overlap": {
            "checked_against": len(pool_examples),
            "overlap_in_training": 0,
            "mode": "out_of_fold",
            "dropped_pairs_per_fold": [f["dropped_pairs"] for f in folds],
        },
        "val": {
            key: sum(f["val"].get(key, 0.0) for f in folds) / len(folds)
            for key in ("accuracy", "f1", "auc")
            if all(key in f["val"] for f in folds)
        },
    }
    write_json(out / "metrics.json", summary)
    write_json(
        Path(str(score_out) + ".summary.json"),
        {"selector": "cpqs", "mode": "out_of_fold", "n": len(rows), "overlap": summary["overlap"], "folds": len(folds)},
    )
    return summary
