import math
import re

import pytest
from openai_standin import StandIn

from cpqs_bench.selectors.alpagasus import (
    BELOW,
    OUT_OF_RANGE,
    UNPARSEABLE,
    AlpaGasusSelector,
    conversation,
    counts,
    parse_rating,
)
from cpqs_bench.selectors.base import ScoringContext
from cpqs_bench.testing import check_selector, contract_config, contract_examples, tiny_loader

SECRET = "sk-alpagasus-standin-secret"
ENV = "CPQS_TEST_ALPAGASUS_KEY"


@pytest.mark.parametrize(
    "text,value",
    [
        ("4", 4.0),
        ("4.5\nGood answer.", 4.5),
        ("Score: 3", 3.0),
        ("**5**\nexcellent", 5.0),
        ("I would rate it 2/5.", 2.0),
        ("The rating is 1 because it is wrong", 1.0),
        ("[4]", 4.0),
        ("0", 0.0),
        ("[Response]\n[Score] 3.5\n\nI made a mistake", 3.5),
        ("**Score:** 4", 4.0),
    ],
)
def test_parse_rating(text, value):
    assert parse_rating(text) == (value, None)


@pytest.mark.parametrize(
    "text,reason",
    [("", UNPARSEABLE), ("great answer", UNPARSEABLE), ("7\nwow", OUT_OF_RANGE), ("Score: -2", OUT_OF_RANGE)],
)
def test_parse_rating_failures(text, reason):
    assert parse_rating(text) == (None, reason)


def _rater(messages):
    """A deterministic stand-in judge: rating from the response length; one example answered badly."""
    response = re.search(r"\[Response\]\n(.*)\n\nRate the accuracy", messages[-1]["content"], re.S).group(1)
    if "72" in response:
        return "I cannot rate this."
    return f"{len(response) % 6}\nThe response is fine."


def _openai_config(url, tmp_path, **extra):
    return contract_config(
        **{
            "selectors.judge.backend": "openai",
            "selectors.judge.base_url": url,
            "selectors.judge.model": "standin",
            "selectors.judge.api_key_env": ENV,
            "selectors.judge.backoff_s": 0.0,
            "selectors.judge.cache_dir": str(tmp_path / "jc"),
            **extra,
        }
    )


def test_alpagasus_through_an_openai_compatible_endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, SECRET)
    with StandIn(SECRET, _rater, fail_first=2) as server:
        cfg = _openai_config(server.base_url, tmp_path)
        ctx = ScoringContext(cfg, tmp_path / "w", loader=tiny_loader())
        rows = AlpaGasusSelector().score(contract_examples(), ctx)
        by = {r.id: r for r in rows}
        assert by["multi_turn"].exclude == UNPARSEABLE and math.isnan(by["multi_turn"].score)
        assert by["empty"].exclude == "empty_response" and by["blank"].exclude == "empty_response"
        assert by["plain"].score == len(contract_examples()[0].response) % 6
        assert all(
            r.extra["judge"] == "standin via " + server.base_url and r.extra["weak_judge"] is False for r in rows
        )
        c = counts(rows)
        assert c["rated"] == 7 and c[UNPARSEABLE] == 1 and c["empty_response"] == 2
        n = len(server.requests)
        assert n == 8 + 2  # 8 non-empty examples + 2 retried 429s
        again = AlpaGasusSelector().score(
            contract_examples(), ScoringContext(cfg, tmp_path / "w2", loader=tiny_loader())
        )
        assert [r.to_dict() for r in again] == [r.to_dict() for r in rows] and len(server.requests) == n  # cached
        thr = AlpaGasusSelector().score(
            contract_examples(),
            ScoringContext(
                _openai_config(server.base_url, tmp_path, **{"selectors.alpagasus.threshold": 4.5}),
                tmp_path / "w3",
                loader=tiny_loader(),
            ),
        )
        assert all(r.exclude == BELOW for r in thr if r.score == r.score and r.score < 4.5)
        check_selector(AlpaGasusSelector(), config=cfg)  # contract with varied ratings
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_offline_default_is_the_target_model_labelled_weak(tmp_path):
    cfg = contract_config(**{"selectors.judge.max_new_tokens": 4})
    rows = AlpaGasusSelector().score(contract_examples(), ScoringContext(cfg, tmp_path, loader=tiny_loader()))
    assert all(r.extra["weak_judge"] is True and "weak judge" in r.extra["judge"] for r in rows)
    # a random-weight judge writes no rating: every non-empty row is excluded with a reason and counted
    assert all(r.exclude in (UNPARSEABLE, OUT_OF_RANGE, "empty_response") or r.exclude is None for r in rows)
    c = counts(rows)
    assert sum(v for k, v in c.items() if k != BELOW) == len(rows)


def test_prompt_is_ours_and_carries_instruction_and_response():
    ex = contract_examples()[0]
    conv = conversation(ex)
    assert conv[0]["role"] == "system" and ex.instruction in conv[1]["content"] and ex.response in conv[1]["content"]
    assert "0 to 5" in conv[1]["content"]
