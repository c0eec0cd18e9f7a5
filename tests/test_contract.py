"""Every built-in selector that runs without a user-supplied input (see NEEDS_INPUT) through the contract kit,
the kit itself catches broken selectors, and it reports (never fails on) the validity tracks."""

from __future__ import annotations

import math
from typing import Sequence

import pytest
import torch

from cpqs_bench.data.example import Example
from cpqs_bench.selectors.base import Needs, ScoreRow, ScoringContext
from cpqs_bench.selectors.registry import BUILTIN
from cpqs_bench.testing import ContractError, check_selector, contract_examples

torch.set_num_threads(1)


# Selectors that cannot run without a user-supplied input; their own tests run the kit with one:
# cpqs a trained checkpoint (tests/test_cpqs_train.py and tests/test_score.py score with one), external a scored dataset (tests/test_external.py),
# less / rds a query set (tests/test_less.py, tests/test_rds.py).
NEEDS_INPUT = {"cpqs", "external", "less", "rds"}


@pytest.mark.parametrize("name", sorted(n for n in BUILTIN if n not in NEEDS_INPUT))
def test_builtin_passes_contract(name):
    report = check_selector(name)
    assert "determinism under a seed" in report.passed and "order invariance" in report.passed
    assert {r.id for r in report.rows} == {e.id for e in contract_examples()}
    assert next(r for r in report.rows if r.id == "empty").exclude is not None
    kinds = {r["kind"] for r in report.validity["planted"]}  # both validity tracks ran on the tiny fixture
    assert {"truncated", "padded", "math_wrong_final", "code_bug", "overall"} <= kinds
    assert {r["subset"] for r in report.validity["pairs"]} == {"overall", "length_matched", "strong_shorter"}


@pytest.mark.parametrize("family", ["llama2", "gpt2"])
def test_ifd_contract_on_other_tokenizer_families(family):
    check_selector("ifd", family=family)


class _Base:
    needs = Needs.NOTHING

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        return [
            ScoreRow(e.id, float(len(e.response)), 0, exclude=None if e.response.strip() else "empty_response")
            for e in examples
        ]


class Unseeded(_Base):
    name = "unseeded"
    calls = 0

    def score(self, examples, ctx):
        Unseeded.calls += 1
        return [ScoreRow(r.id, r.score + Unseeded.calls, 0, r.exclude) for r in super().score(examples, ctx)]


class LosesIds(_Base):
    name = "loses_ids"

    def score(self, examples, ctx):
        return super().score(examples, ctx)[:-1]


class EligibleEmpty(_Base):
    name = "eligible_empty"

    def score(self, examples, ctx):
        return [ScoreRow(e.id, 1.0, 0) for e in examples]


class NanEligible(_Base):
    name = "nan_eligible"

    def score(self, examples, ctx):
        return [
            ScoreRow(r.id, math.nan if r.id == "code" else r.score, 0, r.exclude) for r in super().score(examples, ctx)
        ]


class OrderDependent(_Base):
    name = "order_dependent"

    def score(self, examples, ctx):
        return [
            ScoreRow(e.id, float(i), 0, None if e.response.strip() else "empty_response")
            for i, e in enumerate(examples)
        ]


@pytest.mark.parametrize(
    "bad, check",
    [
        (Unseeded(), "determinism"),
        (LosesIds(), "one row per example"),
        (EligibleEmpty(), "empty-response policy"),
        (NanEligible(), "finite"),
        (OrderDependent(), "order invariance"),
    ],
)
def test_kit_rejects_broken_selectors(bad, check):
    with pytest.raises(ContractError, match=check):
        check_selector(bad)


def test_kit_passes_a_correct_minimal_selector():
    assert check_selector(_Base_named()).passed


def _Base_named():
    sel = _Base()
    sel.name = "minimal"
    return sel


def test_kit_requires_checkpoint_for_checkpoint_selectors():
    sel = _Base_named()
    sel.needs = Needs.CHECKPOINT
    with pytest.raises(ContractError, match="checkpoint"):
        check_selector(sel)


class Shortest(_Base):
    name = "shortest"

    def score(self, examples, ctx):
        return [ScoreRow(r.id, -r.score, 0, r.exclude) for r in super().score(examples, ctx)]


def test_kit_reports_validity_aucs_and_does_not_fail_on_them():
    longer = check_selector(_Base_named())
    shorter = check_selector(Shortest())  # prefers every cut-off answer: reported, never a contract failure

    def auc(report, kind):
        return next(r for r in report.validity["planted"] if r["kind"] == kind)["paired_auc"]

    assert auc(longer, "truncated") == 1.0 and auc(shorter, "truncated") == 0.0
    assert auc(longer, "padded") == 0.0 and auc(shorter, "padded") == 1.0
    assert "paired AUC" in shorter.validity_summary()
    assert "validity" not in " ".join(shorter.passed)
    assert check_selector(_Base_named(), validity=False).validity is None
