"""A finished-looking ``reproduce`` run directory, built in milliseconds: what ``publish`` and the page read.

Evaluation directories hold real-format manifests (arm, seed, recipe hash, arm_info, provenance), per-item results
with deterministic, arm-dependent scores, and ``metrics.json`` equal to the item means; the leaderboard JSON is
computed from them by :func:`cpqs_bench.leaderboard.main`, so the board, the Parquet rows and the page can be
checked against each other.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

TASKS = ("cpqs_gsm8k_chat", "cpqs_humaneval_instruct")
ARMS = ("random", "cpqs", "full", "longest")
SEEDS = (0, 1)
N_ITEMS = 8
RECIPE = "recipe0123456789"


def _score(arm: str, seed: int | None, task: str, doc: int) -> float:
    bias = {"base": 0.15, "random": 0.35, "cpqs": 0.6, "full": 0.5, "longest": 0.25}.get(arm, 0.3)
    u = (zlib.crc32(f"{arm}/{seed}/{task}/{doc}".encode()) % 1000) / 1000
    return 1.0 if u < bias else 0.0


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, sort_keys=True))


def make_run(
    root: Path,
    experiment: str = "exp",
    arms=ARMS,
    seeds=SEEDS,
    tasks=TASKS,
    n_items: int = N_ITEMS,
    budget_k: int = 4,
    contamination: dict | None = None,
    validity: dict | None = None,
) -> Path:
    """``contamination`` / ``validity``: optional leaderboard blocks (see :func:`cpqs_bench.leaderboard.main`)."""
    from cpqs_bench import leaderboard

    run = root / "runs" / experiment
    evals, adapters, selections = [], {}, {}
    jobs = [("base", None)] + [(a, s) for a in arms for s in seeds]
    for arm, seed in jobs:
        key = arm if seed is None else f"{arm}-s{seed}"
        ev = run / "evaluate" / key
        items = [
            {
                "task": t,
                "doc_id": d,
                "item_id": f"{t}/{d}",
                "prediction": f"answer {d}",
                "extracted": str(d),
                "correct": _score(arm, seed, t, d),
            }
            for t in tasks
            for d in range(n_items)
        ]
        ev.mkdir(parents=True)
        (ev / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
        metrics = {t: sum(r["correct"] for r in items if r["task"] == t) / n_items for t in tasks}
        _write(ev / "metrics.json", metrics)
        info = (
            {}
            if arm == "base"
            else {
                "kept": budget_k if arm != "full" else 16,
                "total": 16,
                "budget_k": budget_k if arm != "full" else 16,
                "selector": None if arm == "full" else arm,
            }
        )
        _write(
            ev / "manifest.json",
            {
                "stage": "evaluate",
                "arm": arm,
                "seed": seed,
                "recipe_hash": None if arm == "base" else RECIPE,
                "config_hash": "cfg0123",
                "model_id": "tiny/model",
                "seeds": list(seeds),
                "arm_info": info,
                "data_sha256": {"pool": "ab" * 32},
                "n_items": {t: n_items for t in tasks},
                "tasks": {t: {"task": t, "metric": "exact_match" if "gsm8k" in t else "pass@1"} for t in tasks},
                "git": {"sha": "c0ffee" * 6 + "abcd", "dirty": False},
                "packages": {"torch": "2.0", "transformers": "5.0", "peft": "0.1", "trl": "1.0", "lm-eval": "0.4"},
                "hardware": {"cpu": "test", "cpus": 2},
            },
        )
        (ev / "DONE").write_text("done\n")
        evals.append(str(ev))
        if arm != "base":
            ad = run / "finetune" / key / "adapter"
            ad.mkdir(parents=True)
            _write(ad / "adapter_config.json", {"r": 4, "lora_alpha": 8})
            (ad / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 4)
            _write(ad / "manifest.json", {"selector": arm, "seed": seed, "pool": "alpaca_gpt4", "recipe_hash": RECIPE})
            adapters[key] = str(ad)
            sel = run / "select" / arm / "selection.jsonl"
            if not sel.exists():
                sel.parent.mkdir(parents=True, exist_ok=True)
                sel.write_text(
                    "".join(json.dumps({"id": f"ex{i}", "kept": i < budget_k, "rank": i + 1}) + "\n" for i in range(16))
                )
            selections[arm] = str(sel)
    board = leaderboard.main(
        evals,
        run / "leaderboards",
        experiment,
        "Test run on a fake model: not a result.",
        stats=leaderboard.StatsOptions(n_boot=200, seed=0),
        blocks=leaderboard.BoardBlocks(contamination=contamination, validity=validity),
    )
    _write(
        run / "index.json",
        {
            "experiment": experiment,
            "evaluations": evals,
            "adapters": adapters,
            "selections": selections,
            "leaderboard": {k: str(v) for k, v in board.items()},
        },
    )
    return run
