"""SFT label masks: the supervised tokens decode to exactly the response (+ end-of-turn), for three template kinds.

Labels come from the prompt layer (``Rendered.labels()``) through ``finetune.dataset.tokenize`` and the padding
collator; these tests decode what would actually be trained on, after batching.
"""

from __future__ import annotations

import json

import pytest

from cpqs_bench import tiny
from cpqs_bench.data.example import Example
from cpqs_bench.finetune.dataset import IGNORE_INDEX, PadCollator, SelectionFileError, pick, read_selection, tokenize

# Plain printable ASCII (the tiny Llama-2 tokenizer has no byte fallback), no leading/trailing whitespace
# (the Llama-2 chat template strips the answer), multi-line, code, numbers, punctuation.
EXAMPLES = [
    Example("a", ({"role": "user", "content": "Say hello."},), "Hello, world! How are you today?"),
    Example("b", ({"role": "user", "content": "Write add in Python."},), "def add(a, b):\n    return a + b"),
    Example(
        "c",
        ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "How many clips?"}),
        "Natalia sold 48 clips in April and 24 in May.\nAnswer: 72 clips. #### 72",
    ),
    Example("d", ({"role": "user", "content": "Why is the sky blue?"},), "Rayleigh scattering."),
]

CASES = [  # (tiny family, template, expected end-of-turn text)
    ("chatml", "chat", "<|im_end|>"),
    ("llama2", "chat", "</s>"),
    ("llama2", "llama2", "</s>"),
    ("gpt2", "none", "<|endoftext|>"),
]


def supervised_texts(tok, rows):
    """Decode, per row of a padded batch, the tokens whose label is not ignored (and check label == input id)."""
    batch = PadCollator(tok.pad_token_id)(rows)
    out = []
    for ids, labels, mask in zip(
        batch["input_ids"].tolist(), batch["labels"].tolist(), batch["attention_mask"].tolist()
    ):
        positions = [i for i, t in enumerate(labels) if t != IGNORE_INDEX]
        assert positions == list(range(positions[0], positions[-1] + 1)), "supervised span must be contiguous"
        assert all(labels[i] == ids[i] for i in positions), "labels must equal the input ids they supervise"
        assert all(mask[i] for i in positions), "padding must never be supervised"
        out.append(tok.decode([ids[i] for i in positions], skip_special_tokens=False))
    return out


@pytest.mark.parametrize("family,template,eot", CASES)
def test_supervised_tokens_are_response_plus_eot(family, template, eot):
    tok = tiny.tokenizer(family)
    data = tokenize(
        tok, EXAMPLES, template=template, system_prompt=None, train_eot=True, max_length=512, overflow="truncate"
    )
    assert data.ids == [e.id for e in EXAMPLES]
    texts = supervised_texts(tok, data.rows)
    assert texts == [e.response + eot for e in EXAMPLES]
    # The prompt is fully masked: the text before the span contains the instruction, never the answer.
    for row, ex in zip(data.rows, EXAMPLES):
        first = next(i for i, t in enumerate(row["labels"]) if t != IGNORE_INDEX)
        assert ex.instruction.strip() in tok.decode(row["input_ids"][:first])
        assert first > 0


@pytest.mark.parametrize("family,template,eot", CASES)
def test_no_eot_policy_supervises_response_only(family, template, eot):
    tok = tiny.tokenizer(family)
    data = tokenize(
        tok, EXAMPLES, template=template, system_prompt=None, train_eot=False, max_length=512, overflow="truncate"
    )
    assert supervised_texts(tok, data.rows) == [e.response for e in EXAMPLES]


def test_chatml_template_tail_is_not_in_sequence():
    """ChatML writes '\\n' after <|im_end|>; it must be neither supervised nor present."""
    tok = tiny.tokenizer("chatml")
    data = tokenize(
        tok, EXAMPLES[:1], template="chat", system_prompt=None, train_eot=True, max_length=512, overflow="truncate"
    )
    row = data.rows[0]
    assert row["input_ids"][-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert row["labels"][-1] == row["input_ids"][-1]


def test_truncated_response_has_no_eot_and_drop_policy_counts():
    tok = tiny.tokenizer("chatml")
    long = Example("long", ({"role": "user", "content": "Count."},), " ".join(str(i) for i in range(200)))
    room = len(
        tokenize(
            tok,
            [EXAMPLES[3]],
            template="chat",
            system_prompt=None,
            train_eot=True,
            max_length=None,
            overflow="truncate",
        ).rows[0]["input_ids"]
    )  # the short example fits exactly
    data = tokenize(
        tok,
        [long, EXAMPLES[3]],
        template="chat",
        system_prompt=None,
        train_eot=True,
        max_length=room,
        overflow="truncate",
    )
    texts = supervised_texts(tok, data.rows)
    assert long.response.startswith(texts[0]) and len(texts[0]) < len(long.response)
    assert not texts[0].endswith("<|im_end|>") and data.stats.truncated == 1
    assert len(data.rows[0]["input_ids"]) == room and texts[1] == EXAMPLES[3].response + "<|im_end|>"
    dropped = tokenize(
        tok, [long, EXAMPLES[3]], template="chat", system_prompt=None, train_eot=True, max_length=room, overflow="drop"
    )
    assert dropped.ids == ["d"] and dropped.dropped_ids == ["long"] and dropped.stats.dropped_too_long == 1


def test_data_hash_changes_with_template_and_eot_policy():
    tok = tiny.tokenizer("llama2")
    kw = dict(system_prompt=None, max_length=512, overflow="truncate")
    a = tokenize(tok, EXAMPLES, template="chat", train_eot=True, **kw).sha256()
    assert a == tokenize(tok, EXAMPLES, template="chat", train_eot=True, **kw).sha256()
    assert a != tokenize(tok, EXAMPLES, template="chat", train_eot=False, **kw).sha256()
    assert a != tokenize(tok, EXAMPLES[:3], template="chat", train_eot=True, **kw).sha256()


def test_selection_reading_errors_name_the_line(tmp_path):
    sel = tmp_path / "sel.jsonl"
    sel.write_text(json.dumps({"id": "a", "kept": True}) + "\n" + json.dumps({"id": "b", "kept": False}) + "\n")
    assert read_selection(sel) == ["a"]
    assert [e.id for e in pick(EXAMPLES, ["c", "a"])] == ["a", "c"]  # pool order, not selection order
    with pytest.raises(SelectionFileError, match="not in the pool"):
        pick(EXAMPLES, ["a", "zzz"])
    sel.write_text(json.dumps({"id": "a", "kept": True}) + "\n{broken\n")
    with pytest.raises(SelectionFileError, match=r"sel.jsonl:2"):
        read_selection(sel)
    sel.write_text(json.dumps({"id": "a", "kept": True}) + "\n" + json.dumps({"id": "a", "kept": False}) + "\n")
    with pytest.raises(SelectionFileError, match=r"sel.jsonl:2: duplicate"):
        read_selection(sel)


def test_trained_token_counts_equal_the_rows_the_trainer_builds(tmp_path):
    from cpqs_bench.config import Config, replace
    from cpqs_bench.finetune import sft
    from cpqs_bench.finetune.dataset import trained_token_counts

    model, tok = tiny.model("chatml")
    cfg = replace(Config(), **{"finetune.max_length": 64, "prompt.overflow": "truncate"})
    long = Example("long", ({"role": "user", "content": "Tell a story."},), "once upon a time " * 40)
    examples = [*EXAMPLES, long]
    sel = tmp_path / "sel.jsonl"
    sel.write_text("".join(json.dumps({"id": ex.id, "kept": True}) + "\n" for ex in examples))
    counts = trained_token_counts(examples, tok, cfg.prompt, cfg.finetune)
    data = sft.build_data(cfg, sel, examples, tok, None)
    expected = {ex.id: (0, 0) for ex in examples}
    for ex_id, row in zip(data.ids, data.rows):
        expected[ex_id] = (len(row["input_ids"]), sum(1 for t in row["labels"] if t != IGNORE_INDEX))
    assert counts == expected
    assert counts["long"][0] == 64  # truncated to finetune.max_length
    assert sum(t for t, _ in counts.values()) == data.n_tokens
    assert sum(s for _, s in counts.values()) == data.n_supervised
    # the drop policy: a too-long example trains nothing
    dropped = replace(cfg, **{"prompt.overflow": "drop"})
    counts = trained_token_counts(examples, tok, dropped.prompt, dropped.finetune)
    assert counts["long"] == (0, 0) and counts["a"] == expected["a"]
