"""How much IFD moves with the precision of its loss: a one-off measurement behind ``ifd.sequence_losses``'s choice.

For each example, IFD = L_c / L_u (both passes as ``ifd.passes`` builds them, one sequence per forward) from

* **reference** — the model loaded in fp32, fp32 cross-entropy;
* **fp32 CE** — the model in its best dtype (bf16 on this CPU), bf16 logits cast to fp32 before the cross-entropy
  (what IFD did before);
* **logits' dtype** — the same bf16 logits, cross-entropy taken on them directly (what IFD does now);
* **exact lse** — the same bf16 logits, log-sum-exp summed in fp32 from bf16 ``exp(x - max)`` (a near-exact
  alternative, slower on a CPU).

Prints, per variant, the mean and max |IFD - reference| and the Spearman correlation with the reference, and the
mean |IFD - fp32 CE|: the loss's own precision against the error the bf16 backbone already carries.

    .venv/bin/python benchmarks/ifd_loss_precision.py --n 150
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from cpqs_bench import models, prompts
from cpqs_bench.data.pool import read_pool
from cpqs_bench.selectors.ifd import IFDSelector, direct_context, passes

VARIANTS = ("fp32 CE", "logits' dtype", "exact lse")


def mean_loss(model, ids: tuple[int, ...], start: int, variant: str) -> float:
    with torch.inference_mode():
        hidden = model.base_model(input_ids=torch.tensor([ids])).last_hidden_state[0, start - 1 : len(ids) - 1]
        logits = model.get_output_embeddings()(hidden)
        target = torch.tensor(ids[start:])
        if variant == "fp32 CE":
            ce = F.cross_entropy(logits.float(), target, reduction="none")
        elif variant == "logits' dtype":
            ce = F.cross_entropy(logits, target, reduction="none")
        else:
            top = logits.amax(-1, keepdim=True)
            lse = top[:, 0].double() + torch.exp(logits - top).sum(-1, dtype=torch.float32).double().log()
            ce = lse - logits.gather(1, target[:, None])[:, 0].double()
    return ce.double().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--pool", default="alpaca_gpt4")
    ap.add_argument("--template", default="chat")
    ap.add_argument("--max-length", type=int, default=512)
    args = ap.parse_args()

    fast, tok, info = models.load(args.model, dtype="auto")
    exact, _, _ = models.load(args.model, dtype="float32", device=info.device)
    context = direct_context(tok, args.template, None, IFDSelector.default_context)
    ref: list[float] = []
    got: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for ex in read_pool(args.pool, limit=args.n).examples:
        r = prompts.render(tok, ex, args.template, train_eot=False, max_length=args.max_length)
        both = passes(r, context, tok) if r is not None else None
        if both is None:
            continue
        (c_ids, c_start), (u_ids, u_start) = both
        ref.append(mean_loss(exact, c_ids, c_start, "fp32 CE") / mean_loss(exact, u_ids, u_start, "fp32 CE"))
        for v in VARIANTS:
            got[v].append(mean_loss(fast, c_ids, c_start, v) / mean_loss(fast, u_ids, u_start, v))
    reference = np.array(ref)
    print(f"model {info.spec} dtype {info.dtype} device {info.device}; {len(ref)} examples of {args.pool}")
    for v in VARIANTS:
        a = np.array(got[v])
        diff = np.abs(a - reference)
        print(
            f"{v:>14}: mean |IFD - fp32 model| {diff.mean():.2e}, max {diff.max():.2e}, "
            f"Spearman {spearmanr(a, reference).statistic:.5f}; mean |IFD - fp32 CE| "
            f"{np.abs(a - np.array(got['fp32 CE'])).mean():.2e}"
        )


if __name__ == "__main__":
    main()
