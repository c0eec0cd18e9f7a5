"""``cpqs``: score = P(good answer) of a trained CPQS TextCNN over the target model's response hidden states.

Everything the features depend on (layers, template, system prompt, max length) is read from the checkpoint's
``selector.json``, never from flags, and the target model loaded for scoring must be the backbone the selector was
trained on (spec/revision and config digest); a mismatch is an error naming both, because hidden states of another
model are meaningless to the CNN. The features must also come in the dtype the CNN was trained on
(``feature_dtype``): a float32 target model scoring a selector trained on bfloat16 features is refused; and the
recorded ``feature_span`` / ``question_format`` must be the configured ones (:func:`check_rendering`). With
``feature_span: reference`` the pool is rendered as the reference renders it (:func:`cpqs_bench.prompts.
render_reference`), its questions in the recorded question format.

Differences from the reference (``predict.py`` of Victory0431/CPQS-Tuning, the original authors' file): batched,
length-bucketed, right-padded forwards (the reference runs one example at a time); the span's tail is cut at
``selectors.cpqs.feature_max_length`` (the reference never cuts); scoring autocast as validated in training (the
reference always fp16 autocast); with ``feature_span: response`` (the default) the span is the project's answer span
(answer + end-of-turn under ``prompt.template``), not the reference's.

Scoring runs under the autocast the training validated under (``selector.json`` ``autocast``, re-derived for the
scoring device), so held-out metrics describe the scores that are written. The work directory's key includes the
hash of the checkpoint's weights: a retrained selector in the same directory never reuses old shards.

Scoring is resumable: the examples are cut into fixed chunks, each scored chunk is written atomically as a shard
under ``ctx.workdir``, and a rerun reads finished shards instead of recomputing them. Chunk boundaries and the
bucketing inside a chunk are deterministic, so an interrupted and resumed run gives the same scores as one
uninterrupted run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from cpqs_bench import features as feats
from cpqs_bench.data.example import Example
from cpqs_bench.io import read_jsonl, stable_hash, write_jsonl
from cpqs_bench.selectors.base import EMPTY_RESPONSE, Needs, ScoreRow, ScoringContext, is_empty_response
from cpqs_bench.selectors.cpqs.checkpoint import autocast_dtype, load_checkpoint, read_meta, weights_sha256
from cpqs_bench.selectors.cpqs.textcnn import TextCNN, collate

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cpqs_bench.models import ModelInfo
    from cpqs_bench.selectors.cpqs.config import CPQSConfig

SHARD_SIZE = 256


class BackboneMismatch(ValueError):
    pass


def check_backbone(meta: dict[str, Any], info: ModelInfo | None, model: PreTrainedModel, checkpoint: Path) -> None:
    """Refuse to score with a model other than the one the selector was trained on."""
    want = meta["backbone"]
    have_digest = feats.model_identity(model, getattr(info, "revision", None))["config"]
    same_rev = want.get("revision") == getattr(info, "revision", None)
    same_cfg = want.get("config_digest") == have_digest
    if not (same_rev and same_cfg):
        raise BackboneMismatch(
            f"CPQS selector {checkpoint} was trained on backbone {want.get('spec')!r} (revision "
            f"{want.get('revision')!r}, config {want.get('config_digest')}), but the target model is "
            f"{getattr(info, 'spec', '?')!r} (revision {getattr(info, 'revision', None)!r}, config {have_digest}); "
            "score with the model the selector was trained on (model.id / model.revision) or train a new selector"
        )


def check_feature_dtype(meta: dict[str, Any], model: PreTrainedModel, checkpoint: Path) -> None:
    """Refuse features in another dtype than the training features (the CNN's inputs would differ)."""
    want = meta.get("feature_dtype")
    have = feats.model_identity(model, None)["dtype"]
    if want is not None and want != have:
        raise BackboneMismatch(
            f"CPQS selector {checkpoint} was trained on {want} features, but the target model "
            f"runs in {have}; set model.dtype to match (e.g. model.dtype={want.replace('torch.', '')})"
        )


def spec_from_meta(meta: dict[str, Any]) -> feats.FeatureSpec:
    span = meta.get("feature_span", "response")  # checkpoints before issue #26 are response-span ones
    return feats.FeatureSpec(
        meta["template"],
        meta["layers"],
        int(meta["max_length"]),
        meta.get("system_prompt"),
        bool(meta.get("train_eot", True)),
        span,
        meta.get("question_format", "project") if span == "reference" else "project",
    )


def check_rendering(meta: dict[str, Any], cq: CPQSConfig, checkpoint: Path) -> None:
    """Refuse a checkpoint whose recorded feature span or question format is not the configured one: the CNN
    would score hidden states of another rendering than it learnt (``selectors.cpqs.feature_span`` /
    ``question_format``; a checkpoint without them is a ``response`` / ``project`` one)."""
    have = {
        "feature_span": meta.get("feature_span", "response"),
        "question_format": meta.get("question_format", "project"),
    }
    want = {k: getattr(cq, k, have[k]) for k in have}
    diff = {k: (have[k], want[k]) for k in have if have[k] != want[k]}
    if diff:
        raise BackboneMismatch(
            f"CPQS selector {checkpoint} was trained with "
            + ", ".join(f"{k}={a!r}" for k, (a, _) in diff.items())
            + " but the config says "
            + ", ".join(f"selectors.cpqs.{k}={b!r}" for k, (_, b) in diff.items())
            + "; score with the settings it was trained with or train a new selector"
        )


def score_chunk(
    cnn: TextCNN,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    spec: feats.FeatureSpec,
    batch_size: int,
    method: feats.Method = "auto",
    amp: torch.dtype | None = None,
) -> list[dict[str, Any]]:
    """Rows (id, score, n_tokens[, exclude]) for one chunk, in input order."""
    device = next(cnn.parameters()).device
    dropped: list[tuple[str, str]] = []
    got: dict[str, dict[str, Any]] = {}
    eligible = [ex for ex in examples if not is_empty_response(ex)]
    for batch in feats.iter_batches(
        model, tokenizer, eligible, spec, feats.ExtractOptions(batch_size, method=method), dropped=dropped
    ):
        x, lengths = collate(batch.features)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            probs = cnn.score(x.to(device), lengths.to(device)).tolist()
        for ex_id, p, feat in zip(batch.ids, probs, batch.features):
            got[ex_id] = {"id": ex_id, "score": float(p), "n_tokens": int(feat.shape[0])}
    reasons = dict(dropped)
    rows = []
    for ex in examples:
        if ex.id in got:
            rows.append(got[ex.id])
        else:
            reason = EMPTY_RESPONSE if is_empty_response(ex) else reasons.get(ex.id, "not_scored")
            rows.append({"id": ex.id, "score": None, "n_tokens": 0, "exclude": reason})
    return rows


@dataclass(frozen=True)
class CNNScorer:
    """A trained TextCNN over a backbone's features: ``spec`` is the rendering and layers it was trained on, ``amp``
    the autocast dtype it scores under, ``batch_size`` the feature-extraction batch."""

    cnn: TextCNN
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: feats.FeatureSpec
    batch_size: int
    amp: torch.dtype | None = None

    def resumable(
        self,
        examples: Sequence[Example],
        workdir: Path,
        *,
        shard_size: int = SHARD_SIZE,
        progress: bool = False,
        stop_after: int | None = None,
    ) -> list[dict[str, Any]]:
        """Score chunk by chunk into ``workdir/shard-*.jsonl``; finished shards are reused. ``stop_after`` (shards)
        simulates an interruption in tests (raises ``KeyboardInterrupt``)."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        workdir.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        written = 0
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar:
            task = bar.add_task("cpqs", total=len(examples))
            for i, start in enumerate(range(0, len(examples), shard_size)):
                chunk = examples[start : start + shard_size]
                name = f"shard-{i:05d}-{stable_hash([ex.id + ':' + ex.content_key() for ex in chunk], 12)}.jsonl"
                path = workdir / name
                if path.exists():
                    part = read_jsonl(path)
                else:
                    if stop_after is not None and written >= stop_after:
                        raise KeyboardInterrupt(f"stopped after {written} shards (test hook)")
                    part = score_chunk(
                        self.cnn, self.model, self.tokenizer, chunk, self.spec, self.batch_size, amp=self.amp
                    )
                    write_jsonl(path, part)
                    written += 1
                if [r["id"] for r in part] != [ex.id for ex in chunk]:
                    raise RuntimeError(f"{path}: shard ids do not match the examples (delete the work directory)")
                rows.extend(part)
                bar.advance(task, len(chunk))
        return rows


class CPQSSelector:
    name = "cpqs"
    needs = Needs.CHECKPOINT

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        if ctx.checkpoint is None:
            raise ValueError(
                "the cpqs selector needs a trained checkpoint (--selector DIR from cpqs-bench train-selector)"
            )
        checkpoint = Path(ctx.checkpoint)
        model, tokenizer, info = ctx.model()
        meta = read_meta(checkpoint)
        check_backbone(meta, info, model, checkpoint)
        check_feature_dtype(meta, model, checkpoint)
        check_rendering(meta, ctx.config.selectors.cpqs, checkpoint)
        device = next(model.parameters()).device
        cnn, meta = load_checkpoint(checkpoint, device)
        spec = spec_from_meta(meta)
        mixed = bool((meta.get("training") or {}).get("mixed_precision", False)) and meta.get("autocast") is not None
        amp = autocast_dtype(device, mixed)
        batch_size = ctx.config.selectors.cpqs.extract_batch_size
        key = {"meta": meta, "weights": weights_sha256(checkpoint), "n": len(examples), "autocast": str(amp)}
        workdir = Path(ctx.workdir) / f"cpqs-{stable_hash(key, 12)}"
        torch.manual_seed(ctx.seed)
        rows = CNNScorer(cnn, model, tokenizer, spec, batch_size, amp).resumable(list(examples), workdir)
        return [
            ScoreRow(
                r["id"],
                math.nan if r["score"] is None else float(r["score"]),
                int(r["n_tokens"]),
                exclude=r.get("exclude"),
            )
            for r in rows
        ]
