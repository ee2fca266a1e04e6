"""Settlement with the host and the Z (issue 14 items 3 and 6), on the whole board.

The terminal in this process (real drivers on stand-in transports), TLS through the
fault proxy to the host simulator (tools/host/hostsim.py), which keeps its own batch
totals: in balance, out of balance with the batch upload (0320s, chip ones with their
final cryptogram, then 960000), the offline queue uploaded first, the refusals with
their words, a host that errs, a link cut mid-upload, a terminal killed mid-upload, a
lost 0510, answers out of order, a Z started twice, the reminder and the automatic
settlement on the virtual clock, and the screens in Chinese.
"""
import calendar
import json
import threading
import time

import pytest

from firmware.payments import settlement as stl
from firmware.payments.journal import record
from tests.conftest import ChipSlot
from tests.test_wire_profile import _chip_sale

TID = "HP000001"
SWIPE_OK = {"entry_modes": ["chip", "tap", "swipe"]}

# pyemv drives cryptography's TripleDES through names cryptography now calls deprecated.
pytestmark = pytest.mark.filterwarnings(
    "ignore::cryptography.utils.CryptographyDeprecationWarning")


# -- journeys ---------------------------------------------------------------------------

def _cash_sale(h, digits):
    h.press(*digits)
    h.press("ENTER", "2", "ENTER")
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "approved" and rec["method"] == "cash", rec
    h.to_idle()
    return rec


def _card_sale(h, digits, state="approved"):
    rec = h.swipe_sale(digits)
    assert rec["state"] == state, (rec, h.text())
    h.to_idle()
    return rec


def _void_latest(h):
    h.press("MENU", "3", *"2580")
    h.press("ENTER", "ENTER", "ENTER")
    h.wait_for("VOIDED", 15000)
    h.to_idle()


def _open_settle(h, pin="2580"):
    """MENU > Reports > 3 and the supervisor's PIN: the screen once it asks to send the
    totals or says why not."""
    h.press("MENU", "5", "3")
    assert h.flow() == ("supervisor", "pin"), h.text()
    h.press(*pin)
    h.press("ENTER")
    h.run(60000, until=lambda: h.flow() in (("settle", "confirm"), ("settle", "result")))
    return h.text()


def _send(h, ms=60000):
    """ENTER on the totals: the result screen."""
    assert h.flow() == ("settle", "confirm"), h.text()
    h.press("ENTER")
    h.run(ms, until=lambda: h.flow() == ("settle", "result"))
    assert h.flow() == ("settle", "result"), h.text()
    return h.text()


def _lines(h):
    return list(h.term.screen.lines)


def _leave(h):
    """From the result through the Reports and home menus to the idle screen."""
    h.press("ENTER")
    for _ in range(3):
        if h.flow() == ("idle", "idle"):
            break
        h.press("CANCEL")
    assert h.flow() == ("idle", "idle"), h.text()


def _z_receipts(h, after=0, ms=8000):
    h.run(ms, until=lambda: any("Z REPORT" in r.text() for r in h.sim.vprinter.receipts[after:]))
    return [r.text() for r in h.sim.vprinter.receipts[after:] if "Z REPORT" in r.text()]


def _host_batches(host):
    return [(s["batch"], s["proc"], s["code"]) for s in host.ledger.settlements(TID)]


def _bookings(host):
    return [(b["stan"], b["amount"], b["kind"], b["status"], b["settled"])
            for b in host.ledger.money_bookings(TID)]


# -- in balance -------------------------------------------------------------------------

def test_in_balance_closes_the_batch_prints_the_z_once_and_moves_on(online):
    h = online()
    pay = h.term.payments
    _cash_sale(h, "500")                        # not the card acquirer's
    a = _card_sale(h, "1200")
    _card_sale(h, "2500")
    _void_latest(h)                             # the 25.00 is voided: not counted
    c = _card_sale(h, "800")
    assert pay.batch() == 1
    text = _open_settle(h)
    assert _lines(h) == ["Card sales 2", "USD 20.00", "Refunds 0", "USD 0.00"], text
    before = len(h.sim.vprinter.receipts)
    text = _send(h)
    assert _lines(h)[:2] == ["In balance", "Batch 1 closed"], text
    assert "Next batch 2" in _lines(h)
    assert _host_batches(h.host) == [("000001", "920000", "00")]
    assert all(b[4] == 1 for b in _bookings(h.host))          # every booking settled
    [z] = _z_receipts(h, before)
    assert "Batch 1" in z and "DUPLICATE" not in z
    assert "Settlement" in z and "In balance" in z, z        # how the host agreed
    assert pay.batch() == 2 and pay.journal.counter("settled") == 1
    assert len(pay.journal.z_reports(batch=1)) == 1
    h.run(8000, until=lambda: "Z printed" in _lines(h))
    assert "Z printed" in _lines(h), _lines(h)
    _leave(h)
    d = _card_sale(h, "300")                    # the next sale: the new batch
    assert d["batch"] == 2 and a["batch"] == c["batch"] == 1
    events = [r[1] for r in h.term.store.audit_log(80)]
    assert events.count("z_report") == 1 and "settle_closed" in events
    assert json.loads(h.term.store.get_setting(stl.STATE_SETTING) or "{}") == {}


# -- helpers of the tests below -------------------------------------------------------

def _pos(online, chip=False, **offline):
    h = online(**offline)
    if chip:
        h.chip = ChipSlot(h, t0=False)
        h.term.payments.chip_reader = h.chip
    return h


def _card_refund(h, digits, card="visa_pin"):
    """A refund of the latest sale to the swiped card."""
    h.press("MENU", "2", *"2580")
    h.press("ENTER", "ENTER", "ENTER")
    h.press(*digits)
    h.press("ENTER")
    h.run(5000, until=lambda: "wipe" in h.text())     # "Swipe the card", or "..., tap or swipe"
    h.sim.swipe(card=card)
    h.run(15000, until=lambda: h.flow() in (("refund", "result"), ("refund", "copy")))
    rec = h.term.payments.journal.last()
    assert rec["kind"] == "refund" and rec["state"] == "approved", (rec, h.text())
    h.to_idle()
    return rec


def _settle(h):
    """A supervisor's settlement on the keys: the result screen's lines."""
    _open_settle(h)
    if h.flow() == ("settle", "confirm"):
        _send(h)
    return _lines(h)


def _idle_lines(h):
    h.term.refresh()
    return list(h.term.screen.lines) if h.flow() == ("idle", "idle") else []


def _closed_once(h, batch, host=None):
    """The terminal closed batch exactly once: its Z stored once, the batch number
    moved on by one; and the host (when given) settled every booking once."""
    pay = h.term.payments
    assert len(pay.journal.z_reports(batch=batch)) == 1
    assert pay.batch() == batch + 1 and pay.journal.counter("settled") == batch
    if host is not None:
        assert all(b["settled"] for b in host.ledger.money_bookings(TID)), _bookings(host)


class UploadWatch:
    """The host's capture hook: counts the 0320s as they arrive; at the nth, calls
    then() (in the host's thread)."""

    def __init__(self, nth=0, then=None):
        self.nth = nth
        self.then = then
        self.seen = []
        self.answers = []
        self.hit = threading.Event()

    def __call__(self, direction, raw):
        mti = raw[:4]
        if direction == "out" and mti == b"0330":
            self.answers.append(raw)
        if direction != "in" or mti != b"0320":
            return
        self.seen.append(raw)
        if len(self.seen) == self.nth:
            if self.then is not None:
                self.then()
            self.hit.set()


def _stan_of(raw):
    from drivers.iso8583_spec import decode
    return decode(raw)["11"]


# -- out of balance: the batch upload ----------------------------------------------------

def test_out_of_balance_uploads_every_card_payment_chip_with_its_cryptogram(online, net):
    h = _pos(online, chip=True, **SWIPE_OK)
    pay = h.term.payments
    sale = _card_sale(h, "2000")
    refund = _card_refund(h, "750")
    chip = _chip_sale(h, "1800", "online_pin")
    lost = _card_sale(h, "1293")                # .93: the host leaves it out of its batch
    _cash_sale(h, "999")
    net.set("reset", existing=True, new=True)
    offline = _card_sale(h, "1500")             # approved offline: its advice queued
    assert offline["offline"] == 1 and pay.queue.pending()
    net.set("pass")
    assert chip["state"] == "approved" and chip["icc_data"]
    before = len(h.sim.vprinter.receipts)
    lines = _settle(h)
    assert lines[:2] == ["Closed on upload", "Batch 1 closed"], lines
    [z] = _z_receipts(h, before)
    assert "After upload" in z, z                               # the Z says how it closed
    assert not pay.queue.pending()
    host = h.host
    # the advice reached the host before the totals did
    ex = host.ledger.exchanges(TID)
    first_0500 = min(x["id"] for x in ex if x["mti"] == "0500")
    assert [x["id"] for x in ex if x["mti"][:3] == "022"][0] < first_0500
    settles = host.ledger.settlements(TID)
    assert [(s["proc"], s["code"]) for s in settles] == [("920000", "95"), ("960000", "00")]
    assert json.loads(settles[0]["terminal"]) == [4, 6593, 1, 750]
    assert json.loads(settles[0]["host"]) == [3, 5300, 1, 750]        # the .93 left out
    uploads = [x for x in ex if x["mti"] == "0320"]
    named = sorted(x["request"]["60"][4:10] for x in uploads)
    assert named == sorted(r["stan"] for r in (sale, refund, chip, lost, offline))
    assert all(x["response"]["39"] == "00" for x in uploads)
    by_stan = {x["request"]["60"][4:10]: x for x in uploads}
    assert by_stan[offline["stan"]]["request"]["60"][:4] == "0220"
    assert by_stan[refund["stan"]]["request"]["3"] == "200000"
    assert by_stan[lost["stan"]]["note"].startswith("uploaded transaction found")
    # the chip sale's upload carries the card's final cryptogram (a TC), as kept
    from tools.cards import emv_issuer
    tags = emv_issuer.normalise_tags(bytes.fromhex(chip["icc_data"]))
    assert tags["9F27"] == bytes([0x40])
    assert "TC " + tags["9F26"].hex().upper() in by_stan[chip["stan"]]["note"]
    assert "55" not in by_stan[sale["stan"]]["request"]
    # nothing booked twice: the host had all five, booked again none
    assert host.ledger.count(TID, mti="0320") == 0
    assert len(host.ledger.money_bookings(TID)) == 5
    _closed_once(h, 1, host)
    assert host.ledger.approved_total(TID) == 6593 - 750


def test_a_sale_and_a_refund_in_the_new_batch_settle_alone(online):
    h = _pos(online, **SWIPE_OK)
    _card_sale(h, "1000")
    assert _settle(h)[0] == "In balance"
    _leave(h)
    _card_sale(h, "400")
    _card_refund(h, "100")
    assert _settle(h)[:2] == ["In balance", "Batch 2 closed"]
    settles = h.host.ledger.settlements(TID)
    assert [(s["batch"], json.loads(s["terminal"])) for s in settles] == [
        ("000001", [1, 1000, 0, 0]), ("000002", [1, 400, 1, 100])]
    _closed_once(h, 2, h.host)


# -- refusals: nothing goes to the host ----------------------------------------------------

def test_the_offline_queue_goes_first_and_a_host_down_refuses_with_words(online, net):
    h = _pos(online, **SWIPE_OK)
    pay = h.term.payments
    net.set("reset", existing=True, new=True)
    offline = _card_sale(h, "1500")
    assert offline["offline"] == 1
    _open_settle(h)
    assert h.flow() == ("settle", "result")
    assert _lines(h) == ["Queue not uploaded", "Host unreachable"], h.text()
    assert h.term.screen.alert == "error"
    assert h.host.ledger.settlements(TID) == []          # no 0500 went
    _leave(h)
    assert pay.batch() == 1 and pay.queue.pending()
    net.set("pass")
    seen = []
    begin = stl.Settlement._upload_queue

    def watch(self):
        seen.append(self.queue_left())
        return begin(self)
    stl.Settlement._upload_queue = watch
    try:
        h.run(100)
        lines = _settle(h)
    finally:
        stl.Settlement._upload_queue = begin
    assert lines[:2] == ["In balance", "Batch 1 closed"], lines
    assert seen in ([1], []), seen
    ex = h.host.ledger.exchanges(TID)
    advice = [x["id"] for x in ex if x["mti"][:3] == "022"]
    assert advice and advice[0] < min(x["id"] for x in ex if x["mti"] == "0500")
    _closed_once(h, 1, h.host)


def test_refused_while_a_payment_is_unfinished_or_the_batch_is_empty(online):
    """Settle is reachable only from MENU > Reports, itself only from the idle screen:
    no sale flow is open under it. A payment still without its outcome (a request in
    flight, an offline approval being recorded) refuses it all the same."""
    h = _pos(online)
    pay = h.term.payments
    _open_settle(h)
    assert _lines(h) == ["Batch is empty", "Nothing to settle"], h.text()
    _leave(h)
    _card_sale(h, "1000")
    stuck = pay.journal.add(record(kind="sale", method="qr", amount=500, state="sending",
                                   currency="USD", utc="2026-01-01T10:00:00Z",
                                   batch=pay.batch()))
    _open_settle(h)
    assert _lines(h) == ["Payment unfinished", "Resolve it first"], h.text()
    _leave(h)
    assert h.host.ledger.settlements(TID) == [] and pay.batch() == 1
    pay.journal.update(stuck, state="failed")
    _open_settle(h)
    assert h.flow() == ("settle", "confirm")
    h.term.logout("idle")                       # left on the totals: nothing was sent
    assert h.term.settlement().phase == stl.IDLE
    h.login()
    assert h.host.ledger.settlements(TID) == []
    assert _settle(h)[0] == "In balance"


# -- faults: the batch stays open, nothing counts twice ---------------------------------------

def test_a_host_error_leaves_the_batch_open_and_a_retry_closes_it_once(online):
    h = _pos(online)
    h.term.config["ui"]["idle_logout_s"] = 3600
    _card_sale(h, "1000")
    _card_sale(h, "2500")
    h.host.fail_settlement("96")
    lines = _settle(h)
    assert lines == ["Host refused: 96", "Batch still open"], lines
    assert h.term.screen.alert == "error"
    _leave(h)
    assert h.term.payments.batch() == 1
    idle = _idle_lines(h)
    assert "! Settle failed" in idle and "Host refused: 96" in idle, idle
    assert _settle(h)[:2] == ["In balance", "Batch 1 closed"]
    _leave(h)
    assert "! Settle failed" not in _idle_lines(h)
    settles = h.host.ledger.settlements(TID)
    assert [(s["batch"], s["code"]) for s in settles] == [("000001", "96"), ("000001", "00")]
    assert len(h.host.ledger.money_bookings(TID)) == 2
    _closed_once(h, 1, h.host)


def test_a_link_dropped_mid_upload_then_a_retry_counts_nothing_twice(online, net):
    h = _pos(online, **SWIPE_OK)
    sales = [_card_sale(h, d) for d in ("1000", "1100", "1200", "1300", "1400", "1500")]
    h.host.disagree(times=2)
    cut = UploadWatch(2, lambda: net.set("reset", existing=True, new=True))
    h.host.capture = cut
    lines = _settle(h)
    assert lines == ["Upload cut off", "Settle again later", "Batch still open"], lines
    assert cut.hit.is_set()
    _leave(h)
    assert h.term.payments.batch() == 1
    assert "! Settle failed" in _idle_lines(h)
    net.set("pass")
    h.host.capture = None
    assert _settle(h)[:2] == ["Closed on upload", "Batch 1 closed"]
    host = h.host
    assert [(s["proc"], s["code"]) for s in host.ledger.settlements(TID)] == [
        ("920000", "95"), ("920000", "95"), ("960000", "00")]
    uploads = [x for x in host.ledger.exchanges(TID) if x["mti"] == "0320"]
    assert len(uploads) > len(sales)                     # some went twice...
    assert host.ledger.count(TID, mti="0320") == 0       # ...and none was booked
    assert len(host.ledger.money_bookings(TID)) == len(sales)
    assert host.ledger.approved_total(TID) == sum(r["amount"] for r in sales)
    _closed_once(h, 1, host)


def test_killed_mid_upload_the_terminal_settles_once_after_the_restart(online, harness, net):
    h = _pos(online, **SWIPE_OK)
    sales = [_card_sale(h, d) for d in ("1000", "1193", "1200", "1300", "1400")]
    host = h.host
    host.disagree(times=2)
    host.delay_answers("0320", 60000, times=stl.WINDOW)  # no 0330 before the power goes
    watch = UploadWatch(stl.WINDOW)                     # as many as go without an answer
    host.capture = watch
    _open_settle(h)
    h.press("ENTER")
    h.run(15000, until=lambda: watch.hit.is_set() and h.term.settlement().phase == stl.UPLOAD)
    assert watch.hit.is_set() and h.term.settlement().phase == stl.UPLOAD
    h.close()                                           # the power goes mid-upload
    host.capture = None

    h = harness(host=("127.0.0.1:%d" % net.port, host.ca_file), synced=True, offline=SWIPE_OK)
    h.login()
    h.run(3000, until=lambda: h.term.link_state == "up")
    pay = h.term.payments
    assert pay.batch() == 1
    assert "! Settle again" in _idle_lines(h)
    lines = _settle(h)
    assert lines[:2] == ["Closed on upload", "Batch 1 closed"], lines
    assert [(s["proc"], s["code"]) for s in host.ledger.settlements(TID)] == [
        ("920000", "95"), ("920000", "95"), ("960000", "00")]
    assert len(host.ledger.money_bookings(TID)) == len(sales)
    assert host.ledger.count(TID, mti="0320") == 0
    assert host.ledger.approved_total(TID) == sum(r["amount"] for r in sales)
    _closed_once(h, 1, host)
    _leave(h)
    assert "! Settle again" not in _idle_lines(h)


def test_a_lost_0510_is_settled_again_in_balance_with_a_sale_made_meanwhile(online):
    h = _pos(online)
    _card_sale(h, "1000")
    host = h.host
    host.delay_answers("0500", 60000)                   # the host closes; its answer is late
    _open_settle(h)
    h.press("ENTER")
    h.run(5000, until=lambda: h.term.settlement().phase == stl.TOTALS)
    h.run(5000, until=lambda: host.ledger.settlements(TID))
    h.advance(6000)                                     # past the response timeout
    h.run(3000, until=lambda: h.flow() == ("settle", "result"))
    assert _lines(h) == ["No host answer", "Settle again later", "Batch still open"], h.text()
    _leave(h)
    assert "! Settle failed" in _idle_lines(h)
    late = _card_sale(h, "700")                          # still batch 1 here
    assert late["batch"] == 1
    assert _settle(h)[:2] == ["In balance", "Batch 1 closed"]
    settles = host.ledger.settlements(TID)
    assert [(s["batch"], s["code"], json.loads(s["terminal"])) for s in settles] == [
        ("000001", "00", [1, 1000, 0, 0]), ("000001", "00", [2, 1700, 0, 0])]
    booked = host.ledger.money_bookings(TID)
    assert len(booked) == 2 and all(b["settled"] for b in booked)
    assert all(host.ledger.find(b["stan"], TID)["batch"] == "000001" for b in booked)
    _closed_once(h, 1, host)
    _leave(h)
    _card_sale(h, "300")                                 # the next batch on its own
    assert _settle(h)[:2] == ["In balance", "Batch 2 closed"]


def test_answers_out_of_order_are_matched_by_stan(online):
    h = _pos(online, **SWIPE_OK)
    for d in ("1000", "1100", "1200", "1300"):
        _card_sale(h, d)
    h.host.disagree()
    h.host.reorder_uploads(4)
    watch = UploadWatch()
    h.host.capture = watch
    assert _settle(h)[:2] == ["Closed on upload", "Batch 1 closed"]
    sent = [_stan_of(r) for r in watch.seen]
    answered = [_stan_of(r) for r in watch.answers]
    assert answered == list(reversed(sent)) and len(sent) == 4
    _closed_once(h, 1, h.host)


def test_a_z_started_twice_closes_the_batch_once(online, harness, net, monkeypatch):
    """The host closes the batch and the terminal stops before its Z (the power goes):
    the restart finishes the close, once; a settlement started while one runs joins
    it; started again after, it finds an empty batch."""
    h = _pos(online)
    _card_sale(h, "1000")
    host = h.host
    stopped = []
    monkeypatch.setattr(stl.Settlement, "_finish",
                        lambda self, batch, resumed=False: stopped.append(batch))
    _open_settle(h)
    h.press("ENTER")
    engine = h.term.settlement()
    assert engine.begin("1") == stl.TOTALS              # a second start joins the first
    h.run(15000, until=lambda: stopped)
    assert stopped == [1] and [s["code"] for s in host.ledger.settlements(TID)] == ["00"]
    pay = h.term.payments
    assert pay.journal.counter("settled") == 1 and pay.batch() == 1
    assert pay.journal.z_reports(batch=1) == []
    h.close()
    monkeypatch.undo()

    h = harness(host=("127.0.0.1:%d" % net.port, host.ca_file), synced=True)
    _closed_once(h, 1, host)                            # the restart finished the close
    before = len(h.sim.vprinter.receipts)
    h.login()
    h.run(2000, until=lambda: h.flow() == ("notice", "show"))
    assert _lines(h) == ["Batch 1 closed", "after a restart", "Z printing..."], h.text()
    [z] = _z_receipts(h, before)                        # its Z, once someone is there
    assert "Batch 1" in z and "DUPLICATE" not in z
    h.press("ENTER")
    _closed_once(h, 1, host)
    _open_settle(h)
    assert _lines(h) == ["Batch is empty", "Nothing to settle"]
    _leave(h)
    assert h.term.settlement().recover() is False       # nothing left to finish
    assert len(h.term.payments.journal.z_reports(batch=1)) == 1
    assert [s["code"] for s in host.ledger.settlements(TID)] == ["00"]
    events = [r[1] for r in h.term.store.audit_log(80)]
    assert events.count("z_report") == 1 and "settle_resumed" in events


# -- without a host ---------------------------------------------------------------------

def test_a_terminal_without_a_host_closes_its_batch_locally(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    _cash_sale(h, "1250")
    before = len(h.sim.vprinter.receipts)
    _open_settle(h)
    assert _lines(h) == ["No host: cash/QR", "Close batch 1?"], h.text()
    lines = _send(h)
    assert _lines(h)[:2] == ["Closed locally", "Batch 1 closed"], lines
    [z] = _z_receipts(h, before)
    assert "12.50" in z and "Local close" in z, z
    _closed_once(h, 1)
    events = [r[1] for r in h.term.store.audit_log(40)]
    assert "settle_local" in events


# -- item 6: the reminder and the automatic settlement, on the virtual clock ------------------

def _virtual_wall_clock(h, hh, mm):
    """From now on the terminal's wall clock (local = UTC) reads today's date at hh:mm
    and moves with the reactor's clock (h.advance)."""
    y, mo, d = time.gmtime()[:3]
    base = calendar.timegm((y, mo, d, hh, mm, 0, 0, 0, 0))
    start = h.reactor.clock()

    def now():
        return tuple(time.gmtime(base + (h.reactor.clock() - start) // 1000)[:6])
    system = h.term.system
    system.local_time = now
    system.utc_time = now
    system.utc_offset_min = lambda: 0
    h.term.config["ui"]["idle_logout_s"] = 86400 * 3
    h.press("UP")                           # the idle screen's timers on the new setting
    return now


def _minutes(h, n):
    """n minutes of the virtual clock, a minute at a time; stops early when the
    automatic settlement has started (its messages then need real time)."""
    for _ in range(n):
        h.advance(60000)
        if h.flow() and h.flow()[0] == "settle":
            return


def test_the_reminder_shows_after_the_hour_and_all_day_for_a_batch_left_open(online):
    h = _pos(online)
    h.term.config["settlement"]["remind_after"] = "18:00"
    now = _virtual_wall_clock(h, 17, 55)
    assert "Settle the batch" not in _idle_lines(h)
    _minutes(h, 6)                                      # 18:01, but nothing to settle
    assert now()[3:5] >= (18, 0)
    assert "Settle the batch" not in _idle_lines(h)
    _card_sale(h, "1000")
    assert "Settle the batch" in _idle_lines(h)
    h.advance(15 * 3600 * 1000)                         # the next morning, 09:01
    assert now()[3] == 9
    h.press("UP")
    assert "Settle the batch" in _idle_lines(h)         # the batch began yesterday
    assert _settle(h)[0] == "In balance"
    _leave(h)
    assert "Settle the batch" not in _idle_lines(h)
    _card_sale(h, "500")                                # today's, before the hour
    assert "Settle the batch" not in _idle_lines(h)
    h.term.config["settlement"]["remind_after"] = ""
    h.advance(10 * 3600 * 1000)
    h.press("UP")
    assert "Settle the batch" not in _idle_lines(h)


def test_the_automatic_settlement_waits_for_an_idle_terminal_and_prints_the_z(online):
    h = _pos(online)
    cfg = h.term.config["settlement"]
    cfg["auto_at"] = "22:00"
    cfg["remind_after"] = "21:00"
    _virtual_wall_clock(h, 21, 50)
    _card_sale(h, "1000")
    _card_sale(h, "2000")
    before = len(h.sim.vprinter.receipts)
    for _ in range(10):                                 # 22:00 comes with a person busy
        h.advance(60000)
        h.press("UP")
    assert h.flow() == ("idle", "idle") and h.term.payments.batch() == 1
    _minutes(h, 2)                                      # nobody for a minute: it settles
    h.run(20000, until=lambda: h.flow() == ("settle", "result"))
    assert h.flow() == ("settle", "result"), h.text()
    assert _lines(h)[:2] == ["In balance", "Batch 1 closed"]
    [z] = _z_receipts(h, before)
    assert "30.00" in z
    h.advance(31000)                                    # the result, then the idle screen
    h.run(1000, until=lambda: h.flow() == ("idle", "idle"))
    assert h.flow() == ("idle", "idle")
    log = h.term.store.audit_log(80)
    started = [r for r in log if r[1] == "settle_started"]
    assert started and started[0][2] == "auto", started
    _closed_once(h, 1, h.host)
    assert "Settle the batch" not in _idle_lines(h)
    _card_sale(h, "300")                                # later that evening: once a day
    _minutes(h, 5)
    assert h.flow() == ("idle", "idle") and h.term.payments.batch() == 2


def test_a_failed_automatic_settlement_leaves_the_reminder_and_says_why(online):
    h = _pos(online)
    cfg = h.term.config["settlement"]
    cfg["auto_at"] = "22:00"
    cfg["remind_after"] = "21:00"
    _virtual_wall_clock(h, 21, 58)
    _card_sale(h, "1000")
    h.host.fail_settlement("96")
    _minutes(h, 3)
    h.run(20000, until=lambda: h.flow() == ("settle", "result"))
    assert _lines(h) == ["Host refused: 96", "Batch still open"], h.text()
    h.advance(31000)
    h.run(1000, until=lambda: h.flow() == ("idle", "idle"))
    idle = _idle_lines(h)
    assert idle[:3] == ["! Settle failed", "Host refused: 96", "Settle the batch"], idle
    assert h.term.payments.batch() == 1
    _minutes(h, 30)                                      # not again today
    assert [s["code"] for s in h.host.ledger.settlements(TID)] == ["96"]


# -- Chinese ------------------------------------------------------------------------------

def test_settlement_screens_in_chinese(online):
    h = _pos(online)
    h.term.set_language("zh")
    h.run(100)
    _open_settle(h)
    assert _lines(h) == ["批次为空", "无需结算"], h.text()
    _leave(h)
    _card_sale(h, "1000")
    _open_settle(h)
    assert _lines(h)[0] == "银行卡消费 1" and h.term.screen.title == "结算与日结", h.text()
    h.host.fail_settlement("96")
    _send(h)
    assert _lines(h) == ["主机拒绝: 96", "批次仍未关闭"], h.text()
    _leave(h)
    assert "! 结算失败" in _idle_lines(h)
    h.host.disagree()
    lines = _settle(h)
    assert lines[:2] == ["上传后已关闭", "批次 1 已关闭"], lines
    h.run(8000, until=lambda: "Z报表已打印" in _lines(h))
    assert _lines(h)[2] == "Z报表已打印" and _lines(h)[3] == "下一批次 2"
