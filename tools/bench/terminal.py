"""`make bench`: the terminal's figures, measured in one run on this machine.

  idle CPU     CPU seconds a logged-in, idle simulator process uses over 30 s, beside a
               10 ms sleep-and-check loop (what "polling" would cost) in the same window
  key->frame   time from a key event written into the keypad's evdev pipe to the new
               frame leaving the display driver (median, p99 over many presses)
  cart         the same with a 200-line cart on the screen (issue 12): UP/DOWN, a scan
               through the HID scanner driver (the last quarter of the lines), a
               quantity (F1, a digit, ENTER: three frames)
  cold start   process start to the first frame and to the login screen (median of 5);
               the login screen includes the boot self-test's deliberate 1.5 s pause
  memory       resident set size of the idle simulator process

Run with --quick for a short smoke run (used by the test suite to keep this working).

The chip reader: the in-process figures (key->frame, card sale) run the simulator with
its chip reader through a pcscd of the bench's own (tools/cards/vcard.py PrivatePcscd,
Virtual PCD reader, no card in it), as `handpos sim` does, when pcscd and the vpcd
driver are installed; otherwise without the chip reader (--chip off does that too).
Either way the first line says which. It never uses or needs the system's pcscd. The
simulator processes (cold start, idle) run with `handpos sim --chip off`.

Every wait is bounded: a part that cannot finish stops the run with one line saying
what it waited for, and exit status 1.
"""
import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from tools.bench import BenchError, one_line, run_main, time_limit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICKS = os.sysconf("SC_CLK_TCK")

KEY_FRAME_S = 5.0       # a key press that draws nothing new within this: the bench is stuck
STEP_S = 20.0           # one step of a sale, or of getting the terminal to a screen
SIM_START_S = 30.0      # a simulator process to open its control socket
SIM_QUIT_S = 10.0       # ... and to exit after "quit"
PCSCD_START_S = 10.0


# ---------------------------------------------------------------------------- chip reader

class ChipReader:
    """The simulator's chip reader for the in-process benches: a private pcscd with the
    Virtual PCD reader (what `handpos sim` starts), or none.

    libpcsclite reads PCSCLITE_CSOCK_NAME once per process, so every pcscd this starts
    uses the same socket path (one work folder); each in-process simulator gets a fresh
    pcscd, started before it and stopped after it (pcscd --auto-exit would leave an
    idle one's socket unanswered between benches)."""

    def __init__(self, wanted, workdir):
        self.workdir = workdir
        self.on = False
        self.why = "as asked (--chip off)"
        if wanted == "auto":
            self.on, self.why = self._probe()

    def _probe(self):
        from tools.cards.vcard import PrivatePcscd, vpcd_driver
        if shutil.which("pcscd") is None:
            return False, "pcscd is not installed (Debian: apt-get install pcscd vsmartcard-vpcd)"
        if vpcd_driver() is None:
            return False, "the vpcd driver is not installed (Debian: apt-get install vsmartcard-vpcd)"
        try:
            import smartcard.scard      # noqa: F401  (pyscard: the terminal's PC/SC driver)
        except ImportError as exc:
            return False, "pyscard is not importable (%s)" % exc
        try:
            PrivatePcscd(self.workdir).start(PCSCD_START_S).stop()
        except (RuntimeError, OSError) as exc:
            return False, "a private pcscd did not start here (%s)" % one_line(exc)
        return True, ""

    def line(self):
        if self.on:
            return ("chip reader: on, through a private pcscd this bench starts (Virtual PCD "
                    "reader, no card), for key->frame and card sale; cold start and idle run "
                    "handpos sim --chip off")
        return "chip reader: off, %s; every figure is taken without it" % self.why

    @contextlib.contextmanager
    def for_simulator(self, profile):
        """Yields the vpcd port to give Simulator(chip_port=...), or None with the chip
        reader taken out of the profile."""
        if not self.on:
            profile.pop("chip", None)
            yield None
            return
        from tools.cards.vcard import PrivatePcscd
        pcscd = PrivatePcscd(self.workdir)
        try:
            pcscd.start(PCSCD_START_S)
        except (RuntimeError, OSError) as exc:
            raise BenchError("chip reader: the private pcscd did not start (%s); --chip off "
                             "measures without it" % one_line(exc))
        os.environ["PCSCLITE_CSOCK_NAME"] = pcscd.socket_path
        try:
            yield pcscd.port
        finally:
            pcscd.stop()


def _screen(term):
    """What the terminal shows, on one line (for a message about a wait that failed)."""
    screen = term.screen
    flow = term.current()
    return "%s [flow %s]" % (one_line(screen.text()) if screen is not None else "(nothing drawn)",
                             flow.NAME if flow is not None else "-")


def _run_until(reactor, term, done, what, seconds=None):
    """Run the loop until done(); BenchError naming what and the screen after seconds
    (STEP_S unless given)."""
    seconds = STEP_S if seconds is None else seconds
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise BenchError("%s: not within %.0f s; the screen: %s" % (what, seconds, _screen(term)))
        reactor.run_once(5)


def cpu_seconds(pid):
    """CPU time of every thread of pid, from schedstat (nanoseconds; /proc/PID/stat
    counts in 10 ms ticks, too coarse for an idle terminal)."""
    total = 0
    task_dir = "/proc/%d/task" % pid
    try:
        for tid in os.listdir(task_dir):
            with open(os.path.join(task_dir, tid, "schedstat")) as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError):
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class SimProcess:
    """`handpos sim --headless --chip off` in a process of its own, its output in a log
    beside its control socket; ready once the control socket exists."""

    _count = 0

    def __init__(self, data, sock, snapshot=None, extra=None):
        args = [sys.executable, "-m", "tools", "sim", "--headless", "--control", sock,
                "--data", data, "--clock-synced", "no", "--pin-iterations", "1000"]
        args += extra if extra else ["--host", "off"]
        args += ["--chip", "off"]
        if snapshot:
            args += ["--snapshot", snapshot]
        SimProcess._count += 1
        self.log_path = os.path.join(os.path.dirname(sock), "sim-%d.log" % SimProcess._count)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.monotonic() + SIM_START_S
        while not os.path.exists(sock):
            status = self.proc.poll()
            if status is not None:
                raise BenchError("the simulator exited (status %s) before opening its control "
                                 "socket: %s" % (status, self._last_line()))
            if time.monotonic() > deadline:
                self.kill()
                raise BenchError("the simulator did not open its control socket within %.0f s: "
                                 "%s" % (SIM_START_S, self._last_line()))
            time.sleep(0.01)

    def _last_line(self):
        try:
            with open(self.log_path, errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
        except OSError:
            lines = []
        return lines[-1] if lines else "no output (%s)" % self.log_path

    def quit(self, client):
        """Ask it to quit through its control socket; wait for it, boundedly."""
        try:
            client.call("quit")
        finally:
            client.close()
        try:
            self.proc.wait(SIM_QUIT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError("the simulator did not exit within %.0f s of quit" % SIM_QUIT_S)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(SIM_QUIT_S)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def start_sim(data, sock, snapshot=None, extra=None):
    """The simulator process as a subprocess.Popen, once its control socket exists
    (tools/sim/screenshots.py uses this)."""
    return SimProcess(data, sock, snapshot=snapshot, extra=extra).proc


def login_as_new_supervisor(client):
    client.wait("Welcome", 10000)
    client.press("ENTER", "1", "ENTER", "2", "5", "8", "0", "ENTER", "2", "5", "8", "0", "ENTER")
    # the flow's state, not its words: the "created" screen's text is the catalogue's
    # (and leaves by itself after 3 s, so ENTER is pressed only while it shows)
    flows = client.call("state")["flows"]
    if "new_operator:done" not in flows:
        raise BenchError("first supervisor: not created (flows %s); the screen: %s"
                         % (" ".join(flows), one_line(client.screen()["text"])))
    client.press("ENTER")
    client.wait("Operator ID")
    client.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    client.wait("MENU")


def bench_idle(seconds):
    from tools.sim.control import ControlClient
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl")
        with SimProcess(tmp, sock) as proc:
            client = ControlClient(sock)
            login_as_new_supervisor(client)
            client.close()
            time.sleep(1)
            poller = subprocess.Popen([sys.executable, "-c",
                                       "import time\nend=time.monotonic()+%f\n"
                                       "while time.monotonic()<end:\n    time.sleep(0.01)\n" % seconds])
            try:
                before, pb = cpu_seconds(proc.pid), cpu_seconds(poller.pid)
                time.sleep(seconds)
                after, pa = cpu_seconds(proc.pid), cpu_seconds(poller.pid)
                poller.wait(seconds + 10)
            finally:
                if poller.poll() is None:
                    poller.kill()
                    poller.wait()
            rss = rss_kib(proc.pid)
            proc.quit(ControlClient(sock))
    return {"idle_cpu_ms": (after - before) * 1000, "poll_loop_cpu_ms": (pa - pb) * 1000,
            "rss_mib": rss / 1024.0, "seconds": seconds}


def _key_samples(sim, presses):
    term, reactor = sim.terminal, sim.reactor
    sim.start()
    term.auth.create("1", "Supervisor 1", "supervisor", "2580")
    term.login(term.store.get_operator("1"))
    term.go_home()
    for _ in range(400):
        reactor.run_once(5)
    sim.press("MENU")
    _run_until(reactor, term, lambda: term.current().NAME == "home",
               "key press -> new frame: the menu to open after MENU")
    for _ in range(50):
        reactor.run_once(5)
    samples = []
    for i in range(presses):
        frames = sim.frames
        key = "DOWN" if i % 2 == 0 else "UP"
        t0 = time.perf_counter()
        sim.press(key)
        while sim.frames == frames:
            reactor.run_once(100)
            if time.perf_counter() - t0 > KEY_FRAME_S:
                raise BenchError("key press -> new frame: no new frame within %.0f s of %s "
                                 "(press %d); the screen: %s" % (KEY_FRAME_S, key, i + 1,
                                                                 _screen(term)))
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def bench_keys(presses, chip):
    """In-process: the real keypad, flow and display drivers, timed around the loop."""
    from board.configfile import load_profile
    from firmware.core import config as schema
    from tools.sim.simulator import Simulator
    with tempfile.TemporaryDirectory() as tmp:
        config = schema.defaults()
        config["storage"]["data_dir"] = tmp
        config["ui"]["menu_timeout_s"] = 3600
        profile = load_profile("sim")
        with chip.for_simulator(profile) as chip_port:
            sim = Simulator(profile, config, synced=False, auth_iterations=50,
                            chip_port=chip_port)
            try:
                samples = _key_samples(sim, presses)
            finally:
                sim.close()
    samples.sort()
    return {"key_frame_median_ms": statistics.median(samples),
            "key_frame_p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
            "presses": presses}


def _wait_frame(sim, frames, what, i):
    t0 = time.perf_counter()
    while sim.frames == frames:
        sim.reactor.run_once(100)
        if time.perf_counter() - t0 > KEY_FRAME_S:
            raise BenchError("%s: no new frame within %.0f s (%d); the screen: %s"
                             % (what, KEY_FRAME_S, i + 1, _screen(sim.terminal)))


def _cart_samples(sim, lines, presses):
    """A cart of `lines` lines built by scans through the HID scanner driver; then
    (scan -> frame of the last lines added, UP/DOWN -> frame, F1 quantity -> frame)."""
    from tools import catalogue_csv
    from tools.sim.demo_codes import ITEMS
    term, reactor = sim.terminal, sim.reactor
    config = term.config
    sim.start()
    catalogue_csv.load_demo(config["storage"]["data_dir"], sim.built.datadir.keys.key("data"),
                            config)
    term.auth.create("1", "Supervisor 1", "supervisor", "2580")
    term.login(term.store.get_operator("1"))
    term.go_home()
    for _ in range(400):
        reactor.run_once(5)
    scans = []
    for i in range(lines):
        frames = sim.frames
        t0 = time.perf_counter()
        sim.scan(ITEMS[i % len(ITEMS)])
        _wait_frame(sim, frames, "scan -> new frame (cart line %d)" % (i + 1), i)
        # the frame after the cart opened is the line's; wait until the line is in
        while term.current().NAME != "cart" or len(term.current().cart.lines) < i + 1:
            frames = sim.frames
            _wait_frame(sim, frames, "scan -> cart line %d" % (i + 1), i)
        scans.append((time.perf_counter() - t0) * 1000)
    cart = term.current()
    if len(cart.cart.active()) != lines:
        raise BenchError("the cart has %d lines, not %d; the screen: %s"
                         % (len(cart.cart.active()), lines, _screen(term)))
    keys = []
    for i in range(presses):
        frames = sim.frames
        key = "UP" if (i // 20) % 2 == 0 else "DOWN"
        t0 = time.perf_counter()
        sim.press(key)
        _wait_frame(sim, frames, "UP/DOWN -> new frame in a %d-line cart" % lines, i)
        keys.append((time.perf_counter() - t0) * 1000)
    qty = []
    for i in range(max(5, presses // 20)):
        t0 = time.perf_counter()
        for key in ("F1", str(2 + i % 7), "ENTER"):
            frames = sim.frames
            sim.press(key)
            _wait_frame(sim, frames, "F1, digit, ENTER -> new frame", i)
        qty.append((time.perf_counter() - t0) * 1000)
    if term.current().NAME != "cart" or term.current().state != "cart":
        raise BenchError("the quantity did not take; the screen: %s" % _screen(term))
    return scans[-max(1, lines // 4):], keys, qty


def bench_cart(lines, presses, chip):
    """In-process, as bench_keys: the key -> frame figures of a cart of `lines` lines."""
    from board.configfile import load_profile
    from firmware.core import config as schema
    from tools.sim.simulator import Simulator
    with tempfile.TemporaryDirectory() as tmp:
        config = schema.defaults()
        config["storage"]["data_dir"] = tmp
        config["ui"]["menu_timeout_s"] = 3600
        config["ui"]["idle_logout_s"] = 3600
        config["retail"]["max_lines"] = max(lines, config["retail"]["max_lines"])
        profile = load_profile("sim")
        with chip.for_simulator(profile) as chip_port:
            sim = Simulator(profile, config, synced=False, auth_iterations=50,
                            chip_port=chip_port)
            try:
                scans, keys, qty = _cart_samples(sim, lines, presses)
            finally:
                sim.close()
    out = {"lines": lines, "presses": presses}
    for name, samples in (("scan", scans), ("key", keys), ("qty", qty)):
        samples.sort()
        out[name + "_median_ms"] = statistics.median(samples)
        out[name + "_p99_ms"] = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return out


def bench_cold_start(runs):
    from tools.sim.control import ControlClient
    first, login = [], []
    with tempfile.TemporaryDirectory() as tmp:
        # make the first supervisor once, so every timed start goes to the login screen
        sock = os.path.join(tmp, "ctl")
        with SimProcess(tmp, sock) as proc:
            client = ControlClient(sock)
            login_as_new_supervisor(client)
            proc.quit(client)
        for i in range(runs):
            snap = os.path.join(tmp, "snap%d" % i)
            t0, t0_wall = time.monotonic(), time.time()
            with SimProcess(tmp, sock, snapshot=snap) as proc:
                client = ControlClient(sock)
                client.wait("Operator ID", 20000)
                t_login = time.monotonic() - t0
                first_png = os.path.join(snap, "frame_0001.png")
                t_first = os.stat(first_png).st_mtime - t0_wall
                proc.quit(client)
            first.append(t_first * 1000)
            login.append(t_login * 1000)
    return {"first_frame_ms": statistics.median(first), "login_screen_ms": statistics.median(login),
            "runs": runs}


def bench_payments(sales, chip):
    """Card sales (signature card, so no PIN wait) against the host simulator over TLS on
    loopback, timed inside the terminal: swipe decoded -> request fully written to the
    socket; first reply bytes read -> APPROVED frame pushed; first reply bytes read ->
    first receipt byte (ESC @) at the printer's end of the pty."""
    from board.configfile import load_profile
    from firmware.core import config as schema
    from tools.host.hostsim import HostSim
    from tools.sim.simulator import Simulator
    with tempfile.TemporaryDirectory() as tmp:
        host = HostSim(os.path.join(tmp, "host"), tls=True, log=lambda *a: None)
        started = host.start("127.0.0.1", 0)
        try:
            if not started:
                raise BenchError("card sale: the host simulator did not start within 10 s")
            config = schema.defaults()
            config["storage"]["data_dir"] = os.path.join(tmp, "terminal")
            config["host"].update(address="%s:%d" % started, tls=True, ca_file=host.ca_file)
            config["security"]["test_keys"] = True
            config["lab"]["enabled"] = True
            from firmware.payments.anomaly import OFF     # one test card, many times
            config["anomaly"].update(OFF)
            config["ui"]["menu_timeout_s"] = 3600
            profile = load_profile("sim")
            with chip.for_simulator(profile) as chip_port:
                sim = Simulator(profile, config, synced=False, auth_iterations=50,
                                chip_port=chip_port)
                try:
                    to_wire, to_frame, to_paper = _sales(sim, sales)
                finally:
                    sim.close()
        finally:
            host.stop()
    if not to_wire:
        raise BenchError("card sale: none of the %d sales reached the wire, the screen and "
                         "the printer" % sales)
    return {"card_to_wire_ms": statistics.median(to_wire), "reply_to_frame_ms": statistics.median(to_frame),
            "reply_to_paper_ms": statistics.median(to_paper), "sales": len(to_wire)}


def _sales(sim, sales):
    term, reactor, link = sim.terminal, sim.reactor, sim.built.host
    if link is None:
        raise BenchError("card sale: the terminal has no host link")
    sim.start()
    term.auth.create("1", "Supervisor 1", "supervisor", "2580")
    term.login(term.store.get_operator("1"))
    term.go_home()
    marks = {}
    now = time.perf_counter

    def wrap(obj, name, before=None, after=None):
        orig = getattr(obj, name)

        def wrapper(*args, **kw):
            if before:
                before(*args)
            out = orig(*args, **kw)
            if after:
                after(*args)
            return out
        setattr(obj, name, wrapper)

    wrap(sim.built.msr.swipe, "on_swipe", before=lambda *a: marks.setdefault("swipe", now()))
    wrap(link, "_write", after=lambda *a: "swipe" in marks and not link._outq
         and marks.setdefault("sent", now()))
    wrap(link, "_read", before=lambda *a: "sent" in marks and marks.setdefault("reply", now()))
    wrap(sim.built.display, "on_frame", after=lambda *a: term.screen is not None
         and term.screen.big == term.t("approved") and marks.setdefault("frame", now()))
    wrap(sim.vprinter, "feed", before=lambda data: "reply" in marks and b"\x1b@" in bytes(data)
         and marks.setdefault("paper", now()))

    def spin(until, what):
        _run_until(reactor, term, until, "card sale %d of %d: %s" % (i + 1, sales, what))

    to_wire, to_frame, to_paper = [], [], []
    for i in range(sales):
        marks.clear()
        for key in str(100 + i) + "0":
            sim.press(key)
        for key in ("ENTER", "1"):
            sim.press(key)
        spin(lambda: getattr(term.current(), "state", None) == "card",
             "the sale to ask for a card")
        sim.swipe(card="mc_signature")
        spin(lambda: "paper" in marks and "frame" in marks,
             "APPROVED on the screen and the receipt at the printer")
        if len(marks) == 5:
            to_wire.append((marks["sent"] - marks["swipe"]) * 1000)
            to_frame.append((marks["frame"] - marks["reply"]) * 1000)
            to_paper.append((marks["paper"] - marks["reply"]) * 1000)
        sim.press("CANCEL")
        sim.press("CANCEL")
        spin(lambda: term.current().NAME == "idle" and not term.printer.busy,
             "the idle screen after the sale")
    return to_wire, to_frame, to_paper


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--chip", choices=("auto", "off"), default="auto",
                        help="auto (default): the in-process simulator's chip reader through a "
                             "private pcscd when pcscd and the vpcd driver are installed, else "
                             "none; off: no chip reader")
    args = parser.parse_args(argv)
    idle_s, presses, runs = (3, 50, 1) if args.quick else (30, 1000, 5)
    sales = 10 if args.quick else 100
    print("handpos bench (%s, %d cores, python %s)" % (os.uname().machine, os.cpu_count(),
                                                      sys.version.split()[0]))
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="handpos-bench-") as tmp:
        with time_limit(30, "starting the private pcscd"):
            chip = ChipReader(args.chip, os.path.join(tmp, "pcscd"))
        print(chip.line())
        sys.stdout.flush()
        with time_limit(60 + presses * 0.2, "key press -> new frame"):
            keys = bench_keys(presses, chip)
        print("key press -> new frame: median %.2f ms, p99 %.2f ms (%d presses)"
              % (keys["key_frame_median_ms"], keys["key_frame_p99_ms"], presses))
        sys.stdout.flush()
        cart_lines = 40 if args.quick else 200
        with time_limit(120 + cart_lines + presses * 0.2, "a %d-line cart" % cart_lines):
            cart = bench_cart(cart_lines, presses // 2, chip)
        print("a %d-line cart: UP/DOWN -> new frame median %.2f ms, p99 %.2f ms (%d presses); "
              "scan -> new frame (last quarter of the lines) median %.2f ms, p99 %.2f ms; "
              "F1, digit, ENTER (a quantity) median %.2f ms"
              % (cart_lines, cart["key_median_ms"], cart["key_p99_ms"], cart["presses"],
                 cart["scan_median_ms"], cart["scan_p99_ms"], cart["qty_median_ms"]))
        sys.stdout.flush()
        with time_limit(60 + sales * 3, "card sale"):
            pay = bench_payments(sales, chip)
    print("card sale, inside the terminal (median of %d): swipe -> request on the wire %.2f ms; "
          "reply -> APPROVED frame %.2f ms; reply -> first receipt byte %.2f ms"
          % (pay["sales"], pay["card_to_wire_ms"], pay["reply_to_frame_ms"], pay["reply_to_paper_ms"]))
    sys.stdout.flush()
    with time_limit(90 + runs * 40, "cold start"):
        cold = bench_cold_start(runs)
    print("cold start: first frame %.0f ms, login screen %.0f ms (median of %d; includes the "
          "1.5 s self-test pause)" % (cold["first_frame_ms"], cold["login_screen_ms"], runs))
    sys.stdout.flush()
    with time_limit(120 + idle_s, "idle CPU"):
        idle = bench_idle(idle_s)
    if idle["idle_cpu_ms"] > 0:
        ratio = "%.0fx the terminal" % (idle["poll_loop_cpu_ms"] / idle["idle_cpu_ms"])
    else:
        ratio = "the terminal did not run at all: it slept in poll the whole window"
    print("idle CPU over %d s: %.2f ms (goal < 50 ms); a 10 ms polling loop: %.1f ms (%s)"
          % (idle_s, idle["idle_cpu_ms"], idle["poll_loop_cpu_ms"], ratio))
    print("resident memory, idle: %.1f MiB" % idle["rss_mib"])
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, name="bench"))
