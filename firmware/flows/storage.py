"""The storage fault: what the terminal shows while its SD card cannot record.

No new sale can start from here (nothing is taken that could not be written down), and
the words say why and that nothing is lost. A full or failing card is tried again by
the terminal's own timer; ENTER tries at once. A damaged database waits for a
technician (docs/storage.md).
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.core.store import CORRUPT


class StorageFaultFlow(Flow):
    NAME = "storage_fault"
    INITIAL = "fault"
    STATES = {
        "fault": {"timeout": None, "on": {keys.ENTER: "retry", "key": "refuse", "digit": "refuse"}},
    }

    def retry(self, ev):
        if not self.term.retry_storage():
            self.term.beep("error")
        return None

    def refuse(self, ev):
        self.term.beep("error")
        return None

    def render(self):
        t = self.t
        fault = self.term.fault
        kind = fault.kind if fault is not None else "io"
        part = getattr(fault, "part", "") or "store"
        if kind == CORRUPT:
            title = t("sf_corrupt", db=t("db_" + part))
            rows = [t("sf_no_sales"), t("sf_nothing_deleted"), t("sf_call")]
            footer = t("sf_technician")
        else:
            title = t("sf_full") if kind == "full" else t("sf_io")
            rows = [t("sf_no_sales"), t("sf_nothing_lost"), t("sf_call")]
            footer = t("sf_retrying")
        self.term.show(title, rows, footer, alert="error")
