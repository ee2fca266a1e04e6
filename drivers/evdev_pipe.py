"""Input devices: the real evdev node, and a pipe that carries the same bytes.

PipeInputDevice is the transport tests and the simulator put under the keypad driver
in place of /dev/input/eventN. What travels through it is the kernel's own
`struct input_event` (linux/input.h), so the driver above reads, decodes and
dispatches exactly as it does on the terminal.
"""
import errno
import fcntl
import os
import struct
import time

import evdev
from evdev import ecodes

# struct input_event { struct timeval time; __u16 type; __u16 code; __s32 value; }
# The timeval is two C longs: 8 bytes each on 64-bit, 4 on 32-bit ARM (the kernel
# keeps it that way even for 64-bit time_t userlands). Native layout, native sizes.
EVENT_FORMAT = "@llHHi"
EVENT_SIZE = struct.calcsize(EVENT_FORMAT)

# Read this many events per system call at most, as python-evdev does.
READ_CHUNK = 64 * EVENT_SIZE


def encode_event(type, code, value, sec=None, usec=None):
    """The bytes the kernel would deliver for one event."""
    if sec is None:
        now = time.time()
        sec, usec = int(now), int((now % 1) * 1000000)
    return struct.pack(EVENT_FORMAT, sec, usec or 0, type, code, value)


def decode_events(data):
    """Whole events in data as evdev.InputEvent, and the leftover bytes."""
    whole = len(data) - len(data) % EVENT_SIZE
    events = [evdev.InputEvent(*fields)
              for fields in struct.iter_unpack(EVENT_FORMAT, data[:whole])]
    return events, data[whole:]


class PipeInputDevice:
    """An evdev.InputDevice look-alike whose events arrive through an os.pipe.

    Reader side (what a driver uses): fileno(), read(), read_one(), grab(), ungrab(),
    close(), name, path. Writer side (the test or the simulator): inject(), press(),
    close_writer().

    read() follows evdev.InputDevice.read(): it never blocks, raises BlockingIOError
    when nothing is waiting, and returns every whole event that is. Where the real
    node raises OSError(ENODEV) when unplugged, the pipe raises EOFError once the
    writer is closed and drained.
    """

    def __init__(self, name="handpos-sim-keypad", grab_error=None):
        self.name = name
        self.path = "pipe:" + name
        self.grabbed = False
        self.grab_calls = 0
        # An OSError to raise from grab(), as when another process holds the device.
        self.grab_error = grab_error
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        for fd in (self._r, self._w):
            fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        self._pending = b""
        self._unplugged = False
        self.closed = False

    # -- the reader: what evdev.InputDevice offers -------------------------------
    def fileno(self):
        if self._r is None:
            raise ValueError("PipeInputDevice %r is closed" % self.name)
        return self._r

    @property
    def fd(self):
        return self._r if self._r is not None else -1

    def read(self):
        """Every whole event waiting, as a list of evdev.InputEvent."""
        self._check()
        data = self._pending
        eof = False
        while True:
            try:
                chunk = os.read(self._r, READ_CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                eof = True
                break
            data += chunk
        events, self._pending = decode_events(data)
        if events:
            return events       # an EOF right behind them is reported on the next read
        if eof:
            raise EOFError("input device %r closed" % self.name)
        raise BlockingIOError(errno.EAGAIN, "no input events waiting")

    def read_one(self):
        """One event, or None when none is waiting (as evdev's read_one)."""
        self._check()
        while len(self._pending) < EVENT_SIZE:
            try:
                chunk = os.read(self._r, EVENT_SIZE - len(self._pending))
            except BlockingIOError:
                return None
            if not chunk:
                raise EOFError("input device %r closed" % self.name)
            self._pending += chunk
        events, self._pending = decode_events(self._pending)
        return events[0]

    def _check(self):
        if self._r is None:
            raise OSError(errno.EBADF, "device closed")
        if self._unplugged:
            raise OSError(errno.ENODEV, "No such device")

    def grab(self):
        self.grab_calls += 1
        if self.grab_error is not None:
            raise self.grab_error
        if self.grabbed:
            # EVIOCGRAB on a device this process already holds fails the same way.
            raise OSError(errno.EBUSY, "Device or resource busy")
        self.grabbed = True

    def ungrab(self):
        if not self.grabbed:
            raise OSError(errno.EINVAL, "Invalid argument")
        self.grabbed = False

    def close(self):
        if self._r is not None:
            os.close(self._r)
            self._r = None
        self.closed = True

    # -- the writer: the keypad's side of the wire -------------------------------
    def inject(self, type, code, value, sec=None, usec=None):
        """Write one kernel input_event (atomic: far below PIPE_BUF)."""
        if self._w is None:
            raise OSError(errno.EPIPE, "writer closed")
        os.write(self._w, encode_event(type, code, value, sec, usec))

    def inject_events(self, events):
        """Write recorded events (evdev.InputEvent or (type, code, value)) in order."""
        for ev in events:
            if isinstance(ev, evdev.InputEvent):
                self.inject(ev.type, ev.code, ev.value, ev.sec, ev.usec)
            else:
                self.inject(*ev)

    def syn(self):
        self.inject(ecodes.EV_SYN, ecodes.SYN_REPORT, 0)

    def press(self, code):
        """A key going down and up, each followed by SYN_REPORT, as a keypad sends."""
        if isinstance(code, str):
            code = ecodes.ecodes[code]
        self.inject(ecodes.EV_KEY, code, 1)
        self.syn()
        self.inject(ecodes.EV_KEY, code, 0)
        self.syn()

    def unplug(self):
        """Pull the cable: the reader wakes and its next read fails with ENODEV, as an
        evdev node's does when its USB keypad is removed."""
        self._unplugged = True
        if self._w is not None:
            os.write(self._w, b"\x00")     # wake the poller; never decoded

    def close_writer(self):
        """Unplug: the reader sees EOF once it has drained what was written."""
        if self._w is not None:
            os.close(self._w)
            self._w = None

    def __del__(self):
        try:
            self.close_writer()
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return "PipeInputDevice(%r)" % self.name


class InputDeviceError(LookupError):
    """No usable input device; the message lists what was found and what to check."""


KEYPAD_CHECK = "the keypad overlay (dtoverlay=matrix-keypad or gpio-keys)"


def open_input_device(name_or_path, input_dir="/dev/input", check=KEYPAD_CHECK):
    """The evdev.InputDevice at a path, or the first whose name matches; check says
    what to look at, beside the board profile, when none does.

    A name matches exactly first, then case-insensitively as a substring, so a
    profile may say "matrix-keypad" for the overlay's "matrix-keypad@0".
    """
    if os.path.sep in name_or_path:
        try:
            return evdev.InputDevice(name_or_path)
        except PermissionError:
            raise InputDeviceError(
                "input: no permission to read %s: add the user to the 'input' group "
                "(sudo adduser $USER input)" % name_or_path)
        except OSError as exc:
            raise InputDeviceError(
                "input: cannot open %s (%s): check the board profile and that the "
                "device is plugged in" % (name_or_path, exc.strerror or exc))
    opened = []
    found = []
    for path in sorted(evdev.list_devices(input_dir), key=_event_number):
        try:
            dev = evdev.InputDevice(path)
        except OSError as exc:
            found.append("%s (cannot open: %s)" % (path, exc.strerror or exc))
            continue
        opened.append(dev)
        found.append("%s %r" % (path, dev.name))
    wanted = name_or_path.lower()
    chosen = None
    for match in (lambda d: d.name == name_or_path, lambda d: wanted in d.name.lower()):
        chosen = next((d for d in opened if match(d)), None)
        if chosen is not None:
            break
    for dev in opened:
        if dev is not chosen:
            dev.close()
    if chosen is not None:
        return chosen
    if found:
        listing = "; ".join(found)
    elif os.path.isdir(input_dir):
        listing = "none readable in %s (is the user in the 'input' group?)" % input_dir
    else:
        listing = "none: %s does not exist" % input_dir
    raise InputDeviceError(
        "input: no device named %r. Found: %s. Check %s and the device name in the "
        "board profile" % (name_or_path, listing, check))


def _event_number(path):
    digits = "".join(ch for ch in os.path.basename(path) if ch.isdigit())
    return int(digits) if digits else 0
