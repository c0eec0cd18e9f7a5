"""The "selector validity" table (``validity.md``) and figure (``validity.png``: AUC per kind per selector, dots with
95 % CIs) from a ``validity.json`` document."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from cpqs_bench.io import write_bytes, write_text


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _cell(value: float | None, ci: list[float | None]) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} [{_f(ci[0])}, {_f(ci[1])}]"


def _order(rows: list[dict[str, Any]], key: str) -> tuple[list[str], list[str]]:
    selectors = list(dict.fromkeys(r["selector"] for r in rows))
    cols = list(dict.fromkeys(r[key] for r in rows))
    return selectors, cols


def markdown(doc: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
    meta = meta or {}
    lines = ["# Selector validity", "", f"Model: `{doc['model']}`."]
    planted = doc["tracks"].get("planted")
    if planted:
        p = meta.get("planted", {})
        src = ", ".join(f"{d}: {s.get('name')}" for d, s in p.get("sources", {}).items())
        lines += [
            "",
            "## Planted defects",
            "",
            f"{p.get('clean', '?')} clean rows ({src}), {p.get('planted', '?')} planted variants. "
            "Paired AUC = P(clean row scores above its own variant); unpaired AUC = P(a clean row of the kind's "
            "domain scores above a variant of the kind); ties count ½, an excluded row is the selector's lowest "
            "score; 95 % percentile bootstrap CIs. 0.5 = blind, below 0.5 = the selector prefers the defect.",
        ]
        rows = planted["rows"]
        selectors, kinds = _order(rows, "kind")
        by = {(r["selector"], r["kind"]): r for r in rows}
        n = {k: next(r["n"] for r in rows if r["kind"] == k) for k in kinds}
        for metric, ci, title in (
            ("paired_auc", "paired_ci", "Paired AUC"),
            ("unpaired_auc", "unpaired_ci", "Unpaired AUC"),
        ):
            lines += ["", f"**{title}** (n variants per kind in the header)", ""]
            lines.append("| selector | " + " | ".join(f"{k} (n={n[k]})" for k in kinds) + " |")
            lines.append("|---" * (len(kinds) + 1) + "|")
            for s in selectors:
                cells = [_cell(by[s, k][metric], by[s, k][ci]) if (s, k) in by else "–" for k in kinds]
                lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines += ["", "**Excluded rows** (clean rows of the kind's domain + its variants; overall: all rows)", ""]
        lines.append("| selector | " + " | ".join(kinds) + " |")
        lines.append("|---" * (len(kinds) + 1) + "|")
        for s in selectors:
            lines.append(f"| {s} | " + " | ".join(str(by[s, k]["excluded"]) if (s, k) in by else "–" for k in kinds))
            lines[-1] += " |"
    pairs = doc["tracks"].get("pairs")
    if pairs:
        p = meta.get("pairs", {})
        sizes = p.get("subset_sizes", {})
        lines += [
            "",
            "## Labelled pairs",
            "",
            f"AlpacaEval answers to the same prompt, stronger vs weaker model ({p.get('pairs', '?')} pairs). "
            f"Pairwise accuracy = P(score(strong) > score(weak)), ties ½, 95 % bootstrap CI. length_matched: "
            f"response lengths within 1 + {p.get('length_band', '?')} of each other (target tokens); "
            f"strong_shorter: the stronger answer is the shorter. Subset sizes: "
            + ", ".join(f"{k} {v}" for k, v in sizes.items())
            + ".",
        ]
        if pairs.get("note"):
            lines += ["", f"*Note: {pairs['note']}.*"]
        selectors, subsets = _order(pairs["rows"], "subset")
        by = {(r["selector"], r["subset"]): r for r in pairs["rows"]}
        lines += ["", "| selector | " + " | ".join(subsets) + " |", "|---" * (len(subsets) + 1) + "|"]
        for s in selectors:
            cells = [_cell(by[s, k]["accuracy"], by[s, k]["ci"]) if (s, k) in by else "–" for k in subsets]
            mark = " ¹" if s == "cpqs" else ""
            lines.append(f"| {s}{mark} | " + " | ".join(cells) + " |")
        if "cpqs" in selectors:
            lines += ["", "¹ partly in-distribution (see the note)."]
    lines += ["", "## Scoring cost", "", "| selector | seconds | response tokens |", "|---|---|---|"]
    for s, c in doc["cost"].items():
        lines.append(f"| {s} | {c['seconds']:.1f} | {c['tokens']} |")
    excl = meta.get("excluded_overlapping_training")
    cnn = meta.get("cnn")
    if cnn is not None:
        how = "trained here" if cnn.get("trained_here") else f"checkpoint {cnn.get('checkpoint')}"
        extra = ""
        if cnn.get("trained_here"):
            extra = (
                f" on {cnn.get('n_pairs')} pairs in {cnn.get('seconds', 0):.0f} s "
                f"({cnn.get('dropped_training_pairs')} training pairs dropped for sharing an instruction with the "
                "fixtures)"
            )
        lines += ["", f"CPQS CNN: {how}{extra}."]
    if excl is not None:
        pl = excl.get("planted", {})
        lines.append(
            f"Validity rows excluded for sharing an instruction with the CNN's training pairs: "
            f"{pl.get('clean', 0)} clean, planted by kind {pl.get('by_kind', {})}, {excl.get('pairs', 0)} pairs."
        )
    return "\n".join(lines) + "\n"


def render_png(doc: dict[str, Any]) -> bytes:
    """Dots with 95 % CIs: one panel per kind (paired AUC filled, unpaired hollow) and one for the pairs track."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, list[tuple[str, str, float | None, list]]]] = []
    planted = doc["tracks"].get("planted")
    if planted:
        selectors, kinds = _order(planted["rows"], "kind")
        by = {(r["selector"], r["kind"]): r for r in planted["rows"]}
        for k in kinds:
            items = []
            for s in selectors:
                r = by.get((s, k))
                if r:
                    items.append((s, "paired", r["paired_auc"], r["paired_ci"]))
                    items.append((s, "unpaired", r["unpaired_auc"], r["unpaired_ci"]))
            panels.append((f"planted: {k} (n={by[selectors[0], k]['n']})", items))
    pairs = doc["tracks"].get("pairs")
    if pairs:
        items = [(r["selector"], r["subset"], r["accuracy"], r["ci"]) for r in pairs["rows"]]
        panels.append(("pairs: accuracy", items))
    if not panels:
        raise ValueError("no track to plot")
    ncol = min(4, len(panels))
    nrow = (len(panels) + ncol - 1) // ncol
    selectors = list(dict.fromkeys(s for _, items in panels for s, *_ in items))
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(3.4 * ncol, 0.6 + 0.32 * len(selectors) * nrow + 0.6 * nrow), squeeze=False
    )
    styles = {
        "paired": dict(marker="o", color="#1f5aa6", mfc="#1f5aa6"),
        "unpaired": dict(marker="o", color="#d95f02", mfc="white"),
        "overall": dict(marker="o", color="#333333", mfc="#333333"),
        "length_matched": dict(marker="s", color="#1b9e77", mfc="#1b9e77"),
        "strong_shorter": dict(marker="^", color="#7570b3", mfc="white"),
    }
    offsets = {"paired": -0.15, "unpaired": 0.15, "overall": -0.2, "length_matched": 0.0, "strong_shorter": 0.2}
    y = {s: i for i, s in enumerate(selectors)}
    for ax, (title, items) in zip(axes.flat, panels):
        seen = set()
        for s, what, value, ci in items:
            if value is None:
                continue
            st = styles.get(what, dict(marker="o", color="black", mfc="black"))
            lo = value - ci[0] if ci[0] is not None else 0
            hi = ci[1] - value if ci[1] is not None else 0
            ax.errorbar(
                value,
                y[s] + offsets.get(what, 0),
                xerr=[[lo], [hi]],
                fmt=st["marker"],
                color=st["color"],
                mfc=st["mfc"],
                ms=5,
                capsize=2,
                lw=1,
                label=what if what not in seen else None,
            )
            seen.add(what)
        ax.axvline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xlim(-0.02, 1.02)
        ax.set_yticks(range(len(selectors)), selectors, fontsize=8)
        ax.set_ylim(len(selectors) - 0.5, -0.5)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        if title.startswith("pairs"):  # outside the axes, where it hides no dot
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"Selector validity ({doc['model']}): AUC / accuracy with 95% CIs; 0.5 = blind", fontsize=10)
    if planted:
        handles = [
            plt.Line2D([], [], ls="", marker="o", color=styles[w]["color"], mfc=styles[w]["mfc"], label=f"{w} AUC")
            for w in ("paired", "unpaired")
        ]
        fig.legend(handles=handles, loc="upper right", fontsize=8, ncol=2, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def write(out: Path, doc: dict[str, Any], meta: dict[str, Any] | None = None, *, figure: bool = True) -> None:
    write_text(out / "validity.md", markdown(doc, meta))
    if figure:
        write_bytes(out / "validity.png", render_png(doc))
