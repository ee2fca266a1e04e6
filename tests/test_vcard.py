"""The virtual EMV card in-process: selection, GPO, records, cryptograms checked by the
issuer's side, issuer authentication, PIN, SDA/DDA with the test PKI, T=0 behaviour,
every profile's special case, and the vpcd socket protocol against a stand-in reader."""
import datetime
import hashlib
import socket
import struct
import threading
import time
import tomllib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from pyemv import tlv as emvtlv

from tools.cards import emv_issuer, emv_test_pki, vcard
from tools.cards.vcard import (AAC, ARQC, PPSE, PROFILES, PSE, TC, CardRemoved, VirtualCard,
                         parse_dol, run_vpcd_card)

# pyemv drives cryptography's TripleDES through names cryptography now calls deprecated.
pytestmark = pytest.mark.filterwarnings(
    "ignore::cryptography.utils.CryptographyDeprecationWarning")

# What a terminal puts in the data object lists.
TERMINAL = {
    "9F02": "000000001000",         # 10.00
    "9F03": "000000000000",
    "9F1A": "0840",
    "95": "0000000000",
    "5F2A": "0840",
    "9A": "260121",
    "9C": "00",
    "9F37": "11223344",
    "9F35": "22",
    "9F34": "1F0302",
    "9F66": "26000000",             # qVSDC, online PIN, signature; no CVM required
}


def h(text):
    return bytes.fromhex(text.replace(" ", ""))


def luhn_ok(pan):
    total = 0
    for i, c in enumerate(reversed(pan)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


class Reader:
    """What a PC/SC reader driver must do for these cards: GET RESPONSE after 61xx, the
    same command again with Le = xx after 6Cxx. Keeps every raw exchange."""

    def __init__(self, card):
        self.card = card
        self.raw = []

    def raw_send(self, apdu):
        apdu = h(apdu) if isinstance(apdu, str) else bytes(apdu)
        resp = self.card.transmit(apdu)
        self.raw.append((apdu, resp))
        return resp

    def send(self, apdu):
        apdu = h(apdu) if isinstance(apdu, str) else bytes(apdu)
        resp = self.raw_send(apdu)
        if resp[-2] == 0x6C:
            resp = self.raw_send(apdu[:4] + resp[-1:] if len(apdu) <= 5 else
                                 apdu[:-1] + resp[-1:])
        data = b""
        while resp[-2] == 0x61:
            data += resp[:-2]
            resp = self.raw_send(b"\x00\xC0\x00\x00" + resp[-1:])
        return data + resp[:-2], (resp[-2] << 8) | resp[-1]


def dol_data(dol, values):
    out = b""
    for tag, n in parse_dol(dol):
        v = h(values[tag]) if tag in values else b""
        out += (b"\x00" * n + v)[-n:] if tag in ("9F02", "9F03") else (v + b"\x00" * n)[:n]
    return out


def select(reader, name):
    return reader.send(b"\x00\xA4\x04\x00" + bytes((len(name),)) + name + b"\x00")


def gpo(reader, fci, values=TERMINAL):
    pdol = fci.get("9F38", b"")
    data = dol_data(pdol, values)
    return reader.send(b"\x80\xA8\x00\x00" + bytes((len(data) + 2, 0x83, len(data))) +
                       data + b"\x00")


def afl_entries(afl):
    return [tuple(afl[i:i + 4]) for i in range(0, len(afl), 4)]


def read_records(reader, afl):
    """{tag: value} of every record in the AFL, and the static data to authenticate."""
    tags, static = {}, b""
    for sfi_byte, first, last, oda in afl_entries(afl):
        for number in range(first, last + 1):
            data, sw = reader.send(bytes((0x00, 0xB2, number, sfi_byte | 4, 0x00)))
            assert sw == 0x9000, (sfi_byte >> 3, number, hex(sw))
            assert data[0] == 0x70
            tags.update(emvtlv.decode(data, flatten=True))
            if number < first + oda:
                sfi = sfi_byte >> 3
                static += _strip_template(data) if sfi <= 10 else data
    return tags, static


def _strip_template(record):
    n = record[1]
    if n == 0x81:
        return record[3:]
    if n == 0x82:
        return record[4:]
    return record[2:]


def start(card, directory=PSE):
    """Select through the PSE (or PPSE) and the application; GPO; read the records.
    Returns (reader, fci, gpo tags, record tags, static data)."""
    reader = Reader(card)
    data, sw = select(reader, directory)
    assert sw == 0x9000
    data, sw = select(reader, bytes.fromhex(card.p["aid"]))
    assert sw == 0x9000
    fci = emvtlv.decode(data, flatten=True)
    data, sw = gpo(reader, fci)
    assert sw == 0x9000, hex(sw)
    g = emvtlv.decode(data, flatten=True)
    tags, static = read_records(reader, g["94"])
    if tags.get("9F4A") == b"\x82":
        static += g["82"]
    return reader, fci, g, tags, static


def generate_ac(reader, p1, dol, values):
    data = dol_data(dol, values)
    resp, sw = reader.send(bytes((0x80, 0xAE, p1, 0x00, len(data))) + data + b"\x00")
    assert sw == 0x9000, hex(sw)
    if resp[0] == 0x80:                                  # format 1
        body = resp[2:]
        return {"9F27": body[:1], "9F36": body[1:3], "9F26": body[3:11], "9F10": body[11:],
                "format": 1}
    out = emvtlv.decode(resp, flatten=True)
    out["format"] = 2
    return out


def de55(values, g, ac):
    """The DE55 a terminal would send: its own data, the AIP and the card's answer."""
    tags = {t: values[t] for t in emv_issuer.AC_TAGS if t in values}
    tags.update({"82": g["82"], "9F36": ac["9F36"], "9F10": ac["9F10"], "9F26": ac["9F26"]})
    return tags


# -- the profiles ---------------------------------------------------------------------

def test_every_profile_is_a_test_card_with_a_test_issuer():
    keys = vcard.issuer_keys()
    assert set(keys) == set(PROFILES)
    for name, p in PROFILES.items():
        assert luhn_ok(p["pan"]), name
        assert p["aid"] in ("A0000000031010", "A0000000041010")
        assert keys[name]["cvn"] == 0x0A
        assert keys[name]["icc_mk_ac"] == emv_issuer.derive_icc_mk(
            keys[name]["imk_ac"], p["pan"], p["psn"])
        card = VirtualCard(name)
        assert card.atr[0] == 0x3B


def test_atrs_say_the_protocol():
    assert VirtualCard("online_pin").atr.hex().upper() == "3BE000008131FE45EB"      # T=1
    assert VirtualCard("sda").atr == h("3B600000")                                   # T=0
    assert VirtualCard("no_cvm").atr == h("3B80800101")                     # contactless


# -- selection --------------------------------------------------------------------------

def test_pse_directory_lists_the_application():
    reader = Reader(VirtualCard("online_pin"))
    data, sw = select(reader, PSE)
    assert sw == 0x9000
    fci = emvtlv.decode(data)
    assert fci["6F"]["84"] == PSE
    assert fci["6F"]["A5"]["88"] == b"\x01"
    data, sw = reader.send("00B2010C00")
    assert sw == 0x9000
    entry = emvtlv.decode(data)["70"]["61"]
    assert entry["4F"] == h("A0000000031010")
    assert entry["50"] == b"VISA CREDIT"
    assert entry["87"] == b"\x01"
    assert reader.send("00B2020C00") == (b"", 0x6A83)        # end of the directory


def test_ppse_for_contactless_cards_only():
    data, sw = select(Reader(VirtualCard("no_cvm")), PPSE)
    assert sw == 0x9000
    entry = emvtlv.decode(data)["6F"]["A5"]["BF0C"]["61"]
    assert entry["4F"] == h("A0000000031010")
    assert select(Reader(VirtualCard("offline_pin")), PPSE) == (b"", 0x6A82)
    assert select(Reader(VirtualCard("no_cvm")), PSE) == (b"", 0x6A82)
    dual = Reader(VirtualCard("online_pin"))
    assert select(dual, PSE)[1] == 0x9000 and select(dual, PPSE)[1] == 0x9000


def test_select_aid_by_prefix_and_no_next_occurrence():
    reader = Reader(VirtualCard("online_pin"))
    data, sw = select(reader, h("A000000003"))
    assert sw == 0x9000
    fci = emvtlv.decode(data)["6F"]
    assert fci["84"] == h("A0000000031010")
    assert fci["A5"]["9F38"] == h("9F1A02")                  # contact PDOL
    resp = reader.send(h("00A4040205A00000000300"))
    assert resp == (b"", 0x6A82)
    assert select(reader, h("A0000000041010")) == (b"", 0x6A82)


def test_contactless_selection_gives_the_contactless_pdol():
    reader = Reader(VirtualCard("online_pin"))
    select(reader, PPSE)
    data, _ = select(reader, h("A0000000031010"))
    pdol = emvtlv.decode(data, flatten=True)["9F38"]
    assert [t for t, _ in parse_dol(pdol)] == ["9F66", "9F02", "9F03", "9F1A", "95", "5F2A",
                                               "9A", "9C", "9F37"]


# -- GPO and records --------------------------------------------------------------------

def test_gpo_format_2_and_records_per_afl():
    card = VirtualCard("online_pin")
    reader, fci, g, tags, _ = start(card)
    assert set(g) == {"82", "94"}
    assert [r for a, r in reader.raw if a[:2] == h("80A8")][0][0] == 0x77    # format 2
    assert g["82"] == h("1C00")                              # CVM, TRM, issuer auth
    assert g["94"] == h("08010201")
    assert tags["5A"] == h("4761739001010010")
    assert tags["5F24"] == h("291231")
    assert tags["5F34"] == h("01")
    assert tags["57"].hex().upper().startswith("4761739001010010D2912201")
    assert tags["5F20"] == b"TEST/ONLINE PIN"
    assert tags["50"] == b"VISA CREDIT"
    assert tags["8E"] == h("00000000000000004203 1E03 1F03")
    for tag in ("8C", "8D", "9F0D", "9F0E", "9F0F", "5F28", "9F07", "9F42", "9F08", "5F25"):
        assert tag in tags, tag
    assert fci["50"] == b"VISA CREDIT"
    # the first record is in offline data authentication; none else
    assert afl_entries(g["94"]) == [(0x08, 1, 2, 1)]
    assert reader.send("00B2030C00") == (b"", 0x6A83)        # SFI 1 has two records
    assert reader.send("00B2011400") == (b"", 0x6A82)        # no SFI 2 without ODA
    assert reader.send("00B2015C00") == (b"", 0x6A82)        # SFI 11 does not exist


def test_gpo_checks_its_input():
    reader = Reader(VirtualCard("online_pin"))
    select(reader, PSE)
    select(reader, h("A0000000031010"))
    assert reader.send("80A80000058303084000") == (b"", 0x6700)     # PDOL wants 2 bytes
    assert reader.send("80A80000047002084000") == (b"", 0x6A80)     # not tag 83
    assert reader.send("80A80000048302084000")[1] == 0x9000
    assert reader.send("80A80000048302084000") == (b"", 0x6985)     # GPO once per selection


def test_errors_for_what_the_card_does_not_know():
    reader = Reader(VirtualCard("online_pin"))
    assert reader.send("00A4") == (b"", 0x6700)
    assert reader.send("00FF000000") == (b"", 0x6D00)
    assert reader.send("80A4040000") == (b"", 0x6E00)
    assert reader.send("80AE80000100") == (b"", 0x6985)             # no application
    select(reader, h("A0000000031010"))
    assert reader.send("80AE8000021234") == (b"", 0x6985)           # before GPO
    assert reader.send("00820000" + "0A" + "00" * 10) == (b"", 0x6985)
    assert reader.send("80CA9F4F00") == (b"", 0x6A88)
    assert reader.send("008800000411223344") == (b"", 0x6D00)       # no DDA on this card


# -- cryptograms and issuer authentication ---------------------------------------------

def test_arqc_verifies_at_the_issuer_and_its_arpc_gets_a_tc():
    card = VirtualCard("online_pin")
    reader, _, g, tags, _ = start(card)
    ac = generate_ac(reader, ARQC, tags["8C"], TERMINAL)
    assert ac["format"] == 1                                 # Visa: format 1
    assert ac["9F27"] == bytes((ARQC,))
    assert ac["9F10"][:3] == h("06010A")                     # CVN 10
    sent = de55(TERMINAL, g, ac)
    assert emv_issuer.verify_arqc(sent, pan="4761739001010010", psn="001")
    # with 5A and 5F34 in DE55, the test issuer's key is found by the BIN
    assert emv_issuer.verify_arqc(dict(sent, **{"5A": tags["5A"], "5F34": tags["5F34"]}))
    tampered = dict(sent, **{"9F02": "000000009999"})
    assert not emv_issuer.verify_arqc(tampered, pan="4761739001010010", psn="01")
    assert not emv_issuer.verify_arqc(sent, pan="4761739001010010", psn="02")
    arpc = emv_issuer.make_arpc(ac["9F26"], "00", pan="4761739001010010", psn="01")
    assert len(arpc) == 8
    assert reader.send(b"\x00\x82\x00\x00\x0A" + arpc + b"00") == (b"", 0x9000)
    second = generate_ac(reader, TC, tags["8D"], dict(TERMINAL, **{"8A": b"00".hex()}))
    assert second["9F27"] == bytes((TC,))
    assert second["9F36"] == ac["9F36"]
    # the TC is the same computation: the host can check it in the advice
    assert emv_issuer.verify_arqc(de55(TERMINAL, g, second), pan="4761739001010010", psn="01")
    assert second["9F10"][4] & 0xC0 == 0x40                  # CVR: 2nd AC was a TC


def test_wrong_arpc_is_refused_and_the_card_declines():
    card = VirtualCard("online_pin")
    reader, _, _, tags, _ = start(card)
    ac = generate_ac(reader, ARQC, tags["8C"], TERMINAL)
    wrong = emv_issuer.make_arpc(ac["9F26"], "00", imk_ac="11" * 16, pan="4761739001010010",
                                 psn="01")
    assert reader.send(b"\x00\x82\x00\x00\x0A" + wrong + b"00") == (b"", 0x6300)
    assert reader.send(b"\x00\x82\x00\x00\x0A" + wrong + b"00") == (b"", 0x6985)  # once
    second = generate_ac(reader, TC, tags["8D"], dict(TERMINAL, **{"8A": b"00".hex()}))
    assert second["9F27"] == bytes((AAC,))
    assert second["9F10"][4] & 0x08                          # CVR: issuer auth failed


def test_issuer_decline_gives_an_aac():
    card = VirtualCard("online_pin")
    reader, _, _, tags, _ = start(card)
    ac = generate_ac(reader, ARQC, tags["8C"], TERMINAL)
    iad = emv_issuer.issuer_authentication_data(ac["9F26"], "05", pan="4761739001010010",
                                                psn="01")
    assert reader.send(b"\x00\x82\x00\x00\x0A" + iad)[1] == 0x9000
    second = generate_ac(reader, TC, tags["8D"], dict(TERMINAL, **{"8A": b"05".hex()}))
    assert second["9F27"] == bytes((AAC,))
    assert reader.send("80AE4000020000") == (b"", 0x6985)            # transaction over


def test_mastercard_takes_issuer_authentication_in_cdol2():
    for right in (True, False):
        card = VirtualCard("offline_pin")
        reader, _, g, tags, _ = start(card)
        assert g["82"][0] & 0x04 == 0                        # no EXTERNAL AUTHENTICATE
        assert "91" in [t for t, _ in parse_dol(tags["8D"])]
        values = dict(TERMINAL, **{"9F02": "000000020000"})  # 200.00: beyond offline
        ac = generate_ac(reader, TC, tags["8C"], values)
        assert ac["format"] == 2 and ac["9F27"] == bytes((ARQC,))
        assert emv_issuer.verify_arqc(de55(values, g, ac), pan="5555555555554444")
        iad = emv_issuer.issuer_authentication_data(
            ac["9F26"], "00", pan="5555555555554444",
            imk_ac=None if right else "22" * 16)
        second = generate_ac(reader, TC, tags["8D"],
                             dict(values, **{"8A": b"00".hex(), "91": iad.hex()}))
        assert second["9F27"] == bytes((TC if right else AAC,))


def test_unable_to_go_online():
    card = VirtualCard("online_pin")
    reader, _, _, tags, _ = start(card)
    generate_ac(reader, ARQC, tags["8C"], TERMINAL)
    second = generate_ac(reader, TC, tags["8D"], dict(TERMINAL, **{"8A": b"Y3".hex()}))
    assert second["9F27"] == bytes((AAC,))                   # no offline approvals
    assert second["9F10"][4] & 0x01                          # CVR: unable to go online
    card = VirtualCard("offline_pin")
    reader, _, _, tags, _ = start(card)
    generate_ac(reader, ARQC, tags["8C"], TERMINAL)
    second = generate_ac(reader, TC, tags["8D"], dict(TERMINAL, **{"8A": b"Y3".hex()}))
    assert second["9F27"] == bytes((TC,))


def test_offline_approval_within_the_cards_limits():
    card = VirtualCard("offline_pin")
    for _ in range(3):
        reader, _, _, tags, _ = start(card)
        assert generate_ac(reader, TC, tags["8C"], TERMINAL)["9F27"] == bytes((TC,))
    reader, _, _, tags, _ = start(card)                       # 4th in a row: online
    assert generate_ac(reader, TC, tags["8C"], TERMINAL)["9F27"] == bytes((ARQC,))
    card = VirtualCard("offline_pin")
    reader, _, _, tags, _ = start(card)
    over = dict(TERMINAL, **{"9F02": "000000005001"})
    assert generate_ac(reader, TC, tags["8C"], over)["9F27"] == bytes((ARQC,))
    reader, _, _, tags, _ = start(card)
    other_currency = dict(TERMINAL, **{"5F2A": "0978"})
    assert generate_ac(reader, TC, tags["8C"], other_currency)["9F27"] == bytes((ARQC,))
    reader, _, _, tags, _ = start(card)
    assert generate_ac(reader, AAC, tags["8C"], TERMINAL)["9F27"] == bytes((AAC,))


def test_atc_counts_and_last_online_atc():
    card = VirtualCard("online_pin")
    atcs = []
    for _ in range(3):
        reader, _, _, tags, _ = start(card)
        ac = generate_ac(reader, ARQC, tags["8C"], TERMINAL)
        atcs.append(int.from_bytes(ac["9F36"], "big"))
        arpc = emv_issuer.issuer_authentication_data(ac["9F26"], "00",
                                                     pan=card.p["pan"], psn="01")
        reader.send(b"\x00\x82\x00\x00\x0A" + arpc)
        generate_ac(reader, TC, tags["8D"], dict(TERMINAL, **{"8A": b"00".hex()}))
    assert atcs == [atcs[0], atcs[0] + 1, atcs[0] + 2]
    card.power_on()                                          # survives a power cycle
    reader = Reader(card)
    select(reader, h("A0000000031010"))
    assert reader.send("80CA9F3600") == (h("9F3602") + atcs[-1].to_bytes(2, "big"), 0x9000)
    assert reader.send("80CA9F1300") == (h("9F1302") + atcs[-1].to_bytes(2, "big"), 0x9000)


# -- PIN --------------------------------------------------------------------------------

def pin_block(pin):
    return h("2%X" % len(pin) + pin + "F" * (14 - len(pin)))


def test_offline_pin_and_its_try_counter():
    card = VirtualCard("offline_pin")
    reader, _, _, tags, _ = start(card)
    assert tags["8E"][8:10] == h("4103")                    # plaintext PIN by ICC first
    assert reader.send("80CA9F1700") == (h("9F170103"), 0x9000)
    verify = lambda pin: reader.send(b"\x00\x20\x00\x80\x08" + pin_block(pin))
    assert verify("0000") == (b"", 0x63C2)
    assert verify("9999") == (b"", 0x63C1)
    assert reader.send("0020008000") == (b"", 0x63C1)        # tries left, nothing spent
    assert verify("1234") == (b"", 0x9000)
    assert reader.send("80CA9F1700") == (h("9F170103"), 0x9000)
    ac = generate_ac(reader, TC, tags["8C"], TERMINAL)
    assert ac["9F10"][4] & 0x04                              # CVR: offline PIN performed
    for left in (2, 1, 0):
        assert verify("1111") == (b"", 0x63C0 | left)
    assert verify("1234") == (b"", 0x6983)                   # blocked
    assert reader.send("80CA9F1700") == (h("9F170100"), 0x9000)
    assert reader.send(b"\x00\x20\x00\x80\x08" + h("3412341234123412")) == (b"", 0x6983)


def test_pin_block_format_and_enciphered_pin():
    reader, _, _, _, _ = start(VirtualCard("offline_pin"))
    assert reader.send(b"\x00\x20\x00\x80\x08" + h("241234FFFFFFFFFF")) == (b"", 0x9000)
    assert reader.send(b"\x00\x20\x00\x80\x08" + h("24123AFFFFFFFFFF")) == (b"", 0x6A80)
    assert reader.send(b"\x00\x20\x00\x80\x08" + h("141234FFFFFFFFFF")) == (b"", 0x6A80)
    assert reader.send(b"\x00\x20\x00\x88\x08" + h("241234FFFFFFFFFF")) == (b"", 0x6A81)
    assert reader.send(b"\x00\x20\x00\x80\x04" + h("241234FF")) == (b"", 0x6700)


# -- contactless --------------------------------------------------------------------------

def test_qvsdc_gpo_carries_a_cryptogram_the_issuer_accepts():
    card = VirtualCard("no_cvm")
    reader, fci, g, tags, _ = start(card, PPSE)
    for tag in ("82", "94", "57", "9F10", "9F26", "9F27", "9F36", "9F6C", "5F34"):
        assert tag in g, tag
    assert g["9F27"] == bytes((ARQC,))
    assert g["9F6C"] == h("0000")                           # no CVM at low value
    assert tags["5A"] == h("4111111111111111")
    assert emv_issuer.verify_arqc(de55(TERMINAL, g, g), pan="4111111111111111", psn="00")
    assert reader.send("80AE80000100") == (b"", 0x6985)     # no GENERATE AC contactless


def test_qvsdc_asks_for_a_cvm_when_the_reader_needs_one():
    cvm_required = dict(TERMINAL, **{"9F66": "26400000"})
    for ttq, ctq in (("26400000", "8000"), ("22400000", "4000"), ("20400000", "0000")):
        reader = Reader(VirtualCard("online_pin"))
        select(reader, PPSE)
        fci = emvtlv.decode(select(reader, h("A0000000031010"))[0], flatten=True)
        data, sw = gpo(reader, fci, dict(cvm_required, **{"9F66": ttq}))
        assert sw == 0x9000
        assert emvtlv.decode(data, flatten=True)["9F6C"] == h(ctq), ttq


# -- the special profiles -------------------------------------------------------------------

def test_expired_card():
    card = VirtualCard("expired")
    _, _, _, tags, _ = start(card)
    expiry = datetime.date(2000 + tags["5F24"][0] // 16 * 10 + tags["5F24"][0] % 16, 12, 31)
    assert expiry < datetime.date.today()
    assert tags["5F24"] == h("201231")
    assert tags["9F0E"][1] & 0x40                            # IAC-denial: expired app


def test_blocked_application():
    reader = Reader(VirtualCard("blocked_app"))
    select(reader, PSE)
    data, sw = select(reader, h("A0000000031010"))
    assert sw == 0x6283
    assert emvtlv.decode(data)["6F"]["84"] == h("A0000000031010")
    assert reader.send("80A80000048302084000") == (b"", 0x6985)


def test_card_that_always_declines():
    card = VirtualCard("declines_aac")
    reader, _, g, tags, _ = start(card)
    ac = generate_ac(reader, ARQC, tags["8C"], TERMINAL)
    assert ac["9F27"] == bytes((AAC,))
    assert emv_issuer.verify_arqc(de55(TERMINAL, g, ac), pan=card.p["pan"])
    _, _, g, _, _ = start(VirtualCard("declines_aac"), PPSE)
    assert g["9F27"] == bytes((AAC,))


def test_card_answering_6f00():
    reader = Reader(VirtualCard("answers_6f00"))
    select(reader, PSE)
    select(reader, h("A0000000041010"))
    assert reader.send("80A8000002830000") == (b"", 0x6F00)


def test_card_pulled_out_after_six_apdus():
    card = VirtualCard("pulled_out")
    reader = Reader(card)
    select(reader, PSE)
    reader.send("00B2010C00")
    reader.send("00B2020C00")
    data, _ = select(reader, h("A0000000031010"))
    fci = emvtlv.decode(data, flatten=True)
    g = emvtlv.decode(gpo(reader, fci)[0], flatten=True)
    assert reader.send("00B2010C00")[1] == 0x9000              # the 6th APDU
    with pytest.raises(CardRemoved):
        reader.send("00B2020C00")
    with pytest.raises(CardRemoved):
        reader.send("00B2020C00")
    assert g["94"]
    card.insert()
    assert select(Reader(card), PSE)[1] == 0x9000


def test_remove_after_apdus_overrides_any_profile():
    card = VirtualCard("online_pin", remove_after_apdus=1)
    card.transmit(h("00A404000E") + PSE + b"\x00")
    with pytest.raises(CardRemoved):
        card.transmit(h("00A404000E") + PSE + b"\x00")


# -- T=0 behaviour ---------------------------------------------------------------------------

def test_t0_card_answers_61xx_and_6cxx():
    card = VirtualCard("sda")
    reader = Reader(card)
    resp = reader.raw_send(h("00A404000E") + PSE + b"\x00")
    assert resp[0] == 0x61
    size = resp[1]
    assert reader.raw_send(bytes((0, 0xC0, 0, 0, size + 1))) == bytes((0x6C, size))
    part = reader.raw_send(bytes((0, 0xC0, 0, 0, 10)))
    assert part[-2:] == bytes((0x61, size - 10))
    rest = reader.raw_send(bytes((0, 0xC0, 0, 0, size - 10)))
    assert rest[-2:] == h("9000")
    assert emvtlv.decode(part[:-2] + rest[:-2])["6F"]["84"] == PSE
    assert reader.raw_send(h("00C0000010")) == h("6985")     # nothing left
    resp = reader.raw_send(h("00B2010C00"))                  # Le 00: wrong length
    assert resp[0] == 0x6C
    record = reader.raw_send(bytes((0, 0xB2, 1, 0x0C, resp[1])))
    assert record[-2:] == h("9000") and len(record) == resp[1] + 2
    assert reader.raw_send(bytes((0, 0xB2, 1, 0x0C, resp[1] - 1)))[0] == 0x6C
    # the whole transaction through a reader that handles both
    start(VirtualCard("sda"))


def test_t1_card_answers_at_once():
    reader = Reader(VirtualCard("online_pin"))
    assert reader.raw_send(h("00A404000E") + PSE + b"\x00")[-2:] == h("9000")
    assert reader.raw_send(h("00B2010C00"))[-2:] == h("9000")
    assert reader.raw_send(h("00B2010C05"))[0] == 0x6C     # Le too short


# -- SDA and DDA, checked with `cryptography` as an independent terminal would ------------

def _public(modulus, exponent):
    """An RSA public key object (validated by cryptography) from EMV fields."""
    return rsa.RSAPublicNumbers(int.from_bytes(exponent, "big"),
                                int.from_bytes(modulus, "big")).public_key()


def _recover(key, signature):
    numbers = key.public_numbers()
    size = (numbers.n.bit_length() + 7) // 8
    assert len(signature) == size
    return pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(size, "big")


def _sha1(data):
    digest = hashes.Hash(hashes.SHA1())
    digest.update(data)
    return digest.finalize()


def _ca(rid, index):
    for key in emv_test_pki.ca_public_keys():
        if key["rid"] == rid and int(key["index"], 16) == index:
            return _public(h(key["modulus"]), h(key["exponent"]))
    raise AssertionError("no CA key %s/%02X" % (rid, index))


def _issuer_key(tags, rid, pan):
    ca = _ca(rid, tags["8F"][0])
    rec = _recover(ca, tags["90"])
    assert rec[0] == 0x6A and rec[1] == 0x02 and rec[-1] == 0xBC
    assert rec[11] == 0x01 and rec[12] == 0x01               # SHA-1, RSA
    remainder = tags.get("92", b"")
    assert _sha1(rec[1:-21] + remainder + tags["9F32"]) == rec[-21:-1]
    assert pan.startswith(rec[2:6].hex().upper().rstrip("F"))
    month, year = rec[6], rec[7]
    assert (2000 + int("%02X" % year), int("%02X" % month)) >= (2026, 1)
    ni = rec[13]
    modulus = (rec[15:-21] + remainder)[:ni]
    assert len(modulus) == ni and rec[14] == len(tags["9F32"])
    return _public(modulus, tags["9F32"])


def test_sda_signed_static_data_verifies():
    card = VirtualCard("sda")
    reader, _, g, tags, static = start(card)
    assert g["82"][0] & 0x40                                  # SDA supported
    assert afl_entries(g["94"])[1] == (0x10, 1, 2, 0)
    issuer = _issuer_key(tags, "A000000003", card.p["pan"])
    rec = _recover(issuer, tags["93"])
    assert rec[:3] == h("6A0301") and rec[-1] == 0xBC
    assert set(rec[5:-21]) == {0xBB}
    assert _sha1(rec[1:-21] + static) == rec[-21:-1]
    assert _sha1(rec[1:-21] + static + b"x") != rec[-21:-1]
    # and the module's own terminal-side checks agree
    modulus, exponent = emv_test_pki.recover_issuer_key(
        tags["90"], tags["92"], tags["9F32"], h(emv_test_pki.ca_public_keys()[0]["modulus"]),
        b"\x03", pan=card.p["pan"])
    assert emv_test_pki.verify_static_data(tags["93"], modulus, exponent, static) == h("DAC0")


def test_dda_signed_dynamic_data_verifies():
    card = VirtualCard("dda")
    reader, _, g, tags, static = start(card)
    assert g["82"][0] & 0x20                                  # DDA supported
    issuer = _issuer_key(tags, "A000000004", card.p["pan"])
    rec = _recover(issuer, tags["9F46"])
    assert rec[:2] == h("6A04") and rec[-1] == 0xBC
    assert rec[2:12].hex().upper().rstrip("F") == card.p["pan"]
    icc_rem = tags.get("9F48", b"")
    assert _sha1(rec[1:-21] + icc_rem + tags["9F47"] + static) == rec[-21:-1]
    nic = rec[19]
    icc = _public((rec[21:-21] + icc_rem)[:nic], tags["9F47"])
    assert tags["9F47"] == h("010001")
    assert tags["9F49"] == h("9F3704")
    numbers = []
    for un in ("01020304", "A1B2C3D4"):
        data, sw = reader.send(h("0088000004") + h(un) + b"\x00")
        assert sw == 0x9000
        sdad = emvtlv.decode(data)["77"]["9F4B"]
        rec = _recover(icc, sdad)
        assert rec[:3] == h("6A0501") and rec[-1] == 0xBC
        assert _sha1(rec[1:-21] + h(un)) == rec[-21:-1]
        assert _sha1(rec[1:-21] + h("00000000")) != rec[-21:-1]
        ldd = rec[3]
        numbers.append(rec[5:4 + ldd])
    assert numbers[0] != numbers[1] and len(numbers[0]) == 8
    ac = generate_ac(reader, ARQC, tags["8C"], TERMINAL)
    assert ac["9F10"][6] & 0x02                               # CVR: DDA performed


def test_pki_is_deterministic_and_exports_for_the_terminal():
    keys = emv_test_pki.ca_public_keys()
    assert [(k["rid"], k["index"]) for k in keys] == [("A000000003", "92"),
                                                      ("A000000004", "FE")]
    for key in keys:
        assert len(key["modulus"]) == 2 * 144 and key["exponent"] == "03"
        data = h(key["rid"]) + h(key["index"]) + h(key["modulus"]) + h(key["exponent"])
        assert hashlib.sha1(data).hexdigest().upper() == key["checksum"]
    # committed terminal configurations hold this key: it must never change
    assert keys[0]["checksum"] == "8882596662B196C1B8C3B0FAAEDEBABA51CBE773"
    parsed = tomllib.loads(emv_test_pki.export_toml())["emv"]["ca_keys"]
    assert [k["modulus"] for k in parsed] == [k["modulus"] for k in keys]
    assert '"ca_keys"' in emv_test_pki.export_json()
    ca = emv_test_pki.ca_key("A000000003", 0x92)
    ca.private_key()                                          # a consistent RSA key


def test_pki_rejects_a_forged_certificate():
    card = VirtualCard("sda")
    cert = bytearray(card.pki["90"])
    cert[10] ^= 1
    ca = emv_test_pki.ca_public_keys()[0]
    with pytest.raises(emv_test_pki.PkiError):
        emv_test_pki.recover_issuer_key(bytes(cert), card.pki["92"], card.pki["9F32"],
                                        h(ca["modulus"]), h(ca["exponent"]))


# -- the issuer module on its own -----------------------------------------------------------

def test_verify_arqc_input_forms_and_errors():
    card = VirtualCard("no_cvm")
    _, _, g, _, _ = start(card, PPSE)
    tags = de55(TERMINAL, g, g)
    raw = b"".join(bytes.fromhex(t) + bytes((len(v),)) + v
                   for t, v in emv_issuer.normalise_tags(tags).items())
    assert emv_issuer.verify_arqc(raw, pan="4111111111111111")
    assert emv_issuer.verify_arqc(dict(tags, **{"5A": "4111111111111111"}))
    assert emv_issuer.verify_arqc(tags, imk_ac="0123456789ABCDEFFEDCBA9876543210",
                                  pan=b"4111111111111111", psn=0)
    with pytest.raises(emv_issuer.De55Error):
        emv_issuer.verify_arqc({k: v for k, v in tags.items() if k != "9F37"},
                               pan="4111111111111111")
    other_cvn = dict(tags, **{"9F10": h("0601120300000000")})
    with pytest.raises(emv_issuer.De55Error):
        emv_issuer.verify_arqc(other_cvn, pan="4111111111111111")
    with pytest.raises(emv_issuer.De55Error):
        emv_issuer.verify_arqc(tags)                           # no PAN anywhere
    assert emv_issuer.keys_for_pan("6011000000000004") is None
    assert emv_issuer.response_de55(h("0011223344556677"), "00",
                                    pan="4111111111111111")[:2] == h("910A")


def test_arpc_method_1_by_hand():
    """ARPC = 3DES(ICC MK)[ARQC xor (ARC || 000000000000)], checked without pyemv."""
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes
    arqc = h("1234567890ABCDEF")
    mk = emv_issuer.derive_icc_mk(h("0123456789ABCDEFFEDCBA9876543210"), "4761739001010010",
                                  "01")
    block = bytes(a ^ b for a, b in zip(arqc, b"00" + b"\x00" * 6))
    enc = Cipher(TripleDES(mk + mk[:8]), modes.ECB()).encryptor()
    expected = enc.update(block) + enc.finalize()
    assert emv_issuer.make_arpc(arqc, "00", pan="4761739001010010", psn="01") == expected


# -- vpcd, against a stand-in for pcscd's reader ----------------------------------------------

def _vpcd_send(conn, data):
    conn.sendall(struct.pack(">H", len(data)) + data)


def _vpcd_recv(conn):
    head = b""
    while len(head) < 2:
        chunk = conn.recv(2 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">H", head)
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


@pytest.fixture
def reader_socket():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(5)
    yield srv
    srv.close()


def _card_thread(card, port, **kw):
    stop = threading.Event()
    log = []
    thread = threading.Thread(target=run_vpcd_card, args=(card, "127.0.0.1", port, stop),
                              kwargs=dict(kw, log=log.append, retry_s=0.05), daemon=True)
    thread.start()
    return stop, thread, log


def test_vpcd_protocol_and_reconnect(reader_socket):
    card = VirtualCard("no_cvm")
    stop, thread, log = _card_thread(card, reader_socket.getsockname()[1])
    try:
        conn, _ = reader_socket.accept()
        conn.settimeout(5)
        _vpcd_send(conn, b"\x01")                             # power on: no answer
        _vpcd_send(conn, b"\x04")
        assert _vpcd_recv(conn) == card.atr
        _vpcd_send(conn, h("00A404000E") + PPSE + b"\x00")
        assert _vpcd_recv(conn)[-2:] == h("9000")
        _vpcd_send(conn, b"\x00")                             # power off
        conn.close()                                          # pcscd went away
        conn, _ = reader_socket.accept()                      # the card comes back
        conn.settimeout(5)
        _vpcd_send(conn, b"\x02")                             # reset
        _vpcd_send(conn, b"\x04")
        assert _vpcd_recv(conn) == card.atr
        _vpcd_send(conn, h("00A404000E") + PPSE + b"\x00")
        assert _vpcd_recv(conn)[-2:] == h("9000")
        conn.close()
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert any("reconnecting" in line for line in log)


def test_vpcd_card_pulled_out_by_time(reader_socket):
    card = VirtualCard("online_pin")
    stop, thread, _ = _card_thread(card, reader_socket.getsockname()[1], remove_after_ms=150)
    try:
        conn, _ = reader_socket.accept()
        conn.settimeout(5)
        _vpcd_send(conn, b"\x04")
        assert _vpcd_recv(conn) == card.atr
        time.sleep(0.3)                                       # no APDU yet: still in
        _vpcd_send(conn, h("00A404000E") + PSE + b"\x00")
        assert _vpcd_recv(conn)[-2:] == h("9000")
        began = time.monotonic()
        assert _vpcd_recv(conn) is None                       # the socket closes
        assert time.monotonic() - began < 2
        reader_socket.settimeout(0.5)
        with pytest.raises(socket.timeout):
            reader_socket.accept()                            # and it stays out
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert card.removed


def test_vpcd_card_pulled_out_by_apdu_count(reader_socket):
    card = VirtualCard("online_pin", remove_after_apdus=2)
    stop, thread, _ = _card_thread(card, reader_socket.getsockname()[1])
    try:
        conn, _ = reader_socket.accept()
        conn.settimeout(5)
        for _ in range(2):
            _vpcd_send(conn, h("00A404000E") + PSE + b"\x00")
            assert _vpcd_recv(conn)[-2:] == h("9000")
        _vpcd_send(conn, h("00A404000E") + PSE + b"\x00")
        assert _vpcd_recv(conn) is None
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_vpcd_card_waits_for_the_reader():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                             # nobody listens here
    stop, thread, log = _card_thread(VirtualCard("no_cvm"), port)
    time.sleep(0.3)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert any("waiting for the vpcd reader" in line for line in log)
