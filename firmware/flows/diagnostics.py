"""Diagnostics for the technician: every peripheral can be checked from the keypad."""
from firmware.core import events, keys
from firmware.flows.boot import PARTS, audit_broken_row
from firmware.flows.common import MenuFlow
from firmware.ui.receipt import Receipt
from firmware.core.version import VERSION
from firmware.ui.screen import wrap

# the printer's answer to the self-test's status query is waited for this long: the
# driver calls a printer that does not answer offline after its reply timeout (about
# a second), an event that also corrects the screen when it comes later
PRINTER_CHECK_MS = 1500

STATES = {}
STATES.update(MenuFlow.STATES)
STATES["keytest"] = {"timeout": 15000,
                     "on": {keys.CANCEL: "key_cancel", "key": "key_seen", "digit": "key_seen",
                            "timeout": "back"}}
STATES["notice"] = dict(MenuFlow.STATES["notice"])
STATES["notice"]["on"] = dict(MenuFlow.STATES["notice"]["on"])
STATES["notice"]["on"][events.PRINTER] = "printer_changed"
STATES["notice"]["on"][events.PRINTED] = "printer_done"


class DiagnosticsFlow(MenuFlow):
    NAME = "diagnostics"
    TITLE = "diag_title"
    STATES = STATES

    def __init__(self, term):
        MenuFlow.__init__(self, term)
        self.keys_pressed = []
        self.test_job = None
        self.printer_check = None       # the timer while the self-test asks the printer
        self.showing = None             # "selftest" | "printer": what the notice is about

    def entries(self):
        return [("diag_selftest", "selftest"), ("diag_printer", "printer_test"),
                ("diag_keypad", "keypad_test"), ("diag_buzzer", "buzzer_test"),
                ("diag_echo", "echo_test"), ("diag_system", "system_info"),
                ("diag_damaged", "damaged_records"),
                ("diag_troubleshoot", "troubleshoot"), ("ts_report", "diag_report")]

    # issue 17: the guided troubleshooting and the printed diagnostic report
    def troubleshoot(self):
        from firmware.flows.troubleshoot import TroubleshootFlow
        self.term.push(TroubleshootFlow(self.term))
        return None

    def diag_report(self):
        from firmware.flows.troubleshoot import print_report
        if self.term.printer is None:
            return self.say(self.t("dev_printer") + ": " + self.t("fail"), self.t("check_printer"))
        print_report(self.term)
        return self.say(self.t("ts_report_printing"))

    def damaged_records(self):
        """Journal records that failed their MAC: which, since when, what was found.
        They stay on the card and out of every total; this is where a supervisor or
        technician reads them before calling support."""
        rows = []
        for rec_id, utc, what in self.term.payments.damaged_records():
            rows.append("#%d %s" % (rec_id, utc[:16].replace("T", " ")))
            rows += wrap("  " + what)
        return self.say(*(rows or [self.t("damaged_none")]))

    def echo_test(self):
        def answered(ok):
            self.notice_lines = [self.t("diag_echo_ok") if ok else self.t("diag_echo_fail")]
            if not self.finished and self.state == "notice" and self.on_top():
                self.render()
        if not self.term.payments.sign_on("301", answered):
            return self.say(self.t("err_no_host"))
        return self.say(self.t("diag_echo_wait"))

    def selftest(self):
        """What the parts said at start, except the printer, which is asked now: one
        unplugged since start still looks fine to the start's test."""
        printer = self.term.printer
        if printer is not None:
            if self.printer_check is not None:
                self.printer_check.cancel()
            printer.query_status()
            self.printer_check = self.term.reactor.call_later(PRINTER_CHECK_MS, self._printer_checked)
        self.showing = "selftest"
        return self.say(*self._selftest_rows())

    def back(self, ev):
        # the notice is left: a late printer answer must not redraw the self-test's
        # rows over whatever screen comes next
        self.showing = None
        if self.printer_check is not None:
            self.printer_check.cancel()
            self.printer_check = None
        return MenuFlow.back(self, ev)

    def _printer_checked(self):
        self.printer_check = None
        printer = self.term.printer
        if printer is not None:
            state = printer.state
            ok = True if state == "ok" else None if state == "paper_near_end" else False
            self.term.selftests["printer"] = (ok, state)
        self._selftest_redraw()

    def _selftest_redraw(self):
        if not self.finished and self.state == "notice" and self.showing == "selftest":
            self.notice_lines = self._selftest_rows()
            if self.on_top():
                self.render()

    def _selftest_rows(self):
        t = self.t
        rows = []
        for part in PARTS:
            if part in ("clock", "battery") or (part in ("msr", "scanner", "chip", "audit")
                                                and part not in self.term.selftests):
                continue
            ok, detail = self.term.selftests.get(part, (False, "absent"))
            if part == "printer" and self.term.printer is None:
                ok = False
            if part == "printer" and ok is not False and self.printer_check is not None:
                rows.append(t("dev_printer") + ": " + t("checking"))
                continue
            word = t("ok") if ok else (t("warn") if ok is None else t("fail"))
            if part == "audit" and not ok:
                word = t("fail")        # broken, though service goes on (docs/audit.md)
            rows.append(t("dev_" + part) + ": " + word)
            if not ok:
                rows.append("  " + t("check_" + part))
                if part == "audit":
                    rows.append("  " + audit_broken_row(self.term))
        return rows

    def printer_test(self):
        t = self.t
        if self.term.printer is None:
            return self.say(t("dev_printer") + ": " + t("fail"), t("check_printer"))
        r = Receipt(lang=self.t.lang)
        r.add(t("diag_test_page"), "center", bold=True, size=2)
        r.add(self.term.config["terminal"]["merchant_name"], "center")
        r.rule()
        r.add("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")
        r.add("abcdefghijklmnopqrstuvwxyz!@#$%^")
        r.add("中文打印测试 销售 退款 结算")
        r.pair("TID " + self.term.config["terminal"]["id"], "handpos " + VERSION)
        r.rule("=")
        self.test_job = self.term.print_receipt(r)
        self.showing = "printer"
        if self.term.printer_state not in ("ok", "paper_near_end", "unknown"):
            return self.say(t("printer_" + self.term.printer_state), t("check_printer"))
        return self.say(t("diag_printing"))

    def printer_changed(self, ev):
        state = ev.get("state")
        if self.showing == "selftest":              # the self-test's question answered
            if self.printer_check is not None:
                self.printer_check.cancel()
            self._printer_checked()
            return
        if state != "ok" and self.showing == "printer":
            self.notice_lines = [self.t("printer_" + state), self.t("check_printer")]

    def printer_done(self, ev):
        if ev.get("job") == self.test_job:
            self.notice_lines = [self.t("diag_printed")]

    def keypad_test(self):
        self.keys_pressed = []
        return "keytest"

    def key_seen(self, ev):
        self.keys_pressed.append(ev.get("key"))

    def key_cancel(self, ev):
        # CANCEL is a key under test too: twice in a row leaves.
        if self.keys_pressed and self.keys_pressed[-1] == keys.CANCEL:
            return "menu"
        self.keys_pressed.append(keys.CANCEL)

    def buzzer_test(self):
        self.term.beep("ok")
        if self.term.led is not None:
            self.term.led.blink(200, 200, 3)
        return self.say(self.t("diag_buzzer_done"))

    def system_info(self):
        t = self.t
        sysm = self.term.system
        batt = sysm.battery()
        y, mo, d, h, mi, s = sysm.local_time()
        return self.say("handpos " + VERSION,
                        "%04d-%02d-%02d %02d:%02d" % (y, mo, d, h, mi),
                        t("clock_synced") if sysm.clock_synced() else t("clock_unsynced"),
                        (t("dev_battery") + " %d%%" % batt[0]) if batt else t("battery_mains"),
                        t("keys_seen", n=self.term.keys_seen))

    def render(self):
        if self.state == "keytest":
            t = self.t
            last = self.keys_pressed[-1] if self.keys_pressed else "-"
            # The last key big, and one row under it: the count once keys come.
            line = t("keys_count", n=len(self.keys_pressed)) if self.keys_pressed \
                else t("press_any_key")
            self.term.show(t("diag_keypad"), [line], t("footer_keytest"), big=last)
            return
        MenuFlow.render(self)
