"""The one example type every stage consumes: prompt messages, a response, a stable id, metadata."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    id: str
    prompt: tuple[dict[str, str], ...]  # chat messages before the answer: ({"role": "user", "content": ...}, ...)
    response: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def instruction(self) -> str:
        """The last user turn: what selectors such as IFD condition on."""
        for msg in reversed(self.prompt):
            if msg["role"] == "user":
                return msg["content"]
        return ""

    def content_key(self) -> str:
        return content_hash(self.prompt, self.response)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": list(self.prompt), "response": self.response, "metadata": self.metadata}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "Example":
        return cls(
            id=str(row["id"]),
            prompt=tuple(dict(m) for m in row["prompt"]),
            response=row["response"],
            metadata=dict(row.get("metadata") or {}),
        )


def content_hash(prompt: tuple[dict[str, str], ...] | list, response: str) -> str:
    blob = json.dumps([[(m["role"], m["content"]) for m in prompt], response], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
