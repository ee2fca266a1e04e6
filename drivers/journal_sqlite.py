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

Indexes made later need no schema version: each is made at every open with IF NOT
EXISTS, and a release before it reads and writes the journal as it stands (SQLite keeps
an index it does not know of). So are txns(utc), txns(amount), and txns(last4),
txns(stan), txns(rev_stan) without the records that have none (a cash sale adds no
entry to them), for newest()'s criteria; and z_reports(batch) UNIQUE: one Z a batch in
the database too (save_z of a second raises ZExists). A journal that holds two Z of a
batch already (from before) keeps them and opens without that index; save_z checks.

A journal opened read-only (open_readonly, for the back office beside a running
terminal: SQLite's mode=ro) creates, migrates and flags nothing and refuses every write
(JournalReadOnly); its reads verify as the terminal's do, a row that fails is left out,
kept in memory for damaged() and handed to on_rejected as it was read.

Verification is the hot path of a report (every record of a batch): the MAC input is
built by _Sealer, the same bytes as sqlite_durable.record_mac with its work done once
a table, and rows are decoded by SQLite's own UTF-8 reader (the lenient one only for
a read that meets text which is no UTF-8).

Every error of the medium (full, I/O, damaged file) leaves as a StorageFault
(firmware/core/store.py) and is reported to the guard's listener.
"""
import contextlib
import hmac
import os
import sqlite3
import time
from json.encoder import encode_basestring_ascii

from drivers.sqlite_durable import Guard, guarded, mac_ok, open_durable, probe, record_mac, transaction

from firmware.core.store import CORRUPT, StorageFault
from firmware.payments.journal import (ALERT_FIELDS, CASH_MOVE_FIELDS, FIELDS, SHIFT_FIELDS,
                                       Z_FIELDS, ShiftError, ZExists, check_alert, check_move,
                                       totals_of)

_TYPES = {int: "INTEGER", str: "TEXT"}
_COLUMNS = [k for k in FIELDS if k != "id"]
# 1: records carry a MAC; 2: counters carry a MAC too; 3: shifts, cash_moves, z_reports
# (each row MACed) and the index on txns(batch). A version is for what a release before
# cannot read or what must be done once (the MACs); an index made IF NOT EXISTS at every
# open (_INDEXES) needs none.
SCHEMA_VERSION = 3
SCHEMA_MACS = 1             # the first version whose records carry a MAC
# the tables of shifts and cash: name -> fields with their defaults
# alerts (issue 15: limit and anomaly hits, firmware/payments/alerts.py) came later as
# a table an older release does not know of and leaves alone: no schema version
_TABLES = {"shifts": SHIFT_FIELDS, "cash_moves": CASH_MOVE_FIELDS, "z_reports": Z_FIELDS,
           "alerts": ALERT_FIELDS}
# how damaged() names a row of each
_ROW_WORDS = {"shifts": "shift", "cash_moves": "cash move", "z_reports": "Z report",
              "alerts": "limit or anomaly hit"}
# a counter's row missing although a record shows it was used: (sql, what it means)
_COUNTER_USED = {"stan": "SELECT 1 FROM txns WHERE stan<>'' LIMIT 1",
                 "batch": "SELECT 1 FROM txns WHERE batch>1 LIMIT 1"}
_DEFAULTS = dict(FIELDS)
# made at every open after the tables (a release before them reads the journal as ever).
# last4, stan and rev_stan: partial, without the records that have none (cash): a cash
# sale writes no page of them, and _where's "<>''" terms let SQLite use them
_INDEXES = ("CREATE INDEX IF NOT EXISTS txns_state ON txns(state)",
            "CREATE INDEX IF NOT EXISTS txns_batch ON txns(batch)",
            "CREATE INDEX IF NOT EXISTS txns_utc ON txns(utc)",
            "CREATE INDEX IF NOT EXISTS txns_amount ON txns(amount)",
            "CREATE INDEX IF NOT EXISTS txns_last4 ON txns(last4) WHERE last4<>''",
            "CREATE INDEX IF NOT EXISTS txns_stan ON txns(stan) WHERE stan<>''",
            "CREATE INDEX IF NOT EXISTS txns_rev_stan ON txns(rev_stan) WHERE rev_stan<>''",
            # the limits' day of one operator, the anomaly checks' card (issue 15)
            "CREATE INDEX IF NOT EXISTS txns_operator_utc ON txns(operator, utc)",
            "CREATE INDEX IF NOT EXISTS txns_pan ON txns(pan_masked) WHERE pan_masked<>''",
            "CREATE INDEX IF NOT EXISTS shifts_operator ON shifts(operator, state)",
            "CREATE INDEX IF NOT EXISTS shifts_batch ON shifts(batch)",
            "CREATE INDEX IF NOT EXISTS cash_moves_shift ON cash_moves(shift_id)",
            "CREATE INDEX IF NOT EXISTS z_reports_batch ON z_reports(batch)")
_ONE_Z = "CREATE UNIQUE INDEX IF NOT EXISTS z_reports_one_a_batch ON z_reports(batch)"


def _sql_default(value):
    return "%d" % value if isinstance(value, int) else "'%s'" % value.replace("'", "''")


def _lenient(raw):
    """A text as sqlite_durable.open_durable reads it: U+FFFD for bytes that are no
    UTF-8, so a flipped byte fails the row's MAC instead of the read."""
    return raw.decode("utf-8", "replace")


class JournalError(StorageFault):
    """The journal cannot be opened (a StorageFault: the terminal shows it). schema: the
    version the file holds when that is why (newer than this release, or from before
    the MACs); cause: SQLite's words when it could not be read at all."""

    def __init__(self, kind, part, detail="", schema=None, cause=None):
        StorageFault.__init__(self, kind, part, detail)
        self.schema = schema
        self.cause = cause


class JournalReadOnly(Exception):
    """A write asked of a journal opened read-only (open_readonly): it writes nothing."""


def _utc():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Sealer:
    """sqlite_durable.record_mac(key, table, rec, defaults) of one table's rows: the
    same HMAC over the same bytes, with the work done once a table (the fields' order,
    their JSON names) and the HMAC in one call. A row whose fields are not exactly the
    table's, or that holds anything but str and int (bytes, None, a float, a bool:
    json.dumps writes those its own way), is sealed by record_mac itself."""

    def __init__(self, key, table, defaults):
        self.key = key
        self.table = table
        self.defaults = defaults
        self.prefix = (table + "|").encode()
        # json.dumps(sort_keys=True, separators=(",", ":")) of the fields not at their
        # default: in name order, each '"name":' then the value, ensure_ascii
        self.order = [(name, encode_basestring_ascii(name) + ":", defaults[name])
                      for name in sorted(defaults)]

    def mac(self, rec):
        if len(rec) != len(self.order):
            return record_mac(self.key, self.table, rec, self.defaults)
        parts = []
        try:
            for name, label, default in self.order:
                value = rec[name]
                if value == default:
                    continue
                kind = type(value)
                if kind is str:
                    parts.append(label + encode_basestring_ascii(value))
                elif kind is int:
                    parts.append(label + int.__repr__(value))
                else:
                    return record_mac(self.key, self.table, rec, self.defaults)
        except KeyError:
            return record_mac(self.key, self.table, rec, self.defaults)
        return hmac.digest(self.key, self.prefix + ("{" + ",".join(parts) + "}").encode(),
                           "sha256")

    def ok(self, rec, mac):
        """Whether mac is rec's (compared in constant time); a MAC that is no bytes
        (text or a number written over it) fails."""
        if type(mac) is not bytes:
            if not isinstance(mac, (bytearray, memoryview)):
                return False
            mac = bytes(mac)
        return hmac.compare_digest(mac, self.mac(rec))


class SQLiteJournal:
    fault_class = StorageFault

    def __init__(self, path, mac_key=None, on_fault=None, on_damaged=None, readonly=False,
                 on_rejected=None):
        self.path = path
        self.key = mac_key
        self.readonly = readonly
        self.guard = Guard("journal", on_fault, path)
        self.on_damaged = on_damaged        # callback(id) when a record fails its MAC
        # callback(table, row) with each row that fails its check, as read (its fields
        # unverified: to name it, never to act on it)
        self.on_rejected = on_rejected
        self._flagged = set()
        self._row_flagged = set()
        self._seal = {}
        if mac_key is not None:
            self._seal["txns"] = _Sealer(mac_key, "txns", _DEFAULTS)
            for table in _TABLES:
                self._seal[table] = _Sealer(mac_key, table, _TABLES[table])
        try:
            if readonly:
                self._open_readonly(path)
            else:
                self._open(path)
            self._select = {"txns": self._columns("txns", ["id"] + _COLUMNS)}
            for table in _TABLES:
                self._select[table] = self._columns(table, list(_TABLES[table]))
            if "flags" in self._tables:
                self._flagged = {r[0] for r in self.db.execute("SELECT id FROM flags")}
            if "row_flags" in self._tables:
                self._row_flagged = {(r[0], r[1]) for r in
                                     self.db.execute("SELECT tbl, row FROM row_flags")}
        except (sqlite3.Error, OSError) as exc:
            fault = self.guard.fault(exc)
            if getattr(self, "db", None) is not None:
                self.db.close()
            raise JournalError(fault.kind if fault else "io", "journal", "cannot open %s (%s): check the SD card and "
                               "free space" % (path, exc), cause=str(exc))

    @classmethod
    def open_readonly(cls, path, mac_key, on_rejected=None, on_damaged=None):
        """The journal for reading only, beside a running terminal (the back office's
        export): SQLite's read-only mode, nothing created, migrated or flagged; every
        row read is verified as the terminal verifies it. JournalError when it cannot
        be read, or holds a schema this release cannot verify (.schema says which)."""
        return cls(path, mac_key, on_damaged=on_damaged, readonly=True,
                   on_rejected=on_rejected)

    def _open(self, path):
        """The device's journal: made, or brought up to this release (columns, tables,
        indexes, MACs)."""
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
        self.db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        if "mac" not in {row[1] for row in self.db.execute("PRAGMA table_info(counters)")}:
            self.db.execute("ALTER TABLE counters ADD COLUMN mac BLOB")
        self.db.execute("CREATE TABLE IF NOT EXISTS flags (id INTEGER PRIMARY KEY, "
                        "utc TEXT NOT NULL, what TEXT NOT NULL)")
        for table in _TABLES:
            self._create(table, _TABLES[table])
        for sql in _INDEXES:
            self.db.execute(sql)
        try:
            self.db.execute(_ONE_Z)
        except sqlite3.IntegrityError:
            pass            # two Z of a batch from before: kept; save_z checks instead
        self.db.execute("CREATE TABLE IF NOT EXISTS row_flags (tbl TEXT NOT NULL, "
                        "row INTEGER NOT NULL, utc TEXT NOT NULL, what TEXT NOT NULL, "
                        "PRIMARY KEY (tbl, row))")
        self._tables = self._table_names()
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        self.schema = version
        if version > SCHEMA_VERSION:
            self.db.close()
            raise JournalError("io", "journal", "%s was written by a newer handpos "
                               "(schema %d)" % (path, version), schema=version)
        if version < SCHEMA_VERSION and self.key is not None:
            self._migrate(version)
            self.schema = SCHEMA_VERSION

    def _open_readonly(self, path):
        """The journal as it stands, through SQLite's read-only mode: no table, column,
        index, MAC or flag is made (a column or table a release before lacked reads as
        its default, or as none)."""
        from urllib.parse import quote
        self.db = sqlite3.connect("file:%s?mode=ro" % quote(os.path.abspath(path)), uri=True,
                                  isolation_level=None)
        self.guard.db = self.db
        self.db.text_factory = _lenient
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        self.schema = version
        self._tables = self._table_names()
        why = None
        if version > SCHEMA_VERSION:
            why = "was written by a newer handpos (schema %d)" % version
        elif self.key is not None and version < SCHEMA_MACS:
            why = ("was written by a release whose records carry no MAC (schema %d): "
                   "start the terminal once under this release" % version)
        elif "txns" not in self._tables:
            why = "holds no journal"
        if why is not None:
            self.db.close()
            raise JournalError("io", "journal", "%s %s" % (path, why),
                               schema=version if "schema" in why else None)

    def _table_names(self):
        return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _columns(self, table, names):
        """The SELECT list of a table's fields, then its mac: a column the file lacks
        (a read-only journal of a release before) as its default."""
        if table not in self._tables:
            return None
        have = {row[1] for row in self.db.execute("PRAGMA table_info(%s)" % table)}
        defaults = _DEFAULTS if table == "txns" else _TABLES[table]
        cols = ['"%s"' % k if k in have else _sql_default(defaults[k]) for k in names]
        return ", ".join(cols + ["mac" if "mac" in have else "NULL"])

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
        return self._seal["txns"].mac(rec) if self.key is not None else None

    def _counter_mac(self, name, value):
        if self.key is None:
            return None
        return record_mac(self.key, "counters", {"name": name, "value": value})

    def _counter_value(self, name):
        """The counter's stored value, verified; a corrupt fault naming it otherwise."""
        row = None
        if "counters" in self._tables:     # (a read-only journal may be of before them)
            row = self.db.execute("SELECT value, mac FROM counters WHERE name=?",
                                  (name,)).fetchone()
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
        names = []
        if "counters" in self._tables:
            names = [r[0] for r in self.db.execute("SELECT name FROM counters")]
        for name in sorted(set(names) | set(_COUNTER_USED)):
            try:
                self._counter_value(name)
            except StorageFault as exc:
                bad.append((name, exc.detail))
        return bad

    def _checked(self, rec, mac):
        """The record if its MAC holds (or MACs are off); else flagged, and None."""
        if self.key is None or self._seal["txns"].ok(rec, mac):
            return rec
        self._rejected("txns", rec)
        self._flag(rec["id"], "MAC failed")
        return None

    def _rejected(self, table, rec):
        if self.on_rejected is not None:
            try:
                self.on_rejected(table, rec)
            except Exception:
                pass

    def _flag(self, txn_id, what):
        if txn_id in self._flagged:
            return
        self._flagged.add(txn_id)
        if not self.readonly:
            try:
                self.db.execute("INSERT OR IGNORE INTO flags VALUES (?, ?, ?)", (txn_id, _utc(), what))
            except sqlite3.Error:
                pass        # kept in memory; flagged again at the next read after a restart
        if self.on_damaged is not None:
            try:
                self.on_damaged(txn_id)
            except Exception:
                pass

    def damaged(self):
        """[(id, utc, what)] of the records that failed their check: a supervisor's to see.
        The transactions first; then the rows of shifts, cash moves and Z reports, each
        with its table named in what ("shift 3: MAC failed")."""
        rows, others = [], []
        if "flags" in self._tables:
            rows = self.db.execute("SELECT id, utc, what FROM flags ORDER BY id").fetchall()
        seen = {r[0] for r in rows}
        rows = rows + [(i, "", "MAC failed") for i in sorted(self._flagged) if i not in seen]
        if "row_flags" in self._tables:
            others = self.db.execute("SELECT tbl, row, utc, what FROM row_flags "
                                     "ORDER BY tbl, row").fetchall()
        seen = {(r[0], r[1]) for r in others}
        others += [(tbl, row, "", "MAC failed") for tbl, row in sorted(self._row_flagged)
                   if (tbl, row) not in seen]
        return rows + [(row, utc, "%s %d: %s" % (_ROW_WORDS.get(tbl, tbl), row, what))
                       for tbl, row, utc, what in others]

    def _row_checked(self, table, rec, mac):
        """A row of the shifts and cash tables if its MAC holds; else flagged, None."""
        if self.key is None or self._seal[table].ok(rec, mac):
            return rec
        self._rejected(table, rec)
        mark = (table, rec["id"])
        if mark not in self._row_flagged:
            self._row_flagged.add(mark)
            if self.readonly:
                return None
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
        names = ["id"] + _COLUMNS
        for row in self._fetch("SELECT %s FROM txns ORDER BY id DESC LIMIT ?"
                               % self._select["txns"], (n,)):
            rec = dict(zip(names, row))
            if self._checked(rec, row[-1]) is None:
                bad.append(rec["id"])
        bad.sort()
        for table in _TABLES:
            if self._select[table] is None:
                continue
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
        self._writable()
        return transaction(self.db, body)

    def _writable(self):
        if self.readonly:
            raise JournalReadOnly("the journal %s is open read-only: it writes nothing"
                                  % self.path)

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
    def _fetch(self, sql, args=()):
        """Every row of a query, its texts decoded by SQLite's own UTF-8 reader (the
        cheap one); a text that is no UTF-8 (a flipped byte) makes it read again with
        U+FFFD in its place, so that row fails its MAC like any altered row."""
        db = self.db
        db.text_factory = str
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc):
                raise
        finally:
            db.text_factory = _lenient
        return db.execute(sql, args).fetchall()

    def _rows(self, where="", args=(), order="ORDER BY id"):
        names = ["id"] + _COLUMNS
        out = []
        checked = self._checked
        for row in self._fetch("SELECT %s FROM txns %s %s" % (self._select["txns"], where,
                                                               order), args):
            rec = checked(dict(zip(names, row)), row[-1])    # zip leaves the mac out
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
    def find(self, state=None, batch=None, kind=None, **criteria):
        """Every matching record (newest()'s criteria), oldest first, in one query, each
        one's MAC checked: the cost grows with what matches; for the latest few use
        latest(), for a search that shows the newest first newest()."""
        clauses, args = self._where(state, batch, kind, **criteria)
        return self._rows(("WHERE " + " AND ".join(clauses)) if clauses else "", args)

    @staticmethod
    def _where(state=None, batch=None, kind=None, states=None, kinds=None, amount=None,
               currency=None, last4=None, stan=None, utc_from=None, utc_to=None,
               below_id=None, operator=None, pan_masked=None):
        """The SQL terms (joined by AND) and their arguments of the records that match
        every criterion given: what firmware/payments/journal.py matches() says."""
        clauses, args = [], []
        for name, value in (("state", state), ("batch", batch), ("kind", kind),
                            ("amount", amount), ("currency", currency), ("operator", operator)):
            if value is not None:
                clauses.append("%s=?" % name)
                args.append(value)
        for name, values in (("state", states), ("kind", kinds)):
            if values is not None:
                values = list(values)
                clauses.append("%s IN (%s)" % (name, ", ".join("?" * len(values)))
                               if values else "0")
                args.extend(values)
        # the indexes of last4, stan and rev_stan hold only the records that have one:
        # the term <>'' (true of any value asked but '') is what lets SQLite use them
        if last4 is not None:
            clauses.append("last4=? AND last4<>''" if last4 else "last4=?")
            args.append(last4)
        if pan_masked is not None:
            clauses.append("pan_masked=? AND pan_masked<>''" if pan_masked else "pan_masked=?")
            args.append(pan_masked)
        if stan is not None:
            clauses.append("(stan=? AND stan<>'' OR rev_stan=? AND rev_stan<>'')" if stan
                           else "(stan=? OR rev_stan=?)")
            args.extend((stan, stan))
        for term, value in (("utc>=?", utc_from), ("utc<?", utc_to), ("id<?", below_id)):
            if value is not None:
                clauses.append(term)
                args.append(value)
        return clauses, args

    PAGE = 16          # rows read per query by newest(); each verified only when taken

    def newest(self, state=None, batch=None, kind=None, states=None, kinds=None, amount=None,
               currency=None, last4=None, stan=None, utc_from=None, utc_to=None,
               below_id=None, operator=None, pan_masked=None):
        """The matching records (firmware/payments/journal.py matches(): state, batch,
        kind, states, kinds, amount, currency, last4, stan (its own or its reversal's),
        utc_from <= utc < utc_to, below_id), newest first, read a page at a time through
        the indexes (no cursor is held between pages, so the caller may write
        meanwhile): a search reads and verifies the rows that match as it takes them,
        not the journal. A record that fails its check is flagged and skipped, as in
        find()."""
        clauses, args = self._where(state, batch, kind, states, kinds, amount, currency,
                                    last4, stan, utc_from, utc_to, None, operator, pan_masked)
        names = ["id"] + _COLUMNS
        below = below_id
        while True:
            rows = self._page(clauses, args, below)
            for row in rows:            # verified one by one, as the caller takes them
                rec = self._checked(dict(zip(names, row)), row[-1])
                if rec is not None:
                    yield rec
            if len(rows) < self.PAGE:
                return
            below = rows[-1][0]

    @guarded
    def _page(self, clauses, args, below=None):
        """One page of raw rows (id, fields..., mac), newest first, below id below. The
        ids come first from the indexes alone (a range of stamps is sorted there, not
        read whole for each page), then their rows."""
        if below is not None:
            clauses = clauses + ["id<?"]
            args = list(args) + [below]
        return self._fetch("SELECT %s FROM txns WHERE id IN (SELECT id FROM txns %s ORDER BY "
                           "id DESC LIMIT %d) ORDER BY id DESC"
                           % (self._select["txns"],
                              ("WHERE " + " AND ".join(clauses)) if clauses else "",
                              self.PAGE), args)

    def totals(self, **criteria):
        """(count, amount) of the matching records (newest()'s criteria), each one
        verified as find() reads it (a record that fails its check is not counted):
        a day's sales of an operator for the limits, through txns(operator, utc)."""
        return totals_of(self.find(**criteria))

    def latest(self, n=1, **criteria):
        """Up to n newest matching records (newest()'s criteria), newest first, each
        one verified: a page of a list, the next one from below_id=the last one's id."""
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

    @contextlib.contextmanager
    def snapshot(self):
        """Reads in one read transaction: they see the journal as it stood at the first
        of them (WAL: the terminal writes on meanwhile, and waits for nothing). For reads
        only; the read-only journal's way to take a day whole."""
        self.db.execute("BEGIN")
        try:
            yield self
        finally:
            if self.db.in_transaction:
                self.db.execute("COMMIT")

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
        names = list(_TABLES[table])
        select = self._select[table]
        if select is None:          # a read-only journal of a release before the table
            return []
        out = []
        for row in self._fetch("SELECT %s FROM %s %s %s" % (select, table, where, order), args):
            rec = self._row_checked(table, dict(zip(names, row)), row[-1])
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
                            (self._seal[table].mac(row), row["id"]))
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
                self._seal["shifts"].mac(row) if self.key is not None else None, shift_id])
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
        """Keep a batch's Z report (its document as JSON text); its id. ZExists when the
        batch has one already, even one that fails its check (it keeps the batch's
        place: one Z a batch, the unique index says so too)."""
        def body():
            if self.db.execute("SELECT 1 FROM z_reports WHERE batch=? LIMIT 1",
                               (batch,)).fetchone():
                raise ZExists(batch)
            try:
                return self._insert("z_reports", {"batch": batch, "utc": utc, "doc": doc_text})
            except sqlite3.IntegrityError:
                raise ZExists(batch)
        return self._txn(body)

    @guarded
    def z_reports(self, batch=None):
        """The Z reports, oldest first, each verified; of one batch when given."""
        if batch is None:
            return self._table_rows("z_reports")
        return self._table_rows("z_reports", "WHERE batch=?", (batch,))

    @guarded
    def last_z(self):
        """The newest Z report that verifies, or None."""
        if self._select["z_reports"] is None:
            return None
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

    # -- limit and anomaly hits (issue 15; firmware/payments/alerts.py) ----------------
    def alert_add(self, row):
        """Keep a hit or its outcome (ALERT_FIELDS), sealed; its id."""
        row = check_alert(row)
        row.pop("id", None)
        return self._txn(lambda: self._insert("alerts", row))

    @guarded
    def alerts(self, n=50, below_id=None):
        """Up to n rows that verify, newest first, below id below_id when given."""
        if self._select["alerts"] is None:      # a read-only journal from before
            return []
        where, args = "", ()
        if below_id is not None:
            where, args = "WHERE id<?", (below_id,)
        rows = self._table_rows("alerts", where, args, "ORDER BY id DESC LIMIT %d" % int(n))
        return rows

    @guarded
    def probe(self):
        self._writable()
        probe(self.db)

    def close(self):
        self.db.close()
