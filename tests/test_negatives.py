"""make-negatives: batched greedy generation equals one-at-a-time, output in pool order, resumable."""
from __future__ import annotations

import json

import torch

from cpqs_bench import prompts, tiny
from cpqs_bench.data import negatives as N
from cpqs_bench.data.example import Example

torch.set_num_threads(1)


def _pool(n: int = 7) -> list[Example]:
    return [Example(f"q{i}", ({"role": "user", "content": "Write a poem about the sea " * (i % 3 + 1)},), "x")
            for i in range(n)]


def test_batched_generation_equals_unbatched():
    model, tok = tiny.model("chatml")
    exs = _pool(5)
    texts = [prompts.prompt_text(tok, ex, "chat") for ex in exs]
    batched = N.generate_batch(model, tok, texts, max_new_tokens=6)
    for text, got in zip(texts, batched):
        assert N.generate_batch(model, tok, [text], max_new_tokens=6) == [got]
    assert len({len(t) for t in texts}) > 1  # the batch really mixed prompt lengths (left padding exercised)


def test_resume_after_interruption(tmp_path):
    model, tok = tiny.model("chatml")
    exs = _pool()
    out = tmp_path / "neg.jsonl"
    first = N.make_negatives(exs, model, tok, out, generator="tiny", max_new_tokens=4, batch_size=2, part_size=4,
                             progress=False, stop_after=1)
    assert first == {"complete": False, "generated": 2, "total": 7} and not out.exists()
    done_before = N.done_rows(out)
    summary = N.make_negatives(exs, model, tok, out, generator="tiny", max_new_tokens=4, batch_size=2, part_size=4,
                               progress=False)
    assert summary["complete"] and summary["total"] == 7
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [ex.id for ex in exs]
    for r in rows:
        if r["id"] in done_before:  # resumed rows are kept, not regenerated
            assert r == done_before[r["id"]]
    fresh = tmp_path / "fresh.jsonl"
    N.make_negatives(exs, model, tok, fresh, generator="tiny", max_new_tokens=4, batch_size=2, part_size=4,
                     progress=False)
    assert fresh.read_text() == out.read_text()  # interrupted + resumed == one go
    again = N.make_negatives(exs, model, tok, out, generator="tiny", max_new_tokens=4, batch_size=2, progress=False)
    assert again["total"] == 7 and len(list(N.parts_dir(out).glob("part-*.jsonl"))) == 3  # nothing regenerated
