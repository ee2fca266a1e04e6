"""The EMV terminal kernel: contact (EMV 4.3 Books 1-4) and a one-tap contactless path.

The terminal's event loop cannot wait for a card, a PIN or the host, so the kernel never
does either: it says what it needs next (a Step) and is handed the answer later.

    k = Kernel(config, txn)
    step = k.start()
    while "done" not in step:
        if "send" in step:      step = k.on_response(reader_answer)  # R-APDU incl. SW1 SW2
        elif "ask_pin" in step: step = k.on_pin(pin_or_flag)
        elif "choose_app" in step: step = k.on_cardholder_choice(index)
        elif "go_online" in step: step = k.on_online_result(arc, issuer_auth_data, scripts)
    outcome = step["done"]

Steps (dicts; the key says which):
  {"send": apdu}                          an APDU for the card (bytes; the offline PIN
                                          VERIFY comes as a bytearray that the kernel
                                          zeroes once the answer is in)
  {"ask_pin": "online"|"offline", "tries_left": n or None, "retry": bool}
                                          retry: the last offline PIN was wrong
  {"choose_app": [label, ...], "retry": bool}
                                          several applications (or one that needs the
                                          cardholder's confirmation); retry: the last
                                          choice could not be used
  {"go_online": {tag hex: bytes}, "card": {...}, "tap_complete": bool}
                                          ask the host; the dict is DE55, "card" holds
                                          pan, track2 (PAN=YYMMSVC..., as the stripe's),
                                          expiry (YYMM), pan_seq for DE2/DE35/DE23
  {"done": outcome}

Answers:
  on_response(rapdu)       the card's answer, data + SW1 SW2; None when the reader lost
                           the card (same as on_card_removed())
  on_pin(result)           a PIN of 4-12 digits (str/bytes): offline, the kernel sends
                           VERIFY with a plaintext PIN block; online, it only notes that a
                           PIN was entered (the flow encrypts it under DUKPT itself).
                           True: online PIN entered. None: the cardholder bypassed the
                           PIN. False: the PIN pad is not working.
  on_cardholder_choice(i)  index into the labels; None cancels
  on_online_result(arc, issuer_auth_data=None, scripts=None)
                           arc: the host's two-character response code (DE39), or None
                           when the terminal could not reach the host. issuer_auth_data:
                           the value of tag 91. scripts: bytes holding templates 71/72
                           (or a list of such bytes); bytes or hex strings both do
  on_card_removed(), cancel()

The outcome:
  result          "approved" | "declined" | "failed" (no decision could be reached)
  approved        bool
  reason          None when approved; else one of REASONS (the UI has words for each)
  online          the host was asked (and answered)
  cryptogram      "TC" | "AAC" | "ARQC" | None: the card's last cryptogram
  arc             authorisation response code used (host's, or Y1/Z1/Y3/Z3)
  tvr, tsi        hex
  aid, label      the application (hex, text)
  pan_masked, last4, expiry (YYMM), pan_seq
  cvm             "online_pin" | "offline_pin" | "signature" | "none"
  signature       a signature line is needed on the receipt
  emv             {tag hex: bytes}: the data an advice, a reversal or a batch upload needs
  card            only for an offline approval (the advice needs it): pan, track2,
                  expiry, pan_seq. The flow stores it encrypted and drops it after upload
  reversal        True when the host approved but the card did not (or went away):
                  the flow must reverse
  script_results  hex of 9F5B when the issuer sent scripts, else None
  interface       "contact" | "contactless"
  apdus, detail   commands exchanged; what went wrong, for the log (never card data)

The kernel also shows its progress: k.state (a phase name), k.tvr and k.tsi (bytes),
k.aid (bytes), k.label, k.language (5F2D), k.done.

No card answer can make the kernel raise: bad TLV, wrong lengths, missing mandatory
objects, unexpected status words all end in {"done": ...} with a reason. Calling an
on_* method the kernel is not waiting for raises KernelError (a bug in the caller).
T=0 procedure bytes (61xx, 6Cxx) are the reader driver's business, never seen here.

What is simplified or left out:
- no CDA and no enciphered offline PIN (the 9F33 bits for them are cleared); DDA and
  SDA are done, with the CA keys from config (no revocation list);
- a PSE directory's nested DDFs are not followed; a broken directory falls back to the
  list of AIDs; the application's preferred name (9F12) is not used, only its label;
- referrals (host codes 01/02) are declines; the approving codes are config's
  "approve_codes" (default 00, 08, 11);
- without a synchronised clock (txn date None) dates and certificate expiry are not
  checked (the host judges), 9A is 000000, and nothing is approved offline;
- the contactless path is qVSDC-like: PPSE, the highest-priority matching application
  (no cardholder choice), GPO with the TTQ, the cryptogram in the GPO answer or the
  records, one tap; an offline TC is accepted only with a Visa-style fDDA (9F4B over
  9F37 | 9F02 | 5F2A | 9F69, ICC key from the records' certificates); limits from
  config "contactless" (transaction limit and CVM limit: amount >= limit; floor limit:
  amount > limit); the card's CTQ (9F6C) picks online PIN or signature, otherwise
  above the CVM limit online PIN when possible, else signature.
"""
import binascii
import hashlib
import random

from firmware.cards.emv import tlv
from firmware.cards.emv.tlv import TlvError
from firmware.cards.magstripe import last4, mask_pan

# -- reasons (the UI maps each to words) -------------------------------------------------
CARD_ERROR = "card_error"           # the card answered with an error or broke the protocol
BAD_DATA = "bad_data"               # malformed data: TLV, lengths, missing mandatory objects
CARD_BLOCKED = "card_blocked"       # SELECT answered 6A81
APP_BLOCKED = "app_blocked"         # the only matching applications are blocked (6283)
NO_APP = "no_app"                   # no application this terminal accepts
CARD_REMOVED = "card_removed"
NOT_ACCEPTED = "not_accepted"       # the card refuses this service (GPO 6985, AAC "service
                                    # not allowed", no usable CVM on contactless)
CANCELLED = "cancelled"
DECLINED_BY_CARD = "declined_by_card"
HOST_DECLINED = "host_declined"
UNABLE_ONLINE = "unable_online"     # no host, and the card or the terminal would not
                                    # approve offline
TRY_CONTACT = "try_contact"         # contactless refused (limit, card asks): insert the card
ODA_FAILED = "oda_failed"           # a contactless offline approval whose signature failed
KERNEL_ERROR = "kernel_error"       # a bug here; never a card's fault
REASONS = (CARD_ERROR, BAD_DATA, CARD_BLOCKED, APP_BLOCKED, NO_APP, CARD_REMOVED,
           NOT_ACCEPTED, CANCELLED, DECLINED_BY_CARD, HOST_DECLINED, UNABLE_ONLINE,
           TRY_CONTACT, ODA_FAILED, KERNEL_ERROR)

# -- Terminal Verification Results (Book 3 Annex C5): (byte index, bit) --------------------
TVR_ODA_NOT_PERFORMED = (0, 0x80)
TVR_SDA_FAILED = (0, 0x40)
TVR_ICC_DATA_MISSING = (0, 0x20)
TVR_EXCEPTION_FILE = (0, 0x10)
TVR_DDA_FAILED = (0, 0x08)
TVR_CDA_FAILED = (0, 0x04)
TVR_SDA_SELECTED = (0, 0x02)
TVR_VERSION_DIFFERS = (1, 0x80)
TVR_EXPIRED = (1, 0x40)
TVR_NOT_YET_EFFECTIVE = (1, 0x20)
TVR_SERVICE_NOT_ALLOWED = (1, 0x10)
TVR_NEW_CARD = (1, 0x08)
TVR_CVM_NOT_SUCCESSFUL = (2, 0x80)
TVR_UNRECOGNISED_CVM = (2, 0x40)
TVR_PIN_TRY_LIMIT_EXCEEDED = (2, 0x20)
TVR_PIN_PAD_MISSING = (2, 0x10)     # PIN entry required and PIN pad not present or not working
TVR_PIN_NOT_ENTERED = (2, 0x08)     # PIN entry required, PIN pad present, PIN not entered
TVR_ONLINE_PIN_ENTERED = (2, 0x04)
TVR_FLOOR_LIMIT_EXCEEDED = (3, 0x80)
TVR_LOWER_OFFLINE_LIMIT_EXCEEDED = (3, 0x40)
TVR_UPPER_OFFLINE_LIMIT_EXCEEDED = (3, 0x20)
TVR_RANDOM_SELECTED = (3, 0x10)
TVR_MERCHANT_FORCED_ONLINE = (3, 0x08)
TVR_DEFAULT_TDOL_USED = (4, 0x80)
TVR_ISSUER_AUTH_FAILED = (4, 0x40)
TVR_SCRIPT_FAILED_BEFORE = (4, 0x20)
TVR_SCRIPT_FAILED_AFTER = (4, 0x10)

# -- Transaction Status Information (Book 3 Annex C6) --------------------------------------
TSI_ODA_PERFORMED = (0, 0x80)
TSI_CVM_PERFORMED = (0, 0x40)
TSI_CARD_RISK_MANAGEMENT = (0, 0x20)
TSI_ISSUER_AUTH_PERFORMED = (0, 0x10)
TSI_TERMINAL_RISK_MANAGEMENT = (0, 0x08)
TSI_SCRIPT_PROCESSING = (0, 0x04)

# -- Application Interchange Profile 82, byte 1 (Book 3 Annex C1) --------------------------
AIP_SDA = 0x40
AIP_DDA = 0x20
AIP_CVM = 0x10
AIP_TRM = 0x08
AIP_ISSUER_AUTH = 0x04
AIP_CDA = 0x01

# -- Terminal Capabilities 9F33 (Book 4 Annex A2) ---------------------------------------------
CAP2_PLAIN_PIN_ICC = 0x80
CAP2_ONLINE_PIN = 0x40
CAP2_SIGNATURE = 0x20
CAP2_ENC_PIN_ICC = 0x10
CAP2_NO_CVM = 0x08
CAP3_SDA = 0x80
CAP3_DDA = 0x40
CAP3_CDA = 0x08

# -- CVM codes and conditions (Book 3 Annex C3) -----------------------------------------------
CVM_FAIL = 0x00
CVM_PLAIN_PIN = 0x01
CVM_ONLINE_PIN = 0x02
CVM_PLAIN_PIN_SIGNATURE = 0x03
CVM_ENC_PIN = 0x04
CVM_ENC_PIN_SIGNATURE = 0x05
CVM_SIGNATURE = 0x1E
CVM_NO_CVM = 0x1F
CVM_NONE_PERFORMED = 0x3F
CVM_APPLY_NEXT = 0x40
CVM_RESULT_UNKNOWN = 0x00
CVM_RESULT_FAILED = 0x01
CVM_RESULT_SUCCESS = 0x02
_PIN_CVMS = (CVM_PLAIN_PIN, CVM_ONLINE_PIN, CVM_PLAIN_PIN_SIGNATURE, CVM_ENC_PIN,
             CVM_ENC_PIN_SIGNATURE)
_KNOWN_CVMS = (CVM_FAIL,) + _PIN_CVMS + (CVM_SIGNATURE, CVM_NO_CVM)

# -- cryptograms (Cryptogram Information Data 9F27 b8-b7; GENERATE AC P1) ---------------------
AAC = 0x00
TC = 0x40
ARQC = 0x80
_AC_NAMES = {AAC: "AAC", TC: "TC", ARQC: "ARQC"}
_AC_RANK = {AAC: 0, ARQC: 1, TC: 2}
CID_SERVICE_NOT_ALLOWED = 0x01

# -- status words ------------------------------------------------------------------------------
SW_OK = 0x9000
SW_APP_BLOCKED = 0x6283
SW_CARD_BLOCKED = 0x6A81
SW_NOT_FOUND = 0x6A82
SW_NO_RECORD = 0x6A83
SW_CONDITIONS = 0x6985
SW_TRY_OTHER_INTERFACE = 0x6986
SW_PIN_BLOCKED = 0x6983
SW_PIN_DATA_INVALID = 0x6984

PSE = b"1PAY.SYS.DDF01"
PPSE = b"2PAY.SYS.DDF01"
DEFAULT_DDOL = b"\x9f\x37\x04"
DEFAULT_APPROVE_CODES = ("00", "08", "11")
MAX_OCCURRENCES = 8        # SELECT next of one terminal AID, against a card that loops
MAX_DIRECTORY_RECORDS = 16
MIN_KEY_BYTES = 64         # 512 bits: Book 2 keys are longer; shorter ones are garbage

# Objects the terminal supplies: a card's copy never overrides them in a DOL.
_TERMINAL_TAGS = frozenset((
    0x8A, 0x91, 0x95, 0x98, 0x9A, 0x9B, 0x9C, 0x5F2A, 0x5F36, 0x9F01, 0x9F02, 0x9F03, 0x9F06,
    0x9F09, 0x9F15, 0x9F16, 0x9F1A, 0x9F1B, 0x9F1C, 0x9F1E, 0x9F21, 0x9F33, 0x9F34,
    0x9F35, 0x9F37, 0x9F39, 0x9F40, 0x9F41, 0x9F4E, 0x9F66, 0x9F7C,
))
# DE55 of an authorisation request, in this order when present.
DE55_TAGS = (0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A,
             0x82, 0x9F1A, 0x9F03, 0x9F33, 0x9F34, 0x9F35, 0x84, 0x4F, 0x9F09, 0x9F1E,
             0x9F41, 0x9F53, 0x9F66, 0x9F6C, 0x9F6E, 0x8A, 0x9F5B)

TRANSACTION_TYPES = {"purchase": 0x00, "sale": 0x00, "goods": 0x00, "services": 0x00,
                     "cash": 0x01, "cashback": 0x09, "refund": 0x20}


class KernelError(Exception):
    """The caller used the kernel out of turn (a bug in the flow, not the card)."""


class _Stop(Exception):
    """Ends the transaction from anywhere inside the kernel's generator."""

    def __init__(self, reason, detail=""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class OdaError(Exception):
    """A certificate or signature that does not check out (with the step that failed)."""


# -- small helpers -----------------------------------------------------------------------

def hexs(data):
    return binascii.hexlify(bytes(data)).decode().upper()


def to_bytes(value, what="value"):
    """bytes from bytes, bytearray or a hex string (config values come either way)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return binascii.unhexlify(value.replace(" ", ""))
        except (ValueError, TypeError):
            raise ValueError("%s: %r is not hex" % (what, value))
    raise ValueError("%s: expected bytes or hex, got %r" % (what, value))


def to_int(value, what="value"):
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, bytearray)):
        return int.from_bytes(bytes(value), "big")
    if isinstance(value, str):
        return int(value, 16)
    raise ValueError("%s: expected an int, got %r" % (what, value))


def int_bytes(n):
    """A positive int as its big-endian bytes, no leading zeros (MicroPython's int has
    no bit_length)."""
    text = "%x" % n
    return binascii.unhexlify(("0" + text) if len(text) & 1 else text)


def bcd(number, nbytes):
    text = "%0*d" % (nbytes * 2, number)
    if number < 0 or len(text) != nbytes * 2:
        raise ValueError("%d does not fit %d BCD bytes" % (number, nbytes))
    return binascii.unhexlify(text)


def _bcd_ok(data):
    for b in data:
        if b >> 4 > 9 or b & 0x0F > 9:
            return False
    return True


def _bits(buf, bit):
    return bool(buf[bit[0]] & bit[1])


def _any_common(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] & b[i]:
            return True
    return False


def _partial(entry):
    """The application selection indicator: may the card's ADF name be longer?"""
    if "partial" in entry:
        return bool(entry["partial"])
    if "asi" in entry:
        return entry["asi"] in (1, True, "01", "1")
    return True


def _text(data):
    return "".join(chr(b) if 32 <= b < 127 else "?" for b in data)


def _full_year(yy):
    return 2000 + yy if yy < 50 else 1900 + yy


def _date_int(data):
    """YYMMDD (3 BCD bytes) -> YYYYMMDD as an int, or None when it is not a date."""
    if len(data) != 3 or not _bcd_ok(data):
        return None
    yy = (data[0] >> 4) * 10 + (data[0] & 0x0F)
    mm = (data[1] >> 4) * 10 + (data[1] & 0x0F)
    dd = (data[2] >> 4) * 10 + (data[2] & 0x0F)
    if not (1 <= mm <= 12 and 1 <= dd <= 31):
        return None
    return _full_year(yy) * 10000 + mm * 100 + dd


def pan_digits(data):
    """The PAN (cn, F padded) as digits, or None when it is not one."""
    text = hexs(data)
    while text.endswith("F"):
        text = text[:-1]
    if not (7 <= len(text) <= 19):
        return None
    for ch in text:
        if ch < "0" or ch > "9":
            return None
    return text


def track2_text(data):
    """Track 2 equivalent data (57) as the stripe writes it: PAN=YYMMSVC..., or None."""
    text = hexs(data)
    while text.endswith("F"):
        text = text[:-1]
    sep = text.find("D")
    if sep < 7 or sep > 19 or len(text) < sep + 5:
        return None
    for ch in text[:sep] + text[sep + 1:]:
        if ch < "0" or ch > "9":
            return None
    return text[:sep] + "=" + text[sep + 1:]


# -- SHA-1 (FIPS 180-4): MicroPython's hashlib has only SHA-256 -------------------------------

def _rol(x, n):
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


def sha1_portable(data):
    data = bytes(data)
    h0, h1, h2, h3, h4 = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
    bitlen = len(data) * 8
    data = data + b"\x80" + bytes((55 - len(data)) % 64) + bitlen.to_bytes(8, "big")
    w = [0] * 80
    for off in range(0, len(data), 64):
        for i in range(16):
            j = off + 4 * i
            w[i] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3]
        for i in range(16, 80):
            w[i] = _rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1)
        a, b, c, d, e = h0, h1, h2, h3, h4
        for i in range(80):
            if i < 20:
                f = (b & c) | (~b & d)
                k = 0x5A827999
            elif i < 40:
                f = b ^ c ^ d
                k = 0x6ED9EBA1
            elif i < 60:
                f = (b & c) | (b & d) | (c & d)
                k = 0x8F1BBCDC
            else:
                f = b ^ c ^ d
                k = 0xCA62C1D6
            t = (_rol(a, 5) + (f & 0xFFFFFFFF) + e + k + w[i]) & 0xFFFFFFFF
            e = d
            d = c
            c = _rol(b, 30)
            b = a
            a = t
        h0 = (h0 + a) & 0xFFFFFFFF
        h1 = (h1 + b) & 0xFFFFFFFF
        h2 = (h2 + c) & 0xFFFFFFFF
        h3 = (h3 + d) & 0xFFFFFFFF
        h4 = (h4 + e) & 0xFFFFFFFF
    out = b""
    for h in (h0, h1, h2, h3, h4):
        out += h.to_bytes(4, "big")
    return out


if hasattr(hashlib, "sha1"):
    def sha1(data):
        return hashlib.sha1(bytes(data)).digest()
else:
    sha1 = sha1_portable


# -- RSA public-key operation and EMV certificate recovery (Book 2 5 and 6) -------------------

def rsa_recover(data, modulus, exponent):
    """data^exponent mod modulus, as many bytes as the modulus has (Book 2 Annex A2.1)."""
    n = len(modulus)
    if len(data) != n:
        raise OdaError("signature of %d bytes for a %d-byte key" % (len(data), n))
    m = int.from_bytes(bytes(modulus), "big")
    x = int.from_bytes(bytes(data), "big")
    if x >= m:
        raise OdaError("signature not below the modulus")
    return pow(x, exponent, m).to_bytes(n, "big")


def _check_frame(x, fmt):
    if x[0] != 0x6A or x[-1] != 0xBC:
        raise OdaError("header/trailer")
    if x[1] != fmt:
        raise OdaError("format %02X, expected %02X" % (x[1], fmt))


def _cert_expired(mmyy, today):
    """A certificate is valid through the last day of its MMYY month."""
    if today is None:
        return False                    # clock not synchronised: the host judges
    if not _bcd_ok(mmyy):
        return True
    mm = (mmyy[0] >> 4) * 10 + (mmyy[0] & 0x0F)
    yy = (mmyy[1] >> 4) * 10 + (mmyy[1] & 0x0F)
    if not 1 <= mm <= 12:
        return True
    return (_full_year(yy), mm) < (today // 10000, (today // 100) % 100)


def recover_issuer_key(ca_modulus, ca_exponent, cert, remainder, exponent, pan, today):
    """Book 2 5.3: the issuer public key modulus (bytes) from its certificate (90)."""
    nca = len(ca_modulus)
    if nca < MIN_KEY_BYTES:
        raise OdaError("CA key too short")
    x = rsa_recover(cert, ca_modulus, ca_exponent)
    _check_frame(x, 0x02)
    body_end = nca - 21
    if sha1(x[1:body_end] + remainder + exponent) != x[body_end:nca - 1]:
        raise OdaError("issuer certificate hash")
    issuer_id = hexs(x[2:6])
    while issuer_id.endswith("F"):
        issuer_id = issuer_id[:-1]
    if len(issuer_id) < 3 or not pan.startswith(issuer_id):
        raise OdaError("issuer identifier does not match the PAN")
    if _cert_expired(x[6:8], today):
        raise OdaError("issuer certificate expired")
    if x[11] != 0x01 or x[12] != 0x01:
        raise OdaError("issuer certificate algorithm")
    ni = x[13]
    if x[14] != len(exponent):
        raise OdaError("issuer exponent length")
    room = nca - 36
    if ni <= room:
        key = x[15:15 + ni]
    else:
        if len(remainder) != ni - room:
            raise OdaError("issuer key remainder missing or of the wrong length")
        key = x[15:body_end] + remainder
    if len(key) < MIN_KEY_BYTES or key[0] == 0:
        raise OdaError("issuer key")
    return key


def recover_icc_key(issuer_modulus, issuer_exponent, cert, remainder, exponent, pan_cn,
                    static_data, today):
    """Book 2 6.4: the ICC public key modulus from its certificate (9F46)."""
    ni = len(issuer_modulus)
    x = rsa_recover(cert, issuer_modulus, issuer_exponent)
    _check_frame(x, 0x04)
    body_end = ni - 21
    if sha1(x[1:body_end] + remainder + exponent + static_data) != x[body_end:ni - 1]:
        raise OdaError("ICC certificate hash")
    padded = bytes(pan_cn) + b"\xff" * (10 - len(pan_cn))
    if x[2:12] != padded:
        raise OdaError("ICC certificate PAN")
    if _cert_expired(x[12:14], today):
        raise OdaError("ICC certificate expired")
    if x[17] != 0x01 or x[18] != 0x01:
        raise OdaError("ICC certificate algorithm")
    nic = x[19]
    if x[20] != len(exponent):
        raise OdaError("ICC exponent length")
    room = ni - 42
    if nic <= room:
        key = x[21:21 + nic]
    else:
        if len(remainder) != nic - room:
            raise OdaError("ICC key remainder missing or of the wrong length")
        key = x[21:body_end] + remainder
    if len(key) < MIN_KEY_BYTES or key[0] == 0:
        raise OdaError("ICC key")
    return key


def verify_static_signature(issuer_modulus, issuer_exponent, signed, static_data):
    """Book 2 5.4: Signed Static Application Data (93); returns the Data Authentication Code."""
    ni = len(issuer_modulus)
    x = rsa_recover(signed, issuer_modulus, issuer_exponent)
    _check_frame(x, 0x03)
    if x[2] != 0x01:
        raise OdaError("hash algorithm")
    body_end = ni - 21
    if sha1(x[1:body_end] + static_data) != x[body_end:ni - 1]:
        raise OdaError("signed static data hash")
    return x[3:5]


def verify_dynamic_signature(icc_modulus, icc_exponent, signed, dynamic_input):
    """Book 2 6.5: Signed Dynamic Application Data (9F4B); returns the ICC dynamic data."""
    nic = len(icc_modulus)
    x = rsa_recover(signed, icc_modulus, icc_exponent)
    _check_frame(x, 0x05)
    if x[2] != 0x01:
        raise OdaError("hash algorithm")
    ldd = x[3]
    body_end = nic - 21
    if 4 + ldd > body_end:
        raise OdaError("dynamic data length")
    if sha1(x[1:body_end] + dynamic_input) != x[body_end:nic - 1]:
        raise OdaError("signed dynamic data hash")
    return x[4:4 + ldd]


# -- the kernel ---------------------------------------------------------------------------------

class Kernel:
    """One EMV transaction. See the module docstring for the protocol.

    config: "aids" [{"aid", "partial" (application selection indicator: True allows a
      longer ADF name), "label", "version" (9F09), "tac_denial", "tac_online",
      "tac_default", "floor_limit", "target_percent", "max_target_percent", "threshold",
      "ddol", "contactless": {...}}, ...]; "terminal_capabilities" (9F33),
      "additional_capabilities" (9F40), "terminal_type" (9F35), "country" (9F1A),
      "currency" (5F2A), "currency_exponent", "floor_limit", "target_percent",
      "max_target_percent", "threshold", "velocity" {"lower", "upper"} (used when the
      card gives no 9F14/9F23), "ca_keys" [{"rid", "index", "modulus", "exponent",
      "expiry" optional}], "contactless" {"transaction_limit", "floor_limit",
      "cvm_limit"}, "exception_file" (PANs), "approve_codes", "use_pse", "tdol",
      "cardholder_selection", "terminal_id" (9F1C), "merchant_id" (9F16), "mcc" (9F15),
      "ifd_serial" (9F1E), "merchant_name" (9F4E). Binary values: bytes or hex.
    txn: "amount" (minor units), "other_amount", "type" ("purchase", "cash",
      "cashback", "refund" or a 9C byte), "date" ("YYMMDD", or None when the clock is
      not synchronised), "time" ("HHMMSS"), "unpredictable" (callable(n) -> n random
      bytes, or fixed bytes), "interface" ("contact" | "contactless"),
      "force_online" (sets the TVR's merchant-forced-online bit), "online_preferred"
      (asks for an ARQC while the host is believed reachable, no TVR bit), "sequence"
      (9F41).
    """

    def __init__(self, config, txn):
        self.config = config
        self.txn = txn
        self.contactless = txn.get("interface", "contact") == "contactless"
        self._tvr = bytearray(5)
        self._tsi = bytearray(2)
        self.card = {}            # tag -> value, as the card gave them
        self.language = None
        self.oda_error = None
        self.term = {}            # tag -> value, terminal data
        self.state = "idle"
        self._gen = None
        self._pending = None
        self._done = None
        self.aid = None
        self.label = None
        self.aid_cfg = {}
        self.aip = b"\x00\x00"
        self.pan = None
        self._pan_cn = None
        self.expiry = None
        self.static_data = bytearray()
        self._static_ok = True
        self.cvm = "none"
        self.signature = False
        self._pin_bypassed = False
        self.cvm_results = b"\x3f\x00\x00"
        self._host_approved = False
        self._online = False
        self._cryptogram = None
        self._arc = None
        self._script_results = b""
        self._apdus = 0
        self._retry = False
        self._pdol_sent = {}
        self._order = 0
        self._seen_blocked = False
        self._seen_error = False
        self._seen_refused = False
        self._setup_terminal_data()

    # -- public API ------------------------------------------------------------------------

    @property
    def tvr(self):
        return bytes(self._tvr)

    @property
    def tsi(self):
        return bytes(self._tsi)

    @property
    def done(self):
        return self._done is not None

    def start(self):
        if self._gen is not None or self._done is not None:
            raise KernelError("start() called twice")
        self._gen = self._run()
        return self._advance(None)

    def on_response(self, rapdu):
        return self._resume("send", rapdu)

    def on_pin(self, result):
        return self._resume("ask_pin", result)

    def on_cardholder_choice(self, index):
        return self._resume("choose_app", index)

    def on_online_result(self, arc, issuer_auth_data=None, issuer_scripts=None,
                         offline_allowed=True):
        """The host's answer code (None: it could not be reached). With arc None and
        offline_allowed False (the merchant's policy refuses this payment offline) the
        card is asked for an AAC whatever the default action codes say."""
        if arc is not None:
            if isinstance(arc, (bytes, bytearray)):
                arc = _text(arc)
            if not isinstance(arc, str) or len(arc) != 2:
                raise KernelError("response code must be two characters, got %r" % (arc,))
        try:
            iad = to_bytes(issuer_auth_data, "issuer authentication data")
            if isinstance(issuer_scripts, (list, tuple)):
                scripts = [to_bytes(s, "issuer script") for s in issuer_scripts]
            else:
                scripts = to_bytes(issuer_scripts, "issuer scripts")
        except ValueError as exc:
            raise KernelError(str(exc))
        return self._resume("go_online", (arc, iad, scripts, bool(offline_allowed)))

    def on_card_removed(self):
        if self._done is not None:
            return self._done
        return self._abort(CARD_REMOVED)

    def cancel(self):
        if self._done is not None:
            return self._done
        return self._abort(CANCELLED)

    # -- stepping the generator --------------------------------------------------------------

    def _resume(self, want, value):
        if self._done is not None:
            return self._done
        if self._pending is None or want not in self._pending:
            raise KernelError("kernel is not waiting for %s (state %s)" % (want, self.state))
        if want == "send" and value is None:
            return self._abort(CARD_REMOVED)
        return self._advance(value)

    def _advance(self, value):
        try:
            step = self._gen.send(value)
        except _Stop as stop:
            return self._finish_failure(stop.reason, stop.detail)
        except StopIteration:
            return self._finish_failure(KERNEL_ERROR, "kernel ended without an outcome")
        except TlvError as exc:
            return self._finish_failure(BAD_DATA, str(exc))
        except Exception as exc:      # a card answer the checks above did not foresee
            return self._finish_failure(BAD_DATA, "%s: %s" % (type(exc).__name__, exc))
        if "done" in step:
            self._close(step)
        else:
            self._pending = step
        return step

    def _abort(self, reason):
        if self._gen is not None:
            try:
                self._gen.close()
            except Exception:
                pass
        return self._finish_failure(reason, "")

    def _close(self, step):
        self._done = step
        self._pending = None
        self._gen = None
        self.state = "done"
        self._forget_card()

    def _forget_card(self):
        # keep only what a receipt may show (see firmware/cards/magstripe.py on what a str
        # cannot do); the outcome's "card" holds an offline approval's data for the advice
        self.pan = None
        for tag in (0x57, 0x5A, 0x5F20, 0x9F1F, 0x9F6B):
            self.card.pop(tag, None)

    # -- outcome ---------------------------------------------------------------------------

    def _card_data(self):
        t2 = self.card.get(0x57)
        seq = self.card.get(0x5F34)
        return {"pan": self.pan, "track2": track2_text(t2) if t2 else None,
                "expiry": self.expiry, "pan_seq": hexs(seq[-1:]) if seq else None}

    def _emv_data(self):
        data = self._dol_source()
        if self.contactless:
            data.update(self._pdol_sent)
        out = {}
        for tag in DE55_TAGS:
            value = data.get(tag)
            if value is not None:
                out[tlv.tag_hex(tag)] = bytes(value)
        return out

    def _outcome(self, result, reason, with_card=False, detail=""):
        self._sync()
        pan = self.pan
        out = {
            "result": result, "approved": result == "approved", "reason": reason,
            "online": self._online,
            "cryptogram": _AC_NAMES.get(self._cryptogram) if self._cryptogram is not None else None,
            "arc": self._arc, "tvr": hexs(self._tvr), "tsi": hexs(self._tsi),
            "aid": hexs(self.aid) if self.aid else None, "label": self.label,
            "pan_masked": mask_pan(pan) if pan else None, "last4": last4(pan) if pan else "",
            "expiry": self.expiry,
            "pan_seq": hexs(self.card[0x5F34][-1:]) if self.card.get(0x5F34) else None,
            "cvm": self.cvm, "signature": self.signature and result == "approved",
            "emv": self._emv_data() if self.aid else {},
            "card": self._card_data() if with_card else None,
            "reversal": self._host_approved and result != "approved",
            "script_results": hexs(self._script_results) if self._script_results else None,
            "interface": "contactless" if self.contactless else "contact",
            "apdus": self._apdus, "detail": detail,
        }
        return {"done": out}

    def _finish_failure(self, reason, detail):
        result = "declined" if self._cryptogram is not None or reason in (
            HOST_DECLINED, DECLINED_BY_CARD, UNABLE_ONLINE) else "failed"
        step = self._outcome(result, reason, detail=detail)
        self._close(step)
        return step

    # -- terminal data ----------------------------------------------------------------------

    def _setup_terminal_data(self):
        cfg = self.config
        txn = self.txn
        amount = txn.get("amount")
        if not isinstance(amount, int) or amount < 0:
            raise ValueError("txn amount must be a non-negative int of minor units")
        self.amount = amount
        other = txn.get("other_amount", 0) or 0
        ttype = txn.get("type", "purchase")
        if isinstance(ttype, str):
            if ttype not in TRANSACTION_TYPES:
                raise ValueError("unknown transaction type %r" % (ttype,))
            ttype = TRANSACTION_TYPES[ttype]
        self.ttype = ttype
        t = self.term
        t[0x9F02] = bcd(amount, 6)
        t[0x9F03] = bcd(other, 6)
        t[0x9C] = bytes((ttype,))
        t[0x5F2A] = self._num2(cfg.get("currency", "0978"), "currency")
        t[0x5F36] = bytes((cfg.get("currency_exponent", 2),))
        t[0x9F1A] = self._num2(cfg.get("country", "0826"), "country")
        t[0x9F33] = to_bytes(cfg.get("terminal_capabilities", "E0E8C0"), "9F33")
        t[0x9F40] = to_bytes(cfg.get("additional_capabilities", "6000F0A001"), "9F40")
        t[0x9F35] = to_bytes(cfg.get("terminal_type", "22"), "9F35")
        if len(t[0x9F33]) != 3 or len(t[0x9F35]) != 1 or len(t[0x9F40]) != 5:
            raise ValueError("terminal capabilities (3), type (1), additional caps (5) bytes")
        # This kernel does neither enciphered offline PIN nor CDA: it must not tell the
        # card (and the issuer, in DE55) that it does.
        caps = t[0x9F33]
        t[0x9F33] = bytes((caps[0], caps[1] & ~CAP2_ENC_PIN_ICC & 0xFF, caps[2] & ~CAP3_CDA & 0xFF))
        for key, tag in (("terminal_id", 0x9F1C), ("merchant_id", 0x9F16),
                         ("ifd_serial", 0x9F1E), ("merchant_name", 0x9F4E)):
            if cfg.get(key):
                t[tag] = cfg[key].encode() if isinstance(cfg[key], str) else bytes(cfg[key])
        if cfg.get("mcc"):
            t[0x9F15] = self._num2(cfg["mcc"], "mcc")
        date = txn.get("date")
        if date is None:
            self.today = None
            t[0x9A] = b"\x00\x00\x00"
        else:
            if isinstance(date, (tuple, list)):
                date = "%02d%02d%02d" % (date[0] % 100, date[1], date[2])
            raw = binascii.unhexlify(date)
            self.today = _date_int(raw)
            if self.today is None:
                raise ValueError("txn date must be YYMMDD, got %r" % (date,))
            t[0x9A] = raw
        t[0x9F21] = binascii.unhexlify(txn.get("time") or "000000")
        if txn.get("sequence") is not None:
            t[0x9F41] = bcd(txn["sequence"], 4)
        t[0x9F37] = self._random_bytes(4)
        t[0x8A] = None
        self.caps = t[0x9F33]
        # Second digit of the terminal type: 1 online only, 2 offline with online
        # capability, 3 offline only (4-6: the same, unattended).
        digit = t[0x9F35][0] & 0x0F
        self.online_capable = digit in (1, 2, 4, 5)
        self.unattended = digit in (4, 5, 6)

    def _num2(self, value, what):
        if isinstance(value, int):
            return bcd(value, 2)
        value = to_bytes(value if len(value) == 4 else "0" + value, what)
        if len(value) != 2:
            raise ValueError("%s must be 3 or 4 digits" % what)
        return value

    def _random_bytes(self, n):
        source = self.txn.get("unpredictable")
        if callable(source):
            out = bytes(source(n))
        elif source is not None:
            out = bytes(source)
        else:
            out = b""
            while len(out) < n:
                out += random.getrandbits(8).to_bytes(1, "big")
        if len(out) != n:
            raise ValueError("unpredictable number source gave %d bytes, not %d" % (len(out), n))
        return out

    def _cfg(self, key, default=None):
        if key in self.aid_cfg:
            return self.aid_cfg[key]
        return self.config.get(key, default)

    def _set(self, bit):
        self._tvr[bit[0]] |= bit[1]

    def _tsi_set(self, bit):
        self._tsi[bit[0]] |= bit[1]

    def _sync(self):
        self.term[0x95] = bytes(self._tvr)
        self.term[0x9B] = bytes(self._tsi)
        self.term[0x9F34] = self.cvm_results

    def _dol_source(self):
        self._sync()
        data = dict(self.card)
        for tag, value in self.term.items():
            if value is not None:
                data[tag] = value
        if self.aid:
            data[0x84] = self.aid
            data[0x4F] = self.aid
        return data

    def _fill(self, dol):
        return tlv.fill_dol(dol, self._dol_source())

    def _store_card(self, tag, value):
        if tag not in _TERMINAL_TAGS:
            self.card[tag] = value

    # -- APDUs ---------------------------------------------------------------------------------

    def _xfer(self, apdu):
        """Send one command; (data, sw) of the answer."""
        raw = yield {"send": apdu}
        self._apdus += 1
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise _Stop(CARD_ERROR, "reader answer is not bytes")
        raw = bytes(raw)
        if len(raw) < 2:
            raise _Stop(CARD_ERROR, "answer of %d bytes has no status word" % len(raw))
        return raw[:-2], (raw[-2] << 8) | raw[-1]

    def _select(self, name, next_occurrence=False):
        apdu = bytes((0x00, 0xA4, 0x04, 0x02 if next_occurrence else 0x00, len(name))) + name + b"\x00"
        return (yield from self._xfer(apdu))

    def _read_record(self, sfi, record):
        return (yield from self._xfer(bytes((0x00, 0xB2, record, (sfi << 3) | 0x04, 0x00))))

    def _get_data(self, tag):
        data, sw = yield from self._xfer(bytes((0x80, 0xCA, tag >> 8, tag & 0xFF, 0x00)))
        if sw != SW_OK:
            return None
        try:
            return tlv.find_value(tlv.parse(data), tag)
        except TlvError:
            return None

    # -- the transaction ---------------------------------------------------------------------

    def _run(self):
        if self.contactless:
            yield from self._run_contactless()
        else:
            yield from self._run_contact()

    def _run_contact(self):
        self.state = "selection"
        candidates = yield from self._candidates()
        while True:
            cand, fci = yield from self._final_select(candidates)
            self.state = "gpo"
            if (yield from self._initiate(cand, fci)):
                break
            candidates.remove(cand)        # GPO 6985: back to selection without it
            self._seen_refused = True
            self._retry = True
        self.state = "read_records"
        yield from self._read_application_data()
        self._check_mandatory()
        self.state = "oda"
        yield from self._offline_data_authentication()
        self.state = "restrictions"
        self._processing_restrictions()
        self.state = "cvm"
        yield from self._cardholder_verification()
        self.state = "risk"
        yield from self._terminal_risk_management()
        self.state = "action_analysis"
        requested = self._terminal_action_analysis()
        self.state = "first_gen_ac"
        cid = yield from self._generate_ac(requested, self.card[0x8C], first=True)
        kind = cid & 0xC0
        if kind == TC:
            self._arc = "Y1"
            self.term[0x8A] = b"Y1"
            yield self._outcome("approved", None, with_card=True)
            return
        if kind == AAC:
            self._arc = "Z1"
            self.term[0x8A] = b"Z1"
            reason = NOT_ACCEPTED if cid & 0x07 == CID_SERVICE_NOT_ALLOWED else DECLINED_BY_CARD
            yield self._outcome("declined", reason)
            return
        # ARQC
        if self.online_capable:
            self.state = "online"
            arc, iad, scripts, offline_ok = yield self._go_online_step(tap_complete=False)
        else:
            arc, iad, scripts, offline_ok = None, None, None, True
        yield from self._completion(arc, iad, scripts, offline_ok)

    # -- application selection (Book 1 12) -----------------------------------------------------

    def _aid_list(self):
        out = []
        for entry in self.config.get("aids", ()):
            out.append((to_bytes(entry["aid"], "aid"), entry))
        if not out:
            raise _Stop(NO_APP, "no AIDs configured")
        return out

    def _match(self, adf):
        """The terminal's AID entry this ADF name matches, or None."""
        for aid, entry in self._aid_list():
            if adf == aid or (_partial(entry) and len(adf) > len(aid) and adf[:len(aid)] == aid):
                return entry
        return None

    def _candidate(self, adf, label, priority, entry):
        if not (5 <= len(adf) <= 16):
            return None
        prio = priority[0] if priority and len(priority) == 1 else 0
        self._order += 1
        # "order" keeps equal priorities in the card's order: MicroPython's sort is
        # not stable
        return {"aid": adf, "label": _text(label) if label else (entry.get("label") or hexs(adf)),
                "priority": (prio & 0x0F) or 16, "order": self._order,
                "confirm": bool(prio & 0x80), "cfg": entry}

    def _candidates(self):
        """The candidate list: from the PSE directory when there is one, else by
        selecting every AID of the terminal's list."""
        cands = []
        first = True
        if self.config.get("use_pse", True):
            data, sw = yield from self._select(PSE)
            first = False
            if sw == SW_CARD_BLOCKED:
                raise _Stop(CARD_BLOCKED, "SELECT PSE: 6A81")
            if sw == SW_OK:
                cands = yield from self._read_directory(data)
            elif sw not in (SW_NOT_FOUND, SW_APP_BLOCKED):
                self._seen_error = True
        if not cands:
            cands = yield from self._select_each_aid(first)
        if not cands:
            raise self._no_candidate()
        cands.sort(key=lambda c: (c["priority"], c["order"]))
        return cands

    def _no_candidate(self, detail=""):
        if self._seen_blocked:
            return _Stop(APP_BLOCKED, detail)
        if self._seen_refused:
            return _Stop(NOT_ACCEPTED, detail)
        return _Stop(CARD_ERROR if self._seen_error else NO_APP, detail)

    def _read_directory(self, fci_data):
        try:
            fci = tlv.parse_one(fci_data, 0x6F)
            sfi = fci.find(0x88)
        except TlvError:
            return []
        if sfi is None or len(sfi.value) != 1 or not 1 <= sfi.value[0] <= 30:
            return []
        sfi = sfi.value[0]
        cands = []
        for rec in range(1, MAX_DIRECTORY_RECORDS + 1):
            data, sw = yield from self._read_record(sfi, rec)
            if sw != SW_OK:
                if sw != SW_NO_RECORD:
                    self._seen_error = True
                break
            try:
                record = tlv.parse_one(data, 0x70)
            except TlvError:
                return []                  # a broken directory: use the AID list instead
            for entry in record.children:
                if entry.tag != 0x61:
                    continue
                adf = entry.find(0x4F)
                if adf is None:
                    continue
                cfg = self._match(adf.value)
                if cfg is None:
                    continue
                label = entry.find(0x50)
                prio = entry.find(0x87)
                cand = self._candidate(adf.value, label.value if label else None,
                                       prio.value if prio else None, cfg)
                if cand and not any(c["aid"] == cand["aid"] for c in cands):
                    cands.append(cand)
        return cands

    def _select_each_aid(self, first):
        cands = []
        for aid, entry in self._aid_list():
            seen = []
            for occurrence in range(MAX_OCCURRENCES):
                data, sw = yield from self._select(aid, occurrence > 0)
                if first and sw == SW_CARD_BLOCKED:
                    raise _Stop(CARD_BLOCKED, "SELECT: 6A81")
                first = False
                if sw not in (SW_OK, SW_APP_BLOCKED):
                    if sw not in (SW_NOT_FOUND, SW_CARD_BLOCKED):
                        self._seen_error = True
                    break
                try:
                    fci = tlv.parse_one(data, 0x6F)
                    df = fci.find(0x84)
                except TlvError:
                    self._seen_error = True
                    break
                if df is None or df.value in seen:
                    break
                seen.append(df.value)
                adf = df.value
                exact = adf == aid
                partial = _partial(entry) and len(adf) > len(aid) and adf[:len(aid)] == aid
                if exact or partial:
                    if sw == SW_APP_BLOCKED:
                        self._seen_blocked = True
                    else:
                        label = fci.find(0x50)
                        prio = fci.find(0x87)
                        cand = self._candidate(adf, label.value if label else None,
                                               prio.value if prio else None, entry)
                        if cand and not any(c["aid"] == adf for c in cands):
                            cands.append(cand)
                if not _partial(entry):
                    break
        return cands

    def _final_select(self, cands):
        while True:
            if not cands:
                raise self._no_candidate()
            cand = None
            if len(cands) == 1 and not cands[0]["confirm"]:
                cand = cands[0]
            elif self.config.get("cardholder_selection", True):
                self.state = "choose_app"
                index = yield {"choose_app": [c["label"] for c in cands], "retry": self._retry}
                if not isinstance(index, int) or not 0 <= index < len(cands):
                    raise _Stop(CANCELLED, "no application chosen")
                cand = cands[index]
            else:
                for c in cands:
                    if not c["confirm"]:
                        cand = c
                        break
                if cand is None:
                    raise _Stop(NO_APP, "every application needs the cardholder's confirmation")
            self.state = "final_select"
            data, sw = yield from self._select(cand["aid"])
            fci = None
            if sw == SW_OK:
                try:
                    fci = tlv.parse_one(data, 0x6F)
                    df = fci.find(0x84)
                    a5 = fci.find(0xA5)
                    if df is None or df.value != cand["aid"] or a5 is None:
                        fci = None
                except TlvError:
                    fci = None
            elif sw == SW_APP_BLOCKED:
                self._seen_blocked = True
            elif sw != SW_NOT_FOUND:
                self._seen_error = True
            if fci is not None:
                return cand, fci
            cands.remove(cand)
            self._retry = True

    # -- initiate application processing (Book 3 10.1) -------------------------------------------

    def _choose(self, cand, fci):
        self.aid = cand["aid"]
        self.label = cand["label"]
        self.aid_cfg = cand["cfg"]
        self.term[0x9F06] = to_bytes(cand["cfg"]["aid"], "aid")
        version = cand["cfg"].get("version")
        if version:
            self.term[0x9F09] = to_bytes(version, "version")
        self.card = {}
        for obj in fci.children:
            if obj.tag == 0xA5:
                for tag, value in tlv.flatten(obj.children).items():
                    self._store_card(tag, value)
        lang = self.card.get(0x5F2D)
        self.language = _text(lang) if lang else None

    def _initiate(self, cand, fci):
        self._choose(cand, fci)
        pdol = self.card.get(0x9F38)
        body = self._fill(pdol) if pdol else b""
        # what the card was told: a contactless cryptogram covers these values, so
        # the host must see them, not what the terminal learnt afterwards
        self._pdol_sent = {}
        pos = 0
        for tag, length in (tlv.parse_dol(pdol) if pdol else ()):
            self._pdol_sent[tag] = body[pos:pos + length]
            pos += length
        data = tlv.encode(0x83, body)
        apdu = bytes((0x80, 0xA8, 0x00, 0x00, len(data))) + data + b"\x00"
        rdata, sw = yield from self._xfer(apdu)
        if sw == SW_CONDITIONS:
            if self.contactless:
                raise _Stop(NOT_ACCEPTED, "GPO 6985")
            return False
        if self.contactless and sw == SW_TRY_OTHER_INTERFACE:
            raise _Stop(TRY_CONTACT, "GPO 6986")
        if sw != SW_OK:
            raise _Stop(CARD_ERROR, "GPO SW %04X" % sw)
        obj = tlv.parse_one(rdata)
        if obj.tag == 0x80:
            if len(obj.value) < 2 or (len(obj.value) - 2) % 4:
                raise _Stop(BAD_DATA, "GPO format 1 length")
            aip = obj.value[:2]
            afl = obj.value[2:]
        elif obj.tag == 0x77:
            flat = tlv.flatten(obj.children, strict=True)
            aip = flat.get(0x82)
            afl = flat.get(0x94, b"")
            if aip is None or len(aip) != 2:
                raise _Stop(BAD_DATA, "GPO answer without a 2-byte AIP")
            for tag, value in flat.items():
                if tag not in (0x82, 0x94):
                    self._store_card(tag, value)
        else:
            raise _Stop(BAD_DATA, "GPO answer template %s" % tlv.tag_hex(obj.tag))
        self.aip = aip
        self.card[0x82] = aip
        self.afl = self._parse_afl(afl)
        if not self.afl and not self.contactless:
            raise _Stop(BAD_DATA, "empty AFL")
        return True

    def _parse_afl(self, afl):
        if len(afl) % 4:
            raise _Stop(BAD_DATA, "AFL length %d" % len(afl))
        out = []
        for i in range(0, len(afl), 4):
            sfi = afl[i] >> 3
            first, last, oda = afl[i + 1], afl[i + 2], afl[i + 3]
            if afl[i] & 0x07 or not 1 <= sfi <= 30 or first == 0 or last < first \
                    or oda > last - first + 1:
                raise _Stop(BAD_DATA, "AFL entry %s" % hexs(afl[i:i + 4]))
            out.append((sfi, first, last, oda))
        return out

    # -- read application data (Book 3 10.2) ---------------------------------------------------

    def _read_application_data(self):
        seen = set()
        for sfi, first, last, oda in self.afl:
            for rec in range(first, last + 1):
                data, sw = yield from self._read_record(sfi, rec)
                if sw != SW_OK:
                    raise _Stop(CARD_ERROR, "READ RECORD %d/%d: %04X" % (sfi, rec, sw))
                template = None
                try:
                    template = tlv.parse_one(data, 0x70)
                except TlvError:
                    if sfi <= 10:
                        raise
                if template is not None:
                    for tag, value in tlv.flatten(template.children, strict=True).items():
                        if tag in seen:
                            raise _Stop(BAD_DATA, "%s twice in the records" % tlv.tag_hex(tag))
                        seen.add(tag)
                        self._store_card(tag, value)
                if rec - first < oda:
                    if sfi <= 10:
                        if template is None:
                            self._static_ok = False
                        else:
                            self.static_data += template.value
                    else:
                        self.static_data += data

    def _check_mandatory(self):
        card = self.card
        for tag in (0x5F24, 0x5A, 0x8C, 0x8D):
            if tag not in card:
                raise _Stop(BAD_DATA, "mandatory %s missing" % tlv.tag_hex(tag))
        self._take_pan_expiry()
        for tag in (0x8C, 0x8D):
            tlv.parse_dol(card[tag])          # raises TlvError on a broken CDOL

    def _take_pan_expiry(self):
        card = self.card
        if 0x5A in card:
            if len(card[0x5A]) > 10:
                raise _Stop(BAD_DATA, "PAN of %d bytes" % len(card[0x5A]))
            self.pan = pan_digits(card[0x5A])
            self._pan_cn = card[0x5A]
        elif 0x57 in card:
            t2 = track2_text(card[0x57])
            self.pan = t2.split("=")[0] if t2 else None
            if self.pan:
                text = self.pan + "F" * (len(self.pan) & 1)
                self._pan_cn = binascii.unhexlify(text)
        if not self.pan:
            raise _Stop(BAD_DATA, "no readable PAN")
        if 0x5F24 in card:
            exp = card[0x5F24]
            if _date_int(exp) is None:
                raise _Stop(BAD_DATA, "expiry date is not a date")
            self.expiry = hexs(exp[:2])
        elif 0x57 in card:
            t2 = track2_text(card[0x57])
            self.expiry = t2.split("=")[1][:4] if t2 else None
        if not self.expiry:
            raise _Stop(BAD_DATA, "no expiry date")

    # -- offline data authentication (Book 3 10.3, Book 2) ---------------------------------------

    def _ca_key(self):
        index = self.card.get(0x8F)
        if not index or len(index) != 1:
            return None
        rid = self.aid[:5]
        for key in self.config.get("ca_keys", ()):
            if to_bytes(key["rid"], "rid") == rid and to_int(key["index"], "index") == index[0]:
                modulus = key["modulus"]
                if isinstance(modulus, int):
                    modulus = int_bytes(modulus)
                else:
                    modulus = to_bytes(modulus, "modulus")
                exponent = key.get("exponent", 3)
                if isinstance(exponent, (bytes, bytearray)):
                    exponent = int.from_bytes(bytes(exponent), "big")
                elif isinstance(exponent, str):
                    exponent = int(exponent, 16)
                return modulus, exponent
        return None

    def _static_input(self):
        """The static data to be authenticated, with the AIP when 9F4A asks for it."""
        if not self._static_ok:
            raise OdaError("a record to authenticate is not a 70 template")
        data = bytes(self.static_data)
        tag_list = self.card.get(0x9F4A)
        if tag_list is not None:
            if tag_list != b"\x82":
                raise OdaError("SDA tag list other than 82")
            data += self.aip
        return data

    def _issuer_key(self):
        if 0x8F not in self.card:
            self._set(TVR_ICC_DATA_MISSING)
            raise OdaError("CA public key index missing")
        ca = self._ca_key()
        if ca is None:
            raise OdaError("no CA public key for this RID and index")
        cert = self.card.get(0x90)
        exponent = self.card.get(0x9F32)
        if cert is None or exponent is None:
            self._set(TVR_ICC_DATA_MISSING)
            raise OdaError("issuer certificate or exponent missing")
        modulus = recover_issuer_key(ca[0], ca[1], cert, self.card.get(0x92, b""), exponent,
                                     self.pan, self.today)
        return modulus, int.from_bytes(exponent, "big")

    def _icc_public_key(self, static_input):
        issuer = self._issuer_key()
        cert = self.card.get(0x9F46)
        exponent = self.card.get(0x9F47)
        if cert is None or exponent is None:
            self._set(TVR_ICC_DATA_MISSING)
            raise OdaError("ICC certificate or exponent missing")
        modulus = recover_icc_key(issuer[0], issuer[1], cert, self.card.get(0x9F48, b""),
                                  exponent, self._pan_cn, static_input, self.today)
        return modulus, int.from_bytes(exponent, "big")

    def _offline_data_authentication(self):
        aip = self.aip[0]
        caps = self.caps[2]
        if aip & AIP_DDA and caps & CAP3_DDA:
            method = "dda"
        elif aip & AIP_SDA and caps & CAP3_SDA:
            method = "sda"
        else:
            self._set(TVR_ODA_NOT_PERFORMED)
            return
        self._tsi_set(TSI_ODA_PERFORMED)
        if method == "sda":
            self._set(TVR_SDA_SELECTED)
            try:
                static_input = self._static_input()
                issuer = self._issuer_key()
                signed = self.card.get(0x93)
                if signed is None:
                    self._set(TVR_ICC_DATA_MISSING)
                    raise OdaError("signed static data missing")
                dac = verify_static_signature(issuer[0], issuer[1], signed, static_input)
                self.card[0x9F45] = dac
            except OdaError as exc:
                self.oda_error = str(exc)
                self._set(TVR_SDA_FAILED)
            return
        try:
            static_input = self._static_input()
            key = self._icc_public_key(static_input)
            ddol = self.card.get(0x9F49) or to_bytes(self._cfg("ddol", DEFAULT_DDOL), "ddol")
            if not tlv.dol_has(ddol, 0x9F37):
                raise OdaError("DDOL without the unpredictable number")
            ddol_data = self._fill(ddol)
        except (OdaError, TlvError) as exc:
            self.oda_error = str(exc)
            self._set(TVR_DDA_FAILED)
            return
        apdu = bytes((0x00, 0x88, 0x00, 0x00, len(ddol_data))) + ddol_data + b"\x00"
        data, sw = yield from self._xfer(apdu)
        if sw != SW_OK:
            raise _Stop(CARD_ERROR, "INTERNAL AUTHENTICATE %04X" % sw)
        obj = tlv.parse_one(data)
        if obj.tag == 0x80:
            signed = obj.value
        elif obj.tag == 0x77:
            signed = obj.find(0x9F4B)
            if signed is None:
                raise _Stop(BAD_DATA, "INTERNAL AUTHENTICATE answer without 9F4B")
            signed = signed.value
        else:
            raise _Stop(BAD_DATA, "INTERNAL AUTHENTICATE answer template")
        try:
            dyn = verify_dynamic_signature(key[0], key[1], signed, ddol_data)
            if not dyn or not 2 <= dyn[0] <= 8 or dyn[0] + 1 > len(dyn):
                raise OdaError("ICC dynamic number")
            self.card[0x9F4C] = dyn[1:1 + dyn[0]]
        except OdaError as exc:
            self.oda_error = str(exc)
            self._set(TVR_DDA_FAILED)

    # -- processing restrictions (Book 3 10.4) ---------------------------------------------------

    def _processing_restrictions(self):
        card = self.card
        version = card.get(0x9F08)
        term_version = self.term.get(0x9F09)
        if version is not None and term_version is not None and version != term_version:
            self._set(TVR_VERSION_DIFFERS)
        auc = card.get(0x9F07)
        if auc is not None:
            if len(auc) != 2:
                raise _Stop(BAD_DATA, "application usage control length")
            self._check_usage(auc)
        if self.today is not None:
            eff = card.get(0x5F25)
            if eff is not None:
                eff = _date_int(eff)
                if eff is None:
                    raise _Stop(BAD_DATA, "effective date is not a date")
                if self.today < eff:
                    self._set(TVR_NOT_YET_EFFECTIVE)
            exp = _date_int(card[0x5F24])
            if self.today > exp:
                self._set(TVR_EXPIRED)

    def _check_usage(self, auc):
        atm = self.term[0x9F35][0] in (0x14, 0x15, 0x16) and self.term[0x9F40][0] & 0x80
        if (atm and not auc[0] & 0x02) or (not atm and not auc[0] & 0x01):
            self._set(TVR_SERVICE_NOT_ALLOWED)
        country = self.card.get(0x5F28)
        if country is None:
            return
        domestic = country == self.term[0x9F1A]
        ok = True
        if self.ttype == 0x01:
            ok = auc[0] & (0x80 if domestic else 0x40)
        elif self.ttype == 0x00:
            goods = auc[0] & (0x20 if domestic else 0x10)
            services = auc[0] & (0x08 if domestic else 0x04)
            ok = goods or services
        elif self.ttype == 0x09:
            ok = auc[1] & (0x80 if domestic else 0x40)
        if not ok:
            self._set(TVR_SERVICE_NOT_ALLOWED)

    # -- cardholder verification (Book 3 10.5) ---------------------------------------------------

    def _supported(self, method):
        caps = self.caps[1]
        if method in (CVM_PLAIN_PIN,):
            return bool(caps & CAP2_PLAIN_PIN_ICC)
        if method == CVM_PLAIN_PIN_SIGNATURE:
            return bool(caps & CAP2_PLAIN_PIN_ICC and caps & CAP2_SIGNATURE)
        if method == CVM_ONLINE_PIN:
            return bool(caps & CAP2_ONLINE_PIN) and self.online_capable
        if method == CVM_SIGNATURE:
            return bool(caps & CAP2_SIGNATURE)
        if method == CVM_NO_CVM:
            return bool(caps & CAP2_NO_CVM)
        if method == CVM_FAIL:
            return True
        return False           # enciphered offline PIN is not implemented here

    def _condition(self, cond, method, x, y):
        cash = self.ttype == 0x01
        cashback = self.ttype == 0x09
        if cond == 0x00:
            return True
        if cond == 0x01:
            return self.unattended and cash
        if cond == 0x02:
            return not cash and not cashback
        if cond == 0x03:
            return method in _KNOWN_CVMS and self._supported(method)
        if cond == 0x04:
            return cash and not self.unattended
        if cond == 0x05:
            return cashback
        if 0x06 <= cond <= 0x09:
            app_currency = self.card.get(0x9F42)
            if app_currency is None or app_currency != self.term[0x5F2A]:
                return False
            limit = x if cond in (0x06, 0x07) else y
            return self.amount < limit if cond in (0x06, 0x08) else self.amount > limit
        return False

    def _cardholder_verification(self):
        if not self.aip[0] & AIP_CVM:
            self.cvm_results = b"\x3f\x00\x00"
            return
        cvl = self.card.get(0x8E)
        if cvl is None or len(cvl) < 10:
            self._set(TVR_ICC_DATA_MISSING)
            self.cvm_results = b"\x3f\x00\x00"
            return
        if len(cvl) % 2:
            raise _Stop(BAD_DATA, "CVM list of odd length")
        x = int.from_bytes(cvl[0:4], "big")
        y = int.from_bytes(cvl[4:8], "big")
        last = None
        for i in range(8, len(cvl), 2):
            code = cvl[i]
            cond = cvl[i + 1]
            method = code & 0x3F
            if not self._condition(cond, method, x, y):
                continue
            last = (code, cond)
            if method not in _KNOWN_CVMS:
                self._set(TVR_UNRECOGNISED_CVM)
                ok = None
            else:
                ok = yield from self._perform_cvm(method)
            if ok is not None:
                self.cvm_results = bytes((code, cond, ok))
                self._tsi_set(TSI_CVM_PERFORMED)
                return
            if not code & CVM_APPLY_NEXT:
                break
        self._set(TVR_CVM_NOT_SUCCESSFUL)
        self._tsi_set(TSI_CVM_PERFORMED)
        self.cvm = "none"
        self.signature = False
        if last is None:
            self.cvm_results = b"\x3f\x00\x01"
        else:
            self.cvm_results = bytes((last[0], last[1], CVM_RESULT_FAILED))

    def _perform_cvm(self, method):
        """The CVM Results byte 3 when the method succeeded, None when it failed."""
        if method == CVM_FAIL:
            return None
        if method in _PIN_CVMS:
            if self._pin_bypassed:
                self._set(TVR_PIN_NOT_ENTERED)
                return None
            if not self._supported(method):
                self._set(TVR_PIN_PAD_MISSING)
                return None
            if method == CVM_ONLINE_PIN:
                if not (yield from self._online_pin()):
                    return None
                self.cvm = "online_pin"
                return CVM_RESULT_UNKNOWN
            if not (yield from self._offline_pin()):
                return None
            self.cvm = "offline_pin"
            if method == CVM_PLAIN_PIN_SIGNATURE:
                self.signature = True
                return CVM_RESULT_UNKNOWN
            return CVM_RESULT_SUCCESS
        if not self._supported(method):
            return None
        if method == CVM_SIGNATURE:
            self.cvm = "signature"
            self.signature = True
            return CVM_RESULT_UNKNOWN
        self.cvm = "none"                           # CVM_NO_CVM
        return CVM_RESULT_SUCCESS

    def _pin_answer(self, result):
        """'bypass', 'no_pad', 'entered' or the PIN digits from on_pin's argument."""
        if result is None:
            return "bypass", None
        if result is False:
            return "no_pad", None
        if result is True:
            return "entered", None
        if isinstance(result, (bytes, bytearray)):
            result = bytes(result).decode()
        if isinstance(result, str) and 4 <= len(result) <= 12:
            for ch in result:
                if ch < "0" or ch > "9":
                    return "invalid", None
            return "digits", result
        return "invalid", None

    def _online_pin(self):
        self.state = "pin"
        while True:
            kind, _ = self._pin_answer((yield {"ask_pin": "online", "tries_left": None,
                                               "retry": False}))
            if kind in ("entered", "digits"):
                self._set(TVR_ONLINE_PIN_ENTERED)
                return True
            if kind == "bypass":
                self._set(TVR_PIN_NOT_ENTERED)
                self._pin_bypassed = True
                return False
            if kind == "no_pad":
                self._set(TVR_PIN_PAD_MISSING)
                return False

    def _offline_pin(self):
        self.state = "pin"
        counter = yield from self._get_data(0x9F17)
        tries = counter[0] if counter and len(counter) == 1 else None
        if tries == 0:
            self._set(TVR_PIN_TRY_LIMIT_EXCEEDED)
            return False
        retry = False
        while True:
            kind, digits = self._pin_answer((yield {"ask_pin": "offline", "tries_left": tries,
                                                    "retry": retry}))
            if kind == "bypass":
                self._set(TVR_PIN_NOT_ENTERED)
                self._pin_bypassed = True
                return False
            if kind == "no_pad":
                self._set(TVR_PIN_PAD_MISSING)
                return False
            if kind != "digits":
                continue                               # ask again
            apdu = bytearray(b"\x00\x20\x00\x80\x08\x20") + bytearray(b"\xff" * 7)
            apdu[5] = 0x20 | len(digits)
            for i in range(len(digits)):
                nibble = ord(digits[i]) - 48
                j = 6 + i // 2
                if i & 1:
                    apdu[j] = (apdu[j] & 0xF0) | nibble
                else:
                    apdu[j] = (nibble << 4) | 0x0F
            digits = None
            try:
                data, sw = yield from self._xfer(apdu)
            finally:
                for i in range(len(apdu)):
                    apdu[i] = 0
            if sw == SW_OK:
                return True
            if sw & 0xFFF0 == 0x63C0:
                tries = sw & 0x0F
                if tries == 0:
                    self._set(TVR_PIN_TRY_LIMIT_EXCEEDED)
                    return False
                retry = True
                continue
            if sw in (SW_PIN_BLOCKED, SW_PIN_DATA_INVALID):
                self._set(TVR_PIN_TRY_LIMIT_EXCEEDED)
                return False
            return False

    # -- terminal risk management (Book 3 10.6) --------------------------------------------------

    def _random_1_99(self):
        return int.from_bytes(self._random_bytes(2), "big") % 99 + 1

    def _terminal_risk_management(self):
        if not self.aip[0] & AIP_TRM and not self.config.get("always_risk_management", True):
            return
        self._tsi_set(TSI_TERMINAL_RISK_MANAGEMENT)
        if self.pan in self.config.get("exception_file", ()):
            self._set(TVR_EXCEPTION_FILE)
        floor = self._cfg("floor_limit", 0)
        if self.amount >= floor:
            self._set(TVR_FLOOR_LIMIT_EXCEEDED)
        elif self.online_capable:
            target = self._cfg("target_percent", 0)
            top = self._cfg("max_target_percent", target)
            threshold = self._cfg("threshold", 0)
            if target or top:
                r = self._random_1_99()
                if self.amount < threshold:
                    chosen = r <= target
                else:
                    span = floor - threshold
                    pct = target + (top - target) * (self.amount - threshold) // span if span > 0 else top
                    chosen = r <= pct
                if chosen:
                    self._set(TVR_RANDOM_SELECTED)
        lower = self.card.get(0x9F14)
        upper = self.card.get(0x9F23)
        velocity = self.config.get("velocity") or {}
        lower = lower[0] if lower and len(lower) == 1 else velocity.get("lower")
        upper = upper[0] if upper and len(upper) == 1 else velocity.get("upper")
        if lower is None or upper is None:
            return
        atc = yield from self._get_data(0x9F36)
        last_online = yield from self._get_data(0x9F13)
        if atc is None or last_online is None or len(atc) != 2 or len(last_online) != 2:
            self._set(TVR_LOWER_OFFLINE_LIMIT_EXCEEDED)
            self._set(TVR_UPPER_OFFLINE_LIMIT_EXCEEDED)
            return
        atc = int.from_bytes(atc, "big")
        last_online = int.from_bytes(last_online, "big")
        if last_online == 0:
            self._set(TVR_NEW_CARD)
        if atc <= last_online:
            self._set(TVR_LOWER_OFFLINE_LIMIT_EXCEEDED)
            self._set(TVR_UPPER_OFFLINE_LIMIT_EXCEEDED)
            return
        if atc - last_online > lower:
            self._set(TVR_LOWER_OFFLINE_LIMIT_EXCEEDED)
        if atc - last_online > upper:
            self._set(TVR_UPPER_OFFLINE_LIMIT_EXCEEDED)

    # -- terminal action analysis (Book 3 10.7) -------------------------------------------------

    def _action_codes(self, tac_key, iac_tag, iac_default):
        tac = to_bytes(self._cfg(tac_key, "0000000000"), tac_key)
        iac = self.card.get(iac_tag)
        if iac is None:
            iac = iac_default
        elif len(iac) != 5:
            raise _Stop(BAD_DATA, "issuer action code %s length" % tlv.tag_hex(iac_tag))
        if len(tac) != 5:
            raise _Stop(KERNEL_ERROR, "%s must be 5 bytes" % tac_key)
        return bytes(tac[i] | iac[i] for i in range(5))

    def _terminal_action_analysis(self):
        if self.txn.get("force_online"):
            self._set(TVR_MERCHANT_FORCED_ONLINE)
        tvr = self._tvr
        if _any_common(tvr, self._action_codes("tac_denial", 0x9F0E, bytes(5))):
            return AAC
        if self.online_capable:
            if _any_common(tvr, self._action_codes("tac_online", 0x9F0F, b"\xff" * 5)):
                return ARQC
            if self.today is None:
                return ARQC                 # no trusted date: never approve offline
            if self.txn.get("online_preferred"):
                # the host is believed reachable: ask it, without the TVR's "merchant
                # forced online" bit, so that if it cannot be reached after all the
                # default action codes still judge the payment on its own merits (Y3)
                return ARQC
            return TC
        if _any_common(tvr, self._action_codes("tac_default", 0x9F0D, b"\xff" * 5)):
            return AAC
        if self.today is None:
            return AAC
        return TC

    def _default_action(self):
        """Unable to go online: TAC/IAC-Default decide (Book 3 10.7)."""
        if self.today is None:
            return AAC
        if _any_common(self._tvr, self._action_codes("tac_default", 0x9F0D, b"\xff" * 5)):
            return AAC
        return TC

    # -- GENERATE AC (Book 3 6.5.5, 9) -------------------------------------------------------------

    def _tc_hash(self):
        """TC Hash Value (98) over the TDOL's data: the card's TDOL (97), else the
        terminal's default (then "default TDOL used"); Book 3 5.4 and 10.7."""
        tdol = self.card.get(0x97)
        if tdol is None:
            tdol = self._cfg("tdol")
            if tdol is None:
                return
            tdol = to_bytes(tdol, "tdol")
            self._set(TVR_DEFAULT_TDOL_USED)
        self.term[0x98] = sha1(self._fill(tdol))

    def _generate_ac(self, requested, cdol, first):
        if first:
            self._tsi_set(TSI_CARD_RISK_MANAGEMENT)
        if tlv.dol_has(cdol, 0x98):
            self._tc_hash()
        data = self._fill(cdol)
        apdu = bytes((0x80, 0xAE, requested, 0x00, len(data))) + data + b"\x00"
        rdata, sw = yield from self._xfer(apdu)
        if sw != SW_OK:
            raise _Stop(CARD_ERROR, "GENERATE AC %04X" % sw)
        obj = tlv.parse_one(rdata)
        if obj.tag == 0x80:
            v = obj.value
            if not 11 <= len(v) <= 43:
                raise _Stop(BAD_DATA, "GENERATE AC format 1 length %d" % len(v))
            cid, atc, ac, iad = v[0:1], v[1:3], v[3:11], v[11:]
        elif obj.tag == 0x77:
            flat = tlv.flatten(obj.children, strict=True)
            cid, atc, ac, iad = flat.get(0x9F27), flat.get(0x9F36), flat.get(0x9F26), flat.get(0x9F10)
            if cid is None or atc is None or ac is None:
                raise _Stop(BAD_DATA, "GENERATE AC answer lacks 9F27, 9F36 or 9F26")
            if len(cid) != 1 or len(atc) != 2 or len(ac) != 8 or (iad is not None and len(iad) > 32):
                raise _Stop(BAD_DATA, "GENERATE AC answer with wrong lengths")
        else:
            raise _Stop(BAD_DATA, "GENERATE AC answer template %s" % tlv.tag_hex(obj.tag))
        kind = cid[0] & 0xC0
        if kind not in _AC_RANK:
            raise _Stop(BAD_DATA, "cryptogram type %02X" % cid[0])
        if _AC_RANK[kind] > _AC_RANK[requested] or (not first and kind == ARQC):
            raise _Stop(CARD_ERROR, "card answered %s to a request for %s"
                        % (_AC_NAMES[kind], _AC_NAMES[requested]))
        self.card[0x9F27] = cid
        self.card[0x9F36] = atc
        self.card[0x9F26] = ac
        if iad:
            self.card[0x9F10] = iad
        self._cryptogram = kind
        return cid[0]

    # -- online, completion, scripts (Book 3 10.9-10.11) -------------------------------------------

    def _go_online_step(self, tap_complete):
        self._sync()
        return {"go_online": self._emv_data(), "card": self._card_data(),
                "tap_complete": tap_complete}

    def _approve_codes(self):
        return self.config.get("approve_codes", DEFAULT_APPROVE_CODES)

    def _completion(self, arc, iad, scripts, offline_ok=True):
        if arc is not None:
            self.card.pop(0x57, None)      # the host has had it; nothing later needs it
        if arc is None:
            requested = self._default_action() if offline_ok else AAC
            self._arc = "Y3" if requested == TC else "Z3"
        else:
            self._online = True
            self._arc = arc
            self._host_approved = arc in self._approve_codes()
            requested = TC if self._host_approved else AAC
        self.term[0x8A] = self._arc.encode()
        before, after = self._split_scripts(scripts)
        cdol2 = self.card[0x8D]
        self.state = "issuer_auth"
        if iad is not None and arc is not None:
            iad = bytes(iad)
            self.term[0x91] = iad
            if self.aip[0] & AIP_ISSUER_AUTH and not tlv.dol_has(cdol2, 0x91):
                self._tsi_set(TSI_ISSUER_AUTH_PERFORMED)
                if not 8 <= len(iad) <= 16:
                    self._set(TVR_ISSUER_AUTH_FAILED)
                else:
                    apdu = bytes((0x00, 0x82, 0x00, 0x00, len(iad))) + iad
                    _, sw = yield from self._xfer(apdu)
                    if sw != SW_OK:
                        self._set(TVR_ISSUER_AUTH_FAILED)
            elif tlv.dol_has(cdol2, 0x91):
                self._tsi_set(TSI_ISSUER_AUTH_PERFORMED)
        self.state = "scripts"
        yield from self._run_scripts(before, TVR_SCRIPT_FAILED_BEFORE)
        self.state = "second_gen_ac"
        cid = yield from self._generate_ac(requested, cdol2, first=False)
        self.state = "scripts"
        yield from self._run_scripts(after, TVR_SCRIPT_FAILED_AFTER)
        if cid & 0xC0 == TC:
            yield self._outcome("approved", None, with_card=arc is None)
            return
        if arc is None:
            reason = UNABLE_ONLINE
        elif self._host_approved:
            reason = DECLINED_BY_CARD
        else:
            reason = HOST_DECLINED
        yield self._outcome("declined", reason)

    def _split_scripts(self, scripts):
        before, after = [], []
        if not scripts:
            return before, after
        if isinstance(scripts, (bytes, bytearray)):
            scripts = [scripts]
        for blob in scripts:
            try:
                objs = tlv.parse(bytes(blob))
            except TlvError:
                after.append(None)             # counted as a failed script
                continue
            for obj in objs:
                if obj.tag == 0x71:
                    before.append(obj)
                elif obj.tag == 0x72:
                    after.append(obj)
        return before, after

    def _run_scripts(self, scripts, fail_bit):
        for script in scripts:
            self._tsi_set(TSI_SCRIPT_PROCESSING)
            ident = b"\x00\x00\x00\x00"
            commands = []
            ok = script is not None and script.children is not None
            if ok:
                for obj in script.children:
                    if obj.tag == 0x9F18 and len(obj.value) == 4:
                        ident = obj.value
                    elif obj.tag == 0x86 and len(obj.value) >= 4:
                        commands.append(obj.value)
                    else:
                        ok = False
            done = 0
            if ok:
                for command in commands:
                    _, sw = yield from self._xfer(bytes(command))
                    if sw >> 8 not in (0x90, 0x62, 0x63):
                        ok = False
                        break
                    done += 1
            if not ok:
                self._set(fail_bit)
            # b8-b5: 2 performed, 1 failed; b4-b1: the failing command's number
            first = 0x20 if ok else 0x10 | min(done + 1, 15)
            self._script_results += bytes((first,)) + ident
        if self._script_results:
            self.term[0x9F5B] = self._script_results

    # -- contactless (qVSDC-like, one tap) ---------------------------------------------------------

    def _cl_cfg(self, key, default=None):
        own = self.aid_cfg.get("contactless") or {}
        if key in own:
            return own[key]
        return (self.config.get("contactless") or {}).get(key, default)

    def _ttq(self):
        caps = self.caps[1]
        b1 = 0x20 | 0x10                      # qVSDC, EMV contact chip supported
        if not self.online_capable:
            b1 |= 0x08
        if caps & CAP2_ONLINE_PIN and self.online_capable:
            b1 |= 0x04
        if caps & CAP2_SIGNATURE:
            b1 |= 0x02
        b2 = 0
        floor = self._cl_cfg("floor_limit")
        if self.today is None or (floor is not None and self.amount > floor) \
                or self.txn.get("force_online") or self.txn.get("online_preferred"):
            b2 |= 0x80
        cvm_limit = self._cl_cfg("cvm_limit")
        if cvm_limit is not None and self.amount >= cvm_limit:
            b2 |= 0x40
        return bytes((b1, b2, 0x00, 0x80))

    def _run_contactless(self):
        limit = (self.config.get("contactless") or {}).get("transaction_limit")
        if limit is not None and self.amount >= limit:
            raise _Stop(TRY_CONTACT, "above the contactless transaction limit")
        self.state = "selection"
        data, sw = yield from self._select(PPSE)
        if sw != SW_OK:
            raise _Stop(TRY_CONTACT, "SELECT PPSE %04X" % sw)
        fci = tlv.parse_one(data, 0x6F)
        directory = fci.find(0xBF0C)
        cands = []
        for entry in (directory.children if directory is not None else ()):
            if entry.tag != 0x61:
                continue
            adf = entry.find(0x4F)
            if adf is None:
                continue
            cfg = self._match(adf.value)
            if cfg is None:
                continue
            label = entry.find(0x50)
            prio = entry.find(0x87)
            cand = self._candidate(adf.value, label.value if label else None,
                                   prio.value if prio else None, cfg)
            if cand:
                cands.append(cand)
        if not cands:
            raise _Stop(NO_APP)
        cands.sort(key=lambda c: (c["priority"], c["order"]))
        chosen = None
        blocked = False
        for cand in cands:
            data, sw = yield from self._select(cand["aid"])
            if sw == SW_APP_BLOCKED:
                blocked = True
            if sw != SW_OK:
                continue
            try:
                fci = tlv.parse_one(data, 0x6F)
            except TlvError:
                continue
            df = fci.find(0x84)
            if df is not None and df.value == cand["aid"]:
                chosen = (cand, fci)
                break
        if chosen is None:
            raise _Stop(APP_BLOCKED if blocked else NO_APP)
        self.aid_cfg = chosen[0]["cfg"]
        limit = self._cl_cfg("transaction_limit")
        if limit is not None and self.amount >= limit:
            raise _Stop(TRY_CONTACT, "above this application's contactless limit")
        self.term[0x9F66] = self._ttq()
        self.state = "gpo"
        yield from self._initiate(chosen[0], chosen[1])
        self.state = "read_records"
        yield from self._read_application_data()
        self.state = "tap_complete"
        card = self.card
        for tag, size in ((0x9F26, 8), (0x9F36, 2)):
            if tag not in card or len(card[tag]) != size:
                raise _Stop(BAD_DATA, "%s missing or of the wrong length" % tlv.tag_hex(tag))
        self._take_pan_expiry()
        cid = card.get(0x9F27)
        if cid is not None and len(cid) != 1:
            raise _Stop(BAD_DATA, "9F27 length")
        kind = (cid[0] if cid else ARQC) & 0xC0
        if kind not in _AC_RANK:
            raise _Stop(BAD_DATA, "cryptogram type")
        if cid is None:
            card[0x9F27] = bytes((ARQC,))
        self._cryptogram = kind
        if self.today is not None:
            exp = _date_int(card[0x5F24]) if 0x5F24 in card else None
            if exp is not None and self.today > exp:
                self._set(TVR_EXPIRED)
        if kind == AAC:
            self._arc = "Z1"
            yield self._outcome("declined", DECLINED_BY_CARD)
            return
        online = kind == ARQC
        ctq = card.get(0x9F6C)
        if kind == TC:
            if _bits(self._tvr, TVR_EXPIRED):
                yield self._outcome("declined", DECLINED_BY_CARD)
                return
            if not self._fdda():
                if ctq and ctq[0] & 0x20 and self.online_capable:
                    online = True
                elif ctq and ctq[0] & 0x10:
                    raise _Stop(TRY_CONTACT, "fDDA failed; card asks for contact")
                else:
                    yield self._outcome("declined", ODA_FAILED)
                    return
        self.state = "cvm"
        ok = yield from self._contactless_cvm(ctq, online)
        if not ok:
            yield self._outcome("declined", NOT_ACCEPTED)
            return
        if not online:
            self._arc = "Y1"
            self.term[0x8A] = b"Y1"
            yield self._outcome("approved", None, with_card=True)
            return
        if not self.online_capable:
            yield self._outcome("declined", UNABLE_ONLINE)
            return
        self.state = "online"
        arc, _, _, _ = yield self._go_online_step(tap_complete=True)
        if arc is None:
            self._arc = "Z3"
            yield self._outcome("declined", UNABLE_ONLINE)
            return
        self._online = True
        self._arc = arc
        if arc in self._approve_codes():
            yield self._outcome("approved", None)
        else:
            yield self._outcome("declined", HOST_DECLINED)

    def _fdda(self):
        """A Visa-style fDDA of a contactless offline approval: the ICC key from the
        records' certificates, then 9F4B over 9F37 | 9F02 | 5F2A | 9F69."""
        signed = self.card.get(0x9F4B)
        if signed is None or not (self.aip[0] & AIP_DDA) or not self.caps[2] & CAP3_DDA:
            self._set(TVR_ODA_NOT_PERFORMED)
            return False
        self._tsi_set(TSI_ODA_PERFORMED)
        try:
            key = self._icc_public_key(self._static_input())
            dyn_input = self.term[0x9F37] + self.term[0x9F02] + self.term[0x5F2A] + \
                self.card.get(0x9F69, b"")
            dyn = verify_dynamic_signature(key[0], key[1], signed, dyn_input)
            if not dyn or dyn[0] + 1 > len(dyn):
                raise OdaError("ICC dynamic number")
            self.card[0x9F4C] = dyn[1:1 + dyn[0]]
            return True
        except (OdaError, TlvError) as exc:
            self.oda_error = str(exc)
            self._set(TVR_DDA_FAILED)
            return False

    def _contactless_cvm(self, ctq, online):
        """The card's CTQ (9F6C) asks for online PIN or signature; without one, above
        the CVM limit the terminal asks for online PIN if it can, else a signature."""
        caps = self.caps[1]
        cvm_limit = self._cl_cfg("cvm_limit")
        needed = cvm_limit is not None and self.amount >= cvm_limit
        cdcvm = bool(ctq and len(ctq) > 1 and ctq[1] & 0x80)
        wanted = []
        if ctq and ctq[0] & 0x80:
            wanted.append("pin")
        if ctq and ctq[0] & 0x40:
            wanted.append("signature")
        if not wanted:
            if cdcvm or not needed:
                self.cvm_results = b"\x3f\x00\x02" if cdcvm else \
                    bytes((CVM_NO_CVM, 0x00, CVM_RESULT_SUCCESS))
                return True
            wanted = ["pin", "signature"]
        for method in wanted:
            if method == "pin" and caps & CAP2_ONLINE_PIN and online and self.online_capable:
                if (yield from self._online_pin()):
                    self.cvm = "online_pin"
                    self.cvm_results = bytes((CVM_ONLINE_PIN, 0x00, CVM_RESULT_UNKNOWN))
                    return True
            elif method == "signature" and caps & CAP2_SIGNATURE:
                self.cvm = "signature"
                self.signature = True
                self.cvm_results = bytes((CVM_SIGNATURE, 0x00, CVM_RESULT_UNKNOWN))
                return True
        self._set(TVR_CVM_NOT_SUCCESSFUL)
        self.cvm_results = b"\x3f\x00\x01"
        return False
