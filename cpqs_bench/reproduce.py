"""``reproduce``: a whole experiment as a short declaration of stages over arms × seeds.

  data → negatives (when the preset generates them) → train-selector (CPQS) → score per selector (MoDS: phases 1–2
  → finetune on its seed set → necessity with that adapter) → select per arm → finetune per arm × seed → evaluate
  per arm × seed and the base model → [pairwise: answers per evaluated model → judge per arm × seed vs the
  reference arm] → leaderboard (statistics) → publish

Each stage is a :class:`cpqs_bench.pipeline.Step`; the :class:`~cpqs_bench.pipeline.Pipeline` owns run directories
(``runs/<experiment>/<stage>/<input-hash>/``), skipping DONE work, manifests, trackers and the time breakdown. A stage's
input hash includes its upstream hashes *and its code version*, so a changed config or a changed line of the code a
stage runs re-runs exactly the stages it affects. The config arrives parsed (``reproduce(cfg)``); the pool is read
once and passed inward as ``Example`` objects; one :class:`~cpqs_bench.model_cache.ModelCache` serves every stage, so
the target model is loaded once for all scoring stages. Arms: ``base`` (no fine-tune), ``full``, one per selector
(top budget), ``<selector>-bottom`` for ``selectors.bottom_arms``; every fine-tuned arm uses the one frozen recipe.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cpqs_bench.config import Config, config_hash, to_dict
from cpqs_bench.data.example import Example
from cpqs_bench.io import read_json, read_jsonl, sha256_file, write_json, write_jsonl
from cpqs_bench.model_cache import ModelCache
from cpqs_bench.pipeline import FnStep, Pipeline
from cpqs_bench.select import budget_count

REPO_ROOT = Path(__file__).resolve().parent.parent
LEADERBOARD_DIR = REPO_ROOT / "leaderboards"
TASKS_DIR = REPO_ROOT / "tasks"
EVAL_DATA = ("gsm8k", "humaneval", "humanevalplus", "general_eval")  # mirror folders the evaluation tasks read


def arms(cfg: Config) -> list[tuple[str, str | None, bool]]:
    """(arm name, selector or None for full, bottom?) for every fine-tuned arm."""
    out: list[tuple[str, str | None, bool]] = [("full", None, False)]
    for name in cfg.selectors.names:
        out.append((name, name, False))
    for name in cfg.selectors.bottom_arms:
        if name not in cfg.selectors.names:
            raise ValueError(f"selectors.bottom_arms names {name!r}, which is not in selectors.names")
        out.append((f"{name}-bottom", name, True))
    return out


def count_stages(cfg: Config) -> int:
    n_arms = len(arms(cfg))
    cpqs = "cpqs" in cfg.selectors.names
    negatives = cpqs and cfg.selectors.cpqs.pairs_source == "generate"
    seeds = len(cfg.experiment.seeds)
    redrawn = ("random" in cfg.selectors.names and cfg.selectors.random_per_seed) * (seeds - 1)
    return (
        1
        + negatives
        + cpqs
        + 2 * builds_mods_seed(cfg)
        + len(cfg.selectors.names)
        + redrawn
        + n_arms
        + redrawn
        + n_arms * seeds
        + (1 + n_arms * seeds)
        + pairwise_stage_count(cfg)
        + 1
        + int(cfg.publish.enabled)
    )


def builds_mods_seed(cfg: Config) -> bool:
    """MoDS (plain or composed, ``mods+STEP``) with no ``selectors.mods.seed_model`` given: the pipeline builds its
    seed model — a phases-1–2 stage and a fine-tune on the seed set, shared by every mods selector of the run."""
    return cfg.selectors.mods.seed_model is None and any(n.partition("+")[0] == "mods" for n in cfg.selectors.names)


@dataclass(frozen=True)
class ModsSeed:
    """MoDS's seed model as the pipeline built it: phases 1–2 and the LoRA adapter fine-tuned on the seed set."""

    coverage: Path  # coverage.jsonl of the score/mods-seed stage
    coverage_stage: str  # that stage's input hash
    adapter: Path | None  # None when the seed set is empty (no high-quality example: nothing to answer)
    stage: str  # the fine-tune stage's input hash
    n_seed: int
    label: str  # what answers the necessity phase, recorded on every mods row and the stage manifest


def pairwise_stage_count(cfg: Config) -> int:
    """Answers of every evaluated model (base + arm × seed), then one judgement of every model but the reference
    against it: base vs full per seed (reference full) or every fine-tuned arm × seed vs base (reference base)."""
    if not cfg.evaluate.pairwise.enabled:
        return 0
    models = len(arms(cfg)) * len(cfg.experiment.seeds)
    return (1 + models) + models


def evaluation_settings(cfg: Config) -> dict[str, Any]:
    """What the lm-eval stages depend on in ``evaluate``: everything but the pairwise judge evaluation (its own
    stages), so turning that on or off leaves every evaluation stage's inputs as they were."""
    settings = to_dict(cfg.evaluate)
    settings.pop("pairwise", None)
    return settings


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


def adapter_hash(adapter: Path | None) -> str | None:
    """sha256 over every file of an adapter folder (weights, config, tokenizer, manifest)."""
    if adapter is None:
        return None
    from cpqs_bench.io import stable_hash

    return stable_hash({f.name: sha256_file(f) for f in sorted(Path(adapter).iterdir()) if f.is_file()})


def scoring_settings(cfg: Config) -> dict[str, Any]:
    """What a selector's scores depend on: not the budget, the arm list or which selectors run."""
    settings = to_dict(cfg.selectors)
    for key in ("names", "budget", "bottom_arms"):
        settings.pop(key, None)
    return settings


def messages_row(ex: Example) -> dict[str, Any]:
    return {
        "id": ex.id,
        "messages": list(ex.prompt) + [{"role": "assistant", "content": ex.response}],
        **({"metadata": ex.metadata} if ex.metadata else {}),
    }


def evaluation_files(cfg: Config) -> list[Path]:
    """What the evaluation stages read besides code: task YAMLs (ours and the user's) and the evaluation data."""
    from cpqs_bench.data.mirror import mirror_dir

    files = [TASKS_DIR] + [Path(p) for p in getattr(cfg.evaluate, "include_path", ()) or ()]
    root = mirror_dir(cfg.data.mirror)
    if root is not None:
        files += [root / d for d in EVAL_DATA if (root / d).exists()]
    return files


@dataclass
class Experiment:
    """The state of one reproduce run: parsed config, the shared model cache, the pipeline and upstream artifacts."""

    cfg: Config
    root: Path
    log: Callable[[str], None] = print
    loader: Any = None
    pipe: Pipeline = field(init=False)
    pool: list[Example] = field(default_factory=list)
    pairs_pool: list[Example] = field(default_factory=list)
    mods_seed_built: ModsSeed | None = None

    def __post_init__(self) -> None:
        if self.loader is None:
            self.loader = ModelCache(device=self.cfg.model.device)
        self.pipe = Pipeline(
            self.root,
            self.cfg.experiment.name,
            count_stages(self.cfg),
            log=self.log,
            tracker_factory=self.tracker,
            load_clock=lambda: float(getattr(self.loader, "load_seconds", 0.0)),
        )

    def tracker(self, stage_name: str) -> Any:
        """A W&B run for one stage (``publish.wandb``); offline without a key; never fails the pipeline."""
        from cpqs_bench.publish.tracking import Tracker

        pub = self.cfg.publish
        mode = None if pub.wandb_mode == "auto" else pub.wandb_mode
        return Tracker(
            self.cfg.experiment.name,
            stage_name,
            enabled=pub.wandb,
            mode=mode,
            dir=self.root / self.cfg.experiment.name,
            project=pub.wandb_project,
            config=to_dict(self.cfg),
        )

    # ----------------------------------------------------------------------------------------------------- stages
    def data(self) -> dict[str, Any]:
        """Read and normalise the raw pool once (the user's reader settings and limit apply here, and only here);
        write it in the project's own format for every later stage; draw the CNN's pairs pool disjoint from it."""
        from cpqs_bench.data.pool import read_pool, read_project_pool, resolve_source

        cfg, d, cq = self.cfg, self.cfg.data, self.cfg.selectors.cpqs
        source, _ = resolve_source(d.pool, d.mirror)
        src_hash = sha256_file(source) if not source.startswith("hf:") else source
        generate = "cpqs" in cfg.selectors.names and cq.pairs_source == "generate"

        def run(st: Any, tr: Any) -> dict[str, Any]:
            pool = read_pool(
                d.pool,
                schema=d.schema,
                field_map=d.field_map,
                mirror=d.mirror,
                limit=d.pool_limit,
                offset=d.pool_offset,
                max_rejected_fraction=d.max_rejected_fraction,
                rejected_path=st.file("rejected.jsonl"),
            )
            write_jsonl(st.file("pool.jsonl"), (messages_row(e) for e in pool.examples))
            extra: dict[str, Any] = {"pool": pool.summary(), "data_sha256": {"pool": pool.sha256}}
            if generate:  # instructions for generated negatives: from the pairs source, disjoint from the pool
                seen = {e.instruction for e in pool.examples}
                pairs = read_pool(cq.pairs, mirror=d.mirror, max_rejected_fraction=d.max_rejected_fraction)
                fresh = [e for e in pairs.examples if e.instruction not in seen][: cq.n_pairs]
                write_jsonl(st.file("pairs_pool.jsonl"), (messages_row(e) for e in fresh))
                extra["pairs_pool"] = {
                    "source": pairs.source,
                    "sha256": pairs.sha256,
                    "n": len(fresh),
                    "overlap_with_pool": 0,
                }
            return extra

        inputs = {
            "data": to_dict(d),
            "source": src_hash,
            "cpqs_pairs": cq.pairs_source,
            "n_pairs": cq.n_pairs,
            "pairs": cq.pairs,
            "generate": generate,
        }
        st = self.pipe.run(FnStep("data", inputs, run, code=["cpqs_bench.data.pool"], track=False), "data")
        self.pool = read_project_pool(st.file("pool.jsonl")).examples
        if st.file("pairs_pool.jsonl").exists():
            self.pairs_pool = read_project_pool(st.file("pairs_pool.jsonl")).examples
        m = st.manifest()
        return {
            "pool": str(st.file("pool.jsonl")),
            "pool_hash": st.input_hash,
            "pool_sha256": m["data_sha256"]["pool"],
            "n": m["pool"]["kept"],
        }

    def negatives(self, data: dict[str, Any]) -> Path | None:
        cfg, cq = self.cfg, self.cfg.selectors.cpqs
        if "cpqs" not in cfg.selectors.names or cq.pairs_source != "generate":
            return None
        from cpqs_bench.selectors.cpqs.negatives import make_negatives

        def run(st: Any, tr: Any) -> dict[str, Any]:
            return {
                "summary": make_negatives(cfg, self.pairs_pool, None, st.file("negatives.jsonl"), loader=self.loader)
            }

        inputs = {
            "data": data["pool_hash"],
            "generator": cq.generator,
            "model": to_dict(cfg.model),
            "prompt": to_dict(cfg.prompt),
            "cpqs": to_dict(cq),
        }
        st = self.pipe.run(
            FnStep("negatives", inputs, run, code=["cpqs_bench.selectors.cpqs.negatives"], track=False), "negatives"
        )
        return st.file("negatives.jsonl")

    def train_selector(self, data: dict[str, Any], negatives: Path | None) -> Path | None:
        cfg = self.cfg
        if "cpqs" not in cfg.selectors.names:
            return None
        from cpqs_bench.selectors.cpqs.train import train_selector

        def run(st: Any, tr: Any) -> dict[str, Any]:
            metrics = train_selector(
                cfg,
                st.path / "checkpoint",
                pairs=self.pairs_pool or None,
                negatives=negatives,
                exclude=self.pool,
                loader=self.loader,
            )
            if tr is not None:
                tr.log_metrics(
                    {f"val/{k}": v for k, v in (metrics.get("val") or {}).items() if isinstance(v, (int, float))}
                )
            return {
                "metrics": {
                    k: v for k, v in metrics.items() if k in ("val", "train", "n_pairs", "pairs", "overlap", "length")
                }
            }

        inputs = {
            "data": data["pool_hash"],
            "negatives": sha256_file(negatives) if negatives else None,
            "cpqs": to_dict(cfg.selectors.cpqs),
            "model": to_dict(cfg.model),
            "prompt": to_dict(cfg.prompt),
        }
        st = self.pipe.run(
            FnStep("train-selector", inputs, run, code=["cpqs_bench.selectors.cpqs.train"]), "train-selector"
        )
        return st.path / "checkpoint"

    def score_seeds(self, name: str) -> list[int | None]:
        """``random`` is redrawn per experiment seed (its subset is then part of the training noise the statistics
        resample); ``selectors.random_per_seed=false`` pins one subset (``selectors.seed``) for every seed."""
        if name == "random" and self.cfg.selectors.random_per_seed:
            return list(self.cfg.experiment.seeds)
        return [None]

    def scores(self, data: dict[str, Any], checkpoint: Path | None) -> dict[str, dict[int | None, str]]:
        from cpqs_bench.config import replace
        from cpqs_bench.score import score_pool
        from cpqs_bench.selectors import registry

        out: dict[str, dict[int | None, str]] = {}
        for name in self.cfg.selectors.names:
            sel_module = type(registry.get(name, dict(self.cfg.selectors.plugins))).__module__
            if name.partition("+")[0] == "mods" and builds_mods_seed(self.cfg):
                out[name] = {None: self.mods_scores(data, name, sel_module)}
                continue
            ckpt = checkpoint if name == "cpqs" else None
            for seed in self.score_seeds(name):
                cfg = self.cfg if seed is None else replace(self.cfg, **{"selectors.seed": seed})

                def run(
                    st: Any, tr: Any, name: str = name, ckpt: Path | None = ckpt, cfg: Config = cfg
                ) -> dict[str, Any]:
                    summary = score_pool(
                        cfg,
                        self.pool,
                        st.file("scores.jsonl"),
                        selector=name,
                        checkpoint=ckpt,
                        workdir=st.path / "work",
                        loader=self.loader,
                    )
                    _log_scores(tr, name, st.file("scores.jsonl"))
                    return {"summary": summary}

                inputs = {
                    "data": data["pool_hash"],
                    "selector": name,
                    "selectors": scoring_settings(cfg),
                    "model": to_dict(cfg.model),
                    "prompt": to_dict(cfg.prompt),
                    "checkpoint": sha256_file(Path(ckpt) / "model.safetensors") if ckpt else None,
                }
                code = ["cpqs_bench.score"] + ([sel_module] if sel_module.startswith("cpqs_bench") else [])
                files = [] if sel_module.startswith("cpqs_bench") else _module_files(sel_module)
                suffix = "" if seed is None else f"-s{seed}"
                st = self.pipe.run(
                    FnStep(f"score/{name}{suffix}", inputs, run, code=code, files=files),
                    f"score {name}" + ("" if seed is None else f" seed {seed}"),
                )
                out.setdefault(name, {})[seed] = str(st.file("scores.jsonl"))
        return out

    def mods_seed(self, data: dict[str, Any]) -> ModsSeed:
        """MoDS phases 1–2 (``score/mods-seed``: quality + coverage → the seed set), then the seed model: a LoRA
        adapter fine-tuned on the seed set with the experiment's frozen recipe and first seed
        (``finetune/mods-seed-s<seed>``). Built once per run, whatever number of mods selectors use it."""
        if self.mods_seed_built is not None:
            return self.mods_seed_built
        from cpqs_bench.finetune.sft import finetune_arm
        from cpqs_bench.selectors import mods
        from cpqs_bench.selectors.base import ScoringContext

        cfg = self.cfg

        def run_coverage(st: Any, tr: Any) -> dict[str, Any]:
            ctx = ScoringContext(cfg, st.path / "work", seed=cfg.selectors.seed, loader=self.loader)
            cov = mods.quality_and_coverage(self.pool, ctx)
            cov.write(st.file(mods.COVERAGE_FILE), self.pool)
            pick = {sid: j for j, sid in enumerate(cov.seeds)}
            write_jsonl(
                st.file("selection.jsonl"),
                (
                    {
                        "id": ex.id,
                        "score": None,
                        "rank": pick[ex.id] + 1 if ex.id in pick else None,
                        "kept": ex.id in pick,
                        "reason": f"MoDS seed set (k-center pick {pick[ex.id]})"
                        if ex.id in pick
                        else "not in the seed set",
                    }
                    for ex in self.pool
                ),
            )
            return {
                "n": len(self.pool),
                "n_scored": len(cov.quality),
                "n_high_quality": len(cov.high),
                "n_seed": len(cov.seeds),
            }

        inputs = {
            "data": data["pool_hash"],
            "selector": "mods",
            "phases": "quality+coverage",
            "settings": mods.coverage_settings(cfg),
            "model": to_dict(cfg.model),
        }
        cov_st = self.pipe.run(
            FnStep("score/mods-seed", inputs, run_coverage, code=["cpqs_bench.selectors.mods"], track=False),
            "score mods seed set (quality + coverage)",
        )
        n_seed = int(cov_st.manifest()["n_seed"])
        selection = cov_st.file("selection.jsonl")
        seed = cfg.experiment.seeds[0]

        def run_finetune(st: Any, tr: Any) -> dict[str, Any]:
            if n_seed == 0:  # no high-quality example: nothing for a seed model to answer, nothing to train on
                return {"arm": "mods-seed", "seed": seed, "n_seed": 0, "adapter": None}
            manifest = finetune_arm(
                cfg, selection, self.pool, st.path / "adapter", seed=seed, arm="mods-seed", loader=self.loader
            )
            if tr is not None:
                tr.log_metrics(
                    {k: v for k, v in manifest.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                )
            return {"recipe_hash": manifest["recipe_hash"], "arm": "mods-seed", "seed": seed, "n_seed": n_seed}

        inputs = {
            "arm": "mods-seed",
            "seed": seed,
            "selection": sha256_file(selection),
            "finetune": to_dict(cfg.finetune),
            "model": to_dict(cfg.model),
            "prompt": to_dict(cfg.prompt),
            "data": data["pool_hash"],
        }
        ft_st = self.pipe.run(
            FnStep(f"finetune/mods-seed-s{seed}", inputs, run_finetune, code=["cpqs_bench.finetune.sft"]),
            f"finetune mods seed set seed {seed}",
        )
        label = (
            f"target + LoRA fine-tuned on the MoDS seed set ({n_seed} examples, stage {ft_st.input_hash})"
            if n_seed
            else mods.NO_SEED_MODEL
        )
        self.mods_seed_built = ModsSeed(
            cov_st.file(mods.COVERAGE_FILE),
            cov_st.input_hash,
            ft_st.path / "adapter" if n_seed else None,
            ft_st.input_hash,
            n_seed,
            label,
        )
        return self.mods_seed_built

    def mods_scores(self, data: dict[str, Any], name: str, sel_module: str) -> str:
        """The ``mods`` scoring stage as its paper: necessity answered by the target model with the seed adapter
        attached (the shared cached model, the adapter removed again on exit), then the usual scoring from the
        phase folder (``phases/``: the seed stage's coverage and these answers)."""
        from cpqs_bench.evaluate.harness import Attached
        from cpqs_bench.score import score_pool
        from cpqs_bench.selectors import mods
        from cpqs_bench.selectors.base import ScoringContext

        cfg, seed = self.cfg, self.mods_seed(data)

        def run(st: Any, tr: Any) -> dict[str, Any]:
            phases = st.path / "phases"
            phases.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(seed.coverage, phases / mods.COVERAGE_FILE)
            coverage = mods.Coverage.read(phases / mods.COVERAGE_FILE, self.pool)
            ctx = ScoringContext(cfg, st.path / "work", seed=cfg.selectors.seed, loader=self.loader)
            if seed.adapter is None:
                nec = mods.necessity(self.pool, coverage, ctx, mods.SeedModel(None, None, seed.label))
            else:
                base, tok, _ = ctx.model()
                with Attached(base, str(seed.adapter)) as model:
                    nec = mods.necessity(self.pool, coverage, ctx, mods.SeedModel(model, tok, seed.label))
            nec.write(phases / mods.NECESSITY_FILE)
            summary = score_pool(
                cfg,
                self.pool,
                st.file("scores.jsonl"),
                selector=name,
                checkpoint=phases,
                workdir=st.path / "work",
                loader=self.loader,
            )
            _log_scores(tr, name, st.file("scores.jsonl"))
            threshold = cfg.selectors.mods.necessity_threshold
            return {
                "summary": summary,
                "seed_model": seed.label,
                "necessity": {
                    "answered": len(nec.reward),
                    "necessary": sum(r < threshold for r in nec.reward.values()),
                },
            }

        inputs = {
            "data": data["pool_hash"],
            "selector": name,
            "selectors": scoring_settings(cfg),
            "model": to_dict(cfg.model),
            "prompt": to_dict(cfg.prompt),
            "checkpoint": None,
            "mods_seed": {
                "coverage": seed.coverage_stage,
                "finetune": seed.stage,
                "adapter": adapter_hash(seed.adapter),
            },
        }
        code = ["cpqs_bench.score", "cpqs_bench.selectors.mods", "cpqs_bench.evaluate.harness"]
        code += [sel_module] if sel_module.startswith("cpqs_bench") and sel_module not in code else []
        files = [] if sel_module.startswith("cpqs_bench") else _module_files(sel_module)
        st = self.pipe.run(FnStep(f"score/{name}", inputs, run, code=code, files=files), f"score {name}")
        return str(st.file("scores.jsonl"))

    def selections(
        self, data: dict[str, Any], scores: dict[str, dict[int | None, str]]
    ) -> dict[str, dict[int | None, dict[str, Any]]]:
        """arm → {seed (None: one selection for every seed) → selection info}."""
        from cpqs_bench.select import select

        cfg = self.cfg
        out: dict[str, dict[int | None, dict[str, Any]]] = {}
        for arm, selector, bottom in arms(cfg):
            sources: dict[int | None, str | None] = scores[selector] if selector else {None: None}
            for seed, src in sources.items():

                def run(st: Any, tr: Any, src: str | None = src, bottom: bool = bottom) -> dict[str, Any]:
                    if src is None:  # the full pool: every example kept
                        rows = [
                            {"id": ex.id, "score": None, "rank": k + 1, "kept": True, "reason": "full pool"}
                            for k, ex in enumerate(self.pool)
                        ]
                    else:
                        rows = select(read_jsonl(src), cfg.selectors.budget, bottom=bottom)
                    write_jsonl(st.file("selection.jsonl"), rows)
                    return {"kept": sum(r["kept"] for r in rows), "total": len(rows)}

                inputs = {
                    "arm": arm,
                    "budget": cfg.selectors.budget,
                    "bottom": bottom,
                    "data": data["pool_hash"],
                    "scores": sha256_file(src) if src else None,
                }
                suffix = "" if seed is None else f"-s{seed}"
                st = self.pipe.run(
                    FnStep(f"select/{arm}{suffix}", inputs, run, code=["cpqs_bench.select"], track=False),
                    f"select {arm}" + ("" if seed is None else f" seed {seed}"),
                )
                m = st.manifest()
                budget_k = len(self.pool) if selector is None else budget_count(cfg.selectors.budget, m["total"])
                out.setdefault(arm, {})[seed] = {
                    "path": str(st.file("selection.jsonl")),
                    "kept": m["kept"],
                    "total": m["total"],
                    "budget_k": budget_k,
                    "selector": selector,
                    "bottom": bottom,
                    "redrawn_per_seed": seed is not None,
                    "length_spearman": _length_spearman(src),
                }
                if m["kept"] < budget_k:
                    msg = (
                        f"arm {arm} keeps {m['kept']} examples, fewer than its budget k = {budget_k} "
                        f"(the selector excluded some)"
                    )
                    if cfg.selectors.min_kept == "error":
                        raise ValueError(msg + "; selectors.min_kept=error")
                    self.log("warning: " + msg)
        return out

    @staticmethod
    def selection_for(sel: dict[int | None, dict[str, Any]], seed: int) -> dict[str, Any]:
        return sel[seed] if seed in sel else sel[None]

    def finetune(
        self, data: dict[str, Any], selections: dict[str, dict[int | None, dict[str, Any]]]
    ) -> dict[tuple[str, int], Path]:
        from cpqs_bench.finetune.sft import finetune_arm

        cfg, out = self.cfg, {}
        for arm, by_seed in selections.items():
            for seed in cfg.experiment.seeds:
                sel = self.selection_for(by_seed, seed)

                def run(st: Any, tr: Any, arm: str = arm, seed: int = seed, path: str = sel["path"]) -> dict[str, Any]:
                    manifest = finetune_arm(
                        cfg, Path(path), self.pool, st.path / "adapter", seed=seed, arm=arm, loader=self.loader
                    )
                    if tr is not None:
                        tr.log_metrics(
                            {
                                k: v
                                for k, v in manifest.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)
                            }
                        )
                    return {"recipe_hash": manifest["recipe_hash"], "arm": arm, "seed": seed}

                inputs = {
                    "arm": arm,
                    "seed": seed,
                    "selection": sha256_file(sel["path"]),
                    "finetune": to_dict(cfg.finetune),
                    "model": to_dict(cfg.model),
                    "prompt": to_dict(cfg.prompt),
                    "data": data["pool_hash"],
                }
                st = self.pipe.run(
                    FnStep(f"finetune/{arm}-s{seed}", inputs, run, code=["cpqs_bench.finetune.sft"]),
                    f"finetune {arm} seed {seed}",
                )
                out[(arm, seed)] = st.path / "adapter"
        return out

    def evaluate(
        self,
        data: dict[str, Any],
        adapters: dict[tuple[str, int], Path],
        selections: dict[str, dict[int | None, dict[str, Any]]],
    ) -> list[str]:
        from cpqs_bench.evaluate.harness import evaluate_model

        cfg = self.cfg
        files = evaluation_files(cfg)
        jobs: list[tuple[str, int | None, Path | None]] = [("base", None, None)]
        jobs += [(arm, seed, path) for (arm, seed), path in adapters.items()]
        out = []
        for arm, seed, adapter in jobs:
            suffix = f"-s{seed}" if seed is not None else ""
            recipe_hash = read_json(adapter / "manifest.json")["recipe_hash"] if adapter else None
            sel = self.selection_for(selections[arm], seed) if arm in selections and seed is not None else {}
            info = {k: v for k, v in sel.items() if k != "path"}
            extra = {
                "arm": arm,
                "seed": seed,
                "recipe_hash": recipe_hash,
                "config_hash": config_hash(cfg),
                "seeds": list(cfg.experiment.seeds),
                "data_sha256": {"pool": data["pool_sha256"]},
                "model_id": cfg.model.id,
                "arm_info": info,
            }

            def run(st: Any, tr: Any, adapter: Path | None = adapter, extra: dict = extra) -> dict[str, Any]:
                metrics = evaluate_model(cfg, st.path, adapter=adapter, extra_manifest=extra, loader=self.loader)
                if tr is not None:
                    tr.log_metrics(metrics)
                # the harness wrote its own manifest (arm, seed, revision, per-task facts) into this directory: keep
                # every field of it in the stage manifest that replaces it; its own input record under its own name
                own = read_json(st.path / "manifest.json")
                return {("evaluation_" + k if k in _PIPELINE_KEYS else k): v for k, v in own.items()}

            inputs = {
                "arm": arm,
                "seed": seed,
                "adapter": sha256_file(adapter / "manifest.json") if adapter else None,
                "evaluate": evaluation_settings(cfg),
                "model": to_dict(cfg.model),
                "prompt": to_dict(cfg.prompt),
                "arm_info": info,
            }
            st = self.pipe.run(
                FnStep(f"evaluate/{arm}{suffix}", inputs, run, code=["cpqs_bench.evaluate.harness"], files=files),
                f"evaluate {arm}" + (f" seed {seed}" if seed is not None else ""),
            )
            out.append(str(st.path))
        return out

    def pairwise(self, adapters: dict[tuple[str, int], Path]) -> list[str]:
        """``evaluate.pairwise``: greedy answers of every evaluated model on the prompt sets (one stage per model),
        then one judge stage per model vs the reference arm (a fine-tuned reference of the same seed; base has
        none). Returns the judge stage directories (none when pairwise is off)."""
        cfg, pw = self.cfg, self.cfg.evaluate.pairwise
        if not pw.enabled:
            return []
        from cpqs_bench.evaluate.judge import answer_prompt_sets, judge_answer_files, load_prompt_sets, prompt_set_path
        from cpqs_bench.judge.backends import make_judge

        prompts = load_prompt_sets(pw.sets, cfg.data.mirror, pw.limit)
        generation = {
            "sets": {s: sha256_file(prompt_set_path(s, cfg.data.mirror)) for s in pw.sets},
            "limit": pw.limit,
            "max_new_tokens": pw.max_new_tokens,
            "batch_size": pw.batch_size,
            "dtype": cfg.evaluate.dtype,
            "do_sample": False,
        }
        jobs: list[tuple[str, int | None, Path | None]] = [("base", None, None)]
        jobs += [(arm, seed, path) for (arm, seed), path in adapters.items()]
        answers: dict[tuple[str, int | None], Path] = {}
        for arm, seed, adapter in jobs:
            suffix = f"-s{seed}" if seed is not None else ""

            def run(st: Any, tr: Any, adapter: Path | None = adapter) -> dict[str, Any]:
                return answer_prompt_sets(cfg, prompts, st.path, adapter=adapter, loader=self.loader)

            inputs = {
                "arm": arm,
                "seed": seed,
                "adapter": adapter_hash(adapter),
                "generation": generation,
                "model": to_dict(cfg.model),
                "prompt": to_dict(cfg.prompt),
            }
            st = self.pipe.run(
                FnStep(f"answers/{arm}{suffix}", inputs, run, code=["cpqs_bench.evaluate.judge"], track=False),
                f"answers {arm}" + (f" seed {seed}" if seed is not None else ""),
            )
            answers[(arm, seed)] = st.file("answers.jsonl")

        ref = pw.reference
        pairs: list[tuple[tuple[str, int | None], tuple[str, int | None]]] = []
        for arm, seed in answers:
            if arm == ref:
                continue
            if ref == "base":
                pairs.append(((arm, seed), ("base", None)))
            elif seed is None:  # base vs the fine-tuned reference of every seed
                pairs += [(("base", None), (ref, s)) for s in cfg.experiment.seeds]
            else:
                pairs.append(((arm, seed), (ref, seed)))
        judge_cfg = pw.judge
        settings = judge_settings(cfg)
        cache_dir = self.root / cfg.experiment.name / "cache" / "pairwise-judge"
        out = []
        for (arm, seed), (ref_arm, ref_seed) in pairs:
            name = (
                f"{arm}{'' if seed is None else f'-s{seed}'}-vs-{ref_arm}{'' if ref_seed is None else f'-s{ref_seed}'}"
            )
            mine, theirs = answers[(arm, seed)], answers[(ref_arm, ref_seed)]

            def run(
                st: Any,
                tr: Any,
                mine: Path = mine,
                theirs: Path = theirs,
                arm: str = arm,
                seed: int | None = seed,
                ref_arm: str = ref_arm,
                ref_seed: int | None = ref_seed,
            ) -> dict[str, Any]:
                judge = make_judge(
                    judge_cfg,
                    lambda spec, rev: self.loader(spec, rev, cfg.evaluate.dtype),
                    target_spec=cfg.model.id,
                    target_revision=cfg.model.revision,
                    cache_dir=cache_dir,
                )
                try:
                    doc = judge_answer_files(mine, theirs, judge, st.path, rule=pw.rule, n_boot=pw.n_boot)
                finally:
                    if judge.cache is not None:
                        judge.cache.close()
                if tr is not None:
                    tr.log_metrics(
                        {
                            f"pairwise/{k}": v
                            for k, v in doc["summary"].items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)
                        }
                    )
                return {
                    "arm": arm,
                    "seed": seed,
                    "reference": ref_arm,
                    "reference_seed": ref_seed,
                    "summary": doc["summary"],
                    "judge": doc["judge"],
                    "weak_judge": doc["weak_judge"],
                    "rule": pw.rule,
                    "judge_calls": {"cache_hits": judge.hits, "cache_misses": judge.misses},
                }

            inputs = {
                "arm": arm,
                "seed": seed,
                "reference": ref_arm,
                "reference_seed": ref_seed,
                "answers": sha256_file(mine),
                "reference_answers": sha256_file(theirs),
                "judge": settings,
                "rule": pw.rule,
                "n_boot": pw.n_boot,
            }
            st = self.pipe.run(
                FnStep(f"judge/{name}", inputs, run, code=["cpqs_bench.evaluate.judge", "cpqs_bench.judge.backends"]),
                f"judge {name}",
            )
            out.append(str(st.path))
        return out

    def leaderboard(self, eval_dirs: list[str], judge_dirs: list[str] | None = None) -> dict[str, Path]:
        from cpqs_bench import leaderboard

        cfg = self.cfg
        out_dir = (
            LEADERBOARD_DIR if cfg.experiment.name in _COMMITTED else self.root / cfg.experiment.name / "leaderboards"
        )

        def run() -> dict[str, Path]:
            from cpqs_bench.leaderboard_page import write_pages

            board = leaderboard.main(
                eval_dirs, out_dir, cfg.experiment.name, cfg.experiment.description or None, pairwise=judge_dirs or ()
            )
            board["html"] = write_pages(Path(board["json"]), out_dir, eval_dirs=eval_dirs)
            return board

        return self.pipe.step_always(f"leaderboard: statistics over {len(eval_dirs)} evaluations", run)


def _log_scores(tracker: Any, name: str, scores: Path) -> None:
    if tracker is not None:
        tracker.log_histogram(f"scores/{name}", [r["score"] for r in read_jsonl(scores) if r.get("score") is not None])


def _length_spearman(scores_path: str | None) -> float | None:
    """Spearman(score, response length) of the scores an arm was selected by, from the scoring stage's degeneracy
    report (None for the full pool, or scores written before the report existed): the length-confound check."""
    if scores_path is None:
        return None
    manifest = Path(scores_path).parent / "manifest.json"
    deg = (read_json(manifest).get("summary") or {}).get("degeneracy") if manifest.exists() else None
    return deg.get("spearman_length") if isinstance(deg, dict) else None


_COMMITTED = ("smoke", "cpu_study")  # experiments whose leaderboards are published in the repository
_PIPELINE_KEYS = ("experiment", "stage", "input_hash", "inputs", "finished_at", "seconds")


def _module_files(module: str) -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec(module.split(".")[0])
    origin = spec.origin if spec else None
    return [Path(origin).parent] if origin else []


def reproduce(
    cfg: Config,
    *,
    preset: str | None = None,
    overrides: tuple[str, ...] = (),
    log: Callable[[str], None] = print,
    loader: Any = None,
) -> dict[str, Any]:
    """Run (or resume) the experiment ``cfg`` describes; returns the index of every artifact and the timings."""
    exp = Experiment(cfg, Path(cfg.experiment.output_dir), log=log, loader=loader)
    log(
        f"cpqs-bench reproduce {cfg.experiment.name}: config hash {config_hash(cfg)}, {exp.pipe.n_stages} stages, "
        f"run dir {exp.root / cfg.experiment.name}"
    )
    data = exp.data()
    negatives = exp.negatives(data)
    checkpoint = exp.train_selector(data, negatives)
    scores = exp.scores(data, checkpoint)
    selections = exp.selections(data, scores)
    adapters = exp.finetune(data, selections)
    eval_dirs = exp.evaluate(data, adapters, selections)
    judge_dirs = exp.pairwise(adapters)
    board = exp.leaderboard(eval_dirs, judge_dirs)
    index = {
        "experiment": cfg.experiment.name,
        "config_hash": config_hash(cfg),
        "preset": preset,
        "overrides": list(overrides),
        "data": data,
        "scores": scores,
        # arm → selection, or arm-s<seed> → selection for an arm redrawn per seed (random)
        "selections": {
            a + ("" if s is None else f"-s{s}"): info["path"]
            for a, by_seed in selections.items()
            for s, info in by_seed.items()
        },
        "adapters": {f"{a}-s{s}": str(v) for (a, s), v in adapters.items()},
        "evaluations": eval_dirs,
        **({"pairwise": judge_dirs} if judge_dirs else {}),
        **(
            {
                "mods_seed": {
                    "coverage": str(exp.mods_seed_built.coverage),
                    "adapter": str(exp.mods_seed_built.adapter) if exp.mods_seed_built.adapter else None,
                    "seed_model": exp.mods_seed_built.label,
                }
            }
            if exp.mods_seed_built
            else {}
        ),
        "leaderboard": {k: str(v) for k, v in board.items()},
        "checkpoint": str(checkpoint) if checkpoint else None,
    }
    write_json(exp.root / cfg.experiment.name / "index.json", index)
    published = None
    if cfg.publish.enabled:
        from cpqs_bench.publish.run import publish_run

        published = exp.pipe.step_always(
            f"publish ({'dry run' if cfg.publish.dry_run else 'Hub'})",
            lambda: publish_run(exp.root / cfg.experiment.name, cfg.publish, dry_run=cfg.publish.dry_run),
        )
    minutes = (time.monotonic() - exp.pipe.t0) / 60
    log(f"done in {minutes:.1f} min: ran {len(exp.pipe.ran)} stages, skipped {len(exp.pipe.skipped)} (DONE)")
    for line in exp.pipe.breakdown():
        log(line)
    loads = getattr(exp.loader, "loads", None)
    if loads is not None:
        log(f"model loads in this process: {len(loads)} ({', '.join(k[0] for k in loads) or 'none'})")
    print_summary(Path(board["json"]), log)
    return {
        "index": index,
        "minutes": minutes,
        "ran": exp.pipe.ran,
        "skipped": exp.pipe.skipped,
        "published": published,
        "timings": exp.pipe.timings,
        "model_loads": list(loads or []),
    }


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
