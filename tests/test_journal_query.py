"""The SQLite journal's searches, its read-only journal, one Z a batch and its MAC's
cheaper making (issue 14 follow-ups; drivers/journal_sqlite.py):

  newest()/find()/latest() by amount, currency, last4, stan, stamps, kinds and the rest
  equal a plain filter over the whole journal (tests/portable/query_contract.py, the
  memory journal's too), go through the indexes, and verify what they return;
  open_readonly() writes nothing (not a byte of journal.db), refuses every write, and
  reports a flipped byte without returning its row;
  save_z of a second Z of a batch raises ZExists (a unique index says so too);
  _Sealer's MAC is record_mac's, byte for byte.
"""
import hashlib
import os
import sqlite3

import pytest

from drivers.journal_sqlite import (SCHEMA_VERSION, JournalError, JournalReadOnly,
                                    SQLiteJournal, _DEFAULTS, _Sealer)
from drivers.sqlite_durable import mac_key, record_mac
from firmware.payments.journal import ZExists, record
from tests.portable import query_contract as contract

KEY = mac_key(b"k" * 32, "journal")


def _quick(path, key=KEY):
    """A journal that takes a few thousand records in a test's time (synchronous off
    while they go in: a test's speed, not the terminal's way)."""
    j = SQLiteJournal(str(path), key)
    j.db.execute("PRAGMA synchronous=OFF")
    return j


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """3,000 records (query_contract.fill), checked once against the plain filter."""
    path = tmp_path_factory.mktemp("query") / "journal.db"
    j = contract.check_query(lambda: _quick(path), 3000)
    yield j
    j.close()


def test_the_query_equals_a_filter_of_the_whole_journal(filled):
    assert len(filled.find()) == 3000


def _plans(j, **criteria):
    """SQLite's plan of each query newest(**criteria) makes for its first page."""
    sqls = []
    j.db.set_trace_callback(sqls.append)
    try:
        next(j.newest(**criteria), None)
    finally:
        j.db.set_trace_callback(None)
    return [" | ".join(r[-1] for r in j.db.execute("EXPLAIN QUERY PLAN " + sql))
            for sql in sqls if sql.startswith("SELECT")]


@pytest.mark.parametrize("criteria, index", [
    ({"amount": 999, "currency": "USD"}, "txns_amount"),
    ({"last4": "4242"}, "txns_last4"),
    ({"stan": "000042"}, "txns_stan"),
    ({"stan": "000042"}, "txns_rev_stan"),
    ({"utc_from": "2026-06-03T10:00:00Z", "utc_to": "2026-06-05T14:00:00Z"}, "txns_utc"),
    ({"batch": 2}, "txns_batch"),
    ({"state": "reversed"}, "txns_state"),
])
def test_each_search_goes_through_its_index(filled, criteria, index):
    [plan] = _plans(filled, **criteria)
    assert "USING INDEX %s " % index in plan or "USING COVERING INDEX %s " % index in plan, plan
    assert "SCAN txns" not in plan, plan


def test_a_search_verifies_the_records_that_match_and_no_others(filled):
    checked = []
    real = filled._checked
    filled._checked = lambda rec, mac: checked.append(rec["id"]) or real(rec, mac)
    try:
        for criteria in ({"amount": 12345}, {"last4": "0119", "kind": "refund"},
                         {"stan": "000123"}):
            del checked[:]
            found = [r["id"] for r in filled.newest(**criteria)]
            assert found and sorted(checked) == sorted(found), criteria
        del checked[:]
        assert len(filled.latest(3, last4="1111")) == 3
        assert len(checked) <= filled.PAGE                # one page read, no more
    finally:
        del filled._checked


def test_an_altered_record_is_never_found_by_a_search(tmp_path):
    j = _quick(tmp_path / "journal.db")
    for amount in (500, 700, 500, 500):
        j.add(record(amount=amount, state="approved", last4="4242", stan="000001"))
    j.db.execute("UPDATE txns SET amount=700 WHERE id=3")     # 5.00 made 7.00 on the card
    assert [r["id"] for r in j.newest(amount=700)] == [2]      # #3 read, failed, left out
    assert [r["id"] for r in j.newest(amount=500)] == [4, 1]   # its index says 7.00 now
    assert [r["id"] for r in j.newest(last4="4242")] == [4, 2, 1]
    assert [r[0] for r in j.damaged()] == [3]
    j.close()


def test_an_older_journal_gets_the_indexes_at_open_and_keeps_its_schema(tmp_path):
    path = str(tmp_path / "journal.db")
    j = SQLiteJournal(path, KEY)
    j.add(record(amount=100, state="approved", last4="1111"))
    j.save_z(1, "2026-06-30T20:00:00Z", "{}")
    j.close()
    db = sqlite3.connect(path)                      # as the release before left it
    for name in ("txns_utc", "txns_amount", "txns_last4", "txns_stan", "txns_rev_stan",
                 "z_reports_one_a_batch"):
        db.execute("DROP INDEX %s" % name)
    db.commit()
    db.close()
    j = SQLiteJournal(path, KEY)
    names = {r[0] for r in j.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"txns_utc", "txns_amount", "txns_last4", "txns_stan", "txns_rev_stan",
            "z_reports_one_a_batch"} <= names
    assert j.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert j.last(last4="1111")["amount"] == 100 and j.damaged() == []
    j.close()


# -- one Z a batch ----------------------------------------------------------------------
def test_one_z_a_batch(tmp_path):
    j = contract.check_one_z_a_batch(lambda: SQLiteJournal(str(tmp_path / "j.db"), KEY))
    with pytest.raises(sqlite3.IntegrityError):     # the database says so too
        j.db.execute("INSERT INTO z_reports (batch, utc, doc) VALUES (4, '', '')")
    j.close()


def test_a_damaged_z_keeps_its_batchs_place(tmp_path):
    j = SQLiteJournal(str(tmp_path / "journal.db"), KEY)
    j.save_z(7, "2026-06-30T20:00:00Z", '{"batch": 7}')
    j.db.execute("UPDATE z_reports SET doc='{\"batch\": 7, \"net\": 1}'")  # on the card
    assert j.z_reports(batch=7) == [] and j.last_z() is None
    with pytest.raises(ZExists):
        j.save_z(7, "2026-06-30T21:00:00Z", '{"batch": 7}')
    assert j.db.execute("SELECT COUNT(*) FROM z_reports").fetchone()[0] == 1
    assert [what for _, _, what in j.damaged()] == ["Z report 1: MAC failed"]
    j.close()


def test_a_journal_with_two_z_of_a_batch_from_before_still_opens(tmp_path):
    path = str(tmp_path / "journal.db")
    j = SQLiteJournal(path, KEY)
    j.db.execute("DROP INDEX z_reports_one_a_batch")
    j.db.execute("BEGIN IMMEDIATE")
    j._insert("z_reports", {"batch": 3, "utc": "a", "doc": "{}"})
    j._insert("z_reports", {"batch": 3, "utc": "b", "doc": "{}"})
    j.db.execute("COMMIT")
    j.close()
    j = SQLiteJournal(path, KEY)                    # kept as they are, the journal opens
    assert [z["utc"] for z in j.z_reports(batch=3)] == ["a", "b"]
    with pytest.raises(ZExists):
        j.save_z(3, "c", "{}")
    assert j.save_z(4, "d", "{}")
    j.close()


# -- the read-only journal ----------------------------------------------------------------
def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _stopped_journal(tmp_path):
    """A stopped terminal's journal (all of it in journal.db): records, a shift, a Z."""
    path = str(tmp_path / "journal.db")
    j = SQLiteJournal(path, KEY)
    j.next_counter("batch", 999999)
    for i in range(20):
        j.add(record(amount=100 + i, state="approved", utc="2026-06-30T%02d:00:00Z" % i,
                     last4="4242" if i % 2 else "",
                     stan="%06d" % j.next_counter("stan", 999999),
                     rrn="RRN-%03d-MARK" % i))
    sid = j.shift_open("1", 5000, "2026-06-30T00:00:00Z", 480, 1, "USD")
    j.cash_move(sid, "pay_in", 300, "change", "1", "9", "2026-06-30T01:00:00Z")
    j.save_z(1, "2026-06-30T22:00:00Z", '{"batch": 1}')
    j.close()
    return path


def test_read_only_reads_as_the_terminal_and_writes_nothing(tmp_path):
    path = _stopped_journal(tmp_path)
    before = _digest(path)
    r = SQLiteJournal.open_readonly(path, KEY)
    assert r.readonly and len(r.find()) == 20 and r.get(5)["amount"] == 104
    assert [x["id"] for x in r.newest(last4="4242", below_id=10)] == [8, 6, 4, 2]
    assert r.counter("batch") == 1 and r.verify_recent() == [] and r.damaged() == []
    assert r.shifts()[0]["float"] == 5000 and r.cash_moves(batch=1)[0]["amount"] == 300
    assert r.z_reports(batch=1)[0]["doc"] == '{"batch": 1}' and r.last_z()["batch"] == 1
    assert r.quick_check() == (True, "ok")
    writes = (lambda: r.add(record(amount=1)), lambda: r.update(1, state="voided"),
              lambda: r.next_counter("stan", 999999), lambda: r.probe(),
              lambda: r.shift_open("2", 0, "", 0, 1), lambda: r.shift_close(1, 0, 0, "", ""),
              lambda: r.cash_move(1, "pay_out", 100, "x", "1", "9", ""),
              lambda: r.save_z(2, "", "{}"))
    for write in writes:
        with pytest.raises(JournalReadOnly):
            write()
    with pytest.raises(sqlite3.OperationalError):   # and SQLite would refuse it anyway
        r.db.execute("DELETE FROM txns")
    r.close()
    assert _digest(path) == before                  # not a byte of journal.db
    j = SQLiteJournal(path, KEY)                    # the terminal opens it as ever
    assert len(j.find()) == 20
    j.close()


@pytest.mark.parametrize("flip", [0x01, 0xC0])     # a text still UTF-8, and one that is not
def test_read_only_reports_a_flipped_byte_and_never_returns_its_record(tmp_path, flip):
    path = _stopped_journal(tmp_path)
    with open(path, "rb") as f:
        data = f.read()
    at = data.find(b"RRN-007-MARK")
    assert at > 0
    with open(path, "r+b") as f:
        f.seek(at + 5)
        f.write(bytes([data[at + 5] ^ flip]))
    before = _digest(path)
    rejected, damaged = [], []
    r = SQLiteJournal.open_readonly(path, KEY, on_rejected=lambda t, rec: rejected.append((t, rec)),
                                    on_damaged=damaged.append)
    assert 8 not in [x["id"] for x in r.find()] and len(r.find()) == 19
    assert r.get(8) is None and r.last(stan="000008") is None
    assert [x["id"] for x in r.latest(3, below_id=10)] == [9, 7, 6]
    assert rejected[0][0] == "txns" and rejected[0][1]["id"] == 8
    assert rejected[0][1]["utc"] == "2026-06-30T07:00:00Z"      # as read: to name it by
    assert rejected[0][1]["rrn"] != "RRN-007-MARK"
    assert damaged == [8] and r.damaged() == [(8, "", "MAC failed")]
    assert r.verify_recent() == [8]
    r.close()
    assert _digest(path) == before                  # flagged nowhere but in memory
    j = SQLiteJournal(path, KEY)                    # the terminal flags it at its own read
    assert j.get(8) is None and [x[0] for x in j.damaged()] == [8]
    j.close()


def test_read_only_beside_a_writer_reads_one_snapshot(tmp_path):
    path = _stopped_journal(tmp_path)
    j = SQLiteJournal(path, KEY)
    r = SQLiteJournal.open_readonly(path, KEY)
    with r.snapshot():
        first = len(r.find())
        j.add(record(amount=5, state="approved"))          # the terminal writes on
        assert len(r.find()) == first == 20
        assert r.last()["id"] == 20
    assert r.last()["id"] == 21                             # the next read sees it
    r.close()
    j.close()


def test_read_only_of_a_release_before_creates_nothing(tmp_path):
    """A schema 2 journal (no shift tables, no icc_data column): read as it stands,
    each missing column at its default, nothing added to the file."""
    path = str(tmp_path / "journal.db")
    j = SQLiteJournal(path, KEY)
    j.add(record(amount=1250, state="approved", last4="1111"))
    j.close()
    db = sqlite3.connect(path)
    for table in ("shifts", "cash_moves", "z_reports", "row_flags"):
        db.execute("DROP TABLE %s" % table)
    db.execute("ALTER TABLE txns DROP COLUMN icc_data")
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    before = _digest(path)
    r = SQLiteJournal.open_readonly(path, KEY)
    assert r.schema == 2
    [rec] = r.find(last4="1111")
    assert rec["amount"] == 1250 and rec["icc_data"] == ""   # and its MAC holds
    assert r.shifts() == [] and r.z_reports() == [] and r.last_z() is None
    assert r.damaged() == [] and r.verify_recent() == []
    r.close()
    assert _digest(path) == before


def test_read_only_refuses_what_it_cannot_verify(tmp_path):
    path = _stopped_journal(tmp_path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=%d" % (SCHEMA_VERSION + 1))
    db.commit()
    db.close()
    with pytest.raises(JournalError) as err:
        SQLiteJournal.open_readonly(path, KEY)
    assert err.value.schema == SCHEMA_VERSION + 1 and "newer handpos" in str(err.value)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=0")             # records from before the MACs
    db.commit()
    db.close()
    with pytest.raises(JournalError) as err:
        SQLiteJournal.open_readonly(path, KEY)
    assert err.value.schema == 0 and "no MAC" in str(err.value)
    with pytest.raises(JournalError) as err:
        SQLiteJournal.open_readonly(str(tmp_path / "none.db"), KEY)
    assert err.value.schema is None and err.value.cause
    assert not os.path.exists(tmp_path / "none.db")


# -- the MAC, made cheaper -------------------------------------------------------------------
ODD = ["", "a\"b\\c", "tab\there\nnew", "\x00\x1f\x7f", "\u00e9\u4e2d\u6587", "\ufffd",
       "\U0001F600", "</script>", "0", "-1"]


def test_the_sealer_makes_record_macs_bytes(tmp_path):
    seal = _Sealer(KEY, "txns", _DEFAULTS)
    cases = [record(), record(amount=-5, tz_min=-300, batch=2 ** 40, stan="000001")]
    for i, text in enumerate(ODD):
        cases.append(record(id=i + 1, rrn=text, reason=text, cart=text * 3, amount=i))
    cases.append(dict(record(), refunded=True))            # bool: json writes true
    cases.append(dict(record(), amount=1.5))               # float
    cases.append(dict(record(), rrn=None, aid=b"\x01\x02"))
    cases.append(dict(record(), amount="12"))              # text in a number's column
    cases.append(dict(record(), extra="x"))                # a field of no table
    short = record()
    del short["cart"]
    cases.append(short)                                    # a field short
    swapped = dict(short, other="x")
    cases.append(swapped)                                  # as many fields, not the same
    for rec in cases:
        assert seal.mac(rec) == record_mac(KEY, "txns", rec, _DEFAULTS), rec
        assert seal.ok(rec, record_mac(KEY, "txns", rec, _DEFAULTS))
    rec = record(amount=5)
    assert not seal.ok(rec, None) and not seal.ok(rec, "text") and not seal.ok(rec, 7)
    assert seal.ok(rec, bytearray(record_mac(KEY, "txns", rec, _DEFAULTS)))
    # and the journal's rows, written and read, are sealed by it as before
    j = _quick(tmp_path / "journal.db")
    for i, text in enumerate(ODD):
        j.update(j.add(record(amount=i, state="approved", reason=text)), rrn=text)
    for row in j.db.execute("SELECT %s FROM txns" % j._select["txns"]).fetchall():
        rec = dict(zip(["id"] + [k for k in _DEFAULTS if k != "id"], row))
        assert row[-1] == record_mac(KEY, "txns", rec, _DEFAULTS)
    assert len(j.find()) == len(ODD) and j.damaged() == []
    j.close()
