"""A chip or contactless card inside a sale: the EMV kernel's steps, turned into reader
exchanges, PIN entry, the cardholder's application choice and the online request.

The kernel (firmware.cards.emv.kernel) never waits; this flow carries each of its Steps out
and hands the answer back: an APDU goes to the card reader and its answer comes back
as an "apdu" event; a PIN is typed here; "go_online" becomes a 0200 with DE55 through
the payments service, whose answer (and the issuer's tag 91) returns to the kernel for
the second GENERATE AC. The flow ends with the kernel's outcome and the journal record.
"""
from firmware.core import events, keys
from firmware.cards.emv import tlv
from firmware.cards.emv.kernel import Kernel
from firmware.flows.common import Field, PinEntry
from firmware.core.fsm import Flow
from firmware.cards.magstripe import CardData

ENTRY = "entry_timeout_s"
CARD_WAIT = 30000       # a card that stops answering for this long is a failed read


class ChipFlow(PinEntry, Flow):
    NAME = "chip"
    INITIAL = "reading"
    STATES = {
        # "reading" starts the kernel; "working" carries on after a PIN, a choice or the
        # host's answer (re-entering "reading" would start a second transaction)
        "reading": {"enter": "begin", "timeout": CARD_WAIT,
                    "on": {"apdu": "answered", "card_removed": "removed",
                           keys.CANCEL: "abort", "timeout": "abort"}},
        "working": {"timeout": CARD_WAIT,
                    "on": {"apdu": "answered", "card_removed": "removed",
                           keys.CANCEL: "abort", "timeout": "abort"}},
        "choose": {"timeout": ENTRY,
                   "on": {"digit": "chosen", keys.CANCEL: "abort", "card_removed": "removed",
                          "timeout": "abort"}},
        "pin": {"enter": "enter_pin", "timeout": ENTRY,
                "on": {"digit": "type_pin", keys.BKSP: "type_pin", keys.CLEAR: "type_pin",
                       keys.ENTER: "pin_done", keys.F1: "pin_bypass", keys.CANCEL: "abort",
                       "card_removed": "removed", "timeout": "abort"}},
        # The request is at the host: only its answer (or the payments service's own
        # timeout, which reverses) ends this state.
        "online": {"timeout": None,
                   "on": {"authorised": "host_answered", "card_removed": "removed_online"}},
        # issue 15: the card's anomaly checks hit; flows.limit_gate runs above this state
        "gate": {"enter": "open_gate", "timeout": None, "on": {}},
    }

    def __init__(self, term, kind, amount, interface="contact", original=None):
        Flow.__init__(self, term)
        self.kind = kind
        self.amount = amount
        self.interface = interface
        self.original = original
        self.kernel = None
        self.step = None
        self.pin = Field(12, masked=True)
        self.online_pin = None
        self.choices = []
        self.rec = None
        self.error = None
        self.outcome = None

    # -- the kernel's steps --------------------------------------------------
    def begin(self):
        term = self.term
        y, mo, d, h, mi, s = term.system.local_time()
        txn = {"amount": self.amount, "type": "refund" if self.kind == "refund" else "purchase",
               "date": ("%02d%02d%02d" % (y % 100, mo, d)) if term.system.clock_synced() else None,
               "time": "%02d%02d%02d" % (h, mi, s), "interface": self.interface,
               "unpredictable": term.system.random_bytes,
               # ask the host while it is believed reachable; when it is known to be
               # down, the card may approve offline at once (Y1) within the floor limit
               "online_preferred": term.payments.online_preferred(
                   self.kind, self.amount, "tap" if self.interface == "contactless" else "chip")}
        self.kernel = Kernel(term.payments.emv_config(), txn)
        return self._follow(self.kernel.start())

    def _follow(self, step):
        """Carry out one Step; return the state to go to (or None to stay)."""
        self.step = step
        if self.interface == "contactless":
            self._lights(step)
        if "send" in step:
            self.term.payments.card_exchange(step["send"], self._apdu_answer)
            return None
        if "ask_pin" in step:
            self.error = "err_pin_wrong_offline" if step.get("retry") else None
            return "pin"
        if "choose_app" in step:
            self.choices = step["choose_app"]
            return "choose"
        if "go_online" in step:
            return self._go_online(step)
        self._finish_with(step["done"])
        return None

    def _lights(self, step):
        """EMV contactless lights and tones: 3 while the card is read; all four and the
        success tone once the card may leave the field; the alert tone on failure."""
        term = self.term
        done = step.get("done")
        if done is not None:
            if done.get("result") == "failed" or done.get("reason") in ("card_removed", "try_contact"):
                term.set_cl_lights(0)
                term.beep("alert")
            elif term.cl_lights < 4:
                term.set_cl_lights(4)
                term.beep("ok")
        elif "go_online" in step or step.get("tap_complete"):
            term.set_cl_lights(4)               # read: the card can be taken away
            term.beep("ok")
        elif term.cl_lights < 3:
            term.set_cl_lights(3)

    def _apdu_answer(self, result):
        if not self.finished:
            self.dispatch(events.Event("apdu", result=result))

    def answered(self, ev):
        result = ev.get("result")
        rapdu = result["rapdu"] if result.get("ok") else None
        return self._follow(self.kernel.on_response(rapdu))

    def chosen(self, ev):
        i = int(ev.get("key")) - 1
        if i < 0 or i >= len(self.choices):
            return None
        return self._follow_from("working", self.kernel.on_cardholder_choice(i))

    def _follow_from(self, state, step):
        nxt = self._follow(step)
        return nxt if nxt is not None else (state if not self.finished else None)

    # -- PIN --------------------------------------------------------------------
    def pin_done(self, ev):
        if self.pin_too_short():
            return None
        pin = self.pin.value
        self.pin.clear()
        if self.step["ask_pin"] == "online":
            self.online_pin = pin          # encrypted under DUKPT with the request
            step = self.kernel.on_pin(True)
        else:
            step = self.kernel.on_pin(pin)  # the kernel sends VERIFY and wipes its copy
        pin = None
        return self._follow_from("working", step)

    def pin_bypass(self, ev):
        """F1: the cardholder cannot enter a PIN (the card's CVM list decides)."""
        self.pin.clear()
        return self._follow_from("working", self.kernel.on_pin(None))

    # -- online -----------------------------------------------------------------
    def _go_online(self, step):
        # issue 15: the card is known now, before its authorisation goes out
        from firmware.cards.magstripe import mask_pan
        from firmware.payments.checks import card_hits
        hits = card_hits(self.term, self.kind, self.amount, mask_pan(step["card"]["pan"]))
        if hits:
            self.gate_hits = hits
            return "gate"
        return self._send_online(step)

    def open_gate(self):
        from firmware.flows.limit_gate import LimitGateFlow
        self.term.push(LimitGateFlow(self.term, self.gate_hits))

    def child_done(self, child, result):
        if child.NAME != "limit_gate":
            return None
        if result is None:                  # not approved: the card is told, nothing sent
            self.online_pin = None
            return self._follow_from("working", self.kernel.cancel())
        return self._send_online(self.step)

    def _send_online(self, step):
        card = step["card"]
        track2 = card.get("track2") or ""
        service = track2.split("=", 1)[1][4:7] if "=" in track2 else "201"
        data = CardData(card["pan"], "", card.get("expiry") or "", service, track2=track2 or None,
                        entry_mode="tap" if self.interface == "contactless" else "chip")
        aid = self.kernel.aid or b""
        emv = {"de55": tlv.de55_hex(step["go_online"]), "pan_seq": card.get("pan_seq"),
               "aid": "".join("%02X" % b for b in aid), "label": self.kernel.label or ""}
        pin = self.online_pin
        self.online_pin = None
        self.rec = self.term.payments.authorise(self.kind, self.amount, data, pin, self._authorised,
                                                original=self.original, emv=emv)
        pin = None
        return "online"

    def _authorised(self, rec):
        self.rec = rec
        if not self.finished:
            self.dispatch(events.Event("authorised"))

    def host_answered(self, ev):
        rec = self.rec
        if rec["state"] in ("approved", "declined"):
            iad = rec.get("issuer_data")
            step = self.kernel.on_online_result(rec["rc"], iad)
        else:
            # no trustworthy answer (the payments service is reversing what it sent):
            # when the host simply could not be reached and the merchant's policy
            # allows it, the card decides by its default action codes (Y3/Z3);
            # otherwise it is asked to decline
            allowed = bool(rec.get("host_unreachable")) and self.term.payments.offline_refusal(
                self.kind, self.amount, self._entry(), self.kernel.cvm) is None
            step = self.kernel.on_online_result(None, offline_allowed=allowed)
        return self._follow_from("working", step)

    def _entry(self):
        return "tap" if self.interface == "contactless" else "chip"

    def removed_online(self, ev):
        # whatever the host answers, it is reversed: the card cannot finish it
        self.term.payments.cancel(self.rec["id"], "reason_card_removed")
        return None

    # -- endings ----------------------------------------------------------------
    def removed(self, ev):
        return self._follow_from("working", self.kernel.on_card_removed())

    def abort(self, ev=None):
        if self.kernel is None or self.kernel.done:
            return self._finish_with({"result": "failed", "approved": False, "reason": "cancelled"})
        return self._follow_from("working", self.kernel.cancel())

    def _finish_with(self, outcome):
        self.outcome = outcome
        if self.rec is not None:
            self.rec = self.term.payments.chip_complete(self.rec["id"], outcome)
        elif outcome.get("approved") and not outcome.get("online"):
            # the card approved offline at once (Y1): the advice is queued first
            self.rec = self.term.payments.chip_offline(self.kind, self.amount, outcome,
                                                       self._entry())
        self.finish(self)

    def render(self):
        t = self.t
        if self.state in ("reading", "working"):
            if self.interface == "contactless":
                lines = [t("tap_reading"), self.term.cl_indicator()]
            else:
                lines = [t("chip_reading"), t("do_not_remove")]
            self.term.show(t("menu_" + self.kind), lines, t("footer_wait"))
        elif self.state == "choose":
            self.term.show(t("choose_app"), ["%d %s" % (i + 1, c) for i, c in enumerate(self.choices)],
                           t("footer_back"))
        elif self.state == "pin":
            err = [t(self.error)] if self.error else []
            tries = self.step.get("tries_left") if self.step else None
            extra = [t("pin_tries_left", n=tries)] if tries is not None and tries < 3 else []
            self.term.show(t("enter_pin"), err + extra or [t("offline_pin") if self.step["ask_pin"] == "offline"
                                                      else t("online_pin")],
                           t("footer_pin"), masked=self.pin.shown())
        elif self.state == "online":
            second = self.term.cl_indicator() if self.interface == "contactless" else t("do_not_remove")
            self.term.show(t("menu_" + self.kind), [t("authorising"), second], t("footer_wait"))
