"""The chaos driver (issue 5, item 7): sales through a flapping network and a terminal
that is killed at random, then a reconciliation of the terminal's journal against the
host's ledger.

In one process it runs the host simulator (tools/host/hostsim.py, TLS) and a fault proxy
(tools/host/faultproxy.py) in front of it; the terminal is a headless simulator in a
subprocess (`python -m tools sim --headless --control SOCK ...`), driven through its
control socket (tools/sim/control.py) the way a person drives it: keys, a swiped card,
the screen.

    hostsim (thread) <-- faultproxy (thread) <-- terminal (subprocess, control socket)

It
  - creates the first supervisor and logs in;
  - takes N card sales (swiped Visa, PIN 1234) with random amounts under 100.00 (so
    an offline approval is allowed): mostly approvals, some .99 (the host books and
    never answers), .97 (answered after 8 s, past the 5 s timeout), .98 (a garbled
    answer), .51 and .05 (declined, or declined after upload when approved offline);
  - meanwhile flaps the proxy at random: pass, reset, drop, delay, half_open, refuse;
  - kills the terminal (SIGKILL) at random moments: at the PIN prompt, while
    authorising, on the result, at idle while the queue uploads; restarts it on the
    same data directory and logs in again;
  - besides the random ones, forces the hard cases once each, so that even a short
    run has them: a network cut during a sale (offline approval, uploaded later), a
    kill while the host has booked the request but not answered (reversed after the
    restart), a host that books and never answers (reversal, then offline approval);
  - at the end lets the store-and-forward queue drain (proxy to pass, "Upload now")
    and reconciles:
      1. every approved card sale in the journal is booked at the host exactly once,
         approved, under its STAN (0220 for an offline one, 0200 for an online one);
      2. every reversed record has no approved booking left at the host;
      3. every approved booking at the host has an approved record in the journal
         (no money the terminal does not know about);
      4. the terminal's total of approved card sales equals the host's net total;
      5. an offline approval declined after upload is counted by neither side;
      and nothing is left waiting (queue records pending or sent, journal records
      sending, reversal_pending or offline_pending).

    python -m tools.host.chaos [--sales N] [--kills K] [--seed S] [--long] [--kill-at PHASES]
                          [--workdir DIR] [--keep] [--json] [--verbose]

--long is 200 sales and 20 kills. It prints the report and exits 1 on any mismatch.
The seed fixes the plan (amounts, which sales are forced or killed and where, the
faults and their lengths); the exact interleaving with the terminal still depends on
timing, so a failing seed usually, not always, fails again.
"""
import argparse
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.sim.control import ControlClient  # noqa: E402
from tools.host.books import money, read_books  # noqa: E402
from tools.host.faultproxy import FaultProxy  # noqa: E402
from tools.host.hostsim import Ledger, ensure_tls  # noqa: E402

TID = "HP000001"
SUPERVISOR_ID = "1"
SUPERVISOR_PIN = "2580"
CARD = "visa_pin"
CARD_PIN = "1234"

SHORT = {"sales": 12, "kills": 3}
LONG = {"sales": 200, "kills": 20}

RESPONSE_TIMEOUT_S = 5
SLOW_MS = 8000                # .97: answered after the terminal's 5 s timeout
RESULT_WAIT_S = 45            # the longest a sale may stay "Authorising"
DRAIN_S = 90

# Host outcomes by the amount's cents (tools/host/hostsim.py)
SILENT, SLOW, GARBLED, NSF, DNH = 99, 97, 98, 51, 5
SPECIAL_CENTS = (5, 51, 54, 55, 91, 97, 98, 99)
ORDINARY_CENTS = [c for c in range(100) if c not in SPECIAL_CENTS]

# The proxy's faults the flapper picks from: (label, fault, params)
FLAPS = (
    ("reset", "reset", {"existing": True, "new": True}),
    ("reset_existing", "reset", {"existing": True, "new": False}),
    ("drop", "drop", {}),
    ("delay_down_7s", "delay", {"up_ms": 0, "down_ms": 7000}),
    ("delay_300ms", "delay", {"up_ms": 300, "down_ms": 300}),
    ("half_open_down", "half_open", {"direction": "down"}),
    ("half_open_up", "half_open", {"direction": "up"}),
    ("refuse", "refuse", {}),
)

# Where a random kill lands: at the PIN prompt (nothing sent yet, uploads held), 0-2.5 s
# after the PIN's ENTER (mid-authorisation, or just after its answer), on the result
# screen (the forwarder starts uploading there), 0-2 s after getting back to idle.
KILL_PHASES = ("pin", "authorising", "result", "idle")

# Phases after the sales (issue 10, item 6), each a few sales of its own:
#   hostkill  the host simulator (a process of its own) SIGKILLed at a random moment of a
#             sale and started again on its ledger a little later
#   diskfull  the terminal's data directory (a tmpfs of TMPFS_MB, mounted as root) filled
#             up: sales while full, a restart while full, then the space freed and sales
#             that must go through without a restart
#   flip      the terminal killed, one byte flipped in a data page of journal.db and of
#             saf.db, restarted: it must start and either go on (the altered record
#             flagged) or stop service saying so; then the technician's repair (the
#             files as they were before the flip put back, as from a backup) and the
#             run goes on, so the books still reconcile
PHASES = ("hostkill", "diskfull", "flip")
PHASE_SALES = {"hostkill": 4, "diskfull": 3, "flip": 2}
TMPFS_MB = 16

# Journal states that must not be left after the drain.
UNSETTLED = ("created", "sending", "reversal_pending", "offline_pending")


class ChaosError(Exception):
    """The driver could not go on (the terminal stuck, gone, or on an unknown screen)."""


class TerminalDied(ChaosError):
    """The terminal's process ended without being killed."""


# -- the terminal subprocess -------------------------------------------------------------

class Terminal:
    """The headless simulator in a subprocess, and a control client to it."""

    def __init__(self, workdir, config_path, log):
        self.workdir = workdir
        self.config_path = config_path
        self.data_dir = os.path.join(workdir, "terminal")
        self.sock_path = os.path.join(workdir, "ctl")
        self._sock_dir = None
        if len(self.sock_path) > 100:           # a Unix socket's path holds 107 bytes
            self._sock_dir = tempfile.mkdtemp(prefix="hpchaos-")
            self.sock_path = os.path.join(self._sock_dir, "ctl")
        self.log = log
        self.proc = None
        self.client = None
        self.starts = 0
        self._logfile = None

    def start(self, timeout_s=30):
        if os.path.exists(self.sock_path):
            os.unlink(self.sock_path)
        self.starts += 1
        self._logfile = open(os.path.join(self.workdir, "terminal-%02d.log" % self.starts), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools", "sim", "--headless", "--control", self.sock_path,
             "--config", self.config_path, "--data", self.data_dir, "--host", "external",
             "--chip", "off", "--clock-synced", "yes", "--pin-iterations", "200"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._logfile, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise TerminalDied("the terminal exited at start (rc %s):\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            if os.path.exists(self.sock_path):
                try:
                    self.client = ControlClient(self.sock_path, timeout=30.0)
                    break
                except (ConnectionRefusedError, FileNotFoundError):
                    pass
            if time.monotonic() > deadline:
                raise ChaosError("the terminal's control socket did not appear in %d s" % timeout_s)
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=20):
        try:
            with open(os.path.join(self.workdir, "terminal-%02d.log" % self.starts), "rb") as f:
                return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def call(self, cmd, **args):
        if self.client is None:
            raise TerminalDied("the terminal is not running")
        try:
            answer = self.client.call(cmd, **args)
        except (OSError, ConnectionError, ValueError) as exc:
            if not self.alive():
                raise TerminalDied("the terminal exited (rc %s) during %r:\n%s"
                                   % (self.proc.returncode, cmd, self.log_tail()))
            raise ChaosError("control %r failed: %s" % (cmd, exc))
        return answer

    def press(self, *keys):
        answer = self.call("press", keys=list(keys))
        if not answer.get("ok"):
            raise ChaosError("press %s: %s" % (" ".join(keys), answer.get("error")))

    def top(self):
        """The flow on top as "name:state" ("" for none), and the whole stack."""
        flows = self.call("state")["flows"]
        return (flows[-1] if flows else ""), flows

    def screen(self):
        return self.call("screen")

    def journal(self):
        return self.call("journal")["records"]

    def queue(self):
        return self.call("queue")

    def _close_client(self):
        if self.client is not None:
            try:
                self.client.close()
            except OSError:
                pass
            self.client = None
        if self._logfile is not None:
            self._logfile.close()
            self._logfile = None

    def kill(self):
        """SIGKILL: a power cut as far as the terminal knows."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        self._close_client()

    def stop(self):
        """Quit politely; kill it when it does not go within a few seconds."""
        try:
            if self.proc is not None:
                self._stop()
        finally:
            if self._sock_dir is not None:
                shutil.rmtree(self._sock_dir, ignore_errors=True)
                self._sock_dir = None

    def _stop(self):
        if self.proc.poll() is None and self.client is not None:
            try:
                self.client.sock.settimeout(5)
                self.client.call("quit")
            except (OSError, ConnectionError, ValueError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_client()


# -- the host simulator, a process that can be killed ------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HostProcess:
    """`python -m tools.host.hostsim` on a fixed loopback port with its ledger in data_dir;
    kill() is a SIGKILL, start() again reopens the same ledger. The ledger is read from
    here through its SQLite file (WAL: what the host committed survives the kill)."""

    def __init__(self, data_dir, slow_ms, log):
        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = data_dir
        self.slow_ms = slow_ms
        self.log = log
        self.ca_file = ensure_tls(data_dir)["ca"]
        self.port = _free_port()
        self.proc = None
        self.starts = 0
        self.kills = 0
        self.ledger = None
        self._logfile = None

    def start(self, timeout_s=15):
        self.starts += 1
        self._logfile = open(os.path.join(self.data_dir, "hostsim-%02d.log" % self.starts), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.host.hostsim", "--listen", "127.0.0.1:%d" % self.port,
             "--data", self.data_dir, "--slow-ms", str(self.slow_ms), "--quiet"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._logfile, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise ChaosError("the host simulator exited at start (rc %s)" % self.proc.returncode)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ChaosError("the host simulator did not listen in %d s" % timeout_s)
                time.sleep(0.05)
        if self.ledger is None:
            self.ledger = Ledger(os.path.join(self.data_dir, "ledger.sqlite"))
        return "127.0.0.1", self.port

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.kills += 1
        if self.proc is not None:
            self.proc.wait(10)
        if self._logfile is not None:
            self._logfile.close()
            self._logfile = None

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None


# -- the network flapper -----------------------------------------------------------------

class Flapper(threading.Thread):
    """Switches the proxy between pass and a random fault, each for a short random time.

    hold() keeps it from touching the proxy while the driver forces a case of its own.
    """

    def __init__(self, proxy, rng, log, pass_s=(0.5, 3.0), fault_s=(0.3, 3.0)):
        threading.Thread.__init__(self, name="chaos-flapper", daemon=True)
        self.proxy = proxy
        self.rng = rng
        self.log = log
        self.pass_s = pass_s
        self.fault_s = fault_s
        self.lock = threading.Lock()
        self.held = False
        self.stopping = threading.Event()
        self.applied = collections.Counter()
        self.current = "pass"
        self.errors = []

    def _set(self, label, fault, params):
        self.proxy.set(fault, **params)
        self.current = label

    def run(self):
        try:
            while not self.stopping.is_set():
                if self.stopping.wait(self.rng.uniform(*self.pass_s)):
                    break
                label, fault, params = self.rng.choice(FLAPS)
                length = self.rng.uniform(*self.fault_s)
                with self.lock:
                    if self.held or self.stopping.is_set():
                        continue
                    self._set(label, fault, params)
                    self.applied[label] += 1
                    self.log("flap: %s for %.1f s" % (label, length))
                if self.stopping.wait(length):
                    break
                with self.lock:
                    if not self.held:
                        self._set("pass", "pass", {})
        except Exception as exc:          # reported, never silent
            self.errors.append("flapper: %r" % (exc,))

    @contextlib.contextmanager
    def hold(self):
        with self.lock:
            self.held = True
        try:
            yield
        finally:
            with self.lock:
                self.held = False

    def stop(self):
        self.stopping.set()
        if self.is_alive():
            self.join(15)
        with self.lock:
            self.held = True


# -- the driver -----------------------------------------------------------------------------

def _cents(amount):
    return amount % 100


def _money(amount):
    return "%d.%02d" % divmod(amount, 100)


def make_plan(sales, kills, seed, phases=KILL_PHASES):
    """[{"i", "amount", "forced", "kill"}] for every sale; the same for the same seed.

    forced: None, "cut" (network cut during the sale), "kill_booked" (killed after the
    host booked a request it will never answer), "silent" (a .99 the terminal must
    reverse and approve offline). kill: None or one of phases (see KILL_PHASES).
    """
    rng = random.Random("plan-%s" % seed)
    plan = []
    for i in range(sales):
        r = rng.random()
        dollars = rng.randint(1, 98)
        if r < 0.08:
            cents = SILENT
        elif r < 0.12:
            cents = SLOW
        elif r < 0.15:
            cents = GARBLED
        elif r < 0.20:
            cents = NSF
        elif r < 0.24:
            cents = DNH
        else:
            cents = rng.choice(ORDINARY_CENTS)
        plan.append({"i": i, "amount": dollars * 100 + cents, "forced": None, "kill": None})
    forced = ["cut", "kill_booked", "silent"][:sales]
    if kills < 1 and "kill_booked" in forced:
        forced.remove("kill_booked")
    slots = rng.sample(range(sales), len(forced)) if sales else []
    for slot, what in zip(sorted(slots), rng.sample(forced, len(forced))):
        plan[slot]["forced"] = what
        if what in ("kill_booked", "silent"):
            plan[slot]["amount"] = plan[slot]["amount"] // 100 * 100 + SILENT
        elif what == "cut" and _cents(plan[slot]["amount"]) in SPECIAL_CENTS:
            plan[slot]["amount"] = plan[slot]["amount"] // 100 * 100 + 10
    left = kills - (1 if "kill_booked" in forced else 0)
    free = [p["i"] for p in plan if p["forced"] is None]
    if left > 0 and free:
        for i in rng.sample(free, min(left, len(free))):
            plan[i]["kill"] = rng.choice(phases)
    return plan


class Chaos:
    def __init__(self, sales=SHORT["sales"], kills=SHORT["kills"], seed=None, workdir=None,
                 keep=False, log=None, drain_s=DRAIN_S, kill_phases=KILL_PHASES, phases=(),
                 phase_sales=None):
        self.sales = int(sales)
        self.kills_planned = int(kills)
        unknown = set(kill_phases) - set(KILL_PHASES)
        if unknown or not kill_phases:
            raise ValueError("kill phases are some of %s, not %s"
                             % (", ".join(KILL_PHASES), ", ".join(sorted(unknown)) or "none"))
        self.kill_phases = tuple(kill_phases)
        unknown = set(phases) - set(PHASES)
        if unknown:
            raise ValueError("phases are some of %s, not %s" % (", ".join(PHASES),
                                                                 ", ".join(sorted(unknown))))
        self.phases = tuple(phases)
        self.phase_sales = dict(PHASE_SALES, **(phase_sales or {}))
        self.phase_results = collections.OrderedDict()   # phase -> {"ok", "notes", "failed"}
        self.tmpfs = None               # the mounted data directory, for diskfull
        self.books = None               # the terminal's books read without it
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
        self.given_workdir = workdir
        self.keep = keep
        self.log = log or (lambda line: None)
        self.drain_s = drain_s
        self.workdir = None
        self.host = None
        self.proxy = None
        self.term = None
        self.flapper = None
        self.kills = []                 # (sale index, phase it was meant for, screen)
        self.forced = collections.Counter()
        self.missed = collections.Counter()
        self.carry = None               # a forced case that missed, for the next sale
        self.errors = []                # the driver's own troubles (not reconciliation)
        self.mismatches = []
        self.sales_done = 0
        self.timeline = []
        self.t0 = None

    # -- logging ----------------------------------------------------------------
    def note(self, line):
        stamp = "%7.2f" % (time.monotonic() - self.t0) if self.t0 else "   -   "
        entry = "%s %s" % (stamp, line)
        self.timeline.append(entry)
        self.log(entry)

    # -- the parts ----------------------------------------------------------------
    def _setup(self):
        if self.given_workdir:
            self.workdir = os.path.abspath(self.given_workdir)
            os.makedirs(self.workdir, exist_ok=True)
        else:
            self.workdir = tempfile.mkdtemp(prefix="handpos-chaos-")
        self.host = HostProcess(os.path.join(self.workdir, "host"), SLOW_MS, self.note)
        _, host_port = self.host.start()
        if "diskfull" in self.phases:
            self._mount_tmpfs()
        self.proxy = FaultProxy(0, host_port)
        port = self.proxy.start()
        config_path = os.path.join(self.workdir, "handpos.toml")
        with open(config_path, "w") as f:
            f.write(
                '[terminal]\nid = "%s"\n'
                '[host]\naddress = "127.0.0.1:%d"\ntls = true\nca_file = "%s"\n'
                'response_timeout_s = %d\n'
                '[security]\ntest_keys = true\n[lab]\nenabled = true\n'
                '[ui]\nidle_logout_s = 86400\nentry_timeout_s = 600\nmenu_timeout_s = 3600\n'
                'card_timeout_s = 300\n'
                # one supervisor approves its own refunds and voids here
                '[auth]\nsecond_person = false\n'
                # the same test cards, refunds and voids by the dozen: no anomaly rule
                '[anomaly]\nsame_card_count = 0\nhigh_amount_factor = 0\ndecline_run = 0\n'
                'backs_count = 0\nrefund_new_card = false\n'
                '[offline]\nentry_modes = ["chip", "tap", "swipe"]\n'
                '[offline.limits.USD]\nper_payment = 10000\ntotal = 100000000\ncount = 10000\n'
                % (TID, port, self.host.ca_file, RESPONSE_TIMEOUT_S))
        self.term = Terminal(self.workdir, config_path, self.note)
        self.flapper = Flapper(self.proxy, random.Random("flaps-%s" % self.seed), self.note)

    def _mount_tmpfs(self):
        """The terminal's data directory on a small tmpfs of its own, so that it can be
        filled without filling the machine. Needs root (CI runs as root)."""
        data_dir = os.path.join(self.workdir, "terminal")
        os.makedirs(data_dir, exist_ok=True)
        if os.geteuid() != 0:
            self.tmpfs_problem = "needs root to mount a tmpfs for the data directory"
            return
        rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0700" % TMPFS_MB,
                             "tmpfs", data_dir], capture_output=True, text=True)
        if rc.returncode != 0:
            self.tmpfs_problem = "mount tmpfs failed: %s" % (rc.stderr.strip() or rc.returncode)
            return
        self.tmpfs = data_dir

    def _unmount_tmpfs(self):
        if self.tmpfs is None:
            return
        if not self.ok() or self.keep or self.given_workdir:
            # the data directory goes with the tmpfs: keep a copy for whoever looks
            shutil.copytree(self.tmpfs, self.tmpfs + "-copy", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("filler*"))
        subprocess.run(["umount", "-l", self.tmpfs], capture_output=True)
        self.tmpfs = None

    def _cleanup(self):
        for step in (lambda: self.flapper and self.flapper.stop(),
                     lambda: self.term and self.term.stop(),
                     lambda: self.proxy and self.proxy.stop(),
                     lambda: self.host and self.host.stop(),
                     self._unmount_tmpfs):
            try:
                step()
            except Exception as exc:
                self.errors.append("cleanup: %r" % (exc,))
        if self.workdir and not self.given_workdir and not self.keep and self.ok():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def ok(self):
        return not self.mismatches and not self.errors and all(
            r["ok"] for r in self.phase_results.values())

    # -- screens --------------------------------------------------------------------
    def _wait_top(self, wanted, timeout_s=10):
        """Poll until the top flow is one of wanted ("name:state" or "name:"); returns it."""
        deadline = time.monotonic() + timeout_s
        while True:
            top, _ = self.term.top()
            if any(top == w or (w.endswith(":") and top.startswith(w)) for w in wanted):
                return top
            if time.monotonic() > deadline:
                return top
            time.sleep(0.05)

    def to_idle(self, timeout_s=60):
        """From whatever is on the screen to the logged-in idle screen: through the boot
        self-test, the login, notices, menus, a sale's result; waits out an
        authorisation (only its answer ends it)."""
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            top, flows = self.term.top()
            if top == "idle:idle" and len(flows) == 1:
                return
            if time.monotonic() > deadline:
                raise ChaosError("could not get to the idle screen in %d s; flows %s, screen:\n%s"
                                 % (timeout_s, flows, self.term.screen().get("text")))
            name, _, state = top.partition(":")
            if top != last:
                last = top
            if name == "boot":
                self.term.press("ENTER")
            elif name == "setup":
                self._create_supervisor()
            elif name == "login":
                if state == "id":
                    self._login()
                elif state == "locked":
                    time.sleep(0.5)
                else:
                    self.term.press("CANCEL")
            elif name in ("sale", "refund") and state in ("authorising", "chip"):
                time.sleep(0.1)
            elif name == "chip":
                time.sleep(0.1)
            elif name == "notice":
                self.term.press("ENTER")
            elif name == "":
                time.sleep(0.1)
            else:
                self.term.press("CANCEL")
            time.sleep(0.02)

    def _create_supervisor(self):
        self.term.press("ENTER", SUPERVISOR_ID, "ENTER", *SUPERVISOR_PIN)
        self.term.press("ENTER", *SUPERVISOR_PIN)
        self.term.press("ENTER", "ENTER")
        self._wait_top(["login:"], 10)

    def _login(self):
        self.term.press(*SUPERVISOR_ID)
        self.term.press("ENTER")
        if self._wait_top(["login:pin"], 3) != "login:pin":
            return
        self.term.press(*SUPERVISOR_PIN)
        self.term.press("ENTER")
        self._wait_top(["idle:", "notice:"], 5)

    # -- kills -----------------------------------------------------------------------
    def _kill_and_restart(self, i, phase, while_down=None, step="sale"):
        """SIGKILL the terminal (noting the screen it was on), run while_down() if any
        (what happens while it is off), start it again."""
        top = "?"
        try:
            top, _ = self.term.top()
        except ChaosError:
            pass
        self.term.kill()
        self.kills.append((i, phase, top))
        self.note("%s %d: KILLED (%s; screen %s)" % (step, i, phase, top))
        if while_down is not None:
            while_down()
        self._restart()

    def _restart(self):
        self.term.start()
        self.to_idle()
        self.note("terminal restarted (start %d), logged in" % self.term.starts)

    # -- one sale --------------------------------------------------------------------
    def _last_card_record(self, after_id):
        recs = [r for r in self.term.journal() if r["id"] > after_id and r["method"] == "card"]
        return recs[-1] if recs else None

    def _start_sale(self, amount):
        """Amount, card as the method, "Swipe the card"; True when there, else retried."""
        shown = _money(amount)
        for _ in range(6):
            self.to_idle()
            self.term.press(*str(amount))
            top, _ = self.term.top()
            masked = self.term.screen().get("masked") or ""
            if top != "sale:amount" or not masked.endswith(" " + shown):
                continue
            self.term.press("ENTER")
            if self.term.top()[0] != "sale:method":
                continue
            self.term.press("1")
            if self.term.top()[0] == "sale:card":
                return
        raise ChaosError("could not start a sale of %s; screen:\n%s"
                         % (shown, self.term.screen().get("text")))

    def _wait_result(self, i):
        deadline = time.monotonic() + RESULT_WAIT_S
        while True:
            top, flows = self.term.top()
            if top != "sale:authorising":
                return top
            if time.monotonic() > deadline:
                raise ChaosError("sale %d: still Authorising after %d s" % (i, RESULT_WAIT_S))
            time.sleep(0.05)

    def _sale(self, step):
        i, amount, forced, kill = step["i"], step["amount"], step["forced"], step["kill"]
        before = max([r["id"] for r in self.term.journal()] or [0])
        self.note("sale %d: %s%s%s" % (i, _money(amount), " forced " + forced if forced else "",
                                       " kill@" + kill if kill else ""))
        self._start_sale(amount)
        self.term.call("swipe", card=CARD)
        top = self._wait_top(["sale:pin"], 10)
        if top != "sale:pin":
            raise ChaosError("sale %d: no PIN prompt after the swipe (%s)" % (i, top))
        if kill == "pin":
            return self._kill_and_restart(i, kill)
        self.term.press(*CARD_PIN)
        self.term.press("ENTER")
        if forced == "kill_booked":
            return self._kill_booked(i, before)
        if kill == "authorising":
            time.sleep(self.plan_rng.uniform(0.0, 2.5))
            return self._kill_and_restart(i, kill)
        top = self._wait_result(i)
        rec = self._last_card_record(before)
        if rec is not None:
            self.note("sale %d: %s%s stan %s%s" % (i, rec["state"], " OFFLINE" if rec["offline"] else "",
                                                  rec["stan"], " (%s)" % (rec["rc"] or rec["reason"])
                                                  if rec["state"] != "approved" else ""))
        if kill == "result":
            return self._kill_and_restart(i, kill)
        self.to_idle()
        if kill == "idle":
            time.sleep(self.plan_rng.uniform(0.0, 2.0))
            return self._kill_and_restart(i, kill)

    def _kill_booked(self, i, before):
        """The request is at the host, booked, and will never be answered: kill now."""
        deadline = time.monotonic() + 10
        stan = None
        while time.monotonic() < deadline:
            rec = self._last_card_record(before)
            if rec is not None and rec["state"] == "sending" and rec["stan"]:
                stan = rec["stan"]
                if self.host.ledger.find(stan, TID) is not None:
                    self.forced["kill_booked"] += 1
                    return self._kill_and_restart(i, "authorising, booked at the host")
            elif rec is not None and rec["state"] != "sending":
                break
            time.sleep(0.02)
        # the link was broken under it (a fault just before): the sale ends as it ends,
        # and the next sale tries again
        self.missed["kill_booked"] += 1
        self.note("sale %d: the forced kill missed (STAN %s not booked while waiting); "
                  "the next sale tries again" % (i, stan))
        if self.missed["kill_booked"] >= 5:
            self.errors.append("the forced kill mid-authorisation missed 5 times")
        else:
            self.carry = "kill_booked"
        self._wait_result(i)
        self.to_idle()

    def _forced_sale(self, step):
        forced = step["forced"]
        with self.flapper.hold():
            if forced == "cut":
                self.proxy.set("reset", existing=True, new=True)
                self.note("forced: network cut")
            else:
                # a fresh connection: an open one may be broken by the last fault (a
                # TLS stream missing a piece), and the request must reach the host
                self.proxy.set("reset", existing=True, new=False)
                self.proxy.set("pass")
                time.sleep(0.2)
            try:
                self._sale(step)
            finally:
                self.proxy.set("pass")
        if forced != "kill_booked":
            self.forced[forced] += 1

    # -- the phases (issue 10, item 6) ----------------------------------------------------
    def _phase_step(self, i):
        rng = self.plan_rng
        amount = rng.randint(1, 98) * 100 + rng.choice(ORDINARY_CENTS + [SILENT, NSF])
        return {"i": i, "amount": amount, "forced": None, "kill": None}

    def _phase_sale(self, result, step, what=""):
        """One sale in a phase; its trouble is the phase's failure, named with the screen."""
        try:
            self._sale(step)
            return True
        except TerminalDied as exc:
            result["failed"].append("%ssale %d: the terminal died by itself: %s"
                                    % (what, step["i"], exc))
        except ChaosError as exc:
            screen = ""
            try:
                screen = self.term.screen().get("text", "")
            except ChaosError:
                pass
            result["failed"].append("%ssale %d: %s%s" % (what, step["i"], exc,
                                                         "; screen:\n" + screen if screen else ""))
        self.note("phase sale %d failed: %s" % (step["i"], result["failed"][-1].splitlines()[0]))
        self.term.kill()
        self._try_restart(result)
        return False

    def _try_restart(self, result, what="restart"):
        try:
            self._restart()
            return True
        except TerminalDied as exc:
            result["failed"].append("%s: the terminal does not start: %s" % (what, exc))
        except ChaosError as exc:
            result["failed"].append("%s: %s" % (what, exc))
        return False

    def _run_phase(self, phase, first_index):
        result = {"ok": False, "notes": [], "failed": []}
        self.phase_results[phase] = result
        self.note("phase %s" % phase)
        with self.flapper.hold():
            self.proxy.set("pass")
            try:
                if not self.term.alive():
                    if not self._try_restart(result, "%s: start" % phase):
                        result["ok"] = False
                        return
                getattr(self, "_phase_" + phase)(result, first_index, self.phase_sales[phase])
            except ChaosError as exc:
                result["failed"].append("%s: %s" % (phase, exc))
            except Exception as exc:        # the driver's own trouble, named under the phase
                result["failed"].append("%s: %s: %s" % (phase, type(exc).__name__, exc))
            finally:
                self.proxy.set("pass")
        result["ok"] = not result["failed"]
        self.note("phase %s: %s" % (phase, "ok" if result["ok"] else "FAILED"))

    def _phase_hostkill(self, result, first, n):
        rng = self.plan_rng
        for k in range(n):
            step = self._phase_step(first + k)
            delay = rng.uniform(0.0, 3.0)
            down = rng.uniform(0.5, 3.0)
            restarted = threading.Event()

            def kill_then_start(delay=delay, down=down, restarted=restarted):
                time.sleep(delay)
                self.host.kill()
                self.note("host simulator KILLED (%.1f s into sale), down %.1f s" % (delay, down))
                time.sleep(down)
                try:
                    self.host.start()
                except ChaosError as exc:
                    result["failed"].append("host restart: %s" % exc)
                restarted.set()
            killer = threading.Thread(target=kill_then_start, name="chaos-hostkill", daemon=True)
            killer.start()
            self._phase_sale(result, step, "hostkill ")
            restarted.wait(10)
            killer.join(10)
        result["notes"].append("%d host kills" % self.host.kills)

    def _fill(self, path):
        """Write path until the file system says ENOSPC; the bytes written."""
        written = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        n = os.write(fd, chunk)
                    except OSError:
                        break
                    written += n
                    if n < size:
                        break
            try:
                os.fsync(fd)
            except OSError:
                pass
        finally:
            os.close(fd)
        return written

    def _phase_diskfull(self, result, first, n):
        if self.tmpfs is None:
            result["failed"].append("diskfull: not run: %s" % getattr(
                self, "tmpfs_problem", "no tmpfs for the data directory"))
            return
        filler = os.path.join(self.tmpfs, "filler")
        before = max([r["id"] for r in self.term.journal()] or [0])
        written = self._fill(filler)
        self.note("disk full (%d KB of filler)" % (written // 1024))
        result["notes"].append("filled %d KB" % (written // 1024))
        try:
            for k in range(n):
                self._full_sale(result, self._phase_step(first + k))
            # a power cut while full, and a start on the full disk
            self.term.kill()
            self.note("killed while the disk is full; starting on the full disk")
            try:
                self.term.start()
                top = self._settle_full()
                result["notes"].append("started on a full disk: %s" % top)
            except ChaosError as exc:
                result["failed"].append("start on a full disk: %s" % exc)
        finally:
            os.unlink(filler)
        self.note("space freed")
        if not self.term.alive():
            self._try_restart(result, "start after the space came back")
        # it goes on by itself: no restart, no key
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            top, _ = self.term.top()
            if not top.startswith("storage_fault"):
                break
            time.sleep(0.2)
        else:
            result["failed"].append("60 s after the space came back the terminal still shows "
                                    "the storage fault")
            return
        ok = 0
        for k in range(2):
            step = self._phase_step(first + n + k)
            step["amount"] = step["amount"] // 100 * 100 + 10
            if self._phase_sale(result, step, "after freeing: "):
                rec = self._last_card_record(before)
                if rec is not None and rec["state"] in ("approved", "declined"):
                    ok += 1
        if not ok:
            result["failed"].append("after the space came back no sale was approved or declined "
                                    "(the terminal did not go on by itself)")

    def _settle_full(self, timeout_s=30):
        """After a start on a full disk: through boot and login to idle, or to the storage
        fault screen; the top flow reached."""
        deadline = time.monotonic() + timeout_s
        while True:
            top, flows = self.term.top()
            if top == "idle:idle" or top.startswith("storage_fault"):
                return top
            if time.monotonic() > deadline:
                raise ChaosError("neither idle nor the storage fault screen in %d s; flows %s, "
                                 "screen:\n%s" % (timeout_s, flows, self.term.screen().get("text")))
            name, _, state = top.partition(":")
            if name == "login" and state == "id":
                self._login()
            elif name in ("boot", "notice"):
                self.term.press("ENTER")
            elif name == "setup":
                raise ChaosError("a first run on a terminal that had data: %s" % flows)
            elif name not in ("", "login"):
                self.term.press("CANCEL")
            time.sleep(0.1)

    def _full_sale(self, result, step):
        """A sale while the disk is full: refused in words (the storage fault screen, or the
        sale's own), or taken and finished; never stuck, never dead."""
        i = step["i"]
        try:
            top = self._settle_full()
            if top.startswith("storage_fault"):
                screen = self.term.screen().get("text", "")
                result["notes"].append("sale %d refused: %r" % (i, " / ".join(screen.splitlines())))
                self.note("full disk sale %d: refused (%s)" % (i, top))
                return
            self.term.press(*str(step["amount"]))
            self.term.press("ENTER")
            top, _ = self.term.top()
            if top == "sale:method":
                self.term.press("1")
                top, _ = self.term.top()
            if top == "sale:card":
                self.term.call("swipe", card=CARD)
                top = self._wait_top(["sale:pin", "sale:result", "sale:card_error",
                                      "storage_fault:"], 10)
                if top == "sale:pin":
                    self.term.press(*CARD_PIN)
                    self.term.press("ENTER")
                    top = self._wait_result(i)
            screen = self.term.screen().get("text", "")
            self.note("full disk sale %d: %s: %s" % (i, top, " / ".join(screen.splitlines()[1:3])))
            result["notes"].append("sale %d: %s %r" % (i, top, " / ".join(screen.splitlines())))
            for _ in range(4):
                top, _ = self.term.top()
                if top == "idle:idle" or top.startswith("storage_fault"):
                    break
                self.term.press("CANCEL")
                time.sleep(0.2)
        except TerminalDied as exc:
            result["failed"].append("while full, sale %d: the terminal died: %s" % (i, exc))
            self.term.start()
        except ChaosError as exc:
            screen = ""
            try:
                screen = self.term.screen().get("text", "")
            except ChaosError:
                pass
            result["failed"].append("while full, sale %d: %s; screen:\n%s" % (i, exc, screen))
            self.term.kill()
            self.term.start()

    def _flip(self, path, rng):
        """One non-zero byte of a data page (past the first, which holds the schema) XORed
        with a random non-zero mask; (offset, old, new) or None for a file too small."""
        if not os.path.exists(path):
            return None
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            head = f.read(100)
            page = int.from_bytes(head[16:18], "big") or 4096
            if page == 1:
                page = 65536
            if size <= page:
                return None
            f.seek(page)
            data = f.read()
            # a byte that holds something (a record, a cell pointer, a page header): the
            # zeros of free space would change nothing
            live = [i for i, b in enumerate(data) if b]
            if not live:
                return None
            offset = page + rng.choice(live)
            old = data[offset - page]
            new = old ^ rng.randrange(1, 256)
            f.seek(offset)
            f.write(bytes([new]))
        return offset, old, new

    def _phase_flip(self, result, first, n):
        rng = self.plan_rng
        data_dir = self.term.data_dir
        for k in range(n):
            self.term.kill()
            # what a crash left in the WAL goes into the main file first, so the flip
            # lands in the data a restart reads
            backup = {}
            for name in ("journal.db", "saf.db"):
                path = os.path.join(data_dir, name)
                try:
                    import sqlite3
                    db = sqlite3.connect(path)
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    db.close()
                except Exception as exc:
                    result["notes"].append("%s: checkpoint: %s" % (name, exc))
                if os.path.exists(path):
                    with open(path, "rb") as f:
                        backup[path] = f.read()
                flipped = self._flip(path, rng)
                self.note("flipped %s at %s" % (name, flipped))
                result["notes"].append("%s: %s" % (name, "byte %d %02x->%02x" % flipped
                                                   if flipped else "too small to flip"))
            try:
                self.term.start()
                top = self._settle_full()
            except ChaosError as exc:      # TerminalDied included: exited at start
                result["failed"].append("restart after flipping bytes: %s" % exc)
                return
            screen = self.term.screen().get("text", "")
            if top.startswith("storage_fault"):
                # stopped service and said so: the safe state. It must say why in words.
                if "DAMAGED" not in screen and "FULL" not in screen and "已损坏" not in screen:
                    result["failed"].append("after a flip the terminal stopped without "
                                            "saying why: %r" % screen)
                    return
                result["notes"].append("stopped service: %r" % " / ".join(screen.splitlines()))
            else:
                result["notes"].append("went on: %r" % " / ".join(screen.splitlines()[:3]))
            # the technician's repair: the files as they were (a flagged record is never
            # acted on, so this is what a supervisor's review would give back)
            self.term.kill()
            for path, data in backup.items():
                for extra in ("-wal", "-shm"):
                    if os.path.exists(path + extra):
                        os.unlink(path + extra)
                with open(path, "wb") as f:
                    f.write(data)
            try:
                self.term.start()
                self._settle_full()
            except ChaosError as exc:
                result["failed"].append("restart after the repair: %s" % exc)
                return
            self._phase_sale(result, self._phase_step(first + k), "after a flip: ")

    # -- the end ----------------------------------------------------------------------
    def _drain(self):
        """Proxy to pass, the terminal running; wait until the queue is empty and no
        record waits for the host, pressing "Upload now" now and then."""
        self.flapper.stop()
        self.proxy.set("pass")
        if not self.term.alive():
            self._restart()
        self.to_idle()
        self.note("draining")
        deadline = time.monotonic() + self.drain_s
        kicked = 0
        while True:
            waiting_q = [r for r in self.term.queue()["records"] if r["state"] in ("pending", "sent")]
            waiting_j = [r for r in self.term.journal() if r["state"] in UNSETTLED]
            if not waiting_q and not waiting_j:
                self.note("drained")
                self.to_idle()
                return True
            if time.monotonic() > deadline:
                self.mismatches.append(
                    "not drained after %d s: queue %s; journal %s" % (
                        self.drain_s,
                        [(r["kind"], r["stan"], r["state"], r["last_error"]) for r in waiting_q],
                        [(r["id"], r["stan"], r["state"]) for r in waiting_j]))
                return False
            if time.monotonic() - kicked > 8:
                self.to_idle()
                self.term.press("MENU", "9", "1")       # Offline queue > Upload now
                kicked = time.monotonic()
            time.sleep(0.3)

    def _bookings(self):
        ledger = self.host.ledger
        if hasattr(ledger, "money_bookings"):
            return ledger.money_bookings(TID)
        return ledger._all("SELECT id, mti, stan, de7, amount, kind, status, rrn, settled"
                           " FROM bookings WHERE tid=? AND mti IN ('0200', '0220', '0320')"
                           " ORDER BY id", (TID,))

    def _host_total(self):
        ledger = self.host.ledger
        if hasattr(ledger, "net_total"):
            return ledger.net_total(TID)
        return ledger.approved_total(TID)

    def reconcile_books(self):
        """Stop the terminal, read its journal and queue from the files (tools/host/books.py),
        compare them with what it said over the control socket, and reconcile them with
        the host's ledger."""
        try:
            said = self.term.journal() if self.term.alive() else []
        except ChaosError as exc:
            said = []
            self.errors.append("the terminal did not tell its journal over the control "
                               "socket: %s" % exc)
        self.term.stop()
        self.books = read_books(self.term.data_dir)
        for problem in self.books["problems"]:
            self.mismatches.append("books: %s" % problem)
        for name, verdict in self.books["integrity"].items():
            if verdict != "ok":
                self.mismatches.append("books: %s quick_check: %s" % (name, verdict))
        on_file = {r["id"]: r for r in self.books["journal"]}
        for r in said:
            f = on_file.get(r["id"])
            if f is None:
                self.mismatches.append("books: record #%d (%s %s) was shown by the terminal but "
                                       "is not in journal.db" % (r["id"], r["kind"], r["state"]))
            elif (f["state"], f["amount"], f["stan"]) != (r["state"], r["amount"], r["stan"]):
                self.mismatches.append("books: record #%d is %s %s STAN %s on file, %s %s STAN %s "
                                       "on the terminal" % (r["id"], f["state"], f["amount"],
                                                            f["stan"], r["state"], r["amount"],
                                                            r["stan"]))
        figures = self.reconcile(self.books["journal"], self.books["queue"], self.books["flags"])
        figures["books"] = {"journal_records": len(self.books["journal"]),
                            "queue_records": len(self.books["queue"]),
                            "flagged": len(self.books["flags"]),
                            "integrity": self.books["integrity"]}
        return figures

    def reconcile(self, journal, queue_records, flags=()):
        """The five checks; appends to self.mismatches; returns the figures. Records the
        terminal flagged as damaged (flags) are named, not counted as money."""
        bad = self.mismatches
        flagged = {f["id"]: f for f in flags}
        for rec_id, f in sorted(flagged.items()):
            self.note("journal record #%d flagged damaged by the terminal: %s" % (rec_id, f.get("what")))
        journal = [r for r in journal if r["id"] not in flagged]
        cards = [r for r in journal if r["method"] == "card"]
        sales = [r for r in cards if r["kind"] == "sale"]
        bookings = self._bookings()
        approved = [b for b in bookings if b["status"] == "approved"]
        by_stan = collections.defaultdict(list)
        for b in bookings:
            by_stan[b["stan"]].append(b)
        queued = {(q["kind"], q["stan"]): q for q in queue_records}

        def show(r):
            return "#%d %s %s STAN %s %s%s upload=%r reason=%r" % (
                r["id"], r["kind"], _money(r["amount"]), r["stan"], r["state"],
                " offline" if r["offline"] else "", r["upload"], r["reason"] or r["rc"])

        # 1. every approved card sale booked once, approved, under its STAN
        for r in sales:
            if r["state"] != "approved":
                continue
            mti = "0220" if r["offline"] else "0200"
            ok = [b for b in by_stan[r["stan"]] if b["status"] == "approved"]
            if not ok:
                q = queued.get(("advice", r["stan"]))
                if q is not None and q["state"] in ("pending", "sent"):
                    bad.append("1: %s is still queued (%s)" % (show(r), q["state"]))
                else:
                    bad.append("1: %s is not booked at the host (bookings %s)"
                               % (show(r), by_stan[r["stan"]]))
            elif len(ok) > 1:
                bad.append("1: %s is booked %d times: %s" % (show(r), len(ok), ok))
            elif ok[0]["mti"] != mti or ok[0]["amount"] != r["amount"] or ok[0]["kind"] != "sale":
                bad.append("1: %s is booked as %s %s %s, expected %s sale %s"
                           % (show(r), ok[0]["mti"], ok[0]["kind"], ok[0]["amount"], mti,
                              r["amount"]))
            if r["offline"] and r["upload"] != "uploaded":
                bad.append("1: %s approved offline but its upload is %r" % (show(r), r["upload"]))
        # 2. reversed: nothing approved left at the host under its STAN
        for r in cards:
            if r["state"] != "reversed":
                continue
            left = [b for b in by_stan[r["stan"]] if b["status"] == "approved"]
            if left:
                bad.append("2: %s was reversed but the host still has %s" % (show(r), left))
        # 3. every approved booking has an approved journal record
        journal_by_stan = collections.defaultdict(list)
        for r in cards:
            journal_by_stan[r["stan"]].append(r)
        for b in approved:
            recs = journal_by_stan.get(b["stan"], [])
            if not any(r["state"] == "approved" and r["kind"] == b["kind"] for r in recs):
                bad.append("3: the host has booked %s %s STAN %s %s (booking %d) but the "
                           "terminal's journal has %s" % (b["mti"], b["kind"], b["stan"],
                                                          _money(b["amount"]), b["id"],
                                                          [show(r) for r in recs] or "nothing"))
        # 4. the totals
        terminal_total = sum(r["amount"] for r in sales if r["state"] == "approved") - sum(
            r["amount"] for r in cards if r["kind"] == "refund" and r["state"] == "approved")
        host_total = self._host_total()
        if terminal_total != host_total:
            bad.append("4: the terminal's approved card total is %s, the host's %s"
                       % (_money(terminal_total), _money(host_total)))
        # 5. declined after upload: counted by neither side
        declined_after = [r for r in sales if r["state"] == "declined" and r["upload"] == "declined"]
        for r in declined_after:
            left = [b for b in by_stan[r["stan"]] if b["status"] == "approved"]
            if left:
                bad.append("5: %s was declined after upload but the host booked %s" % (show(r), left))
        for r in sales:
            if r["upload"] == "declined" and r["state"] != "declined":
                bad.append("5: %s: declined after upload but in state %s" % (show(r), r["state"]))
        # nothing left waiting
        for r in journal:
            if r["state"] in UNSETTLED:
                bad.append("left: %s" % show(r))
        for q in queue_records:
            if q["state"] in ("pending", "sent", "corrupt"):
                bad.append("left in the queue: %s STAN %s %s %s" % (q["kind"], q["stan"], q["state"],
                                                                     q.get("last_error", "")))
        count = collections.Counter()
        for r in sales:
            if r["state"] == "approved":
                count["approved_offline" if r["offline"] else "approved_online"] += 1
                if r["offline"] and r["upload"] == "uploaded":
                    count["offline_uploaded"] += 1
            elif r["state"] == "declined":
                count["declined_after_upload" if r["upload"] == "declined" else "declined"] += 1
            else:
                count[r["state"]] += 1
            if r["reason"] == "reason_offline_instead":
                count["then_offline"] += 1
        return {
            "money": money(bad, journal, bookings),
            "flagged": sorted(flagged),
            "journal": dict(count),
            "terminal_total": terminal_total,
            "host_total": host_total,
            "host_bookings": dict(collections.Counter(
                "%s %s %s" % (b["mti"], b["kind"], b["status"]) for b in bookings)),
            "host_reversal_messages": len(self.host.ledger.reversals(TID)),
        }

    # -- the run ---------------------------------------------------------------------
    def run(self):
        self.t0 = time.monotonic()
        self.plan = make_plan(self.sales, self.kills_planned, self.seed, self.kill_phases)
        self.plan_rng = random.Random("moments-%s" % self.seed)
        figures = {}
        try:
            self._setup()
            self.note("workdir %s, seed %s" % (self.workdir, self.seed))
            self.term.start()
            self.to_idle()
            self.note("first supervisor created, logged in")
            self.flapper.start()
            try:
                for step in self.plan:
                    if self.carry and not step["forced"]:
                        step = dict(step, forced=self.carry, kill=None,
                                    amount=step["amount"] // 100 * 100 + SILENT)
                        self.carry = None
                    try:
                        if step["forced"]:
                            self._forced_sale(step)
                        else:
                            self._sale(step)
                    except TerminalDied as exc:
                        self.errors.append("sale %d: the terminal died by itself: %s"
                                           % (step["i"], exc))
                        self.note("terminal died: %s" % exc)
                        self._restart()
                    except ChaosError as exc:
                        # stuck or lost: say so, then on with a fresh start
                        self.errors.append("sale %d: %s" % (step["i"], exc))
                        self.note("ERROR %s" % exc)
                        self.term.kill()
                        self._restart()
                    self.sales_done += 1
            except ChaosError as exc:
                self.errors.append("sales stopped at %d: %s" % (self.sales_done, exc))
                self.note("ERROR %s" % exc)
                self.term.kill()
            for err in self.flapper.errors:
                self.errors.append(err)
            index = self.sales
            for phase in self.phases:
                self._run_phase(phase, index)
                index += 100
            try:
                self._drain()
            except ChaosError as exc:
                # not drained (a terminal that stopped service): the books still say what
                # that leaves, so reconcile them anyway
                self.errors.append("drain: %s" % exc)
                self.note("ERROR drain: %s" % exc)
            figures = self.reconcile_books()
        except Exception as exc:
            self.errors.append("%s: %s" % (type(exc).__name__, exc))
            self.note("ERROR %s: %s" % (type(exc).__name__, exc))
        finally:
            try:
                proxy_faults = self.proxy.stats()["faults"] if self.proxy else {}
            except Exception:
                proxy_faults = {}
            self._cleanup()
        return self.report(figures, proxy_faults)

    def report(self, figures, proxy_faults):
        return {
            "ok": self.ok(),
            "seed": self.seed,
            "sales": self.sales,
            "sales_done": self.sales_done,
            "kills": len(self.kills),
            "kill_phases": [k[1] for k in self.kills],
            "kill_screens": [k[2] for k in self.kills],
            "terminal_starts": self.term.starts if self.term else 0,
            "forced": dict(self.forced),
            "forced_missed": dict(self.missed),
            "faults": dict(self.flapper.applied) if self.flapper else {},
            "proxy_faults_applied": proxy_faults,
            "elapsed_s": round(time.monotonic() - self.t0, 1),
            "workdir": self.workdir if (self.given_workdir or self.keep or not self.ok()) else None,
            "phases": {k: dict(v) for k, v in self.phase_results.items()},
            "host_kills": self.host.kills if self.host else 0,
            "mismatches": list(self.mismatches),
            "errors": list(self.errors),
            **figures,
        }


def format_report(report):
    j = report.get("journal", {})
    lines = [
        "chaos: seed %s, %d/%d sales, %d kills %s, %.1f s"
        % (report["seed"], report["sales_done"], report["sales"], report["kills"],
           report["kill_phases"], report["elapsed_s"]),
        "  killed on: %s" % (report["kill_screens"] or "-"),
        "  forced cases: %s%s" % (report["forced"] or "-", ", missed first %s" % report["forced_missed"]
                                  if report["forced_missed"] else ""),
        "  faults flapped: %s" % (report["faults"] or "-"),
        "  proxy applied: %s" % (report["proxy_faults_applied"] or "-"),
        "  journal: approved online %d, offline %d (uploaded %d), declined %d, declined after "
        "upload %d, reversed %d, failed %d, voided %d; %d attempts then approved offline"
        % (j.get("approved_online", 0), j.get("approved_offline", 0), j.get("offline_uploaded", 0),
           j.get("declined", 0), j.get("declined_after_upload", 0), j.get("reversed", 0),
           j.get("failed", 0), j.get("voided", 0), j.get("then_offline", 0)),
    ]
    if "terminal_total" in report:
        lines.append("  totals: terminal %s, host %s; host bookings %s; reversal messages %d"
                     % (_money(report["terminal_total"]), _money(report["host_total"]),
                        report["host_bookings"], report["host_reversal_messages"]))
    if "money" in report:
        m = report["money"]
        lines.append("  money: lost %d (%s), doubled %d (%s), unreversed %d (%s); flagged damaged "
                     "by the terminal: %s" % (m["lost"], _money(m["lost_amount"]), m["doubled"],
                                               _money(m["doubled_amount"]), m["unreversed"],
                                               _money(m["unreversed_amount"]),
                                               report.get("flagged") or "none"))
    if "books" in report:
        lines.append("  books read without the terminal: %s" % report["books"])
    for name, r in report.get("phases", {}).items():
        lines.append("  phase %s: %s%s" % (name, "ok" if r["ok"] else "FAILED",
                                           "; " + "; ".join(r["notes"]) if r["notes"] else ""))
        for f in r["failed"]:
            lines.append("    FAILED %s" % f.replace("\n", "\n      "))
    if report.get("workdir"):
        lines.append("  workdir: %s" % report["workdir"])
    for m in report["mismatches"]:
        lines.append("  MISMATCH %s" % m)
    for e in report["errors"]:
        lines.append("  ERROR %s" % e)
    lines.append("chaos: %s" % ("OK" if report["ok"] else "FAILED"))
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m tools.host.chaos",
                                description="sales through a flapping network and a terminal killed "
                                            "at random, then the journal reconciled with the host")
    p.add_argument("--sales", type=int, help="how many sales (default %d)" % SHORT["sales"])
    p.add_argument("--kills", type=int, help="how many kills (default %d)" % SHORT["kills"])
    p.add_argument("--seed", type=int, help="the plan's seed (default: a random one, printed)")
    p.add_argument("--long", action="store_true",
                   help="%d sales, %d kills (unless given)" % (LONG["sales"], LONG["kills"]))
    p.add_argument("--kill-at", default=",".join(KILL_PHASES),
                   help="where random kills land, some of %s (default: all)" % ",".join(KILL_PHASES))
    p.add_argument("--workdir", help="keep everything here (default: a temporary directory, "
                                     "removed unless the run fails)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--drain-s", type=int, default=DRAIN_S,
                   help="how long the queue may take to empty at the end (default %d)" % DRAIN_S)
    p.add_argument("--phases", default=None,
                   help="phases after the sales, some of %s (default: all with --long, none "
                        "otherwise; '' for none)" % ",".join(PHASES))
    p.add_argument("--json", action="store_true", help="print the report as JSON too")
    p.add_argument("-v", "--verbose", action="store_true", help="print the timeline as it happens")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    size = LONG if args.long else SHORT
    sales = args.sales if args.sales is not None else size["sales"]
    kills = args.kills if args.kills is not None else size["kills"]
    if sales < 0 or kills < 0:
        sys.stderr.write("chaos: --sales and --kills must be 0 or more\n")
        return 2

    def log(line):
        if args.verbose:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    phases = [p.strip() for p in args.kill_at.split(",") if p.strip()]
    if args.phases is None:
        extra = PHASES if args.long else ()
    else:
        extra = [p.strip() for p in args.phases.split(",") if p.strip()]
    try:
        chaos = Chaos(sales, kills, args.seed, workdir=args.workdir, keep=args.keep, log=log,
                      drain_s=args.drain_s, kill_phases=phases, phases=extra)
    except ValueError as exc:
        sys.stderr.write("chaos: %s\n" % exc)
        return 2
    report = chaos.run()
    print(format_report(report))
    if args.json:
        print(json.dumps(report, indent=1, sort_keys=True))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
