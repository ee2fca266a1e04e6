"""Network settings (issue 17): drivers/network.py running nmcli as a child process the
reactor watches, with tools/sim/fake_nmcli.py (a real program, a JSON state file) on its
PATH as `nmcli`; and the technician's Settings > Network on the simulated terminal.
Bad input is refused with one line and nothing reaches nmcli."""
import json
import os

import pytest

from firmware.flows import network as netflow
from tools.sim import fake_nmcli

TECH = ("9", "4826")


# -- the driver over the fake nmcli, real processes --------------------------------------
@pytest.fixture
def fake(tmp_path):
    from drivers.network import NmcliNetwork, NmcliRunner, nmcli_env
    from firmware.core.reactor import Reactor
    state = str(tmp_path / "nmcli.json")
    fake_nmcli.make_state(state)
    folder = fake_nmcli.install(str(tmp_path / "bin"), state)
    reactor = Reactor()
    runner = NmcliRunner(reactor, "nmcli", nmcli_env(folder))
    net = NmcliNetwork(reactor, runner)
    net.state = state
    net.answers = []

    def wait(n=1, ms=15000):
        import time
        end = time.monotonic() + ms / 1000
        while len(net.answers) < n and time.monotonic() < end:
            reactor.run_once(50)
        assert len(net.answers) >= n, "no answer from the driver in %d ms" % ms
        return net.answers[n - 1]
    net.wait = wait
    yield net
    runner.close()
    reactor.close()


def _runs(state):
    return fake_nmcli.load(state)["runs"]


def test_status_reads_the_terse_output_of_the_fake(fake):
    fake.status(lambda st, err: fake.answers.append((st, err)))
    st, err = fake.wait()
    assert err is None
    assert st["active"]["device"] == "wlan0" and st["active"]["connection"] == "ShopNet"
    assert st["address"] == "192.168.8.23/24" and st["gateway"] == "192.168.8.1"
    assert st["dns"] == ["192.168.8.1"] and st["method"] == "auto"
    assert [d["device"] for d in st["devices"]] == ["wlan0", "eth0"]     # lo left out
    # every run terse with its fields named
    assert all(r[1:3] == ["-t", "-f"] for r in _runs(fake.state))


def test_the_loop_is_not_blocked_while_nmcli_runs(fake):
    """The child's pipes are watched: the loop's timers run while nmcli works."""
    ticks = []

    def tick():
        ticks.append(1)
        if not fake.answers:
            fake.reactor.call_later(1, tick)
    fake.reactor.call_later(1, tick)
    fake.scan(lambda nets, err: fake.answers.append((nets, err)))
    nets, err = fake.wait()
    assert err is None and len(ticks) > 3
    # one row a name, strongest first; the ':' in a name came escaped and is whole again
    assert [n["ssid"] for n in nets] == ["ShopNet", "Cafe:Guest", "Market", "OpenAir"]
    assert nets[0]["in_use"] and nets[1]["security"] == "WPA1 WPA2"


def test_join_with_a_wrong_then_the_right_passphrase(fake):
    fake.join("Market", "wrong-pass", lambda ok, err: fake.answers.append((ok, err)))
    ok, err = fake.wait()
    assert not ok and "Secrets were required" in err and not err.startswith("Error")
    fake.join("Market", "stall-2024", lambda ok, err: fake.answers.append((ok, err)))
    ok, err = fake.wait(2)
    assert ok and err is None
    doc = fake_nmcli.load(fake.state)
    assert doc["devices"]["wlan0"]["connection"] == "Market"
    # the fake's log and the driver's own keep no passphrase
    assert "stall-2024" not in json.dumps(doc["runs"]) and "stall-2024" not in str(fake.runner.log)


def test_static_then_dhcp(fake):
    cfg = {"method": "manual", "address": "10.1.2.50", "prefix": 24, "gateway": "10.1.2.1",
           "dns": "10.1.2.1"}
    fake.set_ipv4(cfg, lambda ok, err: fake.answers.append((ok, err)))
    assert fake.wait() == (True, None)
    fake.status(lambda st, err: fake.answers.append((st, err)))
    st, _ = fake.wait(2)
    assert st["address"] == "10.1.2.50/24" and st["method"] == "manual"
    modify = [r for r in _runs(fake.state) if "modify" in r][-1]
    assert modify[1:4] == ["connection", "modify", "ShopNet"] and "ipv4.addresses" in modify
    fake.set_ipv4({"method": "auto"}, lambda ok, err: fake.answers.append((ok, err)))
    assert fake.wait(3) == (True, None)
    assert fake_nmcli.load(fake.state)["connections"]["ShopNet"]["ipv4"]["method"] == "auto"


def test_no_nmcli_is_said_not_raised(tmp_path):
    from drivers.network import NmcliNetwork, NmcliRunner
    from firmware.core.reactor import Reactor
    reactor = Reactor()
    net = NmcliNetwork(reactor, NmcliRunner(reactor, str(tmp_path / "no-such-nmcli")))
    got = []
    net.status(lambda st, err: got.append((st, err)))
    for _ in range(20):
        reactor.run_once(10)
    reactor.close()
    assert got and got[0][0] is None and "NetworkManager installed" in got[0][1]


# -- the checks ---------------------------------------------------------------------------
@pytest.mark.parametrize("address, prefix, gateway, dns, problem", [
    ("192.168.1.50", "24", "192.168.1.1", "192.168.1.1", None),
    ("192.168.1.50", "24", "", "", None),
    ("192.168.1.256", "24", "", "", "net_bad_address"),
    ("192.168.01.5", "24", "", "", "net_bad_address"),
    ("192.168.1", "24", "", "", "net_bad_address"),
    ("127.0.0.5", "8", "", "", "net_bad_address"),
    ("192.168.1.0", "24", "", "", "net_bad_host_part"),
    ("192.168.1.255", "24", "", "", "net_bad_host_part"),
    ("192.168.1.50", "31", "", "", "net_bad_prefix"),
    ("192.168.1.50", "24", "192.168.2.1", "", "net_gw_outside"),
    ("192.168.1.50", "24", "192.168.1.50", "", "net_gw_outside"),
    ("192.168.1.50", "24", "192.168.1.1", "1.1.1", "net_bad_dns"),
])
def test_static_address_checks(address, prefix, gateway, dns, problem):
    assert netflow.check_static(address, prefix, gateway, dns) == problem


def test_port_psk_and_wifi_qr_checks():
    assert netflow.check_port("8583") is None
    assert netflow.check_port("0") == netflow.check_port("65536") == "net_bad_port"
    assert netflow.check_psk("short") == "net_psk_short"
    assert netflow.check_psk("", "") is None                 # an open network
    assert netflow.check_psk("x" * 64) == "net_psk_long"
    assert netflow.parse_wifi_qr(r"WIFI:S:Cafe\:Guest;T:WPA;P:espresso42;;") == {
        "ssid": "Cafe:Guest", "security": "WPA", "psk": "espresso42"}
    assert netflow.parse_wifi_qr("WIFI:S:OpenAir;T:nopass;;")["security"] == ""
    assert netflow.parse_wifi_qr("6901234567892") is None


# -- on the terminal ----------------------------------------------------------------------
def technician(harness, language="en", **kw):
    """A terminal with its supervisor (1, 2580) and technician 9 logged in."""
    h = harness(**kw)
    h.first_supervisor()
    h.term.auth.create(TECH[0], "Technician 9", "technician", TECH[1])
    h.login(*TECH)
    assert h.flow() == ("idle", "idle"), h.text()
    if language != "en":
        h.term.set_language(language)
        h.run(100)
    return h


def open_entry(h, method):
    """The current menu's entry that runs method, by UP/DOWN and ENTER (its number may
    move as menus grow)."""
    f = h.term.current()
    names = [e[1] for e in f.entries()]
    target = names.index(method)
    for _ in range(len(names)):
        if h.term.current().index == target:
            break
        h.press("DOWN")
    return h.press("ENTER")


def to_network(h):
    h.press("MENU")
    open_entry(h, "settings")
    open_entry(h, "network")
    assert h.flow() == ("network", "menu"), h.text()


def nmcli_runs(h):
    return fake_nmcli.load(h.sim.nmcli_state)["runs"]


def wait_state(h, *states, ms=15000):
    h.run(ms, until=lambda: h.flow()[1] in states)
    assert h.flow()[1] in states, (h.flow(), h.text())


@pytest.mark.parametrize("language", ["en", "zh"])
def test_status_on_the_terminal(harness, language):
    h = technician(harness, language=language)
    to_network(h)
    h.press("1")
    wait_state(h, "notice")
    assert "192.168.8.23/24" in h.text()
    assert ("Wi-Fi: connected" if language == "en" else "无线: 已连接") in h.text()
    for _ in range(6):
        h.press("DOWN")


def test_wifi_join_by_multitap_passphrase(harness):
    h = technician(harness)
    to_network(h)
    h.press("2")
    wait_state(h, "wifi_list")
    assert "ShopNet" in h.text()
    h.press("3")                                     # Market (WPA2)
    assert h.flow()[1] == "psk" and "Market" in h.text()
    h.press("1", "2", "3", "ENTER")                  # too short: one line, nothing sent
    assert "At least 8 chars" in h.text() and h.flow()[1] == "psk"
    assert not [r for r in nmcli_runs(h) if "connect" in r]
    h.press("CLEAR")
    # s-t-a-l-l - 2 0 2 4 by multi-tap: a key again within the pause is its next letter
    for key, times in (("7", 4), ("8", 1), ("2", 1), ("5", 3)):
        h.press(*[key] * times)
    h.advance(1500)                                  # the pause: the next l is a new one
    h.press(*["5"] * 3)
    h.press("1", "1")                                # 1: '.', then '-'
    for digit, taps in (("2", 4), ("0", 2), ("2", 4), ("4", 4)):
        h.advance(1500)
        h.press(*[digit] * taps)
    assert h.term.current().psk.value == "stall-2024", h.term.current().psk.value
    h.press("ENTER")
    wait_state(h, "notice", "menu")
    assert "Joined" in h.text() and "Market" in h.text(), h.text()
    assert "No host set" in h.text()                 # tested on the spot: no host to test
    doc = fake_nmcli.load(h.sim.nmcli_state)
    assert doc["devices"]["wlan0"]["connection"] == "Market"
    audit = [r[1] for r in h.term.store.audit_log(20)]
    assert "net_wifi_join" in audit


def test_wifi_join_from_a_scanned_qr_code(harness):
    h = technician(harness)
    to_network(h)
    h.press("2")
    wait_state(h, "wifi_list")
    h.scan("6901234567892")                          # not a Wi-Fi code: said, nothing joined
    assert "Not a Wi-Fi code" in h.text()
    h.scan("WIFI:S:Cafe\\:Guest;T:WPA;P:espresso42;;")
    wait_state(h, "notice")
    assert "Joined" in h.text(), h.text()
    assert fake_nmcli.load(h.sim.nmcli_state)["devices"]["wlan0"]["connection"] == "Cafe:Guest"


def test_wrong_static_address_is_one_line_and_nothing_applied(harness):
    h = technician(harness)
    to_network(h)
    h.press("3", "2")                                # Address > Static
    assert h.flow()[1] == "field"
    h.press(*"192.168.8.300", "ENTER", "2", "4", "ENTER", "ENTER", "ENTER")
    assert h.flow()[1] == "field" and "Bad address" in h.text()
    assert not [r for r in nmcli_runs(h) if "modify" in r]
    # gateway in another subnet
    h.press(*"192.168.8.50", "ENTER", "2", "4", "ENTER", *"192.168.9.1", "ENTER", "ENTER")
    assert "Gateway off subnet" in h.text()
    assert not [r for r in nmcli_runs(h) if "modify" in r]
    # right: applied through nmcli, then tested
    h.press(*"192.168.8.50", "ENTER", "2", "4", "ENTER", *"192.168.8.1", "ENTER", "ENTER")
    wait_state(h, "notice")
    assert "Applied" in h.text(), h.text()
    conn = fake_nmcli.load(h.sim.nmcli_state)["connections"]["ShopNet"]
    assert conn["ipv4"]["method"] == "manual" and conn["ipv4"]["address"] == "192.168.8.50/24"


def test_host_port_out_of_range_then_saved_after_its_test(harness, hostsim):
    h = technician(harness)
    to_network(h)
    h.press("4")
    host, port = hostsim.address.rsplit(":", 1)
    h.press(*host, "ENTER", "7", "0", "0", "0", "0", "ENTER")
    assert "Port 1-65535" in h.text() and h.flow()[1] == "field"
    assert h.term.store.get_setting("host.address") is None
    h.press(*host, "ENTER", *port, "ENTER")
    wait_state(h, "confirm")
    # a plain-TCP lab terminal has no CA: the TLS host answers TCP; the test says so
    assert "Host test" in h.text()
    h.press("ENTER")
    assert h.term.store.get_setting("host.address") == "%s:%s" % (host, port)
    assert h.term.config["host"]["address"] == "%s:%s" % (host, port)
    assert "Host saved" in h.text()
