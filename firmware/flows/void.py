"""Void: a supervisor cancels an approved sale of the open batch. A card void goes to
the host as a reversal of the sale (0400, repeated as 0401 until acknowledged); a cash
void opens the drawer to pay the money back."""
from firmware.core import events, keys
from firmware.flows.pick import PickFlow
from firmware.flows.supervisor import SupervisorFlow
from firmware.core.fsm import Flow
from firmware.core.money import format_amount


class VoidFlow(Flow):
    NAME = "void"
    INITIAL = "supervisor"
    STATES = {
        "supervisor": {"enter": "ask_supervisor", "timeout": None, "on": {}},
        "pick": {"enter": "ask_pick", "timeout": None, "on": {}},
        # issue 15: an anomaly hit (one operator's voids and refunds); flows.limit_gate
        "gate": {"enter": "open_gate", "timeout": None, "on": {}},
        "working": {"enter": "send", "timeout": None, "on": {"voided": "voided"}},
        "result": {"timeout": 60000,
                   "on": {keys.ENTER: "done", keys.CANCEL: "done", "timeout": "done",
                          events.PRINTED: "ignore", events.PRINTER: "ignore"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.supervisor = None
        self.original = None
        self.rec = None
        self.gate_hits = []

    def ask_supervisor(self):
        self.term.push(SupervisorFlow(self.term, "menu_void"))

    def open_gate(self):                # issue 15
        from firmware.flows.limit_gate import LimitGateFlow
        self.term.push(LimitGateFlow(self.term, self.gate_hits))

    def eligible(self, rec):
        if rec["kind"] != "sale":
            return "err_void_not_sale"
        if rec["method"] == "qr" and self.term.payments.qr_refunds is None:
            return "qr_off"
        if rec["state"] != "approved":
            return "err_void_state"
        if rec["batch"] != self.term.payments.batch():
            return "err_void_settled"
        if rec["refunded"]:
            return "err_void_refunded"
        if self.term.payments.back_in_flight(rec["id"]) is not None:
            return "err_back_in_flight"     # a refund or void still going: its answer first
        return None

    def ask_pick(self):
        self.term.push(PickFlow(self.term, "menu_void", self.eligible))

    def child_done(self, child, result):
        if child.NAME not in ("supervisor", "pick", "limit_gate"):
            return None         # a notice over this flow (offline payment, device lost)
        if result is None:
            self.finish(None)
            return None
        if child.NAME == "supervisor":
            self.supervisor = result
            return "pick"
        if child.NAME == "limit_gate":
            return "working"
        self.original = result
        # issue 15: before the void leaves the terminal
        from firmware.payments.checks import void_hits
        self.gate_hits = void_hits(self.term, result)
        return "gate" if self.gate_hits else "working"

    def send(self):
        if self.original["method"] == "qr":     # the acquirer cancels the order
            self.term.payments.qr_refunds.void(self.original, self.supervisor, self._answer)
            return
        self.term.payments.void(self.original, self.supervisor, self._answer)

    def _answer(self, rec):
        self.rec = rec
        if not self.finished:
            self.dispatch(events.Event("voided"))

    def voided(self, ev):
        if self.rec["state"] == "approved":
            self.term.beep("ok")
            self.term.payments.print_receipt(self.rec["id"], "merchant")
        return "result"

    def ignore(self, ev):
        return None

    def done(self, ev):
        self.finish(self.rec)

    def render(self):
        t = self.t
        if self.state == "working":
            self.term.show(t("menu_void"), [t("authorising")], t("footer_wait"))
        elif self.state == "result":
            amount = format_amount(self.rec["amount"], self.rec["currency"])
            if self.rec["state"] == "approved":
                self.term.show(t("menu_void"), [amount, t("void_done")], t("footer_continue"),
                               big=t("voided"), alert="ok")
            else:
                self.term.show(t("menu_void"), [amount, t("void_queued")], t("footer_continue"),
                               alert="warn")


class RefundStartFlow(Flow):
    """Supervisor, then the original sale, then the refund itself (flows.sale)."""
    NAME = "refund_start"
    INITIAL = "supervisor"
    STATES = {
        "supervisor": {"enter": "ask_supervisor", "timeout": None, "on": {}},
        "pick": {"enter": "ask_pick", "timeout": None, "on": {}},
        "refund": {"enter": "start_refund", "timeout": None, "on": {}},
    }

    def __init__(self, term, scan=None):
        Flow.__init__(self, term)
        self.original = None
        self.scan = scan                # a receipt's barcode scanned on the idle screen
        self.by_sale = None

    def ask_supervisor(self):
        self.term.push(SupervisorFlow(self.term, "menu_refund"))

    def eligible(self, rec):
        if rec["kind"] != "sale" or rec["state"] != "approved":
            return "err_refund_not_sale"
        if rec["method"] == "qr" and self.term.payments.qr_refunds is None:
            return "qr_off"
        if rec["amount"] - rec["refunded"] <= 0:
            return "err_refund_used"
        if self.term.payments.back_in_flight(rec["id"]) is not None:
            return "err_back_in_flight"
        if rec.get("cart"):
            from firmware.retail import refund as refunds
            if refunds.sold_cart(rec) is None:
                return "err_refund_cart"        # a copy this release cannot read
            if not refunds.remaining(self.term.payments.journal, rec, by_sale=self.by_sale):
                return "err_refund_used"
        return None

    def ask_pick(self):
        from firmware.retail.refund import refunded_by_sale
        # what every sale had back, read once: the pick looks at many sales (ENTER
        # alone: the latest that can still be refunded)
        self.by_sale = refunded_by_sale(self.term.payments.journal)
        pick = PickFlow(self.term, "menu_refund", self.eligible)
        self.term.push(pick)
        if self.scan is not None and not pick.finished:
            scan, self.scan = self.scan, None
            pick.dispatch(scan)         # the receipt scanned before: its sale, to confirm

    def start_refund(self):
        """An item sale is refunded by its lines; a keyed amount, by an amount."""
        if self.original.get("cart"):
            from firmware.flows.refund_lines import RefundLinesFlow
            self.term.push(RefundLinesFlow(self.term, self.original))
            return
        from firmware.flows.sale import RefundFlow
        self.term.push(RefundFlow(self.term, original=self.original))

    def child_done(self, child, result):
        if child.NAME not in ("supervisor", "pick", "refund", "refund_lines"):
            return None         # a notice over this flow
        if child.NAME == "supervisor":
            return "pick" if result is not None else self.finish(None)
        if child.NAME == "pick":
            if result is None:
                return self.finish(None)
            self.original = result
            return "refund"
        self.finish(result)
        return None
