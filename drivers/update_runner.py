"""The technician's Update entry on the terminal, the driver side (firmware/flows/update.py
asks; docs/updates.md, "On the terminal").

    updates.bundles()                 [{"path", "name", "version", "floor", "error"}],
                                      the bundles (*.hpup) on the USB stick, newest first
    updates.start(path, on_line, on_end, operator=None)
                                      `handpos update apply PATH` as its own unit; each
                                      line it says goes to on_line(text) on the loop, its
                                      exit status to on_end(rc) (None: it could not start)
    updates.running                   True while one runs

The version shown is what the bundle's manifest says, read without checking its
signature: apply checks it before anything is installed, and refuses in its own words.

Why apply is not a child of the terminal on the device: its step 3 stops
handpos.service, and systemd kills every process of the unit's cgroup with it. So it
runs as a transient unit of its own (`systemd-run --unit handpos-update --collect
--pipe`); --pipe hands it the terminal's pipe as its stdout and stderr, so the terminal
relays its `[n/8]` lines until it is stopped (apply carries on when the pipe breaks:
tools/update.py _say). The simulator and the tests (the profile's [update] runner =
"child") run the same command as a plain child process in a session of its own.

The pipe is read the way drivers/network.py reads nmcli: non-blocking, on the reactor,
the exit status collected without a wait.

The second factor: when the technician gave their authenticator code on the keypad
(MfaCheckFlow), apply is handed a grant on its standard input instead of asking again
(`--grant-stdin`, one line "OPERATOR UTC MAC"): an HMAC under a key derived from the
device's data key over the bundle's path, the operator and the time, which apply checks
with the same key and accepts for GRANT_S seconds. Only a program that opens the
device's keys can make one, the same as can read the enrolments.
"""
import fcntl
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tarfile
import time

from firmware.core.reactor import POLLIN

SUFFIX = ".hpup"
MANIFEST_MAX = 4 * 1024 * 1024
GRANT_PURPOSE = "update_grant"
GRANT_S = 120
LINE_MAX = 4096
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def grant_key(data_key):
    """The grant's HMAC key, derived from the device's data key (tools/update.py derives
    the same to check it)."""
    return hmac.new(bytes(data_key), b"handpos update grant v1", hashlib.sha256).digest()


def grant_mac(key, path, operator, utc):
    msg = ("%s|%s|%d" % (os.path.abspath(path), operator, int(utc))).encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def read_manifest(path):
    """(manifest dict, None) or (None, why) from a bundle's first member, unverified."""
    try:
        with tarfile.open(path, "r:") as tar:
            info = tar.next()
            if info is None or info.name != "manifest.json" or not info.isfile() \
                    or info.size > MANIFEST_MAX:
                return None, "not a handpos bundle"
            manifest = json.loads(tar.extractfile(info).read().decode())
    except (OSError, tarfile.TarError, ValueError, UnicodeError):
        return None, "damaged or cut short"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("version"), str):
        return None, "not a handpos bundle"
    return manifest, None


def _version_key(text):
    try:
        return tuple(int(p) for p in text.split("."))
    except (AttributeError, ValueError):
        return ()


def find_bundles(folder):
    """The bundles in folder and its sub-folders one level down (a stick's own folder)."""
    found = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_file() and entry.name.endswith(SUFFIX):
                found.append(entry.path)
            elif entry.is_dir():
                for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                    if sub.is_file() and sub.name.endswith(SUFFIX) and \
                            not sub.name.startswith("."):
                        found.append(sub.path)
        except OSError:
            continue
    return found


class UpdateRunner:
    """term.updates. config: the terminal's configuration (its [update] usb_path is read
    at each listing); argv(path) the command that applies path; env its environment;
    key: the grant key (None: no grant can be given, apply asks its own code)."""

    def __init__(self, reactor, config, argv, env=None, key=None, new_session=True):
        self.reactor = reactor
        self.config = config
        self.argv = argv
        self.env = env
        self.key = key
        self.new_session = new_session
        self.proc = None
        self.log = []               # each command started (tests, docs)
        self._buf = bytearray()
        self._fd = None

    @property
    def running(self):
        return self.proc is not None

    @property
    def usb_path(self):
        # a relative one (the simulator's .sim-usb) is the checkout's, as the simulator
        # takes its data folder
        return os.path.join(REPO, self.config["update"]["usb_path"])

    def bundles(self):
        out = []
        for path in find_bundles(self.usb_path):
            manifest, why = read_manifest(path)
            out.append({"path": path, "name": os.path.basename(path),
                        "version": manifest["version"] if manifest else "",
                        "floor": (manifest or {}).get("floor") or "", "error": why})
        out.sort(key=lambda b: (_version_key(b["version"]), b["name"]), reverse=True)
        return out

    def start(self, path, on_line, on_end, operator=None):
        if self.proc is not None:
            self.reactor.call_soon(on_end, None)
            return
        argv = self.argv(path)
        grant = None
        if operator is not None and self.key is not None:
            utc = int(time.time())
            grant = "%s %d %s\n" % (operator, utc, grant_mac(self.key, path, operator, utc))
            argv = argv + ["--grant-stdin"]
        self.log.append(argv)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE if grant else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env=self.env, close_fds=True, cwd=REPO,
                                    start_new_session=self.new_session)
        except OSError as exc:
            on_line("cannot start the update: %s" % (exc.strerror or exc))
            self.reactor.call_soon(on_end, None)
            return
        if grant:
            try:
                proc.stdin.write(grant.encode())    # one short line: the pipe takes it whole
                proc.stdin.close()
            except OSError:
                pass
        self.proc = proc
        self._on_line = on_line
        self._on_end = on_end
        self._buf = bytearray()
        fd = self._fd = proc.stdout.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.reactor.add_reader(fd, self._readable, self._hangup, POLLIN)

    def _readable(self, fd, revents):
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            raise EOFError("eof")
        self._buf += data
        while b"\n" in self._buf:
            line, _, rest = bytes(self._buf).partition(b"\n")
            self._buf = bytearray(rest)
            self._line(line)
        if len(self._buf) > LINE_MAX:
            self._line(bytes(self._buf))
            self._buf = bytearray()

    def _line(self, raw):
        text = raw.decode("utf-8", "replace").strip()
        if text:
            self._on_line(text)

    def _hangup(self, fd, reason):
        if self._buf:
            self._line(bytes(self._buf))
            self._buf = bytearray()
        self._reap()

    def _reap(self):
        proc = self.proc
        if proc is None:
            return
        rc = proc.poll()
        if rc is None:                  # the pipe closed before it exited: a moment more
            self.reactor.call_later(20, self._reap)
            return
        try:
            proc.stdout.close()
        except OSError:
            pass
        self.proc = None
        self._fd = None
        self._on_end(rc)

    def close(self):
        """The terminal stops: the apply goes on (it is meant to outlive the terminal);
        only the pipe is let go."""
        if self._fd is not None:
            self.reactor.remove(self._fd)
            self._fd = None


def child_argv(python, data_dir, board, config_file=None, root=None):
    """`python -m tools update apply PATH` for the simulator and the tests."""
    def argv(path):
        out = [python, "-m", "tools", "update", "apply", os.path.abspath(path), "--data", data_dir,
               "--board", board]
        if config_file:
            out += ["--config", config_file]
        if root:
            out += ["--root", root]
        return out
    return argv


def systemd_argv(python, config_file, board, release_dir=REPO, uid=None):
    """The device's: apply as the transient unit handpos-update (not in handpos.service's
    cgroup, so stopping the terminal does not stop it), as this user, from the release
    that runs now (its trusted keys decide), its output on the terminal's pipe."""
    uid = os.getuid() if uid is None else uid

    def argv(path):
        return ["systemd-run", "--unit", "handpos-update", "--collect", "--pipe", "--quiet",
                "--uid", str(uid), "--working-directory", release_dir,
                "--setenv", "PYTHONPATH=" + release_dir,
                python, "-m", "tools", "update", "apply", os.path.abspath(path),
                "--config", config_file, "--board", board]
    return argv


def python():
    return sys.executable
