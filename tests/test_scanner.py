"""Barcode scanners over their real transports, with the real Reactor, and a scan's way
into the terminal.

HID: kernel input_event structs through drivers.evdev_pipe.PipeInputDevice, as a US
keyboard-wedge scanner types a code (MSC_SCAN before each key, shift held around
capitals and symbols, SYN_REPORT after each, Enter at the end). Serial: a real pty
pair, the scanner's end opened with pyserial. Timers run on an injected clock: no
test sleeps. Then the composition root, the terminal's scan events, the boot
self-test and the simulator's control socket, on the simulated board.
"""
import errno
import json
import os
import socket
import tty

import evdev
import pytest
from evdev import ecodes

from drivers.evdev_pipe import PipeInputDevice
from drivers.scanner import (CUT_SHORT, GARBAGE, MAX_CODE_CHARS, TOO_LONG, HidScanner,
                             ScannerPortError, SerialScanner, open_serial)
from firmware.core import events, keys
from firmware.core.fsm import Flow
from tools.sim import demo_codes

EV_KEY, EV_SYN, EV_MSC = ecodes.EV_KEY, ecodes.EV_SYN, ecodes.EV_MSC
EAN = "6901234567892"
BUZZER_PIN = 18                 # board/profiles/sim.toml [gpio] buzzer


# -- what a US-layout scanner presses for each character, written out by hand ----------

SYMBOLS = {" ": ("KEY_SPACE", False), "-": ("KEY_MINUS", False), ".": ("KEY_DOT", False),
           "/": ("KEY_SLASH", False), "+": ("KEY_EQUAL", True), "$": ("KEY_4", True),
           "%": ("KEY_5", True), "*": ("KEY_8", True), "(": ("KEY_9", True),
           ")": ("KEY_0", True), "_": ("KEY_MINUS", True), ":": ("KEY_SEMICOLON", True),
           "!": ("KEY_1", True), "?": ("KEY_SLASH", True), "=": ("KEY_EQUAL", False)}


def key_for(ch):
    if ch.isdigit():
        return "KEY_" + ch, False
    if ch.isalpha():
        return "KEY_" + ch.upper(), ch.isupper()
    return SYMBOLS[ch]


def scanned(text, end="KEY_ENTER", t0=0.0, step=0.001):
    """evdev.InputEvents as evtest shows a wedge scanner typing text, then end."""
    out = []
    clock = [t0]

    def key(name, value):
        code = ecodes.ecodes[name]
        t = clock[0]
        for type_, c, v in ((EV_MSC, ecodes.MSC_SCAN, 0x70000 + code), (EV_KEY, code, value),
                            (EV_SYN, ecodes.SYN_REPORT, 0)):
            out.append(evdev.InputEvent(1700000000 + int(t), int((t % 1) * 1000000), type_, c, v))
        clock[0] += step

    for i, ch in enumerate(text):
        name, shifted = key_for(ch)
        shift = "KEY_LEFTSHIFT" if i % 2 else "KEY_RIGHTSHIFT"
        if shifted:
            key(shift, 1)
        key(name, 1)
        key(name, 0)
        if shifted:
            key(shift, 0)
    if end is not None:
        key(end, 1)
        key(end, 0)
    return out


class Recorder:
    def __init__(self):
        self.scans = []
        self.errors = []
        self.dead = []

    def on_scan(self, code, source):
        self.scans.append((code, source))

    def on_error(self, reason):
        self.errors.append(reason)

    def on_dead(self, reason):
        self.dead.append(reason)


def _drained(device):
    import fcntl
    import struct
    import termios
    buf = fcntl.ioctl(device.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return struct.unpack("i", buf)[0] == 0


def advance(reactor, clock, ms):
    clock.now += ms
    reactor.run_once(0)


@pytest.fixture
def device():
    dev = PipeInputDevice(name="handpos-test-scanner")
    yield dev
    dev.close_writer()
    dev.close()


def hid_scanner(device, reactor, **kw):
    rec = Recorder()
    scanner = HidScanner(device, reactor, rec.on_scan, on_dead=rec.on_dead,
                         on_error=rec.on_error, **kw)
    scanner.start()
    return scanner, rec


@pytest.fixture
def hid(device, reactor):
    scanner, rec = hid_scanner(device, reactor)
    yield scanner, rec
    scanner.stop()


# -- HID keyboard wedge ------------------------------------------------------------------

def test_codes_with_digits_letters_and_shift_arrive_as_typed(device, run_until, hid):
    scanner, rec = hid
    assert device.grabbed, "the scanner's codes must not also reach the console"
    codes = [EAN, "ABC-123", "Code128/x+Y", "PLU 00101", "$5.00%"]
    for code in codes:
        device.inject_events(scanned(code))
    run_until(lambda: len(rec.scans) == len(codes))
    assert rec.scans == [(code, "hid") for code in codes]
    assert rec.errors == [] and rec.dead == []
    assert scanner.line.pending == 0
    ok, detail = scanner.selftest()
    assert ok and "5 codes, 0 unreadable" in detail


def test_keypad_enter_ends_a_code_and_caps_lock_changes_nothing(device, run_until, hid):
    _, rec = hid
    events_ = [evdev.InputEvent(1700000000, 0, EV_KEY, ecodes.KEY_CAPSLOCK, 1),
               evdev.InputEvent(1700000000, 0, EV_KEY, ecodes.KEY_CAPSLOCK, 0)]
    events_ += scanned("Ab1", end="KEY_KPENTER")
    device.inject_events(events_)
    run_until(lambda: rec.scans)
    assert rec.scans == [("Ab1", "hid")]


def test_auto_repeat_adds_nothing_and_enter_alone_is_no_scan(device, run_until, hid):
    _, rec = hid
    events_ = scanned("", end="KEY_ENTER")            # Enter on its own
    events_ += scanned("690", end=None)
    events_ += [evdev.InputEvent(1700000001, 0, EV_KEY, ecodes.KEY_0, 2)] * 4   # held
    events_ += scanned("1", end="KEY_ENTER")
    device.inject_events(events_)
    run_until(lambda: rec.scans)
    assert rec.scans == [("6901", "hid")] and rec.errors == []


def test_tab_as_the_terminator_when_the_profile_says_so(device, reactor, run_until):
    scanner, rec = hid_scanner(device, reactor, end_keys=["KEY_TAB"])
    try:
        device.inject_events(scanned(EAN, end="KEY_TAB"))
        run_until(lambda: rec.scans)
        assert rec.scans == [(EAN, "hid")]
    finally:
        scanner.stop()


def test_a_tab_inside_a_code_is_garbage_by_default(device, run_until, hid):
    _, rec = hid
    device.inject_events(scanned("123", end="KEY_TAB") + scanned("456"))
    run_until(lambda: rec.errors)
    assert rec.errors == [GARBAGE] and rec.scans == []


def test_an_unmapped_key_drops_the_code_and_the_next_one_is_clean(device, run_until, hid):
    scanner, rec = hid
    events_ = scanned("6901234", end=None)
    events_ += [evdev.InputEvent(1700000001, 0, EV_KEY, ecodes.KEY_F5, 1),
                evdev.InputEvent(1700000001, 0, EV_KEY, ecodes.KEY_F5, 0)]
    events_ += scanned("567892")
    device.inject_events(events_)
    run_until(lambda: rec.errors)
    assert rec.errors == [GARBAGE]
    assert rec.scans == [], "never a code with a character missing"
    device.inject_events(scanned(EAN))
    run_until(lambda: rec.scans)
    assert rec.scans == [(EAN, "hid")]
    ok, detail = scanner.selftest()
    assert ok and "1 unreadable" in detail and "US keyboard layout" in detail


def test_an_over_long_code_is_one_error_and_a_flood_stays_bounded(device, reactor, clock,
                                                                  run_until, hid):
    scanner, rec = hid
    device.inject_events(scanned("7" * (MAX_CODE_CHARS + 1)))
    run_until(lambda: rec.errors)
    assert rec.errors == [TOO_LONG] and rec.scans == []
    # exactly the limit is still a code
    device.inject_events(scanned("8" * MAX_CODE_CHARS))
    run_until(lambda: rec.scans)
    assert rec.scans == [("8" * MAX_CODE_CHARS, "hid")]
    # a scanner that never stops: one error once it goes quiet, memory and timers bounded
    flood = []
    for _ in range(3000):
        flood += [(EV_KEY, ecodes.KEY_4, 1), (EV_KEY, ecodes.KEY_4, 0)]
    for i in range(0, len(flood), 400):
        device.inject_events(flood[i:i + 400])
        run_until(lambda: _drained(device))
        assert scanner.line.pending <= MAX_CODE_CHARS
    assert scanner.line.overflows == 2         # the long code above, and this flood
    assert rec.errors == [TOO_LONG], "nothing said while it keeps coming"
    assert len(reactor._timers) <= 2
    advance(reactor, clock, 300)
    assert rec.errors == [TOO_LONG, TOO_LONG]
    device.inject_events(scanned(EAN))
    run_until(lambda: len(rec.scans) == 2)
    assert rec.scans[-1] == (EAN, "hid")


def test_a_code_without_terminator_is_dropped_after_the_gap(device, reactor, clock,
                                                            run_until, hid, caplog):
    scanner, rec = hid
    device.inject_events(scanned("690123", end=None))
    run_until(lambda: scanner.line.pending == 6)
    advance(reactor, clock, 299)
    assert rec.errors == [] and rec.scans == []
    advance(reactor, clock, 1)
    assert rec.errors == [CUT_SHORT] and rec.scans == []
    assert scanner.line.pending == 0
    ok, detail = scanner.selftest()
    assert ok and "suffix to Enter" in detail, "the selftest says how to set the scanner"
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "suffix to Enter" in warned[0].getMessage(), "and the log"
    # the rest of it, arriving late, is not glued to the next code
    device.inject_events(scanned(EAN))
    run_until(lambda: rec.scans)
    assert rec.scans == [(EAN, "hid")]


def test_scanner_unplugged_mid_scan_is_reported_and_the_partial_code_dropped(
        device, reactor, run_until, hid):
    scanner, rec = hid
    fd = device.fileno()
    device.inject_events(scanned("6901234", end=None))
    run_until(lambda: scanner.line.pending == 7)
    device.unplug()
    run_until(lambda: rec.dead)
    assert rec.dead == ["ENODEV"]
    assert not reactor.watching(fd)
    assert rec.scans == [] and rec.errors == []
    assert scanner.line.pending == 0 and not scanner.running
    ok, detail = scanner.selftest()
    assert not ok and "lost" in detail and "USB" in detail


def test_scanner_pipe_closed_mid_scan_is_reported_dead(device, run_until, hid):
    scanner, rec = hid
    device.inject_events(scanned("ABC", end=None))
    device.close_writer()
    run_until(lambda: rec.dead)
    assert len(rec.dead) == 1 and rec.scans == [] and rec.errors == []


def test_a_scanner_that_cannot_be_grabbed_still_scans(reactor, run_until):
    dev = PipeInputDevice(name="busy-scanner", grab_error=OSError(errno.EBUSY, "busy"))
    scanner, rec = hid_scanner(dev, reactor)
    try:
        dev.inject_events(scanned(EAN))
        run_until(lambda: rec.scans)
        ok, detail = scanner.selftest()
        assert ok and "not grabbed (EBUSY)" in detail and "codes also reach" in detail
    finally:
        scanner.stop()
        dev.close_writer()
        dev.close()


def test_stop_ungrabs_and_a_bad_terminator_name_is_refused(device, reactor, hid):
    scanner, _ = hid
    scanner.stop()
    assert not device.grabbed and not reactor.watching(device.fileno())
    assert "not started" in scanner.selftest()[1]
    with pytest.raises(ValueError) as info:
        HidScanner(device, reactor, lambda c, s: None, end_keys=["ENTER"])
    assert "KEY_ENTER" in str(info.value)


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


@pytest.fixture
def serial_scanner(pty_pair, reactor):
    """A SerialScanner on the pty's far end, opened through pyserial as on the device."""
    port = open_serial(os.ttyname(pty_pair["slave"]), 9600)
    rec = Recorder()
    scanner = SerialScanner(port, reactor, rec.on_scan, on_error=rec.on_error,
                            on_dead=rec.on_dead)
    scanner.start()
    yield scanner, rec, pty_pair["master"]
    scanner.stop()
    port.close()


def test_serial_codes_end_in_cr_lf_or_crlf(serial_scanner, run_until):
    scanner, rec, master = serial_scanner
    os.write(master, b"6901234567892\r")
    os.write(master, b"ABC-123\n")
    os.write(master, b"2100101003509\r\n")
    os.write(master, b"\r\n\n")                     # empty lines: nothing
    os.write(master, b"x/Y+1\r\n")
    run_until(lambda: len(rec.scans) == 4)
    assert rec.scans == [(EAN, "serial"), ("ABC-123", "serial"),
                         ("2100101003509", "serial"), ("x/Y+1", "serial")]
    assert rec.errors == []
    ok, detail = scanner.selftest()
    assert ok and "4 codes" in detail


def test_serial_garbage_drops_its_code_and_is_named(serial_scanner, run_until):
    scanner, rec, master = serial_scanner
    os.write(master, b"690123\x00\xff4567892\r\n")
    os.write(master, b"6901234567892\r\n")
    run_until(lambda: rec.scans)
    assert rec.errors == [GARBAGE]
    assert rec.scans == [(EAN, "serial")]
    ok, detail = scanner.selftest()
    assert ok and "1 unreadable" in detail and "baud rate" in detail


def test_serial_over_long_and_unterminated_codes(serial_scanner, reactor, clock, run_until):
    scanner, rec, master = serial_scanner
    os.write(master, b"9" * (MAX_CODE_CHARS + 10) + b"\r")
    run_until(lambda: rec.errors)
    assert rec.errors == [TOO_LONG]
    os.write(master, b"690123")
    run_until(lambda: scanner.line.pending == 6)
    advance(reactor, clock, 300)
    assert rec.errors == [TOO_LONG, CUT_SHORT]
    assert rec.scans == []
    assert "suffix to Enter (CR" in scanner.selftest()[1]


def test_serial_port_closed_mid_scan_is_reported_dead(serial_scanner, pty_pair, run_until):
    scanner, rec, master = serial_scanner
    os.write(master, b"69012")
    run_until(lambda: scanner.line.pending == 5)
    os.close(master)
    pty_pair["master"] = None
    run_until(lambda: rec.dead)
    assert len(rec.dead) == 1         # EIO, EOF or POLLHUP: the kernel's choice
    assert rec.scans == [] and rec.errors == []
    assert scanner.line.pending == 0
    ok, detail = scanner.selftest()
    assert not ok and "lost" in detail and "port in the board profile" in detail


def test_a_serial_port_that_cannot_be_opened_says_what_to_check(tmp_path):
    with pytest.raises(ScannerPortError) as info:
        open_serial(str(tmp_path / "ttyNOPE"), 9600)
    text = str(info.value)
    assert "scanner" in text and "ttyNOPE" in text and "dialout" in text


# -- the demo codes ----------------------------------------------------------------------

def ean13_ok(code):
    """Written out here, apart from the core's barcode module: weights 1,3,1,3... from
    the left over all 13 digits sum to a multiple of 10."""
    if len(code) != 13 or not code.isdigit():
        return False
    return sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(code)) % 10 == 0


def test_demo_codes_are_real_format_ean13_with_their_check_digits():
    items = demo_codes.ITEMS
    assert len(items) == 20 and len(set(items)) == 20
    assert EAN in items
    for code in items:
        assert ean13_ok(code), code
        assert 690 <= int(code[:3]) <= 699, code
    assert not ean13_ok(demo_codes.BAD_CHECK)
    assert demo_codes.BAD_CHECK[:12] == items[0][:12]
    for label in demo_codes.SCALE_LABELS:
        code = label["code"]
        assert ean13_ok(code), code
        assert code[:2] == label["prefix"] and code[2:7] == label["plu"]
        value = label.get("price", label.get("grams"))
        assert int(code[7:12]) == value
        assert label["plu"] in demo_codes.WEIGHED_PLUS
    assert {label.get("price") is not None for label in demo_codes.SCALE_LABELS} == {True, False}
    # and the core reads them so: items, the bad one, the labels under the default rules
    from firmware.core.config import DEFAULT_SCALE_RULES
    from firmware.retail.barcode import classify, parse_scale
    assert all(classify(code).kind == "ean13" and classify(code).ok for code in items)
    bad = classify(demo_codes.BAD_CHECK)
    assert not bad.ok and bad.reason == "check_digit"
    for label in demo_codes.SCALE_LABELS:
        got = parse_scale(label["code"], DEFAULT_SCALE_RULES, "CNY")
        assert got["ok"] and got["plu"] == label["plu"], got
        assert (got["price"], got["grams"]) == (label.get("price"), label.get("grams"))
    order = demo_codes.SCAN_ORDER
    assert set(order) == set(items) | {demo_codes.SCALE_PRICE, demo_codes.SCALE_WEIGHT,
                                       demo_codes.BAD_CHECK}


# -- the terminal, on the simulated board ------------------------------------------------

class ScanningFlow(Flow):
    """A flow that shows scanning, as the sale flow will: each code, or the failure."""
    NAME = "scanning"
    INITIAL = "ready"
    STATES = {"ready": {"timeout": None,
                        "on": {events.SCAN: "scanned", events.SCAN_ERROR: "failed",
                               keys.CANCEL: "cancel"}}}

    def __init__(self, term):
        Flow.__init__(self, term)
        self.seen = []
        self.failed_ = False

    def scanned(self, ev):
        self.seen.append((ev.kind, ev.get("code"), ev.get("source")))
        self.failed_ = False

    def failed(self, ev):
        self.seen.append((ev.kind, ev.get("reason"), None))
        self.failed_ = True

    def render(self):
        if self.failed_:
            lines = [self.t("scan_failed"), self.t("scan_again")]
        else:
            lines = [code for kind, code, _ in self.seen[-1:]]
        self.term.show(self.t("dev_scanner"), lines, "")


def beeps(h):
    """How many times the buzzer has sounded (rising edges of its pin)."""
    levels = [level for pin, level, _ in h.sim.pins.history if pin == BUZZER_PIN]
    return sum(1 for a, b in zip(levels, levels[1:]) if b and not a)


class Control:
    """The simulator's control socket, served by the loop under test."""

    def __init__(self, h, path):
        from tools.sim.control import ControlServer
        self.h = h
        self.server = ControlServer(path, h.sim)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)

    def call(self, **req):
        self.sock.sendall((json.dumps(req) + "\n").encode())
        got = [b""]

        def answered():
            try:
                got[0] += self.sock.recv(65536)
            except BlockingIOError:
                pass
            return got[0].endswith(b"\n")
        assert self.h.run(3000, until=answered), "no answer to %r" % req
        return json.loads(got[0].decode())

    def close(self):
        self.sock.close()
        self.server.close()


@pytest.fixture
def scanning(harness, tmp_path):
    def make(language="en"):
        h = harness()
        h.first_supervisor()
        h.term.set_language(language)
        flow = ScanningFlow(h.term)
        h.term.push(flow)
        control = Control(h, str(tmp_path / ("ctl-" + language)))
        made.append(control)
        return h, flow, control
    made = []
    yield make
    for control in made:
        control.close()


def test_a_control_socket_scan_reaches_the_current_flow_as_a_scan_event(scanning):
    h, flow, c = scanning()
    assert c.call(cmd="scan", code=EAN) == {"ok": True, "code": EAN}
    # answered once the driver has read it: the flow has it already
    assert flow.seen == [("scan", EAN, "hid")]
    assert EAN in h.text()
    # no code: the simulator's next demo code, in SCAN_ORDER
    answer = c.call(cmd="scan")
    assert answer["ok"] and answer["code"] == demo_codes.SCAN_ORDER[0]
    assert c.call(cmd="scan")["code"] == demo_codes.SCAN_ORDER[1]
    assert [code for _, code, _ in flow.seen] == [EAN] + list(demo_codes.SCAN_ORDER[:2])
    # what no scanner can type is refused, and the socket goes on
    answer = c.call(cmd="scan", code="69\n01")
    assert not answer["ok"] and "cannot type" in answer["error"]
    assert not c.call(cmd="scan", code="")["ok"]
    assert c.call(cmd="state")["selftests"]["scanner"][0] is True
    assert h.reactor.errors == 0


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_misread_beeps_and_a_scanning_flow_says_scan_again(scanning, language):
    h, flow, c = scanning(language)
    before = beeps(h)
    assert c.call(cmd="scan", garbled=True)["ok"]
    assert flow.seen == [("scan_error", GARBAGE, None)]
    h.run(1000)
    assert beeps(h) - before == 3, "the error tone: short, short, long"
    text = h.text()
    if language == "en":
        assert "Scan failed" in text and "Scan again" in text
    else:
        assert "扫码失败" in text and "请重新扫码" in text
    c.call(cmd="scan", code=EAN)
    assert "Scan again" not in h.text() and EAN in h.text()


def test_a_scan_no_flow_takes_beeps_and_changes_nothing(harness, tmp_path):
    h = harness()
    h.first_supervisor()
    c = Control(h, str(tmp_path / "ctl"))
    try:
        def shown():
            s = h.term.screen
            return (s.title, list(s.lines), s.footer, s.big, s.masked, s.alert)
        flows, screen = h.flow(), shown()
        h.run(500)
        before = beeps(h)
        assert c.call(cmd="scan", code=EAN)["ok"]
        h.run(1000)
        assert beeps(h) - before == 3
        assert h.flow() == flows and shown() == screen
    finally:
        c.close()


def test_the_scanner_unplugged_is_named_on_the_screen(scanning):
    h, flow, c = scanning()
    h.sim.scanner_device.inject_events(scanned("69012", end=None))
    h.sim.scanner_device.unplug()
    h.wait_for("Device lost")
    assert "Scanner" in h.text() and "Check scanner cable" in h.text()
    assert flow.seen == [], "the half-read code went nowhere"
    assert h.term.selftests["scanner"][0] is False
    assert not c.call(cmd="state")["selftests"]["scanner"][0]


# -- the self-test -----------------------------------------------------------------------

@pytest.mark.parametrize("language,word", [("en", "Scanner: OK"), ("zh", "扫码器: 正常")])
def test_the_boot_self_test_lists_the_scanner(harness, language, word):
    h = harness(language=language)
    h.run(500, until=lambda: h.term.screen is not None)
    assert h.flow()[0] == "boot"
    assert word in h.text()


def _build(tmp_path, profile, transports):
    from luma.core.device import dummy

    from board import compose
    from drivers.gpio import MockPins
    from drivers.system import LinuxSystem
    from firmware.core import config as schema
    cfg = schema.defaults()
    cfg["storage"]["data_dir"] = str(tmp_path / "data")
    console = []
    tr = {"luma_device": dummy(width=128, height=64, mode="1"), "pins": MockPins(),
          "system": LinuxSystem(synced=True)}
    tr.update(transports)
    built = compose.build(profile, cfg, tr, console=console.append, auth_iterations=20)
    return built, console


def _sim_profile(tmp_path):
    import copy

    from board.configfile import load_profile
    profile = copy.deepcopy(load_profile("sim"))
    profile["printer"]["port"] = str(tmp_path / "no-such-tty")
    profile.pop("msr", None)
    profile.pop("chip", None)
    return profile


def test_a_missing_scanner_fails_its_self_test_line_and_the_rest_goes_on(tmp_path):
    profile = _sim_profile(tmp_path)
    profile["scanner"] = {"device": "no-such-scanner"}
    keypad = PipeInputDevice()
    built, console = _build(tmp_path, profile, {"keypad_device": keypad})
    try:
        line = [line for line in console if line.startswith("scanner:")]
        assert len(line) == 1 and "no-such-scanner" in line[0]
        assert "scanner is plugged in" in line[0] and "keypad" not in line[0]
        built.terminal.start()
        built.reactor.run_once(0)
        text = built.terminal.screen.text()
        assert "Scanner: FAIL" in text and "Check scanner cable" in text
        assert "Keypad: OK" in text
    finally:
        built.close()
        keypad.close_writer()
        keypad.close()


def test_a_board_without_a_scanner_does_not_list_one(tmp_path):
    profile = _sim_profile(tmp_path)
    profile.pop("scanner")
    keypad = PipeInputDevice()
    built, _ = _build(tmp_path, profile, {"keypad_device": keypad})
    try:
        built.terminal.start()
        built.reactor.run_once(0)
        assert "Keypad: OK" in built.terminal.screen.text()
        assert "Scanner" not in built.terminal.screen.text()
        assert built.scanner is None
    finally:
        built.close()
        keypad.close_writer()
        keypad.close()


def test_a_serial_scanner_from_the_profile_feeds_the_terminal(tmp_path):
    profile = _sim_profile(tmp_path)
    master, slave = os.openpty()
    tty.setraw(slave)
    profile["scanner"] = {"serial": os.ttyname(slave), "baud": 9600}
    keypad = PipeInputDevice()
    built, console = _build(tmp_path, profile, {"keypad_device": keypad})
    try:
        assert built.selftests["scanner"][0] is True, console
        term = built.terminal
        term.start()
        flow = ScanningFlow(term)
        term.push(flow)
        os.write(master, b"2600102007501\r\n")
        for _ in range(200):
            if flow.seen:
                break
            built.reactor.run_once(10)
        assert flow.seen == [("scan", "2600102007501", "serial")]
    finally:
        built.close()
        keypad.close_writer()
        keypad.close()
        os.close(master)
        os.close(slave)
