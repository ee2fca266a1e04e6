"""What the sale, refund and void flows ask before anything leaves the terminal (issue
15; docs/limits.md), and how each hit is kept: in the journal's alerts table (the
Anomalies report reads it, MACed like the journal's other rows) and in the store's
audit trail (limit_hit, limit_override, anomaly, anomaly_override; and *_cancelled
when the operator stepped back)."""
from firmware.payments import anomaly, limits
from firmware.payments.alerts import LIMIT


# -- from the terminal --------------------------------------------------------------
def _now(term):
    return term.system.utc_time(), term.system.utc_offset_min()


def _operator(term):
    return (term.operator or {}).get("id", "")


def amount_hits(term, kind, amount, original=None):
    """The hits of a sale or refund whose amount is known, before anything leaves:
    the limits, an amount far above the usual, one operator's refunds."""
    utc, offset = _now(term)
    journal = term.payments.journal
    hits = limits.check(term.config, journal, kind, amount, _operator(term), term.role(),
                        utc, offset)
    hits += anomaly.amount_checks(term.config, journal, kind, amount, _operator(term), utc)
    return hits


def card_hits(term, kind, amount, pan_masked):
    """The hits once the card is known (read, before its authorisation goes out)."""
    utc, offset = _now(term)
    return anomaly.card_checks(term.config, term.payments.journal, kind, amount, pan_masked,
                               utc)


def void_hits(term, original):
    """The hits of a void of original (one operator's refunds and voids)."""
    utc, offset = _now(term)
    return anomaly.backs(term.config, term.payments.journal, "void", original["amount"],
                         _operator(term), utc)


def audit_kind(h, outcome):
    if outcome == "override":
        return "limit_override" if h["kind"] == LIMIT else "anomaly_override"
    if outcome == "cancelled":
        return "limit_cancelled" if h["kind"] == LIMIT else "anomaly_cancelled"
    return "limit_hit" if h["kind"] == LIMIT else "anomaly"


def record(term, h, outcome, supervisor=""):
    """Keep a hit's outcome (asked, declined, override, cancelled) in the journal's
    alerts table and the audit trail; the alert's id."""
    utc, tz = term.payments._stamp()
    op = _operator(term)
    detail = "%s %s %s" % (h["rule"], outcome, h["detail"])
    if supervisor:
        detail += " by %s" % supervisor
    term.store.audit(audit_kind(h, outcome), supervisor or op, detail)
    return term.payments.journal.alert_add({
        "utc": utc, "tz_min": tz, "kind": h["kind"], "rule": h["rule"], "operator": op,
        "supervisor": supervisor, "amount": h["amount"], "currency": h["currency"],
        "outcome": outcome, "detail": h["detail"]})
