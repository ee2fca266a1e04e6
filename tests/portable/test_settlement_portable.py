"""Settlement's state machine (firmware/payments/settlement.py) and its messages
(firmware/payments/hostmsg.py) on the core alone, a host answering by hand: on CPython
and under MicroPython. tests/test_settlement.py runs it on the whole board."""
from firmware.core import config
from firmware.core.reactor import Reactor
from firmware.core.store import MemoryStore
from firmware.payments import hostmsg
from firmware.payments import settlement as stl
from firmware.payments.journal import MemoryJournal, record
from firmware.payments.service import Payments
from firmware.terminal import Terminal
from tests.portable.core_stubs import FakeClock, FixedSystem, QuietPoller


class Host:
    """Requests kept; the test answers each by hand."""

    def __init__(self):
        self.sent = []          # [msg, callback]

    def request(self, msg, timeout_ms, callback):
        self.sent.append([dict(msg), callback])

    def answer(self, i, rc, **extra):
        msg, callback = self.sent[i]
        reply = {"t": msg["t"][:2] + str(int(msg["t"][2]) + 1) + "0", "11": msg["11"],
                 "39": rc, "41": msg["41"]}
        reply.update(extra)
        callback({"kind": "response", "msg": reply})

    def of(self, mti):
        return [m for m, _ in self.sent if m["t"] == mti]


class Zs:
    def __init__(self):
        self.made = []
        self.settled = []           # how each batch closed, as its Z says

    def __call__(self, batch, print_it=True, settled=None):
        self.made.append((batch, print_it))
        self.settled.append(settled)
        return {"batch": batch, "totals": {}}


def _board(host=True):
    clock = FakeClock()
    reactor = Reactor(clock=clock, poller=QuietPoller())
    system = FixedSystem(local=(2026, 3, 1, 21, 30, 0), utc=(2026, 3, 1, 13, 30, 0),
                         synced=True, battery=None)
    term = Terminal(reactor, config.defaults(), MemoryStore(), system, auth_iterations=20)
    h = Host() if host else None
    term.payments = Payments(term, MemoryJournal(), host=h)
    zs = Zs()
    engine = stl.Settlement(term, zs)
    return term, reactor, h, engine, zs


def _spin(reactor, n=5):
    for _ in range(n):
        reactor.run_once(0)


def _rec(journal, kind="sale", amount=1000, stan="000001", method="card", state="approved",
         **extra):
    rec = record(kind=kind, method=method, amount=amount, state=state, stan=stan,
                 rrn="606013" + stan, auth_code="A1B2C3", utc="2026-03-01T13:05:09Z",
                 tz_min=480, entry="swipe", currency="USD", batch=1)
    rec.update(extra)
    rec["id"] = journal.add(rec)
    return rec


def test_what_counts():
    j = MemoryJournal()
    _rec(j, amount=1000, stan="000001")
    _rec(j, amount=2500, stan="000002", state="voided")
    _rec(j, kind="refund", amount=300, stan="000003")
    _rec(j, amount=700, stan="000004", method="cash")
    _rec(j, amount=900, stan="000005", method="qr")
    _rec(j, amount=1100, stan="000006", state="declined")
    _rec(j, kind="void", amount=2500, stan="000007")
    _rec(j, amount=1500, stan="000008", offline=1, upload="uploaded", auth_code="Y3")
    totals, counted = stl.batch_figures(j.find(batch=1))
    assert totals == (2, 2500, 1, 300)
    assert [r["stan"] for r in counted] == ["000001", "000003", "000008"]


def test_the_messages():
    cfg = config.defaults()
    assert hostmsg.settlement_totals(3, 37035, 1, 1000) == "003000000037035001000000001000"
    assert hostmsg.settlement_totals(1200, 5, 0, 0)[:3] == "999"
    msg = hostmsg.settlement_request(cfg, "000042", "2026-03-01T13:30:00Z",
                                     (2026, 3, 1, 21, 30, 0), 12, (1, 1000, 0, 0))
    assert (msg["t"], msg["3"], msg["60"], msg["7"], msg["12"], msg["13"]) == \
        ("0500", "920000", "000012", "0301133000", "213000", "0301")
    assert hostmsg.settlement_request(cfg, "000043", "2026-03-01T13:30:00Z",
                                      (2026, 3, 1, 21, 30, 0), 12, (1, 1000, 0, 0),
                                      after_upload=True)["3"] == "960000"
    j = MemoryJournal()
    rec = _rec(j, stan="000007", offline=1, auth_code="Y1", entry="chip", icc_data="9F270140")
    up = hostmsg.batch_upload_request(rec, cfg, "000050", "2026-03-02T01:00:00Z")
    assert up["t"] == "0320" and up["11"] == "000050" and up["7"] == "0302010000"
    assert up["60"] == "0220" + "000007" + "0301130509"
    assert (up["12"], up["13"], up["38"], up["55"], up["22"]) == \
        ("210509", "0301", "Y1    ", "9F270140", "051")
    assert "2" not in up and "35" not in up
    # the transaction's own local day, across the ends of days, months and years
    assert hostmsg.record_local("2026-12-31T20:00:00Z", 480) == (2027, 1, 1, 4, 0, 0)
    assert hostmsg.record_local("2024-03-01T01:00:00Z", -300) == (2024, 2, 29, 20, 0, 0)
    assert hostmsg.record_local("2026-03-01T01:00:00Z", -300) == (2026, 2, 28, 20, 0, 0)


def test_in_balance():
    term, reactor, host, engine, zs = _board()
    j = term.payments.journal
    _rec(j, amount=1000, stan="000001")
    _rec(j, kind="refund", amount=250, stan="000002")
    assert engine.begin("1") == stl.READY
    assert engine.totals == (1, 1000, 1, 250)
    engine.confirm()
    [msg] = host.of("0500")
    assert msg["63"] == "001000000001000001000000000250" and msg["60"] == "000001"
    assert engine.phase == stl.TOTALS and engine.state()["phase"] == stl.TOTALS
    host.answer(0, "00")
    assert engine.phase == stl.CLOSED and zs.made == [(1, True)]
    assert zs.settled == ["in_balance"]
    assert term.payments.batch() == 2 and j.counter(stl.SETTLED) == 1
    assert engine.state() == {}
    assert engine.begin("1") == stl.REFUSED and engine.why == "settle_err_empty"


def test_out_of_balance_uploads_in_a_window_answered_in_any_order():
    term, reactor, host, engine, zs = _board()
    j = term.payments.journal
    for i in range(6):
        _rec(j, amount=100 * (i + 1), stan="%06d" % (i + 1))
    engine.begin("1")
    engine.confirm()
    host.answer(0, "95")
    assert engine.phase == stl.UPLOAD
    ups = host.of("0320")
    assert len(ups) == stl.WINDOW
    for i in (4, 2, 1, 3):                      # the host answers as it likes
        host.answer(i, "00")
    ups = host.of("0320")
    assert len(ups) == 6 and engine.uploaded == 4
    assert sorted(m["60"][4:10] for m in ups) == ["%06d" % (i + 1) for i in range(6)]
    host.answer(6, "00")
    host.answer(5, "00")
    [first, closing] = host.of("0500")
    assert closing["3"] == "960000" and closing["63"] == first["63"]
    assert engine.phase == stl.CLOSING
    host.answer(7, "00")
    assert engine.phase == stl.CLOSED and engine.out_of_balance
    assert term.payments.batch() == 2 and zs.made == [(1, True)]
    assert zs.settled == ["uploaded"]


def test_a_refusal_keeps_the_batch_and_late_answers_are_dropped():
    term, reactor, host, engine, zs = _board()
    j = term.payments.journal
    _rec(j, amount=1000)
    engine.begin("1")
    engine.confirm()
    host.answer(0, "96")
    assert engine.phase == stl.FAILED and engine.why == "settle_err_refused"
    assert engine.detail == {"rc": "96"} and term.payments.batch() == 1
    assert engine.state()["phase"] == stl.FAILED and engine.state()["rc"] == "96"
    _spin(reactor)
    # started again; the first try's answer arriving now changes nothing
    engine.begin("1")
    engine.confirm()
    host.answer(0, "00")
    assert engine.phase == stl.TOTALS
    host.answer(1, "00")
    assert engine.phase == stl.CLOSED and term.payments.batch() == 2
    assert zs.made == [(1, True)]


def test_a_close_the_host_made_is_finished_once_after_a_restart():
    term, reactor, host, engine, zs = _board()
    j = term.payments.journal
    _rec(j, amount=1000)
    j.next_counter(stl.SETTLED, stl.BATCH_LIMIT)   # the host's 00 written, then the power went
    assert engine.recover() is True
    assert zs.made == [(1, False)] and engine.z_to_print is not None
    assert zs.settled == [None]         # how the host agreed, this start did not see
    assert term.payments.batch() == 2 and engine.take_z_to_print()["batch"] == 1
    assert engine.take_z_to_print() is None
    assert engine.recover() is False and zs.made == [(1, False)]


def test_unfinished_payments_and_a_terminal_without_a_host():
    term, reactor, host, engine, zs = _board(host=False)
    j = term.payments.journal
    stuck = _rec(j, amount=1000, method="qr", state="sending")
    assert engine.begin("1") == stl.REFUSED and engine.why == "settle_err_open"
    j.update(stuck["id"], state="failed")
    _rec(j, amount=500, method="cash")
    assert engine.begin("1") == stl.READY and engine.local
    engine.confirm()
    assert engine.phase == stl.CLOSED and zs.made == [(1, True)]
    assert zs.settled == ["local"]
    assert term.payments.batch() == 2 and j.counter(stl.SETTLED) == 1


def test_the_reminder_and_the_automatic_time():
    term, reactor, host, engine, zs = _board()
    cfg = term.config["settlement"]
    assert not engine.reminder_due() and not engine.auto_due()
    cfg["remind_after"] = "21:00"
    cfg["auto_at"] = "21:15"
    assert not engine.reminder_due() and not engine.auto_due()   # nothing to settle
    _rec(term.payments.journal, amount=1000)
    assert engine.reminder_due() and engine.auto_due()
    engine.auto_started()
    assert not engine.auto_due()                                 # once a day
    cfg["remind_after"] = "22:00"
    engine._remind = (None, False)
    assert not engine.reminder_due()            # today's batch, before the hour
