"""Published test vectors for firmware.security.des, firmware.security.pinblock and firmware.security.dukpt.

These run under CPython (pytest) and MicroPython (tools/mpy_runner.mjs), so they stay
cheap: a handful of transactions each. tests/test_dukpt.py does the long runs.

Sources of the vectors:
- DES: the FIPS 46 worked example key 133457799BBCDFF1; NIST SP 800-17 known-answer
  tables (variable plaintext, variable key, permutation and substitution tests).
- TDES: the NIST SP 800-67 three-key example.
- ISO 9564-1 format 0 and DUKPT: ANSI X9.24-1:2009 Annex A test data (BDK
  0123456789ABCDEFFEDCBA9876543210, KSN FFFF9876543210E00000, PIN 1234,
  PAN 4012345678909).
"""
import binascii

from firmware.security import des, dukpt, pinblock
from firmware.security.dukpt import DukptExhausted, DukptTerminal


def h(text):
    return binascii.unhexlify(text.replace(" ", ""))


def hx(data):
    return binascii.hexlify(bytes(data)).decode().upper()


def raises(exc_type, fn, *args):
    try:
        fn(*args)
    except exc_type as exc:
        return str(exc)
    raise AssertionError("%s not raised" % exc_type.__name__)


BDK = "0123456789ABCDEFFEDCBA9876543210"
IKSN = "FFFF9876543210E00000"
IPEK = "6AC292FAA1315B4D858AB3A3D7D5933A"
PAN = "4012345678909"
CLEAR_BLOCK = "041274EDCBA9876F"

# X9.24-1:2009 Annex A: KSN, PIN key (PIN variant), MAC request key, encrypted PIN block
ANNEX_A = (
    ("FFFF9876543210E00001", "042666B49184CF5C68DE9628D0397B36",
     "042666B4918430A368DE9628D03984C9", "1B9C1845EB993A7A"),
    ("FFFF9876543210E00002", "C46551CEF9FD244FAA9AD834130D3B38",
     "C46551CEF9FDDBB0AA9AD834130DC4C7", "10A01C8D02C69107"),
    ("FFFF9876543210E00003", "0DF3D9422ACA561A47676D07AD6BAD05",
     "0DF3D9422ACAA9E547676D07AD6B52FA", "18DC07B94797B466"),
    ("FFFF9876543210E00004", "279C0F6AEED0BE9A2B2C733E1383AE6E",
     "279C0F6AEED041652B2C733E13835191", "0BC79509D5645DF7"),
    ("FFFF9876543210E00005", "5F8DC6D2C845C1DA508DDC048093B8C0",
     "5F8DC6D2C8453E25508DDC048093473F", "5BC0AF22AD87B327"),
    ("FFFF9876543210E00006", "5E415CB0BAF9F0C3D0C14B63FB62FFBC",
     "5E415CB0BAF90F3CD0C14B63FB620043", "A16DF70AE36158D8"),
    ("FFFF9876543210E00007", "0C8F780B7C8B492FAE84A9EB2A6CE69F",
     "0C8F780B7C8BB6D0AE84A9EB2A6C1960", "27711C16CB257F8E"),
    ("FFFF9876543210E00008", "27F66D5244FF621EAA6F6120EDEB427F",
     "27F66D5244FF9DE1AA6F6120EDEBBD80", "50E55547A5027551"),
)

# The end of the same table: consecutive transactions around a counter with 9 one-bits,
# where the terminal must skip every counter that would have 11 (0FFC00 -> 100000).
ANNEX_A_TAIL = (
    ("FFFF9876543210EFF800", "33365F5CC6F23C35"),
    ("FFFF9876543210EFF801", "3A86BF003F835C9D"),
    ("FFFF9876543210EFF802", "3DB977D05C36DF3F"),
    ("FFFF9876543210EFF804", "BA83243305712099"),
    ("FFFF9876543210EFF808", "B0DA04AC90A36D85"),
    ("FFFF9876543210EFF810", "2CF02BD9C309EEDA"),
    ("FFFF9876543210EFF820", "9D1E2F77AEEE81C6"),
    ("FFFF9876543210EFF840", "40870B0F8BA2011C"),
    ("FFFF9876543210EFF880", "22E340D6ABB40981"),
    ("FFFF9876543210EFF900", "1A4C10AFBA03A430"),
    ("FFFF9876543210EFFA00", "849763B43E5F9CFF"),
    ("FFFF9876543210EFFC00", "DEFC6F09F8927B71"),
    ("FFFF9876543210F00000", "73EC88AD0AC5830E"),
)


def state_at(counter, ipek=IPEK, ksn=IKSN):
    """The registers a terminal holds just before it uses counter, built host-side.

    Valid registers: the one for the counter's lowest one-bit (the counter's own key)
    and, for every zero bit above it, the key of the counter's higher bits plus that
    bit. tests/test_dukpt.py checks this against real terminals step by step.
    """
    regs = [None] * dukpt.REGISTERS
    low = counter & -counter
    bit = low
    while bit <= 0x100000:
        if bit == low or not counter & bit:
            target = (counter & ~(2 * bit - 1)) | bit
            key = dukpt.derive_key_from_ipek(ipek, dukpt.ksn_with_counter(ksn, target))
            lrc = 0
            for b in key:
                lrc ^= b
            regs[dukpt._register(bit)] = hx(key) + "%02X" % lrc
        bit <<= 1
    return {"kind": "tdes-dukpt", "version": 1, "ksn": hx(dukpt.ksn_with_counter(ksn, counter)),
            "registers": regs}


# -- DES ----------------------------------------------------------------------------

def test_des_known_answers():
    vectors = (
        ("133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405"),   # FIPS 46 example
        ("0123456789ABCDEF", "4E6F772069732074", "3FA40E8A984D4815"),   # "Now is t"
        ("0101010101010101", "8000000000000000", "95F8A5E5DD31D900"),   # SP 800-17 var. text
        ("0101010101010101", "0000000000000001", "166B40B44ABA4BD6"),
        ("8001010101010101", "0000000000000000", "95A8D72813DAA94D"),   # variable key
        ("0101010101010102", "0000000000000000", "869EFD7F9F265A09"),
        ("1046913489980131", "0000000000000000", "88D55E54F54C97B4"),   # permutation
        ("7CA110454A1A6E57", "01A1D6D039776742", "690F5B0D9A26939B"),   # substitution
        ("0131D9619DC1376E", "5CD54CA83DEF57DA", "7A389D10354BD271"),
    )
    for key, plain, cipher in vectors:
        assert hx(des.des_encrypt(h(key), h(plain))) == cipher, key
        assert hx(des.des_decrypt(h(key), h(cipher))) == plain, key


def test_tdes_known_answers():
    # SP 800-67 example: three keys, three blocks of ECB
    key = h("0123456789ABCDEF 23456789ABCDEF01 456789ABCDEF0123")
    cipher = des.encrypt_ecb(key, b"The qufck brown fox jump")
    assert hx(cipher) == "A826FD8CE53B855FCCE21C8112256FE668D5C05DD9B6B900"
    assert bytes(des.decrypt_ecb(key, cipher)) == b"The qufck brown fox jump"
    # two-key TDES is K1 K2 K1; with K1 == K2 it is single DES
    k = h("133457799BBCDFF1")
    assert des.tdes_encrypt(k + k, h("0123456789ABCDEF")) == h("85E813540F0AB405")
    assert des.tdes_encrypt(k, h("0123456789ABCDEF")) == h("85E813540F0AB405")
    key16 = h(BDK)
    block = h("FFFF9876543210E0")
    assert des.tdes_encrypt(key16, block) == des.tdes_encrypt(key16 + key16[:8], block)
    assert des.tdes_decrypt(key16, des.tdes_encrypt(key16, block)) == block


def test_des_tables_are_the_standards_shape():
    for box in des._S:
        for row in range(4):
            assert sorted(box[16 * row:16 * row + 16]) == list(range(16))
    assert sorted(des._IP) == list(range(1, 65))
    assert sorted(des._P) == list(range(1, 33))
    assert len(set(des._PC1)) == 56 and not [b for b in des._PC1 if b % 8 == 0]
    assert sorted(des._PC2 + (9, 18, 22, 25, 35, 38, 43, 54)) == list(range(1, 57))


def test_des_rejects_wrong_sizes_with_the_size():
    assert "8 bytes" in raises(ValueError, des.des_encrypt, b"1234567", b"12345678")
    assert "16 or 24" in raises(ValueError, des.tdes_encrypt, b"1" * 12, b"12345678")
    assert "got 7" in raises(ValueError, des.tdes_encrypt, b"1" * 16, b"1234567")
    assert "8-byte blocks" in raises(ValueError, des.encrypt_ecb, b"1" * 16, b"123456789")


def test_des_wipe_zeroes_the_key_schedule():
    cipher = des.TDES(h(BDK))
    cipher.wipe()
    for ks in cipher._enc + cipher._dec:
        assert not [w for w in ks if w]


# -- ISO 9564-1 format 0 ---------------------------------------------------------------

def test_iso0_pin_block_of_the_annex():
    pin = bytearray(b"1234")
    block = pinblock.encode(pin, PAN)
    assert isinstance(block, bytearray)
    assert hx(block) == CLEAR_BLOCK
    assert pin == bytearray(b"1234")          # the caller's PIN is the caller's to wipe
    back = pinblock.decode(block, PAN)
    assert isinstance(back, bytearray) and back == pin
    pinblock.wipe(block)
    pinblock.wipe(back)
    assert block == bytearray(8) and back == bytearray(4)


def test_iso0_pin_and_pan_fields():
    # 12 digits of PIN, the longest; a 16-digit PAN loses its check digit and first 3
    block = pinblock.encode(bytearray(b"987654321098"), b"5413330089600010")
    assert hx(pinblock.pan_field("5413330089600010")) == "0000333008960001"
    assert hx(block) == "0C9845643A8698FE"     # 0C987654321098FF xor 0000333008960001
    assert pinblock.decode(block, "5413330089600010") == bytearray(b"987654321098")
    # a short PAN is padded with zeros on the left
    assert hx(pinblock.pan_field("12345678")) == "0000000001234567"


def test_iso0_rejects_bad_pins_without_echoing_them():
    msg = raises(ValueError, pinblock.encode, bytearray(b"123"), PAN)
    assert "4 to 12 digits" in msg and "123" not in msg.replace("got 3", "")
    assert "4 to 12" in raises(ValueError, pinblock.encode, bytearray(b"1234567890123"), PAN)
    msg = raises(ValueError, pinblock.encode, bytearray(b"12a45"), PAN)
    assert "only the digits" in msg and "12a45" not in msg
    assert "cannot be wiped" in raises(TypeError, pinblock.encode, "1234", PAN)


def test_iso0_rejects_bad_pans():
    assert "8 to 19 digits" in raises(ValueError, pinblock.encode, bytearray(b"1234"), "1234567")
    assert "8 to 19 digits" in raises(ValueError, pinblock.encode, bytearray(b"1234"), "1" * 20)
    assert "only the digits" in raises(ValueError, pinblock.encode, bytearray(b"1234"),
                                       "4012 3456 7890 9")


def test_iso0_decode_says_when_the_block_is_not_format_0():
    assert "format 3" in raises(ValueError, pinblock.decode, h("341274EDCBA9876F"), PAN)
    assert "length" in raises(ValueError, pinblock.decode, h("021274EDCBA9876F"), PAN)
    assert "filler" in raises(ValueError, pinblock.decode, h("041274EDCBA9876E"), PAN)
    assert "non-digit" in raises(ValueError, pinblock.decode, h("0412A4EDCBA9876F"), PAN)
    # the right block under the wrong PAN does not decode
    assert "wrong" in raises(ValueError, pinblock.decode, h(CLEAR_BLOCK), "5413330089600010")


# -- DUKPT, host side ---------------------------------------------------------------

def test_ipek_from_bdk():
    assert hx(dukpt.derive_ipek(BDK, IKSN)) == IPEK
    # the counter bits of the KSN do not change the IPEK
    assert hx(dukpt.derive_ipek(h(BDK), h("FFFF9876543210E00003"))) == IPEK


def test_host_keys_of_the_annex():
    for ksn, pin_key, mac_key, _ in ANNEX_A[:3]:
        assert hx(dukpt.derive_key(BDK, ksn, "pin")) == pin_key
        assert hx(dukpt.derive_key(BDK, ksn, "mac_request")) == mac_key
    # the bare transaction key, the response MAC key and the data keys for E00001
    assert hx(dukpt.derive_key(BDK, "FFFF9876543210E00001")) == "042666B49184CFA368DE9628D0397BC9"
    assert hx(dukpt.derive_key(BDK, "FFFF9876543210E00001", "mac_response")) == \
        "042666B46E84CFA368DE96282F397BC9"
    assert hx(dukpt.derive_key(BDK, "FFFF9876543210E00001", "data_request")) == \
        "448D3F076D8304036A55A3D7E0055A78"
    assert hx(dukpt.derive_key(BDK, "FFFF9876543210E00002", "data_request")) == \
        "F1BE73B36135C5C26CF937D50ABBE5AF"


def test_host_decrypts_the_annex_pin_blocks():
    for ksn, _, _, epb in ANNEX_A[:3]:
        assert hx(dukpt.decrypt_pin_block(BDK, ksn, h(epb))) == CLEAR_BLOCK
        assert dukpt.decrypt_pin(BDK, ksn, h(epb), PAN) == bytearray(b"1234")


def test_host_refuses_counters_a_terminal_never_sends():
    assert "counter is 0" in raises(ValueError, dukpt.derive_key, BDK, IKSN)
    assert "11 one-bits" in raises(ValueError, dukpt.derive_key, BDK, "FFFF9876543210E007FF")
    assert "10 bytes" in raises(ValueError, dukpt.derive_key, BDK, "FFFF9876543210E001")
    assert "not hex" in raises(ValueError, dukpt.derive_ipek, BDK, "FFFF9876543210E0000G")


# -- DUKPT, terminal side -------------------------------------------------------------

def test_terminal_pin_blocks_of_the_annex():
    saved = []
    term = DukptTerminal(h(IPEK), h(IKSN), saved.append)
    assert len(saved) == 1 and saved[0]["ksn"] == "FFFF9876543210E00001"
    for ksn, _, _, epb in ANNEX_A:
        got_ksn, block = term.encrypt_pin(bytearray(b"1234"), PAN)
        assert hx(got_ksn) == ksn
        assert hx(block) == epb, ksn
    assert len(saved) == 1 + len(ANNEX_A)


def test_terminal_same_key_for_pin_mac_and_data_in_one_transaction():
    term = DukptTerminal(IPEK, IKSN, lambda state: None)
    ksn, block, keys = term.transaction(h(CLEAR_BLOCK), ("mac_request", "data_request"))
    assert hx(ksn) == "FFFF9876543210E00001" and hx(block) == "1B9C1845EB993A7A"
    assert hx(keys["mac_request"]) == "042666B4918430A368DE9628D03984C9"
    assert hx(keys["data_request"]) == "448D3F076D8304036A55A3D7E0055A78"
    ksn, block, keys = term.transaction(None, ("mac_request",))
    assert hx(ksn) == "FFFF9876543210E00002" and block is None
    assert hx(keys["mac_request"]) == "C46551CEF9FDDBB0AA9AD834130DC4C7"
    assert "unknown DUKPT key usage" in raises(ValueError, term.transaction, None, ("pni",))


def test_terminal_skips_counters_with_more_than_ten_one_bits():
    term = DukptTerminal.from_state(state_at(0x0FF800), lambda state: None)
    for ksn, epb in ANNEX_A_TAIL:
        got_ksn, block = term.encrypt_pin_block(h(CLEAR_BLOCK))
        assert (hx(got_ksn), hx(block)) == (ksn, epb)
        assert dukpt.ones(dukpt.ksn_counter(got_ksn)) <= 10


def test_terminal_exhaustion_asks_for_a_new_initial_key():
    saved = []
    term = DukptTerminal.from_state(state_at(0x1FF800), saved.append)
    assert not term.exhausted
    ksn, block = term.encrypt_pin_block(h(CLEAR_BLOCK))      # the very last key
    assert hx(ksn) == "FFFF9876543210FFF800"
    assert dukpt.decrypt_pin_block(BDK, ksn, block) == h(CLEAR_BLOCK)
    assert term.exhausted and saved[-1]["registers"] == [None] * 21
    msg = raises(DukptExhausted, term.encrypt_pin_block, h(CLEAR_BLOCK))
    assert "load a new initial key" in msg
    assert isinstance(DukptExhausted("x"), dukpt.DukptError)
    # and it stays that way after a restart
    again = DukptTerminal.from_state(saved[-1], saved.append)
    assert "load a new initial key" in raises(DukptExhausted, again.encrypt_pin,
                                              bytearray(b"1234"), PAN)


def test_terminal_saves_before_it_returns_the_block():
    events = []

    def save(state):
        events.append(state)
        if fail[0]:
            raise OSError("disk full")

    fail = [False]
    term = DukptTerminal(IPEK, IKSN, save)
    events[:] = []
    fail[0] = True
    assert "disk full" in raises(OSError, term.encrypt_pin_block, h(CLEAR_BLOCK))
    # the state it tried to save already had the key used and gone
    assert events[-1]["ksn"] == "FFFF9876543210E00002"
    assert events[-1]["registers"][20] is None
    fail[0] = False
    # no block came out for E00001, and E00001's key is never used again
    ksn, block = term.encrypt_pin_block(h(CLEAR_BLOCK))
    assert hx(ksn) == "FFFF9876543210E00002" and hx(block) == "10A01C8D02C69107"
    assert events[-1]["ksn"] == "FFFF9876543210E00003"


def test_terminal_state_round_trips():
    saved = []
    term = DukptTerminal(IPEK, IKSN, saved.append)
    term.encrypt_pin_block(h(CLEAR_BLOCK))
    term.encrypt_pin_block(h(CLEAR_BLOCK))
    state = term.state()
    assert state == saved[-1]
    assert len(state["registers"]) == 21
    # counter 2 used register #20 and left #21 holding the key for counter 3
    assert state["registers"][19] is None and len(state["registers"][20]) == 34
    restored = DukptTerminal.from_state(state, saved.append)
    assert restored.state() == state
    assert restored.ksn == term.ksn and restored.counter == 3
    assert restored.encrypt_pin_block(h(CLEAR_BLOCK)) == term.encrypt_pin_block(h(CLEAR_BLOCK))
    assert hx(restored.ksn) == "FFFF9876543210E00004"
    # the loaded terminal's state matches the host-built one for the same counter
    assert restored.state() == state_at(4)


def test_terminal_refuses_a_damaged_state():
    good = state_at(1)
    assert "damaged" in raises(ValueError, DukptTerminal.from_state, None, print)
    bad = dict(good)
    bad["registers"] = good["registers"][:20]
    assert "21 future key registers" in raises(ValueError, DukptTerminal.from_state, bad, print)
    bad = dict(good)
    bad["ksn"] = "FFFF98"
    assert "load a new initial key" in raises(ValueError, DukptTerminal.from_state, bad, print)
    bad = dict(good)
    bad["registers"] = ["XYZ"] + good["registers"][1:]
    assert "register #1" in raises(ValueError, DukptTerminal.from_state, bad, print)
    assert "callable" in raises(TypeError, DukptTerminal, IPEK, IKSN, None)


def test_terminal_skips_a_register_whose_lrc_is_wrong():
    state = state_at(1)
    reg = state["registers"][20]                      # the key for counter 1
    state["registers"][20] = reg[:32] + "%02X" % (int(reg[32:], 16) ^ 1)
    term = DukptTerminal.from_state(state, lambda s: None)
    ksn, block = term.encrypt_pin_block(h(CLEAR_BLOCK))
    assert hx(ksn) == "FFFF9876543210E00002" and hx(block) == "10A01C8D02C69107"


def test_wiped_terminal_is_out_of_service():
    saved = []
    term = DukptTerminal(IPEK, IKSN, saved.append)
    term.wipe()
    assert term.exhausted and saved[-1]["registers"] == [None] * 21
    assert "new initial key" in raises(DukptExhausted, term.encrypt_pin_block, h(CLEAR_BLOCK))
