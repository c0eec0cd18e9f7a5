import json

import pytest

from cpqs_bench import cli


@pytest.mark.parametrize("verb", list(cli.VERBS))
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([verb, "--help"])
    assert exc.value.code == 0
    assert cli.VERBS[verb][1].split()[0] in capsys.readouterr().out


def test_unknown_verb_did_you_mean(capsys):
    assert cli.main(["scor"]) == 2
    assert "Did you mean 'score'" in capsys.readouterr().err


def test_config_show_prints_hash(capsys):
    assert cli.main(["config", "show", "smoke", "finetune.lr=0.001"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# config hash: ") and "lr: 0.001" in out


def test_user_errors_are_one_line(capsys):
    assert cli.main(["config", "show", "smoke", "finetune.nope=1"]) == 1
    err = capsys.readouterr().err
    assert "unknown config key 'finetune.nope'" in err and "Traceback" not in err


def test_data_inspect_counts_add_up(tmp_path, capsys):
    f = tmp_path / "pool.jsonl"
    f.write_text("\n".join([json.dumps({"instruction": "a", "output": "b"}), "{bad", json.dumps({"instruction": "c"})]))
    assert cli.main(["data", "inspect", str(f), "--tokenizer", "none"]) == 0
    out = capsys.readouterr().out
    assert "read 3 = kept 1 + rejected 2" in out
    assert "pool.jsonl:2" in out and "malformed_json" in out and "missing_field" in out
