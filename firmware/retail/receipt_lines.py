"""The itemised part of a receipt: a cart's lines, discounts, tax per rate and totals.

32 columns, CJK-aware (a Chinese glyph takes two): names wrap, a label and its amount
share a line when they fit and take two lines when they do not, so nothing is cut.
Every figure printed is a figure of the cart (firmware/retail/cart.py), never computed
again here, so the paper says what the journal says.

  Fuji apples                            name (wraps), in the receipt's language
    3 x 3.50                   10.50 A   quantity x unit price, line amount, rate mark
    Price 3.50, was 4.00                 a price override keeps the old price
    Buy 2 get 1                -3.50 A   the line's automatic promotion, by its name
    Discount 10%               -0.70 A   a line discount (after the promotion)
  Bananas
    0.452 kg x 12.80/kg         5.79 B   a weighed line
  Milk 1L
    1 x 4.20                      VOID   a voided line: printed, not counted
  --------------------------------
  5 items
  Subtotal                     15.24
  Discount 5%                  -0.76     the cart discount
  Points 100                   -1.00     points redeemed (spread over the lines)
  Tax 9% (B)                    0.45     (prices without tax: taxes, then TOTAL)
  TOTAL                        14.48
  Incl. tax 9% (B)              0.45     (prices with tax: TOTAL, then the tax in it)
  Member ...4632                         a member's sale: the member number's tail (the
  Points earned                   12     cart keeps no phone), points earned and redeemed

The rate marks (A, B, ...) appear only when the cart holds more than one tax rate;
the letters follow the rates from lowest to highest.
"""
from firmware.core.money import format_amount
from firmware.retail.cart import format_weight
from firmware.retail.tax import format_rate
from firmware.ui.receipt import display_width
from firmware.ui.screen import wrap

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def pair_wrapped(receipt, left, right, bold=False, indent=""):
    """left and right on one line when they fit; else left wrapped and right alone on
    the next line, against the right edge. Never cuts a word off the paper."""
    width = receipt.width
    if display_width(indent + left) + 1 + display_width(right) <= width:
        receipt.pair(indent + left, right, bold)
        return receipt
    for row in wrap(left, width - display_width(indent)):
        receipt.add(indent + row, "left", bold)
    if right:
        receipt.add(right, "right", bold)
    return receipt


def rate_marks(cart):
    """{rate: " A"} when the cart's counted lines hold more than one rate, else {}."""
    rates = [group["rate"] for group in cart.totals["rates"]]
    if len(rates) < 2:
        return {}
    marks = {}
    for i in range(len(rates)):
        marks[rates[i]] = " " + LETTERS[i % len(LETTERS)]
    return marks


def _money(cart, minor):
    return format_amount(minor, cart.currency)


def _name(line, t):
    name = line.name(t.lang)
    return name or t("rcpt_misc")


def _detail(cart, line):
    """'3 x 3.50' or '0.452 kg x 12.80/kg'."""
    if line.weighed():
        return "%s x %s/kg" % (format_weight(line.grams), _money(cart, line.price))
    return "%d x %s" % (line.quantity, _money(cart, line.price))


def _discount_label(kind_value, t):
    kind, value = kind_value
    if kind == "percent":
        return t("rcpt_discount_pct", rate=format_rate(value))
    return t("rcpt_discount")


def promo_name(promo, t):
    """A promotion's name in the receipt's language (the English one when the Chinese
    is missing)."""
    if t.lang == "zh" and promo.get("name_zh"):
        return promo["name_zh"]
    return promo.get("name_en") or promo.get("id", "")


def add_lines(receipt, cart, t):
    """The cart's lines, each with its name, detail, override and discount."""
    marks = rate_marks(cart)
    for line in cart.lines:
        for row in wrap(_name(line, t), receipt.width):
            receipt.add(row)
        if line.void:
            pair_wrapped(receipt, _detail(cart, line), t("rcpt_void"), indent="  ")
            continue
        mark = marks.get(line.tax_rate, "")
        pair_wrapped(receipt, _detail(cart, line), _money(cart, line.gross) + mark, indent="  ")
        if line.original_price is not None:
            for row in wrap(t("rcpt_price_was", price=_money(cart, line.price),
                              was=_money(cart, line.original_price)), receipt.width - 2):
                receipt.add("  " + row)
        if getattr(line, "promo_discount", 0):
            pair_wrapped(receipt, promo_name(line.promo, t),
                         _money(cart, -line.promo_discount) + mark, indent="  ")
        if line.discount is not None:
            pair_wrapped(receipt, _discount_label(line.discount, t),
                         _money(cart, -line.line_discount) + mark, indent="  ")
    return receipt


def add_totals(receipt, cart, t, total=True, member_rows=None):
    """Item count, subtotal, the cart discount, tax per rate and the total, then the
    member's block (member_rows: what the members' store adds, see add_member)."""
    totals = cart.totals
    marks = rate_marks(cart)
    receipt.rule()
    receipt.add(t("rcpt_items", n=totals["items"]))
    pair_wrapped(receipt, t("rcpt_subtotal"), _money(cart, totals["subtotal"]))
    if cart.discount is not None:
        pair_wrapped(receipt, _discount_label(cart.discount, t), _money(cart, -totals["discount"]))
    redeem = getattr(cart, "redeem", None)
    if redeem:
        pair_wrapped(receipt, t("rcpt_points_used", n="%d" % redeem["points"]),
                     _money(cart, -totals["points_discount"]))
    label = "rcpt_tax_incl" if cart.tax_inclusive else "rcpt_tax_rate"
    taxes = []
    for group in totals["rates"]:
        text = t(label, rate=format_rate(group["rate"]))
        mark = marks.get(group["rate"], "")
        if mark:
            text += " (" + mark.strip() + ")"
        taxes.append((text, _money(cart, group["tax"])))
    if not cart.tax_inclusive:
        for text, amount in taxes:
            pair_wrapped(receipt, text, amount)
    if total:
        pair_wrapped(receipt, t("rcpt_total"), _money(cart, totals["total"]), bold=True)
    if cart.tax_inclusive:
        for text, amount in taxes:
            pair_wrapped(receipt, text, amount)
    add_member(receipt, cart, t, member_rows)
    return receipt


def number_tail(number):
    """'...4632': enough of a member number for the member to know it is theirs."""
    return "..." + number[-4:] if len(number) > 4 else number


def add_member(receipt, cart, t, extra=None):
    """A member's sale: the member number's tail, the points earned and redeemed, then
    extra [(left, right)] rows the caller has (the balance, from the members' store),
    and whatever firmware.retail.members.receipt_rows(t, cart) adds when it has that.
    Nothing for a sale without a member."""
    member = getattr(cart, "member", None)
    if not member:
        return receipt
    receipt.rule()
    rows = list(extra or ())
    if rows and rows[0][0] == t("mb_rc_member"):    # the masked phone beside the number
        pair_wrapped(receipt, t("rcpt_member", n=number_tail(member["number"])), rows.pop(0)[1])
    else:
        for row in wrap(t("rcpt_member", n=number_tail(member["number"])), receipt.width):
            receipt.add(row)
    if cart.points_earned:
        pair_wrapped(receipt, t("rcpt_points_earned"), "%d" % cart.points_earned)
    if cart.redeem:
        pair_wrapped(receipt, t("rcpt_points_redeemed"), "%d" % cart.redeem["points"])
    for left, right in rows:
        pair_wrapped(receipt, left, right)
    try:
        from firmware.retail import members
    except ImportError:
        return receipt
    rows = getattr(members, "receipt_rows", None)
    if rows is not None:
        for left, right in rows(t, cart):
            pair_wrapped(receipt, left, right)
    return receipt


def itemise(receipt, cart, t, total=True):
    """Lines and totals of cart into receipt (a firmware.ui.receipt.Receipt); t is the
    receipt language's translator (firmware.ui.i18n.Translator)."""
    add_lines(receipt, cart, t)
    add_totals(receipt, cart, t, total)
    return receipt


def itemise_refund(receipt, cart, result, t, total=True):
    """The lines of a refund (firmware.retail.cart.refund's result) of the sold cart:
    each line's name, what is given back of it and its money, tax per rate, the total
    (unless total is False: the caller prints it)."""
    marks = {}
    rates = [group["rate"] for group in result["rates"]]
    if len(rates) > 1:
        for i in range(len(rates)):
            marks[rates[i]] = " " + LETTERS[i % len(LETTERS)]
    for part in result["lines"]:
        line = cart.line(part["line"])
        for row in wrap(_name(line, t), receipt.width):
            receipt.add(row)
        if line.weighed():
            detail = format_weight(part["measure"])
        else:
            detail = "%d x %s" % (part["measure"], _money(cart, line.price))
        # as on the sale: the shelf-price amount, with tax or before it
        shown = part["amount"] if cart.tax_inclusive else part["net"]
        pair_wrapped(receipt, detail, _money(cart, -shown) + marks.get(line.tax_rate, ""),
                     indent="  ")
    receipt.rule()
    label = "rcpt_tax_incl" if cart.tax_inclusive else "rcpt_tax_rate"
    taxes = []
    for group in result["rates"]:
        text = t(label, rate=format_rate(group["rate"]))
        if marks:
            text += " (" + marks[group["rate"]].strip() + ")"
        taxes.append((text, _money(cart, -group["tax"])))
    if not cart.tax_inclusive:
        for text, amount in taxes:
            pair_wrapped(receipt, text, amount)
    if total:
        pair_wrapped(receipt, t("rcpt_total"), _money(cart, -result["total"]), bold=True)
    if cart.tax_inclusive:
        for text, amount in taxes:
            pair_wrapped(receipt, text, amount)
    return receipt
