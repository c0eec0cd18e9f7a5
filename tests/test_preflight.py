"""``reproduce --preflight``: every preset in configs/ passes offline (mirror + tiny stand-ins); a preset that would
fail after fine-tuning is refused up front with one line naming the cause."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from cpqs_bench import tiny
from cpqs_bench.config import load_config, replace

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "cpqs_bench" / "configs").glob("*.yaml"))


@pytest.fixture()
def offline_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)


def fixture_mirror(tmp: Path, shared: Path) -> Path:
    """The shared mirror plus small fixtures of the same shape for the Hub sets it lacks (the official CPQS data,
    OpenR1-Math), so every preset's preflight runs offline."""
    import gzip
    import json

    root = tmp / "mirror"
    root.mkdir()
    for entry in shared.iterdir():
        (root / entry.name).symlink_to(entry)
    cpqs = root / "cpqs_data"
    cpqs.mkdir()
    pos = [
        {"instruction": f"Explain idea number {i} of physics", "input": "", "output": "A careful answer. " * 4}
        for i in range(24)
    ]
    for name, rows in (
        ("alpaca_gpt4_data.json", pos),
        ("alpaca_gpt4_data_llama.json", [{**r, "模型输出": "idk"} for r in pos]),
        ("alpaca_gpt4_data_qwen251.json", [{**r, "模型输出": "no"} for r in pos]),
    ):
        (cpqs / name).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (root / "reasoning").mkdir()
    with gzip.open(root / "reasoning" / "openr1_math.jsonl.gz", "wt", encoding="utf-8") as fh:
        for i in range(40):
            fh.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": f"What is {i} + {i}?"},
                            {"role": "assistant", "content": f"<think>\n{i} plus {i} is {2 * i}.\n</think>\n\n{2 * i}"},
                        ]
                    }
                )
                + "\n"
            )
    return root


@pytest.mark.parametrize("preset", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_preset_passes_its_offline_preflight(preset, mirror, offline_env, tmp_path, monkeypatch):
    from cpqs_bench.preflight import preflight

    monkeypatch.setenv("CPQS_DATA_MIRROR", str(fixture_mirror(tmp_path, Path(mirror))))
    lines: list[str] = []
    rep = preflight(load_config(str(preset)), preset=str(preset), log=lines.append)
    text = "\n".join(lines)
    assert rep.ok, text
    assert "preflight: PASSED" in text and "scratch run" in text
    assert any(c.area == "scratch run" and c.status == "OK" for c in rep.checks), text
    assert not list(Path(".").glob("runs*")), "the scratch run must not write outside its temporary folder"
    cfg = load_config(str(preset))
    work = {c.item: c.detail for c in rep.checks if c.area == "work"}
    for name in {n.partition("+")[0] for n in cfg.selectors.names} & set(NEW_SELECTORS):  # their own cost lines
        assert name in work, text
    if "reward" in cfg.selectors.names:
        assert cfg.selectors.reward.model in work["reward"]
    if "deita" in cfg.selectors.names:
        assert cfg.selectors.deita.complexity_model in work["deita"]
        assert cfg.selectors.deita.quality_model in work["deita"]


def _base_model_dir(tmp_path: Path) -> Path:
    """A tiny Llama-family *base* model: BOS added, no chat template (as meta-llama/Llama-2-7b-hf)."""
    d = tmp_path / "llama-base"
    m, tok = tiny.model("llama2")
    tok.chat_template = None
    m.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_chat_tasks_on_a_model_without_template_are_refused_before_any_stage(mirror, offline_env, tmp_path):
    from cpqs_bench.preflight import preflight

    model = _base_model_dir(tmp_path)
    cfg = replace(
        load_config("smoke"),
        **{
            "model.id": str(model),
            "prompt.template": "chat",
            "selectors.proxy_model": str(model),
            "selectors.cpqs.generator": str(model),
        },
    )
    lines: list[str] = []
    rep = preflight(cfg, log=lines.append)
    assert not rep.ok
    (problem,) = [c for c in rep.problems if c.item == "prompt template vs tasks"]
    assert "no chat template" in problem.detail and "prompt.template" in problem.detail
    assert not any(c.area == "scratch run" and c.status == "OK" for c in rep.checks)  # nothing ran


def test_the_alpaca_template_on_a_base_model_is_evaluated_with_that_template(mirror, offline_env, tmp_path):
    from cpqs_bench.preflight import preflight

    model = _base_model_dir(tmp_path)
    cfg = replace(
        load_config("smoke"),
        **{
            "model.id": str(model),
            "prompt.template": "alpaca",
            "selectors.proxy_model": str(model),
            "selectors.cpqs.generator": str(model),
        },
    )
    lines: list[str] = []
    rep = preflight(cfg, log=lines.append)
    assert rep.ok, "\n".join(lines)
    (tpl,) = [c for c in rep.checks if c.item == "prompt template vs tasks"]
    assert "'alpaca' template set as the chat template" in tpl.detail


def test_problems_exit_non_zero_from_the_cli(mirror, offline_env, tmp_path):
    from cpqs_bench.cli import main

    model = _base_model_dir(tmp_path)
    assert (
        main(
            [
                "reproduce",
                "--config",
                "smoke",
                f"model.id={model}",
                "prompt.template=chat",
                f"selectors.proxy_model={model}",
                f"selectors.cpqs.generator={model}",
                "--preflight",
            ]
        )
        == 1
    )


def _work_line(cfg):
    from types import SimpleNamespace

    from cpqs_bench import preflight

    rep = preflight.Report()
    pool = [SimpleNamespace(id=str(i)) for i in range(200)]
    preflight.estimate_work(cfg, pool, {"params_b": 0.1}, "cpu", rep)
    return next(c.detail for c in rep.checks if c.item == "fine-tuning"), rep


def test_the_fine_tuning_estimate_counts_the_mods_seed_model_only_when_the_pipeline_builds_it(monkeypatch):
    from cpqs_bench import preflight

    monkeypatch.setattr(preflight, "_mean_tokens", lambda pool, tok: 100.0)
    base = load_config("smoke")
    plain = replace(base, **{"selectors.names": ("random",), "selectors.budget": 20, "data.pool_limit": 0})
    with_mods = replace(plain, **{"selectors.names": ("random", "mods"), "selectors.mods.seed_count": 30})
    given = replace(with_mods, **{"selectors.mods.seed_model": "some/seed-model"})
    line, _ = _work_line(plain)
    assert "MoDS" not in line
    line, _ = _work_line(with_mods)
    epochs = with_mods.finetune.epochs
    assert f"MoDS seed model (≤ {30 * 100 * epochs / 1e3:.0f}k tokens)" in line
    assert f"random {20 * 100 * epochs / 1e3:.0f}k" in line  # a whole-number budget is a count, not a fraction
    assert "MoDS" not in _work_line(given)[0]


NEW_SELECTORS = ("rds", "reward", "less", "deita")


def test_the_new_selectors_cost_lines_name_their_models_and_charge_their_passes(monkeypatch):
    from cpqs_bench import preflight

    monkeypatch.setattr(preflight, "_mean_tokens", lambda pool, tok: 100.0)
    cfg = replace(
        load_config("paper_gsm8k"),
        **{"data.pool_limit": 0, "selectors.less.query_limit": 50, "selectors.rds.query_limit": 20},
    )
    rep = preflight.Report()
    pool = [SimpleNamespace(id=str(i)) for i in range(1000)]
    work = preflight.estimate_work(cfg, pool, {"params_b": 7.0}, "cuda", rep)
    lines = {c.item: c.detail for c in rep.checks if c.area == "work"}
    assert set(NEW_SELECTORS) <= set(lines), lines
    assert (
        "Qwen/Qwen2.5-7B-Instruct" in lines["rds"]
        and "1000 pool examples + ≤ 20 queries (0.10M tokens)" in lines["rds"]
    )
    assert "OpenAssistant/reward-model-deberta-v3-large-v2 (~0.435B)" in lines["reward"]
    lc = cfg.selectors.less
    n_warm = round(lc.warmup_fraction * 1000)  # 50 examples × 4 epochs × 100 tokens
    assert (
        f"on {n_warm} examples" in lines["less"]
        and f"= {n_warm * lc.warmup_epochs * 100 / 1e6:.2f}M trained" in lines["less"]
    )
    grads = lc.warmup_epochs * (1000 + 50)  # a forward + backward per example and query at every checkpoint
    assert f"= {grads * 100 / 1e6:.2f}M tokens, one example per pass" in lines["less"]
    assert f"{grads * lc.projection_dim * 4 / 1e9:.2f} GB on disk" in lines["less"]
    assert "hkust-nlp/deita-complexity-scorer (~13.0B)" in lines["deita"] and "deita-quality-scorer" in lines["deita"]
    # each is charged once, on its own line, not also as a target-model pass in the scoring line
    for name in NEW_SELECTORS:
        assert any(k.startswith(name) for k in work["seconds"]), work["seconds"]
    plain = replace(cfg, **{"selectors.names": tuple(n for n in cfg.selectors.names if n not in NEW_SELECTORS)})
    rep2 = preflight.Report()
    preflight.estimate_work(plain, pool, {"params_b": 7.0}, "cuda", rep2)
    score_line = next(c.detail for c in rep2.checks if c.item == "scoring")
    # ifd 2, alpagasus 1, mods 1, cpqs 1 forward passes of the target (superfiltering: the small proxy, random: none)
    assert score_line.startswith(f"{5 * 1000 * 100 / 1e6:.2f}M tokens")
    assert next(c.detail for c in rep.checks if c.item == "scoring") == score_line


@pytest.mark.parametrize("preset", ["paper_gsm8k", "paper_code", "paper_general"])
def test_the_paper_presets_query_sets_are_disjoint_from_pool_and_evaluation(preset, mirror, offline_env, monkeypatch):
    """The preset's own query choice passes the preflight's overlap check; the same preset with a query set that
    overlaps the pool (paper_gsm8k without its offset) or the pairwise-judge prompts (paper_general with every
    AlpacaEval subset) is refused."""
    from cpqs_bench.data.pool import read_pool
    from cpqs_bench.preflight import OK, PROBLEM, check_query_sets

    monkeypatch.setenv("CPQS_DATA_MIRROR", str(mirror))
    cfg = load_config(preset)
    names = [n for n in cfg.selectors.names if n in ("rds", "less")]
    assert "rds" in names and ("less" in names) == (preset != "paper_general")
    pool = read_pool(cfg.data.pool, mirror=None, limit=cfg.data.pool_limit).examples
    status, detail = check_query_sets(cfg, names, pool)
    assert status == OK, detail
    assert "none in the evaluation items" in detail
    if preset == "paper_gsm8k":
        assert "rows from 5973" in detail
        bad = replace(cfg, **{"selectors.rds.query_offset": 0})
        status, detail = check_query_sets(bad, names, pool)
        assert status == PROBLEM and "overlaps the pool" in detail and "pool examples" in detail
    if preset == "paper_general":
        assert "pairwise prompts" in detail
        bad = replace(cfg, **{"selectors.rds.query_tasks": ()})
        status, detail = check_query_sets(bad, names, pool)
        assert status == PROBLEM and "pairwise-judge prompts" in detail
