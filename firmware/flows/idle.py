"""The idle screen of a logged-in terminal: the time, who is on, what is pending."""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.ui.screen import BODY_ROWS


class IdleFlow(Flow):
    NAME = "idle"
    INITIAL = "idle"
    STATES = {
        "idle": {"timeout": "idle_logout_s",
                 "on": {keys.MENU: "menu", keys.ENTER: "menu", keys.F4: "logout",
                        "digit": "quick_sale", "timeout": "logout",
                        "scan": "scan_sale", keys.F1: "item_sale",
                        keys.UP: "scroll_up", keys.DOWN: "scroll_down"}},
        "menu": {"timeout": None, "on": {}},
    }

    top = 0                     # first notice shown when more wait than fit

    def scroll_up(self, ev):
        self.top = max(0, self.top - 1)

    def scroll_down(self, ev):
        self.top = max(0, min(len(self.notices()) - BODY_ROWS, self.top + 1))

    def menu(self, ev):
        from firmware.flows.home import HomeFlow
        self.term.push(HomeFlow(self.term))
        return "menu"

    def quick_sale(self, ev):
        """A digit on the idle screen starts a sale with that digit already typed."""
        if not self.term.can("sale"):
            self.term.refuse("sale", "menu_sale")
            return "menu"
        from firmware.flows.sale import SaleFlow
        sale = SaleFlow(self.term)
        self.term.push(sale)
        sale.dispatch(ev)
        return "menu"

    def scan_sale(self, ev):
        """A scan on the idle screen starts a sale of items with that item; a receipt's
        barcode (a customer bringing goods back) starts its refund."""
        from firmware.retail import receipt_code
        if not self.term.can("sale"):       # a technician sells and refunds nothing
            self.term.refuse("sale", "menu_sale")
            return "menu"
        if receipt_code.is_receipt_code(ev.get("code")):
            from firmware.flows.void import RefundStartFlow
            self.term.push(RefundStartFlow(self.term, scan=ev))
            return "menu"
        from firmware.flows.cart import CartFlow
        self.term.push(CartFlow(self.term, scan=ev.get("code"), symbology=ev.get("symbology")))
        return "menu"

    def item_sale(self, ev):
        """F1: a sale of items started by typing a PLU."""
        if not self.term.can("sale"):
            self.term.refuse("sale", "menu_sale")
            return "menu"
        from firmware.flows.cart import CartFlow
        self.term.push(CartFlow(self.term))
        return "menu"

    def child_done(self, child, result):
        return "idle"

    def logout(self, ev):
        self.stop()
        self.term.logout("idle" if ev.kind == "timeout" else "operator")

    def _offline_lines(self):
        """OFFLINE while the host cannot be reached; what waits to be uploaded, how old
        the oldest is once it is near its limit; what a supervisor must look at."""
        from firmware.core.money import format_amount
        t = self.t
        term = self.term
        summary = term.payments.queue_summary()
        lines = []
        offline = term.link_state == "down"
        for cur in sorted(summary["totals"]):
            n, amount = summary["totals"][cur]
            if offline:             # one line: the idle screen has room for one or two
                lines.append(t("idle_offline_queued", n=n, amount=format_amount(amount, cur)))
                offline = False
            else:
                lines.append(t("idle_queued", n=n, amount=format_amount(amount, cur, with_code=True)))
        if offline:
            lines.append(t("idle_offline"))
        if summary["age_flag"]:
            lines.append(t("idle_old", h=summary["age_s"] // 3600))
        if summary["attention"]:
            lines.append(t("idle_attention", n=len(summary["attention"])))
        return lines

    def notices(self):
        """What needs doing, most pressing first: each a row of the idle screen."""
        t = self.t
        term = self.term
        lines = []
        if term.payments is not None:
            if term.payments.trust.untrusted():     # no offline until a technician looks
                lines.append(t("idle_untrusted"))
            lines += self._offline_lines()
            unprinted = [r for r in term.unprinted if not
                         (term.payments.journal.get(r["id"]) or {}).get("receipt_printed")]
            if unprinted:
                lines.append(t("unprinted_n", n=len(unprinted)))
            damaged = term.payments.damaged_records()
            if damaged:
                lines.append(t("idle_damaged", n=len(damaged)))
            reversals = len(term.payments.pending_reversals())
            if reversals and not term.pending:
                lines.append(t("reversals_n", n=reversals))
            # settlement: running, failed (why), unfinished; the reminder
            lines += term.settlement().idle_lines()
        if getattr(term, "audit_broken", None):     # found at start: docs/audit.md
            lines.append(t("idle_audit_broken", n=term.audit_broken))
        if term.printer_state not in ("ok", "paper_near_end"):
            lines.append(t("printer_" + term.printer_state))
        if not term.system.clock_synced():
            lines.append(t("clock_unsynced_hint"))
        from firmware.flows.inventory import low_stock_count
        low = low_stock_count(term)     # a kept count: drawing never reads the catalogue
        if low:
            lines.append(t("inv_idle_low", n=low))
        if term.config.get("lab", {}).get("enabled"):
            lines.append(t("idle_lab"))       # test keys may be live: never in the field
        return lines

    def render(self):
        t = self.t
        term = self.term
        if self.state != "idle":
            return
        op = term.operator or {}
        lines = self.notices()
        # the title says who is logged in; the clock is big while nothing else needs
        # saying, else the notices take the body (the status bar still has the time)
        # and scroll with UP/DOWN when more wait than fit
        big = term.status().clock if len(lines) < BODY_ROWS else ""
        self.top = max(0, min(self.top, len(lines) - BODY_ROWS))
        term.show(t("operator_is", name=op.get("name", "")), lines, t("footer_idle"),
                  big=big, top=self.top if len(lines) > BODY_ROWS else -1)
