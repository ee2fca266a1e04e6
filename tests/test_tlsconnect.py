"""TlsConnector (drivers/tlsconnect.py) on its own: real sockets on loopback, a real
Reactor in bounded loops, the test CA of the host simulator (tools/host/hostsim.py
ensure_tls). Each attempt ends in on_open or on_fail with the reason and cause the
links pass on (tests/test_hostlink.py, tests/test_qrlink.py test them through the links).
"""
import socket
import ssl
import threading
import time

import pytest

from drivers.tlsconnect import HANDSHAKE, OPEN, TlsConnector, make_client_context
from firmware.core.reactor import Reactor
from tools.host.hostsim import ensure_tls, server_context


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Two test CAs, each with a server certificate for localhost and 127.0.0.1."""
    return {"ours": ensure_tls(str(tmp_path_factory.mktemp("ours"))),
            "theirs": ensure_tls(str(tmp_path_factory.mktemp("theirs")))}


class Server:
    """A loopback listener. ctx: one connection in a thread of its own, TLS with ctx
    (the handshake, then an echo of what arrives); silent: nothing accepted or said,
    so the TCP connect completes in the backlog and the handshake waits forever."""

    def __init__(self, ctx=None, silent=False):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.errors = []
        self.thread = None
        if not silent:
            self.thread = threading.Thread(target=self._serve, args=(ctx,), daemon=True)
            self.thread.start()

    def _serve(self, ctx):
        try:
            conn, _ = self.sock.accept()
        except OSError as exc:
            self.errors.append(exc)
            return
        conn.settimeout(5)
        try:
            if ctx is not None:
                conn = ctx.wrap_socket(conn, server_side=True)
            conn.sendall(conn.recv(64))
        except (ssl.SSLError, OSError) as exc:
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self):
        self.sock.close()
        if self.thread is not None:
            self.thread.join(5)


class Attempt:
    """One TlsConnector on a reactor of its own, and how it ended."""

    def __init__(self, port, ca=None, host="127.0.0.1", timeout_ms=3000, **kw):
        self.reactor = Reactor()
        self.opened = []
        self.failed = []
        ctx = make_client_context(ca) if ca else None
        self.connector = TlsConnector(self.reactor, host, port, ctx, None, timeout_ms,
                                      self.opened.append,
                                      lambda *why: self.failed.append(why), **kw)

    def run(self, ms=3000, until=None):
        until = until or (lambda: self.opened or self.failed)
        deadline = time.monotonic() + ms / 1000.0
        while not until() and time.monotonic() < deadline:
            self.reactor.run_once(50)
        return until()

    def close(self):
        self.connector.cancel()
        for sock in self.opened:
            sock.close()
        self.reactor.close()


@pytest.fixture
def made():
    """made(Server or Attempt, ...): one, closed after the test."""
    things = []

    def make(cls, *args, **kw):
        things.append(cls(*args, **kw))
        return things[-1]
    yield make
    for thing in reversed(things):
        thing.close()


def _closed_port():
    """A loopback port bound, with nobody listening: a connect there is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def test_a_refused_connect_is_named_in_the_peers_words(made):
    holder, port = _closed_port()
    try:
        qr = made(Attempt, port, peer="the QR acquirer")
        host = made(Attempt, port, peer="host",
                    words={"refused": "{peer} {where} refused the connection: is the host "
                                      "service running?"})
        for a in (qr, host):
            a.connector.start()
            assert a.run()
    finally:
        holder.close()
    assert qr.failed == [("the QR acquirer 127.0.0.1:%d refused the connection: is the "
                          "service running?" % port, "refused", None)]
    assert host.failed == [("host 127.0.0.1:%d refused the connection: is the host service "
                            "running?" % port, "refused", None)]
    assert qr.opened == [] and qr.connector.phase == "idle"


def test_no_answer_within_the_timeout_is_a_connect_timeout(made, pki):
    server = made(Server, silent=True)      # TCP connects (the backlog), TLS never answers
    a = made(Attempt, server.port, pki["ours"]["ca"], timeout_ms=1000)
    a.connector.start()
    assert a.run(until=lambda: a.connector.phase == HANDSHAKE)
    assert a.run(3000)
    assert a.failed == [("the host 127.0.0.1:%d did not answer within 1 s" % server.port,
                         "connect_timeout", None)]


def test_a_host_name_is_looked_up_off_the_loop(made, monkeypatch):
    looked_up_in = []

    def getaddrinfo(host, port, *args):
        if len(args) >= 4 and args[3] & socket.AI_NUMERICHOST:
            raise socket.gaierror(socket.EAI_NONAME, "not numeric")
        looked_up_in.append(threading.current_thread().name)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    a = made(Attempt, 443, host="acquirer.test", name="qrlink")
    a.connector.start()
    assert a.failed == []                   # not from inside start(): the lookup waits
    assert a.run()
    assert looked_up_in == ["qrlink-dns"]
    assert a.failed == [("cannot find the host acquirer.test: check the host name and the "
                         "network", "dns", None)]


def test_a_good_tls_server_opens_a_socket_that_is_the_callers(made, pki):
    server = made(Server, server_context(pki["ours"]))
    a = made(Attempt, server.port, pki["ours"]["ca"])
    a.connector.start()
    assert a.run()
    assert a.failed == [] and a.connector.phase == OPEN
    [sock] = a.opened
    assert isinstance(sock, ssl.SSLSocket) and not sock.getblocking()
    assert not a.reactor.watching(sock)     # handed over: the caller watches it now
    sock.settimeout(5)                      # (the test's own socket: it may block)
    sock.sendall(b"ping")
    assert sock.recv(4) == b"ping"


def test_plain_tcp_opens_without_a_handshake(made):
    server = made(Server)
    a = made(Attempt, server.port)
    a.connector.start()
    assert a.run()
    [sock] = a.opened
    assert not isinstance(sock, ssl.SSLSocket)


def test_a_certificate_from_another_ca_is_untrusted(made, pki):
    server = made(Server, server_context(pki["theirs"]))
    a = made(Attempt, server.port, pki["ours"]["ca"])
    a.connector.start()
    assert a.run()
    assert a.opened == []
    [(reason, cause, kind)] = a.failed
    assert (cause, kind) == ("untrusted", "ca")
    assert reason.startswith("TLS: the host's certificate is not trusted (")
    assert reason.endswith("it is not from the pinned CA: check the CA file, or someone is "
                           "in the middle")


def test_cancel_ends_the_attempt_quietly(made, pki):
    server = made(Server, silent=True)
    a = made(Attempt, server.port, pki["ours"]["ca"], timeout_ms=300)
    a.connector.start()
    assert a.run(until=lambda: a.connector.phase == HANDSHAKE)
    a.connector.cancel()
    assert not a.run(600)                   # past the timeout: nothing called
    assert a.connector.phase == "idle"
