"""The two validity fixtures: planted defects (clean rows + known-bad variants) and labelled pairs.

* :func:`planted_fixture` — ``n_clean`` clean rows of ``validate.clean`` (general domain; instructions de-duplicated,
  a seeded sample) plus, when a math / code kind is asked for, ``n_planted_per_kind`` clean rows of the math pool
  (GSM8K train: chains of thought ending ``#### N``) and of the code pool (CodeAlpaca rows whose code has a bug
  site). For every kind, ``n_planted_per_kind`` source rows of its domain (a seeded sample of the rows the kind
  applies to) get one variant each. A variant keeps its source's prompt; its id is ``planted/<kind>/<source id>``
  and its metadata names ``kind`` and ``source``. Clean ids are ``clean/<domain>/<id>``.
* :func:`pairs_fixture` — the mirror's AlpacaEval answers of ``validate.pairs_strong`` and ``validate.pairs_weak``
  to the same prompts (joined on the prompt; identical answers dropped), a seeded sample of ``n_pairs``; ids
  ``pairs/strong/<k>`` and ``pairs/weak/<k>``.
* :func:`drop_overlap` — removes every row whose instruction (``selectors/cpqs/pairs.py: overlap_key``) a CPQS
  checkpoint was trained or validated on (its ``training_instructions.json``), with counts.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.selectors.cpqs.pairs import overlap_key, prompt_key
from cpqs_bench.validity import defects

if TYPE_CHECKING:
    from cpqs_bench.config import DataConfig, ValidateConfig
    from cpqs_bench.data.pool import Pool

# The pools the math / code kinds draw clean rows from (mirror names). TODO(config): validate.math_pool /
# validate.code_pool once the integrator adds them.


class FixtureError(ValueError):
    pass


@dataclass
class PlantedFixture:
    clean: list[Example]  # metadata: domain
    planted: list[Example]  # metadata: kind, source (the clean id), domain
    kinds: list[str]
    sources: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # kind -> rows short of n_planted_per_kind

    @property
    def examples(self) -> list[Example]:
        return [*self.clean, *self.planted]


@dataclass
class PairsFixture:
    examples: list[Example]
    pairs: list[tuple[str, str]]  # (strong id, weak id)
    sources: dict[str, Any] = field(default_factory=dict)


def _read(name: str, data: DataConfig) -> Pool:
    from cpqs_bench.data.pool import read_pool

    return read_pool(name, mirror=data.mirror, max_rejected_fraction=data.max_rejected_fraction)


def _distinct(examples: Sequence[Example]) -> list[Example]:
    """The first row of every instruction (overlap key), non-empty responses only."""
    seen: set[str] = set()
    out = []
    for ex in examples:
        key = overlap_key(ex)
        if key in seen or not ex.response.strip():
            continue
        seen.add(key)
        out.append(ex)
    return out


def _sample(rows: Sequence[Example], n: int, rng: random.Random) -> list[Example]:
    rows = sorted(rows, key=lambda e: e.id)  # order-independent sample
    return rows if n >= len(rows) else sorted(rng.sample(rows, n), key=lambda e: e.id)


def _tag(ex: Example, new_id: str, **meta: str) -> Example:
    return Example(new_id, ex.prompt, ex.response, {**ex.metadata, **meta, "source_id": ex.id})


def build_planted(
    pools: Mapping[str, Sequence[Example]],
    kinds: Sequence[defects.DefectKind],
    *,
    n_clean: int,
    n_per_kind: int,
    seed: int,
) -> PlantedFixture:
    """The planted fixture from clean rows per domain (``pools``: domain -> rows); see the module docstring."""
    rng = random.Random(seed)
    domains_needed = {k.domain for k in kinds} | {"general"}
    clean: list[Example] = []
    by_domain: dict[str, list[Example]] = {}
    for domain in defects.DOMAINS:
        if domain not in domains_needed:
            continue
        rows = _distinct(pools.get(domain, ()))
        if domain != "general":  # only rows some kind of this domain can corrupt
            dk = [k for k in kinds if k.domain == domain]
            rows = [ex for ex in rows if any(defects.plant(k, ex, seed, ()) is not None for k in dk)]
        n = n_clean if domain == "general" else n_per_kind
        chosen = _sample(rows, n, rng)
        if not chosen:
            raise FixtureError(f"no clean {domain} rows to plant defects in")
        by_domain[domain] = [_tag(ex, f"clean/{domain}/{ex.id}", domain=domain) for ex in chosen]
        clean += by_domain[domain]
    planted: list[Example] = []
    skipped: dict[str, int] = {}
    for kind in kinds:
        rows = by_domain[kind.domain]
        variants: list[Example] = []
        order = list(rows)
        random.Random(f"{seed}/{kind.name}").shuffle(order)
        for src in order:
            if len(variants) >= n_per_kind:
                break
            text = defects.plant(kind, src, seed, rows)
            if text is None:
                continue
            variants.append(
                Example(
                    f"planted/{kind.name}/{src.metadata['source_id']}",
                    src.prompt,
                    text,
                    {"kind": kind.name, "source": src.id, "domain": kind.domain},
                )
            )
        if not variants:
            raise FixtureError(f"defect kind {kind.name!r} applies to none of the {len(rows)} clean {kind.domain} rows")
        if len(variants) < n_per_kind:
            skipped[kind.name] = n_per_kind - len(variants)
        planted += variants
    return PlantedFixture(clean, planted, [k.name for k in kinds], skipped=skipped)


def planted_fixture(v: ValidateConfig, data: DataConfig) -> PlantedFixture:
    """Read the clean pools named by ``validate`` (from ``data.mirror``) and build the planted fixture."""
    kinds = defects.resolve(v.kinds)
    names = {"general": v.clean, "math": v.math_pool, "code": v.code_pool}
    pools: dict[str, list[Example]] = {}
    sources: dict[str, Any] = {}
    for domain in ["general", *sorted({k.domain for k in kinds} - {"general"})]:
        read = _read(names[domain], data)
        pools[domain] = read.examples
        sources[domain] = {"name": names[domain], **read.summary()}
    fixture = build_planted(pools, kinds, n_clean=v.n_clean, n_per_kind=v.n_planted_per_kind, seed=v.seed)
    fixture.sources = sources
    return fixture


def join_pairs(
    strong: Sequence[Example], weak: Sequence[Example], *, n_pairs: int | None, seed: int
) -> tuple[list[Example], list[tuple[str, str]], Counter]:
    """Strong and weak answers to the same prompt (first answer per prompt; identical answers dropped)."""
    skipped: Counter = Counter()
    weak_by: dict[str, Example] = {}
    for ex in weak:
        weak_by.setdefault(prompt_key(ex.prompt), ex)
    joined: list[tuple[str, Example, Example]] = []
    seen: set[str] = set()
    for ex in strong:
        key = prompt_key(ex.prompt)
        if key in seen:
            skipped["duplicate_prompt"] += 1
            continue
        seen.add(key)
        other = weak_by.get(key)
        if other is None:
            skipped["no_weak_answer"] += 1
        elif ex.response.strip() == other.response.strip() or not ex.response.strip() or not other.response.strip():
            skipped["identical_or_empty"] += 1
        else:
            joined.append((key, ex, other))
    joined.sort(key=lambda t: t[0])
    if n_pairs is not None and n_pairs < len(joined):
        joined = sorted(random.Random(seed).sample(joined, n_pairs), key=lambda t: t[0])
    examples, pairs = [], []
    for k, (_, s, w) in enumerate(joined):
        sid, wid = f"pairs/strong/{k}", f"pairs/weak/{k}"
        examples += [_tag(s, sid, side="strong"), _tag(w, wid, side="weak")]
        pairs.append((sid, wid))
    return examples, pairs, skipped


def pairs_fixture(v: ValidateConfig, data: DataConfig) -> PairsFixture:
    strong = _read(f"alpaca_eval/{v.pairs_strong}", data)
    weak = _read(f"alpaca_eval/{v.pairs_weak}", data)
    examples, pairs, skipped = join_pairs(strong.examples, weak.examples, n_pairs=v.n_pairs, seed=v.seed)
    if not pairs:
        raise FixtureError(f"alpaca_eval/{v.pairs_strong} and alpaca_eval/{v.pairs_weak} share no usable prompt")
    return PairsFixture(
        examples,
        pairs,
        {"strong": strong.summary(), "weak": weak.summary(), "skipped": dict(skipped), "n_pairs": len(pairs)},
    )


# ------------------------------------------------------------------------------------------------ overlap
def training_keys(checkpoint: str | Path) -> set[str]:
    """The instruction hashes a CPQS checkpoint was trained / validated on (``training_instructions.json``)."""
    from cpqs_bench.io import read_json
    from cpqs_bench.selectors.cpqs.checkpoint import INSTRUCTIONS

    path = Path(checkpoint) / INSTRUCTIONS
    if not path.exists():
        raise FixtureError(
            f"{path} is missing: cannot check that the validity rows are instruction-disjoint from the CNN's "
            "training pairs (retrain the checkpoint with this version)"
        )
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("hashes"), list):
        raise FixtureError(f"{path}: expected {{'hashes': [...]}}")
    return set(data["hashes"])


def overlaps(ex: Example, keys: set[str]) -> bool:
    from cpqs_bench.selectors.cpqs.checkpoint import instruction_hash

    return instruction_hash(overlap_key(ex)) in keys


def drop_overlap(
    planted: PlantedFixture | None, pairs: PairsFixture | None, keys: set[str]
) -> tuple[PlantedFixture | None, PairsFixture | None, dict[str, Any]]:
    """Both fixtures without the rows whose instruction is in ``keys``; a clean row's variants go with it and a
    pair goes as a whole. Returns the counts of excluded rows (planted per kind, clean, pairs)."""
    counts: dict[str, Any] = {}
    if planted is not None:
        bad_clean = {ex.id for ex in planted.clean if overlaps(ex, keys)}
        gone = [ex for ex in planted.planted if ex.metadata["source"] in bad_clean or overlaps(ex, keys)]
        gone_ids = {ex.id for ex in gone}
        counts["planted"] = {
            "clean": len(bad_clean),
            "by_kind": dict(Counter(ex.metadata["kind"] for ex in gone)),
        }
        planted = PlantedFixture(
            [ex for ex in planted.clean if ex.id not in bad_clean],
            [ex for ex in planted.planted if ex.id not in gone_ids],
            planted.kinds,
            planted.sources,
            planted.skipped,
        )
    if pairs is not None:
        by_id = {ex.id: ex for ex in pairs.examples}
        kept = [(s, w) for s, w in pairs.pairs if not (overlaps(by_id[s], keys) or overlaps(by_id[w], keys))]
        counts["pairs"] = len(pairs.pairs) - len(kept)
        ids = {i for p in kept for i in p}
        pairs = PairsFixture([ex for ex in pairs.examples if ex.id in ids], kept, pairs.sources)
    return planted, pairs, counts


# ------------------------------------------------------------------------------------------------ tiny fixtures
_TINY_SENTENCES = (
    "The river bends around the old mill.",
    "Farmers bring their grain there every autumn.",
    "The wheel turns slowly in the current.",
    "Flour is packed into cloth sacks for the market.",
    "Children watch the boats from the wooden bridge.",
    "At dusk the miller locks the heavy door.",
)
_TINY_CODE = (
    "```python\ndef count(xs, target):\n    n = 0\n    for i in range(len(xs)):\n        if xs[i] == target:\n"
    "            n = n + 1\n    return n\n```"
)


def _user(i: str, text: str, response: str) -> Example:
    return Example(i, ({"role": "user", "content": text},), response)


def tiny_fixtures(seed: int = 0) -> tuple[PlantedFixture, PairsFixture]:
    """Small synthetic fixtures for the contract kit (no files): 6 general, 2 math and 2 code clean rows with 2
    variants of every built-in kind, and 4 labelled pairs (a full answer vs a one-sentence one)."""
    s = _TINY_SENTENCES
    general = [
        _user(f"g{i}", f"Describe the mill scene, part {i}.", " ".join(s[(i + j) % len(s)] for j in range(4 + i % 2)))
        for i in range(6)
    ]
    math_rows = [
        _user(
            f"m{i}",
            f"Ann has {i + 3} apples and buys {2 * i + 1} more. How many?",
            f"{i + 3} + {2 * i + 1} = {3 * i + 4}.\n#### {3 * i + 4}",
        )
        for i in range(2)
    ]
    code_rows = [_user(f"c{i}", f"Write a function that counts a value in a list ({i}).", _TINY_CODE) for i in range(2)]
    builtin = [defects.KINDS[k] for k in _BUILTIN_KINDS]
    planted = build_planted(
        {"general": general, "math": math_rows, "code": code_rows}, builtin, n_clean=6, n_per_kind=2, seed=seed
    )
    strong = [_user(f"s{i}", f"Tell me about the mill ({i}).", " ".join(s[i : i + 4])) for i in range(4)]
    weak = [_user(f"w{i}", f"Tell me about the mill ({i}).", s[(i + 2) % len(s)]) for i in range(4)]
    examples, pairs, _ = join_pairs(strong, weak, n_pairs=None, seed=seed)
    return planted, PairsFixture(examples, pairs, {"source": "tiny synthetic fixture"})


_BUILTIN_KINDS = ("irrelevant", "truncated", "shuffled", "generic", "padded", "math_wrong_final", "code_bug")
