"""The home menu. Every entry asks the permission table (Terminal.can) first."""
from firmware.flows.common import MenuFlow

# message id, method: each method's action in firmware/security/permissions.py is its
# name (the one table of who may do what)
ENTRIES = (
    ("menu_sale", "sale"),
    ("menu_refund", "refund"),      # a supervisor's PIN is asked inside
    ("menu_void", "void"),          # likewise
    ("menu_reprint", "reprint"),
    ("menu_reports", "reports"),
    ("menu_settings", "settings"),
    ("menu_diagnostics", "diagnostics"),
    ("menu_logout", "logout"),
    ("menu_offline", "offline"),    # upload now for everyone; export asks a supervisor
    ("menu_help", "troubleshoot"),  # no network, payment failed, printer, power, errors
    ("menu_members", "members"),    # look up, enrol; erasing asks a supervisor
    # Stock last: MENU then UP reaches it in one key (the shelf is where it is used)
    ("menu_stock", "stock"),        # looking is for sellers; changes ask a supervisor
)


class HomeFlow(MenuFlow):
    NAME = "home"
    TITLE = "home_title"

    def troubleshoot(self):
        from firmware.flows.troubleshoot import TroubleshootFlow
        self.term.push(TroubleshootFlow(self.term))
        return None

    def entries(self):
        return list(ENTRIES)

    def open(self, ev):
        """Every entry asks the permission table first: refused, said and audited."""
        entries = self.entries()
        if not entries:
            return None
        msg, method = entries[self.index]
        if not self.term.can(method):
            self.term.refuse(method, msg)
            return None
        return getattr(self, method)()

    def _not_built(self, msg):
        return self.say(self.t(msg), self.t("not_built"))

    def sale(self):
        from firmware.flows.sale import SaleFlow
        self.term.push(SaleFlow(self.term))
        return None

    def refund(self):
        from firmware.flows.void import RefundStartFlow
        self.term.push(RefundStartFlow(self.term))
        return None

    def void(self):
        from firmware.flows.void import VoidFlow
        self.term.push(VoidFlow(self.term))
        return None

    def reprint(self):
        """Any receipt by its number; ENTER alone: the oldest approval whose receipt
        never reached the paper, else the latest receipt."""
        from firmware.flows.pick import PickFlow
        pay = self.term.payments
        unprinted = pay.unprinted()
        proposed = unprinted[0] if unprinted else pay.last_receipt()
        if proposed is None:
            return self.say(self.t("menu_reprint"), self.t("err_nothing_to_print"))
        self.term.push(PickFlow(self.term, "menu_reprint", self._has_receipt, proposed))
        return None

    def _has_receipt(self, rec):
        return None if rec["state"] in self.term.payments.RECEIPT_STATES else "err_nothing_to_print"

    def _reprint_picked(self, rec):
        self.term.payments.print_receipt(rec["id"], "merchant", reprint=True)
        op = self.term.operator["id"] if self.term.operator else ""
        self.term.store.audit("reprint", op, "#%d" % rec["id"])     # as the journal's reprint
        return self.say(self.t("menu_reprint"), self.t("reprinting", n=rec["id"]))

    def reports(self):
        from firmware.flows.reports import ReportsFlow
        self.term.push(ReportsFlow(self.term))
        return None

    def settings(self):
        from firmware.flows.settings import SettingsFlow
        self.term.push(SettingsFlow(self.term))
        return None

    def diagnostics(self):
        from firmware.flows.diagnostics import DiagnosticsFlow
        self.term.push(DiagnosticsFlow(self.term))
        return None

    def child_done(self, child, result):
        # a payment ends on the idle screen, ready for the next customer
        if child.NAME in ("sale", "refund_start", "void"):
            self.finish(None)
            return None
        if child.NAME == "pick" and result is not None:
            return self._reprint_picked(result)
        return "menu"

    def stock(self):
        from firmware.flows.inventory import StockFlow
        self.term.push(StockFlow(self.term))
        return None

    def members(self):
        from firmware.flows.members import MembersMenuFlow
        self.term.push(MembersMenuFlow(self.term))
        return None

    def offline(self):
        from firmware.flows.offline import OfflineFlow
        self.term.push(OfflineFlow(self.term))
        return None

    def logout(self):
        n = self.term.payments.unexported_pending() if self.term.payments else 0
        if n:
            # offline payments and reversals must reach the host (or an export file)
            # before the person who took them walks away from the terminal
            self.term.beep("error")
            return self.say(self.t("err_queue_pending", n=n), self.t("err_queue_hint"))
        self.stop()
        self.term.logout("operator")
        return None
