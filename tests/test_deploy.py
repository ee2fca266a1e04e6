"""The Raspberry Pi side: board profiles, the systemd unit, the udev rules, the keypad
overlay and deploy/install.sh (docs/raspberry-pi.md)."""
import copy
import importlib.util
import os
import re
import shutil
import subprocess

import pytest
from luma.core.device import dummy

from board import compose
from board.configfile import load_profile, profile_names
from drivers.evdev_pipe import PipeInputDevice
from drivers.gpio import MockPins
from drivers.system import LinuxSystem
from firmware.core import config as schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
UNIT = os.path.join(ROOT, "board", "handpos.service")
RULES = os.path.join(DEPLOY, "udev", "99-handpos.rules")
OVERLAY = os.path.join(DEPLOY, "overlays", "handpos-keypad-overlay.dts")
INSTALL = os.path.join(DEPLOY, "install.sh")
PI_BOARDS = ["pizero2w", "pi4", "pi5"]


def _boardconf():
    spec = importlib.util.spec_from_file_location("boardconf", os.path.join(DEPLOY, "boardconf.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- board profiles -----------------------------------------------------------------------

def test_the_pi_boards_are_all_there():
    assert set(PI_BOARDS) <= set(profile_names())


@pytest.mark.parametrize("name", PI_BOARDS + ["sim"])
def test_every_profile_builds_a_terminal_without_its_hardware(name, tmp_path):
    """Each profile through configfile and the composition root, with the panel, keypad
    and pins swapped for stand-ins: what needs the real part is named, the rest runs."""
    profile = copy.deepcopy(load_profile(name))
    # the OTP and TPM roots need the board; a file root keeps the rest of the build real
    profile["keyroot"] = {"kind": "file", "path": str(tmp_path / "root" / "root.key")}
    cfg = schema.defaults()
    cfg["storage"]["data_dir"] = str(tmp_path / "data")
    console = []
    keypad = PipeInputDevice()
    tr = {"luma_device": dummy(width=profile["display"].get("width", 128),
                               height=profile["display"].get("height", 64), mode="1"),
          "keypad_device": keypad, "pins": MockPins(), "system": LinuxSystem(synced=True)}
    if name == "sim":
        tr["printer_port"] = None
        profile["printer"]["port"] = str(tmp_path / "no-such-tty")
    built = compose.build(profile, cfg, tr, console=console.append, auth_iterations=20)
    try:
        tests = built.selftests
        assert tests["display"][0] is True and tests["keypad"][0] is True
        assert tests["storage"][0] is True and tests["buzzer"][0] is True
        assert len(built.cl_leds) == len(profile["gpio"].get("cl_leds", ()))
        if name != "sim":
            # no printer on this machine: its port is named, and the terminal goes on
            port = profile["printer"]["port"]
            assert tests["printer"][0] is False
            assert any(line.startswith("printer:") and port in line for line in console)
        built.terminal.start()
        built.reactor.run_once(0)
        assert "Keypad: OK" in built.terminal.screen.text()
    finally:
        built.close()
        keypad.close_writer()
        keypad.close()


@pytest.mark.parametrize("name", PI_BOARDS)
def test_the_real_keyroot_of_each_pi_profile_is_sound(name):
    from drivers import keyroot
    spec = load_profile(name)["keyroot"]
    assert keyroot.check_spec(spec) == []
    assert spec["kind"] in ("otp", "tpm")         # never the lab's file root on a device


def _pins_in_use(profile):
    """{gpio: what} of every header pin a profile and its config.txt lines take."""
    used = {}

    def take(pin, what):
        assert pin not in used, "GPIO%d is both %s and %s" % (pin, used[pin], what)
        used[pin] = what

    lines = profile["board"]["config_txt"]
    if "dtparam=i2c_arm=on" in lines:
        take(2, "I2C SDA")
        take(3, "I2C SCL")
    if "dtparam=spi=on" in lines or any(l.startswith("dtoverlay=spi0-1cs") for l in lines):
        for pin, what in ((9, "SPI MISO"), (10, "SPI MOSI"), (11, "SPI SCLK"), (8, "SPI CE0")):
            take(pin, what)
        if "dtparam=spi=on" in lines:
            take(7, "SPI CE1")
    if any(l.startswith(("enable_uart=1", "dtparam=uart0=on")) for l in lines):
        take(14, "UART TX")
        take(15, "UART RX")
    disp = profile["display"]
    if disp.get("bus") == "spi":
        take(disp["dc"], "display DC")
        take(disp["reset"], "display RST")
    gp = profile["gpio"]
    take(gp["buzzer"], "buzzer")
    take(gp["led"], "LED")
    for pin in gp.get("cl_leds", ()):
        take(pin, "contactless LED")
    for i, pin in enumerate(profile["keypad"]["rows"]):
        take(pin, "keypad row %d" % i)
    for i, pin in enumerate(profile["keypad"]["cols"]):
        take(pin, "keypad col %d" % i)
    return used


@pytest.mark.parametrize("name", PI_BOARDS)
def test_no_header_pin_is_given_two_jobs(name):
    used = _pins_in_use(load_profile(name))
    assert all(2 <= pin <= 27 for pin in used)     # GPIO0/1 are the HAT EEPROM's


def test_the_pin_check_catches_a_clash():
    profile = copy.deepcopy(load_profile("pi5"))
    profile["keypad"]["cols"][3] = 24             # the SPI panel's DC
    with pytest.raises(AssertionError, match="GPIO24"):
        _pins_in_use(profile)


@pytest.mark.parametrize("name", PI_BOARDS)
def test_each_profile_enables_the_bus_its_parts_are_on(name):
    profile = load_profile(name)
    lines = _boardconf().lines(profile)
    bus = profile["display"]["bus"]
    if bus == "i2c":
        assert "dtparam=i2c_arm=on" in lines
    else:
        assert "dtparam=spi=on" in lines or any(l.startswith("dtoverlay=spi0-1cs") for l in lines)
    if profile["keyroot"]["kind"] == "tpm":
        assert "dtoverlay=tpm-slb9670" in lines and "dtparam=spi=on" in lines
    port = profile["printer"]["port"]
    if port == "/dev/serial0":
        assert "enable_uart=1" in lines
    if port == "/dev/ttyAMA0":
        assert "dtparam=uart0=on" in lines
    assert any(l.startswith("dtoverlay=handpos-keypad,") for l in lines)
    extra = _boardconf().extra(profile)
    assert extra == ("pi5" if name == "pi5" else "pi")


def test_pi5_uses_rpi_lgpio_through_the_rpi_gpio_api():
    profile = load_profile("pi5")
    assert profile["gpio"]["backend"] == "rpi"     # rpi-lgpio provides RPi.GPIO
    assert profile["board"]["pip_extra"] == "pi5"
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        assert re.search(r'pi5 = \["rpi-lgpio', f.read())


# -- the keypad overlay ---------------------------------------------------------------------

def _overlay_keymap():
    text = open(OVERLAY).read()
    block = re.search(r"linux,keymap = <(.*?)>;", text, re.S).group(1)
    block = re.sub(r"/\*.*?\*/", "", block)
    keys = {}
    for word in block.split():
        v = int(word, 16)
        keys[(v >> 24, (v >> 16) & 0xFF)] = v & 0xFFFF
    return text, keys


def test_the_overlay_sends_every_code_the_profiles_map_and_no_other():
    from evdev import ecodes
    text, keys = _overlay_keymap()
    rows = len(re.findall(r"<&gpio \d+ 0x21>", text))
    cols = len(re.findall(r"<&gpio \d+ 0x01>", text))
    assert (rows, cols) == (6, 4)
    assert all(r < rows and c < cols for r, c in keys)
    for name in PI_BOARDS:
        keymap = load_profile(name)["keypad"]["keymap"]
        assert sorted(ecodes.ecodes[k] for k in keymap) == sorted(keys.values()), name
    assert len(set(keys.values())) == len(keys)    # no code on two keys


def test_the_overlay_parameters_reach_each_pin():
    text, _ = _overlay_keymap()
    for i in range(6):
        assert '\t\trow%d = <&keypad>,"row-gpios:%d";' % (i, 12 * i + 4) in text
    for i in range(4):
        assert '\t\tcol%d = <&keypad>,"col-gpios:%d";' % (i, 12 * i + 4) in text
    defaults = [int(p) for p in re.findall(r"<&gpio (\d+) 0x21>", text)]
    assert defaults == load_profile("pizero2w")["keypad"]["rows"]


@pytest.mark.skipif(shutil.which("dtc") is None, reason="dtc not installed (package device-tree-compiler)")
def test_the_overlay_compiles(tmp_path):
    out = tmp_path / "kp.dtbo"
    run = subprocess.run(["dtc", "-q", "-@", "-I", "dts", "-O", "dtb", "-o", str(out), OVERLAY],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    back = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", str(out)], capture_output=True, text=True)
    assert 'compatible = "gpio-matrix-keypad"' in back.stdout and "__fixups__" in back.stdout


# -- config.txt and cmdline.txt ---------------------------------------------------------------

def test_config_txt_block_goes_after_filters_under_all_and_is_replaced_whole():
    bc = _boardconf()
    pi5, pi4 = load_profile("pi5"), load_profile("pi4")
    start = "dtparam=audio=on\n[cm4]\notg_mode=1\n"
    once = bc.edit_config_txt(start, pi5)
    assert once.startswith(start)
    block = once[len(start):]
    assert block.splitlines()[1:3] == [bc.BEGIN, "[all]"]
    assert bc.edit_config_txt(once, pi5) == once               # idempotent
    moved = bc.edit_config_txt(once + "gpu_mem=16\n", pi4)      # another board: replaced
    assert "dtoverlay=spi0-1cs" not in moved and "dtoverlay=disable-bt" in moved
    assert moved.count(bc.BEGIN) == 1 and moved.endswith("gpu_mem=16\n")
    with pytest.raises(bc.BoardError, match="end mark"):
        bc.edit_config_txt(start + bc.BEGIN + "\n", pi5)


def test_serial_console_leaves_cmdline_only_when_the_uart_carries_a_device():
    bc = _boardconf()
    line = "console=serial0,115200 console=tty1 root=PARTUUID=1-02 rootwait\n"
    assert bc.edit_cmdline(line, load_profile("pi4")) == "console=tty1 root=PARTUUID=1-02 rootwait\n"
    usb = copy.deepcopy(load_profile("pi4"))
    usb["printer"]["port"] = "/dev/ttyUSB0"
    assert bc.edit_cmdline(line, usb) == line


# -- the systemd unit -------------------------------------------------------------------------

def _unit():
    out = {}
    for line in open(UNIT):
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_is_hardened():
    u = _unit()
    one = {k: v[-1] for k, v in u.items()}
    assert one["Type"] == "notify" and int(one["WatchdogSec"]) > 0
    assert one["User"] == "handpos" and one["ProtectSystem"] == "strict"
    assert one["StateDirectory"] == "handpos" and one["StateDirectoryMode"] == "0700"
    assert one["CapabilityBoundingSet"] == "" and one["NoNewPrivileges"] == "yes"
    assert one["DevicePolicy"] == "closed"
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6",
                                                           "AF_NETLINK"}
    assert "@system-service" in u["SystemCallFilter"]
    for key in ("MemoryDenyWriteExecute", "LockPersonality", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
                "ProtectHome", "PrivateTmp", "RestrictNamespaces", "RestrictSUIDSGID"):
        assert one[key] == "yes", key
    assert "SupplementaryGroups" not in u       # a missing group would stop the unit


def test_the_unit_allows_the_devices_the_profiles_use():
    allowed = {v.split()[0] for v in _unit()["DeviceAllow"]}
    need = {"char-input"}                                        # keypad, HID scanner/reader
    for name in PI_BOARDS:
        p = load_profile(name)
        need.add({"i2c": "char-i2c", "spi": "char-spi"}[p["display"]["bus"]])
        need.add({"otp": "/dev/vcio", "tpm": "char-tpmrm"}[p["keyroot"]["kind"]])
        need.update({"char-ttyAMA", "char-ttyS"})               # /dev/serial0, ttyAMA0
        need.add("char-gpiochip" if name == "pi5" else "/dev/gpiomem")
    need.update({"char-ttyACM", "char-ttyUSB", "char-usb"})     # USB scanner and printers
    assert need <= allowed, need - allowed


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_finds_nothing(tmp_path):
    # verify insists that ExecStart exists: point it at a stand-in for the venv's handpos
    exe = tmp_path / "handpos"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = tmp_path / "handpos.service"
    unit.write_text(open(UNIT).read().replace("/opt/handpos/venv/bin/handpos", str(exe)))
    run = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr
    bad = tmp_path / "bad.service"               # and it does complain when there is cause
    bad.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strikt"))
    run = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True)
    assert "strikt" in run.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_security_scores_it_ok(tmp_path):
    unit = tmp_path / "handpos.service"
    shutil.copy(UNIT, unit)
    run = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                         capture_output=True, text=True)
    if "--offline" in run.stderr and "unrecognized" in run.stderr:
        pytest.skip("systemd-analyze too old for security --offline (needs systemd 250)")
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", run.stdout).group(1))
    assert score <= 2.0, run.stdout              # docs/raspberry-pi.md gives 1.5


# -- udev rules ---------------------------------------------------------------------------------

MATCH_KEYS = {"ACTION", "DEVPATH", "KERNEL", "NAME", "SYMLINK", "SUBSYSTEM", "DRIVER", "ATTR",
              "SYSCTL", "KERNELS", "SUBSYSTEMS", "DRIVERS", "ATTRS", "TAGS", "TAG", "ENV",
              "CONST", "TEST", "PROGRAM", "RESULT"}
ASSIGN_KEYS = {"NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "SECLABEL", "ATTR", "SYSCTL", "ENV",
               "TAG", "RUN", "LABEL", "GOTO", "IMPORT", "OPTIONS"}
WITH_ATTR = {"ATTR", "ATTRS", "ENV", "SYSCTL", "TEST", "IMPORT", "RUN", "SECLABEL", "CONST"}
TOKEN = re.compile(r'\s*([A-Z_]+)(?:\{([^}]+)\})?(==|!=|\+=|-=|:=|=)"((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_udev_rules(text):
    """[(lineno, [(key, attr, op, value)])] or ValueError naming the line and the fault."""
    rules, pending, start = [], "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            start = start or n
            continue
        line, start, pending = pending + line, start or n, ""
        tokens, pos = [], 0
        while pos < len(line):
            m = TOKEN.match(line, pos)
            if not m:
                raise ValueError("line %d: cannot read %r" % (start, line[pos:pos + 40]))
            key, attr, op, value, _ = m.groups()
            if op in ("==", "!="):
                if key not in MATCH_KEYS:
                    raise ValueError("line %d: %s is not a match key" % (start, key))
            elif key not in ASSIGN_KEYS:
                raise ValueError("line %d: %s cannot be assigned" % (start, key))
            if (attr is not None) != (key in WITH_ATTR) and key not in ("IMPORT", "RUN"):
                raise ValueError("line %d: %s %s an {attribute}" % (
                    start, key, "needs" if attr is None else "takes no"))
            tokens.append((key, attr, op, value))
            pos = m.end()
        if not any(op not in ("==", "!=") for _, _, op, _ in tokens):
            raise ValueError("line %d: a rule that matches and does nothing" % start)
        rules.append((start, tokens))
        start = 0
    if pending:
        raise ValueError("the file ends in a continued line")
    return rules


def test_the_udev_rules_parse():
    rules = parse_udev_rules(open(RULES).read())
    assert len(rules) >= 8
    links = {v for _, toks in rules for k, _, op, v in toks if k == "SYMLINK"}
    assert {"input/handpos-keypad", "input/handpos-scanner", "handpos-scanner",
            "handpos-printer", "usb/handpos-printer"} <= links
    groups = {v for _, toks in rules for k, _, op, v in toks if k == "GROUP"}
    with open(os.path.join(DEPLOY, "sysusers.d", "handpos.conf")) as f:
        member_of = {l.split()[2] for l in f if l.startswith("m ")}
    assert groups <= member_of                     # every device it names, handpos may open
    for _, toks in rules:
        for k, _, _, v in toks:
            if k == "MODE":
                assert v == "0660"                   # never world-readable input (PINs)


@pytest.mark.parametrize("bad, why", [
    ('SUBSYSTEM=="input", GROUP="input"', None),
    ('SUBSYSTEM=="input", KERNEL=="event*"', "does nothing"),
    ('SUBSYSTEM=="input" GROUP="input"', "cannot read"),
    ('SUBSYSTEM="input", MODE=="0660"', "not a match key|cannot be assigned"),
    ('ATTRS=="x", MODE="0660"', "needs an"),
    ('SUBSYTEM=="input", MODE="0660"', "not a match key"),
    ('SUBSYSTEM=="input", GROUP="input', "cannot read"),
])
def test_the_udev_parser_refuses_what_udev_would(bad, why):
    if why is None:
        assert parse_udev_rules(bad)
    else:
        with pytest.raises(ValueError, match=why):
            parse_udev_rules(bad)


# -- install.sh ---------------------------------------------------------------------------------

def test_install_sh_passes_bash_n():
    run = subprocess.run(["bash", "-n", INSTALL], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_install_sh_passes_shellcheck():
    run = subprocess.run(["shellcheck", "-x", INSTALL], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
