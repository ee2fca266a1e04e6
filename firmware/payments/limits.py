"""Limits per terminal and per cashier (issue 15 item 4; docs/limits.md): per payment, a
day's total and count of sales, per refund and a day's refunds. Read from the journal
(its day through txns(utc), one operator's through txns(operator, utc)), so a restart
keeps the day's totals. "A day" is the terminal's local day.

[limits] keys are in [money]'s minor units; 0 is no limit. The terminal's own count
every operator; cashier_* count the records of the operator acting, when that operator
is a cashier (a supervisor is held by the terminal's limits only: a supervisor is who
overrides them). Every hit asks a supervisor: a limit is never declined outright.
"""
from firmware.core.money import format_amount
from firmware.payments.alerts import LIMIT, TAKEN_STATES, hit, local_day

SALE_RULES = ("per_payment", "daily_total", "daily_count")
REFUND_RULES = ("refund_per_payment", "refund_daily_total")
REFUND_STATES = ("approved", "sending")


def scopes(role):
    """The key prefixes that hold for an operator of role: the terminal's, and a
    cashier's own."""
    return ("", "cashier_") if role == "cashier" else ("",)


def check(config, journal, kind, amount, operator, role, utc, offset_min):
    """The limits a sale or refund of amount would pass, as hits (firmware/payments/
    alerts.py), the terminal's first; [] when none."""
    lim = config["limits"]
    cur = config["money"]["currency"]
    if kind not in ("sale", "refund"):
        return []
    out = []
    day = None
    fmt = lambda v: format_amount(v, cur)
    for prefix in scopes(role):
        op = operator if prefix else None
        who = "op %s " % operator if prefix else ""
        if kind == "sale":
            per, total, count = (lim[prefix + r] for r in SALE_RULES)
            kinds, states = ("sale",), TAKEN_STATES
        else:
            per, total = (lim[prefix + r] for r in REFUND_RULES)
            count = 0
            kinds, states = ("refund",), REFUND_STATES
        rule = prefix + ("per_payment" if kind == "sale" else "refund_per_payment")
        if per and amount > per:
            out.append(hit(LIMIT, rule, "supervisor",
                           [("lim_" + rule, {}), ("lim_max", {"amount": fmt(per)})],
                           amount, cur, "%s%d > %d" % (who, amount, per)))
        if not (total or count):
            continue
        if day is None:
            day = local_day(utc, offset_min)
        n, taken = journal.totals(kinds=kinds, states=states, currency=cur, operator=op,
                                  utc_from=day[0], utc_to=day[1])
        rule = prefix + ("daily_total" if kind == "sale" else "refund_daily_total")
        if total and taken + amount > total:
            out.append(hit(LIMIT, rule, "supervisor",
                           [("lim_" + rule, {}), ("lim_max", {"amount": fmt(total)})],
                           amount, cur, "%s%d + %d > %d" % (who, taken, amount, total)))
        if count and n + 1 > count:
            rule = prefix + "daily_count"
            out.append(hit(LIMIT, rule, "supervisor",
                           [("lim_" + rule, {}), ("lim_max_n", {"n": "%d" % count})],
                           amount, cur, "%s%d + 1 > %d" % (who, n, count)))
    return out


def rows(config, role=None):
    """[(message id, values)] of every limit, for Settings (flows/limits_view.py)."""
    lim = config["limits"]
    cur = config["money"]["currency"]
    out = []
    for prefix in ("", "cashier_"):
        for rule in SALE_RULES + REFUND_RULES:
            key = prefix + rule
            value = lim[key]
            if not value:
                shown = None
            elif rule.endswith("count"):
                shown = "%d" % value
            else:
                shown = format_amount(value, cur)
            out.append((key, shown))
    return out
