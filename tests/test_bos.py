"""BOS exactly as the tokenizer adds it by default, on every path: the render prefix, the CPQS features input, both
IFD passes and the SFT row — for ChatML (no BOS), a Llama tokenizer (adds ``<s>``) and GPT-2 (no BOS)."""

from __future__ import annotations

import pytest
import torch
from test_templates import _tiny_llama_model, llama_with_bos  # tests/ is on sys.path (rootdir conftest)

from cpqs_bench import features as F
from cpqs_bench import prompts, templates, tiny
from cpqs_bench.data.example import Example
from cpqs_bench.finetune import dataset
from cpqs_bench.selectors import ifd as ifd_mod
from cpqs_bench.selectors.base import ScoringContext
from cpqs_bench.testing import contract_config

torch.set_num_threads(1)

POOL = [
    Example("a", ({"role": "user", "content": "Explain why the sky is blue."},), "Because of scattering."),
    Example("b", ({"role": "user", "content": "Add two numbers."},), "def add(a, b):\n    return a + b\n"),
]


def _family(name: str):
    if name == "llama":
        tok = llama_with_bos()
        return _tiny_llama_model(tok), tok
    return tiny.model(name)


# (family, template, the first token every conditioned path must start with: None = "not a BOS")
CASES = [
    ("chatml", "chat", None),
    ("chatml", "alpaca", None),
    ("llama", "alpaca", "bos"),
    ("llama", "none", "bos"),
    ("llama", "llama2", "bos"),
    ("llama", "chat", "bos"),
    ("gpt2", "alpaca", None),
    ("gpt2", "none", None),
]


def _expected_first(tok, template: str, expect: str | None, ex: Example = POOL[0]) -> int:
    if expect == "bos":
        return tok.bos_token_id
    # no BOS by default: the first token is the template's own first token, encoded without special tokens
    text = prompts.prompt_text(tok, ex, template)
    return tok(text, add_special_tokens=False)["input_ids"][0]


@pytest.mark.parametrize("family,template,expect", CASES)
def test_first_token_of_every_path(tmp_path, monkeypatch, family, template, expect):
    model, tok = _family(family)
    default = templates.default_bos_ids(tok)
    assert default == ((tok.bos_token_id,) if family == "llama" else ())
    first = _expected_first(tok, template, expect)
    if expect is None:
        assert first not in (tok.bos_token_id, tok.eos_token_id) or template == "chat"  # ChatML: <|im_start|>

    # 1. the render prefix, and so 4. the SFT row built from it
    r = prompts.render(tok, POOL[0], template)
    assert r.input_ids[0] == first
    if expect == "bos":
        assert r.input_ids.count(tok.bos_token_id) == 1  # exactly one BOS, never two
    sft = dataset.tokenize(
        tok,
        POOL,
        template=template,
        system_prompt=None,
        train_eot=True,
        max_length=256,
        overflow="truncate",
        cache=None,
    )
    firsts = {_expected_first(tok, template, expect, ex) for ex in POOL}
    assert [row["input_ids"][0] for row in sft.rows] == [_expected_first(tok, template, expect, ex) for ex in POOL]
    assert sft.rows[0]["input_ids"] == list(r.input_ids)

    # 2. the CPQS features input
    seen_features: list[tuple[int, ...]] = []
    real_forward = F._forward_batch

    def spy_forward(base, rendered, *args, **kwargs):
        seen_features.extend(x.input_ids for x in rendered)
        return real_forward(base, rendered, *args, **kwargs)

    monkeypatch.setattr(F, "_forward_batch", spy_forward)
    dict(F.extract(model, tok, POOL, F.FeatureSpec(template, "last"), F.ExtractOptions(batch_size=2)))
    assert len(seen_features) == 2 and {ids[0] for ids in seen_features} == firsts

    # 3. both IFD passes, for both direct-answer contexts
    seen: list[tuple[int, ...]] = []
    real_losses = ifd_mod.sequence_losses

    def spy_losses(m, seqs, pad_id):
        seen.extend(ids for ids, _ in seqs)
        return real_losses(m, seqs, pad_id)

    monkeypatch.setattr(ifd_mod, "sequence_losses", spy_losses)
    for kind in ifd_mod.CONTEXTS:
        seen.clear()
        cfg = contract_config(
            **{"prompt.template": template, "prompt.max_length": 256, "selectors.drop_ifd_ge_1": False}
        )
        ctx = ScoringContext(cfg, tmp_path / kind, loader=lambda spec, rev, dt: (model, tok, None))
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        rows = ifd_mod.IFDSelector(context=kind).score(POOL, ctx)
        assert all(row.exclude is None for row in rows)
        rendered = {prompts.render(tok, ex, template, train_eot=False, max_length=256).input_ids for ex in POOL}
        cond = [ids for ids in seen if ids in rendered]
        uncond = [ids for ids in seen if ids not in rendered]
        assert len(cond) == len(uncond) == 2
        assert {ids[0] for ids in cond} == firsts
        header = prompts.response_header(tok, template)
        for ids in uncond:
            assert ids[:1] != (tok.eos_token_id,)  # never EOS standing in for a missing BOS
            if expect == "bos":
                assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
            elif kind == "superfiltering":  # no BOS by default: nothing before the response
                assert any(
                    ids == tuple(x.response_ids)
                    for x in (prompts.render(tok, ex, template, train_eot=False) for ex in POOL)
                )
            if kind == "cherry" and header.strip():
                assert tok.decode(ids[len(default) :]).startswith(header.rstrip(" "))


def test_the_old_eos_start_is_gone_for_chat_models_without_bos():
    """Qwen-like: no BOS at all. Neither context may start with EOS (<|im_end|>)."""
    tok = tiny.tokenizer("chatml")
    tok.bos_token = None
    assert templates.default_bos_ids(tok) == ()
    r = prompts.render(tok, POOL[0], "chat", train_eot=False)
    for kind in ifd_mod.CONTEXTS:
        c = ifd_mod.direct_context(tok, "chat", None, kind)
        (_, _), (unc, _) = ifd_mod.passes(r, c, tok)
        assert unc[0] != tok.eos_token_id
    cherry = ifd_mod.direct_context(tok, "chat", None, "cherry")
    assert tok.decode(cherry.ids(r.prompt_ids, tok)) == "<|im_start|>assistant\n"
    got = cherry.ids(r.prompt_ids, tok)
    assert got == tuple(r.prompt_ids[-len(got) :])  # the prompt's own header tokens
    assert ifd_mod.direct_context(tok, "chat", None, "superfiltering").ids(r.prompt_ids, tok) == ()


def test_default_bos_is_read_from_the_tokenizer_not_assumed():
    # ChatML declares <|im_start|> as its bos_token but never adds it: the default is nothing
    assert tiny.tokenizer("chatml").bos_token == "<|im_start|>"
    assert templates.default_bos_ids(tiny.tokenizer("chatml")) == ()
    assert not templates.adds_bos(tiny.tokenizer("gpt2"))
    assert templates.adds_bos(llama_with_bos())


def test_embedded_model_adds_no_bos(embedded_tokenizer):
    tok = embedded_tokenizer
    assert templates.default_bos_ids(tok) == ()
    r = prompts.render(tok, POOL[0], "alpaca")
    assert tok.decode(r.input_ids[:1]) != tok.bos_token and tok.decode(r.prompt_ids).startswith("Below is")
    r = prompts.render(tok, POOL[0], "chat")
    assert tok.decode(r.prompt_ids).startswith("<|im_start|>system")
