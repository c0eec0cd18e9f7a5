"""Hidden-state features: response span only, batched == unbatched, layer selection, streaming order, cache."""

from __future__ import annotations

import pytest
import torch

from cpqs_bench import features as F
from cpqs_bench import prompts, tiny
from cpqs_bench.code_version import closure
from cpqs_bench.data.example import Example

torch.set_num_threads(1)


def _examples(n: int = 9) -> list[Example]:
    return [
        Example(
            f"e{i}",
            ({"role": "user", "content": "Write a poem about the sea " * (i % 3 + 1)},),
            "The quick brown fox jumps. " * (i % 4 + 1),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module", params=["chatml", "gpt2"])
def tiny_model(request):
    model, tok = tiny.model(request.param, num_layers=3)
    template = "chat" if request.param == "chatml" else "alpaca"
    return model, tok, template


def _manual(model, tok, ex, template, layers):
    """Reference: one example, full CausalLM forward with output_hidden_states, sliced to the response."""
    r = prompts.render(tok, ex, template, max_length=2048)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([r.input_ids]), output_hidden_states=True)
    idx = F.resolve_layers(layers, 3)
    return torch.stack([out.hidden_states[i][0, r.response_start : r.response_end] for i in idx], dim=1), r


def test_resolve_layers():
    assert F.resolve_layers("all", 30) == list(range(31))
    assert F.resolve_layers("last", 30) == [30]
    thirds = F.resolve_layers("front", 30) + F.resolve_layers("middle", 30) + F.resolve_layers("back", 30)
    assert thirds == list(range(31))
    assert F.resolve_layers("0,4,-1", 30) == [0, 4, 30]
    for bad in ("31", "x", "", "1,1"):
        with pytest.raises(F.FeatureError):
            F.resolve_layers(bad, 30)


@pytest.mark.parametrize("method", ["hooks", "hidden_states", "auto"])
@pytest.mark.parametrize("layers", ["all", "front", "1,3"])
def test_batched_equals_manual_response_slice(tiny_model, method, layers):
    model, tok, template = tiny_model
    exs = _examples()
    got = dict(F.extract(model, tok, exs, F.FeatureSpec(template, layers), F.ExtractOptions(4, method=method)))
    assert list(got) == [ex.id for ex in exs]
    for ex in exs:
        ref, r = _manual(model, tok, ex, template, layers)
        assert got[ex.id].shape == (r.n_response, len(F.resolve_layers(layers, 3)), 32)
        torch.testing.assert_close(got[ex.id], ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("selective", [True, False])
def test_hidden_states_capture_with_and_without_index_selection(tiny_model, monkeypatch, selective):
    """transformers 5.17 numbers a list ``output_hidden_states`` differently (no initial state): there the capture
    asks for every hidden state and indexes them itself. Both paths give the reference slices."""
    model, tok, template = tiny_model
    monkeypatch.setattr(F, "selective_hidden_states", lambda: selective)
    exs = _examples()
    got = dict(
        F.extract(model, tok, exs, F.FeatureSpec(template, "0,2,-1"), F.ExtractOptions(4, method="hidden_states"))
    )
    for ex in exs:
        ref, _ = _manual(model, tok, ex, template, "0,2,-1")
        torch.testing.assert_close(got[ex.id], ref, atol=2e-5, rtol=1e-4)


def test_batch_size_does_not_change_features(tiny_model):
    model, tok, template = tiny_model
    exs = _examples()
    one = dict(F.extract(model, tok, exs, F.FeatureSpec(template), F.ExtractOptions(1)))
    many = dict(F.extract(model, tok, exs, F.FeatureSpec(template), F.ExtractOptions(5, window=6)))
    for ex in exs:
        torch.testing.assert_close(one[ex.id], many[ex.id], atol=2e-5, rtol=1e-4)


def test_order_kept_and_dropped_examples_reported():
    model, tok = tiny.model("chatml", num_layers=2)
    long_prompt = Example("long", ({"role": "user", "content": "sea " * 200},), "ok")
    exs = _examples(4)[:2] + [long_prompt] + _examples(4)[2:]
    room = max(len(prompts.render(tok, ex, "chat").input_ids) for ex in exs if ex.id != "long")
    stats = F.ExtractStats()
    out = list(F.extract(model, tok, exs, F.FeatureSpec("chat", max_length=room), F.ExtractOptions(2), stats=stats))
    assert [i for i, _ in out] == [ex.id for ex in exs]
    assert dict(out)["long"] is None and stats.lengths.dropped_prompt_too_long == 1
    assert all(t is not None for i, t in out if i != "long")


def test_iter_batches_buckets_by_length():
    model, tok = tiny.model("chatml", num_layers=2)
    batches = list(F.iter_batches(model, tok, _examples(8), F.FeatureSpec(), F.ExtractOptions(4)))
    lengths = [n for b in batches for n in b.n_tokens]
    assert lengths == sorted(lengths)  # one window: globally sorted, so padding is minimal


def test_feature_cache_round_trip_and_cap(tmp_path):
    model, tok = tiny.model("chatml", num_layers=2)
    spec = F.FeatureSpec(max_length=128)
    exs = _examples(5)
    cache = F.FeatureCache(tmp_path, F.model_identity(model, None), spec, max_gb=1.0)
    assert F.cached_features(model, tok, exs, spec, cache, F.ExtractOptions(2)) == 5
    assert F.cached_features(model, tok, exs, spec, cache, F.ExtractOptions(2)) == 0  # everything reused
    again = F.FeatureCache(tmp_path, F.model_identity(model, None), spec, max_gb=1.0)  # index re-read from disk
    got = again.get_many([ex.content_key() for ex in exs])
    direct = dict(F.extract(model, tok, exs, F.FeatureSpec("chat", max_length=128)))
    for ex in exs:
        torch.testing.assert_close(got[ex.content_key()], direct[ex.id], atol=2e-5, rtol=1e-4)
    other = F.FeatureCache(tmp_path, F.model_identity(model, None), F.FeatureSpec(max_length=64), max_gb=1.0)
    assert other.path != cache.path and ex.content_key() not in other
    tiny_cap = F.FeatureCache(tmp_path / "cap", F.model_identity(model, None), spec, max_gb=1e-9)
    with pytest.raises(F.FeatureError, match="full"):
        F.cached_features(model, tok, exs, spec, tiny_cap, F.ExtractOptions(2))


def test_feature_cache_is_keyed_on_the_extraction_code(tmp_path, monkeypatch):
    """A changed extraction (features.py or anything it imports) never reads the older code's tensors: the cache key
    holds the code record, and the record covers this module."""
    model, tok = tiny.model("chatml", num_layers=2)
    spec, exs = F.FeatureSpec(max_length=128), _examples(2)
    cache = F.FeatureCache(tmp_path, F.model_identity(model, None), spec, max_gb=1.0)
    assert F.cached_features(model, tok, exs, spec, cache, F.ExtractOptions(2)) == 2
    assert {"cpqs_bench.features", "cpqs_bench.prompts"} <= set(closure([F.__name__]))  # what the record hashes
    monkeypatch.setattr(F, "cache_code", lambda: {"modules": "an edited features.py"})
    edited = F.FeatureCache(tmp_path, F.model_identity(model, None), spec, max_gb=1.0)
    assert edited.path != cache.path and exs[0].content_key() not in edited
    assert F.cached_features(model, tok, exs, spec, edited, F.ExtractOptions(2)) == 2  # computed again
