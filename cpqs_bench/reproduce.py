"""``cpqs-bench reproduce``: one command runs a whole experiment and tells the truth about what it found.

Stages (each a run directory ``runs/<experiment>/<stage>/<input-hash>/`` skipped when DONE, resumable inside):

  data → negatives (when the preset generates them) → train-selector (CPQS) → score per selector → select per arm
  → finetune per arm × seed → evaluate per arm × seed and the base model → leaderboard (statistics) → publish

Every stage's input hash includes its upstream hashes, so a changed config never reuses stale results, and a rerun
after ``kill -9`` redoes only what has no DONE marker (the stages themselves resume from their shards/checkpoints).
Arms: ``base`` (no fine-tune), ``full``, one per selector (top budget), ``<selector>-bottom`` for
``selectors.bottom_arms``. Every fine-tuned arm uses the one frozen recipe; the statistics refuse mixed recipes.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cpqs_bench import rundir
from cpqs_bench.config import Config, config_hash, load_config, preset_path, to_dict
from cpqs_bench.io import read_json, read_jsonl, sha256_file, write_json, write_jsonl

LEADERBOARD_DIR = Path(__file__).resolve().parent.parent / "leaderboards"


@dataclass
class Plan:
    cfg: Config
    preset: str
    overrides: tuple[str, ...]
    root: Path
    log: Callable[[str], None] = print
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    n_stages: int = 0
    i_stage: int = 0

    def stage(self, name: str, inputs: dict[str, Any]) -> rundir.Stage:
        return rundir.stage(self.root, self.cfg.experiment.name, name, inputs)

    def tracker(self, stage_name: str) -> Any:
        """A W&B run for one stage (``publish.wandb``); offline without a key; never fails the pipeline."""
        from cpqs_bench.tracking import Tracker

        mode = None if self.cfg.publish.wandb_mode == "auto" else self.cfg.publish.wandb_mode
        return Tracker(self.cfg.experiment.name, stage_name, enabled=self.cfg.publish.wandb, mode=mode,
                       dir=self.root / self.cfg.experiment.name, project=self.cfg.publish.wandb_project,
                       config=to_dict(self.cfg))

    def announce(self, name: str, st: rundir.Stage) -> bool:
        """Log the stage; True when it must run (no DONE)."""
        self.i_stage += 1
        elapsed = time.monotonic() - self.t0
        eta = ""
        if self.done and self.i_stage > 1:
            per = elapsed / max(1, len(self.done))
            eta = f", ETA ~{per * (self.n_stages - self.i_stage + 1) / 60:.1f} min"
        status = "skip (DONE)" if st.done else "run"
        self.log(f"[stage {self.i_stage}/{self.n_stages}] {name}: {status}  ({elapsed / 60:.1f} min elapsed{eta})  "
                 f"{st.path}")
        (self.skipped if st.done else self.done).append(name)
        return not st.done


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


def _messages_row(ex: Any) -> dict[str, Any]:
    return {"id": ex.id, "messages": list(ex.prompt) + [{"role": "assistant", "content": ex.response}],
            **({"metadata": ex.metadata} if ex.metadata else {})}


# --------------------------------------------------------------------------------------------------------- stages
def stage_data(p: Plan) -> dict[str, Any]:
    """Read and normalise the pool once; write it as ``messages`` JSONL (ids kept) for every later stage."""
    from cpqs_bench.data.pool import read_pool, resolve_source

    d = p.cfg.data
    source, _ = resolve_source(d.pool, d.mirror)
    src_hash = sha256_file(source) if not source.startswith("hf:") else source
    cq = p.cfg.selectors.cpqs
    inputs = {"data": to_dict(d), "source": src_hash, "cpqs_pairs": cq.pairs_source, "n_pairs": cq.n_pairs,
              "pairs": cq.pairs}
    st = p.stage("data", inputs)
    if p.announce("data", st):
        st.begin()
        pool = read_pool(d.pool, schema=d.schema, field_map=d.field_map, mirror=d.mirror, limit=d.pool_limit,
                         offset=d.pool_offset, max_rejected_fraction=d.max_rejected_fraction,
                         rejected_path=st.file("rejected.jsonl"))
        write_jsonl(st.file("pool.jsonl"), (_messages_row(e) for e in pool.examples))
        extra: dict[str, Any] = {"pool": pool.summary()}
        if cq.pairs_source == "generate":
            # instructions for generated negatives: from the pairs source, disjoint from the pool being scored
            seen = {e.instruction for e in pool.examples}
            pairs_pool = read_pool(cq.pairs, mirror=d.mirror, max_rejected_fraction=d.max_rejected_fraction)
            fresh = [e for e in pairs_pool.examples if e.instruction not in seen][: cq.n_pairs]
            write_jsonl(st.file("pairs_pool.jsonl"), (_messages_row(e) for e in fresh))
            extra["pairs_pool"] = {"source": pairs_pool.source, "sha256": pairs_pool.sha256, "n": len(fresh)}
        st.finish(data_sha256={"pool": pool.sha256}, **extra)
    m = st.manifest()
    return {"pool": str(st.file("pool.jsonl")), "pool_hash": st.input_hash, "pool_sha256": m["data_sha256"]["pool"],
            "pairs_pool": str(st.file("pairs_pool.jsonl")) if st.file("pairs_pool.jsonl").exists() else None,
            "n": m["pool"]["kept"]}


def stage_negatives(p: Plan, data: dict[str, Any]) -> str | None:
    cq = p.cfg.selectors.cpqs
    if "cpqs" not in p.cfg.selectors.names or cq.pairs_source != "generate":
        return None
    from cpqs_bench.data import negatives

    st = p.stage("negatives", {"data": data["pool_hash"], "generator": cq.generator, "model": to_dict(p.cfg.model),
                               "prompt": to_dict(p.cfg.prompt), "max_new_tokens": cq.generation_max_new_tokens})
    if p.announce("negatives", st):
        st.begin()
        summary = negatives.main(data["pairs_pool"], cq.generator, str(st.file("negatives.jsonl")), config=p.preset,
                                 overrides=p.overrides)
        st.finish(summary=summary)
    return str(st.file("negatives.jsonl"))


def stage_train_selector(p: Plan, data: dict[str, Any], negatives_path: str | None) -> str | None:
    if "cpqs" not in p.cfg.selectors.names:
        return None
    from cpqs_bench.selectors.cpqs import train

    inputs = {"data": data["pool_hash"], "negatives": sha256_file(negatives_path) if negatives_path else None,
              "cpqs": to_dict(p.cfg.selectors.cpqs), "model": to_dict(p.cfg.model), "prompt": to_dict(p.cfg.prompt)}
    st = p.stage("train-selector", inputs)
    if p.announce("train-selector", st):
        st.begin()
        with p.tracker("train-selector") as tr:
            metrics = train.main(p.preset, p.overrides, out=str(st.path / "checkpoint"),
                                 data=data["pairs_pool"], negatives=negatives_path)
            tr.log_metrics({f"val/{k}": v for k, v in (metrics.get("val") or {}).items()
                            if isinstance(v, (int, float))})
        st.finish(metrics={k: v for k, v in metrics.items() if k in ("val", "train", "n_pairs", "pairs")})
    return str(st.path / "checkpoint")


def scoring_settings(cfg: Config) -> dict[str, Any]:
    """What a selector's scores depend on: not the budget, the arm list or which selectors run."""
    settings = to_dict(cfg.selectors)
    for key in ("names", "budget", "bottom_arms"):
        settings.pop(key)
    return settings


def stage_scores(p: Plan, data: dict[str, Any], checkpoint: str | None) -> dict[str, str]:
    from cpqs_bench import score

    out = {}
    for name in p.cfg.selectors.names:
        inputs = {"data": data["pool_hash"], "selector": name, "selectors": scoring_settings(p.cfg),
                  "model": to_dict(p.cfg.model), "prompt": to_dict(p.cfg.prompt),
                  "checkpoint": sha256_file(Path(checkpoint) / "model.safetensors")
                  if name == "cpqs" and checkpoint else None}
        st = p.stage(f"score/{name}", inputs)
        if p.announce(f"score {name}", st):
            st.begin()
            with p.tracker(f"score-{name}") as tr:
                summary = score.main(name, data["pool"], st.file("scores.jsonl"),
                                     checkpoint=checkpoint if name == "cpqs" else None, config=p.preset,
                                     overrides=p.overrides, workdir=st.path / "work")
                tr.log_histogram(f"scores/{name}", [r["score"] for r in read_jsonl(st.file("scores.jsonl"))
                                                    if r.get("score") is not None])
            st.finish(summary=summary)
        out[name] = str(st.file("scores.jsonl"))
    return out


def stage_selections(p: Plan, data: dict[str, Any], scores: dict[str, str]) -> dict[str, str]:
    from cpqs_bench import select

    out = {}
    for arm, selector, bottom in arms(p.cfg):
        src = scores[selector] if selector else None
        inputs = {"arm": arm, "budget": p.cfg.selectors.budget, "bottom": bottom, "data": data["pool_hash"],
                  "scores": sha256_file(src) if src else None}
        st = p.stage(f"select/{arm}", inputs)
        if p.announce(f"select {arm}", st):
            st.begin()
            if selector is None:  # the full pool: every example kept
                ids = [r["id"] for r in read_jsonl(data["pool"])]
                rows = [{"id": i, "score": None, "rank": k + 1, "kept": True, "reason": "full pool"}
                        for k, i in enumerate(ids)]
            else:
                rows = select.select(read_jsonl(src), p.cfg.selectors.budget, bottom=bottom)
            write_jsonl(st.file("selection.jsonl"), rows)
            st.finish(kept=sum(r["kept"] for r in rows), total=len(rows))
        out[arm] = str(st.file("selection.jsonl"))
    return out


def stage_finetune(p: Plan, data: dict[str, Any], selections: dict[str, str]) -> dict[tuple[str, int], str]:
    from cpqs_bench.finetune import sft

    out = {}
    for arm in selections:
        for seed in p.cfg.experiment.seeds:
            inputs = {"arm": arm, "seed": seed, "selection": sha256_file(selections[arm]),
                      "finetune": to_dict(p.cfg.finetune), "model": to_dict(p.cfg.model),
                      "prompt": to_dict(p.cfg.prompt), "data": data["pool_hash"]}
            st = p.stage(f"finetune/{arm}-s{seed}", inputs)
            if p.announce(f"finetune {arm} seed {seed}", st):
                st.begin()
                with p.tracker(f"finetune-{arm}-s{seed}") as tr:
                    manifest = sft.main(selections[arm], st.path / "adapter", config=p.preset,
                                        overrides=p.overrides, pool=data["pool"], seed=seed, arm=arm)
                    tr.log_metrics({k: v for k, v in manifest.items() if isinstance(v, (int, float))
                                    and not isinstance(v, bool)})
                st.finish(recipe_hash=manifest["recipe_hash"], arm=arm, seed=seed)
            out[(arm, seed)] = str(st.path / "adapter")
    return out


def stage_evaluate(p: Plan, data: dict[str, Any], adapters: dict[tuple[str, int], str]) -> list[str]:
    from cpqs_bench.evaluate import harness

    jobs: list[tuple[str, int | None, str | None]] = [("base", None, None)]
    jobs += [(arm, seed, path) for (arm, seed), path in adapters.items()]
    out = []
    for arm, seed, adapter in jobs:
        recipe_hash = read_json(Path(adapter) / "manifest.json")["recipe_hash"] if adapter else None
        inputs = {"arm": arm, "seed": seed, "adapter": sha256_file(Path(adapter) / "manifest.json") if adapter else None,
                  "evaluate": to_dict(p.cfg.evaluate), "model": to_dict(p.cfg.model)}
        st = p.stage(f"evaluate/{arm}" + (f"-s{seed}" if seed is not None else ""), inputs)
        if p.announce(f"evaluate {arm}" + (f" seed {seed}" if seed is not None else ""), st):
            st.begin()
            with p.tracker(f"evaluate-{arm}" + (f"-s{seed}" if seed is not None else "")) as tr:
                metrics = harness.main(
                    p.cfg.model.id, out=st.path, adapter=adapter, revision=p.cfg.model.revision,
                    settings=p.cfg.evaluate, device=p.cfg.model.device,
                    extra_manifest={"arm": arm, "seed": seed, "recipe_hash": recipe_hash,
                                    "config_hash": config_hash(p.cfg), "seeds": list(p.cfg.experiment.seeds),
                                    "data_sha256": {"pool": data["pool_sha256"]}, "model_id": p.cfg.model.id})
                tr.log_metrics(metrics)
        out.append(str(st.path))
    return out


def stage_leaderboard(p: Plan, eval_dirs: list[str]) -> dict[str, Path]:
    from cpqs_bench import leaderboard

    p.i_stage += 1
    p.log(f"[stage {p.i_stage}/{p.n_stages}] leaderboard: statistics over {len(eval_dirs)} evaluations")
    out_dir = LEADERBOARD_DIR if p.cfg.experiment.name == "smoke" else p.root / p.cfg.experiment.name / "leaderboards"
    with p.tracker("leaderboard") as tr:
        board = leaderboard.main(eval_dirs, out_dir, p.cfg.experiment.name, p.cfg.experiment.description or None)
        doc = json.loads(Path(board["json"]).read_text())
        tr.log_table("leaderboard", ["task", "arm", "mean", "std", "n_seeds", "significance"],
                     [[t, r["arm"], r["mean"], r["std"], r["n_seeds"], r["marker"]]
                      for t in doc["tasks"] for r in doc["tables"][t]])
    return board


# ----------------------------------------------------------------------------------------------------------- main
def count_stages(cfg: Config) -> int:
    n_arms = len(arms(cfg))
    cpqs = "cpqs" in cfg.selectors.names
    negatives = cpqs and cfg.selectors.cpqs.pairs_source == "generate"
    seeds = len(cfg.experiment.seeds)
    return (1 + negatives + cpqs + len(cfg.selectors.names) + n_arms + n_arms * seeds * 2 + 1 + 1
            + int(cfg.publish.enabled))


def main(config: str = "smoke", overrides: tuple[str, ...] | list[str] = (), *,
         log: Callable[[str], None] = print) -> dict[str, Any]:
    cfg = load_config(config, list(overrides))
    preset = str(preset_path(config))
    p = Plan(cfg, preset, tuple(overrides), Path(cfg.experiment.output_dir), log=log)
    p.n_stages = count_stages(cfg)
    log(f"cpqs-bench reproduce {cfg.experiment.name}: config hash {config_hash(cfg)}, {p.n_stages} stages, "
        f"run dir {p.root / cfg.experiment.name}")
    data = stage_data(p)
    negatives_path = stage_negatives(p, data)
    checkpoint = stage_train_selector(p, data, negatives_path)
    scores = stage_scores(p, data, checkpoint)
    selections = stage_selections(p, data, scores)
    adapters = stage_finetune(p, data, selections)
    eval_dirs = stage_evaluate(p, data, adapters)
    board = stage_leaderboard(p, eval_dirs)
    index = {"experiment": cfg.experiment.name, "config_hash": config_hash(cfg), "preset": preset,
             "overrides": list(overrides), "data": data, "scores": scores, "selections": selections,
             "adapters": {f"{a}-s{s}": v for (a, s), v in adapters.items()}, "evaluations": eval_dirs,
             "leaderboard": {k: str(v) for k, v in board.items()}, "checkpoint": checkpoint}
    write_json(p.root / cfg.experiment.name / "index.json", index)
    published = None
    if cfg.publish.enabled:
        from cpqs_bench import publish_run

        p.i_stage += 1
        log(f"[stage {p.i_stage}/{p.n_stages}] publish ({'dry run' if cfg.publish.dry_run else 'Hub'})")
        published = publish_run.main(p.root / cfg.experiment.name, dry_run=cfg.publish.dry_run,
                                     namespace=cfg.publish.hub_namespace)
    minutes = (time.monotonic() - p.t0) / 60
    log(f"done in {minutes:.1f} min: ran {len(p.done)} stages, skipped {len(p.skipped)} (DONE)")
    print_summary(board["json"], log)
    return {"index": index, "minutes": minutes, "ran": p.done, "skipped": p.skipped, "published": published}


def print_summary(board_json: Path, log: Callable[[str], None]) -> None:
    """The final table on the terminal: mean ± std over seeds per task and arm, and the significance markers."""
    from rich.console import Console
    from rich.table import Table

    from cpqs_bench.leaderboard import fmt_pct

    doc = json.loads(Path(board_json).read_text())
    con = Console()
    con.print(f"[bold]{doc['experiment']}[/bold] — {doc['note']}")
    for task in doc["tasks"]:
        t = Table(title=task)
        for col in ("arm", "mean ± std (%)", "seeds", "significance"):
            t.add_column(col)
        for row in doc["tables"][task]:
            std = "—" if row["std"] is None else fmt_pct(row["std"])
            t.add_row(row["arm"], f"{fmt_pct(row['mean'])} ± {std}", str(row["n_seeds"]), row["marker"])
        con.print(t)
    log(f"leaderboard: {Path(board_json).with_suffix('.md')}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="smoke", help="preset name or YAML path (default: smoke)")
    p.add_argument("overrides", nargs="*", help="key=value overrides")


def run_cli(args: argparse.Namespace) -> int:
    main(args.config, tuple(args.overrides))
    return 0
