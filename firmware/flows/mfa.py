"""The second factor on the keypad (docs/mfa.md): enrolling a phone authenticator app
from a QR code on the panel, and asking its code for a login or a sensitive action.

  MfaEnrollFlow(term, op)           finish(op) once enrolled, None when abandoned
  MfaCheckFlow(term, op, purpose)   finish(op) for a right code, None otherwise
  mfa_required(term, op, action)    whether [mfa] wants the check for action

The service (firmware/security/mfa.py) is term.mfa, set by the board with enrolments
sealed under the key hierarchy; a terminal without one gets enrolments in memory.
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.core.store import is_fault
from firmware.flows.common import Field
from firmware.security import mfa as mfalib
from firmware.security import totp
from firmware.ui.receipt import Receipt

ENTRY = "entry_timeout_s"
ISSUER = "handpos"          # what the app shows above the account (the label's prefix)
SCAN_MS = 180000            # finding the app, adding an account, pointing the camera
PRINTABLE = ("ok", "paper_near_end", "unknown")
PURPOSES = ("login", "pin_reset", "key_load", "export", "update", "factory_reset", "enrol")


def mfa_of(term):
    """The terminal's second-factor service; one with enrolments in memory only where
    the board gave none (the portable core's own tests, a board without sealed files)."""
    service = getattr(term, "mfa", None)
    if service is None:
        def now():
            return mfalib.utc_seconds(term.system.utc_time())
        service = mfalib.Mfa(mfalib.MemorySecrets(), term.store, now, term.system.random_bytes)
        term.mfa = service
    return service


def mfa_required(term, op, action):
    """True when [mfa] asks op for a code before action ("login", "pin_reset",
    "key_load", "export", "update", "factory_reset"): op's role is in [mfa] roles and
    the action in [mfa] actions (login: [mfa] at_login)."""
    return mfalib.required(term.config, op, action)


def _storage_trouble(exc):
    return is_fault(exc) or getattr(exc, "storage_fault", False)


class MfaEnrollFlow(Flow):
    """The QR code of a new key, its text on a second screen (F2) for apps without a
    camera, a code from the phone to prove it took the key (only then is it kept), the
    recovery codes on paper once. An operator already enrolled proves the old phone (or
    a recovery code) first, so a PIN alone cannot move the second factor elsewhere."""
    NAME = "mfa_enrol"
    INITIAL = "begin"
    STATES = {
        "begin": {"enter": "enter_begin", "on": {}},
        "verify": {"on": {}},                               # MfaCheckFlow on top
        "no_printer": {"on": {keys.ENTER: "cancel", keys.CANCEL: "cancel"}},
        "qr": {"enter": "enter_qr", "timeout": SCAN_MS, "on": {keys.ENTER: "to_code", keys.F2: "to_key",
                                            keys.CANCEL: "cancel"}},
        "key": {"timeout": SCAN_MS, "on": {keys.ENTER: "to_code", keys.F2: "to_qr", keys.CANCEL: "to_qr"}},
        "code": {"enter": "enter_code", "timeout": ENTRY,
                 "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                        keys.ENTER: "confirm", keys.CANCEL: "to_qr", "timeout": "to_qr"}},
        "failed": {"on": {keys.ENTER: "cancel", keys.CANCEL: "cancel"}},
        "done": {"on": {keys.ENTER: "done", keys.CANCEL: "done", "timeout": "done"}},
    }

    def __init__(self, term, op):
        Flow.__init__(self, term)
        self.op = op
        self.service = mfa_of(term)
        self.secret = None
        self.uri = ""
        self.field = Field(totp.DIGITS)
        self.error = None
        self.proved = False         # an enrolled operator proved the old factor

    def enter_begin(self):
        if self.term.printer is None or self.term.printer_state not in PRINTABLE:
            return "no_printer"
        try:
            enrolled = self.service.enrolled(self.op["id"])
        except Exception as exc:
            if not _storage_trouble(exc):
                raise
            self.error = "mfa_damaged"
            return "failed"
        if enrolled and not self.proved:
            self.term.push(MfaCheckFlow(self.term, self.op, "enrol"))
            return "verify"
        return "qr"

    def child_done(self, flow, result):
        if result is None:
            self.finish(None)
            return None
        self.proved = True
        return "begin"

    def enter_qr(self):
        if self.secret is None:
            self.secret = self.service.new_secret()
            self.uri = self.service.uri(self.secret, ISSUER, self.term.config["terminal"]["id"],
                                        self.op["id"])

    def to_qr(self, ev):
        self.error = None
        return "qr"

    def to_key(self, ev):
        return "key"

    def to_code(self, ev):
        return "code"

    def enter_code(self):
        self.field = Field(totp.DIGITS)

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def confirm(self, ev):
        code = self.field.value
        if len(code) != totp.DIGITS:
            self.error = "mfa_six_digits"
            return None
        try:
            codes = self.service.confirm(self.op["id"], self.secret, code)
        except Exception as exc:
            if not _storage_trouble(exc):
                raise
            self.error = "mfa_not_saved"
            return "failed"
        self.field.clear()
        if codes is None:
            self.term.beep("error")
            self.error = "mfa_wrong_code"
            return "code"
        self.secret = None          # kept sealed now; nothing of it stays in the flow
        self.uri = ""
        self._print(codes)
        codes = None
        self.term.store.audit("mfa_enrolled", self.op["id"], "recovery codes %d"
                              % totp.RECOVERY_COUNT)
        self.term.beep("ok")
        return "done"

    def _print(self, codes):
        """The recovery codes on paper, the only time they exist in clear."""
        t = self.t
        r = Receipt(lang=t.lang)
        r.add(t("rcpt_mfa_head"), align="center", bold=True)
        r.add(self.term.config["terminal"]["merchant_name"], align="center")
        r.pair(t("rcpt_mfa_terminal"), self.term.config["terminal"]["id"])
        r.pair(t("rcpt_mfa_operator"), "%s %s" % (self.op["id"], self.op.get("name", "")))
        y, mo, d, h, mi, s = self.term.system.local_time()
        r.add("%04d-%02d-%02d %02d:%02d" % (y, mo, d, h, mi))
        r.rule()
        for i, code in enumerate(codes):
            r.add("%d.  %s" % (i + 1, totp.show_recovery(code)), size=1)
        r.rule()
        r.add(t("rcpt_mfa_once"))
        r.add(t("rcpt_mfa_keep"))
        r.add(t("rcpt_mfa_typed"))
        self.term.print_receipt(r)

    def done(self, ev):
        self.finish(self.op)

    def render(self):
        t = self.t
        err = [t(self.error)] if self.error else []
        if self.state == "qr":
            account = "%s-%s" % (self.term.config["terminal"]["id"], self.op["id"])
            self.term.show(t("mfa_scan_title"), [account, t("mfa_f2_key")],
                           t("mfa_footer_next"), qr=self.uri)
        elif self.state == "key":
            groups = totp.grouped(totp.b32encode(self.secret)).split(" ")
            rows = [" ".join(groups[i:i + 3]) for i in range(0, len(groups), 3)]
            self.term.show(t("mfa_key_title"), rows, t("mfa_footer_key"))
        elif self.state == "code":
            self.term.show(t("mfa_enrol_title"), (err or [t("mfa_code_prompt")]),
                           t("footer_entry"), masked=self.field.shown())
        elif self.state == "no_printer":
            state = self.term.printer_state if self.term.printer is not None else "missing"
            self.term.show(t("mfa_enrol_title"), [t("mfa_needs_printer"),
                                                  t("printer_" + state)],
                           t("footer_back"), alert="error")
        elif self.state == "failed":
            self.term.show(t("mfa_enrol_title"), err + [t("mfa_call_tech")], t("footer_back"),
                           alert="error")
        elif self.state == "done":
            self.term.show(t("mfa_enrolled"), [t("mfa_codes_printed"), t("mfa_codes_keep")],
                           t("footer_ok"), alert="ok")


class MfaCheckFlow(Flow):
    """The code from op's authenticator app (F2: a printed recovery code instead).
    Wrong codes beep, are audited and count toward a lockout kept across restarts."""
    NAME = "mfa_check"
    INITIAL = "begin"
    STATES = {
        "begin": {"enter": "enter_begin", "on": {}},
        "code": {"enter": "enter_code", "timeout": ENTRY,
                 "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                        keys.ENTER: "check", keys.F2: "switch", keys.CANCEL: "cancel"}},
        "locked": {"on": {keys.ENTER: "cancel", keys.CANCEL: "cancel"}},
        "not_enrolled": {"on": {keys.ENTER: "enrol", keys.CANCEL: "cancel"}},
        "enrolling": {"on": {}},                            # MfaEnrollFlow on top
        "failed": {"on": {keys.ENTER: "cancel", keys.CANCEL: "cancel"}},
    }

    def __init__(self, term, op, purpose):
        Flow.__init__(self, term)
        self.op = op
        self.purpose = purpose if purpose in PURPOSES else "login"
        self.service = mfa_of(term)
        self.recovery = False
        self.field = Field(totp.DIGITS)
        self.error = None

    def enter_begin(self):
        try:
            if self.service.locked_for(self.op["id"]):
                return "locked"
            if not self.service.enrolled(self.op["id"]):
                self.term.store.audit("mfa_not_enrolled", self.op["id"], self.purpose)
                return "not_enrolled"
        except Exception as exc:
            if not _storage_trouble(exc):
                raise
            self.error = "mfa_damaged"
            return "failed"
        return "code"

    def enter_code(self):
        self.field = Field(totp.RECOVERY_DIGITS if self.recovery else totp.DIGITS)

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def switch(self, ev):
        self.recovery = not self.recovery
        self.error = None
        return "code"

    def check(self, ev):
        code = self.field.value
        want = totp.RECOVERY_DIGITS if self.recovery else totp.DIGITS
        if len(code) != want:
            self.error = "mfa_ten_digits" if self.recovery else "mfa_six_digits"
            return None
        op_id = self.op["id"]
        try:
            if self.recovery:
                answer = self.service.verify_recovery(op_id, code)
            else:
                answer = self.service.verify(op_id, code)
        except Exception as exc:
            if not _storage_trouble(exc):
                raise
            self.error = "mfa_damaged"
            return "failed"
        self.field.clear()
        if answer == mfalib.OK:
            if self.recovery:
                self.term.store.audit("mfa_recovery_used", op_id, "%s; %d left" % (
                    self.purpose, self.service.recovery_left(op_id)))
            else:
                self.term.store.audit("mfa_ok", op_id, self.purpose)
            self.finish(self.op)
            return None
        self.term.beep("error")
        self.term.store.audit("mfa_failed", op_id, "%s: %s%s" % (
            self.purpose, answer, " (recovery code)" if self.recovery else ""))
        if answer == mfalib.LOCKED:
            self.term.store.audit("mfa_locked", op_id, "%d min" % (self.service.lockout_s // 60))
            return "locked"
        if answer == mfalib.NOT_ENROLLED:
            return "not_enrolled"
        self.error = "mfa_code_used" if answer == mfalib.REPLAY else "mfa_wrong_code"
        return "code"

    def enrol(self, ev):
        self.term.push(MfaEnrollFlow(self.term, self.op))
        return "enrolling"

    def child_done(self, flow, result):
        # a phone enrolled just now, its code checked: that is the second factor
        self.finish(result)
        return None

    def render(self):
        t = self.t
        title = t("mfa_recovery_title") if self.recovery else t("mfa_check_title")
        if self.state == "code":
            prompt = t("mfa_recovery_prompt") if self.recovery else t("mfa_code_prompt")
            footer = t("mfa_footer_app") if self.recovery else t("mfa_footer_recovery")
            self.term.show(title, [t("mfa_for_" + self.purpose),
                                   t(self.error) if self.error else prompt],
                           footer, masked=self.field.shown())
        elif self.state == "locked":
            mins = (self.service.locked_for(self.op["id"]) + 59) // 60
            self.term.show(title, [t("mfa_too_many"), t("mfa_locked_min", m=mins)],
                           t("footer_back"), alert="error")
        elif self.state == "not_enrolled":
            self.term.show(t("mfa_check_title"), [t("mfa_enrol_first"), t("mfa_enrol_where")],
                           t("mfa_footer_enrol"), alert="warn")
        elif self.state == "failed":
            self.term.show(title, [t(self.error or "mfa_damaged"), t("mfa_call_tech")],
                           t("footer_back"), alert="error")
