"""The device's transaction journal: SQLite, WAL, synchronous=FULL.

Every add/update is its own transaction, committed to the SD card before the call
returns: the flows write a record before the request leaves and before APPROVED shows.

Each record carries a MAC (HMAC-SHA256 under a key derived from the device data key)
over all its fields, checked whenever it is read. A record that fails (a flipped
state or amount byte, a row edited on the card) is never acted on: it is left out of
every read, flagged in the `flags` table for a supervisor, and never deleted or
rewritten. A journal written before MACs existed gets them at its first open under
this version (SCHEMA_VERSION 1).

The counters (STAN, batch number) carry a MAC too (SCHEMA_VERSION 2). A counter that
fails it, or one missing while records show it was used, stops the journal with a
`corrupt` fault naming the counter: a STAN used twice is worse than a stop. (A MAC
does not see an older, valid row put back in place of the current one.)

The shifts, their cash moves (pay in / pay out) and the Z reports have tables of their
own (SCHEMA_VERSION 3, with an index on txns(batch)), each row MACed the same way. A
row that fails its check is read as txns rows are: left out of every read, never
rewritten, flagged in `row_flags` (table, row) and listed by damaged() with the
table's name in its words.

Every error of the medium (full, I/O, damaged file) leaves as a StorageFault
(firmware/core/store.py) and is reported to the guard's listener.
"""
import sqlite3
import time

from drivers.sqlite_durable import Guard, guarded, mac_ok, open_durable, probe, record_mac, transaction

from firmware.core.store import CORRUPT, StorageFault
from firmware.payments.journal import (CASH_MOVE_FIELDS, FIELDS, SHIFT_FIELDS, Z_FIELDS,
                                       ShiftError, check_move)

_TYPES = {int: "INTEGER", str: "TEXT"}
_COLUMNS = [k for k in FIELDS if k != "id"]
# 1: records carry a MAC; 2: counters carry a MAC too; 3: shifts, cash_moves, z_reports
# (each row MACed) and the index on txns(batch)
SCHEMA_VERSION = 3
# the tables of shifts and cash: name -> fields with their defaults
_TABLES = {"shifts": SHIFT_FIELDS, "cash_moves": CASH_MOVE_FIELDS, "z_reports": Z_FIELDS}
# how damaged() names a row of each
_ROW_WORDS = {"shifts": "shift", "cash_moves": "cash move", "z_reports": "Z report"}
# a counter's row missing although a record shows it was used: (sql, what it means)
_COUNTER_USED = {"stan": "SELECT 1 FROM txns WHERE stan<>'' LIMIT 1",
                 "batch": "SELECT 1 FROM txns WHERE batch>1 LIMIT 1"}
_DEFAULTS = dict(FIELDS)


def _sql_default(value):
    return "%d" % value if isinstance(value, int) else "'%s'" % value.replace("'", "''")


class JournalError(StorageFault):
    """The journal cannot be opened (a StorageFault: the terminal shows it)."""


def _utc():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SQLiteJournal:
    fault_class = StorageFault

    def __init__(self, path, mac_key=None, on_fault=None, on_damaged=None):
        self.path = path
        self.key = mac_key
        self.guard = Guard("journal", on_fault, path)
        self.on_damaged = on_damaged        # callback(id) when a record fails its MAC
        self._flagged = set()
        self._row_flagged = set()
        try:
            self.db = open_durable(path)
            self.guard.db = self.db
            cols = ", ".join("%s %s NOT NULL" % (k, _TYPES[type(FIELDS[k])]) for k in _COLUMNS)
            self.db.execute("CREATE TABLE IF NOT EXISTS txns (id INTEGER PRIMARY KEY AUTOINCREMENT, %s)" % cols)
            have = {row[1] for row in self.db.execute("PRAGMA table_info(txns)")}
            for k in _COLUMNS:
                if k not in have:   # a newer release added a field: keep old rows
                    self.db.execute("ALTER TABLE txns ADD COLUMN %s %s NOT NULL DEFAULT %s" % (
                        k, _TYPES[type(FIELDS[k])], "0" if isinstance(FIELDS[k], int) else "''"))
            if "mac" not in have:
                self.db.execute("ALTER TABLE txns ADD COLUMN mac BLOB")
            self.db.execute("CREATE INDEX IF NOT EXISTS txns_state ON txns(state)")
            self.db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            if "mac" not in {row[1] for row in self.db.execute("PRAGMA table_info(counters)")}:
                self.db.execute("ALTER TABLE counters ADD COLUMN mac BLOB")
            self.db.execute("CREATE TABLE IF NOT EXISTS flags (id INTEGER PRIMARY KEY, "
                            "utc TEXT NOT NULL, what TEXT NOT NULL)")
            self.db.execute("CREATE INDEX IF NOT EXISTS txns_batch ON txns(batch)")
            for table in _TABLES:
                self._create(table, _TABLES[table])
            self.db.execute("CREATE INDEX IF NOT EXISTS shifts_operator ON shifts(operator, state)")
            self.db.execute("CREATE INDEX IF NOT EXISTS shifts_batch ON shifts(batch)")
            self.db.execute("CREATE INDEX IF NOT EXISTS cash_moves_shift ON cash_moves(shift_id)")
            self.db.execute("CREATE INDEX IF NOT EXISTS z_reports_batch ON z_reports(batch)")
            self.db.execute("CREATE TABLE IF NOT EXISTS row_flags (tbl TEXT NOT NULL, "
                            "row INTEGER NOT NULL, utc TEXT NOT NULL, what TEXT NOT NULL, "
                            "PRIMARY KEY (tbl, row))")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                self.db.close()
                raise JournalError("io", "journal", "%s was written by a newer handpos "
                                   "(schema %d)" % (path, version))
            if version < SCHEMA_VERSION and self.key is not None:
                self._migrate(version)
            self._flagged = {r[0] for r in self.db.execute("SELECT id FROM flags")}
            self._row_flagged = {(r[0], r[1]) for r in
                                 self.db.execute("SELECT tbl, row FROM row_flags")}
        except (sqlite3.Error, OSError) as exc:
            fault = self.guard.fault(exc)
            raise JournalError(fault.kind if fault else "io", "journal", "cannot open %s (%s): check the SD card and "
                               "free space" % (path, exc))

    def _create(self, table, fields):
        """A table of fields (each NOT NULL, typed by its default) and a mac; a column a
        later release added goes onto an older table with its default, so old rows keep
        their MACs (record_mac leaves out fields at their default)."""
        cols = ", ".join('"%s" %s NOT NULL DEFAULT %s' % (k, _TYPES[type(fields[k])], _sql_default(fields[k]))
                         for k in fields if k != "id")
        self.db.execute("CREATE TABLE IF NOT EXISTS %s (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                        "%s, mac BLOB)" % (table, cols))
        have = {row[1] for row in self.db.execute("PRAGMA table_info(%s)" % table)}
        for k in fields:
            if k != "id" and k not in have:
                self.db.execute('ALTER TABLE %s ADD COLUMN "%s" %s NOT NULL DEFAULT %s' % (
                    table, k, _TYPES[type(fields[k])], _sql_default(fields[k])))

    def _migrate(self, version):
        """The journal of an older build: MAC every record (schema 0) and every counter
        (schema 0 and 1) as it stands, once, in one transaction. Schema 2 only gains the
        tables of shifts and cash (empty, made at open) and the index on txns(batch):
        its counters keep their MACs (sealing them again would seal an altered one)."""
        def body():
            if version < 1:
                for row in self.db.execute("SELECT id, %s FROM txns" % ", ".join(_COLUMNS)).fetchall():
                    rec = dict(zip(["id"] + _COLUMNS, row))
                    self.db.execute("UPDATE txns SET mac=? WHERE id=?", (self._mac(rec), rec["id"]))
            if version < 2:
                for name, value in self.db.execute("SELECT name, value FROM counters").fetchall():
                    self.db.execute("UPDATE counters SET mac=? WHERE name=?",
                                    (self._counter_mac(name, value), name))
            self.db.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)
        transaction(self.db, body)

    # -- MACs --------------------------------------------------------------------
    def _mac(self, rec):
        return record_mac(self.key, "txns", rec, _DEFAULTS) if self.key is not None else None

    def _counter_mac(self, name, value):
        if self.key is None:
            return None
        return record_mac(self.key, "counters", {"name": name, "value": value})

    def _counter_value(self, name):
        """The counter's stored value, verified; a corrupt fault naming it otherwise."""
        row = self.db.execute("SELECT value, mac FROM counters WHERE name=?", (name,)).fetchone()
        if self.key is None:
            return row[0] if row else 0
        if row is None:
            used = _COUNTER_USED.get(name)
            if used and self.db.execute(used).fetchone():
                self._counter_damaged(name, "is missing, though records show it was used")
            return 0
        if not mac_ok(self.key, "counters", {"name": name, "value": row[0]}, row[1]):
            self._counter_damaged(name, "failed its integrity check (value %r on the card)"
                                  % (row[0],))
        return row[0]

    def _counter_damaged(self, name, what):
        fault = StorageFault(CORRUPT, "journal", "counter %s %s: it is never used again "
                             "as it stands; restore journal.db from the device backup" % (name, what))
        self.guard.report(fault)
        raise fault

    def verify_counters(self):
        """[(name, what)] of the counters that fail their check (for the self-test)."""
        bad = []
        names = [r[0] for r in self.db.execute("SELECT name FROM counters")]
        for name in sorted(set(names) | set(_COUNTER_USED)):
            try:
                self._counter_value(name)
            except StorageFault as exc:
                bad.append((name, exc.detail))
        return bad

    def _checked(self, rec, mac):
        """The record if its MAC holds (or MACs are off); else flagged, and None."""
        if self.key is None or mac_ok(self.key, "txns", rec, mac, _DEFAULTS):
            return rec
        self._flag(rec["id"], "MAC failed")
        return None

    def _flag(self, txn_id, what):
        if txn_id in self._flagged:
            return
        self._flagged.add(txn_id)
        try:
            self.db.execute("INSERT OR IGNORE INTO flags VALUES (?, ?, ?)", (txn_id, _utc(), what))
        except sqlite3.Error:
            pass            # kept in memory; flagged again at the next read after a restart
        if self.on_damaged is not None:
            try:
                self.on_damaged(txn_id)
            except Exception:
                pass

    def damaged(self):
        """[(id, utc, what)] of the records that failed their check: a supervisor's to see.
        The transactions first; then the rows of shifts, cash moves and Z reports, each
        with its table named in what ("shift 3: MAC failed")."""
        rows = self.db.execute("SELECT id, utc, what FROM flags ORDER BY id").fetchall()
        seen = {r[0] for r in rows}
        rows = rows + [(i, "", "MAC failed") for i in sorted(self._flagged) if i not in seen]
        others = self.db.execute("SELECT tbl, row, utc, what FROM row_flags "
                                 "ORDER BY tbl, row").fetchall()
        seen = {(r[0], r[1]) for r in others}
        others += [(tbl, row, "", "MAC failed") for tbl, row in sorted(self._row_flagged)
                   if (tbl, row) not in seen]
        return rows + [(row, utc, "%s %d: %s" % (_ROW_WORDS.get(tbl, tbl), row, what))
                       for tbl, row, utc, what in others]

    def _row_checked(self, table, rec, mac):
        """A row of the shifts and cash tables if its MAC holds; else flagged, None."""
        if self.key is None or mac_ok(self.key, table, rec, mac, _TABLES[table]):
            return rec
        mark = (table, rec["id"])
        if mark not in self._row_flagged:
            self._row_flagged.add(mark)
            try:
                self.db.execute("INSERT OR IGNORE INTO row_flags VALUES (?, ?, ?, ?)",
                                (table, rec["id"], _utc(), "MAC failed"))
            except sqlite3.Error:
                pass        # kept in memory; flagged again at the next read after a restart
        return None

    @guarded
    def verify_recent(self, n=200):
        """The ids among the last n records whose MAC fails (each one flagged), then
        the last n rows of shifts, cash moves and Z reports that fail theirs, named
        ("shift 3"): the boot's self-test counts them all."""
        bad = []
        for row in self.db.execute("SELECT id, %s, mac FROM txns ORDER BY id DESC LIMIT ?"
                                   % ", ".join(_COLUMNS), (n,)).fetchall():
            rec = dict(zip(["id"] + _COLUMNS, row[:-1]))
            if self._checked(rec, row[-1]) is None:
                bad.append(rec["id"])
        bad.sort()
        for table in _TABLES:
            top = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM %s" % table).fetchone()[0]
            good = {r["id"] for r in self._table_rows(table, "WHERE id>?", (top - n,))}
            for (row_id,) in self.db.execute("SELECT id FROM %s WHERE id>? ORDER BY id"
                                             % table, (top - n,)).fetchall():
                if row_id not in good:
                    bad.append("%s %d" % (_ROW_WORDS[table], row_id))
        return bad

    @guarded
    def quick_check(self, max_ms=2000):
        """PRAGMA quick_check (time-bounded), then the counters' MACs: a damaged counter
        is damage to the journal, named in the detail."""
        from drivers.sqlite_durable import quick_check
        ok, detail = quick_check(self.db, max_ms)
        if ok is False:
            return ok, detail
        bad = self.verify_counters()
        if bad:
            return False, "; ".join("counter %s" % name for name, what in bad) + " failed its check"
        return ok, detail

    # -- writes ------------------------------------------------------------------
    def _txn(self, body):
        return transaction(self.db, body)

    @guarded
    def add(self, rec):
        values = [rec.get(k, FIELDS[k]) for k in _COLUMNS]

        def body():
            cur = self.db.execute("INSERT INTO txns (%s) VALUES (%s)" % (
                ", ".join(_COLUMNS), ", ".join("?" * len(_COLUMNS))), values)
            row = dict(zip(_COLUMNS, values))
            row["id"] = cur.lastrowid
            if self.key is not None:
                self.db.execute("UPDATE txns SET mac=? WHERE id=?", (self._mac(row), row["id"]))
            return row["id"]
        return self._txn(body)

    @guarded
    def update(self, txn_id, **fields):
        for k in fields:
            if k not in FIELDS or k == "id":
                raise KeyError("journal has no field %r" % k)

        def body():
            rec = self._get(txn_id)
            if rec is None:
                # never rewrite (and so re-seal) a record that failed its check
                raise KeyError("journal record %r is missing or failed its integrity check"
                               % txn_id)
            rec.update(fields)
            sets = ", ".join("%s=?" % k for k in fields)
            self.db.execute("UPDATE txns SET %s, mac=? WHERE id=?" % sets,
                            list(fields.values()) + [self._mac(rec), txn_id])
        self._txn(body)

    # -- reads -------------------------------------------------------------------
    def _rows(self, where="", args=()):
        cur = self.db.execute("SELECT id, %s, mac FROM txns %s ORDER BY id"
                              % (", ".join(_COLUMNS), where), args)
        names = ["id"] + _COLUMNS
        out = []
        for row in cur.fetchall():
            rec = self._checked(dict(zip(names, row[:-1])), row[-1])
            if rec is not None:
                out.append(rec)
        return out

    def _get(self, txn_id):
        rows = self._rows("WHERE id=?", (txn_id,))
        return rows[0] if rows else None

    @guarded
    def get(self, txn_id):
        """The record, or None when there is none or it failed its check."""
        return self._get(txn_id)

    @guarded
    def find(self, state=None, batch=None, kind=None):
        """Every matching record, oldest first, each one's MAC checked: the cost grows
        with the journal (about 35 us a row here); for the latest few use latest()."""
        clauses, args = self._where(state, batch, kind)
        return self._rows(("WHERE " + " AND ".join(clauses)) if clauses else "", args)

    @staticmethod
    def _where(state=None, batch=None, kind=None, states=None):
        clauses, args = [], []
        for name, value in (("state", state), ("batch", batch), ("kind", kind)):
            if value is not None:
                clauses.append("%s=?" % name)
                args.append(value)
        if states is not None:
            clauses.append("state IN (%s)" % ", ".join("?" * len(states)) if states else "0")
            args.extend(states)
        return clauses, args

    PAGE = 16          # rows read per query by newest(); each verified only when taken

    def newest(self, state=None, batch=None, kind=None, states=None):
        """The matching records, newest first, read a page at a time (no cursor is held
        between pages, so the caller may write meanwhile): a search for the latest few
        reads and verifies only the rows it looks at, not the whole journal. A record
        that fails its check is flagged and skipped, as in find()."""
        clauses, args = self._where(state, batch, kind, states)
        below = None
        while True:
            where = list(clauses)
            page_args = list(args)
            if below is not None:
                where.append("id<?")
                page_args.append(below)
            rows = self._page(where, page_args)
            names = ["id"] + _COLUMNS
            for row in rows:            # verified one by one, as the caller takes them
                rec = self._checked(dict(zip(names, row[:-1])), row[-1])
                if rec is not None:
                    yield rec
            if len(rows) < self.PAGE:
                return
            below = rows[-1][0]

    @guarded
    def _page(self, where, args):
        """One page of raw rows (id, fields..., mac), newest first."""
        return self.db.execute("SELECT id, %s, mac FROM txns %s ORDER BY id DESC LIMIT %d"
                               % (", ".join(_COLUMNS),
                                  ("WHERE " + " AND ".join(where)) if where else "", self.PAGE),
                               args).fetchall()

    def latest(self, n=1, **criteria):
        """Up to n newest matching records, newest first, each one verified."""
        out = []
        if n <= 0:
            return out
        for rec in self.newest(**criteria):
            out.append(rec)
            if len(out) >= n:
                break
        return out

    def last(self, **criteria):
        """The newest matching record (verified), or None: reads from the newest down."""
        rows = self.latest(1, **criteria)
        return rows[0] if rows else None

    @guarded
    def next_counter(self, name, limit):
        def body():
            value = self._counter_value(name) + 1
            if value > limit:
                value = 1
            self.db.execute("INSERT INTO counters (name, value, mac) VALUES (?, ?, ?) "
                            "ON CONFLICT(name) DO UPDATE SET value=excluded.value, "
                            "mac=excluded.mac", (name, value, self._counter_mac(name, value)))
            return value
        return self._txn(body)

    @guarded
    def counter(self, name):
        return self._counter_value(name)

    @guarded
    def txns_after(self, after_id, until_id=0, operator=None):
        """The records with an id above after_id (and at most until_id unless 0), of
        operator when given, oldest first, each verified: a shift's window of the
        journal, read by its primary key (the cost grows with the window only)."""
        where, args = "WHERE id>?", [after_id]
        if until_id:
            where += " AND id<=?"
            args.append(until_id)
        if operator is not None:
            where += " AND operator=?"
            args.append(operator)
        return self._rows(where, args)

    def _last_txn(self):
        return self.db.execute("SELECT COALESCE(MAX(id), 0) FROM txns").fetchone()[0]

    # -- shifts and cash (issue 14) --------------------------------------------------
    def _table_rows(self, table, where="", args=(), order="ORDER BY id"):
        fields = _TABLES[table]
        names = list(fields)
        cur = self.db.execute("SELECT %s, mac FROM %s %s %s" % (
            ", ".join('"%s"' % k for k in names), table, where, order), args)
        out = []
        for row in cur.fetchall():
            rec = self._row_checked(table, dict(zip(names, row[:-1])), row[-1])
            if rec is not None:
                out.append(rec)
        return out

    def _insert(self, table, values):
        """Insert a row (values: fields without id) and seal it; its id. Inside a
        transaction: the row and its MAC land together or not at all."""
        fields = _TABLES[table]
        row = dict(fields)
        row.update(values)
        names = [k for k in fields if k != "id"]
        cur = self.db.execute("INSERT INTO %s (%s) VALUES (%s)" % (
            table, ", ".join('"%s"' % k for k in names), ", ".join("?" * len(names))),
            [row[k] for k in names])
        row["id"] = cur.lastrowid
        if self.key is not None:
            self.db.execute("UPDATE %s SET mac=? WHERE id=?" % table,
                            (record_mac(self.key, table, row, fields), row["id"]))
        return row["id"]

    def _open_shift(self, shift_id):
        """The shift, verified and open; KeyError (missing or failing its check) or
        ShiftError "closed"."""
        rows = self._table_rows("shifts", "WHERE id=?", (shift_id,))
        if not rows:
            raise KeyError("shift %r is missing or failed its integrity check" % shift_id)
        if rows[0]["state"] != "open":
            raise ShiftError("closed", "shift %d" % shift_id)
        return rows[0]

    @guarded
    def shift_open(self, operator, float_cents, utc, tz_min, batch, currency=""):
        """A new open shift of operator with its counted float; its id. ShiftError
        "open" when operator has one open already (a row that fails its check does
        not count: it is flagged, never acted on)."""
        if isinstance(float_cents, bool) or not isinstance(float_cents, int) or float_cents < 0:
            raise ShiftError("amount", repr(float_cents))

        def body():
            if self._table_rows("shifts", "WHERE operator=? AND state='open'", (operator,)):
                raise ShiftError("open", operator)
            return self._insert("shifts", {
                "operator": operator, "opened_utc": utc, "tz_min": tz_min, "batch": batch,
                "float": float_cents, "state": "open", "currency": currency,
                "txn_after": self._last_txn()})
        return self._txn(body)

    @guarded
    def shift_current(self, operator):
        """operator's open shift (the newest, verified), or None."""
        rows = self._table_rows("shifts", "WHERE operator=? AND state='open'", (operator,),
                                "ORDER BY id DESC")
        return rows[0] if rows else None

    @guarded
    def shift_get(self, shift_id):
        """The shift, or None when there is none or it failed its check."""
        rows = self._table_rows("shifts", "WHERE id=?", (shift_id,))
        return rows[0] if rows else None

    @guarded
    def shifts(self, batch=None, operator=None, state=None):
        """The shifts, oldest first, each verified: of one batch (the batch open when
        each began), of one operator, in one state, as given."""
        clauses, args = [], []
        for name, value in (("batch", batch), ("operator", operator), ("state", state)):
            if value is not None:
                clauses.append("%s=?" % name)
                args.append(value)
        return self._table_rows("shifts", ("WHERE " + " AND ".join(clauses)) if clauses else "",
                                args)

    @guarded
    def shift_close(self, shift_id, counted, expected, denominations_json, utc):
        """Close an open shift with the cash counted and expected (the difference is
        counted - expected), in one transaction; the closed row. KeyError when the
        shift is missing or fails its check, ShiftError "closed" when it is not open."""
        def body():
            row = self._open_shift(shift_id)
            row.update(state="closed", closed_utc=utc, counted=counted, expected=expected,
                       difference=counted - expected, denominations=denominations_json or "",
                       txn_until=self._last_txn())
            names = [k for k in SHIFT_FIELDS if k != "id"]
            self.db.execute("UPDATE shifts SET %s, mac=? WHERE id=?" % ", ".join(
                '"%s"=?' % k for k in names), [row[k] for k in names] + [
                record_mac(self.key, "shifts", row, SHIFT_FIELDS) if self.key is not None
                else None, shift_id])
            return row
        return self._txn(body)

    @guarded
    def cash_move(self, shift_id, kind, amount, reason, operator, supervisor, utc):
        """A pay in or pay out of an open shift (verified), in one transaction; its id."""
        check_move(kind, amount)

        def body():
            self._open_shift(shift_id)
            return self._insert("cash_moves", {
                "shift_id": shift_id, "kind": kind, "amount": amount, "reason": reason,
                "operator": operator, "supervisor": supervisor, "utc": utc})
        return self._txn(body)

    @guarded
    def cash_moves(self, shift_id=None, batch=None):
        """Pay ins and outs, oldest first, each verified: of one shift, or of the shifts
        of one batch (those whose own row verifies)."""
        clauses, args = [], []
        if shift_id is not None:
            clauses.append("shift_id=?")
            args.append(shift_id)
        if batch is not None:
            ids = [row["id"] for row in self.shifts(batch=batch)]
            clauses.append("shift_id IN (%s)" % ", ".join("?" * len(ids)) if ids else "0")
            args.extend(ids)
        return self._table_rows("cash_moves",
                                ("WHERE " + " AND ".join(clauses)) if clauses else "", args)

    # -- Z reports (storage only; firmware/reports/ builds them) ---------------------
    @guarded
    def save_z(self, batch, utc, doc_text):
        """Keep a Z report (its document as JSON text); its id."""
        return self._txn(lambda: self._insert("z_reports", {"batch": batch, "utc": utc,
                                                            "doc": doc_text}))

    @guarded
    def z_reports(self, batch=None):
        """The Z reports, oldest first, each verified; of one batch when given."""
        if batch is None:
            return self._table_rows("z_reports")
        return self._table_rows("z_reports", "WHERE batch=?", (batch,))

    @guarded
    def last_z(self):
        """The newest Z report that verifies, or None."""
        below = None
        while True:
            where, args = "", ()
            if below is not None:
                where, args = "WHERE id<?", (below,)
            raw = self.db.execute("SELECT id FROM z_reports %s ORDER BY id DESC LIMIT 8"
                                  % where, args).fetchall()
            for (z_id,) in raw:
                rows = self._table_rows("z_reports", "WHERE id=?", (z_id,))
                if rows:
                    return rows[0]
            if len(raw) < 8:
                return None
            below = raw[-1][0]

    @guarded
    def probe(self):
        probe(self.db)

    def close(self):
        self.db.close()
