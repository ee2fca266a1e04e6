"""The storage fault: what the terminal shows while its SD card cannot record.

No new sale can start from here (nothing is taken that could not be written down), and
the words say why and that nothing is lost. A full or failing card is tried again by
the terminal's own timer; ENTER tries at once. A damaged database waits for a
technician (docs/storage.md).

F2 (named in the footer) opens a read-only Diagnostics for the supervisor or
technician standing at the terminal: the self-test and system info, nothing that
writes. It asks for no PIN: checking one reads the store, which may be the database
that failed, and nothing it shows is secret.
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.core.store import CORRUPT, fault_code
from firmware.flows.diagnostics import DiagnosticsFlow


class StorageFaultFlow(Flow):
    NAME = "storage_fault"
    INITIAL = "fault"
    STATES = {
        "fault": {"timeout": None, "on": {keys.ENTER: "retry", keys.F2: "diagnostics",
                                          "key": "refuse", "digit": "refuse"}},
    }

    def retry(self, ev):
        if not self.term.retry_storage():
            self.term.beep("error")
        return None

    def refuse(self, ev):
        self.term.beep("error")
        return None

    def diagnostics(self, ev):
        self.term.push(FaultDiagnosticsFlow(self.term))
        return None

    def render(self):
        t = self.t
        fault = self.term.fault
        kind = fault.kind if fault is not None else "io"
        part = getattr(fault, "part", "") or "store"
        call = t("sf_call_code", code=fault_code(fault)) if fault is not None else t("sf_call")
        if kind == CORRUPT:
            title = t("sf_corrupt", db=t("db_" + part))
            rows = [t("sf_no_sales"), t("sf_nothing_deleted"), call]
            footer = t("sf_technician_diag")
        else:
            title = t("sf_full") if kind == "full" else t("sf_io")
            rows = [t("sf_no_sales"), t("sf_nothing_lost"), call]
            footer = t("sf_retrying_diag")
        self.term.show(title, rows, footer, alert="error")


class FaultDiagnosticsFlow(DiagnosticsFlow):
    """Diagnostics over the fault screen: only what reads. Its NAME is the fault's, so
    the terminal treats it as the fault screen: a fault reported again (each retry)
    redraws it instead of replacing it, and the fault's end goes home from it."""
    NAME = "storage_fault"

    def entries(self):
        return [("diag_selftest", "selftest"), ("diag_system", "system_info")]
