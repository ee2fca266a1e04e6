"""Operators, roles and their PINs.

An operator PIN is stored only as a salted hash. The portable one is PBKDF2-HMAC-SHA256
(CPython uses hashlib.pbkdf2_hmac; MicroPython has only sha256, so the same function is
written out here and a portable test proves both give the same bytes); a board with a
key hierarchy gives Auth a stronger hasher (drivers/pinhash.py: scrypt with a pepper
wrapped under the device's key root). Each operator keeps the name of its hash.
"""
import binascii
import hashlib

ROLES = ("cashier", "supervisor", "technician")
ITERATIONS = 20000
# the [auth] section's defaults (firmware/core/config.py says what each is)
MAX_FAILURES = 5          # wrong PINs in a row before the operator is locked out
LOCKOUT_MS = 15 * 60000   # how long a lockout lasts
PIN_MAX_AGE_DAYS = 90     # then the PIN must be changed at login (0: never)
PIN_HISTORY = 4           # a new PIN may not be any of this many earlier ones

ID_MIN, ID_MAX = 1, 6
PIN_MIN, PIN_MAX = 4, 8


def _hmac_sha256(key, msg):
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + msg).digest()
    return hashlib.sha256(bytes(b ^ 0x5C for b in key) + inner).digest()


def pbkdf2_sha256_portable(password, salt, iterations):
    """One 32-byte block of PBKDF2-HMAC-SHA256 (RFC 8018), written for MicroPython."""
    u = _hmac_sha256(password, salt + b"\x00\x00\x00\x01")
    out = bytearray(u)
    for _ in range(iterations - 1):
        u = _hmac_sha256(password, u)
        for i in range(32):
            out[i] ^= u[i]
    return bytes(out)


def pbkdf2_sha256(password, salt, iterations):
    if hasattr(hashlib, "pbkdf2_hmac"):
        return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    return pbkdf2_sha256_portable(password, salt, iterations)


def hash_pin(pin, salt, iterations=ITERATIONS):
    return pbkdf2_sha256(pin.encode(), salt, iterations)


PBKDF2 = "pbkdf2-sha256"


class Pbkdf2:
    """The portable PIN hash: what every board has. A device with a key hierarchy
    passes a stronger one to Auth (drivers/pinhash.py: scrypt with a pepper); a hasher
    is anything with kdf (its name, kept with each operator), cost (kept too) and
    hash(pin bytes, salt, cost) -> 32 bytes."""
    kdf = PBKDF2

    def __init__(self, cost=ITERATIONS):
        self.cost = cost

    def hash(self, pin, salt, cost):
        return pbkdf2_sha256(pin, salt, cost)


def valid_id(op_id):
    return ID_MIN <= len(op_id) <= ID_MAX and op_id.isdigit()


def valid_pin(pin):
    return PIN_MIN <= len(pin) <= PIN_MAX and pin.isdigit()


def weak_pin(pin, op_id=""):
    """All one digit, a straight run (1234, 9876), two digits alternating (1212) or the
    operator's own ID (or the ID repeated): refused for new PINs."""
    if len(set(pin)) == 1:
        return True
    steps = set(int(pin[i + 1]) - int(pin[i]) for i in range(len(pin) - 1))
    if steps == {1} or steps == {-1}:
        return True
    if len(set(pin)) == 2 and all(pin[i] == pin[i % 2] for i in range(len(pin))):
        return True
    if op_id and (pin == op_id or pin == (op_id * PIN_MAX)[:len(pin)]):
        return True
    return False


def _equal(a, b):
    """Compare digests in time that does not depend on where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= x ^ y
    return diff == 0


def epoch_of(t):
    """Seconds since 1970 of a UTC (y, m, d, h, mi, s): what a lockout's end and a PIN's
    age are kept in, so that they survive a restart (the monotonic clock does not)."""
    y, m, d = t[0], t[1], t[2]
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + t[3] * 3600 + t[4] * 60 + t[5]


class Policy:
    """What [auth] says: lockout, PIN age and history."""

    def __init__(self, max_failures=MAX_FAILURES, lockout_ms=LOCKOUT_MS,
                 pin_max_age_days=PIN_MAX_AGE_DAYS, pin_history=PIN_HISTORY):
        self.max_failures = max_failures
        self.lockout_ms = lockout_ms
        self.pin_max_age_days = pin_max_age_days
        self.pin_history = pin_history

    @classmethod
    def from_config(cls, section):
        section = section or {}
        return cls(section.get("max_failures", MAX_FAILURES),
                   section.get("lockout_min", LOCKOUT_MS // 60000) * 60000,
                   section.get("pin_max_age_days", PIN_MAX_AGE_DAYS),
                   section.get("pin_history", PIN_HISTORY))


# An operator's security state, kept in the store's settings (one string each, written
# at once: synchronous=FULL), so that a restart forgets neither a lockout nor a count.
def _key(op_id, what):
    return "op.%s.%s" % (op_id, what)


class Auth:
    """Checks operator PINs against the store and keeps the lockouts (in the store, so
    that a restart does not end them), the PINs' ages and their history."""

    def __init__(self, store, clock, random_bytes, iterations=ITERATIONS, hasher=None,
                 policy=None, utc=None):
        self.store = store
        self.clock = clock                # monotonic ms: a running lockout ignores clock changes
        self.utc = utc                    # () -> UTC (y, m, d, h, mi, s), or None: nothing kept
        self.random_bytes = random_bytes  # os.urandom on the device
        self.iterations = iterations
        self.policy = policy or Policy()
        # new PINs use hasher; a PIN kept under another (an older release's PBKDF2) is
        # checked with that one and hashed again with this one at its next good login
        self.hasher = hasher or Pbkdf2(iterations)
        self.hashers = {PBKDF2: Pbkdf2(iterations), self.hasher.kdf: self.hasher}
        self._failures = {}               # op_id -> count (unknown IDs: here only)
        self._locked = {}                 # op_id -> until (monotonic ms)
        self._read = {}                   # op_id -> True: its kept lockout was read

    # -- the state kept in the store ---------------------------------------------------
    def _now(self):
        return epoch_of(self.utc()) if self.utc is not None else None

    def _get(self, op_id, what, default=None):
        try:
            return self.store.get_setting(_key(op_id, what), default)
        except Exception:                 # a store that cannot be read: the fault is shown
            return default

    def _set(self, op_id, what, value):
        self.store.set_setting(_key(op_id, what), value)

    def _hash(self, pin):
        salt = self.random_bytes(16)
        h = self.hasher
        return salt, h.hash(pin.encode(), salt, h.cost)

    def create(self, op_id, name, role, pin, must_change=False):
        if role not in ROLES:
            raise ValueError("role")
        salt, digest = self._hash(pin)
        h = self.hasher
        op = {"id": op_id, "name": name, "role": role, "salt": salt,
              "pin_hash": digest, "iterations": h.cost, "kdf": h.kdf, "active": True}
        self.store.add_operator(op)
        self._pin_set(op_id, "reset" if must_change else "")
        return op

    def _pin_set(self, op_id, must_change):
        now = self._now()
        if now is not None:
            self._set(op_id, "pin_utc", str(now))
        self._set(op_id, "must_change", must_change)

    # -- lockout -------------------------------------------------------------------------
    def locked_for(self, op_id):
        """Milliseconds left of a lockout, 0 when the operator may try. A lockout kept
        from before a restart counts from the UTC clock, never longer than a lockout."""
        until = self._locked.get(op_id)
        if until is None and op_id not in self._read:
            # read once a run: from then on this run's monotonic clock decides
            self._read[op_id] = True
            kept = self._get(op_id, "locked_utc")
            now = self._now()
            if kept and now is not None:
                left = min((int(kept) - now) * 1000, self.policy.lockout_ms)
                if left > 0:
                    until = self._locked[op_id] = self.clock() + left
        if until is None:
            return 0
        left = until - self.clock()
        if left > 0:
            return left
        del self._locked[op_id]
        if self._get(op_id, "locked_utc"):
            self._set(op_id, "locked_utc", "")      # over: a restart must not bring it back
        return 0

    def failures(self, op_id):
        if op_id in self._failures:
            return self._failures[op_id]
        kept = self._get(op_id, "failures")
        return int(kept) if kept else 0

    def _failed(self, op_id, known):
        """A wrong PIN: counted (kept for a known operator); True when it locks."""
        count = self.failures(op_id) + 1
        locks = count >= self.policy.max_failures
        if locks:
            count = 0
            self._locked[op_id] = self.clock() + self.policy.lockout_ms
        self._failures[op_id] = count
        if known:
            now = self._now()
            if locks and now is not None:
                self._set(op_id, "locked_utc", str(now + self.policy.lockout_ms // 1000))
            self._set(op_id, "failures", str(count))
        return locks

    def _succeeded(self, op_id):
        if self.failures(op_id):
            self._set(op_id, "failures", "0")
        self._failures.pop(op_id, None)

    def unlock(self, op_id):
        """A supervisor's PIN reset ends a lockout."""
        self._locked.pop(op_id, None)
        self._failures.pop(op_id, None)
        self._read[op_id] = True
        self._set(op_id, "locked_utc", "")
        self._set(op_id, "failures", "0")

    def check(self, op_id, pin):
        """Return (operator or None, reason): reason is ok|unknown|wrong_pin|locked|inactive.
        An operator returned may carry must_change: "expired" or "reset" (a new PIN is
        asked before anything else)."""
        if self.locked_for(op_id):
            return None, "locked"
        op = self.store.get_operator(op_id)
        if op is None:
            # Spend the same work as a real check so IDs cannot be probed by timing.
            self.hasher.hash(pin.encode(), b"\x00" * 16, self.hasher.cost)
            self._failed(op_id, False)
            return None, "unknown"
        h = self.hashers.get(op.get("kdf") or PBKDF2)
        if h is None:                     # kept by a hash this board does not have
            return None, "unknown"
        if not _equal(h.hash(pin.encode(), op["salt"], op["iterations"]), op["pin_hash"]):
            if self._failed(op_id, True):
                return None, "locked"
            return None, "wrong_pin"
        if not op.get("active", True):    # told only to the one who knows the PIN
            return None, "inactive"
        self._succeeded(op_id)
        if h is not self.hasher and hasattr(self.store, "set_operator_pin"):
            self._rehash(op, pin)
        op["must_change"] = self.must_change(op_id)
        return op, "ok"

    # -- PIN age, changes and resets -----------------------------------------------------
    def pin_age_days(self, op_id):
        kept, now = self._get(op_id, "pin_utc"), self._now()
        if not kept or now is None:
            return None
        return (now - int(kept)) // 86400

    def must_change(self, op_id):
        """"reset" (a supervisor set a one-time PIN), "expired", or "" when none."""
        flag = self._get(op_id, "must_change")
        if flag:
            return flag
        if self.policy.pin_max_age_days:
            age = self.pin_age_days(op_id)
            if age is None:               # an operator from before PIN ages were kept
                now = self._now()
                if now is not None:
                    self._set(op_id, "pin_utc", str(now))
            elif age >= self.policy.pin_max_age_days:
                return "expired"
        return ""

    def _history(self, op_id):
        kept = self._get(op_id, "pin_history") or ""
        out = []
        for item in kept.split(";"):
            parts = item.split(":")
            if len(parts) == 4:
                try:
                    out.append((parts[0], int(parts[1]), binascii.unhexlify(parts[2]),
                                binascii.unhexlify(parts[3])))
                except (ValueError, TypeError):
                    pass
        return out

    def reused(self, op_id, pin):
        """True when pin is the operator's PIN now or one of the last pin_history."""
        op = self.store.get_operator(op_id)
        kept = []
        if op is not None:
            kept.append((op.get("kdf") or PBKDF2, op["iterations"], op["salt"], op["pin_hash"]))
        kept += self._history(op_id)[:self.policy.pin_history]
        for kdf, cost, salt, digest in kept:
            h = self.hashers.get(kdf)
            if h is not None and _equal(h.hash(pin.encode(), salt, cost), digest):
                return True
        return False

    def pin_problem(self, op_id, pin):
        """The message id that refuses pin as op_id's new PIN, or None."""
        if not valid_pin(pin):
            return "err_pin_format"
        if weak_pin(pin, op_id):
            return "err_pin_weak"
        if self.reused(op_id, pin):
            return "err_pin_reused"
        return None

    def set_pin(self, op_id, pin, must_change=""):
        """Keep pin as op_id's PIN (the caller checked pin_problem); the old one goes
        to the history. must_change "reset": a one-time PIN a supervisor gave."""
        op = self.store.get_operator(op_id)
        if op is None:
            raise KeyError(op_id)
        history = [(op.get("kdf") or PBKDF2, op["iterations"], op["salt"], op["pin_hash"])]
        history += self._history(op_id)
        history = history[:max(self.policy.pin_history, 1)]
        salt, digest = self._hash(pin)
        h = self.hasher
        self.store.set_operator_pin(op_id, salt, digest, h.kdf, h.cost)
        self._set(op_id, "pin_history", ";".join(
            "%s:%d:%s:%s" % (k, c, _hex(s), _hex(d)) for k, c, s, d in history))
        self._pin_set(op_id, must_change)

    def _rehash(self, op, pin):
        """The PIN just proved right goes under the current hash (a stored hash is
        never upgraded without the PIN: that is the point of hashing it)."""
        salt = self.random_bytes(16)
        h = self.hasher
        op["salt"], op["pin_hash"] = salt, h.hash(pin.encode(), salt, h.cost)
        op["iterations"], op["kdf"] = h.cost, h.kdf
        self.store.set_operator_pin(op["id"], salt, op["pin_hash"], h.kdf, h.cost)

    def supervisor_ok(self, op_id, pin):
        op, reason = self.check(op_id, pin)
        if op is not None and op["role"] != "supervisor":
            return None, "not_supervisor"
        return op, reason


def _hex(b):
    return binascii.hexlify(b).decode()
