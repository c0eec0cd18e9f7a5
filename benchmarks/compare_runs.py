"""Two run dirs of the same preset, arm by arm: are the adapters and the evaluation items the same?

The before/after check of a refactor (issue #31: "make reproduce metrics identical before and after"): for every
evaluated arm of NEW, the adapter weights' sha256 against OLD's and every evaluation item both runs hold (prediction
and score), with the count of items that differ and the first few differences.

    .venv/bin/python benchmarks/compare_runs.py OLD_RUN_DIR NEW_RUN_DIR     # e.g. runs/smoke /work/fresh/runs/smoke
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any


def finished(run: Path, stage: str, name: str) -> Path | None:
    """The newest finished stage folder ``run/stage/name/<key>`` (its DONE written), or None."""
    done = sorted((run / stage / name).glob("*/DONE"), key=lambda p: p.stat().st_mtime)
    return done[-1].parent if done else None


def items(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    rows = (json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines() if line)
    return {(r["task"], str(r["item_id"])): r for r in rows}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(old: Path, new: Path) -> int:
    same = differ = only_new = 0
    adapters = {"same": 0, "differ": 0}
    for arm in sorted(p.name for p in (new / "evaluate").iterdir()):
        a, b = finished(old, "evaluate", arm), finished(new, "evaluate", arm)
        if a is None or b is None:
            print(f"{arm}: not evaluated in {'OLD' if a is None else 'NEW'}")
            continue
        before = items(a)
        for key, row in items(b).items():
            if key not in before:
                only_new += 1
            elif (row["prediction"], row["correct"]) == (before[key]["prediction"], before[key]["correct"]):
                same += 1
            else:
                differ += 1
                if differ <= 5:
                    print(
                        f"differs: {arm} {key}: {str(before[key]['prediction'])[:60]!r} -> {str(row['prediction'])[:60]!r}"
                    )
        fa, fb = finished(old, "finetune", arm), finished(new, "finetune", arm)
        if fa is not None and fb is not None:
            weights = "adapter/adapter_model.safetensors"
            adapters["same" if sha256(fa / weights) == sha256(fb / weights) else "differ"] += 1
    print(
        f"items: {same} identical, {differ} different, {only_new} only in NEW; "
        f"adapters: {adapters['same']} identical, {adapters['differ']} different"
    )
    return 1 if differ or adapters["differ"] else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
