import dataclasses

import pytest

from cpqs_bench.config import CONFIG_DIR, Config, ConfigError, config_hash, load_config, replace, to_dict


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_preset_loads(preset):
    cfg = load_config(preset)
    assert isinstance(cfg, Config)
    assert cfg.experiment.name == preset


def test_paper_presets_carry_paper_hyperparameters():
    from cpqs_bench.data.mirror import lookup

    for name in ("paper_general", "paper_gsm8k", "paper_code", "paper_reasoning"):
        cfg = load_config(name)
        ft = cfg.finetune
        assert (ft.lora_r, ft.lora_alpha, ft.epochs, ft.lr, ft.batch_size) == (16, 8, 3, 5e-5, 16)
        assert ft.max_length >= 2048
        assert cfg.selectors.cpqs.lr == 1e-4 and cfg.selectors.cpqs.grad_accum == 16
        # pools and pairs are named datasets: a real Hub source online, the mirror offline
        assert lookup(cfg.data.pool).hub.startswith("hf:")
        assert lookup(cfg.selectors.cpqs.pairs).hub.startswith("hf:")


def test_overrides_are_typed_and_hash_changes():
    base = load_config("smoke")
    cfg = load_config("smoke", ["finetune.lr=1e-4", "experiment.seeds=[3, 4]", "data.pool_limit=null"])
    assert cfg.finetune.lr == 1e-4 and isinstance(cfg.finetune.lr, float)
    assert cfg.experiment.seeds == (3, 4)
    assert cfg.data.pool_limit is None
    assert config_hash(cfg) != config_hash(base)


def test_hash_is_stable_and_order_independent():
    a = load_config("smoke")
    b = load_config("smoke")
    assert config_hash(a) == config_hash(b)
    # same values spelled through an override give the same hash
    c = load_config("smoke", [f"finetune.lr={a.finetune.lr}"])
    assert config_hash(c) == config_hash(a)
    assert replace(a, **{"finetune.lr": a.finetune.lr}) == a


def test_unknown_key_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown config key 'finetune.lrr'. Did you mean 'finetune.lr'"):
        load_config("smoke", ["finetune.lrr=1"])
    with pytest.raises(ConfigError, match="Did you mean 'selectors'"):
        load_config(None, ["selector.budget=3"])


def test_wrong_types_rejected():
    with pytest.raises(ConfigError, match="finetune.lr: expected a number"):
        load_config("smoke", ["finetune.lr=fast"])
    with pytest.raises(ConfigError, match="finetune.lora_r: expected an integer"):
        load_config("smoke", ["finetune.lora_r=1.5"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config("smoke", ["prompt.overflow=chop"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config("smoke", ["finetune.lr"])


def test_unknown_preset_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'smoke'"):
        load_config("smok")
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetune: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("finetune:\n  lora_alpah: 16\n")
    with pytest.raises(
        ConfigError, match=r"typo.yaml: unknown config key 'finetune.lora_alpah'. Did you mean 'finetune.lora_alpha'"
    ):
        load_config(typo)


def test_config_is_frozen():
    cfg = load_config("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.finetune.lr = 1.0  # type: ignore[misc]
    assert to_dict(cfg)["finetune"]["lr"] == cfg.finetune.lr
