"""The ESC/POS printer driver against the virtual printer, over a real pty.

The driver opens the pty slave with pyserial exactly as it opens /dev/ttyS0 on the
device; the virtual printer sits on the master. Both run in one real Reactor, driven
by bounded run_once() loops: no sleeps, no threads.
"""
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.printer import EscPosPrinter, PrinterError, open_serial
from firmware.core.compat import monotonic_ms
from firmware.core.events import DEVICE_LOST, PRINTED, PRINTER
from firmware.core.reactor import Reactor
from firmware.ui.receipt import Receipt
from tools.sim.vprinter import VirtualPrinter, make_pty, render_png

SAMPLES = "/tmp/receipt_samples"


class Rig:
    """A driver and a virtual printer on the two ends of a pty, in one reactor."""

    def __init__(self, attach=True, baudrate=None, **options):
        self.reactor = Reactor()
        self.errors = []
        self.reactor.on_error = self.errors.append
        self.master, self.slave_path = make_pty()
        self.port = open_serial(self.slave_path, 9600)
        self.vp = VirtualPrinter(self.master, baudrate=baudrate)
        if attach:
            self.vp.attach(self.reactor)
        self.events = []
        settings_ = dict(status_interval_ms=50, reply_timeout_ms=300)
        settings_.update(options)
        self.printer = EscPosPrinter(self.port, self.reactor, self.events.append, **settings_)

    def run_until(self, condition, ms=5000):
        deadline = monotonic_ms() + ms
        while not condition():
            if monotonic_ms() > deadline:
                return False
            self.reactor.run_once(20)
        return True

    def run_for(self, ms):
        deadline = monotonic_ms() + ms
        while True:
            left = deadline - monotonic_ms()
            if left <= 0:
                return
            self.reactor.run_once(min(20, left))

    def states(self):
        return [e.get("state") for e in self.events if e.kind == PRINTER]

    def printed(self):
        return [e.get("job") for e in self.events if e.kind == PRINTED]

    def close(self):
        self.printer.close()
        self.port.close()
        self.vp.close()
        self.reactor.close()


@pytest.fixture
def make_rig():
    rigs = []

    def make(**kw):
        rig = Rig(**kw)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        assert rig.errors == [], rig.errors      # no handler raised inside the loop
        rig.close()


@pytest.fixture
def rig(make_rig):
    return make_rig()


def english():
    r = Receipt()
    r.add("CORNER SHOP", align="center", bold=True, size=2)
    r.add("12 Market Street", align="center")
    r.rule()
    r.pair("Coffee x2", "7.00")
    r.pair("Bagel", "3.25")
    r.pair("Cafe creme", "4.10")
    r.rule()
    r.pair("TOTAL", "EUR 14.35", bold=True)
    r.blank()
    r.add("VISA ****1234", align="right")
    r.add("Thank you!", align="center")
    return r


def chinese():
    r = Receipt(lang="zh")
    r.add("街角小店", align="center", bold=True, size=2)
    r.add("市场街12号", align="center")
    r.rule()
    r.pair("咖啡 x2", "7.00")
    r.pair("百吉饼", "3.25")
    r.rule()
    r.pair("合计", "¥10.25", bold=True)
    r.add("卡号 ****1234", align="right")
    r.add("谢谢惠顾！", align="center")
    return r


def numbered(count, prefix="Item"):
    r = Receipt()
    for n in range(count):
        r.pair("%s %03d" % (prefix, n), "%d.%02d" % (n, n % 100))
    return r


def expected(receipt):
    return [(l.text, l.align, l.bold, l.size) for l in receipt.lines]


# -- encoding ----------------------------------------------------------------------

def test_encode_writes_the_escpos_commands(rig):
    r = Receipt()
    r.add("HI", align="center", bold=True, size=2)
    r.add("x", align="right")
    r.kick_drawer = True
    r.feed_after = 4
    data = rig.printer.encode(r)
    assert data == (b"\x1b@" + b"\x1bp\x00\x19\xfa"             # init, drawer pin 2
                    + b"\x1ba\x01\x1bE\x01\x1d!\x11HI\n"      # centre, bold, double
                    + b"\x1ba\x02\x1bE\x00\x1d!\x00x\n"       # right, normal
                    + b"\x1ba\x00\x1bd\x04\x1dVB\x00")        # reset, feed 4, partial cut


def test_encode_chinese_uses_kanji_mode_and_gb18030(rig):
    r = Receipt(lang="zh")
    r.add("合计 12")
    data = rig.printer.encode(r)
    assert b"\x1c&" + "合计 12".encode("gb18030") + b"\n\x1c." in data
    # An English receipt with one Chinese line switches only around that line.
    r = Receipt()
    r.add("Shop").add("小店").add("Bye")
    data = rig.printer.encode(r)
    assert b"Shop\n\x1c&" + "小店".encode("gb18030") + b"\n\x1c.Bye\n" in data


def test_encode_never_lets_text_become_a_command(rig):
    r = Receipt()
    r.add("a\x10\x04\x04b\x1b@")
    assert b"a   b @\n" in rig.printer.encode(r)


# -- printing over the pty -----------------------------------------------------------

def test_english_receipt_arrives_with_exact_lines_and_alignment(rig):
    receipt = english()
    job = rig.printer.print(receipt)
    assert rig.run_until(lambda: rig.vp.receipts)
    paper = rig.vp.receipts[0]
    assert paper.lines == expected(receipt)
    assert paper.text() == receipt.text()
    assert paper.cut == "partial" and paper.feed == 3
    assert rig.printed() == [job]
    assert rig.states() == ["ok"]
    os.makedirs(SAMPLES, exist_ok=True)
    render_png(paper, os.path.join(SAMPLES, "english.png"))


def test_chinese_receipt_arrives_decoded(rig):
    receipt = chinese()
    rig.printer.print(receipt)
    assert rig.run_until(lambda: rig.vp.receipts)
    paper = rig.vp.receipts[0]
    assert paper.lines == expected(receipt)
    assert "谢谢惠顾！" in paper.text()
    assert rig.vp.kanji is False            # Kanji mode left off after the job
    os.makedirs(SAMPLES, exist_ok=True)
    path = os.path.join(SAMPLES, "chinese.png")
    render_png(paper, path)
    from PIL import Image
    image = Image.open(path)
    assert image.width == 384
    assert image.convert("L").getextrema()[0] == 0     # something black on it


def test_drawer_kick(rig):
    with_kick = english()
    with_kick.kick_drawer = True
    rig.printer.print(english())
    rig.printer.print(with_kick)
    assert rig.run_until(lambda: len(rig.vp.receipts) == 2)
    assert [p.drawer_kicked for p in rig.vp.receipts] == [False, True]
    assert [p.lines for p in rig.vp.receipts] == [expected(english())] * 2
    assert rig.vp.drawer_kicks == 1


def test_cut_splits_receipts(rig):
    first = Receipt().add("first")
    first.cut = False
    first.feed_after = 0
    second = Receipt().add("second")
    third = Receipt().add("third")
    for r in (first, second, third):
        rig.printer.print(r)
    assert rig.run_until(lambda: len(rig.vp.receipts) == 2)
    # No cut after the first job: it shares the paper with the second.
    assert [p.text() for p in rig.vp.receipts] == ["first\nsecond", "third"]


def test_printed_once_per_job(rig):
    jobs = [rig.printer.print(numbered(5, "J%d" % n)) for n in range(3)]
    assert rig.printer.busy
    assert rig.run_until(lambda: len(rig.vp.receipts) == 3)
    rig.run_for(100)
    assert rig.printed() == jobs
    assert rig.printer.jobs_done == 3
    assert not rig.printer.busy
    assert [p.lines for p in rig.vp.receipts] == [expected(numbered(5, "J%d" % n))
                                                  for n in range(3)]
    # Idle: no timer left, the loop would sleep in poll.
    assert rig.reactor.next_timeout() == -1


# -- paper, cover, silence ----------------------------------------------------------------

def test_paper_out_before_printing_holds_the_job_until_paper_is_back(rig):
    rig.vp.set_paper(False)
    receipt = numbered(20)
    job = rig.printer.print(receipt)
    assert rig.run_until(lambda: rig.printer.state == "paper_out")
    assert rig.states() == ["paper_out"]
    queries = rig.vp.status_queries
    rig.run_for(300)
    assert rig.vp.data_received == 0          # not a byte of the job went out
    assert rig.printed() == []
    assert rig.vp.status_queries > queries    # it keeps asking while held
    rig.vp.set_paper(True)
    assert rig.run_until(lambda: rig.vp.receipts)
    assert rig.vp.receipts[0].lines == expected(receipt)
    assert rig.printed() == [job]
    assert rig.states() == ["paper_out", "ok"]


def test_paper_out_mid_job_pauses_and_resumes_every_line_once(rig):
    receipt = numbered(60)
    job = rig.printer.print(receipt)
    assert rig.run_until(lambda: rig.vp.data_received >= 300)
    rig.vp.set_paper(False)
    assert rig.run_until(lambda: rig.printer.state == "paper_out")
    assert rig.printed() == []
    sent = rig.vp.data_received
    assert sent < len(rig.printer.encode(receipt))
    rig.run_for(300)
    assert rig.vp.data_received == sent       # the rest of the job is held back
    assert rig.printer.busy
    rig.vp.set_paper(True)
    assert rig.run_until(lambda: rig.vp.receipts)
    assert rig.vp.receipts[0].lines == expected(receipt)
    assert rig.printed() == [job]
    assert rig.states() == ["ok", "paper_out", "ok"]
    assert rig.run_until(lambda: rig.reactor.next_timeout() == -1)


def test_near_end_is_reported_and_printing_goes_on(rig):
    rig.vp.set_near_end(True)
    receipt = numbered(30)
    job = rig.printer.print(receipt)
    assert rig.run_until(lambda: rig.vp.receipts)
    assert rig.vp.receipts[0].lines == expected(receipt)
    assert rig.printed() == [job]
    assert rig.states() == ["paper_near_end"]
    assert rig.events[0].get("detail")


def test_cover_open_holds_the_job(rig):
    rig.vp.set_cover(True)
    receipt = numbered(10)
    rig.printer.print(receipt)
    assert rig.run_until(lambda: rig.printer.state == "cover_open")
    rig.run_for(200)
    assert rig.vp.receipts == [] and rig.printed() == []
    rig.vp.set_cover(False)
    assert rig.run_until(lambda: rig.vp.receipts)
    assert rig.vp.receipts[0].lines == expected(receipt)
    assert rig.states() == ["cover_open", "ok"]


def test_printer_not_answering_is_offline_and_recovers(make_rig):
    rig = make_rig(attach=False)              # nobody reads the master side
    receipt = numbered(10)
    job = rig.printer.print(receipt)
    assert rig.run_until(lambda: rig.printer.state == "offline", ms=3000)
    event = [e for e in rig.events if e.kind == PRINTER][-1]
    assert "check cable and power" in event.get("detail")
    ok, detail = rig.printer.selftest()
    assert not ok and "not answering" in detail
    rig.run_for(200)
    assert rig.printed() == []
    rig.vp.attach(rig.reactor)                # the printer is switched on
    assert rig.run_until(lambda: rig.vp.receipts)
    assert rig.vp.receipts[0].lines == expected(receipt)
    assert rig.printed() == [job]
    assert rig.printer.state == "ok"


def test_query_status_when_idle_reports_without_polling(rig):
    assert rig.run_until(lambda: rig.printer.state == "ok")
    rig.vp.set_paper(False)
    rig.printer.query_status()
    assert rig.run_until(lambda: rig.printer.state == "paper_out")
    assert rig.printer.selftest()[0] is False
    # No job waiting: nothing to resume, so nothing polls the printer.
    assert rig.run_until(lambda: rig.reactor.next_timeout() == -1)


def test_resume_asks_at_once(make_rig):
    rig = make_rig(status_interval_ms=60000)
    rig.vp.set_paper(False)
    job = rig.printer.print(numbered(5))
    assert rig.run_until(lambda: rig.printer.state == "paper_out")
    rig.run_for(100)                          # the job's own first request answered
    rig.vp.set_paper(True)
    rig.run_for(200)
    assert rig.printed() == []                # the next retry is a minute away
    rig.printer.resume()
    assert rig.run_until(lambda: rig.printed() == [job])


def test_cancel_a_held_job(rig):
    rig.vp.set_paper(False)
    held = rig.printer.print(numbered(10, "Held"))
    assert rig.run_until(lambda: rig.printer.state == "paper_out")
    assert rig.printer.cancel_job() is True
    assert rig.printer.cancel_job(held) is False
    receipt = numbered(3, "Next")
    nxt = rig.printer.print(receipt)
    rig.vp.set_paper(True)
    assert rig.run_until(lambda: rig.vp.receipts)
    assert [p.lines for p in rig.vp.receipts] == [expected(receipt)]
    assert rig.printed() == [nxt]


def test_cancel_mid_job_cuts_the_partial_receipt(rig):
    rig.printer.print(numbered(60, "Half"))
    assert rig.run_until(lambda: rig.vp.data_received >= 300)
    rig.vp.set_paper(False)
    assert rig.run_until(lambda: rig.printer.state == "paper_out")
    assert rig.printer.cancel_job() is True
    receipt = numbered(3, "Next")
    rig.printer.print(receipt)
    rig.vp.set_paper(True)
    assert rig.run_until(lambda: len(rig.vp.receipts) == 2)
    partial = rig.vp.receipts[0].lines
    assert 0 < len(partial) < 60 and partial == expected(numbered(60, "Half"))[:len(partial)]
    assert rig.vp.receipts[1].lines == expected(receipt)


def test_lost_port_is_reported(rig):
    assert rig.run_until(lambda: rig.printer.state == "ok")
    rig.vp.close()                            # the USB adapter is pulled
    rig.printer.query_status()
    assert rig.run_until(lambda: any(e.kind == DEVICE_LOST for e in rig.events))
    assert rig.printer.state == "offline"
    assert rig.printer.selftest()[0] is False


def test_open_serial_names_the_tty():
    with pytest.raises(PrinterError) as err:
        open_serial("/dev/ttyNOPRINTER9", 9600)
    assert "/dev/ttyNOPRINTER9" in str(err.value) and "cable" in str(err.value)


def test_selftest_ok(rig):
    assert rig.run_until(lambda: rig.printer.state == "ok")
    ok, detail = rig.printer.selftest()
    assert ok and "ready" in detail


# -- the loop stays live ----------------------------------------------------------------

def _ticking(rig, period_ms=10):
    ticks = []

    def tick():
        ticks.append(monotonic_ms())
        rig.reactor.call_later(period_ms, tick)

    rig.reactor.call_later(period_ms, tick)
    return ticks


def test_large_receipt_never_blocks_the_loop(make_rig):
    # The virtual printer takes bytes at 115200 baud, as a wire would.
    rig = make_rig(baudrate=115200)
    receipt = numbered(200)
    ticks = _ticking(rig)
    start = monotonic_ms()
    job = rig.printer.print(receipt)
    assert rig.run_until(lambda: rig.printed() == [job], ms=10000)
    took = monotonic_ms() - start
    assert took >= 300                        # it really did take wire time
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) >= took // 40 and max(gaps) < 200
    assert rig.run_until(lambda: rig.vp.receipts)
    assert rig.vp.receipts[0].lines == expected(receipt)


def test_full_kernel_buffer_loses_nothing(make_rig):
    # One chunk bigger than the pty can hold: writes come back short or EAGAIN.
    rig = make_rig(baudrate=460800, chunk_size=1 << 20)
    receipt = numbered(700)
    assert len(rig.printer.encode(receipt)) > 20000
    ticks = _ticking(rig)
    job = rig.printer.print(receipt)
    assert rig.run_until(lambda: rig.vp.receipts, ms=10000)
    assert rig.vp.receipts[0].lines == expected(receipt)
    assert rig.printed() == [job]
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 200


# -- the virtual printer on its own -----------------------------------------------------

def test_virtual_printer_answers_status_per_state():
    vp = VirtualPrinter()
    vp.feed(b"\x10\x04\x04\x10\x04\x02")
    assert bytes(vp.replies) == b"\x12\x12"
    vp.set_near_end(True)
    vp.feed(b"\x10\x04\x04")
    vp.set_paper(False)
    vp.feed(b"\x10\x04\x04\x10\x04\x02")
    vp.set_paper(True)
    vp.set_cover(True)
    vp.feed(b"\x10\x04\x02\x10\x04\x01")
    assert bytes(vp.replies[2:]) == bytes((0x1E, 0x7E, 0x32, 0x16, 0x1A))


def test_virtual_printer_realtime_request_split_inside_text():
    vp = VirtualPrinter()
    vp.feed(b"ab\x10")
    vp.feed(b"\x04")
    vp.feed(b"\x04cd\x10x\n")
    assert vp.current.lines == [("abcdx", "left", False, 1)]
    assert bytes(vp.replies) == b"\x12"


def test_virtual_printer_skips_commands_with_their_parameters():
    vp = VirtualPrinter()
    vp.feed(b"\x1b*\x00\x03\x00AB\n"           # 8-dot bit image, 3 columns
            b"\x1dv0\x00\x01\x00\x02\x00X\n"     # raster 1x2 bytes
            b"\x1d(k\x03\x001QZ"                 # QR function, 3 data bytes
            b"\x1b-\x01\x1bM\x00"                # underline, font A
            b"\x1dkA\x03123"                     # barcode, counted
            b"\x1dk\x04ABC\x00"                  # barcode, NUL-ended
            b"\x1bZ"                             # unknown: two bytes
            b"ok\n")
    assert vp.current.lines == [("ok", "left", False, 1)]


def test_virtual_printer_wraps_and_buffers_while_out_of_paper():
    vp = VirtualPrinter()
    vp.feed(b"x" * 40 + b"\n")
    assert [l[0] for l in vp.current.lines] == ["x" * 32, "x" * 8]
    vp.set_paper(False)
    vp.feed(b"\x1d!\x11held\n\x1dVB\x00")
    assert vp.pending and vp.receipts == []
    vp.set_paper(True)
    assert vp.receipts[0].lines[-1] == ("held", "left", False, 2)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=300), st.booleans(), st.booleans()),
                max_size=12))
def test_virtual_printer_survives_any_bytes(pieces):
    vp = VirtualPrinter()
    for data, paper, cover in pieces:
        vp.set_paper(paper)
        vp.set_cover(cover)
        vp.feed(data)
    vp.set_cover(False)
    vp.set_paper(True)
    for receipt in vp.receipts + [vp.current]:
        receipt.text()
    assert all(b & 0x93 == 0x12 for b in vp.replies)
