"""Faults around the payment core (issue 10, items 1, 3, 6-10): each one reproduced as a
person would meet it, then asserted on what they see: the screen's words, the paper,
the host's ledger and the journal.

In one process (tests/conftest.py `harness`): the real drivers on stand-in transports,
TLS to the host simulator through the fault proxy. Chip and contactless cards are
tools/cards/vcard.py cards answering the chip reader's interface directly (the same
kernel, flows and payments service as through pcscd; tests/test_sale_chip.py covers
the PC/SC stack itself).
"""
import sqlite3

from tests.conftest import ChipSlot

TID = "HP000001"
SWIPE_OK = {"entry_modes": ["chip", "tap", "swipe"]}


def _pos(online, chip=False, **offline):
    h = online(**offline)
    if chip:
        h.chip = ChipSlot(h)
        h.term.payments.chip_reader = h.chip
    return h


# -- 1. a tap at or above the contactless limit ------------------------------------
def test_tap_over_the_contactless_limit_asks_for_the_card_and_cancel_gets_out(online, hostsim, net):
    h = _pos(online, chip=True)
    h.press("1", "0", "0", "0", "0", "0", "ENTER", "1")      # 1000.00: the sim's limit
    h.wait_for("Insert, tap or swipe")
    h.chip.tap("no_cvm")
    h.run(2000, until=lambda: "Insert the card" in h.text())
    assert "Insert the card" in h.text()
    assert h.flow() == ("sale", "card_error"), h.flow()
    h.press("CANCEL")                                       # out, as the footer says
    assert h.flow() == ("sale", "method"), h.flow()
    assert h.term.reactor.errors == 0
    # and the card, inserted as asked, pays
    h.press("1")
    h.wait_for("Insert, tap or swipe")
    h.chip.insert("online_pin")
    h.wait_for("Customer PIN")
    h.press("1", "2", "3", "4", "ENTER")
    h.run(15000, until=lambda: h.flow() in (("sale", "result"), ("sale", "copy")))
    assert "APPROVED" in h.text(), h.text()
    assert hostsim.ledger.approved_total(TID) == 100000


# -- 3. a refund of a sale approved offline ------------------------------------------
def test_refund_of_a_sale_approved_offline_reaches_the_host(online, hostsim, net):
    h = _pos(online, **SWIPE_OK)
    net.set("reset", existing=True, new=True)
    sale = h.swipe_sale("2000")
    assert sale["offline"] == 1 and sale["auth_code"] == "Y1"
    h.to_idle()
    net.set("pass")
    assert h.upload_all()
    assert hostsim.ledger.approved_total(TID) == 2000
    h.press("MENU", "2", "2", "5", "8", "0", "ENTER", "ENTER", "ENTER")   # refund the latest
    h.press("7", "5", "0", "ENTER")
    h.wait_for("Swipe the card")
    h.sim.swipe(card="visa_pin")
    h.run(15000, until=lambda: h.flow() in (("refund", "result"), ("refund", "copy")))
    refund = h.term.payments.journal.last()
    assert refund["kind"] == "refund" and refund["state"] == "approved", (refund, h.text())
    assert "APPROVED" in h.text() and "Host unreachable" not in h.text()
    assert hostsim.ledger.approved_total(TID) == 2000 - 750
    assert h.term.payments.journal.get(sale["id"])["refunded"] == 750


# -- 6. and "no retry storm": a flipped byte in a queue record's state ------------
def _flip_state_in_file(path, old, new):
    """One byte of the record's state column changed on the card, the index untouched
    (what a flipped bit does): the index still finds the row as to send, while every
    update that checks the state misses it."""
    data = bytearray(open(path, "rb").read())
    at = data.find(b"advice" + old)
    assert at >= 0, "the advice's row is not in the file"
    data[at + 6:at + 6 + len(new)] = new
    open(path, "wb").write(bytes(data))


def test_a_flipped_state_byte_does_not_start_a_retry_storm(online, harness, hostsim, net, tmp_path):
    h = _pos(online, **SWIPE_OK)
    net.set("reset", existing=True, new=True)
    sale = h.swipe_sale("2000")
    assert sale["offline"] == 1
    h.to_idle()
    path = h.term.payments.queue.path
    h.close()                                   # the power goes; the card is read elsewhere
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    _flip_state_in_file(path, b"pending", b"pendinG")
    net.set("pass")
    h = harness(host=("127.0.0.1:%d" % net.port, hostsim.ca_file), synced=True,
                offline=SWIPE_OK)
    h.boot()
    h.run(12000)
    sent = [x for x in hostsim.ledger.exchanges(TID, stan=sale["stan"]) if x["mti"][:3] == "022"]
    # sent at its own backoff (2 s, then doubling) or flagged as damaged and not sent:
    # a handful at most in 12 s, never hundreds
    assert len(sent) <= 4, (len(sent), h.term.payments.queue.records())
    assert hostsim.ledger.count(TID, status="approved") <= 1       # never booked twice
    assert h.term.reactor.errors == 0


def test_the_forwarder_never_sends_a_record_again_before_its_backoff(online, hostsim, net,
                                                                     monkeypatch):
    h = _pos(online, **SWIPE_OK)
    net.set("reset", existing=True, new=True)
    sale = h.swipe_sale("2000")
    h.to_idle()
    q = h.term.payments.queue
    # whatever the record's state: here every update misses it, so it stays "to send"
    # however often the host answers
    monkeypatch.setattr(q, "mark_sent_many", lambda ids: None)
    monkeypatch.setattr(q, "ack_many", lambda ids: None)
    net.set("pass")
    h.term.payments.forwarder.upload_now()
    h.run(8000)
    sent = [x for x in hostsim.ledger.exchanges(TID, stan=sale["stan"]) if x["mti"][:3] == "022"]
    assert 2 <= len(sent) <= 4, len(sent)      # at 0 s, 2 s, 6 s: its own backoff
    assert hostsim.ledger.count(TID, status="approved") == 1
    assert any(row[1] == "queue_stuck" for row in h.term.store.audit_log(200))


# -- 7. an OFFLINE SALE notice over a sale's result ------------------------------
def test_dismissing_an_offline_notice_over_a_sale_result(online, hostsim, net):
    h = _pos(online, **SWIPE_OK)
    net.set("reset", existing=True, new=True)
    h.swipe_sale("1251")                      # .51: the host declines the advice
    h.to_idle()
    # the link stays cut while the cash sale is keyed: the forwarder's own retry must not
    # bring the notice before the change screen is up
    h.press("1", "0", "0", "ENTER", "2", "ENTER")     # a cash sale: the change on screen
    assert h.flow() == ("sale", "change"), h.flow()
    net.set("pass")
    h.term.payments.forwarder.upload_now()
    assert h.run(20000, until=lambda: h.flow() and h.flow()[0] == "notice")
    assert "OFFLINE SALE" in h.text()
    h.press("ENTER")                            # the notice goes; the sale is back
    assert h.term.reactor.errors == 0
    assert h.flow() == ("sale", "change"), h.flow()
    assert "Change" in h.text() or "CHANGE" in h.text().upper()
    h.press("ENTER", "CANCEL")
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    assert h.flow() == ("idle", "idle")
    assert h.term.reactor.errors == 0


# -- 8. reprint: an older unprinted receipt ----------------------------------------
def test_reprint_prints_an_older_unprinted_receipt(online, harness, hostsim, net):
    h = _pos(online)
    h.sim.vprinter.set_paper(False)             # both receipts wait for paper ...
    h.press("5", "0", "0", "ENTER", "2", "ENTER")
    first = h.term.payments.journal.last()
    h.press("ENTER", "CANCEL")
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    h.press("6", "0", "0", "ENTER", "2", "ENTER")
    second = h.term.payments.journal.last()
    h.press("ENTER", "CANCEL")
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    h.close()                                   # ... and the power goes
    h = harness(host=("127.0.0.1:%d" % net.port, hostsim.ca_file), synced=True)
    h.login()
    h.wait_for("Unprinted: 2")
    assert not h.term.payments.journal.get(first["id"])["receipt_printed"]
    # Reprint, ENTER: the oldest receipt that never reached the paper comes first
    h.press("MENU", "4")
    assert "ENTER = #%d" % first["id"] in h.text(), h.text()
    h.press("ENTER")
    assert "#%d" % first["id"] in h.text() and "USD 5.00" in h.text(), h.text()
    h.press("ENTER")
    assert "Reprinting #%d" % first["id"] in h.text(), h.text()
    h.run(5000, until=lambda: any("#%d" % first["id"] in r.text()
                                  for r in h.sim.vprinter.receipts))
    [p] = [r.text() for r in h.sim.vprinter.receipts if "#%d" % first["id"] in r.text()]
    assert "DUPLICATE" in p and "USD 5.00" in p
    h.run(3000, until=lambda: h.term.payments.journal.get(first["id"])["receipt_printed"])
    assert h.term.payments.journal.get(first["id"])["receipt_printed"]
    # any receipt by its number too
    h.press("ENTER")
    h.to_idle()
    h.press("MENU", "4")
    assert "ENTER = #%d" % second["id"] in h.text(), h.text()    # the next unprinted
    h.press("CANCEL")
    h.to_idle()
    h.press("MENU", "4", *str(second["id"]))
    h.press("ENTER")
    assert "USD 6.00" in h.text(), h.text()
    h.press("ENTER")
    h.run(5000, until=lambda: any("#%d" % second["id"] in r.text()
                                  for r in h.sim.vprinter.receipts))


# -- 9. a void cut short by a restart ------------------------------------------------
def test_void_cut_short_by_a_restart_reverses_the_sale_once(online, harness, hostsim, net):
    h = _pos(online)
    sale = h.swipe_sale("1500")
    assert sale["state"] == "approved" and hostsim.ledger.count(TID, status="approved") == 1
    h.to_idle()
    net.set("reset", existing=True, new=True)
    h.press("MENU", "3")                        # void: supervisor PIN, the latest, yes
    h.press(*"2580")
    h.press("ENTER")
    h.press("ENTER")
    h.press("ENTER")
    void = h.term.payments.journal.last()
    assert void["kind"] == "void" and void["state"] == "sending"
    h.close()                                   # the power goes mid-void
    net.set("pass")
    h = harness(host=("127.0.0.1:%d" % net.port, hostsim.ca_file), synced=True)
    h.boot()
    journal = h.term.payments.journal
    assert h.run(20000, until=lambda: journal.get(sale["id"])["state"] == "voided")
    h.run(3000, until=lambda: journal.get(void["id"])["state"] == "approved")
    assert journal.get(void["id"])["state"] == "approved"
    h.run(3000)
    notes = [x["note"] for x in hostsim.ledger.exchanges(TID) if x["mti"][:3] == "042"]
    assert not [n for n in notes if "unknown" in n], notes
    assert len(hostsim.ledger.reversals(TID)) == 1
    assert hostsim.ledger.count(TID, status="approved") == 0
    assert not h.term.payments.queue.pending()


def test_void_cut_short_before_its_reversal_was_queued_leaves_the_sale_standing(online, hostsim, net):
    h = _pos(online)
    sale = h.swipe_sale("1600")
    h.to_idle()
    pay = h.term.payments
    # the power went between the void's record and its sale's reversal
    void = pay._new("void", "card", 1600, "sending", stan=pay.next_stan(),
                    original_id=sale["id"], last4=sale["last4"], entry=sale["entry"])
    pay.recover()
    assert pay.journal.get(void["id"])["state"] == "failed"
    assert pay.journal.get(sale["id"])["state"] == "approved"
    assert pay.queue.pending() == []                    # nothing to reverse at the host
    h.run(2000)
    assert hostsim.ledger.count(TID, status="approved") == 1


# -- 10. words that mislead ----------------------------------------------------------
def test_a_damaged_queue_record_is_not_called_declined_by_the_host(online, hostsim, net):
    h = _pos(online, **SWIPE_OK)
    net.set("reset", existing=True, new=True)
    sale = h.swipe_sale("2000")
    h.to_idle()
    q = h.term.payments.queue
    [rec] = q.pending()
    q.db.execute("UPDATE saf SET ciphertext = zeroblob(length(ciphertext)) WHERE id=?",
                 (rec["id"],))
    net.set("pass")
    h.press("MENU", "9", "1")                   # offline queue > upload now
    h.run(20000, until=lambda: h.flow()[0] == "notice" or q.get(rec["id"])["state"] == "corrupt")
    assert q.get(rec["id"])["state"] == "corrupt"
    if h.flow()[0] != "notice":
        h.term.queue_alert()                    # (flagged before the upload, by the storage)
    assert h.flow()[0] == "notice"
    text = h.text()
    assert "Host declined" not in text, text
    assert "damaged" in text.lower() and "not sent" in text.lower(), text
    assert hostsim.ledger.exchanges(TID, stan=sale["stan"]) == []      # never seen


def test_card_pulled_while_the_host_answers_says_reversed_not_declined(online, hostsim, net):
    h = _pos(online, chip=True)
    h.press("2", "5", "0", "0", "ENTER", "1")
    h.wait_for("Insert, tap or swipe")
    h.chip.insert("online_pin")
    h.wait_for("Customer PIN")
    net.set("delay", down_ms=1500)              # the host's answer takes its time
    h.press("1", "2", "3", "4")
    h.sim.press("ENTER")
    assert h.run(3000, until=lambda: h.flow() == ("chip", "online"))
    h.chip.remove()                             # pulled out while the host answers
    h.run(15000, until=lambda: h.flow() in (("sale", "result"), ("sale", "copy")))
    text = h.text()
    assert "NOT CHARGED" in text, text
    assert "declined offline" not in text and "Card removed" in text, text
    rec = h.term.payments.journal.last()
    assert rec["state"] in ("reversal_pending", "reversed") and rec["reason"] == "reason_card_removed"
    net.set("pass")
    h.run(15000, until=lambda: h.term.payments.journal.get(rec["id"])["state"] == "reversed")
    assert hostsim.ledger.count(TID, status="approved") == 0
    assert len(hostsim.ledger.reversals(TID)) == 1


def _unplug_printer(h):
    """The printer's cable out: nothing answers on its line any more."""
    h.sim.vprinter.reactor.remove(h.sim.vprinter.fd)
    h.sim.vprinter.reactor = None


def test_an_unplugged_printer_fails_the_self_test(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    h.press("MENU", "7", "1")                   # diagnostics > self-test: the printer asked
    h.wait_for("Printer: OK")
    h.press("ENTER")
    h.to_idle()
    _unplug_printer(h)
    h.press("MENU", "7", "1")
    assert "Printer: checking" in h.text(), h.text()
    h.run(5000, until=lambda: "checking" not in h.text())
    assert "Printer: OK" not in h.text(), h.text()
    assert "Printer: FAIL" in h.text(), h.text()


def test_a_cash_sale_without_a_printer_does_not_say_printing(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    _unplug_printer(h)
    h.press("5", "0", "0", "ENTER", "2", "ENTER")
    h.run(4000, until=lambda: "Printer not answering" in h.text())
    assert "Printing receipt" not in h.text()
    assert "Printer not answering" in h.text(), h.text()
    # a board with no printer at all says so at once
    h.press("ENTER", "CANCEL")
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    h.term.printer = None
    h.press("5", "0", "0", "ENTER", "2", "ENTER")
    assert "Printing receipt" not in h.text() and "No printer" in h.text(), h.text()


def test_a_journal_that_fails_while_an_upload_is_answered_acknowledges_nothing(online, hostsim,
                                                                             net, monkeypatch):
    """The host booked the advice but the journal cannot say so: the queue keeps the
    record (the journal first), nothing escapes into the loop, and once the journal
    takes writes the record goes again as a repeat and is booked once."""
    from firmware.core.store import StorageFault
    h = online(**SWIPE_OK)
    net.set("reset", existing=True, new=True)
    rec = h.swipe_sale("2000")
    assert rec["offline"] == 1
    h.to_idle()
    net.set("pass")
    journal = h.term.payments.journal
    real_update = journal.update
    failing = [True]

    def update(txn_id, **fields):
        if failing[0] and fields.get("upload") == "uploaded":
            raise StorageFault("io", "journal", "injected: the card stopped answering")
        return real_update(txn_id, **fields)
    monkeypatch.setattr(journal, "update", update)
    h.term.payments.forwarder.upload_now()
    h.run(6000, until=lambda: h.host.ledger.count(TID, status="approved") >= 1)
    h.run(500)
    assert h.reactor.errors == 0
    assert [q["stan"] for q in h.term.payments.queue.pending()] == [rec["stan"]]
    assert journal.get(rec["id"])["upload"] == "pending"
    failing[0] = False
    assert h.upload_all()
    assert journal.get(rec["id"])["upload"] == "uploaded"
    assert h.host.ledger.approved_total(TID) == 2000         # booked once, repeat or not
