"""MENU > Reports: the close of the day (issue 14). One menu, one module per part:

  1 Shift        open with the float, pay in / pay out, close with the counted cash
                 (firmware/flows/shift.py)
  2 X report     the open batch's totals, nothing reset (firmware/flows/report_view.py)
  3 Settle & Z   the offline queue first, settlement with the host, the Z report that
                 closes the batch (firmware/flows/settle.py)
  4 Journal      browse and search the transactions, open one, reprint it DUPLICATE
                 (firmware/flows/journal_view.py)
  5 Last Z       the last Z report again, marked DUPLICATE (firmware/flows/report_view.py)
  6 Anomalies    the limit and anomaly hits recorded, newest first, with how each ended
                 (firmware/flows/anomaly_view.py; docs/limits.md)

Who may do what is decided in each part (a cashier opens and closes a shift and prints
an X report; a supervisor's PIN is asked for pay in / pay out, settlement and Z).
"""
from firmware.flows.common import MenuFlow

ENTRIES = (
    ("rep_shift", "shift"),
    ("rep_x", "x_report"),
    ("rep_settle", "settle"),
    ("rep_journal", "journal"),
    ("rep_last_z", "last_z"),
    ("rep_anomalies", "anomalies"),
)


class ReportsFlow(MenuFlow):
    NAME = "reports"
    TITLE = "rep_title"

    def entries(self):
        return list(ENTRIES)

    def shift(self):
        from firmware.flows.shift import ShiftFlow
        self.term.push(ShiftFlow(self.term))
        return None

    def x_report(self):
        from firmware.flows.report_view import XReportFlow
        self.term.push(XReportFlow(self.term))
        return None

    def settle(self):
        from firmware.flows.settle import SettleFlow
        self.term.push(SettleFlow(self.term))
        return None

    def journal(self):
        from firmware.flows.journal_view import JournalFlow
        self.term.push(JournalFlow(self.term))
        return None

    def last_z(self):
        from firmware.flows.report_view import LastZFlow
        self.term.push(LastZFlow(self.term))
        return None

    def anomalies(self):
        if not self.term.can("anomalies"):     # it names other operators
            self.term.refuse("anomalies", "rep_anomalies")
            return None
        from firmware.flows.anomaly_view import AnomaliesFlow
        self.term.push(AnomaliesFlow(self.term))
        return None
