"""Read an instruction pool from a file, a named dataset or the Hub, with quarantine of bad records.

Every record read ends up either in ``Pool.examples`` or in ``Pool.rejected`` (with a reason code, a detail and its
``file:line``), so ``kept + rejected == read`` always holds. ``max_rejected_fraction`` turns a mostly-broken file
into a clear error instead of a silently tiny pool.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

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


def parse_hf_spec(spec: str) -> dict[str, str | None]:
    m = _HF_SPEC.match(spec)
    if not m:
        raise DataError(f"bad Hub dataset spec {spec!r}; expected hf:owner/name[:config][@revision][#split]")
    return m.groupdict()


# -------------------------------------------------------------------------------------------------- raw records
RawRecord = tuple[str, Any, str | None]  # (location "file:line", parsed value or None, error reason or None)


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _iter_jsonl(path: Path) -> Iterator[tuple[str, Any, tuple[str, str] | None]]:
    with _open_bytes(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            loc = f"{path}:{lineno}"
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
                yield loc, json.loads(text), None
            except json.JSONDecodeError as exc:
                kind = (
                    "truncated_json"
                    if not text.endswith("\n") and exc.msg.startswith(("Unterminated", "Expecting"))
                    else "malformed_json"
                )
                yield loc, text[:200], (kind, f"{exc.msg} at column {exc.colno}")


def _iter_json(path: Path) -> Iterator[tuple[str, Any, tuple[str, str] | None]]:
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
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.lineno > 1 or "Extra data" in exc.msg:  # maybe JSON Lines with a .json suffix
            yield from _iter_jsonl(path)
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
    import datasets

    p = parse_hf_spec(spec)
    ds = datasets.load_dataset(p["name"], p["config"], revision=p["rev"], split=p["split"] or "train")
    for i, rec in enumerate(ds):
        yield f"{spec}[row {i}]", rec, None


def iter_raw(source: str) -> Iterator[tuple[str, Any, tuple[str, str] | None]]:
    if source.startswith("hf:"):
        yield from _iter_hub(source)
        return
    path = Path(source)
    if not path.exists():
        raise DataError(f"pool file not found: {path}")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        yield from _iter_jsonl(path)
    elif name.endswith((".json", ".json.gz")):
        yield from _iter_json(path)
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
) -> Pool:
    """Read and normalise a pool. ``limit``/``offset`` apply to kept examples, in file order."""
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

    def reject(loc: str, reason: str, detail: str, raw: Any) -> None:
        snippet = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
        rejected.append({"location": loc, "reason": reason, "detail": detail, "raw": snippet[:500]})

    for loc, rec, err in iter_raw(source):
        if limit is not None and len(examples) >= limit:
            break
        n_read += 1
        if err is not None:
            reject(loc, err[0], err[1], rec)
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


def read_project_pool(path: str | os.PathLike) -> Pool:
    """Read a pool file this project wrote (``messages`` JSONL with ids): its own format, never the raw pool's
    schema, field map or limit; any bad row is an error (the project wrote it), not a quarantine."""
    return read_pool(str(path), schema="messages", max_rejected_fraction=0.0)
