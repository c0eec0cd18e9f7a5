"""CPQS scoring throughput: (a) the project's pipeline vs (b) the official loop's shape vs (c) the hardware limit.

Same model (the embedded SmolLM2-135M-Instruct unless ``--model``), same Alpaca-GPT4 samples, same process:

(a) ``cpqs_bench.selectors.cpqs.selector.score_chunk``: bucketed right-padded batches, backbone only, response slices,
    best dtype, batched TextCNN (one-GEMM conv path);
(b) a re-creation of the official loop's *shape*: one sample at a time, the prompt tokenised twice (full text and
    prompt alone, to find where the response starts), the full CausalLM (LM head included) with
    ``output_hidden_states=True`` and every layer stacked, the CNN per sample with plain ``Conv2d``, all fp32;
(c) the limit: bare backbone forward (no LM head, no capture) in the best dtype plus the TextCNN alone on
    pre-computed features, each at its best batch size.

Also: hook capture vs ``output_hidden_states`` capture inside (a), and peak RSS of (a) on 1x and 10x pool sizes (each
in a fresh subprocess). Not a test: prints numbers, asserts nothing. Run: ``python benchmarks/bench_cpqs.py --n 200``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cpqs_bench import features as F  # noqa: E402
from cpqs_bench import models, prompts  # noqa: E402
from cpqs_bench.data.pool import read_pool  # noqa: E402
from cpqs_bench.selectors.cpqs import selector as S  # noqa: E402
from cpqs_bench.selectors.cpqs.textcnn import TextCNN, TextCNNConfig, collate  # noqa: E402


def load_examples(n: int, offset: int = 0):
    pool = read_pool("alpaca_gpt4", limit=n + offset)
    return pool.examples[offset : offset + n]


def make_cnn(model) -> TextCNN:
    torch.manual_seed(0)
    cfg = TextCNNConfig(num_layers=F.num_blocks(model) + 1, hidden_size=model.config.hidden_size)
    return TextCNN(cfg).eval().to(next(model.parameters()).device)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn):
    _sync()
    t0 = time.perf_counter()
    out = fn()
    _sync()
    return time.perf_counter() - t0, out


def run_a(cnn, model, tok, exs, spec, batch_size, method="hooks"):
    return timed(lambda: S.score_chunk(cnn, model, tok, exs, spec, batch_size, method=method))


def run_b(cnn32, model32, tok, exs, template, max_length):
    """The official loop's shape (see module docstring)."""

    def loop():
        scores = []
        for ex in exs:
            full_text = tok.apply_chat_template(
                list(ex.prompt) + [{"role": "assistant", "content": ex.response}], tokenize=False
            )
            prompt_text = prompts.prompt_text(tok, ex, template)
            ids = tok(full_text, return_tensors="pt", add_special_tokens=False, truncation=True, max_length=max_length)[
                "input_ids"
            ].to(model32.device)
            start = len(tok(prompt_text, add_special_tokens=False)["input_ids"])
            with torch.no_grad():
                out = model32(input_ids=ids, output_hidden_states=True)
                hs = torch.stack(out.hidden_states, dim=0)[:, 0, start:]  # (L, T, H)
                x = hs.permute(1, 0, 2).unsqueeze(0)  # (1, T, L, H)
                logits = cnn32.reference_forward(x, torch.tensor([x.shape[1]], device=x.device))
                scores.append(torch.softmax(logits, -1)[0, 1].item())
        return scores

    return timed(loop)


def run_c(cnn, model, tok, exs, spec, batch_sizes):
    """Best backbone-only time + best CNN-only time over batch sizes."""
    base = F.backbone(model)
    rendered = sorted(
        (prompts.render(tok, ex, spec.template, max_length=spec.max_length) for ex in exs),
        key=lambda r: len(r.input_ids),
    )
    pad = tok.pad_token_id
    feats = [f for b in F.iter_batches(model, tok, exs, spec, F.ExtractOptions(8)) for f in b.features]
    feats.sort(key=lambda f: f.shape[0])
    best_bb, best_cnn = {}, {}
    for bs in batch_sizes:

        def backbone_only(bs: int = bs):
            with torch.no_grad():
                for s in range(0, len(rendered), bs):
                    group = rendered[s : s + bs]
                    w = max(len(r.input_ids) for r in group)
                    ids = torch.full((len(group), w), pad)
                    mask = torch.zeros((len(group), w), dtype=torch.long)
                    for i, r in enumerate(group):
                        ids[i, : len(r.input_ids)] = torch.tensor(r.input_ids)
                        mask[i, : len(r.input_ids)] = 1
                    base(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), use_cache=False)

        def cnn_only(bs: int = bs):
            dev = next(cnn.parameters()).device  # features come back on the host, as in the pipeline
            for s in range(0, len(feats), bs):
                x, lengths = collate(feats[s : s + bs])
                cnn.score(x.to(dev), lengths.to(dev))

        best_bb[bs] = timed(backbone_only)[0]
        best_cnn[bs] = timed(cnn_only)[0]
    return best_bb, best_cnn


def peak_rss_child(n: int, batch_size: int, max_length: int, model: str = "embedded", device: str = "cpu") -> float:
    """Peak host RSS (MiB) of a fresh process scoring n examples with the pipeline."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); import benchmarks.bench_cpqs as b; "
        f"b._rss_main({n}, {batch_size}, {max_length}, {model!r}, {device!r})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return float(out.stdout.strip().splitlines()[-1])


def _rss_main(n: int, batch_size: int, max_length: int, model_spec: str = "embedded", device: str = "cpu") -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    model, tok, _ = models.load(model_spec, device=device)
    cnn = make_cnn(model)
    exs = load_examples(n)
    spec = F.FeatureSpec(max_length=max_length)
    import itertools

    # score in fixed chunks, as CPQSSelector does; nothing accumulates except the rows
    for s in itertools.count(0, 64):
        chunk = exs[s : s + 64]
        if not chunk:
            break
        S.score_chunk(cnn, model, tok, chunk, spec, batch_size)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--model", default="embedded", help="model spec (embedded, a Hub id or a local folder)")
    ap.add_argument("--device", default="auto", help="auto = CUDA when available, else CPU")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rss-n", type=int, default=20, help="1x pool size for the RSS check (10x is also run)")
    ap.add_argument("--n-b", type=int, default=None, help="measure (b) on the first N samples only (it is slow)")
    ap.add_argument("--skip-b", action="store_true")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of (a) and (c); best per path")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = models.pick_device(args.device)
    model, tok, info = models.load(args.model, device=device)
    exs = load_examples(args.n)
    spec = F.FeatureSpec(max_length=args.max_length)
    cnn = make_cnn(model)
    n_tok = sum(prompts.render(tok, ex, "chat", max_length=args.max_length).n_response for ex in exs)
    print(
        f"model {info.spec} dtype {info.dtype} device {device}; {len(exs)} Alpaca-GPT4 samples, {n_tok} response tokens; "
        f"threads {args.threads}"
    )
    run_a(cnn, model, tok, exs[:4], spec, args.batch_size)  # warm-up (tap cache, allocator)
    # What the pipeline runs: CPQSSelector calls score_chunk with method "auto" (hidden_states when the final layer
    # is among the channels, as with every layer; hooks otherwise). Both methods and the limit are timed in
    # interleaved rounds, best per path: on a shared machine load drifts between measurements.
    n_blocks = F.num_blocks(model)
    auto = (
        "hidden_states" if n_blocks in F.resolve_layers(spec.layers, n_blocks) else "hooks"
    )  # features._forward_batch
    ta = tah = tc = float("inf")
    bb: dict = {}
    cn: dict = {}
    for _ in range(args.rounds):
        t, rows_a = run_a(cnn, model, tok, exs, spec, args.batch_size, "hooks")
        ta = min(ta, t)
        t, rows_h = run_a(cnn, model, tok, exs, spec, args.batch_size, "hidden_states")
        tah = min(tah, t)
        b1, c1 = run_c(cnn, model, tok, exs, spec, (1, 4, 8, 16))
        bb = {k: min(bb.get(k, float("inf")), v) for k, v in b1.items()}
        cn = {k: min(cn.get(k, float("inf")), v) for k, v in c1.items()}
    diff = max(abs(r1["score"] - r2["score"]) for r1, r2 in zip(rows_a, rows_h))
    t_pipe = tah if auto == "hidden_states" else ta
    print(f"(a) pipeline (method auto = {auto}): {len(exs) / t_pipe:7.2f} samples/s  ({t_pipe:.1f} s)")
    print(f"    hooks:          {len(exs) / ta:7.2f} samples/s  ({ta:.1f} s)")
    print(f"    hidden_states:  {len(exs) / tah:7.2f} samples/s  ({tah:.1f} s); max |score diff| {diff:.2e}")
    bbs, cns = min(bb, key=bb.get), min(cn, key=cn.get)
    tc = bb[bbs] + cn[cns]
    print(
        f"(c) limit: backbone {len(exs) / bb[bbs]:.2f}/s (bs {bbs}), CNN {len(exs) / cn[cns]:.2f}/s (bs {cns}) "
        f"-> {len(exs) / tc:7.2f} samples/s  ({tc:.1f} s)"
    )
    print("    backbone s by batch size: " + json.dumps({k: round(v, 2) for k, v in bb.items()}))
    print("    CNN s by batch size:      " + json.dumps({k: round(v, 2) for k, v in cn.items()}))
    if not args.skip_b:
        model32, _, _ = models.load(args.model, dtype="float32", device=device)
        cnn32 = make_cnn(model32).float()
        cnn32.load_state_dict(cnn.state_dict())
        exs_b = exs[: args.n_b or len(exs)]
        tb, scores_b = run_b(cnn32, model32, tok, exs_b, "chat", args.max_length)
        rate_b = len(exs_b) / tb
        print(f"(b) official loop shape:      {rate_b:7.2f} samples/s  ({tb:.1f} s on {len(exs_b)} samples)")
        print(f"ratio (a)/(b) = {len(exs) / t_pipe / rate_b:.2f}x")
    print(f"ratio (a)/(c) = {tc / t_pipe:.1%} of the limit (hooks: {tc / ta:.1%}, hidden_states: {tc / tah:.1%})")
    r1 = peak_rss_child(args.rss_n, args.batch_size, args.max_length, args.model, device)
    r10 = peak_rss_child(10 * args.rss_n, args.batch_size, args.max_length, args.model, device)
    print(
        f"peak RSS: {args.rss_n} samples {r1:.0f} MiB, {10 * args.rss_n} samples {r10:.0f} MiB "
        f"(growth {r10 / r1 - 1:+.1%})"
    )


if __name__ == "__main__":
    main()
