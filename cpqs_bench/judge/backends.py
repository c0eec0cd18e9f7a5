"""Judge backends: a local Hugging Face chat model, or any OpenAI-compatible ``/chat/completions`` endpoint.

Both expose ``complete(conversations) -> list[str]`` (one answer per conversation, input order), an ``identity``
(what the answer cache keys on: backend, model, revision, generation parameters; never a credential), a
human ``label`` and ``weak`` (True for the offline default: the embedded / target model judging, a pipeline check,
not a quality signal). :class:`CachedJudge` wraps either with :class:`cpqs_bench.judge.cache.JudgeCache`.

**Local**: batched greedy generation with left padding (prompt texts from the tokenizer's chat template with the
generation prompt; every row's new tokens start at the input width and are cut at the first stop token), the
scheme of ``cpqs_bench/data/negatives.py: generate_batch``. Conversations are sorted by length (ties by content)
before batching, so the batches, and so the answers, do not depend on the input order.

**OpenAI-compatible**: ``POST {base_url}/chat/completions`` with ``{"model", "messages", "temperature",
"max_tokens"}`` through ``httpx``; the key is read from the environment variable named by ``api_key_env`` at
request time and only ever placed in the ``Authorization`` header (it is in no identity, cache row, error message
or log line). At most ``concurrency`` requests are in flight (a thread pool over one client); 429, 5xx and
transport errors are retried up to ``max_retries`` times, waiting ``Retry-After`` when the server sends it
(capped at 60 s) else ``backoff_s * 2**attempt``. Every request is bounded by ``timeout_s`` (connect, read, write and
pool waits, httpx's timeout); an error message quotes at most 200 characters of the response, scrubbed of the key
(and of every other registered secret) by :func:`cpqs_bench.provenance.scrub`, so an endpoint that echoes the
``Authorization`` header shows ``***``.

**Answers are cached one by one, as they arrive** (issue #34): ``complete(conversations, on_answer=...)`` calls
``on_answer(i, text)`` for each answer as soon as it exists (the OpenAI backend as each request returns, the local
backend after each generated batch); :class:`CachedJudge` stores it in the cache at once. A judge that fails after
3 answers has those 3 cached, and a rerun sends only the rest. On a failure the OpenAI backend starts no new request,
lets the ones in flight finish (caching their answers), then raises the first error.
"""

from __future__ import annotations

import inspect
import os
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from cpqs_bench.io import stable_hash
from cpqs_bench.judge.cache import JudgeCache, key
from cpqs_bench.judge.config import JudgeConfig
from cpqs_bench.provenance import scrub

if TYPE_CHECKING:
    import httpx
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Conversation = Sequence[dict[str, str]]
OnAnswer = Callable[[int, str], None]  # (index in the conversations passed to complete, answer text)
RETRY_STATUS = (429, 500, 502, 503, 504)
WEAK_LABEL = "weak judge: the embedded/target model rates its own kind of text; a pipeline check, not a quality signal"


class JudgeError(RuntimeError):
    pass


class Judge(Protocol):
    @property
    def identity(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def weak(self) -> bool: ...

    def complete(self, conversations: Sequence[Conversation], on_answer: OnAnswer | None = None) -> list[str]: ...


# ------------------------------------------------------------------------------------------------ local
def _stop_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids = {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    for tok in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>", "<end_of_turn>"):
        if tok in vocab:
            ids.add(vocab[tok])
    return sorted(i for i in ids if i is not None)


def prompt_text(tokenizer: PreTrainedTokenizerBase, conversation: Conversation) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in conversation) + "\n\n"


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    on_answer: OnAnswer | None = None,
) -> list[str]:
    """Greedy answers to prompt texts (input order), left-padded batches of similar length; ``on_answer(i, text)``
    after each batch for each of its rows."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (len(encoded[i]), texts[i]))
    stops = _stop_ids(tokenizer)
    device = next(model.parameters()).device
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    out: list[str] = [""] * len(texts)
    for start in range(0, len(order), max(1, batch_size)):
        idx = order[start : start + batch_size]
        rows = [encoded[i] for i in idx]
        if limit is not None:  # keep the tail of an over-long prompt (the question to answer is at its end)
            rows = [r[-(limit - max_new_tokens) :] if len(r) > limit - max_new_tokens else r for r in rows]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[b, width - len(r) :] = 1
        with torch.inference_mode():
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad,
                eos_token_id=stops,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        for b, i in enumerate(idx):
            new = gen[b, width:].tolist()
            cut = next((j for j, t in enumerate(new) if t in stops), None)
            out[i] = tokenizer.decode(new[:cut] if cut is not None else new, skip_special_tokens=True).strip()
        if on_answer is not None:
            for i in idx:
                on_answer(i, out[i])
    return out


@dataclass
class LocalJudge:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: str
    revision: str | None = None
    max_new_tokens: int = 64
    batch_size: int = 8
    weak: bool = False
    weights: str = ""  # what identifies the loaded weights (the loader's info: path, revision, dtype)

    @property
    def identity(self) -> str:
        return f"local:{self.spec}@{self.revision}:{self.weights}:greedy:{self.max_new_tokens}"

    @property
    def label(self) -> str:
        return f"{self.spec} (local{'; ' + WEAK_LABEL if self.weak else ''})"

    def complete(self, conversations: Sequence[Conversation], on_answer: OnAnswer | None = None) -> list[str]:
        texts = [prompt_text(self.tokenizer, c) for c in conversations]
        if not texts:
            return []
        return generate(self.model, self.tokenizer, texts, self.max_new_tokens, self.batch_size, on_answer)


# ------------------------------------------------------------------------------------------------ openai
@dataclass
class OpenAIJudge:
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    max_retries: int = 6
    backoff_s: float = 1.0
    timeout_s: float = 120.0
    max_new_tokens: int = 64
    temperature: float = 0.0
    weak: bool = False
    requests: int = 0
    retries: int = 0

    @property
    def identity(self) -> str:
        return f"openai:{self.base_url.rstrip('/')}:{self.model}:t={self.temperature}:max={self.max_new_tokens}"

    @property
    def label(self) -> str:
        return f"{self.model} via {self.base_url}"

    def _key(self) -> str:
        value = os.environ.get(self.api_key_env)
        if not value:
            raise JudgeError(
                f"judge backend openai needs an API key in the environment variable "
                f"{self.api_key_env!r} (selectors.judge.api_key_env); it is not set"
            )
        return value

    def _one(self, client: httpx.Client, conversation: Conversation) -> str:
        import httpx

        body = {
            "model": self.model,
            "messages": [dict(m) for m in conversation],
            "temperature": self.temperature,
            "max_tokens": self.max_new_tokens,
        }
        url = self.base_url.rstrip("/") + "/chat/completions"
        last = ""
        for attempt in range(self.max_retries + 1):
            self.requests += 1
            try:
                resp = client.post(url, json=body, headers={"Authorization": f"Bearer {self._key()}"})
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}"
                wait = self.backoff_s * 2**attempt
            else:
                if resp.status_code == 200:
                    try:
                        return resp.json()["choices"][0]["message"]["content"] or ""
                    except (ValueError, KeyError, IndexError, TypeError) as exc:
                        raise JudgeError(
                            self._scrub(f"{url}: unexpected response shape ({type(exc).__name__}): {resp.text[:200]!r}")
                        ) from None
                if resp.status_code not in RETRY_STATUS:
                    raise JudgeError(self._scrub(f"{url}: HTTP {resp.status_code}: {resp.text[:200]!r}"))
                last = f"HTTP {resp.status_code}"
                retry_after = resp.headers.get("retry-after")
                try:
                    wait = min(60.0, float(retry_after)) if retry_after is not None else self.backoff_s * 2**attempt
                except ValueError:
                    wait = self.backoff_s * 2**attempt
            if attempt < self.max_retries:
                self.retries += 1
                time.sleep(wait)
        raise JudgeError(self._scrub(f"{url}: gave up after {self.max_retries + 1} attempts (last: {last})"))

    def _scrub(self, text: str) -> str:
        return scrub(text, [os.environ.get(self.api_key_env)])

    def complete(self, conversations: Sequence[Conversation], on_answer: OnAnswer | None = None) -> list[str]:
        import httpx

        if not conversations:
            return []
        self._key()  # fail before any request when the key is missing
        out: list[str | None] = [None] * len(conversations)
        first_error: BaseException | None = None
        with (
            httpx.Client(timeout=self.timeout_s) as client,
            ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool,
        ):
            futures = {pool.submit(self._one, client, c): i for i, c in enumerate(conversations)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in sorted(done, key=futures.__getitem__):  # input order among those finished together
                    if fut.cancelled():
                        continue
                    err = fut.exception()
                    if err is not None:
                        if first_error is None:
                            first_error = err
                            for other in pending:  # start no new request; those in flight finish and are kept
                                other.cancel()
                        continue
                    i = futures[fut]
                    text = fut.result()
                    out[i] = text
                    if on_answer is not None:
                        on_answer(i, text)
                pending = {f for f in pending if not f.cancelled()}
        if first_error is not None:
            raise first_error
        return [str(v) for v in out]


# ------------------------------------------------------------------------------------------------ cache
@dataclass
class CachedJudge:
    """``judge`` with every answer cached; ``hits`` / ``misses`` count this object's lookups."""

    judge: Judge
    cache: JudgeCache | None
    hits: int = 0
    misses: int = 0

    @property
    def identity(self) -> str:
        return self.judge.identity

    @property
    def label(self) -> str:
        return self.judge.label

    @property
    def weak(self) -> bool:
        return self.judge.weak

    def complete(self, conversations: Sequence[Conversation], on_answer: OnAnswer | None = None) -> list[str]:
        cache = self.cache
        if cache is None:
            self.misses += len(conversations)
            return _complete(self.judge, conversations, on_answer)
        keys = [key(self.identity, c) for c in conversations]
        out: list[str | None] = [cache.get(k) for k in keys]
        todo = [i for i, v in enumerate(out) if v is None]
        self.hits += len(conversations) - len(todo)
        self.misses += len(todo)
        if on_answer is not None:
            for i, v in enumerate(out):
                if v is not None:
                    on_answer(i, v)
        stored: set[int] = set()

        def arrived(j: int, text: str) -> None:  # cached the moment it exists: a later failure cannot lose it
            i = todo[j]
            cache.put(keys[i], self.identity, text)
            out[i] = text
            stored.add(i)
            if on_answer is not None:
                on_answer(i, text)

        if todo:
            answers = _complete(self.judge, [conversations[i] for i in todo], arrived)
            for j, (i, text) in enumerate(zip(todo, answers)):
                if i not in stored:  # a judge without on_answer support: cached when the batch returns
                    arrived(j, text)
        return [str(v) for v in out]


def _complete(judge: Judge, conversations: Sequence[Conversation], on_answer: OnAnswer | None) -> list[str]:
    """``judge.complete`` with ``on_answer`` when the judge accepts it (custom judges may not)."""
    try:
        accepts = "on_answer" in inspect.signature(judge.complete).parameters
    except (TypeError, ValueError):
        accepts = False
    return judge.complete(conversations, on_answer=on_answer) if accepts else judge.complete(conversations)


def is_weak(cfg: JudgeConfig, spec: str, target_spec: str) -> bool:
    """The offline default (no judge model named, or the embedded model) is a weak judge."""
    return cfg.backend == "local" and (cfg.model is None or spec in ("embedded", target_spec))


def _weights(info: object) -> str:
    if hasattr(info, "path"):
        return f"{info.path}@{getattr(info, 'revision', None)}:{getattr(info, 'dtype', None)}"
    return stable_hash(repr(info), 16)


def make_judge(
    cfg: JudgeConfig,
    model_fn: Callable[[str, str | None], tuple[Any, Any, Any]] | None = None,
    target_spec: str = "embedded",
    target_revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> CachedJudge:
    """The configured judge, cached. ``model_fn(spec, revision) -> (model, tokenizer, info)`` loads the local
    judge model (pass the run's shared model cache, e.g. ``ScoringContext.model``); answers are cached in
    ``cfg.cache_dir`` or else ``cache_dir`` (the caller's run scratch) or else the user cache."""
    if cfg.backend == "openai":
        if not cfg.base_url or not cfg.model:
            raise JudgeError("judge backend openai needs selectors.judge.base_url and selectors.judge.model")
        judge: Judge = OpenAIJudge(
            cfg.base_url,
            cfg.model,
            cfg.api_key_env,
            cfg.concurrency,
            cfg.max_retries,
            cfg.backoff_s,
            cfg.timeout_s,
            cfg.max_new_tokens,
            cfg.temperature,
        )
    elif cfg.backend == "local":
        spec = cfg.model or target_spec
        revision = cfg.revision if cfg.model else target_revision
        if model_fn is None:
            raise JudgeError("the local judge backend needs a model loader (model_fn)")
        model, tok, info = model_fn(spec, revision)
        judge = LocalJudge(
            model,
            tok,
            spec,
            revision,
            cfg.max_new_tokens,
            cfg.batch_size,
            weak=is_weak(cfg, spec, target_spec),
            weights=_weights(info),
        )
    else:
        raise JudgeError(f"unknown judge backend {cfg.backend!r}; use 'local' or 'openai'")
    return CachedJudge(judge, JudgeCache.at(cfg.cache_dir or cache_dir) if cfg.cache else None)
