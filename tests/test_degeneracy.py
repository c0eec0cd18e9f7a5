import math

import pytest

from cpqs_bench.selectors.base import Needs, ScoreRow, token_score_rows
from cpqs_bench.selectors.degeneracy import line, report
from cpqs_bench.testing import ContractError, check_selector


def test_report_counts_ties_nan_and_length_correlation():
    rows = [
        ScoreRow("a", 1.0, 3),
        ScoreRow("b", 1.0, 5),
        ScoreRow("c", 2.0, 7),
        ScoreRow("d", 3.0, 9),
        ScoreRow("e", math.nan, 0, exclude="empty_response"),
    ]
    rep = report(rows)
    assert rep["n"] == 5 and rep["eligible"] == 4 and rep["excluded"] == 1 and rep["nan"] == 1
    assert rep["distinct"] == 3 and rep["tie_fraction"] == 0.5
    assert rep["spearman_length"] > 0.9 and not rep["degenerate"]
    assert "DEGENERATE" not in line("x", rep)
    # dict rows from a score file read the same
    assert report([r.to_dict() for r in rows[:4]]) == {**rep, "n": 4, "excluded": 0, "nan": 0}


def test_all_equal_scores_are_degenerate():
    rep = report([ScoreRow(str(i), 5.0, i) for i in range(6)])
    assert rep["degenerate"] and rep["distinct"] == 1 and rep["tie_fraction"] == 1.0
    assert rep["spearman_length"] is None
    assert line("judge", rep).endswith("DEGENERATE")
    assert report([ScoreRow("a", math.nan, 1, exclude="unparseable")])["degenerate"]


class ConstantSelector:
    name = "constant"
    needs = Needs.NOTHING

    def score(self, examples, ctx):
        return token_score_rows(examples, ctx, lambda ex, ids: 5.0)


def test_contract_fails_when_all_scores_equal():
    with pytest.raises(ContractError, match="scores not degenerate"):
        check_selector(ConstantSelector())


def test_contract_still_passes_a_real_selector():
    assert "scores not degenerate" in check_selector("longest").passed
