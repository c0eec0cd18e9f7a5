"""Read an instruction pool from a file, a named dataset or the Hub, with quarantine of bad records.

Every record read ends up either in ``Pool.examples`` or in ``Pool.rejected`` (with a reason code, a detail and its
``file:line``), so ``kept + rejected == read`` always holds. ``max_rejected_fraction`` turns a mostly-broken file
into a clear error instead of a silently tiny pool.

Hostile records are quarantined one by one, never allowed to abort the pool (issue #34): a JSONL line longer than
``max_record_bytes`` (``data.max_record_bytes``) is skipped without being held in memory whole (reason
``record_too_large``); a row of a JSON array / Parquet / Hub pool over the cap likewise; a record nested deeper than
the JSON parser's recursion limit is ``too_deep``. ``hf:`` specs must name a Hub dataset id (``owner/name``); a local
file or folder is read by the file readers, with its sha256, never as "Hub" data.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Protocol

from cpqs_bench.data import mirror as _mirror
from cpqs_bench.data.example import Example
from cpqs_bench.data.schemas import SCHEMAS, RecordError, detect, normalise
from cpqs_bench.io import sha256_file, write_jsonl


class DataError(ValueError):
    """The pool as a whole is unusable (missing, empty, too many bad records)."""


@dataclass
class Pool:
    source: str
    examples: list[Example]
    rejected: list[dict[str, Any]]
    n_read: int
    schema: str | None
    sha256: str | None  # of the file, when the source is a local file
    by_reason: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.examples)

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "schema": self.schema,
            "read": self.n_read,
            "kept": len(self.examples),
            "rejected": len(self.rejected),
            "rejected_by_reason": dict(self.by_reason),
            "sha256": self.sha256,
        }


_HF_SPEC = re.compile(r"^hf:(?P<name>[^:@#]+)(?::(?P<config>[^@#]+))?(?:@(?P<rev>[^#]+))?(?:#(?P<split>.+))?$")
# a Hub repo id: "owner/name", each part letters, digits, "-", "_", "." (not first or last, no "--" / ".."), as
# huggingface_hub.utils.validate_repo_id accepts, but with the owner required (a bare name is never a local folder)
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(rf"^{_HUB_PART}/{_HUB_PART}$")
DEFAULT_MAX_RECORD_BYTES = 1_000_000  # data.max_record_bytes's default


def parse_hf_spec(spec: str) -> dict[str, str | None]:
    m = _HF_SPEC.match(spec)
    if not m:
        raise DataError(f"bad Hub dataset spec {spec!r}; expected hf:owner/name[:config][@revision][#split]")
    name = m.group("name")
    if not _HUB_ID.match(name) or ".." in name or "--" in name:
        raise DataError(
            f"bad Hub dataset spec {spec!r}: {name!r} is not a Hub dataset id (owner/name). "
            "A local file or folder is not Hub data: pass its path without 'hf:' (it is then read with its sha256)"
        )
    return m.groupdict()


# -------------------------------------------------------------------------------------------------- raw records
RawRecord = tuple[str, Any, str | None]  # (location "file:line", parsed value or None, error reason or None)


class _LineReader(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


def _open_bytes(path: Path) -> BinaryIO | gzip.GzipFile:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _lines(fh: _LineReader, cap: int | None) -> Iterator[tuple[bytes, int | None]]:
    """``(line, None)`` per line, or ``(first bytes, full length)`` for a line longer than ``cap``: the rest of an
    oversized line is read in chunks and dropped, so memory stays bounded by ``cap`` whatever the file holds."""
    while True:
        raw = fh.readline(cap + 1) if cap is not None else fh.readline()
        if not raw:
            return
        if cap is None or len(raw) <= cap or raw.endswith(b"\n") and len(raw) - 1 <= cap:
            yield raw, None
            continue
        size = len(raw)
        head = raw[:200]
        while not raw.endswith(b"\n"):
            raw = fh.readline(1 << 20)
            if not raw:
                break
            size += len(raw)
        yield head, size


def _loads(text: str) -> Any:
    """``json.loads`` with a record nested past the parser's recursion limit reported as an error, not a crash."""
    try:
        return json.loads(text)
    except RecursionError:
        raise _TooDeep() from None


class _TooDeep(Exception):
    pass


def _iter_jsonl(
    path: Path, max_record_bytes: int | None = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[tuple[str, Any, tuple[str, str] | None]]:
    with _open_bytes(path) as fh:
        for lineno, (raw, oversized) in enumerate(_lines(fh, max_record_bytes), 1):
            loc = f"{path}:{lineno}"
            if oversized is not None:
                detail = f"{oversized} bytes > data.max_record_bytes={max_record_bytes}"
                yield loc, raw.decode("utf-8", "replace"), ("record_too_large", detail)
                continue
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield loc, raw[:200].decode("utf-8", "replace"), ("invalid_utf8", f"byte {exc.start}: {exc.reason}")
                continue
            if not text.strip():
                continue  # blank lines (incl. a trailing CRLF) are not records
            try:
                yield loc, _loads(text), None
            except _TooDeep:
                yield loc, text[:200], ("too_deep", "nested deeper than the JSON parser's recursion limit")
            except json.JSONDecodeError as exc:
                kind = (
                    "truncated_json"
                    if not text.endswith("\n") and exc.msg.startswith(("Unterminated", "Expecting"))
                    else "malformed_json"
                )
                yield loc, text[:200], (kind, f"{exc.msg} at column {exc.colno}")


def _iter_json(
    path: Path, max_record_bytes: int | None = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[tuple[str, Any, tuple[str, str] | None]]:
    with _open_bytes(path) as fh:
        data = fh.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: invalid UTF-8 ({exc.reason}); a JSON array file cannot be read around it"
        ) from None
    if not text.strip():
        return
    try:
        obj = _loads(text)
    except _TooDeep:
        raise DataError(
            f"{path}:1: nested deeper than the JSON parser's recursion limit; a JSON array file cannot be read "
            "around it (use JSON Lines: such a record is then quarantined on its own line)"
        ) from None
    except json.JSONDecodeError as exc:
        if exc.lineno > 1 or "Extra data" in exc.msg:  # maybe JSON Lines with a .json suffix
            yield from _iter_jsonl(path, max_record_bytes)
            return
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list)]
        if len(lists) == 1:
            obj = lists[0]
        else:
            obj = [obj]
    if not isinstance(obj, list):
        raise DataError(f"{path}: top level must be an array of records")
    for i, rec in enumerate(obj):
        yield f"{path}[{i}]", rec, None


def _iter_parquet(path: Path) -> Iterator[tuple[str, Any, tuple[str, str] | None]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for i, rec in enumerate(table.to_pylist()):
        yield f"{path}[row {i}]", rec, None


def _iter_hub(spec: str) -> Iterator[tuple[str, Any, tuple[str, str] | None]]:
    p = parse_hf_spec(spec)  # refuses hf:../x, hf:/tmp/... before anything is loaded
    import datasets

    from cpqs_bench.io import bound_hub_requests

    bound_hub_requests()  # datasets downloads through huggingface_hub's client: every request bounded

    ds = datasets.load_dataset(p["name"], p["config"], revision=p["rev"], split=p["split"] or "train")
    for i, rec in enumerate(ds):
        yield f"{spec}[row {i}]", rec, None


def iter_raw(
    source: str, max_record_bytes: int | None = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[tuple[str, Any, tuple[str, str] | None]]:
    if source.startswith("hf:"):
        yield from _iter_hub(source)
        return
    path = Path(source)
    if not path.exists():
        raise DataError(f"pool file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass one pool file (.json, .jsonl, .jsonl.gz, .parquet)")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        yield from _iter_jsonl(path, max_record_bytes)
    elif name.endswith((".json", ".json.gz")):
        yield from _iter_json(path, max_record_bytes)
    elif name.endswith(".parquet"):
        yield from _iter_parquet(path)
    else:
        raise DataError(f"{path}: unsupported file type (use .json, .jsonl, .jsonl.gz, .parquet or hf:owner/name)")


# ------------------------------------------------------------------------------------------------------ reading
def resolve_source(pool: str, mirror: str | os.PathLike | None = None) -> tuple[str, str | None]:
    """A named dataset resolves through the mirror; a path or hf: spec is taken as is."""
    if (
        pool.startswith("hf:")
        or Path(pool).exists()
        or "/" in pool
        and pool not in _mirror.NAMED
        or pool.endswith((".json", ".jsonl", ".gz", ".parquet"))
    ):
        return pool, None
    return _mirror.resolve(pool, mirror)


def read_pool(
    pool: str,
    *,
    schema: str | None = None,
    field_map: dict[str, str] | None = None,
    mirror: str | os.PathLike | None = None,
    limit: int | None = None,
    offset: int = 0,
    max_rejected_fraction: float | None = 0.05,
    rejected_path: str | os.PathLike | None = None,
    max_record_bytes: int | None = DEFAULT_MAX_RECORD_BYTES,
) -> Pool:
    """Read and normalise a pool. ``limit``/``offset`` apply to kept examples, in file order. A record larger than
    ``max_record_bytes`` (``data.max_record_bytes``; None: no cap) is quarantined as ``record_too_large``."""
    if pool.startswith("hf:"):
        parse_hf_spec(pool)  # a clear error now, not from inside the Hub loader
    source, named_schema = resolve_source(pool, mirror)
    schema = schema or named_schema
    if schema is not None and schema not in SCHEMAS:
        raise DataError(f"unknown schema {schema!r}; known: {', '.join(SCHEMAS)}")
    examples: list[Example] = []
    rejected: list[dict[str, Any]] = []
    seen: dict[str, tuple[str, str]] = {}  # id -> (content key, location)
    n_read = 0
    skipped = 0
    detected = schema

    def reject(loc: str, reason: str, detail: str, raw: object) -> None:
        try:
            snippet = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
        except RecursionError:
            snippet = "<nested too deep to show>"
        rejected.append({"location": loc, "reason": reason, "detail": detail, "raw": snippet[:500]})

    for loc, rec, err in iter_raw(source, max_record_bytes):
        if limit is not None and len(examples) >= limit:
            break
        n_read += 1
        if err is not None:
            reject(loc, err[0], err[1], rec)
            continue
        if max_record_bytes is not None and not loc.startswith(str(source) + ":"):  # array / Parquet / Hub rows
            size = _record_size(rec)
            if size is None:
                reject(loc, "too_deep", "nested deeper than the JSON encoder's recursion limit", "<too deep>")
                continue
            if size > max_record_bytes:
                reject(loc, "record_too_large", f"{size} bytes > data.max_record_bytes={max_record_bytes}", "")
                continue
        if detected is None and isinstance(rec, dict):
            detected = detect(rec if not field_map else {**rec, **{k: rec.get(v) for k, v in field_map.items()}})
            if detected is None:
                raise DataError(
                    f"{loc}: cannot detect the record schema from keys {sorted(rec)[:10]}; "
                    f"pass a schema ({', '.join(SCHEMAS)}) or a field mapping"
                )
        try:
            ex = normalise(rec, detected or "alpaca", field_map)
        except RecordError as exc:
            reject(loc, exc.reason, exc.detail, rec)
            continue
        except RecursionError:
            reject(loc, "too_deep", "nested deeper than the recursion limit", "<nested too deep to show>")
            continue
        key = ex.content_key()
        if ex.id in seen:
            first_key, first_loc = seen[ex.id]
            if first_key == key:
                reject(loc, "duplicate", f"same id and content as {first_loc}", rec)
            else:
                reject(
                    loc, "duplicate_conflict", f"id {ex.id!r} already used with different content at {first_loc}", rec
                )
            continue
        seen[ex.id] = (key, loc)
        if skipped < offset:
            skipped += 1
            n_read -= 1  # offset rows are outside this pool: neither kept nor rejected
            continue
        examples.append(ex)

    by_reason = Counter(r["reason"] for r in rejected)
    sha = sha256_file(source) if not source.startswith("hf:") else None
    result = Pool(
        source=source,
        examples=examples,
        rejected=rejected,
        n_read=n_read,
        schema=detected,
        sha256=sha,
        by_reason=by_reason,
    )
    assert len(examples) + len(rejected) == n_read, "kept + rejected must equal read"
    if rejected_path is not None:
        write_jsonl(rejected_path, rejected)
    if n_read == 0:
        raise DataError(f"{source}: no records (empty file or empty split)")
    if max_rejected_fraction is not None and len(rejected) / n_read > max_rejected_fraction:
        top = ", ".join(f"{r}={c}" for r, c in by_reason.most_common(4))
        first = rejected[0]
        raise DataError(
            f"{source}: {len(rejected)} of {n_read} records rejected ({len(rejected) / n_read:.1%} > the allowed "
            f"{max_rejected_fraction:.1%}; data.max_rejected_fraction); reasons: {top}; first: {first['location']}: "
            f"{first['reason']}: {first['detail']}"
        )
    return result


def _record_size(rec: object) -> int | None:
    """UTF-8 size of a record as JSON (what a JSONL line of it would hold); None when nested too deep to encode."""
    try:
        return len(json.dumps(rec, ensure_ascii=False, default=str).encode("utf-8"))
    except RecursionError:
        return None


def read_project_pool(path: str | os.PathLike) -> Pool:
    """Read a pool file this project wrote (``messages`` JSONL with ids): its own format, never the raw pool's
    schema, field map or limit; any bad row is an error (the project wrote it), not a quarantine."""
    # no size cap: the data stage applied data.max_record_bytes (whatever it was) when it wrote this file
    return read_pool(str(path), schema="messages", max_rejected_fraction=0.0, max_record_bytes=None)
