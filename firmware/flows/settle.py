"""MENU > Reports > Settle & Z: the batch settled with the host, its Z printed, the batch
number moved on (issue 14 item 3; firmware/payments/settlement.py does the work).

  supervisor   their ID and PIN (a logged-in supervisor: the PIN only)
  working      the offline queue uploads first ("Uploading queue"); a refusal says why
               (a payment unfinished, the queue that will not upload and why, a
               reversal waiting, an empty batch) and nothing goes to the host
  confirm      the totals to be sent (card sales and refunds, count and amount; a
               terminal without a host: the batch closes locally); ENTER sends them
  working      "Sending totals", "Out of balance" then "Uploading 3/12", "Closing
               batch": CANCEL does not stop the host's part (the screen says so)
  result       In balance / Closed on upload / Closed locally, "Batch n closed", the Z
               printing (or not, and why), and the new batch; or why it failed, the
               batch still open and what to do

SettleFlow(term, auto=True) is the automatic settlement ([settlement] auto_at): no
supervisor, no confirmation, the result shown a while and the flow gone by itself.
Only the Reports menu (from the idle screen) and the idle terminal itself start one:
no sale can be open meanwhile.
"""
from firmware.core import events, keys
from firmware.core.fsm import Flow
from firmware.core.money import format_amount
from firmware.flows.supervisor import SupervisorFlow
from firmware.payments import settlement as stl

WORK_MS = 600000            # the engine ends every exchange well before this
AUTO_RESULT_MS = 30000      # an automatic settlement's result, then the idle screen


class SettleFlow(Flow):
    NAME = "settle"
    INITIAL = "supervisor"
    STATES = {
        "supervisor": {"enter": "ask", "timeout": None, "on": {}},
        "working": {"enter": "begin", "timeout": WORK_MS,
                    "on": {"settle": "progress", keys.CANCEL: "cancel_working",
                           "timeout": "gave_up"}},
        "confirm": {"timeout": "entry_timeout_s",
                    "on": {keys.ENTER: "send", keys.CANCEL: "quit", "timeout": "quit",
                           keys.UP: "up", keys.DOWN: "down", "settle": "progress"}},
        "result": {"timeout": 60000,
                   "on": {keys.ENTER: "done", keys.CANCEL: "done", "timeout": "done",
                          keys.UP: "up", keys.DOWN: "down",
                          events.PRINTED: "printed", events.PRINTER: "printer_changed"}},
    }

    def __init__(self, term, auto=False):
        Flow.__init__(self, term)
        self.auto = auto
        self.engine = term.settlement()
        self.supervisor = None
        self.top = 0
        self.note = None            # a line that says why CANCEL did nothing
        self.z_note = None          # settle_z_printing | rpt_printed | settle_z_not_printed
        if auto:
            self.INITIAL = "working"
            self.STATES = dict(self.STATES)
            result = dict(self.STATES["result"])
            result["timeout"] = AUTO_RESULT_MS
            self.STATES["result"] = result

    @property
    def BUSY(self):
        """The host's part is under way: no automatic logout over it."""
        return self.state == "working"

    # -- the supervisor --------------------------------------------------------------
    def ask(self):
        self.term.push(SupervisorFlow(self.term, "rep_settle"))

    def child_done(self, child, result):
        if child.NAME != "supervisor":
            return None                 # a notice over this screen (a queue alert)
        if result is None:
            self.finish(None)
            return None
        self.supervisor = result["id"]
        return "working"

    # -- the work ---------------------------------------------------------------
    def begin(self):
        if self.engine is None:
            return self._stopped()
        who = "auto" if self.auto else (self.supervisor or "")
        self.engine.begin(who, self.auto, self._changed)
        return self._next()

    def _changed(self):
        if not self.finished:
            self.dispatch(events.Event("settle"))

    def _next(self):
        phase = self.engine.phase
        if phase == stl.READY and not self.auto:
            return "confirm"
        if phase in (stl.CLOSED, stl.REFUSED, stl.FAILED, stl.IDLE):
            if phase == stl.CLOSED:
                self._z_state()
            return "result"
        return None

    def progress(self, ev):
        nxt = self._next()
        return nxt if nxt != self.state else None

    def _stopped(self):
        return "result"

    def cancel_working(self, ev):
        if self.engine.phase in (stl.QUEUE, stl.READY):
            self.engine.abandon()
            self.finish(None)
            return None
        self.note = "settle_wait"       # the host's part finishes by itself
        self.term.beep("error")
        return None

    def gave_up(self, ev):
        if self.engine.abandon():
            self.finish(None)
            return None
        self.restart_timer()
        return None

    def send(self, ev):
        self.top = 0
        self.engine.confirm()
        return "working" if self.engine.phase != stl.CLOSED else self._next()

    def quit(self, ev):
        self.engine.abandon()
        self.finish(None)
        return None

    def up(self, ev):
        self.top = max(0, self.top - 1)

    def down(self, ev):
        self.top = max(0, min(len(self._lines()) - 3, self.top + 1))

    def stop(self):
        """Replaced (a logout, a storage fault): what has not reached the host is
        dropped; the host's part, once started, finishes by itself."""
        if self.engine is not None and self.engine.phase in (stl.QUEUE, stl.READY):
            self.engine.abandon()
        if self.engine is not None and self.engine.listener == self._changed:
            self.engine.listener = None
        Flow.stop(self)

    def done(self, ev):
        if self.engine is not None and self.engine.phase in (stl.CLOSED, stl.REFUSED,
                                                             stl.FAILED):
            self.engine.abandon()       # back to idle: the next one starts afresh
        self.finish(None)

    # -- the Z on paper ----------------------------------------------------------
    def _z_state(self):
        if self.engine.z is None:
            self.z_note = "settle_z_not_printed"
        elif self.term.printer is None or self.term.printer_state not in \
                ("ok", "paper_near_end", "unknown"):
            self.z_note = "settle_z_not_printed"
        else:
            self.z_note = "settle_z_printing"

    def printed(self, ev):
        if self.z_note == "settle_z_printing":
            self.z_note = "settle_z_printed"

    def printer_changed(self, ev):
        if self.z_note == "settle_z_printing" and ev.get("state") not in ("ok", "paper_near_end"):
            self.z_note = "settle_z_not_printed"

    # -- drawing ------------------------------------------------------------------
    def _lines(self):
        t = self.t
        e = self.engine
        cur = self.term.config["money"]["currency"]
        if e is None:
            return [t("settle_err_storage")]
        if self.state == "confirm":
            if e.local:
                return [t("settle_no_host"), t("settle_close_q", n=e.batch)]
            sales_n, sales, refunds_n, refunds = e.totals
            return [t("settle_sales", n=sales_n), format_amount(sales, cur, with_code=True),
                    t("settle_refunds", n=refunds_n), format_amount(refunds, cur, with_code=True)]
        if self.state == "working":
            if e.phase == stl.QUEUE:
                lines = [t("settle_queue"), t("settle_left", n=e.queue_left())]
            elif e.phase == stl.TOTALS:
                lines = [t("settle_sending"), t("settle_batch", n=e.batch)]
            elif e.phase == stl.UPLOAD:
                lines = [t("settle_out_of_balance"),
                         t("settle_uploading", n=e.uploaded, d=len(e.records))]
            elif e.phase == stl.CLOSING:
                lines = [t("settle_closing"), t("settle_batch", n=e.batch)]
            else:
                lines = [t("settle_checking")]
            if self.note:
                lines.append(t(self.note))
            return lines
        if e.phase == stl.CLOSED:
            how = "settle_local" if e.local else (
                "settle_after_upload" if e.out_of_balance else "settle_in_balance")
            return [t(how), t("settle_closed", n=e.batch), t(self.z_note or "settle_z_not_printed"),
                    t("settle_next", n=self.term.payments.batch())]
        lines = [t(e.why or "settle_err_storage", **e.detail)]
        if e.advice:
            lines.append(t(e.advice))
        if e.phase == stl.FAILED and e.advice != "settle_batch_open":
            lines.append(t("settle_batch_open"))
        return lines

    def render(self):
        t = self.t
        if self.state == "supervisor":
            return
        title = t("rep_settle")
        if self.state == "confirm":
            footer = t("settle_footer_send")
            self.term.show(title, self._lines(), footer, top=self.top)
        elif self.state == "working":
            self.term.show(title, self._lines(), t("settle_footer_wait"))
        else:
            closed = self.engine is not None and self.engine.phase == stl.CLOSED
            self.term.show(title, self._lines(), t("footer_ok"),
                           alert="ok" if closed else "error", top=self.top)
