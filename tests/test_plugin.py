"""The example plugin package is discovered through its entry point, passes the contract kit and runs in compare.

No pip, no network, venv untouched: the test writes a ``.dist-info`` (METADATA + entry_points.txt generated from the
plugin's own pyproject.toml) into a temp dir and puts it and the plugin source on ``sys.path`` — exactly what an
editable install provides to ``importlib.metadata``. CI additionally runs
``.venv/bin/pip install --no-deps -e examples/plugin_selector`` (the Makefile's install target).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import tomllib
import torch

from cpqs_bench.selectors import registry

torch.set_num_threads(1)

PLUGIN = Path(__file__).resolve().parent.parent / "examples" / "plugin_selector"


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    meta = tomllib.loads((PLUGIN / "pyproject.toml").read_text())
    project = meta["project"]
    eps = project["entry-points"][registry.ENTRY_POINT_GROUP]
    dist = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = [f"[{registry.ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in eps.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(PLUGIN))
    yield eps
    for mod in [m for m in sys.modules if m.startswith("cpqs_vocab_diversity")]:
        monkeypatch.delitem(sys.modules, mod)


def test_entry_point_discovered(installed_plugin):
    assert installed_plugin == {"vocab_diversity": "cpqs_vocab_diversity.selector:VocabDiversitySelector"}
    assert registry.available()["vocab_diversity"] == installed_plugin["vocab_diversity"]
    sel = registry.get("vocab_diversity")
    assert sel.name == "vocab_diversity"
    with pytest.raises(registry.UnknownSelector, match="vocab_diversity"):
        registry.get("vocab_diversty")  # did-you-mean includes the plugin


def test_plugin_passes_contract(installed_plugin):
    from cpqs_bench.testing import check_selector

    report = check_selector("vocab_diversity")
    by_id = {r.id: r for r in report.rows}
    assert all(0.0 < r.score <= 1.0 for r in report.rows if r.exclude is None)
    assert by_id["dup_a"].score == by_id["dup_b"].score


def test_mattr_by_hand(installed_plugin):
    from cpqs_vocab_diversity.selector import mattr

    assert mattr([1, 2, 3, 4]) == 1.0
    assert mattr([7, 7, 7, 7]) == 0.25
    # windows of 2 over [1,1,2,2]: {1,1}=1/2, {1,2}=2/2, {2,2}=1/2 -> mean 2/3
    assert mattr([1, 1, 2, 2], window=2) == pytest.approx(2 / 3)


def test_plugin_runs_through_compare(installed_plugin, tmp_path):
    from cpqs_bench import compare
    from cpqs_bench.testing import contract_config, tiny_loader

    pool = tmp_path / "pool.jsonl"
    rows = [
        {"instruction": f"Question {i}?", "output": ("word " * (i + 1)) + " ".join(map(str, range(i)))}
        for i in range(8)
    ]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from cpqs_bench.data.pool import read_pool

    cfg = contract_config()
    result = compare.compare_selectors(
        cfg,
        ["vocab_diversity", "longest"],
        tmp_path / "out",
        pool=compare.tiered_pool(cfg.data, examples=read_pool(str(pool)).examples),
        settings=compare.CompareSettings(budget=3),
        loader=tiny_loader(),
    )
    assert result["selectors"]["vocab_diversity"]["eligible"] == 8
    assert (tmp_path / "out" / "scores" / "vocab_diversity.jsonl").exists()
    assert (tmp_path / "out" / "report.md").read_text().count("vocab_diversity") >= 2
