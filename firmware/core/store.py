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

    def update_operator(self, op_id, role=None, name=None, active=None):
        op = self._operators[op_id]
        for key, value in (("role", role), ("name", name), ("active", active)):
            if value is not None:
                op[key] = value

    def list_operators(self):
        # IDs are digit strings: order them as numbers, as the SQLite store does
        return [dict(self._operators[k]) for k in sorted(self._operators, key=_numeric)]

    # settings (strings)
    def get_setting(self, key, default=None):
        return self._settings.get(key, default)

    def set_setting(self, key, value):
        self._settings[key] = value

    # audit trail: rows (seq, utc, event, operator, detail, prev, mac); chained once a
    # key is attached (firmware/security/auditchain.py, docs/audit.md)
    audit_chain = None
    audit_clock = None              # a callable giving the UTC text, where the board has one

    def attach_audit_chain(self, chain):
        """Seal the trail from now on (chain: firmware.security.auditchain.AuditChain,
        given by the board: core imports no domain)."""
        self.audit_chain = chain

        def seal_row(seq, prev, mac):
            for i, r in enumerate(self._audit):
                if r[0] == seq:
                    self._audit[i] = r[:5] + (prev, mac)
        detail = chain.attach(len([r for r in self._audit if r[6] is not None]) > 0,
                              lambda seq: [r for r in self._audit if r[0] > seq],
                              self._audit[-1] if self._audit else None,
                              lambda: list(self._audit), self._utc(), seal_row)
        if detail is not None:
            self.audit(chain.START_EVENT, "", detail)

    def _utc(self):
        return self.audit_clock() if self.audit_clock is not None else ""

    def audit(self, event, operator="", detail=""):
        seq = (self._audit[-1][0] if self._audit else 0) + 1
        utc = self._utc()
        prev = mac = None
        if self.audit_chain is not None:
            seq = self.audit_chain.next_seq(seq - 1)
            prev, mac = self.audit_chain.link(seq, utc, event, operator or "", detail or "")
        self._audit.append((seq, utc, event, operator or "", detail or "", prev, mac))
        if self.audit_chain is not None:
            self.audit_chain.written(seq, mac)

    def audit_log(self, limit=50):
        return [r[:1] + r[2:5] for r in reversed(self._audit[-limit:])]

    def audit_rows(self, after=0, limit=None):
        rows = [r for r in self._audit if r[0] > after]
        return rows[:limit] if limit is not None else rows

    def audit_verify(self):
        """The whole trail checked (an auditchain.Verdict), or None when not chained."""
        if self.audit_chain is None:
            return None
        return self.audit_chain.verify(list(self._audit))

    def audit_check_tail(self, n=200):
        """The boot self-test's check: the records since the last break found (or the
        chain's start), at most the last n, against the head found at open."""
        if self.audit_chain is None:
            return None
        anchor = 0
        for r in self._audit:
            if r[2] in self.audit_chain.ANCHORS:
                anchor = r[0]
        rows = [r for r in self._audit if r[0] >= anchor]
        return self.audit_chain.check_tail(rows[-n:])

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
FAULT_PARTS = ("store", "journal", "queue", "keys", "pinkey", "catalogue", "members")


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
