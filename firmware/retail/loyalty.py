"""Points follow the money: a member's points move once a sale, refund or void of theirs
is approved, all on the terminal (members.db, term.members), online or not.

The journal record of a member's sale carries its cart (firmware/retail/cart.py
to_dict), with the member's number and tier (never the phone or the name), the points
it earns (points_earned, set by prepare() before the payment, a figure of the sale) and
the points it redeems (redeem). Once approved, apply() writes them to members.db: one
ledger entry per (record, kind), so they can never count twice. The journal and
members.db are two files: a crash between the approval and apply() leaves the points
out, and catch_up() at the next start finds the record and applies them then (and
never twice: the ledger refuses a second entry). A refund takes back earned points and
gives back redeemed ones in proportion to the money (telescoping: any sequence of
partial refunds of a sale returns exactly its points, firmware/retail/members.py); a
void (or a reversal) of a sale takes back all it earned and gives back all it redeemed.

A member erased since is skipped: their number points to no one.

term.members is None on a terminal without keys: then nothing here does anything.
"""

from firmware.core.store import is_fault
from firmware.retail import members as mb
from firmware.retail.refund import cart_field

CATCH_UP = 20       # records looked at again at start (a crash hits the last ones)


def store(term):
    return getattr(term, "members", None)


def sale_points(rec):
    """(member number, points earned, points redeemed) a sale record carries, or None
    when it is no member's sale."""
    d = cart_field(rec)
    if d is None or not isinstance(d.get("member"), dict) or not d["member"].get("number"):
        return None
    redeem = d.get("redeem") or {}
    return (d["member"]["number"], int(d.get("points_earned") or 0),
            int(redeem.get("points") or 0))


def prepare(term, cart):
    """Before the payment: the points the cart earns, in cart.points_earned (a figure
    of the sale, recorded in the journal with it). 0 without a member."""
    member = getattr(cart, "member", None)
    n = 0
    if member and store(term) is not None:
        n = mb.earn_points(cart, member.get("tier"), mb.rules(term.config))
    cart.points_earned = n
    return n


def _post(term, number, record, entries):
    """entries [(kind, points)] for record onto number, each once. The balance after,
    or None when the member is gone or the store could not take it (a storage fault is
    on the screen already; catch_up tries again at the next start)."""
    members = store(term)
    balance = None
    for kind, points in entries:
        try:
            done = members.apply(number, record, kind, points)
        except Exception as exc:
            if getattr(exc, "what", None) in ("unknown", "retired"):
                return None             # erased: the sale stays, the points go nowhere
            if is_fault(exc) or exc.__class__.__name__ == "MemberDamaged":
                return None
            raise
        if done is not None:
            balance = done
    return balance


def apply(term, rec):
    """After an approved sale: its redeemed and earned points onto the member, once
    (ledger entries "redeem" and "earn" keyed by the record's id). The balance after, or
    None when there was nothing to do."""
    if store(term) is None or rec is None or rec.get("kind") != "sale" \
            or rec.get("state") != "approved":
        return None
    got = sale_points(rec)
    if got is None:
        return None
    number, earned, redeemed = got
    entries = []
    if redeemed:
        entries.append(("redeem", -redeemed))
    if earned:
        entries.append(("earn", earned))
    return _post(term, number, rec["id"], entries)


def _refunds_before(term, original_id, refund_id):
    """Minor units of original_id's refunds whose points were settled already (each
    leaves a "refund" ledger entry, 0 points too): the telescoping goes in the order
    the refunds were settled, so it adds up even when they were approved out of order."""
    before = 0
    members = store(term)
    for r in term.payments.journal.find(state="approved", kind="refund"):
        if r["original_id"] == original_id and r["id"] != refund_id \
                and members.applied(r["id"], "refund") is not None:
            before += r["amount"]
    return before


def refund(term, refund_rec):
    """An approved refund of a member's sale: the points it takes back and gives back,
    once (ledger entry "refund" keyed by the refund's id, the two netted). The balance
    after, or None."""
    members = store(term)
    if members is None or refund_rec is None or refund_rec.get("kind") != "refund" \
            or refund_rec.get("state") != "approved" or not refund_rec.get("original_id"):
        return None
    journal = term.payments.journal
    original = journal.get(refund_rec["original_id"])
    got = sale_points(original)
    if got is None:
        return None
    number, earned, redeemed = got
    try:
        if members.applied(refund_rec["id"], "refund") is not None:
            return None                 # settled already
        before = _refunds_before(term, original["id"], refund_rec["id"])
    except Exception as exc:
        if is_fault(exc) or exc.__class__.__name__ == "MemberDamaged":
            return None
        raise
    taken, given = mb.refund_points(earned, redeemed, original["amount"], before,
                                    refund_rec["amount"])
    return _post(term, number, refund_rec["id"], [("refund", given - taken)])


def void(term, rec):
    """A member's sale voided or reversed: all it earned taken back, all it redeemed
    given back, once (ledger entry "void" keyed by the sale's id), and only when its
    points had been applied."""
    members = store(term)
    if members is None or rec is None or rec.get("kind") != "sale":
        return None
    got = sale_points(rec)
    if got is None:
        return None
    number, earned, redeemed = got
    try:
        had = (members.applied(rec["id"], "earn") or 0) + (members.applied(rec["id"], "redeem") or 0)
    except Exception as exc:
        if is_fault(exc) or exc.__class__.__name__ == "MemberDamaged":
            return None
        raise
    if not had:
        return None                     # never applied: nothing to take back
    return _post(term, number, rec["id"], [("void", -had)])


def catch_up(term):
    """At start: the latest approved member sales and refunds whose points did not
    reach members.db (a crash between the journal and members.db, a full card) have
    them now; the latest voided or reversed member sales whose points were applied
    have them taken back. Each once. The count of records caught up."""
    if store(term) is None or getattr(term, "payments", None) is None:
        return 0
    journal = term.payments.journal
    n = 0
    try:
        latest = getattr(journal, "latest", None)
        if latest is not None:
            recent = latest(CATCH_UP, state="approved", kinds=("sale", "refund"))
            undone = latest(CATCH_UP, states=("voided", "reversed"), kind="sale")
        else:
            recent = [r for r in journal.find(state="approved")
                      if r["kind"] in ("sale", "refund")][-CATCH_UP:]
            undone = [r for r in journal.find(kind="sale")
                      if r["state"] in ("voided", "reversed")][-CATCH_UP:]
        for rec in sorted(recent, key=lambda r: r["id"]):
            if rec["kind"] == "sale":
                if sale_points(rec) is not None and _missing(term, rec, ("redeem", "earn")):
                    if apply(term, rec) is not None:
                        n += 1
            elif rec.get("original_id"):
                original = journal.get(rec["original_id"])
                if sale_points(original) is not None and _missing(term, rec, ("refund",)) \
                        and refund(term, rec) is not None:
                    n += 1
        for rec in undone:
            if sale_points(rec) is not None and _missing(term, rec, ("void",)) \
                    and void(term, rec) is not None:
                n += 1
    except Exception as exc:
        if not is_fault(exc):
            raise
    return n


def _missing(term, rec, kinds):
    for kind in kinds:
        if store(term).applied(rec["id"], kind) is None:
            return True
    return False


def receipt_block(term, rec):
    """[(label, value)] a member's sale adds to its receipt from members.db: the masked
    phone and the points balance after the sale, in the terminal's language; [] for any
    other record (the cart's own rows, the number's tail and the points earned and
    redeemed, are firmware/retail/receipt_lines.add_member's). The balance counts this
    sale's points whether or not apply() ran yet (the receipt prints at the approval,
    before it). For receipt_lines.add_member(receipt, cart, t, extra=receipt_block(...)).
    An erased member: nothing (the number points to no one)."""
    members = store(term)
    got = sale_points(rec) if rec is not None and rec.get("kind") == "sale" else None
    if members is None or got is None:
        return []
    number, earned, redeemed = got
    t = term.t
    try:
        member = members.get(number)
        if member is None:
            return []
        balance = member["points"]
        if rec.get("state") == "approved":
            if redeemed and members.applied(rec["id"], "redeem") is None:
                balance -= redeemed
            if earned and members.applied(rec["id"], "earn") is None:
                balance += earned
    except Exception as exc:
        if is_fault(exc) or exc.__class__.__name__ == "MemberDamaged":
            return []
        raise
    return [(t("mb_rc_member"), mb.mask_phone(member["phone"])),
            (t("mb_rc_balance"), mb.group(balance))]
