"""Task fidelity (#12 item 4): our HumanEval instruct task and lm-eval's own ``humaneval_instruct`` build the same
program from the same model output.

lm-eval's task logic is taken from the installed lm-eval itself: its YAMLs (``humaneval.yaml``,
``humaneval_instruct.yaml``), its stop handling (``handle_stop_sequences`` + ``postprocess_generated_text``, what
``HFLM.generate_until`` applies) and its program builder ``build_predictions_instruct`` (read from its ``utils.py``
without executing the module, whose import loads ``code_eval`` from the Hub). Greedy decoding is deterministic, so a
stop sequence only truncates the one output the model would write: each case below is that untruncated output.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CPQS_DATA_MIRROR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

import lm_eval  # noqa: E402
from lm_eval.models.utils import handle_stop_sequences, postprocess_generated_text  # noqa: E402

from cpqs_bench.evaluate import harness, tasks_utils  # noqa: E402

LM_EVAL_HUMANEVAL = Path(lm_eval.__file__).parent / "tasks" / "humaneval"
EOS = "<|im_end|>"  # the tiny ChatML / SmolLM2 end of turn, which HFLM appends to every task's stops


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def lm_eval_config(name: str) -> dict:
    cfg = yaml.load((LM_EVAL_HUMANEVAL / f"{name}.yaml").read_text(), Loader=_Loader)
    if "include" in cfg:
        cfg = {**lm_eval_config(Path(cfg.pop("include")).stem), **cfg}
    return cfg


def lm_eval_builder():
    """``build_predictions_instruct`` from lm-eval's humaneval utils.py, compiled on its own."""
    tree = ast.parse((LM_EVAL_HUMANEVAL / "utils.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_predictions_instruct")
    namespace: dict = {}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "lm_eval/tasks/humaneval/utils.py", "exec"), namespace)
    return namespace["build_predictions_instruct"]


def test_prompt_stops_and_budget_match_lm_evals_humaneval_instruct():
    theirs = lm_eval_config("humaneval_instruct")
    ours = harness.task_info("cpqs_humaneval_instruct")
    task = harness.built_task("cpqs_humaneval_instruct", harness.resolve_tasks(["cpqs_humaneval_instruct"])[1])
    assert task.config.doc_to_text == theirs["doc_to_text"] and task.config.gen_prefix == theirs["gen_prefix"]
    their_gen, our_gen = theirs["generation_kwargs"], ours["generation_kwargs"]
    assert our_gen["max_gen_toks"] == their_gen["max_gen_toks"] == 1024
    assert our_gen["do_sample"] is their_gen["do_sample"] is False
    assert our_gen["until"][: len(their_gen["until"])] == their_gen["until"]
    extra = set(our_gen["until"]) - set(their_gen["until"])
    # the documented differences (tasks/cpqs_humaneval_instruct.yaml): the fence and end-of-turn strings only
    assert extra == {"```", "<|im_end|>", "<|eot_id|>", "<|end_of_turn|>", "</s>", "<|endoftext|>"}
    assert (
        harness.task_info("cpqs_humaneval")["generation_kwargs"]["until"]
        == lm_eval_config("humaneval")["generation_kwargs"]["until"]
    )


def _cases() -> list[tuple[str, str]]:
    probs = tasks_utils.problems(False)
    sol = {t: probs[t].canonical_solution for t in ("HumanEval/0", "HumanEval/2", "HumanEval/12")}
    return [
        ("HumanEval/0", sol["HumanEval/0"] + "```\n\nThis function compares every pair.\n```python\nprint(1)\n```"),
        ("HumanEval/0", sol["HumanEval/0"] + "\n\ndef helper():\n    return 1\n```"),
        ("HumanEval/2", sol["HumanEval/2"] + "\nif __name__ == '__main__':\n    print(truncate_number(3.5))\n```"),
        ("HumanEval/2", sol["HumanEval/2"] + "\n# tests\nassert truncate_number(3.5) == 0.5\n"),
        ("HumanEval/12", sol["HumanEval/12"] + "\nprint(longest([]))"),
        ("HumanEval/12", sol["HumanEval/12"] + "\nclass Extra:\n    pass\n"),
        ("HumanEval/12", sol["HumanEval/12"] + EOS + "\nuser: thanks\n```"),
        ("HumanEval/0", "    for i in range(len(numbers)):\n        if True:\n            return True\n"),  # no stop
        ("HumanEval/0", "```"),  # an empty body
    ]


@pytest.mark.parametrize("k", range(len(_cases())))
def test_same_output_gives_the_same_program_as_lm_eval(k):
    task_id, output = _cases()[k]
    probs = tasks_utils.problems(False)
    doc = {"task_id": task_id, "prompt": probs[task_id].prompt, "entry_point": probs[task_id].entry_point}
    their_until = handle_stop_sequences(list(lm_eval_config("humaneval_instruct")["generation_kwargs"]["until"]), EOS)
    our_until = handle_stop_sequences(
        list(harness.task_info("cpqs_humaneval_instruct")["generation_kwargs"]["until"]), EOS
    )
    theirs = lm_eval_builder()([[postprocess_generated_text(output, their_until, None)]], [doc])[0][0]
    ours = tasks_utils.instruct_program(postprocess_generated_text(output, our_until, None), doc)
    assert ours == theirs


def test_our_judge_executes_that_program(tmp_path):
    """The scorer runs exactly the builder's program (canonical body + junk after the fence passes)."""
    tasks_utils.configure(tasks_utils.ExecSettings(workers=1, cache_dir=str(tmp_path)))
    task_id, output = _cases()[0]
    probs = tasks_utils.problems(False)
    doc = {"task_id": task_id, "prompt": probs[task_id].prompt, "entry_point": probs[task_id].entry_point}
    until = handle_stop_sequences(list(harness.task_info("cpqs_humaneval_instruct")["generation_kwargs"]["until"]), EOS)
    (judged,) = tasks_utils.humaneval_instruct_judge([[postprocess_generated_text(output, until, None)]], [doc])
    assert judged[0]["extracted"] == lm_eval_builder()([[output.split("```")[0]]], [doc])[0][0]
    assert judged[0]["correct"] is True
