"""The lm-eval task YAMLs in tasks/: every one loads through lm-eval's TaskManager offline, with docs from the data
mirror, the intended prompts, and scoring through our GSM8K extraction and code sandbox (never the Hub)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CPQS_DATA_MIRROR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

from cpqs_bench.evaluate import harness, tasks_utils  # noqa: E402

TASKS_DIR = Path(__file__).resolve().parents[1] / "cpqs_bench" / "tasks"
ALL_YAMLS = sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))
YAMLS = [t for t in ALL_YAMLS if not t.endswith("_nll")]  # generative; the proxies: tests/test_proxy_tasks.py
EXPECTED_DOCS = {
    "cpqs_gsm8k_chat": 1319,
    "cpqs_gsm8k_5shot": 1319,
    "cpqs_humaneval": 164,
    "cpqs_humaneval_plus": 164,
    "cpqs_humaneval_instruct": 164,
    "cpqs_humaneval_plus_instruct": 164,
}
CHAT = {"cpqs_gsm8k_chat", "cpqs_humaneval_instruct", "cpqs_humaneval_plus_instruct"}


@pytest.fixture(scope="module")
def loaded():
    tm = harness.task_manager()
    return tm.load(YAMLS)["tasks"]


def test_every_generative_yaml_has_its_expected_docs():
    assert set(YAMLS) == set(EXPECTED_DOCS)


def test_task_manager_indexes_only_our_tasks():
    tm = harness.task_manager()
    assert set(tm.all_subtasks) == set(ALL_YAMLS)


@pytest.mark.parametrize("name", ALL_YAMLS)
def test_chat_mode_metric_and_scorer_are_declared_by_the_yaml(name):
    info = harness.task_info(name)
    assert info["chat"] is (name in CHAT or name.endswith("_nll"))
    assert info["metric"] == (
        "nll_per_byte" if name.endswith("_nll") else "pass@1" if "humaneval" in name else "exact_match"
    )
    assert info["unsafe_code"] is ("humaneval" in name and not name.endswith("_nll"))


@pytest.mark.parametrize("name", YAMLS)
def test_yaml_loads_offline_with_version_and_mirror_docs(loaded, name):
    task = loaded[name]
    cfg = task.config
    assert cfg.metadata["version"] in (1.0, 2.0)
    assert cfg.dataset_path is None and callable(cfg.custom_dataset), "docs must come from our data layer"
    assert cfg.output_type == "generate_until" and cfg.generation_kwargs["do_sample"] is False
    assert callable(cfg.process_results)
    docs = task.eval_docs
    assert len(docs) == EXPECTED_DOCS[name]
    # scoring is ours: a custom filter from tasks_utils, no hf_evaluate / code_eval metric
    fn = cfg.filter_list[0]["filter"][0]["filter_fn"]
    assert fn.__module__ == "cpqs_bench.evaluate.tasks_utils"
    assert all(not m.get("hf_evaluate") for m in cfg.metric_list)


def test_gsm8k_docs_match_the_mirror_file(loaded):
    import json

    first = json.loads((Path(os.environ["CPQS_DATA_MIRROR"]) / "gsm8k" / "test.jsonl").open().readline())
    task = loaded["cpqs_gsm8k_chat"]
    doc = task.eval_docs[0]
    assert doc["question"] == first["question"] and doc["idx"] == 0
    text = task.doc_to_text(doc)
    assert "####" in text and text.endswith(first["question"])
    assert task.doc_to_target(doc) == first["answer"]


def test_gsm8k_5shot_context_has_five_solved_train_examples(loaded):
    task = loaded["cpqs_gsm8k_5shot"]
    task.set_fewshot_seed(1234)
    doc = task.eval_docs[3]
    ctx = task.fewshot_context(doc, 5)
    assert ctx.count("Question:") == 6 and ctx.count("####") == 5
    assert ctx.endswith(f"Question: {doc['question']}\nAnswer:")
    assert len(task.fewshot_docs()) == 7473


def test_humaneval_prompts_and_targets(loaded):
    plain, instruct = loaded["cpqs_humaneval"], loaded["cpqs_humaneval_plus_instruct"]
    for i in (0, 57, 163):
        doc = plain.eval_docs[i]
        assert plain.doc_to_text(doc) == tasks_utils.problems(False)[doc["task_id"]].prompt
        assert plain.doc_to_target(doc) == doc["task_id"] == f"HumanEval/{i}"
        idoc = instruct.eval_docs[i]
        assert idoc["prompt"] == tasks_utils.problems(True)[idoc["task_id"]].prompt
        assert instruct.doc_to_text(idoc).startswith("Write a solution")
        assert "```python\n" + idoc["prompt"] in instruct.doc_to_text(idoc)
    assert instruct.config.gen_prefix.startswith("Here is the completed function:")
    assert "```" in instruct.config.generation_kwargs["until"]


def test_instruct_program_cuts_at_the_fence_and_prepends_the_prompt():
    doc = {"prompt": 'def f(x):\n    """Double."""\n', "entry_point": "f"}
    assert (
        tasks_utils.instruct_program("    return 2 * x\n```\nExplanation", doc) == doc["prompt"] + "    return 2 * x\n"
    )
    assert tasks_utils.instruct_program("    return 2 * x\n", doc) == doc["prompt"] + "    return 2 * x\n"
    assert tasks_utils.completion_program("    return 2 * x", doc) == doc["prompt"] + "    return 2 * x"


def test_gsm8k_judge_and_results():
    doc = {"answer": "steps\n#### 1,234"}
    judged = tasks_utils.gsm8k_judge([["so the answer is #### 1234", "I think 12", "\\boxed{1234} apples"]], [doc])
    assert [j["correct"] for j in judged[0]] == [True, False, True]
    assert judged[0][0]["extracted"] == "1234"
    assert tasks_utils.gsm8k_results(doc, [judged[0][:1]]) == {"exact_match": 1.0}
    assert tasks_utils.gsm8k_results(doc, [judged[0]]) == {"exact_match": pytest.approx(2 / 3)}


@pytest.mark.parametrize("plus", [False, True])
def test_code_judges_run_the_sandbox(tmp_path, plus):
    tasks_utils.configure(tasks_utils.ExecSettings(workers=2, cache_dir=str(tmp_path)))
    probs = tasks_utils.problems(plus)
    ids = ["HumanEval/0", "HumanEval/4"]
    docs = [{"task_id": t, "prompt": probs[t].prompt, "entry_point": probs[t].entry_point} for t in ids]
    resps = [[probs[ids[0]].canonical_solution, "    return not True\n"], ["    return 0.0\n"]]
    judge = tasks_utils.humaneval_plus_judge if plus else tasks_utils.humaneval_judge
    out = judge(resps, docs)
    assert [[j["correct"] for j in d] for d in out] == [[True, False], [False]]
    assert out[0][0]["extracted"] == probs[ids[0]].prompt + probs[ids[0]].canonical_solution
    assert out[0][0]["status"] == "pass" and out[1][0]["status"] == "fail"
    assert tasks_utils.pass_at_1_results(docs[0], [out[0]]) == {"pass@1": 0.5}
    assert tasks_utils.pass_at_1_results(docs[1], [out[1]]) == {"pass@1": 0.0}


def test_process_results_rejects_malformed_input():
    with pytest.raises(ValueError):
        tasks_utils.pass_at_1_results({}, [])
    with pytest.raises(ValueError):
        tasks_utils.gsm8k_results({}, [[]])


def test_load_gsm8k_rejects_unknown_split():
    with pytest.raises(ValueError, match="splits"):
        tasks_utils.load_gsm8k(splits=["validation"])


def test_missing_mirror_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CPQS_DATA_MIRROR", str(tmp_path))
    tasks_utils.problems.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="humaneval"):
            tasks_utils.load_humaneval()
    finally:
        tasks_utils.problems.cache_clear()


def test_without_a_mirror_gsm8k_goes_to_the_hub_spec(tmp_path, monkeypatch):
    """Online path: the named dataset's Hub spec (repo, config, split) is what datasets.load_dataset receives."""
    import datasets

    calls = []

    def fake_load(repo, config=None, revision=None, split=None):
        calls.append((repo, config, revision, split))
        return [{"question": "1 + 1?", "answer": "1 + 1 = 2\n#### 2"}]

    monkeypatch.setenv("CPQS_DATA_MIRROR", str(tmp_path))
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ds = tasks_utils.load_gsm8k(splits=["test", "train"])
    assert calls == [("openai/gsm8k", "main", None, "test"), ("openai/gsm8k", "main", None, "train")]
    assert ds["test"][0] == {"idx": 0, "question": "1 + 1?", "answer": "1 + 1 = 2\n#### 2"}


def test_gsm8k_row_without_numeric_gold_is_a_data_error(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": "no marker"}\n')
    monkeypatch.setenv("CPQS_DATA_MIRROR", str(tmp_path))
    with pytest.raises(ValueError, match=r"gsm8k/test.jsonl: record 1: .*####"):
        tasks_utils.load_gsm8k()
