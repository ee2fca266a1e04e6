"""The keypad driver over the pipe transport, with the real firmware Reactor.

The events are real kernel input_event structs: the same bytes a USB keypad's evdev
node would deliver, recorded as evdev.InputEvent and written into the pipe.
"""
import errno
import struct

import evdev
import pytest
from evdev import ecodes

from drivers.evdev_pipe import (EVENT_SIZE, PipeInputDevice, decode_events,
                                encode_event, open_input_device, InputDeviceError)
from drivers.keypad import Keypad, KeymapError
from firmware.core.reactor import Reactor

KEYMAP = {
    "KEY_KP0": "0", "KEY_KP1": "1", "KEY_KP2": "2", "KEY_KP3": "3",
    "KEY_KPENTER": "ENTER", "KEY_ENTER": "ENTER", "KEY_ESC": "CANCEL",
    "KEY_BACKSPACE": "BKSP", "KEY_KPDOT": ".",
}

EV_KEY, EV_SYN, EV_MSC = ecodes.EV_KEY, ecodes.EV_SYN, ecodes.EV_MSC
SYN = (EV_SYN, ecodes.SYN_REPORT, 0)


def ev(t, type, code, value):
    """A recorded event at t seconds, as evtest would show it."""
    return evdev.InputEvent(1700000000 + int(t), int((t % 1) * 1000000), type, code, value)


def key(t, name, value):
    return ev(t, EV_KEY, ecodes.ecodes[name], value)


def syn(t):
    return ev(t, *SYN)


# A USB keypad typing "1", holding "2" long enough to auto-repeat, pressing an
# unmapped F12, then Enter. Keyboards send an MSC_SCAN before each key event.
RECORDING = [
    ev(0.00, EV_MSC, ecodes.MSC_SCAN, 0x59), key(0.00, "KEY_KP1", 1), syn(0.00),
    ev(0.08, EV_MSC, ecodes.MSC_SCAN, 0x59), key(0.08, "KEY_KP1", 0), syn(0.08),
    key(0.50, "KEY_KP2", 1), syn(0.50),
    key(0.75, "KEY_KP2", 2), syn(0.75),
    key(0.78, "KEY_KP2", 2), syn(0.78),
    key(0.81, "KEY_KP2", 2), syn(0.81),
    key(0.90, "KEY_KP2", 0), syn(0.90),
    key(1.20, "KEY_F12", 1), syn(1.20), key(1.30, "KEY_F12", 0), syn(1.30),
    key(1.60, "KEY_KPENTER", 1), syn(1.60), key(1.70, "KEY_KPENTER", 0), syn(1.70),
]


@pytest.fixture
def reactor():
    r = Reactor()
    yield r
    r.close()


@pytest.fixture
def run_until(reactor):
    """Run the reactor until cond() holds, at most `limit` passes of at most 50 ms."""
    def run(cond, limit=50):
        for _ in range(limit):
            if cond():
                return
            reactor.run_once(50)
        assert cond(), "condition not reached in %d reactor passes" % limit
    return run


@pytest.fixture
def device():
    dev = PipeInputDevice()
    yield dev
    dev.close_writer()
    dev.close()


class Recorder:
    def __init__(self):
        self.keys = []
        self.dead = []

    def on_key(self, name):
        self.keys.append(name)

    def on_dead(self, reason):
        self.dead.append(reason)


def started(device, reactor):
    rec = Recorder()
    pad = Keypad(device, KEYMAP, reactor, rec.on_key, rec.on_dead)
    pad.start()
    return pad, rec


# -- the transport ------------------------------------------------------------------

def test_event_bytes_have_the_kernel_layout():
    # struct timeval is two C longs; then __u16 type, __u16 code, __s32 value.
    long_size = struct.calcsize("l")
    assert EVENT_SIZE == 2 * long_size + 8
    raw = encode_event(EV_KEY, ecodes.KEY_KP1, 1, sec=5, usec=7)
    assert raw[2 * long_size:] == struct.pack("=HHi", EV_KEY, ecodes.KEY_KP1, 1)
    events, rest = decode_events(raw + raw[:3])
    assert rest == raw[:3]
    assert [(e.sec, e.usec, e.type, e.code, e.value) for e in events] == \
        [(5, 7, EV_KEY, ecodes.KEY_KP1, 1)]


def test_evdev_own_reader_decodes_the_pipe_bytes():
    # python-evdev's C reader is compiled against linux/input.h: if it reads back
    # what we wrote, the layout is the kernel's on this platform.
    _input = pytest.importorskip("evdev._input")
    dev = PipeInputDevice()
    try:
        dev.inject_events(RECORDING[:3])
        got = _input.device_read_many(dev.fileno())
        assert [tuple(t) for t in got] == [
            (e.sec, e.usec, e.type, e.code, e.value) for e in RECORDING[:3]]
    finally:
        dev.close_writer()
        dev.close()


def test_read_is_non_blocking_like_evdev(device):
    with pytest.raises(BlockingIOError):
        device.read()
    assert device.read_one() is None
    device.press("KEY_KP3")
    events = device.read()
    assert [(e.type, e.code, e.value) for e in events] == [
        (EV_KEY, ecodes.KEY_KP3, 1), SYN, (EV_KEY, ecodes.KEY_KP3, 0), SYN]
    device.inject(EV_KEY, ecodes.KEY_KP0, 1)
    one = device.read_one()
    assert (one.code, one.value) == (ecodes.KEY_KP0, 1)
    assert device.read_one() is None


def test_read_reports_eof_after_the_last_events(device):
    device.press("KEY_KP1")
    device.close_writer()
    assert len(device.read()) == 4       # what was written still arrives first
    with pytest.raises(EOFError):
        device.read()


def test_open_input_device_lists_what_it_found(tmp_path):
    with pytest.raises(InputDeviceError) as info:
        open_input_device("no-such-keypad", input_dir=str(tmp_path))
    assert "no-such-keypad" in str(info.value)
    assert "input" in str(info.value)
    with pytest.raises(InputDeviceError) as info:
        open_input_device(str(tmp_path / "event9"))
    assert "event9" in str(info.value)


# -- the driver ----------------------------------------------------------------------

def test_recorded_stream_arrives_as_terminal_keys(device, reactor, run_until):
    pad, rec = started(device, reactor)
    device.inject_events(RECORDING)
    run_until(lambda: len(rec.keys) >= 3)
    assert rec.keys == ["1", "2", "ENTER"]   # one "2": the repeats are dropped
    assert pad.unknown == 1                 # F12, counted once (its press)
    assert pad.last_unknown == ecodes.KEY_F12
    assert pad.pressed == 3
    assert rec.dead == []


def test_auto_repeat_is_ignored(device, reactor, run_until):
    _, rec = started(device, reactor)
    device.inject(EV_KEY, ecodes.KEY_KP0, 1)
    for _ in range(20):
        device.inject(EV_KEY, ecodes.KEY_KP0, 2)
    device.inject(EV_KEY, ecodes.KEY_KP0, 0)
    device.press("KEY_ESC")
    run_until(lambda: "CANCEL" in rec.keys)
    assert rec.keys == ["0", "CANCEL"]


def test_keys_arrive_one_by_one_as_typed(device, reactor, run_until):
    _, rec = started(device, reactor)
    for name, want in (("KEY_KP1", "1"), ("KEY_KPDOT", "."), ("KEY_BACKSPACE", "BKSP")):
        device.press(name)
        run_until(lambda: rec.keys and rec.keys[-1] == want)
    assert rec.keys == ["1", ".", "BKSP"]


def test_closing_the_writer_reports_the_device_lost(device, reactor, run_until):
    pad, rec = started(device, reactor)
    fd = device.fileno()
    assert reactor.watching(fd)
    device.press("KEY_KP2")
    device.close_writer()
    run_until(lambda: rec.dead)
    assert rec.keys == ["2"]              # the last key still counts
    assert len(rec.dead) == 1
    assert not reactor.watching(fd)
    assert pad.lost and not pad.running
    ok, detail = pad.selftest()
    assert not ok and "lost" in detail


def test_unplugged_device_enodev_reports_lost(device, reactor, run_until):
    pad, rec = started(device, reactor)
    fd = device.fileno()
    device.unplug()
    run_until(lambda: rec.dead)
    assert rec.dead == ["ENODEV"]
    assert not reactor.watching(fd)
    assert reactor.errors == 0            # a lost device is an event, not a bug


def test_start_grabs_and_stop_releases(device, reactor):
    pad, _ = started(device, reactor)
    assert device.grabbed and pad.grabbed
    assert reactor.watching(device.fileno())
    ok, detail = pad.selftest()
    assert ok, detail
    pad.stop()
    assert not device.grabbed
    assert not reactor.watching(device.fileno())
    assert not pad.running


def test_failed_grab_is_reported_but_keys_still_arrive(reactor, run_until):
    dev = PipeInputDevice(grab_error=OSError(errno.EBUSY, "Device or resource busy"))
    try:
        pad, rec = started(dev, reactor)
        assert dev.grab_calls == 1 and not pad.grabbed
        assert isinstance(pad.grab_error, OSError)
        dev.press("KEY_KP1")
        run_until(lambda: rec.keys)
        assert rec.keys == ["1"]
        ok, detail = pad.selftest()
        assert ok and "not grabbed" in detail and "EBUSY" in detail
    finally:
        dev.close_writer()
        dev.close()


def test_keymap_is_checked_when_built(device, reactor):
    with pytest.raises(KeymapError, match="KEY_NOPE"):
        Keypad(device, {"KEY_NOPE": "1"}, reactor, print)
    with pytest.raises(KeymapError, match="SELL"):
        Keypad(device, {"KEY_KP1": "SELL"}, reactor, print)
    # Two names of one code (KEY_MUTE is KEY_MIN_INTERESTING) cannot mean two keys.
    with pytest.raises(KeymapError, match="both"):
        Keypad(device, {"KEY_MUTE": "1", "KEY_MIN_INTERESTING": "2"}, reactor, print)
