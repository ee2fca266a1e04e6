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
