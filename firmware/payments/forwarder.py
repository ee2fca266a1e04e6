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
  - No record goes again before its own backoff (2 s, 4 s, ... a minute after its
    last send), whatever the queue says its state is: a record the host answered
    that is still listed as to send (a damaged row whose updates miss it) is sent
    again at that pace, not in a loop, and is named in the audit log.
  - Never in the way of a payment: while a flow holding uploads is on the screen
    (a sale or refund being taken), nothing new is sent; what is out finishes.

The queue is drivers/saf_queue.SafQueue (or anything with its methods); each record's
payload is {"msg": the request's fields, "journal_id": n, "purpose": ...}.
"""
from firmware.core.store import is_fault
from firmware.payments import hostmsg

WINDOW = 8
# a failed try costs one small echo: capped at a minute, so a link that comes back is
# found within a minute ("Upload now" tries at once)
BACKOFF_MS = (2000, 4000, 8000, 16000, 30000, 60000)
HOLD_RETRY_MS = 3000
BATCH = 64                  # pending records read from the queue at a time
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
        self._acks = {}             # queue id -> (record, payload, reply) to write down
        self._cache = None          # the next pending records, in order
        self._flush_timer = None
        self.declined = 0
        self.on_change = None       # callback() when progress changes (screens)
        # queue id -> [sends, not before (reactor ms), answered, STAN]: the record's own
        # backoff, kept while it is listed as to send (the STAN tells a record from a
        # later one that got the same id: a queue rebuilt, an id reused)
        self._resent = {}

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

    def queued(self):
        """Something new is in the queue (a reversal may need to jump ahead)."""
        self._cache = None
        self.kick()

    def _done_with(self, ids):
        if self._cache:
            self._cache = [r for r in self._cache if r["id"] not in ids]

    def link_failed(self):
        """A payment could not reach the host: the next upload starts with an echo."""
        self.verified = False

    def upload_now(self):
        """A person asked: try at once, whatever the backoff said."""
        self.failures = 0
        for entry in self._resent.values():
            entry[1] = 0
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
        free = self.window - len(self.inflight)
        try:
            # the next records in order, read a batch at a time (not a sort of the
            # whole queue per message); dropped when something new is queued or a
            # try fails, so new reversals still go first and repeats go as repeats
            if not self._cache:
                self._cache = self.queue.pending(limit=BATCH)
                self._forget_gone(self._cache)
            pending = self._cache
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
        batch = []
        reversals_waiting = False
        now = self.term.reactor.clock()
        wait = None                         # ms until the first record held back may go
        for rec in pending:
            if len(batch) >= free:
                break
            if rec["kind"] == "reversal":
                reversals_waiting = True
            elif reversals_waiting:
                break                       # reversals first
            if rec["id"] in self.inflight or rec["id"] in self._acks:
                continue
            entry = self._backoff(rec)
            if entry is not None and entry[1] > now:
                wait = entry[1] - now if wait is None else min(wait, entry[1] - now)
                continue
            batch.append(rec)
        if batch:
            self._send(batch)
        elif wait is not None and not self.inflight:
            self.state = "backoff"
            self.kick(max(1, wait))
        self._changed()

    def _forget_gone(self, pending):
        """Drop the backoff of records no longer listed (their time is past)."""
        listed = set(r["id"] for r in pending)
        now = self.term.reactor.clock()
        for rec_id in list(self._resent):
            if rec_id not in listed and self._resent[rec_id][1] <= now:
                del self._resent[rec_id]

    def _backoff(self, rec):
        """The record's backoff entry, or None (an entry of another record is dropped)."""
        entry = self._resent.get(rec["id"])
        if entry is not None and entry[3] != rec.get("stan"):
            del self._resent[rec["id"]]
            entry = None
        return entry

    def _note_sent(self, rec):
        entry = self._backoff(rec)
        if entry is None:
            entry = self._resent[rec["id"]] = [0, 0, False, rec.get("stan")]
        elif entry[2]:
            # answered and acknowledged, yet listed as to send again: the queue's
            # row did not take the update (a damaged record)
            entry[2] = False
            try:
                self.term.store.audit("queue_stuck", "", "record %d STAN %s: answered, still "
                                      "listed as %s" % (rec["id"], rec["stan"], rec["state"]))
            except Exception:
                pass
        entry[0] += 1
        step = BACKOFF_MS[min(entry[0] - 1, len(BACKOFF_MS) - 1)]
        entry[1] = self.term.reactor.clock() + step

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

    def _send(self, batch):
        ready = []
        for rec in batch:
            try:
                ready.append((rec, self.queue.load(rec["id"])))
            except Exception as exc:
                if getattr(exc, "corrupt", False):
                    self.payments.queue_alert("corrupt", rec)      # flagged; the rest go
                    continue
                return self._failed(None, str(exc))
        if not ready:
            return None
        try:
            # on disk before they are on the wire: after a crash they go as repeats
            self.queue.mark_sent_many([rec["id"] for rec, _ in ready])
        except Exception as exc:
            return self._failed(None, str(exc))
        timeout = self.term.config["host"]["response_timeout_s"] * 1000
        utc = self.term.system.utc_time()
        for rec, payload in ready:
            # a record queued by an older release goes in this release's wire; a
            # reversal's DE7 is the time of this sending
            payload = hostmsg.upgrade_payload(payload)[0]
            msg = hostmsg.transmission(payload["msg"], rec["attempts"] or rec["state"] == "sent",
                                       utc)
            self.inflight[rec["id"]] = msg["11"]
            self._note_sent(rec)
            check = {}
            for k in ("t", "11", "41", "4"):
                if k in msg:
                    check[k] = msg[k]
            self.host.request(msg, timeout, self._answerer(rec, payload, check))
            msg = None
        return None

    def _answerer(self, rec, payload, check):
        return lambda result: self._answer(rec, payload, check, result)

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
        if rec["kind"] == "reversal" or rc in APPROVE_CODES:
            # acknowledged together once this pass of the loop is over
            self._acks[rec_id] = (rec, payload, resp)
            if self._flush_timer is None:
                self._flush_timer = self.term.reactor.call_later(0, self._flush)
            return
        # the journal first: a crash before the queue is written only makes the host
        # see a repeat (answered the same, booked once); the other way round would
        # leave the journal saying "pending" for an upload that is done
        try:
            self.payments.declined_after_upload(rec, payload, rc)
        except Exception as exc:
            if not is_fault(exc):
                raise
            self._failed(rec, "journal: %s" % exc)    # sent again later, as a repeat
            return
        try:
            self.queue.declined(rec_id, rc)
        except Exception as exc:
            self._failed(rec, "queue: %s" % exc)
            return
        self.declined += 1
        self._done_with((rec_id,))
        self._succeeded()

    def _flush(self):
        self._flush_timer = None
        acks, self._acks = self._acks, {}
        # the journal first (see _answer), then the queue in one transaction: only
        # what the journal took is acknowledged; the rest goes again as repeats
        written = []
        problem = None
        for rec_id, (rec, payload, resp) in acks.items():
            try:
                self.payments.forwarded(rec, payload, resp)
            except Exception as exc:
                if not is_fault(exc):
                    raise
                problem = "journal: %s" % exc
                break
            written.append(rec_id)
        acks = dict((rec_id, acks[rec_id]) for rec_id in written)
        try:
            self.queue.ack_many(list(acks))
        except Exception as exc:
            # not written down: they go again as repeats, which the host answers
            # without booking twice
            self._failed(None, "queue: %s" % exc)
            return
        self.uploaded += len(acks)
        for rec_id in acks:
            if rec_id in self._resent:
                self._resent[rec_id][2] = True
        self._done_with(acks)
        if problem is not None:
            self._failed(None, problem)          # the SD card: try again later
            return
        self._succeeded()

    def _succeeded(self):
        self.verified = True
        self.failures = 0
        self.kick()

    def _failed(self, rec, why):
        self._cache = None
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
