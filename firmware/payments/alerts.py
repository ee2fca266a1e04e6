"""Limit and anomaly hits (issue 15; docs/limits.md): what a hit is, the clock
arithmetic of "today" and "the last N minutes", what is recorded.

A hit is a dict:

  kind     "limit" | "anomaly"
  rule     the limit's config key (per_payment, cashier_daily_total, ...) or the
           anomaly rule's name (same_card, high_amount, decline_run, backs, new_card)
  action   "supervisor" (a supervisor approves or nothing goes) | "decline"
  lines    [(message id, values)]: the words on the screen, under the title
  amount   the payment's amount (minor units), currency
  detail   one line for the audit trail and the report (numbers, no card data)

The checks themselves: firmware/payments/limits.py and anomaly.py; what the flows ask
and how a hit is recorded: firmware/payments/checks.py.
"""
from firmware.core.dates import civil_from_days, days_from_civil

LIMIT = "limit"
ANOMALY = "anomaly"

# records that count as money taken (or about to be) for a day's totals and counts:
# an answer still awaited counts, a reversed, voided, declined or failed one does not
TAKEN_STATES = ("approved", "sending", "offline_pending")
# records whose request left the terminal, whatever came of it: what a card's or an
# operator's recent activity counts
SENT_STATES = ("approved", "declined", "sending", "reversal_pending", "reversed",
               "voided", "offline_pending")


def hit(kind, rule, action, lines, amount, currency, detail):
    return {"kind": kind, "rule": rule, "action": action, "lines": lines,
            "amount": amount, "currency": currency, "detail": detail}


# -- the clock: stamps as the journal writes them ("YYYY-MM-DDTHH:MM:SSZ") ----------
def _minutes(utc):
    y, mo, d, h, mi = utc[0], utc[1], utc[2], utc[3], utc[4]
    return days_from_civil(y, mo, d) * 1440 + h * 60 + mi


def stamp_at(minutes, seconds=0):
    """The journal's stamp of a count of minutes since 1970 (UTC)."""
    days, rest = minutes // 1440, minutes % 1440
    y, mo, d = civil_from_days(days)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, rest // 60, rest % 60, seconds)


def local_day(utc, offset_min):
    """(utc_from, utc_to): the stamps bounding the terminal's local day that holds the
    UTC time utc (y, mo, d, h, mi, s) at offset_min from UTC."""
    local = _minutes(utc) + offset_min
    midnight = local - local % 1440
    return stamp_at(midnight - offset_min), stamp_at(midnight + 1440 - offset_min)


def minutes_back(utc, minutes):
    """The stamp minutes before the UTC time utc (to the second)."""
    return stamp_at(_minutes(utc) - minutes, utc[5])


def median(amounts):
    """The median of whole amounts; of an even count, the lower middle and upper middle
    averaged, rounded down (exact: whole minor units)."""
    values = sorted(amounts)
    n = len(values)
    if n == 0:
        return 0
    if n % 2:
        return values[n // 2]
    return (values[n // 2 - 1] + values[n // 2]) // 2
