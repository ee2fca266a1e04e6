"""First run: nobody can log in yet, so the first supervisor is created here."""
from firmware.core import keys
from firmware.flows.operator import NewOperatorFlow
from firmware.core.fsm import Flow
from firmware.core.store import is_fault


class SetupFlow(Flow):
    NAME = "setup"
    INITIAL = "welcome"
    STATES = {
        # Nothing to fall back to before a supervisor exists: time only redraws.
        "welcome": {"timeout": 60000,
                    "on": {keys.ENTER: "begin", keys.F2: "toggle_language",
                           "timeout": "stay"}},
        "creating": {"timeout": None, "on": {}},
    }

    def toggle_language(self, ev):
        self.term.set_language("zh" if self.t.lang == "en" else "en")

    def stay(self, ev):
        return "welcome"

    def begin(self, ev):
        self.term.push(NewOperatorFlow(self.term, role="supervisor"))
        return "creating"

    def child_done(self, child, result):
        if result is None:
            return "welcome"
        from firmware.flows.login import LoginFlow
        if self.term.on_in_service is not None:
            try:
                self.term.on_in_service()   # from now on an empty store is a fault
            except Exception as exc:        # the card would not take it: shown, kept
                if not is_fault(exc):
                    raise
                self.term.storage_fault(exc)
        self.stop()
        self.term.replace_all(LoginFlow(self.term))
        return None

    def render(self):
        t = self.t
        if self.state == "welcome":
            self.term.show(t("welcome_title"), [t("welcome_1"), t("welcome_2")],
                           t("footer_welcome"))
