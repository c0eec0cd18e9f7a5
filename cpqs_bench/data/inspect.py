"""What a pool holds — counts, rejected records by reason, token lengths (``cpqs-bench data inspect POOL``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cpqs_bench.data.pool import read_pool


def inspect_pool(
    pool: str,
    *,
    schema: str | None = None,
    field_map: dict[str, str] | None = None,
    mirror: str | None = None,
    tokenizer: str | None = "embedded",
    template: str = "chat",
    rejected_out: str | None = None,
) -> dict[str, Any]:
    """Read ``pool`` (no row limit, no rejected-fraction limit: inspection reports everything) and describe it."""
    result = read_pool(
        pool, schema=schema, field_map=field_map, mirror=mirror, max_rejected_fraction=None, rejected_path=rejected_out
    )
    report: dict[str, Any] = result.summary()
    report["rejected_examples"] = result.rejected
    if tokenizer and tokenizer != "none" and result.examples:
        from cpqs_bench import models, prompts

        tok = models.load_tokenizer(tokenizer)
        stats = prompts.LengthStats()
        resp = []
        for ex in result.examples:
            r = prompts.render(tok, ex, template, stats=stats)
            if r is not None:
                resp.append(r.n_response)
        lengths = np.array(stats.lengths)
        report["tokens"] = {
            "tokenizer": tokenizer,
            "template": template,
            "total": _describe(lengths),
            "response": _describe(np.array(resp)),
            **stats.as_dict(),
        }
    return report


def _describe(a: np.ndarray) -> dict[str, float]:
    if a.size == 0:
        return {}
    return {
        "min": int(a.min()),
        "p50": float(np.percentile(a, 50)),
        "mean": round(float(a.mean()), 1),
        "p95": float(np.percentile(a, 95)),
        "max": int(a.max()),
    }
