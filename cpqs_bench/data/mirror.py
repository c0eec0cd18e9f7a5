"""Named datasets: the Hub id a user gets online, the file in a local mirror directory offline.

The mirror directory comes from (first match): the explicit argument, the ``CPQS_DATA_MIRROR`` environment variable,
the config key ``data.mirror``. Tests and CI point it at ``../shared/data``. No default path of anyone's machine.
When a mirror is set and holds the file, it wins (offline, reproducible); otherwise the Hub spec is returned and the
loader goes to the Hub (which fails cleanly when offline).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "CPQS_DATA_MIRROR"


@dataclass(frozen=True)
class NamedDataset:
    name: str
    hub: str  # "hf:owner/name[:config][@revision]" with split after '#', e.g. "hf:openai/gsm8k:main#test"
    mirror_path: str  # relative to the mirror directory
    schema: str | None = None  # reader schema hint ("alpaca", "gsm8k", "sharegpt", ...); None = detect
    description: str = ""


NAMED: dict[str, NamedDataset] = {
    d.name: d
    for d in [
        NamedDataset("gsm8k", "hf:openai/gsm8k:main#test", "gsm8k/test.jsonl", "gsm8k", "GSM8K test (1319)"),
        NamedDataset("gsm8k_train", "hf:openai/gsm8k:main#train", "gsm8k/train.jsonl", "gsm8k", "GSM8K train (7473)"),
        NamedDataset(
            "humaneval", "hf:openai/openai_humaneval#test", "humaneval/HumanEval.jsonl.gz", None, "HumanEval (164)"
        ),
        NamedDataset(
            "humaneval_plus",
            "hf:evalplus/humanevalplus@v0.1.10#test",
            "humanevalplus/HumanEvalPlus-v0.1.10.jsonl.gz",
            None,
            "HumanEval+ v0.1.10 (164)",
        ),
        NamedDataset(
            "mbpp_plus",
            "hf:evalplus/mbppplus@v0.2.0#test",
            "mbppplus/MbppPlus-v0.2.0.jsonl.gz",
            None,
            "MBPP+ v0.2.0 (378)",
        ),
        NamedDataset(
            "alpaca_gpt4",
            "hf:vicgalle/alpaca-gpt4#train",
            "alpaca_gpt4/llamafactory_alpaca_en_demo.jsonl.gz",
            "alpaca",
            "Alpaca-GPT4 (mirror: 999-row LLaMA-Factory sample)",
        ),
        NamedDataset(
            "alpaca",
            "hf:yahma/alpaca-cleaned#train",
            "alpaca/alpaca_cleaned_20230329.jsonl.gz",
            "alpaca",
            "Alpaca cleaned, text-davinci-003 answers (51941)",
        ),
        NamedDataset(
            "alpaca_gpt4_vs_davinci003",
            "hf:cpqs-bench/alpaca_gpt4_vs_davinci003#train",
            "pairs/alpaca_gpt4_vs_davinci003.jsonl.gz",
            None,
            "same-instruction GPT-4 vs text-davinci-003 pairs (9909)",
        ),
        NamedDataset(
            "cpqs_data",
            "hf:renlll/CPQS_data",
            "cpqs_data",
            None,
            "the CPQS paper's selector training data (a folder: alpaca_gpt4_data.json positives, "
            "alpaca_gpt4_data_llama.json / alpaca_gpt4_data_qwen251.json small-model negatives in 模型输出)",
        ),
        NamedDataset(
            "codealpaca",
            "hf:sahil2801/CodeAlpaca-20k#train",
            "code/codealpaca_2k.jsonl.gz",
            "alpaca",
            "CodeAlpaca (mirror: 2k)",
        ),
        NamedDataset("lima", "hf:GAIR/lima#train", "instruct_other/longismore_lima_1k.jsonl.gz", "sharegpt", "LIMA 1k"),
        NamedDataset(
            "alpaca_original_9k",
            "hf:tatsu-lab/alpaca#train",
            "alpaca/alpagasus_random_9k.jsonl.gz",
            "alpaca",
            "original Alpaca, text-davinci-003 answers (mirror: AlpaGasus's 9,229-row random "
            "sample; the Hub set is the full 52k)",
        ),
        NamedDataset(
            "openr1_math",
            "hf:open-r1/OpenR1-Math-220k:default#train",
            "reasoning/openr1_math.jsonl.gz",
            "messages",
            "DeepSeek-R1 reasoning traces on math problems (OpenR1-Math-220k, default config, "
            "chat messages with <think> blocks; mirror: a sample)",
        ),
    ]
}
# AlpacaEval outputs of 12 models on 805 prompts: alpaca_eval/<generator>
_ALPACA_EVAL = [
    "gpt4",
    "gpt4_1106_preview",
    "gpt-3.5-turbo-0613",
    "text_davinci_003",
    "text_davinci_001",
    "alpaca-7b",
    "llama-2-7b-chat-hf",
    "vicuna-7b-v1.5",
    "guanaco-7b",
    "falcon-7b-instruct",
    "oasst-sft-pythia-12b",
    "pythia-12b-mix-sft",
]
for _g in _ALPACA_EVAL:
    NAMED[f"alpaca_eval/{_g}"] = NamedDataset(
        f"alpaca_eval/{_g}",
        f"hf:tatsu-lab/alpaca_eval:alpaca_eval_all_outputs#{_g}",
        f"alpaca_eval/{_g}.jsonl.gz",
        "alpaca_eval",
        f"AlpacaEval outputs of {_g}",
    )


def mirror_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    value = explicit if explicit not in (None, "") else os.environ.get(ENV_VAR) or None
    return Path(value).expanduser() if value else None


def lookup(name: str) -> NamedDataset:
    try:
        return NAMED[name]
    except KeyError:
        close = difflib.get_close_matches(name, NAMED, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown dataset name {name!r}.{hint} Known: {', '.join(sorted(NAMED))}") from None


def resolve(name: str, mirror: str | os.PathLike | None = None) -> tuple[str, str | None]:
    """Return ``(source, schema)``: a local file path when the mirror holds it, else the Hub spec."""
    ds = lookup(name)
    root = mirror_dir(mirror)
    if root is not None:
        p = root / ds.mirror_path
        if p.exists():
            return str(p), ds.schema
    return ds.hub, ds.schema


def resolve_path(name: str, mirror: str | os.PathLike | None = None) -> Path:
    """Local file of a named dataset; a clear error when no mirror holds it (for code that needs raw files)."""
    source, _ = resolve(name, mirror)
    if source.startswith("hf:"):
        raise FileNotFoundError(
            f"dataset {name!r} is not in a local mirror (set {ENV_VAR} or data.mirror to a directory holding "
            f"{lookup(name).mirror_path}); online it is {source}"
        )
    return Path(source)


OFFICIAL_ALIASES = ("cpqs_data", "renlll/CPQS_data", "hf:renlll/CPQS_data")


def dataset_files(
    name: str,
    files: "list[str] | tuple[str, ...]",
    mirror: str | os.PathLike | None = None,
    *,
    offline: bool | None = None,
) -> dict[str, Path]:
    """Local paths of ``files`` of a multi-file dataset: a local folder as given; a named one (e.g. ``cpqs_data``,
    also spelled ``renlll/CPQS_data``) from the mirror folder when it holds every file, else downloaded from its Hub
    dataset repository (``huggingface_hub``, cached). Offline (``HF_HUB_OFFLINE=1`` or ``offline=True``) a missing
    file is an error that names every missing file and where it was looked for."""
    if Path(name).expanduser().is_dir():
        folder = Path(name).expanduser()
        missing = [f for f in files if not (folder / f).exists()]
        if missing:
            raise FileNotFoundError(f"{folder}: missing {', '.join(missing)}")
        return {f: folder / f for f in files}
    key = "cpqs_data" if name in OFFICIAL_ALIASES else name
    ds = lookup(key)
    root = mirror_dir(mirror)
    local = root / ds.mirror_path if root is not None else None
    if local is not None and all((local / f).exists() for f in files):
        return {f: local / f for f in files}
    if offline is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    repo = ds.hub.removeprefix("hf:").split("#")[0].split("@")[0]
    if offline:
        where = f"mirror folder {local}" if local is not None else f"no mirror ({ENV_VAR} unset)"
        missing = [f for f in files if local is None or not (local / f).exists()]
        raise FileNotFoundError(
            f"dataset {name!r}: {', '.join(missing)} not found ({where}) and the Hub is offline; "
            f"download them from the Hub dataset {repo} into {local or '<mirror>/' + ds.mirror_path}"
        )
    from huggingface_hub import hf_hub_download

    from cpqs_bench.io import bound_hub_requests

    bound_hub_requests()  # every request of the download waits at most io.DEFAULT_HUB_TIMEOUT_S (issue #34)
    return {f: Path(hf_hub_download(repo_id=repo, filename=f, repo_type="dataset")) for f in files}
