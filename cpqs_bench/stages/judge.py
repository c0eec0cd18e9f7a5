"""The pairwise LLM-judge stages (``evaluate.pairwise``): greedy answers of every evaluated model on the prompt sets
(``answers/<arm>``), then one judgement of every model but the reference against it (``judge/<arm>-vs-<ref>``):
base vs the fine-tuned reference of every seed, or every fine-tuned arm × seed vs base."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cpqs_bench.config import Config, to_dict
from cpqs_bench.io import sha256_file
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.artifacts import FileArtifact
from cpqs_bench.stages.common import Produces, log_numbers, section_key, seed_label, seed_suffix

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cpqs_bench.models import ModelInfo
    from cpqs_bench.publish.tracking import Tracker
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.stages.artifacts import AdapterArtifact
    from cpqs_bench.stages.common import Provides


# the judge settings that do not change a judgement (how requests are sent and where answers are cached)
_JUDGE_EXECUTION = (
    "concurrency",
    "max_retries",
    "backoff_s",
    "timeout_s",
    "cache",
    "cache_dir",
    "api_key_env",
    "batch_size",
)


def judge_settings(cfg: Config) -> dict[str, Any]:
    """What a pairwise judgement depends on: the judge spec (the target model when a local judge names none)."""
    j = cfg.evaluate.pairwise.judge
    spec = {k: v for k, v in to_dict(j).items() if k not in _JUDGE_EXECUTION}
    if j.backend == "local":
        spec["batch_size"] = j.batch_size  # left-padded batches: greedy answers may depend on the batch
        spec["dtype"] = cfg.evaluate.dtype
        if j.model is None:
            spec["target"] = {"id": cfg.model.id, "revision": cfg.model.revision}
    return spec


def judge_pairs(
    cfg: Config, models: Sequence[tuple[str, int | None]]
) -> list[tuple[tuple[str, int | None], tuple[str, int | None]]]:
    """(model, reference model) for every judgement, from the evaluated models (arm, seed) and the reference arm."""
    ref = cfg.evaluate.pairwise.reference
    pairs: list[tuple[tuple[str, int | None], tuple[str, int | None]]] = []
    for arm, seed in models:
        if arm == ref:
            continue
        if ref == "base":
            pairs.append(((arm, seed), ("base", None)))
        elif seed is None:  # base vs the fine-tuned reference of every seed
            pairs += [(("base", None), (ref, s)) for s in cfg.experiment.seeds]
        else:
            pairs.append(((arm, seed), (ref, seed)))
    return pairs


@dataclass
class AnswersStep(Produces[FileArtifact]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ("model", "prompt")
    reads: ClassVar[tuple[str, ...]] = ("evaluate.pairwise", "evaluate.dtype", "data.mirror")
    arm: str
    seed: int | None
    adapter: Provides[AdapterArtifact] | None  # provider of an AdapterArtifact; None = base
    loader: ModelLoader | None = None
    code: Sequence[str] = ("cpqs_bench.evaluate.judge", "cpqs_bench.stages.judge")
    files: Sequence[Path] = ()
    track: bool = False

    def __post_init__(self) -> None:
        self.name = f"answers/{self.arm}{seed_suffix(self.seed)}"
        self.label = f"answers {self.arm}{seed_label(self.seed)}"

    def inputs(self) -> dict[str, Any]:
        from cpqs_bench.evaluate.judge import prompt_set_path

        cfg, pw = self.cfg, self.cfg.evaluate.pairwise
        generation = {
            "sets": {s: sha256_file(prompt_set_path(s, cfg.data.mirror)) for s in pw.sets},
            "limit": pw.limit,
            "max_new_tokens": pw.max_new_tokens,
            "batch_size": pw.batch_size,
            "dtype": cfg.evaluate.dtype,
            "do_sample": False,
        }
        return {
            "arm": self.arm,
            "seed": self.seed,
            "adapter": self.adapter.output.key if self.adapter is not None else None,
            "generation": generation,
            **section_key(cfg, self.sections),
        }

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.evaluate.judge import answer_prompt_sets, load_prompt_sets

        pw = self.cfg.evaluate.pairwise
        prompts = load_prompt_sets(pw.sets, self.cfg.data.mirror, pw.limit)
        adapter = self.adapter.output.path if self.adapter is not None else None
        return answer_prompt_sets(self.cfg, prompts, st.path, adapter=adapter, loader=self.loader)

    def collect(self, st: Stage) -> FileArtifact:
        return FileArtifact.of(st.file("answers.jsonl"), arm=self.arm, seed=self.seed)


@dataclass
class JudgeStep(Produces[Path]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ("evaluate.pairwise", "evaluate.dtype", "model.id", "model.revision")
    mine: AnswersStep
    theirs: AnswersStep
    cache_dir: Path
    loader: ModelLoader | None = None
    code: Sequence[str] = ("cpqs_bench.evaluate.judge", "cpqs_bench.judge.backends", "cpqs_bench.stages.judge")
    files: Sequence[Path] = ()
    track: bool = True

    def __post_init__(self) -> None:
        m, t = self.mine, self.theirs
        self.name = f"judge/{m.arm}{seed_suffix(m.seed)}-vs-{t.arm}{seed_suffix(t.seed)}"
        self.label = self.name.replace("/", " ", 1)

    def inputs(self) -> dict[str, Any]:
        pw = self.cfg.evaluate.pairwise
        return {
            "arm": self.mine.arm,
            "seed": self.mine.seed,
            "reference": self.theirs.arm,
            "reference_seed": self.theirs.seed,
            "answers": self.mine.output.key,
            "reference_answers": self.theirs.output.key,
            "judge": judge_settings(self.cfg),
            "rule": pw.rule,
            "n_boot": pw.n_boot,
        }

    def _load(self, spec: str, revision: str | None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
        """A local judge's model through the run's loader, in the evaluation dtype."""
        if self.loader is None:
            raise ValueError(f"{self.label}: a local judge needs the run's model loader (JudgeStep.loader)")
        return self.loader(spec, revision, self.cfg.evaluate.dtype)

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.evaluate.judge import judge_answer_files
        from cpqs_bench.judge.backends import make_judge

        cfg, pw = self.cfg, self.cfg.evaluate.pairwise
        judge = make_judge(
            pw.judge,
            self._load,
            target_spec=cfg.model.id,
            target_revision=cfg.model.revision,
            cache_dir=self.cache_dir,
        )
        try:
            doc = judge_answer_files(
                self.mine.output.path, self.theirs.output.path, judge, st.path, rule=pw.rule, n_boot=pw.n_boot
            )
        finally:
            if judge.cache is not None:
                judge.cache.close()
        log_numbers(tracker, doc["summary"], "pairwise/")
        return {
            "arm": self.mine.arm,
            "seed": self.mine.seed,
            "reference": self.theirs.arm,
            "reference_seed": self.theirs.seed,
            "summary": doc["summary"],
            "judge": doc["judge"],
            "weak_judge": doc["weak_judge"],
            "rule": pw.rule,
            "judge_calls": {"cache_hits": judge.hits, "cache_misses": judge.misses},
        }

    def collect(self, st: Stage) -> Path:
        return st.path
