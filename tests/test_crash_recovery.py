"""The terminal killed in the middle of an authorisation: after restart the request is
reversed at the host, and the person sees what happened."""
import os
import signal
import subprocess
import sys
import time

from tools.sim.control import ControlClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start(tmp_path, config, sock):
    if os.path.exists(sock):
        os.unlink(sock)
    proc = subprocess.Popen([sys.executable, "-m", "tools", "sim", "--headless", "--control", sock,
                             "--config", config, "--data", str(tmp_path / "data"),
                             "--clock-synced", "no", "--pin-iterations", "200", "--host", "external",
                             "--chip", "off"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return proc, ControlClient(sock)


def _until(predicate, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_killed_during_authorisation_is_reversed_after_restart(tmp_path, hostsim):
    config = tmp_path / "handpos.toml"
    config.write_text('[host]\naddress = "%s"\nca_file = "%s"\nresponse_timeout_s = 30\n'
                      '[security]\ntest_keys = true\n[lab]\nenabled = true\n' % (hostsim.address, hostsim.ca_file))
    sock = str(tmp_path / "ctl")
    proc, c = _start(tmp_path, str(config), sock)
    c.wait("Welcome", 10000)
    c.press("ENTER", "1", "ENTER", "2", "5", "8", "0", "ENTER", "2", "5", "8", "0", "ENTER", "ENTER")
    c.wait("Operator ID")
    c.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    c.wait("MENU")
    c.press("1", "0", "9", "7", "ENTER", "1")          # .97: the host answers only after 60 s
    c.call("swipe", card="visa_pin")
    c.wait("Customer PIN")
    c.press("1", "2", "3", "4", "ENTER")
    c.wait("Authorising")
    records = c.call("journal")["records"]
    assert records[-1]["state"] == "sending"
    assert _until(lambda: hostsim.ledger.count("HP000001", status="approved") == 1)
    proc.send_signal(signal.SIGKILL)                   # power cut, as far as the terminal knows
    proc.wait(10)
    c.close()

    proc, c = _start(tmp_path, str(config), sock)
    try:
        c.wait("Operator ID", 10000)
        assert _until(lambda: len(hostsim.ledger.reversals("HP000001")) == 1)
        assert _until(lambda: hostsim.ledger.count("HP000001", status="approved") == 0)
        assert _until(lambda: c.call("journal")["records"][-1]["state"] == "reversed")
        record = c.call("journal")["records"][-1]
        assert record["reason"] == "reason_restart" and record["reversal_attempts"] >= 1
    finally:
        c.call("quit")
        c.close()
        proc.wait(10)
