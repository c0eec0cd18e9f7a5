"""Selector validity tracks (issue #29): screen a selector on ground truth (planted defects, labelled pairs) before
any fine-tune. Entry: :func:`cpqs_bench.validity.run.validate`; outcome link: :func:`.run.predicts_outcome`."""

from cpqs_bench.validity.run import predicts_outcome, validate

__all__ = ["predicts_outcome", "validate"]
