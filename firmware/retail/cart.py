"""The cart of a sale: lines, discounts, tax, limits, the journal's copy, refunds.

Money is integer minor units of one currency; rates and percentages are thousandths of
a percent (firmware/retail/tax.py). Every figure is computed per line and rounded once,
half up (tax.round_div), and every total is a sum of line figures, so that the screen,
the receipt, the journal and the reports agree to the minor unit:

  gross          unit price x quantity, or unit price per kg x grams / 1000 (rounded)
  promo_discount the automatic promotion's amount on the line (the pricer's, recorded
                 in promo; firmware/retail/promotions.py decides it)
  line_discount  the line's own discount: percent of gross - promo_discount (rounded)
                 or a fixed amount
  cart_discount  the line's share of the cart discount (see tax.spread)
  points_discount the line's share of the points redemption (spread like the cart
                 discount, over what is left of each line)
  amount         gross - promo_discount - line_discount - cart_discount -
                 points_discount: what the line is sold for at shelf prices (with tax
                 when tax_inclusive, before tax when not)
  tax            tax.tax_of(amount, rate, inclusive), rounded half up
  net, total     amount - tax and amount (inclusive), or amount and amount + tax

  subtotal = sum of (gross - promo_discount - line_discount) of the lines not voided
  total    = sum of line totals = subtotal - cart discount - redemption (+ tax when
             exclusive)
  tax      = sum of line taxes = sum of the taxes per rate

A voided line stays in the cart (receipt, journal) and counts for nothing. Changes that
would break a limit of [retail] are refused with CartError and leave the cart as it was.
"""
from firmware.core.money import format_amount
from firmware.retail.tax import WHOLE, format_rate, percent_of, round_div, spread, tax_of

VERSION = 2                 # of to_dict(); a new rounding rule needs a new version
READS = (1, 2)              # versions from_dict reads: 1 had no promotions, member, points
ONE_X = 1000                # points_x of a line no multiplier applies to
EACH = "each"
KG = "kg"
DISCOUNT_KINDS = ("percent", "amount")

# limits when no [retail] section is given (the config's defaults)
DEFAULT_LIMITS = {"max_quantity": 9999, "max_weight_g": 99999, "max_line_amount": 1000000,
                  "max_lines": 200, "max_total": 1000000}
# what CartError.what names -> whether its limit is money (shown in the currency)
MONEY_LIMITS = ("line_amount", "total", "price", "discount", "amount", "redeem")


class CartError(Exception):
    """A change the cart refused. what: quantity | weight | line_amount | lines | total |
    price | amount | discount | rate | void | line | refund | journal | redeem | member;
    limit: the number
    that was crossed (a count, grams, or minor units when what is in MONEY_LIMITS), so
    the screen can say it: t(e.msg_id, limit=e.limit_text(currency))."""

    def __init__(self, what, limit=None, detail=""):
        super().__init__("%s: limit %s %s" % (what, limit, detail))
        self.what = what
        self.limit = limit
        self.detail = detail
        self.msg_id = "cart_" + what

    def limit_text(self, currency):
        if self.limit is None:
            return ""
        if self.what in MONEY_LIMITS:
            return format_amount(self.limit, currency)
        if self.what == "weight":
            return format_weight(self.limit)
        if self.what == "rate":
            return format_rate(self.limit)
        return "%d" % self.limit


def format_weight(grams):
    """452 -> '0.452 kg'."""
    return "%d.%03d kg" % (grams // 1000, grams % 1000)


def _count(value):
    return isinstance(value, int) and not isinstance(value, bool)


class Line:
    """One line of the cart. Inputs: kind ("item" | "misc"), item_id, plu, name_en,
    name_zh, price (unit price now: per piece, or per kg when grams is set),
    original_price (the price before an override, else None), override_by, quantity
    (pieces; 1 for a weighed line), grams (None unless weighed), tax_rate, discount
    (None or (kind, value)), void, void_by, barcode, label_grams (the weight a
    price-embedded label stands for, worked back from the price per kg, for the stock;
    else None), promo (None or {"id", "name_en", "name_zh", "amount"}: the automatic
    promotion the pricer gave it, recorded so that the journal's copy is rebuilt without
    the rules), points_x (the points multiplier, thousandths: 1000 is 1x). Computed by
    the cart: gross, promo_discount, line_discount, cart_discount, points_discount,
    amount, tax, net, total."""

    INPUTS = ("kind", "item_id", "plu", "name_en", "name_zh", "price", "original_price",
              "override_by", "quantity", "grams", "tax_rate", "discount", "void", "void_by",
              "barcode", "label_grams", "promo", "points_x")
    FIGURES = ("gross", "promo_discount", "line_discount", "cart_discount",
               "points_discount", "amount", "tax", "net", "total")

    def __init__(self, kind, price, tax_rate, quantity=1, grams=None, item_id=None, plu=None,
                 name_en="", name_zh="", barcode=None):
        self.kind = kind
        self.item_id = item_id
        self.plu = plu
        self.name_en = name_en
        self.name_zh = name_zh
        self.price = price
        self.original_price = None
        self.override_by = None
        self.quantity = quantity
        self.grams = grams
        self.tax_rate = tax_rate
        self.discount = None
        self.void = False
        self.void_by = None
        self.barcode = barcode
        self.label_grams = None
        self.promo = None
        self.points_x = ONE_X
        for name in Line.FIGURES:
            setattr(self, name, 0)

    def copy(self):
        other = Line(self.kind, self.price, self.tax_rate)
        for name in Line.INPUTS + Line.FIGURES:
            setattr(other, name, getattr(self, name))
        if self.promo is not None:
            other.promo = dict(self.promo)
        return other

    def weighed(self):
        return self.grams is not None

    def measure(self):
        """What a refund counts: grams of a weighed line, else pieces."""
        return self.grams if self.grams is not None else self.quantity

    def stock_quantity(self):
        """What the sale takes off the item's stock, in its base unit: grams for a kg
        item (weighed, or the label's estimate), else pieces."""
        if self.grams is not None:
            return self.grams
        if self.label_grams is not None:
            return self.label_grams * self.quantity
        return self.quantity

    def name(self, lang):
        """The name in lang; the English one when the Chinese is missing."""
        if lang == "zh" and self.name_zh:
            return self.name_zh
        return self.name_en or self.name_zh

    def gross_amount(self):
        if self.grams is not None:
            return round_div(self.price * self.grams, 1000)
        return self.price * self.quantity

    def to_dict(self):
        d = {}
        for name in Line.INPUTS + Line.FIGURES:
            d[name] = getattr(self, name)
        if self.discount is not None:
            d["discount"] = {"kind": self.discount[0], "value": self.discount[1]}
        if self.promo is not None:
            d["promo"] = dict(self.promo)
        return d

    @staticmethod
    def from_dict(d):
        line = Line(d["kind"], d["price"], d["tax_rate"])
        for name in Line.INPUTS:
            setattr(line, name, d.get(name))
        line.void = bool(d.get("void"))
        disc = d.get("discount")
        line.discount = (disc["kind"], disc["value"]) if disc else None
        promo = d.get("promo")          # a version 1 copy has neither
        line.promo = dict(promo) if promo else None
        line.points_x = d.get("points_x") or ONE_X
        return line


class Cart:
    def __init__(self, currency, tax_inclusive=True, limits=None):
        self.currency = currency
        self.tax_inclusive = tax_inclusive
        self.limits = dict(DEFAULT_LIMITS)
        if limits:
            for key in DEFAULT_LIMITS:
                if key in limits:
                    self.limits[key] = limits[key]
        self.lines = []
        self.discount = None            # None or (kind, value): the cart discount
        self.discount_by = None
        self.member = None              # None or {"number", "tier"}: never a phone or name
        self.redeem = None              # None or {"points", "amount"}: points paid with
        self.points_earned = 0          # set by the loyalty code before the payment
        self.pricer = None              # fn(cart) -> [(promo or None, points_x)] per line
        self.totals = {}
        self._compute()

    @staticmethod
    def from_config(config):
        """A cart with the terminal's currency, tax mode and limits."""
        retail = config["retail"]
        return Cart(config["money"]["currency"], retail["tax_inclusive"], retail)

    # -- adding lines ---------------------------------------------------------------

    def add_item(self, item, quantity=1, grams=None, price=None, barcode=None):
        """Add a catalogue item; return the new line's index.

        item: a dict with id, plu, name_en, name_zh, price (per piece, or per kg for
        unit "kg"), tax_rate and unit. A kg item needs grams (typed, or from a weight
        label); price replaces the catalogue price for a price-embedded scale label (the
        label's amount for one package: quantity 1, no grams).
        """
        weighed = item.get("unit") == KG and price is None
        if weighed and grams is None:
            raise CartError("weight", self.limits["max_weight_g"], "a kg item needs its weight")
        if not weighed:
            grams = None
        line = Line("item", item["price"] if price is None else price, item.get("tax_rate", 0),
                    quantity=1 if weighed else quantity, grams=grams, item_id=item.get("id"),
                    plu=item.get("plu"), name_en=item.get("name_en", ""),
                    name_zh=item.get("name_zh", ""), barcode=barcode)
        if item.get("unit") == KG and price is not None:
            # a price label of a kg item: the weight its price stands for, for the stock
            line.label_grams = round_div(price * 1000, item["price"]) if item["price"] > 0 else 0
        return self._add(line)

    def add_misc(self, amount, tax_rate=0, name_en="", name_zh=""):
        """A keyed amount (a "misc" line): one piece at amount. Names empty: the
        receipt prints the catalogue's word for a keyed amount."""
        if not _count(amount) or amount < 1:
            raise CartError("amount", 1, "a keyed amount must be more than 0")
        return self._add(Line("misc", amount, tax_rate, name_en=name_en, name_zh=name_zh))

    def _add(self, line):
        if len(self.lines) >= self.limits["max_lines"]:
            raise CartError("lines", self.limits["max_lines"])
        self._check_line(line)

        def apply():
            self.lines.append(line)
        self._change(apply)
        return len(self.lines) - 1

    # -- changing lines -------------------------------------------------------------

    def line(self, index):
        if not _count(index) or not 0 <= index < len(self.lines):
            raise CartError("line", len(self.lines), "no line %r" % (index,))
        return self.lines[index]

    def _open_line(self, index):
        line = self.line(index)
        if line.void:
            raise CartError("void", None, "line %d is void" % index)
        return line

    def set_quantity(self, index, quantity):
        line = self._open_line(index)
        if line.weighed():
            raise CartError("quantity", 1, "a weighed line has a weight, not a quantity")
        self._edit(index, "quantity", quantity)

    def set_weight(self, index, grams):
        line = self._open_line(index)
        if not line.weighed():
            raise CartError("weight", None, "line %d is not weighed" % index)
        self._edit(index, "grams", grams)

    def override_price(self, index, price, operator=""):
        """A new unit price; the first original is kept for the receipt and the audit."""
        line = self._open_line(index)
        new = line.copy()
        if new.original_price is None:
            new.original_price = line.price
        new.price = price
        new.override_by = operator
        if new.price == new.original_price:
            new.original_price = None
            new.override_by = None
        self._replace(index, new)

    def set_line_discount(self, index, kind=None, value=0):
        """kind "percent" (value in thousandths of a percent) or "amount" (minor units);
        kind None removes the discount."""
        line = self._open_line(index)
        new = line.copy()
        new.discount = self._discount(kind, value)
        self._replace(index, new)

    def set_pricer(self, pricer):
        """The automatic promotions: pricer(cart) -> [(promo or None, points_x)], one
        per line, asked at every change (firmware.retail.promotions.Pricer). None: the
        lines keep the promotions they have. from_dict never sets one."""
        def apply():
            self.pricer = pricer
        self._change(apply)

    def set_member(self, member):
        """The member the sale is for ({"number": str, "tier": str}, or None): the cart
        keeps the number and tier only. Promotions for members and tiers follow."""
        if member is not None:
            number, tier = member.get("number"), member.get("tier", "")
            if not isinstance(number, str) or not number or not isinstance(tier, str):
                raise CartError("member", None, "a member is {number, tier} as text")
            member = {"number": number, "tier": tier}

        def apply():
            self.member = member
        self._change(apply)

    def set_redemption(self, points=0, amount=0):
        """Points paid with: amount minor units off the sale, spread over the lines like
        the cart discount. points 0 clears it. More than is left to pay is refused with
        CartError("redeem", limit=the most that can be taken off)."""
        if not _count(points) or points < 0 or not _count(amount) or amount < 0:
            raise CartError("redeem", None, "points and amount are whole numbers")
        redeem = None
        if points:
            if amount < 1:
                raise CartError("redeem", None, "a redemption takes something off")
            redeem = {"points": points, "amount": amount}

        def apply():
            self.redeem = redeem
        self._change(apply)

    def left_to_redeem(self):
        """The most a redemption may take off now: what the sale comes to after its
        promotions and discounts (before tax when prices are before tax)."""
        return self.totals.get("subtotal", 0) - self.totals.get("discount", 0)

    def copy(self):
        """An independent cart with the same lines, figures and pricer (for previews)."""
        other = Cart.from_dict(self.to_dict(), self.limits)
        other.pricer = self.pricer
        other.points_earned = self.points_earned
        return other

    def set_discount(self, kind=None, value=0, operator=""):
        """The cart discount, spread over the lines (see tax.spread); kind None removes it."""
        discount = self._discount(kind, value)

        def apply():
            self.discount = discount
            self.discount_by = operator if discount else None
        self._change(apply)

    def void(self, index, operator=""):
        line = self._open_line(index)

        def apply():
            line.void = True
            line.void_by = operator
        self._change(apply)

    def _edit(self, index, name, value):
        new = self.lines[index].copy()
        setattr(new, name, value)
        self._replace(index, new)

    def _replace(self, index, new):
        self._check_line(new)

        def apply():
            self.lines[index] = new
        self._change(apply)

    def _discount(self, kind, value):
        if kind is None:
            return None
        if kind not in DISCOUNT_KINDS:
            raise CartError("discount", None, "kind must be one of " + ", ".join(DISCOUNT_KINDS))
        if kind == "percent" and (not _count(value) or not 0 < value <= WHOLE):
            raise CartError("rate", WHOLE, "a percent discount is more than 0 and at most 100 %")
        if kind == "amount" and (not _count(value) or value < 1):
            raise CartError("discount", 1, "a discount amount is at least 1")
        return (kind, value)

    def _check_line(self, line):
        lim = self.limits
        if not _count(line.price) or line.price < 0:
            raise CartError("price", 0, "a price is 0 or more")
        if not _count(line.tax_rate) or not 0 <= line.tax_rate <= WHOLE:
            raise CartError("rate", WHOLE)
        if line.grams is not None:
            if not _count(line.grams) or not 1 <= line.grams <= lim["max_weight_g"]:
                raise CartError("weight", lim["max_weight_g"])
        elif not _count(line.quantity) or not 1 <= line.quantity <= lim["max_quantity"]:
            raise CartError("quantity", lim["max_quantity"])
        if line.price > lim["max_line_amount"]:
            raise CartError("price", lim["max_line_amount"])
        gross = line.gross_amount()
        if gross > lim["max_line_amount"]:
            raise CartError("line_amount", lim["max_line_amount"])
        if line.discount is not None and line.discount[0] == "amount" and line.discount[1] > gross:
            raise CartError("discount", gross, "more than the line")

    def _change(self, apply):
        """Apply a change; undo it and raise when the cart breaks a limit."""
        saved = [line.copy() for line in self.lines]
        saved_state = (self.discount, self.discount_by, self.member, self.redeem, self.pricer)
        try:
            apply()
            self._compute()
            if self.totals["total"] > self.limits["max_total"]:
                raise CartError("total", self.limits["max_total"])
        except CartError:
            self.lines = saved
            (self.discount, self.discount_by, self.member, self.redeem,
             self.pricer) = saved_state
            self._compute()
            raise

    # -- the figures ----------------------------------------------------------------

    def active(self):
        """The lines that count: (index, line) of every line not voided."""
        return [(i, self.lines[i]) for i in range(len(self.lines)) if not self.lines[i].void]

    def _price(self):
        """The pricer's promotions and multipliers onto the lines."""
        decided = self.pricer(self)
        for k in range(len(self.lines)):
            line = self.lines[k]
            promo, points_x = decided[k] if k < len(decided) else (None, ONE_X)
            if line.void or promo is None or not promo.get("amount"):
                line.promo = None
            else:
                line.promo = dict(promo)
            line.points_x = ONE_X if line.void else points_x

    def _compute(self):
        inclusive = self.tax_inclusive
        if self.pricer is not None:
            self._price()
        active = []
        for line in self.lines:
            for name in Line.FIGURES:
                setattr(line, name, 0)
            line.gross = line.gross_amount()
            if line.promo is not None and not line.void:
                line.promo_discount = line.promo["amount"]
                if not _count(line.promo_discount) or not 0 <= line.promo_discount <= line.gross:
                    raise CartError("journal", None, "a promotion larger than its line")
            base = line.gross - line.promo_discount
            if line.discount is not None:
                kind, value = line.discount
                line.line_discount = percent_of(base, value) if kind == "percent" else value
                if line.line_discount > base and not line.void:
                    raise CartError("discount", base, "more than the line")
            if not line.void:
                active.append(line)
        subtotal = 0
        for line in active:
            subtotal += line.gross - line.promo_discount - line.line_discount
        cart_discount = 0
        if self.discount is not None:
            kind, value = self.discount
            cart_discount = percent_of(subtotal, value) if kind == "percent" else value
            if cart_discount > subtotal:
                raise CartError("discount", subtotal, "more than the cart")
        shares = spread(cart_discount, [line.gross - line.promo_discount - line.line_discount
                                         for line in active])
        for k in range(len(active)):
            active[k].cart_discount = shares[k]
        redeemed = self.redeem["amount"] if self.redeem else 0
        if redeemed > subtotal - cart_discount:
            raise CartError("redeem", subtotal - cart_discount, "more than is left to pay")
        shares = spread(redeemed, [line.gross - line.promo_discount - line.line_discount -
                                    line.cart_discount for line in active])
        rates = {}
        tax = total = items = 0
        for k in range(len(active)):
            line = active[k]
            line.points_discount = shares[k]
            line.amount = (line.gross - line.promo_discount - line.line_discount -
                           line.cart_discount - line.points_discount)
            line.tax = tax_of(line.amount, line.tax_rate, inclusive)
            if inclusive:
                line.net, line.total = line.amount - line.tax, line.amount
            else:
                line.net, line.total = line.amount, line.amount + line.tax
            tax += line.tax
            total += line.total
            items += 1 if line.weighed() else line.quantity
            group = rates.get(line.tax_rate)
            if group is None:
                group = rates[line.tax_rate] = {"rate": line.tax_rate, "net": 0, "tax": 0, "total": 0}
            group["net"] += line.net
            group["tax"] += line.tax
            group["total"] += line.total
        line_discounts = promo_discounts = 0
        promotions = []
        by_id = {}
        for line in active:
            line_discounts += line.line_discount
            promo_discounts += line.promo_discount
            if line.promo_discount:
                got = by_id.get(line.promo["id"])
                if got is None:
                    got = by_id[line.promo["id"]] = {
                        "id": line.promo["id"], "name_en": line.promo.get("name_en", ""),
                        "name_zh": line.promo.get("name_zh", ""), "amount": 0}
                    promotions.append(got)
                got["amount"] += line.promo_discount
        self.totals = {
            "lines": len(active), "items": items, "subtotal": subtotal,
            "line_discounts": line_discounts, "discount": cart_discount, "tax": tax,
            "total": total, "rates": [rates[r] for r in sorted(rates)],
            "promo_discounts": promo_discounts, "points_discount": redeemed,
            "promotions": promotions,
        }

    def total(self):
        return self.totals["total"]

    def empty(self):
        return not self.active()

    # -- the journal's copy ---------------------------------------------------------

    def to_dict(self):
        """A JSON-able copy for the journal: the inputs, every line figure and the
        totals, so reports read figures instead of computing them again."""
        return {
            "v": VERSION, "currency": self.currency, "tax_inclusive": self.tax_inclusive,
            "discount": ({"kind": self.discount[0], "value": self.discount[1]}
                         if self.discount else None),
            "discount_by": self.discount_by,
            "member": dict(self.member) if self.member else None,
            "redeem": dict(self.redeem) if self.redeem else None,
            "points_earned": self.points_earned,
            "lines": [line.to_dict() for line in self.lines],
            "totals": _copy_totals(self.totals),
        }

    @staticmethod
    def from_dict(d, limits=None):
        """The cart a to_dict() copy was made from. Limits are not applied (they may have
        changed since the sale); the figures must come out as they were recorded, else
        CartError("journal"), since the copy was not made by this rule. Version 1 copies
        (before promotions, members and points) are read as carts without them."""
        if d.get("v") not in READS:
            raise CartError("journal", VERSION, "cart copy version %r" % d.get("v"))
        cart = Cart(d["currency"], d["tax_inclusive"], limits)
        cart.lines = [Line.from_dict(ld) for ld in d["lines"]]
        disc = d.get("discount")
        cart.discount = (disc["kind"], disc["value"]) if disc else None
        cart.discount_by = d.get("discount_by")
        member = d.get("member")
        cart.member = {"number": member["number"], "tier": member.get("tier", "")} \
            if member else None
        redeem = d.get("redeem")
        cart.redeem = {"points": redeem["points"], "amount": redeem["amount"]} if redeem else None
        cart.points_earned = d.get("points_earned") or 0
        cart._compute()
        if "totals" in d:
            mine = _copy_totals(cart.totals)
            theirs = _copy_totals(d["totals"])
            for key in theirs:          # a version 1 copy has fewer totals
                if mine.get(key) != theirs[key]:
                    raise CartError("journal", None, "the recorded totals do not match the lines")
        for i in range(len(cart.lines)):
            for name in Line.FIGURES:
                if name in d["lines"][i] and d["lines"][i][name] != getattr(cart.lines[i], name):
                    raise CartError("journal", i, "line %d: %s differs" % (i, name))
        return cart


def _copy_totals(totals):
    out = dict(totals)
    out["rates"] = [dict(r) for r in totals["rates"]]
    if "promotions" in totals:
        out["promotions"] = [dict(p) for p in totals["promotions"]]
    return out


# -- refunds ------------------------------------------------------------------------
#
# A sold cart and what was refunded already ({line index: pieces or grams}) tell what
# may still be refunded. The money for a part of a line telescopes: refunding k more of
# a line's M units after r gives back F(r + k) - F(r), with F(n) = round(total * n / M),
# so any sequence of partial refunds of a line adds up to exactly what it was sold for
# (and its tax to exactly the tax it carried).

def _refunded_of(refunded, index):
    if not refunded:
        return 0
    return refunded.get(index, 0) + refunded.get(str(index), 0)     # JSON keys are text


def refundable(cart, refunded=None):
    """[{"line": index, "remaining": pieces or grams, "unit": "each" | "kg"}] for every
    line not voided that still has something to refund."""
    out = []
    for index, line in cart.active():
        remaining = line.measure() - _refunded_of(refunded, index)
        if remaining > 0:
            out.append({"line": index, "remaining": remaining,
                        "unit": KG if line.weighed() else EACH})
    return out


def refund(cart, picks, refunded=None):
    """The money of a refund: picks is [(line index, pieces or grams)]. Refused with
    CartError("refund", limit=remaining) when a pick is more than was sold and not yet
    refunded, or names a voided line. Returns {"lines": [{"line", "measure", "amount",
    "tax", "net", "tax_rate", "stock"}], "total", "tax", "rates": [{"rate", "net", "tax",
    "total"}], "refunded": the refunded dict after this refund}; "stock" is what goes
    back on the item's stock in its base unit (telescoping like the money)."""
    done = {}
    if refunded:
        for key in refunded:
            done[int(key)] = done.get(int(key), 0) + refunded[key]
    lines = []
    rates = {}
    total = tax = 0
    for index, measure in picks:
        line = cart.line(index)
        before = done.get(index, 0)
        remaining = 0 if line.void else line.measure() - before
        if not _count(measure) or measure < 1 or measure > remaining:
            raise CartError("refund", remaining, "line %d" % index)
        whole = line.measure()
        amount = round_div(line.total * (before + measure), whole) - round_div(line.total * before, whole)
        part_tax = round_div(line.tax * (before + measure), whole) - round_div(line.tax * before, whole)
        sold = line.stock_quantity()
        stock = round_div(sold * (before + measure), whole) - round_div(sold * before, whole)
        done[index] = before + measure
        lines.append({"line": index, "measure": measure, "amount": amount, "tax": part_tax,
                      "net": amount - part_tax, "tax_rate": line.tax_rate, "stock": stock})
        total += amount
        tax += part_tax
        group = rates.get(line.tax_rate)
        if group is None:
            group = rates[line.tax_rate] = {"rate": line.tax_rate, "net": 0, "tax": 0, "total": 0}
        group["net"] += amount - part_tax
        group["tax"] += part_tax
        group["total"] += amount
    return {"lines": lines, "total": total, "tax": tax,
            "rates": [rates[r] for r in sorted(rates)], "refunded": done}
