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
    p.add_argument(
        "--out", default="runs/eval", help="output folder (items.jsonl, metrics.json, evaluation.json, manifest.json)"
    )
    p.add_argument("--cache-root", default=None, help="request cache + HumanEval+ expected outputs folder")
    p.add_argument("--arm", default=None, help="arm name recorded with the results (default: base or the adapter)")
    p.add_argument("--seed", type=int, default=None, help="seed recorded with the results")


def run(args: argparse.Namespace) -> int:
    """The same evaluation step as ``reproduce`` (:class:`cpqs_bench.stages.evaluate.EvaluateStep`) through a
    one-step pipeline (keyed on the adapter's content); ``--out`` receives items, metrics, samples and the record."""
    resolved = resolve(args)
    from pathlib import Path

    from cpqs_bench.pipeline import Given
    from cpqs_bench.stages.artifacts import AdapterArtifact, folder_key
    from cpqs_bench.stages.evaluate import EvaluateStep
    from cpqs_bench.stages.verb import deliver_folder, run_one

    cfg = resolved.cfg
    adapter = None
    if args.adapter:
        path = Path(args.adapter)
        if not path.is_dir():
            raise FileNotFoundError(f"--adapter {path}: not a folder")
        adapter = Given(AdapterArtifact(path, folder_key(path), args.arm or path.name, args.seed, _recipe_hash(path)))
    arm = args.arm or ("base" if adapter is None else Path(args.adapter).name)
    step = EvaluateStep(cfg, arm, args.seed, adapter, cache_root=Path(args.cache_root) if args.cache_root else None)
    art = run_one(cfg, step)
    out = deliver_folder(art.path, args.out)
    from cpqs_bench.io import read_json

    metrics = read_json(out / "metrics.json")
    tasks = read_json(out / "evaluation.json").get("tasks", {})
    for task, score in metrics.items():
        print(f"{task}\t{tasks.get(task, {}).get('metric', '?')}\t{score:.4f}")
    print(f"results in {out}")
    return 0


def _recipe_hash(adapter) -> str | None:
    """The recipe hash an adapter was trained under (its training record), if it has one."""
    from cpqs_bench.io import read_json

    for name in ("training.json", "manifest.json"):
        if (adapter / name).is_file():
            return read_json(adapter / name).get("recipe_hash")
    return None
