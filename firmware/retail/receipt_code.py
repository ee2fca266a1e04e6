"""The barcode a sale's receipt carries, so a refund can pick the sale by scanning it.

The data (what the symbol encodes and the scanner sends):

    R TT NNNNNN CC        e.g. R 71 000123 89 -> "R7100012389" (T0000001's #123)

    R       the prefix. A letter, so the code is never read as an EAN/UPC item code
            (those are 8, 12 or 13 digits and nothing else).
    TT      the terminal's check: its TID read as a number the way an IBAN is (a
            digit as itself, A to Z as 10 to 35, any other character as its code
            point in decimal), modulo 97: 00 to 96. See "Binding" below.
    N...N   the journal record number, zero padded to at least 6 digits and to an
            even count, so every digit pair goes into one Code 128 set C symbol.
    CC      ISO 7064 MOD 97-10 check digits over TT and N...N (as in an IBAN): the
            digits with CC read as one number leave 1 modulo 97. Any one wrong digit,
            and any two neighbouring digits swapped, fail it, so a misread or a
            mistyped code is refused instead of picking another sale.

Width. A 58 mm head prints 384 dots; at a module of 2 dots (0.25 mm, what a scanner
reads well off thermal paper) that is 192 modules, and the symbol wants a quiet zone
of 10 modules each side. Code 128 costs 11 modules a symbol plus 35 for start, check
and stop, so at most 12 data symbols fit. "R" is one set B symbol, the switch to set
C one more, then one symbol per digit pair: record numbers up to 999999 take 7 data
symbols, 112 modules, 224 dots (264 with the quiet zones). The printer driver sends a
pair 16 that comes before 04, 05 or 20 in set B instead (3 symbols more; a DLE there
would be a real-time command to the printer): still on the paper.

Binding. The whole TID (8 characters, letters allowed) would take 8 more set B
symbols and overflow the paper, so the code carries a 2-digit check of it instead.
It tells a receipt of another terminal from one of this terminal except when the two
TIDs share the check: 1 chance in 97 for two unrelated TIDs. A shop's terminals
numbered in a row (T0000001 to T0000097) never share it, nor do two TIDs that differ
in one digit, or one capital letter, only: 10 and 100 are prime to 97. A code that
passes the check on the wrong terminal finds a record with that number there, so the
refund screen shows the sale it found (number, amount) before paying anything back.

Code 128 (ISO/IEC 15417) is written here from the standard's table of 107 symbol
patterns, with the segmentation the printer's GS k command takes (code128_segments),
the symbol values with the mod-103 check (code128_symbols), the bar and space widths
(code128_modules) and their decoding (code128_decode) for the tests and the virtual
printer. Sets B and C only: the receipt never needs control characters (set A).
"""

PREFIX = "R"
MIN_DIGITS = 6          # record number digits at least
MAX_DIGITS = 16         # and at most (the symbol then just fits, see max_data_symbols)
MODULE_DOTS = 2         # the printer's module width, dots (GS w 2)
QUIET = 10              # quiet zone each side, modules
PAPER_DOTS = 384        # a 58 mm head at 203 dpi

# The reasons a scanned code is not a record of this terminal (ReceiptCodeError.reason).
NOT_RECEIPT = "not_receipt"
MISREAD = "misread"
OTHER_TERMINAL = "other_terminal"


class ReceiptCodeError(ValueError):
    """A scanned code that is no receipt of this terminal; reason says which case."""
    reason = None


class NotReceiptCode(ReceiptCodeError):
    """Not a receipt code at all (an item's barcode, a QR payload...): let the caller
    read it as something else."""
    reason = NOT_RECEIPT


class Misread(ReceiptCodeError):
    """Shaped like a receipt code, but its check digits fail: scan again."""
    reason = MISREAD


class OtherTerminal(ReceiptCodeError):
    """A good receipt code printed by another terminal (its TID check differs).
    number: the record number it names there."""
    reason = OTHER_TERMINAL

    def __init__(self, code, number):
        super().__init__("receipt of another terminal: %r" % code)
        self.number = number


def tid_check(tid):
    """The terminal's 2-digit check, 0 to 96: the TID as a number, IBAN-style (a digit
    as itself, A to Z as 10 to 35, any other character as its code point), modulo 97."""
    value = 0
    for ch in tid:
        if "0" <= ch <= "9":
            part = ch
        elif "A" <= ch <= "Z":
            part = str(ord(ch) - 55)
        else:
            part = str(ord(ch))
        for digit in part:
            value = (value * 10 + ord(digit) - 48) % 97
    return value


def _mod97(digits):
    value = 0
    for ch in digits:
        value = (value * 10 + ord(ch) - 48) % 97
    return value


def check_digits(payload):
    """ISO 7064 MOD 97-10 check of a digit string: the two digits that make
    payload + check leave 1 modulo 97."""
    return "%02d" % (98 - _mod97(payload + "00"))


def encode(tid, number):
    """The receipt code of journal record number (an int, 0 or more) of terminal tid,
    e.g. encode("T0000001", 123) -> "R7100012389". ValueError when the number has more
    than MAX_DIGITS digits or is not a whole number of 0 or more."""
    if not isinstance(number, int) or number < 0:
        raise ValueError("a record number is a whole number, 0 or more: %r" % (number,))
    digits = str(number)
    if len(digits) > MAX_DIGITS:
        raise ValueError("record number too long for a receipt code: %d" % number)
    size = max(MIN_DIGITS, len(digits))
    size += size % 2
    payload = "%02d" % tid_check(tid) + "0" * (size - len(digits)) + digits
    return PREFIX + payload + check_digits(payload)


def is_receipt_code(code):
    """True when code has a receipt code's shape (prefix, digits, length): whether it
    is good and this terminal's, parse() tells."""
    if not code or code[0] != PREFIX:
        return False
    body = code[1:]
    for ch in body:
        if not "0" <= ch <= "9":
            return False
    return 4 + MIN_DIGITS <= len(body) <= 4 + MAX_DIGITS


def parse(code, tid):
    """The record number (int) a receipt code of terminal tid names.

    Raises NotReceiptCode when code is not a receipt code at all, Misread when its
    check digits fail, OtherTerminal when it is a good code of another terminal (the
    number is on the exception); all three are ReceiptCodeError (a ValueError) with
    .reason NOT_RECEIPT, MISREAD or OTHER_TERMINAL.
    """
    if not is_receipt_code(code):
        raise NotReceiptCode("not a receipt code: %r" % (code,))
    body = code[1:]
    if _mod97(body) != 1:
        raise Misread("receipt code misread: %r" % code)
    number = int(body[2:-2])
    if int(body[:2]) != tid_check(tid):
        raise OtherTerminal(code, number)
    return number


# -- Code 128 ------------------------------------------------------------------------
#
# Each symbol is six elements, bar space bar space bar space, 1 to 4 modules each and
# 11 modules in all; the stop is seven (its last bar is the 2-module termination bar).
# Value 0-102 are data (set B: the character ASCII 32 + value; set C: the pair 00-99),
# 103/104/105 start A/B/C, 106 stop. In sets A and B 99 switches to set C; in sets A
# and C 100 switches to set B.
PATTERNS = (
    "212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312",
    "132212", "221213", "221312", "231212", "112232", "122132", "122231", "113222",
    "123122", "123221", "223211", "221132", "221231", "213212", "223112", "312131",
    "311222", "321122", "321221", "312212", "322112", "322211", "212123", "212321",
    "232121", "111323", "131123", "131321", "112313", "132113", "132311", "211313",
    "231113", "231311", "112133", "112331", "132131", "113123", "113321", "133121",
    "313121", "211331", "231131", "213113", "213311", "213131", "311123", "311321",
    "331121", "312113", "312311", "332111", "314111", "221411", "431111", "111224",
    "111422", "121124", "121421", "141122", "141221", "112214", "112412", "122114",
    "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111",
    "111242", "121142", "121241", "114212", "124112", "124211", "411212", "421112",
    "421211", "212141", "214121", "412121", "111143", "111341", "131141", "114113",
    "114311", "411113", "411311", "113141", "114131", "311141", "411131", "211412",
    "211214", "211232", "2331112",
)
START_A, START_B, START_C, STOP = 103, 104, 105, 106
CODE_C, CODE_B, CODE_A = 99, 100, 101
SHIFT = 98
_VALUES = {}
for _value in range(len(PATTERNS) - 1):
    _VALUES[PATTERNS[_value]] = _value


def _digit_run(data, i):
    n = i
    while n < len(data) and "0" <= data[n] <= "9":
        n += 1
    return n - i


def code128_segments(data):
    """The data cut into [("B", text) | ("C", digits)] the way the symbol encodes it,
    fewest symbols first (ISO/IEC 15417 annex E, sets B and C): set C from the start
    when the data begins with 4 or more digits (or is 2 digits), a switch to C for a
    run of 6 digits or more, or of 4 or more at the end, its odd digit kept in B.
    data: printable ASCII (32 to 126), 1 character or more; ValueError otherwise."""
    if not data:
        raise ValueError("Code 128 needs at least one character")
    for ch in data:
        if not " " <= ch <= "~":
            raise ValueError("Code 128 set B/C takes printable ASCII only: %r" % data)
    segments = []
    size = len(data)
    i = 0
    run = _digit_run(data, 0)
    if run >= 4 or run == size == 2:
        even = run - run % 2
        segments.append(["C", data[:even]])
        i = even
    while i < size:
        run = _digit_run(data, i)
        if run >= 6 or (run >= 4 and i + run == size):
            if run % 2:
                _append_b(segments, data[i])
                i += 1
                run -= 1
            segments.append(["C", data[i:i + run]])
            i += run
        else:
            _append_b(segments, data[i])
            i += 1
    return [(s[0], s[1]) for s in segments]


def _append_b(segments, ch):
    if segments and segments[-1][0] == "B":
        segments[-1][1] += ch
    else:
        segments.append(["B", ch])


def code128_symbols(data):
    """The symbol values of data's Code 128 symbol: start, data (with code set
    switches), the mod-103 check (the start's value plus each symbol's value times its
    position, 1 for the first after the start), stop."""
    values = []
    for kind, text in code128_segments(data):
        if kind == "C":
            values.append(START_C if not values else CODE_C)
            for j in range(0, len(text), 2):
                values.append(int(text[j:j + 2]))
        else:
            values.append(START_B if not values else CODE_B)
            for ch in text:
                values.append(ord(ch) - 32)
    total = values[0]
    for position in range(1, len(values)):
        total += values[position] * position
    values.append(total % 103)
    values.append(STOP)
    return values


def code128_modules(data):
    """The symbol as bar and space widths in modules, bar first, ending with the stop's
    termination bar (quiet zones not included)."""
    widths = []
    for value in code128_symbols(data):
        for ch in PATTERNS[value]:
            widths.append(ord(ch) - 48)
    return widths


def symbol_width(data, quiet=True):
    """Modules the symbol takes, with its two quiet zones when quiet."""
    return 11 * len(code128_symbols(data)) + 2 + (2 * QUIET if quiet else 0)


def max_data_symbols(dots=PAPER_DOTS, module=MODULE_DOTS):
    """How many data symbols (start, check and stop not counted) fit on the paper with
    the quiet zones."""
    return (dots // module - 2 * QUIET - 35) // 11


def code128_decode(widths, module=1):
    """The data of a Code 128 symbol given as bar and space widths (bar first, from the
    start symbol to the termination bar; module: the width of one module in the units
    given, each width is rounded to whole modules). ValueError for anything that is not
    a whole, good symbol: a pattern that is no symbol, a missing start or stop, a check
    that fails, a function character (FNC1-4, which this terminal never prints)."""
    mods = []
    for w in widths:
        m = int(w / module + 0.5)
        if not 1 <= m <= 4:
            raise ValueError("element of %r modules" % (w / module,))
        mods.append(m)
    if len(mods) < 6 * 3 + 7 or (len(mods) - 7) % 6:
        raise ValueError("not a whole Code 128 symbol (%d elements)" % len(mods))
    if "".join([str(m) for m in mods[-7:]]) != PATTERNS[STOP]:
        raise ValueError("no stop pattern")
    values = []
    for i in range(0, len(mods) - 7, 6):
        key = "".join([str(m) for m in mods[i:i + 6]])
        if key not in _VALUES:
            raise ValueError("no symbol has the pattern %s" % key)
        values.append(_VALUES[key])
    if values[0] not in (START_A, START_B, START_C):
        raise ValueError("no start symbol")
    total = values[0]
    for position in range(1, len(values) - 1):
        total += values[position] * position
    if total % 103 != values[-1]:
        raise ValueError("check symbol fails")
    return _text(values[:-1])


def _text(values):
    code = {START_A: "A", START_B: "B", START_C: "C"}[values[0]]
    out = []
    shift = False
    for value in values[1:]:
        current = code
        if shift:
            current = "B" if code == "A" else "A"
            shift = False
        if value in (START_A, START_B, START_C, STOP):
            raise ValueError("start or stop inside the symbol")
        if current == "C":
            if value < 100:
                out.append("%02d" % value)
            elif value == CODE_B:
                code = "B"
            elif value == CODE_A:
                code = "A"
            else:
                raise ValueError("function character %d" % value)
        elif value == CODE_C:
            code = "C"
        elif value == SHIFT:
            shift = True
        elif value == (CODE_A if current == "B" else CODE_B):
            code = "A" if current == "B" else "B"
        elif value >= 96:
            raise ValueError("function character %d" % value)
        elif current == "B":
            out.append(chr(32 + value))
        else:
            out.append(chr(32 + value) if value < 64 else chr(value - 64))
    return "".join(out)
