"""firmware.cards.emv.kernel against the virtual EMV card (tools/cards/vcard.py) with real
cryptograms, the test PKI (tools/cards/emv_test_pki.py) and the issuer's checks
(tools/cards/emv_issuer.py): every card profile end to end, TVR and TSI at the steps that set
them, and hypothesis damaging every answer of good transactions.

The reader side of T=0 (61xx: GET RESPONSE, 6Cxx: the command again with that Le) is
done here the way drivers/pcsc.py does it, since the kernel never sees those words.
"""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from firmware.cards.emv import kernel as K
from firmware.cards.emv import tlv
from firmware.cards.emv.kernel import Kernel
from tools.cards import emv_issuer, emv_test_pki, vcard

pytestmark = pytest.mark.filterwarnings("ignore:.*TripleDES")

TODAY = "250615"
VISA = "A0000000031010"
MASTERCARD = "A0000000041010"


def config(**extra):
    cfg = {
        "aids": [
            {"aid": VISA, "version": "0096", "floor_limit": 0,
             "tac_denial": "0010000000", "tac_online": "DC4004F800",
             "tac_default": "DC4000A800"},
            {"aid": MASTERCARD, "version": "0002", "floor_limit": 10000,
             "tac_denial": "0000000000", "tac_online": "F850ACF800",
             "tac_default": "FC50ACA000"},
        ],
        "terminal_capabilities": "E0E8C0", "additional_capabilities": "6000F0A001",
        "terminal_type": "22", "country": "0840", "currency": "0840",
        "terminal_id": "HP000001", "ifd_serial": "SIM00001",
        "ca_keys": emv_test_pki.ca_public_keys(),
        "contactless": {"transaction_limit": 100000, "floor_limit": 0, "cvm_limit": 5000},
    }
    cfg.update(extra)
    return cfg


def txn(amount=1000, **extra):
    counter = [0]

    def unpredictable(n):
        counter[0] += 1
        return bytes((counter[0] * 29 + i * 7) & 0xFF for i in range(n))
    out = {"amount": amount, "date": TODAY, "time": "101500", "sequence": 17,
           "unpredictable": unpredictable}
    out.update(extra)
    return out


def reader_exchange(card, apdu):
    """One command through a reader that handles T=0's 61xx and 6Cxx."""
    apdu = bytes(apdu)
    data = b""
    command = apdu
    resent = False
    for _ in range(32):
        answer = card.transmit(command)
        if len(answer) < 2:
            return data + answer
        sw1, sw2 = answer[-2], answer[-1]
        if sw1 == 0x61:
            data += answer[:-2]
            command = bytes((0x00, 0xC0, 0x00, 0x00, sw2))
            continue
        if sw1 == 0x6C and not resent:
            command = command[:4] + bytes((sw2,)) if len(command) <= 5 else command[:-1] + bytes((sw2,))
            resent = True
            continue
        return data + answer
    return None             # what the driver reports as a reader error: no answer


class Host:
    """The issuer: checks the ARQC over DE55 and answers with ARPC || ARC (tag 91)."""

    def __init__(self, arc="00", reachable=True, scripts=None):
        self.arc = arc
        self.reachable = reachable
        self.scripts = scripts
        self.requests = []
        self.verified = None

    def __call__(self, step):
        self.requests.append(step)
        if not self.reachable:
            return None, None, None
        de55 = step["go_online"]
        card = step["card"]
        try:
            self.verified = emv_issuer.verify_arqc(de55, pan=card["pan"], psn=card["pan_seq"])
        except (emv_issuer.De55Error, ValueError):
            self.verified = False
        if not self.verified:
            return "05", None, None         # an issuer that cannot check it declines
        iad = emv_issuer.issuer_authentication_data(de55["9F26"], self.arc, pan=card["pan"],
                                                    psn=card["pan_seq"])
        return self.arc, iad, self.scripts


class Run:
    def __init__(self, card, cfg=None, t=None, pins=("1234",), host=None, choose=0,
                 damage=None):
        self.card = card
        self.host = host or Host()
        self.kernel = k = Kernel(cfg or config(), t or txn())
        self.steps = []
        self.exchanges = []
        pins = list(pins)
        step = k.start()
        while True:
            self.steps.append((k.state, step, k.tvr, k.tsi))
            if "done" in step:
                break
            if "send" in step:
                command = bytes(step["send"])
                try:
                    answer = reader_exchange(card, command)
                except vcard.CardRemoved:
                    step = k.on_card_removed()
                    continue
                if damage is not None and answer is not None:
                    answer = damage(len(self.exchanges), command, answer)
                self.exchanges.append((command, answer))
                step = k.on_response(answer)
            elif "ask_pin" in step:
                step = k.on_pin(pins.pop(0) if pins else None)
            elif "choose_app" in step:
                step = k.on_cardholder_choice(choose)
            elif "go_online" in step:
                step = k.on_online_result(*self.host(step))
        self.outcome = step["done"]

    def at(self, kind):
        for state, step, tvr, tsi in self.steps:
            if kind in step:
                return step, tvr.hex().upper(), tsi.hex().upper()
        raise AssertionError("no %s step" % kind)

    def commands(self):
        return [c[1] for c, _ in self.exchanges]


def bit(hex_text, flag):
    return bool(bytes.fromhex(hex_text)[flag[0]] & flag[1])


# -- every profile, contact ---------------------------------------------------------

def test_online_pin_contact_online_approval():
    run = Run(vcard.VirtualCard("online_pin"))
    step, tvr, tsi = run.at("ask_pin")
    assert step["ask_pin"] == "online"
    assert tvr == "8000000000" and tsi == "0000"      # only "ODA not performed" so far
    step, tvr, tsi = run.at("go_online")
    assert tvr == "8000048000"       # + online PIN entered, floor limit 0 exceeded
    assert tsi == "6800"             # CVM, card risk management, terminal risk management
    assert run.host.verified is True
    assert step["go_online"]["9F34"] == bytes.fromhex("420300")
    assert step["card"]["track2"].startswith("4761739001010010=2912201")
    out = run.outcome
    assert out["result"] == "approved" and out["online"] and out["cryptogram"] == "TC"
    assert out["tsi"] == "7800" and out["tvr"] == "8000048000"
    assert out["cvm"] == "online_pin" and out["pan_masked"] == "476173******0010"
    assert out["label"] == "VISA CREDIT" and out["aid"] == VISA and out["pan_seq"] == "01"
    assert out["card"] is None and not out["reversal"]
    assert 0x82 in run.commands()                      # Visa: EXTERNAL AUTHENTICATE
    assert out["emv"]["8A"] == b"00"


def test_online_pin_host_decline_and_no_host():
    out = Run(vcard.VirtualCard("online_pin"), host=Host(arc="51")).outcome
    assert out["result"] == "declined" and out["reason"] == K.HOST_DECLINED
    assert out["cryptogram"] == "AAC" and out["arc"] == "51"
    out = Run(vcard.VirtualCard("online_pin"), host=Host(reachable=False)).outcome
    assert out["reason"] == K.UNABLE_ONLINE and out["arc"] == "Z3" and not out["online"]


def test_wrong_arpc_fails_issuer_authentication_and_the_card_declines():
    class BadHost(Host):
        def __call__(self, step):
            arc, iad, scripts = Host.__call__(self, step)
            return arc, bytes(8) + iad[8:], scripts
    out = Run(vcard.VirtualCard("online_pin"), host=BadHost()).outcome
    assert bit(out["tvr"], K.TVR_ISSUER_AUTH_FAILED)
    assert out["result"] == "declined" and out["reason"] == K.DECLINED_BY_CARD
    assert out["reversal"] is True


def test_offline_pin_wrong_then_right_goes_online_on_the_action_codes():
    run = Run(vcard.VirtualCard("offline_pin"), pins=("1111", "1234"))
    asks = [s for _, s, _, _ in run.steps if "ask_pin" in s]
    assert [a["tries_left"] for a in asks] == [3, 2] and asks[1]["retry"]
    step, tvr, tsi = run.at("go_online")
    assert bit(tvr, K.TVR_ODA_NOT_PERFORMED) and not bit(tvr, K.TVR_CVM_NOT_SUCCESSFUL)
    out = run.outcome
    assert out["approved"] and out["cvm"] == "offline_pin" and out["online"]
    assert out["emv"]["9F34"] == bytes.fromhex("410302")
    assert 0x82 not in run.commands()                  # Mastercard: 91 in CDOL2
    assert bit(out["tsi"], K.TSI_ISSUER_AUTH_PERFORMED)


def test_offline_pin_blocked_falls_to_online_pin():
    run = Run(vcard.VirtualCard("offline_pin"), pins=("1111", "2222", "3333", "1234"))
    asks = [s["ask_pin"] for _, s, _, _ in run.steps if "ask_pin" in s]
    assert asks == ["offline", "offline", "offline", "online"]
    out = run.outcome
    assert bit(out["tvr"], K.TVR_PIN_TRY_LIMIT_EXCEEDED)
    assert bit(out["tvr"], K.TVR_ONLINE_PIN_ENTERED) and out["cvm"] == "online_pin"
    # the card remembers: next time GET DATA 9F17 says 0 and no offline PIN is asked
    card = run.card
    again = Run(card, pins=("1234",))
    assert [s["ask_pin"] for _, s, _, _ in again.steps if "ask_pin" in s] == ["online"]


def test_expired_card_declined_offline():
    run = Run(vcard.VirtualCard("expired"))
    out = run.outcome
    assert bit(out["tvr"], K.TVR_EXPIRED)
    assert out["result"] == "declined" and out["reason"] == K.DECLINED_BY_CARD
    assert out["cryptogram"] == "AAC" and not out["online"] and out["arc"] == "Z1"
    assert out["expiry"] == "2012"
    assert run.commands().count(0xAE) == 1
    # without a synchronised clock the terminal cannot tell; the host will
    out = Run(vcard.VirtualCard("expired"), t=txn(date=None)).outcome
    assert not bit(out["tvr"], K.TVR_EXPIRED) and out["online"]


def test_blocked_application():
    out = Run(vcard.VirtualCard("blocked_app")).outcome
    assert out["result"] == "failed" and out["reason"] == K.APP_BLOCKED


def test_card_that_declines_everything():
    out = Run(vcard.VirtualCard("declines_aac")).outcome
    assert out["result"] == "declined" and out["reason"] == K.DECLINED_BY_CARD
    out = Run(vcard.VirtualCard("declines_aac"), t=txn(interface="contactless")).outcome
    assert out["result"] == "declined" and out["reason"] == K.DECLINED_BY_CARD


def test_card_answering_6f00():
    out = Run(vcard.VirtualCard("answers_6f00")).outcome
    assert out["result"] == "failed" and out["reason"] == K.CARD_ERROR


def test_card_pulled_out():
    run = Run(vcard.VirtualCard("pulled_out"))
    out = run.outcome
    assert out["result"] == "failed" and out["reason"] == K.CARD_REMOVED
    assert len(run.exchanges) == 6


def test_sda_card():
    run = Run(vcard.VirtualCard("sda"))
    step, tvr, tsi = run.at("ask_pin")
    assert bit(tvr, K.TVR_SDA_SELECTED) and not bit(tvr, K.TVR_SDA_FAILED)
    assert not bit(tvr, K.TVR_ODA_NOT_PERFORMED) and bit(tsi, K.TSI_ODA_PERFORMED)
    out = run.outcome
    assert out["approved"] and out["cvm"] == "offline_pin"
    assert run.kernel.card[0x9F45] == b"\xda\xc0"          # the data authentication code


def test_sda_over_altered_data_fails():
    card = vcard.VirtualCard("sda")
    rec = card.records[(1, 1)]
    at = rec.index(bytes.fromhex("5F2503"))
    card.records[(1, 1)] = rec[:at + 3] + bytes.fromhex("190101") + rec[at + 6:]
    run = Run(card)
    step, tvr, tsi = run.at("go_online")
    assert bit(tvr, K.TVR_SDA_FAILED) and bit(tsi, K.TSI_ODA_PERFORMED)


def test_dda_card_offline_approval():
    run = Run(vcard.VirtualCard("dda"))
    out = run.outcome
    assert out["result"] == "approved" and not out["online"] and out["cryptogram"] == "TC"
    assert out["tvr"] == "0000000000" and out["tsi"] == "E800"
    assert out["arc"] == "Y1" and out["cvm"] == "offline_pin"
    assert out["card"]["pan"] == "5200828282828210"     # for the advice
    assert out["card"]["track2"].startswith("5200828282828210=3012")
    assert 0x88 in run.commands()
    assert len(run.kernel.card[0x9F4C]) == 8


def test_dda_card_asks_to_go_online_above_its_offline_limit():
    run = Run(vcard.VirtualCard("dda"), t=txn(6000))
    assert run.host.verified is True
    assert run.outcome["approved"] and run.outcome["online"]


def test_dda_with_the_wrong_ca_key():
    cfg = config()
    cfg["ca_keys"] = [dict(k) for k in cfg["ca_keys"]]
    for key in cfg["ca_keys"]:
        key["modulus"] = cfg["ca_keys"][0]["modulus"]          # Visa's modulus for both
    run = Run(vcard.VirtualCard("dda"), cfg=cfg)
    assert bit(run.outcome["tvr"], K.TVR_DDA_FAILED) and run.outcome["online"]
    assert 0x88 not in run.commands()


def test_unable_to_go_online_card_over_its_limit_declines():
    out = Run(vcard.VirtualCard("dda"), t=txn(6000), host=Host(reachable=False)).outcome
    assert out["arc"] == "Y3"                   # the terminal would approve, the card not
    assert out["result"] == "declined" and out["reason"] == K.UNABLE_ONLINE


# -- contactless --------------------------------------------------------------------

def test_contactless_no_cvm_one_tap():
    run = Run(vcard.VirtualCard("no_cvm"), t=txn(interface="contactless"))
    step, tvr, tsi = run.at("go_online")
    assert step["tap_complete"] and run.host.verified is True
    assert run.commands() == [0xA4, 0xA4, 0xA8, 0xB2]
    out = run.outcome
    assert out["approved"] and out["cvm"] == "none" and out["interface"] == "contactless"


def test_contactless_above_the_cvm_limit_asks_online_pin():
    run = Run(vcard.VirtualCard("online_pin"), t=txn(6000, interface="contactless"))
    assert run.at("ask_pin")[0]["ask_pin"] == "online"
    assert run.host.verified is True
    assert run.outcome["approved"] and run.outcome["cvm"] == "online_pin"


def test_contactless_signature_when_the_reader_has_no_pin():
    run = Run(vcard.VirtualCard("no_cvm"), cfg=config(terminal_capabilities="E028C0"),
              t=txn(6000, interface="contactless"))
    assert run.outcome["approved"] and run.outcome["cvm"] == "signature"


def test_contactless_over_the_transaction_limit():
    card = vcard.VirtualCard("no_cvm")
    out = Run(card, t=txn(150000, interface="contactless")).outcome
    assert out["reason"] == K.TRY_CONTACT and card.apdu_count == 0


# -- damaged answers (hypothesis) ---------------------------------------------------

def _drop_a_tag(answer, which):
    try:
        top = tlv.parse_one(answer[:-2])
    except tlv.TlvError:
        return answer
    if not top.children:
        return answer
    kids = top.children
    del kids[which % len(kids)]
    return tlv.encode(top.tag, b"".join(tlv.encode(c.tag, c.value) for c in kids)) + answer[-2:]


DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 400)),
    st.tuples(st.just("flip"), st.integers(0, 400), st.integers(0, 7)),
    st.tuples(st.just("sw"), st.sampled_from([0x6A82, 0x6F00, 0x6985, 0x6283, 0x6A81,
                                              0x6400, 0x6300, 0x9000, 0x6100])),
    st.tuples(st.just("drop"), st.integers(0, 20)),
    st.tuples(st.just("garbage"), st.binary(max_size=12)),
    st.tuples(st.just("extra"), st.binary(min_size=1, max_size=8)),
)


def _apply(kind, answer):
    name = kind[0]
    if name == "truncate":
        return answer[:kind[1] % (len(answer) + 1)]
    if name == "flip":
        if len(answer) <= 2:
            return answer
        i = kind[1] % (len(answer) - 2)
        return answer[:i] + bytes((answer[i] ^ (1 << kind[2]),)) + answer[i + 1:]
    if name == "sw":
        return answer[:-2] + bytes((kind[1] >> 8, kind[1] & 0xFF))
    if name == "drop":
        return _drop_a_tag(answer, kind[1])
    if name == "garbage":
        return kind[1]
    return answer[:-2] + kind[1] + answer[-2:]


def _gen_ac_view(answer):
    """(cryptogram type, ATC, AC, IAD) of a GENERATE AC answer, or None when broken."""
    if len(answer) < 2 or answer[-2:] != b"\x90\x00":
        return None
    try:
        top = tlv.parse_one(answer[:-2])
    except tlv.TlvError:
        return None
    if top.tag == 0x80 and len(top.value) >= 11:
        v = top.value
        return v[0] & 0xC0, v[1:3], v[3:11], v[11:]
    if top.tag == 0x77:
        try:
            flat = tlv.flatten(top.children, strict=True)
        except tlv.TlvError:
            return None
        if 0x9F27 in flat and 0x9F26 in flat and 0x9F36 in flat and len(flat[0x9F27]) == 1:
            return flat[0x9F27][0] & 0xC0, flat[0x9F36], flat[0x9F26], flat.get(0x9F10)
    return None


SCENARIOS = {
    # profile, txn, pins, expected when nothing is damaged
    "online": ("online_pin", {}, ("1234",)),
    "offline_dda": ("dda", {}, ("1234",)),
    "sda": ("sda", {}, ("1234",)),
    "contactless": ("online_pin", {"amount": 6000, "interface": "contactless"}, ("1234",)),
}


def _undamaged(name):
    profile, extra, pins = SCENARIOS[name]
    t = txn(**extra)
    return Run(vcard.VirtualCard(profile), t=t, pins=pins)


def test_scenarios_are_good_before_damage():
    for name in SCENARIOS:
        run = _undamaged(name)
        assert run.outcome["approved"], (name, run.outcome)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SCENARIOS)), st.integers(0, 30), DAMAGE)
def test_damaged_answers_end_cleanly_and_never_approve_a_broken_cryptogram(name, target, damage):
    profile, extra, pins = SCENARIOS[name]
    hit = {}

    def damage_fn(index, command, answer):
        if index != target:
            return answer
        hit["command"] = command
        hit["before"] = answer
        hit["after"] = _apply(damage, answer)
        return hit["after"]
    run = Run(vcard.VirtualCard(profile), t=txn(**extra), pins=pins, damage=damage_fn)
    out = run.outcome
    assert out["result"] in ("approved", "declined", "failed")
    assert out["approved"] == (out["result"] == "approved")
    if not out["approved"]:
        assert out["reason"] in K.REASONS
    if "command" not in hit or not out["approved"]:
        return
    command, before, after = hit["command"], hit["before"], hit["after"]
    if before == after:
        return
    if command[1] == 0xAE or (command[1] == 0xA8 and name == "contactless"):
        if command[1] == 0xA8:
            # the qVSDC GPO answer carries the cryptogram: anything the host's check
            # covers must be intact for an approval
            assert run.host.verified is True
            return
        view_before, view_after = _gen_ac_view(before), _gen_ac_view(after)
        # an approval after a damaged cryptogram answer only when the answer still
        # reads as the same kind of cryptogram (the opaque values are the card's and
        # the issuer's business: an ARQC with changed values fails the host's check)
        assert view_after is not None, (damage, before.hex(), after.hex())
        assert view_after[0] == view_before[0]
    if out["online"]:
        # an online approval means the issuer checked the cryptogram and it held
        assert run.host.verified is True


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=64))
def test_random_answers_to_everything(data):
    class Junk:
        def transmit(self, apdu):
            return data
    run = Run(Junk())
    assert run.outcome["result"] == "failed"


def test_done_is_final_and_calls_out_of_turn_are_refused():
    run = Run(vcard.VirtualCard("dda"))
    k = run.kernel
    assert k.done
    assert k.on_response(b"\x90\x00") == {"done": run.outcome}
    k2 = Kernel(config(), txn())
    k2.start()
    with pytest.raises(K.KernelError):
        k2.on_online_result("00")
    with pytest.raises(K.KernelError):
        k2.start()


# -- the Book 2 recovery functions against the test PKI --------------------------------

PAN = "5200828282828210"
STATIC = bytes.fromhex("5A085200828282828210") + b"\x5f\x24\x03\x30\x12\x31"


def _keys():
    ca = emv_test_pki.ca_key(*emv_test_pki.MASTERCARD_CA)
    return ca, emv_test_pki.issuer_key(PAN[:6]), emv_test_pki.icc_key(PAN, "00")


def test_recovered_keys_match_the_pki():
    ca, issuer, icc = _keys()
    cert, rem, exp = emv_test_pki.issuer_certificate(ca, issuer, PAN[:6])
    assert rem                                   # a 1024-bit key in a 1152-bit certificate
    key = K.recover_issuer_key(ca.modulus, 3, cert, rem, exp, PAN, 20250615)
    assert key == issuer.modulus
    icert, irem, iexp = emv_test_pki.icc_certificate(issuer, icc, PAN, STATIC)
    ikey = K.recover_icc_key(key, 3, icert, irem, iexp, bytes.fromhex(PAN), STATIC, 20250615)
    assert ikey == icc.modulus
    sdad = emv_test_pki.signed_dynamic_data(icc, b"\x01\x02\x03\x04", b"\xaa\xbb\xcc\xdd")
    assert K.verify_dynamic_signature(ikey, 65537, sdad, b"\xaa\xbb\xcc\xdd") == b"\x04\x01\x02\x03\x04"
    ssad = emv_test_pki.signed_static_data(issuer, STATIC)
    assert K.verify_static_signature(key, 3, ssad, STATIC) == b"\xda\xc0"


def test_a_key_that_fits_its_certificate_needs_no_remainder():
    ca, _, _ = _keys()
    small = emv_test_pki.deterministic_key("issuer-small", 768, 3)
    cert, rem, exp = emv_test_pki.issuer_certificate(ca, small, PAN[:6])
    assert rem == b""
    assert K.recover_issuer_key(ca.modulus, 3, cert, b"", exp, PAN, None) == small.modulus


@pytest.mark.parametrize("what", ["expired", "pan", "remainder", "exponent", "static",
                                  "dynamic", "ca", "truncated"])
def test_recovery_failures(what):
    ca, issuer, icc = _keys()
    expiry = "0124" if what == "expired" else emv_test_pki.CERT_EXPIRY
    cert, rem, exp = emv_test_pki.issuer_certificate(ca, issuer, PAN[:6], expiry=expiry)
    pan = "5300828282828210" if what == "pan" else PAN
    if what == "remainder":
        rem = rem[:-1] + bytes((rem[-1] ^ 1,))
    if what == "exponent":
        exp = b"\x01\x00\x01"
    ca_modulus = emv_test_pki.ca_key(*emv_test_pki.VISA_CA).modulus if what == "ca" else ca.modulus
    if what == "truncated":
        cert = cert[:-1]
    if what in ("expired", "pan", "remainder", "exponent", "ca", "truncated"):
        with pytest.raises(K.OdaError):
            K.recover_issuer_key(ca_modulus, 3, cert, rem, exp, pan, 20250615)
        return
    key = K.recover_issuer_key(ca.modulus, 3, cert, rem, exp, PAN, 20250615)
    icert, irem, iexp = emv_test_pki.icc_certificate(issuer, icc, PAN, STATIC)
    if what == "static":
        with pytest.raises(K.OdaError):
            K.recover_icc_key(key, 3, icert, irem, iexp, bytes.fromhex(PAN), STATIC + b"\x00",
                              20250615)
        return
    ikey = K.recover_icc_key(key, 3, icert, irem, iexp, bytes.fromhex(PAN), STATIC, 20250615)
    sdad = emv_test_pki.signed_dynamic_data(icc, b"\x01\x02", b"\xaa\xbb\xcc\xdd")
    with pytest.raises(K.OdaError):
        K.verify_dynamic_signature(ikey, 65537, sdad, b"\xaa\xbb\xcc\xde")


def test_sha1_agrees_with_hashlib():
    import hashlib
    for n in range(0, 300, 7):
        data = bytes((i * 31) & 0xFF for i in range(n))
        assert K.sha1_portable(data) == hashlib.sha1(data).digest()
