"""Refunds and voids of QR payments (issue 13 item 3), through the QR acquirer with the
supervisor rules of card refunds (the flows ask the supervisor; firmware/flows/void.py).

  * A refund (whole or part of what is left of the sale) is the acquirer's `refund`,
    its out_refund_no the refund record's own order number: the acquirer does a refund
    once whatever number of times it is asked, so an unknown answer is resolved by
    asking again, never by a second refund.
  * A void (a sale of the open batch cancelled) is the acquirer's `cancel` of the sale's
    order: paid, it is given back whole.
  * Each record is durable ("sending") before its request leaves. An answer that cannot
    be believed (no answer, bad sign, an error page) is asked again, RETRY_MS apart, for
    as long as it takes, across restarts (recover()); the flow is told after the first
    tries that the terminal finishes it on its own ("sending" on its receipt).
"""
from firmware.payments.qr import out_trade_no

RETRY_MS = (2000, 5000, 15000, 30000, 60000)
TELL_AFTER = 2              # tries before the flow hears "still going"
REFUSALS = {"REFUND_EXCEED": "qr_refund_exceed", "ORDERNOTPAID": "qr_refund_not_paid"}


class _Job:
    def __init__(self, rec_id, op, callback):
        self.rec_id = rec_id
        self.op = op                # "refund" | "cancel"
        self.callback = callback
        self.tries = 0
        self.timer = None


class QrRefunds:
    def __init__(self, qr):
        self.qr = qr                # firmware/payments/qr.py QrPayments: link, messages
        self.term = qr.term
        self.payments = qr.payments
        self.jobs = {}

    # -- what a flow asks -------------------------------------------------------------
    def refund(self, original, amount, callback):
        """Give amount of original back; callback(record) once known (or still going)."""
        rec = self._record("refund", original, amount)
        job = _Job(rec["id"], "refund", callback)
        self.jobs[rec["id"]] = job
        self._send(job)
        return rec

    def void(self, original, supervisor, callback):
        rec = self._record("void", original, original["amount"])
        self.term.store.audit("void", supervisor["id"], "#%d of #%d (QR)" % (rec["id"], original["id"]))
        job = _Job(rec["id"], "cancel", callback)
        self.jobs[rec["id"]] = job
        self._send(job)
        return rec

    def _record(self, kind, original, amount):
        return self.payments._new(kind, "qr", amount, "sending", original_id=original["id"],
                                  pan_masked=original["pan_masked"], last4=original["last4"],
                                  card_label=original["card_label"], entry="qr")

    # -- the acquirer -------------------------------------------------------------------
    def _send(self, job):
        job.timer = None
        rec = self.payments.journal.get(job.rec_id)
        sale = out_trade_no(self.qr.tid, rec["original_id"])
        if job.op == "refund":
            body = self.qr.msg.refund(sale, out_trade_no(self.qr.tid, rec["id"]), rec["amount"])
        else:
            body = self.qr.msg.cancel(sale)
        self.qr.link.request(job.op, body, self.qr.request_ms,
                             lambda result: self._answer(job, body, result))

    def _answer(self, job, request, result):
        reply = None
        if result.get("kind") == "response" and result.get("status") == 200:
            reply = result.get("json")
            if reply is not None and self.qr.msg.check_response(request, reply) is not None:
                reply = None
        if reply is not None:
            if job.op == "refund":
                if reply.get("code") == "SUCCESS" and reply.get("result") == "SUCCESS":
                    return self._done(job, "approved", rrn=str(reply.get("refund_id") or ""))
                if reply.get("code") == "SUCCESS" and reply.get("result") == "FAIL":
                    err = reply.get("err_code") or ""
                    return self._done(job, "declined", rc=err[:16],
                                      reason=REFUSALS.get(err, "qr_declined"))
            else:
                if reply.get("code") == "SUCCESS" and reply.get("result") == "SUCCESS":
                    return self._done(job, "approved")
                if reply.get("code") == "ORDER_NOT_FOUND":
                    # the acquirer never had the sale: nothing to give back
                    return self._done(job, "approved")
        if result.get("kind") == "error" and not result.get("sent") and job.tries == 0 \
                and job.op == "refund":
            # the first refund request never left: nothing can have been refunded
            return self._done(job, "failed", reason="reason_qr_down")
        delay = RETRY_MS[min(job.tries, len(RETRY_MS) - 1)]
        job.tries += 1
        job.timer = self.term.reactor.call_later(delay, self._send, job)
        if job.tries == TELL_AFTER and job.callback is not None:
            callback, job.callback = job.callback, None
            callback(self.payments.journal.get(job.rec_id))     # still "sending"

    def _done(self, job, state, **fields):
        self.jobs.pop(job.rec_id, None)
        journal = self.payments.journal
        fields["state"] = state
        journal.update(job.rec_id, **fields)
        rec = journal.get(job.rec_id)
        if state == "approved":
            original = journal.get(rec["original_id"])
            from firmware.retail import loyalty
            if rec["kind"] == "refund":
                journal.update(original["id"], refunded=original["refunded"] + rec["amount"])
                loyalty.refund(self.term, rec)      # once: refund_lines may have done it
            else:
                journal.update(original["id"], state="voided")
                from firmware.retail import stock
                stock.give_back(self.term, journal.get(original["id"]))
                loyalty.void(self.term, journal.get(original["id"]))
        self.term.store.audit("qr_%s_%s" % (rec["kind"], state), rec["operator"],
                              "#%d of #%d %s" % (rec["id"], rec["original_id"],
                                                 fields.get("rc") or ""))
        if job.callback is not None:
            callback, job.callback = job.callback, None
            callback(journal.get(job.rec_id))
        return None

    # -- after a restart -------------------------------------------------------------------
    def recover(self):
        """Refunds and voids of QR payments a crash left "sending": asked again."""
        n = 0
        for rec in self.payments.journal.find(state="sending"):
            if rec["method"] != "qr" or rec["kind"] not in ("refund", "void") \
                    or rec["id"] in self.jobs:
                continue
            job = _Job(rec["id"], "refund" if rec["kind"] == "refund" else "cancel", None)
            job.tries = 1               # asked before the crash: never "not sent"
            self.jobs[rec["id"]] = job
            self._send(job)
            n += 1
        return n
