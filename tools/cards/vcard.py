"""A virtual EMV chip and contactless card, in-process or behind pcscd's vpcd reader.

`VirtualCard(profile).transmit(apdu)` is the card: tests give it APDUs directly. The
same object can sit behind a real PC/SC stack: `python -m tools.cards.vcard --profile NAME`
(or `run_vpcd_card()` in a thread) connects to the vsmartcard `vpcd` driver loaded by
pcscd, and the terminal's PC/SC driver sees an ordinary card in the "Virtual PCD" reader.

    python -m tools.cards.vcard --profile online_pin [--vpcd-host 127.0.0.1]
                          [--vpcd-port 35963] [--remove-after-ms N] [--verbose]
    python -m tools.cards.vcard --list

What the card does (EMV 4.3 Books 1 and 3, Visa-style contact and qVSDC-style
contactless):

    SELECT 1PAY.SYS.DDF01      PSE FCI (SFI 1 directory; READ RECORD 1 lists the app)
    SELECT 2PAY.SYS.DDF01      PPSE FCI with the directory entry (contactless cards)
    SELECT AID (or a prefix)   FCI with label, priority and PDOL
    GET PROCESSING OPTIONS     format 2 (77: AIP 82, AFL 94); contactless: qVSDC style,
                               the cryptogram (9F26/9F27/9F10/9F36), track 2, CTQ 9F6C
    READ RECORD                records per the AFL: 5A 5F24 5F25 5F28 5F34 57 5F20 50
                               8E 8C 8D 9F0D/E/F 9F07 9F08 9F42 5F30, for SDA/DDA 8F 90
                               9F32 92 93 / 9F46 9F47 9F48 9F49 (tools/cards/emv_test_pki.py)
    INTERNAL AUTHENTICATE      DDA: 77 with 9F4B over the DDOL data
    VERIFY (P2 80)             plaintext offline PIN, 1234; try limit 3, 63Cx, 6983
    GET DATA                   9F17 PIN try counter, 9F36 ATC, 9F13 last online ATC
    GENERATE AC (1st, 2nd)     AAC/TC/ARQC by the card's own simple risk rules below
    EXTERNAL AUTHENTICATE      ARPC || ARC checked (Visa profiles); Mastercard profiles
                               take the same 10 bytes as tag 91 in CDOL2
    GET RESPONSE               after 61xx (T=0 profiles)

Cryptograms: Visa CVN 10 (tools/cards/emv_issuer.py has the details and the issuer's side):
ICC master key by EMV option A from the issuer master key, no session key, ISO 9797-1
MAC algorithm 3 with zero padding over 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36 CVR;
9F10 = 06 01 0A 03 xx xx xx; ARPC method 1. The ATC (9F36) counts up at every GET
PROCESSING OPTIONS and survives power cycles, as the PIN try counter does.

Card risk (first GENERATE AC): the card never answers above what the terminal asked.
Asked for a TC, it approves offline only when its profile has an offline limit, the
amount is within it in the card's currency, and fewer than the consecutive offline
limit were approved offline since the last online one; otherwise it asks for an ARQC.
Second GENERATE AC: TC when the issuer approved (8A "00", "10", "11") and issuer
authentication, if given, was right; TC on "Y3" (unable to go online, terminal
approves) only within the offline rules; otherwise AAC.

Profiles (PROFILES; every PIN is 1234, every issuer key is the test issuer's of the
PAN's brand, tools/cards/emv_issuer.py: Visa IMK-AC 0123456789ABCDEFFEDCBA9876543210,
Mastercard IMK-AC 404142434445464748494A4B4C4D4E4F):

    profile       brand AID       PAN               PSN interface   behaviour
    online_pin    Visa            4761739001010010  01  dual, T=1   CVM online PIN; always
                                                                    online; contactless
                                                                    asks online PIN over
                                                                    the CVM limit
    offline_pin   Mastercard      5555555555554444  00  contact T=0 CVM offline plaintext
                                                                    PIN; offline TC up to
                                                                    50.00 (3 in a row)
    no_cvm        Visa            4111111111111111  00  contactless qVSDC ARQC, no CVM
                                                                    unless the reader says
                                                                    CVM required
    expired       Visa            4012888888881881  00  contact T=1 expired 2020-12-31;
                                                                    IAC-denial has "expired"
    blocked_app   Visa            4242424242424242  00  contact T=1 SELECT AID answers FCI
                                                                    + 6283, GPO 6985
    declines_aac  Visa            4000056655665556  00  dual, T=1   every cryptogram an AAC
    answers_6f00  Mastercard      5105105105105100  00  contact T=1 GPO answers 6F00
    pulled_out    Visa            4761739001010119  00  contact T=1 answers 6 APDUs, then
                                                                    CardRemoved (in
                                                                    transmit) / leaves
                                                                    the vpcd reader
    sda           Visa            4917610000000000  00  contact T=0 SDA (CA A000000003/92)
    dda           Mastercard      5200828282828210  00  contact T=0 DDA (CA A000000004/FE),
                                                                    offline TC up to 50.00

"T=0" profiles behave as a T=0 card seen through a reader that does not hide it: a
command with response data (SELECT, GPO, GENERATE AC, INTERNAL AUTHENTICATE) answers
61xx and the data comes with GET RESPONSE; READ RECORD and GET DATA answer 6Cxx unless
Le is the exact length (Le 00 included), and the reader repeats them with Le = xx.
Visa profiles answer GENERATE AC in format 1 (80), Mastercard ones in format 2 (77).

vpcd: pcscd's "Virtual PCD" reader listens on localhost:35963 (0x8C7B, slot 0; slot 1
is 35964). The card connects as a client; every message is a 2-byte big-endian length
and data: one byte is a control code (00 power off, 01 power on, 02 reset, 04 get ATR,
answered with the ATR), anything longer a command APDU, answered with the response.
The card reconnects when pcscd restarts. Pulled out (the pulled_out profile, or
--remove-after-ms N: N ms after its first APDU), it closes the socket, which vpcd
reports as a removal, and stays out until stopped. Card memory (ATC, PIN tries) lasts
as long as the process. `PrivatePcscd` runs a pcscd of its own (private socket, private
vpcd ports) for tests; see tests/test_vcard_pcscd.py.
"""
import argparse
import collections
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings

# pyemv's MAC helper uses single-length TDES keys, which cryptography warns about; the
# warning would be printed over the simulator's screen (the test issuer keys are what
# they are: published test values)
warnings.filterwarnings("ignore", message=".*TripleDES.*", module="pyemv")
warnings.filterwarnings("ignore", message=".*Single-key TripleDES.*")

from tools.cards import emv_issuer, emv_test_pki

VPCD_PORT = 0x8C7B          # 35963: the Debian vpcd reader.conf's slot 0

PSE = b"1PAY.SYS.DDF01"
PPSE = b"2PAY.SYS.DDF01"
VISA_AID = bytes.fromhex("A0000000031010")
MASTERCARD_AID = bytes.fromhex("A0000000041010")

# Cryptogram information data (9F27)
AAC, TC, ARQC = 0x00, 0x40, 0x80

CDOL1 = "9F02069F03069F1A0295055F2A029A039C019F37049F35019F3403"
CDOL2_VISA = "8A029F02069F03069F1A0295055F2A029A039C019F3704"
CDOL2_MASTERCARD = "8A02910A9F02069F03069F1A0295055F2A029A039C019F3704"
PDOL_CONTACTLESS = "9F66049F02069F03069F1A0295055F2A029A039C019F3704"
DDOL = "9F3704"


def _with_tck(hex_atr):
    atr = bytes.fromhex(hex_atr)
    tck = 0
    for b in atr[1:]:
        tck ^= b
    return atr + bytes((tck,))


ATR_T0 = bytes.fromhex("3B600000")              # EMV basic ATR, T=0 only
ATR_T1 = _with_tck("3BE000008131FE45")          # EMV basic ATR, T=1 (IFSC 254, BWI 4)
ATR_CONTACTLESS = _with_tck("3B808001")         # PC/SC pseudo-ATR of an ISO 14443-4 card


class CardRemoved(Exception):
    """The card has left the reader: no answer to this APDU or to any later one."""


class _Status(Exception):
    def __init__(self, sw):
        Exception.__init__(self, "%04X" % sw)
        self.sw = sw


# -- profiles -----------------------------------------------------------------

_BASE = {
    "description": "",
    "interface": "contact",         # contact, contactless or dual
    "t0": False,
    "psn": "00",
    "cardholder": "TEST/CARDHOLDER",
    "expiry": "301231",             # YYMMDD
    "effective": "200101",
    "country": "0840",
    "currency": "0840",
    "service_code": "201",
    "oda": None,                    # None, "sda" or "dda"
    "cvm_list": "00000000" "00000000" "4203" "1E03" "1F03",
    "iac_default": "DC4000A800",
    "iac_denial": "0010000000",
    "iac_online": "DC4004F800",
    "pin": "1234",
    "pin_try_limit": 3,
    "atc": 0x0010,
    "offline_limit": 0,             # minor units; 0: never approves offline
    "offline_count_limit": 3,
    "always_aac": False,
    "select_sw": None,              # e.g. 0x6283: SELECT AID answers FCI + this
    "gpo_sw": None,                 # e.g. 0x6F00: GET PROCESSING OPTIONS answers this
    "remove_after_apdus": None,     # answer this many APDUs, then CardRemoved
}

_VISA = {
    "aid": VISA_AID.hex().upper(), "label": "VISA CREDIT", "preferred_name": "VISA TEST",
    "app_version": "0096", "gen_ac_format": 1, "issuer_auth": "external",
    "pdol_contact": "9F1A02", "cdol2": CDOL2_VISA,
}

_MASTERCARD = {
    "aid": MASTERCARD_AID.hex().upper(), "label": "MASTERCARD", "preferred_name": "MC TEST",
    "app_version": "0002", "gen_ac_format": 2, "issuer_auth": "cdol2",
    "pdol_contact": "", "cdol2": CDOL2_MASTERCARD,
}


def _profile(brand, **settings):
    out = dict(_BASE)
    out.update(brand)
    out.update(settings)
    return out


PROFILES = {
    "online_pin": _profile(
        _VISA, pan="4761739001010010", psn="01", cardholder="TEST/ONLINE PIN", interface="dual",
        expiry="291231",
        description="Visa, chip and contactless; online PIN; always goes online"),
    "offline_pin": _profile(
        _MASTERCARD, pan="5555555555554444", cardholder="TEST/OFFLINE PIN", t0=True,
        cvm_list="00000000" "00000000" "4103" "4203" "1E03" "1F03", offline_limit=5000,
        description="Mastercard chip (T=0); offline plaintext PIN; TC offline up to 50.00"),
    "no_cvm": _profile(
        _VISA, pan="4111111111111111", cardholder="TEST/CONTACTLESS", interface="contactless",
        cvm_list="00000000" "00000000" "1F00",
        description="Visa contactless (qVSDC); online cryptogram; no CVM at low value"),
    "expired": _profile(
        _VISA, pan="4012888888881881", cardholder="TEST/EXPIRED", expiry="201231",
        effective="170101", iac_denial="0050000000",
        description="Visa chip, expired 2020-12-31 (IAC-denial declines it offline)"),
    "blocked_app": _profile(
        _VISA, pan="4242424242424242", cardholder="TEST/BLOCKED", select_sw=0x6283,
        description="Visa chip whose application is blocked: SELECT answers 6283"),
    "declines_aac": _profile(
        _VISA, pan="4000056655665556", cardholder="TEST/DECLINE", interface="dual",
        always_aac=True, description="Visa chip and contactless; every cryptogram an AAC"),
    "answers_6f00": _profile(
        _MASTERCARD, pan="5105105105105100", cardholder="TEST/6F00", gpo_sw=0x6F00,
        description="Mastercard chip that answers GET PROCESSING OPTIONS with 6F00"),
    "pulled_out": _profile(
        _VISA, pan="4761739001010119", cardholder="TEST/PULLED OUT", remove_after_apdus=6,
        description="Visa chip pulled out after 6 APDUs (during READ RECORD)"),
    "sda": _profile(
        _VISA, pan="4917610000000000", cardholder="TEST/SDA", oda="sda", t0=True,
        cvm_list="00000000" "00000000" "4103" "4203" "1E03" "1F03",
        description="Visa chip (T=0) with static data authentication"),
    "dda": _profile(
        _MASTERCARD, pan="5200828282828210", cardholder="TEST/DDA", oda="dda", t0=True,
        cvm_list="00000000" "00000000" "4103" "4203" "1E03" "1F03", offline_limit=5000,
        description="Mastercard chip (T=0) with dynamic data authentication"),
}


def issuer_keys():
    """{profile name: {"pan", "psn", "aid", "issuer", "imk_ac", "imk_smi", "imk_smc",
    "icc_mk_ac", "cvn"}} for every card profile here."""
    out = {}
    for name, profile in PROFILES.items():
        keys = emv_issuer.keys_for_pan(profile["pan"])
        out[name] = {"pan": profile["pan"], "psn": profile["psn"], "aid": profile["aid"],
                     "issuer": keys["name"], "imk_ac": keys["imk_ac"],
                     "imk_smi": keys["imk_smi"], "imk_smc": keys["imk_smc"],
                     "icc_mk_ac": emv_issuer.derive_icc_mk(keys["imk_ac"], profile["pan"],
                                                           profile["psn"]),
                     "cvn": emv_issuer.CVN}
    return out


def profile_settings(profile):
    """The settings dict of a profile name (or a copy of a settings dict)."""
    if isinstance(profile, dict):
        out = dict(_BASE)
        out.update(profile)
        return out
    try:
        return dict(PROFILES[profile])
    except KeyError:
        raise ValueError("no card profile %r (profiles: %s)" % (profile, ", ".join(PROFILES)))


# -- TLV and DOL --------------------------------------------------------------

def tlv(tag, value):
    """One BER-TLV data object; tag as hex, value as bytes or hex."""
    if isinstance(value, str):
        value = bytes.fromhex(value)
    n = len(value)
    if n < 0x80:
        length = bytes((n,))
    elif n < 0x100:
        length = bytes((0x81, n))
    else:
        length = bytes((0x82, n >> 8, n & 0xFF))
    return bytes.fromhex(tag) + length + value


def parse_dol(dol):
    """A data object list (bytes or hex) as [(tag hex, length)]."""
    if isinstance(dol, str):
        dol = bytes.fromhex(dol)
    out, i = [], 0
    while i < len(dol):
        start = i
        i += 1
        if dol[start] & 0x1F == 0x1F:
            while dol[i] & 0x80:
                i += 1
            i += 1
        out.append((dol[start:i].hex().upper(), dol[i]))
        i += 1
    return out


def split_dol(dol, data):
    """The values of a DOL's objects from the concatenated data: {tag: bytes}."""
    out, i = {}, 0
    for tag, n in parse_dol(dol):
        out[tag] = data[i:i + n]
        i += n
    return out


def dol_length(dol):
    return sum(n for _, n in parse_dol(dol))


def _bcd_pan(pan):
    return bytes.fromhex(pan + ("F" if len(pan) % 2 else ""))


def _amount(bcd):
    try:
        return int(bcd.hex())
    except ValueError:
        return None


# -- the card -------------------------------------------------------------------

class _Command:
    def __init__(self, apdu):
        if len(apdu) < 4:
            raise _Status(0x6700)
        self.cla, self.ins, self.p1, self.p2 = apdu[0], apdu[1], apdu[2], apdu[3]
        body = apdu[4:]
        self.data, self.le = b"", None
        if len(body) == 1:
            self.le = body[0]
        elif len(body) > 1:
            lc = body[0]
            if lc == 0:                         # extended length: not on this card
                raise _Status(0x6700)
            if len(body) == 1 + lc:
                self.data = body[1:]
            elif len(body) == 2 + lc:
                self.data, self.le = body[1:-1], body[-1]
            else:
                raise _Status(0x6700)


# instruction -> (class byte, handler name, ISO case: 2 data out, 3 data in, 4 both)
_COMMANDS = {
    0xA4: (0x00, "_select", 4),
    0xB2: (0x00, "_read_record", 2),
    0xA8: (0x80, "_gpo", 4),
    0xCA: (0x80, "_get_data", 2),
    0x20: (0x00, "_verify", 3),
    0xAE: (0x80, "_generate_ac", 4),
    0x82: (0x00, "_external_authenticate", 3),
    0x88: (0x00, "_internal_authenticate", 4),
}


class VirtualCard:
    """One card: a profile's personalisation plus the card's own memory (ATC, PIN try
    counter, last online ATC), which lasts across power cycles as a chip's EEPROM does.

    VirtualCard("online_pin") or VirtualCard(settings_dict); keywords override profile
    settings (t0=True, remove_after_apdus=3, interface="contact", ...)."""

    def __init__(self, profile="online_pin", **overrides):
        self.name = profile if isinstance(profile, str) else "custom"
        self.p = profile_settings(profile)
        self.p.update(overrides)
        p = self.p
        if p["interface"] not in ("contact", "contactless", "dual"):
            raise ValueError("interface is contact, contactless or dual")
        self.aid = bytes.fromhex(p["aid"])
        self.icc_mk_ac = emv_issuer.derive_icc_mk(
            emv_issuer.keys_for_pan(p["pan"])["imk_ac"], p["pan"], p["psn"])
        # the card's non-volatile memory
        self.atc = p["atc"]
        self.pin_tries = p["pin_try_limit"]
        self.last_online_atc = 0
        self.consecutive_offline = 0
        self.online_pending = False             # an ARQC never completed by a 2nd GEN AC
        self.issuer_auth_failed_last = False
        self.apdu_count = 0
        self.removed = False
        self.log = collections.deque(maxlen=2000)   # (command, response), newest last
        self._personalise()
        self.power_on()

    # -- power and presence --

    @property
    def atr(self):
        if self.p["interface"] == "contactless":
            return ATR_CONTACTLESS
        return ATR_T0 if self.p["t0"] else ATR_T1

    @property
    def contact(self):
        return self.p["interface"] in ("contact", "dual")

    @property
    def contactless(self):
        return self.p["interface"] in ("contactless", "dual")

    def power_on(self):
        """Cold or warm reset: everything volatile is gone, the EEPROM stays."""
        self.powered = True
        self.selected = None                    # None, "pse", "ppse" or "app"
        self.mode = "contact" if self.contact else "contactless"
        self.pending = None                     # data waiting for GET RESPONSE
        self._new_transaction()

    reset = power_on

    def power_off(self):
        self.powered = False
        self.selected = None
        self.pending = None

    def remove(self):
        """Pull the card out: every later APDU raises CardRemoved."""
        self.removed = True
        self.powered = False

    def insert(self):
        """Put it back in (a new insertion: the APDU count starts again)."""
        self.removed = False
        self.apdu_count = 0
        self.power_on()

    def _new_transaction(self):
        self.stage = "idle"                     # idle, selected, gpo, arqc, done
        self.pin_verified = False
        self.pin_failed = False
        self.dda_done = False
        self.ext_auth = None                    # None, True (ARPC right), False
        self.arqc = None
        self.icc_dynamic_number = None

    # -- the APDU interface --

    def transmit(self, apdu):
        """Answer one command APDU (bytes) with the response APDU (data + SW1 SW2)."""
        apdu = bytes(apdu)
        if self.removed:
            raise CardRemoved("the card is not in the reader")
        self.apdu_count += 1
        limit = self.p["remove_after_apdus"]
        if limit is not None and self.apdu_count > limit:
            self.remove()
            raise CardRemoved("the card was pulled out after %d APDUs" % limit)
        if not self.powered:
            self.power_on()
        response = self._answer(apdu)
        self.log.append((apdu, response))
        return response

    def _answer(self, apdu):
        try:
            cmd = _Command(apdu)
        except _Status as st:
            return _sw(st.sw)
        if cmd.ins == 0xC0:
            if cmd.cla != 0x00:
                return _sw(0x6E00)
            return self._get_response(cmd)
        self.pending = None
        entry = _COMMANDS.get(cmd.ins)
        if entry is None:
            return _sw(0x6D00)
        cla, handler, case = entry
        if cmd.cla != cla:
            return _sw(0x6E00)
        try:
            data, sw = getattr(self, handler)(cmd)
        except _Status as st:
            return _sw(st.sw)
        return self._shape(cmd, case, data, sw)

    def _shape(self, cmd, case, data, sw):
        """What the reader sees of data + SW under this card's transmission protocol."""
        if not data:
            return _sw(sw)
        if case == 4 and self.p["t0"] and sw == 0x9000:
            self.pending = data
            return _sw(0x6100 | (len(data) & 0xFF))
        if case == 2:
            asked = 256 if not cmd.le else cmd.le
            if self.p["t0"] and asked != len(data):
                return _sw(0x6C00 | (len(data) & 0xFF))
            if cmd.le and cmd.le < len(data):
                return _sw(0x6C00 | len(data))
        return data + _sw(sw)

    def _get_response(self, cmd):
        if self.pending is None:
            return _sw(0x6985)
        asked = 256 if not cmd.le else cmd.le
        left = len(self.pending)
        if asked > left:
            return _sw(0x6C00 | (left & 0xFF))
        out, self.pending = self.pending[:asked], self.pending[asked:]
        if self.pending:
            return out + _sw(0x6100 | (len(self.pending) & 0xFF))
        self.pending = None
        return out + _sw(0x9000)

    # -- personalisation --

    def _personalise(self):
        p = self.p
        self.aip_contact = bytes((0x10 | 0x08 |
                                  {None: 0, "sda": 0x40, "dda": 0x20}[p["oda"]] |
                                  (0x04 if p["issuer_auth"] == "external" else 0), 0x00))
        self.aip_contactless = b"\x00\x00"
        self.cdol1, self.cdol2 = CDOL1, p["cdol2"]
        expiry = bytes.fromhex(p["expiry"])
        psn = bytes.fromhex(p["psn"])
        track2 = p["pan"] + "D" + p["expiry"][:4] + p["service_code"] + "0000000000"
        track2 += "F" * (len(track2) % 2)
        self.track2 = bytes.fromhex(track2)
        oda_record = (
            tlv("5A", _bcd_pan(p["pan"])) + tlv("5F24", expiry) +
            tlv("5F25", p["effective"]) + tlv("5F28", p["country"]) + tlv("5F34", psn) +
            tlv("9F07", "FF00") + tlv("8E", p["cvm_list"]) + tlv("9F0D", p["iac_default"]) +
            tlv("9F0E", p["iac_denial"]) + tlv("9F0F", p["iac_online"]) +
            (tlv("9F4A", "82") if p["oda"] else b"") + tlv("8C", self.cdol1) +
            tlv("8D", self.cdol2) + tlv("9F08", p["app_version"]) +
            tlv("9F42", p["currency"]) + tlv("5F30", p["service_code"].zfill(4)))
        name = p["cardholder"].encode("ascii")
        self.records = {
            (1, 1): tlv("70", oda_record),
            (1, 2): tlv("70", tlv("57", self.track2) + tlv("5F20", name) +
                        tlv("50", p["label"].encode())),
            # the contactless application's own record (AFL 18 01 01 00)
            (3, 1): tlv("70", tlv("5A", _bcd_pan(p["pan"])) + tlv("5F24", expiry) +
                        tlv("5F28", p["country"]) + tlv("5F34", psn) + tlv("9F07", "FF00") +
                        tlv("5F20", name)),
        }
        self.afl_contact = bytes.fromhex("08010201")
        self.afl_contactless = bytes.fromhex("18010100")
        # Static data to be authenticated: SFI 1 record 1 without its 70 template
        # (SFIs 1-10), then the AIP, which 9F4A names.
        self.static_data = oda_record + self.aip_contact
        self.icc_key = None
        if p["oda"]:
            pki = emv_test_pki.card_pki(p["aid"][:10], p["pan"], p["psn"], self.static_data,
                                        p["oda"] == "dda")
            self.pki = pki
            issuer = (tlv("8F", pki["8F"]) + tlv("9F32", pki["9F32"]) +
                      (tlv("92", pki["92"]) if "92" in pki else b"") + tlv("90", pki["90"]))
            if p["oda"] == "sda":
                second = tlv("93", pki["93"])
            else:
                self.icc_key = pki["icc_key"]
                second = (tlv("9F46", pki["9F46"]) + tlv("9F47", pki["9F47"]) +
                          (tlv("9F48", pki["9F48"]) if "9F48" in pki else b"") +
                          tlv("9F49", DDOL))
            self.records[(2, 1)] = tlv("70", issuer)
            self.records[(2, 2)] = tlv("70", second)
            self.afl_contact += bytes.fromhex("10010200")
        self.pse_record = tlv("70", tlv("61", tlv("4F", self.aid) +
                                        tlv("50", p["label"].encode()) + tlv("87", "01")))

    def _fci_pse(self):
        return tlv("6F", tlv("84", PSE) + tlv("A5", tlv("88", "01") + tlv("5F2D", b"en".hex())))

    def _fci_ppse(self):
        entry = tlv("61", tlv("4F", self.aid) + tlv("50", self.p["label"].encode()) +
                    tlv("87", "01"))
        return tlv("6F", tlv("84", PPSE) + tlv("A5", tlv("BF0C", entry)))

    def _pdol(self):
        return PDOL_CONTACTLESS if self.mode == "contactless" else self.p["pdol_contact"]

    def _fci_app(self):
        p = self.p
        prop = tlv("50", p["label"].encode()) + tlv("87", "01")
        if self._pdol():
            prop += tlv("9F38", self._pdol())
        prop += (tlv("5F2D", b"en".hex()) + tlv("9F11", "01") +
                 tlv("9F12", p["preferred_name"].encode()))
        return tlv("6F", tlv("84", self.aid) + tlv("A5", prop))

    # -- commands --

    def _select(self, cmd):
        if cmd.p1 != 0x04 or cmd.p2 not in (0x00, 0x02):
            raise _Status(0x6A86)
        name = cmd.data
        previous = self.selected
        self.selected = None
        self._new_transaction()
        if name == PSE and self.contact:
            self.selected, self.mode = "pse", "contact"
            return self._fci_pse(), 0x9000
        if name == PPSE and self.contactless:
            self.selected, self.mode = "ppse", "contactless"
            return self._fci_ppse(), 0x9000
        if len(name) >= 5 and self.aid.startswith(name):
            if cmd.p2 == 0x02 and previous == "app":
                raise _Status(0x6A82)           # no next application with this prefix
            self.selected, self.stage = "app", "selected"
            return self._fci_app(), (self.p["select_sw"] or 0x9000)
        raise _Status(0x6A82)

    def _read_record(self, cmd):
        if cmd.p2 & 0x07 != 0x04 or cmd.p1 == 0:
            raise _Status(0x6A86)
        sfi, number = cmd.p2 >> 3, cmd.p1
        if self.selected == "pse":
            if sfi != 1:
                raise _Status(0x6A82)
            if number != 1:
                raise _Status(0x6A83)
            return self.pse_record, 0x9000
        if self.selected != "app":
            raise _Status(0x6A82)
        if (sfi, number) in self.records:
            return self.records[(sfi, number)], 0x9000
        if any(s == sfi for s, _ in self.records):
            raise _Status(0x6A83)
        raise _Status(0x6A82)

    def _get_data(self, cmd):
        if self.selected != "app":
            raise _Status(0x6985)
        tag = (cmd.p1 << 8) | cmd.p2
        if tag == 0x9F17:
            value = bytes((self.pin_tries,))
        elif tag == 0x9F36:
            value = self.atc.to_bytes(2, "big")
        elif tag == 0x9F13:
            value = self.last_online_atc.to_bytes(2, "big")
        else:
            raise _Status(0x6A88)
        return tlv("%04X" % tag, value), 0x9000

    def _verify(self, cmd):
        if self.selected != "app":
            raise _Status(0x6985)
        if cmd.p1 != 0x00:
            raise _Status(0x6A86)
        if cmd.p2 == 0x88:                      # enciphered offline PIN: not on this card
            raise _Status(0x6A81)
        if cmd.p2 != 0x80:
            raise _Status(0x6A86)
        if not cmd.data:                        # ISO 7816-4: the number of tries left
            return b"", 0x63C0 | self.pin_tries
        if len(cmd.data) != 8:
            raise _Status(0x6700)
        if self.pin_tries == 0:
            raise _Status(0x6983)
        pin = _plain_pin(cmd.data)
        if pin is None:
            raise _Status(0x6A80)
        if pin == self.p["pin"]:
            self.pin_tries = self.p["pin_try_limit"]
            self.pin_verified, self.pin_failed = True, False
            return b"", 0x9000
        self.pin_tries -= 1
        self.pin_failed = True
        return b"", 0x63C0 | self.pin_tries

    def _gpo(self, cmd):
        if self.selected != "app" or self.p["select_sw"]:
            raise _Status(0x6985)
        if self.p["gpo_sw"]:
            raise _Status(self.p["gpo_sw"])
        if self.stage != "selected":
            raise _Status(0x6985)
        data = cmd.data
        if len(data) < 2 or data[0] != 0x83 or data[1] != len(data) - 2:
            raise _Status(0x6A80)
        values = data[2:]
        if len(values) != dol_length(self._pdol()):
            raise _Status(0x6700)
        self.atc = (self.atc + 1) & 0xFFFF
        if self.mode == "contactless":
            return self._qvsdc(split_dol(self._pdol(), values)), 0x9000
        self.stage = "gpo"
        return tlv("77", tlv("82", self.aip_contact) + tlv("94", self.afl_contact)), 0x9000

    def _qvsdc(self, pdol):
        ttq = pdol["9F66"]
        cid = AAC if self.p["always_aac"] else ARQC
        ctq = 0x00
        if ttq[1] & 0x40 and cid == ARQC:       # the reader says a CVM is required
            if ttq[0] & 0x04:
                ctq = 0x80                      # online PIN
            elif ttq[0] & 0x02:
                ctq = 0x40                      # signature
        cvr = self._cvr(first=cid)
        iad = emv_issuer.build_iad(cvr)
        ac = self._cryptogram(pdol, self.aip_contactless, iad)
        self.stage = "done"
        if cid == ARQC:
            self.online_pending = False         # qVSDC has no second cryptogram
        return tlv("77", tlv("82", self.aip_contactless) + tlv("94", self.afl_contactless) +
                   tlv("57", self.track2) + tlv("5F34", self.p["psn"]) + tlv("9F10", iad) +
                   tlv("9F26", ac) + tlv("9F27", bytes((cid,))) +
                   tlv("9F36", self.atc.to_bytes(2, "big")) + tlv("9F6C", bytes((ctq, 0x00))))

    def _internal_authenticate(self, cmd):
        if self.p["oda"] != "dda":
            raise _Status(0x6D00)
        if self.selected != "app":
            raise _Status(0x6985)
        if cmd.p1 != 0x00 or cmd.p2 != 0x00:
            raise _Status(0x6A86)
        if not cmd.data:
            raise _Status(0x6700)
        self.icc_dynamic_number = os.urandom(8)
        sdad = emv_test_pki.signed_dynamic_data(self.icc_key, self.icc_dynamic_number,
                                                cmd.data)
        self.dda_done = True
        return tlv("77", tlv("9F4B", sdad)), 0x9000

    def _generate_ac(self, cmd):
        if self.selected != "app" or self.mode != "contact":
            raise _Status(0x6985)
        asked = cmd.p1 & 0xC0
        if asked == 0xC0:
            raise _Status(0x6A86)
        if self.stage == "gpo":
            return self._first_ac(cmd, asked), 0x9000
        if self.stage == "arqc":
            if asked == ARQC:
                raise _Status(0x6A86)
            return self._second_ac(cmd, asked), 0x9000
        raise _Status(0x6985)

    def _first_ac(self, cmd, asked):
        if len(cmd.data) != dol_length(self.cdol1):
            raise _Status(0x6700)
        values = split_dol(self.cdol1, cmd.data)
        if self.p["always_aac"] or asked == AAC:
            cid = AAC
        elif asked == ARQC:
            cid = ARQC
        else:
            cid = TC if self._offline_allowed(values) else ARQC
        iad = emv_issuer.build_iad(self._cvr(first=cid))
        ac = self._cryptogram(values, self.aip_contact, iad)
        if cid == ARQC:
            self.stage, self.arqc, self.online_pending = "arqc", ac, True
        else:
            self.stage = "done"
            if cid == TC:
                self.consecutive_offline += 1
        return self._ac_response(cid, ac, iad)

    def _second_ac(self, cmd, asked):
        if len(cmd.data) != dol_length(self.cdol2):
            raise _Status(0x6700)
        values = split_dol(self.cdol2, cmd.data)
        arc = values["8A"]
        issuer_data = values.get("91")
        if issuer_data and any(issuer_data) and self.ext_auth is None:
            self.ext_auth = emv_issuer.check_issuer_authentication(
                self.icc_mk_ac, self.arqc, issuer_data)
        unable_online = arc in (b"Y3", b"Z3")
        if asked == AAC or self.p["always_aac"] or self.ext_auth is False:
            cid = AAC
        elif arc in emv_issuer.APPROVING_ARCS:
            cid = TC
        elif arc == b"Y3" and self._offline_allowed(values):
            cid = TC
        else:
            cid = AAC
        iad = emv_issuer.build_iad(self._cvr(first=ARQC, second=cid,
                                             unable_online=unable_online))
        ac = self._cryptogram(values, self.aip_contact, iad)
        self.stage, self.online_pending = "done", False
        if unable_online:
            if cid == TC:
                self.consecutive_offline += 1
        else:
            self.last_online_atc = self.atc
            self.issuer_auth_failed_last = self.ext_auth is False
            if cid == TC:
                self.consecutive_offline = 0
        return self._ac_response(cid, ac, iad)

    def _external_authenticate(self, cmd):
        if self.stage != "arqc" or self.ext_auth is not None:
            raise _Status(0x6985)
        if len(cmd.data) != 10:
            raise _Status(0x6700)
        self.ext_auth = emv_issuer.check_issuer_authentication(self.icc_mk_ac, self.arqc,
                                                               cmd.data)
        return b"", (0x9000 if self.ext_auth else 0x6300)

    # -- card risk and cryptograms --

    def _offline_allowed(self, values):
        p = self.p
        amount = _amount(values.get("9F02", b""))
        return (p["offline_limit"] > 0 and amount is not None and
                amount <= p["offline_limit"] and
                values.get("5F2A") == bytes.fromhex(p["currency"]) and
                self.consecutive_offline < p["offline_count_limit"])

    def _cvr(self, first, second=None, unable_online=False):
        """Visa card verification results, 4 bytes with the length byte 03."""
        b2 = {AAC: 0x00, TC: 0x40, None: 0x80}[second] | {AAC: 0x00, TC: 0x10,
                                                          ARQC: 0x20}[first]
        if self.ext_auth is False:
            b2 |= 0x08
        if self.pin_verified or self.pin_failed:
            b2 |= 0x04
        if self.pin_failed and not self.pin_verified:
            b2 |= 0x02
        if unable_online:
            b2 |= 0x01
        b3 = ((0x80 if self.online_pending and second is None else 0) |
              (0x40 if self.pin_tries == 0 else 0) |
              (0x10 if self.last_online_atc == 0 else 0) |
              (0x08 if self.issuer_auth_failed_last else 0))
        b4 = 0x02 if self.dda_done else 0x00
        return bytes((0x03, b2, b3, b4))

    def _cryptogram(self, values, aip, iad):
        tags = {tag: values[tag] for tag in emv_issuer.AC_TAGS if tag in values}
        tags.update({"82": aip, "9F36": self.atc.to_bytes(2, "big"), "9F10": iad})
        return emv_issuer.compute_ac(self.icc_mk_ac, tags)

    def _ac_response(self, cid, ac, iad):
        atc = self.atc.to_bytes(2, "big")
        if self.p["gen_ac_format"] == 1:
            return tlv("80", bytes((cid,)) + atc + ac + iad)
        return tlv("77", tlv("9F27", bytes((cid,))) + tlv("9F36", atc) + tlv("9F26", ac) +
                   tlv("9F10", iad))


def _sw(sw):
    return bytes((sw >> 8, sw & 0xFF))


def _plain_pin(block):
    """The digits of an ISO 9564 format 2 (EMV plaintext offline) PIN block, or None."""
    if block[0] >> 4 != 0x2:
        return None
    n = block[0] & 0x0F
    nibbles = block[1:].hex().upper()
    if not 4 <= n <= 12 or not nibbles[:n].isdigit() or nibbles[n:] != "F" * (14 - n):
        return None
    return nibbles[:n]


# -- vpcd -------------------------------------------------------------------------

_VPCD_OFF, _VPCD_ON, _VPCD_RESET, _VPCD_ATR = 0x00, 0x01, 0x02, 0x04


class _Closed(Exception):
    pass


def _recv_exact(sock, n, stop_event, deadline):
    """n bytes from sock; _Closed when the peer closes; None on stop or the deadline."""
    buf = b""
    while len(buf) < n:
        if stop_event.is_set():
            return None
        timeout = 0.2
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            timeout = min(timeout, left)
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            continue
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _Closed()
        buf += chunk
    return buf


def _serve_connection(sock, card, stop_event, remove_after_ms, say):
    """One vpcd connection. Returns "removed", "stopped" or "closed" (pcscd went away)."""
    deadline = None
    while True:
        try:
            head = _recv_exact(sock, 2, stop_event, deadline)
            if head is None:
                return "stopped" if stop_event.is_set() else "removed"
            (size,) = struct.unpack(">H", head)
            msg = _recv_exact(sock, size, stop_event, deadline) if size else b""
            if msg is None:
                return "stopped" if stop_event.is_set() else "removed"
        except (_Closed, OSError):
            return "closed"
        if len(msg) == 1:
            code = msg[0]
            if code == _VPCD_OFF:
                card.power_off()
            elif code in (_VPCD_ON, _VPCD_RESET):
                card.power_on()
            elif code == _VPCD_ATR:
                _send(sock, card.atr)
            continue
        if remove_after_ms is not None and deadline is None:
            deadline = time.monotonic() + remove_after_ms / 1000.0
        try:
            response = card.transmit(msg)
        except CardRemoved:
            return "removed"
        say("> %s\n< %s" % (msg.hex().upper(), response.hex().upper()), verbose=True)
        try:
            _send(sock, response)
        except OSError:
            return "closed"


def _send(sock, data):
    sock.sendall(struct.pack(">H", len(data)) + data)


def run_vpcd_card(profile, host="127.0.0.1", port=VPCD_PORT, stop_event=None,
                  remove_after_ms=None, log=None, verbose=False, retry_s=0.5):
    """Serve a card to vpcd until stop_event is set (or, once pulled out, until then).

    profile: a profile name, a settings dict or a VirtualCard (whose memory then also
    shows the test what happened). remove_after_ms: leave the reader this long after
    the first APDU. When pcscd is not there yet, or restarts, the card keeps trying to
    connect every retry_s seconds. Returns the VirtualCard."""
    card = profile if isinstance(profile, VirtualCard) else VirtualCard(profile)
    stop_event = stop_event or threading.Event()

    def say(text, verbose=False, _all=verbose):
        if log is not None and (_all or not verbose):
            log("vcard %s: %s" % (card.name, text))
    waiting_said = False
    while not stop_event.is_set():
        try:
            sock = socket.create_connection((host, port), timeout=2)
        except OSError:
            if not waiting_said:
                say("waiting for the vpcd reader at %s:%d" % (host, port))
                waiting_said = True
            stop_event.wait(retry_s)
            continue
        waiting_said = False
        sock.settimeout(None)
        say("in the reader at %s:%d" % (host, port))
        try:
            outcome = _serve_connection(sock, card, stop_event, remove_after_ms, say)
        finally:
            sock.close()
        if outcome == "removed":
            card.remove()
            say("pulled out of the reader")
            stop_event.wait()
            break
        if outcome == "closed":
            say("the reader went away; reconnecting")
            card.power_off()
            stop_event.wait(retry_s)
    return card


# -- a pcscd of our own -------------------------------------------------------------

class PrivatePcscd:
    """pcscd with only the vpcd reader, on a private socket and private vpcd ports, so a
    test neither needs nor disturbs the system's pcscd.

    The socket is handed over by systemd-style socket activation (LISTEN_FDS), which
    Debian's pcscd supports; clients find it through PCSCLITE_CSOCK_NAME (see `env`).
    The reader's slot 0 listens on `port`, slot 1 on port + 1. Where the kernel allows
    (root, or an unprivileged user namespace), pcscd runs in a mount namespace with a
    private /run/pcscd, so it starts even beside a running system pcscd, which pcscd 1.9
    otherwise refuses. Without one it still runs (pcscd only logs that it cannot write
    /run/pcscd/pcscd.pid) as long as no other pcscd is running. The daemon dies with the
    process that started it.
    Debian's pcscd also watches USB: on a machine with a real reader and a system pcscd
    both daemons would see that reader (not the case in CI)."""

    def __init__(self, workdir, port=None, debug=False, pcscd="pcscd", auto_exit=True):
        self.workdir = os.path.abspath(workdir)
        self.port = port or _free_port_pair()
        self.debug = debug
        # --auto-exit: pcscd leaves 60 s after its last client; a daemon held for a
        # whole test session (tests/conftest.py) must not
        self.auto_exit = auto_exit
        self.pcscd = pcscd
        self.socket_path = os.path.join(self.workdir, "pcscd.comm")
        self.log_path = os.path.join(self.workdir, "pcscd.log")
        self.proc = None
        self.isolated = False           # in a mount namespace of its own
        self._listener = None
        self._pidfile = None

    @property
    def env(self):
        """The environment a PC/SC client process needs to reach this pcscd."""
        return dict(os.environ, PCSCLITE_CSOCK_NAME=self.socket_path)

    def start(self, timeout=10.0):
        if shutil.which(self.pcscd) is None:
            raise RuntimeError("pcscd is not installed (Debian: apt-get install pcscd "
                               "vsmartcard-vpcd)")
        if vpcd_driver() is None:
            raise RuntimeError("the vpcd driver is not installed (Debian: apt-get install "
                               "vsmartcard-vpcd)")
        conf = os.path.join(self.workdir, "reader.conf.d")
        os.makedirs(conf, exist_ok=True)
        with open(os.path.join(conf, "vpcd"), "w") as f:
            f.write('FRIENDLYNAME "Virtual PCD"\nDEVICENAME   /dev/null:0x%X\n'
                    "LIBPATH      %s\nCHANNELID    0x%X\n" % (self.port, vpcd_driver(),
                                                             self.port))
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self._pidfile = _read("/run/pcscd/pcscd.pid")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.socket_path)
        self._listener.listen(32)
        fd = self._listener.fileno()

        def child():
            os.dup2(fd, 3)                      # SD_LISTEN_FDS_START
            os.set_inheritable(3, True)
            _die_with_parent()
        # --info at least: "Started by systemd" in the log shows it took our socket.
        args = [self.pcscd, "--foreground"] + (["--auto-exit"] if self.auto_exit else []) + \
            ["--config", conf, "--debug" if self.debug else "--info"]
        log_from = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        env = dict(os.environ, LISTEN_FDS="1")
        env.pop("LISTEN_FDNAMES", None)
        # Not close_fds: Popen would close fd 3 after child() made it. Python's own
        # descriptors are close-on-exec anyway, so nothing else leaks into pcscd.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self._command(args), env=env, preexec_fn=child,
                                         close_fds=False, stdout=log,
                                         stderr=subprocess.STDOUT)
        # Ready once the vpcd driver listens on its port.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.proc.poll()
            if status is not None:
                last = (_read(self.log_path) or "").strip().splitlines()[-1:]
                self.stop()
                raise RuntimeError("pcscd exited with status %s (%s); see %s"
                                   % (status, " ".join(last), self.log_path))
            if _port_listening(self.port):
                with open(self.log_path, "rb") as f:
                    f.seek(log_from)
                    if b"Started by systemd" in f.read():
                        return self
                self.stop()
                raise RuntimeError("pcscd did not take the socket handed to it (systemd "
                                   "socket activation; a pcscd built without libsystemd "
                                   "cannot); see %s" % self.log_path)
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("pcscd did not open the vpcd port %d in %.0f s; see %s"
                           % (self.port, timeout, self.log_path))

    def _command(self, args):
        """pcscd's command line. LISTEN_PID must be pcscd's own pid: a shell sets it and
        execs pcscd in its place. pcscd 1.9 refuses to start while another pcscd runs,
        socket activation or not; where the kernel lets us it therefore gets a private
        mount namespace with its own /run/pcscd, and leaves the system's alone."""
        script = 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"'
        unshare = _unshare_command()
        if unshare is None:
            self.isolated = False
            return ["/bin/sh", "-c", script, "pcscd"] + args
        self.isolated = True
        run_dir = os.path.join(self.workdir, "run")
        os.makedirs(run_dir, exist_ok=True)
        if os.geteuid() == 0:
            os.makedirs("/run/pcscd", exist_ok=True)
        script = 'mount --bind "$0" /run/pcscd || exit 97; ' + script
        return unshare + ["/bin/sh", "-c", script, run_dir] + args

    def stop(self, timeout=5.0):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        if (not self.isolated and self._pidfile is not None and
                _read("/run/pcscd/pcscd.pid") is None):
            try:
                with open("/run/pcscd/pcscd.pid", "w") as f:
                    f.write(self._pidfile)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


_UNSHARE = []


def _unshare_command():
    """The unshare(1) prefix that gives pcscd a mount namespace of its own, or None.

    Root: a plain mount namespace (needs CAP_SYS_ADMIN; not in a default Docker
    container). Anyone else: a user namespace mapping us to root, where the kernel
    allows it, and only when /run/pcscd exists (without it no other pcscd can be in the
    way, and a user namespace could not create it). Asked once."""
    if not _UNSHARE:
        found = None
        if shutil.which("unshare") and shutil.which("mount"):
            base = ["unshare", "--mount", "--propagation", "private"]
            if os.geteuid() != 0:
                base[1:1] = ["--user", "--map-root-user"]
            if os.geteuid() == 0 or os.path.isdir("/run/pcscd"):
                try:
                    if subprocess.run(base + ["true"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, timeout=10).returncode == 0:
                        found = base
                except (OSError, subprocess.TimeoutExpired):
                    found = None
        _UNSHARE.append(found)
    return _UNSHARE[0]


def vpcd_driver():
    for path in ("/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
                 "/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so",
                 "/usr/lib64/pcsc/drivers/serial/libifdvpcd.so"):
        if os.path.exists(path):
            return path
    return None


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _port_listening(port):
    """Whether something listens on TCP port (from /proc: connecting to vpcd's port to
    find out would look to vpcd like a card being inserted)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return False


def _free_port_pair():
    """A port p with p and p + 1 free (vpcd's two slots)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no two free neighbouring TCP ports on 127.0.0.1")


def _die_with_parent():
    """In a forked child: receive SIGTERM when the parent goes (Linux prctl)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)      # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# -- command line ---------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tools.cards.vcard",
        description="Serve a virtual EMV card to pcscd's vpcd reader until killed.")
    parser.add_argument("--profile", default="online_pin", help="card profile (see --list)")
    parser.add_argument("--vpcd-host", default="127.0.0.1")
    parser.add_argument("--vpcd-port", type=lambda s: int(s, 0), default=VPCD_PORT,
                        help="the vpcd reader slot's port (default %(default)s)")
    parser.add_argument("--remove-after-ms", type=int, default=None, metavar="N",
                        help="pull the card out N ms after its first APDU")
    parser.add_argument("--list", action="store_true", help="list the profiles and exit")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every APDU")
    args = parser.parse_args(argv)
    if args.list:
        for name, p in PROFILES.items():
            print("%-13s %s  PAN %s  %s" % (name, p["aid"], p["pan"], p["description"]))
        return 0
    if args.profile not in PROFILES:
        parser.error("no profile %r; try --list" % args.profile)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def log(line):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    run_vpcd_card(args.profile, args.vpcd_host, args.vpcd_port, stop,
                  remove_after_ms=args.remove_after_ms, log=log, verbose=args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
