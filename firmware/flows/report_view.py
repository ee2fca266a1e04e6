"""MENU > Reports > X report and Last Z report (issue 14), and the Z report's making for
the settlement (firmware/flows/settle.py calls make_z).

  XReportFlow   the open batch's X report: nothing is reset or stored. UP/DOWN scroll
                the rows, F1 prints it (a cashier may), ENTER or CANCEL go back.
  LastZFlow     the last Z report the journal keeps, as it was made, marked DUPLICATE;
                F1 prints it (audited: z_reprinted).

  make_z(term, batch, print_it=True) -> doc
                the batch's totals, stored once with journal.save_z(batch, utc, text)
                (text: the doc as JSON), then printed by print_z. A Z already stored for
                the batch is never made again: its stored doc is returned (and printed
                as a DUPLICATE). The batch is not closed here: the settlement moves the
                batch number on.
  print_z(term, doc, duplicate=False) -> printer job, or None when no printer took it
  stored_z(journal, batch) -> doc or None;  last_z(journal) -> doc or None

A doc is firmware/reports/layout.py document(): {"v", "report": "X" | "Z", "batch",
"merchant", "tid", "mid", "made_utc", "made_local", "synced", "totals"} with totals
firmware/reports/totals.py summarize()'s dict.
"""
import json

from firmware.core import events, keys
from firmware.core.fsm import Flow
from firmware.core.store import is_fault
from firmware.payments.journal import ZExists
from firmware.reports import layout, totals
from firmware.ui.screen import BODY_ROWS

PRINTABLE = ("ok", "paper_near_end", "unknown")     # printer states a job goes out in


def _stamps(term):
    """(UTC 'YYYY-MM-DDTHH:MM:SSZ', local 'YYYY-MM-DD HH:MM') now."""
    y, mo, d, h, mi, s = term.system.utc_time()
    utc = "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, h, mi, s)
    y, mo, d, h, mi, s = term.system.local_time()
    return utc, "%04d-%02d-%02d %02d:%02d" % (y, mo, d, h, mi)


class CategoryOf:
    """summarize()'s category_of from the terminal's catalogue: each item and the
    category list read once a report."""

    def __init__(self, catalogue):
        self.catalogue = catalogue
        self._items = {}
        self._names = None

    def __call__(self, item_id):
        if self.catalogue is None or item_id is None:
            return None
        if item_id not in self._items:
            item = self.catalogue.get(item_id)
            self._items[item_id] = item.get("category") if item else None
        cid = self._items[item_id]
        if cid is None:
            return None
        if self._names is None:
            self._names = {}
            for c in self.catalogue.categories():
                self._names[c["id"]] = c
        c = self._names.get(cid)
        return (cid, c["name_en"], c["name_zh"]) if c else (cid, "", "")


def batch_totals(term, batch):
    """summarize() of one batch: its records through journal.find(batch=...), and the
    earlier sales its refunds of lines name (one get() each)."""
    journal = term.payments.journal
    records = journal.find(batch=batch)
    originals = {}
    for rid in totals.refunded_sales(records):
        rec = journal.get(rid)
        if rec is not None:
            originals[rid] = rec
    return totals.summarize(records, originals, CategoryOf(term.catalogue),
                            term.config["money"]["currency"], points_back(term))


def points_back(term):
    """summarize()'s points_back from the members' ledger (firmware/retail/loyalty.py
    writes one "refund" entry per refund of a member's sale); None without members."""
    members = getattr(term, "members", None)
    if members is None:
        return None

    def back(rec):
        try:
            return members.applied(rec["id"], "refund")
        except Exception as exc:            # a damaged or failing members.db: not known
            if is_fault(exc) or exc.__class__.__name__ == "MemberDamaged":
                return None
            raise
    return back


def make_doc(term, report, batch):
    utc, local = _stamps(term)
    return layout.document(report, term.config, batch, batch_totals(term, batch), utc, local,
                           term.system.clock_synced())


# -- Z documents in the journal ----------------------------------------------------------

def _doc_of(row):
    """The doc of a stored Z (the journal's row: {"id", "batch", "utc", "doc"}), or None
    when its text is no report."""
    if row is None:
        return None
    try:
        doc = json.loads(row["doc"])
    except (ValueError, TypeError, KeyError):
        return None
    return doc if isinstance(doc, dict) and "totals" in doc else None


def stored_z(journal, batch):
    """The Z doc stored for batch (the first, should there be more), or None."""
    for row in journal.z_reports(batch=batch):
        doc = _doc_of(row)
        if doc is not None:
            return doc
    return None


def last_z(journal):
    """The newest stored Z doc, or None."""
    return _doc_of(journal.last_z())


def make_z(term, batch, print_it=True, settled=None):
    """The batch's Z: made and stored once (journal.save_z), printed (print_it);
    settled says how the batch closed ("in_balance", "uploaded", "local", or None when
    not known: a close a restart finished), printed under the batch number. A Z
    already stored for the batch is returned as stored and printed as a DUPLICATE. One
    stored that does not read back (it fails its check: flagged for a supervisor) still
    holds the batch's place (the journal keeps one Z a batch, ZExists): the Z made now
    is printed and returned, not stored, and the audit line says so."""
    journal = term.payments.journal
    doc = stored_z(journal, batch)
    if doc is not None:
        if print_it:
            print_z(term, doc, duplicate=True)
        return doc
    doc = make_doc(term, "Z", batch)
    if settled:
        doc["settled"] = settled
    kept = ""
    try:
        journal.save_z(batch, doc["made_utc"], json.dumps(doc))
    except ZExists:
        kept = " not stored: the stored Z fails its check"
    op = term.operator["id"] if term.operator else ""
    term.store.audit("z_report", op, "batch %d net %d%s" % (
        batch, doc["totals"]["total"]["net"], kept))
    if print_it:
        print_z(term, doc)
    return doc


def print_z(term, doc, duplicate=False):
    """The Z doc on paper (DUPLICATE when duplicate, with the time of this reprint); the
    printer job, or None when there is no printer to take it."""
    reprinted = _stamps(term)[1] if duplicate else ""
    job = term.print_receipt(layout.receipt(doc, term.t, duplicate, reprinted))
    op = term.operator["id"] if term.operator else ""
    term.store.audit("z_reprinted" if duplicate else "z_printed", op,
                     "batch %s %s" % (doc.get("batch"), "sent" if job is not None else "no printer"))
    return job


# -- the flows ---------------------------------------------------------------------------

class ReportView(Flow):
    """A report's rows scrolled by UP/DOWN, F1 prints it. Subclasses load self.doc."""
    INITIAL = "view"
    TITLE = ""
    STATES = {
        "view": {"enter": "load", "timeout": "menu_timeout_s",
                 "on": {keys.UP: "up", keys.DOWN: "down", keys.F1: "print_it",
                        keys.ENTER: "done", keys.CANCEL: "done", keys.MENU: "done",
                        "timeout": "done", events.PRINTED: "printed",
                        events.PRINTER: "printer_changed"}},
    }
    DUPLICATE = False

    def __init__(self, term):
        Flow.__init__(self, term)
        self.doc = None
        self.lines = []
        self.top = 0
        self.note = None            # rpt_printing | rpt_printed | rpt_not_printed
        self.job = None
        self.reprinted = ""

    def load(self):
        try:
            self.doc = self.read()
        except Exception as exc:
            if not is_fault(exc):
                raise
            self.doc = None
            self.lines = [self.t("rpt_unreadable")]
            return None
        if self.DUPLICATE:
            self.reprinted = _stamps(self.term)[1]
        self.lines = self.empty_lines() if self.doc is None else \
            layout.screen_lines(self.doc, self.t, self.DUPLICATE, self.reprinted)
        return None

    def read(self):
        return None

    def empty_lines(self):
        return []

    def up(self, ev):
        self.top = max(0, self.top - 1)

    def down(self, ev):
        self.top = max(0, min(len(self.lines) - BODY_ROWS, self.top + 1))

    def print_it(self, ev):
        if self.doc is None:
            return None
        self.job = self.send()
        state = self.term.printer_state if self.job is not None else "missing"
        self.note = "rpt_printing" if state in PRINTABLE else "rpt_not_printed"
        return None

    def send(self):
        return self.term.print_receipt(layout.receipt(self.doc, self.t, self.DUPLICATE,
                                                      self.reprinted))

    def printed(self, ev):
        if self.job is not None and ev.get("job") == self.job and self.note == "rpt_printing":
            self.note = "rpt_printed"
        return None

    def printer_changed(self, ev):
        if self.note == "rpt_printing" and ev.get("state") not in ("ok", "paper_near_end"):
            self.note = "rpt_not_printed"
        return None

    def done(self, ev):
        self.finish(None)

    def render(self):
        t = self.t
        self.term.show(t(self.TITLE), self.lines, t(self.note or "rpt_footer"), top=self.top)


class XReportFlow(ReportView):
    """The open batch's X report: computed now, stored nowhere, nothing reset."""
    NAME = "x_report"
    TITLE = "rep_x"

    def read(self):
        return make_doc(self.term, "X", self.term.payments.batch())

    def send(self):
        job = ReportView.send(self)
        op = self.term.operator["id"] if self.term.operator else ""
        self.term.store.audit("x_printed", op, "batch %d %s" % (
            self.doc["batch"], "sent" if job is not None else "no printer"))
        return job


class LastZFlow(ReportView):
    """The last Z report as it was stored, marked DUPLICATE; its reprints audited."""
    NAME = "last_z"
    TITLE = "rpt_last_z_title"
    DUPLICATE = True

    STATES = dict(ReportView.STATES)
    STATES["supervisor"] = {"timeout": None, "on": {}}     # SupervisorFlow on top

    def read(self):
        return last_z(self.term.payments.journal)

    def empty_lines(self):
        return [self.t("rpt_no_z")]

    def print_it(self, ev):
        """A second copy of a closed day: a supervisor other than the operator acting
        says yes first (permissions.SECOND_PERSON)."""
        if self.doc is None:
            return None
        from firmware.flows.supervisor import SupervisorFlow
        self.term.push(SupervisorFlow(self.term, "rep_z_reprint"))
        return "supervisor"

    def child_done(self, child, result):
        if child.NAME == "supervisor" and result is not None:
            ReportView.print_it(self, None)
        return "view"

    def load(self):
        if self.doc is not None:
            return None             # back from the supervisor: the same DUPLICATE
        return ReportView.load(self)

    def send(self):
        return print_z(self.term, self.doc, duplicate=True)
