"""A test EMV PKI: certification authority keys, issuer and ICC public key certificates,
signed static and dynamic application data, all in the formats of EMV 4.3 Book 2.

Every key is generated deterministically from a fixed label, so the same CA public key
comes out on every machine and can sit in a committed terminal configuration. The
private keys are therefore public: this PKI is for tests and the simulator only, and a
terminal must never hold these CA keys outside test mode.

    CA        RID         index  modulus    exponent   used by
    Visa      A000000003  92     1152 bits  3          sda profile (AID A0000000031010)
    MC        A000000004  FE     1152 bits  3          dda profile (AID A0000000041010)
    issuer    one per BIN        1024 bits  3          certified by the CA of its RID
    ICC       one per PAN+PSN     768 bits  65537      certified by its issuer

The lengths make every certificate carry a remainder (92, 9F48), as real ones do.

Formats (EMV 4.3 Book 2; recovery = RSA public operation, hash = SHA-1):
    issuer PK certificate (90)          6A 02 issuer-id(4) MMYY serial(3) 01 01 NI e-len
                                        key-or-leftmost(NCA-36) hash(20) BC       (Table 6)
    signed static application data (93) 6A 03 01 DAC(2) BB..(NI-26) hash(20) BC    (Table 7)
    ICC PK certificate (9F46)           6A 04 PAN(10) MMYY serial(3) 01 01 NIC e-len
                                        key-or-leftmost(NI-42) hash(20) BC        (Table 14)
    signed dynamic application data     6A 05 01 LDD ICC-dynamic-data BB.. hash(20) BC
    (9F4B)                                                                        (Table 17)

`python -m tools.cards.emv_test_pki [--json]` prints the CA public keys as the terminal's
configuration wants them (TOML [[emv.ca_keys]] tables, or JSON).
"""
import argparse
import functools
import hashlib
import json
import sys

CA_EXPONENT = 3
ISSUER_EXPONENT = 3
ICC_EXPONENT = 65537
CA_BITS = 1152
ISSUER_BITS = 1024
ICC_BITS = 768

# (RID, CA public key index) of each test CA.
VISA_CA = ("A000000003", 0x92)
MASTERCARD_CA = ("A000000004", 0xFE)
TEST_CAS = (VISA_CA, MASTERCARD_CA)
CA_EXPIRY = "20391231"          # of the CA keys, for the terminal's table
CERT_EXPIRY = "1239"            # MMYY of every issuer and ICC certificate: December 2039


class PkiError(ValueError):
    """A certificate or signature that does not recover or does not check."""


# -- deterministic RSA -------------------------------------------------------------

class _Stream:
    """SHA-256 in counter mode over a label: the same bytes from the same label."""

    def __init__(self, label):
        self.seed = hashlib.sha256(b"handpos-emv-test-pki|" + label.encode()).digest()
        self.counter = 0

    def read(self, n):
        out = b""
        while len(out) < n:
            self.counter += 1
            out += hashlib.sha256(self.seed + self.counter.to_bytes(8, "big")).digest()
        return out[:n]


_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


def _probably_prime(n, stream, rounds=40):
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    size = (n.bit_length() + 7) // 8
    for _ in range(rounds):
        a = 2 + int.from_bytes(stream.read(size), "big") % (n - 3)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(stream, bits, e):
    while True:
        c = int.from_bytes(stream.read(bits // 8), "big")
        c |= (3 << (bits - 2)) | 1              # two top bits: p*q has exactly 2*bits bits
        if (c - 1) % e == 0:                    # e must be invertible mod p-1
            continue
        if _probably_prime(c, stream):
            return c


class RsaKey:
    """An RSA key pair with the raw (unpadded) operations EMV uses."""

    def __init__(self, p, q, e):
        self.p, self.q, self.e = p, q, e
        self.n = p * q
        lam = (p - 1) * (q - 1) // _gcd(p - 1, q - 1)
        self.d = pow(e, -1, lam)
        self.size = (self.n.bit_length() + 7) // 8

    @property
    def modulus(self):
        return self.n.to_bytes(self.size, "big")

    @property
    def exponent(self):
        return _exponent_bytes(self.e)

    def sign_raw(self, message):
        """message^d mod n: the signature of a message with recovery (no padding)."""
        m = int.from_bytes(message, "big")
        if len(message) != self.size or m >= self.n:
            raise PkiError("a message to sign is %d bytes and below the modulus" % self.size)
        # CRT: four times faster than pow(m, d, n), which matters for many DDA signatures.
        dp, dq, qinv = self.d % (self.p - 1), self.d % (self.q - 1), pow(self.q, -1, self.p)
        m1, m2 = pow(m, dp, self.p), pow(m, dq, self.q)
        s = m2 + self.q * ((qinv * (m1 - m2)) % self.p)
        return s.to_bytes(self.size, "big")

    def recover(self, signature):
        return recover(signature, self.modulus, self.exponent)

    def private_key(self):
        """The same key as a `cryptography` RSAPrivateKey (which also checks it)."""
        from cryptography.hazmat.primitives.asymmetric import rsa
        numbers = rsa.RSAPrivateNumbers(
            self.p, self.q, self.d, rsa.rsa_crt_dmp1(self.d, self.p),
            rsa.rsa_crt_dmq1(self.d, self.q), rsa.rsa_crt_iqmp(self.p, self.q),
            rsa.RSAPublicNumbers(self.e, self.n))
        return numbers.private_key()

    def public_key(self):
        from cryptography.hazmat.primitives.asymmetric import rsa
        return rsa.RSAPublicNumbers(self.e, self.n).public_key()


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def _exponent_bytes(e):
    return e.to_bytes(max(1, (e.bit_length() + 7) // 8), "big")


@functools.lru_cache(maxsize=None)
def deterministic_key(label, bits, e):
    """The deterministic RSA key of a label."""
    stream = _Stream("%s|%d|%d" % (label, bits, e))
    while True:
        p = _prime(stream, bits // 2, e)
        q = _prime(stream, bits // 2, e)
        if p != q and (p * q).bit_length() == bits:
            return RsaKey(p, q, e)


def ca_key(rid, index):
    return deterministic_key("ca|%s|%02X" % (rid.upper(), index), CA_BITS, CA_EXPONENT)


def issuer_key(issuer_id):
    """The key of the issuer whose identifier (BIN) is issuer_id."""
    return deterministic_key("issuer|%s" % issuer_id, ISSUER_BITS, ISSUER_EXPONENT)


def icc_key(pan, psn="00"):
    return deterministic_key("icc|%s|%s" % (pan, psn), ICC_BITS, ICC_EXPONENT)


# -- Book 2 formats ------------------------------------------------------------------

def recover(signature, modulus, exponent):
    """The recovery function: signature^e mod n, as many bytes as the modulus."""
    n = int.from_bytes(modulus, "big")
    e = int.from_bytes(exponent, "big")
    s = int.from_bytes(signature, "big")
    if len(signature) != len(modulus) or s >= n:
        raise PkiError("the signature is not as long as the key's modulus")
    return pow(s, e, n).to_bytes(len(modulus), "big")


def _split_key(modulus, room):
    """(the field holding the key's leftmost bytes, padded with BB; the remainder)."""
    if len(modulus) <= room:
        return modulus + b"\xBB" * (room - len(modulus)), b""
    return modulus[:room], modulus[room:]


def _issuer_identifier(issuer_id):
    """Leftmost 3-8 PAN digits, padded to 4 bytes with hex F."""
    digits = str(issuer_id)
    if not (3 <= len(digits) <= 8 and digits.isdigit()):
        raise PkiError("an issuer identifier is 3 to 8 digits")
    return bytes.fromhex(digits.ljust(8, "F"))


def _pan_field(pan):
    return bytes.fromhex(str(pan).ljust(20, "F"))


def issuer_certificate(ca, issuer, issuer_id, expiry=CERT_EXPIRY, serial=1):
    """The issuer public key certificate (tag 90) signed by ca, with the remainder (92)
    and exponent (9F32) that go beside it on the card: (cert, remainder, exponent)."""
    body_key, remainder = _split_key(issuer.modulus, ca.size - 36)
    head = (b"\x02" + _issuer_identifier(issuer_id) + bytes.fromhex(expiry) +
            serial.to_bytes(3, "big") + b"\x01\x01" +
            bytes((issuer.size, len(issuer.exponent))) + body_key)
    digest = hashlib.sha1(head + remainder + issuer.exponent).digest()
    return ca.sign_raw(b"\x6A" + head + digest + b"\xBC"), remainder, issuer.exponent


def icc_certificate(issuer, icc, pan, static_data, expiry=CERT_EXPIRY, serial=1):
    """The ICC public key certificate (9F46) signed by the issuer, over the card's static
    data to be authenticated: (cert, remainder 9F48, exponent 9F47)."""
    body_key, remainder = _split_key(icc.modulus, issuer.size - 42)
    head = (b"\x04" + _pan_field(pan) + bytes.fromhex(expiry) + serial.to_bytes(3, "big") +
            b"\x01\x01" + bytes((icc.size, len(icc.exponent))) + body_key)
    digest = hashlib.sha1(head + remainder + icc.exponent + static_data).digest()
    return issuer.sign_raw(b"\x6A" + head + digest + b"\xBC"), remainder, icc.exponent


def signed_static_data(issuer, static_data, dac=b"\xDA\xC0"):
    """Signed static application data (93) for SDA, with data authentication code dac."""
    head = b"\x03\x01" + dac + b"\xBB" * (issuer.size - 26)
    digest = hashlib.sha1(head + static_data).digest()
    return issuer.sign_raw(b"\x6A" + head + digest + b"\xBC")


def signed_dynamic_data(icc, icc_dynamic_number, terminal_dynamic_data):
    """Signed dynamic application data (9F4B) for DDA. terminal_dynamic_data is the
    INTERNAL AUTHENTICATE command data (the DDOL values)."""
    dynamic = bytes((len(icc_dynamic_number),)) + icc_dynamic_number
    if len(dynamic) > icc.size - 25:
        raise PkiError("ICC dynamic data too long for the key")
    head = (b"\x05\x01" + bytes((len(dynamic),)) + dynamic +
            b"\xBB" * (icc.size - len(dynamic) - 25))
    digest = hashlib.sha1(head + terminal_dynamic_data).digest()
    return icc.sign_raw(b"\x6A" + head + digest + b"\xBC")


# -- the terminal's side, for tests and diagnostics -------------------------------------

# where the hash algorithm indicator sits in each format's recovered data
_HASH_AT = {0x02: 11, 0x03: 2, 0x04: 17, 0x05: 2}


def _recover_framed(signature, modulus, exponent, fmt):
    data = recover(signature, modulus, exponent)
    if data[0] != 0x6A or data[-1] != 0xBC or data[1] != fmt:
        raise PkiError("recovered data is not a format %02X EMV signature" % fmt)
    if data[_HASH_AT[fmt]] != 0x01:
        raise PkiError("hash algorithm %02X is not SHA-1" % data[_HASH_AT[fmt]])
    return data


def recover_issuer_key(cert, remainder, exponent, ca_modulus, ca_exponent, pan=None):
    """Check an issuer certificate; returns (modulus, exponent) of the issuer key."""
    data = _recover_framed(cert, ca_modulus, ca_exponent, 0x02)
    if hashlib.sha1(data[1:-21] + remainder + exponent).digest() != data[-21:-1]:
        raise PkiError("issuer certificate hash does not match")
    ni = data[13]
    key = data[15:-21]
    modulus = key[:ni] if ni <= len(key) else key + remainder
    if len(modulus) != ni:
        raise PkiError("issuer key length does not match its remainder")
    if pan is not None:
        ident = data[2:6].hex().upper().rstrip("F")
        if not str(pan).startswith(ident):
            raise PkiError("issuer identifier %s does not match the PAN" % ident)
    return modulus, exponent


def recover_icc_key(cert, remainder, exponent, issuer_modulus, issuer_exponent, static_data,
                    pan=None):
    """Check an ICC certificate; returns (modulus, exponent) of the ICC key."""
    data = _recover_framed(cert, issuer_modulus, issuer_exponent, 0x04)
    if hashlib.sha1(data[1:-21] + remainder + exponent + static_data).digest() != data[-21:-1]:
        raise PkiError("ICC certificate hash does not match")
    if pan is not None and data[2:12].hex().upper().rstrip("F") != str(pan):
        raise PkiError("ICC certificate is for another PAN")
    nic = data[19]
    key = data[21:-21]
    modulus = key[:nic] if nic <= len(key) else key + remainder
    if len(modulus) != nic:
        raise PkiError("ICC key length does not match its remainder")
    return modulus, exponent


def verify_static_data(ssad, issuer_modulus, issuer_exponent, static_data):
    """Check signed static application data; returns the data authentication code."""
    data = _recover_framed(ssad, issuer_modulus, issuer_exponent, 0x03)
    if hashlib.sha1(data[1:-21] + static_data).digest() != data[-21:-1]:
        raise PkiError("signed static application data hash does not match")
    return data[3:5]


def verify_dynamic_data(sdad, icc_modulus, icc_exponent, terminal_dynamic_data):
    """Check signed dynamic application data; returns the ICC dynamic number."""
    data = _recover_framed(sdad, icc_modulus, icc_exponent, 0x05)
    if hashlib.sha1(data[1:-21] + terminal_dynamic_data).digest() != data[-21:-1]:
        raise PkiError("signed dynamic application data hash does not match")
    ldd = data[3]
    return data[5:4 + ldd]


# -- what a card and a terminal are given ---------------------------------------------

def ca_for_rid(rid):
    for ca_rid, index in TEST_CAS:
        if ca_rid == rid.upper():
            return ca_rid, index
    raise PkiError("no test CA for RID %s" % rid)


def card_pki(rid, pan, psn, static_data, dda):
    """The data objects a card of this PAN carries for SDA (dda False) or DDA (True):
    a dict {tag hex: bytes} plus "icc_key" (RsaKey) for DDA."""
    rid, index = ca_for_rid(rid)
    ca = ca_key(rid, index)
    issuer_id = str(pan)[:6]
    issuer = issuer_key(issuer_id)
    cert, remainder, exponent = issuer_certificate(ca, issuer, issuer_id)
    out = {"8F": bytes((index,)), "90": cert, "9F32": exponent}
    if remainder:
        out["92"] = remainder
    if dda:
        icc = icc_key(pan, psn)
        icc_cert, icc_rem, icc_exp = icc_certificate(issuer, icc, pan, static_data)
        out.update({"9F46": icc_cert, "9F47": icc_exp, "icc_key": icc})
        if icc_rem:
            out["9F48"] = icc_rem
    else:
        out["93"] = signed_static_data(issuer, static_data)
    return out


def ca_public_keys():
    """The test CA public keys as a terminal's table wants them: a list of dicts with
    rid, index, modulus and exponent (hex), hash and key algorithm indicators, the key
    check sum (SHA-1 of RID || index || modulus || exponent) and expiry (YYYYMMDD)."""
    out = []
    for rid, index in TEST_CAS:
        key = ca_key(rid, index)
        checksum = hashlib.sha1(bytes.fromhex(rid) + bytes((index,)) + key.modulus +
                                key.exponent).hexdigest().upper()
        out.append({"rid": rid, "index": "%02X" % index, "modulus": key.modulus.hex().upper(),
                    "exponent": key.exponent.hex().upper(), "hash_algorithm": "01",
                    "key_algorithm": "01", "checksum": checksum, "expiry": CA_EXPIRY,
                    "test_only": True})
    return out


def export_toml():
    lines = ["# handpos test EMV CA public keys (tools/cards/emv_test_pki.py). TEST ONLY: their",
             "# private keys are derivable by anyone; never load them outside test mode."]
    for key in ca_public_keys():
        lines.append("")
        lines.append("[[emv.ca_keys]]")
        for name in ("rid", "index", "exponent", "hash_algorithm", "key_algorithm",
                     "checksum", "expiry"):
            lines.append('%s = "%s"' % (name, key[name]))
        lines.append('modulus = "%s"' % key["modulus"])
        lines.append("test_only = true")
    return "\n".join(lines) + "\n"


def export_json():
    return json.dumps({"ca_keys": ca_public_keys()}, indent=2) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.cards.emv_test_pki",
                                     description="Print the test EMV CA public keys.")
    parser.add_argument("--json", action="store_true", help="JSON instead of TOML")
    parser.add_argument("--out", help="write to this file instead of standard output")
    args = parser.parse_args(argv)
    text = export_json() if args.json else export_toml()
    if args.out:
        with open(args.out, "w", encoding="ascii") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
