"""QrLink against a small threaded HTTPS server (http.server + ssl, the hostsim test CA)
scripted per request, and end to end against tools/host/qrsim.py, with the terminal's
side driven by a real Reactor in bounded loops."""
import http.server
import json
import os
import socket
import ssl
import threading
import time

import pytest

from drivers.qrlink import QrLink
from firmware.core.reactor import Reactor
from firmware.payments.qrmsg import QrMessages, nonce_from_bytes
from tools.host.hostsim import ensure_tls, server_context


def pump(reactor, until, ms=3000):
    """Run the loop until until() holds or ms of real time pass; True if it held."""
    deadline = time.monotonic() + ms / 1000.0
    while not until():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        reactor.run_once(min(50, int(left * 1000) + 1))
    return True


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return ensure_tls(str(tmp_path_factory.mktemp("qrlink-tls")))


@pytest.fixture(scope="module")
def other_tls(tmp_path_factory):
    return ensure_tls(str(tmp_path_factory.mktemp("qrlink-other-ca")))


# -- the test server ------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1
            self.conn_no = self.server.connections
        self.served = 0

    def do_POST(self):
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size)
        self.served += 1
        with self.server.lock:
            self.server.log.append((self.conn_no, self.served, self.path, body))
        action = self.server.script(self.conn_no, self.served, self.path) or "ok"
        if action == "ok":
            self.answer(200, {"code": "SUCCESS", "path": self.path,
                              "echo": json.loads(body.decode("utf-8"))})
        elif action == "ok_then_close":       # answer, then close without saying so
            self.answer(200, {"code": "SUCCESS", "path": self.path})
            self.close_connection = True
        elif action == "ok_close_header":     # answer with Connection: close
            text = b'{"code": "SUCCESS"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(text)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(text)
            self.close_connection = True
        elif action == "drop":                # close without answering
            self.close_connection = True
        elif action == "silent":              # hold the connection until the client goes
            self.connection.settimeout(10)
            try:
                self.rfile.read(1)
            except OSError:
                pass
            self.close_connection = True
        elif action == "truncated":
            text = json.dumps({"code": "SUCCESS", "padding": "x" * 80}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text[:len(text) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif action == "html502":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            self.send_response(502)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    def answer(self, status, obj):
        text = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, paths, script=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.ctx = server_context(paths)
        self.script = script or (lambda conn, n, path: "ok")
        self.lock = threading.Lock()
        self.connections = 0
        self.log = []
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def address(self):
        return self.server_address[:2]

    def finish_request(self, request, client_address):
        # the TLS handshake in the connection's own thread, so a client that fails it
        # (or never makes it) does not hold up the accept loop
        try:
            request.settimeout(5)
            tls_sock = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls_sock, client_address)
        finally:
            try:
                tls_sock.close()
            except OSError:
                pass

    def stop(self):
        self.shutdown()
        self.server_close()


@pytest.fixture
def server_factory(tls):
    made = []

    def make(script=None, paths=None):
        s = Server(paths or tls, script)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


class Terminal:
    def __init__(self, address, ca_file, **kw):
        self.reactor = Reactor()
        self.links = []
        self.untrusted = []
        self.link = QrLink(self.reactor, address, ca_file, on_link=self.links.append,
                           on_untrusted=lambda kind, why: self.untrusted.append((kind, why)),
                           **kw)
        self.results = []

    def send(self, op="query", body=None, timeout_ms=3000):
        slot = []
        self.results.append(slot)
        self.link.request(op, body if body is not None else {"n": len(self.results)},
                          timeout_ms, slot.append)
        return slot

    def wait(self, slot, ms=3000):
        assert pump(self.reactor, lambda: slot, ms), "no result in %d ms" % ms
        return slot[0]

    def close(self):
        self.link.close()
        self.reactor.close()


@pytest.fixture
def terminals():
    made = []

    def make(*args, **kw):
        t = Terminal(*args, **kw)
        made.append(t)
        return t
    yield make
    for t in made:
        t.close()


# -- the cases ---------------------------------------------------------------------------

def test_success_and_keep_alive_reuse(server_factory, terminals, tls):
    server = server_factory()
    term = terminals(server.address, tls["ca"])
    for i in range(3):
        result = term.wait(term.send("pay", {"i": i, "body": "\u5496\u5561"}))
        assert result["kind"] == "response" and result["status"] == 200
        assert result["json"]["echo"] == {"i": i, "body": "\u5496\u5561"}
        assert result["json"]["path"] == "/v1/pay"
    assert server.connections == 1 and term.link.connections == 1
    assert term.links == ["up"]


def test_queued_requests_go_one_after_the_other(server_factory, terminals, tls):
    server = server_factory()
    term = terminals(server.address, tls["ca"])
    slots = [term.send("query", {"i": i}) for i in range(3)]
    assert all(not s for s in slots)               # never answered inside request()
    for i, slot in enumerate(slots):
        assert term.wait(slot)["json"]["echo"] == {"i": i}
    assert [entry[1] for entry in server.log] == [1, 2, 3]
    assert server.connections == 1


def test_server_closes_between_requests(server_factory, terminals, tls):
    server = server_factory(lambda conn, n, path: "ok_then_close")
    term = terminals(server.address, tls["ca"])
    assert term.wait(term.send())["status"] == 200
    pump(term.reactor, lambda: False, 200)          # the close arrives while idle
    assert term.wait(term.send())["status"] == 200
    # and when the request is made before the loop has seen the close
    assert term.wait(term.send())["status"] == 200
    time.sleep(0.2)
    assert term.wait(term.send())["status"] == 200
    assert server.connections == 4 and term.link.connections == 4
    assert term.links == ["up"]                     # a kept connection closing is no failure


def test_connection_close_header_and_idle_close(server_factory, terminals, tls):
    server = server_factory(lambda conn, n, path: "ok_close_header" if conn == 1 else "ok")
    term = terminals(server.address, tls["ca"], idle_close_ms=200)
    assert term.wait(term.send())["json"] == {"code": "SUCCESS"}
    assert term.link.phase == "idle"                # closed at once, as the server said
    assert term.wait(term.send())["status"] == 200
    assert term.link.phase == "open"
    assert pump(term.reactor, lambda: term.link.phase == "idle", 1000)   # idle_close_ms
    assert term.wait(term.send())["status"] == 200
    assert server.connections == 3 and term.links == ["up"]


def test_a_queued_request_times_out_unsent(server_factory, terminals, tls):
    server = server_factory(lambda conn, n, path: "silent" if n == 1 else "ok")
    term = terminals(server.address, tls["ca"])
    first = term.send("pay", timeout_ms=600)
    second = term.send("query", timeout_ms=300)
    result = term.wait(second)
    assert result["kind"] == "timeout" and result["sent"] is False
    assert "waited behind" in result["reason"]
    assert term.wait(first)["sent"] is True
    assert [p for _, _, p, _ in server.log] == ["/v1/pay"]


def test_server_drops_a_kept_connection_as_the_request_arrives(server_factory, terminals, tls):
    # the race: the request went out on a kept connection the server was closing
    server = server_factory(lambda conn, n, path: "drop" if (conn, n) == (1, 2) else "ok")
    term = terminals(server.address, tls["ca"])
    assert term.wait(term.send("pay", {"i": 1}))["status"] == 200
    result = term.wait(term.send("pay", {"i": 2}))
    assert result["kind"] == "response" and result["json"]["echo"] == {"i": 2}
    # the same bytes went twice (same nonce: the acquirer would answer REPLAY to a copy
    # it had acted on), once on each connection
    assert [(c, n) for c, n, _, _ in server.log] == [(1, 1), (1, 2), (2, 1)]
    assert server.log[1][3] == server.log[2][3]


def test_a_fresh_connection_dropped_without_an_answer_is_an_error(server_factory, terminals,
                                                                  tls):
    server = server_factory(lambda conn, n, path: "drop")
    term = terminals(server.address, tls["ca"])
    result = term.wait(term.send("pay"))
    assert result["kind"] == "error" and result["sent"] is True
    assert result["cause"] == "closed"
    assert len(server.log) == 1                     # not resent: nothing was kept
    assert term.links == ["up", "down"]


def test_timeout_after_sending(server_factory, terminals, tls):
    server = server_factory(lambda conn, n, path: "silent" if n == 1 and conn == 1 else "ok")
    term = terminals(server.address, tls["ca"])
    started = time.monotonic()
    result = term.wait(term.send("pay", timeout_ms=400))
    assert 0.35 < time.monotonic() - started < 2
    assert result == {"kind": "timeout", "sent": True, "cause": "timeout",
                      "reason": result["reason"]}
    assert "unknown" in result["reason"]
    # the next request gets a new connection (the old one may still carry an answer)
    assert term.wait(term.send("query"))["status"] == 200
    assert server.connections == 2
    assert "down" not in term.links


def test_timeout_before_sending(terminals, tls):
    # a listener that completes TCP connects but never speaks TLS
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(4)
    try:
        term = terminals(mute.getsockname(), tls["ca"], connect_timeout_ms=5000)
        first = term.send("pay", timeout_ms=300)
        second = term.send("query", timeout_ms=400)
        result = term.wait(first)
        assert result["kind"] == "timeout" and result["sent"] is False
        assert result["reason"].startswith("not sent")
        result = term.wait(second)
        assert result["kind"] == "timeout" and result["sent"] is False
    finally:
        mute.close()


def test_connect_timeout_fails_every_request_unsent(terminals, tls):
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(4)
    try:
        term = terminals(mute.getsockname(), tls["ca"], connect_timeout_ms=300)
        slots = [term.send("pay", timeout_ms=3000), term.send("query", timeout_ms=3000)]
        for slot in slots:
            result = term.wait(slot)
            assert result["kind"] == "error" and result["sent"] is False
            assert result["cause"] == "connect_timeout"
        assert term.links == ["down"]
    finally:
        mute.close()


def test_truncated_body_is_an_error_after_sending(server_factory, terminals, tls):
    server = server_factory(lambda conn, n, path: "truncated")
    term = terminals(server.address, tls["ca"])
    result = term.wait(term.send("pay"))
    assert result["kind"] == "error" and result["sent"] is True
    assert result["cause"] == "truncated", result
    assert "cut short" in result["reason"]


def test_html_502_is_a_response_without_json(server_factory, terminals, tls):
    server = server_factory(lambda conn, n, path: "html502")
    term = terminals(server.address, tls["ca"])
    result = term.wait(term.send("pay"))
    assert result["kind"] == "response" and result["status"] == 502
    assert result["json"] is None and b"Bad Gateway" in result["body"]
    assert term.wait(term.send("query"))["status"] == 502      # the connection is kept
    assert server.connections == 1


def test_certificate_from_another_ca_is_untrusted(server_factory, terminals, tls, other_tls):
    server = server_factory(paths=other_tls)
    term = terminals(server.address, tls["ca"])
    result = term.wait(term.send("pay"))
    assert result["kind"] == "error" and result["sent"] is False
    assert result["cause"] == "untrusted" and result["untrusted"] == "ca"
    assert [k for k, _ in term.untrusted] == ["ca"]
    assert "not trusted" in result["reason"]
    assert server.log == []
    assert term.links == ["down"]


def test_certificate_for_another_name_is_untrusted(server_factory, terminals, tls):
    server = server_factory()
    term = terminals(server.address, tls["ca"], server_hostname="qr.acquirer.example")
    result = term.wait(term.send("pay"))
    assert result["cause"] == "untrusted" and result["untrusted"] == "name"
    assert "qr.acquirer.example" in result["reason"]


def test_connection_refused(terminals, tls):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    address = probe.getsockname()
    probe.close()
    term = terminals(address, tls["ca"])
    slots = [term.send("pay"), term.send("query")]
    for slot in slots:
        result = term.wait(slot)
        assert result["kind"] == "error" and result["sent"] is False
        assert result["cause"] == "refused" and "refused" in result["reason"]
    assert term.links == ["down"]


def test_unbuildable_requests_are_refused_without_touching_the_link(terminals, tls):
    term = terminals(("127.0.0.1", 9), tls["ca"])
    for op, body in (("steal", {}), ("pay", [1]), ("pay", {"x": float("nan")}),
                     ("pay", {"x": object()})):
        result = term.wait(term.send(op, body))
        assert result["kind"] == "error" and result["cause"] == "unbuildable"
        assert result["sent"] is False
    assert term.links == [] and term.link.phase == "idle"


def test_a_host_name_is_looked_up_off_the_loop(server_factory, terminals, tls):
    server = server_factory()
    term = terminals(("localhost", server.address[1]), tls["ca"])
    result = term.wait(term.send("query"))
    assert result["kind"] == "response" and result["status"] == 200, result


def test_needs_a_ca_file():
    with pytest.raises(ValueError):
        QrLink(Reactor(), ("127.0.0.1", 1), None)


# -- end to end against the QR acquirer simulator ------------------------------------------

def _qrsim():
    try:
        from tools.host import qrsim
    except Exception as exc:       # noqa: BLE001 - any import failure means "not there"
        return None, "tools/host/qrsim.py does not import: %s" % exc
    if not hasattr(qrsim, "QrSim"):
        return None, "tools/host/qrsim.py has no QrSim"
    return qrsim, None


def test_pay_and_query_against_qrsim(tmp_path, terminals):
    qrsim, why = _qrsim()
    if qrsim is None:
        pytest.skip(why)
    sim = qrsim.QrSim(str(tmp_path / "qrsim"), slow_ms=2000, wait_ms=500)
    sim.start()
    try:
        term = terminals(sim.address, sim.ca_file)
        msgs = QrMessages("100000000001", "HP000001", qrsim.DEFAULT_KEY,
                          lambda: nonce_from_bytes(os.urandom(16)), time.time)
        order = "HP000001-%06d" % (int(time.time()) % 1000000)
        pay = msgs.pay(order, "134567890123456789", 1250, body="\u5496\u5561 x1")
        result = term.wait(term.send("pay", pay, timeout_ms=5000), 6000)
        assert result["kind"] == "response" and result["status"] == 200, result
        assert msgs.check_response(pay, result["json"]) is None
        assert result["json"]["code"] == "SUCCESS" and result["json"]["result"] == "SUCCESS"
        assert result["json"]["channel"] == "wechat"

        query = msgs.query(order)
        result = term.wait(term.send("query", query, timeout_ms=5000), 6000)
        assert msgs.check_response(query, result["json"]) is None
        assert result["json"]["trade_state"] == "SUCCESS"
        assert result["json"]["total_fee"] == 1250
        assert term.link.connections == 1                   # kept alive between the two

        # the simulator's .98: the answer cut off halfway -> unknown, then query
        cut = msgs.pay(order + "T", "134567890123456780", 1298)
        result = term.wait(term.send("pay", cut, timeout_ms=5000), 6000)
        assert result["kind"] == "error" and result["sent"] is True
        assert result["cause"] == "truncated"
        query = msgs.query(order + "T")
        result = term.wait(term.send("query", query, timeout_ms=5000), 6000)
        assert msgs.check_response(query, result["json"]) is None
        assert result["json"]["trade_state"] == "SUCCESS"
        # a signed answer that does not match: another order's
        assert msgs.check_response(msgs.query(order), result["json"]) == "wrong_order"
    finally:
        sim.stop()


def test_a_network_that_comes_back_is_used_at_once_not_after_a_stuck_connect(
        server_factory, terminals, tls):
    """The network swallows packets (a fault proxy that black-holes: the TLS handshake
    never ends) while a request tries to connect; the request gives up, not sent. The
    network comes back: the next request makes a fresh connection and is answered at
    once, not after the stuck attempt's connect timeout (found by qr_chaos)."""
    from tools.host.faultproxy import FaultProxy
    server = server_factory()
    proxy = FaultProxy(0, server.address[1])
    proxy.start()
    try:
        proxy.set("drop")
        term = terminals(("127.0.0.1", proxy.port), tls["ca"], connect_timeout_ms=60000)
        result = term.wait(term.send("pay", timeout_ms=500))
        assert result["kind"] == "timeout" and result["sent"] is False
        term.link.probe()                                   # an attempt with no request on it
        pump(term.reactor, lambda: False, 400)
        proxy.set("pass")
        time.sleep(3.2)                                     # the probe's attempt goes stale
        # answered well before the stuck attempt's 60 s connect timeout would end it
        result = term.wait(term.send("query", timeout_ms=20000), ms=20000)
        assert result["kind"] == "response" and result["status"] == 200, result
        assert term.link.connections == 1                   # one fresh connection did it
    finally:
        proxy.stop()
