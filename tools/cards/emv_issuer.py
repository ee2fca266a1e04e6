"""The issuer of the test cards: their master keys, the ARQC check and the ARPC.

Every virtual card of tools/cards/vcard.py was "personalised" by this issuer, and the host
simulator checks the cards' cryptograms with the same functions, so the two can never
drift apart.

Cryptogram version: Visa CVN 10 (cryptogram version number 0x0A in byte 3 of the issuer
application data 9F10), for every test card, Visa and Mastercard alike:

- ICC master key: EMV Book 2 Annex A1.4.1, option A. Triple DES under the issuer master
  key (IMK-AC) of the right-most 16 digits of PAN || PAN sequence number (two digits,
  "00" when the card has none), and of the same block inverted; odd parity.
- Session key: none. CVN 10 uses the ICC master key itself; the application transaction
  counter (9F36) and the terminal's unpredictable number (9F37) are inside the MACed data,
  so no two cryptograms repeat.
- ARQC / TC / AAC: ISO/IEC 9797-1 MAC algorithm 3 (single DES CBC, triple DES on the last
  block), padding method 1 (zeros), 8 bytes, over
  9F02 || 9F03 || 9F1A || 95 || 5F2A || 9A || 9C || 9F37 || 82 || 9F36 || CVR,
  where the CVR is bytes 4-7 of 9F10 (its length byte 03 included).
- ARPC: method 1 of EMV Book 2 section 8.2.1: triple DES (CBC, zero IV, one block) under
  the ICC master key of ARQC XOR (ARC || six zero bytes); 8 bytes. The issuer
  authentication data (tag 91) is ARPC || ARC, 10 bytes.
- Issuer application data 9F10: 06 || DKI 01 || CVN 0A || CVR (03 + 3 bytes), 7 bytes.

pyemv does the DES work (pyemv.kd, pyemv.ac); this module only chooses what goes in.

The test issuers and their master keys (well-known test values, never production keys):

    PAN prefix  issuer                   IMK-AC
    4           Visa test issuer         0123456789ABCDEFFEDCBA9876543210
    5           Mastercard test issuer   404142434445464748494A4B4C4D4E4F

(IMK-SMI and IMK-SMC, for issuer scripts, are listed in ISSUERS; the test cards do not
run scripts.) tools/cards/vcard.py `issuer_keys()` maps each card profile to its PAN, PSN
and keys.
"""
import binascii

from pyemv import ac as _ac
from pyemv import kd as _kd
from pyemv import tlv as _tlv

CVN = 0x0A                  # Visa cryptogram version number 10
DKI = 0x01                  # derivation key index in 9F10

# The data objects the CVN 10 cryptogram covers, in order (the CVR follows them).
AC_TAGS = ("9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "9F37", "82", "9F36")
AC_LENGTHS = {"9F02": 6, "9F03": 6, "9F1A": 2, "95": 5, "5F2A": 2, "9A": 3, "9C": 1,
              "9F37": 4, "82": 2, "9F36": 2}

# Authorisation response codes (8A) that approve, as the card and the host read them.
APPROVING_ARCS = (b"00", b"10", b"11")

ISSUERS = (
    {"name": "Visa test issuer", "prefix": "4",
     "imk_ac": bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"),
     "imk_smi": bytes.fromhex("89ABCDEF0123456776543210FEDCBA98"),
     "imk_smc": bytes.fromhex("FEDCBA98765432100123456789ABCDEF")},
    {"name": "Mastercard test issuer", "prefix": "5",
     "imk_ac": bytes.fromhex("404142434445464748494A4B4C4D4E4F"),
     "imk_smi": bytes.fromhex("505152535455565758595A5B5C5D5E5F"),
     "imk_smc": bytes.fromhex("606162636465666768696A6B6C6D6E6F")},
)


class De55Error(ValueError):
    """DE55 lacks a data object the check needs, or carries one in the wrong shape.
    A host answers this with a format error (DE39 30), not with a decline."""


# -- keys ---------------------------------------------------------------------

def keys_for_pan(pan):
    """The test issuer's keys for a PAN (a dict: name, prefix, imk_ac, imk_smi, imk_smc,
    cvn), or None when no test issuer owns it."""
    pan = _digits(pan)
    best = None
    for issuer in ISSUERS:
        if pan.startswith(issuer["prefix"]) and (best is None or
                                                len(issuer["prefix"]) > len(best["prefix"])):
            best = issuer
    if best is None:
        return None
    found = dict(best)
    found["cvn"] = CVN
    return found


def derive_icc_mk(imk, pan, psn=None):
    """The ICC master key (EMV option A) of a card from an issuer master key."""
    return _kd.derive_icc_mk_a(_key(imk), _digits(pan), _psn(psn))


# -- the cryptogram, as card and host compute it --------------------------------

def build_iad(cvr):
    """Issuer application data 9F10 for CVN 10 around a 4-byte CVR (03 xx xx xx)."""
    if len(cvr) != 4 or cvr[0] != 0x03:
        raise ValueError("the CVR is 4 bytes starting with its length 03")
    return bytes((0x06, DKI, CVN)) + bytes(cvr)


def ac_input(tags):
    """The bytes CVN 10 MACs, from a dict of the data objects (see AC_TAGS) and 9F10."""
    tags = normalise_tags(tags)
    out = b""
    for tag in AC_TAGS:
        value = tags.get(tag)
        if value is None:
            raise De55Error("the cryptogram data lacks tag %s" % tag)
        if len(value) != AC_LENGTHS[tag]:
            raise De55Error("tag %s is %d bytes, not %d" % (tag, len(value), AC_LENGTHS[tag]))
        out += value
    return out + cvr_of(tags)


def cvr_of(tags):
    """The CVR inside 9F10, after checking that 9F10 is a CVN 10 IAD."""
    iad = tags.get("9F10")
    if iad is None:
        raise De55Error("the cryptogram data lacks tag 9F10 (issuer application data)")
    if len(iad) < 7 or iad[0] < 6 or iad[3] != 0x03:
        raise De55Error("9F10 is not a Visa-format issuer application data")
    if iad[2] != CVN:
        raise De55Error("cryptogram version %02X is not supported (only CVN 10)" % iad[2])
    return bytes(iad[3:7])


def compute_ac(icc_mk_ac, tags):
    """The 8-byte application cryptogram (ARQC, TC or AAC: the same computation)."""
    return _ac.generate_ac(_key(icc_mk_ac), ac_input(tags), _ac.PaddingType.VISA, 8)


def compute_arpc(icc_mk_ac, arqc, arc):
    """ARPC method 1 under the ICC master key."""
    return _ac.generate_arpc_1(_key(icc_mk_ac), bytes(arqc), _arc(arc))


def check_issuer_authentication(icc_mk_ac, arqc, issuer_auth_data):
    """What the card does with 91 (or EXTERNAL AUTHENTICATE data): True when the first
    8 bytes are the ARPC of arqc and the last 2 (the ARC)."""
    data = bytes(issuer_auth_data)
    if len(data) != 10:
        return False
    return compute_arpc(icc_mk_ac, arqc, data[8:]) == data[:8]


# -- the host's side ----------------------------------------------------------

def verify_arqc(de55_tags, imk_ac=None, pan=None, psn=None):
    """True when 9F26 in DE55 is the card's cryptogram over DE55's own data.

    de55_tags: a dict {tag hex: value bytes or hex} or the raw DE55 bytes. imk_ac: the
    issuer master key (bytes or hex); None takes the test issuer's key for the PAN.
    pan / psn: DE2 and DE23 (or 5A / 5F34 in DE55 when not given). Raises De55Error
    when DE55 cannot be checked at all (a tag missing, an unknown CVN)."""
    tags = normalise_tags(de55_tags)
    pan, psn = _card_identity(tags, pan, psn)
    imk = _imk_for(imk_ac, pan)
    arqc = tags.get("9F26")
    if arqc is None or len(arqc) != 8:
        raise De55Error("DE55 lacks the cryptogram 9F26")
    return compute_ac(derive_icc_mk(imk, pan, psn), tags) == arqc


def make_arpc(arqc, arc, imk_ac=None, pan=None, psn=None, icc_mk_ac=None):
    """ARPC method 1 (8 bytes) for an ARQC and the authorisation response code.

    arc: the ARC as 2 bytes or as the two characters of DE39 ("00", "05", ...). Give the
    ICC master key, or the issuer master key (None: the test issuer's) and the PAN."""
    if icc_mk_ac is None:
        if pan is None:
            raise ValueError("make_arpc needs the PAN (or the ICC master key)")
        icc_mk_ac = derive_icc_mk(_imk_for(imk_ac, pan), pan, psn)
    return compute_arpc(icc_mk_ac, arqc, arc)


def issuer_authentication_data(arqc, arc, imk_ac=None, pan=None, psn=None, icc_mk_ac=None):
    """The value of tag 91 for the response's DE55: ARPC || ARC (10 bytes)."""
    return make_arpc(arqc, arc, imk_ac, pan, psn, icc_mk_ac) + _arc(arc)


def response_de55(arqc, arc, imk_ac=None, pan=None, psn=None):
    """DE55 of an 0110/0210: tag 91 with the issuer authentication data, TLV-encoded."""
    iad = issuer_authentication_data(arqc, arc, imk_ac, pan, psn)
    return bytes((0x91, len(iad))) + iad


def parse_de55(raw):
    """DE55 bytes to {tag hex: bytes} (constructed templates flattened)."""
    try:
        return _tlv.decode(bytes(raw), flatten=True)
    except _tlv.DecodeError as exc:
        raise De55Error("DE55 is not valid BER-TLV: %s" % exc)


def normalise_tags(tags):
    """{TAG (upper-case hex): bytes} from a dict with hex or bytes values, or raw TLV."""
    if isinstance(tags, (bytes, bytearray, memoryview)):
        return parse_de55(tags)
    out = {}
    for tag, value in tags.items():
        if isinstance(tag, int):
            tag = "%X" % tag
        if isinstance(value, str):
            try:
                value = bytes.fromhex(value)
            except ValueError:
                raise De55Error("tag %s is not hex: %r" % (tag, value))
        out[str(tag).upper()] = bytes(value)
    return out


# -- small helpers --------------------------------------------------------------

def _card_identity(tags, pan, psn):
    if pan is None:
        if "5A" not in tags:
            raise De55Error("no PAN: give DE2 or include 5A in DE55")
        pan = binascii.hexlify(tags["5A"]).decode().upper().rstrip("F")
    if psn is None and "5F34" in tags:
        psn = tags["5F34"]
    return _digits(pan), _psn(psn)


def _imk_for(imk_ac, pan):
    if imk_ac is not None:
        return _key(imk_ac)
    keys = keys_for_pan(pan)
    if keys is None:
        raise De55Error("no test issuer for PAN %s...%s" % (pan[:6], pan[-4:]))
    return keys["imk_ac"]


def _key(key):
    key = bytes.fromhex(key) if isinstance(key, str) else bytes(key)
    if len(key) != 16:
        raise ValueError("a double-length DES key is 16 bytes, not %d" % len(key))
    return key


def _digits(pan):
    if isinstance(pan, (bytes, bytearray)):
        pan = pan.decode("ascii")
    pan = str(pan).strip()
    if not pan.isdigit():
        raise ValueError("a PAN is digits only")
    return pan


def _psn(psn):
    """The PAN sequence number as the two digits option A wants: "01" from 1, "001",
    b"\\x01" (5F34) or "01"; "00" when absent."""
    if psn is None or psn == b"" or psn == "":
        return "00"
    if isinstance(psn, (bytes, bytearray)):
        return "%02X" % psn[-1]                 # 5F34 is one BCD byte
    if isinstance(psn, int):
        return "%02d" % psn
    psn = str(psn).strip()
    if not psn.isdigit():
        raise ValueError("a PAN sequence number is digits")
    return psn[-2:].zfill(2)


def _arc(arc):
    if isinstance(arc, str):
        arc = arc.encode("ascii")
    arc = bytes(arc)
    if len(arc) != 2:
        raise ValueError("an authorisation response code is 2 bytes")
    return arc
