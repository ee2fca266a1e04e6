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

Every error of the medium (full, I/O, damaged file) leaves as a StorageFault
(firmware/core/store.py) and is reported to the guard's listener.
"""
import sqlite3
import time

from drivers.sqlite_durable import Guard, guarded, mac_ok, open_durable, probe, record_mac, transaction

from firmware.core.store import CORRUPT, StorageFault
from firmware.payments.journal import FIELDS

_TYPES = {int: "INTEGER", str: "TEXT"}
_COLUMNS = [k for k in FIELDS if k != "id"]
SCHEMA_VERSION = 2          # 1: records carry a MAC; 2: counters carry a MAC too
# a counter's row missing although a record shows it was used: (sql, what it means)
_COUNTER_USED = {"stan": "SELECT 1 FROM txns WHERE stan<>'' LIMIT 1",
                 "batch": "SELECT 1 FROM txns WHERE batch>1 LIMIT 1"}
_DEFAULTS = dict(FIELDS)


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
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                self.db.close()
                raise JournalError("io", "journal", "%s was written by a newer handpos "
                                   "(schema %d)" % (path, version))
            if version < SCHEMA_VERSION and self.key is not None:
                self._migrate(version)
            self._flagged = {r[0] for r in self.db.execute("SELECT id FROM flags")}
        except (sqlite3.Error, OSError) as exc:
            fault = self.guard.fault(exc)
            raise JournalError(fault.kind if fault else "io", "journal", "cannot open %s (%s): check the SD card and "
                               "free space" % (path, exc))

    def _migrate(self, version):
        """The journal of an older build: MAC every record (schema 0) and every counter
        (schema 0 and 1) as it stands, once, in one transaction."""
        def body():
            if version < 1:
                for row in self.db.execute("SELECT id, %s FROM txns" % ", ".join(_COLUMNS)).fetchall():
                    rec = dict(zip(["id"] + _COLUMNS, row))
                    self.db.execute("UPDATE txns SET mac=? WHERE id=?", (self._mac(rec), rec["id"]))
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
        """[(id, utc, what)] of the records that failed their check: a supervisor's to see."""
        rows = self.db.execute("SELECT id, utc, what FROM flags ORDER BY id").fetchall()
        seen = {r[0] for r in rows}
        return rows + [(i, "", "MAC failed") for i in sorted(self._flagged) if i not in seen]

    @guarded
    def verify_recent(self, n=200):
        """The ids among the last n records whose MAC fails (each one flagged)."""
        bad = []
        for row in self.db.execute("SELECT id, %s, mac FROM txns ORDER BY id DESC LIMIT ?"
                                   % ", ".join(_COLUMNS), (n,)).fetchall():
            rec = dict(zip(["id"] + _COLUMNS, row[:-1]))
            if self._checked(rec, row[-1]) is None:
                bad.append(rec["id"])
        return sorted(bad)

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
    def probe(self):
        probe(self.db)

    def close(self):
        self.db.close()
