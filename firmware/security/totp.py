"""One-time passwords for a second factor: HOTP (RFC 4226), TOTP (RFC 6238), the
base32 of their secrets (RFC 4648) and the otpauth:// key URI that phone authenticator
apps scan, plus recovery codes a person types on a numeric keypad.

Authenticator apps use HMAC-SHA1, 6 digits, 30 s steps; SHA-256 and SHA-512 are here
for RFC 6238's test vectors. MicroPython's hashlib has only sha256, so SHA-1 and
SHA-512 are written out below (tests/portable/test_totp.py checks them against
hashlib on CPython and against the RFCs' vectors under both Pythons).
"""
import hashlib
import struct

DIGITS = 6
STEP_S = 30
SECRET_BYTES = 20           # 160 bits: RFC 4226's recommendation, a SHA-1 output's size
WINDOW = 1                  # steps accepted either side of now (a phone's clock drifts)
RECOVERY_COUNT = 8
RECOVERY_DIGITS = 10

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


# -- SHA-1 (FIPS 180-4), for MicroPython ----------------------------------------------
def _rol32(x, n):
    return ((x << n) | (x >> (32 - n))) & _M32


def _pad(msg, block, length_bytes):
    n = len(msg)
    tail = b"\x80" + b"\x00" * ((block - 1 - length_bytes - n) % block)
    bits = n * 8
    size = b"".join(bytes([(bits >> (8 * i)) & 0xFF]) for i in range(length_bytes - 1, -1, -1))
    return msg + tail + size


def sha1_portable(msg):
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    data = _pad(bytes(msg), 64, 8)
    for off in range(0, len(data), 64):
        w = list(struct.unpack(">16I", data[off:off + 64]))
        for i in range(16, 80):
            w.append(_rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1))
        a, b, c, d, e = h
        for i in range(80):
            if i < 20:
                f, k = (b & c) | (~b & d), 0x5A827999
            elif i < 40:
                f, k = b ^ c ^ d, 0x6ED9EBA1
            elif i < 60:
                f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
            else:
                f, k = b ^ c ^ d, 0xCA62C1D6
            t = (_rol32(a, 5) + (f & _M32) + e + k + w[i]) & _M32
            a, b, c, d, e = t, a, _rol32(b, 30), c, d
        h = [(x + y) & _M32 for x, y in zip(h, (a, b, c, d, e))]
    return struct.pack(">5I", *h)


# -- SHA-512 (FIPS 180-4), for MicroPython: only RFC 6238's vectors need it -----------
_K512 = None


def _k512():
    # the first 64 bits of the fractional parts of the cube roots of the first 80
    # primes, worked out once rather than typed in: integer cube roots, no floats
    global _K512
    if _K512 is None:
        primes = []
        n = 2
        while len(primes) < 80:
            if all(n % p for p in primes if p * p <= n):
                primes.append(n)
            n += 1
        out = []
        for p in primes:
            out.append(_icbrt(p << 192) & _M64)
        _K512 = out
    return _K512


def _bits(n):
    # int.bit_length(), which MicroPython's int lacks
    count = 0
    while n:
        n >>= 1
        count += 1
    return count


def _isqrt(n):
    x = 1 << ((_bits(n) + 1) // 2)
    while True:
        y = (x + n // x) // 2
        if y >= x:
            return x
        x = y


def _icbrt(n):
    x = 1 << ((_bits(n) + 2) // 3)
    while True:
        y = (2 * x + n // (x * x)) // 3
        if y >= x:
            break
        x = y
    while x * x * x > n:
        x -= 1
    while (x + 1) * (x + 1) * (x + 1) <= n:
        x += 1
    return x


def _ror64(x, n):
    return ((x >> n) | (x << (64 - n))) & _M64


def _h512():
    # the first 64 bits of the fractional parts of the square roots of the first 8 primes
    return [_isqrt(p << 128) & _M64 for p in (2, 3, 5, 7, 11, 13, 17, 19)]


def sha512_portable(msg):
    k = _k512()
    h = _h512()
    data = _pad(bytes(msg), 128, 16)
    for off in range(0, len(data), 128):
        w = [int.from_bytes(data[off + 8 * i:off + 8 * i + 8], "big") for i in range(16)]
        for i in range(16, 80):
            x, y = w[i - 15], w[i - 2]
            s0 = _ror64(x, 1) ^ _ror64(x, 8) ^ (x >> 7)
            s1 = _ror64(y, 19) ^ _ror64(y, 61) ^ (y >> 6)
            w.append((w[i - 16] + s0 + w[i - 7] + s1) & _M64)
        a, b, c, d, e, f, g, hh = h
        for i in range(80):
            s1 = _ror64(e, 14) ^ _ror64(e, 18) ^ _ror64(e, 41)
            ch = (e & f) ^ (~e & _M64 & g)
            t1 = (hh + s1 + ch + k[i] + w[i]) & _M64
            s0 = _ror64(a, 28) ^ _ror64(a, 34) ^ _ror64(a, 39)
            maj = (a & b) ^ (a & c) ^ (b & c)
            t2 = (s0 + maj) & _M64
            a, b, c, d, e, f, g, hh = (t1 + t2) & _M64, a, b, c, (d + t1) & _M64, e, f, g
        h = [(x + y) & _M64 for x, y in zip(h, (a, b, c, d, e, f, g, hh))]
    return b"".join(x.to_bytes(8, "big") for x in h)


def _sha256(msg):
    return hashlib.sha256(msg).digest()


def _native(name):
    ctor = getattr(hashlib, name, None)
    if ctor is None:
        return None
    return lambda msg: ctor(msg).digest()


# name -> (digest function, block size)
HASHES = {
    "SHA1": (_native("sha1") or sha1_portable, 64),
    "SHA256": (_sha256, 64),
    "SHA512": (_native("sha512") or sha512_portable, 128),
}


def hmac(algorithm, key, msg):
    """HMAC (RFC 2104) with one of HASHES."""
    digest, block = HASHES[algorithm]
    key = bytes(key)
    if len(key) > block:
        key = digest(key)
    key = key + b"\x00" * (block - len(key))
    inner = digest(bytes(b ^ 0x36 for b in key) + bytes(msg))
    return digest(bytes(b ^ 0x5C for b in key) + inner)


# -- HOTP and TOTP ---------------------------------------------------------------------
def hotp(key, counter, digits=DIGITS, algorithm="SHA1"):
    """The HOTP value of counter (RFC 4226 section 5.3, dynamic truncation) as a string
    of digits, leading zeros kept."""
    mac = hmac(algorithm, key, struct.pack(">Q", counter & _M64))
    off = mac[-1] & 0x0F
    code = ((mac[off] & 0x7F) << 24) | (mac[off + 1] << 16) | (mac[off + 2] << 8) | mac[off + 3]
    text = str(code % (10 ** digits))
    return "0" * (digits - len(text)) + text


def time_step(unix_s, step=STEP_S, t0=0):
    """RFC 6238's T: whole steps since T0."""
    return (int(unix_s) - t0) // step


def totp(key, unix_s, digits=DIGITS, step=STEP_S, algorithm="SHA1"):
    return hotp(key, time_step(unix_s, step), digits, algorithm)


def equal(a, b):
    """Compare two codes in time that does not depend on where they differ."""
    if len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= ord(x) ^ ord(y)
    return diff == 0


def match(key, code, unix_s, last_step=None, window=WINDOW, step=STEP_S):
    """The time step code belongs to within window steps of now, or None. A step not
    after last_step (the last one accepted for this key) never matches: a code used
    once, or an older one, is refused (RFC 6238 section 5.2)."""
    if len(code) != DIGITS or not code.isdigit():
        return None
    now = time_step(unix_s, step)
    found = None
    for t in range(now - window, now + window + 1):
        # every candidate is computed, so the time taken says nothing about which matched
        if equal(hotp(key, t), code) and found is None:
            found = t
    if found is None or (last_step is not None and found <= last_step):
        return None
    return found


# -- base32 (RFC 4648 section 6), without padding as key URIs carry it -----------------
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def b32encode(data):
    out = []
    bits = 0
    value = 0
    for byte in bytes(data):
        value = (value << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append(B32[(value >> bits) & 31])
    if bits:
        out.append(B32[(value << (5 - bits)) & 31])
    return "".join(out)


def b32decode(text):
    """Bytes of a base32 text; case, spaces, dashes and '=' padding ignored (as people
    and apps write keys). ValueError for any other character."""
    value = 0
    bits = 0
    out = bytearray()
    for ch in text.upper():
        if ch in " -=":
            continue
        i = B32.find(ch)
        if i < 0:
            raise ValueError("not base32: %r" % ch)
        value = ((value << 5) | i) & 0xFFFF
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((value >> bits) & 0xFF)
    return bytes(out)


def grouped(text, size=4):
    """ABCD EFGH ...: a key as a person copies it by hand."""
    return " ".join(text[i:i + size] for i in range(0, len(text), size))


# -- the key URI (Google Authenticator's Key URI Format) -------------------------------
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


def pct(text):
    """Percent-encoding (RFC 3986) of text's UTF-8 bytes, unreserved characters kept."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        out.append(ch if ch in _UNRESERVED else "%%%02X" % byte)
    return "".join(out)


def key_uri(secret, issuer, account, with_issuer_param=False):
    """otpauth://totp/ISSUER:ACCOUNT?secret=BASE32 for secret (bytes).

    The shortest form the apps accept: SHA1, 6 digits and 30 s are their defaults,
    so algorithm, digits and period are left out; the issuer is the label's prefix,
    which every app shows; the issuer= parameter (recommended by the format for apps
    that ignore the prefix) makes the QR code one version bigger, so it is optional."""
    uri = "otpauth://totp/%s:%s?secret=%s" % (pct(issuer), pct(account), b32encode(secret))
    if with_issuer_param:
        uri += "&issuer=" + pct(issuer)
    return uri


# -- recovery codes --------------------------------------------------------------------
def random_digits(random_bytes, n):
    """n decimal digits, each uniform (bytes of 250 or more are drawn again)."""
    out = []
    while len(out) < n:
        for byte in random_bytes(n):
            if byte < 250 and len(out) < n:
                out.append(str(byte % 10))
    return "".join(out)


def recovery_codes(random_bytes, count=RECOVERY_COUNT, digits=RECOVERY_DIGITS):
    codes = []
    while len(codes) < count:
        code = random_digits(random_bytes, digits)
        if code not in codes:
            codes.append(code)
    return codes


def recovery_hash(salt, code):
    """What is kept of a recovery code: HMAC-SHA256 under the operator's salt."""
    return hmac("SHA256", salt, code.encode())


def show_recovery(code):
    """12345 67890: how a recovery code is printed (typed without the space)."""
    return code[:5] + " " + code[5:]
