"""The Store on the device: SQLite in WAL mode with synchronous=FULL.

FULL makes every commit reach the SD card before it returns: a power cut loses no
operator, setting or audit line that the screen already confirmed.
"""
import sqlite3

from drivers.sqlite_durable import (Guard, guarded, open_durable, probe, quick_check,
                                     transaction)
import time

from firmware.core.store import StorageFault

SCHEMA = """
CREATE TABLE IF NOT EXISTS operators (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
    salt BLOB NOT NULL, pin_hash BLOB NOT NULL, iterations INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1, created_utc TEXT NOT NULL,
    kdf TEXT NOT NULL DEFAULT 'pbkdf2-sha256');
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, utc TEXT NOT NULL, event TEXT NOT NULL,
    operator TEXT NOT NULL, detail TEXT NOT NULL, prev BLOB, mac BLOB);
"""
SCHEMA_VERSION = 3          # 2: operators.kdf (the PIN hash each PIN is kept under)
#                             3: audit.prev, audit.mac (the chain: docs/audit.md)
AUDIT_COLUMNS = "seq, utc, event, operator, detail, prev, mac"


class StoreError(StorageFault):
    """The store cannot be opened (a StorageFault: the terminal shows it)."""


def _utc():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SQLiteStore:
    fault_class = StorageFault

    def __init__(self, path, on_fault=None):
        self.path = path
        self.guard = Guard("store", on_fault, path)
        try:
            self.db = open_durable(path)
            self.guard.db = self.db
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version == 1:
                self.db.execute("ALTER TABLE operators ADD COLUMN kdf TEXT NOT NULL "
                                "DEFAULT 'pbkdf2-sha256'")
            audit_columns = [r[1] for r in self.db.execute("PRAGMA table_info(audit)")]
            if "mac" not in audit_columns:      # before 3: sealed when the key comes
                self.db.execute("ALTER TABLE audit ADD COLUMN prev BLOB")
                self.db.execute("ALTER TABLE audit ADD COLUMN mac BLOB")
            if version < SCHEMA_VERSION:
                self.db.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)
            elif version > SCHEMA_VERSION:
                raise StoreError("io", "store", "%s was written by a newer handpos (schema %d)"
                                 % (path, version))
        except (sqlite3.Error, OSError) as exc:
            fault = self.guard.fault(exc)
            raise StoreError(fault.kind if fault else "io", "store",
                             "cannot open %s (%s): check the SD card and free space" % (path, exc))

    def selftest(self, max_ms=2000):
        """A time-bounded PRAGMA quick_check: (ok, detail); ok None when not finished."""
        return quick_check(self.db, max_ms)

    @guarded
    def probe(self):
        probe(self.db)

    # operators
    @guarded
    def operator_count(self):
        return self.db.execute("SELECT COUNT(*) FROM operators").fetchone()[0]

    @guarded
    def get_operator(self, op_id):
        row = self.db.execute("SELECT id, name, role, salt, pin_hash, iterations, active, "
                              "kdf FROM operators WHERE id=?", (op_id,)).fetchone()
        return self._op(row) if row else None

    @guarded
    def list_operators(self):
        rows = self.db.execute("SELECT id, name, role, salt, pin_hash, iterations, active, "
                               "kdf FROM operators ORDER BY CAST(id AS INTEGER), id").fetchall()
        return [self._op(r) for r in rows]

    @staticmethod
    def _op(row):
        return {"id": row[0], "name": row[1], "role": row[2], "salt": bytes(row[3]),
                "pin_hash": bytes(row[4]), "iterations": row[5], "active": bool(row[6]),
                "kdf": row[7]}

    @guarded
    def add_operator(self, op):
        try:
            self.db.execute("INSERT INTO operators (id, name, role, salt, pin_hash, iterations, "
                            "active, created_utc, kdf) VALUES (?,?,?,?,?,?,?,?,?)",
                            (op["id"], op["name"], op["role"], op["salt"], op["pin_hash"],
                             op["iterations"], 1 if op.get("active", True) else 0, _utc(),
                             op.get("kdf") or "pbkdf2-sha256"))
        except sqlite3.IntegrityError:
            raise KeyError("operator %s exists" % op["id"])

    @guarded
    def set_operator_pin(self, op_id, salt, pin_hash, kdf, cost):
        self.db.execute("UPDATE operators SET salt=?, pin_hash=?, kdf=?, iterations=? WHERE id=?",
                        (salt, pin_hash, kdf, cost, op_id))

    @guarded
    def update_operator(self, op_id, role=None, name=None, active=None):
        """A supervisor's edit: the role (and the name that says it), enabled or not."""
        sets, values = [], []
        for column, value in (("role", role), ("name", name),
                              ("active", None if active is None else (1 if active else 0))):
            if value is not None:
                sets.append(column + "=?")
                values.append(value)
        if sets:            # one statement: the edit is kept whole or not at all
            self.db.execute("UPDATE operators SET %s WHERE id=?" % ", ".join(sets),
                            values + [op_id])

    # settings
    @guarded
    def get_setting(self, key, default=None):
        row = self.db.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    @guarded
    def set_setting(self, key, value):
        self.db.execute("INSERT INTO settings VALUES (?,?) ON CONFLICT(key) DO UPDATE "
                        "SET value=excluded.value", (key, value))

    @guarded
    def purge_setting(self, key):
        """Delete a setting so that no copy of its value is left in the database file,
        its free pages or its WAL: overwritten on delete (secure_delete), the file
        rebuilt (VACUUM: what earlier updates left in free space goes), the WAL
        checkpointed and truncated. For a value that should never have been on the card
        (the clear DUKPT registers of older releases)."""
        self.db.execute("PRAGMA secure_delete=ON")
        try:
            self.db.execute("DELETE FROM settings WHERE key=?", (key,))
            self.db.execute("VACUUM")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.execute("PRAGMA secure_delete=OFF")

    # audit: each record sealed to the one before it once a chain is attached
    # (firmware/security/auditchain.py; the board attaches it with the audit key)
    audit_chain = None

    def audit(self, event, operator="", detail=""):
        """An audit line. One the card cannot take is reported to the listener (the
        terminal stops service and says why) but not raised: an audit line must never
        be what keeps a payment's own record from being finished. Nor does anything
        else it meets (a head file the card refuses, a bug in the chain)."""
        try:
            self._audit(event, operator, detail)
        except StorageFault:
            pass
        except Exception as exc:        # never into a payment; said on the console
            import sys
            sys.stderr.write("handpos: audit line %s not written: %r\n" % (event, exc))

    @guarded
    def _audit(self, event, operator, detail):
        utc, operator, detail = _utc(), operator or "", detail or ""
        chain = self.audit_chain
        if chain is None:
            self.db.execute("INSERT INTO audit (utc, event, operator, detail) VALUES (?,?,?,?)",
                            (utc, event, operator, detail))
            return

        def write():
            highest = self.db.execute("SELECT MAX(seq) FROM audit").fetchone()[0] or 0
            counter = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'"
                                      ).fetchone()
            seq = chain.next_seq(max(highest, counter[0] if counter else 0))
            prev, mac = chain.link(seq, utc, event, operator, detail)
            self.db.execute("INSERT INTO audit (%s) VALUES (?,?,?,?,?,?,?)" % AUDIT_COLUMNS,
                            (seq, utc, event, operator, detail, prev, mac))
            return seq, mac
        seq, mac = transaction(self.db, write)
        chain.written(seq, mac)         # the head after the record: a power cut between
        #                                 leaves a head one behind, which attach() mends

    @guarded
    def attach_audit_chain(self, chain):
        """Seal the trail from now on. The first time (no record sealed, no head yet),
        the records written before the chain are sealed as found, in one transaction,
        and a record says so. Raises StorageFault (the store's or the head file's)."""
        self.audit_chain = chain
        sealed = self.db.execute("SELECT 1 FROM audit WHERE mac IS NOT NULL LIMIT 1").fetchone()

        def seal_row(seq, prev, mac):
            self.db.execute("UPDATE audit SET prev=?, mac=? WHERE seq=?", (prev, mac, seq))

        def old_rows():
            return self._audit_rows("ORDER BY seq")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            last = self._audit_rows("ORDER BY seq DESC LIMIT 1")
            detail = chain.attach(sealed is not None,
                                  lambda seq: self._audit_rows("WHERE seq>? ORDER BY seq", (seq,)),
                                  last[0] if last else None, old_rows, _utc(), seal_row)
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        if detail is not None:
            self._audit(chain.START_EVENT, "", detail)

    def _audit_rows(self, where, args=()):
        return self.db.execute("SELECT %s FROM audit %s" % (AUDIT_COLUMNS, where),
                               args).fetchall()

    @guarded
    def audit_rows(self, after=0, limit=None):
        """Records (seq, utc, event, operator, detail, prev, mac) after seq, in order."""
        if limit is None:
            return self._audit_rows("WHERE seq>? ORDER BY seq", (after,))
        return self._audit_rows("WHERE seq>? ORDER BY seq LIMIT ?", (after, limit))

    @guarded
    def audit_verify(self):
        """The whole trail checked (an auditchain.Verdict), or None when not chained."""
        if self.audit_chain is None:
            return None
        return self.audit_chain.verify(self._audit_rows("ORDER BY seq"))

    @guarded
    def audit_check_tail(self, n=200):
        """The boot self-test's check: the records since the last break the terminal
        found (or the chain's start), at most the last n, against the head found at
        open. None when not chained."""
        chain = self.audit_chain
        if chain is None:
            return None
        anchor = self.db.execute("SELECT MAX(seq) FROM audit WHERE event IN (?,?)",
                                 chain.ANCHORS).fetchone()[0] or 0
        rows = self._audit_rows("WHERE seq>=? ORDER BY seq DESC LIMIT ?", (anchor, n))
        return chain.check_tail(list(reversed(rows)))

    @guarded
    def audit_log(self, limit=50):
        return self.db.execute("SELECT seq, event, operator, detail FROM audit "
                               "ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()

    def close(self):
        self.db.close()
