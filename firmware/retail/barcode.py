"""What a scanned code is, the key the catalogue finds it by, and scale labels.

Check digits follow the GS1 General Specifications (section 7.9): the GS1 modulo-10
check digit for EAN-13, EAN-8, UPC-A and UPC-E (UPC-E takes the check digit of the
UPC-A it expands to), and the price/weight verifier digit of variable-measure labels.

The catalogue stores, and classify() returns, one lookup key per code:
  EAN-13, UPC-A, UPC-E  -> the GTIN-13, 13 digits (UPC-A gets a leading 0, UPC-E is
                           expanded to its UPC-A first), so one item is found whichever
                           of the three forms its maker printed or its scanner sent;
  EAN-8                 -> the 8 digits as scanned (a GTIN-8 is not a GTIN-13);
  Code 128 free text    -> the text as scanned (printable ASCII, 1 to 48 characters).

Eight digits alone can be a valid EAN-8 and a valid UPC-E at once (01234565 is both).
Without the scanner's symbology identifier, a code that starts with 0 or 1 and passes
the UPC-E check is taken as UPC-E (EAN-8s beginning with 0 or 1 are rare in-store
numbers; UPC-E always begins with 0 or 1) and the EAN-8 reading is offered in
alt_keys, for the catalogue to try when the first key finds nothing.
"""

from firmware.core import config
from firmware.core.money import exponent

KINDS = ("ean13", "ean8", "upca", "upce", "code128")
MAX_FREE = 48          # the longest Code 128 free code accepted

# AIM symbology identifiers (ISO/IEC 15424) a scanner may put in front of a code
AIM_KINDS = {
    "]E0": "ean",       # EAN-13, UPC-A or UPC-E, told apart by length
    "]E4": "ean8",
    "]C0": "code128", "]C1": "code128", "]C2": "code128", "]C4": "code128",
}


class Barcode:
    """A classified code.

    kind:     "ean13" | "ean8" | "upca" | "upce" | "code128" | "receipt" (a receipt's own
              code, firmware/retail/receipt_code.py: never an item's) | None (None: not a
              code this terminal reads, see reason)
    key:      the catalogue lookup key, or None when ok is False
    alt_keys: other keys to try, in order, when key finds nothing (see module doc)
    ok:       False for a bad barcode: the screen says "Bad barcode, scan again"
    reason:   None, or "check_digit" | "length" | "chars" | "receipt"
    code:     the code as given
    """

    def __init__(self, code, kind, key=None, ok=True, reason=None, alt_keys=None):
        self.code = code
        self.kind = kind
        self.key = key
        self.ok = ok
        self.reason = reason
        self.alt_keys = alt_keys or []

    def keys(self):
        """Every lookup key, the preferred one first."""
        return ([self.key] if self.key else []) + self.alt_keys

    def __eq__(self, other):
        return isinstance(other, Barcode) and self.__dict__ == other.__dict__

    def __repr__(self):
        return "Barcode(%r, kind=%r, key=%r, ok=%r, reason=%r, alt_keys=%r)" % (
            self.code, self.kind, self.key, self.ok, self.reason, self.alt_keys)


def _bad(code, kind, reason):
    return Barcode(code, kind, None, False, reason)


def is_digits(text):
    if not text:
        return False
    for ch in text:
        if not "0" <= ch <= "9":
            return False
    return True


def check_digit(body):
    """The GS1 modulo-10 check digit of a string of digits (the code without its check
    digit): weights 3, 1, 3, ... from the rightmost digit, the digit that brings the
    sum to a multiple of ten."""
    if not is_digits(body):
        raise ValueError("digits only: %r" % body)
    total = 0
    weight = 3
    for i in range(len(body) - 1, -1, -1):
        total += (ord(body[i]) - 48) * weight
        weight = 4 - weight
    return (10 - total % 10) % 10


def valid_check(code):
    """True when the last digit of a GS1 code is its check digit."""
    return is_digits(code) and len(code) > 1 and check_digit(code[:-1]) == ord(code[-1]) - 48


def upce_to_upca(upce):
    """The UPC-A (12 digits, with its check digit) that a UPC-E stands for.

    upce is 8 digits (number system, six digits d1..d6, check digit) or 7 without its
    check digit. The number system must be 0 or 1. By d6 (GS1 General Specifications,
    UPC-E zero suppression):
      0, 1, 2 -> NS d1 d2 d6 0 0 0 0 d3 d4 d5
      3       -> NS d1 d2 d3 0 0 0 0 0 d4 d5
      4       -> NS d1 d2 d3 d4 0 0 0 0 0 d5
      5 to 9  -> NS d1 d2 d3 d4 d5 0 0 0 0 d6
    The check digit returned is the UPC-A's own; a UPC-E is valid when its last digit
    equals it. Raises ValueError for anything else.
    """
    if not is_digits(upce) or len(upce) not in (7, 8) or upce[0] not in "01":
        raise ValueError("a UPC-E is 7 or 8 digits starting with 0 or 1: %r" % upce)
    ns = upce[0]
    d = upce[1:7]
    last = d[5]
    if last in "012":
        body = ns + d[0:2] + last + "0000" + d[2:5]
    elif last == "3":
        body = ns + d[0:3] + "00000" + d[3:5]
    elif last == "4":
        body = ns + d[0:4] + "00000" + d[4]
    else:
        body = ns + d[0:5] + "0000" + last
    return body + str(check_digit(body))


def _valid_upce(code):
    return len(code) == 8 and code[0] in "01" and upce_to_upca(code)[11] == code[7]


def split_aim(text):
    """(symbology identifier or None, code) for a scan that may start with an AIM
    identifier such as "]E0" (scanners send one when configured to)."""
    if len(text) >= 3 and text[0] == "]" and text[:3] in AIM_KINDS:
        return text[:3], text[3:]
    return None, text


def classify(code, symbology=None):
    """Barcode for a scanned code.

    symbology, when the scanner tells it: an AIM identifier ("]E0", "]E4", "]C0"...)
    or one of KINDS; any other is ignored. Without it, digits-only codes of 8, 12 and 13 digits are EAN-8 or
    UPC-E, UPC-A and EAN-13 and must pass their check digit; any other printable ASCII
    text of 1 to 48 characters is a Code 128 free code.
    """
    # an identifier this module does not know (a QR code's ]Q1, an add-on's ]E3) tells
    # nothing: the code is read as if none had come
    hint = AIM_KINDS.get(symbology) or (symbology if symbology in KINDS else None)
    if not code or len(code) > MAX_FREE:
        return _bad(code, None, "length")
    for ch in code:
        if not " " <= ch <= "~":
            return _bad(code, None, "chars")
    from firmware.retail import receipt_code
    if receipt_code.is_receipt_code(code):
        # the terminal's receipts print it: a refund finds the sale by it, a cart or
        # the catalogue must never take it for an item
        return Barcode(code, "receipt", None, ok=False, reason="receipt")
    if hint == "code128":
        return Barcode(code, "code128", code)
    digits = is_digits(code)
    if hint is None and not (digits and len(code) in (8, 12, 13)):
        return Barcode(code, "code128", code)
    # a retail symbol: EAN-13, UPC-A, EAN-8 or UPC-E
    size = len(code)
    if hint == "ean":
        hint = {13: "ean13", 12: "upca", 8: "upce"}.get(size)
    expected = {"ean13": 13, "upca": 12, "ean8": 8, "upce": 8}
    if hint is not None and expected.get(hint) != size:
        return _bad(code, hint, "length")
    kind = hint or {13: "ean13", 12: "upca", 8: None}[size]
    if not digits:
        return _bad(code, kind, "chars")
    if kind == "ean13":
        if valid_check(code):
            return Barcode(code, "ean13", code)
        return _bad(code, "ean13", "check_digit")
    if kind == "upca":
        if valid_check(code):
            return Barcode(code, "upca", "0" + code)
        return _bad(code, "upca", "check_digit")
    as_ean8 = kind in (None, "ean8") and valid_check(code)
    as_upce = kind in (None, "upce") and code[0] in "01" and _valid_upce(code)
    if as_upce:
        return Barcode(code, "upce", "0" + upce_to_upca(code), alt_keys=[code] if as_ean8 else None)
    if as_ean8:
        return Barcode(code, "ean8", code)
    return _bad(code, kind or "ean8", "check_digit")


def lookup_key(code, symbology=None):
    """The catalogue key for a code, or None for a bad one (for imports and typing)."""
    return classify(code, symbology).key


# -- variable-measure (scale) labels ------------------------------------------------
#
# An EAN-13 whose GS1 prefix is a restricted circulation number (02, 04, 20-29: the
# store or the region decides what follows) printed by a scale or a labeller:
#
#   P P  I...I  [V]  N...N  C        13 digits
#   prefix (2), the PLU (plu_digits, 4 to 6), an optional price/weight verifier
#   digit V (check = true), the value N (the remaining 4 to 6 digits), the check C.
#
# layout "price":  N is the price of the package with `decimals` decimals; it becomes
#                  the currency's minor units (decimals 2 in CNY: 01234 -> 12.34 ->
#                  1234 fen; decimals 0: 01234 -> 1234.00 -> 123400 fen). A label with
#                  more decimals than the currency has must end in zeros there.
# layout "weight": N is the net weight in kilograms with `decimals` decimals (3: grams,
#                  so 00452 -> 0.452 kg -> 452 g; 2: tens of grams).
#
# The verifier digit (GS1 General Specifications 7.9.3 and 7.9.4) covers a 4-digit or a
# 5-digit value, so check = true needs plu_digits 5 (value 4) or 4 (value 5).

# What a rule may say and the default rules live with [retail] scale_rules in
# firmware.core.config, which checks them.
SCALE_LAYOUTS = config.SCALE_LAYOUTS
SCALE_PREFIXES = config.SCALE_PREFIXES
DEFAULT_SCALE_RULES = config.DEFAULT_SCALE_RULES

# the products of a digit and a GS1 verifier weighting factor (7.9.3)
_TWO_MINUS = (0, 2, 4, 6, 8, 9, 1, 3, 5, 7)     # 2-: units of 2d minus its tens digit
_THREE = (0, 3, 6, 9, 2, 5, 8, 1, 4, 7)         # 3:  units of 3d
_FIVE_PLUS = (0, 5, 1, 6, 2, 7, 3, 8, 4, 9)     # 5+: units of 5d plus its tens digit
_FIVE_MINUS = (0, 5, 9, 4, 8, 3, 7, 2, 6, 1)    # 5-: units of 5d minus its tens digit


def value_check_digit(value):
    """The price/weight verifier digit of a 4- or 5-digit value (GS1 7.9.3-7.9.4).

    4 digits: weighting factors 2-, 2-, 3, 5-; the sum times 3, its units digit.
    5 digits: weighting factors 5+, 2-, 5-, 5+, 2-; ten minus the sum's units digit
    (0 for 10), then the digit whose 5- product is that number.
    """
    if not is_digits(value) or len(value) not in (4, 5):
        raise ValueError("a verifier digit covers 4 or 5 digits: %r" % value)
    d = [ord(ch) - 48 for ch in value]
    if len(d) == 4:
        total = _TWO_MINUS[d[0]] + _TWO_MINUS[d[1]] + _THREE[d[2]] + _FIVE_MINUS[d[3]]
        return total * 3 % 10
    total = (_FIVE_PLUS[d[0]] + _TWO_MINUS[d[1]] + _FIVE_MINUS[d[2]] + _FIVE_PLUS[d[3]]
             + _TWO_MINUS[d[4]])
    return _FIVE_MINUS.index((10 - total % 10) % 10)


def value_digits(rule):
    return 10 - rule["plu_digits"] - (1 if rule["check"] else 0)


def scale_rule_for(code, rules):
    """The rule whose prefixes the code (a GTIN-13) starts with, or None."""
    if len(code) != 13:
        return None
    for rule in rules:
        if code[:2] in rule["prefixes"]:
            return rule
    return None


def parse_scale(code, rules, currency):
    """Read a scale label: None when the code is no label under these rules, else a dict

      {"ok": True, "plu": "01234", "price": minor units or None, "grams": int or None,
       "layout": "price" | "weight"}
    or {"ok": False, "reason": "check_digit" | "value_check" | "decimals", "plu": ...}
    for a label that matches a rule's prefix but cannot be read (bad barcode).

    code: 13 digits (or a 12-digit UPC-A, read as its GTIN-13); rules: validated
    [retail] scale_rules (see DEFAULT_SCALE_RULES); currency: its ISO 4217 code.
    """
    if is_digits(code) and len(code) == 12:
        code = "0" + code
    if not is_digits(code):
        return None
    rule = scale_rule_for(code, rules)
    if rule is None:
        return None
    plu_end = 2 + rule["plu_digits"]
    plu = code[2:plu_end]
    value = code[plu_end + (1 if rule["check"] else 0):12]
    result = {"ok": False, "reason": None, "plu": plu, "price": None, "grams": None,
              "layout": rule["layout"]}
    if not valid_check(code):
        result["reason"] = "check_digit"
        return result
    if rule["check"] and value_check_digit(value) != ord(code[plu_end]) - 48:
        result["reason"] = "value_check"
        return result
    number = int(value)
    currency_exponent = exponent(currency)
    decimals = rule["decimals"]
    if rule["layout"] == "weight":
        result["grams"] = number * 10 ** (3 - decimals) if decimals <= 3 else None
        if result["grams"] is None:
            result["reason"] = "decimals"
            return result
    else:
        if decimals <= currency_exponent:
            result["price"] = number * 10 ** (currency_exponent - decimals)
        else:
            step = 10 ** (decimals - currency_exponent)
            if number % step:
                result["reason"] = "decimals"
                return result
            result["price"] = number // step
    result["ok"] = True
    return result


def make_scale_code(rule, plu, value):
    """The label code a scale prints for plu and value (a digit string, or an int
    padded to the rule's value digits): for tests, the simulator and the docs."""
    width = value_digits(rule)
    if not isinstance(value, str):
        value = "%0*d" % (width, value)
    if len(plu) != rule["plu_digits"] or len(value) != width:
        raise ValueError("plu %r / value %r do not fit the rule" % (plu, value))
    body = rule["prefixes"][0] + plu + (str(value_check_digit(value)) if rule["check"] else "") + value
    return body + str(check_digit(body))
