"""Tiny random-weight models and in-process tokenizers for tests: no files, no network, built in milliseconds.

Three tokenizer families, as the prompt-span tests require:
* ``chatml`` — byte-level BPE with ``<|im_start|>``/``<|im_end|>`` and a ChatML chat template (SmolLM2-like);
* ``llama2`` — Metaspace ("▁") BPE with ``<s>``/``</s>`` and a Llama-2 ``[INST]`` chat template;
* ``gpt2``   — byte-level BPE with ``<|endoftext|>`` and no chat template.
Models: a 2-layer Llama (``chatml``/``llama2``) or GPT-2 (``gpt2``) with hidden size 32, seeded.
"""

from __future__ import annotations

import functools
import string
from typing import Any

FAMILIES = ("chatml", "llama2", "gpt2")

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Write a poem about the sea and the sky.",
    "def add(a, b):\n    return a + b\n",
    "Natalia sold clips to 48 of her friends in April, and then she sold half.",
    "Answer: 72 clips. #### 72",
    "Explain why the sky is blue in simple words.",
    "Hello, world! How are you today?",
    "Photosynthesis converts light energy into chemical energy.",
    "for i in range(10):\n    print(i * i)",
    "Give three tips for staying healthy: eat well, sleep, exercise.",
    "Café naïve résumé — 日本語 テキスト 🙂",
]

CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)


@functools.lru_cache(maxsize=None)
def _tokenizer_json(family: str) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if family in ("chatml", "gpt2"):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] if family == "chatml" else ["<|endoftext|>"]
        trainer = trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        trainer = trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<unk>", "<s>", "</s>"],
            show_progress=False,
            initial_alphabet=sorted(set("".join(_CORPUS)) | set(string.printable)),
        )
    tok.train_from_iterator(_CORPUS * 3, trainer=trainer)
    return tok.to_str()


def tokenizer(family: str = "chatml") -> Any:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; known: {FAMILIES}")
    backend = Tokenizer.from_str(_tokenizer_json(family))
    if family == "chatml":
        tok = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="<|im_start|>",
            eos_token="<|im_end|>",
            pad_token="<|im_end|>",
            unk_token="<|endoftext|>",
        )
        tok.chat_template = CHATML_TEMPLATE
    elif family == "llama2":
        tok = PreTrainedTokenizerFast(
            tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
        )
        tok.chat_template = LLAMA2_TEMPLATE
    else:
        tok = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="<|endoftext|>",
            eos_token="<|endoftext|>",
            unk_token="<|endoftext|>",
            pad_token="<|endoftext|>",
        )
    return tok


def model(family: str = "chatml", seed: int = 0, hidden_size: int = 32, num_layers: int = 2) -> Any:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tok = tokenizer(family)
    torch.manual_seed(seed)
    if family == "gpt2":
        cfg = GPT2Config(
            vocab_size=len(tok),
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=2,
            n_positions=512,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        m = GPT2LMHeadModel(cfg)
    else:
        cfg = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=num_layers,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            tie_word_embeddings=False,
        )
        m = LlamaForCausalLM(cfg)
    m.eval()
    return m, tok
