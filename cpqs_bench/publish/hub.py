"""Publish experiment results to the Hugging Face Hub: one model repo per arm, a results dataset, a Space.

Why it is built this way:

* **Folders first.** ``build_arm_folder`` (here), :func:`cpqs_bench.publish.results_dataset.build_results_folder`
  and :func:`cpqs_bench.publish.space.build_space_folder` produce the exact tree that will be pushed, so a
  ``--dry-run`` can hand you the same bytes for inspection (``publish(..., dry_run=True)`` copies them plus a
  ``plan.json``), and the real push just mirrors a folder.
* **One commit per repo, and none when nothing changed -- done by huggingface_hub.** Every file of the folder goes
  into one ``create_commit``; the library asks the Hub for the remote oid of each file (``preupload``), drops the
  files that did not change and returns the current head without committing when nothing is left
  (huggingface_hub PR #2389). We do not list or diff the remote tree ourselves; we only compare the head before and
  after to report whether a commit landed, and read which files the library kept (``uploaded``). Remote files that
  are not in the folder are deleted only when ``delete_extra=True`` (``.gitattributes`` is never deleted).
* **Bounded retries, only where the library has none.** huggingface_hub already retries (``http_backoff``) the tree
  listing, ``preupload`` and LFS transfers, but not ``create_repo`` nor the final ``/commit`` POST. We retry only
  errors from routes the library did not already retry, on 408/429/5xx and transport errors, with exponential
  backoff and a short, capped honour of ``Retry-After``. A failed commit is retried as a fresh ``create_commit``,
  whose preupload step re-diffs against the remote: if the previous attempt landed but its response was lost,
  the retry finds nothing to do instead of committing twice.
* **Every request bounded.** ``publish`` installs :func:`cpqs_bench.io.bound_hub_requests` (huggingface_hub's
  ``set_client_factory`` with a transport that caps every connect / read / write wait at ``timeout_s``), so a Hub that
  accepts the connection and never answers fails the push after ``timeout_s`` per attempt and ``max_retries``
  bounded retries, never hangs.
* **What is live is recorded.** With ``state_path`` (``publish_run``: ``runs/<experiment>/publish/state.json``),
  each repo is recorded atomically right after its commit (or its no-op): the commit, the local folder's digest, the
  endpoint. A rerun skips a repo whose recorded digest matches the folder (reported as ``live``), so it resumes
  after the last repo that made it; ``recheck=True`` asks the Hub again for every repo. A failure's message lists
  the repos already live.
* **Tokens.** Credentials come only from huggingface_hub's own resolution (``HF_TOKEN``, then the token file under
  ``HF_HOME``) or an explicit ``token=``; they are never written to the plan, the folders or the logs, and they are
  scrubbed from the message of any error we raise.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    ModelCard,
    ModelCardData,
)
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import get_token

from cpqs_bench.io import DEFAULT_HUB_TIMEOUT_S, atomic_open, bound_hub_requests, read_json, write_json, write_text
from cpqs_bench.provenance import scrub
from cpqs_bench.publish import eval_results

log = logging.getLogger(__name__)

T = TypeVar("T")

REPO_TYPES = ("model", "dataset", "space")
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Routes huggingface_hub already wraps in ``http_backoff``: errors from them have been retried once already.
_HUB_RETRIED_ROUTES = ("/tree/", "/preupload/", ".git/info/lfs/", "/lfs-upload/")
_PROTECTED_REMOTE = frozenset({".gitattributes"})
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# the arm's training record inside the adapter folder (cpqs_bench.finetune.sft.TRAINING_RECORD); adapters made
# before it existed hold the same record as manifest.json (with a DONE marker beside it)
TRAINING_RECORD = "training.json"
LEGACY_TRAINING_RECORD = "manifest.json"
_NOT_ADAPTER_FILES = frozenset({TRAINING_RECORD, LEGACY_TRAINING_RECORD, "DONE", "README.md"})


class PublishError(RuntimeError):
    """A push failed (after retries where they apply). The message never contains the token."""


# ============================================================================ folder builders
def read_training_record(adapter_dir: str | os.PathLike) -> dict[str, Any]:
    """The arm's training record (recipe_hash, model_id, model_revision, train_loss, ...): ``training.json`` in the
    adapter folder, or ``manifest.json`` for adapters made before the record moved there."""
    adapter_dir = Path(adapter_dir)
    for name in (TRAINING_RECORD, LEGACY_TRAINING_RECORD):
        path = adapter_dir / name
        if path.is_file():
            record = read_json(path)
            if not isinstance(record, dict):
                raise ValueError(f"{path}: expected a JSON object (the arm's training record)")
            return record
    raise FileNotFoundError(
        f"{adapter_dir}: no {TRAINING_RECORD} (nor {LEGACY_TRAINING_RECORD}): not a finished adapter"
    )


@dataclass(frozen=True)
class CardFacts:
    """What an arm's model card says besides its metrics: the tasks' facts
    (:func:`cpqs_bench.leaderboard_page.task_facts`: dataset id, metric), the evaluation date, ``source_url`` (the
    results dataset the numbers come from), per-task notes and this arm and seed's pairwise-judge rows
    (:func:`cpqs_bench.publish.results_dataset.pairwise_rows`: the card's own table, not ``model-index``: the judge's
    prompt sets are no Hub benchmark)."""

    facts: Mapping[str, Mapping[str, Any]] | None = None
    eval_date: str | None = None
    source_url: str | None = None
    notes: Mapping[str, str] | None = None
    pairwise: Sequence[Mapping[str, Any]] = ()


def build_arm_folder(
    arm: str,
    adapter_dir: str | os.PathLike,
    selection_path: str | os.PathLike,
    manifest: dict[str, Any],
    metrics: Mapping[str, float],
    base_model: str,
    experiment: str,
    out_dir: str | os.PathLike,
    card_facts: CardFacts = CardFacts(),
) -> Path:
    """Assemble the model repo for one arm: adapter files, ``selection.jsonl``, ``manifest.json``, ``README.md``
    (model card with ``model-index``) and ``.eval_results/<task>.yaml`` (the Hub's Eval Results format); what the
    card says besides the metrics comes from ``card_facts``.

    The folder is built in a temporary sibling and swapped in at the end, so ``out_dir`` is either the previous
    complete folder or the new complete one. PEFT's own ``README.md`` is replaced by our card.
    """
    facts, eval_date, source_url = card_facts.facts, card_facts.eval_date, card_facts.source_url
    notes, pairwise = card_facts.notes, card_facts.pairwise
    adapter_dir, selection_path, out_dir = Path(adapter_dir), Path(selection_path), Path(out_dir)
    adapter_files = _adapter_files(adapter_dir)
    n_selected = _count_jsonl(selection_path)
    clean_metrics = _check_metrics(metrics)
    card = build_model_card(
        arm,
        clean_metrics,
        base_model,
        experiment,
        manifest,
        n_selected,
        facts=facts,
        source_url=source_url,
        pairwise=pairwise,
    )
    files = eval_results.eval_result_files(clean_metrics, facts, date=eval_date, source_url=source_url, notes=notes)

    def fill(tmp: Path) -> None:
        for src in adapter_files:
            _copy_file(src, tmp / src.name)
        _copy_file(selection_path, tmp / "selection.jsonl")
        write_json(tmp / "manifest.json", manifest)
        write_text(tmp / "README.md", str(card))
        for rel, text in files.items():
            write_text(tmp / rel, text)

    return _build_dir(out_dir, fill)


def build_model_card(
    arm: str,
    metrics: Mapping[str, float],
    base_model: str,
    experiment: str,
    manifest: Mapping[str, Any],
    n_selected: int,
    *,
    facts: Mapping[str, Mapping[str, Any]] | None = None,
    source_url: str | None = None,
    pairwise: Sequence[Mapping[str, Any]] = (),
) -> ModelCard:
    """Model card whose YAML carries a ``model-index`` (one ``EvalResult`` per task, in percent) the Hub can render;
    values, dataset ids and source are those of the ``.eval_results`` files, so the two cannot disagree. With
    ``pairwise`` rows, a "Pairwise LLM judge" table follows the results (the results dataset's ``pairwise`` rows)."""
    results = eval_results.model_index_results(metrics, facts, source_url=source_url)
    skipped = eval_results.skipped_tasks(metrics, facts)
    datasets = _as_list(manifest.get("datasets") or manifest.get("pool"))
    data = ModelCardData(
        base_model=base_model,
        library_name="peft",
        pipeline_tag="text-generation",
        tags=["cpqs-bench", "lora", "peft", "instruction-tuning", "data-selection", f"selector-{arm}"],
        datasets=datasets or None,
        model_name=f"{experiment}-{arm}",
        eval_results=results or None,
    )
    selector = manifest.get("selector", arm)
    source = f" ({', '.join(datasets)})" if datasets else ""
    lines = [
        f"# {experiment} / {arm}",
        "",
        f"A LoRA adapter for `{base_model}` produced by **cpqs-bench** (experiment `{experiment}`, arm `{arm}`).",
        f"It was fine-tuned on the {n_selected} instruction examples that the `{selector}` selector picked from",
        f"the candidate pool{source}. The arms of an experiment are meant to differ only in their data selector,",
        "so the metrics below compare selectors rather than models.",
        "",
        "`selection.jsonl` lists the selected examples; `manifest.json` records the configuration that produced",
        "this adapter; `.eval_results/` holds the scores in the Hub's Eval Results format.",
        "",
        "## Results",
        "",
        "| task | dataset | metric | value (%) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {t} | {r.dataset_type} | {r.metric_type} | {r.metric_value:.2f} |" for t, r in zip(sorted(metrics), results)
    ]
    if not results:
        lines.append("| (none) | | | |")
    lines += [
        "",
        "Single-run point estimates; see the experiment's results dataset for confidence intervals"
        + (f" ({source_url})." if source_url else "."),
    ]
    if skipped:
        lines += ["", f"Not in `.eval_results/` (no Hub dataset id for the task): {', '.join(skipped)}."]
    if pairwise:
        lines += ["", *_pairwise_card_table(pairwise)]
    lines.append("")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def _pairwise_card_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    from cpqs_bench.leaderboard import fmt_p, fmt_pct  # the leaderboard's own number formats

    out = [
        "## Pairwise LLM judge (general domain)",
        "",
        "This adapter's greedy answers on general-domain prompt sets against the reference arm's answers, judged "
        "in both orders (win / tie / lose per prompt; unparsed judgements are left out of N). Not in "
        "`model-index` or `.eval_results/`: these prompt sets are no Hub benchmark.",
        "",
        "| vs | sets | win | tie | lose | unparsed | win rate (%) | winning score | net (W−L)/N [95% CI] | "
        "sign-test p | judge |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        vs = r["reference"] + ("" if r["reference_seed"] is None else f" (seed {r['reference_seed']})")
        net = None if r["winning_score"] is None else r["winning_score"] - 1
        ci = "" if r["net_ci_low"] is None else f" [{r['net_ci_low']:+.3f}, {r['net_ci_high']:+.3f}]"
        judge = f"{r['judge']} ({r['rule']})" + ("; weak judge: a pipeline check" if r["weak_judge"] else "")
        cells = [
            vs,
            ", ".join(r["sets"]),
            r["win"],
            r["tie"],
            r["lose"],
            r["unparsed"],
            fmt_pct(r["win_rate"]),
            "—" if r["winning_score"] is None else f"{r['winning_score']:.3f}",
            "—" if net is None else f"{net:+.3f}{ci}",
            fmt_p(r["sign_test_p"]),
            judge,
        ]
        out.append(
            "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;") for c in cells) + " |"
        )
    if any(r["weak_judge"] for r in rows):
        out += ["", "A weak judge (the embedded / target model judging) is a pipeline check, not a quality signal."]
    return out


def _check_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    clean = {}
    for task, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"metric {task!r} must be a finite number, got {value!r}")
        clean[str(task)] = float(value)
    return clean


def _adapter_files(adapter_dir: Path) -> list[Path]:
    if not adapter_dir.is_dir():
        raise FileNotFoundError(f"adapter directory missing: {adapter_dir}")
    names = {p.name for p in adapter_dir.iterdir() if p.is_file()}
    if "adapter_config.json" not in names or not any(w in names for w in _ADAPTER_WEIGHTS):
        raise FileNotFoundError(
            f"{adapter_dir} is not a PEFT adapter: need adapter_config.json and one of {_ADAPTER_WEIGHTS}, found {sorted(names)}"
        )
    # Top-level files only (checkpoints and hidden files are not part of the adapter); our card replaces PEFT's, our
    # manifest.json carries the training record, and the pipeline's DONE marker is no part of the model.
    return sorted(
        p
        for p in adapter_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in _NOT_ADAPTER_FILES
    )


def _count_jsonl(path: Path) -> int:
    """Validate a JSONL file line by line (error names file and line) and return the number of records."""
    n = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON: {e.msg}") from e
            n += 1
    return n


def _as_list(value: str | Iterable[object] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _copy_file(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def _build_dir(out_dir: Path, fill: Callable[[Path], None]) -> Path:
    """Fill a temp sibling directory, then swap it onto ``out_dir`` so readers never see a half-built folder."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        fill(tmp)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# ============================================================================ local index (plan + dry run)
@dataclass(frozen=True)
class LocalFile:
    path: str  # posix path inside the repo
    abspath: Path
    size: int
    git_sha1: str
    sha256: str


def local_index(folder: Path) -> dict[str, LocalFile]:
    """Every file under ``folder`` (skipping ``.git`` and ``.cache``), with the hashes the Hub uses."""
    index: dict[str, LocalFile] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or rel.parts[0] in (".git", ".cache"):
            continue
        index[rel.as_posix()] = _hash_file(rel.as_posix(), path)
    return index


def _hash_file(rel: str, path: Path) -> LocalFile:
    size = path.stat().st_size
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    sha256 = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha1.update(chunk)
            sha256.update(chunk)
    return LocalFile(rel, path, size, sha1.hexdigest(), sha256.hexdigest())


# ============================================================================ retry policy
@dataclass
class RetryPolicy:
    max_retries: int = 5
    base_s: float = 1.0
    max_wait_s: float = 30.0  # also caps how long we honour a Retry-After header
    sleep: Callable[[float], None] = time.sleep
    waits: list[float] = field(default_factory=list)

    def wait(self, attempt: int, err: BaseException) -> None:
        retry_after = _retry_after_s(err)
        backoff = self.base_s * (2 ** (attempt - 1)) * (1 + 0.1 * random.random())
        delay = min(self.max_wait_s, retry_after if retry_after is not None else backoff)
        self.waits.append(delay)
        self.sleep(delay)


def _retry_after_s(err: BaseException) -> float | None:
    response = getattr(err, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if value is None or not value.strip().isdigit():
        return None  # HTTP-date form is not honoured; fall back to our own backoff
    return float(value.strip())


def _request_url(err: BaseException) -> str:
    response = getattr(err, "response", None)
    request = getattr(response, "request", None) if response is not None else None
    if request is None:
        try:
            request = getattr(err, "request", None)
        except RuntimeError:  # httpx raises when a request was never attached
            request = None
    return str(getattr(request, "url", "") or "")


def is_transient(err: BaseException) -> bool:
    """Worth retrying here: 408/429/5xx or a transport error, from a route the library did not retry already."""
    if any(route in _request_url(err) for route in _HUB_RETRIED_ROUTES):
        return False
    if isinstance(err, HfHubHTTPError):
        return err.response is not None and err.response.status_code in RETRY_STATUS
    import httpx2  # huggingface_hub's HTTP client; imported lazily, only needed to classify failures

    return isinstance(err, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError))


def with_retries(fn: Callable[[], T], what: str, policy: RetryPolicy, secrets: Sequence[str]) -> tuple[T, int]:
    """Call ``fn`` with bounded retries on transient errors; returns (result, attempts)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(), attempt
        except Exception as err:  # classified below: either retried (recorded in policy.waits) or re-raised
            if not is_transient(err) or attempt > policy.max_retries:
                raise _scrubbed(err, f"{what} failed after {attempt} attempt(s)", secrets) from None
            log.warning(
                "%s: transient failure (%s), retry %d/%d",
                what,
                scrub(_short(err), secrets),
                attempt,
                policy.max_retries,
            )
            policy.wait(attempt, err)


def _short(err: BaseException) -> str:
    status = getattr(getattr(err, "response", None), "status_code", None)
    return (
        f"{type(err).__name__}"
        + (f" HTTP {status}" if status else "")
        + f": {str(err).splitlines()[0] if str(err) else ''}"
    )


def _scrubbed(err: BaseException, context: str, secrets: Sequence[str]) -> PublishError:
    # Raised "from None": the original exception (and any request headers it references) is not chained.
    return PublishError(scrub(f"{context}: {type(err).__name__}: {err}", secrets))


# ============================================================================ publishing
@dataclass(frozen=True)
class HubConnection:
    """How :func:`publish` talks to the Hub: ``endpoint`` (None: huggingface_hub's), ``token`` (None: the logged-in
    one), at most ``timeout_s`` per connect / read / write, and a failed request retried up to ``max_retries`` times
    with exponential backoff from ``backoff_base_s``, each wait capped at ``max_wait_s`` (a Retry-After too) and slept
    with ``sleep``."""

    endpoint: str | None = None
    token: str | None = None
    timeout_s: float = DEFAULT_HUB_TIMEOUT_S
    max_retries: int = 5
    backoff_base_s: float = 1.0
    max_wait_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep


def publish(
    folders: Mapping[str, tuple[str | os.PathLike, str]],
    dry_run: bool,
    dry_run_dir: str | os.PathLike | None,
    connection: HubConnection = HubConnection(),
    *,
    delete_extra: bool = False,
    private: bool = True,
    commit_message: str = "cpqs-bench: publish results",
    state_path: str | os.PathLike | None = None,
    recheck: bool = False,
) -> dict[str, Any]:
    """Push each ``repo_id -> (folder, repo_type)`` as one commit, or, with ``dry_run``, write what would be pushed.

    Returns a report ``{"dry_run", "endpoint", "repos": {repo_id: {...}}}``; each repo entry has ``action``
    (``planned`` / ``committed`` / ``unchanged`` / ``live``: recorded in ``state_path`` as pushed with these exact
    files, not asked again unless ``recheck``), ``uploaded``, ``deleted``, ``commit`` (oid or None), ``attempts`` and
    ``waits`` (seconds slept between retries). ``connection``: endpoint, token, timeout and retries
    (:class:`HubConnection`); every request waits at most its ``timeout_s`` per connect / read / write.
    """
    token = connection.token
    plan = _plan(folders, delete_extra)
    endpoint = (connection.endpoint or hf_constants.ENDPOINT).rstrip("/")
    if dry_run:
        if dry_run_dir is None:
            raise ValueError("dry_run=True needs dry_run_dir")
        return _dry_run(plan, Path(dry_run_dir), endpoint)
    if hf_constants.is_offline_mode():
        raise PublishError("HF_HUB_OFFLINE is set: refusing to push (unset it, or use dry_run=True)")
    bound_hub_requests(connection.timeout_s)
    secrets = [s for s in (token, get_token()) if s]
    api = HfApi(endpoint=endpoint, token=token)
    report: dict[str, Any] = {"dry_run": False, "endpoint": endpoint, "repos": {}}
    state = PublishState(state_path, endpoint) if state_path is not None else None
    for repo_id, entry in plan.items():
        digest = folder_digest(entry["files"], entry["repo_type"], delete_extra)
        if state is not None and not recheck and (live := state.live(repo_id, digest)) is not None:
            report["repos"][repo_id] = live
            log.info("%s: live (recorded in %s at %s; recheck to ask the Hub)", repo_id, state.path, live["at"])
            continue
        policy = RetryPolicy(connection.max_retries, connection.backoff_base_s, connection.max_wait_s, connection.sleep)
        try:
            result = _push_repo(api, repo_id, entry, delete_extra, private, commit_message, policy, secrets)
        except PublishError as err:
            done = sorted(r for r, e in report["repos"].items() if e["action"] != "planned")
            where = f" (recorded in {state.path}; rerun to resume)" if state is not None else ""
            raise PublishError(f"{err}; already live: {done or 'none'}{where}") from None
        report["repos"][repo_id] = result
        if state is not None:
            state.record(repo_id, result, digest)
    return report


def folder_digest(files: Mapping[str, LocalFile], repo_type: str, delete_extra: bool) -> str:
    """What a push of this folder sends: every path with its sha256, the repo type and the deletion policy."""
    blob = json.dumps(
        {"type": repo_type, "delete_extra": delete_extra, "files": {p: f.sha256 for p, f in sorted(files.items())}},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class PublishState:
    """``publish/state.json``: each repo pushed, written atomically after each commit (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, endpoint: str):
        self.path = Path(path)
        self.endpoint = endpoint
        self.doc: dict[str, Any] = {"endpoint": endpoint, "repos": {}}
        if self.path.exists():
            try:
                doc = read_json(self.path)
            except (OSError, ValueError) as exc:
                raise PublishError(f"{self.path}: unreadable publish state ({exc}); delete it to start over") from None
            if isinstance(doc, dict) and doc.get("endpoint") == endpoint and isinstance(doc.get("repos"), dict):
                self.doc = doc  # another endpoint's record says nothing about this one

    def live(self, repo_id: str, digest: str) -> dict[str, Any] | None:
        entry = self.doc["repos"].get(repo_id)
        if not isinstance(entry, dict) or entry.get("digest") != digest:
            return None
        return {
            "repo_type": entry.get("repo_type"),
            "action": "live",
            "uploaded": [],
            "deleted": [],
            "commit": entry.get("commit"),
            "attempts": 0,
            "waits": [],
            "at": entry.get("at"),
        }

    def record(self, repo_id: str, result: Mapping[str, Any], digest: str) -> None:
        previous = self.doc["repos"].get(repo_id) or {}
        self.doc["repos"][repo_id] = {
            "repo_type": result["repo_type"],
            # an unchanged push keeps the commit that made these files live
            "commit": result["commit"] or previous.get("commit"),
            "action": result["action"],
            "digest": digest,
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(self.path, self.doc)


def _plan(folders: Mapping[str, tuple[str | os.PathLike, str]], delete_extra: bool) -> dict[str, dict[str, Any]]:
    plan = {}
    for repo_id, (folder, repo_type) in sorted(folders.items()):
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise ValueError(f"repo_id must be 'namespace/name', got {repo_id!r}")
        if repo_type not in REPO_TYPES:
            raise ValueError(f"{repo_id}: repo_type must be one of {REPO_TYPES}, got {repo_type!r}")
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{repo_id}: folder to publish does not exist: {folder}")
        files = local_index(folder)
        if not files:
            raise ValueError(f"{repo_id}: folder {folder} is empty")
        plan[repo_id] = {"folder": folder, "repo_type": repo_type, "files": files, "delete_extra": delete_extra}
    return plan


def _dry_run(plan: Mapping[str, dict[str, Any]], out: Path, endpoint: str) -> dict[str, Any]:
    report: dict[str, Any] = {"dry_run": True, "endpoint": endpoint, "repos": {}}
    for repo_id, entry in plan.items():
        target = out / repo_id.replace("/", "__")

        def fill(tmp: Path, files: dict[str, LocalFile] = entry["files"]) -> None:
            for rel, f in files.items():
                _copy_file(f.abspath, tmp / rel)

        _build_dir(target, fill)
        report["repos"][repo_id] = {
            "action": "planned",
            "repo_type": entry["repo_type"],
            "folder": str(target),
            "delete_extra": entry["delete_extra"],
            "files": [
                {"path": f.path, "size": f.size, "sha256": f.sha256, "git_sha1": f.git_sha1}
                for f in entry["files"].values()
            ],
        }
    write_json(out / "plan.json", report)
    return report


def _push_repo(
    api: HfApi,
    repo_id: str,
    entry: Mapping[str, Any],
    delete_extra: bool,
    private: bool,
    message: str,
    policy: RetryPolicy,
    secrets: Sequence[str],
) -> dict[str, Any]:
    repo_type, files = entry["repo_type"], entry["files"]
    extra = {"space_sdk": "static"} if repo_type == "space" else {}
    _, attempts = with_retries(
        lambda: api.create_repo(repo_id, repo_type=repo_type, exist_ok=True, private=private, **extra),
        f"create_repo {repo_id}",
        policy,
        secrets,
    )
    head, n = with_retries(
        lambda: api.repo_info(repo_id, repo_type=repo_type).sha, f"repo_info {repo_id}", policy, secrets
    )
    attempts += n
    commit_attempt = 0
    while True:
        commit_attempt += 1
        attempts += 1
        deletions: list[str] = []
        if delete_extra:  # listed again on a retry: a lost-response attempt may have deleted them already
            remote, n = with_retries(
                lambda: api.list_repo_files(repo_id, repo_type=repo_type), f"list {repo_id}", policy, secrets
            )
            attempts += n
            deletions = sorted(p for p in remote if p not in files and p not in _PROTECTED_REMOTE)
        # fresh operations every attempt (the library refuses to reuse committed ones); its preupload re-diffs
        adds = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(f.abspath)) for p, f in files.items()]
        ops = [*adds, *(CommitOperationDelete(path_in_repo=p) for p in deletions)]
        try:
            info = api.create_commit(repo_id, ops, repo_type=repo_type, commit_message=message)
            break
        except Exception as err:  # classified: transient ones are retried (the retry re-diffs), others re-raised
            if not is_transient(err) or commit_attempt > policy.max_retries:
                raise _scrubbed(err, f"commit to {repo_id} failed after {commit_attempt} attempt(s)", secrets) from None
            log.warning(
                "commit to %s: transient failure (%s), retry %d/%d",
                repo_id,
                scrub(_short(err), secrets),
                commit_attempt,
                policy.max_retries,
            )
            policy.wait(commit_attempt, err)
    committed = info.oid != head
    # the files huggingface_hub kept in the commit: it skips an addition whose remote oid equals the local one
    uploaded = sorted(
        op.path_in_repo for op in adds if getattr(op, "_remote_oid", None) is None or op._remote_oid != op._local_oid
    )
    result: dict[str, Any] = {
        "repo_type": repo_type,
        "action": "committed" if committed else "unchanged",
        "uploaded": uploaded if committed else [],
        "deleted": deletions if committed else [],
        "commit": info.oid if committed else None,
        "attempts": attempts,
        "waits": list(policy.waits),
    }
    if committed and not uploaded and not deletions:
        result["note"] = "an earlier attempt whose response was lost had landed; the retry found nothing to do"
    log.info(
        "%s: %s (%d upload(s), %d deletion(s))",
        repo_id,
        result["action"],
        len(result["uploaded"]),
        len(result["deleted"]),
    )
    return result
