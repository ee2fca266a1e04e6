"""firmware.cards.emv.tlv on both Pythons: BER-TLV as EMV writes it, DOLs, and garbage.

MicroPython has no hypothesis, so the fuzz test draws from a small seeded LCG;
tests/test_emv_tlv_fuzz.py adds hypothesis on CPython.
"""
from firmware.cards.emv import tlv
from firmware.cards.emv.tlv import Tlv, TlvError


def h(text):
    import binascii
    return binascii.unhexlify(text.replace(" ", ""))


def raises(fn, *args):
    try:
        fn(*args)
    except TlvError:
        return True
    return False


def test_one_byte_tag_short_length():
    objs = tlv.parse(h("5A 08 4761739001010119"))
    assert len(objs) == 1
    assert objs[0].tag == 0x5A and objs[0].value == h("4761739001010119")
    assert not objs[0].constructed


def test_multi_byte_tags():
    objs = tlv.parse(h("9F26 08 1122334455667788 5F2A 02 0978 DF8126 01 07"))
    assert [o.tag for o in objs] == [0x9F26, 0x5F2A, 0xDF8126]
    assert objs[2].value == b"\x07"


def test_long_lengths():
    value = bytes(range(200))
    data = h("9F10 81 C8") + value
    assert tlv.parse(data)[0].value == value
    big = bytes(300)
    data = h("70 82 012C") + big
    assert tlv.parse(data)[0].value == big
    assert tlv.parse(h("50 83 000003") + b"VIS")[0].value == b"VIS"


def test_constructed_templates_are_parsed():
    data = h("6F 1A 84 07 A0000000031010 A5 0F 50 04 56495341 87 01 01 9F38 03 9F6604")
    fci = tlv.parse_one(data, 0x6F)
    assert fci.constructed
    assert fci.find(0x84).value == h("A0000000031010")
    assert fci.find(0x50).value == b"VISA"
    assert fci.find(0x9F38).value == h("9F6604")
    flat = tlv.flatten([fci])
    assert flat[0x87] == b"\x01" and 0xA5 not in flat


def test_padding_between_objects_is_skipped():
    data = h("00 00 5A 02 4761 FF FF 00 5F24 03 251231 00 FF")
    objs = tlv.parse(data)
    assert [o.tag for o in objs] == [0x5A, 0x5F24]
    # inside a template too
    rec = tlv.parse_one(h("70 0B 00 5A 02 4761 FF 9F 07 02 FF00"), 0x70)
    assert [c.tag for c in rec.children] == [0x5A, 0x9F07]


def test_empty_value_and_empty_input():
    assert tlv.parse(b"") == []
    assert tlv.parse(h("00 FF")) == []
    assert tlv.parse(h("83 00"))[0].value == b""


def test_malformed_input_raises_tlv_error():
    bad = [
        "5A 08 4761",           # value runs past the end
        "9F",                   # tag cut short
        "9F 26",                # length missing
        "5A 80 00",             # indefinite length
        "5A 85 0000000001 00",  # five length bytes
        "5A 82 01",             # length cut short
        "9F FF FF FF 01 00",    # tag longer than four bytes
        "70 03 5A 05 01",       # child runs past its template
    ]
    for text in bad:
        assert raises(tlv.parse, h(text)), text


def test_tlv_error_is_a_value_error():
    assert issubclass(TlvError, ValueError)
    assert raises(tlv.parse, "not bytes")


def test_nesting_depth_is_limited():
    data = h("5A 01 00")
    for _ in range(tlv.MAX_DEPTH + 2):
        data = tlv.encode(0x70, data)
    assert raises(tlv.parse, data)
    ok = h("5A 01 00")
    for _ in range(tlv.MAX_DEPTH):
        ok = tlv.encode(0x70, ok)
    assert tlv.find_value(tlv.parse(ok), 0x5A) == b"\x00"


def test_parse_one_wants_exactly_one_object():
    assert raises(tlv.parse_one, h("5A 01 00 5A 01 00"))
    assert raises(tlv.parse_one, b"")
    assert raises(tlv.parse_one, h("5A 01 00"), 0x70)
    assert tlv.parse_one(h("FF 5A 01 00 00")).tag == 0x5A


def test_flatten_strict_rejects_a_repeated_primitive():
    objs = tlv.parse(h("70 06 5A 01 01 5A 01 02"))
    assert tlv.flatten(objs)[0x5A] == b"\x01"
    assert raises(tlv.flatten, objs, None, True)


def test_encode_round_trips():
    for tag, value in ((0x5A, b"\x12"), (0x9F10, bytes(40)), (0xDF8126, b""),
                       (0x9F4B, bytes(range(250))), (0x70, bytes(400))):
        data = tlv.encode(tag, value)
        obj = tlv.parse(data)[0]
        assert obj.tag == tag and obj.value == value
    tpl = tlv.encode(0x77, [(0x9F27, b"\x80"), (0x9F36, b"\x00\x01")])
    assert tpl == h("77 09 9F27 01 80 9F36 02 0001")
    assert tlv.encode_all({"5A": b"\x01"}) == h("5A 01 01")


def test_encode_length_forms():
    assert tlv.encode_length(0x7F) == h("7F")
    assert tlv.encode_length(0x80) == h("81 80")
    assert tlv.encode_length(0x100) == h("82 0100")
    assert tlv.encode_length(0x10000) == h("83 010000")


def test_tag_helpers():
    assert tlv.tag_hex(0x9F26) == "9F26" and tlv.tag_hex(0x5A) == "5A"
    assert tlv.tag_int("9F26") == 0x9F26 and tlv.tag_int(0x95) == 0x95
    assert tlv.is_constructed(0x70) and tlv.is_constructed(0xBF0C)
    assert not tlv.is_constructed(0x9F26)
    assert tlv.encode_tag(0xDF8126) == h("DF8126")


def test_parse_dol():
    dol = tlv.parse_dol(h("9F02 06 9F03 06 9F1A 02 95 05 5F2A 02 9A 03 9C 01 9F37 04"))
    assert dol == [(0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5), (0x5F2A, 2),
                   (0x9A, 3), (0x9C, 1), (0x9F37, 4)]
    assert raises(tlv.parse_dol, h("9F02"))
    assert tlv.dol_has(h("9F3704"), 0x9F37)


def test_fill_dol_present_missing_and_constructed():
    data = {0x9F02: h("000000001000"), 0x9F37: h("DEADBEEF"), 0x70: h("5A0100")}
    out = tlv.fill_dol(h("9F02 06 9F37 04 9F66 04 70 03"), data)
    assert out == h("000000001000 DEADBEEF 00000000 000000")


def test_fill_dol_pads_and_truncates_by_format():
    data = {0x9F02: h("001000"),          # n: pad left
            0x9A: h("20251231"),          # n: truncate left
            0x5A: h("4761"),              # cn: pad right with F
            0x9F1E: b"ABCDEFGHIJ",        # an: truncate right
            0x9F10: h("0102")}            # b: pad right with zeros
    out = tlv.fill_dol(h("9F02 06 9A 03 5A 04 9F1E 08 9F10 04"), data)
    assert out == h("000000001000 251231 4761FFFF") + b"ABCDEFGH" + h("01020000")


def _lcg(seed):
    state = [seed]

    def nxt(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return state[0] % n
    return nxt


def test_fuzz_any_bytes_parse_or_raise_tlv_error():
    rnd = _lcg(20250601)
    seeds = [h("6F 1A 84 07 A0000000031010 A5 0F 50 04 56495341 87 01 01 9F38 03 9F6604"),
             h("77 12 82 02 1980 94 0C 08010100 10010301 18010200")]
    for i in range(400):
        if i % 2:
            data = bytes(rnd(256) for _ in range(rnd(40)))
        else:
            data = seeds[rnd(len(seeds))]
            for _ in range(1 + rnd(4)):
                op = rnd(3)
                at = rnd(len(data) + 1)
                if op == 0 and at < len(data):         # change a byte
                    data = data[:at] + bytes((rnd(256),)) + data[at + 1:]
                elif op == 1:                          # cut the end off
                    data = data[:at]
                else:                                  # insert a byte
                    data = data[:at] + bytes((rnd(256),)) + data[at:]
        try:
            objs = tlv.parse(data)
        except TlvError:
            continue
        for obj in objs:
            assert isinstance(obj, Tlv)
        tlv.flatten(objs)
        try:
            tlv.parse_dol(data)
        except TlvError:
            pass


def test_fuzz_build_then_parse_round_trips():
    rnd = _lcg(7)
    tags = (0x5A, 0x57, 0x9F26, 0x9F10, 0x5F2A, 0xDF8126, 0x9F4B)
    for _ in range(150):
        pairs = []
        for _ in range(1 + rnd(5)):
            pairs.append((tags[rnd(len(tags))], bytes(rnd(256) for _ in range(rnd(300)))))
        data = tlv.encode_all(pairs)
        back = [(o.tag, o.value) for o in tlv.parse(tlv.encode(0x70, data))[0].children]
        assert back == pairs
