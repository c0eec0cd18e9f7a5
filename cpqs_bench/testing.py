"""The selector contract kit, for built-ins and third-party plugins alike.

    from cpqs_bench.testing import check_selector

    def test_my_selector_contract():
        check_selector("my_selector")          # a registered name (entry point), or a selector instance

Runs the selector on a small, awkward pool (long responses that get truncated, Unicode, code, a multi-turn prompt,
two ids with identical content, an empty and a whitespace-only response) with a tiny random-weight model
(:mod:`cpqs_bench.tiny`, no files, no network; a tiny sequence-classification model stands in for reward models)
and asserts the contract every stage downstream relies on:

* one :class:`ScoreRow` per example, in input order, ids unique — no id lost or invented;
* scores are real numbers; every eligible (non-excluded) score is finite; ``n_tokens`` is a non-negative int;
* the data policy for empty responses: a row is still returned, with an ``exclude`` reason (never eligible);
* determinism: two fresh runs with the same seed give identical rows, and a run resumed from the first run's
  work directory gives identical rows too;
* an example's score does not depend on where it sits in the pool (reversed order, within ``rtol``);
* the rows go through :func:`cpqs_bench.select.select` without error;
* the scores are not degenerate: at least two eligible rows that do not all share one score
  (:func:`cpqs_bench.selectors.degeneracy.report`).

Then (``validity=True``, the default) it runs both selector validity tracks (:mod:`cpqs_bench.validity`) on a tiny
synthetic fixture (:func:`cpqs_bench.validity.tracks.tiny_fixtures`: every built-in defect kind, 4 labelled pairs)
and *reports* the AUCs and pairwise accuracies in :attr:`ContractReport.validity` (a random-weight model makes them
meaningless as quality numbers; they show the selector runs through the screen). They never fail the contract.

Failures raise :class:`ContractError` (an ``AssertionError``, so pytest reports it as a test failure) naming the
selector and the check.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from cpqs_bench.data.example import Example
from cpqs_bench.selectors import registry
from cpqs_bench.selectors.base import ModelLoader, Needs, ScoreRow, ScoringContext, Selector

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cpqs_bench.config import Config


class ContractError(AssertionError):
    pass


def _user(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": text},)


def contract_examples() -> list[Example]:
    """The kit's pool: small, but with every case a selector tends to get wrong."""
    story = "Once upon a time a small fox lived near the sea and watched the sky every evening. " * 12
    return [
        Example(
            "plain",
            _user("Explain why the sky is blue in simple words."),
            "Sunlight scatters off air molecules, and blue light scatters the most.",
        ),
        Example("code", _user("Write a Python function that adds two numbers."), "def add(a, b):\n    return a + b\n"),
        Example("long", _user("Tell me a long story about a fox."), story),
        Example("unicode", _user("Say hello in Japanese."), "こんにちは — Café naïve 🙂"),
        Example(
            "multi_turn",
            (
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hi!"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "What is 6 times 12?"},
            ),
            "72. #### 72",
        ),
        Example("dup_a", _user("Give three tips for staying healthy."), "Eat well, sleep, exercise."),
        Example("dup_b", _user("Give three tips for staying healthy."), "Eat well, sleep, exercise."),
        Example("short", _user("Answer yes or no: is water wet?"), "Yes."),
        Example("empty", _user("Say nothing."), ""),
        Example("blank", _user("Reply with whitespace only."), "  \n "),
    ]


EMPTY_IDS = ("empty", "blank")


def contract_config(**overrides: object) -> Config:
    """A small default config for the kit (short max_length so truncation is exercised, small batches, short
    generations for judge / seed-model answers)."""
    from cpqs_bench.config import Config, replace

    values = {
        "prompt.max_length": 96,
        "selectors.batch_size": 2,
        "selectors.judge.max_new_tokens": 8,
        "selectors.mods.max_new_tokens": 8,
        **overrides,
    }
    return replace(Config(), **values)


def tiny_loader(family: str = "chatml", seed: int = 0) -> ModelLoader:
    """A ``ScoringContext.loader`` that answers every model spec (target or proxy) with one tiny model."""
    from cpqs_bench import tiny
    from cpqs_bench.models import ModelInfo

    cache: dict[str, Any] = {}

    def load(spec: str, revision: str | None, dtype: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelInfo]:
        if "model" not in cache:
            model, tok = tiny.model(family, seed=seed)
            info = ModelInfo(spec=spec, path=f"tiny:{family}:{seed}", revision=None, dtype="float32", device="cpu")
            cache["model"] = (model, tok, info)
        return cache["model"]

    return load


def tiny_reward_loader(family: str = "chatml", seed: int = 0) -> Callable[..., Any]:
    """A ``ScoringContext.reward_loader``: a tiny random-weight sequence-classification model (one logit) on the
    tiny tokenizer, for every reward-model spec (the stand-in for e.g. OpenAssistant's DeBERTa reward model)."""
    from cpqs_bench import tiny

    cache: dict[str, Any] = {}

    def load(spec: str, revision: str | None = None) -> tuple[Any, Any]:
        if "model" not in cache:
            import torch
            from transformers import LlamaConfig, LlamaForSequenceClassification

            tok = tiny.tokenizer(family)
            torch.manual_seed(seed + 1)
            cfg = LlamaConfig(
                vocab_size=len(tok),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=2,
                max_position_embeddings=512,
                pad_token_id=tok.pad_token_id,
                num_labels=1,
            )
            cache["model"] = (LlamaForSequenceClassification(cfg).eval(), tok)
        return cache["model"]

    return load


@dataclass
class ContractReport:
    name: str
    rows: list[ScoreRow]
    passed: list[str] = field(default_factory=list)
    # {"planted": [rows as in validity.json], "pairs": [...]} on the tiny fixture; None when not run
    validity: dict[str, list[dict[str, Any]]] | None = None

    def validity_summary(self) -> str:
        """One line: overall paired / unpaired AUC and overall pairwise accuracy on the tiny fixture."""
        if self.validity is None:
            return f"{self.name}: validity tracks not run"
        over = next(r for r in self.validity["planted"] if r["kind"] == "overall")
        acc = next(r for r in self.validity["pairs"] if r["subset"] == "overall")

        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}"

        return (
            f"{self.name} (tiny fixture, reported only): planted paired AUC {f(over['paired_auc'])}, unpaired "
            f"{f(over['unpaired_auc'])}; pairs accuracy {f(acc['accuracy'])}"
        )


def _fail(name: str, check: str, detail: str) -> ContractError:
    return ContractError(f"selector {name!r} fails the contract ({check}): {detail}")


def _same(a: float, b: float, rtol: float = 0.0) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b if rtol == 0.0 else math.isclose(a, b, rel_tol=rtol, abs_tol=rtol)


def _resolve(selector_or_name: Selector | str) -> Selector:
    selector = registry.get(selector_or_name) if isinstance(selector_or_name, str) else selector_or_name
    if not isinstance(selector, Selector):
        raise ContractError(f"{selector!r} does not implement the Selector protocol (name, needs, score)")
    return selector


def _check_rows(name: str, examples: Sequence[Example], rows: object) -> None:
    if not isinstance(rows, list):
        raise _fail(name, "rows", f"score() must return a list, got {type(rows).__name__}")
    if len(rows) != len(examples):
        raise _fail(name, "one row per example", f"{len(examples)} examples in, {len(rows)} rows out")
    for ex, row in zip(examples, rows):
        if not isinstance(row, ScoreRow):
            raise _fail(name, "rows", f"expected ScoreRow, got {type(row).__name__}")
        if row.id != ex.id:
            raise _fail(name, "ids in input order", f"expected {ex.id!r}, got {row.id!r}")
        if isinstance(row.score, bool) or not isinstance(row.score, (int, float)):
            raise _fail(name, "numeric score", f"{row.id!r}: score {row.score!r}")
        if isinstance(row.n_tokens, bool) or not isinstance(row.n_tokens, int) or row.n_tokens < 0:
            raise _fail(name, "n_tokens", f"{row.id!r}: n_tokens {row.n_tokens!r}")
        if row.exclude is not None and (not isinstance(row.exclude, str) or not row.exclude):
            raise _fail(name, "exclude reason", f"{row.id!r}: exclude must be None or a non-empty string")
        if row.exclude is None and not math.isfinite(row.score):
            raise _fail(name, "finite eligible scores", f"{row.id!r}: score {row.score} without an exclude reason")
        if not ex.response.strip() and row.exclude is None:
            raise _fail(name, "empty-response policy", f"{row.id!r} has an empty response but is eligible")
    if len({r.id for r in rows}) != len(rows):
        raise _fail(name, "unique ids", "duplicate ids in the output")


def _check_same(name: str, check: str, a: list[ScoreRow], b: list[ScoreRow], rtol: float = 0.0) -> None:
    by_id = {r.id: r for r in b}
    for r in a:
        other = by_id.get(r.id)
        if other is None:
            raise _fail(name, check, f"{r.id!r} missing from the second run")
        if not _same(float(r.score), float(other.score), rtol) or r.exclude != other.exclude:
            raise _fail(name, check, f"{r.id!r}: {r.score!r}/{r.exclude!r} vs {other.score!r}/{other.exclude!r}")


def _check_not_degenerate(name: str, rows: list[ScoreRow]) -> None:
    from cpqs_bench.selectors.degeneracy import report

    rep = report(rows)
    if rep["eligible"] >= 2 and rep["distinct"] == 1:
        raise _fail(
            name,
            "scores not degenerate",
            f"all {rep['eligible']} eligible rows have the same score "
            f"{next(float(r.score) for r in rows if r.exclude is None)!r}: selection would be by id order",
        )


def _validity_tracks(
    name: str, run: Callable[[Sequence[Example], str], list[ScoreRow]], config: Config, family: str, seed: int
) -> dict[str, list[dict[str, Any]]]:
    """Both validity tracks on the tiny fixture, scored by ``run`` (reported, never a contract failure)."""
    from cpqs_bench.validity import run as validity
    from cpqs_bench.validity.tracks import tiny_fixtures

    planted, pairs = tiny_fixtures(seed)
    pool = [*planted.examples, *pairs.examples]
    rows = run(pool, "validity")
    _check_rows(name, pool, rows)
    by_id = {r.id: r.to_dict() for r in rows}
    lengths = validity.response_lengths(config, pairs.examples, tiny_loader(family))
    subsets = validity.pair_subsets(pairs, lengths, config.selectors.cpqs.length_band)
    return {
        "planted": validity.planted_rows(name, by_id, planted, n_boot=200, seed=seed),
        "pairs": validity.pairs_rows(name, by_id, subsets, n_boot=200, seed=seed),
    }


def check_selector(
    selector_or_name: Selector | str,
    *,
    examples: Sequence[Example] | None = None,
    config: Config | None = None,
    family: str = "chatml",
    seed: int = 0,
    checkpoint: str | Path | None = None,
    check_order: bool = True,
    rtol: float = 1e-4,
    workdir: str | Path | None = None,
    validity: bool = True,
) -> ContractReport:
    """Run the whole contract; returns the report of the checks passed, raises :class:`ContractError` on a failure.

    ``checkpoint`` is required for selectors that declare ``Needs.CHECKPOINT``; ``family`` picks the tiny model
    (``chatml``, ``llama2``, ``gpt2``); ``rtol`` bounds the order-invariance check (batching changes float sums);
    ``validity`` runs the validity tracks on the tiny fixture and reports them (:attr:`ContractReport.validity`).
    """
    selector = _resolve(selector_or_name)
    name = getattr(selector, "name", None)
    if not isinstance(name, str) or not name:
        raise ContractError(f"{selector!r}: `name` must be a non-empty string")
    if not isinstance(getattr(selector, "needs", None), Needs):
        raise _fail(name, "needs", f"`needs` must be a cpqs_bench.selectors.base.Needs, got {selector.needs!r}")
    if selector.needs is Needs.CHECKPOINT and checkpoint is None:
        raise _fail(name, "needs", "this selector needs a trained checkpoint: pass checkpoint=DIR")
    examples = list(examples) if examples is not None else contract_examples()
    if config is None:  # the gpt2 family has no chat template: use the Alpaca prompt there
        config = contract_config(**({"prompt.template": "alpaca"} if family == "gpt2" else {}))
    ckpt = Path(checkpoint) if checkpoint is not None else None
    report = ContractReport(name, [])
    with tempfile.TemporaryDirectory(prefix=f"contract-{name}-", dir=workdir) as tmp:

        def run(pool: Sequence[Example], sub: str) -> list[ScoreRow]:
            ctx = ScoringContext(
                config,
                Path(tmp) / sub,
                seed=seed,
                checkpoint=ckpt,
                loader=tiny_loader(family),
                reward_loader=tiny_reward_loader(family),
            )
            ctx.workdir.mkdir(parents=True, exist_ok=True)
            return selector.score(list(pool), ctx)

        first = run(examples, "a")
        _check_rows(name, examples, first)
        report.passed += ["one row per id, in order", "numeric scores", "empty-response policy"]
        _check_not_degenerate(name, first)
        report.passed.append("scores not degenerate")
        _check_same(name, "determinism under a seed", first, run(examples, "b"))
        _check_same(name, "resume from its own work directory", first, run(examples, "a"))
        report.passed += ["determinism under a seed", "resume"]
        if check_order:
            reversed_pool = list(reversed(examples))
            again = run(reversed_pool, "c")
            _check_rows(name, reversed_pool, again)
            _check_same(name, "order invariance", first, again, rtol)
            report.passed.append("order invariance")
        from cpqs_bench.select import select

        select([r.to_dict() for r in first], budget=2)
        report.passed.append("select() accepts the rows")
        if validity:
            report.validity = _validity_tracks(name, run, config, family, seed)
    report.rows = first
    return report
