"""QR payment messages: what the terminal sends the aggregated-payment acquirer and how
it checks what comes back (docs/qr-protocol.md). Pure logic, MicroPython-compatible;
the HTTPS transport is drivers/qrlink.py.

Signatures. sign = lowercase hex HMAC-SHA256 under the merchant key over the canonical
string: every top-level field but `sign` whose value is not None and not "", sorted by
key (UTF-8 byte order), written key=value (strings as themselves, integers in decimal,
booleans true/false) and joined with "&". HMAC is written here over hashlib.sha256 (RFC
2104), since MicroPython may have no `hmac`; tests/portable/test_qrmsg.py checks it
against RFC 4231 and the protocol page's worked examples.

Requests. QrMessages(mch_id, terminal_id, key, nonce, clock) builds each op's signed
body as a dict: pay, query, cancel, create, close, refund. `nonce()` returns 16-32 hex
digits, fresh each call (the caller feeds it from os.urandom or the board's RNG);
`clock()` returns UTC seconds since 1970-01-01. A retry is a new request: build it
again (new nonce, timestamp and sign), never resend an old dict, except on the same
connection-level retry drivers/qrlink.py documents.

Responses. QrMessages.check_response(request, response) (or the module's
check_response(request, response, key)) -> None when the answer can be believed,
else a short reason; anything but None means "unknown": the flow queries (and at last
cancels), it never takes it for a refusal or a payment:

    "not_json"       not a JSON object (bytes/str that do not parse, or None)
    "bad_sign"       sign missing, not a string, or not the merchant key's signature
    "wrong_order"    out_trade_no (or out_refund_no) differs from the request's, or a
                     SUCCESS answer lacks one the request carried
    "wrong_amount"   total_fee (or refund_fee) differs from the request's, or is not an
                     integer

Payment codes. classify_code(code) -> "wechat" | "alipay" | "unionpay" | None, and
mask_code(code) -> first 4 and last 4 digits, the rest "*": the only form of a
customer's payment code that may be stored, shown or logged.
"""
import binascii
import hashlib
import json

from firmware.core.dates import civil_from_days

OPS = ("pay", "query", "cancel", "create", "close", "refund")

NOT_JSON = "not_json"
BAD_SIGN = "bad_sign"
WRONG_ORDER = "wrong_order"
WRONG_AMOUNT = "wrong_amount"

_HEX = "0123456789abcdefABCDEF"
_DIGITS = "0123456789"
_BLOCK = 64                      # SHA-256's block size in bytes


# -- HMAC-SHA256 (RFC 2104) ------------------------------------------------------------

def _bytes(value):
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def hmac_sha256(key, message):
    """HMAC-SHA256(key, message) as 32 bytes; key and message are bytes (or str,
    taken as UTF-8)."""
    key = _bytes(key)
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (_BLOCK - len(key))
    inner = bytearray(_BLOCK)
    outer = bytearray(_BLOCK)
    for i in range(_BLOCK):
        inner[i] = key[i] ^ 0x36
        outer[i] = key[i] ^ 0x5C
    h = hashlib.sha256(bytes(inner))
    h.update(_bytes(message))
    inner_digest = h.digest()
    h = hashlib.sha256(bytes(outer))
    h.update(inner_digest)
    return h.digest()


def hex_text(data):
    return binascii.hexlify(data).decode()


def equal_text(a, b):
    """Compare two strings in time that depends on their lengths only, not on where
    they differ (a signature must not be guessable byte by byte)."""
    a = _bytes(a)
    b = _bytes(b)
    diff = len(a) ^ len(b)
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else 0
        y = b[i] if i < len(b) else 0
        diff |= x ^ y
    return diff == 0


# -- canonical string, sign, verify -------------------------------------------------------

def field_text(value):
    """A field's value as the canonical string writes it; ValueError for anything the
    protocol does not allow (a float, a list, a nested object)."""
    if isinstance(value, bool):              # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise ValueError("a QR message field must be a string, an integer or a boolean")


def _utf8(key):
    return key.encode("utf-8")


def canonical_string(fields):
    """The text that is signed (a str; sign its UTF-8 bytes)."""
    parts = []
    for key in sorted(fields, key=_utf8):
        value = fields[key]
        if key == "sign" or value is None or value == "":
            continue
        parts.append(key + "=" + field_text(value))
    return "&".join(parts)


def make_sign(fields, key):
    """The lowercase hex HMAC-SHA256 of the canonical string under key (bytes)."""
    return hex_text(hmac_sha256(key, canonical_string(fields).encode("utf-8")))


def signed(fields, key):
    """A copy of fields without None values, with its sign."""
    out = {}
    for name in fields:
        if name != "sign" and fields[name] is not None:
            out[name] = fields[name]
    out["sign"] = make_sign(out, key)
    return out


def verify(fields, key):
    """True when fields carries the key's signature (lowercase hex, as sent)."""
    if not isinstance(fields, dict):
        return False
    given = fields.get("sign")
    if not isinstance(given, str):
        return False
    try:
        expected = make_sign(fields, key)
    except (ValueError, UnicodeError):
        return False
    return equal_text(expected, given)


# -- time ---------------------------------------------------------------------------------

def utc_stamp(epoch):
    """UTC YYYYMMDDhhmmss of seconds since 1970-01-01."""
    epoch = int(epoch)
    days = epoch // 86400
    secs = epoch - days * 86400
    year, month, day = civil_from_days(days)
    return "%04d%02d%02d%02d%02d%02d" % (year, month, day, secs // 3600,
                                         (secs // 60) % 60, secs % 60)


# -- requests -----------------------------------------------------------------------------

def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _need_text(name, value):
    if not isinstance(value, str) or not value:
        raise ValueError("%s must be a non-empty string" % name)


def _need_amount(name, value):
    if not _is_int(value) or value <= 0:
        raise ValueError("%s must be an integer above 0 (minor units)" % name)


def valid_nonce(nonce):
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 32:
        return False
    for ch in nonce:
        if ch not in _HEX:
            return False
    return True


def nonce_from_bytes(data):
    """A nonce from random bytes (8 to 16 of them): their hex."""
    return hex_text(bytes(data))


class QrMessages:
    """Signed request bodies for one merchant and terminal.

    nonce: callable returning 16-32 hex digits, fresh each call (ValueError if not).
    clock: callable returning UTC seconds since 1970 (int or float).
    Each op method returns a new dict ready to be sent as JSON; the op's name is the
    method's (POST /v1/<op>). ValueError for a missing or malformed field: the
    terminal's own fault, nothing to send.
    """

    def __init__(self, mch_id, terminal_id, key, nonce, clock):
        _need_text("mch_id", mch_id)
        _need_text("terminal_id", terminal_id)
        self.mch_id = mch_id
        self.terminal_id = terminal_id
        self.key = _bytes(key)
        if not self.key:
            raise ValueError("the merchant key is empty")
        self.nonce = nonce
        self.clock = clock

    def build(self, op, fields):
        """The signed body of op with fields (beside the common ones)."""
        if op not in OPS:
            raise ValueError("unknown QR op %r" % (op,))
        nonce = self.nonce()
        if not valid_nonce(nonce):
            raise ValueError("the nonce source gave %r, not 16-32 hex digits" % (nonce,))
        body = {"mch_id": self.mch_id, "terminal_id": self.terminal_id, "nonce": nonce,
                "timestamp": utc_stamp(self.clock())}
        for name in fields:
            if name in body or name == "sign":
                raise ValueError("%s is set by the terminal, not the caller" % name)
            if fields[name] is not None:
                field_text(fields[name])     # ValueError for a float, list or dict
            body[name] = fields[name]
        return signed(body, self.key)

    def pay(self, out_trade_no, auth_code, total_fee, currency="CNY", body=""):
        _need_text("out_trade_no", out_trade_no)
        if isinstance(auth_code, str):
            auth_code = auth_code.strip()       # a scanner's line end, as classify_code
        if not isinstance(auth_code, str) or not auth_code or not _all_digits(auth_code):
            raise ValueError("auth_code must be the payment code's digits")
        _need_amount("total_fee", total_fee)
        _need_text("currency", currency)
        return self.build("pay", {"out_trade_no": out_trade_no, "auth_code": auth_code,
                                  "total_fee": total_fee, "currency": currency,
                                  "body": body or ""})

    def query(self, out_trade_no):
        _need_text("out_trade_no", out_trade_no)
        return self.build("query", {"out_trade_no": out_trade_no})

    def cancel(self, out_trade_no):
        _need_text("out_trade_no", out_trade_no)
        return self.build("cancel", {"out_trade_no": out_trade_no})

    def close(self, out_trade_no):
        _need_text("out_trade_no", out_trade_no)
        return self.build("close", {"out_trade_no": out_trade_no})

    def create(self, out_trade_no, total_fee, currency="CNY", body=""):
        _need_text("out_trade_no", out_trade_no)
        _need_amount("total_fee", total_fee)
        _need_text("currency", currency)
        return self.build("create", {"out_trade_no": out_trade_no, "total_fee": total_fee,
                                     "currency": currency, "body": body or ""})

    def refund(self, out_trade_no, out_refund_no, refund_fee):
        _need_text("out_trade_no", out_trade_no)
        _need_text("out_refund_no", out_refund_no)
        _need_amount("refund_fee", refund_fee)
        return self.build("refund", {"out_trade_no": out_trade_no,
                                     "out_refund_no": out_refund_no,
                                     "refund_fee": refund_fee})

    def check_response(self, request, response):
        """check_response(request, response, this merchant's key)."""
        return check_response(request, response, self.key)


# -- responses ----------------------------------------------------------------------------

def parse_json(raw):
    """A JSON object from bytes or str, or None (not UTF-8, not JSON, not an object)."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeError:
            return None
    if not isinstance(raw, str):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def check_response(request, response, key):
    """None if response (a dict, or the body's bytes/str) is a verified answer to
    request (the dict that was sent) under the merchant key; else NOT_JSON, BAD_SIGN,
    WRONG_ORDER or WRONG_AMOUNT. QrMessages.check_response(request, response) passes
    its own key."""
    fields = parse_json(response)
    if fields is None:
        return NOT_JSON
    if not verify(fields, _bytes(key)):
        return BAD_SIGN
    success = fields.get("code") == "SUCCESS"
    for name in ("out_trade_no", "out_refund_no"):
        if name not in request:
            continue
        got = fields.get(name)
        if got is None:
            if success:             # a SUCCESS answer echoes the order (and refund) number
                return WRONG_ORDER
            continue
        if got != request[name]:
            return WRONG_ORDER
    for name in ("total_fee", "refund_fee"):
        if name not in request or name not in fields:
            continue
        got = fields[name]
        if not _is_int(got) or got != request[name]:
            return WRONG_AMOUNT
    return None


# -- payment codes ------------------------------------------------------------------------

def _all_digits(text):
    for ch in text:
        if ch not in _DIGITS:
            return False
    return True


def classify_code(code):
    """The channel of a customer's payment code: "wechat" (18 digits starting 10-15),
    "alipay" (16-24 digits starting 25-30), "unionpay" (19 digits starting 62), or
    None. Surrounding whitespace (a scanner's line end) is ignored."""
    if not isinstance(code, str):
        return None
    code = code.strip()
    if not code or not _all_digits(code):
        return None
    n = len(code)
    head = int(code[:2]) if n >= 2 else -1
    if n == 18 and 10 <= head <= 15:
        return "wechat"
    if 16 <= n <= 24 and 25 <= head <= 30:
        return "alipay"
    if n == 19 and head == 62:
        return "unionpay"
    return None


def mask_code(code):
    """The payment code with all but its first 4 and last 4 characters as "*"
    (1345********6789); a code of 8 or fewer characters is all stars."""
    if not isinstance(code, str):
        return ""
    code = code.strip()
    n = len(code)
    if n <= 8:
        return "*" * n
    return code[:4] + "*" * (n - 8) + code[-4:]
