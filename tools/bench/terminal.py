"""`make bench`: the terminal's figures, measured in one run on this machine.

  idle CPU     CPU seconds a logged-in, idle simulator process uses over 30 s, beside a
               10 ms sleep-and-check loop (what "polling" would cost) in the same window
  key->frame   time from a key event written into the keypad's evdev pipe to the new
               frame leaving the display driver (median, p99 over many presses)
  cold start   process start to the first frame and to the login screen (median of 5);
               the login screen includes the boot self-test's deliberate 1.5 s pause
  memory       resident set size of the idle simulator process

Run with --quick for a short smoke run (used by the test suite to keep this working).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICKS = os.sysconf("SC_CLK_TCK")


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


def start_sim(data, sock, snapshot=None, extra=None):
    args = [sys.executable, "-m", "tools", "sim", "--headless", "--control", sock,
            "--data", data, "--clock-synced", "no", "--pin-iterations", "1000"]
    args += extra if extra else ["--host", "off"]
    args += ["--chip", "off"]
    if snapshot:
        args += ["--snapshot", snapshot]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("simulator did not start: %s" % proc.stderr.read().decode())
        time.sleep(0.01)
    return proc


def login_as_new_supervisor(client):
    client.wait("Welcome", 10000)
    client.press("ENTER", "1", "ENTER", "2", "5", "8", "0", "ENTER", "2", "5", "8", "0", "ENTER")
    client.wait("created")
    client.press("ENTER")
    client.wait("Operator ID")
    client.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    client.wait("MENU")


def bench_idle(seconds):
    from tools.sim.control import ControlClient
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl")
        proc = start_sim(tmp, sock)
        try:
            client = ControlClient(sock)
            login_as_new_supervisor(client)
            client.close()
            time.sleep(1)
            poller = subprocess.Popen([sys.executable, "-c",
                                       "import time\nend=time.monotonic()+%f\n"
                                       "while time.monotonic()<end:\n    time.sleep(0.01)\n" % seconds])
            before, pb = cpu_seconds(proc.pid), cpu_seconds(poller.pid)
            time.sleep(seconds)
            after, pa = cpu_seconds(proc.pid), cpu_seconds(poller.pid)
            poller.wait()
            rss = rss_kib(proc.pid)
            client = ControlClient(sock)
            client.call("quit")
            client.close()
        finally:
            proc.wait(10)
    return {"idle_cpu_ms": (after - before) * 1000, "poll_loop_cpu_ms": (pa - pb) * 1000,
            "rss_mib": rss / 1024.0, "seconds": seconds}


def bench_keys(presses):
    """In-process: the real keypad, flow and display drivers, timed around the loop."""
    from board.configfile import load_profile
    from firmware.core import config as schema
    from tools.sim.simulator import Simulator
    with tempfile.TemporaryDirectory() as tmp:
        config = schema.defaults()
        config["storage"]["data_dir"] = tmp
        config["ui"]["menu_timeout_s"] = 3600
        sim = Simulator(load_profile("sim"), config, synced=False, auth_iterations=50)
        term, reactor = sim.terminal, sim.reactor
        sim.start()
        term.auth.create("1", "Supervisor 1", "supervisor", "2580")
        term.login(term.store.get_operator("1"))
        term.go_home()
        for _ in range(400):
            reactor.run_once(5)
        sim.press("MENU")
        for _ in range(50):
            reactor.run_once(5)
        samples = []
        for i in range(presses):
            frames = sim.frames
            t0 = time.perf_counter()
            sim.press("DOWN" if i % 2 == 0 else "UP")
            while sim.frames == frames:
                reactor.run_once(100)
            samples.append((time.perf_counter() - t0) * 1000)
        sim.close()
    samples.sort()
    return {"key_frame_median_ms": statistics.median(samples),
            "key_frame_p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
            "presses": presses}


def bench_cold_start(runs):
    from tools.sim.control import ControlClient
    first, login = [], []
    with tempfile.TemporaryDirectory() as tmp:
        # make the first supervisor once, so every timed start goes to the login screen
        sock = os.path.join(tmp, "ctl")
        proc = start_sim(tmp, sock)
        client = ControlClient(sock)
        login_as_new_supervisor(client)
        client.call("quit")
        client.close()
        proc.wait(10)
        for i in range(runs):
            snap = os.path.join(tmp, "snap%d" % i)
            t0, t0_wall = time.monotonic(), time.time()
            proc = start_sim(tmp, sock, snapshot=snap)
            client = ControlClient(sock)
            client.wait("Operator ID", 20000)
            t_login = time.monotonic() - t0
            first_png = os.path.join(snap, "frame_0001.png")
            t_first = os.stat(first_png).st_mtime - t0_wall
            client.call("quit")
            client.close()
            proc.wait(10)
            first.append(t_first * 1000)
            login.append(t_login * 1000)
    return {"first_frame_ms": statistics.median(first), "login_screen_ms": statistics.median(login),
            "runs": runs}


def bench_payments(sales):
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
        address = "%s:%d" % host.start("127.0.0.1", 0)
        config = schema.defaults()
        config["storage"]["data_dir"] = os.path.join(tmp, "terminal")
        config["host"].update(address=address, tls=True, ca_file=host.ca_file)
        config["security"]["test_keys"] = True
        config["ui"]["menu_timeout_s"] = 3600
        sim = Simulator(load_profile("sim"), config, synced=False, auth_iterations=50)
        term, reactor, link = sim.terminal, sim.reactor, sim.built.host
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

        def spin(until, limit=4000):
            for _ in range(limit):
                if until():
                    return True
                reactor.run_once(5)
            return False

        to_wire, to_frame, to_paper = [], [], []
        for i in range(sales):
            marks.clear()
            for key in str(100 + i) + "0":
                sim.press(key)
            for key in ("ENTER", "1"):
                sim.press(key)
            spin(lambda: term.current().state == "card")
            sim.swipe(card="mc_signature")
            spin(lambda: "paper" in marks and "frame" in marks)
            if len(marks) == 5:
                to_wire.append((marks["sent"] - marks["swipe"]) * 1000)
                to_frame.append((marks["frame"] - marks["reply"]) * 1000)
                to_paper.append((marks["paper"] - marks["reply"]) * 1000)
            sim.press("CANCEL")
            sim.press("CANCEL")
            spin(lambda: term.current().NAME == "idle" and not term.printer.busy)
        sim.close()
        host.stop()
    return {"card_to_wire_ms": statistics.median(to_wire), "reply_to_frame_ms": statistics.median(to_frame),
            "reply_to_paper_ms": statistics.median(to_paper), "sales": len(to_wire)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    args = parser.parse_args(argv)
    idle_s, presses, runs = (3, 50, 1) if args.quick else (30, 1000, 5)
    print("handpos bench (%s, %d cores, python %s)" % (os.uname().machine, os.cpu_count(),
                                                      sys.version.split()[0]))
    keys = bench_keys(presses)
    print("key press -> new frame: median %.2f ms, p99 %.2f ms (%d presses)"
          % (keys["key_frame_median_ms"], keys["key_frame_p99_ms"], presses))
    pay = bench_payments(10 if args.quick else 100)
    print("card sale, inside the terminal (median of %d): swipe -> request on the wire %.2f ms; "
          "reply -> APPROVED frame %.2f ms; reply -> first receipt byte %.2f ms"
          % (pay["sales"], pay["card_to_wire_ms"], pay["reply_to_frame_ms"], pay["reply_to_paper_ms"]))
    cold = bench_cold_start(runs)
    print("cold start: first frame %.0f ms, login screen %.0f ms (median of %d; includes the "
          "1.5 s self-test pause)" % (cold["first_frame_ms"], cold["login_screen_ms"], runs))
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
    sys.exit(main())
