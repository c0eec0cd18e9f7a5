"""CPQS hyper-parameters (paper defaults). Every one is a config key under ``selectors.cpqs``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class CPQSConfig:
    # contrastive training data
    # pairs: one file with both answers per row; join: two pools joined on the prompt; multi_model: AlpacaEval
    # generators; generate: pool answers vs make-negatives answers; official: the reference's own training data
    # (Hub dataset renlll/CPQS_data: positives file + small-model negative files, answer field 模型输出)
    pairs_source: Literal["pairs", "join", "multi_model", "generate", "official"] = "pairs"
    pairs: str = "alpaca_gpt4_vs_davinci003"  # named dataset / path of the paired file (or of the positives)
    negatives: str | None = None  # "join": the second file; "generate": where generated answers go (None = run dir)
    positive_field: str = "output_gpt4"
    negative_field: str = "output_davinci003"
    positive_generators: tuple[str, ...] = ("gpt4",)  # "multi_model": AlpacaEval generator names
    negative_generators: tuple[str, ...] = ("pythia-12b-mix-sft",)
    # "official": files of the dataset named by `pairs` (a Hub id, a mirror name or a local folder)
    official_positives: str = "alpaca_gpt4_data.json"
    official_negatives: tuple[str, ...] = ("alpaca_gpt4_data_llama.json", "alpaca_gpt4_data_qwen251.json")
    official_negative_field: str = "模型输出"
    # paired: one negative per instruction, 1:1 with its positive (the project's default); reference: every positive
    # and every negative of every negative set, as train_cnn.py build_dataset concatenates them (pos:neg = 1:#sets),
    # drawn by instruction group (n_pairs groups), epochs + held-out split as configured; reference_mix: the
    # reference's own mix: `reference_mix_texts` texts drawn from the shuffled union of every positive and negative
    # (unpaired) after the pool-overlap drop, one epoch, no validation split (train_cnn.py max_steps = 15000)
    composition: Literal["paired", "reference", "reference_mix"] = "paired"
    reference_mix_texts: int = 15000
    # the question text of the training pairs (official source): reference = "instruction\nInput:input" as
    # train_cnn.py build_dataset writes it. Recorded in selector.json; with feature_span=reference the scored pool's
    # questions are rendered the same way (prompts.reference_question), else the pool keeps its own rendering.
    question_format: Literal["project", "reference"] = "project"
    # "generate": the weaker model(s) answering the instructions (generators wins over generator when set)
    generator: str = "embedded"
    generators: tuple[str, ...] = ()
    generation_max_new_tokens: int = 256
    generation_batch_size: int = 8
    generation_do_sample: bool = False  # greedy by default
    generation_temperature: float = 1.0
    generation_top_p: float = 1.0
    generation_drop_unfinished: bool = True  # answers cut at max_new_tokens are dropped (counted), never closed
    # make-negatives engine: auto = vLLM when `vllm` is importable and the model device is CUDA, else HF generate
    generation_backend: Literal["auto", "hf", "vllm"] = "auto"
    n_pairs: int | None = 15000  # drawn AFTER the pool-overlap drop; a shortfall is skipped["short_of_n_pairs"]
    drop_identical: bool = True  # pairs whose two answers are equal carry no contrast
    # overlap with the scored pool: exclude = drop training pairs whose instruction is in the pool; out_of_fold =
    # score the pool in `oof_folds` folds, each by a CNN trained without that fold's instructions
    overlap: Literal["exclude", "out_of_fold"] = "exclude"
    oof_folds: int = 5
    # features
    # response: the answer tokens (+ end-of-turn) under prompt.template, the span SFT labels and IFD use;
    # reference: as train_cnn.py / predict.py render: ChatML models -> the full dialog through the tokenizer's chat
    # template with add_generation_prompt=True, every token after the user-only prompt (answer, <|im_end|>, the
    # trailing assistant header); models without a chat template -> "<s> [INST] {q} [/INST] {a} </s>" tokenised with
    # the tokenizer's own BOS (a second one). Recorded in selector.json; scoring refuses a mismatch.
    feature_span: Literal["reference", "response"] = "response"
    layers: str = "all"  # all | last | front | middle | back | comma list "0,4,8"
    feature_max_length: int = 2048
    feature_eot: bool | None = None  # end-of-turn token in the feature span; None = follow prompt.train_eot
    extract_batch_size: int = 8
    feature_cache: bool = True
    feature_cache_max_gb: float = 20.0
    # TextCNN
    num_filters: int = 256
    kernel_sizes: tuple[int, ...] = (3, 4, 5)
    mlp_hidden: int = 512
    dropout: float = 0.5
    # training
    lr: float = 1e-4
    grad_accum: int = 16
    batch_size: int = 1
    epochs: int = 3
    val_fraction: float = 0.1
    seed: int = 0
    mixed_precision: bool = True
    # length confound check: held-out pairs whose response lengths are within this ratio band count as
    # length-matched (max/min <= 1 + band); a length-matched AUC below `length_matched_auc_floor` is flagged
    length_band: float = 0.25
    length_matched_auc_floor: float = 0.6
