"""One non-blocking connect, TLS handshake included, driven by the reactor.

The links to the acquirers (drivers/hostlink.py: ISO 8583 frames; drivers/qrlink.py:
HTTPS) both open their connection this way:

    connector = TlsConnector(reactor, host, port, ssl_context, server_hostname,
                             timeout_ms, on_open, on_fail, peer="the host", words=None,
                             name="tls")
    connector.start()

resolves host (a numeric address at once; a name in a short-lived helper thread that
posts its answer to the loop, since a DNS lookup has no descriptor to wait on), tries
each of its addresses in turn with a non-blocking connect that completes on POLLOUT,
then steps the TLS handshake on POLLIN/POLLOUT (ssl_context None: plain TCP, the lab's
host simulator without TLS). Nothing blocks the loop. timeout_ms covers all of it.

It ends in exactly one of, each called from the loop (on_fail may also come from
inside start(), when no address can even be tried):

    on_open(sock)        the connected (and TLS-wrapped) non-blocking socket, no longer
                         watched by the reactor: the caller owns it from here
    on_fail(reason, cause, untrusted)
                         the socket is closed; reason is a sentence for the person,
                         cause one of "dns", "refused", "unreachable",
                         "connect_timeout", "tls", "untrusted"; untrusted is None, or
                         for a server certificate that failed its check, what it says
                         about the server: "ca" | "name" | "expired" | "other"
                         (cert_problem)

or in neither, after cancel(). A connector serves one attempt: a reconnect is a new
one, so a late DNS answer or timer of an old attempt cannot touch a new connection.

Watch(reactor, sock, on_ready, on_dead) is a socket's place on the reactor: the events
it waits for (want), and its end (close, or release to keep the socket). The connector
watches its socket with one, and so do the links the open connection.

The reasons name the other end as peer ("the host", "the QR acquirer") in the
sentences of WORDS; words replaces any of them for a link that says it its own way.
The templates are filled in with peer, host, where (host:port), seconds (of
timeout_ms), detail (what the system said), verify (OpenSSL's words for a failed
certificate) and advice (what to check, for the untrusted certificate's kind).
"""
import errno
import os
import socket
import ssl
import threading

from firmware.core.reactor import POLLIN, POLLOUT

IDLE = "idle"                   # no attempt under way (not started, failed or cancelled)
RESOLVING = "resolving"
CONNECTING = "connecting"
HANDSHAKE = "handshake"
OPEN = "open"                   # handed over to on_open

_IN_PROGRESS = (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY)


def make_client_context(ca_file, cert_file=None, key_file=None):
    """A TLS client context that trusts only the acquirer's CA and checks the host name.

    The system's CA store is deliberately not loaded: the terminal talks to one host,
    and pinning its CA means a certificate bought from any public CA cannot stand in.
    cert_file/key_file give the terminal's own certificate where the acquirer wants
    mutual TLS.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)      # CERT_REQUIRED + check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=ca_file)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


# OpenSSL's verify codes (X509_V_ERR_*) of a certificate that failed its check, by what
# the technician has to look at; any other code is "other"
_CERT_CA = (2, 7, 18, 19, 20, 21, 24)   # unknown issuer, bad signature, self-signed, not a CA
_CERT_NAME = (62, 63, 64)               # host name, e-mail or IP address mismatch
_CERT_DATES = (9, 10)                   # not yet valid, expired


def cert_problem(exc):
    """What a failed certificate check (ssl.SSLCertVerificationError) says about the
    host: "ca" (not issued under the pinned CA), "name" (issued for another host),
    "expired" (outside its dates, by the terminal's clock) or "other"."""
    code = getattr(exc, "verify_code", None)
    if code in _CERT_CA:
        return "ca"
    if code in _CERT_NAME:
        return "name"
    if code in _CERT_DATES:
        return "expired"
    return "other"


_CERT_WORDS = {
    "ca": "it is not from the pinned CA: check the CA file, or someone is in the middle",
    "name": "it was issued for another host than %s: check the host name, or someone is "
            "in the middle",
    "expired": "it is expired or not yet valid: check the terminal's clock and the host's "
               "certificate",
    "other": "check the pinned CA file and the host's certificate",
}

# what failed -> the reason's template (filled in as the module's docstring says)
WORDS = {
    "dns": "cannot find {peer} {host}: check the host name and the network",
    "refused": "{peer} {where} refused the connection: is the service running?",
    "no_route": "no route to {peer} {where}: check the network",
    "etimedout": "cannot connect to {peer} {where}: {detail}",     # the kernel's ETIMEDOUT
    "other": "cannot connect to {peer} {where}: {detail}",
    "deadline": "{peer} {where} did not answer within {seconds} s",  # timeout_ms passed
    "tls_setup": "TLS setup failed: {detail}",
    "tls": "TLS handshake with {peer} failed: {detail}",
    "lost": "connection lost during the TLS handshake: {detail}",
    "hangup": "connection lost during the TLS handshake",
    "untrusted": "TLS: {peer}'s certificate is not trusted ({verify}): {advice}",
}
# what failed -> the cause on_fail is given
CAUSES = {"dns": "dns", "refused": "refused", "no_route": "unreachable",
          "etimedout": "unreachable", "other": "unreachable", "deadline": "connect_timeout",
          "tls_setup": "tls", "tls": "tls", "lost": "tls", "hangup": "tls",
          "untrusted": "untrusted"}
# a connect's errno -> what failed ("other" for any other)
_ERRNO_WORDS = {errno.ECONNREFUSED: "refused", errno.ENETUNREACH: "no_route",
                errno.EHOSTUNREACH: "no_route", errno.ETIMEDOUT: "etimedout"}


class Watch:
    """A non-blocking socket on the reactor: on_ready(fd, revents) when it is ready for
    what want() asked, on_dead(fd, reason) when the reactor drops it (hang-up, error)."""

    def __init__(self, reactor, sock, on_ready, on_dead):
        self.reactor = reactor
        self.sock = sock
        self.fd = sock.fileno()
        self.on_ready = on_ready
        self.on_dead = on_dead
        self.events = 0             # what the reactor watches it for; 0: not watched

    def want(self, events):
        """Wait for events (POLLIN, POLLOUT or both) from now on."""
        if events != self.events:
            self.events = events
            if self.reactor.watching(self.fd):
                self.reactor.modify(self.fd, events)
            else:
                self.reactor.add_reader(self.fd, self.on_ready, self.on_dead, events)

    def dropped(self):
        """The reactor let it go (before on_dead): the next want() watches it again."""
        self.events = 0

    def release(self):
        """Off the reactor; the socket stays open, and is returned."""
        self.reactor.remove(self.fd)
        self.events = 0
        return self.sock

    def close(self):
        """Off the reactor, and closed."""
        self.release()
        try:
            self.sock.close()
        except OSError:
            pass


class TlsConnector:
    """One attempt to connect to host:port (see the module's docstring)."""

    def __init__(self, reactor, host, port, ssl_context, server_hostname, timeout_ms,
                 on_open, on_fail, peer="the host", words=None, name="tls"):
        self.reactor = reactor
        self.host = host
        self.port = int(port)
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname or host
        self.timeout_ms = timeout_ms
        self.on_open = on_open
        self.on_fail = on_fail
        self.peer = peer
        self.words = dict(WORDS, **words) if words else WORDS
        self.name = name
        self.phase = IDLE
        self._watch = None          # the socket of the address being tried
        self._addrs = []
        self._last_error = None     # the OSError of the last address tried
        self._timer = None

    def start(self):
        self.phase = RESOLVING
        self._timer = self.reactor.call_later(self.timeout_ms, self._timed_out)
        try:
            addrs = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM, 0,
                                       socket.AI_NUMERICHOST)
        except socket.gaierror:
            # A name: the lookup may wait on the network, so it goes to a thread.
            threading.Thread(target=self._lookup, daemon=True,
                             name=self.name + "-dns").start()
            return
        self._resolved(addrs, None)

    def cancel(self):
        """Give up the attempt, quietly: neither on_open nor on_fail is called."""
        self._close()

    # -- resolving ------------------------------------------------------------------------
    def _lookup(self):
        # the helper thread: only reactor.post() from here
        try:
            addrs = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)
            self.reactor.post(self._resolved, addrs, None)
        except OSError as exc:
            self.reactor.post(self._resolved, None, exc)

    def _resolved(self, addrs, exc):
        if self.phase != RESOLVING:
            return                      # cancelled, or timed out, meanwhile
        if exc is not None or not addrs:
            self._fail("dns")
            return
        self._addrs = list(addrs)
        self._next_address()

    # -- connecting -----------------------------------------------------------------------
    def _next_address(self):
        while self._addrs:
            family, kind, proto, _, sockaddr = self._addrs.pop(0)
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                self._last_error = exc
                continue
            sock.setblocking(False)
            err = sock.connect_ex(sockaddr)
            if err == 0 or err in _IN_PROGRESS:
                self._watch = Watch(self.reactor, sock, self._on_ready, self._on_dead)
                self.phase = CONNECTING
                self._watch.want(POLLOUT)
                return
            sock.close()
            self._last_error = OSError(err, os.strerror(err))
        exc = self._last_error
        code = exc.errno if isinstance(exc, OSError) else None
        self._fail(_ERRNO_WORDS.get(code, "other"),
                   detail=getattr(exc, "strerror", None) or exc)

    def _connected(self):
        watch = self._watch
        err = watch.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._drop_socket()
            self._last_error = OSError(err, os.strerror(err))
            self._next_address()            # the host's next address, if any
            return
        if self.ssl_context is None:
            self._opened()
            return
        try:
            watch.sock = self.ssl_context.wrap_socket(
                watch.sock, server_hostname=self.server_hostname, do_handshake_on_connect=False)
        except (ssl.SSLError, OSError, ValueError) as exc:
            self._fail("tls_setup", detail=exc)
            return
        self.phase = HANDSHAKE
        self._handshake()

    def _handshake(self):
        try:
            self._watch.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch.want(POLLIN)
            return
        except ssl.SSLWantWriteError:
            self._watch.want(POLLOUT)
            return
        except ssl.SSLCertVerificationError as exc:
            kind = cert_problem(exc)
            advice = _CERT_WORDS[kind]
            if kind == "name":
                advice = advice % self.server_hostname
            self._fail("untrusted", untrusted=kind, verify=exc.verify_message or exc.reason,
                       advice=advice)
            return
        except ssl.SSLError as exc:
            self._fail("tls", detail=exc.reason or exc)
            return
        except OSError as exc:
            self._fail("lost", detail=exc.strerror or exc)
            return
        self._opened()

    def _timed_out(self):
        self._timer = None
        if self.phase in (RESOLVING, CONNECTING, HANDSHAKE):
            self._fail("deadline")

    # -- the descriptor -------------------------------------------------------------------
    def _on_ready(self, fd, revents):
        if self._watch is None or fd != self._watch.fd:
            return
        if self.phase == CONNECTING:
            self._connected()
        elif self.phase == HANDSHAKE:
            self._handshake()

    def _on_dead(self, fd, reason):
        # The reactor already unregistered fd (hang-up or error without data).
        if self._watch is None or fd != self._watch.fd:
            return
        self._watch.dropped()
        if self.phase == CONNECTING:
            self._connected()               # SO_ERROR holds the reason
        elif self.phase == HANDSHAKE:
            self._fail("hangup")

    # -- the end --------------------------------------------------------------------------
    def _opened(self):
        sock = self._watch.release()            # the caller's now
        self._watch = None
        self._close()
        self.phase = OPEN
        self.on_open(sock)

    def _fail(self, what, untrusted=None, detail=None, verify=None, advice=None):
        self._close()
        reason = self.words[what].format(
            peer=self.peer, host=self.host, where="%s:%d" % (self.host, self.port),
            seconds=self.timeout_ms // 1000, detail=detail, verify=verify, advice=advice)
        self.on_fail(reason, CAUSES[what], untrusted)

    def _close(self):
        self.phase = IDLE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._addrs = []
        self._drop_socket()

    def _drop_socket(self):
        if self._watch is not None:
            self._watch.close()
            self._watch = None
