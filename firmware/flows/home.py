"""The home menu. Entries not built yet say so; entries need the right role."""
from firmware.flows.common import MenuFlow

# message id, method, roles allowed (None: everyone logged in)
ENTRIES = (
    ("menu_sale", "sale", None),
    ("menu_refund", "refund", ("supervisor",)),
    ("menu_reports", "reports", ("supervisor", "cashier")),
    ("menu_settings", "settings", None),
    ("menu_diagnostics", "diagnostics", ("supervisor", "technician")),
    ("menu_logout", "logout", None),
)


class HomeFlow(MenuFlow):
    NAME = "home"
    TITLE = "home_title"

    def entries(self):
        return [(e[0], e[1]) for e in ENTRIES]

    def _allowed(self, method):
        for msg, name, roles in ENTRIES:
            if name == method:
                return roles is None or self.term.role() in roles
        return False

    def _not_built(self, msg):
        return self.say(self.t(msg), self.t("not_built"))

    def _refuse(self, msg):
        self.term.beep("error")
        return self.say(self.t(msg), self.t("not_allowed"))

    def sale(self):
        return self._not_built("menu_sale")

    def refund(self):
        if not self._allowed("refund"):
            return self._refuse("menu_refund")
        return self._not_built("menu_refund")

    def reports(self):
        if not self._allowed("reports"):
            return self._refuse("menu_reports")
        return self._not_built("menu_reports")

    def settings(self):
        from firmware.flows.settings import SettingsFlow
        self.term.push(SettingsFlow(self.term))
        return None

    def diagnostics(self):
        if not self._allowed("diagnostics"):
            return self._refuse("menu_diagnostics")
        from firmware.flows.diagnostics import DiagnosticsFlow
        self.term.push(DiagnosticsFlow(self.term))
        return None

    def logout(self):
        self.stop()
        self.term.logout("operator")
        return None
