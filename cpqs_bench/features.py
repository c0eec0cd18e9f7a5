"""Per-layer hidden states of an LLM over the *response span* of each example, batched and streamed.

CPQS (and anything else that reads an LLM's internal states) needs, for every example, a ``(T_resp, L, H)`` tensor:
the hidden states of the selected layers over the response tokens only. This module produces them fast:

* the token span comes from :func:`cpqs_bench.prompts.render` (the one prompt function), so features, IFD and SFT
  labels agree on what "the response" is — or, with ``FeatureSpec.span="reference"``
  (``selectors.cpqs.feature_span``), from :func:`cpqs_bench.prompts.render_reference`, the CPQS reference's own
  rendering (ChatML: the full dialog with ``add_generation_prompt=True``, every token after the prompt; Llama:
  ``"<s> [INST] {q} [/INST] {a} </s>"`` with the tokenizer's BOS);
* examples are rendered, then sorted by length inside a bounded *window* (length bucketing: batches hold similar
  lengths, little padding), right-padded with an attention mask, run through the backbone only (no LM head: the
  ``vocab x hidden`` projection is wasted work here), and each row's response span is sliced out;
* only the requested layers are kept. Two capture methods exist, both giving exactly the tensors
  ``output_hidden_states`` defines (index 0 = input of block 0, index i = output of block i-1, last index = the
  final-norm output): ``"hooks"`` registers forward hooks on the needed blocks and stops the forward after the
  deepest one (a front-third selection skips two thirds of the compute), ``"hidden_states"`` asks transformers for
  the selected indices. ``benchmarks/bench_cpqs.py`` measures both (figures: ``docs/performance.md``): with every
  layer selected ``hidden_states`` is the faster one, while hooks skip the blocks after the deepest selected one.
  ``"auto"`` (the default) therefore uses ``hidden_states`` when the final layer is needed and hooks otherwise;
* memory is bounded by the window, not by the pool: the input is consumed lazily and results are yielded as soon
  as their window is done.

:class:`FeatureCache` stores features as safetensors shards (atomic writes, a size cap), keyed by everything that
determines them, so CNN epochs and sweeps do not re-run the LLM.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Sequence

import torch

from cpqs_bench import prompts
from cpqs_bench.data.example import Example
from cpqs_bench.io import read_json, stable_hash, write_bytes, write_json

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Method = Literal["auto", "hooks", "hidden_states"]
LAYER_CHOICES = ("all", "last", "front", "middle", "back")


class FeatureError(ValueError):
    pass


# ------------------------------------------------------------------------------------------------- layer selection
def resolve_layers(spec: str | Sequence[int], num_blocks: int) -> list[int]:
    """Hidden-state indices for a layer spec; ``num_blocks`` transformer blocks give ``num_blocks + 1`` channels.

    ``all`` = every index (embedding output + every block, the CPQS default); ``last`` = the final one;
    ``front``/``middle``/``back`` = the first/middle/last third of all channels as the reference cuts them
    (``third = channels // 3``, the back third takes the remainder); ``"0,4,8"`` = explicit indices
    (negative ones count from the end, as in ``output_hidden_states``).
    """
    n = num_blocks + 1
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s == "all":
            return list(range(n))
        if s == "last":
            return [n - 1]
        if s in ("front", "middle", "back"):
            # the reference's rule (train_cnn.py / predict.py select_hidden_states): third = total // 3, the back
            # third takes the remainder (29 channels: 9 / 9 / 11; 31: 10 / 10 / 11)
            third = n // 3
            bounds = {"front": (0, third), "middle": (third, 2 * third), "back": (2 * third, n)}[s]
            if bounds[0] >= bounds[1]:
                raise FeatureError(f"layers={spec!r}: a model with {n} hidden states has no {s} third")
            return list(range(*bounds))
        try:
            items = [int(x) for x in s.split(",") if x.strip()]
        except ValueError:
            raise FeatureError(
                f"layers={spec!r}: expected one of {', '.join(LAYER_CHOICES)} or a comma list of integers like '0,4,8'"
            ) from None
    else:
        items = [int(x) for x in spec]
    if not items:
        raise FeatureError(f"layers={spec!r} selects no layer")
    out = []
    for i in items:
        if not -n <= i < n:
            raise FeatureError(f"layer index {i} out of range for a model with {num_blocks} blocks ({n} hidden states)")
        out.append(i % n)
    if len(set(out)) != len(out):
        raise FeatureError(f"layers={spec!r} repeats an index")
    return sorted(out)


# ------------------------------------------------------------------------------------------------------ backbone
def backbone(model: PreTrainedModel) -> torch.nn.Module:
    """The base transformer of a causal LM (no LM head); a base model is returned as is."""
    for getter in ("get_decoder",):
        fn = getattr(model, getter, None)
        if callable(fn):
            try:
                dec = fn()
            except (AttributeError, NotImplementedError):
                dec = None
            if dec is not None and dec is not model:
                return dec
    base_prefix = getattr(model, "base_model_prefix", None)
    if base_prefix and hasattr(model, base_prefix):
        return getattr(model, base_prefix)
    return model


def _blocks(base: torch.nn.Module, num_blocks: int) -> torch.nn.ModuleList:
    """The ModuleList of transformer blocks (``layers`` for Llama-likes, ``h`` for GPT-2, ...)."""
    for name in ("layers", "h", "blocks", "block"):
        mod = getattr(base, name, None)
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == num_blocks:
            return mod
    for mod in base.children():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == num_blocks:
            return mod
    raise FeatureError(
        f"cannot find the {num_blocks} transformer blocks of {type(base).__name__}; use method='hidden_states'"
    )


def num_blocks(model: PreTrainedModel) -> int:
    cfg = model.config
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(getattr(cfg, key, None), int):
            return getattr(cfg, key)
    raise FeatureError(f"{type(model).__name__}.config has no num_hidden_layers")


class _StopForward(Exception):
    """Raised by a hook after the deepest needed block: the rest of the forward is not needed."""


def _capture_hooks(
    base: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, layers: list[int], n_blocks: int
) -> list[torch.Tensor]:
    """Selected hidden states via forward hooks, stopping after the deepest needed block."""
    blocks = _blocks(base, n_blocks)
    captured: dict[int, torch.Tensor] = {}
    wanted = set(layers)
    need_final = n_blocks in wanted
    deepest_block = n_blocks - 1 if need_final else max(layers) - 1  # block whose output is the deepest need
    handles = []

    def pre_hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured[0] = args[0]
        if deepest_block < 0:
            raise _StopForward

    def make_hook(i: int):
        def hook(
            _module: torch.nn.Module, _args: tuple[object, ...], output: torch.Tensor | tuple[torch.Tensor, ...]
        ) -> None:
            if i + 1 in wanted and i + 1 < n_blocks:
                captured[i + 1] = output[0] if isinstance(output, tuple) else output
            if i == deepest_block and not need_final:
                raise _StopForward

        return hook

    if 0 in wanted or deepest_block < 0:
        handles.append(blocks[0].register_forward_pre_hook(pre_hook))
    for i in range(max(deepest_block, 0) + 1):
        handles.append(blocks[i].register_forward_hook(make_hook(i)))
    try:
        out = base(input_ids=ids, attention_mask=mask, use_cache=False)
        captured[n_blocks] = out.last_hidden_state if need_final else None
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    return [captured[i] for i in layers]


def selective_hidden_states() -> bool:
    """Whether this transformers reads a *list* ``output_hidden_states`` as hidden-state indices with the initial
    state at index 0 (``utils/output_capturing.py: resolve_hidden_states_indices``, transformers 5.2x). Transformers
    5.17 (the GPU image's) also takes a list but numbers it differently — block outputs only, no initial state, so
    index ``n_blocks`` is out of range (seen on the H200 check). Where the numbering is not the one this module
    uses, every hidden state is asked for (``True``) and the selected ones are indexed here."""
    try:
        from transformers.utils import output_capturing
    except ImportError:
        return False
    return hasattr(output_capturing, "resolve_hidden_states_indices")


def _capture_hidden_states(
    base: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, layers: list[int], n_blocks: int
) -> list[torch.Tensor]:
    selective = selective_hidden_states() and len(set(layers)) < n_blocks + 1
    out = base(
        input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=list(layers) if selective else True
    )
    hs = out.hidden_states
    if not selective and len(hs) != n_blocks + 1:
        raise FeatureError(
            f"{type(base).__name__} returned {len(hs)} hidden states for {n_blocks} blocks (expected blocks + 1)"
        )
    return [hs[i] for i in layers]


# ------------------------------------------------------------------------------------------------------- extraction
@dataclass
class ExtractStats:
    """What happened to the examples: kept, truncated and dropped by the length policy, tokens processed."""

    lengths: prompts.LengthStats = field(default_factory=prompts.LengthStats)
    batches: int = 0
    tokens: int = 0
    padded_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.lengths.as_dict(),
            "batches": self.batches,
            "tokens": self.tokens,
            "padded_tokens": self.padded_tokens,
        }


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that determines a feature tensor besides the model weights and the example itself."""

    template: str = "chat"
    layers: str = "all"
    max_length: int = 2048
    system_prompt: str | None = None
    train_eot: bool = True
    # "response": the answer span of prompts.render under `template`; "reference": the CPQS reference's rendering
    # (prompts.render_reference; style from `template`: chat -> chatml, else llama), question per question_format
    span: str = "response"
    question_format: str = "project"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "template": self.template,
            "layers": self.layers,
            "max_length": self.max_length,
            "system_prompt": self.system_prompt,
            "train_eot": self.train_eot,
        }
        # only when not the default, so the cache keys of response-span features stay what they were
        if self.span != "response":
            out["span"] = self.span
        if self.question_format != "project":
            out["question_format"] = self.question_format
        return out


@dataclass(frozen=True)
class ExtractOptions:
    """How features are computed, never which ones (that is the :class:`FeatureSpec` and the weights):
    ``batch_size`` examples per forward pass, ``window`` examples rendered and length-sorted together (default
    ``16 * batch_size``), how hidden states are taken (:data:`Method`) and the dtype they are handed back in
    (``out_dtype``; None: the model's)."""

    batch_size: int = 8
    window: int | None = None
    method: Method = "auto"
    out_dtype: torch.dtype | None = None


def _render(
    tokenizer: PreTrainedTokenizerBase, ex: Example, spec: FeatureSpec, stats: ExtractStats
) -> prompts.Rendered | None:
    if spec.span == "reference":
        return prompts.render_reference(
            tokenizer,
            ex,
            prompts.reference_style(spec.template),
            question_format=spec.question_format,
            system_prompt=spec.system_prompt,
            max_length=spec.max_length,
            stats=stats.lengths,
        )
    if spec.span != "response":
        raise FeatureError(f"feature span must be 'response' or 'reference', got {spec.span!r}")
    if spec.question_format != "project":
        raise FeatureError("question_format=reference renders the scored questions only with feature_span=reference")
    return prompts.render(
        tokenizer,
        ex,
        spec.template,
        system_prompt=spec.system_prompt,
        train_eot=spec.train_eot,
        max_length=spec.max_length,
        overflow="truncate",
        stats=stats.lengths,
    )


def _fit_context(model: PreTrainedModel, spec: FeatureSpec) -> FeatureSpec:
    """Cap ``max_length`` at the model's context: a longer sequence would crash models with absolute position
    embeddings (index out of range) and is out of distribution for the others. The cap depends only on the model,
    which the cache key already covers, so cached features stay consistent."""
    from dataclasses import replace

    from cpqs_bench.models import model_max_length

    limit = model_max_length(model)
    return replace(spec, max_length=limit) if limit is not None and spec.max_length > limit else spec


def _windows(examples: Iterable[Example], size: int) -> Iterator[list[Example]]:
    """Consecutive lists of ``size`` examples: the unit of length bucketing, and what bounds memory."""
    it = iter(examples)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


@torch.no_grad()
def _forward_batch(
    base: torch.nn.Module,
    rendered: list[prompts.Rendered],
    layers: list[int],
    n_blocks: int,
    pad_id: int,
    method: Method,
    out_dtype: torch.dtype | None,
) -> list[torch.Tensor]:
    """Right-padded forward of one batch; returns each row's ``(T_resp, L, H)`` response slice (contiguous)."""
    device = next(base.parameters()).device
    ids, mask = prompts.right_pad([r.input_ids for r in rendered], pad_id)
    ids, mask = ids.to(device), mask.to(device)
    if method == "auto":
        method = "hidden_states" if n_blocks in layers else "hooks"
    if method == "hooks":
        states = _capture_hooks(base, ids, mask, layers, n_blocks)
    elif method == "hidden_states":
        states = _capture_hidden_states(base, ids, mask, layers, n_blocks)
    else:
        raise FeatureError(f"unknown capture method {method!r}; use 'hooks' or 'hidden_states'")
    out = []
    for row, r in enumerate(rendered):
        per_layer = [s[row, r.response_start : r.response_end] for s in states]  # each (T_resp, H)
        feat = torch.stack(per_layer, dim=1)  # (T_resp, L, H), a fresh tensor: the batch can be freed
        if out_dtype is not None:
            feat = feat.to(out_dtype)
        out.append(feat.cpu() if feat.device.type != "cpu" else feat)
    return out


@dataclass
class FeatureBatch:
    """One forward pass worth of results: ids and per-row features in bucketed (length-sorted) order."""

    ids: list[str]
    features: list[torch.Tensor]
    n_tokens: list[int]  # full sequence length (prompt + response) per row


def iter_batches(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Iterable[Example],
    spec: FeatureSpec = FeatureSpec(),
    options: ExtractOptions = ExtractOptions(),
    *,
    stats: ExtractStats | None = None,
    dropped: list[tuple[str, str]] | None = None,
) -> Iterator[FeatureBatch]:
    """Stream feature batches in length-bucketed order (fastest; consumers keyed by id need nothing more).

    ``options.window`` examples (default ``16 * batch_size``) are rendered and sorted by length together, so memory
    is bounded by one window. Examples the length policy drops are appended to ``dropped`` as ``(id, reason)``.
    """
    batch_size, window, method, out_dtype = options.batch_size, options.window, options.method, options.out_dtype
    if batch_size < 1:
        raise FeatureError(f"batch_size must be >= 1, got {batch_size}")
    stats = stats if stats is not None else ExtractStats()
    spec = _fit_context(model, spec)
    n_blocks = num_blocks(model)
    layers = resolve_layers(spec.layers, n_blocks)
    base = backbone(model)
    pad_id = prompts.pad_token_id(tokenizer)
    for chunk in _windows(examples, window or 16 * batch_size):
        items: list[tuple[str, prompts.Rendered]] = []
        for ex in chunk:
            before = stats.lengths.as_dict()
            r = _render(tokenizer, ex, spec, stats)
            if r is None:
                after = stats.lengths.as_dict()
                reason = next((k for k in after if after[k] != before[k]), "dropped")
                if dropped is not None:
                    dropped.append((ex.id, reason))
                continue
            items.append((ex.id, r))
        items.sort(key=lambda item: len(item[1].input_ids))
        for start in range(0, len(items), batch_size):
            group = items[start : start + batch_size]
            rendered = [r for _, r in group]
            feats = _forward_batch(base, rendered, layers, n_blocks, pad_id, method, out_dtype)
            width = max(len(r.input_ids) for r in rendered)
            stats.batches += 1
            stats.tokens += sum(len(r.input_ids) for r in rendered)
            stats.padded_tokens += width * len(rendered)
            yield FeatureBatch([i for i, _ in group], feats, [len(r.input_ids) for r in rendered])


def extract(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Iterable[Example],
    spec: FeatureSpec = FeatureSpec(),
    options: ExtractOptions = ExtractOptions(),
    *,
    stats: ExtractStats | None = None,
) -> Iterator[tuple[str, torch.Tensor | None]]:
    """Yield ``(id, features (T_resp, L, H))`` in input order; ``None`` features for examples the length policy
    dropped (reason counted in ``stats``). Streams window by window. ``spec``: template, layers, length policy (the
    defaults: the chat template, every layer, 2048 tokens); ``options``: batch size, window, method, dtype."""
    window = options.window or 16 * options.batch_size
    for chunk in _windows(examples, window):
        got: dict[str, torch.Tensor] = {}
        for batch in iter_batches(model, tokenizer, chunk, spec, replace(options, window=window), stats=stats):
            got.update(zip(batch.ids, batch.features))
        for ex in chunk:
            yield ex.id, got.pop(ex.id, None)


# ------------------------------------------------------------------------------------------------------ cache
def model_identity(model: PreTrainedModel, revision: str | None) -> dict[str, Any]:
    """What identifies the weights for caching: the declared revision, else a digest of the config."""
    cfg = model.config.to_dict() if hasattr(model.config, "to_dict") else {}
    cfg = {k: v for k, v in cfg.items() if k not in ("_name_or_path", "transformers_version", "torch_dtype", "dtype")}
    return {"revision": revision, "config": stable_hash(cfg, 16), "dtype": str(next(model.parameters()).dtype)}


def cache_code() -> dict[str, object]:
    """The code record (:func:`cpqs_bench.code_version.code_version`) of this module and what it imports: part of
    :class:`FeatureCache`'s key."""
    from cpqs_bench.code_version import code_version

    return code_version([__name__])


class FeatureCache:
    """Feature tensors on disk as safetensors shards under ``root/<key>/``, with an index and a size cap.

    The key hashes the model identity (revision), the :class:`FeatureSpec` and the code that computes the features
    (:func:`cache_code`: this module's import closure), so a changed extraction never reads an older one's tensors
    from the user-level cache; tensors are stored per example
    *content* hash (prompt + response), so any data subset reuses what is there and changed data never hits a
    stale entry. Shards and the index are written atomically (a crash loses at most the shard being written).
    A shard that would push the cache past its cap is not written: ``put`` returns False and sets ``full``, and
    :func:`cached_features` turns that into a clear error naming the knob to turn.
    """

    INDEX = "index.json"

    def __init__(self, root: str | Path, model_id: dict[str, Any], spec: FeatureSpec, max_gb: float = 20.0):
        self.key = stable_hash({"model": model_id, "spec": spec.as_dict(), "format": 1, "code": cache_code()}, 16)
        self.path = Path(root) / self.key
        self.max_bytes = int(max_gb * (1 << 30))
        self.full = False
        self.path.mkdir(parents=True, exist_ok=True)
        meta = self.path / "key.json"
        if not meta.exists():
            write_json(meta, {"model": model_id, "spec": spec.as_dict()})
        index_file = self.path / self.INDEX
        self._index: dict[str, str] = read_json(index_file) if index_file.exists() else {}

    def __contains__(self, content_key: str) -> bool:
        return content_key in self._index

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.glob("shard-*.safetensors"))

    def put(self, tensors: dict[str, torch.Tensor]) -> bool:
        """Write one shard (content key -> tensor); False (and ``full``) when the cap forbids it."""
        from safetensors.torch import save

        new = {k: v.contiguous() for k, v in tensors.items() if k not in self._index}
        if not new:
            return True
        blob = save(new)
        if self.size_bytes() + len(blob) > self.max_bytes:
            self.full = True
            return False
        name = f"shard-{stable_hash(sorted(new), 16)}.safetensors"
        write_bytes(self.path / name, blob)
        self._index.update({k: name for k in new})
        write_json(self.path / self.INDEX, self._index)
        return True

    def get_many(self, content_keys: Sequence[str]) -> dict[str, torch.Tensor]:
        """Load the given keys (those present), one shard open per shard touched."""
        from safetensors import safe_open

        by_shard: dict[str, list[str]] = {}
        for k in content_keys:
            if k in self._index:
                by_shard.setdefault(self._index[k], []).append(k)
        out = {}
        for shard, keys in by_shard.items():
            with safe_open(str(self.path / shard), framework="pt") as fh:
                for k in keys:
                    out[k] = fh.get_tensor(k)
        return out


def cached_features(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    spec: FeatureSpec,
    cache: FeatureCache | None,
    options: ExtractOptions = ExtractOptions(),
    *,
    stats: ExtractStats | None = None,
    dropped: list[tuple[str, str]] | None = None,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Make sure every example's features are in ``cache`` (computing the missing ones); returns how many were
    computed. ``progress`` is an optional callable ``advance(n)``."""
    if cache is None:
        raise FeatureError("cached_features needs a FeatureCache")
    todo = [ex for ex in examples if ex.content_key() not in cache]
    if progress is not None and len(examples) > len(todo):
        progress(len(examples) - len(todo))
    key_of = {ex.id: ex.content_key() for ex in todo}
    computed = 0
    pending: dict[str, torch.Tensor] = {}
    pending_bytes = 0
    shard_bytes = 256 << 20
    for batch in iter_batches(model, tokenizer, todo, spec, options, stats=stats, dropped=dropped):
        for ex_id, feat in zip(batch.ids, batch.features):
            pending[key_of[ex_id]] = feat
            pending_bytes += feat.numel() * feat.element_size()
        computed += len(batch.ids)
        if progress is not None:
            progress(len(batch.ids))
        if pending_bytes >= shard_bytes:
            if not cache.put(pending):
                raise FeatureError(
                    f"feature cache {cache.path} is full (cap {cache.max_bytes / (1 << 30):.1f} GB); "
                    "raise selectors.cpqs.feature_cache_max_gb, lower feature_max_length or use fewer "
                    "layers"
                )
            pending, pending_bytes = {}, 0
    if pending and not cache.put(pending):
        raise FeatureError(
            f"feature cache {cache.path} is full (cap {cache.max_bytes / (1 << 30):.1f} GB); raise "
            "selectors.cpqs.feature_cache_max_gb, lower feature_max_length or use fewer layers"
        )
    return computed


def default_cache_root() -> Path:
    return Path(os.environ.get("CPQS_CACHE") or Path.home() / ".cache" / "cpqs-bench") / "features"


def describe(stats: ExtractStats) -> str:
    return json.dumps(stats.as_dict())
