"""The receipt's barcode: its data, the terminal binding, the check, and Code 128."""
from firmware.retail import barcode
from firmware.retail.receipt_code import (
    MISREAD, MODULE_DOTS, NOT_RECEIPT, OTHER_TERMINAL, PAPER_DOTS, PATTERNS, QUIET,
    Misread, NotReceiptCode, OtherTerminal, ReceiptCodeError, code128_decode,
    code128_modules, code128_segments, code128_symbols, encode, is_receipt_code, parse,
    symbol_width, tid_check,
)

TID = "T0000001"


def _error(code, tid=TID):
    try:
        parse(code, tid)
    except ReceiptCodeError as exc:
        return exc
    return None


# -- the receipt code -----------------------------------------------------------------

def test_round_trip_for_small_and_large_record_numbers():
    for tid in (TID, "A1B2C3D4", "00000042", "term-7"):
        for number in (0, 1, 9, 123, 99999, 999999, 1000000, 12345678, 10 ** 16 - 1):
            code = encode(tid, number)
            assert is_receipt_code(code), code
            assert parse(code, tid) == number, (tid, number, code)


def test_the_data_format():
    # R, the TID check (2 digits), the number padded to 6 and to an even count, MOD 97-10
    assert tid_check(TID) == 71
    code = encode(TID, 123)
    assert code == "R" + "71" + "000123" + code[-2:] and len(code) == 11
    assert int(code[1:]) % 97 == 1
    assert encode(TID, 1234567)[3:-2] == "01234567"     # 7 digits padded to 8
    assert len(encode(TID, 999999)) == 11


def test_a_receipt_code_is_never_an_item_code():
    for number in (1, 123456, 1234567):
        code = encode(TID, number)
        kind = barcode.classify(code)
        # its own kind, refused as an item (a cart says "A receipt: Refund")
        assert kind.kind == "receipt" and not kind.ok and not barcode.is_digits(code)


def test_a_receipt_of_another_terminal_is_named_so():
    code = encode("T0000002", 77)
    exc = _error(code)
    assert isinstance(exc, OtherTerminal) and isinstance(exc, ValueError)
    assert exc.reason == OTHER_TERMINAL and exc.number == 77
    # a shop's terminals numbered in a row never share the check
    checks = [tid_check("T%07d" % n) for n in range(1, 98)]
    assert len(set(checks)) == 97
    # nor do TIDs that differ in one digit or one capital letter
    for at in range(4):
        for alphabet in ("0123456789", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"):
            tids = ["T1" + "5" * at + ch + "K" for ch in alphabet]
            assert len(set([tid_check(t) for t in tids])) == len(alphabet), (at, alphabet)
    # the IBAN reading: digits as digits, A-Z as 10-35
    assert tid_check("12") == 12 and tid_check("A") == 10 and tid_check("Z") == 35
    assert tid_check("T0000001") == (29 * 10 ** 7 + 1) % 97


def test_garbage_is_not_a_receipt_code():
    for code in ("", "R", "4006381333931", "96385074", "R123", "R12345", "X1900012333",
                 "r1900012333", "R19000123A3", "R" + "1" * 21, "ABC-123", None):
        exc = _error(code)
        assert isinstance(exc, NotReceiptCode), code
        assert exc.reason == NOT_RECEIPT
        assert not is_receipt_code(code)


def test_a_flipped_digit_or_swapped_pair_is_refused():
    code = encode(TID, 4711)
    for i in range(1, len(code)):
        for d in "0123456789":
            if d == code[i]:
                continue
            bad = code[:i] + d + code[i + 1:]
            exc = _error(bad)
            assert isinstance(exc, Misread), bad
            assert exc.reason == MISREAD
    for i in range(1, len(code) - 1):
        if code[i] != code[i + 1]:
            swapped = code[:i] + code[i + 1] + code[i] + code[i + 2:]
            assert isinstance(_error(swapped), Misread), swapped


def test_encode_refuses_what_cannot_be_a_record_number():
    for number in (-1, 10 ** 16, "12", 1.5):
        try:
            encode(TID, number)
        except ValueError:
            continue
        assert False, number


# -- Code 128 -----------------------------------------------------------------------

def test_the_symbol_table_is_well_formed():
    # 103 data values, three starts, the stop: each 11 modules in six elements of 1 to
    # 4 modules whose bars sum to an even number (the symbology's own parity), all
    # different; the stop 13 modules in seven
    assert len(PATTERNS) == 107
    for value in range(106):
        widths = [ord(ch) - 48 for ch in PATTERNS[value]]
        assert len(widths) == 6 and sum(widths) == 11, value
        assert min(widths) >= 1 and max(widths) <= 4, value
        assert (widths[0] + widths[2] + widths[4]) % 2 == 0, value
    assert len(set(PATTERNS)) == 107
    assert PATTERNS[106] == "2331112"
    assert PATTERNS[104] == "211214" and PATTERNS[105] == "211232"


def test_published_check_characters():
    # Wikipedia, "Code 128", check digit calculation: PJJ123C in set A,
    #   103 + 48*1 + 42*2 + 42*3 + 17*4 + 18*5 + 19*6 + 35*7 = 878, 878 mod 103 = 54 ("V").
    # The same data in set B starts with 104 instead of 103: 879, and
    #   879 - 8*103 = 879 - 824 = 55 ("W", ASCII 32 + 55).
    assert code128_symbols("PJJ123C") == [104, 48, 42, 42, 17, 18, 19, 35, 55, 106]
    # barcoderesource.com, "Calculation of Code128 Check Character", 128C of 345678:
    #   105 + 34*1 + 56*2 + 78*3 = 105 + 34 + 112 + 234 = 485, 485 - 4*103 = 73.
    assert code128_symbols("345678") == [105, 34, 56, 78, 73, 106]
    # barcodeisland.com's HI345678 switches to set C for the digits (there from set A:
    # 1406 mod 103 = 67); from set B the start is one more: 1407 - 13*103 = 68.
    assert code128_symbols("HI345678") == [104, 40, 41, 99, 34, 56, 78, 68, 106]


def test_code_sets_are_chosen_for_the_fewest_symbols():
    assert code128_segments("1234") == [("C", "1234")]
    assert code128_segments("12") == [("C", "12")]
    assert code128_segments("123") == [("B", "123")]
    assert code128_segments("12345") == [("C", "1234"), ("B", "5")]
    assert code128_segments("AB1234") == [("B", "AB"), ("C", "1234")]
    assert code128_segments("AB12345") == [("B", "AB1"), ("C", "2345")]
    assert code128_segments("A1234B") == [("B", "A1234B")]          # 4 in the middle: no gain
    assert code128_segments("A123456B") == [("B", "A"), ("C", "123456"), ("B", "B")]
    assert code128_segments(encode(TID, 5)) == [("B", "R"), ("C", encode(TID, 5)[1:])]


def test_modules_decode_back_to_the_data():
    for data in ("PJJ123C", "345678", "HI345678", "R7100012389", "a{b}~ 0", "12345",
                 encode("Z9", 987654321)):
        widths = code128_modules(data)
        assert sum(widths) == symbol_width(data, quiet=False)
        assert code128_decode(widths) == data, data
        assert code128_decode([w * 2 for w in widths], module=2) == data


def test_a_misprinted_symbol_is_refused():
    widths = code128_modules("R7100012389")
    for bad in (widths[:-1], widths[6:], widths[:-7] + [2, 3, 3, 1, 1, 2, 1]):
        try:
            code128_decode(bad)
        except ValueError:
            continue
        assert False, bad
    # a data symbol read as another (the check symbol no longer agrees)
    swapped = list(widths)
    swapped[6:12] = [ord(ch) - 48 for ch in PATTERNS[51]]       # "S" for "R"
    try:
        code128_decode(swapped)
    except ValueError:
        pass
    else:
        assert False


def test_receipt_codes_fit_the_paper_at_a_module_of_two_dots():
    # 384 dots at 2 dots a module: 192 modules, quiet zones of 10 modules each side
    for number in (1, 99, 12345, 999999):
        code = encode("ABCDEFGH", number)
        assert symbol_width(code) * MODULE_DOTS <= PAPER_DOTS, (number, symbol_width(code))
        assert sum(code128_modules(code)) + 2 * QUIET == symbol_width(code)
    assert symbol_width(encode(TID, 999999)) * MODULE_DOTS == 264


# -- the receipt model's barcode line -------------------------------------------------

def test_a_receipt_barcode_line_reads_as_its_text_centred():
    from firmware.ui.receipt import Receipt
    code = encode(TID, 7)
    r = Receipt().add("TOTAL").barcode(code).barcode(code, text="Sale #7")
    assert [line.kind for line in r.lines] == ["text", "barcode", "barcode"]
    assert r.lines[1].data == code and r.lines[2].data == code
    assert r.text().split("\n")[1:] == [" " * 10 + code, " " * 12 + "Sale #7"]
