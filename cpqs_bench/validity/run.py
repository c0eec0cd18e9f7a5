"""Selector validity tracks: screen selectors on ground truth in minutes, before any fine-tune (:func:`validate`).

1. **Planted defects** (:mod:`.tracks`, :mod:`.defects`): clean rows and known-bad variants of them. Per kind and
   overall: the *paired* AUC (each variant against its own clean source row) and the *unpaired* AUC (every clean row
   of the kind's domain against every variant of the kind; instruction difficulty enters here), with percentile
   bootstrap CIs (:mod:`.metrics`). A row a selector excludes counts as its lowest score (as selection treats it);
   ``excluded`` counts the rows of that comparison (clean rows of the domain + the kind's variants; overall: every
   row of the track) the selector excluded.
2. **Labelled pairs**: AlpacaEval answers of a stronger and a weaker model to the same prompt; pairwise accuracy
   P(score(strong) > score(weak)) overall, on the length-matched subset (response lengths in target-tokenizer tokens
   within ``1 + selectors.cpqs.length_band`` of each other, the rule of CPQS's own length-matched check) and on the
   subset where the stronger answer is the shorter. CPQS's CNN is trained on strong-vs-weak answers: this track is
   partly in-distribution for it (noted in the output).

Every selector is scored through :func:`cpqs_bench.score.score_pool` (registry, plugins, ``BASE+STEP``), the same
step as ``score`` and ``reproduce``, on one pool holding both fixtures. ``longest`` and ``random`` are always scored
beside the selectors asked for. A selector that needs a checkpoint (``cpqs``) uses ``checkpoint`` or a CNN trained
here on the configured pairs (``selectors.cpqs``) with every validity instruction excluded from its training pairs;
either way every validity row whose instruction (``overlap_key``) the checkpoint was trained or validated on is
removed from both fixtures for *all* selectors (so every selector is scored on the same rows) and counted.

No reference implementation exists for this screen (ODA, Cherry, Superfiltering and the CPQS code offer none); the
length-matched rule follows ``cpqs_bench/selectors/cpqs/train.py: length_report`` and the tie / exclusion rule follows
``cpqs_bench/compare.py: pair_outcomes``.
"""

from __future__ import annotations

import math
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cpqs_bench.data.example import Example
from cpqs_bench.io import read_jsonl, write_json
from cpqs_bench.validity import metrics as M
from cpqs_bench.validity.tracks import PairsFixture, PlantedFixture

if TYPE_CHECKING:
    from cpqs_bench.config import Config, ModelConfig
    from cpqs_bench.selectors.base import ModelLoader

ALWAYS = ("longest", "random")
TRACKS = ("planted", "pairs")
SUBSETS = ("overall", "length_matched", "strong_shorter")
PAIRS_NOTE = (
    "partly in-distribution for cpqs: its CNN is trained on strong-vs-weak answers to the same instruction, "
    "which is what this track measures"
)


class ValidityError(ValueError):
    pass


def _rng(seed: int, *key: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(k.encode("utf-8")) for k in key)])


def _ci(ci: Sequence[float]) -> list[float | None]:
    return [None if c is None or (isinstance(c, float) and math.isnan(c)) else float(c) for c in ci]


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


# ------------------------------------------------------------------------------------------------ metric rows
def planted_rows(
    selector: str, rows: dict[str, dict[str, Any]], fixture: PlantedFixture, *, n_boot: int, seed: int
) -> list[dict[str, Any]]:
    """One row per kind and ``overall`` (see the module docstring) from ``rows``: id -> score row."""
    key = {i: M.rank_key(r) for i, r in rows.items()}
    excluded = {i for i, r in rows.items() if M.rank_key(r) == -math.inf}
    clean_by_domain: dict[str, list[str]] = {}
    for ex in fixture.clean:
        clean_by_domain.setdefault(ex.metadata["domain"], []).append(ex.id)
    out = []
    groups = [(k, [ex for ex in fixture.planted if ex.metadata["kind"] == k]) for k in fixture.kinds]
    groups.append(("overall", list(fixture.planted)))
    for kind, variants in groups:
        if not variants:
            continue
        if kind == "overall":
            clean_ids = [ex.id for ex in fixture.clean]
        else:
            clean_ids = clean_by_domain.get(variants[0].metadata["domain"], [])
        pairs = [(key[v.metadata["source"]], key[v.id]) for v in variants]
        better = [key[i] for i in clean_ids]
        worse = [key[v.id] for v in variants]
        out.append(
            {
                "selector": selector,
                "kind": kind,
                "n": len(variants),
                "paired_auc": _num(M.paired_auc(pairs)),
                "paired_ci": _ci(M.mean_ci(M.paired_outcomes(pairs), n_boot, _rng(seed, selector, kind, "paired"))),
                "unpaired_auc": _num(M.unpaired_auc(better, worse)),
                "unpaired_ci": _ci(M.unpaired_ci(better, worse, n_boot, _rng(seed, selector, kind, "unpaired"))),
                "excluded": sum(1 for i in [*clean_ids, *(v.id for v in variants)] if i in excluded),
            }
        )
    return out


def pair_subsets(fixture: PairsFixture, lengths: dict[str, int], band: float) -> dict[str, list[tuple[str, str]]]:
    """The (strong, weak) pairs of each subset: ``overall``, ``length_matched`` (:func:`metrics.length_matched`),
    ``strong_shorter`` (the strong answer has fewer tokens)."""
    return {
        "overall": list(fixture.pairs),
        "length_matched": [(s, w) for s, w in fixture.pairs if M.length_matched(lengths[s], lengths[w], band)],
        "strong_shorter": [(s, w) for s, w in fixture.pairs if lengths[s] < lengths[w]],
    }


def pairs_rows(
    selector: str, rows: dict[str, dict[str, Any]], subsets: dict[str, list[tuple[str, str]]], *, n_boot: int, seed: int
) -> list[dict[str, Any]]:
    key = {i: M.rank_key(r) for i, r in rows.items()}
    out = []
    for subset, pairs in subsets.items():
        acc = M.pairwise_accuracy([(key[s], key[w]) for s, w in pairs], n_boot, _rng(seed, selector, subset, "pairs"))
        out.append(
            {"selector": selector, "subset": subset, "n": acc["n"], "accuracy": acc["accuracy"], "ci": _ci(acc["ci"])}
        )
    return out


def response_lengths(cfg: Config, examples: Sequence[Example], loader: ModelLoader | None) -> dict[str, int]:
    """Response length in target-tokenizer tokens (the prompt layer's response span), per id."""
    from cpqs_bench.selectors.base import ScoringContext, response_tokens

    ctx = ScoringContext(cfg, Path("."), loader=loader)
    tok = ctx.tokenizer()
    return {ex.id: len(response_tokens(tok, ex, cfg.prompt)) for ex in examples}


# ------------------------------------------------------------------------------------------------ the entry
def selector_names(selectors: Sequence[str]) -> list[str]:
    """The selectors asked for, then ``longest`` and ``random`` when missing (always shown)."""
    names = [s.strip() for s in selectors if s.strip()]
    if not names:
        raise ValidityError("validate needs at least one selector")
    return list(dict.fromkeys([*names, *ALWAYS]))


def validate(
    cfg: Config,
    selectors: Sequence[str],
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    loader: ModelLoader | None = None,
    planted: PlantedFixture | None = None,
    pairs: PairsFixture | None = None,
    train_log: Callable[[str], None] = print,
    figure: bool = True,
) -> dict[str, Any]:
    """Run the tracks of ``cfg.validate.tracks`` for ``selectors`` (+ longest, random) and write ``validity.json``,
    ``validity.md``, ``validity.png``, ``fixture.json`` and the per-selector scores (``scores/``) into ``out_dir``
    (and, when a CNN is trained here, its checkpoint under ``cpqs_checkpoint/``). Returns the ``validity.json``
    document. ``planted`` / ``pairs`` replace the fixtures the config names (tests, the contract kit)."""
    from cpqs_bench.score import PoolFacts, score_pool
    from cpqs_bench.selectors import registry
    from cpqs_bench.selectors.base import Needs
    from cpqs_bench.validity import report, tracks

    v = cfg.validate
    unknown = [t for t in v.tracks if t not in TRACKS]
    if unknown or not v.tracks:
        raise ValidityError(f"validate.tracks {list(v.tracks)!r}: choose from {', '.join(TRACKS)}")
    out = Path(out_dir)
    names = selector_names(selectors)
    plugins = dict(cfg.selectors.plugins)
    built = {n: registry.get(n, plugins) for n in names}  # unknown names fail here, before any work
    t_fix = time.perf_counter()
    if "planted" in v.tracks and planted is None:
        planted = tracks.planted_fixture(v, cfg.data)
    if "pairs" in v.tracks and pairs is None:
        pairs = tracks.pairs_fixture(v, cfg.data)
    planted = planted if "planted" in v.tracks else None
    pairs = pairs if "pairs" in v.tracks else None
    fixture_seconds = time.perf_counter() - t_fix
    meta: dict[str, Any] = {"selectors": names, "tracks": list(v.tracks), "fixture_seconds": fixture_seconds}
    if planted is not None:
        meta["planted"] = {
            "sources": planted.sources,
            "clean": len(planted.clean),
            "planted": len(planted.planted),
            "kinds": planted.kinds,
            "short_of_n_planted_per_kind": planted.skipped,
        }
    if pairs is not None:
        meta["pairs"] = {"sources": pairs.sources, "pairs": len(pairs.pairs)}

    needs_ckpt = [n for n, sel in built.items() if sel.needs is Needs.CHECKPOINT]
    if needs_ckpt:
        if checkpoint is None:
            from cpqs_bench.selectors.cpqs.train import TrainOptions, train_selector

            checkpoint = out / "cpqs_checkpoint"
            every = [*(planted.examples if planted else []), *(pairs.examples if pairs else [])]
            t0 = time.perf_counter()
            options = TrainOptions(progress=False, log=train_log)
            trained = train_selector(cfg, checkpoint, exclude=every, loader=loader, options=options)
            meta["cnn"] = {
                "trained_here": True,
                "seconds": time.perf_counter() - t0,
                "n_pairs": trained.get("n_pairs"),
                "dropped_training_pairs": (trained.get("overlap") or {}).get("dropped_pairs"),
                "val": trained.get("val"),
            }
        else:
            meta["cnn"] = {"trained_here": False, "checkpoint": str(checkpoint)}
        keys = tracks.training_keys(checkpoint)
        planted, pairs, excluded = tracks.drop_overlap(planted, pairs, keys)
        meta["excluded_overlapping_training"] = excluded
        if planted is not None and not planted.planted:
            raise ValidityError("every planted row overlaps the CNN's training instructions")
        if pairs is not None and not pairs.pairs:
            raise ValidityError("every labelled pair overlaps the CNN's training instructions")

    pool = [*(planted.examples if planted else []), *(pairs.examples if pairs else [])]
    subsets: dict[str, list[tuple[str, str]]] = {}
    if pairs is not None:
        lengths = response_lengths(cfg, pairs.examples, loader)
        subsets = pair_subsets(pairs, lengths, cfg.selectors.cpqs.length_band)
        meta["pairs"]["subset_sizes"] = {k: len(p) for k, p in subsets.items()}
        meta["pairs"]["length_band"] = cfg.selectors.cpqs.length_band

    doc: dict[str, Any] = {"model": _model_name(cfg.model), "tracks": {}, "cost": {}}
    planted_out: list[dict[str, Any]] = []
    pairs_out: list[dict[str, Any]] = []
    for name in names:
        path = out / "scores" / f"{name}.jsonl"
        summary = score_pool(
            cfg,
            pool,
            path,
            selector=name,
            checkpoint=checkpoint if name in needs_ckpt else None,
            workdir=out / "work",
            loader=loader,
            facts=PoolFacts(source="validity fixture"),
        )
        scored = read_jsonl(path)
        by_id = {r["id"]: r for r in scored}
        doc["cost"][name] = {
            "seconds": float(summary["seconds"]),
            "tokens": int(sum(int(r.get("n_tokens") or 0) for r in scored)),
        }
        if planted is not None:
            planted_out += planted_rows(name, by_id, planted, n_boot=v.n_boot, seed=v.seed)
        if pairs is not None:
            pairs_out += pairs_rows(name, by_id, subsets, n_boot=v.n_boot, seed=v.seed)
    if planted is not None:
        doc["tracks"]["planted"] = {"rows": planted_out}
    if pairs is not None:
        doc["tracks"]["pairs"] = {"rows": pairs_out, "note": PAIRS_NOTE}
    write_json(out / "validity.json", doc)
    write_json(out / "fixture.json", meta)
    report.write(out, doc, meta, figure=figure)
    return doc


def _model_name(model: ModelConfig) -> str:
    rev = model.revision
    return f"{model.id}@{rev}" if rev else str(model.id)


# ------------------------------------------------------------------------------------------------ outcome link
def validity_metrics(validity: dict[str, Any]) -> dict[str, dict[str, float]]:
    """metric name -> selector -> value: ``planted/<kind>/paired_auc``, ``planted/<kind>/unpaired_auc``,
    ``pairs/<subset>/accuracy``."""
    out: dict[str, dict[str, float]] = {}
    for r in validity.get("tracks", {}).get("planted", {}).get("rows", []):
        for m in ("paired_auc", "unpaired_auc"):
            if r.get(m) is not None:
                out.setdefault(f"planted/{r['kind']}/{m}", {})[r["selector"]] = float(r[m])
    for r in validity.get("tracks", {}).get("pairs", {}).get("rows", []):
        if r.get("accuracy") is not None:
            out.setdefault(f"pairs/{r['subset']}/accuracy", {})[r["selector"]] = float(r["accuracy"])
    return out


def outcome_deltas(board: dict[str, Any], reference: str = "random") -> dict[str, dict[str, float]]:
    """task -> arm -> improvement over ``reference`` on every proxy task of a leaderboard JSON: the mean difference
    (``tables[task][i].vs[reference].mean_diff``), sign-flipped where lower is better, so that higher = better
    everywhere. The reference itself gets 0."""
    facts = board.get("task_facts", {})
    out: dict[str, dict[str, float]] = {}
    for task, rows in board.get("tables", {}).items():
        f = facts.get(task, {})
        if not f.get("proxy"):
            continue
        sign = 1.0 if f.get("higher_is_better", True) else -1.0
        for row in rows:
            if row["arm"] == reference:
                out.setdefault(task, {})[reference] = 0.0
                continue
            cmp = (row.get("vs") or {}).get(reference)
            if cmp and cmp.get("mean_diff") is not None:
                out.setdefault(task, {})[row["arm"]] = sign * float(cmp["mean_diff"])
    return out


def predicts_outcome(
    validity: dict[str, Any], board: dict[str, Any], reference: str = "random"
) -> list[dict[str, Any]]:
    """Does the screen predict the fine-tuning outcome? For each validity metric and each proxy task of the
    leaderboard ``board``: Spearman across the selectors that have both, between the metric and the arm's
    improvement over ``reference`` (:func:`outcome_deltas`); ``spearman`` is None when undefined (fewer than 3
    selectors or a constant side). Whatever it shows, with the number of selectors it rests on."""
    vm = validity_metrics(validity)
    deltas = outcome_deltas(board, reference)
    rows = []
    for metric, by_sel in vm.items():
        for task, by_arm in deltas.items():
            common = sorted(set(by_sel) & set(by_arm))
            rows.append(
                {
                    "metric": metric,
                    "task": task,
                    "spearman": M.spearman([by_sel[s] for s in common], [by_arm[s] for s in common]),
                    "n_selectors": len(common),
                }
            )
    return rows
