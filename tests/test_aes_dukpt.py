"""AES DUKPT at length (CPython): the pure-Python AES against the cryptography package,
format 4 against an independent encipherment, thousands of terminal transactions
checked against the host, restarts and crashes around save(), exhaustion; then the
parts around it: the host profile setting, the wire (DE53/DE61), the host simulator,
the composition's test key, and PIN sales end to end against the real host simulator.

The cheap published vectors, which also run under MicroPython, are in
tests/portable/test_aes_vectors.py and tests/portable/test_aes_dukpt_vectors.py.
"""
import json
import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.security import aes, dukpt, dukpt_aes, pinblock
from firmware.security.dukpt_aes import AesDukptExhausted, AesDukptTerminal
from tests.portable.test_aes_dukpt_vectors import BDK, BDK256, IK, IK256, IKID, PAN, state_at

MASK = dukpt_aes.COUNTER_MASK


def ecb(key, block, decrypt=False):
    c = Cipher(algorithms.AES(bytes(key)), modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(bytes(block)) + op.finalize()


def popcount(n):
    return bin(n).count("1")


def next_valid(counter):
    """The counter a terminal uses after this one (None: none left): the next with at
    most 16 one-bits, found by counting, not by the terminal's rule."""
    counter += 1
    while counter <= MASK and popcount(counter) > 16:
        counter += 1
    return counter if counter <= MASK else None


def ksn(counter):
    return dukpt_aes.make_ksn(IKID, counter)


def random_pin(rng):
    return bytearray(rng.choice(b"0123456789") for _ in range(rng.randint(4, 12)))


# -- AES against the cryptography package ------------------------------------------------

@pytest.mark.parametrize("size", aes.KEY_SIZES)
def test_aes_agrees_with_cryptography_on_random_keys_and_blocks(size):
    rng = random.Random(197 + size)
    for _ in range(400):
        key = bytes(rng.getrandbits(8) for _ in range(size))
        block = bytes(rng.getrandbits(8) for _ in range(16))
        c = aes.AES(key)
        assert bytes(c.encrypt_block(block)) == ecb(key, block)
        assert bytes(c.decrypt_block(block)) == ecb(key, block, decrypt=True)


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=16, max_size=32).filter(lambda k: len(k) in (16, 24, 32)),
       block=st.binary(min_size=16, max_size=16))
def test_aes_round_trips_and_matches_cryptography(key, block):
    out = aes.encrypt_block(key, block)
    assert bytes(out) == ecb(key, block)
    assert aes.decrypt_block(key, out) == block


# -- format 4 against an encipherment written with cryptography -----------------------

@settings(max_examples=300, deadline=None)
@given(pin=st.text("0123456789", min_size=4, max_size=12),
       pan=st.text("0123456789", min_size=8, max_size=19),
       key=st.binary(min_size=16, max_size=16), fill=st.binary(min_size=8, max_size=8))
def test_format4_layout_and_encipherment(pin, pan, key, fill):
    # the fields as ISO 9564-1 words them, built here from strings
    pin_field = ("4%X" % len(pin) + pin).ljust(16, "A") + fill.hex().upper()
    digits = pan if len(pan) >= 12 else pan.rjust(12, "0")
    pan_field = ("%X" % (len(digits) - 12) + digits).ljust(32, "0")
    assert pinblock.format4_pin_field(bytearray(pin.encode()), fill).hex().upper() == pin_field
    assert pinblock.format4_pan_field(pan).hex().upper() == pan_field
    a = ecb(key, bytes.fromhex(pin_field))
    b = bytes(x ^ y for x, y in zip(a, bytes.fromhex(pan_field)))
    block = pinblock.format4_encipher(key, bytearray(pin.encode()), pan, fill)
    assert bytes(block) == ecb(key, b)
    assert pinblock.format4_decipher(key, block, pan) == bytearray(pin.encode())


def test_format4_is_bound_to_its_pan():
    rng = random.Random(94564)
    key = bytes(16)
    for _ in range(200):
        pan = "".join(rng.choice("0123456789") for _ in range(16))
        other = pan[:-1] + str((int(pan[-1]) + 1) % 10)
        block = pinblock.format4_encipher(key, bytearray(b"1234"), pan)
        with pytest.raises(ValueError):
            pinblock.format4_decipher(key, block, other)


# -- terminal against host, at length --------------------------------------------------

def test_terminal_and_host_agree_for_thousands_of_consecutive_transactions():
    rng = random.Random(2017)
    saved = []
    term = AesDukptTerminal(bytes.fromhex(IK), bytes.fromhex(IKID), saved.append)
    seen = set()
    expected = 1
    for n in range(2500):
        pin = random_pin(rng)
        got_ksn, block = term.encrypt_pin(pin, PAN)
        counter = dukpt_aes.ksn_counter(got_ksn)
        assert counter == expected == n + 1          # nothing to skip this low
        assert got_ksn not in seen
        seen.add(got_ksn)
        assert saved[-1]["ksn"] == ksn(next_valid(counter)).hex().upper()
        assert dukpt_aes.decrypt_pin(BDK, got_ksn, block, PAN) == pin
        if n % 251 == 0:
            # the registers are exactly what the standard says they should be
            assert term.state() == state_at(next_valid(counter))
        expected = next_valid(counter)


@settings(max_examples=25, deadline=None)
@given(start=st.integers(1, MASK).filter(lambda c: popcount(c) <= 16),
       steps=st.integers(1, 40))
def test_terminal_and_host_agree_from_any_counter(start, steps):
    term = AesDukptTerminal.from_state(state_at(start), lambda state: None)
    field = pinblock.format4_pin_field(bytearray(b"1234"))
    expected = start
    for _ in range(steps):
        if expected is None:
            with pytest.raises(AesDukptExhausted):
                term.encrypt_pin_field(field, PAN)
            return
        got_ksn, block = term.encrypt_pin_field(field, PAN)
        assert dukpt_aes.ksn_counter(got_ksn) == expected
        assert dukpt_aes.decrypt_pin_field(BDK, got_ksn, block, PAN) == field
        expected = next_valid(expected)
    assert term.state() == state_at(expected)


@settings(max_examples=10, deadline=None)
@given(start=st.integers(1, MASK).filter(lambda c: popcount(c) <= 16),
       steps=st.integers(1, 12))
def test_aes_256_terminal_and_host_agree(start, steps):
    term = AesDukptTerminal.from_state(state_at(start, IK256, "AES-256"), lambda state: None)
    expected = start
    for _ in range(steps):
        if expected is None:
            return
        got_ksn, block = term.encrypt_pin(bytearray(b"4321"), PAN)
        assert dukpt_aes.ksn_counter(got_ksn) == expected
        assert dukpt_aes.decrypt_pin(BDK256, got_ksn, block, PAN, "AES-256") == \
            bytearray(b"4321")
        with pytest.raises(ValueError):      # the AES-128 key of the same counter is another
            dukpt_aes.decrypt_pin(BDK256, got_ksn, block, PAN)
        expected = next_valid(expected)


def test_terminal_runs_to_exhaustion_and_says_so():
    start = 0xFFFC0000                               # 14 one-bits: at most 2 more of 18
    left = sum(1 for c in range(start, MASK + 1) if popcount(c) <= 16)
    saved = []
    term = AesDukptTerminal.from_state(state_at(start), saved.append)
    counters = []
    with pytest.raises(AesDukptExhausted) as info:
        while True:
            got_ksn, _ = term.encrypt_pin(bytearray(b"1234"), PAN)
            counters.append(dukpt_aes.ksn_counter(got_ksn))
    assert len(counters) == left == 1 + 18 + 153     # C(18,0) + C(18,1) + C(18,2)
    assert counters == sorted(set(counters))
    assert max(popcount(c) for c in counters) == 16
    assert counters[-1] == 0xFFFF0000
    assert "technician must load a new initial key" in str(info.value)
    assert term.exhausted and saved[-1]["registers"] == [None] * 32


# -- durability ------------------------------------------------------------------------

class PowerCut(Exception):
    pass


def test_save_happens_before_the_key_is_used():
    events = []

    def save(state):
        events.append(("save", state["ksn"], state["registers"][0]))

    real = pinblock.format4_encipher_field
    term = AesDukptTerminal(IK, IKID, save)
    import firmware.security.dukpt_aes as module
    try:
        module.format4_encipher_field = lambda *a: (events.append(("use",)), real(*a))[1]
        for n in range(1, 40):
            got_ksn, _ = term.encrypt_pin(bytearray(b"1234"), PAN)
            # this transaction's save came before its key enciphered anything, with the
            # counter moved on
            assert events[-2][0] == "save" and events[-1] == ("use",)
            assert events[-2][1] == ksn(next_valid(n)).hex().upper()
    finally:
        module.format4_encipher_field = real


def test_a_crash_never_makes_the_terminal_reuse_a_key():
    rng = random.Random(2409)
    disk = {}
    sent = []

    def make_save(cut_after_write, cut_before_write):
        def save(state):
            if cut_before_write():
                raise PowerCut("power lost before the write")
            disk["state"] = json.loads(json.dumps(state))     # fsync'd
            if cut_after_write():
                raise PowerCut("power lost after the write")
        return save

    def chance():
        return rng.random() < 0.08

    term = AesDukptTerminal(IK, IKID, make_save(lambda: False, lambda: False))
    for _ in range(600):
        try:
            got_ksn, block = term.encrypt_pin(bytearray(b"1234"), PAN)
        except PowerCut:
            # reboot: whatever is on disk is all the terminal knows
            term = AesDukptTerminal.from_state(disk["state"], make_save(chance, chance))
            continue
        assert dukpt_aes.decrypt_pin(BDK, got_ksn, block, PAN) == bytearray(b"1234")
        sent.append(got_ksn)
    assert len(sent) == len(set(sent)), "a KSN (and so a key) was sent twice"
    assert sent == sorted(sent)
    assert len(sent) > 400


@settings(max_examples=30, deadline=None)
@given(transactions=st.integers(0, 60))
def test_state_survives_json_and_a_restart(transactions):
    saved = []
    term = AesDukptTerminal(IK, IKID, saved.append)
    field = pinblock.format4_pin_field(bytearray(b"1234"))
    for _ in range(transactions):
        term.encrypt_pin_field(field, PAN)
    stored = json.loads(json.dumps(saved[-1]))
    assert stored == term.state() and stored["kind"] == "aes-dukpt"
    restored = dukpt_aes.restore(stored, saved.append)
    assert isinstance(restored, AesDukptTerminal) and restored.state() == term.state()
    for _ in range(3):
        assert restored.encrypt_pin_field(field, PAN) == term.encrypt_pin_field(field, PAN)


def test_damaged_registers_are_skipped_never_misused():
    rng = random.Random(7)
    term = AesDukptTerminal(IK, IKID, lambda state: None)
    for _ in range(300):
        term.encrypt_pin(bytearray(b"1234"), PAN)
    state = term.state()
    valid = [i for i, reg in enumerate(state["registers"]) if reg]
    victim = rng.choice(valid)
    reg = state["registers"][victim]
    state["registers"][victim] = reg[:10] + ("0" if reg[10] != "0" else "1") + reg[11:]
    damaged = AesDukptTerminal.from_state(state, lambda state: None)
    last = term.counter - 1
    for _ in range(300):
        got_ksn, block = damaged.encrypt_pin(bytearray(b"1234"), PAN)
        counter = dukpt_aes.ksn_counter(got_ksn)
        assert counter > last and popcount(counter) <= 16
        assert dukpt_aes.decrypt_pin(BDK, got_ksn, block, PAN) == bytearray(b"1234")
        last = counter


def test_used_keys_are_overwritten_in_place():
    term = AesDukptTerminal(IK, IKID, lambda state: None)
    current = term._regs[0]                  # holds the key for counter 1
    assert any(current[:16])
    term.encrypt_pin(bytearray(b"1234"), PAN)
    assert term._regs[0] is current and not any(current[:16])
    assert current[16] != 0                  # erased: check byte made wrong


# -- the host profile setting, the wire, the simulator, the composition ------------------

def test_pin_security_setting():
    from firmware.core import config
    assert config.defaults()["host"]["pin_security"] == "tdes-dukpt"
    cfg, errors = config.validate({"host": {"pin_security": "aes-dukpt"}})
    assert not errors and cfg["host"]["pin_security"] == "aes-dukpt"
    _, errors = config.validate({"host": {"pin_security": "aes"}})
    assert len(errors) == 1
    assert errors[0].startswith('host.pin_security = "aes": must be "tdes-dukpt"')
    assert "aes-dukpt" in errors[0] and "host profile" in errors[0]


def test_the_pin_block_travels_by_its_size():
    from drivers.iso8583_spec import decode, encode, masked
    from firmware.payments import hostmsg
    assert hostmsg.pin_fields("FFFF9876543210E00001", "1B9C1845EB993A7A") == \
        {"53": "FFFF9876543210E00001", "52": "1B9C1845EB993A7A"}
    fields = hostmsg.pin_fields("123456789012345600000001", "A912150391AB65A67E52883D81CE2D15")
    assert fields == {"53": "123456789012345600000001",
                      "61": "A912150391AB65A67E52883D81CE2D15"}
    msg = {"t": "0200", "2": PAN, "3": "000000", "4": "000000001000", "11": "000001",
           "41": "HP000001"}
    msg.update(fields)
    raw = encode(msg)
    # DE53 an LLVAR of 24 hex digits; DE61 a binary LLLVAR of 16 bytes
    assert b"24123456789012345600000001" + b"016" + bytes.fromhex(
        "A912150391AB65A67E52883D81CE2D15") in raw
    assert decode(raw) == msg
    assert masked(msg)["61"] == "<32 hidden>"
    with pytest.raises(Exception, match="DE61"):
        encode(dict(msg, **{"61": "00" * 17}))


@pytest.fixture
def sim(tmp_path):
    from tools.host.hostsim import HostSim
    host = HostSim(str(tmp_path), tls=False, slow_ms=100)
    yield host
    host.ledger.close()


def _sale(stan, amount, **extra):
    msg = {"t": "0200", "2": PAN, "3": "000000", "4": "%012d" % amount, "7": "1121093015",
           "11": stan, "22": "021", "41": "HP000001", "42": "000000000000001", "49": "840"}
    msg.update(extra)
    return msg


def _answer(sim, msg):
    from drivers.iso8583_spec import decode, encode
    return decode(sim.handle(decode(encode(msg))).payload())


def _aes_fields(pin, bdk=BDK, counter=None):
    initial = dukpt_aes.derive_initial_key(bdk, IKID)
    term = AesDukptTerminal(initial, IKID, lambda state: None)
    if counter:
        term = AesDukptTerminal.from_state(state_at(counter), lambda state: None)
    got_ksn, block = term.encrypt_pin(bytearray(pin), PAN)
    return {"53": got_ksn.hex().upper(), "61": block.hex().upper()}


def test_hostsim_verifies_aes_pins(sim):
    good = _answer(sim, _sale("000201", 1000, **_aes_fields(b"1234")))
    assert good["39"] == "00"
    assert "PIN verified (AES DUKPT)" in sim.ledger.exchanges(stan="000201")[0]["note"]
    assert _answer(sim, _sale("000202", 1000, **_aes_fields(b"4321")))["39"] == "55"
    assert sim.ledger.find("000202", "HP000001") is None
    # another BDK deciphers to noise: a wrong PIN as far as the host can tell
    assert _answer(sim, _sale("000203", 1000, **_aes_fields(b"1234", bdk="00" * 16)))["39"] == "55"
    # far along the counter too
    assert _answer(sim, _sale("000204", 1000, **_aes_fields(b"1234", counter=0xFFFE8000)))["39"] \
        == "00"


def test_hostsim_refuses_mixed_up_pin_fields(sim):
    aes_fields = _aes_fields(b"1234")
    term = dukpt.DukptTerminal(dukpt.derive_ipek("0123456789ABCDEFFEDCBA9876543210",
                                                 "FFFF9876543210E00000"),
                               "FFFF9876543210E00000", lambda state: None)
    t_ksn, t_block = term.encrypt_pin(bytearray(b"1234"), PAN)
    tdes_fields = {"53": t_ksn.hex().upper(), "52": t_block.hex().upper()}
    # TDES still works next to AES
    assert _answer(sim, _sale("000301", 1000, **tdes_fields))["39"] == "00"
    cases = (
        dict(aes_fields, **{"52": tdes_fields["52"]}),               # two PIN blocks
        dict(aes_fields, **{"53": tdes_fields["53"]}),               # AES block, TDES KSN
        dict(tdes_fields, **{"53": aes_fields["53"]}),               # TDES block, AES KSN
        dict(aes_fields, **{"61": aes_fields["61"][:16]}),           # an 8-byte DE61
        {"61": aes_fields["61"]},                                    # no KSN
    )
    for n, fields in enumerate(cases):
        assert _answer(sim, _sale("%06d" % (310 + n), 1000, **fields))["39"] == "30", n


def test_hostsim_aes_bdk_option():
    from tools.host.hostsim import DEFAULT_AES_BDK, build_parser
    assert DEFAULT_AES_BDK == BDK
    assert build_parser().parse_args([]).aes_bdk == BDK
    assert build_parser().parse_args(["--aes-bdk", BDK256.lower()]).aes_bdk == BDK256
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--aes-bdk", "0123"])


def test_composition_loads_the_test_key_of_the_configured_scheme():
    from board.compose import test_dukpt
    from firmware.core import config
    cfg = config.defaults()
    saved = []
    tdes = test_dukpt(cfg, saved.append)
    assert isinstance(tdes, dukpt.DukptTerminal) and tdes.ksn.hex().upper() == \
        "FFFF9876543210E00001"
    cfg["host"]["pin_security"] = "aes-dukpt"
    key = test_dukpt(cfg, saved.append)
    assert isinstance(key, AesDukptTerminal)
    assert saved[-1]["kind"] == "aes-dukpt" and saved[-1]["ksn"] == "123456789012345600000001"
    # the X9.24-3 published test key: counter 1's block is the supplement's
    field = bytes.fromhex("441234AAAAAAAAAA2F69ADDE2E9E7ACE")
    assert key.encrypt_pin_field(field, PAN)[1].hex().upper() == \
        "A912150391AB65A67E52883D81CE2D15"


def test_a_key_of_the_other_scheme_takes_no_card():
    from firmware.payments.service import Payments

    class Term:
        config = None

    term = Term()
    pay = object.__new__(Payments)
    pay.term = term
    pay.host = object()
    pay.card_readers = 1
    pay.chip_reader = None
    from firmware.core import config
    term.config = config.defaults()
    pay.dukpt = AesDukptTerminal(IK, IKID, lambda state: None)
    assert pay.card_unready_reason() == "err_no_key"          # an AES key, a TDES host
    term.config["host"]["pin_security"] = "aes-dukpt"
    assert pay.card_unready_reason() is None
    pay.dukpt.wipe()
    assert pay.card_unready_reason() == "err_key_exhausted"


# -- end to end: a PIN sale through the simulated board and the real host simulator ------

@pytest.fixture
def aes_pos(harness, hostsim, monkeypatch):
    """A logged-in terminal whose host profile says aes-dukpt (the test key of X9.24-3),
    talking TLS to the host simulator."""
    from firmware.core import config as schema
    plain = schema.defaults

    def defaults():
        cfg = plain()
        cfg["host"]["pin_security"] = "aes-dukpt"
        return cfg
    monkeypatch.setattr(schema, "defaults", defaults)
    h = harness(host=(hostsim.address, hostsim.ca_file))
    h.first_supervisor()
    h.login()
    h.host = hostsim
    return h


def test_aes_pin_sale_approved_and_wrong_pin_declined(aes_pos):
    h = aes_pos
    assert isinstance(h.term.payments.dukpt, AesDukptTerminal)
    rec = h.swipe_sale("1250")
    assert rec["state"] == "approved" and rec["cvm"] == "pin", rec
    assert "APPROVED" in h.text()
    request = h.host.ledger.exchanges(stan=rec["stan"])[0]
    # the wire: a 12-byte KSN in DE53, the format 4 block in DE61, no DE52
    assert request["request"]["53"] == "123456789012345600000001"
    assert request["request"]["61"] == "<32 hidden>" and "52" not in request["request"]
    assert "PIN verified (AES DUKPT)" in request["note"]
    assert h.host.ledger.approved_total("HP000001") == 1250
    h.to_idle()
    rec = h.swipe_sale("1000", pin="9999")
    assert rec["state"] == "declined" and rec["rc"] == "55", rec
    assert "Wrong PIN" in h.text()
    request = h.host.ledger.exchanges(stan=rec["stan"])[0]
    assert request["request"]["53"] == "123456789012345600000002"
    assert h.host.ledger.approved_total("HP000001") == 1250
