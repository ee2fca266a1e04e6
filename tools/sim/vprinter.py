"""A virtual 58 mm ESC/POS printer on the master side of a pty.

The printer driver writes a real tty (the pty slave); this module plays the printer
on the other end: it parses the byte stream the way a printer does, puts text on
"paper" lines with their style, cuts receipts, kicks the drawer, and answers the
real-time status requests from its paper sensor and cover switch, which tests and
the simulator set. render_png() draws the paper so a person can look at it.

How it behaves, modelled on common Epson-compatible 58 mm printers:

- Receive path: DLE EOT n (and DLE ENQ, DLE DC4) are taken out of the stream as
  they arrive and answered at once, whatever the printer state, as a serial printer
  does; like a real one it finds them anywhere, even inside command parameters.
  Everything else goes into the receive buffer.
- Print engine: takes commands from the receive buffer whenever there is paper and
  the cover is closed. Printing is instant, so a line is on paper as soon as its LF
  is processed. When paper runs out or the cover opens, the engine stops at once;
  the bytes received meanwhile stay in the buffer (nothing is dropped) and print in
  order when paper is back and the cover is closed, as a printer that recovers
  automatically does. A real printer's buffer is a few KB and it then holds the host
  off with flow control; here the pty's own buffer and the throttle (baudrate) play
  that part, and the receive buffer itself is not bounded.
- Near end is only reported: printing goes on.
- Unknown ESC/GS/FS commands are skipped with their parameter bytes where the
  command is known to this table, otherwise as two bytes.
- A paper line has one style, the one in effect at its first character (or at its
  LF when it is empty); text wider than 384 dots wraps onto the next line.
- Paper fed by ESC d with nothing printed after it, before a cut, is the receipt's
  .feed, not lines: .text() then reads like firmware Receipt.text().
- Barcodes: GS k m=73 (Code 128) is drawn as bars (GS h height, GS w module width,
  ESC a alignment), not as text, and GS H prints its text above or below. The printer
  reads back what it drew (code128_decode over the bar widths) into .barcodes, so a
  wrong encoder or a wrong bar drawing shows there; a symbol wider than the paper is
  not printed, as a real printer refuses it. Other GS k symbologies are skipped.
- QR codes: GS ( k cn=49 functions 165 (model), 167 (module size), 169 (error level),
  180 (store data) and 181 (print the stored data) are obeyed; the symbol is made with
  segno at that model 2 error level and module size and drawn at the ESC a alignment,
  its data kept in .qr_codes. A symbol wider than the paper, or data no QR holds, is
  not printed (.qr_refused counts them); other GS ( k symbols are skipped.
"""
import os
import tty

from firmware.core.reactor import POLLIN, POLLOUT
from firmware.retail.receipt_code import PATTERNS, code128_decode
from firmware.ui.receipt import Line, display_width

ESC, GS, FS, DLE = 0x1B, 0x1D, 0x1C, 0x10
EOT, ENQ, DC4 = 0x04, 0x05, 0x14
LF, CR, HT, FF = 0x0A, 0x0D, 0x09, 0x0C

DOTS = 384                  # printable width of a 58 mm head at 203 dpi
CELL = 12                   # font A: 12x24 dots; Kanji 24x24
ROW = 30                    # default line spacing in dots
FONT_PATH = "/usr/share/fonts/X11/misc/wenquanyi_9pt.pcf"

# Parameter bytes after "ESC x" for the fixed-length commands this printer skips
# or handles; variable-length ones are parsed in _esc / _gs / _fs.
ESC_PARAMS = {
    0x0C: 0, 0x20: 1, 0x21: 1, 0x24: 2, 0x25: 1, 0x2D: 1, 0x32: 0, 0x33: 1,
    0x3C: 0, 0x3D: 1, 0x3F: 1, 0x40: 0, 0x42: 2, 0x45: 1, 0x47: 1, 0x4A: 1,
    0x4B: 1, 0x4C: 0, 0x4D: 1, 0x52: 1, 0x53: 0, 0x54: 1, 0x55: 1, 0x56: 1,
    0x57: 8, 0x5C: 2, 0x61: 1, 0x63: 2, 0x64: 1, 0x65: 1, 0x69: 0, 0x6D: 0,
    0x70: 3, 0x72: 1, 0x74: 1, 0x75: 1, 0x76: 1, 0x7B: 1,
}
GS_PARAMS = {
    0x21: 1, 0x24: 2, 0x2F: 1, 0x3A: 0, 0x42: 1, 0x43: 3, 0x45: 1, 0x48: 1,
    0x49: 1, 0x4C: 2, 0x50: 2, 0x54: 1, 0x57: 2, 0x5A: 1, 0x5C: 2, 0x5E: 3,
    0x61: 1, 0x62: 1, 0x63: 0, 0x66: 1, 0x67: 4, 0x68: 1, 0x6A: 1, 0x72: 1,
    0x77: 1, 0x7A: 3,
}
FS_PARAMS = {
    0x21: 1, 0x26: 0, 0x2D: 1, 0x2E: 0, 0x32: 74, 0x43: 1, 0x53: 2, 0x57: 1,
    0x70: 2,
}

_HELD_SLAVES = {}


def make_pty():
    """(master_fd, slave_path) of a new pty pair, the slave in raw mode.

    The slave stays open here until close_pty(master_fd): with no slave open the
    master reads EIO, so a virtual printer attached before the driver opens the
    port would be dropped as a dead descriptor.
    """
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    _HELD_SLAVES[master] = slave
    return master, os.ttyname(slave)


def close_pty(master_fd):
    slave = _HELD_SLAVES.pop(master_fd, None)
    for fd in (master_fd, slave):
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


class PaperReceipt:
    """What came out of the printer between two cuts."""

    def __init__(self):
        self.lines = []             # (text, align, bold, size); size is an int, or
                                    # (width, height) when they differ
        self.drawer_kicked = False
        self.cut = None             # None until cut, then "partial" or "full"
        self.feed = 0               # blank lines fed after the last printed line
        self.barcodes = []          # the data read back from each symbol drawn (None
                                    # when its bars do not decode)
        self.graphics = []          # (index of the line they come before, Bars or QrSymbol)
        self.qr_codes = []          # the data of each QR code printed (text)

    def text(self, width=32):
        out = []
        for text, align, bold, size in self.lines:
            mul = size if isinstance(size, int) else size[0]
            out.append(Line(text, align, bold, mul).render(width))
        return "\n".join(out)

    def __repr__(self):
        return "PaperReceipt(%d lines, cut=%r, drawer=%r)" % (
            len(self.lines), self.cut, self.drawer_kicked)


class Bars:
    """A barcode as drawn: dark runs (x, width) in dots across a band height dots high."""

    def __init__(self, runs, height):
        self.runs = runs
        self.height = height

    def row(self, width):
        """The band as a 1-bit image width dots wide (1 = ink)."""
        from PIL import Image
        row = Image.new("1", (width, self.height), 0)
        for x, w in self.runs:
            row.paste(1, (x, 0, x + w, self.height))
        return row

    def widths(self):
        """Bar and space widths in dots, from the first bar to the last."""
        out = []
        for i, (x, w) in enumerate(self.runs):
            if i:
                out.append(x - (self.runs[i - 1][0] + self.runs[i - 1][1]))
            out.append(w)
        return out


class QrSymbol:
    """A QR code as printed: segno's matrix at module dots a module, x dots from the
    left edge of the paper."""

    def __init__(self, data, matrix, module, x, error):
        self.data = data            # the text stored (UTF-8 decoded)
        self.matrix = matrix        # rows of 0/1, no quiet zone
        self.module = module
        self.x = x
        self.error = error          # "L", "M", "Q" or "H"
        self.height = len(matrix) * module

    def row(self, width):
        from PIL import Image
        row = Image.new("1", (width, self.height), 0)
        m = self.module
        for r, cells in enumerate(self.matrix):
            for c, dark in enumerate(cells):
                if dark:
                    row.paste(1, (self.x + c * m, r * m, self.x + (c + 1) * m, (r + 1) * m))
        return row


QR_LEVELS = {48: "L", 49: "M", 50: "Q", 51: "H"}


def code128_values(payload):
    """Symbol values (start first, no check or stop) of a GS k m=73 payload, read the
    way the printer reads it: it starts with "{A", "{B" or "{C"; "{" then A/B/C
    switches set, "{S" shifts, "{1".."{4" are FNC1-4, "{{" is "{"; in set C each byte
    is a pair 0-99. ValueError for anything else."""
    if len(payload) < 2 or payload[0] != 0x7B or payload[1] not in b"ABC":
        raise ValueError("Code 128 data must start with {A, {B or {C")
    sets = {0x41: ("A", 103), 0x42: ("B", 104), 0x43: ("C", 105)}
    current, start = sets[payload[1]]
    values = [start]
    switch = {"A": {0x42: 100, 0x43: 99}, "B": {0x41: 101, 0x43: 99},
              "C": {0x41: 101, 0x42: 100}}
    fnc = {"A": {0x31: 102, 0x32: 97, 0x33: 96, 0x34: 101},
           "B": {0x31: 102, 0x32: 97, 0x33: 96, 0x34: 100}, "C": {0x31: 102}}
    i = 2
    while i < len(payload):
        byte = payload[i]
        if byte == 0x7B:
            if i + 1 >= len(payload):
                raise ValueError("{ at the end of the data")
            code = payload[i + 1]
            i += 2
            if code in switch[current]:
                values.append(switch[current][code])
                current = chr(code)
            elif code in fnc[current]:
                values.append(fnc[current][code])
            elif code == 0x53 and current != "C":       # {S: shift
                values.append(98)
            elif code == 0x7B and current != "C":       # {{: the character {
                values.append(0x7B - 32)
            else:
                raise ValueError("bad code set selector {%s" % chr(code))
            continue
        if current == "C" and byte <= 99:
            values.append(byte)
        elif current == "B" and 32 <= byte <= 127:
            values.append(byte - 32)
        elif current == "A" and byte < 96:
            values.append(byte + 64 if byte < 32 else byte - 32)
        else:
            raise ValueError("bad byte %d in set %s" % (byte, current))
        i += 1
    return values


def draw_code128(values, module, align="left", dots=DOTS):
    """Bars (dark runs in dots) of the symbol whose values are given (start first): the
    mod-103 check and the stop are added, as the printer adds them. None when the
    symbol is wider than the paper."""
    total = values[0]
    for position in range(1, len(values)):
        total += values[position] * position
    symbol = list(values) + [total % 103, 106]
    widths = [(ord(ch) - 48) * module for value in symbol for ch in PATTERNS[value]]
    width = sum(widths)
    if width > dots:
        return None
    x = {"center": (dots - width) // 2, "right": dots - width}.get(align, 0)
    runs = []
    for i, w in enumerate(widths):
        if i % 2 == 0:
            runs.append((x, w))
        x += w
    return runs


class VirtualPrinter:
    def __init__(self, fd=None, reactor=None, baudrate=None, on_receipt=None,
                 kanji_default=False):
        self.fd = fd
        self.baudrate = baudrate        # throttle reading to this wire speed
        self.on_receipt = on_receipt
        self.kanji_default = kanji_default
        self.paper = True
        self.near_end = False
        self.cover_open = False
        self.receipts = []
        self.current = PaperReceipt()
        self.drawer_kicks = 0
        self.received = 0               # every byte from the host
        self.data_received = 0          # bytes that went to the receive buffer
        self.status_queries = 0
        self.replies = bytearray()      # every status byte sent back
        self.dead_reason = None
        self.barcodes_refused = 0       # GS k symbols not printed (too wide, bad data)
        self.qr_refused = 0             # GS ( k QR symbols not printed (too wide, no data)
        self.reactor = None
        self._rt = bytearray()          # a real-time command being received
        self._buffer = bytearray()      # receive buffer
        self._skip = 0                  # data bytes of a command still to skip
        self._skip_to_nul = False
        self._tx = bytearray()
        self._throttled = False
        self._events = 0
        self._reset()
        self._chars = []
        self._line_dots = 0
        self._line_style = None
        self._pending_feed = 0
        if reactor is not None:
            self.attach(reactor)

    # -- the world around the printer ---------------------------------------------
    def set_paper(self, present):
        self.paper = bool(present)
        self._run()

    def set_near_end(self, flag):
        self.near_end = bool(flag)

    def set_cover(self, open_):
        self.cover_open = bool(open_)
        self._run()

    @property
    def can_print(self):
        return self.paper and not self.cover_open

    @property
    def pending(self):
        """Bytes received but not yet printed."""
        return len(self._buffer)

    # -- wiring ---------------------------------------------------------------------
    def attach(self, reactor):
        self.reactor = reactor
        os.set_blocking(self.fd, False)
        self._events = POLLIN
        reactor.add_reader(self.fd, self._ready, self._dead, POLLIN)

    def close(self):
        if self.reactor is not None:
            self.reactor.remove(self.fd)
            self.reactor = None
        if self.fd is not None:
            close_pty(self.fd)
            self.fd = None

    def _update_events(self):
        if self.reactor is None:
            return
        events = (0 if self._throttled else POLLIN) | (POLLOUT if self._tx else 0)
        if events != self._events:
            self._events = events
            self.reactor.modify(self.fd, events)

    def _ready(self, fd, revents):
        if revents & POLLOUT:
            self._flush()
        if revents & POLLIN and not self._throttled:
            size = max(1, self.baudrate // 1000) if self.baudrate else 4096
            try:
                data = os.read(fd, size)
            except (BlockingIOError, InterruptedError):
                return
            if self.baudrate:
                # That many bytes take this long on the wire: read no more till then.
                self._throttled = True
                self.reactor.call_later(max(1, len(data) * 10000 // self.baudrate),
                                        self._unthrottle)
                self._update_events()
            self.feed(data)

    def _unthrottle(self):
        self._throttled = False
        self._update_events()

    def _dead(self, fd, reason):
        self.dead_reason = reason
        self.reactor = None

    def _send(self, data):
        self.replies += data
        if self.fd is None:
            return
        self._tx += data
        self._flush()

    def _flush(self):
        if self._tx:
            try:
                n = os.write(self.fd, self._tx)
                del self._tx[:n]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._tx = bytearray()      # nobody on the other side
        self._update_events()

    # -- receive path -----------------------------------------------------------------
    def feed(self, data):
        """Take bytes from the host: answer real-time requests, print what can be."""
        for byte in data:
            self.received += 1
            if self._rt:
                self._realtime(byte)
            elif byte == DLE:
                self._rt.append(byte)
            else:
                self._buffer.append(byte)
                self.data_received += 1
        self._run()

    def _realtime(self, byte):
        rt = self._rt
        rt.append(byte)
        if len(rt) == 2:
            if byte in (EOT, ENQ, DC4):
                return
            # Not a real-time command: DLE was data (a parameter, a glyph byte).
            self._buffer.append(DLE)
            self.data_received += 1
            del rt[:]
            if byte == DLE:
                rt.append(byte)
            else:
                self._buffer.append(byte)
                self.data_received += 1
            return
        kind = rt[1]
        if kind == EOT:
            if rt[2] in (7, 8) and len(rt) < 4:
                return          # DLE EOT 7/8 a: ink status, one more byte
            self._status(rt[2])
        elif kind == DC4:
            if len(rt) < 5:
                return
            if rt[2] == 1:      # real-time drawer pulse
                self._kick()
        del rt[:]

    def _status(self, n):
        self.status_queries += 1
        if n not in (1, 2, 3, 4):
            return
        value = 0x12
        if n == 1 and not self.can_print:
            value |= 0x08                       # offline
        elif n == 2:
            if self.cover_open:
                value |= 0x04
            if not self.paper:
                value |= 0x20                   # stopped by paper end
        elif n == 4:
            if self.near_end:
                value |= 0x0C
            if not self.paper:
                value |= 0x60
        self._send(bytes((value,)))

    # -- print engine -----------------------------------------------------------------------
    def _reset(self):
        self.align = "left"
        self.bold = False
        self.width_mul = 1
        self.height_mul = 1
        self.kanji = self.kanji_default
        self.barcode_height = 162       # GS h, dots
        self.module = 3                 # GS w, dots
        self.hri = 0                    # GS H: 0 none, 1 above, 2 below, 3 both
        self.qr_model = 50              # GS ( k fn 165: 49 model 1, 50 model 2
        self.qr_module = 3              # GS ( k fn 167: dots a module
        self.qr_error = "L"             # GS ( k fn 169
        self.qr_data = None             # GS ( k fn 180: the symbol storage area

    def _run(self):
        buf = self._buffer
        i = 0
        while i < len(buf) and self.can_print:
            used = self._step(buf, i)
            if not used:
                break           # a command not complete yet: wait for more bytes
            i += used
        del buf[:i]

    def _step(self, buf, i):
        if self._skip:
            used = min(self._skip, len(buf) - i)
            self._skip -= used
            return used
        if self._skip_to_nul:
            end = buf.find(b"\x00", i)
            if end < 0:
                return len(buf) - i
            self._skip_to_nul = False
            return end - i + 1
        byte = buf[i]
        if byte in (ESC, GS, FS):
            if i + 1 >= len(buf):
                return 0
            handler = {ESC: self._esc, GS: self._gs, FS: self._fs}[byte]
            return handler(buf, i, buf[i + 1])
        if byte == LF:
            self._print_line()
            return 1
        if byte == HT:
            columns = self._line_dots // CELL
            for _ in range(8 - columns % 8):
                self._put(" ", CELL)
            return 1
        if byte < 0x20 or byte == 0x7F:
            return 1            # CR, FF and other controls: nothing to print
        if byte < 0x80:
            self._put(chr(byte), CELL)
            return 1
        if not self.kanji:
            self._put(bytes((byte,)).decode("cp437"), CELL)
            return 1
        return self._kanji_char(buf, i)

    def _kanji_char(self, buf, i):
        lead = buf[i]
        if lead in (0x80, 0xFF):
            self._put("?", CELL)
            return 1
        if i + 1 >= len(buf):
            return 0
        second = buf[i + 1]
        if 0x30 <= second <= 0x39:
            if i + 3 >= len(buf):
                return 0
            size = 4
        elif 0x40 <= second <= 0xFE and second != 0x7F:
            size = 2
        else:
            self._put("?", 2 * CELL)
            return 1            # a bad second byte starts over as itself
        text = bytes(buf[i:i + size]).decode("gb18030", "replace").replace("\ufffd", "?")
        for ch in text:
            self._put(ch, 2 * CELL)
        return size

    def _params(self, table, buf, i, cmd):
        count = table.get(cmd)
        if count is None:
            return 2            # unknown: no way to know its parameters
        if i + 2 + count > len(buf):
            return 0
        return 2 + count

    def _esc(self, buf, i, cmd):
        if cmd == 0x2A:                         # ESC * m nL nH d...: bit image
            if i + 5 > len(buf):
                return 0
            m, n = buf[i + 2], buf[i + 3] | buf[i + 4] << 8
            self._skip = n * (1 if m in (0, 1) else 3)
            return 5
        if cmd == 0x44:                         # ESC D n... NUL: tab stops
            self._skip_to_nul = True
            return 2
        if cmd == 0x26:                         # ESC & y c1 c2 [x d...]...: user glyphs
            return self._user_glyphs(buf, i)
        if cmd == 0x28:                         # ESC ( fn pL pH d...
            return self._with_length(buf, i, 3)
        used = self._params(ESC_PARAMS, buf, i, cmd)
        if not used:
            return 0
        arg = buf[i + 2] if used > 2 else 0
        if cmd == 0x40:                         # ESC @
            self._reset()
            self._chars = []
            self._line_dots = 0
            self._line_style = None
        elif cmd == 0x61:                       # ESC a n
            self.align = {0: "left", 1: "center", 2: "right",
                          48: "left", 49: "center", 50: "right"}.get(arg, self.align)
        elif cmd == 0x45:                       # ESC E n
            self.bold = bool(arg & 1)
        elif cmd == 0x21:                       # ESC ! n
            self.bold = bool(arg & 0x08)
            self.height_mul = 2 if arg & 0x10 else 1
            self.width_mul = 2 if arg & 0x20 else 1
        elif cmd == 0x64:                       # ESC d n
            self._feed(arg)
        elif cmd == 0x4A:                       # ESC J n: print, feed n dots
            if self._chars:
                self._print_line()
        elif cmd in (0x69, 0x6D):               # ESC i / ESC m: old cut commands
            self._cut("full" if cmd == 0x69 else "partial")
        elif cmd == 0x70:                       # ESC p m t1 t2
            self._kick()
        return used

    def _gs(self, buf, i, cmd):
        if cmd == 0x56:                         # GS V m [n]
            if i + 3 > len(buf):
                return 0
            m = buf[i + 2]
            used = 3 if m in (0, 1, 48, 49) else 4
            if used > len(buf) - i:
                return 0
            self._cut("full" if m in (0, 48, 65, 97, 103) else "partial")
            return used
        if cmd == 0x76:                         # GS v 0 m xL xH yL yH d...: raster image
            if i + 8 > len(buf):
                return 0
            x = buf[i + 4] | buf[i + 5] << 8
            y = buf[i + 6] | buf[i + 7] << 8
            self._skip = x * y
            return 8
        if cmd == 0x6B:                         # GS k m ...: barcode
            if i + 3 > len(buf):
                return 0
            if buf[i + 2] <= 6:
                self._skip_to_nul = True
                return 3
            if i + 4 > len(buf):
                return 0
            n = buf[i + 3]
            if buf[i + 2] == 73:                # Code 128: drawn
                if i + 4 + n > len(buf):
                    return 0
                self._barcode(bytes(buf[i + 4:i + 4 + n]))
                return 4 + n
            self._skip = n
            return 4
        if cmd == 0x28:                         # GS ( fn pL pH d...
            if i + 2 < len(buf) and buf[i + 2] == 0x6B:
                return self._qr_function(buf, i)
            return self._with_length(buf, i, 3)
        if cmd == 0x38:                         # GS 8 L p1 p2 p3 p4 d...
            if i + 7 > len(buf):
                return 0
            self._skip = (buf[i + 3] | buf[i + 4] << 8 | buf[i + 5] << 16
                          | buf[i + 6] << 24)
            return 7
        if cmd == 0x2A:                         # GS * x y d...: downloaded image
            if i + 4 > len(buf):
                return 0
            self._skip = buf[i + 2] * buf[i + 3] * 8
            return 4
        used = self._params(GS_PARAMS, buf, i, cmd)
        if used and cmd == 0x21:                # GS ! n: character size
            arg = buf[i + 2]
            self.width_mul = (arg >> 4 & 7) + 1
            self.height_mul = (arg & 7) + 1
        elif used and cmd == 0x68:              # GS h n: barcode height
            self.barcode_height = buf[i + 2] or self.barcode_height
        elif used and cmd == 0x77:              # GS w n: module width
            if 1 <= buf[i + 2] <= 6:
                self.module = buf[i + 2]
        elif used and cmd == 0x48:              # GS H n: HRI position
            self.hri = buf[i + 2] & 3
        return used

    def _fs(self, buf, i, cmd):
        if cmd == 0x28:                         # FS ( fn pL pH d...
            return self._with_length(buf, i, 3)
        used = self._params(FS_PARAMS, buf, i, cmd)
        if used and cmd == 0x26:
            self.kanji = True
        elif used and cmd == 0x2E:
            self.kanji = False
        return used

    def _with_length(self, buf, i, header):
        # "<prefix> <cmd> fn pL pH" then pL + 256 * pH data bytes.
        if i + 2 + header > len(buf):
            return 0
        self._skip = buf[i + 3] | buf[i + 4] << 8
        return 5

    def _qr_function(self, buf, i):
        """GS ( k pL pH cn fn [parameters]: the 2D symbol functions, QR (cn 49) only."""
        if i + 5 > len(buf):
            return 0
        n = buf[i + 3] | buf[i + 4] << 8
        if i + 5 + n > len(buf):
            return 0            # wait for the whole command: function 180 holds the data
        args = bytes(buf[i + 5:i + 5 + n])
        if len(args) >= 2 and args[0] == 49:
            fn = args[1]
            if fn == 65 and len(args) >= 3:                 # 165: model
                self.qr_model = args[2]
            elif fn == 67 and len(args) >= 3:               # 167: module size
                if 1 <= args[2] <= 16:
                    self.qr_module = args[2]
            elif fn == 69 and len(args) >= 3:               # 169: error level
                self.qr_error = QR_LEVELS.get(args[2], self.qr_error)
            elif fn == 80 and len(args) >= 3:               # 180: store (m = 48)
                self.qr_data = args[3:]
            elif fn == 81:                                  # 181: print
                self._qr_print()
        return 5 + n

    def _qr_print(self):
        import segno
        if self._chars:
            self._print_line()
        data = self.qr_data
        try:
            if not data or self.qr_model != 50:
                raise ValueError("no data, or not model 2")
            symbol = segno.make(data, error=self.qr_error.lower(), micro=False,
                                boost_error=False)
        except (ValueError, segno.DataOverflowError):
            self.qr_refused += 1
            return
        matrix = [list(row) for row in symbol.matrix]
        width = len(matrix) * self.qr_module
        if width > DOTS:
            self.qr_refused += 1            # a real printer does not print it either
            return
        x = {"center": (DOTS - width) // 2, "right": DOTS - width}.get(self.align, 0)
        text = data.decode("utf-8", "replace")
        receipt = self.current
        self._flush_feed()
        receipt.graphics.append((len(receipt.lines),
                                 QrSymbol(text, matrix, self.qr_module, x, self.qr_error)))
        receipt.qr_codes.append(text)

    def _user_glyphs(self, buf, i):
        if i + 5 > len(buf):
            return 0
        y, c1, c2 = buf[i + 2], buf[i + 3], buf[i + 4]
        pos = i + 5
        for _ in range(max(0, c2 - c1 + 1)):
            if pos >= len(buf):
                return 0
            pos += 1 + y * buf[pos]
        if pos > len(buf):
            return 0
        return pos - i

    # -- paper ------------------------------------------------------------------------
    def _size(self):
        if self.width_mul == self.height_mul:
            return self.width_mul
        return (self.width_mul, self.height_mul)

    def _style(self):
        return (self.align, self.bold, self._size())

    def _put(self, ch, dots):
        dots *= self.width_mul
        if self._chars and self._line_dots + dots > DOTS:
            self._print_line()          # too wide: the printer wraps
        if self._line_style is None:
            self._line_style = self._style()
        self._chars.append(ch)
        self._line_dots += dots

    def _print_line(self):
        style = self._line_style or self._style()
        lines = self.current.lines
        self._flush_feed()
        lines.append(("".join(self._chars),) + style)
        self._chars = []
        self._line_dots = 0
        self._line_style = None

    def _flush_feed(self):
        self.current.lines.extend([("", "left", False, 1)] * self._pending_feed)
        self._pending_feed = 0

    def _barcode(self, payload):
        """GS k 73: draw the Code 128 symbol, then read it back from the bars."""
        if self._chars:
            self._print_line()
        try:
            runs = draw_code128(code128_values(payload), self.module, self.align)
        except ValueError:
            runs = None
        if runs is None:
            self.barcodes_refused += 1
            return
        bars = Bars(runs, self.barcode_height)
        try:
            data = code128_decode(bars.widths(), self.module)
        except ValueError:
            data = None
        receipt = self.current
        self._flush_feed()
        hri = (data if data is not None else "?", self.align, False, 1)
        if self.hri & 1:
            receipt.lines.append(hri)
        receipt.graphics.append((len(receipt.lines), bars))
        receipt.barcodes.append(data)
        if self.hri & 2:
            receipt.lines.append(hri)

    def _feed(self, n):
        if self._chars:
            self._print_line()
            n -= 1
        self._pending_feed += max(0, n)

    def _cut(self, kind):
        if self._chars:
            self._print_line()
        receipt = self.current
        receipt.cut = kind
        receipt.feed = self._pending_feed
        self._pending_feed = 0
        self.receipts.append(receipt)
        self.current = PaperReceipt()
        if self.on_receipt is not None:
            self.on_receipt(receipt)

    def _kick(self):
        self.drawer_kicks += 1
        self.current.drawer_kicked = True

    # -- looking at it ----------------------------------------------------------------
    def render_png(self, receipt, path):
        render_png(receipt, path)


_font_cache = []
_glyph_cache = {}


def _font():
    if not _font_cache:
        from PIL import ImageFont
        _font_cache.append(ImageFont.truetype(FONT_PATH, 12))
    return _font_cache[0]


def _glyph(ch):
    """The character's ink at the font's 12 px size, as a 1-bit image 15 px high."""
    glyph = _glyph_cache.get(ch)
    if glyph is None:
        from PIL import Image, ImageDraw
        canvas = Image.new("1", (32, 15), 0)
        draw = ImageDraw.Draw(canvas)
        draw.fontmode = "1"
        draw.text((0, 0), ch, font=_font(), fill=1)
        box = canvas.getbbox()
        glyph = canvas.crop((box[0], 0, box[2], 15)) if box else None
        _glyph_cache[ch] = glyph
    return glyph


def _bar_rows(graphics, index, width):
    """The bands of the barcodes and QR codes that come before line index (1 = ink)."""
    return [graphic.row(width) for at, graphic in graphics if at == index]


def read_barcodes(path):
    """What a scanner reads off a receipt PNG: the data of each Code 128 symbol found
    on its pixel rows, top to bottom, once each. Decodes the pixels alone (the module
    is the narrowest element), so a bar drawn wrong is not read."""
    from PIL import Image
    image = Image.open(path).convert("L")
    width, height = image.size
    pixels = image.load()
    found = []
    last = None
    for y in range(height):
        runs = []                       # (dark, length) across the row
        for x in range(width):
            dark = pixels[x, y] < 128
            if runs and runs[-1][0] == dark:
                runs[-1][1] += 1
            else:
                runs.append([dark, 1])
        if runs and not runs[0][0]:
            runs = runs[1:]
        if runs and not runs[-1][0]:
            runs = runs[:-1]
        data = None
        if len(runs) >= 25:
            widths = [n for _, n in runs]
            try:
                data = code128_decode(widths, min(widths))
            except ValueError:
                data = None
        if data is not None and data != last:
            found.append(data)
        last = data
    return found


def render_png(receipt, path, width=DOTS):
    """Draw the receipt's paper, 384 dots wide, each glyph in the printer's
    12x24 (Kanji 24x24) cell at twice the bitmap font's size."""
    from PIL import Image, ImageChops

    rows = []
    graphics = list(getattr(receipt, "graphics", []))
    for index, (text, align, bold, size) in enumerate(receipt.lines):
        rows.extend(_bar_rows(graphics, index, width))
        wmul, hmul = (size, size) if isinstance(size, int) else size
        height = ROW * hmul
        row = Image.new("1", (width, height), 0)
        cells = []
        for ch in text:
            cell = CELL * wmul * (2 if display_width(ch) == 2 else 1)
            cells.append((ch, cell))
        used = sum(cell for _, cell in cells)
        x = {"center": (width - used) // 2, "right": width - used}.get(align, 0)
        x = max(0, x)
        for ch, cell in cells:
            glyph = _glyph(ch)
            if glyph is not None:
                # Twice the bitmap, times the character size; a glyph wider than
                # its cell (the bitmap font is proportional) is narrowed to fit.
                gw = min(cell, glyph.width * 2 * wmul)
                scaled = glyph.resize((gw, 15 * 2 * hmul), Image.NEAREST)
                if bold:
                    shifted = Image.new("1", scaled.size, 0)
                    shifted.paste(scaled, (wmul, 0))
                    scaled = ImageChops.logical_or(scaled, shifted)
                row.paste(1, (x + (cell - gw) // 2, 0), scaled)
            x += cell
        rows.append(row)
    rows.extend(_bar_rows(graphics, len(receipt.lines), width))
    top = ROW // 2
    feed = ROW * (receipt.feed if getattr(receipt, "feed", 0) else 1)
    height = top + sum(r.height for r in rows) + feed + 8
    paper = Image.new("L", (width, height), 255)
    y = top
    for row in rows:
        paper.paste(0, (0, y), row)
        y += row.height
    if getattr(receipt, "cut", None):
        # The cut: dashes across the paper; a partial cut leaves a tab in the middle.
        cut_y = height - 4
        for x0 in range(0, width, 12):
            if receipt.cut == "partial" and width // 2 - 24 <= x0 < width // 2 + 24:
                continue
            paper.paste(128, (x0, cut_y, x0 + 6, cut_y + 2))
    paper.save(path)
    return path
