"""``external``: precomputed scores joined to the pool — a published scored dataset, another tool's output.

Configured under ``selectors.external``: ``source`` (a ``.json`` / ``.jsonl`` / ``.jsonl.gz`` / ``.parquet`` file, or
a Hub dataset spec ``hf:owner/name[:config][@revision][#split]``, read by
:func:`cpqs_bench.data.pool.iter_raw`, the pool readers' record iterator), ``column`` (the score field; a dotted
path such as ``scores.reward`` reaches into a nested object), ``join`` and ``label``.

**Join.** ``join: hash`` (default): each source record is read with the pool readers' schemas
(:func:`cpqs_bench.data.schemas.detect` / ``normalise``: Alpaca ``instruction``/``input``/``output``, ShareGPT
``conversations``, chat ``messages``, GSM8K ...) and keyed by :func:`join_key` — a sha256 of the normalised
(instruction [+ input], response): the prompt's non-system turns, Unicode NFKC, every whitespace run collapsed to one
space, trimmed. So ``instruction + "\\n" + input`` (OpenDataArena-Tool, MoDS), ``instruction + "\\n\\n" + input``
(this project's Alpaca reader) and different line endings all meet. ``join: <column>``: the source record's
``<column>`` value (a string or an integer) matched to the pool example's id (the pool reader takes ids from the
source's ``id`` / ``task_id`` / ``idx`` / ``uid`` field, else a content hash).

**Unmatched rows are never scored.** A pool example no source record matches is returned with a NaN score and
``exclude="external_unmatched"``; a matched record whose score is null / not finite gives
``exclude="external_no_score"``; both are counted in :class:`JoinReport`, printed as one line on stderr, written to
``external_join.json`` in the work directory and carried on every row (``extra["external"]``). Source records that
match no pool example are counted too. Two source records with the same key and different scores are an error
naming both places; a record without the score column, a non-numeric score or a record the schemas cannot read
(with ``join: hash``) is an error naming the file and line.

**The arm's name** is ``external``, or ``external:<label>`` with ``selectors.external.label`` (letters, digits,
``.``, ``_``, ``-``; never a path): :func:`arm_name`.

**Bringing a published scored dataset in.** (1) Get it as a file or name it on the Hub: e.g. the JSONL that
OpenDataArena-Tool's ``data_scorer`` writes (``instruction`` / ``output`` plus its score fields), a DEITA- or
AlpaGasus-scored release, or your own tool's output. (2) Point the config at it and name the score:
``selectors.external.source=hf:<owner>/<dataset>#train selectors.external.column=<score field>
selectors.external.label=<short name>``. (3) If it carries the pool's ids (a scored copy of the same source file),
``selectors.external.join=id`` is exact; otherwise the default hash join matches on content, so whitespace and the
instruction/input separator do not matter but any other edit (a re-generated answer, a trimmed prompt) leaves the row
unmatched — the report says how many, and those rows are excluded, never ranked. Higher score = keep: negate a
"lower is better" column in the file first.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.io import write_json
from cpqs_bench.selectors.base import EMPTY_RESPONSE, Needs, ScoreRow, ScoringContext, is_empty_response

UNMATCHED = "external_unmatched"
NO_SCORE = "external_no_score"
REPORT_FILE = "external_join.json"
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ExternalError(ValueError):
    pass


def arm_name(label: str | None) -> str:
    """``external`` or ``external:<label>``; a label that looks like a path (or is empty) is refused."""
    if label is None:
        return "external"
    if not _LABEL.match(label) or ".." in label:
        raise ExternalError(
            f"selectors.external.label={label!r}: use a short name of letters, digits, '.', '_', '-' "
            "(it names the arm; never a path)"
        )
    return f"external:{label}"


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def join_key(prompt: Sequence[Mapping[str, str]], response: str) -> str:
    """sha256 of the normalised (instruction [+ input], response): non-system prompt turns joined, NFKC, whitespace
    runs collapsed, trimmed."""
    instruction = "\n".join(m["content"] for m in prompt if m["role"] != "system")
    blob = _norm(instruction) + "\x1f" + _norm(response)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def example_key(ex: Example) -> str:
    return join_key(ex.prompt, ex.response)


def _column(rec: Mapping[str, Any], column: str, loc: str) -> Any:
    value: Any = rec
    for part in column.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise ExternalError(
                f"{loc}: no score column {column!r} (selectors.external.column); keys: {sorted(rec)[:12]}"
            )
        value = value[part]
    return value


def _score(value: object, loc: str, column: str) -> float:
    """The score as a float; NaN for null / non-finite (an unscored record); an error for anything else."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                return float(value) if math.isfinite(float(value)) else math.nan
            except ValueError:
                pass
        raise ExternalError(f"{loc}: score column {column!r} holds {value!r}, not a number")
    return float(value) if math.isfinite(float(value)) else math.nan


def read_scores(
    records: Iterable[tuple[str, Any, Any]], column: str, join: str = "hash"
) -> dict[str, tuple[float, str]]:
    """key -> (score, location) from ``(location, record, error)`` triples (:func:`cpqs_bench.data.pool.iter_raw`);
    the key is :func:`join_key` (``join="hash"``) or the record's ``join`` column as a string."""
    from cpqs_bench.data.schemas import RecordError, detect, normalise

    out: dict[str, tuple[float, str]] = {}
    schema: str | None = None
    for loc, rec, err in records:
        if err is not None:
            raise ExternalError(f"{loc}: unreadable score record ({err[0]}: {err[1]})")
        if not isinstance(rec, Mapping):
            raise ExternalError(f"{loc}: a score record must be a JSON object, got {type(rec).__name__}")
        score = _score(_column(rec, column, loc), loc, column)
        if join == "hash":
            schema = schema or detect(dict(rec))
            if schema is None:
                raise ExternalError(
                    f"{loc}: cannot read an (instruction, response) from keys {sorted(rec)[:12]} to hash-join; "
                    "use selectors.external.join=<id column>"
                )
            try:
                ex = normalise(dict(rec), schema)
            except RecordError as exc:
                raise ExternalError(f"{loc}: {exc.reason}: {exc.detail} (hash join needs the text)") from None
            key = example_key(ex)
        else:
            raw = _column(rec, join, loc)
            if isinstance(raw, bool) or not isinstance(raw, (str, int)):
                raise ExternalError(f"{loc}: id column {join!r} holds {raw!r}, not a string or an integer")
            key = str(raw)
        if key in out:
            prev, prev_loc = out[key]
            if not (prev == score or (math.isnan(prev) and math.isnan(score))):
                raise ExternalError(
                    f"{loc}: the same {'content' if join == 'hash' else join + ' ' + repr(key)} as {prev_loc} "
                    f"with a different score ({score} vs {prev})"
                )
            continue
        out[key] = (score, loc)
    if not out:
        raise ExternalError("the score source has no records")
    return out


@dataclass(frozen=True)
class JoinReport:
    source: str
    column: str
    join: str
    pool: int  # pool rows
    matched: int  # pool rows with a finite external score
    unmatched: int  # pool rows no source record matches (excluded)
    no_score: int  # pool rows matched to a record without a finite score (excluded)
    source_records: int
    source_unused: int  # source records that match no pool row

    def line(self, name: str = "external") -> str:
        return (
            f"{name}: {self.matched}/{self.pool} pool rows scored from {self.source} ({self.join} join on "
            f"{self.column!r}); {self.unmatched} unmatched and {self.no_score} without a score excluded; "
            f"{self.source_unused} of {self.source_records} source records match no pool row"
        )


def join_rows(
    examples: Sequence[Example],
    scores: Mapping[str, tuple[float, str]],
    join: str,
    n_tokens: Mapping[str, int],
    source: str,
    column: str,
) -> tuple[list[ScoreRow], JoinReport]:
    """Rows (input order) of the pool joined to ``scores`` (:func:`read_scores`) and the counts."""
    rows = []
    used: set[str] = set()
    matched = unmatched = no_score = 0
    for ex in examples:
        key = example_key(ex) if join == "hash" else ex.id
        n = int(n_tokens.get(ex.id, 0))
        hit = scores.get(key)
        if hit is not None:
            used.add(key)
        if is_empty_response(ex):
            rows.append(ScoreRow(ex.id, math.nan, n, exclude=EMPTY_RESPONSE))
        elif hit is None:
            unmatched += 1
            rows.append(ScoreRow(ex.id, math.nan, n, exclude=UNMATCHED))
        elif math.isnan(hit[0]):
            no_score += 1
            rows.append(ScoreRow(ex.id, math.nan, n, exclude=NO_SCORE, extra={"external_at": hit[1]}))
        else:
            matched += 1
            rows.append(ScoreRow(ex.id, hit[0], n, extra={"external_at": hit[1]}))
    report = JoinReport(
        source, column, join, len(examples), matched, unmatched, no_score, len(scores), len(scores) - len(used)
    )
    return rows, report


class ExternalSelector:
    """Scores from ``selectors.external.source`` joined to the pool (see the module docstring)."""

    name = "external"
    needs = Needs.NOTHING  # the target tokenizer only (n_tokens)

    def __init__(self, label: str | None = None):
        self.label = label
        if label is not None:
            self.name = arm_name(label)

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        from cpqs_bench.data.pool import iter_raw
        from cpqs_bench.selectors.base import response_tokens

        e = ctx.config.selectors.external
        if not e.source:
            raise ExternalError(
                "selector 'external' needs selectors.external.source=FILE|hf:owner/name (a scored dataset), "
                "selectors.external.column=<score field>"
            )
        name = arm_name(self.label if self.label is not None else e.label)
        scores = read_scores(iter_raw(e.source), e.column, e.join)
        tok = ctx.tokenizer()
        n_tokens = {ex.id: len(response_tokens(tok, ex, ctx.config.prompt)) for ex in examples}
        rows, report = join_rows(examples, scores, e.join, n_tokens, e.source, e.column)
        print(report.line(name), file=sys.stderr)
        write_json(Path(ctx.workdir) / REPORT_FILE, {"arm": name, **asdict(report)})
        summary = {"matched": report.matched, "unmatched": report.unmatched, "no_score": report.no_score}
        return [ScoreRow(r.id, r.score, r.n_tokens, r.exclude, {**r.extra, "external": summary}) for r in rows]
