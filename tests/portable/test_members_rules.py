"""The members' rules (firmware/retail/members.py) under CPython and MicroPython: phone
shape and mask, member numbers and codes, earned points by tier, redemption limits,
refunds that telescope (docs/members.md's worked examples, CNY)."""
from firmware.retail import members as mb
from firmware.retail.cart import Cart


def _rule(**over):
    r = dict(mb.DEFAULTS)
    for k in over:
        r[k] = over[k]
    return r


def _counter_bytes():
    state = [0]

    def random_bytes(n):
        state[0] += 1
        return bytes([(state[0] * 37 + i * 11) % 256 for i in range(n)])
    return random_bytes


def test_phone_and_mask():
    r = _rule()
    assert mb.normalise_phone("13812345678", r) == ("13812345678", None)
    assert mb.normalise_phone("86 138 1234 5678", r) == ("13812345678", None)
    assert mb.normalise_phone("138123", r)[1][0] == "mb_phone_len"
    assert mb.normalise_phone("03812345678", r)[1][0] == "mb_phone_prefix"
    assert mb.mask_phone("13812345678") == "138****5678"


def test_numbers_and_codes():
    rb = _counter_bytes()
    for _ in range(20):
        n = mb.new_number(rb)
        assert len(n) == 12 and mb.valid_number(n)
        assert mb.parse_code("M" + n) == n
        assert mb.parse_code("HPMEMBER:1:" + n) == n
    assert mb.parse_code("6901234567892") is None
    assert mb.luhn_digit("7992739871") == "3"         # the textbook Luhn example


def test_worked_examples_cny():
    r = _rule()
    cart = Cart("CNY", True)
    cart.add_misc(12850, 13000)                       # 128.50
    assert mb.earn_points(cart, "basic", r) == 128
    assert mb.earn_points(cart, "gold", r) == 257
    assert mb.check_redeem(500, 1234, 12850, r, "CNY") == (500, None)
    assert mb.check_redeem(7000, 9000, 12850, r, "CNY")[1][0] == "mb_rd_share"
    taken, given = mb.refund_points(257, 500, 12350, 0, 4116)
    taken2, given2 = mb.refund_points(257, 500, 12350, 4116, 12350 - 4116)
    assert taken + taken2 == 257 and given + given2 == 500
    assert mb.group(1234567) == "1,234,567" and mb.group(-5) == "-5"
