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
reader that never stops sending fills it once and no further.
"""
import logging
import os

from evdev import ecodes

from drivers.evdev_input import EvdevInput
from firmware.cards.magstripe import UNREADABLE, split_tracks

log = logging.getLogger("handpos.msr")

KEY_DOWN, KEY_UP, KEY_REPEAT = 1, 0, 2

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

# The US layout, as keyboard-wedge readers type by default: evdev key -> (plain, with
# shift). It covers track 1's whole alphabet (0x20..0x5F) and track 2's.
US_KEYMAP = {
    "KEY_SPACE": (" ", " "),
    "KEY_1": ("1", "!"), "KEY_2": ("2", "@"), "KEY_3": ("3", "#"), "KEY_4": ("4", "$"),
    "KEY_5": ("5", "%"), "KEY_6": ("6", "^"), "KEY_7": ("7", "&"), "KEY_8": ("8", "*"),
    "KEY_9": ("9", "("), "KEY_0": ("0", ")"),
    "KEY_MINUS": ("-", "_"), "KEY_EQUAL": ("=", "+"),
    "KEY_LEFTBRACE": ("[", "{"), "KEY_RIGHTBRACE": ("]", "}"), "KEY_BACKSLASH": ("\\", "|"),
    "KEY_SEMICOLON": (";", ":"), "KEY_APOSTROPHE": ("'", '"'), "KEY_GRAVE": ("`", "~"),
    "KEY_COMMA": (",", "<"), "KEY_DOT": (".", ">"), "KEY_SLASH": ("/", "?"),
    "KEY_TAB": ("\t", "\t"),            # some readers put a Tab between tracks
    "KEY_KP0": ("0", "0"), "KEY_KP1": ("1", "1"), "KEY_KP2": ("2", "2"),
    "KEY_KP3": ("3", "3"), "KEY_KP4": ("4", "4"), "KEY_KP5": ("5", "5"),
    "KEY_KP6": ("6", "6"), "KEY_KP7": ("7", "7"), "KEY_KP8": ("8", "8"),
    "KEY_KP9": ("9", "9"), "KEY_KPMINUS": ("-", "-"), "KEY_KPPLUS": ("+", "+"),
    "KEY_KPASTERISK": ("*", "*"), "KEY_KPSLASH": ("/", "/"), "KEY_KPDOT": (".", "."),
    "KEY_KPEQUAL": ("=", "="),
}
for _letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    US_KEYMAP["KEY_" + _letter] = (_letter.lower(), _letter)
del _letter

SHIFT_KEYS = ("KEY_LEFTSHIFT", "KEY_RIGHTSHIFT")
END_KEYS = ("KEY_ENTER", "KEY_KPENTER")
# Keys that type nothing: pressed on their own they change nothing in a swipe.
SILENT_KEYS = ("KEY_LEFTCTRL", "KEY_RIGHTCTRL", "KEY_LEFTALT", "KEY_RIGHTALT",
               "KEY_LEFTMETA", "KEY_RIGHTMETA", "KEY_CAPSLOCK", "KEY_NUMLOCK",
               "KEY_SCROLLLOCK")


def compile_keymap(keymap):
    """{evdev key name: (plain, shifted)} -> {key code: (plain byte, shifted byte)}."""
    codes = {}
    for name, (plain, shifted) in keymap.items():
        code = ecodes.ecodes.get(name)
        if code is None or not name.startswith("KEY_"):
            raise ValueError("msr: %r in the keymap is not an evdev key name" % name)
        codes[code] = (ord(plain), ord(shifted))
    return codes


def keystrokes(text, keymap=None):
    """The (type, code, value) events a wedge reader sends to type text and Enter:
    shift held around shifted characters, SYN_REPORT after each key event. For the
    simulator's virtual swipe and for tests."""
    inverse = {}
    for name, (plain, shifted) in (keymap or US_KEYMAP).items():
        code = ecodes.ecodes[name]
        # first listed wins: the main block's KEY_1 rather than KEY_KP1 for '1'
        inverse.setdefault(plain, (code, False))
        if shifted != plain:
            inverse.setdefault(shifted, (code, True))
    syn = (ecodes.EV_SYN, ecodes.SYN_REPORT, 0)
    shift = ecodes.KEY_LEFTSHIFT
    out = []
    for ch in text:
        if ch not in inverse:
            raise ValueError("msr: no key types %r" % ch)
        code, shifted = inverse[ch]
        if shifted:
            out += [(ecodes.EV_KEY, shift, KEY_DOWN), syn]
        out += [(ecodes.EV_KEY, code, KEY_DOWN), syn, (ecodes.EV_KEY, code, KEY_UP), syn]
        if shifted:
            out += [(ecodes.EV_KEY, shift, KEY_UP), syn]
    out += [(ecodes.EV_KEY, ecodes.KEY_ENTER, KEY_DOWN), syn,
            (ecodes.EV_KEY, ecodes.KEY_ENTER, KEY_UP), syn]
    return out


class SwipeAssembler:
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
        self.reactor = reactor
        self.on_swipe = on_swipe
        self.on_error = on_error
        self.gap_ms = gap_ms
        self.settle_ms = settle_ms
        self.name = name
        # Fixed size, written in place: no reallocation leaves copies of a track in
        # freed memory, and zeroing it really removes the characters.
        self._buf = bytearray(max(1, max_chars))
        self._n = 0
        self._overflow = False
        self._ended = False
        self._last = 0
        self._timer = None
        self.swipes = 0          # swipes handed to on_swipe
        self.errors = 0          # swipes reported to on_error
        self.overflows = 0       # swipes longer than max_chars
        self.last_error = None

    @property
    def pending(self):
        """Characters of a swipe in progress."""
        return self._n

    @property
    def busy(self):
        return self._n > 0 or self._overflow

    def add(self, byte):
        self._last = self.reactor.clock()
        if self._ended:
            self._ended = False     # more after a line end: the gap rule again
        if not self._overflow:
            if self._n < len(self._buf):
                self._buf[self._n] = byte
                self._n += 1
            else:
                self._zero()
                self._overflow = True
                self.overflows += 1
        self._arm()

    def end(self):
        if not self.busy:
            return                  # a line end on its own: nothing was swiped
        if self.settle_ms <= 0:
            self._finish()
            return
        self._ended = True
        self._last = self.reactor.clock()
        self._cancel_timer()
        self._arm()

    def reset(self):
        """Forget a swipe in progress without reporting it (reader stopped or lost)."""
        self._cancel_timer()
        self._zero()
        self._overflow = False
        self._ended = False

    def _arm(self):
        if self._timer is None:
            wait = self.settle_ms if self._ended else self.gap_ms
            self._timer = self.reactor.call_later(wait, self._check)

    def _cancel_timer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self):
        # One timer per swipe, moved on rather than re-armed per character: a flood
        # of keys must not fill the reactor's heap with cancelled timers.
        self._timer = None
        limit = self.settle_ms if self._ended else self.gap_ms
        idle = self.reactor.clock() - self._last
        if idle < limit:
            self._timer = self.reactor.call_later(limit - idle, self._check)
        elif self._ended:
            self._finish()
        else:
            self._fail("swipe stopped half way (%d ms without data)" % idle)

    def _finish(self):
        self._cancel_timer()
        if self._overflow:
            self._fail("swipe longer than %d characters" % len(self._buf))
            return
        text = str(memoryview(self._buf)[:self._n], "latin-1")
        self._zero()
        self._ended = False
        track1, track2 = split_tracks(text)
        if track1 is None and track2 is None:
            self._fail("no track in what the reader sent")
            return
        self.swipes += 1
        self.on_swipe(track1, track2)

    def _fail(self, why):
        self.reset()
        self.errors += 1
        self.last_error = why
        log.info("%s: %s", self.name, why)
        if self.on_error is not None:
            self.on_error(UNREADABLE)

    def _zero(self):
        n = self._n
        if n:
            self._buf[:n] = bytes(n)
        self._n = 0


class HidMsr(EvdevInput):
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
        super().__init__(device, reactor, on_dead)
        self.codes = compile_keymap(keymap or US_KEYMAP)
        self._shift_codes = frozenset(ecodes.ecodes[n] for n in SHIFT_KEYS)
        self._end_codes = frozenset(ecodes.ecodes[n] for n in END_KEYS)
        self._silent_codes = frozenset(ecodes.ecodes[n] for n in SILENT_KEYS)
        self.swipe = SwipeAssembler(reactor, on_swipe, on_error, gap_ms=gap_ms,
                                    settle_ms=0, max_chars=max_chars,
                                    name="card reader %s" % self._name())
        self._shift = set()
        self.unknown = 0             # presses of keys the keymap lacks

    def _reset(self):
        # Started, stopped or lost: no shift is held and no swipe is under way.
        self._shift.clear()
        self.swipe.reset()

    def _events(self, events):
        for event in events:
            if event.type != ecodes.EV_KEY:
                continue
            code = event.code
            if code in self._shift_codes:
                if event.value == KEY_DOWN:
                    self._shift.add(code)
                elif event.value == KEY_UP:
                    self._shift.discard(code)
                continue
            if event.value != KEY_DOWN:
                continue
            if code in self._end_codes:
                self.swipe.end()
            elif code in self.codes:
                plain, shifted = self.codes[code]
                byte = shifted if self._shift else plain
                if 0x61 <= byte <= 0x7A:
                    byte -= 0x20
                self.swipe.add(byte)
            elif code not in self._silent_codes:
                self.unknown += 1
                self.swipe.add(UNKNOWN_CHAR)

    def _selftest_running(self, name):
        s = self.swipe
        detail = "card reader %s ok: %d swipes, %d unreadable" % (name, s.swipes, s.errors)
        if self.unknown:
            detail += ", %d unknown keys (is the reader set to a US keyboard layout?)" % self.unknown
        return True, detail + self._grab_note()


class SerialMsr:
    """A magstripe reader on a serial line (RS-232, USB CDC-ACM, a UART).

    port: an open port (anything with fileno(), such as serial.Serial, or a
    descriptor), owned by the caller; this makes it non-blocking. The reader sends each
    track ending in CR, LF or both; tracks closer together than settle_ms are one
    swipe (settle_ms 0: every line is a swipe, for readers that send all tracks on
    one line). Bytes that are neither printable ASCII nor line ends (line noise at power
    up) are counted and dropped.
    """

    READ_SIZE = 256

    def __init__(self, port, reactor, on_swipe, on_error=None, on_dead=None,
                 gap_ms=GAP_MS, settle_ms=SETTLE_MS, max_chars=MAX_SWIPE_CHARS,
                 name="serial card reader"):
        self.port = port
        self.fd = port if isinstance(port, int) else port.fileno()
        self.reactor = reactor
        self.on_dead = on_dead
        self.name = name
        self.swipe = SwipeAssembler(reactor, on_swipe, on_error, gap_ms=gap_ms,
                                    settle_ms=settle_ms, max_chars=max_chars,
                                    name=name)
        self._rbuf = bytearray(self.READ_SIZE)
        self.running = False
        self.lost = None
        self.noise = 0

    def start(self):
        if self.running:
            return
        os.set_blocking(self.fd, False)
        self.reactor.add_reader(self.fd, self._readable, self._dead)
        self.running = True
        self.lost = None

    def stop(self):
        if self.running:
            self.reactor.remove(self.fd)
        self.swipe.reset()
        self.running = False

    def _readable(self, fd, revents):
        buf = self._rbuf
        try:
            n = os.readv(fd, [buf])   # into our own buffer, so it can be zeroed
        except BlockingIOError:
            return
        if n == 0:
            raise EOFError("%s closed" % self.name)
        add, end = self.swipe.add, self.swipe.end
        for i in range(n):
            b = buf[i]
            if b == 0x0D or b == 0x0A:
                end()
            elif 0x20 <= b < 0x7F or b == 0x09:
                add(b)
            else:
                self.noise += 1
        buf[:n] = bytes(n)

    def _dead(self, fd, reason):
        self.running = False
        self.lost = reason
        self.swipe.reset()
        log.warning("%s lost: %s", self.name, reason)
        if self.on_dead is not None:
            self.on_dead(reason)

    def selftest(self):
        if self.lost is not None:
            return False, ("%s lost (%s): check its cable and the port in the board "
                           "profile, then restart" % (self.name, self.lost))
        if not self.running:
            return False, "%s not started" % self.name
        s = self.swipe
        detail = "%s ok: %d swipes, %d unreadable" % (self.name, s.swipes, s.errors)
        if self.noise:
            detail += ", %d noise bytes (check the baud rate)" % self.noise
        return True, detail


class MsrPortError(Exception):
    """The reader's serial port cannot be used; the message says what to check."""


def open_serial(path, baudrate=9600, **options):
    """Open a serial reader's port with pyserial, exclusively and non-blocking."""
    import serial
    try:
        port = serial.Serial(path, baudrate, timeout=0, exclusive=True, **options)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise MsrPortError(
            "cannot open card reader port %s at %s baud (%s): check that the reader is "
            "plugged in, that this user may open %s (group dialout) and that no other "
            "program is using it" % (path, baudrate, exc, path))
    os.set_blocking(port.fileno(), False)
    return port
