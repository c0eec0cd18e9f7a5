"""The pairwise LLM-judge results reach every output: a CLI rebuild of the leaderboard from a run directory (judge
stage directories found like evaluation directories, or named by ``--pairwise``), the static HTML page, and the
Hub publish path (results dataset ``pairwise`` config, model cards). The judge stages here are written by the real
``judge_answer_files`` with a deterministic stand-in judge (no model), plus the manifest and DONE the pipeline adds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fake_run import make_run
from huggingface_hub import ModelCard
from huggingface_hub.repocard import metadata_load
from test_leaderboard_page import CHROMIUM, needs_chromium

from cpqs_bench import cli, leaderboard
from cpqs_bench.evaluate.judge import judge_answer_files
from cpqs_bench.leaderboard import fmt_p, fmt_pct, load_pairwise
from cpqs_bench.leaderboard_page import read_page_data, write_pages
from cpqs_bench.publish.config import PublishConfig
from cpqs_bench.publish.results_dataset import PAIRWISE_SCHEMA, RUNS_SCHEMA, pairwise_rows
from cpqs_bench.publish.run import publish_run

ARMS = ("random", "cpqs", "full")
SEEDS = (0, 1)
REFERENCE = "full"
PROMPTS = [
    ("vicuna/1", "vicuna"),
    ("vicuna/2", "vicuna"),
    ("koala/k0", "koala"),
    ("koala/k1", "koala"),
    ("koala/k2", "koala"),
]
HOSTILE_JUDGE = "judge<script>alert(1)</script>&co"
SECTION = "## Domain: general (pairwise judge)"


class LengthJudge:
    """Prefers the longer answer in both orders (so the strict rule gives win / lose / tie by length); the prompt
    ``koala/k2`` gets a review without two scores (unparsed)."""

    label = "local:judge (weak judge: the embedded/target model rates its own kind of text)"
    identity = "standin-length-judge-v1"
    weak = True
    spec = HOSTILE_JUDGE

    def complete(self, convs: list[list[dict]]) -> list[str]:
        out = []
        for conv in convs:
            text = conv[-1]["content"]
            if "question k2" in text:
                out.append("I cannot decide.")
                continue
            one = text.split("[Assistant 1's answer begins]\n")[1].split("\n[Assistant 1's answer ends]")[0]
            two = text.split("[Assistant 2's answer begins]\n")[1].split("\n[Assistant 2's answer ends]")[0]
            out.append(f"{5 + 3 * (len(one) > len(two))} {5 + 3 * (len(two) > len(one))}\nLength.")
        return out


def _answers(path: Path, arm: str, seed: int | None) -> Path:
    rows = []
    for pid, s in PROMPTS:
        n = 1 + zlib.crc32(f"{arm}/{seed}/{pid}".encode()) % 7
        rows.append({"id": pid, "set": s, "question": f"question {pid.split('/')[1]}", "answer": "w " * n})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def add_judge_stages(run: Path, arms=ARMS, seeds=SEEDS, n_boot: int = 200, tag: str = "h0") -> list[Path]:
    """Answers + judge stages as ``reproduce`` lays them out: every arm (and base) vs the reference of the same seed."""
    answers = {("base", None): _answers(run / "answers" / "base" / tag / "answers.jsonl", "base", None)}
    for arm in arms:
        for seed in seeds:
            answers[(arm, seed)] = _answers(run / "answers" / f"{arm}-s{seed}" / tag / "answers.jsonl", arm, seed)
    pairs = [((arm, seed), (REFERENCE, seed)) for arm in arms if arm != REFERENCE for seed in seeds]
    pairs += [(("base", None), (REFERENCE, seed)) for seed in seeds]
    dirs = []
    for (arm, seed), (ref, ref_seed) in pairs:
        name = f"{arm}{'' if seed is None else f'-s{seed}'}-vs-{ref}-s{ref_seed}"
        out = run / "judge" / name / tag
        doc = judge_answer_files(answers[(arm, seed)], answers[(ref, ref_seed)], LengthJudge(), out, n_boot=n_boot)
        (out / "manifest.json").write_text(
            json.dumps(
                {
                    "stage": f"judge/{name}",
                    "arm": arm,
                    "seed": seed,
                    "reference": ref,
                    "reference_seed": ref_seed,
                    "summary": doc["summary"],
                    "judge": doc["judge"],
                    "weak_judge": doc["weak_judge"],
                    "rule": "strict",
                }
            )
        )
        (out / "DONE").write_text("done\n")
        dirs.append(out)
    return dirs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = make_run(tmp_path_factory.mktemp("pw"), arms=ARMS, seeds=SEEDS)
    return root, add_judge_stages(root)


def _evals(run: Path) -> list[str]:
    return json.loads((run / "index.json").read_text())["evaluations"]


def _cli(*argv: str) -> int:
    return cli.main(["leaderboard", *argv, "--n-boot", "200"])


# ------------------------------------------------------------------------------------------------ CLI rebuild
def test_find_judge_dirs_finds_finished_judge_stages_only(run, tmp_path):
    root, dirs = run
    assert leaderboard.find_judge_dirs(root) == sorted(dirs)
    assert leaderboard.find_judge_dirs(dirs[0], required=True) == [dirs[0]]  # a judge dir itself
    assert leaderboard.find_judge_dirs(_evals(root)) == []  # evaluation dirs hold none: no section, no error
    with pytest.raises(FileNotFoundError, match="no finished pairwise judge directory"):
        leaderboard.find_judge_dirs(_evals(root)[0], required=True)
    half = tmp_path / "judge" / "x-vs-full" / "h1"  # an interrupted stage: no DONE
    shutil.copytree(dirs[0], half)
    (half / "DONE").unlink()
    assert leaderboard.find_judge_dirs(tmp_path) == []


def test_cli_rebuild_from_the_run_dir_has_the_pairwise_section(run, tmp_path, capsys):
    root, dirs = run
    assert _cli(str(root), "--experiment", "pw", "--out-dir", str(tmp_path / "boards")) == 0
    assert f"pairwise: {len(dirs)} judge directories" in capsys.readouterr().out
    md = (tmp_path / "boards" / "pw.md").read_text()
    assert SECTION in md
    section = md.split(SECTION)[1].split("## Figure")[0]
    assert "weak judge: a pipeline check" in section
    doc = json.loads((tmp_path / "boards" / "pw.json").read_text())
    want = load_pairwise(dirs, doc["arms"], n_boot=200, seed=0)
    assert doc["pairwise"] == json.loads(json.dumps(want))  # the same section leaderboard.main(pairwise=...) builds
    rows = {r["arm"]: r for r in doc["pairwise"]["rows"]}
    assert set(rows) == {"base", "random", "cpqs"} and {r["reference"] for r in rows.values()} == {REFERENCE}
    assert rows["random"]["seeds"] == [0, 1] and rows["base"]["reference_seeds"] == [0, 1]
    assert rows["cpqs"]["unparsed"] == len(SEEDS)  # koala/k2 once per seed
    for r in rows.values():
        assert (
            f"| {r['arm']} | {r['reference']} |" in section and f"| {r['win']} | {r['tie']} | {r['lose']} |" in section
        )
    # the page written by the same command shows it too
    assert 'id="pairwise"' in (tmp_path / "boards" / "pw" / "index.html").read_text()


def test_cli_pairwise_option_names_judge_dirs_explicitly(run, tmp_path, capsys):
    root, dirs = run
    evals = _evals(root)
    assert _cli(*evals, "--experiment", "plain", "--out-dir", str(tmp_path)) == 0
    assert "pairwise judge" not in (tmp_path / "plain.md").read_text()
    assert "pairwise" not in json.loads((tmp_path / "plain.json").read_text())
    random_dirs = [d for d in dirs if d.parent.name.startswith("random-")]
    assert (
        _cli(
            *evals,
            "--experiment",
            "some",
            "--out-dir",
            str(tmp_path),
            "--no-page",
            "--pairwise",
            *map(str, random_dirs),
        )
        == 0
    )
    doc = json.loads((tmp_path / "some.json").read_text())
    assert [r["arm"] for r in doc["pairwise"]["rows"]] == ["random"]
    # a run dir plus --pairwise naming a judge dir inside it: each judge dir counted once
    assert (
        _cli(
            str(root),
            "--experiment",
            "both",
            "--out-dir",
            str(tmp_path),
            "--no-page",
            "--pairwise",
            str(root / "judge"),
        )
        == 0
    )
    both = json.loads((tmp_path / "both.json").read_text())["pairwise"]["rows"]
    assert both == json.loads(json.dumps(load_pairwise(dirs, doc["arms"], n_boot=200)))["rows"]
    capsys.readouterr()
    assert _cli(*evals, "--experiment", "bad", "--out-dir", str(tmp_path), "--pairwise", evals[0]) == 1
    assert "no finished pairwise judge directory" in capsys.readouterr().err


def test_cli_refuses_two_judge_dirs_of_one_comparison(run, tmp_path, capsys):
    root, _ = run
    copy = tmp_path / "run"
    shutil.copytree(root, copy)
    stale = copy / "judge" / "random-s0-vs-full-s0"
    shutil.copytree(stale / "h0", stale / "h1")  # e.g. a rerun with another n_boot beside the old stage
    assert _cli(str(copy), "--experiment", "dup", "--out-dir", str(tmp_path / "b")) == 1
    err = capsys.readouterr().err
    assert "two pairwise judge directories for random seed 0 vs full seed 0" in err and "h1" in err
    assert not (tmp_path / "b" / "dup.json").exists()


# ------------------------------------------------------------------------------------------------ HTML page
class _Pairwise(HTMLParser):
    """Rows of ``table.pairwise``: ``[{"arm", "reference", "cells": {col: (data-value, text)}}]``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.inside = False
        self.row: dict | None = None
        self.col: tuple[str, str | None] | None = None
        self.text: list[str] = []
        self.title = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("class") == "pairwise":
            self.inside, self.title = True, a.get("data-domain")
        elif self.inside and tag == "tr" and "data-arm" in a:
            self.row = {"arm": a["data-arm"], "reference": a["data-reference"], "cells": {}}
            self.rows.append(self.row)
        elif self.row is not None and tag in ("td", "th") and "data-col" in a:
            self.col, self.text = (a["data-col"], a.get("data-value")), []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.col is not None and self.row is not None:
            self.row["cells"][self.col[0]] = (self.col[1], "".join(self.text))
            self.col = None
        elif tag == "tr":
            self.row = None
        elif tag == "table":
            self.inside = False

    def handle_data(self, data):
        if self.col is not None:
            self.text.append(data)


@pytest.fixture(scope="module")
def board(run, tmp_path_factory):
    root, dirs = run
    out = tmp_path_factory.mktemp("board")
    paths = leaderboard.main(
        _evals(root), out, "pw", "Test run: not a result.", stats=leaderboard.StatsOptions(n_boot=200), pairwise=dirs
    )
    return paths, json.loads(paths["json"].read_text())


def test_page_renders_the_pairwise_section_from_the_json(board, tmp_path):
    paths, doc = board
    page = write_pages(paths["json"], tmp_path)
    text = page.read_text()
    parser = _Pairwise()
    parser.feed(text)
    assert parser.title == "general (pairwise judge)"
    assert [(r["arm"], r["reference"]) for r in parser.rows] == [
        (r["arm"], r["reference"]) for r in doc["pairwise"]["rows"]
    ]
    for got, want in zip(parser.rows, doc["pairwise"]["rows"]):
        c = got["cells"]
        for k in ("win", "tie", "lose", "unparsed"):
            assert c[k] == (str(want[k]), str(want[k]))
        assert float(c["win_rate"][0]) == want["win_rate"] and c["win_rate"][1] == fmt_pct(want["win_rate"])
        assert float(c["sign_test_p"][0]) == want["sign_test_p"] and c["sign_test_p"][1] == fmt_p(want["sign_test_p"])
        net = want["winning_score"] - 1
        lo, hi = want["net_ci95"]
        assert float(c["net"][0]) == pytest.approx(net) and c["net"][1] == f"{net:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        assert c["winning_score"][1] == f"{want['winning_score']:.3f}"
        seeds = want["reference_seeds"] if want["arm"] == "base" else want["seeds"]
        assert c["seeds"][1] == ",".join(map(str, seeds)) and c["sets"][1] == ", ".join(want["sets"])
        assert c["judge"][1] == f"{HOSTILE_JUDGE} (strict) weak judge: a pipeline check"  # unescaped by the parser
    # text is escaped: the judge's name cannot open a script element; the page data carries the section too
    assert "<script>alert(1)" not in text and "judge&lt;script&gt;alert(1)&lt;/script&gt;&amp;co" in text
    data = read_page_data(page)
    assert [r["win"] for r in data["pairwise"]["rows"]] == [r["win"] for r in doc["pairwise"]["rows"]]
    assert "pairwise" not in data["extra_keys"]
    index = (tmp_path / "index.html").read_text()
    assert "general (pairwise judge)" in index


def test_page_without_pairwise_has_no_section_and_a_bad_section_is_an_error(board, tmp_path):
    paths, doc = board
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({k: v for k, v in doc.items() if k != "pairwise"} | {"experiment": "plain"}))
    page = write_pages(plain, tmp_path / "out")
    assert 'id="pairwise"' not in page.read_text() and read_page_data(page)["pairwise"] is None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"experiment": "bad", "pairwise": {"rows": "oops"}}))
    with pytest.raises(ValueError, match=r"bad\.json: pairwise"):
        write_pages(bad, tmp_path / "out")


def test_page_tolerates_missing_fields_in_a_pairwise_row(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"experiment": "x", "pairwise": {"rows": [{"arm": "a", "reference": "full"}]}}))
    parser = _Pairwise()
    parser.feed(write_pages(path, tmp_path / "out").read_text())
    (row,) = parser.rows
    assert row["cells"]["win"] == (None, "—") and row["cells"]["net"] == (None, "—")
    assert "weak judge" not in row["cells"]["judge"][1]


@needs_chromium
def test_browser_shows_the_pairwise_section_after_the_domain_tables(board, tmp_path):
    paths, doc = board
    page = write_pages(paths["json"], tmp_path)
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = proc.stdout
    assert proc.returncode == 0 and 'data-ready="1"' in dom, proc.stderr[-2000:]
    assert dom.count('id="pairwise"') == 1  # the script keeps the static section when it draws the page
    assert dom.index('data-domain="code"') < dom.index('id="pairwise"') < dom.index('id="caveats"')
    parser = _Pairwise()
    parser.feed(dom)
    assert [r["arm"] for r in parser.rows] == [r["arm"] for r in doc["pairwise"]["rows"]]


# ------------------------------------------------------------------------------------------------ publish
@pytest.fixture(scope="module")
def published(run, tmp_path_factory):
    """The run, its leaderboard rebuilt with the judge stages (as reproduce does), then a publish dry run."""
    root, dirs = run
    pub = tmp_path_factory.mktemp("pub") / "run"
    shutil.copytree(root, pub)
    index = json.loads((pub / "index.json").read_text())
    index["evaluations"] = [str(pub / Path(d).relative_to(root)) for d in index["evaluations"]]
    for key in ("adapters", "selections"):
        index[key] = {k: str(pub / Path(v).relative_to(root)) for k, v in index[key].items()}
    judge_dirs = [pub / d.relative_to(root) for d in dirs]
    board = leaderboard.main(
        index["evaluations"],
        pub / "leaderboards",
        "exp",
        "Test run: not a result.",
        stats=leaderboard.StatsOptions(n_boot=200),
        pairwise=judge_dirs,
    )
    index["leaderboard"] = {k: str(v) for k, v in board.items()}
    index["pairwise"] = [str(d) for d in judge_dirs]
    (pub / "index.json").write_text(json.dumps(index))
    publish_run(pub, PublishConfig(space=True), dry_run=True)
    return pub, json.loads(Path(board["json"]).read_text())


def _judge_summaries(run: Path) -> dict[tuple, dict]:
    out = {}
    for d in leaderboard.find_judge_dirs(run / "judge"):
        m = json.loads((d / "manifest.json").read_text())
        out[(m["arm"], m["seed"], m["reference"], m["reference_seed"])] = json.loads((d / "summary.json").read_text())
    return out


def test_results_dataset_has_a_pairwise_config_equal_to_the_judge_stages(published, tmp_path):
    datasets = pytest.importorskip("datasets")
    pub, doc = published
    folder = pub / "publish" / "dry-run" / "dry-run__exp-results"
    meta = metadata_load(folder / "README.md")
    assert [c["config_name"] for c in meta["configs"]] == ["runs", "items", "pairwise"]
    rows = datasets.load_dataset(str(folder), "pairwise", split="train", cache_dir=str(tmp_path / "cache"))
    assert rows.features.keys() == set(PAIRWISE_SCHEMA.names)
    summaries = _judge_summaries(pub)
    assert rows.num_rows == len(summaries) == (len(ARMS) - 1) * len(SEEDS) + len(SEEDS)
    for row in rows:
        s = summaries[(row["arm"], row["seed"], row["reference"], row["reference_seed"])]["summary"]
        assert {k: row[k] for k in ("win", "tie", "lose", "unparsed", "n")} == {
            k: s[k] for k in ("win", "tie", "lose", "unparsed", "n")
        }
        assert row["win_rate"] == s["win_rate"] and row["winning_score"] == s["winning_score"]
        assert [row["net_ci_low"], row["net_ci_high"]] == s["net_ci95"] and row["sign_test_p"] == s["sign_test_p"]
        assert row["judge"] == HOSTILE_JUDGE and row["weak_judge"] is True and row["rule"] == "strict"
        assert row["sets"] == ["vicuna", "koala"] and row["experiment"] == "exp"
    assert {r["seed"] for r in rows if r["arm"] == "base"} == {None}
    # the existing configs keep their schema; the card documents the new one with the weak-judge label
    runs = datasets.load_dataset(str(folder), "runs", split="train", cache_dir=str(tmp_path / "cache"))
    assert list(runs.features) == RUNS_SCHEMA.names
    card = (folder / "README.md").read_text()
    assert "### `pairwise`" in card and "weak judge: a pipeline check" in card
    assert json.loads((folder / "summary.json").read_text())["pairwise"] == doc["pairwise"]
    assert 'id="pairwise"' in (folder / "page" / "index.html").read_text()
    space = pub / "publish" / "dry-run" / "dry-run__exp-leaderboard" / "index.html"
    assert 'id="pairwise"' in space.read_text()


def test_model_cards_show_their_own_pairwise_rows_outside_the_model_index(published):
    pub, _ = published
    summaries = _judge_summaries(pub)
    for arm in ARMS:
        for seed in SEEDS:
            folder = pub / "publish" / "dry-run" / f"dry-run__exp-{arm}-s{seed}"
            card = ModelCard.load(folder / "README.md")
            results = metadata_load(folder / "README.md")["model-index"][0]["results"]
            assert len(results) == 2  # the two tasks only: the pairwise judge is no Hub benchmark
            assert sorted(p.name for p in (folder / ".eval_results").iterdir()) == [
                "cpqs_gsm8k_chat.yaml",
                "cpqs_humaneval_instruct.yaml",
            ]
            if arm == REFERENCE:
                assert "Pairwise LLM judge" not in card.text
                continue
            s = summaries[(arm, seed, REFERENCE, seed)]["summary"]
            table = card.text.split("## Pairwise LLM judge (general domain)")[1]
            (line,) = [ln for ln in table.splitlines() if ln.startswith(f"| {REFERENCE} (seed {seed}) |")]
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[2:6] == [str(s[k]) for k in ("win", "tie", "lose", "unparsed")]
            assert cells[6] == fmt_pct(s["win_rate"]) and cells[9] == fmt_p(s["sign_test_p"])
            assert cells[10].endswith("weak judge: a pipeline check") and "<script>" not in card.text


def test_a_run_without_pairwise_publishes_exactly_as_before(tmp_path):
    run = make_run(tmp_path, arms=("random",), seeds=(0,))
    publish_run(run, PublishConfig(), dry_run=True)
    folder = run / "publish" / "dry-run" / "dry-run__exp-results"
    assert [c["config_name"] for c in metadata_load(folder / "README.md")["configs"]] == ["runs", "items"]
    assert not (folder / "data" / "pairwise.parquet").exists()
    assert "Pairwise" not in (run / "publish" / "dry-run" / "dry-run__exp-random-s0" / "README.md").read_text()


def test_pairwise_rows_reject_a_malformed_section():
    assert pairwise_rows("e", None) == []
    with pytest.raises(ValueError, match=r"b\.json: pairwise.rows\[0\]: missing per_seed"):
        pairwise_rows(
            "e",
            {"rows": [{"arm": "a", "reference": "r", "judge": "j", "rule": "strict", "weak_judge": False, "sets": []}]},
            "b.json",
        )
    with pytest.raises(ValueError, match=r"per_seed\[0\]: missing n"):
        pairwise_rows(
            "e",
            {
                "rows": [
                    {
                        "arm": "a",
                        "reference": "r",
                        "judge": "j",
                        "rule": "strict",
                        "weak_judge": False,
                        "sets": [],
                        "per_seed": [{"seed": 0, "reference_seed": 0, "win": 1, "tie": 0, "lose": 0, "unparsed": 0}],
                    }
                ]
            },
        )
