"""ESC/POS thermal printer on a serial line, driven from the terminal's one loop.

The driver turns a firmware Receipt into ESC/POS bytes and feeds them to the port
without ever blocking: a receipt at 9600 baud takes seconds and the keypad must stay
live, so every write is a non-blocking os.write made when poll says the port is
writable, and every wait is a reactor timer.

Flow control is stop-and-wait on the printer's real-time status: before a job and
after every chunk (about 256 bytes, always ending on a line boundary) the driver asks
DLE EOT 4 (paper sensor) and DLE EOT 2 (offline cause) and sends the next chunk only
when both answers are in and say the printer can print. Printers answer DLE EOT as
soon as the bytes arrive, ahead of the data still in their buffer, so a paper-out or
an open cover stops the job within one chunk; the bytes already sent stay in the
printer's buffer and print when paper is back, and the driver resumes at the first
byte it held back. Nothing is sent twice and nothing is skipped.

While a job is held (paper out, cover open, no answer) the driver re-asks every
status_interval_ms: the printer cannot tell us when paper is loaded. When nothing
is held it sends nothing at all, so an idle terminal costs no CPU.
"""
import os

import segno
import serial
from escpos import constants as escpos_const

from firmware.core.events import DEVICE_LOST, PRINTED, PRINTER, Event
from firmware.core.reactor import POLLIN, POLLOUT
from firmware.retail.receipt_code import MODULE_DOTS, code128_segments
from firmware.ui.receipt import display_width

# Printer states, as reported in Event(PRINTER, state=...).
UNKNOWN = "unknown"              # before the first answer; never reported as an event
OK = "ok"
NEAR_END = "paper_near_end"      # a warning: printing goes on
PAPER_OUT = "paper_out"
COVER_OPEN = "cover_open"
OFFLINE = "offline"
ERROR = "error"

# States in which a job is held back until the printer says it can print again.
HOLDING = (PAPER_OUT, COVER_OPEN, OFFLINE, ERROR)

DETAILS = {
    OK: "printer ready",
    NEAR_END: "paper roll nearly used up: load a new roll soon",
    PAPER_OUT: "printer out of paper: load a new roll and close the cover",
    COVER_OPEN: "printer cover open: close it to go on printing",
    OFFLINE: "printer not answering: check cable and power",
    ERROR: "printer error: switch the printer off and on again",
}

ESC = escpos_const.ESC
GS = escpos_const.GS
FS = escpos_const.FS
LF = escpos_const.CTL_LF

INIT = escpos_const.HW_INIT                                   # ESC @
ALIGN = escpos_const.TXT_STYLE["align"]                       # ESC a n
BOLD = escpos_const.TXT_STYLE["bold"]                         # ESC E n
SIZE = escpos_const.TXT_SIZE                                  # GS ! n
KANJI_ON = FS + b"&"
KANJI_OFF = FS + b"."
FEED = ESC + b"d"                                             # ESC d n
PARTIAL_CUT = GS + b"V" + bytes((66, 0))                      # feed to the cutter, partial cut
# Pin 2, 50 ms on, 500 ms off: long enough for the common 24 V drawer solenoids.
DRAWER_KICK = escpos_const.CD_KICK_DEC_SEQUENCE(27, 112, 0, 25, 250)

# Barcodes (GS k m=73, Code 128): bars this many dots high, modules MODULE_DOTS wide
# (0.25 mm: what scanners read well off thermal paper), no HRI from the printer (the
# receipt prints its own text line under the bars, in the receipt's font).
BARCODE_HEIGHT = 64
BARCODE_CODE128 = 73
# QR codes: GS ( k, function 165 (model 2), 167 (module size), 169 (error level M:
# paper creases, fades and smudges, and 15% recovery is what survives a pocket), 180
# (store the data), 181 (print the stored symbol), at the alignment ESC a sets.
# The printer's store takes QR_STORE_MAX bytes, but the symbol must also fit the
# paper: at 6 dots a module a 384-dot head prints up to version 11 (61 modules),
# 251 bytes of a URL at level M. Anything longer is refused before a byte is sent.
QR_PREFIX = GS + b"(k"
QR_ERROR = "M"
QR_ERROR_BYTES = {"L": 48, "M": 49, "Q": 50, "H": 51}
QR_STORE_MAX = 7089
DOTS = 384                       # printable width of the 58 mm head at 203 dpi
# DLE then EOT, ENQ or DC4 is a real-time command to the printer wherever it appears,
# even inside another command's data: a set C pair 16 (0x10) followed by one of these
# pairs is sent from set B instead.
_REALTIME_SECOND = (4, 5, 20)

# Real-time status requests and the fixed bits every answer byte carries
# (bit 1 and bit 4 set, bit 0 and bit 7 clear).
ASK_PAPER = escpos_const.RT_STATUS_PAPER                      # DLE EOT 4
ASK_CAUSE = escpos_const.RT_STATUS + b"\x02"                  # DLE EOT 2
STATUS_MASK = 0x93
STATUS_FIXED = 0x12
PAPER_NEAR_END_BITS = 0x0C       # DLE EOT 4, bits 2-3
PAPER_END_BITS = 0x60            # DLE EOT 4, bits 5-6
CAUSE_COVER_OPEN = 0x04          # DLE EOT 2, bit 2
CAUSE_PAPER_STOP = 0x20          # DLE EOT 2, bit 5: printing stopped by paper end
CAUSE_ERROR = 0x40               # DLE EOT 2, bit 6

# A UART that still holds our bytes is not a dead printer: allow this much waiting
# for the line to drain before calling the printer offline.
MAX_DRAIN_WAIT_MS = 30000


class PrinterError(Exception):
    """The printer port cannot be used; the message says what to check."""


def open_serial(path, baudrate=9600, **options):
    """Open the printer's serial port for non-blocking use from the reactor.

    options go to serial.Serial (rtscts, xonxoff, ...). The port is locked
    exclusively so a second program cannot interleave bytes into a receipt.
    """
    try:
        port = serial.Serial(path, baudrate, timeout=0, write_timeout=0,
                             exclusive=True, **options)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise PrinterError(
            "cannot open printer port %s at %s baud (%s): check that the printer "
            "cable is plugged in, that %s exists and this user may open it "
            "(group dialout), and that no other program is using it"
            % (path, baudrate, exc, path))
    os.set_blocking(port.fileno(), False)
    return port


def _fileno(port):
    return port if isinstance(port, int) else port.fileno()


def _clean(text):
    # Control characters in receipt text would reach the printer as commands
    # (DLE EOT in the middle of a line is a status request): print a space instead.
    return "".join(" " if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in text)


def _cp437(ch):
    """The character's byte in the printer's default table, or None."""
    if display_width(ch) != 1:
        return None
    try:
        return ch.encode("cp437")
    except UnicodeEncodeError:
        return None


def _encode_text(text, columns, kanji):
    """(bytes, kanji mode after them) for text cut to the printer's columns.

    ASCII prints the same in both modes. A character the default table (CP437) has,
    like the pound or yen sign, is printed from it, leaving Kanji mode around it;
    anything else goes out as GB18030 in Kanji mode, where every multi-byte
    character is printed from the 24x24 font: two columns, whatever its Unicode
    width.
    """
    out = b""
    used = 0
    for ch in text:
        if ord(ch) < 0x80:
            code, wide = ch.encode("ascii"), False
        else:
            code = _cp437(ch)
            wide = code is None
            if wide:
                code = ch.encode("gb18030")
        used += 2 if wide else 1
        if used > columns:
            break
        if ord(ch) >= 0x80 and wide != kanji:
            kanji = wide
            out += KANJI_ON if kanji else KANJI_OFF
        out += code
    return out, kanji


def code128_command(data):
    """GS h, GS w, GS H and GS k m=73 for a Code 128 symbol of data (printable ASCII):
    code set selectors "{B" and "{C", set B text with "{" doubled, set C digits packed
    two to a byte. ValueError for data the command cannot carry (over 255 bytes)."""
    payload = b""
    current = None
    for kind, text in code128_segments(data):
        if kind == "B":
            payload += (b"{B" if current != "B" else b"") + text.encode("ascii").replace(b"{", b"{{")
            current = "B"
            continue
        pairs = [int(text[j:j + 2]) for j in range(0, len(text), 2)]
        for index, pair in enumerate(pairs):
            after = pairs[index + 1] if index + 1 < len(pairs) else None
            wanted = "B" if pair == 16 and after in _REALTIME_SECOND else "C"
            if wanted != current:
                payload += b"{" + wanted.encode("ascii")
                current = wanted
            payload += b"16" if wanted == "B" else bytes((pair,))
    if len(payload) > 255:
        raise ValueError("barcode data too long for GS k: %r" % data)
    return (GS + b"h" + bytes((BARCODE_HEIGHT,)) + GS + b"w" + bytes((MODULE_DOTS,))
            + GS + b"H\x00" + GS + b"k" + bytes((BARCODE_CODE128, len(payload))) + payload)


def qr_command(data, module=6, error=QR_ERROR, dots=DOTS):
    """GS ( k functions 165, 167, 169, 180 and 181: a model 2 QR code of data (text,
    sent as UTF-8) with modules of module dots at error level error. ValueError, in
    words, for data the printer cannot store or whose symbol is wider than dots."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if not raw:
        raise ValueError("QR code with no data: nothing to print")
    if any(b < 0x20 or b == 0x7F for b in raw):
        # a DLE EOT inside the data would be taken as a status request
        raise ValueError("QR data has control characters: a code URL is printable text")
    if not 1 <= module <= 16:
        raise ValueError("QR module size %d dots: the printer takes 1 to 16" % module)
    if len(raw) > QR_STORE_MAX:
        raise ValueError("QR data of %d bytes is more than the printer stores (%d)"
                         % (len(raw), QR_STORE_MAX))
    most = (dots // module - 17) // 4          # the largest version that fits across
    try:
        symbol = segno.make(raw, error=error.lower(), micro=False, boost_error=False)
        version = symbol.version
    except segno.DataOverflowError:
        version = 41
    if version > most:
        raise ValueError(
            "QR data of %d bytes too long for the paper: it needs version %s, %s dots "
            "wide at %d dots a module, and the %d-dot head prints up to version %d; "
            "shorten the code URL or use smaller modules"
            % (len(raw), version if version <= 40 else ">40",
               (17 + 4 * version) * module if version <= 40 else "over %d" % dots,
               module, dots, most))
    store = len(raw) + 3
    return (QR_PREFIX + b"\x04\x00\x31\x41\x32\x00"                  # fn 165: model 2
            + QR_PREFIX + b"\x03\x00\x31\x43" + bytes((module,))       # fn 167: module
            + QR_PREFIX + b"\x03\x00\x31\x45" + bytes((QR_ERROR_BYTES[error.upper()],))
            + QR_PREFIX + bytes((store & 0xFF, store >> 8)) + b"\x31\x50\x30" + raw
            + QR_PREFIX + b"\x03\x00\x31\x51\x30")                    # fn 181: print


class _Job:
    def __init__(self, job_id, parts):
        self.id = job_id
        self.data = b"".join(parts)
        self.bounds = []            # offsets where a line ends: safe places to pause
        pos = 0
        for part in parts:
            pos += len(part)
            self.bounds.append(pos)
        self.offset = 0             # first byte not yet handed to the port
        self.checked = False        # the start-of-job status request went out

    def next_end(self, chunk_size):
        """End of the next chunk: the last line boundary within chunk_size, or the
        first one after offset when a single line is longer than that."""
        limit = self.offset + chunk_size
        end = None
        for bound in self.bounds:
            if bound <= self.offset:
                continue
            if end is None or bound <= limit:
                end = bound
            if bound >= limit:
                break
        return end if end is not None else len(self.data)


class EscPosPrinter:
    """The Printer the core sees: print(receipt) -> job id, events for the rest.

    port: an open serial port (anything with fileno(), or a descriptor), owned by
    the caller. on_event(Event) receives PRINTER state changes, PRINTED per job and
    DEVICE_LOST when the port dies.
    """

    def __init__(self, port, reactor, on_event, width=32, status_interval_ms=1000,
                 reply_timeout_ms=1000, chunk_size=256, baudrate=None):
        self.port = port
        self.fd = _fileno(port)
        self.reactor = reactor
        self.on_event = on_event
        self.width = width
        self.status_interval_ms = status_interval_ms
        self.reply_timeout_ms = reply_timeout_ms
        self.chunk_size = max(1, chunk_size)
        self.baudrate = baudrate or getattr(port, "baudrate", None) or 9600
        self.state = UNKNOWN
        self.detail = ""
        self.jobs_done = 0
        self._jobs = []             # jobs with bytes not yet handed to the port
        self._next_id = 0
        self._out = bytearray()     # bytes for the port, written when it is writable
        self._queued = 0            # bytes ever put into _out
        self._written = 0           # bytes ever accepted by the port
        self._ends = []             # (stream position of a job's last byte, job id)
        self._awaiting = []         # DLE EOT n whose answer is due, oldest first
        self._answers = {}
        self._reply_timer = None
        self._retry_timer = None
        self._unsent_seen = None
        self._drain_waited = 0
        self._events = POLLIN
        self._alive = True
        self._tty = os.isatty(self.fd)
        os.set_blocking(self.fd, False)
        reactor.add_reader(self.fd, self._ready, self._dead, POLLIN)
        self.query_status()

    # -- what the core calls --------------------------------------------------
    @property
    def busy(self):
        """True while a job has bytes that have not left for the printer."""
        return bool(self._jobs) or bool(self._ends)

    def print(self, receipt):
        """Queue a receipt; Event(PRINTED, job=id) follows when its last byte left."""
        self._next_id += 1
        self._jobs.append(_Job(self._next_id, self._encode_parts(receipt)))
        self._pump()
        return self._next_id

    def query_status(self):
        """Ask the printer for its state now; a change arrives as Event(PRINTER)."""
        self._ask()

    def resume(self):
        """The operator says the printer is ready: ask now instead of at the next retry."""
        self._cancel_retry()
        self._ask()

    def cancel_job(self, job_id=None):
        """Drop a job (the current one by default). Returns False when it is unknown
        or all its bytes have already gone. A job cut short mid-receipt gets its
        modes reset and its paper fed and cut, so the operator can tear it off."""
        for index, job in enumerate(self._jobs):
            if job_id is None or job.id == job_id:
                del self._jobs[index]
                if job.offset:
                    self._queue(KANJI_OFF + INIT + FEED + b"\x03" + PARTIAL_CUT)
                self._pump()
                return True
        return False

    def selftest(self):
        """(ok, detail) from what the driver knows now; also asks for a fresh status."""
        if not self._alive:
            return False, self.detail
        try:
            os.fstat(self.fd)
        except OSError:
            return False, "printer port is closed: restart the terminal"
        self.query_status()
        if self.state == UNKNOWN:
            return False, "printer has not answered yet: try again in a second"
        ok = self.state not in HOLDING
        detail = "%s; %d printed, %d waiting" % (self.detail, self.jobs_done, len(self._jobs))
        return ok, detail

    def close(self):
        """Stop using the port (the caller closes it)."""
        self._cancel_retry()
        self._cancel_reply_timer()
        self.reactor.remove(self.fd)
        self._alive = False

    # -- ESC/POS ---------------------------------------------------------------
    def encode(self, receipt):
        """The whole receipt as ESC/POS bytes."""
        return b"".join(self._encode_parts(receipt))

    def _encode_parts(self, receipt):
        # One part per printed line, so a job can pause only between lines and
        # never in the middle of a command or a double-byte character.
        head = INIT
        if receipt.kick_drawer:
            # At the start: the drawer opens while the receipt prints.
            head += DRAWER_KICK
        parts = [head]
        align, bold, size, kanji = "left", False, 1, False   # what ESC @ leaves
        chinese = receipt.lang == "zh"
        for line in receipt.lines:
            out = b""
            line_size = min(8, max(1, int(line.size)))
            text = _clean(line.text)
            barcode = getattr(line, "kind", "text") == "barcode"
            if barcode:
                # bars centred, then the text under them as an ordinary line; a
                # barcode command starts on a fresh line, which every part ends with
                out += ALIGN["center"] if align != "center" else b""
                align = "center"
                out += code128_command(line.data)
            elif getattr(line, "kind", "text") == "qr":
                # the symbol centred, then the line's own (blank) text: the feed after it
                out += ALIGN["center"] if align != "center" else b""
                align = "center"
                out += qr_command(line.data, line.module, dots=self.width * 12)
            if line.align in ALIGN and line.align != align:
                align = line.align
                out += ALIGN[align]
            if bool(line.bold) != bold:
                bold = bool(line.bold)
                out += BOLD[bold]
            if line_size != size:
                size = line_size
                out += SIZE + bytes((((size - 1) << 4) | (size - 1),))
            # Kanji mode for the whole line when it is Chinese; a line whose only
            # non-ASCII characters are in CP437 (cafe, pound sign) never needs it.
            wanted = chinese or any(_cp437(ch) is None for ch in text if ord(ch) >= 0x80)
            if wanted != kanji:
                kanji = wanted
                out += KANJI_ON if kanji else KANJI_OFF
            data, kanji = _encode_text(text, self.width // line_size, kanji)
            out += data + LF
            parts.append(out)
        tail = b""
        if kanji:
            tail += KANJI_OFF
        if size != 1:
            tail += SIZE + b"\x00"
        if bold:
            tail += BOLD[False]
        if align != "left":
            tail += ALIGN["left"]
        if receipt.feed_after:
            tail += FEED + bytes((min(255, max(0, receipt.feed_after)),))
        if receipt.cut:
            tail += PARTIAL_CUT
        if tail:
            parts.append(tail)
        return parts

    # -- sending ------------------------------------------------------------------
    def _pump(self):
        """Decide what goes to the port next. Never writes: the reactor does that."""
        if not self._alive or self._awaiting or self._out or not self._jobs:
            self._update_events()
            return
        job = self._jobs[0]
        if not job.checked:
            job.checked = True
            self._ask()
            return
        if self.state in HOLDING:
            self._arm_retry()
            return
        end = job.next_end(self.chunk_size)
        self._queue(job.data[job.offset:end])
        job.offset = end
        if end >= len(job.data):
            self._ends.append((self._queued, job.id))
            self._jobs.pop(0)
        self._ask()

    def _queue(self, data):
        self._out += data
        self._queued += len(data)
        self._update_events()

    def _ask(self):
        if not self._alive or self._awaiting:
            return          # one request in flight at a time; its answer will do
        self._answers = {}
        self._awaiting = [4, 2]
        self._queue(ASK_PAPER + ASK_CAUSE)
        self._unsent_seen = None
        self._drain_waited = 0
        # Our bytes may have to cross the wire first: allow for them.
        self._arm_reply_timer(self.reply_timeout_ms + self._wire_ms(len(self._out)))

    def _wire_ms(self, nbytes):
        return nbytes * 10 * 1000 // self.baudrate

    def _update_events(self):
        if not self._alive:
            return
        events = POLLIN | (POLLOUT if self._out else 0)
        if events != self._events:
            self._events = events
            self.reactor.modify(self.fd, events)

    def _ready(self, fd, revents):
        if revents & POLLOUT:
            self._write()
        if revents & POLLIN:
            self._read()

    def _write(self):
        if not self._out:
            self._update_events()
            return
        try:
            n = os.write(self.fd, self._out)
        except (BlockingIOError, InterruptedError):
            return
        del self._out[:n]
        self._written += n
        while self._ends and self._ends[0][0] <= self._written:
            job_id = self._ends.pop(0)[1]
            self.jobs_done += 1
            self.on_event(Event(PRINTED, job=job_id))
        if not self._out:
            self._pump()
        self._update_events()

    # -- status -------------------------------------------------------------------
    def _read(self):
        try:
            data = os.read(self.fd, 256)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            if self._tty:
                return      # a tty read of 0 bytes is "nothing yet", not end of file
            raise EOFError("printer port closed")
        for byte in data:
            if not self._awaiting:
                continue    # a late answer to a request we gave up on
            if byte & STATUS_MASK != STATUS_FIXED:
                continue    # not a status byte: line noise, a stray XON/XOFF
            self._answers[self._awaiting.pop(0)] = byte
            if not self._awaiting:
                self._cancel_reply_timer()
                self._set_state(self._decode())
        self._pump()

    def _decode(self):
        paper = self._answers.get(4, STATUS_FIXED)
        cause = self._answers.get(2, STATUS_FIXED)
        if cause & CAUSE_COVER_OPEN:
            return COVER_OPEN
        if paper & PAPER_END_BITS or cause & CAUSE_PAPER_STOP:
            return PAPER_OUT
        if cause & CAUSE_ERROR:
            return ERROR
        if paper & PAPER_NEAR_END_BITS:
            return NEAR_END
        return OK

    def _set_state(self, state, detail=None):
        detail = detail or DETAILS.get(state, state)
        if state not in HOLDING:
            self._cancel_retry()
        if state == self.state and detail == self.detail:
            return
        self.state = state
        self.detail = detail
        self.on_event(Event(PRINTER, state=state, detail=detail))

    def _arm_reply_timer(self, ms):
        self._cancel_reply_timer()
        self._reply_timer = self.reactor.call_later(ms, self._reply_timeout)

    def _cancel_reply_timer(self):
        if self._reply_timer is not None:
            self._reply_timer.cancel()
            self._reply_timer = None

    def _reply_timeout(self):
        self._reply_timer = None
        if not self._awaiting:
            return
        # A UART still draining our bytes (slow line, printer holding us off with
        # flow control) is given the time those bytes need, while they move.
        unsent = len(self._out) + self._kernel_unsent()
        if unsent and self._drain_waited < MAX_DRAIN_WAIT_MS and (
                self._unsent_seen is None or unsent < self._unsent_seen):
            self._unsent_seen = unsent
            wait = self.reply_timeout_ms + self._wire_ms(unsent)
            self._drain_waited += wait
            self._arm_reply_timer(wait)
            return
        self._awaiting = []
        self._set_state(OFFLINE)
        self._pump()

    def _kernel_unsent(self):
        if not self._tty:
            return 0
        try:
            import fcntl
            import struct
            import termios
            raw = fcntl.ioctl(self.fd, termios.TIOCOUTQ, b"\0\0\0\0")
            return struct.unpack("i", raw)[0]
        except (ImportError, OSError, AttributeError):
            return 0

    def _arm_retry(self):
        if self._retry_timer is None:
            self._retry_timer = self.reactor.call_later(self.status_interval_ms, self._retry)

    def _cancel_retry(self):
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None

    def _retry(self):
        self._retry_timer = None
        if not (self._jobs and self.state in HOLDING):
            return
        if self._out:
            self._arm_retry()   # the last request has not even left yet
            return
        self._ask()

    def _dead(self, fd, reason):
        self._alive = False
        self._cancel_retry()
        self._cancel_reply_timer()
        self._awaiting = []
        self._set_state(OFFLINE, "printer connection lost (%s): check the cable, "
                                 "then restart the terminal" % reason)
        self.on_event(Event(DEVICE_LOST, device="printer", reason=reason))


