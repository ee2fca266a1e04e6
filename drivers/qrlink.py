"""The link to the QR acquirer: HTTPS+JSON (HTTP/1.1, h11) driven by the reactor.

QrLink(reactor, address, ca_file) POSTs JSON objects to https://host:port/v1/<op>
(docs/qr-protocol.md). The bodies come signed from firmware/payments/qrmsg.py; the
link only carries them, and the caller checks each answer's sign with
QrMessages.check_response() before believing it.

One request at a time on one connection, the rest queued in order: a terminal sends a
pay, then queries; there is nothing to gain from a pool, and one socket is what a
handheld on battery should hold. Each request's deadline runs from request(), queue
time included. The connection is kept (keep-alive) after an answer and closed after
idle_close_ms of quiet (50 s: before the acquirer's own 60 s, so the terminal rather
than the server ends it and a request never races a closing server).

Nothing here blocks. The TCP connect and the TLS handshake are non-blocking and advance
on POLLOUT/POLLIN, and a host name (not a numeric address) is looked up in a
short-lived helper thread that posts the answer to the loop: drivers/tlsconnect.py does
that, for drivers/hostlink.py as well. The TLS context is tlsconnect's
make_client_context (the pinned CA only, TLS 1.2+, host name checked against
server_hostname, default the address's host).

request(op, body, timeout_ms, callback) calls callback(result) exactly once, from the
loop and never from inside request(), with one of

    {"kind": "response", "status": int, "json": dict | None, "body": bytes}
    {"kind": "timeout", "sent": bool, "reason": "...", "cause": "timeout"}
    {"kind": "error", "sent": bool, "reason": "...", "cause": "..."}

"response" is any complete HTTP answer, whatever its status: "json" is the body as a
JSON object, or None when it is not one (a proxy's HTML 502 page, an empty body, bad
UTF-8). A non-200 status or json None is no refusal: for a pay it means "unknown"
(qr-protocol.md section 8). "body" is the raw bytes (at most MAX_BODY).

"sent" says whether any byte of the request may have reached the acquirer. sent=False:
it cannot have acted on it (connect refused, TLS failure, deadline passed before the
request went out). sent=True: the outcome is unknown and the caller must query.

"cause" (errors and timeouts) is one of
    "unbuildable"  the op or body cannot be sent (terminal's fault; link not down)
    "dns"          the host name did not resolve
    "refused"      connection refused
    "unreachable"  no route, or the connect failed otherwise
    "connect_timeout"  no TCP connection and TLS session within connect_timeout_ms
    "tls"          the TLS handshake failed (not a certificate problem)
    "untrusted"    the server's certificate failed its check; the result also carries
                   "untrusted": "ca" | "name" | "expired" | "other" (tlsconnect's
                   cert_problem), and on_untrusted(kind, reason) is called first
    "timeout"      the deadline passed (kind "timeout"; sent says before or after)
    "truncated"    the connection closed in the middle of the answer's body
                   (Content-Length not reached): sent=True
    "closed"       the connection closed (or was reset) after the request went out,
                   before any answer: sent=True
    "protocol"     the server's bytes are not HTTP/1.1 (h11 refused them): sent=True
    "too_large"    the answer is over MAX_BODY bytes: sent=True
    "io"           sending or receiving failed otherwise
    "closed_by_terminal"  close() was called

Keep-alive and reconnects. Before a request goes out on a kept connection the link
checks, without blocking, that the server has not closed it; if it has, a new
connection is made. If the server still closes a kept connection just as the request
goes out (no byte of answer received), the same bytes are sent once more on a new
connection. That is safe: the signed body carries the same nonce, and the acquirer
refuses a second copy of a nonce it accepted (REPLAY: qr-protocol.md section 4, rule 7
of section 8: the caller then queries), so a request can never act twice. sent stays
True in that case.

on_link("up"|"down") reports reachability as hostlink does: "up" once a connection and
its TLS handshake succeed, "down" when a connect fails or an open connection breaks
with a request on it. A kept connection closed quietly by either side, and a timeout,
are no change. The link's state is also in .link and its last failure in .last_error.
"""
import collections
import errno
import json
import ssl

import h11

from drivers.tlsconnect import IDLE, OPEN, TlsConnector, Watch, make_client_context
from firmware.core.reactor import POLLIN, POLLOUT

OPS = ("pay", "query", "cancel", "create", "close", "refund")
MAX_BODY = 64 * 1024             # an answer larger than this is refused
RECV_SIZE = 16384

_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


# a connect under way this long with no request on it is not waited for by a new one
STALE_CONNECT_MS = 3000

class _Request:
    __slots__ = ("op", "data", "callback", "timer", "sent", "retried", "done")

    def __init__(self, op, data, callback):
        self.op = op
        self.data = data
        self.callback = callback
        self.timer = None
        self.sent = False
        self.retried = False
        self.done = False


class QrLink:
    """Signed JSON requests to the QR acquirer over HTTPS, one at a time.

    address: (host, port). ca_file: the acquirer's CA (PEM), the only one trusted;
    cert_file/key_file: the terminal's certificate where the acquirer wants mutual
    TLS. tls=False (plain HTTP) exists for the simulator's --no-tls only; ca_file is
    then ignored. path_prefix: "/v1/".
    """

    def __init__(self, reactor, address, ca_file, cert_file=None, key_file=None,
                 server_hostname=None, on_link=None, on_untrusted=None,
                 connect_timeout_ms=15000, idle_close_ms=50000, path_prefix="/v1/",
                 tls=True, ssl_context=None):
        self.reactor = reactor
        self.host = address[0]
        self.port = int(address[1])
        if tls:
            if ssl_context is None:
                if not ca_file:
                    raise ValueError("the QR link needs the acquirer's CA file")
                ssl_context = make_client_context(ca_file, cert_file, key_file)
            self.ssl_context = ssl_context
        else:
            self.ssl_context = None
        self.server_hostname = server_hostname or self.host
        self.on_link = on_link
        self.on_untrusted = on_untrusted
        self.connect_timeout_ms = connect_timeout_ms
        self.idle_close_ms = idle_close_ms
        self.path_prefix = path_prefix
        default_port = 443 if self.ssl_context is not None else 80
        host_text = "[%s]" % self.host if ":" in self.host else self.host
        self._host_header = host_text if self.port == default_port \
            else "%s:%d" % (host_text, self.port)
        self.link = None
        self.last_error = None
        self.connections = 0         # connections opened so far (tests, diagnostics)
        self._connector = None       # the connect under way (drivers/tlsconnect.py)
        self._connect_started = 0
        self._sock = None            # the open connection
        self._watch = None           # its place on the reactor (a tlsconnect.Watch)
        self._idle_timer = None
        self._h11 = None
        self._used = False           # the open connection has carried an answer
        self._queue = collections.deque()
        self._current = None
        self._outbuf = bytearray()
        self._response = None       # [status, bytearray body] once the head arrived
        self._answer_bytes = False  # any byte of answer on this request

    # -- the caller's side ----------------------------------------------------------
    @property
    def outstanding(self):
        return len(self._queue) + (1 if self._current is not None else 0)

    @property
    def phase(self):
        """IDLE, OPEN, or while connecting the connector's RESOLVING, CONNECTING or
        HANDSHAKE."""
        if self._connector is not None:
            return self._connector.phase
        return IDLE if self._sock is None else OPEN

    def request(self, op, body, timeout_ms, callback):
        try:
            if op not in OPS:
                raise ValueError("unknown op %r" % (op,))
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object (dict)")
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            self._soon(callback, {"kind": "error", "sent": False, "cause": "unbuildable",
                                  "reason": "request not sent: %s" % exc})
            return
        req = _Request(op, data, callback)
        req.timer = self.reactor.call_later(timeout_ms, self._timed_out, req)
        self._queue.append(req)
        self._cancel_idle()
        if self._connector is not None and self._current is None \
                and self.reactor.clock() - self._connect_started > STALE_CONNECT_MS:
            # an attempt begun a while ago with nothing of ours on it (a probe, or one
            # whose request gave up) may be stuck in a network that has come back since:
            # this request starts a fresh one rather than wait out its connect timeout
            self._connector.cancel()
            self._connector = None
        self._next()

    def close(self, reason="link closed"):
        """Close now; outstanding requests get an error (cause "closed_by_terminal")."""
        failed = ([self._current] if self._current is not None else []) + list(self._queue)
        self._current = None
        self._queue.clear()
        self._quiet_close()
        for req in failed:
            self._finish(req, self._error(req, reason, "closed_by_terminal"), advance=False)

    def probe(self):
        """Connect (TLS handshake included) with no request, when idle: on_link then
        says whether the acquirer is reachable. Nothing is sent; the connection is kept
        for the next request until the idle close."""
        if self.phase == IDLE and self._current is None and not self._queue:
            self._connect()

    # -- the queue --------------------------------------------------------------------
    def _next(self):
        """Start the next queued request, if none is under way."""
        if self._current is not None:
            # under way already (connecting, sending or waiting for its answer)
            if self.phase == IDLE:
                self._connect()
            return
        if not self._queue:
            self._maybe_idle()
            return
        self._current = self._queue.popleft()
        self._response = None
        self._answer_bytes = False
        if self.phase == OPEN:
            if self._used and not self._still_open():
                self._quiet_close()
            else:
                self._send_current()
                return
        if self.phase == IDLE:
            self._connect()

    def _still_open(self):
        """Has the server closed the kept connection? A non-blocking read says so: it
        would block on a live idle connection; EOF, an error or stray bytes say no."""
        try:
            self._sock.recv(1)
        except _WOULD_BLOCK:
            return True
        except (OSError, ValueError):
            return False
        return False            # b"" (closed), or bytes nobody asked for

    def _send_current(self):
        req = self._current
        conn = self._h11
        headers = [("Host", self._host_header),
                   ("User-Agent", "handpos"),
                   ("Accept", "application/json"),
                   ("Content-Type", "application/json; charset=utf-8"),
                   ("Content-Length", str(len(req.data)))]
        try:
            out = conn.send(h11.Request(method="POST", target=self.path_prefix + req.op,
                                        headers=headers))
            out += conn.send(h11.Data(data=req.data))
            out += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            # the connection is in no state for a request: start a fresh one
            self._quiet_close()
            self.last_error = "HTTP state: %s" % exc
            self._connect()
            return
        self._outbuf = bytearray(out)
        self._write()

    # -- connecting -------------------------------------------------------------------
    def _connect(self):
        self.last_error = None
        self._connect_started = self.reactor.clock()
        self._connector = TlsConnector(
            self.reactor, self.host, self.port, self.ssl_context, self.server_hostname,
            self.connect_timeout_ms, self._opened, self._connect_failed,
            peer="the QR acquirer", name="qrlink")
        self._connector.start()

    def _opened(self, sock):
        self._connector = None
        self._sock = sock
        self._watch = Watch(self.reactor, sock, self._on_ready, self._on_dead)
        self.last_error = None
        self.connections += 1
        self._h11 = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=MAX_BODY)
        self._used = False
        self._set_link("up")
        self._watch.want(POLLIN)
        if self._current is not None:
            self._send_current()
        else:
            self._next()

    def _connect_failed(self, reason, cause, untrusted=None):
        """No connection: the current request and every queued one fail (they would
        fail the same way); nothing of theirs went out on this attempt. untrusted (the
        acquirer's certificate failed its check) goes to on_untrusted first."""
        self._connector = None
        if untrusted is not None and self.on_untrusted is not None:
            self._soon(self.on_untrusted, untrusted, reason)
        self.last_error = reason
        failed = ([self._current] if self._current is not None else []) + list(self._queue)
        self._current = None
        self._queue.clear()
        self._quiet_close()
        self._set_link("down")
        for req in failed:
            result = self._error(req, reason, cause)
            if untrusted is not None:
                result["untrusted"] = untrusted
            self._finish(req, result, advance=False)

    # -- the descriptor ------------------------------------------------------------------
    def _on_ready(self, fd, revents):
        if self._watch is None or fd != self._watch.fd:
            return
        if revents & POLLIN or not revents & POLLOUT:
            self._read()
        if self.phase == OPEN and revents & POLLOUT:
            self._write()

    def _on_dead(self, fd, reason):
        if self._watch is None or fd != self._watch.fd:
            return
        self._lost("the connection to the QR acquirer was lost (%s)" % reason, "closed")

    # -- writing --------------------------------------------------------------------------
    def _write(self):
        req = self._current
        while self._outbuf and self.phase == OPEN:
            try:
                n = self._sock.send(self._outbuf)
            except _WOULD_BLOCK:
                break
            except ssl.SSLError as exc:
                self._lost("TLS error while sending: %s" % (exc.reason or exc), "io")
                return
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                    self._lost("the QR acquirer closed the connection", "closed")
                else:
                    self._lost("sending to the QR acquirer failed: %s"
                               % (exc.strerror or exc), "io")
                return
            if n <= 0:
                break
            if req is not None:
                req.sent = True
            del self._outbuf[:n]
        if self.phase == OPEN:
            self._watch.want(POLLIN | (POLLOUT if self._outbuf else 0))

    # -- reading ----------------------------------------------------------------------------
    def _read(self):
        while self.phase == OPEN:
            try:
                chunk = self._sock.recv(RECV_SIZE)
            except _WOULD_BLOCK:
                return
            except ssl.SSLZeroReturnError:
                chunk = b""
            except ssl.SSLError as exc:
                self._lost("TLS error while receiving: %s" % (exc.reason or exc), "io")
                return
            except OSError as exc:
                if exc.errno == errno.ECONNRESET:
                    self._lost("the QR acquirer reset the connection", "closed")
                else:
                    self._lost("receiving from the QR acquirer failed: %s"
                               % (exc.strerror or exc), "io")
                return
            if not chunk:
                self._eof()
                return
            if self._current is None or not self._current.sent:
                self._quiet_close()         # bytes nobody asked for: drop the connection
                if self._current is not None:
                    self._connect()
                return
            self._answer_bytes = True
            self._h11.receive_data(chunk)
            self._events_in()
            pending = getattr(self._sock, "pending", None) if self.phase == OPEN else None
            if pending is None or not pending():
                return

    def _eof(self):
        if self._current is None or not self._current.sent:
            self._quiet_close()             # a kept connection the server closed
            if self._current is not None:
                self._connect()
            return
        if self._response is not None:
            self._h11.receive_data(b"")
            self._events_in()               # a close-delimited body ends here
        if self.phase == OPEN and self._current is not None:
            self._lost("the QR acquirer closed the connection", "closed")

    def _events_in(self):
        while self.phase == OPEN and self._current is not None:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self._response is not None and "complete message body" in str(exc):
                    self._lost("the answer was cut short: %d bytes of its body arrived, "
                               "then the connection closed" % len(self._response[1]),
                               "truncated")
                else:
                    self._lost("the QR acquirer's answer is not HTTP/1.1: %s" % exc,
                               "protocol")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self._response = [event.status_code, bytearray()]
            elif isinstance(event, h11.Data):
                body = self._response[1]
                body += event.data
                if len(body) > MAX_BODY:
                    self._lost("the answer is over %d bytes" % MAX_BODY, "too_large")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._answered()
                return
            elif isinstance(event, h11.ConnectionClosed):
                return
            # InformationalResponse (1xx): wait for the final answer

    def _answered(self):
        req = self._current
        status, body = self._response
        body = bytes(body)
        parsed = None
        try:
            value = json.loads(body.decode("utf-8"))
            if isinstance(value, dict):
                parsed = value
        except (UnicodeError, ValueError):
            pass
        conn = self._h11
        self._current = None
        self._response = None
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._used = True
            self._watch.want(POLLIN)
        else:
            self._quiet_close()             # Connection: close, or an early answer
        self._finish(req, {"kind": "response", "status": status, "json": parsed,
                           "body": body})

    # -- ending requests ------------------------------------------------------------------
    def _error(self, req, reason, cause):
        return {"kind": "error", "sent": req.sent, "reason": reason, "cause": cause}

    def _finish(self, req, result, advance=True):
        if req.done:
            return
        req.done = True
        if req.timer is not None:
            req.timer.cancel()
            req.timer = None
        self._soon(req.callback, result)
        if advance:
            self._next()

    def _timed_out(self, req):
        req.timer = None
        if req.done:
            return
        if req is self._current:
            self._current = None
            if req.sent:
                # an answer may still come: this connection cannot be reused
                self._quiet_close()
                reason = "no answer from the QR acquirer in time: the outcome is unknown"
            else:
                # OPEN: the h11 state holds the unsent request; connecting: the attempt
                # took longer than the request may wait, and may be stuck (a network
                # that swallowed its packets): either way the next request starts afresh
                self._quiet_close()
                reason = "not sent: " + (self.last_error or
                                         "no connection to the QR acquirer in time")
        else:
            if req in self._queue:
                self._queue.remove(req)
            reason = "not sent: it waited behind an earlier request"
        self._finish(req, {"kind": "timeout", "sent": req.sent, "reason": reason,
                           "cause": "timeout"})

    def _lost(self, reason, cause):
        """The open connection broke. The current request fails, or (a kept connection
        the server closed as the request went out, no answer seen) goes once more on a
        new connection; queued requests go on a new connection."""
        req = self._current
        reused = self._used
        self.last_error = reason
        self._quiet_close()
        if req is None:
            return
        if reused and cause == "closed" and not self._answer_bytes and not req.retried:
            req.retried = True
            self._response = None
            self._connect()
            return
        self._current = None
        self._set_link("down")
        self._finish(req, self._error(req, reason, cause))

    def _drop_socket(self):
        if self._connector is not None:
            self._connector.cancel()
            self._connector = None
        if self._watch is not None:
            self._watch.close()
        self._sock = self._watch = None

    # -- idle ---------------------------------------------------------------------------------
    def _maybe_idle(self):
        if self._current is not None or self._queue or self.phase != OPEN \
                or not self.idle_close_ms:
            return
        self._cancel_idle()
        self._idle_timer = self.reactor.call_later(self.idle_close_ms, self._idle_close)

    def _idle_close(self):
        self._idle_timer = None
        if self._current is None and not self._queue and self.phase == OPEN:
            self._quiet_close()

    def _quiet_close(self):
        """Close the connection (or give up the connect) without calling it a failure."""
        self._cancel_idle()
        self._drop_socket()
        self._h11 = None
        self._used = False
        self._outbuf = bytearray()

    def _cancel_idle(self):
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    # -- helpers --------------------------------------------------------------------------------
    def _set_link(self, state):
        if state != self.link:
            self.link = state
            if self.on_link is not None:
                self._soon(self.on_link, state)

    def _soon(self, callback, *args):
        self.reactor.call_soon(callback, *args)
