"""IFD (Instruction-Following Difficulty): how much the instruction helps a model predict the response.

For each example, two losses over the **same response tokens** ``r_1..r_n``:

* conditioned ``L_c`` — mean cross-entropy of ``r`` given the rendered prompt (``prompts.render`` ids, i.e. the
  token-exact span the SFT labels use; no end-of-turn token, since the answer text is what is being judged);
* unconditioned ``L_u`` — mean cross-entropy of ``r`` after a short *direct-answer context* and no instruction.
  The context is an explicit, named option (``IFDSettings.context``; ``selectors.ifd_context`` /
  ``selectors.proxy_ifd_context``, ``auto`` = the selector's reference default):

  - ``cherry`` — the tokenizer's default BOS (if it adds one) + the template's response header without the
    instruction (:func:`cpqs_bench.prompts.response_header`: ``### Response:\\n`` for ``alpaca``, the generation
    prompt ``<|im_start|>assistant\\n`` for ChatML, ``[/INST]`` for Llama-2). Follows Cherry_LLM
    ``cherry_seletion/data_analysis.py`` (tianyi-lab/Cherry_LLM), which scores ``direct_answer_text = '### Response:'
    + output`` encoded with the Llama tokenizer's BOS. Default of ``ifd``.
  - ``superfiltering`` — the tokenizer's default BOS, or nothing. Follows Superfiltering ``code_ifd/data_analysis.py``
    (tianyi-lab/Superfiltering), which scores ``tokenizer.encode(output_i)`` (BOS for Llama, nothing for GPT-2).
    Default of ``ifd_ppl`` and ``superfiltering``.

  **BOS policy:** the first token of every pass is what the tokenizer adds by default
  (:func:`cpqs_bench.templates.default_bos_ids`) — never an EOS standing in for a missing BOS (Qwen's
  ``<|im_end|>`` would be an unnatural context that inflates ``L_u`` on the first tokens). **Same tokens in both
  passes:** when a pass has no context token before ``r_1`` (``superfiltering`` on GPT-2 or ChatML), ``r_1`` has no
  predicting position, so it is left out of *both* means (the references keep it in ``L_c`` only: a deliberate
  difference, so the ratio compares the same tokens). A one-token response then has nothing to score
  (``exclude="ifd_undefined"``). The reference scripts put Cherry's header without the trailing newline of its own
  prompt and truncate each pass separately; here the header is the template's own and both passes share one
  truncation (below).

**Rendering** (``selectors.ifd.prompt``): ``template`` (default) renders the conditioned pass with ``prompt.template``
(the fine-tuning template, :func:`cpqs_bench.prompts.render`); ``reference`` renders each selector's reference
text and tokenises it whole as the scripts do (:func:`cpqs_bench.prompts.render_ifd_reference`): ``ifd`` and
``perplexity`` Cherry_LLM's Alpaca ``PROMPT_DICT`` (``prompt_input`` when the row has an input, else
``prompt_no_input``, both ending ``### Response:`` right before the answer), ``ifd_ppl`` and ``superfiltering``
Superfiltering's ``"{instruction}\\n{input}\\n"`` / ``"{instruction}\\n"``; with it the Cherry direct-answer header is
Cherry's own ``### Response:``. The instruction / input come from :func:`cpqs_bench.prompts.alpaca_fields` (the
example's metadata, else the user text split at its first blank line: wrong for ~1 % of Alpaca rows).
**Length:** ``selectors.ifd.max_length`` (Cherry's scripts: 512) or ``prompt.max_length``;
``selectors.ifd.proxy_max_length`` for the proxy (Superfiltering's default: 1024).

Two published variants, under distinct names:

* ``ifd``     = ``L_c / L_u`` — ratio of mean CE losses (Cherry_LLM, "From Quantity to Quality", Li et al. 2024);
* ``ifd_ppl`` = ``PPL_c / PPL_u = exp(L_c - L_u)`` — ratio of perplexities (Superfiltering, Li et al. 2024).

Both are ``>= 1`` exactly when ``L_c >= L_u`` (the instruction does not help: often a misaligned pair), so the
IFD >= 1 rule drops the same examples under both; the *rankings* of the rest differ (a ratio of losses vs an
exponentiated difference weigh high-loss responses differently). By default such rows carry ``exclude="ifd>=1"``
(config ``selectors.drop_ifd_ge_1``); they keep their score for diagnostics.

**Truncation policy (one for both passes):** the conditioned sequence is rendered under ``prompt.max_length``
(capped by the model's positions) with ``prompt.overflow``; the unconditioned pass reuses exactly the (possibly
truncated) response ids of that rendering, so it is never longer than the conditioned one and never cut differently.

**Execution:** the pool streams through in shards of ``SHARD_SIZE`` examples; each shard's per-example losses are
written atomically to ``ctx.workdir/ifd-<fingerprint>/shard-NNNNN.jsonl`` and reused on resume (the fingerprint
covers model, revision, dtype, template, length policy, the direct-answer context ids and the code; a shard is
reused only if its ids match).
Inside a shard both passes of all examples are sorted by length and run in batches of at most
``2 * selectors.batch_size`` sequences and ``selectors.batch_size * max_length`` padded tokens, right-padded with an
attention mask (causal attention makes right padding invisible to real tokens).
The model runs in its loaded dtype (bf16 where the hardware supports it); the LM head is applied only at the
response positions, in chunks of :func:`head_chunk` positions, and the cross-entropy is taken on the logits as they
come out of the head: the log-softmax kernel accumulates in fp32, the per-token losses are rounded to the logits'
dtype and summed per sequence in fp64. An fp32 copy of bf16 logits would not make them more exact: against the fp32
model's IFD, the bf16 model agrees as closely with either loss (``benchmarks/ifd_loss_precision.py``), while the cast
and the fp32 log-softmax cost as much as the head itself on a CPU (``benchmarks/ifd_head_chunk.py``; figures:
``docs/performance.md``).

**Differences from the reference** (Cherry_LLM ``cherry_seletion/data_analysis.py``, ``scripts/cherry_analysis.sh``,
``scripts/pre_experience_analysis.sh``, ``cherry_seletion/data_by_cluster.py``; Superfiltering
``code_ifd/data_analysis.py``, ``scripts/step1_select_data_analysis_gpt2.sh``):

1. **Cherry's pre-experienced model is skipped.** Cherry scores with a model first fine-tuned briefly on a clustered
   subset (``pre_experience_analysis.sh`` -> ``data_by_cluster.py`` -> a short fine-tune); here the target model as
   it is (self-guided with the base model, which Cherry's README "V2" and Superfiltering both allow).
2. The conditioned prompt is ``prompt.template``'s unless ``selectors.ifd.prompt: reference`` (the paper presets):
   with ``template``, an Alpaca row's input is pasted into the instruction (the project's ``instruction\\n\\ninput``
   user turn), where Cherry renders ``prompt_input`` with ``### Input:`` and Superfiltering ``{instruction}\\n{input}``.
3. Length: ``prompt.max_length`` (2048 in the presets before #26) unless ``selectors.ifd.max_length`` (Cherry: 512;
   Superfiltering: 1024). One truncation for both passes (the unconditioned pass reuses the conditioned pass's
   response ids); Cherry cuts ``direct_answer_text`` separately at ``max_length - len(instruction ids) + 4``.
4. The unconditioned context: the tokenizer's default BOS + the response header as the conditioned prompt tokenised
   it (Cherry: ``'### Response:' + output`` tokenised whole, so the answer's first token may merge differently).
5. When a pass has nothing before ``r_1`` (Superfiltering on GPT-2), ``r_1`` is left out of both means (the
   scripts keep it in ``L_c`` only).
6. Batched, length-sorted forwards, the LM head only at response positions, cross-entropy in the logits' dtype
   (the scripts: one example at a time in fp32, HF's mean loss).
7. Ranking and the budget are :mod:`cpqs_bench.select`'s (a count or fraction of the scored pool); the IFD >= 1 rows
   are excluded (``drop_ifd_ge_1``) as both papers drop them.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

from cpqs_bench import prompts, templates
from cpqs_bench.data.example import Example
from cpqs_bench.io import read_jsonl, stable_hash, write_jsonl
from cpqs_bench.models import model_max_length
from cpqs_bench.selectors.base import EMPTY_RESPONSE, Needs, ScoreRow, ScoringContext, is_empty_response

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cpqs_bench.models import ModelInfo

SHARD_SIZE = 128


def head_chunk(device_type: str) -> int:
    """Response positions per LM-head matmul + cross-entropy.

    On a CPU the chunk's logits should stay in cache between the head and the log-softmax: with the embedded
    SmolLM2-135M (49k vocab) on the 2-core CPU, head + bf16 cross-entropy over 2,048 positions took 133 ms at 128
    positions (12.6 MB of bf16 logits), 130 ms at 192 and 230 ms at 256 (the cache is full), against 220 ms for the
    previous fp32 cross-entropy at its best chunk (64); the head alone 85-95 ms. On an accelerator the chunk only
    bounds memory (each chunk is a kernel launch), so it is large there."""
    return 128 if device_type == "cpu" else 4096


EXCLUDE_GE_1 = "ifd>=1"
LENGTH_DROPPED = "dropped_by_length_policy"
UNDEFINED = "ifd_undefined"
CONTEXTS = ("cherry", "superfiltering")


@dataclass(frozen=True)
class IFDSettings:
    """What determines the losses (and so the resume fingerprint)."""

    spec: str
    template: str
    system_prompt: str | None
    max_length: int
    overflow: Literal["truncate", "drop"]
    batch_size: int
    context: str = "cherry"  # the direct-answer context of the unconditioned pass: "cherry" | "superfiltering"
    # "template": prompts.render under `template`; "cherry" / "superfiltering": the reference script's own prompt
    # text, tokenised whole (prompts.render_ifd_reference; selectors.ifd.prompt: reference)
    prompt: str = "template"


@dataclass(frozen=True)
class Losses:
    """Per-example result of the two passes; ``skip`` says why there are no losses."""

    id: str
    n_tokens: int
    loss_cond: float | None = None
    loss_uncond: float | None = None
    truncated: bool = False
    skip: str | None = None


# ------------------------------------------------------------------------------------------------ token layout
@dataclass(frozen=True)
class DirectContext:
    """The unconditioned pass's context: ``bos`` (the tokenizer's default) then the response ``header``.

    The header tokens are taken from the conditioned prompt itself when its last tokens spell the header (the
    shortest such suffix), so they are the very tokens the conditioned pass sees before the answer (with or
    without the space a SentencePiece answer absorbed); otherwise the header is encoded on its own."""

    kind: str
    bos: tuple[int, ...]
    header: str
    header_ids: tuple[int, ...]

    def ids(self, prompt_ids: Sequence[int], tokenizer: PreTrainedTokenizerBase | None = None) -> tuple[int, ...]:
        want = self.header.strip()
        if want and tokenizer is not None:
            prompt_ids = tuple(prompt_ids)
            for k in range(1, min(len(prompt_ids), len(self.header_ids) + 8) + 1):
                if tokenizer.decode(prompt_ids[-k:]).strip() == want:
                    return self.bos + prompt_ids[-k:]
        return self.bos + self.header_ids


CHERRY_HEADER = "### Response:"  # Cherry_LLM data_analysis.py: direct_answer_text = '### Response:' + output_i


def direct_context(
    tok: PreTrainedTokenizerBase, template: str, system_prompt: str | None, kind: str, prompt: str = "template"
) -> DirectContext:
    """The named direct-answer context (see the module docstring) for ``template`` on ``tok`` (with a reference
    ``prompt``, the header is Cherry's own ``### Response:`` whatever the template)."""
    if kind not in CONTEXTS:
        raise ValueError(f"IFD direct-answer context must be one of {CONTEXTS}, got {kind!r}")
    bos = templates.default_bos_ids(tok)
    if kind == "superfiltering":
        return DirectContext(kind, bos, "", ())
    header = CHERRY_HEADER if prompt != "template" else prompts.response_header(tok, template, system_prompt)
    header_ids = tuple(tok(header, add_special_tokens=False)["input_ids"]) if header.strip() else ()
    return DirectContext(kind, bos, header, header_ids)


def passes(
    rendered: prompts.Rendered, context: Sequence[int] | DirectContext, tokenizer: PreTrainedTokenizerBase | None = None
) -> tuple[tuple[tuple[int, ...], int], tuple[tuple[int, ...], int]] | None:
    """((conditioned ids, first scored position), (unconditioned ids, first scored position)), or None when no
    response token can be scored in both passes.

    The scored tokens are the same ids in both: the whole response, or — when either pass has nothing before
    ``r_1`` (an empty direct-answer context, or an empty prompt prefix) — the response from ``r_2`` on.
    """
    ctx = tuple(context.ids(rendered.prompt_ids, tokenizer) if isinstance(context, DirectContext) else context)
    ids, start = rendered.input_ids[: rendered.response_end], rendered.response_start
    response = rendered.response_ids
    skip = 1 if (start == 0 or not ctx) else 0
    if rendered.n_response - skip < 1:
        return None
    return (ids, start + skip), (ctx + response, len(ctx) + skip)


# ------------------------------------------------------------------------------------------------ the forward
def _split_head(model: PreTrainedModel) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(backbone, lm_head) when logits == lm_head(backbone hidden states) exactly; None otherwise."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "final_logit_softcapping", None) or any(
        getattr(cfg, attr, None) not in (None, 1, 1.0) for attr in ("logit_scale", "logits_scaling")
    ):
        return None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    backbone = getattr(model, "base_model", None)
    if head is None or backbone is None or backbone is model:
        return None
    return backbone, head


def sequence_losses(
    model: PreTrainedModel, seqs: Sequence[tuple[tuple[int, ...], int]], pad_id: int
) -> list[tuple[float, int]]:
    """(sum of CE over positions ``start..len-1``, count) per sequence, one batched forward, right padding."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    input_ids, mask = prompts.right_pad([ids for ids, _ in seqs], pad_id)
    rows: list[int] = []
    positions: list[int] = []
    targets: list[int] = []
    owner: list[int] = []
    for b, (ids, start) in enumerate(seqs):
        n = len(ids) - start
        rows += [b] * n
        positions += range(start - 1, len(ids) - 1)  # logits at t-1 predict token t
        targets += ids[start:]
        owner += [b] * n
    input_ids, mask = input_ids.to(device), mask.to(device)
    rows_t = torch.tensor(rows, device=device)
    pos_t = torch.tensor(positions, device=device)
    tgt_t = torch.tensor(targets, device=device)
    with torch.inference_mode():
        split = _split_head(model)
        if split is not None:
            backbone, head = split
            hidden = backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state[rows_t, pos_t]
            chunk = head_chunk(device.type)
            ce = torch.cat(
                [
                    F.cross_entropy(head(hidden[i : i + chunk]), tgt_t[i : i + chunk], reduction="none")
                    for i in range(0, len(targets), chunk)
                ]
            )
        else:
            logits = model(input_ids=input_ids, attention_mask=mask).logits[rows_t, pos_t]
            ce = F.cross_entropy(logits, tgt_t, reduction="none")
        acc = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        sums = torch.zeros(len(seqs), dtype=acc, device=device)
        sums.index_add_(0, torch.tensor(owner, device=device), ce.to(acc))
    return [(float(s), len(ids) - start) for s, (ids, start) in zip(sums.tolist(), seqs)]


# ------------------------------------------------------------------------------------------------ shards
def _render_all(
    tok: PreTrainedTokenizerBase, examples: Sequence[Example], s: IFDSettings
) -> list[prompts.Rendered | str]:
    out: list[prompts.Rendered | str] = []
    for ex in examples:
        if is_empty_response(ex):
            out.append(EMPTY_RESPONSE)
            continue
        if s.prompt != "template":
            r = prompts.render_ifd_reference(tok, ex, s.prompt, max_length=s.max_length)
            out.append(r if r is not None else LENGTH_DROPPED)
            continue
        r = prompts.render(
            tok,
            ex,
            s.template,
            system_prompt=s.system_prompt,
            train_eot=False,
            max_length=s.max_length,
            overflow=s.overflow,
        )
        out.append(r if r is not None else LENGTH_DROPPED)
    return out


def batches(jobs: Sequence[Any], max_seqs: int, max_tokens: int) -> Iterator[list[Any]]:
    """Consecutive runs of length-sorted (longest first) jobs, at most ``max_seqs`` sequences and at most
    ``max_tokens`` padded tokens each (a single longer sequence still forms its own batch): long sequences are not
    padded-to by many short ones, and short ones fill bigger batches. Padding is pure waste on a CPU."""
    batch: list[Any] = []
    for job in jobs:
        width = len(batch[0][2]) if batch else len(job[2])
        if batch and (len(batch) >= max_seqs or (len(batch) + 1) * width > max_tokens):
            yield batch
            batch = []
        batch.append(job)
    if batch:
        yield batch


def batch_limits(batch_size: int, max_length: int) -> tuple[int, int]:
    """(max sequences, max padded tokens) per forward for ``selectors.batch_size`` examples (two passes each) of at
    most ``max_length`` tokens (benchmarks/bench_ifd.py measures these very batches)."""
    batch_size, max_length = max(1, int(batch_size)), max(1, int(max_length))
    return 2 * batch_size, batch_size * max_length


def score_shard(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, examples: Sequence[Example], s: IFDSettings
) -> list[Losses]:
    """Both passes for one shard: all sequences sorted by length (longest first), batched, losses per example."""
    context = direct_context(tok, s.template, s.system_prompt, s.context, s.prompt)
    pad_id = prompts.pad_token_id(tok)
    rendered = _render_all(tok, examples, s)
    jobs: list[tuple[int, int, tuple[int, ...], int]] = []  # (example index, pass 0=cond/1=uncond, ids, start)
    for i, r in enumerate(rendered):
        if isinstance(r, prompts.Rendered):
            both = passes(r, context, tok)
            if both is None:
                rendered[i] = UNDEFINED
                continue
            for kind, (ids, start) in enumerate(both):
                jobs.append((i, kind, ids, start))
    jobs.sort(key=lambda j: (-len(j[2]), j[0], j[1]))
    sums: dict[tuple[int, int], tuple[float, int]] = {}
    max_seqs, max_tokens = batch_limits(s.batch_size, s.max_length)
    for batch in batches(jobs, max_seqs=max_seqs, max_tokens=max_tokens):
        for job, result in zip(batch, sequence_losses(model, [(j[2], j[3]) for j in batch], pad_id)):
            sums[(job[0], job[1])] = result
    out = []
    for i, (ex, r) in enumerate(zip(examples, rendered)):
        if isinstance(r, str):
            out.append(Losses(ex.id, 0, skip=r))
            continue
        (sc, nc), (su, nu) = sums[(i, 0)], sums[(i, 1)]
        assert nc == nu, "both passes must score the same response tokens"
        out.append(Losses(ex.id, nc, sc / nc, su / nu, r.truncated))
    return out


def fingerprint(s: IFDSettings, info: ModelInfo | None, tok: PreTrainedTokenizerBase) -> str:
    """The key of the loss shards: settings, model, direct-answer context ids and the code that computes the losses
    (this module's import closure, library versions included), so shards kept in a ``cpqs-bench score`` work dir
    are not reused after the loss computation changed."""
    from cpqs_bench.code_version import code_version

    return stable_hash(
        {
            "settings": asdict(s),
            "model": getattr(info, "path", str(info)),
            "revision": getattr(info, "revision", None),
            "dtype": getattr(info, "dtype", None),
            "context": asdict(direct_context(tok, s.template, s.system_prompt, s.context, s.prompt)),
            "vocab": len(tok),
            "code": code_version([__name__]),
        }
    )


def _shards(examples: Sequence[Example], size: int) -> Iterator[tuple[int, Sequence[Example]]]:
    for k, i in enumerate(range(0, len(examples), size)):
        yield k, examples[i : i + size]


def _progress(total: int, label: str):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not sys.stderr.isatty() or total == 0,
    )


def compute_losses(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    info: ModelInfo | None,
    examples: Sequence[Example],
    s: IFDSettings,
    workdir: Path,
    shard_size: int = SHARD_SIZE,
) -> list[Losses]:
    """Losses for every example, in input order, shard by shard; finished shards are reused on resume."""
    root = Path(workdir) / f"ifd-{fingerprint(s, info, tok)}"
    out: list[Losses] = []
    with _progress(len(examples), f"IFD {s.spec}") as bar:
        task = bar.add_task("ifd", total=len(examples))
        for k, shard in _shards(examples, shard_size):
            # keyed on content too: an edited example that keeps its explicit id must not reuse its old losses
            content = stable_hash([ex.id + ":" + ex.content_key() for ex in shard], 12)
            path = root / f"shard-{k:05d}-{content}.jsonl"
            ids = [ex.id for ex in shard]
            cached = read_jsonl(path) if path.exists() else None
            if cached is not None and [r["id"] for r in cached] == ids:
                losses = [Losses(**r) for r in cached]
            else:
                losses = score_shard(model, tok, shard, s)
                write_jsonl(path, [asdict(x) for x in losses])
            out.extend(losses)
            bar.advance(task, len(shard))
    return out


# ------------------------------------------------------------------------------------------------ selectors
def ifd_loss_ratio(loss_cond: float, loss_uncond: float) -> float:
    """Cherry_LLM: ratio of mean CE losses."""
    return loss_cond / loss_uncond


def ifd_perplexity_ratio(loss_cond: float, loss_uncond: float) -> float:
    """Superfiltering: ratio of perplexities, exp(L_c) / exp(L_u) = exp(L_c - L_u)."""
    return math.exp(loss_cond - loss_uncond)


def _context_option(value: str | None, default: str, key: str) -> str:
    value = "auto" if value is None else value
    if value == "auto":
        return default
    if value not in CONTEXTS:
        raise ValueError(f"selectors.{key} must be 'auto' or one of {CONTEXTS}, got {value!r}")
    return value


class IFDSelector:
    """Self-IFD with the target model, Cherry_LLM's variant: ``L_c / L_u`` (see the module docstring).

    Direct-answer context: ``context`` (constructor) > ``selectors.ifd_context`` > :attr:`default_context`
    (``cherry``, as Cherry_LLM ``cherry_seletion/data_analysis.py`` scores ``'### Response:' + output``)."""

    name = "ifd"
    needs = Needs.TARGET_MODEL
    default_context = "cherry"
    context_key = "ifd_context"
    reference_prompt = "cherry"  # selectors.ifd.prompt: reference -> Cherry_LLM's PROMPT_DICT

    def __init__(self, context: str | None = None):
        if context is not None and context not in CONTEXTS + ("auto",):
            raise ValueError(f"IFD context must be 'auto' or one of {CONTEXTS}, got {context!r}")
        self.context = context

    def formula(self, loss_cond: float, loss_uncond: float) -> float:
        return ifd_loss_ratio(loss_cond, loss_uncond)

    def direct_context_kind(self, ctx: ScoringContext) -> str:
        # selectors.ifd_context / proxy_ifd_context; "auto" = this selector's reference default
        value = self.context if self.context is not None else getattr(ctx.config.selectors, self.context_key)
        return _context_option(value, self.default_context, self.context_key)

    def settings(self, ctx: ScoringContext, model: PreTrainedModel) -> IFDSettings:
        cfg = ctx.config
        return self._settings(cfg.model.id, cfg.prompt.template, cfg.prompt.system_prompt, ctx, model)

    def model_spec(self, ctx: ScoringContext) -> str:
        return ctx.config.model.id

    def max_length(self, ctx: ScoringContext) -> int:
        """``selectors.ifd.max_length`` (Cherry's scripts: 512), else ``prompt.max_length``."""
        ic = getattr(ctx.config.selectors, "ifd", None)
        value = getattr(ic, "max_length", None)
        return int(value) if value is not None else ctx.config.prompt.max_length

    def prompt_kind(self, ctx: ScoringContext) -> str:
        value = getattr(getattr(ctx.config.selectors, "ifd", None), "prompt", "template")
        if value not in ("template", "reference"):
            raise ValueError(f"selectors.ifd.prompt must be 'template' or 'reference', got {value!r}")
        return self.reference_prompt if value == "reference" else "template"

    def _settings(
        self, spec: str, template: str, system_prompt: str | None, ctx: ScoringContext, model: PreTrainedModel
    ) -> IFDSettings:
        limit = model_max_length(model)
        want = self.max_length(ctx)
        max_length = want if limit is None else min(want, limit)
        return IFDSettings(
            spec,
            template,
            system_prompt,
            max_length,
            ctx.config.prompt.overflow,
            ctx.config.selectors.batch_size,
            self.direct_context_kind(ctx),
            self.prompt_kind(ctx),
        )

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        model, tok, info = ctx.model(self.model_spec(ctx))
        settings = self.settings(ctx, model)
        losses = compute_losses(model, tok, info, examples, settings, ctx.shared("ifd"))
        drop = ctx.config.selectors.drop_ifd_ge_1
        return [self.row(x, drop) for x in losses]

    def row(self, x: Losses, drop_ge_1: bool) -> ScoreRow:
        if x.skip is not None:
            return ScoreRow(x.id, math.nan, x.n_tokens, exclude=x.skip)
        assert x.loss_cond is not None and x.loss_uncond is not None
        extra = {"loss_cond": x.loss_cond, "loss_uncond": x.loss_uncond, "truncated": x.truncated}
        if x.loss_uncond <= 0.0:  # the response alone is predicted perfectly: the ratio carries no information
            return ScoreRow(x.id, math.nan, x.n_tokens, exclude=UNDEFINED, extra=extra)
        value = self.formula(x.loss_cond, x.loss_uncond)
        return ScoreRow(
            x.id, value, x.n_tokens, exclude=EXCLUDE_GE_1 if drop_ge_1 and value >= 1.0 else None, extra=extra
        )


class IFDPerplexitySelector(IFDSelector):
    """Self-IFD with the target model, Superfiltering's variant: ``exp(L_c - L_u)`` (see the module docstring).

    Default direct-answer context ``superfiltering`` (the tokenizer's default BOS or nothing), as Superfiltering
    ``code_ifd/data_analysis.py`` scores ``tokenizer.encode(output_i)``."""

    name = "ifd_ppl"
    default_context = "superfiltering"
    reference_prompt = "superfiltering"  # selectors.ifd.prompt: reference -> Superfiltering's PROMPT_DICT_NONE

    def formula(self, loss_cond: float, loss_uncond: float) -> float:
        return ifd_perplexity_ratio(loss_cond, loss_uncond)
