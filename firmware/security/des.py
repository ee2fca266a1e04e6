"""DES and triple DES (TDEA, EDE) on 8-byte blocks, in pure Python.

MicroPython has no DES and the terminal needs it for DUKPT (ANSI X9.24-1), so it is
written here from the FIPS 46-3 description: the permutation and substitution tables
below are the standard's, and everything else is derived from them at import time.

Speed comes from folding the standard's steps into lookup tables, not from changing
the algorithm:

- IP, its inverse, PC-1 and PC-2 are applied a byte (or 7-bit chunk) at a time through
  tables of precomputed contributions, instead of bit by bit.
- The S-boxes are merged with the permutation P ("SP boxes"), so a round is eight
  lookups ORed together.
- The expansion E is never built. The eight 6-bit inputs of the S-boxes are windows of
  R: S-box n (0-based) reads bits 4n .. 4n+5 of R (1-based from the left, bit 0 meaning
  bit 32 and bit 33 meaning bit 1). Rotating R right by one puts the windows of the
  even S-boxes (0, 2, 4, 6) at shifts 26, 18, 10 and 2; rotating it left by three puts
  the odd ones there. Each round key is stored as the two 32-bit words those windows
  are XORed with.
- Triple DES runs its three passes back to back without the inverse initial
  permutation and initial permutation between them, which cancel.

Keys: 8 bytes (single DES), 16 bytes (two-key TDEA, K1 K2 K1) or 24 bytes (K1 K2 K3).
Parity bits are ignored, as DES itself ignores them.

Wiping: DES and TDES objects hold the expanded key; wipe() zeroes those lists. The
Python ints the computation passes through cannot be overwritten on either interpreter;
callers keep their own key bytes in a bytearray and zero it after use (see wipe()).
"""

_M32 = 0xFFFFFFFF
_M28 = 0xFFFFFFF

# FIPS 46-3, figure 1 ("Initial permutation IP"): output bit i comes from input bit IP[i].
_IP = (
    58, 50, 42, 34, 26, 18, 10, 2,
    60, 52, 44, 36, 28, 20, 12, 4,
    62, 54, 46, 38, 30, 22, 14, 6,
    64, 56, 48, 40, 32, 24, 16, 8,
    57, 49, 41, 33, 25, 17, 9, 1,
    59, 51, 43, 35, 27, 19, 11, 3,
    61, 53, 45, 37, 29, 21, 13, 5,
    63, 55, 47, 39, 31, 23, 15, 7,
)

# The primitive function P (32 bits to 32 bits).
_P = (
    16, 7, 20, 21, 29, 12, 28, 17,
    1, 15, 23, 26, 5, 18, 31, 10,
    2, 8, 24, 14, 32, 27, 3, 9,
    19, 13, 30, 6, 22, 11, 4, 25,
)

# The selection functions S1..S8: four rows of sixteen, row from the outer two bits
# of the 6-bit input, column from the middle four.
_S = (
    (14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7,
     0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
     4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0,
     15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13),
    (15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10,
     3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
     0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15,
     13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9),
    (10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8,
     13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
     13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7,
     1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12),
    (7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15,
     13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
     10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4,
     3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14),
    (2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9,
     14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
     4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14,
     11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3),
    (12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11,
     10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
     9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6,
     4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13),
    (4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1,
     13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
     1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2,
     6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12),
    (13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7,
     1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
     7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8,
     2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11),
)

# Permuted choice 1: the 56 key bits (C then D) taken from the 64-bit key.
_PC1 = (
    57, 49, 41, 33, 25, 17, 9,
    1, 58, 50, 42, 34, 26, 18,
    10, 2, 59, 51, 43, 35, 27,
    19, 11, 3, 60, 52, 44, 36,
    63, 55, 47, 39, 31, 23, 15,
    7, 62, 54, 46, 38, 30, 22,
    14, 6, 61, 53, 45, 37, 29,
    21, 13, 5, 28, 20, 12, 4,
)

# Permuted choice 2: the 48 bits of a round key taken from C D (56 bits).
_PC2 = (
    14, 17, 11, 24, 1, 5,
    3, 28, 15, 6, 21, 10,
    23, 19, 12, 4, 26, 8,
    16, 7, 27, 20, 13, 2,
    41, 52, 31, 37, 47, 55,
    30, 40, 51, 45, 33, 48,
    44, 49, 39, 56, 34, 53,
    46, 42, 50, 36, 29, 32,
)

# Left shifts of C and D before each of the 16 rounds.
_SHIFTS = (1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1)


def _chunk_tables(dest, chunk):
    """Lookup tables applying a bit permutation `chunk` input bits at a time.

    dest[k] is what input bit k (0 = leftmost) contributes to the output. Table c maps
    the value of input chunk c to the OR of its bits' contributions.
    """
    tables = []
    for start in range(0, len(dest), chunk):
        table = [0] * (1 << chunk)
        for value in range(1, 1 << chunk):
            low = value & -value
            bit = 0
            while (1 << bit) != low:
                bit += 1
            table[value] = table[value ^ low] | dest[start + chunk - 1 - bit]
        tables.append(tuple(table))
    return tuple(tables)


def _build():
    ip_dest = [0] * 64
    fp_dest = [0] * 64
    for i in range(64):
        ip_dest[_IP[i] - 1] = 1 << (63 - i)
        # the inverse permutation sends bit i back where IP took it from
        fp_dest[i] = 1 << (64 - _IP[i])
    ip = _chunk_tables(ip_dest, 8)
    fp = _chunk_tables(fp_dest, 8)

    # P, as where each S-box output bit lands
    p_dest = [0] * 32
    for i in range(32):
        p_dest[_P[i] - 1] = 1 << (31 - i)
    sp = []
    for n in range(8):
        table = []
        for six in range(64):
            row = ((six >> 4) & 2) | (six & 1)
            col = (six >> 1) & 15
            out = _S[n][row * 16 + col]
            word = 0
            for b in range(4):
                if out & (8 >> b):
                    word |= p_dest[4 * n + b]
            table.append(word)
        sp.append(tuple(table))

    pc1_dest = [0] * 64
    for i in range(56):
        pc1_dest[_PC1[i] - 1] = 1 << (55 - i)
    pc1 = _chunk_tables(pc1_dest, 8)

    # PC-2 straight into the two round-key words: S-box window n, bit j (0 = leftmost
    # of six) goes to word X (even n) or Y (odd n) at shift 26 - 8 * (n // 2) + 5 - j;
    # X is kept in the upper 32 bits of one 64-bit value, Y in the lower.
    pc2_dest = [0] * 56
    for i in range(48):
        n, j = divmod(i, 6)
        shift = 26 - 8 * (n >> 1) + 5 - j
        if not n & 1:
            shift += 32
        pc2_dest[_PC2[i] - 1] = 1 << shift
    pc2 = _chunk_tables(pc2_dest, 7)
    return ip, fp, tuple(sp), pc1, pc2


_IPT, _FPT, _SPT, _PC1T, _PC2T = _build()
del _build


def _schedule(key, off=0):
    """The 16 round keys of the 8-byte key at key[off:off + 8], as 32 ints:
    X1 Y1 X2 Y2 ... X16 Y16. Reads the key in place (no copy left to wipe)."""
    t = _PC1T
    cd = (t[0][key[off]] | t[1][key[off + 1]] | t[2][key[off + 2]] | t[3][key[off + 3]]
          | t[4][key[off + 4]] | t[5][key[off + 5]] | t[6][key[off + 6]] | t[7][key[off + 7]])
    c = cd >> 28
    d = cd & _M28
    p0, p1, p2, p3, p4, p5, p6, p7 = _PC2T
    out = []
    for s in _SHIFTS:
        c = ((c << s) | (c >> (28 - s))) & _M28
        d = ((d << s) | (d >> (28 - s))) & _M28
        k = (p0[c >> 21] | p1[(c >> 14) & 127] | p2[(c >> 7) & 127] | p3[c & 127]
             | p4[d >> 21] | p5[(d >> 14) & 127] | p6[(d >> 7) & 127] | p7[d & 127])
        out.append(k >> 32)
        out.append(k & _M32)
    return out


def _reverse(ks):
    """Round keys in decryption order (the pairs reversed, each pair kept X, Y)."""
    out = []
    for i in range(30, -2, -2):
        out.append(ks[i])
        out.append(ks[i + 1])
    return out


def _ip(x):
    t = _IPT
    return (t[0][x >> 56] | t[1][(x >> 48) & 255] | t[2][(x >> 40) & 255]
            | t[3][(x >> 32) & 255] | t[4][(x >> 24) & 255] | t[5][(x >> 16) & 255]
            | t[6][(x >> 8) & 255] | t[7][x & 255])


def _fp(x):
    t = _FPT
    return (t[0][x >> 56] | t[1][(x >> 48) & 255] | t[2][(x >> 40) & 255]
            | t[3][(x >> 32) & 255] | t[4][(x >> 24) & 255] | t[5][(x >> 16) & 255]
            | t[6][(x >> 8) & 255] | t[7][x & 255])


def _rounds(left, right, ks):
    """Sixteen rounds on (L0, R0); returns the halves of the pre-output, R16 and L16."""
    s0, s1, s2, s3, s4, s5, s6, s7 = _SPT
    for i in range(0, 32, 4):
        x = (((right >> 1) | (right << 31)) & _M32) ^ ks[i]
        y = (((right << 3) | (right >> 29)) & _M32) ^ ks[i + 1]
        left ^= (s0[x >> 26] | s2[(x >> 18) & 63] | s4[(x >> 10) & 63] | s6[(x >> 2) & 63]
                 | s1[y >> 26] | s3[(y >> 18) & 63] | s5[(y >> 10) & 63] | s7[(y >> 2) & 63])
        x = (((left >> 1) | (left << 31)) & _M32) ^ ks[i + 2]
        y = (((left << 3) | (left >> 29)) & _M32) ^ ks[i + 3]
        right ^= (s0[x >> 26] | s2[(x >> 18) & 63] | s4[(x >> 10) & 63] | s6[(x >> 2) & 63]
                  | s1[y >> 26] | s3[(y >> 18) & 63] | s5[(y >> 10) & 63] | s7[(y >> 2) & 63])
    return right, left


def _crypt(x, schedules):
    """One or more DES passes over the 64-bit int x, one per schedule, IP/FP once.

    Between passes the pre-output (R16, L16) becomes the next pass's (L0, R0): the
    inverse initial permutation and the initial permutation in between cancel.
    """
    x = _ip(x)
    left = x >> 32
    right = x & _M32
    for ks in schedules:
        left, right = _rounds(left, right, ks)
    return _fp((left << 32) | right)


def _int(data, off=0):
    # byte by byte, so a bytearray holding a secret is not copied into a bytes object
    v = 0
    for i in range(off, off + 8):
        v = (v << 8) | data[i]
    return v


def _block(data):
    if len(data) != 8:
        raise ValueError("a DES block is 8 bytes, got %d" % len(data))
    return _int(data)


def block_to_int(block):
    """An 8-byte block as an unsigned big-endian int."""
    return _block(block)


def int_to_block(value):
    """A 64-bit int as 8 bytes, big-endian."""
    return (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


class DES:
    """Single DES with one expanded 8-byte key."""

    def __init__(self, key):
        if len(key) != 8:
            raise ValueError("a DES key is 8 bytes, got %d" % len(key))
        self._enc = _schedule(key)
        self._dec = None       # built on first decrypt: DUKPT only ever encrypts

    def encrypt_int(self, x):
        return _crypt(x, (self._enc,))

    def decrypt_int(self, x):
        if self._dec is None:
            self._dec = _reverse(self._enc)
        return _crypt(x, (self._dec,))

    def encrypt(self, block):
        return int_to_block(self.encrypt_int(_block(block)))

    def decrypt(self, block):
        return int_to_block(self.decrypt_int(_block(block)))

    def wipe(self):
        _zero(self._enc)
        if self._dec is not None:
            _zero(self._dec)


class TDES:
    """Triple DES, EDE: C = E_K3(D_K2(E_K1(P))). 16-byte keys mean K3 = K1."""

    def __init__(self, key):
        n = len(key)
        if n not in (8, 16, 24):
            raise ValueError("a DES key is 8 bytes and a TDES key 16 or 24 bytes, got %d" % n)
        e1 = _schedule(key, 0)
        d1 = _reverse(e1)
        if n == 8:
            # K1 = K2 = K3: the encrypt-decrypt pair cancels, leaving single DES
            self._enc = (e1,)
            self._dec = (d1,)
            return
        e2 = _schedule(key, 8)
        e3 = _schedule(key, 16) if n == 24 else e1
        d3 = _reverse(e3) if n == 24 else d1
        self._enc = (e1, _reverse(e2), e3)
        self._dec = (d3, e2, d1)

    def encrypt_int(self, x):
        return _crypt(x, self._enc)

    def decrypt_int(self, x):
        return _crypt(x, self._dec)

    def encrypt(self, block):
        return int_to_block(self.encrypt_int(_block(block)))

    def decrypt(self, block):
        return int_to_block(self.decrypt_int(_block(block)))

    def encrypt_ecb(self, data):
        return _ecb(self.encrypt_int, data)

    def decrypt_ecb(self, data):
        return _ecb(self.decrypt_int, data)

    def wipe(self):
        for ks in self._enc + self._dec:
            _zero(ks)


def _zero(words):
    for i in range(len(words)):
        words[i] = 0


def _ecb(crypt_int, data):
    if len(data) % 8:
        raise ValueError("ECB data must be a whole number of 8-byte blocks, got %d bytes"
                         % len(data))
    out = bytearray(len(data))
    for off in range(0, len(data), 8):
        v = crypt_int(_int(data, off))
        for i in range(8):
            out[off + i] = (v >> (56 - 8 * i)) & 255
    return out


# -- one-shot helpers ---------------------------------------------------------------

def des_encrypt(key, block):
    """Single DES: encrypt one 8-byte block under an 8-byte key."""
    return DES(key).encrypt(block)


def des_decrypt(key, block):
    return DES(key).decrypt(block)


def tdes_encrypt(key, block):
    """TDES EDE: encrypt one 8-byte block under a 16- or 24-byte key."""
    return TDES(key).encrypt(block)


def tdes_decrypt(key, block):
    return TDES(key).decrypt(block)


def encrypt_ecb(key, data):
    """TDES ECB over whole 8-byte blocks; returns a bytearray the caller can wipe."""
    cipher = TDES(key)
    try:
        return cipher.encrypt_ecb(data)
    finally:
        cipher.wipe()


def decrypt_ecb(key, data):
    cipher = TDES(key)
    try:
        return cipher.decrypt_ecb(data)
    finally:
        cipher.wipe()


def encrypt_key(kek, key):
    """Encrypt a 16-byte TDES key under a TDES key, each half as its own ECB block.

    This is how DUKPT turns a key into the next one (the data-encryption variant is
    encrypted under itself). The result is a bytearray: wipe it when done.
    """
    if len(key) != 16:
        raise ValueError("the key to encrypt must be 16 bytes, got %d" % len(key))
    return encrypt_ecb(kek, key)
