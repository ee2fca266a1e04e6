"""Published test vectors for AES DUKPT (firmware.security.dukpt_aes) and ISO 9564-1
format 4 PIN blocks (firmware.security.pinblock).

These run under CPython (pytest) and MicroPython (tools/mpy_runner.mjs), so they stay
cheap: a handful of transactions each. tests/test_aes_dukpt.py does the long runs.

Source of the vectors: the test vectors published with ANSI X9.24-3-2017 (its
supplement "Test Vectors for AES DUKPT"): BDK FEDCBA9876543210F1F1F1F1F1F1F1F1 (AES-128)
and the same twice over (AES-256), initial key ID 1234567890123456; the initial keys,
the intermediate derivation keys and PIN, MAC and data keys of the first eight
counters, of 0001FFFE-00020001 and of the last counters FFFE2000-FFFF0000; and the
format 4 worked example (PIN 1234, PAN 4111111111111111, random fill
2F69ADDE2E9E7ACE) with the enciphered PIN blocks of the first eight counters.
"""
import binascii

from firmware.security import aes, dukpt, dukpt_aes, pinblock
from firmware.security.dukpt_aes import AesDukptExhausted, AesDukptTerminal

BDK = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
BDK256 = BDK + BDK
IKID = "1234567890123456"
IK = "1273671EA26AC29AFA4D1084127652A1"
IK256 = "CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F"
PAN = "4111111111111111"
FILL = "2F69ADDE2E9E7ACE"
PIN_FIELD = "441234AAAAAAAAAA" + FILL
PAN_FIELD = "44111111111111111000000000000000"

# counter, intermediate derivation key, PIN key (AES-128), enciphered format 4 block
FIRST = (
    (1, "4F21B565BAD9835E112B6465635EAE44", "AF8CB133A78F8DC2D1359F18527593FB",
     "A912150391AB65A67E52883D81CE2D15"),
    (2, "2F34D68DE10F68D38091A73B9E7C437C", "D30BDC73EC9714B000BEC66BDB7B6D09",
     "52A00503BD34BA1383F6A7EE9FE2547F"),
    (3, "031504E530365CF81264238540518318", "7D69F01F3B45449F62C7816ECE723268",
     "A5A27E82B43A9A866A93D7ABE89CEF93"),
    (4, "0EEFC7ADA628BA68878DA9165A8A1887", "91A0588318EC2673214271F70137896E",
     "71B3D0528669498777555A8BE6698E44"),
    (5, "C2A7AC328A5DA2D6002D62465BFC028B", "35A43BC9EFEB09C756204B57E3FB7D4D",
     "881A7F77A2E04E5BEA985E342FD0B628"),
    (6, "D30F7D9351DA58448A2F5E92B4EE3B7D", "02DCC6CD1201A3A2CA7099559C862123",
     "BDC1C3871AFB0B340AA5B5CEFD08695E"),
    (7, "A8253CEED9AC042C54F75D35C8352278", "6ECF912F3B18CA11A7A27BB60705FD09",
     "4A8E6B8C7DBEE6CBA6DC774F0CB83396"),
    (8, "718EE6CF0B27E53D5F7AF99C4D8146A2", "4D9DF3FBEE3448FC3E676D04320A90F5",
     "8308BB857C17F390369F761F8EB358FA"),
)

# counter, intermediate derivation key (AES-128 BDK); 0001FFFF has 17 one-bits: the
# host can derive it, a terminal never uses it
ROLLOVER = (
    (0x0001FFFE, "E21E8C8D347F8561A2BE752DAA85A111"),
    (0x0001FFFF, "1FE368988089CDD76DA18A3458E113BA"),
    (0x00020000, "F7AE9025468A25D37B7249CFFED224C8"),
    (0x00020001, "692C8EA4013645135B36497131DF9D2C"),
)

# the last counters a terminal uses: counter, derivation key, PIN key (AES-128)
LAST = (
    (0xFFFE2000, "48E585B694EB0B18D5C35443E163C0BA", None),
    (0xFFFE4000, "396C2C7CA1EA701C03B86B7D41F0C562", "6239A27F572DEDB17BCA1AC413EF9FE9"),
    (0xFFFE8000, "0387625F189B58AE03EF0E8CCA41105E", "F10C1404137A80718FCCE8BD90FF9F67"),
    (0xFFFF0000, "F6BA59389BD14A9855BE9727E7C52E3C", "27EFAC1D158632588F4AC69E45C247C4"),
)

# AES-256 BDK: counter, derivation key, AES-128 PIN key, AES-256 PIN key
FIRST256 = (
    (1, "54AC2B32B145EA4A554CB8BC44B17467063A799856B1CCC2A138D36E8DBF78B3",
     "09C9C432966811D6B2C3336BAC1B1202",
     "8C1AB7BEE973829E30242E0BBBDD4946D540C98FC1B5BDCF94790001A23FD502"),
    (2, "5DD5A0253842BBBE1D7C0DA27021412C6F1FAB53FB928DEAE56DA06090A9DE97",
     "D632226A80795D13A80AFE66A3E97B01",
     "3583D6CD02FC38822CC71A8D7678E04F4A8556335E6CC66863D3DADC5AEE2C62"),
    (3, "8EEEF7C464AE415BB1D73FAED21993CD669F7999092A579EC6DD3CC680C65171",
     "C2CBD3D766B16F9F82F4EE3F74478918",
     "96A1AB5D37CB7CF81DDE64F66C46E0389B833E7AD5F4E44C791F04FAFDA6DA0E"),
)
LAST256 = (
    (0xFFFF0000, "6D6DB7AAAE8B3EA90E57A39E4BBA71E173B21B446B30A78D64BFC6A8806C55EE",
     "88B82556AEF4A681E0687F443A4C4F305AF9203B114470DFC77C7F08BC43F9DA"),
)


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


def ksn(counter):
    return dukpt_aes.make_ksn(IKID, counter)


def state_at(counter, initial_key=IK, pin_key_type="AES-128"):
    """The registers a terminal holds just before it uses counter, built host-side.

    Valid registers: the one for the counter's lowest one-bit (the counter's own key)
    and, for every zero bit above it, the key of the counter's higher bits plus that
    bit. tests/test_aes_dukpt.py checks this against real terminals step by step.
    """
    initial = h(initial_key)
    size = len(initial)
    regs = [None] * dukpt_aes.REGISTERS
    low = counter & -counter
    for i in range(dukpt_aes.REGISTERS):
        bit = 1 << i
        if bit < low or (bit != low and counter & bit):
            continue
        target = (counter & ~(2 * bit - 1)) | bit
        key = dukpt_aes.derivation_key(initial, ksn(target))
        lrc = 0
        for b in key:
            lrc ^= b
        regs[i] = hx(key) + "%02X" % lrc
    return {"kind": "aes-dukpt", "version": 1, "ksn": hx(ksn(counter)),
            "key_type": dukpt_aes._TYPE_OF_LENGTH[size], "pin_key_type": pin_key_type,
            "registers": regs}


# -- ISO 9564-1 format 4 -----------------------------------------------------------------

def test_format4_worked_example_of_x9_24_3():
    field = pinblock.format4_pin_field(bytearray(b"1234"), h(FILL))
    assert isinstance(field, bytearray) and hx(field) == PIN_FIELD
    assert hx(pinblock.format4_pan_field(PAN)) == PAN_FIELD
    key = h("AF8CB133A78F8DC2D1359F18527593FB")
    # the supplement's intermediate blocks: A = AES(K, PIN field), B = A xor PAN field
    a = aes.encrypt_block(key, field)
    assert hx(a) == "DE84127CF6DCA7DFE47BDE89057CB820"
    b = bytearray(x ^ y for x, y in zip(a, h(PAN_FIELD)))
    assert hx(b) == "9A95036DE7CDB6CEF47BDE89057CB820"
    assert hx(aes.encrypt_block(key, b)) == "A912150391AB65A67E52883D81CE2D15"
    # the same through the module's own encipher, and back
    pin = bytearray(b"1234")
    block = pinblock.format4_encipher(key, pin, PAN, h(FILL))
    assert hx(block) == "A912150391AB65A67E52883D81CE2D15"
    assert pin == bytearray(b"1234")            # the caller's PIN is the caller's to wipe
    assert hx(pinblock.format4_decipher_field(key, block, PAN)) == PIN_FIELD
    back = pinblock.format4_decipher(key, block, PAN)
    assert isinstance(back, bytearray) and back == bytearray(b"1234")


def test_format4_fields_for_long_short_and_odd_inputs():
    # 12-digit PIN fills the PIN half; a 19-digit PAN gives M = 7
    field = pinblock.format4_pin_field(bytearray(b"987654321098"), bytes(8))
    assert hx(field) == "4C987654321098AA" + "00" * 8
    assert hx(pinblock.format4_pan_field("4000123456789012345")) == \
        "74000123456789012345000000000000"
    # 12 digits: M = 0; fewer: zeros on the left to 12 and M = 0
    assert hx(pinblock.format4_pan_field("123456789012")) == "01234567890120000000000000000000"
    assert hx(pinblock.format4_pan_field("12345678")) == "00000123456780000000000000000000"
    # an odd PIN length leaves a fill nibble in the last PIN byte
    assert hx(pinblock.format4_pin_field(bytearray(b"12345"), bytes(8)))[:16] == \
        "4512345AAAAAAAAA"


def test_format4_random_half_differs_and_is_ignored_when_deciphering():
    key = h("AF8CB133A78F8DC2D1359F18527593FB")
    one = pinblock.format4_encipher(key, bytearray(b"1234"), PAN)
    two = pinblock.format4_encipher(key, bytearray(b"1234"), PAN)
    assert one != two                       # the same PIN and PAN never look the same
    assert pinblock.format4_decipher(key, one, PAN) == bytearray(b"1234")
    assert pinblock.format4_decipher(key, two, PAN) == bytearray(b"1234")


def test_format4_decipher_says_what_is_wrong():
    key = h("AF8CB133A78F8DC2D1359F18527593FB")
    block = h("A912150391AB65A67E52883D81CE2D15")
    # another PAN, another key: not a format 4 field
    assert "wrong" in raises(ValueError, pinblock.format4_decipher, key, block,
                             "5413330089600010")
    assert "wrong" in raises(ValueError, pinblock.format4_decipher,
                             h("D30BDC73EC9714B000BEC66BDB7B6D09"), block, PAN)
    assert "format 0" in raises(ValueError, pinblock.format4_pin, h("041234AAAAAAAAAA" + FILL))
    assert "length of 3" in raises(ValueError, pinblock.format4_pin, h("43123AAAAAAAAAAA" + FILL))
    assert "non-digit" in raises(ValueError, pinblock.format4_pin, h("4412B4AAAAAAAAAA" + FILL))
    assert "fill" in raises(ValueError, pinblock.format4_pin, h("441234AAAAAAAAAF" + FILL))
    assert "16 bytes" in raises(ValueError, pinblock.format4_decipher, key, block[:8], PAN)
    assert "cannot be wiped" in raises(TypeError, pinblock.format4_pin_field, "1234")
    assert "4 to 12" in raises(ValueError, pinblock.format4_pin_field, bytearray(b"123"))


# -- AES DUKPT, host side ------------------------------------------------------------------

def test_initial_keys_from_the_bdks():
    assert hx(dukpt_aes.derivation_data(0x8001, "AES-128", h(IKID))) == \
        "01018001000200801234567890123456"
    assert hx(dukpt_aes.derive_initial_key(BDK, IKID)) == IK
    assert hx(dukpt_aes.derive_initial_key(h(BDK256), h(IKID))) == IK256
    # a whole KSN gives the same initial key: its counter does not count
    assert hx(dukpt_aes.derive_initial_key(BDK, ksn(0x1234))) == IK


def test_host_keys_of_the_first_counters():
    for counter, derivation, pin_key, _ in FIRST[:3] + FIRST[-1:]:
        assert hx(dukpt_aes.derive_key(BDK, ksn(counter))) == derivation, counter
        assert hx(dukpt_aes.derive_key(BDK, ksn(counter), "pin")) == pin_key
    # the other usages of counter 1
    assert hx(dukpt_aes.derive_key(BDK, ksn(1), "mac_generation")) == \
        "A2DC23DE6FDE0824A2BC321E08E4B8B7"
    assert hx(dukpt_aes.derive_key(BDK, ksn(1), "data_encrypt")) == \
        "A35C412EFD41FDB98B69797C02DCD08F"


def test_host_keys_around_a_carry_and_at_the_end():
    initial = h(IK)
    for counter, derivation in ROLLOVER:
        assert hx(dukpt_aes.derivation_key(initial, ksn(counter))) == \
            derivation, counter
    for counter, derivation, pin_key in LAST:
        assert hx(dukpt_aes.derivation_key(initial, ksn(counter))) == derivation
        if pin_key:
            assert hx(dukpt_aes.derive_key(BDK, ksn(counter), "pin")) == pin_key


def test_host_keys_from_an_aes_256_bdk():
    for counter, derivation, pin128, pin256 in FIRST256:
        assert hx(dukpt_aes.derive_key(BDK256, ksn(counter))) == derivation
        assert hx(dukpt_aes.derive_key(BDK256, ksn(counter), "pin")) == pin128
        assert hx(dukpt_aes.derive_key(BDK256, ksn(counter), "pin", "AES-256")) == pin256
    for counter, derivation, pin256 in LAST256:
        assert hx(dukpt_aes.derivation_key(h(IK256), ksn(counter))) == derivation
        assert hx(dukpt_aes.derive_key(BDK256, ksn(counter), "pin", "AES-256")) == pin256


def test_host_decrypts_the_published_pin_blocks():
    for counter, _, _, block in FIRST[:3]:
        assert dukpt_aes.decrypt_pin(BDK, ksn(counter), h(block), PAN) == bytearray(b"1234")
        assert hx(dukpt_aes.decrypt_pin_field(BDK, hx(ksn(counter)), block, PAN)) == PIN_FIELD


def test_host_refuses_what_a_terminal_never_sends():
    assert "counter is 0" in raises(ValueError, dukpt_aes.derive_key, BDK, ksn(0))
    assert "17 one-bits" in raises(ValueError, dukpt_aes.derive_key, BDK, ksn(0x1FFFF))
    assert "12 bytes" in raises(ValueError, dukpt_aes.derive_key, BDK, "FFFF9876543210E00001")
    assert "not hex" in raises(ValueError, dukpt_aes.derive_key, BDK, "12345678901234560000000G")
    assert "16, 24 or 32 bytes" in raises(ValueError, dukpt_aes.derive_initial_key,
                                          h(BDK)[:10], IKID)
    msg = raises(ValueError, dukpt_aes.derive_key, BDK, ksn(1), "pin", "AES-256")
    assert "AES-256 working key needs a BDK" in msg
    assert "unknown AES DUKPT key usage" in raises(ValueError, dukpt_aes.derive_key, BDK,
                                                   ksn(1), "pni")
    assert "16 bytes" in raises(ValueError, dukpt_aes.decrypt_pin, BDK, ksn(1), h("00" * 8), PAN)


# -- AES DUKPT, terminal side -------------------------------------------------------------

def test_terminal_pin_blocks_of_the_supplement():
    saved = []
    term = AesDukptTerminal(h(IK), h(IKID), saved.append)
    assert len(saved) == 1 and saved[0]["ksn"] == "123456789012345600000001"
    assert term.counter == 1 and not term.exhausted
    for counter, _, _, block in FIRST:
        got_ksn, got = term.encrypt_pin_field(h(PIN_FIELD), PAN)
        assert hx(got_ksn) == hx(ksn(counter))
        assert hx(got) == block, counter
    assert len(saved) == 1 + len(FIRST)
    # encrypt_pin makes its own field (random half) under the next key
    got_ksn, got = term.encrypt_pin(bytearray(b"1234"), PAN)
    assert hx(got_ksn) == "123456789012345600000009" and len(got) == 16
    assert dukpt_aes.decrypt_pin(BDK, got_ksn, got, PAN) == bytearray(b"1234")


def test_terminal_on_an_aes_256_initial_key():
    term = AesDukptTerminal(h(IK256), hx(ksn(0)), lambda s: None, pin_key_type="AES-256")
    assert term.state()["key_type"] == "AES-256" and term.state()["pin_key_type"] == "AES-256"
    for counter, _, _, pin256 in FIRST256[:2]:
        got_ksn, block = term.encrypt_pin_field(h(PIN_FIELD), PAN)
        assert hx(got_ksn) == hx(ksn(counter))
        assert hx(pinblock.format4_decipher_field(h(pin256), block, PAN)) == PIN_FIELD
    # and the default PIN key (AES-128) from the same initial key
    term = AesDukptTerminal(h(IK256), h(IKID), lambda s: None)
    got_ksn, block = term.encrypt_pin_field(h(PIN_FIELD), PAN)
    assert hx(pinblock.format4_decipher_field(h(FIRST256[0][2]), block, PAN)) == PIN_FIELD
    assert "AES-256 working key" in raises(ValueError, AesDukptTerminal, h(IK), h(IKID),
                                           print, "AES-256")


def test_terminal_same_key_for_pin_mac_and_data_in_one_transaction():
    term = AesDukptTerminal(IK, IKID, lambda state: None)
    got_ksn, block, keys = term.transaction(h(PIN_FIELD), PAN, ("mac_generation", "data_encrypt"))
    assert hx(got_ksn) == hx(ksn(1)) and hx(block) == FIRST[0][3]
    assert hx(keys["mac_generation"]) == "A2DC23DE6FDE0824A2BC321E08E4B8B7"
    assert hx(keys["data_encrypt"]) == "A35C412EFD41FDB98B69797C02DCD08F"
    got_ksn, block, keys = term.transaction(None, None, ("mac_generation",))
    assert hx(got_ksn) == hx(ksn(2)) and block is None
    assert hx(keys["mac_generation"]) == "484C3B06E8562704528CD5B46FB12FB6"
    assert "unknown AES DUKPT key usage" in raises(ValueError, term.transaction, None, None,
                                                   ("pni",))
    assert "needs the PAN" in raises(ValueError, term.transaction, h(PIN_FIELD))


def test_terminal_skips_counters_with_more_than_sixteen_one_bits():
    term = AesDukptTerminal.from_state(state_at(0x0001FFFE), lambda state: None)
    initial = h(IK)
    seen = []
    for _ in range(3):
        got_ksn, block = term.encrypt_pin_field(h(PIN_FIELD), PAN)
        counter = dukpt_aes.ksn_counter(got_ksn)
        seen.append(counter)
        assert dukpt.ones(counter) <= 16
        # the block deciphers under the PIN key of the published derivation key
        derivation = [d for c, d in ROLLOVER if c == counter][0]
        assert hx(dukpt_aes.derivation_key(initial, got_ksn)) == derivation
        pin_key = dukpt_aes.working_key(h(derivation), got_ksn)
        assert hx(pinblock.format4_decipher_field(pin_key, block, PAN)) == PIN_FIELD
    assert seen == [0x0001FFFE, 0x00020000, 0x00020001]       # 0001FFFF skipped


def test_terminal_exhaustion_asks_for_a_new_initial_key():
    saved = []
    term = AesDukptTerminal.from_state(state_at(0xFFFE2000), saved.append)
    for counter, _, pin_key in LAST:
        assert not term.exhausted
        got_ksn, block = term.encrypt_pin_field(h(PIN_FIELD), PAN)
        assert dukpt_aes.ksn_counter(got_ksn) == counter
        if pin_key:
            assert hx(pinblock.format4_decipher_field(h(pin_key), block, PAN)) == PIN_FIELD
    # FFFF0000 was the very last key
    assert term.exhausted and saved[-1]["registers"] == [None] * 32
    assert saved[-1]["ksn"].endswith("00000000")
    msg = raises(AesDukptExhausted, term.encrypt_pin, bytearray(b"1234"), PAN)
    assert "load a new initial key" in msg
    # the service catches TDES and AES exhaustion alike
    assert isinstance(AesDukptExhausted("x"), dukpt.DukptExhausted)
    assert isinstance(AesDukptExhausted("x"), dukpt.DukptError)
    again = AesDukptTerminal.from_state(saved[-1], saved.append)
    assert again.exhausted
    assert "load a new initial key" in raises(AesDukptExhausted, again.encrypt_pin,
                                              bytearray(b"1234"), PAN)


def test_terminal_saves_before_the_key_is_used():
    events = []
    fail = [False]

    def save(state):
        events.append(state)
        if fail[0]:
            raise OSError("disk full")

    term = AesDukptTerminal(IK, IKID, save)
    events[:] = []
    fail[0] = True
    assert "disk full" in raises(OSError, term.encrypt_pin_field, h(PIN_FIELD), PAN)
    # the state it tried to save already had counter 1's key erased
    assert events[-1]["ksn"] == hx(ksn(2))
    assert events[-1]["registers"][0] is None
    fail[0] = False
    # no block came out for counter 1, and its key is never used again
    got_ksn, block = term.encrypt_pin_field(h(PIN_FIELD), PAN)
    assert hx(got_ksn) == hx(ksn(2)) and hx(block) == FIRST[1][3]
    assert events[-1]["ksn"] == hx(ksn(3))


def test_terminal_state_round_trips():
    saved = []
    term = AesDukptTerminal(IK, IKID, saved.append)
    term.encrypt_pin_field(h(PIN_FIELD), PAN)
    term.encrypt_pin_field(h(PIN_FIELD), PAN)
    state = term.state()
    assert state == saved[-1]
    assert state["kind"] == "aes-dukpt" and len(state["registers"]) == 32
    # counter 2 used register 1 and left register 0 holding the key for counter 3
    assert state["registers"][1] is None and len(state["registers"][0]) == 34
    restored = AesDukptTerminal.from_state(state, saved.append)
    assert restored.state() == state
    assert restored.ksn == term.ksn and restored.counter == 3
    assert restored.encrypt_pin_field(h(PIN_FIELD), PAN) == \
        term.encrypt_pin_field(h(PIN_FIELD), PAN)
    assert restored.counter == 4
    # the loaded terminal's state matches the host-built one for the same counter
    assert restored.state() == state_at(4)


def test_restore_picks_the_scheme_by_kind():
    aes_term = dukpt_aes.restore(state_at(1), print)
    assert isinstance(aes_term, AesDukptTerminal) and aes_term.KIND == "aes-dukpt"
    tdes = dukpt.DukptTerminal(dukpt.derive_ipek("0123456789ABCDEFFEDCBA9876543210",
                                                 "FFFF9876543210E00000"),
                               "FFFF9876543210E00000", lambda s: None)
    state = tdes.state()
    assert state["kind"] == "tdes-dukpt" and tdes.KIND == "tdes-dukpt"
    assert isinstance(dukpt_aes.restore(state, print), dukpt.DukptTerminal)
    # a TDES state saved before the kind was recorded is still TDES
    old = dict(state)
    del old["kind"]
    assert isinstance(dukpt_aes.restore(old, print), dukpt.DukptTerminal)
    # and neither terminal takes the other's state
    assert "not a TDES DUKPT state" in raises(ValueError, dukpt.DukptTerminal.from_state,
                                              state_at(1), print)
    assert "kind" in raises(ValueError, AesDukptTerminal.from_state, state, print)


def test_terminal_refuses_a_damaged_state():
    good = state_at(1)
    assert "damaged" in raises(ValueError, AesDukptTerminal.from_state, None, print)
    for key, value, words in (("registers", good["registers"][:31], "32 intermediate"),
                              ("ksn", "1234", "load a new initial key"),
                              ("version", 2, "version 2"),
                              ("key_type", "AES-512", "key types"),
                              ("pin_key_type", "AES-256", "from AES-128"),
                              ("registers", ["XYZ"] + good["registers"][1:], "register 0")):
        bad = dict(good)
        bad[key] = value
        assert words in raises(ValueError, AesDukptTerminal.from_state, bad, print), key
    bad = dict(good)
    bad["ksn"] = hx(ksn(0x1FFFF))
    assert "more than 16 one-bits" in raises(ValueError, AesDukptTerminal.from_state, bad, print)
    assert "callable" in raises(TypeError, AesDukptTerminal, IK, IKID, None)
    assert "callable" in raises(TypeError, AesDukptTerminal.from_state, good, None)


def test_terminal_skips_a_register_whose_check_byte_is_wrong():
    state = state_at(1)
    reg = state["registers"][0]                       # the key for counter 1
    state["registers"][0] = reg[:32] + "%02X" % (int(reg[32:], 16) ^ 1)
    term = AesDukptTerminal.from_state(state, lambda s: None)
    got_ksn, block = term.encrypt_pin_field(h(PIN_FIELD), PAN)
    assert hx(got_ksn) == hx(ksn(2)) and hx(block) == FIRST[1][3]


def test_wiped_terminal_is_out_of_service():
    saved = []
    term = AesDukptTerminal(IK, IKID, saved.append)
    term.wipe()
    assert term.exhausted and saved[-1]["registers"] == [None] * 32
    assert "new initial key" in raises(AesDukptExhausted, term.encrypt_pin_field,
                                       h(PIN_FIELD), PAN)
