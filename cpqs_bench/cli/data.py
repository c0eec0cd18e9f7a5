"""``cpqs-bench data inspect POOL [--config PRESET] [key=value ...]``: counts, rejected records, token lengths.

Every record is read (no row limit, no rejected-fraction limit): inspection reports everything. ``--schema`` and
``--mirror`` are aliases of ``data.schema`` / ``data.mirror``; ``--field-map TARGET=SOURCE`` adds to
``data.field_map``.
"""

from __future__ import annotations

import argparse

from cpqs_bench.cli.common import add_config_arguments, alias, key_values, resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["inspect"], help="inspect: counts, rejected records by reason, token lengths")
    p.add_argument("pool", help="file (.json/.jsonl/.jsonl.gz/.parquet), named dataset, or hf:owner/name")
    add_config_arguments(p)
    alias(p, "--schema", "data.schema", help="force a schema instead of detecting it")
    p.add_argument(
        "--field-map",
        action="append",
        default=[],
        metavar="TARGET=SOURCE",
        help="read SOURCE as the schema's TARGET field (repeatable), e.g. output=output_gpt4",
    )
    alias(p, "--mirror", "data.mirror", help="local data mirror directory (default: $CPQS_DATA_MIRROR)")
    p.add_argument("--tokenizer", default="embedded", help="model whose tokenizer measures lengths; 'none' to skip")
    alias(p, "--template", "prompt.template", help="prompt template for token lengths")
    p.add_argument("--rejected-out", help="write the quarantined records here (JSONL)")
    p.add_argument("--show", type=int, default=5, help="rejected examples to print per reason")


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args).cfg
    from rich.console import Console

    from cpqs_bench.data.inspect import inspect_pool

    fmap = {**dict(cfg.data.field_map or {}), **key_values(args.field_map, "--field-map")}
    rep = inspect_pool(
        args.pool,
        schema=cfg.data.schema,
        field_map=fmap or None,
        mirror=cfg.data.mirror,
        tokenizer=args.tokenizer,
        template=cfg.prompt.template,
        rejected_out=args.rejected_out,
    )
    con = Console(highlight=False, soft_wrap=True)
    con.print(f"[bold]{rep['source']}[/bold]  schema={rep['schema']}  sha256={rep['sha256']}")
    con.print(f"read {rep['read']} = kept {rep['kept']} + rejected {rep['rejected']}")
    for reason, count in sorted(rep["rejected_by_reason"].items(), key=lambda kv: -kv[1]):
        con.print(f"  rejected [bold]{reason}[/bold]: {count}")
        for r in [r for r in rep["rejected_examples"] if r["reason"] == reason][: args.show]:
            con.print(f"    {r['location']} — {r['detail']}", markup=False)
    if "tokens" in rep:
        tk = rep["tokens"]
        con.print(f"tokens ({tk['tokenizer']}, template {tk['template']}): total {tk['total']}")
        con.print(f"response tokens: {tk['response']}; dropped empty {tk['dropped_empty']}")
    return 0
