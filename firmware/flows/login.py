"""Login: operator ID, then PIN. [auth] max_failures wrong PINs lock that ID out for
[auth] lockout_min (kept across restarts); a PIN too old or reset by a supervisor is
changed before anything else."""
from firmware.security import auth
from firmware.core import keys
from firmware.flows.common import Field
from firmware.core.fsm import Flow

ENTRY = "entry_timeout_s"


class LoginFlow(Flow):
    NAME = "login"
    INITIAL = "id"
    STATES = {
        "id": {"enter": "enter_id", "timeout": ENTRY,
               "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                      keys.ENTER: "id_done", keys.CANCEL: "clear_id",
                      keys.F2: "toggle_language", "timeout": "clear_id"}},
        "pin": {"enter": "enter_pin", "timeout": ENTRY,
                "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                       keys.ENTER: "pin_done", keys.CANCEL: "clear_id", "timeout": "clear_id"}},
        "locked": {"enter": "enter_locked", "timeout": 1000,
                   "on": {keys.CANCEL: "clear_id", "timeout": "tick_locked"}},
        "change": {"timeout": None, "on": {}},      # MfaCheckFlow or PinChangeFlow on top
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.field = Field(auth.ID_MAX)
        self.op_id = ""
        self.error = None
        self.pending = None

    def enter_id(self):
        self.field = Field(auth.ID_MAX)
        self.field.value = self.op_id

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def clear_id(self, ev):
        self.op_id = ""
        self.error = None
        return "id"

    def toggle_language(self, ev):
        self.term.set_language("zh" if self.t.lang == "en" else "en")

    def id_done(self, ev):
        if not self.field.value:
            return None
        self.op_id = self.field.value
        if self.term.auth.locked_for(self.op_id):
            return "locked"
        return "pin"

    def enter_pin(self):
        self.field = Field(auth.PIN_MAX, masked=True)

    def pin_done(self, ev):
        if not self.field.value:
            return None
        pin = self.field.value
        self.field.clear()
        op, reason = self.term.auth.check(self.op_id, pin)
        pin = None
        if op is not None:
            from firmware.flows.mfa import MfaCheckFlow, mfa_required
            if mfa_required(self.term, op, "login"):
                # [mfa] at_login: the authenticator's code before anything else
                self.pending = op
                self.term.push(MfaCheckFlow(self.term, op, "login"))
                return "change"
            if op.get("must_change"):
                # the PIN is proven but too old or a one-time one: a new PIN first
                from firmware.flows.pin_change import PinChangeFlow
                self.pending = op
                self.term.push(PinChangeFlow(self.term, op, forced=op["must_change"]))
                return "change"
            return self._in(op)
        self.term.beep("error")
        self.term.store.audit("login_failed", self.op_id, reason)
        if reason == "locked":
            self.term.store.audit("lockout", self.op_id, "%d min" % (
                self.term.auth.policy.lockout_ms // 60000))
            return "locked"
        self.error = "err_login_inactive" if reason == "inactive" else "err_login"
        self.op_id = ""
        return "id"

    def _in(self, op):
        self.stop()
        self.term.login(op)
        self.term.beep("ok")
        self.term.go_home()     # replaces this flow with the idle screen
        return None

    def child_done(self, child, result):
        op, self.pending = self.pending, None
        if child.NAME == "mfa_check" and result is not None and op is not None:
            if op.get("must_change"):
                from firmware.flows.pin_change import PinChangeFlow
                self.pending = op
                self.term.push(PinChangeFlow(self.term, op, forced=op["must_change"]))
                return "change"
            return self._in(op)
        if child.NAME == "pin_change" and result and op is not None:
            op["must_change"] = ""
            return self._in(op)
        self.op_id = ""
        self.error = ("pc_needed" if child.NAME == "pin_change" else "err_login") \
            if op is not None else None
        return "id"

    def enter_locked(self):
        if not self.term.auth.locked_for(self.op_id):
            return "id"
        return None

    def tick_locked(self, ev):
        if self.term.auth.locked_for(self.op_id):
            return "locked"     # re-enter: the countdown redraws every second
        self.op_id = ""
        return "id"

    def render(self):
        t = self.t
        err = [t(self.error)] if self.error else []
        if self.state == "id":
            self.term.show(t("login_title"), [t("enter_id")] + err, t("footer_login"),
                           masked=self.field.shown())
        elif self.state == "pin":
            self.term.show(t("login_title"), [t("enter_pin_for", id=self.op_id)] + err,
                           t("footer_entry"), masked=self.field.shown())
        elif self.state == "locked":
            secs = (self.term.auth.locked_for(self.op_id) + 999) // 1000
            wait = t("try_again_in", s=secs) if secs < 120 else \
                t("try_again_min", m=(secs + 59) // 60)
            self.term.show(t("login_title"), [t("err_locked", id=self.op_id), wait],
                           t("footer_back"), alert="error")
