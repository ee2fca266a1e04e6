"""The X/Z figures of issue 16: member sales, points earned, redeemed and moved back by
refunds, discounts by promotion, from the carts the journal recorded (firmware/reports/
totals.py, laid out by firmware/reports/layout.py). The carts are real Cart copies with
a pricer, a member and a redemption, so the report reads what a sale would record."""
import json

from firmware.reports import layout, totals
from firmware.retail.cart import Cart
from firmware.ui.i18n import Translator
from firmware.ui.receipt import display_width

HALF_OFF_TEA = {"id": "tea50", "name_en": "Tea half price", "name_zh": "茶饮半价"}
B2G1 = {"id": "b2g1", "name_en": "Buy 2 get 1 rice", "name_zh": "大米买二送一"}


def pricer(cart):
    """Tea lines half off, the third rice line free (a stand-in for the engine: the
    report reads what the cart recorded, whoever decided it)."""
    out = []
    rice = 0
    for line in cart.lines:
        promo = None
        if line.item_id == 1:
            promo = dict(HALF_OFF_TEA, amount=line.gross_amount() // 2)
        elif line.item_id == 2:
            rice += 1
            if rice == 3:
                promo = dict(B2G1, amount=line.gross_amount())
        out.append((promo, 1000))
    return out


def _cart(member=None, redeem=None, lines=((1, 800),), earned=0, discount=None):
    cart = Cart("CNY", True)
    cart.set_pricer(pricer)
    for item_id, price in lines:
        cart.add_item({"id": item_id, "plu": str(item_id), "name_en": "item %d" % item_id,
                       "price": price, "tax_rate": 13000})
    if discount:
        cart.set_line_discount(0, "amount", discount)
    if member:
        cart.set_member(member)
    if redeem:
        cart.set_redemption(*redeem)
    cart.points_earned = earned
    return cart


def _rec(rid, cart=None, kind="sale", amount=None, original_id=None, state="approved",
         refund_part=None):
    if cart is not None:
        text = json.dumps(cart.to_dict())
        amount = cart.total() if amount is None else amount
    elif refund_part is not None:
        text = json.dumps({"refund": refund_part})
    else:
        text = ""
    return {"id": rid, "currency": "CNY", "utc": "2026-12-01T02:%02d:00Z" % rid, "tz_min": 480,
            "state": state, "kind": kind, "amount": amount, "method": "cash",
            "card_label": "", "entry": "", "operator": "1", "offline": 0, "upload": "",
            "original_id": original_id, "cart": text}


def _day():
    gold = {"number": "8800012345", "tier": "gold"}
    sale1 = _cart(gold, redeem=(100, 100), lines=((1, 800), (2, 1000), (2, 1000), (2, 1000)),
                  earned=26)
    sale2 = _cart(None, lines=((1, 1200),), discount=100)
    sale3 = _cart(gold, lines=((3, 500),), earned=5)
    records = [_rec(1, sale1), _rec(2, sale2), _rec(3, sale3),
               # a refund of sale1's tea line (its recorded total)
               _rec(4, kind="refund", amount=sale1.lines[0].total, original_id=1,
                    refund_part={"lines": [{"line": 0, "measure": 1,
                                            "amount": sale1.lines[0].total}]}),
               # declined: no points, no discount, not a member sale
               _rec(5, _cart(gold, lines=((1, 800),), earned=4), state="declined")]
    return records, (sale1, sale2, sale3)


def test_members_points_and_discounts_add_up_to_the_carts():
    records, (sale1, sale2, sale3) = _day()
    back = {4: 3}                                   # the ledger: 3 points moved back
    s = totals.summarize(records, points_back=lambda rec: back.get(rec["id"]))
    assert s["check"]["ok"], s["check"]
    assert s["members"] == {"sale_n": 2, "sale": sale1.total() + sale3.total(),
                            "refund_n": 1, "refund": sale1.lines[0].total,
                            "net": sale1.total() + sale3.total() - sale1.lines[0].total}
    assert s["points"] == {"earned": 31, "redeemed": 100, "back": 3, "back_known": True}
    promos = s["discounts"]["promotions"]
    assert promos["tea50"]["amount"] == 400 + 600 and promos["tea50"]["n"] == 2
    assert promos["b2g1"] == {"name_en": "Buy 2 get 1 rice", "name_zh": "大米买二送一",
                              "n": 1, "amount": 1000}
    assert s["discounts"]["line"] == 100 and s["discounts"]["points"] == 100
    # every promotion's amount is what the carts' totals say it was
    given = {}
    for cart in (sale1, sale2, sale3):
        for p in cart.totals["promotions"]:
            given[p["id"]] = given.get(p["id"], 0) + p["amount"]
    assert given == {pid: promos[pid]["amount"] for pid in promos}


def test_the_report_says_them_on_the_panel_and_the_paper_in_both_languages():
    records, _ = _day()
    s = totals.summarize(records, points_back=lambda rec: 3)
    doc = layout.document("Z", {"terminal": {"merchant_name": "Shop", "id": "HP000001",
                                             "merchant_id": "100000000001"}}, 7, s,
                          "2026-12-01T03:00:00Z", "2026-12-01 11:00")
    en = layout.receipt(doc, Translator("en")).text()
    assert "MEMBERS" in en and "Member sales 2" in en and "Points earned" in en
    assert "DISCOUNTS" in en and "Tea half price" in en and "-10.00" in en
    assert "Paid with points" in en and "-1.00" in en
    zh = layout.receipt(doc, Translator("zh")).text()
    assert "会员销售 2" in zh and "茶饮半价" in zh and "大米买二送一" in zh
    for lang in ("en", "zh"):
        for row in layout.screen_lines(doc, Translator(lang)):
            assert display_width(row) <= 18, row


def test_a_batch_without_members_or_discounts_prints_no_such_block_and_old_z_still_lays_out():
    plain = _cart(None, lines=((3, 500),))
    s = totals.summarize([_rec(1, plain)])
    text = layout.receipt(layout.document("X", {"terminal": {}}, 1, s, "", ""),
                          Translator("en")).text()
    assert "MEMBERS" not in text and "DISCOUNTS" not in text
    # a Z stored before issue 16 has none of the three keys: laid out as it was
    for key in ("members", "points", "discounts"):
        del s[key]
    assert totals.check(s)["ok"]
    assert "END" in layout.receipt(layout.document("Z", {"terminal": {}}, 1, s, "", ""),
                                   Translator("en")).text().upper()


def test_a_members_figure_that_does_not_add_up_fails_the_check():
    records, _ = _day()
    s = totals.summarize(records)
    s["members"]["sale"] += s["total"]["sale"]
    assert "members" in totals.check(s)["failed"]
    assert s["points"]["back_known"] is False
