"""The host profile's codec: every message pair round-trips, anything malformed raises
HostMessageError (and nothing else), with a reason that names the field."""
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from drivers.iso8583_spec import (ELEMENTS, MAX_MESSAGE, MTIS, PROFILE_FIELDS, REQUESTS, RESPONSES,
                                  HostMessageError, decode, encode, is_repeat, masked, response_mti)

PAN = "4111111111111111"
TRACK2 = "4012888888881881=28121011234567890"
ICC = "9F2608A1B2C3D4E5F607089F2701809F100706010A03A000009F3704DEADBEEF"
COMMON = {"7": "1121093015", "11": "000123", "12": "103015", "13": "1121",
          "24": "001", "41": "HP000001", "42": "000000000000001"}


def sale(**over):
    msg = dict(COMMON, t="0200", **{"2": PAN, "3": "000000", "4": "000000012345", "14": "2812",
                                   "22": "051", "23": "001", "25": "00", "49": "840",
                                   "52": "0123456789ABCDEF", "53": "FFFF9876543210E00001",
                                   "55": ICC, "62": "000042"})
    msg.update(over)
    return msg


def response(mti, **over):
    msg = dict(COMMON, t=mti, **{"3": "000000", "4": "000000012345", "37": "632521000001",
                                 "38": "A1B2C3", "39": "00", "49": "840"})
    msg.update(over)
    return msg


ORIGINAL = "0200" + "000123" + "1121093015" + "0" * 22     # DE90: MTI, STAN, DE7, ids

SAMPLES = {
    "0100": sale(t="0100", **{"3": "000000"}),
    "0101": sale(t="0101"),
    "0110": response("0110"),
    "0200": sale(),
    "0201": sale(t="0201"),
    "0210": response("0210"),
    "0200-track2": dict({k: v for k, v in sale().items() if k not in ("2", "14", "55")},
                        **{"22": "021", "35": TRACK2}),
    "0200-refund": sale(**{"3": "200000"}),
    "0200-aes-pin": dict({k: v for k, v in sale().items() if k != "52"},
                         **{"53": "123456789012345600000001",
                            "61": "A912150391AB65A67E52883D81CE2D15"}),
    "0220": sale(t="0220", **{"38": "OFF123", "37": "632521000077"}),
    "0221": sale(t="0221", **{"38": "OFF123"}),
    "0230": response("0230"),
    "0320": sale(t="0320", **{"60": "0200000123", "37": "632521000001", "38": "A1B2C3"}),
    "0330": response("0330"),
    "0400": sale(t="0400", **{"11": "000124", "90": ORIGINAL, "39": "68"}),
    "0401": sale(t="0401", **{"11": "000124", "90": ORIGINAL}),
    "0410": response("0410", **{"90": ORIGINAL}),
    "0420": sale(t="0420", **{"90": ORIGINAL}),
    "0421": sale(t="0421", **{"90": ORIGINAL}),
    "0430": response("0430"),
    "0500": dict(COMMON, t="0500", **{"3": "920000", "60": "000007",
                                      "63": "003000000037035001000000001000"}),
    "0510": response("0510", **{"3": "920000", "60": "000007", "39": "95"}),
    "0800": {"t": "0800", "7": "1121093015", "11": "000125", "41": "HP000001", "70": "301"},
    "0810": {"t": "0810", "7": "1121093015", "11": "000125", "39": "00", "41": "HP000001",
             "70": "301"},
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_of_every_message_type(name):
    msg = SAMPLES[name]
    raw = encode(msg)
    assert raw[:4] == msg["t"].encode()
    assert decode(raw) == msg
    assert encode(decode(raw)) == raw


def test_every_profile_mti_has_a_sample():
    assert {k.split("-")[0] for k in SAMPLES} >= set(REQUESTS) | set(RESPONSES)
    assert MTIS >= set(k.split("-")[0] for k in SAMPLES)


def test_wire_layout_ascii_numbers_binary_bitmap_and_binary_fields():
    msg = {"t": "0200", "2": PAN, "3": "000000", "4": "000000000100", "11": "000001",
           "41": "HP000001", "52": "0011223344556677", "55": "9F0206000000000100"}
    raw = encode(msg)
    bitmap = raw[4:12]
    assert bitmap == bytes([0x70, 0x20, 0x00, 0x00, 0x00, 0x80, 0x12, 0x00])
    body = raw[12:]
    assert body.startswith(b"16" + PAN.encode() + b"000000" + b"000000000100" + b"000001")
    assert b"HP000001" + bytes.fromhex("0011223344556677") + b"009" + bytes.fromhex(
        "9F0206000000000100") == body[-(8 + 8 + 3 + 9):]


def test_secondary_bitmap_appears_only_for_fields_above_64():
    raw = encode(SAMPLES["0400"])
    assert raw[4] & 0x80                         # bit 1: a secondary bitmap follows
    assert raw[12:20] == bytes([0, 0, 0, 0x40, 0, 0, 0, 0])   # bit 90
    assert not encode(SAMPLES["0200"])[4] & 0x80


def test_binary_fields_take_bytes_and_come_back_as_upper_hex():
    msg = sale(**{"52": bytes(range(8)), "55": b"\x9f\x02\x01\x00", "64": "aabbccddeeff0011"})
    out = decode(encode(msg))
    assert out["52"] == "0001020304050607"
    assert out["55"] == "9F020100"
    assert out["64"] == "AABBCCDDEEFF0011"


def test_encode_does_not_touch_the_callers_dict():
    msg = sale()
    before = dict(msg)
    encode(msg)
    assert msg == before


def test_response_mti_and_repeats():
    assert response_mti("0200") == "0210"
    assert response_mti("0401") == "0410"
    assert response_mti("0221") == "0230"
    assert response_mti("0800") == "0810"
    assert response_mti("0500") == "0510"
    assert is_repeat("0201") and not is_repeat("0200")
    for bad in ("0210", "0300", "abcd", ""):
        with pytest.raises(HostMessageError):
            response_mti(bad)


def test_profile_fields_are_all_defined():
    assert set(PROFILE_FIELDS) <= set(ELEMENTS)
    assert ELEMENTS[52][0] == "b" and ELEMENTS[55][0] == "b" and ELEMENTS[64][0] == "b"


def test_masked_hides_card_data():
    out = masked(sale(**{"35": TRACK2}))
    assert out["2"] == "411111******1111"
    for field in ("35", "52", "55"):
        assert out[field].startswith("<")
    assert PAN not in repr(out) and "4012888888881881" not in repr(out)


# -- malformed input ------------------------------------------------------------------

GOOD = encode(SAMPLES["0210"])


MALFORMED = {
    "empty": b"",
    "short mti": b"02",
    "non-digit mti": b"02A0" + GOOD[4:],
    "version 1993": b"1200" + GOOD[4:],
    "mti outside the profile": b"0300" + GOOD[4:],
    "truncated bitmap": GOOD[:9],
    "truncated field": GOOD[:-1],
    "extra data": GOOD + b"0",
    "non-ascii in a field": GOOD.replace(b"HP000001", b"HP00\xff001"),
    "letter in a numeric field": GOOD.replace(b"000000012345", b"0000000123X5"),
    "control char in ans field": GOOD.replace(b"HP000001", b"HP00\x00001"),
    "tertiary bitmap": b"0210" + bytes([0xA0, 0, 0, 0, 0, 0, 0, 0]) + bytes([0x80] + [0] * 7)
                       + b"000000",
    "oversize": b"0210" + b"\x00" * (MAX_MESSAGE + 1),
    "ll length not digits": b"0200" + bytes([0x40, 0, 0, 0, 0, 0, 0, 0]) + b"1x4111",
    "ll length over max": b"0200" + bytes([0x40, 0, 0, 0, 0, 0, 0, 0]) + b"20" + b"4" * 20,
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_bytes_raise_host_message_error(name):
    with pytest.raises(HostMessageError) as info:
        decode(MALFORMED[name])
    assert info.value.reason and str(info.value) == info.value.reason


def test_missing_required_fields_are_named():
    no_stan = {k: v for k, v in SAMPLES["0210"].items() if k != "11"}
    no_code = {k: v for k, v in SAMPLES["0210"].items() if k != "39"}
    with pytest.raises(HostMessageError, match="DE11"):
        encode(no_stan)
    with pytest.raises(HostMessageError, match="DE39"):
        encode(no_code)
    # the same holds for bytes built without the check
    import iso8583
    from drivers.iso8583_spec import SPEC
    raw, _ = iso8583.encode(dict(no_code), SPEC)
    with pytest.raises(HostMessageError, match="without DE39"):
        decode(bytes(raw))


@pytest.mark.parametrize("msg, words", [
    ("not a dict", "dict"),
    ({"t": "0200"}, "without"),
    (dict(SAMPLES["0200"], t="02000"), "4 digits"),
    (dict(SAMPLES["0200"], **{"4": "12345"}), "DE4"),
    (dict(SAMPLES["0200"], **{"4": 12345}), "str"),
    (dict(SAMPLES["0200"], **{"2": "41111111111111112222"}), "DE2"),
    (dict(SAMPLES["0200"], **{"52": "XYZ"}), "DE52"),
    (dict(SAMPLES["0200"], **{"52": "00"}), "DE52"),
    (dict(SAMPLES["0200"], **{"53": "not hex"}), "DE53"),
    (dict(SAMPLES["0200"], **{"41": "HP00000\u00e9"}), "DE41"),
    (dict(SAMPLES["0200"], **{"200": "1"}), "DE200"),
    (dict(SAMPLES["0200"], **{"x": "1"}), "unknown key"),
    (dict(SAMPLES["0200"], **{"55": "00" * 256}), "DE55"),
    (dict(SAMPLES["0200"], **{"48": "A" * 1000}), "DE48"),
])
def test_encode_refuses_malformed_messages(msg, words):
    with pytest.raises(HostMessageError, match=words):
        encode(msg)


def test_reasons_never_carry_the_pan():
    raw = encode(SAMPLES["0200"])
    broken = raw.replace(PAN.encode(), PAN[:15].encode() + b"X")
    with pytest.raises(HostMessageError) as info:
        decode(broken)
    assert PAN[:6] not in info.value.reason


# -- fuzzing ---------------------------------------------------------------------------

SEEDS = [encode(m) for m in SAMPLES.values()]
MTI_BYTES = sorted(m.encode() for m in MTIS)
POKES = b"0123456789 \x00\x80\xff=D"


def shaped(data):
    """Turn hypothesis's random bytes into a frame worth decoding.

    Hypothesis costs about half a millisecond per example whatever the strategy, so
    one binary draw is shaped here instead of composing several: the first byte picks
    raw bytes, a profile MTI followed by raw bytes, or a real message of every type
    mutated by the remaining bytes, three at a time (operation, position, value).
    """
    if len(data) < 2:
        return bytes(data)
    mode, rest = data[0] % 4, data[1:]
    if mode == 0:
        return bytes(rest)
    if mode == 1:
        return MTI_BYTES[rest[0] % len(MTI_BYTES)] + bytes(rest[1:])
    raw = bytearray(SEEDS[rest[0] % len(SEEDS)])
    ops = rest[1:]
    for i in range(0, len(ops) - 2, 3):
        op, where, value = ops[i], ops[i + 1], ops[i + 2]
        if not raw:
            break
        pos = (where * len(raw)) // 256
        kind = op % 5
        if kind == 0:
            raw[pos] ^= 1 << (value % 8)
        elif kind == 1:
            del raw[pos:pos + 1 + value % 20]
        elif kind == 2:
            raw[pos:pos] = bytes([value])
        elif kind == 3:
            raw[pos] = POKES[value % len(POKES)]
        else:
            raw[pos] = value
    return bytes(raw)


def test_shaped_frames_reach_deep_into_messages():
    # the mutator really makes near-misses, not only garbage the MTI check rejects
    assert shaped(bytes([2, 0])) == SEEDS[0]
    assert decode(shaped(bytes([2, 3]))) == decode(SEEDS[3])
    flipped = shaped(bytes([2, 3, 0, 200, 1]))
    assert len(flipped) == len(SEEDS[3]) and flipped != SEEDS[3]


@settings(max_examples=10000, deadline=None, derandomize=True, database=None,
          phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=48))
def test_fuzz_decode_raises_only_host_message_error(data):
    raw = shaped(data)
    try:
        msg = decode(raw)
    except HostMessageError:
        return
    # whatever decodes encodes again, to a message that decodes the same
    assert decode(encode(msg)) == msg


# -- a decoder written from docs/host-protocol.md --------------------------------------
# The wire and the document must not drift apart: this decoder knows nothing of
# drivers/iso8583_spec.py. It reads the formats of section 5's table (and section 2's
# framing rules) from the document itself and must read what the codec writes.

def _document_formats():
    import os
    import re
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "docs", "host-protocol.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    table = text.split("## 5. Data elements", 1)[1].split("### Notes", 1)[0]
    formats = {}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) > 3 and cells[0].isdigit():
            m = re.match(r"(n|an|ans|z|b|hex)(\.\.)?(\d+)( LLL?VAR)?", cells[2])
            assert m, "section 5 names a format this decoder cannot read: %r" % cells[2]
            prefix = {None: 0, " LLVAR": 2, " LLLVAR": 3}[m.group(4)]
            assert bool(m.group(2)) == bool(prefix), cells[2]
            formats[int(cells[0])] = (m.group(1), int(m.group(3)), prefix)
    return formats


def document_decode(raw, formats):
    msg = {"t": raw[:4].decode("ascii")}
    at = 12
    bits = int.from_bytes(raw[4:12], "big") << 64
    if raw[4] & 0x80:
        bits |= int.from_bytes(raw[12:20], "big")
        at = 20
    for field in range(2, 129):
        if not bits >> (128 - field) & 1:
            continue
        assert field in formats, "DE%d is on the wire but not in the document" % field
        cls, size, prefix = formats[field]
        if prefix:
            size = int(raw[at:at + prefix])
            at += prefix
        data = raw[at:at + size]
        at += size
        msg[str(field)] = data.hex().upper() if cls == "b" else data.decode("ascii")
    assert at == len(raw), "bytes left after the last field"
    return msg


def _captured():
    """The terminal's own requests, built by firmware/payments/hostmsg.py, as sent."""
    from firmware.core import config as schema
    from firmware.payments import hostmsg
    cfg = schema.defaults()
    rec = {"kind": "sale", "amount": 1250, "utc": "2026-02-01T13:05:00Z", "stan": "000042",
           "currency": "USD", "entry": "swipe", "rrn": "603213000042"}
    local = (2026, 2, 1, 14, 5, 0)
    tdes = hostmsg.financial_request(rec, cfg, local, TRACK2,
                                     ("FFFF9876543210E00001", "1B9C1845EB993A7A"))
    aes = hostmsg.financial_request(rec, cfg, local, TRACK2,
                                    ("123456789012345600000001",
                                     "A912150391AB65A67E52883D81CE2D15"))
    plain = hostmsg.financial_request(rec, cfg, local, TRACK2)
    return [tdes, aes, plain, hostmsg.reversal_request(rec, cfg, local, "000043")]


def test_document_decoder_reads_what_the_terminal_sends():
    formats = _document_formats()
    assert set(PROFILE_FIELDS) <= set(formats)
    assert formats[52] == ("b", 8, 0) and formats[61] == ("b", 16, 3)
    assert formats[53] == ("hex", 48, 2)
    for msg in _captured() + [SAMPLES[k] for k in sorted(SAMPLES)]:
        raw = encode(msg)
        assert document_decode(raw, formats) == decode(raw), msg["t"]
    tdes, aes = _captured()[:2]
    assert "52" in tdes and "61" not in tdes and len(tdes["53"]) == 20
    assert "61" in aes and "52" not in aes and len(aes["53"]) == 24
