"""BER-TLV as EMV uses it (EMV 4.3 Book 3 Annex B), and data object lists (Book 3 5.4).

A tag is kept as an int made of its bytes (0x9F26, 0x5F2A, 0xBF0C), so tags compare and
hash cheaply on MicroPython; tag_hex() and tag_int() convert to and from "9F26".

What a card may send, and what this module does with it:
- one-byte tags, and multi-byte tags (first byte's low five bits all set, then bytes
  with b8 set while more follow); at most four bytes, which covers every EMV tag;
- lengths in short form (0..127) or long form 81, 82, 83, 84; the indefinite form (80)
  and longer forms are errors, as is a length running past the data;
- 00 and FF bytes before, between and after objects (Annex B allows that padding);
- constructed objects (b6 of the first tag byte) parsed into their children, at most
  MAX_DEPTH levels deep so a hostile card cannot exhaust the stack.
Anything else raises TlvError (a ValueError), and nothing else is raised on any bytes.
"""

MAX_DEPTH = 8
MAX_TAG_BYTES = 4


class TlvError(ValueError):
    """Bytes that are not BER-TLV (or a DOL) as EMV allows it."""


class Tlv:
    """One data object: tag (int), value (bytes), children (list of Tlv for a
    constructed object, None for a primitive one)."""

    __slots__ = ("tag", "value", "children")

    def __init__(self, tag, value, children=None):
        self.tag = tag
        self.value = value
        self.children = children

    @property
    def constructed(self):
        return self.children is not None

    def find(self, tag):
        """The first object with tag among this one's descendants, or None."""
        return find(self.children or (), tag)

    def __repr__(self):
        if self.children is None:
            return "Tlv(%s, %d bytes)" % (tag_hex(self.tag), len(self.value))
        return "Tlv(%s, %r)" % (tag_hex(self.tag), self.children)


# -- tags ------------------------------------------------------------------------------

def first_byte(tag):
    while tag > 0xFF:
        tag >>= 8
    return tag


def is_constructed(tag):
    return bool(first_byte(tag) & 0x20)


def tag_hex(tag):
    """0x9F26 -> '9F26'."""
    text = "%X" % tag
    return ("0" + text) if len(text) & 1 else text


def tag_int(text):
    """'9F26' -> 0x9F26; an int stays as it is."""
    if isinstance(text, int):
        return text
    try:
        return int(text, 16)
    except (TypeError, ValueError):
        raise TlvError("not a tag: %r" % (text,))


def encode_tag(tag):
    if tag <= 0:
        raise TlvError("tag %r cannot be encoded" % (tag,))
    out = []
    while tag:
        out.append(tag & 0xFF)
        tag >>= 8
    out.reverse()
    return bytes(out)


def _read_tag(data, pos, end):
    """(tag, position after it); pos points at a byte that is not padding."""
    b = data[pos]
    tag = b
    pos += 1
    if b & 0x1F == 0x1F:
        count = 1
        while True:
            if pos >= end:
                raise TlvError("tag %X cut short" % tag)
            b = data[pos]
            tag = (tag << 8) | b
            pos += 1
            count += 1
            if count > MAX_TAG_BYTES:
                raise TlvError("tag longer than %d bytes" % MAX_TAG_BYTES)
            if not b & 0x80:
                break
    return tag, pos


def _read_length(data, pos, end):
    if pos >= end:
        raise TlvError("length missing")
    b = data[pos]
    pos += 1
    if b < 0x80:
        return b, pos
    count = b & 0x7F
    if count == 0:
        raise TlvError("indefinite length is not allowed")
    if count > 4:
        raise TlvError("length of %d bytes is not allowed" % count)
    if pos + count > end:
        raise TlvError("length cut short")
    n = 0
    for i in range(count):
        n = (n << 8) | data[pos + i]
    return n, pos + count


def encode_length(n):
    if n < 0:
        raise TlvError("negative length")
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    if n <= 0xFFFF:
        return bytes((0x82, n >> 8, n & 0xFF))
    if n <= 0xFFFFFF:
        return bytes((0x83, n >> 16, (n >> 8) & 0xFF, n & 0xFF))
    raise TlvError("length %d too large" % n)


# -- parsing ---------------------------------------------------------------------------

def parse(data, _depth=0):
    """Every object in data, in order, as a list of Tlv (children parsed)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TlvError("TLV data must be bytes, not %s" % type(data).__name__)
    if _depth > MAX_DEPTH:
        raise TlvError("constructed objects nested more than %d deep" % MAX_DEPTH)
    data = bytes(data)
    out = []
    pos = 0
    end = len(data)
    while pos < end:
        b = data[pos]
        if b == 0x00 or b == 0xFF:
            pos += 1
            continue
        tag, pos = _read_tag(data, pos, end)
        length, pos = _read_length(data, pos, end)
        if pos + length > end:
            raise TlvError("%s: length %d runs past the data (%d left)"
                           % (tag_hex(tag), length, end - pos))
        value = data[pos:pos + length]
        pos += length
        if b & 0x20:
            out.append(Tlv(tag, value, parse(value, _depth + 1)))
        else:
            out.append(Tlv(tag, value))
    return out


def parse_one(data, tag=None):
    """The single object data holds (padding allowed around it); with tag, it must
    carry that tag."""
    objs = parse(data)
    if len(objs) != 1:
        raise TlvError("expected one object, found %d" % len(objs))
    if tag is not None and objs[0].tag != tag:
        raise TlvError("expected %s, found %s" % (tag_hex(tag), tag_hex(objs[0].tag)))
    return objs[0]


def find(objs, tag):
    """Depth-first: the first object with tag in objs and their descendants."""
    for obj in objs:
        if obj.tag == tag:
            return obj
        if obj.children:
            hit = find(obj.children, tag)
            if hit is not None:
                return hit
    return None


def find_value(objs, tag, default=None):
    hit = find(objs, tag)
    return default if hit is None else hit.value


def flatten(objs, into=None, strict=False):
    """tag -> value for every primitive object in objs, descending into templates.

    The first occurrence wins; with strict, a primitive tag seen twice raises TlvError
    (Book 3 10.2: a card's records must not repeat a primitive object).
    """
    if into is None:
        into = {}
    for obj in objs:
        if obj.children is not None:
            flatten(obj.children, into, strict)
        elif obj.tag in into:
            if strict:
                raise TlvError("%s appears more than once" % tag_hex(obj.tag))
        else:
            into[obj.tag] = obj.value
    return into


# -- building --------------------------------------------------------------------------

def encode(tag, value):
    """One object; value is bytes, or a list of (tag, value) pairs for a template."""
    if isinstance(value, (list, tuple)):
        value = encode_all(value)
    value = bytes(value)
    return encode_tag(tag) + encode_length(len(value)) + value


def encode_all(pairs):
    """Objects one after another; pairs is a list of (tag, value) or a dict."""
    if isinstance(pairs, dict):
        pairs = pairs.items()
    out = b""
    for tag, value in pairs:
        out += encode(tag_int(tag), value)
    return out


# -- data object lists (PDOL, CDOL1, CDOL2, DDOL, TDOL) ---------------------------------

# Format n: right-justified, padded and truncated on the left.
NUMERIC_TAGS = frozenset((
    0x5F24, 0x5F25, 0x5F28, 0x5F2A, 0x5F34, 0x5F36, 0x9A, 0x9C, 0x9F02, 0x9F03, 0x9F11,
    0x9F15, 0x9F1A, 0x9F21, 0x9F3C, 0x9F3D, 0x9F41, 0x9F42, 0x9F44,
))
# Format cn: left-justified, padded on the right with F nibbles.
COMPRESSED_NUMERIC_TAGS = frozenset((0x5A, 0x9F20))


def de55_hex(tags):
    """ISO 8583 DE55 as upper-case hex from a kernel's {tag hex: bytes} dict."""
    data = encode_all([(tag_int(tag), value) for tag, value in tags.items()])
    return "".join("%02X" % b for b in data)


def parse_dol(dol):
    """[(tag, length), ...] of a DOL: tags and lengths with no values."""
    if not isinstance(dol, (bytes, bytearray, memoryview)):
        raise TlvError("a DOL must be bytes")
    dol = bytes(dol)
    out = []
    pos = 0
    end = len(dol)
    while pos < end:
        tag, pos = _read_tag(dol, pos, end)
        length, pos = _read_length(dol, pos, end)
        if length > 0xFF:
            raise TlvError("DOL entry %s asks for %d bytes" % (tag_hex(tag), length))
        out.append((tag, length))
    return out


def fill_dol(dol, data):
    """The concatenated values a DOL asks for, from data (tag int -> bytes).

    Book 3 5.4: a missing object, or a constructed one, gives zeros; a value of another
    length is padded or truncated by its format (n on the left, cn with F on the
    right, anything else on the right with zeros).
    """
    if isinstance(dol, (bytes, bytearray, memoryview)):
        dol = parse_dol(dol)
    out = bytearray()
    for tag, length in dol:
        value = None if is_constructed(tag) else data.get(tag)
        if value is None:
            out += bytes(length)
            continue
        value = bytes(value)
        have = len(value)
        if have == length:
            out += value
        elif tag in NUMERIC_TAGS:
            if have > length:
                out += value[have - length:]
            else:
                out += bytes(length - have) + value
        elif have > length:
            out += value[:length]
        elif tag in COMPRESSED_NUMERIC_TAGS:
            out += value + b"\xff" * (length - have)
        else:
            out += value + bytes(length - have)
    return bytes(out)


def dol_has(dol, tag):
    if isinstance(dol, (bytes, bytearray, memoryview)):
        dol = parse_dol(dol)
    for t, _ in dol:
        if t == tag:
            return True
    return False
