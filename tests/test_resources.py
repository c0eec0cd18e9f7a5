"""``--config`` resolution (cpqs_bench/resources.py): a preset name, any YAML file, and the pre-move
``configs/<name>.yaml`` spelling, which means the packaged preset and says so on stderr once."""

from __future__ import annotations

import pytest

from cpqs_bench import resources
from cpqs_bench.config import ConfigError, load_config


def test_packaged_folders_hold_the_presets_and_tasks():
    assert resources.CONFIGS_DIR == resources.PACKAGE_DIR / "configs"
    assert "smoke" in resources.preset_names()
    assert sorted(resources.TASKS_DIR.glob("cpqs_*.yaml")), resources.TASKS_DIR


def test_a_preset_name_is_the_packaged_file():
    assert resources.config_path("smoke") == resources.CONFIGS_DIR / "smoke.yaml"


def test_an_existing_file_wins_over_the_packaged_preset(tmp_path, monkeypatch):
    # a real configs/smoke.yaml in the cwd (a user's own copy) is read as given, with no note
    (tmp_path / "configs").mkdir()
    mine = tmp_path / "configs" / "smoke.yaml"
    mine.write_text("experiment:\n  name: mine\n")
    monkeypatch.chdir(tmp_path)
    assert resources.config_path("configs/smoke.yaml").resolve() == mine.resolve()
    assert load_config("configs/smoke.yaml").experiment.name == "mine"


def test_the_old_relative_path_means_the_packaged_preset_and_says_so_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    monkeypatch.setattr(resources, "_noted", set())
    assert resources.config_path("configs/smoke.yaml") == resources.CONFIGS_DIR / "smoke.yaml"
    err = capsys.readouterr().err
    assert "configs/smoke.yaml is not here" in err and "--config smoke" in err
    assert load_config("configs/smoke.yaml") == load_config("smoke")
    assert capsys.readouterr().err == ""  # once per path and process


@pytest.mark.parametrize(
    "value, message",
    [
        ("configs/nope.yaml", "config file not found"),  # old form, but no such preset
        ("elsewhere/smoke.yaml", "config file not found"),  # only configs/<name>.yaml is the old form
        ("/configs/smoke.yaml", "config file not found"),  # absolute: taken as given
        ("smok", "Did you mean 'smoke'?"),
    ],
)
def test_a_missing_config_is_a_clear_error(tmp_path, monkeypatch, value, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        resources.config_path(value)


def test_a_directory_is_not_a_config_but_a_bare_name_stays_a_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "smoke").mkdir(parents=True)
    (tmp_path / "smoke").mkdir()
    with pytest.raises(ConfigError, match="not a file"):
        resources.config_path("runs/smoke")
    assert resources.config_path("smoke") == resources.CONFIGS_DIR / "smoke.yaml"


def test_tasks_dir_is_packaged_unless_overridden(tmp_path, monkeypatch):
    from cpqs_bench.evaluate.harness import TASKS_DIR_ENV, EvaluationError, tasks_dir

    monkeypatch.delenv(TASKS_DIR_ENV, raising=False)
    assert tasks_dir() == resources.TASKS_DIR
    (tmp_path / "t.yaml").write_text("task: t\n")
    monkeypatch.setenv(TASKS_DIR_ENV, str(tmp_path))
    assert tasks_dir() == tmp_path
    monkeypatch.setenv(TASKS_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(EvaluationError, match=TASKS_DIR_ENV):
        tasks_dir()
