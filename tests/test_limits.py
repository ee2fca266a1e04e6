"""Limits per terminal and per cashier (issue 15 item 4; docs/limits.md), through the
simulated terminal: a hit asks a supervisor before anything leaves the terminal,
refused nothing goes to the host, approved the payment goes and the override is
recorded; the day's totals come from the journal, so a restart keeps them."""
import pytest

CASHIER, CASHIER_PIN = "5", "7391"


def _as_cashier(h):
    """Operator 5, a cashier, logged in; supervisor 1 (PIN 2580) approves."""
    h.term.auth.create(CASHIER, "CASHIER FIVE", "cashier", CASHIER_PIN)
    h.term.logout()
    h.login(CASHIER, CASHIER_PIN)
    h.run(2000, until=lambda: h.flow() == ("idle", "idle"))
    assert h.flow() == ("idle", "idle"), h.text()


def _supervisor(h, pin="2580"):
    h.press("1", "ENTER", *pin)
    h.press("ENTER")


def _cash_sale(h, digits):
    h.press(*digits)
    h.press("ENTER")
    if h.flow() == ("sale", "method"):
        h.press("2", "ENTER")
        h.run(2000, until=lambda: h.flow()[1] in ("change", "copy"))
        h.to_idle()


def _alerts(h):
    return h.term.payments.journal.alerts()


def _audit(h, event):
    return [r for r in h.term.store.audit_log(200) if r[1] == event]


@pytest.fixture
def pos(online):
    h = online()
    _as_cashier(h)
    return h


def test_a_sale_over_the_per_payment_limit_refused_sends_nothing(pos):
    h = pos
    h.term.config["limits"]["per_payment"] = 50000
    h.press("6", "0", "0", "0", "0", "ENTER")
    assert h.flow() == ("limit_gate", "show"), h.text()
    for words in ("Over limit", "Per payment", "Limit 500.00", "ENTER: supervisor"):
        assert words in h.text(), words
    h.press("ENTER")
    assert h.flow() == ("supervisor", "id")
    _supervisor(h, "9999")                      # a wrong PIN: not approved
    assert h.flow() == ("supervisor", "id")
    h.press("CANCEL")                           # no supervisor: the hit again
    assert h.flow() == ("limit_gate", "show")
    h.press("CANCEL")
    assert h.flow() == ("sale", "amount")
    assert h.host.ledger.count("HP000001") == 0
    assert h.term.payments.journal.last() is None       # nothing recorded as a payment
    got = [(a["rule"], a["outcome"], a["operator"], a["amount"]) for a in _alerts(h)]
    assert got == [("per_payment", "cancelled", CASHIER, 60000),
                   ("per_payment", "asked", CASHIER, 60000)]
    assert _audit(h, "limit_hit")


def test_a_supervisor_lets_it_through_and_the_override_is_recorded(pos):
    h = pos
    h.term.config["limits"]["per_payment"] = 50000
    h.press("6", "0", "0", "0", "0", "ENTER")
    h.press("ENTER")
    _supervisor(h)
    assert h.flow() == ("sale", "method"), h.text()
    h.press("1")
    h.sim.swipe(card="visa_pin")
    h.run(2000, until=lambda: h.flow()[1] != "card")
    h.press("1", "2", "3", "4", "ENTER")
    h.run(15000, until=lambda: h.flow() in (("sale", "result"), ("sale", "copy")))
    assert h.term.payments.journal.last()["state"] == "approved"
    assert h.host.ledger.approved_total("HP000001") == 60000
    latest = _alerts(h)[0]
    assert (latest["rule"], latest["outcome"], latest["supervisor"]) == ("per_payment", "override", "1")
    over = _audit(h, "limit_override")
    assert over and over[0][2] == "1" and "per_payment" in over[0][3]


def test_the_days_count_and_total_across_sales_and_a_restart(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    _as_cashier(h)
    h.term.config["limits"]["daily_count"] = 2
    _cash_sale(h, "1000")
    _cash_sale(h, "1000")
    h.press("5", "0", "0", "ENTER")             # the third of the day
    assert h.flow() == ("limit_gate", "show")
    assert "Daily count" in h.text() and "Limit 2" in h.text()
    h.press("CANCEL", "CANCEL")
    h.to_idle()
    h.term.config["limits"].update(daily_count=0, daily_total=2500)
    _cash_sale(h, "400")                        # 20.00 + 4.00: within 25.00
    h.press("2", "0", "0", "ENTER")             # 26.00: over
    assert h.flow() == ("limit_gate", "show") and "Daily total" in h.text()
    assert "Limit 25.00" in h.text()
    h.press("CANCEL", "CANCEL")
    h.to_idle()
    h.close()
    # the same data folder: the day's total comes from the journal
    h = harness()
    h.boot()
    h.login(CASHIER, CASHIER_PIN)
    h.run(2000, until=lambda: h.flow() == ("idle", "idle"))
    h.term.config["limits"]["daily_total"] = 2500
    h.press("2", "0", "0", "ENTER")
    assert h.flow() == ("limit_gate", "show") and "Daily total" in h.text()
    h.press("CANCEL", "CANCEL")
    h.to_idle()
    h.term.config["limits"]["daily_total"] = 2600
    _cash_sale(h, "200")                        # 26.00 in all: passes
    assert h.term.payments.journal.last()["amount"] == 200
    assert [r["amount"] for r in h.term.payments.journal.find(kind="sale")] == [1000, 1000, 400, 200]


def test_a_cashiers_own_limits_hold_the_cashier_not_the_supervisor(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    h.term.config["limits"].update(cashier_per_payment=1000, cashier_daily_count=1)
    _cash_sale(h, "2000")                       # the supervisor: no cashier limit
    assert h.term.payments.journal.last()["amount"] == 2000
    _as_cashier(h)
    _cash_sale(h, "500")                        # the cashier's first of the day
    assert h.term.payments.journal.last()["operator"] == CASHIER
    h.press("2", "0", "0", "0", "ENTER")        # over both of the cashier's
    assert h.flow() == ("limit_gate", "show")
    assert "Cashier: payment" in h.text() and "+1 more: DOWN" in h.text()
    h.press("DOWN")
    assert "Cashier: day count" in h.text() and "Limit 1" in h.text()
    h.press("ENTER")
    _supervisor(h)
    h.press("2", "ENTER")                       # cash, exact
    h.run(2000, until=lambda: h.flow()[1] in ("change", "copy"))
    rules = sorted(a["rule"] for a in _alerts(h) if a["outcome"] == "override")
    assert rules == ["cashier_daily_count", "cashier_per_payment"]


def test_refund_limits_per_payment_and_a_day(harness):
    from firmware.flows.void import RefundStartFlow
    h = harness()
    h.first_supervisor()
    h.login()
    _as_cashier(h)
    _cash_sale(h, "30000")
    h.term.config["limits"].update(refund_per_payment=10000, refund_daily_total=15000)

    def refund(digits):
        h.term.push(RefundStartFlow(h.term))
        _supervisor(h)
        h.press("ENTER", "ENTER")               # the latest sale, confirmed
        assert h.flow() == ("refund", "amount"), h.text()
        h.press(*digits)
        h.press("ENTER")

    refund("12000")
    assert h.flow() == ("limit_gate", "show")
    assert "Refund a payment" in h.text() and "Limit 100.00" in h.text()
    h.press("CANCEL")
    assert h.flow() == ("refund", "amount")
    h.press("CLEAR", "8", "0", "0", "0", "ENTER")   # within both
    h.run(2000, until=lambda: h.flow()[1] in ("change", "copy"))
    h.to_idle()
    assert h.term.payments.journal.last()["kind"] == "refund"
    refund("8000")                              # 80.00 + 80.00 > 150.00 a day
    assert h.flow() == ("limit_gate", "show") and "Refunds a day" in h.text()
    h.press("CANCEL", "CANCEL")
    assert len(h.term.payments.journal.find(kind="refund")) == 1


def test_settings_rows_say_every_limit(harness):
    from firmware.flows.anomaly_view import limit_lines
    h = harness()
    h.term.config["limits"].update(per_payment=50000, daily_count=40)
    lines = limit_lines(h.term)
    assert lines[:6] == ["Per payment", "  500.00", "Daily total", "  none", "Daily count", "  40"]
    assert "Cashier: refund/day" in lines and len(lines) == 20


def test_the_sqlite_journal_keeps_the_hits_sealed(tmp_path):
    """The alerts table: newest first, a page below an id, each row MACed: one edited
    on the card is left out and named by damaged()."""
    import sqlite3
    from drivers.journal_sqlite import SQLiteJournal
    path = str(tmp_path / "journal.db")
    j = SQLiteJournal(path, mac_key=b"k" * 32)
    for i in range(5):
        j.alert_add({"kind": "anomaly", "rule": "same_card", "outcome": "asked", "amount": i,
                     "currency": "USD", "operator": "5", "utc": "2026-03-01T01:0%d:00Z" % i})
    with pytest.raises(ValueError):
        j.alert_add({"kind": "limit", "outcome": "maybe"})
    assert [a["amount"] for a in j.alerts(3)] == [4, 3, 2]
    assert [a["id"] for a in j.alerts(10, below_id=3)] == [2, 1]
    j.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE alerts SET outcome='override', supervisor='5' WHERE id=4")
    db.commit()
    db.close()
    j = SQLiteJournal(path, mac_key=b"k" * 32)
    assert [a["id"] for a in j.alerts()] == [5, 3, 2, 1]
    assert any("limit or anomaly hit" in what for _, _, what in j.damaged())
    j.close()


def test_a_cart_over_the_limit_asks_before_its_methods(shop):
    """An item sale: the cart's total meets the limits at pay; CANCEL goes back to the
    cart, which keeps its lines; approved, the methods."""
    from tools.sim import demo_codes
    h = shop()
    h.term.config["limits"]["per_payment"] = 200
    h.scan(demo_codes.ITEMS[0])                 # water 1.29
    h.scan(demo_codes.ITEMS[1])                 # cola 1.49: 2.78 in all
    h.press("ENTER")
    assert h.flow() == ("limit_gate", "show"), h.text()
    assert "Per payment" in h.text() and "Limit 2.00" in h.text()
    h.press("CANCEL")
    assert h.flow() == ("cart", "cart") and "Cola" in h.text(), h.text()
    assert h.term.payments.journal.last() is None
    h.press("ENTER", "ENTER")
    h.press("2", "5", "8", "0", "ENTER")        # the supervisor logged in: PIN only
    assert h.flow() == ("sale", "method"), h.text()
    h.press("2", "ENTER")
    h.run(3000, until=lambda: h.flow()[1] in ("change", "copy"))
    assert h.term.payments.journal.last()["amount"] == 278
