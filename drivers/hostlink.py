"""The link to the acquirer host: ISO 8583 over TCP (and TLS), driven by the reactor.

Each message travels in a frame: a 2-byte big-endian length, then the message
(drivers/iso8583_spec.py). The link connects when there is something to send,
keeps the connection while requests are outstanding and closes it after
idle_close_ms of quiet: a handheld on battery should not hold a socket open all day,
and acquirers drop idle connections anyway.

Nothing here blocks. The TCP connect and the TLS handshake are non-blocking and
advance on POLLOUT/POLLIN; the one thing with no descriptor, a DNS lookup of a host
name, runs in a short-lived helper thread that posts its answer to the loop (a
numeric address needs no lookup). drivers/tlsconnect.py does all of that (as it does
for drivers/qrlink.py); this link has the connection from when it is open.

request(msg, timeout_ms, callback) calls callback(result) exactly once, from the loop
and never from inside request(), with one of

    {"kind": "response", "msg": {...}}
    {"kind": "timeout", "sent": True}
    {"kind": "error", "reason": "...", "sent": bool}

"sent" says whether any byte of the request left the terminal. A timeout always
means it did: the host may have acted on it, so the transaction side reverses. An
error with sent=False means the host cannot have seen it (connect refused, TLS
failure, the deadline passed before the link came up). An error because the host's
certificate failed its check also carries "untrusted": "ca" | "name" | "expired" |
"other" (cert_problem), and on_untrusted(kind, reason) is called first: that is no
ordinary link down but a host (or a man in the middle) that is not who it should be,
and the terminal must not approve offline because of it (docs/payments.md, "Host
certificate not trusted").

A reply is delivered only to the request with the same STAN (DE11) whose expected
response type it carries (0200 -> 0210, 0401 -> 0410), and only once. Anything else
(undecodable bytes, a STAN nobody waits for, the wrong type, a second copy, a reply
after the timeout, another terminal's TID) goes to on_unmatched(raw_or_msg, reason)
and is never taken for an answer.
"""
import collections
import errno
import ssl
import time

from drivers.iso8583_spec import MAX_MESSAGE, RESPONSES, HostMessageError, decode, encode, \
    response_mti
from drivers.tlsconnect import IDLE, OPEN, TlsConnector, Watch
from drivers.tlsconnect import cert_problem, make_client_context  # noqa: F401  (imported from here)
from firmware.core.reactor import POLLIN, POLLOUT

MAX_FRAME = 8192                 # a length prefix above this drops the connection
assert MAX_FRAME >= MAX_MESSAGE
RECV_SIZE = 16384
RECENT = 256                     # finished requests remembered to explain late replies

# how this link words a failed connect where drivers/tlsconnect.py's WORDS do not
_CONNECT_WORDS = {
    "refused": "{peer} {where} refused the connection: is the host service running?",
    "no_route": "no route to {peer} {where}: check the network connection",
    "etimedout": "{peer} {where} did not answer the connect",
    "tls": "TLS handshake failed: {detail}",
    "untrusted": "TLS: the host's certificate is not trusted ({verify}): {advice}",
}


def frame(message_bytes):
    """The message with its 2-byte big-endian length prefix."""
    if len(message_bytes) > MAX_FRAME:
        raise HostMessageError("message is %d bytes, a frame holds at most %d"
                               % (len(message_bytes), MAX_FRAME))
    return len(message_bytes).to_bytes(2, "big") + bytes(message_bytes)


class Stan:
    """The systems trace audit number (DE11): 000001..999999, then 000001 again.

    save(value) is called with each new value before it is handed out, so a STAN is
    durable before any request carries it and a restart never reuses one (the host's
    duplicate check keys on TID + STAN).
    """

    MAX = 999999

    def __init__(self, last=0, save=None):
        last = int(last)
        self.last = last if 0 <= last <= self.MAX else 0
        self._save = save

    def next(self):
        value = self.last % self.MAX + 1
        if self._save is not None:
            self._save(value)
        self.last = value
        return "%06d" % value


def _utc(when):
    if when is None:
        return time.gmtime()
    if isinstance(when, (int, float)):
        return time.gmtime(when)
    if hasattr(when, "utctimetuple"):
        return when.utctimetuple()
    return when                   # a struct_time already


def make_rrn(stan, when=None):
    """A retrieval reference number (DE37), 12 characters: YDDDHHSSSSSS.

    Y the last digit of the UTC year, DDD the UTC day of the year, HH the UTC hour,
    SSSSSS the STAN. STANs wrap after 999999, so the hour keeps two RRNs of one
    terminal apart for as long as it does fewer than a million requests an hour; the
    TID (DE41) tells terminals apart. The host normally assigns the RRN; the terminal
    makes its own for offline approvals and advices.
    """
    t = _utc(when)
    return "%d%03d%02d%06d" % (t.tm_year % 10, t.tm_yday, t.tm_hour, int(stan))


def transmission_time(when=None):
    """DE7, MMDDhhmmss in UTC."""
    t = _utc(when)
    return "%02d%02d%02d%02d%02d" % (t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


class _Request:
    __slots__ = ("key", "callback", "tid", "data", "timer", "sent", "admitted")

    def __init__(self, key, callback, tid, data):
        self.key = key
        self.callback = callback
        self.tid = tid
        self.data = data
        self.timer = None
        self.sent = False
        self.admitted = False


class HostLink:
    """Requests to the acquirer host and their matched responses.

    window caps the requests in flight on the connection; more wait their turn
    (their deadline runs from request()). on_link("up"|"down") reports reachability:
    "up" once a connection (and its TLS handshake) succeeds, "down" when a connect
    fails or an open connection breaks. An idle connection closed by either side
    (idle_close_ms here, the host's own idle timer there) is not a change.
    on_untrusted(kind, reason) reports each handshake whose server certificate failed
    its check (kind from cert_problem), before the requests it fails are answered;
    the link is also "down" then. Whether to trust again is not the link's to decide:
    every connection checks the certificate afresh.
    """

    def __init__(self, reactor, host, port, ssl_context=None, on_link=None,
                 connect_timeout_ms=15000, idle_close_ms=60000, on_unmatched=None,
                 server_hostname=None, window=8, on_untrusted=None):
        self.reactor = reactor
        self.host = host
        self.port = int(port)
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname or host
        self.on_link = on_link
        self.on_unmatched = on_unmatched
        self.on_untrusted = on_untrusted
        self.connect_timeout_ms = connect_timeout_ms
        self.idle_close_ms = idle_close_ms
        self.window = max(1, int(window))
        self.link = None             # None until known, then "up" / "down"
        self.last_error = None
        self._connector = None       # the connect under way (drivers/tlsconnect.py)
        self._sock = None            # the open connection
        self._watch = None           # its place on the reactor (a tlsconnect.Watch)
        self._idle_timer = None
        self._pending = {}           # (stan, response mti) -> _Request
        self._waiting = collections.deque()   # not yet admitted to the window
        self._outq = collections.deque()      # [request, bytes, offset]
        self._inbuf = bytearray()
        self._recent = collections.OrderedDict()

    # -- the caller's side -------------------------------------------------------
    @property
    def outstanding(self):
        return len(self._pending)

    @property
    def phase(self):
        """IDLE, OPEN, or while connecting the connector's RESOLVING, CONNECTING or
        HANDSHAKE."""
        if self._connector is not None:
            return self._connector.phase
        return IDLE if self._sock is None else OPEN

    def request(self, msg, timeout_ms, callback):
        try:
            mti = msg.get("t") if isinstance(msg, dict) else None
            stan = msg.get("11") if isinstance(msg, dict) else None
            if not stan:
                raise HostMessageError("a request needs a STAN (DE11)", "11")
            expect = response_mti(mti or "")
            data = frame(encode(msg))
        except HostMessageError as exc:
            # the terminal's own fault, not the host's: the caller must not take the
            # link for down (nor approve offline) because of it
            self._soon(callback, {"kind": "error", "reason": "request not sent: " + exc.reason,
                                  "sent": False, "unbuildable": True})
            return
        key = (stan, expect)
        if key in self._pending:
            self._soon(callback, {"kind": "error", "sent": False,
                                  "reason": "request not sent: STAN %s already waits for a %s"
                                  % (stan, expect)})
            return
        req = _Request(key, callback, msg.get("41"), data)
        req.timer = self.reactor.call_later(timeout_ms, self._timed_out, req)
        self._pending[key] = req
        self._recent.pop(key, None)
        self._waiting.append(req)
        self._cancel_idle()
        self._admit()
        if self.phase == IDLE:
            self._connect()
        elif self.phase == OPEN:
            self._write()

    def close(self, reason="link closed"):
        """Close now; outstanding requests get an error."""
        self._broken(reason, report=False)

    # -- connecting ----------------------------------------------------------------
    def _connect(self):
        self.last_error = None
        self._connector = TlsConnector(
            self.reactor, self.host, self.port, self.ssl_context, self.server_hostname,
            self.connect_timeout_ms, self._opened, self._connect_failed, peer="host",
            words=_CONNECT_WORDS, name="hostlink")
        self._connector.start()

    def _opened(self, sock):
        self._connector = None
        self._sock = sock
        self._watch = Watch(self.reactor, sock, self._on_ready, self._on_dead)
        self.last_error = None
        self._set_link("up")
        self._watch.want(POLLIN | (POLLOUT if self._outq else 0))
        self._write()
        self._maybe_idle()          # every request may have timed out meanwhile

    def _connect_failed(self, reason, cause, untrusted=None):
        """No connection. untrusted (the host's certificate failed its check): nothing
        was sent, and whoever answered is not to be taken for the host. That is
        reported before the requests fail, so the terminal knows why by the time their
        callers hear of it."""
        self._connector = None
        self.last_error = reason
        if untrusted is not None and self.on_untrusted is not None:
            self._soon(self.on_untrusted, untrusted, reason)
        self._broken(reason, untrusted=untrusted)

    # -- the descriptor --------------------------------------------------------------
    def _on_ready(self, fd, revents):
        if self._watch is None or fd != self._watch.fd:
            return
        if revents & POLLIN or not revents & POLLOUT:
            self._read()
        if self.phase == OPEN and revents & POLLOUT:
            self._write()

    def _on_dead(self, fd, reason):
        # The reactor already unregistered fd (hang-up or error without data).
        if self._watch is None or fd != self._watch.fd:
            return
        self._broken("connection to the host lost (%s)" % reason)

    # -- writing -------------------------------------------------------------------------
    def _admit(self):
        while self._waiting and self._in_flight() < self.window:
            req = self._waiting.popleft()
            req.admitted = True
            self._outq.append([req, req.data, 0])

    def _in_flight(self):
        return sum(1 for r in self._pending.values() if r.admitted)

    def _write(self):
        while self._outq and self.phase == OPEN:
            entry = self._outq[0]
            req, data, offset = entry
            try:
                n = self._sock.send(memoryview(data)[offset:])
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                break
            except ssl.SSLError as exc:
                self._broken("TLS error while sending: %s" % (exc.reason or exc))
                return
            except OSError as exc:
                self._broken("sending to the host failed: %s" % (exc.strerror or exc))
                return
            if n <= 0:
                break
            if req is not None:
                req.sent = True
            entry[2] = offset + n
            if entry[2] >= len(data):
                self._outq.popleft()
        if self.phase == OPEN:
            self._watch.want(POLLIN | (POLLOUT if self._outq else 0))

    # -- reading ---------------------------------------------------------------------------
    def _read(self):
        while self.phase == OPEN:
            try:
                chunk = self._sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except ssl.SSLZeroReturnError:
                self._broken("the host closed the connection")
                return
            except ssl.SSLError as exc:
                self._broken("TLS error while receiving: %s" % (exc.reason or exc))
                return
            except OSError as exc:
                if exc.errno == errno.ECONNRESET:
                    self._broken("the host reset the connection")
                else:
                    self._broken("receiving from the host failed: %s" % (exc.strerror or exc))
                return
            if not chunk:
                if self._pending or self._outq or self._inbuf:
                    self._broken("the host closed the connection")
                else:
                    self._quiet_close()     # hosts close idle connections: not a failure
                return
            self._inbuf += chunk
            self._frames()
            # A TLS record may hold more than one recv's worth; the socket will not
            # poll readable for bytes already inside the TLS layer.
            pending = getattr(self._sock, "pending", None) if self.phase == OPEN else None
            if pending is None or not pending():
                return

    def _frames(self):
        buf = self._inbuf
        while len(buf) >= 2 and self.phase == OPEN:
            size = (buf[0] << 8) | buf[1]
            if size > MAX_FRAME:
                self._broken("the host sent a %d-byte frame (the limit is %d): connection "
                             "dropped" % (size, MAX_FRAME))
                return
            if len(buf) < 2 + size:
                return
            raw = bytes(buf[2:2 + size])
            del buf[:2 + size]
            if size:                      # an empty frame is a keep-alive
                self._reply(raw)

    def _reply(self, raw):
        try:
            msg = decode(raw)
        except HostMessageError as exc:
            self._unmatched(raw, "undecodable reply: " + exc.reason)
            return
        mti = msg["t"]
        stan = msg.get("11")
        if mti not in RESPONSES:
            self._unmatched(msg, "%s is not a response: the terminal does not serve requests" % mti)
            return
        key = (stan, mti)
        req = self._pending.get(key)
        if req is None:
            how = self._recent.get(key)
            if how == "answered":
                reason = "duplicate %s for STAN %s: already answered" % (mti, stan)
            elif how == "timed out":
                reason = "late %s for STAN %s: the request had timed out" % (mti, stan)
            elif how is not None:
                reason = "%s for STAN %s after the request failed" % (mti, stan)
            else:
                waiting = [k[1] for k in self._pending if k[0] == stan]
                if waiting:
                    reason = "wrong message type %s for STAN %s: waiting for %s" \
                        % (mti, stan, ", ".join(sorted(waiting)))
                else:
                    reason = "no request waits for STAN %s (%s)" % (stan, mti)
            self._unmatched(msg, reason)
            return
        tid = msg.get("41")
        if req.tid and tid and tid != req.tid:
            self._unmatched(msg, "%s for STAN %s names terminal %s, not %s"
                            % (mti, stan, tid, req.tid))
            return
        self._finish(req, {"kind": "response", "msg": msg}, "answered")

    def _unmatched(self, what, reason):
        if self.on_unmatched is not None:
            self._soon(self.on_unmatched, what, reason)

    # -- ending requests -------------------------------------------------------------------
    def _finish(self, req, result, how):
        if self._pending.get(req.key) is not req:
            return
        del self._pending[req.key]
        if req.timer is not None:
            req.timer.cancel()
        self._recent[req.key] = how
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        self._soon(req.callback, result)
        self._admit()
        if self.phase == OPEN:
            self._write()
        self._maybe_idle()

    def _timed_out(self, req):
        if self._pending.get(req.key) is not req:
            return
        req.timer = None
        if req.sent:
            self._finish(req, {"kind": "timeout", "sent": True}, "timed out")
            return
        # Not one byte left: take it back so it never goes out after its deadline.
        if req in self._waiting:
            self._waiting.remove(req)
        for entry in list(self._outq):
            if entry[0] is req and entry[2] == 0:
                self._outq.remove(entry)
        reason = self.last_error if isinstance(self.last_error, str) else None
        self._finish(req, {"kind": "error", "sent": False,
                           "reason": "not sent: " + (reason or "no connection to the host in time")},
                     "failed")

    def _broken(self, reason, report=True, untrusted=None):
        """Close the connection; every outstanding request gets an error (saying
        untrusted=kind when the host's certificate failed its check)."""
        was_open = self.phase == OPEN
        self._cancel_idle()
        self._drop_socket()
        self._inbuf = bytearray()
        self._outq.clear()
        self._waiting.clear()
        failed = list(self._pending.values())
        self._pending.clear()
        for req in failed:
            if req.timer is not None:
                req.timer.cancel()
            self._recent[req.key] = "failed"
            result = {"kind": "error", "reason": reason, "sent": req.sent}
            if untrusted is not None:
                result["untrusted"] = untrusted
            self._soon(req.callback, result)
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        if report and (was_open or self.link != "down"):
            self._set_link("down")

    def _drop_socket(self):
        if self._connector is not None:
            self._connector.cancel()
            self._connector = None
        if self._watch is not None:
            self._watch.close()
        self._sock = self._watch = None

    # -- idle --------------------------------------------------------------------------------
    def _maybe_idle(self):
        if self._pending or self._outq or self.phase != OPEN or not self.idle_close_ms:
            return
        self._cancel_idle()
        self._idle_timer = self.reactor.call_later(self.idle_close_ms, self._idle_close)

    def _idle_close(self):
        self._idle_timer = None
        if not self._pending and not self._outq and self.phase == OPEN:
            self._quiet_close()

    def _quiet_close(self):
        self._cancel_idle()
        self._drop_socket()
        self._inbuf = bytearray()

    def _cancel_idle(self):
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    # -- helpers ------------------------------------------------------------------------------
    def _set_link(self, state):
        if state != self.link:
            self.link = state
            if self.on_link is not None:
                self._soon(self.on_link, state)

    def _soon(self, callback, *args):
        self.reactor.call_soon(callback, *args)
