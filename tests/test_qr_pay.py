"""Paying by the customer's payment code (issue 13 item 1) on the whole simulated board:
the sale's method 3, the code scanned through the HID scanner driver, the payment over
HTTPS to the QR acquirer simulator (tools/host/qrsim.py, its own test CA) through
drivers/qrlink.py, signed both ways; waiting for the customer with the time left on
screen, giving up, CANCEL, a timeout, a restart in the middle.

The acquirer's clock is the test's (qrsim's outcomes by the amount's cents: .11 waits
for the customer then pays, .12 the customer gives up, .51 not enough balance); the
terminal's is the harness's virtual one.
"""
import os

from tests.conftest import qr_order

WECHAT = "134567890123456789"       # 18 digits, 10-15: a WeChat Pay code (made up)
ALIPAY = "2845678901234567"         # 16 digits, 25-30: an Alipay code (made up)


def _to_code_screen(h, digits):
    h.press(*digits)
    h.press("ENTER")
    assert "3 Customer code" in h.text(), h.text()
    h.press("3")
    assert h.flow() == ("qr", "code"), h.text()
    assert "Scan customer code" in h.text()


def test_a_wechat_code_paid_at_once_is_approved_and_printed_masked(qr_shop, acquirer):
    h = qr_shop()
    _to_code_screen(h, "1250")
    h.scan(WECHAT)
    h.wait_for_flow(("sale", "result"))
    rec = h.term.payments.journal.last()
    assert rec["method"] == "qr" and rec["state"] == "approved" and rec["amount"] == 1250
    assert rec["pan_masked"] == "1345**********6789" and rec["card_label"] == "WeChat Pay"
    assert rec["rrn"]                                   # the acquirer's transaction id
    assert "APPROVED" in h.text() or h.term.screen.big == "APPROVED", h.text()
    h.run(3000, until=lambda: h.sim.vprinter.receipts)
    paper = h.sim.vprinter.receipts[0].text()
    for words in ("SALE - QR", "WeChat Pay", "1345**********6789", "Transaction ID",
                  rec["rrn"], "USD 12.50"):
        assert words in paper, paper
    assert WECHAT not in paper
    # the code whole is nowhere on the card: journal, audit, anything in the data folder
    folder = h.term.config["storage"]["data_dir"]
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                assert WECHAT.encode() not in f.read(), name
    order = qr_order(acquirer, rec)
    assert order["state"] == "SUCCESS" and order["total_fee"] == 1250


def test_waiting_for_the_customer_shows_the_time_left_then_pays(qr_shop, acquirer):
    h = qr_shop()
    _to_code_screen(h, "1211")                          # .11: the customer confirms later
    h.scan(WECHAT)
    h.wait_for_flow(("qr", "paying"))
    h.run(3000, until=lambda: "Confirm on phone" in h.text())
    text = h.text()
    assert "Confirm on phone" in text and " s left" in text, text
    acquirer.test_clock.now += 11                       # the customer confirms
    h.advance(5100)                                     # the next query
    h.wait_for_flow(("sale", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "approved", rec


def test_the_customer_gives_up_and_nothing_is_charged(qr_shop, acquirer):
    h = qr_shop()
    _to_code_screen(h, "1212")                          # .12: the customer gives up
    h.scan(ALIPAY)
    h.run(3000, until=lambda: "Confirm on phone" in h.text())
    acquirer.test_clock.now += 21
    h.advance(5100)
    h.wait_for_flow(("sale", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "declined" and rec["card_label"] == "Alipay"
    assert "Customer gave up" in h.text(), h.text()


def test_cancel_while_waiting_cancels_the_order_at_the_acquirer(qr_shop, acquirer):
    h = qr_shop()
    _to_code_screen(h, "1311")
    h.scan(WECHAT)
    h.run(3000, until=lambda: "Confirm on phone" in h.text())
    h.press("CANCEL")
    h.wait_for_flow(("sale", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "reversed" and rec["reason"] == "reason_cancelled"
    assert "NOT CHARGED" in h.text() or h.term.screen.big == "NOT CHARGED", h.text()
    assert qr_order(acquirer, rec)["state"] == "REVOKED"
    acquirer.test_clock.now += 11                       # too late: the phone says no
    assert qr_order(acquirer, rec)["state"] == "REVOKED"


def test_no_answer_within_the_time_cancels_the_order(qr_shop, acquirer):
    h = qr_shop()
    _to_code_screen(h, "1411")                          # waits, and the customer never does
    h.scan(WECHAT)
    h.run(3000, until=lambda: "Confirm on phone" in h.text())
    for _ in range(10):                                 # 45 s of queries, 5 s apart
        h.advance(5100)
        if h.flow() == ("sale", "result"):
            break
    h.wait_for_flow(("sale", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "reversed" and rec["reason"] == "qr_timed_out"
    assert qr_order(acquirer, rec)["state"] == "REVOKED"


def test_bad_codes_and_no_network_are_named_and_nothing_is_recorded(qr_shop, acquirer):
    h = qr_shop()
    _to_code_screen(h, "500")
    h.scan("6901234567892")                             # an item's EAN-13
    assert "Not a payment code" in h.text(), h.text()
    h.press("1", "2", "3", "ENTER")                     # typed, too short
    assert "Not a payment code" in h.text(), h.text()
    assert h.term.payments.journal.find() == []
    h.press("CANCEL")
    assert h.flow() == ("sale", "method"), h.text()


def test_the_qr_link_cut_alone_refuses_qr_offers_card_or_cash_and_comes_back(qr_shop, acquirer):
    """The acquirer unreachable (a fault proxy resetting every connection, the card host
    untouched): the payment that finds out is NOT CHARGED; the next is refused at once,
    on the method screen with card and cash still there; the network back, the probe
    finds it and QR pays again. The card host's link has nothing to do with it."""
    from tools.host.faultproxy import FaultProxy
    proxy = FaultProxy(0, acquirer.address[1])
    proxy.start()
    try:
        h = qr_shop(qr={"address": "127.0.0.1:%d" % proxy.port})
        h.run(3000, until=lambda: h.term.payments.qr.link_state == "up")   # the start's probe
        assert h.term.payments.qr.link_state == "up"
        h.term.link_state = "down"                      # the card host gone: QR goes on
        _to_code_screen(h, "500")
        h.press("CANCEL")
        proxy.set("reset", existing=True, new=True)     # now the QR acquirer's link is cut
        h.press("3")                                    # not known yet: tried
        h.scan(WECHAT)
        h.wait_for_flow(("sale", "result"))
        rec = h.term.payments.journal.last()
        assert rec["state"] == "failed", rec            # never sent: nothing charged
        assert "NOT CHARGED" in h.text() or h.term.screen.big == "NOT CHARGED", h.text()
        assert "QR unreachable" in h.text(), h.text()   # the acquirer, not the card host
        assert h.term.payments.qr.link_state == "down"
        for _ in range(3):                              # past the result and the copy
            if h.flow() != ("idle", "idle"):
                h.press("CANCEL")
                h.run(1500, until=lambda: h.flow() == ("idle", "idle"))
        h.wait_for_flow(("idle", "idle"))
        h.press("6", "0", "0", "ENTER", "3")
        assert "QR needs network" in h.text(), h.text()
        assert h.flow() == ("sale", "method")
        assert "Card" in h.text() and "Cash" in h.text(), h.text()
        assert len(h.term.payments.journal.find()) == 1     # the refusal recorded nothing
        proxy.set("pass")                               # the network is back
        for _ in range(8):                              # the probes, 15 s apart, find it
            h.advance(5000)
            if h.run(500, until=lambda: h.term.payments.qr.link_state == "up"):
                break
        assert h.term.payments.qr.link_state == "up", h.term.payments.qr.link.last_error
        h.press("3")
        assert h.flow() == ("qr", "code"), h.text()
        h.scan(ALIPAY)
        h.wait_for_flow(("sale", "result"))
        rec = h.term.payments.journal.last()
        assert rec["state"] == "approved" and rec["amount"] == 600, rec
        assert qr_order(acquirer, rec)["state"] == "SUCCESS"
    finally:
        proxy.stop()


def test_not_enough_balance_is_declined_in_words(qr_shop, acquirer):
    h = qr_shop()
    _to_code_screen(h, "1251")                          # .51
    h.scan(WECHAT)
    h.wait_for_flow(("sale", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "declined" and rec["rc"] == "NOTENOUGH"
    assert "Not enough balance" in h.text(), h.text()


def test_a_restart_in_the_middle_queries_the_order_and_keeps_the_payment(qr_shop, harness, acquirer):
    """The terminal dies while the customer confirms: the record says "sending". The
    next start queries the order: paid meanwhile, the payment is kept (approved)."""
    h = qr_shop()
    _to_code_screen(h, "1511")
    h.scan(WECHAT)
    h.run(3000, until=lambda: "Confirm on phone" in h.text())
    rec = h.term.payments.journal.last()
    assert rec["state"] == "sending"
    qr = dict(h.term.config["qr"])
    h.close()                                           # the power cut
    acquirer.test_clock.now += 11                       # the customer confirmed anyway
    h = harness(qr=qr)
    h.boot()
    h.run(5000, until=lambda: h.term.payments.journal.get(rec["id"])["state"] != "sending")
    assert h.term.payments.journal.get(rec["id"])["state"] == "approved"
    h.login()                                           # no screen said APPROVED: the idle
    assert "Unprinted: 1" in h.text(), h.text()         # screen says a receipt waits
    h.press("MENU", "4")
    assert "ENTER = #%d" % rec["id"] in h.text(), h.text()


def test_a_restart_in_the_middle_cancels_an_order_still_unpaid(qr_shop, harness, acquirer):
    h = qr_shop()
    _to_code_screen(h, "1611")
    h.scan(ALIPAY)
    h.run(3000, until=lambda: "Confirm on phone" in h.text())
    rec = h.term.payments.journal.last()
    qr = dict(h.term.config["qr"])
    h.close()
    h = harness(qr=qr)
    h.boot()
    h.run(5000, until=lambda: h.term.payments.journal.get(rec["id"])["state"] == "reversed")
    assert h.term.payments.journal.get(rec["id"])["state"] == "reversed"
    assert qr_order(acquirer, rec)["state"] == "REVOKED"


def test_the_seconds_left_count_down_between_queries(qr_shop, acquirer):
    h = qr_shop()
    _to_code_screen(h, "1711")
    h.scan(WECHAT)
    h.run(3000, until=lambda: "Confirm on phone" in h.text())
    first = [r for r in h.term.screen.lines if r.endswith(" s left")][0]
    h.advance(2000)                                     # no query yet: the screen still counts
    second = [r for r in h.term.screen.lines if r.endswith(" s left")][0]
    assert int(second.split()[0]) <= int(first.split()[0]) - 2, (first, second)


def test_handpos_sim_starts_its_qr_acquirer_and_a_payment_goes_through_it(harness, tmp_path):
    """What `handpos sim` runs beside the terminal: the simulator in a process of its
    own on a free port, its CA, the lab's merchant key; a code paid through it."""
    from tools.cli import start_qrsim
    from tools.host.qrsim import DEFAULT_KEY
    proc, address, ca = start_qrsim(str(tmp_path / "data-qr"))
    assert proc is not None, address
    try:
        h = harness(qr={"enabled": True, "address": address, "ca_file": ca,
                        "mch_id": "100000000001", "key": DEFAULT_KEY.decode()})
        h.first_supervisor()
        h.login()
        _to_code_screen(h, "800")
        from tools.sim.simulator import payment_code
        code = payment_code("alipay")
        assert len(code) == 18 and code.startswith("28")
        h.scan(code)
        h.wait_for_flow(("sale", "result"))
        assert h.term.payments.journal.last()["state"] == "approved"
    finally:
        proc.terminate()
        proc.wait(10)
    with open(str(tmp_path / "data-qr" / "qrsim.log"), encoding="utf-8") as f:
        assert "listening on https://127.0.0.1:" in f.read()
