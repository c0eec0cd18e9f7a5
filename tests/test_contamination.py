"""contamination: n-gram overlap of pool examples and selections with evaluation items, decontamination, the verb."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from cpqs_bench import contamination as c
from cpqs_bench.data.example import Example

Q1 = (
    "Natalia sold clips to forty eight of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
A1 = "Natalia sold 48 / 2 = 24 clips in May. Natalia sold 48 + 24 = 72 clips altogether in April and May. #### 72"
Q2 = (
    "Weng earns twelve dollars an hour for babysitting. Yesterday, she just did fifty minutes of babysitting. "
    "How much did she earn for the babysitting she did yesterday?"
)
A2 = "Weng earns 12 / 60 = 0.2 per minute. Working 50 minutes, she earned 0.2 x 50 = 10 dollars. #### 10"
SHORT = "What is 2 + 2?"  # 5 words: no 13-gram
DISJOINT = (
    "Write a haiku about autumn leaves falling slowly onto a quiet pond while the evening sun sets behind the "
    "distant hills and the birds fly home"
)


def _ex(i: str, instruction: str, response: str = "Sure, here is an answer.") -> Example:
    return Example(i, ({"role": "user", "content": instruction},), response)


def _items() -> dict[str, list[c.EvalItem]]:
    return {
        "math": [
            c.EvalItem("math", 0, "0", (Q1, A1)),
            c.EvalItem("math", 1, "1", (Q2, A2)),
            c.EvalItem("math", 2, "2", (SHORT, "4")),
        ]
    }


def test_normalize_collapses_case_punctuation_and_whitespace():
    assert c.normalize("Hello,   WORLD!\n\tIt's  x_y-z") == ["hello", "world", "it", "s", "x", "y", "z"]
    assert c.normalize("a,b") == c.normalize("a, b") == ["a", "b"]


def test_exact_and_near_duplicates_are_found_and_disjoint_text_is_not():
    index = c.ContaminationIndex.build(_items(), n=13)
    near_ws = "  ".join(Q1.split()).replace("April, and", "April,\n\nand")
    near_case = Q1.upper()
    near_punct = Q1.replace(",", "").replace("?", " ?!").replace(".", ";")
    inside = f"Please solve this: {Q2} Thanks a lot."  # the item quoted inside a longer instruction
    answer_only = _ex("ans", "Compute this.", f"Here is the solution. {A1}")
    pool = [
        _ex("exact", Q1),
        _ex("ws", near_ws),
        _ex("case", near_case),
        _ex("punct", near_punct),
        _ex("inside", inside),
        answer_only,
        _ex("disjoint", DISJOINT),
        _ex("short", SHORT),  # the short item's text is in the pool, but the item cannot be checked
        _ex("twelve_words", " ".join(Q1.split()[:12])),  # shorter than n: no 13-gram to share
    ]
    hits = index.overlapping_ids(pool)
    assert hits == {
        "exact": {("math", 0)},
        "ws": {("math", 0)},
        "case": {("math", 0)},
        "punct": {("math", 0)},
        "inside": {("math", 1)},
        "ans": {("math", 0)},
    }
    assert index.undetectable == {"math": {2}}


def test_ngrams_never_span_two_texts():
    words = Q1.split()
    index = c.ContaminationIndex.build({"t": [c.EvalItem("t", 0, "0", (Q1,))]}, n=13)
    split = Example("x", ({"role": "user", "content": " ".join(words[:8])},), " ".join(words[8:16]))
    assert index.overlapping_ids([split]) == {}
    joined = _ex("y", " ".join(words[:16]))
    assert index.overlapping_ids([joined]) == {"y": {("t", 0)}}


def test_short_item_is_undetectable_not_clean_and_fractions_are_over_checkable_items():
    index = c.ContaminationIndex.build(_items(), n=13)
    result = c.report(index, [_ex("p0", Q1), _ex("p1", SHORT)])
    t = result["tasks"]["math"]
    assert result["n"] == 13
    assert t["items"] == 3 and t["undetectable"] == 1
    assert t["pool"] == {"overlapping_items": 1, "fraction": 0.5, "overlapping_examples": 1}
    only_short = c.report(c.ContaminationIndex.build({"s": [c.EvalItem("s", 0, "0", (SHORT,))]}, 13), [])
    assert only_short["tasks"]["s"]["undetectable"] == 1
    assert only_short["tasks"]["s"]["pool"]["fraction"] is None  # nothing checkable: no fraction, not 0 %


def test_template_ngrams_shared_by_many_items_are_not_evidence():
    template = "Solve the following grade school math problem and give the final answer after four hashes please."
    rng = random.Random(0)
    vocab = [f"w{k}" for k in range(500)]
    items = {
        "t": [
            c.EvalItem("t", i, str(i), (template + " Problem: " + " ".join(rng.choices(vocab, k=20)),))
            for i in range(10)
        ]
    }
    index = c.ContaminationIndex.build(items, n=13)
    assert index.template_ngrams["t"] > 0
    assert index.overlapping_ids([_ex("tpl", template)]) == {}  # a row quoting only the template matches nothing
    assert index.overlapping_ids([_ex("item", items["t"][3].texts[0])]) == {"item": {("t", 3)}}
    # the same template text in only 2 of the items is item text, not template
    few = c.ContaminationIndex.build({"t": items["t"][:2]}, n=13)
    assert few.template_ngrams["t"] == 0
    assert few.overlapping_ids([_ex("tpl", template)]) == {"tpl": {("t", 0), ("t", 1)}}


def test_decontaminate_removes_exactly_the_overlapping_rows():
    index = c.ContaminationIndex.build(_items(), n=13)
    rng = random.Random(1)
    pool = []
    for k in range(40):
        text = rng.choice([Q1, Q2, DISJOINT, "Tell me a joke about cats."])
        pool.append(_ex(f"e{k}", text))
    kept, dropped = c.decontaminate(pool, index)
    assert [e.id for e in dropped] == [e.id for e in pool if e.instruction in (Q1, Q2)]
    assert [e.id for e in kept] == [e.id for e in pool if e.instruction not in (Q1, Q2)]
    assert dropped and kept


def test_items_fingerprint_follows_the_items_and_n():
    base = c.items_fingerprint(_items(), 13)
    assert c.items_fingerprint(_items(), 13) == base
    assert c.items_fingerprint(_items(), 8) != base
    changed = _items()
    changed["math"][1] = c.EvalItem("math", 1, "1", (Q2 + " Extra words.", A2))
    assert c.items_fingerprint(changed, 13) != base


def test_chunked_scan_equals_one_pass(monkeypatch):
    index = c.ContaminationIndex.build(_items(), n=13)
    pool = [_ex(f"e{k}", [Q1, Q2, DISJOINT][k % 3]) for k in range(11)]
    whole = index.overlapping_ids(pool)
    monkeypatch.setattr(c, "POOL_CHUNK", 2)
    assert index.overlapping_ids(pool) == whole and len(whole) == 8


def _synthetic(n_items: int = 30, n_pool: int = 400, n_contaminated: int = 40, seed: int = 0):
    rng = random.Random(seed)
    vocab = [f"tok{k}" for k in range(5000)]
    items = {"syn": [c.EvalItem("syn", i, str(i), (" ".join(rng.choices(vocab, k=25)),)) for i in range(n_items)]}
    pool = []
    for k in range(n_pool):
        if k < n_contaminated:  # quotes one item
            text = "Question: " + items["syn"][k % n_items].texts[0] + " thanks"
        else:
            text = " ".join(rng.choices(vocab, k=30))
        pool.append(_ex(f"p{k}", text))
    rng.shuffle(pool)
    return items, pool


def test_selector_preferring_overlapping_rows_shows_a_higher_arm_fraction_than_random():
    items, pool = _synthetic()
    index = c.ContaminationIndex.build(items, n=13)
    overlaps = index.overlapping_ids(pool)
    budget = 40
    # "contaminated" selector: scores overlapping rows highest (as a selector that learned benchmark style would)
    scores = {ex.id: (1.0 if ex.id in overlaps else 0.0) + random.Random(ex.id).random() * 0.1 for ex in pool}
    top = sorted(scores, key=lambda i: -scores[i])[:budget]
    rand = {s: random.Random(s).sample([e.id for e in pool], budget) for s in (0, 1, 2)}
    result = c.report(index, pool, {"contaminated": {None: top}, "random": rand})
    t = result["tasks"]["syn"]
    arm, rnd = t["arms"]["contaminated"], t["arms"]["random"]
    assert t["pool"]["overlapping_items"] == 30 and t["pool"]["overlapping_examples"] == 40
    assert arm["per_seed"] == {"none": 30} and arm["fraction"] == 1.0
    assert set(rnd["per_seed"]) == {"0", "1", "2"}
    assert rnd["overlapping_items"] == pytest.approx(sum(rnd["per_seed"].values()) / 3)
    assert rnd["fraction"] < 0.5 < arm["fraction"]
    json.dumps(result)  # the report is JSON as is
    table = c.markdown_table(result)
    assert "| syn | 30 | 0 | 30 (100.0%) | 40 | 30 (100.0%) |" in table


def test_report_refuses_selected_ids_not_in_the_pool():
    index = c.ContaminationIndex.build(_items(), n=13)
    with pytest.raises(c.ContaminationError, match="arm 'a'.*not in the pool"):
        c.report(index, [_ex("p0", Q1)], {"a": {0: ["p0", "nope"]}})


class _FakeMC:
    """The slice of an lm-eval multiple-choice Task that items_of_task uses."""

    OUTPUT_TYPE = "multiple_choice"

    class config:
        output_type = "multiple_choice"

    eval_docs = [
        {"id": "q1", "question": "Which planet is red?", "choices": ["Venus", "Mars"], "label": 1},
        {"id": "q2", "question": "Which is a gas?", "choices": ["Iron", "Helium"], "label": 1},
    ]

    def doc_to_text(self, doc):
        return "Question: " + doc["question"] + "\nAnswer:"

    def doc_to_target(self, doc):
        return doc["label"]

    def doc_to_choice(self, doc):
        return doc["choices"]


def test_multiple_choice_target_renders_the_correct_choice_text():
    items = c.items_of_task(_FakeMC(), "mc", limit=1)
    assert items == [c.EvalItem("mc", 0, "q1", ("Question: Which planet is red?\nAnswer:", "Mars"))]


def test_task_items_render_the_project_yamls(mirror):
    items = c.task_items(["cpqs_gsm8k_chat", "cpqs_humaneval_instruct"], limit=2)
    g0 = items["cpqs_gsm8k_chat"][0]
    assert len(items["cpqs_gsm8k_chat"]) == 2 and g0.idx == 0
    assert g0.texts[0].startswith("Solve the following grade-school math problem") and "Janet" in g0.texts[0]
    assert g0.texts[1].endswith("#### 18")  # the reference answer, as doc_to_target renders it
    h0 = items["cpqs_humaneval_instruct"][0]
    assert h0.doc_id == "HumanEval/0" and "def has_close_elements" in h0.texts[0]
    assert "for idx, elem in enumerate(numbers)" in h0.texts[-1]  # the canonical solution
    with pytest.raises(c.ContaminationError, match="limit of task cpqs_gsm8k_chat must be >= 1"):
        c.task_items(["cpqs_gsm8k_chat"], task_limits={"cpqs_gsm8k_chat": 0})
    # (an unknown name is the harness's error with lm-eval's did-you-mean: indexing lm-eval's own tasks is slow, so
    # it is not repeated here)


def test_gsm8k_train_overlaps_gsm8k_test_and_shares_its_source(mirror):
    from cpqs_bench.data.pool import read_pool

    assert c.shares_source("gsm8k_train", "cpqs_gsm8k_chat") is not None
    assert "openai/gsm8k" in c.shares_source(str(mirror / "gsm8k" / "train.jsonl"), "cpqs_gsm8k_chat")
    assert c.shares_source("hf:openai/gsm8k:main#train", "cpqs_gsm8k_chat") is not None
    assert c.shares_source("alpaca_gpt4", "cpqs_gsm8k_chat") is None
    assert c.shares_source("humaneval", "cpqs_gsm8k_chat") is None
    # 632 is a GSM8K test item whose question a train row repeats nearly word for word
    index = c.ContaminationIndex.build(c.task_items(["cpqs_gsm8k_chat"]), n=13)
    train = read_pool("gsm8k_train", mirror=str(mirror)).examples
    hits = index.overlapping_ids(train)
    assert any(("cpqs_gsm8k_chat", 632) in h for h in hits.values())
    assert 0 < len(hits) < 50  # a handful of near-duplicates, not every row (the template is not evidence)


def test_cli_writes_the_report_and_reads_selections(tmp_path, mirror, capsys):
    from cpqs_bench.cli import main
    from cpqs_bench.data.pool import read_pool

    test_q = read_pool("gsm8k", mirror=str(mirror)).examples[1].instruction  # item 1 of cpqs_gsm8k_chat
    rows = [{"instruction": test_q, "input": "", "output": "Let me think."}]
    rows += [{"instruction": f"Say hello {k} times.", "input": "", "output": "hello"} for k in range(5)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ids = [e.id for e in read_pool(str(pool)).examples]
    sel = tmp_path / "sel.jsonl"
    sel.write_text("".join(json.dumps({"id": i, "kept": k == 0}) + "\n" for k, i in enumerate(ids)))
    sel2 = tmp_path / "other.jsonl"
    sel2.write_text(json.dumps({"id": ids[3]}) + "\n")
    out = tmp_path / "out"
    rc = main(
        [
            "contamination",
            "--data",
            str(pool),
            "--tasks",
            "cpqs_gsm8k_chat",
            "--limit",
            "3",
            "--selection",
            f"top@0={sel}",
            "--selection",
            str(sel2),
            "--out",
            str(out),
        ]
    )
    assert rc in (0, None)
    result = json.loads((out / "contamination.json").read_text())
    t = result["tasks"]["cpqs_gsm8k_chat"]
    assert t["items"] == 3 and t["pool"]["overlapping_items"] == 1 and t["pool"]["overlapping_examples"] == 1
    assert t["arms"]["top"]["per_seed"] == {"0": 1} and t["arms"]["other"]["per_seed"] == {"none": 0}
    assert "| cpqs_gsm8k_chat | 3 | 0 | 1 (33.3%) |" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n{"kept": true}\n')
    argv = ["contamination", "--data", str(pool), "--tasks", "cpqs_gsm8k_chat", "--selection", str(bad), "--out"]
    assert main([*argv, str(out)]) == 1
    assert f"{bad}:2: expected an object with an 'id'" in capsys.readouterr().err


def test_selection_spec_parsing():
    from cpqs_bench.cli.contamination import _selection_spec

    assert _selection_spec("a/b/sel.jsonl") == ("sel", None, Path("a/b/sel.jsonl"))
    assert _selection_spec("cpqs@2=x.jsonl.gz") == ("cpqs", "2", Path("x.jsonl.gz"))
