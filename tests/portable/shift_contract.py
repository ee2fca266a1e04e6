"""What every journal (MemoryJournal, drivers.journal_sqlite.SQLiteJournal) does with
shifts, cash moves and Z reports: each check_* takes make() -> a new, empty journal.

Portable: tests/portable/test_shifts_memory.py runs these under MicroPython too,
tests/test_shifts.py against SQLite. Plain asserts, no pytest.
"""
from firmware.payments import shifts
from firmware.payments.journal import ShiftError, record

OPEN = "2026-03-01T08:30:00Z"
CLOSE = "2026-03-01T16:45:00Z"


def raises(cls, fn, *args, **kwargs):
    """fn(*args) must raise cls; returns the exception."""
    try:
        fn(*args, **kwargs)
    except cls as exc:
        return exc
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), cls.__name__))


def cash(j, kind, amount, operator, state="approved", batch=1, **extra):
    return j.add(record(kind=kind, method="cash", amount=amount, state=state,
                        operator=operator, currency="USD", batch=batch, **extra))


def check_open_and_read(make):
    j = make()
    assert j.shift_current("1") is None and j.shifts() == []
    cash(j, "sale", 999, "1")                       # before the shift: never its own
    sid = j.shift_open("1", 10000, OPEN, 480, 1, "USD")
    row = j.shift_current("1")
    assert row["id"] == sid and row["state"] == "open" and row["float"] == 10000
    assert row["operator"] == "1" and row["opened_utc"] == OPEN and row["tz_min"] == 480
    assert row["batch"] == 1 and row["currency"] == "USD"
    assert row["txn_after"] == 1 and row["txn_until"] == 0
    assert row["closed_utc"] == "" and row["counted"] == 0 and row["denominations"] == ""
    assert j.shift_get(sid) == row and j.shifts() == [row] and j.shifts(batch=2) == []
    assert j.shift_current("2") is None
    e = raises(ShiftError, j.shift_open, "1", 500, OPEN, 480, 1)
    assert e.what == "open"                         # one open shift an operator
    assert raises(ShiftError, j.shift_open, "2", -1, OPEN, 0, 1).what == "amount"
    assert len(j.shifts()) == 1
    other = j.shift_open("2", 0, OPEN, 480, 1, "USD")   # a float of nothing is a float
    assert [s["id"] for s in j.shifts(batch=1)] == [sid, other]
    assert [s["id"] for s in j.shifts(operator="2")] == [other]
    assert j.shift_get(99) is None


def check_moves(make):
    j = make()
    sid = j.shift_open("1", 10000, OPEN, 0, 3, "USD")
    a = j.cash_move(sid, "pay_in", 2000, "change", "1", "9", OPEN)
    b = j.cash_move(sid, "pay_out", 750, "supplier", "1", "9", CLOSE)
    moves = j.cash_moves(shift_id=sid)
    assert [m["id"] for m in moves] == [a, b]
    assert moves[1] == {"id": b, "shift_id": sid, "kind": "pay_out", "amount": 750,
                        "reason": "supplier", "operator": "1", "supervisor": "9", "utc": CLOSE}
    assert j.cash_moves(batch=3) == moves and j.cash_moves(batch=1) == []
    assert j.cash_moves() == moves
    assert raises(ShiftError, j.cash_move, sid, "refund", 5, "x", "1", "9", OPEN).what == "kind"
    assert raises(ShiftError, j.cash_move, sid, "pay_in", 0, "x", "1", "9", OPEN).what == "amount"
    raises(KeyError, j.cash_move, 99, "pay_in", 5, "x", "1", "9", OPEN)
    j.shift_close(sid, 11250, 11250, "", CLOSE)
    assert raises(ShiftError, j.cash_move, sid, "pay_in", 5, "x", "1", "9", OPEN).what == "closed"
    assert len(j.cash_moves()) == 2


def check_close(make):
    j = make()
    sid = j.shift_open("1", 10000, OPEN, 480, 1, "USD")
    cash(j, "sale", 1250, "1")
    row = j.shift_close(sid, 11000, 11250, "[[10000,1],[1000,1]]", CLOSE)
    assert row["state"] == "closed" and row["closed_utc"] == CLOSE
    assert row["counted"] == 11000 and row["expected"] == 11250 and row["difference"] == -250
    assert row["denominations"] == "[[10000,1],[1000,1]]"
    assert row["txn_after"] == 0 and row["txn_until"] == 1
    assert j.shift_get(sid) == row and j.shift_current("1") is None
    assert raises(ShiftError, j.shift_close, sid, 1, 1, "", CLOSE).what == "closed"
    raises(KeyError, j.shift_close, 99, 1, 1, "", CLOSE)
    again = j.shift_open("1", 5000, CLOSE, 480, 1, "USD")     # the next shift
    assert j.shift_current("1")["id"] == again
    assert [s["id"] for s in j.shifts(state="closed")] == [sid]


def check_figures(make):
    """expected = float + cash sales (voided later too) - cash refunds - cash voids
    + pay ins - pay outs, of the shift's operator while it was open."""
    j = make()
    cash(j, "sale", 111, "1")                               # before: not the shift's
    sid = j.shift_open("1", 10000, OPEN, 0, 1, "USD")
    s1 = cash(j, "sale", 1250, "1")
    cash(j, "sale", 400, "2")                               # another operator's drawer
    j.add(record(kind="sale", method="card", amount=5000, state="approved", operator="1"))
    sold = cash(j, "sale", 300, "1")
    j.update(sold, state="voided")
    cash(j, "void", 300, "1", original_id=sold)
    cash(j, "refund", 500, "1", original_id=s1)
    cash(j, "sale", 77, "1", state="failed")                # never taken
    j.cash_move(sid, "pay_in", 2000, "change", "1", "9", OPEN)
    j.cash_move(sid, "pay_out", 700, "supplier", "1", "9", OPEN)
    f = shifts.figures(j, j.shift_get(sid))
    assert (f["float"], f["sales"], f["sales_n"]) == (10000, 1550, 2)
    assert (f["refunds"], f["refunds_n"], f["voids"], f["voids_n"]) == (500, 1, 300, 1)
    assert (f["pay_in"], f["pay_in_n"], f["pay_out"], f["pay_out_n"]) == (2000, 1, 700, 1)
    assert f["cash_in"] == 3550 and f["cash_out"] == 1500
    assert f["expected"] == 10000 + 1550 - 500 - 300 + 2000 - 700 == 12050
    row = j.shift_close(sid, 12000, f["expected"], "", CLOSE)
    cash(j, "sale", 999, "1")                               # after the close: not its own
    assert shifts.figures(j, row)["expected"] == 12050 and row["difference"] == -50


def check_z_reports(make):
    j = make()
    assert j.z_reports() == [] and j.last_z() is None
    a = j.save_z(1, OPEN, '{"batch": 1}')
    b = j.save_z(2, CLOSE, '{"batch": 2}')
    assert j.last_z() == {"id": b, "batch": 2, "utc": CLOSE, "doc": '{"batch": 2}'}
    assert [z["id"] for z in j.z_reports()] == [a, b]
    assert [z["doc"] for z in j.z_reports(batch=1)] == ['{"batch": 1}']
