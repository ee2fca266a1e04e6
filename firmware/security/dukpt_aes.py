"""ANSI X9.24-3-2017 AES DUKPT: a unique AES PIN key per transaction.

The AES sibling of firmware/security/dukpt.py (TDES, X9.24-1), for hosts whose profile
says [host] pin_security = "aes-dukpt". PINs go out as ISO 9564-1 format 4 blocks
(firmware/security/pinblock.py) enciphered under the transaction's PIN key.

Two sides, as in TDES DUKPT:

- The terminal (AesDukptTerminal) is loaded once with an initial key and its 8-byte
  initial key ID, and keeps the standard's 32 intermediate derivation key registers
  (section 6.5's terminal algorithm: Load Initial Key, Generate Working Keys, Update
  State for Next Transaction). Register i holds the derivation key of the counter
  whose lowest one-bit is bit i. A used key is erased before its working key is used,
  and the initial key is gone once loading ends.
- The host (derive_initial_key, derive_key, decrypt_pin) holds the BDK and derives the
  key of any transaction from its 12-byte KSN.

KSN: 12 bytes, the 8-byte initial key ID then a 32-bit transaction counter. A counter is
used at most once and never has more than 16 one-bits (so no key is more than 16
derivations from the initial key); after counter FFFF0000 the terminal is used up and
needs a new initial key.

Every key is derived with the standard's one derivation function: AES-ECB under the
deriving key of a 16-byte derivation data block, once per 128 bits wanted:

    byte 0      version 01
    byte 1      key block counter, 01 then 02 for the second half of a 192/256-bit key
    bytes 2-3   key usage: 8001 initial key, 8000 derivation key, 1000 PIN encryption, ...
    bytes 4-5   algorithm of the derived key: 0002 AES-128, 0003 AES-192, 0004 AES-256
    bytes 6-7   its length in bits: 0080, 00C0, 0100
    bytes 8-15  the initial key ID (for the initial key), else its rightmost 4 bytes
                and the 32-bit counter

The derivation keys (initial, intermediate) are of the BDK's type; the PIN working key
is AES-128 unless the terminal is set up for another (AES-192 or AES-256, which need a
BDK at least as long).

Durability, as in the TDES terminal: save(state) gets the new state, with the used
registers already erased, before the working key encrypts anything. A power cut after
that restarts from a state that no longer holds the key; a save() that raises lets no
block out, and the key is never used again in this process either.

Wiping: registers and derived keys live in bytearrays that are zeroed once used. The
state dict holds future keys in hex: keep it in the terminal's protected storage.
"""
import binascii

from firmware.security import aes
from firmware.security.dukpt import DukptExhausted, _bytes, _erase, _hex, _seal, _valid, ones
from firmware.security.pinblock import format4_decipher, format4_decipher_field, \
    format4_encipher_field, format4_pin_field, wipe

KIND = "aes-dukpt"
KSN_BYTES = 12
IKID_BYTES = 8
BLOCK_BYTES = 16              # a format 4 PIN block
COUNTER_MASK = 0xFFFFFFFF
MAX_ONE_BITS = 16
REGISTERS = 32
STATE_VERSION = 1

# key type -> (algorithm indicator, length in bytes)
KEY_TYPES = {"AES-128": (0x0002, 16), "AES-192": (0x0003, 24), "AES-256": (0x0004, 32)}
_TYPE_OF_LENGTH = {16: "AES-128", 24: "AES-192", 32: "AES-256"}

# key usage indicators of the derivation data (X9.24-3-2017 table 2)
USAGES = {
    "key_encryption": 0x0002,
    "pin": 0x1000,
    "mac_generation": 0x2000,
    "mac_verification": 0x2001,
    "mac_both": 0x2002,
    "data_encrypt": 0x3000,
    "data_decrypt": 0x3001,
    "data_both": 0x3002,
}
_DERIVATION = 0x8000
_INITIAL = 0x8001


class AesDukptExhausted(DukptExhausted):
    """The AES terminal has used its last key: a technician must load a new initial key."""


# -- values ------------------------------------------------------------------------

def _key(value, what):
    """A key of 16, 24 or 32 bytes (or hex) and its type name."""
    if isinstance(value, str):
        try:
            value = binascii.unhexlify(value)
        except ValueError:
            raise ValueError("%s must be 32, 48 or 64 hex digits (AES-128/192/256); that is "
                             "not hex" % what)
    if len(value) not in _TYPE_OF_LENGTH:
        raise ValueError("%s must be 16, 24 or 32 bytes (AES-128/192/256), got %d bytes"
                         % (what, len(value)))
    return value, _TYPE_OF_LENGTH[len(value)]


def _key_type(name):
    if name not in KEY_TYPES:
        raise ValueError("unknown AES DUKPT key type %r (known: %s)"
                         % (name, ", ".join(sorted(KEY_TYPES))))
    return name


def _check_working_type(working, deriving):
    if KEY_TYPES[_key_type(working)][1] > KEY_TYPES[deriving][1]:
        raise ValueError("an %s working key needs a BDK of at least its length; this one "
                         "is %s" % (working, deriving))


def _initial_key_id(value):
    """The 8-byte initial key ID, from itself or from a whole 12-byte KSN."""
    if isinstance(value, str):
        size = len(value) // 2
    else:
        size = len(value)
    if size == KSN_BYTES:
        return bytes(_bytes(value, KSN_BYTES, "KSN")[:IKID_BYTES])
    return bytes(_bytes(value, IKID_BYTES, "initial key ID"))


def ksn_counter(ksn):
    """The 32-bit transaction counter of a 12-byte KSN."""
    ksn = _bytes(ksn, KSN_BYTES, "KSN")
    return (ksn[8] << 24) | (ksn[9] << 16) | (ksn[10] << 8) | ksn[11]


def make_ksn(initial_key_id, counter):
    """The 12-byte KSN of a counter under an initial key ID."""
    ksn = bytearray(_initial_key_id(initial_key_id)) + bytearray(4)
    _set_counter(ksn, counter)
    return bytes(ksn)


def ksn_hex(ksn):
    return _hex(_bytes(ksn, KSN_BYTES, "KSN"))


def _set_counter(ksn, counter):
    ksn[8] = (counter >> 24) & 0xFF
    ksn[9] = (counter >> 16) & 0xFF
    ksn[10] = (counter >> 8) & 0xFF
    ksn[11] = counter & 0xFF


# -- the standard's building blocks ---------------------------------------------------

def derivation_data(usage, key_type, initial_key_id, counter=0):
    """The 16-byte derivation data block (key block counter 01) for one derived key."""
    algorithm, size = KEY_TYPES[key_type]
    bits = 8 * size
    data = bytearray(16)
    data[0] = 0x01                   # version
    data[1] = 0x01                   # key block counter
    data[2] = usage >> 8
    data[3] = usage & 0xFF
    data[4] = algorithm >> 8
    data[5] = algorithm & 0xFF
    data[6] = bits >> 8
    data[7] = bits & 0xFF
    if usage == _INITIAL:
        for i in range(IKID_BYTES):
            data[8 + i] = initial_key_id[i]
    else:
        for i in range(4):
            data[8 + i] = initial_key_id[4 + i]
        data[12] = (counter >> 24) & 0xFF
        data[13] = (counter >> 16) & 0xFF
        data[14] = (counter >> 8) & 0xFF
        data[15] = counter & 0xFF
    return data


def derive(deriving_key, key_type, data, out=None):
    """The Derive Key function: a key of key_type from deriving_key and derivation data.

    Writes into out (a bytearray of the key's length) when given; returns the key.
    """
    size = KEY_TYPES[key_type][1]
    if out is None:
        out = bytearray(size)
    cipher = aes.AES(deriving_key)
    try:
        at = 0
        n = 1
        while at < size:
            data[1] = n
            block = cipher.encrypt_block(data)
            take = min(16, size - at)
            for i in range(take):
                out[at + i] = block[i]
            wipe(block)
            at += take
            n += 1
    finally:
        cipher.wipe()
    return out


def _check_counter(counter):
    if counter == 0:
        raise ValueError("KSN counter is 0: no transaction uses that key (the first "
                         "transaction's counter is 1)")
    if ones(counter) > MAX_ONE_BITS:
        raise ValueError("KSN counter %08X has %d one-bits; an AES DUKPT terminal never uses "
                         "a counter with more than %d" % (counter, ones(counter), MAX_ONE_BITS))


# -- host side -----------------------------------------------------------------------

def derive_initial_key(bdk, initial_key_id):
    """The initial key of the terminal with this initial key ID (or KSN), from the BDK.
    A bytearray of the BDK's length; wipe it after use."""
    bdk, kind = _key(bdk, "BDK")
    ikid = _initial_key_id(initial_key_id)
    return derive(bdk, kind, derivation_data(_INITIAL, kind, ikid))


def derivation_key(initial_key, ksn):
    """The intermediate derivation key of the KSN's counter, from the initial key, as
    the host computes it: one derivation per one-bit of the counter, from the top.
    Any counter is accepted here (the standard's test vectors include one with 17
    one-bits); derive_key refuses those a terminal never sends."""
    key, kind = _key(initial_key, "initial key")
    ksn = _bytes(ksn, KSN_BYTES, "KSN")
    ikid = ksn[:IKID_BYTES]
    counter = ksn_counter(ksn)
    current = bytearray(key)
    working = 0
    bit = 0x80000000
    while bit:
        if counter & bit:
            working |= bit
            derive(current, kind, derivation_data(_DERIVATION, kind, ikid, working), current)
        bit >>= 1
    return current


def working_key(deriving_key, ksn, usage="pin", key_type="AES-128"):
    """A working key (bytearray; wipe it) for usage from the derivation key of the KSN's
    counter."""
    deriving_key, kind = _key(deriving_key, "derivation key")
    if usage not in USAGES:
        raise ValueError("unknown AES DUKPT key usage %r (known: %s)"
                         % (usage, ", ".join(sorted(USAGES))))
    _check_working_type(key_type, kind)
    ksn = _bytes(ksn, KSN_BYTES, "KSN")
    data = derivation_data(USAGES[usage], key_type, ksn[:IKID_BYTES], ksn_counter(ksn))
    return derive(deriving_key, key_type, data)


def derive_key(bdk, ksn, usage=None, key_type="AES-128"):
    """Host side: the key of the transaction with this KSN, from the BDK: its
    intermediate derivation key (usage None) or its working key for usage."""
    ksn = _bytes(ksn, KSN_BYTES, "KSN")
    _check_counter(ksn_counter(ksn))
    initial = derive_initial_key(bdk, ksn)
    try:
        current = derivation_key(initial, ksn)
    finally:
        wipe(initial)
    if usage is None:
        return current
    try:
        return working_key(current, ksn, usage, key_type)
    finally:
        wipe(current)


def decrypt_pin_field(bdk, ksn, block, pan, key_type="AES-128"):
    """Host side: the clear format 4 PIN field (bytearray; wipe it) of an enciphered
    block."""
    block = _bytes(block, BLOCK_BYTES, "encrypted PIN block")
    key = derive_key(bdk, ksn, "pin", key_type)
    try:
        return format4_decipher_field(key, block, pan)
    finally:
        wipe(key)


def decrypt_pin(bdk, ksn, block, pan, key_type="AES-128"):
    """Host side: the PIN (bytearray of ASCII digits; wipe it) of an enciphered format 4
    block. ValueError when it does not decipher to a format 4 PIN field for this PAN
    (a wrong PIN key looks the same)."""
    block = _bytes(block, BLOCK_BYTES, "encrypted PIN block")
    key = derive_key(bdk, ksn, "pin", key_type)
    try:
        return format4_decipher(key, block, pan)
    finally:
        wipe(key)


# -- terminal side ---------------------------------------------------------------------

def _lowest(counter):
    """(bit, index) of the lowest one-bit of a non-zero counter."""
    bit = counter & -counter
    i = 0
    while (1 << i) != bit:
        i += 1
    return bit, i


class AesDukptTerminal:
    """The terminal side of AES DUKPT: 32 intermediate derivation key registers and the
    KSN register; the same interface as firmware.security.dukpt.DukptTerminal.

    AesDukptTerminal(initial_key, ksn, save) loads an initial key (16, 24 or 32 bytes;
    the terminal keeps no copy of it, so wipe the buffer it came in) with its initial
    key ID (8 bytes, or a 12-byte KSN whose counter is ignored). from_state(state, save)
    restores one after a restart. save(state) is called with the new state after
    loading and in every transaction before the working key is used; it must make the
    state durable (fsync) and raise if it cannot.
    """

    KIND = KIND

    def __init__(self, initial_key, ksn, save, pin_key_type="AES-128"):
        if not callable(save):
            raise TypeError("save must be a callable that stores the DUKPT state")
        key, kind = _key(initial_key, "initial key")
        _check_working_type(pin_key_type, kind)
        self._save = save
        self._type = kind
        self._pin_type = pin_key_type
        self._size = KEY_TYPES[kind][1]
        self._ksn = bytearray(_initial_key_id(ksn)) + bytearray(4)
        self._regs = [bytearray(self._size + 1) for _ in range(REGISTERS)]
        for reg in self._regs:
            _erase(reg, self._size)
        self._load(key)
        self._persist()

    # "Load Initial Key": register i gets the key of counter 2^i, from the initial key.
    # The last one written (register 0, counter 1) is where the standard keeps the
    # initial key, so nothing of it is left; the counter then starts at 1.
    def _load(self, initial_key):
        base = bytearray(initial_key)
        ikid = self._ksn[:IKID_BYTES]
        try:
            for i in range(REGISTERS - 1, -1, -1):
                reg = self._regs[i]
                derive(base, self._type, derivation_data(_DERIVATION, self._type, ikid, 1 << i),
                       reg)
                _seal(reg, self._size)
        finally:
            wipe(base)
        _set_counter(self._ksn, 1)

    @classmethod
    def from_state(cls, state, save):
        """A terminal restored from what state() returned (and save() stored)."""
        if not callable(save):
            raise TypeError("save must be a callable that stores the DUKPT state")
        parsed = _parse_state(state)
        self = object.__new__(cls)      # MicroPython classes have no cls.__new__
        self._save = save
        self._ksn, self._type, self._pin_type, self._regs = parsed
        self._size = KEY_TYPES[self._type][1]
        return self

    def state(self):
        """The durable state: {"kind": "aes-dukpt", "version": 1, "ksn": 24 hex digits,
        "key_type": the derivation keys' type ("AES-128", "AES-192", "AES-256"),
        "pin_key_type": the PIN working key's type, "registers": 32 entries, register i
        (the key for a counter whose lowest one-bit is bit i) None when erased, else the
        key and a check byte (XOR of the key's bytes) in hex}. The registers are secret:
        keep the state in the terminal's protected storage."""
        regs = []
        for reg in self._regs:
            regs.append(_hex(reg) if _valid(reg, self._size) else None)
        return {"kind": KIND, "version": STATE_VERSION, "ksn": _hex(self._ksn),
                "key_type": self._type, "pin_key_type": self._pin_type, "registers": regs}

    @property
    def ksn(self):
        """The KSN register: the KSN the next transaction will use (unless its register
        turns out to be damaged and is skipped)."""
        return bytes(self._ksn)

    @property
    def counter(self):
        return ksn_counter(self._ksn)

    @property
    def exhausted(self):
        return self.counter == 0

    def encrypt_pin(self, pin, pan):
        """The ISO 9564-1 format 4 block of pin (bytearray of ASCII digits) and pan,
        enciphered under this transaction's PIN key: (12-byte KSN, 16-byte block). The
        clear PIN field is wiped; the caller still wipes pin."""
        field = format4_pin_field(pin)
        try:
            return self.encrypt_pin_field(field, pan)
        finally:
            wipe(field)

    def encrypt_pin_field(self, pin_field, pan):
        """Encipher a clear 16-byte format 4 PIN field: (ksn, block). The state is saved
        before the key is used."""
        ksn, block, _ = self.transaction(pin_field, pan)
        return ksn, block

    def transaction(self, pin_field=None, pan=None, usages=()):
        """One DUKPT transaction: one derivation key, its PIN working key for an
        optional format 4 PIN field (with its PAN) and working keys for any other
        usages ("mac_generation", "data_encrypt", ..., of the PIN key's type).

        Returns (ksn, enciphered block or None, {usage: key bytearray}); wipe the keys.
        Raises AesDukptExhausted when no key is left.
        """
        if pin_field is not None:
            if len(pin_field) != BLOCK_BYTES:
                raise ValueError("a format 4 PIN field is 16 bytes, got %d" % len(pin_field))
            if pan is None:
                raise ValueError("a format 4 PIN block needs the PAN")
        for usage in usages:
            if usage not in USAGES:
                raise ValueError("unknown AES DUKPT key usage %r (known: %s)"
                                 % (usage, ", ".join(sorted(USAGES))))
        bit, index = self._current()
        ksn = bytes(self._ksn)
        counter = ksn_counter(ksn)
        ikid = ksn[:IKID_BYTES]
        current = self._key_of(index)
        keys = {}
        pin_key = None
        try:
            if pin_field is not None:
                pin_key = derive(current, self._pin_type,
                                 derivation_data(USAGES["pin"], self._pin_type, ikid, counter))
            for usage in usages:
                keys[usage] = derive(current, self._pin_type,
                                     derivation_data(USAGES[usage], self._pin_type, ikid,
                                                     counter))
            self._next(bit, index)
            self._persist()
            block = None
            if pin_key is not None:
                block = format4_encipher_field(pin_key, pin_field, pan)
        except BaseException:
            for k in keys.values():
                wipe(k)
            raise
        finally:
            wipe(pin_key)
            wipe(current)
        return ksn, block, keys

    def _key_of(self, index):
        """A copy of register index's key (without its check byte); wipe it."""
        reg = self._regs[index]
        key = bytearray(self._size)
        for i in range(self._size):
            key[i] = reg[i]
        return key

    # "Generate Working Keys", its first half: the current derivation key, skipping
    # erased or damaged registers (and every counter that would need them)
    def _current(self):
        counter = ksn_counter(self._ksn)
        skipped = False
        while True:
            if counter == 0:
                if skipped:
                    self._persist()
                raise AesDukptExhausted(
                    "this terminal has used all its AES DUKPT PIN keys (KSN %s): a technician "
                    "must load a new initial key before PINs can be taken" % _hex(self._ksn))
            bit, index = _lowest(counter)
            if _valid(self._regs[index], self._size):
                return bit, index
            counter = (counter + bit) & COUNTER_MASK       # 0 past the last: used up
            _set_counter(self._ksn, counter)
            skipped = True

    # "Update State for Next Transaction": the registers below the current one from
    # it, then erase it and move the counter on
    def _next(self, bit, index):
        counter = ksn_counter(self._ksn)
        size = self._size
        if ones(counter) < MAX_ONE_BITS:
            ikid = self._ksn[:IKID_BYTES]
            current = self._key_of(index)
            try:
                for i in range(index - 1, -1, -1):
                    reg = self._regs[i]
                    derive(current, self._type,
                           derivation_data(_DERIVATION, self._type, ikid, counter | (1 << i)),
                           reg)
                    _seal(reg, size)
            finally:
                wipe(current)
            _erase(self._regs[index], size)
            counter = (counter + 1) & COUNTER_MASK
        else:
            # sixteen one-bits already: no keys below this one; skip the counters that
            # would have seventeen or more
            _erase(self._regs[index], size)
            counter = (counter + bit) & COUNTER_MASK
        _set_counter(self._ksn, counter)                   # 0 here means used up

    def _persist(self):
        self._save(self.state())

    def wipe(self):
        """Erase every register and save that: the terminal is out of service until a
        technician loads a new initial key."""
        for reg in self._regs:
            _erase(reg, self._size)
        _set_counter(self._ksn, 0)
        self._persist()


def _parse_state(state):
    def damaged(why):
        return ValueError("stored AES DUKPT state is damaged (%s): a technician must load a "
                          "new initial key" % why)

    if not isinstance(state, dict):
        raise damaged("not a dict")
    if state.get("kind") != KIND:
        raise damaged("kind %r, expected %r" % (state.get("kind"), KIND))
    if state.get("version") != STATE_VERSION:
        raise damaged("version %r, expected %d" % (state.get("version"), STATE_VERSION))
    kind = state.get("key_type")
    pin_kind = state.get("pin_key_type")
    if kind not in KEY_TYPES or pin_kind not in KEY_TYPES:
        raise damaged("key types %r / %r" % (kind, pin_kind))
    if KEY_TYPES[pin_kind][1] > KEY_TYPES[kind][1]:
        raise damaged("an %s PIN key from %s derivation keys" % (pin_kind, kind))
    try:
        ksn = bytearray(_bytes(state.get("ksn") or "", KSN_BYTES, "KSN"))
    except (TypeError, ValueError) as exc:
        raise damaged(str(exc))
    counter = ksn_counter(ksn)
    if counter and ones(counter) > MAX_ONE_BITS:
        raise damaged("counter %08X has more than %d one-bits" % (counter, MAX_ONE_BITS))
    entries = state.get("registers")
    if not isinstance(entries, (list, tuple)) or len(entries) != REGISTERS:
        raise damaged("expected %d intermediate derivation key registers" % REGISTERS)
    size = KEY_TYPES[kind][1]
    regs = []
    for n, entry in enumerate(entries):
        reg = bytearray(size + 1)
        if entry is None:
            _erase(reg, size)
        else:
            try:
                raw = _bytes(entry, size + 1, "register")
            except (TypeError, ValueError):
                raise damaged("register %d is not %d hex digits" % (n, 2 * size + 2))
            for i in range(size + 1):
                reg[i] = raw[i]
            # a register whose check byte is wrong stays invalid and is skipped
        regs.append(reg)
    return ksn, kind, pin_kind, regs


def restore(state, save):
    """The terminal of either scheme from its saved state: AES when state["kind"] is
    "aes-dukpt", else TDES (a state saved before the kind was recorded is TDES)."""
    if isinstance(state, dict) and state.get("kind") == KIND:
        return AesDukptTerminal.from_state(state, save)
    from firmware.security.dukpt import DukptTerminal
    return DukptTerminal.from_state(state, save)
