"""Atomic file writes and small JSON/JSONL helpers. Every artifact in the project is written through here.

A write goes to a temporary file in the same directory, is fsync'ed, then renamed over the target, so a reader
(or a resumed run after ``kill -9``) sees either the old file or the complete new one, never a torn file.
Write errors (read-only or full disk) propagate as one :class:`WriteError` (an ``OSError``, same ``errno``) whose
message names the file and what to do, instead of a bare ``[Errno 28]``; nothing here swallows an ``OSError``.
Every JSON document goes through the secret scrubber (:func:`cpqs_bench.provenance.scrub`) before it is written.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import gzip
import hashlib
import json
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from cpqs_bench import provenance

if TYPE_CHECKING:
    import httpx

_HINTS = {
    _errno.ENOSPC: "the disk is full: free space or point experiment.output_dir at a larger disk, then rerun "
    "(finished stages are kept)",
    _errno.EDQUOT: "the disk quota is exceeded: free space or point experiment.output_dir elsewhere, then rerun",
    _errno.EROFS: "the file system is read-only: point experiment.output_dir at a writable folder",
    _errno.EACCES: "permission denied: point experiment.output_dir at a folder you can write",
    _errno.EPERM: "permission denied: point experiment.output_dir at a folder you can write",
}


class WriteError(OSError):
    """Writing ``path`` failed; one line that names the file, the OS reason and the remedy (``errno`` kept)."""

    def __init__(self, path: str | os.PathLike, err: OSError):
        self.path = str(path)
        reason = err.strerror or str(err)
        hint = _HINTS.get(err.errno or -1)
        super().__init__(err.errno, f"cannot write {self.path}: {reason}" + (f" ({hint})" if hint else ""))
        self.filename = self.path

    def __str__(self) -> str:  # one line, without OSError's "[Errno N] ...: 'path'" decoration
        return str(self.strerror)


def write_error(path: str | os.PathLike, err: OSError) -> WriteError:
    """``err`` as a :class:`WriteError` naming ``path`` (unchanged when it already is one). For writers outside this
    module (e.g. a library's ``save_pretrained``) that want the same one-line message."""
    return err if isinstance(err, WriteError) else WriteError(path, err)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temp file beside ``path``; on clean exit fsync + rename it onto ``path``; on error remove it."""
    path = Path(path)
    binary = "b" in mode
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise write_error(path, err) from err
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            try:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as err:  # the caller's writes and our flush: a full disk shows up here
                raise write_error(path, err) from err
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):  # the close / rename
            raise write_error(path, exc) from exc
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # fsync on a directory is unsupported on some filesystems; durability only, not correctness
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: object) -> Path:
    """A JSON document (manifest, summary, plan), with every registered secret value scrubbed from it."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    return write_text(path, provenance.scrub(text))


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_open(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            n += 1
    return n


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def iter_jsonl_objects(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSONL file (``.gz`` too); errors name file:line."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file of objects this project wrote (user data goes through ``cpqs_bench.data``)."""
    return [row for _, row in iter_jsonl_objects(path)]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj: object, length: int = 12) -> str:
    """Hash of a JSON-serialisable value, independent of dict order."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


# ------------------------------------------------------------------------------------------------ network bounds
DEFAULT_HUB_TIMEOUT_S = 60.0


class _BoundedTransport:
    """Wraps an httpx transport: every request's connect / read / write / pool timeout is capped at ``bound``.

    huggingface_hub's client has ``timeout=None`` and several ``HfApi`` calls pass ``timeout=None`` per request
    (``repo_info``, which ``create_commit`` calls), which disables any client-level timeout in httpx; capping at the
    transport covers every request whatever its caller passed."""

    def __init__(self, inner: httpx.BaseTransport, bound: float):
        self.inner, self.bound = inner, float(bound)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        given = dict(request.extensions.get("timeout") or {})
        request.extensions["timeout"] = {
            k: (given[k] if isinstance(given.get(k), (int, float)) and 0 < given[k] <= self.bound else self.bound)
            for k in ("connect", "read", "write", "pool")
        }
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> "_BoundedTransport":
        self.inner.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.inner.__exit__(exc_type, exc, tb)


_hub_bound: list[float] = []


def bound_hub_requests(timeout_s: float = DEFAULT_HUB_TIMEOUT_S) -> float:
    """Bound every huggingface_hub HTTP request of this process (Hub API, uploads, downloads, ``datasets`` loading)
    by ``timeout_s`` per connect / read / write, through huggingface_hub's documented ``set_client_factory``; also
    sets ``HF_HUB_ETAG_TIMEOUT`` / ``HF_HUB_DOWNLOAD_TIMEOUT`` for child processes when unset (this process's
    huggingface_hub already defaults them to 10 s). Idempotent; returns the bound in force."""
    import huggingface_hub
    from huggingface_hub.utils import _http

    if timeout_s is None or not timeout_s > 0:
        raise ValueError(f"a network timeout must be > 0 seconds, got {timeout_s!r}")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(min(timeout_s, 10)) or 1))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(max(timeout_s, 1))))
    if _hub_bound and _hub_bound[-1] == timeout_s:
        return timeout_s

    def factory() -> Any:
        client = _http.default_client_factory()
        client._transport = _BoundedTransport(client._transport, timeout_s)
        client._mounts = {
            k: (_BoundedTransport(v, timeout_s) if v is not None else v) for k, v in client._mounts.items()
        }
        return client

    huggingface_hub.set_client_factory(factory)  # closes the shared client; the next request builds a bounded one
    _hub_bound.append(timeout_s)
    return timeout_s
