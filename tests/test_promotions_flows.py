"""Promotions on the real terminal (issue 16): the demo promotions in catalogue.db, the
cart priced by them at the terminal's local time, the receipt's lines, the journal's
copy, a refund of part of a buy-2-get-1 sale, and Stock > Promotions in both languages.

The shop is the simulator's demo catalogue (USD prices: cola 1.49, chips 2.49, 13 % VAT
included) with config/demo_promotions.json imported beside it, as `handpos sim` does on
a fresh data folder.
"""
import json

from tools.sim import demo_codes

WATER, COLA, CHIPS = demo_codes.ITEMS[0], demo_codes.ITEMS[1], demo_codes.ITEMS[5]
MONDAY_NOON = (2026, 5, 4, 12, 0, 0)
MONDAY_LATE = (2026, 5, 4, 23, 30, 0)


def _promoted(shop, when=MONDAY_NOON, **kw):
    from tools import promotions_file
    h = shop(**kw)
    h.term.system.local_time = lambda: when          # the terminal's local clock
    config = h.term.config
    n, problems = promotions_file.load_demo(config["storage"]["data_dir"],
                                            h.sim.built.datadir.keys.key("data"), config)
    assert (n, problems) == (3, [])
    return h


def _pay_cash(h):
    h.press("ENTER")                            # pay: the sale's methods
    assert h.flow() == ("sale", "method"), h.text()
    h.press("2", "ENTER")                       # cash, exact
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy", "result"))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "approved", rec
    h.run(3000, until=lambda: h.sim.vprinter.receipts)
    return rec


def test_buy_two_get_one_on_screen_receipt_and_journal_and_a_partial_refund(shop):
    h = _promoted(shop)
    for _ in range(3):
        text = h.scan(COLA)
    # three lines of 1.49: 1.49 free, spread 0.50, 0.50, 0.49; rows show what is paid
    assert "Total 2.98" in text, text
    assert "0.99" in text and "1.00" in text, text
    rec = _pay_cash(h)
    assert rec["amount"] == 298
    cart = json.loads(rec["cart"])
    assert cart["v"] == 2
    assert [l["promo"]["id"] for l in cart["lines"]] == ["COLA21"] * 3
    assert [l["promo_discount"] for l in cart["lines"]] == [50, 50, 49]
    assert cart["totals"]["promotions"] == [{"id": "COLA21", "name_en": "Cola buy 2 get 1",
                                             "name_zh": "可乐买二送一", "amount": 149}]
    paper = h.sim.vprinter.receipts[0].text()
    assert paper.count("Cola buy 2 get 1") == 3, paper
    for words in ("-0.50", "-0.49", "2.98"):
        assert words in paper, paper
    # a refund of one of the three, then the two others: exactly what was paid
    from firmware.retail.refund import make_part, sold_cart
    sold = sold_cart(h.term.payments.journal.get(rec["id"]))
    first = make_part(sold, [(2, 1)], {})
    assert first["total"] == 100                # the line sold at 1.49 - 0.49
    rest = make_part(sold, [(0, 1), (1, 1)], {2: 1})
    assert first["total"] + rest["total"] == 298
    h.to_idle()


def test_a_time_limited_discount_is_on_in_its_hours_only(shop):
    h = _promoted(shop, when=MONDAY_LATE)
    text = h.scan(CHIPS)
    assert "Total 2.49" in text, text           # 23:30: after 07:00-23:00
    h.press("CANCEL", "ENTER")                  # drop the cart
    h.term.system.local_time = lambda: MONDAY_NOON
    text = h.scan(CHIPS)
    assert "Total 1.99" in text, text           # 20 % of 2.49 = 0.498 -> 0.50 off
    rec = _pay_cash(h)
    assert rec["amount"] == 199
    paper = h.sim.vprinter.receipts[0].text()
    assert "Snack time 20% off" in paper and "-0.50" in paper, paper
    h.to_idle()


def test_a_change_re_prices_the_cart_and_the_preview_sees_the_promotion(shop):
    h = _promoted(shop)
    h.scan(COLA)
    text = h.scan(WATER)
    assert "Total 2.78" in text, text
    h.press("UP")                               # the cola: quantity 3
    h.press("F1")
    h.press("3", "ENTER")
    assert "Total 4.27" in h.text(), h.text()   # 4.47 - 1.49 + 1.29
    h.press("MENU", "2", "1")                   # a cart discount of 10 %
    h.press("1", "0", "ENTER")
    assert "0.43" in h.text(), h.text()         # 10 % of 4.27 (after the promotion)
    h.press("ENTER")
    assert "Total 3.84" in h.text(), h.text()


def test_the_cart_menu_offers_member_and_redeem(shop):
    h = _promoted(shop)
    h.scan(COLA)
    h.press("MENU")
    text = h.text()
    assert h.flow() == ("cart_menu", "menu"), text
    names = [n for n, m in h.term.current().entries()]
    assert names[-2:] == ["ct_member", "ct_redeem"]
    h.press("6")                                # redeem with no member yet
    assert "Member first" in h.text(), h.text()


def _list(h):
    from firmware.flows.inventory import StockFlow
    h.term.push(StockFlow(h.term))
    h.run(100)
    assert h.flow() == ("stock", "menu"), h.text()
    h.press("7")
    assert h.flow() == ("promotions", "list"), h.text()
    seen = [h.text()]
    for _ in range(20):                         # every row, scrolled into view
        h.press("DOWN")
        seen.append(h.text())
    return "\n".join(seen)


def test_the_list_shows_names_and_windows_in_english(shop):
    h = _promoted(shop)
    text = _list(h)
    for words in ("Promotions", "Snack time 20%", "01-01..12-31", "07:00-23:00",
                  "Cola buy 2 get 1", "Every day", "All day", "On now",
                  "Double points"):
        assert words in text, (words, text)
    h.press("CANCEL")
    assert h.flow() == ("stock", "menu")


def test_the_list_in_chinese(shop):
    h = _promoted(shop)
    h.term.set_language("zh")
    text = _list(h)
    for words in ("促销活动", "限时折扣", "零食八折", "可乐买二送一", "每天", "全天", "进行中"):
        assert words in text, (words, text)


def test_the_list_without_promotions_says_so(shop):
    h = shop()
    text = _list(h)
    assert "No promotions" in text, text


def test_a_line_discount_comes_off_what_the_promotion_left(shop):
    h = _promoted(shop)
    h.scan(COLA)
    h.press("F1")
    h.press("3", "ENTER")                       # 3 x 1.49 = 4.47, one free: 2.98
    assert "Total 2.98" in h.text(), h.text()
    h.press("MENU", "1", "1")                   # line discount, percent
    h.press("1", "0", "ENTER")
    text = h.text()
    assert "-0.30" in text and "2.68" in text, text     # 10 % of 2.98 = 0.298 -> 0.30
    h.press("ENTER")
    assert "Total 2.68" in h.text(), h.text()
    line = h.term.current().cart.lines[0]
    assert (line.promo_discount, line.line_discount) == (149, 30)
