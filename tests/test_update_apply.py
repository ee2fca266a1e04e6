"""`handpos update apply` on a real data folder and a temporary release root, and the
launcher starting the real terminal (`handpos run --board sim`) out of the release:
refusals say one line and change nothing; a bundle from an http URL installs; a good
release passes its health check and is marked good (the floor raised); a release that
crashes at start is rolled back and the old one runs again; the steps reach the audit
trail at the terminal's next start (docs/updates.md)."""
import functools
import http.server
import os
import sqlite3
import subprocess
import threading
import time

import pytest

from drivers import updater
from tests.test_update_support import (LAUNCHER, PY, ROOT, cli, data_key, env,
                                       make_terminal, run_lock_held)
from tools import release


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    out = {}
    for v in ("0.2.0", "0.3.0"):
        out[v] = str(d / ("%s.hpup" % v))
        release.build(out[v], v)
    # 0.4.0 crashes at start, before anything could mark it good
    src = d / "broken"
    for rel, full in release.release_files(ROOT):
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(open(full, "rb").read())
    term = src / "firmware" / "terminal.py"
    term.write_text('raise RuntimeError("broken on purpose")\n' + term.read_text())
    out["broken"] = str(d / "0.4.0.hpup")
    release.build(out["broken"], "0.4.0", src=str(src))
    return out


@pytest.fixture
def terminal(tmp_path):
    return tmp_path, make_terminal(tmp_path)


def apply(config, bundle, *more, extra_env=None):
    return cli("update", "apply", bundle, "--config", config, "--board", "sim", *more,
               extra_env=extra_env)


def one_refusal(got):
    lines = [line for line in got.stderr.splitlines() if "refused" in line]
    assert got.returncode == 2 and len(lines) == 1, got.stderr
    assert lines[0].endswith("nothing was installed")
    return lines[0]


def launch(root, config):
    """The launcher as systemd's ExecStart runs it."""
    return subprocess.Popen([PY, LAUNCHER, "--root", root, "--python", PY, "--", "--board",
                             "sim", "--config", config], env=env(), cwd="/",
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait(pred, s=60):
    deadline = time.monotonic() + s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def stop(proc):
    """SIGTERM as systemd stops it (a terminal still composing itself may miss it: the
    reactor's stop comes before its run; then SIGKILL, as systemd's TimeoutStopSec)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def audit_events(data):
    db = sqlite3.connect(os.path.join(data, "handpos.db"))
    try:
        return [r[0] for r in db.execute("SELECT event FROM audit ORDER BY seq")]
    finally:
        db.close()


def test_refusals_say_one_line_and_change_nothing(terminal, bundles, tmp_path):
    base, config = terminal
    root = str(base / "root")
    assert apply(config, bundles["0.3.0"]).returncode == 0
    rr = updater.ReleaseRoot(root)
    rr.confirm("a")                         # 0.3.0 good: the floor is 0.3.0
    marks = rr.marks()
    assert marks["min_version"] == "0.3.0"
    line = one_refusal(apply(config, bundles["0.2.0"]))
    assert "version 0.2.0 is older than the installed minimum 0.3.0 (anti-rollback)" in line
    assert "already runs" in one_refusal(apply(config, bundles["0.3.0"]))
    cut = tmp_path / "cut.hpup"
    cut.write_bytes(open(bundles["0.2.0"], "rb").read()[:300000])
    assert "cut short" in one_refusal(apply(config, str(cut)))
    assert "no bundle" in one_refusal(apply(config, str(tmp_path / "none.hpup")))
    assert rr.marks() == marks and rr.current_slot() == "a" and not os.path.exists(
        rr.slot_dir("b"))
    assert [e["event"] for e in rr.log_lines()].count("refused") == 4


def _journal(base):
    from drivers.journal_sqlite import SQLiteJournal
    from drivers.sqlite_durable import mac_key
    return SQLiteJournal(os.path.join(str(base), "data", "journal.db"),
                         mac_key(data_key(base), "journal"))


def test_refused_while_a_shift_is_open(terminal, bundles):
    base, config = terminal
    j = _journal(base)
    shift = j.shift_open("1", 10000, "2026-06-30T08:00:00Z", 480, 1)
    j.close()
    line = one_refusal(apply(config, bundles["0.2.0"]))
    assert "a shift is open (operator 1)" in line
    assert not os.path.exists(os.path.join(str(base), "root", "releases"))
    j = _journal(base)
    j.shift_close(shift, 10000, 10000, "{}", "2026-06-30T18:00:00Z")
    j.close()
    assert apply(config, bundles["0.2.0"]).returncode == 0


def test_refused_while_a_payment_is_unfinished(terminal, bundles):
    base, config = terminal
    j = _journal(base)
    rec = j.add({"kind": "sale", "state": "sending", "amount": 1250, "currency": "USD",
                 "utc": "2026-06-30T08:00:00Z"})
    j.close()
    line = one_refusal(apply(config, bundles["0.2.0"]))
    assert "a payment is not finished (record #%d, sending)" % rec in line


def test_refused_while_offline_records_are_unexported(terminal, bundles):
    base, config = terminal
    from drivers.saf_queue import SafQueue
    q = SafQueue(os.path.join(str(base), "data", "saf.db"), data_key(base), tid="HP000001")
    q.add("advice", "000123", 500, "USD", {"pan": "4111"})
    q.close()
    line = one_refusal(apply(config, bundles["0.2.0"]))
    assert "1 offline record not uploaded or exported" in line


def test_refused_while_the_terminal_runs_without_a_stop_command(terminal, bundles):
    base, config = terminal
    proc = subprocess.Popen([PY, "-m", "tools", "run", "--board", "sim", "--config", config],
                            cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert wait(lambda: run_lock_held(str(base / "data")))
        line = one_refusal(apply(config, bundles["0.2.0"]))
        assert "the terminal is running" in line
    finally:
        stop(proc)


def test_a_bundle_from_an_http_url(terminal, bundles):
    base, config = terminal
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=os.path.dirname(bundles["0.2.0"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/0.2.0.hpup" % server.server_address[1]
        got = apply(config, url)
        assert got.returncode == 0, got.stderr
        assert "[8/8] start" in got.stderr
        missing = apply(config, url.replace("0.2.0", "9.9.9"), "--reinstall")
        assert "cannot be downloaded" in one_refusal(missing)
    finally:
        server.shutdown()
    rr = updater.ReleaseRoot(str(base / "root"))
    assert rr.version_of("a") == "0.2.0" and rr.marks()["pending"]["slot"] == "a"
    backups = os.listdir(os.path.join(str(base), "data", "backups"))
    assert len(backups) == 1 and backups[0].startswith("backup-HP000001-")


def test_good_release_marked_good_then_broken_one_rolled_back(terminal, bundles):
    base, config = terminal
    root = str(base / "root")
    data = str(base / "data")
    rr = updater.ReleaseRoot(root)
    assert apply(config, bundles["0.2.0"]).returncode == 0
    proc = launch(root, config)
    try:
        assert wait(lambda: rr.marks().get("good") == "a", 90), (rr.log_lines(), proc.poll())
        assert rr.marks()["min_version"] == "0.2.0"
        # the terminal that runs is the release's: its working folder is releases/a
        assert os.path.realpath("/proc/%d/cwd" % proc.pid) == os.path.realpath(rr.slot_dir("a"))
    finally:
        stop(proc)
    assert apply(config, bundles["broken"]).returncode == 0
    assert rr.current_slot() == "b"
    # systemd's Restart=: the launcher again after each exit, until a terminal stays up
    for _ in range(4):
        proc = launch(root, config)
        if not wait(lambda: proc.poll() is not None, 8) and run_lock_held(data):
            break                           # it stays up
    try:
        assert rr.current_slot() == "a", rr.log_lines()
        marks = rr.marks()
        assert marks["pending"] is None and marks["good"] == "a"
        assert "0.4.0" in marks["bad"]["b"]
        assert wait(lambda: run_lock_held(data), 30)
        assert os.path.realpath("/proc/%d/cwd" % proc.pid) == os.path.realpath(rr.slot_dir("a"))
        events = [e["event"] for e in rr.log_lines()]
        assert "rolled_back" in events
        # the old release audited every step at its start
        assert wait(lambda: "update_rolled_back" in audit_events(data), 20)
        audited = audit_events(data)
        for event in ("update_apply_verify", "update_apply_backup", "update_apply_switch",
                      "update_marked_good", "update_trial_boot"):
            assert event in audited
    finally:
        stop(proc)
