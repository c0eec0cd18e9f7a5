"""Diversity-aware selection: ``kcenter`` and ``facility_location`` on embeddings, and the composition rule
"score first, then diversify" (Superfiltering.D, DEITA's score-first diversity, "CPQS + diversity").

**Embeddings** (``selectors.diversity``): ``embedding: target`` (default) mean-pools the last hidden state of the
target model over each example's *response span*, through the project's feature extractor
(:func:`cpqs_bench.features.iter_batches`, the same rendering CPQS and IFD use); any other value is a model spec
(e.g. ``sentence-transformers/all-MiniLM-L6-v2``, Superfiltering.D's encoder) whose last hidden state is mean-pooled
over the attention mask of the text chosen by ``diversity.text`` (``whole`` = instruction + "\\n" + response,
``instruction``, ``response``), as ``combine_sentences`` / ``get_sentence_embeddings`` in Superfiltering's
``code_diversity_fla/do_fla.py`` do. Embeddings are L2-normalised (do_fla.py normalises too).

**k-center greedy** follows ``diverse-data-selection/kcenter_greedy.py`` of CASIA-LM/MoDS (Sener & Savarese 2017):
repeatedly add the point farthest (euclidean) from the chosen centers. Difference: MoDS draws the first center at
random (``np.random.choice``); here it is the point nearest the centroid, ties broken by id, so the result does not
depend on a seed or on the pool order.

**Facility location** follows Superfiltering's ``do_fla.py`` (submodlib ``FacilityLocationFunction``, dense,
``metric="euclidean"``, ``LazyGreedy``): maximise ``f(S) = sum_i max_{j in S} s_ij`` greedily with lazy gain
updates (Minoux's lazy greedy, a heap of stale upper bounds). The kernel is submodlib's dense euclidean kernel
``s_ij = exp(-d_ij / dim)`` (``submodlib/helper.py: create_kernel``); ``metric: cosine`` uses ``(1 + cos) / 2``
(shifted to be non-negative; submodlib uses the raw cosine). The dense kernel is ``n x n`` float32: fine for the
pre-filtered 20 % Superfiltering.D uses (10k examples = 0.4 GB), not for a whole large pool.

**Scores.** A selector returns scores, not sets. The greedy picks the budget's ``k`` (``selectors.budget`` of the
eligible rows) and scores the j-th pick ``2 - j / k`` (in ``(1, 2]``); every other row gets its value at the stop
in ``[0, 1)`` — k-center: its distance to the nearest center, facility location: its exact marginal gain — divided
by the maximum. So ``select``'s top-k is exactly the greedy set, and the rest are ranked by what the next greedy
step would look at.

**Composition** (:func:`compose`, and the selector name ``"BASE+STEP"`` the registry builds, e.g.
``superfiltering+facility_location``): keep the top ``selectors.pre_fraction`` of the pool by the base selector's
score (ties by id, as ``select`` breaks them), run the diversity step on those, exclude the rest with
``exclude="beyond_pre_fraction"``. Superfiltering README, "Superfiltering with Diversity": top 20 % by IFD
(GPT-2), then facility location down to 2 %. DEITA (Liu et al. 2024, "What Makes Good Data for Alignment") ranks
by score first, then adds diversity (its Repr Filter); this module implements the Superfiltering.D form.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from cpqs_bench.data.example import Example
from cpqs_bench.selectors.base import EMPTY_RESPONSE, Needs, ScoreRow, ScoringContext, Selector, is_empty_response

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

BEYOND_PRE = "beyond_pre_fraction"
NO_EMBEDDING = "no_embedding"
STEPS = ("facility_location", "kcenter")


def count(budget: float, n: int) -> int:
    """The number of examples a budget means for ``n`` rows (same rule as :func:`cpqs_bench.select.budget_count`,
    which this layer may not import: ``>= 1`` a whole count, ``< 1`` a fraction, at least 1)."""
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    if budget >= 1:
        if budget != int(budget):
            raise ValueError(f"a budget >= 1 is a count and must be whole, got {budget}")
        return int(budget)
    return max(1, int(round(budget * n)))


# --------------------------------------------------------------------------------------------------- embeddings
def _encoder(ctx: ScoringContext, spec: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    # same (spec, revision, dtype) -> (model, tokenizer, info) shape as the model cache it shares, under a prefixed
    # spec so the target model's tokenizer lookup never picks the encoder
    key = (f"encoder:{spec}", None, "encoder")
    if ctx.loader is not None:  # tests / a shared model cache: the loader is the only source of models
        model, tok, _ = ctx.model(spec)
        return model, tok
    if key not in ctx._cache:
        from cpqs_bench import models

        ctx._cache[key] = models.load(
            spec, dtype=ctx.config.model.dtype, device=ctx.config.model.device, backbone_only=True
        )
    model, tok, _ = ctx._cache[key]
    return model, tok


def embed_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int = 512,
    batch_size: int = 16,
) -> np.ndarray:
    """Mean-pooled (attention mask), L2-normalised last hidden states, one row per text (do_fla.py's pooling)."""
    import torch

    from cpqs_bench.features import backbone

    base = backbone(model)
    device = next(base.parameters()).device
    out: np.ndarray = np.zeros((len(texts), int(model.config.hidden_size)), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))  # similar lengths per batch
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            hidden = base(**enc).last_hidden_state.float()
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        out[idx] = pooled.cpu().numpy()
    return out


def _text(ex: Example, which: str) -> str:
    instruction = "\n".join(m["content"] for m in ex.prompt if m["role"] != "system")
    return {"whole": instruction + "\n" + ex.response, "instruction": instruction, "response": ex.response}[which]


def embed_examples(examples: Sequence[Example], ctx: ScoringContext) -> dict[str, np.ndarray]:
    """id -> L2-normalised embedding for every example that has one (empty responses and examples the length
    policy drops have none). Stored in ``ctx.shared("embeddings")`` keyed by the settings and the examples'
    content, so ``kcenter`` and ``facility_location`` of one run (and a resumed run) embed once."""
    from cpqs_bench.io import stable_hash

    dcfg = ctx.config.selectors.diversity
    todo = sorted((ex for ex in examples if not is_empty_response(ex)), key=lambda ex: ex.id)  # order-free batches
    p = ctx.config.prompt
    key = stable_hash(
        {
            "diversity": [dcfg.embedding, dcfg.text, dcfg.max_length],
            "model": ctx.config.model.id,
            "revision": ctx.config.model.revision,
            "dtype": ctx.config.model.dtype,
            "prompt": [p.template, p.system_prompt, p.max_length],
            "loader": None
            if ctx.loader is None
            else repr(
                ctx.model(dcfg.embedding if dcfg.embedding != "target" else None)[2]
            ),  # a custom loader's weights
            "examples": [ex.id + ":" + ex.content_key() for ex in todo],
        },
        24,
    )
    path = ctx.shared("embeddings") / f"emb-{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {str(i): z["emb"][n] for n, i in enumerate(z["ids"])}
    got = _embed(todo, ctx)
    ids = sorted(got)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        ids=np.array(ids, dtype=str),
        emb=np.stack([got[i] for i in ids]) if ids else np.zeros((0, 1), dtype=np.float32),
    )
    tmp.replace(path)
    return got


def _embed(todo: Sequence[Example], ctx: ScoringContext) -> dict[str, np.ndarray]:
    import torch

    from cpqs_bench import features

    dcfg = ctx.config.selectors.diversity
    if dcfg.embedding != "target":
        model, tok = _encoder(ctx, dcfg.embedding)
        mat = embed_texts(model, tok, [_text(ex, dcfg.text) for ex in todo], dcfg.max_length, dcfg.batch_size)
        return {ex.id: mat[i] for i, ex in enumerate(todo)}
    model, tok, _ = ctx.model()
    spec = features.FeatureSpec(
        template=ctx.config.prompt.template,
        layers="last",
        max_length=min(dcfg.max_length, ctx.config.prompt.max_length),
        system_prompt=ctx.config.prompt.system_prompt,
        train_eot=False,
    )
    out: dict[str, np.ndarray] = {}
    for batch in features.iter_batches(
        model, tok, todo, spec, features.ExtractOptions(dcfg.batch_size, window=max(1, len(todo)))
    ):
        for ex_id, feat in zip(batch.ids, batch.features):
            if feat.shape[0] == 0:
                continue
            vec = feat[:, -1, :].float().mean(0)
            out[ex_id] = torch.nn.functional.normalize(vec, dim=0).numpy().astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------------- greedy
def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.maximum(d, 0.0)


def kcenter_greedy(x: np.ndarray, k: int) -> tuple[list[int], np.ndarray]:
    """(picked indices in pick order, each point's distance to its nearest pick at the stop)."""
    n = len(x)
    k = min(k, n)
    centroid = x.mean(0, keepdims=True)
    first = int(np.argmin(_sq_dists(x, centroid)[:, 0]))  # argmin takes the lowest index on ties
    picks = [first]
    min_d = np.sqrt(_sq_dists(x, x[first : first + 1])[:, 0])
    for _ in range(k - 1):
        nxt = int(np.argmax(min_d))
        picks.append(nxt)
        min_d = np.minimum(min_d, np.sqrt(_sq_dists(x, x[nxt : nxt + 1])[:, 0]))
    return picks, min_d


def similarity(x: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Dense non-negative kernel: submodlib's ``exp(-d / dim)`` for euclidean, ``(1 + cos) / 2`` for cosine."""
    if metric == "euclidean":
        return np.exp(-np.sqrt(_sq_dists(x, x)) / x.shape[1]).astype(np.float32)
    if metric == "cosine":
        norm = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return ((1.0 + norm @ norm.T) / 2.0).astype(np.float32)
    raise ValueError(f"unknown diversity metric {metric!r}; use 'euclidean' or 'cosine'")


def facility_location_greedy(sim: np.ndarray, k: int) -> tuple[list[int], np.ndarray]:
    """Lazy greedy maximisation of ``sum_i max_{j in S} sim[i, j]``; (picks in order, marginal gains at the stop).

    Ties between equal gains go to the lowest index (the heap orders by (-gain, index))."""
    n = sim.shape[0]
    k = min(k, n)
    cover = np.zeros(n, dtype=np.float64)
    heap = [(-float(g), j) for j, g in enumerate(sim.sum(0, dtype=np.float64))]
    heapq.heapify(heap)
    picks: list[int] = []
    chosen = np.zeros(n, dtype=bool)
    while len(picks) < k:
        neg, j = heapq.heappop(heap)
        gain = float(np.maximum(sim[:, j] - cover, 0.0).sum())
        if not heap or gain >= -heap[0][0] - 1e-12 * max(1.0, abs(gain)):
            picks.append(j)
            chosen[j] = True
            cover = np.maximum(cover, sim[:, j])
        else:
            heapq.heappush(heap, (-gain, j))
    gains = np.maximum(sim - cover[:, None], 0.0).sum(0)
    gains[chosen] = 0.0
    return picks, gains


def diversity_scores(ids: Sequence[str], emb: np.ndarray, k: int, method: str, metric: str) -> dict[str, float]:
    """id -> score: the j-th greedy pick ``2 - j / k``; the rest their stop value / max, in ``[0, 1)``."""
    if method == "kcenter":
        picks, rest = kcenter_greedy(emb, k)
    elif method == "facility_location":
        picks, rest = facility_location_greedy(similarity(emb, metric), k)
    else:
        raise ValueError(f"unknown diversity step {method!r}; use one of {', '.join(STEPS)}")
    top = float(rest.max()) if len(rest) else 0.0
    scores = {ids[i]: (float(rest[i]) / top * (1 - 1e-9) if top > 0 else 0.0) for i in range(len(ids))}
    for j, i in enumerate(picks):
        scores[ids[i]] = 2.0 - j / max(1, len(picks))
    return scores


def _n_tokens(ctx: ScoringContext, examples: Sequence[Example]) -> dict[str, int]:
    from cpqs_bench.selectors.base import response_tokens

    tok = ctx.tokenizer()
    return {ex.id: len(response_tokens(tok, ex, ctx.config.prompt)) for ex in examples}


def diversify(examples: Sequence[Example], ctx: ScoringContext, method: str, k: int) -> list[ScoreRow]:
    """Rows (input order) of the diversity step over ``examples``: k greedy picks on top, the rest below."""
    emb = embed_examples(examples, ctx)
    ids = sorted(emb)
    scores = (
        diversity_scores(
            ids,
            np.stack([emb[i] for i in ids]) if ids else np.zeros((0, 1)),
            k,
            method,
            ctx.config.selectors.diversity.metric,
        )
        if ids
        else {}
    )
    n_tok = _n_tokens(ctx, examples)
    rows = []
    for ex in examples:
        if is_empty_response(ex):
            rows.append(ScoreRow(ex.id, math.nan, n_tok[ex.id], exclude=EMPTY_RESPONSE))
        elif ex.id not in scores:
            rows.append(ScoreRow(ex.id, math.nan, n_tok[ex.id], exclude=NO_EMBEDDING))
        else:
            rows.append(ScoreRow(ex.id, scores[ex.id], n_tok[ex.id], extra={"picked": scores[ex.id] > 1.0}))
    return rows


class _DiversitySelector:
    needs = Needs.TARGET_MODEL
    method = ""

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        eligible = sum(1 for ex in examples if not is_empty_response(ex))
        return diversify(examples, ctx, self.method, count(ctx.config.selectors.budget, max(1, eligible)))


class KCenterSelector(_DiversitySelector):
    name = "kcenter"
    method = "kcenter"


class FacilityLocationSelector(_DiversitySelector):
    name = "facility_location"
    method = "facility_location"


# --------------------------------------------------------------------------------------------------- composition
def _row(r: ScoreRow | Mapping[str, Any]) -> Mapping[str, Any]:
    return r.to_dict() if isinstance(r, ScoreRow) else r


def compose(
    rows: Sequence[ScoreRow | Mapping[str, Any]],
    examples: Sequence[Example],
    budget: float,
    ctx: ScoringContext,
    step: str | None = None,
    pre_fraction: float | None = None,
) -> list[ScoreRow]:
    """A score selector's rows followed by a diversity step: the top ``pre_fraction`` of the pool by score, then
    ``step`` (default ``selectors.then``) picks ``budget`` of the pool among them. Rows keep the input order; the
    base score is kept as ``extra["pre_score"]``; rows outside the pre-set are excluded (``beyond_pre_fraction``),
    rows the base selector excluded keep their reason."""
    scfg = ctx.config.selectors
    step = step or scfg.then
    if step not in STEPS:
        raise ValueError(f"selectors.then must be one of {', '.join(STEPS)}, got {step!r}")
    pre_fraction = scfg.pre_fraction if pre_fraction is None else pre_fraction
    table = [_row(r) for r in rows]
    if [r["id"] for r in table] != [ex.id for ex in examples]:
        raise ValueError("compose: rows and examples must have the same ids in the same order")
    n = len(table)
    k, pre = count(budget, n), count(pre_fraction, n)
    if pre < k:
        raise ValueError(
            f"selectors.pre_fraction={pre_fraction} keeps {pre} of {n} examples, fewer than the "
            f"budget's {k} (selectors.budget={budget}): raise pre_fraction or lower the budget"
        )
    eligible = [r for r in table if r.get("exclude") is None]
    eligible.sort(key=lambda r: (-float(r["score"]), r["id"]))
    keep = {r["id"] for r in eligible[:pre]}
    by_id = {ex.id: ex for ex in examples}
    div = {r.id: r for r in diversify([by_id[i] for i in sorted(keep)], ctx, step, k)}
    out = []
    for r in table:
        base_score = r.get("score")
        base = float(base_score) if base_score is not None else math.nan
        n_tok = int(r.get("n_tokens") or 0)
        if r.get("exclude") is not None:
            out.append(ScoreRow(r["id"], math.nan, n_tok, exclude=r["exclude"], extra={"pre_score": base}))
        elif r["id"] not in keep:
            out.append(ScoreRow(r["id"], math.nan, n_tok, exclude=BEYOND_PRE, extra={"pre_score": base}))
        else:
            d = div[r["id"]]
            out.append(ScoreRow(r["id"], d.score, n_tok, exclude=d.exclude, extra={**d.extra, "pre_score": base}))
    return out


class Composed:
    """``BASE+STEP``: the base selector's scores, then :func:`compose` (pre_fraction from ``selectors``)."""

    def __init__(self, base: Selector, step: str):
        if step not in STEPS:
            raise ValueError(f"unknown diversity step {step!r} in '{base.name}+{step}'; use one of {', '.join(STEPS)}")
        self.base, self.step = base, step
        self.name = f"{base.name}+{step}"
        self.needs = base.needs

    def score(self, examples: Sequence[Example], ctx: ScoringContext) -> list[ScoreRow]:
        rows = self.base.score(list(examples), ctx)
        return compose(rows, examples, ctx.config.selectors.budget, ctx, self.step)
