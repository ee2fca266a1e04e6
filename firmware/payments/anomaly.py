"""Anomaly checks (issue 15 item 5; docs/limits.md): patterns worth a second look,
read from the journal. Each rule is configured in [anomaly] (a count of 0 turns it
off) with its own action, "supervisor" or "decline".

  same_card     one card this many times (this one included) within some minutes
  high_amount   a sale far above the terminal's own recent median
  decline_run   the last card payments all declined
  backs         one operator's refunds and voids (this one included) within some minutes
  new_card      a refund to a card no sale of this terminal was paid with

A card is known by what the journal keeps of it, its masked number (first six and last
four digits, pan_masked): no card number, hash or token of one is stored for these
checks. Two cards of one issuer range with the same last four are taken for one: for a
rule that asks a second look, that errs on the careful side (docs/limits.md).
"""
from firmware.core.money import format_amount
from firmware.payments.alerts import ANOMALY, SENT_STATES, hit, median, minutes_back

RULES = ("same_card", "high_amount", "decline_run", "backs", "new_card")


def amount_checks(config, journal, kind, amount, operator, utc):
    """The rules that need only the amount: a sale far above the usual; a refund, one
    operator's refunds and voids."""
    if kind == "sale":
        return high_amount(config, journal, amount)
    if kind == "refund":
        return backs(config, journal, "refund", amount, operator, utc)
    return []


def card_checks(config, journal, kind, amount, pan_masked, utc):
    """The rules that need the card: the same card again, a run of declines (sales);
    a refund to a card never used for a sale."""
    if kind == "sale":
        return same_card(config, journal, amount, pan_masked, utc) + \
            decline_run(config, journal, amount)
    if kind == "refund":
        return new_card(config, journal, amount, pan_masked)
    return []


def _cur(config):
    return config["money"]["currency"]


def same_card(config, journal, amount, pan_masked, utc):
    an = config["anomaly"]
    n, minutes = an["same_card_count"], an["same_card_min"]
    if not n or not pan_masked:
        return []
    seen = journal.totals(kind="sale", pan_masked=pan_masked, states=SENT_STATES,
                          utc_from=minutes_back(utc, minutes))[0]
    if seen + 1 < n:
        return []
    return [hit(ANOMALY, "same_card", an["same_card_action"],
                [("an_same_card", {"n": "%d" % (seen + 1)}), ("an_in_min", {"m": "%d" % minutes})],
                amount, _cur(config), "%dx in %d min %s" % (seen + 1, minutes, pan_masked[-4:]))]


def high_amount(config, journal, amount):
    an = config["anomaly"]
    factor = an["high_amount_factor"]
    if not factor:
        return []
    cur = _cur(config)
    recent = [r["amount"] for r in journal.latest(an["high_amount_sales"], kind="sale",
                                                   state="approved", currency=cur)]
    if len(recent) < an["high_amount_min_sales"]:
        return []
    usual = median(recent)
    if usual <= 0 or amount <= usual * factor:
        return []
    return [hit(ANOMALY, "high_amount", an["high_amount_action"],
                [("an_high_amount", {"n": "%d" % factor}),
                 ("an_usual", {"amount": format_amount(usual, cur)})],
                amount, cur, "%d > %d x median %d of %d" % (amount, factor, usual, len(recent)))]


def decline_run(config, journal, amount):
    """The last decline_run card sales the host (or the card) answered all declined."""
    an = config["anomaly"]
    n = an["decline_run"]
    if not n:
        return []
    run = 0
    for rec in journal.newest(kind="sale", states=("approved", "declined")):
        if rec["method"] != "card":
            continue
        if rec["state"] != "declined":
            break
        run += 1
        if run >= n:
            break
    if run < n:
        return []
    return [hit(ANOMALY, "decline_run", an["decline_run_action"],
                [("an_declines", {"n": "%d" % n}), ("an_in_row", {})],
                amount, _cur(config), "%d declined in a row" % n)]


def backs(config, journal, kind, amount, operator, utc):
    """One operator's refunds and voids within backs_min minutes, this one counted."""
    an = config["anomaly"]
    n, minutes = an["backs_count"], an["backs_min"]
    if not n:
        return []
    done = journal.totals(kinds=("refund", "void"), operator=operator, states=SENT_STATES,
                          utc_from=minutes_back(utc, minutes))[0]
    if done + 1 < n:
        return []
    return [hit(ANOMALY, "backs", an["backs_action"],
                [("an_backs", {"n": "%d" % (done + 1)}),
                 ("an_by_op", {"id": operator, "m": "%d" % minutes})],
                amount, _cur(config), "%s %s: %d in %d min" % (kind, operator, done + 1, minutes))]


def new_card(config, journal, amount, pan_masked):
    an = config["anomaly"]
    if not an["refund_new_card"] or not pan_masked:
        return []
    if journal.last(kind="sale", pan_masked=pan_masked, states=("approved", "voided")) is not None:
        return []
    return [hit(ANOMALY, "new_card", an["refund_new_card_action"],
                [("an_new_card", {}), ("an_never_sold", {})],
                amount, _cur(config), "refund to %s" % pan_masked[-4:])]


# every rule off: for the test harness and the chaos drivers, which use one test card
# again and again and refund and void by the dozen
OFF = {"same_card_count": 0, "high_amount_factor": 0, "decline_run": 0, "backs_count": 0,
       "refund_new_card": False}
