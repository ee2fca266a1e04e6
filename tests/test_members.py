"""Members (issue 16): the rules of firmware/retail/members.py and members.db
(drivers/members_sqlite.py) on real SQLite: encryption, lookup by a keyed hash, the
ledger applied once, erasure that leaves no bytes behind, MACs."""
import os
import sqlite3

import pytest

from drivers.members_sqlite import MemberDamaged, MemberError, open_members
from firmware.core import config as schema
from firmware.retail import members as mb
from firmware.retail.cart import Cart

KEY = bytes(range(32))
PHONE = "13812345678"
NAME = "ZHANG XIAOMING"


def rule(**over):
    r = mb.rules(schema.defaults())
    r.update(over)
    return r


@pytest.fixture
def db(tmp_path):
    m = open_members(str(tmp_path), KEY)
    yield m
    m.close()


# -- phones, numbers, codes -----------------------------------------------------------
def test_phone_rules_mask_and_wrong_length():
    r = rule()
    assert mb.normalise_phone("138 1234 5678", r) == (PHONE, None)
    assert mb.normalise_phone("8613812345678", r) == (PHONE, None)   # with the country code
    assert mb.normalise_phone("1381234567", r) == (None, ("mb_phone_len", {"n": "11"}))
    assert mb.normalise_phone("23812345678", r) == (None, ("mb_phone_prefix", {"p": "1"}))
    # market-neutral: another market's 8-digit numbers, any first digit
    other = rule(phone_digits=8, phone_prefixes=[], country_code="65")
    assert mb.normalise_phone("91234567", other) == ("91234567", None)
    assert mb.mask_phone(PHONE) == "138****5678"
    assert mb.mask_phone("91234567") == "91****67"


def test_member_numbers_are_random_luhn_checked_and_never_card_length():
    seen = set()
    for _ in range(300):
        n = mb.new_number(os.urandom)
        assert len(n) == 12 and n[0] != "0" and mb.valid_number(n)
        assert not 13 <= len(n) <= 19
        seen.add(n)
    assert len(seen) == 300
    n = mb.new_number(os.urandom)
    wrong = n[:-1] + str((int(n[-1]) + 1) % 10)
    assert not mb.valid_number(wrong)
    assert not mb.valid_number("4111111111111111")       # a card number is no member


def test_codes_card_barcode_and_qr_parse_back():
    n = mb.new_number(os.urandom)
    assert mb.parse_code(mb.card_code(n)) == n
    assert mb.parse_code(mb.qr_code(n)) == n
    assert mb.parse_code("hpmember:1:" + n) == n
    assert mb.parse_code("M" + n[:-1] + str((int(n[-1]) + 1) % 10)) is None   # misread
    assert mb.looks_like_member_code("M" + n[:-1] + "x") is False
    assert mb.looks_like_member_code("M123") is True
    for code in ("6901234567892", "R7100012389", "", "M", n, None):
        assert mb.parse_code(code) is None
    # the card barcode fits 58 mm paper (firmware/retail/receipt_code.py's Code 128)
    from firmware.retail import receipt_code
    assert receipt_code.symbol_width(mb.card_code(n)) * receipt_code.MODULE_DOTS <= receipt_code.PAPER_DOTS


# -- points ----------------------------------------------------------------------------
def cny_cart(*prices, points_x=None):
    cart = Cart("CNY", True)
    for p in prices:
        cart.add_misc(p, 13000)
    if points_x is not None:
        for line in cart.lines:
            line.points_x = points_x
    return cart


def test_earn_by_tier_rounded_down_with_the_multiplier():
    r = rule()
    cart = cny_cart(12850)                          # 128.50 paid
    assert mb.earn_points(cart, "basic", r) == 128  # 1 a yuan: 128.5 -> 128
    assert mb.earn_points(cart, "silver", r) == 192  # 1.5 a yuan: 192.75 -> 192
    assert mb.earn_points(cart, "gold", r) == 257   # 2 a yuan
    assert mb.earn_points(cart, None, r) == 0
    assert mb.earn_points(cny_cart(99), "gold", r) == 1     # 0.99 x 2 = 1.98 -> 1
    assert mb.earn_points(cny_cart(12850, points_x=3000), "basic", r) == 385   # 3x: 385.5
    cart = cny_cart(1000, 2000)
    cart.void(0)                                    # a voided line earns nothing
    assert mb.earn_points(cart, "basic", r) == 20


def test_redeem_limits_balance_minimum_and_share():
    r = rule()                                      # 1 point = 0.01, min 100, 50 %
    assert mb.check_redeem(500, 1234, 10000, r, "CNY") == (500, None)
    amount, why = mb.check_redeem(2000, 1234, 10000, r, "CNY")
    assert amount == 0 and why == ("mb_rd_balance", {"n": "1,234"})
    amount, why = mb.check_redeem(99, 1234, 10000, r, "CNY")
    assert why == ("mb_rd_min", {"n": "100"})
    amount, why = mb.check_redeem(1000, 5000, 1500, r, "CNY")     # 50 % of 15.00: 750
    assert why == ("mb_rd_share", {"n": "750", "amount": "7.50"})
    assert mb.redeem_most(1234, 10000, r) == 1234
    assert mb.redeem_most(5000, 1500, r) == 750
    assert mb.redeem_most(80, 10000, r) == 0        # under the minimum: none


def test_refunds_telescope_to_exactly_the_sale_points():
    earned, redeemed, total = 257, 333, 12850
    for parts in ([12850], [1, 12849], [4283, 4283, 4284], [100] * 128 + [50], [7, 3, 12840]):
        before = took = gave = 0
        for amount in parts:
            t, g = mb.refund_points(earned, redeemed, total, before, amount)
            took += t
            gave += g
            before += amount
        assert (took, gave) == (earned, redeemed), parts


def test_privacy_notice_in_both_languages_fits_the_paper():
    from firmware.ui.i18n import Translator
    from firmware.ui.receipt import Receipt, display_width
    for lang in ("en", "zh"):
        t = Translator(lang)
        r = mb.notice_receipt(t, Receipt(lang=lang), "SHOP")
        text = r.text()
        for line in r.lines:
            assert display_width(line.text) <= r.width, line.text
        for msg in mb.NOTICE_PARAGRAPHS + ("rcpt_mb_notice_head",):
            assert t(msg) != msg
        assert ("delete" in text) if lang == "en" else ("删除" in text)


# -- members.db ------------------------------------------------------------------------
def test_enrol_find_by_phone_encrypted_and_one_phone_once(db, tmp_path):
    m = db.enrol(PHONE, NAME)
    assert m["tier"] == "basic" and m["points"] == 0 and m["phone"] == PHONE
    assert db.find_by_phone(PHONE)["number"] == m["number"]
    assert db.find_by_phone("13900000000") is None
    assert db.get(m["number"])["name"] == NAME
    with pytest.raises(MemberError) as e:
        db.enrol(PHONE, "")
    assert e.value.what == "exists"
    raw = sqlite3.connect(str(tmp_path / "members.db")).execute(
        "SELECT phone_key, phone, name FROM members").fetchone()
    for blob in raw:
        assert PHONE.encode() not in bytes(blob) and NAME.encode() not in bytes(blob)
    for name in os.listdir(tmp_path):
        data = open(tmp_path / name, "rb").read()
        assert PHONE.encode() not in data and NAME.encode() not in data, name


def test_a_ciphertext_moved_to_another_row_does_not_open(db, tmp_path):
    a = db.enrol(PHONE, NAME)
    b = db.enrol("13900000000", "LI")
    con = sqlite3.connect(str(tmp_path / "members.db"))
    name_a = con.execute("SELECT name FROM members WHERE number=?", (a["number"],)).fetchone()[0]
    con.execute("UPDATE members SET name=? WHERE number=?", (name_a, b["number"]))
    con.commit()
    con.close()
    with pytest.raises(MemberDamaged):
        db.get(b["number"])
    assert db.get(a["number"])["name"] == NAME
    assert ("members", b["number"]) in {(r[0], r[1]) for r in db.damaged()}


def test_ledger_applies_once_per_record_and_kind(db):
    m = db.enrol(PHONE, NAME)
    assert db.apply(m["number"], 7, "earn", 120) == 120
    assert db.apply(m["number"], 7, "earn", 120) is None          # the same again: nothing
    assert db.apply(m["number"], 7, "redeem", -100) == 20
    assert db.get(m["number"])["points"] == 20
    assert [(e["record"], e["kind"], e["points"]) for e in db.ledger(m["number"])] == \
        [(7, "earn", 120), (7, "redeem", -100)]
    assert db.applied(7, "earn") == 120 and db.applied(8, "earn") is None
    with pytest.raises(MemberError):
        db.apply(m["number"], 9, "gift", 1)


def test_a_flipped_byte_in_members_db_is_detected(tmp_path):
    m = open_members(str(tmp_path), KEY)
    a = m.enrol(PHONE, NAME)
    m.set_tier(a["number"], "silver")
    m.apply(a["number"], 1, "earn", 300)
    m.scrub()                                   # everything in members.db itself
    m.close()
    path = tmp_path / "members.db"
    data = bytearray(open(path, "rb").read())
    at = data.find(b"silver")
    assert at > 0
    data[at] ^= 0x01                            # "silver" -> "rilver" on the card
    open(path, "wb").write(bytes(data))
    m = open_members(str(tmp_path), KEY)
    with pytest.raises(MemberDamaged):
        m.get(a["number"])
    with pytest.raises(MemberDamaged):
        m.find_by_phone(PHONE)
    with pytest.raises(MemberDamaged):          # no points onto a damaged row
        m.apply(a["number"], 2, "earn", 5)
    assert a["number"] in m.verify_recent()
    m.close()


def test_erase_leaves_no_phone_or_name_bytes_in_the_db_or_wal(tmp_path):
    m = open_members(str(tmp_path), KEY)
    keep = m.enrol("13900000000", "LI SI")
    a = m.enrol(PHONE, NAME)
    m.apply(a["number"], 1, "earn", 50)
    raw = sqlite3.connect(str(tmp_path / "members.db"))
    secrets = [bytes(b) for b in raw.execute(
        "SELECT phone_key, phone, name FROM members WHERE number=?", (a["number"],)).fetchone()]
    raw.close()

    def files():
        return [(n, open(tmp_path / n, "rb").read()) for n in sorted(os.listdir(tmp_path))
                if n.startswith("members.db")]
    # before: the ciphertexts and the phone's hash are on the card (so this test can fail)
    assert any(s in data for s in secrets for n, data in files())
    assert m.erase(a["number"]) is True
    names = [n for n, data in files()]
    assert "members.db-wal" in names
    for name, data in files():
        for s in secrets:
            assert s not in data and s[:16] not in data, name
        assert PHONE.encode() not in data and NAME.encode() not in data
    assert m.get(a["number"]) is None and m.find_by_phone(PHONE) is None
    assert m.retired(a["number"]) and m.ledger(a["number"]) == []
    with pytest.raises(MemberError) as e:
        m.apply(a["number"], 2, "earn", 5)
    assert e.value.what == "retired"
    assert m.get(keep["number"])["name"] == "LI SI"        # the others stay
    assert m.erase(a["number"]) is False
    m.close()


def test_files_are_private_and_fields_need_the_device_key(tmp_path):
    m = open_members(str(tmp_path), KEY)
    a = m.enrol(PHONE, NAME)
    m.close()
    assert os.stat(tmp_path / "members.db").st_mode & 0o777 == 0o600
    other = open_members(str(tmp_path), bytes(32))           # another device's key
    with pytest.raises(MemberDamaged):
        other.get(a["number"])
    assert other.find_by_phone(PHONE) is None                # its hash does not match
    other.close()


def test_a_members_db_that_does_not_open_is_the_terminal_storage_fault(tmp_path):
    from board.compose import open_members_storage
    from drivers.members_sqlite import MembersOpenError
    from firmware.core.store import fault_code
    (tmp_path / "members.db").write_bytes(b"this is no database, a damaged card" * 200)
    with pytest.raises(MembersOpenError) as e:
        open_members(str(tmp_path), KEY)
    assert e.value.part == "members" and e.value.kind == "corrupt"
    assert fault_code(e.value) == "E-73"

    class Keys:
        def key(self, name):
            return KEY

    class Dd:
        keys = Keys()

    class T:
        fault = None
        selftests = {}
        system = None

        def storage_fault(self, fault):
            self.fault = fault
    term = T()
    config = schema.defaults()
    config["storage"]["data_dir"] = str(tmp_path)
    lines = []
    assert open_members_storage(config, lines.append, term, Dd()) is None
    assert term.fault.part == "members" and term.fault.kind == "corrupt"   # on the screen
    assert term.selftests["storage"][0] is False and "E-73" in term.selftests["storage"][1]
    config["members"]["enabled"] = False
    assert open_members_storage(config, lines.append, T(), Dd()) is None
