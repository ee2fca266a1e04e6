"""A supervisor's ID and PIN, asked for on the spot (void, refund, ...).

For what permissions.SECOND_PERSON names (money back, price overrides, people, limits,
exports, a Z's reprint) the supervisor must be another person than the operator
acting when [auth] second_person is on: a supervisor logged in is not asked for their
own PIN then, and their own ID is refused ("Another supervisor")."""
from firmware.security import auth, permissions
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
        "mfa": {"timeout": None, "on": {}},         # MfaCheckFlow on top
    }

    # what a purpose is to [mfa] actions: the supervisor's authenticator code too
    MFA_ACTIONS = {"off_export": "export"}

    def __init__(self, term, purpose):
        Flow.__init__(self, term)
        self.purpose = purpose           # message id of what is being approved
        self.field = Field(auth.ID_MAX)
        self.op_id = ""
        self.error = None
        section = term.config.get("auth") or {}
        self.second = section.get("second_person", True) and \
            permissions.needs_second_person(purpose)
        self.acting = term.operator["id"] if term.operator else ""
        if self.second and purpose == "op_manage" and not self._other_supervisor():
            # the only supervisor may add the second one: else no terminal could ever
            # have one (audited as such)
            self.second = False
            self.sole = True
        else:
            self.sole = False
        self.approver = None

    def _other_supervisor(self):
        try:
            ops = self.term.store.list_operators()
        except Exception:
            return True
        return any(op["role"] == "supervisor" and op.get("active", True)
                   and op["id"] != self.acting for op in ops)

    def enter_id(self):
        self.field = Field(auth.ID_MAX)
        # a logged-in supervisor approves with their own PIN: ID already known (unless
        # a second person must approve)
        if self.term.role() == "supervisor" and not self.op_id and not self.error \
                and not self.second:
            self.op_id = self.term.operator["id"]
            return "pin"
        return None

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def id_done(self, ev):
        if not self.field.value:
            return None
        if self.second and self.field.value == self.acting:
            self.term.beep("error")
            self.error = "err_same_person"
            self.field.clear()
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
        action = self.MFA_ACTIONS.get(self.purpose)
        if action:
            from firmware.flows.mfa import MfaCheckFlow, mfa_required
            if mfa_required(self.term, op, action):
                self.approver = op
                self.term.push(MfaCheckFlow(self.term, op, action))
                return "mfa"
        return self._approved(op)

    def _approved(self, op):
        detail = self.purpose
        if self.second:
            detail += " for " + (self.acting or "-")
        elif self.sole:
            detail += " sole supervisor"
        self.term.store.audit("supervisor_ok", op["id"], detail)
        self.finish(op)
        return None

    def child_done(self, child, result):
        op, self.approver = self.approver, None
        if result is not None and op is not None:
            return self._approved(op)
        self.op_id = ""
        self.error = "err_login"
        return "id"

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
