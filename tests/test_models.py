import time

import pytest
import torch

from cpqs_bench import models, tiny


def test_embedded_fetch_is_cached_and_generates():
    path = models.fetch_embedded()
    t0 = time.perf_counter()
    again = models.fetch_embedded()
    assert again == path and time.perf_counter() - t0 < 5  # second call reuses the safetensors copy
    assert (path / "model.safetensors").exists() and (path / "DONE").exists()
    model, tok, info = models.load("embedded", dtype="float32")
    assert info.revision.startswith("gguf-sha256:") and not hasattr(model.config, "quantization_config")
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in text


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_tiny_models_are_seeded_and_run(family):
    m1, tok = tiny.model(family, seed=3)
    m2, _ = tiny.model(family, seed=3)
    m3, _ = tiny.model(family, seed=4)
    ids = torch.tensor([tok("hello world", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        a, b, c = (m(ids).logits for m in (m1, m2, m3))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape[-1] == len(tok)


def test_local_dir_and_unknown_model(tmp_path):
    m, tok = tiny.model("chatml")
    m.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    model, tok2, info = models.load(str(tmp_path / "m"), dtype="float32")
    assert info.revision.startswith("config-sha256:") and tok2.chat_template
    with pytest.raises(models.ModelError, match="cannot load model"):
        models.load(str(tmp_path / "missing-model"))
