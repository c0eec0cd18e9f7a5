import math

from cpqs_bench.selectors.base import ScoringContext
from cpqs_bench.selectors.ifd import IFDSelector
from cpqs_bench.selectors.perplexity import PerplexitySelector
from cpqs_bench.testing import check_selector, contract_config, contract_examples, tiny_loader


def test_perplexity_contract():
    report = check_selector("perplexity")
    assert "scores not degenerate" in report.passed


def test_perplexity_is_minus_ifd_conditioned_loss_and_reuses_its_shards(tmp_path, monkeypatch):
    cfg = contract_config()
    examples = contract_examples()
    loader = tiny_loader()
    shared = tmp_path / "shared"
    ifd_ctx = ScoringContext(cfg, tmp_path / "ifd", loader=loader, shared_workdir=shared)
    ifd_rows = IFDSelector().score(examples, ScoringContext(cfg, shared / "ifd", loader=loader))
    # the IFD selector wrote its shards under shared/ifd: perplexity must read them without any forward
    from cpqs_bench.selectors import ifd

    def no_forward(*a, **k):
        raise AssertionError("perplexity ran a second forward")

    monkeypatch.setattr(ifd, "score_shard", no_forward)
    rows = PerplexitySelector().score(examples, ifd_ctx)
    for a, b in zip(ifd_rows, rows):
        assert a.id == b.id
        if a.extra.get("loss_cond") is not None:
            assert math.isclose(b.score, -a.extra["loss_cond"])
            assert b.exclude is None
        else:
            assert b.exclude == a.exclude
    high = PerplexitySelector().score(
        examples,
        ScoringContext(
            contract_config(**{"selectors.perplexity_keep": "high"}),
            tmp_path / "x",
            loader=loader,
            shared_workdir=shared,
        ),
    )
    assert [r.score for r in high if r.exclude is None] == [-r.score for r in rows if r.exclude is None]
