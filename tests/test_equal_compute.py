"""Equal-compute comparisons (issue #27): matched random controls, trained tokens from the recipe's own rows, and
FLOPs estimates checked against torch's FLOP counter on a tiny model's training step."""

from __future__ import annotations

import random

import numpy as np
import pytest

from cpqs_bench.compute import (
    CostError,
    StageCost,
    TrainingWork,
    attention_flops_per_token,
    attention_shape,
    forward_flops,
    generation_flops,
    matmul_params,
    selection_cost,
    token_weighted_length,
    total_compute,
    training_flops,
)
from cpqs_bench.select import kept_ids, select, selection_summary
from cpqs_bench.selectors.matched import (
    ControlError,
    counts_sha256,
    draw_control,
    matched_report,
    parse_control,
    random_at_tokens,
    random_length_matched,
)


# ---------------------------------------------------------------------------------------------------- controls
def test_parse_control_names():
    assert parse_control("random@tokens:cpqs") == ("tokens", "cpqs")
    assert parse_control("random~ifd") == ("length", "ifd")
    assert parse_control("random~external:my-label") == ("length", "external:my-label")
    for plain in ("random", "cpqs", "full", "cpqs-bottom"):
        assert parse_control(plain) is None
    for bad in ("random~", "random@tokens:", "random~random~cpqs", "random@tokens: cpqs"):
        with pytest.raises(ControlError):
            parse_control(bad)


def _pool(n: int, seed: int, low: int = 5, high: int = 400) -> tuple[list[str], dict[str, int]]:
    rng = random.Random(seed)
    ids = [f"ex{i:04d}" for i in range(n)]
    return ids, {i: rng.randint(low, high) for i in ids}


def _profile(ids, lengths, pool_ids) -> list[int]:
    """Per-decile counts computed independently of the module (numpy quantiles + searchsorted)."""
    edges = np.quantile([lengths[i] for i in pool_ids], np.arange(1, 10) / 10)
    bins = np.searchsorted(edges, [lengths[i] for i in ids], side="right")
    return np.bincount(bins, minlength=10).tolist()


@pytest.mark.parametrize("high", [400, 12])  # 12: heavy ties, several deciles share a cut point
def test_length_matched_reproduces_a_skewed_decile_profile_and_changes_with_the_seed(high):
    pool, lengths = _pool(1000, 1, high=high)
    by_len = sorted(pool, key=lambda i: (lengths[i], i))
    # a skewed arm: 40 of the 100 longest, 15 from the middle, 5 of the shortest (a length-loving selector)
    arm = by_len[-100:][::-1][:40] + by_len[450:465] + by_len[:5]
    want = _profile(arm, lengths, pool)
    assert sum(want) == 60 and max(want) >= 40  # skewed: two thirds in one decile
    a = random_length_matched(pool, lengths, arm, seed=0, salt="random~cpqs")
    b = random_length_matched(pool, lengths, arm, seed=1, salt="random~cpqs")
    for rows in (a, b):
        assert len(rows) == len(pool) and {r["id"] for r in rows} == set(pool)
        assert [r["rank"] for r in rows] == list(range(1, len(pool) + 1))
        assert _profile(kept_ids(rows), lengths, pool) == want
    assert set(kept_ids(a)) != set(kept_ids(b))
    assert kept_ids(a) == kept_ids(random_length_matched(pool, lengths, arm, seed=0, salt="random~cpqs"))
    assert set(kept_ids(a)) != set(kept_ids(random_length_matched(pool, lengths, arm, seed=0, salt="random~ifd")))
    # independent of pool order
    assert set(kept_ids(random_length_matched(pool[::-1], lengths, arm, seed=0, salt="random~cpqs"))) == set(
        kept_ids(a)
    )


def test_length_matched_refuses_an_arm_from_another_pool():
    pool, lengths = _pool(50, 2)
    with pytest.raises(ControlError, match="not in the pool"):
        random_length_matched(pool, lengths, ["ex0001", "elsewhere"], seed=0)
    with pytest.raises(ControlError, match="kept no examples"):
        random_length_matched(pool, lengths, [], seed=0)
    with pytest.raises(ControlError, match="response-token counts"):
        random_length_matched(pool, {k: v for k, v in lengths.items() if k != "ex0003"}, ["ex0001"], seed=0)


@pytest.mark.parametrize("seed", range(6))
def test_random_at_tokens_stays_within_one_example_of_the_arm(seed):
    pool, trained = _pool(600, 3, low=20, high=900)
    # the arm: a length-loving selection of 60 examples
    arm = sorted(pool, key=lambda i: -trained[i])[:60]
    arm_tokens = sum(trained[i] for i in arm)
    rows = random_at_tokens(pool, trained, arm_tokens, seed, salt="random@tokens:longest")
    kept = kept_ids(rows)
    order = [r["id"] for r in rows]
    got = sum(trained[i] for i in kept)
    assert kept == order[: len(kept)]  # a prefix of its random order: no skip-and-continue fill
    crossing = order[len(kept)]
    assert got <= arm_tokens < got + trained[crossing]  # short of the arm by less than the one example that crosses
    assert arm_tokens - got < max(trained.values())
    assert len(kept) > len(arm)  # random answers are shorter than the longest: more examples for the same tokens
    other = random_at_tokens(pool, trained, arm_tokens, seed + 100, salt="random@tokens:longest")
    assert set(kept_ids(other)) != set(kept)


def test_random_at_tokens_takes_pairs_and_refuses_an_impossible_budget():
    pool, trained = _pool(30, 4, low=50, high=60)
    pairs = {k: (v, v // 2) for k, v in trained.items()}
    assert kept_ids(random_at_tokens(pool, pairs, 500, 0)) == kept_ids(random_at_tokens(pool, trained, 500, 0))
    with pytest.raises(ControlError, match="alone exceeds"):
        random_at_tokens(pool, trained, 10, 0)
    with pytest.raises(ControlError, match="positive int"):
        random_at_tokens(pool, trained, 0, 0)


def test_draw_control_dispatches_and_salts_with_the_name():
    pool, trained = _pool(300, 6, low=20, high=500)
    arm = sorted(pool, key=lambda i: -trained[i])[:30]
    rows = draw_control("random@tokens:longest", pool, 2, arm_kept=arm, tokens=trained)
    assert rows == random_at_tokens(pool, trained, sum(trained[i] for i in arm), 2, salt="random@tokens:longest")
    rows = draw_control("random~longest", pool, 2, arm_kept=arm, response_tokens=trained)
    assert rows == random_length_matched(pool, trained, arm, 2, salt="random~longest")
    with pytest.raises(ControlError, match="needs the pool's trained-token counts"):
        draw_control("random@tokens:longest", pool, 2, arm_kept=arm, response_tokens=trained)
    with pytest.raises(ControlError, match="not a control arm"):
        draw_control("random", pool, 2, arm_kept=arm)
    pairs = {k: (v, v // 2) for k, v in trained.items()}
    assert counts_sha256(pairs) == counts_sha256(dict(reversed(list(pairs.items()))))
    assert counts_sha256(pairs) != counts_sha256({**pairs, pool[0]: (1, 0)})


# --------------------------------------------------------------------- the recipe's trained tokens, end to end
def _examples(n: int):
    from cpqs_bench.data.example import Example

    rng = random.Random(5)
    words = "the quick brown fox jumps over the lazy dog and answers".split()
    return [
        Example(
            f"e{i}",
            ({"role": "user", "content": f"question {i}: " + " ".join(rng.choices(words, k=4))},),
            " ".join(rng.choices(words, k=rng.choice([3, 8, 40, 120]))),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("overflow", ["truncate", "drop"])
def test_token_budget_over_the_recipes_rows_with_max_length(overflow):
    """Counts from finetune.dataset.trained_token_counts (the rows the Trainer sees): a long example costs
    max_length under truncation and nothing under drop; the stop rule and the summary use those counts, and
    random@tokens / random~ARM run on them."""
    from cpqs_bench import tiny
    from cpqs_bench.config import PromptConfig
    from cpqs_bench.finetune.config import FinetuneConfig
    from cpqs_bench.finetune.dataset import trained_token_counts
    from cpqs_bench.selectors.matched import pool_response_tokens

    tok = tiny.tokenizer("chatml")
    examples = _examples(40)
    prompt, ft = PromptConfig(template="chat", overflow=overflow), FinetuneConfig(max_length=200, epochs=2)
    counts = trained_token_counts(examples, tok, prompt, ft)
    assert max(t for t, _ in counts.values()) <= 200
    long = [k for k, (t, _) in counts.items() if t in ((200,) if overflow == "truncate" else (0,))]
    assert long, "the fixture must contain examples longer than max_length"
    scores = [{"id": ex.id, "score": float(len(ex.response))} for ex in examples]  # a "longest" selector
    budget = sum(t for t, _ in counts.values()) * 2 // 5
    rows = select(scores, 0.4, unit="tokens", tokens=counts)
    s = selection_summary(rows, counts)
    ranked = [r["id"] for r in rows]
    assert s["trained_tokens"] <= budget < s["trained_tokens"] + counts[ranked[s["n_examples"]]][0]
    assert s["n_rows"] == s["n_examples"] - sum(counts[i][0] == 0 for i in kept_ids(rows))
    if overflow == "drop":  # what the length policy drops is kept by the ranking but trains nothing
        assert s["n_rows"] < s["n_examples"]
    assert s["supervised_tokens"] == sum(counts[i][1] for i in kept_ids(rows))

    lengths = pool_response_tokens(examples, tok, prompt)
    ids = [ex.id for ex in examples]
    ctl = random_at_tokens(ids, counts, s["trained_tokens"], 0, salt="random@tokens:longest")
    assert sum(counts[i][0] for i in kept_ids(ctl)) <= s["trained_tokens"]
    lm = random_length_matched(ids, lengths, kept_ids(rows), 0, salt="random~longest")
    assert _profile(kept_ids(lm), lengths, ids) == _profile(kept_ids(rows), lengths, ids)
    rep = matched_report(kept_ids(lm), kept_ids(rows), counts)
    assert rep["n_examples"] == rep["arm_n_examples"] == s["n_examples"]
    assert rep["arm_trained_tokens"] == s["trained_tokens"]
    assert rep["trained_tokens_ratio"] == pytest.approx(rep["trained_tokens"] / s["trained_tokens"])


# ------------------------------------------------------------------------------------------------------- FLOPs
def _tiny_step(family: str, method: str, checkpointing: bool, seq: int = 32, batch: int = 2):
    """FLOPs counted by torch on one training step (forward + backward) and the module's estimate."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils.flop_counter import FlopCounterMode

    from cpqs_bench import tiny

    model, tok = tiny.model(family, hidden_size=64, num_layers=2)
    model.config._attn_implementation = "eager"  # attention as plain matmuls, which the counter sees on CPU
    model.train()
    if method == "lora":
        lora = LoraConfig(r=8, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if method == "lora":
            model.enable_input_require_grads()  # as finetune.sft.add_lora does
    n, a = matmul_params(model)
    layers, width = attention_shape(model)
    assert (layers, width) == (2, 64)
    ids = torch.randint(0, len(tok), (batch, seq), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    att = attention_flops_per_token(layers, width, seq)
    est = training_flops(
        batch * seq, n, method=method, adapter_params=a, gradient_checkpointing=checkpointing, attention_per_token=att
    )
    return counter.get_total_flops(), est, n, a


@pytest.mark.parametrize(
    "family, method, checkpointing",
    [("chatml", "lora", False), ("chatml", "lora", True), ("gpt2", "lora", False), ("chatml", "full", False)],
)
def test_training_flops_within_10_percent_of_torchs_counter(family, method, checkpointing):
    measured, est, n, a = _tiny_step(family, method, checkpointing)
    assert (a > 0) == (method == "lora")
    assert abs(est / measured - 1) <= 0.10, (est, measured, est / measured)
    if method == "lora":  # the rule matters: charging LoRA like full fine-tuning would be far off
        wrong = training_flops(64, n + a, method="full", gradient_checkpointing=checkpointing)
        assert wrong / measured > 1.2


def test_forward_flops_over_rows_of_different_lengths_are_exact():
    """Scoring passes: ``2·N`` per token plus attention at the token-weighted length equals torch's count."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cpqs_bench import tiny

    model, tok = tiny.model("chatml", hidden_size=64, num_layers=2)
    model.config._attn_implementation = "eager"
    lengths = [8, 16, 40]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        for n in lengths:
            model(input_ids=torch.randint(0, len(tok), (1, n)))
    att = attention_flops_per_token(*attention_shape(model), token_weighted_length(lengths))
    assert forward_flops(sum(lengths), matmul_params(model)[0], attention_per_token=att) == counter.get_total_flops()


def test_attention_shape_reads_grouped_query_configs():
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3)
    assert attention_shape(cfg) == (30, 576)  # SmolLM2-135M's shape: scores over all 9 query heads of 64
    assert token_weighted_length([10, 30]) == (100 + 900) / 40


def test_matmul_params_count_a_tied_head_once_and_not_the_input_embedding():
    from cpqs_bench import tiny

    gpt2, tok = tiny.model("gpt2", hidden_size=64, num_layers=2)  # GPT-2 ties lm_head to wte
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    per_layer = 64 * 192 + 64 * 64 + 64 * 256 + 256 * 64  # c_attn, c_proj, c_fc, mlp.c_proj (Conv1D)
    assert matmul_params(gpt2) == (2 * per_layer + len(tok) * 64, 0)


def test_generation_and_stage_costs_add_up():
    assert generation_flops(10, 5, 100) == 2 * 100 * 15
    gen = StageCost.estimate("negatives", 12.0, "cpu", 100, prompt_tokens=10, generated_tokens=5)
    assert (gen.forward_tokens, gen.generated_tokens, gen.flops) == (10, 5, 3000)
    score = StageCost.estimate("score/cpqs", 3.0, "cpu", 100, forward_tokens=50)
    train_sel = StageCost.estimate("train-selector", 5.0, "cpu", 40, training=TrainingWork(20, method="full"))
    assert score.flops == 2 * 100 * 50 and train_sel.flops == 6 * 40 * 20
    sel = selection_cost([gen, score, train_sel, score.as_dict()])  # listed twice: one stage, charged once
    assert sel["flops"] == 3000 + 10_000 + 4800 and sel["wall_seconds"] == 20.0
    assert [s["stage"] for s in sel["stages"]] == ["negatives", "score/cpqs", "train-selector"]
    ft = StageCost.estimate("finetune/cpqs-s0", 30.0, "cpu", 100, training=TrainingWork(1000, adapter_params=10))
    assert ft.flops == 1000 * (4 * 100 + 6 * 10)
    tot = total_compute(sel, ft)
    assert tot["total"]["flops"] == sel["flops"] + ft.flops and tot["total"]["trained_tokens"] == 1020
    assert tot["selection_flops_share"] == pytest.approx(sel["flops"] / (sel["flops"] + ft.flops))
    assert selection_cost([])["flops"] == 0  # random, full: nothing to charge
    with pytest.raises(CostError, match="listed twice with different costs"):
        selection_cost([score, StageCost.estimate("score/cpqs", 4.0, "cpu", 100, forward_tokens=50)])
    with pytest.raises(CostError, match="unknown fields"):
        StageCost.from_dict({**score.as_dict(), "gpu_hours": 1})
    with pytest.raises(CostError, match="non-negative"):
        StageCost("x", 1.0, "cpu", forward_tokens=-1)
