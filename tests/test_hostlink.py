"""HostLink against a real host simulator over TLS, and against a tiny raw server for
the framing cases, with the terminal's side driven by a real Reactor in bounded loops."""
import socket
import threading
import time

import pytest

from drivers.hostlink import MAX_FRAME, HostLink, Stan, frame, make_client_context, make_rrn, \
    transmission_time
from drivers.iso8583_spec import decode, encode, response_mti
from firmware.core.reactor import Reactor
from tools.host.hostsim import HostSim, ensure_tls

TID = "HP000001"
PAN = "4111111111111111"
SLOW_MS = 400

_stan = Stan()


def sale(amount, stan=None, tid=TID, mti="0200"):
    return {"t": mti, "2": PAN, "3": "000000", "4": "%012d" % amount, "7": transmission_time(),
            "11": stan or _stan.next(), "22": "051", "41": tid, "42": "000000000000001",
            "49": "840"}


def pump(reactor, until, ms=3000):
    """Run the loop until until() holds or ms of real time pass; True if it held."""
    deadline = time.monotonic() + ms / 1000.0
    while not until():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        reactor.run_once(min(50, int(left * 1000) + 1))
    return True


class Terminal:
    """A reactor, a HostLink and what came back, keyed by STAN."""

    def __init__(self, port, ca_file=None, host="127.0.0.1", **kw):
        self.reactor = Reactor()
        self.links = []
        self.unmatched = []
        self.results = {}
        self.calls = {}
        ctx = make_client_context(ca_file) if ca_file else None
        self.link = HostLink(self.reactor, host, port, ssl_context=ctx, on_link=self.links.append,
                             on_unmatched=lambda what, why: self.unmatched.append((what, why)), **kw)

    def send(self, msg, timeout_ms=3000):
        stan = msg.get("11")

        def done(result):
            self.calls[stan] = self.calls.get(stan, 0) + 1
            self.results[stan] = result
        self.link.request(msg, timeout_ms, done)
        return stan

    def wait(self, *stans, ms=3000):
        assert pump(self.reactor, lambda: all(s in self.results for s in stans), ms), \
            "no result for %r in %d ms: %r" % (stans, ms, self.results)
        return [self.results[s] for s in stans]

    def settle(self, ms):
        pump(self.reactor, lambda: False, ms)

    def close(self):
        self.link.close()
        self.reactor.close()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    host = HostSim(str(tmp_path_factory.mktemp("hostsim")), slow_ms=SLOW_MS)
    host.start()
    yield host
    host.stop()


@pytest.fixture
def terminals():
    made = []

    def make(*a, **kw):
        t = Terminal(*a, **kw)
        made.append(t)
        return t
    yield make
    for t in made:
        t.close()


# -- against the simulator, over TLS -----------------------------------------------

def test_approval_over_tls(sim, terminals):
    term = terminals(sim.address[1], sim.ca_file)
    stan = term.send(sale(1234))
    [result] = term.wait(stan)
    assert result["kind"] == "response"
    msg = result["msg"]
    assert msg["t"] == "0210" and msg["39"] == "00" and msg["11"] == stan
    assert len(msg["38"]) == 6 and len(msg["37"]) == 12
    assert term.links == ["up"] and term.unmatched == []
    assert term.calls[stan] == 1
    assert sim.ledger.find(stan, TID)["status"] == "approved"


@pytest.mark.parametrize("cents, code", [(5, "05"), (51, "51"), (54, "54"), (55, "55"), (91, "91")])
def test_each_decline_code(sim, terminals, cents, code):
    term = terminals(sim.address[1], sim.ca_file)
    stan = term.send(sale(1000 + cents))
    [result] = term.wait(stan)
    assert result["kind"] == "response" and result["msg"]["39"] == code
    assert "38" not in result["msg"]
    assert sim.ledger.find(stan, TID) is None        # a decline is not booked


def test_no_reply_times_out_and_the_reversal_is_acknowledged(sim, terminals):
    term = terminals(sim.address[1], sim.ca_file)
    original = sale(1099)
    stan = term.send(original, timeout_ms=300)
    [result] = term.wait(stan, ms=2000)
    assert result == {"kind": "timeout", "sent": True}
    assert sim.ledger.find(stan, TID)["status"] == "approved"   # the host did book it
    reversal = dict(original, t="0400", **{"11": _stan.next(), "7": transmission_time(),
                                           "90": "0200" + stan + original["7"] + "0" * 22})
    [answer] = term.wait(term.send(reversal))
    assert answer["msg"]["t"] == "0410" and answer["msg"]["39"] == "00"
    assert sim.ledger.find(stan, TID)["status"] == "reversed"
    assert term.calls[stan] == 1


def test_garbled_reply_is_reported_unmatched_never_delivered(sim, terminals):
    term = terminals(sim.address[1], sim.ca_file)
    stan = term.send(sale(1098), timeout_ms=400)
    [result] = term.wait(stan, ms=2000)
    assert result["kind"] == "timeout"
    assert len(term.unmatched) == 1
    raw, why = term.unmatched[0]
    assert isinstance(raw, bytes) and why.startswith("undecodable reply")


def test_window_of_requests_matched_by_stan_out_of_order(sim, terminals):
    term = terminals(sim.address[1], sim.ca_file)
    slow = term.send(sale(2097))                # answered after SLOW_MS
    quick = [term.send(sale(2000 + i)) for i in (1, 2, 3)]
    declined = term.send(sale(2051))
    assert term.link.outstanding == 5
    term.wait(*(quick + [declined]))
    assert slow not in term.results             # the others overtook it
    [late] = term.wait(slow, ms=2000)
    assert late["msg"]["11"] == slow and late["msg"]["4"] == "%012d" % 2097
    for stan in quick:
        assert term.results[stan]["msg"]["39"] == "00" and term.results[stan]["msg"]["11"] == stan
    assert term.results[declined]["msg"]["39"] == "51"
    assert all(n == 1 for n in term.calls.values()) and term.unmatched == []


def test_window_holds_back_requests_beyond_its_size(sim, terminals):
    term = terminals(sim.address[1], sim.ca_file, window=1)
    slow = term.send(sale(3097))
    quick = term.send(sale(3000))
    term.wait(slow, quick, ms=3000)
    # with one request in flight the quick one could not overtake
    assert list(term.results) == [slow, quick]


def test_tls_with_the_wrong_ca_is_an_error_before_anything_is_sent(sim, terminals, tmp_path):
    other = ensure_tls(str(tmp_path))               # another test CA, not the host's
    term = terminals(sim.address[1], other["ca"])
    stan = term.send(sale(1000))
    [result] = term.wait(stan)
    assert result["kind"] == "error" and result["sent"] is False
    assert "not trusted" in result["reason"] and "CA" in result["reason"]
    assert term.links == ["down"]


def test_tls_checks_the_host_name(sim, terminals):
    term = terminals(sim.address[1], sim.ca_file, server_hostname="acquirer.example")
    [result] = term.wait(term.send(sale(1000)))
    assert result["kind"] == "error" and "not trusted" in result["reason"]


def test_host_name_is_looked_up_off_the_loop(sim, terminals):
    term = terminals(sim.address[1], sim.ca_file, host="localhost")
    [result] = term.wait(term.send(sale(1000)))
    assert result["kind"] == "response" and result["msg"]["39"] == "00"


def _fake_dns(monkeypatch, answers):
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args):
        if host != "acquirer.test":
            return real(host, port, *args)
        if len(args) >= 4 and args[3] & socket.AI_NUMERICHOST:
            raise socket.gaierror(socket.EAI_NONAME, "not numeric")
        if isinstance(answers, Exception):
            raise answers
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p)) for p in answers]
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_every_address_of_the_host_is_tried_in_turn(sim, terminals, monkeypatch):
    _fake_dns(monkeypatch, [_free_port(), sim.address[1]])
    term = terminals(0, sim.ca_file, host="acquirer.test", server_hostname="localhost")
    [result] = term.wait(term.send(sale(1000)))
    assert result["kind"] == "response" and term.links == ["up"]


def test_unknown_host_name_is_an_error(terminals, monkeypatch):
    _fake_dns(monkeypatch, socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    term = terminals(8583, host="acquirer.test")
    [result] = term.wait(term.send(sale(1000)))
    assert result["kind"] == "error" and result["sent"] is False
    assert "cannot find host acquirer.test" in result["reason"]


def test_idle_connection_is_closed_quietly_and_reopened(sim, terminals):
    term = terminals(sim.address[1], sim.ca_file, idle_close_ms=100)
    term.wait(term.send(sale(1000)))
    assert term.link.phase == "open"
    term.settle(300)
    assert term.link.phase == "idle"
    [again] = term.wait(term.send(sale(1000)))
    assert again["msg"]["39"] == "00"
    assert term.links == ["up"]                 # an idle close is not a broken link


def test_network_management_echo(sim, terminals):
    term = terminals(sim.address[1], sim.ca_file)
    stan = _stan.next()
    [result] = term.wait(term.send({"t": "0800", "7": transmission_time(), "11": stan,
                                    "41": TID, "70": "301"}))
    assert result["msg"]["t"] == "0810" and result["msg"]["70"] == "301"


# -- failures without a host ---------------------------------------------------------------

def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_refused_is_an_error(terminals):
    term = terminals(_free_port())
    stan = term.send(sale(1000))
    [result] = term.wait(stan)
    assert result["kind"] == "error" and result["sent"] is False
    assert "refused" in result["reason"]
    assert term.links == ["down"]
    assert term.link.phase == "idle" and term.link.outstanding == 0


def test_a_bad_request_is_refused_on_the_loop_not_inside_request(terminals):
    term = terminals(_free_port())
    msg = sale(1000)
    del msg["4"]
    term.send(msg)
    assert term.results == {}                   # not called from inside request()
    [result] = term.wait(msg["11"])
    assert result["kind"] == "error" and result["sent"] is False and "DE4" in result["reason"]
    [result] = term.wait(term.send({"t": "0210", "11": "000001", "39": "00"}))
    assert result["kind"] == "error" and "not a request" in result["reason"]


def test_same_stan_twice_at_once_is_refused(sim, terminals):
    term = terminals(sim.address[1], sim.ca_file)
    msg = sale(1000)
    term.link.request(msg, 3000, lambda r: term.results.setdefault("first", r))
    term.link.request(dict(msg), 3000, lambda r: term.results.setdefault("second", r))
    term.wait("first", "second")
    assert term.results["first"]["kind"] == "response"
    assert term.results["second"]["kind"] == "error" and "already" in term.results["second"]["reason"]


# -- a tiny raw server for the framing cases ------------------------------------------------

def read_frame(conn):
    head = _read_exactly(conn, 2)
    return _read_exactly(conn, int.from_bytes(head, "big"))


def _read_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("client closed")
        data += chunk
    return data


def linger(conn):
    """Keep the connection until the client closes it (or a test's worth of time)."""
    try:
        conn.settimeout(3)
        while conn.recv(1024):
            pass
    except OSError:
        pass


def reply_to(raw, **over):
    msg = decode(raw)
    out = {"t": response_mti(msg["t"]), "11": msg["11"], "39": "00", "41": msg["41"]}
    out.update(over)
    return out


class RawServer:
    """One connection, handled by script(conn) in a thread."""

    def __init__(self, script):
        self.script = script
        self.errors = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            conn, _ = self.sock.accept()
        except OSError as exc:
            self.errors.append(exc)
            return
        try:
            conn.settimeout(5)
            self.script(conn)
        except Exception as exc:       # reported by close()
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self):
        self.thread.join(5)
        self.sock.close()
        assert not self.errors, self.errors


@pytest.fixture
def raw_server():
    made = []

    def make(script):
        server = RawServer(script)
        made.append(server)
        return server
    yield make
    for server in made:
        server.close()


def test_split_and_merged_frames(raw_server, terminals):
    def script(conn):
        requests = [read_frame(conn) for _ in range(3)]
        blob = b"".join(frame(encode(reply_to(r))) for r in reversed(requests))
        first = len(frame(encode(reply_to(requests[2]))))
        # one byte of a length prefix, the rest of it with part of the body, then the end
        # of the first frame merged with all of the second and the start of the third
        for piece in (blob[:1], blob[1:7], blob[7:first + len(blob) // 3], blob[first + len(blob) // 3:-2],
                      blob[-2:]):
            conn.sendall(piece)
            time.sleep(0.03)
        linger(conn)

    server = raw_server(script)
    term = terminals(server.port)
    stans = [term.send(sale(1000 + i)) for i in range(3)]
    results = term.wait(*stans)
    for stan, result in zip(stans, results):
        assert result["kind"] == "response" and result["msg"]["11"] == stan
    assert term.unmatched == []
    term.link.close()


def test_replies_nobody_waits_for_are_unmatched(raw_server, terminals):
    def script(conn):
        request = read_frame(conn)
        good = frame(encode(reply_to(request)))
        conn.sendall(
            frame(encode(reply_to(request, **{"11": "999999"})))      # unknown STAN
            + frame(encode(reply_to(request, t="0410")))              # wrong type
            + frame(encode(reply_to(request, **{"41": "OTHER001"})))  # another terminal
            + frame(b"\x00garbage")                                   # undecodable
            + b"\x00\x00"                                             # keep-alive
            + good + good)                                            # the answer, twice
        linger(conn)

    server = raw_server(script)
    term = terminals(server.port)
    stan = term.send(sale(1000))
    [result] = term.wait(stan)
    pump(term.reactor, lambda: len(term.unmatched) >= 5, 1000)
    assert result["kind"] == "response" and term.calls[stan] == 1
    reasons = [why for _, why in term.unmatched]
    assert reasons[0].startswith("no request waits for STAN 999999")
    assert reasons[1].startswith("wrong message type 0410 for STAN %s" % stan)
    assert "names terminal OTHER001" in reasons[2]
    assert reasons[3].startswith("undecodable reply")
    assert reasons[4].startswith("duplicate 0210 for STAN %s" % stan)
    assert len(reasons) == 5
    term.link.close()


def test_oversize_length_prefix_drops_the_connection(raw_server, terminals):
    def script(conn):
        read_frame(conn)
        read_frame(conn)
        conn.sendall((MAX_FRAME + 1).to_bytes(2, "big") + b"0210")
        linger(conn)

    server = raw_server(script)
    term = terminals(server.port)
    a, b = term.send(sale(1000)), term.send(sale(1001))
    for result in term.wait(a, b):
        assert result["kind"] == "error" and result["sent"] is True
        assert "frame" in result["reason"]
    assert term.links == ["up", "down"]


def test_host_closing_an_idle_connection_is_not_a_broken_link(raw_server, terminals):
    def script(conn):
        conn.sendall(frame(encode(reply_to(read_frame(conn)))))
        time.sleep(0.05)                       # then close, as hosts do with idle links

    server = raw_server(script)
    term = terminals(server.port)
    [result] = term.wait(term.send(sale(1000)))
    assert result["kind"] == "response"
    assert pump(term.reactor, lambda: term.link.phase == "idle", 2000)
    assert term.links == ["up"]


def test_reset_after_sending_is_an_error_with_sent_true(raw_server, terminals):
    def script(conn):
        read_frame(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    server = raw_server(script)
    term = terminals(server.port)
    [result] = term.wait(term.send(sale(1000)))
    assert result["kind"] == "error" and result["sent"] is True
    assert "reset" in result["reason"] or "closed" in result["reason"]
    assert term.links == ["up", "down"]


def test_deadline_before_the_tls_handshake_ends_means_not_sent(raw_server, terminals, sim):
    server = raw_server(linger)                 # accepts, never answers the ClientHello
    term = terminals(server.port, sim.ca_file, connect_timeout_ms=5000)
    [result] = term.wait(term.send(sale(1000), timeout_ms=200))
    assert result["kind"] == "error" and result["sent"] is False
    assert result["reason"].startswith("not sent")
    term.link.close()


def test_connect_timeout_fails_the_waiting_requests(raw_server, terminals, sim):
    server = raw_server(linger)
    term = terminals(server.port, sim.ca_file, connect_timeout_ms=150)
    [result] = term.wait(term.send(sale(1000), timeout_ms=3000))
    assert result["kind"] == "error" and result["sent"] is False
    assert "did not answer" in result["reason"]
    assert term.links == ["down"]


# -- STAN and RRN -------------------------------------------------------------------------------

def test_stan_counts_wraps_and_saves_before_use():
    saved = []
    stan = Stan(999998, save=saved.append)
    assert stan.next() == "999999"
    assert stan.next() == "000001"
    assert saved == [999999, 1]
    assert Stan(5).next() == "000006"
    assert Stan(-3).next() == "000001"

    def refuse(value):
        raise OSError("disk full")
    failing = Stan(7, save=refuse)
    with pytest.raises(OSError):
        failing.next()
    assert failing.last == 7                     # not handed out, not used


def test_rrn_is_year_digit_julian_day_hour_and_stan():
    when = time.struct_time((2026, 2, 1, 13, 5, 0, 6, 32, 0))
    assert make_rrn(42, when) == "6032" + "13" + "000042"
    assert len(make_rrn("999999")) == 12
    assert transmission_time(when) == "0201130500"
