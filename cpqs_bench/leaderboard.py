"""Leaderboard renderer: one Markdown page, its machine-readable JSON twin and a bar chart per experiment.

Why a single intermediate document: the Markdown and the PNG are both drawn from the JSON document built by
``build_document``, so the three files cannot disagree about a number. Every row of the provenance table carries
the commit, config hash, data checksums, model revision, package versions, hardware and seeds of the run it
describes, because a leaderboard number without them cannot be reproduced or audited.

Scores are fractions in [0, 1] in the JSON; the Markdown shows percent (means) and percentage points (differences).
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any, Sequence

from cpqs_bench.io import write_bytes, write_json, write_text
from cpqs_bench.stats import ArmResult, DEFAULT_REFERENCES, load_arm_result, summarize

SCHEMA = "cpqs-bench/leaderboard/v1"
PACKAGES = ("torch", "transformers", "peft", "trl", "lm_eval")
MISSING = "missing"
UP, DOWN = "▲", "▼"


# ----------------------------------------------------------------------------------------------- formatting


def fmt_pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def fmt_pp(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.1f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.3f}" if round(p, 3) >= 0.001 else f"{p:.1e}"


def _cell(value: Any) -> str:
    """Markdown-safe table cell: pipes escaped and newlines flattened so a value cannot break the table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _compact(value: Any) -> str:
    """Short text for a provenance value that may be a string, a mapping or a list (``None`` inside: "null")."""
    if value is None or value == {} or value == [] or value == "":
        return MISSING
    return _compact_inner(value)


def _compact_inner(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_compact_inner(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    if isinstance(value, (list, tuple)):
        return ",".join(_compact_inner(v) for v in value)
    return str(value)


# ----------------------------------------------------------------------------------------------- document


def provenance_row(result: ArmResult) -> dict[str, Any]:
    """Provenance of one (arm, seed) from its manifest; absent fields are the string ``"missing"``, never guessed."""
    m = result.manifest
    packages = m.get("package_versions") or m.get("packages") or {}
    versions = {_norm_pkg(k): v for k, v in packages.items()} if isinstance(packages, dict) else {}
    data = m.get("data_sha256") or {}
    return {
        "arm": result.arm, "seed": result.seed, "recipe_hash": result.recipe_hash,
        "commit": _commit(m), "config_hash": m.get("config_hash") or MISSING,
        "data_sha256": dict(sorted(data.items())) if isinstance(data, dict) else {"?": str(data)},
        "model_id": m.get("model_id") or MISSING, "model_revision": m.get("model_revision") or MISSING,
        "package_versions": {p: versions.get(p) or MISSING for p in PACKAGES},
        "hardware": m.get("hardware") or MISSING, "seeds": m.get("seeds") or MISSING,
    }


def _commit(manifest: dict[str, Any]) -> str:
    """``commit``, or ``git.sha`` as written by ``cpqs_bench.provenance``; a dirty tree is marked, not hidden."""
    if manifest.get("commit"):
        return str(manifest["commit"])
    git = manifest.get("git")
    if isinstance(git, dict) and git.get("sha"):
        return str(git["sha"]) + ("+dirty" if git.get("dirty") else "")
    return MISSING


def _norm_pkg(name: str) -> str:
    return name.lower().replace("-", "_")


def _task_rows(task_summary: dict[str, Any], arms: list[str], refs: list[str]) -> list[dict[str, Any]]:
    rows = []
    for arm in arms:
        stats = task_summary["arms"].get(arm)
        if stats is None:
            continue
        vs = {ref: (None if arm == ref else task_summary["comparisons"].get(ref, {}).get(arm)) for ref in refs}
        rows.append({
            "arm": arm, "mean": stats["mean"], "std": stats["std"], "n_seeds": stats["n_seeds"],
            "n_items": stats["n_items"], "item_mean": stats["item_mean"],
            "item_ci_low": stats["item_ci_low"], "item_ci_high": stats["item_ci_high"],
            "vs": vs, "marker": _marker(arm, vs),
        })
    return rows


def _marker(arm: str, vs: dict[str, dict[str, Any] | None]) -> str:
    parts = []
    for ref, cmp in vs.items():
        if ref == arm:
            parts.append(f"{ref}: reference")
        elif cmp is None or cmp["label"] == "n/a":
            parts.append(f"{ref}: n/a")
        elif cmp["significant"]:
            parts.append(f"{ref}: {UP if cmp['direction'] == 'better' else DOWN}")
        else:
            parts.append(f"{ref}: n.s.")
    return "; ".join(parts) if parts else "—"


def figure_caption(summary: dict[str, Any]) -> str:
    return (f"Bars: mean over items of the per-item score (averaged over seeds first), in %. Error bars: "
            f"{100 * summary['ci_level']:.0f}% percentile bootstrap CI of that mean over items "
            f"({summary['n_boot']:,} resamples), i.e. benchmark-sampling uncertainty; seed-to-seed variation is "
            f"the ± std in the tables.")


def build_document(summary: dict[str, Any], results: Sequence[ArmResult], experiment: str,
                   title_note: str) -> dict[str, Any]:
    """The machine-readable leaderboard: everything the Markdown shows, plus the full statistics summary."""
    refs = list(summary["references"])
    arms = list(summary["arms"])
    rank = {a: i for i, a in enumerate(arms)}
    ordered = sorted(results, key=lambda r: (rank.get(r.arm, len(rank)), r.arm, r.seed is not None, r.seed or 0))
    provenance = [provenance_row(r) for r in ordered]
    return {
        "schema": SCHEMA, "experiment": experiment, "note": title_note,
        "score_unit": "fraction in [0, 1] (Markdown shows % and percentage points)",
        "stats": {k: summary[k] for k in ("alpha", "ci_level", "n_boot", "n_perm", "seed", "exact_max_nonzero",
                                          "references", "missing_references", "recipe_hash")}
                 | {"p_adjustment": "none"},
        "arms": arms, "tasks": list(summary["tasks"]),
        "tables": {t: _task_rows(summary["per_task"][t], arms, refs) for t in summary["tasks"]},
        "provenance": provenance,
        "figure": {"file": f"{experiment}.png", "caption": figure_caption(summary)},
        "warnings": list(summary["warnings"]),
        "summary": summary,
    }


# ----------------------------------------------------------------------------------------------- markdown


def render_markdown(doc: dict[str, Any]) -> str:
    st = doc["stats"]
    refs = st["references"]
    lines = [f"# Leaderboard: {doc['experiment']}", "", f"> **Note:** {doc['note']}", ""]
    lines += [
        f"Fine-tuning recipe hash: `{st['recipe_hash'] or MISSING}`. Arms: {', '.join(doc['arms'])}.",
        "",
        "How to read: *mean ± std* is the task score in % over seeds (std with ddof=1; — for one seed). "
        "*Δ vs X* is the paired mean per-item difference (arm − X) in percentage points, with per-item scores "
        f"averaged over seeds first; brackets: {100 * st['ci_level']:.0f}% percentile bootstrap CI "
        f"({st['n_boot']:,} resamples). *p*: two-sided paired sign-flip permutation p-value (exact when at most "
        f"{st['exact_max_nonzero']} differences are non-zero, else {st['n_perm']:,} Monte Carlo flips with the +1 "
        f"correction). {UP}/{DOWN}: significantly better/worse (CI excludes 0 and p < {st['alpha']}); "
        "n.s.: not significant. p-values are not adjusted for multiple comparisons.",
        "",
    ]
    if st["missing_references"]:
        lines += [f"Reference arm(s) not in this run: {', '.join(st['missing_references'])}.", ""]
    for task in doc["tasks"]:
        lines += [f"## {task}", "", *_task_table(doc["tables"][task], refs, st["ci_level"]), ""]
    fig = doc["figure"]
    lines += ["## Figure", "", f"![{doc['experiment']} scores per task and arm]({fig['file']})", "",
              f"*{fig['caption']}*", ""]
    lines += ["## Provenance", "", *_provenance_table(doc["provenance"]), ""]
    if doc["warnings"]:
        lines += ["## Warnings", "", *(f"- {_cell(w)}" for w in doc["warnings"]), ""]
    return "\n".join(lines)


def _task_table(rows: list[dict[str, Any]], refs: list[str], level: float) -> list[str]:
    header = ["Arm", "Mean ± std (%)", "n seeds"]
    for ref in refs:
        header += [f"Δ vs {ref} (pp) [{100 * level:.0f}% CI]", "p"]
    header.append("Significance")
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + ["---"]) + "|"]
    for row in rows:
        std = "—" if row["std"] is None else fmt_pct(row["std"])
        cells = [row["arm"], f"{fmt_pct(row['mean'])} ± {std}", str(row["n_seeds"])]
        for ref in refs:
            cmp = row["vs"].get(ref)
            if row["arm"] == ref:
                cells += ["(reference)", "—"]
            elif cmp is None or cmp["mean_diff"] is None:
                cells += ["n/a", "—"]
            else:
                cells += [f"{fmt_pp(cmp['mean_diff'])} [{fmt_pp(cmp['ci_low'])}, {fmt_pp(cmp['ci_high'])}]",
                          fmt_p(cmp["p_value"])]
        cells.append(row["marker"])
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return out


def _provenance_table(rows: list[dict[str, Any]]) -> list[str]:
    header = ["Arm", "Seed", "Commit", "Config hash", "Recipe hash", "Data sha256", "Model", "Revision",
              *PACKAGES, "Hardware", "Seeds"]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for r in rows:
        data = ", ".join(f"{k}:{str(v)[:8]}" for k, v in r["data_sha256"].items()) or MISSING
        cells = [r["arm"], "—" if r["seed"] is None else r["seed"], _short_commit(r["commit"]), r["config_hash"],
                 r["recipe_hash"] or "— (not fine-tuned)", data, r["model_id"], r["model_revision"],
                 *(r["package_versions"][p] for p in PACKAGES), _compact(r["hardware"]), _compact(r["seeds"])]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return out


def _short_commit(commit: str) -> str:
    return commit if commit == MISSING else commit[:10] + ("+dirty" if commit.endswith("+dirty") else "")


# ----------------------------------------------------------------------------------------------- figure


def render_png(doc: dict[str, Any]) -> bytes:
    """Grouped bars (one group per task, one bar per arm) with bootstrap CI error bars; Agg, no global state."""
    import matplotlib  # imported here: plotting is only needed when rendering
    from matplotlib.figure import Figure

    tasks, arms = doc["tasks"], doc["arms"]
    width = 0.8 / max(1, len(arms))
    fig = Figure(figsize=(max(7.0, 2.8 + len(tasks) * len(arms) * 0.33), 4.8), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["tab10"]
    colors = [cmap(i % 10) for i in range(len(arms))]
    for i, arm in enumerate(arms):
        xs, ys, lo, hi = [], [], [], []
        for t, task in enumerate(tasks):
            row = next((r for r in doc["tables"][task] if r["arm"] == arm), None)
            if row is None:
                continue
            y = row["item_mean"] if row["item_mean"] is not None else row["mean"]
            xs.append(t + (i - (len(arms) - 1) / 2) * width)
            ys.append(100 * y)
            has_ci = row["item_ci_low"] is not None
            lo.append(100 * (y - row["item_ci_low"]) if has_ci else 0.0)
            hi.append(100 * (row["item_ci_high"] - y) if has_ci else 0.0)
        if xs:
            ax.bar(xs, ys, width * 0.95, yerr=[lo, hi], capsize=3, label=arm, color=colors[i],
                   error_kw={"elinewidth": 1, "ecolor": "black"})
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, max(5.0, min(100.0, _ymax(doc) * 1.15)))
    ax.set_title(f"{doc['experiment']}\n{_wrap(doc['note'], 110)}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.text(0.01, 0.01, _wrap(doc["figure"]["caption"], int(fig.get_figwidth() * 17)), fontsize=6.5, va="bottom")
    fig.subplots_adjust(left=0.08, right=0.82, bottom=0.2, top=0.86)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _ymax(doc: dict[str, Any]) -> float:
    tops = [100 * (r["item_ci_high"] if r["item_ci_high"] is not None else r["mean"])
            for rows in doc["tables"].values() for r in rows]
    return max(tops, default=0.0)


def _wrap(text: str, width: int) -> str:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return "\n".join([*lines, cur])


# ----------------------------------------------------------------------------------------------- entry points


def render(summary: dict[str, Any], results: Sequence[ArmResult], out_dir: str | Path, experiment: str,
           title_note: str) -> dict[str, Path]:
    """Write ``<experiment>.md``, ``.json`` and ``.png`` atomically under ``out_dir``; return their paths."""
    _check_experiment_name(experiment)
    if not title_note or not title_note.strip():
        raise ValueError("title_note must say what this run is (e.g. 'Smoke run of a 135M model on CPU')")
    out_dir = Path(out_dir)
    doc = build_document(summary, results, experiment, title_note.strip())
    paths = {"md": out_dir / f"{experiment}.md", "json": out_dir / f"{experiment}.json",
             "png": out_dir / f"{experiment}.png"}
    write_bytes(paths["png"], render_png(doc))
    write_json(paths["json"], doc)
    write_text(paths["md"], render_markdown(doc))
    return paths


def _check_experiment_name(experiment: str) -> None:
    if not experiment or "/" in experiment or "\\" in experiment or experiment.startswith("."):
        raise ValueError(f"experiment name {experiment!r} must be a plain file stem (no path separators)")


def find_eval_dirs(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Evaluation directories among ``inputs``: each input is an eval dir itself or a run dir searched recursively.

    An eval dir is one holding ``manifest.json``, ``items.jsonl`` and ``metrics.json`` together, so other manifests
    in a run directory (training, selection) are not mistaken for evaluation results.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    found: list[Path] = []
    for root in map(Path, inputs):
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a directory")
        hits = [root] if _is_eval_dir(root) else sorted(p.parent for p in root.rglob("items.jsonl")
                                                        if _is_eval_dir(p.parent))
        if not hits:
            raise FileNotFoundError(f"{root}: no evaluation directory (manifest.json + items.jsonl + metrics.json)")
        found += [h for h in hits if h not in found]
    return found


def _is_eval_dir(d: Path) -> bool:
    # DONE is written last by the evaluation: without it the directory is an interrupted run, never a result
    return all((d / n).is_file() for n in ("manifest.json", "items.jsonl", "metrics.json", "DONE"))


def default_note(results: Sequence[ArmResult]) -> str:
    """A factual note from the manifests, for when the caller gives none; it never claims a paper result."""
    models = sorted({str(r.manifest.get("model_id") or MISSING) for r in results})
    hardware = sorted({_compact(r.manifest.get("hardware")) for r in results})
    n_seeds = sorted({sum(1 for o in results if o.arm == r.arm) for r in results if r.arm != "base"})
    return (f"Model(s): {', '.join(models)}; hardware: {'; '.join(hardware)}; seeds per fine-tuned arm: "
            f"{', '.join(map(str, n_seeds)) or '0'}. Generated by cpqs-bench; check provenance before citing.")


def main(inputs: str | Path | Sequence[str | Path], out_dir: str | Path, experiment: str,
         title_note: str | None = None, *, references: Sequence[str] = DEFAULT_REFERENCES, n_boot: int = 10_000,
         seed: int = 0) -> dict[str, Path]:
    """``cpqs-bench leaderboard``: load evaluation results, compute statistics, write the leaderboard files.

    ``inputs`` is one or more evaluation directories or run directories (searched recursively for evaluation
    directories). Raises ``RecipeMismatch`` if fine-tuned arms disagree on the recipe and ``ValueError`` /
    ``FileNotFoundError`` for malformed or missing inputs. Returns ``{"md"|"json"|"png": path}``.
    """
    results = [load_arm_result(d) for d in find_eval_dirs(inputs)]
    summary = summarize(results, references=references, n_boot=n_boot, seed=seed)
    return render(summary, results, out_dir, experiment, title_note or default_note(results))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``cpqs-bench leaderboard`` (registered by ``cpqs_bench.cli``)."""
    parser.add_argument("inputs", nargs="+", type=Path,
                        help="evaluation directories, or run directories searched recursively for them")
    parser.add_argument("--experiment", required=True, help="file stem of the outputs (<experiment>.md/.json/.png)")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the leaderboard files are written")
    parser.add_argument("--note", default=None,
                        help="plain note at the top, e.g. 'Smoke run of a 135M model on CPU - not a paper result' "
                             "(default: a factual note built from the manifests)")
    parser.add_argument("--references", default=",".join(DEFAULT_REFERENCES),
                        help="comma-separated reference arms for paired comparisons (default: %(default)s)")
    parser.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap/permutation RNG (default: 0)")


def run_cli(args: argparse.Namespace) -> int:
    references = tuple(r.strip() for r in args.references.split(",") if r.strip())
    paths = main(args.inputs, args.out_dir, args.experiment, args.note, references=references,
                 n_boot=args.n_boot, seed=args.seed)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


__all__ = ["render", "main", "build_document", "render_markdown", "render_png", "find_eval_dirs", "provenance_row",
           "default_note", "fmt_pct", "fmt_pp", "fmt_p", "add_arguments", "run_cli"]
