"""The simulator as a black box: a separate process driven through its control socket."""
import os
import subprocess
import sys
import time

import pytest
from PIL import Image

from tools.sim.control import ControlClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def sim(tmp_path):
    sock = str(tmp_path / "ctl")
    snap = str(tmp_path / "snap")
    proc = subprocess.Popen([sys.executable, "-m", "tools", "sim", "--headless", "--control", sock,
                             "--data", str(tmp_path / "data"), "--snapshot", snap,
                             "--clock-synced", "no", "--pin-iterations", "200", "--host", "off", "--chip", "off"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "simulator did not open its control socket"
        time.sleep(0.02)
    client = ControlClient(sock)
    yield client, proc, snap
    client.close()
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


def test_person_journey_through_the_control_socket(sim):
    c, proc, snap = sim
    c.wait("Welcome", 10000)
    c.press("ENTER", "1", "ENTER", "2", "5", "8", "0", "ENTER", "2", "5", "8", "0", "ENTER")
    assert "Created: ID 1" in c.screen()["text"]
    c.press("ENTER")
    c.wait("Operator ID")
    c.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    screen = c.wait("MENU menu")
    # three notices take the body from the big clock (the title bar keeps the time):
    # the clock not synced, the demo's instant noodles under their level, the lab
    assert "Low stock: 1" in screen["text"] and "LAB" in screen["text"], screen["text"]
    assert c.call("state")["operator"] == "1"
    c.press("MENU", "6", "ENTER")
    c.wait("语言: 中文")
    c.press("ENTER", "CANCEL")
    assert "主菜单" in c.screen()["text"]
    assert c.call("state")["language"] == "zh"
    # diagnostics: a test page reaches the virtual printer's paper
    c.press("7", "2")
    c.wait("测试页已打印", 5000)
    for _ in range(100):
        receipts = c.call("receipts")["receipts"]
        if receipts:
            break
        time.sleep(0.02)
    assert "中文打印测试" in receipts[0]
    assert c.call("quit")["ok"]
    assert proc.wait(10) == 0
    frames = sorted(f for f in os.listdir(snap) if f.startswith("frame_"))
    assert len(frames) > 10
    with Image.open(os.path.join(snap, frames[-1])) as img:
        assert img.size == (512, 256)
    assert any(f.startswith("receipt_") for f in os.listdir(snap))


def test_bad_requests_get_clear_answers_and_the_socket_stays_usable(sim):
    c, proc, snap = sim
    c.sock.sendall(b"this is not json\n")
    c.buf = b""
    line = c.sock.recv(4096)
    assert b"not a JSON object" in line
    answer = c.call("press", keys=["ENTER", "TELEPORT"])
    assert not answer["ok"] and "TELEPORT" in answer["error"] and "ENTER" in answer["error"]
    assert not c.call("dance")["ok"]
    assert c.call("screen")["ok"]


def test_sim_without_a_terminal_says_how_to_drive_it(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tools", "sim", "--data", str(tmp_path)],
                         cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "--headless --control" in out.stderr


def test_the_qr_link_can_be_cut_alone_and_qr_is_refused_while_cards_go_on(tmp_path):
    """`handpos sim` with its host and QR acquirer simulators, each behind its own fault
    proxy: the control socket cuts the QR link alone; a QR payment then finds the
    acquirer gone (NOT CHARGED), the next is refused at once with card and cash still
    offered, and the card host's link stays up; N's both-links cut and back work too."""
    sock = str(tmp_path / "ctl")
    proc = subprocess.Popen([sys.executable, "-m", "tools", "sim", "--headless", "--control", sock,
                             "--data", str(tmp_path / "data"), "--clock-synced", "no",
                             "--pin-iterations", "200", "--chip", "off",
                             "--host-port", str(_free_port())],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "simulator did not open its control socket"
            time.sleep(0.05)
        c = ControlClient(sock)
        c.wait("Welcome", 20000)
        c.press("ENTER", "1", "ENTER", "2", "5", "8", "0", "ENTER", "2", "5", "8", "0", "ENTER")
        c.press("ENTER")
        c.wait("Operator ID")
        c.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
        c.wait("MENU menu")
        assert c.call("network", up=False, link="mars")["ok"] is False
        answer = c.call("network", up=False, link="qr")
        assert answer["ok"] and answer["links"] == {"host": True, "qr": False}, answer
        c.press("5", "0", "0", "ENTER", "3")
        c.wait("Scan customer code")
        assert c.call("scan", code="134567890123456789")["ok"]
        c.wait("NOT CHARGED", 20000)
        for _ in range(3):
            if "MENU menu" in c.screen()["text"]:
                break
            c.press("CANCEL")
        c.press("6", "0", "0", "ENTER", "3")
        text = c.wait("QR needs network")["text"]
        assert "Card" in text and "Cash" in text, text
        state = c.call("state")
        assert state["qr_link"] == "down" and state["host_link"] == "up", state
        c.press("2")                                    # cash goes on
        c.wait("Cash given")
        assert c.call("network", up=True, link="qr")["links"]["qr"] is True
        both = c.call("network", up=False)
        assert both["links"] == {"host": False, "qr": False} and both["up"] is False, both
        assert c.call("network", up=True)["up"] is True
        assert c.call("quit")["ok"]
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
