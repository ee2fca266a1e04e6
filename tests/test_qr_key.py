"""The QR acquirer's merchant key at rest (issue 13): a technician loads it with
`handpos qr-key load` (never on the command line, the terminal stopped) into the key
store, sealed under the hierarchy's "qr" key in DATA/keys/qr.merchant; the terminal
composed from that data folder signs its QR requests with it. A sealed file that does
not open turns QR payments off, never the terminal. The configuration's [qr] key stays
the lab's.

The simulator board's key root is a file beside the data folder (board/profiles/
sim.toml), so the command runs with --board sim on the harness's folder.
"""
import fcntl
import hashlib
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from drivers import keystore
from firmware.core import config as schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MCH_ID = "100000000002"
KEY = "Kq7wN2sVx9LmT4rB8yHc3JdF6gZp1AeU"           # 32 characters, as acquirers issue them
FINGERPRINT = hashlib.sha256(KEY.encode()).hexdigest()[:8]
WECHAT = "134567890123456789"


def _cli(data, *args, key=None, key_file=None, extra_env=None):
    """`handpos qr-key ...` on the data folder data (the simulator's board); key goes in
    on standard input."""
    argv = [sys.executable, "-m", "tools", "qr-key"] + list(args) + ["--data", str(data)]
    if args[0] == "load":
        # the simulator's configuration as --data alone takes it, without [mfa] "key_load"
        # (the product's asks a code: tests/test_cli_mfa.py)
        argv += ["--config", _no_mfa_config(data)]
        if "--board" not in args:
            argv += ["--board", "sim"]
    if key_file is not None:
        argv += ["--key-file", str(key_file)]
    env = dict(os.environ)
    env.pop("HANDPOS_CONFIG", None)
    env.update(extra_env or {})
    return subprocess.run(argv, cwd=ROOT, input=key if key is not None else "",
                          capture_output=True, text=True, timeout=60, env=env)


def _no_mfa_config(data):
    path = os.path.join(os.path.dirname(os.path.abspath(str(data))), "no-mfa.toml")
    with open(os.path.join(ROOT, "config", "sim.toml")) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text + "\n[mfa]\nactions = []\n")
    return path


def _one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _device_keys(data, create=False):
    """The terminal's key hierarchy under the simulator board's file root."""
    from drivers.keyroot import open_root
    root = open_root({"kind": "file", "path": ".sim-root/root.key"}, str(data), create=create)
    return keystore.KeyStore(str(data / "keys"), root).open(create=create)


@pytest.fixture
def data(tmp_path):
    """A terminal's data folder with its keys, as its first start leaves it (no store)."""
    folder = tmp_path / "terminal"
    folder.mkdir(mode=0o700)
    _device_keys(folder, create=True)
    return folder


def _key_file(tmp_path, text, name="merchant.key"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    os.chmod(path, 0o600)
    return path


def _every_file(folder):
    for base, dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                yield path, f.read()


def _acquirer(tmp_path, key=KEY):
    """A QR acquirer simulator that knows this merchant's key (and no other)."""
    from tests.conftest import TestClock
    from tools.host.qrsim import QrSim
    sim = QrSim(str(tmp_path / "qrsim-merchant"), key=key, clock=TestClock(), wait_ms=10000)
    sim.start()
    return sim


def _qr_section(acquirer, **extra):
    """[qr] of a terminal without a key in its configuration (as in the field)."""
    cfg = {"enabled": True, "address": "%s:%d" % tuple(acquirer.address[:2]),
           "ca_file": acquirer.ca_file}
    cfg.update(extra)
    return cfg


def _audit(folder):
    db = sqlite3.connect(str(folder / "handpos.db"))
    try:
        return db.execute("SELECT event, detail FROM audit ORDER BY seq").fetchall()
    finally:
        db.close()


# -- loading, and the terminal signing with it ------------------------------------------
def test_a_loaded_key_signs_the_terminals_qr_payments(harness, tmp_path):
    h = harness()                               # the terminal's first start: its keys
    h.first_supervisor()
    h.close()
    folder = tmp_path / "terminal"
    out = _cli(folder, "load", "--mch-id", MCH_ID, key=KEY + "\n")
    assert out.returncode == 0, out.stderr
    line = _one_line(out.stdout)
    assert "mch_id %s" % MCH_ID in line and FINGERPRINT in line, line
    assert KEY not in out.stdout + out.stderr
    sealed = folder / "keys" / keystore.QR_FILE
    assert os.stat(sealed).st_mode & 0o777 == 0o600
    # in the audit trail, by fingerprint
    assert [d for e, d in _audit(folder) if e == "qr_key_loaded"] == [
        "mch_id %s key %s" % (MCH_ID, FINGERPRINT)]
    acquirer = _acquirer(tmp_path)
    try:
        h = harness(qr=_qr_section(acquirer, mch_id="100000000001"))
        assert h.term.payments.qr is not None, h.console
        assert h.term.payments.qr.msg.key == KEY.encode()
        assert h.term.payments.qr.msg.mch_id == MCH_ID
        # the configuration's other number is named, and not used
        assert any("[qr] mch_id 100000000001 differs" in c and "%s is used" % MCH_ID in c
                   for c in h.console), h.console
        h.login()
        h.press("1", "2", "5", "0")
        h.press("ENTER")
        h.press("3")
        assert h.flow() == ("qr", "code"), h.text()
        h.scan(WECHAT)
        h.wait_for_flow(("sale", "result"))
        rec = h.term.payments.journal.last()
        assert rec["state"] == "approved", rec
        # the acquirer (which knows only this key) took it under the sealed number
        order = acquirer.ledger.order(MCH_ID, "HP000001-%06d" % rec["id"])
        assert order["state"] == "SUCCESS" and order["total_fee"] == 1250
        h.close()
    finally:
        acquirer.stop()
    # the key is in no file of the data folder in clear, nor hex, nor base64
    import base64
    for form in (KEY.encode(), KEY.encode().hex().encode(), base64.b64encode(KEY.encode())):
        for path, raw in _every_file(folder):
            assert form not in raw, path


def test_the_key_file_and_its_line_end_and_status(data, tmp_path):
    out = _cli(data, "status")
    assert out.returncode == 1
    assert "no merchant key loaded" in _one_line(out.stdout) and "qr-key load" in out.stdout
    path = _key_file(tmp_path, "\ufeff  %s \r\n\n" % KEY)     # a BOM, spaces, CRLF, a blank line
    out = _cli(data, "load", "--mch-id", MCH_ID, key_file=path)
    assert out.returncode == 0, out.stderr
    assert "not in the audit trail: no store yet" in out.stderr   # never started: no store
    got = keystore.read_qr_key(_device_keys(data))
    assert got["mch_id"] == MCH_ID and got["key"] == KEY and got["loaded_utc"].endswith("Z")
    out = _cli(data, "status")
    assert out.returncode == 0, out.stderr
    line = _one_line(out.stdout)
    for words in ("loaded: mch_id %s" % MCH_ID, "key %s" % FINGERPRINT, got["loaded_utc"],
                  str(data / "keys" / keystore.QR_FILE)):
        assert words in line, line
    assert KEY not in out.stdout + out.stderr
    # loaded again: the new one replaces it, and says what it replaced
    other = "Zx" * 12
    out = _cli(data, "load", "--mch-id", "100000000003", key=other)
    assert out.returncode == 0, out.stderr
    assert "replaces mch_id %s, key %s" % (MCH_ID, FINGERPRINT) in _one_line(out.stdout)
    assert keystore.read_qr_key(_device_keys(data))["key"] == other


def test_the_merchant_number_may_come_from_the_configuration(data, tmp_path):
    cfg = tmp_path / "handpos.toml"
    cfg.write_text('[storage]\ndata_dir = "%s"\n[qr]\nmch_id = "%s"\n[mfa]\nactions = []\n'
                   % (data, MCH_ID))
    out = subprocess.run([sys.executable, "-m", "tools", "qr-key", "load", "--config", str(cfg),
                          "--board", "sim"], cwd=ROOT, input=KEY, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert keystore.read_qr_key(_device_keys(data))["mch_id"] == MCH_ID


# -- refusals ------------------------------------------------------------------------------
@pytest.mark.parametrize("lock, said", [
    ("run.lock", "the terminal is running on"),
    ("sim.lock", "the simulator is running on")])
def test_refused_while_the_terminal_or_the_simulator_runs(data, lock, said):
    with open(data / lock, "a+") as held:              # what a running terminal holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        out = _cli(data, "load", "--mch-id", MCH_ID, key=KEY)
    assert out.returncode == 2
    line = _one_line(out.stderr)
    assert line.startswith("handpos qr-key: refused: ") and said in line, line
    assert "(pid 4242)" in line and "stop it first" in line and "no key was loaded" in line
    assert not os.path.exists(data / "keys" / keystore.QR_FILE)
    assert _cli(data, "load", "--mch-id", MCH_ID, key=KEY).returncode == 0   # stopped: loaded


@pytest.mark.parametrize("args, key, said", [
    (["--mch-id", MCH_ID], "", "the merchant key is empty"),
    (["--mch-id", MCH_ID], "\n\n", "the merchant key is empty"),
    (["--mch-id", MCH_ID], "short-key", "9 characters long"),
    (["--mch-id", MCH_ID], "x" * 129, "129 characters long"),
    (["--mch-id", MCH_ID], "with a space in the key 0123456", "printable ASCII on one line"),
    (["--mch-id", MCH_ID], "k\x01" * 10, "control or non-ASCII"),
    (["--mch-id", MCH_ID], KEY + "\n" + KEY, "holds 2 lines"),
    (["--mch-id", MCH_ID], "x" * 5000, "longer than 4096 bytes"),
    (["--mch-id", "10000A000002"], KEY, "is not 6 to 32 digits"),
    (["--mch-id", "12345"], KEY, "is not 6 to 32 digits"),
    ([], KEY, "no merchant number: give --mch-id"),
    (["--mch-id", MCH_ID, "--key", KEY], "", "never given on the command line"),
    (["--mch-id", MCH_ID, "--key-file", "/nonexistent/merchant.key"], KEY, "no key file"),
])
def test_bad_input_is_refused_in_one_line(data, args, key, said):
    out = _cli(data, "load", *args, key=key)
    assert out.returncode == 2, out.stdout
    line = _one_line(out.stderr)
    assert line.startswith("handpos qr-key: refused: ") and said in line, line
    assert line.endswith("no key was loaded"), line
    assert out.stdout == ""
    if key.strip() and "\n" not in key.strip() and len(key) > 8:
        assert key.strip() not in line              # the key is never echoed
    assert not os.path.exists(data / "keys" / keystore.QR_FILE)


def test_refused_without_a_data_folder_or_before_the_first_start(data, tmp_path):
    out = _cli(tmp_path / "nowhere", "load", "--mch-id", MCH_ID, key=KEY)
    assert out.returncode == 2
    assert "no data directory %s" % (tmp_path / "nowhere") in _one_line(out.stderr)
    os.unlink(data / "keys" / "keys.wrapped")           # never started: no key store
    out = _cli(data, "load", "--mch-id", MCH_ID, key=KEY)
    assert out.returncode == 2
    line = _one_line(out.stderr)
    assert "start the terminal once" in line and line.endswith("no key was loaded"), line
    assert not os.path.exists(data / "keys" / keystore.QR_FILE)
    out = _cli(data, "status")
    assert out.returncode == 1                           # nothing loaded, nothing opened
    # under another board's key root the keys do not open, and it says which board to use
    (data / "sim.lock").touch(mode=0o600)
    _device_keys(data, create=True)
    out = _cli(data, "load", "--mch-id", MCH_ID, "--board", "pi4", key=KEY)
    assert out.returncode == 2
    line = _one_line(out.stderr)
    assert "keys do not open" in line and "add --board sim" in line, line


def test_a_damaged_sealed_file_is_named_by_status_and_mended_by_a_load(data):
    assert _cli(data, "load", "--mch-id", MCH_ID, key=KEY).returncode == 0
    path = data / "keys" / keystore.QR_FILE
    raw = bytearray(path.read_bytes())
    raw[20] ^= 0x01
    path.write_bytes(bytes(raw))
    out = _cli(data, "status")
    assert out.returncode == 2
    line = _one_line(out.stderr)
    assert "damaged" in line and "does not open under this terminal's keys" in line, line
    assert _cli(data, "load", "--mch-id", MCH_ID, key=KEY).returncode == 0
    assert _cli(data, "status").returncode == 0


# -- the terminal: a key that does not open, no key, the lab's key ----------------------
def test_a_flipped_byte_turns_qr_off_and_cards_still_pay(harness, hostsim, tmp_path):
    h = harness()
    h.first_supervisor()
    h.close()
    folder = tmp_path / "terminal"
    assert _cli(folder, "load", "--mch-id", MCH_ID, key=KEY).returncode == 0
    path = folder / "keys" / keystore.QR_FILE
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x80                                     # the tag
    path.write_bytes(bytes(raw))
    acquirer = _acquirer(tmp_path)
    try:
        h = harness(qr=_qr_section(acquirer), host=(hostsim.address, hostsim.ca_file),
                    synced=True)
        assert h.term.payments.qr is None
        said = [c for c in h.console if c.startswith("qr:")]
        assert len(said) == 1 and "the merchant key does not open" in said[0] and \
            "QR payments are off" in said[0] and str(path) in said[0], h.console
        assert h.term.fault is None                     # not a fault that stops service
        assert "qr_key_damaged" in [row[1] for row in h.term.store.audit_log()]
        h.login()
        h.run(3000, until=lambda: h.term.link_state == "up")
        rec = h.swipe_sale("1000")
        assert rec["state"] == "approved" and rec["method"] != "qr", rec
        h.to_idle()
        h.press("5", "0", "0")
        h.press("ENTER")
        h.press("3")
        assert "QR not set up" in h.text(), h.text()
        assert h.term.payments.journal.last()["id"] == rec["id"]
    finally:
        acquirer.stop()


def test_no_key_anywhere_says_who_loads_it(harness, acquirer):
    h = harness(qr=_qr_section(acquirer, mch_id=MCH_ID))
    assert h.term.payments.qr is None
    assert "qr: no merchant key loaded: a technician runs `handpos qr-key load`: QR " \
           "payments are off" in h.console, h.console


def test_the_configurations_key_still_works_in_the_lab(qr_shop, acquirer):
    from tools.host.qrsim import DEFAULT_KEY
    h = qr_shop()                                       # [lab] enabled, [qr] key set
    assert h.term.payments.qr.msg.key == DEFAULT_KEY
    assert h.term.payments.qr.msg.mch_id == "100000000001"
    assert not [c for c in h.console if c.startswith("qr:")], h.console
    h.press("8", "0", "0")
    h.press("ENTER")
    h.press("3")
    h.scan(WECHAT)
    h.wait_for_flow(("sale", "result"))
    assert h.term.payments.journal.last()["state"] == "approved"


def test_check_config_a_field_terminal_needs_no_key_in_its_file(tmp_path):
    from board.configfile import ConfigError, load_config
    field = tmp_path / "field.toml"
    field.write_text('[qr]\nenabled = true\naddress = "qr.example.com:443"\nmch_id = "%s"\n'
                     % MCH_ID)
    load_config(str(field))                             # no [qr] key: fine, it is sealed
    lab = tmp_path / "key.toml"
    lab.write_text('[qr]\nenabled = true\nkey = "%s"\n' % KEY)
    with pytest.raises(ConfigError) as err:
        load_config(str(lab))
    [line] = err.value.problems
    assert "qr.key:" in line and "handpos qr-key load" in line and "[lab] enabled" in line
    assert KEY not in line
    out = subprocess.run([sys.executable, "-m", "tools", "check-config", str(field)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().endswith(": OK"), out.stdout
    config = schema.defaults()
    config["qr"]["key"] = KEY
    assert schema.lab_problems(config) and not schema.lab_problems(
        dict(config, lab={"enabled": True}))


def test_the_key_store_makes_the_qr_key_once_for_an_older_folder(data):
    path = data / "keys" / "keys.wrapped"
    doc = json.loads(path.read_text())
    del doc["keys"]["qr"]                               # an older release's key file
    path.write_text(json.dumps(doc))
    keys = _device_keys(data)
    assert sorted(json.loads(path.read_text())["keys"]) == list(sorted(keystore.NAMES))
    assert _device_keys(data).key("qr") == keys.key("qr")     # kept, not made again
