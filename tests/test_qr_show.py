"""Showing the merchant's code (issue 13 item 2) on the whole simulated board: the sale's
method 4 creates an order at the QR acquirer simulator (tools/host/qrsim.py, in this
process, on the test's clock), draws its code_url as a QR code on the panel with the
seconds left, prints it on F1, queries it, and closes it at CANCEL or at the time's end;
the customer's phone is qrsim's POST /sim/pay (its in-process phone_pay, or the
simulator's control socket `qr_pay`).
"""
import json
import os
import threading

import pytest

from tests.conftest import qr_config, qr_order


def _show(h, digits, methods="3 Customer code 4 QR"):
    """The amount, then method 4: the code on the screen; its URL."""
    h.press(*digits)
    h.press("ENTER")
    assert methods in h.text(), h.text()
    h.press("4")
    assert h.flow() == ("qr_show", "showing"), h.text()
    h.run(5000, until=lambda: h.term.screen.qr)
    assert h.term.screen.qr, h.text()
    return h.term.screen.qr


def _phone(acquirer, url, channel="wechat"):
    status, reply = acquirer.phone_pay({"code_url": url, "channel": channel})
    assert status == 200, reply
    return reply


def decode(image):
    """What a phone reads off the panel: zxing-cpp (the `test` extra) on the frame,
    enlarged as a camera sees it."""
    zxingcpp = pytest.importorskip("zxingcpp", reason="zxing-cpp is in the test extra")
    from PIL import Image
    big = image.convert("L").resize((image.width * 4, image.height * 4), Image.NEAREST)
    return [r.text for r in zxingcpp.read_barcodes(big)
            if r.format == zxingcpp.BarcodeFormat.QRCode]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_code_is_shown_scanned_by_the_phone_approved_and_printed(qr_shop, acquirer,
                                                                     language, tmp_path):
    h = qr_shop(language=language)
    url = _show(h, "1250", "3 Customer code 4 QR" if language == "en" else "3 扫付款码 4 收款码")
    rec = h.term.payments.journal.last()
    assert rec["method"] == "qr" and rec["state"] == "sending" and rec["card_label"] == ""
    assert rec["entry"] == "qr_show"
    screen = h.term.screen
    if language == "en":
        assert screen.title == "Scan to pay" and screen.lines[0] == "12.50", screen.text()
        assert screen.lines[1].endswith(" s left") and screen.footer == "CANCEL end"
        assert int(screen.lines[1].split()[0]) in (119, 120)       # show_timeout_s
    else:
        assert screen.title == "请扫码付款" and screen.lines[1].startswith("剩余 ")
    order = qr_order(acquirer, rec)
    assert order["kind"] == "native" and order["state"] == "NOTPAY"
    assert order["total_fee"] == 1250
    # the frame on the panel is the URL a phone reads (the PNG kept for a look)
    from drivers.display import image_to_png
    image_to_png(h.sim.last_image, str(tmp_path / ("qr_show_%s.png" % language)))
    assert decode(h.sim.last_image) == [url]
    # the seconds count down between the queries
    h.advance(2000)
    assert h.term.screen.qr == url and int(h.term.screen.lines[1].split()[1 if language == "zh" else 0]) <= 118
    reply = _phone(acquirer, url, "alipay")
    assert reply["result"] == "SUCCESS"
    h.advance(5100)                                     # the next query finds it paid
    h.wait_for_flow(("sale", "result"))
    rec = h.term.payments.journal.get(rec["id"])
    assert rec["state"] == "approved" and rec["card_label"] == "Alipay"
    assert rec["rrn"] == reply["transaction_id"]
    h.run(3000, until=lambda: h.sim.vprinter.receipts)
    paper = h.sim.vprinter.receipts[0].text()
    if language == "en":
        assert h.term.screen.big == "APPROVED", h.text()
        for words in ("SALE - QR", "Alipay", "Transaction ID", rec["rrn"], "USD 12.50"):
            assert words in paper, paper
    assert qr_order(acquirer, rec)["state"] == "SUCCESS"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_qr_screen_fits_a_short_code_url_at_two_pixels_a_module(qr_shop, acquirer, language):
    """qrsim's code_url is longer than 32 characters (1 px a module); an acquirer's short
    one gets 2 px, and the column beside it is narrower: the flow's texts must fit it
    with the largest amount and three digits of seconds."""
    from luma.core.device import dummy
    from drivers.display import LumaDisplay
    from firmware.ui.screen import Screen
    short = "https://pay.example.com/q/AB12cd"             # 32 characters
    h = qr_shop(language=language)
    _show(h, "9999999", "")
    s = h.term.screen
    panel = LumaDisplay(dummy(width=128, height=64, mode="1"))
    lines = [s.lines[0], h.term.t("qr_left", s=300), s.lines[2]]
    image = panel.render(Screen(title=s.title, lines=lines, footer=s.footer, qr=short))
    assert panel.qr_scale == 2 and not panel.losses, [str(x) for x in panel.losses]
    assert decode(image) == [short]
    h.press("F1")                                       # the printing note fits too
    s = h.term.screen
    image = panel.render(Screen(title=s.title, lines=s.lines, footer=s.footer, qr=short))
    assert panel.qr_scale == 2 and not panel.losses, [str(x) for x in panel.losses]
    h.press("CANCEL")
    h.wait_for_flow(("sale", "result"))


def test_the_control_socket_pays_the_shown_code_as_a_phone(qr_shop, acquirer, tmp_path):
    from tools.sim.control import ControlClient, ControlServer
    h = qr_shop()
    path = str(tmp_path / "ctl.sock")
    server = ControlServer(path, h.sim)
    try:
        def call(cmd, **args):
            out = {}

            def ask():
                client = ControlClient(path, timeout=10)
                try:
                    out["answer"] = client.call(cmd, **args)
                finally:
                    client.close()
            t = threading.Thread(target=ask)
            t.start()
            h.run(8000, until=lambda: not t.is_alive())
            t.join(1)
            return out["answer"]

        assert call("qr_pay") == {"ok": False, "error": "no QR code on the screen"}
        url = _show(h, "1300")
        assert call("screen")["qr"] == url
        answer = call("qr_pay")
        assert answer["ok"] and answer["url"] == url, answer
        assert answer["answer"]["result"] == "SUCCESS"
        h.advance(5100)
        h.wait_for_flow(("sale", "result"))
        rec = h.term.payments.journal.last()
        assert rec["state"] == "approved" and rec["card_label"] == "WeChat Pay"
        again = call("qr_pay")                          # nothing shown any more
        assert again == {"ok": False, "error": "no QR code on the screen"}
    finally:
        server.close()


def test_cancel_closes_the_order_and_nothing_is_charged(qr_shop, acquirer):
    h = qr_shop()
    url = _show(h, "1400")
    h.press("CANCEL")
    h.wait_for_flow(("sale", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "reversed" and rec["reason"] == "qrs_cancelled", rec
    assert h.term.screen.big == "NOT CHARGED" and "Cancelled: closed" in h.text(), h.text()
    order = qr_order(acquirer, rec)
    assert order["state"] == "CLOSED" and not order["paid_fee"]
    assert _phone(acquirer, url)["err_code"] == "ORDERCLOSED"      # too late for the phone


def test_the_time_up_closes_the_order(qr_shop, acquirer):
    h = qr_shop(qr={"show_timeout_s": 30})
    _show(h, "1500")
    assert int(h.term.screen.lines[1].split()[0]) in (29, 30), h.text()
    service = h.term.payments.qr
    for _ in range(10):                                 # 30 s of queries, 5 s apart
        h.advance(5100)
        # each answer in before the clock moves on (else the link's own timeout)
        h.run(3000, until=lambda: not any(o.busy for o in service.orders.values()))
        if h.flow() == ("sale", "result"):
            break
    h.wait_for_flow(("sale", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "reversed" and rec["reason"] == "qrs_timed_out", rec
    assert "Timed out: closed" in h.text(), h.text()
    assert qr_order(acquirer, rec)["state"] == "CLOSED"


def test_paid_just_as_cancel_is_pressed_the_payment_is_kept(qr_shop, acquirer):
    """The phone pays between two queries and the cashier presses CANCEL: the close
    answers ORDERPAID, the order is queried and kept: approved, never given back."""
    h = qr_shop()
    url = _show(h, "1600")
    _phone(acquirer, url, "wechat")
    h.press("CANCEL")
    h.wait_for_flow(("sale", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "approved" and rec["card_label"] == "WeChat Pay", rec
    assert h.term.screen.big == "APPROVED", h.text()
    order = qr_order(acquirer, rec)
    assert order["state"] == "SUCCESS" and not order["refunded_fee"]
    with acquirer.ledger.lock:                          # the close said so
        closes = [row["response"] for row in acquirer.ledger.all(
            "SELECT path, response FROM exchanges") if row["path"] == "/v1/close"]
    assert len(closes) == 1 and "ORDERPAID" in closes[0], closes


def test_f1_prints_the_code_for_a_customer_who_cannot_scan_the_screen(qr_shop, acquirer):
    h = qr_shop()
    url = _show(h, "1250")
    h.press("F1")
    assert "Printing code" in h.text(), h.text()
    assert h.term.screen.qr == url                      # the code stays on the screen
    h.run(8000, until=lambda: h.sim.vprinter.receipts)
    paper = h.sim.vprinter.receipts[0]
    assert paper.qr_codes == [url]
    text = paper.text()
    for words in ("SCAN TO PAY", "TOTAL", "USD 12.50", "Scan with your phone"):
        assert words in text, text
    h.run(3000, until=lambda: "F1: print" in h.text())
    assert "F1: print" in h.text(), h.text()
    # paid from the paper: approved as from the screen
    _phone(acquirer, paper.qr_codes[0])
    h.advance(5100)
    h.wait_for_flow(("sale", "result"))
    assert h.term.payments.journal.last()["state"] == "approved"


def test_a_restart_while_shown_closes_the_unpaid_order(qr_shop, harness, acquirer):
    h = qr_shop()
    url = _show(h, "1700")
    rec = h.term.payments.journal.last()
    qr = dict(h.term.config["qr"])
    h.close()                                           # the power cut
    h = harness(qr=qr)
    h.boot()
    h.run(5000, until=lambda: h.term.payments.journal.get(rec["id"])["state"] != "sending")
    rec = h.term.payments.journal.get(rec["id"])
    assert rec["state"] == "reversed" and rec["reason"] == "qrs_timed_out", rec
    assert qr_order(acquirer, rec)["state"] == "CLOSED"
    assert _phone(acquirer, url)["result"] == "FAIL"   # nobody can pay it any more


def test_a_restart_while_shown_keeps_an_order_paid_meanwhile(qr_shop, harness, acquirer):
    h = qr_shop()
    url = _show(h, "1800")
    rec = h.term.payments.journal.last()
    qr = dict(h.term.config["qr"])
    h.close()
    _phone(acquirer, url, "unionpay")                   # the customer paid anyway
    h = harness(qr=qr)
    h.boot()
    h.run(5000, until=lambda: h.term.payments.journal.get(rec["id"])["state"] != "sending")
    rec = h.term.payments.journal.get(rec["id"])
    assert rec["state"] == "approved" and rec["card_label"] == "UnionPay QR", rec
    assert qr_order(acquirer, rec)["state"] == "SUCCESS"


def test_a_create_that_cannot_be_sent_fails_and_charges_nothing(qr_shop, acquirer):
    """The acquirer reachable at start, gone when the order is made (a fault proxy that
    starts resetting every connection): the create never goes out, NOT CHARGED."""
    from tools.host.faultproxy import FaultProxy
    proxy = FaultProxy(0, acquirer.address[1])
    proxy.start()
    try:
        h = qr_shop(qr={"address": "127.0.0.1:%d" % proxy.port})
        h.run(3000, until=lambda: h.term.payments.qr.link_state == "up")
        h.term.payments.qr.link.close()                 # the kept connection ends quietly
        proxy.set("reset", existing=True, new=True)
        h.press("1", "9", "0", "0")
        h.press("ENTER")
        h.press("4")
        h.wait_for_flow(("sale", "result"), ms=20000)
        rec = h.term.payments.journal.last()
        assert rec["state"] == "failed" and rec["entry"] == "qr_show", rec
        assert h.term.screen.big == "NOT CHARGED", h.text()
    finally:
        proxy.stop()


def test_a_merchant_code_is_refused_at_once_while_the_acquirer_is_known_unreachable(
        qr_shop, acquirer):
    h = qr_shop(qr={"address": "127.0.0.1:1"})         # nobody listens there
    h.run(3000, until=lambda: h.term.payments.qr.link_state == "down")   # the start's probe
    h.press("1", "9", "0", "0")
    h.press("ENTER")
    h.press("4")
    assert "QR needs network" in h.text(), h.text()
    assert h.flow() == ("sale", "method")
    assert h.term.payments.journal.find() == []


def test_a_close_without_an_answer_becomes_a_cancel_until_acknowledged(qr_shop, acquirer):
    """The close's answer is lost (sent, never answered): the order may have been paid
    meanwhile, so it is cancelled (refunded if paid) until the acquirer agrees."""
    h = qr_shop()
    _show(h, "2100")
    link = h.term.payments.qr.link
    real = link.request
    lost = []

    def request(op, body, timeout_ms, callback):
        if op == "close" and not lost:
            lost.append(body)
            real(op, body, timeout_ms, lambda result: callback(
                {"kind": "error", "sent": True, "cause": "timeout", "reason": "lost"}))
            return
        real(op, body, timeout_ms, callback)
    link.request = request
    h.press("CANCEL")
    h.wait_for_flow(("sale", "result"))
    rec = h.term.payments.journal.last()
    assert lost and rec["state"] == "reversed" and rec["reason"] == "qrs_cancelled", rec
    assert qr_order(acquirer, rec)["state"] == "REVOKED"
