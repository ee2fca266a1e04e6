"""ISO 9564-1 PIN blocks: format 0 (ISO-0, for TDES) and format 4 (ISO-4, for AES), and
wiping the buffers that held a PIN.

A format 0 block is the XOR of two 8-byte fields:

    PIN field  0 | N | P P P P (P ... ) | F ... F      N = PIN length, 4..12
    PAN field  0 0 0 0 | the 12 rightmost PAN digits, check digit excluded

The terminal encrypts the block at once (firmware/security/dukpt.py); decode() is for the host
simulator, which decrypts it again.

A format 4 block is made of two 16-byte fields and an AES key (ISO 9564-1:2017, 9.4.2):

    PIN field  4 | N | P P P P (P ... ) | A ... A | 16 random nibbles
               (16 nibbles up to the last fill A, then the random half)
    PAN field  M | the whole PAN, check digit included | 0 ... 0
               M = PAN length - 12 (0 for a PAN of 12 digits or fewer, which is
               padded on the left with zeros to 12)

    encipher:  A = AES(K, PIN field); B = A xor PAN field; block = AES(K, B)
    decipher:  B = AES-1(K, block); A = B xor PAN field; PIN field = AES-1(K, A)

The PAN is bound to the block by the XOR between the two passes, and the random half
makes every block of the same PIN and PAN different (format4_pin_field draws it afresh
each time, from os.urandom where the interpreter has it). AES (firmware/security/aes.py)
is imported only by the format 4 functions, so a TDES-only terminal never builds its
tables.

About wiping: a Python str (or bytes) cannot be overwritten, so the PIN is taken as a
bytearray of ASCII digits, which the caller zeroes with wipe() as soon as the block
is built. Every intermediate buffer this module creates for PIN digits is zeroed before
it returns; the block it returns is a bytearray for the caller to wipe too. Small ints
the interpreter passes through cannot be wiped on CPython or MicroPython; a certified
PIN pad (see DESIGN.md, "Card security") is the answer where that matters.
"""

MIN_PIN = 4
MAX_PIN = 12
MIN_PAN = 8       # ISO/IEC 7812-1 allows 8 to 19 digits
MAX_PAN = 19


def wipe(buf):
    """Overwrite a bytearray (or any mutable byte buffer) with zeros, in place."""
    if buf is None:
        return
    for i in range(len(buf)):
        buf[i] = 0


def _check_pin(pin):
    if isinstance(pin, str):
        raise TypeError("pass the PIN as a bytearray of ASCII digits, not a str: "
                        "a str cannot be wiped after use")
    n = len(pin)
    if n < MIN_PIN or n > MAX_PIN:
        raise ValueError("PIN must be %d to %d digits, got %d" % (MIN_PIN, MAX_PIN, n))
    for c in pin:
        if c < 48 or c > 57:
            # never echo the PIN, not even in part
            raise ValueError("PIN must contain only the digits 0-9")
    return n


def _pan_digits(pan):
    if isinstance(pan, (bytes, bytearray)):
        try:
            pan = bytes(pan).decode()
        except UnicodeError:
            raise ValueError("PAN must contain only the digits 0-9")
    if not isinstance(pan, str):
        raise TypeError("PAN must be a str or bytes of digits")
    n = len(pan)
    if n < MIN_PAN or n > MAX_PAN:
        raise ValueError("PAN must be %d to %d digits, got %d" % (MIN_PAN, MAX_PAN, n))
    for c in pan:
        if c not in "0123456789":
            raise ValueError("PAN must contain only the digits 0-9")
    return pan


def pan_field(pan):
    """The 8-byte PAN field: 0000 and the 12 rightmost digits before the check digit."""
    digits = _pan_digits(pan)[:-1]
    digits = ("000000000000" + digits)[-12:]
    field = bytearray(8)
    for i in range(12):
        nibble = ord(digits[i]) - 48
        pos = i + 4
        if pos & 1:
            field[pos >> 1] |= nibble
        else:
            field[pos >> 1] |= nibble << 4
    return field


def encode(pin, pan):
    """The clear ISO-0 PIN block for pin (bytearray of ASCII digits) and pan.

    Returns a new 8-byte bytearray: encrypt it, then wipe() it.
    """
    n = _check_pin(pin)
    pan_f = pan_field(pan)
    field = bytearray(b"\xff" * 8)
    field[0] = n                      # control nibble 0, then the length
    try:
        for i in range(n):
            digit = pin[i] - 48
            pos = i + 2
            if pos & 1:
                field[pos >> 1] = (field[pos >> 1] & 0xF0) | digit
            else:
                field[pos >> 1] = (digit << 4) | (field[pos >> 1] & 0x0F)
        block = bytearray(8)
        for i in range(8):
            block[i] = field[i] ^ pan_f[i]
        return block
    finally:
        wipe(field)


def decode(block, pan):
    """The PIN (bytearray of ASCII digits) in a clear ISO-0 block; the caller wipes it.

    Raises ValueError when the block is not format 0 for this PAN, which after
    decryption usually means the wrong key or the wrong PAN.
    """
    if len(block) != 8:
        raise ValueError("a PIN block is 8 bytes, got %d" % len(block))
    pan_f = pan_field(pan)
    field = bytearray(8)
    for i in range(8):
        field[i] = block[i] ^ pan_f[i]
    try:
        control = field[0] >> 4
        if control != 0:
            raise ValueError("not an ISO format 0 PIN block (format %d); wrong key or "
                             "wrong PAN?" % control)
        n = field[0] & 15
        if n < MIN_PIN or n > MAX_PIN:
            raise ValueError("ISO-0 PIN block gives a PIN length of %d (must be %d to %d); "
                             "wrong key or wrong PAN?" % (n, MIN_PIN, MAX_PIN))
        pin = bytearray(n)
        for pos in range(2, 16):
            byte = field[pos >> 1]
            nibble = byte & 15 if pos & 1 else byte >> 4
            if pos < n + 2:
                if nibble > 9:
                    wipe(pin)
                    raise ValueError("ISO-0 PIN block has a non-digit in the PIN; "
                                     "wrong key or wrong PAN?")
                pin[pos - 2] = 48 + nibble
            elif nibble != 15:
                wipe(pin)
                raise ValueError("ISO-0 PIN block filler is not all F; wrong key or wrong PAN?")
        return pin
    finally:
        wipe(field)


# -- ISO 9564-1 format 4 (AES) ----------------------------------------------------------

FORMAT4_BYTES = 16


def _random_bytes(n):
    """n unpredictable bytes: os.urandom on CPython and on MicroPython ports that have it,
    else MicroPython's random module (seeded from the port's hardware source)."""
    try:
        import os
        return os.urandom(n)
    except (ImportError, AttributeError, NotImplementedError):
        import random
        return bytes([random.getrandbits(8) for _ in range(n)])


def format4_pin_field(pin, fill=None):
    """The clear 16-byte format 4 PIN field of pin (bytearray of ASCII digits).

    fill: the 8 bytes of the random half (tests pass the published vector's); by default
    fresh random bytes. Returns a new bytearray: encipher it, then wipe() it.
    """
    n = _check_pin(pin)
    if fill is None:
        fill = _random_bytes(8)
    if len(fill) != 8:
        raise ValueError("the random half of a format 4 PIN field is 8 bytes, got %d" % len(fill))
    field = bytearray(b"\xaa" * 8) + bytearray(fill)
    field[0] = 0x40 | n               # control nibble 4, then the length
    for i in range(n):
        digit = pin[i] - 48
        pos = i + 2
        if pos & 1:
            field[pos >> 1] = (field[pos >> 1] & 0xF0) | digit
        else:
            field[pos >> 1] = (digit << 4) | (field[pos >> 1] & 0x0F)
    return field


def format4_pan_field(pan):
    """The 16-byte format 4 PAN field: M (the PAN's length - 12), the PAN, zeros."""
    digits = _pan_digits(pan)
    m = len(digits) - 12
    if m < 0:
        digits = ("000000000000" + digits)[-12:]
        m = 0
    nibbles = [m] + [ord(c) - 48 for c in digits]
    field = bytearray(FORMAT4_BYTES)
    for pos in range(len(nibbles)):
        if pos & 1:
            field[pos >> 1] |= nibbles[pos]
        else:
            field[pos >> 1] |= nibbles[pos] << 4
    return field


def _xor_into(buf, other):
    for i in range(FORMAT4_BYTES):
        buf[i] ^= other[i]


def format4_encipher_field(key, pin_field, pan):
    """The enciphered format 4 block of a clear 16-byte PIN field under AES key."""
    from firmware.security import aes
    if len(pin_field) != FORMAT4_BYTES:
        raise ValueError("a format 4 PIN field is 16 bytes, got %d" % len(pin_field))
    cipher = aes.AES(key)
    middle = None
    try:
        middle = cipher.encrypt_block(pin_field)          # intermediate block A
        _xor_into(middle, format4_pan_field(pan))          # intermediate block B
        return cipher.encrypt_block(middle)
    finally:
        cipher.wipe()
        wipe(middle)


def format4_encipher(key, pin, pan, fill=None):
    """The enciphered format 4 PIN block of pin (bytearray of ASCII digits) and pan
    under AES key (16, 24 or 32 bytes). The clear PIN field is wiped before this
    returns; the caller still wipes pin."""
    field = format4_pin_field(pin, fill)
    try:
        return format4_encipher_field(key, field, pan)
    finally:
        wipe(field)


def format4_decipher_field(key, block, pan):
    """The clear 16-byte PIN field (bytearray; wipe it) of an enciphered format 4 block."""
    from firmware.security import aes
    if len(block) != FORMAT4_BYTES:
        raise ValueError("a format 4 PIN block is 16 bytes, got %d" % len(block))
    pan_f = format4_pan_field(pan)
    cipher = aes.AES(key)
    middle = None
    try:
        middle = cipher.decrypt_block(block)               # intermediate block B
        _xor_into(middle, pan_f)                           # intermediate block A
        return cipher.decrypt_block(middle)
    finally:
        cipher.wipe()
        wipe(middle)


def format4_pin(field):
    """The PIN (bytearray of ASCII digits; the caller wipes it) in a clear format 4
    PIN field. ValueError when it is not one, which after deciphering usually means the
    wrong key or the wrong PAN."""
    if len(field) != FORMAT4_BYTES:
        raise ValueError("a format 4 PIN field is 16 bytes, got %d" % len(field))
    control = field[0] >> 4
    if control != 4:
        raise ValueError("not an ISO format 4 PIN block (format %d); wrong key or wrong PAN?"
                         % control)
    n = field[0] & 15
    if n < MIN_PIN or n > MAX_PIN:
        raise ValueError("ISO-4 PIN block gives a PIN length of %d (must be %d to %d); "
                         "wrong key or wrong PAN?" % (n, MIN_PIN, MAX_PIN))
    pin = bytearray(n)
    for pos in range(2, 16):             # the random half (nibbles 16-31) is not checked
        byte = field[pos >> 1]
        nibble = byte & 15 if pos & 1 else byte >> 4
        if pos < n + 2:
            if nibble > 9:
                wipe(pin)
                raise ValueError("ISO-4 PIN block has a non-digit in the PIN; "
                                 "wrong key or wrong PAN?")
            pin[pos - 2] = 48 + nibble
        elif nibble != 10:
            wipe(pin)
            raise ValueError("ISO-4 PIN block fill is not all A; wrong key or wrong PAN?")
    return pin


def format4_decipher(key, block, pan):
    """The PIN (bytearray of ASCII digits; the caller wipes it) in an enciphered
    format 4 block. ValueError when the block does not decipher to a format 4 PIN field
    for this PAN."""
    field = format4_decipher_field(key, block, pan)
    try:
        return format4_pin(field)
    finally:
        wipe(field)
