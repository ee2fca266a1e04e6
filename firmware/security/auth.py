"""Operators, roles and their PINs.

An operator PIN is stored only as a salted hash. The portable one is PBKDF2-HMAC-SHA256
(CPython uses hashlib.pbkdf2_hmac; MicroPython has only sha256, so the same function is
written out here and a portable test proves both give the same bytes); a board with a
key hierarchy gives Auth a stronger hasher (drivers/pinhash.py: scrypt with a pepper
wrapped under the device's key root). Each operator keeps the name of its hash.
"""
import hashlib

ROLES = ("cashier", "supervisor", "technician")
ITERATIONS = 20000
MAX_FAILURES = 3          # wrong PINs in a row before the operator is locked out
LOCKOUT_MS = 30000        # first lockout; each further lockout doubles it

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


def weak_pin(pin):
    """All one digit, or a straight run (1234, 9876): refused for new PINs."""
    if len(set(pin)) == 1:
        return True
    steps = set(int(pin[i + 1]) - int(pin[i]) for i in range(len(pin) - 1))
    return steps == {1} or steps == {-1}


def _equal(a, b):
    """Compare digests in time that does not depend on where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= x ^ y
    return diff == 0


class Auth:
    """Checks operator PINs against the store and keeps the lockout counters."""

    def __init__(self, store, clock, random_bytes, iterations=ITERATIONS, hasher=None):
        self.store = store
        self.clock = clock                # monotonic ms: a lockout survives clock changes
        self.random_bytes = random_bytes  # os.urandom on the device
        self.iterations = iterations
        # new PINs use hasher; a PIN kept under another (an older release's PBKDF2) is
        # checked with that one and hashed again with this one at its next good login
        self.hasher = hasher or Pbkdf2(iterations)
        self.hashers = {PBKDF2: Pbkdf2(iterations), self.hasher.kdf: self.hasher}
        self._failures = {}               # op_id -> count
        self._locked = {}                 # op_id -> (until_ms, lockouts so far)

    def create(self, op_id, name, role, pin):
        if role not in ROLES:
            raise ValueError("role")
        salt = self.random_bytes(16)
        h = self.hasher
        op = {"id": op_id, "name": name, "role": role, "salt": salt,
              "pin_hash": h.hash(pin.encode(), salt, h.cost), "iterations": h.cost,
              "kdf": h.kdf, "active": True}
        self.store.add_operator(op)
        return op

    def locked_for(self, op_id):
        """Milliseconds left of a lockout, 0 when the operator may try."""
        entry = self._locked.get(op_id)
        if entry is None:
            return 0
        left = entry[0] - self.clock()
        return left if left > 0 else 0

    def check(self, op_id, pin):
        """Return (operator or None, reason): reason is ok|unknown|wrong_pin|locked|inactive."""
        if self.locked_for(op_id):
            return None, "locked"
        op = self.store.get_operator(op_id)
        if op is None:
            # Spend the same work as a real check so IDs cannot be probed by timing.
            self.hasher.hash(pin.encode(), b"\x00" * 16, self.hasher.cost)
            return None, "unknown"
        if not op.get("active", True):
            return None, "inactive"
        h = self.hashers.get(op.get("kdf") or PBKDF2)
        if h is None:                     # kept by a hash this board does not have
            return None, "unknown"
        if not _equal(h.hash(pin.encode(), op["salt"], op["iterations"]), op["pin_hash"]):
            count = self._failures.get(op_id, 0) + 1
            self._failures[op_id] = count
            if count >= MAX_FAILURES:
                lockouts = self._locked.get(op_id, (0, 0))[1]
                self._locked[op_id] = (self.clock() + LOCKOUT_MS * (2 ** lockouts), lockouts + 1)
                self._failures[op_id] = 0
                return None, "locked"
            return None, "wrong_pin"
        self._failures.pop(op_id, None)
        if h is not self.hasher and hasattr(self.store, "set_operator_pin"):
            self._rehash(op, pin)
        return op, "ok"

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
