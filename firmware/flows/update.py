"""Settings > Update (technician): a signed bundle from the USB stick, applied by
`handpos update apply` running as its own unit, its steps on the panel
(docs/updates.md, "On the terminal").

The bundles and the apply are the board's (term.updates, drivers/update_runner.py):
this flow lists what it found with the version each manifest says, asks to confirm,
refuses at once what apply would refuse at its step 2 (a payment not finished, a shift
open, offline records neither uploaded nor exported: the same checks on the terminal's
own journal and queue), asks the technician's authenticator code when [mfa] says so,
then shows each `[n/8]` step as apply says it. On the device step 3 stops the terminal
and the panel keeps the last step; systemd starts the new release. Where apply's start
command is empty (the simulator), the last screen says to restart to finish.
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.ui.screen import BODY_ROWS, wrap

ENTRY = "entry_timeout_s"
UNFINISHED = ("created", "sending")
STEPS = ("verify", "check", "stop", "backup", "install", "mark", "switch", "start")
# what apply's refusal says -> the words on the panel (tools/update.py, cli._mfa_gate)
REFUSALS = (
    ("older than the installed minimum", "up_err_old"),
    ("already runs", "up_err_same"),
    ("still on trial", "up_err_trial"),
    ("trusts no vendor key", "up_err_key"),
    ("key", "up_err_key"),
    ("signature", "up_err_key"),
    ("cut short", "up_err_cut"),
    ("sha256", "up_err_hash"),
    ("hash", "up_err_hash"),
    ("payment is not finished", "up_busy_payment"),
    ("shift is open", "up_busy_shift"),
    ("not uploaded or exported", "up_busy_queue"),
    ("is running on", "up_err_running"),
    ("grant", "up_err_code"),
    ("code", "up_err_code"),
)


def blockers(term):
    """[(message id, n)]: what stops an update now, read from the terminal's own
    journal and queue as `handpos update apply` reads them at its step 2."""
    pay = term.payments
    if pay is None:
        return []
    out = []
    try:
        n = len(pay.journal.find(states=UNFINISHED))
        if n:
            out.append(("up_busy_payment", n))
        n = len(pay.journal.shifts(state="open"))
        if n:
            out.append(("up_busy_shift", n))
        n = pay.unexported_pending()
        if n:
            out.append(("up_busy_queue", n))
    except Exception as exc:
        from firmware.core.store import is_fault
        if not is_fault(exc):
            raise
        out.append(("up_busy_storage", 0))
    return out


def parse_step(line):
    """'handpos update: [3/8] stop: ...' -> (3, 'stop'); None for another line."""
    at = line.find("[")
    end = line.find("]", at)
    if at < 0 or end < 0:
        return None
    n, _, of = line[at + 1:end].partition("/")
    if not (n.isdigit() and of.isdigit()):
        return None
    name = line[end + 1:].strip().split(":")[0].strip()
    return int(n), name


class UpdateFlow(Flow):
    NAME = "update"
    INITIAL = "list"
    STATES = {
        "list": {"enter": "load", "timeout": "menu_timeout_s",
                 "on": {keys.UP: "up", keys.DOWN: "down", keys.ENTER: "pick",
                        keys.CANCEL: "cancel", keys.MENU: "cancel"}},
        "empty": {"timeout": ENTRY, "on": {keys.ENTER: "cancel", keys.CANCEL: "cancel",
                                           keys.UP: "rows_up", keys.DOWN: "rows_down"}},
        "refused": {"timeout": ENTRY, "on": {keys.ENTER: "cancel", keys.CANCEL: "cancel",
                                             keys.UP: "rows_up", keys.DOWN: "rows_down"}},
        "confirm": {"timeout": ENTRY, "on": {keys.ENTER: "confirmed", keys.CANCEL: "to_list",
                                             "timeout": "cancel"}},
        "mfa": {"timeout": None, "on": {}},                 # MfaCheckFlow on top
        "running": {"timeout": None, "on": {}},             # nothing stops it from here
        "ended": {"timeout": None, "on": {keys.ENTER: "cancel", keys.CANCEL: "cancel",
                                          keys.UP: "rows_up", keys.DOWN: "rows_down"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.updates = getattr(term, "updates", None)
        self.found = []
        self.index = 0
        self.rows = []
        self.top = 0
        self.chosen = None
        self.step = None            # (n, name) of the last step apply said
        self.lines = []             # what apply said, for the audit row
        self.refusal = None
        self.who = term.operator["id"] if term.operator else ""

    # -- the list ---------------------------------------------------------------
    def load(self):
        if self.updates is None:
            self.rows = [self.t("up_no_board")]
            return "empty"
        self.found = self.updates.bundles()
        if not self.found:
            self.rows = [self.t("up_none")] + wrap(self.updates.usb_path)
            return "empty"
        self.index = min(self.index, len(self.found) - 1)
        return None

    def up(self, ev):
        self.index = (self.index - 1) % len(self.found)

    def down(self, ev):
        self.index = (self.index + 1) % len(self.found)

    def to_list(self, ev):
        return "list"

    def rows_up(self, ev):
        self.top = max(0, self.top - 1)

    def rows_down(self, ev):
        self.top = max(0, min(len(self.rows) - BODY_ROWS, self.top + 1))

    def pick(self, ev):
        b = self.found[self.index]
        if b["error"]:
            self.term.beep("error")
            return self._refuse([self.t("up_bad_bundle")] + wrap(b["name"]))
        found = blockers(self.term)
        if found:
            rows = [self.t("up_not_now")]
            for msg, n in found:
                rows += wrap(self.t(msg, n=n))
            self.term.beep("error")
            self.term.store.audit("update_refused", self.who, "%s: %s" % (b["name"], ", ".join(
                "%s %d" % (m[len("up_busy_"):], n) for m, n in found)))
            return self._refuse(rows)
        self.chosen = b
        return "confirm"

    def _refuse(self, rows):
        self.rows = rows
        self.top = 0
        return "refused"

    # -- confirm, the second factor, the apply -----------------------------------
    def confirmed(self, ev):
        from firmware.flows.mfa import MfaCheckFlow, mfa_required
        op = self.term.operator
        if mfa_required(self.term, op, "update"):
            self.term.push(MfaCheckFlow(self.term, op, "update"))
            return "mfa"
        return self._start(None)

    def child_done(self, child, result):
        if result is None:
            self.finish(None)
            return None
        return self._start(result["id"])

    def _start(self, granted_by):
        # checked again: a sale cannot begin under this screen, but the queue may have
        # been refused an upload meanwhile
        if blockers(self.term):
            return self.pick(None)
        b = self.chosen
        self.term.store.audit("update_started", self.who, "%s version %s" % (b["name"],
                                                                             b["version"]))
        self.step = None
        self.lines = []
        self.refusal = None
        self.updates.start(b["path"], self.on_line, self.on_end, operator=granted_by)
        return "running"

    def on_line(self, text):
        self.lines.append(text)
        step = parse_step(text)
        if step is not None:
            self.step = step
        elif "refused" in text and self.refusal is None:
            self.refusal = text
        if self.state == "running" and self.on_top():
            self.render()

    def on_end(self, rc):
        if self.finished:
            return
        self.top = 0
        if rc == 0:
            started = self.lines and "terminal started" in self.lines[-1]
            self.rows = [self.t("up_installed", v=self.chosen["version"]),
                         self.t("up_restarting") if started else self.t("up_restart_1"),
                         "" if started else self.t("up_restart_2")]
            self.term.beep("ok")
        else:
            self.rows = [self.t("up_failed")] + self._why()
            self.term.beep("error")
        self.term.store.audit("update_ended", self.who, "status %s: %s" % (
            rc, (self.lines[-1] if self.lines else "")[:120]))
        self.state = None
        self.goto("ended")

    def _why(self):
        text = self.refusal or (self.lines[-1] if self.lines else "")
        for phrase, msg in REFUSALS:
            if phrase in text:
                return wrap(self.t(msg, n=""))
        return wrap(self.t("up_err_other"))

    # -- the screens -------------------------------------------------------------
    def step_rows(self):
        if self.step is None:
            return [self.t("up_starting")]
        n, name = self.step
        rows = []
        for i in range(max(1, n - 2), n + 1):
            word = self.t("up_step_" + STEPS[i - 1]) if 1 <= i <= len(STEPS) else name
            rows.append("%d/%d %s" % (i, len(STEPS), word))
        return rows

    def render(self):
        t = self.t
        if self.state == "list":
            # the version alone: a file name does not fit a row beside it
            rows = [b["version"] if not b["error"] else t("up_damaged") for b in self.found]
            self.term.show(t("up_title"), rows, t("footer_menu"), selected=self.index)
        elif self.state == "empty":
            self.term.show(t("up_title"), self.rows, t("footer_back"), top=self.top,
                           alert="warn")
        elif self.state == "refused":
            self.term.show(t("up_title"), self.rows, t("footer_back"), top=self.top,
                           alert="error")
        elif self.state == "confirm":
            self.term.show(t("up_title"), [t("up_install", v=self.chosen["version"]),
                                           t("up_confirm_1"), t("up_confirm_2")],
                           t("footer_entry"), alert="warn")
        elif self.state == "running":
            self.term.show(t("up_title"), self.step_rows(), t("up_wait"))
        elif self.state == "ended":
            self.term.show(t("up_title"), self.step_rows()[-1:] + self.rows, t("footer_ok"),
                           top=self.top, alert="error" if self.rows[:1] == [t("up_failed")]
                           else "ok")
