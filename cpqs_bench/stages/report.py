"""The report steps: the leaderboard (statistics over every evaluation, pages) — run by ``reproduce`` and by the
``leaderboard`` verb through the same function — and where its files go."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cpqs_bench.config import Config
from cpqs_bench.io import read_json

if TYPE_CHECKING:
    from typing_extensions import TypedDict, Unpack

    from cpqs_bench.leaderboard import BoardBlocks, StatsOptions

    class LeaderboardOptions(TypedDict, total=False):
        """The keyword options of :func:`cpqs_bench.leaderboard.main` a caller may pass on."""

        stats: StatsOptions
        blocks: BoardBlocks
        task_folders: Sequence[str | Path] | None


def leaderboard_dir(cfg: Config, root: Path) -> Path:
    """``leaderboard.out_dir`` when the preset asks for one (the tracked ``leaderboards/`` for the published
    experiments), else the run directory's ``leaderboards/`` — never chosen by the experiment's name."""
    if cfg.leaderboard.out_dir:
        return Path(cfg.leaderboard.out_dir)
    return root / cfg.experiment.name / "leaderboards"


def check_one_per_comparison(judge_dirs: Sequence[Path]) -> None:
    """Reject two judge directories of one comparison: the leaderboard would pool them as if they were two seeds."""
    seen: dict[tuple, Path] = {}
    for d in judge_dirs:
        m, doc = read_json(Path(d) / "manifest.json"), read_json(Path(d) / "summary.json")
        key = (m["arm"], m.get("seed"), m["reference"], m.get("reference_seed"), doc["judge_identity"], doc["rule"])
        if key in seen:
            raise ValueError(
                f"two pairwise judge directories for {key[0]} seed {key[1]} vs {key[2]} seed {key[3]} "
                f"(same judge and rule): {seen[key]} and {d}; pass the evaluation directories and "
                f"--pairwise with the judge directories to use"
            )
        seen[key] = Path(d)


def write_leaderboard(
    eval_inputs: Sequence[str | Path],
    judge_dirs: Sequence[Path],
    out_dir: str | Path,
    experiment: str,
    note: str | None = None,
    *,
    page: bool = True,
    **options: Unpack[LeaderboardOptions],
) -> dict[str, Path]:
    """Statistics over the evaluations (directories, or run directories searched for them) + the pairwise
    judgements → Markdown, JSON, PNG and the HTML page. ``options``: :func:`cpqs_bench.leaderboard.main`'s
    (stats, blocks, task_folders). The one path for ``reproduce`` and the verb."""
    from cpqs_bench import leaderboard
    from cpqs_bench.leaderboard_page import write_pages

    check_one_per_comparison(judge_dirs)
    board = leaderboard.main(
        [str(d) for d in eval_inputs], out_dir, experiment, note, pairwise=[str(d) for d in judge_dirs], **options
    )
    if page:
        board["html"] = write_pages(Path(board["json"]), out_dir, eval_dirs=leaderboard.find_eval_dirs(eval_inputs))
    return board
