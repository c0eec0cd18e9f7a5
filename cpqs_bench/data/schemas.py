"""Record schemas: detect which one a record follows and normalise it to an :class:`Example`.

Supported: ``alpaca`` (instruction / input / output), ``sharegpt`` (``conversations`` with from/value, FastChat),
``messages`` (OpenAI-style role/content), ``gsm8k`` (question / answer), ``code`` (prompt / completion),
``alpaca_eval`` (instruction / output / generator), ``alpaca_reference`` (Alpaca fields with the CPQS reference's
question format ``instruction\nInput:input``; never detected, only named). A ``field_map`` renames source fields to a schema's fields,
e.g. ``{"output": "output_gpt4"}`` reads the GPT-4 side of a pair file as an Alpaca pool.
"""

from __future__ import annotations

from typing import Callable

from cpqs_bench.data.example import Example, content_hash


class RecordError(ValueError):
    """A record that cannot become an Example; ``reason`` is a short stable code used for counting."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


ID_FIELDS = ("id", "task_id", "idx", "uid")
_ROLE = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}


def _text(rec: dict, key: str, *, required: bool = True, allow_empty: bool = False) -> str:
    if key not in rec or rec[key] is None:
        if required:
            raise RecordError("missing_field", f"field {key!r} is missing or null")
        return ""
    value = rec[key]
    if not isinstance(value, str):
        raise RecordError("wrong_type", f"field {key!r} must be a string, got {type(value).__name__}")
    if required and not allow_empty and not value.strip():
        raise RecordError("empty_field", f"field {key!r} is empty or whitespace")
    return value


def _alpaca(rec: dict) -> tuple[list[dict], str, dict]:
    instruction = _text(rec, "instruction")
    extra = _text(rec, "input", required=False)
    user = instruction if not extra.strip() else f"{instruction}\n\n{extra}"
    # the two fields, kept apart: the reference prompts (Cherry, Superfiltering, CPQS) render them separately
    return [{"role": "user", "content": user}], _text(rec, "output"), {"instruction": instruction, "input": extra}


def _alpaca_reference(rec: dict) -> tuple[list[dict], str, dict]:
    """The CPQS reference's question format (``train_cnn.py`` ``build_dataset``): ``f"{instruction}\\nInput:{input}"``,
    the ``Input:`` line written even when the input is empty. ``overlap_text`` keeps the project's format of the same
    question, so overlap checks against a pool read with ``alpaca`` still match."""
    instruction = _text(rec, "instruction")
    extra = _text(rec, "input", required=False)
    project = instruction if not extra.strip() else f"{instruction}\n\n{extra}"
    return (
        [{"role": "user", "content": f"{instruction}\nInput:{extra}"}],
        _text(rec, "output"),
        {"overlap_text": project, "instruction": instruction, "input": extra},
    )


def _alpaca_eval(rec: dict) -> tuple[list[dict], str, dict]:
    prompt, response, fields = _alpaca({"instruction": rec.get("instruction"), "output": rec.get("output")})
    meta = {**fields, **{k: rec[k] for k in ("generator", "dataset") if isinstance(rec.get(k), str)}}
    return prompt, response, meta


def _gsm8k(rec: dict) -> tuple[list[dict], str, dict]:
    return [{"role": "user", "content": _text(rec, "question")}], _text(rec, "answer"), {}


def _code(rec: dict) -> tuple[list[dict], str, dict]:
    return [{"role": "user", "content": _text(rec, "prompt")}], _text(rec, "completion"), {}


def _turns(turns: object, role_key: str, text_key: str, field_name: str) -> tuple[list[dict], str, dict]:
    if not isinstance(turns, list):
        raise RecordError(
            "wrong_type" if turns is not None else "missing_field", f"field {field_name!r} must be a list of turns"
        )
    msgs = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordError("wrong_type", f"{field_name}[{i}] is not an object")
        role = _ROLE.get(str(turn.get(role_key, "")).lower())
        if role is None:
            raise RecordError("bad_role", f"{field_name}[{i}] has unknown role {turn.get(role_key)!r}")
        msgs.append({"role": role, "content": _text(turn, text_key, allow_empty=True)})
    if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
        raise RecordError("bad_turns", f"{field_name} must end with an assistant turn after at least one user turn")
    if not any(m["role"] == "user" for m in msgs[:-1]):
        raise RecordError("bad_turns", f"{field_name} has no user turn before the answer")
    response = msgs[-1]["content"]
    if not response.strip():
        raise RecordError("empty_field", f"{field_name}: the final assistant turn is empty")
    return msgs[:-1], response, {}


def _sharegpt(rec: dict) -> tuple[list[dict], str, dict]:
    return _turns(rec.get("conversations"), "from", "value", "conversations")


def _messages(rec: dict) -> tuple[list[dict], str, dict]:
    return _turns(rec.get("messages"), "role", "content", "messages")


SCHEMAS: dict[str, Callable[[dict], tuple[list[dict], str, dict]]] = {
    "alpaca": _alpaca,
    "alpaca_eval": _alpaca_eval,
    "alpaca_reference": _alpaca_reference,
    "sharegpt": _sharegpt,
    "messages": _messages,
    "gsm8k": _gsm8k,
    "code": _code,
}


def detect(rec: dict) -> str | None:
    """Guess a record's schema from its keys (first match wins; None when nothing fits)."""
    keys = set(rec)
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        return "messages"
    if {"question", "answer"} <= keys:
        return "gsm8k"
    if {"instruction", "output", "generator"} <= keys:
        return "alpaca_eval"
    if "instruction" in keys and ("output" in keys or "response" in keys):
        return "alpaca"
    if {"prompt", "completion"} <= keys:
        return "code"
    return None


def normalise(rec: object, schema: str, field_map: dict[str, str] | None = None) -> Example:
    if not isinstance(rec, dict):
        raise RecordError("wrong_type", f"record must be a JSON object, got {type(rec).__name__}")
    if field_map:
        rec = dict(rec)
        for target, source in field_map.items():
            if source not in rec:
                raise RecordError("missing_field", f"mapped field {source!r} (for {target!r}) is missing")
            rec[target] = rec[source]
    if schema in ("alpaca", "alpaca_reference") and "output" not in rec and "response" in rec:
        rec = {**rec, "output": rec["response"]}
    try:
        fn = SCHEMAS[schema]
    except KeyError:
        raise ValueError(f"unknown schema {schema!r}; known: {', '.join(SCHEMAS)}") from None
    prompt, response, meta = fn(rec)
    prompt_t = tuple(prompt)
    source_id = next(
        (rec[k] for k in ID_FIELDS if isinstance(rec.get(k), (str, int)) and not isinstance(rec.get(k), bool)), None
    )
    ex_id = str(source_id) if source_id is not None else content_hash(prompt_t, response)
    return Example(id=ex_id, prompt=prompt_t, response=response, metadata=meta)
