"""`handpos journal export` (issue 14 item 5): one local day of the journal as CSV or
JSON for the back office, card numbers masked, one row per transaction with its signed
amount; the rows the Z's net counts (in_net = 1) add up to the Z report's net to the
cent. Read-only: it runs beside a running terminal. A record whose MAC fails is named
on stderr and the exit status is 1; bad input is one line and exit 2.

The data folders are made by a harness session (tests/conftest.py); the command runs on
them as `handpos ... --data DIR` does (the simulator's board: its key root is a file
beside the folder), under a configuration whose [mfa] asks no code for an export:
the code the product's [mfa] asks is tests/test_cli_mfa.py's.
"""
import csv
import io
import json
import os
import re
import sqlite3
import subprocess
import sys

import pytest

from firmware.payments.journal import record
from firmware.reports.totals import summarize
from tools.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAY = "2026-06-30"
CST = 480                   # UTC+8
EST = -300                  # UTC-5


NO_MFA = []        # the configuration file of the test running


@pytest.fixture(autouse=True)
def _keep_umask(monkeypatch, tmp_path):
    """The command sets a private umask for its files (as the other tools do): put the
    test process's back. And a configuration without [mfa] "export" (the simulator's
    board, the folder from --data)."""
    monkeypatch.delenv("HANDPOS_CONFIG", raising=False)
    cfg = tmp_path / "no-mfa.toml"
    cfg.write_text("[mfa]\nactions = []\n")
    NO_MFA[:] = ["--config", str(cfg)]
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def _export(data, *args, day=DAY):
    return main(["journal", "export", "--day", day, "--data", str(data), "--board", "sim"]
                + NO_MFA + list(args))


def _pans(text):
    """Runs of 13-19 digits (not part of a longer number) that pass the Luhn check: a
    card number in clear."""
    found = []
    for run in re.findall(r"(?<!\d)\d{13,19}(?!\d)", text):
        total = 0
        for i, ch in enumerate(reversed(run)):
            d = int(ch)
            if i % 2:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        if total % 10 == 0:
            found.append(run)
    return found


def _add(journal, **values):
    base = dict(kind="sale", method="cash", state="approved", currency="USD", operator="1",
                batch=2, tz_min=CST)
    base.update(values)
    return journal.add(record(**base))


def _day_of_records(journal):
    """A mixed day, 2026-06-30 in UTC+8 (batch 2), with the records just before and after
    it (batches 1 and 3); {name: id}."""
    while journal.counter("batch") < 3:         # the terminal is in its third batch
        journal.next_counter("batch", 999999)
    ids = {}
    ids["before"] = _add(journal, amount=999, batch=1, utc="2026-06-29T15:59:59Z")  # 23:59:59 on the 29th
    ids["first"] = _add(journal, amount=1250, utc="2026-06-29T16:00:00Z")           # 00:00:00 on the 30th
    ids["card"] = _add(journal, method="card", amount=2000, utc="2026-06-30T02:00:00Z",
                       pan_masked="411111******1111", last4="1111", card_label="VISA",
                       entry="chip", stan="000101", rrn="618102000101", auth_code="A1B2C3")
    ids["refund"] = _add(journal, kind="refund", method="card", amount=500,
                         utc="2026-06-30T03:00:00Z", original_id=ids["card"],
                         pan_masked="411111******1111", last4="1111", card_label="VISA",
                         entry="chip", stan="000102")
    ids["voided"] = _add(journal, amount=700, state="voided", utc="2026-06-30T04:00:00Z")
    ids["void"] = _add(journal, kind="void", amount=700, utc="2026-06-30T04:05:00Z",
                       original_id=ids["voided"], operator="2")
    ids["declined"] = _add(journal, method="card", amount=405, state="declined", rc="05",
                           utc="2026-06-30T05:00:00Z", pan_masked="541333******4111",
                           last4="4111", card_label="MASTERCARD", entry="swipe")
    ids["reversed"] = _add(journal, method="card", amount=300, state="reversed",
                           utc="2026-06-30T06:00:00Z", reason="reason_no_reply")
    ids["offline"] = _add(journal, method="card", amount=150, offline=1, upload="pending",
                          utc="2026-06-30T07:00:00Z", pan_masked="476173******0119",
                          last4="0119", card_label="VISA", entry="tap")
    ids["qr"] = _add(journal, method="qr", amount=880, utc="2026-06-30T08:00:00Z",
                     pan_masked="1345**********6789", last4="6789", card_label="WeChat Pay",
                     entry="qr", rrn="4200001234202606300123456789")
    # the last second of the 30th in UTC-5 (the next day in UTC), then the next day
    ids["west"] = _add(journal, amount=333, tz_min=EST, utc="2026-07-01T04:59:59Z")
    ids["after"] = _add(journal, amount=111, batch=3, utc="2026-06-30T16:00:00Z")   # 00:00 on 1 July
    return ids


@pytest.fixture
def day(harness):
    """A terminal's data folder holding the mixed day (the terminal still running)."""
    h = harness()
    h.first_supervisor()
    h.login()
    h.ids = _day_of_records(h.term.payments.journal)
    h.data = h.term.config["storage"]["data_dir"]
    return h


def _csv_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_csv_of_a_day_adds_up_to_its_z(day, tmp_path, capsys):
    out = tmp_path / "day.csv"
    assert _export(day.data, "--output", str(out)) == 0
    err = capsys.readouterr().err
    assert err.strip() == "handpos journal: 10 transactions of 2026-06-30 written to %s" % out
    rows = _csv_rows(out)
    ids = day.ids
    # the local day: 00:00:00 to 23:59:59 on the terminal's clock, in each record's offset
    assert [int(r["id"]) for r in rows] == sorted(v for k, v in ids.items()
                                                  if k not in ("before", "after"))
    first = rows[0]
    assert first["local_time"] == "2026-06-30T00:00:00+08:00"
    assert rows[-1]["local_time"] == "2026-06-30T23:59:59-05:00"
    by_id = {int(r["id"]): r for r in rows}
    refund = by_id[ids["refund"]]
    assert (refund["amount"], refund["amount_minor"], refund["in_net"]) == ("-5.00", "-500", "1")
    assert by_id[ids["void"]]["amount"] == "-7.00" and by_id[ids["void"]]["in_net"] == "0"
    assert by_id[ids["voided"]]["state"] == "voided" and by_id[ids["voided"]]["in_net"] == "0"
    card = by_id[ids["card"]]
    assert (card["brand"], card["entry"], card["pan_masked"], card["stan"], card["rrn"],
            card["auth_code"], card["currency"], card["batch"]) == (
        "VISA", "chip", "411111******1111", "000101", "618102000101", "A1B2C3", "USD", "2")
    assert by_id[ids["offline"]]["offline"] == "1" and by_id[ids["offline"]]["in_net"] == "1"
    assert by_id[ids["qr"]]["brand"] == "WeChat Pay"

    # the Z report of the day's batch (firmware/reports/totals.py), to the cent
    z = summarize(day.term.payments.journal.find(batch=2))
    net = sum(int(r["amount_minor"]) for r in rows if r["in_net"] == "1")
    assert net == z["total"]["net"] == 1250 + 2000 - 500 + 150 + 880 + 333
    cents = sum(int(r["amount"].replace(".", "")) for r in rows if r["in_net"] == "1")
    assert cents == net                              # the decimal column says the same
    voids = -sum(int(r["amount_minor"]) for r in rows
                 if r["kind"] == "void" and r["state"] == "approved")
    assert voids == z["total"]["void"] == 700


def test_json_is_the_same_rows(day, tmp_path):
    out_csv, out_json = tmp_path / "day.csv", tmp_path / "day.json"
    assert _export(day.data, "--output", str(out_csv)) == 0
    assert _export(day.data, "--format", "json", "--output", str(out_json)) == 0
    rows = json.loads(out_json.read_text(encoding="utf-8"))
    assert isinstance(rows, list) and len(rows) == 10
    assert all(isinstance(r["amount_minor"], int) and isinstance(r["id"], int) for r in rows)
    as_text = [{k: str(v) for k, v in r.items()} for r in rows]
    assert as_text == _csv_rows(out_csv)
    assert sum(r["amount_minor"] for r in rows if r["in_net"]) == 4113


def test_only_masked_numbers_leave_the_terminal(online, tmp_path):
    """A real card sale through the host, and a record some release stored a whole
    number in: the export carries first six and last four at most."""
    h = online()
    sale = h.swipe_sale("1234")
    h.to_idle()
    assert sale["state"] == "approved"
    journal = h.term.payments.journal
    bad = _add(journal, method="card", amount=100, tz_min=sale["tz_min"], utc=sale["utc"],
               batch=1, pan_masked="4111111111111111", last4="1111")
    y, m, d = h.term.system.local_time()[:3]
    today = "%04d-%02d-%02d" % (y, m, d)
    data = h.term.config["storage"]["data_dir"]
    for fmt in ("csv", "json"):
        out = tmp_path / ("today." + fmt)
        assert _export(data, "--format", fmt, "--output", str(out), day=today) == 0
        text = out.read_text(encoding="utf-8")
        assert "4111111111111111" not in text and not _pans(text), text
        assert "411111******1111" in text and str(sale["id"]) in text
    rows = _csv_rows(tmp_path / "today.csv")
    assert [r["pan_masked"] for r in rows if int(r["id"]) == bad] == ["411111******1111"]
    assert [r["pan_masked"] for r in rows if int(r["id"]) == sale["id"]] == [sale["pan_masked"]]


def test_the_scanner_finds_a_card_number():
    assert _pans("x,4111111111111111,y") == ["4111111111111111"]
    assert not _pans("411111******1111 4111111111111112 4200001234202606300123456789")


def test_runs_while_the_terminal_runs_and_writes_nothing(day, tmp_path):
    """A subprocess beside the running terminal (its sim.lock held): standard output,
    the journal untouched, the terminal writing on afterwards."""
    path = os.path.join(day.data, "journal.db")
    before = _dump(path)
    env = dict(os.environ)
    env.pop("HANDPOS_CONFIG", None)
    r = subprocess.run([sys.executable, "-m", "tools", "journal", "export", "--day", DAY,
                        "--format", "csv", "--data", day.data, "--board", "sim"] + NO_MFA,
                       cwd=ROOT, capture_output=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout.decode("utf-8"))))
    assert len(rows) == 10
    assert r.stderr.decode().count("\n") == 1 and b"10 transactions" in r.stderr
    assert _dump(path) == before
    # the terminal goes on: a cash sale is recorded as ever
    day.press("3", "0", "0", "ENTER", "2", "ENTER", "ENTER", "CANCEL")
    day.run(3000, until=lambda: day.term.payments.journal.last()["amount"] == 300)
    assert day.term.payments.journal.last()["amount"] == 300


def _dump(path):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return db.execute("SELECT * FROM txns ORDER BY id").fetchall()
    finally:
        db.close()


def test_a_day_without_transactions_is_an_empty_file(day, tmp_path, capsys):
    out = tmp_path / "none.csv"
    assert _export(day.data, "--output", str(out), day="2026-01-01") == 0
    assert out.read_text(encoding="utf-8").strip() == (
        "id,local_time,kind,method,brand,entry,pan_masked,amount,amount_minor,currency,"
        "state,in_net,stan,rrn,auth_code,operator,batch,offline,upload,original_id")
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["handpos journal: no transactions on 2026-01-01 (local time): %s holds "
                   "the header alone" % out]
    out = tmp_path / "none.json"
    assert _export(day.data, "--format", "json", "--output", str(out), day="2026-01-01") == 0
    assert json.loads(out.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("bad", ["2026-6-30", "2026-02-30", "yesterday", "20260630"])
def test_a_malformed_day_is_refused(day, tmp_path, capsys, bad):
    out = tmp_path / "x.csv"
    assert _export(day.data, "--output", str(out), day=bad) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("handpos journal: refused: --day") and "nothing was written" in line
    assert not out.exists()


def test_bad_places_are_refused_in_one_line(day, tmp_path, capsys):
    # no such data folder
    assert _export(tmp_path / "nowhere", "--output", str(tmp_path / "x.csv")) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "no data directory" in line and "nowhere" in line
    # a folder with no journal in it
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    assert _export(empty, "--output", str(tmp_path / "x.csv")) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "no journal in" in line
    # an output that cannot be written: a missing folder, a folder, a read-only folder
    # (root writes into that anyway: then a path under a file stands in for it)
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    unwritable = locked / "x.csv" if os.geteuid() != 0 else tmp_path / "a-file" / "x.csv"
    (tmp_path / "a-file").write_text("")
    try:
        for target in (tmp_path / "missing" / "x.csv", tmp_path, unwritable):
            assert _export(day.data, "--output", str(target)) == 2
            [line] = capsys.readouterr().err.strip().splitlines()
            assert line.startswith("handpos journal: refused: cannot write %s" % target), line
        assert os.listdir(locked) == []
    finally:
        os.chmod(locked, 0o700)
    assert not (tmp_path / "x.csv").exists()


def test_a_record_whose_mac_fails_is_named_not_exported(day, tmp_path, capsys):
    ids = day.ids
    path = os.path.join(day.data, "journal.db")
    db = sqlite3.connect(path)
    try:
        mac = bytearray(db.execute("SELECT mac FROM txns WHERE id=?", (ids["card"],)).fetchone()[0])
        mac[0] ^= 0x01                                  # one flipped bit of the MAC
        db.execute("UPDATE txns SET mac=? WHERE id=?", (bytes(mac), ids["card"]))
        # and a stamp moved to another day: its number still places it in this one
        db.execute("UPDATE txns SET utc='2026-06-20T10:00:00Z' WHERE id=?", (ids["qr"],))
        db.commit()
    finally:
        db.close()
    out = tmp_path / "day.csv"
    assert _export(day.data, "--output", str(out)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3, err
    assert err[0].startswith("handpos journal: record #%d (stamped 2026-06-30T02:00:00Z) failed "
                             "its integrity check: left out" % ids["card"]), err
    assert err[1].startswith("handpos journal: record #%d (stamped 2026-06-20T10:00:00Z)"
                             % ids["qr"]), err
    assert err[2].endswith("; 2 damaged left out")
    exported = [int(r["id"]) for r in _csv_rows(out)]
    assert ids["card"] not in exported and ids["qr"] not in exported and len(exported) == 8


def test_keys_that_do_not_open_are_named(day, tmp_path, capsys):
    """Another board's key root (the field board's TPM) does not open the simulator's
    keys: one line saying so, nothing written."""
    assert main(["journal", "export", "--day", DAY, "--data", day.data, "--board", "pizero2w",
                 *NO_MFA, "--output", str(tmp_path / "x.csv")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "keys do not open" in line and line.endswith("nothing was written")
    assert not (tmp_path / "x.csv").exists()
