"""The data stage: read and normalise the raw pool once (reader settings and limit apply here, and only here), write
it in the project's own format for every later stage, and draw the CPQS generated-negatives prompts disjoint from it
(by the normalised ``overlap_key``, as the CNN's training pairs are)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cpqs_bench.config import Config, validate_against_pool
from cpqs_bench.data.example import Example
from cpqs_bench.io import sha256_file, write_jsonl
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.artifacts import PoolArtifact
from cpqs_bench.stages.common import Produces, section_key

if TYPE_CHECKING:
    from cpqs_bench.publish.tracking import Tracker


def messages_row(ex: Example) -> dict[str, Any]:
    return {
        "id": ex.id,
        "messages": [*list(ex.prompt), {"role": "assistant", "content": ex.response}],
        **({"metadata": ex.metadata} if ex.metadata else {}),
    }


def generates_negatives(cfg: Config) -> bool:
    return "cpqs" in cfg.selectors.names and cfg.selectors.cpqs.pairs_source == "generate"


def disjoint_prompts(pool: Sequence[Example], candidates: Sequence[Example], n: int | None) -> list[Example]:
    """The first ``n`` candidates whose instruction (normalised ``overlap_key``) is not in ``pool``."""
    from cpqs_bench.selectors.cpqs.pairs import overlap_key

    taken = {overlap_key(e) for e in pool}
    fresh = [e for e in candidates if overlap_key(e) not in taken]
    return fresh if n is None else fresh[:n]


def _contamination() -> Any:
    """The contamination stage's helpers, imported only when the pool is decontaminated: a report-only run's data
    stage does not depend on the evaluation code (its key would change with every edit of a task scorer)."""
    import importlib

    return importlib.import_module("cpqs_bench.stages.contamination")


@dataclass
class DataStep(Produces[PoolArtifact]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ("data",)
    reads: ClassVar[tuple[str, ...]] = (
        "selectors.cpqs.pairs_source",
        "selectors.cpqs.n_pairs",
        "selectors.cpqs.pairs",
        "evaluate",
    )
    name: str = "data"
    label: str = "data"
    code: Sequence[str] = ("cpqs_bench.data.pool", "cpqs_bench.stages.data")
    files: Sequence[Path] = ()
    track: bool = False
    _source_hash: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.cfg.data.decontaminate == "drop":  # then the pool depends on the evaluation items' rendering too
            self.code = (*self.code, "cpqs_bench.stages.contamination")

    def inputs(self) -> dict[str, Any]:
        from cpqs_bench.data.pool import resolve_source

        d, cq = self.cfg.data, self.cfg.selectors.cpqs
        source, _ = resolve_source(d.pool, d.mirror)
        src_hash = sha256_file(source) if not source.startswith("hf:") else source
        return {
            **section_key(self.cfg, self.sections),
            "source": src_hash,
            "cpqs_pairs": cq.pairs_source,
            "n_pairs": cq.n_pairs,
            "pairs": cq.pairs,
            "generate": generates_negatives(self.cfg),
            # only with data.decontaminate=drop: the evaluation items the pool is cleaned against
            "evaluation_items": _contamination().items_key(self.cfg) if self.cfg.data.decontaminate == "drop" else None,
        }

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.data.pool import read_pool

        d, cq = self.cfg.data, self.cfg.selectors.cpqs
        pool = read_pool(
            d.pool,
            schema=d.schema,
            field_map=d.field_map,
            mirror=d.mirror,
            limit=d.pool_limit,
            offset=d.pool_offset,
            max_rejected_fraction=d.max_rejected_fraction,
            rejected_path=st.file("rejected.jsonl"),
            max_record_bytes=d.max_record_bytes,
        )
        examples, summary = pool.examples, pool.summary()
        if d.decontaminate == "drop":  # pool rows overlapping an evaluation item leave before any scoring
            examples, dropped, _ = _contamination().decontaminated(self.cfg, examples)
            write_jsonl(
                st.file("decontaminated.jsonl"),
                ({"id": e.id, "reason": "overlaps an evaluation item"} for e in dropped),
            )
            summary = {**summary, "kept": len(examples), "decontaminated": len(dropped)}
        validate_against_pool(self.cfg, len(examples))  # a budget larger than the pool, before any scoring
        write_jsonl(st.file("pool.jsonl"), (messages_row(e) for e in examples))
        extra: dict[str, Any] = {"pool": summary, "data_sha256": {"pool": pool.sha256}}
        if generates_negatives(self.cfg):  # instructions for generated negatives: disjoint from the pool
            pairs = read_pool(cq.pairs, mirror=d.mirror, max_rejected_fraction=d.max_rejected_fraction)
            fresh = disjoint_prompts(examples, pairs.examples, cq.n_pairs)
            write_jsonl(st.file("pairs_pool.jsonl"), (messages_row(e) for e in fresh))
            extra["pairs_pool"] = {
                "source": pairs.source,
                "sha256": pairs.sha256,
                "n": len(fresh),
                "overlap_with_pool": 0,
            }
        return extra

    def collect(self, st: Stage) -> PoolArtifact:
        from cpqs_bench.data.pool import read_project_pool

        m = st.manifest()
        examples = read_project_pool(st.file("pool.jsonl")).examples
        pairs_pool = (
            read_project_pool(st.file("pairs_pool.jsonl")).examples if st.file("pairs_pool.jsonl").exists() else []
        )
        art = PoolArtifact.of(examples, m["data_sha256"]["pool"], m["pool"])
        return PoolArtifact(art.examples, art.key, art.sha256, art.summary, pairs_pool, st.file("pool.jsonl"))
