"""Optional Weights & Biases tracking that can never fail the pipeline.

One W&B run per pipeline stage: ``group`` is the experiment, ``job_type`` the stage (score, select, train, eval, ...),
so the W&B UI groups all stages of an experiment together.

Modes (decided once, when the run starts):

* ``disabled`` -- the default (``enabled=False``): wandb is not even imported, every method is a no-op.
* ``offline`` -- when ``WANDB_API_KEY`` is not in the environment (or ``mode="offline"`` is passed): the run is
  written under ``<dir>/wandb/offline-run-*`` and nothing touches the network. Upload it later with::

      wandb sync <dir>/wandb/offline-run-*        # or: wandb sync --sync-all  (run inside <dir>)

* ``online`` -- when ``WANDB_API_KEY`` is set. wandb reads the key from the environment itself; this module never
  reads, passes, logs or writes it.

Failure policy (the one documented place where catching broadly is the rule): tracking is observability, not a
result. Any W&B failure -- wandb not importable, ``wandb.init`` failing, a network or serialization error while
logging or finishing -- is caught at this boundary, logged once as a warning with the reason (the API key is
scrubbed from it), appended to ``tracker.errors``, and the tracker goes inert for the rest of the stage. The
pipeline carries on; callers that care can inspect ``tracker.errors``.

Runs are started with wandb's heavy extras switched off (system-stats sampling, machine/git/code metadata,
console capture, requirements snapshot), which keeps an offline init under about a second.

Every W&B network wait is bounded (issue #34): ``init_timeout`` (init), ``finish_timeout`` (the upload at the end of
a run: after it W&B gives up, the data stays on disk for ``wandb sync``), ``login_timeout`` and the GraphQL / file
transfer / file-stream request timeouts, all from ``timeout_s`` / ``init_timeout_s``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Sequence

from cpqs_bench.provenance import scrub

if TYPE_CHECKING:
    import wandb

log = logging.getLogger(__name__)

Mode = Literal["disabled", "offline", "online"]


def resolve_mode(enabled: bool, mode: Mode | None = None) -> Mode:
    """``disabled`` unless enabled; an explicit mode wins; otherwise online iff ``WANDB_API_KEY`` is set."""
    if not enabled:
        return "disabled"
    if mode is not None:
        if mode not in ("disabled", "offline", "online"):
            raise ValueError(f"tracking mode must be disabled, offline or online, got {mode!r}")
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class Tracker:
    """Context manager around one W&B run for one pipeline stage. See the module docstring for the policy."""

    def __init__(
        self,
        experiment: str,
        stage: str,
        *,
        enabled: bool = False,
        mode: Mode | None = None,
        dir: str | os.PathLike | None = None,
        project: str = "cpqs-bench",
        config: Mapping[str, Any] | None = None,
        init_timeout_s: float = 60.0,
        timeout_s: float = 120.0,
    ) -> None:
        self.experiment = experiment
        self.stage = stage
        self.mode: Mode = resolve_mode(enabled, mode)
        self.dir = Path(dir) if dir is not None else Path.cwd()
        self.project = project
        self.initial_config = dict(config or {})
        self.init_timeout_s = init_timeout_s
        self.timeout_s = timeout_s
        self.errors: list[str] = []
        self.run: Any = None
        self._wandb: Any = None
        self._finished = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Tracker":
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(exit_code=1 if exc_type is not None else 0)  # never suppresses the stage's own exception

    @property
    def active(self) -> bool:
        return self.run is not None and not self._finished

    @property
    def run_dir(self) -> Path | None:
        """The run's local directory (what ``wandb sync`` takes), once started."""
        if self.run is None:
            return None
        return Path(self.run.settings.sync_dir)

    def start(self) -> None:
        if self.mode == "disabled" or self.run is not None or self._finished:
            return
        try:
            import wandb

            self._wandb = wandb
            self.dir.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=self.project,
                group=self.experiment,
                job_type=self.stage,
                name=f"{self.experiment}-{self.stage}",
                dir=str(self.dir),
                mode=self.mode,
                config=self.initial_config,
                reinit="create_new",
                settings=self._settings(wandb),
            )
        except Exception as err:  # documented policy: W&B must never fail the pipeline
            self._fail("init", err)

    def _settings(self, wandb: ModuleType) -> wandb.Settings:
        return wandb.Settings(
            mode=self.mode,
            x_disable_stats=True,
            x_disable_meta=True,
            x_disable_machine_info=True,
            x_save_requirements=False,
            disable_git=True,
            disable_code=True,
            save_code=False,
            console="off",
            silent=True,
            init_timeout=self.init_timeout_s,
            finish_timeout=self.timeout_s,
            login_timeout=self.timeout_s,
            x_graphql_timeout_seconds=self.timeout_s,
            x_file_transfer_timeout_seconds=self.timeout_s,
            x_file_stream_timeout_seconds=self.timeout_s,
        )

    def finish(self, exit_code: int = 0) -> None:
        if self._finished:
            return
        self._finished = True
        if self.run is None:
            return
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as err:  # documented policy
            self._fail("finish", err)

    # ------------------------------------------------------------------ logging
    def log_config(self, config: Mapping[str, Any]) -> None:
        self._call("log_config", lambda: self.run.config.update(dict(config), allow_val_change=True))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._call("log_metrics", lambda: self.run.log(dict(metrics), step=step))

    def log_table(self, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        def do() -> None:
            table = self._wandb.Table(columns=list(columns), data=[list(r) for r in rows])
            self.run.log({name: table})

        self._call("log_table", do)

    def log_histogram(self, name: str, values: Sequence[float]) -> None:
        self._call("log_histogram", lambda: self.run.log({name: self._wandb.Histogram(list(values))}))

    def _call(self, what: str, fn: Callable[[], object]) -> None:
        if not self.active:
            return
        try:
            fn()
        except Exception as err:  # documented policy
            self._fail(what, err)

    # ------------------------------------------------------------------ failure handling
    def _fail(self, what: str, err: BaseException) -> None:
        """Record and warn once, then go inert: later calls become no-ops instead of repeating the failure."""
        reason = scrub(f"W&B {what} failed ({type(err).__name__}: {err}); tracking disabled for stage {self.stage!r}")
        self.errors.append(reason)
        log.warning("%s", reason)
        if self.run is not None and not self._finished:
            self._finished = True
            try:
                self.run.finish(exit_code=1)
            except Exception as finish_err:  # documented policy; recorded, not raised
                self.errors.append(
                    scrub(f"W&B finish after failure also failed: {type(finish_err).__name__}: {finish_err}")
                )
        self._finished = True
