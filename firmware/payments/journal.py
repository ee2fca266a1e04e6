"""The transaction journal: what the terminal did with money, written before it acts.

A record is durable before its request leaves the terminal and before the screen says
APPROVED (the SQLite journal commits with synchronous=FULL). States:

  created           amount known, nothing sent
  sending           the request may be on the wire: after a crash it must be reversed
  approved          the host (or the cash drawer) took the money
  declined          the host said no, with its response code
  reversal_pending  we could not be sure: a 0400/0401 must be acknowledged
  reversed          the host acknowledged the reversal: nothing charged
  voided            a supervisor cancelled an approved sale of this batch
  failed            nothing was sent (no host, cancelled before sending)
  offline_pending   an offline approval whose advice is being queued: after a crash
                    the advice is withdrawn (the screen never said APPROVED)

An approval given offline has offline=1 and upload "pending" until the host has its
advice ("uploaded"), or "declined" when the host refused it after upload (the record
is then "declined" with the host's response code).

The journal also keeps the cash drawer's shifts (issue 14, firmware/payments/shifts.py):

  shifts      one row per operator's shift: the float counted at open, and at close
              the cash counted, the cash expected and the difference (counted minus
              expected), the count by denomination as JSON text. txn_after is the
              newest transaction id when the shift opened and txn_until the newest
              when it closed (0 while open): the shift's sales are that operator's
              records between the two, whatever the clock did meanwhile.
  cash_moves  pay ins and pay outs of a shift, each with its reason and the
              supervisor who approved it
  z_reports   the Z reports that closed batches, as JSON text (firmware/reports/):
              one a batch (save_z of a second raises ZExists)

Both journals answer newest(**criteria): the matching records newest first, read as
they are taken (the criteria: matches() below); latest(n, **criteria) and last() are
the first n of it and the first. find(**criteria) is all of them at once, oldest first.

This module holds the record shapes and an in-memory journal (for boards without
SQLite and for the portable tests); drivers/journal_sqlite.py is the device's.
"""

STATES = ("created", "sending", "approved", "declined", "reversal_pending", "reversed",
          "voided", "failed", "offline_pending")

# Fields every record has, with their defaults.
FIELDS = {
    "id": 0, "kind": "sale", "method": "cash", "state": "created", "amount": 0,
    "currency": "USD", "stan": "", "rrn": "", "auth_code": "", "rc": "",
    "pan_masked": "", "last4": "", "entry": "", "operator": "", "utc": "",
    "tz_min": 0, "batch": 1, "original_id": 0, "refunded": 0, "tendered": 0,
    "receipt_printed": 0, "reversal_attempts": 0, "reason": "", "card_label": "",
    "cvm": "",            # how the cardholder was verified: pin | signature | none
    "rev_stan": "",       # the STAN of this record's reversal (repeats keep it)
    # chip and contactless: for the receipt and for disputes
    "aid": "", "app_label": "", "tvr": "", "tsi": "", "cryptogram": "",
    # the chip's data at the end (DE55 as hex: the final cryptogram, 9F26/9F27, and what
    # it covers; no card number or track): what a settlement's batch upload (0320) sends
    "icc_data": "",
    # store and forward: approved without the host; "" | pending | uploaded | declined
    "offline": 0, "upload": "",
    # selling items: the cart the sale paid for (JSON of firmware.retail.cart.Cart's
    # to_dict(), the receipt is itemised from it) and whether its stock was taken
    "cart": "", "stocked": 0,
}


# shifts and cash (issue 14): each table's fields with their defaults
SHIFT_FIELDS = {
    "id": 0, "operator": "", "opened_utc": "", "tz_min": 0, "batch": 1, "float": 0,
    "state": "open", "closed_utc": "", "counted": 0, "expected": 0, "difference": 0,
    "denominations": "", "currency": "", "txn_after": 0, "txn_until": 0,
}
SHIFT_STATES = ("open", "closed")
CASH_MOVE_FIELDS = {
    "id": 0, "shift_id": 0, "kind": "pay_in", "amount": 0, "reason": "", "operator": "",
    "supervisor": "", "utc": "",
}
MOVE_KINDS = ("pay_in", "pay_out")
Z_FIELDS = {"id": 0, "batch": 0, "utc": "", "doc": ""}
# limits and anomaly checks (issue 15, firmware/payments/alerts.py): one row a hit and
# one a supervisor's override or the cashier's step back, for the Anomalies report.
# kind: limit | anomaly; rule: the limit's or rule's name (docs/limits.md); outcome:
# asked (a supervisor is asked) | declined (by configuration) | override | cancelled
ALERT_FIELDS = {
    "id": 0, "utc": "", "tz_min": 0, "kind": "", "rule": "", "operator": "",
    "supervisor": "", "amount": 0, "currency": "", "outcome": "", "detail": "",
}
ALERT_OUTCOMES = ("asked", "declined", "override", "cancelled")


class ShiftError(Exception):
    """A shift write refused: what is "open" (the operator has an open shift already),
    "closed" (the shift is not open), "kind" or "amount" (a cash move that is no pay in
    or pay out, or not a positive whole amount)."""

    def __init__(self, what, detail=""):
        super().__init__("%s %s" % (what, detail))
        self.what = what
        self.detail = detail


class ZExists(Exception):
    """save_z of a batch that has its Z report already: one Z a batch. The journal
    keeps the first (read it with z_reports(batch=); one that fails its check is not
    returned there, but still holds the batch's place)."""

    def __init__(self, batch):
        super().__init__("batch %s has its Z report already: one Z a batch; print the "
                         "stored one again (Reports > Last Z)" % (batch,))
        self.batch = batch


def matches(rec, state=None, batch=None, kind=None, states=None, kinds=None, amount=None,
            currency=None, last4=None, stan=None, utc_from=None, utc_to=None,
            below_id=None, operator=None, pan_masked=None):
    """Whether a record meets every criterion given (None: any): state, batch, kind,
    amount, currency, last4, operator and pan_masked equal; states and kinds hold its state and kind; stan is
    its own STAN or its reversal's (rev_stan); utc_from <= utc < utc_to, compared as
    text (the stamps sort as they read); below_id: its number is lower. The SQLite
    journal asks its indexes the same (drivers/journal_sqlite.py)."""
    if state is not None and rec["state"] != state:
        return False
    if batch is not None and rec["batch"] != batch:
        return False
    if kind is not None and rec["kind"] != kind:
        return False
    if states is not None and rec["state"] not in states:
        return False
    if kinds is not None and rec["kind"] not in kinds:
        return False
    if amount is not None and rec["amount"] != amount:
        return False
    if currency is not None and rec["currency"] != currency:
        return False
    if last4 is not None and rec["last4"] != last4:
        return False
    if stan is not None and rec["stan"] != stan and rec["rev_stan"] != stan:
        return False
    if utc_from is not None and rec["utc"] < utc_from:
        return False
    if utc_to is not None and rec["utc"] >= utc_to:
        return False
    if below_id is not None and rec["id"] >= below_id:
        return False
    if operator is not None and rec["operator"] != operator:
        return False
    if pan_masked is not None and rec["pan_masked"] != pan_masked:
        return False
    return True


def totals_of(records):
    """(count, amount) of records: what totals() answers."""
    n = 0
    total = 0
    for rec in records:
        n += 1
        total += rec["amount"]
    return n, total


def check_alert(row):
    """An alert row with every field, or ValueError naming the field that is wrong."""
    out = dict(ALERT_FIELDS)
    for k in row:
        if k not in ALERT_FIELDS:
            raise KeyError("alerts have no field %r" % k)
    out.update(row)
    if out["kind"] not in ("limit", "anomaly"):
        raise ValueError("alert kind %r: limit or anomaly" % (out["kind"],))
    if out["outcome"] not in ALERT_OUTCOMES:
        raise ValueError("alert outcome %r: one of %s" % (out["outcome"], ", ".join(ALERT_OUTCOMES)))
    if isinstance(out["amount"], bool) or not isinstance(out["amount"], int):
        raise ValueError("alert amount %r: a whole number of minor units" % (out["amount"],))
    return out


def check_move(kind, amount):
    """A cash move's kind and amount, or ShiftError."""
    if kind not in MOVE_KINDS:
        raise ShiftError("kind", kind)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ShiftError("amount", repr(amount))


def record(**values):
    rec = dict(FIELDS)
    for k in values:
        if k not in FIELDS:
            raise KeyError("journal has no field %r" % k)
    rec.update(values)
    return rec


class MemoryJournal:
    def __init__(self):
        self._rows = {}
        self._next = 1
        self.counters = {"stan": 0, "batch": 1}
        self._shifts = {}
        self._moves = {}
        self._z = {}
        self._alerts = {}
        self._next_shift = self._next_move = self._next_z = self._next_alert = 1

    def add(self, rec):
        rec = dict(rec)
        rec["id"] = self._next
        self._next += 1
        self._rows[rec["id"]] = rec
        return rec["id"]

    def damaged(self):
        """[(id, utc, what)] of records that failed their check: none in memory."""
        return []

    def update(self, txn_id, **fields):
        for k in fields:
            if k not in FIELDS:
                raise KeyError("journal has no field %r" % k)
        self._rows[txn_id].update(fields)

    def get(self, txn_id):
        rec = self._rows.get(txn_id)
        return dict(rec) if rec else None

    def find(self, state=None, batch=None, kind=None, **criteria):
        """Every matching record (newest()'s criteria), oldest first."""
        out = []
        for txn_id in sorted(self._rows):
            rec = self._rows[txn_id]
            if matches(rec, state, batch, kind, **criteria):
                out.append(dict(rec))
        return out

    def newest(self, state=None, batch=None, kind=None, states=None, kinds=None, amount=None,
               currency=None, last4=None, stan=None, utc_from=None, utc_to=None,
               below_id=None, operator=None, pan_masked=None):
        """The records that match (see matches()), newest first, one at a time."""
        for txn_id in sorted(self._rows, reverse=True):
            rec = self._rows.get(txn_id)
            if rec is not None and matches(rec, state, batch, kind, states, kinds, amount,
                                           currency, last4, stan, utc_from, utc_to, below_id,
                                           operator, pan_masked):
                yield dict(rec)

    def totals(self, **criteria):
        """(count, amount) of the matching records (newest()'s criteria): a day's
        sales of an operator for the limits (firmware/payments/limits.py)."""
        return totals_of(self.newest(**criteria))

    def latest(self, n=1, **criteria):
        """Up to n newest matching records, newest first."""
        out = []
        if n <= 0:
            return out
        for rec in self.newest(**criteria):
            out.append(rec)
            if len(out) >= n:
                break
        return out

    def last(self, **criteria):
        rows = self.latest(1, **criteria)
        return rows[0] if rows else None

    def next_counter(self, name, limit):
        """Increment a counter durably and return it (STAN wraps 999999 -> 1)."""
        value = self.counters.get(name, 0) + 1
        if value > limit:
            value = 1
        self.counters[name] = value
        return value

    def counter(self, name):
        return self.counters.get(name, 0)

    def txns_after(self, after_id, until_id=0, operator=None):
        """The records with an id above after_id (and at most until_id unless 0), of
        operator when given, oldest first: a shift's window of the journal."""
        out = []
        for txn_id in sorted(self._rows):
            if txn_id <= after_id or (until_id and txn_id > until_id):
                continue
            rec = self._rows[txn_id]
            if operator is not None and rec["operator"] != operator:
                continue
            out.append(dict(rec))
        return out

    def _last_txn(self):
        return self._next - 1

    # -- shifts and cash (issue 14) ------------------------------------------------
    def shift_open(self, operator, float_cents, utc, tz_min, batch, currency=""):
        """A new open shift of operator with its counted float; its id. ShiftError
        "open" when operator has one open already."""
        if isinstance(float_cents, bool) or not isinstance(float_cents, int) or float_cents < 0:
            raise ShiftError("amount", repr(float_cents))
        if self.shift_current(operator) is not None:
            raise ShiftError("open", operator)
        row = dict(SHIFT_FIELDS)
        row.update(id=self._next_shift, operator=operator, opened_utc=utc, tz_min=tz_min,
                   batch=batch, state="open", currency=currency, txn_after=self._last_txn())
        row["float"] = float_cents
        self._next_shift += 1
        self._shifts[row["id"]] = row
        return row["id"]

    def shift_current(self, operator):
        """operator's open shift, or None."""
        found = None
        for shift_id in sorted(self._shifts):
            row = self._shifts[shift_id]
            if row["operator"] == operator and row["state"] == "open":
                found = row
        return dict(found) if found is not None else None

    def shift_get(self, shift_id):
        row = self._shifts.get(shift_id)
        return dict(row) if row else None

    def shifts(self, batch=None, operator=None, state=None):
        """The shifts, oldest first: of one batch (the batch open when each began),
        of one operator, in one state, as given."""
        out = []
        for shift_id in sorted(self._shifts):
            row = self._shifts[shift_id]
            if batch is not None and row["batch"] != batch:
                continue
            if operator is not None and row["operator"] != operator:
                continue
            if state is not None and row["state"] != state:
                continue
            out.append(dict(row))
        return out

    def shift_close(self, shift_id, counted, expected, denominations_json, utc):
        """Close an open shift with the cash counted and expected; the closed row.
        KeyError when there is no such shift, ShiftError "closed" when it is not open."""
        row = self._shifts.get(shift_id)
        if row is None:
            raise KeyError("no shift %r" % shift_id)
        if row["state"] != "open":
            raise ShiftError("closed", "shift %d" % shift_id)
        row.update(state="closed", closed_utc=utc, counted=counted, expected=expected,
                   difference=counted - expected, denominations=denominations_json or "",
                   txn_until=self._last_txn())
        return dict(row)

    def cash_move(self, shift_id, kind, amount, reason, operator, supervisor, utc):
        """A pay in or pay out of an open shift; its id."""
        check_move(kind, amount)
        row = self._shifts.get(shift_id)
        if row is None:
            raise KeyError("no shift %r" % shift_id)
        if row["state"] != "open":
            raise ShiftError("closed", "shift %d" % shift_id)
        move = dict(CASH_MOVE_FIELDS)
        move.update(id=self._next_move, shift_id=shift_id, kind=kind, amount=amount,
                    reason=reason, operator=operator, supervisor=supervisor, utc=utc)
        self._next_move += 1
        self._moves[move["id"]] = move
        return move["id"]

    def cash_moves(self, shift_id=None, batch=None):
        """Pay ins and outs, oldest first: of one shift, or of the shifts of one batch."""
        shifts = None
        if batch is not None:
            shifts = [row["id"] for row in self.shifts(batch=batch)]
        out = []
        for move_id in sorted(self._moves):
            move = self._moves[move_id]
            if shift_id is not None and move["shift_id"] != shift_id:
                continue
            if shifts is not None and move["shift_id"] not in shifts:
                continue
            out.append(dict(move))
        return out

    # -- Z reports (storage only; firmware/reports/ builds them) -------------------
    def save_z(self, batch, utc, doc_text):
        """Keep a batch's Z report; its id. ZExists when the batch has one already."""
        for z_id in self._z:
            if self._z[z_id]["batch"] == batch:
                raise ZExists(batch)
        row = {"id": self._next_z, "batch": batch, "utc": utc, "doc": doc_text}
        self._next_z += 1
        self._z[row["id"]] = row
        return row["id"]

    def z_reports(self, batch=None):
        return [dict(self._z[i]) for i in sorted(self._z)
                if batch is None or self._z[i]["batch"] == batch]

    def last_z(self):
        if not self._z:
            return None
        return dict(self._z[max(self._z)])

    # -- limit and anomaly hits (issue 15; firmware/payments/alerts.py) ------------
    def alert_add(self, row):
        """Keep a hit or its outcome (ALERT_FIELDS); its id."""
        row = check_alert(row)
        row["id"] = self._next_alert
        self._next_alert += 1
        self._alerts[row["id"]] = row
        return row["id"]

    def alerts(self, n=50, below_id=None):
        """Up to n rows, newest first, below id below_id when given."""
        out = []
        for alert_id in sorted(self._alerts, reverse=True):
            if below_id is not None and alert_id >= below_id:
                continue
            out.append(dict(self._alerts[alert_id]))
            if len(out) >= n:
                break
        return out

    def close(self):
        pass
