"""A sale: amount, payment method, then cash (tendered, change, drawer) or card
(swipe, PIN, online authorisation), then the receipts.

Nothing here talks to a device: the payments service (firmware.payments.service) writes the
journal and speaks to the host; the flow shows what happens, in words.
"""
from firmware.core import events, keys
from firmware.flows.common import AmountField, Field, PinEntry
from firmware.core.fsm import Flow
from firmware.core.money import format_amount

ENTRY = "entry_timeout_s"
CARD = "card_timeout_s"
PIN_MAX = 12

# Service code third digit (ISO 7813): 0, 3, 5 PIN required; 6, 7 prompt for a PIN
# when a PIN pad is there, which it always is. Others: signature.
PIN_SERVICE_DIGITS = "03567"


class SaleFlow(PinEntry, Flow):
    NAME = "sale"
    INITIAL = "amount"
    KIND = "sale"
    STATES = {
        "amount": {"timeout": ENTRY,
                   "on": {"digit": "type_amount", keys.BKSP: "type_amount", keys.CLEAR: "type_amount",
                          keys.ENTER: "amount_done", keys.CANCEL: "cancel"}},
        "method": {"timeout": ENTRY,
                   "on": {"1": "pick_card", "2": "pick_cash", keys.F1: "pick_card",
                          keys.F2: "pick_cash", "3": "pick_qr", keys.F3: "pick_qr",
                          "4": "pick_qr_show", keys.F4: "pick_qr_show",
                          keys.CANCEL: "back_to_amount"}},
        # the customer's payment code is being paid, or the merchant's shown (flows.qr
        # runs above this state)
        "qr": {"timeout": None, "on": {}},
        # issue 15: a limit or anomaly hit; flows.limit_gate runs above this state
        "gate": {"enter": "open_gate", "timeout": None, "on": {}},
        "tendered": {"timeout": ENTRY,
                     "on": {"digit": "type_tendered", keys.BKSP: "type_tendered",
                            keys.CLEAR: "type_tendered", keys.ENTER: "tendered_done",
                            keys.CANCEL: "back_to_method"}},
        "change": {"enter": "commit_cash", "timeout": 60000,
                   "on": {keys.ENTER: "to_copy", keys.CANCEL: "to_copy", "timeout": "to_copy",
                          events.PRINTER: "printer_changed", events.PRINTED: "printed"}},
        "card": {"enter": "await_card", "timeout": CARD,
                 "on": {"swipe": "swiped", "swipe_error": "swipe_failed",
                        "card_inserted": "chip_in", "card_tapped": "chip_tap",
                        keys.CANCEL: "back_to_method", "timeout": "card_timed_out"}},
        "card_error": {"timeout": 4000,
                       "on": {keys.ENTER: "retry_card", keys.CANCEL: "back_to_method",
                              "timeout": "retry_card", "swipe": "swiped",
                              "card_inserted": "chip_in", "card_tapped": "chip_tap"}},
        # a chip or contactless card is being read (flows.chip runs above this state)
        "chip": {"timeout": None, "on": {}},
        "pin": {"enter": "enter_pin", "timeout": ENTRY,
                "on": {"digit": "type_pin", keys.BKSP: "type_pin", keys.CLEAR: "type_pin",
                       keys.ENTER: "pin_done", keys.CANCEL: "abandon_card",
                       "timeout": "abandon_card"}},
        # The host has the request: only its answer (or the payments service's own
        # timeout, which reverses) ends this state. CANCEL asks for a reversal.
        "authorising": {"enter": "send", "timeout": None,
                        "on": {"authorised": "answered", keys.CANCEL: "cancel_sent"}},
        "result": {"timeout": 60000,
                   "on": {keys.ENTER: "to_copy", keys.CANCEL: "to_copy", "timeout": "to_copy",
                          events.PRINTER: "printer_changed", events.PRINTED: "printed"}},
        "copy": {"timeout": 30000,
                 "on": {keys.ENTER: "print_copy", keys.CANCEL: "done", "timeout": "done",
                        events.PRINTER: "printer_changed", events.PRINTED: "printed"}},
        "closing": {"timeout": 60000,
                    "on": {events.PRINTED: "printed_then_done", events.PRINTER: "printer_changed",
                           keys.ENTER: "done", keys.CANCEL: "done", "timeout": "done"}},
    }
    BUSY = False
    # from the card to the host's answer the link is this payment's: the forwarder
    # sends nothing new (what is out finishes)
    HOLD_STATES = ("card", "card_error", "chip", "pin", "authorising")

    def holds_uploads(self):
        return self.state in self.HOLD_STATES

    def __init__(self, term, original=None, cart=None):
        Flow.__init__(self, term)
        self.cart = cart                # firmware.retail.cart.Cart of an item sale, or None
        cfg = term.config["money"]
        self.currency = cfg["currency"]
        limit = cfg["max_amount"]
        if original is not None:
            limit = original["amount"] - original["refunded"]
        self.amount = AmountField(self.currency, limit)
        self.tendered = AmountField(self.currency, cfg["max_amount"] * 10)
        self.pin = Field(PIN_MAX, masked=True)
        self.card = None
        self.rec = None
        self.error = None
        self.printer_note = None
        self.fallback = False
        self.jobs = []
        self.original = original
        self.gate_hits = []             # issue 15: the hits the gate shows
        self.gate_then = None           # the state the payment goes on to, approved
        self.gate_card = False          # the hits came with the card (it is held)
        if cart is not None:
            self.amount.value = cart.total()

    def start(self):
        if self.cart is None:
            Flow.start(self)
            return
        # an item sale: the amount is the cart's; the payment records carry the cart
        import json
        self.term.payments.cart = json.dumps(self.cart.to_dict())
        self.goto(self._gated("method", self._amount_hits()))      # issue 15

    def finish(self, result=None):
        self._drop_cart()
        Flow.finish(self, result)

    def stop(self):
        self._drop_cart()
        Flow.stop(self)

    def _drop_cart(self):
        if self.cart is not None and self.term.payments is not None:
            self.term.payments.cart = None

    # -- amount -----------------------------------------------------------------
    def type_amount(self, ev):
        self.error = None
        self.amount.key(ev.get("key"))
        if self.amount.too_big:
            self.error = "err_amount_max"
            self.term.beep("error")

    def amount_done(self, ev):
        nxt = self._amount_next(ev)
        if nxt is None:
            return None
        return self._gated(nxt, self._amount_hits())    # issue 15: limits, anomalies

    def _amount_next(self, ev):
        if self.amount.value <= 0:
            self.error = "err_amount_zero"
            return None
        self.error = None
        if self.original is not None:
            # a refund goes back the way the money came, never above what is left
            if self.amount.value > self.original["amount"] - self.original["refunded"]:
                self.error = "err_refund_too_much"
                return None
            if self.original["method"] == "cash":
                self.tendered.value = 0
                return "change"
            if self.original["method"] == "qr":
                return "qr_refund"      # back through the acquirer: no card, no code
            return self.pick_card(ev)
        return "method"

    def back_to_amount(self, ev):
        if self.cart is not None:       # back to the cart, which keeps its lines
            self.finish(None)
            return None
        return "amount"

    # -- method -----------------------------------------------------------------
    def pick_cash(self, ev):
        if not self.term.config["money"]["cash"]:
            self.error = "err_cash_off"
            return None
        if self.original is None:   # [shifts] required: the operator's open shift first
            from firmware.payments.shifts import cash_refusal
            why = cash_refusal(self.term.config, self.term.payments.journal,
                               (self.term.operator or {}).get("id", ""))
            if why is not None:
                self.error = why
                self.term.beep("error")
                return None
        self.error = None           # a refusal of another method is not the cash screen's
        return "tendered"

    def pick_card(self, ev):
        if not self.term.payments.card_ready():
            self.error = self.term.payments.card_unready_reason()
            self.term.beep("error")
            return None
        self.error = None
        return "card"

    def pick_qr(self, ev):
        """The customer's payment code: never offline (the acquirer must say yes)."""
        from firmware.flows.qr import QrPayFlow
        return self._push_qr(QrPayFlow)

    def pick_qr_show(self, ev):
        """The merchant's code on the screen (and on paper): online only too."""
        from firmware.flows.qr import QrShowFlow
        return self._push_qr(QrShowFlow)

    def _push_qr(self, flow_class):
        if self.original is not None or self.term.payments.qr is None:
            self.error = "qr_off"
            self.term.beep("error")
            return None
        if self.term.payments.qr.needs_network():
            self.error = "qr_needs_network"
            self.term.beep("error")
            return None
        self.error = None
        self.goto("qr")
        self.term.push(flow_class(self.term, self.KIND, self.amount.value))
        return None

    def back_to_method(self, ev):
        self.error = None
        self.term.set_cl_lights(0)
        self._forget_card()
        return "method" if self.original is None else "amount"

    # -- cash -------------------------------------------------------------------
    def type_tendered(self, ev):
        self.error = None
        self.tendered.key(ev.get("key"))

    def tendered_done(self, ev):
        if self.tendered.value == 0:
            self.tendered.value = self.amount.value      # ENTER alone: exact money
        if self.tendered.value < self.amount.value:
            self.error = "err_tendered_short"
            return None
        self.error = None
        return "change"

    def commit_cash(self):
        # The record is durable before the drawer opens or the receipt prints.
        self.rec = self.term.payments.cash(self.KIND, self.amount.value, self.tendered.value,
                                           original=self.original)
        self._print("merchant")
        return None

    # -- card -------------------------------------------------------------------
    def await_card(self):
        self.term.payments.expect_card(True)
        if self.term.payments.chip_reader is not None:
            self.term.set_cl_lights(1)          # ready: present a card

    def swiped(self, ev):
        from firmware.cards import magstripe
        self.term.set_cl_lights(0)
        try:
            self.card = magstripe.parse_swipe(ev.get("track1"), ev.get("track2"),
                                              self.term.today(), fallback=self.fallback)
        except magstripe.CardError as exc:
            self.error = "card_" + exc.code
            self.term.beep("error")
            return "card_error"
        self.error = None
        self.term.payments.expect_card(False)
        if self.original is not None and self.original["method"] == "card" \
                and self.card.last4 != self.original["last4"]:
            self._forget_card()
            self.error = "err_not_same_card"
            return "card_error"
        if self.KIND == "sale" and self.card.service_code[2:3] in PIN_SERVICE_DIGITS:
            nxt = "pin"
        else:
            nxt = "authorising"      # refunds credit the card: no PIN
        # issue 15: the card's anomaly checks, before its authorisation goes out
        from firmware.payments.checks import card_hits
        hits = card_hits(self.term, self.KIND, self.amount.value, self.card.masked)
        self.gate_card = bool(hits)
        return self._gated(nxt, hits)

    # -- issue 15: limits and anomaly checks (firmware/payments/limits.py, anomaly.py) --
    def _amount_hits(self):
        from firmware.payments.checks import amount_hits
        return amount_hits(self.term, self.KIND, self.amount.value, self.original)

    def _gated(self, nxt, hits):
        """nxt, or the gate first when something was hit (nxt once approved)."""
        if not hits:
            return nxt
        self.gate_hits = hits
        self.gate_then = nxt
        return "gate"

    def open_gate(self):
        from firmware.flows.limit_gate import LimitGateFlow
        self.term.push(LimitGateFlow(self.term, self.gate_hits))

    def _gate_done(self, result):
        """The gate's end: approved, on to where the payment was going; else back
        (nothing was sent), as CANCEL from there would."""
        self.gate_hits = []
        self.error = None
        if result is not None:
            return self.gate_then
        if self.gate_card:
            self.gate_card = False
            return self.back_to_method(None)
        if self.cart is not None or getattr(self, "part", None) is not None:
            self.finish(None)
            return None
        return "amount"

    def chip_in(self, ev):
        return self._start_chip("contact")

    def chip_tap(self, ev):
        return self._start_chip("contactless")

    def _start_chip(self, interface):
        from firmware.flows.chip import ChipFlow
        self.error = None
        if interface == "contactless":
            self.term.set_cl_lights(2)          # card seen
        self.BUSY = True
        self.term.payments.expect_card(False)
        # "chip" before the card flow starts: a card refused at once (a tap at or above
        # the contactless limit) ends the child inside push(), and child_done's state
        # must be the one that stays
        self.goto("chip")
        chip = ChipFlow(self.term, self.KIND, self.amount.value, interface, original=self.original)
        self.term.push(chip)
        return None

    def child_done(self, child, result):
        if child.NAME == "limit_gate":          # issue 15
            return self._gate_done(result)
        if child.NAME in ("qr", "qr_show"):
            if result is None:          # nothing sent: another way to pay
                return "method"
            self.rec = result
            return self.answered(None)
        if child.NAME != "chip":
            return None         # a notice over this flow (offline payment, device lost)
        self.BUSY = False
        outcome = child.outcome or {}
        self.term.set_cl_lights(0)
        if child.rec is None:
            # nothing reached the host: say why and let the person try again; a chip
            # that could not be read allows a fallback swipe (entry mode 80)
            reason = outcome.get("reason") or "card_error"
            if reason in ("card_error", "bad_data"):
                self.fallback = True
            self.error = "emv_" + reason
            self.term.beep("error")
            return "card_error"
        self.rec = child.rec
        return self.answered(None)

    def swipe_failed(self, ev):
        self.error = "card_unreadable"
        return "card_error"

    def retry_card(self, ev):
        return "card"

    def card_timed_out(self, ev):
        self.term.payments.expect_card(False)
        self.term.set_cl_lights(0)
        self.error = "err_card_timeout"
        return "method"

    def abandon_card(self, ev):
        self.pin.clear()
        self._forget_card()
        return "method"

    def pin_done(self, ev):
        if self.pin_too_short():
            return None
        return "authorising"

    def send(self):
        pin = self.pin.value
        self.pin.clear()
        self.BUSY = True
        self.rec = self.term.payments.authorise(self.KIND, self.amount.value, self.card, pin,
                                                self._authorised, original=self.original)
        pin = None
        self.card = None      # the payments service wiped what it took
        return None

    def _authorised(self, rec):
        self.rec = rec
        if not self.finished:
            self.dispatch(events.Event("authorised"))

    def answered(self, ev):
        self.BUSY = False
        rec = self.rec
        if rec["state"] == "approved":
            self.term.beep("ok")
        else:
            self.term.beep("error")
        self._print("merchant")
        return "result"

    def cancel_sent(self, ev):
        self.term.payments.cancel(self.rec["id"])
        return None

    def _forget_card(self):
        if self.card is not None:
            self.card.wipe()
            self.card = None
        self.term.payments.expect_card(False)

    # -- receipts ---------------------------------------------------------------
    def _print(self, copy):
        job = self.term.payments.print_receipt(self.rec["id"], copy)
        if job is not None:
            self.jobs.append(job)
        # say "Printing receipt" only while paper can come out: no printer, or one
        # already known not to print, is named instead (a change arrives as an event)
        state = self.term.printer_state if job is not None else "missing"
        if state not in ("ok", "paper_near_end", "unknown"):
            self.printer_note = "printer_" + state

    def to_copy(self, ev):
        return "copy"

    def print_copy(self, ev):
        self._print("customer")
        return "closing"

    def printer_changed(self, ev):
        state = ev.get("state")
        self.printer_note = None if state in ("ok", "paper_near_end") else "printer_" + state

    def printed(self, ev):
        self.printer_note = None

    def printed_then_done(self, ev):
        if not self.term.printer or not self.term.printer.busy:
            return self.done(ev)
        return None

    def done(self, ev):
        self.finish(self.rec)

    def cancel(self, ev=None):
        self._forget_card()
        self.pin.clear()
        if self.BUSY:
            return None           # an authorisation under way ends only by its answer
        self.finish(None)

    # -- screens ----------------------------------------------------------------
    def title(self):
        return self.t("menu_" + self.KIND)

    def render(self):
        t = self.t
        show = self.term.show
        err = [t(self.error)] if self.error else []
        fmt = lambda v: format_amount(v, self.currency)
        s = self.state
        if s == "amount":
            prompt = t("enter_amount") if self.original is None else t(
                "refund_up_to", amount=fmt(self.amount.max_minor))
            show(self.title(), [prompt] + err, t("footer_entry"),
                 masked=self.currency + " " + self.amount.shown())
        elif s == "method":
            # three rows: what went wrong, when something did, takes the amount's place
            first = err or ["%s %s" % (self.currency, fmt(self.amount.value))]
            if self.term.payments.qr is not None and self.original is None:
                show(self.title(), first + ["1 %s  2 %s" % (t("pay_card"), t("pay_cash")),
                                            "3 %s 4 %s" % (t("pay_qr"), t("qrs_show"))],
                     t("footer_back"))
            else:
                show(self.title(), first + ["1 " + t("pay_card"), "2 " + t("pay_cash")],
                     t("footer_back"))
        elif s == "tendered":
            show(t("pay_cash"), [t("total_is", amount=fmt(self.amount.value))] + (err or [t("enter_tendered")]),
                 t("footer_tendered"), masked=self.tendered.shown())
        elif s == "change":
            note = [t(self.printer_note)] if self.printer_note else [t("printing")]
            if self.original is not None:
                show(t("pay_back"), note, t("footer_continue"), big=fmt(self.amount.value), alert="ok")
            else:
                show(t("change_due"), note, t("footer_continue"),
                     big=fmt(self.tendered.value - self.amount.value), alert="ok")
        elif s == "card":
            chip = self.term.payments.chip_reader is not None
            prompt = t("present_card") if chip else t("swipe_card")
            # three rows: with the contactless lights under it, an error takes the
            # prompt's place (the lights still say "present a card")
            lines = [t("total_is", amount=fmt(self.amount.value))]
            if chip:
                lines += (err or [prompt]) + [self.term.cl_indicator()]
            else:
                lines += err + [prompt]
            show(self.title(), lines, t("footer_back"))
        elif s == "card_error":
            again = t("fallback_swipe") if self.fallback else t("swipe_again")
            show(self.title(), [t(self.error), again], t("footer_back"), alert="error")
        elif s == "pin":
            show(t("enter_pin"), [t("total_is", amount=fmt(self.amount.value))] + err,
                 t("footer_entry"), masked=self.pin.shown())
        elif s in ("authorising", "qr_refund"):
            show(self.title(), [t("authorising"), t("do_not_remove")], t("footer_wait"))
        elif s in ("result", "copy", "closing"):
            self._render_result()

    def _render_result(self):
        """The outcome big, with at most two rows under it; then the customer-copy
        question on a screen of its own (three rows: what, the question, the printer)."""
        t = self.t
        rec = self.rec
        amount = format_amount(rec["amount"], rec["currency"])
        note = [t(self.printer_note)] if self.printer_note else []
        if self.state != "result":
            # the outcome in the title bar (its badge says which), the amount, then
            # the question or what the printer does
            ask = [t("customer_copy_q")] if self.state == "copy" else note or [t("printing")]
            footer = t("footer_copy") if self.state == "copy" else t("footer_continue")
            lines = [amount] + ask
            if self.state == "copy":
                lines += note
            self.term.show(self._outcome_word(), lines, footer, alert=self._alert())
            return
        if rec["state"] == "approved":
            # the operator must know the money is not with the bank yet
            second = [t("offline_line")] if rec["offline"] else \
                [t("auth_code_is", code=rec["auth_code"])] if rec["auth_code"] else []
            lines = [amount] + (second or note)
        elif rec["state"] == "sending":             # a QR refund the terminal finishes
            lines = [t("qr_pending")] + note
        elif rec["state"] == "declined" and rec["method"] == "qr" and rec["reason"]:
            lines = [t(rec["reason"])] + note       # the acquirer's refusal, in words
        elif rec["state"] == "declined":
            lines = [t("rc_" + rec["rc"]) if t("rc_" + rec["rc"]) != "rc_" + rec["rc"]
                     else t("rc_other", rc=rec["rc"])] + note
        else:
            lines = [t(rec["reason"] or "reason_no_reply")] + note
        self.term.show(self.title(), lines, t("footer_continue"), big=self._outcome_word(),
                       alert=self._alert())

    def _outcome_word(self):
        state = self.rec["state"]
        return self.t("approved" if state == "approved" else
                      "declined" if state == "declined" else
                      "pending_word" if state == "sending" else "not_charged")

    def _alert(self):
        return "ok" if self.rec["state"] == "approved" else "error"


class RefundFlow(SaleFlow):
    """A refund of original: an amount typed (a keyed-amount sale), or, for an item
    sale, the lines chosen before (part: firmware/retail/refund.py make_part), whose
    total is the amount and which every record of the refund carries. A QR payment is
    refunded through the QR acquirer (firmware/payments/qr_refund.py)."""
    NAME = "refund"
    KIND = "refund"
    STATES = dict(SaleFlow.STATES)
    STATES["qr_refund"] = {"enter": "send_qr_refund", "timeout": None,
                           "on": {"authorised": "answered"}}

    def send_qr_refund(self):
        self.BUSY = True
        self.rec = self.term.payments.qr_refunds.refund(self.original, self.amount.value,
                                                        self._authorised)
        return None

    def __init__(self, term, original=None, part=None):
        SaleFlow.__init__(self, term, original=original)
        self.part = part
        if part is not None:
            self.amount.value = part["total"]

    def start(self):
        if self.part is None:
            SaleFlow.start(self)
            return
        from firmware.retail.refund import part_json
        self.term.payments.cart = part_json(self.part)
        nxt = self.amount_done(None)
        if nxt is None:                 # refused (the card cannot be read now): back
            self.term.payments.cart = None
            self.finish(None)
            return
        self.goto(nxt)

    def back_to_method(self, ev):
        if self.part is not None:       # back to the lines, which keep their picks
            self.term.set_cl_lights(0)
            self._forget_card()
            self.finish(None)
            return None
        return SaleFlow.back_to_method(self, ev)

    def _drop_cart(self):
        if self.part is not None and self.term.payments is not None:
            self.term.payments.cart = None
