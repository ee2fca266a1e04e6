"""Promotions (issue 16): windows, rewards, the decision rule and the exact spread, on
the portable core (also run under MicroPython by tools/mpy_runner.mjs)."""
from firmware.retail import promotions as P
from firmware.retail.cart import Cart, CartError, refund

MON = (2026, 5, 4)          # a Monday
FRI = (2026, 5, 8)
SAT = (2026, 5, 9)


def rule(ident="P1", order=0, **raw):
    raw.setdefault("id", ident)
    raw.setdefault("name_en", "Promo " + ident)
    if not [k for k in ("plus", "categories", "cart") if k in raw]:
        raw["plus"] = [1]
    got, problems = P.parse_rule(raw, 2, order)
    assert not problems, problems
    return got


def refused(raw):
    got, problems = P.parse_rule(raw, 2, 0)
    assert got is None
    return problems


def item(plu, price, unit="each", category=None):
    return {"id": plu, "plu": plu, "name_en": "Item %d" % plu, "name_zh": "", "price": price,
            "tax_rate": 13000, "unit": unit, "category": category}


def priced_cart(rules, now=MON + (12, 0), member=None, categories=None):
    cart = Cart("CNY")
    pricer = P.Pricer(rules, lambda: now, (categories or {}).get)
    cart.set_pricer(pricer)
    if member is not None:
        cart.set_member(member)
    return cart, pricer


# -- dates and windows --------------------------------------------------------------
def test_day_numbers_and_weekdays():
    assert P.day_number(1970, 1, 1) == 0
    assert P.weekday(P.day_number(*MON)) == 1
    assert P.weekday(P.day_number(*SAT)) == 6
    assert P.weekday(P.day_number(2024, 2, 29)) == 4
    for day in (0, 19000, P.day_number(2000, 2, 29), P.day_number(2100, 12, 31)):
        assert P.parse_date(P.date_text(day)) == day
    for bad in ("2026-02-29", "2026-13-01", "2026-5-1", "01/05/2026", 20260501):
        try:
            P.parse_date(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_window_dates_are_inclusive_local_days():
    r = rule(**{"from": "2026-05-01", "to": "2026-05-31", "percent_off": "10"})
    assert not P.is_open(r, (2026, 4, 30, 23, 59))
    assert P.is_open(r, (2026, 5, 1, 0, 0))
    assert P.is_open(r, (2026, 5, 31, 23, 59))
    assert not P.is_open(r, (2026, 6, 1, 0, 0))


def test_window_weekdays_and_hour_edges():
    r = rule(days=["mon", "fri"], hours="11:00-14:00", percent_off="10")
    assert P.is_open(r, MON + (11, 0))           # the start minute is in
    assert P.is_open(r, MON + (13, 59))
    assert not P.is_open(r, MON + (14, 0))       # the end minute is out
    assert not P.is_open(r, MON + (10, 59))
    assert P.is_open(r, FRI + (12, 0))
    assert not P.is_open(r, SAT + (12, 0))


def test_a_window_across_midnight_belongs_to_the_day_it_starts():
    r = rule(days=["fri"], hours="22:00-02:00", percent_off="10")
    assert P.is_open(r, FRI + (22, 0))
    assert P.is_open(r, SAT + (1, 59))           # Friday night, after midnight
    assert not P.is_open(r, SAT + (2, 0))
    assert not P.is_open(r, SAT + (22, 0))       # Saturday's evening is not Friday's
    assert not P.is_open(r, FRI + (1, 0))        # Thursday night's morning
    late = rule(hours="18:00-24:00", percent_off="10")
    assert P.is_open(late, MON + (23, 59)) and not P.is_open(late, MON + (17, 59))


def test_window_words_for_the_list_screen():
    r = rule(**{"from": "2026-05-01", "to": "2026-05-31", "days": ["mon", "tue", "wed", "thu",
                                                                   "fri"],
                "hours": "11:00-14:00", "percent_off": "10"})
    assert P.window_text(r) == ("05-01..05-31", "Mon-Fri", "11:00-14:00")
    assert P.window_text(r, "zh")[1] == "周一至五"
    assert P.days_text([1, 3, 6, 7]) == "Mon,Wed,Sat-Sun"
    assert P.window_text(rule(percent_off="5")) == (None, None, None)


# -- the file's fields ---------------------------------------------------------------
def test_bad_fields_are_named():
    assert any("exactly one of percent_off" in p for p in refused(
        {"id": "A", "name_en": "x", "plus": [1]}))
    assert any("exactly one of plus" in p for p in refused(
        {"id": "A", "name_en": "x", "plus": [1], "cart": True, "percent_off": "5"}))
    assert any("percent_off '120'" in p for p in refused(
        {"id": "A", "name_en": "x", "plus": [1], "percent_off": "120"}))
    assert any("at most 2 decimals" in p for p in refused(
        {"id": "A", "name_en": "x", "plus": [1], "amount_off": "1.005"}))
    assert any("unknown day" in p for p in refused(
        {"id": "A", "name_en": "x", "plus": [1], "percent_off": "5", "days": ["fry"]}))
    assert any("hours" in p for p in refused(
        {"id": "A", "name_en": "x", "plus": [1], "percent_off": "5", "hours": "25:00-26:00"}))
    assert any("before from" in p for p in refused(
        {"id": "A", "name_en": "x", "plus": [1], "percent_off": "5", "from": "2026-05-02",
         "to": "2026-05-01"}))
    assert any("unknown field 'percent'" in p for p in refused(
        {"id": "A", "name_en": "x", "plus": [1], "percent": "5"}))
    assert any("needs get" in p for p in refused({"id": "A", "name_en": "x", "plus": [1],
                                                  "buy": 2}))
    assert any("not the cart" in p for p in refused({"id": "A", "name_en": "x", "cart": True,
                                                     "price": "5.00"}))
    assert any("name_en: is empty" in p for p in refused({"id": "A", "plus": [1],
                                                          "percent_off": "5"}))


def test_a_file_with_problems_gives_no_rules_and_a_line_each():
    doc = {"promotions": [
        {"id": "OLD", "name_en": "Spring", "plus": [1], "percent_off": "10",
         "from": "2026-03-01", "to": "2026-03-31"},
        {"id": "A", "name_en": "Cola 10%", "plus": [2], "percent_off": "10"},
        {"id": "B", "name_en": "Cola 2+1", "plus": [2, 3], "buy": 2, "get": 1,
         "days": ["sat"]},
        {"id": "C", "name_en": "Ghost", "plus": [999], "amount_off": "1"},
        {"id": "A", "name_en": "Again", "plus": [5], "percent_off": "1"},
        {"id": "D", "name_en": "Points", "plus": [2], "points_x": "2"},
    ]}
    rules, problems = P.parse(doc, 2, today=P.day_number(*MON), plus={1, 2, 3, 5})
    assert rules == []
    text = "\n".join(problems)
    assert "promotion 1 (OLD): expired on 2026-03-31 (today is 2026-05-04)" in text, text
    assert "promotions 2 (A) and 3 (B) overlap on PLU 2" in text, text
    assert "promotion 4 (C): PLU 999 is not in the catalogue" in text, text
    assert "promotion 5 (A): id A is also promotion 2" in text, text
    assert "(D)" not in text            # points do not compete with money
    assert len(problems) == 4


def test_rules_on_different_days_or_hours_do_not_overlap():
    doc = {"promotions": [
        {"id": "A", "name_en": "Lunch", "plus": [2], "percent_off": "10", "hours": "11:00-14:00"},
        {"id": "B", "name_en": "Evening", "plus": [2], "percent_off": "20",
         "hours": "18:00-02:00"},
        {"id": "C", "name_en": "Weekend", "categories": ["Drinks"], "percent_off": "5"},
        {"id": "E", "name_en": "Cart", "cart": True, "amount_off": "5", "min_amount": "50"},
    ]}
    rules, problems = P.parse(doc, 2, categories={"Drinks": 1})
    assert problems == [] and [r["id"] for r in rules] == ["A", "B", "C", "E"]
    assert rules[2]["categories"] == [1] and rules[3]["min_amount"] == 5000


# -- rewards ---------------------------------------------------------------------------
def test_percent_amount_and_fixed_price_per_line():
    cart, _ = priced_cart([rule("PCT", 0, plus=[1], percent_off="12.5"),
                           rule("AMT", 1, plus=[2], amount_off="0.30"),
                           rule("FIX", 2, plus=[3], price="2.00"),
                           rule("KG", 3, plus=[101], price="10.00")])
    cart.add_item(item(1, 129))                 # 12.5 % of 1.29 = 0.16125 -> 0.16
    cart.add_item(item(2, 149), quantity=3)     # 0.30 off each: 0.90
    cart.add_item(item(3, 350), quantity=2)     # 2 x 2.00 instead of 7.00: 3.00 off
    cart.add_item(item(101, 1280, "kg"), grams=452)   # 5.79 -> 10.00/kg = 4.52: 1.27 off
    assert [l.promo_discount for l in cart.lines] == [16, 90, 300, 127]
    assert cart.lines[0].promo == {"id": "PCT", "name_en": "Promo PCT", "name_zh": "",
                                   "amount": 16}
    assert cart.totals["promo_discounts"] == 533
    assert cart.totals["subtotal"] == 129 + 447 + 700 + 579 - 533
    assert cart.total() == cart.totals["subtotal"]


def test_fixed_price_above_the_shelf_price_gives_nothing():
    cart, _ = priced_cart([rule("FIX", plus=[1], price="2.00")])
    cart.add_item(item(1, 129))
    assert cart.lines[0].promo is None and cart.total() == 129


def test_buy_two_get_one_on_one_line_and_across_lines():
    r = rule("B21", plus=[2], buy=2, get=1)
    cart, _ = priced_cart([r])
    cart.add_item(item(2, 149), quantity=2)
    assert cart.lines[0].promo is None          # two: nothing free yet
    cart.set_quantity(0, 3)
    assert cart.lines[0].promo_discount == 149
    cart.set_quantity(0, 7)                     # two groups of three, one left over
    assert cart.lines[0].promo_discount == 298
    cart2, _ = priced_cart([r])
    for _ in range(3):
        cart2.add_item(item(2, 149))
    # 1.49 free, spread over three lines of 1.49: 49.67 each -> 50, 50, 49
    assert [l.promo_discount for l in cart2.lines] == [50, 50, 49]
    assert cart2.total() == 298


def test_cheapest_free_ranks_pieces_dearest_first():
    r = rule("MIX", categories=["Snacks"], cheapest_free=3)
    cart, _ = priced_cart([r], categories={6: "Snacks", 7: "Snacks", 8: "Snacks"})
    cart.add_item(item(6, 750, category="Snacks"))
    cart.add_item(item(7, 590, category="Snacks"))
    cart.add_item(item(8, 990, category="Snacks"))
    # 9.90, 7.50, 5.90: the 5.90 is free, spread over 23.30 of pieces
    assert cart.totals["promo_discounts"] == 590
    assert sum(l.promo_discount for l in cart.lines) == 590
    # 5.90 x 7.50/23.30 = 1.899, x 5.90/23.30 = 1.494, x 9.90/23.30 = 2.507: 189 + 149 +
    # 250 = 588, the two left over to the largest remainders (.9 and .7)
    assert [l.promo_discount for l in cart.lines] == [190, 149, 251]


def test_leftover_pieces_of_a_group_stay_free_for_other_rules():
    rules = [rule("B21", 0, plus=[2, 3], buy=2, get=1),
             rule("TEA", 1, plus=[3], percent_off="10")]
    cart, _ = priced_cart(rules)
    cart.add_item(item(2, 500), quantity=3)     # 5.00 free
    cart.add_item(item(3, 200))                 # the fourth piece: in no complete group
    assert cart.lines[0].promo["id"] == "B21" and cart.lines[0].promo_discount == 500
    assert cart.lines[1].promo["id"] == "TEA" and cart.lines[1].promo_discount == 20


def test_cart_scope_percent_and_amount_are_spread_by_largest_remainder():
    cart, _ = priced_cart([rule("C", cart=True, amount_off="1.00", min_amount="10.00")])
    for _ in range(3):
        cart.add_item(item(4, 350))
    assert [l.promo_discount for l in cart.lines] == [34, 33, 33]   # 10.50 of 10.00
    cart2, _ = priced_cart([rule("C", cart=True, amount_off="1.00", min_amount="10.00")])
    cart2.add_item(item(4, 350))
    cart2.add_item(item(5, 350))
    assert cart2.totals["promo_discounts"] == 0         # 7.00 < 10.00
    cart2.add_item(item(9, 350))
    assert [l.promo_discount for l in cart2.lines] == [34, 33, 33]


def test_points_multiplier_takes_no_money_and_no_line():
    rules = [rule("PTS", 0, plus=[1], points_x="2", members_only=True),
             rule("PCT", 1, plus=[1], percent_off="10")]
    cart, _ = priced_cart(rules)
    cart.add_item(item(1, 1000))
    assert cart.lines[0].points_x == 1000 and cart.lines[0].promo_discount == 100
    cart.set_member({"number": "M0001", "tier": "silver", "phone": "13800000000"})
    assert cart.member == {"number": "M0001", "tier": "silver"}     # never the phone
    assert cart.lines[0].points_x == 2000 and cart.lines[0].promo_discount == 100


def test_members_only_and_tier_conditions():
    rules = [rule("GOLD", 0, plus=[1], percent_off="20", tiers=["gold"]),
             rule("MEM", 1, plus=[1], percent_off="5", members_only=True)]
    cart, _ = priced_cart(rules)
    cart.add_item(item(1, 1000))
    assert cart.lines[0].promo is None
    cart.set_member({"number": "1", "tier": "silver"})
    assert cart.lines[0].promo["id"] == "MEM"
    cart.set_member({"number": "1", "tier": "gold"})
    assert cart.lines[0].promo["id"] == "GOLD" and cart.total() == 800
    cart.set_member(None)
    assert cart.lines[0].promo is None and cart.total() == 1000


def test_min_qty_is_met_by_the_lines_it_discounts():
    cart, _ = priced_cart([rule("Q", plus=[1], percent_off="10", min_qty=3)])
    cart.add_item(item(1, 100), quantity=2)
    assert cart.lines[0].promo is None
    cart.add_item(item(1, 100))
    assert [l.promo_discount for l in cart.lines] == [20, 10]


def test_keyed_amounts_and_voided_lines_take_no_promotion():
    cart, _ = priced_cart([rule("C", cart=True, percent_off="10")])
    cart.add_misc(1000)
    cart.add_item(item(1, 1000))
    cart.void(1)
    assert cart.totals["promo_discounts"] == 0 and cart.lines[1].promo is None


# -- the decision rule -----------------------------------------------------------------
def test_one_promotion_per_line_the_largest_saving_first():
    rules = [rule("CAT", 0, categories=["Drinks"], percent_off="10"),
             rule("B21", 1, plus=[2], buy=2, get=1),
             rule("CART", 2, cart=True, percent_off="5")]
    cats = {1: "Drinks", 2: "Drinks", 9: "Dairy"}
    cart, _ = priced_cart(rules, categories=cats)
    cart.add_item(item(2, 350, category="Drinks"), quantity=3)    # 3.50 free (B21)
    cart.add_item(item(1, 200, category="Drinks"))                # 10 %: 0.20 (CAT)
    cart.add_item(item(9, 300, category="Dairy"))                 # 5 %: 0.15 (CART)
    ids = [l.promo["id"] for l in cart.lines]
    assert ids == ["B21", "CAT", "CART"], ids
    assert [l.promo_discount for l in cart.lines] == [350, 20, 15]
    assert cart.totals["promotions"] == [
        {"id": "B21", "name_en": "Promo B21", "name_zh": "", "amount": 350},
        {"id": "CAT", "name_en": "Promo CAT", "name_zh": "", "amount": 20},
        {"id": "CART", "name_en": "Promo CART", "name_zh": "", "amount": 15}]


def test_a_tie_goes_to_the_earlier_rule_in_the_file():
    rules = [rule("FIRST", 0, plus=[1], percent_off="10"),
             rule("SECOND", 1, plus=[1], amount_off="0.10")]
    cart, _ = priced_cart(rules)
    cart.add_item(item(1, 100))
    assert cart.lines[0].promo["id"] == "FIRST"


def test_the_decision_is_the_same_whatever_the_order_of_the_lines():
    rules = [rule("CAT", 0, categories=["D"], percent_off="15"),
             rule("B21", 1, plus=[2], buy=2, get=1),
             rule("C", 2, cart=True, amount_off="2.00")]
    cats = {1: "D", 2: "D", 3: "D"}
    a, _ = priced_cart(rules, categories=cats)
    b, _ = priced_cart(rules, categories=cats)
    goods = [(item(2, 300, category="D"), 2), (item(1, 990, category="D"), 1),
             (item(2, 300, category="D"), 1), (item(3, 120, category="D"), 4)]
    for it, q in goods:
        a.add_item(it, quantity=q)
    for it, q in reversed(goods):
        b.add_item(it, quantity=q)
    assert a.totals["promo_discounts"] == b.totals["promo_discounts"]
    assert a.total() == b.total()


def test_the_pricer_is_asked_again_only_when_lines_change():
    cart, pricer = priced_cart([rule("P", plus=[1], percent_off="10")])
    cart.add_item(item(1, 1000))
    calls = pricer.calls
    cart.set_line_discount(0, "percent", 10000)      # on gross - promo: 10 % of 9.00
    cart.set_discount("amount", 100)
    assert pricer.calls == calls
    assert cart.lines[0].line_discount == 90 and cart.total() == 1000 - 100 - 90 - 100
    cart.set_quantity(0, 2)
    assert pricer.calls == calls + 1


# -- the cart's redemption and the journal copy -----------------------------------------
def test_redemption_is_spread_and_limited_to_what_is_left():
    cart, _ = priced_cart([rule("P", plus=[1], percent_off="10")])
    cart.add_item(item(1, 350))
    cart.add_item(item(2, 350))
    cart.add_item(item(3, 350))
    left = cart.left_to_redeem()
    assert left == 315 + 700
    try:
        cart.set_redemption(1100, left + 1)
    except CartError as exc:
        assert exc.what == "redeem" and exc.limit == left and exc.limit_text("CNY") == "10.15"
    else:
        raise AssertionError("more than left was taken")
    cart.set_redemption(100, 100)
    assert sum(l.points_discount for l in cart.lines) == 100
    assert cart.totals["points_discount"] == 100 and cart.total() == left - 100
    cart.set_redemption(0)
    assert cart.redeem is None and cart.total() == left


def test_the_journal_copy_keeps_promotions_member_and_points_without_the_rules():
    cart, _ = priced_cart([rule("B21", plus=[2], buy=2, get=1, name_zh="买二送一")],
                          member={"number": "M7", "tier": "gold"})
    for _ in range(3):
        cart.add_item(item(2, 149))
    cart.set_redemption(50, 50)
    cart.points_earned = 2
    d = cart.to_dict()
    assert d["v"] == 2 and d["member"] == {"number": "M7", "tier": "gold"}
    again = Cart.from_dict(d)
    assert again.pricer is None and again.total() == cart.total()
    assert [l.promo for l in again.lines] == [l.promo for l in cart.lines]
    assert again.points_earned == 2 and again.redeem == {"points": 50, "amount": 50}
    d["lines"][0]["promo"]["amount"] += 1            # a copy not made by this rule
    try:
        Cart.from_dict(d)
    except CartError as exc:
        assert exc.what == "journal"
    else:
        raise AssertionError("a changed promotion was read")


def test_a_version_1_copy_is_still_read():
    v1 = {"v": 1, "currency": "CNY", "tax_inclusive": True, "discount": None,
          "discount_by": None,
          "lines": [{"kind": "item", "item_id": 1, "plu": 1, "name_en": "Water",
                     "name_zh": "", "price": 200, "original_price": None, "override_by": None,
                     "quantity": 2, "grams": None, "tax_rate": 13000, "discount": None,
                     "void": False, "void_by": None, "barcode": None, "label_grams": None,
                     "gross": 400, "line_discount": 0, "cart_discount": 0, "amount": 400,
                     "tax": 46, "net": 354, "total": 400}],
          "totals": {"lines": 1, "items": 2, "subtotal": 400, "line_discounts": 0,
                     "discount": 0, "tax": 46, "total": 400,
                     "rates": [{"rate": 13000, "net": 354, "tax": 46, "total": 400}]}}
    cart = Cart.from_dict(v1)
    assert cart.total() == 400 and cart.member is None and cart.points_earned == 0
    assert cart.lines[0].promo is None and cart.lines[0].points_x == 1000
    assert cart.to_dict()["v"] == 2
    v1["totals"]["total"] = 399
    try:
        Cart.from_dict(v1)
    except CartError:
        pass
    else:
        raise AssertionError("a v1 copy that does not add up was read")


def test_refunds_of_a_buy_two_get_one_give_back_exactly_what_was_paid():
    cart, _ = priced_cart([rule("B21", plus=[2], buy=2, get=1)])
    cart.add_item(item(2, 149), quantity=3)     # 4.47 - 1.49 = 2.98
    sold = Cart.from_dict(cart.to_dict())
    assert sold.total() == 298
    one = refund(sold, [(0, 1)])
    assert one["total"] == 99                   # round(2.98 x 1/3)
    rest = refund(sold, [(0, 2)], one["refunded"])
    assert one["total"] + rest["total"] == 298
    assert one["tax"] + rest["tax"] == sold.totals["tax"]
    lines, _ = priced_cart([rule("B21", plus=[2], buy=2, get=1)])
    for _ in range(3):
        lines.add_item(item(2, 149))
    sold = Cart.from_dict(lines.to_dict())
    got = 0
    done = None
    for index in (2, 0, 1):
        part = refund(sold, [(index, 1)], done)
        assert part["total"] == sold.lines[index].total
        got += part["total"]
        done = part["refunded"]
    assert got == 298
