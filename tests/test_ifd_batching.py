"""IFD's length-grouped batching (sorted per shard, cut under a sequence cap and a padded-token budget): the same losses per example as one-at-a-time scoring (each pass its own
forward, no padding), whatever the order of the pool, and batches that really mix lengths under the budget."""

from __future__ import annotations

import random

import pytest
import torch

from cpqs_bench import prompts, tiny
from cpqs_bench.data.example import Example
from cpqs_bench.selectors import ifd

torch.set_num_threads(1)

WORDS = "the quick brown fox jumps over the lazy dog write a poem about sea and sky".split()


def _pool(n: int = 14) -> list[Example]:
    rng = random.Random(3)
    out = []
    for i in range(n):
        instr = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 25)))
        resp = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 40)))
        out.append(Example(f"e{i}", ({"role": "user", "content": instr},), resp))
    return out


def _settings(batch_size: int, max_length: int = 96, context: str = "cherry") -> ifd.IFDSettings:
    return ifd.IFDSettings("tiny", "chat", None, max_length, "truncate", batch_size, context)


def _one_at_a_time(model, tok, examples, s):
    context = ifd.direct_context(tok, s.template, s.system_prompt, s.context)
    pad = prompts.pad_token_id(tok)
    out = {}
    for ex in examples:
        r = prompts.render(
            tok,
            ex,
            s.template,
            system_prompt=s.system_prompt,
            train_eot=False,
            max_length=s.max_length,
            overflow=s.overflow,
        )
        (c, nc), (u, nu) = [ifd.sequence_losses(model, [p], pad)[0] for p in ifd.passes(r, context, tok)]
        out[ex.id] = (c / nc, u / nu, nc)
    return out


@pytest.mark.parametrize("family,context", [("chatml", "cherry"), ("llama2", "superfiltering")])
def test_grouped_batches_equal_one_at_a_time_and_order_independent(family, context, monkeypatch):
    model, tok = tiny.model(family)
    model = model.float()
    exs = _pool()
    s = _settings(batch_size=3, context=context)
    forwards: list[list[int]] = []
    real = ifd.sequence_losses

    def spy(m, seqs, pad_id):
        forwards.append([len(ids) for ids, _ in seqs])
        return real(m, seqs, pad_id)

    monkeypatch.setattr(ifd, "sequence_losses", spy)
    batched = ifd.score_shard(model, tok, exs, s)
    max_seqs, max_tokens = ifd.batch_limits(s.batch_size, s.max_length)
    # the batching really grouped: several sequences per forward, mixed lengths (padding exercised), within limits
    assert any(len(f) > 1 and len(set(f)) > 1 for f in forwards)
    assert all(len(f) <= max_seqs and (len(f) == 1 or len(f) * max(f) <= max_tokens) for f in forwards)
    assert sum(map(len, forwards)) == 2 * len(exs) and len(forwards) < 2 * len(exs) // 2
    monkeypatch.setattr(ifd, "sequence_losses", real)

    ref = _one_at_a_time(model, tok, exs, s)
    assert [x.id for x in batched] == [ex.id for ex in exs]  # input order restored
    for x in batched:
        c, u, n = ref[x.id]
        assert x.n_tokens == n
        assert x.loss_cond == pytest.approx(c, rel=1e-5, abs=1e-6)
        assert x.loss_uncond == pytest.approx(u, rel=1e-5, abs=1e-6)

    shuffled = exs[:]
    random.Random(0).shuffle(shuffled)
    again = {x.id: x for x in ifd.score_shard(model, tok, shuffled, s)}
    assert [x.id for x in ifd.score_shard(model, tok, shuffled, s)] == [ex.id for ex in shuffled]
    for x in batched:
        y = again[x.id]
        assert y.loss_cond == pytest.approx(x.loss_cond, rel=1e-5, abs=1e-6)
        assert y.loss_uncond == pytest.approx(x.loss_uncond, rel=1e-5, abs=1e-6)


def test_batch_limits_bound_sequences_and_padded_tokens():
    assert ifd.batch_limits(8, 384) == (16, 8 * 384)
    assert ifd.batch_limits(0, 10) == (2, 10)  # a batch size below 1 still forms batches
    # (6 seqs, 288 tokens): the token budget binds long sequences (3 x 90), the sequence cap short ones (6 x 40)
    lens = [90] * 4 + [40] * 10 + [5] * 20
    jobs = [(i, 0, tuple(range(n)), 1) for i, n in enumerate(lens)]
    seqs, tokens = ifd.batch_limits(3, 96)
    out = list(ifd.batches(jobs, seqs, tokens))
    assert [len(b) for b in out] == [3, 3, 6, 6, 6, 6, 4] and [j for b in out for j in b] == jobs


def _tiny_passes(dtype: torch.dtype):
    """(model in ``dtype``, tokenizer, pad id, both passes of six pool examples) on a tiny ChatML model."""
    model, tok = tiny.model("chatml")
    model = model.to(dtype)
    context = ifd.direct_context(tok, "chat", None, "cherry")
    seqs = []
    for ex in _pool(6):
        r = prompts.render(tok, ex, "chat", train_eot=False, max_length=96)
        seqs += list(ifd.passes(r, context, tok))
    return model, tok, prompts.pad_token_id(tok), seqs


def test_head_chunk_size_does_not_change_losses(monkeypatch):
    """The LM head + cross-entropy runs in chunks of response positions (128 on a CPU, for the cache); chunk
    boundaries that cut through sequences give the same per-example sums as one chunk for the whole batch."""
    model, tok, pad, seqs = _tiny_passes(torch.float32)
    assert sum(len(ids) - start for ids, start in seqs) > 7 * 5  # several chunks of 7 below
    monkeypatch.setattr(ifd, "head_chunk", lambda device_type: 7)
    small = ifd.sequence_losses(model, seqs, pad)
    monkeypatch.setattr(ifd, "head_chunk", lambda device_type: 100_000)
    whole = ifd.sequence_losses(model, seqs, pad)
    assert [n for _, n in small] == [n for _, n in whole]
    for (a, _), (b, _) in zip(small, whole):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5)


def test_losses_in_the_logits_dtype_match_an_fp32_cross_entropy_of_the_same_logits():
    """A bf16 model's per-token losses come from the bf16 logits' own log-softmax (fp32 inside the kernel, rounded to
    bf16 per token) and are summed in fp64: the sums stay within rounding of an fp32 cross-entropy of the very same
    logits. A sum accumulated in bf16, or a position off by one, is far outside this."""
    model, _, pad, seqs = _tiny_passes(torch.bfloat16)
    got = ifd.sequence_losses(model, seqs, pad)
    for (ids, start), (total, n) in zip(seqs, got):
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0, start - 1 : len(ids) - 1].float()
        want = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[start:]), reduction="sum").item()
        assert n == len(ids) - start
        assert total == pytest.approx(want, rel=2e-3)
