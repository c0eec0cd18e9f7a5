"""``reproduce``: a whole experiment as a list of steps over arms × seeds, handed to the executor.

  data → negatives (when the preset generates them) → train-selector (CPQS) → score per selector (MoDS: phases 1–2
  → finetune on its seed set → necessity with that adapter) → select per arm → finetune per arm × seed → evaluate
  per arm × seed and the base model → [pairwise: answers per evaluated model → judge per arm × seed vs the
  reference arm] → leaderboard (statistics) → publish

Every step is one of :mod:`cpqs_bench.stages` — the same classes the verbs run — and takes the config and its
upstream *steps*; its stage key is derived when it runs, from its config sections and the content keys of the
artifacts it consumes, plus its code version. :func:`plan` builds the list from the config; the
:class:`~cpqs_bench.pipeline.Pipeline` counts, numbers, skips (after verifying), runs and records them. One
:class:`~cpqs_bench.model_cache.ModelCache` serves every stage, so the target model is loaded once for all scoring
stages. Arms: ``base`` (no fine-tune), ``full`` (unless ``selectors.full_arm`` is false), one per selector (top budget), ``<selector>-bottom`` for
``selectors.bottom_arms``; every fine-tuned arm uses the one frozen recipe. One process holds a run directory at a
time (:func:`cpqs_bench.rundir.lock`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cpqs_bench import rundir
from cpqs_bench.config import Config, config_hash, experiment_dir, to_dict
from cpqs_bench.io import write_json
from cpqs_bench.model_cache import ModelCache
from cpqs_bench.pipeline import Always, Pipeline, Step
from cpqs_bench.stages.contamination import ContaminationStep
from cpqs_bench.stages.cost import arm_compute
from cpqs_bench.stages.data import DataStep, generates_negatives
from cpqs_bench.stages.evaluate import EvaluateStep
from cpqs_bench.stages.finetune import FinetuneStep
from cpqs_bench.stages.judge import AnswersStep, JudgeStep, judge_pairs
from cpqs_bench.stages.less import LessWarmupStep
from cpqs_bench.stages.mods import ModsCoverageStep, ModsScoreStep, builds_mods_seed, seed_finetune_step
from cpqs_bench.stages.negatives import NegativesStep
from cpqs_bench.stages.report import leaderboard_dir, write_leaderboard
from cpqs_bench.stages.score import ScoreStep
from cpqs_bench.stages.select import ControlStep, PoolTokens, SelectStep
from cpqs_bench.stages.train_selector import TrainSelectorStep
from cpqs_bench.stages.validate import ValidateStep

if TYPE_CHECKING:
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.stages.artifacts import AdapterArtifact, SelectionArtifact
    from cpqs_bench.stages.common import Provides


_S = TypeVar("_S")
_P = TypeVar("_P", bound="Step | Always")


def is_control(name: str) -> bool:
    """``random@tokens:ARM`` / ``random~ARM``: a matched random control, drawn from ARM's selection (not scored)."""
    from cpqs_bench.selectors.matched import parse_control

    return parse_control(name) is not None


def scored(cfg: Config) -> list[str]:
    """The selectors that score the pool (every name in ``selectors.names`` but the matched controls)."""
    return [n for n in cfg.selectors.names if not is_control(n)]


def arms(cfg: Config) -> list[tuple[str, str | None, bool]]:
    """(arm name, selector or None for full and the controls, bottom?) for every fine-tuned arm; the controls last
    (each is drawn from its reference arm's selection)."""
    out: list[tuple[str, str | None, bool]] = [("full", None, False)] if cfg.selectors.full_arm else []
    for name in scored(cfg):
        out.append((name, name, False))
    for name in cfg.selectors.bottom_arms:
        if name not in cfg.selectors.names:
            raise ValueError(f"selectors.bottom_arms names {name!r}, which is not in selectors.names")
        out.append((f"{name}-bottom", name, True))
    for name in cfg.selectors.names:
        if is_control(name):
            out.append((name, None, False))
    return out


def score_seeds(cfg: Config, name: str) -> list[int | None]:
    """``random`` is redrawn per experiment seed (its subset is then part of the training noise the statistics
    resample); ``selectors.random_per_seed=false`` pins one subset (``selectors.seed``) for every seed."""
    if name == "random" and cfg.selectors.random_per_seed:
        return list(cfg.experiment.seeds)
    return [None]


@dataclass
class Plan:
    """The experiment's steps in execution order, and handles on the ones the index reports."""

    data: DataStep
    steps: list[Step | Always] = field(default_factory=list)
    checkpoint: TrainSelectorStep | None = None
    scores: dict[str, dict[int | None, ScoreStep | ModsScoreStep]] = field(default_factory=dict)
    selections: dict[str, dict[int | None, SelectStep | ControlStep]] = field(default_factory=dict)
    contamination: ContaminationStep | None = None
    validity: ValidateStep | None = None
    less_warmup: LessWarmupStep | None = None
    adapters: dict[tuple[str, int], FinetuneStep] = field(default_factory=dict)
    evaluations: list[EvaluateStep] = field(default_factory=list)
    judges: list[JudgeStep] = field(default_factory=list)
    mods_seed: tuple[ModsCoverageStep, FinetuneStep] | None = None
    board: Always | None = None

    def add(self, step: _P) -> _P:
        self.steps.append(step)
        return step


def plan(
    cfg: Config,
    root: Path,
    loader: ModelLoader | None,
    *,
    preset: str | None = None,
    overrides: tuple[str, ...] = (),
    log: Callable[[str], None] = print,
) -> Plan:
    """Every step of the experiment ``cfg`` describes, upstream before downstream."""
    p = Plan(DataStep(cfg))
    data = p.add(p.data)
    tokens = PoolTokens(cfg, data, loader)
    negatives = p.add(NegativesStep(cfg, data, loader)) if generates_negatives(cfg) else None
    if "cpqs" in cfg.selectors.names:
        p.checkpoint = p.add(TrainSelectorStep(cfg, data, negatives, loader=loader, tokens=tokens))
    if builds_mods_seed(cfg):
        coverage = p.add(ModsCoverageStep(cfg, data, loader))
        p.mods_seed = (coverage, p.add(seed_finetune_step(cfg, data, coverage, loader)))
    for name in scored(cfg):
        if name.partition("+")[0] == "mods" and p.mods_seed is not None:
            p.scores[name] = {None: p.add(ModsScoreStep(cfg, data, name, *p.mods_seed, loader=loader))}
            continue
        if name.partition("+")[0] == "less" and p.less_warmup is None:  # its warm-up: a stage of its own
            p.less_warmup = p.add(LessWarmupStep(cfg, data, loader))
        for seed in score_seeds(cfg, name):
            less = p.less_warmup if name.partition("+")[0] == "less" else None
            ckpt = p.checkpoint if name == "cpqs" else less
            step = ScoreStep(
                cfg, data, name, seed=seed, checkpoint=ckpt, loader=loader, source=cfg.data.pool, tokens=tokens
            )
            p.scores.setdefault(name, {})[seed] = p.add(step)
    for arm, selector, bottom in arms(cfg):
        if is_control(arm):
            ref = p.selections.get(is_control_of(arm))
            if ref is None:
                raise ValueError(f"selectors.names: control {arm!r} needs its reference arm in selectors.names")
            for seed in cfg.experiment.seeds:
                control = ControlStep(cfg, arm, seed, data, _one(ref, seed, arm), tokens)
                p.selections.setdefault(arm, {})[seed] = p.add(control)
            continue
        sources: dict[int | None, ScoreStep | ModsScoreStep | None] = (
            dict(p.scores[selector]) if selector else {None: None}
        )
        for seed, scores in sources.items():
            select = SelectStep(
                cfg, arm, data, scores, selector=selector, bottom=bottom, seed=seed, tokens=tokens, log=log
            )
            p.selections.setdefault(arm, {})[seed] = p.add(select)
    contamination = p.contamination = p.add(ContaminationStep(cfg, data, p.selections))
    if cfg.validate.enabled:  # screen the selectors on ground truth before any fine-tune
        p.validity = p.add(ValidateStep(cfg, scored(cfg), p.checkpoint, loader))
    for arm, by_seed in p.selections.items():
        for seed in cfg.experiment.seeds:
            sel = _one(by_seed, seed, arm)
            p.adapters[(arm, seed)] = p.add(FinetuneStep(cfg, arm, seed, data, sel, loader=loader))
    p.evaluations.append(p.add(_EvaluateAfter(cfg, "base", None, None, data, None, loader)))
    for (arm, seed), adapter in p.adapters.items():
        arm_sel = p.selections[arm].get(seed, p.selections[arm].get(None))
        p.evaluations.append(p.add(_EvaluateAfter(cfg, arm, seed, adapter, data, arm_sel, loader)))
    if cfg.evaluate.pairwise.enabled:
        answers: dict[tuple[str, int | None], AnswersStep] = {
            ("base", None): p.add(AnswersStep(cfg, "base", None, None, loader))
        }
        for (arm, seed), adapter in p.adapters.items():
            answers[(arm, seed)] = p.add(AnswersStep(cfg, arm, seed, adapter, loader))
        cache = root / cfg.experiment.name / "cache" / "pairwise-judge"
        for mine, theirs in judge_pairs(cfg, list(answers)):
            p.judges.append(p.add(JudgeStep(cfg, answers[mine], answers[theirs], cache, loader)))
    n_evals = len(p.evaluations)

    def report() -> dict[str, Path]:
        from cpqs_bench.leaderboard import BoardBlocks, StatsOptions

        board = write_leaderboard(
            [e.output.path for e in p.evaluations],
            [j.output for j in p.judges],
            leaderboard_dir(cfg, root),
            cfg.experiment.name,
            cfg.experiment.description or None,
            stats=StatsOptions(references=cfg.leaderboard.references),
            blocks=BoardBlocks(
                contamination=contamination.output,
                validity=p.validity.output if p.validity is not None else None,
                compute=compute_by_arm(p),
            ),
        )
        if p.validity is not None:  # does the screen predict the fine-tuned outcome? (re-rendered with the answer)
            board = with_outcome_prediction(
                board, p.validity.output, cfg, leaderboard_dir(cfg, root), [e.output.path for e in p.evaluations]
            )
        _board(p).output = board  # the index names the leaderboard files; publish reads the index
        write_json(root / cfg.experiment.name / "index.json", build_index(cfg, p, preset, overrides))
        return board

    p.board = p.add(Always(f"leaderboard: statistics over {n_evals} evaluations", report))
    if cfg.publish.enabled:
        from cpqs_bench.publish.run import publish_run

        label = f"publish ({'dry run' if cfg.publish.dry_run else 'Hub'})"
        p.add(Always(label, lambda: publish_run(root / cfg.experiment.name, cfg.publish, dry_run=cfg.publish.dry_run)))
    return p


def _one(by_seed: Mapping[int | None, _S], seed: int, arm: str) -> _S:
    """An arm's step for ``seed``: its own, or its one seed-independent step."""
    step = by_seed.get(seed, by_seed.get(None))
    if step is None:
        raise ValueError(f"arm {arm!r} has no selection for seed {seed}")
    return step


def _board(p: Plan) -> Always:
    if p.board is None:
        raise RuntimeError("the plan has no leaderboard step")
    return p.board


def with_outcome_prediction(
    board: dict[str, Path], validity: dict[str, Any], cfg: Config, out_dir: Path, eval_dirs: list[Path]
) -> dict[str, Path]:
    """Spearman across selectors between each validity metric and the arm's Δ vs the reference on each proxy metric
    (whatever it shows, with how many selectors it rests on), added to the validity block and the pages."""
    from cpqs_bench.io import read_json
    from cpqs_bench.leaderboard import from_json
    from cpqs_bench.leaderboard_page import write_pages
    from cpqs_bench.validity.run import predicts_outcome

    rows = predicts_outcome(validity, read_json(board["json"]), reference=cfg.leaderboard.references[0])
    if not rows:
        return board
    paths = from_json(board["json"], out_dir, validity={**validity, "predicts_outcome": rows})
    paths["html"] = write_pages(Path(paths["json"]), out_dir, eval_dirs=[str(d) for d in eval_dirs])
    return {**board, **paths}


def is_control_of(name: str) -> str:
    from cpqs_bench.selectors.matched import parse_control

    parsed = parse_control(name)
    if parsed is None:
        raise ValueError(f"{name!r} is not a control arm (random@tokens:ARM or random~ARM)")
    return parsed[1]


def selection_stages(p: Plan, arm: str, seed: int) -> list[Step]:
    """Every stage an arm's selection depends on, charged in full: its scoring (and the CPQS selector's training and
    negatives, MoDS's seed stages). A matched control's draw costs nothing (its reference arm pays its selection)."""
    sel = p.selections[arm].get(seed, p.selections[arm].get(None))
    if not isinstance(sel, SelectStep) or not isinstance(sel.scores, (ScoreStep, ModsScoreStep)):
        return []  # the full pool, a control, or scores read at the edge (a verb's Given)
    out: list[Step] = [sel.scores]
    if sel.selector == "cpqs" and p.checkpoint is not None:
        negatives = p.checkpoint.negatives
        out += [p.checkpoint] + ([negatives] if isinstance(negatives, NegativesStep) else [])
    if sel.selector and sel.selector.partition("+")[0] == "less" and p.less_warmup is not None:
        out.append(p.less_warmup)
    if isinstance(sel.scores, ModsScoreStep):
        out += [sel.scores.coverage, sel.scores.seed_model]
    return out


def target_aware(cfg: Config, selector: str | None) -> bool:
    """A selector whose scores read a sample of the target tasks (``rds``, ``less``: class attribute)."""
    from cpqs_bench.selectors import registry

    if not selector:
        return False
    return bool(getattr(registry.get(selector, dict(cfg.selectors.plugins)), "target_aware", False))


def compute_by_arm(p: Plan) -> dict[str, dict[str, dict[str, Any]]]:
    """arm → seed → examples, trained tokens, optimizer steps, selection / training / total FLOPs (from the stage
    manifests' ``cost`` and the fine-tune facts)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (arm, seed), ft in p.adapters.items():
        m = _manifest(ft)
        costs = [c for c in (_manifest(s).get("cost") for s in selection_stages(p, arm, seed)) if c]
        facts = {k: m.get(k) for k in ("n_examples", "trained_tokens", "supervised_tokens", "optimizer_steps")}
        sel = p.selections[arm].get(seed, p.selections[arm].get(None))
        aware = isinstance(sel, SelectStep) and sel.scores is not None and target_aware(p.data.cfg, sel.selector)
        out.setdefault(arm, {})[str(seed)] = {**facts, **arm_compute(costs, m.get("cost")), "target_aware": aware}
    return out


def _manifest(step: Step) -> dict[str, Any]:
    from cpqs_bench.io import read_json

    path = getattr(step.output, "path", None)
    if path is None:
        return {}
    folder = Path(path) if Path(path).is_dir() and (Path(path) / "manifest.json").exists() else Path(path).parent
    return read_json(folder / "manifest.json") if (folder / "manifest.json").exists() else {}


class _EvaluateAfter(EvaluateStep):
    """An evaluation whose arm facts (kept count, budget, length correlation) come from its selection stage, known
    only once that stage has run."""

    def __init__(
        self,
        cfg: Config,
        arm: str,
        seed: int | None,
        adapter: Provides[AdapterArtifact] | None,
        data: DataStep,
        selection: Provides[SelectionArtifact] | None,
        loader: ModelLoader | None,
    ) -> None:
        super().__init__(cfg, arm, seed, adapter, loader=loader)
        self._data, self._selection = data, selection

    def inputs(self) -> dict[str, Any]:
        self.pool_sha256 = self._data.output.sha256
        if self._selection is not None:
            self.arm_info = dict(self._selection.output.info)
        return super().inputs()


def tracker_factory(cfg: Config, root: Path) -> Callable[[str], Any]:
    """A W&B run per stage (``publish.wandb``); offline without a key; never fails the pipeline."""

    def make(stage_name: str) -> Any:
        from cpqs_bench.publish.tracking import Tracker

        pub = cfg.publish
        mode = None if pub.wandb_mode == "auto" else pub.wandb_mode
        return Tracker(
            cfg.experiment.name,
            stage_name,
            enabled=pub.wandb,
            mode=mode,
            dir=root / cfg.experiment.name,
            project=pub.wandb_project,
            config=to_dict(cfg),
            timeout_s=pub.timeout_s,
        )

    return make


def reproduce(
    cfg: Config,
    *,
    preset: str | None = None,
    overrides: tuple[str, ...] = (),
    log: Callable[[str], None] = print,
    loader: ModelLoader | None = None,
    wait: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the experiment ``cfg`` describes; returns the index of every artifact and the timings."""
    root = Path(cfg.experiment.output_dir)
    loader = loader if loader is not None else ModelCache(device=cfg.model.device)
    with rundir.lock(experiment_dir(cfg), wait=wait):  # the name is one safe path segment under the output dir
        p = plan(cfg, root, loader, preset=preset, overrides=overrides, log=log)
        pipe = Pipeline(
            root,
            cfg.experiment.name,
            log=log,
            tracker_factory=tracker_factory(cfg, root),
            load_clock=lambda: float(getattr(loader, "load_seconds", 0.0)),
        )
        log(
            f"cpqs-bench reproduce {cfg.experiment.name}: config hash {config_hash(cfg)}, {len(p.steps)} stages, "
            f"run dir {root / cfg.experiment.name}"
        )
        pipe.run_all(p.steps)
        index = build_index(cfg, p, preset, overrides)
    minutes = (time.monotonic() - pipe.t0) / 60
    log(f"done in {minutes:.1f} min: ran {len(pipe.ran)} stages, skipped {len(pipe.skipped)} (DONE)")
    for line in pipe.breakdown():
        log(line)
    loads = getattr(loader, "loads", None)
    if loads is not None:
        log(f"model loads in this process: {len(loads)} ({', '.join(k[0] for k in loads) or 'none'})")
    print_summary(Path(_board(p).output["json"]), log)
    published = p.steps[-1].output if cfg.publish.enabled else None
    return {
        "index": index,
        "minutes": minutes,
        "ran": pipe.ran,
        "skipped": pipe.skipped,
        "published": published,
        "timings": pipe.timings,
        "model_loads": list(loads or []),
        "stages": len(p.steps),
    }


def build_index(cfg: Config, p: Plan, preset: str | None, overrides: tuple[str, ...]) -> dict[str, Any]:
    pool = p.data.output
    index: dict[str, Any] = {
        "experiment": cfg.experiment.name,
        "config_hash": config_hash(cfg),
        "preset": preset,
        "overrides": list(overrides),
        "data": {"pool": str(pool.path), "pool_key": pool.key, "pool_sha256": pool.sha256, "n": len(pool.examples)},
        "scores": {name: {s: str(step.output.path) for s, step in by.items()} for name, by in p.scores.items()},
        # arm → selection, or arm-s<seed> → selection for an arm redrawn per seed (random)
        "selections": {
            a + ("" if s is None else f"-s{s}"): str(step.output.path)
            for a, by_seed in p.selections.items()
            for s, step in by_seed.items()
        },
        "adapters": {f"{a}-s{s}": str(step.output.path) for (a, s), step in p.adapters.items()},
        "evaluations": [str(e.output.path) for e in p.evaluations],
        "leaderboard": {k: str(v) for k, v in _board(p).output.items()},
        "checkpoint": str(p.checkpoint.output.path) if p.checkpoint is not None else None,
    }
    if p.judges:
        index["pairwise"] = [str(j.output) for j in p.judges]
    if p.mods_seed is not None:
        coverage, seed_model = p.mods_seed
        adapter = seed_model.output.path
        label = next(s.seed_label() for by in p.scores.values() for s in by.values() if isinstance(s, ModsScoreStep))
        index["mods_seed"] = {
            "coverage": str(coverage.output.info["coverage"]),
            "adapter": str(adapter) if adapter else None,
            "seed_model": label,
        }
    return index


def print_summary(board_json: Path, log: Callable[[str], None]) -> None:
    """The final table on the terminal, from the leaderboard JSON."""
    from rich.console import Console
    from rich.table import Table

    from cpqs_bench.leaderboard import fmt_value

    doc = json.loads(Path(board_json).read_text())
    con = Console()
    con.print(f"[bold]{doc['experiment']}[/bold] — {doc.get('note', '')}")
    for task in doc["tasks"]:
        unit = doc.get("task_facts", {}).get(task, {}).get("unit", "pct")
        t = Table(title=task)
        for col in ("arm", f"mean ± std ({'%' if unit == 'pct' else unit})", "seeds", "verdict"):
            t.add_column(col)
        for row in doc["tables"][task]:
            std = "—" if row.get("std") is None else fmt_value(row["std"], unit)
            t.add_row(
                row["arm"], f"{fmt_value(row['mean'], unit)} ± {std}", str(row.get("n_seeds")), str(row.get("marker"))
            )
        con.print(t)
    if doc.get("pairwise"):
        t = Table(title=doc["pairwise"]["title"])
        for col in ("arm", "vs", "win / tie / lose / unparsed", "win rate", "winning score", "sign-test p", "judge"):
            t.add_column(col)
        for row in doc["pairwise"]["rows"]:
            ws = "—" if row["winning_score"] is None else f"{row['winning_score']:.3f}"
            wr = "—" if row["win_rate"] is None else f"{100 * row['win_rate']:.1f}%"
            p = "—" if row["sign_test_p"] is None else f"{row['sign_test_p']:.3g}"
            t.add_row(
                row["arm"],
                row["reference"],
                f"{row['win']} / {row['tie']} / {row['lose']} / {row['unparsed']}",
                wr,
                ws,
                p,
                row["judge"] + (" (weak judge: a pipeline check)" if row["weak_judge"] else ""),
            )
        con.print(t)
    log(f"leaderboard: {Path(board_json).with_suffix('.md')}")


def stage_count(cfg: Config) -> int:
    """How many stages ``reproduce`` runs for ``cfg`` (the length of its plan; nothing is run)."""
    return len(plan(cfg, Path(cfg.experiment.output_dir), None).steps)
