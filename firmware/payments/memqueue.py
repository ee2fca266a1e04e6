"""An in-memory store-and-forward queue with drivers/saf_queue.SafQueue's methods.

For boards without durable storage (and the portable tests): reversals still go out,
but nothing survives a restart, so the payments service never approves offline on it
(durable = False).
"""
KINDS = ("reversal", "advice")


class MemoryQueue:
    durable = False

    def __init__(self, tid="", clock=None):
        self.tid = tid
        self.clock = clock
        self._rows = {}
        self._payloads = {}
        self._next = 1

    def add(self, kind, stan, amount, currency, payload, created_utc=None):
        if kind not in KINDS:
            raise ValueError("queue: kind must be one of %s" % (KINDS,))
        rec_id = self._next
        self._next += 1
        self._rows[rec_id] = {"id": rec_id, "kind": kind, "state": "pending", "amount": amount,
                              "currency": currency, "stan": str(stan), "tid": self.tid,
                              "created_utc": created_utc or "", "attempts": 0,
                              "last_error": "", "rc": "", "closed_by": "", "closed_utc": ""}
        self._payloads[rec_id] = payload
        return rec_id

    def _set(self, rec_id, states, **fields):
        rec = self._rows[rec_id]
        if states and rec["state"] not in states:
            raise ValueError("queue record %d is %s" % (rec_id, rec["state"]))
        rec.update(fields)

    def mark_sent(self, rec_id):
        self._set(rec_id, ("pending", "sent"), state="sent",
                  attempts=self._rows[rec_id]["attempts"] + 1)

    def mark_sent_many(self, ids):
        for rec_id in ids:
            self.mark_sent(rec_id)

    def ack_many(self, ids):
        for rec_id in ids:
            if self._rows[rec_id]["state"] in ("pending", "sent"):
                self.ack(rec_id)

    def note_error(self, rec_id, error):
        self._set(rec_id, None, last_error=str(error))

    def ack(self, rec_id):
        self._set(rec_id, ("pending", "sent"), state="acked")
        self._payloads.pop(rec_id, None)

    def declined(self, rec_id, rc):
        self._set(rec_id, ("pending", "sent"), state="declined_after_upload", rc=str(rc))

    def cancel(self, rec_id, why, operator=""):
        self._set(rec_id, ("pending",), state="cancelled", last_error=str(why),
                  closed_by=operator or "terminal")
        self._payloads.pop(rec_id, None)

    def acknowledge_by_supervisor(self, rec_id, operator):
        self._set(rec_id, ("declined_after_upload", "corrupt"), closed_by=str(operator))

    def get(self, rec_id):
        rec = self._rows.get(rec_id)
        return dict(rec) if rec else None

    def find(self, kind, stan, tid=None):
        tid = self.tid if tid is None else tid
        found = [r for r in self._rows.values()
                 if r["kind"] == kind and r["stan"] == str(stan) and r["tid"] == tid]
        return dict(found[-1]) if found else None

    def pending(self, limit=None):
        rows = [r for r in self._rows.values() if r["state"] in ("pending", "sent")]
        rows.sort(key=lambda r: (0 if r["kind"] == "reversal" else 1, r["created_utc"], r["id"]))
        return [dict(r) for r in rows[:limit]]

    def outstanding(self):
        return [dict(r) for r in self._rows.values() if r["state"] in ("pending", "sent") or
                (r["state"] in ("declined_after_upload", "corrupt") and not r["closed_by"])]

    def records(self):
        return [dict(self._rows[k]) for k in sorted(self._rows)]

    def load(self, rec_id):
        return self._payloads[rec_id]

    def totals(self, kind=None):
        out = {}
        for r in self._rows.values():
            if r["state"] in ("pending", "sent") and kind in (None, r["kind"]):
                n, a = out.get(r["currency"], (0, 0))
                out[r["currency"]] = (n + 1, a + r["amount"])
        return out

    def oldest_age_s(self, now=None):
        return None
