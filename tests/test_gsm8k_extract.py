"""GSM8K answer extraction and normalisation on crafted model outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cpqs_bench.evaluate.gsm8k import extract_answer, gold_answer, is_correct, normalize_number, score_response


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Step 1: 3 + 4 = 7\n#### 7", "7"),
        ("So she makes 9 * 2 = 18 dollars.\n#### $18", "18"),
        ("#### 1,234", "1234"),
        ("#### 42 apples. The end, 99 more words 5", "42"),  # the number right after #### wins over later ones
        ("The answer is \\boxed{72}.", "72"),
        ("First \\boxed{3}, corrected: \\boxed{5}", "5"),  # last boxed
        ("\\boxed{\\$1,000}", "1000"),
        ("It costs $18.00 dollars.", "18"),
        ("Total: 1,250 meters.", "1250"),
        ("She ends with -5 apples.", "-5"),
        ("The temperature drops to −3 degrees", "-3"),  # unicode minus
        ("x = 7.50 m.", "7.5"),
        ("That gives 12 and then 15 kg", "15"),
        ("The answer is 0.5", "0.5"),
        ("The answer is 50%", "50"),
    ],
)
def test_extraction_and_normalisation(text, expected):
    assert normalize_number(extract_answer(text)) == expected


@pytest.mark.parametrize("text", ["no number here", "", None, "#### ", "\\boxed{}"])
def test_no_number_extracts_none_and_is_wrong(text):
    assert normalize_number(extract_answer(text)) is None
    assert is_correct(extract_answer(text), "5") is False


def test_boxed_falls_back_to_last_number_when_hash_has_none():
    assert normalize_number(extract_answer("So 3 + 5 = \\boxed{8} apples, 2 left over.\n####")) == "8"
    assert normalize_number(extract_answer("So 3 + 5 = 8 apples, 2 left over.\n#### unknown")) == "2"


def test_fractions_only_count_against_fraction_gold():
    assert normalize_number(extract_answer("\\boxed{\\frac{3}{4}}")) == "3/4"
    assert is_correct("3/4", "3/4") and is_correct("6/8", "3/4")
    assert not is_correct("3/4", "0.75")
    assert not is_correct("3/4", "3")


def test_numeric_equivalence():
    assert is_correct("7.0", "7") and is_correct("1,000", "1000") and is_correct("$5", "5")
    assert not is_correct("7.01", "7") and not is_correct("-7", "7")


def test_gold_answer_and_score_response():
    gold_field = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"
    assert gold_answer(gold_field) == "72"
    assert score_response("... so 48 + 24 = 72 clips.", gold_field) == {
        "extracted": "72",
        "gold": "72",
        "correct": True,
    }
    assert score_response("I think 71.", gold_field)["correct"] is False
    with pytest.raises(ValueError, match="####"):
        gold_answer("no marker")


def test_all_gold_answers_of_the_test_set_parse():
    mirror = Path(os.environ.get("CPQS_DATA_MIRROR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    path = mirror / "gsm8k" / "test.jsonl"
    if not path.exists():
        pytest.skip(f"GSM8K mirror not present at {path}")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == 1319
    for row in rows:
        gold = gold_answer(row["answer"])
        # the reference solution's own final line scores correct against itself
        assert score_response(row["answer"], row["answer"])["correct"], row["answer"][-80:]
        assert gold is not None
