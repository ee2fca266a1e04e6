"""Diagnostics for the technician: every peripheral can be checked from the keypad."""
from firmware.core import events, keys
from firmware.flows.boot import PARTS
from firmware.flows.common import MenuFlow
from firmware.ui.receipt import Receipt
from firmware.core.version import VERSION

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

    def entries(self):
        return [("diag_selftest", "selftest"), ("diag_printer", "printer_test"),
                ("diag_keypad", "keypad_test"), ("diag_buzzer", "buzzer_test"),
                ("diag_echo", "echo_test"), ("diag_system", "system_info")]

    def echo_test(self):
        def answered(ok):
            self.notice_lines = [self.t("diag_echo_ok") if ok else self.t("diag_echo_fail")]
            if not self.finished and self.state == "notice" and self.on_top():
                self.render()
        if not self.term.payments.sign_on("301", answered):
            return self.say(self.t("err_no_host"))
        return self.say(self.t("diag_echo_wait"))

    def selftest(self):
        t = self.t
        rows = []
        for part in PARTS:
            if part in ("clock", "battery") or (part in ("msr", "chip") and part not in self.term.selftests):
                continue
            ok, detail = self.term.selftests.get(part, (False, "absent"))
            word = t("ok") if ok else (t("warn") if ok is None else t("fail"))
            rows.append(t("dev_" + part) + ": " + word)
            if not ok:
                rows.append("  " + t("check_" + part))
        return self.say(*rows)

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
        return self.say(t("diag_printing"))

    def printer_changed(self, ev):
        state = ev.get("state")
        if state != "ok":
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
