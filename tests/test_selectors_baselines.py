"""Baselines: IFD (both variants) against a hand computation, identical response tokens in both passes, the IFD >= 1
rule, padding/batching invariance, resume, and seeded random / longest."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from cpqs_bench import prompts, tiny
from cpqs_bench.data.example import Example
from cpqs_bench.selectors import ifd as ifd_mod
from cpqs_bench.selectors import registry
from cpqs_bench.selectors.base import ScoringContext
from cpqs_bench.selectors.random import uniform
from cpqs_bench.testing import contract_config

torch.set_num_threads(1)


def _ex(i: str, user: str, answer: str) -> Example:
    return Example(i, ({"role": "user", "content": user},), answer)


POOL = [
    _ex(
        "a", "Explain why the sky is blue in simple words.", "Sunlight scatters off air molecules; blue scatters most."
    ),
    _ex("b", "Write a Python function that adds two numbers.", "def add(a, b):\n    return a + b\n"),
    _ex("c", "Tell me a story.", "The quick brown fox jumps over the lazy dog. " * 8),
    _ex("d", "Answer yes or no.", "Yes."),
]


@pytest.fixture(scope="module", params=["chatml", "gpt2"])
def family(request):
    return request.param


def _ctx(tmp_path: Path, family: str = "chatml", seed: int = 0, **cfg) -> ScoringContext:
    model, tok = tiny.model(family)
    config = contract_config(
        **{"prompt.template": "chat" if family != "gpt2" else "alpaca", "prompt.max_length": 320, **cfg}
    )
    return ScoringContext(config, tmp_path, seed=seed, loader=lambda spec, rev, dt: (model, tok, None))


def _hand_losses(
    model, tok, ex: Example, template: str, max_length: int, context: str = "cherry"
) -> tuple[float, float, int]:
    """Reference: two plain forwards, per-token CE gathered one by one, fp32. The unconditioned context is IFD's
    named direct-answer context (cpqs_bench.selectors.ifd): the tokenizer's default BOS, then (``cherry``) the
    prompt's own tail that spells the template's response header; with nothing before r_1 it is scored in neither
    pass."""
    from cpqs_bench import templates

    r = prompts.render(tok, ex, template, train_eot=False, max_length=max_length)
    ctx = list(templates.default_bos_ids(tok))
    if context == "cherry":
        header = prompts.response_header(tok, template).strip()
        k = next(
            (k for k in range(1, len(r.prompt_ids)) if header and tok.decode(r.prompt_ids[-k:]).strip() == header), 0
        )
        ctx += list(r.prompt_ids[-k:]) if k else []
    skip = 0 if ctx else 1

    def mean_loss(ids: list[int], first: int) -> float:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        losses = [-torch.log_softmax(logits[t - 1], -1)[ids[t]].item() for t in range(first, len(ids))]
        return sum(losses) / len(losses)

    cond = mean_loss(list(r.input_ids[: r.response_end]), r.response_start + skip)
    uncond = mean_loss(ctx + list(r.response_ids), len(ctx) + skip)
    return cond, uncond, r.n_response - skip


def test_ifd_matches_hand_computation_both_variants(tmp_path, family):
    ctx = _ctx(tmp_path, family, **{"selectors.drop_ifd_ge_1": False, "selectors.batch_size": 3})
    model, tok, _ = ctx.model()
    template = ctx.config.prompt.template
    ifd_rows = registry.get("ifd").score(POOL, ctx)  # Cherry_LLM's context by default
    ppl_rows = registry.get("ifd_ppl").score(POOL, ctx)  # Superfiltering's context by default
    for ex, r_loss, r_ppl in zip(POOL, ifd_rows, ppl_rows):
        lc, lu, n = _hand_losses(model, tok, ex, template, ctx.config.prompt.max_length, "cherry")
        assert r_loss.n_tokens == n
        assert r_loss.extra["loss_cond"] == pytest.approx(lc, rel=1e-5)
        assert r_loss.extra["loss_uncond"] == pytest.approx(lu, rel=1e-5)
        assert r_loss.score == pytest.approx(lc / lu, rel=1e-5)
        assert r_loss.exclude is None and r_ppl.exclude is None
        lc2, lu2, n2 = _hand_losses(model, tok, ex, template, ctx.config.prompt.max_length, "superfiltering")
        assert r_ppl.n_tokens == n2
        assert r_ppl.score == pytest.approx(math.exp(lc2 - lu2), rel=1e-5)
    # the IFD >= 1 boundary is the same for both formulas on the same losses: L_c >= L_u
    for r in ifd_rows:
        lc, lu = r.extra["loss_cond"], r.extra["loss_uncond"]
        assert (lc / lu >= 1) == (math.exp(lc - lu) >= 1)
    assert len({round(r.score, 6) for r in ifd_rows}) > 1  # not a constant


def test_both_passes_score_identical_response_tokens(tmp_path, monkeypatch, family):
    """Every scored target sequence appears exactly twice (conditioned, unconditioned) and equals the response."""
    seen: list[tuple[int, ...]] = []
    real = ifd_mod.sequence_losses

    def spy(model, seqs, pad_id):
        seen.extend(tuple(ids[start:]) for ids, start in seqs)
        return real(model, seqs, pad_id)

    monkeypatch.setattr(ifd_mod, "sequence_losses", spy)
    max_length = 160  # every prompt fits, the long answer "c" does not
    ctx = _ctx(tmp_path, family, **{"prompt.max_length": max_length})
    _, tok, _ = ctx.model()
    rows = registry.get("ifd").score(POOL, ctx)
    expected = []
    for ex in POOL:
        r = prompts.render(tok, ex, ctx.config.prompt.template, train_eot=False, max_length=max_length)
        expected += [tuple(r.response_ids)] * 2
    assert Counter(seen) == Counter(expected)
    assert any(r.extra["truncated"] for r in rows)  # "c" is cut by the shared truncation policy
    long_row = next(r for r in rows if r.id == "c")
    r = prompts.render(tok, POOL[2], ctx.config.prompt.template, train_eot=False, max_length=max_length)
    assert long_row.n_tokens == r.n_response == max_length - r.response_start


def test_passes_layout_and_bos_policy():
    tok = tiny.tokenizer("gpt2")  # BOS == EOS == <|endoftext|>, no BOS added by the tokenizer itself
    r = prompts.render(tok, POOL[0], "none", train_eot=False)
    for kind in ifd_mod.CONTEXTS:  # `none` has no response header: both contexts are empty on GPT-2
        (cond, cs), (unc, us) = ifd_mod.passes(r, ifd_mod.direct_context(tok, "none", None, kind), tok)
        assert cond[cs:] == unc[us:] == r.response_ids[1:]  # r_1 has no context in the direct pass: scored in neither
        assert unc == r.response_ids and us == 1 and cs == r.response_start + 1


def test_ifd_ge_1_rule(tmp_path):
    sel = registry.get("ifd")
    above = ifd_mod.Losses("x", 5, loss_cond=2.0, loss_uncond=1.0)
    equal = ifd_mod.Losses("y", 5, loss_cond=1.5, loss_uncond=1.5)
    below = ifd_mod.Losses("z", 5, loss_cond=1.0, loss_uncond=2.0)
    assert sel.row(above, True).exclude == "ifd>=1" and sel.row(above, True).score == 2.0
    assert sel.row(equal, True).exclude == "ifd>=1"
    assert sel.row(below, True).exclude is None and sel.row(below, True).score == 0.5
    assert sel.row(above, False).exclude is None
    ppl = registry.get("ifd_ppl")
    assert ppl.row(below, True).score == pytest.approx(math.exp(-1.0))
    assert ppl.row(above, True).exclude == "ifd>=1"
    assert sel.row(ifd_mod.Losses("w", 3, 1.0, 0.0), True).exclude == ifd_mod.UNDEFINED
    # on a real run, the config switch changes only the exclusion, never the score
    on = registry.get("ifd").score(POOL, _ctx(tmp_path / "on"))
    off = registry.get("ifd").score(POOL, _ctx(tmp_path / "off", **{"selectors.drop_ifd_ge_1": False}))
    assert [r.score for r in on] == [r.score for r in off]
    assert all((r.exclude == "ifd>=1") == (r.score >= 1) for r in on)
    assert all(r.exclude is None for r in off)


def test_padding_and_batching_do_not_change_scores(tmp_path):
    one = registry.get("ifd").score(POOL, _ctx(tmp_path / "1", **{"selectors.batch_size": 1}))
    many = registry.get("ifd").score(POOL, _ctx(tmp_path / "4", **{"selectors.batch_size": 4}))
    for a, b in zip(one, many):
        assert a.score == pytest.approx(b.score, rel=1e-5)


def test_resume_reuses_finished_shards(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path)
    first = registry.get("ifd").score(POOL, ctx)
    shards = list(tmp_path.glob("ifd-*/shard-*.jsonl"))
    assert len(shards) == 1

    def boom(*a, **k):
        raise AssertionError("a finished shard was recomputed")

    monkeypatch.setattr(ifd_mod, "score_shard", boom)
    again = registry.get("ifd").score(POOL, _ctx(tmp_path))
    assert [(r.id, r.score) for r in again] == [(r.id, r.score) for r in first]
    # a different pool (ids do not match the shard) is recomputed, not silently reused
    with pytest.raises(AssertionError, match="recomputed"):
        registry.get("ifd").score(POOL[:2], _ctx(tmp_path))


def test_superfiltering_uses_proxy_model_and_none_template(tmp_path):
    asked = []
    model, tok = tiny.model("chatml")

    def loader(spec, rev, dtype):
        asked.append(spec)
        return model, tok, None

    cfg = contract_config(**{"selectors.proxy_model": "my-proxy", "selectors.drop_ifd_ge_1": False})
    ctx = ScoringContext(cfg, tmp_path, loader=loader)
    rows = registry.get("superfiltering").score(POOL, ctx)
    assert asked == ["my-proxy"]
    lc, lu, _ = _hand_losses(model, tok, POOL[0], "none", cfg.prompt.max_length, "superfiltering")
    assert rows[0].score == pytest.approx(math.exp(lc - lu), rel=1e-5)


def test_random_is_seeded_and_order_free(tmp_path):
    sel = registry.get("random")
    a = sel.score(POOL, _ctx(tmp_path, seed=0))
    b = sel.score(list(reversed(POOL)), _ctx(tmp_path, seed=0))
    c = sel.score(POOL, _ctx(tmp_path, seed=1))
    assert {r.id: r.score for r in a} == {r.id: r.score for r in b}
    assert [r.score for r in a] != [r.score for r in c]
    assert all(0.0 <= r.score < 1.0 for r in a)
    assert a[0].score == uniform(0, "a")
    # roughly uniform: the mean of many ids is near 1/2 (a biased hash would drift)
    vals = [uniform(0, str(i)) for i in range(4000)]
    assert abs(sum(vals) / len(vals) - 0.5) < 0.02


def test_longest_counts_response_tokens(tmp_path):
    ctx = _ctx(tmp_path)
    tok = ctx.tokenizer()
    rows = registry.get("longest").score(POOL, ctx)
    for ex, r in zip(POOL, rows):
        n = len(prompts.render(tok, ex, "chat", train_eot=False).response_ids)
        assert r.score == float(n) and r.n_tokens == n
    assert max(rows, key=lambda r: r.score).id == "c"


def test_batches_respect_sequence_and_token_limits():
    jobs = [(i, 0, tuple(range(n)), 1) for i, n in enumerate([40, 30, 10, 9, 8, 3, 2, 2, 1])]
    out = list(ifd_mod.batches(jobs, max_seqs=4, max_tokens=40))
    assert [j for b in out for j in b] == jobs  # every job once, order kept
    assert all(len(b) <= 4 and len(b) * len(b[0][2]) <= 40 for b in out if len(b) > 1)
    assert [len(b) for b in out] == [1, 1, 4, 3]
