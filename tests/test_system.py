"""The operating-system side: battery gauge, clock sync, systemd notify."""
import socket

from drivers.sdnotify import Notifier
from drivers.system import LinuxSystem, kernel_clock_synced, read_battery


def test_battery_read_from_power_supply_tree(tmp_path):
    ac = tmp_path / "AC"
    ac.mkdir()
    (ac / "type").write_text("Mains\n")
    assert read_battery(str(tmp_path)) is None
    bat = tmp_path / "BAT0"
    bat.mkdir()
    (bat / "type").write_text("Battery\n")
    (bat / "capacity").write_text("87\n")
    (bat / "status").write_text("Charging\n")
    assert read_battery(str(tmp_path)) == (87, True)
    assert LinuxSystem(power_supply_root=str(tmp_path)).battery() == (87, True)


def test_clock_sync_answer_is_a_boolean_and_can_be_pinned():
    assert kernel_clock_synced() in (True, False)
    assert LinuxSystem(synced=True).clock_synced() is True
    assert LinuxSystem(synced=False).clock_synced() is False


def test_notifier_speaks_the_systemd_protocol(tmp_path):
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})
    assert n.interval_ms() == 5000
    n.ready()
    n.ping()
    assert server.recv(100) == b"READY=1"
    assert server.recv(100) == b"WATCHDOG=1"
    server.close()


def test_notifier_without_systemd_is_silent():
    n = Notifier({})
    assert n.interval_ms() == 0
    n.ready()
    n.ping()
