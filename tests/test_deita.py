"""DEITA with tiny stand-in scorers: the reference prompts, the expected-score readout from given logits, the
score-first threshold filter on a fixture, left-padded batching, multi-turn pairing and the selector contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cpqs_bench import tiny
from cpqs_bench.data.example import Example
from cpqs_bench.selectors import deita
from cpqs_bench.testing import check_selector

torch.set_num_threads(1)


def test_prompts_are_the_reference_strings():
    # hkust-nlp/deita src/deita/selection/scorer/llama_scorer.py (mistral_scorer.py holds the same strings)
    assert deita.COMPLEXITY_TEMPLATE.format(instruction="Q") == (
        "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
        "##Query: Q  \n##Complexity: "
    )
    assert deita.QUALITY_TEMPLATE.format(instruction="Q", output="R") == (
        "You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
        "Question. \n #Question#:\nQ\n#Response#:\nR \n##Quality: "
    )


def test_expected_score_from_given_logits():
    ids = [3, 5, 7, 9, 11, 13]
    logits = torch.full((20,), -3.0)
    logits[0] = 40.0  # a non-rating token's logit plays no part (softmax over the rating tokens only)
    logits[ids] = torch.tensor([0.0, 0.0, math.log(2), math.log(4), -60.0, -60.0])
    # probabilities 1/8, 1/8, 2/8, 4/8, ~0, ~0 -> (1 + 2 + 6 + 16) / 8
    assert deita.expected_score(logits, ids) == pytest.approx(25 / 8, abs=1e-6)
    assert deita.expected_score(torch.zeros(20), ids) == pytest.approx(3.5)  # uniform: the mean rating
    assert deita.expected_score(torch.arange(20.0) * 100, ids) == pytest.approx(6.0)


def test_rating_tokens_are_found_in_each_tokenizer():
    for family in tiny.FAMILIES:
        tok = tiny.tokenizer(family)
        ids = deita.rating_token_ids(tok)
        assert [tok.decode([i]).strip() for i in ids] == ["1", "2", "3", "4", "5", "6"]


def test_threshold_filter_on_a_fixture():
    emb = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0], [0.7071, 0.7071], [-1.0, 0.0]])
    scores = [5.0, 4.0, 3.0, 2.0, 1.0]
    # b is too similar to a (cos 0.99 > 0.9); d is at cos 0.707 from a and c (kept at 0.9, rejected at 0.7)
    assert deita.score_first_filter(scores, emb, 0.9) == ([0, 2, 3, 4], [1])
    assert deita.score_first_filter(scores, emb, 0.7) == ([0, 2, 4], [1, 3])
    order, kept = deita.pick_order(scores, emb, 0.9)
    assert order == [5.0, 1.0, 4.0, 3.0, 2.0]  # kept ones first in score order, then the rejected b
    assert kept == [True, False, True, True, True]
    # score-first: the same embeddings with b scored highest keep b and reject a
    assert deita.score_first_filter([4.0, 5.0, 3.0, 2.0, 1.0], emb, 0.9) == ([1, 2, 3, 4], [0])


def test_long_prompts_keep_the_template_tail():
    tok = tiny.tokenizer("chatml")
    fields = {"instruction": "Q?", "output": "word " * 400}
    ids = deita.prompt_ids(tok, deita.QUALITY_TEMPLATE, fields, "output", 300)
    assert len(ids) == 300 and tok.decode(ids).endswith(" \n##Quality: ")
    short = {"instruction": "Q?", "output": "fine"}
    assert deita.prompt_ids(tok, deita.QUALITY_TEMPLATE, short, "output", 300) == tok.encode(
        deita.QUALITY_TEMPLATE.format(**short)
    )


def test_left_padded_batch_gives_the_single_prompt_logits():
    model, tok = tiny.model("chatml")
    seqs = [tok.encode("short one"), tok.encode("a much longer prompt than the first, by far")]
    batch = deita.next_token_logits(model.eval(), seqs, tok.pad_token_id)
    for i, s in enumerate(seqs):
        alone = deita.next_token_logits(model, [s], tok.pad_token_id)[0]
        assert torch.allclose(batch[i], alone, atol=1e-5)


def test_multi_turn_pairs_each_user_turn_with_its_answer():
    ex = Example(
        "m",
        (
            {"role": "system", "content": "S"},
            {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "u2"},
        ),
        "a2",
    )
    assert deita.turns(ex) == [("u1", "a1"), ("u2", "a2")]


def test_deita_passes_the_contract_and_evol_is_complexity_times_quality(tmp_path):
    report = check_selector(deita.DEITASelector(), workdir=tmp_path)
    rows = {r.id: r for r in report.rows}
    multi = rows["multi_turn"].extra
    assert len(multi["deita_complexity"]) == 2  # two user turns
    for r in report.rows:
        if r.exclude is None:
            e = r.extra
            evol = sum(c * q for c, q in zip(e["deita_complexity"], e["deita_quality"]))
            assert e["deita_evol"] == pytest.approx(evol, abs=1e-5)
            assert all(1.0 <= x <= 6.0 for x in e["deita_complexity"] + e["deita_quality"])
