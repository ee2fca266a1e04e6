"""Refund of an item sale from its receipt, by lines and quantities (issue 12 item 5),
on the whole simulated board: the money back the way it came, the refund's receipt
itemised, the goods back on the shelf, never more than was sold and not yet refunded.
"""
import json

from tools.sim import demo_codes

WATER, COLA = demo_codes.ITEMS[0], demo_codes.ITEMS[1]


def _sell_water_and_three_colas(h):
    """Water 1.29 and 3 x cola 1.49 = 5.76, cash; the sale's record."""
    h.scan(WATER)
    h.scan(COLA)
    h.press("F1", "3", "ENTER")
    assert "3x Cola" in h.text() and "Total 5.76" in h.text(), h.text()
    h.press("ENTER", "2", "ENTER")
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy", "result"))
    sale = h.term.payments.journal.last()
    assert sale["state"] == "approved" and sale["amount"] == 576
    h.to_idle()
    return sale


def _to_lines(h, sale):
    """MENU > Refund, the supervisor's PIN (logged in as one), the sale by its number."""
    h.press("MENU", "2")
    h.press(*"2580")
    h.press("ENTER")
    h.press(*str(sale["id"]))
    h.press("ENTER")
    assert "#%d" % sale["id"] in h.text(), h.text()
    h.press("ENTER")
    assert h.flow() == ("refund_lines", "lines"), h.text()
    return h.text()


def _refund_paper(h):
    """The refund's merchant copy, once the virtual printer has it."""
    def found():
        return [r.text() for r in h.sim.vprinter.receipts if "REFUND" in r.text()]
    h.run(5000, until=lambda: found())
    return found()[-1]


def test_refund_two_of_three_colas_in_cash_then_never_more_than_is_left(shop):
    h = shop()
    sale = _sell_water_and_three_colas(h)
    cola_after_sale = h.stock("2")
    text = _to_lines(h, sale)
    assert "Mineral water" in text and "0/1" in text and "0/3" in text, text
    assert "Refund 0.00" in text
    h.press("DOWN")                             # the colas
    h.press("4", "ENTER")                       # four: more than were sold
    assert "At most 3" in h.text(), h.text()
    h.press("2", "ENTER")
    text = h.text()
    assert "2/3" in text and "Refund 2.98" in text, text
    h.press("ENTER")                            # the refund's total, how it goes back
    text = h.text()
    assert h.flow() == ("refund_lines", "confirm"), text
    assert "Items back: 2" in text and "Refund 2.98" in text and "cash" in text, text
    h.press("ENTER")                            # paid back in cash: the drawer opens
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy"))
    assert "Pay back" in h.text() and h.term.screen.big == "2.98", h.text()
    refund = h.term.payments.journal.last()
    assert refund["kind"] == "refund" and refund["amount"] == 298
    assert refund["original_id"] == sale["id"]
    assert json.loads(refund["cart"])["refund"]["picks"] == [[1, 2]]
    assert h.term.payments.journal.get(sale["id"])["refunded"] == 298
    paper = _refund_paper(h)              # the refund's receipt, itemised
    for words in ("REFUND", "Cola", "2 x 1.49", "-2.98", "-USD 2.98", "#%d" % sale["id"]):
        assert words in paper, paper
    assert "Mineral water" not in paper, paper
    h.to_idle()
    assert h.stock("2") == cola_after_sale + 2                # back on the shelf
    assert h.term.payments.journal.get(refund["id"])["stocked"] == 1
    moves = h.term.catalogue.movements(h.term.catalogue.find_by_plu("2")["id"])
    assert moves[-1]["reason"] == "refund" and moves[-1]["ref"] == "refund #%d" % refund["id"]

    # the rest: one cola and the water are left; the colas cannot give two again
    text = _to_lines(h, sale)
    assert "0/1" in text and "0/3" not in text, text
    h.press("DOWN", "2", "ENTER")
    assert "At most 1" in h.text(), h.text()
    h.press("F1")                               # all that is left of the cola
    h.press("UP", "F1")                         # and the water
    assert "Refund 2.78" in h.text(), h.text()
    h.press("ENTER", "ENTER")
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy"))
    assert h.term.payments.journal.get(sale["id"])["refunded"] == 576   # to the cent
    h.to_idle()

    # nothing left: the sale is not offered again
    h.press("MENU", "2", *"2580")
    h.press("ENTER", *str(sale["id"]))
    h.press("ENTER")
    assert "Fully refunded" in h.text(), h.text()


def test_cancel_on_the_lines_refunds_nothing(shop):
    h = shop()
    sale = _sell_water_and_three_colas(h)
    water = h.stock("1")
    _to_lines(h, sale)
    h.press("ENTER")                            # nothing chosen
    assert "Choose a line" in h.text()
    h.press("F1", "ENTER")                      # the water, then back from the total
    h.press("CANCEL")
    assert h.flow() == ("refund_lines", "lines")
    h.press("CANCEL")
    h.run(2000, until=lambda: h.flow() == ("idle", "idle"))
    assert h.term.payments.journal.last()["id"] == sale["id"]      # nothing recorded
    assert h.stock("1") == water


def test_a_weighed_line_is_refunded_in_grams(shop):
    h = shop()
    h.press("F1", "1", "0", "2", "ENTER", "7", "5", "0", "ENTER")     # bananas 750 g
    h.press("ENTER", "2", "ENTER")
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy", "result"))
    sale = h.term.payments.journal.last()
    h.to_idle()
    bananas = h.stock("102")
    _to_lines(h, sale)
    h.press("8", "0", "0", "ENTER")             # 800 g of 750
    assert "At most 0.750 kg" in h.text(), h.text()
    h.press("2", "5", "0")
    assert "Grams 250" in h.text() and "of 750" in h.text(), h.text()
    h.press("ENTER", "ENTER", "ENTER")
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy"))
    refund = h.term.payments.journal.last()
    h.to_idle()
    # a third of the line's money, rounded once: F(250) - F(0) of the sold total
    line = json.loads(sale["cart"])["lines"][0]
    assert refund["amount"] == (line["total"] * 250 * 2 + 750) // (750 * 2)
    assert h.stock("102") == bananas + 250


def test_a_card_item_sale_is_refunded_to_the_same_card(shop, hostsim):
    h = shop(host=(hostsim.address, hostsim.ca_file))
    h.run(3000, until=lambda: h.term.link_state == "up")
    h.scan(WATER)
    h.scan(COLA)
    h.press("ENTER", "1")
    h.sim.swipe(card="visa_pin")
    h.run(2000, until=lambda: h.flow()[1] != "card")
    h.press(*"1234")
    h.press("ENTER")
    h.run(15000, until=lambda: h.flow() in (("sale", "result"), ("sale", "copy")))
    sale = h.term.payments.journal.last()
    assert sale["state"] == "approved" and sale["amount"] == 278
    h.to_idle()
    _to_lines(h, sale)
    h.press("DOWN", "F1", "ENTER")
    assert "To card *" + sale["last4"] in h.text(), h.text()
    h.press("ENTER")
    assert h.flow()[0] == "refund" and h.flow()[1] == "card", h.flow()
    h.sim.swipe(card="visa_pin")
    h.run(15000, until=lambda: h.flow()[1] in ("result", "copy"))
    refund = h.term.payments.journal.last()
    assert refund["kind"] == "refund" and refund["state"] == "approved"
    assert refund["amount"] == 149
    assert h.term.payments.journal.get(sale["id"])["refunded"] == 149
    h.to_idle()
    assert h.term.payments.journal.get(refund["id"])["stocked"] == 1


def test_a_power_cut_after_the_refund_puts_the_goods_back_once_at_start(shop, harness):
    """The terminal dies while the refund's change is on the screen: the refund is
    approved, its goods not yet back. The next start puts them back, once."""
    h = shop()
    sale = _sell_water_and_three_colas(h)
    cola = h.stock("2")
    _to_lines(h, sale)
    h.press("DOWN", "F1", "ENTER", "ENTER")     # all three colas, cash
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy"))
    refund = h.term.payments.journal.last()
    assert refund["kind"] == "refund" and refund["state"] == "approved"
    assert h.stock("2") == cola and not refund["stocked"]
    h.close()                                   # the power cut
    h = harness()
    h.boot()
    assert h.stock("2") == cola + 3
    assert h.term.payments.journal.get(refund["id"])["stocked"] == 1
    h.close()
    h = harness()
    h.boot()
    assert h.stock("2") == cola + 3           # once


def test_a_sale_with_a_refund_cannot_be_voided_and_its_refund_is_not_a_sale(shop):
    h = shop()
    sale = _sell_water_and_three_colas(h)
    _to_lines(h, sale)
    h.press("F1", "ENTER", "ENTER")             # the water back
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy"))
    h.to_idle()
    h.press("MENU", "3", *"2580")               # void
    h.press("ENTER", *str(sale["id"]))
    h.press("ENTER")
    assert "Refunded: cannot void" in h.text(), h.text()


def test_the_receipts_barcode_picks_the_sale(shop):
    """The customer brings the receipt back: its barcode, read off the paper the
    virtual printer drew, is scanned on the refund's pick screen; another terminal's
    receipt, a misread and an item's code are named and pick nothing."""
    from firmware.retail import receipt_code
    h = shop()
    sale = _sell_water_and_three_colas(h)
    h.run(3000, until=lambda: any(r.barcodes for r in h.sim.vprinter.receipts))
    code = [r for r in h.sim.vprinter.receipts if r.barcodes][0].barcodes[0]
    assert receipt_code.parse(code, h.term.config["terminal"]["id"]) == sale["id"]
    h.press("MENU", "2", *"2580")
    h.press("ENTER")
    assert h.flow() == ("pick", "number"), h.text()
    other = receipt_code.encode("ZZ999999", sale["id"])
    h.scan(other)
    assert "Another terminal" in h.text() and h.flow() == ("pick", "number"), h.text()
    h.scan(code[:-1] + str((int(code[-1]) + 1) % 10))     # one digit misread
    assert "Scan again" in h.text(), h.text()
    h.scan(WATER)                                          # an item, not a receipt
    assert "Not a receipt code" in h.text(), h.text()
    h.scan(code)
    assert h.flow() == ("pick", "confirm"), h.text()
    assert "#%d" % sale["id"] in h.text() and "5.76" in h.text()
    h.press("ENTER")
    assert h.flow() == ("refund_lines", "lines"), h.text()


def test_a_receipt_scanned_on_the_idle_screen_opens_its_refund_and_is_no_item(shop):
    from firmware.retail import receipt_code
    h = shop()
    sale = _sell_water_and_three_colas(h)
    code = receipt_code.encode(h.term.config["terminal"]["id"], sale["id"])
    h.scan(code)                           # the customer's receipt, on the idle screen
    assert h.flow() == ("supervisor", "pin"), h.text()
    h.press(*"2580")
    h.press("ENTER")
    assert h.flow() == ("pick", "confirm"), h.text()   # the sale, to confirm
    assert "#%d" % sale["id"] in h.text() and "5.76" in h.text()
    h.press("ENTER")
    assert h.flow() == ("refund_lines", "lines"), h.text()
    h.press("CANCEL")
    h.run(2000, until=lambda: h.flow() == ("idle", "idle"))
    h.scan(WATER)                             # in a cart the receipt is no item
    h.scan(code)
    assert "A receipt: Refund" in h.text() and "Cart 1" in h.text(), h.text()


def test_the_simulators_receipt_scan_opens_the_refund_of_the_last_receipt(shop):
    """The simulator's R key: the barcode the virtual printer last drew."""
    h = shop()
    assert h.sim.scan_receipt() is None         # nothing printed yet
    sale = _sell_water_and_three_colas(h)
    h.run(3000, until=lambda: any(r.barcodes for r in h.sim.vprinter.receipts))
    code = h.sim.scan_receipt()
    from tools.sim.control import _pending_bytes
    h.run(1000, until=lambda: _pending_bytes(h.sim.scanner_device.fileno()) == 0)
    h.run(100)
    assert code and code.startswith("R")
    assert h.flow() == ("supervisor", "pin"), h.text()
    h.press(*"2580")
    h.press("ENTER")
    assert h.flow() == ("pick", "confirm") and "#%d" % sale["id"] in h.text(), h.text()


def test_a_sale_whose_items_this_release_cannot_read_is_named_and_nothing_is_refunded(shop):
    """The sale's items in a form this release does not know (a later release's cart
    copy, sealed and MACed as any record): the pick says so in words; no refund is
    recorded, the sale stays whole, and other sales can still be refunded."""
    h = shop()
    sale = _sell_water_and_three_colas(h)
    good = _sell_water_and_three_colas(h)
    h.term.payments.journal.update(sale["id"], cart=json.dumps({"lines": [{"v": 9}]}))
    rows = len(h.term.payments.journal.find())
    h.press("MENU", "2", *"2580")
    h.press("ENTER", *str(sale["id"]))
    h.press("ENTER")
    assert "Items unreadable" in h.text(), h.text()
    assert h.flow()[0] != "refund_lines", h.text()
    h.press("ENTER")                                # no line screen behind the words
    assert h.flow()[0] != "refund_lines", h.text()
    assert len(h.term.payments.journal.find()) == rows
    assert h.term.payments.journal.get(sale["id"])["refunded"] == 0
    h.to_idle()
    text = _to_lines(h, good)                       # the readable one still can
    assert "0/3" in text, text
