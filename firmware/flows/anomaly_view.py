"""Limits and anomalies for people (issue 15; docs/limits.md):

  limit_lines(term)   the [limits] in words, for Settings (like flows.offline's
                      policy_lines)
  AnomaliesFlow       MENU > Reports > Anomalies: the recorded hits, newest first, three
                      rows each (when and who, what, how it ended), UP/DOWN scroll;
                      the journal's alerts table, read a page at a time
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.payments import limits
from firmware.ui.screen import BODY_ROWS

PAGE = 30           # alerts read at a time; DOWN past the last reads the next page


def limit_lines(term):
    """Every [limits] key in words ("Per payment 500.00", "... none"), the terminal's
    then a cashier's own."""
    t = term.t
    out = []
    for key, shown in limits.rows(term.config):
        out.append(t("lim_" + key))
        out.append("  " + (t("lim_none") if shown is None else shown))
    return out


def _local(utc, tz_min):
    """ "MM-DD HH:MM" local of a journal stamp and its offset."""
    from firmware.payments.alerts import _minutes, civil_from_days
    try:
        parts = (int(utc[0:4]), int(utc[5:7]), int(utc[8:10]), int(utc[11:13]),
                 int(utc[14:16]))
    except ValueError:
        return "??-?? ??:??"
    m = _minutes(parts) + tz_min
    y, mo, d = civil_from_days(m // 1440)
    return "%02d-%02d %02d:%02d" % (mo, d, (m % 1440) // 60, m % 60)


class AnomaliesFlow(Flow):
    NAME = "anomalies"
    INITIAL = "list"
    STATES = {
        "list": {"enter": "load", "timeout": "menu_timeout_s",
                 "on": {keys.UP: "up", keys.DOWN: "down", keys.ENTER: "done",
                        keys.CANCEL: "done", "timeout": "done"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.rows = []
        self.top = 0
        self.more = True

    def load(self):
        self.rows = []
        self.top = 0
        self.more = True
        self._page()

    def _page(self):
        below = self.rows[-1]["id"] if self.rows else None
        got = self.term.payments.journal.alerts(PAGE, below_id=below)
        self.rows += got
        self.more = len(got) == PAGE

    def lines(self):
        t = self.t
        out = []
        for a in self.rows:
            out.append(t("al_when", time=_local(a["utc"], a["tz_min"]), id=a["operator"] or "-"))
            out.append(t("lim_" + a["rule"]) if a["kind"] == "limit" else t("al_" + a["rule"]))
            if a["outcome"] == "override":
                out.append(t("al_override", id=a["supervisor"]))
            else:
                out.append(t("al_" + a["outcome"]))
        return out

    def up(self, ev):
        self.top = max(0, self.top - BODY_ROWS)

    def down(self, ev):
        n = len(self.rows) * 3
        if self.top + BODY_ROWS >= n and self.more:
            self._page()
            n = len(self.rows) * 3
        self.top = min(max(0, n - BODY_ROWS), self.top + BODY_ROWS)

    def done(self, ev):
        self.finish(None)

    def render(self):
        t = self.t
        lines = self.lines() or [t("al_empty")]
        self.term.show(t("rep_anomalies"), lines, t("footer_ok"), top=self.top)
