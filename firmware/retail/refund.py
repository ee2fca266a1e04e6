"""A refund of an item sale by its lines: what was sold, what was given back already,
and what a refund record carries.

The sale's record carries its cart (firmware/retail/cart.py to_dict); a refund record
carries its part in the same "cart" field, as {"refund": part}, where part is
firmware.retail.cart.refund's result (the lines with their money, tax and stock, the
tax per rate, the total) and picks, [[line index, pieces or grams]]. What a sale has
had refunded is the sum of the picks of its approved refunds: it is never written
twice, so it cannot disagree with the refunds themselves.
"""
import json

from firmware.retail.cart import Cart, CartError, refund as refund_money, refundable


def cart_field(rec):
    """The dict a record's "cart" field holds (a sale's cart copy, a refund's
    {"refund": part}), or None: no field, or text that is no JSON object."""
    if rec is None or not rec.get("cart"):
        return None
    try:
        d = json.loads(rec["cart"])
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


def sold_cart(rec):
    """The cart an approved item sale's record carries, or None (a keyed amount, or a
    copy this release cannot read)."""
    d = cart_field(rec)
    if d is None or "lines" not in d:
        return None
    try:
        return Cart.from_dict(d)
    except (KeyError, TypeError, ValueError, CartError):
        return None


def part_of(rec):
    """The refund part a refund record carries, or None."""
    d = cart_field(rec)
    if d is None or not isinstance(d.get("refund"), dict):
        return None
    return d["refund"]


def refunded_by_sale(journal):
    """{sale id: {line index: pieces or grams}} of every approved refund of items: one
    read of the journal's refunds, for a screen that looks at many sales."""
    out = {}
    for rec in journal.find(state="approved", kind="refund"):
        part = part_of(rec)
        if part is None or not rec["original_id"]:
            continue
        done = out.setdefault(rec["original_id"], {})
        for index, measure in part.get("picks", []):
            done[index] = done.get(index, 0) + measure
    return out


def refunded_lines(journal, original, by_sale=None):
    """{line index: pieces or grams} the approved refunds of original gave back
    (by_sale: refunded_by_sale()'s answer, when the caller has it)."""
    if by_sale is None:
        by_sale = refunded_by_sale(journal)
    return dict(by_sale.get(original["id"], {}))


def remaining(journal, original, cart=None, by_sale=None):
    """refundable() of original's cart after its approved refunds."""
    cart = cart if cart is not None else sold_cart(original)
    if cart is None:
        return []
    return refundable(cart, refunded_lines(journal, original, by_sale))


def make_part(cart, picks, refunded):
    """The part a refund record carries for picks [(line index, measure)] of cart after
    refunded; CartError("refund", limit=remaining) when a pick is too much."""
    result = refund_money(cart, picks, refunded)
    part = {"picks": [[index, measure] for index, measure in picks]}
    for key in ("lines", "total", "tax", "rates"):
        part[key] = result[key]
    return part


def part_json(part):
    return json.dumps({"refund": part})
