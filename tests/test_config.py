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
    for name in ("sim", "pizero2w", "pi4", "pi5"):
        profile = load_profile(name)
        assert profile["display"]["width"] == 128
        assert "ENTER" in profile["keypad"]["keymap"].values()
    with pytest.raises(ConfigError) as err:
        load_profile("nosuchboard")
    assert "known: pi4, pi5, pizero2w, sim" in err.value.problems[0]


def test_lab_settings_are_refused_outside_the_lab(tmp_path):
    """Plain TCP, the published test keys and the host simulator's CA each need
    [lab] enabled = true: check-config names each, and a lab file passes."""
    from tools.host.hostsim import HostSim
    ca = HostSim(str(tmp_path / "host")).ca_file        # the generated test CA
    field = tmp_path / "field.toml"
    field.write_text('[host]\naddress = "10.0.0.5:8583"\ntls = false\n'
                     '[security]\ntest_keys = true\n')
    out = subprocess.run([sys.executable, "-m", "tools", "check-config", str(field)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "host.tls = false: plain TCP is for the lab only" in lines[0]
    assert "security.test_keys = true: the published test keys are for the lab only" in lines[1]
    pinned = tmp_path / "pinned.toml"
    pinned.write_text('[host]\naddress = "10.0.0.5:8583"\nca_file = "%s"\n' % ca)
    with pytest.raises(ConfigError) as err:
        load_config(str(pinned))
    assert "host simulator's test CA, for the lab only" in err.value.problems[0]
    lab = tmp_path / "lab.toml"
    lab.write_text(field.read_text() + '[lab]\nenabled = true\n')
    assert load_config(str(lab))["lab"]["enabled"] is True
    lab.write_text(pinned.read_text() + '[lab]\nenabled = true\n')
    load_config(str(lab))


def test_a_config_that_skipped_the_check_does_not_build(tmp_path):
    """A dict built by hand with test keys and no lab is refused by the composition
    root too: the test key never loads on a field terminal."""
    from board.compose import build
    config = schema.defaults()
    config["security"]["test_keys"] = True
    config["storage"]["data_dir"] = str(tmp_path)
    with pytest.raises(ConfigError) as err:
        build(load_profile("sim"), config)
    assert "security.test_keys" in err.value.problems[0]


@pytest.mark.parametrize("section,key,value,words", [
    ("limits", "per_payment", -1, "from 0 to 99999999999"),
    ("limits", "daily_count", 1.5, "whole number"),
    ("limits", "cashier_refund_daily_total", "100", "whole number"),
    ("anomaly", "same_card_count", 100, "from 0 to 99"),
    ("anomaly", "same_card_min", 0, "from 1 to 1440"),
    ("anomaly", "backs_action", "block", "must be one of: supervisor, decline"),
    ("anomaly", "refund_new_card", "yes", "true or false"),
])
def test_limits_and_anomaly_bad_values(section, key, value, words):
    """Issue 15: [limits] and [anomaly] refuse what they cannot hold, one line each."""
    test_each_bad_value_names_key_value_and_what_is_allowed(section, key, value, words)


def test_limits_and_anomaly_defaults_and_what_cannot_work_together():
    config, errors = schema.validate({})
    assert errors == []
    assert all(v == 0 for v in config["limits"].values())        # no limit: as before
    an = config["anomaly"]
    assert an["same_card_count"] == 3 and an["same_card_min"] == 10
    assert all(an[k] == "supervisor" for k in an if k.endswith("_action"))
    _, errors = schema.validate({"limits": {"per_payment": 50000, "daily_total": 40000,
                                            "cashier_refund_per_payment": 900,
                                            "cashier_refund_daily_total": 800},
                                 "anomaly": {"high_amount_sales": 5, "high_amount_min_sales": 6}})
    assert errors == [
        "limits.per_payment = 50000: more than limits.daily_total (40000); lower it, or "
        "raise the day's",
        "limits.cashier_refund_per_payment = 900: more than limits.cashier_refund_daily_total "
        "(800); lower it, or raise the day's",
        "anomaly.high_amount_min_sales = 6: more than anomaly.high_amount_sales (5), the "
        "sales the median is taken of"]
    _, errors = schema.validate({"limits": {"per_payment": 50000}})     # the day's: none
    assert errors == []
