"""make-negatives: batched greedy generation equals one-at-a-time, output in pool order, resumable; answers cut at
max_new_tokens are dropped and counted; several generator models."""

from __future__ import annotations

import json

import torch

from cpqs_bench import prompts, tiny
from cpqs_bench.data.example import Example
from cpqs_bench.selectors.cpqs import negatives as N

torch.set_num_threads(1)


def _pool(n: int = 7) -> list[Example]:
    return [
        Example(f"q{i}", ({"role": "user", "content": "Write a poem about the sea " * (i % 3 + 1)},), "x")
        for i in range(n)
    ]


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
    first = N.generate_negatives(
        exs,
        model,
        tok,
        out,
        N.GenerationSettings(generator="tiny", max_new_tokens=4, batch_size=2, part_size=4, drop_unfinished=False),
        progress=False,
        stop_after=1,
    )
    assert first == {"complete": False, "generated": 2, "total": 7} and not out.exists()
    done_before = N.done_rows(out)
    summary = N.generate_negatives(
        exs,
        model,
        tok,
        out,
        N.GenerationSettings(generator="tiny", max_new_tokens=4, batch_size=2, part_size=4, drop_unfinished=False),
        progress=False,
    )
    assert summary["complete"] and summary["total"] == 7
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [ex.id for ex in exs]
    for r in rows:
        if r["id"] in done_before:  # resumed rows are kept, not regenerated
            assert r == done_before[r["id"]]
    fresh = tmp_path / "fresh.jsonl"
    N.generate_negatives(
        exs,
        model,
        tok,
        fresh,
        N.GenerationSettings(generator="tiny", max_new_tokens=4, batch_size=2, part_size=4, drop_unfinished=False),
        progress=False,
    )
    assert fresh.read_text() == out.read_text()  # interrupted + resumed == one go
    again = N.generate_negatives(
        exs,
        model,
        tok,
        out,
        N.GenerationSettings(generator="tiny", max_new_tokens=4, batch_size=2, drop_unfinished=False),
        progress=False,
    )
    assert again["total"] == 7 and len(list(N.parts_dir(out).glob("part-*.jsonl"))) == 3  # nothing regenerated


def _cfg(**kw):
    from cpqs_bench.testing import contract_config

    return contract_config(**{"selectors.cpqs.generation_batch_size": 3, **kw})


def _loader(seed_of):
    def load(spec, revision, dtype):
        model, tok = tiny.model("chatml", seed=seed_of[spec])
        return model, tok, type("Info", (), {"spec": spec, "revision": None})()

    return load


def test_unfinished_answers_are_dropped_and_counted(tmp_path):
    """max_new_tokens=3: answers without a stop token are unfinished; they stay in the parts (no regeneration on
    resume) but not in the output, and the summary counts them."""
    exs = _pool(9)
    out = tmp_path / "neg.jsonl"
    cfg = _cfg(**{"selectors.cpqs.generation_max_new_tokens": 3})
    summary = N.make_negatives(cfg, exs, "tiny", out, loader=_loader({"tiny": 0}), progress=False)
    parts = N.done_rows(out)
    unfinished = {i for i, r in parts.items() if not r["finished"]}
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.read_text() else []
    assert len(parts) == 9 and unfinished  # the short budget really cut answers off
    assert summary["unfinished"] == summary["dropped_unfinished"] == len(unfinished)
    assert summary["written"] == len(rows) == 9 - len(unfinished)
    assert all(r["finished"] for r in rows) and not {r["id"] for r in rows} & unfinished
    kept = N.make_negatives(
        _cfg(**{"selectors.cpqs.generation_max_new_tokens": 3, "selectors.cpqs.generation_drop_unfinished": False}),
        exs,
        "tiny",
        tmp_path / "all.jsonl",
        loader=_loader({"tiny": 0}),
        progress=False,
    )
    assert kept["written"] == 9 and kept["dropped_unfinished"] == 0 and kept["unfinished"] == len(unfinished)


def test_several_generators_and_sampling(tmp_path):
    exs = _pool(4)
    out = tmp_path / "neg.jsonl"
    cfg = _cfg(
        **{
            "selectors.cpqs.generation_max_new_tokens": 4,
            "selectors.cpqs.generation_drop_unfinished": False,
            "selectors.cpqs.generators": ["small-a", "small-b"],
        }
    )
    summary = N.make_negatives(cfg, exs, None, out, loader=_loader({"small-a": 0, "small-b": 1}), progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["generators"] == ["small-a", "small-b"] and len(rows) == 8
    assert [r["generator"].split("@")[0] for r in rows] == ["small-a"] * 4 + ["small-b"] * 4
    assert [r["id"] for r in rows] == [ex.id for ex in exs] * 2
    sampled = _cfg(
        **{
            "selectors.cpqs.generation_max_new_tokens": 4,
            "selectors.cpqs.generation_drop_unfinished": False,
            "selectors.cpqs.generation_do_sample": True,
            "selectors.cpqs.generation_temperature": 1.5,
        }
    )
    a = N.make_negatives(sampled, exs, "small-a", tmp_path / "s1.jsonl", loader=_loader({"small-a": 0}), progress=False)
    N.make_negatives(sampled, exs, "small-a", tmp_path / "s2.jsonl", loader=_loader({"small-a": 0}), progress=False)
    assert a["sampling"]["do_sample"] and (tmp_path / "s1.jsonl").read_text() == (tmp_path / "s2.jsonl").read_text()
    greedy = [r["response"] for r in rows[:4]]
    assert [json.loads(x)["response"] for x in (tmp_path / "s1.jsonl").read_text().splitlines()] != greedy
