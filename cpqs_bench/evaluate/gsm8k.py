"""GSM8K answer extraction, normalisation and scoring.

Extraction order (first that yields a number wins): the number after the last ``####``, else the content of the last
``\\boxed{...}``, else the last number anywhere in the text. A response with no number extracts to ``None``, which is
scored wrong. Normalisation strips thousands separators, currency, trailing units and periods, and ``.0``-style
zero decimals; fractions such as ``3/4`` are kept as fractions and only compared as fractions when the gold answer is
itself written as a fraction (GSM8K golds are integers, so a model's ``3/4`` does not silently become 0.75).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

# A number: optional sign, digits with optional comma groups or plain digits, optional decimals; or a bare decimal.
_NUM = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_FRACTION = rf"(?:{_NUM})\s*/\s*(?:{_NUM})"
_NUMBER_RE = re.compile(rf"(?<![\w.])(?:{_FRACTION}|{_NUM})")
_HASH_RE = re.compile(r"####")
_BOXED_RE = re.compile(r"\\boxed\s*\{")


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, matching nested braces (``\\boxed{\\frac{3}{4}}``)."""
    starts = [m.end() for m in _BOXED_RE.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i]
    return None


def _clean(text: str) -> str:
    """Remove what is not part of the number: currency, latex wrappers, spaces inside thousands groups."""
    text = text.replace("\\$", "").replace("$", "").replace("\\%", "%").replace("\\!", "")
    text = re.sub(r"\\(?:d?frac)\{([^{}]*)\}\{([^{}]*)\}", r"\1/\2", text)
    text = re.sub(r"\\text\{[^{}]*\}", " ", text)
    return text.replace("−", "-")  # unicode minus


def _numbers(text: str) -> list[str]:
    return _NUMBER_RE.findall(_clean(text))


def extract_answer(response: str | None) -> str | None:
    """Raw numeric string extracted from a model response, or None when there is none."""
    if not response:
        return None
    parts = _HASH_RE.split(response)
    if len(parts) > 1:
        nums = _numbers(parts[-1])
        if nums:
            return nums[0]
    boxed = _last_boxed(response)
    if boxed is not None:
        nums = _numbers(boxed)
        if nums:
            return nums[-1]
    nums = _numbers(response)
    return nums[-1] if nums else None


def normalize_number(s: str | None) -> str | None:
    """Canonical string form: ``"1,234.50"`` -> ``"1234.5"``, ``"7.0"`` -> ``"7"``, ``"-3"``, fractions ``"3/4"``."""
    if s is None:
        return None
    s = _clean(str(s)).strip().rstrip(".").replace(",", "").replace(" ", "")
    if "/" in s:
        num, _, den = s.partition("/")
        try:
            frac = Fraction(Decimal(num)) / Fraction(Decimal(den))
        except (InvalidOperation, ZeroDivisionError, ValueError):
            return None
        return f"{frac.numerator}/{frac.denominator}"
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def gold_answer(answer_field: str) -> str:
    """The gold number of a GSM8K ``answer`` field (after ``####``); raises when the field has none."""
    if "####" not in answer_field:
        raise ValueError("GSM8K answer field has no '####' marker")
    value = normalize_number(answer_field.rsplit("####", 1)[1].strip())
    if value is None:
        raise ValueError(f"GSM8K gold answer is not a number: {answer_field.rsplit('####', 1)[1].strip()!r}")
    return value


def _as_fraction(s: str) -> Fraction:
    return Fraction(s) if "/" in s else Fraction(Decimal(s))


def is_correct(extracted: str | None, gold: str) -> bool:
    """Numeric equality of normalised forms. A fraction prediction counts only against a fraction gold."""
    pred = normalize_number(extracted)
    gold_n = normalize_number(gold)
    if pred is None or gold_n is None:
        return False
    if "/" in pred and "/" not in gold_n:
        return False
    return _as_fraction(pred) == _as_fraction(gold_n)


def score_response(response: str | None, gold_answer_field: str) -> dict[str, Any]:
    """One scored item: extracted (normalised) prediction, gold, correctness."""
    gold = gold_answer(gold_answer_field)
    extracted = normalize_number(extract_answer(response))
    return {"extracted": extracted, "gold": gold, "correct": is_correct(extracted, gold)}
