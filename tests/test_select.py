"""Selection budgets: examples (unchanged) and trained tokens (the stop rule), the per-arm token summary, and the
optimizer steps the Trainer really takes under the frozen recipe."""

from __future__ import annotations

import math

import pytest

from cpqs_bench.finetune.config import FinetuneConfig
from cpqs_bench.io import read_json, write_jsonl
from cpqs_bench.select import (
    SelectionError,
    kept_ids,
    optimizer_steps,
    select,
    select_file,
    selection_summary,
    token_budget,
    training_totals,
)

# Hand-computed fixture. Rank order a > b > c > d > e. Trained tokens are what the recipe trains after
# max_length = 100: ``a`` renders to 150 tokens and is truncated to 100 (its response tail is cut, so its supervised
# tokens drop from 120 to 70); the others fit. (trained, supervised) per id:
MAX_LENGTH = 100
RAW = {"a": (150, 120), "b": (60, 40), "c": (50, 30), "d": (10, 5), "e": (30, 20)}


def truncated(raw: dict[str, tuple[int, int]], max_length: int) -> dict[str, tuple[int, int]]:
    """What a trained-token count reports after truncation: the response tail is cut (prompt tokens stay)."""
    out = {}
    for k, (t, s) in raw.items():
        cut = max(0, t - max_length)
        out[k] = (t - cut, s - cut)
    return out


TOKENS = truncated(RAW, MAX_LENGTH)  # a -> (100, 70)
SCORES = [{"id": k, "score": s} for k, s in zip("abcde", [0.9, 0.8, 0.7, 0.6, 0.5])]


def test_fixture_is_what_it_says():
    assert TOKENS == {"a": (100, 70), "b": (60, 40), "c": (50, 30), "d": (10, 5), "e": (30, 20)}


def test_stop_rule_stops_before_the_crossing_example_and_never_fills():
    # budget 200: a (100) + b (60) = 160; c would make 210 > 200 -> stop. d (10) would fit, but nothing after the
    # crossing example is considered (no skip-and-continue).
    rows = select(SCORES, 200, unit="tokens", tokens=TOKENS)
    assert kept_ids(rows) == ["a", "b"]
    assert [r["reason"] for r in rows] == ["top within token budget"] * 2 + ["beyond token budget"] * 3
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    s = selection_summary(rows, TOKENS)
    assert s == {"n_examples": 2, "n_rows": 2, "trained_tokens": 160, "supervised_tokens": 110}
    # exactly at the budget: the example that lands on it is kept
    assert kept_ids(select(SCORES, 210, unit="tokens", tokens=TOKENS)) == ["a", "b", "c"]
    assert kept_ids(select(SCORES, 209, unit="tokens", tokens=TOKENS)) == ["a", "b"]


def test_token_counts_after_truncation_decide_the_selection():
    # Untruncated, a alone (150) + b (60) = 210 crosses 200: only a would be kept. The truncated count keeps b too.
    assert kept_ids(select(SCORES, 200, unit="tokens", tokens=RAW)) == ["a"]
    assert kept_ids(select(SCORES, 200, unit="tokens", tokens=TOKENS)) == ["a", "b"]


def test_fraction_is_of_the_pool_trained_tokens_and_bottom_ranks_ascending():
    # pool: 100 + 60 + 50 + 10 + 30 = 250 trained tokens; 0.5 -> 125: a (100), then b would make 160 -> stop
    assert token_budget(0.5, 250) == 125
    assert kept_ids(select(SCORES, 0.5, unit="tokens", tokens=TOKENS)) == ["a"]
    # bottom: e (30) + d (10) + c (50) = 90; b would make 150 > 125
    rows = select(SCORES, 0.5, bottom=True, unit="tokens", tokens=TOKENS)
    assert kept_ids(rows) == ["e", "d", "c"]
    assert rows[0]["reason"] == "bottom within token budget"


def test_two_epochs_double_the_tokens_and_the_steps_follow_the_trainer():
    rows = select(SCORES, 200, unit="tokens", tokens=TOKENS)
    ft = FinetuneConfig(epochs=2, batch_size=2, micro_batch_size=1)
    tot = training_totals(selection_summary(rows, TOKENS), ft)
    # 2 rows, micro-batch 1, accumulation 2 -> 1 optimizer step per epoch, 2 epochs
    assert tot == {
        "n_examples": 2,
        "n_rows": 2,
        "optimizer_steps": 2,
        "epochs": 2.0,
        "trained_tokens": 320,
        "supervised_tokens": 220,
        "trained_tokens_per_epoch": 160,
        "tokens_exact": True,
    }
    # a step cap that ends inside an epoch is charged pro rata and flagged
    capped = training_totals(
        selection_summary(rows, TOKENS), FinetuneConfig(epochs=2, batch_size=1, micro_batch_size=1, max_steps=3)
    )
    assert capped["optimizer_steps"] == 3 and capped["epochs"] == 1.5 and capped["trained_tokens"] == 240
    assert capped["tokens_exact"] is False


def test_examples_unit_is_unchanged_and_excluded_rows_stay_listed():
    rows = SCORES + [{"id": "x", "score": 0.99, "exclude": "ifd>=1"}]
    out = select(rows, 2)
    assert kept_ids(out) == ["a", "b"]
    assert out[-1] == {"id": "x", "score": 0.99, "rank": None, "kept": False, "reason": "excluded: ifd>=1"}
    assert [r["reason"] for r in out[:3]] == ["top-k", "top-k", "beyond budget"]
    assert selection_summary(out) == {
        "n_examples": 2,
        "n_rows": None,
        "trained_tokens": None,
        "supervised_tokens": None,
    }
    # under tokens an excluded row's tokens count towards the pool (a fraction is of the whole scored pool)
    tok = {**TOKENS, "x": (250, 10)}  # pool 500 -> 0.5 = 250: a, b, c (210); d -> 220; e -> 250: all five fit
    assert kept_ids(select(rows, 0.5, unit="tokens", tokens=tok)) == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"unit": "tokens"}, "needs the trained-token counts"),
        ({"unit": "bytes", "tokens": TOKENS}, "budget unit must be one of"),
        ({"unit": "tokens", "tokens": {k: v for k, v in TOKENS.items() if k != "c"}}, "'c'"),
        ({"unit": "tokens", "tokens": {**TOKENS, "b": (-1, 0)}}, "non-negative"),
    ],
)
def test_bad_token_inputs_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(SelectionError, match=message):
        select(SCORES, 200, **kwargs)


def test_a_budget_below_the_first_example_is_an_error_not_an_empty_arm():
    with pytest.raises(SelectionError, match="smaller than the first-ranked example 'a'"):
        select(SCORES, 99, unit="tokens", tokens=TOKENS)
    with pytest.raises(SelectionError, match="must be whole"):
        select(SCORES, 150.5, unit="tokens", tokens=TOKENS)


def test_select_file_records_the_unit_and_the_tokens(tmp_path):
    src = tmp_path / "scores.jsonl"
    write_jsonl(src, SCORES)
    s = select_file(src, 200, tmp_path / "sel.jsonl", unit="tokens", tokens=TOKENS)
    assert s["budget_unit"] == "tokens" and s["budget_tokens"] == 200
    assert (s["kept"], s["n_examples"], s["trained_tokens"], s["supervised_tokens"]) == (2, 2, 160, 110)
    assert read_json(tmp_path / "sel.summary.json") == s
    whole = select_file(src, 10_000, tmp_path / "all.jsonl", unit="tokens", tokens=TOKENS)
    assert whole["kept"] == 5 and "every eligible example kept: 250" in whole["warning"]
    with pytest.raises(SelectionError, match=str(src)):
        select_file(src, 10, tmp_path / "none.jsonl", unit="tokens", tokens=TOKENS)


# ---------------------------------------------------------------------------------------------- optimizer steps
def test_optimizer_steps_formula_and_refusals():
    ft = FinetuneConfig(epochs=3, batch_size=16, micro_batch_size=4)
    assert optimizer_steps(100, ft) == 3 * 7  # 25 micro-batches / 4 per step -> 7 (a short last step)
    assert optimizer_steps(1, ft) == 3
    assert optimizer_steps(100, ft, world_size=2) == 3 * 7  # 13 micro-batches per process / 2 per step -> 7
    assert optimizer_steps(100, FinetuneConfig(epochs=2.5, batch_size=16, micro_batch_size=4)) == math.ceil(2.5 * 7)
    with pytest.raises(SelectionError, match="not a multiple"):
        optimizer_steps(100, ft, world_size=3)
    with pytest.raises(SelectionError, match="at least one"):
        optimizer_steps(0, ft)


@pytest.mark.parametrize("n_rows, micro, world", [(10, 2, 2), (7, 4, 2), (9, 1, 4), (33, 4, 3), (5, 8, 2)])
def test_per_process_micro_batches_match_accelerate_sharding(n_rows, micro, world):
    """The per-process micro-batch count in :func:`optimizer_steps` is accelerate's ``BatchSamplerShard`` length
    (how the Trainer shards a map-style dataloader across processes)."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, SequentialSampler

    bs = BatchSampler(SequentialSampler(range(n_rows)), micro, drop_last=False)
    lengths = {len(BatchSamplerShard(bs, num_processes=world, process_index=p)) for p in range(world)}
    ft = FinetuneConfig(epochs=1, batch_size=micro * world, micro_batch_size=micro)  # accumulation 1
    assert lengths == {optimizer_steps(n_rows, ft, world_size=world)}


@pytest.mark.parametrize(
    "n_rows, epochs, batch, micro, max_steps",
    [(10, 2, 4, 2, -1), (7, 3, 16, 4, -1), (9, 1.5, 4, 2, -1), (5, 2, 2, 2, -1), (6, 3, 4, 1, 4)],
)
def test_optimizer_steps_equal_the_trainers(tmp_path, n_rows, epochs, batch, micro, max_steps):
    """A real (tiny) run of the recipe's Trainer takes exactly :func:`optimizer_steps` steps."""
    from cpqs_bench import tiny
    from cpqs_bench.finetune.sft import _trainer, add_lora, collator, grad_accum, training_arguments

    ft = FinetuneConfig(
        epochs=epochs,
        batch_size=batch,
        micro_batch_size=micro,
        max_steps=max_steps,
        lora_r=2,
        save_interval_s=0,
        logging_steps=1000,
    )
    model, tok = tiny.model("chatml")
    model.config.use_cache = False
    peft_model = add_lora(model, ft, 0)
    rows = [{"input_ids": [5 + k] * (3 + k % 4), "labels": [5 + k] * (3 + k % 4)} for k in range(n_rows)]
    args = training_arguments(ft, tmp_path / "ckpt", 0, "fp32", grad_accum(batch, micro, 1), "steps")
    trainer = _trainer(ft, rows, 0, micro, model=peft_model, args=args, data_collator=collator(ft, peft_model, tok))
    trainer.train()
    assert trainer.state.global_step == optimizer_steps(n_rows, ft)
