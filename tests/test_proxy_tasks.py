"""The continuous proxy tasks: the same prompt as their generative twin, one loglikelihood per item, values that
equal a direct computation of −log p(reference | context) per byte."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from cpqs_bench import tiny
from cpqs_bench.evaluate import proxy_metrics

TASKS = Path(__file__).resolve().parent.parent / "cpqs_bench" / "tasks"


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _yaml(name: str) -> dict:
    return yaml.load((TASKS / f"{name}.yaml").read_text(), Loader=_Loader)


@pytest.mark.parametrize(
    "proxy,twin,keys",
    [
        ("cpqs_gsm8k_chat_nll", "cpqs_gsm8k_chat", ("doc_to_text",)),
        ("cpqs_humaneval_instruct_nll", "cpqs_humaneval_instruct", ("doc_to_text", "gen_prefix")),
    ],
)
def test_proxy_uses_the_generative_prompt(proxy, twin, keys):
    p, t = _yaml(proxy), _yaml(twin)
    for k in keys:
        assert p[k] == t[k], k
    assert p["output_type"] == "loglikelihood" and p["metadata"]["proxy"] is True
    assert all(m["higher_is_better"] is False for m in p["metric_list"])


def test_per_byte_normalisation():
    doc = {"answer": "ab #### 2"}
    out = proxy_metrics.gsm8k_nll_results(doc, [(-9.0, False)])
    assert out["nll_per_byte"] == pytest.approx(1.0)
    assert out["bits_per_byte"] == pytest.approx(1.0 / math.log(2))
    assert proxy_metrics.humaneval_reference({"canonical_solution": "    return 1\n"}) == "    return 1\n```"


def test_lm_eval_scores_the_proxy_task_on_a_tiny_model(mirror):
    """Through lm-eval itself: the per-item value is −loglik / bytes of the gold answer, recomputed by hand."""
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    model, tok = tiny.model("chatml")
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=2, device="cpu")
    res = simple_evaluate(
        model=lm,
        tasks=["cpqs_gsm8k_chat_nll"],
        limit=2,
        apply_chat_template=True,
        task_manager=TaskManager(include_path=str(TASKS)),
        log_samples=True,
    )
    samples = res["samples"]["cpqs_gsm8k_chat_nll"]
    assert len(samples) == 2
    s = samples[0]
    context, target = (
        s["arguments"][0] if isinstance(s["arguments"][0], (list, tuple)) else s["arguments"]["gen_args_0"].values()
    )
    # lm-eval's own split (context + continuation tokenized together; trailing context whitespace, here the newline
    # after the assistant header, moves to the continuation), recomputed by hand from the model's logits
    ctx_ids, tgt_ids = lm._encode_pair(context, target)
    ids = torch.tensor([ctx_ids + tgt_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits.float(), -1)
    ll = sum(logp[0, len(ctx_ids) + i - 1, t].item() for i, t in enumerate(tgt_ids))
    assert s["nll_per_byte"] == pytest.approx(-ll / len(s["doc"]["answer"].encode()), rel=1e-3)
    assert "Problem:" in context and target == s["doc"]["answer"]


def test_task_limits_give_the_proxy_more_items_than_the_generative_task(mirror, tmp_path):
    """evaluate.task_limits: the cheap loglikelihood proxy on more items than the generative task, in one call."""
    import json

    from cpqs_bench.config import Config, replace
    from cpqs_bench.evaluate.harness import evaluate_model

    model, tok = tiny.model("chatml")
    d = tmp_path / "m"
    model.save_pretrained(d)
    tok.save_pretrained(d)
    cfg = replace(
        Config(),
        **{
            "model.id": str(d),
            "model.device": "cpu",
            "evaluate.dtype": "float32",
            "evaluate.tasks": ["cpqs_gsm8k_chat", "cpqs_gsm8k_chat_nll"],
            "evaluate.limit": 1,
            "evaluate.task_limits": {"cpqs_gsm8k_chat_nll": 3},
            "evaluate.max_new_tokens": 4,
            "evaluate.use_cache": False,
        },
    )
    metrics = evaluate_model(cfg, tmp_path / "ev")
    items = [json.loads(line) for line in (tmp_path / "ev" / "items.jsonl").read_text().splitlines()]
    per_task = {t: sum(1 for i in items if i["task"] == t) for t in cfg.evaluate.tasks}
    assert per_task == {"cpqs_gsm8k_chat": 1, "cpqs_gsm8k_chat_nll": 3}
    assert metrics["cpqs_gsm8k_chat_nll"] > 0
