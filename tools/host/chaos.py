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
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.sim.control import ControlClient  # noqa: E402
from tools.host.faultproxy import FaultProxy  # noqa: E402
from tools.host.hostsim import HostSim  # noqa: E402

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
                 keep=False, log=None, drain_s=DRAIN_S, kill_phases=KILL_PHASES):
        self.sales = int(sales)
        self.kills_planned = int(kills)
        unknown = set(kill_phases) - set(KILL_PHASES)
        if unknown or not kill_phases:
            raise ValueError("kill phases are some of %s, not %s"
                             % (", ".join(KILL_PHASES), ", ".join(sorted(unknown)) or "none"))
        self.kill_phases = tuple(kill_phases)
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
        self.host = HostSim(os.path.join(self.workdir, "host"), tls=True, slow_ms=SLOW_MS,
                            log=lambda line: None)
        _, host_port = self.host.start("127.0.0.1", 0)
        self.proxy = FaultProxy(0, host_port)
        port = self.proxy.start()
        config_path = os.path.join(self.workdir, "handpos.toml")
        with open(config_path, "w") as f:
            f.write(
                '[terminal]\nid = "%s"\n'
                '[host]\naddress = "127.0.0.1:%d"\ntls = true\nca_file = "%s"\n'
                'response_timeout_s = %d\n'
                '[security]\ntest_keys = true\n'
                '[ui]\nidle_logout_s = 86400\nentry_timeout_s = 600\nmenu_timeout_s = 3600\n'
                'card_timeout_s = 300\n'
                '[offline]\nentry_modes = ["chip", "tap", "swipe"]\n'
                '[offline.limits.USD]\nper_payment = 10000\ntotal = 100000000\ncount = 10000\n'
                % (TID, port, self.host.ca_file, RESPONSE_TIMEOUT_S))
        self.term = Terminal(self.workdir, config_path, self.note)
        self.flapper = Flapper(self.proxy, random.Random("flaps-%s" % self.seed), self.note)

    def _cleanup(self):
        for step in (lambda: self.flapper and self.flapper.stop(),
                     lambda: self.term and self.term.stop(),
                     lambda: self.proxy and self.proxy.stop(),
                     lambda: self.host and self.host.stop()):
            try:
                step()
            except Exception as exc:
                self.errors.append("cleanup: %r" % (exc,))
        if self.workdir and not self.given_workdir and not self.keep and self.ok():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def ok(self):
        return not self.mismatches and not self.errors

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
    def _kill_and_restart(self, i, phase):
        top = "?"
        try:
            top, _ = self.term.top()
        except ChaosError:
            pass
        self.term.kill()
        self.kills.append((i, phase, top))
        self.note("sale %d: KILLED (%s; screen %s)" % (i, phase, top))
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

    def reconcile(self, journal, queue_records):
        """The five checks; appends to self.mismatches; returns the figures."""
        bad = self.mismatches
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
            self._drain()
            figures = self.reconcile(self.term.journal(), self.term.queue()["records"])
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
    try:
        chaos = Chaos(sales, kills, args.seed, workdir=args.workdir, keep=args.keep, log=log,
                      drain_s=args.drain_s, kill_phases=phases)
    except ValueError as exc:
        sys.stderr.write("chaos: --kill-at: %s\n" % exc)
        return 2
    report = chaos.run()
    print(format_report(report))
    if args.json:
        print(json.dumps(report, indent=1, sort_keys=True))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
