"""firmware.cards.emv.kernel on both Pythons: whole transactions against a small card model.

The card model below answers the way an EMV card does (SELECT, GPO, READ RECORD, GET
DATA, VERIFY, INTERNAL AUTHENTICATE, GENERATE AC, EXTERNAL AUTHENTICATE, and a qVSDC
style contactless GPO), with certificates made here from three small test RSA keys so
SDA, DDA and fDDA run under MicroPython too. Its cryptograms are not real (a hash of
the CDOL data); tests/test_emv_kernel.py runs against tools/cards/vcard.py on CPython, with
real cryptograms and the host's checks.

The keys below are test keys made for this file only; their private halves are here.
"""
import binascii
import hashlib
import time

from firmware.cards.emv import kernel as K
from firmware.cards.emv import tlv
from firmware.cards.emv.kernel import Kernel

CA_N = int(
    "E37A5FC7FE63F026F754BD94FD2B03DDCFD491D769FF8A086922903F5901A6F81BE6024C"
    "97D3838B9DF6EED87042FCFE19B49A89A9F777EC1685B76794539BEEC2DBD8D39F33D544"
    "1CA35196F6DFF60216C622BAAC8983A7CFD09C217DE837BC01314AFDCE92C14B8712F36D"
    "079F0A6B19979D87CB968558E8CD2A26413D9277", 16)
CA_D = int(
    "97A6EA855442A019FA387E6353720293DFE30BE4F15506B046170AD4E60119FABD440188"
    "6537AD07BEA49F3AF581FDFEBBCDBC5BC6A4FA9D645924EFB837BD48954E8F394442033C"
    "1BB8EC1E48F88CD75F74B4E0EE6E6091C992D12BFF80B057BEBE9A69FFCF4D5AF95E5D71"
    "9A43DC4D205C18973287CD21ED687501716185EB", 16)
ISSUER_N = int(
    "A03D9F3343DE3E6694F837C62386689D6CF61EFD4FD2387110A9C7512992ECFAF25DD8E2"
    "186DA2CC378085A06CB059D04AE0B813C2A10CB490D3B9922B11F71954525DA93EE3D076"
    "A80F8CEBA8C2DB287B987F37AD00CF7E2B7DC7DD8B327741C6F8C88A5A89A32D8CCE8FF0"
    "D113E1239F6C98952F6881C2FE247C3807A0B2F7", 16)
ISSUER_D = int(
    "6AD3BF7782942999B8A57A8417AEF068F34EBF538A8C25A0B5C684E0C661F351F6E93B41"
    "659E6C88250059159DCAE68ADC95D00D2C6B5DCDB5E27BB6C7614F652A0D98CD6FDC82AC"
    "13EF50EAB744D0882DEEACA766E0BE63CC90AB7447A42B612B1E4F1BFCF5B2BA5672BC85"
    "CAC395898F87D657FCFE68C9F9AAD2B159B2443B", 16)
ICC_N = int(
    "ABA6EC6553C04FD2D744C84903E27423FFC6F5CCC32049D09A20D06A763568BD531FCDEA"
    "82E83EEC24ED0C18FAEB4BEACAA38ACD3FA17DD1BC4DA174C5D501BBF1A6188E6C847A8F"
    "1D46D3265A18F71DB9D19300978B22D3D49783D048FC53AB", 16)
ICC_D = int(
    "9198BBE952B9CBBB7636F47FE258A1D4AB2EF2ED25116D2B10A106C756CF04B19A215F03"
    "2CD89C0EA75F9E244E2969313168C407C9179B849845542F417D238F85CD5FFC14F54305"
    "F112F13DC52EC8A80EB9CB156790B7DC26B83DF6CDA573F1", 16)
CA_E = 3
ISSUER_E = 3
ICC_E = 65537
RID = "A000000003"
CA_INDEX = 0x99
VISA = "A0000000031010"
VISA_DEBIT = "A0000000032010"
TODAY = "250615"


def h(text):
    return binascii.unhexlify(text.replace(" ", ""))


def hx(data):
    return binascii.hexlify(data).decode().upper()


def n_bytes(n):
    return K.int_bytes(n)


def sign(payload, n, d):
    """The issuer's side of Book 2: 6A | payload | SHA-1(payload | extra) | BC, signed."""
    return pow(int.from_bytes(payload, "big"), d, n).to_bytes(len(n_bytes(n)), "big")


def frame(body, hash_input_tail, n):
    size = len(n_bytes(n))
    return b"\x6a" + body + K.sha1(body + hash_input_tail) + b"\xbc", size


_CERTS = {}


def issuer_cert(pan):
    if pan in _CERTS:
        return _CERTS[pan]
    nca = len(n_bytes(CA_N))
    ni = len(n_bytes(ISSUER_N))
    key = n_bytes(ISSUER_N)
    room = nca - 36
    issuer_id = h((pan[:6] + "FF"))
    body = (b"\x02" + issuer_id + h("1239") + h("000001") + b"\x01\x01" +
            bytes((ni, 1)) + key[:room])
    remainder = key[room:]
    data, size = frame(body, remainder + b"\x03", CA_N)
    assert len(data) == size
    out = (sign(data, CA_N, CA_D), remainder)
    _CERTS[pan] = out
    return out


def icc_cert(pan, static_data):
    cache = (pan, static_data)
    if cache in _CERTS:
        return _CERTS[cache]
    ni = len(n_bytes(ISSUER_N))
    key = n_bytes(ICC_N)
    room = ni - 42
    pan_field = h(pan + "F" * (20 - len(pan)))
    exponent = h("010001")
    body = (b"\x04" + pan_field + h("1239") + h("000002") + b"\x01\x01" +
            bytes((len(key), 3)) + key[:room])
    remainder = key[room:]
    data, size = frame(body, remainder + exponent + static_data, ISSUER_N)
    assert len(data) == size
    out = (sign(data, ISSUER_N, ISSUER_D), remainder)
    _CERTS[cache] = out
    return out


def signed_static(static_data):
    ni = len(n_bytes(ISSUER_N))
    body = b"\x03\x01" + h("DAC0") + b"\xbb" * (ni - 26)
    data, _ = frame(body, static_data, ISSUER_N)
    return sign(data, ISSUER_N, ISSUER_D)


def signed_dynamic(dynamic_number, terminal_data):
    nic = len(n_bytes(ICC_N))
    dyn = bytes((len(dynamic_number),)) + dynamic_number
    body = b"\x05\x01" + bytes((len(dyn),)) + dyn + b"\xbb" * (nic - len(dyn) - 25)
    data, _ = frame(body, terminal_data, ICC_N)
    return sign(data, ICC_N, ICC_D)


def sw(value):
    return bytes((value >> 8, value & 0xFF))


E = tlv.encode


class ModelCard:
    """A card to test the kernel with. Options (keywords) change its personalisation
    and behaviour; `drop` removes tags from its records, `mutate(n, data)` can change
    the n-th answer (for the fuzz test)."""

    def __init__(self, **opts):
        self.o = {
            "pan": "4761739001010010", "psn": "01", "expiry": "301231", "effective": "200101",
            "apps": [(VISA, "VISA CREDIT", 1)], "pse": True, "pdol": "9F1A02",
            "cvm_list": "00000000 00000000 4203 1E03 1F03", "oda": None, "offline": False,
            "always_aac": False, "pin": "1234", "tries": 3, "iac_denial": "0000000000",
            "iac_online": "0000000000", "iac_default": "0000000000", "aip_extra": 0x08,
            "issuer_auth": True, "format": 2, "drop": (), "velocity": False,
            "contactless": False, "cl_offline": False, "ctq": None, "version": "0096",
            "select_sw": None, "gpo_sw": None, "second_aac": False,
            "cdol1": "9F02069F03069F1A0295055F2A029A039C019F37049F3403",
        }
        self.o.update(opts)
        self.tries = self.o["tries"]
        self.count = 0
        self.stage = "idle"
        self.mutate = None
        self.log = []
        self._personalise()

    def _personalise(self):
        o = self.o
        aip1 = 0x10 | o["aip_extra"] | (0x04 if o["issuer_auth"] else 0)
        aip1 |= {None: 0, "sda": 0x40, "dda": 0x20}[o["oda"]]
        self.aip = bytes((aip1, 0x00))
        pan = o["pan"]
        pan_cn = h(pan + "F" * (len(pan) & 1))
        t2 = pan + "D" + o["expiry"][:4] + "2010000000000"
        t2 += "F" * (len(t2) & 1)
        self.track2 = h(t2)
        rec1 = [(0x5A, pan_cn), (0x5F24, h(o["expiry"])), (0x5F25, h(o["effective"])),
                (0x5F28, h("0840")), (0x5F34, h(o["psn"])), (0x9F07, h("FF00")),
                (0x8E, h(o["cvm_list"])), (0x9F0D, h(o["iac_default"])),
                (0x9F0E, h(o["iac_denial"])), (0x9F0F, h(o["iac_online"])),
                (0x8C, h(o["cdol1"])),
                (0x8D, h("8A029F02069F1A0295055F2A029A039C019F3704")),
                (0x9F08, h(o["version"])), (0x9F42, h("0840"))]
        if o["velocity"]:
            rec1 += [(0x9F14, b"\x02"), (0x9F23, b"\x05")]
        if o["oda"]:
            rec1.append((0x9F4A, b"\x82"))
        rec1 = [(t, v) for t, v in rec1 if t not in o["drop"]]
        rec1_value = tlv.encode_all(rec1)
        self.records = {(1, 1): E(0x70, rec1_value),
                        (1, 2): E(0x70, [(0x57, self.track2), (0x5F20, b"TEST/CARD")])}
        self.afl = h("08010201")
        static = rec1_value + self.aip
        cl_rec = [(0x5A, pan_cn), (0x5F24, h(o["expiry"])), (0x5F34, h(o["psn"]))]
        if o["cl_offline"]:
            cl_rec.append((0x9F4A, b"\x82"))
        self.cl_rec_value = tlv.encode_all(cl_rec)
        self.records[(3, 1)] = E(0x70, self.cl_rec_value)
        self.cl_aip = b"\x20\x00" if o["cl_offline"] else b"\x00\x00"
        if o["oda"] or o["cl_offline"]:
            cert, rem = issuer_cert(pan)
            recs = [(0x8F, bytes((CA_INDEX,))), (0x90, cert), (0x92, rem), (0x9F32, b"\x03")]
            self.records[(2, 1)] = E(0x70, [(t, v) for t, v in recs if t not in o["drop"]])
            if o["oda"] == "sda":
                second = [(0x93, signed_static(static))]
            else:
                icc_static = static if not o["cl_offline"] else self.cl_rec_value + self.cl_aip
                cert, rem = icc_cert(pan, icc_static)
                second = [(0x9F46, cert), (0x9F47, h("010001")), (0x9F48, rem),
                          (0x9F49, h("9F3704"))]
            self.records[(2, 2)] = E(0x70, [(t, v) for t, v in second if t not in o["drop"]])
            self.afl += h("10010200")

    # -- the APDU interface --

    def transmit(self, apdu):
        apdu = bytes(apdu)
        self.count += 1
        out = self._answer(apdu)
        if self.mutate is not None:
            out = self.mutate(self.count, out)
        self.log.append((apdu, out))
        return out

    def _answer(self, apdu):
        ins = apdu[1]
        data = apdu[5:5 + apdu[4]] if len(apdu) > 5 else b""
        o = self.o
        if ins == 0xA4:
            return self._select(data, apdu[3])
        if ins == 0xB2:
            sfi, rec = apdu[3] >> 3, apdu[2]
            if self.stage == "pse":
                if sfi == 1 and rec == 1:
                    entries = b""
                    for aid, label, prio in o["apps"]:
                        entries += E(0x61, [(0x4F, h(aid)), (0x50, label.encode()),
                                            (0x87, bytes((prio,)))])
                    return E(0x70, entries) + sw(0x9000)
                return sw(0x6A83)
            if (sfi, rec) in self.records:
                return self.records[(sfi, rec)] + sw(0x9000)
            return sw(0x6A83)
        if ins == 0xA8:
            if o["gpo_sw"]:
                return sw(o["gpo_sw"])
            self.stage = "gpo"
            if o["contactless"]:
                return self._qvsdc(data[2:])
            return E(0x77, [(0x82, self.aip), (0x94, self.afl)]) + sw(0x9000)
        if ins == 0xCA:
            tag = (apdu[2] << 8) | apdu[3]
            value = {0x9F17: bytes((self.tries,)), 0x9F36: h("0010"), 0x9F13: h("000A")}.get(tag)
            if value is None:
                return sw(0x6A88)
            return E(tag, value) + sw(0x9000)
        if ins == 0x20:
            if self.tries == 0:
                return sw(0x6983)
            digits = hx(data[1:])[:data[0] & 0x0F]
            if digits == o["pin"]:
                self.tries = o["tries"]
                return sw(0x9000)
            self.tries -= 1
            return sw(0x63C0 | self.tries)
        if ins == 0x88:
            self.dyn = h("1122334455667788")
            return E(0x77, [(0x9F4B, signed_dynamic(self.dyn, data))]) + sw(0x9000)
        if ins == 0xAE:
            return self._generate_ac(apdu[2] & 0xC0, data)
        if ins == 0x82:
            return sw(0x9000 if data[:8] == b"\x11" * 8 else 0x6300)
        if apdu[0] == 0x84:                      # issuer script commands (secure messaging)
            return sw(0x6A80 if ins == 0xFF else 0x9000)
        return sw(0x6D00)

    def _select(self, name, p2):
        o = self.o
        if name == K.PSE and o["pse"] and not o["contactless"]:
            self.stage = "pse"
            return E(0x6F, [(0x84, name), (0xA5, [(0x88, b"\x01")])]) + sw(0x9000)
        if name == K.PPSE and o["contactless"]:
            entries = b""
            for aid, label, prio in o["apps"]:
                entries += E(0x61, [(0x4F, h(aid)), (0x50, label.encode()), (0x87, bytes((prio,)))])
            return E(0x6F, [(0x84, name), (0xA5, [(0xBF0C, entries)])]) + sw(0x9000)
        for aid, label, prio in o["apps"]:
            if h(aid)[:len(name)] == name and len(name) >= 5 and p2 == 0:
                self.stage = "selected"
                a5 = [(0x50, label.encode()), (0x87, bytes((prio,)))]
                pdol = "9F66049F02069F03069F1A0295055F2A029A039C019F3704" \
                    if o["contactless"] else o["pdol"]
                if pdol:
                    a5.append((0x9F38, h(pdol)))
                return E(0x6F, [(0x84, h(aid)), (0xA5, a5)]) + sw(o["select_sw"] or 0x9000)
        return sw(0x6A82)

    def _qvsdc(self, pdol_data):
        o = self.o
        ttq = pdol_data[:4]
        self.cl_pdol = pdol_data
        cid = 0x00 if o["always_aac"] else 0x80
        if o["cl_offline"] and not ttq[1] & 0x80:
            cid = 0x40
        ctq = o["ctq"]
        if ctq is None:
            ctq = "0000"
            if ttq[1] & 0x40 and ttq[0] & 0x04 and cid == 0x80:
                ctq = "8000"
        objs = [(0x82, self.cl_aip), (0x94, h("18010101")), (0x57, self.track2),
                (0x5F34, h(o["psn"])), (0x9F10, h("06010A03A00000")),
                (0x9F26, hashlib.sha256(pdol_data).digest()[:8]), (0x9F27, bytes((cid,))),
                (0x9F36, h("0011")), (0x9F6C, h(ctq))]
        if cid == 0x40 and o["cl_offline"]:
            un = pdol_data[29:33]
            amount = pdol_data[4:10]
            currency = pdol_data[23:25]
            self.dyn = h("A1A2A3A4")
            objs += [(0x9F69, h("01A1B2C3D4")),
                     (0x9F4B, signed_dynamic(self.dyn, un + amount + currency + h("01A1B2C3D4")))]
        if o["cl_offline"]:
            self.afl_cl = h("18010101 10010200")
            objs[1] = (0x94, self.afl_cl)
        return E(0x77, [(t, v) for t, v in objs if t not in o["drop"]]) + sw(0x9000)

    def _generate_ac(self, asked, data):
        o = self.o
        if self.stage == "gpo":
            if o["always_aac"] or asked == 0x00:
                cid = 0x00
            elif asked == 0x40 and o["offline"]:
                cid = 0x40
            else:
                cid = 0x80
            self.stage = "arqc" if cid == 0x80 else "done"
        elif self.stage == "arqc":
            arc = data[:2]
            cid = 0x40 if asked == 0x40 and arc in (b"00", b"Y3") and not o["second_aac"] else 0x00
            self.stage = "done"
        else:
            return sw(0x6985)
        ac = hashlib.sha256(data).digest()[:8]
        iad = h("06010A03A00000")
        if o["format"] == 1:
            return E(0x80, bytes((cid,)) + h("0011") + ac + iad) + sw(0x9000)
        return E(0x77, [(0x9F27, bytes((cid,))), (0x9F36, h("0011")), (0x9F26, ac),
                        (0x9F10, iad)]) + sw(0x9000)


def config(**extra):
    cfg = {
        "aids": [{"aid": VISA, "version": "0096", "tac_denial": "0010000000",
                  "tac_online": "DC4004F800", "tac_default": "DC4000A800",
                  "floor_limit": 5000},
                 {"aid": VISA_DEBIT, "version": "0096", "floor_limit": 5000}],
        "terminal_capabilities": "E0F8C8", "terminal_type": "22",
        "country": "0840", "currency": "0840",
        "ca_keys": [{"rid": RID, "index": CA_INDEX, "modulus": CA_N, "exponent": CA_E}],
        "contactless": {"transaction_limit": 100000, "floor_limit": 2000, "cvm_limit": 5000},
    }
    cfg.update(extra)
    return cfg


def counter_bytes():
    state = [0]

    def source(n):
        state[0] += 1
        return bytes(((state[0] * 37 + i * 11) & 0xFF for i in range(n)))
    return source


def txn(amount=1000, **extra):
    out = {"amount": amount, "date": TODAY, "unpredictable": counter_bytes()}
    out.update(extra)
    return out


class Run:
    """Drives one transaction; keeps every step and the TVR/TSI after it."""

    def __init__(self, card, cfg=None, t=None, pins=("1234",), arc="00", iad=None,
                 scripts=None, choose=0, remove_at=None):
        self.kernel = Kernel(cfg or config(), t or txn())
        self.steps = []
        pins = list(pins)
        step = self.kernel.start()
        while True:
            self.steps.append((self.kernel.state, step, self.kernel.tvr, self.kernel.tsi))
            if "done" in step:
                break
            if "send" in step:
                if remove_at is not None and card.count >= remove_at:
                    step = self.kernel.on_response(None)
                else:
                    step = self.kernel.on_response(card.transmit(step["send"]))
            elif "ask_pin" in step:
                step = self.kernel.on_pin(pins.pop(0) if pins else None)
            elif "choose_app" in step:
                step = self.kernel.on_cardholder_choice(choose)
            elif "go_online" in step:
                self.online = step
                data = iad if iad is not None else (b"\x11" * 8 + (arc or "00").encode())
                step = self.kernel.on_online_result(arc, data if arc else None, scripts)
        self.outcome = step["done"]

    def state_of(self, kind):
        for state, step, tvr, tsi in self.steps:
            if kind in step:
                return state, step, tvr, tsi
        return None


def bit(hex_text, flag):
    return bool(h(hex_text)[flag[0]] & flag[1])


# -- SHA-1 and RSA ---------------------------------------------------------------------

def test_sha1_known_answers():
    for impl in (K.sha1_portable, K.sha1):
        assert hx(impl(b"")) == "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709"
        assert hx(impl(b"abc")) == "A9993E364706816ABA3E25717850C26C9CD0D89D"
        assert hx(impl(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) == \
            "84983E441C3BD26EBAAE4AA1F95129E5E54670F1"
    for n in (55, 56, 63, 64, 65, 300):
        data = bytes(range(256))[:n % 256] * (1 + n // 256)
        assert K.sha1_portable(data) == K.sha1(data)


def _us():
    if hasattr(time, "ticks_us"):
        return time.ticks_us()
    return time.monotonic_ns() // 1000


def test_rsa_recover_round_trip_and_time():
    modulus = n_bytes(CA_N)
    message = b"\x6a" + bytes(range(len(modulus) - 2)) + b"\xbc"
    signature = sign(message, CA_N, CA_D)
    start = _us()
    for _ in range(10):
        assert K.rsa_recover(signature, modulus, 3) == message
    per = (_us() - start) / 10000
    icc = n_bytes(ICC_N)
    message = b"\x6a" + bytes(len(icc) - 2) + b"\xbc"
    signature = sign(message, ICC_N, ICC_D)
    start = _us()
    for _ in range(10):
        assert K.rsa_recover(signature, icc, 65537) == message
    per65537 = (_us() - start) / 10000
    print("RSA recovery: 1024-bit e=3 %.2f ms, 768-bit e=65537 %.2f ms" % (per, per65537))
    try:
        K.rsa_recover(signature[1:], icc, 65537)
        assert False
    except K.OdaError:
        pass


# -- contact: online -------------------------------------------------------------------

def test_online_pin_online_approval_with_tvr_tsi_at_each_step():
    card = ModelCard()
    run = Run(card)
    out = run.outcome
    state, step, tvr, tsi = run.state_of("ask_pin")
    assert step["ask_pin"] == "online" and state == "pin"
    assert bit(hx(tvr), K.TVR_ODA_NOT_PERFORMED)           # no SDA/DDA on this card
    assert not bit(hx(tvr), K.TVR_ONLINE_PIN_ENTERED)
    assert tsi == b"\x00\x00"
    state, step, tvr, tsi = run.state_of("go_online")
    assert bit(hx(tvr), K.TVR_ONLINE_PIN_ENTERED)
    for flag in (K.TSI_CVM_PERFORMED, K.TSI_TERMINAL_RISK_MANAGEMENT, K.TSI_CARD_RISK_MANAGEMENT):
        assert bit(hx(tsi), flag)
    assert not bit(hx(tsi), K.TSI_ISSUER_AUTH_PERFORMED)
    de55 = step["go_online"]
    for tag in ("9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82",
                "9F1A", "9F03", "9F33", "9F34", "9F35", "84", "9F09"):
        assert tag in de55, tag
    assert de55["9F27"] == b"\x80" and de55["9A"] == h(TODAY) and de55["95"] == tvr
    assert de55["9F34"] == h("420300")
    assert step["card"]["pan"] == "4761739001010010"
    assert step["card"]["track2"].startswith("4761739001010010=3012201")
    assert step["card"]["pan_seq"] == "01" and step["tap_complete"] is False
    assert out["result"] == "approved" and out["approved"] and out["online"]
    assert out["cryptogram"] == "TC" and out["arc"] == "00" and out["reason"] is None
    assert out["cvm"] == "online_pin" and not out["signature"]
    assert out["pan_masked"] == "476173******0010" and out["last4"] == "0010"
    assert out["expiry"] == "3012" and out["aid"] == VISA and out["label"] == "VISA CREDIT"
    assert out["card"] is None and not out["reversal"]
    assert bit(out["tsi"], K.TSI_ISSUER_AUTH_PERFORMED)
    assert not bit(out["tvr"], K.TVR_ISSUER_AUTH_FAILED)
    assert out["emv"]["8A"] == b"00"
    # the commands the card saw, in order
    ins = [apdu[1] for apdu, _ in card.log]
    assert ins == [0xA4, 0xB2, 0xB2, 0xA4, 0xA8, 0xB2, 0xB2, 0xAE, 0x82, 0xAE]


def test_issuer_scripts_before_and_after_the_final_cryptogram():
    scripts = (E(0x71, [(0x9F18, h("00000001")), (0x86, h("8424000008 0000000000000000"))]) +
               E(0x72, [(0x9F18, h("00000002")), (0x86, h("841E000000")),
                        (0x86, h("84FF000000"))]))
    card = ModelCard()
    run = Run(card, scripts=scripts)
    out = run.outcome
    assert out["approved"]
    assert [a[1] for a, _ in card.log][-5:] == [0x82, 0x24, 0xAE, 0x1E, 0xFF]
    assert bit(out["tsi"], K.TSI_SCRIPT_PROCESSING)
    assert bit(out["tvr"], K.TVR_SCRIPT_FAILED_AFTER)
    assert not bit(out["tvr"], K.TVR_SCRIPT_FAILED_BEFORE)
    assert out["script_results"] == "20000000011200000002"
    assert out["emv"]["9F5B"] == h("20000000011200000002")
    # a script that is not even TLV counts as failed and changes nothing else
    out = Run(ModelCard(), scripts=h("71 05 9F18")).outcome
    assert out["approved"] and bit(out["tvr"], K.TVR_SCRIPT_FAILED_AFTER)


def test_wrong_issuer_authentication_sets_the_tvr():
    run = Run(ModelCard(), iad=b"\x22" * 8 + b"00")
    assert bit(run.outcome["tvr"], K.TVR_ISSUER_AUTH_FAILED)
    assert bit(run.outcome["tsi"], K.TSI_ISSUER_AUTH_PERFORMED)


def test_host_decline_asks_the_card_for_an_aac():
    card = ModelCard()
    run = Run(card, arc="05")
    out = run.outcome
    assert out["result"] == "declined" and out["reason"] == K.HOST_DECLINED
    assert out["cryptogram"] == "AAC" and out["online"] and not out["reversal"]
    assert card.log[-1][0][2] == 0x00                          # second GENERATE AC P1: AAC


def test_card_declining_after_host_approval_needs_a_reversal():
    out = Run(ModelCard(second_aac=True)).outcome
    assert out["result"] == "declined" and out["reason"] == K.DECLINED_BY_CARD
    assert out["reversal"] is True


def test_unable_to_go_online_default_action_codes_decide():
    out = Run(ModelCard(), arc=None).outcome           # TAC-default has ODA not performed
    assert out["result"] == "declined" and out["reason"] == K.UNABLE_ONLINE
    assert out["arc"] == "Z3" and out["emv"]["8A"] == b"Z3" and not out["online"]
    cfg = config()
    cfg["aids"][0]["tac_default"] = "0000000000"
    out = Run(ModelCard(), cfg=cfg, arc=None).outcome
    assert out["approved"] and out["arc"] == "Y3" and out["cryptogram"] == "TC"
    assert out["card"]["track2"].startswith("4761739001010010=")   # for the advice


def test_tc_hash_value_with_the_default_tdol():
    card = ModelCard(cdol1="9F02069F03069F1A0295055F2A029A039C019F37049814")
    out = Run(card, cfg=config(tdol="9F02065F2A02")).outcome
    assert bit(out["tvr"], K.TVR_DEFAULT_TDOL_USED)
    first_ac = [a for a, _ in card.log if a[1] == 0xAE][0]
    assert first_ac[5 + 29:5 + 49] == K.sha1(h("000000001000 0840"))
    out = Run(ModelCard(cdol1="9F02069814")).outcome         # no TDOL at all: zeros
    assert not bit(out["tvr"], K.TVR_DEFAULT_TDOL_USED)


def test_no_synchronised_clock_never_approves_offline():
    card = ModelCard(oda="dda", offline=True, cvm_list="00000000 00000000 1F00")
    run = Run(card, t=txn(date=None))
    assert run.state_of("go_online") is not None
    assert run.state_of("go_online")[1]["go_online"]["9A"] == b"\x00\x00\x00"


# -- contact: offline ------------------------------------------------------------------

def test_offline_pin_with_a_retry_and_dda_offline_approval():
    card = ModelCard(oda="dda", offline=True, cvm_list="00000000 00000000 4103 4203 1E03 1F03")
    run = Run(card, pins=("9999", "1234"))
    asks = [s for _, s, _, _ in run.steps if "ask_pin" in s]
    assert asks[0] == {"ask_pin": "offline", "tries_left": 3, "retry": False}
    assert asks[1] == {"ask_pin": "offline", "tries_left": 2, "retry": True}
    out = run.outcome
    assert out["result"] == "approved" and not out["online"] and out["cryptogram"] == "TC"
    assert out["arc"] == "Y1" and out["cvm"] == "offline_pin"
    assert out["tvr"] == "0000000000", out["tvr"]
    assert h(out["tsi"])[0] == 0x80 | 0x40 | 0x20 | 0x08
    assert out["emv"]["9F34"] == h("410302")
    assert out["card"]["track2"].startswith("4761739001010010=3012")
    assert run.kernel.card[0x9F4C] == h("1122334455667788")
    verify = [apdu for apdu, _ in card.log if apdu[1] == 0x20]
    assert len(verify) == 2
    assert bytes(verify[1][5:]) == h("241234FFFFFFFFFF")


def test_verify_apdu_is_zeroed_after_use():
    sent = []
    card = ModelCard(cvm_list="00000000 00000000 0100")

    class Spy:
        count = 0

        def transmit(self, apdu):
            if apdu[1] == 0x20:
                sent.append(apdu)
            return card.transmit(apdu)
    Run(Spy())
    assert sent and all(b == 0 for b in sent[0])


def test_sda_offline_approval_with_signature():
    card = ModelCard(oda="sda", offline=True, cvm_list="00000000 00000000 1E00")
    out = Run(card).outcome
    assert out["approved"] and not out["online"]
    assert out["cvm"] == "signature" and out["signature"] is True
    assert bit(out["tvr"], K.TVR_SDA_SELECTED) and not bit(out["tvr"], K.TVR_SDA_FAILED)
    assert bit(out["tsi"], K.TSI_ODA_PERFORMED)
    assert out["emv"]["9F34"] == h("1E0000")


def test_sda_over_altered_records_fails_and_goes_online():
    card = ModelCard(oda="sda", offline=True, cvm_list="00000000 00000000 1F00")
    rec = card.records[(1, 1)]
    at = rec.find(h("5F2503"))
    card.records[(1, 1)] = rec[:at + 3] + h("210101") + rec[at + 6:]
    run = Run(card)
    tvr = run.state_of("go_online")[2]
    assert bit(hx(tvr), K.TVR_SDA_FAILED) and bit(hx(tvr), K.TVR_SDA_SELECTED)
    assert run.outcome["approved"] and run.outcome["online"]


def test_dda_without_the_ca_key_fails():
    card = ModelCard(oda="dda", offline=True, cvm_list="00000000 00000000 1F00")
    run = Run(card, cfg=config(ca_keys=[]))
    assert bit(run.outcome["tvr"], K.TVR_DDA_FAILED)
    assert bit(run.outcome["tsi"], K.TSI_ODA_PERFORMED)
    assert run.outcome["online"]


def test_dda_with_missing_certificate_sets_icc_data_missing():
    card = ModelCard(oda="dda", offline=True, cvm_list="00000000 00000000 1F00", drop=(0x9F46,))
    out = Run(card).outcome
    assert bit(out["tvr"], K.TVR_DDA_FAILED) and bit(out["tvr"], K.TVR_ICC_DATA_MISSING)


# -- application selection -------------------------------------------------------------

def test_cardholder_chooses_among_applications_in_priority_order():
    card = ModelCard(apps=[(VISA, "VISA CREDIT", 2), (VISA_DEBIT, "VISA DEBIT", 1)])
    run = Run(card, choose=1)
    step = run.state_of("choose_app")[1]
    assert step["choose_app"] == ["VISA DEBIT", "VISA CREDIT"] and step["retry"] is False
    assert run.outcome["aid"] == VISA and run.outcome["approved"]


def test_cancelled_choice_ends_the_transaction():
    card = ModelCard(apps=[(VISA, "VISA CREDIT", 2), (VISA_DEBIT, "VISA DEBIT", 1)])
    out = Run(card, choose=None).outcome
    assert out["result"] == "failed" and out["reason"] == K.CANCELLED


def test_list_of_aids_when_there_is_no_pse():
    card = ModelCard(pse=False)
    out = Run(card).outcome
    assert out["approved"] and out["aid"] == VISA
    assert card.log[0][1] == sw(0x6A82)


def test_blocked_application():
    out = Run(ModelCard(select_sw=0x6283)).outcome
    assert out["result"] == "failed" and out["reason"] == K.APP_BLOCKED


def test_no_matching_application():
    out = Run(ModelCard(apps=[("A0000000999090", "OTHER", 1)])).outcome
    assert out["reason"] == K.NO_APP


# -- processing restrictions, risk management --------------------------------------------

def test_expired_card_is_declined_by_the_issuer_action_code():
    run = Run(ModelCard(expiry="240131", iac_denial="0040000000"))
    out = run.outcome
    assert bit(out["tvr"], K.TVR_EXPIRED)
    assert out["result"] == "declined" and out["reason"] == K.DECLINED_BY_CARD
    assert out["cryptogram"] == "AAC" and run.state_of("go_online") is None


def test_not_yet_effective_and_version():
    out = Run(ModelCard(effective="260101", version="0002")).outcome
    assert bit(out["tvr"], K.TVR_NOT_YET_EFFECTIVE) and bit(out["tvr"], K.TVR_VERSION_DIFFERS)


def test_floor_limit_random_selection_velocity_and_forced_online():
    out = Run(ModelCard(), t=txn(6000)).outcome
    assert bit(out["tvr"], K.TVR_FLOOR_LIMIT_EXCEEDED)
    out = Run(ModelCard(), cfg=config(target_percent=99, max_target_percent=99)).outcome
    assert bit(out["tvr"], K.TVR_RANDOM_SELECTED) and not bit(out["tvr"], K.TVR_FLOOR_LIMIT_EXCEEDED)
    out = Run(ModelCard(velocity=True)).outcome
    assert bit(out["tvr"], K.TVR_LOWER_OFFLINE_LIMIT_EXCEEDED)
    assert bit(out["tvr"], K.TVR_UPPER_OFFLINE_LIMIT_EXCEEDED)
    assert not bit(out["tvr"], K.TVR_NEW_CARD)
    out = Run(ModelCard(), t=txn(force_online=True)).outcome
    assert bit(out["tvr"], K.TVR_MERCHANT_FORCED_ONLINE)


# -- cardholder verification -------------------------------------------------------------

def test_cvm_amount_conditions():
    cvm = "00001388 00000000 0106 1E07"                 # X = 50.00
    out = Run(ModelCard(cvm_list=cvm)).outcome
    assert out["cvm"] == "offline_pin" and out["emv"]["9F34"] == h("010602")
    out = Run(ModelCard(cvm_list=cvm), t=txn(6000)).outcome
    assert out["cvm"] == "signature" and out["emv"]["9F34"] == h("1E0700")


def test_no_cvm_rule_applies():
    out = Run(ModelCard(cvm_list="00000000 00000000 0106")).outcome
    assert bit(out["tvr"], K.TVR_CVM_NOT_SUCCESSFUL)
    assert out["emv"]["9F34"] == h("3F0001") and out["cvm"] == "none"


def test_pin_bypass_then_signature():
    run = Run(ModelCard(cvm_list="00000000 00000000 4103 4203 1E03"), pins=(None,))
    out = run.outcome
    assert bit(out["tvr"], K.TVR_PIN_NOT_ENTERED) and not bit(out["tvr"], K.TVR_CVM_NOT_SUCCESSFUL)
    assert out["cvm"] == "signature"
    assert len([s for _, s, _, _ in run.steps if "ask_pin" in s]) == 1   # online PIN skipped too


def test_pin_try_limit_exceeded():
    out = Run(ModelCard(tries=0, cvm_list="00000000 00000000 4103 1E03")).outcome
    assert bit(out["tvr"], K.TVR_PIN_TRY_LIMIT_EXCEEDED) and out["cvm"] == "signature"
    run = Run(ModelCard(tries=1, cvm_list="00000000 00000000 0103"), pins=("0000",))
    assert bit(run.outcome["tvr"], K.TVR_PIN_TRY_LIMIT_EXCEEDED)
    assert bit(run.outcome["tvr"], K.TVR_CVM_NOT_SUCCESSFUL)
    assert run.outcome["emv"]["9F34"] == h("010301")


def test_unrecognised_cvm_and_pin_pad_missing():
    out = Run(ModelCard(cvm_list="00000000 00000000 5D00 1F00")).outcome
    assert bit(out["tvr"], K.TVR_UNRECOGNISED_CVM) and out["emv"]["9F34"] == h("1F0002")
    cfg = config(terminal_capabilities="E02848")           # no PIN of any kind
    out = Run(ModelCard(cvm_list="00000000 00000000 4100 1E00"), cfg=cfg).outcome
    assert bit(out["tvr"], K.TVR_PIN_PAD_MISSING) and out["cvm"] == "signature"


# -- contactless ---------------------------------------------------------------------------

def cl(amount=1000, **extra):
    return txn(amount, interface="contactless", **extra)


def test_contactless_low_value_online_without_cvm():
    card = ModelCard(contactless=True)
    run = Run(card, t=cl())
    step = run.state_of("go_online")[1]
    assert step["tap_complete"] is True and step["go_online"]["9F66"][1] & 0x40 == 0
    out = run.outcome
    assert out["approved"] and out["online"] and out["cvm"] == "none"
    assert out["cryptogram"] == "ARQC" and out["interface"] == "contactless"
    assert [a[1] for a, _ in card.log] == [0xA4, 0xA4, 0xA8, 0xB2]


def test_contactless_above_cvm_limit_asks_online_pin():
    card = ModelCard(contactless=True)
    run = Run(card, t=cl(6000))
    assert run.state_of("ask_pin")[1]["ask_pin"] == "online"
    step = run.state_of("go_online")[1]
    assert step["go_online"]["9F66"][1] & 0xC0 == 0xC0       # online and CVM required
    assert step["go_online"]["95"] == bytes(5)                 # what the card was given
    assert run.outcome["cvm"] == "online_pin" and run.outcome["approved"]


def test_contactless_signature_when_the_reader_has_no_online_pin():
    cfg = config(terminal_capabilities="E0B8C8")
    out = Run(ModelCard(contactless=True), cfg=cfg, t=cl(6000)).outcome
    assert out["cvm"] == "signature" and out["signature"] and out["approved"]


def test_contactless_limit_sends_the_cardholder_to_the_chip():
    card = ModelCard(contactless=True)
    out = Run(card, t=cl(100000)).outcome
    assert out["reason"] == K.TRY_CONTACT and card.count == 0


def test_contactless_offline_approval_with_fdda():
    card = ModelCard(contactless=True, cl_offline=True)
    out = Run(card, t=cl(1500)).outcome
    assert out["approved"] and not out["online"] and out["cryptogram"] == "TC"
    assert bit(out["tsi"], K.TSI_ODA_PERFORMED) and not bit(out["tvr"], K.TVR_DDA_FAILED)
    card = ModelCard(contactless=True, cl_offline=True)
    good = card._qvsdc

    def bad_signature(pdol_data):
        out = bytearray(good(pdol_data))
        at = bytes(out).find(h("9F4B"))
        out[at + 10] ^= 1
        return bytes(out)
    card._qvsdc = bad_signature
    out = Run(card, t=cl(1500)).outcome
    assert not out["approved"] and out["reason"] == K.ODA_FAILED
    assert bit(out["tvr"], K.TVR_DDA_FAILED)


def test_contactless_card_declines():
    out = Run(ModelCard(contactless=True, always_aac=True), t=cl()).outcome
    assert out["result"] == "declined" and out["reason"] == K.DECLINED_BY_CARD


# -- broken cards ------------------------------------------------------------------------

def test_missing_mandatory_objects_end_cleanly():
    for tag in (0x5A, 0x5F24, 0x8C, 0x8D):
        out = Run(ModelCard(drop=(tag,))).outcome
        assert out["result"] == "failed" and out["reason"] == K.BAD_DATA, tlv.tag_hex(tag)


def test_error_status_words_and_removal():
    out = Run(ModelCard(gpo_sw=0x6F00)).outcome
    assert out["result"] == "failed" and out["reason"] == K.CARD_ERROR
    out = Run(ModelCard(), remove_at=5).outcome
    assert out["reason"] == K.CARD_REMOVED and not out["approved"]


def test_broken_generate_ac_answer_is_never_an_approval():
    for damage in ("drop_ac", "cid_tc_to_arqc_mismatch", "truncate", "sw"):
        card = ModelCard(oda="dda", offline=True, cvm_list="00000000 00000000 1F00")

        def mutate(n, data, damage=damage, card=card):
            if data[:1] != b"\x77" or h("9F27") not in data:
                return data
            if damage == "drop_ac":
                return E(0x77, [(0x9F27, b"\x40"), (0x9F36, h("0011"))]) + sw(0x9000)
            if damage == "cid_tc_to_arqc_mismatch":
                return E(0x77, [(0x9F27, b"\xc0"), (0x9F36, h("0011")), (0x9F26, bytes(8))]) + sw(0x9000)
            if damage == "truncate":
                return data[:9] + sw(0x9000)
            return data[:-2] + sw(0x6F00)
        card.mutate = mutate
        out = Run(card).outcome
        assert not out["approved"] and out["result"] == "failed", (damage, out)


def test_kernel_rejects_calls_out_of_turn():
    k = Kernel(config(), txn())
    step = k.start()
    assert "send" in step
    try:
        k.on_pin("1234")
        assert False
    except K.KernelError:
        pass
    done = k.cancel()
    assert done["done"]["reason"] == K.CANCELLED
    assert k.on_response(h("9000")) is done                   # late answers change nothing


def _lcg(seed):
    state = [seed]

    def nxt(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return state[0] % n
    return nxt


def test_fuzz_every_answer_of_a_good_transaction():
    rnd = _lcg(1234)
    approved_after_damage = 0
    for trial in range(60):
        target = 1 + rnd(11)
        kind = rnd(5)

        def mutate(n, data, target=target, kind=kind):
            if n != target:
                return data
            body = bytearray(data)
            if kind == 0:
                return bytes(body[:rnd(len(body))])
            if kind == 1 and len(body) > 2:
                body[rnd(len(body) - 2)] ^= 1 << rnd(8)
                return bytes(body)
            if kind == 2:
                return bytes(body[:-2]) + sw((0x6A82, 0x6F00, 0x6985, 0x6283, 0x9000)[rnd(5)])
            if kind == 3:
                return bytes(rnd(256) for _ in range(rnd(12)))
            return data[:-2] + bytes(rnd(256) for _ in range(rnd(6))) + data[-2:]
        card = ModelCard(oda="dda", offline=True, cvm_list="00000000 00000000 4103 1F00")
        card.mutate = mutate
        run = Run(card)
        out = run.outcome
        assert out["result"] in ("approved", "declined", "failed")
        assert out["reason"] in K.REASONS or out["approved"]
        if out["approved"]:
            approved_after_damage += 1
    assert approved_after_damage < 60
