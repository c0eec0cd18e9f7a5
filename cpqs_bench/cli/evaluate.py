"""``cpqs-bench evaluate [--config PRESET] [key=value ...] [--model M] [--adapter A] [--tasks T1,T2] --out DIR``.

Evaluate a model (+ a PEFT adapter) with lm-evaluation-harness. Every flag that mirrors a config key is an alias of
the override (``--tasks a,b`` = ``evaluate.tasks=[a,b]``, ``--model`` = ``model.id=...``); without ``--config`` the
built-in defaults apply. Tasks: the project's ``tasks/`` folder, folders named by ``--include-path`` /
``evaluate.include_path``, and any lm-eval task that runs offline.
"""

from __future__ import annotations

import argparse

from cpqs_bench.cli.common import ALIASES, add_config_arguments, alias, csv, resolve


def flag_alias(p: argparse.ArgumentParser, flag: str, key: str, value: bool, help: str = "") -> None:
    """A switch that is shorthand for ``key=value`` (a boolean config key), registered like :func:`alias`."""
    dest = "alias__" + key.replace(".", "__")
    p.add_argument(
        flag,
        dest=dest,
        action="store_const",
        const=value,
        default=None,
        help=f"{help} (= {key}={'true' if value else 'false'})".strip(),
    )
    table = p.get_default(ALIASES) or {}
    p.set_defaults(**{ALIASES: {**table, dest: key}})


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    alias(p, "--model", "model.id", metavar="MODEL", help="model folder, Hub id[@revision], or 'embedded'")
    alias(p, "--revision", "model.revision", metavar="REV", help="Hub revision of --model")
    alias(p, "--device", "model.device", metavar="DEVICE", help="cpu, cuda, cuda:1, auto")
    p.add_argument("--adapter", default=None, help="PEFT adapter folder (refused if it does not change logits)")
    alias(p, "--tasks", "evaluate.tasks", type=csv, metavar="T1,T2", help="comma-separated task names")
    alias(
        p,
        "--include-path",
        "evaluate.include_path",
        type=csv,
        metavar="DIR[,DIR]",
        help="extra lm-eval task folders (YAMLs)",
    )
    alias(p, "--limit", "evaluate.limit", type=int, metavar="N", help="first N items per task (smoke runs)")
    alias(p, "--backend", "evaluate.backend", metavar="hf|vllm", help="lm-eval backend")
    alias(p, "--batch-size", "evaluate.batch_size", type=int, metavar="N", help="generation batch size")
    alias(
        p,
        "--max-new-tokens",
        "evaluate.max_new_tokens",
        type=int,
        metavar="N",
        help="cap on new tokens for every task (default: each task's own budget)",
    )
    alias(p, "--dtype", "evaluate.dtype", metavar="DTYPE", help="auto, float32, bfloat16, float16")
    flag_alias(p, "--no-chat-template", "evaluate.apply_chat_template", False, "render chat tasks without the template")
    flag_alias(p, "--no-cache", "evaluate.use_cache", False, "do not use lm-eval's request cache")
    alias(p, "--code-workers", "evaluate.code_workers", type=int, metavar="N", help="parallel sandboxed programs")
    alias(p, "--code-timeout", "evaluate.code_timeout_s", type=float, metavar="S", help="seconds per program")
    alias(
        p,
        "--sandbox-min-level",
        "evaluate.sandbox_min_level",
        metavar="namespaces|rlimits",
        help="refuse to run code below this isolation",
    )
    flag_alias(
        p,
        "--allow-weaker-sandbox",
        "evaluate.allow_weaker_sandbox",
        True,
        "run generated code even when the host cannot reach the minimum isolation",
    )
    p.add_argument("--out", default="runs/eval", help="output folder (items.jsonl, metrics.json, manifest.json)")
    p.add_argument("--cache-root", default=None, help="request cache + HumanEval+ expected outputs folder")
    p.add_argument("--force", action="store_true", help="overwrite a finished --out of different inputs")


def run(args: argparse.Namespace) -> int:
    resolved = resolve(args)
    from pathlib import Path

    from cpqs_bench.evaluate.harness import evaluate_model
    from cpqs_bench.io import read_json

    metrics = evaluate_model(resolved.cfg, args.out, adapter=args.adapter, cache_root=args.cache_root, force=args.force)
    tasks = read_json(Path(args.out) / "manifest.json").get("tasks", {})
    for task, score in metrics.items():
        print(f"{task}\t{tasks.get(task, {}).get('metric', '?')}\t{score:.4f}")
    print(f"results in {args.out}")
    return 0
