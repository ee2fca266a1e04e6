"""Boot: a self-test of every peripheral, shown on screen, then on with what works.

A missing or failing part is named with what to check; the terminal never stops for
it. When everything passed the screen moves on by itself after a moment; when
something failed it waits for ENTER (or 20 s) so the person can read why.

Storage is checked by the board before this flow starts (a time-bounded PRAGMA
quick_check of each database, the MACs of the recent journal and queue records): what
failed is named under "Storage: FAIL" (term.storage_report: (what, database, n)). A
storage fault then takes the place of the login (firmware/flows/storage.py).
"""
from firmware.core import events, keys
from firmware.core.fsm import Flow
from firmware.core.store import CORRUPT, StorageFault
from firmware.ui.screen import BODY_ROWS

# The order the checks are listed in, and their words in the catalogue.
PARTS = ("display", "keypad", "msr", "scanner", "chip", "printer", "buzzer", "led", "storage",
         "keys", "audit", "clock", "battery")
# listed only on boards that have one (audit: where the trail is sealed, docs/audit.md)
OPTIONAL = ("msr", "scanner", "chip", "keys", "audit")


class BootFlow(Flow):
    NAME = "boot"
    INITIAL = "selftest"
    STATES = {
        "selftest": {"enter": "run_checks", "timeout": 1500,
                     "on": {keys.ENTER: "proceed", keys.CANCEL: "proceed",
                            keys.UP: "scroll_up", keys.DOWN: "scroll_down",
                            "timeout": "settle", events.PRINTER: "printer_answered",
                            events.DEVICE_LOST: "part_lost"}},
        "problems": {"timeout": 20000,
                     "on": {keys.ENTER: "proceed", keys.CANCEL: "proceed",
                            keys.UP: "scroll_up", keys.DOWN: "scroll_down",
                            "timeout": "proceed", events.PRINTER: "printer_answered",
                            events.DEVICE_LOST: "part_lost"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.results = {}
        self.top = 0

    def run_checks(self):
        term = self.term
        for part in self.parts():
            self.results[part] = term.selftests.get(part, (False, "absent"))
        self.results["clock"] = (True, "synced") if term.system.clock_synced() else (None, "unsynced")
        batt = term.system.battery()
        self.results["battery"] = (True, "%d%%" % batt[0]) if batt else (True, "mains")
        if term.printer is not None and self.results["printer"][0]:
            self.results["printer"] = (None, "checking")
            term.printer.query_status()
        return None

    def parts(self):
        return [p for p in PARTS if p not in OPTIONAL or p in self.term.selftests]

    def failures(self):
        return [p for p in self.parts() if self.results.get(p, (True,))[0] is False]

    def printer_answered(self, ev):
        state = ev.get("state")
        if state == "ok":
            self.results["printer"] = (True, "ok")
        elif state == "paper_near_end":
            self.results["printer"] = (None, "paper_near_end")
        else:
            self.results["printer"] = (False, state)
        self.term.selftests["printer"] = self.results["printer"]
        return None

    def part_lost(self, ev):
        """A part found missing while the self-test shows: it joins the list."""
        part = ev.get("device")
        if part in PARTS:
            self.results[part] = (False, ev.get("reason"))
        return None

    def settle(self, ev):
        if self.failures():
            self.term.beep("error")
            self.term.store.audit("selftest", "", ", ".join(self.failures()))
            return "problems"
        return self.proceed(ev)

    def proceed(self, ev):
        from firmware.flows.login import LoginFlow
        from firmware.flows.setup import SetupFlow
        self.stop()
        if self.term.fault is None and self.term.store.operator_count() == 0 \
                and not self.term.first_run_ok:
            # a terminal that had data has lost its operators: a damaged or replaced
            # store, never a first run that anyone could make themselves supervisor in
            self.term.fault = StorageFault(CORRUPT, "store", "no operators in a terminal "
                                           "that had data: restore handpos.db from backup")
            self.term.fault.standing = True     # no retry brings the operators back
            self.term.store.audit("operators_missing", "", "first run refused")
        if self.term.fault is not None:
            self.term.go_home()         # the storage fault, not a first run
        elif self.term.store.operator_count() == 0:
            self.term.replace_all(SetupFlow(self.term))
        else:
            self.term.replace_all(LoginFlow(self.term))
        return None

    def scroll_up(self, ev):
        self.top = max(0, self.top - 1)

    def scroll_down(self, ev):
        self.top = min(max(0, len(self.lines()) - BODY_ROWS), self.top + 1)

    def line_for(self, part):
        t = self.t
        ok, detail = self.results[part]
        name = t("dev_" + part)
        if part == "clock":
            word = t("clock_synced") if ok else t("clock_unsynced")
        elif part == "battery":
            word = detail if detail != "mains" else t("battery_mains")
        elif part == "keys" and ok is True:
            word = key_root_word(self.term)
        elif ok is True:
            word = t("ok")
        elif detail == "checking":
            word = t("checking")
        elif part == "printer" and detail in ("paper_out", "paper_near_end", "cover_open", "offline"):
            word = t("st_" + detail)
        else:
            word = t("fail")
        return name + ": " + word

    def lines(self):
        # a broken audit trail is listed with the failures but does not hold the start
        # (its result is None: service goes on, docs/audit.md)
        bad = self.failures() + [p for p in self.parts()
                                 if p == "audit" and self.results.get(p, (True,))[0] is None]
        rows = []
        for part in bad:
            rows.append(self.line_for(part))
            rows.append("  " + self.t("check_" + part))
            if part == "audit":
                rows.append("  " + audit_broken_row(self.term))
            if part == "storage":
                rows.extend(self.storage_rows())
        for part in self.parts():
            if part not in bad:
                rows.append(self.line_for(part))
        return rows

    def storage_rows(self):
        """What failed in storage, a row each: "Journal: damaged", "Queue: 2 bad"."""
        t = self.t
        rows = []
        fault = self.term.fault
        if fault is not None:
            rows.append("  " + t("st_" + fault.kind, db=t("db_" + fault.part)))
        for what, part, n in getattr(self.term, "storage_report", ()):
            line = "  " + t("st_" + what, db=t("db_" + part), n=n)
            if line not in rows:
                rows.append(line)
        return rows

    def render(self):
        t = self.t
        rows = self.lines()
        if self.state == "problems":
            self.term.show(t("selftest_title"), rows, t("footer_continue"),
                           alert="error", status=False, top=self.top)
        else:
            self.term.show(t("selftest_title"), rows, t("starting"), status=False, top=self.top)


def audit_broken_row(term):
    """Where the audit trail's chain breaks first: "Broken at #n"."""
    return term.t("audit_broken_at", n=getattr(term, "audit_broken", None) or "?")


def key_root_word(term):
    """What the keys are bound to, as the self-test and About say it: the file root of
    the lab and the simulator is named as weaker (a copy of the SD card carries it)."""
    root = getattr(term, "key_root", None)
    if root is None:
        return term.t("fail")
    return term.t("keyroot_" + root.kind if root.kind in ("otp", "tpm", "file") else "ok")
