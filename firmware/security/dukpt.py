"""ANSI X9.24-1:2009 TDES DUKPT: a unique PIN key per transaction.

Two sides:

- The terminal (DukptTerminal) is loaded once by the technician with an initial key
  (IPEK) and its initial key serial number (KSN). It keeps the standard's 21 future
  key registers and runs the standard's terminal algorithm (Annex A): "Load Initial
  Key", "Request PIN Entry" and "New Key". It never holds the IPEK or any earlier
  key after use, so a terminal opened today cannot decrypt yesterday's PINs.
- The host (derive_ipek, derive_key, decrypt_pin_block, decrypt_pin) holds the base
  derivation key (BDK) and re-derives the key of any transaction from its KSN. The
  acquirer host simulator in tools/ uses it.

KSN: 10 bytes; the leftmost 59 bits identify the key and the terminal, the rightmost
21 bits are the encryption counter. A counter value is used at most once, never has
more than 10 one-bits (so no key is more than 10 derivations from the IPEK), and
when it runs out (after 1,048,575 keys) the terminal needs a new initial key.

Durability: DukptTerminal writes its new state through the save(state) callback it
was given BEFORE it hands out the encrypted PIN block. If the terminal loses power
after that, it restarts from a state in which the used key is already gone; if save()
fails, no block is returned and the key is still never used again in this process.
Either way no key is used twice.

Wiping: registers, the working key register and every derived key live in bytearrays
that are overwritten with zeros once used, as the standard's "erase" requires. The
state dict (hex strings) holds future keys in the clear: the store it goes to must be
the terminal's protected storage. Python ints and strs met along the way cannot be
overwritten on either interpreter; where that matters, a certified PIN pad encrypts
the PIN itself (DESIGN.md, "Card security").

Inputs that take a key or KSN accept bytes, bytearray or a hex string (hex is handy for
the host simulator and tests; a str cannot be wiped).
"""
import binascii

from firmware.security import des
from firmware.security.pinblock import decode as _decode_pin_block
from firmware.security.pinblock import encode as _encode_pin_block
from firmware.security.pinblock import wipe

KSN_BYTES = 10
KEY_BYTES = 16
COUNTER_BITS = 21
COUNTER_MASK = 0x1FFFFF
MAX_ONE_BITS = 10
REGISTERS = 21
STATE_VERSION = 1
KIND = "tdes-dukpt"           # state()["kind"]; AES DUKPT (dukpt_aes.py) saves "aes-dukpt"

_TOP_BIT = 1 << (COUNTER_BITS - 1)       # shift register bit #1, future key register #1
_KEY_VARIANT = 0xC0C0C0C000000000        # per half, in the key generation process

# The variant constants of X9.24-1:2009 table A-1, as the byte of each key half that is
# XORed with FF. The data keys are then also encrypted under themselves.
USAGES = ("pin", "mac_request", "mac_response", "data_request", "data_response")
_VARIANT_BYTE = {
    "pin": 7,                # 0000 0000 0000 00FF  0000 0000 0000 00FF
    "mac_request": 6,        # 0000 0000 0000 FF00  0000 0000 0000 FF00
    "mac_response": 4,       # 0000 0000 FF00 0000  0000 0000 FF00 0000
    "data_request": 5,       # 0000 0000 00FF 0000  0000 0000 00FF 0000
    "data_response": 3,      # 0000 00FF 0000 0000  0000 00FF 0000 0000
}


class DukptError(Exception):
    """A DUKPT operation could not be done; the message says what to do next."""


class DukptExhausted(DukptError):
    """The terminal has used its last key: a technician must load a new initial key."""


# -- values ------------------------------------------------------------------------

def _bytes(value, size, what):
    if isinstance(value, str):
        try:
            value = binascii.unhexlify(value)
        except ValueError:
            raise ValueError("%s must be %d bytes (%d hex digits); that is not hex"
                             % (what, size, 2 * size))
    if len(value) != size:
        raise ValueError("%s must be %d bytes (%d hex digits), got %d bytes"
                         % (what, size, 2 * size, len(value)))
    return value


def _hex(data):
    return binascii.hexlify(bytes(data)).decode().upper()


def ones(value):
    """The number of one-bits in value (MicroPython has no int.bit_count)."""
    n = 0
    while value:
        value &= value - 1
        n += 1
    return n


def ksn_counter(ksn):
    """The 21-bit encryption counter of a KSN."""
    ksn = _bytes(ksn, KSN_BYTES, "KSN")
    return ((ksn[7] & 0x1F) << 16) | (ksn[8] << 8) | ksn[9]


def ksn_with_counter(ksn, counter):
    """The KSN with its encryption counter replaced by counter."""
    ksn = bytearray(_bytes(ksn, KSN_BYTES, "KSN"))
    _set_counter(ksn, counter)
    return bytes(ksn)


def ksn_hex(ksn):
    return _hex(_bytes(ksn, KSN_BYTES, "KSN"))


def _set_counter(ksn, counter):
    ksn[7] = (ksn[7] & 0xE0) | ((counter >> 16) & 0x1F)
    ksn[8] = (counter >> 8) & 0xFF
    ksn[9] = counter & 0xFF


def _int(buf, off):
    v = 0
    for i in range(off, off + 8):
        v = (v << 8) | buf[i]
    return v


def _put(buf, off, value):
    for i in range(8):
        buf[off + i] = (value >> (56 - 8 * i)) & 0xFF


# -- the standard's building blocks ---------------------------------------------------

def _generate(key, reg1, out):
    """The Non-reversible Key Generation Process.

    key: the Key Register (16 bytes); reg1: Crypto Register-1 (the 64 rightmost KSN
    bits, as an int). Writes the new key (Crypto Register-1 then -2) into out[0:16].
    """
    right = _int(key, 8)
    half = bytearray(8)
    for i in range(8):
        half[i] = key[i]
    cipher = des.DES(half)
    reg2 = cipher.encrypt_int(reg1 ^ right) ^ right
    cipher.wipe()
    for i in range(4):
        half[i] ^= 0xC0                  # the key XORed with C0C0C0C0 00000000 twice
    right ^= _KEY_VARIANT
    cipher = des.DES(half)
    reg1 = cipher.encrypt_int(reg1 ^ right) ^ right
    cipher.wipe()
    wipe(half)
    _put(out, 0, reg1)
    _put(out, 8, reg2)


def variant(key, usage):
    """The key for one usage ("pin", "mac_request", ...) of a transaction key.

    Returns a new 16-byte bytearray; wipe it after use.
    """
    if usage not in _VARIANT_BYTE:
        raise ValueError("unknown DUKPT key usage %r (known: %s)" % (usage, ", ".join(USAGES)))
    out = bytearray(KEY_BYTES)
    for i in range(KEY_BYTES):
        out[i] = key[i]
    at = _VARIANT_BYTE[usage]
    out[at] ^= 0xFF
    out[at + 8] ^= 0xFF
    if usage.startswith("data_"):
        # data keys are the variant encrypted under itself, half by half
        owf = des.encrypt_key(out, out)
        for i in range(KEY_BYTES):
            out[i] = owf[i]
        wipe(owf)
    return out


# -- host side -----------------------------------------------------------------------

def derive_ipek(bdk, ksn):
    """The initial key (IPEK) of the terminal with this KSN, from the BDK."""
    bdk = _bytes(bdk, KEY_BYTES, "BDK")
    ksn = _bytes(ksn, KSN_BYTES, "KSN")
    initial = bytearray(ksn[0:8])
    initial[7] &= 0xE0                    # the counter's top bits cleared
    variant_bdk = bytearray(bdk)
    for i in (0, 1, 2, 3, 8, 9, 10, 11):
        variant_bdk[i] ^= 0xC0
    try:
        left = des.encrypt_ecb(bdk, initial)
        right = des.encrypt_ecb(variant_bdk, initial)
        ipek = left + right
        wipe(left)
        wipe(right)
        return ipek
    finally:
        wipe(variant_bdk)


def _check_counter(counter):
    if counter == 0:
        raise ValueError("KSN counter is 0: no transaction uses that key (the first "
                         "transaction's counter is 1)")
    if ones(counter) > MAX_ONE_BITS:
        raise ValueError("KSN counter %06X has %d one-bits; a DUKPT terminal never uses a "
                         "counter with more than %d" % (counter, ones(counter), MAX_ONE_BITS))


def derive_key_from_ipek(ipek, ksn, usage=None):
    """The key of the transaction with this KSN: the bare transaction key, or its
    variant for usage. Returns a bytearray; wipe it after use."""
    ipek = _bytes(ipek, KEY_BYTES, "IPEK")
    ksn = _bytes(ksn, KSN_BYTES, "KSN")
    counter = ksn_counter(ksn)
    _check_counter(counter)
    key = bytearray(ipek)
    reg = _int(ksn, 2) & ~COUNTER_MASK
    bit = _TOP_BIT
    while bit:
        if counter & bit:
            reg |= bit
            _generate(key, reg, key)
        bit >>= 1
    if usage is None:
        return key
    out = variant(key, usage)
    wipe(key)
    return out


def derive_key(bdk, ksn, usage=None):
    """Host side: the key of the transaction with this KSN, from the BDK."""
    ipek = derive_ipek(bdk, ksn)
    try:
        return derive_key_from_ipek(ipek, ksn, usage)
    finally:
        wipe(ipek)


def decrypt_pin_block(bdk, ksn, encrypted):
    """Host side: the clear PIN block (bytearray; wipe it) from an encrypted one."""
    encrypted = _bytes(encrypted, 8, "encrypted PIN block")
    key = derive_key(bdk, ksn, "pin")
    try:
        return des.decrypt_ecb(key, encrypted)
    finally:
        wipe(key)


def decrypt_pin(bdk, ksn, encrypted, pan):
    """Host side: the PIN (bytearray of ASCII digits; wipe it) from an ISO-0 block."""
    clear = decrypt_pin_block(bdk, ksn, encrypted)
    try:
        return _decode_pin_block(clear, pan)
    finally:
        wipe(clear)


# -- terminal side ---------------------------------------------------------------------

def _lrc(reg, size=KEY_BYTES):
    v = 0
    for i in range(size):
        v ^= reg[i]
    return v


def _valid(reg, size=KEY_BYTES):
    return reg[size] == _lrc(reg, size)


def _seal(reg, size=KEY_BYTES):
    reg[size] = _lrc(reg, size)


def _erase(reg, size=KEY_BYTES):
    """Overwrite a key register and make its LRC wrong, as the standard says (size: the
    key's bytes, the LRC after them; AES DUKPT's registers use the same helpers)."""
    for i in range(size):
        reg[i] = 0
    reg[size] = (_lrc(reg, size) + 1) & 0xFF


def _register(bit):
    """Index (0-based) of the future key register for a shift register bit."""
    i = REGISTERS - 1
    while bit > 1:
        bit >>= 1
        i -= 1
    return i


class DukptTerminal:
    """The terminal side of DUKPT: 21 future key registers and the KSN register.

    DukptTerminal(ipek, ksn, save) loads an initial key (the technician's key loading;
    the terminal keeps no copy of the IPEK, so wipe the buffer it came in);
    DukptTerminal.from_state(state, save) restores one after a restart. save(state) is
    called with the new state after loading and after every transaction, before the
    encrypted PIN block is returned; it must make the state durable (fsync) and raise
    if it cannot.
    """

    KIND = KIND

    def __init__(self, ipek, ksn, save):
        if not callable(save):
            raise TypeError("save must be a callable that stores the DUKPT state")
        self._save = save
        self._ksn = bytearray(_bytes(ksn, KSN_BYTES, "KSN"))
        self._regs = [bytearray(KEY_BYTES + 1) for _ in range(REGISTERS)]
        for reg in self._regs:
            _erase(reg)
        self._load(_bytes(ipek, KEY_BYTES, "IPEK"))
        self._persist()

    # "Load Initial Key"
    def _load(self, ipek):
        current = self._regs[REGISTERS - 1]          # the initial key goes into #21
        for i in range(KEY_BYTES):
            current[i] = ipek[i]
        _seal(current)
        _set_counter(self._ksn, 0)
        # New Key-3 / New Key-1 with the shift register from bit #1 down to bit #21:
        # all 21 registers from the initial key. Register #21 is written last, with the
        # key for counter 1, and that overwrite is what erases the initial key; the
        # counter then starts at 1 (X9.24-1 Annex A's first KSN ends in 00001).
        key = bytearray(current)
        base = _int(self._ksn, 2)
        shift = _TOP_BIT
        try:
            while shift:
                target = self._regs[_register(shift)]
                _generate(key, base | shift, target)
                _seal(target)
                shift >>= 1
        finally:
            wipe(key)
        _set_counter(self._ksn, 1)

    @classmethod
    def from_state(cls, state, save):
        """A terminal restored from what state() returned (and save() stored)."""
        if not callable(save):
            raise TypeError("save must be a callable that stores the DUKPT state")
        ksn, regs = _parse_state(state)
        self = object.__new__(cls)      # MicroPython classes have no cls.__new__
        self._save = save
        self._ksn = ksn
        self._regs = regs
        return self

    def state(self):
        """The durable state: the KSN register and the 21 future key registers.

        {"kind": "tdes-dukpt", "version": 1, "ksn": 20 hex digits, "registers": 21
        entries, each None (erased) or 34 hex digits (16 key bytes and the register's LRC
        byte)}. The registers are secret: keep the state in the terminal's protected
        storage. A state saved before "kind" was recorded has none and is TDES.
        """
        regs = []
        for reg in self._regs:
            regs.append(_hex(reg) if _valid(reg) else None)
        return {"kind": KIND, "version": STATE_VERSION, "ksn": _hex(self._ksn),
                "registers": regs}

    @property
    def ksn(self):
        """The KSN register: the KSN the next transaction will use (unless that key
        register turns out to be damaged and is skipped)."""
        return bytes(self._ksn)

    @property
    def counter(self):
        return ksn_counter(self._ksn)

    @property
    def exhausted(self):
        return self.counter == 0

    def encrypt_pin_block(self, clear_block):
        """Encrypt a clear PIN block under this transaction's PIN key.

        Returns (ksn, encrypted_block): the 10-byte KSN to send with it and the 8-byte
        encrypted block. The state is saved before this returns.
        """
        ksn, block, _ = self.transaction(clear_block)
        return ksn, block

    def encrypt_pin(self, pin, pan):
        """Build the ISO-0 block from pin (bytearray of ASCII digits) and pan, encrypt
        it, and wipe the clear block. The caller still wipes pin."""
        clear = _encode_pin_block(pin, pan)
        try:
            return self.encrypt_pin_block(clear)
        finally:
            wipe(clear)

    def transaction(self, clear_pin_block=None, usages=()):
        """One DUKPT transaction: one key, used for an optional PIN block and for any
        other usages ("mac_request", "data_request", ...) of the same transaction.

        Returns (ksn, encrypted_pin_block or None, {usage: key bytearray}); wipe the
        keys after use. Raises DukptExhausted when no key is left.
        """
        if clear_pin_block is not None and len(clear_pin_block) != 8:
            raise ValueError("a PIN block is 8 bytes, got %d" % len(clear_pin_block))
        for usage in usages:
            if usage not in _VARIANT_BYTE:
                raise ValueError("unknown DUKPT key usage %r (known: %s)"
                                 % (usage, ", ".join(USAGES)))
        shift, current = self._request_pin_entry()
        ksn = bytes(self._ksn)
        # "Request PIN Entry 2": the key register, its variants, then "New Key"
        key = bytearray(current)
        keys = {}
        block = None
        try:
            if clear_pin_block is not None:
                pin_key = variant(key, "pin")
                cipher = des.TDES(pin_key)
                block = cipher.encrypt(clear_pin_block)
                cipher.wipe()
                wipe(pin_key)
            for usage in usages:
                keys[usage] = variant(key, usage)
            self._new_key(shift, current)
            self._persist()
        except BaseException:
            for k in keys.values():
                wipe(k)
            raise
        finally:
            wipe(key)
        return ksn, block, keys

    # "Request PIN Entry 1": find the current key, skipping damaged registers
    def _request_pin_entry(self):
        counter = ksn_counter(self._ksn)
        skipped = False
        while True:
            if counter == 0:
                if skipped:
                    self._persist()
                raise DukptExhausted(
                    "this terminal has used all its DUKPT PIN keys (KSN %s): a technician "
                    "must load a new initial key before PINs can be taken" % _hex(self._ksn))
            shift = counter & -counter
            current = self._regs[_register(shift)]
            if _valid(current):
                return shift, current
            # a damaged or erased register: skip every counter that would need it
            counter = (counter + shift) & COUNTER_MASK
            _set_counter(self._ksn, counter)
            skipped = True

    # "New Key": future keys from the current one, erase it, advance the counter
    def _new_key(self, shift, current):
        counter = ksn_counter(self._ksn)
        if ones(counter) < MAX_ONE_BITS:
            base = _int(self._ksn, 2)
            bit = shift >> 1
            while bit:                                   # New Key-1 / New Key-3
                target = self._regs[_register(bit)]
                _generate(current, base | bit, target)
                _seal(target)
                bit >>= 1
            _erase(current)                              # New Key-2
            counter = (counter + 1) & COUNTER_MASK
        else:
            # ten one-bits already: no future keys from this one; skip the counters
            # that would have eleven or more
            _erase(current)
            counter = (counter + shift) & COUNTER_MASK
        _set_counter(self._ksn, counter)                 # 0 here means exhausted

    def _persist(self):
        self._save(self.state())

    def wipe(self):
        """Erase every register and save that: the terminal is out of service until a
        technician loads a new initial key."""
        for reg in self._regs:
            _erase(reg)
        _set_counter(self._ksn, 0)
        self._persist()


def _parse_state(state):
    def damaged(why):
        return ValueError("stored DUKPT state is damaged (%s): a technician must load a "
                          "new initial key" % why)

    if not isinstance(state, dict):
        raise damaged("not a dict")
    if state.get("kind", KIND) != KIND:
        raise damaged("kind %r: not a TDES DUKPT state" % (state.get("kind"),))
    if state.get("version") != STATE_VERSION:
        raise damaged("version %r, expected %d" % (state.get("version"), STATE_VERSION))
    try:
        ksn = bytearray(_bytes(state.get("ksn") or "", KSN_BYTES, "KSN"))
    except (TypeError, ValueError) as exc:
        raise damaged(str(exc))
    counter = ksn_counter(ksn)
    if counter and ones(counter) > MAX_ONE_BITS:
        raise damaged("counter %06X has more than %d one-bits" % (counter, MAX_ONE_BITS))
    entries = state.get("registers")
    if not isinstance(entries, (list, tuple)) or len(entries) != REGISTERS:
        raise damaged("expected %d future key registers" % REGISTERS)
    regs = []
    for n, entry in enumerate(entries):
        reg = bytearray(KEY_BYTES + 1)
        if entry is None:
            _erase(reg)
        else:
            try:
                raw = _bytes(entry, KEY_BYTES + 1, "future key register")
            except (TypeError, ValueError):
                raise damaged("future key register #%d is not 34 hex digits" % (n + 1))
            for i in range(KEY_BYTES + 1):
                reg[i] = raw[i]
            # a register whose LRC is wrong stays invalid and is skipped, as the
            # standard does with a damaged register
        regs.append(reg)
    return ksn, regs
