"""Pairwise judge evaluation: position swap, ties when the judge disagrees with itself, on a tiny model."""

import re

import pytest

from cpqs_bench.evaluate.judge import evaluate_pairwise, judge_pairs, outcome, parse_pair, read_prompts, summarize
from cpqs_bench.judge.backends import make_judge
from cpqs_bench.judge.config import JudgeConfig
from cpqs_bench.testing import tiny_loader


@pytest.mark.parametrize(
    "text,pair",
    [
        ("8 6\nbecause", (8.0, 6.0)),
        ("7, 9", (7.0, 9.0)),
        ("Assistant 1: 5 Assistant 2: 3", (5.0, 3.0)),
        ("great", None),
        ("8", None),
        ("", None),
    ],
)
def test_parse_pair(text, pair):
    assert parse_pair(text) == pair


def test_outcome_rules():
    assert outcome((8, 6), (6, 8)) == "win"  # arm preferred in both orders
    assert outcome((6, 8), (8, 6)) == "lose"
    assert outcome((8, 6), (8, 6)) == "tie"  # position bias: the judge prefers whoever is first
    assert outcome((7, 7), (6, 8)) == "tie" and outcome((7, 7), (6, 8), rule="sum") == "win"
    assert outcome(None, (6, 8)) == "unparsed"
    with pytest.raises(ValueError):
        outcome((1, 2), (2, 1), rule="median")


class FirstIsBetter:
    """A judge with pure position bias, except when an answer says "excellent"."""

    label, weak = "scripted", False

    def complete(self, convs):
        out = []
        for c in convs:
            m = re.search(
                r"1's answer begins\]\n(.*)\n\[Assistant 1.*2's answer begins\]\n(.*)\n\[Assistant 2",
                c[-1]["content"],
                re.S,
            )
            a1, a2 = m.group(1), m.group(2)
            s1 = 9 if "excellent" in a1 else 5
            s2 = 9 if "excellent" in a2 else 5
            if s1 == s2:
                s1 += 1  # position bias
            out.append(f"{s1} {s2}\nreason")
        return out


def test_position_swap_turns_self_disagreement_into_ties():
    ids = ["a", "b", "c", "d"]
    qs = ["q1", "q2", "q3", "q4"]
    arm = ["excellent", "plain", "plain", "excellent"]
    ref = ["plain", "excellent", "plain", "excellent"]
    js = judge_pairs(ids, qs, arm, ref, FirstIsBetter())
    assert [j.outcome for j in js] == ["win", "lose", "tie", "tie"]
    s = summarize(js)
    assert (s["win"], s["tie"], s["lose"], s["n"]) == (1, 2, 1, 4)
    assert s["win_rate"] == 0.5 and s["winning_score"] == 1.0 and s["sign_test_p"] == 1.0
    lo, hi = s["net_ci95"]
    assert lo <= 0 <= hi


def test_evaluate_pairwise_on_a_tiny_model(tmp_path):
    load = tiny_loader()
    model, tok, _ = load("tiny", None, "float32")
    other, _, _ = tiny_loader(seed=1)("tiny", None, "float32")
    judge = make_judge(JudgeConfig(max_new_tokens=6, cache_dir=str(tmp_path)), lambda s, r: load(s, r, "float32"))
    ids, qs = ["1", "2", "3"], ["What is 2+2?", "Name a colour.", "Say hi."]
    res = evaluate_pairwise(ids, qs, (model, tok), (other, tok), judge, max_new_tokens=5, batch_size=2)
    s = res["summary"]
    assert s["total"] == 3 and s["win"] + s["tie"] + s["lose"] + s["unparsed"] == 3
    assert res["weak_judge"] is True and "weak judge" in res["judge"]
    assert len(res["samples"]) == 3 and all("review_forward" in x for x in res["samples"])
    assert judge.misses == 6  # 3 prompts x 2 orders
    again = evaluate_pairwise(ids, qs, (model, tok), (other, tok), judge, max_new_tokens=5, batch_size=2)
    assert again["summary"] == s and judge.hits == 6  # rerun from the cache


def test_read_prompts_handles_the_four_sets(mirror):
    sets = {"vicuna": 80, "koala": 180, "wizardlm": 218, "sinstruct": 252}
    for name, n in sets.items():
        rows = read_prompts(mirror / "general_eval" / f"{name}_test_set.jsonl.gz")
        assert len(rows) == n and all(q.strip() for _, q in rows) and len({i for i, _ in rows}) == n


def test_read_prompts_names_file_and_line(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"instruction": "ok"}\n{"answer": "no question"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: no question field"):
        read_prompts(p)
