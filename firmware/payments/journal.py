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

This module holds the record shape and an in-memory journal (for boards without
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
    # store and forward: approved without the host; "" | pending | uploaded | declined
    "offline": 0, "upload": "",
    # selling items: the cart the sale paid for (JSON of firmware.retail.cart.Cart's
    # to_dict(), the receipt is itemised from it) and whether its stock was taken
    "cart": "", "stocked": 0,
}


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

    def find(self, state=None, batch=None, kind=None):
        out = []
        for txn_id in sorted(self._rows):
            rec = self._rows[txn_id]
            if state is not None and rec["state"] != state:
                continue
            if batch is not None and rec["batch"] != batch:
                continue
            if kind is not None and rec["kind"] != kind:
                continue
            out.append(dict(rec))
        return out

    def last(self, **criteria):
        rows = self.find(**criteria)
        return rows[-1] if rows else None

    def next_counter(self, name, limit):
        """Increment a counter durably and return it (STAN wraps 999999 -> 1)."""
        value = self.counters.get(name, 0) + 1
        if value > limit:
            value = 1
        self.counters[name] = value
        return value

    def counter(self, name):
        return self.counters.get(name, 0)

    def close(self):
        pass
