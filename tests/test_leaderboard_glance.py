"""Issue 30: leaderboards at a glance. Direction and unit from the task YAML, the forest plot's marks equal the JSON,
an all-equal metric is listed not drawn, the summary sentence says exactly the verdicts, --from-json re-renders the
same board, and the contamination / validity / compute blocks reach every output."""

from __future__ import annotations

import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from cpqs_bench import leaderboard
from cpqs_bench.leaderboard_page import read_page_data, write_pages
from cpqs_bench.stats import better_or_worse, metric_facts

NOTE = "Synthetic board for the at-a-glance tests: not a result."
ARMS = ("base", "random", "cpqs", "longest", "ifd")
SEEDS = (1, 2, 3)
N = 40

YAMLS = {
    # direction and unit come from here; the manifests below say nothing about them
    "toy_acc": "metric_list:\n  - metric: exact_match\n    higher_is_better: true\nmetadata:\n  domain: math\n",
    "toy_nll": "metric_list:\n  - metric: nll_per_byte\n    higher_is_better: false\n"
    "metadata:\n  domain: math\n  proxy: true\n",
    "toy_code": "metric_list:\n  - metric: pass@1\n    higher_is_better: true\nmetadata:\n  domain: code\n",
    "toy_flat": "metric_list:\n  - metric: pass@1\n    higher_is_better: true\nmetadata:\n  domain: code\n",
    # a name that "looks" lower-is-better: the YAML decides, never the suffix
    "weird_nll": "metric_list:\n  - metric: score\n    higher_is_better: true\n    unit: points\nmetadata:\n  domain: math\n",
}

CONTAMINATION = {
    "n": 13,
    "tasks": {
        "toy_acc": {
            "items": 40,
            "undetectable": 2,
            "pool": {"overlapping_items": 3, "fraction": 0.075, "overlapping_examples": 5},
            "arms": {
                "random": {"overlapping_items": 1.0, "fraction": 0.025, "per_seed": {"1": 1, "2": 1, "3": 1}},
                "cpqs": {"overlapping_items": 2.0, "fraction": 0.05, "per_seed": {"1": 2, "2": 2, "3": 2}},
            },
        }
    },
}
VALIDITY = {
    "model": "tiny/model",
    "tracks": {
        "planted": {
            "rows": [
                {
                    "selector": "cpqs",
                    "kind": "truncated",
                    "n": 50,
                    "paired_auc": 0.9,
                    "paired_ci": [0.8, 0.97],
                    "unpaired_auc": 0.85,
                    "unpaired_ci": [0.75, 0.93],
                    "excluded": 0,
                },
                {
                    "selector": "longest",
                    "kind": "padded",
                    "n": 50,
                    "paired_auc": 0.1,
                    "paired_ci": [0.04, 0.2],
                    "unpaired_auc": 0.3,
                    "unpaired_ci": [0.2, 0.41],
                    "excluded": 1,
                },
            ]
        },
        "pairs": {"rows": [{"selector": "cpqs", "subset": "all", "n": 200, "accuracy": 0.71, "ci": [0.65, 0.77]}]},
    },
    "cost": {"cpqs": {"seconds": 12.5, "tokens": 34567}},
    "predicts_outcome": [{"metric": "paired_auc", "task": "toy_nll", "spearman": 0.5, "n_selectors": 4}],
}


def _scores(arm: str, seed: int | None) -> dict[str, dict[str, float]]:
    """toy_nll: cpqs 0.3 lower (better) in every seed, longest 0.3 higher (worse), ifd and base equal to random but
    for two items ±0.1 (Δ = 0: no verdict). toy_acc: ifd differs on one item only (cannot reach α). toy_code: cpqs
    differs on two items (no verdict). toy_flat: every arm scores every item alike (no signal)."""
    rng = np.random.default_rng(5)
    nll = rng.uniform(0.5, 1.5, size=N)
    acc = (rng.random(N) < 0.5).astype(float)
    code = (rng.random(N) < 0.3).astype(float)
    noise = np.random.default_rng([seed or 0, len(arm)]).normal(0, 0.01, size=N)
    if arm == "cpqs":
        nll = nll - 0.3 + noise
        code = code.copy()
        code[:2] = 1 - code[:2]
    elif arm == "longest":
        nll = nll + 0.3 + noise
    elif arm in ("ifd", "base"):
        nll = nll.copy()
        nll[0] += 0.1
        nll[1] -= 0.1
        if arm == "ifd":
            acc = acc.copy()
            acc[0] = 1 - acc[0]
    return {
        "toy_nll": {str(i): float(v) for i, v in enumerate(nll)},
        "toy_acc": {str(i): float(v) for i, v in enumerate(acc)},
        "toy_code": {str(i): float(v) for i, v in enumerate(code)},
        "toy_flat": {str(i): 0.0 for i in range(N)},
    }


def _write_run(root: Path, compute: bool = False) -> Path:
    for arm in ARMS:
        for seed in [None] if arm == "base" else SEEDS:
            d = root / f"{arm}-{seed}"
            d.mkdir(parents=True)
            items = _scores(arm, seed)
            info = {} if arm == "base" else {"kept": 10, "budget_k": 10, "total": 100, "selector": arm}
            if compute and arm != "base":
                tokens = {"random": 2000, "cpqs": 3000, "longest": 4000, "ifd": 2500}[arm]
                info |= {
                    "n_examples": 10,
                    "trained_tokens": tokens + seed,
                    "optimizer_steps": 5,
                    "selection_flops": 0.0 if arm == "random" else 1e12 * tokens,
                    "selection_seconds": 0.0 if arm == "random" else 3.0,
                    "training_flops": 4e9 * tokens,
                    "total_flops": 4e9 * tokens + (0.0 if arm == "random" else 1e12 * tokens),
                    "target_aware": False,
                }
            manifest = {
                "arm": arm,
                "seed": seed,
                "recipe_hash": None if arm == "base" else "rec",
                "model_id": "tiny/model",
                "arm_info": info,
            }
            (d / "manifest.json").write_text(json.dumps(manifest))
            (d / "metrics.json").write_text(json.dumps({t: float(np.mean(list(v.values()))) for t, v in items.items()}))
            (d / "items.jsonl").write_text(
                "".join(
                    json.dumps({"task": t, "doc_id": k, "correct": s}) + "\n"
                    for t, docs in items.items()
                    for k, s in docs.items()
                )
            )
            (d / "DONE").write_text("x\n")
    return root


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tasks")
    for task, body in YAMLS.items():
        (d / f"{task}.yaml").write_text(f"task: {task}\n{body}")
    return d


@pytest.fixture(scope="module")
def board(tmp_path_factory, tasks_dir):
    root = tmp_path_factory.mktemp("glance")
    run = _write_run(root / "run")
    out = root / "boards"
    paths = leaderboard.main(
        run,
        out,
        "glance",
        NOTE,
        stats=leaderboard.StatsOptions(n_boot=400),
        task_folders=[tasks_dir],
        blocks=leaderboard.BoardBlocks(contamination=CONTAMINATION, validity=VALIDITY),
    )
    page = write_pages(paths["json"], out)
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    return paths, doc, page


class _Marks(HTMLParser):
    """Every ``svg.forest`` panel's ``g.mark`` attributes, in document order, and the ids / classes seen."""

    def __init__(self) -> None:
        super().__init__()
        self.panels: dict[str, list[dict[str, str]]] = {}
        self.task: str | None = None
        self.cells: list[tuple[str, str]] = []  # (class, text) of glance-table cells
        self._cell: str | None = None
        self._in_glance = False
        self.vpoints = 0
        self.cpoints = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class") or ""
        if tag == "svg" and "forest" in cls:
            self.task = a["data-task"]
            self.panels[self.task] = []
        elif tag == "g" and cls.startswith("mark") and self.task is not None:
            self.panels[self.task].append(a)
        elif tag == "g" and cls.startswith("vpoint"):
            self.vpoints += 1
        elif tag == "g" and cls.startswith("cpoint"):
            self.cpoints += 1
        elif tag == "table" and "glance" in cls:
            self._in_glance = True
        elif tag == "td" and self._in_glance:
            self._cell, self._text = cls, []

    def handle_endtag(self, tag):
        if tag == "svg":
            self.task = None
        elif tag == "table":
            self._in_glance = False
        elif tag == "td" and self._cell is not None:
            self.cells.append((self._cell, "".join(self._text)))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._text.append(data)


def _marks(page: Path) -> _Marks:
    p = _Marks()
    p.feed(page.read_text(encoding="utf-8"))
    return p


# ---------------------------------------------------------------------------------------------------- direction


def test_direction_and_unit_come_from_the_task_yaml_never_the_name(tasks_dir):
    facts = metric_facts(["toy_nll", "weird_nll", "toy_acc", "absent_nll"], folders=[tasks_dir])
    assert facts["toy_nll"]["higher_is_better"] is False and facts["toy_nll"]["direction_source"] == (
        "task YAML toy_nll.yaml"
    )
    assert (facts["toy_nll"]["unit"], facts["toy_nll"]["unit_label"]) == ("raw", "nats/byte")
    assert facts["weird_nll"]["higher_is_better"] is True  # "_nll" in the name decides nothing
    assert (facts["weird_nll"]["unit"], facts["weird_nll"]["unit_label"]) == ("raw", "points")
    assert (facts["toy_acc"]["unit"], facts["toy_acc"]["unit_label"]) == ("pct", "%")
    assert facts["absent_nll"]["higher_is_better"] is True and "unknown" in facts["absent_nll"]["direction_source"]
    # a manifest (the harness copies the YAML's direction into it) decides when no YAML is found
    m = {"tasks": {"absent_nll": {"metric": "nll_per_byte", "higher_is_better": False}}}
    assert metric_facts(["absent_nll"], [m], folders=[tasks_dir])["absent_nll"]["higher_is_better"] is False
    assert better_or_worse(-0.1, False) == "better" and better_or_worse(-0.1, True) == "worse"
    assert better_or_worse(0.0, True) is None and better_or_worse(None, False) is None


def test_lower_is_better_proxy_in_its_unit_with_the_better_colour_and_no_cross_metric_mean(board):
    paths, doc, page = board
    md = paths["md"].read_text(encoding="utf-8")
    assert doc["task_facts"]["toy_nll"]["unit_label"] == "nats/byte"
    cmp = doc["summary"]["per_task"]["toy_nll"]["comparisons"]["random"]["cpqs"]
    assert cmp["mean_diff"] < 0 and cmp["verdict"] == "▲" and cmp["direction"] == "better"
    # Markdown: the proxy's column is in nats/byte (not %), the negative Δ carries ▲
    header = next(line for line in md.splitlines() if line.startswith("| Rank | Arm |") and "toy_nll" in line)
    assert "toy_nll Δ (nats/byte; lower is better; proxy)" in header
    row = next(line for line in md.splitlines() if line.startswith("| 1 | cpqs |"))
    assert f"{cmp['mean_diff']:+.4f}" in row and "▲" in row
    assert "%" not in header.split("toy_nll Δ")[1].split("[")[0]
    # the page: the same cell, coloured "better" although Δ < 0; longest's Δ > 0 is "worse"
    cells = _marks(page).cells
    assert ("better", f"{cmp['mean_diff']:+.4f} [") in [(c, t[: len(f"{cmp['mean_diff']:+.4f} [")]) for c, t in cells]
    worse = doc["summary"]["per_task"]["toy_nll"]["comparisons"]["random"]["longest"]["mean_diff"]
    assert worse > 0 and any(c == "worse" and t.startswith(f"{worse:+.4f}") for c, t in cells)
    assert all("▲" in t for c, t in cells if c == "better") and all("▼" in t for c, t in cells if c == "worse")
    # the page's data carries the judgement for the sortable board's colours, from the same function
    data = read_page_data(page)
    assert data["cells"]["toy_nll"]["cpqs"]["vs"]["random"]["judgement"] == "better"
    assert data["cells"]["toy_nll"]["longest"]["vs"]["random"]["judgement"] == "worse"
    # no mean across metrics of different units, anywhere
    html = page.read_text(encoding="utf-8")
    for text in (md, html):
        assert "domain mean" not in text.lower()
    assert '"avg"' not in (Path(leaderboard.__file__).parent / "leaderboard_assets" / "page.js").read_text()


# ---------------------------------------------------------------------------------------------------- figure


def test_svg_has_one_mark_per_arm_and_metric_equal_to_the_json_ordered_by_delta(board):
    _, doc, page = board
    ref = doc["reference"]["arm"]
    assert ref == "random"
    marks = _marks(page).panels
    drawn = [p["task"] for p in doc["forest"]["panels"] if not p["no_signal"]]
    assert sorted(marks) == sorted(drawn) == ["toy_acc", "toy_code", "toy_nll"]
    for task, got in marks.items():
        comps = doc["summary"]["per_task"][task]["comparisons"][ref]
        assert sorted(m["data-arm"] for m in got) == sorted(comps) == sorted(a for a in ARMS if a != ref)
        for m in got:
            c = comps[m["data-arm"]]
            assert (float(m["data-delta"]), float(m["data-lo"]), float(m["data-hi"])) == (
                c["mean_diff"],
                c["ci_low"],
                c["ci_high"],
            )
            assert m["data-verdict"] == (c["verdict"] or "")
        deltas = [float(m["data-delta"]) for m in got]
        hib = doc["task_facts"][task]["higher_is_better"]
        assert deltas == sorted(deltas, reverse=hib)  # best first, in the metric's direction
    assert [m["data-arm"] for m in marks["toy_nll"]][0] == "cpqs" and marks["toy_nll"][-1]["data-arm"] == "longest"


def test_an_all_equal_metric_is_listed_not_drawn(board):
    paths, doc, page = board
    assert doc["forest"]["no_signal"] == ["toy_flat"]
    panel = next(p for p in doc["forest"]["panels"] if p["task"] == "toy_flat")
    assert panel["no_signal"] and panel["rows"] == []
    md = paths["md"].read_text(encoding="utf-8")
    assert "No signal (all arms equal), listed not drawn: toy_flat (pass@1)." in md
    html = page.read_text(encoding="utf-8")
    assert re.search(r'<svg class="forest"[^>]*data-task="toy_flat"', html) is None
    assert re.search(r'<svg class="forest"[^>]*data-task="toy_nll"', html) is not None
    assert "toy_flat" in html.split('id="no-signal"')[1].split("</p>")[0]
    assert "toy_flat" not in _marks(page).panels


def test_png_is_the_forest_plot(board):
    paths, _, _ = board
    from PIL import Image

    with Image.open(paths["png"]) as im:
        assert im.size[0] >= 800 and im.size[1] >= 400


# ---------------------------------------------------------------------------------------------------- summary


def test_summary_sentence_says_exactly_the_verdicts(board):
    paths, doc, page = board
    by_domain = {g["domain"]: g["sentence"] for g in doc["glance"]}
    # ▲ and ▼ (cpqs better, longest worse on the proxy; ifd and base differ without a verdict)
    assert by_domain["math"] == (
        "math (vs random): cpqs is better (▲) on toy_nll; longest is worse (▼) on toy_nll; "
        "no other arm × metric has a verdict."
    )
    # no verdict at all
    assert by_domain["code"] == "code: no arm has a verdict vs random on any metric."
    md = paths["md"].read_text(encoding="utf-8")
    html = page.read_text(encoding="utf-8")
    for sentence in by_domain.values():
        assert sentence in md and sentence in html
    # the summary comes before the figure and the details, in both
    assert md.index("## At a glance") < md.index("![glance") < md.index("## Details")
    assert html.index('id="summary"') < html.index('id="figure"') < html.index('id="details"')
    # the ranking: net verdicts first
    math = next(g for g in doc["glance"] if g["domain"] == "math")
    assert [r["arm"] for r in math["rows"]][0] == "cpqs" and [r["arm"] for r in math["rows"]][-1] == "longest"


@pytest.mark.parametrize(
    ("verdicts", "want"),
    [
        (
            [("a", [("t", "▲")]), ("b", [("t", "")])],
            "d (vs r): a is better (▲) on t; no other arm × metric has a verdict.",
        ),
        ([("a", [("t", "")]), ("b", [("t", "")])], "d: no arm has a verdict vs r on any metric."),
        ([("a", [("t", "▼"), ("u", "▼")])], "d (vs r): a is worse (▼) on t, u."),
        ([("a", [("t", "▲")]), ("b", [("t", "▲")])], "d (vs r): a and b are better (▲) on t."),
    ],
)
def test_domain_sentence_cases(verdicts, want):
    assert leaderboard.domain_sentence("d", "r", verdicts) == want


def test_details_one_table_per_reference_and_power_in_words(board):
    paths, doc, page = board
    md = paths["md"].read_text(encoding="utf-8")
    assert doc["stats"]["references"] == ["random", "base"]
    for task in doc["tasks"]:
        for ref in ("random", "base"):
            assert md.count(f"#### {task} vs {ref}\n") == 1
        assert sum(1 for line in md.splitlines() if line.startswith(f"- {task}: n = ")) == 1
    assert "- toy_acc: n = 40 items; no comparison vs random can reach p < 0.05" in md
    html = page.read_text(encoding="utf-8")
    details = html.split('<details id="details">')[1].split("</details>")[0]
    assert details.count('<table class="detail"') == 2 * len(doc["tasks"]) and "Power" in details


# ---------------------------------------------------------------------------------------------------- blocks


def test_contamination_and_validity_blocks_on_every_page(board):
    paths, doc, page = board
    assert doc["contamination"] == CONTAMINATION and doc["validity"] == VALIDITY
    md = paths["md"].read_text(encoding="utf-8")
    row = next(line for line in md.split("## Contamination")[1].splitlines() if line.startswith("| toy_acc"))
    assert [c.strip() for c in row.strip("|").split("|")] == ["toy_acc", "40", "2", "3 (7.5%)", "1 (2.5%)", "2 (5.0%)"]
    section = md.split("## Selector validity")[1]
    assert "| cpqs | truncated | 50 | 0.900 [0.800, 0.970] | 0.850 [0.750, 0.930] | 0 |" in section
    assert (
        "| cpqs | all | 200 | 0.710 [0.650, 0.770] |" in section and "| paired_auc | toy_nll | +0.50 | 4 |" in section
    )
    html = page.read_text(encoding="utf-8")
    assert 'id="contamination"' in html and "3 (7.5%)" in html and 'id="validity"' in html
    assert _marks(page).vpoints == len(VALIDITY["tracks"]["planted"]["rows"])


def test_compute_block_and_the_delta_against_compute_panel(tmp_path, tasks_dir):
    run = _write_run(tmp_path / "run", compute=True)
    paths = leaderboard.main(
        run, tmp_path / "out", "comp", NOTE, stats=leaderboard.StatsOptions(n_boot=200), task_folders=[tasks_dir]
    )
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert doc["compute"]["cpqs"]["trained_tokens"] == pytest.approx(3002.0)  # mean over seeds 1, 2, 3
    assert doc["compute"]["cpqs"]["target_aware"] is False and "base" not in doc["compute"]
    (c,) = [c for c in doc["forest"]["compute"] if c["domain"] == "math"]
    assert c["task"] == "toy_nll"  # the metric with power, not the one no comparison can resolve
    assert {p["arm"] for p in c["points"]} == {"random", "cpqs", "longest", "ifd"}
    md = paths["md"].read_text(encoding="utf-8")
    assert "## Compute" in md and "Trained tokens" in md and "3e+15 FLOPs, 3 s" in md
    page = write_pages(paths["json"], tmp_path / "out")
    assert _marks(page).cpoints == len(c["points"]) + sum(
        len(x["points"]) for x in doc["forest"]["compute"] if x is not c
    )


def test_reference_falls_back_to_base_and_says_so(tmp_path, tasks_dir):
    run = _write_run(tmp_path / "run")
    paths = leaderboard.main(
        run,
        tmp_path / "out",
        "fb",
        NOTE,
        stats=leaderboard.StatsOptions(references=("random~cpqs",), n_boot=100),
        task_folders=[tasks_dir],
    )
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert doc["reference"]["arm"] == "base" and "'random~cpqs' is not in this run" in doc["reference"]["note"]
    assert doc["reference"]["note"] in paths["md"].read_text(encoding="utf-8")
    assert doc["forest"]["reference"] == "base"


def test_bad_blocks_are_rejected(tmp_path, tasks_dir):
    run = _write_run(tmp_path / "run")
    with pytest.raises(ValueError, match="contamination: expected a JSON object"):
        leaderboard.main(run, tmp_path / "o", "x", NOTE, blocks=leaderboard.BoardBlocks(contamination=[1]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="validity: missing key"):
        leaderboard.main(run, tmp_path / "o", "x", NOTE, blocks=leaderboard.BoardBlocks(validity={"model": "m"}))


# ---------------------------------------------------------------------------------------------------- from-json


def test_from_json_re_renders_the_same_board(board, tmp_path, tasks_dir):
    paths, doc, _ = board
    again = leaderboard.from_json(paths["json"], tmp_path, task_folders=[tasks_dir])
    assert json.loads(again["json"].read_text(encoding="utf-8")) == doc
    assert again["md"].read_text(encoding="utf-8") == paths["md"].read_text(encoding="utf-8")
    assert again["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_from_json_of_a_board_without_runs_keeps_its_numbers(board, tmp_path, tasks_dir):
    """Boards written before ``runs`` existed (the committed ones) re-render from items, arm_info and provenance."""
    paths, doc, _ = board
    old = {k: v for k, v in doc.items() if k != "runs"}
    src = tmp_path / "old" / "glance.json"
    src.parent.mkdir()
    src.write_text(json.dumps(old))
    again = json.loads(leaderboard.from_json(src, task_folders=[tasks_dir])["json"].read_text(encoding="utf-8"))
    assert again["summary"]["per_task"] == doc["summary"]["per_task"]
    assert again["provenance"] == doc["provenance"] and again["glance"] == doc["glance"]


def test_cli_from_json_writes_every_output(board, tmp_path):
    import sys

    paths, _, _ = board
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "cpqs_bench", "leaderboard", "--from-json", str(paths["json"]), "--out-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("glance.md", "glance.json", "glance.png", "glance/index.html", "index.html"):
        assert (out / name).is_file(), name
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "cpqs-bench/leaderboard/v1", "experiment": "x"}')
    with pytest.raises(ValueError, match=r"bad\.json: cannot re-render, missing key\(s\) note, items"):
        leaderboard.from_json(bad)


@pytest.mark.skipif(
    __import__("shutil").which("chromium") is None and __import__("os").environ.get("CHROMIUM") is None,
    reason="headless Chromium not installed (Debian: apt-get install -y chromium)",
)
def test_browser_board_shows_the_proxy_in_its_unit_with_the_better_colour(board, tmp_path):
    """The sortable board (page.js): the proxy's header in nats/byte, a negative Δ on it coloured 'better' (▲)."""
    from test_leaderboard_page import _dump

    _, doc, page = board
    dom = _dump(page, tmp_path)
    head = re.search(r'<th data-col="mean:toy_nll"[^>]*>.*?</th>', dom, re.S).group(0)
    assert "toy_nll (nats/byte)" in head and "(%)" not in head
    dhead = re.search(r'<th data-col="delta:toy_nll"[^>]*>.*?</th>', dom, re.S).group(0)
    assert "Δ vs random (nats/byte)" in dhead
    row = re.search(r'<tr data-arm="cpqs".*?</tr>', dom, re.S).group(0)
    cell = re.search(r'<td class="delta" data-col="delta:toy_nll".*?</td>', row, re.S).group(0)
    want = doc["summary"]["per_task"]["toy_nll"]["comparisons"]["random"]["cpqs"]["mean_diff"]
    assert want < 0 and 'class="num up"' in cell and "▲" in cell and f"{abs(want):.4f}" in cell
    row = re.search(r'<tr data-arm="longest".*?</tr>', dom, re.S).group(0)
    assert 'class="num down"' in re.search(r'data-col="delta:toy_nll".*?</td>', row, re.S).group(0)
    assert 'data-col="avg"' not in dom and "domain mean" not in dom
