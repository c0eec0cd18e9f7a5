"""Judge backends: the OpenAI-compatible path against a loopback stand-in (429 + retry, concurrency limit, cache
hit on rerun, key never written), the local path on a tiny model."""

import pytest
from openai_standin import StandIn

from cpqs_bench.judge.backends import CachedJudge, JudgeError, OpenAIJudge, make_judge
from cpqs_bench.judge.cache import JudgeCache
from cpqs_bench.judge.config import JudgeConfig
from cpqs_bench.testing import tiny_loader

SECRET = "sk-standin-0123456789abcdef-never-on-disk"
ENV = "CPQS_TEST_JUDGE_KEY"


def _echo(messages):
    return f"answer to: {messages[-1]['content'][:20]}"


def _convs(n):
    return [[{"role": "user", "content": f"question {i}"}] for i in range(n)]


def test_openai_retries_429_limits_concurrency_and_caches(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv(ENV, SECRET)
    cfg = JudgeConfig(
        backend="openai",
        model="standin-judge",
        api_key_env=ENV,
        concurrency=2,
        backoff_s=0.01,
        cache_dir=str(tmp_path / "cache"),
    )
    with StandIn(SECRET, _echo, fail_first=3) as server:
        cfg = JudgeConfig(**{**cfg.__dict__, "base_url": server.base_url})
        judge = make_judge(cfg)
        answers = judge.complete(_convs(6))
        assert answers == [f"answer to: question {i}" for i in range(6)]
        assert [r["status"] for r in server.requests].count(429) == 3
        assert len(server.requests) == 9 and judge.judge.retries == 3
        assert server.max_in_flight <= 2
        assert judge.misses == 6 and judge.hits == 0
        judge.cache.close()
        # a rerun (fresh judge object, same cache folder): every answer from the cache, no request at all
        again = make_judge(cfg)
        assert again.complete(_convs(6)) == answers
        assert again.hits == 6 and again.misses == 0 and len(server.requests) == 9
        again.cache.close()
    # the key is in no file and no output
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err + caplog.text
    assert SECRET not in judge.identity


def test_openai_gives_up_after_max_retries_and_does_not_retry_client_errors(monkeypatch):
    monkeypatch.setenv(ENV, SECRET)
    with StandIn(SECRET, _echo, always_status=429) as server:
        j = OpenAIJudge(server.base_url, "m", ENV, concurrency=1, max_retries=2, backoff_s=0.0)
        with pytest.raises(JudgeError, match="gave up after 3 attempts"):
            j.complete(_convs(1))
        assert len(server.requests) == 3
    with StandIn("another-key", _echo) as server:  # wrong key: 401, not retried, key not in the message
        j = OpenAIJudge(server.base_url, "m", ENV, max_retries=5, backoff_s=0.0)
        with pytest.raises(JudgeError, match="HTTP 401") as err:
            j.complete(_convs(1))
        assert SECRET not in str(err.value) and len(server.requests) == 1


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(JudgeError, match=ENV):
        OpenAIJudge("http://127.0.0.1:9/v1", "m", ENV).complete(_convs(1))
    with pytest.raises(JudgeError, match="base_url"):
        make_judge(JudgeConfig(backend="openai"))


def test_local_judge_on_tiny_model_is_batched_order_free_and_weak(tmp_path):
    load = tiny_loader()
    cfg = JudgeConfig(max_new_tokens=6, batch_size=2, cache_dir=str(tmp_path))
    judge = make_judge(cfg, lambda spec, rev: load(spec, rev, "float32"), target_spec="embedded")
    assert judge.weak and "weak judge" in judge.label
    convs = _convs(5)
    a = judge.complete(convs)
    assert len(a) == 5 and all(isinstance(x, str) for x in a)
    nocache = CachedJudge(judge.judge, None)
    assert nocache.complete(list(reversed(convs))) == list(reversed(a))  # batching does not depend on order
    assert judge.complete(convs) == a and judge.hits == 5
    named = make_judge(JudgeConfig(model="some/judge", cache=False), lambda s, r: load(s, r, "float32"))
    assert not named.weak and named.cache is None


def test_cache_keys_on_judge_and_messages(tmp_path):
    with JudgeCache(tmp_path / "c.sqlite") as cache:
        from cpqs_bench.judge.cache import key

        cache.put(key("j1", [{"role": "user", "content": "x"}]), "j1", "A")
        assert cache.get(key("j1", [{"role": "user", "content": "x"}])) == "A"
        assert cache.get(key("j2", [{"role": "user", "content": "x"}])) is None
        assert cache.get(key("j1", [{"role": "user", "content": "y"}])) is None
        assert len(cache) == 1
