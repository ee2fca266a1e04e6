"""Refunds and voids of QR payments (issue 13 item 3) through the QR acquirer simulator,
with the supervisor's PIN as for cards: whole or in parts, never more than is left; a
void cancels the order; an unknown answer is asked again (the acquirer refunds once per
refund number), on its own and after a restart.
"""
from tests.conftest import qr_order
from tests.test_qr_pay import WECHAT, _to_code_screen


def _qr_sale(h, digits, code=WECHAT):
    _to_code_screen(h, digits)
    h.scan(code)
    h.wait_for_flow(("sale", "result"))
    sale = h.term.payments.journal.last()
    assert sale["state"] == "approved"
    h.to_idle()
    return sale


def _refund(h, sale, digits, enter=True):
    h.press("MENU", "2", *"2580")
    h.press("ENTER", *str(sale["id"]))
    h.press("ENTER")
    assert "QR *" in h.text(), h.text()                 # the pick names the method
    h.press("ENTER")
    h.press(*digits)
    if enter:
        h.press("ENTER")


def test_a_qr_sale_is_refunded_in_two_parts_and_never_more(qr_shop, acquirer):
    h = qr_shop()
    sale = _qr_sale(h, "1250")
    _refund(h, sale, "500")
    h.wait_for_flow(("refund", "result"))
    refund = h.term.payments.journal.last()
    assert (refund["kind"], refund["method"], refund["state"]) == ("refund", "qr", "approved")
    assert refund["rrn"] and refund["pan_masked"] == sale["pan_masked"]
    assert h.term.payments.journal.get(sale["id"])["refunded"] == 500
    assert qr_order(acquirer, sale)["refunded_fee"] == 500
    h.run(3000, until=lambda: any("REFUND - QR" in r.text() for r in h.sim.vprinter.receipts))
    paper = [r.text() for r in h.sim.vprinter.receipts if "REFUND - QR" in r.text()][0]
    assert "-USD 5.00" in paper and "WeChat Pay" in paper, paper
    h.to_idle()
    _refund(h, sale, "800", enter=False)                # 8.00 of the 7.50 left
    assert "Above the maximum" in h.text(), h.text()
    h.press("CLEAR", "7", "5", "0", "ENTER")
    h.wait_for_flow(("refund", "result"))
    assert h.term.payments.journal.get(sale["id"])["refunded"] == 1250
    assert qr_order(acquirer, sale)["refunded_fee"] == 1250
    h.to_idle()
    h.press("MENU", "2", *"2580")
    h.press("ENTER", *str(sale["id"]))
    h.press("ENTER")
    assert "Fully refunded" in h.text(), h.text()


def test_a_qr_sale_is_voided_by_cancelling_its_order(qr_shop, acquirer):
    h = qr_shop()
    sale = _qr_sale(h, "900")
    h.press("MENU", "3", *"2580")
    h.press("ENTER", "ENTER", "ENTER")
    h.wait_for("VOIDED")
    assert h.term.payments.journal.get(sale["id"])["state"] == "voided"
    void = h.term.payments.journal.last()
    assert (void["kind"], void["method"], void["state"]) == ("void", "qr", "approved")
    assert qr_order(acquirer, sale)["state"] == "REVOKED"


def _through_proxy(harness, acquirer):
    """A terminal whose QR link goes through the fault proxy (tools/host/faultproxy.py)."""
    from tools.host.faultproxy import FaultProxy
    from tests.conftest import qr_config
    proxy = FaultProxy(0, int(acquirer.address[1]))
    proxy.start()
    qr = qr_config(acquirer, address="127.0.0.1:%d" % proxy.port)
    h = harness(qr=qr)
    h.first_supervisor()
    h.login()
    return h, proxy, qr


def test_an_unanswered_refund_is_asked_again_until_it_is_done_once(harness, acquirer):
    """The acquirer's answers stop coming (the request gets there, the answer does not):
    the refund is recorded, sent, unanswered; the screen says PENDING and the terminal
    keeps asking; once answers come back the refund is done, once."""
    h, proxy, qr = _through_proxy(harness, acquirer)
    try:
        sale = _qr_sale(h, "1000")
        proxy.set("half_open", direction="down")
        _refund(h, sale, "400")
        for _ in range(12):                             # timeouts, retries 2 s and 5 s apart
            if h.flow() == ("refund", "result"):
                break
            h.advance(5100)
        h.wait_for_flow(("refund", "result"))
        refund = h.term.payments.journal.last()
        assert refund["state"] == "sending", refund
        assert "PENDING" in h.text() or h.term.screen.big == "PENDING", h.text()
        h.to_idle()
        # while its answer is out, neither a void nor another refund of the sale is
        # taken: together they could give back more than was paid
        h.press("MENU", "3", *"2580")
        h.press("ENTER", *str(sale["id"]))
        h.press("ENTER")
        assert "Refund/void pending" in h.text(), h.text()
        h.to_idle()
        h.press("MENU", "2", *"2580")
        h.press("ENTER", *str(sale["id"]))
        h.press("ENTER")
        assert "Refund/void pending" in h.text(), h.text()
        h.to_idle()
        assert h.term.payments.journal.last()["id"] == refund["id"]     # nothing recorded
        proxy.set("pass")
        for _ in range(20):                             # the next try (virtual time), then
            h.advance(15100)                            # the real time its connection takes
            h.run(1500, until=lambda: h.term.payments.journal.get(refund["id"])["state"]
                  != "sending")
            if h.term.payments.journal.get(refund["id"])["state"] != "sending":
                break
        assert h.term.payments.journal.get(refund["id"])["state"] == "approved"
        assert h.term.payments.journal.get(sale["id"])["refunded"] == 400
        assert qr_order(acquirer, sale)["refunded_fee"] == 400      # asked often, done once
    finally:
        h.close()
        proxy.stop()


def test_a_restart_with_a_refund_in_flight_asks_again_and_refunds_once(harness, acquirer):
    h, proxy, qr = _through_proxy(harness, acquirer)
    try:
        sale = _qr_sale(h, "1500")
        proxy.set("half_open", direction="down")
        _refund(h, sale, "1500")
        h.run(1000)
        refund = h.term.payments.journal.last()
        assert refund["kind"] == "refund" and refund["state"] == "sending"
        h.close()                                       # the power cut
        proxy.set("pass")
        h = harness(qr=qr)
        h.boot()
        h.run(8000, until=lambda: h.term.payments.journal.get(refund["id"])["state"] != "sending")
        assert h.term.payments.journal.get(refund["id"])["state"] == "approved"
        assert qr_order(acquirer, sale)["refunded_fee"] == 1500
    finally:
        h.close()
        proxy.stop()
