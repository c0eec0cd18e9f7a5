"""A selection + its pool → tokenised SFT rows whose labels come only from the prompt layer's response span.

Why this module is small: the one place that knows where a response starts and ends is
:func:`cpqs_bench.prompts.render`. Here we only (1) find the selected examples in the pool, (2) render each one and
take ``Rendered.labels()`` verbatim — prompt tokens are -100, the response (+ end-of-turn when
``prompt.train_eot``) is supervised, and whatever a chat template writes after the end-of-turn token is never in the
sequence — and (3) right-pad batches with labels padded by -100. Nothing here re-templates or re-masks.

End-of-turn policy (``prompt.train_eot``, default true): the end-of-turn token (``<|im_end|>`` for ChatML, ``</s>``
for Llama-2 / EOS for plain templates) is supervised so the fine-tuned model learns to stop. A response truncated by
``max_length`` has no end-of-turn token (the answer did not end there).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.io import iter_jsonl_objects
from cpqs_bench.prompts import LengthStats, render, right_pad

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from cpqs_bench.config import PromptConfig
    from cpqs_bench.finetune.config import FinetuneConfig


IGNORE_INDEX = -100


class SelectionFileError(ValueError):
    """The selection file is malformed or names examples the pool does not hold."""


@dataclass
class SFTData:
    """Tokenised rows plus what the manifest needs to say which data this was."""

    rows: list[dict[str, list[int]]]  # {"input_ids", "labels"}; ids and labels have equal length
    ids: list[str]  # example id per row, same order
    stats: LengthStats
    n_selected: int
    dropped_ids: list[str] = field(default_factory=list)  # selected but dropped by the length policy

    @property
    def n_tokens(self) -> int:
        return sum(len(r["input_ids"]) for r in self.rows)

    @property
    def n_supervised(self) -> int:
        return sum(sum(1 for t in r["labels"] if t != IGNORE_INDEX) for r in self.rows)

    def sha256(self) -> str:
        """Hash of exactly what the model trains on (ids, input ids, labels) — changes if the template does."""
        h = hashlib.sha256()
        for ex_id, row in zip(self.ids, self.rows):
            h.update(json.dumps([ex_id, row["input_ids"], row["labels"]], separators=(",", ":")).encode())
            h.update(b"\n")
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        return {
            "selected": self.n_selected,
            "rows": len(self.rows),
            "tokens": self.n_tokens,
            "supervised_tokens": self.n_supervised,
            "dropped": len(self.dropped_ids),
            "length_stats": self.stats.as_dict(),
        }


def read_selection(path: str | Path) -> list[str]:
    """Kept ids of a ``cpqs-bench select`` file (rows ``{"id", "kept", ...}``), in file order; errors name the line."""
    kept: list[str] = []
    seen: set[str] = set()
    try:
        rows = list(iter_jsonl_objects(path))
    except ValueError as exc:
        raise SelectionFileError(str(exc)) from None
    for lineno, row in rows:
        if "id" not in row or not isinstance(row.get("kept"), bool):
            raise SelectionFileError(f"{path}:{lineno}: expected an object with 'id' and boolean 'kept'")
        ex_id = str(row["id"])
        if ex_id in seen:
            raise SelectionFileError(f"{path}:{lineno}: duplicate id {ex_id!r}")
        seen.add(ex_id)
        if row["kept"]:
            kept.append(ex_id)
    if not kept:
        raise SelectionFileError(f"{path}: no kept examples")
    return kept


def pick(examples: Sequence[Example], kept: Iterable[str], selection_name: str = "selection") -> list[Example]:
    """The kept examples in pool order (so arm data order depends only on the seed, not on the selector's ranking)."""
    wanted = set(kept)
    chosen = [ex for ex in examples if ex.id in wanted]
    missing = wanted - {ex.id for ex in chosen}
    if missing:
        sample = ", ".join(sorted(missing)[:5])
        raise SelectionFileError(
            f"{selection_name}: {len(missing)} kept id(s) not in the pool (e.g. {sample}); "
            "was the selection made on a different pool?"
        )
    return chosen


class TokenCache:
    """Rendered rows per (tokenizer, length policy, example content), kept for the life of one process.

    Every arm × seed of an experiment draws from the same pool with the same tokenizer and prompt settings, so each
    example is rendered once per experiment instead of once per arm. The per-example length outcome is cached with
    it, so every arm's :class:`LengthStats` is exactly what a fresh render would count. Keyed by the tokenizer
    object's identity (a reloaded tokenizer gets a fresh table) and the render settings."""

    def __init__(self) -> None:
        self._tables: dict[tuple, tuple[Any, dict[str, tuple[Any, LengthStats]]]] = {}

    def table(
        self, tokenizer: PreTrainedTokenizerBase, settings: tuple[object, ...]
    ) -> dict[str, tuple[Any, LengthStats]]:
        key = (id(tokenizer), settings)
        hit = self._tables.get(key)
        if hit is None or hit[0] is not tokenizer:  # id reuse after the old tokenizer was freed
            hit = (tokenizer, {})
            self._tables[key] = hit
            while len(self._tables) > 4:  # bounded: a process rarely trains with more than one tokenizer
                self._tables.pop(next(iter(self._tables)))
        return hit[1]

    def clear(self) -> None:
        self._tables.clear()


TOKEN_CACHE = TokenCache()


def _merge_stats(total: LengthStats, one: LengthStats) -> None:
    for name in ("kept", "truncated", "dropped_too_long", "dropped_prompt_too_long", "dropped_empty"):
        setattr(total, name, getattr(total, name) + getattr(one, name))
    total.lengths.extend(one.lengths)


def tokenize(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    *,
    template: str,
    system_prompt: str | None,
    train_eot: bool,
    max_length: int | None,
    overflow: Literal["truncate", "drop"],
    cache: TokenCache | None = TOKEN_CACHE,
) -> SFTData:
    """Render every example; labels are ``Rendered.labels()`` unchanged. ``cache`` (default: the process-wide
    :data:`TOKEN_CACHE`) renders each distinct example once per process; ``None`` renders afresh."""
    stats = LengthStats()
    table = cache.table(tokenizer, (template, system_prompt, train_eot, max_length, overflow)) if cache else {}
    rows, ids, dropped = [], [], []
    for ex in examples:
        key = ex.content_key()
        hit = table.get(key)
        if hit is None:
            one = LengthStats()
            r = render(
                tokenizer,
                ex,
                template,
                system_prompt=system_prompt,
                train_eot=train_eot,
                max_length=max_length,
                overflow=overflow,
                stats=one,
            )
            hit = (r, one)
            if cache is not None:
                table[key] = hit
        r, one = hit
        _merge_stats(stats, one)
        if r is None:
            dropped.append(ex.id)
            continue
        rows.append({"input_ids": list(r.input_ids), "labels": r.labels(IGNORE_INDEX)})
        ids.append(ex.id)
    if not rows:
        raise ValueError(
            f"all {len(examples)} selected examples were dropped by the length policy "
            f"(max_length={max_length}, overflow={overflow}): {stats.as_dict()}"
        )
    return SFTData(rows=rows, ids=ids, stats=stats, n_selected=len(examples), dropped_ids=dropped)


def trained_token_counts(
    examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, prompt_cfg: PromptConfig, ft_cfg: FinetuneConfig
) -> dict[str, tuple[int, int]]:
    """``id -> (trained, supervised)`` tokens one epoch of SFT spends on each example, computed by the same
    :func:`tokenize` call that builds the trainer's rows (template and its special tokens, ``finetune.max_length``
    truncation under ``prompt.overflow``, end-of-turn policy; no padding, packing adds none either): ``trained`` =
    the row's input ids, ``supervised`` = its labels that are not -100. An example the length policy drops trains
    nothing: ``(0, 0)``. ``prompt_cfg`` / ``ft_cfg``: the config's ``prompt`` and ``finetune`` sections. The
    trainer also caps ``max_length`` by the model's context (:func:`cpqs_bench.finetune.sft.build_data`); a config
    whose ``finetune.max_length`` exceeds the model's context counts the uncapped rows here."""
    counts: dict[str, tuple[int, int]] = {ex.id: (0, 0) for ex in examples}
    if not examples:
        return counts
    try:
        data = tokenize(
            tokenizer,
            examples,
            template=prompt_cfg.template,
            system_prompt=prompt_cfg.system_prompt,
            train_eot=prompt_cfg.train_eot,
            max_length=ft_cfg.max_length,
            overflow=prompt_cfg.overflow,
        )
    except ValueError as exc:
        if "were dropped by the length policy" not in str(exc):
            raise
        return counts  # every example dropped: none trains a token
    for ex_id, row in zip(data.ids, data.rows):
        counts[ex_id] = (len(row["input_ids"]), sum(1 for t in row["labels"] if t != IGNORE_INDEX))
    return counts


def length_grouped_order(lengths: Sequence[int], group: int, seed: int, epoch: int) -> list[int]:
    """A seeded epoch order in which every run of ``group`` consecutive rows has similar lengths.

    Rows are shuffled (seed, epoch), cut into windows of ``group * 8`` rows, each window is sorted by length and cut
    into groups of ``group`` rows (one micro-batch each); the groups are then shuffled again. So padding inside a
    micro-batch is small, while which rows meet in an optimizer step stays random across epochs and seeds (the
    idea of transformers' ``LengthGroupedSampler``, with a window that also works for arms of a few dozen rows).
    Deterministic in (lengths, group, seed, epoch): a resumed run replays the same order."""
    import random

    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = max(1, group) * 8
    groups: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: -lengths[i])
        groups += [chunk[k : k + group] for k in range(0, len(chunk), group)]
    tail = groups.pop() if groups and len(groups[-1]) < group else None  # a short last group stays last
    rng.shuffle(groups)
    return [i for g in groups + ([tail] if tail else []) for i in g]


class LengthGroupedSampler:
    """``torch`` sampler over :func:`length_grouped_order`; the Trainer calls ``set_epoch`` every epoch."""

    def __init__(self, lengths: Sequence[int], group: int, seed: int) -> None:
        self.lengths, self.group, self.seed, self.epoch = list(lengths), group, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        return iter(length_grouped_order(self.lengths, self.group, self.seed, self.epoch))


def padding_fraction(rows: Sequence[dict[str, list[int]]], order: Sequence[int], batch: int) -> float:
    """Share of padded positions when ``rows`` are batched ``batch`` at a time in ``order`` (right padding)."""
    real = padded = 0
    for k in range(0, len(order), batch):
        lens = [len(rows[i]["input_ids"]) for i in order[k : k + batch]]
        real += sum(lens)
        padded += max(lens) * len(lens)
    return 1.0 - real / padded if padded else 0.0


class RowDataset:
    """Map-style dataset over pre-tokenised rows (a plain sequence: the Trainer has nothing to re-process)."""

    def __init__(self, rows: Sequence[dict[str, list[int]]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]


@dataclass(frozen=True)
class PadCollator:
    """Right-pad ``input_ids`` with ``pad_id`` and ``labels`` with -100; attention mask marks the real tokens."""

    pad_id: int

    def __call__(self, batch: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        ids, mask, labels = right_pad(
            [b["input_ids"] for b in batch], self.pad_id, fill=[b["labels"] for b in batch], fill_pad=IGNORE_INDEX
        )
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# Attention implementations under which transformers keeps packed examples apart given restarting ``position_ids``
# and no attention mask: sdpa / eager / flex build a block-diagonal causal mask from the position ids
# (``masking_utils.find_packed_sequence_indices``), flash-attention runs varlen. Anything else is refused.
PACKING_ATTENTION = frozenset({"sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3"})


@dataclass(frozen=True)
class PackCollator:
    """A micro-batch as one padding-free row: the examples concatenated, ``position_ids`` restarting at 0 for
    each, the first label of each example set to -100 (it would otherwise be predicted from the previous example's
    last token; a causal-LM loss never trains on a row's first token, so the supervised (position → target) pairs
    are exactly those of :class:`PadCollator`). With no attention mask, transformers derives a block-diagonal causal
    mask from the restarting position ids: no example attends to another (see :data:`PACKING_ATTENTION`). The
    attention mask (all ones) stays in the batch only for the Trainer's token counter; the loss path drops it."""

    def __call__(self, batch: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for b in batch:
            n = len(b["input_ids"])
            if len(b["labels"]) != n or n == 0:
                raise ValueError(f"row with {n} input ids and {len(b['labels'])} labels cannot be packed")
            ids += b["input_ids"]
            labels += [IGNORE_INDEX] + list(b["labels"][1:])
            positions += range(n)
        t = lambda x: torch.tensor([x], dtype=torch.long)  # noqa: E731
        return {
            "input_ids": t(ids),
            "labels": t(labels),
            "position_ids": t(positions),
            "attention_mask": torch.ones((1, len(ids)), dtype=torch.long),
        }
