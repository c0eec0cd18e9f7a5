"""One prompt format, carried by the tokenizer: named plain templates as equivalent Jinja chat templates.

The fine-tuning template *is* the evaluation template. ``prompt.template`` names the format:

* ``chat``   — the tokenizer's own chat template (an error if it has none);
* ``alpaca`` — the Stanford Alpaca prompt (``### Instruction:`` … ``### Response:\\n``);
* ``none``   — the instruction and a newline (Superfiltering's proxy prompt);
* ``llama2`` — ``[INST] <<SYS>>…<</SYS>> {user} [/INST] {answer}</s>`` (the space before the answer belongs to
  the answer turn, as in Meta's template), the Llama-2 chat format (``<s>`` first
  by the BOS rule below);
* any Jinja chat template, given inline (a string containing ``{{`` or ``{%``) or as a path to a ``.jinja`` /
  ``.j2`` file.

For every one of them :func:`chat_template` returns a Jinja chat template, and :func:`apply` sets it on a tokenizer,
so that ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)`` — what lm-eval's HF backend calls
for a chat task, what ``save_pretrained`` writes next to every adapter — renders exactly the token ids
:func:`cpqs_bench.prompts.render` uses as the prompt prefix of the same example (``prompts.render`` renders through the
same Jinja, so the equality holds by construction and is pinned by ``tests/test_templates.py``).

**BOS.** A plain template starts with the tokenizer's BOS exactly when the tokenizer adds one by default
(``tokenizer("x")`` starts with it: Llama yes; GPT-2, ChatML/Qwen/SmolLM2 no). The Jinja writes ``{{ bos_token }}``
in that case, so the BOS is part of the template text — as in the Llama-2/3, Mistral and Gemma chat templates — and
the text must be encoded with ``add_special_tokens=False`` (what ``apply_chat_template`` does, and what lm-eval does
when the rendered string starts with the BOS text). ``llama2`` follows the same rule (a Llama tokenizer adds ``<s>``
by default, so Meta's ``<s>[INST]`` results; a tokenizer without a default BOS gets none rather than an unrelated
start token).
A ``chat`` or Jinja template carries whatever BOS it writes itself. So lm-eval must **not** add one:
:func:`lm_eval_model_args` says so (``add_bos_token=False`` for chat-templated evaluation).

**System prompt.** ``prompt.system_prompt`` is inserted as a system message when the example has none
(:func:`cpqs_bench.prompts.render`); lm-eval does the same with ``system_instruction`` — :func:`lm_eval_settings`
returns it. ``alpaca`` and ``none`` ignore system messages (the Alpaca prompt has no place for one); ``llama2`` puts
the first system message in ``<<SYS>>``.

**Multi-turn prompts** under a plain template: the user turns are joined with a blank line, earlier assistant turns
are dropped (a plain template has no place for them); the chat templates render every turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from cpqs_bench.config import PromptConfig

PLAIN_TEMPLATES = ("alpaca", "none", "llama2")
NAMED_TEMPLATES = ("chat",) + PLAIN_TEMPLATES

ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


class TemplateError(ValueError):
    pass


# The prompt part of every plain template: the user turns (of the messages *before* a final assistant message),
# joined with a blank line; the final assistant message (if any) is the answer, followed by the EOS token.
_USERS = (
    "{%- set ns = namespace(users=[], system=none) -%}"
    "{%- if messages and messages[-1]['role'] == 'assistant' -%}{%- set turns = messages[:-1] -%}"
    "{%- else -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for m in turns -%}"
    "{%- if m['role'] == 'user' -%}{%- set ns.users = ns.users + [m['content']] -%}"
    "{%- elif m['role'] == 'system' and ns.system is none -%}{%- set ns.system = m['content'] -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- set user = ns.users | join('\\n\\n') -%}"
)
_ANSWER = (
    "{%- if messages and messages[-1]['role'] == 'assistant' -%}"
    "{{- messages[-1]['content'] + eos_token -}}{%- endif -%}"
)


def _jinja_literal(text: str) -> str:
    return "{{- " + repr(text) + " -}}"


def plain_jinja(name: str, with_bos: bool) -> str:
    """The Jinja chat template of the plain template ``name``; ``with_bos`` writes ``{{ bos_token }}`` first."""
    bos = "{{- bos_token -}}" if with_bos else ""
    if name == "alpaca":
        head, tail = ALPACA_PROMPT.split("{instruction}")
        body = _jinja_literal(head) + "{{- user -}}" + _jinja_literal(tail)
    elif name == "none":
        body = "{{- user -}}" + _jinja_literal("\n")
    elif name == "llama2":
        # as Meta's template: the prompt ends "[/INST]" and the answer turn is " " + answer + "</s>", so the
        # generation prompt has no dangling space (SentencePiece puts it on the answer's first token)
        body = (
            "{{- '[INST] ' -}}{%- if ns.system -%}{{- '<<SYS>>\\n' + ns.system + '\\n<</SYS>>\\n\\n' -}}{%- endif -%}"
            "{{- user | trim -}}{{- ' [/INST]' -}}"
        )
        return (
            _USERS
            + bos
            + body
            + (
                "{%- if messages and messages[-1]['role'] == 'assistant' -%}"
                "{{- ' ' + messages[-1]['content'] + eos_token -}}{%- endif -%}"
            )
        )
    else:
        raise TemplateError(f"unknown plain template {name!r}; known: {', '.join(PLAIN_TEMPLATES)}")
    return _USERS + bos + body + _ANSWER


def default_bos_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """The special tokens the tokenizer puts *before* the text by default (``tokenizer(text)`` vs
    ``add_special_tokens=False``): ``(bos_id,)`` for Llama tokenizers, ``()`` for GPT-2, Qwen, SmolLM2."""
    probe = "a b"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe)["input_ids"])
    for k in range(len(full) - len(plain) + 1):
        if full[k : k + len(plain)] == plain:
            return tuple(full[:k])
    raise TemplateError("cannot tell which special tokens the tokenizer adds by default")


def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether ``tokenizer(text)`` starts with the tokenizer's BOS token by default."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos is not None and default_bos_ids(tokenizer) == (bos,)


def is_jinja(template: str) -> bool:
    return "{{" in template or "{%" in template


def _read_jinja_file(template: str) -> str | None:
    if not template.endswith((".jinja", ".j2")):
        return None
    path = Path(template).expanduser()
    if not path.is_file():
        raise TemplateError(f"prompt.template: Jinja file {template!r} not found")
    text = path.read_text(encoding="utf-8")
    if not is_jinja(text):
        raise TemplateError(f"prompt.template: {template!r} contains no Jinja ({{{{ or {{%)")
    return text


def chat_template(tokenizer: PreTrainedTokenizerBase, template: str) -> str:
    """The Jinja chat template that renders ``template`` on ``tokenizer`` (see the module docstring)."""
    if template == "chat":
        own = getattr(tokenizer, "chat_template", None)
        if not own:
            raise TemplateError(
                "template 'chat' needs a tokenizer with a chat template; use 'alpaca', 'none' or "
                "'llama2', or give a Jinja chat template (string or .jinja file)"
            )
        if isinstance(own, dict):  # several named templates: the default one, as apply_chat_template picks it
            if "default" not in own:
                raise TemplateError(f"the tokenizer has named chat templates {sorted(own)} but no 'default'")
            own = own["default"]
        return own
    if template in PLAIN_TEMPLATES:
        return plain_jinja(template, with_bos=adds_bos(tokenizer))
    from_file = _read_jinja_file(template)
    if from_file is not None:
        return from_file
    if is_jinja(template):
        return template
    raise TemplateError(
        f"unknown template {template!r}; known: {', '.join(NAMED_TEMPLATES)}, a Jinja chat template "
        "string, or a path to a .jinja/.j2 file"
    )


def apply(tokenizer: PreTrainedTokenizerBase, prompt_cfg: PromptConfig) -> PreTrainedTokenizerBase:
    """Set the chat template of ``prompt_cfg.template`` on ``tokenizer`` (in place) and return it.

    ``chat`` keeps the tokenizer's own template (an error if it has none). After this,
    ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)`` renders ``prompts.render``'s prefix ids,
    and ``tokenizer.save_pretrained(dir)`` writes the template with the tokenizer (next to an adapter).
    """
    tokenizer.chat_template = chat_template(tokenizer, prompt_cfg.template)
    return tokenizer


@dataclass(frozen=True)
class EvalPrompt:
    """What lm-eval needs, besides the tokenizer :func:`apply` prepared, to render the training format."""

    chat_template: str
    system_instruction: str | None  # lm-eval's ``system_instruction`` (= ``prompt.system_prompt``)
    add_bos_token: bool  # HFLM's ``add_bos_token``: False — the template text carries the BOS


def lm_eval_settings(tokenizer: PreTrainedTokenizerBase, prompt_cfg: PromptConfig) -> EvalPrompt:
    return EvalPrompt(chat_template(tokenizer, prompt_cfg.template), prompt_cfg.system_prompt, add_bos_token=False)


def lm_eval_model_args(chat: bool) -> dict[str, Any]:
    """Extra HFLM arguments. With ``apply_chat_template`` the rendered text already holds the BOS (if any), so
    lm-eval must add no special tokens (``add_bos_token=False``; lm-eval 0.4.x otherwise adds the tokenizer's
    default ones unless the text starts with the BOS string). Completion tasks keep the tokenizer's default."""
    return {"add_bos_token": False} if chat else {}
