"""QR payments on a bad day (issue 13): the SD card full at the scan and while the
customer confirms on the phone. The card is a small tmpfs over the terminal's data
folder filled until the kernel says ENOSPC (tests/conftest.py SmallDisk); the acquirer
(tools/host/qrsim.py) keeps its ledger elsewhere.

What must hold: nothing is sent that the journal has not kept; words on the screen, not
a hang; an order the customer paid while the card was full is kept once the card has
room, and charged once."""
from tests.conftest import qr_order

WECHAT = "134567890123456789"       # made up, shaped like a WeChat Pay code


def _code_screen(h, digits):
    h.press(*digits)
    h.press("ENTER", "3")
    assert h.flow() == ("qr", "code"), h.text()


def _back_to_idle(h):
    h.run(1500)
    for _ in range(4):
        if h.flow() == ("idle", "idle"):
            return
        h.press("CANCEL")
        h.run(1500, until=lambda: h.flow() == ("idle", "idle"))


def test_a_full_card_at_the_scan_sends_nothing_says_so_and_pays_once_space_returns(
        qr_shop, acquirer, disk):
    h = qr_shop()
    rows = len(h.term.payments.journal.find())
    _code_screen(h, "1250")
    disk.fill()
    errors = h.reactor.errors
    h.scan(WECHAT)
    h.run(2000)
    text = h.text()
    assert "Storage" in text or "STORAGE FULL" in text, text
    assert acquirer.ledger.orders() == []        # nothing left the terminal
    assert h.reactor.errors == errors
    disk.free()
    h.advance(30100)                                            # the terminal's own retry
    _back_to_idle(h)
    assert h.flow() == ("idle", "idle"), h.text()
    assert len(h.term.payments.journal.find()) == rows          # the refused scan left no record
    _code_screen(h, "1250")
    h.scan(WECHAT[:-1] + "0")
    h.wait_for_flow(("sale", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "approved" and rec["amount"] == 1250, rec
    assert len(acquirer.ledger.orders()) == 1


def test_a_full_card_while_the_customer_confirms_keeps_the_payment_once(qr_shop, acquirer, disk):
    """The record is "sending" on the card; the card fills; the customer confirms. The
    approval cannot be written: the terminal says so and sells nothing. Space back, the
    order is queried and the payment kept: approved once, charged once."""
    h = qr_shop()
    _code_screen(h, "1211")                                     # .11: confirms later
    h.scan(WECHAT)
    h.run(3000, until=lambda: "Confirm on phone" in h.text())
    rec = h.term.payments.journal.last()
    assert rec["state"] == "sending"
    disk.fill()
    acquirer.test_clock.now += 11                               # the customer confirms
    h.advance(5100)                                             # the next query: SUCCESS
    h.run(3000, until=lambda: h.flow() is not None and h.flow()[0] == "storage_fault")
    text = h.text()
    assert "STORAGE FULL" in text or "Storage" in text, text
    assert qr_order(acquirer, rec)["state"] == "SUCCESS"
    h.press("1")                                                # no sale meanwhile
    assert h.flow()[0] in ("storage_fault", "sale", "qr"), h.text()
    disk.free()
    h.advance(30100)
    h.run(5000, until=lambda: h.term.payments.journal.get(rec["id"])["state"] == "approved")
    got = h.term.payments.journal.get(rec["id"])
    assert got["state"] == "approved", got
    assert qr_order(acquirer, rec)["state"] == "SUCCESS"        # never cancelled meanwhile
    assert qr_order(acquirer, rec)["refunded_fee"] == 0
    assert [r["id"] for r in h.term.payments.journal.find() if r["method"] == "qr"] == [rec["id"]]
