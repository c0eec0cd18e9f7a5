"""Issue #34 (reliability), items 2, 3, 4, 5, 7, 8, 9/10: each test here fails on the code before the fix.

Hostile inputs on tiny fixtures, loopback servers only: broken selector plugins, a Hub that never answers, an
endpoint that echoes the key, YAML alias bombs and bad settings, a judge failing mid-batch, 100k-deep and 50 MB
records, a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fake_run import make_run
from openai_standin import StandIn

from cpqs_bench import cli, io, provenance
from cpqs_bench.config import ConfigError, experiment_dir, load_config, validate_against_pool
from cpqs_bench.data.pool import DataError, read_pool
from cpqs_bench.judge.backends import JudgeError, make_judge
from cpqs_bench.judge.cache import JudgeCache
from cpqs_bench.judge.config import JudgeConfig
from cpqs_bench.score import ScoreContractError, score_pool
from cpqs_bench.selectors.base import Needs, ScoreRow


# ============================================================================ 2. plugin output contract
class _Plugin:
    name = "plugin"
    needs = Needs.NOTHING

    def rows(self, examples):
        return [ScoreRow(ex.id, float(i), i) for i, ex in enumerate(examples)]


class GenSel(_Plugin):
    def score(self, examples, ctx):
        return (r for r in self.rows(examples))  # a generator: must be materialised, not consumed twice


class NumpySel(_Plugin):
    def score(self, examples, ctx):
        return [ScoreRow(r.id, np.float32(r.score + 0.5), np.int64(r.n_tokens)) for r in self.rows(examples)]


class NaNSel(_Plugin):
    def score(self, examples, ctx):
        rows = self.rows(examples)
        rows[1] = ScoreRow(rows[1].id, np.float32("nan"), 1)
        return rows


class ExcludedNaNSel(_Plugin):
    def score(self, examples, ctx):
        rows = self.rows(examples)
        rows[1] = ScoreRow(rows[1].id, math.nan, 1, exclude="no_score")
        return rows


class StrSel(_Plugin):
    def score(self, examples, ctx):
        rows = self.rows(examples)
        rows[2] = ScoreRow(rows[2].id, "high", 2)
        return rows


class InfSel(_Plugin):
    def score(self, examples, ctx):
        return [ScoreRow(r.id, math.inf, 0) for r in self.rows(examples)]


class ShadowSel(_Plugin):
    def score(self, examples, ctx):
        rows = self.rows(examples)
        rows[0] = ScoreRow(rows[0].id, 1.0, 0, extra={"id": "someone-else", "score": 99})
        return rows


class RaiseSel(_Plugin):
    def score(self, examples, ctx):
        raise ZeroDivisionError("division by zero\nsecond line of a long traceback-ish message")


class NoneSel(_Plugin):
    def score(self, examples, ctx):
        return None


class ShortSel(_Plugin):
    def score(self, examples, ctx):
        return self.rows(examples)[:-1]


class BigSel(_Plugin):
    def score(self, examples, ctx):
        return [ScoreRow(r.id, r.score, r.n_tokens, extra={"blob": "x" * 20_000}) for r in self.rows(examples)]


PLUGINS = {
    n: f"test_reliability:{c}"
    for n, c in {
        "gen": "GenSel",
        "numpy": "NumpySel",
        "nan": "NaNSel",
        "nan_excluded": "ExcludedNaNSel",
        "string": "StrSel",
        "inf": "InfSel",
        "shadow": "ShadowSel",
        "raises": "RaiseSel",
        "none": "NoneSel",
        "short": "ShortSel",
        "big": "BigSel",
    }.items()
}


def _pool(root: Path, n: int = 6) -> Path:
    path = root / "pool.jsonl"
    rows = [{"instruction": f"Task {i}", "input": "", "output": f"Answer number {i}."} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _preset(root: Path, **extra) -> Path:
    import yaml

    doc = {"experiment": {"name": "rel", "output_dir": str(root / "runs")}, "selectors": {"plugins": PLUGINS}}
    for dotted, value in extra.items():
        node = doc
        *head, last = dotted.split("__")
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value
    path = root / "preset.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _score(root: Path, selector: str) -> tuple[dict, list[dict]]:
    cfg = load_config(_preset(root))
    out = root / f"{selector}.jsonl"
    summary = score_pool(cfg, read_pool(str(_pool(root))).examples, out, selector=selector)
    return summary, [json.loads(line) for line in out.read_text().splitlines()]


def test_generator_output_is_materialised_not_lost(tmp_path):
    summary, rows = _score(tmp_path, "gen")
    assert summary["n"] == 6 and len(rows) == 6
    assert [r["score"] for r in rows] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_numpy_scalars_are_written_as_numbers(tmp_path):
    _, rows = _score(tmp_path, "numpy")
    assert all(type(r["score"]) is float and type(r["n_tokens"]) is int for r in rows)
    assert rows[1]["score"] == 1.5


def test_excluded_row_may_have_no_score(tmp_path):
    _, rows = _score(tmp_path, "nan_excluded")
    assert rows[1]["score"] is None and rows[1]["exclude"] == "no_score"


@pytest.mark.parametrize(
    "selector, needle",
    [
        ("nan", "row 1 (example"),
        ("string", "row 2 (example"),
        ("inf", "row 0 (example"),
        ("shadow", "extra may not set ['id', 'score']"),
        ("raises", "ZeroDivisionError: division by zero"),
        ("none", "returned NoneType"),
        ("short", "first missing: row 5"),
    ],
)
def test_broken_plugin_output_is_refused_with_one_line(tmp_path, selector, needle):
    cfg = load_config(_preset(tmp_path))
    with pytest.raises(ScoreContractError) as err:
        score_pool(cfg, read_pool(str(_pool(tmp_path))).examples, tmp_path / "s.jsonl", selector=selector)
    msg = str(err.value)
    assert needle in msg and f"selector {selector!r}" in msg and "\n" not in msg
    assert not (tmp_path / "s.jsonl").exists()  # nothing written for select to trip over


@pytest.mark.parametrize("selector", ["string", "shadow", "raises", "nan"])
def test_broken_plugin_exits_nonzero_at_the_cli(tmp_path, capsys, selector):
    rc = cli.main(
        [
            "score",
            selector,
            "--config",
            str(_preset(tmp_path)),
            "--data",
            str(_pool(tmp_path)),
            "--out",
            str(tmp_path / "s.jsonl"),
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if not line.endswith("rejected 0")]  # pool line
    assert rc == 1 and len(err) == 1 and f"selector {selector!r}" in err[0] and "Traceback" not in err[0]


# ============================================================================ 3. network calls bounded
@contextlib.contextmanager
def _silent_server():
    """Accepts connections (the kernel's backlog) and never reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    from huggingface_hub import constants as hf_constants

    monkeypatch.setenv("HF_TOKEN", "hf_RELIABILITYcanary0123456789abcdef")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_constants, "AGENT_HARNESSES_PATH", str(tmp_path / "hf_home" / "agents.json"))


def test_push_to_a_hub_that_never_answers_fails_within_its_timeout(tmp_path, hub_env, capsys):
    run = make_run(tmp_path, arms=("random",), seeds=(0,))
    with _silent_server() as endpoint:
        t0 = time.monotonic()
        rc = cli.main(
            [
                "publish",
                "--run",
                str(run),
                "--push",
                "--namespace",
                "cpqs-test",
                "--endpoint",
                endpoint,
                "publish.timeout_s=0.5",
                "publish.max_retries=1",
            ]
        )
        elapsed = time.monotonic() - t0
    err = capsys.readouterr().err
    # bound: 2 attempts x 0.5 s timeout + one backoff of ~1 s, plus building the folders
    assert rc == 1 and elapsed < 15, (rc, elapsed)
    assert "create_repo cpqs-test/" in err and "Timeout" in err and "already live: none" in err


def test_publish_state_records_each_repo_and_a_rerun_resumes(tmp_path, hub_env, monkeypatch):
    from hub_standin import HubStandIn
    from huggingface_hub import constants as hf_constants

    from cpqs_bench.publish import hub as H
    from cpqs_bench.publish.config import PublishConfig
    from cpqs_bench.publish.run import publish_run

    run = make_run(tmp_path, arms=("random",), seeds=(0,))
    cfg = PublishConfig(hub_namespace="cpqs-test", timeout_s=10)
    with HubStandIn(expected_token=os.environ["HF_TOKEN"]) as hub:
        monkeypatch.setattr(hf_constants, "ENDPOINT", hub.endpoint)
        real_push = H._push_repo

        def flaky(api, repo_id, *args, **kw):
            if repo_id.endswith("-results"):
                raise H.PublishError(f"commit to {repo_id} failed after 1 attempt(s): simulated")
            return real_push(api, repo_id, *args, **kw)

        monkeypatch.setattr(H, "_push_repo", flaky)
        with pytest.raises(H.PublishError, match=r"already live: \['cpqs-test/exp-random-s0'\]"):
            publish_run(run, cfg, dry_run=False, endpoint=hub.endpoint)
        state = json.loads((run / "publish" / "state.json").read_text())
        assert list(state["repos"]) == ["cpqs-test/exp-random-s0"]
        assert state["repos"]["cpqs-test/exp-random-s0"]["commit"] == hub.repo("cpqs-test/exp-random-s0").head
        monkeypatch.setattr(H, "_push_repo", real_push)
        commits = len(hub.routes_hit("commit"))
        report = publish_run(run, cfg, dry_run=False, endpoint=hub.endpoint)
        assert {r: e["action"] for r, e in report["repos"].items()} == {
            "cpqs-test/exp-random-s0": "live",
            "cpqs-test/exp-results": "committed",
        }
        assert len(hub.routes_hit("commit")) == commits + 1
        assert set(json.loads((run / "publish" / "state.json").read_text())["repos"]) == set(report["repos"])


def test_adapter_training_record_is_read_from_training_json(tmp_path):
    from cpqs_bench.finetune.sft import TRAINING_RECORD
    from cpqs_bench.publish import hub as H

    assert H.TRAINING_RECORD == TRAINING_RECORD  # the publish layer's copy of finetune's constant
    run = make_run(tmp_path, arms=("random",), seeds=(0,))
    adapter = next((run).rglob("adapter_config.json")).parent
    record = json.loads((adapter / "manifest.json").read_text())
    (adapter / "manifest.json").rename(adapter / H.TRAINING_RECORD)
    assert H.read_training_record(adapter) == record
    names = {p.name for p in H._adapter_files(adapter)}
    assert H.TRAINING_RECORD not in names and "adapter_config.json" in names
    (adapter / H.TRAINING_RECORD).unlink()
    with pytest.raises(FileNotFoundError, match="training.json"):
        H.read_training_record(adapter)


# ============================================================================ 4. one secret scrubber
def test_echoing_judge_endpoint_shows_stars_not_the_key(tmp_path, monkeypatch, caplog):
    secret = "sk-reliability-0123456789abcdefXYZ"
    monkeypatch.setenv("MY_JUDGE_KEY", secret)
    cfg = load_config(None, ["selectors.judge.api_key_env=MY_JUDGE_KEY"])  # registers the configured key
    with StandIn(secret, lambda m: "ok", echo_auth=True, delay_s=0) as server:
        jcfg = JudgeConfig(
            backend="openai", model="m", base_url=server.base_url, api_key_env="MY_JUDGE_KEY", max_retries=0
        )
        judge = make_judge(jcfg, cache_dir=tmp_path / "cache")
        with pytest.raises(JudgeError) as err:
            judge.complete([[{"role": "user", "content": "hi"}]])
    assert "***" in str(err.value) and secret not in str(err.value)
    # the same scrubber covers the CLI's error line, log records and manifests
    assert secret not in provenance.scrub(f"boom {secret}")
    with caplog.at_level(logging.WARNING):
        logging.getLogger("cpqs_bench.test").warning("request failed with key %s", secret)
    assert secret not in caplog.text and "***" in caplog.text
    io.write_json(tmp_path / "manifest.json", {"error": f"echo {secret}", "env": cfg.selectors.judge.api_key_env})
    assert secret not in (tmp_path / "manifest.json").read_text()
    assert "MY_JUDGE_KEY" in provenance.secret_env_names()


# ============================================================================ 5. config safety
BOMB = """experiment:
  name: bomb
  description: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_alias_bomb_is_refused_fast_with_file_and_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=rf"{path}:3: YAML anchor &a is not allowed"):
        load_config(path)
    assert time.monotonic() - t0 < 1.0
    alias_only = tmp_path / "alias.yaml"
    alias_only.write_text("experiment:\n  name: x\n  description: *zzz\n")
    with pytest.raises(ConfigError, match=r"alias.yaml:3: YAML alias \*zzz"):
        load_config(alias_only)


@pytest.mark.parametrize(
    "override, key",
    [
        ("selectors.budget=-3", "selectors.budget=-3.0 must be > 0"),
        ("selectors.budget=0", "selectors.budget=0.0 must be > 0"),
        ("selectors.budget=1.5", "selectors.budget=1.5 is neither a fraction"),
        ("experiment.seeds=[]", "experiment.seeds=[] is empty"),
        ("experiment.name=../x", "experiment.name='../x' is not safe"),
        ("experiment.name=a/b", "experiment.name='a/b' is not safe"),
        ("selectors.names=[random,random]", "selectors.names"),
        ("selectors.judge.api_key_env=sk-abc", "selectors.judge.api_key_env"),
        ("data.max_record_bytes=0", "data.max_record_bytes=0 must be > 0"),
    ],
)
def test_bad_settings_are_refused_at_load_naming_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config("smoke", [override])
    assert key in str(err.value)


def test_bad_settings_are_refused_by_the_cli_before_any_stage(capsys):
    assert cli.main(["config", "--config", "smoke", "selectors.budget=1.5"]) == 1
    assert "selectors.budget=1.5" in capsys.readouterr().err


def test_budget_checked_against_the_pool_and_output_stays_in_the_output_dir(tmp_path):
    cfg = load_config("smoke", ["selectors.budget=1000", f"experiment.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"selectors.budget=1000 is larger than the pool \(8 examples\)"):
        validate_against_pool(cfg, 8)
    assert validate_against_pool(cfg, 2000) == 1000
    assert validate_against_pool(load_config("smoke", ["selectors.budget=0.25"]), 8) == 2
    assert experiment_dir(cfg) == (tmp_path / "smoke").resolve()


def test_readme_config_example_works(capsys):
    assert cli.main(["config", "--config", "smoke", "finetune.lr=1e-4"]) == 0
    assert "lr: 0.0001" in capsys.readouterr().out
    assert cli.main(["config", "show", "--config", "smoke", "finetune.lr=1e-4"]) == 0
    assert "lr: 0.0001" in capsys.readouterr().out


# ============================================================================ 7. judge answers cached one by one
def test_judge_failing_after_three_answers_keeps_those_three_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-0123456789")
    convs = [[{"role": "user", "content": f"question {i}"}] for i in range(6)]
    jcfg = JudgeConfig(
        backend="openai", model="m", base_url="", api_key_env="OPENAI_API_KEY", max_retries=0, concurrency=1
    )
    with StandIn("sk-test-key-0123456789", lambda m: "answer " + m[-1]["content"], fail_after=3, delay_s=0) as s:
        cfg = JudgeConfig(**{**jcfg.__dict__, "base_url": s.base_url})
        with pytest.raises(JudgeError, match="HTTP 400"):
            make_judge(cfg, cache_dir=tmp_path).complete(convs)
        with JudgeCache.at(tmp_path) as cache:
            assert len(cache) == 3
        s.fail_after = None  # the endpoint recovers; a rerun pays only for the three answers never received
        sent = len(s.requests)
        judge = make_judge(cfg, cache_dir=tmp_path)
        answers = judge.complete(convs)
        assert len(s.requests) - sent == 3 and judge.hits == 3
    assert answers == [f"answer question {i}" for i in range(6)]


# ============================================================================ 8. data edge cases
def _write_lines(path: Path, lines: list[str]) -> Path:
    with open(path, "w") as fh:
        for line in lines:
            fh.write(line + "\n")
    return path


def _ok(i: int) -> str:
    return json.dumps({"instruction": f"Task {i}", "input": "", "output": f"Answer {i}."})


def test_deeply_nested_row_is_quarantined_with_file_and_line(tmp_path):
    deep = '{"instruction": ' + "[" * 100_000 + "]" * 100_000 + ', "output": "x"}'
    path = _write_lines(tmp_path / "deep.jsonl", [_ok(0), deep, _ok(2)])
    pool = read_pool(str(path), max_rejected_fraction=None)
    assert len(pool.examples) == 2 and len(pool.rejected) == 1
    assert pool.rejected[0]["location"] == f"{path}:2" and pool.rejected[0]["reason"] == "too_deep"


def test_fifty_megabyte_row_is_quarantined_with_file_and_line(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w") as fh:
        fh.write(_ok(0) + "\n")
        fh.write('{"instruction": "Task 1", "input": "", "output": "')
        chunk = "word " * 200_000  # 1 MB
        for _ in range(50):
            fh.write(chunk)
        fh.write('"}\n')
        fh.write(_ok(2) + "\n")
    pool = read_pool(str(path), max_rejected_fraction=None)
    assert [ex.response for ex in pool.examples] == ["Answer 0.", "Answer 2."]
    (bad,) = pool.rejected
    assert bad["location"] == f"{path}:2" and bad["reason"] == "record_too_large"
    assert "data.max_record_bytes=1000000" in bad["detail"] and len(bad["raw"]) <= 500
    # the cap is a setting: a row of a JSON array pool is held to it too
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([json.loads(_ok(0)), {"instruction": "t", "input": "", "output": "y" * 5000}]))
    pool = read_pool(str(arr), max_rejected_fraction=None, max_record_bytes=4000)
    assert len(pool.examples) == 1 and pool.rejected[0]["location"] == f"{arr}[1]"


@pytest.mark.parametrize("spec", ["hf:../x", "hf:/tmp/data", "hf:./local", "hf:owner/../x", "hf:name-only"])
def test_hf_specs_must_be_hub_ids(spec):
    with pytest.raises(DataError, match="not a Hub dataset id"):
        read_pool(spec)


def test_max_record_bytes_is_a_data_setting():
    assert load_config(None).data.max_record_bytes == 1_000_000
    assert load_config(None, ["data.max_record_bytes=2048"]).data.max_record_bytes == 2048


# ============================================================================ 9/10. disk full
@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A 64 KiB tmpfs when this process may mount one (root in a container); else ENOSPC simulated at fsync."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, timeout=10
        ).returncode
        == 0
    )
    if not mounted:
        real_fsync = os.fsync

        def fsync(fd):
            if str(mnt) in os.readlink(f"/proc/self/fd/{fd}"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
    try:
        yield mnt
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], capture_output=True, timeout=10)


def test_disk_full_is_one_line_naming_the_path(full_disk):
    target = full_disk / "scores.jsonl"
    with pytest.raises(io.WriteError) as err:
        io.write_jsonl(target, ({"id": str(i), "blob": "x" * 1000} for i in range(200)))
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)
    msg = str(err.value)
    assert msg.startswith(f"cannot write {target}: No space left on device") and "disk is full" in msg
    assert "\n" not in msg and "[Errno" not in msg
    assert not any(full_disk.iterdir())  # the temp file is gone, the target never half-written


def test_disk_full_at_the_cli_is_one_line(tmp_path, full_disk, capsys):
    out = full_disk / "big.jsonl"
    rc = cli.main(
        ["score", "big", "--config", str(_preset(tmp_path)), "--data", str(_pool(tmp_path)), "--out", str(out)]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cpqs-bench")]
    assert rc == 1 and len(err) == 1 and f"cannot write {out}" in err[0] and "disk is full" in err[0]


def test_threads_do_not_break_the_scrubbed_log_records():
    provenance.install_log_scrubber()
    provenance.install_log_scrubber()  # idempotent: one wrapper, not a chain
    seen = []

    def work():
        seen.append(logging.getLogger("t").makeRecord("t", logging.INFO, "f", 1, "m %s", ("a",), None).getMessage())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == ["m a"] * 4
