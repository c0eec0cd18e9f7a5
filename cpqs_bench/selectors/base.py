"""The selector contract: score a pool, one row per example id; higher score = keep.

A selector is any class with a ``name``, a ``needs`` declaration and a ``score`` method (a Protocol, no base class
to inherit). It never selects: :mod:`cpqs_bench.select` turns scores into a kept/dropped list for every selector the
same way. A row may carry ``exclude`` (a reason such as ``"ifd>=1"``): the example is scored but not eligible.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

from cpqs_bench.data.example import Example

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cpqs_bench.config import Config, ModelConfig, PromptConfig
    from cpqs_bench.models import ModelInfo


class Needs(str, Enum):
    NOTHING = "nothing"
    TARGET_MODEL = "target_model"
    PROXY_MODEL = "proxy_model"
    CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class ScoreRow:
    id: str
    score: float
    n_tokens: int
    exclude: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        row = {"id": self.id, "score": self.score, "n_tokens": self.n_tokens}
        if self.exclude is not None:
            row["exclude"] = self.exclude
        row.update(self.extra)
        return row


class ModelLoader(Protocol):
    """``(spec, revision, dtype) -> (model, tokenizer, info)``: :func:`cpqs_bench.models.load`, a
    :class:`cpqs_bench.model_cache.ModelCache`, or a test's stand-in (:func:`cpqs_bench.testing.tiny_loader`)."""

    def __call__(
        self, spec: str, revision: str | None, dtype: str
    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]: ...


@dataclass
class ScoringContext:
    """What a selector may use. Models load lazily and are shared between selectors of one run."""

    config: Config
    workdir: Path  # resumable per-selector scratch (shards); created by the caller
    seed: int = 0
    checkpoint: Path | None = None  # trained selector checkpoint (Needs.CHECKPOINT)
    loader: ModelLoader | None = None
    # scratch shared by all selectors of one run (e.g. the IFD losses that ``ifd``, ``ifd_ppl`` and ``perplexity``
    # all read); None = this selector's own ``workdir``. Callers that score several selectors set it once.
    shared_workdir: Path | None = None
    # (spec, revision) -> (sequence-classification model, tokenizer): reward models (mods); None = transformers
    # ``AutoModelForSequenceClassification`` on ``model.device``. The contract kit passes a tiny stand-in.
    reward_loader: Callable[[str, str | None], tuple[PreTrainedModel, PreTrainedTokenizerBase]] | None = None
    # (spec, revision, dtype) -> (model, tokenizer, info); reward models share it under a prefixed spec, info None
    _cache: dict[
        tuple[str, str | None, str | None], tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo | None]
    ] = field(default_factory=dict)
    _tokenizers: dict[tuple[str, str, str | None], PreTrainedTokenizerBase] = field(default_factory=dict)

    def model(
        self, spec: str | None = None, revision: str | None = None, dtype: str | None = None
    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo | None]:
        spec = spec or self.config.model.id
        revision = revision if spec != self.config.model.id else (revision or self.config.model.revision)
        key = (spec, revision, dtype)
        if key not in self._cache:
            load = self.loader or _default_loader(self.config.model)
            self._cache[key] = load(spec, revision, dtype or self.config.model.dtype)
        return self._cache[key]

    def shared(self, kind: str) -> Path:
        """A scratch folder for artifacts several selectors reuse (``kind`` names them, e.g. ``"ifd"``)."""
        root = Path(self.shared_workdir) / kind if self.shared_workdir is not None else Path(self.workdir)
        root.mkdir(parents=True, exist_ok=True)
        return root

    def tokenizer(self, spec: str | None = None, revision: str | None = None) -> PreTrainedTokenizerBase:
        """The tokenizer of ``spec`` without loading weights (unless a custom loader or a loaded model provides it).

        Cheap selectors (``longest``, ``random``) count tokens with the target tokenizer but need no model.
        """
        spec = spec or self.config.model.id
        for (cached_spec, _, _), (_, tok, _) in self._cache.items():
            if cached_spec == spec:
                return tok
        if self.loader is not None:  # tests / custom loaders: the loader is the only source of truth
            return self.model(spec, revision)[1]
        key = ("tokenizer", spec, revision)
        if key not in self._tokenizers:
            from cpqs_bench import models

            rev = revision if spec != self.config.model.id else (revision or self.config.model.revision)
            self._tokenizers[key] = models.load_tokenizer(spec, rev)
        return self._tokenizers[key]


def _default_loader(model: ModelConfig) -> ModelLoader:
    return functools.partial(_load, device=model.device)


def _load(
    spec: str, revision: str | None, dtype: str, device: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
    from cpqs_bench import models

    return models.load(spec, revision=revision, dtype=dtype, device=device)


EMPTY_RESPONSE = "empty_response"


def is_empty_response(example: Example) -> bool:
    """The data policy: an empty/whitespace response is never eligible (the pool reader quarantines such records;
    a selector handed one anyway still returns its row, with ``exclude=EMPTY_RESPONSE``, so no id is lost)."""
    return not example.response.strip()


def response_tokens(tokenizer: PreTrainedTokenizerBase, example: Example, prompt: PromptConfig) -> tuple[int, ...]:
    """The response's token ids under the configured template (prompt layer; no end-of-turn token, no truncation,
    so "length" means the same tokens IFD and SFT see); empty for an empty response."""
    from cpqs_bench import prompts

    rendered = prompts.render(
        tokenizer,
        example,
        prompt.template,
        system_prompt=prompt.system_prompt,
        train_eot=False,
        max_length=None,
    )
    return () if rendered is None else rendered.response_ids


def token_score_rows(
    examples: Sequence[Example], ctx: ScoringContext, score: Callable[[Example, tuple[int, ...]], float]
) -> list[ScoreRow]:
    """Rows for selectors that need only the tokenizer: ``score(example, response token ids)`` per example, the
    token count as ``n_tokens``, and the empty-response policy applied the same way for all of them."""
    tok = ctx.tokenizer()
    rows = []
    for ex in examples:
        ids = response_tokens(tok, ex, ctx.config.prompt)
        rows.append(
            ScoreRow(ex.id, score(ex, ids), len(ids), exclude=EMPTY_RESPONSE if is_empty_response(ex) else None)
        )
    return rows


@runtime_checkable
class Selector(Protocol):
    name: str
    needs: Needs

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        """One row per example, in the input order; deterministic given ``ctx.seed``."""
        ...
