"""X/Z report figures (firmware/reports/totals.py) against hand-computed expectations,
and the report's layout (firmware/reports/layout.py) on the panel and on paper, in both
languages. Plain functions and bare asserts: they also run under MicroPython."""
import json

from firmware.payments.journal import record
from firmware.reports import layout
from firmware.reports.totals import local_minute, refunded_sales, summarize, tally
from firmware.retail.cart import Cart
from firmware.retail.refund import make_part, part_json
from firmware.ui.i18n import Translator
from firmware.ui.receipt import WIDTH, display_width
from firmware.ui.screen import ROW_COLUMNS

WATER = {"id": 1, "plu": 1, "name_en": "Mineral water", "name_zh": "矿泉水", "price": 129,
         "tax_rate": 13000, "unit": "each"}
COLA = {"id": 2, "plu": 2, "name_en": "Cola", "name_zh": "可乐", "price": 149,
        "tax_rate": 13000, "unit": "each"}
BANANA = {"id": 3, "plu": 101, "name_en": "Bananas", "name_zh": "香蕉", "price": 1280,
          "tax_rate": 9000, "unit": "kg"}
MILK = {"id": 4, "plu": 3, "name_en": "Milk", "name_zh": "牛奶", "price": 420,
        "tax_rate": 13000, "unit": "each"}
CATEGORIES = {1: (1, "Drinks", "饮料"), 2: (1, "Drinks", "饮料"), 3: (2, "Fruit", "水果")}


def category_of(item_id):
    return CATEGORIES.get(item_id)


def item_cart():
    """Water 1.29, 3 x cola 1.49 = 4.47, bananas 452 g at 12.80/kg = 5.79 (half up of
    5.7856), milk voided: 11.55."""
    cart = Cart("USD")
    cart.add_item(WATER)
    cart.add_item(COLA, quantity=3)
    cart.add_item(BANANA, grams=452)
    cart.add_item(MILK)
    cart.void(3)
    return cart


def rec(id, kind, method, amount, state="approved", utc="2026-12-01T01:00:00Z", **kw):
    r = record(kind=kind, method=method, amount=amount, state=state, utc=utc, tz_min=480,
               batch=7, **kw)
    r["id"] = id
    return r


def batch():
    """A day at UTC+8: the figures below are worked out by hand from these."""
    cart = item_cart()
    assert cart.total() == 1155
    part = make_part(cart, [(1, 2)], {})            # two of the three colas back
    assert part["total"] == 298
    return [
        rec(1, "sale", "cash", 1000, operator="1", utc="2026-12-01T01:05:00Z"),
        rec(2, "sale", "card", 2500, operator="1", utc="2026-12-01T01:30:00Z",
            card_label="VISA", entry="chip"),
        rec(3, "sale", "card", 1200, operator="2", utc="2026-12-01T02:10:00Z",
            card_label="MASTERCARD", entry="swipe", offline=1, upload="pending"),
        rec(4, "sale", "cash", 700, state="voided", operator="1", utc="2026-12-01T02:20:00Z"),
        rec(5, "void", "cash", 700, operator="1", utc="2026-12-01T02:25:00Z", original_id=4),
        rec(6, "sale", "qr", 3000, operator="2", utc="2026-12-01T02:40:00Z",
            card_label="WeChat Pay", entry="qr"),
        rec(7, "sale", "qr", 500, operator="2", utc="2026-12-01T03:00:00Z",
            card_label="Alipay", entry="qr_show"),
        rec(8, "refund", "cash", 300, operator="1", utc="2026-12-01T03:15:00Z", original_id=1),
        rec(9, "sale", "card", 2000, state="declined", rc="05", card_label="VISA",
            entry="swipe", operator="1", utc="2026-12-01T03:20:00Z"),
        rec(10, "sale", "card", 900, state="declined", rc="51", offline=1, upload="declined",
            card_label="VISA", entry="chip", operator="2", utc="2026-12-01T03:21:00Z"),
        rec(11, "sale", "card", 800, state="sending", card_label="VISA", entry="tap",
            operator="2", utc="2026-12-01T03:22:00Z"),
        rec(12, "sale", "card", 100, state="failed", operator="2", utc="2026-12-01T03:23:00Z"),
        rec(13, "sale", "card", 400, state="reversed", operator="2", utc="2026-12-01T03:24:00Z"),
        rec(14, "refund", "qr", 500, operator="2", utc="2026-12-01T03:40:00Z", original_id=7,
            card_label="Alipay", entry="qr"),
        rec(15, "sale", "cash", 1155, operator="2", utc="2026-12-01T03:30:00Z",
            cart=json.dumps(cart.to_dict())),
        rec(16, "refund", "cash", 298, operator="2", utc="2026-12-01T03:50:00Z", original_id=15,
            cart=part_json(part)),
    ]


def t3(sale_n, sale, refund_n=0, refund=0, void_n=0, void=0):
    return {"sale_n": sale_n, "sale": sale, "refund_n": refund_n, "refund": refund,
            "void_n": void_n, "void": void, "net": sale - refund}


def test_totals_of_a_mixed_batch_by_hand():
    s = summarize(batch(), category_of=category_of, currency="USD")
    # sales 10.00 + 25.00 + 12.00 + 30.00 + 5.00 + 11.55; the voided 7.00 is a void only
    assert s["total"] == t3(6, 9355, 3, 1098, 1, 700)
    assert s["total"]["net"] == 8257
    assert s["methods"] == {"cash": t3(2, 2155, 2, 598, 1, 700), "card": t3(2, 3700),
                            "qr": t3(2, 3500, 1, 500)}
    assert s["card_brands"] == {"VISA": t3(1, 2500), "MASTERCARD": t3(1, 1200)}
    assert s["card_entries"] == {"chip": t3(1, 2500), "swipe": t3(1, 1200)}
    assert s["qr_channels"] == {"WeChat Pay": t3(1, 3000), "Alipay": t3(1, 500, 1, 500)}
    # the QR refund's record says "qr"; it gives back a sale paid by the merchant's code
    assert s["qr_entries"] == {"qr": t3(1, 3000), "qr_show": t3(1, 500, 1, 500)}
    assert s["operators"] == {"1": t3(2, 3500, 1, 300, 1, 700), "2": t3(4, 5855, 2, 798)}
    assert s["hours"] == {"2026-12-01 09": t3(2, 3500), "2026-12-01 10": t3(2, 4200, 0, 0, 1, 700),
                          "2026-12-01 11": t3(2, 1655, 3, 1098)}
    assert s["offline_pending"] == {"n": 1, "amount": 1200}
    assert s["declines"] == {"n": 2, "amount": 2900, "after_upload_n": 1, "after_upload": 900}
    assert s["unresolved"] == {"n": 1, "amount": 800}
    assert s["first_local"] == "2026-12-01 09:05" and s["last_local"] == "2026-12-01 11:50"
    assert s["records"] == 16 and s["other_currency"] == 0
    assert s["check"] == {"ok": True, "failed": []}


def test_items_and_categories_from_the_carts():
    s = summarize(batch(), category_of=category_of, currency="USD")
    items = s["items"]
    assert sorted(items) == ["i1", "i2", "i3"]          # the voided milk line is no item
    water, cola, banana = items["i1"], items["i2"], items["i3"]
    assert (water["n"], water["sale"], water["refund"], water["net"]) == (1, 129, 0, 129)
    assert (cola["n"], cola["rn"], cola["sale"], cola["refund"], cola["net"]) == (3, 2, 447, 298, 149)
    assert (banana["g"], banana["n"], banana["sale"]) == (452, 0, 579)
    assert cola["name_zh"] == "可乐" and cola["cat"] == "1" and banana["cat"] == "2"
    cats = s["categories"]
    assert cats["1"]["name_en"] == "Drinks"
    assert (cats["1"]["sale"], cats["1"]["refund"], cats["1"]["net"]) == (576, 298, 278)
    assert (cats["2"]["sale"], cats["2"]["net"]) == (579, 579)
    # everything else was paid as a total: 93.55 - 11.55 sold, 3.00 + 5.00 given back
    assert s["unitemised"] == {"sale_n": 5, "sale": 8200, "refund_n": 2, "refund": 800}


def test_a_voided_sale_is_a_void_only_and_not_in_the_net():
    sale = rec(1, "sale", "cash", 700, state="voided")
    void = rec(2, "void", "cash", 700, original_id=1)
    s = summarize([sale, void], currency="USD")
    assert s["total"] == t3(0, 0, 0, 0, 1, 700)
    assert s["total"]["net"] == 0 and s["check"]["ok"]
    # the void's own record is what counts: a void still waiting for its reversal is
    # unresolved, and its sale (reversal_pending) is no sale
    sale = rec(1, "sale", "card", 700, state="reversal_pending", reason="reason_voided",
               card_label="VISA", entry="chip")
    void = rec(2, "void", "card", 700, state="sending", original_id=1, card_label="VISA",
               entry="chip")
    s = summarize([sale, void], currency="USD")
    assert s["total"] == tally() and s["unresolved"] == {"n": 2, "amount": 1400}


def test_refunds_subtract_and_partial_refunds_add_up_to_the_sale():
    cart = item_cart()
    sale = rec(1, "sale", "card", 1155, cart=json.dumps(cart.to_dict()), card_label="VISA",
               entry="tap")
    one = make_part(cart, [(1, 1)], {})                 # F(1) - F(0) = 149
    two = make_part(cart, [(1, 2), (2, 452)], {1: 1})   # F(3) - F(1) = 298, the bananas
    r1 = rec(2, "refund", "card", one["total"], original_id=1, cart=part_json(one),
             card_label="VISA", entry="tap")
    r2 = rec(3, "refund", "card", two["total"], original_id=1, cart=part_json(two),
             card_label="VISA", entry="tap")
    assert (one["total"], two["total"]) == (149, 298 + 579)
    s = summarize([sale, r1, r2], currency="USD")
    assert s["total"] == t3(1, 1155, 2, 1026)
    cola = s["items"]["i2"]
    assert (cola["n"], cola["rn"], cola["refund"], cola["net"]) == (3, 3, 447, 0)
    banana = s["items"]["i3"]
    assert (banana["g"], banana["rg"], banana["net"]) == (452, 452, 0)
    assert s["categories"]["-"]["net"] == 129           # no category_of: all "No category"
    assert s["unitemised"] == {"sale_n": 0, "sale": 0, "refund_n": 0, "refund": 0}
    assert s["check"]["ok"]


def test_a_refund_of_an_earlier_batchs_sale_is_named_through_originals():
    cart = item_cart()
    sale = rec(1, "sale", "cash", 1155, cart=json.dumps(cart.to_dict()))
    sale["batch"] = 6
    part = make_part(cart, [(0, 1)], {})
    refund = rec(9, "refund", "cash", 129, original_id=1, cart=part_json(part))
    assert refunded_sales([refund]) == [1]
    alone = summarize([refund], currency="USD")
    assert alone["items"] == {} and alone["unitemised"]["refund"] == 129
    named = summarize([refund], originals={1: sale}, category_of=category_of, currency="USD")
    assert named["items"]["i1"]["refund"] == 129 and named["items"]["i1"]["rn"] == 1
    assert named["categories"]["1"]["net"] == -129 and named["check"]["ok"]
    assert named["total"] == t3(0, 0, 1, 129)


def test_a_cart_that_does_not_add_up_is_not_itemised():
    d = item_cart().to_dict()
    d["lines"][0]["total"] = 130                        # altered: lines 11.56, record 11.55
    odd = rec(1, "sale", "cash", 1155, cart=json.dumps(d))
    bad = rec(2, "sale", "cash", 200, cart="{not json")
    s = summarize([odd, bad], currency="USD")
    assert s["items"] == {} and s["unitemised"] == {"sale_n": 2, "sale": 1355, "refund_n": 0,
                                                    "refund": 0}
    assert s["check"]["ok"]


def test_other_currency_is_left_out_and_counted():
    s = summarize([rec(1, "sale", "cash", 100), rec(2, "sale", "cash", 100, currency="CNY")],
                  currency="USD")
    assert s["total"]["sale"] == 100 and s["other_currency"] == 1


def test_the_check_catches_a_breakdown_that_disagrees():
    s = summarize(batch(), category_of=category_of, currency="USD")
    from firmware.reports.totals import check
    s["methods"]["cash"]["sale"] += 1
    s["hours"]["2026-12-01 09"]["net"] -= 1
    assert check(s) == {"ok": False, "failed": ["methods", "hours"]}


def test_local_hours_across_days_months_and_half_hour_offsets():
    assert local_minute("2026-12-31T20:30:00Z", 480) == "2027-01-01 04:30"
    assert local_minute("2026-03-01T02:00:00Z", -300) == "2026-02-28 21:00"
    assert local_minute("2028-02-28T23:00:00Z", 120) == "2028-02-29 01:00"
    assert local_minute("2026-12-01T10:45:00Z", 330) == "2026-12-01 16:15"
    assert local_minute("", 0) == ""
    early = rec(1, "sale", "cash", 100, utc="2026-12-01T10:15:00Z")
    late = rec(2, "sale", "cash", 200, utc="2026-12-01T10:45:00Z")
    early["tz_min"] = late["tz_min"] = 330              # one UTC hour, two local hours
    s = summarize([early, late], currency="USD")
    assert sorted(s["hours"]) == ["2026-12-01 15", "2026-12-01 16"]


def test_an_empty_batch():
    s = summarize([], currency="USD")
    assert s["total"] == tally() and s["check"]["ok"] and s["first_local"] == ""


# -- layout ----------------------------------------------------------------------------

CONFIG = {"terminal": {"merchant_name": "Corner Shop", "id": "HP000001",
                       "merchant_id": "000000000000001"}}


def doc(report="X"):
    s = summarize(batch(), category_of=category_of, currency="USD")
    return layout.document(report, CONFIG, 7, s, "2026-12-01T10:00:00Z", "2026-12-01 18:00")


def amount_after(lines, label):
    for line in lines:
        if line.strip().startswith(label):
            return line.split()[-1]
    raise AssertionError("no %r in %r" % (label, lines))


def test_paper_in_english_to_the_cent():
    paper = layout.receipt(doc(), Translator("en")).text()
    lines = paper.split("\n")
    assert max(display_width(line) for line in lines) <= WIDTH
    for words in ("Corner Shop", "TID HP000001", "X REPORT", "Batch 7", "2026-12-01 09:05",
                  "2026-12-01 11:50", "BY METHOD", "BY OPERATOR", "BY HOUR", "ITEMS",
                  "CATEGORIES", "Totals check OK", "END OF REPORT", "Offline unsent 1",
                  "after upload 1", "Unresolved 1", "Chip", "Swiped", "VISA",
                  "Customer code", "Merchant code", "WeChat Pay", "Operator 2", "09:00",
                  "Bananas", "sold 0.452 kg", "back 2", "Drinks", "Not itemised"):
        assert words in paper, (words, paper)
    assert "DUPLICATE" not in paper
    assert amount_after(lines, "Sales 6") == "93.55"
    assert amount_after(lines, "Refunds 3") == "-10.98"
    assert amount_after(lines, "NET") == "82.57"
    assert amount_after(lines, "Voids 1") == "7.00"
    assert amount_after(lines, "Declined 2") == "29.00"
    assert amount_after(lines, "Drinks") == "2.78"


def test_paper_and_panel_in_chinese_fit_and_say_duplicate():
    zh = Translator("zh")
    d = doc("Z")
    paper = layout.receipt(d, zh, duplicate=True, reprinted_local="2026-12-02 08:00").text()
    lines = paper.split("\n")
    assert max(display_width(line) for line in lines) <= WIDTH
    for words in ("Z报表", "** 副本 **", "重印", "2026-12-02 08:00", "销售 6笔", "93.55",
                  "净额", "82.57", "香蕉", "饮料", "合计核对无误"):
        assert words in paper, (words, paper)
    rows = layout.screen_lines(d, zh, duplicate=True)
    assert max(display_width(row) for row in rows) <= ROW_COLUMNS
    assert "副本" in "".join(rows)


def test_panel_rows_hold_every_figure_in_18_columns():
    rows = layout.screen_lines(doc(), Translator("en"))
    assert max(display_width(row) for row in rows) <= ROW_COLUMNS
    text = "\n".join(rows)
    for words in ("X REPORT", "Sales 6", "93.55", "NET", "82.57", "Voids 1", "Cola"):
        assert words in text, (words, text)


def test_a_stored_doc_reads_back_the_same():
    d = doc("Z")
    again = json.loads(json.dumps(d))
    t = Translator("en")
    assert layout.receipt(again, t).text() == layout.receipt(d, t).text()
