"""The forwarder: uploads the store-and-forward queue inside the event loop.

Nothing here blocks or polls. It wakes when something is queued, when the host
answers anything, on "Upload now", and on its own backoff timer, and sleeps when the
queue is empty.

  - It starts only after an echo (0800 301) succeeds: no advice is thrown at a link
    that is known to be down.
  - Reversals first (0420, repeats 0421): while one waits, no advice goes; then
    advices (0220, repeats 0221), oldest first.
  - A window of several messages outstanding at once, matched to their answers by
    STAN and MTI (drivers/hostlink.py), not one at a time.
  - A record is marked sent (durably) before it goes: after a crash or a lost answer
    it goes again as a repeat, which the host answers without booking twice.
  - Failures back off exponentially with jitter; a success resets the backoff.
  - Never in the way of a payment: while a flow holding uploads is on the screen
    (a sale or refund being taken), nothing new is sent; what is out finishes.

The queue is drivers/saf_queue.SafQueue (or anything with its methods); each record's
payload is {"msg": the request's fields, "journal_id": n, "purpose": ...}.
"""
from firmware import hostmsg

WINDOW = 4
# a failed try costs one small echo: capped at a minute, so a link that comes back is
# found within a minute ("Upload now" tries at once)
BACKOFF_MS = (2000, 4000, 8000, 16000, 30000, 60000)
HOLD_RETRY_MS = 3000
APPROVE_CODES = ("00", "10", "11")


class Forwarder:
    def __init__(self, term, payments, queue, host, window=WINDOW):
        self.term = term
        self.payments = payments
        self.queue = queue
        self.host = host
        self.window = window
        self.inflight = {}          # queue id -> STAN on the wire
        self.failures = 0
        self.verified = False       # an echo or any host answer since the last failure
        self.echoing = False
        self.timer = None
        self.state = "idle"         # idle | echo | sending | backoff | held | no_host
        self.last_error = ""
        self.uploaded = 0           # acknowledged since "Upload now" (or start)
        self.declined = 0
        self.on_change = None       # callback() when progress changes (screens)

    # -- waking -----------------------------------------------------------------
    def kick(self, delay_ms=0):
        """Look at the queue (now, or after delay_ms unless something sooner is set)."""
        if self.host is None or self.queue is None:
            self.state = "no_host"
            return
        if self.echoing:
            return                  # its answer wakes the forwarder
        if self.timer is not None:
            if delay_ms:
                return
            self.timer.cancel()
        self.timer = self.term.reactor.call_later(delay_ms, self._run)

    def link_ok(self):
        """The host just answered something: the link works."""
        if not self.verified:
            self.verified = True
            self.failures = 0
            self.kick()

    def link_failed(self):
        """A payment could not reach the host: the next upload starts with an echo."""
        self.verified = False

    def upload_now(self):
        """A person asked: try at once, whatever the backoff said."""
        self.failures = 0
        self.uploaded = 0
        self.declined = 0
        self.last_error = ""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.kick()

    def _changed(self):
        if self.on_change is not None:
            self.on_change()

    # -- the work ---------------------------------------------------------------
    def _run(self):
        self.timer = None
        if self.term.uploads_held():
            self.state = "held"
            self.kick(HOLD_RETRY_MS)
            return
        try:
            pending = self.queue.pending()
        except Exception as exc:            # the SD card: try again later
            return self._failed(None, "queue: %s" % exc)
        if not pending:
            self.state = "idle"
            self.failures = 0
            self._changed()
            return
        if not self.verified:
            self._echo()
            return
        self.state = "sending"
        reversals_waiting = False
        for rec in pending:
            if len(self.inflight) >= self.window:
                break
            if rec["kind"] == "reversal":
                reversals_waiting = True
            elif reversals_waiting:
                break                       # reversals first
            if rec["id"] in self.inflight:
                continue
            if not self._send(rec):
                break
        self._changed()

    def _echo(self):
        if self.echoing:
            return
        self.state = "echo"
        self.echoing = True
        self._changed()
        if not self.payments.sign_on("301", self._echoed):
            self.echoing = False

    def _echoed(self, ok):
        self.echoing = False
        if ok:
            self.verified = True
            self.failures = 0
            self.kick()
        else:
            self._failed(None, "echo")

    def _send(self, rec):
        rec_id = rec["id"]
        try:
            payload = self.queue.load(rec_id)
        except Exception as exc:
            if getattr(exc, "corrupt", False):
                self.payments.queue_alert("corrupt", rec)
                return True                 # flagged; the rest can still go
            self._failed(None, str(exc))
            return False
        msg = dict(payload["msg"])
        if rec["attempts"] or rec["state"] == "sent":
            msg["t"] = hostmsg.repeat_mti(msg["t"])
        try:
            self.queue.mark_sent(rec_id)    # on disk before it is on the wire
        except Exception as exc:
            self._failed(None, str(exc))
            return False
        self.inflight[rec_id] = msg["11"]
        check = {}
        for k in ("t", "11", "41", "4"):
            if k in msg:
                check[k] = msg[k]
        timeout = self.term.config["host"]["response_timeout_s"] * 1000
        self.host.request(msg, timeout,
                          lambda result: self._answer(rec, payload, check, result))
        msg = None
        return True

    def _answer(self, rec, payload, check, result):
        rec_id = rec["id"]
        self.inflight.pop(rec_id, None)
        problem = None
        if result["kind"] == "response":
            problem = hostmsg.check_response(check, result["msg"])
        else:
            problem = result.get("reason") or result["kind"]
        if problem:
            try:
                self.queue.note_error(rec_id, problem)
            except Exception:
                pass
            if rec["kind"] == "reversal":
                self.payments.reversal_failed(rec, payload)
            self._failed(rec, problem)
            return
        resp = result["msg"]
        rc = resp.get("39", "")
        try:
            if rec["kind"] == "reversal" or rc in APPROVE_CODES:
                self.queue.ack(rec_id)
                self.uploaded += 1
                self.payments.forwarded(rec, payload, resp)
            else:
                self.queue.declined(rec_id, rc)
                self.declined += 1
                self.payments.declined_after_upload(rec, payload, rc)
        except Exception as exc:
            # the answer could not be written down: the record goes again as a
            # repeat, which the host answers without booking it twice
            self._failed(rec, "queue: %s" % exc)
            return
        self.verified = True
        self.failures = 0
        self.kick()

    def _failed(self, rec, why):
        self.last_error = why
        self.verified = False
        self.failures += 1
        base = BACKOFF_MS[min(self.failures - 1, len(BACKOFF_MS) - 1)]
        # jitter: 50-150 % of the step, so a fleet of terminals coming back after a
        # host outage does not knock at the same moment
        r = self.term.system.random_bytes(1)[0]
        delay = base // 2 + base * r // 255
        self.state = "backoff"
        self.kick(delay)
        self._changed()

    # -- what screens show ------------------------------------------------------
    def progress(self):
        """{"pending", "inflight", "uploaded", "declined", "state", "error"}."""
        try:
            pending = len(self.queue.pending()) if self.queue is not None else 0
        except Exception:
            pending = 0
        return {"pending": pending, "inflight": len(self.inflight), "uploaded": self.uploaded,
                "declined": self.declined, "state": self.state, "error": self.last_error}
