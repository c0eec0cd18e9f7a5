"""General-domain pairwise evaluation: an LLM judge compares an arm's answers with a reference arm's, both orders.

Followed: ``eval/Pair-wise Comparison/GPT_eval.py`` and ``Accuracy printing.py`` of Victory0431/CPQS-Tuning (the
CPQS paper's protocol, inherited from AlpaGasus / Cherry_LLM and Superfiltering's
``evaluation/generation/eval.py`` + ``review_eval_score.py``): for each prompt the judge sees
[Question], Assistant 1's answer, Assistant 2's answer, and gives one line with two 1–10 scores; it is asked twice,
the arm first (forward) and the reference first (reverse).

* ``rule="strict"`` (default, CPQS's ``Accuracy printing.py``): **win** when both orders score the arm strictly
  higher, **lose** when both score the reference strictly higher, **tie** otherwise — in particular when the judge
  disagrees with itself across the swap.
* ``rule="sum"`` (Superfiltering's ``review_eval_score.py: get_scores_all``): the sign of the sum of the two
  orders' preferences (a tie in one order and a win in the other is a win).

Differences: the judge prompt below is our own text in the spirit of the Vicuna/FastChat pairwise prompt; a review
whose first line does not hold two numbers is not kept as ``-1`` (the reference code then skips or zero-fills it):
the prompt is reported as ``unparsed`` with the raw review and left out of win/tie/lose (counted).

Statistics (:func:`summarize`): counts, win rate ``(W + T/2) / N``, the papers' "winning score"
``(W - L) / N + 1``, a two-sided sign test on wins vs losses (``scipy.stats.binomtest``), and a paired bootstrap
95 % interval of ``(W - L) / N`` over prompts (seeded).

Prompt sets: :func:`read_prompts` reads the four test sets (Vicuna, Koala, WizardLM, Self-Instruct) in the
mirror's ``general_eval/*.jsonl.gz`` form or the original Superfiltering / CPQS-Tuning JSONL (``text`` /
``prompt`` / ``instruction`` / ``Instruction`` + optional ``input``). Answers are generated greedily by
:func:`generate_answers` (the judge package's batched generation, the model's chat template).

Pipeline stages (``reproduce`` with ``evaluate.pairwise.sets`` non-empty): :func:`answer_prompt_sets` writes one
model's answers (the base model, or base + an arm's adapter attached to the shared base for this call, under the
training template: the one-template rule), :func:`judge_answer_files` compares two answer files (an arm vs the
reference arm) and writes every judgement and the summary; :func:`summarize_over_seeds` pools an arm's seeds for
the leaderboard (counts summed; the sign test and the bootstrap interval over *prompts*, each prompt's outcome
averaged over the seeds where it parsed, so the seeds of one prompt are not counted as independent prompts).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from cpqs_bench.judge.backends import Judge, generate, prompt_text

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cpqs_bench.config import Config


PROMPT_VERSION = "cpqs-bench-pairwise-v1"
SYSTEM = "You are a fair and exact reviewer of answers written by AI assistants."
USER = (
    "[Question]\n{question}\n\n[Assistant 1's answer begins]\n{answer_1}\n[Assistant 1's answer ends]\n\n"
    "[Assistant 2's answer begins]\n{answer_2}\n[Assistant 2's answer ends]\n\n"
    "Judge how helpful, relevant, accurate and detailed each answer is. Give each assistant an overall score "
    "from 1 to 10 (higher is better). On the first line write only the two scores, Assistant 1 first, "
    "separated by a space. Then explain briefly. The order in which the answers appear must not affect your "
    "judgment."
)
QUESTION_KEYS = ("text", "prompt", "instruction", "Instruction", "Question")
Outcome = Literal["win", "tie", "lose", "unparsed"]


def conversation(question: str, answer_1: str, answer_2: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": USER.format(question=question, answer_1=answer_1, answer_2=answer_2)},
    ]


def parse_pair(text: str) -> tuple[float, float] | None:
    """The two scores on the first non-empty line ("8 6", "8, 6", "Assistant 1: 8 Assistant 2: 6")."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    first = re.sub(r"assistant\s*[12]\s*[:=]?", " ", lines[0], flags=re.I)
    nums = re.findall(r"-?\d+(?:\.\d+)?", first)
    if len(nums) != 2:
        return None
    a, b = float(nums[0]), float(nums[1])
    return (a, b) if all(math.isfinite(x) for x in (a, b)) else None


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def outcome(forward: tuple[float, float] | None, reverse: tuple[float, float] | None, rule: str = "strict") -> Outcome:
    """The arm's outcome: ``forward`` = (arm, ref) scores with the arm shown first; ``reverse`` = (ref, arm)."""
    if forward is None or reverse is None:
        return "unparsed"
    pf, pr = _sign(forward[0] - forward[1]), _sign(reverse[1] - reverse[0])  # +1 = the arm preferred
    if rule == "strict":
        return "win" if pf > 0 and pr > 0 else "lose" if pf < 0 and pr < 0 else "tie"
    if rule == "sum":
        s = pf + pr
        return "win" if s > 0 else "lose" if s < 0 else "tie"
    raise ValueError(f"unknown pairwise rule {rule!r}; use 'strict' or 'sum'")


@dataclass(frozen=True)
class Judgement:
    id: str
    outcome: Outcome
    forward: tuple[float, float] | None
    reverse: tuple[float, float] | None
    review_forward: str
    review_reverse: str


def judge_pairs(
    ids: Sequence[str],
    questions: Sequence[str],
    answers: Sequence[str],
    reference: Sequence[str],
    judge: Judge,
    rule: str = "strict",
) -> list[Judgement]:
    """Both orders for every prompt in one batch of ``2 N`` judge calls (cached by the judge)."""
    if not (len(ids) == len(questions) == len(answers) == len(reference)):
        raise ValueError("judge_pairs: ids, questions, answers and reference must have the same length")
    convs = [conversation(q, a, r) for q, a, r in zip(questions, answers, reference)]
    convs += [conversation(q, r, a) for q, a, r in zip(questions, answers, reference)]
    reviews = judge.complete(convs)
    n = len(ids)
    out = []
    for i in range(n):
        f, r = parse_pair(reviews[i]), parse_pair(reviews[n + i])
        out.append(Judgement(ids[i], outcome(f, r, rule), f, r, reviews[i], reviews[n + i]))
    return out


def summarize(judgements: Sequence[Judgement], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    import numpy as np
    from scipy.stats import binomtest

    counts = {k: sum(1 for j in judgements if j.outcome == k) for k in ("win", "tie", "lose", "unparsed")}
    w, t, lo = counts["win"], counts["tie"], counts["lose"]
    n = w + t + lo
    res: dict[str, Any] = {**counts, "n": n, "total": len(judgements)}
    if n == 0:
        return {**res, "win_rate": None, "winning_score": None, "sign_test_p": None, "net_ci95": None}
    vals = np.array(
        [1 if j.outcome == "win" else -1 if j.outcome == "lose" else 0 for j in judgements if j.outcome != "unparsed"],
        dtype=float,
    )
    rng = np.random.default_rng(seed)
    boots = vals[rng.integers(0, n, size=(n_boot, n))].mean(1)
    return {
        **res,
        "win_rate": (w + t / 2) / n,
        "winning_score": (w - lo) / n + 1,
        "sign_test_p": float(binomtest(w, w + lo, 0.5).pvalue) if w + lo else 1.0,
        "net_ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
    }


def generate_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    max_new_tokens: int = 256,
    batch_size: int = 8,
    system_prompt: str | None = None,
) -> list[str]:
    """Greedy answers to single-turn questions under the model's chat template."""
    convs = [
        ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [{"role": "user", "content": q}]
        for q in questions
    ]
    return generate(model, tokenizer, [prompt_text(tokenizer, c) for c in convs], max_new_tokens, batch_size)


def evaluate_pairwise(
    ids: Sequence[str],
    questions: Sequence[str],
    arm: tuple[Any, Any],
    reference: tuple[Any, Any],
    judge: Judge,
    *,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    rule: str = "strict",
    seed: int = 0,
) -> dict[str, Any]:
    """Answers of ``arm`` and ``reference`` (each ``(model, tokenizer)``) judged pairwise in both orders."""
    a = generate_answers(*arm, questions, max_new_tokens, batch_size)
    r = generate_answers(*reference, questions, max_new_tokens, batch_size)
    judgements = judge_pairs(ids, questions, a, r, judge, rule)
    return {
        "summary": summarize(judgements, seed=seed),
        "rule": rule,
        "judge": judge.label,
        "weak_judge": bool(getattr(judge, "weak", False)),
        "judge_prompt": PROMPT_VERSION,
        "samples": [
            {**asdict(j), "question": q, "answer": x, "reference": y} for j, q, x, y in zip(judgements, questions, a, r)
        ],
    }


def read_prompts(path: str | Path) -> list[tuple[str, str]]:
    """(id, question) per line of a prompt-set JSONL (``.gz`` too); question = instruction [+ "\\n" + input]."""
    from cpqs_bench.io import iter_jsonl_objects

    out = []
    for lineno, row in iter_jsonl_objects(path):  # file:line errors for bad JSON in one place
        key = next((k for k in QUESTION_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
        if key is None:
            raise ValueError(f"{path}:{lineno}: no question field (one of {', '.join(QUESTION_KEYS)})")
        q = row[key] + ("\n" + row["input"] if isinstance(row.get("input"), str) and row["input"].strip() else "")
        rid = next((row[k] for k in ("question_id", "id", "idx") if k in row), lineno)
        out.append((str(rid), q))
    return out


# ------------------------------------------------------------------------------------------------ pipeline stages
# The named prompt sets: files of the data mirror (SOURCES.md section 11, from Victory0431/CPQS-Tuning's
# ``eval/Pair-wise Comparison/test_data``).
PROMPT_SETS = {
    "vicuna": "general_eval/vicuna_test_set.jsonl.gz",
    "koala": "general_eval/koala_test_set.jsonl.gz",
    "wizardlm": "general_eval/wizardlm_test_set.jsonl.gz",
    "self_instruct": "general_eval/sinstruct_test_set.jsonl.gz",
}
VALUE = {"win": 1.0, "tie": 0.0, "lose": -1.0}


def prompt_set_path(name: str, mirror: str | Path | None = None) -> Path:
    """The file of a prompt set: a named set from the data mirror, or a path to a JSONL prompt file."""
    from cpqs_bench.data.mirror import ENV_VAR, mirror_dir

    if name in PROMPT_SETS:
        root = mirror_dir(mirror)
        if root is None:
            raise FileNotFoundError(
                f"prompt set {name!r} is read from the data mirror ({PROMPT_SETS[name]}): set "
                f"{ENV_VAR} or data.mirror, or name the file's path in evaluate.pairwise.sets"
            )
        path = root / PROMPT_SETS[name]
        if not path.is_file():
            raise FileNotFoundError(f"prompt set {name!r}: {path} not found (the mirror's general_eval/ folder)")
        return path
    path = Path(name).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"prompt set {name!r} is neither a named set ({', '.join(PROMPT_SETS)}) nor a file")
    return path


def set_label(name: str) -> str:
    return name if name in PROMPT_SETS else Path(name).name.split(".")[0]


def load_prompt_sets(
    sets: Sequence[str], mirror: str | Path | None = None, limit: int | None = None
) -> list[dict[str, str]]:
    """``{"set", "id", "question"}`` for the first ``limit`` prompts of every set (ids are ``<set>/<id>``)."""
    rows = []
    labels = [set_label(s) for s in sets]
    if len(set(labels)) != len(labels):
        raise ValueError(f"evaluate.pairwise.sets: two sets share a name ({labels})")
    for name, label in zip(sets, labels):
        prompts = read_prompts(prompt_set_path(name, mirror))
        for rid, question in prompts[:limit] if limit is not None else prompts:
            rows.append({"set": label, "id": f"{label}/{rid}", "question": question})
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("evaluate.pairwise.sets: duplicate prompt ids within a set")
    return rows


def answer_prompt_sets(
    cfg: Config,
    prompts: Sequence[dict[str, str]],
    out: str | Path,
    *,
    adapter: str | Path | None = None,
    loader: Callable[[str, str | None, str], tuple[Any, Any, Any]] | None = None,
) -> dict[str, Any]:
    """Greedy answers of ``cfg.model`` (+ ``adapter``) to ``prompts`` under the training template
    (``cfg.prompt``); writes ``answers.jsonl`` into ``out``; returns the manifest fields."""
    from cpqs_bench import models, templates
    from cpqs_bench.evaluate.harness import Attached, default_loader
    from cpqs_bench.io import write_jsonl

    pw = cfg.evaluate.pairwise
    load = loader if loader is not None else default_loader(models.pick_device(cfg.model.device))
    base, tokenizer, _info = load(cfg.model.id, cfg.model.revision, cfg.evaluate.dtype)
    tokenizer = templates.apply(copy.deepcopy(tokenizer), cfg.prompt)  # a copy: the loader's may be shared
    with Attached(base, str(adapter) if adapter else None) as model:
        answers = generate_answers(
            model,
            tokenizer,
            [p["question"] for p in prompts],
            pw.max_new_tokens,
            pw.batch_size,
            system_prompt=cfg.prompt.system_prompt,
        )
    out = Path(out)
    write_jsonl(out / "answers.jsonl", ({**p, "answer": a} for p, a in zip(prompts, answers)))
    return {
        "n_prompts": len(prompts),
        "sets": sorted({p["set"] for p in prompts}),
        "empty_answers": sum(1 for a in answers if not a.strip()),
        "generation": {
            "max_new_tokens": pw.max_new_tokens,
            "batch_size": pw.batch_size,
            "do_sample": False,
            "dtype": cfg.evaluate.dtype,
            "template": cfg.prompt.template,
        },
    }


def judge_answer_files(
    answers: str | Path,
    reference: str | Path,
    judge: Judge,
    out: str | Path,
    *,
    rule: str = "strict",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Judge an arm's ``answers.jsonl`` against the reference's (same prompts), both orders; writes
    ``judgements.jsonl`` and ``summary.json`` (overall and per set) into ``out``; returns the summary document."""
    from cpqs_bench.io import read_jsonl, write_json, write_jsonl

    arm, ref = list(read_jsonl(answers)), list(read_jsonl(reference))
    if [r["id"] for r in arm] != [r["id"] for r in ref]:
        raise ValueError(
            f"{answers} and {reference} answer different prompts: the answer stages disagree on the prompt sets"
        )
    judgements = judge_pairs(
        [r["id"] for r in arm],
        [r["question"] for r in arm],
        [r["answer"] for r in arm],
        [r["answer"] for r in ref],
        judge,
        rule,
    )
    sets = [r["set"] for r in arm]
    out = Path(out)
    write_jsonl(
        out / "judgements.jsonl",
        (
            {**asdict(j), "set": s, "question": a["question"], "answer": a["answer"], "reference": b["answer"]}
            for j, s, a, b in zip(judgements, sets, arm, ref)
        ),
    )
    doc = {
        "summary": summarize(judgements, n_boot=n_boot, seed=seed),
        "per_set": {
            s: summarize([j for j, x in zip(judgements, sets) if x == s], n_boot=n_boot, seed=seed)
            for s in dict.fromkeys(sets)
        },
        "rule": rule,
        "judge": judge.label,
        "judge_name": judge_name(judge),
        "judge_identity": judge.identity,
        "weak_judge": bool(getattr(judge, "weak", False)),
        "judge_prompt": PROMPT_VERSION,
    }
    write_json(out / "summary.json", doc)
    return doc


def judge_name(judge: Judge) -> str:
    """The judge model's short name (a local judge's model spec, an endpoint's model name)."""
    inner = getattr(judge, "judge", judge)
    name = getattr(inner, "spec", None) or getattr(inner, "model", None)
    return name if isinstance(name, str) else judge.label


def read_judgements(path: str | Path) -> list[Judgement]:
    """The judgements a judge stage wrote (``judgements.jsonl``)."""
    from cpqs_bench.io import read_jsonl

    out = []
    for row in read_jsonl(path):
        pair = lambda v: tuple(v) if v is not None else None  # noqa: E731
        out.append(
            Judgement(
                str(row["id"]),
                row["outcome"],
                pair(row["forward"]),
                pair(row["reverse"]),
                row["review_forward"],
                row["review_reverse"],
            )
        )
    return out


def summarize_over_seeds(per_seed: Sequence[Sequence[Judgement]], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """One arm over its seeds: win / tie / lose / unparsed summed over seeds, win rate and winning score from the
    pooled counts; the sign test (prompts the arm wins on average vs loses on average) and the bootstrap 95 %
    interval of the net score ``(W - L) / N`` resample *prompts*, each prompt's outcome averaged over its parsed
    seeds (with one seed: exactly :func:`summarize`)."""
    import numpy as np
    from scipy.stats import binomtest

    flat = [j for js in per_seed for j in js]
    counts = {k: sum(1 for j in flat if j.outcome == k) for k in ("win", "tie", "lose", "unparsed")}
    w, t, lo = counts["win"], counts["tie"], counts["lose"]
    n = w + t + lo
    by_prompt: dict[str, list[float]] = {}
    for j in flat:
        if j.outcome != "unparsed":
            by_prompt.setdefault(j.id, []).append(VALUE[j.outcome])
    res: dict[str, Any] = {**counts, "n": n, "total": len(flat), "n_seeds": len(per_seed), "n_prompts": len(by_prompt)}
    if n == 0:
        return {**res, "win_rate": None, "winning_score": None, "sign_test_p": None, "net_ci95": None}
    means = np.array([sum(v) / len(v) for v in by_prompt.values()], dtype=float)
    pos, neg = int((means > 0).sum()), int((means < 0).sum())
    rng = np.random.default_rng(seed)
    boots = means[rng.integers(0, len(means), size=(n_boot, len(means)))].mean(1)
    return {
        **res,
        "win_rate": (w + t / 2) / n,
        "winning_score": (w - lo) / n + 1,
        "sign_test_p": float(binomtest(pos, pos + neg, 0.5).pvalue) if pos + neg else 1.0,
        "prompts_won": pos,
        "prompts_lost": neg,
        "net_ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
    }
