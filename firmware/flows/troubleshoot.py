"""Troubleshooting: one entry per fault the operators meet, each in words, step by step.

  1 No network       the link (Wi-Fi or Ethernet), the address, DNS, the host reached,
                     TLS: each step's result and what to do, run on the real drivers
                     (term.network: drivers/network.py) without blocking the loop; the
                     walk stops at the first step that fails (the later ones cannot say
                     anything true while it fails)
  2 Payment failed   the journal's last failed payment: why, card or network, what to try
  3 Printer          paper, cover, head (the printer's own status), F1 reprints the last
                     receipt
  4 Power            what the board reports of its battery, or plainly that it reports none
  5 System error     the storage fault and the last errors of the audit trail, the support
                     code (version, fault codes, time: nothing personal, no card data),
                     F1 restarts the application
  6 Report           the diagnostic report on paper (`handpos diag report` writes it)

The report and the support code are built from facts (gather(term)) that hold no card
data: no PAN, track, name or phone, only counts, states, codes and reasons; every line
passes scrub() (any long run of digits masked) and the board's log masker
(term.mask_text, drivers/logmask.py) before it leaves the terminal.
"""
from firmware.core import events, keys
from firmware.core.fsm import Flow
from firmware.core.version import VERSION
from firmware.flows.common import MenuFlow
from firmware.ui.screen import BODY_ROWS, wrap

WAIT_MS = 30000
# the audit events a technician reads as errors (docs/field-repair.md)
ERROR_EVENTS = ("storage_fault", "storage_check", "device_lost", "audit_broken",
                "host_unmatched", "qr_untrusted", "qr_key_damaged", "host_untrusted")
# journal reasons of a payment that failed because of the network or the host
NETWORK_REASONS = ("reason_host_down", "reason_no_reply", "reason_link_lost",
                   "reason_bad_reply", "reason_qr_down", "reason_host_untrusted")
CARD_REASONS = ("reason_card_declined", "reason_card_removed")
FAILED_STATES = ("declined", "failed", "reversed", "reversal_pending")
PRINTER_CODES = {"paper_out": "P1", "cover_open": "P2", "offline": "P3", "error": "P4",
                 "missing": "P3"}


def scrub(text):
    """Any run of 8 or more digits (with single spaces or dashes inside) loses all but its
    last four: no card number, whole or in part, can leave in a report line."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        if not ("0" <= text[i] <= "9"):
            out.append(text[i])
            i += 1
            continue
        j = i
        digits = 0
        while j < n and (("0" <= text[j] <= "9") or
                         (text[j] in " -" and j + 1 < n and "0" <= text[j + 1] <= "9"
                          and j > i)):
            if "0" <= text[j] <= "9":
                digits += 1
            j += 1
        run = text[i:j]
        if digits >= 8 and not _stamp(run):
            seen = 0
            masked = []
            for ch in reversed(run):
                if "0" <= ch <= "9":
                    seen += 1
                    masked.append(ch if seen <= 4 else "*")
                else:
                    masked.append(ch)
            run = "".join(reversed(masked))
        out.append(run)
        i = j
    return "".join(out)


def _stamp(run):
    # a date and time as the report writes them (2026-06-30 14:12) is not a number
    return len(run) <= 16 and run.count("-") == 2 and run[4:5] == "-"


def _mask(term, text):
    masker = getattr(term, "mask_text", None)
    text = scrub(text)
    return masker(text) if masker is not None else text


def utc_text(term):
    y, mo, d, h, mi, s = term.system.utc_time()
    return "%04d-%02d-%02d %02d:%02d" % (y, mo, d, h, mi)


# -- the facts -----------------------------------------------------------------------------
def fault_codes(term, printer=None):
    """The codes of what is wrong now, for the support code: storage faults (E-43 -> 43),
    the printer (P1 paper, P2 cover, P3 no answer, P4 error), the audit trail (A1), the
    host link down (L1)."""
    from firmware.core.store import fault_code
    codes = []
    if term.fault is not None:
        codes.append(fault_code(term.fault)[2:])
    for what, part, n in getattr(term, "storage_report", []) or []:
        if what in ("full", "io", "corrupt"):
            from firmware.core.store import StorageFault
            code = fault_code(StorageFault(what, part))[2:]
            if code not in codes:
                codes.append(code)
        elif what == "bad":
            codes.append("B%d" % (1 + ("store", "journal", "queue").index(part)
                                  if part in ("store", "journal", "queue") else 9))
    state = printer or term.printer_state
    if state in PRINTER_CODES:
        codes.append(PRINTER_CODES[state])
    ok = term.selftests.get("audit", (True, ""))[0]
    if ok is not True and "audit" in term.selftests:
        codes.append("A1")
    if term.link_state == "down":
        codes.append("L1")
    return codes


def _check_char(text):
    """A check character over the code (a mistyped digit on the phone shows)."""
    total = 0
    for i, ch in enumerate(text):
        total += (i + 1) * ord(ch)
    return "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"[total % 34]


def make_support_code(codes, utc, version=VERSION):
    """version, the fault codes and the UTC minute (a (y, mo, d, h, mi, ...) tuple), with
    a check character: "0.1.0-43.P1-2606301412-K". Nothing in it names a person or card."""
    y, mo, d, h, mi = utc[:5]
    body = "%s-%s-%02d%02d%02d%02d%02d" % (version, ".".join(codes) or "0", y % 100, mo, d,
                                           h, mi)
    return body + "-" + _check_char(body)


def support_code(term, codes=None):
    codes = fault_codes(term) if codes is None else codes
    return make_support_code(codes, term.system.utc_time())


def last_errors(term, n=5):
    """(utc, event, detail) of the newest audit lines that are errors, newest first."""
    try:
        rows = term.store.audit_log(200)
    except Exception:
        return []
    out = []
    for row in rows:
        seq, event, operator, detail = row[0], row[1], row[2], row[3]
        if event in ERROR_EVENTS or event.endswith("_fault"):
            out.append((seq, event, detail))
            if len(out) == n:
                break
    return out


def last_failure(term):
    """The newest payment that did not go through, or None."""
    pay = term.payments
    if pay is None:
        return None
    try:
        rows = pay.journal.latest(1, states=FAILED_STATES)
    except Exception:
        return None
    return rows[0] if rows else None


def failure_words(t, rec):
    """(why, which: "card" | "network" | "terminal", what to try: message ids)."""
    reason = rec.get("reason") or ""
    if rec["state"] == "declined":
        why = t("rc_" + rec["rc"])
        if why == "rc_" + rec["rc"]:
            why = t("rc_other", rc=rec["rc"])
        if rec["rc"] == "91":
            return why, "network", ["ts_try_again"]
        return why, "card", ["ts_try_other_card"]
    why = t(reason) if reason else t("ts_reason_unknown")
    if reason in NETWORK_REASONS:
        return why, "network", ["ts_try_network", "ts_try_offline"]
    if reason in CARD_REASONS:
        return why, "card", ["ts_try_card_in"]
    if reason == "reason_storage":
        return why, "terminal", ["ts_try_system"]
    return why, "terminal", ["ts_try_again"]


def gather(term):
    """What the report says, from the running terminal (no card data in any of it)."""
    from firmware.payments.journal import FIELDS
    pay = term.payments
    facts = {"version": VERSION, "tid": term.config["terminal"]["id"],
             "utc": utc_text(term), "synced": term.system.clock_synced(),
             "selftests": sorted((k, v[0], str(v[1])) for k, v in term.selftests.items()),
             "printer": term.printer_state, "battery": term.system.battery(),
             "link": term.link_state, "host": term.config["host"]["address"],
             "errors": last_errors(term, 10), "code": support_code(term),
             "pending": 0, "unexported": 0, "shift_open": False, "batch": 0,
             "batch_records": 0, "failures": [], "network": getattr(term, "net_status", None)}
    if pay is not None:
        try:
            facts["pending"] = len(pay.queue.pending())
            facts["unexported"] = pay.unexported_pending()
            facts["batch"] = pay.batch()
            facts["batch_records"] = len(pay.journal.find(batch=facts["batch"]))
            facts["shift_open"] = bool(pay.journal.shifts(state="open"))
            for rec in pay.journal.latest(5, states=FAILED_STATES):
                facts["failures"].append({k: rec.get(k, FIELDS.get(k)) for k in
                                          ("id", "utc", "kind", "method", "state", "rc",
                                           "reason", "amount", "currency")})
        except Exception:
            pass
    return facts


def report_lines(facts, t, mask=None):
    """The diagnostic report as text lines (paper is 32 columns wide)."""
    lines = ["HANDPOS DIAGNOSTIC REPORT", "version %s" % facts["version"],
             "TID %s" % facts["tid"], "UTC %s%s" % (facts["utc"], "" if facts["synced"]
                                                   else " (clock not synced)"),
             "support code", "  " + facts["code"], "-- self-test"]
    for part, ok, detail in facts["selftests"]:
        word = "ok" if ok else ("check" if ok is None else "FAIL")
        lines.append("%s: %s" % (part, word))
        if not ok:
            lines.append("  " + detail[:60])
    lines.append("-- printer: %s" % facts["printer"])
    batt = facts["battery"]
    lines.append("-- power: " + ("battery %d%%%s" % (batt[0], " charging" if batt[1] else "")
                                 if batt else "no battery reported"))
    lines.append("-- host link: %s" % facts["link"])
    lines.append("   host %s" % (facts["host"] or "none"))
    net = facts.get("network")
    if net:
        active = net.get("active")
        lines.append("-- network: %s" % ("%s %s %s" % (active["type"], active["device"],
                                                        active["state"]) if active else "no link"))
        if net.get("address"):
            lines.append("   address %s" % net["address"])
    lines.append("-- offline queue: %d pending" % facts["pending"])
    lines.append("   not exported: %d" % facts["unexported"])
    lines.append("-- batch %d: %d records" % (facts["batch"], facts["batch_records"]))
    lines.append("   shift open: %s" % ("yes" if facts["shift_open"] else "no"))
    lines.append("-- last failed payments")
    for f in facts["failures"]:
        lines.append("#%d %s %s %s" % (f["id"], f["utc"][:16].replace("T", " "), f["kind"],
                                       f["method"]))
        lines.append("  %s %s" % (f["state"], f["rc"] or (t(f["reason"]) if f["reason"] else "")))
    if not facts["failures"]:
        lines.append("  none")
    lines.append("-- last errors")
    for seq, event, detail in facts["errors"]:
        lines.append("#%d %s" % (seq, event))
        if detail:
            lines.append("  " + detail[:90])
    if not facts["errors"]:
        lines.append("  none")
    lines.append("-- end")
    out = []
    for line in lines:
        line = scrub(line)
        out.append(mask(line) if mask is not None else line)
    return out


def print_report(term):
    from firmware.ui.receipt import Receipt
    r = Receipt(lang=term.t.lang)
    for line in report_lines(gather(term), term.t, getattr(term, "mask_text", None)):
        r.add(line)
    r.rule("=")
    op = term.operator["id"] if term.operator else ""
    term.store.audit("diag_report", op, "printed")
    return term.print_receipt(r)


# -- screens -------------------------------------------------------------------------------
class InfoFlow(Flow):
    """Rows that scroll (UP/DOWN), ENTER or CANCEL back; F1 runs the action if any."""
    NAME = "ts_info"
    INITIAL = "show"
    STATES = {
        "show": {"timeout": 120000,
                 "on": {keys.UP: "up", keys.DOWN: "down", keys.ENTER: "cancel",
                        keys.CANCEL: "cancel", keys.F1: "action", "timeout": "cancel",
                        events.PRINTER: "changed", events.PRINTED: "changed"}},
    }

    def __init__(self, term, title, rows, footer="footer_back", action=None, refresh=None):
        Flow.__init__(self, term)
        self.title = title
        self.rows = self._wrapped(rows)
        self.footer = footer
        self.do = action
        self.refresh_rows = refresh
        self.top = 0

    @staticmethod
    def _wrapped(rows):
        out = []
        for row in rows:
            out += wrap(row)
        return out

    def up(self, ev):
        self.top = max(0, self.top - 1)

    def down(self, ev):
        self.top = max(0, min(len(self.rows) - BODY_ROWS, self.top + 1))

    def action(self, ev):
        if self.do is not None:
            rows = self.do()
            if rows is not None:
                self.rows = self._wrapped(rows)
                self.top = 0

    def changed(self, ev):
        if self.refresh_rows is not None:
            self.rows = self._wrapped(self.refresh_rows())

    def render(self):
        self.term.show(self.t(self.title), self.rows, self.t(self.footer), top=self.top)


def _rows(t, *items):
    out = []
    for item in items:
        out += wrap(item)
    return out


class NoNetworkFlow(Flow):
    """The no-network walk: each step run on the drivers, its result and what to do."""
    NAME = "ts_network"
    INITIAL = "walk"
    STATES = {
        "walk": {"timeout": WAIT_MS,
                 "on": {keys.UP: "up", keys.DOWN: "down", keys.CANCEL: "cancel",
                        "timeout": "timed_out"}},
        "done": {"timeout": 180000,
                 "on": {keys.UP: "up", keys.DOWN: "down", keys.ENTER: "again",
                        keys.CANCEL: "cancel", "timeout": "cancel"}},
    }
    STEPS = ("link", "address", "dns", "host", "tls")

    def __init__(self, term):
        Flow.__init__(self, term)
        self.results = []           # (step, ok, detail, advice id or None)
        self.top = 0
        self.status = None
        self.run_id = 0

    def start(self):
        Flow.start(self)
        self._begin()

    def again(self, ev):
        self._begin()
        return "walk"

    def _begin(self):
        self.results = []
        self.top = 0
        self.run_id += 1
        net = getattr(self.term, "network", None)
        if net is None:
            self._result("link", None, self.t("ts_no_driver"), "ts_do_no_driver")
            return self._end()
        run = self.run_id
        net.status(lambda status, error: self._if(run, self._linked, status, error))

    def _if(self, run, fn, *args):
        if run == self.run_id and not self.finished:
            fn(*args)

    def _host(self):
        address = self.term.config["host"]["address"]
        if not address or ":" not in address:
            return None, None
        host, port = address.rsplit(":", 1)
        return host, int(port)

    def _linked(self, status, error):
        t = self.t
        self.status = status
        self.term.net_status = status
        if status is None:
            self._result("link", False, error or "", "ts_do_nmcli")
            return self._end()
        active = status["active"]
        if active is None:
            wifi = [d for d in status["devices"] if d["type"] == "wifi"]
            eth = [d for d in status["devices"] if d["type"] == "ethernet"]
            detail = ", ".join("%s %s" % (t("ts_wifi") if d["type"] == "wifi" else
                                          t("ts_eth"), t("ts_st_" + _state(d["state"])))
                               for d in wifi + eth) or t("ts_no_device")
            self._result("link", False, detail, "ts_do_wifi" if wifi else "ts_do_cable")
            return self._end()
        kind = t("ts_wifi") if active["type"] == "wifi" else t("ts_eth")
        self._result("link", True, "%s %s" % (kind, active["connection"] or active["device"]),
                     None)
        address = status["address"]
        if not address or address.startswith("169.254."):
            self._result("address", False, address or t("ts_none"), "ts_do_dhcp")
            return self._end()
        self._result("address", True, address, None)
        host, port = self._host()
        if host is None:
            self._result("dns", False, t("ts_no_host"), "ts_do_host")
            return self._end()
        run = self.run_id
        self.term.network.lookup(host, lambda addrs, err: self._if(run, self._looked_up,
                                                                   host, port, addrs, err))

    def _looked_up(self, host, port, addrs, error):
        if not addrs:
            self._result("dns", False, error or host, "ts_do_dns")
            return self._end()
        self._result("dns", True, host if addrs == [host] else addrs[0], None)
        run = self.run_id
        self.term.network.probe(host, port, lambda res: self._if(run, self._probed, res))

    def _probed(self, res):
        t = self.t
        if not res["tcp"]:
            advice = {"refused": "ts_do_refused", "reset": "ts_do_reset",
                      "dns": "ts_do_dns"}.get(res["cause"], "ts_do_route")
            self._result("host", False, t("ts_cause_" + res["cause"]), advice)
            return self._end()
        self._result("host", True, t("ts_reached"), None)
        if res["tls"] is None:
            self._result("tls", None, t("ts_plain"), None)
        elif res["tls"]:
            self._result("tls", True, "", None)
        else:
            self._result("tls", False, t("ts_cause_" + res["cause"]),
                         "ts_do_cert" if res["cause"] == "untrusted" else "ts_do_tls")
        self._end()

    def _result(self, step, ok, detail, advice):
        self.results.append((step, ok, detail, advice))
        op = self.term.operator["id"] if self.term.operator else ""
        if ok is False:
            self.term.store.audit("ts_network", op, "%s failed: %s" % (step, detail))
        if not self.finished and self.on_top():
            self.render()

    def _end(self):
        if not self.finished and self.state != "done":
            self.goto("done")

    def timed_out(self, ev):
        self.run_id += 1
        done = [r[0] for r in self.results]
        step = [s for s in self.STEPS if s not in done][0] if len(done) < len(self.STEPS) \
            else "tls"
        self.results.append((step, False, self.t("ts_no_answer"), "ts_do_restart"))
        return "done"

    def cancel(self, ev=None):
        self.run_id += 1
        self.finish(None)

    def up(self, ev):
        self.top = max(0, self.top - 1)

    def down(self, ev):
        self.top = max(0, min(len(self.rows()) - BODY_ROWS, self.top + 1))

    def rows(self):
        t = self.t
        out = []
        done = [r[0] for r in self.results]
        for step, ok, detail, advice in self.results:
            word = t("ok") if ok else (t("fail") if ok is False else "-")
            out += wrap("%s: %s" % (t("ts_step_" + step), word))
            for part in (detail.split(", ") if detail else []):
                out += wrap(part)
            if advice:
                out += wrap("> " + t(advice))
        if self.state == "walk":
            nxt = [s for s in self.STEPS if s not in done]
            if nxt:
                out.append("%s: %s" % (t("ts_step_" + nxt[0]), t("checking")))
        else:
            failed = [r for r in self.results if r[1] is False]
            for step in self.STEPS:
                if step not in done and failed:
                    out.append("%s: %s" % (t("ts_step_" + step), t("ts_not_tried")))
        return out

    def render(self):
        rows = self.rows()
        if self.state == "walk":
            self.top = max(0, len(rows) - BODY_ROWS)    # the step under way in view
            self.placed = False
        elif not getattr(self, "placed", False):
            # the walk's end: the step that failed at the top, its cause and what to do
            # under it (UP/DOWN move from there)
            self.placed = True
            failed = [r[0] for r in self.results if r[1] is False]
            if failed:
                head = "%s: " % self.t("ts_step_" + failed[0])
                at = [i for i in range(len(rows)) if rows[i].startswith(head)]
                if at:
                    self.top = max(0, min(at[-1], len(rows) - BODY_ROWS))
        footer = "footer_back" if self.state == "walk" else "ts_footer_again"
        failed = [r for r in self.results if r[1] is False]
        alert = None if self.state == "walk" else ("error" if failed else "ok")
        self.term.show(self.t("ts_no_network"), rows, self.t(footer), top=self.top,
                       alert=alert)


def _state(nm_state):
    """nmcli's device state as one of the words the catalogue has."""
    for word in ("connected", "disconnected", "unavailable", "connecting", "unmanaged"):
        if nm_state.startswith(word):
            return word
    return "other"


class TroubleshootFlow(MenuFlow):
    NAME = "troubleshoot"
    TITLE = "ts_title"

    def entries(self):
        out = [("ts_no_network", "no_network"), ("ts_payment", "payment"),
               ("ts_printer", "printer"), ("ts_power", "power"), ("ts_system", "system")]
        if self.term.can("diag_report"):
            out.append(("ts_report", "report"))
        return out

    def _info(self, title, rows, footer="footer_back", action=None, refresh=None):
        self.term.push(InfoFlow(self.term, title, rows, footer, action, refresh))

    def no_network(self):
        self.term.push(NoNetworkFlow(self.term))

    def payment(self):
        t = self.t
        rec = last_failure(self.term)
        if rec is None:
            return self._info("ts_payment", [t("ts_no_failure")])
        why, which, tries = failure_words(t, rec)
        from firmware.core.money import format_amount
        when = rec["utc"][5:16].replace("T", " ")
        rows = ["#%d %s" % (rec["id"], when), format_amount(rec["amount"], rec["currency"])]
        rows += wrap(why)
        rows += wrap(t("ts_which_" + which))
        for tr in tries:
            rows += wrap("> " + t(tr))
        self._info("ts_payment", rows)

    # -- printer
    def _printer_rows(self):
        t = self.t
        state = self.term.printer_state
        if self.term.printer is None or state == "missing":
            return _rows(t, t("ts_pr_none"), "> " + t("check_printer"))
        paper = {"paper_out": "ts_pr_out", "paper_near_end": "ts_pr_low"}.get(state, "ok")
        cover = "ts_pr_open" if state == "cover_open" else "ts_pr_closed"
        head = "ts_pr_head_err" if state == "error" else "ok"
        rows = ["%s: %s" % (t("ts_pr_paper"), t(paper)),
                "%s: %s" % (t("ts_pr_cover"), t(cover)),
                "%s: %s" % (t("ts_pr_head"), t(head))]
        if state in ("offline", "unknown"):
            rows.append("%s: %s" % (t("ts_pr_link"), t("printer_offline")
                                    if state == "offline" else t("checking")))
        advice = {"paper_out": "ts_do_paper", "paper_near_end": "ts_do_paper_soon",
                  "cover_open": "ts_do_cover", "error": "ts_do_head",
                  "offline": "ts_do_printer_cable"}.get(state)
        if advice:
            rows += wrap("> " + t(advice))
        rows += wrap(t("ts_pr_f1"))
        return rows

    def printer(self):
        if self.term.printer is not None:
            self.term.printer.query_status()
        self._info("ts_printer", self._printer_rows(), "footer_back", self._reprint,
                   self._printer_rows)

    def _reprint(self):
        t = self.t
        pay = self.term.payments
        rec = pay.last_receipt() if pay is not None else None
        if rec is None:
            return self._printer_rows() + [t("err_nothing_to_print")]
        pay.print_receipt(rec["id"], "merchant", reprint=True)
        op = self.term.operator["id"] if self.term.operator else ""
        self.term.store.audit("reprint", op, "#%d troubleshoot" % rec["id"])
        return [t("reprinting", n=rec["id"])] + self._printer_rows()

    # -- power
    def power(self):
        t = self.t
        batt = self.term.system.battery()
        if batt is None:
            rows = _rows(t, t("ts_pw_none"), t("ts_pw_none_2"), "> " + t("ts_do_power"))
        else:
            pct, charging = batt
            rows = [t("ts_pw_level", n=pct), t("ts_pw_charging") if charging
                    else t("ts_pw_discharging")]
            if pct < 15 and not charging:
                rows += wrap("> " + t("ts_do_charge"))
            elif not charging:
                rows += wrap("> " + t("ts_pw_ok"))
        self._info("ts_power", rows)

    # -- system error
    def _system_rows(self):
        t = self.t
        from firmware.core.store import fault_code
        rows = []
        if self.term.fault is not None:
            rows.append("%s %s" % (fault_code(self.term.fault), t("ts_sys_storage")))
        bad = [p for p, v in sorted(self.term.selftests.items()) if v[0] is False]
        if bad:
            rows += wrap(t("ts_sys_failed") + " " + ", ".join(bad))
        errors = last_errors(self.term, 3)
        for seq, event, detail in errors:
            rows += wrap("#%d %s" % (seq, event))
        if not rows:
            rows.append(t("ts_sys_none"))
        rows.append(t("ts_sys_code"))
        rows += wrap(support_code(self.term))
        rows += wrap(t("ts_sys_f1"))
        return rows

    def system(self):
        self._info("ts_system", self._system_rows(), "footer_back", self._restart)

    def _restart(self):
        restart = getattr(self.term, "restart", None)
        op = self.term.operator["id"] if self.term.operator else ""
        if restart is None or self.term._busy():
            return [self.t("ts_sys_no_restart")]
        self.term.store.audit("restart", op, "troubleshoot")
        self.term.reactor.call_later(300, restart)
        return [self.t("ts_sys_restarting")]

    def report(self):
        if self.term.printer is None:
            return self.say(self.t("dev_printer") + ": " + self.t("fail"),
                            self.t("check_printer"))
        print_report(self.term)
        return self.say(self.t("ts_report_printing"))
