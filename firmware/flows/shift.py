"""MENU > Reports > Shift: the cash drawer of the operator logged in (issue 14, item 1).

The menu follows the operator's shift:

  no open shift   1 Open shift         the float counted into the drawer, ENTER opens
                  2 Print last shift   (once a shift of theirs has closed)
  a shift open    1 Pay in, 2 Pay out  an amount, a reason, a supervisor's PIN; the
                                       drawer opens with a slip
                  3 Shift status       float, cash in, cash out, expected so far
                  4 Close shift        the cash counted: the total, or F1 note by note
                                       and coin by coin (the sum shown); then expected
                                       against counted and the difference (OVER /
                                       SHORT), ENTER closes, the shift report prints
                  5 Print last shift

The figures and the report are firmware/payments/shifts.py's; the rows are the
journal's. A full card while writing: the terminal's fault screen says so and nothing
is half-written (each write is one transaction). No printer, or no paper: the shift is
closed all the same, the screen says "Not printed", and Print last shift prints it.
"""
from firmware.core import events, keys
from firmware.core.fsm import Flow
from firmware.core.money import format_amount
from firmware.core.store import is_fault
from firmware.flows.common import AmountField, Field, MenuFlow
from firmware.flows.supervisor import SupervisorFlow
from firmware.payments import shifts as shiftlib
from firmware.payments.journal import ShiftError

ENTRY = "entry_timeout_s"
COUNT_MAX = 99999999            # minor units a drawer count may reach (999,999.99)
PIECES_DIGITS = 5               # notes or coins of one denomination: up to 99,999
PRINTING_STATES = ("ok", "paper_near_end", "unknown")


def _states(base, extra):
    out = {}
    for name in base:
        out[name] = base[name]
    for name in extra:
        out[name] = extra[name]
    return out


def shifts_of(term):
    return shiftlib.Shifts(term.payments.journal, term.store.audit, term.system,
                           term.config["money"]["currency"])


def operator_id(term):
    return (term.operator or {}).get("id", "")


def print_note(term, job, printing="sh_printing"):
    """The message id of what the paper does with job: printing, or not printed (no
    printer, or one that cannot print now: the job waits for it)."""
    if job is None or term.printer_state not in PRINTING_STATES:
        return "sh_not_printed"
    return printing


def printer_why(term):
    """Why nothing prints, in words: "No printer", "Printer: no paper"."""
    state = term.printer_state if term.printer is not None else "missing"
    return term.t("printer_" + state)


def print_report(term, shift, reprint=False):
    """The shift report to the printer; the job, or None without a printer."""
    name = ""
    try:
        op = term.store.get_operator(shift["operator"])
        name = (op or {}).get("name", "")
    except Exception as exc:
        if not is_fault(exc):
            raise
    figs = shiftlib.figures(term.payments.journal, shift)
    receipt = shiftlib.report(shift, figs, term.config, term.t,
                              synced=term.system.clock_synced(), reprint=reprint, name=name)
    return term.print_receipt(receipt)


def difference_line(t, difference, currency):
    word = shiftlib.difference_word(difference)
    if word == "balanced":
        return t("sh_balanced")
    return t("sh_" + word, amount=shiftlib.signed(difference, currency))


def logout_notice(term, op):
    """At logout: a notice over the login screen when op leaves a shift open (allowed:
    it stays open, for them to close at their next login)."""
    if op is None or term.payments is None:
        return
    try:
        shift = term.payments.journal.shift_current(op["id"])
    except Exception as exc:
        if not is_fault(exc):
            raise
        return
    if shift is None:
        return
    from firmware.flows.notice import NoticeFlow
    t = term.t
    term.push(NoticeFlow(term, t("sh_title"), [t("sh_still_open"), t("sh_of", id=op["id"]),
                                               t("sh_close_later")], alert="warn"))


class ShiftFlow(MenuFlow):
    NAME = "shift"
    TITLE = "sh_title"
    STATES = _states(MenuFlow.STATES, {
        "notice": _states(MenuFlow.STATES["notice"], {
            "on": _states(MenuFlow.STATES["notice"]["on"], {
                events.PRINTER: "printer_changed", events.PRINTED: "printed"})}),
    })

    def __init__(self, term):
        MenuFlow.__init__(self, term)
        self.shifts = shifts_of(term)
        self.shift = None           # the operator's open shift
        self.last = None            # their last closed one
        self.job = None             # a reprint on its way to the paper

    def start(self):
        self.reload()
        if not self.finished:       # a storage fault: its screen has taken over
            MenuFlow.start(self)

    def reload(self):
        op = operator_id(self.term)
        try:
            self.shift = self.shifts.current(op)
            self.last = self.shifts.last_closed(op)
        except Exception as exc:
            if not is_fault(exc):
                raise
            self.shift = self.last = None

    def entries(self):
        if self.shift is None:
            rows = [("sh_open", "open_shift")]
        else:
            rows = [("sh_pay_in", "pay_in"), ("sh_pay_out", "pay_out"),
                    ("sh_status", "status"), ("sh_close", "close_shift")]
        if self.last is not None:
            rows.append(("sh_print_last", "print_last"))
        return rows

    def child_done(self, child, result):
        if child.NAME in ("shift_open", "shift_move", "shift_close"):
            self.reload()
            self.index = 0
        return "menu"

    # -- the entries ------------------------------------------------------------------
    def open_shift(self):
        self.term.push(OpenShiftFlow(self.term))
        return None

    def pay_in(self):
        self.term.push(MoveFlow(self.term, self.shift, "pay_in"))
        return None

    def pay_out(self):
        self.term.push(MoveFlow(self.term, self.shift, "pay_out"))
        return None

    def close_shift(self):
        self.term.push(CloseShiftFlow(self.term, self.shift))
        return None

    def status(self):
        t = self.t
        try:
            figs = shiftlib.figures(self.term.payments.journal, self.shift)
        except Exception as exc:
            if not is_fault(exc):
                raise
            return None
        money = self.shifts.money
        return self.say(t("sh_float_is", amount=money(figs["float"])),
                        t("sh_cash_in", amount=money(figs["cash_in"])),
                        t("sh_cash_out", amount=money(figs["cash_out"])),
                        t("sh_expected", amount=money(figs["expected"])))

    def print_last(self):
        try:
            self.job = print_report(self.term, self.last, reprint=True)
        except Exception as exc:
            if not is_fault(exc):
                raise
            return None
        return self._print_notice(print_note(self.term, self.job))

    def _print_notice(self, note):
        if note == "sh_not_printed":
            return self.say(self.t(note), printer_why(self.term), self.t("sh_reprint_hint"))
        return self.say(self.t(note))

    def printer_changed(self, ev):
        if self.job is not None and ev.get("state") not in ("ok", "paper_near_end"):
            self.notice_lines = [self.t("sh_not_printed"), printer_why(self.term),
                                 self.t("sh_reprint_hint")]

    def printed(self, ev):
        if self.job is not None and ev.get("job") == self.job:
            self.notice_lines = [self.t("sh_printed")]


class OpenShiftFlow(Flow):
    """The float counted into the drawer; ENTER opens the shift with it."""
    NAME = "shift_open"
    INITIAL = "amount"
    STATES = {
        "amount": {"timeout": ENTRY,
                   "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                          keys.ENTER: "amount_done", keys.CANCEL: "cancel"}},
        "result": {"timeout": 30000,
                   "on": {keys.ENTER: "done", keys.CANCEL: "done", "timeout": "done"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.currency = term.config["money"]["currency"]
        self.amount = AmountField(self.currency, COUNT_MAX)
        self.error = None
        self.shift = None

    def type(self, ev):
        self.error = None
        self.amount.key(ev.get("key"))
        if self.amount.too_big:
            self.error = "err_amount_max"
            self.term.beep("error")

    def amount_done(self, ev):
        term = self.term
        try:
            self.shift = shifts_of(term).open(operator_id(term), self.amount.value,
                                              term.payments.batch())
        except ShiftError:
            self.error = "sh_already_open"      # opened meanwhile (another way in)
            self.term.beep("error")
            return None
        except Exception as exc:
            if not is_fault(exc):
                raise
            return None             # the fault screen says why; nothing was written
        self.term.beep("ok")
        return "result"

    def done(self, ev):
        self.finish(self.shift)

    def render(self):
        t = self.t
        if self.state == "amount":
            err = [t(self.error)] if self.error else []
            self.term.show(t("sh_open"), [t("sh_float_q")] + err, t("footer_entry"),
                           masked=self.currency + " " + self.amount.shown())
        else:
            self.term.show(t("sh_opened"), [
                t("sh_float_is", amount=format_amount(self.shift["float"], self.currency)),
                t("sh_number", n=self.shift["id"])], t("footer_continue"), alert="ok")


class _PaperNote:
    """A flow that printed self.job and says on its result what the paper did
    (self.note): the printer's events change it."""

    def printer_changed(self, ev):
        if ev.get("state") not in ("ok", "paper_near_end"):
            self.note = "sh_not_printed"

    def printed(self, ev):
        if ev.get("job") == self.job:
            self.note = "sh_printed"


class MoveFlow(_PaperNote, Flow):
    """A pay in or pay out: the amount, a reason from the list, a supervisor's PIN;
    then the move is recorded and the drawer opens with its slip."""
    NAME = "shift_move"
    INITIAL = "amount"
    STATES = {
        "amount": {"timeout": ENTRY,
                   "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                          keys.ENTER: "amount_done", keys.CANCEL: "cancel"}},
        "reason": {"timeout": ENTRY,
                   "on": {"digit": "pick", keys.UP: "up", keys.DOWN: "down",
                          keys.ENTER: "reason_done", keys.CANCEL: "back_to_amount"}},
        "supervisor": {"enter": "ask_supervisor", "timeout": None, "on": {}},
        "result": {"timeout": 60000,
                   "on": {keys.ENTER: "done", keys.CANCEL: "done", "timeout": "done",
                          events.PRINTER: "printer_changed", events.PRINTED: "printed"}},
    }

    def __init__(self, term, shift, kind):
        Flow.__init__(self, term)
        self.shift = shift
        self.kind = kind
        self.currency = term.config["money"]["currency"]
        self.amount = AmountField(self.currency, term.config["money"]["max_amount"])
        self.index = 0
        self.error = None
        self.move = None
        self.job = None
        self.note = None

    def title(self):
        return self.t(shiftlib.MOVE_IDS[self.kind])

    def type(self, ev):
        self.error = None
        self.amount.key(ev.get("key"))
        if self.amount.too_big:
            self.error = "err_amount_max"
            self.term.beep("error")

    def amount_done(self, ev):
        if self.amount.value <= 0:
            self.error = "err_amount_zero"
            return None
        self.error = None
        return "reason"

    def back_to_amount(self, ev):
        self.error = None
        return "amount"

    def up(self, ev):
        self.index = (self.index - 1) % len(shiftlib.REASONS)

    def down(self, ev):
        self.index = (self.index + 1) % len(shiftlib.REASONS)

    def pick(self, ev):
        key = ev.get("key")
        if key in ("0", "00") or int(key) > len(shiftlib.REASONS):
            return None
        self.index = int(key) - 1
        return self.reason_done(ev)

    def reason_done(self, ev):
        self.error = None
        return "supervisor"

    def ask_supervisor(self):
        self.term.push(SupervisorFlow(self.term, "sh_sup_" + self.kind))

    def child_done(self, child, result):
        if child.NAME != "supervisor":
            return None             # a notice over this flow
        if result is None:
            self.error = "sh_not_approved"      # nothing recorded without a supervisor
            return "reason"
        return self.record(result)

    def record(self, supervisor):
        term = self.term
        try:
            self.move = shifts_of(term).move(self.shift, self.kind, self.amount.value,
                                             shiftlib.REASONS[self.index], operator_id(term),
                                             supervisor["id"])
        except ShiftError:
            self.error = "sh_not_open"          # closed meanwhile
            term.beep("error")
            return "reason"
        except Exception as exc:
            if not is_fault(exc):
                raise
            return None             # the fault screen says why; nothing was written
        term.beep("ok")
        self.job = term.print_receipt(shiftlib.move_slip(
            self.move, self.shift, term.config, self.t, synced=term.system.clock_synced()))
        self.note = print_note(term, self.job, "printing")
        return "result"

    def done(self, ev):
        self.finish(self.move)

    def render(self):
        t = self.t
        if self.state == "amount":
            err = [t(self.error)] if self.error else []
            self.term.show(self.title(), [t("enter_amount")] + err, t("footer_entry"),
                           masked=self.currency + " " + self.amount.shown())
        elif self.state == "reason":
            rows = ["%d %s" % (i + 1, t("sh_r_" + r)) for i, r in enumerate(shiftlib.REASONS)]
            footer = t(self.error) if self.error else t("footer_menu")
            self.term.show(t("sh_reason_title"), rows, footer, selected=self.index)
        elif self.state == "result":
            self.term.show(self.title(), [t("sh_r_" + self.move["reason"]), t(self.note)],
                           t("footer_continue"),
                           big=format_amount(self.move["amount"], self.currency), alert="ok")


class CloseShiftFlow(_PaperNote, Flow):
    """The cash counted (the total, or F1: each denomination), then expected against
    counted and the difference; ENTER closes the shift and prints its report."""
    NAME = "shift_close"
    INITIAL = "total"
    STATES = {
        "total": {"timeout": ENTRY,
                  "on": {"digit": "type_total", keys.BKSP: "type_total",
                         keys.CLEAR: "type_total", keys.ENTER: "total_done",
                         keys.F1: "by_denomination", keys.CANCEL: "cancel"}},
        "denom": {"timeout": ENTRY,
                  "on": {"digit": "type_count", keys.BKSP: "type_count",
                         keys.CLEAR: "type_count", keys.ENTER: "count_done",
                         keys.DOWN: "count_done", keys.UP: "count_back",
                         keys.CANCEL: "to_total"}},
        "review": {"timeout": ENTRY,
                   "on": {keys.ENTER: "confirm", keys.CANCEL: "recount"}},
        "closed": {"timeout": 60000,
                   "on": {keys.ENTER: "done", keys.CANCEL: "done", "timeout": "done",
                          events.PRINTER: "printer_changed", events.PRINTED: "printed"}},
    }

    def __init__(self, term, shift):
        Flow.__init__(self, term)
        self.shift = shift
        self.currency = term.config["money"]["currency"]
        self.total = AmountField(self.currency, COUNT_MAX)
        self.values = shiftlib.denominations(self.currency)
        self.pieces = [0] * len(self.values)
        self.at = 0                     # the denomination being counted
        self.field = Field(PIECES_DIGITS)
        self.by_note = False            # counted by denomination
        self.counted = 0
        self.expected = 0
        self.error = None
        self.row = None                 # the closed shift
        self.job = None
        self.note = None

    def money(self, minor):
        return format_amount(minor, self.currency)

    # -- the total --------------------------------------------------------------------
    def type_total(self, ev):
        self.error = None
        self.total.key(ev.get("key"))
        if self.total.too_big:
            self.error = "err_amount_max"
            self.term.beep("error")

    def total_done(self, ev):
        self.by_note = False
        self.counted = self.total.value
        return self.review()

    # -- note by note, coin by coin ---------------------------------------------------
    def by_denomination(self, ev):
        if not self.values:
            self.term.beep("error")
            return None
        self.error = None
        self.at = 0
        return "denom"

    def _show_count(self):
        n = self.pieces[self.at]
        self.field = Field(PIECES_DIGITS)
        self.field.value = "%d" % n if n else ""

    def sum(self):
        return shiftlib.counted_total(self.counts())

    def counts(self):
        return [(self.values[i], self.pieces[i]) for i in range(len(self.values))]

    def type_count(self, ev):
        self.error = None
        self.field.key(ev.get("key"))
        self.pieces[self.at] = int(self.field.value) if self.field.value else 0
        if self.sum() > COUNT_MAX:
            self.field.key(keys.BKSP)
            self.pieces[self.at] = int(self.field.value) if self.field.value else 0
            self.error = "err_amount_max"
            self.term.beep("error")

    def count_done(self, ev):
        if self.at + 1 < len(self.values):
            self.at += 1
            self._show_count()
            return None
        self.by_note = True
        self.counted = self.sum()
        return self.review()

    def count_back(self, ev):
        if self.at > 0:
            self.at -= 1
            self._show_count()
        return None

    def to_total(self, ev):
        self.error = None
        return "total"

    # -- expected against counted -----------------------------------------------------
    def review(self):
        try:
            self.expected = shiftlib.figures(self.term.payments.journal, self.shift)["expected"]
        except Exception as exc:
            if not is_fault(exc):
                raise
            return None
        return "review"

    def recount(self, ev):
        if self.by_note:
            self._show_count()
            return "denom"
        return "total"

    def confirm(self, ev):
        term = self.term
        try:
            self.row = shifts_of(term).close(self.shift, self.counted,
                                             self.counts() if self.by_note else None)
        except (ShiftError, KeyError):
            # closed meanwhile, or its row no longer verifies: nothing written
            term.beep("error")
            self.error = "sh_not_open"
            return "total"
        except Exception as exc:
            if not is_fault(exc):
                raise
            return None             # the fault screen says why; the shift stays open
        term.beep("ok")
        try:
            self.job = print_report(term, self.row)
        except Exception as exc:
            if not is_fault(exc):
                raise
            self.job = None
        self.note = print_note(term, self.job)
        return "closed"

    def done(self, ev):
        self.finish(self.row)

    def render(self):
        t = self.t
        s = self.state
        err = [t(self.error)] if self.error else []
        if s == "total":
            footer = t("sh_footer_count") if self.values else t("footer_entry")
            self.term.show(t("sh_count_title"), [t("sh_count_q")] + err, footer,
                           masked=self.currency + " " + self.total.shown())
        elif s == "denom":
            value = self.values[self.at]
            self.term.show(t("sh_count_title"),
                           [t("sh_denom_each", amount=self.money(value)),
                            (err or [t("sh_denom_sum", amount=self.money(self.sum()))])[0]],
                           t("sh_footer_denom"), masked="x " + self.field.shown())
        elif s == "review":
            diff = self.counted - self.expected
            self.term.show(t("sh_close"), [
                t("sh_expected", amount=self.money(self.expected)),
                t("sh_counted", amount=self.money(self.counted)),
                difference_line(t, diff, self.currency)], t("sh_footer_close"),
                alert="ok" if diff == 0 else "warn")
        elif s == "closed":
            lines = [difference_line(t, self.row["difference"], self.currency), t(self.note)]
            if self.note == "sh_not_printed":
                lines.append(t("sh_reprint_hint"))
            self.term.show(t("sh_closed"), lines, t("footer_continue"),
                           alert="ok" if self.row["difference"] == 0 else "warn")
