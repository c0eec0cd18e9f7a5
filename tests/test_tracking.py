"""W&B tracking: disabled by default, offline without a key, and never able to fail the pipeline."""

from __future__ import annotations

import logging
import sys

import pytest

from cpqs_bench.publish.tracking import Tracker, resolve_mode

CANARY = "wandb-canary-key-0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def hermetic_wandb(monkeypatch, tmp_path):
    """Keep wandb's own config/cache/data dirs inside tmp_path and make sure no key leaks in from the host."""
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / var.lower()))
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


def _files(root):
    return [p for p in root.rglob("*") if p.is_file()]


def test_disabled_does_nothing_and_never_imports_wandb(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` would now raise ImportError
    with Tracker("exp1", "score", dir=tmp_path / "runs") as t:
        t.log_config({"a": 1})
        t.log_metrics({"loss": 1.0})
        t.log_table("tbl", ["a"], [[1]])
        t.log_histogram("h", [1.0, 2.0])
    assert t.mode == "disabled" and t.errors == [] and t.run is None
    assert not (tmp_path / "runs").exists()


def test_mode_resolution(monkeypatch):
    assert resolve_mode(False) == "disabled"
    assert resolve_mode(True) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", CANARY)
    assert resolve_mode(True) == "online"
    assert resolve_mode(True, "offline") == "offline"
    with pytest.raises(ValueError):
        resolve_mode(True, "dryrun")  # type: ignore[arg-type]


def test_offline_run_is_written_under_dir(tmp_path):
    with Tracker("exp1", "select", enabled=True, dir=tmp_path, config={"budget": 100}) as t:
        assert t.mode == "offline" and t.active
        t.log_config({"selector": "cpqs"})
        t.log_metrics({"kept": 100.0})
        t.log_table("selected", ["id", "score"], [["a", 0.9], ["b", 0.8]])
        t.log_histogram("scores", [0.1, 0.5, 0.9])
        assert t.run.group == "exp1" and t.run.job_type == "select"
    assert t.errors == []
    run_dir = t.run_dir
    assert run_dir is not None and run_dir.parent == tmp_path / "wandb" and run_dir.name.startswith("offline-run-")
    assert list(run_dir.glob("*.wandb")), "offline run log missing"
    assert list(run_dir.rglob("*.table.json")), "table was not written"
    assert not t.active


def test_forced_init_failure_is_recorded_not_raised(tmp_path, monkeypatch, caplog):
    import wandb

    monkeypatch.setenv("WANDB_API_KEY", CANARY)

    def broken_init(*args, **kwargs):
        raise RuntimeError(f"could not reach server with key {CANARY}")

    monkeypatch.setattr(wandb, "init", broken_init)
    with caplog.at_level(logging.WARNING, logger="cpqs_bench.publish.tracking"):
        with Tracker("exp1", "train", enabled=True, dir=tmp_path) as t:
            t.log_metrics({"loss": 1.0})  # no-op after the failure, and no second warning
            t.log_table("x", ["a"], [[1]])
    assert len(t.errors) == 1 and "init failed" in t.errors[0] and "RuntimeError" in t.errors[0]
    assert CANARY not in t.errors[0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and CANARY not in warnings[0].getMessage()


def test_wandb_not_importable_is_recorded_not_raised(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with Tracker("exp1", "eval", enabled=True, dir=tmp_path) as t:
        t.log_metrics({"acc": 0.5})
    assert len(t.errors) == 1 and "ModuleNotFoundError" in t.errors[0]


def test_logging_failure_mid_run_is_recorded_and_run_closed(tmp_path, monkeypatch):
    with Tracker("exp1", "eval", enabled=True, dir=tmp_path) as t:

        def broken_log(*a, **k):
            raise OSError("disk full")

        monkeypatch.setattr(t.run, "log", broken_log)
        t.log_metrics({"acc": 0.5})
        t.log_histogram("h", [1.0])
        assert not t.active
    assert len(t.errors) == 1 and "log_metrics failed" in t.errors[0] and "disk full" in t.errors[0]


def test_stage_exception_propagates(tmp_path):
    with pytest.raises(KeyError):
        with Tracker("exp1", "eval", enabled=True, dir=tmp_path) as t:
            raise KeyError("stage bug")
    assert t.errors == [] and not t.active


def test_api_key_never_written_in_offline_run(tmp_path, monkeypatch):
    # With a key in the environment wandb would go online; force offline explicitly so the test stays local.
    monkeypatch.setenv("WANDB_API_KEY", CANARY)
    with Tracker("exp1", "score", enabled=True, mode="offline", dir=tmp_path, config={"k": "v"}) as t:
        t.log_metrics({"x": 1.0})
        t.log_table("t", ["a"], [[1]])
    assert t.mode == "offline" and t.errors == []
    files = _files(tmp_path / "wandb")
    assert files
    assert [p for p in files if CANARY.encode() in p.read_bytes()] == []
