"""LESS on tiny random models: gradients vs autograd, the Adam direction from a saved optimizer state, the seeded
projection, checkpoint aggregation + mean-then-max on a hand-computed fixture, the warm-up's kept optimizer states,
the query-set rules and the selector contract."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from cpqs_bench import tiny
from cpqs_bench.finetune import less_warmup
from cpqs_bench.selectors import less
from cpqs_bench.selectors.base import ScoringContext
from cpqs_bench.testing import check_selector, contract_config, contract_examples, tiny_loader

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parent.parent


def lora_model(r: int = 4):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny.model("chatml", hidden_size=32)
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=8, target_modules=less_warmup.TARGET_MODULES))
    for n, p in peft_model.named_parameters():  # non-zero B so that every LoRA weight gets a gradient
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    return peft_model.eval(), tok


def test_example_gradient_equals_autograd():
    model, tok = lora_model()
    cfg = contract_config()
    ex = contract_examples()[0]
    row = less._rows([ex], tok, cfg, 96)[ex.id]
    params = less.trainable(model)
    assert params and all("lora_" in n for n, _ in params)
    got = less.example_gradient(model, params, row)

    ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
    logits = model(input_ids=ids).logits[0, :-1].float()
    target = labels[0, 1:]
    keep = target != -100
    loss = torch.nn.functional.cross_entropy(logits[keep], target[keep])  # mean over supervised tokens
    want = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, [p for _, p in params])])
    assert got.shape == want.shape and got.abs().sum() > 0
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for _, p in params)  # gradients are cleared again


def test_adam_direction_is_the_reference_formula_by_hand():
    g, m, v = torch.tensor([0.5, -2.0, 0.0]), torch.tensor([0.1, 0.2, -0.3]), torch.tensor([0.04, 0.01, 0.0])
    got = less.adam_direction(g, m, v)
    for i in range(3):
        mm = 0.9 * float(m[i]) + 0.1 * float(g[i])
        vv = 0.999 * float(v[i]) + 0.001 * float(g[i]) ** 2
        assert float(got[i]) == pytest.approx(mm / math.sqrt(vv + 1e-8), rel=1e-6)
    # element 0 by hand: m' = 0.09 + 0.05 = 0.14, v' = 0.03996 + 0.00025 = 0.04021 -> 0.14 / sqrt(0.04021 + 1e-8)
    assert float(got[0]) == pytest.approx(0.14 / math.sqrt(0.04021 + 1e-8), rel=1e-6)
    assert float(got[2]) == pytest.approx(-0.27 / math.sqrt(1e-8), rel=1e-6)  # eps inside the root, no bias fix


def test_optimizer_moments_from_a_saved_state_follow_the_names(tmp_path):
    from cpqs_bench.finetune.sft import OPTIMIZER_PARAMS

    torch.manual_seed(0)
    a, b, c = (torch.nn.Parameter(torch.randn(s)) for s in [(2, 3), (4,), (3,)])
    # two param groups, as the Trainer builds them (decay / no decay): torch numbers params 0.. across groups
    opt = torch.optim.AdamW([{"params": [b, c], "weight_decay": 0.1}, {"params": [a], "weight_decay": 0.0}], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        (a.sum() ** 2 + (b * b).sum() + c.prod()).backward()
        opt.step()
    torch.save(opt.state_dict(), tmp_path / "optimizer.pt")
    (tmp_path / OPTIMIZER_PARAMS).write_text(json.dumps([["b", "c"], ["a"]]))
    m, v = less.optimizer_moments(tmp_path, ["a", "b", "c"])
    st = opt.state
    assert torch.equal(m, torch.cat([st[a]["exp_avg"].reshape(-1), st[b]["exp_avg"], st[c]["exp_avg"]]))
    assert torch.equal(v, torch.cat([st[a]["exp_avg_sq"].reshape(-1), st[b]["exp_avg_sq"], st[c]["exp_avg_sq"]]))
    with pytest.raises(KeyError, match="'d'"):
        less.optimizer_moments(tmp_path, ["a", "d"])


def test_projection_is_seeded_rademacher_and_deterministic(monkeypatch):
    grads = torch.randn(5, 40, generator=torch.Generator().manual_seed(3))
    proj = less.RademacherProjector(40, 300)  # 3 blocks of 128 (the last one partial)
    a, b = proj.project(grads), less.RademacherProjector(40, 300).project(grads)
    assert a.shape == (5, 300) and torch.equal(a, b)
    assert not torch.equal(a, less.RademacherProjector(40, 300, seed=1).project(grads))
    matrix = proj.project(torch.eye(40))  # the projection matrix itself
    assert set(matrix.unique().tolist()) == {-1.0, 1.0}
    gen = torch.Generator().manual_seed(0 + 1000 * 1)  # block 1 = trak's seed schedule: seed + 1000 * block
    block1 = torch.empty(40, 128).bernoulli_(0.5, generator=gen) * 2 - 1
    assert torch.equal(matrix[:, 128:256], block1)
    # a block too large for memory is drawn in row chunks: still seeded, deterministic and +-1
    monkeypatch.setattr(less, "MAX_BLOCK_ELEMENTS", 128 * 16)
    chunked = less.RademacherProjector(40, 300).project(torch.eye(40))
    assert torch.equal(chunked, less.RademacherProjector(40, 300).project(torch.eye(40)))
    assert set(chunked.unique().tolist()) == {-1.0, 1.0}


def test_checkpoint_aggregation_and_mean_then_max_by_hand():
    # two checkpoints (lr 3e-5, 1e-5 -> weights 0.75, 0.25), two training rows, three queries: task A = q0, q1; B = q2
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    train = [torch.tensor([e1, e2]), torch.tensor([e2, e1])]
    queries = [torch.tensor([e1, e2, e2]), torch.tensor([e1, e1, e2])]
    weights = less.checkpoint_weights([3e-5, 1e-5])
    assert weights == pytest.approx([0.75, 0.25])
    scores, per_task = less.influence(train, queries, weights, ["A", "A", "B"])
    # ckpt 1 dots: row0 = [1, 0, 0], row1 = [0, 1, 1]; ckpt 2: row0 = [0, 0, 1], row1 = [1, 1, 0]
    # weighted sum: row0 = [0.75, 0, 0.25], row1 = [0.25, 1.0, 0.75]
    # task means: row0 A = 0.375, B = 0.25 -> 0.375; row1 A = 0.625, B = 0.75 -> 0.75
    assert per_task["A"] == pytest.approx([0.375, 0.625]) and per_task["B"] == pytest.approx([0.25, 0.75])
    assert scores == pytest.approx([0.375, 0.75])
    with pytest.raises(ValueError, match="positive learning rate"):
        less.checkpoint_weights([None, 1e-5])


@pytest.fixture(scope="module")
def queries_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("q") / "queries.jsonl"
    rows = [
        {"instruction": "What is 3 times 4?", "output": "3 times 4 is 12. #### 12"},
        {"instruction": "Write a function that doubles x.", "output": "def double(x):\n    return 2 * x"},
        {"instruction": "Name a colour of the sky.", "output": "Blue."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def less_config(queries: Path, **extra):
    values = {
        "selectors.less.queries": str(queries),
        "selectors.less.lora_r": 4,
        "selectors.less.lora_alpha": 16,
        "selectors.less.lr": 1e-3,
        "selectors.less.warmup_fraction": 0.5,
        "selectors.less.warmup_epochs": 2,
        "selectors.less.projection_dim": 64,
        "selectors.less.max_length": 96,
        "finetune.precision": "fp32",
        "finetune.micro_batch_size": 4,
        **extra,
    }
    return contract_config(**values)


def test_warmup_keeps_every_epoch_adapter_and_optimizer_state(tmp_path, queries_file):
    os.environ.setdefault("WANDB_MODE", "disabled")
    cfg = less_config(queries_file)
    load = tiny_loader()
    pool = contract_examples()
    rec = less_warmup.warmup(cfg, pool, tmp_path / "w", seed=0, loader=load)
    assert rec["n_warmup"] == 4  # half of the 8 non-empty examples
    assert [c["epoch"] for c in rec["checkpoints"]] == pytest.approx([1.0, 2.0])
    assert json.loads((tmp_path / "w" / less.WARMUP_RECORD).read_text()) == json.loads(json.dumps(rec))
    model, _, _ = load("x", None, "float32")
    for c in rec["checkpoints"]:
        path = tmp_path / "w" / c["path"]
        assert (path / "adapter_model.safetensors").is_file() and (path / "optimizer.pt").is_file()
        peft_model, flags = less._attach(model, path)
        try:
            names = [n for n, _ in less.trainable(peft_model)]
        finally:
            less._detach(peft_model, flags)
        m, v = less.optimizer_moments(path, names)
        assert m.abs().sum() > 0 and (v >= 0).all() and v.sum() > 0
    assert not any("lora" in n for n, _ in model.named_parameters())  # the shared base is clean again
    # a rerun returns the finished warm-up as is (the same checkpoints, no retraining)
    stamp = (tmp_path / "w" / "adapter" / "training.json").stat().st_mtime_ns
    assert less_warmup.warmup(cfg, pool, tmp_path / "w", seed=0, loader=load)["checkpoints"] == rec["checkpoints"]
    assert (tmp_path / "w" / "adapter" / "training.json").stat().st_mtime_ns == stamp
    # the draw does not depend on the pool's order
    assert less_warmup.warmup_subset(pool, 0.5, 0) == less_warmup.warmup_subset(list(reversed(pool)), 0.5, 0)
    # the selector reads the optimizer's parameter names under the name the fine-tuning code writes them
    from cpqs_bench.finetune.sft import OPTIMIZER_PARAMS

    assert less.OPTIMIZER_PARAMS == OPTIMIZER_PARAMS


def test_query_set_rules(tmp_path, queries_file):
    with pytest.raises(ValueError, match="selectors.less.queries is not set"):
        less.read_queries(contract_config())
    with pytest.raises(ValueError, match="test split"):
        less.read_queries(less_config("gsm8k"))
    qs, tasks = less.read_queries(less_config(queries_file))
    assert len(qs) == 3 and tasks == [str(queries_file)] * 3
    # rds's rule: comma-separated sources are tasks, query_limit per source
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi."}) + "\n")
    cfg = less_config(f"{queries_file},{other}", **{"selectors.less.query_limit": 2})
    qs, tasks = less.read_queries(cfg)
    assert tasks == [str(queries_file)] * 2 + [str(other)]


def test_less_passes_the_contract(tmp_path, queries_file):
    os.environ.setdefault("WANDB_MODE", "disabled")
    cfg = less_config(queries_file)
    # the warm-up is a step of its own (finetune layer); its folder is the selector's checkpoint
    less_warmup.warmup(cfg, contract_examples(), tmp_path / "warm", seed=cfg.selectors.less.seed, loader=tiny_loader())
    report = check_selector(less.LESSSelector(), config=cfg, checkpoint=tmp_path / "warm", workdir=tmp_path)
    assert "order invariance" in report.passed
    assert less.LESSSelector.target_aware is True
    with pytest.raises(ValueError, match="needs its warm-up folder"):
        less.LESSSelector().score(contract_examples(), ScoringContext(cfg, tmp_path / "none", loader=tiny_loader()))


def test_a_test_split_no_evaluation_task_reads_may_be_a_query_set(mirror):
    """MBPP+ (its only split is "test") under HumanEval tasks is a code dev set; GSM8K test under a GSM8K task is not."""
    code = less_config("mbpp_plus", **{"evaluate.tasks": ("cpqs_humaneval_instruct",), "selectors.less.query_limit": 3})
    qs, tasks = less.read_queries(code)
    assert len(qs) == 3 and tasks == ["mbpp_plus"] * 3
    with pytest.raises(ValueError, match="'cpqs_gsm8k_chat' reads"):
        less.read_queries(less_config("gsm8k", **{"evaluate.tasks": ("cpqs_gsm8k_chat",)}))
