"""Settings > Host certificate: what the alarm saw, and its clearing by a technician.

Only a technician's ID and PIN clear it (a logged-in technician types only the PIN):
the person who clears it vouches that the host, its certificate, the pinned CA file
and the clock were checked (docs/payments.md, "Host certificate not trusted"). Every
attempt, refused or not, is audited.
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.core.store import is_fault
from firmware.flows.common import Field
from firmware.security import auth

ENTRY = "entry_timeout_s"
TECHNICIAN = "technician"


class HostTrustFlow(Flow):
    NAME = "host_trust"
    INITIAL = "show"
    STATES = {
        "show": {"timeout": "menu_timeout_s",
                 "on": {keys.ENTER: "ask", keys.CANCEL: "cancel"}},
        "id": {"enter": "enter_id", "timeout": ENTRY,
               "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                      keys.ENTER: "id_done", keys.CANCEL: "cancel"}},
        "pin": {"enter": "enter_pin", "timeout": ENTRY,
                "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                       keys.ENTER: "pin_done", keys.CANCEL: "other_id"}},
        "done": {"timeout": 8000,
                 "on": {keys.ENTER: "cancel", keys.CANCEL: "cancel", "timeout": "cancel"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.field = Field(auth.ID_MAX)
        self.op_id = ""
        self.error = None
        self.result = []

    def ask(self, ev):
        # a logged-in technician vouches with their own PIN: the ID is known
        if self.term.role() == TECHNICIAN:
            self.op_id = self.term.operator["id"]
            return "pin"
        return "id"

    def enter_id(self):
        self.field = Field(auth.ID_MAX)

    def enter_pin(self):
        self.field = Field(auth.PIN_MAX, masked=True)

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def id_done(self, ev):
        if not self.field.value:
            return None
        self.op_id = self.field.value
        return "pin"

    def other_id(self, ev):
        self.op_id = ""
        return "id"

    def pin_done(self, ev):
        pin = self.field.value
        self.field.clear()
        op, reason = self.term.auth.check(self.op_id, pin)
        pin = None
        if op is not None and op["role"] != TECHNICIAN:
            op, reason = None, "not_technician"
        if op is None:
            self.term.beep("error")
            self.term.store.audit("technician_refused", self.op_id, "host_trust_clear " + reason)
            self.error = {"locked": "err_locked_short", "not_technician": "err_not_technician"}.get(
                reason, "err_login")
            self.op_id = ""
            return "id"
        try:
            self.term.payments.trust.clear(op["id"])
        except Exception as exc:        # the card would not take it: still untrusted
            if not is_fault(exc):
                raise
            self.term.beep("error")
            self.result = [self.t("reason_storage")]
            return "done"
        self.term.beep("ok")
        self.result = [self.t("trust_cleared"), self.t("trust_offline_back")]
        return "done"

    def render(self):
        t = self.t
        show = self.term.show
        if self.state == "show":
            state = self.term.payments.trust.state() or {"kind": "other", "utc": ""}
            utc = state["utc"]
            lines = [t("reason_host_untrusted"), t("trust_" + state["kind"])]
            if len(utc) >= 16:          # 2025-03-01T09:30:00Z -> 03-01 09:30
                lines.append(t("trust_since", when=utc[5:10] + " " + utc[11:16]))
            show(t("trust_title"), lines, t("footer_trust_clear"), alert="error")
        elif self.state == "done":
            show(t("trust_title"), self.result, t("footer_ok"),
                 alert="ok" if len(self.result) > 1 else "error")
        else:
            # two rows and the field: an error takes the place of what it is for
            err = [t(self.error)] if self.error else [t("trust_clear")]
            ask = t("tech_id") if self.state == "id" else t("enter_pin_for", id=self.op_id)
            show(t("role_technician"), err + [ask], t("footer_entry"), masked=self.field.shown())
