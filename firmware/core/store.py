"""The Store interface the core writes through, and an in-memory one.

On the device the store is SQLite (drivers/store_sqlite.py). MemoryStore is a real
implementation for boards without SQLite and for the portable tests; both pass the
same contract tests.
"""


def _numeric(op_id):
    return (len(op_id), op_id)


class MemoryStore:
    def __init__(self):
        self._operators = {}
        self._settings = {}
        self._audit = []

    # operators
    def operator_count(self):
        return len(self._operators)

    def get_operator(self, op_id):
        op = self._operators.get(op_id)
        return dict(op) if op else None

    def add_operator(self, op):
        if op["id"] in self._operators:
            raise KeyError("operator %s exists" % op["id"])
        self._operators[op["id"]] = dict(op)

    def set_operator_pin(self, op_id, salt, pin_hash, kdf, cost):
        op = self._operators[op_id]
        op["salt"], op["pin_hash"], op["kdf"], op["iterations"] = salt, pin_hash, kdf, cost

    def list_operators(self):
        # IDs are digit strings: order them as numbers, as the SQLite store does
        return [dict(self._operators[k]) for k in sorted(self._operators, key=_numeric)]

    # settings (strings)
    def get_setting(self, key, default=None):
        return self._settings.get(key, default)

    def set_setting(self, key, value):
        self._settings[key] = value

    # audit trail
    def audit(self, event, operator="", detail=""):
        self._audit.append((len(self._audit) + 1, event, operator, detail))

    def audit_log(self, limit=50):
        return list(reversed(self._audit[-limit:]))

    def close(self):
        pass


# -- storage faults --------------------------------------------------------------------
# What the drivers make of every database error that is about the medium rather than
# about the question asked: the card is full, it failed to read or write, or what it
# holds is damaged. The core understands only these three words.
FULL = "full"
IO = "io"
CORRUPT = "corrupt"
KINDS = (FULL, IO, CORRUPT)


class StorageFault(Exception):
    """A database could not do what was asked (kind: full | io | corrupt).

    The call that raised it wrote nothing; everything stored before it is kept. part
    names the database (store, journal, queue) for the technician."""

    def __init__(self, kind, part, detail=""):
        Exception.__init__(self, "%s: storage %s (%s)" % (part, kind, detail))
        self.kind = kind if kind in KINDS else IO
        self.part = part
        self.detail = detail
        self.storage_fault = True        # for code that cannot import this class


# The code a technician is told on the phone: E-<part><kind>, e.g. E-43 = keys damaged.
# docs/storage.md has the table; the numbers never change meaning.
FAULT_PARTS = ("store", "journal", "queue", "keys", "pinkey", "catalogue")


def fault_code(fault):
    part = getattr(fault, "part", "store")
    p = FAULT_PARTS.index(part) + 1 if part in FAULT_PARTS else 9
    k = KINDS.index(fault.kind) + 1 if getattr(fault, "kind", None) in KINDS else 2
    return "E-%d%d" % (p, k)


def is_fault(exc):
    return getattr(exc, "storage_fault", False) is True


class Unavailable:
    """Stands where a database that cannot be opened should be: every call raises its
    fault. Never an empty journal or queue in memory in its place: a terminal that had
    data would start its STANs again, forget what waits to be uploaded and reversed."""
    durable = False

    def __init__(self, fault, tid=""):
        self.fault = fault
        self.tid = tid

    def __getattr__(self, name):
        fault = self.fault

        def refuse(*args, **kwargs):
            raise fault
        return refuse

    def audit(self, event, operator="", detail=""):
        pass        # as the store's own: an audit line never raises (the fault is shown)

    def close(self):
        pass
