"""MENU > Reports > 4 Journal (issue 14): the transactions on the terminal, newest first.

  list     one record a row: "#123 12.50" with its time today (its date before), a
           refund or void signed "-", a mark when it did not simply go through
           (D declined, V voided, R reversed, F not done, ? unresolved). UP/DOWN move,
           ENTER opens, F1 finds, CANCEL leaves (or, on a search's results, goes back
           to the whole journal).
  find     by amount, card's last 4, receipt number (the record's number: it opens
           at once), STAN or local date (YYYYMMDD).
  record   everything the journal says of one record, scrolled by UP/DOWN; F1 prints
           its receipt again, marked DUPLICATE, and writes an audit line "reprint".

A journal holds tens of thousands of records and each read verifies a MAC, so nothing
here reads it whole: the list takes records from the journal's newest() (newest first,
a page at a time) as the rows on screen need them, keeps the numbers it has seen (to go
back up) and the records near the selection only. A search asks newest() for what it
wants (amount and currency, last4, stan: the journal's indexes), so it reads the
records that match and no others; a date asks for the stamps within 14 hours of that
day and keeps those whose local date it is. Whatever it reads, it takes CHUNK records a
turn of the event loop, showing what it has found so far: the keypad stays live, CANCEL
stops it.

Who may: whoever may open Reports (cashier and supervisor) browses and reprints;
each reprint is audited with the operator who asked for it.
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.core.money import format_amount
from firmware.core.store import is_fault
from firmware.flows.common import AmountField, Field
from firmware.payments.receipts import _add_days, _local
from firmware.ui.receipt import display_width
from firmware.ui.screen import BODY_ROWS, ROW_COLUMNS, wrap

CHUNK = 100             # records a search looks at in one turn of the loop
WINDOW = 24             # records kept in memory either side of the selection
AMOUNT_MAX = 99999999999

# what the list marks beside a record that did not simply go through
MARKS = {"declined": "jr_mk_declined", "voided": "jr_mk_voided",
         "reversed": "jr_mk_reversed", "reversal_pending": "jr_mk_reversed",
         "failed": "jr_mk_failed", "created": "jr_mk_open", "sending": "jr_mk_open",
         "offline_pending": "jr_mk_open"}
KIND_IDS = {"sale": "jr_k_sale", "refund": "jr_k_refund", "void": "jr_k_void"}
METHOD_IDS = {"card": "jr_m_card", "cash": "jr_m_cash", "qr": "jr_m_qr"}
ENTRY_IDS = {"swipe": "entry_swipe", "fallback": "entry_fallback", "chip": "entry_chip",
             "tap": "entry_tap", "manual": "entry_manual"}
# the ways to find a record: (message id, field length; 0 for an amount)
FINDS = (("jr_f_amount", 0), ("jr_f_last4", 4), ("jr_f_number", 9), ("jr_f_stan", 6),
         ("jr_f_date", 8))


def signed(rec):
    """The record's amount as the list shows it: a refund or a void gives money back."""
    minor = -rec["amount"] if rec["kind"] in ("refund", "void") else rec["amount"]
    return format_amount(minor, rec["currency"])


def local_date(rec):
    """YYYY-MM-DD of the record on the terminal's wall clock (UTC + its offset)."""
    return _local(rec)[0]


def day_stamps(day):
    """(utc_from, utc_to) holding every record whose local date is day ('YYYY-MM-DD'),
    whatever its offset (UTC-12 to UTC+14): 14 hours either side of the day in UTC."""
    y, m, d = int(day[:4]), int(day[5:7]), int(day[8:10])
    before = _add_days(y, m, d, -1)
    after = _add_days(y, m, d, 1)
    return ("%04d-%02d-%02dT10:00:00Z" % before, "%04d-%02d-%02dT14:00:00Z" % after)


def parse_date(text):
    """'20250630' -> '2025-06-30', or None when it is no calendar date."""
    if len(text) != 8 or not text.isdigit():
        return None
    y, m, d = int(text[:4]), int(text[4:6]), int(text[6:])
    if y < 2000 or not 1 <= m <= 12 or d < 1:
        return None
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[m - 1]
    if d > days:
        return None
    return "%04d-%02d-%02d" % (y, m, d)


class Listing:
    """The journal's records, newest first, that the journal finds by criteria (its
    newest()'s: none, all of them) and that pass match (None: all), read only as far as
    asked. ids holds the numbers of every match seen so far (small: numbers only); the
    records themselves are cached around the selection and read again by number when the
    person scrolls back to them."""

    def __init__(self, journal, criteria=None, match=None, title=""):
        self.journal = journal
        self.criteria = criteria or {}
        self.match = match
        self.title = title          # the search, as the list's title says it
        self.ids = []
        self.cache = {}
        self.done = False
        self.looked = 0
        self._source = None

    def _records(self):
        if self._source is None:
            self._source = self.journal.newest(**self.criteria)
        return self._source

    def pull(self, need, budget):
        """Look at up to budget more records, stopping once need matches are known.
        A fault of the medium leaves as it came (the caller shows it)."""
        source = self._records()
        while budget > 0 and len(self.ids) < need and not self.done:
            try:
                rec = next(source)
            except StopIteration:
                self.done = True
                break
            budget -= 1
            self.looked += 1
            if self.match is None or self.match(rec):
                self.ids.append(rec["id"])
                self.cache[rec["id"]] = rec

    def record(self, i):
        """The i-th match (verified when it was read; None if it fails now)."""
        txn_id = self.ids[i]
        rec = self.cache.get(txn_id)
        if rec is None:
            rec = self.journal.get(txn_id)
            if rec is not None:
                self.cache[txn_id] = rec
        return rec

    def keep_near(self, i):
        """Forget the records far from the selection (their numbers stay)."""
        lo, hi = i - WINDOW, i + WINDOW
        near = {}
        for j in range(max(0, lo), min(len(self.ids), hi)):
            txn_id = self.ids[j]
            if txn_id in self.cache:
                near[txn_id] = self.cache[txn_id]
        self.cache = near


class JournalFlow(Flow):
    NAME = "journal"
    INITIAL = "list"
    STATES = {
        "list": {"timeout": "menu_timeout_s",
                 "on": {keys.UP: "up", keys.DOWN: "down", keys.ENTER: "open",
                        keys.F1: "find", keys.CANCEL: "back", keys.MENU: "leave"}},
        "find": {"timeout": "menu_timeout_s",
                 "on": {keys.UP: "find_up", keys.DOWN: "find_down", keys.ENTER: "find_open",
                        "digit": "find_pick", keys.CANCEL: "to_list"}},
        "value": {"timeout": "entry_timeout_s",
                  "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                         keys.ENTER: "search", keys.CANCEL: "to_find"}},
        "record": {"timeout": "menu_timeout_s",
                   "on": {keys.UP: "rec_up", keys.DOWN: "rec_down", keys.F1: "reprint",
                          keys.ENTER: "to_list", keys.CANCEL: "to_list"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.all = Listing(term.payments.journal)
        self.listing = self.all
        self.index = 0
        self.top = 0
        self.find_index = 0
        self.field = None
        self.rec = None
        self.rec_top = 0
        self.note = None            # a line over the footer: what just happened
        self.error = None
        self._turn = None           # the search's next turn of the loop

    # -- reading, a little at a time -------------------------------------------------
    def _need(self):
        """Matches the screen wants known: the rows shown and one past them (so the
        list knows whether there is more)."""
        return max(self.index, self.top) + BODY_ROWS + 1

    def _fill(self):
        """Read what the screen needs: the first CHUNK records now, the rest one
        CHUNK a turn of the loop (a search through a long journal)."""
        listing = self.listing
        try:
            listing.pull(self._need(), CHUNK)
        except Exception as exc:
            if not is_fault(exc):
                raise
            listing.done = True
            self.error = "jr_unreadable"
        if not listing.done and len(listing.ids) < self._need() and self._turn is None:
            self._turn = self.term.reactor.call_later(0, self._more)

    def _more(self):
        self._turn = None
        if self.finished or self.state is None:
            return
        self._fill()
        if self.state == "list" and self.on_top():
            self.render()

    def _stop_search(self):
        if self._turn is not None:
            self._turn.cancel()
            self._turn = None

    def finish(self, result=None):
        self._stop_search()
        Flow.finish(self, result)

    def stop(self):
        self._stop_search()
        Flow.stop(self)

    def searching(self):
        return self._turn is not None

    # -- the list --------------------------------------------------------------------
    def _move(self, step):
        listing = self.listing
        n = len(listing.ids)
        if not n:
            return
        self.index = max(0, min(n - 1, self.index + step))
        if self.index < self.top:
            self.top = self.index
        elif self.index >= self.top + BODY_ROWS:
            self.top = self.index - BODY_ROWS + 1
        listing.keep_near(self.index)
        self.note = None
        self._fill()

    def up(self, ev):
        self._move(-1)

    def down(self, ev):
        self._move(1)

    def open(self, ev):
        if not self.listing.ids:
            return None
        try:
            rec = self.term.payments.journal.get(self.listing.ids[self.index])
        except Exception as exc:
            if not is_fault(exc):
                raise
            rec = None
        if rec is None:             # failed its check since it was listed
            self.term.beep("error")
            self.note = "jr_damaged"
            return None
        return self._show(rec)

    def _show(self, rec):
        self.rec = rec
        self.rec_top = 0
        self.note = None
        return "record"

    def back(self, ev):
        if self.listing is not self.all:        # a search's results: the whole journal
            self._stop_search()
            self._use(self.all)
            return "list"
        self.finish(None)
        return None

    def leave(self, ev):
        self.finish(None)

    def _use(self, listing, index=0):
        self.listing = listing
        self.index = index
        self.top = 0
        self.note = None
        self.error = None
        self._fill()

    def start(self):
        self._fill()
        Flow.start(self)

    # -- finding ---------------------------------------------------------------------
    def find(self, ev):
        self._stop_search()
        self.note = None
        return "find"

    def find_up(self, ev):
        self.find_index = (self.find_index - 1) % len(FINDS)

    def find_down(self, ev):
        self.find_index = (self.find_index + 1) % len(FINDS)

    def find_pick(self, ev):
        key = ev.get("key")
        if key in ("0", "00") or int(key) > len(FINDS):
            return None
        self.find_index = int(key) - 1
        return self.find_open(ev)

    def find_open(self, ev):
        msg, length = FINDS[self.find_index]
        if length:
            self.field = Field(length)
        else:
            self.field = AmountField(self.term.config["money"]["currency"], AMOUNT_MAX)
        self.error = None
        return "value"

    def to_find(self, ev):
        return "find"

    def to_list(self, ev):
        self.rec = None
        if self.listing is not self.all and not self.listing.done:
            self._fill()            # a search left when a record was opened goes on
        return "list"

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def search(self, ev):
        what = FINDS[self.find_index][0]
        value = self.field.value
        t = self.t
        match = None
        if what == "jr_f_amount":
            if not value:
                return self._refuse("jr_e_amount")
            cur = self.term.config["money"]["currency"]
            criteria = {"amount": value, "currency": cur}
            title = format_amount(value, cur, with_code=True)
        elif what == "jr_f_last4":
            if len(value) != 4:
                return self._refuse("jr_e_last4")
            criteria = {"last4": value}
            title = t("jr_t_last4", d=value)
        elif what == "jr_f_number":
            if not value or not int(value):
                return self._refuse("jr_e_number")
            return self._by_number(int(value))
        elif what == "jr_f_stan":
            if not value or not int(value):
                return self._refuse("jr_e_stan")
            stan = "%06d" % int(value)
            criteria = {"stan": stan}       # the record's own STAN or its reversal's
            title = t("jr_t_stan", s=stan)
        else:
            day = parse_date(value)
            if day is None:
                return self._refuse("jr_e_date")
            utc_from, utc_to = day_stamps(day)
            criteria = {"utc_from": utc_from, "utc_to": utc_to}
            match = lambda r: local_date(r) == day
            title = day
        self._use(Listing(self.term.payments.journal, criteria, match, title))
        return "list"

    def _refuse(self, msg):
        self.error = msg
        self.term.beep("error")
        return None

    def _by_number(self, number):
        """The receipt's number is the record's: it opens at once."""
        journal = self.term.payments.journal
        try:
            rec = journal.get(number)
            damaged = rec is None and number in [row[0] for row in journal.damaged()]
        except Exception as exc:
            if not is_fault(exc):
                raise
            return self._refuse("jr_unreadable")
        if rec is None:
            return self._refuse("jr_damaged" if damaged else "err_no_such_txn")
        return self._show(rec)

    # -- one record --------------------------------------------------------------------
    def rec_up(self, ev):
        self.rec_top = max(0, self.rec_top - 1)

    def rec_down(self, ev):
        self.rec_top = max(0, min(len(self.details(self.rec)) - BODY_ROWS, self.rec_top + 1))

    def reprint(self, ev):
        """Its receipt again, marked DUPLICATE (firmware/payments/receipts.py), with an
        audit line naming who asked: as MENU > Reprint prints it."""
        pay = self.term.payments
        rec = self.rec
        if rec["state"] not in pay.RECEIPT_STATES:
            return self._say("err_nothing_to_print", error=True)
        job = pay.print_receipt(rec["id"], "merchant", reprint=True)
        if job is None:
            return self._say("jr_not_printed", error=True)
        op = self.term.operator["id"] if self.term.operator else ""
        self.term.store.audit("reprint", op, "#%d" % rec["id"])
        return self._say("reprinting")

    def _say(self, msg, error=False):
        if error:
            self.term.beep("error")
        self.note = msg
        return None

    def details(self, rec):
        """Every line the journal has of rec, each one a body row."""
        t = self.t
        lines = []

        def add(text):
            if text:
                lines.extend(wrap(text))
        method = t(METHOD_IDS.get(rec["method"], "jr_m_cash"))
        if rec["method"] == "card":
            add((rec["card_label"] or method) + " " +
                t(ENTRY_IDS.get(rec["entry"], "entry_swipe")))
        elif rec["method"] == "qr":
            add(rec["card_label"] or method)
        else:
            add(method)
        add(rec["pan_masked"])
        add(format_amount(-rec["amount"] if rec["kind"] in ("refund", "void") else rec["amount"],
                          rec["currency"], with_code=True))
        add(t("jr_s_" + rec["state"]) if rec["state"] in MARKS or rec["state"] == "approved"
            else rec["state"])
        if rec["state"] == "declined" and rec["rc"] and not (rec["method"] == "qr" and rec["reason"]):
            rc = t("rc_" + rec["rc"])
            add(rc if rc != "rc_" + rec["rc"] else t("rc_other", rc=rec["rc"]))
        if rec["reason"] and rec["state"] != "approved":
            add(t(rec["reason"]))
        if rec["offline"]:
            add(t("jr_offline_" + (rec["upload"] or "pending")))
        date, time = _local(rec)
        add(date + " " + time[:5])
        if rec["stan"]:
            add(t("jr_stan", s=rec["stan"]))
        if rec["rrn"]:
            add(t("jr_rrn", s=rec["rrn"]))
        if rec["auth_code"]:
            add(t("jr_auth", s=rec["auth_code"]))
        if rec["original_id"]:
            add(t("jr_of", n=rec["original_id"]))
        if rec["operator"]:
            add(t("jr_operator", id=rec["operator"]))
        add(t("jr_batch", n=rec["batch"]))
        if rec["state"] in self.term.payments.RECEIPT_STATES and not rec["receipt_printed"]:
            add(t("jr_unprinted"))
        return lines

    # -- drawing -----------------------------------------------------------------------
    def row(self, rec, today):
        """'#123 12.50' and a mark, with the time today (the date before) when it fits."""
        text = "#%d %s" % (rec["id"], signed(rec))
        mark = MARKS.get(rec["state"])
        if mark:
            text += " " + self.t(mark)
        date, time = _local(rec)
        when = time[:5] if date == today else date[5:]
        room = ROW_COLUMNS - display_width(text)
        if room >= len(when) + 1:
            text += " " * (room - len(when)) + when
        return text

    def render(self):
        t = self.t
        if self.state == "find":
            lines = ["%d %s" % (i + 1, t(f[0])) for i, f in enumerate(FINDS)]
            self.term.show(t("jr_find"), lines, t("footer_menu"), selected=self.find_index)
            return
        if self.state == "value":
            msg = FINDS[self.find_index][0]
            hint = [t("jr_h_date")] if msg == "jr_f_date" else []
            lines = [t(self.error)] if self.error else hint
            self.term.show(t(msg), lines, t("footer_entry"), masked=self.field.shown())
            return
        if self.state == "record":
            rec = self.rec
            lines = self.details(rec)
            footer = t(self.note, n=rec["id"]) if self.note else t("jr_footer_rec")
            title = "#%d %s" % (rec["id"], t(KIND_IDS.get(rec["kind"], "jr_k_sale")))
            self.term.show(title, lines, footer, top=self.rec_top)
            return
        self._render_list()

    def _render_list(self):
        t = self.t
        listing = self.listing
        title = listing.title or t("jr_title")
        footer = t(self.note) if self.note else (
            t("jr_searching", n=listing.looked) if self.searching() else t("jr_footer"))
        if self.error:
            footer = t(self.error)
        n = len(listing.ids)
        if not n:
            if self.searching():
                lines = [t("jr_looking")]
            else:
                lines = [t("jr_none" if listing is self.all else "jr_nothing_found")]
            self.term.show(title, lines, footer)
            return
        self.index = min(self.index, n - 1)
        y, m, d = self.term.system.local_time()[:3]
        today = "%04d-%02d-%02d" % (y, m, d)
        # the rows on screen, one above and one below them when there are (the panel's
        # scroll bar then shows there is more): never the whole journal
        first = max(0, self.top - 1)
        last = min(n, self.top + BODY_ROWS + 1)
        lines = []
        for i in range(first, last):
            try:
                rec = listing.record(i)
            except Exception as exc:
                if not is_fault(exc):
                    raise
                rec = None
            lines.append(self.row(rec, today) if rec is not None
                         else "#%d %s" % (listing.ids[i], t("jr_mk_damaged")))
        self.term.show(title, lines, footer, selected=self.index - first,
                       top=self.top - first)
