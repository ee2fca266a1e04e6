"""Settlement with the acquirer host (docs/host-protocol.md section 10; issue 14 item 3).

The batch's card totals go to the host in a 0500: DE3 920000, DE60 the batch number,
DE63 the totals. 0510 00: in balance, the host has closed the batch. 0510 95: out of
balance: every counted transaction of the batch goes up as a 0320 (WINDOW of them in
flight at a time, each matched to its 0330 by STAN, so answers in any order are fine),
then a 0500 with DE3 960000 closes the batch on what was uploaded. Any other answer,
no answer, a broken link: the batch stays open and the settlement may be started again
from the top. The host's checks make a repeat harmless: a 0320 names its original
(DE60: MTI, STAN, DE7), which the host books at most once; a 0500 for the batch the
host closed last agrees with what that closing took (the terminal lost the 0510).

What is durable, and where:

  - the journal's counter "settled" (MACed like the STAN and batch counters): the
    number of the last batch the host closed (a terminal without a host: that it
    closed). It is stepped to the batch's number as
    soon as a closing 0510 00 arrives, before anything else. Then the Z is made (once:
    make_z stores one per batch), then the batch counter moves on by one. A restart
    that finds settled == batch finishes that close without asking the host again,
    and a settlement started twice closes the batch once.
  - the store's setting "settle.state" (JSON): which batch is being settled and how
    far it got ("totals", "upload", "closing"), or why the last try failed: what the
    idle screen says until the batch closes.

What counts (DE63 and the 0320s): the batch's card payments in state "approved" of
kind sale or refund: online approvals and offline ones (an offline approval only once
the host has its advice: the offline queue is uploaded first). Voided sales (state
"voided"), reversed, declined and failed records are out, a void record is no payment
of its own, and cash and QR payments never count: they are not this acquirer's.

Before the host hears anything: no payment of the batch may be unfinished (created,
sending, offline_pending), the offline queue must upload to empty (the forwarder's
Upload now; if the host refuses or cannot be reached, the settlement stops and says
why), and no reversal may wait. A terminal without a host (cash and QR only) closes
its batch locally: the Z, and the batch moves on.

The reminder ([settlement] remind_after) and the automatic settlement
([settlement] auto_at) are decided here too; the terminal asks once a minute
(docs/close-of-day.md, "Settlement").
"""
import json

from firmware.core.store import is_fault
from firmware.payments import hostmsg

WINDOW = 4                  # 0320s in flight at once
BATCH_LIMIT = 999999        # batch numbers 1..999999, then 1 again (DE60 is 6 digits)
STATE_SETTING = "settle.state"
AUTO_SETTING = "settle.auto_day"    # the local day an automatic settlement last started
SETTLED = "settled"         # the journal counter: the last batch the host closed
SETTLED_STEPS = 100         # it steps to the batch (one step but for a journal's first)
QUEUE_WAIT_MS = 180000      # the offline queue must upload within this
COUNTED = ("sale", "refund")
UNFINISHED = ("created", "sending", "offline_pending")
IDLE_MS = 60000             # no key for this long: the terminal is idle (auto_at)

# phases
IDLE = "idle"
QUEUE = "queue"             # the offline queue is uploading first
READY = "ready"             # the totals are known; a person confirms (auto: at once)
TOTALS = "totals"           # 0500 920000 out
UPLOAD = "upload"           # 0510 95: the 0320s
CLOSING = "closing"         # 0500 960000 out
CLOSED = "closed"           # the batch is closed, its Z made, the batch number moved on
REFUSED = "refused"         # not started: why (nothing went to the host)
FAILED = "failed"           # the host did not close it: the batch stays open
RUNNING = (QUEUE, TOTALS, UPLOAD, CLOSING)
IN_DOUBT = (TOTALS, UPLOAD, CLOSING)    # the host may have closed it: settle again


def batch_figures(records):
    """((sales count, sales amount, refunds count, refunds amount), [records counted])
    of a batch's journal records, amounts in minor units."""
    sales_n = sales = refunds_n = refunds = 0
    counted = []
    for rec in records:
        if rec["method"] != "card" or rec["state"] != "approved" or rec["kind"] not in COUNTED:
            continue
        counted.append(rec)
        if rec["kind"] == "sale":
            sales_n += 1
            sales += rec["amount"]
        else:
            refunds_n += 1
            refunds += rec["amount"]
    return (sales_n, sales, refunds_n, refunds), counted


def hhmm(text):
    """(h, m) of a "HH:MM" setting, None for "" (off)."""
    if not text:
        return None
    return int(text[0:2]), int(text[3:5])


class Settlement:
    """One settlement at a time; begin(), then confirm() once READY (or auto)."""

    def __init__(self, term, make_z):
        self.term = term
        # make_z(batch, print_it, settled) -> doc: the batch's Z stored once (firmware/flows/
        # report_view.py make_z), printed when print_it; injected by the terminal
        self.make_z = make_z
        self.phase = IDLE
        self.batch = None
        self.totals = None
        self.records = []
        self.uploaded = 0
        self.why = None             # message id of a refusal or failure
        self.detail = {}            # its fields
        self.advice = None          # what to do about it (message id)
        self.auto = False
        self.operator = ""
        self.local = False          # no host: closed on the terminal alone
        self.out_of_balance = False
        self.z = None
        self.z_to_print = None      # a Z a restart made, printed once someone logs in
        self.listener = None        # callback() after each change (on the loop)
        self._run = 0               # answers of an abandoned run are dropped
        self._next = 0
        self._inflight = 0
        self._queue_timer = None
        self._forwarder_was = None
        self._told = False
        self._state = None          # the store setting, as last read or written
        self._oldest = {}           # batch -> local (y, mo, d) of its first record
        self._remind = (None, False)

    # -- what others ask --------------------------------------------------------
    @property
    def pay(self):
        return self.term.payments

    def running(self):
        return self.phase in RUNNING or self.phase == READY

    def state(self):
        """The store setting: {"batch", "phase", "why", "rc", "auto"} or {}."""
        if self._state is None:
            try:
                text = self.term.store.get_setting(STATE_SETTING) or ""
                self._state = json.loads(text) if text else {}
            except Exception:
                self._state = {}
        return self._state

    def idle_lines(self):
        """What the idle screen says about settlement (message texts)."""
        t = self.term.t
        lines = []
        if self.phase in RUNNING:
            return [t("idle_settling")]
        try:
            batch = self.pay.batch()
        except Exception:
            return lines
        st = self.state()
        if st.get("batch") == batch:
            if st.get("phase") == FAILED and st.get("why"):
                lines += [t("idle_settle_failed"), t(st["why"], rc=st.get("rc", ""))]
            elif st.get("phase") in IN_DOUBT:
                lines.append(t("idle_settle_unfinished"))
        if self.reminder_due():
            lines.append(t("idle_settle_remind"))
        return lines

    def reminder_due(self):
        """[settlement] remind_after: from that local time on, while the open batch has
        any record; all day when its first record is from an earlier local day (a batch
        left open overnight). Worked out at most once a minute once the batch has a
        record (an empty batch costs one indexed look-up)."""
        at = hhmm(self.term.config["settlement"]["remind_after"])
        if at is None:
            return False
        try:
            now = self.term.system.local_time()
            batch = self.pay.batch()
            key = (batch, tuple(now[:5]))
            if self._remind[0] == key:
                return self._remind[1]
            first = self._first_day(batch)
            if first is None:
                return False            # asked again next time: a sale may come any moment
            due = (now[3], now[4]) >= at or first < tuple(now[:3])
        except Exception as exc:
            if not is_fault(exc):
                raise
            return False
        self._remind = (key, due)
        return due

    def _first_day(self, batch):
        """The local day of the batch's first record, None while it has none."""
        if batch in self._oldest:
            return self._oldest[batch]
        journal = self.pay.journal
        if journal.last(batch=batch) is None:
            return None
        first = journal.find(batch=batch)[0]
        day = tuple(hostmsg.record_local(first["utc"], first["tz_min"])[:3])
        self._oldest = {batch: day}
        return day

    def auto_due(self):
        """[settlement] auto_at: True once a local day, from that time on, when the open
        batch has records and no settlement runs (the terminal checks it is idle)."""
        at = hhmm(self.term.config["settlement"]["auto_at"])
        if at is None or self.running() or self.pay is None:
            return False
        now = self.term.system.local_time()
        if (now[3], now[4]) < at:
            return False
        try:
            if self.term.store.get_setting(AUTO_SETTING) == self._day(now):
                return False
            return self.pay.journal.last(batch=self.pay.batch()) is not None
        except Exception as exc:
            if not is_fault(exc):
                raise
            return False

    def auto_started(self):
        """An automatic settlement starts: once a day (written before it starts)."""
        self.term.store.set_setting(AUTO_SETTING, self._day(self.term.system.local_time()))

    @staticmethod
    def _day(now):
        return "%04d-%02d-%02d" % tuple(now[:3])

    # -- starting -------------------------------------------------------------------
    def begin(self, operator="", auto=False, listener=None):
        """Check, upload the offline queue, work out the totals: the phase becomes
        READY (confirm() sends them), REFUSED (why), or CLOSED when the host had
        already closed this batch and only the terminal's side was left."""
        if self.phase in RUNNING:
            # one runs: this one joins it (a settlement started twice runs once)
            self.listener = listener or self.listener
            return self.phase
        self._reset()
        self.operator, self.auto, self.listener = operator, auto, listener
        try:
            self.batch = self.pay.batch()
            if self.pay.journal.counter(SETTLED) == self.batch:
                # the host closed this batch; the terminal stopped before the Z
                self._finish(self.batch, resumed=True)
                return self.phase
            why = self._check()
        except Exception as exc:
            if not is_fault(exc):
                raise
            return self._refuse("settle_err_storage", "settle_check_sd")
        if why is not None:
            return self._refuse(*why)
        if self.pay.host is None:
            self.local = True
            return self._ready()
        try:
            pending = self.pay.queue.pending(limit=1)
        except Exception:
            return self._refuse("settle_queue_failed", "settle_why_storage")
        if pending:
            return self._upload_queue()
        return self._after_queue()

    def _reset(self):
        self._run += 1
        self.phase = IDLE
        self.batch = self.totals = self.why = self.advice = self.z = None
        self.records = []
        self.detail = {}
        self.uploaded = self._next = self._inflight = 0
        self.local = self.out_of_balance = False
        self._stop_queue_watch()

    def _check(self):
        """(why, advice) when this batch cannot be settled now, else None."""
        records = self.pay.journal.find(batch=self.batch)
        if not records:
            return "settle_err_empty", "settle_nothing"
        for rec in records:
            if rec["state"] in UNFINISHED:
                return "settle_err_open", "settle_finish_it"
        return None

    def _refuse(self, why, advice=None, **detail):
        self.phase = REFUSED
        self.why, self.advice, self.detail = why, advice, detail
        self._audit("settle_refused", "%s %s" % (why, detail.get("rc", "")))
        if self.auto:                   # nobody saw it: the idle screen says why
            try:
                self._save(FAILED, why=why, rc=detail.get("rc", ""))
            except Exception:
                pass
        self._tell()
        return self.phase

    # -- the offline queue first ------------------------------------------------------
    def _upload_queue(self):
        self.phase = QUEUE
        fwd = self.pay.forwarder
        self._forwarder_was = fwd.on_change
        fwd.on_change = self._queue_changed
        run = self._run
        self._queue_timer = self.term.reactor.call_later(
            QUEUE_WAIT_MS, lambda: self._queue_gave_up(run))
        self._tell()
        fwd.upload_now()
        return self.phase

    def _stop_queue_watch(self):
        if self._queue_timer is not None:
            self._queue_timer.cancel()
            self._queue_timer = None
        fwd = self.pay.forwarder if self.pay is not None else None
        if fwd is not None and fwd.on_change == self._queue_changed:
            fwd.on_change = self._forwarder_was
        self._forwarder_was = None

    def _queue_changed(self):
        if self._forwarder_was is not None:
            self._forwarder_was()
        if self.phase != QUEUE:
            return
        fwd = self.pay.forwarder
        p = fwd.progress()
        if not p["pending"] and not p["inflight"]:
            self._stop_queue_watch()
            self._after_queue()
        elif p["state"] == "backoff" and p["error"]:
            self._stop_queue_watch()
            storage = p["error"].startswith("queue:") or p["error"].startswith("journal:")
            self._refuse("settle_queue_failed",
                         "settle_why_storage" if storage else "settle_why_host")
        else:
            self._tell()

    def _queue_gave_up(self, run):
        self._queue_timer = None
        if run == self._run and self.phase == QUEUE:
            self._stop_queue_watch()
            self._refuse("settle_queue_failed", "settle_why_host")

    def queue_left(self):
        try:
            return len(self.pay.queue.pending())
        except Exception:
            return 0

    def _after_queue(self):
        try:
            if self.pay.pending_reversals():
                return self._refuse("settle_err_reversals", "settle_upload_first")
            records = self.pay.journal.find(batch=self.batch)
            why = self._check()
            if why is not None:
                return self._refuse(*why)
            for rec in records:
                if rec["offline"] and rec["state"] == "approved" and rec["upload"] == "pending":
                    return self._refuse("settle_queue_failed", "settle_upload_first")
        except Exception as exc:
            if not is_fault(exc):
                raise
            return self._refuse("settle_err_storage", "settle_check_sd")
        self.totals, self.records = batch_figures(records)
        return self._ready()

    def _ready(self):
        if self.totals is None:
            self.totals, self.records = batch_figures(self.pay.journal.find(batch=self.batch))
        self.phase = READY
        self._tell()
        if self.auto:
            self.term.reactor.call_soon(self.confirm)
        return self.phase

    def abandon(self):
        """A person backs out before the totals went (READY, QUEUE, a result)."""
        if self.phase in IN_DOUBT:
            return False
        self._reset()
        return True

    # -- the host -------------------------------------------------------------------
    def confirm(self):
        """Send the totals (READY only)."""
        if self.phase != READY:
            return
        if self.local:
            self._audit("settle_local", "batch %d" % self.batch)
            return self._host_closed()
        self._audit("settle_started", "batch %d %r%s" % (self.batch, self.totals,
                                                          " auto" if self.auto else ""))
        self._send_totals(False)

    def _stamps(self):
        y, mo, d, h, mi, s = self.term.system.utc_time()
        return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, h, mi, s)

    def _send_totals(self, after_upload):
        self.phase = CLOSING if after_upload else TOTALS
        try:
            self._save(self.phase)
            stan = self.pay.next_stan()
        except Exception as exc:
            if not is_fault(exc):
                raise
            return self._fail("settle_err_storage", "settle_check_sd")
        msg = hostmsg.settlement_request(self.term.config, stan, self._stamps(),
                                         self.term.system.local_time(), self.batch,
                                         self.totals, after_upload)
        check = {"t": msg["t"], "11": msg["11"], "41": msg["41"]}
        run = self._run
        self._tell()
        self.pay.host.request(msg, self._timeout_ms(),
                              lambda result: self._totals_answer(run, check, result))

    def _timeout_ms(self):
        return self.term.config["host"]["response_timeout_s"] * 1000

    def _totals_answer(self, run, check, result):
        if run != self._run:
            return                      # an abandoned try's answer: nothing to do with it
        why = self._link_problem(check, result)
        if why is not None:
            return self._fail(*why)
        self.pay.forwarder.link_ok()
        rc = result["msg"]["39"]
        if rc == hostmsg.SETTLE_BALANCED:
            return self._host_closed()
        if rc == hostmsg.SETTLE_OUT_OF_BALANCE and self.phase == TOTALS:
            return self._start_upload()
        return self._fail("settle_err_refused", "settle_batch_open", rc=rc)

    def _link_problem(self, check, result):
        """(why, advice) when result is no usable answer to the request, else None."""
        if result["kind"] == "response":
            if hostmsg.check_response(check, result["msg"]) is None:
                return None
            return "settle_err_no_answer", "settle_again"
        if result["kind"] == "timeout" or result.get("sent"):
            return "settle_err_no_answer", "settle_again"
        if result.get("untrusted"):
            return "settle_err_untrusted", "settle_batch_open"
        return "settle_err_unreachable", "settle_again"

    def _start_upload(self):
        self.out_of_balance = True
        self.phase = UPLOAD
        try:
            self._save(UPLOAD)
        except Exception as exc:
            if not is_fault(exc):
                raise
            return self._fail("settle_err_storage", "settle_check_sd")
        self._audit("settle_upload", "batch %d: %d to upload" % (self.batch, len(self.records)))
        self._tell()
        self._pump()

    def _pump(self):
        if self.phase != UPLOAD:
            return
        while self._inflight < WINDOW and self._next < len(self.records):
            rec = self.records[self._next]
            self._next += 1
            try:
                stan = self.pay.next_stan()
            except Exception as exc:
                if not is_fault(exc):
                    raise
                return self._fail("settle_err_storage", "settle_check_sd")
            msg = hostmsg.batch_upload_request(rec, self.term.config, stan, self._stamps())
            check = {"t": msg["t"], "11": msg["11"], "41": msg["41"], "4": msg["4"]}
            run = self._run
            self._inflight += 1
            self.pay.host.request(msg, self._timeout_ms(),
                                  self._uploader(run, check))
        if self._inflight == 0 and self._next >= len(self.records):
            self._send_totals(True)

    def _uploader(self, run, check):
        return lambda result: self._upload_answer(run, check, result)

    def _upload_answer(self, run, check, result):
        if run != self._run or self.phase != UPLOAD:
            return
        self._inflight -= 1
        why = self._link_problem(check, result)
        if why is not None:
            return self._fail("settle_err_link", "settle_again")
        rc = result["msg"]["39"]
        if rc != "00":
            return self._fail("settle_err_upload", "settle_batch_open", rc=rc)
        self.uploaded += 1
        self._tell()
        self._pump()

    def _fail(self, why, advice=None, **detail):
        """The host did not close the batch (or may have, without the terminal knowing):
        it stays open; the next settlement starts from the top."""
        self._run += 1                  # later answers of this try are dropped
        self.phase = FAILED
        self.why, self.advice, self.detail = why, advice, detail
        self._audit("settle_failed", "batch %s %s %s" % (self.batch, why, detail.get("rc", "")))
        try:
            self._save(FAILED, why=why, rc=detail.get("rc", ""))
        except Exception:
            pass
        self._tell()
        return self.phase

    # -- closing -------------------------------------------------------------------
    def _host_closed(self):
        """0510 00: the host closed the batch (or a terminal without a host closes it).
        Written down first (the journal's counter), then the Z, then the batch number
        moves on."""
        batch = self.batch
        try:
            journal = self.pay.journal
            for _ in range(SETTLED_STEPS):
                if journal.counter(SETTLED) == batch:
                    break
                journal.next_counter(SETTLED, BATCH_LIMIT)
            if journal.counter(SETTLED) != batch:
                raise ValueError("counter %s does not reach batch %d" % (SETTLED, batch))
        except Exception as exc:
            if not isinstance(exc, ValueError) and not is_fault(exc):
                raise
            # the host has closed it: a settlement started again is answered 00
            return self._fail("settle_err_storage", "settle_again")
        self._audit("settle_closed", "batch %d %s" % (
            batch, "locally" if self.local else
            "after upload" if self.out_of_balance else "in balance"))
        self._finish(batch)

    def _how_closed(self, resumed):
        """How this batch closed, for its Z: None when a restart finished a close whose
        way this start did not see."""
        if resumed:
            return None
        return "local" if self.local else "uploaded" if self.out_of_balance else "in_balance"

    def _finish(self, batch, resumed=False, print_now=True):
        """The terminal's side of a closed batch: its Z (made and printed once), the
        batch number moved on, the state cleared. Safe to run again after a restart.
        print_now False (at start, under the self-test): the Z waits in z_to_print."""
        st = self.state()
        made = st.get("batch") == batch and st.get("phase") == "z"
        try:
            self._save(CLOSED)
            if made:
                self.z = self.make_z(batch, False)       # stored already: not printed again
            else:
                self.z = self.make_z(batch, print_now, self._how_closed(resumed))
                if not print_now:
                    self.z_to_print = self.z
                self._save("z")
            for _ in range(3):
                if self.pay.batch() != batch:
                    break
                self.pay.journal.next_counter("batch", BATCH_LIMIT)
            self._save(None)
        except Exception as exc:
            if not is_fault(exc):
                raise
            return self._fail("settle_err_storage", "settle_check_sd")
        if resumed:
            self._audit("settle_resumed", "batch %d closed" % batch)
        self.phase = CLOSED
        self._oldest = {}
        self._remind = (None, False)
        self._tell()
        return self.phase

    def recover(self):
        """At start: a batch the host closed while the terminal stopped before its Z
        and batch number is finished now: the Z stored, the batch moved on. The Z is
        printed when someone next logs in (not under the self-test's printer check);
        should the power go again before that, MENU > Reports > Last Z has it."""
        try:
            batch = self.pay.batch()
            if self.pay.journal.counter(SETTLED) != batch:
                return False
        except Exception as exc:
            if not is_fault(exc):
                raise
            return False
        self.batch = batch
        self.operator = ""
        self._finish(batch, resumed=True, print_now=False)
        return True

    def take_z_to_print(self):
        """The Z a restart made and did not print (once), or None."""
        doc, self.z_to_print = self.z_to_print, None
        return doc

    # -- records ------------------------------------------------------------------
    def _save(self, phase, **extra):
        """The store setting: the batch and phase (None clears it)."""
        if phase is None:
            value = {}
        else:
            value = {"batch": self.batch, "phase": phase, "auto": self.auto}
            value.update(extra)
        self.term.store.set_setting(STATE_SETTING, json.dumps(value) if value else "")
        self._state = value

    def _audit(self, event, detail):
        try:
            self.term.store.audit(event, self.operator or ("auto" if self.auto else ""), detail)
        except Exception:
            pass

    def _tell(self):
        """The listener hears of the change on the next pass of the loop (never from
        inside a call that caused it)."""
        if self.listener is not None and not self._told:
            self._told = True
            self.term.reactor.call_soon(self._told_now)

    def _told_now(self):
        self._told = False
        if self.listener is not None:
            self.listener()
