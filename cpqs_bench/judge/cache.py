"""A persistent answer cache for judges: one SQLite file, keyed by (judge identity, conversation, parameters).

The key hashes the judge's identity (backend, model, revision, generation parameters: never a credential) and
the exact messages sent, which contain the prompt template and the example, so "cached per (judge, prompt,
example)" holds by construction: a rerun with the same judge and prompt costs nothing, any change misses.
SQLite makes concurrent writers (threads of the OpenAI backend, several processes) safe.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Sequence

from cpqs_bench.io import stable_hash


def default_root() -> Path:
    return Path(os.environ.get("CPQS_CACHE") or Path.home() / ".cache" / "cpqs-bench") / "judge"


def key(identity: str, messages: Sequence[dict[str, str]]) -> str:
    return stable_hash({"judge": identity, "messages": [dict(m) for m in messages]}, 32)


class JudgeCache:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, judge TEXT, text TEXT)")
        self._db.commit()

    @classmethod
    def at(cls, cache_dir: str | os.PathLike | None) -> "JudgeCache":
        return cls((Path(cache_dir) if cache_dir is not None else default_root()) / "answers.sqlite")

    def get(self, k: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT text FROM answers WHERE key = ?", (k,)).fetchone()
        return None if row is None else row[0]

    def put(self, k: str, identity: str, text: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", (k, identity, text))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "JudgeCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
