"""The QR chaos driver (tools/host/qr_chaos.py): a short seeded run through a flapping
HTTPS link with the terminal killed at every phase of a QR payment reconciles with the
acquirer's ledger; the reconciliation itself catches what it is there to catch."""
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
