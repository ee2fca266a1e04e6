"""The second factor of supervisors and technicians: TOTP from a phone authenticator
app, or a printed recovery code (docs/mfa.md).

What an operator's enrolment holds is secret (whoever has the TOTP key makes codes),
so it lives behind a small interface the board fills: on the device a file sealed
under the key hierarchy (drivers/mfa_store.py), never the store's database; in the
portable tests and on boards without one, MemorySecrets.

  secrets.get(op_id) -> dict or None      {"secret": base32, "last_step": int,
                                           "salt": hex, "recovery": [hex hash, ...],
                                           "enrolled": unix s}
  secrets.put(op_id, record)              whole, or as it was (raises a StorageFault)
  secrets.remove(op_id)

The lockout of wrong codes is no secret: it is kept in the store's settings
("mfa_fail:<id>" = "count,until"), so a restart does not end it.
"""
from firmware.security import totp

MAX_FAILURES = 5            # wrong codes in a row, then a lockout
LOCKOUT_S = 15 * 60
FAIL_KEY = "mfa_fail:"

# verify() answers
OK = "ok"
WRONG = "wrong"
REPLAY = "replay"           # right code, already used (or older than one used)
LOCKED = "locked"
NOT_ENROLLED = "not_enrolled"

DEFAULT_ACTIONS = ["pin_reset", "key_load", "export", "update", "factory_reset"]
DEFAULT_ROLES = ["supervisor", "technician"]


class MemorySecrets:
    """Enrolments in memory: the portable tests, and boards with no sealed storage
    (an enrolment there lasts until the next start)."""
    durable = False

    def __init__(self):
        self._records = {}

    def get(self, op_id):
        rec = self._records.get(op_id)
        return dict(rec) if rec is not None else None

    def put(self, op_id, record):
        self._records[op_id] = dict(record)

    def remove(self, op_id):
        self._records.pop(op_id, None)


def required(config, op, action):
    """Does action ("login", or one of [mfa] actions) need op's second factor?"""
    if op is None:
        return False
    cfg = config.get("mfa") or {}
    if op.get("role") not in cfg.get("roles", DEFAULT_ROLES):
        return False
    if action == "login":
        return bool(cfg.get("at_login", False))
    return action in cfg.get("actions", DEFAULT_ACTIONS)


class Mfa:
    """Enrolment, checks and lockout. store: the Store, or a function giving it (a
    store the board reopens after a fault); now() is UTC seconds since 1970 (the
    phone's codes follow the real time, not the monotonic clock); random_bytes(n) the
    terminal's random source."""

    def __init__(self, secrets, store, now, random_bytes, max_failures=MAX_FAILURES,
                 lockout_s=LOCKOUT_S):
        self.secrets = secrets
        self.store = store
        self.now = now
        self.random_bytes = random_bytes
        self.max_failures = max_failures
        self.lockout_s = lockout_s

    # -- enrolment -----------------------------------------------------------------
    def enrolled(self, op_id):
        return self.secrets.get(op_id) is not None

    def new_secret(self):
        return self.random_bytes(totp.SECRET_BYTES)

    def uri(self, secret, issuer, tid, op_id):
        """The key URI the phone scans: issuer "handpos" (or the merchant's name), the
        account TID-operator, so one phone tells its terminals apart."""
        return totp.key_uri(secret, issuer, "%s-%s" % (tid, op_id))

    def confirm(self, op_id, secret, code):
        """The code the phone shows proves it holds secret: then (only then) the
        enrolment is kept, replacing any earlier one, and its recovery codes are
        returned, the one time they exist in clear. None for a wrong code."""
        step = totp.match(secret, code, self.now())
        if step is None:
            return None
        codes = totp.recovery_codes(self.random_bytes)
        salt = self.random_bytes(16)
        record = {"secret": totp.b32encode(secret), "last_step": step,
                  "salt": _hex(salt), "enrolled": int(self.now()),
                  "recovery": [_hex(totp.recovery_hash(salt, c)) for c in codes]}
        self.secrets.put(op_id, record)
        self._set_failures(op_id, 0, 0)
        return codes

    def remove(self, op_id):
        self.secrets.remove(op_id)

    def recovery_left(self, op_id):
        rec = self.secrets.get(op_id)
        return len(rec["recovery"]) if rec else 0

    # -- checks --------------------------------------------------------------------
    def locked_for(self, op_id):
        """Seconds left of op_id's lockout, 0 when a code may be tried."""
        until = self._failures(op_id)[1]
        left = until - int(self.now())
        return left if left > 0 else 0

    def verify(self, op_id, code):
        """A 6-digit code from the app: OK, WRONG, REPLAY, LOCKED or NOT_ENROLLED.
        A wrong or replayed code counts toward the lockout."""
        with _hold(self.secrets):       # read, checked and spent as one (docs/mfa.md)
            return self._verify(op_id, code)

    def _verify(self, op_id, code):
        if self.locked_for(op_id):
            return LOCKED
        rec = self.secrets.get(op_id)
        if rec is None:
            return NOT_ENROLLED
        key = totp.b32decode(rec["secret"])
        now = self.now()
        step = totp.match(key, code, now, rec.get("last_step"))
        if step is None:
            replay = totp.match(key, code, now) is not None
            return self._failed(op_id, REPLAY if replay else WRONG)
        rec["last_step"] = step
        self.secrets.put(op_id, rec)        # on the card before the code counts
        self._set_failures(op_id, 0, 0)
        return OK

    def verify_recovery(self, op_id, code):
        """A printed recovery code: OK (and it is spent), WRONG, LOCKED or NOT_ENROLLED."""
        with _hold(self.secrets):
            return self._verify_recovery(op_id, code)

    def _verify_recovery(self, op_id, code):
        if self.locked_for(op_id):
            return LOCKED
        rec = self.secrets.get(op_id)
        if rec is None:
            return NOT_ENROLLED
        digest = _hex(totp.recovery_hash(_unhex(rec["salt"]), code))
        left = [h for h in rec["recovery"] if not totp.equal(h, digest)]
        if len(code) != totp.RECOVERY_DIGITS or len(left) == len(rec["recovery"]):
            return self._failed(op_id, WRONG)
        rec["recovery"] = left
        self.secrets.put(op_id, rec)
        self._set_failures(op_id, 0, 0)
        return OK

    # -- the lockout, in the store's settings --------------------------------------
    def _failures(self, op_id):
        """(count, until unix s)."""
        try:
            raw = self._store().get_setting(FAIL_KEY + op_id, "") or ""
        except Exception:               # a store that cannot be read: its fault is shown
            raw = ""
        parts = raw.split(",")
        if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
            return 0, 0
        return int(parts[0]), int(parts[1])

    def _set_failures(self, op_id, count, until):
        if (count, until) == self._failures(op_id):
            return
        self._store().set_setting(FAIL_KEY + op_id, "%d,%d" % (count, until))

    def _failed(self, op_id, answer):
        count = self._failures(op_id)[0] + 1
        if count >= self.max_failures:
            self._set_failures(op_id, 0, int(self.now()) + self.lockout_s)
            return LOCKED
        self._set_failures(op_id, count, 0)
        return answer

    def _store(self):
        return self.store() if callable(self.store) else self.store

    def failures(self, op_id):
        return self._failures(op_id)[0]


class _NoHold:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _hold(secrets):
    """secrets.hold(): the enrolments to this program while a code is checked and spent,
    where another program may check codes too (drivers/mfa_store.py: the terminal and
    the command line); nothing to hold for MemorySecrets."""
    hold = getattr(secrets, "hold", None)
    return hold() if hold is not None else _NoHold()


def utc_seconds(t):
    """Seconds since 1970 of a UTC (y, m, d, h, mi, s), as TOTP counts them; written
    out because MicroPython's time module counts from 2000 on some ports."""
    y, m, d = t[0], t[1], t[2]
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + t[3] * 3600 + t[4] * 60 + t[5]


def _hex(data):
    return "".join("%02x" % b for b in bytes(data))


def _unhex(text):
    return bytes(int(text[i:i + 2], 16) for i in range(0, len(text), 2))
