"""``cpqs-bench train-selector``: train the CPQS TextCNN on contrastive pairs and save a self-describing checkpoint.

Steps: build pairs (:mod:`.pairs`) -> split by instruction group (no instruction on both sides) -> hidden-state
features of the target model for every example, once, into the feature cache (:mod:`cpqs_bench.features`) -> train
the TextCNN (Adam, gradient accumulation, bf16 autocast where the hardware has it, cross-entropy, seeded) -> report
accuracy / F1 / AUC on the held-out instructions -> write the checkpoint:

* ``model.safetensors`` — the TextCNN weights;
* ``selector.json`` — everything scoring needs (backbone spec, revision and config digest, layer selection and the
  resolved indices, template, system prompt, max length, TextCNN config) plus the training metrics, so
  ``cpqs-bench score cpqs --selector DIR`` never asks for a training flag again.

Training resumes per epoch: ``train_state.pt`` (weights, optimizer, epoch, metrics so far) is written atomically after
every epoch, and a rerun with the same inputs continues from there.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from cpqs_bench import features as feats
from cpqs_bench.io import atomic_open, read_json, stable_hash, write_json
from cpqs_bench.selectors.cpqs.pairs import Labelled, PairSet
from cpqs_bench.selectors.cpqs.textcnn import TextCNN, TextCNNConfig, collate

CHECKPOINT_FORMAT = "cpqs-selector/1"
WEIGHTS = "model.safetensors"
META = "selector.json"
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
    return {"n": len(labels), "accuracy": acc, "precision": precision, "recall": recall, "f1": f1,
            "auc": roc_auc(labels, probs)}


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
def autocast_dtype(device: torch.device, mixed_precision: bool) -> torch.dtype | None:
    """bf16 autocast where the hardware runs it natively, else None (plain fp32)."""
    from cpqs_bench.models import best_dtype

    if not mixed_precision:
        return None
    dt = best_dtype(device.type)
    return dt if dt in (torch.bfloat16, torch.float16) and (device.type == "cuda" or dt == torch.bfloat16) else None


def textcnn_config(cq: Any, num_layers: int, hidden_size: int) -> TextCNNConfig:
    return TextCNNConfig(num_layers=num_layers, hidden_size=hidden_size, kernel_sizes=tuple(cq.kernel_sizes),
                         num_filters=cq.num_filters, fc_hidden=cq.mlp_hidden, dropout=cq.dropout)


def _batches(items: Sequence[Labelled], batch_size: int, order: Sequence[int]) -> list[list[Labelled]]:
    return [[items[i] for i in order[s: s + batch_size]] for s in range(0, len(order), batch_size)]


def _load_batch(cache: feats.FeatureCache, batch: Sequence[Labelled], device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    keys = [x.example.content_key() for x in batch]
    got = cache.get_many(keys)
    x, lengths = collate([got[k] for k in keys])
    y = torch.tensor([it.label for it in batch], dtype=torch.long)
    return x.to(device), lengths.to(device), y.to(device)


@torch.no_grad()
def predict(cnn: TextCNN, cache: feats.FeatureCache, items: Sequence[Labelled], batch_size: int,
            device: torch.device, amp: torch.dtype | None) -> list[float]:
    """P(good) for cached items, in order."""
    out: list[float] = []
    for batch in _batches(items, batch_size, list(range(len(items)))):
        x, lengths, _ = _load_batch(cache, batch, device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out.extend(cnn.score(x, lengths).tolist())
    return out


def _save_state(path: Path, cnn: TextCNN, opt: torch.optim.Optimizer, epoch: int, history: list[dict],
                key: str | None = None) -> None:
    with atomic_open(path, "wb") as fh:
        torch.save({"model": cnn.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "history": history,
                    "torch_rng": torch.get_rng_state(), "key": key}, fh)


def fit(cnn: TextCNN, cache: feats.FeatureCache, train: Sequence[Labelled], val: Sequence[Labelled], *, lr: float,
        grad_accum: int, batch_size: int, epochs: int, seed: int, device: torch.device, amp: torch.dtype | None,
        state_path: Path | None = None, state_key: str | None = None, progress: bool = True,
        log: Any = print) -> list[dict[str, Any]]:
    """Train in place; returns per-epoch history (train loss, validation metrics). Resumes from ``state_path`` only
    when it was saved under the same ``state_key`` (a hash of everything but the epoch count), so a changed
    config in the same output directory never continues — or silently reuses — another run's weights."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    if grad_accum < 1 or batch_size < 1 or epochs < 1:
        raise ValueError(f"grad_accum, batch_size and epochs must be >= 1 (got {grad_accum}, {batch_size}, {epochs})")
    opt = torch.optim.Adam(cnn.parameters(), lr=lr)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if state_path is not None and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        if state.get("key") != state_key:
            raise ValueError(f"{state_path} holds the training state of a run with different inputs (backbone, "
                             "features, pairs or training settings); use another --out or delete it")
        cnn.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"], state["history"]
        torch.set_rng_state(state["torch_rng"])
        log(f"resuming training after epoch {start_epoch}")
    else:
        torch.manual_seed(seed)
    n_batches = math.ceil(len(train) / batch_size)
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), disable=not progress) as bar:
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
                (loss / group).backward()
                total += loss.item() * len(batch)
                seen += len(batch)
                if step % grad_accum == 0 or step == len(batches):
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                bar.advance(task)
            metrics = binary_metrics([x.label for x in val], predict(cnn, cache, val, max(batch_size, 8), device, amp))
            entry = {"epoch": epoch + 1, "train_loss": total / max(seen, 1), "seconds": time.perf_counter() - t0,
                     "val": metrics}
            history.append(entry)
            log(json.dumps(entry))
            if state_path is not None:
                _save_state(state_path, cnn, opt, epoch + 1, history, state_key)
    return history


def write_checkpoint(out_dir: Path, cnn: TextCNN, meta: dict[str, Any]) -> Path:
    """``model.safetensors`` + ``selector.json`` (weights first, so a readable JSON implies complete weights)."""
    from safetensors.torch import save

    from cpqs_bench.io import write_bytes

    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes(out_dir / WEIGHTS, save({k: v.contiguous() for k, v in cnn.state_dict().items()}))
    write_json(out_dir / META, {"format": CHECKPOINT_FORMAT, **meta, "textcnn": cnn.cfg.to_dict()})
    return out_dir


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[TextCNN, dict[str, Any]]:
    """(TextCNN in eval mode, selector.json) of a checkpoint directory, with clear errors for a bad directory."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / META).exists() or not (path / WEIGHTS).exists():
        raise FileNotFoundError(f"{path} is not a CPQS selector checkpoint (needs {META} and {WEIGHTS}); train one "
                                "with cpqs-bench train-selector")
    meta = read_json(path / META)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path / META}: format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    cnn = TextCNN(TextCNNConfig.from_dict(meta["textcnn"]))
    cnn.load_state_dict(load_file(str(path / WEIGHTS)))
    return cnn.to(device).eval(), meta


# ------------------------------------------------------------------------------------------------------ library
def train_selector(model: Any, tokenizer: Any, backbone: dict[str, Any], pairset: PairSet, cq: Any,
                   spec: feats.FeatureSpec, out_dir: str | Path, *, cache_root: str | Path | None = None,
                   progress: bool = True, method: feats.Method = "auto", log: Any = print) -> dict[str, Any]:
    """Train on ``pairset`` with the features of ``model`` and write the checkpoint into ``out_dir``.

    ``backbone`` = ``{"spec", "revision"}`` of the target model as the user named it; the model's config digest is
    added, so scoring can refuse a different model even when both specs look alike.
    """
    from cpqs_bench.selectors.cpqs.pairs import split_by_group

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task("features", total=len(everything))
        computed = feats.cached_features(model, tokenizer, everything, spec, cache, cq.extract_batch_size,
                                         method=method, stats=stats, dropped=dropped,
                                         progress=lambda n: bar.advance(task, n))
    extract_s = time.perf_counter() - t0
    if dropped:  # a pair missing one side is no pair: drop both sides of its group
        bad_groups = {x.group for x in pairset.items if x.example.id in {i for i, _ in dropped}}
        train = [x for x in train if x.group not in bad_groups]
        val = [x for x in val if x.group not in bad_groups]
        log(f"dropped {len(bad_groups)} pairs whose answer the length policy dropped")

    hidden = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "n_embd"))
    torch.manual_seed(cq.seed)
    cnn = TextCNN(textcnn_config(cq, len(layers), hidden)).to(device)
    amp = autocast_dtype(device, cq.mixed_precision)
    t1 = time.perf_counter()
    state_key = stable_hash({"model": model_id, "spec": spec.as_dict(), "textcnn": cnn.cfg.to_dict(),
                             "training": {k: getattr(cq, k) for k in ("lr", "grad_accum", "batch_size", "seed",
                                                                      "val_fraction", "mixed_precision")},
                             "train": [(x.example.content_key(), x.label) for x in train],
                             "val": [(x.example.content_key(), x.label) for x in val]}, 16)
    history = fit(cnn, cache, train, val, lr=cq.lr, grad_accum=cq.grad_accum, batch_size=cq.batch_size,
                  epochs=cq.epochs, seed=cq.seed, device=device, amp=amp, state_path=out_dir / STATE,
                  state_key=state_key, progress=progress, log=log)
    train_s = time.perf_counter() - t1
    final = history[-1]["val"] if history else {}
    metrics = {"val": final, "history": history, "n_train": len(train), "n_val": len(val),
               "train_groups": len({x.group for x in train}), "val_groups": len({x.group for x in val}),
               "features_computed": computed, "extract_seconds": extract_s, "train_seconds": train_s,
               "extract": stats.as_dict(), "autocast": str(amp) if amp else None, "pairs": pairset.summary()}
    write_json(out_dir / "metrics.json", metrics)
    meta = {"backbone": {**backbone, "config_digest": model_id["config"]},
            "layers": spec.layers, "layer_indices": layers, "template": spec.template,
            "system_prompt": spec.system_prompt, "train_eot": spec.train_eot, "max_length": spec.max_length,
            "feature_dtype": model_id["dtype"], "train_metrics": {"val": final, "n_train": len(train),
                                                                  "n_val": len(val)},
            "training": {k: getattr(cq, k) for k in ("lr", "grad_accum", "batch_size", "epochs", "val_fraction",
                                                      "seed", "mixed_precision")}}
    write_checkpoint(out_dir, cnn, meta)
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    return metrics


def main(config: str = "smoke", overrides: Sequence[str] = (), *, out: str | None = None, data: str | None = None,
         negatives: str | None = None, exclude: Sequence[str] = (), progress: bool = True) -> dict[str, Any]:
    """Library entry of ``cpqs-bench train-selector``: config -> pairs -> features -> TextCNN -> run dir."""
    from cpqs_bench import models, rundir
    from cpqs_bench.config import load_config, to_dict
    from cpqs_bench.data.pool import read_pool
    from cpqs_bench.selectors.cpqs import pairs as P

    cfg = load_config(config, list(overrides))
    cq = cfg.selectors.cpqs
    pool_examples = None
    if cq.pairs_source == "generate":
        pool = read_pool(data or cq.pairs or cfg.data.pool, schema=cfg.data.schema, field_map=cfg.data.field_map,
                         mirror=cfg.data.mirror, limit=cfg.data.pool_limit,
                         max_rejected_fraction=cfg.data.max_rejected_fraction)
        pool_examples = pool.examples
        negatives = negatives or cq.negatives or _generate_negatives(cfg, pool, progress)
    pairset = P.build(cq, mirror=cfg.data.mirror, pool_examples=pool_examples, negatives_path=negatives,
                      exclude=P.parse_exclude(exclude))
    model, tok, info = models.load(cfg.model.id, revision=cfg.model.revision, dtype=cfg.model.dtype,
                                   device=cfg.model.device)
    spec = feats.FeatureSpec(cfg.prompt.template, cq.layers, min(cq.feature_max_length, cfg.prompt.max_length),
                             cfg.prompt.system_prompt, cfg.prompt.train_eot)
    inputs = {"cpqs": to_dict(cfg)["selectors"]["cpqs"], "model": {"spec": info.spec, "revision": info.revision,
              "dtype": info.dtype}, "features": spec.as_dict(), "pairs": pairset.summary(),
              "pair_ids": stable_hash(sorted(x.example.content_key() for x in pairset.items), 16)}
    if out is not None:
        out_dir = Path(out)
        stage = None
    else:
        stage = rundir.stage(cfg.experiment.output_dir, cfg.experiment.name, "train-selector", inputs).begin()
        out_dir = stage.path
        if stage.done:
            return {"checkpoint": str(out_dir), **read_json(out_dir / "metrics.json")}
    metrics = train_selector(model, tok, {"spec": info.spec, "revision": info.revision}, pairset, cq, spec, out_dir,
                             progress=progress)
    if stage is not None:
        stage.finish(metrics={"val": metrics["val"]}, model=asdict(info))
    return {"checkpoint": str(out_dir), **metrics}


def _generate_negatives(cfg: Any, pool: Any, progress: bool) -> str:
    """pairs_source=generate without a negatives file: answer the pool with ``selectors.cpqs.generator`` into its
    own (resumable) run directory, keyed by pool, generator and generation settings."""
    from cpqs_bench import models, rundir
    from cpqs_bench.data.negatives import make_negatives

    cq = cfg.selectors.cpqs
    inputs = {"pool": pool.summary(), "ids": stable_hash([ex.id for ex in pool.examples], 16),
              "generator": cq.generator, "template": cfg.prompt.template, "system_prompt": cfg.prompt.system_prompt,
              "max_new_tokens": cq.generation_max_new_tokens}
    stage = rundir.stage(cfg.experiment.output_dir, cfg.experiment.name, "negatives", inputs).begin()
    out = stage.file("negatives.jsonl")
    if not stage.done:
        gen, gtok, ginfo = models.load(cq.generator, dtype=cfg.model.dtype, device=cfg.model.device)
        summary = make_negatives(pool.examples, gen, gtok, out, generator=f"{ginfo.spec}@{ginfo.revision}",
                                 template=cfg.prompt.template, system_prompt=cfg.prompt.system_prompt,
                                 max_new_tokens=cq.generation_max_new_tokens, batch_size=cq.generation_batch_size,
                                 progress=progress)
        stage.finish(summary=summary)
    return str(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="smoke", help="preset name or YAML path")
    p.add_argument("--out", default=None, help="checkpoint directory (default: the run directory)")
    p.add_argument("--data", default=None, help="pool whose instructions were answered (pairs_source=generate)")
    p.add_argument("--negatives", default=None, help="make-negatives output (pairs_source=generate)")
    p.add_argument("--exclude", action="append", default=[], metavar="FIELD=VALUE",
                   help="drop paired-file rows with FIELD=VALUE (repeatable), e.g. gpt4_from=nuggets_alpaca_gpt4_bad")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. selectors.cpqs.epochs=2")


def run_cli(args: argparse.Namespace) -> int:
    result = main(args.config, args.overrides, out=args.out, data=args.data, negatives=args.negatives,
                  exclude=args.exclude, progress=not args.no_progress)
    print(json.dumps({"checkpoint": result["checkpoint"], "val": result["val"]}))
    return 0
