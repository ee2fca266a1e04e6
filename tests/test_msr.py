"""The magstripe reader drivers over their real transports, with the real Reactor.

HID: kernel input_event structs through drivers.evdev_pipe.PipeInputDevice, recorded
as a keyboard-wedge reader types a swipe (MSC_SCAN before each key, shift held around
shifted characters, SYN_REPORT after each). Serial: a real pty pair, the reader's end
in raw mode. Timers run on an injected clock: no test sleeps.

Only published test card numbers appear here.
"""
import os
import tty

import evdev
import pytest
from evdev import ecodes

from drivers.evdev_pipe import PipeInputDevice
from drivers.msr import (MAX_SWIPE_CHARS, US_KEYMAP, HidMsr, SerialMsr, SwipeAssembler,
                         keystrokes)
from firmware.cards import magstripe as ms

TODAY = (2025, 6)
VISA = "4111111111111111"
MC = "5555555555554444"
AMEX = "378282246310005"
TRACK1 = ms.encode_track1(VISA, "TEST/CARD A", "2812", "101", "00000000000000000000")
TRACK2 = ms.encode_track2(VISA, "2812", "101", "0000000000")
EV_KEY, EV_SYN, EV_MSC = ecodes.EV_KEY, ecodes.EV_SYN, ecodes.EV_MSC


# -- a recorded swipe ----------------------------------------------------------------

def _inverse_keymap():
    """char -> (key name, shift), the way a US wedge reader types it."""
    inverse = {}
    for name, (plain, shifted) in US_KEYMAP.items():
        if name.startswith("KEY_KP"):
            continue                 # readers type digits on the main block
        if plain.isalpha():
            inverse[shifted] = (name, True)   # capitals: shift + letter
            continue
        inverse.setdefault(plain, (name, False))
        if shifted != plain:
            inverse.setdefault(shifted, (name, True))
    return inverse


INVERSE = _inverse_keymap()


def recording(text, t0=0.0, step=0.002, enter=True):
    """evdev.InputEvents as evtest would show a wedge reader typing text then Enter."""
    events = []
    clock = [t0]

    def emit(type, code, value):
        t = clock[0]
        events.append(evdev.InputEvent(1700000000 + int(t), int((t % 1) * 1000000),
                                       type, code, value))

    def key(name, value):
        code = ecodes.ecodes[name]
        emit(EV_MSC, ecodes.MSC_SCAN, 0x70000 + code)
        emit(EV_KEY, code, value)
        emit(EV_SYN, ecodes.SYN_REPORT, 0)
        clock[0] += step

    for i, ch in enumerate(text):
        name, shifted = INVERSE[ch]
        shift = "KEY_LEFTSHIFT" if i % 3 else "KEY_RIGHTSHIFT"
        if shifted:
            key(shift, 1)
        key(name, 1)
        key(name, 0)
        if shifted:
            key(shift, 0)
    if enter:
        key("KEY_ENTER", 1)
        key("KEY_ENTER", 0)
    return events


class Recorder:
    def __init__(self):
        self.swipes = []
        self.errors = []
        self.dead = []

    def on_swipe(self, track1, track2):
        self.swipes.append((track1, track2))

    def on_error(self, reason):
        self.errors.append(reason)

    def on_dead(self, reason):
        self.dead.append(reason)


@pytest.fixture
def device():
    dev = PipeInputDevice(name="handpos-test-msr")
    yield dev
    dev.close_writer()
    dev.close()


@pytest.fixture
def hid(device, reactor):
    rec = Recorder()
    msr = HidMsr(device, reactor, rec.on_swipe, on_dead=rec.on_dead, on_error=rec.on_error)
    msr.start()
    yield msr, rec
    msr.stop()


def advance(reactor, clock, ms):
    clock.now += ms
    reactor.run_once(0)


def feed(device, events, reactor, run_until, msr):
    """Write events in pipe-sized batches, letting the reader drain each."""
    for i in range(0, len(events), 400):
        device.inject_events(events[i:i + 400])
        run_until(lambda: _drained(device))


def _drained(device):
    import fcntl
    import struct
    import termios
    buf = fcntl.ioctl(device.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return struct.unpack("i", buf)[0] == 0


# -- HID keyboard wedge ------------------------------------------------------------------

def test_recorded_swipe_gives_both_tracks_that_parse(device, reactor, run_until, hid):
    msr, rec = hid
    assert device.grabbed
    device.inject_events(recording(TRACK1 + TRACK2))
    run_until(lambda: rec.swipes)
    assert rec.swipes == [(TRACK1, TRACK2)]
    assert rec.errors == []
    card = ms.parse_swipe(*rec.swipes[0], today=TODAY)
    assert (card.pan, card.name, card.expiry, card.service_code) == (VISA, "TEST/CARD A", "2812", "101")
    assert card.track2 == VISA + "=28121010000000000"
    assert card.entry_mode == ms.SWIPE
    assert msr.swipe.pending == 0
    assert not any(msr.swipe._buf), "the swipe buffer is zeroed once handed over"
    ok, detail = msr.selftest()
    assert ok and "1 swipes" in detail


def test_swipes_with_lrc_and_chip_cards_arrive_unchanged(device, reactor, run_until, hid):
    _, rec = hid
    swipes = []
    for pan, svc in ((MC, "201"), (AMEX, "101")):
        a = ms.encode_track1(pan, "TEST/CARD B", "3001", svc, "123", lrc=True)
        b = ms.encode_track2(pan, "3001", svc, "456", lrc=True)
        swipes.append((a, b))
        device.inject_events(recording(a + "\t" + b))
    run_until(lambda: len(rec.swipes) == 2)
    assert rec.swipes == swipes
    with pytest.raises(ms.CardError) as info:
        ms.parse_swipe(*rec.swipes[0], today=TODAY)
    assert info.value.code == ms.USE_CHIP
    assert ms.parse_swipe(*rec.swipes[0], today=TODAY, fallback=True).entry_mode == ms.FALLBACK
    assert ms.parse_swipe(*rec.swipes[1], today=TODAY).pan == AMEX


def test_keystrokes_helper_types_what_the_driver_reads(device, reactor, run_until, hid):
    _, rec = hid
    device.inject_events(keystrokes(TRACK2))
    run_until(lambda: rec.swipes)
    assert rec.swipes == [(None, TRACK2)]


def test_auto_repeat_and_modifiers_add_nothing(device, reactor, run_until, hid):
    _, rec = hid
    events = recording(TRACK2, enter=False)
    four = ecodes.KEY_4
    events += [evdev.InputEvent(1700000001, 0, EV_KEY, four, 2)] * 5   # held: repeats
    events += [evdev.InputEvent(1700000001, 0, EV_KEY, ecodes.KEY_LEFTCTRL, 1),
               evdev.InputEvent(1700000001, 0, EV_KEY, ecodes.KEY_CAPSLOCK, 1)]
    events += recording("", enter=True)
    device.inject_events(events)
    run_until(lambda: rec.swipes)
    assert rec.swipes == [(None, TRACK2)]


def test_lower_case_letters_arrive_as_capitals(device, reactor, run_until, hid):
    # A reader following the host's Caps Lock types letters without shift.
    _, rec = hid
    events = []
    for ch in TRACK1:
        name, shifted = INVERSE[ch]
        if ch.isalpha():
            shifted = False
        if shifted:
            events.append((EV_KEY, ecodes.KEY_RIGHTSHIFT, 1))
        events += [(EV_KEY, ecodes.ecodes[name], 1), (EV_KEY, ecodes.ecodes[name], 0)]
        if shifted:
            events.append((EV_KEY, ecodes.KEY_RIGHTSHIFT, 0))
    events += [(EV_KEY, ecodes.KEY_KPENTER, 1), (EV_KEY, ecodes.KEY_KPENTER, 0)]
    device.inject_events(events)
    run_until(lambda: rec.swipes)
    assert rec.swipes == [(TRACK1, None)]


def test_an_unknown_key_spoils_its_track_instead_of_changing_it(device, reactor, run_until, hid):
    msr, rec = hid
    events = recording(TRACK2[:5], enter=False)
    events += [evdev.InputEvent(1700000001, 0, EV_KEY, ecodes.KEY_F5, 1),
               evdev.InputEvent(1700000001, 0, EV_KEY, ecodes.KEY_F5, 0)]
    events += recording(TRACK2[5:])
    device.inject_events(events)
    run_until(lambda: rec.swipes)
    assert msr.unknown == 1
    with pytest.raises(ms.CardError) as info:
        ms.parse_swipe(*rec.swipes[0], today=TODAY)
    assert info.value.code == ms.BAD_TRACK


def test_partial_swipe_then_silence_is_unreadable_after_the_gap(device, reactor, clock,
                                                                run_until, hid):
    msr, rec = hid
    device.inject_events(recording(TRACK1 + TRACK2[:10], enter=False))
    run_until(lambda: msr.swipe.pending == len(TRACK1) + 10)
    advance(reactor, clock, 299)
    assert rec.errors == [] and rec.swipes == []
    advance(reactor, clock, 1)
    assert rec.errors == [ms.UNREADABLE]
    assert rec.swipes == []
    assert msr.swipe.pending == 0
    assert not any(msr.swipe._buf), "the partial swipe is zeroed"
    # the next swipe starts clean
    device.inject_events(recording(TRACK2))
    run_until(lambda: rec.swipes)
    assert rec.swipes == [(None, TRACK2)]
    assert rec.errors == [ms.UNREADABLE]


def test_a_slow_swipe_is_not_cut_while_characters_keep_coming(device, reactor, clock,
                                                             run_until, hid):
    msr, rec = hid
    for i, ch in enumerate(TRACK2):
        device.inject_events(recording(ch, enter=False))
        run_until(lambda: msr.swipe.pending == i + 1)
        advance(reactor, clock, 250)          # under the gap each time
    assert rec.errors == []
    # one timer moved along, not one per character
    assert sum(1 for t in reactor._timers if t.active) == 1
    device.inject_events(recording(""))
    run_until(lambda: rec.swipes)
    assert rec.swipes == [(None, TRACK2)]
    assert sum(1 for t in reactor._timers if t.active) == 0


def test_a_flood_of_keys_stays_bounded(device, reactor, clock, run_until, hid):
    msr, rec = hid
    flood = []
    for _ in range(5000):
        flood += [(EV_KEY, ecodes.KEY_4, 1), (EV_KEY, ecodes.KEY_4, 0)]
    feed(device, flood, reactor, run_until, msr)
    assert msr.swipe.pending <= MAX_SWIPE_CHARS
    assert len(msr.swipe._buf) == MAX_SWIPE_CHARS
    assert msr.swipe.overflows == 1
    assert len(reactor._timers) <= 2
    device.inject_events(recording(""))       # the Enter at the end of it
    run_until(lambda: rec.errors)
    assert rec.errors == [ms.UNREADABLE]
    assert rec.swipes == []
    # and a flood with no end at all is let go after the gap
    feed(device, flood[:2000], reactor, run_until, msr)
    advance(reactor, clock, 300)
    assert rec.errors == [ms.UNREADABLE, ms.UNREADABLE]
    device.inject_events(recording(TRACK2))
    run_until(lambda: rec.swipes)
    assert rec.swipes == [(None, TRACK2)]


def test_enter_alone_reports_nothing(device, reactor, run_until, hid):
    msr, rec = hid
    device.press("KEY_ENTER")
    device.inject_events(recording(TRACK2))
    run_until(lambda: rec.swipes)
    assert rec.errors == [] and rec.swipes == [(None, TRACK2)]


def test_noise_without_a_track_is_unreadable(device, reactor, run_until, hid):
    _, rec = hid
    device.inject_events(recording("HELLO 123"))
    run_until(lambda: rec.errors)
    assert rec.errors == [ms.UNREADABLE] and rec.swipes == []


def test_unplugged_reader_is_reported_dead(device, reactor, run_until, hid):
    msr, rec = hid
    fd = device.fileno()
    device.inject_events(recording(TRACK1, enter=False))    # half a swipe in flight
    device.close_writer()
    run_until(lambda: rec.dead)
    assert len(rec.dead) == 1         # EOF or POLLHUP, whichever the loop sees first
    assert not reactor.watching(fd)
    assert msr.swipe.pending == 0 and not any(msr.swipe._buf)
    assert rec.swipes == [] and rec.errors == []
    ok, detail = msr.selftest()
    assert not ok and "lost" in detail and "USB" in detail


def test_enodev_is_reported_dead(device, reactor, run_until, hid):
    msr, rec = hid
    device.unplug()
    run_until(lambda: rec.dead)
    assert rec.dead == ["ENODEV"]
    assert not msr.running


def test_a_reader_that_cannot_be_grabbed_still_reads(reactor, run_until):
    import errno
    dev = PipeInputDevice(name="busy-msr", grab_error=OSError(errno.EBUSY, "busy"))
    rec = Recorder()
    msr = HidMsr(dev, reactor, rec.on_swipe, on_error=rec.on_error)
    try:
        msr.start()
        dev.inject_events(recording(TRACK2))
        run_until(lambda: rec.swipes)
        ok, detail = msr.selftest()
        assert ok and "not grabbed (EBUSY)" in detail
    finally:
        msr.stop()
        dev.close_writer()
        dev.close()


def test_stop_ungrabs_and_forgets(device, reactor, hid):
    msr, _ = hid
    msr.stop()
    assert not device.grabbed
    assert not reactor.watching(device.fileno())
    ok, detail = msr.selftest()
    assert not ok and "not started" in detail


# -- serial --------------------------------------------------------------------------

@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    ends = {"master": master, "slave": slave}
    yield ends
    for fd in ends.values():
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def serial_reader(pty_pair, reactor, **kw):
    rec = Recorder()
    msr = SerialMsr(pty_pair["slave"], reactor, rec.on_swipe, on_error=rec.on_error,
                    on_dead=rec.on_dead, **kw)
    msr.start()
    return msr, rec


def test_serial_tracks_arrive_line_by_line_and_parse(pty_pair, reactor, clock, run_until):
    msr, rec = serial_reader(pty_pair, reactor)
    a = ms.encode_track1(MC, "TEST/CARD C", "2909", "101", "0000", lrc=True)
    b = ms.encode_track2(MC, "2909", "101", "0000", lrc=True)
    os.write(pty_pair["master"], (a + "\r\n").encode())
    run_until(lambda: msr.swipe.pending == len(a))
    advance(reactor, clock, 50)                  # track 2 comes within the settle time
    os.write(pty_pair["master"], (b + "\r\n").encode())
    run_until(lambda: msr.swipe.pending == len(a) + len(b))
    advance(reactor, clock, 99)
    assert rec.swipes == []
    advance(reactor, clock, 1)
    assert rec.swipes == [(a, b)]
    card = ms.parse_swipe(*rec.swipes[0], today=TODAY)
    assert (card.pan, card.name, card.expiry) == (MC, "TEST/CARD C", "2909")
    assert msr.swipe.pending == 0 and not any(msr.swipe._buf) and not any(msr._rbuf)
    assert msr.selftest()[0]


def test_serial_one_line_swipes_with_settle_zero(pty_pair, reactor, run_until):
    msr, rec = serial_reader(pty_pair, reactor, settle_ms=0)
    os.write(pty_pair["master"], (TRACK1 + TRACK2 + "\r\n").encode())
    os.write(pty_pair["master"], (";E?\r").encode())
    run_until(lambda: len(rec.swipes) == 2)
    assert rec.swipes == [(TRACK1, TRACK2), (None, ";E?")]
    assert ms.parse_swipe(*rec.swipes[0], today=TODAY).pan == VISA
    with pytest.raises(ms.CardError) as info:
        ms.parse_swipe(*rec.swipes[1], today=TODAY)
    assert info.value.code == ms.UNREADABLE


def test_serial_noise_is_dropped_and_partial_lines_time_out(pty_pair, reactor, clock,
                                                           run_until):
    msr, rec = serial_reader(pty_pair, reactor)
    os.write(pty_pair["master"], b"\x00\xff\x80" + TRACK2.encode() + b"\r")
    run_until(lambda: msr.swipe.pending == len(TRACK2))
    advance(reactor, clock, 100)
    assert rec.swipes == [(None, TRACK2)]
    assert msr.noise == 3
    assert "noise" in msr.selftest()[1]
    os.write(pty_pair["master"], TRACK1[:20].encode())
    run_until(lambda: msr.swipe.pending == 20)
    advance(reactor, clock, 300)
    assert rec.errors == [ms.UNREADABLE]
    assert len(rec.swipes) == 1


def test_serial_flood_stays_bounded(pty_pair, reactor, clock, run_until):
    msr, rec = serial_reader(pty_pair, reactor, settle_ms=0)
    chunk = b"4" * 1000
    for _ in range(20):
        left = chunk
        while left:                 # a loaded machine may leave the pty's buffer full
            try:
                left = left[os.write(pty_pair["master"], left):]
            except BlockingIOError:
                run_until(lambda: _pty_drained(pty_pair["slave"]))
        run_until(lambda: msr.swipe.overflows == 1 and _pty_drained(pty_pair["slave"]))
        assert msr.swipe.pending <= MAX_SWIPE_CHARS
    os.write(pty_pair["master"], b"\r" + TRACK2.encode() + b"\r")
    run_until(lambda: rec.swipes)
    assert rec.errors == [ms.UNREADABLE]
    assert rec.swipes == [(None, TRACK2)]


def _pty_drained(fd):
    import fcntl
    import struct
    import termios
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0] == 0


def test_serial_reader_gone_is_reported_dead(pty_pair, reactor, run_until):
    msr, rec = serial_reader(pty_pair, reactor)
    os.write(pty_pair["master"], TRACK1[:10].encode())
    run_until(lambda: msr.swipe.pending == 10)
    os.close(pty_pair["master"])
    pty_pair["master"] = None
    run_until(lambda: rec.dead)
    assert len(rec.dead) == 1         # EIO, EOF or POLLHUP: the kernel's choice
    assert not reactor.watching(pty_pair["slave"])
    assert msr.swipe.pending == 0
    ok, detail = msr.selftest()
    assert not ok and "lost" in detail


# -- the assembler on its own ------------------------------------------------------------

def test_assembler_zero_sized_guard_and_reset(reactor):
    got = []
    asm = SwipeAssembler(reactor, lambda a, b: got.append((a, b)), max_chars=4)
    for ch in b";123":
        asm.add(ch)
    assert asm.pending == 4
    asm.add(ord("4"))
    assert asm.pending == 0 and asm.overflows == 1 and asm.busy
    asm.reset()
    assert not asm.busy
    asm.end()
    assert got == []
