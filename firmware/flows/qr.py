"""Paying by the customer's payment code (付款码): scanned (or typed), paid through the
QR acquirer (firmware/payments/qr.py), with the time left on screen while the customer
confirms on the phone. Pushed by the sale flow's method screen (3); finishes with the
journal record (approved, declined, reversed, failed), or None when nothing was sent.

  a scan / digits + ENTER   the customer's code (WeChat Pay, Alipay, UnionPay QR)
  CANCEL                    before: back to the methods; while paying: cancel the order
                            (the terminal keeps cancelling until the acquirer agrees)

QrShowFlow: the merchant's code (收款码), the sale's method 4. The order is created at
the acquirer and its code_url drawn as a QR code beside the amount and the seconds left
(counting down between the queries); the customer scans it with the phone.

  F1       the same code on paper, for a customer who cannot scan the screen
  CANCEL   close the order ("Closing..."; paid meanwhile, the payment is kept)
"""
from firmware.core import events, keys
from firmware.core.fsm import Flow
from firmware.core.money import format_amount
from firmware.flows.common import Field

ENTRY = "entry_timeout_s"
CODE_MAX = 24


class Countdown:
    """The seconds left, counted down on the screen each second between the acquirer's
    answers (which set them afresh). A flow mixes it in before Flow and names the phases
    in which it counts (TICK_PHASES); its render() draws self.left_s."""
    TICK_PHASES = ("waiting",)
    _tick = None
    deadline = None                 # reactor ms when the order is given up
    left_s = 0

    def set_left(self, left_s):
        self.left_s = left_s
        self.deadline = self.term.reactor.clock() + left_s * 1000
        self._arm_tick()

    def _arm_tick(self):
        self._drop_tick()
        self._tick = self.term.reactor.call_later(1000, self._ticked)

    def _ticked(self):
        self._tick = None
        if self.finished or self.phase not in self.TICK_PHASES or self.deadline is None:
            return
        self.left_s = max(0, (self.deadline - self.term.reactor.clock() + 999) // 1000)
        if self.on_top():
            self.render()
        if self.left_s > 0:
            self._arm_tick()

    def _drop_tick(self):
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def finish(self, result=None):
        self._drop_tick()
        Flow.finish(self, result)

    def stop(self):
        self._drop_tick()
        Flow.stop(self)


class QrPayFlow(Countdown, Flow):
    NAME = "qr"
    INITIAL = "code"
    STATES = {
        "code": {"timeout": ENTRY,
                 "on": {"scan": "scanned", "scan_error": "scan_failed",
                        "digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                        keys.ENTER: "typed", keys.CANCEL: "cancel"}},
        # the order is with the acquirer: only the service's "done" ends this state
        "paying": {"timeout": None,
                   "on": {"qr": "update", keys.CANCEL: "ask_cancel"}},
    }

    def __init__(self, term, kind, amount):
        Flow.__init__(self, term)
        self.kind = kind
        self.amount = amount
        self.currency = term.config["money"]["currency"]
        self.field = Field(CODE_MAX)
        self.error = None
        self.rec = None
        self.phase = "sending"          # sending | waiting | cancelling

    # -- the code ---------------------------------------------------------------------
    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def typed(self, ev):
        code = self.field.value
        self.field.clear()
        return self._pay(code)

    def scanned(self, ev):
        self.field.clear()
        return self._pay(ev.get("code") or "")

    def scan_failed(self, ev):
        self.error = "scan_again"

    def _pay(self, code):
        if not code:
            self.error = "qr_scan_prompt"
            return None
        service = self.term.payments.qr
        why = service.refusal(code)
        if why is not None:
            self.error = why
            self.term.beep("error")
            return None
        self.error = None
        try:
            self.rec = service.pay(self.kind, self.amount, code, self._heard)
        except Exception as exc:        # the journal could not take it: nothing sent
            from firmware.core.store import is_fault
            if not is_fault(exc):
                raise
            self.error = "reason_storage"
            return None
        code = None
        self.phase = "sending"
        return "paying"

    # -- the order --------------------------------------------------------------------
    def _heard(self, event, rec, info):
        if not self.finished:
            self.dispatch(events.Event("qr", event=event, rec=rec, info=info))

    def update(self, ev):
        event = ev.get("event")
        self.rec = ev.get("rec") or self.rec
        if event == "waiting":
            self.phase = "waiting"
            self.set_left(ev.get("info", {}).get("left_s", 0))
        elif event == "cancelling":
            self.phase = "cancelling"
            self._drop_tick()
        elif event == "done":
            self.finish(self.rec)
        return None

    def ask_cancel(self, ev):
        if self.rec is not None and self.phase != "cancelling":
            self.phase = "cancelling"
            self.term.payments.qr.cancel(self.rec["id"])
        return None

    # -- drawing ----------------------------------------------------------------------
    def render(self):
        t = self.t
        amount = t("total_is", amount=format_amount(self.amount, self.currency))
        if self.state == "code":
            if self.field.value:
                typed = self.field.value
                shown = "*" * max(0, len(typed) - 4) + typed[-4:]
            else:
                shown = t("qr_scan_prompt")
            rows = [amount, shown] + ([t(self.error)] if self.error else [])
            self.term.show(t("qr_title"), rows, t("footer_back"),
                           alert="error" if self.error else None)
            return
        masked = self.rec["pan_masked"] if self.rec else ""
        if self.phase == "waiting":
            rows = [amount, t("qr_confirm_phone"), t("qr_left", s=self.left_s)]
        elif self.phase == "cancelling":
            rows = [amount, t("qr_cancelling"), t("do_not_remove")]
        else:
            rows = [amount, t("qr_paying"), masked]
        self.term.show(t("qr_title"), rows, t("footer_wait"))



class QrShowFlow(Countdown, Flow):
    """The merchant's code: created, shown with the seconds left, printed on F1, closed
    on CANCEL or at the time's end; finishes with the record (approved, declined,
    reversed, failed) or None when nothing was recorded."""
    NAME = "qr_show"
    INITIAL = "showing"
    TICK_PHASES = ("shown",)
    # the order is with the acquirer: only the service's "done" ends this state
    STATES = {
        "showing": {"enter": "create", "timeout": None,
                    "on": {"qr": "update", keys.F1: "print_code", keys.CANCEL: "ask_close",
                           events.PRINTED: "printed", events.PRINTER: "printer_changed"}},
    }

    def __init__(self, term, kind, amount):
        Flow.__init__(self, term)
        self.kind = kind
        self.amount = amount
        self.currency = term.config["money"]["currency"]
        self.rec = None
        self.url = ""
        self.phase = "creating"         # creating | shown | closing | cancelling
        self.note = None                # what the printer does with the code on paper
        self.job = None

    def create(self):
        try:
            self.rec = self.term.payments.qr.show(self.kind, self.amount, self._heard)
        except Exception as exc:        # the journal could not take it: nothing sent
            from firmware.core.store import is_fault
            if not is_fault(exc):
                raise
            self.finish(None)
        return None

    def _heard(self, event, rec, info):
        if not self.finished:
            self.dispatch(events.Event("qr", event=event, rec=rec, info=info))

    def update(self, ev):
        event = ev.get("event")
        info = ev.get("info") or {}
        self.rec = ev.get("rec") or self.rec
        if event == "shown":
            self.url = info.get("url") or ""
            self.phase = "shown"
            self.set_left(info.get("left_s", 0))
        elif event == "waiting":
            if self.phase == "shown":
                self.set_left(info.get("left_s", 0))
        elif event in ("closing", "cancelling"):
            self.phase = event
            self._drop_tick()
        elif event == "done":
            self.finish(self.rec)
        return None

    def ask_close(self, ev):
        if self.rec is not None and self.phase in ("creating", "shown"):
            self.phase = "closing"
            self._drop_tick()
            self.term.payments.qr.cancel(self.rec["id"])
        return None

    # -- the code on paper --------------------------------------------------------------
    def print_code(self, ev):
        if self.phase != "shown" or not self.url:
            return None
        from firmware.ui.receipt import Receipt
        t = self.t
        r = Receipt(lang=t.lang)
        r.add(self.term.config["terminal"]["merchant_name"], "center", bold=True)
        r.add(t("qrs_rcpt_head"), "center", bold=True)
        r.rule()
        r.pair(t("rcpt_total"), format_amount(self.amount, self.currency, with_code=True),
               bold=True)
        r.qr(self.url, text=t("qrs_rcpt_scan"))
        r.rule()
        self.job = self.term.print_receipt(r)
        state = self.term.printer_state if self.job is not None else "missing"
        self.note = "qrs_printing" if state in ("ok", "paper_near_end", "unknown") \
            else "qrs_not_printed"
        return None

    def printed(self, ev):
        if self.note == "qrs_printing":
            self.note = None
        return None

    def printer_changed(self, ev):
        if self.note is not None and ev.get("state") not in ("ok", "paper_near_end"):
            self.note = "qrs_not_printed"
        return None

    # -- drawing ------------------------------------------------------------------------
    def render(self):
        t = self.t
        amount = format_amount(self.amount, self.currency)
        if self.phase == "shown" and self.url:
            # the column beside the code is narrow: the amount, the time, one hint
            rows = [amount, t("qr_left", s=self.left_s), t(self.note or "qrs_print_hint")]
            self.term.show(t("qrs_title"), rows, t("qrs_footer"), qr=self.url)
            return
        total = t("total_is", amount=format_amount(self.amount, self.currency))
        if self.phase == "closing":
            rows = [total, t("qrs_closing")]
        elif self.phase == "cancelling":
            rows = [total, t("qr_cancelling"), t("do_not_remove")]
        else:
            rows = [total, t("qrs_creating")]
        self.term.show(t("qrs_title"), rows, t("footer_wait"))
