"""The acquirer host profile: ISO 8583:1987 as this terminal speaks it, on pyiso8583.

Wire format (docs/host-protocol.md has the integrator's version):

- MTI: 4 ASCII digits, version digit 0 (ISO 8583:1987).
- Bitmaps: primary and secondary, 8 binary bytes each; bit 1 of the primary says a
  secondary follows. Bit 65 (tertiary bitmap) is not used and is refused.
- Numeric and character fields: ASCII. Variable fields carry an ASCII length of 2
  (LLVAR) or 3 (LLLVAR) digits counting characters, or bytes for binary fields.
- Binary fields: DE52 (PIN block, 8 bytes), DE55 (ICC data, LLLVAR up to 255 bytes),
  DE61 (AES PIN block, LLLVAR of 16 bytes), DE64/DE128 (MAC, 8 bytes), DE96. In the
  message dict they are upper-case hex strings; encode() also takes bytes.
- DE53 departs from the 1987 n16: it is an LLVAR of hex digits holding the DUKPT key
  serial number (20 hex digits for TDES DUKPT, 24 for AES DUKPT).
- DE61, private in 1987, carries the 16-byte ISO 9564-1 format 4 PIN block of AES DUKPT
  (X9.24-3), which DE52's 8 bytes cannot hold. It keeps the LLLVAR shape of 1987's
  private fields, so a host's generic 1987 decoder still finds the fields after it.

A message is a dict: "t" the MTI, and the data elements keyed by their number as a
string ("2", "11", "90"), values as str (hex str for binary fields). Bitmaps are
computed by encode() and are not part of the dict decode() returns.

encode() and decode() raise HostMessageError, and only that, for anything malformed:
the reason says which field and what is wrong, never the field's value (it may be a
PAN or track data).
"""
import binascii

import iso8583

MAX_MESSAGE = 8192      # bytes, without the 2-byte length prefix (the framing's limit)

# Character classes of the standard, as this profile checks them. "an" also admits a
# space: hosts pad DE38 and friends with spaces and a refusal there helps nobody.
_DIGITS = frozenset("0123456789")
_ALPHA = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HEX = frozenset("0123456789ABCDEFabcdef")
_PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F))
CLASSES = {
    "n": _DIGITS,
    "a": _ALPHA | frozenset(" "),
    "an": _DIGITS | _ALPHA | frozenset(" "),
    "ans": _PRINTABLE,
    "ns": _PRINTABLE - _ALPHA,
    "z": _DIGITS | frozenset("=D"),          # track 2: digits and the field separator
    "hex": _HEX,
}

FIXED, LLVAR, LLLVAR = 0, 2, 3

# ISO 8583:1987 data elements: number -> (class, length kind, max length, name).
# "xn" is a sign (C credit / D debit) followed by digits; "b" is binary (bytes).
# Every element is here so that any well-formed 1987 message decodes; the ones this
# profile uses are in PROFILE_FIELDS.
ELEMENTS = {
    2: ("n", LLVAR, 19, "primary account number"),
    3: ("n", FIXED, 6, "processing code"),
    4: ("n", FIXED, 12, "amount, transaction"),
    5: ("n", FIXED, 12, "amount, settlement"),
    6: ("n", FIXED, 12, "amount, cardholder billing"),
    7: ("n", FIXED, 10, "transmission date and time (MMDDhhmmss, UTC)"),
    8: ("n", FIXED, 8, "amount, cardholder billing fee"),
    9: ("n", FIXED, 8, "conversion rate, settlement"),
    10: ("n", FIXED, 8, "conversion rate, cardholder billing"),
    11: ("n", FIXED, 6, "systems trace audit number (STAN)"),
    12: ("n", FIXED, 6, "time, local transaction (hhmmss)"),
    13: ("n", FIXED, 4, "date, local transaction (MMDD)"),
    14: ("n", FIXED, 4, "date, expiration (YYMM)"),
    15: ("n", FIXED, 4, "date, settlement"),
    16: ("n", FIXED, 4, "date, conversion"),
    17: ("n", FIXED, 4, "date, capture"),
    18: ("n", FIXED, 4, "merchant type"),
    19: ("n", FIXED, 3, "acquiring institution country code"),
    20: ("n", FIXED, 3, "PAN extended, country code"),
    21: ("n", FIXED, 3, "forwarding institution country code"),
    22: ("n", FIXED, 3, "point of service entry mode"),
    23: ("n", FIXED, 3, "card sequence number"),
    24: ("n", FIXED, 3, "network international identifier (NII)"),
    25: ("n", FIXED, 2, "point of service condition code"),
    26: ("n", FIXED, 2, "point of service PIN capture code"),
    27: ("n", FIXED, 1, "authorization identification response length"),
    28: ("xn", FIXED, 9, "amount, transaction fee"),
    29: ("xn", FIXED, 9, "amount, settlement fee"),
    30: ("xn", FIXED, 9, "amount, transaction processing fee"),
    31: ("xn", FIXED, 9, "amount, settlement processing fee"),
    32: ("n", LLVAR, 11, "acquiring institution identification code"),
    33: ("n", LLVAR, 11, "forwarding institution identification code"),
    34: ("ns", LLVAR, 28, "primary account number, extended"),
    35: ("z", LLVAR, 37, "track 2 data"),
    36: ("n", LLLVAR, 104, "track 3 data"),
    37: ("an", FIXED, 12, "retrieval reference number (RRN)"),
    38: ("an", FIXED, 6, "authorization identification response"),
    39: ("an", FIXED, 2, "response code"),
    40: ("an", FIXED, 3, "service restriction code"),
    41: ("ans", FIXED, 8, "card acceptor terminal identification (TID)"),
    42: ("ans", FIXED, 15, "card acceptor identification code (MID)"),
    43: ("ans", FIXED, 40, "card acceptor name/location"),
    44: ("ans", LLVAR, 25, "additional response data"),
    45: ("ans", LLVAR, 76, "track 1 data"),
    46: ("ans", LLLVAR, 999, "additional data, ISO"),
    47: ("ans", LLLVAR, 999, "additional data, national"),
    48: ("ans", LLLVAR, 999, "additional data, private"),
    49: ("n", FIXED, 3, "currency code, transaction (ISO 4217 numeric)"),
    50: ("an", FIXED, 3, "currency code, settlement"),
    51: ("an", FIXED, 3, "currency code, cardholder billing"),
    52: ("b", FIXED, 8, "PIN data (encrypted ISO 9564 PIN block)"),
    53: ("hex", LLVAR, 48, "security related control information (DUKPT KSN, hex)"),
    54: ("ans", LLLVAR, 120, "additional amounts"),
    55: ("b", LLLVAR, 255, "ICC system related data (EMV TLV)"),
    56: ("ans", LLLVAR, 999, "reserved ISO"),
    57: ("ans", LLLVAR, 999, "reserved national"),
    58: ("ans", LLLVAR, 999, "reserved national"),
    59: ("ans", LLLVAR, 999, "reserved national"),
    60: ("ans", LLLVAR, 999, "private: batch number / original message data"),
    61: ("b", LLLVAR, 16, "private: AES PIN block (ISO 9564-1 format 4, enciphered)"),
    62: ("ans", LLLVAR, 999, "private: invoice (receipt) number"),
    63: ("ans", LLLVAR, 999, "private: settlement totals"),
    64: ("b", FIXED, 8, "message authentication code (MAC)"),
    66: ("n", FIXED, 1, "settlement code"),
    67: ("n", FIXED, 2, "extended payment code"),
    68: ("n", FIXED, 3, "receiving institution country code"),
    69: ("n", FIXED, 3, "settlement institution country code"),
    70: ("n", FIXED, 3, "network management information code"),
    71: ("n", FIXED, 4, "message number"),
    72: ("n", FIXED, 4, "message number, last"),
    73: ("n", FIXED, 6, "date, action (YYMMDD)"),
    74: ("n", FIXED, 10, "credits, number"),
    75: ("n", FIXED, 10, "credits, reversal number"),
    76: ("n", FIXED, 10, "debits, number"),
    77: ("n", FIXED, 10, "debits, reversal number"),
    78: ("n", FIXED, 10, "transfer, number"),
    79: ("n", FIXED, 10, "transfer, reversal number"),
    80: ("n", FIXED, 10, "inquiries, number"),
    81: ("n", FIXED, 10, "authorizations, number"),
    82: ("n", FIXED, 12, "credits, processing fee amount"),
    83: ("n", FIXED, 12, "credits, transaction fee amount"),
    84: ("n", FIXED, 12, "debits, processing fee amount"),
    85: ("n", FIXED, 12, "debits, transaction fee amount"),
    86: ("n", FIXED, 16, "credits, amount"),
    87: ("n", FIXED, 16, "credits, reversal amount"),
    88: ("n", FIXED, 16, "debits, amount"),
    89: ("n", FIXED, 16, "debits, reversal amount"),
    90: ("n", FIXED, 42, "original data elements"),
    91: ("an", FIXED, 1, "file update code"),
    92: ("an", FIXED, 2, "file security code"),
    93: ("an", FIXED, 5, "response indicator"),
    94: ("an", FIXED, 7, "service indicator"),
    95: ("an", FIXED, 42, "replacement amounts"),
    96: ("b", FIXED, 8, "message security code"),
    97: ("xn", FIXED, 17, "amount, net settlement"),
    98: ("ans", FIXED, 25, "payee"),
    99: ("n", LLVAR, 11, "settlement institution identification code"),
    100: ("n", LLVAR, 11, "receiving institution identification code"),
    101: ("ans", LLVAR, 17, "file name"),
    102: ("ans", LLVAR, 28, "account identification 1"),
    103: ("ans", LLVAR, 28, "account identification 2"),
    104: ("ans", LLLVAR, 100, "transaction description"),
    128: ("b", FIXED, 8, "message authentication code (MAC)"),
}
for _n in range(105, 128):
    ELEMENTS[_n] = ("ans", LLLVAR, 999, "reserved")

# The elements this profile sends or reads (docs/host-protocol.md says where and how).
PROFILE_FIELDS = (2, 3, 4, 7, 11, 12, 13, 14, 22, 23, 24, 25, 35, 37, 38, 39, 41, 42,
                  49, 52, 53, 55, 60, 61, 62, 63, 64, 70, 90)

# Message types of the profile. A request's repeat sets the last digit to 1.
REQUESTS = ("0100", "0200", "0220", "0320", "0400", "0420", "0500", "0800")
REPEATS = tuple(m[:3] + "1" for m in REQUESTS)
RESPONSES = ("0110", "0210", "0230", "0330", "0410", "0430", "0510", "0810")
MTIS = frozenset(REQUESTS + REPEATS + RESPONSES)

# What a message of each class must carry for this profile, beyond the MTI.
_REQUIRED = {
    "01": ("3", "4", "11", "41"),
    "02": ("3", "4", "11", "41"),
    "03": ("3", "4", "11", "41", "60"),
    "04": ("3", "4", "11", "41"),
    "05": ("3", "11", "41", "60", "63"),
    "08": ("11", "70"),
}
_REQUIRED_RESPONSE = ("11", "39")


class HostMessageError(ValueError):
    """A message that cannot be encoded or decoded under this profile.

    reason says what is wrong in words; field is the element ("t" for the MTI, "p"
    for the bitmap, a number as str, or None for the message as a whole).
    """

    def __init__(self, reason, field=None):
        ValueError.__init__(self, reason)
        self.reason = reason
        self.field = field


def _pyiso_field(cls, kind, max_len, name):
    if cls == "b":
        # Binary data, ASCII length prefix counting bytes.
        return {"data_enc": "b", "len_enc": "ascii", "len_type": kind, "max_len": max_len,
                "desc": name}
    return {"data_enc": "ascii", "len_enc": "ascii", "len_type": kind, "max_len": max_len,
            "desc": name}


def _build_spec():
    spec = {
        "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0,
              "desc": "no header"},
        "t": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 4,
              "desc": "message type indicator"},
        "p": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8,
              "desc": "primary bitmap"},
        "1": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8,
              "desc": "secondary bitmap"},
    }
    for number, (cls, kind, max_len, name) in ELEMENTS.items():
        spec[str(number)] = _pyiso_field(cls, kind, max_len, name)
    return spec


SPEC = _build_spec()


def field_name(number):
    entry = ELEMENTS.get(int(number))
    return entry[3] if entry else "unknown"


def response_mti(mti):
    """The response type a request expects: 0200 -> 0210, 0401 -> 0410."""
    if len(mti) != 4 or not mti.isdigit() or mti[2] not in "02468" or mti not in MTIS:
        raise HostMessageError("message type %s is not a request of this profile" % (mti,), "t")
    return mti[:2] + str(int(mti[2]) + 1) + "0"


def is_response(mti):
    return mti in RESPONSES


def is_repeat(mti):
    return mti in REPEATS


# -- checking ------------------------------------------------------------------

def _de(field):
    return "DE%s (%s)" % (field, field_name(field))


def _where(field):
    if field == "t":
        return "message type"
    if field == "p":
        return "primary bitmap"
    if field == "1":
        return "secondary bitmap"
    if field and str(field).isdigit():
        return _de(field)
    return "message"


def _check_value(field, value):
    cls, kind, max_len, _ = ELEMENTS[int(field)]
    if cls == "b":
        if len(value) % 2 or not set(value) <= _HEX:
            raise HostMessageError("%s: binary field must be bytes or hex" % _de(field), field)
        length = len(value) // 2
    else:
        length = len(value)
        if cls == "xn":
            if length < 2 or value[0] not in "CD" or not set(value[1:]) <= _DIGITS:
                raise HostMessageError("%s: expected C or D and digits" % _de(field), field)
        elif not set(value) <= CLASSES[cls]:
            raise HostMessageError("%s: characters outside class %s" % (_de(field), cls), field)
    if kind == FIXED and length != max_len:
        raise HostMessageError("%s: %d %s, expected exactly %d"
                               % (_de(field), length, "bytes" if cls == "b" else "characters",
                                  max_len), field)
    if length > max_len:
        raise HostMessageError("%s: %d long, at most %d allowed" % (_de(field), length, max_len),
                               field)


def _check_message(msg):
    mti = msg.get("t")
    if not isinstance(mti, str) or len(mti) != 4 or not mti.isdigit():
        raise HostMessageError("message type must be 4 digits", "t")
    if mti[0] != "0":
        raise HostMessageError("message type %s is not ISO 8583:1987 (version 0)" % mti, "t")
    if mti not in MTIS:
        raise HostMessageError("message type %s is not part of this profile" % mti, "t")
    if mti in RESPONSES:
        required = _REQUIRED_RESPONSE
    else:
        required = _REQUIRED.get(mti[:2], ("11",))
    for field in required:
        if field not in msg:
            raise HostMessageError("%s without %s" % (mti, _de(field)), field)
    for field, value in msg.items():
        if field != "t":
            _check_value(field, value)


# -- the codec --------------------------------------------------------------------

def _normalise(msg):
    if not isinstance(msg, dict):
        raise HostMessageError("a message is a dict, not %s" % type(msg).__name__)
    out = {}
    for key, value in msg.items():
        if key in ("p", "1", "h"):
            continue            # bitmaps are computed; the profile has no header
        if key == "t":
            out["t"] = value
            continue
        try:
            number = int(key)
        except (TypeError, ValueError):
            raise HostMessageError("unknown key %r: use 't' and field numbers" % (key,))
        if number not in ELEMENTS:
            raise HostMessageError("DE%s is not an element of ISO 8583:1987 in this profile"
                                   % number, str(number))
        if ELEMENTS[number][0] == "b" and isinstance(value, (bytes, bytearray)):
            value = binascii.hexlify(bytes(value)).decode("ascii")
        if not isinstance(value, str):
            raise HostMessageError("%s: value must be str, not %s"
                                   % (_de(number), type(value).__name__), str(number))
        if ELEMENTS[number][0] == "b":
            value = value.upper()
        out[str(number)] = value
    return out


def encode(msg):
    """The message dict as bytes (without the framing's length prefix)."""
    doc = _normalise(msg)
    _check_message(doc)
    try:
        raw, _ = iso8583.encode(doc, SPEC)
    except iso8583.EncodeError as exc:
        raise HostMessageError("%s: %s" % (_where(exc.field), exc.msg), exc.field)
    if len(raw) > MAX_MESSAGE:
        raise HostMessageError("message is %d bytes, the profile allows %d"
                               % (len(raw), MAX_MESSAGE))
    return bytes(raw)


def decode(raw):
    """The message dict of raw bytes (without the length prefix)."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise HostMessageError("a message is bytes, not %s" % type(raw).__name__)
    raw = bytes(raw)
    if len(raw) > MAX_MESSAGE:
        raise HostMessageError("message is %d bytes, the profile allows %d"
                               % (len(raw), MAX_MESSAGE))
    # pyiso8583 reads bit 65 of a secondary bitmap as a tertiary bitmap, which this
    # profile does not have: refuse it here with a reason of our own.
    if len(raw) >= 20 and raw[4] & 0x80 and raw[12] & 0x80:
        raise HostMessageError("bit 65 (tertiary bitmap) is not used in this profile", "1")
    try:
        doc, _ = iso8583.decode(raw, SPEC)
    except iso8583.DecodeError as exc:
        raise HostMessageError("%s at byte %d: %s" % (_where(exc.field), exc.pos, exc.msg),
                               exc.field)
    except Exception as exc:     # the library's own surprises: still one error class
        raise HostMessageError("undecodable message: %s" % type(exc).__name__)
    doc.pop("p", None)
    doc.pop("1", None)
    doc.pop("h", None)
    _check_message(doc)
    return doc


def masked(msg):
    """A copy fit for a log: PAN to first six + last four, track, PIN and ICC data gone."""
    out = dict(msg)
    pan = out.get("2")
    if pan:
        keep = len(pan) > 10
        out["2"] = pan[:6] + "*" * (len(pan) - 10) + pan[-4:] if keep else "*" * len(pan)
    for field in ("35", "45", "36", "52", "55", "61"):
        if field in out:
            out[field] = "<%d hidden>" % len(out[field])
    return out
