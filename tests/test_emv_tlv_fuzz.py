"""Hypothesis on firmware.cards.emv.tlv (CPython): any bytes parse or raise TlvError, and what
is built parses back the same."""
from hypothesis import given, settings, strategies as st

from firmware.cards.emv import tlv
from firmware.cards.emv.tlv import TlvError

PRIMITIVE_TAGS = st.sampled_from([0x5A, 0x57, 0x82, 0x94, 0x9F26, 0x9F10, 0x5F2A, 0xDF8126,
                                  0x9F4B, 0x1F20])
CONSTRUCTED_TAGS = st.sampled_from([0x70, 0x77, 0x6F, 0xA5, 0xBF0C, 0x61])


def objects(depth=3):
    prim = st.tuples(PRIMITIVE_TAGS, st.binary(max_size=300))
    if depth == 0:
        return prim
    return st.one_of(prim, st.tuples(CONSTRUCTED_TAGS, st.lists(objects(depth - 1), max_size=4)))


def encode(obj):
    tag, value = obj
    if isinstance(value, list):
        return tlv.encode(tag, b"".join(encode(v) for v in value))
    return tlv.encode(tag, value)


def shape(objs):
    return [(o.tag, shape(o.children) if o.children is not None else o.value) for o in objs]


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_any_bytes_parse_or_raise_tlv_error(data):
    try:
        objs = tlv.parse(data)
    except TlvError:
        return
    tlv.flatten(objs)
    # whatever parsed re-encodes to the same bytes once padding is gone
    again = tlv.parse(b"".join(tlv.encode(o.tag, o.value) for o in objs))
    assert shape(again) == shape(objs)


@settings(max_examples=300)
@given(st.lists(objects(), max_size=5), st.lists(st.sampled_from([b"\x00", b"\xff"]), max_size=3))
def test_built_objects_parse_back(objs, padding):
    pad = b"".join(padding)
    data = pad + pad.join(encode(o) for o in objs) + pad
    assert shape(tlv.parse(data)) == [(t, _shape_in(v)) for t, v in objs]


def _shape_in(value):
    if isinstance(value, list):
        return [(t, _shape_in(v)) for t, v in value]
    return value


@settings(max_examples=300)
@given(st.binary(max_size=60), st.dictionaries(PRIMITIVE_TAGS, st.binary(max_size=20)))
def test_dol_parse_and_fill_never_raise_anything_else(dol, data):
    try:
        entries = tlv.parse_dol(dol)
    except TlvError:
        return
    out = tlv.fill_dol(entries, data)
    assert len(out) == sum(n for _, n in entries)


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=80))
def test_mutated_templates(data):
    base = tlv.encode(0x77, [(0x9F27, b"\x80"), (0x9F36, b"\x00\x01"), (0x9F26, bytes(8))])
    for blob in (base[:len(data) % len(base)], base + data, data + base):
        try:
            tlv.parse(blob)
        except TlvError:
            pass
