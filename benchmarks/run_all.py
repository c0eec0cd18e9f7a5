"""`make bench`: every speed benchmark, each printing its ratios side by side from one run. Not a test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHES = [
    ("CPQS scoring: pipeline vs official-loop shape vs limit", ["bench_cpqs.py", "--n", "200", "--n-b", "40"]),
    ("IFD scoring: pipeline vs Cherry-style loop vs limit", ["bench_ifd.py", "--n", "40", "--rounds", "3"]),
    ("SFT: project fine-tuning path vs bare packed LoRA loop", ["bench_sft.py", "--n", "32", "--rounds", "2"]),
    ("Evaluation: harness generation path vs bare batched generate", ["bench_eval.py", "--limit", "8"]),
]


def main() -> int:
    failed = []
    for title, args in BENCHES:
        print(f"\n=== {title}: python benchmarks/{' '.join(args)}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / args[0]), *args[1:]])
        if rc != 0:
            failed.append(args[0])
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
