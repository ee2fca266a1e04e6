"""A new PIN for the operator: asked at login when the PIN is too old or a supervisor
reset it (forced: the PIN was just proven), or chosen in Settings (the old PIN first).
Weak PINs and the last [auth] pin_history PINs are refused."""
from firmware.security import auth
from firmware.core import keys
from firmware.flows.common import Field, entry_keys as _on
from firmware.core.fsm import Flow

ENTRY = "entry_timeout_s"


class PinChangeFlow(Flow):
    NAME = "pin_change"
    INITIAL = "old"
    STATES = {
        "old": {"enter": "enter_old", "timeout": ENTRY,
                "on": _on(**{keys.ENTER: "old_done", keys.CANCEL: "cancel", "timeout": "cancel"})},
        "new": {"enter": "enter_field", "timeout": ENTRY,
                "on": _on(**{keys.ENTER: "new_done", keys.CANCEL: "cancel", "timeout": "cancel"})},
        "confirm": {"enter": "enter_field", "timeout": ENTRY,
                    "on": _on(**{keys.ENTER: "confirm_done", keys.CANCEL: "back_new",
                                 "timeout": "cancel"})},
        "done": {"timeout": 3000,
                 "on": {keys.ENTER: "close", keys.CANCEL: "close", "timeout": "close"}},
    }

    def __init__(self, term, op, forced=""):
        """forced: "expired" or "reset" (asked at login, the PIN just proven), or ""."""
        Flow.__init__(self, term)
        self.op = op
        self.forced = forced
        self.field = Field(auth.PIN_MAX, masked=True)
        self.pin = ""
        self.error = None

    def enter_old(self):
        if self.forced:
            return "new"
        self.field = Field(auth.PIN_MAX, masked=True)
        return None

    def enter_field(self):
        self.field = Field(auth.PIN_MAX, masked=True)

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def old_done(self, ev):
        pin = self.field.value
        self.field.clear()
        if not pin:
            return None
        op, reason = self.term.auth.check(self.op["id"], pin)
        pin = None
        if op is None:
            self.term.beep("error")
            self.term.store.audit("login_failed", self.op["id"], "pin_change " + reason)
            if reason == "locked":
                # the lockout that a login would meet: the session ends here
                self.stop()
                self.term.logout("locked")
                return None
            self.error = "err_login"
            return None
        return "new"

    def new_done(self, ev):
        value = self.field.value
        self.field.clear()
        if not value:
            return None
        problem = self.term.auth.pin_problem(self.op["id"], value)
        if problem is not None:
            self.term.beep("error")
            self.error = problem
            return None
        self.pin = value
        return "confirm"

    def back_new(self, ev):
        self.pin = ""
        return "new"

    def confirm_done(self, ev):
        same = self.field.value == self.pin
        self.field.clear()
        if not same:
            self.term.beep("error")
            self.error = "err_pin_mismatch"
            self.pin = ""
            return "new"
        self.term.auth.set_pin(self.op["id"], self.pin)
        self.pin = ""
        self.term.store.audit("pin_changed", self.op["id"], self.forced or "own choice")
        self.term.beep("ok")
        return "done"

    def close(self, ev):
        self.finish(True)

    def cancel(self, ev):
        self.pin = ""
        self.field.clear()
        self.finish(None)

    def goto(self, state):
        if state == "new" and self.error != "err_pin_mismatch":
            self.error = None
        Flow.goto(self, state)

    def render(self):
        t = self.t
        err = [t(self.error)] if self.error else []
        if self.state == "done":
            self.term.show(t("pc_title"), [t("pc_done")], t("footer_ok"), alert="ok")
            return
        if self.state == "old":
            prompt = [t("pc_old")]
        elif self.state == "new":
            why = {"expired": "pc_expired", "reset": "pc_reset"}.get(self.forced)
            prompt = ([t(why)] if why and not err else []) + [t("enter_new_pin")]
        else:
            prompt = [t("confirm_pin")]
        self.term.show(t("pc_title"), (err + prompt)[-2:], t("footer_entry"),
                       masked=self.field.shown())
