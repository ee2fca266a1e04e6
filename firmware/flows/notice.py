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

    def __init__(self, term, title, lines, alert="error"):
        Flow.__init__(self, term)
        self.title = title
        self.lines = lines
        self.alert = alert

    def render(self):
        self.term.show(self.title, self.lines, self.t("footer_ok"), alert=self.alert)
