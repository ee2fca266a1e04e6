"""Points follow the money (firmware/retail/loyalty.py) over a real members.db: applied
once per record, refunds telescoping to exactly the sale's points, voids, the catch-up
of a crash between the journal and members.db, the receipt's block."""
import json

import pytest

from drivers.members_sqlite import open_members
from firmware.core import config as schema
from firmware.payments.journal import MemoryJournal, record
from firmware.retail import loyalty
from firmware.ui.i18n import Translator

KEY = bytes(range(32))
PHONE = "13812345678"


class Term:
    """What loyalty asks of the terminal: config, members, payments.journal, t."""

    def __init__(self, members):
        self.config = schema.defaults()
        self.config["money"]["currency"] = "CNY"
        self.members = members
        self.payments = type("P", (), {})()
        self.payments.journal = MemoryJournal()
        self.t = Translator("en")

    def sale(self, number, amount, earned, redeemed=0, state="approved"):
        cart = {"v": 2, "currency": "CNY", "lines": [], "member": {"number": number, "tier": "basic"},
                "points_earned": earned,
                "redeem": {"points": redeemed, "amount": redeemed} if redeemed else None}
        j = self.payments.journal
        return j.get(j.add(record(kind="sale", state=state, amount=amount, currency="CNY",
                                  cart=json.dumps(cart))))

    def refund(self, sale, amount):
        j = self.payments.journal
        return j.get(j.add(record(kind="refund", state="approved", amount=amount,
                                  currency="CNY", original_id=sale["id"],
                                  cart=json.dumps({"refund": {"total": amount}}))))


@pytest.fixture
def term(tmp_path):
    m = open_members(str(tmp_path), KEY)
    yield Term(m)
    m.close()


def member(term, points=0):
    m = term.members.enrol(PHONE, "WANG")
    if points:
        term.members.apply(m["number"], 999999, "adjust", points)
    return m["number"]


def balance(term, number):
    return term.members.get(number)["points"]


def test_apply_once_per_record(term):
    n = member(term, 1000)
    rec = term.sale(n, 12850, 128, redeemed=500)
    assert loyalty.apply(term, rec) == 1000 - 500 + 128
    assert loyalty.apply(term, rec) is None                   # again: nothing
    assert balance(term, n) == 628
    assert loyalty.catch_up(term) == 0
    assert balance(term, n) == 628


def test_a_partial_then_full_refund_returns_exactly_the_points(term):
    n = member(term, 1000)
    sale = term.sale(n, 12850, 257, redeemed=333)             # 128.50 paid, 3.33 in points
    loyalty.apply(term, sale)
    assert balance(term, n) == 1000 - 333 + 257
    first = term.refund(sale, 4283)                           # a third
    after_first = loyalty.refund(term, first)
    # a third: 86 earned points back out (257 x 4283 / 12850 = 85.66), 111 redeemed in
    assert after_first == 924 - 86 + 111
    assert loyalty.refund(term, first) is None                # once
    rest = term.refund(sale, 12850 - 4283)
    loyalty.refund(term, rest)
    assert balance(term, n) == 1000                           # all of it back, exactly
    kinds = [(e["kind"], e["points"]) for e in term.members.ledger(n)]
    assert kinds == [("adjust", 1000), ("redeem", -333), ("earn", 257), ("refund", 25),
                     ("refund", 51)]


@pytest.mark.parametrize("parts", [[1, 1, 12848], [3000, 3000, 3000, 3850], [12849, 1]])
def test_any_sequence_of_partial_refunds_adds_up(term, parts):
    n = member(term, 600)
    sale = term.sale(n, 12850, 257, redeemed=599)
    loyalty.apply(term, sale)
    for amount in parts:
        loyalty.refund(term, term.refund(sale, amount))
    assert balance(term, n) == 600


def test_void_takes_back_what_was_applied_once(term):
    n = member(term, 1000)
    sale = term.sale(n, 5000, 50, redeemed=200)
    loyalty.apply(term, sale)
    assert balance(term, n) == 850
    term.payments.journal.update(sale["id"], state="voided")
    assert loyalty.void(term, term.payments.journal.get(sale["id"])) == 1000
    assert loyalty.void(term, term.payments.journal.get(sale["id"])) is None
    assert loyalty.catch_up(term) == 0
    assert balance(term, n) == 1000
    never = term.sale(n, 100, 1)                              # voided before its points:
    term.payments.journal.update(never["id"], state="voided")
    assert loyalty.void(term, term.payments.journal.get(never["id"])) is None
    assert balance(term, n) == 1000


def test_catch_up_after_a_crash_between_journal_and_members_db(term):
    n = member(term)
    sale = term.sale(n, 9900, 99)             # approved in the journal, then the crash
    voided = term.sale(n, 500, 5)
    loyalty.apply(term, voided)
    term.payments.journal.update(voided["id"], state="voided")  # void journalled, then crash
    refunded = term.sale(n, 1000, 10)
    loyalty.apply(term, refunded)
    term.refund(refunded, 1000)               # refund journalled, then crash
    assert balance(term, n) == 15
    assert loyalty.catch_up(term) == 3
    assert balance(term, n) == 99
    assert loyalty.catch_up(term) == 0        # once
    assert balance(term, n) == 99


def test_an_erased_member_sale_stays_and_points_go_nowhere(term):
    n = member(term)
    sale = term.sale(n, 9900, 99)
    term.members.erase(n)
    assert loyalty.apply(term, sale) is None
    assert loyalty.catch_up(term) == 0
    assert loyalty.receipt_block(term, sale) == []


def test_prepare_sets_the_cart_points_by_tier(term):
    from firmware.retail.cart import Cart
    cart = Cart("CNY", True)
    cart.add_misc(12850, 13000)
    assert loyalty.prepare(term, cart) == 0 and cart.points_earned == 0
    cart.set_member({"number": "000000000000", "tier": "gold"})
    assert loyalty.prepare(term, cart) == 257 and cart.points_earned == 257
    term.members = None                        # no keys: no points
    assert loyalty.prepare(term, cart) == 0


def test_receipt_block_masks_the_phone_and_counts_this_sale(term):
    from firmware.retail.cart import Cart
    from firmware.retail.receipt_lines import add_member
    from firmware.ui.receipt import Receipt
    n = member(term, 1000)
    sale = term.sale(n, 12850, 128, redeemed=500)
    block = loyalty.receipt_block(term, sale)             # printed before apply()
    assert block == [("Member", "138****5678"), ("Points balance", "628")]
    loyalty.apply(term, sale)
    assert loyalty.receipt_block(term, sale) == block     # a reprint says the same
    # on paper, under the cart's own member rows (receipt_lines.add_member)
    cart = Cart("CNY", True)
    cart.add_misc(13350, 13000)
    cart.set_member({"number": n, "tier": "basic"})
    cart.set_redemption(500, 500)
    cart.points_earned = 128
    paper = add_member(Receipt(), cart, term.t, extra=block).text()
    for words in ("138****5678", "Points balance", "628", n[-4:]):
        assert words in paper, paper
    assert PHONE not in paper
    assert loyalty.receipt_block(term, record(kind="sale", cart="")) == []
