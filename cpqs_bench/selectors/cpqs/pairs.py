"""Contrastive training data for CPQS: the same instruction answered well (label 1) and worse (label 0).

Sources (``selectors.cpqs.pairs_source``):

* ``pairs`` — one file with both answers per row (e.g. ``alpaca_gpt4_vs_davinci003``: ``output_gpt4`` vs
  ``output_davinci003``); rows whose two answers are equal carry no contrast and are dropped;
* ``join`` — two pools (strong, weak) joined on the prompt (Alpaca instruction + input);
* ``multi_model`` — AlpacaEval outputs of several generators on shared prompts (``alpaca_eval/<generator>``),
  declared positive or negative; every positive answer is paired with every negative answer of its prompt;
* ``generate`` — pool answers (positive) vs answers a weaker model produced for the same instructions
  (``cpqs-bench make-negatives``), joined on example id; with several generator models, one negative per
  instruction (``composition: paired``) or every one (``reference``);
* ``official`` — the CPQS reference's own training data (Hub dataset ``renlll/CPQS_data``, ``train_cnn.py``
  ``parse_args``/``build_dataset`` of ``renllll/CPQS-Tuning``): GPT-4 positives ``alpaca_gpt4_data.json`` and two
  small-model negative files whose answer is in ``模型输出``. ``composition: paired`` (default) pairs each positive
  with one negative of the same instruction (1:1, the negative set rotating by instruction); ``reference`` keeps
  every positive and every negative of both sets (pos:neg = 1:2, as the reference concatenates them);
  ``reference_mix`` is the reference's own draw (:func:`reference_mix`).

**Order (issue #26):** every source is built whole; :func:`select` first drops every group whose instruction is in the
pool being scored (the CNN must not score answers it was trained on; ``skipped["overlap_with_pool"]``) and only then
draws ``n_pairs`` units (:func:`draw`), so ``short_of_n_pairs`` is the shortfall after the drop. The out-of-fold
path calls :func:`select` per fold. :func:`disjoint_pairs` counts the overlap of an already drawn set (preflight).

**Differences from the reference** (``train_cnn.py`` ``build_dataset`` of Victory0431/CPQS-Tuning at ``ce89a54``):
``paired`` (the default) and ``reference`` draw ``n_pairs`` instruction *groups* (so a held-out split can stay
instruction-disjoint) where the reference draws ``max_steps`` texts from the shuffled union (``reference_mix``);
the pool-overlap drop; identical answers and duplicate prompts dropped and counted; the question text is the
project's unless ``question_format: reference``.

Every labelled example carries a *group* key, a hash of its prompt, so the validation split can keep each
instruction on one side only (otherwise the classifier is scored on instructions it has seen).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from cpqs_bench.data import pool as _pool
from cpqs_bench.data.example import Example
from cpqs_bench.data.schemas import RecordError, normalise
from cpqs_bench.io import iter_jsonl_objects, stable_hash

if TYPE_CHECKING:
    from cpqs_bench.selectors.cpqs.config import CPQSConfig

POSITIVE, NEGATIVE = 1, 0


class PairsError(ValueError):
    pass


@dataclass(frozen=True)
class Labelled:
    example: Example
    label: int  # 1 = strong answer, 0 = weak answer
    group: str  # instruction group: the same prompt -> the same group


@dataclass
class PairSet:
    """Labelled examples of a pair source plus what was skipped and why."""

    source: str
    items: list[Labelled]
    skipped: Counter = field(default_factory=Counter)
    n_pairs: int = 0
    # the sampling units behind ``items`` (one per pair, or per composed group): what :func:`draw` subsamples
    units: list[list[Labelled]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        labels = Counter(x.label for x in self.items)
        return {
            "source": self.source,
            "pairs": self.n_pairs,
            "examples": len(self.items),
            "positives": labels[POSITIVE],
            "negatives": labels[NEGATIVE],
            "groups": len({x.group for x in self.items}),
            "skipped": dict(self.skipped),
        }


def prompt_key(prompt: Sequence[Mapping[str, str]]) -> str:
    """Join key / group key of a prompt: its messages with surrounding whitespace ignored."""
    return stable_hash([[m["role"], m["content"].strip()] for m in prompt], 16)


def _pair(group: str, pos: Example, neg: Example, tag_pos: str = "pos", tag_neg: str = "neg") -> list[Labelled]:
    return [
        Labelled(Example(f"{group}:{tag_pos}", pos.prompt, pos.response, pos.metadata), POSITIVE, group),
        Labelled(Example(f"{group}:{tag_neg}", neg.prompt, neg.response, neg.metadata), NEGATIVE, group),
    ]


def _same(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def _add(
    pairs: list[list[Labelled]], seen: set[str], skipped: Counter, pos: Example, neg: Example, drop_identical: bool
) -> None:
    """Append one (strong, weak) pair unless its answers are identical or its instruction already has a pair."""
    if drop_identical and _same(pos.response, neg.response):
        skipped["identical"] += 1
        return
    group = prompt_key(pos.prompt)
    if group in seen:
        skipped["duplicate_prompt"] += 1
        return
    seen.add(group)
    pairs.append(_pair(group, pos, neg))


def overlap_key(ex: Example) -> str:
    """Instruction identity for overlap checks: the user text (the project's format of it when the example was read
    in another question format), case and whitespace ignored."""
    value = ex.metadata.get("overlap_text")
    text = value if isinstance(value, str) else ex.instruction
    return " ".join(text.lower().split())


def disjoint_pairs(pairs: PairSet, pool_examples: Iterable[Example]) -> tuple[PairSet, int]:
    """``(pairs without any group whose instruction is in the pool, number of groups dropped)``, nothing redrawn.
    Training uses :func:`draw` (drop, then sample); this is the overlap count alone (preflight, tests)."""
    taken = {overlap_key(ex) for ex in pool_examples}
    bad = {x.group for x in pairs.items if overlap_key(x.example) in taken}
    if not bad:
        return pairs, 0
    kept = [x for x in pairs.items if x.group not in bad]
    if not kept:
        raise PairsError(
            f"{pairs.source}: every training pair's instruction is in the scored pool ({len(bad)} "
            "groups); train the selector on instructions the pool does not hold"
        )
    skipped = Counter(pairs.skipped)
    skipped["overlap_with_pool"] += len(bad)
    units = [u for u in pairs.units if u[0].group not in bad]
    return PairSet(pairs.source, kept, skipped, pairs.n_pairs - len(bad), units), len(bad)


def _subsample(pairs: list[list[Labelled]], n_pairs: int | None, seed: int) -> list[list[Labelled]]:
    """A seeded subset of whole pairs (order-independent: shuffled after sorting by group)."""
    pairs = sorted(pairs, key=lambda p: p[0].group + p[0].example.id)
    if n_pairs is None or n_pairs >= len(pairs):
        return pairs
    rng = random.Random(seed)
    return sorted(rng.sample(pairs, n_pairs), key=lambda p: p[0].group + p[0].example.id)


def avoid_keys(pool_examples: Iterable[Example] | None) -> set[str] | None:
    """The :func:`overlap_key` of every example of the pool to be scored (None: no pool, nothing to avoid)."""
    return None if pool_examples is None else {overlap_key(ex) for ex in pool_examples}


def _drop_overlap(
    source: str, units: list[list[Labelled]], skipped: Counter, avoid: set[str] | None
) -> tuple[list[list[Labelled]], int]:
    """``units`` without any instruction group that has an example in ``avoid``; the number of groups dropped is
    added to ``skipped["overlap_with_pool"]`` and returned."""
    if not avoid:
        return units, 0
    bad = {x.group for unit in units for x in unit if overlap_key(x.example) in avoid}
    if not bad:
        return units, 0
    kept = [unit for unit in units if unit[0].group not in bad]
    if not kept:
        raise PairsError(
            f"{source}: every training pair's instruction is in the scored pool ({len(bad)} "
            "groups); train the selector on instructions the pool does not hold"
        )
    skipped["overlap_with_pool"] += len(bad)
    return kept, len(bad)


def _finish(
    source: str,
    pairs: list[list[Labelled]],
    skipped: Counter,
    n_pairs: int | None,
    seed: int,
    avoid: set[str] | None = None,
) -> PairSet:
    """Drop the pool-overlapping groups FIRST, then draw ``n_pairs`` units, then count the shortfall: a source half
    of which overlaps the pool still yields ``n_pairs`` when it holds enough other instructions (issue #26)."""
    if not pairs:
        raise PairsError(f"{source}: no usable pairs (skipped: {dict(skipped) or 'none'})")
    skipped = Counter(skipped)
    kept, _ = _drop_overlap(source, pairs, skipped, avoid)
    chosen = _subsample(kept, n_pairs, seed)
    skipped.pop("short_of_n_pairs", None)
    if n_pairs is not None and len(chosen) < n_pairs:
        skipped["short_of_n_pairs"] = n_pairs - len(chosen)
    return PairSet(source, [x for p in chosen for x in p], skipped, len(chosen), chosen)


def draw(pairs: PairSet, avoid: Iterable[Example] | None, n_pairs: int | None, seed: int = 0) -> tuple[PairSet, int]:
    """``(pairs without the groups whose instruction is in ``avoid``, then ``n_pairs`` of them drawn, number of
    groups dropped)`` — the order every path follows (a built set, a fold of ``out_of_fold``). ``short_of_n_pairs``
    is the shortfall after the drop."""
    units = pairs.units or _units_by_group(pairs.items)
    before = Counter(pairs.skipped)
    out = _finish(pairs.source, units, before, n_pairs, seed, avoid_keys(avoid))
    return out, out.skipped.get("overlap_with_pool", 0) - before.get("overlap_with_pool", 0)


def _units_by_group(items: Sequence[Labelled]) -> list[list[Labelled]]:
    by: dict[str, list[Labelled]] = {}
    for x in items:
        by.setdefault(x.group, []).append(x)
    return list(by.values())


def reference_mix(pairs: PairSet, avoid: Iterable[Example] | None, n_texts: int, seed: int = 0) -> PairSet:
    """``composition: reference_mix`` — the reference's training data (``train_cnn.py`` ``build_dataset``): the
    union of every positive and every negative text, shuffled, the first ``n_texts`` kept, unpaired. Here the
    pool-overlap drop comes first (whole instruction groups whose instruction is in ``avoid``), then the draw; the
    items keep their group keys (for the overlap record), and ``n_pairs`` counts texts."""
    if n_texts < 1:
        raise PairsError(f"reference_mix needs a positive number of texts, got {n_texts}")
    skipped = Counter(pairs.skipped)
    units = pairs.units or _units_by_group(pairs.items)
    kept, _ = _drop_overlap(pairs.source, units, skipped, avoid_keys(avoid))
    texts = sorted((x for unit in kept for x in unit), key=lambda x: (x.group, x.example.id, x.label))
    random.Random(seed).shuffle(texts)
    chosen = texts[:n_texts]
    skipped.pop("short_of_n_pairs", None)
    if len(chosen) < n_texts:
        skipped["short_of_n_texts"] = n_texts - len(chosen)
    return PairSet(f"{pairs.source}; reference_mix", chosen, skipped, len(chosen), [[x] for x in chosen])


# ---------------------------------------------------------------------------------------------------- sources
def from_paired_file(
    source: str,
    positive_field: str = "output_gpt4",
    negative_field: str = "output_davinci003",
    *,
    drop_identical: bool = True,
    exclude: Mapping[str, Sequence[Any]] | None = None,
    n_pairs: int | None = None,
    seed: int = 0,
    avoid: Iterable[Example] | None = None,
    mirror: str | os.PathLike | None = None,
) -> PairSet:
    """Pairs from one file holding both answers per row (Alpaca fields ``instruction``/``input`` + two outputs).

    ``exclude`` drops rows whose field has one of the given values (e.g. ``{"gpt4_from":
    ["nuggets_alpaca_gpt4_bad"]}``); a bad row is skipped with its reason counted, never silently.
    """
    src, _ = _pool.resolve_source(source, mirror)
    skipped: Counter = Counter()
    pairs: list[list[Labelled]] = []
    seen: set[str] = set()
    for _loc, rec, err in _pool.iter_raw(src):
        if err is not None:
            skipped[err[0]] += 1
            continue
        if not isinstance(rec, dict):
            skipped["wrong_type"] += 1
            continue
        if exclude and any(rec.get(k) in set(v) for k, v in exclude.items()):
            skipped["excluded"] += 1
            continue
        try:
            pos = normalise(rec, "alpaca", {"output": positive_field})
            neg = normalise(rec, "alpaca", {"output": negative_field})
        except RecordError as exc:
            skipped[exc.reason] += 1
            continue
        _add(pairs, seen, skipped, pos, neg, drop_identical)
    if not pairs and not skipped:
        raise PairsError(f"{src}: no records")
    return _finish(f"{source} ({positive_field} vs {negative_field})", pairs, skipped, n_pairs, seed, avoid_keys(avoid))


def _by_prompt(examples: Iterable[Example], skipped: Counter, what: str) -> dict[str, Example]:
    out: dict[str, Example] = {}
    for ex in examples:
        key = prompt_key(ex.prompt)
        if key in out:
            skipped[f"duplicate_prompt_{what}"] += 1
            continue
        out[key] = ex
    return out


def from_two_files(
    positives: str,
    negatives: str,
    *,
    drop_identical: bool = True,
    n_pairs: int | None = None,
    seed: int = 0,
    avoid: Iterable[Example] | None = None,
    mirror: str | os.PathLike | None = None,
) -> PairSet:
    """Pairs from a strong pool and a weak pool joined on the prompt (instruction + input)."""
    skipped: Counter = Counter()
    pos_pool = _pool.read_pool(positives, mirror=mirror)
    neg_pool = _pool.read_pool(negatives, mirror=mirror)
    skipped["rejected_positive_records"] += len(pos_pool.rejected)
    skipped["rejected_negative_records"] += len(neg_pool.rejected)
    pos = _by_prompt(pos_pool.examples, skipped, "positive")
    neg = _by_prompt(neg_pool.examples, skipped, "negative")
    pairs = []
    for key, p in pos.items():
        n = neg.get(key)
        if n is None:
            skipped["no_negative"] += 1
        elif drop_identical and _same(p.response, n.response):
            skipped["identical"] += 1
        else:
            pairs.append(_pair(key, p, n))
    skipped["no_positive"] += sum(1 for k in neg if k not in pos)
    return _finish(f"join({positives}, {negatives})", pairs, +skipped, n_pairs, seed, avoid_keys(avoid))


def from_multi_model(
    positive_generators: Sequence[str],
    negative_generators: Sequence[str],
    *,
    drop_identical: bool = True,
    n_pairs: int | None = None,
    seed: int = 0,
    avoid: Iterable[Example] | None = None,
    mirror: str | os.PathLike | None = None,
    prefix: str = "alpaca_eval/",
) -> PairSet:
    """Pairs from several generators' outputs on shared prompts (AlpacaEval: ``alpaca_eval/<generator>``)."""
    overlap = set(positive_generators) & set(negative_generators)
    if overlap:
        raise PairsError(f"generators declared both positive and negative: {sorted(overlap)}")
    if not positive_generators or not negative_generators:
        raise PairsError("multi_model pairs need at least one positive and one negative generator")
    skipped: Counter = Counter()
    tables: dict[str, dict[str, Example]] = {}
    for gen in list(positive_generators) + list(negative_generators):
        pool = _pool.read_pool(prefix + gen if prefix and "/" not in gen else gen, mirror=mirror)
        skipped[f"rejected_records_{gen}"] += len(pool.rejected)
        tables[gen] = _by_prompt(pool.examples, skipped, gen)
    pairs = []
    for pgen in positive_generators:
        for key, p in tables[pgen].items():
            for ngen in negative_generators:
                n = tables[ngen].get(key)
                if n is None:
                    skipped["no_negative"] += 1
                elif drop_identical and _same(p.response, n.response):
                    skipped["identical"] += 1
                else:
                    pairs.append(_pair(key, p, n, _tag(pgen), _tag(ngen)))
    return _finish(
        f"multi_model(+{','.join(positive_generators)} -{','.join(negative_generators)})",
        pairs,
        +skipped,
        n_pairs,
        seed,
        avoid_keys(avoid),
    )


def _tag(generator: str) -> str:
    return generator.rsplit("/", 1)[-1]


def read_negatives(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Rows written by ``cpqs-bench make-negatives`` (id -> row), with file:line on a bad row."""
    out: dict[str, dict[str, Any]] = {}
    try:
        for lineno, row in iter_jsonl_objects(path):
            if "id" not in row:
                raise PairsError(f"{path}:{lineno}: not a negatives row (no 'id')")
            out[str(row["id"])] = row
    except PairsError:
        raise
    except ValueError as exc:
        raise PairsError(f"not a negatives file: {exc}") from None
    return out


def read_negatives_by_id(path: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """Rows of a make-negatives file grouped by id (several generators answer the same id)."""
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        for lineno, row in iter_jsonl_objects(path):
            if "id" not in row:
                raise PairsError(f"{path}:{lineno}: not a negatives row (no 'id')")
            out.setdefault(str(row["id"]), []).append(row)
    except PairsError:
        raise
    except ValueError as exc:
        raise PairsError(f"not a negatives file: {exc}") from None
    return out


def _rotate(group: str, n: int) -> int:
    """Deterministic choice among ``n`` negative sets for one instruction (balanced over instructions)."""
    return int(group[:8], 16) % n if n > 1 else 0


def from_generated(
    pool_examples: Sequence[Example],
    negatives_path: str | os.PathLike,
    *,
    drop_identical: bool = True,
    n_pairs: int | None = None,
    seed: int = 0,
    avoid: Iterable[Example] | None = None,
    composition: str = "paired",
    drop_unfinished: bool = True,
) -> PairSet:
    """Pool answers (positive) vs weaker models' answers to the same instructions (joined on example id).

    Unfinished answers (``finished: false``, cut at ``max_new_tokens``) are skipped and counted when
    ``drop_unfinished`` (make-negatives already leaves them out of its output then)."""
    rows = read_negatives_by_id(negatives_path)
    skipped: Counter = Counter()
    groups: list[list[Labelled]] = []
    seen: set[str] = set()
    for ex in pool_examples:
        negs = []
        for row in rows.get(ex.id, []):
            answer = row.get("response")
            if drop_unfinished and row.get("finished") is False:
                skipped["unfinished_negative"] += 1
            elif not isinstance(answer, str) or not answer.strip():
                skipped["empty_negative"] += 1
            elif drop_identical and _same(ex.response, answer):
                skipped["identical"] += 1
            else:
                negs.append(Example(ex.id, ex.prompt, answer, {"generator": row.get("generator")}))
        if not negs:
            if ex.id not in rows:
                skipped["no_negative"] += 1
            continue  # otherwise every answer was skipped with its reason counted above
        group = prompt_key(ex.prompt)
        if group in seen:
            skipped["duplicate_prompt"] += 1
            continue
        seen.add(group)
        groups.append(_compose(group, ex, negs, composition))
    return _finish(f"generated({negatives_path})", groups, skipped, n_pairs, seed, avoid_keys(avoid))


def _compose(group: str, pos: Example, negs: Sequence[Example], composition: str) -> list[Labelled]:
    if composition == "paired":
        return _pair(group, pos, negs[_rotate(group, len(negs))])
    if composition != "reference":
        raise PairsError(f"unknown composition {composition!r}; use paired or reference")
    items = [Labelled(Example(f"{group}:pos", pos.prompt, pos.response, pos.metadata), POSITIVE, group)]
    items += [
        Labelled(Example(f"{group}:neg{i}", n.prompt, n.response, n.metadata), NEGATIVE, group)
        for i, n in enumerate(negs)
    ]
    return items


@dataclass(frozen=True)
class OfficialFiles:
    """The reference's training files: a dataset (``renlll/CPQS_data``) or local folder ``source``, its positives'
    file and the negative files whose ``negative_field`` holds the weak answers."""

    source: str = "cpqs_data"
    positives: str = "alpaca_gpt4_data.json"
    negatives: Sequence[str] = ("alpaca_gpt4_data_llama.json", "alpaca_gpt4_data_qwen251.json")
    negative_field: str = "模型输出"


def from_official(
    files: OfficialFiles = OfficialFiles(),
    *,
    composition: str = "paired",
    question_format: str = "project",
    drop_identical: bool = True,
    n_pairs: int | None = None,
    seed: int = 0,
    avoid: Iterable[Example] | None = None,
    mirror: str | os.PathLike | None = None,
) -> PairSet:
    """The reference's training data (``files``: ``renlll/CPQS_data`` or a local folder of those files): positives'
    ``output`` vs each negative file's ``negative_field``, joined on instruction + input."""
    from cpqs_bench.data.mirror import dataset_files

    source, positives, negatives = files.source, files.positives, files.negatives
    negative_field = files.negative_field

    if not negatives:
        raise PairsError("official pairs need at least one negative file (selectors.cpqs.official_negatives)")
    paths = dataset_files(source, [positives, *negatives], mirror)
    schema = "alpaca_reference" if question_format == "reference" else "alpaca"
    skipped: Counter = Counter()

    def read(path: Path, field_map: dict[str, str] | None, what: str) -> dict[str, Example]:
        out: dict[str, Example] = {}
        for _loc, rec, err in _pool.iter_raw(str(path)):
            if err is not None:
                skipped[f"{what}_{err[0]}"] += 1
                continue
            try:
                ex = normalise(rec, schema, field_map)
            except RecordError as exc:
                skipped[f"{what}_{exc.reason}"] += 1
                continue
            key = prompt_key(ex.prompt)
            if key in out:
                skipped[f"duplicate_prompt_{what}"] += 1
                continue
            out[key] = ex
        return out

    pos = read(paths[positives], None, "positive")
    neg_sets = [read(paths[f], {"output": negative_field}, f"negative{i}") for i, f in enumerate(negatives)]
    groups: list[list[Labelled]] = []
    for key, p in pos.items():
        negs = []
        for i, table in enumerate(neg_sets):
            n = table.get(key)
            if n is None:
                skipped[f"no_negative{i}"] += 1
            elif drop_identical and _same(p.response, n.response):
                skipped["identical"] += 1
            else:
                negs.append(Example(n.id, n.prompt, n.response, {**n.metadata, "negative_set": negatives[i]}))
        if negs:
            groups.append(_compose(key, p, negs, composition))
        else:
            skipped["no_negative"] += 1
    label = f"official({source}: {positives} vs {', '.join(negatives)}; {composition})"
    return _finish(label, groups, +skipped, n_pairs, seed, avoid_keys(avoid))


# ---------------------------------------------------------------------------------------------------- split
def split_by_group(
    items: Sequence[Labelled], val_fraction: float, seed: int = 0
) -> tuple[list[Labelled], list[Labelled]]:
    """(train, validation) with every instruction group entirely on one side; seeded, order-independent."""
    if not 0 <= val_fraction < 1:
        raise PairsError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups = sorted({x.group for x in items})
    if val_fraction == 0:
        return list(items), []
    rng = random.Random(seed)
    rng.shuffle(groups)
    n_val = max(1, round(len(groups) * val_fraction))
    if n_val >= len(groups):
        raise PairsError(f"only {len(groups)} instruction groups: cannot hold out {val_fraction:.0%} and still train")
    val_groups = set(groups[:n_val])
    train = [x for x in items if x.group not in val_groups]
    val = [x for x in items if x.group in val_groups]
    return train, val


def parse_exclude(items: Sequence[str] | None) -> dict[str, list[str]]:
    """``["gpt4_from=nuggets_alpaca_gpt4_bad", ...]`` -> ``{"gpt4_from": ["nuggets_alpaca_gpt4_bad"]}``."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PairsError(f"exclude filter {item!r} must be FIELD=VALUE")
        out.setdefault(key, []).append(value)
    return out


_FROM_CONFIG: Any = object()


def build(
    cfg: CPQSConfig,
    *,
    mirror: str | os.PathLike | None = None,
    pool_examples: Sequence[Example] | None = None,
    negatives_path: str | os.PathLike | None = None,
    exclude: Mapping[str, Sequence[Any]] | None = None,
    seed: int | None = None,
    avoid: Iterable[Example] | None = None,
    n_pairs: int | None = _FROM_CONFIG,
    full: bool = False,
) -> PairSet:
    """Pairs as configured by a :class:`CPQSConfig` (``selectors.cpqs``).

    Every source is built whole, then :func:`select` drops the groups whose instruction is in ``avoid`` (the pool
    to be scored) and only then draws ``n_pairs`` (default ``cfg.n_pairs``; None = all) — or, for ``composition:
    reference_mix``, ``cfg.reference_mix_texts`` texts. ``full=True`` returns the whole set undrawn (every positive
    and negative for ``reference_mix``), for callers that draw per fold (``out_of_fold``)."""
    seed = cfg.seed if seed is None else seed
    composition = "reference" if cfg.composition == "reference_mix" else cfg.composition
    whole = _build(cfg, mirror, pool_examples, negatives_path, exclude, seed, None, None, composition)
    if full:
        return whole
    return select(whole, cfg, avoid, seed=seed, n_pairs=n_pairs)


def select(
    whole: PairSet,
    cfg: CPQSConfig,
    avoid: Iterable[Example] | None,
    *,
    seed: int | None = None,
    n_pairs: int | None = _FROM_CONFIG,
) -> PairSet:
    """The training set drawn from a whole pair set for a pool ``avoid``: overlap dropped first, then ``n_pairs``
    units (:func:`draw`) or, for ``composition: reference_mix``, ``cfg.reference_mix_texts`` texts."""
    seed = cfg.seed if seed is None else seed
    if cfg.composition == "reference_mix":
        return reference_mix(whole, avoid, int(cfg.reference_mix_texts), seed)
    return draw(whole, avoid, cfg.n_pairs if n_pairs is _FROM_CONFIG else n_pairs, seed)[0]


def _build(
    cfg: CPQSConfig,
    mirror: str | os.PathLike | None,
    pool_examples: Sequence[Example] | None,
    negatives_path: str | os.PathLike | None,
    exclude: Mapping[str, Sequence[Any]] | None,
    seed: int,
    avoid: Iterable[Example] | None,
    n_pairs: int | None,
    composition: str,
) -> PairSet:
    src = cfg.pairs_source
    avoid = list(avoid) if avoid is not None else None
    if src == "pairs":
        return from_paired_file(
            cfg.pairs,
            cfg.positive_field,
            cfg.negative_field,
            drop_identical=cfg.drop_identical,
            exclude=exclude,
            n_pairs=n_pairs,
            seed=seed,
            avoid=avoid,
            mirror=mirror,
        )
    if src == "join":
        if not cfg.negatives:
            raise PairsError("pairs_source=join needs selectors.cpqs.negatives (the weak-answer file)")
        return from_two_files(
            cfg.pairs,
            cfg.negatives,
            drop_identical=cfg.drop_identical,
            n_pairs=n_pairs,
            seed=seed,
            avoid=avoid,
            mirror=mirror,
        )
    if src == "multi_model":
        return from_multi_model(
            cfg.positive_generators,
            cfg.negative_generators,
            drop_identical=cfg.drop_identical,
            n_pairs=n_pairs,
            seed=seed,
            avoid=avoid,
            mirror=mirror,
        )
    if src == "generate":
        path = negatives_path or cfg.negatives
        if pool_examples is None or path is None or not Path(path).exists():
            raise PairsError(
                f"pairs_source=generate needs the pool and the make-negatives output (negatives file: {path!r})"
            )
        return from_generated(
            pool_examples,
            path,
            drop_identical=cfg.drop_identical,
            n_pairs=n_pairs,
            seed=seed,
            avoid=avoid,
            composition=composition,
            drop_unfinished=cfg.generation_drop_unfinished,
        )
    if src == "official":
        return from_official(
            OfficialFiles(cfg.pairs, cfg.official_positives, cfg.official_negatives, cfg.official_negative_field),
            composition=composition,
            question_format=cfg.question_format,
            drop_identical=cfg.drop_identical,
            n_pairs=n_pairs,
            seed=seed,
            avoid=avoid,
            mirror=mirror,
        )
    raise PairsError(f"unknown pairs_source {src!r}; use pairs, join, multi_model, generate or official")
