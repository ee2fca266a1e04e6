"""The device's transaction journal: SQLite, WAL, synchronous=FULL.

Every add/update is its own transaction, committed to the SD card before the call
returns: the flows write a record before the request leaves and before APPROVED shows.
"""
import sqlite3

from drivers.sqlite_durable import open_durable

from firmware.payments.journal import FIELDS

_TYPES = {int: "INTEGER", str: "TEXT"}
_COLUMNS = [k for k in FIELDS if k != "id"]


class JournalError(Exception):
    pass


class SQLiteJournal:
    def __init__(self, path):
        try:
            self.db = open_durable(path)
            cols = ", ".join("%s %s NOT NULL" % (k, _TYPES[type(FIELDS[k])]) for k in _COLUMNS)
            self.db.execute("CREATE TABLE IF NOT EXISTS txns (id INTEGER PRIMARY KEY AUTOINCREMENT, %s)" % cols)
            have = {row[1] for row in self.db.execute("PRAGMA table_info(txns)")}
            for k in _COLUMNS:
                if k not in have:   # a newer release added a field: keep old rows
                    self.db.execute("ALTER TABLE txns ADD COLUMN %s %s NOT NULL DEFAULT %s" % (
                        k, _TYPES[type(FIELDS[k])], "0" if isinstance(FIELDS[k], int) else "''"))
            self.db.execute("CREATE INDEX IF NOT EXISTS txns_state ON txns(state)")
            self.db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        except (sqlite3.Error, OSError) as exc:
            raise JournalError("journal: cannot open %s (%s): check the SD card and free space"
                               % (path, exc))

    def add(self, rec):
        values = [rec.get(k, FIELDS[k]) for k in _COLUMNS]
        cur = self.db.execute("INSERT INTO txns (%s) VALUES (%s)" % (
            ", ".join(_COLUMNS), ", ".join("?" * len(_COLUMNS))), values)
        return cur.lastrowid

    def update(self, txn_id, **fields):
        for k in fields:
            if k not in FIELDS or k == "id":
                raise KeyError("journal has no field %r" % k)
        sets = ", ".join("%s=?" % k for k in fields)
        self.db.execute("UPDATE txns SET %s WHERE id=?" % sets, list(fields.values()) + [txn_id])

    def _rows(self, where="", args=()):
        cur = self.db.execute("SELECT id, %s FROM txns %s ORDER BY id" % (", ".join(_COLUMNS), where), args)
        names = ["id"] + _COLUMNS
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def get(self, txn_id):
        rows = self._rows("WHERE id=?", (txn_id,))
        return rows[0] if rows else None

    def find(self, state=None, batch=None, kind=None):
        clauses, args = [], []
        for name, value in (("state", state), ("batch", batch), ("kind", kind)):
            if value is not None:
                clauses.append("%s=?" % name)
                args.append(value)
        return self._rows(("WHERE " + " AND ".join(clauses)) if clauses else "", args)

    def last(self, **criteria):
        rows = self.find(**criteria)
        return rows[-1] if rows else None

    def next_counter(self, name, limit):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
            value = (row[0] if row else 0) + 1
            if value > limit:
                value = 1
            self.db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE "
                            "SET value=excluded.value", (name, value))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return value

    def counter(self, name):
        row = self.db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return row[0] if row else 0

    def close(self):
        self.db.close()
