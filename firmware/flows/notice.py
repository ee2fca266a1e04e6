"""A message a person must see: stays until ENTER or CANCEL, or its time runs out."""
from firmware.core import keys
from firmware.core.fsm import Flow


class NoticeFlow(Flow):
    NAME = "notice"
    INITIAL = "show"
    STATES = {
        "show": {"timeout": 30000,
                 "on": {keys.ENTER: "cancel", keys.CANCEL: "cancel", "timeout": "cancel"}},
    }

    queue = False               # the terminal's OFFLINE PAYMENT alert (queue_alert)

    def __init__(self, term, title, lines, alert="error"):
        Flow.__init__(self, term)
        self.title = title
        self.lines = lines
        self.alert = alert

    def render(self):
        lines = self.lines
        if self.queue:
            lines = self._queue_lines() or lines
        self.term.show(self.title, lines, self.t("footer_ok"), alert=self.alert)

    def _queue_lines(self):
        """What the queued records that need a person are, each in its own words: the
        host declined one after upload; another is damaged and was never sent (the
        host never saw it)."""
        pay = self.term.payments
        if pay is None:
            return None
        declined = damaged = 0
        for rec in pay.queue_summary()["attention"]:
            if rec["state"] == "corrupt":
                damaged += 1
            else:
                declined += 1
        if not declined and not damaged:
            return None
        t = self.t
        lines = [t("queue_declined_n", n=declined)] if declined else []
        if damaged:
            lines.append(t("queue_damaged_n", n=damaged))
        return lines + [t("queue_alert_2")]
