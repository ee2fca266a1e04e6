"""ISO 9564-1 format 0 (ISO-0) PIN blocks, and wiping the buffers that held a PIN.

A format 0 block is the XOR of two 8-byte fields:

    PIN field  0 | N | P P P P (P ... ) | F ... F      N = PIN length, 4..12
    PAN field  0 0 0 0 | the 12 rightmost PAN digits, check digit excluded

The terminal encrypts the block at once (firmware/security/dukpt.py); decode() is for the host
simulator, which decrypts it again.

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
