"""``evaluate_model`` end to end on a tiny random model saved to disk: every task offline with limit 2,
per-item/metrics/manifest files, adapter-inactive refusal, keyed request cache, batched == unbatched generation,
tasks defined by their YAML alone (a user task folder via ``evaluate.include_path``), one base load for many arms."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CPQS_DATA_MIRROR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

import torch  # noqa: E402

from cpqs_bench import tiny  # noqa: E402
from cpqs_bench.config import Config, replace, to_dict  # noqa: E402
from cpqs_bench.evaluate import harness  # noqa: E402
from cpqs_bench.evaluate.config import EvaluateConfig  # noqa: E402
from cpqs_bench.io import read_json, read_jsonl  # noqa: E402

torch.set_num_threads(1)
SETTINGS = EvaluateConfig(batch_size=2, max_new_tokens=8, dtype="float32", code_workers=2, code_timeout_s=10.0)
TASKS_DIR = Path(__file__).resolve().parents[1] / "cpqs_bench" / "tasks"
# every generative task of tasks/ (the loglikelihood proxies have their own test file)
GENERATIVE = sorted(p.stem for p in TASKS_DIR.glob("cpqs_*.yaml") if not p.stem.endswith("_nll"))


def config(model: Path | str, settings: EvaluateConfig = SETTINGS, **evaluate) -> Config:
    """A resolved Config as the CLI would build it: model + the evaluate section (+ overrides)."""
    values = {**to_dict(settings), **evaluate}
    return replace(
        Config(), **{"model.id": str(model), "model.device": "cpu", **{f"evaluate.{k}": v for k, v in values.items()}}
    )


def evaluate(model, out, *, adapter=None, cache_root=None, loader=None, settings=SETTINGS, **ev):
    return harness.evaluate_model(
        config(model, settings, **ev), out, adapter=adapter, cache_root=cache_root, loader=loader
    )


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    model, tok = tiny.model("chatml", seed=0)
    path = tmp_path_factory.mktemp("tiny-chatml")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _save_lora(base_dir: Path, out: Path, active: bool) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    # Default LoRA init has B = 0: the adapter is a no-op until trained. init_lora_weights=False makes it active.
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=not active)
    get_peft_model(base, cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def full_run(tiny_dir, cache_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-all")
    metrics = evaluate(tiny_dir, out, tasks=GENERATIVE, limit=2, cache_root=cache_root)
    return out, metrics


def test_all_tasks_end_to_end_write_items_metrics_manifest(full_run, tiny_dir):
    out, metrics = full_run
    assert set(metrics) == set(GENERATIVE)
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert read_json(out / "metrics.json") == metrics
    items = read_jsonl(out / "items.jsonl")
    assert len(items) == 2 * len(set(GENERATIVE))
    for task in set(GENERATIVE):
        rows = [r for r in items if r["task"] == task]
        assert [r["doc_id"] for r in rows] == [0, 1]
        assert metrics[task] == pytest.approx(sum(r["correct"] for r in rows) / 2)
        for r in rows:
            assert set(r) >= {"task", "doc_id", "item_id", "prediction", "extracted", "correct"}
            assert r["correct"] in (0.0, 1.0) and isinstance(r["prediction"], str)
        assert (out / "samples" / f"{task}.jsonl").is_file()
    code_rows = [r for r in items if "humaneval" in r["task"]]
    assert {r["item_id"] for r in code_rows} == {"HumanEval/0", "HumanEval/1"}
    for r in code_rows:  # the executed program starts with the function prompt
        assert r["extracted"].startswith(("from typing import List", "\n")) and r["status"] in (
            "pass",
            "fail",
            "timeout",
            "output_limit",
            "early_exit",
        )
    gsm = [r for r in items if r["task"].startswith("cpqs_gsm8k")]
    assert [r["item_id"] for r in gsm] == ["0", "1", "0", "1"]
    m = read_json(out / "evaluation.json")
    assert m["model"]["path"] == str(tiny_dir) and m["model"]["revision"].startswith("config-sha256:")
    assert m["adapter"] is None
    assert m["sandbox"]["isolation"] in ("namespaces", "rlimits")
    assert m["chat_template"]["cpqs_gsm8k_chat"] is True and m["chat_template"]["cpqs_humaneval"] is False
    assert m["task_versions"]["cpqs_gsm8k_chat"] == 1.0 and m["task_versions"]["cpqs_humaneval_instruct"] == 2.0
    assert m["generation"]["per_task"]["cpqs_humaneval"]["max_gen_toks"] == 8
    assert m["n_items"] == {t: 2 for t in set(GENERATIVE)}
    assert not (out / "DONE").exists() and not (out / "manifest.json").exists()  # the executor's files
    assert "git" in m or "packages" in m


def test_chat_tasks_use_the_chat_template_and_completion_tasks_do_not(full_run):
    out, _ = full_run
    chat = read_jsonl(out / "samples" / "cpqs_humaneval_instruct.jsonl")[0]
    prompt = chat["arguments"][0][0]
    assert prompt.startswith("<|im_start|>system") and "Here is the completed function:\n```python\n" in prompt
    assert not prompt.rstrip().endswith("<|im_end|>"), "the assistant turn must stay open (gen_prefix)"
    plain = read_jsonl(out / "samples" / "cpqs_humaneval.jsonl")[0]
    assert plain["arguments"][0][0].startswith("from typing import List")
    fewshot = read_jsonl(out / "samples" / "cpqs_gsm8k_5shot.jsonl")[0]["arguments"][0][0]
    assert fewshot.count("Question:") == 6 and "<|im_start|>" not in fewshot


def test_a_rerun_into_a_finished_dir_replaces_its_outputs(full_run, tiny_dir, cache_root, tmp_path):
    """Reuse is the executor's decision (stage keys); the library replaces what it finds, never mixes old and new."""
    out, metrics = full_run
    again = tmp_path / "again"
    import shutil

    shutil.copytree(out, again)
    metrics1 = evaluate(tiny_dir, again, tasks=["cpqs_gsm8k_chat"], limit=1, cache_root=cache_root)
    assert set(metrics1) == {"cpqs_gsm8k_chat"} and set(read_json(again / "metrics.json")) == {"cpqs_gsm8k_chat"}
    assert {r["task"] for r in read_jsonl(again / "items.jsonl")} == {"cpqs_gsm8k_chat"}
    assert sorted(p.name for p in (again / "samples").iterdir()) == ["cpqs_gsm8k_chat.jsonl"]


def test_inactive_adapter_is_refused(tiny_dir, cache_root, tmp_path):
    adapter = _save_lora(tiny_dir, tmp_path / "lora-untrained", active=False)
    with pytest.raises(harness.AdapterInactiveError, match="inactive"):
        evaluate(tiny_dir, tmp_path / "out", adapter=adapter, tasks=["cpqs_gsm8k_chat"], limit=1, cache_root=cache_root)
    assert not (tmp_path / "out" / "DONE").exists()


def test_active_adapter_goes_through_the_same_path(tiny_dir, cache_root, tmp_path):
    adapter = _save_lora(tiny_dir, tmp_path / "lora-active", active=True)
    out = tmp_path / "out"
    metrics = evaluate(tiny_dir, out, adapter=adapter, tasks=["cpqs_gsm8k_chat"], limit=1, cache_root=cache_root)
    assert set(metrics) == {"cpqs_gsm8k_chat"}
    m = read_json(out / "evaluation.json")
    assert m["adapter"]["hash"] == harness.adapter_fingerprint(str(adapter))["hash"]
    assert m["adapter"]["probe_max_abs_logit_delta"] > 0
    assert m["request_cache"]["cpqs_gsm8k_chat"] != harness.cache_path(
        str(tiny_dir),
        m["model"]["revision"],
        None,
        config(tiny_dir).evaluate,
        True,
        cache_root / "lm_eval_requests",
        m["inputs"]["prompt"],
    )


def test_cache_path_keys_on_revision_adapter_and_generation_settings(tmp_path):
    base = harness.cache_path("m", "r1", None, SETTINGS, True, tmp_path)
    assert base == harness.cache_path("m", "r1", None, SETTINGS, True, tmp_path)
    others = {
        harness.cache_path("m", "r2", None, SETTINGS, True, tmp_path),
        harness.cache_path("m", "r1", "abc", SETTINGS, True, tmp_path),
        harness.cache_path("m", "r1", None, EvaluateConfig(max_new_tokens=9), True, tmp_path),
        harness.cache_path("m", "r1", None, SETTINGS, False, tmp_path),
    }
    assert base not in others and len(others) == 4


def test_unknown_task_gets_lm_evals_did_you_mean():
    with pytest.raises(harness.EvaluationError, match=r"Unknown task 'cpqs_gsm8k_caht'.*Did you mean.*cpqs_gsm8k"):
        harness.resolve_tasks("cpqs_gsm8k_caht,cpqs_humaneval")


def test_task_facts_come_from_the_yaml_alone():
    chat = harness.task_info("cpqs_humaneval_instruct")
    assert chat["chat"] is True and chat["metric"] == "pass@1" and chat["filter"] == "judge"
    assert chat["unsafe_code"] is True and chat["n_docs"] == 164
    plain = harness.task_info("cpqs_gsm8k_5shot")
    assert plain["chat"] is False and plain["metric"] == "exact_match" and plain["unsafe_code"] is False
    proxy = harness.task_info("cpqs_gsm8k_chat_nll")
    assert proxy["output_type"] == "loglikelihood" and proxy["metric"] == "nll_per_byte" and proxy["filter"] == "none"
    assert proxy["higher_is_better"] is False and proxy["chat"] is True


USER_TASK = """# a user's task, outside the project: generate_until over a local JSONL, scored by lm-eval's exact_match
task: my_echo
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Say {{{{word}}}}:"
doc_to_target: "{{{{word}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
  chat: false
"""


def test_a_new_task_yaml_in_a_user_folder_runs_with_no_code_change(tiny_dir, tmp_path):
    folder = tmp_path / "my_tasks"
    folder.mkdir()
    data = folder / "words.jsonl"
    data.write_text("".join(f'{{"word": "w{i}"}}\n' for i in range(3)))
    (folder / "my_echo.yaml").write_text(USER_TASK.format(data=data))
    out = tmp_path / "ev"
    metrics = evaluate(tiny_dir, out, tasks=["my_echo"], limit=3, include_path=[str(folder)], use_cache=False)
    assert set(metrics) == {"my_echo"} and 0.0 <= metrics["my_echo"] <= 1.0
    items = read_jsonl(out / "items.jsonl")
    assert [r["doc_id"] for r in items] == [0, 1, 2] and all(isinstance(r["prediction"], str) for r in items)
    assert metrics["my_echo"] == pytest.approx(sum(r["correct"] for r in items) / 3)
    m = read_json(out / "evaluation.json")
    assert m["tasks"]["my_echo"]["metric"] == "exact_match" and m["chat_template"]["my_echo"] is False
    prompt = read_jsonl(out / "samples" / "my_echo.jsonl")[0]["arguments"]
    assert "Say w0:" in json.dumps(prompt)


def test_one_base_load_serves_the_base_model_and_every_adapter(tiny_dir, cache_root, tmp_path):
    """A shared loader (the pipeline's model cache): one load; each adapter is attached for its evaluation only,
    so evaluating the base model after an arm gives the base model's own results."""
    from cpqs_bench.model_cache import ModelCache

    cache = ModelCache(device="cpu")
    a1 = _save_lora(tiny_dir, tmp_path / "a1", active=True)
    kw = dict(tasks=["cpqs_gsm8k_chat"], limit=2, use_cache=False, loader=cache)
    base_first = evaluate(tiny_dir, tmp_path / "base1", **kw)
    evaluate(tiny_dir, tmp_path / "arm1", adapter=a1, **kw)
    evaluate(tiny_dir, tmp_path / "base2", **kw)
    assert len(cache.loads) == 1
    model = cache(str(tiny_dir), None, "float32")[0]
    assert not any("lora" in n for n, _ in model.named_modules()), "the cached base must stay clean"
    preds = lambda d: [r["prediction"] for r in read_jsonl(d / "items.jsonl")]  # noqa: E731
    assert preds(tmp_path / "base1") == preds(tmp_path / "base2") and base_first is not None


def test_an_evaluation_of_our_tasks_never_indexes_lm_evals_own_task_tree(tiny_dir, tmp_path, monkeypatch):
    """``simple_evaluate`` builds a default TaskManager (every lm-eval YAML, seconds per call) unless it is handed
    one; the harness hands it the manager that built the tasks, so an evaluation of tasks/ indexes nothing more."""
    from lm_eval.tasks import TaskManager

    built = []
    real_init = TaskManager.__init__

    def counting_init(self, *args, **kwargs):
        built.append(kwargs.get("include_defaults", True))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(TaskManager, "__init__", counting_init)
    harness._task_manager.cache_clear()
    harness._built.cache_clear()
    evaluate(
        tiny_dir,
        tmp_path / "e",
        tasks=["cpqs_gsm8k_chat", "cpqs_gsm8k_chat_nll"],
        limit=1,
        task_limits={"cpqs_gsm8k_chat_nll": 2},
        use_cache=False,
    )
    assert built == [False], f"TaskManagers built (include_defaults): {built}"


def test_batched_generation_equals_unbatched_and_unpadded_reference():
    """HFLM left-pads a batch and slices the continuation at the padded context length; check it is exact."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    model, tok = tiny.model("chatml", seed=3)
    prompts = [
        "Hello",
        "The quick brown fox jumps over the lazy dog. Write a poem about the sea and the sky.",
        "def add(a, b):\n",
        "Explain why the sky is blue in simple words. Hello, world!",
        "Answer: 72",
    ]
    gen = {"until": ["\n\n\n"], "max_gen_toks": 10, "do_sample": False}

    def run(batch_size: int) -> list[str]:
        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device="cpu")
        reqs = [Instance("generate_until", {}, (p, dict(gen)), i) for i, p in enumerate(prompts)]
        return lm.generate_until(reqs)

    reference = []
    for p in prompts:  # one prompt at a time, no padding at all
        ids = tok(p, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            new = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=10,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )[0, ids.shape[1] :]
        reference.append(tok.decode(new, skip_special_tokens=True).split("\n\n\n")[0])
    batched, unbatched = run(4), run(1)
    assert any(r.strip() for r in reference), "degenerate reference: the test would not detect a slicing error"
    assert batched == unbatched == reference


def test_identical_generation_requests_are_decoded_once_and_fanned_back_in_order():
    """HumanEval and HumanEval+ send the same prompts: the backend decodes each distinct (context, settings) once."""
    from types import SimpleNamespace

    reqs = [
        SimpleNamespace(args=(c, {"max_gen_toks": m})) for c, m in [("a", 8), ("b", 8), ("a", 8), ("a", 4), ("b", 8)]
    ]
    seen = []

    def generate(batch):
        seen.append([r.args for r in batch])
        return [f"{r.args[0]}:{r.args[1]['max_gen_toks']}" for r in batch]

    assert harness.answer_once(reqs, generate) == ["a:8", "b:8", "a:8", "a:4", "b:8"]
    assert seen == [[("a", {"max_gen_toks": 8}), ("b", {"max_gen_toks": 8}), ("a", {"max_gen_toks": 4})]]
    assert harness.answer_once([], generate) == [] and len(seen) == 1


def test_humaneval_and_humaneval_plus_share_one_decoding_per_prompt(tiny_dir, tmp_path, monkeypatch):
    from lm_eval.models.huggingface import HFLM

    sizes = []
    real = HFLM.generate_until

    def counting(self, requests, disable_tqdm=False):
        sizes.append(len(requests))
        return real(self, requests, disable_tqdm)

    monkeypatch.setattr(HFLM, "generate_until", counting)
    out = tmp_path / "he"
    evaluate(tiny_dir, out, tasks=["cpqs_humaneval_instruct", "cpqs_humaneval_plus_instruct"], limit=2, use_cache=False)
    assert sizes == [2], f"requests per generate_until call: {sizes}"
    rows = read_jsonl(out / "items.jsonl")
    preds = {
        t: [r["prediction"] for r in rows if r["task"] == t]
        for t in ("cpqs_humaneval_instruct", "cpqs_humaneval_plus_instruct")
    }
    assert preds["cpqs_humaneval_instruct"] == preds["cpqs_humaneval_plus_instruct"]
    assert len(preds["cpqs_humaneval_instruct"]) == 2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_attached_adapter_runs_in_the_base_models_dtype_and_leaves_the_base_clean(tiny_dir, tmp_path, dtype):
    """LoRA weights follow a bf16 base (training's autocast computes them in bf16; fp32 LoRA made adapter evaluations
    1.7x slower); an fp32 base keeps them fp32. On exit the base model is the base model again."""
    from transformers import AutoModelForCausalLM

    adapter = _save_lora(tiny_dir, tmp_path / "lora", active=True)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=dtype).eval()
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        with harness.Attached(base, str(adapter)) as model:
            lora = {p.dtype for n, p in model.named_parameters() if "lora_" in n}
            attached = model(input_ids=ids).logits
        after = base(input_ids=ids).logits
    assert lora == {dtype}
    assert not torch.equal(attached, before)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_request_cache_keys_on_the_harness_code(monkeypatch):
    """The request cache sits outside the run dir: a harness change must not be answered from the old code's cache."""
    from cpqs_bench import code_version as cv

    settings = config("m").evaluate
    before = harness.cache_path("m", "r", "a", settings, True)
    assert harness.cache_path("m", "r", "a", settings, True) == before
    real = cv.code_version
    monkeypatch.setattr(cv, "code_version", lambda entries, files=(): {**real(entries, files), "edited": True})
    assert harness.cache_path("m", "r", "a", settings, True) != before
