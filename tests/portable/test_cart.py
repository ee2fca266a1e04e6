"""The cart: per-line tax and rounding, discounts, weights, void, limits, the journal's
copy and refunds. The agreement invariants are checked over a few thousand random carts
from a fixed-seed generator of our own (the same carts under CPython and MicroPython)."""
import json

from firmware.retail.cart import Cart, CartError, refund, refundable
from firmware.retail.tax import format_rate, parse_rate, round_div, tax_of

APPLE = {"id": 1, "plu": "10001", "name_en": "Apple", "name_zh": "苹果", "price": 350,
         "tax_rate": 9000, "unit": "each"}
MILK = {"id": 2, "plu": "10002", "name_en": "Milk", "name_zh": "牛奶", "price": 99,
        "tax_rate": 13000, "unit": "each"}
BANANA = {"id": 3, "plu": "10003", "name_en": "Bananas", "name_zh": "香蕉", "price": 1280,
          "tax_rate": 9000, "unit": "kg"}
SERVICE = {"id": 4, "plu": "10004", "name_en": "Delivery", "name_zh": "配送", "price": 10,
           "tax_rate": 6000, "unit": "each"}


def refused(fn, *args):
    try:
        fn(*args)
    except CartError as e:
        return e
    raise AssertionError("not refused: %r" % (args,))


# -- the rounding rule ---------------------------------------------------------------

def test_round_div_is_half_up_on_the_magnitude():
    assert [round_div(n, 2) for n in (0, 1, 2, 3, 4, 5)] == [0, 1, 1, 2, 2, 3]
    assert [round_div(n, 2) for n in (-1, -3, -5)] == [-1, -2, -3]
    assert round_div(149, 100) == 1 and round_div(150, 100) == 2
    assert round_div(-149, 100) == -1 and round_div(-150, 100) == -2


def test_tax_exclusive_and_inclusive_awkward_rates():
    # exclusive: 0.50 at 13 % = 6.5 -> 7; at 9 % = 4.5 -> 5; 0.25 at 6 % = 1.5 -> 2
    assert tax_of(50, 13000, False) == 7
    assert tax_of(50, 9000, False) == 5
    assert tax_of(25, 6000, False) == 2
    assert tax_of(24, 6000, False) == 1            # 1.44
    # inclusive: 0.99 holds 99 * 13 / 113 = 11.39 -> 11; 1.13 holds exactly 0.13
    assert tax_of(99, 13000, True) == 11
    assert tax_of(113, 13000, True) == 13
    assert tax_of(109, 9000, True) == 9
    assert tax_of(106, 6000, True) == 6
    assert tax_of(10, 6000, True) == 1             # 0.566 -> 1
    assert tax_of(8, 6000, True) == 0              # 0.453 -> 0
    assert tax_of(1000, 0, True) == 0


def test_rates_parse_and_format():
    assert parse_rate("13") == 13000
    assert parse_rate("13%") == 13000
    assert parse_rate(" 8.875 % ") == 8875
    assert parse_rate("0.5") == 500
    assert parse_rate("100") == 100000
    for bad in ("", "%", "-1", "8.8755", "101", "1.2.3", "x"):
        try:
            parse_rate(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    assert [format_rate(r) for r in (13000, 8875, 12500, 0, 500)] == ["13%", "8.875%", "12.5%", "0%", "0.5%"]


def test_per_line_rounding_is_what_the_receipt_adds_up():
    # three lines of 0.10 at 6 % before tax: each line 0.006 -> 0.01, the cart 0.03
    # (rounding the sum once would say 0.02 and no line would add up to it)
    cart = Cart("CNY", tax_inclusive=False)
    for _ in range(3):
        cart.add_item(SERVICE)
    assert [line.tax for line in cart.lines] == [1, 1, 1]
    assert cart.totals["tax"] == 3
    assert cart.totals["total"] == 33
    assert cart.totals["rates"] == [{"rate": 6000, "net": 30, "tax": 3, "total": 33}]


def test_inclusive_cart_mixed_rates():
    cart = Cart("CNY", tax_inclusive=True)
    cart.add_item(MILK, quantity=3)                  # 2.97 at 13 %: 0.3417 -> 0.34
    cart.add_item(APPLE, quantity=2)                 # 7.00 at 9 %: 0.5780 -> 0.58
    cart.add_item(SERVICE)                           # 0.10 at 6 %: 0.0057 -> 0.01
    t = cart.totals
    assert [line.tax for line in cart.lines] == [34, 58, 1]
    assert t["total"] == 297 + 700 + 10 == t["subtotal"]
    assert t["tax"] == 93
    assert t["rates"] == [{"rate": 6000, "net": 9, "tax": 1, "total": 10},
                          {"rate": 9000, "net": 642, "tax": 58, "total": 700},
                          {"rate": 13000, "net": 263, "tax": 34, "total": 297}]
    assert t["items"] == 6 and t["lines"] == 3


def test_exclusive_cart_adds_tax_on_top():
    cart = Cart("USD", tax_inclusive=False)
    cart.add_item(MILK, quantity=3)                  # 2.97 * 13 % = 0.3861 -> 0.39
    cart.add_item(APPLE, quantity=2)                 # 7.00 * 9 % = 0.63
    t = cart.totals
    assert t["subtotal"] == 997
    assert t["tax"] == 39 + 63
    assert t["total"] == 997 + 102


# -- weights -------------------------------------------------------------------------

def test_weighed_line_is_price_per_kg_times_grams_rounded_once():
    cart = Cart("CNY")
    i = cart.add_item(BANANA, grams=452)             # 12.80 x 0.452 = 5.7856 -> 5.79
    assert cart.lines[i].gross == 579
    assert cart.lines[i].quantity == 1 and cart.lines[i].weighed()
    cheap = dict(BANANA, price=1250)
    j = cart.add_item(cheap, grams=2)                # 0.025 -> 0.03 (half up)
    assert cart.lines[j].gross == 3
    cart.set_weight(i, 1000)
    assert cart.lines[i].gross == 1280
    assert cart.totals["items"] == 2


def test_kg_item_needs_a_weight_unless_the_label_priced_it():
    cart = Cart("CNY")
    e = refused(cart.add_item, BANANA)
    assert e.what == "weight"
    i = cart.add_item(BANANA, price=1299, barcode="2001003012993")   # a price label
    line = cart.lines[i]
    assert (line.gross, line.quantity, line.grams, line.barcode) == (1299, 1, None, "2001003012993")
    assert refused(cart.set_weight, i, 500).what == "weight"
    j = cart.add_item(BANANA, grams=500)
    assert refused(cart.set_quantity, j, 2).what == "quantity"
    # the stock each line takes, in the item's base unit: grams for kg items (the
    # label's price worked back to 1.015 kg at 12.80/kg), pieces otherwise
    k = cart.add_item(APPLE, quantity=4)
    assert [line.stock_quantity() for line in cart.lines] == [1015, 500, 4]
    assert cart.lines[i].label_grams == 1015
    assert Cart.from_dict(cart.to_dict()).lines[i].label_grams == 1015
    back = refund(cart, [(i, 1), (j, 200), (k, 3)])
    assert [p["stock"] for p in back["lines"]] == [1015, 200, 3]


# -- discounts -----------------------------------------------------------------------

def test_line_discounts_percent_and_amount():
    cart = Cart("CNY")
    i = cart.add_item(APPLE, quantity=3)             # 10.50
    cart.set_line_discount(i, "percent", 10000)      # 10 %: 1.05
    assert cart.lines[i].line_discount == 105 and cart.lines[i].amount == 945
    cart.set_line_discount(i, "percent", 3333)       # 3.333 %: 0.349965 -> 0.35
    assert cart.lines[i].line_discount == 35
    cart.set_line_discount(i, "amount", 50)
    assert cart.lines[i].amount == 1000
    assert refused(cart.set_line_discount, i, "amount", 1051).what == "discount"
    assert cart.lines[i].line_discount == 50          # the refused change left it
    assert refused(cart.set_line_discount, i, "percent", 100001).what == "rate"
    assert refused(cart.set_line_discount, i, "percent", 0).what == "rate"
    assert refused(cart.set_line_discount, i, "amount", 0).what == "discount"
    assert refused(cart.set_line_discount, i, "coupon", 5).what == "discount"
    cart.set_line_discount(i)
    assert cart.lines[i].line_discount == 0 and cart.lines[i].discount is None
    cart.set_line_discount(i, "amount", 1050)          # all of it: free
    assert cart.total() == 0


def test_quantity_down_under_a_fixed_discount_is_refused():
    cart = Cart("CNY")
    i = cart.add_item(APPLE, quantity=3)
    cart.set_line_discount(i, "amount", 800)
    e = refused(cart.set_quantity, i, 2)            # 7.00 < 8.00
    assert (e.what, e.limit) == ("discount", 700)
    assert cart.lines[i].quantity == 3


def test_cart_discount_spreads_by_largest_remainder():
    cart = Cart("CNY")
    cart.add_item(APPLE)                             # 3.50
    cart.add_item(APPLE)
    cart.add_item(APPLE)
    cart.set_discount("amount", 100)                 # 1.00 over three equal lines
    assert [line.cart_discount for line in cart.lines] == [34, 33, 33]
    assert cart.total() == 950
    cart.set_discount("percent", 5000)               # 5 % of 10.50 = 0.525 -> 0.53
    assert cart.totals["discount"] == 53
    assert [line.cart_discount for line in cart.lines] == [18, 18, 17]


def test_cart_discount_keeps_tax_per_line():
    cart = Cart("CNY", tax_inclusive=True)
    cart.add_item(MILK, quantity=10)                 # 9.90 at 13 %
    cart.add_item(APPLE)                             # 3.50 at 9 %
    cart.set_discount("amount", 134)                 # 1.34 on 13.40
    a, b = cart.lines
    assert a.cart_discount + b.cart_discount == 134
    assert (a.cart_discount, b.cart_discount) == (99, 35)
    assert a.tax == tax_of(990 - 99, 13000, True)
    assert b.tax == tax_of(350 - 35, 9000, True)
    assert cart.totals["tax"] == a.tax + b.tax
    assert cart.total() == 1340 - 134


def test_cart_discount_cannot_exceed_the_cart():
    cart = Cart("CNY")
    i = cart.add_item(APPLE)
    cart.add_item(MILK)
    assert refused(cart.set_discount, "amount", 450).what == "discount"
    cart.set_discount("amount", 400)
    e = refused(cart.void, i)                        # 0.99 left under a 4.00 discount
    assert (e.what, e.limit) == ("discount", 99)
    assert not cart.lines[i].void
    cart.set_discount()
    cart.void(i)
    assert cart.total() == 99


# -- override, void, misc --------------------------------------------------------------

def test_price_override_keeps_the_original():
    cart = Cart("CNY")
    i = cart.add_item(APPLE, quantity=2)
    cart.override_price(i, 300, "sup1")
    line = cart.lines[i]
    assert (line.price, line.original_price, line.override_by, line.gross) == (300, 350, "sup1", 600)
    cart.override_price(i, 280, "sup2")              # the first original stays
    assert (cart.lines[i].original_price, cart.lines[i].override_by) == (350, "sup2")
    cart.override_price(i, 350, "sup2")              # back to the catalogue price
    assert cart.lines[i].original_price is None


def test_void_line_stays_and_counts_for_nothing():
    cart = Cart("CNY")
    i = cart.add_item(APPLE, quantity=2)
    cart.add_item(MILK)
    cart.void(i, "op7")
    assert len(cart.lines) == 2
    line = cart.lines[i]
    assert line.void and line.void_by == "op7" and line.gross == 700
    assert (line.amount, line.tax, line.total) == (0, 0, 0)
    assert cart.total() == 99 and cart.totals["lines"] == 1 and cart.totals["items"] == 1
    assert refused(cart.void, i).what == "void"
    assert refused(cart.set_quantity, i, 1).what == "void"
    assert refused(cart.override_price, i, 1).what == "void"
    assert refused(cart.line, 5).what == "line"


def test_misc_line():
    cart = Cart("CNY")
    i = cart.add_misc(1250)
    line = cart.lines[i]
    assert (line.kind, line.gross, line.tax_rate, line.name("en")) == ("misc", 1250, 0, "")
    j = cart.add_misc(1000, tax_rate=13000, name_en="Gift wrap", name_zh="包装")
    assert cart.lines[j].tax == 115 and cart.lines[j].name("zh") == "包装"
    assert refused(cart.add_misc, 0).what == "amount"
    assert refused(cart.add_misc, -5).what == "amount"


def test_name_falls_back_to_english():
    cart = Cart("CNY")
    i = cart.add_item(dict(APPLE, name_zh=""))
    assert cart.lines[i].name("zh") == "Apple"
    assert cart.lines[i].name("en") == "Apple"


# -- limits ----------------------------------------------------------------------------

LIMITS = {"max_quantity": 10, "max_weight_g": 5000, "max_line_amount": 5000,
          "max_lines": 4, "max_total": 8000}


def test_limits_are_refused_with_the_limit():
    cart = Cart("CNY", limits=LIMITS)
    i = cart.add_item(APPLE, quantity=10)
    e = refused(cart.set_quantity, i, 11)
    assert (e.what, e.limit, e.msg_id) == ("quantity", 10, "cart_quantity")
    assert e.limit_text("CNY") == "10"
    assert refused(cart.set_quantity, i, 0).what == "quantity"
    assert refused(cart.add_item, BANANA, 1, 5001).what == "weight"
    e = refused(cart.add_item, BANANA, 1, 5001)
    assert e.limit_text("CNY") == "5.000 kg"
    e = refused(cart.add_item, dict(APPLE, price=2000), 3)        # 60.00 > 50.00
    assert (e.what, e.limit, e.limit_text("CNY")) == ("line_amount", 5000, "50.00")
    e = refused(cart.add_item, dict(APPLE, price=6000))
    assert (e.what, e.limit) == ("price", 5000)
    cart.add_item(APPLE, quantity=10)               # 70.00
    e = refused(cart.add_item, APPLE, 3)            # 80.50 > 80.00
    assert (e.what, e.limit, e.limit_text("CNY")) == ("total", 8000, "80.00")
    cart.add_item(APPLE, quantity=2)                # 77.00
    cart.add_misc(300)                              # 80.00: at the limit is allowed
    assert cart.total() == 8000
    e = refused(cart.add_misc, 1)
    assert (e.what, e.limit) == ("lines", 4)
    assert len(cart.lines) == 4 and cart.total() == 8000


def test_a_refused_change_leaves_the_cart_as_it_was():
    cart = Cart("CNY", limits=LIMITS)
    cart.add_item(APPLE, quantity=10)
    i = cart.add_item(APPLE, quantity=10)
    before = cart.to_dict()
    refused(cart.set_quantity, i, 12)
    refused(cart.override_price, i, 500)            # 50.00 line: the total would be 85.00
    refused(cart.add_misc, 1200)
    assert cart.to_dict() == before


def test_voided_lines_count_against_max_lines():
    cart = Cart("CNY", limits=dict(LIMITS, max_lines=2))
    i = cart.add_item(APPLE)
    cart.void(i)
    cart.add_item(APPLE)
    assert refused(cart.add_item, APPLE).what == "lines"


def test_limits_from_config():
    from firmware.core import config as schema
    config, errors = schema.validate({"money": {"currency": "CNY"},
                                      "retail": {"tax_inclusive": False, "max_lines": 3}})
    assert errors == []
    cart = Cart.from_config(config)
    assert (cart.currency, cart.tax_inclusive, cart.limits["max_lines"]) == ("CNY", False, 3)
    assert cart.limits["max_total"] == 1000000


# -- the journal's copy ----------------------------------------------------------------

def _sample_cart(inclusive=True):
    cart = Cart("CNY", tax_inclusive=inclusive)
    cart.add_item(APPLE, quantity=3, barcode="6901234567892")
    cart.add_item(BANANA, grams=452)
    cart.add_item(MILK, quantity=4)
    cart.add_misc(500)
    cart.override_price(0, 320, "sup")
    cart.set_line_discount(2, "percent", 15000)
    cart.void(3, "op")
    cart.set_discount("amount", 77, "sup")
    return cart


def test_journal_copy_round_trips_through_json():
    for inclusive in (True, False):
        cart = _sample_cart(inclusive)
        text = json.dumps(cart.to_dict())
        back = Cart.from_dict(json.loads(text))
        assert back.to_dict() == cart.to_dict()
        assert back.totals == cart.totals
        assert back.lines[0].original_price == 350 and back.lines[3].void
        assert back.discount == ("amount", 77) and back.discount_by == "sup"


def test_journal_copy_that_does_not_add_up_is_refused():
    d = json.loads(json.dumps(_sample_cart().to_dict()))
    d["totals"]["tax"] += 1
    assert refused(Cart.from_dict, d).what == "journal"
    d = json.loads(json.dumps(_sample_cart().to_dict()))
    d["lines"][1]["tax"] += 1
    d["lines"][2]["tax"] -= 1                        # totals unchanged, a line wrong
    assert refused(Cart.from_dict, d).what == "journal"
    d = json.loads(json.dumps(_sample_cart().to_dict()))
    d["v"] = 99
    assert refused(Cart.from_dict, d).what == "journal"


def test_journal_copy_is_rebuilt_without_todays_limits():
    d = _sample_cart().to_dict()
    cart = Cart.from_dict(d, limits={"max_quantity": 1, "max_total": 1})
    assert cart.total() == d["totals"]["total"]


# -- refunds ---------------------------------------------------------------------------

def test_refundable_quantities():
    cart = _sample_cart()
    assert refundable(cart) == [{"line": 0, "remaining": 3, "unit": "each"},
                                {"line": 1, "remaining": 452, "unit": "kg"},
                                {"line": 2, "remaining": 4, "unit": "each"}]
    assert refundable(cart, {0: 2, "2": 4}) == [{"line": 0, "remaining": 1, "unit": "each"},
                                                 {"line": 1, "remaining": 452, "unit": "kg"}]


def test_never_more_than_sold_and_not_yet_refunded():
    cart = _sample_cart()
    e = refused(refund, cart, [(0, 4)])
    assert (e.what, e.limit) == ("refund", 3)
    e = refused(refund, cart, [(0, 2), (0, 2)])      # the same line twice in one refund
    assert (e.what, e.limit) == ("refund", 1)
    e = refused(refund, cart, [(0, 1)], {"0": 3})
    assert (e.what, e.limit) == ("refund", 0)
    assert refused(refund, cart, [(3, 1)]).what == "refund"      # the voided line
    assert refused(refund, cart, [(0, 0)]).what == "refund"
    assert refused(refund, cart, [(9, 1)]).what == "line"


def test_partial_refunds_add_up_to_the_sale():
    cart = _sample_cart()
    done = {}
    parts = [[(0, 1), (2, 1)], [(1, 200)], [(0, 1), (2, 2)], [(1, 252), (0, 1), (2, 1)]]
    got = {}
    tax = {}
    for picks in parts:
        result = refund(cart, picks, done)
        done = json.loads(json.dumps(result["refunded"]))    # as the journal keeps it
        assert result["total"] == sum(p["amount"] for p in result["lines"])
        assert result["tax"] == sum(r["tax"] for r in result["rates"])
        for p in result["lines"]:
            got[p["line"]] = got.get(p["line"], 0) + p["amount"]
            tax[p["line"]] = tax.get(p["line"], 0) + p["tax"]
    assert refundable(cart, done) == []
    for index, line in cart.active():
        assert got[index] == line.total and tax[index] == line.tax


# -- the invariants over random carts ----------------------------------------------------

class Rand:
    """xorshift32: the same numbers under CPython and MicroPython."""

    def __init__(self, seed):
        self.state = seed or 1

    def next(self):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def below(self, n):
        return self.next() % n

    def pick(self, seq):
        return seq[self.below(len(seq))]


RATES = (0, 3000, 6000, 9000, 13000, 8875, 20000)


def _half_up_ok(value, num, den):
    """value is num/den rounded half up (num >= 0): 2v - 1 <= 2 num/den < 2v + 1."""
    return (2 * value - 1) * den <= 2 * num < (2 * value + 1) * den


def _attempt(counts, fn, *args):
    """Make a change; a refusal (a fixed discount above a lowered price) is fine."""
    try:
        fn(*args)
        counts[0] += 1
    except CartError:
        counts[1] += 1


def _random_cart(rnd, inclusive, counts):
    cart = Cart("CNY", tax_inclusive=inclusive, limits={"max_total": 10 ** 9,
                                                        "max_line_amount": 10 ** 8})
    for _ in range(1 + rnd.below(8)):
        kind = rnd.below(10)
        rate = rnd.pick(RATES)
        price = rnd.pick((1, 5, 9, 10, 33, 99, 101, 199, 350, 999, 1280, 4999, 12345))
        if kind < 2:
            cart.add_item({"id": kind, "price": price, "tax_rate": rate, "unit": "kg"},
                          grams=1 + rnd.below(5000))
        elif kind == 2:
            cart.add_misc(price, tax_rate=rate)
        else:
            cart.add_item({"id": kind, "price": price, "tax_rate": rate, "unit": "each"},
                          quantity=1 + rnd.below(12))
        i = len(cart.lines) - 1
        roll = rnd.below(10)
        if roll == 0:
            cart.set_line_discount(i, "percent", rnd.pick((500, 3333, 10000, 12500, 50000, 100000)))
        elif roll == 1 and cart.lines[i].gross > 0:
            cart.set_line_discount(i, "amount", 1 + rnd.below(cart.lines[i].gross))
        if rnd.below(6) == 0:
            _attempt(counts, cart.override_price, i, rnd.pick((0, 1, 77, 250)))
        if rnd.below(8) == 0 and len(cart.active()) > 1:
            cart.void(i)
    roll = rnd.below(4)
    if roll == 0:
        cart.set_discount("percent", rnd.pick((500, 1000, 3333, 25000)))
    elif roll == 1 and cart.totals["subtotal"] > 0:
        cart.set_discount("amount", 1 + rnd.below(cart.totals["subtotal"]))
    if rnd.below(5) == 0 and len(cart.active()) > 1:
        _attempt(counts, cart.void, cart.active()[0][0])
    return cart


def _check_invariants(cart):
    t = cart.totals
    active = [line for _, line in cart.active()]
    assert sum(line.total for line in active) == t["total"]
    assert sum(line.tax for line in active) == t["tax"]
    assert sum(r["tax"] for r in t["rates"]) == t["tax"]
    assert sum(r["total"] for r in t["rates"]) == t["total"]
    assert sum(r["net"] + r["tax"] for r in t["rates"]) == t["total"]
    assert sum(line.cart_discount for line in active) == t["discount"]
    assert t["subtotal"] == sum(line.gross - line.line_discount for line in active)
    if cart.tax_inclusive:
        assert t["total"] == t["subtotal"] - t["discount"]
    else:
        assert t["total"] == t["subtotal"] - t["discount"] + t["tax"]
    base = t["subtotal"]
    for line in active:
        assert line.amount >= 0 and line.tax >= 0
        assert line.amount == line.gross - line.line_discount - line.cart_discount
        rate = line.tax_rate
        if cart.tax_inclusive:
            assert _half_up_ok(line.tax, line.amount * rate, 100000 + rate)
            assert line.total == line.amount
        else:
            assert _half_up_ok(line.tax, line.amount * rate, 100000)
            assert line.total == line.amount + line.tax
        if line.grams is not None:
            assert _half_up_ok(line.gross, line.price * line.grams, 1000)
        # the share of the cart discount is within one unit of its exact proportion
        share_base = line.gross - line.line_discount
        if base:
            assert abs(line.cart_discount * base - t["discount"] * share_base) < base
            assert line.cart_discount <= share_base
    for line in cart.lines:
        if line.void:
            assert (line.amount, line.tax, line.total) == (0, 0, 0)


def test_invariants_over_random_carts():
    rnd = Rand(20240612)
    counts = [0, 0]                  # changes made, changes refused
    for n in range(2000):
        cart = _random_cart(rnd, n % 2 == 0, counts)
        _check_invariants(cart)
        if n % 10 == 0:
            back = Cart.from_dict(json.loads(json.dumps(cart.to_dict())))
            assert back.totals == cart.totals
        if n % 25 == 0:
            # refund everything in random pieces: exactly the sale comes back
            done = {}
            back_total = back_tax = 0
            while True:
                left = refundable(cart, done)
                if not left:
                    break
                item = rnd.pick(left)
                result = refund(cart, [(item["line"], 1 + rnd.below(item["remaining"]))], done)
                done = result["refunded"]
                back_total += result["total"]
                back_tax += result["tax"]
            assert back_total == cart.totals["total"]
            assert back_tax == cart.totals["tax"]
    assert counts[0] > 100 and counts[1] > 10, counts
