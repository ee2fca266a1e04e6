"""The fault proxy between terminal and host simulator: every fault does what it says,
faults switch at run time, the control socket drives it, stop() is bounded."""
import errno
import os
import socket
import time

import pytest

from drivers.iso8583_spec import HostMessageError, decode, encode
from tools.host.faultproxy import ControlClient, FaultProxy, normalise
from tools.host.hostsim import HostSim

TID = "HP000001"
WAIT = 3.0          # the longest any single receive may take in these tests


@pytest.fixture
def host(tmp_path):
    sim = HostSim(str(tmp_path / "host"), tls=False, slow_ms=100)
    _, port = sim.start("127.0.0.1", 0)
    yield port
    sim.stop()


@pytest.fixture
def proxy(host, tmp_path):
    fp = FaultProxy(0, host, control_path=str(tmp_path / "fp.sock"))
    fp.start()
    yield fp
    fp.stop()


def echo(stan):
    """A framed 0800 echo test, through the real encoder."""
    raw = encode({"t": "0800", "7": "1121093015", "11": "%06d" % stan, "41": TID, "70": "301"})
    return len(raw).to_bytes(2, "big") + raw


def connect(proxy, timeout=WAIT):
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def recv_frame(sock):
    head = recv_exactly(sock, 2)
    return head + recv_exactly(sock, int.from_bytes(head, "big"))


def reply_of(frame):
    return decode(frame[2:])


def exchange(sock, stan):
    sock.sendall(echo(stan))
    frame = recv_frame(sock)
    msg = reply_of(frame)
    assert msg["t"] == "0810" and msg["11"] == "%06d" % stan and msg["39"] == "00"
    return frame


def test_pass_through(proxy):
    with connect(proxy) as s:
        exchange(s, 1)
        exchange(s, 2)
    stats = proxy.stats()
    assert stats["connections"] == 1
    assert stats["frames_up"] == 2 and stats["frames_down"] == 2


def test_split_delivers_the_frame_in_two_receives(proxy):
    proxy.set("split", pause_ms=300)
    with connect(proxy) as s:
        s.sendall(echo(3))
        first = s.recv(65536)
        assert 0 < len(first) < len(echo(3))         # not the whole reply
        second = s.recv(65536)
        frame = first + second
        assert len(frame) == 2 + int.from_bytes(frame[:2], "big")
        assert reply_of(frame)["11"] == "000003"
    assert proxy.stats()["faults"]["split"] == 1


def test_split_at_a_chosen_offset(proxy):
    proxy.set("split", at=1, pause_ms=200)             # inside the length prefix
    with connect(proxy) as s:
        s.sendall(echo(4))
        first = s.recv(65536)
        assert len(first) == 1
        head = first + recv_exactly(s, 1)
        body = recv_exactly(s, int.from_bytes(head, "big"))
        assert decode(body)["11"] == "000004"


def test_merge_sends_held_frames_in_one_write(proxy):
    proxy.set("merge", count=2, hold_ms=2000)
    with connect(proxy) as s:
        s.sendall(echo(5) + echo(6))
        data = s.recv(65536)
        first = 2 + int.from_bytes(data[:2], "big")
        assert len(data) > first                       # both frames came in one receive
        stans = sorted(reply_of(f)["11"] for f in (data[:first], data[first:]))
        assert stans == ["000005", "000006"]


def test_merge_flushes_a_lone_frame_after_hold_ms(proxy):
    proxy.set("merge", count=3, hold_ms=200)
    with connect(proxy) as s:
        start = time.monotonic()
        exchange(s, 7)
        assert 0.15 <= time.monotonic() - start < WAIT


def test_duplicate_delivers_the_frame_twice(proxy):
    proxy.set("duplicate")
    with connect(proxy) as s:
        one = exchange(s, 8)
        assert recv_frame(s) == one


def test_garble_changes_body_bytes(proxy):
    with connect(proxy) as s:
        clean = exchange(s, 9)
        proxy.set("garble", offset=0, length=2)
        s.sendall(echo(9))                             # the host repeats its answer
        garbled = recv_frame(s)
    assert garbled[:2] == clean[:2]                    # the length prefix is left alone
    assert garbled != clean and garbled[4:] == clean[4:]
    assert garbled[2:4] == bytes(b ^ 0xFF for b in clean[2:4])
    with pytest.raises(HostMessageError):
        reply_of(garbled)


def test_reset_existing_and_new_connections(proxy):
    with connect(proxy) as s:
        exchange(s, 10)
        proxy.set("reset")
        with pytest.raises(ConnectionResetError):
            s.sendall(echo(11))
            s.recv(65536)
    # a new connection is reset as soon as the proxy takes it: on the connect itself
    # when the RST wins the race, else on the first exchange
    with pytest.raises(ConnectionResetError):
        with connect(proxy) as s:
            s.sendall(echo(12))
            s.recv(65536)
    assert proxy.stats()["faults"]["reset"] >= 2


def test_drop_black_holes_requests(proxy):
    proxy.set("drop")
    with connect(proxy, timeout=0.5) as s:
        s.sendall(echo(13))
        with pytest.raises(socket.timeout):
            s.recv(65536)
    proxy.set("pass")
    with connect(proxy) as s:
        exchange(s, 14)


def test_delay_adds_at_least_the_delay(proxy):
    proxy.set("delay", down_ms=300)
    with connect(proxy) as s:
        start = time.monotonic()
        exchange(s, 15)
        assert time.monotonic() - start >= 0.3
    proxy.set("delay_ms", ms=150)                      # both directions
    with connect(proxy) as s:
        start = time.monotonic()
        exchange(s, 16)
        assert time.monotonic() - start >= 0.3


def test_half_open_stops_replies_but_keeps_the_connection(proxy):
    with connect(proxy, timeout=0.5) as s:
        exchange(s, 17)
        proxy.set("half_open", direction="down")
        s.sendall(echo(18))
        with pytest.raises(socket.timeout):
            s.recv(65536)
        proxy.set("pass")
        exchange(s, 19)                                # the same connection still works


def test_refuse_gives_connection_refused_and_listens_again(proxy):
    proxy.set("refuse")
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)
    proxy.set("pass")
    with connect(proxy) as s:
        exchange(s, 20)


def test_switching_faults_on_one_connection(proxy):
    with connect(proxy) as s:
        exchange(s, 21)
        proxy.set("duplicate", times=1)                # one application, then pass again
        one = exchange(s, 22)
        assert recv_frame(s) == one
        exchange(s, 23)
        assert proxy.get()[0] == "pass"
        proxy.set("garble")
        s.sendall(echo(24))
        with pytest.raises(HostMessageError):
            reply_of(recv_frame(s))
        proxy.set("pass")
        exchange(s, 25)


def test_control_socket(proxy):
    client = ControlClient(proxy.control_path)
    try:
        assert client.set("duplicate")["fault"] == "duplicate"
        with connect(proxy) as s:
            one = exchange(s, 26)
            assert recv_frame(s) == one
        assert client.call("get")["fault"] == "duplicate"
        assert client.call("set", fault="nonsense")["ok"] is False
        assert client.call("bogus")["ok"] is False
        assert client.set("pass")["fault"] == "pass"
        stats = client.stats()
        assert stats["faults"]["duplicate"] == 1 and stats["connections"] == 1
    finally:
        client.close()


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        normalise("split", {"pause_ms": -1})
    with pytest.raises(ValueError):
        normalise("merge", {"count": 1000})
    with pytest.raises(ValueError):
        normalise("half_open", {"direction": "sideways"})
    with pytest.raises(ValueError):
        normalise("drop", {"ms": 5})
    with pytest.raises(ValueError):
        normalise("explode", {})
    assert normalise("delay_ms", {"ms": 5}) == ("delay", {"up_ms": 5, "down_ms": 5})


def test_stop_is_bounded_with_connections_open(host):
    fp = FaultProxy(0, host)
    port = fp.start()
    live = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    exchange(live, 27)
    fp.set("drop")
    held = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    held.sendall(echo(28))
    start = time.monotonic()
    fp.stop()
    assert time.monotonic() - start < 3
    try:
        for s in (live, held):
            s.settimeout(WAIT)
            with pytest.raises((ConnectionError, OSError)) as info:
                if s.recv(65536) == b"":
                    raise ConnectionResetError("closed")
    finally:
        live.close()
        held.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT)


def test_tls_passes_through_as_raw_bytes(tmp_path):
    import ssl
    sim = HostSim(str(tmp_path / "tlshost"), tls=True)
    _, port = sim.start("127.0.0.1", 0)
    fp = FaultProxy(0, port)
    try:
        fp.start()
        fp.set("duplicate")                            # a frame fault: skipped over TLS
        ctx = ssl.create_default_context(cafile=sim.ca_file)
        with ctx.wrap_socket(connect(fp), server_hostname="127.0.0.1") as s:
            exchange(s, 29)
        stats = fp.stats()
        assert stats["chunks_up"] > 0 and stats["frames_up"] == 0
        assert stats["skipped"] > 0 and "duplicate" not in stats["faults"]
    finally:
        fp.stop()
        sim.stop()
