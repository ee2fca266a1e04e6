"""Anomaly checks (issue 15 item 5; docs/limits.md), through the simulated terminal:
each rule fires on its pattern and not on the normal one, asks a supervisor or declines
by configuration, is recorded, and the Anomalies report lists what was recorded."""
import pytest

from tests.test_limits import CASHIER, _alerts, _as_cashier, _audit, _cash_sale, _supervisor


def _rules(h, **rules):
    """One rule on (the harness starts with all of them off)."""
    h.term.config["anomaly"].update(rules)


def _swipe(h, digits, card="mc_signature"):
    """A card sale up to the card's read: the flow then (the gate, or on its way)."""
    h.press(*digits)
    h.press("ENTER", "1")
    h.sim.swipe(card=card)
    h.run(2000, until=lambda: h.flow()[1] != "card")
    if h.flow() == ("sale", "pin"):
        h.press("1", "2", "3", "4", "ENTER")
    return h.flow()


def _card_sale(h, digits, card="mc_signature"):
    assert _swipe(h, digits, card) != ("limit_gate", "show"), h.text()
    h.run(15000, until=lambda: h.flow() in (("sale", "result"), ("sale", "copy")))
    rec = h.term.payments.journal.last()
    h.to_idle()
    return rec


@pytest.fixture
def pos(online):
    h = online()
    _as_cashier(h)
    return h


def test_the_same_card_three_times_in_ten_minutes_asks_a_supervisor(pos):
    h = pos
    _rules(h, same_card_count=3, same_card_min=10)
    _card_sale(h, "1000", "visa_pin")
    _card_sale(h, "1100", "visa_pin")
    _card_sale(h, "1200", "mc_signature")       # another card: the normal pattern
    assert _alerts(h) == []
    assert _swipe(h, "1300", "visa_pin") == ("limit_gate", "show")
    for words in ("Anomaly", "Same card 3x", "in 10 min", "ENTER: supervisor"):
        assert words in h.text(), words
    h.press("CANCEL")                           # not approved: another way to pay
    assert h.flow() == ("sale", "method")
    assert h.host.ledger.count("HP000001") == 3
    assert [(a["rule"], a["outcome"]) for a in _alerts(h)] == [("same_card", "cancelled"),
                                                               ("same_card", "asked")]
    assert "1111" in _alerts(h)[0]["detail"] and "411111" not in _alerts(h)[0]["detail"]
    h.press("1")                                # again, and a supervisor approves
    h.sim.swipe(card="visa_pin")
    h.run(2000, until=lambda: h.flow()[1] != "card")
    h.press("ENTER")
    _supervisor(h)
    assert h.flow() == ("sale", "pin"), h.text()
    h.press("1", "2", "3", "4", "ENTER")
    h.run(15000, until=lambda: h.flow() in (("sale", "result"), ("sale", "copy")))
    assert h.term.payments.journal.last()["state"] == "approved"
    assert h.host.ledger.approved_total("HP000001") == 1000 + 1100 + 1200 + 1300
    assert _alerts(h)[0]["outcome"] == "override" and _alerts(h)[0]["supervisor"] == "1"
    assert _audit(h, "anomaly_override") and _audit(h, "anomaly")


def test_a_rule_set_to_decline_declines_and_sends_nothing(pos):
    h = pos
    _rules(h, same_card_count=2, same_card_action="decline")
    _card_sale(h, "1000")
    assert _swipe(h, "1000") == ("limit_gate", "show")
    assert "Not allowed" in h.text() and "Same card 2x" in h.text()
    h.press("ENTER")
    assert h.flow() == ("sale", "method")
    assert h.host.ledger.count("HP000001") == 1
    assert [(a["rule"], a["outcome"]) for a in _alerts(h)] == [("same_card", "declined")]


def test_an_amount_far_above_the_terminals_median(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    _rules(h, high_amount_factor=10, high_amount_sales=5, high_amount_min_sales=3)
    _cash_sale(h, "1000")
    _cash_sale(h, "50000")                      # too few sales yet for a median
    _cash_sale(h, "1200")
    _cash_sale(h, "1100")                       # median of 10.00, 500.00, 12.00, 11.00: 11.50
    _cash_sale(h, "11500")                      # 10x the usual: not above it
    assert _alerts(h) == []
    # the median of the last 5 (10.00, 500.00, 12.00, 11.00, 115.00) is 12.00 now
    h.press("1", "1", "5", "0", "1", "ENTER")   # 115.01: within 120.00
    assert h.flow() == ("sale", "method"), h.text()
    h.press("CANCEL", "CLEAR", "2", "0", "0", "0", "0", "ENTER")     # 200.00 > 120.00
    assert h.flow() == ("limit_gate", "show")
    assert "Over 10x usual" in h.text() and "Usual 12.00" in h.text()
    h.press("CANCEL")
    assert h.flow() == ("sale", "amount")
    assert [(a["rule"], a["amount"]) for a in _alerts(h)][0] == ("high_amount", 20000)


def test_a_run_of_declines(pos):
    h = pos
    _rules(h, decline_run=2)
    assert _card_sale(h, "1005")["state"] == "declined"
    assert _card_sale(h, "1000")["state"] == "approved"     # the run broken
    assert _card_sale(h, "1005")["state"] == "declined"
    assert _card_sale(h, "1051")["state"] == "declined"     # two in a row now
    assert _alerts(h) == []
    assert _swipe(h, "1000") == ("limit_gate", "show")
    assert "2 declined" in h.text() and "in a row" in h.text()
    h.press("CANCEL")
    assert h.host.ledger.count("HP000001", status="approved") == 1
    assert _alerts(h)[1]["rule"] == "decline_run"


def test_many_refunds_and_voids_by_one_cashier(harness):
    from firmware.flows.void import RefundStartFlow, VoidFlow
    h = harness()
    h.first_supervisor()
    h.login()
    _as_cashier(h)
    _rules(h, backs_count=2, backs_min=60)
    _cash_sale(h, "3000")
    _cash_sale(h, "2000")
    h.term.push(RefundStartFlow(h.term))        # the cashier's first: fine
    _supervisor(h)
    h.press("ENTER", "ENTER", "5", "0", "0", "ENTER")
    h.run(2000, until=lambda: h.flow()[1] in ("change", "copy"))
    h.to_idle()
    assert _alerts(h) == []
    h.term.push(VoidFlow(h.term))               # the second within the hour
    _supervisor(h)
    h.press("ENTER", "ENTER")
    assert h.flow() == ("limit_gate", "show"), h.text()
    assert "2 refunds/voids" in h.text() and "by %s in 60 min" % CASHIER in h.text()
    h.press("CANCEL")
    h.run(500, until=lambda: h.flow() == ("idle", "idle"))
    assert [r["state"] for r in h.term.payments.journal.find(kind="sale")] == ["approved"] * 2
    assert h.term.payments.journal.find(kind="void") == []
    a = _alerts(h)[1]
    assert (a["rule"], a["operator"], a["outcome"]) == ("backs", CASHIER, "asked")
    h.term.push(VoidFlow(h.term))               # again; a supervisor approves it
    _supervisor(h)
    h.press("ENTER", "ENTER")
    assert h.flow() == ("limit_gate", "show"), h.text()
    h.press("ENTER")
    _supervisor(h)
    h.wait_for("VOIDED", 8000)
    # the latest sale had a refund: the void takes the one before
    assert [r["state"] for r in h.term.payments.journal.find(kind="sale")] == ["voided", "approved"]
    assert _alerts(h)[0]["outcome"] == "override" and _alerts(h)[0]["supervisor"] == "1"


def test_a_refund_to_a_card_never_used_for_a_sale(pos):
    from firmware.flows.void import RefundStartFlow
    h = pos
    _rules(h, refund_new_card=True)
    sale = _card_sale(h, "2000", "visa_pin")

    def refund():
        h.term.push(RefundStartFlow(h.term))
        _supervisor(h)
        h.press("ENTER", "ENTER", "1", "0", "0", "ENTER")
        h.sim.swipe(card="visa_pin")
        h.run(2000, until=lambda: h.flow()[1] != "card")

    refund()                                    # the card the sale was paid with
    h.run(8000, until=lambda: h.flow() in (("refund", "result"), ("refund", "copy")))
    assert h.term.payments.journal.last()["state"] == "approved"
    h.to_idle()
    # the sale's card, as the journal knows it, another of the same last four
    h.term.payments.journal.update(sale["id"], pan_masked="400000******1111")
    refund()
    assert h.flow() == ("limit_gate", "show"), h.text()
    assert "Refund to a card" in h.text() and "never sold to here" in h.text()
    h.press("CANCEL")
    assert h.host.ledger.approved_total("HP000001") == 2000 - 100
    assert _alerts(h)[1]["rule"] == "new_card"


def test_the_report_lists_the_hits_newest_first_and_scrolls(harness):
    from firmware.flows.reports import ReportsFlow
    h = harness()
    h.first_supervisor()
    h.login()
    h.term.config["limits"]["per_payment"] = 1000
    for _ in range(3):
        h.press("2", "0", "0", "0", "ENTER", "CANCEL", "CANCEL")
        h.to_idle()
    h.term.push(ReportsFlow(h.term))
    h.press("6")
    assert h.flow() == ("anomalies", "list"), h.text()
    assert "Anomalies" in h.text() and "Per payment" in h.text() and "Stepped back" in h.text()
    h.press("DOWN")
    assert "Supervisor asked" in h.text()
    for _ in range(6):
        h.press("DOWN")
    h.press("ENTER")
    assert h.flow() == ("reports", "menu")


def test_chinese_screens_and_report(harness):
    from firmware.flows.anomaly_view import AnomaliesFlow
    h = harness()
    h.first_supervisor()
    h.login()
    h.term.set_language("zh")
    _rules(h, high_amount_factor=2, high_amount_sales=3, high_amount_min_sales=3)
    for digits in ("1000", "1000", "1000"):
        _cash_sale(h, digits)
    h.press("5", "0", "0", "0", "ENTER")
    assert h.flow() == ("limit_gate", "show")
    assert "异常交易" in h.text() and "超平时 2 倍" in h.text()
    h.press("ENTER")
    h.press("2", "5", "8", "0", "ENTER")        # the supervisor logged in: PIN only
    assert h.flow() == ("sale", "method"), h.text()
    h.press("CANCEL", "CANCEL")
    h.to_idle()
    h.term.push(AnomaliesFlow(h.term))
    h.run(100)
    assert "异常记录" in h.text() and "主管 1 批准" in h.text()


def test_a_chip_card_is_checked_before_its_authorisation_goes_out(online):
    from tests.conftest import ChipSlot
    h = online()
    h.chip = ChipSlot(h, t0=False)
    h.term.payments.chip_reader = h.chip
    _rules(h, same_card_count=2)

    def insert(digits):
        h.press(*digits)
        h.press("ENTER", "1")
        h.wait_for("Insert, tap or swipe")
        h.chip.insert("online_pin")
        h.wait_for("Customer PIN")
        h.press(*"1234")
        h.press("ENTER")

    insert("1000")
    h.run(15000, until=lambda: h.flow() in (("sale", "result"), ("sale", "copy")))
    assert h.term.payments.journal.last()["state"] == "approved"
    h.chip.remove()
    h.to_idle()
    insert("1100")
    assert h.flow() == ("limit_gate", "show"), h.text()
    assert "Same card 2x" in h.text()
    h.press("CANCEL")
    h.run(2000, until=lambda: h.flow()[0] == "sale")
    assert h.flow() == ("sale", "card_error") and "Cancelled" in h.text()
    assert h.host.ledger.count("HP000001") == 1
    assert len(h.term.payments.journal.find(kind="sale")) == 1
    h.chip.remove()
    h.to_idle()
    insert("1200")                              # again; a supervisor approves this time
    assert h.flow() == ("limit_gate", "show"), h.text()
    h.press("ENTER", *"2580")                   # the supervisor logged in: PIN only
    h.press("ENTER")
    h.run(15000, until=lambda: h.flow() in (("sale", "result"), ("sale", "copy")))
    rec = h.term.payments.journal.last()
    assert rec["state"] == "approved" and rec["amount"] == 1200 and rec["entry"] == "chip"
    assert h.host.ledger.approved_total("HP000001") == 1000 + 1200
    assert _alerts(h)[0]["outcome"] == "override"
