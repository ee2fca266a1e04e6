"""Magnetic stripe readers: USB HID keyboard wedges (evdev) and serial readers.

Both hand one swipe at a time to the terminal's loop: on_swipe(track1, track2) with
each track as the reader sent it (a str, sentinels and any LRC included; None for a
track that was not there), or on_error(reason) with a firmware.cards.magstripe error code
when what arrived cannot be a swipe (a partial one, a flood). Reading the tracks and
checking the card is the core's job (firmware.cards.magstripe.parse_swipe).

Neither driver blocks or polls: the reactor wakes them when their descriptor is
readable, and one reactor timer per reader ends a swipe that stops half way. Swipes
are assembled in a fixed-size bytearray that is zeroed once the tracks are handed
over (see firmware/cards/magstripe.py for what can and cannot be wiped in Python), and a
reader that never stops sending fills it once and no further. What they share with
the barcode scanners (the keymap, the line assembly, the evdev and serial life) is
drivers/wedge.py.
"""
import logging

from drivers import wedge
from drivers.wedge import END_KEYS
from drivers.wedge import US_KEYMAP, keystrokes  # noqa: F401  (where tests and the simulator look)
from firmware.cards.magstripe import UNREADABLE, split_tracks

log = logging.getLogger("handpos.msr")

# A reader sends a swipe in well under 100 ms; 300 ms of silence in the middle of one
# means the card left the head (or the cable) half way.
GAP_MS = 300
# Serial readers end every track with CR/LF; a swipe is complete when no further
# track follows within this time.
SETTLE_MS = 100
# Three full tracks (79 + 40 + 107 characters) and separators fit; nothing longer is
# a swipe.
MAX_SWIPE_CHARS = 256

# Put in place of a key the keymap lacks: it is in no track alphabet, so the track it
# lands in fails to parse instead of reading as a different card.
UNKNOWN_CHAR = 0x7F


class SwipeAssembler(wedge.LineAssembler):
    """Characters in, whole swipes out; shared by both readers.

    add(byte) for each character, end() for a terminator. With settle_ms 0 a
    terminator ends the swipe at once (HID: one Enter per swipe); otherwise the swipe
    ends settle_ms after the last terminator, so tracks sent on separate lines stay
    together (serial). Silence of gap_ms with no terminator discards what came and
    reports UNREADABLE. At most max_chars are kept: more turn the swipe into one
    UNREADABLE when it ends.
    """

    def __init__(self, reactor, on_swipe, on_error=None, gap_ms=GAP_MS, settle_ms=0,
                 max_chars=MAX_SWIPE_CHARS, name="msr"):
        wedge.LineAssembler.__init__(self, reactor, self._swiped, self._unreadable,
                                     gap_ms, settle_ms, max_chars, name, log)
        self.on_swipe = on_swipe
        self.on_error = on_error
        self.swipes = 0          # swipes handed to on_swipe

    def _swiped(self, text):
        track1, track2 = split_tracks(text)
        if track1 is None and track2 is None:
            self.fail(wedge.GARBAGE, "no track in what the reader sent")
            return
        self.swipes += 1
        self.on_swipe(track1, track2)

    def _unreadable(self, reason):
        if self.on_error is not None:
            self.on_error(UNREADABLE)


class HidMsr(wedge.WedgeInput):
    """A USB HID keyboard-wedge magstripe reader on its evdev node.

    The reader types each swipe as key presses and ends it with Enter. This decodes
    them with US_KEYMAP (letters always as capitals: tracks have no lower case, and
    some readers follow the host's Caps Lock), ignores auto-repeat, and grabs the
    device so the console does not also receive the card number as typed text.
    """

    WHAT = "card reader"
    CHECK = "its USB cable"
    LEAKS = "swipes"
    GRAB_FAILED = "swipes may also reach the console as typed text"
    _log = log

    def __init__(self, device, reactor, on_swipe, on_dead=None, on_error=None,
                 gap_ms=GAP_MS, max_chars=MAX_SWIPE_CHARS, keymap=None):
        wedge.WedgeInput.__init__(self, device, reactor, on_dead, keymap, END_KEYS)
        self.swipe = self.line = SwipeAssembler(
            reactor, on_swipe, on_error, gap_ms=gap_ms, settle_ms=0, max_chars=max_chars,
            name="card reader %s" % self._name())

    def _typed(self, plain, shifted, shift):
        byte = shifted if shift else plain
        if 0x61 <= byte <= 0x7A:
            byte -= 0x20
        return byte

    def _unknown_key(self, code):
        self.swipe.add(UNKNOWN_CHAR)

    def _selftest_running(self, name):
        s = self.swipe
        detail = "card reader %s ok: %d swipes, %d unreadable" % (name, s.swipes, s.errors)
        return True, detail + self._layout_note() + self._grab_note()


class SerialMsr(wedge.SerialLineInput):
    """A magstripe reader on a serial line (RS-232, USB CDC-ACM, a UART).

    port: an open port (anything with fileno(), such as serial.Serial, or a
    descriptor), owned by the caller; this makes it non-blocking. The reader sends each
    track ending in CR, LF or both; tracks closer together than settle_ms are one
    swipe (settle_ms 0: every line is a swipe, for readers that send all tracks on
    one line). Bytes that are neither printable ASCII nor line ends (line noise at power
    up) are counted and dropped.
    """

    WHAT = "serial card reader"

    def __init__(self, port, reactor, on_swipe, on_error=None, on_dead=None,
                 gap_ms=GAP_MS, settle_ms=SETTLE_MS, max_chars=MAX_SWIPE_CHARS,
                 name="serial card reader"):
        wedge.SerialLineInput.__init__(self, port, reactor, on_dead, name, log)
        self.swipe = self.line = SwipeAssembler(
            reactor, on_swipe, on_error, gap_ms=gap_ms, settle_ms=settle_ms,
            max_chars=max_chars, name=name)

    def _accept(self, byte):
        return 0x20 <= byte < 0x7F or byte == 0x09

    def _selftest_running(self):
        s = self.swipe
        return ("%s ok: %d swipes, %d unreadable" % (self.name, s.swipes, s.errors)
                + self._noise_note())


class MsrPortError(wedge.SerialPortError):
    """The reader's serial port cannot be used; the message says what to check."""


def open_serial(path, baudrate=9600, **options):
    """Open a serial reader's port with pyserial, exclusively and non-blocking."""
    return wedge.open_serial(path, baudrate, "card reader", MsrPortError, **options)
