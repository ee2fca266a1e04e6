"""The receipt's barcode (issue 12 item 5): the ESC/POS bytes the printer driver sends,
the bars the virtual printer draws and reads back, and the barcode on a real sale's
receipts through the simulated board (and on no other receipt).

The virtual printer decodes what it drew (the bar widths, through code128_decode) and
read_barcodes() decodes the receipt's PNG from its pixels, so an encoder, a command
or a drawing that is wrong shows as data that does not come back.
"""
import pytest

from drivers.printer import (BARCODE_HEIGHT, GS, EscPosPrinter, code128_command,
                             open_serial)
from firmware.core.compat import monotonic_ms
from firmware.core.reactor import Reactor
from firmware.payments import receipts
from firmware.retail.receipt_code import (MODULE_DOTS, code128_decode, code128_symbols,
                                          encode, parse)
from firmware.ui.receipt import BarcodeLine, Receipt
from tools.sim.vprinter import (VirtualPrinter, code128_values, make_pty, read_barcodes,
                                render_png)

TID = "HP000001"        # the simulator's terminal ID


class Rig:
    """The printer driver on a pty, the virtual printer on its master, one reactor."""

    def __init__(self):
        self.reactor = Reactor()
        self.errors = []
        self.reactor.on_error = self.errors.append
        self.master, slave = make_pty()
        self.port = open_serial(slave, 9600)
        self.vp = VirtualPrinter(self.master, reactor=self.reactor)
        self.printer = EscPosPrinter(self.port, self.reactor, lambda event: None,
                                     status_interval_ms=50, reply_timeout_ms=300)

    def print(self, receipt):
        count = len(self.vp.receipts)
        self.printer.print(receipt)
        deadline = monotonic_ms() + 5000
        while len(self.vp.receipts) <= count and monotonic_ms() < deadline:
            self.reactor.run_once(20)
        assert len(self.vp.receipts) > count, "the receipt never came out"
        return self.vp.receipts[-1]

    def close(self):
        self.printer.close()
        self.port.close()
        self.vp.close()
        self.reactor.close()


@pytest.fixture
def rig():
    r = Rig()
    yield r
    assert r.errors == []
    r.close()


def _receipt(*codes):
    r = Receipt()
    r.add("SHOP", "center", bold=True)
    r.pair("Total", "12.50")
    for code in codes:
        r.blank()
        r.barcode(code)
    r.add("MERCHANT COPY", "center")
    return r


# -- the model ---------------------------------------------------------------------------

def test_the_model_reads_the_barcode_as_its_text_centred():
    r = Receipt().barcode("R7100012389")
    line = r.lines[0]
    assert isinstance(line, BarcodeLine) and line.kind == "barcode"
    assert line.data == "R7100012389" and line.align == "center"
    assert r.text() == " " * 10 + "R7100012389"
    assert Receipt().barcode("R1", text="Sale 1").text().strip() == "Sale 1"
    assert Receipt().add("x").lines[0].kind == "text"


def test_the_symbol_table_agrees_with_an_independent_implementation():
    # The virtual printer draws with the same table the encoder uses, so the table is
    # also checked against python-barcode's (installed with python-escpos): every
    # pattern, the stop, and whole symbols where both choose the same code sets.
    charset = pytest.importorskip("barcode.charsets.code128")
    import barcode
    from firmware.retail.receipt_code import PATTERNS, code128_modules

    def modules(widths):
        return "".join(("1" if i % 2 == 0 else "0") * int(w) for i, w in enumerate(widths))

    for value in range(106):
        assert modules(PATTERNS[value]) == charset.CODES[value], value
    assert modules(PATTERNS[106]) == charset.STOP + "11"       # with the termination bar
    for data in ("PJJ123C", "HI345678", encode(TID, 123), encode(TID, 999999)):
        assert modules(code128_modules(data)) == barcode.get("code128", data).build()[0]


# -- the printer's bytes ---------------------------------------------------------------

def test_the_command_is_code128_function_b_with_code_sets_and_packed_pairs():
    code = encode(TID, 123)                 # "R" then ten digits
    digits = code[1:]
    command = code128_command(code)
    payload = b"{BR{C" + bytes(int(digits[i:i + 2]) for i in range(0, 10, 2))
    assert command == (GS + b"h" + bytes((BARCODE_HEIGHT,)) + GS + b"w\x02" + GS + b"H\x00"
                       + GS + b"k" + bytes((73, len(payload))) + payload)
    assert 60 <= BARCODE_HEIGHT <= 80 and MODULE_DOTS == 2
    # the printer's reading of the payload is the encoder's symbol, check and stop aside
    assert code128_values(payload) == code128_symbols(code)[:-2]
    # "{" in set B is doubled; a run of digits at the start goes in set C
    assert code128_command("a{b").endswith(b"\x06{Ba{{b")
    assert code128_command("123456").endswith(b"\x05{C\x0c\x22\x38")


def test_the_receipt_bytes_centre_the_bars_and_print_the_text_under_them(rig):
    code = encode(TID, 42)
    data = rig.printer.encode(_receipt(code))
    at = data.index(GS + b"h")
    assert data[at - 3:at] == b"\x1ba\x01"              # ESC a 1 just before
    command = code128_command(code)
    assert data[at:at + len(command)] == command
    assert data[at + len(command):].startswith(code.encode("ascii") + b"\n")


def test_no_real_time_command_hides_in_the_packed_digits(rig):
    # a set C pair 16 is DLE, and DLE EOT/ENQ/DC4 is a real-time command to a printer
    # even inside another command's data: such a pair goes out in set B
    # the simulator's TID checks to 16: its receipts #40000 to #49999 start 16 04
    assert encode(TID, 41234).startswith("R1604")
    for code in (encode(TID, 41234), encode(TID, 160401), encode(TID, 160520),
                 "R1604160405"):                # two such pairs: still on the paper
        command = code128_command(code)
        for second in (b"\x04", b"\x05", b"\x14"):
            assert b"\x10" + second not in command, (code, command)
        paper = rig.print(_receipt(code))
        assert paper.barcodes == [code]
    assert rig.printer.state == "ok"
    # what all-set-C packing would have done: the printer takes DLE EOT 4 out of the
    # data as a status request the driver never made, and the symbol then eats the
    # bytes after it (here the cut): no receipt with the sale's barcode comes out
    code = encode(TID, 41234)
    naive = b"{BR{C" + bytes(int(code[i:i + 2]) for i in range(1, 11, 2))
    vp = VirtualPrinter()
    vp.feed(b"\x1ba\x01" + GS + b"w\x02" + GS + b"k" + bytes((73, len(naive))) + naive
            + b"\n" + GS + b"V\x42\x00")
    assert vp.status_queries == 1
    assert [paper.barcodes for paper in vp.receipts] != [[code]]


# -- the virtual printer draws and reads back -----------------------------------------------

def test_the_virtual_printer_draws_reads_and_renders_the_bars(rig, tmp_path):
    code = encode(TID, 999999)
    model = _receipt(code)
    paper = rig.print(model)
    assert paper.barcodes == [code]
    assert paper.text() == model.text()                 # the text under the bars reads
    index, bars = paper.graphics[0]
    assert paper.lines[index][0] == code                # the bars, then their text
    widths = bars.widths()
    assert min(widths) == MODULE_DOTS and bars.height == BARCODE_HEIGHT
    left, right = bars.runs[0][0], bars.runs[-1][0] + bars.runs[-1][1]
    assert abs(left - (384 - right)) <= 1               # centred
    assert left >= 10 * MODULE_DOTS                     # with its quiet zones on paper
    assert code128_decode(widths, MODULE_DOTS) == code
    path = render_png(paper, str(tmp_path / "receipt.png"))
    assert read_barcodes(path) == [code]                # from the pixels alone


def test_two_barcodes_and_a_wrong_drawing_are_told_apart(rig, tmp_path):
    first, second = encode(TID, 1), encode("ZZ000009", 777777)
    paper = rig.print(_receipt(first, second))
    assert paper.barcodes == [first, second]
    path = str(tmp_path / "two.png")
    assert read_barcodes(render_png(paper, path)) == [first, second]
    # a bar one module too wide no longer reads, on paper or from the pixels
    bars = paper.graphics[0][1]
    x, w = bars.runs[3]
    bars.runs[3] = (x, w + MODULE_DOTS)
    with pytest.raises(ValueError):
        code128_decode(bars.widths(), MODULE_DOTS)
    assert read_barcodes(render_png(paper, path)) == [second]


def test_a_symbol_wider_than_the_paper_is_not_printed(rig):
    paper = rig.print(_receipt("X" * 40))             # 40 set B symbols: 968 dots
    assert paper.barcodes == [] and rig.vp.barcodes_refused == 1
    assert "X" * 32 in paper.text()                    # its text line still prints


# -- on the terminal's receipts ------------------------------------------------------------

def _cash_sale(h, digits="1250"):
    h.press(*digits)
    h.press("ENTER", "2")
    h.press("ENTER")                                   # the exact amount given
    h.run(5000, until=lambda: len(h.sim.vprinter.receipts) >= 1)
    h.press("ENTER")
    h.wait_for("Customer copy?")
    h.press("ENTER")
    h.run(5000, until=lambda: len(h.sim.vprinter.receipts) >= 2)
    return h.term.payments.journal.last()


def test_a_cash_sale_prints_its_barcode_on_both_copies(harness, tmp_path):
    h = harness()
    h.first_supervisor()
    h.login()
    rec = _cash_sale(h)
    assert rec["state"] == "approved" and rec["kind"] == "sale"
    tid = h.term.config["terminal"]["id"]
    code = encode(tid, rec["id"])
    merchant, customer = h.sim.vprinter.receipts[:2]
    for paper, copy in ((merchant, "MERCHANT COPY"), (customer, "CUSTOMER COPY")):
        assert paper.barcodes == [code]
        rows = paper.text().split("\n")
        at = [row.strip() for row in rows].index(code)
        assert rows[at + 1].strip() == copy            # just above the copy line
        path = render_png(paper, str(tmp_path / (copy.split()[0] + ".png")))
        assert read_barcodes(path) == [code]
    assert parse(code, tid) == rec["id"]               # what the refund screen reads


def _record(h, **changes):
    rec = dict(h.term.payments.journal.last())
    rec.update(changes)
    return rec


def test_only_approved_sales_carry_the_barcode(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    _cash_sale(h)
    config, t = h.term.config, h.term.t

    def has_barcode(**changes):
        r = receipts.build(_record(h, **changes), config, t)
        return [line.data for line in r.lines if line.kind == "barcode"]

    sale_id = h.term.payments.journal.last()["id"]
    assert has_barcode() == [encode(TID, sale_id)]
    assert has_barcode(offline=1, upload="pending") == [encode(TID, sale_id)]
    assert has_barcode(state="declined", rc="05") == []
    assert has_barcode(state="not_charged", reason="") == []
    assert has_barcode(state="voided") == []
    assert has_barcode(kind="refund") == []
    assert has_barcode(kind="void") == []


def test_a_declined_card_receipt_has_no_barcode(harness, hostsim):
    h = harness(host=(hostsim.address, hostsim.ca_file))
    h.first_supervisor()
    h.login()
    rec = h.swipe_sale("2005")                         # the host declines 05
    assert rec["state"] == "declined"
    h.run(5000, until=lambda: len(h.sim.vprinter.receipts) >= 1)
    paper = h.sim.vprinter.receipts[0]
    assert "DECLINED" in paper.text() and paper.barcodes == []
    h.to_idle()
    rec = h.swipe_sale("1250")
    assert rec["state"] == "approved"
    h.run(5000, until=lambda: len(h.sim.vprinter.receipts) >= 2)
    assert h.sim.vprinter.receipts[1].barcodes == [encode(TID, rec["id"])]
