"""A supervisor's ID and PIN, asked for on the spot (void, refund)."""
from firmware.security import auth
from firmware.core import keys
from firmware.flows.common import Field
from firmware.core.fsm import Flow

ENTRY = "entry_timeout_s"


class SupervisorFlow(Flow):
    NAME = "supervisor"
    INITIAL = "id"
    STATES = {
        "id": {"enter": "enter_id", "timeout": ENTRY,
               "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                      keys.ENTER: "id_done", keys.CANCEL: "cancel"}},
        "pin": {"enter": "enter_pin", "timeout": ENTRY,
                "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                       keys.ENTER: "pin_done", keys.CANCEL: "back"}},
    }

    def __init__(self, term, purpose):
        Flow.__init__(self, term)
        self.purpose = purpose           # message id of what is being approved
        self.field = Field(auth.ID_MAX)
        self.op_id = ""
        self.error = None

    def enter_id(self):
        self.field = Field(auth.ID_MAX)
        # a logged-in supervisor approves with their own PIN: ID already known
        if self.term.role() == "supervisor" and not self.op_id and not self.error:
            self.op_id = self.term.operator["id"]
            return "pin"
        return None

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def id_done(self, ev):
        if not self.field.value:
            return None
        self.op_id = self.field.value
        return "pin"

    def enter_pin(self):
        self.field = Field(auth.PIN_MAX, masked=True)

    def back(self, ev):
        self.op_id = ""
        self.error = "sup_other"
        return "id"

    def pin_done(self, ev):
        pin = self.field.value
        self.field.clear()
        op, reason = self.term.auth.supervisor_ok(self.op_id, pin)
        pin = None
        if op is None:
            self.term.beep("error")
            self.term.store.audit("supervisor_refused", self.op_id, self.purpose + " " + reason)
            self.error = {"locked": "err_locked_short", "not_supervisor": "err_not_supervisor"}.get(
                reason, "err_login")
            self.op_id = ""
            return "id"
        self.term.store.audit("supervisor_ok", op["id"], self.purpose)
        self.finish(op)
        return None

    def render(self):
        t = self.t
        err = [t(self.error)] if self.error else []
        if self.state == "id":
            # two rows and the field: an error takes the place of what it is for
            self.term.show(t("sup_title"), (err or [t(self.purpose)]) + [t("sup_id")],
                           t("footer_entry"), masked=self.field.shown())
        else:
            self.term.show(t("sup_title"), (err or [t(self.purpose)]) + [t("enter_pin_for", id=self.op_id)],
                           t("footer_entry"), masked=self.field.shown())
