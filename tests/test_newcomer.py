"""What a newcomer meets first: `make run` where it cannot draw, a second simulator beside
the first, and the terminal in its first market's currency and language (CNY, 中文)."""
import fcntl
import os
import pty
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from tools.sim.control import ControlClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = [sys.executable, "-m", "tools", "sim"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("stdin_tty", [False, True], ids=["stdin-devnull", "stdin-tty"])
def test_sim_without_a_terminal_refuses_in_one_line_and_starts_nothing(tmp_path, stdin_tty):
    # `make run | cat`, `make run > log`: output piped; with stdin on a tty (a person
    # typing `make run | tee log`) curses used to die in cbreak() with a traceback
    master = slave = None
    if stdin_tty:
        master, slave = pty.openpty()
    try:
        out = subprocess.run(SIM + ["--data", str(tmp_path / "data")], cwd=ROOT,
                             stdin=slave if stdin_tty else subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=60)
    finally:
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
    assert out.returncode == 2
    line = _one_line(out.stderr)
    assert "needs a terminal" in line
    assert ".venv/bin/handpos sim --headless --control /tmp/pos.sock" in line
    assert "docs/simulator.md" in line
    assert out.stdout == ""                     # no escape codes from a half-started curses
    # refused before the host simulator or the private pcscd were started
    data = tmp_path / "data"
    assert not os.path.exists(str(data) + "-host") and not os.path.exists(str(data) + "-pcscd")


def test_port_of_the_host_simulator_taken_says_so_and_how_to_get_past(tmp_path):
    with socket.socket() as other:                  # a first simulator, or any program
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        sock = tmp_path / "ctl"
        out = subprocess.run(SIM + ["--headless", "--control", str(sock), "--data",
                                    str(tmp_path / "data"), "--chip", "off",
                                    "--host-port", str(port)],
                             cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=60)
    assert out.returncode == 2
    line = _one_line(out.stderr)
    assert "port %d is taken" % port in line
    assert "127.0.0.1:%d" % port in line
    assert "quit the other one" in line
    suggested = int(line.rsplit("--host-port", 1)[1].split()[0])
    assert suggested != port
    assert "No host configured" not in out.stdout + out.stderr
    assert not sock.exists()                        # the terminal did not start without its host


def test_start_hostsim_tells_a_taken_port_from_its_own_words(tmp_path, monkeypatch):
    # the port taken between the check and the bind: the host simulator's own
    # "address already in use" is recognised (not "it exited")
    from tools import cli
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        monkeypatch.setattr(cli, "port_taken", lambda host, port: False)
        proc, why = cli.start_hostsim("127.0.0.1:%d" % port, str(tmp_path / "host"), timeout=30)
    assert proc is None
    assert isinstance(why, cli.PortTaken), why
    assert "127.0.0.1:%d" % port in why


def test_second_simulator_on_the_same_data_refuses_and_names_the_way_out(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "sim.lock", "a+") as held:        # what a running simulator holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        out = subprocess.run(SIM + ["--headless", "--data", str(data), "--host", "off",
                                    "--chip", "off"],
                             cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=60)
    assert out.returncode == 2
    line = _one_line(out.stderr)
    assert "another simulator (pid 4242) is running" in line
    assert "--data %s2" % data in line


@pytest.fixture
def cn_sim(tmp_path):
    """`HANDPOS_CONFIG=config/sim-cn.toml make run`, headless, with its own host simulator
    on a free port."""
    sock = str(tmp_path / "ctl")
    env = dict(os.environ, HANDPOS_CONFIG="config/sim-cn.toml")
    proc = subprocess.Popen(SIM + ["--headless", "--control", sock, "--data", str(tmp_path / "data"),
                                   "--chip", "off", "--pin-iterations", "200",
                                   "--host-port", str(_free_port())],
                            cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 40
    while not os.path.exists(sock):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "simulator did not open its control socket"
        time.sleep(0.05)
    client = ControlClient(sock)
    yield client, proc, tmp_path / "data"
    client.close()
    if proc.poll() is None:
        proc.terminate()
        proc.wait(15)


def _receipt(c, count):
    for _ in range(200):
        receipts = c.call("receipts")["receipts"]
        if len(receipts) >= count:
            return receipts[count - 1]
        time.sleep(0.05)
    raise AssertionError("no receipt %d: %r" % (count, receipts))


def test_china_config_sells_in_cny_and_chinese(cn_sim):
    c, proc, data = cn_sim
    c.wait("欢迎", 15000)                            # first start, in Chinese
    assert c.call("state")["language"] == "zh"
    c.press("ENTER", "1", "ENTER", "2", "5", "8", "0", "ENTER", "2", "5", "8", "0", "ENTER", "ENTER")
    c.wait("操作员号")
    c.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    c.wait("菜单键")
    # cash: 12.50 given 20.00
    c.press("1", "2", "5", "0", "ENTER")
    assert "CNY 12.50" in c.wait("现金")["text"]
    c.press("2", "2", "0", "0", "0", "ENTER")
    assert "7.50" in c.wait("找零")["text"]
    cash = _receipt(c, 1)
    for words in ("汉宝测试便利店", "上海市", "MID 898310000000001", "现金",
                  "CNY 12.50", "20.00", "7.50"):
        assert words in cash, cash
    assert "USD" not in cash
    c.press("ENTER")
    c.wait("打印客户联")                              # the customer's copy? no
    c.press("CANCEL")
    c.wait("菜单键")
    # a swiped card through the host simulator: authorised in CNY (ISO 4217 156)
    c.press("1", "2", "3", "4", "ENTER", "1")
    c.wait("请刷卡")
    c.call("swipe", card="visa_pin")
    c.wait("密码")
    c.press("1", "2", "3", "4", "ENTER")
    c.wait("交易成功", 20000)
    card = _receipt(c, 2)                           # the merchant's copy
    assert "CNY 12.34" in card and "授权码" in card, card
    assert c.call("quit")["ok"]
    assert proc.wait(15) == 0
    with sqlite3.connect(str(data) + "-host/ledger.sqlite") as db:
        assert db.execute("SELECT kind, amount, currency FROM bookings").fetchall() == [
            ("sale", 1234, "156")]
