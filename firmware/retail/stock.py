"""Stock follows the money: a sale's items come off the shelf once it is approved.

The journal record of an item sale carries its cart (firmware/flows/cart.py writes it
through the sale flow) and a flag, stocked: 0 until the catalogue has the sale's
movements, then 1. The movements and the flag are two stores (catalogue.db and the
journal); the movements go first, all of a sale's lines in one transaction, with the
record's number as their reference, so a crash between the two is found at the next
start (catch_up) by the reference and never takes the stock twice. A void (or a
reversal) of such a sale puts the items back, once (give_back; stocked becomes 2).
"""
import json

from firmware.core.store import is_fault

CATCH_UP = 20       # approved records looked at again at start (a crash hits the last one)


def sale_movements(cart):
    """[(item_id, delta, reason)] of a sold cart: what leaves the shelf, in the item's
    base unit (pieces, or grams for a kg item)."""
    out = []
    for index, line in cart.active():
        if line.item_id is not None and line.stock_quantity():
            out.append((line.item_id, -line.stock_quantity(), "sale"))
    return out


def _ref(rec):
    return "#%d" % rec["id"]


def take(term, rec):
    """The stock movements of an approved item sale, once. A catalogue that cannot
    take them leaves the record unstocked (catch_up tries again at the next start);
    the storage fault, if it is one, is on the screen already."""
    catalogue = term.catalogue
    if catalogue is None or not rec.get("cart") or rec.get("stocked") \
            or rec.get("state") != "approved" or rec.get("kind") != "sale":
        return False
    from firmware.retail.cart import Cart
    cart = Cart.from_dict(json.loads(rec["cart"]))
    return _move_once(term, rec, sale_movements(cart), _ref(rec), 1)


def _move_once(term, rec, moves, ref, stocked):
    """moves under ref unless the catalogue has that ref already, then the record's
    stocked flag: a crash between the two is caught up without moving twice. False when
    the catalogue or the journal could not take it (a full card: the payment stands,
    the stock waits for catch_up)."""
    try:
        if moves and not term.catalogue.has_ref(ref):
            term.catalogue.record_movements(moves, rec.get("operator", ""), ref)
        term.payments.journal.update(rec["id"], stocked=stocked)
    except Exception as exc:
        if not is_fault(exc) and not hasattr(exc, "what"):
            raise
        return False
    return True


def give_back(term, rec, reason="void"):
    """A sale whose stock was taken is voided or reversed: its items go back on the
    shelf, once (movements referenced "void #n"; the record's stocked becomes 2)."""
    catalogue = term.catalogue
    if catalogue is None or rec is None or not rec.get("cart") or rec.get("stocked") != 1:
        return False
    from firmware.retail.cart import Cart
    cart = Cart.from_dict(json.loads(rec["cart"]))
    moves = [(item_id, -delta, reason) for item_id, delta, why in sale_movements(cart)]
    return _move_once(term, rec, moves, "%s %s" % (reason, _ref(rec)), 2)


def refund_movements(cart, part):
    """[(item_id, delta, "refund")] of a refund part (firmware/retail/refund.py) of the
    sold cart: what goes back on the shelf, telescoped like the money."""
    out = []
    for entry in part.get("lines", []):
        line = cart.line(entry["line"])
        if line.item_id is not None and entry.get("stock"):
            out.append((line.item_id, entry["stock"], "refund"))
    return out


def give_back_refund(term, rec):
    """An approved refund of items puts what it gave back on the shelf, once
    (movements referenced "refund #n" with the refund's number; its stocked becomes 1)."""
    catalogue = term.catalogue
    if catalogue is None or rec is None or rec.get("kind") != "refund" \
            or rec.get("state") != "approved" or rec.get("stocked") or not rec.get("original_id"):
        return False
    from firmware.retail.refund import part_of, sold_cart
    part = part_of(rec)
    original = term.payments.journal.get(rec["original_id"])
    cart = sold_cart(original)
    if part is None or cart is None:
        return False
    return _move_once(term, rec, refund_movements(cart, part), "refund " + _ref(rec), 1)


def catch_up(term):
    """At start: the last approved item sales (and refunds of items) whose stock was not
    moved (a crash, a full card) have it moved now."""
    journal = term.payments.journal if term.payments is not None else None
    if journal is None or term.catalogue is None:
        return 0
    n = 0
    latest = getattr(journal, "latest", None)
    recent = latest(CATCH_UP, state="approved") if latest is not None \
        else journal.find(state="approved")[-CATCH_UP:]
    for rec in recent:
        if not rec.get("cart") or rec.get("stocked"):
            continue
        if rec.get("kind") == "refund":
            if give_back_refund(term, rec):
                n += 1
        elif take(term, rec):
            n += 1
    return n
