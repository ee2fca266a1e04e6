"""Every screen readable on the 128x64 panel, in English and Chinese.

The suite-wide fixture in conftest.py fails any test during which a screen lost text;
this file adds what the other tests may not reach: every message of both catalogues
fits one body row with realistic values in its fields, and a tour of the terminal's
screens in each language draws them all whole.
"""
import re

import pytest
from luma.core.device import dummy

from drivers.display import LumaDisplay
from firmware.ui import messages_en, messages_zh

# Values as wide as a field gets in use: six-digit IDs and codes, a five-digit amount
# with its separators, the offline policy's hours and counts.
SAMPLES = {"amount": "99,999.99", "id": "123456", "code": "123456", "rc": "05", "n": "500",
           "d": "500", "h": "72", "w": "24", "m": "72", "total": "99,999.99"}
# Messages printed on 58 mm paper (32 columns), never drawn on the panel.
PAPER_ONLY = re.compile(r"^rcpt_")


@pytest.fixture(scope="module")
def panel():
    return LumaDisplay(dummy(width=128, height=64, mode="1"))


def filled(text):
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLES.get(m.group(1), "XXXXXX"), text)


@pytest.mark.parametrize("catalogue", [messages_en, messages_zh], ids=["en", "zh"])
def test_every_message_fits_one_row(panel, catalogue):
    row = panel.layout.width - 4                 # a body row's 2 px inset each side
    too_wide = []
    for key, text in sorted(catalogue.MESSAGES.items()):
        if PAPER_ONLY.match(key) or not isinstance(text, str):
            continue
        shown = filled(text)
        if panel.text_width(shown) > row:
            too_wide.append("%s = %r: %d px, a row holds %d" % (key, shown, panel.text_width(shown), row))
    assert not too_wide, "\n" + "\n".join(too_wide)


def test_the_check_catches_a_long_message(panel):
    assert panel.text_width(filled("Cash given (ENTER=exact)")) > panel.layout.width - 4
    assert panel.text_width(filled("金额 {amount} 已退回到顾客的银行卡")) > panel.layout.width - 4


def _visit(h, *keys, title=None):
    """Press keys; the screen reached must have a title (a screen really drew)."""
    h.press(*keys)
    assert h.term.screen is not None and h.term.screen.title, keys
    if title is not None:
        assert title in h.term.screen.title, (keys, h.text())
    return h.text()


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_tour_of_the_screens_loses_no_text(harness, language):
    """Walk the screens a merchant and a technician meet, wrong turns included; the
    suite's no_text_lost fixture fails this test if any of them cut or dropped words."""
    h = harness(language=language)
    h.boot()
    h.run(3000, until=lambda: h.flow()[0] != "boot")
    # first run: a PIN too easy, then a mismatch, then the supervisor
    h.press("ENTER", "1", "ENTER", "1", "2", "3", "4", "ENTER")     # too easy
    h.press("2", "5", "8", "0", "ENTER", "2", "5", "8", "1", "ENTER")   # mismatch
    h.press("2", "5", "8", "0", "ENTER", "2", "5", "8", "0", "ENTER")
    assert h.flow()[0] == "new_operator" and h.term.screen.alert == "ok"
    h.press("ENTER")
    h.run(2000, until=lambda: h.flow()[0] == "login")
    h.press("1", "ENTER", "9", "9", "9", "9", "ENTER")                 # wrong PIN
    assert h.flow()[0] == "login"
    h.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    assert h.flow() == ("idle", "idle")
    # a cash sale: too little given, then change, the copy question, the copy
    h.press("1", "2", "5", "0", "ENTER", "2")
    _visit(h, "1", "0", "0", "ENTER")                                # less than the total
    _visit(h, "CLEAR", "2", "0", "0", "0", "ENTER")
    assert h.term.screen.big == "7.50"
    _visit(h, "ENTER")
    assert h.flow() == ("sale", "copy")
    h.press("ENTER")
    h.run(5000, until=lambda: h.flow() == ("idle", "idle"))
    # every entry of the home menu, and each submenu's entries
    for entry in ("2", "3"):                                         # refund, void: supervisor
        _visit(h, "MENU", entry)
        _visit(h, "1", "ENTER", "9", "9", "9", "9", "ENTER")          # wrong supervisor PIN
        h.press("CANCEL", "CANCEL", "CANCEL")
        h.run(500, until=lambda: h.flow()[0] == "idle")
    _visit(h, "MENU", "4")                                           # reprint
    h.press("CANCEL", "CANCEL")
    h.run(500, until=lambda: h.flow()[0] == "idle")
    _visit(h, "MENU", "5")                                           # reports
    h.press("ENTER", "CANCEL", "CANCEL")
    h.run(500, until=lambda: h.flow()[0] == "idle")
    for entry in ("2", "3", "4", "5"):                               # settings
        _visit(h, "MENU", "6", entry)
        for _ in range(4):
            _visit(h, "DOWN")
        h.press("CANCEL", "CANCEL", "CANCEL", "CANCEL")
        h.run(500, until=lambda: h.flow()[0] == "idle")
    for entry in ("1", "2", "4", "5", "6", "7"):                     # diagnostics
        _visit(h, "MENU", "7", entry)
        h.run(2500)
        for _ in range(4):
            h.press("DOWN")
        h.press("ENTER", "CANCEL", "CANCEL", "CANCEL")
        h.run(500, until=lambda: h.flow()[0] == "idle")
    _visit(h, "MENU", "7", "3", "1", "2", "ENTER")                   # keypad test
    h.press("CANCEL", "CANCEL", "CANCEL", "CANCEL")
    h.run(500, until=lambda: h.flow()[0] == "idle")
    for entry in ("1", "2", "3"):                                    # offline queue (4, the policy, is Settings 4 too)
        _visit(h, "MENU", "9", entry)
        h.run(1000)
        h.press("CANCEL", "CANCEL", "CANCEL")
        h.run(500, until=lambda: h.flow()[0] == "idle")
    # the printer out of paper on the idle screen, then the logout
    h.sim.vprinter.set_paper(False)
    h.run(3000, until=lambda: h.term.printer_state == "paper_out")
    _visit(h, "F4")


def _title_keys():
    """Message ids a flow shows as a screen's title: the first argument of a
    term.show(...) call written as t("id") or self.t("id"), a flow's TITLE, and by
    name every *_title and menu_* (a flow's title() is its menu entry's word)."""
    import ast
    import os
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "firmware")
    found = set()
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".py"):
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "show" \
                        and node.args and isinstance(node.args[0], ast.Call):
                    call = node.args[0]
                    fn = call.func
                    named = getattr(fn, "id", None) == "t" or getattr(fn, "attr", None) == "t"
                    if named and call.args and isinstance(call.args[0], ast.Constant):
                        found.add(call.args[0].value)
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                        and any(getattr(t, "id", "") == "TITLE" for t in node.targets):
                    found.add(node.value.value)
    found.update(k for k in messages_en.MESSAGES if k.endswith("_title") or k.startswith("menu_"))
    found.discard("")
    return found


@pytest.mark.parametrize("catalogue", [messages_en, messages_zh], ids=["en", "zh"])
def test_every_title_fits_beside_the_marks_that_never_give_way(panel, catalogue):
    """The status marks give way to a title (clock, link, battery), except the offline
    queue's count and the printer's mark; with both up and a badge, the title must fit."""
    from firmware.ui.screen import Screen, Status
    keys = _title_keys()
    assert {"off_upload", "selftest_title", "queue_alert_title"} <= keys, sorted(keys)
    status = Status(clock="23:59", synced=False, link="down", battery=5, pending=500,
                    printer="paper_out")
    cut = []
    for key in sorted(keys):
        text = filled(catalogue.MESSAGES.get(key, key))
        panel.render(Screen(title=text, status=status, alert="warn"))
        cut += [str(loss) for loss in panel.losses]
    assert not cut, "\n" + "\n".join(cut)


def test_every_message_a_flow_names_is_in_both_catalogues():
    """A literal t("id") in firmware/ whose id no catalogue has would show the id itself
    on the panel ("footer_yes_no" did, under the cart's void question). Ids built by
    adding a suffix (t("rc_" + rc)) are the tests of their own screens."""
    import os
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "firmware")
    literal = re.compile(r'\bt\(\s*"([a-z0-9_]+)"')
    missing = []
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                text = f.read()
            for found in literal.finditer(text):
                msg = found.group(1)
                if msg.endswith("_"):
                    continue
                for lang, catalogue in (("en", messages_en.MESSAGES), ("zh", messages_zh.MESSAGES)):
                    if msg not in catalogue:
                        missing.append("%s: %s (%s)" % (name, msg, lang))
    assert missing == []
