"""Stock > Promotions: the automatic promotions with their windows, for anyone logged in.

Each promotion: its name (in the screen's language, wrapped, never cut), its dates
(MM-DD..MM-DD), its days (Mon-Fri / 周一至五, or Every day) and hours (11:00-14:00, or
All day), and "On now" while its window holds the terminal's local time. UP/DOWN
scroll; ENTER or CANCEL go back. The promotions are imported on a PC (`handpos
promotions import`, docs/promotions.md); nothing here changes them.
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.retail import promotions as P
from firmware.ui.screen import BODY_ROWS, ROW_COLUMNS, wrap


def promotion_rows(t, rule, now):
    """The rows of one promotion on a 128x64 screen."""
    name = rule.get("name_zh") if t.lang == "zh" and rule.get("name_zh") else rule["name_en"]
    rows = wrap(name, ROW_COLUMNS)
    dates, days, hours = P.window_text(rule, t.lang)
    if dates:
        rows.append("  " + dates)
    rows.append("  " + (days or t("pr_every_day")))
    rows.append("  " + (hours or t("pr_all_day")))
    if now is not None and P.is_open(rule, now):
        rows.append("  " + t("pr_on_now"))
    return rows


class PromotionsFlow(Flow):
    NAME = "promotions"
    INITIAL = "list"
    STATES = {
        "list": {"enter": "load", "timeout": "menu_timeout_s",
                 "on": {keys.UP: "up", keys.DOWN: "down", keys.ENTER: "cancel",
                        keys.CANCEL: "cancel"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.rows = []
        self.top = 0

    def load(self):
        t = self.t
        try:
            rules = self.term.catalogue.promotions()
        except Exception as exc:
            from firmware.core.store import is_fault
            if not is_fault(exc):
                raise
            rules = []                  # the fault screen says why
        try:
            now = self.term.system.local_time()
        except Exception:
            now = None
        self.rows = []
        for rule in rules:
            self.rows += promotion_rows(t, rule, now)
        if not self.rows:
            self.rows = [t("pr_none")]
        self.top = 0
        return None

    def up(self, ev):
        self.top = max(0, self.top - 1)

    def down(self, ev):
        self.top = max(0, min(len(self.rows) - BODY_ROWS, self.top + 1))

    def cancel(self, ev=None):
        self.finish(None)

    def render(self):
        self.term.show(self.t("pr_title"), self.rows, self.t("footer_back"),
                       top=self.top if len(self.rows) > BODY_ROWS else -1)
