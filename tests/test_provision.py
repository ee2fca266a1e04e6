"""`handpos keys kbpk load` and `handpos provision FILE` as a technician runs them, as
subprocesses on a fresh simulator's data folder (the sim board's file key root), against
the real host simulator (tests/conftest.py hostsim): the ceremony's KCVs, the keys
loaded from TR-31 blocks, the first supervisor, the echo and the test sale the host
keeps out of its totals, bad files refused whole, a SIGKILL mid-run resumed. Test keys
only: the X9.24-1 test BDK and KSN, the X9.24-3 test BDK, made-up test components."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from firmware.security import dukpt, dukpt_aes
from tools import tr31

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMP1 = "0123456789ABCDEF" * 4                      # test components, nothing live
COMP2 = "1111111122222222333333334444444455555555666666667777777788888888"
KBPK = bytes(a ^ b for a, b in zip(bytes.fromhex(COMP1), bytes.fromhex(COMP2)))
KBPK_KCV = tr31.kcv(KBPK, tr31.AES)
TEST_BDK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
TEST_KSN = "FFFF9876543210E00000"
AES_BDK = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
AES_IKID = "1234567890123456"
DATA_KEY = bytes(range(100, 132))
EXPORT_KEY = bytes(range(32))                       # board/export.py's test values
EXPORT_SEED = bytes(range(32, 64))
QR_KEY = b"handpos-test-qr-key-000000000001"


def _env():
    env = dict(os.environ)
    env.pop("HANDPOS_CONFIG", None)
    return env


def _run(*args, stdin="", env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "tools"] + list(args), cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=env or _env())


def _ceremony(data, tmp_path, comps=(COMP1, COMP2), extra=()):
    files = []
    for i, comp in enumerate(comps):
        path = tmp_path / ("component%d.txt" % (i + 1))
        path.write_text(comp + "\n")
        files += ["--component-file", str(path)]
    names = []
    for name in ("ALICE", "BOB", "CAROL")[:len(comps)]:
        names += ["--custodian", name]
    return _run("keys", "kbpk", "load", "--data", str(data), "--components", str(len(comps)),
                *files, *names, *extra)


def _file(tmp_path, hostsim, aes=False, **change):
    ipek = dukpt.derive_ipek(TEST_BDK, TEST_KSN)
    if aes:
        dk = tr31.wrap("dukpt_aes", KBPK, tr31.AES,
                       dukpt_aes.derive_initial_key(AES_BDK, bytes.fromhex(AES_IKID)),
                       blocks={"IK": AES_IKID})
    else:
        dk = tr31.wrap("dukpt_tdes", KBPK, tr31.AES, ipek, blocks={"KS": TEST_KSN})
    values = {
        "terminal": {"id": "HP000042", "merchant_id": "000000000000042"},
        "host": {"address": hostsim.address, "ca_file": hostsim.ca_file,
                 "pin_security": "aes-dukpt" if aes else "tdes-dukpt"},
        "qr": {"mch_id": "100000000002",
               "key": tr31.wrap("qr", KBPK, tr31.AES, QR_KEY)},
        "supervisor": {"id": "7", "name": "SHIFT LEAD"},
        "keys": {"kbpk_kcv": KBPK_KCV, "dukpt": dk,
                 "data": tr31.wrap("data", KBPK, tr31.AES, DATA_KEY),
                 "export": tr31.wrap("export", KBPK, tr31.AES, EXPORT_KEY),
                 "export_sign": tr31.wrap("export_sign", KBPK, tr31.AES, EXPORT_SEED)},
    }
    for dotted, value in change.items():
        section, key = dotted.split("__")
        if value is None:
            values[section].pop(key, None)
        else:
            values.setdefault(section, {})[key] = value
    lines = []
    for section, items in values.items():
        lines.append("[%s]" % section)
        lines += ["%s = %s" % (k, json.dumps(v)) for k, v in items.items()]
    _file.made += 1
    path = tmp_path / ("provision%d.toml" % _file.made)
    path.write_text("\n".join(lines) + "\n")
    return path


_file.made = 0


@pytest.fixture
def data(tmp_path):
    return tmp_path / "term"


def _keys(data):
    from drivers import keystore
    from drivers.keyroot import open_root
    root = open_root({"kind": "file", "path": ".sim-root/root.key"}, str(data))
    return keystore.KeyStore(str(data / "keys"), root).open()


def _dukpt_state(data):
    keys = _keys(data)
    return json.loads(keys.sealed("dukpt.state", "dukpt", "dukpt state").read().decode())


def test_ceremony_shows_each_components_kcv_and_seals_the_xor(data, tmp_path):
    got = _ceremony(data, tmp_path)
    assert got.returncode == 0, got.stderr
    out = got.stdout
    assert "component 1 of 2 (ALICE" in out and "KCV %s" % tr31.kcv(bytes.fromhex(COMP1), "aes") in out
    assert "KCV %s" % tr31.kcv(bytes.fromhex(COMP2), "aes") in out
    assert "KBPK loaded: AES, KCV %s" % KBPK_KCV in out
    from tools import kbpk
    doc = kbpk.read(_keys(data))
    assert doc["key"] == KBPK and doc["custodians"] == ["ALICE", "BOB"]
    # neither the KBPK nor a component is in any file of the data folder in clear
    for base, _, files in os.walk(data):
        for name in files:
            raw = open(os.path.join(base, name), "rb").read()
            for secret in (KBPK, bytes.fromhex(COMP1), bytes.fromhex(COMP2)):
                assert secret not in raw and secret.hex().encode() not in raw.lower(), name
    status = _run("keys", "kbpk", "status", "--data", str(data))
    assert status.returncode == 0 and KBPK_KCV in status.stdout and "ALICE, BOB" in status.stdout


def test_ceremony_refusals(data, tmp_path):
    got = _ceremony(data, tmp_path, comps=(COMP1, COMP1))
    assert got.returncode == 2 and "two components are the same" in got.stderr
    got = _ceremony(data, tmp_path, comps=(COMP1, COMP2[:-2]))
    assert got.returncode == 2 and "component 2 is 62 hex digits" in got.stderr
    got = _ceremony(data, tmp_path, extra=("--expect-kcv", "0000000000"))
    assert got.returncode == 2 and "not 0000000000" in got.stderr
    assert _run("keys", "kbpk", "status", "--data", str(data)).returncode == 1
    three = _ceremony(data, tmp_path, comps=(COMP1, COMP2, "AB" * 32))
    assert three.returncode == 0, three.stderr
    assert "component 3 of 3 (CAROL" in three.stdout


def _provision(data, path, env=None, extra=()):
    return _run("provision", str(path), "--data", str(data), *extra, env=env)


def test_provision_a_fresh_simulator_with_a_test_sale(data, tmp_path, hostsim):
    assert _ceremony(data, tmp_path).returncode == 0
    path = _file(tmp_path, hostsim)
    got = _provision(data, path)
    assert got.returncode == 0, got.stdout + got.stderr
    out = got.stdout
    for n in range(1, 10):
        assert "[%d/9]" % n in out
    ipek = dukpt.derive_ipek(TEST_BDK, TEST_KSN)
    assert "KCV %s" % tr31.kcv(ipek, tr31.TDES) in out
    assert "data key: loaded (KCV %s)" % tr31.kcv(DATA_KEY, tr31.AES) in out
    assert "approved as test" in out
    # the keys are where the terminal reads them
    keys = _keys(data)
    assert keys.key("data") == DATA_KEY
    state = _dukpt_state(data)
    assert state["kind"] == "tdes-dukpt"
    assert dukpt.ksn_counter(state["ksn"]) == 2          # counter 1 went to the trial's PIN
    assert (data / "keys" / "export.key").read_bytes() == EXPORT_KEY
    from drivers import keystore
    assert keystore.read_qr_key(keys)["key"] == QR_KEY.decode()
    # the host: an echo, a test sale it booked as test, nothing in its money or totals
    ledger = hostsim.ledger
    assert ledger.count("HP000042", kind="test") == 1
    assert ledger.approved_total("HP000042") == 0
    assert ledger.unsettled_totals("HP000042") == (0, 0, 0, 0)
    sent = [(e["request"]["t"], e["request"].get("70"), e["request"].get("48"),
             e["response"]["39"]) for e in ledger.exchanges("HP000042")]
    assert sent == [("0800", "301", None, "00"), ("0200", None, "TEST", "00")]
    # the configuration the simulator starts with
    from board.configfile import load_config
    config = load_config(str(data) + ".toml")
    assert config["terminal"]["id"] == "HP000042"
    assert config["host"]["address"] == hostsim.address
    assert config["qr"]["mch_id"] == "100000000002"
    # the first supervisor, whose one-time PIN must be changed at the first login
    pin = out.split("one-time PIN ")[1][:6]
    from drivers.store_sqlite import SQLiteStore
    from firmware.security.auth import Auth
    from drivers.pinhash import ScryptPepper
    store = SQLiteStore(str(data / "handpos.db"))
    try:
        auth = Auth(store, lambda: 0, os.urandom, hasher=ScryptPepper(keys.key("pepper")))
        op, why = auth.check("7", pin)
        assert why == "ok" and op["role"] == "supervisor" and op["must_change"] == "reset"
        events = [r[2] for r in store.audit_rows()]
        assert "kbpk_loaded" not in events      # the ceremony came before the store
        assert "key_loaded" in events and "provision_trial" in events
    finally:
        store.close()
    state_file = json.loads((data / "terminal.state").read_text())
    assert state_file["state"] == "in service"
    # a second run: everything done, nothing loaded twice
    again = _provision(data, path)
    assert again.returncode == 0, again.stderr
    assert "done before" in again.stdout
    assert dukpt.ksn_counter(_dukpt_state(data)["ksn"]) == 2


def test_provision_aes_dukpt(data, tmp_path, hostsim):
    assert _ceremony(data, tmp_path).returncode == 0
    got = _provision(data, _file(tmp_path, hostsim, aes=True))
    assert got.returncode == 0, got.stdout + got.stderr
    assert "AES DUKPT initial key (AES-128), initial key ID %s" % AES_IKID in got.stdout
    state = _dukpt_state(data)
    assert state["kind"] == "aes-dukpt" and dukpt_aes.ksn_counter(state["ksn"]) == 2
    assert hostsim.ledger.count("HP000042", kind="test") == 1


def test_a_dukpt_key_the_host_does_not_know_fails_the_trial_sale(data, tmp_path, hostsim):
    assert _ceremony(data, tmp_path).returncode == 0
    other = dukpt.derive_ipek(bytes.fromhex("00112233445566778899AABBCCDDEEFF"), TEST_KSN)
    block = tr31.wrap("dukpt_tdes", KBPK, tr31.AES, other, blocks={"KS": TEST_KSN})
    got = _provision(data, _file(tmp_path, hostsim, keys__dukpt=block))
    assert got.returncode == 2
    assert "could not verify the test PIN (55)" in got.stderr


def _all_files(data):
    seen = {}
    for base, _, files in os.walk(data):
        for name in files:
            if name.endswith(".lock"):      # the pid of the last run holding the folder
                continue
            path = os.path.join(base, name)
            seen[os.path.relpath(path, data)] = open(path, "rb").read()
    return seen


def test_a_bad_file_is_refused_whole_with_a_line_per_problem(data, tmp_path, hostsim):
    assert _ceremony(data, tmp_path).returncode == 0
    good = _file(tmp_path, hostsim)
    data_block = tr31.wrap("data", KBPK, tr31.AES, DATA_KEY)
    flipped = data_block[:-1] + ("0" if data_block[-1] != "0" else "1")
    pin_key = tr31.wrap("data", KBPK, tr31.AES, DATA_KEY, key_usage="P0")
    before = _all_files(data)
    config_before = (tmp_path / "term.toml").read_text()
    path = _file(tmp_path, hostsim, terminal__id="12", keys__data=flipped,
                 keys__export=pin_key, supervisor__id="1234567", host__ca_file="nowhere.pem",
                 shop__name="x")
    got = _provision(data, path)
    assert got.returncode == 2
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 6, got.stderr
    text = got.stderr
    assert 'terminal.id = "12": must be exactly 8 letters or digits' in text
    assert "keys.data" in text and "MAC does not verify" in text
    assert "keys.export" in text and "key usage P0" in text
    assert "supervisor.id" in text and "host.ca_file" in text and "[shop]" in text
    assert _all_files(data) == before                       # nothing applied
    assert (tmp_path / "term.toml").read_text() == config_before
    assert hostsim.ledger.exchanges() == []
    # blocks for another KBPK
    got = _provision(data, _file(tmp_path, hostsim, keys__kbpk_kcv="ABCDEF1234"))
    assert got.returncode == 2 and "this terminal's KBPK is %s" % KBPK_KCV in got.stderr
    assert _provision(data, good).returncode == 0


def test_provision_needs_the_ceremony_first(data, tmp_path, hostsim):
    got = _provision(data, _file(tmp_path, hostsim))
    assert got.returncode == 2
    assert "no KBPK: hold the key ceremony first" in got.stderr


@pytest.mark.parametrize("step", ["dukpt", "test sale"])
def test_sigkill_mid_run_then_a_second_run_finishes(data, tmp_path, hostsim, step):
    assert _ceremony(data, tmp_path).returncode == 0
    path = _file(tmp_path, hostsim)
    env = _env()
    env["HANDPOS_PROVISION_PAUSE"] = step
    proc = subprocess.Popen([sys.executable, "-m", "tools", "provision", str(path), "--data",
                             str(data)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "paused at" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
        assert "paused at %s" % step in line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    if step == "dukpt":
        # stopped after the intent, before the key: no DUKPT state, old or half
        assert not (data / "keys" / "dukpt.state").exists()
    got = _provision(data, path)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "resuming" in got.stdout
    state = _dukpt_state(data)
    # the trial's PIN used counter 1 once; a resumed run never loads the key again
    assert dukpt.ksn_counter(state["ksn"]) == 2
    assert hostsim.ledger.count("HP000042", kind="test") == 1
    leftovers = [n for n in os.listdir(data / "keys") if n.endswith(".tmp")]
    assert leftovers == []


def test_the_same_initial_key_is_not_loaded_twice(data, tmp_path, hostsim):
    assert _ceremony(data, tmp_path).returncode == 0
    assert _provision(data, _file(tmp_path, hostsim)).returncode == 0
    # another file (a later visit) with the same IPEK and KSN: its KSNs were used
    path = _file(tmp_path, hostsim, terminal__merchant_id="000000000000043", keys__data=None,
                 keys__export=None, keys__export_sign=None, qr__key=None)
    # the product's [mfa] asks the supervisor's code for a key load on a terminal in
    # service (tests/test_cli_mfa.py has that path): this lab skips it
    with open(str(data) + ".toml", "a") as f:
        f.write("\n[mfa]\nactions = []\n")
    got = _provision(data, path)
    assert got.returncode == 2
    assert "was loaded on this terminal before" in got.stderr
