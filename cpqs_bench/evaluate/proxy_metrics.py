"""Continuous per-item proxy metrics: how likely the model finds the reference solution, under the task's prompt.

Exact match and pass@1 are binary per item; on a small model they are almost all 0, and no statistics can separate
arms. The proxy tasks (``tasks/*_nll.yaml``) send one lm-eval ``loglikelihood`` request per item: the same context as
the generative task (same instruction text, same chat template, same assistant pre-fill) and, as continuation, the
reference solution (GSM8K: the gold chain of thought ending in ``#### N``; HumanEval: the canonical solution and the
closing fence — one proxy serves HumanEval+ too: same prompts, same canonical solutions). Reported next to, never
instead of, the accuracy metrics, and labelled as proxies on the leaderboard (task metadata ``proxy: true``).

Per item: ``nll_per_byte`` = −log p(reference | context) / UTF-8 bytes of the reference (nats per byte) and
``bits_per_byte`` = the same in bits. Per-*byte* rather than per-token normalisation: lm-eval's ``process_results``
sees the log-likelihood but not the token count, and bytes are tokenizer-independent, so two models with different
tokenizers are compared on one scale (lm-eval's own ``bits_per_byte`` uses the same normalisation for rolling
log-likelihoods). Lower is better. lm-eval moves trailing whitespace of the context (the newline after a chat
template's assistant header) into the continuation, so that one token is scored too: a constant shift for every arm.
"""

from __future__ import annotations

import math
from typing import Any


def _per_byte(results: list[Any], reference: str) -> dict[str, float]:
    ll = results[0][0] if isinstance(results[0], (tuple, list)) else results[0]
    n_bytes = max(1, len(reference.encode("utf-8")))
    nll = -float(ll) / n_bytes
    return {"nll_per_byte": nll, "bits_per_byte": nll / math.log(2)}


def gsm8k_reference(doc: dict) -> str:
    return doc["answer"]


def humaneval_reference(doc: dict) -> str:
    return doc["canonical_solution"] + "```"


def gsm8k_nll_results(doc: dict, results: list[Any]) -> dict[str, float]:
    return _per_byte(results, gsm8k_reference(doc))


def humaneval_nll_results(doc: dict, results: list[Any]) -> dict[str, float]:
    return _per_byte(results, humaneval_reference(doc))
