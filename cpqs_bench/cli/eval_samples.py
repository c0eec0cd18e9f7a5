"""``cpqs-bench eval-samples TASK SAMPLES [--out DIR] [--config PRESET] [key=value ...]``: score completions
produced elsewhere (HumanEval / HumanEval+ programs in the sandbox, GSM8K answers through our extraction)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cpqs_bench.cli.common import add_config_arguments, alias, resolve
from cpqs_bench.cli.evaluate import flag_alias


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="humaneval | humaneval_plus | gsm8k")
    p.add_argument("samples", help="JSONL(.gz) of task_id+solution/completion (code) or idx+response (GSM8K)")
    add_config_arguments(p)
    p.add_argument("--out", help="directory for summary.json and items.jsonl (default: print summary only)")
    alias(
        p,
        "--workers",
        "evaluate.code_workers",
        type=int,
        metavar="N",
        help="parallel sandboxed programs (1-2 on small machines)",
    )
    p.add_argument("--cache-dir", help="where HumanEval+ expected outputs are cached (keyed by dataset sha256)")
    alias(p, "--mirror", "data.mirror", metavar="DIR", help="local dataset mirror directory (else $CPQS_DATA_MIRROR)")
    alias(
        p,
        "--min-isolation",
        "evaluate.sandbox_min_level",
        metavar="namespaces|rlimits",
        help="refuse to run code below this isolation",
    )
    flag_alias(
        p,
        "--allow-weaker-sandbox",
        "evaluate.allow_weaker_sandbox",
        True,
        "run generated code even if the host cannot provide --min-isolation",
    )


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args).cfg
    from cpqs_bench.evaluate.samples import TASK_ALIASES, eval_samples
    from cpqs_bench.evaluate.sandbox import Sandbox
    from cpqs_bench.io import write_json, write_jsonl

    ev = cfg.evaluate
    sandbox = None
    if TASK_ALIASES.get(args.task.lower()) != "gsm8k":
        sandbox = Sandbox(min_isolation=ev.sandbox_min_level, allow_weaker=ev.allow_weaker_sandbox)
    result = eval_samples(
        args.task,
        args.samples,
        workers=ev.code_workers,
        sandbox=sandbox,
        cache_dir=args.cache_dir,
        mirror=cfg.data.mirror,
        progress=True,
    )
    items = result.pop("items")
    if args.out:
        write_json(Path(args.out) / "summary.json", result)
        write_jsonl(Path(args.out) / "items.jsonl", items)
    metric = result["metric"]
    print(
        f"{result['task']}: {metric} = {result[metric]:.4f} over {result['n_docs']} items "
        f"({result['n_missing']} missing counted as failures, {result['n_unknown']} unknown ids ignored)"
    )
    return 0
