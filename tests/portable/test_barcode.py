"""Barcodes and scale labels: published codes, bad check digits, the lookup key."""
from firmware.core import config as schema
from firmware.retail.barcode import (
    DEFAULT_SCALE_RULES, check_digit, classify, lookup_key, make_scale_code, parse_scale,
    split_aim, upce_to_upca, valid_check, value_check_digit,
)


def _raises(fn, *args):
    try:
        fn(*args)
    except ValueError:
        return True
    return False


# -- check digits -------------------------------------------------------------------

def test_gs1_check_digits_of_published_codes():
    # EAN-13 4006381333931 (the GS1 / Wikipedia example), 5901234123457 (ditto),
    # UPC-A 036000291452, EAN-8 96385074, the 6901234567892 (GS1 China prefix)
    for code in ("4006381333931", "5901234123457", "6901234567892", "036000291452",
                 "96385074", "012345000065", "042100005264"):
        assert valid_check(code), code
        assert check_digit(code[:-1]) == int(code[-1]), code
    assert check_digit("400638133393") == 1
    assert check_digit("9638507") == 4
    assert check_digit("03600029145") == 2


def test_every_wrong_last_digit_is_refused():
    for code in ("4006381333931", "96385074", "036000291452"):
        for d in "0123456789":
            assert valid_check(code[:-1] + d) == (d == code[-1])


def test_check_digit_wants_digits():
    assert _raises(check_digit, "12a4")
    assert _raises(check_digit, "")
    assert not valid_check("")
    assert not valid_check("4006381333931 ")


# -- UPC-E ---------------------------------------------------------------------------

def test_upce_expands_by_its_last_digit():
    # published pairs: 01234565 <-> 012345000065, 04252614 <-> 042100005264
    assert upce_to_upca("01234565") == "012345000065"
    assert upce_to_upca("04252614") == "042100005264"
    # the four rules, worked by hand from the number system rules
    assert upce_to_upca("0123450")[:11] == "01200000345"    # d6 0-2: NS d1 d2 d6 0000 d3 d4 d5
    assert upce_to_upca("0123453")[:11] == "01230000045"    # d6 3:   NS d1 d2 d3 00000 d4 d5
    assert upce_to_upca("0123454")[:11] == "01234000005"    # d6 4:   NS d1..d4 00000 d5
    assert upce_to_upca("1123457")[:11] == "11234500007"    # d6 5-9: NS d1..d5 0000 d6
    for upce in ("0123450", "0123453", "0123454", "1123457"):
        upca = upce_to_upca(upce)
        assert valid_check(upca)
        assert upce_to_upca(upce + upca[-1]) == upca


def test_upce_needs_number_system_0_or_1():
    assert _raises(upce_to_upca, "21234565")
    assert _raises(upce_to_upca, "012345")
    assert _raises(upce_to_upca, "0123456x")


# -- classify ------------------------------------------------------------------------

def test_ean13_upca_upce_share_the_gtin13_key():
    assert classify("4006381333931").kind == "ean13"
    assert classify("4006381333931").key == "4006381333931"
    upca = classify("012345000065")
    assert (upca.kind, upca.key, upca.ok) == ("upca", "0012345000065", True)
    upce = classify("01234565")
    assert (upce.kind, upce.key, upce.ok) == ("upce", "0012345000065", True)
    assert classify("0012345000065").key == upce.key
    assert lookup_key("036000291452") == "0036000291452"


def test_eight_digits_both_ways_prefer_upce_and_offer_ean8():
    # 01234565 passes both the UPC-E and the EAN-8 check
    both = classify("01234565")
    assert both.alt_keys == ["01234565"]
    assert both.keys() == ["0012345000065", "01234565"]
    # a real EAN-8 (never starts with 0 or 1 outside a store) is kept as 8 digits
    ean8 = classify("96385074")
    assert (ean8.kind, ean8.key, ean8.alt_keys) == ("ean8", "96385074", [])
    # a UPC-E that is no EAN-8: 04252614
    assert classify("04252614").alt_keys == []
    assert classify("04252614").kind == "upce"


def test_symbology_identifier_settles_eight_digits():
    assert classify("01234565", "]E4").kind == "ean8"
    assert classify("01234565", "]E4").key == "01234565"
    assert classify("01234565", "]E0").kind == "upce"
    assert classify("01234565", "upce").alt_keys == []
    assert classify("4006381333931", "]E0").kind == "ean13"
    assert classify("036000291452", "]E0").kind == "upca"
    # a Code 128 symbol that holds 13 digits is free text: no GS1 check digit
    c128 = classify("4006381333932", "]C0")
    assert (c128.kind, c128.key, c128.ok) == ("code128", "4006381333932", True)
    assert split_aim("]E04006381333931") == ("]E0", "4006381333931")
    assert split_aim("4006381333931") == (None, "4006381333931")
    assert split_aim("]Z1abc") == (None, "]Z1abc")
    # an identifier this terminal does not know changes nothing
    assert classify("01234565", "]Q1") == classify("01234565")
    assert classify("4006381333932", "]E3").reason == "check_digit"
    assert classify("ABC", "qr").kind == "code128"


def test_bad_check_digits_are_bad_barcodes():
    for code, kind in (("4006381333932", "ean13"), ("036000291453", "upca"),
                       ("96385075", "ean8"), ("01234566", "ean8")):
        bc = classify(code)
        assert not bc.ok, code
        assert bc.reason == "check_digit", code
        assert bc.key is None and bc.keys() == []
        assert bc.kind == kind, (code, bc.kind)
    assert classify("01234566", "upce").reason == "check_digit"
    assert classify("96385075", "]E4").reason == "check_digit"


def test_length_and_characters():
    assert classify("").reason == "length"
    assert classify("A" * 48).ok
    assert classify("A" * 49).reason == "length"
    assert classify("ab\tc").reason == "chars"
    assert classify("caf\u00e9").reason == "chars"
    assert classify("4006381333931", "]E4").reason == "length"
    assert classify("40063813339x1", "ean13").reason == "chars"


def test_other_printable_text_is_a_free_code128():
    for code in ("ABC-123", "123456", "12345678901", "12345678901234", "Receipt 0001/7",
                 "~!@#$%^&*()_+"):
        bc = classify(code)
        assert (bc.kind, bc.key, bc.ok, bc.reason) == ("code128", code, True, None), code


# -- scale labels --------------------------------------------------------------------

RULES = DEFAULT_SCALE_RULES


def test_default_price_label():
    # 21 01234 01299 C: PLU 01234, 12.99 -> 1299 fen
    code = "210123401299"
    code += str(check_digit(code))
    assert classify(code).ok
    label = parse_scale(code, RULES, "CNY")
    assert label == {"ok": True, "reason": None, "plu": "01234", "price": 1299, "grams": None,
                     "layout": "price"}
    assert make_scale_code(RULES[0], "01234", 1299) == "20" + code[2:12] + str(check_digit("20" + code[2:12]))


def test_default_weight_label():
    # 26 00042 00452 C: PLU 00042, 0.452 kg
    code = "260004200452"
    code += str(check_digit(code))
    label = parse_scale(code, RULES, "CNY")
    assert (label["ok"], label["plu"], label["grams"], label["price"]) == (True, "00042", 452, None)


def test_price_decimals_become_minor_units():
    rule = {"prefixes": ["22"], "layout": "price", "plu_digits": 5, "check": False, "decimals": 0}
    code = make_scale_code(rule, "00007", 125)       # 125 yuan, no decimals
    assert parse_scale(code, [rule], "CNY")["price"] == 12500
    assert parse_scale(code, [rule], "JPY")["price"] == 125
    rule1 = dict(rule, decimals=1)                   # 12.5
    assert parse_scale(make_scale_code(rule1, "00007", 125), [rule1], "CNY")["price"] == 1250
    rule3 = dict(rule, decimals=3)                   # 1.250 in a 2-decimal currency
    assert parse_scale(make_scale_code(rule3, "00007", 1250), [rule3], "CNY")["price"] == 125
    odd = parse_scale(make_scale_code(rule3, "00007", 1255), [rule3], "CNY")
    assert (odd["ok"], odd["reason"]) == (False, "decimals")
    # the default rule with 2 decimals in JPY only reads whole yen
    assert parse_scale(make_scale_code(RULES[0], "00007", 1200), RULES, "JPY")["price"] == 12
    assert parse_scale(make_scale_code(RULES[0], "00007", 1250), RULES, "JPY")["ok"] is False


def test_weight_decimals():
    rule = {"prefixes": ["28"], "layout": "weight", "plu_digits": 5, "check": False, "decimals": 2}
    assert parse_scale(make_scale_code(rule, "00001", 45), [rule], "CNY")["grams"] == 450


def test_not_a_scale_label():
    assert parse_scale("4006381333931", RULES, "CNY") is None
    assert parse_scale("96385074", RULES, "CNY") is None
    assert parse_scale("ABC", RULES, "CNY") is None
    assert parse_scale("2001234012997", [], "CNY") is None


def test_bad_label_check_digit_is_reported_not_ignored():
    good = make_scale_code(RULES[0], "01234", 1299)
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    label = parse_scale(bad, RULES, "CNY")
    assert (label["ok"], label["reason"]) == (False, "check_digit")


def test_price_verifier_digit_published_examples():
    # GS1 General Specifications 7.9.3 / 7.9.4: 2875 -> 9, 14685 -> 6
    assert value_check_digit("2875") == 9
    assert value_check_digit("14685") == 6
    assert _raises(value_check_digit, "123")


def test_label_with_verifier_digit():
    # UPC-A number system 2, US style: 2 IIIII V PPPP C, read as GTIN-13 02IIIIIVPPPPC
    rule = {"prefixes": ["02"], "layout": "price", "plu_digits": 5, "check": True, "decimals": 2}
    body = "2" + "12345" + "9" + "2875"               # $28.75, verifier 9
    upca = body + str(check_digit(body))
    label = parse_scale(upca, [rule], "USD")
    assert (label["ok"], label["plu"], label["price"]) == (True, "12345", 2875)
    assert make_scale_code(rule, "12345", 2875) == "0" + upca
    wrong = "2123458" + "2875"
    wrong += str(check_digit(wrong))                  # a good check digit, a bad verifier
    assert parse_scale(wrong, [rule], "USD")["reason"] == "value_check"
    rule5 = {"prefixes": ["23"], "layout": "weight", "plu_digits": 4, "check": True, "decimals": 3}
    code = make_scale_code(rule5, "0042", 14685)      # 14.685 kg
    assert code[6] == "6"
    assert parse_scale(code, [rule5], "CNY")["grams"] == 14685


# -- configuration -------------------------------------------------------------------

def test_default_rules_and_limits_are_valid():
    config, errors = schema.validate({})
    assert errors == []
    retail = config["retail"]
    assert retail["tax_inclusive"] is True
    assert retail["scale_rules"] == DEFAULT_SCALE_RULES
    jpy = schema.validate({"money": {"currency": "JPY"}})
    assert jpy[1] == []
    assert jpy[0]["retail"]["scale_rules"][0]["decimals"] == 0
    assert jpy[0]["retail"]["scale_rules"][1]["decimals"] == 3


def test_rules_get_their_defaults_filled():
    config, errors = schema.validate({"retail": {"scale_rules": [
        {"prefixes": ["21"], "layout": "price"}, {"prefixes": ["27"], "layout": "weight"}]}})
    assert errors == []
    assert config["retail"]["scale_rules"] == [
        {"prefixes": ["21"], "layout": "price", "plu_digits": 5, "check": False, "decimals": 2},
        {"prefixes": ["27"], "layout": "weight", "plu_digits": 5, "check": False, "decimals": 3}]


def test_each_rule_mistake_is_one_line():
    _, errors = schema.validate({"retail": {"scale_rules": [
        {"prefixes": ["20", "30"], "layout": "prices", "plu_digits": 6, "check": True, "x": 1},
        {"prefixes": ["21"], "layout": "weight", "decimals": 4},
        {"prefixes": ["21"], "layout": "price"},
        5,
    ]}})
    assert errors == [
        "retail.scale_rules #1.x: unknown key; allowed: prefixes, layout, plu_digits, check, decimals",
        "retail.scale_rules #1.prefixes = [\"20\", \"30\"]: must be a list of two-digit prefixes "
        "from: 02, 04, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29",
        "retail.scale_rules #1.layout = \"prices\": must be \"price\" (the label carries the "
        "price) or \"weight\" (the label carries the weight)",
        "retail.scale_rules #1.check = true: a price/weight verifier digit covers a 4- or "
        "5-digit value; use plu_digits 4 or 5, or check = false",
        "retail.scale_rules #2.decimals = 4: must be a whole number from 0 to 3",
        "retail.scale_rules #3.prefixes: \"21\" is already in rule #2; a prefix belongs to one rule",
        "retail.scale_rules #4 = 5: must be a table with prefixes, layout, plu_digits, check, decimals",
    ]
    _, errors = schema.validate({"retail": {"scale_rules": {"prefixes": ["20"]}}})
    assert len(errors) == 1 and errors[0].startswith("retail.scale_rules = ")


def test_price_decimals_beyond_the_currency_are_refused():
    _, errors = schema.validate({"money": {"currency": "JPY"}, "retail": {"scale_rules": [
        {"prefixes": ["20"], "layout": "price", "decimals": 2}]}})
    assert errors == ["retail.scale_rules #1.decimals = 2: JPY has 0 decimals, so a label "
                      "price with more cannot be charged; use decimals = 0 or less"]


def test_retail_limits_are_checked():
    _, errors = schema.validate({"retail": {"max_lines": 0, "max_quantity": "5",
                                            "tax_inclusive": "yes"}})
    assert len(errors) == 3
    assert any(e.startswith("retail.max_lines = 0: ") for e in errors)


def test_a_receipts_own_code_is_never_an_item():
    from firmware.retail import receipt_code
    code = receipt_code.encode("HP000001", 42)
    got = classify(code)
    assert (got.kind, got.ok, got.reason, got.key) == ("receipt", False, "receipt", None)
    assert classify(code, "]C0").kind == "receipt"     # whatever the scanner says
    assert classify("R12").kind == "code128"            # too short for a receipt
    assert classify("RX0000014200").kind == "code128"
