"""A TCP fault proxy between the terminal and the host simulator, on loopback only.

    terminal --> 127.0.0.1:LISTEN (faultproxy) --> 127.0.0.1:UPSTREAM (tools/host/hostsim.py)

It forwards bytes both ways and, on command, breaks the link the ways a real network
and a real acquirer do, so the terminal's timeouts, reversals and reply matching can be
tested on purpose instead of by luck. "up" is terminal -> host, "down" host -> terminal.

Faults (one at a time; switch at run time with set(), or over the control socket):

    pass                          forward as is (the default)
    drop                          accept and black-hole: new connections get no upstream,
                                  bytes of existing ones are read and thrown away
    delay      up_ms, down_ms     hold each chunk (or frame) this long before forwarding
               (or ms for both)
    reset      existing, new      RST (SO_LINGER 0) the open connections (existing=True) and
                                  every new one right after accepting it (new=True)
    half_open  direction          stop forwarding "up" or "down" (default) without closing
    split      at, pause_ms       write each reply frame in two pieces: the first `at` bytes
                                  (default: half the frame), a pause, then the rest
    merge      count, hold_ms     hold reply frames and write `count` (default 2) in one
                                  write; what is held longer than hold_ms goes anyway
    duplicate                     write each reply frame twice
    garble     offset, length     XOR `length` bytes (default 1) of each reply frame's body
               mask               from `offset` (default 0, the MTI) with mask (0xFF); the
                                  length prefix is left alone
    refuse                        stop listening: connects get ECONNREFUSED; any other fault
                                  listens again on the same port

Every fault also takes times=N: after N applications it falls back to pass.

Frames and TLS. split, merge, duplicate and garble work on frames (2-byte big-endian
length, then the ISO 8583 message), so they need the link in plain TCP: start the host
simulator with --no-tls and set the terminal's [host] tls = false. Over TLS the proxy
sees only ciphertext; it notices a TLS ClientHello (first byte 0x16) and forwards that
connection as raw chunks, where pass, drop, delay, reset, half_open and refuse still
work and the frame faults do nothing (they are counted under "skipped"). framed=False
forces raw mode, framed=True forces frame mode.

Control socket (JSON lines over a Unix socket, like tools/sim/control.py), one object a line:

    {"cmd": "set", "fault": "split", "pause_ms": 200}   -> {"ok": true, "fault": ..., "params": ...}
    {"cmd": "get"}                                      -> {"ok": true, "fault": ..., "params": ...}
    {"cmd": "stats"}                                    -> {"ok": true, "stats": {...}}
    {"cmd": "quit"}                                     -> {"ok": true}, then the proxy stops

Command line:

    python -m tools.host.faultproxy --listen 8584 --upstream 8583 --control /tmp/faultproxy.sock
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

HOST = "127.0.0.1"          # the only address this tool ever binds or connects to
MAX_FRAME = 65535           # what a 2-byte length can announce; forwarded even past 8192
CHUNK = 65536
MAX_CONNECTIONS = 64
MAX_MERGE = 16
MAX_DELAY_MS = 120000
MAX_PAUSE_MS = 30000
CONNECT_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
MAX_LINE = 65536

FAULTS = ("pass", "drop", "delay", "reset", "half_open", "split", "merge", "duplicate",
          "garble", "refuse")
FRAME_FAULTS = ("split", "merge", "duplicate", "garble")
_PARAMS = {
    "pass": {},
    "drop": {},
    "delay": {"up_ms": 0, "down_ms": 0},
    "reset": {"existing": True, "new": True},
    "half_open": {"direction": "down"},
    "split": {"at": None, "pause_ms": 100},
    "merge": {"count": 2, "hold_ms": 1000},
    "duplicate": {},
    "garble": {"offset": 0, "length": 1, "mask": 0xFF},
    "refuse": {},
}


def _bounded_int(params, name, low, high):
    value = params[name]
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError("%s must be an integer from %d to %d, not %r" % (name, low, high, value))


def normalise(fault, params):
    """The fault's full parameter dict, checked; ValueError says what is wrong."""
    if fault == "delay_ms":
        fault = "delay"
    if fault not in _PARAMS:
        raise ValueError("unknown fault %r; one of %s" % (fault, ", ".join(FAULTS)))
    params = dict(params)
    times = params.pop("times", None)
    if fault == "delay" and "ms" in params:
        ms = params.pop("ms")
        params.setdefault("up_ms", ms)
        params.setdefault("down_ms", ms)
    unknown = set(params) - set(_PARAMS[fault])
    if unknown:
        raise ValueError("%s takes %s, not %s" % (fault, ", ".join(sorted(_PARAMS[fault])) or
                                                  "no parameters", ", ".join(sorted(unknown))))
    full = dict(_PARAMS[fault], **params)
    if fault == "delay":
        _bounded_int(full, "up_ms", 0, MAX_DELAY_MS)
        _bounded_int(full, "down_ms", 0, MAX_DELAY_MS)
    elif fault == "half_open" and full["direction"] not in ("up", "down"):
        raise ValueError("direction must be 'up' or 'down', not %r" % (full["direction"],))
    elif fault == "split":
        _bounded_int(full, "at", 1, MAX_FRAME + 1)
        _bounded_int(full, "pause_ms", 0, MAX_PAUSE_MS)
    elif fault == "merge":
        _bounded_int(full, "count", 2, MAX_MERGE)
        _bounded_int(full, "hold_ms", 0, MAX_PAUSE_MS)
    elif fault == "garble":
        _bounded_int(full, "offset", 0, MAX_FRAME)
        _bounded_int(full, "length", 1, MAX_FRAME)
        _bounded_int(full, "mask", 1, 0xFF)
    elif fault == "reset":
        full["existing"], full["new"] = bool(full["existing"]), bool(full["new"])
    if times is not None:
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer, not %r" % (times,))
        full["times"] = times
    return fault, full


def _rst(writer):
    """Close with an RST instead of a FIN: SO_LINGER on, timeout 0."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class _Link:
    """One proxied connection: the terminal's side and (unless black-holed) the host's."""

    def __init__(self, proxy, c_reader, c_writer):
        self.proxy = proxy
        self.c_reader, self.c_writer = c_reader, c_writer
        self.u_reader = self.u_writer = None
        self.framed = proxy.framed          # None until the first byte up decides
        self.mode_known = asyncio.Event()
        if self.framed is not None:
            self.mode_known.set()
        self.tasks = []
        self.held = []                      # merge: reply frames waiting
        self.flush_handle = None
        self.aborted = False

    def abort(self):
        """RST both sides now."""
        self.aborted = True
        for writer in (self.c_writer, self.u_writer):
            if writer is not None and not writer.is_closing():
                _rst(writer)
        for task in self.tasks:
            task.cancel()

    def close(self):
        if self.flush_handle is not None:
            self.flush_handle.cancel()
        for writer in (self.c_writer, self.u_writer):
            if writer is not None and not writer.is_closing():
                writer.close()

    async def run(self):
        proxy = self.proxy
        fault, params = proxy.get()
        if fault == "reset" and params["new"]:
            proxy._applied("reset")
            _rst(self.c_writer)
            return
        if fault == "drop":
            proxy._applied("drop")
            await self._black_hole()
            return
        try:
            self.u_reader, self.u_writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, proxy.upstream_port), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            proxy._count("upstream_failures")
            self.close()
            return
        up = asyncio.ensure_future(self._pump("up", self.c_reader, self.u_writer))
        down = asyncio.ensure_future(self._pump("down", self.u_reader, self.c_writer))
        self.tasks = [up, down]
        try:
            # The host closing ends the link; the terminal closing its side lets the
            # replies still on their way reach it first (bounded by idle_s).
            await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
            if up.done() and not down.done():
                await asyncio.wait([down], timeout=proxy.idle_s)
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if not self.aborted:
                self.close()

    async def _black_hole(self):
        try:
            while True:
                data = await asyncio.wait_for(self.c_reader.read(CHUNK), self.proxy.idle_s)
                if not data:
                    break
        except (OSError, asyncio.TimeoutError):
            pass
        self.close()

    async def _read_unit(self, direction, reader):
        """The next frame (framed mode) or chunk (raw mode); b"" at end of stream."""
        if direction == "up" and self.framed is None:
            first = await reader.read(1)
            if not first:
                return b""
            self.framed = first[0] != 0x16            # a TLS record header: handshake
            self.mode_known.set()
            if not self.framed:
                return first + await reader.read(CHUNK)
            return await self._rest_of_frame(reader, first)
        if direction == "down" and not self.mode_known.is_set():
            await self.mode_known.wait()
        if not self.framed:
            return await reader.read(CHUNK)
        return await self._rest_of_frame(reader, b"")

    async def _rest_of_frame(self, reader, start):
        # A stream that ends inside a frame: forward what came, then the end.
        try:
            head = start + await reader.readexactly(2 - len(start))
        except asyncio.IncompleteReadError as exc:
            return start + exc.partial
        try:
            return head + await reader.readexactly(int.from_bytes(head, "big"))
        except asyncio.IncompleteReadError as exc:
            return head + exc.partial

    async def _pump(self, direction, reader, writer):
        proxy = self.proxy
        try:
            while True:
                unit = await asyncio.wait_for(self._read_unit(direction, reader), proxy.idle_s)
                if not unit:
                    break
                proxy._count(("frames_" if self.framed else "chunks_") + direction)
                proxy._count("bytes_" + direction, len(unit))
                await self._forward(direction, unit, writer)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            if direction == "down":
                try:
                    await self._flush(writer)
                except (OSError, asyncio.TimeoutError):
                    pass
            if not self.aborted and not writer.is_closing():
                try:
                    writer.write_eof()
                except (OSError, RuntimeError):
                    pass

    async def _forward(self, direction, unit, writer):
        proxy = self.proxy
        fault, params = proxy.get()
        if fault == "drop" or (fault == "half_open" and params["direction"] == direction):
            proxy._applied(fault)
            return
        if fault == "delay":
            ms = params[direction + "_ms"]
            if ms:
                proxy._applied("delay")
                await asyncio.sleep(ms / 1000.0)
        if direction == "down" and fault in FRAME_FAULTS:
            if not self.framed:
                proxy._count("skipped")
            else:
                await self._frame_fault(fault, params, unit, writer)
                return
        if direction == "down":
            await self._flush(writer)
        await self._write(writer, unit)

    async def _frame_fault(self, fault, params, frame, writer):
        proxy = self.proxy
        proxy._applied(fault)
        if fault == "duplicate":
            await self._write(writer, frame)
            await self._write(writer, frame)
        elif fault == "garble":
            body = bytearray(frame)
            start = 2 + params["offset"]
            for i in range(start, min(len(body), start + params["length"])):
                body[i] ^= params["mask"]
            await self._write(writer, bytes(body))
        elif fault == "split":
            at = params["at"] if params["at"] is not None else max(1, len(frame) // 2)
            at = min(at, len(frame) - 1) if len(frame) > 1 else 1
            await self._write(writer, frame[:at])
            await asyncio.sleep(params["pause_ms"] / 1000.0)
            await self._write(writer, frame[at:])
        elif fault == "merge":
            self.held.append(frame)
            if len(self.held) >= params["count"]:
                await self._flush(writer)
            elif self.flush_handle is None:
                loop = asyncio.get_running_loop()
                self.flush_handle = loop.call_later(
                    params["hold_ms"] / 1000.0,
                    lambda: asyncio.ensure_future(self._flush(writer)))

    async def _flush(self, writer):
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        if self.held:
            data, self.held = b"".join(self.held), []
            await self._write(writer, data)

    async def _write(self, writer, data):
        if writer.is_closing():
            raise ConnectionResetError("closed")
        writer.write(data)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)


class FaultProxy:
    """Listens on 127.0.0.1:listen_port (0: any free port), forwards to 127.0.0.1:upstream_port.

    start() runs it on an asyncio loop in a thread and returns the port it listens on;
    set(fault, **params) switches the fault; stats() gives the counters; stop() ends it
    all within a few seconds.
    """

    def __init__(self, listen_port, upstream_port, framed=None, control_path=None,
                 idle_s=120.0, log=None):
        self.listen_port = int(listen_port)
        self.upstream_port = int(upstream_port)
        self.framed = framed
        self.control_path = control_path
        self.idle_s = float(idle_s)
        self.log = log or (lambda line: None)
        self.port = None
        self._fault = ("pass", {})
        self._lock = threading.Lock()
        self._stats = {}
        self._faults_applied = {}
        self._links = set()
        self._server = None
        self._control = None
        self._loop = None
        self._thread = None
        self._stopped = None

    # -- the fault and the counters (any thread) ------------------------------------------
    def get(self):
        with self._lock:
            return self._fault[0], dict(self._fault[1])

    def stats(self):
        """connections, active, frames_up/down (chunks_* over TLS), bytes_up/down,
        upstream_failures, skipped, faults {name: times applied}."""
        with self._lock:
            out = dict(self._stats)
            out["faults"] = dict(self._faults_applied)
        for key in ("connections", "frames_up", "frames_down", "chunks_up", "chunks_down",
                    "bytes_up", "bytes_down", "upstream_failures", "skipped"):
            out.setdefault(key, 0)
        out["active"] = len(self._links)
        return out

    def _count(self, key, n=1):
        with self._lock:
            self._stats[key] = self._stats.get(key, 0) + n

    def _applied(self, fault):
        with self._lock:
            self._faults_applied[fault] = self._faults_applied.get(fault, 0) + 1
            name, params = self._fault
            if name == fault and "times" in params:
                params["times"] -= 1
                if params["times"] <= 0:
                    self._fault = ("pass", {})

    def set(self, fault, **params):
        """Switch to fault (see the module's table); returns (fault, params) in force."""
        fault, params = normalise(fault, params)
        if self._loop is None:                  # not started: takes effect with start()
            with self._lock:
                self._fault = (fault, params)
            return fault, dict(params)
        if threading.current_thread() is self._thread:
            raise RuntimeError("set() is for other threads; inside the loop await _apply()")
        return asyncio.run_coroutine_threadsafe(self._apply(fault, params),
                                                self._loop).result(10)

    async def _apply(self, fault, params):
        with self._lock:
            self._fault = (fault, params)
        self.log("fault: %s %s" % (fault, json.dumps(params)))
        if fault == "refuse":
            if self._server is not None:
                self._server.close()
                self._server = None
                self._applied("refuse")
        elif self._server is None and self._loop is not None:
            await self._listen()
        if fault == "reset" and params["existing"]:
            for link in list(self._links):
                self._applied("reset")
                link.abort()
        return fault, dict(params)

    # -- serving -----------------------------------------------------------------------
    async def _listen(self):
        # reuse_address: listening again after refuse while old connections sit in TIME_WAIT
        self._server = await asyncio.start_server(
            self._connection, HOST, self.port or self.listen_port, reuse_address=True,
            backlog=MAX_CONNECTIONS)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _connection(self, reader, writer):
        if len(self._links) >= MAX_CONNECTIONS:
            _rst(writer)
            self._count("over_limit")
            return
        self._count("connections")
        link = _Link(self, reader, writer)
        self._links.add(link)
        try:
            await link.run()
        except asyncio.CancelledError:
            link.abort()
        except Exception as exc:                # one broken link never stops the proxy
            self.log("link error: %r" % (exc,))
            link.abort()
        finally:
            self._links.discard(link)

    async def serve(self):
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        if self._fault[0] != "refuse":
            await self._listen()
        if self.control_path:
            if os.path.exists(self.control_path):
                os.unlink(self.control_path)
            self._control = await asyncio.start_unix_server(self._control_client,
                                                             self.control_path)

    async def _control_client(self, reader, writer):
        try:
            while True:
                line = await asyncio.wait_for(reader.readline(), self.idle_s)
                if not line:
                    break
                if len(line) > MAX_LINE or not line.endswith(b"\n"):
                    break
                answer, quit_after = await self._control_request(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
                if quit_after:
                    self._stopped.set()
                    break
        except (OSError, asyncio.TimeoutError, ValueError):
            pass
        finally:
            writer.close()

    async def _control_request(self, line):
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
            cmd = req.pop("cmd", None)
            if cmd == "set":
                fault = req.pop("fault", None)
                params = req.pop("params", None) or req
                fault, params = await self._apply(*normalise(fault, params))
                return {"ok": True, "fault": fault, "params": params}, False
            if cmd == "get":
                fault, params = self.get()
                return {"ok": True, "fault": fault, "params": params}, False
            if cmd == "stats":
                return {"ok": True, "stats": self.stats()}, False
            if cmd == "quit":
                return {"ok": True}, True
            raise ValueError("unknown cmd %r; one of set, get, stats, quit" % (cmd,))
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}, False

    async def _shutdown(self):
        for server in (self._server, self._control):
            if server is not None:
                server.close()
        self._server = self._control = None
        for link in list(self._links):
            link.abort()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        if self.control_path and os.path.exists(self.control_path):
            os.unlink(self.control_path)

    def start(self):
        """Serve from a background thread; returns the listening port."""
        ready = threading.Event()
        failed = []
        loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.serve())
            except Exception as exc:
                failed.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
                # Let the aborted transports' close callbacks run before the loop goes.
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.wait_for(
                    asyncio.gather(*pending, asyncio.sleep(0.01), return_exceptions=True), 1.0))
            except Exception:
                pass
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault proxy did not start within 10 s")
        if failed:
            self._loop = None
            raise failed[0]
        return self.port

    def stop(self, timeout=5.0):
        """Close the listener and every connection (with RST); returns within ~timeout."""
        if self._thread is None or self._loop is None:
            return
        deadline = time.monotonic() + timeout
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout / 2)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(max(0.1, deadline - time.monotonic()))
        self._thread = None
        self._loop = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class ControlClient:
    """The JSON-lines control socket from another process (a chaos driver)."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")

    def call(self, cmd, **args):
        self.sock.sendall(json.dumps(dict(args, cmd=cmd)).encode() + b"\n")
        line = self.file.readline(MAX_LINE)
        if not line:
            raise ConnectionError("fault proxy closed the control socket")
        return json.loads(line)

    def set(self, fault, **params):
        answer = self.call("set", fault=fault, params=params)
        if not answer.get("ok"):
            raise ValueError(answer.get("error"))
        return answer

    def stats(self):
        return self.call("stats")["stats"]

    def close(self):
        self.file.close()
        self.sock.close()


# -- the command ------------------------------------------------------------------------------------

def _port(value):
    if ":" in value:
        host, _, value = value.rpartition(":")
        if host not in ("127.0.0.1", "localhost", ""):
            raise argparse.ArgumentTypeError("the fault proxy works on 127.0.0.1 only")
    if not value.isdigit() or not 0 <= int(value) < 65536:
        raise argparse.ArgumentTypeError("must be a port number (or 127.0.0.1:port)")
    return int(value)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m tools.host.faultproxy",
                                description="a TCP fault proxy between the terminal and hostsim "
                                            "(127.0.0.1 only)")
    p.add_argument("--listen", type=_port, required=True, help="port to listen on")
    p.add_argument("--upstream", type=_port, required=True, help="port of the host simulator")
    p.add_argument("--control", help="path of a Unix socket taking JSON-line commands")
    p.add_argument("--framed", choices=("auto", "yes", "no"), default="auto",
                   help="frame-aware (plain TCP) or raw (TLS); auto: decide per connection")
    p.add_argument("--fault", default="pass", help="the fault to start with (default pass)")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)

    def log(line):
        if not args.quiet:
            sys.stdout.write("%s faultproxy: %s\n" % (time.strftime("%H:%M:%S"), line))
            sys.stdout.flush()

    framed = {"auto": None, "yes": True, "no": False}[args.framed]
    proxy = FaultProxy(args.listen, args.upstream, framed=framed, control_path=args.control,
                       log=log)

    async def run():
        try:
            await proxy.serve()
        except OSError as exc:
            sys.stderr.write("faultproxy: cannot listen: %s\n" % (exc.strerror or exc))
            return 1
        try:
            await proxy._apply(*normalise(args.fault, {}))
        except ValueError as exc:
            sys.stderr.write("faultproxy: %s\n" % exc)
            await proxy._shutdown()
            return 2
        print("faultproxy: 127.0.0.1:%d -> 127.0.0.1:%d%s" % (
            proxy.port, proxy.upstream_port,
            ", control %s" % args.control if args.control else ""))
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, proxy._stopped.set)
        await proxy._stopped.wait()
        await proxy._shutdown()
        return 0

    try:
        return asyncio.run(run())
    except asyncio.CancelledError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
