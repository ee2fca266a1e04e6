"""The memory journal answers newest(), find(), latest() and last() by the same
criteria as the SQLite journal (tests/portable/query_contract.py; the SQLite side is
tests/test_journal_query.py), and keeps one Z a batch: on CPython and under MicroPython."""
from firmware.payments.journal import MemoryJournal, matches, record
from tests.portable import query_contract as contract


def test_query_equals_a_filter_of_the_whole_journal():
    contract.check_query(MemoryJournal, 400)


def test_one_z_a_batch():
    contract.check_one_z_a_batch(MemoryJournal)


def test_newest_is_read_as_taken():
    """A record added while a search is under way is not in it (the search began
    before); one updated is read as it stands when the search gets to it."""
    j = MemoryJournal()
    for amount in (100, 200, 300):
        j.add(record(amount=amount, state="approved"))
    found = j.newest(state="approved")
    assert next(found)["id"] == 3
    j.add(record(amount=400, state="approved"))
    j.update(1, state="voided")
    assert [r["id"] for r in found] == [2]
    assert j.last()["id"] == 4 and j.latest(0) == []


def test_a_records_reversal_stan_finds_it():
    rec = record(stan="000007", rev_stan="000008")
    assert matches(rec, stan="000007") and matches(rec, stan="000008")
    assert not matches(rec, stan="000009") and not matches(rec, stan="")
    assert matches(record(), stan="") and matches(record(), last4="")
