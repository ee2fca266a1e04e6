"""The audit trail's chain on the device (docs/audit.md): the real SQLite store in a
temp folder with the terminal's key hierarchy, a person's edits made with sqlite3, and
the real `handpos audit verify|export` naming each by record number; the boot
self-test on a tampered trail; an older release's rows sealed once.

The chain itself, on the memory store and under MicroPython: tests/portable/test_auditchain.py."""
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from drivers import audittrail, keystore
from drivers.store_sqlite import SQLiteStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _device_keys(data, create=False):
    """The terminal's key hierarchy under the simulator board's file root."""
    from drivers.keyroot import open_root
    root = open_root({"kind": "file", "path": ".sim-root/root.key"}, str(data), create=create)
    return keystore.KeyStore(str(data / "keys"), root).open(create=create)


@pytest.fixture
def data(tmp_path):
    """A terminal's data folder with its keys and a store whose trail holds ten records."""
    folder = tmp_path / "terminal"
    folder.mkdir(mode=0o700)
    keys = _device_keys(folder, create=True)
    store = SQLiteStore(str(folder / "handpos.db"))
    assert audittrail.attach(store, keys, print)
    for i in range(1, 10):
        store.audit("login" if i % 2 else "refund", "1", "record %d" % (i + 1))
    store.close()
    return folder


def _cli(data, *args):
    argv = [sys.executable, "-m", "tools", "audit"] + list(args) + ["--data", str(data)]
    if args[0] == "export":
        # a configuration whose [mfa] asks no code for an export (the product's asks one:
        # tests/test_cli_mfa.py); the simulator's board as --data alone takes it
        cfg = os.path.join(os.path.dirname(os.path.abspath(str(data))), "no-mfa.toml")
        with open(cfg, "w") as f:
            f.write("[mfa]\nactions = []\n")
        argv += ["--config", cfg, "--board", "sim"]
    env = dict(os.environ)
    env.pop("HANDPOS_CONFIG", None)
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def _sql(data, *statements):
    db = sqlite3.connect(str(data / "handpos.db"))
    for s in statements:
        db.execute(s)
    db.commit()
    db.close()


def _named(result):
    """The record numbers verify named, from its lines '#n kind: ...'."""
    return [int(line.split()[0][1:]) for line in result.stdout.splitlines()
            if line.startswith("#")]


def test_untouched_trail_verifies(data):
    got = _cli(data, "verify")
    assert got.returncode == 0, got.stderr + got.stdout
    assert "the trail is intact: #1-#10 (10 records)" in got.stdout
    assert "names #10" in got.stdout
    rows = sqlite3.connect(str(data / "handpos.db")).execute(
        "SELECT seq, event, length(mac), length(prev) FROM audit ORDER BY seq").fetchall()
    assert rows[0][:2] == (1, "audit_chain_start")
    assert all(r[2] == 32 and r[3] == 32 for r in rows)
    assert os.stat(data / "keys" / audittrail.HEAD_FILE).st_mode & 0o077 == 0


def test_edited_record_named(data):
    _sql(data, "UPDATE audit SET detail='nothing to see' WHERE seq=4")
    got = _cli(data, "verify")
    assert got.returncode == 1
    assert _named(got) == [4]
    assert "#4 edited: #4 was edited" in got.stdout
    assert "NOT intact: 1 problem" in got.stderr and "first at #4" in got.stderr


def test_edited_operator_of_the_last_record_named(data):
    _sql(data, "UPDATE audit SET operator='2' WHERE seq=10")
    got = _cli(data, "verify")
    assert got.returncode == 1 and _named(got) == [10]


def test_middle_record_removed(data):
    _sql(data, "DELETE FROM audit WHERE seq=6")
    got = _cli(data, "verify")
    assert got.returncode == 1
    assert _named(got) == [6]
    assert "#6 removed (between #5 and #7)" in got.stdout


def test_last_records_removed(data):
    _sql(data, "DELETE FROM audit WHERE seq>=8",
         "UPDATE sqlite_sequence SET seq=7 WHERE name='audit'")
    got = _cli(data, "verify")
    assert got.returncode == 1
    assert _named(got) == [8]
    assert "#8-#10 removed: the trail ends at #7, its sealed head says #10" in got.stdout


def test_forged_record_inserted(data):
    db = sqlite3.connect(str(data / "handpos.db"))
    prev = db.execute("SELECT mac FROM audit WHERE seq=10").fetchone()[0]
    db.execute("INSERT INTO audit (utc, event, operator, detail, prev, mac) VALUES "
               "('2026-12-01T10:00:00Z', 'refund', '1', 'forged', ?, ?)", (prev, os.urandom(32)))
    db.execute("INSERT INTO audit (utc, event, operator, detail) VALUES "
               "('2026-12-01T10:00:00Z', 'void', '1', 'no mac at all')")
    db.commit()
    db.close()
    got = _cli(data, "verify")
    assert got.returncode == 1
    assert _named(got) == [11, 12]
    assert "#11 inserted" in got.stdout and "#12 unsealed" in got.stdout


def test_two_records_swapped(data):
    _sql(data, "UPDATE audit SET seq=-5 WHERE seq=5", "UPDATE audit SET seq=5 WHERE seq=6",
         "UPDATE audit SET seq=6 WHERE seq=-5")
    got = _cli(data, "verify")
    assert got.returncode == 1
    assert _named(got) == [5, 6]
    assert "#5 holds the record written as #6" in got.stdout


def test_contents_of_two_records_swapped(data):
    db = sqlite3.connect(str(data / "handpos.db"))
    a = db.execute("SELECT event, detail FROM audit WHERE seq=3").fetchone()
    b = db.execute("SELECT event, detail FROM audit WHERE seq=4").fetchone()
    db.execute("UPDATE audit SET event=?, detail=? WHERE seq=3", b)
    db.execute("UPDATE audit SET event=?, detail=? WHERE seq=4", a)
    db.commit()
    db.close()
    got = _cli(data, "verify")
    assert got.returncode == 1 and _named(got) == [3, 4]


def test_head_file_removed(data):
    os.unlink(data / "keys" / audittrail.HEAD_FILE)
    got = _cli(data, "verify")
    assert got.returncode == 1
    assert "sealed head is missing" in got.stdout


def test_head_file_damaged(data):
    """A head that does not open (a flipped byte, another terminal's) is reported."""
    raw = (data / "keys" / audittrail.HEAD_FILE).read_bytes()
    (data / "keys" / audittrail.HEAD_FILE).write_bytes(raw[:12] + bytes(len(raw) - 12))
    got = _cli(data, "verify")
    assert got.returncode == 1
    assert "does not open" in got.stdout


def test_export_csv_and_json(data, tmp_path):
    _sql(data, "DELETE FROM audit WHERE seq=3", "UPDATE audit SET detail='x' WHERE seq=7")
    out = tmp_path / "audit.csv"
    got = _cli(data, "export", "--output", str(out))
    assert got.returncode == 1, got.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8"))))
    assert list(rows[0]) == ["seq", "utc", "event", "operator", "detail", "mac", "check"]
    by = dict((r["seq"], r) for r in rows)
    assert by["3"]["check"].startswith("#3 removed") and by["3"]["event"] == ""
    assert by["7"]["check"].startswith("#7 was edited")
    assert by["1"]["check"] == "ok" and len(by["1"]["mac"]) == 64
    got = _cli(data, "export", "--format", "json")
    doc = json.loads(got.stdout)
    assert [r["seq"] for r in doc] == list(range(1, 11))
    assert "the trail is NOT intact: 2 problems" in got.stderr


def test_no_store_is_refused(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir(mode=0o700)
    _device_keys(folder, create=True)
    got = _cli(folder, "verify")
    assert got.returncode == 2 and "no store" in got.stderr


def test_old_rows_sealed_once_at_migration(tmp_path):
    """A store of schema 2 (rows without a MAC) gets the columns, and its rows are
    sealed as found when the key comes: 'chain starts', never reported as tampered."""
    folder = tmp_path / "old"
    folder.mkdir(mode=0o700)
    keys = _device_keys(folder, create=True)
    db = sqlite3.connect(str(folder / "handpos.db"))
    db.executescript("""
        CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, utc TEXT NOT NULL,
            event TEXT NOT NULL, operator TEXT NOT NULL, detail TEXT NOT NULL);
        INSERT INTO audit (utc, event, operator, detail) VALUES ('2026-01-01T00:00:00Z', 'login', '1', '');
        INSERT INTO audit (utc, event, operator, detail) VALUES ('2026-01-01T00:01:00Z', 'refund', '1', '#3');
        INSERT INTO audit (utc, event, operator, detail) VALUES ('2026-01-01T00:02:00Z', 'logout', '1', '');
        PRAGMA user_version=2;""")
    db.close()
    store = SQLiteStore(str(folder / "handpos.db"))
    assert audittrail.attach(store, keys, print)
    store.audit("login", "1", "")
    store.close()
    store = SQLiteStore(str(folder / "handpos.db"))         # a second start seals nothing
    assert audittrail.attach(store, keys, print)
    assert store.audit_check_tail().ok()
    rows = store.audit_rows()
    store.close()
    assert [r[2] for r in rows] == ["login", "refund", "logout", "audit_chain_start", "login"]
    assert "#1-#3 written before the chain, sealed as found" in rows[3][4]
    got = _cli(folder, "verify")
    assert got.returncode == 0, got.stdout + got.stderr
    assert "#1-#3 were written before the chain and sealed as found" in got.stdout


def test_power_cut_between_record_and_head(data):
    keys = _device_keys(data)
    head = (data / "keys" / audittrail.HEAD_FILE).read_bytes()
    store = SQLiteStore(str(data / "handpos.db"))
    audittrail.attach(store, keys, print)
    store.audit("logout", "1", "")
    store.close()
    (data / "keys" / audittrail.HEAD_FILE).write_bytes(head)    # the head one behind
    store = SQLiteStore(str(data / "handpos.db"))
    audittrail.attach(store, keys, print)
    assert store.audit_check_tail().ok()
    store.close()
    assert _cli(data, "verify").returncode == 0


def test_records_removed_under_a_running_terminal(data):
    """The next record follows the head, not the store's last row: removing the last
    records while the terminal runs shows at the next one."""
    keys = _device_keys(data)
    store = SQLiteStore(str(data / "handpos.db"))
    audittrail.attach(store, keys, print)
    _sql(data, "DELETE FROM audit WHERE seq>=9",
         "UPDATE sqlite_sequence SET seq=8 WHERE name='audit'")
    store.audit("login", "1", "")
    rows = store.audit_rows()
    store.close()
    assert rows[-1][0] == 11
    got = _cli(data, "verify")
    assert got.returncode == 1 and _named(got) == [9]


def test_an_audit_line_never_raises(data):
    """A head file the card refuses: the record is written, the payment goes on."""
    keys = _device_keys(data)
    store = SQLiteStore(str(data / "handpos.db"))
    audittrail.attach(store, keys, print)

    def refuse(doc):
        raise keystore.KeyStoreError("io", "the card refused it")
    store.audit_chain.box.write = refuse
    store.audit("refund", "1", "#9")            # no exception
    store.audit_chain = None
    store.close()
    store = SQLiteStore(str(data / "handpos.db"))
    audittrail.attach(store, keys, print)       # the head one behind: mended
    assert store.audit_check_tail().ok()
    store.close()


# -- the boot self-test --------------------------------------------------------------
def _harness(tmp_path):
    from tests.conftest import SimHarness
    return SimHarness(tmp_path)


def test_boot_self_test_on_a_tampered_trail(tmp_path):
    h = _harness(tmp_path)
    try:
        h.first_supervisor()
        for i in range(3):
            h.term.store.audit("refund", "1", "#%d" % i)
        seq = h.term.store.audit_rows()[-2][0]
    finally:
        h.close()
    _sql(tmp_path, "UPDATE audit SET detail='#99' WHERE seq=%d" % seq)
    h = _harness(tmp_path)
    try:
        from firmware.flows.boot import BootFlow
        from firmware.flows.diagnostics import DiagnosticsFlow
        boot = BootFlow(h.term)                 # the self-test's rows, as its screen lists them
        boot.run_checks()
        rows = boot.lines()
        assert rows[:3] == ["Audit trail: FAIL", "  Tell supervisor", "  Broken at #%d" % seq], rows
        assert "audit" not in boot.failures()   # listed, but the start is not held for it
        diag = DiagnosticsFlow(h.term)._selftest_rows()
        assert "Audit trail: FAIL" in diag and "  Broken at #%d" % seq in diag, diag
        assert h.term.selftests["audit"] == (None, "broken at #%d" % seq)
        found = [r for r in h.term.store.audit_log(5) if r[1] == "audit_broken"]
        assert found and ("#%d was edited" % seq) in found[0][3]
        assert any("audit: #%d was edited" % seq in line for line in h.console)
        h.press("ENTER")                        # service goes on: the login
        h.login()
        h.wait_for("! Audit broken #%d" % seq)  # and the idle screen keeps the notice
    finally:
        h.close()
    h = _harness(tmp_path)                      # found once: the next start checks from there
    try:
        assert h.term.selftests["audit"] == (True, "ok")
    finally:
        h.close()


def test_a_journal_fault_is_audited_once(tmp_path):
    """Another database failing is a line in the store's trail, sealed; the store's own
    fault is not audited into itself."""
    from firmware.core.store import StorageFault
    h = _harness(tmp_path)
    try:
        h.first_supervisor()
        h.term.storage_fault(StorageFault("io", "journal", "read error"))
        h.term.storage_fault(StorageFault("io", "journal", "read error"))
        h.term.storage_fault(StorageFault("full", "store", "no space"))
        lines = [r for r in h.term.store.audit_log(20) if r[1] == "storage_fault"]
        assert len(lines) == 1 and lines[0][3].startswith("E-22 "), lines
        assert h.term.store.audit_verify().ok()
    finally:
        h.close()


def test_boot_self_test_on_an_untouched_trail(tmp_path):
    h = _harness(tmp_path)
    try:
        h.first_supervisor()
    finally:
        h.close()
    h = _harness(tmp_path)
    try:
        from firmware.flows.boot import BootFlow
        assert h.term.selftests["audit"] == (True, "ok")
        boot = BootFlow(h.term)
        boot.run_checks()
        assert "Audit trail: OK" in boot.lines()
        assert not getattr(h.term, "audit_broken", None)
    finally:
        h.close()
