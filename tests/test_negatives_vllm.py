"""make-negatives on the vLLM backend, against a fake ``vllm`` module (vLLM is not installed here): the prompts are
the HF path's prompt ids, greedy / sampling parameters and max_new_tokens reach SamplingParams, finish_reason
"length" is unfinished (dropped and counted), the stop token is cut as on the HF path, rows and resume as on HF;
``auto`` picks vLLM only on CUDA with vllm importable."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from cpqs_bench import models, prompts, tiny
from cpqs_bench.data.example import Example
from cpqs_bench.selectors.cpqs import negatives as N

torch.set_num_threads(1)


class FakeSamplingParams:
    def __init__(self, **kw):
        self.kw = kw


class FakeLLM:
    """Answers prompt i of a call with a scripted token list; an answer that reaches ``max_tokens`` first finishes
    with "length", one that reaches a stop token with "stop" (the stop token kept in token_ids, as vLLM does)."""

    instances: list["FakeLLM"] = []
    script: dict[int, list[int]] = {}  # len(prompt ids) % 4 -> generated tokens before the stop (None: never stops)

    def __init__(self, **kw):
        self.init = kw
        self.calls: list[tuple[list[dict], object]] = []
        FakeLLM.instances.append(self)

    def generate(self, requests, params, use_tqdm=True):
        self.calls.append((requests, params))
        outs = []
        for i, req in enumerate(requests):
            p = params[i] if isinstance(params, list) else params
            stop = p.kw["stop_token_ids"][0]
            ids = req["prompt_token_ids"]
            body = [ids[j % len(ids)] for j in range(len(ids) % 4 + 1)]  # some prompt tokens, deterministic
            if len(ids) % 2:  # odd prompts: never stop -> cut at max_tokens
                toks, reason = (body * 100)[: p.kw["max_tokens"]], "length"
            else:
                toks = body[: p.kw["max_tokens"]]
                toks, reason = (toks + [stop], "stop") if len(toks) < p.kw["max_tokens"] else (toks, "length")
            completion = types.SimpleNamespace(text="<vllm text unused>", token_ids=tuple(toks), finish_reason=reason)
            outs.append(types.SimpleNamespace(prompt_token_ids=ids, outputs=[completion]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM = FakeLLM
    mod.SamplingParams = FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    FakeLLM.instances = []
    _, tok = tiny.model("chatml")
    monkeypatch.setattr(models, "resolve", lambda spec, revision=None: (f"/models/{spec}", "rev-" + spec))
    monkeypatch.setattr(models, "load_tokenizer", lambda spec, revision=None: tok)
    return tok


def _pool(n: int = 9) -> list[Example]:
    return [
        Example(f"q{i}", ({"role": "user", "content": "Write a poem about the sea " * (i % 4 + 1) + "!" * i},), "x")
        for i in range(n)
    ]


def _cfg(**kw):
    from cpqs_bench.testing import contract_config

    return contract_config(
        **{
            "selectors.cpqs.generation_backend": "vllm",
            "selectors.cpqs.generation_max_new_tokens": 3,
            "selectors.cpqs.generators": ["small"],
            **kw,
        }
    )


def _rows(path):
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines()] if text else []


def test_vllm_prompts_params_and_drop_count(tmp_path, fake_vllm):
    tok = fake_vllm
    exs = _pool()
    out = tmp_path / "neg.jsonl"
    summary = N.make_negatives(_cfg(), exs, None, out, progress=False)
    (llm,) = FakeLLM.instances
    assert llm.init["model"] == "/models/small" and llm.init["seed"] == 0
    # the prompts: the HF path's chat-templated prompt strings, as the HF path encodes them (no added specials)
    ((requests, params),) = llm.calls
    sent = [r["prompt_token_ids"] for r in requests]
    want = {ex.id: tok(prompts.prompt_text(tok, ex, "chat"), add_special_tokens=False)["input_ids"] for ex in exs}
    assert sorted(map(tuple, sent)) == sorted(tuple(v) for v in want.values())
    assert {tok.decode(ids) for ids in sent} == {prompts.prompt_text(tok, ex, "chat") for ex in exs}
    # greedy: one SamplingParams, temperature 0, max_tokens = max_new_tokens, the HF path's stop tokens
    assert isinstance(params, FakeSamplingParams)
    assert params.kw["temperature"] == 0.0 and params.kw["max_tokens"] == 3
    assert params.kw["stop_token_ids"] == sorted(N._stop_ids(tok))
    # drop-and-count: finish_reason == "length" is unfinished
    parts = N.done_rows(out)
    unfinished = {i for i, r in parts.items() if not r["finished"]}
    lengths = {ex.id: len(want[ex.id]) for ex in exs}
    assert unfinished == {i for i, n in lengths.items() if n % 2 or n % 4 + 1 >= 3}
    assert unfinished and len(unfinished) < len(exs)
    assert summary["unfinished"] == summary["dropped_unfinished"] == len(unfinished)
    assert summary["backend"] == "vllm" and summary["per_generator"]["small"]["backend"] == "vllm"
    rows = _rows(out)
    assert [r["id"] for r in rows] == [ex.id for ex in exs if ex.id not in unfinished]
    assert summary["written"] == len(rows)
    for r in rows:  # same row shape as HF; the stop token cut off, the text decoded from the ids
        assert set(r) == {"id", "response", "generator", "n_new_tokens", "finished"} and r["finished"]
        ids = want[r["id"]]
        body = [ids[j % len(ids)] for j in range(len(ids) % 4 + 1)]
        assert r["n_new_tokens"] == len(body)
        assert r["response"] == tok.decode(body, skip_special_tokens=True).strip()
        assert r["generator"] == "small@rev-small"
    for i in unfinished:
        assert parts[i]["n_new_tokens"] == 3
    assert json.loads((N.parts_dir(out) / "settings.json").read_text())["backend"] == "vllm"


def test_vllm_sampling_seeds_and_resume(tmp_path, fake_vllm):
    exs = _pool(6)
    cfg = _cfg(
        **{
            "selectors.cpqs.generation_do_sample": True,
            "selectors.cpqs.generation_temperature": 0.7,
            "selectors.cpqs.generation_top_p": 0.9,
            "selectors.cpqs.generation_drop_unfinished": False,
        }
    )
    out = tmp_path / "neg.jsonl"
    llm, tok, _ = N.load_vllm("small", "auto", 0)
    sampling = {"do_sample": True, "temperature": 0.7, "top_p": 0.9}
    first = N.generate_negatives(
        exs,
        llm,
        tok,
        out,
        N.GenerationSettings(
            generator="small@rev-small",
            max_new_tokens=3,
            part_size=2,
            sampling=sampling,
            drop_unfinished=False,
            backend="vllm",
        ),
        progress=False,
        stop_after=1,
    )
    assert first == {"complete": False, "generated": 2, "total": 6}
    requests, params = llm.calls[0]
    assert isinstance(params, list) and len(params) == len(requests) == 2
    assert all(p.kw["temperature"] == 0.7 and p.kw["top_p"] == 0.9 and p.kw["max_tokens"] == 3 for p in params)
    assert len({p.kw["seed"] for p in params}) == 2  # one seed per request, from (seed, id)
    done_before = N.done_rows(out)
    summary = N.make_negatives(cfg, exs, None, out, progress=False)  # resumes: only the 4 missing ids
    resumed = FakeLLM.instances[-1]
    assert sum(len(req) for req, _ in resumed.calls) == 4 and summary["written"] == 6
    rows = _rows(out)
    assert [r["id"] for r in rows] == [ex.id for ex in exs]
    assert all(rows[k] == done_before[r["id"]] for k, r in enumerate(rows) if r["id"] in done_before)
    seeds = {N._request_seed(0, ex.id) for ex in exs}
    assert {p.kw["seed"] for _, ps in llm.calls + resumed.calls for p in ps} == seeds
    # parts made by vLLM are not resumed into by HF (settings differ: backend)
    with pytest.raises(ValueError, match="backend"):
        N.make_negatives(
            _cfg(
                **{
                    "selectors.cpqs.generation_backend": "hf",
                    "selectors.cpqs.generation_do_sample": True,
                    "selectors.cpqs.generation_temperature": 0.7,
                    "selectors.cpqs.generation_top_p": 0.9,
                    "selectors.cpqs.generation_drop_unfinished": False,
                }
            ),
            exs,
            None,
            out,
            loader=lambda s, r, d: (*tiny.model("chatml"), type("I", (), {"spec": s, "revision": "rev-" + s})()),
            progress=False,
        )


def test_vllm_matches_hf_rows_when_answers_agree(tmp_path, fake_vllm, monkeypatch):
    """The same answers (token ids) through both backends give identical output files."""
    model, tok = tiny.model("chatml")
    exs = _pool(5)
    hf_out = tmp_path / "hf.jsonl"
    N.generate_negatives(
        exs,
        model,
        tok,
        hf_out,
        N.GenerationSettings(generator="g", max_new_tokens=4, batch_size=2, drop_unfinished=False),
        progress=False,
    )
    hf = {r["id"]: r for r in _rows(hf_out)}
    stop = min(N._stop_ids(tok))

    class Replay(FakeLLM):  # vLLM "generates" what HF generated: the kept tokens + a stop token when finished
        def generate(self, requests, params, use_tqdm=True):
            outs = []
            by_prompt = {
                tuple(tok(prompts.prompt_text(tok, ex, "chat"), add_special_tokens=False)["input_ids"]): ex
                for ex in exs
            }
            for req in requests:
                r = hf[by_prompt[tuple(req["prompt_token_ids"])].id]
                new = tok(r["response"], add_special_tokens=False)["input_ids"] if r["response"] else []
                reason = "stop" if r["finished"] else "length"
                completion = types.SimpleNamespace(
                    text=r["response"], finish_reason=reason, token_ids=tuple(new + ([stop] if r["finished"] else []))
                )
                outs.append(types.SimpleNamespace(outputs=[completion]))
            return outs

    vl_out = tmp_path / "vllm.jsonl"
    N.generate_negatives(
        exs,
        Replay(),
        tok,
        vl_out,
        N.GenerationSettings(generator="g", max_new_tokens=4, drop_unfinished=False, backend="vllm"),
        progress=False,
    )
    for r in _rows(vl_out):
        h = hf[r["id"]]
        assert (r["response"], r["finished"]) == (h["response"], h["finished"])


def test_auto_backend(monkeypatch):
    assert N.resolve_backend("hf", "cuda") == "hf"
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    assert N.resolve_backend("auto", "cuda") == "hf"
    with pytest.raises(ValueError, match="not importable"):
        N.resolve_backend("vllm", "cuda")
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    assert N.resolve_backend("auto", "cuda") == "vllm" and N.resolve_backend("auto", "cuda:1") == "vllm"
    assert N.resolve_backend("auto", "cpu") == "hf" and N.resolve_backend("auto", "mps") == "hf"
    assert N.resolve_backend("vllm", "cpu") == "vllm"
    with pytest.raises(ValueError, match="generation_backend"):
        N.resolve_backend("sglang", "cuda")


def test_auto_on_cuda_uses_vllm_in_make_negatives(tmp_path, fake_vllm):
    summary = N.make_negatives(
        _cfg(**{"selectors.cpqs.generation_backend": "auto", "model.device": "cuda"}),
        _pool(3),
        None,
        tmp_path / "n.jsonl",
        progress=False,
    )
    assert summary["backend"] == "vllm" and len(FakeLLM.instances) == 1


def test_auto_on_cpu_uses_hf(tmp_path, fake_vllm):
    def load(spec, revision, dtype):
        model, tok = tiny.model("chatml")
        return model, tok, type("Info", (), {"spec": spec, "revision": None})()

    summary = N.make_negatives(
        _cfg(**{"selectors.cpqs.generation_backend": "auto", "model.device": "cpu"}),
        _pool(3),
        None,
        tmp_path / "n.jsonl",
        loader=load,
        progress=False,
    )
    assert summary["backend"] == "hf" and not FakeLLM.instances


def test_cli_backend_flag_is_the_config_key():
    from cpqs_bench.cli import build_parser
    from cpqs_bench.cli.common import resolve

    args = build_parser("make-negatives").parse_args(["--out", "x.jsonl", "--backend", "hf"])
    assert resolve(args).cfg.selectors.cpqs.generation_backend == "hf"
    args = build_parser("make-negatives").parse_args(["--out", "x.jsonl"])
    assert resolve(args).cfg.selectors.cpqs.generation_backend == "auto"
