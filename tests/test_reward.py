import math

import pytest
import torch

from cpqs_bench.data.example import Example
from cpqs_bench.selectors import registry
from cpqs_bench.selectors.base import ScoringContext
from cpqs_bench.selectors.reward import (
    RewardSelector,
    question_text,
    resolve_format,
    reward_limit,
    reward_scores,
    reward_scores_detailed,
)
from cpqs_bench.testing import check_selector, contract_config, contract_examples, tiny_loader, tiny_reward_loader


def _direct_pair(model, tok, question, answer, max_length=None):
    """quality-evaluation.py: rank_model(**tokenizer(question, answer)).logits[0], one pair at a time."""
    enc = tok(question, answer, truncation=max_length is not None, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return float(model(**enc).logits[0, 0])


def _direct_chat(model, tok, messages):
    text = tok.apply_chat_template(messages, tokenize=False)
    with torch.no_grad():
        return float(model(**tok(text, add_special_tokens=False, return_tensors="pt")).logits[0, 0])


def _live():
    return [ex for ex in contract_examples() if ex.response.strip() and ex.id != "long"]


def test_pair_scores_equal_a_direct_head_call():
    model, tok = tiny_reward_loader()("stand-in")
    pairs = [(question_text(ex), ex.response) for ex in _live()]
    got = reward_scores(model, tok, pairs, batch_size=3, fmt="pair")
    want = [_direct_pair(model, tok, q, a) for q, a in pairs]
    assert got == pytest.approx(want, abs=1e-5)
    assert len(set(round(x, 6) for x in got)) > 3
    # batch size does not matter; messages and their question text give the same pair input
    assert reward_scores(model, tok, [(ex.prompt, ex.response) for ex in _live()], 1, fmt="pair") == pytest.approx(
        want, abs=1e-5
    )


def test_chat_scores_equal_a_direct_head_call():
    model, tok = tiny_reward_loader()("stand-in")
    assert resolve_format(tok) == "chat"  # the tiny tokenizer has a chat template
    exs = _live()
    got = reward_scores(model, tok, [(ex.prompt, ex.response) for ex in exs], batch_size=4)
    want = [_direct_chat(model, tok, [*ex.prompt, {"role": "assistant", "content": ex.response}]) for ex in exs]
    assert got == pytest.approx(want, abs=1e-5)


def test_truncation_is_flagged_and_matches_a_truncated_direct_call():
    model, tok = tiny_reward_loader()("stand-in")
    story = next(ex for ex in contract_examples() if ex.id == "long")
    short = next(ex for ex in contract_examples() if ex.id == "short")
    pairs = [(question_text(story), story.response), (question_text(short), short.response)]
    (long_score, long_cut), (_, short_cut) = reward_scores_detailed(model, tok, pairs, 2, max_length=32, fmt="pair")
    assert long_cut and not short_cut
    with torch.no_grad():
        enc = tok(pairs[0][0], pairs[0][1], truncation=True, max_length=32, return_tensors="pt")
        assert enc["input_ids"].shape[1] == 32
        assert long_score == pytest.approx(float(model(**enc).logits[0, 0]), abs=1e-5)
    assert reward_limit(model, tok) == 512  # the stand-in's positions (its tokenizer states no limit)
    # None = no truncation (MoDS's tokenizer(question, answer))
    (uncut, flag), _ = reward_scores_detailed(model, tok, pairs, 2, max_length=None, fmt="pair")
    assert not flag and uncut == pytest.approx(_direct_pair(model, tok, *pairs[0]), abs=1e-5)
    assert abs(uncut - long_score) > 1e-4


def test_selector_rows(tmp_path):
    cfg = contract_config(**{"selectors.reward.batch_size": 3})
    ctx = ScoringContext(cfg, tmp_path, loader=tiny_loader(), reward_loader=tiny_reward_loader())
    exs = contract_examples()
    rows = RewardSelector(fmt="pair").score(exs, ctx)
    model, tok = tiny_reward_loader()("x")
    for ex, row in zip(exs, rows):
        assert row.id == ex.id
        if not ex.response.strip():
            assert row.exclude == "empty_response" and math.isnan(row.score)
        else:
            assert row.exclude is None
            direct = _direct_pair(model, tok, question_text(ex), ex.response, max_length=512)
            assert row.score == pytest.approx(direct, abs=1e-5)
            assert row.extra["truncated"] is (ex.id == "long")  # 622 tokens, the stand-in has 512 positions
            assert row.extra["reward_model"] == cfg.selectors.reward.model and row.extra["reward_format"] == "pair"
    with pytest.raises(ValueError, match="format"):
        RewardSelector(fmt="nope")


def test_multi_turn_pair_question_drops_the_system_message():
    ex = Example(
        "m",
        (
            {"role": "system", "content": "S"},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ),
        "d",
    )
    assert question_text(ex) == "a\nb\nc"


def test_contract():
    assert isinstance(registry.get("reward"), RewardSelector)
    check_selector("reward")
    check_selector(RewardSelector(fmt="pair"), family="llama2")


def test_mods_quality_scores_are_this_implementation():
    """MoDS's quality phase must score exactly as this module does in ``pair`` format (one implementation)."""
    from cpqs_bench.selectors import mods

    model, tok = tiny_reward_loader()("stand-in")
    pairs = [(question_text(ex), ex.response) for ex in contract_examples() if ex.response.strip()]
    for max_length in (None, 64):
        assert mods.reward_scores(model, tok, pairs, 3, max_length) == pytest.approx(
            reward_scores(model, tok, pairs, 3, max_length, fmt="pair"), abs=1e-6
        )
    assert [mods.question_text(ex) for ex in contract_examples()] == [question_text(ex) for ex in contract_examples()]
