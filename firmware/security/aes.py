"""AES (FIPS 197) on single 16-byte blocks, in pure Python: 128-, 192- and 256-bit keys.

MicroPython has no AES in its portable core (ucryptolib is optional and not on every
port), and AES DUKPT (ANSI X9.24-3) and ISO 9564-1 format 4 PIN blocks need it, so it
is written here from FIPS 197. Nothing is copied from a table: the S-box is computed at
import time from its definition (the multiplicative inverse in GF(2^8) modulo
x^8 + x^4 + x^3 + x + 1, then the affine transformation with the constant 63), and
tests/portable/test_aes_vectors.py checks it and the cipher against FIPS 197's examples.

Speed comes from the usual folding of a round into lookups ("T-tables"): SubBytes and
MixColumns of one state byte are one 32-bit word, so a round is sixteen lookups and
XORs per block. The four encryption tables are built at import; the decryption tables
(only the host side and format 4 deciphering need them) on first use. Decryption is
FIPS 197's equivalent inverse cipher (section 5.3.5): the round keys for it have
InvMixColumns applied once, when the key is set.

Only single blocks: DUKPT key derivation and the format 4 PIN block use AES in ECB on
one block at a time, and a mode of operation is the caller's business.

Wiping: AES objects hold the expanded key in a list of ints; wipe() zeroes it. Python
ints met along the way cannot be overwritten on either interpreter; callers keep their
key bytes in a bytearray and zero it after use (firmware.security.pinblock.wipe).
"""

BLOCK = 16
KEY_SIZES = (16, 24, 32)
_ROUNDS = {16: 10, 24: 12, 32: 14}


def _xtime(a):
    """a times x in GF(2^8) with the AES polynomial."""
    a <<= 1
    if a & 0x100:
        a ^= 0x11B
    return a


def _build_field():
    """exp and log tables of GF(2^8) to the generator 03 (x + 1)."""
    exp = bytearray(256)
    log = bytearray(256)
    a = 1
    for i in range(255):
        exp[i] = a
        log[a] = i
        a ^= _xtime(a)           # a * 03
    exp[255] = exp[0]
    return exp, log


_EXP, _LOG = _build_field()


def _mul(a, b):
    if a == 0 or b == 0:
        return 0
    return _EXP[(_LOG[a] + _LOG[b]) % 255]


def _rotl8(b, n):
    return ((b << n) | (b >> (8 - n))) & 0xFF


def _build_sbox():
    sbox = bytearray(256)
    inv = bytearray(256)
    for x in range(256):
        b = _EXP[(255 - _LOG[x]) % 255] if x else 0       # the inverse; 0 maps to 0
        s = b ^ _rotl8(b, 1) ^ _rotl8(b, 2) ^ _rotl8(b, 3) ^ _rotl8(b, 4) ^ 0x63
        sbox[x] = s
        inv[s] = x
    return sbox, inv


SBOX, INV_SBOX = _build_sbox()


def _ror(w, n):
    return ((w >> n) | (w << (32 - n))) & 0xFFFFFFFF


def _tables(box, c0, c1, c2, c3):
    """Four tables: the word (c0*s, c1*s, c2*s, c3*s) of s = box[x], and its rotations."""
    t0 = []
    for x in range(256):
        s = box[x]
        t0.append((_mul(c0, s) << 24) | (_mul(c1, s) << 16) | (_mul(c2, s) << 8) | _mul(c3, s))
    return (t0, [_ror(w, 8) for w in t0], [_ror(w, 16) for w in t0], [_ror(w, 24) for w in t0])


# SubBytes then the MixColumns column (02 01 01 03), read as FIPS 197 section 5.2.1 says
_TE0, _TE1, _TE2, _TE3 = _tables(SBOX, 2, 1, 1, 3)
_TD = []          # InvSubBytes then InvMixColumns (0E 09 0D 0B): built on first decrypt


def _dec_tables():
    if not _TD:
        _TD.extend(_tables(INV_SBOX, 14, 9, 13, 11))
    return _TD


def _word(b, i):
    return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]


def _put(out, i, w):
    out[i] = w >> 24
    out[i + 1] = (w >> 16) & 0xFF
    out[i + 2] = (w >> 8) & 0xFF
    out[i + 3] = w & 0xFF


def _sub_word(w):
    return (SBOX[w >> 24] << 24) | (SBOX[(w >> 16) & 0xFF] << 16) | \
        (SBOX[(w >> 8) & 0xFF] << 8) | SBOX[w & 0xFF]


def _expand(key):
    """FIPS 197 KeyExpansion: 4 * (rounds + 1) words."""
    nk = len(key) // 4
    rounds = _ROUNDS[len(key)]
    w = [_word(key, 4 * i) for i in range(nk)]
    rcon = 1
    for i in range(nk, 4 * (rounds + 1)):
        t = w[i - 1]
        if i % nk == 0:
            t = _sub_word(((t << 8) & 0xFFFFFFFF) | (t >> 24)) ^ (rcon << 24)
            rcon = _xtime(rcon)
        elif nk > 6 and i % nk == 4:
            t = _sub_word(t)
        w.append(w[i - nk] ^ t)
    return w, rounds


def _check_key(key):
    if isinstance(key, str):
        raise TypeError("an AES key is bytes or a bytearray, not a str")
    if len(key) not in KEY_SIZES:
        raise ValueError("an AES key is 16, 24 or 32 bytes, got %d" % len(key))


def _check_block(block):
    if len(block) != BLOCK:
        raise ValueError("an AES block is 16 bytes, got %d" % len(block))


class AES:
    """One AES key, expanded once, for any number of single-block operations."""

    def __init__(self, key):
        _check_key(key)
        self._enc, self.rounds = _expand(key)
        self._dec = None

    def _decryption_keys(self):
        # the equivalent inverse cipher's schedule: the rounds' keys in reverse order,
        # InvMixColumns applied to all but the first and the last
        td0, td1, td2, td3 = _dec_tables()
        enc = self._enc
        rounds = self.rounds
        dec = []
        for r in range(rounds, -1, -1):
            for c in range(4):
                w = enc[4 * r + c]
                if 0 < r < rounds:
                    w = td0[SBOX[w >> 24]] ^ td1[SBOX[(w >> 16) & 0xFF]] ^ \
                        td2[SBOX[(w >> 8) & 0xFF]] ^ td3[SBOX[w & 0xFF]]
                dec.append(w)
        self._dec = dec
        return dec

    def encrypt_block(self, block):
        """The 16-byte ciphertext of a 16-byte block, as a new bytearray."""
        _check_block(block)
        if self._enc is None:
            raise ValueError("this AES key has been wiped")
        k = self._enc
        t0, t1, t2, t3 = _TE0, _TE1, _TE2, _TE3
        s0 = _word(block, 0) ^ k[0]
        s1 = _word(block, 4) ^ k[1]
        s2 = _word(block, 8) ^ k[2]
        s3 = _word(block, 12) ^ k[3]
        i = 4
        for _ in range(self.rounds - 1):
            a0 = t0[s0 >> 24] ^ t1[(s1 >> 16) & 0xFF] ^ t2[(s2 >> 8) & 0xFF] ^ \
                 t3[s3 & 0xFF] ^ k[i]
            a1 = t0[s1 >> 24] ^ t1[(s2 >> 16) & 0xFF] ^ t2[(s3 >> 8) & 0xFF] ^ \
                 t3[s0 & 0xFF] ^ k[i + 1]
            a2 = t0[s2 >> 24] ^ t1[(s3 >> 16) & 0xFF] ^ t2[(s0 >> 8) & 0xFF] ^ \
                 t3[s1 & 0xFF] ^ k[i + 2]
            a3 = t0[s3 >> 24] ^ t1[(s0 >> 16) & 0xFF] ^ t2[(s1 >> 8) & 0xFF] ^ \
                 t3[s2 & 0xFF] ^ k[i + 3]
            s0, s1, s2, s3 = a0, a1, a2, a3
            i += 4
        # the last round: SubBytes and ShiftRows, no MixColumns
        sb = SBOX
        out = bytearray(BLOCK)
        _put(out, 0, ((sb[s0 >> 24] << 24) | (sb[(s1 >> 16) & 0xFF] << 16) |
                      (sb[(s2 >> 8) & 0xFF] << 8) | sb[s3 & 0xFF]) ^ k[i])
        _put(out, 4, ((sb[s1 >> 24] << 24) | (sb[(s2 >> 16) & 0xFF] << 16) |
                      (sb[(s3 >> 8) & 0xFF] << 8) | sb[s0 & 0xFF]) ^ k[i + 1])
        _put(out, 8, ((sb[s2 >> 24] << 24) | (sb[(s3 >> 16) & 0xFF] << 16) |
                      (sb[(s0 >> 8) & 0xFF] << 8) | sb[s1 & 0xFF]) ^ k[i + 2])
        _put(out, 12, ((sb[s3 >> 24] << 24) | (sb[(s0 >> 16) & 0xFF] << 16) |
                       (sb[(s1 >> 8) & 0xFF] << 8) | sb[s2 & 0xFF]) ^ k[i + 3])
        return out

    def decrypt_block(self, block):
        """The 16-byte plaintext of a 16-byte ciphertext block, as a new bytearray."""
        _check_block(block)
        if self._enc is None:
            raise ValueError("this AES key has been wiped")
        k = self._dec or self._decryption_keys()
        t0, t1, t2, t3 = _dec_tables()
        s0 = _word(block, 0) ^ k[0]
        s1 = _word(block, 4) ^ k[1]
        s2 = _word(block, 8) ^ k[2]
        s3 = _word(block, 12) ^ k[3]
        i = 4
        for _ in range(self.rounds - 1):
            a0 = t0[s0 >> 24] ^ t1[(s3 >> 16) & 0xFF] ^ t2[(s2 >> 8) & 0xFF] ^ \
                 t3[s1 & 0xFF] ^ k[i]
            a1 = t0[s1 >> 24] ^ t1[(s0 >> 16) & 0xFF] ^ t2[(s3 >> 8) & 0xFF] ^ \
                 t3[s2 & 0xFF] ^ k[i + 1]
            a2 = t0[s2 >> 24] ^ t1[(s1 >> 16) & 0xFF] ^ t2[(s0 >> 8) & 0xFF] ^ \
                 t3[s3 & 0xFF] ^ k[i + 2]
            a3 = t0[s3 >> 24] ^ t1[(s2 >> 16) & 0xFF] ^ t2[(s1 >> 8) & 0xFF] ^ \
                 t3[s0 & 0xFF] ^ k[i + 3]
            s0, s1, s2, s3 = a0, a1, a2, a3
            i += 4
        # the last round: InvShiftRows and InvSubBytes, no InvMixColumns
        ib = INV_SBOX
        out = bytearray(BLOCK)
        _put(out, 0, ((ib[s0 >> 24] << 24) | (ib[(s3 >> 16) & 0xFF] << 16) |
                      (ib[(s2 >> 8) & 0xFF] << 8) | ib[s1 & 0xFF]) ^ k[i])
        _put(out, 4, ((ib[s1 >> 24] << 24) | (ib[(s0 >> 16) & 0xFF] << 16) |
                      (ib[(s3 >> 8) & 0xFF] << 8) | ib[s2 & 0xFF]) ^ k[i + 1])
        _put(out, 8, ((ib[s2 >> 24] << 24) | (ib[(s1 >> 16) & 0xFF] << 16) |
                      (ib[(s0 >> 8) & 0xFF] << 8) | ib[s3 & 0xFF]) ^ k[i + 2])
        _put(out, 12, ((ib[s3 >> 24] << 24) | (ib[(s2 >> 16) & 0xFF] << 16) |
                       (ib[(s1 >> 8) & 0xFF] << 8) | ib[s0 & 0xFF]) ^ k[i + 3])
        return out

    def wipe(self):
        """Zero the expanded key; the object cannot be used afterwards."""
        for schedule in (self._enc, self._dec):
            if schedule is not None:
                for i in range(len(schedule)):
                    schedule[i] = 0
        self._enc = None
        self._dec = None


def encrypt_block(key, block):
    """One block under key (16, 24 or 32 bytes); a new bytearray."""
    cipher = AES(key)
    try:
        return cipher.encrypt_block(block)
    finally:
        cipher.wipe()


def decrypt_block(key, block):
    cipher = AES(key)
    try:
        return cipher.decrypt_block(block)
    finally:
        cipher.wipe()
