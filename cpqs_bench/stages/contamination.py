"""The contamination stage (issue #28): n-gram overlap of the pool and of every arm's selection with the evaluation
tasks' items (:mod:`cpqs_bench.contamination`), for the leaderboard's "Contamination" table. Every item of each
task's evaluation split is checked (not only the ``evaluate.limit`` items a smoke run scores); a task whose data does
not load offline is named, not counted as clean."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from cpqs_bench.config import Config
from cpqs_bench.io import read_json, read_jsonl, write_json
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.common import Produces
from cpqs_bench.stages.evaluate import evaluation_files

if TYPE_CHECKING:
    from cpqs_bench.publish.tracking import Tracker
    from cpqs_bench.stages.artifacts import PoolArtifact
    from cpqs_bench.stages.common import Provides


REPORT = "contamination.json"


def eval_items(cfg: Config) -> tuple[dict[str, list[Any]], dict[str, str]]:
    """Items of every evaluation task that loads offline, and {task: why} for those that do not."""
    from cpqs_bench.contamination import available_task_items

    return available_task_items(cfg.evaluate.tasks, cfg.evaluate.include_path, cfg.data.mirror, None)


@dataclass
class ContaminationStep(Produces[dict[str, Any]]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ("data.contamination_n", "evaluate.tasks")
    pool: Provides[PoolArtifact]  # provider of the PoolArtifact
    selections: dict[str, dict[int | None, Any]]  # arm -> seed -> provider of a SelectionArtifact
    name: str = "contamination"
    label: str = "contamination (pool and arms vs evaluation items)"
    code: Sequence[str] = ("cpqs_bench.contamination", "cpqs_bench.stages.contamination")
    track: bool = False

    def __post_init__(self) -> None:
        self.files = evaluation_files(self.cfg)

    def inputs(self) -> dict[str, Any]:
        return {
            "pool": self.pool.output.key,
            "n": self.cfg.data.contamination_n,
            "tasks": list(self.cfg.evaluate.tasks),
            "selections": {a: {str(s): p.output.key for s, p in by.items()} for a, by in self.selections.items()},
        }

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.contamination import ContaminationIndex, report

        items, unavailable = eval_items(self.cfg)
        index = ContaminationIndex.build(items, self.cfg.data.contamination_n)
        kept = {
            arm: {seed: [r["id"] for r in read_jsonl(p.output.path) if r["kept"]] for seed, p in by.items()}
            for arm, by in self.selections.items()
        }
        doc = report(index, self.pool.output.examples, kept)
        if unavailable:
            doc["unavailable"] = unavailable
        write_json(st.file(REPORT), doc)
        return {"tasks": sorted(doc["tasks"]), "unavailable": unavailable}

    def collect(self, st: Stage) -> dict[str, Any]:
        return read_json(st.file(REPORT))


def decontaminated(cfg: Config, examples: list[Any]) -> tuple[list[Any], list[Any], str]:
    """``data.decontaminate: drop``: the pool without its examples that overlap an evaluation item, the dropped
    ones, and the items' fingerprint (part of the data stage's key in that mode)."""
    from cpqs_bench.contamination import ContaminationIndex, decontaminate, items_fingerprint

    items, _ = eval_items(cfg)
    index = ContaminationIndex.build(items, cfg.data.contamination_n)
    kept, dropped = decontaminate(examples, index)
    return kept, dropped, items_fingerprint(items, cfg.data.contamination_n)


def items_key(cfg: Config) -> str | None:
    """The evaluation items' fingerprint when the data stage drops overlapping rows (None in report mode, so that
    reporting never re-runs the data stage)."""
    if cfg.data.decontaminate != "drop":
        return None
    from cpqs_bench.contamination import items_fingerprint

    items, _ = eval_items(cfg)
    return items_fingerprint(items, cfg.data.contamination_n)
