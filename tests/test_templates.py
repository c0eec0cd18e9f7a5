"""One template, carried by the tokenizer: lm-eval's chat path renders exactly prompts.render's prefix ids.

A GSM8K item of ``cpqs_gsm8k_chat`` goes through lm-eval's own request building (``build_all_requests`` with
``HFLM.apply_chat_template`` and the system instruction) and through ``HFLM.tok_batch_encode`` / ``tok_encode`` as a
``generate_until`` request is encoded; the ids must equal ``prompts.render``'s prompt ids of the same item, for the
base tokenizer (``templates.apply``) and for an arm's tokenizer (saved next to the adapter and loaded back).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cpqs_bench import prompts, templates, tiny
from cpqs_bench.config import PromptConfig
from cpqs_bench.data.example import Example

TASKS = Path(__file__).resolve().parent.parent / "cpqs_bench" / "tasks"


def llama_with_bos():
    """The tiny Llama-2 tokenizer made to add ``<s>`` by default, as the real Llama tokenizers do."""
    from tokenizers.processors import TemplateProcessing

    tok = tiny.tokenizer("llama2")
    bos = tok.bos_token_id
    tok._tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    assert tok("x")["input_ids"][0] == bos
    return tok


def _tiny_llama_model(tok):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def gsm8k_task(mirror):
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS), include_defaults=False)
    return manager.load_task_or_group(["cpqs_gsm8k_chat"])["cpqs_gsm8k_chat"]


def _lm_eval_context_ids(task, lm, system_prompt):
    """One cpqs_gsm8k_chat request built and encoded as lm-eval does for generate_until."""
    task.build_all_requests(
        limit=1,
        rank=0,
        world_size=1,
        apply_chat_template=True,
        system_instruction=system_prompt,
        chat_template=lm.apply_chat_template,
        tokenizer_name=getattr(lm, "tokenizer_name", ""),
    )
    inst = task.instances[0]
    context = inst.args[0]
    batch_ids, _ = lm.tok_batch_encode([context])
    return task.doc_to_text(inst.doc), context, batch_ids[0].tolist(), lm.tok_encode(context)


TEMPLATES = [
    ("chatml", tiny.CHATML_TEMPLATE),
    ("llama2", "llama2"),
    ("llama2_chat", "chat"),
    ("alpaca", "alpaca"),
    ("none", "none"),
]


@pytest.mark.parametrize("system_prompt", [None, "You are a careful math tutor."])
@pytest.mark.parametrize("label,template", TEMPLATES)
def test_lm_eval_chat_path_equals_render_prefix_on_llama(gsm8k_task, tmp_path, label, template, system_prompt):
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    cfg = PromptConfig(template=template, system_prompt=system_prompt)
    base_tok = templates.apply(llama_with_bos(), cfg)
    model = _tiny_llama_model(base_tok)
    arm_dir = tmp_path / "adapter"
    base_tok.save_pretrained(arm_dir)  # what fine-tuning saves next to every adapter
    arm_tok = AutoTokenizer.from_pretrained(arm_dir)
    assert arm_tok.chat_template == base_tok.chat_template
    for who, tok in (("base", base_tok), ("arm", arm_tok)):
        settings = templates.lm_eval_settings(tok, cfg)
        lm = HFLM(
            pretrained=model, tokenizer=tok, batch_size=1, device="cpu", **templates.lm_eval_model_args(chat=True)
        )
        question, context, batch_ids, single_ids = _lm_eval_context_ids(gsm8k_task, lm, settings.system_instruction)
        ex = Example("gsm8k-0", ({"role": "user", "content": question},), "x")
        r = prompts.render(tok, ex, template, system_prompt=system_prompt)
        hf_ids = tok.apply_chat_template(
            prompts._messages(ex, system_prompt), add_generation_prompt=True, tokenize=True, return_dict=False
        )
        assert list(r.prompt_ids) == batch_ids == single_ids, (who, context)
        assert list(hf_ids) == list(r.prompt_ids), who
        if template in ("alpaca", "none", "llama2"):  # the tokenizer adds <s> by default: so does the template
            assert r.prompt_ids[0] == tok.bos_token_id and r.prompt_ids[1] != tok.bos_token_id
        if template == "alpaca":
            assert context.endswith("### Response:\n") and "Problem:" in context


@pytest.mark.parametrize("template", ["chat", "alpaca"])
def test_lm_eval_chat_path_equals_render_prefix_on_the_embedded_model(gsm8k_task, embedded_tokenizer, template):
    import copy

    from lm_eval.models.huggingface import HFLM

    tok = templates.apply(copy.deepcopy(embedded_tokenizer), PromptConfig(template=template))
    model, _ = tiny.model("chatml")  # the ids are what is compared; any model with a large enough vocab is fine
    model.resize_token_embeddings(len(tok))
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=1, device="cpu", **templates.lm_eval_model_args(True))
    question, _, batch_ids, single_ids = _lm_eval_context_ids(gsm8k_task, lm, None)
    r = prompts.render(tok, Example("g", ({"role": "user", "content": question},), "x"), template)
    assert list(r.prompt_ids) == batch_ids == single_ids


def test_plain_jinja_text_is_the_named_format():
    ex = Example("x", ({"role": "system", "content": "Be terse."}, {"role": "user", "content": "Add 2 and 2."}), "4")
    gpt2 = tiny.tokenizer("gpt2")
    assert prompts.prompt_text(gpt2, ex, "alpaca") == prompts.ALPACA_PROMPT.format(instruction="Add 2 and 2.")
    assert prompts.prompt_text(gpt2, ex, "none") == "Add 2 and 2.\n"
    assert prompts.prompt_text(gpt2, ex, "llama2") == "[INST] <<SYS>>\nBe terse.\n<</SYS>>\n\nAdd 2 and 2. [/INST] "
    llama = llama_with_bos()
    assert prompts.prompt_text(llama, ex, "alpaca").startswith("<s>Below is an instruction")
    assert prompts.prompt_text(llama, ex, "llama2").startswith("<s>[INST] <<SYS>>")
    # a multi-turn prompt under a plain template: user turns joined, earlier assistant turns dropped
    multi = Example(
        "m",
        (
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Add 2 and 2."},
        ),
        "4",
    )
    assert prompts.prompt_text(gpt2, multi, "none") == "Hi\n\nAdd 2 and 2.\n"


def test_jinja_string_and_file_templates(tmp_path):
    tok = tiny.tokenizer("gpt2")
    jinja = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    path = tmp_path / "mine.jinja"
    path.write_text(jinja)
    ex = Example("x", ({"role": "user", "content": "Hi"},), "Hello.")
    for template in (jinja, str(path)):
        r = prompts.render(tok, ex, template)
        assert tok.decode(r.prompt_ids) == "user: Hi\nassistant: "
        assert tok.decode(r.response_ids) == "Hello.<|endoftext|>"  # EOS: the first special token after the answer
        assert templates.apply(tiny.tokenizer("gpt2"), PromptConfig(template=template)).chat_template == jinja
    with pytest.raises(templates.TemplateError, match="not found"):
        templates.chat_template(tok, str(tmp_path / "missing.jinja"))


def test_apply_chat_keeps_the_tokenizers_own_and_refuses_none():
    tok = tiny.tokenizer("chatml")
    assert templates.apply(tok, PromptConfig(template="chat")).chat_template == tiny.CHATML_TEMPLATE
    with pytest.raises(templates.TemplateError, match="needs a tokenizer with a chat template"):
        templates.apply(tiny.tokenizer("gpt2"), PromptConfig(template="chat"))
    with pytest.raises(templates.TemplateError, match="unknown template"):
        templates.apply(tiny.tokenizer("gpt2"), PromptConfig(template="vicuna"))


def test_lm_eval_settings_carry_the_system_prompt_and_no_extra_bos():
    cfg = PromptConfig(template="alpaca", system_prompt="Be brief.")
    s = templates.lm_eval_settings(llama_with_bos(), cfg)
    assert s.system_instruction == "Be brief." and s.add_bos_token is False
    assert s.chat_template.startswith(templates._USERS + "{{- bos_token -}}")
    assert templates.lm_eval_model_args(chat=True) == {"add_bos_token": False}
    assert templates.lm_eval_model_args(chat=False) == {}
