"""Card payments end to end: the HID reader driver, DUKPT PIN, TLS to the host simulator."""
import pytest


@pytest.fixture
def pos(harness, hostsim):
    h = harness(host=(hostsim.address, hostsim.ca_file))
    h.first_supervisor()
    h.login()
    h.host = hostsim
    return h


def _card_sale(h, digits, card="visa_pin", pin="1234"):
    h.press(*digits)
    h.press("ENTER", "1")
    assert "Swipe the card" in h.text()
    h.sim.swipe(card=card)
    h.run(2000, until=lambda: h.flow()[1] != "card")
    if pin is not None and h.flow() == ("sale", "pin"):
        h.press(*pin)
        h.press("ENTER")


def _settled(h, ms=8000):
    h.run(ms, until=lambda: h.flow() in (("sale", "result"), ("sale", "copy")))
    return h.term.payments.journal.last()


def _paper(h, n):
    h.run(5000, until=lambda: len(h.sim.vprinter.receipts) >= n)
    return [r.text() for r in h.sim.vprinter.receipts]


def test_approved_sale_with_pin_and_both_receipts(pos):
    h = pos
    _card_sale(h, "1250")
    rec = _settled(h)
    assert rec["state"] == "approved", rec
    assert "APPROVED" in h.text()
    assert rec["cvm"] == "pin" and rec["last4"] == "1111" and rec["entry"] == "swipe"
    assert len(rec["auth_code"]) == 6 and len(rec["rrn"]) == 12
    paper = _paper(h, 1)[0]
    for words in ("**** 1111", "Auth code", rec["auth_code"], rec["rrn"], rec["stan"],
                  "TID HP000001", "MID 000000000000001", "PIN VERIFIED", "USD 12.50", "swiped"):
        assert words in paper, words
    assert "4111111111111111" not in paper and "411111" not in paper
    assert h.host.ledger.approved_total("HP000001") == 1250     # the host agrees, once
    assert h.host.ledger.count("HP000001", status="approved") == 1
    h.press("ENTER", "ENTER")
    assert "CUSTOMER COPY" in _paper(h, 2)[1]


def test_signature_card_asks_no_pin(pos):
    h = pos
    _card_sale(h, "700", card="mc_signature", pin=None)
    rec = _settled(h)
    assert rec["state"] == "approved" and rec["cvm"] == "signature"
    assert "**** 4444" in _paper(h, 1)[0]


@pytest.mark.parametrize("cents,words", [("05", "Do not honour"), ("51", "Insufficient funds"),
                                         ("54", "Expired card"), ("91", "Bank unavailable")])
def test_each_decline_is_said_in_words_on_screen_and_paper(pos, cents, words):
    h = pos
    _card_sale(h, "20" + cents)
    rec = _settled(h)
    assert rec["state"] == "declined" and rec["rc"] == cents
    assert "DECLINED" in h.text() and words in h.text()
    paper = _paper(h, 1)[0]
    assert "DECLINED" in paper and words in paper


def test_wrong_pin_is_declined_55(pos):
    h = pos
    _card_sale(h, "1000", pin="9999")
    rec = _settled(h)
    assert rec["state"] == "declined" and rec["rc"] == "55"
    assert "Wrong PIN" in h.text()


def test_no_reply_reverses_and_says_not_charged(pos):
    h = pos
    _card_sale(h, "1099")                       # .99: the host books it and never answers
    h.run(500)
    assert "Authorising" in h.text()
    h.advance(5100)                             # the 5 s response timeout
    rec = _settled(h)
    assert rec["state"] in ("reversal_pending", "reversed")
    assert "NOT CHARGED" in h.text() and "No reply: reversed" in h.text()
    h.run(5000, until=lambda: h.term.payments.journal.get(rec["id"])["state"] == "reversed")
    assert h.term.payments.journal.get(rec["id"])["state"] == "reversed"
    assert len(h.host.ledger.reversals("HP000001")) == 1
    assert h.host.ledger.count("HP000001", status="approved") == 0   # the booking was undone


def test_garbled_reply_is_never_taken_as_approval(pos):
    h = pos
    _card_sale(h, "1098")                       # .98: approved at the host, garbled on the wire
    h.run(1000)
    h.advance(5100)
    rec = _settled(h)
    assert rec["state"] in ("reversal_pending", "reversed")
    h.run(5000, until=lambda: h.term.payments.journal.get(rec["id"])["state"] == "reversed")
    assert h.host.ledger.count("HP000001", status="approved") == 0


def test_cancel_after_sending_reverses(pos):
    h = pos
    _card_sale(h, "1097")                       # .97: the host answers late
    h.run(300)
    h.press("CANCEL")
    assert "Authorising" in h.text()            # the answer decides, not the key
    h.advance(5100)
    rec = _settled(h)
    assert rec["state"] in ("reversal_pending", "reversed")


def test_card_errors_are_said_in_words(pos):
    h = pos
    h.press("5", "0", "0", "ENTER", "1")
    for card, words in (("visa_chip", "Chip card: use chip"), ("bad_luhn", "Card number invalid"),
                        ("unreadable", "Card not readable")):
        h.sim.swipe(card=card)
        h.run(2000, until=lambda: words in h.text())
        assert words in h.text(), card
        h.press("ENTER")
        assert "Swipe the card" in h.text()
    assert h.term.payments.journal.find() == []


def test_expired_card_is_refused_when_the_clock_is_trusted(harness, hostsim):
    h = harness(host=(hostsim.address, hostsim.ca_file), synced=True)
    h.first_supervisor()
    h.login()
    h.press("5", "0", "0", "ENTER", "1")
    h.sim.swipe(card="expired")
    h.run(2000, until=lambda: "Card expired" in h.text())
    assert "Card expired" in h.text()


def test_host_down_is_a_clear_decline_and_nothing_is_charged(harness, tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                   # nobody listens there
    h = harness(host=("127.0.0.1:%d" % port, None))
    h.first_supervisor()
    h.login()
    _card_sale(h, "1250")
    rec = _settled(h)
    assert rec["state"] == "failed" and rec["reason"] == "reason_host_down"
    assert "Host unreachable" in h.text() and "NOT CHARGED" in h.text()
    assert h.term.payments.pending_reversals() == []


def test_card_void_reverses_the_sale_at_the_host(pos):
    h = pos
    _card_sale(h, "1250")
    sale = _settled(h)
    h.press("ENTER", "CANCEL")
    h.run(2000, until=lambda: h.flow() == ("idle", "idle"))
    h.press("MENU", "3", "2", "5", "8", "0", "ENTER", "ENTER", "ENTER")
    h.wait_for("VOIDED", 8000)
    assert h.term.payments.journal.get(sale["id"])["state"] == "voided"
    assert h.host.ledger.count("HP000001", status="approved") == 0
    assert "VOID" in _paper(h, 2)[-1]


def test_card_refund_needs_the_same_card_and_stays_within_the_sale(pos):
    h = pos
    _card_sale(h, "2000")
    sale = _settled(h)
    h.press("ENTER", "CANCEL")
    h.run(2000, until=lambda: h.flow() == ("idle", "idle"))
    h.press("MENU", "2", "2", "5", "8", "0", "ENTER", "ENTER", "ENTER")
    h.press("7", "5", "0", "ENTER")
    assert "Swipe the card" in h.text()
    h.sim.swipe(card="mc_signature")
    h.run(2000, until=lambda: "Not the original card" in h.text())
    assert "Not the original card" in h.text()
    h.press("ENTER")
    h.sim.swipe(card="visa_pin")
    h.run(8000, until=lambda: h.flow() in (("refund", "result"), ("refund", "copy")))
    refund = h.term.payments.journal.last()
    assert refund["kind"] == "refund" and refund["state"] == "approved"
    assert h.term.payments.journal.get(sale["id"])["refunded"] == 750
    assert "REFUND" in _paper(h, 2)[-1]
    assert h.host.ledger.approved_total("HP000001") == 2000 - 750


def test_a_request_the_terminal_cannot_build_is_not_taken_for_a_dead_host(pos, monkeypatch):
    """A message the codec refuses is the terminal's fault: it says so, the link stays
    up and nothing is approved offline as if the host were gone."""
    from firmware.payments import hostmsg
    build = hostmsg.financial_request

    def broken(*args, **kw):
        msg = build(*args, **kw)
        msg["41"] = "HP000001-TOO-LONG"            # DE41 is ans8: the codec refuses it
        return msg
    monkeypatch.setattr(hostmsg, "financial_request", broken)
    h = pos
    _card_sale(h, "1250")
    rec = _settled(h)
    assert rec["state"] == "failed" and rec["reason"] == "reason_bad_request", rec
    assert "Cannot build request" in h.text() and "NOT CHARGED" in h.text()
    assert h.term.link_state == "up"
    assert h.host.ledger.count("HP000001") == 0
    assert not h.term.payments.queue.pending()        # no offline advice either
