"""Selling items on the real terminal (issue 12): scans through the HID scanner driver,
the demo catalogue, the cart's keys, payment, the itemised receipt, stock.

The catalogue is the simulator's demo catalogue (config/demo_catalogue.csv, codes from
tools/sim/demo_codes.py), loaded into the terminal's own catalogue.db as `handpos sim`
does on a fresh data folder.
"""
import json

import pytest

from tools.sim import demo_codes

WATER, COLA = demo_codes.ITEMS[0], demo_codes.ITEMS[1]


def test_scan_change_void_pay_cash_itemised_receipt_and_stock(shop):
    h = shop()
    water0, cola0 = h.stock("1"), h.stock("2")
    apples0 = h.stock("00101")
    text = h.scan(WATER)                      # from the idle screen: the cart opens
    assert h.flow() == ("cart", "cart"), text
    assert "Mineral water" in text and "1.29" in text
    h.scan(COLA)
    h.scan(COLA)                              # the same item again: a line of its own
    text = h.scan(demo_codes.SCALE_PRICE)    # a price-embedded scale label: 3.50
    assert "3.50" in text, text
    assert "Cart 4" in text
    h.press("UP")                               # the second cola: quantity 3
    assert "F1 qty  F2 void" in h.text()
    h.press("F1")
    h.press("3", "ENTER")
    assert "3x Cola" in h.text(), h.text()
    h.press("UP")                               # the first cola: voided
    h.press("F2")
    assert "Void this line?" in h.text()
    h.press("ENTER")
    text = h.text()
    # water 1.29 + 3 x cola 1.49 + apples label 3.50 = 9.26
    assert "Total 9.26" in text, text
    h.press("ENTER")                            # pay: the sale's methods, 9.26 preset
    assert h.flow() == ("sale", "method"), h.text()
    assert "9.26" in h.text()
    h.press("2", "ENTER")                       # cash, exact
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "approved" and rec["amount"] == 926
    cart = json.loads(rec["cart"])
    assert [l["void"] for l in cart["lines"]] == [False, True, False, False]
    h.run(3000, until=lambda: h.sim.vprinter.receipts)
    paper = h.sim.vprinter.receipts[0].text()   # the merchant's copy, itemised
    for words in ("Mineral water", "3 x 1.49", "VOID", "Subtotal", "Incl. tax", "9.26"):
        assert words in paper, paper
    h.to_idle()
    assert h.flow() == ("idle", "idle")
    assert h.stock("1") == water0 - 1
    assert h.stock("2") == cola0 - 3          # the voided line took nothing
    assert h.stock("00101") < apples0         # grams worked back from the label's price
    assert h.term.payments.journal.get(rec["id"])["stocked"] == 1


def test_unknown_and_bad_barcodes_are_named_and_the_sale_goes_on(shop):
    h = shop()
    text = h.scan(WATER)
    text = h.scan("6901234599992")            # valid check digit, no such item
    assert "Not found" in text and "6901234599992" in text, text
    text = h.scan(demo_codes.BAD_CHECK)
    assert "Bad barcode" in text and "Scan again" in text, text
    h.press("1")                                # the error goes with the next key
    h.press("BKSP")
    text = h.text()
    assert "Total 1.29" in text and "Cart 1" in text, text


def test_typed_plu_and_a_weighed_item(shop):
    h = shop()
    h.press("F1")                               # an item sale by PLU
    assert h.flow() == ("cart", "cart")
    assert "Scan or type PLU" in h.text()
    h.press("1", "0", "2", "ENTER")             # PLU 102: bananas, by kg
    assert h.flow() == ("cart", "weight"), h.text()
    h.press("7", "5", "0", "ENTER")             # 750 g
    text = h.text()
    assert "0.750 kg" in text or "750 g" in text, text
    h.press("9", "9", "9", "ENTER")             # no such PLU
    assert "No PLU 999" in h.text()


def test_a_declined_card_keeps_the_cart(shop, hostsim):
    h = shop(host=(hostsim.address, hostsim.ca_file))
    h.run(3000, until=lambda: h.term.link_state == "up")
    h.scan(WATER)
    h.press("ENTER")
    h.press("1")                                # card
    h.sim.swipe(card="visa_pin")
    h.run(2000, until=lambda: h.flow()[1] != "card")
    h.press("9", "9", "9", "9", "ENTER")        # a wrong PIN: declined 55
    h.run(15000, until=lambda: h.flow() in (("sale", "result"), ("sale", "copy")))
    assert h.term.payments.journal.last()["state"] == "declined"
    for _ in range(4):                          # through the result and the receipts
        if h.flow() == ("cart", "cart"):
            break
        h.press("CANCEL")
        h.run(3000, until=lambda: h.flow() in (("cart", "cart"), ("sale", "copy")))
    assert h.flow() == ("cart", "cart"), h.text()
    assert "Not paid" in h.text() and "Mineral water" in h.text()    # the cart stays
    h.press("BKSP")
    assert "Total 1.29" in h.text()
    water = h.term.catalogue.find_by_plu("1")
    assert h.term.catalogue.movements(water["id"])[-1]["reason"] != "sale"    # no stock taken


def test_a_power_cut_after_the_approval_takes_the_stock_once_at_start(shop, harness):
    """The terminal dies between the cash approval and the end of the sale flow (its
    receipts): the record is approved, the stock not yet taken. The next start takes
    it, once; a further start does not take it again."""
    h = shop()
    water0 = h.stock("1")
    h.scan(WATER)
    h.press("ENTER", "2", "ENTER")              # cash: approved, the change on screen
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "approved" and rec["cart"] and not rec["stocked"]
    assert h.stock("1") == water0             # not yet: the sale flow had not ended
    h.close()                                   # the power cut
    h = harness()
    h.boot()
    assert h.stock("1") == water0 - 1
    assert h.term.payments.journal.get(rec["id"])["stocked"] == 1
    h.close()
    h = harness()
    h.boot()
    assert h.stock("1") == water0 - 1         # once


def test_a_voided_item_sale_puts_its_items_back(shop):
    h = shop()
    water0, cola0 = h.stock("1"), h.stock("2")
    h.scan(WATER)
    h.scan(COLA)
    h.press("ENTER", "2", "ENTER", "ENTER", "CANCEL")     # cash, merchant copy, no customer copy
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    assert (h.stock("1"), h.stock("2")) == (water0 - 1, cola0 - 1)
    h.press("MENU", "3", "2", "5", "8", "0", "ENTER")     # void: the supervisor's PIN
    h.press("ENTER", "ENTER")                             # the latest sale
    h.wait_for("VOIDED")
    assert (h.stock("1"), h.stock("2")) == (water0, cola0)
    sale = h.term.payments.journal.find(kind="sale")[-1]
    assert sale["state"] == "voided" and sale["stocked"] == 2
    water = h.term.catalogue.find_by_plu("1")
    assert [m["reason"] for m in h.term.catalogue.movements(water["id"])][-2:] == ["sale", "void"]


def test_no_sale_below_zero_when_the_merchant_refuses_negative_stock(shop):
    h = shop()
    cat = h.term.catalogue
    cat.allow_negative_stock = False            # [retail] allow_negative_stock = false
    water = cat.find_by_plu("1")
    cat.count(water["id"], 1, "1", "test")      # one bottle left
    h.scan(WATER)
    text = h.scan(WATER)
    assert "In stock 1" in text and "Cart 1" in text, text
    h.press("UP", "F1")
    h.press("2", "ENTER")                       # nor by the quantity
    assert "In stock 1" in h.text(), h.text()
    h.press("BKSP")
    h.press("ENTER", "2", "ENTER", "ENTER", "CANCEL")
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    assert cat.stock(water["id"]) == 0


def test_with_the_host_gone_an_item_sale_is_approved_offline_itemised_and_stocked(online, net):
    """The network cut mid-day: a swiped item sale within the offline limits is
    approved OFFLINE, its receipt lists the items, the stock goes down, and the advice
    waits in the queue with the sale's amount."""
    h = online(entry_modes=["chip", "tap", "swipe"])
    from tools import catalogue_csv
    config = h.term.config
    catalogue_csv.load_demo(config["storage"]["data_dir"],
                            h.sim.built.datadir.keys.key("data"), config)
    water0 = h.stock("1")
    net.set("reset", existing=True, new=True)           # the host is gone
    h.scan(WATER)
    h.scan(COLA)
    h.press("ENTER", "1")
    h.sim.swipe(card="visa_pin")
    h.run(2000, until=lambda: h.flow()[1] != "card")
    h.press("1", "2", "3", "4", "ENTER")
    h.run(15000, until=lambda: h.flow() in (("sale", "result"), ("sale", "copy")))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "approved" and rec["offline"] == 1 and rec["amount"] == 278, rec
    assert "OFFLINE" in h.text().upper(), h.text()
    h.run(3000, until=lambda: h.sim.vprinter.receipts)
    paper = h.sim.vprinter.receipts[0].text()
    assert "Mineral water" in paper and "Cola" in paper and "OFFLINE" in paper, paper
    h.to_idle()
    assert h.stock("1") == water0 - 1
    assert [q["amount"] for q in h.term.payments.queue.pending()] == [278]


def test_a_scan_while_the_cart_menu_is_up_goes_into_the_cart(shop):
    """A cashier opens the cart's menu, then the customer hands over one more item and
    it is scanned: the menu closes and the item is in the cart, not lost."""
    h = shop()
    h.scan(WATER)
    h.press("MENU")
    assert h.flow() == ("cart_menu", "menu"), h.text()
    text = h.scan(COLA)
    assert h.flow() == ("cart", "cart"), text
    assert "Cart 2" in text and "Cola" in text, text
