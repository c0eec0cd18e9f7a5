"""``cpqs-bench data inspect POOL``: what a pool holds — counts, rejected records by reason, token lengths."""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from cpqs_bench.data.pool import read_pool


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    ins = sub.add_parser("inspect", help="counts, rejected records by reason with file:line, token length stats")
    ins.add_argument("pool", help="file (.json/.jsonl/.jsonl.gz/.parquet), named dataset, or hf:owner/name")
    ins.add_argument("--schema", help="force a schema instead of detecting it")
    ins.add_argument("--field-map", action="append", default=[], metavar="TARGET=SOURCE",
                     help="read SOURCE as the schema's TARGET field (repeatable), e.g. output=output_gpt4")
    ins.add_argument("--mirror", help="local data mirror directory (default: $CPQS_DATA_MIRROR)")
    ins.add_argument("--tokenizer", default="embedded", help="model whose tokenizer measures lengths; 'none' to skip")
    ins.add_argument("--template", default="chat", help="prompt template for token lengths")
    ins.add_argument("--rejected-out", help="write the quarantined records here (JSONL)")
    ins.add_argument("--show", type=int, default=5, help="rejected examples to print per reason")


def main(pool: str, *, schema: str | None = None, field_map: dict[str, str] | None = None, mirror: str | None = None,
         tokenizer: str | None = "embedded", template: str = "chat", rejected_out: str | None = None) -> dict[str, Any]:
    # inspection reports everything: no rejected-fraction limit here
    result = read_pool(pool, schema=schema, field_map=field_map, mirror=mirror, max_rejected_fraction=None,
                       rejected_path=rejected_out)
    report: dict[str, Any] = result.summary()
    report["rejected_examples"] = result.rejected
    if tokenizer and tokenizer != "none" and result.examples:
        from cpqs_bench import models, prompts

        tok = models.load_tokenizer(tokenizer)
        stats = prompts.LengthStats()
        resp = []
        for ex in result.examples:
            r = prompts.render(tok, ex, template, stats=stats)
            if r is not None:
                resp.append(r.n_response)
        lengths = np.array(stats.lengths)
        report["tokens"] = {
            "tokenizer": tokenizer, "template": template,
            "total": _describe(lengths), "response": _describe(np.array(resp)), **stats.as_dict()}
    return report


def _describe(a: np.ndarray) -> dict[str, float]:
    if a.size == 0:
        return {}
    return {"min": int(a.min()), "p50": float(np.percentile(a, 50)), "mean": round(float(a.mean()), 1),
            "p95": float(np.percentile(a, 95)), "max": int(a.max())}


def run_cli(args: argparse.Namespace) -> int:
    from rich.console import Console

    fmap = {}
    for item in args.field_map:
        if "=" not in item:
            raise ValueError(f"--field-map {item!r} is not TARGET=SOURCE")
        k, v = item.split("=", 1)
        fmap[k] = v
    rep = main(args.pool, schema=args.schema, field_map=fmap or None, mirror=args.mirror, tokenizer=args.tokenizer,
               template=args.template, rejected_out=args.rejected_out)
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
