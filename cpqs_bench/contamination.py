"""Contamination: word n-gram overlap of a pool (and of each arm's selection) with every evaluation task's items.

An evaluation *item* is what the task YAML renders for one evaluation doc: the prompt (``doc_to_text``), the
reference answer (``doc_to_target``; for a multiple-choice task the text of the correct choice(s)) and, where the doc
has one, the canonical solution (HumanEval: its ``doc_to_target`` is only the task id). :func:`task_items` builds the
tasks through the harness's TaskManager (the project's ``tasks/`` plus ``evaluate.include_path``; docs from the data
mirror offline), exactly as the evaluation does.

Text is normalised (lower-cased; every run of characters other than letters and digits — punctuation, underscores,
whitespace — becomes one separator) and cut into word ``n``-grams (``data.contamination_n``, default 13). The index
(:class:`ContaminationIndex`) is a hash table of the items' n-grams (64-bit polynomial hashes of per-word 64-bit
BLAKE2b values, sorted, looked up with ``numpy.searchsorted``); the pool is read once, in chunks. A pool example
*overlaps* an item when any n-gram of any of its texts (each prompt message, the response) is one of the item's
n-grams (n-grams never span two texts). An item with no n-gram of its own (fewer than ``n`` words in every text, or
only template n-grams, below) cannot be checked: it is counted as **undetectable**, never as clean, and the fractions
are over the checkable items.

Template n-grams: a task YAML often wraps every doc in the same instruction ("Solve the following grade-school math
problem ...", a few-shot preamble). Those n-grams are not evidence about any one item: a pool row quoting the template
would otherwise "contain" every item. An n-gram found in at least ``TEMPLATE_MIN_ITEMS`` items and in more than
``TEMPLATE_SHARE`` of a task's items is dropped from that task's index (counted in ``index.template_ngrams``).

Reference followed: lm-evaluation-harness ``lm_eval/decontamination/decontaminate.py`` (``get_train_overlap``: build a
lookup ``{ngram: doc ids}`` per task set from the normalised documents, then one scan of the training n-grams against
the merged lookup) and ``lm_eval/decontamination/janitor.py`` (``normalize_string``, ``word_ngrams``; 13-grams,
"we just used 13 for simplicity"), v0.4.x as installed here.

Differences from the reference:

* normalisation replaces punctuation by a word boundary instead of deleting it (``"a,b"`` and ``"a, b"`` match here,
  ``"don't"`` and ``"dont"`` do not) and is Unicode-aware (any non-alphanumeric character, not only
  ``string.punctuation``);
* the training side is the pool's examples themselves (no prebuilt Pile n-gram files), scanned in memory;
* n-grams are stored as 64-bit hashes rather than strings (a false match needs a 64-bit collision: about 1e-6 over
  a 52k pool × every paper task), and n-grams within one text only;
* the query is the rendered prompt *and* answer (the reference uses ``doc_to_decontamination_query``, the prompt by
  default), and template n-grams shared by many items of a task are dropped (the reference keeps them);
* items with no checkable n-gram are reported as undetectable rather than silently clean.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np

from cpqs_bench.data.example import Example

if TYPE_CHECKING:
    from lm_eval.api.task import Task

SeedT = TypeVar("SeedT", bound="int | str | None")  # a selection's seed key (None: a seed-independent arm)

DEFAULT_N = 13
TEMPLATE_MIN_ITEMS = 3  # an n-gram in fewer items is never template text
TEMPLATE_SHARE = 0.005  # ... and it must be in more than this share of the task's items
POOL_CHUNK = 4096  # pool examples hashed and looked up per numpy batch (bounds memory)
_PRIME = np.uint64(0x100000001B3)  # FNV-64 prime: odd, so the polynomial hash is a bijection per position
_WORD = re.compile(r"[^\W_]+")
MIRROR_ENV = "CPQS_DATA_MIRROR"


class ContaminationError(ValueError):
    """Bad input to the contamination check (unknown task, unavailable data, ids not in the pool)."""


# ----------------------------------------------------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------------------------------------------------


def normalize(text: str) -> list[str]:
    """Words of ``text``: lower-cased, punctuation/underscores/whitespace collapsed into word boundaries."""
    return _WORD.findall(text.lower())


class _WordValues(dict):
    """word -> a 64-bit value (BLAKE2b of the word, so hashes are the same in every process)."""

    def __missing__(self, word: str) -> int:
        value = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
        self[word] = value
        return value


def _gram_hashes(texts: Sequence[str], n: int, words: _WordValues) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every word n-gram of every text, index of its text); no n-gram spans two texts."""
    values: list[int] = []
    lengths: list[int] = []
    for text in texts:
        toks = normalize(text)
        values.extend(map(words.__getitem__, toks))
        lengths.append(len(toks))
    m = len(values) - n + 1
    if m <= 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    v = np.asarray(values, dtype=np.uint64)
    own: np.ndarray = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    h: np.ndarray = np.zeros(m, dtype=np.uint64)
    for j in range(n):  # h = sum_j v[i + j] * P^(n-1-j)  (mod 2^64: uint64 arithmetic wraps)
        h = h * _PRIME + v[j : j + m]
    valid = own[:m] == own[n - 1 :]
    return h[valid], own[:m][valid]


# ----------------------------------------------------------------------------------------------------------------------
# evaluation items
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalItem:
    """One evaluation doc as the task renders it: ``texts`` = (prompt, reference answer(s)..., canonical solution)."""

    task: str
    idx: int  # position among the task's evaluation docs
    doc_id: str  # the doc's own id (task_id / idx / id) when it has one, else str(idx)
    texts: tuple[str, ...]


def _as_texts(value: object, choices: Sequence[object] | None) -> list[str]:
    """A rendered ``doc_to_text``/``doc_to_target`` value as texts: an int (list) indexes the choices when there
    are any (multiple choice), a string is itself."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _as_texts(v, choices)]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and choices is not None:
        if not 0 <= int(value) < len(choices):
            raise ContaminationError(f"target index {value} outside the {len(choices)} choices")
        return [str(choices[int(value)])]
    return [str(value)]


def _doc_id(doc: object, idx: int) -> str:
    if isinstance(doc, Mapping):
        for key in ("task_id", "idx", "id"):
            if key in doc:
                return str(doc[key])
    return str(idx)


def items_of_task(task: Task, name: str, limit: int | None = None) -> list[EvalItem]:
    """The evaluation items of a built lm-eval ``Task`` (its ``eval_docs``, the first ``limit`` of them)."""
    docs = task.eval_docs
    count = len(docs) if limit is None else min(limit, len(docs))
    multiple_choice = getattr(task, "OUTPUT_TYPE", None) == "multiple_choice" or (
        getattr(task.config, "output_type", None) == "multiple_choice"
    )
    items = []
    for i in range(count):
        doc = docs[i]
        try:
            choices = list(task.doc_to_choice(doc)) if multiple_choice else None
            texts = _as_texts(task.doc_to_text(doc), choices) + _as_texts(task.doc_to_target(doc), choices)
        except ContaminationError as exc:
            raise ContaminationError(f"task {name}, doc {i}: {exc}") from exc
        if isinstance(doc, Mapping) and isinstance(doc.get("canonical_solution"), str):
            texts.append(doc["canonical_solution"])
        items.append(EvalItem(name, i, _doc_id(doc, i), tuple(t for t in texts if t)))
    return items


@contextlib.contextmanager
def _mirror(mirror: str | os.PathLike | None) -> Iterator[None]:
    """The task hooks read their docs from ``$CPQS_DATA_MIRROR``: set it for the call when a mirror is given."""
    if mirror is None:
        yield
        return
    before = os.environ.get(MIRROR_ENV)
    os.environ[MIRROR_ENV] = str(mirror)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MIRROR_ENV, None)
        else:
            os.environ[MIRROR_ENV] = before


def _task_source(task_names: Sequence[str], include_path: Sequence[str]) -> tuple[list[str], Any]:
    from cpqs_bench.evaluate import harness
    from cpqs_bench.evaluate.config import EvaluateConfig

    try:
        return harness.resolve_tasks(list(task_names), EvaluateConfig(include_path=tuple(include_path)))
    except harness.EvaluationError as exc:
        raise ContaminationError(str(exc)) from exc


def task_items(
    task_names: Sequence[str],
    include_path: Sequence[str] = (),
    mirror: str | os.PathLike | None = None,
    limit: int | None = None,
    task_limits: Mapping[str, int] | None = None,
) -> dict[str, list[EvalItem]]:
    """Every task's evaluation items, rendered by its YAML (``limit``: the first ``limit`` docs of each task, as
    lm-eval's ``--limit`` and ``evaluate.limit``; ``task_limits``: per-task limits overriding it, as
    ``evaluate.task_limits``). A task whose data cannot be loaded (e.g. a Hub dataset offline) is an error naming it;
    :func:`available_task_items` skips such tasks instead."""
    items, unavailable = available_task_items(task_names, include_path, mirror, limit, task_limits)
    if unavailable:
        raise ContaminationError(
            "cannot load the evaluation data of: "
            + "; ".join(f"{t} ({why})" for t, why in unavailable.items())
            + " (offline: the task's dataset must be in the data mirror or the Hub cache)"
        )
    return items


def available_task_items(
    task_names: Sequence[str],
    include_path: Sequence[str] = (),
    mirror: str | os.PathLike | None = None,
    limit: int | None = None,
    task_limits: Mapping[str, int] | None = None,
) -> tuple[dict[str, list[EvalItem]], dict[str, str]]:
    """(items of every task whose data loads, {task: why} for those whose data does not). An unknown task name is
    always an error (with lm-eval's did-you-mean)."""
    from cpqs_bench.evaluate import harness

    limits = {t: limit for t in task_names} | dict(task_limits or {})
    for t, lim in limits.items():
        if lim is not None and lim < 1:
            raise ContaminationError(f"limit of task {t} must be >= 1, got {lim}")
    names, src = _task_source(task_names, include_path)
    out: dict[str, list[EvalItem]] = {}
    unavailable: dict[str, str] = {}
    with _mirror(mirror):
        for name in names:
            try:
                task = harness.built_task(name, src)
            except (ConnectionError, OSError, FileNotFoundError, ValueError, harness.EvaluationError) as exc:
                unavailable[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                continue
            out[name] = items_of_task(task, name, limits.get(name, limit))
    return out, unavailable


def items_fingerprint(
    items: Mapping[str, Sequence[EvalItem]],
    n: int = DEFAULT_N,
    *,
    template_min_items: int = TEMPLATE_MIN_ITEMS,
    template_share: float = TEMPLATE_SHARE,
) -> str:
    """What decides an index (and so which pool rows ``decontaminate`` drops): ``n``, the template rule and every
    item's rendered texts. A stage that drops or reports overlaps keys on this (it changes when a task YAML's
    rendering, its data or the task list changes, and with nothing else)."""
    from cpqs_bench.io import stable_hash

    return stable_hash(
        {
            "n": n,
            "template": [template_min_items, template_share],
            "items": {t: [[i.idx, i.doc_id, list(i.texts)] for i in its] for t, its in items.items()},
        },
        length=16,
    )


# ----------------------------------------------------------------------------------------------------------------------
# the index
# ----------------------------------------------------------------------------------------------------------------------


def example_texts(ex: Example) -> list[str]:
    """What of a pool example is checked: each prompt message (instruction + input, system turns) and the response."""
    return [m["content"] for m in ex.prompt if m.get("content")] + ([ex.response] if ex.response else [])


@dataclass
class ContaminationIndex:
    """Hash table of the evaluation items' n-grams: sorted unique n-gram hashes ``keys``; the items holding key
    ``keys[p]`` are ``item_ids[offsets[p]:offsets[p + 1]]`` (positions in ``items``)."""

    n: int
    items: list[tuple[str, int]]  # global item id -> (task, item idx)
    task_sizes: dict[str, int]
    undetectable: dict[str, set[int]]
    template_ngrams: dict[str, int]
    keys: np.ndarray
    offsets: np.ndarray
    item_ids: np.ndarray
    _words: _WordValues = field(default_factory=_WordValues, repr=False)

    @classmethod
    def build(
        cls,
        items: Mapping[str, Sequence[EvalItem]],
        n: int = DEFAULT_N,
        *,
        template_min_items: int = TEMPLATE_MIN_ITEMS,
        template_share: float = TEMPLATE_SHARE,
    ) -> "ContaminationIndex":
        if n < 1:
            raise ContaminationError(f"n must be >= 1, got {n}")
        words = _WordValues()
        flat: list[tuple[str, int]] = []
        sizes: dict[str, int] = {}
        undetectable: dict[str, set[int]] = {}
        templates: dict[str, int] = {}
        hashes: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        for task, task_items_ in items.items():
            sizes[task] = len(task_items_)
            per_item: list[np.ndarray] = []
            for item in task_items_:
                if item.task != task:
                    raise ContaminationError(f"item {item.idx} of task {item.task} listed under task {task}")
                h, _ = _gram_hashes(item.texts, n, words)
                per_item.append(np.unique(h))
            cat = np.concatenate(per_item) if per_item else np.empty(0, np.uint64)
            uniq, counts = np.unique(cat, return_counts=True)
            threshold = max(template_min_items, math.floor(template_share * len(task_items_)) + 1)
            template = uniq[counts >= threshold]
            templates[task] = int(template.size)
            undetectable[task] = set()
            for item, h in zip(task_items_, per_item):
                own = h[~np.isin(h, template, assume_unique=True)] if template.size else h
                if own.size == 0:
                    undetectable[task].add(item.idx)
                    continue
                gid = len(flat)
                flat.append((task, item.idx))
                hashes.append(own)
                owners.append(np.full(own.size, gid, dtype=np.int64))
        if hashes:
            all_h = np.concatenate(hashes)
            all_o = np.concatenate(owners)
            order = np.argsort(all_h, kind="stable")
            all_h, all_o = all_h[order], all_o[order]
            keys, starts = np.unique(all_h, return_index=True)
            offsets: np.ndarray = np.append(starts, all_h.size).astype(np.int64)
        else:
            keys, all_o, offsets = np.empty(0, np.uint64), np.empty(0, np.int64), np.zeros(1, np.int64)
        return cls(n, flat, sizes, undetectable, templates, keys, offsets, all_o, words)

    @property
    def tasks(self) -> list[str]:
        return list(self.task_sizes)

    def item_overlaps(self, texts: Sequence[str]) -> set[tuple[str, int]]:
        """The items sharing an n-gram with ``texts`` (one example)."""
        h, _ = _gram_hashes(texts, self.n, self._words)
        return {self.items[g] for g in self._hits(h)[1]}

    def _hits(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``h`` of n-grams in the index, the item id of each hit: one row per (n-gram, item))."""
        if h.size == 0 or self.keys.size == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        pos = np.asarray(np.searchsorted(self.keys, h))  # an array for an array of needles
        pos[pos == self.keys.size] = 0
        found = np.flatnonzero(self.keys[pos] == h)
        p = pos[found]
        lo, hi = self.offsets[p], self.offsets[p + 1]
        reps = hi - lo
        where: np.ndarray = np.repeat(found, reps)
        starts: np.ndarray = np.repeat(lo, reps)
        step = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
        return where, self.item_ids[starts + step]

    def overlapping_ids(self, examples: Iterable[Example]) -> dict[str, set[tuple[str, int]]]:
        """{example id: {(task, item idx), ...}} for every pool example that shares an n-gram with an item (one pass
        over ``examples``, in chunks of ``POOL_CHUNK``); examples with no overlap are absent."""
        out: dict[str, set[tuple[str, int]]] = {}
        chunk: list[Example] = []
        for ex in examples:
            chunk.append(ex)
            if len(chunk) == POOL_CHUNK:
                self._scan(chunk, out)
                chunk = []
        if chunk:
            self._scan(chunk, out)
        return out

    def _scan(self, chunk: Sequence[Example], out: dict[str, set[tuple[str, int]]]) -> None:
        texts: list[str] = []
        text_owner: list[int] = []
        for e, ex in enumerate(chunk):
            t = example_texts(ex)
            texts.extend(t)
            text_owner.extend([e] * len(t))
        h, text_idx = _gram_hashes(texts, self.n, self._words)
        where, gids = self._hits(h)
        if where.size == 0:
            return
        owner = np.asarray(text_owner, dtype=np.int64)[text_idx[where]]
        pairs = np.unique(np.stack([owner, gids], axis=1), axis=0)
        for e, g in pairs.tolist():
            out.setdefault(chunk[e].id, set()).add(self.items[g])


# ----------------------------------------------------------------------------------------------------------------------
# report, decontamination
# ----------------------------------------------------------------------------------------------------------------------


def seed_key(seed: int | str | None) -> str:
    """A selection's seed as a JSON key: ``str(seed)``; ``"none"`` for a seed-independent selection."""
    return "none" if seed is None else str(seed)


def _fraction(count: float, checkable: int) -> float | None:
    return count / checkable if checkable else None


def report(
    index: ContaminationIndex,
    pool_examples: Sequence[Example],
    selections: Mapping[str, Mapping[SeedT, Sequence[str]]] | None = None,
    *,
    overlaps: Mapping[str, set[tuple[str, int]]] | None = None,
) -> dict[str, Any]:
    """Per task: items, undetectable items, and the items with any overlap in the pool and in each arm's selection
    (``selections``: {arm: {seed (None for a seed-independent arm): [selected example ids]}}); fractions are over
    the checkable items (``None`` when a task has none). ``overlaps``: :meth:`ContaminationIndex.overlapping_ids` of
    the pool when already computed. Every selected id must be a pool example's id."""
    if overlaps is None:
        overlaps = index.overlapping_ids(pool_examples)
    pool_ids = {ex.id for ex in pool_examples}
    unknown = [i for i in overlaps if i not in pool_ids]
    if unknown:
        raise ContaminationError(f"overlaps name {len(unknown)} ids not in the pool, e.g. {unknown[:3]}")
    for arm, by_seed in (selections or {}).items():
        for seed, ids in by_seed.items():
            missing = [i for i in ids if i not in pool_ids]
            if missing:
                raise ContaminationError(
                    f"selection of arm {arm!r} (seed {seed_key(seed)}): {len(missing)} ids are not in the pool, "
                    f"e.g. {missing[:3]} (is it a selection from this pool?)"
                )

    def items_hit(ids: Iterable[str]) -> dict[str, set[int]]:
        hit: dict[str, set[int]] = {}
        for i in ids:
            for task, idx in overlaps.get(i, ()):
                hit.setdefault(task, set()).add(idx)
        return hit

    pool_hit = items_hit(overlaps)
    pool_examples_per_task = {t: 0 for t in index.tasks}
    for hits in overlaps.values():
        for task in {t for t, _ in hits}:
            pool_examples_per_task[task] += 1
    arm_hits = {
        arm: {seed_key(seed): items_hit(ids) for seed, ids in by_seed.items()}
        for arm, by_seed in (selections or {}).items()
    }
    tasks: dict[str, Any] = {}
    for task in index.tasks:
        size = index.task_sizes[task]
        undetectable = len(index.undetectable[task])
        checkable = size - undetectable
        arms: dict[str, Any] = {}
        for arm, hits_by_seed in arm_hits.items():
            per_seed = {s: len(h.get(task, ())) for s, h in hits_by_seed.items()}
            mean = sum(per_seed.values()) / len(per_seed) if per_seed else 0.0
            arms[arm] = {"overlapping_items": float(mean), "fraction": _fraction(mean, checkable), "per_seed": per_seed}
        n_pool = len(pool_hit.get(task, ()))
        tasks[task] = {
            "items": size,
            "undetectable": undetectable,
            "pool": {
                "overlapping_items": n_pool,
                "fraction": _fraction(n_pool, checkable),
                "overlapping_examples": pool_examples_per_task[task],
            },
            "arms": arms,
        }
    return {"n": index.n, "tasks": tasks}


def decontaminate(examples: Sequence[Example], index: ContaminationIndex) -> tuple[list[Example], list[Example]]:
    """(kept, dropped): ``dropped`` = the examples sharing an n-gram with any evaluation item (``data.decontaminate:
    drop``), both in input order."""
    overlapping = index.overlapping_ids(examples)
    kept = [ex for ex in examples if ex.id not in overlapping]
    dropped = [ex for ex in examples if ex.id in overlapping]
    return kept, dropped


def _pct(fraction: float | None) -> str:
    return "–" if fraction is None else f"{100 * fraction:.1f}%"


def markdown_table(result: Mapping[str, Any]) -> str:
    """The contamination table of a :func:`report`: one row per task; the pool's and each arm's overlapping items
    (count, % of the checkable items; arms: mean over seeds)."""
    arms = list(dict.fromkeys(a for t in result["tasks"].values() for a in t["arms"]))
    head = ["task", "items", "undetectable", "pool: items overlapping", "pool: examples overlapping"]
    head += [f"{a}: items overlapping" for a in arms]
    lines = [f"Contamination ({result['n']}-gram overlap with the evaluation items; % of the checkable items):", ""]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for task, t in result["tasks"].items():
        p = t["pool"]
        cells = [task, str(t["items"]), str(t["undetectable"]), f"{p['overlapping_items']} ({_pct(p['fraction'])})"]
        cells.append(str(p["overlapping_examples"]))
        for a in arms:
            arm = t["arms"].get(a)
            cells.append("–" if arm is None else f"{arm['overlapping_items']:g} ({_pct(arm['fraction'])})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------------
# shared sources (preflight)
# ----------------------------------------------------------------------------------------------------------------------

_HF = re.compile(r"^hf:(?P<repo>[^:@#]+)(?::(?P<config>[^@#]+))?(?:@[^#]+)?(?:#(?P<split>.+))?$")


def _norm_repo(repo: str) -> str:
    return repo.strip().strip("/").lower()


def pool_source(pool_spec: str) -> tuple[str | None, str | None]:
    """(Hub dataset id, split) a pool spec comes from: a named dataset (its Hub id, also when read from its mirror
    file), ``hf:owner/name[:config][@rev][#split]``, or a file that is a named dataset's mirror file; (None, None)
    for any other file."""
    from cpqs_bench.data.mirror import NAMED

    spec = str(pool_spec)
    named = NAMED.get(spec)
    if named is None:
        as_path = Path(spec).as_posix()
        named = next((d for d in NAMED.values() if d.mirror_path and as_path.endswith("/" + d.mirror_path)), None)
    if named is not None:
        spec = named.hub
    m = _HF.match(spec)
    if m is None:
        return None, None
    return _norm_repo(m["repo"]), m["split"]


def task_source(task: str, include_path: Sequence[str] = ()) -> str | None:
    """The Hub dataset id a task evaluates on, from its YAML alone (``metadata.dataset_id``, else ``dataset_path``)."""
    names, src = _task_source([task], include_path)
    entry = src.manager.task_index.get(names[0])
    cfg = dict(getattr(entry, "cfg", None) or {})
    meta = dict(cfg.get("metadata") or {})
    dataset = meta.get("dataset_id") or cfg.get("dataset_path")
    return _norm_repo(str(dataset)) if dataset else None


def shares_source(pool_spec: str, task: str, include_path: Sequence[str] = ()) -> str | None:
    """A warning (named, but allowed) when the pool and the task's evaluation data come from the same dataset (e.g.
    GSM8K train as the pool, GSM8K test as the evaluation); None otherwise. The n-gram check measures the overlap;
    this names the lineage."""
    repo, split = pool_source(pool_spec)
    if repo is None:
        return None
    evaluated = task_source(task, include_path)
    if evaluated is None or evaluated != repo:
        return None
    where = f" (pool split: {split})" if split else ""
    return (
        f"pool {pool_spec} and task {task} share the source {repo}{where}: allowed, but the pool may paraphrase "
        "or quote evaluation items; see the contamination table"
    )
