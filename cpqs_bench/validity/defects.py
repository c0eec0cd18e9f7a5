"""Planted defects: known-bad variants of good answers, one small documented function per kind.

A kind is a :class:`DefectKind`: a ``name``, the ``domain`` of clean rows it applies to (``general``, ``math``,
``code``) and a function ``plant(example, rng, donors) -> str | None`` that returns the corrupted response, or None
when the row cannot carry this defect (e.g. too few sentences to reorder). ``rng`` is a :class:`random.Random` seeded
per (seed, kind, row id), so a variant is the same whatever else is planted and in whatever order. ``donors`` are the
other clean rows of the domain (the ``irrelevant`` kind answers with one of them).

Built-in kinds (every planted response differs from its source):

* ``irrelevant`` — a fluent answer to a *different* instruction (another clean row's response);
* ``truncated`` — the answer cut off early: the first 20-50 % of its words, mid-sentence;
* ``shuffled`` — the answer's sentences in a random other order (needs >= 3 sentences);
* ``generic`` — a generic non-answer that fits any instruction;
* ``padded`` — the answer padded by repeating itself (the whole answer repeated once or twice more);
* ``math_wrong_final`` (math) — a GSM8K-style chain of thought whose final number (``#### N``) is changed, so it no
  longer follows from the steps;
* ``code_bug`` (code) — one injected bug in the code: a flipped comparison/arithmetic/boolean operator or an
  off-by-one ``range`` bound.

Plugins add a kind with :func:`register` or an entry point in the group ``cpqs_bench.defects`` whose object is a
:class:`DefectKind`; ``validate.kinds`` may also name one as ``module:attribute``.
"""

from __future__ import annotations

import importlib
import random
import re
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

from cpqs_bench.data.example import Example

DOMAINS = ("general", "math", "code")


class DefectError(ValueError):
    pass


@dataclass(frozen=True)
class DefectKind:
    name: str
    domain: str  # which clean rows it applies to: general | math | code
    plant: Callable[[Example, random.Random, Sequence[Example]], str | None]
    description: str = ""


KINDS: dict[str, DefectKind] = {}


def register(kind: DefectKind) -> DefectKind:
    """Add a kind to the registry (a plugin's way in); a name already taken by another kind is an error."""
    if kind.domain not in DOMAINS:
        raise DefectError(f"defect kind {kind.name!r}: domain {kind.domain!r} is not one of {DOMAINS}")
    if kind.name in KINDS and KINDS[kind.name] is not kind:
        raise DefectError(f"defect kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group="cpqs_bench.defects")}


def _load(spec: str) -> DefectKind:
    module, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise DefectError(f"defect kind {spec!r}: cannot import ({exc})") from None
    if not isinstance(obj, DefectKind):
        raise DefectError(f"defect kind {spec!r} is a {type(obj).__name__}, not a DefectKind")
    return obj


def get(name: str) -> DefectKind:
    """A registered kind, an entry-point kind, or ``module:attribute``."""
    if name in KINDS:
        return KINDS[name]
    eps = _entry_points()
    if name in eps:
        return register(_load(eps[name]))
    if ":" in name:
        return register(_load(name))
    raise DefectError(f"unknown defect kind {name!r}; known: {', '.join(sorted(set(KINDS) | set(eps)))}")


def resolve(names: Sequence[str]) -> list[DefectKind]:
    """The kinds named (empty: every built-in and entry-point kind), in the order given."""
    if not names:
        names = [*KINDS, *(n for n in _entry_points() if n not in KINDS)]
    return [get(n) for n in names]


def rng_for(seed: int, kind: str, row_id: str) -> random.Random:
    """The generator of one (seed, kind, row): independent of what else is planted."""
    return random.Random((seed << 64) ^ (zlib.crc32(kind.encode()) << 32) ^ zlib.crc32(row_id.encode()))


def plant(kind: DefectKind, example: Example, seed: int, donors: Sequence[Example]) -> str | None:
    """The corrupted response of ``example`` (None when the kind does not apply); checked to differ."""
    out = kind.plant(example, rng_for(seed, kind.name, example.id), donors)
    if out is None:
        return None
    if not isinstance(out, str):
        raise DefectError(f"defect kind {kind.name!r} returned {type(out).__name__}, not str, for {example.id!r}")
    return None if out.strip() == example.response.strip() else out


# ------------------------------------------------------------------------------------------------ built-in kinds
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


_MARKER = re.compile(r"^\(?(\d+|[a-zA-Z])[.)]$")  # "1." / "a)" list markers stay with what follows


def sentences(text: str) -> list[str]:
    """Sentences and lines of ``text`` (split after . ! ? and at line breaks; a bare list marker such as ``1.``
    stays with the sentence it numbers), stripped, non-empty."""
    out: list[str] = []
    for part in (s.strip() for s in _SENTENCE.split(text)):
        if not part:
            continue
        if out and _MARKER.match(out[-1]):
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def irrelevant(ex: Example, rng: random.Random, donors: Sequence[Example]) -> str | None:
    """Another clean row's answer (a different instruction, case and whitespace ignored)."""
    own = " ".join(ex.instruction.lower().split())
    others = [d for d in donors if " ".join(d.instruction.lower().split()) != own and d.response.strip()]
    if not others:
        return None
    return rng.choice(others).response


def truncated(ex: Example, rng: random.Random, donors: Sequence[Example]) -> str | None:
    """The first 20-50 % of the answer's words (at least 20 words in the answer; the cut keeps >= 1 word)."""
    words = ex.response.split(" ")
    if len(ex.response.split()) < 20:
        return None
    keep = max(1, int(len(words) * rng.uniform(0.2, 0.5)))
    return " ".join(words[:keep]).rstrip()


def shuffled(ex: Example, rng: random.Random, donors: Sequence[Example]) -> str | None:
    """The answer's sentences in another order (at least 3 distinct sentences), joined by single spaces."""
    parts = sentences(ex.response)
    if len(set(parts)) < 3:
        return None
    order = list(range(len(parts)))
    while order == sorted(order) or [parts[i] for i in order] == parts:
        rng.shuffle(order)
    return " ".join(parts[i] for i in order)


GENERIC = (
    "That is a great question. There are many factors to consider, and the answer depends on the situation.",
    "I'm sorry, but I cannot help with that request.",
    "Thank you for your question. It is important to think carefully about this topic and consider all options.",
    "There are several ways to approach this. Each has its advantages and disadvantages, so it depends on your needs.",
    "As an AI language model, I do not have enough information to answer that. Please provide more details.",
    "This is a complex topic that has been discussed by many people. Ultimately, it is up to you to decide.",
)


def generic(ex: Example, rng: random.Random, donors: Sequence[Example]) -> str | None:
    """One of :data:`GENERIC`: fits any instruction, answers none."""
    return rng.choice(GENERIC)


def padded(ex: Example, rng: random.Random, donors: Sequence[Example]) -> str | None:
    """The answer followed by 1 or 2 more copies of itself (blank line between copies)."""
    if not ex.response.strip():
        return None
    copies = rng.choice((2, 3))
    return "\n\n".join([ex.response.strip()] * copies)


_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)\s*$")


def final_number(text: str) -> str | None:
    """The GSM8K final answer (``#### N`` at the end), commas removed; None when absent."""
    m = _FINAL.search(text.strip())
    return m.group(1).replace(",", "") if m else None


def math_wrong_final(ex: Example, rng: random.Random, donors: Sequence[Example]) -> str | None:
    """The chain of thought kept, its final ``#### N`` replaced by a different number (N ± 1..10, or N × 2)."""
    text = ex.response.strip()
    m = _FINAL.search(text)
    if not m:
        return None
    value = float(m.group(1).replace(",", ""))
    wrong = value * 2 if rng.random() < 0.25 and value != 0 else value + rng.choice([-1, 1]) * rng.randint(1, 10)
    shown = str(int(wrong)) if float(wrong).is_integer() else f"{wrong:g}"
    return text[: m.start()] + f"#### {shown}"


# (pattern, replacement) sites of a one-token bug; each match is one candidate site
_BUGS: tuple[tuple[str, str], ...] = (
    (r"(?<![<>=!])<=(?!=)", ">"),
    (r"(?<![<>=!])>=(?!=)", "<"),
    (r"(?<![<>=!-])<(?![<=])", ">="),
    (r"(?<![<>=!-])>(?![>=])", "<="),
    (r"==", "!="),
    (r"!=", "=="),
    (r"(?<=\s)\+(?=\s)", "-"),
    (r"(?<=\s)-(?=\s)", "+"),
    (r"(?<=\s)\*(?=\s)", "+"),
    (r"\bTrue\b", "False"),
    (r"\bFalse\b", "True"),
    (r"\band\b", "or"),
    (r"\bor\b", "and"),
    (r"\brange\(([^()]*)\)", "range(%s - 1)"),
)
_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)


def code_spans(text: str) -> list[tuple[int, int]]:
    """Where the code is: the bodies of ``` fences, or the whole text when it has no fence."""
    spans = [(m.start(1), m.end(1)) for m in _FENCE.finditer(text)]
    return spans or [(0, len(text))]


def bug_sites(text: str) -> list[tuple[int, int, str]]:
    """Every (start, end, replacement) of a one-token bug inside the code of ``text``."""
    sites = []
    for lo, hi in code_spans(text):
        code = text[lo:hi]
        for pattern, repl in _BUGS:
            for m in re.finditer(pattern, code):
                new = repl % m.group(1) if "%s" in repl else repl
                sites.append((lo + m.start(), lo + m.end(), new))
    return sorted(sites)


def code_bug(ex: Example, rng: random.Random, donors: Sequence[Example]) -> str | None:
    """One bug at a random site of :func:`bug_sites` (operator flip, boolean flip, ``range(n)`` -> ``range(n - 1)``);
    None when the code has no such site."""
    sites = bug_sites(ex.response)
    if not sites:
        return None
    start, end, new = rng.choice(sites)
    return ex.response[:start] + new + ex.response[end:]


for _kind in (
    DefectKind("irrelevant", "general", irrelevant, "an answer to a different instruction (fluent, irrelevant)"),
    DefectKind("truncated", "general", truncated, "the answer cut off after 20-50 % of its words"),
    DefectKind("shuffled", "general", shuffled, "the answer's sentences in a random other order"),
    DefectKind("generic", "general", generic, "a generic non-answer"),
    DefectKind("padded", "general", padded, "the answer repeated 2-3 times"),
    DefectKind("math_wrong_final", "math", math_wrong_final, "chain of thought with a wrong final number"),
    DefectKind("code_bug", "code", code_bug, "code with one injected bug"),
):
    register(_kind)
