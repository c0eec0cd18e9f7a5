import math

import numpy as np
import pytest
import torch

from cpqs_bench import prompts
from cpqs_bench.config import replace
from cpqs_bench.data.example import Example
from cpqs_bench.select import kept_ids, select
from cpqs_bench.selectors import registry
from cpqs_bench.selectors.base import ScoringContext
from cpqs_bench.selectors.rds import (
    RDSSelector,
    check_queries_disjoint,
    load_queries,
    rds_max_length,
    round_robin,
    weighted_mean_pool,
)
from cpqs_bench.testing import check_selector, contract_config, contract_examples, tiny_loader


def _user(text):
    return ({"role": "user", "content": text},)


POOL = [
    Example("p1", _user("Explain why the sky is blue."), "Blue light scatters the most."),
    Example("p2", _user("Write a Python function that adds two numbers."), "def add(a, b):\n    return a + b\n"),
    Example("p3", _user("Natalia sold clips to 48 of her friends."), "She sold 72 clips. #### 72"),
    Example("p4", _user("Hello!"), "Hello, world! How are you today? " * 3),
    Example("p5", _user("Say nothing."), "  "),
]
QUERIES = [
    Example("q1", _user("How many clips did Natalia sell?"), "72 clips. #### 72"),
    Example("q2", _user("Write a poem about the sea."), "The sea and the sky, a quick brown fox."),
    Example("q3", _user("Give three tips for sleeping well."), "Dark room, no screens, same hour."),
]


def _ctx(tmp_path, **overrides):
    cfg = contract_config(**{"selectors.rds.batch_size": 3, **overrides})
    return ScoringContext(cfg, tmp_path, loader=tiny_loader("chatml"))


def _hand_embedding(model, tok, ex, cfg):
    """The reference's pooling, one example at a time (batch size 1: no padding, so no mask needed)."""
    r = prompts.render(tok, ex, cfg.prompt.template, train_eot=True, max_length=rds_max_length(model, cfg))
    ids = torch.tensor([list(r.input_ids)])
    with torch.no_grad():
        h = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].double()
    w = torch.arange(1, h.shape[0] + 1, dtype=torch.float64)
    w = w / w.sum()
    v = (h * w[:, None]).sum(0)
    return (v / v.norm()).numpy()


def test_pooling_and_max_cosine_match_a_hand_computation(tmp_path):
    ctx = _ctx(tmp_path)
    model, tok, _ = ctx.model()
    rows = RDSSelector([("t", q) for q in QUERIES]).score(POOL, ctx)
    q = np.stack([_hand_embedding(model, tok, ex, ctx.config) for ex in QUERIES])
    for ex, row in zip(POOL, rows):
        assert row.id == ex.id
        if ex.id == "p5":
            assert row.exclude == "empty_response" and math.isnan(row.score)
            continue
        expected = float((q @ _hand_embedding(model, tok, ex, ctx.config)).max())
        assert row.exclude is None
        assert row.score == pytest.approx(expected, abs=1e-5)
        assert row.extra["max_cos"] == {"t": pytest.approx(expected, abs=1e-5)}
    assert len({round(r.score, 6) for r in rows if r.exclude is None}) == 4


def test_mask_is_applied_to_padded_rows():
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    pooled = weighted_mean_pool(hidden, mask)
    alone = weighted_mean_pool(hidden[1:, :2], torch.ones(1, 2))  # the short row without padding
    assert torch.allclose(pooled[1], alone[0], atol=1e-6)
    unmasked = weighted_mean_pool(hidden[1:], torch.ones(1, 5))  # the reference's weights on a padded batch
    assert not torch.allclose(pooled[1], unmasked[0], atol=1e-3)
    # weights (t + 1) / sum: [1, 2] / 3 for the short row
    manual = (hidden[1, 0] * 1 + hidden[1, 1] * 2) / 3
    assert torch.allclose(pooled[1], manual / manual.norm(), atol=1e-6)


def test_batching_does_not_change_scores(tmp_path):
    one = RDSSelector([("t", q) for q in QUERIES]).score(POOL, _ctx(tmp_path / "a", **{"selectors.rds.batch_size": 1}))
    many = RDSSelector([("t", q) for q in QUERIES]).score(POOL, _ctx(tmp_path / "b", **{"selectors.rds.batch_size": 5}))
    for a, b in zip(one, many):
        assert a.exclude == b.exclude
        if a.exclude is None:
            assert a.score == pytest.approx(b.score, abs=1e-5)


def test_round_robin_three_tasks_dup_spends_the_turn():
    per_task = {
        "A": {"a": 0.9, "b": 0.8, "c": 0.1, "d": 0.0},
        "B": {"a": 0.95, "c": 0.5, "b": 0.2, "d": 0.1},
        "C": {"d": 0.7, "a": 0.6, "b": 0.5, "c": 0.4},
    }
    # round 1: A takes a, B pops a (taken: turn spent), C takes d; round 2: A takes b, B takes c
    assert round_robin(per_task) == [("a", "A"), ("d", "C"), ("b", "A"), ("c", "B")]
    # ties inside a task are broken by id
    assert round_robin({"A": {"y": 1.0, "x": 1.0}}) == [("x", "A"), ("y", "A")]


def test_three_task_selector_exposes_the_round_robin_as_pick_order(tmp_path):
    ctx = _ctx(tmp_path)
    queries = [("math", QUERIES[0]), ("poem", QUERIES[1]), ("health", QUERIES[2])]
    rows = RDSSelector(queries).score(POOL, ctx)
    live = [r for r in rows if r.exclude is None]
    assert {t for r in live for t in r.extra["max_cos"]} == {"math", "poem", "health"}
    per_task = {t: {r.id: r.extra["max_cos"][t] for r in live} for t in ("math", "poem", "health")}
    order = round_robin(per_task)
    by_score = sorted(live, key=lambda r: -r.score)
    assert [(r.id, r.extra["rr_task"]) for r in by_score] == order
    assert [r.extra["rr_pick"] for r in by_score] == list(range(len(live)))
    assert [r.score for r in by_score] == [1.0 - j / len(live) for j in range(len(live))]
    # select's top-k is the reference's round-robin selection of k
    assert kept_ids(select([r.to_dict() for r in rows], budget=2)) == [i for i, _ in order[:2]]


def test_query_overlap_is_refused():
    evals = [
        Example("gsm-1", _user("How  many clips did\nNatalia sell?"), "irrelevant"),
        Example("other", _user("What is 2 + 2?"), "4"),
    ]
    problems = check_queries_disjoint([("t", q) for q in QUERIES], evals)
    assert len(problems) == 2
    assert "1 of 3 query examples are evaluation items" in problems[0]
    assert "'q1'" in problems[1] and "'gsm-1'" in problems[1]
    assert check_queries_disjoint(QUERIES, ["write a poem about THE sea."]) != []
    assert check_queries_disjoint(QUERIES, evals[1:]) == []


def test_load_queries_from_the_mirror(mirror):
    cfg = contract_config(**{"selectors.rds.queries": "gsm8k_train,mbpp_plus", "selectors.rds.query_limit": 3})
    got = load_queries(cfg)
    assert [t for t, _ in got] == ["gsm8k_train"] * 3 + ["mbpp_plus"] * 3
    assert all(ex.response.strip() for _, ex in got)
    cfg = contract_config(
        **{
            "selectors.rds.queries": "alpaca_eval/gpt4",
            "selectors.rds.query_limit": None,
            "selectors.rds.query_task_field": "dataset",
        }
    )
    assert {t for t, _ in load_queries(cfg)} == {"selfinstruct", "oasst", "koala", "helpful_base", "vicuna"}
    with pytest.raises(ValueError, match="needs a query set"):
        load_queries(contract_config())
    with pytest.raises(ValueError, match="no metadata field 'nope'"):
        load_queries(
            contract_config(**{"selectors.rds.queries": "gsm8k_train", "selectors.rds.query_task_field": "nope"})
        )


def test_rds_is_target_aware_and_registered():
    assert registry.get("rds").target_aware is True


def test_contract():
    check_selector(RDSSelector([("a", QUERIES[0]), ("b", QUERIES[1])]))
    check_selector(RDSSelector([("a", q) for q in QUERIES]), family="llama2")
    report = check_selector(RDSSelector([("t", q) for q in QUERIES]))
    assert all(-1.0 - 1e-6 <= r.score <= 1.0 + 1e-6 for r in report.rows if r.exclude is None)  # max cosines


def test_queries_that_are_pool_examples_are_refused(tmp_path):
    """A query that is a pool example (normalised instruction) would rank its own copy first: refused."""
    pool = contract_examples()
    with pytest.raises(ValueError, match="query examples are pool examples") as err:
        RDSSelector([("t", QUERIES[0]), ("t", pool[2])]).score(pool, _ctx(tmp_path))
    assert repr(pool[2].id) in str(err.value) and "query_offset" in str(err.value)


def test_query_offset_and_query_tasks_choose_the_rows(mirror):
    from cpqs_bench.data.pool import read_pool

    cfg = contract_config(**{"selectors.rds.queries": "gsm8k_train", "selectors.rds.query_limit": 2})
    first = read_pool("gsm8k_train", limit=5).examples
    got = load_queries(replace(cfg, **{"selectors.rds.query_offset": 3}))
    assert [q.id for _, q in got] == [ex.id for ex in first[3:5]]  # rows 3 and 4: past a 3-row pool
    tasks = contract_config(
        **{
            "selectors.rds.queries": "alpaca_eval/gpt4",
            "selectors.rds.query_task_field": "dataset",
            "selectors.rds.query_tasks": ("oasst", "helpful_base"),
            "selectors.rds.query_limit": None,
        }
    )
    loaded = load_queries(tasks)
    assert {t for t, _ in loaded} == {"oasst", "helpful_base"} and len(loaded) == 188 + 129
    with pytest.raises(ValueError, match="query_tasks needs selectors.rds.query_task_field"):
        load_queries(replace(tasks, **{"selectors.rds.query_task_field": None}))
