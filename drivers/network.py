"""Network settings and checks over NetworkManager's nmcli, without blocking the loop.

The terminal asks (firmware/flows/network.py, firmware/flows/troubleshoot.py):

    network.status(done)                 done(status | None, error)
    network.scan(done)                   done([{"ssid", "signal", "security", "in_use"}], error)
    network.join(ssid, psk, done)        done(ok, error)
    network.set_ipv4(cfg, done)          cfg: {"method": "auto"} or {"method": "manual",
                                         "address", "prefix", "gateway", "dns"}; done(ok, error)
    network.lookup(host, done)           done([addresses], error): DNS only
    network.probe(host, port, done)      done(result): TCP connect and TLS handshake to the
                                         host, result {"tcp": ok, "tls": ok|None, "cause",
                                         "reason"} (drivers/tlsconnect.py does the work)

status is {"devices": [{"device", "type", "state", "connection"}], "active": the first
connected wifi or ethernet device or None, "address" "192.168.1.23/24", "gateway",
"dns": [...], "method": "auto" | "manual"}. error is None or one sentence for the person.

Every nmcli run is a child process whose stdout and stderr pipes the reactor watches
(NmcliRunner); its exit status is collected without waiting (a short timer while the
child closes its pipes before it has exited). The commands, always terse (-t) with
the fields named (-f), so a new nmcli release adding a column changes nothing:

    nmcli -t -f DEVICE,TYPE,STATE,CONNECTION device status
    nmcli -t -f IP4.ADDRESS,IP4.GATEWAY,IP4.DNS,GENERAL.CONNECTION device show DEV
    nmcli -t -f connection.id,ipv4.method connection show ID
    nmcli -t -f IN-USE,SSID,SIGNAL,SECURITY device wifi list --rescan yes
    nmcli -w 30 device wifi connect SSID password PSK [ifname DEV]
    nmcli connection modify ID ipv4.method manual ipv4.addresses A/P ipv4.gateway G ipv4.dns D
    nmcli connection modify ID ipv4.method auto ipv4.addresses "" ipv4.gateway "" ipv4.dns ""
    nmcli -w 30 connection up ID

The simulator and the tests put tools/sim/fake_nmcli.py on the driver's PATH under the
name nmcli (a JSON state file behind it): this code is the same either way.
"""
import errno
import fcntl
import os
import socket
import subprocess
import threading

from drivers import tlsconnect
from firmware.core.reactor import POLLIN

NMCLI_TIMEOUT_MS = 45000        # a Wi-Fi join waits up to 30 s inside nmcli (-w 30)
PROBE_TIMEOUT_MS = 8000
DNS_TIMEOUT_MS = 6000


def split_terse(line):
    """One line of nmcli -t output: fields split on ':' that is not escaped ('\\:'),
    escapes taken out."""
    fields = []
    cur = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            cur.append(line[i + 1])
            i += 2
            continue
        if ch == ":":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    fields.append("".join(cur))
    return fields


def nm_error(rc, out, err):
    """What nmcli said went wrong, in one line (its own words, the 'Error: ' cut)."""
    text = (err or out or "").strip().splitlines()
    line = text[-1] if text else "nmcli exit status %s" % rc
    if line.startswith("Error: "):
        line = line[len("Error: "):]
    return line


class NmcliRunner:
    """Runs nmcli as a child process; its pipes on the reactor, never a wait.

    program: the name or path of nmcli; env: the child's environment (the simulator puts
    the fake's folder first on its PATH)."""

    def __init__(self, reactor, program="nmcli", env=None, timeout_ms=NMCLI_TIMEOUT_MS):
        self.reactor = reactor
        self.program = program
        self.env = env
        self.timeout_ms = timeout_ms
        self.running = []
        self.log = []               # the argv of each run, passphrases blanked (tests, docs)

    def run(self, args, done):
        """done(rc, stdout text, stderr text) on the loop; rc None: it could not run or
        did not end in time (stderr then says so)."""
        shown = list(args)
        if "password" in shown:
            i = shown.index("password")
            if i + 1 < len(shown):
                shown[i + 1] = "***"
        self.log.append([self.program] + shown)
        try:
            proc = subprocess.Popen([self.program] + list(args), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=self.env, close_fds=True)
        except OSError as exc:
            self.reactor.call_soon(done, None, "", "nmcli cannot be run (%s): is "
                                   "NetworkManager installed?" % (exc.strerror or exc))
            return
        job = _Job(self, proc, done)
        self.running.append(job)
        job.start()

    def close(self):
        for job in list(self.running):
            job.kill("the terminal stops")


class _Job:
    def __init__(self, runner, proc, done):
        self.runner = runner
        self.reactor = runner.reactor
        self.proc = proc
        self.done = done
        self.bufs = {}
        self.open = set()
        self.timer = None
        self.ended = False

    def start(self):
        for pipe in (self.proc.stdout, self.proc.stderr):
            fd = pipe.fileno()
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
            self.bufs[fd] = bytearray()
            self.open.add(fd)
            self.reactor.add_reader(fd, self._readable, self._hangup, POLLIN)
        self.timer = self.reactor.call_later(self.runner.timeout_ms, self._timed_out)

    def _readable(self, fd, revents):
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            raise EOFError("eof")
        self.bufs[fd] += data

    def _hangup(self, fd, reason):
        # the reactor has dropped fd: whatever was left was read before
        self.open.discard(fd)
        if not self.open:
            self._reap()

    def _reap(self):
        if self.ended:
            return
        rc = self.proc.poll()
        if rc is None:                  # pipes closed, not exited yet: a moment more
            self.reactor.call_later(5, self._reap)
            return
        out = bytes(self.bufs[self.proc.stdout.fileno()]).decode("utf-8", "replace")
        err = bytes(self.bufs[self.proc.stderr.fileno()]).decode("utf-8", "replace")
        self._end(rc, out, err)

    def _timed_out(self):
        self.timer = None
        self.kill("nmcli did not answer within %d s" % (self.runner.timeout_ms // 1000))

    def kill(self, why):
        if self.ended:
            return
        try:
            self.proc.kill()
        except OSError:
            pass
        for fd in list(self.open):
            self.reactor.remove(fd)
        self.open.clear()
        # reaped without blocking: a killed child exits at once, poll() later collects it
        self.reactor.call_later(50, self.proc.poll)
        self._end(None, "", why)

    def _end(self, rc, out, err):
        self.ended = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for pipe in (self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        if self in self.runner.running:
            self.runner.running.remove(self)
        self.done(rc, out, err)


class _Probe(tlsconnect.TlsConnector):
    """A TlsConnector that remembers which of its steps failed (the person is told
    whether the host was not reached or its TLS failed)."""
    what = None

    def _fail(self, what, untrusted=None, detail=None, verify=None, advice=None):
        err = getattr(self._last_error, "errno", None)
        # a connection accepted and reset at once (a firewall, a proxy cutting the line)
        # is not "no route": the network is there and something on the way cuts it
        self.what = "lost" if what == "other" and err in (errno.ECONNRESET, errno.EPIPE) \
            else what
        tlsconnect.TlsConnector._fail(self, what, untrusted, detail, verify, advice)


# what failed in the probe -> (TCP ok, TLS ok, cause for the walk)
_PROBE_STEPS = {
    "dns": (False, None, "dns"), "refused": (False, None, "refused"),
    "no_route": (False, None, "unreachable"), "etimedout": (False, None, "unreachable"),
    "other": (False, None, "unreachable"), "deadline": (False, None, "timeout"),
    # reset or closed before the server said a word of TLS: something between cut it
    "lost": (False, None, "reset"), "hangup": (False, None, "reset"),
    "tls_setup": (True, False, "tls"), "tls": (True, False, "tls"),
    "untrusted": (True, False, "untrusted"),
}


class NmcliNetwork:
    """The terminal's network (see the module's docstring) over nmcli.

    ssl_context: the host link's (drivers/hostlink.make_client_context), so the probe's
    TLS check is the one payments meet; None for a lab host in plain TCP."""

    def __init__(self, reactor, runner, ssl_context=None, server_hostname=None):
        self.reactor = reactor
        self.runner = runner
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.kind = "nmcli"

    # -- state ------------------------------------------------------------------------
    def status(self, done):
        def devices(rc, out, err):
            if rc != 0:
                done(None, nm_error(rc, out, err))
                return
            devs = []
            for line in out.splitlines():
                if not line.strip():
                    continue
                f = split_terse(line) + ["", "", "", ""]
                if f[1] in ("wifi", "ethernet"):
                    devs.append({"device": f[0], "type": f[1], "state": f[2],
                                 "connection": f[3]})
            status = {"devices": devs, "active": None, "address": "", "gateway": "",
                      "dns": [], "method": "", "connection": ""}
            up = [d for d in devs if d["state"] == "connected"]
            if not up:
                done(status, None)
                return
            status["active"] = up[0]
            self.runner.run(["-t", "-f", "IP4.ADDRESS,IP4.GATEWAY,IP4.DNS,GENERAL.CONNECTION",
                             "device", "show", up[0]["device"]],
                            lambda rc, out, err: shown(status, rc, out, err))

        def shown(status, rc, out, err):
            if rc != 0:
                done(status, nm_error(rc, out, err))
                return
            for line in out.splitlines():
                f = split_terse(line)
                if len(f) < 2:
                    continue
                name, value = f[0], ":".join(f[1:])
                if name.startswith("IP4.ADDRESS") and not status["address"]:
                    status["address"] = value
                elif name == "IP4.GATEWAY":
                    status["gateway"] = value
                elif name.startswith("IP4.DNS") and value:
                    status["dns"].append(value)
                elif name == "GENERAL.CONNECTION":
                    status["connection"] = value
            conn = status["connection"] or status["active"]["connection"]
            if not conn:
                done(status, None)
                return
            self.runner.run(["-t", "-f", "ipv4.method", "connection", "show", conn],
                            lambda rc, out, err: method(status, rc, out, err))

        def method(status, rc, out, err):
            if rc == 0:
                for line in out.splitlines():
                    f = split_terse(line)
                    if f[0] == "ipv4.method" and len(f) > 1:
                        status["method"] = f[1]
            done(status, None)

        self.runner.run(["-t", "-f", "DEVICE,TYPE,STATE,CONNECTION", "device", "status"],
                        devices)

    def scan(self, done):
        def listed(rc, out, err):
            if rc != 0:
                done([], nm_error(rc, out, err))
                return
            nets = {}
            for line in out.splitlines():
                f = split_terse(line)
                if len(f) < 4 or not f[1]:
                    continue                # a hidden network has no name to pick
                signal = int(f[2]) if f[2].isdigit() else 0
                net = {"in_use": f[0] == "*", "ssid": f[1], "signal": signal,
                       "security": f[3]}
                old = nets.get(net["ssid"])
                if old is None or signal > old["signal"]:
                    nets[net["ssid"]] = net     # one row a name: its strongest access point
            done(sorted(nets.values(), key=lambda n: (-n["signal"], n["ssid"])), None)
        self.runner.run(["-t", "-f", "IN-USE,SSID,SIGNAL,SECURITY", "device", "wifi", "list",
                         "--rescan", "yes"], listed)

    def join(self, ssid, psk, done):
        args = ["-w", "30", "device", "wifi", "connect", ssid]
        if psk:
            args += ["password", psk]
        self.runner.run(args, lambda rc, out, err: done(
            rc == 0, None if rc == 0 else nm_error(rc, out, err)))

    def set_ipv4(self, cfg, done):
        """Change the active connection's IPv4 settings, then bring it up again."""
        def have(status, error):
            if status is None or status["active"] is None:
                done(False, error or "no active connection to change")
                return
            conn = status["connection"] or status["active"]["connection"]
            if cfg["method"] == "manual":
                args = ["connection", "modify", conn, "ipv4.method", "manual",
                        "ipv4.addresses", "%s/%d" % (cfg["address"], cfg["prefix"]),
                        "ipv4.gateway", cfg.get("gateway", ""),
                        "ipv4.dns", cfg.get("dns", "")]
            else:
                args = ["connection", "modify", conn, "ipv4.method", "auto",
                        "ipv4.addresses", "", "ipv4.gateway", "", "ipv4.dns", ""]
            self.runner.run(args, lambda rc, out, err: modified(conn, rc, out, err))

        def modified(conn, rc, out, err):
            if rc != 0:
                done(False, nm_error(rc, out, err))
                return
            self.runner.run(["-w", "30", "connection", "up", conn], lambda rc, out, err: done(
                rc == 0, None if rc == 0 else nm_error(rc, out, err)))
        self.status(have)

    # -- the host ---------------------------------------------------------------------
    def lookup(self, host, done):
        """DNS alone: done(addresses, None) or done([], reason). A numeric address is its
        own answer; a name is looked up in a helper thread that posts to the loop (a
        lookup has no descriptor to wait on), as drivers/tlsconnect.py does."""
        try:
            infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM, 0,
                                       socket.AI_NUMERICHOST)
            self.reactor.call_soon(done, [i[4][0] for i in infos], None)
            return
        except socket.gaierror:
            pass
        state = {"done": False}

        def answer(addrs, error):
            if state["done"]:
                return
            state["done"] = True
            timer.cancel()
            done(addrs, error)

        def work():
            try:
                infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
                addrs = []
                for i in infos:
                    if i[4][0] not in addrs:
                        addrs.append(i[4][0])
                self.reactor.post(answer, addrs, None)
            except OSError as exc:
                self.reactor.post(answer, [], "cannot find %s (%s)" % (host, exc.strerror or exc))
        timer = self.reactor.call_later(DNS_TIMEOUT_MS, answer, [],
                                        "no DNS answer for %s within %d s"
                                        % (host, DNS_TIMEOUT_MS // 1000))
        threading.Thread(target=work, daemon=True, name="network-dns").start()

    def probe(self, host, port, done, ssl_context=False):
        """A TCP connect and (with an ssl context) a TLS handshake to host:port, then
        closed: done({"tcp", "tls", "cause", "reason"})."""
        ctx = self.ssl_context if ssl_context is False else ssl_context
        holder = {}

        def opened(sock):
            try:
                sock.close()
            except OSError:
                pass
            done({"tcp": True, "tls": True if ctx is not None else None, "cause": "",
                  "reason": ""})

        def failed(reason, cause, untrusted):
            tcp, tls, why = _PROBE_STEPS.get(holder["c"].what, (False, None, cause))
            done({"tcp": tcp, "tls": tls, "cause": why, "reason": reason})
        conn = _Probe(self.reactor, host, port, ctx, self.server_hostname or host,
                      PROBE_TIMEOUT_MS, opened, failed, peer="the host", name="probe")
        holder["c"] = conn
        conn.start()

    def close(self):
        self.runner.close()


def nmcli_env(folder):
    """The environment of a runner whose nmcli is the program in folder (the simulator's
    fake): folder first on PATH."""
    env = dict(os.environ)
    env["PATH"] = folder + os.pathsep + env.get("PATH", "")
    return env

