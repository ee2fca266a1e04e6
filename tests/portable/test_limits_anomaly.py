"""The pure logic of limits and anomaly checks (issue 15; docs/limits.md) over the
memory journal: the local day and minutes back as the journal's stamps, the exact
median, each limit and rule on its pattern and beside it. CPython and MicroPython."""
from firmware.core.config import defaults
from firmware.payments import alerts, anomaly, limits
from firmware.payments.journal import MemoryJournal, record

NOW = (2026, 3, 1, 1, 30, 15)          # UTC; 09:30 in Shanghai (+480)


def _config(**sections):
    config = defaults()
    for name in sections:
        config[name].update(sections[name])
    return config


def _add(j, utc, amount=1000, kind="sale", state="approved", operator="5", **extra):
    return j.add(record(kind=kind, state=state, amount=amount, operator=operator, utc=utc,
                        currency="USD", **extra))


def test_the_local_day_and_minutes_back_as_stamps():
    assert alerts.local_day(NOW, 480) == ("2026-02-28T16:00:00Z", "2026-03-01T16:00:00Z")
    assert alerts.local_day(NOW, 0) == ("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z")
    assert alerts.local_day(NOW, -300) == ("2026-02-28T05:00:00Z", "2026-03-01T05:00:00Z")
    assert alerts.local_day((2024, 12, 31, 23, 0, 0), 120) == ("2024-12-31T22:00:00Z",
                                                              "2025-01-01T22:00:00Z")
    assert alerts.minutes_back(NOW, 10) == "2026-03-01T01:20:15Z"
    assert alerts.minutes_back(NOW, 120) == "2026-02-28T23:30:15Z"
    for days in (0, 59, 10957, 20513, -1):
        y, m, d = alerts.civil_from_days(days)
        assert alerts.days_from_civil(y, m, d) == days
    assert alerts.civil_from_days(0) == (1970, 1, 1)
    assert alerts.civil_from_days(19782) == (2024, 2, 29)


def test_the_median_is_exact():
    assert alerts.median([]) == 0
    assert alerts.median([5]) == 5
    assert alerts.median([300, 100, 200]) == 200
    assert alerts.median([100, 201]) == 150          # halves rounded down
    assert alerts.median([99999999999, 1, 99999999999]) == 99999999999


def test_off_by_default_and_today_only():
    j = MemoryJournal()
    for _ in range(50):
        _add(j, "2026-03-01T01:00:00Z", 10 ** 8)
    assert limits.check(_config(), j, "sale", 10 ** 9, "5", "cashier", NOW, 480) == []
    config = _config(limits={"daily_count": 2, "daily_total": 3000})
    j = MemoryJournal()
    _add(j, "2026-02-28T15:59:59Z", 5000)          # yesterday in Shanghai
    _add(j, "2026-02-28T16:00:00Z", 1000)          # today
    _add(j, "2026-03-01T01:00:00Z", 1000, state="declined")   # not taken
    _add(j, "2026-03-01T01:00:00Z", 1000, state="voided")
    _add(j, "2026-03-01T01:00:00Z", 1000, kind="refund")
    assert limits.check(config, j, "sale", 2000, "5", "cashier", NOW, 480) == []
    hits = limits.check(config, j, "sale", 2001, "5", "cashier", NOW, 480)
    assert [h["rule"] for h in hits] == ["daily_total"]
    _add(j, "2026-03-01T01:10:00Z", 100, state="sending")     # an answer awaited counts
    hits = limits.check(config, j, "sale", 100, "5", "cashier", NOW, 480)
    assert [h["rule"] for h in hits] == ["daily_count"]
    assert hits[0]["lines"] == [("lim_daily_count", {}), ("lim_max_n", {"n": "2"})]
    assert hits[0]["action"] == "supervisor" and hits[0]["kind"] == "limit"


def test_per_payment_and_a_cashiers_own():
    config = _config(limits={"per_payment": 50000, "cashier_per_payment": 10000,
                             "cashier_daily_total": 15000})
    j = MemoryJournal()
    _add(j, "2026-03-01T00:00:00Z", 9000, operator="5")
    _add(j, "2026-03-01T00:00:00Z", 40000, operator="1")      # the supervisor's
    assert limits.check(config, j, "sale", 50000, "1", "supervisor", NOW, 0) == []
    hits = limits.check(config, j, "sale", 50001, "1", "supervisor", NOW, 0)
    assert [h["rule"] for h in hits] == ["per_payment"]
    assert hits[0]["lines"][1] == ("lim_max", {"amount": "500.00"})
    hits = limits.check(config, j, "sale", 6001, "5", "cashier", NOW, 0)
    assert [h["rule"] for h in hits] == ["cashier_daily_total"]
    hits = limits.check(config, j, "sale", 10001, "5", "cashier", NOW, 0)
    assert [h["rule"] for h in hits] == ["cashier_per_payment", "cashier_daily_total"]


def test_refund_limits():
    config = _config(limits={"refund_per_payment": 5000, "refund_daily_total": 8000})
    j = MemoryJournal()
    _add(j, "2026-03-01T00:00:00Z", 4000, kind="refund")
    _add(j, "2026-03-01T00:00:00Z", 4000, kind="refund", state="failed")
    assert limits.check(config, j, "refund", 4000, "5", "cashier", NOW, 0) == []
    hits = limits.check(config, j, "refund", 5001, "5", "cashier", NOW, 0)
    assert [h["rule"] for h in hits] == ["refund_per_payment", "refund_daily_total"]
    assert limits.check(config, j, "void", 10 ** 6, "5", "cashier", NOW, 0) == []


def test_same_card_within_minutes():
    config = _config(anomaly={"same_card_count": 3, "same_card_min": 10})
    j = MemoryJournal()
    pan = "411111******1111"
    _add(j, "2026-03-01T01:20:14Z", pan_masked=pan, method="card")    # 10 min and 1 s ago
    _add(j, "2026-03-01T01:21:00Z", pan_masked=pan, method="card", state="declined")
    _add(j, "2026-03-01T01:22:00Z", pan_masked="555555******4444", method="card")
    _add(j, "2026-03-01T01:23:00Z", pan_masked=pan, method="card", state="failed")
    assert anomaly.card_checks(config, j, "sale", 100, pan, NOW) == []
    _add(j, "2026-03-01T01:25:00Z", pan_masked=pan, method="card")
    hits = anomaly.card_checks(config, j, "sale", 100, pan, NOW)
    assert [h["rule"] for h in hits] == ["same_card"]
    assert hits[0]["lines"] == [("an_same_card", {"n": "3"}), ("an_in_min", {"m": "10"})]
    assert "411111" not in hits[0]["detail"]
    config["anomaly"]["same_card_action"] = "decline"
    assert anomaly.card_checks(config, j, "sale", 100, pan, NOW)[0]["action"] == "decline"
    config["anomaly"]["same_card_count"] = 0
    assert anomaly.card_checks(config, j, "sale", 100, pan, NOW) == []


def test_high_amount_against_the_median():
    config = _config(anomaly={"high_amount_factor": 5, "high_amount_sales": 4,
                              "high_amount_min_sales": 3})
    j = MemoryJournal()
    _add(j, "x", 100000)                 # older than the last 4
    _add(j, "x", 1000)
    _add(j, "x", 90000, state="declined")
    assert anomaly.amount_checks(config, j, "sale", 10 ** 9, "5", NOW) == []   # too few
    _add(j, "x", 2000)
    _add(j, "x", 3000)
    _add(j, "x", 4000)                   # median of 1000..4000: 2500
    assert anomaly.amount_checks(config, j, "sale", 12500, "5", NOW) == []
    hits = anomaly.amount_checks(config, j, "sale", 12501, "5", NOW)
    assert [h["rule"] for h in hits] == ["high_amount"]
    assert hits[0]["lines"][1] == ("an_usual", {"amount": "25.00"})
    assert anomaly.amount_checks(config, j, "refund", 10 ** 9, "5", NOW) == []


def test_a_run_of_declined_card_payments():
    config = _config(anomaly={"decline_run": 3})
    j = MemoryJournal()
    for state in ("declined", "declined", "approved", "declined", "declined"):
        _add(j, "x", method="card", state=state)
    _add(j, "x", method="cash")          # cash between: not a card answer
    _add(j, "x", method="card", state="failed")     # never sent
    assert anomaly.card_checks(config, j, "sale", 100, "", NOW) == []
    _add(j, "x", method="card", state="declined")
    hits = anomaly.card_checks(config, j, "sale", 100, "", NOW)
    assert [h["rule"] for h in hits] == ["decline_run"]


def test_one_operators_refunds_and_voids():
    config = _config(anomaly={"backs_count": 3, "backs_min": 60})
    j = MemoryJournal()
    _add(j, "2026-03-01T00:30:14Z", kind="refund")         # over an hour ago
    _add(j, "2026-03-01T01:00:00Z", kind="refund")
    _add(j, "2026-03-01T01:00:00Z", kind="void", operator="6")
    _add(j, "2026-03-01T01:00:00Z", kind="refund", state="failed")
    assert anomaly.amount_checks(config, j, "refund", 100, "5", NOW) == []
    _add(j, "2026-03-01T01:10:00Z", kind="void")
    hits = anomaly.amount_checks(config, j, "refund", 100, "5", NOW)
    assert [h["rule"] for h in hits] == ["backs"]
    assert hits[0]["lines"][1] == ("an_by_op", {"id": "5", "m": "60"})
    assert anomaly.backs(config, j, "void", 100, "6", NOW) == []


def test_a_refund_to_a_card_never_sold_to():
    config = _config()
    j = MemoryJournal()
    _add(j, "x", pan_masked="411111******1111", method="card")
    _add(j, "x", pan_masked="400000******1111", method="card", state="declined")
    assert anomaly.card_checks(config, j, "refund", 100, "411111******1111", NOW) == []
    hits = anomaly.card_checks(config, j, "refund", 100, "400000******1111", NOW)
    assert [h["rule"] for h in hits] == ["new_card"]
    config["anomaly"]["refund_new_card"] = False
    assert anomaly.card_checks(config, j, "refund", 100, "400000******1111", NOW) == []


def test_the_memory_journal_keeps_the_hits():
    j = MemoryJournal()
    for i in range(5):
        j.alert_add({"kind": "limit", "rule": "per_payment", "outcome": "asked",
                     "amount": i, "currency": "USD"})
    assert [a["amount"] for a in j.alerts(3)] == [4, 3, 2]
    assert [a["id"] for a in j.alerts(10, below_id=3)] == [2, 1]
    for bad in ({"kind": "other", "outcome": "asked"}, {"kind": "limit", "outcome": "maybe"},
                {"kind": "limit", "outcome": "asked", "amount": "1"}):
        try:
            j.alert_add(bad)
        except ValueError:
            continue
        assert False, bad
