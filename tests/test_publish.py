"""Publishing through the real huggingface_hub client against the local stand-in Hub (127.0.0.1, ephemeral port)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx2
import pytest
import yaml
from fake_run import make_run
from hub_standin import HubStandIn  # tests/ is on sys.path (pytest rootdir-relative "prepend" import mode)
from huggingface_hub import ModelCard
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.repocard import metadata_load

from cpqs_bench.publish import hub as P
from cpqs_bench.publish.config import PublishConfig
from cpqs_bench.publish.results_dataset import BoardFiles, build_results_folder
from cpqs_bench.publish.run import publish_run

CANARY = "hf_CANARYtoken0123456789abcdef"
REPO = "cpqs-test/exp1-cpqs"
FACTS = {
    "gsm8k": {"dataset_id": "openai/gsm8k", "dataset_name": "GSM8K", "metric": "exact_match"},
    "humaneval": {"dataset_id": "openai/openai_humaneval", "dataset_name": "HumanEval", "metric": "pass@1"},
    "humaneval_plus": {"dataset_id": "evalplus/humanevalplus", "dataset_name": "HumanEval+", "metric": "pass@1"},
}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """Stand-in Hub + a client configured to reach only it (never the real Hub)."""
    monkeypatch.setenv("HF_TOKEN", CANARY)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    # huggingface_hub reads these constants at import time; HF_HUB_OFFLINE=1 is set for the whole test session,
    # so the publish tests lift it only for the duration of a test whose every request goes to 127.0.0.1.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)  # the stand-in speaks basic LFS, not Xet
    monkeypatch.setattr(hf_constants, "AGENT_HARNESSES_PATH", str(tmp_path / "hf_home" / "agents.json"))
    with HubStandIn(expected_token=CANARY) as standin:
        monkeypatch.setattr(hf_constants, "ENDPOINT", standin.endpoint)  # any stray call lands here too
        yield standin
    assert all(not r.path.startswith("http") for r in standin.requests)


def _adapter(root: Path) -> Path:
    ad = root / "adapter"
    ad.mkdir(parents=True)
    (ad / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16}))
    (ad / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 16)
    (ad / "README.md").write_text("peft auto card, must be replaced\n")
    return ad


def _arm_folder(root: Path, manifest: dict | None = None, metrics: dict | None = None) -> Path:
    ad = root / "adapter" if (root / "adapter").exists() else _adapter(root)
    sel = root / "selection.jsonl"
    if not sel.exists():
        sel.write_text('{"id": "a", "score": 0.9}\n{"id": "b", "score": 0.8}\n')
    return P.build_arm_folder(
        "cpqs",
        ad,
        sel,
        manifest or {"selector": "cpqs", "datasets": ["alpaca"], "seed": 1},
        metrics or {"gsm8k": 0.31, "humaneval": 0.125, "humaneval_plus": 0.1},
        "Qwen/Qwen2.5-0.5B",
        "exp1",
        root / "out" / "cpqs",
        P.CardFacts(
            facts=FACTS, eval_date="2026-12-01", source_url="https://huggingface.co/datasets/cpqs-test/exp1-results"
        ),
    )


def _push(hub: HubStandIn, folder: Path, *, delete_extra: bool = False, **conn):
    conn.setdefault("backoff_base_s", 0.001)
    conn.setdefault("max_wait_s", 0.01)
    connection = P.HubConnection(endpoint=hub.endpoint, **conn)
    return P.publish({REPO: (folder, "model")}, False, None, connection, delete_extra=delete_extra)


def _local_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _commits(hub: HubStandIn) -> list[dict]:
    return hub.repo(REPO).commits


# ---------------------------------------------------------------------------------------------------- builders
def test_arm_folder_layout_and_card_metadata(tmp_path):
    folder = _arm_folder(tmp_path)
    assert sorted(os.listdir(folder)) == [
        ".eval_results",
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "manifest.json",
        "selection.jsonl",
    ]
    assert sorted(os.listdir(folder / ".eval_results")) == ["gsm8k.yaml", "humaneval.yaml", "humaneval_plus.yaml"]
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "Qwen/Qwen2.5-0.5B" and card.data.library_name == "peft"
    assert "peft auto card" not in card.text and "2 instruction examples" in card.text
    got = {(r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert got == {  # percent, as the Hub's eval results show them
        ("openai/gsm8k", "exact_match"): 31.0,
        ("openai/openai_humaneval", "pass@1"): 12.5,
        ("evalplus/humanevalplus", "pass@1"): 10.0,
    }
    for task, value in (("gsm8k", 31.0), ("humaneval", 12.5), ("humaneval_plus", 10.0)):
        (entry,) = yaml.safe_load((folder / ".eval_results" / f"{task}.yaml").read_text())
        assert entry["dataset"] == {"id": FACTS[task]["dataset_id"], "task_id": "default"}
        assert entry["value"] == value and entry["date"] == "2026-12-01"
        assert entry["source"]["url"] == "https://huggingface.co/datasets/cpqs-test/exp1-results"
    meta = metadata_load(folder / "README.md")
    assert meta["model-index"][0]["name"] == "exp1-cpqs"
    assert len(meta["model-index"][0]["results"]) == 3


def test_arm_folder_rejects_bad_inputs(tmp_path):
    ad = _adapter(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        P.build_arm_folder("x", ad, bad, {}, {"gsm8k": 0.1}, "m", "e", tmp_path / "o")
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": 1}\n')
    with pytest.raises(ValueError, match="finite"):
        P.build_arm_folder("x", ad, good, {}, {"gsm8k": float("nan")}, "m", "e", tmp_path / "o")
    (ad / "adapter_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter"):
        P.build_arm_folder("x", ad, good, {}, {"gsm8k": 0.1}, "m", "e", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_results_folder_rejects_bad_summary_and_keeps_old_folder(tmp_path):
    run = make_run(tmp_path)
    index = json.loads((run / "index.json").read_text())
    board = index["leaderboard"]
    facts = {t: {"dataset_id": None} for t in ("cpqs_gsm8k_chat", "cpqs_humaneval_instruct")}
    out = tmp_path / "res"
    build_results_folder("exp", index["evaluations"], BoardFiles(board["json"], [board["md"]]), out, facts=facts)
    before = (out / "data" / "runs.parquet").read_bytes()
    bad = tmp_path / "summary.json"
    bad.write_text("{broken")
    with pytest.raises(ValueError, match=r"summary\.json:1"):
        build_results_folder("exp", index["evaluations"], BoardFiles(bad, [board["md"]]), out, facts=facts)
    assert (out / "data" / "runs.parquet").read_bytes() == before  # failed rebuild left the old folder intact
    with pytest.raises(FileNotFoundError, match="missing"):
        build_results_folder(
            "exp", index["evaluations"], BoardFiles(board["json"], [tmp_path / "nope.md"]), out, facts=facts
        )


# ---------------------------------------------------------------------------------------------------- pushing
def test_first_push_creates_repo_with_one_commit(hub, tmp_path):
    folder = _arm_folder(tmp_path)
    report = _push(hub, folder)
    entry = report["repos"][REPO]
    assert entry["action"] == "committed" and entry["waits"] == []
    assert len(hub.routes_hit("commit")) == 1
    assert [c["summary"] for c in _commits(hub)] == ["initial commit", "cpqs-bench: publish results"]
    assert entry["commit"] == hub.repo(REPO).head
    stored = hub.stored_files(REPO)
    stored.pop(".gitattributes")
    assert stored == _local_bytes(folder)
    assert hub.repo(REPO).files["adapter_model.safetensors"].lfs  # went through the LFS batch + upload path
    assert not hub.repo(REPO).files["README.md"].lfs
    assert hub.routes_hit("lfs-upload") and hub.routes_hit("validate-yaml")


def test_repush_unchanged_makes_no_commit(hub, tmp_path):
    folder = _arm_folder(tmp_path)
    _push(hub, folder)
    head = hub.repo(REPO).head
    report = _push(hub, folder)
    assert report["repos"][REPO]["action"] == "unchanged"
    assert report["repos"][REPO]["commit"] is None
    assert hub.repo(REPO).head == head and len(_commits(hub)) == 2
    assert len(hub.routes_hit("commit")) == 1
    # an unchanged rebuild of the folder (same inputs) is also a no-op: the build is deterministic
    folder = _arm_folder(tmp_path)
    assert _push(hub, folder)["repos"][REPO]["action"] == "unchanged"


def test_changed_file_makes_exactly_one_commit(hub, tmp_path):
    folder = _arm_folder(tmp_path)
    _push(hub, folder)
    folder = _arm_folder(tmp_path, manifest={"selector": "cpqs", "datasets": ["alpaca"], "seed": 2})
    report = _push(hub, folder)
    assert report["repos"][REPO]["uploaded"] == ["manifest.json"]
    assert len(_commits(hub)) == 3
    assert _commits(hub)[-1]["changes"] == ["file:manifest.json"]
    assert json.loads(hub.stored_files(REPO)["manifest.json"])["seed"] == 2
    # a changed LFS file is detected through its sha256
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"\x01" * 4096)
    folder = _arm_folder(tmp_path, manifest={"selector": "cpqs", "datasets": ["alpaca"], "seed": 2})
    report = _push(hub, folder)
    assert report["repos"][REPO]["uploaded"] == ["adapter_model.safetensors"]
    assert len(_commits(hub)) == 4


def test_remote_extras_deleted_only_when_asked(hub, tmp_path):
    folder = _arm_folder(tmp_path)
    (folder / "stale.txt").write_text("old\n")
    _push(hub, folder)
    (folder / "stale.txt").unlink()
    assert _push(hub, folder)["repos"][REPO]["action"] == "unchanged"
    report = _push(hub, folder, delete_extra=True)
    assert report["repos"][REPO]["deleted"] == ["stale.txt"]
    assert "stale.txt" not in hub.stored_files(REPO)
    assert ".gitattributes" in hub.stored_files(REPO)  # never deleted


def test_transient_500_then_429_then_success(hub, tmp_path):
    folder = _arm_folder(tmp_path)
    hub.inject("create", 503)
    hub.inject("commit", 500)
    hub.inject("commit", 429, retry_after="7")
    report = _push(hub, folder, max_retries=3, backoff_base_s=0.001, max_wait_s=0.02)
    entry = report["repos"][REPO]
    assert entry["action"] == "committed"
    assert [r.status for r in hub.routes_hit("commit")] == [500, 429, 200]
    assert [r.status for r in hub.routes_hit("create")] == [503, 200]
    assert len(entry["waits"]) == 3
    assert entry["waits"][2] == pytest.approx(0.02)  # Retry-After: 7 honoured but capped at max_wait_s
    assert len(_commits(hub)) == 2


def test_persistent_500_fails_clearly_after_bound(hub, tmp_path):
    folder = _arm_folder(tmp_path)
    hub.fail_always["commit"] = 500
    with pytest.raises(P.PublishError, match=r"commit to cpqs-test/exp1-cpqs failed after 3 attempt\(s\).*500"):
        _push(hub, folder, max_retries=2)
    assert len(hub.routes_hit("commit")) == 3
    assert len(_commits(hub)) == 1  # only the repo's initial commit


def test_lost_commit_response_is_not_committed_twice(hub, tmp_path):
    folder = _arm_folder(tmp_path)
    hub.lose_next_response("commit")
    report = _push(hub, folder)
    # the retry's preupload (huggingface_hub's own diff) saw the commit had landed: no second commit is sent
    assert [r.status for r in hub.routes_hit("commit")] == [502]
    entry = report["repos"][REPO]
    assert entry["action"] == "committed" and entry["commit"] == hub.repo(REPO).head and "lost" in entry["note"]
    assert len(_commits(hub)) == 2


def test_client_errors_are_not_retried(hub, tmp_path):
    folder = _arm_folder(tmp_path)
    hub.inject("commit", 422)
    with pytest.raises(P.PublishError, match="after 1 attempt"):
        _push(hub, folder)
    assert len(hub.routes_hit("commit")) == 1


def test_dry_run_writes_exactly_what_a_push_sends(hub, tmp_path):
    folder = _arm_folder(tmp_path)
    dry = tmp_path / "dry"
    report = P.publish({REPO: (folder, "model")}, True, dry, P.HubConnection(endpoint=hub.endpoint))
    assert hub.requests == []  # a dry run talks to nobody
    plan = json.loads((dry / "plan.json").read_text())
    assert plan == json.loads(json.dumps(report))
    planned = {f["path"] for f in plan["repos"][REPO]["files"]}
    _push(hub, folder)
    stored = hub.stored_files(REPO)
    stored.pop(".gitattributes")
    assert _local_bytes(dry / "cpqs-test__exp1-cpqs") == stored
    assert planned == set(stored)


def test_token_never_written_and_sent_only_as_header(hub, tmp_path):
    folder = _arm_folder(tmp_path)
    dry = tmp_path / "dry"
    P.publish({REPO: (folder, "model")}, True, dry, P.HubConnection(endpoint=hub.endpoint))
    _push(hub, folder)
    api_requests = [r for r in hub.requests if r.auth_ok is not None]
    assert api_requests and all(r.auth_ok for r in api_requests)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "hf_home" not in p.parts]
    assert written and not [p for p in written if CANARY.encode() in p.read_bytes()]
    assert all(CANARY.encode() not in b for b in hub.stored_files(REPO).values())
    assert all(CANARY.encode() not in b for b in hub.bodies)


def test_wrong_token_is_a_clear_non_retried_failure(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrongtoken")
    with pytest.raises(P.PublishError, match="create_repo .* after 1 attempt") as exc:
        _push(hub, _arm_folder(tmp_path))
    assert "hf_wrongtoken" not in str(exc.value)


def test_error_messages_are_scrubbed_of_the_token():
    def boom():
        raise RuntimeError(f"server echoed Authorization: Bearer {CANARY}")

    with pytest.raises(P.PublishError) as exc:
        P.with_retries(boom, "thing", P.RetryPolicy(max_retries=0), [CANARY])
    assert CANARY not in str(exc.value) and "***" in str(exc.value)
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_offline_mode_refuses_real_push(tmp_path, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(P.PublishError, match="HF_HUB_OFFLINE"):
        P.publish({REPO: (_arm_folder(tmp_path), "model")}, False, None, P.HubConnection(endpoint="http://127.0.0.1:9"))


def test_routes_already_retried_by_huggingface_hub_are_not_retried_again():
    def err(status: int, url: str) -> HfHubHTTPError:
        return HfHubHTTPError("x", response=httpx2.Response(status, request=httpx2.Request("POST", url)))

    base = "http://127.0.0.1:1/api/models/a/b"
    assert P.is_transient(err(500, f"{base}/commit/main"))
    assert P.is_transient(err(429, "http://127.0.0.1:1/api/repos/create"))
    assert not P.is_transient(err(500, f"{base}/preupload/main"))  # http_backoff already retried it
    assert not P.is_transient(err(500, f"{base}/tree/main"))
    assert not P.is_transient(err(404, f"{base}/commit/main"))
    assert P.is_transient(httpx2.ConnectError("refused", request=httpx2.Request("POST", f"{base}/commit/main")))


def test_bad_publish_arguments(tmp_path):
    folder = _arm_folder(tmp_path)
    with pytest.raises(ValueError, match="namespace/name"):
        P.publish({"noslash": (folder, "model")}, True, tmp_path / "d")
    with pytest.raises(ValueError, match="repo_type"):
        P.publish({REPO: (folder, "notebook")}, True, tmp_path / "d")
    with pytest.raises(FileNotFoundError):
        P.publish({REPO: (tmp_path / "missing", "model")}, True, tmp_path / "d")


# ---------------------------------------------------------------------------------------------------- whole runs
def test_publish_run_pushes_models_dataset_and_space_then_repush_is_a_no_op(hub, tmp_path):
    run = make_run(tmp_path, arms=("random", "cpqs"), seeds=(0,))
    cfg = PublishConfig(hub_namespace="cpqs-test", space=True)
    report = publish_run(run, cfg, dry_run=False, endpoint=hub.endpoint)
    repos = report["repos"]
    assert {r: e["action"] for r, e in repos.items()} == {
        "cpqs-test/exp-random-s0": "committed",
        "cpqs-test/exp-cpqs-s0": "committed",
        "cpqs-test/exp-results": "committed",
        "cpqs-test/exp-leaderboard": "committed",
    }
    assert len(hub.routes_hit("commit")) == 4
    stored = hub.stored_files("cpqs-test/exp-results", "dataset")
    assert {"data/runs.parquet", "data/items.parquet", "README.md", "page/index.html"} <= set(stored)
    assert (
        hub.stored_files("cpqs-test/exp-results", "dataset")["data/runs.parquet"]
        == (run / "publish" / "folders" / "results" / "data" / "runs.parquet").read_bytes()
    )
    space = hub.stored_files("cpqs-test/exp-leaderboard", "space")
    assert b"sdk: static" in space["README.md"] and b'id="board-data"' in space["index.html"]
    assert ".eval_results/cpqs_gsm8k_chat.yaml" in hub.stored_files("cpqs-test/exp-cpqs-s0")
    heads = {r: hub.repo(r, e["repo_type"]).head for r, e in repos.items()}
    state = json.loads((run / "publish" / "state.json").read_text())
    assert {r: e["commit"] for r, e in state["repos"].items()} == {r: e["commit"] for r, e in repos.items()}
    n_requests = len(hub.requests)
    again = publish_run(run, cfg, dry_run=False, endpoint=hub.endpoint)  # resumes: every repo is recorded as live
    assert {e["action"] for e in again["repos"].values()} == {"live"}
    assert {r: e["commit"] for r, e in again["repos"].items()} == {r: e["commit"] for r, e in repos.items()}
    assert len(hub.requests) == n_requests
    rechecked = publish_run(run, cfg, dry_run=False, endpoint=hub.endpoint, recheck=True)
    assert {e["action"] for e in rechecked["repos"].values()} == {"unchanged"}
    assert len(hub.routes_hit("commit")) == 4  # huggingface_hub skipped every unchanged file: no commit sent
    assert {r: hub.repo(r, e["repo_type"]).head for r, e in repos.items()} == heads


def test_real_push_needs_a_namespace(tmp_path):
    run = make_run(tmp_path, arms=("random",), seeds=(0,))
    with pytest.raises(ValueError, match="namespace"):
        publish_run(run, PublishConfig(), dry_run=False)
