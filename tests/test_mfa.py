"""The second factor (issue 15 item 3) on the simulated board: enrolment from the QR
code on the panel, the code a phone shows, recovery codes on paper once, replays
refused, the lockout kept across a restart, and nothing of it in clear on the card.

The phone is computed here: codes come from the key the panel's QR code carries, at
the time the test gives the terminal's TOTP clock (term.mfa.now), so nothing waits for
real time. HANDPOS_MFA_PNG=DIR saves each screen the tests look at as a PNG.
"""
import os
import re

import pytest
import segno
from PIL import Image

from drivers.display import QR_QUIET, image_to_png
from firmware.core.fsm import Flow
from firmware.flows.mfa import MfaCheckFlow, MfaEnrollFlow, mfa_required
from firmware.security import totp

T0 = 1790000000             # 2026-09-21: the TOTP clock these tests run on


class Phone:
    """An authenticator app: the key from the scanned URI, codes at a time."""

    def __init__(self, uri):
        m = re.match(r"^otpauth://totp/([^:?]+):([^?]+)\?secret=([A-Z2-7]+)$", uri)
        assert m, uri
        self.issuer, self.account = m.group(1), m.group(2)
        self.key = totp.b32decode(m.group(3))

    def code(self, now):
        return totp.totp(self.key, now)


class Asker(Flow):
    """Stands where login or the supervisor menu will: pushes a flow, keeps what it
    finished with."""
    NAME = "asker"
    INITIAL = "wait"
    STATES = {"wait": {"on": {}}}

    def __init__(self, term):
        Flow.__init__(self, term)
        self.results = []

    def child_done(self, flow, result):
        self.results.append(result)
        return None

    def render(self):
        self.term.show("Asker", ["waiting"])


def _png(h, name):
    folder = os.environ.get("HANDPOS_MFA_PNG")
    if folder:
        os.makedirs(folder, exist_ok=True)
        image_to_png(h.sim.built.display.device.image, os.path.join(folder, name + ".png"))


def _clock(h, now):
    box = [now]
    h.term.mfa.now = lambda: box[0]
    return box


def _start(harness, **kw):
    h = harness(**kw)
    h.first_supervisor()
    h.login()
    return h


def _ask(h, flow):
    asker = Asker(h.term)
    h.term.push(asker)
    h.term.push(flow)
    h.run(50)
    return asker


def enrol(h, op, now):
    """Enrol op's phone through the flow: QR, code, recovery codes printed. The phone,
    and the recovery codes read off the paper."""
    asker = _ask(h, MfaEnrollFlow(h.term, op))
    assert h.flow() == ("mfa_enrol", "qr"), h.text()
    phone = Phone(h.term.screen.qr)
    printed = len(h.sim.vprinter.receipts)
    h.press("ENTER", *phone.code(now))
    h.press("ENTER")
    assert h.flow() == ("mfa_enrol", "done"), h.text()
    h.run(5000, until=lambda: len(h.sim.vprinter.receipts) > printed)
    paper = h.sim.vprinter.receipts[-1].text()
    codes = [a + b for a, b in re.findall(r"^\s*\d\.\s+(\d{5}) (\d{5})\s*$", paper, re.M)]
    h.press("ENTER")
    assert asker.results == [op]
    return phone, codes


def _decode(image):
    zxingcpp = pytest.importorskip("zxingcpp", reason="zxing-cpp is in the test extra")
    return [r.text for r in zxingcpp.read_barcodes(image.convert("L"))
            if r.format == zxingcpp.BarcodeFormat.QRCode]


def test_enrolment_qr_wrong_code_recovery_codes_printed_once(harness, tmp_path):
    h = _start(harness)
    clock = _clock(h, T0)
    op = h.term.operator
    asker = _ask(h, MfaEnrollFlow(h.term, op))
    assert h.flow() == ("mfa_enrol", "qr")
    uri = h.term.screen.qr
    # the short standard key URI: issuer as the label's prefix, the account TID-operator
    assert re.match(r"^otpauth://totp/handpos:HP000001-1\?secret=[A-Z2-7]{32}$", uri), uri
    assert "Scan in app" in h.text() and "HP000001-1" in h.text()
    _png(h, "enrol_qr")

    # the panel's pixels are segno's symbol, and a QR reader gets the URI back
    display = h.sim.built.display
    image = display.device.image
    symbol = segno.make(uri, error="l", micro=False, boost_error=True)
    modules = symbol.symbol_size(border=0)[0]
    assert symbol.version == 4 and modules == 33 and display.qr_scale == 1
    x0, y0 = display.qr_box[0] + QR_QUIET, display.qr_box[1] + QR_QUIET
    drawn = [[0 if image.getpixel((x0 + c, y0 + r)) else 1 for c in range(modules)]
             for r in range(modules)]
    assert drawn == [list(row) for row in symbol.matrix]
    png = image_to_png(image, str(tmp_path / "enrol.png"))
    assert _decode(Image.open(png)) == [uri]
    phone = Phone(uri)

    # F2: the key as text, for an app typed by hand
    h.press("F2")
    assert h.flow() == ("mfa_enrol", "key")
    key = totp.b32encode(phone.key)
    assert h.term.screen.lines[0].replace(" ", "") == key[:12]
    assert "".join(h.term.screen.lines).replace(" ", "") == key
    _png(h, "enrol_key")

    # a wrong code keeps nothing
    h.press("ENTER")
    assert h.flow() == ("mfa_enrol", "code")
    wrong = "000000" if phone.code(T0) != "000000" else "111111"
    h.press(*wrong)
    _png(h, "enrol_code")
    h.press("ENTER")
    assert "Wrong code" in h.text() and h.flow() == ("mfa_enrol", "code")
    assert not h.term.mfa.enrolled("1")
    _png(h, "enrol_wrong")
    assert h.sim.vprinter.receipts == [] or all(
        "RECOVERY" not in r.text() for r in h.sim.vprinter.receipts)

    # the phone's code, a step later (its clock is a little behind): enrolled
    clock[0] = T0 + 30
    h.press(*phone.code(T0))
    h.press("ENTER")
    assert h.flow() == ("mfa_enrol", "done"), h.text()
    assert "TOTP enrolled" in h.text()
    _png(h, "enrol_done")
    h.run(5000, until=lambda: any("RECOVERY" in r.text() for r in h.sim.vprinter.receipts))
    sheets = [r.text() for r in h.sim.vprinter.receipts if "RECOVERY" in r.text()]
    assert len(sheets) == 1
    codes = re.findall(r"^\s*\d\.\s+(\d{5}) (\d{5})\s*$", sheets[0], re.M)
    assert len(codes) == 8 and len(set(codes)) == 8
    assert "Operator" in sheets[0] and "HP000001" in sheets[0]
    h.press("ENTER")
    assert asker.results == [op]
    audit = [row[1] for row in h.term.store.audit_log(20)]
    assert "mfa_enrolled" in audit

    # printed once: nothing on the terminal can print them again; what is kept is sealed
    h.run(500)
    assert sum("RECOVERY" in r.text() for r in h.sim.vprinter.receipts) == 1
    data = h.term.config["storage"]["data_dir"]
    sealed = os.path.join(data, "keys", "mfa.sealed")
    assert os.path.exists(sealed) and os.stat(sealed).st_mode & 0o077 == 0
    needles = [key.encode(), key.lower().encode(), phone.key, phone.key.hex().encode()]
    needles += [(a + b).encode() for a, b in codes]
    for folder, _, files in os.walk(data):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                raw = f.read()
            for needle in needles:
                assert needle not in raw, (name, needle)
    # and the record opens as the enrolment: key, hashes only
    rec = h.term.mfa.secrets.get("1")
    assert rec["secret"] == key and len(rec["recovery"]) == 8
    assert all((a + b) not in str(rec) for a, b in codes)


def test_enrolment_needs_a_printer_for_the_recovery_codes(harness):
    h = _start(harness)
    h.term.printer_state = "paper_out"
    asker = _ask(h, MfaEnrollFlow(h.term, h.term.operator))
    assert h.flow() == ("mfa_enrol", "no_printer")
    assert "Printer needed" in h.text() and "no paper" in h.text()
    h.press("CANCEL")
    assert asker.results == [None] and not h.term.mfa.enrolled("1")


def test_code_replay_recovery_and_lockout_across_a_restart(harness):
    h = _start(harness)
    clock = _clock(h, T0)
    op = h.term.operator
    phone, codes = enrol(h, op, T0)
    assert len(codes) == 8

    # the code of the enrolment's own step is spent: refused, and said why
    asker = _ask(h, MfaCheckFlow(h.term, op, "export"))
    assert h.flow() == ("mfa_check", "code")
    assert "For: export" in h.text() and "F2 recovery code" in h.text()
    _png(h, "check_code")
    h.press(*phone.code(T0))
    h.press("ENTER")
    assert "Code used: wait" in h.text() and asker.results == []
    _png(h, "check_replay")
    # the next step's code: taken, once
    clock[0] = T0 + 30
    h.press(*phone.code(clock[0]))
    h.press("ENTER")
    assert asker.results == [op]
    asker = _ask(h, MfaCheckFlow(h.term, op, "export"))
    h.press(*phone.code(clock[0]))
    h.press("ENTER")
    assert "Code used" in h.text() and asker.results == []
    h.press("CANCEL")
    assert asker.results == [None]

    # a recovery code (F2), once
    asker = _ask(h, MfaCheckFlow(h.term, op, "key_load"))
    h.press("F2")
    assert "Recovery code" in h.text() and "10-digit code" in h.text()
    _png(h, "check_recovery")
    h.press(*codes[2])
    h.press("ENTER")
    assert asker.results == [op]
    assert h.term.mfa.recovery_left("1") == 7
    asker = _ask(h, MfaCheckFlow(h.term, op, "key_load"))
    h.press("F2", *codes[2])
    h.press("ENTER")
    assert "Wrong code" in h.text() and asker.results == []   # failure 1

    # four more wrong: locked for 15 minutes, the codes beeped and audited
    h.press("F2")
    wrong = [c for c in ("000000", "111111", "222222", "333333", "444444")
             if c not in (phone.code(clock[0] + d) for d in (-30, 0, 30))][:4]
    beeps = []
    beep = h.term.beep
    h.term.beep = lambda name: (beeps.append(name), beep(name))
    for code in wrong:
        h.press(*code)
        h.press("ENTER")
    assert h.flow() == ("mfa_check", "locked"), h.text()
    assert "Too many wrong" in h.text() and "Try in 15 min" in h.text()
    _png(h, "check_locked")
    audit = [row[1] for row in h.term.store.audit_log(50)]
    # the two replays, the spent recovery code and the four wrong codes
    assert audit.count("mfa_failed") == 7 and audit[0] == "mfa_locked"
    assert beeps.count("error") == 4
    h.press("CANCEL")
    assert asker.results == [None]

    # a restart on the same data folder: still locked, even for the right code
    h.close()
    h = harness()
    h.boot()
    h.login()
    clock = _clock(h, T0 + 90)
    op = h.term.operator
    assert h.term.mfa.enrolled("1")
    assert h.term.mfa.locked_for("1") == 15 * 60 - 60      # locked at T0 + 30
    asker = _ask(h, MfaCheckFlow(h.term, op, "export"))
    assert h.flow() == ("mfa_check", "locked")
    h.press("CANCEL")
    assert asker.results == [None]
    # 15 minutes on: the phone's code is taken again
    clock[0] = T0 + 30 + 15 * 60 + 60
    asker = _ask(h, MfaCheckFlow(h.term, op, "export"))
    h.press(*phone.code(clock[0]))
    h.press("ENTER")
    assert asker.results == [op]


def test_not_enrolled_is_sent_to_enrol_and_config_decides(harness):
    from firmware.core import config as schema
    h = _start(harness, mfa=schema.defaults()["mfa"])     # the product's [mfa]
    h.term.set_language("zh")
    clock = _clock(h, T0)
    op = h.term.operator
    cfg = h.term.config["mfa"]
    assert cfg == {"at_login": False, "actions": ["pin_reset", "key_load", "export", "update",
                                                  "factory_reset"],
                   "roles": ["supervisor", "technician"]}
    assert mfa_required(h.term, op, "export") and not mfa_required(h.term, op, "login")
    asker = _ask(h, MfaCheckFlow(h.term, op, "export"))
    assert h.flow() == ("mfa_check", "not_enrolled")
    assert "请先绑定验证器" in h.text()
    _png(h, "check_not_enrolled_zh")
    h.press("ENTER")                       # enrol now: the QR code
    assert h.flow() == ("mfa_enrol", "qr")
    _png(h, "enrol_qr_zh")
    phone = Phone(h.term.screen.qr)
    h.press("ENTER", *phone.code(T0))
    h.press("ENTER")
    assert h.flow() == ("mfa_enrol", "done")
    _png(h, "enrol_done_zh")
    h.press("ENTER")
    assert asker.results == [op]           # the new phone's code was the second factor

    # enrolling again asks the enrolled phone first
    clock[0] = T0 + 60
    asker = _ask(h, MfaEnrollFlow(h.term, op))
    assert h.flow() == ("mfa_check", "code") and "更换手机" in h.text()
    h.press("CANCEL")
    assert asker.results == [None]
