"""Barcode scanners: USB HID keyboard wedges (evdev) and serial scanners (pyserial).

Both hand one code at a time to the terminal's loop: on_scan(code, source) with the
text exactly as the scanner sent it (its terminator taken off; source "hid" or
"serial" unless told otherwise), or on_error(reason) when what arrived cannot be a
code, with one of

  GARBAGE    a key the keymap lacks (a scanner set to another keyboard layout, or
             sending a control character), a byte that is not printable ASCII
  TOO_LONG   more than max_chars before the terminator (a scanner stuck sending)
  CUT_SHORT  characters, then no terminator within gap_ms (a cable pulled half way,
             a scanner whose suffix is not set to Enter or CR)

and the code it was part of is dropped whole: never half a code, never two run
together. Checking the code itself (symbology, check digit, scale labels) is the
core's (firmware/retail/barcode.py).

A HID scanner is grabbed, so its codes do not also reach the console as typed text;
one unplugged, even half way through a code, is reported through on_dead(reason) and
that partial code forgotten. Neither driver blocks or polls (drivers/wedge.py).
"""
import logging

from drivers import wedge
from drivers.wedge import CUT_SHORT, END_KEYS, GARBAGE, US_KEYMAP
from drivers.wedge import TOO_LONG  # noqa: F401  (one of the reasons on_error gets)

log = logging.getLogger("handpos.scanner")

# A scanner types a whole code in a few tens of ms; this much silence with no
# terminator means the code will not be finished.
GAP_MS = 300
# Retail codes are far shorter (EAN-13: 13, GS1-128: at most 48 data characters, a
# payment QR code: 18-24 digits); anything longer is a scanner that does not stop.
MAX_CODE_CHARS = 128

# No Tab inside a code: a scanner sends one only as a prefix or suffix, so it is
# garbage unless the profile makes it the terminator (end_keys = ["KEY_TAB"]).
SCANNER_KEYMAP = dict((k, v) for k, v in US_KEYMAP.items() if k != "KEY_TAB")

_CUT_SHORT_HINT = ("codes end without a terminator: set the scanner's suffix to Enter "
                   "(CR on a serial scanner)")


class _Codes:
    """What both scanners do with a finished line: hand it on, or say why not."""

    def _make_line(self, reactor, on_scan, on_error, source, gap_ms, max_chars, name):
        self.on_scan = on_scan
        self.on_error = on_error
        self.source = source
        self.scans = 0               # codes handed to on_scan
        self.line = wedge.LineAssembler(reactor, self._scanned, self._failed, gap_ms,
                                        settle_ms=0, max_chars=max_chars, name=name, log=log)

    def _scanned(self, code):
        self.scans += 1
        self.on_scan(code, self.source)

    def _failed(self, reason):
        if reason == CUT_SHORT:
            log.warning("%s: %s", self.line.name, _CUT_SHORT_HINT)
        if self.on_error is not None:
            self.on_error(reason)

    def _counts(self):
        line = self.line
        detail = "%d codes, %d unreadable" % (self.scans, line.errors)
        if line.failures.get(CUT_SHORT):
            detail += "; " + _CUT_SHORT_HINT
        return detail


class HidScanner(_Codes, wedge.WedgeInput):
    """A USB HID keyboard-wedge barcode scanner on its evdev node.

    The scanner types each code as key presses on a US layout (shift for capitals and
    symbols; letters keep their case: Code 128 and Code 39 codes carry both) and ends
    it with a key of end_keys (Enter or keypad Enter by default; ["KEY_TAB"] for a
    scanner whose suffix is Tab).
    """

    WHAT = "scanner"
    CHECK = "its USB cable"
    LEAKS = "codes"
    GRAB_FAILED = "codes may also reach the console as typed text"
    _log = log

    def __init__(self, device, reactor, on_scan, on_dead=None, on_error=None,
                 end_keys=END_KEYS, gap_ms=GAP_MS, max_chars=MAX_CODE_CHARS, keymap=None,
                 source="hid"):
        wedge.WedgeInput.__init__(self, device, reactor, on_dead,
                                  keymap or SCANNER_KEYMAP, end_keys)
        self._make_line(reactor, on_scan, on_error, source, gap_ms, max_chars,
                        "scanner %s" % self._name())

    def _selftest_running(self, name):
        return True, ("scanner %s ok: %s" % (name, self._counts()) + self._layout_note()
                      + self._grab_note())


class SerialScanner(_Codes, wedge.SerialLineInput):
    """A barcode scanner on a serial line (RS-232, USB CDC-ACM, a UART).

    port: an open port (serial.Serial or a descriptor), owned by the caller. Each code
    ends in CR, LF or CR LF. A byte that is not printable ASCII (line noise, a wrong
    baud rate) makes the code it came in GARBAGE.
    """

    WHAT = "serial scanner"

    def __init__(self, port, reactor, on_scan, on_error=None, on_dead=None,
                 gap_ms=GAP_MS, max_chars=MAX_CODE_CHARS, name="serial scanner",
                 source="serial"):
        wedge.SerialLineInput.__init__(self, port, reactor, on_dead, name, log)
        self._make_line(reactor, on_scan, on_error, source, gap_ms, max_chars, name)

    def _noise(self, byte):
        self.line.spoil(GARBAGE, "byte 0x%02X is not printable ASCII" % byte)

    def _selftest_running(self):
        return "%s ok: %s" % (self.name, self._counts()) + self._noise_note()


class ScannerPortError(wedge.SerialPortError):
    """The scanner's serial port cannot be used; the message says what to check."""


def open_serial(path, baudrate=9600, **options):
    """Open a serial scanner's port with pyserial, exclusively and non-blocking."""
    return wedge.open_serial(path, baudrate, "scanner", ScannerPortError, **options)


def scan_keystrokes(code, end="KEY_ENTER"):
    """The key events a HID scanner sends for code: the simulator's scans and tests'."""
    return wedge.keystrokes(code, SCANNER_KEYMAP, end)
