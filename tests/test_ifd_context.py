"""IFD's direct-answer context: the Cherry form and the Superfiltering form, against a hand computation.

Cherry_LLM (cherry_seletion/data_analysis.py) scores ``'### Response:' + output`` alone; Superfiltering
(code_ifd/data_analysis.py) scores ``tokenizer.encode(output)`` — the default BOS or nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_templates import _tiny_llama_model, llama_with_bos  # tests/ is on sys.path (rootdir conftest)

from cpqs_bench import prompts, templates, tiny
from cpqs_bench.data.example import Example
from cpqs_bench.selectors import ifd as ifd_mod
from cpqs_bench.selectors import registry
from cpqs_bench.selectors.base import ScoringContext
from cpqs_bench.testing import contract_config

torch.set_num_threads(1)

POOL = [
    Example(
        "a",
        ({"role": "user", "content": "Explain why the sky is blue in simple words."},),
        "Sunlight scatters off air molecules; blue scatters most.",
    ),
    Example(
        "b",
        ({"role": "user", "content": "Write a Python function that adds two numbers."},),
        "def add(a, b):\n    return a + b\n",
    ),
    Example("d", ({"role": "user", "content": "Answer yes or no."},), "Yes."),
]


def _model(family: str):
    if family == "llama":
        tok = llama_with_bos()
        return _tiny_llama_model(tok), tok
    return tiny.model(family)


def _mean_loss(model, ids: list[int], first: int) -> float:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    losses = [-torch.log_softmax(logits[t - 1], -1)[ids[t]].item() for t in range(first, len(ids))]
    return sum(losses) / len(losses)


def _hand(model, tok, ex: Example, template: str, kind: str) -> tuple[float, float, int]:
    """The two passes written out: the conditioned render, and the named context + the same response ids."""
    r = prompts.render(tok, ex, template, train_eot=False, max_length=320)
    bos = list(templates.default_bos_ids(tok))
    context = list(bos)
    if kind == "cherry":  # the shortest tail of the prompt that spells the template's response header
        header = prompts.response_header(tok, template).strip()
        k = next(
            (k for k in range(1, len(r.prompt_ids)) if header and tok.decode(r.prompt_ids[-k:]).strip() == header), 0
        )
        context += list(r.prompt_ids[-k:]) if k else []
    skip = 0 if context else 1  # nothing before r_1: it is scored in neither pass
    cond = _mean_loss(model, list(r.input_ids), r.response_start + skip)
    uncond = _mean_loss(model, context + list(r.response_ids), len(context) + skip)
    return cond, uncond, r.n_response - skip


CASES = [("chatml", "chat"), ("gpt2", "alpaca"), ("gpt2", "none"), ("llama", "alpaca"), ("llama", "llama2")]


@pytest.mark.parametrize("family,template", CASES)
@pytest.mark.parametrize("kind", ifd_mod.CONTEXTS)
def test_both_contexts_match_a_hand_computation(tmp_path, family, template, kind):
    model, tok = _model(family)
    cfg = contract_config(
        **{
            "prompt.template": template,
            "prompt.max_length": 320,
            "selectors.drop_ifd_ge_1": False,
            "selectors.batch_size": 2,
        }
    )
    ctx = ScoringContext(cfg, tmp_path, loader=lambda spec, rev, dt: (model, tok, None))
    for cls in (ifd_mod.IFDSelector, ifd_mod.IFDPerplexitySelector):
        rows = cls(context=kind).score(POOL, ctx)
        for ex, row in zip(POOL, rows):
            lc, lu, n = _hand(model, tok, ex, template, kind)
            assert row.exclude is None and row.n_tokens == n
            assert row.extra["loss_cond"] == pytest.approx(lc, rel=1e-5)
            assert row.extra["loss_uncond"] == pytest.approx(lu, rel=1e-5)
            expected = lc / lu if cls is ifd_mod.IFDSelector else math.exp(lc - lu)
            assert row.score == pytest.approx(expected, rel=1e-5)


def test_cherry_context_is_the_response_header_after_the_default_bos():
    llama = llama_with_bos()
    r = prompts.render(llama, POOL[0], "alpaca", train_eot=False)
    c = ifd_mod.direct_context(llama, "alpaca", None, "cherry")
    ids = c.ids(r.prompt_ids, llama)
    assert ids[0] == llama.bos_token_id and llama.decode(ids[1:]) == "### Response:\n"
    assert tuple(r.prompt_ids[-(len(ids) - 1) :]) == ids[1:]  # the very tokens the conditioned pass sees
    assert ifd_mod.direct_context(llama, "alpaca", None, "superfiltering").ids(r.prompt_ids, llama) == (
        llama.bos_token_id,
    )
    # Llama-2: the header is "[/INST]", with the space the answer's first token carries
    r2 = prompts.render(llama, POOL[0], "llama2", train_eot=False)
    ids2 = ifd_mod.direct_context(llama, "llama2", None, "cherry").ids(r2.prompt_ids, llama)
    assert llama.decode(ids2[1:]) == "[/INST]" and tuple(r2.prompt_ids[-(len(ids2) - 1) :]) == ids2[1:]
    # GPT-2 under Superfiltering's own prompt: no BOS by default, and `none` has no header -> nothing
    gpt2 = tiny.tokenizer("gpt2")
    for kind in ifd_mod.CONTEXTS:
        assert ifd_mod.direct_context(gpt2, "none", None, kind).ids((1, 2), gpt2) == ()


def test_defaults_per_selector_follow_their_reference_code(tmp_path):
    cfg = contract_config()
    ctx = ScoringContext(cfg, tmp_path, loader=lambda *a: None)
    assert registry.get("ifd").direct_context_kind(ctx) == "cherry"
    assert registry.get("ifd_ppl").direct_context_kind(ctx) == "superfiltering"
    assert registry.get("superfiltering").direct_context_kind(ctx) == "superfiltering"
    assert ifd_mod.IFDSelector(context="superfiltering").direct_context_kind(ctx) == "superfiltering"
    assert ifd_mod.IFDSelector(context="auto").direct_context_kind(ctx) == "cherry"
    with pytest.raises(ValueError, match="one of"):
        ifd_mod.IFDSelector(context="eos")
    with pytest.raises(ValueError, match="one of"):
        ifd_mod.direct_context(tiny.tokenizer("gpt2"), "none", None, "bos")


def test_one_token_response_without_context_is_undefined(tmp_path):
    model, tok = tiny.model("gpt2")
    one = [Example("one", ({"role": "user", "content": "Say a letter."},), "a")]
    assert prompts.render(tok, one[0], "none", train_eot=False).n_response == 1
    cfg = contract_config(**{"prompt.template": "none"})
    ctx = ScoringContext(cfg, tmp_path, loader=lambda spec, rev, dt: (model, tok, None))
    row = ifd_mod.IFDSelector(context="superfiltering").score(one, ctx)[0]
    assert row.exclude == ifd_mod.UNDEFINED and math.isnan(row.score)
    assert ifd_mod.IFDSelector(context="cherry").score(one, ctx)[0].exclude == ifd_mod.UNDEFINED  # no header either


def test_contexts_do_not_share_shards(tmp_path: Path):
    model, tok = tiny.model("chatml")
    cfg = contract_config(**{"selectors.drop_ifd_ge_1": False})
    ctx = ScoringContext(cfg, tmp_path, loader=lambda spec, rev, dt: (model, tok, None))
    a = ifd_mod.IFDSelector(context="cherry").score(POOL, ctx)
    b = ifd_mod.IFDSelector(context="superfiltering").score(POOL, ctx)
    assert len(list(tmp_path.glob("ifd-*"))) == 2
    assert [r.extra["loss_uncond"] for r in a] != [r.extra["loss_uncond"] for r in b]


def test_shards_are_keyed_on_the_code_that_computes_the_losses(tmp_path: Path, monkeypatch):
    """Loss shards kept in a work dir are reused on resume, but not after the loss code changed."""
    import cpqs_bench.code_version as cv

    model, tok = tiny.model("chatml")
    cfg = contract_config(**{"selectors.drop_ifd_ge_1": False})
    ctx = ScoringContext(cfg, tmp_path, loader=lambda spec, rev, dt: (model, tok, None))
    ifd_mod.IFDSelector().score(POOL, ctx)
    ifd_mod.IFDSelector().score(POOL, ctx)
    assert len(list(tmp_path.glob("ifd-*"))) == 1
    real = cv.code_version
    monkeypatch.setattr(cv, "code_version", lambda entries, files=(): {**real(entries, files), "source_sha256": "x"})
    ifd_mod.IFDSelector().score(POOL, ctx)
    assert len(list(tmp_path.glob("ifd-*"))) == 2
