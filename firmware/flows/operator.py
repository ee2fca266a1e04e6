"""Creating an operator: role, ID, PIN twice. Used by first-run setup and Settings."""
from firmware.security import auth
from firmware.core import keys
from firmware.flows.common import Field
from firmware.core.fsm import Flow

ENTRY = "entry_timeout_s"


class NewOperatorFlow(Flow):
    NAME = "new_operator"
    INITIAL = "role"
    STATES = {
        "role": {"enter": "enter_role", "timeout": ENTRY,
                 "on": {"1": "pick_role", "2": "pick_role", "3": "pick_role",
                        keys.CANCEL: "cancel"}},
        "id": {"enter": "enter_id", "timeout": ENTRY,
               "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                      keys.ENTER: "id_done", keys.CANCEL: "id_back"}},
        "pin": {"enter": "enter_pin", "timeout": ENTRY,
                "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                       keys.ENTER: "pin_done", keys.CANCEL: "pin_back"}},
        "confirm": {"enter": "enter_confirm", "timeout": ENTRY,
                    "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                           keys.ENTER: "confirm_done", keys.CANCEL: "pin_back"}},
        "done": {"timeout": 3000,
                 "on": {keys.ENTER: "close", keys.CANCEL: "close", "timeout": "close"}},
    }

    def __init__(self, term, role=None):
        Flow.__init__(self, term)
        self.fixed_role = role
        self.role = role
        self.field = Field(auth.ID_MAX)
        self.op_id = ""
        self.pin = ""
        self.error = None
        self.created = None

    def enter_role(self):
        return "id" if self.fixed_role else None

    def pick_role(self, ev):
        self.role = auth.ROLES[int(ev.get("key")) - 1]
        return "id"

    def enter_id(self):
        self.field = Field(auth.ID_MAX)
        self.field.value = self.op_id

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def id_done(self, ev):
        value = self.field.value
        if not auth.valid_id(value):
            self.error = "err_id_format"
            return None
        if self.term.store.get_operator(value) is not None:
            self.error = "err_id_taken"
            return None
        self.op_id = value
        return "pin"

    def id_back(self, ev):
        if self.fixed_role:
            return self.cancel()
        self.op_id = ""
        return "role"

    def enter_pin(self):
        self.field = Field(auth.PIN_MAX, masked=True)
        self.pin = ""

    def pin_done(self, ev):
        value = self.field.value
        if not auth.valid_pin(value):
            self.error = "err_pin_format"
            self.field.clear()
            return None
        if auth.weak_pin(value, self.op_id):
            self.error = "err_pin_weak"
            self.field.clear()
            return None
        self.pin = value
        self.field.clear()
        return "confirm"

    def pin_back(self, ev):
        self.pin = ""
        return "id"

    def enter_confirm(self):
        self.field = Field(auth.PIN_MAX, masked=True)

    def confirm_done(self, ev):
        same = self.field.value == self.pin
        self.field.clear()
        if not same:
            self.error = "err_pin_mismatch"
            return "pin"
        name = self.t("role_" + self.role) + " " + self.op_id
        creator = self.term.operator["id"] if self.term.operator else ""
        # a PIN another person typed is a one-time PIN: the new operator chooses their
        # own at the first login (the first run's supervisor typed its own)
        self.created = self.term.auth.create(self.op_id, name, self.role, self.pin,
                                             must_change=bool(creator))
        self.pin = ""
        self.term.store.audit("operator_added", creator, "%s %s" % (self.op_id, self.role))
        self.term.beep("ok")
        return "done"

    def close(self, ev):
        self.finish(self.created)

    def goto(self, state):
        if state == "pin" and self.error != "err_pin_mismatch":
            self.error = None
        Flow.goto(self, state)

    def render(self):
        t = self.t
        title = t("new_op_title", role=t("role_" + self.role)) if self.role else t("new_op")
        err = [t(self.error)] if self.error else []
        if self.state == "role":
            self.term.show(t("choose_role"), ["1 " + t("role_cashier"),
                                              "2 " + t("role_supervisor"), "3 " + t("role_technician")],
                           t("footer_back"))
        elif self.state == "id":
            self.term.show(title, [t("enter_new_id")] + err, t("footer_entry"),
                           masked=self.field.shown())
        elif self.state in ("pin", "confirm"):
            prompt = t("enter_new_pin") if self.state == "pin" else t("confirm_pin")
            self.term.show(title, [prompt] + err, t("footer_entry"), masked=self.field.shown())
        elif self.state == "done":
            self.term.show(title, [t("op_created", id=self.op_id)], t("footer_ok"), alert="ok")
