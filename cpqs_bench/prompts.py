"""Prompt rendering with a token-exact response span — the one function CPQS features, IFD and SFT labels share.

``render(tokenizer, example, template=...)`` returns the input ids of ``prompt + response [+ end-of-turn]`` and the
half-open token span of the response. The span is exact by construction: the prompt prefix, the response and the
end-of-turn token are tokenised *separately* and concatenated, so no BPE merge can straddle the boundary and
``tokenizer.decode(ids[span])`` is the response (plus the end-of-turn token when ``train_eot``). This is also what the
model sees at generation time: a prompt ending in the generation prefix, then its own answer tokens.

Templates (:mod:`cpqs_bench.templates`): ``chat`` (the tokenizer's own chat template), the named plain templates
``alpaca``, ``none`` (the instruction and a newline, Superfiltering's proxy prompt) and ``llama2``, or any Jinja chat
template (string or ``.jinja`` file). Every one is rendered through its Jinja chat template
(:func:`cpqs_bench.templates.chat_template`): the prefix and the template's treatment of the answer (e.g. strip) are
found by rendering the conversation twice (with the answer and with a sentinel); anything the template puts after
the end-of-turn token (ChatML's trailing newline, a next-turn header) is never part of the sequence. Because the same
Jinja is what :func:`cpqs_bench.templates.apply` sets on the tokenizer, lm-eval's ``apply_chat_template`` renders the
very prefix ids used here for features, IFD and SFT rows.

BOS: exactly as the tokenizer adds it by default. The plain templates write ``bos_token`` first when ``tokenizer(x)``
starts with it (Llama), and nothing otherwise (GPT-2, ChatML); a chat template writes what it writes. All text is
encoded with ``add_special_tokens=False``, so a BOS appears once, where the template puts it.

**Reference renderings** (used only where a selector is told to follow its reference code; fine-tuning and
evaluation never use them): :func:`render_reference` (CPQS ``train_cnn.py`` / ``predict.py``: ChatML dialog with
``add_generation_prompt=True`` and every token after the prompt, or Llama's ``"<s> [INST] {q} [/INST] {a} </s>"``)
and :func:`render_ifd_reference` (Cherry_LLM's / Superfiltering's ``PROMPT_DICT``) tokenise the prompt text and the
whole text separately with the tokenizer's default special tokens, as those scripts do
(:func:`render_whole_text`), so the span is whatever the reference slices, BPE merges at the boundary included.
Their question fields come from :func:`alpaca_fields` (the example's metadata, else its user text split at the first
blank line: wrong for the ~1 % of Alpaca rows whose instruction holds a blank line).

Length policy (explicit, counted by :class:`LengthStats`): when ``prompt + response + eot`` exceeds ``max_length``,
``overflow="truncate"`` cuts the response tail (no end-of-turn token: the answer did not end) and ``"drop"`` returns
``None``. A prompt that leaves fewer than ``min_response_tokens`` for the answer is always dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence, overload

from cpqs_bench import templates
from cpqs_bench.data.example import Example

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

PLAIN_TEMPLATES = templates.PLAIN_TEMPLATES
TEMPLATES = templates.NAMED_TEMPLATES
ALPACA_PROMPT = templates.ALPACA_PROMPT
TemplateError = templates.TemplateError
_SENTINEL = "\u2063CPQS\u2063RESPONSE\u2063"
_USER_SENTINEL = "\u2063CPQS\u2063INSTRUCTION\u2063"


@dataclass(frozen=True)
class Rendered:
    input_ids: tuple[int, ...]
    response_start: int  # == number of prompt tokens
    response_end: int  # exclusive; includes the end-of-turn token when has_eot
    has_eot: bool
    truncated: bool

    @property
    def prompt_ids(self) -> tuple[int, ...]:
        return self.input_ids[: self.response_start]

    @property
    def response_ids(self) -> tuple[int, ...]:
        return self.input_ids[self.response_start : self.response_end]

    @property
    def n_response(self) -> int:
        return self.response_end - self.response_start

    def labels(self, ignore_index: int = -100) -> list[int]:
        """SFT labels: prompt tokens masked; only the response span (and its end-of-turn token) supervised."""
        ids = list(self.input_ids)
        return (
            [ignore_index] * self.response_start
            + ids[self.response_start : self.response_end]
            + [ignore_index] * (len(ids) - self.response_end)
        )


@dataclass
class LengthStats:
    kept: int = 0
    truncated: int = 0
    dropped_too_long: int = 0
    dropped_prompt_too_long: int = 0
    dropped_empty: int = 0
    lengths: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "lengths"}


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _messages(example: Example, system_prompt: str | None) -> list[dict[str, str]]:
    msgs = [dict(m) for m in example.prompt]
    if system_prompt is not None and not any(m["role"] == "system" for m in msgs):
        msgs.insert(0, {"role": "system", "content": system_prompt})
    return msgs


def _apply(
    tokenizer: PreTrainedTokenizerBase, jinja: str, messages: list[dict[str, str]], add_generation_prompt: bool = False
) -> str:
    return tokenizer.apply_chat_template(
        messages, chat_template=jinja, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _chat_parts(
    tokenizer: PreTrainedTokenizerBase, example: Example, system_prompt: str | None, template: str = "chat"
) -> tuple[str, str, str]:
    """(prefix, rendered answer, suffix) of the rendering of ``example`` under ``template``'s Jinja."""
    jinja = templates.chat_template(tokenizer, template)
    msgs = _messages(example, system_prompt)
    full = _apply(tokenizer, jinja, msgs + [{"role": "assistant", "content": example.response}])
    probe = _apply(tokenizer, jinja, msgs + [{"role": "assistant", "content": _SENTINEL}])
    if probe.count(_SENTINEL) != 1:
        raise TemplateError("chat template does not render the assistant message exactly once")
    prefix, suffix = probe.split(_SENTINEL)
    if not (full.startswith(prefix) and full.endswith(suffix)) or len(full) < len(prefix) + len(suffix):
        raise TemplateError("chat template renders the answer in a way that cannot be located")
    answer = full[len(prefix) : len(full) - len(suffix)]
    return prefix, answer, suffix


def end_of_turn_id(tokenizer: PreTrainedTokenizerBase, suffix_ids: Sequence[int]) -> int | None:
    """The first special token the template writes after the answer, else the tokenizer's EOS."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for tid in suffix_ids:
        if tid in special:
            return tid
    return tokenizer.eos_token_id


def _has_word_prefix(tokenizer: PreTrainedTokenizerBase, first_id: int, answer: str) -> bool:
    piece = tokenizer.convert_ids_to_tokens(first_id)
    return isinstance(piece, str) and piece.startswith("\u2581") and not answer.startswith(" ")


def prompt_text(
    tokenizer: PreTrainedTokenizerBase, example: Example, template: str = "chat", system_prompt: str | None = None
) -> str:
    """The text a model is given to generate the answer (the same prefix ``render`` uses). It holds the BOS text
    when the template starts with one: encode it with ``add_special_tokens=False``."""
    prefix = _chat_parts(tokenizer, Example(example.id, example.prompt, "x"), system_prompt, template)[0]
    return _join_space(tokenizer, prefix, "x")


def _join_space(tokenizer: PreTrainedTokenizerBase, prefix: str, answer: str) -> str:
    """SentencePiece-style tokenizers put the space between prompt and answer on the answer's first token: the
    prefix then ends before that space (in ``render`` and in the generation prompt alike)."""
    answer_ids = _encode(tokenizer, answer)
    if prefix.endswith(" ") and answer_ids and _has_word_prefix(tokenizer, answer_ids[0], answer):
        return prefix[:-1]
    return prefix


def response_header(
    tokenizer: PreTrainedTokenizerBase, template: str = "chat", system_prompt: str | None = None
) -> str:
    """The text the template writes between the instruction and the answer, without the end of the user turn:
    the generation prompt (ChatML: ``<|im_start|>assistant\\n``) when the template has one, else the text after the
    instruction, left-stripped (``alpaca``: ``### Response:\\n``; ``llama2``: ``[/INST] ``; ``none``: empty).
    IFD's Cherry-form direct-answer context (:mod:`cpqs_bench.selectors.ifd`)."""
    jinja = templates.chat_template(tokenizer, template)
    msgs = _messages(Example("header", ({"role": "user", "content": _USER_SENTINEL},), "x"), system_prompt)
    with_gen = _apply(tokenizer, jinja, msgs, add_generation_prompt=True)
    without = _apply(tokenizer, jinja, msgs, add_generation_prompt=False)
    if with_gen.startswith(without) and len(with_gen) > len(without):
        return with_gen[len(without) :]
    if with_gen.count(_USER_SENTINEL) != 1:
        raise TemplateError("chat template does not render the instruction exactly once")
    return with_gen.split(_USER_SENTINEL)[1].lstrip()


def render(
    tokenizer: PreTrainedTokenizerBase,
    example: Example,
    template: str = "chat",
    *,
    system_prompt: str | None = None,
    train_eot: bool = True,
    max_length: int | None = None,
    overflow: Literal["truncate", "drop"] = "truncate",
    min_response_tokens: int = 1,
    stats: LengthStats | None = None,
) -> Rendered | None:
    """Tokenise ``example`` under ``template``; None when the length policy drops it (counted in ``stats``)."""
    prefix, answer, suffix = _chat_parts(tokenizer, example, system_prompt, template)
    suffix_ids = _encode(tokenizer, suffix)
    answer_ids = _encode(tokenizer, answer)
    if prefix.endswith(" ") and answer_ids and _has_word_prefix(tokenizer, answer_ids[0], answer):
        prefix = prefix[:-1]  # SentencePiece-style: the answer's first token already carries the separating space
    prompt_ids = _encode(tokenizer, prefix)
    if not answer_ids:
        if stats is not None:
            stats.dropped_empty += 1
        return None
    eot = end_of_turn_id(tokenizer, suffix_ids) if train_eot else None
    tail = [eot] if eot is not None else []
    truncated = False
    if max_length is not None and len(prompt_ids) + len(answer_ids) + len(tail) > max_length:
        room = max_length - len(prompt_ids)
        if room < min_response_tokens:
            if stats is not None:
                stats.dropped_prompt_too_long += 1
            return None
        if overflow == "drop":
            if stats is not None:
                stats.dropped_too_long += 1
            return None
        answer_ids, tail, truncated = answer_ids[:room], [], True
    ids = tuple(prompt_ids + answer_ids + tail)
    if stats is not None:
        stats.kept += 1
        stats.truncated += int(truncated)
        stats.lengths.append(len(ids))
    return Rendered(ids, len(prompt_ids), len(ids), bool(tail), truncated)


# ------------------------------------------------------------------------------------------ reference renderings
REFERENCE_STYLES = ("chatml", "llama")
LLAMA_REFERENCE_PROMPT = "<s> [INST] {question} [/INST]"  # train_cnn.py / predict.py build_prompts, backbone llama


class QuestionError(ValueError):
    pass


def alpaca_fields(example: Example) -> tuple[str, str]:
    """``(instruction, input)`` of an example, as the reference scripts read them from an Alpaca record:

    * from its metadata when it carries ``instruction`` and ``input`` strings (exact);
    * else its last user turn split at the first blank line: the project's ``alpaca`` schema writes ``instruction``
      alone, or ``instruction + "\\n\\n" + input`` when the input is not blank. Exact unless the instruction itself
      holds a blank line; measured on the data mirror, the split is wrong for 426 of 51,941 ``alpaca_cleaned`` rows
      (0.82 %), 69 of 4,535 ``new_codealpaca`` rows (1.5 %) and 2 of 2,017 ``codealpaca_2k`` rows (and a
      whitespace-only input reads as none). A GSM8K question or a prompt without a blank line is an instruction
      without input."""
    meta = example.metadata or {}
    ins, inp = meta.get("instruction"), meta.get("input")
    if isinstance(ins, str) and isinstance(inp, str):
        return ins, inp
    instruction, _, extra = example.instruction.partition("\n\n")
    return instruction, extra


def reference_question(example: Example, question_format: str = "project") -> str:
    """The question CPQS's reference code feeds: ``project`` = the example's last user turn as read;
    ``reference`` = ``f"{instruction}\\nInput:{input}"`` (``train_cnn.py`` ``build_dataset``, ``predict.py``; the
    ``Input:`` line even for an empty input). An example read with the ``alpaca_reference`` schema already holds
    that text; otherwise the fields come from :func:`alpaca_fields`."""
    if question_format == "project":
        return example.instruction
    if question_format != "reference":
        raise QuestionError(f"question_format must be 'project' or 'reference', got {question_format!r}")
    if isinstance((example.metadata or {}).get("overlap_text"), str):  # read with the alpaca_reference schema
        return example.instruction
    instruction, extra = alpaca_fields(example)
    return f"{instruction}\nInput:{extra}"


def reference_style(template: str) -> str:
    """Which reference rendering a prompt template maps to: ``chat`` (the tokenizer's own chat template, Qwen's
    ChatML in the paper) -> ``chatml``; every other template (a base model: Llama-2-7B in the paper) -> ``llama``."""
    return "chatml" if template == "chat" else "llama"


def render_reference(
    tokenizer: PreTrainedTokenizerBase,
    example: Example,
    style: str,
    *,
    question_format: str = "project",
    system_prompt: str | None = None,
    max_length: int | None = None,
    min_response_tokens: int = 1,
    stats: LengthStats | None = None,
) -> Rendered | None:
    """Tokenise ``example`` as the CPQS reference does for its CNN features (``train_cnn.py`` ``train`` /
    ``predict.py``): the prompt-only text and the full text are tokenised *separately* with the tokenizer's
    default special tokens, and the span is every token of the full text from ``len(prompt ids)`` on.

    * ``chatml``: ``apply_chat_template(messages, add_generation_prompt=True)`` for the user-only dialog and for the
      full dialog (user + assistant, *also* with ``add_generation_prompt=True``). The span is the answer,
      ``<|im_end|>``, and the trailing ``\\n<|im_start|>assistant\\n`` header, which attends to the whole dialog. A
      template that adds a default system message (Qwen's) adds it here too; ``system_prompt`` is inserted as the
      project's rendering does (None in the paper presets).
    * ``llama``: ``"<s> [INST] {q} [/INST]"`` and ``"<s> [INST] {q} [/INST] {a} </s>"`` — the literal ``<s>``
      plus the BOS the tokenizer adds itself (two for Llama-2).

    The question is :func:`reference_question`. Beyond ``max_length`` the tail is cut (the reference never cuts;
    counted as truncated); a prompt that leaves fewer than ``min_response_tokens`` is dropped."""
    if style not in REFERENCE_STYLES:
        raise TemplateError(f"reference style must be one of {REFERENCE_STYLES}, got {style!r}")
    question = reference_question(example, question_format)
    if not example.response.strip():
        if stats is not None:
            stats.dropped_empty += 1
        return None
    if style == "chatml":
        jinja = templates.chat_template(tokenizer, "chat")
        msgs = _messages(example, system_prompt)
        for i in range(len(msgs) - 1, -1, -1):
            if msgs[i]["role"] == "user":
                msgs[i] = {**msgs[i], "content": question}
                break
        user_only = _apply(tokenizer, jinja, msgs, add_generation_prompt=True)
        full = _apply(tokenizer, jinja, msgs + [{"role": "assistant", "content": example.response}], True)
    else:
        user_only = LLAMA_REFERENCE_PROMPT.format(question=question)
        full = f"{user_only} {example.response} </s>"
    return render_whole_text(
        tokenizer, user_only, full, max_length=max_length, min_response_tokens=min_response_tokens, stats=stats
    )


def render_whole_text(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    whole: str,
    *,
    max_length: int | None = None,
    min_response_tokens: int = 1,
    stats: LengthStats | None = None,
) -> Rendered | None:
    """The reference scripts' tokenisation (CPQS ``train_cnn.py``, Cherry / Superfiltering ``data_analysis.py``):
    ``whole`` tokenised as one text with the tokenizer's default special tokens, the span starting at
    ``len(tokenizer(prompt))`` (``prompt`` is a prefix of ``whole``) and running to the end; the tail cut at
    ``max_length`` (``truncation=True, max_length=...`` in the scripts). No end-of-turn token is added."""
    if not whole.startswith(prompt):
        raise TemplateError("the prompt text is not a prefix of the whole text")
    start = len(tokenizer(prompt)["input_ids"])
    ids = list(tokenizer(whole)["input_ids"])
    truncated = False
    if max_length is not None and len(ids) > max_length:
        if max_length - start < min_response_tokens:
            if stats is not None:
                stats.dropped_prompt_too_long += 1
            return None
        ids, truncated = ids[:max_length], True
    if len(ids) - start < min_response_tokens:
        if stats is not None:
            stats.dropped_empty += 1
        return None
    if stats is not None:
        stats.kept += 1
        stats.truncated += int(truncated)
        stats.lengths.append(len(ids))
    return Rendered(tuple(ids), start, len(ids), not truncated, truncated)


# Cherry_LLM cherry_seletion/data_analysis.py PROMPT_DICT (the Stanford Alpaca prompts without the trailing newline)
CHERRY_PROMPT_DICT = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:"
    ),
}
# Superfiltering code_ifd/data_analysis.py PROMPT_DICT_NONE
SUPERFILTERING_PROMPT_DICT = {"prompt_input": "{instruction}\n{input}\n", "prompt_no_input": "{instruction}\n"}
IFD_REFERENCE_PROMPTS = {"cherry": CHERRY_PROMPT_DICT, "superfiltering": SUPERFILTERING_PROMPT_DICT}


def instruction_and_input(example: Example) -> tuple[str, str]:
    """``(instruction, input)`` for the IFD reference prompts (:func:`alpaca_fields`)."""
    return alpaca_fields(example)


def ifd_reference_prompt(example: Example, which: str) -> str:
    """The prompt text ``which`` (``cherry`` / ``superfiltering``) scores the answer after: ``prompt_input`` when
    the row has a non-empty input, else ``prompt_no_input`` (both scripts test ``input == ''``)."""
    if which not in IFD_REFERENCE_PROMPTS:
        raise TemplateError(f"IFD reference prompt must be one of {sorted(IFD_REFERENCE_PROMPTS)}, got {which!r}")
    d = IFD_REFERENCE_PROMPTS[which]
    instruction, extra = instruction_and_input(example)
    if extra != "":
        return d["prompt_input"].format_map({"instruction": instruction, "input": extra})
    return d["prompt_no_input"].format_map({"instruction": instruction})


def render_ifd_reference(
    tokenizer: PreTrainedTokenizerBase,
    example: Example,
    which: str,
    *,
    max_length: int | None = None,
    stats: LengthStats | None = None,
) -> Rendered | None:
    """``prompt + answer`` as Cherry / Superfiltering score it (:func:`ifd_reference_prompt`, tokenised whole:
    :func:`render_whole_text`)."""
    if not example.response.strip():
        if stats is not None:
            stats.dropped_empty += 1
        return None
    prompt = ifd_reference_prompt(example, which)
    return render_whole_text(tokenizer, prompt, prompt + example.response, max_length=max_length, stats=stats)


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id used to right-pad batches: the tokenizer's pad token, else its EOS (masked out either way)."""
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pid is None:
        raise TemplateError("tokenizer has neither a pad nor an eos token to pad batches with")
    return int(pid)


@overload
def right_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, fill: None = None, fill_pad: int = -100
) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def right_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, fill: Sequence[Sequence[int]], fill_pad: int = -100
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


def right_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, fill: Sequence[Sequence[int]] | None = None, fill_pad: int = -100
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` long tensors, right-padded: real tokens keep positions 0..n-1 in every row,
    so causal attention makes padding invisible to them. With ``fill`` (e.g. SFT labels, same lengths) a third
    tensor padded with ``fill_pad`` is returned."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    if fill is None:
        return ids, mask
    extra = torch.full((len(sequences), width), fill_pad, dtype=torch.long)
    for row, seq in enumerate(sequences):
        n = len(seq)
        if len(fill[row]) != n:
            raise ValueError(f"row {row}: {n} input ids but {len(fill[row])} labels")
        extra[row, :n] = torch.tensor(list(fill[row]), dtype=torch.long)
    return ids, mask, extra
