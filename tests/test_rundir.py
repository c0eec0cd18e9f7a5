import os

import pytest

from cpqs_bench import io, rundir


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "a.json"
    io.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_open(target) as fh:
            fh.write('{"v": 2')
            raise RuntimeError("crash mid-write")
    assert io.read_json(target) == {"v": 1}
    assert os.listdir(tmp_path) == ["a.json"]  # no temp file left behind


def test_stage_hash_done_and_manifest(tmp_path):
    s = rundir.stage(tmp_path, "exp", "score", {"selector": "ifd", "data": "abc"})
    same = rundir.stage(tmp_path, "exp", "score", {"data": "abc", "selector": "ifd"})
    other = rundir.stage(tmp_path, "exp", "score", {"selector": "ifd", "data": "abd"})
    assert s.path == same.path != other.path
    assert not s.done
    s.begin()
    assert not s.done and (s.path / "inputs.json").exists()
    manifest = s.finish(seeds=[0])
    assert s.done and manifest["input_hash"] == s.input_hash and manifest["seeds"] == [0]
    assert {"git", "packages", "hardware"} <= set(manifest)
    assert s.manifest()["stage"] == "score"


def test_stable_hash_ignores_key_order():
    assert io.stable_hash({"a": 1, "b": [1, 2]}) == io.stable_hash({"b": [1, 2], "a": 1})
    assert io.stable_hash({"a": 1}) != io.stable_hash({"a": 2})
