"""Guided troubleshooting (issue 17): the no-network walk on the real drivers (the fake
nmcli under drivers/network.py, TLS to the host simulator through the fault proxy), the
last failed payment in words, the printer, power, system error and its support code, and
the diagnostic report: printed, exported by `handpos diag report`, with no card data."""
import os
import subprocess
import sys

import pytest

from tests.test_network import open_entry, technician

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAN = "4111111111111111"
SWIPE_OK = {"entry_modes": ["chip", "tap", "swipe"]}


def to_help(h):
    h.press("MENU")
    open_entry(h, "troubleshoot")
    assert h.flow() == ("troubleshoot", "menu"), h.text()


def walk(h):
    to_help(h)
    h.press("1")
    h.run(20000, until=lambda: h.flow() == ("ts_network", "done"))
    assert h.flow() == ("ts_network", "done"), h.text()
    return h.term.current().rows()


def test_no_network_walk_with_the_network_cut_at_the_fault_proxy(online, net):
    h = online()
    rows = walk(h)
    assert [r for r in rows if r.startswith("Host: OK")] and [r for r in rows if
                                                             r.startswith("TLS: OK")], rows
    net.set("reset", existing=True, new=True)
    h.press("ENTER")                                 # again
    h.run(20000, until=lambda: h.flow() == ("ts_network", "done"))
    rows = h.term.current().rows()
    # the fake nmcli says the Wi-Fi is up: the walk finds the cut where it is
    assert "Link: OK" in rows and "Address: OK" in rows, rows
    assert "DNS: OK" in rows and "Host: FAIL" in rows, rows
    assert "Cut on the way" in rows and "> Check router/SIM" in rows, "|".join(rows)
    assert "TLS: not tried" in rows
    assert h.term.screen.alert == "error"
    # what the panel shows first: the step that failed, then its cause and the advice
    scr = h.term.screen
    assert scr.lines[scr.first_visible():scr.first_visible() + 3] == [
        "Host: FAIL", "Cut on the way", "> Check router/SIM"], scr.lines
    for _ in range(8):
        h.press("DOWN")                              # every row reachable on the panel
    assert "TLS: not tried" in h.text()
    net.set("pass")
    h.press("ENTER")
    h.run(20000, until=lambda: h.flow() == ("ts_network", "done"))
    assert "Host: FAIL" not in h.term.current().rows()


def test_no_network_walk_with_the_wifi_dropped(online, net):
    h = online()
    assert h.sim.set_wifi(False)
    rows = walk(h)
    assert rows[0] == "Link: FAIL", rows
    assert "Wi-Fi disconnected" in rows and "> Settings>Network" in rows
    assert "Host: not tried" in rows and "TLS: not tried" in rows
    audit = [r for r in h.term.store.audit_log(10) if r[1] == "ts_network"]
    assert audit and "link failed" in audit[0][3]
    h.sim.set_wifi(True)
    h.press("ENTER")
    h.run(20000, until=lambda: h.flow() == ("ts_network", "done"))
    assert h.term.current().rows()[0] == "Link: OK"


def test_the_control_socket_drops_the_wifi(harness, tmp_path):
    from tools.sim.control import ControlServer, ControlClient
    h = harness()
    server = ControlServer(str(tmp_path / "c.sock"), h.sim)
    import threading
    answers = []
    t = threading.Thread(target=lambda: answers.append(
        ControlClient(str(tmp_path / "c.sock")).call("wifi", up=False)))
    t.start()
    h.run(3000, until=lambda: answers)
    t.join(5)
    server.close()
    from tools.sim import fake_nmcli
    assert answers == [{"ok": True, "up": False}]
    assert fake_nmcli.load(h.sim.nmcli_state)["devices"]["wlan0"]["state"] == "disconnected"


def test_last_failed_payment_in_words(online, net):
    h = online()
    to_help(h)
    h.press("2")
    assert "No failed payment" in h.text()
    h.press("CANCEL", "CANCEL", "CANCEL")
    h.run(500, until=lambda: h.flow() == ("idle", "idle"))
    rec = h.swipe_sale("1051")                       # .51: insufficient funds
    assert rec["state"] == "declined", rec
    h.to_idle()
    to_help(h)
    h.press("2")
    text = h.term.current().rows
    assert "Insufficient funds" in text and "Card problem" in text, text
    assert "> Try another card" in text
    assert PAN not in " ".join(text)
    h.press("CANCEL", "CANCEL", "CANCEL")
    h.run(500, until=lambda: h.flow() == ("idle", "idle"))
    net.set("reset", existing=True, new=True)
    rec = h.swipe_sale("1200")
    h.to_idle()
    to_help(h)
    h.press("2")
    text = h.term.current().rows
    assert "Network problem" in text and "> Help>No network" in text, text


def test_printer_power_and_system_error(harness):
    h = technician(harness)
    to_help(h)
    h.sim.vprinter.set_paper(False)
    h.press("3")
    h.run(3000, until=lambda: "Paper: OUT" in h.term.current().rows)
    assert "Paper: OUT" in h.term.current().rows, h.term.current().rows
    assert "> Load paper" in h.term.current().rows
    h.press("F1")                                    # nothing sold yet: nothing to reprint
    assert "Nothing to reprint" in h.term.current().rows
    h.press("CANCEL")
    h.press("4")
    # the simulator's board has no battery: said plainly
    assert h.term.current().rows[:2] == ["Board reports no", "battery at all"]
    h.press("CANCEL")
    h.press("5")
    rows = h.term.current().rows
    code = rows[rows.index("Support code:") + 1]
    assert code.startswith("0.1.0-") or code.split("-")[0].count(".") == 2
    from firmware.flows.troubleshoot import _check_char
    full = "".join(rows[rows.index("Support code:") + 1:-1])
    body, check = full.rsplit("-", 1)
    assert _check_char(body) == check and "P1" in body       # the paper out, coded


def test_support_code_holds_no_personal_or_card_data(online):
    from firmware.flows.troubleshoot import support_code
    h = online(**SWIPE_OK)
    h.swipe_sale("2000")
    code = support_code(h.term)
    assert PAN[-4:] not in code and "2580" not in code and h.term.operator["id"] not in code.split("-")[1]


def _card_sales(online, net):
    h = online(**SWIPE_OK)
    for cents in ("1000", "1051"):
        h.swipe_sale(cents)
        h.to_idle()
    net.set("reset", existing=True, new=True)
    h.swipe_sale("1200")                             # offline, queued
    h.to_idle()
    net.set("pass")
    return h


def _no_card_data(text):
    assert PAN not in text
    assert PAN[:6] not in text                       # not even the first six
    assert "=" + "2512" not in text and "^" not in text      # no track 2 or track 1
    assert "TEST/CARD" not in text.upper()


def test_diag_report_printed_and_exported_without_card_data(online, net, tmp_path):
    h = _card_sales(online, net)
    h.press("MENU")
    open_entry(h, "diagnostics")
    open_entry(h, "diag_report")
    assert "Printing report" in h.text()

    def report():
        for r in h.sim.vprinter.receipts:
            if "HANDPOS DIAGNOSTIC REPORT" in r.text():
                return r.text()
    h.run(15000, until=report)
    paper = report() or ""
    assert "HANDPOS DIAGNOSTIC REPORT" in paper and "support code" in paper
    assert "offline queue: 1 pending" in paper
    assert "declined 51" in paper
    _no_card_data(paper)
    data = h.term.config["storage"]["data_dir"]
    h.close()
    out = tmp_path / "report.txt"
    run = subprocess.run([sys.executable, "-m", "tools", "diag", "report", "--data", data,
                          "--output", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    assert "HANDPOS DIAGNOSTIC REPORT" in text and "offline queue: 1 pending" in text
    assert "declined 51" in text
    _no_card_data(text)
    # the whole data folder holds the PAN only sealed: the report did not unseal it
    assert PAN not in run.stdout + run.stderr


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_troubleshooting_screen_in_both_languages(harness, language):
    """Each entry drawn whole on the 128x64 panel (the suite's no_text_lost fixture)."""
    h = technician(harness, language=language)
    h.sim.set_wifi(False)
    h.sim.vprinter.set_paper(False)
    h.run(2000)
    to_help(h)
    for entry in ("1", "2", "3", "4", "5"):
        h.press(entry)
        h.run(8000, until=lambda: h.flow()[1] != "walk")
        for _ in range(12):
            h.press("DOWN")
        h.press("CANCEL")
        h.run(500, until=lambda: h.flow() == ("troubleshoot", "menu"))
    for _ in range(6):
        h.press("DOWN")
