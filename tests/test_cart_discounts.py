"""The cart's menu on the real terminal (issue 12 item 3, "Bad input"): line and cart
discounts, price overrides with a supervisor above the [retail] limits, browsing the
categories, and unknown barcodes (a keyed price, or the item added by a supervisor).

The shop is test_cart_sale.py's: the demo catalogue in USD, 13 % VAT included;
operator 1 (PIN 2580) is the supervisor, and the tests that need a cashier add
operator 7 (PIN 1357)."""
import json
import os

import pytest

from firmware.core import config as schema
from tools.sim import demo_codes

WATER, COLA = demo_codes.ITEMS[0], demo_codes.ITEMS[1]

UNKNOWN = "6901234599992"           # a good check digit, in no catalogue
INVENTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "firmware", "flows", "inventory.py")


def _cashier(h):
    """Operator 7, a cashier, added by the supervisor and logged in."""
    h.add_operator("1", "7", "1357")            # a cashier, ID 7
    h.run(500, until=lambda: h.flow() == ("idle", "idle"))
    h.press("MENU", "8")                        # log out
    h.login("7", "1357")
    assert h.term.role() == "cashier", h.text()


def _pay_cash(h):
    """ENTER pays, cash, exact; the journal record and the merchant's paper."""
    h.press("ENTER")
    assert h.flow() == ("sale", "method"), h.text()
    h.press("2", "ENTER")
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "approved", rec
    h.run(3000, until=lambda: h.sim.vprinter.receipts)
    paper = h.sim.vprinter.receipts[0].text()
    h.to_idle()
    return rec, paper


def _totals_on_paper(paper):
    return [line.split()[-1] for line in paper.splitlines() if line.strip().startswith("TOTAL")]


def _audit(h, event):
    return [row for row in h.term.store.audit_log(200) if row[1] == event]


def _cart(h):
    return h.term.current().cart if h.flow()[0] == "cart" else None


def test_a_cashier_gives_a_5_percent_line_discount_within_the_limit(shop):
    h = shop()
    _cashier(h)
    h.scan(WATER)
    h.scan(COLA)                              # the newest line is the chosen one
    text = h.press("MENU")
    assert "Cart menu" in text and "1 Line discount" in text and "4 Browse" in text, text
    text = h.press("1")
    assert "1 Percent off" in text and "2 Amount off" in text, text
    assert "No discount" not in text            # nothing to remove yet
    text = h.press("1", "5")
    assert "Cola" in text and "1.49" in text and "5_%" not in text and "5%" in text, text
    text = h.press("ENTER")                     # 5 % of 1.49 = 0.0745 -> 0.07
    assert h.flow() == ("cart_discount", "confirm"), text
    assert "Off 5%" in text and "-0.07" in text and "Total 2.71" in text, text
    text = h.press("ENTER")                     # within 10 %: no supervisor
    assert h.flow() == ("cart", "cart"), text
    assert "Total 2.71" in text and "1.42" in text, text
    assert h.term.current().cart.line(1).discount == ("percent", 5000)
    rows = _audit(h, "line_discount")
    assert rows and rows[0][2] == "7" and "5%" in rows[0][3], rows
    rec, paper = _pay_cash(h)
    assert rec["amount"] == 271
    assert "Discount 5%" in paper and "-0.07" in paper, paper
    assert _totals_on_paper(paper) == ["2.71"], paper


def test_a_50_percent_cart_discount_needs_a_supervisor_and_prints(shop):
    h = shop()
    _cashier(h)
    h.scan(WATER)
    h.scan(COLA)                              # 1.29 + 1.49 = 2.78
    h.press("MENU", "2", "1", "5", "0")
    text = h.press("ENTER")
    assert "Subtotal" in text and "Off 50%" in text and "-1.39" in text, text
    text = h.press("ENTER")                     # above 10 %: a supervisor
    assert h.flow()[0] == "supervisor", text
    assert "Approve discount" in text, text
    h.press("1", "ENTER", "9", "9", "9", "9")
    text = h.press("ENTER")                     # a wrong PIN: refused, asked again
    assert h.flow() == ("supervisor", "id") and "Wrong" in text, text
    assert h.term.flows[-2].cart.discount is None
    h.press("CANCEL")                           # no supervisor: not given
    text = h.text()
    assert h.flow() == ("cart_discount", "confirm") and "Not approved" in text, text
    text = h.press("ENTER")                     # asked again; the right PIN this time
    h.press("1", "ENTER", "2", "5", "8", "0")
    text = h.press("ENTER")
    assert h.flow() == ("cart", "cart"), text
    assert "Total 1.39" in text, text
    cart = _cart(h)
    assert cart.discount == ("percent", 50000) and cart.discount_by == "1"
    rows = _audit(h, "cart_discount")
    assert rows and rows[0][2] == "1" and "for 7" in rows[0][3], rows
    rec, paper = _pay_cash(h)
    assert rec["amount"] == 139
    assert json.loads(rec["cart"])["discount_by"] == "1"
    assert "Discount 50%" in paper and "-1.39" in paper, paper
    assert _totals_on_paper(paper) == ["1.39"], paper


def test_a_cashier_lowering_a_price_needs_a_supervisor_raising_it_not(shop):
    h = shop()
    _cashier(h)
    h.scan(COLA)
    text = h.press("MENU", "3")
    assert "Change price" in text and "Was" in text and "1.49" in text, text
    text = h.press("1", "5", "9", "ENTER")      # up: the cashier's own call
    assert "Now" in text and "1.59" in text, text
    text = h.press("ENTER")
    assert h.flow() == ("cart", "cart") and "Total 1.59" in text, text
    h.press("MENU", "3", "1", "0", "0", "ENTER")
    text = h.press("ENTER")                     # below the catalogue's 1.49
    assert h.flow()[0] == "supervisor" and "Approve price" in text, text
    h.press("1", "ENTER", "2", "5", "8", "0")
    text = h.press("ENTER")
    assert "Total 1.00" in text, text
    line = _cart(h).line(0)
    assert (line.price, line.original_price, line.override_by) == (100, 149, "1")


def test_overrides_and_discounts_print_and_the_journal_agrees_to_the_cent(shop):
    """A supervisor at the till is not asked for a PIN again. Water 5 % off, cola at
    1.00 instead of 1.49, an apple label, then 1.00 off the cart: the receipt shows
    each and its total is the journal's amount."""
    h = shop()
    h.scan(WATER)
    h.scan(COLA)
    h.press("MENU", "3", "1", "0", "0", "ENTER")
    text = h.press("ENTER")                     # no supervisor screen
    assert h.flow() == ("cart", "cart"), text
    h.press("UP")                               # the water
    h.press("MENU", "1", "1", "5", "ENTER", "ENTER")
    h.press("MENU", "2", "2", "1", "0", "0", "ENTER")
    text = h.press("ENTER")
    cart = _cart(h)
    # water 1.29 - 0.06 + cola 1.00 = 2.23, - 1.00 = 1.23
    assert cart.totals["subtotal"] == 223 and cart.total() == 123, text
    assert "Total 1.23" in text, text
    rec, paper = _pay_cash(h)
    assert rec["amount"] == 123
    for words in ("Price 1.00, was 1.49", "Discount 5%", "-0.06", "Discount", "-1.00",
                  "Subtotal"):
        assert words in paper, paper
    assert _totals_on_paper(paper) == ["1.23"], paper
    assert json.loads(rec["cart"])["totals"]["total"] == rec["amount"]
    assert [r[1] for r in h.term.store.audit_log(50) if r[1] in (
        "price_override", "line_discount", "cart_discount")] == [
        "cart_discount", "line_discount", "price_override"]


def test_discounts_and_prices_past_the_cart_limits_are_refused_with_the_limit(shop):
    h = shop()
    h.term.config["retail"]["max_line_amount"] = 5000       # 50.00 a line
    h.scan(WATER)
    h.press("MENU", "1", "1", "1", "5", "0")
    text = h.press("ENTER")                     # 150 %
    assert h.flow() == ("cart_discount", "value") and "At most 100%" in text, text
    h.press("CLEAR", "1", "2", ".", "5")
    text = h.press("ENTER")                     # 12.5 % of 1.29 = 0.16125 -> 0.16
    assert "Off 12.5%" in text and "-0.16" in text, text
    h.press("CANCEL", "CANCEL", "2", "2", "0", "0")
    text = h.press("ENTER")                     # 2.00 off a line of 1.29
    assert "At most 1.29 off" in text, text
    h.press("CANCEL", "CANCEL", "CANCEL")
    assert h.flow() == ("cart", "cart"), h.text()
    text = h.press("MENU", "3", "5", "0", "0", "0")
    assert "50.00" in text
    text = h.press("1")                         # 500.01: refused as it is typed
    assert "Price max 50.00" in text and "50.00" in text, text
    h.press("CANCEL", "CANCEL")
    h.press("UP", "F1", "3", "0", "ENTER")      # 30 waters: 38.70
    h.press("MENU", "3", "2", "0", "0")
    text = h.press("ENTER")                     # 30 x 2.00 = 60.00, the line max is 50.00
    assert "Line max 50.00" in text, text
    h.press("CANCEL", "CANCEL")
    assert _cart(h).total() == 30 * 129


def test_browse_adds_items_from_a_category(shop):
    h = shop()
    h.press("F1")                               # an empty cart by PLU
    text = h.text()
    assert "MENU: browse, more" in text, text
    text = h.press("MENU", "4")
    assert "1 Drinks" in text and "2 Snacks" in text, text
    text = h.press("ENTER")                     # Drinks, by English name
    assert h.flow() == ("cart_browse", "items"), text
    assert "Cola 330ml" in text and "1.49" in text and "1/5" in text, text
    h.press("DOWN", "DOWN", "DOWN")             # the fourth: Mineral water
    text = h.press("DOWN")                      # the fifth, on the second page
    assert "5/5" in text and "Orange juice" in text, text
    text = h.press("ENTER")
    assert h.flow() == ("cart", "cart"), text
    assert "Orange juice" in text and "Total 3.99" in text, text
    h.press("MENU", "4", "UP")                  # wraps to the last category: Fruit
    text = h.press("ENTER")
    assert "Apples" in text and "/kg" in text, text
    h.press("ENTER")                            # apples are weighed
    assert h.flow() == ("cart", "weight"), h.text()
    text = h.press("5", "0", "0", "ENTER")
    assert "0.500 kg" in text, text
    assert _cart(h).totals["lines"] == 2


def test_browse_in_chinese_shows_the_chinese_names(shop):
    h = shop()
    h.term.set_language("zh")                   # as Settings > Language does
    h.press("F1")
    text = h.press("MENU", "4")
    assert "饮料" in text and "零食" in text, text
    text = h.press("2")                         # a digit opens that category
    assert "巧克力" in text and "薯片" in text, text
    text = h.press("ENTER")                     # the first by English name: chocolate
    assert h.flow() == ("cart", "cart") and "巧克力" in text, text


def test_an_unknown_barcode_sells_at_a_keyed_price_when_the_merchant_allows_it(shop):
    h = shop()
    h.term.config["retail"]["keyed_unknown"] = True
    h.scan(WATER)
    text = h.scan(UNKNOWN)
    assert "Not found" in text and UNKNOWN in text and "ENTER: key a price" in text, text
    assert "F4 add" in text
    text = h.press("ENTER")
    assert h.flow() == ("cart", "keyed") and UNKNOWN in text, text
    text = h.press("ENTER")
    assert "Enter an amount" in text
    h.press("3", "5", "0")
    text = h.press("ENTER")
    assert h.flow() == ("cart", "cart"), text
    assert "Total 4.79" in text and UNKNOWN[:8] in text, text
    line = _cart(h).line(1)
    assert (line.kind, line.name_en, line.price) == ("misc", UNKNOWN, 350)
    rows = _audit(h, "unknown_keyed")
    assert rows and UNKNOWN in rows[0][3] and "3.50" in rows[0][3], rows
    rec, paper = _pay_cash(h)
    assert rec["amount"] == 479 and UNKNOWN in paper, paper


def test_an_unknown_barcode_offers_no_keyed_price_by_default(shop):
    h = shop()
    assert h.term.config["retail"]["keyed_unknown"] is False
    h.scan(WATER)
    text = h.scan(UNKNOWN)
    assert "Not found" in text and UNKNOWN in text, text
    assert "key a price" not in text and "Total 1.29" in text, text
    text = h.press("ENTER")                     # puts the notice away; never pays
    assert h.flow() == ("cart", "cart") and "Not found" not in text, text
    assert _cart(h).totals["lines"] == 1
    h.scan(UNKNOWN)
    text = h.press("4")                         # a digit: on with a PLU
    assert h.flow() == ("cart", "cart") and "PLU 4" in text, text


@pytest.mark.skipif(not os.path.exists(INVENTORY),
                    reason="firmware/flows/inventory.py (AddItemFlow) is not written yet")
def test_f4_adds_an_unknown_item_through_a_supervisor_and_sells_it(shop):
    """A cashier scans a code nobody entered: F4, the supervisor's PIN, each, 2.50,
    confirmed (firmware/flows/inventory.py's questions); the new item is in the
    catalogue and on the cart as its scan would have put it."""
    h = shop()
    _cashier(h)
    h.scan(WATER)
    h.scan(UNKNOWN)
    text = h.press("F4")
    assert h.flow()[0] == "supervisor", text
    h.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    h.press("1")                                # sold each
    h.press("2", "5", "0", "ENTER")
    text = h.press("ENTER")                     # confirmed: added, and into the cart
    assert h.flow() == ("cart", "cart"), text
    assert "Total 3.79" in text and "Cart 2" in text, text
    item = h.term.catalogue.find_by_barcode(UNKNOWN)
    assert item is not None and item["price"] == 250
    line = _cart(h).line(1)
    assert (line.kind, line.item_id, line.barcode) == ("item", item["id"], UNKNOWN)
    text = h.scan(UNKNOWN)                    # known from now on
    assert "Total 6.29" in text, text


def test_f4_cancelled_leaves_the_code_on_screen(shop):
    h = shop()
    h.scan(WATER)
    h.scan(UNKNOWN)
    h.press("F4")
    if not os.path.exists(INVENTORY):
        assert "Cannot add items" in h.text(), h.text()
        return
    h.press("CANCEL")                           # the unit question, cancelled
    text = h.text()
    assert h.flow() == ("cart", "unknown") and UNKNOWN in text, text
    assert h.term.catalogue.find_by_barcode(UNKNOWN) is None


def test_f4_says_so_when_items_cannot_be_added_here(shop, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "firmware.flows.inventory", None)   # ImportError
    h = shop()
    h.scan(WATER)
    h.scan(UNKNOWN)
    text = h.press("F4")
    assert h.flow() == ("cart", "unknown") and "Cannot add items" in text, text


# -- the [retail] keys of this part ---------------------------------------------------

def test_the_discount_keys_default_to_a_cashiers_10_percent_or_10_00():
    retail = schema.defaults()["retail"]
    assert retail["max_discount_percent"] == 10000
    assert retail["max_discount_amount"] == 1000
    assert retail["override_needs_supervisor"] is True
    assert retail["keyed_unknown"] is False
    config, errors = schema.validate({"retail": {
        "max_discount_percent": 0, "max_discount_amount": 0,
        "override_needs_supervisor": False, "keyed_unknown": True}})
    assert errors == []
    assert config["retail"]["max_discount_percent"] == 0


@pytest.mark.parametrize("key,value,words", [
    ("max_discount_percent", 100001, "thousandths of a percent from 0 to 100000"),
    ("max_discount_percent", 12.5, "10 % is 10000"),
    ("max_discount_percent", -1, "from 0 to 100000"),
    ("max_discount_amount", -5, "from 0 to 99999999999"),
    ("max_discount_amount", "10.00", "whole number"),
    ("override_needs_supervisor", "yes", "true or false"),
    ("keyed_unknown", 1, "true or false"),
])
def test_a_bad_discount_key_names_key_value_and_what_is_allowed(key, value, words):
    config, errors = schema.validate({"retail": {key: value}})
    assert len(errors) == 1, errors
    assert errors[0].startswith("retail.%s = " % key) and words in errors[0], errors
    assert config["retail"][key] == schema.SCHEMA["retail"][key][0]
