"""Settings > Operators, for supervisors: the list (ID, role, off or locked), add one,
change a role, disable or enable, give a one-time PIN (changed at the next login, and
the lockout ended). Opening it asks a supervisor other than the one logged in when
[auth] second_person is on (permissions.SECOND_PERSON: "op_manage"). The terminal
keeps one active supervisor at least: the last one cannot be disabled or demoted."""
from firmware.security import auth
from firmware.core import keys
from firmware.flows.common import Field, entry_keys as _on
from firmware.core.fsm import Flow

ENTRY = "entry_timeout_s"
MENU = "menu_timeout_s"


class OperatorsFlow(Flow):
    NAME = "operators"
    INITIAL = "supervisor"
    STATES = {
        "supervisor": {"enter": "ask", "timeout": None, "on": {}},
        "list": {"timeout": MENU,
                 "on": {keys.UP: "up", keys.DOWN: "down", keys.ENTER: "open",
                        keys.CANCEL: "cancel", keys.MENU: "cancel", "timeout": "cancel"}},
        "edit": {"timeout": MENU,
                 "on": {"1": "ask_role", "2": "toggle", "3": "ask_pin",
                        keys.CANCEL: "to_list", "timeout": "cancel"}},
        "role": {"timeout": MENU,
                 "on": {"1": "set_role", "2": "set_role", "3": "set_role",
                        keys.CANCEL: "to_edit", "timeout": "cancel"}},
        "pin": {"enter": "new_field", "timeout": ENTRY,
                "on": _on(**{keys.ENTER: "pin_done", keys.CANCEL: "to_edit", "timeout": "cancel"})},
        "confirm": {"enter": "new_field", "timeout": ENTRY,
                    "on": _on(**{keys.ENTER: "confirm_done", keys.CANCEL: "to_edit",
                                 "timeout": "cancel"})},
        "said": {"timeout": 8000,
                 "on": {keys.ENTER: "to_edit", keys.CANCEL: "to_edit", "timeout": "to_edit"}},
        "adding": {"timeout": None, "on": {}},
        "mfa": {"timeout": None, "on": {}},         # MfaCheckFlow on top
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.index = 0
        self.op = None              # the operator being edited
        self.approver = None        # the supervisor who said yes
        self.approver_op = None
        self.field = Field(auth.PIN_MAX, masked=True)
        self.pin = ""
        self.lines = []
        self.error = None

    # -- who may -----------------------------------------------------------------------
    def ask(self):
        if not self.term.can("operators"):
            self.term.refuse("operators", "set_operators")
            return None
        from firmware.flows.supervisor import SupervisorFlow
        self.term.push(SupervisorFlow(self.term, "op_manage"))
        return None

    def child_done(self, child, result):
        if child.NAME == "notice":
            self.finish(None)
            return None
        if child.NAME == "supervisor":
            if result is None:
                self.finish(None)
                return None
            self.approver = result["id"]
            self.approver_op = result
            return "list"
        if child.NAME == "mfa_check":       # a PIN reset: the approver's code given
            return "pin" if result is not None else "edit"
        return "list"         # NewOperatorFlow audits what it created

    def _audit(self, event, detail):
        who = self.term.operator["id"] if self.term.operator else ""
        if self.approver and self.approver != who:
            detail += " ok " + self.approver
        self.term.store.audit(event, who, detail)

    # -- the list ------------------------------------------------------------------------
    def _operators(self):
        return self.term.store.list_operators()

    def _rows(self):
        t = self.t
        rows = ["+ " + t("set_add_operator")]
        for op in self._operators():
            mark = ""
            if not op.get("active", True):
                mark = " " + t("op_off")
            elif self.term.auth.locked_for(op["id"]):
                mark = " " + t("op_locked")
            rows.append("%s %s%s" % (op["id"], t("role_" + op["role"]), mark))
        return rows

    def up(self, ev):
        n = len(self._rows())
        self.index = (self.index - 1) % n

    def down(self, ev):
        n = len(self._rows())
        self.index = (self.index + 1) % n

    def open(self, ev):
        if self.index == 0:
            from firmware.flows.operator import NewOperatorFlow
            self.term.push(NewOperatorFlow(self.term))
            return "adding"
        ops = self._operators()
        if self.index - 1 >= len(ops):
            return None
        self.op = ops[self.index - 1]
        return "edit"

    def to_list(self, ev):
        self.op = None
        return "list"

    def to_edit(self, ev):
        self.pin = ""
        self.field.clear()
        self.error = None
        if self.op is not None:
            self.op = self.term.store.get_operator(self.op["id"]) or self.op
        return "edit"

    def _say(self, *lines):
        self.lines = list(lines)
        return "said"

    # -- edits ---------------------------------------------------------------------------
    def _last_supervisor(self):
        """True when self.op is the only active supervisor left."""
        if self.op["role"] != "supervisor" or not self.op.get("active", True):
            return False
        others = [o for o in self._operators() if o["role"] == "supervisor"
                  and o.get("active", True) and o["id"] != self.op["id"]]
        return not others

    def _refused(self, msg):
        self.term.beep("error")
        return self._say(self.t(msg))

    def ask_role(self, ev):
        return "role"

    def set_role(self, ev):
        role = auth.ROLES[int(ev.get("key")) - 1]
        if role == self.op["role"]:
            return "edit"
        if self._last_supervisor():
            return self._refused("op_last_sup")
        if self.op["id"] == (self.term.operator or {}).get("id"):
            return self._refused("op_not_self")
        name = self.t("role_" + role) + " " + self.op["id"]
        self.term.store.update_operator(self.op["id"], role=role, name=name)
        self._audit("operator_role", "%s %s->%s" % (self.op["id"], self.op["role"], role))
        self.term.beep("ok")
        self.op = self.term.store.get_operator(self.op["id"])
        return self._say(self.t("op_role_now", id=self.op["id"], role=self.t("role_" + role)))

    def toggle(self, ev):
        active = not self.op.get("active", True)
        if not active:
            if self._last_supervisor():
                return self._refused("op_last_sup")
            if self.op["id"] == (self.term.operator or {}).get("id"):
                return self._refused("op_not_self")
        self.term.store.update_operator(self.op["id"], active=active)
        self._audit("operator_enabled" if active else "operator_disabled", self.op["id"])
        self.term.beep("ok")
        self.op = self.term.store.get_operator(self.op["id"])
        return self._say(self.t("op_now_on" if active else "op_now_off", id=self.op["id"]))

    def ask_pin(self, ev):
        """A PIN reset: the approving supervisor's authenticator code first when [mfa]
        asks it for pin_reset."""
        from firmware.flows.mfa import MfaCheckFlow, mfa_required
        op = self.approver_op
        if op is not None and mfa_required(self.term, op, "pin_reset"):
            self.term.push(MfaCheckFlow(self.term, op, "pin_reset"))
            return "mfa"
        return "pin"

    def new_field(self):
        self.field = Field(auth.PIN_MAX, masked=True)

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def pin_done(self, ev):
        value = self.field.value
        self.field.clear()
        if not value:
            return None
        if not auth.valid_pin(value):
            self.error = "err_pin_format"
            return None
        if auth.weak_pin(value, self.op["id"]):
            self.error = "err_pin_weak"
            return None
        self.pin = value
        return "confirm"

    def confirm_done(self, ev):
        same = self.field.value == self.pin
        self.field.clear()
        if not same:
            self.term.beep("error")
            self.error = "err_pin_mismatch"
            self.pin = ""
            return "pin"
        # a one-time PIN: the operator chooses their own at the next login
        self.term.auth.set_pin(self.op["id"], self.pin, must_change="reset")
        self.term.auth.unlock(self.op["id"])
        self.pin = ""
        self._audit("pin_reset", self.op["id"])
        self.term.beep("ok")
        return self._say(self.t("op_pin_reset", id=self.op["id"]), self.t("op_pin_reset_2"))

    def goto(self, state):
        if state == "pin" and self.error != "err_pin_mismatch":
            self.error = None
        Flow.goto(self, state)

    # -- drawing -------------------------------------------------------------------------
    def render(self):
        t = self.t
        if self.state == "list":
            self.term.show(t("set_operators"), self._rows(), t("footer_menu"),
                           selected=self.index)
        elif self.state == "edit":
            op = self.op
            title = "%s %s" % (t("role_" + op["role"]), op["id"])
            self.term.show(title, ["1 " + t("op_change_role"),
                                   "2 " + t("op_enable" if not op.get("active", True)
                                            else "op_disable"),
                                   "3 " + t("op_reset_pin")], t("footer_back"))
        elif self.state == "role":
            self.term.show(t("choose_role"), ["1 " + t("role_cashier"),
                                              "2 " + t("role_supervisor"),
                                              "3 " + t("role_technician")], t("footer_back"))
        elif self.state in ("pin", "confirm"):
            prompt = t("op_one_time_pin") if self.state == "pin" else t("confirm_pin")
            err = [t(self.error)] if self.error else []
            self.term.show(t("op_reset_pin") + " " + self.op["id"], (err + [prompt])[-2:],
                           t("footer_entry"), masked=self.field.shown())
        elif self.state == "said":
            self.term.show(t("set_operators"), self.lines, t("footer_ok"))
