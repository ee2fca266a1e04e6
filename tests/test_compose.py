"""Building the terminal from a profile when parts are missing: it names them and goes on."""
import copy

from luma.core.device import dummy

from board import compose
from board.configfile import load_profile
from drivers.evdev_pipe import PipeInputDevice
from drivers.gpio import MockPins
from drivers.system import LinuxSystem
from firmware.core import config as schema


def _config(tmp_path):
    cfg = schema.defaults()
    cfg["storage"]["data_dir"] = str(tmp_path)
    return cfg


def _spin(built, until, n=400):
    for _ in range(n):
        if until():
            return True
        built.reactor.run_once(10)
    return until()


def test_missing_display_goes_to_the_console_and_the_terminal_keeps_going(tmp_path):
    profile = copy.deepcopy(load_profile("sim"))
    profile["display"] = {"model": "ssd1306", "bus": "i2c", "port": 97, "address": 0x3C,
                          "width": 128, "height": 64}
    profile["printer"]["port"] = str(tmp_path / "no-such-tty")
    console = []
    keypad = PipeInputDevice()
    built = compose.build(profile, _config(tmp_path),
                          {"keypad_device": keypad, "pins": MockPins(),
                           "system": LinuxSystem(synced=True)},
                          console=console.append, auth_iterations=20)
    try:
        assert any(line.startswith("display:") and "0x3C" in line for line in console)
        assert any(line.startswith("printer:") and "no-such-tty" in line for line in console)
        term = built.terminal
        term.start()
        built.reactor.run_once(0)
        assert "Display: FAIL" in term.screen.text()
        assert "Printer: FAIL" in term.screen.text()
        assert "Keypad: OK" in term.screen.text()
        keypad.press("KEY_ENTER")        # the person reads why, then goes on
        assert _spin(built, lambda: "Welcome" in term.screen.text())
        assert term.printer_state == "missing"
        assert "P?" in term.screen.text()
    finally:
        built.close()
        keypad.close_writer()
        keypad.close()


def test_missing_keypad_is_named_and_the_rest_works(tmp_path):
    profile = copy.deepcopy(load_profile("sim"))
    profile["keypad"]["device"] = "no-such-keypad"
    profile["printer"]["port"] = str(tmp_path / "no-such-tty")
    console = []
    built = compose.build(profile, _config(tmp_path),
                          {"luma_device": dummy(width=128, height=64, mode="1"),
                           "pins": MockPins(), "system": LinuxSystem(synced=True)},
                          console=console.append, auth_iterations=20)
    try:
        assert any(line.startswith("keypad:") and "no-such-keypad" in line for line in console)
        built.terminal.start()
        built.reactor.run_once(0)
        text = built.terminal.screen.text()
        assert "Keypad: FAIL" in text and "Check keypad cable" in text
        assert built.display.frames >= 1          # the panel still shows it
    finally:
        built.close()


def test_unwritable_storage_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = _config(tmp_path)
    cfg["storage"]["data_dir"] = str(blocker / "sub")
    console = []
    keypad = PipeInputDevice()
    built = compose.build(load_profile("sim"), cfg,
                          {"luma_device": dummy(width=128, height=64, mode="1"),
                           "keypad_device": keypad, "pins": MockPins(),
                           "printer_port": None, "system": LinuxSystem(synced=True)},
                          console=console.append, auth_iterations=20)
    try:
        assert any("check the SD card" in line for line in console)
        assert built.selftests["storage"][0] is False
    finally:
        built.close()
        keypad.close_writer()
        keypad.close()


def test_serial_stripe_reader_from_the_profile(tmp_path):
    import os
    import tty
    profile = copy.deepcopy(load_profile("sim"))
    master, slave = os.openpty()
    tty.setraw(slave)
    profile["msr"] = {"serial": os.ttyname(slave), "baud": 9600}
    profile["printer"]["port"] = str(tmp_path / "no-such-tty")
    keypad = PipeInputDevice()
    built = compose.build(profile, _config(tmp_path),
                          {"luma_device": dummy(width=128, height=64, mode="1"),
                           "keypad_device": keypad, "pins": MockPins(),
                           "system": LinuxSystem(synced=False)},
                          console=lambda line: None, auth_iterations=20)
    swipes = []
    built.terminal.on_swipe = lambda t1, t2: swipes.append((t1, t2))
    built.msr.swipe.on_swipe = built.terminal.on_swipe
    try:
        assert built.selftests["msr"][0] is True
        os.write(master, b";4111111111111111=30121200000000?\r\n")
        assert _spin(built, lambda: swipes)
        assert "4111111111111111=3012" in swipes[0][1]
    finally:
        built.close()
        keypad.close_writer()
        keypad.close()
        os.close(master)
        os.close(slave)
