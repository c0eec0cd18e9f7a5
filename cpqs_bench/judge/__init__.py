"""LLM judges (local HF chat model or OpenAI-compatible endpoint), with a persistent answer cache.

Used by the ``alpagasus`` selector and by the pairwise judge evaluation (:mod:`cpqs_bench.evaluate.judge`)."""
