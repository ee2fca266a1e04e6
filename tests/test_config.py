"""Bad configuration is refused with one clear line per problem."""
import os
import subprocess
import sys

import pytest

from board.configfile import ConfigError, load_config, load_profile
from firmware.core import config as schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_are_valid_and_complete():
    config, errors = schema.validate({})
    assert errors == []
    assert config["terminal"]["id"] == "HP000001"
    assert config["ui"]["language"] == "en"


@pytest.mark.parametrize("section,key,value,words", [
    ("terminal", "id", "ABC", "must be exactly 8 letters or digits"),
    ("terminal", "merchant_id", "12345678901234X!", "must be exactly 15 letters or digits"),
    ("money", "currency", "XYZ", "ISO 4217"),
    ("ui", "language", "fr", "must be one of: en, zh"),
    ("ui", "idle_logout_s", 5, "from 30 to 86400"),
    ("ui", "idle_logout_s", True, "whole number"),
    ("host", "address", "localhost", "host:port"),
    ("host", "tls", "yes", "true or false"),
])
def test_each_bad_value_names_key_value_and_what_is_allowed(section, key, value, words):
    config, errors = schema.validate({section: {key: value}})
    assert len(errors) == 1
    line = errors[0]
    assert line.startswith("%s.%s = " % (section, key))
    assert repr(value).strip("'") in line or str(value).lower() in line
    assert words in line
    assert config[section][key] == schema.SCHEMA[section][key][0]


def test_unknown_keys_and_sections_are_refused_not_ignored():
    _, errors = schema.validate({"ui": {"langauge": "zh"}, "hots": {}})
    assert any("ui.langauge: unknown key" in e for e in errors)
    assert any("[hots]: unknown section" in e for e in errors)


def test_every_problem_gets_its_own_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[terminal]\nid = "X"\n[ui]\nlanguage = "fr"\nidle_logout_s = 1\n')
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert len(err.value.problems) == 3
    assert all(str(path) in line for line in err.value.problems)


def test_toml_syntax_error_and_missing_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[terminal\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert "not valid TOML" in err.value.problems[0]
    with pytest.raises(ConfigError) as err:
        load_config(str(tmp_path / "none.toml"))
    assert "no such file" in err.value.problems[0]


def test_cli_check_config_and_run_refuse_a_bad_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[money]\ncurrency = "usd"\n[terminal]\nid = "1"\n')
    out = subprocess.run([sys.executable, "-m", "tools", "check-config", str(path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert len(out.stdout.strip().splitlines()) == 2
    run = subprocess.run([sys.executable, "-m", "tools", "run", "--board", "sim",
                          "--config", str(path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2
    assert "money.currency = \"usd\"" in run.stderr
    assert "refusing to start" in run.stderr


def test_example_and_sim_configs_are_valid():
    for name in ("handpos.example.toml", "sim.toml"):
        load_config(os.path.join(ROOT, "config", name))


def test_board_profiles_load_and_unknown_board_is_named():
    for name in ("sim", "pizero2w"):
        profile = load_profile(name)
        assert profile["display"]["width"] == 128
        assert "ENTER" in profile["keypad"]["keymap"].values()
    with pytest.raises(ConfigError) as err:
        load_profile("nosuchboard")
    assert "known: pizero2w, sim" in err.value.problems[0]
