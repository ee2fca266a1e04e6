"""The merchant's code as a QR code (issue 13 item 2): on the 128x64 panel, drawn by the
display driver through luma's dummy device, and on paper, sent by the printer driver as
ESC/POS GS ( k and drawn by the virtual printer.

Every symbol is checked twice: its module grid against segno's matrix bit for bit, and
decoded back from the pixels by zxing-cpp (the `test` extra) as a phone would read it.
"""
import logging

import pytest
import segno
from luma.core.device import dummy
from PIL import Image

from drivers.display import (QR_MAX_CHARS, QR_QUIET, QR_SCALE2_CHARS, LumaDisplay,
                             image_to_png, qr_symbol, watch_text_loss, unwatch_text_loss)
from drivers.printer import DOTS, GS, EscPosPrinter, open_serial, qr_command
from firmware.core.compat import monotonic_ms
from firmware.core.reactor import Reactor
from firmware.ui.receipt import QR_MODULE_DOTS, QrLine, Receipt
from firmware.ui.screen import Screen, Status
from tools.sim.vprinter import QrSymbol, VirtualPrinter, make_pty, render_png

URL = "https://pay.example.com/q/AB12cd"            # 32 characters: scale 2
LONG_URL = "https://qr.alipay.com/bax03431ljhokirwl38f00a7"   # 46: one pixel a module


def decode(image):
    """What a phone reads: the texts of the QR codes zxing-cpp finds in image."""
    zxingcpp = pytest.importorskip("zxingcpp", reason="zxing-cpp is in the test extra")
    return [r.text for r in zxingcpp.read_barcodes(image.convert("L"))
            if r.format == zxingcpp.BarcodeFormat.QRCode]


@pytest.fixture(scope="module")
def panel():
    return LumaDisplay(dummy(width=128, height=64, mode="1"))


def grid(image, box, modules, scale):
    """The module grid read off a frame: 1 where the module's pixels are dark (unlit),
    after checking every pixel of a module is the same."""
    x0, y0 = box[0] + QR_QUIET * scale, box[1] + QR_QUIET * scale
    rows = []
    for r in range(modules):
        row = []
        for c in range(modules):
            cell = {image.getpixel((x0 + c * scale + dx, y0 + r * scale + dy))
                    for dx in range(scale) for dy in range(scale)}
            assert len(cell) == 1, "module %d,%d is not one colour" % (r, c)
            row.append(0 if cell.pop() else 1)
        rows.append(row)
    return rows


def pay_screen(lang="en", qr=URL, **kw):
    if lang == "zh":
        return Screen(title="扫码支付", big="¥99,999.99", lines=["订单 1234"],
                      footer="取消 返回", qr=qr, **kw)
    return Screen(title="Scan to pay", big="¥99,999.99", lines=["Order 1234"],
                  footer="C: cancel", qr=qr, **kw)


# -- the model ---------------------------------------------------------------------------

def test_the_screen_model_carries_only_the_text():
    screen = Screen(title="Scan to pay", big="12.50", qr=URL)
    assert screen.qr == URL
    assert screen.text() == "Scan to pay\n12.50\n[QR] " + URL
    assert screen != Screen(title="Scan to pay", big="12.50", qr=URL + "x")
    assert screen == Screen(title="Scan to pay", big="12.50", qr=URL)
    assert Screen(title="x").qr == "" and "[QR]" not in Screen(title="x").text()


# -- the panel ---------------------------------------------------------------------------

@pytest.mark.parametrize("lang", ["en", "zh"])
def test_qr_screen_draws_the_symbol_at_two_pixels_a_module_and_it_scans(panel, lang, tmp_path):
    panel.show(pay_screen(lang, status=Status(clock="10:00", synced=True)))
    image = panel.device.image                  # what luma's device holds
    assert panel.losses == []
    symbol = qr_symbol(URL)
    modules = symbol.symbol_size(border=0)[0]
    assert symbol.version == 2 and modules == 25
    assert panel.qr_scale == 2
    box = panel.qr_box
    assert box == (0, 3, 58, 61)                # 29 modules of 2 px, centred in 64
    # the quiet zone is lit all round, the grid is segno's matrix bit for bit
    quiet = QR_QUIET * 2
    for x in range(box[0], box[2]):
        for y in list(range(box[1], box[1] + quiet)) + list(range(box[3] - quiet, box[3])):
            assert image.getpixel((x, y)) and image.getpixel((y - box[1] + box[0], x - box[0] + box[1]))
    assert grid(image, box, modules, 2) == [list(row) for row in symbol.matrix]
    png = image_to_png(image, str(tmp_path / ("qr_%s.png" % lang)))
    assert decode(Image.open(png)) == [URL]
    # the text stands right of the symbol, none of it over the symbol
    assert image.crop((box[2], 0, 60, 64)).getbbox() is None
    assert image.crop((60, 14, 128, 64)).getbbox() is not None


def test_qr_screen_in_chinese_shows_every_row(panel):
    image = panel.render(pay_screen("zh"))
    assert panel.losses == []
    column = image.crop((60, 0, 128, 64))
    # title band, then three rows of ink: the amount, the order, the footer
    inked = [y for y in range(14, 64) if column.crop((0, y, 68, y + 1)).getbbox()]
    bands = 1 + sum(1 for a, b in zip(inked, inked[1:]) if b > a + 1)
    assert bands == 3


def test_a_longer_url_is_drawn_at_one_pixel_and_logged_once(caplog, tmp_path):
    d = LumaDisplay(dummy(width=128, height=64, mode="1"))
    with caplog.at_level(logging.WARNING, logger="handpos.display"):
        d.show(pay_screen(qr=LONG_URL))
        d.show(pay_screen(qr=LONG_URL, status=Status(clock="10:01")))
    assert d.qr_scale == 1
    warnings = [r for r in caplog.records if r.name == "handpos.display"]
    assert len(warnings) == 1 and "46 characters" in warnings[0].getMessage()
    symbol = qr_symbol(LONG_URL)
    assert grid(d.device.image, d.qr_box, 29, 1) == [list(row) for row in symbol.matrix]
    png = image_to_png(d.device.image, str(tmp_path / "qr_long.png"))
    assert decode(Image.open(png)) == [LONG_URL]


def test_the_documented_limits_hold():
    assert qr_symbol("h" * QR_SCALE2_CHARS).version == 2
    assert qr_symbol("h" * (QR_SCALE2_CHARS + 1)).version == 3
    assert qr_symbol("h" * QR_MAX_CHARS).version == 10
    assert qr_symbol("h" * (QR_MAX_CHARS + 1)).version == 11     # 61 + 4 > 64 px


@pytest.mark.text_loss_allowed
def test_a_code_too_long_for_the_panel_is_not_drawn_and_reported(caplog):
    d = LumaDisplay(dummy(width=128, height=64, mode="1"))
    lost = []
    watch_text_loss(lost.append)
    try:
        with caplog.at_level(logging.ERROR, logger="handpos.display"):
            d.show(Screen(title="Scan to pay", qr="h" * (QR_MAX_CHARS + 1)))
    finally:
        unwatch_text_loss(lost.append)
    assert d.qr_scale == 0 and d.qr_box is None
    assert [loss.part for loss in lost] == ["qr"]
    assert any("does not fit" in r.getMessage() for r in caplog.records)


# -- the paper: bytes ---------------------------------------------------------------------

def test_qr_command_bytes():
    data = "https://x.cn/a"
    store = len(data) + 3
    assert qr_command(data) == (
        GS + b"(k\x04\x00\x31\x41\x32\x00"              # fn 165: model 2
        + GS + b"(k\x03\x00\x31\x43\x06"                # fn 167: 6 dots a module
        + GS + b"(k\x03\x00\x31\x45\x31"                # fn 169: error level M
        + GS + b"(k" + bytes((store, 0)) + b"\x31\x50\x30" + data.encode()   # fn 180
        + GS + b"(k\x03\x00\x31\x51\x30")               # fn 181: print


def test_receipt_qr_line_and_the_drivers_bytes():
    r = Receipt().add("SHOP", "center").qr(URL, text="Scan to pay")
    kinds = [getattr(line, "kind", "text") for line in r.lines]
    assert kinds == ["text", "text", "qr", "text"]
    line = r.lines[2]
    assert isinstance(line, QrLine) and line.data == URL and line.module == QR_MODULE_DOTS == 6
    assert [row.strip() for row in r.text().split("\n")[1:3]] == ["", ""]   # blank around it
    data = EscPosPrinter.encode.__get__(_Encoder())(r)
    at = data.index(qr_command(URL))
    assert data[at - 3:at] == b"\x1ba\x01"                # centred with ESC a 1
    assert data[at + len(qr_command(URL))] == 0x0A      # the feed after the symbol


class _Encoder:
    """Enough of an EscPosPrinter to call encode() without a port."""
    width = 32
    _encode_parts = EscPosPrinter._encode_parts


def test_too_long_data_is_refused_in_words():
    most = "h" * 251                                     # version 11 at M: 61 x 6 = 366 dots
    assert qr_command(most)
    with pytest.raises(ValueError) as err:
        qr_command(most + "h")
    message = str(err.value)
    assert "252 bytes too long for the paper" in message and "version 12" in message
    assert "shorten the code URL" in message
    assert qr_command(most + "h", module=5)             # smaller modules fit
    with pytest.raises(ValueError, match="more than the printer stores"):
        qr_command("h" * 7090)
    with pytest.raises(ValueError, match="control characters"):
        qr_command("https://x/\x10\x04")
    with pytest.raises(ValueError, match="1 to 16"):
        qr_command(URL, module=17)


# -- the paper: the virtual printer ---------------------------------------------------------

def _paper(receipt):
    vp = VirtualPrinter()
    vp.feed(EscPosPrinter.encode.__get__(_Encoder())(receipt))
    assert len(vp.receipts) == 1
    return vp, vp.receipts[0]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_virtual_printer_draws_the_code_and_it_scans(lang, tmp_path):
    r = Receipt(lang=lang).add("SHOP" if lang == "en" else "商店", "center")
    r.pair("Total", "12.50").qr(LONG_URL, text="Scan to pay" if lang == "en" else "扫码支付")
    r.add("Thank you" if lang == "en" else "谢谢惠顾", "center")
    vp, paper = _paper(r)
    assert paper.qr_codes == [LONG_URL] and vp.qr_refused == 0
    assert paper.text() == r.text()
    (at, symbol), = paper.graphics
    assert isinstance(symbol, QrSymbol) and at == 3        # after SHOP, Total, blank
    expected = segno.make(LONG_URL, error="m", micro=False, boost_error=False)
    assert symbol.error == "M" and symbol.module == 6
    assert symbol.matrix == [list(row) for row in expected.matrix]
    side = len(symbol.matrix) * 6
    assert symbol.x == (DOTS - side) // 2                  # centred
    png = render_png(paper, str(tmp_path / ("receipt_qr_%s.png" % lang)))
    # the matrix read off the paper's pixels, module by module
    image = Image.open(png).convert("L")
    top = next(y for y in range(image.height)
               if image.getpixel((symbol.x, y)) < 128 and image.getpixel((symbol.x + 6, y)) < 128)
    read = [[1 if image.getpixel((symbol.x + c * 6 + 3, top + rr * 6 + 3)) < 128 else 0
             for c in range(len(symbol.matrix))] for rr in range(len(symbol.matrix))]
    assert read == symbol.matrix
    assert decode(Image.open(png)) == [LONG_URL]      # last: skips without zxing-cpp


def test_virtual_printer_refuses_a_symbol_wider_than_the_paper():
    vp = VirtualPrinter()
    data = ("h" * 252).encode()
    store = len(data) + 3
    vp.feed(b"\x1b@" + GS + b"(k\x03\x00\x31\x43\x06" + GS + b"(k\x03\x00\x31\x45\x31"
            + GS + b"(k" + bytes((store & 0xFF, store >> 8)) + b"\x31\x50\x30" + data
            + GS + b"(k\x03\x00\x31\x51\x30" + b"after\n" + GS + b"V\x42\x00")
    assert vp.qr_refused == 1
    assert vp.receipts[0].qr_codes == [] and vp.receipts[0].lines[0][0] == "after"


def test_virtual_printer_takes_the_command_in_pieces():
    vp = VirtualPrinter()
    data = EscPosPrinter.encode.__get__(_Encoder())(Receipt().qr(URL))
    for i in range(len(data)):
        vp.feed(data[i:i + 1])
    assert vp.receipts[0].qr_codes == [URL]


def test_through_the_driver_on_a_pty():
    reactor = Reactor()
    master, slave = make_pty()
    port = open_serial(slave, 9600)
    vp = VirtualPrinter(master, reactor=reactor)
    printer = EscPosPrinter(port, reactor, lambda event: None, status_interval_ms=50,
                            reply_timeout_ms=300)
    try:
        printer.print(Receipt().add("SHOP").qr(URL, text="Scan to pay"))
        deadline = monotonic_ms() + 5000
        while not vp.receipts and monotonic_ms() < deadline:
            reactor.run_once(20)
        assert vp.receipts and vp.receipts[0].qr_codes == [URL]
        assert vp.receipts[0].text().split("\n")[-1].strip() == "Scan to pay"
    finally:
        printer.close()
        port.close()
        vp.close()
        reactor.close()


def test_a_flow_shows_a_qr_through_the_terminal_onto_the_simulators_panel(harness):
    """term.show(..., qr=url) reaches the display driver of the simulated board, and
    the frame it draws scans back to the url."""
    zxingcpp = pytest.importorskip("zxingcpp")
    h = harness()
    h.first_supervisor()
    h.login()
    url = "https://qr.example.test/p/8F3K2"
    screen = h.term.show("Scan to pay", ["12.50"], "CANCEL", qr=url)
    h.run(50)
    assert screen.qr == url and "[QR] " + url in h.text()
    image = h.sim.last_image.convert("L")
    big = image.resize((image.width * 4, image.height * 4), Image.NEAREST)
    assert [b.text for b in zxingcpp.read_barcodes(big)] == [url]
