"""Selector settings: which selectors score the pool, the selection budget, baseline options, CPQS."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cpqs_bench.judge.config import JudgeConfig
from cpqs_bench.selectors.cpqs.config import CPQSConfig


@dataclass(frozen=True)
class DiversityConfig:
    """``kcenter`` / ``facility_location`` and the diversity step after a score selector (``selectors.then``)."""

    embedding: str = "target"  # "target": mean-pooled last hidden state of the target model over the response
    #                            span (cpqs_bench.features); or a model spec, mean-pooled over the text (e.g.
    #                            sentence-transformers/all-MiniLM-L6-v2, Superfiltering.D's encoder)
    text: Literal["whole", "instruction", "response"] = "whole"  # what a model-spec encoder embeds (do_fla.py)
    metric: Literal["euclidean", "cosine"] = "euclidean"  # on L2-normalised embeddings, as do_fla.py
    max_length: int = 512
    batch_size: int = 16


@dataclass(frozen=True)
class IFDConfig:
    """How ``ifd`` / ``ifd_ppl`` / ``perplexity`` (target model) and ``superfiltering`` (proxy) render and cut."""

    # template: prompt.template (proxy_template for the proxy), the span SFT labels use; reference: each selector's
    # reference text — ifd / perplexity: Cherry_LLM's Alpaca PROMPT_DICT (prompt_input when the row has an input,
    # else prompt_no_input, "### Response:" then the answer); ifd_ppl / superfiltering: Superfiltering's
    # "{instruction}\n{input}\n" (or "{instruction}\n"); both tokenised whole as the reference scripts do
    prompt: Literal["template", "reference"] = "template"
    max_length: int | None = None  # None: prompt.max_length (Cherry's scripts: 512)
    proxy_max_length: int | None = None  # superfiltering; None: prompt.max_length (Superfiltering's default: 1024)


@dataclass(frozen=True)
class AlpaGasusConfig:
    threshold: float | None = (
        None  # rows rated below it carry exclude="alpagasus<threshold" (paper: 4.5); None = rank all
    )


@dataclass(frozen=True)
class MoDSConfig:
    reward_model: str = "OpenAssistant/reward-model-deberta-v3-large-v2"  # MoDS's quality and necessity model
    reward_revision: str | None = None
    reward_batch_size: int = 8
    quality_threshold: float = 0.0  # MoDS README: high-quality = reward > 0.0
    seed_count: float = 0.3  # k-center seed set: < 1 fraction of the high-quality subset, >= 1 a count
    embedding: str = "target"  # instruction embeddings (MoDS: bert-base-uncased); "target" = the target model
    # MoDS run.py: bert-base-uncased last_hidden_state[:, 0] ([CLS]), unnormalised, of d["instruction"] only,
    # max_length 96; the project's default: mean-pooled, L2-normalised, instruction + input, diversity.max_length
    embedding_pooling: Literal["cls", "mean"] = "mean"
    embedding_text: Literal["instruction", "whole"] = "whole"  # whole = instruction + input (the user text)
    embedding_max_length: int | None = None  # None: selectors.diversity.max_length; MoDS: 96
    reward_max_length: int | None = 512  # reward-model input cut; None: the model's own limit (MoDS: no cut)
    seed_model: str | None = None  # the model fine-tuned on the seed set (None = the target model itself)
    seed_model_revision: str | None = None
    necessity_threshold: float = -1.0  # seed-model answer reward below it = "necessary" (a CLI argument in MoDS)
    max_new_tokens: int = 128  # alias kept for old configs; necessity_max_new_tokens wins when set
    generation_batch_size: int = 8
    # MoDS inference/instruction_filter.py: GenerationConfig(num_beams=4, temperature=0.1, top_p=0.75) (no
    # do_sample: beam search), max_new_tokens = model_max_length (1024 in its arguments), Alpaca PROMPT_DICT
    necessity_num_beams: int = 1
    necessity_max_new_tokens: int | None = None  # None: max_new_tokens


@dataclass(frozen=True)
class RDSConfig:
    """RDS+ (Ivison et al. 2025): pooled target hidden states, max cosine to a query set (target-aware)."""

    queries: str | None = None  # named dataset / file / hf: spec of the query (dev) set; never evaluation items
    query_limit: int | None = 500
    query_offset: int = 0  # rows of each source skipped first (a slice disjoint from a pool read from the same set)
    query_task_field: str | None = None  # a metadata field naming each query's task (round-robin across tasks)
    query_tasks: tuple[str, ...] = ()  # with query_task_field: keep only these tasks (empty: every task)
    max_length: int = 2048
    batch_size: int = 8


@dataclass(frozen=True)
class RewardConfig:
    """A reward model's score of (instruction, response); MoDS's quality model by default."""

    model: str = "OpenAssistant/reward-model-deberta-v3-large-v2"
    revision: str | None = None
    max_length: int | None = None  # None: the model's own limit (MoDS does not truncate below it)
    batch_size: int = 8
    format: Literal["auto", "pair", "chat"] = "auto"  # pair: tokenizer(question, answer) (MoDS); chat: the template


@dataclass(frozen=True)
class ExternalConfig:
    """Precomputed scores joined to the pool (a published scored dataset, another tool's output)."""

    source: str | None = None  # a file or a Hub dataset spec
    column: str = "score"
    join: str = "hash"  # "hash": normalised (instruction, input, response) hash; or the name of an id column
    label: str | None = None  # the arm is named external:<label> when set (never a path)


@dataclass(frozen=True)
class LESSConfig:
    """LESS (Xia et al. 2024): warm-up LoRA, Adam-preconditioned projected gradients vs a query set."""

    queries: str | None = None  # as rds.queries: a named dev set, never evaluation items
    query_limit: int | None = 200
    query_offset: int = 0  # as rds.query_offset
    query_task_field: str | None = None
    warmup_fraction: float = 0.05
    warmup_epochs: int = 4
    lora_r: int = 128
    lora_alpha: int = 512
    lr: float = 2e-5
    projection_dim: int = 8192
    max_length: int = 2048
    seed: int = 0


@dataclass(frozen=True)
class DEITAConfig:
    """DEITA (Liu et al. 2024): complexity x quality scorers, score-first diversity filter."""

    complexity_model: str = "hkust-nlp/deita-complexity-scorer"
    quality_model: str = "hkust-nlp/deita-quality-scorer"
    revision: str | None = None
    max_length: int = 2048
    batch_size: int = 8
    diversity_threshold: float = 0.9  # cosine *similarity* above which the score-first filter drops an example
    embedding: str = "target"


@dataclass(frozen=True)
class SelectorsConfig:
    names: tuple[str, ...] = ("random", "longest", "ifd", "superfiltering", "cpqs")
    budget: float = 0.05  # >= 1: number of examples (or tokens); < 1: fraction of the pool (or of its tokens)
    budget_unit: Literal["examples", "tokens"] = "examples"  # tokens: trained tokens under the frozen SFT recipe
    bottom_arms: tuple[str, ...] = ("cpqs",)  # selectors that also get a bottom-k sanity arm
    full_arm: bool = True  # fine-tune the whole pool as the "full" arm (false: a study that cannot afford it)
    batch_size: int = 8
    seed: int = 0
    random_per_seed: bool = True  # the random arm's subset is redrawn per experiment seed (false: pinned to `seed`)
    min_kept: Literal["warn", "error"] = "warn"  # an arm whose selector excluded examples keeps fewer than k
    # IFD's direct-answer context: auto = each selector's reference (ifd: cherry, ifd_ppl/superfiltering: superfiltering)
    ifd_context: Literal["auto", "cherry", "superfiltering"] = "auto"
    proxy_ifd_context: Literal["auto", "cherry", "superfiltering"] = "auto"
    drop_ifd_ge_1: bool = True  # both IFD papers drop samples with IFD >= 1 before ranking
    proxy_model: str = "gpt2"  # Superfiltering's small proxy (the smoke preset uses the embedded model offline)
    proxy_template: str = "none"
    plugins: dict[str, str] = field(default_factory=dict)  # extra name -> "module:Class"
    perplexity_keep: Literal["low", "high"] = "low"  # perplexity: keep the lowest (default) or highest NLL
    # composition: any score selector followed by a diversity step (Superfiltering.D = superfiltering, then
    # facility_location on the top pre_fraction of the pool); None = rank by score alone
    then: Literal["facility_location", "kcenter"] | None = None
    pre_fraction: float = 0.2  # fraction (< 1) or count (>= 1) of the pool kept by score before the diversity step
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    alpagasus: AlpaGasusConfig = field(default_factory=AlpaGasusConfig)
    ifd: IFDConfig = field(default_factory=IFDConfig)
    mods: MoDSConfig = field(default_factory=MoDSConfig)
    cpqs: CPQSConfig = field(default_factory=CPQSConfig)
    rds: RDSConfig = field(default_factory=RDSConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    external: ExternalConfig = field(default_factory=ExternalConfig)
    less: LESSConfig = field(default_factory=LESSConfig)
    deita: DEITAConfig = field(default_factory=DEITAConfig)
