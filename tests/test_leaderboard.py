"""Leaderboard rendering on synthetic results: coverage of arms/tasks, md ↔ JSON agreement, PNG, provenance, CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from cpqs_bench import leaderboard
from cpqs_bench.stats import ArmResult, RecipeMismatch, summarize

NOTE = "Smoke run of a 135M model on CPU — not a paper result"
TASKS = {"gsm8k": 40, "humaneval": 20}
ARMS = {"base": 0.1, "full": 0.5, "random": 0.4, "cpqs": 0.8, "my-plugin": 0.45}


def _manifest(arm: str, seed: int | None, recipe: str | None = "rec1") -> dict:
    return {
        "arm": arm,
        "seed": seed,
        "recipe_hash": None if arm == "base" else recipe,
        "commit": "c0ffee1234567890",
        "config_hash": f"cfg-{arm}",
        "data_sha256": {"pool": "ab" * 32, "gsm8k": "cd" * 32},
        "model_id": "HuggingFaceTB/SmolLM2-135M",
        "model_revision": "rev-9f8e",
        "package_versions": {
            "torch": "2.13.0",
            "transformers": "5.24.0",
            "peft": "0.21.0",
            "lm-eval": "0.4.13",
        },
        "hardware": {"device": "cpu", "threads": 1},
        "seeds": {"train": seed, "data": 7},
    }


def _results(seed: int = 0) -> list[ArmResult]:
    rng = np.random.default_rng(seed)
    out = []
    for arm, p in ARMS.items():
        for s in [None] if arm == "base" else [1, 2, 3]:
            items = {t: {f"{t}-{i}": float(rng.random() < p) for i in range(n)} for t, n in TASKS.items()}
            m = _manifest(arm, s)
            out.append(ArmResult(arm, s, m["recipe_hash"], m, items, {}))
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    results = _results()
    summary = summarize(results, n_boot=300)
    out = tmp_path_factory.mktemp("lb")
    paths = leaderboard.render(summary, results, out, "smoke", NOTE)
    return paths, summary, results


def _table(md: str, heading: str) -> list[list[str]]:
    """Rows (as cell lists) of the first table after ``## heading``."""
    section = md.split(f"## {heading}\n", 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if not line.startswith("|") and rows:
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows[1:]  # drop header


def test_files_written_atomically(rendered):
    paths, _, _ = rendered
    assert set(paths) == {"md", "json", "png"}
    assert [p.name for p in paths.values()] == ["smoke.md", "smoke.json", "smoke.png"]
    out_dir = paths["md"].parent
    assert not [p for p in out_dir.iterdir() if p.name.endswith(".tmp")]


def test_markdown_has_note_first_and_every_arm_and_task(rendered):
    paths, summary, _ = rendered
    md = paths["md"].read_text(encoding="utf-8")
    head = md.splitlines()[:4]
    assert any(NOTE in line for line in head)
    for task in TASKS:
        for ref in ("random", "full", "base"):  # one table per reference arm
            assert [r[0] for r in _table(md, f"{task} vs {ref}")] == ["base", "full", "random", "cpqs", "my-plugin"]


def _assert_p_cell(cell: str, want: float, abs: float = 0.0) -> None:
    """A p-value cell reads the JSON's value (3 digits or 2 significant), or '< 1e-10' exactly when it is below."""
    if cell.startswith("<"):
        assert cell == "< 1e-10" and want < 1e-10
    else:
        assert float(cell) == pytest.approx(want, rel=0.06, abs=abs)


def test_json_round_trips_and_matches_markdown_numbers(rendered):
    paths, summary, results = rendered
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    expected = leaderboard.build_document(summary, results, "smoke", NOTE)
    assert doc == json.loads(json.dumps(expected))
    assert doc["summary"] == summary
    md = paths["md"].read_text(encoding="utf-8")
    assert doc["stats"]["references"] == ["random", "full", "base"]
    for task in TASKS:
        for ref in ("random", "full", "base"):
            md_rows = {r[0]: r for r in _table(md, f"{task} vs {ref}")}
            for row in doc["tables"][task]:
                cells = md_rows[row["arm"]]
                std = "—" if row["std"] is None else f"{100 * row['std']:.1f}"
                assert cells[1] == f"{100 * row['mean']:.1f} ± {std}"
                assert cells[2] == str(row["n_seeds"])
                delta, p, min_p, mde = cells[3:7]
                cmp = row["vs"][ref]
                if row["arm"] == ref:
                    assert cmp is None and delta == "(reference)"
                    continue
                nums = [float(x) for x in re.findall(r"[+-]\d+\.\d", delta)]
                assert nums == pytest.approx(
                    [100 * cmp["mean_diff"], 100 * cmp["ci_low"], 100 * cmp["ci_high"]], abs=0.051
                )
                p_item, p_seed = p.split(" / ")
                _assert_p_cell(p_item, cmp["p_value"], abs=6e-4)
                _assert_p_cell(p_seed, cmp["p_value_seed"], abs=6e-4)
                min_item, min_seed = min_p.split(" / ")
                _assert_p_cell(min_item, cmp["p_min_item"])
                _assert_p_cell(min_seed, cmp["p_min_seed"])
                assert float(mde.split(" ")[0]) == pytest.approx(100 * cmp["mde"], abs=0.051)
                marker = ("▲" if cmp["direction"] == "better" else "▼") if cmp["significant"] else cmp["label"]
                assert cells[-1] == marker


def test_significance_markers_reflect_data(rendered):
    paths, _, _ = rendered
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    rows = {r["arm"]: r for r in doc["tables"]["gsm8k"]}
    # p=0.8 vs 0.4 on 40 items x 3 seeds: a clear improvement; base (0.1) clearly worse than random.
    assert rows["cpqs"]["vs"]["random"]["significant"] and rows["cpqs"]["vs"]["random"]["direction"] == "better"
    assert rows["base"]["vs"]["random"]["direction"] == "worse"
    md_rows = {r[0]: r for r in _table(paths["md"].read_text(encoding="utf-8"), "gsm8k vs random")}
    assert md_rows["cpqs"][-1] == "▲" and md_rows["base"][-1] == "▼"
    assert md_rows["random"][-1] == "reference"


def test_provenance_rows_carry_fields(rendered):
    paths, _, results = rendered
    md = paths["md"].read_text(encoding="utf-8")
    prov = _table(md, "Provenance")
    assert len(prov) == len(results)
    for cells in prov:
        text = " ".join(cells)
        for needle in (
            "c0ffee1234",
            f"cfg-{cells[0]}",
            "pool:abababab",
            "gsm8k:cdcdcdcd",
            "rev-9f8e",
            "2.13.0",
            "5.24.0",
            "0.21.0",
            "0.4.13",
            "device=cpu",
            "data=7",
        ):
            assert needle in text, (needle, cells)
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    row = next(r for r in doc["provenance"] if r["arm"] == "cpqs" and r["seed"] == 2)
    assert row["package_versions"]["lm_eval"] == "0.4.13"
    assert row["data_sha256"]["pool"] == "ab" * 32 and row["recipe_hash"] == "rec1"


def test_missing_provenance_is_marked_not_guessed(tmp_path):
    results = [
        ArmResult("random", 1, "r", {"arm": "random"}, {"t": {"0": 1.0}}, {}),
        ArmResult("cpqs", 1, "r", {"arm": "cpqs", "commit": "abc"}, {"t": {"0": 0.0}}, {}),
    ]
    paths = leaderboard.render(summarize(results, n_boot=50), results, tmp_path, "x", NOTE)
    prov = _table(paths["md"].read_text(encoding="utf-8"), "Provenance")
    assert prov[0][0] == "random" and prov[0][2] == "missing" and prov[0][-2] == "missing"
    assert prov[0][7] == "missing" and prov[0][-1] == "—"  # revision, kept / k
    assert prov[1][2] == "abc"


def test_png_is_valid_and_readable_size(rendered):
    paths, _, _ = rendered
    data = paths["png"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(paths["png"]) as im:
        im.verify()
    with Image.open(paths["png"]) as im:
        assert im.size[0] >= 800 and im.size[1] >= 500


def test_figure_caption_says_what_error_bars_are(rendered):
    paths, _, _ = rendered
    md = paths["md"].read_text(encoding="utf-8")
    assert "hierarchical paired bootstrap CI" in md and "(smoke.png)" in md and "Forest plot" in md


def test_render_rejects_bad_names_and_empty_note(tmp_path, rendered):
    _, summary, results = rendered
    with pytest.raises(ValueError, match="plain file stem"):
        leaderboard.render(summary, results, tmp_path, "../escape", NOTE)
    with pytest.raises(ValueError, match="title_note"):
        leaderboard.render(summary, results, tmp_path, "ok", "  ")


def _write_eval(d, result: ArmResult):
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps(result.manifest))
    (d / "metrics.json").write_text(json.dumps({t: float(np.mean(list(v.values()))) for t, v in result.items.items()}))
    (d / "items.jsonl").write_text(
        "".join(
            json.dumps({"task": t, "doc_id": k, "correct": s}) + "\n"
            for t, docs in result.items.items()
            for k, s in docs.items()
        )
    )
    (d / "DONE").write_text("x\n")


def test_interrupted_eval_dir_without_done_is_not_a_result(tmp_path):
    run = tmp_path / "run"
    results = _results(seed=1)
    for r in results:
        _write_eval(run / f"{r.arm}-{r.seed}" / "eval", r)
    (run / f"{results[0].arm}-{results[0].seed}" / "eval" / "DONE").unlink()
    found = leaderboard.find_eval_dirs(run)
    assert len(found) == len(results) - 1


def test_main_discovers_eval_dirs_in_run_dir(tmp_path):
    run = tmp_path / "run"
    for r in _results(seed=1):
        _write_eval(run / f"{r.arm}-{r.seed}" / "eval", r)
    (run / "cpqs-1" / "train").mkdir()
    (run / "cpqs-1" / "train" / "manifest.json").write_text("{}")  # not an eval dir: must be ignored
    paths = leaderboard.main(run, tmp_path / "out", "cli", NOTE, stats=leaderboard.StatsOptions(n_boot=100))
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert doc["arms"] == ["base", "full", "random", "cpqs", "my-plugin"]
    assert len(doc["provenance"]) == 13  # base + 4 arms × 3 seeds
    # one eval dir given directly works too, and a default note is factual
    single = leaderboard.main(
        [run / "random-1" / "eval"], tmp_path / "out1", "one", stats=leaderboard.StatsOptions(n_boot=50)
    )
    text = single["md"].read_text(encoding="utf-8")
    assert "HuggingFaceTB/SmolLM2-135M" in text.splitlines()[2]


def test_main_propagates_recipe_mismatch_and_missing_inputs(tmp_path):
    run = tmp_path / "run"
    a, b = _results()[1], _results()[3]  # full seed 1, random seed 1
    b = ArmResult(b.arm, b.seed, "other", {**b.manifest, "recipe_hash": "other"}, b.items, b.metrics)
    _write_eval(run / "a", a)
    _write_eval(run / "b", b)
    with pytest.raises(RecipeMismatch, match="other"):
        leaderboard.main(run, tmp_path / "out", "bad", NOTE, stats=leaderboard.StatsOptions(n_boot=10))
    assert not (tmp_path / "out").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no evaluation directory"):
        leaderboard.main(empty, tmp_path / "o", "x", NOTE)


def test_provenance_accepts_rundir_manifest_layout(tmp_path):
    """Manifests written through cpqs_bench.rundir carry ``git`` and ``packages`` instead of commit/package_versions."""
    m = {
        "arm": "random",
        "git": {"sha": "1234567890abcdef", "dirty": True},
        "packages": {"torch": "2.13.0", "lm_eval": "0.4.13", "trl": None},
    }
    row = leaderboard.provenance_row(ArmResult("random", 1, "r", m, {}, {}))
    assert row["commit"] == "1234567890abcdef+dirty"
    assert row["package_versions"] == {
        "torch": "2.13.0",
        "transformers": "missing",
        "peft": "missing",
        "lm_eval": "0.4.13",
    }
    results = [ArmResult("random", 1, "r", m, {"t": {"0": 1.0}}, {})]
    paths = leaderboard.render(summarize(results, n_boot=20), results, tmp_path, "g", NOTE)
    assert _table(paths["md"].read_text(encoding="utf-8"), "Provenance")[0][2] == "1234567890+dirty"


def test_cli_verb_writes_files_and_reports_recipe_mismatch_cleanly(tmp_path, capsys):
    from cpqs_bench import cli

    run = tmp_path / "run"
    for r in _results(seed=2)[:5]:  # base, full x2, random x2
        _write_eval(run / f"{r.arm}-{r.seed}", r)
    rc = cli.main(
        [
            "leaderboard",
            str(run),
            "--experiment",
            "v",
            "--out-dir",
            str(tmp_path / "o"),
            "--note",
            NOTE,
            "--references",
            "random",
            "--n-boot",
            "50",
        ]
    )
    assert rc == 0
    doc = json.loads((tmp_path / "o" / "v.json").read_text(encoding="utf-8"))
    assert doc["stats"]["references"] == ["random", "base"] and doc["stats"]["n_boot"] == 50
    assert "Δ vs full" not in (tmp_path / "o" / "v.md").read_text(encoding="utf-8")
    bad = _results()[3]
    _write_eval(
        run / "odd", ArmResult("ifd", 1, "zzz", {**bad.manifest, "arm": "ifd", "recipe_hash": "zzz"}, bad.items, {})
    )
    rc = cli.main(["leaderboard", str(run), "--experiment", "v2", "--out-dir", str(tmp_path / "o")])
    assert rc == 1 and "zzz" in capsys.readouterr().err


# ------------------------------------------------------------------ issue 14: seeds, power, proxies, layout, arms


def _harness_manifest(arm: str, seed: int | None, kept: int | None = None) -> dict:
    """The layout cpqs_bench.evaluate.harness writes: model {spec, revision}, tasks {...}; arm_info from the lead."""
    m = {
        "arm": arm,
        "seed": seed,
        "recipe_hash": None if arm == "base" else "rec",
        "model": {"spec": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "12fd25f7", "device": "cpu"},
        "inputs": {"model_revision": "12fd25f7"},
        "tasks": {
            "gsm8k_nll": {"metric": "nll", "higher_is_better": False, "proxy": True},
            "gsm8k": {"metric": "exact_match", "higher_is_better": True},
        },
    }
    if arm not in ("base", "full"):
        m["arm_info"] = {"kept": kept if kept is not None else 10, "budget_k": 10, "total": 100, "selector": arm}
    return m


def _synthetic(seeds, effect_per_seed: dict, n: int = 60, kept: dict | None = None) -> list[ArmResult]:
    """gsm8k (0/1) and gsm8k_nll (continuous) per arm × seed; cpqs's gain in seed s is effect_per_seed[s]."""
    rng = np.random.default_rng(11)
    base_p = rng.uniform(0.2, 0.6, size=n)
    base_nll = rng.uniform(1.0, 2.0, size=n)
    out = []
    for arm in ("base", "full", "random", "cpqs"):
        for s in [None] if arm == "base" else seeds:
            gain = effect_per_seed[s] if arm == "cpqs" else 0.0
            draws = np.random.default_rng([s or 0, len(arm)])
            items = {
                "gsm8k": {str(i): float(draws.random() < min(1.0, max(0.0, base_p[i] + gain))) for i in range(n)},
                "gsm8k_nll": {str(i): float(base_nll[i] - gain + draws.normal(0, 0.01)) for i in range(n)},
            }
            m = _harness_manifest(arm, s, (kept or {}).get(arm))
            out.append(ArmResult(arm, s, m["recipe_hash"], m, items, {}))
    return out


def test_seeds_that_disagree_show_no_verdict_on_the_page(tmp_path):
    results = _synthetic((1, 2, 3), {1: 0.6, 2: 0.6, 3: -0.6})
    paths = leaderboard.render(summarize(results, n_boot=1000), results, tmp_path, "dis", NOTE)
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    row = next(r for r in doc["tables"]["gsm8k_nll"] if r["arm"] == "cpqs")
    cmp = row["vs"]["random"]
    assert cmp["significant"] is False and cmp["verdict"] is None
    assert "▲" not in row["marker"].split(";")[0] and "▼" not in row["marker"].split(";")[0]
    assert not cmp["seed_agrees"]


def test_agreeing_seeds_give_a_verdict_and_proxies_are_labelled(tmp_path):
    results = _synthetic((1, 2, 3), {1: 0.3, 2: 0.35, 3: 0.4})
    paths = leaderboard.render(summarize(results, n_boot=1000), results, tmp_path, "agree", NOTE)
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    row = next(r for r in doc["tables"]["gsm8k_nll"] if r["arm"] == "cpqs")
    assert row["vs"]["random"]["mean_diff"] < 0 and "random: ▲" in row["marker"]  # lower NLL is better
    md = paths["md"].read_text(encoding="utf-8")
    assert "### math / gsm8k_nll" in md and "lower is better, proxy" in md
    mdes = [r["vs"]["random"]["mde"] for r in doc["tables"]["gsm8k"] if r["arm"] != "random"]
    assert "- gsm8k: n = 60 items; " in md
    assert f"the smallest difference it would detect with 80% power is {100 * min(mdes):.1f}–" in md
    assert "conditional on the evaluation items and the drawn fine-tuning seeds" in md
    assert doc["task_facts"]["gsm8k_nll"]["unit"] == "raw" and doc["task_facts"]["gsm8k"]["unit"] == "pct"


def test_two_seeds_say_seed_variation_not_estimable(tmp_path):
    results = _synthetic((1, 2), {1: 0.4, 2: 0.4})
    paths = leaderboard.render(summarize(results, n_boot=300), results, tmp_path, "two", NOTE)
    md = paths["md"].read_text(encoding="utf-8")
    rows = {r[0]: r for r in _table(md, "gsm8k_nll vs random")}
    assert "seed variation not estimable" in rows["cpqs"][-1]
    assert "▲" not in rows["cpqs"][-1] and "▼" not in rows["cpqs"][-1]


def test_underpowered_cell_says_cannot_reach_alpha_never_ns(tmp_path):
    results = _synthetic((1, 2, 3), {1: 0.9, 2: 0.9, 3: 0.9}, n=4)
    paths = leaderboard.render(summarize(results, n_boot=200), results, tmp_path, "tiny", NOTE)
    rows = {r[0]: r for r in _table(paths["md"].read_text(encoding="utf-8"), "gsm8k vs random")}
    assert "cannot reach α (n = " in rows["cpqs"][-1]
    assert "n.s." not in rows["cpqs"][-1]


def test_domain_tables_budget_kept_revision_and_items(tmp_path):
    results = _synthetic((1, 2, 3), {1: 0.1, 2: 0.1, 3: 0.1}, kept={"cpqs": 7})
    summary = summarize(results, n_boot=200)
    paths = leaderboard.render(summary, results, tmp_path, "dom", NOTE)
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    md = paths["md"].read_text(encoding="utf-8")
    assert doc["domains"] == {"math": ["gsm8k", "gsm8k_nll"]}
    dom = {r[0]: r for r in _table(md, "Arms")}
    assert dom["cpqs"][1:4] == ["cpqs", "0.1 (k = 10)", "7 ⚠ < k"] and dom["random"][3] == "10"
    assert dom["full"][1:4] == ["—", "—", "—"]
    assert "fewer examples than the budget" in md and doc["arm_info"]["cpqs"]["short"] is True
    prov = next(p for p in doc["provenance"] if p["arm"] == "cpqs")
    assert prov["model_revision"] == "12fd25f7" and prov["model_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # the JSON twin re-tests any row: its per-item scores reproduce the published Δ
    items = doc["items"]["gsm8k"]
    d = np.array(
        [[items["cpqs"][s][k] - items["random"][s][k] for k in sorted(items["cpqs"][s])] for s in ("1", "2", "3")]
    )
    row = next(r for r in doc["tables"]["gsm8k"] if r["arm"] == "cpqs")
    assert row["vs"]["random"]["mean_diff"] == pytest.approx(d.mean())
    assert set(items["base"]) == {"null"}


def test_proxy_cells_show_four_decimals_and_tiny_p_values_are_floored():
    """Three decimals printed '± 0.000' for NLL-per-byte proxies whose arms differ in the fourth decimal."""
    from cpqs_bench.leaderboard import fmt_delta, fmt_p, fmt_value

    assert fmt_value(0.00042, "raw") == "0.0004" and fmt_delta(-0.00042, "raw") == "-0.0004"
    assert fmt_value(0.5, "pct") == "50.0" and fmt_delta(0.012, "pct") == "+1.2"
    assert fmt_p(1.6e-58) == "< 1e-10" and fmt_p(2.9e-9) == "2.9e-09" and fmt_p(0.25) == "0.250"
    assert fmt_p(None) == "—"


def test_the_figure_draws_one_planted_defect_row_per_selector():
    """The glance figure's validity panel holds each selector's overall paired AUC, not its 8 per-kind rows."""
    rows = [
        {"selector": sel, "kind": kind, "paired_auc": auc, "paired_ci": [0.1, 0.9], "n": 14 if kind == "overall" else 2}
        for sel in ("random", "cpqs")
        for kind, auc in (("truncated", 1.0), ("padded", 0.0), ("overall", 0.5))
    ]
    rows.append({"selector": "ifd", "kind": "overall", "paired_auc": None, "n": 14})  # no AUC: not drawn
    doc = {"validity": {"tracks": {"planted": {"rows": rows}}}}
    got = leaderboard.figure_validity_rows(doc)
    assert [(r["selector"], r["kind"]) for r in got] == [("random", "overall"), ("cpqs", "overall")]
    assert leaderboard.figure_validity_rows({}) == []
