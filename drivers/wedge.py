"""What the devices that type text a line at a time share: keyboard wedges read through
evdev (USB HID card readers and barcode scanners) and readers on a serial line.

  US_KEYMAP, compile_keymap, keystrokes
      the characters a US-layout wedge types with each evdev key, plain and shifted,
      and back: the key events that type a text (the simulator's and the tests' side)
  LineAssembler
      characters in, whole lines out: a fixed buffer, one reactor timer that drops a
      line stopping half way, a bound that turns a flood into one error
  WedgeInput
      an EvdevInput (grab, lost and back) that turns key presses with shift into
      characters for its LineAssembler
  SerialLineInput
      a serial port read without blocking into its LineAssembler; CR, LF or both end
      a line
  open_serial
      the port through pyserial, exclusive and non-blocking, or an error saying what
      to check

A driver (drivers/msr.py, drivers/scanner.py) builds its own assembler, says what a
finished line means (tracks, a barcode) and names its device in its own words.
"""
import logging
import os

from evdev import ecodes

from drivers.evdev_input import EvdevInput

KEY_DOWN, KEY_UP, KEY_REPEAT = 1, 0, 2

# What went wrong with a line (LineAssembler's on_fail): a driver reports these, or
# turns them into its own domain's code.
GARBAGE = "garbage"         # a key the keymap lacks, a byte no text holds
TOO_LONG = "too_long"       # more than max_chars before the line ended
CUT_SHORT = "cut_short"     # characters, then silence with no line end

# The US layout, as wedge devices type by default: evdev key -> (plain, with shift).
# It covers printable ASCII (0x20..0x7E): track 1's whole alphabet, track 2's, and
# every character Code 39 and Code 128 carry.
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
# Keys that type nothing: pressed on their own they change nothing in a line.
SILENT_KEYS = ("KEY_LEFTCTRL", "KEY_RIGHTCTRL", "KEY_LEFTALT", "KEY_RIGHTALT",
               "KEY_LEFTMETA", "KEY_RIGHTMETA", "KEY_CAPSLOCK", "KEY_NUMLOCK",
               "KEY_SCROLLLOCK")


def key_code(name, who="keymap"):
    """The evdev code of a KEY_ name, or ValueError naming who asked."""
    code = ecodes.ecodes.get(name) if isinstance(name, str) else None
    if code is None or not name.startswith("KEY_"):
        raise ValueError("%s: %r is not an evdev key name (like KEY_ENTER; evtest shows "
                         "what the device sends)" % (who, name))
    return code


def compile_keymap(keymap, who="keymap"):
    """{evdev key name: (plain, shifted)} -> {key code: (plain byte, shifted byte)}."""
    return {key_code(name, who): (ord(plain), ord(shifted))
            for name, (plain, shifted) in keymap.items()}


def keystrokes(text, keymap=None, end="KEY_ENTER"):
    """The (type, code, value) events a wedge device sends to type text and then the
    end key (None: none): shift held around shifted characters, SYN_REPORT after each
    key event. For the simulator's virtual devices and for tests."""
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
            raise ValueError("no key types %r" % ch)
        code, shifted = inverse[ch]
        if shifted:
            out += [(ecodes.EV_KEY, shift, KEY_DOWN), syn]
        out += [(ecodes.EV_KEY, code, KEY_DOWN), syn, (ecodes.EV_KEY, code, KEY_UP), syn]
        if shifted:
            out += [(ecodes.EV_KEY, shift, KEY_UP), syn]
    if end is not None:
        code = ecodes.ecodes[end]
        out += [(ecodes.EV_KEY, code, KEY_DOWN), syn, (ecodes.EV_KEY, code, KEY_UP), syn]
    return out


class LineAssembler:
    """Characters in, whole lines out.

    add(byte) for each character, end() for a line end. With settle_ms 0 a line end
    finishes the line at once; otherwise the line finishes settle_ms after the last
    line end, so lines sent close together stay one (a stripe reader's tracks).
    spoil(reason, why) marks the line in progress as unusable: it runs to its end and
    is then reported instead of delivered. Silence of gap_ms with characters and no
    line end drops them (CUT_SHORT). At most max_chars are kept: more make the line
    one TOO_LONG when it ends or goes quiet. Each finished line goes to on_line(text), each dropped
    one to on_fail(reason) with one of GARBAGE, TOO_LONG, CUT_SHORT (or the reason
    given to spoil); why, in words, stays in last_error and the log.
    """

    def __init__(self, reactor, on_line, on_fail, gap_ms, settle_ms=0, max_chars=256,
                 name="line", log=None):
        self.reactor = reactor
        self.on_line = on_line
        self.on_fail = on_fail
        self.gap_ms = gap_ms
        self.settle_ms = settle_ms
        self.name = name
        self.log = log or logging.getLogger("handpos.wedge")
        # Fixed size, written in place: no reallocation leaves copies of a card's
        # track in freed memory, and zeroing it really removes the characters.
        self._buf = bytearray(max(1, max_chars))
        self._n = 0
        self._overflow = False
        self._spoiled = None        # (reason, why) of a line that cannot be used
        self._ended = False
        self._last = 0
        self._timer = None
        self.errors = 0             # lines reported to on_fail
        self.overflows = 0          # lines longer than max_chars
        self.failures = {}          # reason -> how many lines were dropped for it
        self.last_error = None

    @property
    def max_chars(self):
        return len(self._buf)

    @property
    def pending(self):
        """Characters of a line in progress."""
        return self._n

    @property
    def busy(self):
        return self._n > 0 or self._overflow or self._spoiled is not None

    def add(self, byte):
        self._activity()
        if not self._overflow:
            if self._n < len(self._buf):
                self._buf[self._n] = byte
                self._n += 1
            else:
                self._zero()
                self._overflow = True
                self.overflows += 1
        self._arm()

    def spoil(self, reason, why):
        self._activity()
        if self._spoiled is None:
            self._spoiled = (reason, why)
        self._arm()

    def end(self):
        if not self.busy:
            return                  # a line end on its own: nothing came
        if self.settle_ms <= 0:
            self._finish()
            return
        self._ended = True
        self._last = self.reactor.clock()
        self._cancel_timer()
        self._arm()

    def reset(self):
        """Forget a line in progress without reporting it (device stopped or lost)."""
        self._cancel_timer()
        self._zero()
        self._overflow = False
        self._spoiled = None
        self._ended = False

    def fail(self, reason, why):
        """Drop the line in progress and report it (also for a driver whose finished
        line turned out unusable)."""
        self.reset()
        self.errors += 1
        self.failures[reason] = self.failures.get(reason, 0) + 1
        self.last_error = why
        self.log.info("%s: %s", self.name, why)
        if self.on_fail is not None:
            self.on_fail(reason)

    def _activity(self):
        self._last = self.reactor.clock()
        if self._ended:
            self._ended = False     # more after a line end: the gap rule again

    def _arm(self):
        if self._timer is None:
            wait = self.settle_ms if self._ended else self.gap_ms
            self._timer = self.reactor.call_later(wait, self._check)

    def _cancel_timer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self):
        # One timer per line, moved on rather than re-armed per character: a flood
        # of keys must not fill the reactor's heap with cancelled timers.
        self._timer = None
        limit = self.settle_ms if self._ended else self.gap_ms
        idle = self.reactor.clock() - self._last
        if idle < limit:
            self._timer = self.reactor.call_later(limit - idle, self._check)
        elif self._ended:
            self._finish()
        elif self._overflow:
            self.fail(TOO_LONG, "longer than %d characters, and no line end"
                      % len(self._buf))
        else:
            self.fail(CUT_SHORT, "stopped half way (%d ms without a line end)" % idle)

    def _finish(self):
        self._cancel_timer()
        if self._overflow:
            self.fail(TOO_LONG, "longer than %d characters" % len(self._buf))
            return
        if self._spoiled is not None:
            self.fail(*self._spoiled)
            return
        text = str(memoryview(self._buf)[:self._n], "latin-1")
        self._zero()
        self._ended = False
        self.on_line(text)

    def _zero(self):
        n = self._n
        if n:
            self._buf[:n] = bytes(n)
        self._n = 0


class WedgeInput(EvdevInput):
    """A keyboard-wedge device on its evdev node: key presses (with shift) typed into
    self.line, a LineAssembler the subclass makes. Auto-repeat and keys that type
    nothing (Ctrl, Alt, Caps Lock) are ignored; a key in end_keys ends the line; a key
    the keymap lacks is counted in self.unknown and handed to _unknown_key."""

    def __init__(self, device, reactor, on_dead=None, keymap=None, end_keys=END_KEYS):
        EvdevInput.__init__(self, device, reactor, on_dead)
        self.codes = compile_keymap(keymap or US_KEYMAP, self.WHAT)
        self._shift_codes = frozenset(ecodes.ecodes[n] for n in SHIFT_KEYS)
        self._end_codes = frozenset(key_code(n, self.WHAT) for n in end_keys)
        self._silent_codes = frozenset(ecodes.ecodes[n] for n in SILENT_KEYS)
        self._shift = set()
        self.unknown = 0             # presses of keys the keymap lacks
        self.line = None

    def _reset(self):
        # Started, stopped or lost: no shift is held and no line is under way.
        self._shift.clear()
        if self.line is not None:
            self.line.reset()

    def _events(self, events):
        line = self.line
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
                line.end()
            elif code in self.codes:
                plain, shifted = self.codes[code]
                line.add(self._typed(plain, shifted, bool(self._shift)))
            elif code not in self._silent_codes:
                self.unknown += 1
                self._unknown_key(code)

    def _typed(self, plain, shifted, shift):
        """The byte a key types."""
        return shifted if shift else plain

    def _unknown_key(self, code):
        self.line.spoil(GARBAGE, "key %s is not in the keymap" % _key_name(code))

    def _layout_note(self):
        if not self.unknown:
            return ""
        return (", %d unknown keys (is the %s set to a US keyboard layout?)"
                % (self.unknown, self.WHAT))


class SerialLineInput:
    """A device on a serial line (RS-232, USB CDC-ACM, a UART) sending lines of text.

    port: an open port (anything with fileno(), such as serial.Serial, or a
    descriptor), owned by the caller; this makes it non-blocking. CR, LF or both end a
    line (an empty line is nothing). Printable ASCII goes into self.line, a
    LineAssembler the subclass makes; any other byte is counted in self.noise and
    handed to _noise. WHAT names the device when no name is given.
    """

    READ_SIZE = 256
    WHAT = "serial device"

    def __init__(self, port, reactor, on_dead=None, name=None, log=None):
        self.port = port
        self.fd = port if isinstance(port, int) else port.fileno()
        self.reactor = reactor
        self.on_dead = on_dead
        self.name = name or self.WHAT
        self.log = log or logging.getLogger("handpos.wedge")
        self.line = None
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
        self.line.reset()
        self.running = False

    def _accept(self, byte):
        """True for a byte that belongs in a line."""
        return 0x20 <= byte < 0x7F

    def _noise(self, byte):
        """A byte no line holds arrived (line noise, a wrong baud rate)."""

    def _readable(self, fd, revents):
        buf = self._rbuf
        try:
            n = os.readv(fd, [buf])   # into our own buffer, so it can be zeroed
        except BlockingIOError:
            return
        if n == 0:
            raise EOFError("%s closed" % self.name)
        line = self.line
        for i in range(n):
            b = buf[i]
            if b == 0x0D or b == 0x0A:
                line.end()
            elif self._accept(b):
                line.add(b)
            else:
                self.noise += 1
                self._noise(b)
        buf[:n] = bytes(n)

    def _dead(self, fd, reason):
        self.running = False
        self.lost = reason
        self.line.reset()
        self.log.warning("%s lost: %s", self.name, reason)
        if self.on_dead is not None:
            self.on_dead(reason)

    def selftest(self):
        """(ok, detail)."""
        if self.lost is not None:
            return False, ("%s lost (%s): check its cable and the port in the board "
                           "profile, then restart" % (self.name, self.lost))
        if not self.running:
            return False, "%s not started" % self.name
        return True, self._selftest_running()

    def _selftest_running(self):
        return "%s ok" % self.name + self._noise_note()

    def _noise_note(self):
        if not self.noise:
            return ""
        return ", %d noise bytes (check the baud rate)" % self.noise


class SerialPortError(Exception):
    """A device's serial port cannot be used; the message says what to check."""


def open_serial(path, baudrate=9600, what="device", error=SerialPortError, **options):
    """Open a device's port with pyserial, exclusively and non-blocking; error (a
    SerialPortError class) says what to check when it cannot be."""
    import serial
    try:
        port = serial.Serial(path, baudrate, timeout=0, exclusive=True, **options)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise error(
            "cannot open %s port %s at %s baud (%s): check that the %s is plugged in, "
            "that this user may open %s (group dialout) and that no other program is "
            "using it" % (what, path, baudrate, exc, what, path))
    os.set_blocking(port.fileno(), False)
    return port


def _key_name(code):
    name = ecodes.KEY.get(code) or ecodes.BTN.get(code) or str(code)
    return name[0] if isinstance(name, (list, tuple)) else name
