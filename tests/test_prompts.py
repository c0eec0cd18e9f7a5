"""The response span is token-exact for every tokenizer family, at awkward boundaries, under every length policy."""

import pytest

from cpqs_bench import prompts, tiny
from cpqs_bench.data.example import Example

RESPONSES = [
    "Because of Rayleigh scattering.",
    " leading space and trailing space ",
    "\nstarts with a newline",
    "!!! punctuation first",
    "def add(a, b):\n    return a + b\n",
    "Café naïve — 日本語 🙂",
    "42",
]


def _ex(response, instruction="Explain why the sky is blue.", system=None):
    prompt = ({"role": "system", "content": system},) if system else ()
    return Example("x", prompt + ({"role": "user", "content": instruction},), response)


CASES = [
    ("chatml", "chat"),
    ("chatml", "none"),
    ("llama2", "chat"),
    ("llama2", "llama2"),
    ("gpt2", "none"),
    ("gpt2", "alpaca"),
]


@pytest.mark.parametrize("family,template", CASES)
@pytest.mark.parametrize("response", RESPONSES)
def test_span_decodes_to_response_plus_eot(family, template, response):
    tok = tiny.tokenizer(family)
    r = prompts.render(tok, _ex(response), template)
    expected = response.strip() if (family, template) == ("llama2", "chat") else response  # Llama-2 template strips
    if family == "llama2" and expected.startswith(" "):
        # SentencePiece-style (Metaspace) tokenizers encode " x" and "x" to the same ids: one leading space is
        # not representable, whatever the span logic does.
        assert (
            tok(expected, add_special_tokens=False)["input_ids"]
            == tok(expected[1:], add_special_tokens=False)["input_ids"]
        )
        expected = expected[1:]
    eot = tok.eos_token
    assert r.has_eot and r.input_ids[-1] == tok.convert_tokens_to_ids(eot)
    assert tok.decode(r.response_ids[:-1]) == expected
    assert tok.decode(r.response_ids) == expected + eot
    assert r.response_end == len(r.input_ids)  # nothing the template writes after the end-of-turn token
    assert r.labels()[: r.response_start] == [-100] * r.response_start
    assert r.labels()[r.response_start :] == list(r.response_ids)


def test_chatml_prompt_equals_generation_prompt():
    tok = tiny.tokenizer("chatml")
    ex = _ex("ok", system="Be terse.")
    r = prompts.render(tok, ex, "chat")
    gen = tok.apply_chat_template(list(ex.prompt), add_generation_prompt=True, tokenize=False)
    assert prompts.prompt_text(tok, ex, "chat") == gen
    assert tok.decode(r.prompt_ids) == gen
    # ChatML writes "<|im_end|>\n" after the answer: the newline is never part of the sequence
    full = tok.apply_chat_template(list(ex.prompt) + [{"role": "assistant", "content": "ok"}], tokenize=False)
    assert full.endswith("<|im_end|>\n") and tok.decode(r.input_ids) == full[:-1]


def test_eot_policy_off():
    tok = tiny.tokenizer("chatml")
    r = prompts.render(tok, _ex("hello there"), "chat", train_eot=False)
    assert not r.has_eot and tok.decode(r.response_ids) == "hello there"


def test_length_policy_truncate_and_drop_are_counted():
    tok = tiny.tokenizer("gpt2")
    ex = _ex("word " * 200)
    stats = prompts.LengthStats()
    full = prompts.render(tok, ex, "none")
    r = prompts.render(tok, ex, "none", max_length=40, overflow="truncate", stats=stats)
    assert len(r.input_ids) == 40 and r.truncated and not r.has_eot
    assert r.input_ids == full.input_ids[:40]
    assert prompts.render(tok, ex, "none", max_length=40, overflow="drop", stats=stats) is None
    assert prompts.render(tok, _ex("x", instruction="long " * 100), "none", max_length=20, stats=stats) is None
    assert prompts.render(tok, _ex(""), "none", stats=stats) is None
    assert (
        stats.kept,
        stats.truncated,
        stats.dropped_too_long,
        stats.dropped_prompt_too_long,
        stats.dropped_empty,
    ) == (1, 1, 1, 1, 1)


def test_no_chat_template_is_a_clear_error():
    with pytest.raises(prompts.TemplateError, match="chat template"):
        prompts.render(tiny.tokenizer("gpt2"), _ex("a"), "chat")
    with pytest.raises(prompts.TemplateError, match="unknown template"):
        prompts.render(tiny.tokenizer("gpt2"), _ex("a"), "vicuna")


@pytest.mark.parametrize("response", RESPONSES)
def test_embedded_model_real_tokenizer(embedded_tokenizer, response):
    tok = embedded_tokenizer
    ex = _ex(response)
    r = prompts.render(tok, ex, "chat")
    assert tok.decode(r.response_ids) == response + "<|im_end|>"
    gen = tok.apply_chat_template(list(ex.prompt), add_generation_prompt=True, tokenize=False)
    assert tok.decode(r.prompt_ids) == gen
    assert gen.endswith("<|im_start|>assistant\n")


def test_right_pad_keeps_real_tokens_at_the_start_and_pads_labels():
    ids, mask, labels = prompts.right_pad([[5, 6, 7], [8]], pad_id=0, fill=[[-100, 6, 7], [8]], fill_pad=-100)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert labels.tolist() == [[-100, 6, 7], [8, -100, -100]]
    with pytest.raises(ValueError, match="row 1: 1 input ids but 2 labels"):
        prompts.right_pad([[1], [2]], 0, fill=[[1], [2, 3]])
    assert prompts.pad_token_id(tiny.tokenizer("gpt2")) == tiny.tokenizer("gpt2").eos_token_id
