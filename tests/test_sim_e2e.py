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
