"""The offline queue menu: upload now (with progress), the records a person must see
(declined after upload, damaged) with a supervisor's acknowledgement, the supervisor's
export for a swapped terminal, and the merchant's offline policy."""
from firmware.core import events, keys
from firmware.core.config import limits_for
from firmware.flows.common import Field, MenuFlow
from firmware.flows.supervisor import SupervisorFlow
from firmware.core.fsm import Flow
from firmware.core.money import format_amount
from firmware.ui.screen import BODY_ROWS, wrap

ENTRIES = (
    ("off_upload", "upload"),
    ("off_records", "records"),
    ("off_export", "export"),
    ("off_policy", "policy"),
)


class OfflineFlow(MenuFlow):
    NAME = "offline"
    TITLE = "off_title"

    def entries(self):
        return list(ENTRIES)

    def upload(self):
        self.term.push(UploadFlow(self.term))
        return None

    def records(self):
        self.term.push(RecordsFlow(self.term))
        return None

    def export(self):
        self.term.push(ExportFlow(self.term))
        return None

    def policy(self):
        return self.say(*policy_lines(self.term))


def policy_lines(term):
    """The [offline] policy in words, for Settings and this menu."""
    t = term.t
    config = term.config
    off = config["offline"]
    cur = config["money"]["currency"]
    per, total, count = limits_for(config, cur)
    yes_no = lambda v: t("yes") if v else t("no")
    return [t("pol_enabled", v=yes_no(off["enabled"])),
            t("pol_per", amount=format_amount(per, cur, with_code=True)),
            t("pol_total", amount=format_amount(total, cur, with_code=True)),
            t("pol_count", n=count),
            t("pol_age", w=off["warn_age_h"], m=off["max_age_h"]),
            t("pol_entry", modes=",".join(off["entry_modes"])),
            t("pol_pin", v=yes_no(off["pin_required"]))]


class UploadFlow(Flow):
    """"Upload now": the forwarder tries at once; the screen follows its progress."""
    NAME = "upload"
    INITIAL = "working"
    STATES = {
        # left alone, the screen goes back to the menu; the upload goes on behind it
        # (a host that never answers must not keep the terminal on this screen)
        "working": {"enter": "begin", "timeout": "menu_timeout_s",
                    "on": {"progress": "redraw", keys.ENTER: "done", keys.CANCEL: "done",
                           "timeout": "done"}},
    }

    def begin(self):
        fwd = self.term.payments.forwarder
        fwd.on_change = self._changed
        fwd.upload_now()

    def _changed(self):
        if not self.finished:
            self.dispatch(events.Event("progress"))

    def redraw(self, ev):
        return None

    def done(self, ev):
        self.term.payments.forwarder.on_change = None
        self.finish(None)

    def stop(self):
        self.term.payments.forwarder.on_change = None
        Flow.stop(self)

    def render(self):
        t = self.t
        p = self.term.payments.forwarder.progress()
        lines = [t("up_" + p["state"]) if p["pending"] or p["state"] != "idle" else t("up_idle"),
                 t("up_left", n=p["pending"]),
                 t("up_done", n=p["uploaded"], d=p["declined"])]
        if p["error"] and p["state"] == "backoff":
            # why, in words, in the place of the counts (three rows)
            error = p["error"]
            why = "up_err_storage" if error.startswith(("queue:", "journal:")) else "up_err_host"
            lines = [t(why), t("up_backoff"), t("up_left", n=p["pending"])]
        alert = "ok" if not p["pending"] else None
        self.term.show(t("off_upload"), lines, t("footer_ok"), alert=alert)


class RecordsFlow(Flow):
    """What is in the queue; a declined or damaged record leaves the list only when a
    supervisor acknowledges it (ENTER, then their PIN)."""
    NAME = "queue_records"
    INITIAL = "list"
    STATES = {
        "list": {"timeout": "menu_timeout_s",
                 "on": {keys.UP: "up", keys.DOWN: "down", keys.ENTER: "ack",
                        keys.CANCEL: "done", "timeout": "done"}},
        "supervisor": {"timeout": None, "on": {}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.index = 0
        self.note = None

    def rows(self):
        try:
            return self.term.payments.queue.outstanding()
        except Exception:
            return []

    def up(self, ev):
        n = len(self.rows())
        self.index = (self.index - 1) % n if n else 0

    def down(self, ev):
        n = len(self.rows())
        self.index = (self.index + 1) % n if n else 0

    def ack(self, ev):
        rows = self.rows()
        if not rows or rows[min(self.index, len(rows) - 1)]["state"] not in (
                "declined_after_upload", "corrupt"):
            return None
        self.term.push(SupervisorFlow(self.term, "off_records"))
        return "supervisor"

    def child_done(self, child, result):
        if child.NAME != "supervisor":
            return None         # a notice over the list
        rows = self.rows()
        if result is not None and rows:
            rec = rows[min(self.index, len(rows) - 1)]
            self.term.payments.queue.acknowledge_by_supervisor(rec["id"], result["id"])
            self.term.store.audit("queue_acknowledged", result["id"],
                                  "record %d STAN %s %s" % (rec["id"], rec["stan"], rec["state"]))
            self.term.payments.refresh_pending()
            self.note = "rec_acked"
            self.index = 0
        return "list"

    def done(self, ev):
        self.finish(None)

    def render(self):
        t = self.t
        rows = self.rows()
        if not rows:
            footer = t(self.note) if self.note else t("footer_ok")
            self.term.show(t("off_records"), [t("rec_none")], footer)
            return
        self.index = min(self.index, len(rows) - 1)
        lines = []
        for r in rows:
            lines.append("%s %s %s" % (t("rec_" + r["kind"]),
                                       format_amount(r["amount"], r["currency"]),
                                       t("rec_" + r["state"])))
        sel = rows[self.index]
        footer = t("rec_ack_q") if sel["state"] in ("declined_after_upload", "corrupt") \
            else t("footer_back")
        if self.note:
            footer = t(self.note)
            self.note = None
        self.term.show(t("off_records"), lines, footer, selected=self.index)


EXPORT_VALID_H = 72         # an export is imported within this, by this terminal's clock


def target_digits(own):
    """How many digits the keypad types for a target: the length of the number that
    ends this terminal's ID (6 for HP000001); 0 when it ends in a letter."""
    n = 0
    while n < len(own) and "0" <= own[len(own) - 1 - n] <= "9":
        n += 1
    return n


def target_tid(own, digits):
    """The terminal ID a supervisor means by the digits typed: this terminal's letters,
    then the digits zero-padded to the length of its number ("HP000001", "2" ->
    "HP000002"); None when there are no digits or they do not fit."""
    n = target_digits(own)
    if n == 0 or not digits or len(digits) > n:
        return None
    return own[:len(own) - n] + "0" * (n - len(digits)) + digits


class ExportFlow(Flow):
    """A supervisor writes every record still to upload into a signed, encrypted file
    that one named terminal (the replacement) may import, once, within EXPORT_VALID_H
    hours; the records stay queued here. The target is typed as the digits after the
    letters this terminal's ID shares with it (2 for HP000002) and shown whole for a
    yes before anything is written."""
    NAME = "queue_export"
    INITIAL = "supervisor"
    STATES = {
        "supervisor": {"enter": "ask", "timeout": None, "on": {}},
        "target": {"timeout": "entry_timeout_s",
                   "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                          keys.ENTER: "target_done", keys.CANCEL: "done"}},
        "confirm": {"timeout": "entry_timeout_s",
                    "on": {keys.ENTER: "write", keys.CANCEL: "back"}},
        "result": {"timeout": 30000,
                   "on": {keys.ENTER: "done", keys.CANCEL: "done", "timeout": "done",
                          keys.UP: "scroll_up", keys.DOWN: "scroll_down"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.lines = []
        self.ok = False
        self.top = 0
        self.supervisor = None
        self.own = term.config["terminal"]["id"]
        self.field = Field(max(1, target_digits(self.own)))
        self.target = None
        self.error = None

    def rows(self):
        out = []
        for line in self.lines:
            out += wrap(line)            # the file's name is longer than a row
        return out

    def scroll_up(self, ev):
        self.top = max(0, self.top - 1)

    def scroll_down(self, ev):
        self.top = max(0, min(len(self.rows()) - BODY_ROWS, self.top + 1))

    def ask(self):
        self.term.push(SupervisorFlow(self.term, "off_export"))

    def child_done(self, child, result):
        if child.NAME != "supervisor":
            return None         # a notice over the result
        if result is None:
            self.finish(None)
            return None
        self.supervisor = result["id"]
        if not target_digits(self.own):
            self.ok, self.lines = False, [self.t("export_failed"), self.t("exp_err_no_digits")]
            return "result"
        return "target"

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def target_done(self, ev):
        tid = target_tid(self.own, self.field.value)
        if tid is None:
            return None
        if tid == self.own:
            self.error = "exp_err_self"
            self.term.beep("error")
            return None
        self.target = tid
        return "confirm"

    def back(self, ev):
        return "target"

    def pending_count(self):
        try:
            return len(self.term.payments.queue.pending())
        except Exception:
            return None

    def write(self, ev):
        self.ok, self.lines = self.term.payments.export_queue(self.supervisor, self.target,
                                                              EXPORT_VALID_H)
        return "result"

    def done(self, ev):
        self.finish(None)

    def render(self):
        t = self.t
        if self.state == "target":
            n = target_digits(self.own)
            tid = target_tid(self.own, self.field.value) or self.own[:len(self.own) - n] + "_" * n
            self.term.show(t("off_export_title"),
                           [t(self.error) if self.error else t("exp_target_q"),
                            t("exp_target_id", tid=tid)],
                           t("footer_entry"), masked=self.field.shown())
        elif self.state == "confirm":
            n = self.pending_count()
            self.term.show(t("exp_confirm_title"),
                           [self.target, t("exp_n_records", n="?" if n is None else n),
                            t("exp_valid_h", h=EXPORT_VALID_H)],
                           t("footer_confirm"))
        elif self.state == "result":
            self.term.show(t("off_export_title"), self.rows(), t("footer_ok"),
                           alert="ok" if self.ok else "error", top=self.top)
