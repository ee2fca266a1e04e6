"""QR payment messages: HMAC-SHA256 (RFC 4231), the protocol page's signature examples,
request builders, response checks, payment-code recognition and masking."""
from firmware.payments.qrmsg import (
    BAD_SIGN, NOT_JSON, OPS, WRONG_AMOUNT, WRONG_ORDER, QrMessages, canonical_string,
    check_response, classify_code, equal_text, field_text, hex_text, hmac_sha256, make_sign,
    mask_code, nonce_from_bytes, parse_json, signed, utc_stamp, valid_nonce, verify,
)

KEY = b"handpos-test-qr-key-000000000001"

# RFC 4231 section 4: (key, data, HMAC-SHA256 hex; case 5 is truncated to 128 bits)
RFC4231 = (
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than "
                    b"block-size data. The key needs to be hashed before being used by the "
                    b"HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)

# docs/qr-protocol.md section 3, examples 1-3
PAY = {
    "mch_id": "100000000001", "terminal_id": "HP000001",
    "nonce": "5f2b9c0e7a3d41b8a0c4e6f1d2b3a495", "timestamp": "20261130101500",
    "out_trade_no": "HP000001-000123", "auth_code": "134567890123456789",
    "total_fee": 1250, "currency": "CNY", "body": "\u5496\u5561 x1",
    "sign": "37845c3e89dbd5dba727adea5bbbdc4986e5101f48b1782d0115129f333687e0",
}
PAY_CANONICAL = ("auth_code=134567890123456789&body=\u5496\u5561 x1&currency=CNY"
                 "&mch_id=100000000001&nonce=5f2b9c0e7a3d41b8a0c4e6f1d2b3a495"
                 "&out_trade_no=HP000001-000123&terminal_id=HP000001"
                 "&timestamp=20261130101500&total_fee=1250")
PAID = {
    "code": "SUCCESS", "msg": "paid", "nonce": "0c1d2e3f405162738495a6b7c8d9eafb",
    "result": "SUCCESS", "out_trade_no": "HP000001-000123",
    "transaction_id": "422026113010150100000001", "channel": "wechat", "total_fee": 1250,
    "paid_time": "20261130101501",
    "sign": "ea6a440ed49052b3811061f0798506825a0bf51a68b300d5de801ce4049faca3",
}
CREATE = {
    "mch_id": "100000000001", "terminal_id": "HP000001",
    "nonce": "00112233445566778899aabbccddeeff", "timestamp": "20261130102000",
    "out_trade_no": "HP000001-000124", "total_fee": 800, "currency": "CNY", "body": "",
    "sign": "c25569ad539e6bf5bf2955699d5a015af90bcc97563e657fd7852983964de764",
}


def _raises(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except ValueError:
        return True
    return False


def _messages(nonces=None, now=1796033700):
    seq = list(nonces or [])
    count = [0]

    def nonce():
        count[0] += 1
        if seq:
            return seq.pop(0)
        return "%032x" % count[0]
    return QrMessages("100000000001", "HP000001", KEY, nonce, lambda: now)


def _copy(d, **changes):
    out = {}
    for k in d:
        out[k] = d[k]
    for k in changes:
        out[k] = changes[k]
    return out


# -- HMAC -------------------------------------------------------------------------------

def test_hmac_sha256_matches_rfc4231():
    for key, data, expected in RFC4231:
        got = hex_text(hmac_sha256(key, data))
        assert got[:len(expected)] == expected, (key[:4], got)
        assert len(hmac_sha256(key, data)) == 32


def test_equal_text_compares_whole_strings():
    assert equal_text("abc", "abc")
    assert not equal_text("abc", "abd")
    assert not equal_text("abc", "abcd")
    assert not equal_text("", "a")
    assert equal_text("", "")


# -- signatures -------------------------------------------------------------------------

def test_protocol_example_1_pay_request():
    assert canonical_string(PAY) == PAY_CANONICAL
    assert make_sign(PAY, KEY) == PAY["sign"]
    assert verify(PAY, KEY)


def test_protocol_example_2_answer():
    assert canonical_string(PAID) == (
        "channel=wechat&code=SUCCESS&msg=paid&nonce=0c1d2e3f405162738495a6b7c8d9eafb"
        "&out_trade_no=HP000001-000123&paid_time=20261130101501&result=SUCCESS"
        "&total_fee=1250&transaction_id=422026113010150100000001")
    assert make_sign(PAID, KEY) == PAID["sign"]
    assert check_response(PAY, PAID, KEY) is None


def test_protocol_example_3_empty_field_left_out():
    assert "body" not in canonical_string(CREATE)
    assert make_sign(CREATE, KEY) == CREATE["sign"]
    assert make_sign(_copy(CREATE, body=None), KEY) == CREATE["sign"]


def test_field_text_and_canonical_rules():
    assert field_text(True) == "true" and field_text(False) == "false"
    assert field_text(-3) == "-3" and field_text(0) == "0"
    assert canonical_string({"b": 1, "a": "x", "Z": True, "_": "u", "sign": "s", "n": None,
                             "e": ""}) == "Z=true&_=u&a=x&b=1"
    for bad in (1.5, [1], {"a": 1}):
        assert _raises(field_text, bad)
        assert _raises(make_sign, {"a": bad}, KEY)


def test_verify_refuses_tampering_and_uppercase_and_missing_sign():
    assert not verify(_copy(PAY, total_fee=1251), KEY)
    assert not verify(_copy(PAY, sign=PAY["sign"].upper()), KEY)
    no_sign = _copy(PAY)
    del no_sign["sign"]
    assert not verify(no_sign, KEY)
    assert not verify(_copy(PAY, sign=12), KEY)
    assert not verify(PAY, b"another key")
    assert not verify(_copy(PAY, extra=[1]), KEY)
    assert not verify("not a dict", KEY)
    s = signed({"a": "1", "n": None, "sign": "old"}, KEY)
    assert "n" not in s and verify(s, KEY)


# -- requests ---------------------------------------------------------------------------

def test_utc_stamp():
    assert utc_stamp(0) == "19700101000000"
    assert utc_stamp(951782400) == "20000229000000"       # a leap day
    assert utc_stamp(1796033700) == "20261130101500"
    assert utc_stamp(4107542399) == "21000228235959"      # 2100 is not a leap year
    assert utc_stamp(4107542400) == "21000301000000"


def test_each_op_builds_a_signed_body_with_the_common_fields():
    m = _messages()
    built = {
        "pay": m.pay("HP000001-000123", "134567890123456789", 1250, body="\u5496\u5561 x1"),
        "query": m.query("HP000001-000123"),
        "cancel": m.cancel("HP000001-000123"),
        "create": m.create("HP000001-000124", 800),
        "close": m.close("HP000001-000124"),
        "refund": m.refund("HP000001-000123", "R1", 250),
    }
    assert sorted(built) == sorted(OPS)
    nonces = []
    for op in built:
        body = built[op]
        assert body["mch_id"] == "100000000001" and body["terminal_id"] == "HP000001"
        assert body["timestamp"] == "20261130101500"
        assert valid_nonce(body["nonce"])
        nonces.append(body["nonce"])
        assert verify(body, KEY), op
        assert body["out_trade_no"].startswith("HP000001-")
    assert len(set(nonces)) == len(nonces)
    assert built["pay"]["total_fee"] == 1250 and built["pay"]["currency"] == "CNY"
    assert built["refund"]["refund_fee"] == 250 and built["refund"]["out_refund_no"] == "R1"


def test_builder_reproduces_example_1():
    m = _messages(["5f2b9c0e7a3d41b8a0c4e6f1d2b3a495"], now=1796033700)
    body = m.pay("HP000001-000123", "134567890123456789", 1250, "CNY", "\u5496\u5561 x1")
    assert body == PAY


def test_pay_takes_a_scanned_code_with_its_line_end():
    m = _messages()
    assert m.pay("HP000001-000123", "134567890123456789\r\n", 100)["auth_code"] == \
        "134567890123456789"


def test_builders_refuse_what_cannot_be_sent():
    m = _messages()
    assert _raises(m.pay, "HP000001-1", "1345 6789", 100)
    assert _raises(m.pay, "HP000001-1", "134567890123456789", 0)
    assert _raises(m.pay, "HP000001-1", "134567890123456789", 12.5)
    assert _raises(m.pay, "HP000001-1", "134567890123456789", True)
    assert _raises(m.query, "")
    assert _raises(m.refund, "HP000001-1", "", 5)
    assert _raises(m.build, "steal", {})
    assert _raises(m.build, "query", {"out_trade_no": "x", "nonce": "0" * 32})
    bad = QrMessages("1", "T", KEY, lambda: "xyz", lambda: 0)
    assert _raises(bad.query, "HP000001-1")
    assert _raises(QrMessages, "", "T", KEY, lambda: "0" * 16, lambda: 0)
    assert valid_nonce("0" * 16) and valid_nonce("aB" * 16)
    assert not valid_nonce("0" * 15) and not valid_nonce("0" * 33) and not valid_nonce("g" * 16)
    assert valid_nonce(nonce_from_bytes(b"\x01" * 16))


# -- responses --------------------------------------------------------------------------

def test_check_response_reasons():
    m = _messages()
    assert m.check_response(PAY, PAID) is None
    assert check_response(PAY, PAID, KEY) is None
    assert check_response(PAY, b"<html>502</html>", KEY) == NOT_JSON
    assert check_response(PAY, b"[1, 2]", KEY) == NOT_JSON
    assert check_response(PAY, None, KEY) == NOT_JSON
    assert check_response(PAY, b"\xff\xfe", KEY) == NOT_JSON
    unsigned = _copy(PAID)
    del unsigned["sign"]
    assert check_response(PAY, unsigned, KEY) == BAD_SIGN
    assert check_response(PAY, _copy(PAID, result="FAIL"), KEY) == BAD_SIGN
    assert check_response(PAY, PAID, b"wrong key") == BAD_SIGN
    other_order = signed(_copy(PAID, out_trade_no="HP000001-000999"), KEY)
    assert check_response(PAY, other_order, KEY) == WRONG_ORDER
    no_order = _copy(PAID)
    del no_order["out_trade_no"]
    assert check_response(PAY, signed(no_order, KEY), KEY) == WRONG_ORDER
    assert check_response(PAY, signed(_copy(PAID, total_fee=1), KEY), KEY) == WRONG_AMOUNT
    assert check_response(PAY, signed(_copy(PAID, total_fee="1250"), KEY), KEY) == WRONG_AMOUNT


def test_check_response_error_codes_carry_no_order_fields():
    m = _messages()
    query = m.query("HP000001-000123")
    not_found = signed({"code": "ORDER_NOT_FOUND", "msg": "no such order",
                        "nonce": "ab" * 16}, KEY)
    assert m.check_response(query, not_found) is None
    text = '{"code": "SUCCESS", "trade_state": "SUCCESS", "out_trade_no": "HP000001-000123"}'
    answer = signed(parse_json(text), KEY)
    assert m.check_response(query, answer) is None
    refund = m.refund("HP000001-000123", "R1", 250)
    ok = signed({"code": "SUCCESS", "result": "SUCCESS", "out_trade_no": "HP000001-000123",
                 "out_refund_no": "R1", "refund_fee": 250, "refunded_fee": 250}, KEY)
    assert m.check_response(refund, ok) is None
    assert m.check_response(refund, signed(_copy(ok, out_refund_no="R2"), KEY)) == WRONG_ORDER
    assert m.check_response(refund, signed(_copy(ok, refund_fee=300), KEY)) == WRONG_AMOUNT
    no_refund_no = _copy(ok)
    del no_refund_no["out_refund_no"]
    assert m.check_response(refund, signed(no_refund_no, KEY)) == WRONG_ORDER


# -- payment codes ----------------------------------------------------------------------

def test_classify_code():
    assert classify_code("134567890123456789") == "wechat"
    assert classify_code("104567890123456789") == "wechat"
    assert classify_code("154567890123456789") == "wechat"
    assert classify_code("164567890123456789") is None         # 16 is no WeChat prefix
    assert classify_code("13456789012345678") is None          # 17 digits
    assert classify_code("2845678901234567") == "alipay"       # 16
    assert classify_code("301234567890123456789012") == "alipay"   # 24
    assert classify_code("251234567890123") is None            # 15
    assert classify_code("3012345678901234567890123") is None  # 25
    assert classify_code("311234567890123456") is None
    assert classify_code("6212345678901234567") == "unionpay"
    assert classify_code("621234567890123456") is None         # 18
    assert classify_code("134567890123456789\n") == "wechat"   # a scanner's line end
    assert classify_code("13456789012345678x") is None
    assert classify_code("1345 6789 0123 4567") is None
    assert classify_code("") is None and classify_code(None) is None
    assert classify_code(134567890123456789) is None


def test_mask_code():
    assert mask_code("1345678901236789") == "1345********6789"
    assert mask_code("134567890123456789") == "1345" + "*" * 10 + "6789"
    assert mask_code("123456789") == "1234*6789"
    assert mask_code("12345678") == "********"
    assert mask_code("") == "" and mask_code(None) == ""
    masked = mask_code("6212345678901234567")
    assert "2345678901234" not in masked and len(masked) == 19
