"""Factory reset: every record and key of this terminal wiped, by two people together.

A technician starts it (the only role that may, firmware/security/permissions.py) and
gives their PIN again; a supervisor then gives theirs (SupervisorFlow): two PINs, two
people, two roles. Refused first, saying which, while anything is still owed to the
host or the back office: offline records neither uploaded nor exported, reversals
waiting, an open shift, an open batch not settled. Audited (both IDs) before anything
is wiped; then the board's wipe (term.factory_wipe, board/service.py) closes the
databases and overwrites and removes the data folder's files and keys, and the
terminal starts again as new: the first-supervisor setup. The key root (OTP, TPM, or the
lab's root file outside the data folder) is left as it is, on purpose: docs/field-repair.md.
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.flows.common import Field
from firmware.security import auth
from firmware.ui.screen import wrap

ENTRY = "entry_timeout_s"
PURPOSE = "fr_purpose"          # what the supervisor is asked to approve


def blockers(term):
    """[(message id, n)] of what stops a reset now; [] when nothing does."""
    pay = term.payments
    if pay is None:
        return []
    out = []
    try:
        n = pay.unexported_pending()
        if n:
            out.append(("fr_block_queue", n))
        n = len(pay.pending_reversals())
        if n:
            out.append(("fr_block_reversals", n))
        n = len(pay.journal.shifts(state="open"))
        if n:
            out.append(("fr_block_shift", n))
        batch = pay.batch()
        if pay.journal.last(batch=batch) is not None:
            out.append(("fr_block_batch", batch))
    except Exception as exc:
        from firmware.core.store import is_fault
        if not is_fault(exc):
            raise
        out.append(("fr_block_storage", 0))
    return out


class FactoryResetFlow(Flow):
    NAME = "factory_reset"
    INITIAL = "check"
    STATES = {
        "check": {"enter": "check", "timeout": ENTRY,
                  "on": {keys.ENTER: "cancel", keys.CANCEL: "cancel", keys.UP: "up",
                         keys.DOWN: "down", "timeout": "cancel"}},
        "warn": {"timeout": ENTRY,
                 "on": {keys.ENTER: "warned", keys.CANCEL: "cancel", "timeout": "cancel"}},
        "tech_pin": {"timeout": ENTRY,
                     "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                            keys.ENTER: "tech_pin_done", keys.CANCEL: "cancel",
                            "timeout": "cancel"}},
        "mfa": {"timeout": None, "on": {}},                 # MfaCheckFlow on top
        "supervisor": {"timeout": None, "on": {}},          # SupervisorFlow on top
        "final": {"timeout": ENTRY,
                  "on": {keys.F4: "wipe", keys.CANCEL: "cancel", "timeout": "cancel"}},
        "done": {"timeout": None, "on": {}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.rows = []
        self.top = 0
        self.field = Field(auth.PIN_MAX, masked=True)
        self.error = None
        self.supervisor = None
        self.tech = term.operator["id"] if term.operator else ""

    def check(self):
        found = blockers(self.term)
        if not found:
            return "warn"
        t = self.t
        self.rows = [t("fr_refused")]
        for msg, n in found:
            self.rows += wrap(t(msg, n=n))
        self.rows += wrap(t("fr_refused_hint"))
        self.term.beep("error")
        self.term.store.audit("factory_reset_refused", self.tech,
                              ", ".join("%s %d" % (m[len("fr_block_"):], n) for m, n in found))
        return None

    def up(self, ev):
        self.top = max(0, self.top - 1)

    def down(self, ev):
        self.top = max(0, min(len(self.rows) - 3, self.top + 1))

    def warned(self, ev):
        self.field = Field(auth.PIN_MAX, masked=True)
        return "tech_pin"

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def tech_pin_done(self, ev):
        pin = self.field.value
        self.field.clear()
        op, why = self.term.auth.check(self.tech, pin)
        pin = None
        if op is None or op.get("role") != "technician":
            self.term.beep("error")
            self.error = "err_login"
            self.term.store.audit("factory_reset_refused", self.tech, "technician PIN")
            return None
        # the technician's authenticator code when [mfa] asks it for a factory reset
        # (docs/mfa.md); then the supervisor, the second person
        from firmware.flows.mfa import MfaCheckFlow, mfa_required
        if mfa_required(self.term, op, "factory_reset"):
            self.term.push(MfaCheckFlow(self.term, op, "factory_reset"))
            return "mfa"
        return self._ask_supervisor()

    def _ask_supervisor(self):
        from firmware.flows.supervisor import SupervisorFlow
        self.term.push(SupervisorFlow(self.term, PURPOSE))
        return "supervisor"

    def child_done(self, child, result):
        if result is None:
            self.finish(None)
            return None
        if self.state == "mfa":                 # the code was right: the second person
            return self._ask_supervisor()
        if result["id"] == self.tech:           # cannot happen (roles differ); never one
            self.finish(None)
            return None
        self.supervisor = result
        return "final"

    def wipe(self, ev):
        term = self.term
        sup = self.supervisor["id"]
        # audited before anything goes: the trail's last line names both people
        term.store.audit("factory_reset", self.tech, "approved by supervisor %s" % sup)
        wipe = getattr(term, "factory_wipe", None)
        if wipe is None:
            self.rows = [self.t("fr_no_wipe")]
            return "check"
        self.state = "done"
        self.term.show(self.t("fr_title"), [self.t("fr_wiping")], "", alert="warn")
        count = wipe("technician %s, supervisor %s" % (self.tech, sup))
        self.rows = [self.t("fr_done"), self.t("fr_done_n", n=count), self.t("fr_restart")]
        restart = getattr(term, "restart", None)
        flows = list(term.flows)
        term.stop()                 # its timers and flows: the databases are gone
        for flow in flows:
            flow.finished = True
        term.flows = [self]
        self.finished = False
        term.show(self.t("fr_title"), self.rows, "", alert="ok")
        if restart is not None:
            term.reactor.call_later(3000, restart)
        return None

    def render(self):
        t = self.t
        if self.state == "check":
            self.term.show(t("fr_title"), self.rows, t("footer_back"), top=self.top,
                           alert="error")
        elif self.state == "warn":
            self.term.show(t("fr_title"), [t("fr_warn_1"), t("fr_warn_2"), t("fr_warn_3")],
                           t("footer_entry"), alert="warn")
        elif self.state == "tech_pin":
            head = t(self.error) if self.error else t("fr_tech_pin")
            self.term.show(t("fr_title"), [head, t("enter_pin_for", id=self.tech)],
                           t("footer_entry"), masked=self.field.shown())
        elif self.state == "final":
            self.term.show(t("fr_title"), [t("fr_final_1"), t("fr_final_2")],
                           t("fr_footer_final"), alert="warn")
        elif self.state == "done":
            self.term.show(t("fr_title"), self.rows, "", alert="ok")
