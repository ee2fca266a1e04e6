"""Paying by the customer's payment code (付款码): scanned (or typed), paid through the
QR acquirer (firmware/payments/qr.py), with the time left on screen while the customer
confirms on the phone. Pushed by the sale flow's method screen (3); finishes with the
journal record (approved, declined, reversed, failed), or None when nothing was sent.

  a scan / digits + ENTER   the customer's code (WeChat Pay, Alipay, UnionPay QR)
  CANCEL                    before: back to the methods; while paying: cancel the order
                            (the terminal keeps cancelling until the acquirer agrees)
"""
from firmware.core import events, keys
from firmware.core.fsm import Flow
from firmware.core.money import format_amount
from firmware.flows.common import Field

ENTRY = "entry_timeout_s"
CODE_MAX = 24


class QrPayFlow(Flow):
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
        self.left_s = 0
        self.deadline = None            # reactor ms when the order is given up
        self._tick = None

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
            self.left_s = ev.get("info", {}).get("left_s", 0)
            self.deadline = self.term.reactor.clock() + self.left_s * 1000
            self._arm_tick()
        elif event == "cancelling":
            self.phase = "cancelling"
            self._drop_tick()
        elif event == "done":
            self.finish(self.rec)
        return None

    # the seconds left count down on the screen between the acquirer's answers
    def _arm_tick(self):
        self._drop_tick()
        self._tick = self.term.reactor.call_later(1000, self._ticked)

    def _ticked(self):
        self._tick = None
        if self.finished or self.phase != "waiting" or self.deadline is None:
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

