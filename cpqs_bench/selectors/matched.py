"""Matched random controls: random data at an arm's trained tokens, or at its response-length profile.

A selector that keeps long answers trains on more tokens than ``random`` at the same example count, so "beats
random" can mean "more tokens" (Zhao et al. 2024, "Long Is More for Alignment"). Two controls, redrawn per seed,
separate the two explanations (issue #27):

* ``random@tokens:ARM`` (:func:`random_at_tokens`): examples in a seeded random order, taken under the token stop
  rule (:func:`take_within`) until ARM's trained tokens of that seed are reached. Its trained tokens are at most
  ARM's and short of them by less than one example (the one that would have crossed the budget).
* ``random~ARM`` (:func:`random_length_matched`): a random draw stratified on the pool's deciles of *response*
  tokens, so that the count in every decile equals ARM's selection's (same number of examples, the same length
  profile); :func:`token_summary` reports its trained tokens and their ratio to ARM's.

These are selection-stage functions over the pool, the reference arm's selection and the token counts, not score
selectors: they need the reference arm's selection of the same seed, which no ``Selector.score`` sees. They live in
the selectors layer so that :mod:`cpqs_bench.select` can share the stop rule (:func:`take_within`) and the token
bookkeeping (:func:`trained_of`, :func:`token_summary`) with them (``select`` is the later layer).

Randomness: each example's draw is ``sha256(kind, arm, seed, id)`` mapped to [0, 1) — the scheme of
:mod:`cpqs_bench.selectors.random` with the control's name as salt, so a control does not depend on pool order, two
controls of one seed are independent draws, and neither is a prefix of the ``random`` arm's order.

Token counts: a mapping id -> trained tokens (an ``int``) or -> ``(trained, supervised)`` as
``cpqs_bench.finetune.dataset.trained_token_counts`` returns them (one epoch, after ``max_length`` truncation;
an example dropped by the length policy counts 0).

Deciles follow ``numpy.quantile`` (linear interpolation) over the whole pool's response-token counts; an example's
decile is the number of the 9 cut points that are <= its count (``numpy.searchsorted(..., side="right")``), so tied
counts always share a decile and the arm's quota in every decile is drawable from the pool (the arm is in the pool).

No published code implements these controls; the stratification is ordinary proportional-to-quota stratified
sampling. Differences from "Long Is More" (which compares against length *selection*, not length-matched random):
we match the arm's whole decile profile instead of taking the longest responses.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from cpqs_bench.config import PromptConfig
    from cpqs_bench.data.example import Example

_DENOMINATOR = float(1 << 53)
TOKENS = "tokens"  # kind of random@tokens:ARM
LENGTH = "length"  # kind of random~ARM
_TOKENS_PREFIX = "random@tokens:"
_LENGTH_PREFIX = "random~"
DECILES = 10


class ControlError(ValueError):
    """A control cannot be drawn from these inputs (unknown ids, missing counts, an empty reference arm)."""


def parse_control(name: str) -> tuple[str, str] | None:
    """``random@tokens:ARM`` -> ``("tokens", ARM)``, ``random~ARM`` -> ``("length", ARM)``, any other arm -> None."""
    for prefix, kind in ((_TOKENS_PREFIX, TOKENS), (_LENGTH_PREFIX, LENGTH)):
        if name.startswith(prefix):
            arm = name[len(prefix) :]
            if not arm or arm != arm.strip():
                raise ControlError(f"control arm {name!r} names no reference arm (expected {prefix}ARM)")
            if parse_control(arm) is not None:
                raise ControlError(f"control arm {name!r}: the reference arm {arm!r} is itself a control")
            return kind, arm
    return None


def control_name(kind: str, arm: str) -> str:
    if kind == TOKENS:
        return _TOKENS_PREFIX + arm
    if kind == LENGTH:
        return _LENGTH_PREFIX + arm
    raise ControlError(f"unknown control kind {kind!r} (known: {TOKENS!r}, {LENGTH!r})")


def draw(salt: str, seed: int, example_id: str) -> float:
    """A deterministic uniform float in [0, 1) for (salt, seed, id); 53 bits."""
    digest = hashlib.sha256(f"{salt}\x00{seed}\x00{example_id}".encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / _DENOMINATOR


# ------------------------------------------------------------------------------------------- token bookkeeping
def trained_of(value: object) -> int:
    """Trained tokens of one entry of a token mapping: an ``int`` or a ``(trained, supervised)`` pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ControlError(f"a token count is an int or a (trained, supervised) pair, got {value!r}")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ControlError(f"a trained-token count must be a non-negative int, got {value!r}")
    return value


def supervised_of(value: object) -> int | None:
    """Supervised tokens of one entry (None when the mapping holds trained tokens only)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        s = value[1]
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ControlError(f"a supervised-token count must be a non-negative int, got {s!r}")
        return s
    return None


def check_counts(ids: Iterable[str], tokens: Mapping[str, Any], what: str = "token counts") -> None:
    """Every id has an entry in ``tokens`` (named in the error: the counts were made for another pool)."""
    missing = [i for i in ids if i not in tokens]
    if missing:
        sample = ", ".join(repr(i) for i in missing[:5])
        raise ControlError(
            f"{len(missing)} id(s) have no entry in the {what} (e.g. {sample}); were they counted on another pool?"
        )


def token_summary(kept: Sequence[str], tokens: Mapping[str, Any] | None) -> dict[str, Any]:
    """``n_examples``, ``trained_tokens`` and ``supervised_tokens`` (one epoch) of a list of kept ids.

    ``n_rows``: kept examples with at least one trained token (those the length policy did not drop), the rows the
    Trainer sees. Without a token mapping only ``n_examples`` is known (the token fields are None)."""
    out: dict[str, Any] = {"n_examples": len(kept), "n_rows": None, "trained_tokens": None, "supervised_tokens": None}
    if tokens is None:
        return out
    check_counts(kept, tokens)
    trained = [trained_of(tokens[i]) for i in kept]
    sup = [supervised_of(tokens[i]) for i in kept]
    out["n_rows"] = sum(t > 0 for t in trained)
    out["trained_tokens"] = sum(trained)
    known = [s for s in sup if s is not None]
    out["supervised_tokens"] = None if len(known) < len(sup) else sum(known)
    return out


def take_within(ordered_ids: Sequence[str], tokens: Mapping[str, Any], budget: int) -> int:
    """The stop rule: how many of ``ordered_ids`` (in that order) are kept under a trained-token ``budget``.

    Examples are taken in order and the rule stops **before** the first example whose trained tokens would take
    the running total over ``budget``; nothing after it is considered (no skip-and-continue fill), so the kept set
    is always a prefix of the order."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ControlError(f"a token budget must be a non-negative int, got {budget!r}")
    check_counts(ordered_ids, tokens)
    total = 0
    for n, ex_id in enumerate(ordered_ids):
        t = trained_of(tokens[ex_id])
        if total + t > budget:
            return n
        total += t
    return len(ordered_ids)


# ------------------------------------------------------------------------------------------------------ controls
def _unique(ids: Sequence[str], what: str) -> list[str]:
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ControlError(f"{what} contains duplicate ids (e.g. {', '.join(map(repr, dup))})")
    return ids


def _rows(
    order: Sequence[str], scores: Mapping[str, float], kept: set[str], reasons: Mapping[str, str], other: str
) -> list[dict[str, Any]]:
    """Rows in :func:`cpqs_bench.select.select`'s format: every pool id once, ranked by the control's own order."""
    return [
        {
            "id": ex_id,
            "score": scores[ex_id],
            "rank": rank,
            "kept": ex_id in kept,
            "reason": reasons[ex_id] if ex_id in kept else other,
        }
        for rank, ex_id in enumerate(order, 1)
    ]


def random_at_tokens(
    pool_ids: Sequence[str],
    tokens: Mapping[str, Any],
    arm_trained_tokens: int,
    seed: int,
    *,
    salt: str = _TOKENS_PREFIX,
) -> list[dict[str, Any]]:
    """``random@tokens:ARM``: the pool in a seeded random order, kept under the stop rule (:func:`take_within`)
    with ``arm_trained_tokens`` (ARM's one-epoch trained tokens of this seed) as the budget.

    ``salt``: makes the draw independent of other controls (pass the full control name, e.g.
    ``"random@tokens:cpqs"``). Rows: ``select()``'s format, score = the draw, rank = position in the random order."""
    pool = _unique(pool_ids, "the pool")
    if not pool:
        raise ControlError("random@tokens: the pool is empty")
    if isinstance(arm_trained_tokens, bool) or not isinstance(arm_trained_tokens, int) or arm_trained_tokens <= 0:
        raise ControlError(
            f"random@tokens: the reference arm's trained tokens must be a positive int, got {arm_trained_tokens!r}"
        )
    check_counts(pool, tokens)
    scores = {i: draw(salt, seed, i) for i in pool}
    order = sorted(pool, key=lambda i: (scores[i], i))
    n = take_within(order, tokens, arm_trained_tokens)
    if n == 0:
        raise ControlError(
            f"random@tokens: the first drawn example ({order[0]!r}, {trained_of(tokens[order[0]])} trained tokens) "
            f"alone exceeds the reference arm's {arm_trained_tokens} tokens"
        )
    kept = set(order[:n])
    return _rows(order, scores, kept, dict.fromkeys(kept, "random within token budget"), "beyond token budget")


def decile_edges(values: Sequence[int]) -> list[float]:
    """The 9 cut points of the pool's deciles (``numpy.quantile``, linear interpolation)."""
    import numpy as np

    if not len(values):
        raise ControlError("deciles of an empty pool")
    return [float(x) for x in np.quantile(np.asarray(values, dtype=float), [k / DECILES for k in range(1, DECILES)])]


def decile_of(value: float, edges: Sequence[float]) -> int:
    """0..9: how many cut points are <= value (ties share a decile)."""
    import bisect

    return bisect.bisect_right(list(edges), value)


def decile_profile(ids: Iterable[str], response_tokens: Mapping[str, int], edges: Sequence[float]) -> list[int]:
    """Count of ``ids`` in each of the 10 deciles defined by ``edges``."""
    counts = [0] * DECILES
    for i in ids:
        counts[decile_of(response_tokens[i], edges)] += 1
    return counts


def random_length_matched(
    pool_ids: Sequence[str],
    response_tokens: Mapping[str, int],
    arm_ids: Sequence[str],
    seed: int,
    *,
    salt: str = _LENGTH_PREFIX,
) -> list[dict[str, Any]]:
    """``random~ARM``: per decile of the pool's response tokens, as many random pool examples as ARM kept there.

    ``response_tokens``: id -> tokens of the response (the pool's, e.g. the token counts the scores carry or the
    supervised tokens of :func:`token_summary`'s mapping); ``arm_ids``: ARM's kept ids (this seed). The control may
    overlap ARM (it draws from the whole pool). Rows: ``select()``'s format, score = the draw, rank = position in the
    random order over the pool, reason names the decile."""
    pool = _unique(pool_ids, "the pool")
    arm = _unique(arm_ids, "the reference arm's selection")
    if not arm:
        raise ControlError("random~ARM: the reference arm kept no examples")
    pool_set = set(pool)
    stray = [i for i in arm if i not in pool_set]
    if stray:
        raise ControlError(
            f"random~ARM: {len(stray)} of the reference arm's ids are not in the pool "
            f"(e.g. {', '.join(map(repr, stray[:5]))}); was it selected from another pool?"
        )
    check_counts(pool, response_tokens, "response-token counts")
    for i in pool:
        v = response_tokens[i]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ControlError(f"response tokens of {i!r} must be a non-negative int, got {v!r}")
    edges = decile_edges([response_tokens[i] for i in pool])
    quota = decile_profile(arm, response_tokens, edges)
    scores = {i: draw(salt, seed, i) for i in pool}
    order = sorted(pool, key=lambda i: (scores[i], i))
    kept: set[str] = set()
    reasons: dict[str, str] = {}
    taken = [0] * DECILES
    for i in order:
        d = decile_of(response_tokens[i], edges)
        if taken[d] < quota[d]:
            taken[d] += 1
            kept.add(i)
            reasons[i] = f"random in response-token decile {d + 1} ({quota[d]} as the arm)"
    assert taken == quota, (taken, quota)  # the arm's own examples fill every quota, so the pool always can
    return _rows(order, scores, kept, reasons, "beyond decile quota")


def matched_report(control_kept: Sequence[str], arm_kept: Sequence[str], tokens: Mapping[str, Any]) -> dict[str, Any]:
    """The control's :func:`token_summary` plus the reference arm's trained tokens and the ratio control / arm."""
    mine, ref = token_summary(control_kept, tokens), token_summary(arm_kept, tokens)
    ratio = mine["trained_tokens"] / ref["trained_tokens"] if ref["trained_tokens"] else None
    return {
        **mine,
        "arm_n_examples": ref["n_examples"],
        "arm_trained_tokens": ref["trained_tokens"],
        "trained_tokens_ratio": ratio,
    }


def pool_response_tokens(
    examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, prompt: PromptConfig
) -> dict[str, int]:
    """id -> response tokens of each pool example: :func:`cpqs_bench.selectors.base.response_tokens` (the
    configured template, no end-of-turn token, no truncation — the length every length-aware selector sees, and
    the ``n_tokens`` a scores file carries). ``random~ARM`` stratifies on these."""
    from cpqs_bench.selectors.base import response_tokens

    return {ex.id: len(response_tokens(tokenizer, ex, prompt)) for ex in examples}


def draw_control(
    name: str,
    pool_ids: Sequence[str],
    seed: int,
    *,
    arm_kept: Sequence[str],
    tokens: Mapping[str, Any] | None = None,
    response_tokens: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """The selection of control arm ``name`` for one seed (salted with ``name``): ``random@tokens:ARM`` needs
    ``tokens`` (ARM's trained tokens are summed from them over ``arm_kept``), ``random~ARM`` needs
    ``response_tokens``. ``arm_kept``: the reference arm's kept ids of the same seed."""
    parsed = parse_control(name)
    if parsed is None:
        raise ControlError(f"{name!r} is not a control arm (random@tokens:ARM or random~ARM)")
    kind, _ = parsed
    if kind == TOKENS:
        if tokens is None:
            raise ControlError(f"{name}: needs the pool's trained-token counts")
        arm_tokens = token_summary(list(arm_kept), tokens)["trained_tokens"]
        return random_at_tokens(pool_ids, tokens, arm_tokens, seed, salt=name)
    if response_tokens is None:
        raise ControlError(f"{name}: needs the pool's response-token counts")
    return random_length_matched(pool_ids, response_tokens, arm_kept, seed, salt=name)


def counts_sha256(counts: Mapping[str, Any]) -> str:
    """A stable hash of a per-id count mapping (trained-token pairs or response tokens), independent of its order:
    what a selection stage that reads the counts puts in its key."""
    import json

    items = sorted((str(k), list(v) if isinstance(v, (tuple, list)) else v) for k, v in counts.items())
    return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode("utf-8")).hexdigest()
