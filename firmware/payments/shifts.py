"""Shifts and cash (issue 14, item 1): what the cash drawer should hold, and what it did.

A cashier opens a shift with the float counted into the drawer. While it is open the
drawer takes that operator's cash sales and gives back their cash refunds and the cash
of voided sales; pay ins and pay outs (a supervisor's, with a reason) move cash with
no sale. At the close the cash is counted (the total, or each denomination), and

  expected   = float + cash sales - cash refunds - cash voids + pay ins - pay outs
  difference = counted - expected       (above 0: OVER, below 0: SHORT)

are kept on the shift's row with the count. Everything is integer minor units.

Which sales are a shift's: the records of its operator between the journal's newest
id when it opened (txn_after) and when it closed (txn_until), whatever the clock did
meanwhile (a Pi without an RTC may step its clock). A cash sale counts as taken even
when it is voided later (state "voided"): the void's own record, in the shift of
whoever voided it, gives the cash back. Several operators' shifts may be open in the
same batch, and a shift may run across a settlement: it belongs to the batch that was
open when it began (journal.shifts(batch=...)).

This module is the logic and the printed report; the journal keeps the rows
(firmware/payments/journal.py, drivers/journal_sqlite.py) and the flow asks
(firmware/flows/shift.py).
"""
import json

from firmware.core.money import format_amount
from firmware.payments.journal import ShiftError
from firmware.ui.receipt import Receipt

# the notes and coins of a currency, in minor units, largest first
DENOMINATIONS = {
    "CNY": (10000, 5000, 2000, 1000, 500, 100, 50, 10),     # 100..1 yuan, 5 and 1 jiao
    "USD": (10000, 5000, 2000, 1000, 500, 100, 25, 10, 5, 1),
}
# why cash goes in or out without a sale (message "sh_r_<reason>")
REASONS = ("change", "supplier", "expenses", "bank", "other")
MOVE_IDS = {"pay_in": "sh_pay_in", "pay_out": "sh_pay_out"}


def denominations(currency):
    """The notes and coins counted at a close, largest first; () for a currency
    without a table (its close takes the total only)."""
    return DENOMINATIONS.get(currency, ())


def counted_total(counts):
    """The cash of a count by denomination: [(value, pieces)] -> minor units."""
    total = 0
    for value, n in counts:
        total += value * n
    return total


def counts_json(counts):
    """The count as the JSON text the shift keeps: [[value, pieces], ...]."""
    return json.dumps([[value, n] for value, n in counts])


def counts_from_json(text):
    """The count a shift keeps, as [(value, pieces)]; [] for none or a text this
    release cannot read."""
    if not text:
        return []
    try:
        rows = json.loads(text)
        return [(int(row[0]), int(row[1])) for row in rows]
    except (ValueError, TypeError, IndexError, KeyError):
        return []


def utc_stamp(system):
    """(YYYY-MM-DDTHH:MM:SSZ, local offset in minutes) of now, as records carry."""
    y, mo, d, h, mi, s = system.utc_time()
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, h, mi, s), system.utc_offset_min()


def figures(journal, shift):
    """What the drawer of shift took and gave, and what it should hold now (an open
    shift: so far). Amounts in minor units; *_n are counts."""
    f = {"float": shift["float"], "sales": 0, "sales_n": 0, "refunds": 0, "refunds_n": 0,
         "voids": 0, "voids_n": 0, "pay_in": 0, "pay_in_n": 0, "pay_out": 0, "pay_out_n": 0,
         "moves": []}
    currency = shift.get("currency") or ""
    for rec in journal.txns_after(shift["txn_after"], shift["txn_until"],
                                  operator=shift["operator"]):
        if rec["method"] != "cash" or (currency and rec["currency"] != currency):
            continue
        kind, state = rec["kind"], rec["state"]
        if kind == "sale" and state in ("approved", "voided"):
            f["sales"] += rec["amount"]
            f["sales_n"] += 1
        elif kind == "refund" and state == "approved":
            f["refunds"] += rec["amount"]
            f["refunds_n"] += 1
        elif kind == "void" and state == "approved":
            f["voids"] += rec["amount"]
            f["voids_n"] += 1
    for move in journal.cash_moves(shift_id=shift["id"]):
        f["moves"].append(move)
        f[move["kind"]] += move["amount"]
        f[move["kind"] + "_n"] += 1
    f["cash_in"] = f["sales"] + f["pay_in"]
    f["cash_out"] = f["refunds"] + f["voids"] + f["pay_out"]
    f["expected"] = f["float"] + f["cash_in"] - f["cash_out"]
    return f


class Shifts:
    """The shifts of a terminal: journal (shift_* and cash_* calls), audit (callable
    (event, operator, detail): the store's audit log), system (the clock), currency
    (the configured one). Every write goes to the journal first, in one transaction,
    then to the audit log; a storage fault leaves as it came (nothing half-written)."""

    def __init__(self, journal, audit, system, currency):
        self.journal = journal
        self.audit = audit
        self.system = system
        self.currency = currency

    def money(self, minor):
        return format_amount(minor, self.currency)

    def current(self, operator):
        return self.journal.shift_current(operator)

    def last_closed(self, operator):
        rows = self.journal.shifts(operator=operator, state="closed")
        return rows[-1] if rows else None

    def open(self, operator, float_cents, batch):
        utc, tz = utc_stamp(self.system)
        shift_id = self.journal.shift_open(operator, float_cents, utc, tz, batch, self.currency)
        self.audit("shift_open", operator, "#%d float %s %s batch %d"
                   % (shift_id, self.money(float_cents), self.currency, batch))
        return self.journal.shift_get(shift_id)

    def move(self, shift, kind, amount, reason, operator, supervisor):
        """A pay in or pay out of shift, approved by supervisor; the move's row."""
        if reason not in REASONS:
            raise ShiftError("reason", reason)
        utc, tz = utc_stamp(self.system)
        move_id = self.journal.cash_move(shift["id"], kind, amount, reason, operator,
                                         supervisor, utc)
        self.audit("shift_" + kind, operator, "#%d shift %d %s %s approved by %s"
                   % (move_id, shift["id"], self.money(amount), reason, supervisor))
        for move in self.journal.cash_moves(shift_id=shift["id"]):
            if move["id"] == move_id:
                return move
        return None

    def close(self, shift, counted, counts=None):
        """Close shift with the cash counted (counts: [(value, pieces)] when counted
        by denomination); the closed row, with expected and difference."""
        expected = figures(self.journal, shift)["expected"]
        utc, tz = utc_stamp(self.system)
        row = self.journal.shift_close(shift["id"], counted, expected,
                                       counts_json(counts) if counts else "", utc)
        self.audit("shift_close", shift["operator"], "#%d counted %s expected %s difference %s"
                   % (shift["id"], self.money(counted), self.money(expected),
                      signed(row["difference"], self.currency)))
        return row


def signed(minor, currency):
    """+5.00, -5.00, 0.00."""
    return ("+" if minor > 0 else "") + format_amount(minor, currency)


def difference_word(difference):
    """The message id of a difference: over, short or balanced."""
    if difference > 0:
        return "over"
    if difference < 0:
        return "short"
    return "balanced"


# -- paper ------------------------------------------------------------------------------
def _when(utc, tz_min):
    """'YYYY-MM-DD HH:MM' local of a UTC stamp and offset; '' for none."""
    if not utc:
        return ""
    from firmware.payments.receipts import _local
    date, time_ = _local({"utc": utc, "tz_min": tz_min})
    return (date + " " + time_[:5]) if time_ else date


def _head(r, config, t):
    term = config["terminal"]
    r.add(term["merchant_name"], "center", bold=True)
    r.pair("TID " + term["id"], "MID " + term["merchant_id"])
    r.rule()


def report(shift, figs, config, t, synced=True, reprint=False, name=""):
    """The shift report on 32 columns: who, when (local), the float, the cash sales,
    refunds and voids, each pay in and out with its reason, expected, counted and
    the difference (and the count by denomination when there was one). An open
    shift prints its figures so far."""
    from firmware.retail.receipt_lines import pair_wrapped
    cur = shift.get("currency") or config["money"]["currency"]
    money = lambda v: format_amount(v, cur)
    r = Receipt(lang=t.lang)
    _head(r, config, t)
    r.add(t("rcpt_shift_head"), "center", bold=True)
    if reprint:
        r.add(t("rcpt_reprint"), "center")
    r.pair(t("rcpt_shift_no"), "#%d" % shift["id"])
    pair_wrapped(r, t("rcpt_operator"), shift["operator"] + ((" " + name) if name else ""))
    r.pair(t("rcpt_batch"), "%d" % shift["batch"])
    mark = "" if synced else "?"
    r.pair(t("rcpt_opened"), _when(shift["opened_utc"], shift["tz_min"]) + mark)
    if shift["state"] == "closed":
        r.pair(t("rcpt_closed"), _when(shift["closed_utc"], shift["tz_min"]) + mark)
    else:
        r.pair(t("rcpt_closed"), t("rcpt_still_open"))
    if not synced:
        r.add(t("rcpt_time_unverified"), "center")
    r.rule()
    pair_wrapped(r, t("rcpt_float"), money(figs["float"]))
    pair_wrapped(r, t("rcpt_cash_sales", n=figs["sales_n"]), money(figs["sales"]))
    pair_wrapped(r, t("rcpt_cash_refunds", n=figs["refunds_n"]), money(-figs["refunds"]))
    pair_wrapped(r, t("rcpt_cash_voids", n=figs["voids_n"]), money(-figs["voids"]))
    for kind, sign in (("pay_in", 1), ("pay_out", -1)):
        pair_wrapped(r, t("rcpt_" + kind + "s", n=figs[kind + "_n"]), money(sign * figs[kind]))
        for move in figs["moves"]:
            if move["kind"] == kind:
                pair_wrapped(r, t("sh_r_" + move["reason"]) + " (" + t("rcpt_sup_id", id=move["supervisor"]) + ")",
                             money(sign * move["amount"]), indent="  ")
    r.rule()
    # a closed shift prints what was expected at its close (kept on its row), never a
    # figure made again later
    closed = shift["state"] == "closed"
    expected = shift["expected"] if closed else figs["expected"]
    pair_wrapped(r, t("rcpt_expected"), cur + " " + money(expected), bold=True)
    if closed:
        pair_wrapped(r, t("rcpt_counted"), cur + " " + money(shift["counted"]), bold=True)
        diff = shift["difference"]
        pair_wrapped(r, t("rcpt_difference") + " " + t("rcpt_" + difference_word(diff)),
                     signed(diff, cur), bold=True)
        counts = counts_from_json(shift["denominations"])
        if counts:
            r.rule()
            r.add(t("rcpt_by_denomination"))
            for value, n in counts:
                if n:
                    pair_wrapped(r, "%s x %d" % (money(value), n), money(value * n), indent="  ")
    r.rule("=")
    return r


def move_slip(move, shift, config, t, synced=True):
    """The pay in / pay out slip: the drawer opens with it."""
    cur = shift.get("currency") or config["money"]["currency"]
    r = Receipt(lang=t.lang)
    _head(r, config, t)
    r.add(t("rcpt_" + move["kind"]), "center", bold=True)
    when = _when(move["utc"], shift["tz_min"])
    r.pair(when[:10], when[11:] + ("" if synced else "?"))
    r.pair(t("rcpt_shift_no"), "#%d" % shift["id"])
    r.pair(t("rcpt_operator"), move["operator"])
    r.pair(t("rcpt_supervisor"), move["supervisor"])
    r.pair(t("rcpt_reason"), t("sh_r_" + move["reason"]))
    r.rule()
    sign = "-" if move["kind"] == "pay_out" else ""
    r.pair(t("rcpt_total"), sign + format_amount(move["amount"], cur, with_code=True), bold=True)
    r.rule("=")
    r.kick_drawer = True
    return r


def cash_refusal(config, journal, operator):
    """Why a cash sale may not be taken now, as a message id, or None: with [shifts]
    required, an operator without an open shift ("sh_open_first"; also when the journal
    cannot say: its fault screen is up then)."""
    if not config.get("shifts", {}).get("required"):
        return None
    try:
        if journal.shift_current(operator) is not None:
            return None
    except Exception as exc:
        from firmware.core.store import is_fault
        if not is_fault(exc):
            raise
    return "sh_open_first"
