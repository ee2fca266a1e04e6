"""A limit or anomaly hit on the screen (issue 15; docs/limits.md): what was hit, then a
supervisor approves or the payment does not go. Pushed by the sale, refund and void
flows before anything leaves the terminal; finishes with the supervisor (operator
dict) who approved, or None (declined by configuration, CANCEL, or time out).

Every hit is recorded when shown (asked or declined) and again with its end (override
by whom, or cancelled): firmware/payments/alerts.py record().
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.flows.supervisor import SupervisorFlow
from firmware.payments import alerts, checks

ENTRY = "entry_timeout_s"


class LimitGateFlow(Flow):
    NAME = "limit_gate"
    INITIAL = "show"
    STATES = {
        "show": {"enter": "shown", "timeout": ENTRY,
                 "on": {keys.ENTER: "ask", keys.CANCEL: "cancel", "timeout": "cancel",
                        keys.UP: "up", keys.DOWN: "down"}},
        "supervisor": {"enter": "ask_supervisor", "timeout": None, "on": {}},
    }

    def __init__(self, term, hits):
        Flow.__init__(self, term)
        self.hits = hits
        self.at = 0                         # the hit on the screen (UP/DOWN: the others)
        # one hit declined by configuration declines the payment
        self.declined = any(h["action"] == "decline" for h in hits)
        self.recorded = False

    def shown(self):
        if self.recorded:
            return None
        self.recorded = True
        outcome = "declined" if self.declined else "asked"
        for h in self.hits:
            checks.record(self.term, h, outcome)
        self.term.beep("error")
        return None

    def up(self, ev):
        self.at = max(0, self.at - 1)

    def down(self, ev):
        self.at = min(len(self.hits) - 1, self.at + 1)

    def ask(self, ev):
        if self.declined:
            self.finish(None)           # recorded as declined when shown
            return None
        return "supervisor"

    def ask_supervisor(self):
        self.term.push(SupervisorFlow(self.term, "gate_purpose"))

    def child_done(self, child, result):
        if child.NAME != "supervisor":
            return None                 # a notice over this flow
        if result is None:
            return "show"               # no supervisor: the hit again (CANCEL steps back)
        for h in self.hits:
            checks.record(self.term, h, "override", result["id"])
        self.finish(result)
        return None

    def cancel(self, ev):
        if not self.declined:
            for h in self.hits:
                checks.record(self.term, h, "cancelled")
        self.finish(None)
        return None

    def render(self):
        t = self.t
        h = self.hits[self.at]
        lines = [t(msg, **values) for msg, values in h["lines"]][:2]
        if self.declined:
            last = t("gate_declined")
        elif len(self.hits) > 1:
            last = t("gate_more", n="%d" % (len(self.hits) - 1))
        else:
            last = t("gate_ask")
        title = t("lim_title" if h["kind"] == alerts.LIMIT else "an_title")
        self.term.show(title, lines + [last],
                       t("footer_ok") if self.declined else t("footer_gate"), alert="warn")
