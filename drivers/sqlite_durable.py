"""One way to open SQLite on the SD card: WAL, synchronous=FULL, autocommit; and one
place where SQLite's errors become the core's storage faults.

FULL makes every commit reach the card before it returns, which is what the store, the
journal and the offline queue all promise ("durable before the screen says so").

Every error that is about the medium (full, I/O, damaged file) leaves a driver as a
firmware.core.store.StorageFault, after the open transaction (if any) is rolled back
and the listener (the composition root's: the terminal's fault screen) is told. An
error that is about the question (a constraint, a bug in the SQL) stays what it is.
"""
import os
import sqlite3

from firmware.core.store import CORRUPT, FULL, IO, StorageFault

# SQLite primary result codes (the low byte of the extended code)
_KIND = {13: FULL,                                   # SQLITE_FULL
         11: CORRUPT, 26: CORRUPT,                   # SQLITE_CORRUPT, SQLITE_NOTADB
         10: IO, 14: IO, 8: IO, 22: IO, 15: IO,      # IOERR, CANTOPEN, READONLY, NOLFS, PROTOCOL
         5: IO, 6: IO}                               # BUSY, LOCKED (another process holds it)
_WORDS = (("full", FULL), ("malformed", CORRUPT), ("not a database", CORRUPT),
          ("disk i/o", IO), ("unable to open", IO), ("readonly", IO))


def classify(exc):
    """full | io | corrupt for an error about the medium, None for any other."""
    if isinstance(exc, OSError):
        return FULL if getattr(exc, "errno", 0) == 28 else IO      # ENOSPC
    if not isinstance(exc, sqlite3.Error) or isinstance(
            exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _KIND:
        return _KIND[code & 0xFF]
    text = str(exc).lower()
    for word, kind in _WORDS:
        if word in text:
            return kind
    return None


class Guard:
    """Turns the medium's errors of one database into StorageFaults and reports them.

    part: "store" | "journal" | "queue"; on_fault(fault) is called before the fault is
    raised (set later by the composition root). fault_class lets a driver raise its own
    subclass of StorageFault (the queue's QueueFull)."""

    def __init__(self, part, on_fault=None, path=None):
        self.part = part
        self.on_fault = on_fault
        self.db = None
        self.folder = os.path.dirname(os.path.abspath(path)) if path else None

    def fault(self, exc, make=StorageFault):
        """The StorageFault for exc, or None when exc is not about the medium."""
        kind = classify(exc)
        if kind is None:
            return None
        if kind == IO and self._no_space():
            kind = FULL         # SQLite says "I/O error" or "unable to open" on a full card
        db = self.db
        if db is not None:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                pass            # SQLite rolled back itself (SQLITE_FULL does)
        fault = make(kind, self.part, str(exc))
        self.report(fault)
        return fault

    def report(self, fault):
        """Tell the listener of a fault the driver found itself (a failed integrity
        check); the caller raises it."""
        if self.on_fault is not None:
            try:
                self.on_fault(fault)
            except Exception:
                pass            # the caller still gets the fault

    def _no_space(self):
        folder = self.folder
        while folder and not os.path.isdir(folder):
            folder = os.path.dirname(folder)
        try:
            return bool(folder) and os.statvfs(folder).f_bavail == 0
        except OSError:
            return False


def guarded(method):
    """A driver method whose medium errors leave it as the driver's StorageFault."""
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            if is_fault_class(exc):
                raise
            fault = self.guard.fault(exc, getattr(self, "fault_class", StorageFault))
            if fault is None:
                raise
            raise fault
    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def is_fault_class(exc):
    return isinstance(exc, StorageFault)


def open_durable(path):
    """A connection to path (its folder created), WAL + FULL, each statement its own
    transaction unless the caller says BEGIN. Raises sqlite3.Error or OSError."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    # A flipped byte can leave a text that is no UTF-8: read it with U+FFFD in place of
    # the bad bytes, so the row fails its MAC and is flagged like any altered row,
    # instead of every read of the table raising (and the terminal not starting)
    db.text_factory = lambda raw: raw.decode("utf-8", "replace")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


def create_private(path):
    """Make the database file 0600 before SQLite opens it, whatever the umask: SQLite
    gives its -wal and -shm files the mode of the database file."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def open_schema(path, guard, schema, version, open_error, part, pragmas=()):
    """A private, durable database at path with schema (a script of CREATE ... IF NOT
    EXISTS) at user_version version, and the set of (table, row) its flags table names
    (rows that failed their check before). pragmas run first (each a statement). A file
    of a newer schema, or one SQLite cannot open, raises open_error(kind, part, detail)
    with guard's words for the fault. Returns (db, flagged)."""
    try:
        create_private(path)
        db = open_durable(path)
        guard.db = db
        for pragma in pragmas:
            db.execute(pragma)
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found > version:
            db.close()
            raise open_error("io", part, "%s was written by a newer handpos (schema %d)"
                             % (path, found))
        db.executescript(schema)
        if found < version:
            db.execute("PRAGMA user_version=%d" % version)
        flagged = {(r[0], r[1]) for r in db.execute("SELECT tbl, row FROM flags")}
    except (sqlite3.Error, OSError) as exc:
        fault = guard.fault(exc)
        raise open_error(fault.kind if fault else "io", part,
                         "cannot open %s (%s): check the SD card and free space" % (path, exc))
    return db, flagged


def flag_row(db, flagged, table, row, what, utc):
    """Note once that row of table failed its check: in flagged (the set open_schema()
    gave, for this run) and in the database's flags table (for the next runs, and the
    technician's tools), with when and what. A store that cannot write it keeps it in
    memory: the row is flagged again at its next read after a restart."""
    mark = (table, str(row))
    if mark in flagged:
        return
    flagged.add(mark)
    try:
        db.execute("INSERT OR IGNORE INTO flags VALUES (?, ?, ?, ?)", (table, str(row), utc, what))
    except sqlite3.Error:
        pass


def transaction(db, body):
    """body() inside BEGIN IMMEDIATE ... COMMIT; rolled back if it raises (unless SQLite
    ended the transaction itself, as it does on some errors). Returns what body returns."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = body()
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return result


def probe(db):
    """A real write and its removal, to learn whether the card takes writes again (a
    read succeeds on a full card; only a write of a few pages tells)."""
    def body():
        db.execute("CREATE TABLE IF NOT EXISTS probe (x BLOB)")
        db.execute("INSERT INTO probe VALUES (zeroblob(16384))")
        db.execute("DELETE FROM probe")
    transaction(db, body)


def quick_check(db, max_ms=2000):
    """PRAGMA quick_check, stopped after max_ms (an SD card of a few GB must not hold
    the boot up): (True, "ok"), (False, what SQLite found), or (None, "not finished")."""
    import time
    deadline = time.monotonic() + max_ms / 1000.0
    stopped = []

    def progress():
        if time.monotonic() > deadline:
            stopped.append(1)
            return 1
        return 0
    db.set_progress_handler(progress, 1000)
    try:
        rows = db.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.OperationalError as exc:
        if stopped:
            return None, "not finished in %d ms" % max_ms
        return False, str(exc)
    except sqlite3.DatabaseError as exc:
        return False, str(exc)
    finally:
        db.set_progress_handler(None, 0)
    found = [r[0] for r in rows]
    if found == ["ok"]:
        return True, "ok"
    return False, "; ".join(found)[:200]


# -- record MACs ------------------------------------------------------------------------
def mac_key(data_key, purpose):
    """A key of its own for one database's record MACs, derived from the device data key
    (HMAC-SHA256 as a KDF): the encryption key itself never MACs anything."""
    import hashlib
    import hmac
    return hmac.new(bytes(data_key), b"handpos record MAC v1|" + purpose.encode(),
                    hashlib.sha256).digest()


def record_mac(key, table, fields, defaults=None):
    """HMAC-SHA256 over a record's fields (a dict of int/str/bytes/None). Fields equal
    to their default are left out, so a column a later release adds (with its default)
    does not change the MAC of the rows written before it."""
    import hashlib
    import hmac
    import json
    canon = {}
    for name in fields:
        value = fields[name]
        if defaults is not None and name in defaults and value == defaults[name]:
            continue
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = "b:" + bytes(value).hex()
        canon[name] = value
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, (table + "|").encode() + text.encode(), hashlib.sha256).digest()


def mac_ok(key, table, fields, mac, defaults=None):
    import hmac
    if mac is None:
        return False
    return hmac.compare_digest(bytes(mac), record_mac(key, table, fields, defaults))
