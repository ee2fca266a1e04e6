"""The QR chaos driver (tools/host/qr_chaos.py): a short seeded run through a flapping
HTTPS link with the terminal killed at every phase of a QR payment reconciles with the
acquirer's ledger; the reconciliation itself catches what it is there to catch."""
import pytest

from tools.host import qr_chaos

SEED = 1


def test_short_run_reconciles_and_meets_every_kill_phase(tmp_path):
    report = qr_chaos.QrChaos(payments=6, kills=3, seed=SEED,
                              workdir=str(tmp_path / "w")).run()
    text = qr_chaos.format_report(report)
    assert report["ok"], text
    assert report["mismatches"] == [] and report["errors"] == [], text
    assert report["payments_done"] == 6, text
    assert set(report["kill_phases"]) == set(qr_chaos.KILL_PHASES), text
    assert report["cancels"] >= 2, text
    # the hard cases were really met: killed with the pay out, and mid-cancel
    assert report["killed_states"].get("paying:sending", 0) >= 1, text
    assert report["killed_states"].get("cancelling:reversal_pending", 0) >= 1, text
    assert report["terminal_total"] == report["ledger_total"], text


def test_the_plan_is_the_seeds_and_forces_every_phase():
    a = qr_chaos.make_plan(6, 3, 7)
    assert a == qr_chaos.make_plan(6, 3, 7) != qr_chaos.make_plan(6, 3, 8)
    assert sorted(p["kill"] for p in a if p["kill"]) == sorted(qr_chaos.KILL_PHASES)
    for p in a:
        if p["kill"] == "paying":
            assert p["amount"] % 100 in (97, 99)
        if p["kill"] in ("waiting", "cancelling") or p["cancel"]:
            assert p["amount"] % 100 in (11, 12)
    assert any(p["cancel"] for p in a)


# -- the reconciliation on made-up books ------------------------------------------------------

def rec(id, state, amount):
    return {"id": id, "method": "qr", "kind": "sale", "state": state, "amount": amount}


def order(id, state, fee, paid=None, refunded=0):
    return {"out_trade_no": "HP000001-%06d" % id, "terminal_id": "HP000001", "state": state,
            "total_fee": fee, "paid_fee": fee if paid is None else paid,
            "refunded_fee": refunded}


GOOD_RECORDS = [rec(1, "approved", 1991), rec(2, "reversed", 3411), rec(3, "declined", 551),
                {"id": 4, "method": "cash", "kind": "sale", "state": "approved", "amount": 7}]
GOOD_ORDERS = [order(1, "SUCCESS", 1991), order(2, "REVOKED", 3411, refunded=3411),
               order(3, "PAYERROR", 551, paid=0)]


def test_reconcile_passes_matching_books():
    assert qr_chaos.reconcile(GOOD_RECORDS, GOOD_ORDERS) == ([], 1991, 1991)


def test_reconcile_flags_a_paid_order_with_no_journal_record():
    bad, term, ledger = qr_chaos.reconcile(GOOD_RECORDS, GOOD_ORDERS + [order(9, "SUCCESS", 1200)])
    assert any("HP000001-000009" in m and "no approved journal record" in m for m in bad), bad
    assert (term, ledger) == (1991, 3191)


def test_reconcile_flags_unsettled_unpaid_and_wrong_amounts():
    records = [rec(1, "approved", 1991), rec(2, "reversal_pending", 3411),
               rec(3, "reversed", 551), rec(5, "approved", 100)]
    orders = [order(1, "SUCCESS", 1992), order(2, "USERPAYING", 3411, paid=0),
              order(3, "SUCCESS", 551)]
    bad, _, _ = qr_chaos.reconcile(records, orders)
    text = "\n".join(bad)
    assert "#2 is reversal_pending" in text
    assert "amount 1991, order HP000001-000001 total_fee 1992" in text
    assert "reversed #3: order HP000001-000003 is SUCCESS" in text
    assert "approved #5: 0 orders" in text
    assert "total" in text


# -- merchant-presented codes, refunds and voids (issue 13 items 2, 3) ---------------------------

MORE = dict(payments=2, kills=2, shows=7, refunds=3, voids=3, more_kills=3)
MORE_SEED = 5


def test_a_short_run_with_merchant_codes_refunds_and_voids_reconciles(tmp_path):
    report = qr_chaos.QrChaos(seed=MORE_SEED, workdir=str(tmp_path / "w"), **MORE).run()
    text = qr_chaos.format_report(report)
    assert report["ok"], text
    assert report["done"] == report["plan"] == {"pay": 2, "show": 7, "refund": 3, "void": 3}, text
    assert report["skipped"] == [], text
    # every new kill phase met, each in its hardest way at least once
    assert set(qr_chaos.SHOW_KILL_PHASES + qr_chaos.BACK_KILL_PHASES) <= set(
        report["kill_phases"]), text
    killed, ways = report["killed_states"], report["kill_variants"]
    assert killed.get("shown:sending", 0) >= 1, text
    assert killed.get("closing:sending", 0) + killed.get("closing:reversal_pending", 0) >= 1, text
    assert killed.get("refunding:sending", 0) >= 1 and killed.get("voiding:sending", 0) >= 1, text
    assert ways.get("shown:down", 0) >= 1 and ways.get("closing:lost", 0) >= 1, text
    assert ways.get("refunding:booked", 0) >= 1 and ways.get("voiding:booked", 0) >= 1, text
    assert ways.get("refunding:drop", 0) >= 1 and ways.get("voiding:drop", 0) >= 1, text
    # merchant codes paid (the one paid while the terminal was down, at least) and not
    assert report["shown"].get("approved", 0) >= 1, text
    assert report["shown"].get("reversed", 0) + report["shown"].get("declined", 0) >= 1, text
    assert report["journal"].get("refund approved", 0) >= 1, text
    assert report["journal"].get("voided", 0) >= 1, text
    assert report["ledger_refunds"].get("refund", 0) >= 1, text
    assert report["terminal_total"] == report["ledger_total"], text


def test_the_plan_mixes_the_new_kinds_in_and_forces_their_phases():
    plan = qr_chaos.make_plan(seed=7, **MORE)
    assert plan == qr_chaos.make_plan(seed=7, **MORE) != qr_chaos.make_plan(seed=8, **MORE)
    # the customer-code part is the one the seed always gave
    assert [p for p in plan if p["kind"] == "pay"] == qr_chaos.make_plan(2, 2, 7)
    kinds = [p["kind"] for p in plan]
    assert kinds[0] != "refund" and kinds[0] != "void"
    assert sorted(kinds) == sorted(["pay"] * 2 + ["show"] * 7 + ["refund"] * 3 + ["void"] * 3)
    kills = {(p["kill"], p["variant"]) for p in plan if p["kind"] != "pay" and p["kill"]}
    for phase in qr_chaos.SHOW_KILL_PHASES + qr_chaos.BACK_KILL_PHASES:
        assert (phase, qr_chaos.KILL_VARIANTS[phase][0]) in kills, kills
    assert len([p for p in plan if p["kind"] != "pay" and p["kill"]]) == 4 + 3
    shows = [p for p in plan if p["kind"] == "show"]
    assert all((p["kill"] is None) != (p["end"] is None) for p in shows)
    assert set(qr_chaos.SHOW_ENDS) <= {p["end"] for p in shows}
    refunds = [p for p in plan if p["kind"] == "refund"]
    assert {p["whole"] for p in refunds} == {True, False}
    assert qr_chaos.make_plan(0, 0, 1, overlap=True) == [{"kind": "overlap", "kill": None}]


def test_a_refund_and_a_void_each_over_the_other_pending(tmp_path):
    """A QR sale with a refund booked at the acquirer whose answer has not come yet
    (the refund "sending") is offered for a void, and one whose void has not reached
    the acquirer yet for a refund. The terminal refuses the second while the first is
    in flight ("Refund/void pending"), so it never gives back the whole sale and the
    refund: the books agree with the acquirer's (before the fix they did not: the
    terminal gave back more than was paid)."""
    report = qr_chaos.QrChaos(payments=0, kills=0, overlap=True, seed=3,
                              workdir=str(tmp_path / "w")).run()
    text = qr_chaos.format_report(report)
    assert report["errors"] == [], text
    assert report["overlap"] == {"void_over_refund": "refused",
                                 "refund_over_void": "refused"}, text
    assert report["ok"], text
    assert report["mismatches"] == [], text


# -- the new rules on made-up books ----------------------------------------------------------------

def back(id, kind, state, amount, original):
    return {"id": id, "method": "qr", "kind": kind, "state": state, "amount": amount,
            "original_id": original}


def refund_row(id, original, fee, kind="refund"):
    number = "HP000001-%06d" % original
    return {"out_refund_no": "HP000001-%06d" % id if kind == "refund" else "cancel:" + number,
            "out_trade_no": number, "refund_fee": fee, "kind": kind}


def sale(id, state, amount, refunded=0, entry="qr"):
    return dict(rec(id, state, amount), refunded=refunded, entry=entry)


def native(id, state, fee, paid=None, refunded=0):
    return dict(order(id, state, fee, paid, refunded), kind="native")


# a customer-code sale refunded in two parts, a merchant-code one paid, a shown code
# closed, a voided sale
BOOKS_RECORDS = [
    sale(1, "approved", 2000, refunded=1500),
    back(2, "refund", "approved", 500, 1),
    back(3, "refund", "approved", 1000, 1),
    sale(4, "approved", 700, entry="qr_show"),
    sale(5, "reversed", 900, entry="qr_show"),
    sale(6, "voided", 1200),
    back(7, "void", "approved", 1200, 6),
    back(8, "refund", "failed", 300, 4),
]
BOOKS_ORDERS = [
    dict(order(1, "REFUND", 2000, refunded=1500), kind="pay"),
    native(4, "SUCCESS", 700),
    native(5, "CLOSED", 900, paid=0),
    dict(order(6, "REVOKED", 1200, refunded=1200), kind="pay"),
]
BOOKS_REFUNDS = [refund_row(2, 1, 500), refund_row(3, 1, 1000), refund_row(0, 6, 1200, "cancel")]


def books(records=None, orders=None, refunds=None):
    return qr_chaos.reconcile(BOOKS_RECORDS if records is None else records,
                              BOOKS_ORDERS if orders is None else orders,
                              BOOKS_REFUNDS if refunds is None else refunds)


def replaced(items, key, value, new):
    return [new if x[key] == value else x for x in items]


def test_reconcile_passes_books_with_refunds_voids_and_merchant_codes():
    assert books() == ([], 1200, 1200)           # 2000 - 1500 + 700; the void nets 0


def test_reconcile_flags_a_refund_counted_twice_by_the_acquirer():
    bad, term, ledger = books(
        orders=replaced(BOOKS_ORDERS, "out_trade_no", "HP000001-000001",
                        dict(order(1, "REFUND", 2000, refunded=2000), kind="pay")),
        refunds=BOOKS_REFUNDS + [refund_row(9, 1, 500)])
    text = "\n".join(bad)
    assert "refund HP000001-000009 of order HP000001-000001 (500) with no approved refund" in text
    assert "order HP000001-000001 refunded_fee 2000, the terminal gave back 1500" in text
    assert (term, ledger) == (1200, 700) and "total" in text


def test_reconcile_flags_a_refund_counted_twice_by_the_terminal():
    records = replaced(BOOKS_RECORDS, "id", 1, sale(1, "approved", 2000, refunded=2000))
    bad, _, _ = books(records=records + [back(9, "refund", "approved", 500, 1)])
    text = "\n".join(bad)
    assert "approved refund #9 of #1: 0 refunds HP000001-000009 at the acquirer" in text
    assert "order HP000001-000001 refunded_fee 1500, the terminal gave back 2000" in text


def test_reconcile_flags_a_refund_missing_in_the_ledger_or_with_another_amount():
    bad, _, _ = books(refunds=[BOOKS_REFUNDS[0], BOOKS_REFUNDS[2]])
    assert any("approved refund #3 of #1: 0 refunds HP000001-000003" in m for m in bad), bad
    bad, _, _ = books(refunds=[BOOKS_REFUNDS[0], refund_row(3, 1, 900), BOOKS_REFUNDS[2]])
    assert any("approved refund #3: 1000 of HP000001-000001, the acquirer's HP000001-000003 "
               "is 900" in m for m in bad), bad


def test_reconcile_flags_a_refund_left_sending_and_a_failed_one_done():
    records = replaced(BOOKS_RECORDS, "id", 3, back(3, "refund", "sending", 1000, 1))
    bad, _, _ = books(records=records)
    assert "refund #3 is sending, not final" in bad, bad
    bad, _, _ = books(refunds=BOOKS_REFUNDS + [refund_row(8, 4, 300)])
    text = "\n".join(bad)
    assert "failed refund #8: the acquirer refunded 300 under HP000001-000008" in text


def test_reconcile_flags_a_sale_whose_refunded_is_not_its_refunds():
    records = replaced(BOOKS_RECORDS, "id", 1, sale(1, "approved", 2000, refunded=500))
    bad, _, _ = books(records=records)
    assert "sale #1 says refunded 500, its approved refunds add up to 1500" in bad, bad


def test_reconcile_flags_a_paid_merchant_order_with_no_approved_record():
    records = replaced(BOOKS_RECORDS, "id", 5, sale(5, "reversed", 900, entry="qr_show"))
    bad, _, _ = books(records=records,
                      orders=replaced(BOOKS_ORDERS, "out_trade_no", "HP000001-000005",
                                      native(5, "SUCCESS", 900)))
    text = "\n".join(bad)
    assert "reversed #5: order HP000001-000005 is SUCCESS" in text
    assert "order HP000001-000005 is SUCCESS (paid 900) with no approved journal record" in text


def test_reconcile_flags_a_shown_code_left_open_and_a_kind_mix_up():
    bad, _, _ = books(orders=replaced(BOOKS_ORDERS, "out_trade_no", "HP000001-000005",
                                      native(5, "NOTPAY", 900, paid=0)))
    assert "reversed #5: merchant code order HP000001-000005 is still NOTPAY (a phone can " \
           "pay it)" in bad, bad
    bad, _, _ = books(orders=replaced(BOOKS_ORDERS, "out_trade_no", "HP000001-000004",
                                      dict(order(4, "SUCCESS", 700), kind="pay")))
    assert "#4 (merchant code): order HP000001-000004 is of kind pay" in bad, bad


def test_reconcile_flags_a_void_the_acquirer_did_not_do():
    bad, _, _ = books(orders=replaced(BOOKS_ORDERS, "out_trade_no", "HP000001-000006",
                                      dict(order(6, "SUCCESS", 1200), kind="pay")))
    text = "\n".join(bad)
    assert "voided #6: order HP000001-000006 is SUCCESS (paid 1200, refunded 0), not REVOKED" \
        in text
    assert "no approved journal record" in text and "total" in text
    bad, _, _ = books(records=[r for r in BOOKS_RECORDS if r["id"] != 7])
    assert "voided #6: 0 approved voids" in bad, bad
    records = replaced(BOOKS_RECORDS, "id", 6, sale(6, "approved", 1200))
    bad, _, _ = books(records=records)
    assert "void #7 approved but sale #6 is approved" in bad, bad


def test_reconcile_flags_a_voided_sale_also_refunded():
    """What a refund and a void of one sale, each let through while the other was
    pending, leave (the overlap run above)."""
    records = BOOKS_RECORDS + [back(9, "refund", "approved", 400, 6)]
    records = replaced(records, "id", 6, sale(6, "voided", 1200, refunded=400))
    bad, term, ledger = books(records=records, refunds=BOOKS_REFUNDS[:2] + [
        refund_row(9, 6, 400), refund_row(0, 6, 800, "cancel")])
    text = "\n".join(bad)
    assert "sale #6 of 1200: the terminal gave back 1600 (refunds 400, voided), more than was " \
           "paid" in text
    assert (term, ledger) == (800, 1200) and "total" in text
