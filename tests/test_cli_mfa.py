"""The second factor on the command line (issue 15 item 3, docs/mfa.md "On the command
line"): `handpos journal export`, `audit export`, `catalogue export|movements` and
`qr-key load` ask a supervisor's or technician's authenticator code when the
configuration's [mfa] actions has "export" / "key_load", checked by the terminal's own
service over its sealed enrolments and its store's lockout.

A real data folder: the simulator harness (tests/conftest.py) makes it, a supervisor
enrols a phone through the keypad's flow (tests/test_mfa.py's enrol, the TOTP clock
pinned ten minutes back), a cashier and a second supervisor (not enrolled) are added.
The commands then run as subprocesses on the folder with `--data` alone, so under the
simulator's configuration (config/sim.toml), which keeps the product's [mfa]; the codes
they are given are computed here from the enrolled key at the real time, as the phone
does.
"""
import csv
import io
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from firmware.core import config as schema
from firmware.flows.mfa import MfaCheckFlow
from tests.test_mfa import _ask, enrol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MCH_ID = "100000000002"
KEY = "Kq7wN2sVx9LmT4rB8yHc3JdF6gZp1AeU"


def _now_code(phone):
    return phone.code(time.time())


def _wrong(phone):
    now = time.time()
    near = {phone.code(now + d) for d in (-60, -30, 0, 30, 60)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444", "555555")
                if c not in near)


def _cli(data, *args, code=None, stdin=None):
    """`handpos ARGS --data DATA` (the simulator's configuration and board); code goes
    in on standard input with --code-stdin."""
    argv = [sys.executable, "-m", "tools"] + list(args) + ["--data", str(data)]
    if code is not None:
        argv.append("--code-stdin")
        stdin = code + "\n" + (stdin or "")
    env = dict(os.environ)
    env.pop("HANDPOS_CONFIG", None)
    return subprocess.run(argv, cwd=ROOT, input=stdin or "", capture_output=True, text=True,
                          timeout=120, env=env, start_new_session=True)


def _line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _audit(data):
    db = sqlite3.connect(os.path.join(str(data), "handpos.db"))
    try:
        return db.execute("SELECT event, operator, detail FROM audit ORDER BY seq").fetchall()
    finally:
        db.close()


def _journal(data, out, *extra, code=None):
    day = time.strftime("%Y-%m-%d")
    return _cli(data, "journal", "export", "--day", day, "--output", str(out), *extra,
                code=code)


@pytest.fixture
def field(harness):
    """(data folder, the supervisor's phone, its recovery codes, the harness closed)."""
    h = harness(mfa=schema.defaults()["mfa"])      # the product's [mfa]
    h.first_supervisor()
    h.login()
    h.add_operator("1", "7", "1357")                # a cashier
    h.add_operator("2", "8", "2468")                # a supervisor with no phone yet
    # enrolled ten minutes ago on the TOTP clock: the step the enrolment spent is before
    # every code the commands are given at the real time, whatever the date
    then = int(time.time()) - 600
    h.term.mfa.now = lambda: then
    phone, codes = enrol(h, h.term.operator, then)
    data = h.term.config["storage"]["data_dir"]
    h.close()
    return data, phone, codes, harness


def test_right_code_writes_the_export_and_its_replay_is_refused(field, tmp_path):
    data, phone, codes, _ = field
    out = tmp_path / "day.csv"
    before = _audit(data)
    code = _now_code(phone)
    r = _journal(data, out, "--operator", "1", code=code)
    assert r.returncode == 0, r.stderr
    assert out.exists() and list(csv.reader(io.StringIO(out.read_text())))[0][0]
    # beside the terminal: no audit row (the chain has one writer, docs/audit.md)
    assert _audit(data) == before
    # the same code again: spent
    out.unlink()
    r = _journal(data, out, "--operator", "1", code=code)
    assert r.returncode == 2
    line = _line(r.stderr)
    assert line.startswith("handpos journal: refused: ") and "used already" in line, line
    assert line.endswith("nothing was written") and not out.exists()


def test_wrong_code_is_refused_nothing_written_and_the_lockout_is_shared(field, tmp_path):
    data, phone, codes, harness = field
    out = tmp_path / "audit.csv"
    for n in range(1, 5):
        r = _cli(data, "audit", "export", "--output", str(out), "--operator", "1",
                 code=_wrong(phone))
        assert r.returncode == 2 and not out.exists()
        assert "wrong code (%d of 5 before a 15-min lockout)" % n in _line(r.stderr), r.stderr
    r = _cli(data, "audit", "export", "--output", str(out), "--operator", "1",
             code=_wrong(phone))
    assert r.returncode == 2 and "now locked out for 15 min" in _line(r.stderr)
    # even the right code, here and on the keypad: the count is the store's
    r = _cli(data, "audit", "export", "--output", str(out), "--operator", "1",
             code=_now_code(phone))
    assert r.returncode == 2 and "locked out after 5 wrong codes" in _line(r.stderr)
    assert not out.exists()
    h = harness(mfa=schema.defaults()["mfa"])
    h.boot()
    h.login()
    assert h.term.mfa.locked_for("1") > 14 * 60
    asker = _ask(h, MfaCheckFlow(h.term, h.term.operator, "export"))
    assert h.flow() == ("mfa_check", "locked"), h.text()
    h.press("CANCEL")
    assert asker.results == [None]


def test_a_code_spent_on_the_keypad_is_spent_on_the_command_line_and_back(field, tmp_path):
    data, phone, codes, harness = field
    h = harness(mfa=schema.defaults()["mfa"])
    h.boot()
    h.login()
    h.term.mfa.now = time.time
    # the keypad takes the code of now ...
    code = _now_code(phone)
    asker = _ask(h, MfaCheckFlow(h.term, h.term.operator, "export"))
    h.press(*code)
    h.press("ENTER")
    assert asker.results == [h.term.operator], h.text()
    # ... the command line, run beside the terminal, refuses it
    out = tmp_path / "day.csv"
    r = _journal(data, out, "--operator", "1", code=code)
    assert r.returncode == 2 and "used already" in _line(r.stderr) and not out.exists()
    # and a code the command line took is refused on the running terminal's keypad,
    # which read the sealed file before (the next step's code, typed early)
    later = phone.code(time.time() + 30)
    r = _journal(data, out, "--operator", "1", code=later)
    assert r.returncode == 0, r.stderr
    asker = _ask(h, MfaCheckFlow(h.term, h.term.operator, "export"))
    h.press(*later)
    h.press("ENTER")
    assert "Code used" in h.text() and asker.results == []


def test_who_may_give_a_code(field, tmp_path):
    data, phone, codes, _ = field
    out = tmp_path / "items.csv"
    # no --operator
    r = _cli(data, "catalogue", "export", str(out))
    line = _line(r.stderr)
    assert r.returncode == 2 and "give --operator ID" in line and "supervisor or technician" \
        in line, line
    # no terminal to type the code on (this session has none), and no --code-stdin
    r = _cli(data, "catalogue", "export", str(out), "--operator", "1")
    assert r.returncode == 2 and "no terminal to ask the code on" in _line(r.stderr)
    # an ID nobody has
    r = _cli(data, "catalogue", "export", str(out), "--operator", "99", code="123456")
    assert r.returncode == 2 and "unknown operator 99" in _line(r.stderr)
    # a cashier
    r = _cli(data, "catalogue", "movements", str(out), "--operator", "7", code="123456")
    line = _line(r.stderr)
    assert r.returncode == 2 and "operator 7 is a cashier" in line, line
    # a supervisor who never enrolled
    r = _cli(data, "journal", "export", "--day", "2026-12-01", "--output", str(out),
             "--operator", "8", code="123456")
    line = _line(r.stderr)
    assert r.returncode == 2, line
    assert "enrol TOTP on the terminal first: Settings > Enrol TOTP" in line, line
    assert not out.exists()
    # none of these counted toward a lockout
    db = sqlite3.connect(os.path.join(data, "handpos.db"))
    assert db.execute("SELECT value FROM settings WHERE key LIKE 'mfa_fail:%'").fetchall() \
        in ([], [("0,0",)])
    db.close()


def test_a_recovery_code_works_once(field, tmp_path):
    data, phone, codes, _ = field
    out = tmp_path / "audit.json"
    spaced = codes[0][:5] + " " + codes[0][5:]          # as printed
    r = _cli(data, "audit", "export", "--format", "json", "--output", str(out),
             "--operator", "1", code=spaced)
    assert r.returncode == 0, r.stderr
    assert "recovery code accepted (7 left)" in r.stderr and out.exists()
    out.unlink()
    r = _cli(data, "audit", "export", "--format", "json", "--output", str(out),
             "--operator", "1", code=codes[0])
    assert r.returncode == 2 and "wrong code (1 of 5" in _line(r.stderr) and not out.exists()


def test_key_load_asks_and_audits_the_check(field, tmp_path):
    """qr-key load holds the terminal stopped: its checks are rows of the trail, sealed
    into the chain (handpos audit verify stays intact)."""
    data, phone, codes, _ = field
    key_file = tmp_path / "merchant.key"
    key_file.write_text(KEY + "\n")
    r = _cli(data, "qr-key", "load", "--mch-id", MCH_ID, "--key-file", str(key_file),
             "--operator", "1", code=_wrong(phone))
    assert r.returncode == 2 and "wrong code" in _line(r.stderr) and r.stdout == ""
    assert not os.path.exists(os.path.join(data, "keys", "qr.merchant"))
    # standard input cannot carry both the code and the key
    r = _cli(data, "qr-key", "load", "--mch-id", MCH_ID, "--operator", "1",
             code=_now_code(phone), stdin=KEY)
    assert r.returncode == 2 and "--key-file" in _line(r.stderr)
    r = _cli(data, "qr-key", "load", "--mch-id", MCH_ID, "--key-file", str(key_file),
             "--operator", "1", code=_now_code(phone))
    assert r.returncode == 0, r.stderr
    assert os.path.exists(os.path.join(data, "keys", "qr.merchant"))
    rows = _audit(data)[-3:]
    assert rows[0][:2] == ("mfa_failed", "1") and "key_load (handpos qr-key load): wrong" \
        in rows[0][2]
    assert rows[1] == ("mfa_ok", "1", "key_load (handpos qr-key load)")
    assert rows[2][0] == "qr_key_loaded"
    r = _cli(data, "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr


def test_without_the_action_nothing_is_asked(field, tmp_path):
    data, phone, codes, _ = field
    cfg = tmp_path / "no-mfa.toml"
    with open(os.path.join(ROOT, "config", "sim.toml")) as f:
        cfg.write_text(f.read() + '\n[mfa]\nactions = ["pin_reset"]\n')
    out = tmp_path / "audit.csv"
    r = _cli(data, "audit", "export", "--output", str(out), "--config", str(cfg),
             "--board", "sim")
    assert r.returncode == 0, r.stderr and out.exists()
