"""DUKPT at length (CPython): the whole Annex A table, thousands of consecutive
terminal transactions checked against the host, exhaustion, crashes around save().

The cheap vector tests, which also run under MicroPython, are in
tests/portable/test_dukpt_vectors.py.
"""
import json
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.security import dukpt, pinblock
from firmware.security.dukpt import DukptExhausted, DukptTerminal
from tests.portable.test_dukpt_vectors import BDK, CLEAR_BLOCK, IKSN, IPEK, PAN, state_at

# ANSI X9.24-1:2009 Annex A (TDES): KSN, PIN key, MAC request key, encrypted PIN block
# for PIN 1234 and PAN 4012345678909. Consecutive rows are consecutive transactions,
# except at the jumps to E10000, E20000, E40000, E80000 and EFF800.
ANNEX_A = """
FFFF9876543210E00001 042666B49184CF5C68DE9628D0397B36 042666B4918430A368DE9628D03984C9 1B9C1845EB993A7A
FFFF9876543210E00002 C46551CEF9FD244FAA9AD834130D3B38 C46551CEF9FDDBB0AA9AD834130DC4C7 10A01C8D02C69107
FFFF9876543210E00003 0DF3D9422ACA561A47676D07AD6BAD05 0DF3D9422ACAA9E547676D07AD6B52FA 18DC07B94797B466
FFFF9876543210E00004 279C0F6AEED0BE9A2B2C733E1383AE6E 279C0F6AEED041652B2C733E13835191 0BC79509D5645DF7
FFFF9876543210E00005 5F8DC6D2C845C1DA508DDC048093B8C0 5F8DC6D2C8453E25508DDC048093473F 5BC0AF22AD87B327
FFFF9876543210E00006 5E415CB0BAF9F0C3D0C14B63FB62FFBC 5E415CB0BAF90F3CD0C14B63FB620043 A16DF70AE36158D8
FFFF9876543210E00007 0C8F780B7C8B492FAE84A9EB2A6CE69F 0C8F780B7C8BB6D0AE84A9EB2A6C1960 27711C16CB257F8E
FFFF9876543210E00008 27F66D5244FF621EAA6F6120EDEB427F 27F66D5244FF9DE1AA6F6120EDEBBD80 50E55547A5027551
FFFF9876543210E00009 27E31064FDC565968900E2057F658E81 27E31064FDC59A698900E2057F65717E 536CF7F678ACFC8D
FFFF9876543210E0000A 6CF2500A22507C83C776CEADC1E330EB 6CF2500A2250837CC776CEADC1E3CF14 EDABBA23221833FE
FFFF9876543210E0000B 3E8260BA04B2D6DFC01482B3819A1848 3E8260BA04B22920C01482B3819AE7B7 2328981C57B4BDBA
FFFF9876543210E0000C B716E1E11CF53D7F726CAEE75C3A62B0 B716E1E11CF5C280726CAEE75C3A9D4F 038D03CC926CF286
FFFF9876543210E0000D E072EDF9534053A0B6C581C58FBF25CC E072EDF95340AC5FB6C581C58FBFDA33 6C8AA97088B62C68
FFFF9876543210E0000E A80046087F5B8FDB5AAD95E1842908B0 A80046087F5B70245AAD95E18429F74F F17C9E1D72CD4950
FFFF9876543210E0000F 93DD5B956C4878B82E453AAEFD32A555 93DD5B956C4887472E453AAEFD325AAA B170F6E7F7F2F64A
FFFF9876543210E00010 59598DCBD9BD943F94165CE453585FA8 59598DCBD9BD6BC094165CE45358A057 D5D9638559EF53D6
FFFF9876543210E00011 2B5F01F4F0CC0515639D523231BF1B5D 2B5F01F4F0CCFAEA639D523231BFE4A2 D544F8CDD292C863
FFFF9876543210E00012 9CF640F279C2AE1915F725EEEAC2CB50 9CF640F279C251E615F725EEEAC234AF 7A21BD10F36DC41D
FFFF9876543210E00013 C3DF489FDF11534BF03DE97C27DC4CD0 C3DF489FDF11ACB4F03DE97C27DCB32F 78649BD17D0DFA60
FFFF9876543210E00014 658488507721B30E4737FA93F923CB2D 6584885077214CF14737FA93F92334D2 7E7E16EA0C31AD56
FFFF9876543210E00015 E161D1956A61F62DF37AFD7F9CC36965 E161D1956A6109D2F37AFD7F9CC3969A 72105C22EBC791E6
FFFF9876543210E10000 2F9A0C0B46ECCBA1F8287A7A071AF54B 2F9A0C0B46EC345EF8287A7A071A0AB4 19776D96D73AF1E2
FFFF9876543210E20000 DEFDE0EA1043B58D2FA013DE6C4B8F04 DEFDE0EA10434A722FA013DE6C4B70FB 83F14581B8946B2D
FFFF9876543210E40000 9F59E8536BDB056513C856FCCF9A0981 9F59E8536BDBFA9A13C856FCCF9AF67E 96B3ADCBF9F5219C
FFFF9876543210E80000 87B9983D9D23047A8D199F5CA0C3DEEC 87B9983D9D23FB858D199F5CA0C32113 1E0F453FD55FCE45
FFFF9876543210EFF800 F9CDFEBF4F5B1D61B3EC12454527E189 F9CDFEBF4F5BE29EB3EC124545271E76 33365F5CC6F23C35
FFFF9876543210EFF801 5BEE92627E9782A3911BF619DF72CAC4 5BEE92627E977D5C911BF619DF72353B 3A86BF003F835C9D
FFFF9876543210EFF802 64CA2F8AB93F614F1620B00BF77C73FE 64CA2F8AB93F9EB01620B00BF77C8C01 3DB977D05C36DF3F
FFFF9876543210EFF804 35A168695B3BA8CC07E871C42021DDC8 35A168695B3B573307E871C420212237 BA83243305712099
FFFF9876543210EFF808 12C380FCB72ED33D6FC6079AF63F4778 12C380FCB72E2CC26FC6079AF63FB887 B0DA04AC90A36D85
FFFF9876543210EFF810 D8007C833A1E3CB6C6889B97A68C5400 D8007C833A1EC349C6889B97A68CABFF 2CF02BD9C309EEDA
FFFF9876543210EFF820 A9C9FF9B735FDDB6591F296B0BF0FD8F A9C9FF9B735F2249591F296B0BF00270 9D1E2F77AEEE81C6
FFFF9876543210EFF840 0E3E221062CB5EFCA384602783A00405 0E3E221062CBA103A384602783A0FBFA 40870B0F8BA2011C
FFFF9876543210EFF880 CA8225C587124D04B87F279C0BE297D8 CA8225C58712B2FBB87F279C0BE26827 22E340D6ABB40981
FFFF9876543210EFF900 906AAC1751D497E5144D52C76C6E1F68 906AAC1751D4681A144D52C76C6EE097 1A4C10AFBA03A430
FFFF9876543210EFFA00 2B9E2CE7C27503C8E10B54D2989EA650 2B9E2CE7C275FC37E10B54D2989E59AF 849763B43E5F9CFF
FFFF9876543210EFFC00 F9430DF97508246EC77BE4EF4FDB9111 F9430DF97508DB91C77BE4EF4FDB6EEE DEFC6F09F8927B71
FFFF9876543210F00000 AA4D58DB653EC7B548C75F2F047DD24A AA4D58DB653E384A48C75F2F047D2DB5 73EC88AD0AC5830E
"""
ROWS = [line.split() for line in ANNEX_A.strip().splitlines()]


def popcount(n):
    return bin(n).count("1")


def next_valid(counter):
    """The smallest counter after this one with at most ten one-bits (None: none left)."""
    counter += 1
    while counter <= dukpt.COUNTER_MASK and popcount(counter) > 10:
        counter += 1
    return counter if counter <= dukpt.COUNTER_MASK else None


def previous_valid(counter):
    counter -= 1
    while popcount(counter) > 10:
        counter -= 1
    return counter


def ksn_of(counter):
    return dukpt.ksn_with_counter(IKSN, counter)


def counter_of(ksn):
    return dukpt.ksn_counter(ksn)


def random_pin(rng):
    return bytearray(rng.choice(b"0123456789") for _ in range(rng.randint(4, 12)))


# -- the published table -----------------------------------------------------------

def test_whole_annex_a_table_on_the_host():
    assert len(ROWS) == 38
    for ksn, pin_key, mac_key, epb in ROWS:
        assert dukpt.derive_key(BDK, ksn, "pin").hex().upper() == pin_key, ksn
        assert dukpt.derive_key(BDK, ksn, "mac_request").hex().upper() == mac_key, ksn
        assert dukpt.decrypt_pin(BDK, ksn, bytes.fromhex(epb), PAN) == bytearray(b"1234"), ksn


def test_whole_annex_a_table_on_the_terminal():
    # the first rows from a freshly loaded terminal ...
    term = DukptTerminal(IPEK, IKSN, lambda state: None)
    for ksn, _, _, epb in ROWS[:21]:
        got_ksn, block = term.encrypt_pin(bytearray(b"1234"), PAN)
        assert (got_ksn.hex().upper(), block.hex().upper()) == (ksn, epb)
    # ... the others from a terminal that has just used the counter before each
    for ksn, _, mac_key, epb in ROWS[21:]:
        counter = counter_of(ksn)
        before = previous_valid(counter)
        term = DukptTerminal.from_state(state_at(before), lambda state: None)
        assert counter_of(term.encrypt_pin_block(bytes.fromhex(CLEAR_BLOCK))[0]) == before
        got_ksn, block, keys = term.transaction(bytes.fromhex(CLEAR_BLOCK), ("mac_request",))
        assert (got_ksn.hex().upper(), block.hex().upper()) == (ksn, epb)
        assert keys["mac_request"].hex().upper() == mac_key


# -- terminal against host, at length --------------------------------------------------

def test_terminal_and_host_agree_for_thousands_of_consecutive_transactions():
    rng = random.Random(9564)
    saved = []
    term = DukptTerminal(bytes.fromhex(IPEK), bytes.fromhex(IKSN), saved.append)
    seen = set()
    expected = 1
    for n in range(4000):
        pin = random_pin(rng)
        ksn, block = term.encrypt_pin(pin, PAN)
        counter = counter_of(ksn)
        assert counter == expected, (n, hex(counter))
        assert popcount(counter) <= 10
        assert ksn not in seen
        seen.add(ksn)
        assert saved[-1]["ksn"] == ksn_of(next_valid(counter)).hex().upper()
        assert dukpt.decrypt_pin(BDK, ksn, block, PAN) == pin
        if n % 397 == 0:
            # the registers are exactly what the standard says they should be
            assert term.state() == state_at(next_valid(counter))
        expected = next_valid(counter)
    # 4000 transactions reach counters with 11 one-bits below them: skips happened
    assert counter > 4000


@settings(max_examples=25, deadline=None)
@given(start=st.integers(1, dukpt.COUNTER_MASK).filter(lambda c: popcount(c) <= 10),
       steps=st.integers(1, 40))
def test_terminal_and_host_agree_from_any_counter(start, steps):
    term = DukptTerminal.from_state(state_at(start), lambda state: None)
    expected = start
    for _ in range(steps):
        if expected is None:
            with pytest.raises(DukptExhausted):
                term.encrypt_pin_block(bytes.fromhex(CLEAR_BLOCK))
            return
        ksn, block = term.encrypt_pin_block(bytes.fromhex(CLEAR_BLOCK))
        assert counter_of(ksn) == expected
        assert popcount(expected) <= 10
        assert dukpt.decrypt_pin_block(BDK, ksn, block) == bytes.fromhex(CLEAR_BLOCK)
        expected = next_valid(expected)
    assert term.state() == state_at(expected)


def test_terminal_runs_to_exhaustion_and_says_so():
    start = 0x1FE000
    left = sum(1 for c in range(start, dukpt.COUNTER_MASK + 1) if popcount(c) <= 10)
    saved = []
    term = DukptTerminal.from_state(state_at(start), saved.append)
    counters = []
    with pytest.raises(DukptExhausted) as info:
        while True:
            ksn, block = term.encrypt_pin_block(bytes.fromhex(CLEAR_BLOCK))
            counters.append(counter_of(ksn))
    assert len(counters) == left == 92       # 8 bits set, at most 2 more of 13
    assert counters == sorted(set(counters))
    assert max(popcount(c) for c in counters) == 10
    assert counters[-1] == 0x1FF800
    assert "technician must load a new initial key" in str(info.value)
    assert term.exhausted and saved[-1]["registers"] == [None] * 21


def test_total_keys_of_a_terminal():
    # one initial key gives 1,048,575 PIN keys: the counters with 1 to 10 one-bits
    assert sum(1 for c in range(1, dukpt.COUNTER_MASK + 1) if popcount(c) <= 10) == 1048575


# -- durability ------------------------------------------------------------------------

class PowerCut(Exception):
    pass


def test_save_happens_before_every_block_is_handed_out():
    handed_out = []
    seen_by_save = []

    def save(state):
        seen_by_save.append((len(handed_out), state["ksn"]))

    term = DukptTerminal(IPEK, IKSN, save)
    for n in range(50):
        ksn, block = term.encrypt_pin_block(bytes.fromhex(CLEAR_BLOCK))
        # the save for this transaction came before the block, with the counter moved on
        assert seen_by_save[-1] == (n, ksn_of(next_valid(counter_of(ksn))).hex().upper())
        handed_out.append(ksn)


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

    term = DukptTerminal(IPEK, IKSN, make_save(lambda: False, lambda: False))
    for _ in range(600):
        try:
            ksn, block = term.encrypt_pin_block(bytes.fromhex(CLEAR_BLOCK))
        except PowerCut:
            # reboot: whatever is on disk is all the terminal knows
            term = DukptTerminal.from_state(disk["state"], make_save(chance, chance))
            continue
        sent.append(ksn)
    assert len(sent) == len(set(sent)), "a KSN (and so a key) was sent twice"
    assert sent == sorted(sent)
    assert len(sent) > 400


@settings(max_examples=30, deadline=None)
@given(transactions=st.integers(0, 60))
def test_state_survives_json_and_a_restart(transactions):
    saved = []
    term = DukptTerminal(IPEK, IKSN, saved.append)
    for _ in range(transactions):
        term.encrypt_pin_block(bytes.fromhex(CLEAR_BLOCK))
    stored = json.loads(json.dumps(saved[-1]))
    assert stored == term.state()
    restored = DukptTerminal.from_state(stored, saved.append)
    assert restored.state() == term.state()
    for _ in range(3):
        assert restored.encrypt_pin_block(bytes.fromhex(CLEAR_BLOCK)) == \
            term.encrypt_pin_block(bytes.fromhex(CLEAR_BLOCK))


def test_damaged_registers_are_skipped_never_misused():
    rng = random.Random(7)
    term = DukptTerminal(IPEK, IKSN, lambda state: None)
    for _ in range(300):
        term.encrypt_pin_block(bytes.fromhex(CLEAR_BLOCK))
    state = term.state()
    valid = [i for i, reg in enumerate(state["registers"]) if reg]
    victim = rng.choice(valid)
    reg = state["registers"][victim]
    state["registers"][victim] = reg[:10] + ("0" if reg[10] != "0" else "1") + reg[11:]
    damaged = DukptTerminal.from_state(state, lambda state: None)
    last = term.counter - 1
    for _ in range(300):
        ksn, block = damaged.encrypt_pin_block(bytes.fromhex(CLEAR_BLOCK))
        assert counter_of(ksn) > last and popcount(counter_of(ksn)) <= 10
        assert dukpt.decrypt_pin_block(BDK, ksn, block) == bytes.fromhex(CLEAR_BLOCK)
        last = counter_of(ksn)


def test_used_keys_are_overwritten_in_place():
    term = DukptTerminal(IPEK, IKSN, lambda state: None)
    current = term._regs[20]                 # holds the key for counter 1
    assert any(current[:16])
    term.encrypt_pin_block(bytes.fromhex(CLEAR_BLOCK))
    assert term._regs[20] is current and not any(current[:16])
    assert current[16] != 0                  # erased: LRC made wrong


# -- ISO-0 at random -------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(pin=st.text("0123456789", min_size=4, max_size=12),
       pan=st.text("0123456789", min_size=8, max_size=19))
def test_iso0_round_trip_and_layout(pin, pan):
    block = pinblock.encode(bytearray(pin.encode()), pan)
    pin_field = ("0%X" % len(pin) + pin).ljust(16, "F")
    pan_field = "0000" + pan[:-1][-12:].rjust(12, "0")
    assert block.hex().upper() == "%016X" % (int(pin_field, 16) ^ int(pan_field, 16))
    assert pinblock.decode(block, pan) == bytearray(pin.encode())


# -- speed -----------------------------------------------------------------------------

def test_a_pin_block_takes_well_under_50_ms():
    term = DukptTerminal(IPEK, IKSN, lambda state: json.dumps(state))
    pin = bytearray(b"1234")
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        term.encrypt_pin(pin, PAN)
    average = (time.perf_counter() - t0) / n
    # the worst transaction: a counter whose lowest one-bit is the top bit, after which
    # "New Key" fills all 20 registers below it
    worst = DukptTerminal.from_state(state_at(0x100000), lambda state: json.dumps(state))
    t0 = time.perf_counter()
    worst.encrypt_pin(pin, PAN)
    slowest = time.perf_counter() - t0
    print("PIN block: %.2f ms average, %.2f ms worst case" % (average * 1e3, slowest * 1e3))
    assert average < 0.010 and slowest < 0.050
