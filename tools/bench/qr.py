"""QR payments' figures (issue 13): `python -m tools.bench.qr [--quick]`.

  scan->wire   a customer's payment code scanned on the sale's code screen -> the pay
               request reaching the QR acquirer: from the scan's key events written into
               the simulator's HID scanner pipe (Simulator.scan) to the acquirer's
               handler thread having read the request line of POST /v1/pay off the TLS
               connection (median, p99 over N payments on the kept connection; the
               first payment, which opens the connection and its TLS handshake, is
               shown on its own); of it, the part until the QR service's pay() is
               called (the scanner driver has read the code, the flow took it)
  answer->frame  the acquirer starting to write its SUCCESS answer (after its ledger
               committed the order) -> the terminal's display driver pushing the frame
               whose big line is APPROVED (frames counted as tools/bench/terminal.py's
               card sale counts them)
  QR frame     LumaDisplay (luma's dummy 128x64 device) showing a pay screen with qr= a
               30- and a 60-character URL: a new code every frame (segno makes the
               symbol, the driver draws it and pushes the frame), the same code redrawn
               (the symbol cached, a line changed: the seconds left ticking), and
               segno's symbol and matrix alone for comparison

The payments run in this process: the real simulator (its scanner, display and
printer drivers, the QR service and drivers/qrlink.py on a real-time reactor) against
tools/host/qrsim.py's QrSim on loopback over TLS with its test CA. The acquirer is
timed by a subclass of its request handler, put on this server only: it notes the
time parse_request() is entered (the request line has just been read) and the time
_send() is entered for /v1/pay. Both clocks are time.perf_counter in one process.
The simulator runs without its chip reader (not needed for a QR payment).

The machine's load average before and after is printed: timing on a busy machine says
little. Every wait is bounded: a part that cannot finish stops the run with one line.
"""
import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

from tools.bench import BenchError, run_main, time_limit

STEP_S = 20.0           # one step of a payment, or of getting the terminal to a screen
MCH_ID = "100000000001"
URL_30 = 30
URL_60 = 60


def _summary(samples_ms):
    """median and p99 (the same p99 rule as the other benches)."""
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


# ---------------------------------------------------------------------------- payments

def _timed_acquirer(data_dir, marks):
    """A started QrSim whose handler notes, for POST /v1/pay, when its request line was
    read ("wire") and when the answer starts going out ("answer")."""
    from tools.host import qrsim

    class TimedHandler(qrsim._Handler):
        def setup(self):
            super().setup()
            marks["connections"] = marks.get("connections", 0) + 1

        def parse_request(self):
            t = time.perf_counter()
            ok = super().parse_request()
            if ok and self.command == "POST" and self.path == "/v1/pay":
                marks.setdefault("wire", t)
            return ok

        def _send(self, status, body, headers=(), cut=None):
            if self.path == "/v1/pay":
                marks.setdefault("answer", time.perf_counter())
            return super()._send(status, body, headers, cut)

    sim = qrsim.QrSim(data_dir, log=lambda *a: None)
    sim.start("127.0.0.1", 0)
    sim._server.RequestHandlerClass = TimedHandler     # this server only
    return sim


def _screen(term):
    from tools.bench.terminal import _screen as screen
    return screen(term)


def _payments(sim, acquirer, marks, n):
    from tools.sim.simulator import payment_code
    term, reactor = sim.terminal, sim.reactor
    sim.start()
    term.auth.create("1", "Supervisor 1", "supervisor", "2580")
    term.login(term.store.get_operator("1"))
    term.go_home()
    approved = term.t("approved")
    now = time.perf_counter

    display = sim.built.display
    orig_on_frame = display.on_frame

    def on_frame(image):
        out = orig_on_frame(image)
        if term.screen is not None and term.screen.big == approved and "answer" in marks:
            marks.setdefault("frame", now())
        return out
    display.on_frame = on_frame

    service = term.payments.qr
    orig_pay = service.pay

    def pay(*args, **kw):                       # the scanner driver has read the code
        marks.setdefault("pay", now())
        return orig_pay(*args, **kw)
    service.pay = pay

    def spin(until, what, i):
        deadline = now() + STEP_S
        while not until():
            if now() > deadline:
                raise BenchError("QR payment %d of %d: %s: not within %.0f s; the screen: %s"
                                 % (i + 1, n + 1, what, STEP_S, _screen(term)))
            reactor.run_once(5)

    def flow_state():
        flow = term.current()
        return (flow.NAME, getattr(flow, "state", None)) if flow is not None else None

    # The terminal probes the acquirer at start (the link's reachability); that
    # connection is closed quietly here so that payment 0 opens its own and its TLS
    # handshake is what the first figure times.
    spin(lambda: service.link_state == "up" and marks.get("connections", 0) >= 1,
         "the start's probe of the QR acquirer", -1)
    service.link.close("bench: the first payment opens its own connection")
    marks["connections"] = 0
    wire, frame, decoded, first = [], [], [], None
    for i in range(n + 1):                      # payment 0 opens the connection
        for key in str(10 + i) + "00":          # whole amounts: cents 00 is paid at once
            sim.press(key)
        sim.press("ENTER")
        spin(lambda: flow_state() == ("sale", "method"), "the sale to offer its methods", i)
        sim.press("3")
        spin(lambda: flow_state() == ("qr", "code"), "the customer code screen", i)
        for _ in range(20):                     # let the code screen settle
            reactor.run_once(0)
        connections = marks.get("connections", 0)
        marks.clear()
        marks["connections"] = connections
        code = payment_code("wechat" if i % 2 else "alipay")
        marks["scan"] = now()
        sim.scan(code)
        spin(lambda: "frame" in marks, "APPROVED on the screen after the scan", i)
        rec = term.payments.journal.last()
        if rec is None or rec["state"] != "approved" or rec["method"] != "qr":
            raise BenchError("QR payment %d: the journal says %r, not an approved QR payment"
                             % (i + 1, rec and rec["state"]))
        if "wire" not in marks or not (marks["scan"] < marks["pay"] < marks["wire"]
                                       < marks["answer"] < marks["frame"]):
            raise BenchError("QR payment %d: the marks are out of order: %r" % (i + 1, marks))
        to_wire = (marks["wire"] - marks["scan"]) * 1000
        to_frame = (marks["frame"] - marks["answer"]) * 1000
        if i == 0:
            # did this payment's request open the connection (its TLS handshake timed)?
            first = (to_wire, to_frame, connections == 0 and marks["connections"] == 1)
        else:
            wire.append(to_wire)
            frame.append(to_frame)
            decoded.append((marks["pay"] - marks["scan"]) * 1000)
        sim.press("CANCEL")
        sim.press("CANCEL")
        spin(lambda: term.current().NAME == "idle" and not term.printer.busy,
             "the idle screen after the payment (the receipt printed)", i)
    return wire, frame, decoded, first, marks.get("connections", 0)


def bench_payments(n):
    """n QR payments (plus one first that opens the connection) on the in-process
    simulator against an in-process QrSim over TLS on loopback."""
    from board.configfile import load_profile
    from firmware.core import config as schema
    from tools.host.qrsim import DEFAULT_KEY
    from tools.sim.simulator import Simulator
    marks = {}
    with tempfile.TemporaryDirectory(prefix="handpos-bench-qr-") as tmp:
        acquirer = _timed_acquirer(os.path.join(tmp, "qrsim"), marks)
        try:
            config = schema.defaults()
            config["storage"]["data_dir"] = os.path.join(tmp, "terminal")
            config["qr"].update(enabled=True, address="%s:%d" % tuple(acquirer.address[:2]),
                                ca_file=acquirer.ca_file, mch_id=MCH_ID,
                                key=DEFAULT_KEY.decode())
            config["lab"]["enabled"] = True
            config["ui"]["menu_timeout_s"] = 3600
            config["ui"]["idle_logout_s"] = 3600
            profile = load_profile("sim")
            profile.pop("chip", None)
            sim = Simulator(profile, config, synced=False, auth_iterations=50)
            try:
                if sim.terminal.payments.qr is None:
                    raise BenchError("QR payments: the terminal built no QR service")
                wire, frame, decoded, first, connections = _payments(sim, acquirer, marks, n)
            finally:
                sim.close()
            orders = acquirer.ledger.all("SELECT state FROM orders")
        finally:
            acquirer.stop()
    if len(orders) != n + 1 or any(o["state"] != "SUCCESS" for o in orders):
        raise BenchError("QR payments: the acquirer's books hold %d orders (%s), not %d paid"
                         % (len(orders), sorted({o["state"] for o in orders}), n + 1))
    out = {"payments": n, "first_wire_ms": first[0], "first_frame_ms": first[1],
           "first_opened": first[2],
           "connections": connections}
    out["wire_median_ms"], out["wire_p99_ms"] = _summary(wire)
    out["frame_median_ms"], out["frame_p99_ms"] = _summary(frame)
    out["decoded_median_ms"], out["decoded_p99_ms"] = _summary(decoded)
    return out


# ---------------------------------------------------------------------------- drawing

def url_of(length, i):
    """A code URL of exactly length characters, different for each i."""
    head = "https://qr.example.cn/p/"
    tail = "%x" % (i * 2654435761 % (1 << 64))
    body = (tail * (length // len(tail) + 2))[:length - len(head) - 4]
    return head + body + "%04d" % (i % 10000)


def bench_drawing(renders):
    """LumaDisplay.show() of a pay screen with a 30- and a 60-character code URL."""
    import segno
    from luma.core.device import dummy
    from drivers.display import LumaDisplay, qr_symbol
    from firmware.ui.screen import Screen
    display = LumaDisplay(dummy(width=128, height=64, mode="1"))
    log = logging.getLogger("handpos.display")
    saved = log.handlers[:], log.propagate
    # the driver warns once per new code that a 60-character one gets 1 px a module:
    # the record is made (that is the driver's cost), not written out
    log.handlers[:] = [logging.NullHandler()]
    log.propagate = False

    def screen(url, left):
        return Screen(title="Scan to pay", big="\u00a599,999.99", lines=["%d s left" % left],
                      footer="C: cancel", qr=url)
    out = {"renders": renders}
    try:
        for length in (URL_30, URL_60):
            assert len(url_of(length, 1)) == length
            fresh, same, matrix = [], [], []
            for i in range(renders):
                url = url_of(length, i)
                t0 = time.perf_counter()
                pushed = display.show(screen(url, 45))
                fresh.append((time.perf_counter() - t0) * 1000)
                if not pushed or not display.qr_box or display.losses:
                    raise BenchError("QR frame: a %d-character code was not drawn whole "
                                     "(scale %d, lost: %s)" % (length, display.qr_scale,
                                                               display.losses))
            out["scale_%d" % length] = display.qr_scale
            out["version_%d" % length] = qr_symbol(url).version
            for i in range(renders):
                t0 = time.perf_counter()
                display.show(screen(url, 44 - i % 40))
                same.append((time.perf_counter() - t0) * 1000)
            for i in range(renders):
                text = url_of(length, renders + i)
                t0 = time.perf_counter()
                symbol = qr_symbol(text)
                rows = symbol.matrix
                matrix.append((time.perf_counter() - t0) * 1000)
                if not rows or not isinstance(symbol, segno.QRCode):
                    raise BenchError("QR frame: segno made no matrix")
            for name, samples in (("fresh", fresh), ("same", same), ("segno", matrix)):
                med, p99 = _summary(samples)
                out["%s_%d_median_ms" % (name, length)] = med
                out["%s_%d_p99_ms" % (name, length)] = p99
    finally:
        log.handlers[:], log.propagate = saved
    return out


# ---------------------------------------------------------------------------- main

def run(quick):
    n = 5 if quick else 50
    renders = 20 if quick else 200
    out = {"load_before": os.getloadavg()}
    with time_limit(90 + n * 4, "%d QR payments" % n):
        out["pay"] = bench_payments(n)
    with time_limit(60 + renders * 0.5, "drawing the QR frame"):
        out["draw"] = bench_drawing(renders)
    out["load_after"] = os.getloadavg()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench.qr", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    print("handpos bench: QR payments (%s, %d cores, python %s)"
          % (os.uname().machine, os.cpu_count(), sys.version.split()[0]))
    sys.stdout.flush()
    out = run(args.quick)
    pay, draw = out["pay"], out["draw"]
    print("QR payment, scan -> pay request at the acquirer: median %.2f ms, p99 %.2f ms "
          "(%d payments after the first); the first, %s: %.2f ms (%d TLS connection%s accepted by "
          "the acquirer in all)"
          % (pay["wire_median_ms"], pay["wire_p99_ms"], pay["payments"],
             "opening the connection" if pay["first_opened"] else "on a connection already open",
             pay["first_wire_ms"], pay["connections"], "" if pay["connections"] == 1 else "s"))
    print("  of which scan -> code read by the scanner driver (the QR service's pay() called): "
          "median %.2f ms, p99 %.2f ms" % (pay["decoded_median_ms"], pay["decoded_p99_ms"]))
    print("QR payment, acquirer's answer -> APPROVED frame: median %.2f ms, p99 %.2f ms "
          "(%d payments); the first: %.2f ms"
          % (pay["frame_median_ms"], pay["frame_p99_ms"], pay["payments"], pay["first_frame_ms"]))
    for length in (URL_30, URL_60):
        print("QR frame, %d-character URL (version %d, %d px a module), %d renders: new code "
              "-> frame pushed median %.2f ms, p99 %.2f ms; same code redrawn median %.2f ms, "
              "p99 %.2f ms; segno symbol and matrix alone median %.2f ms, p99 %.2f ms"
              % (length, draw["version_%d" % length], draw["scale_%d" % length],
                 draw["renders"], draw["fresh_%d_median_ms" % length],
                 draw["fresh_%d_p99_ms" % length], draw["same_%d_median_ms" % length],
                 draw["same_%d_p99_ms" % length], draw["segno_%d_median_ms" % length],
                 draw["segno_%d_p99_ms" % length]))
    print("  load average before %.2f, after %.2f (1 min)"
          % (out["load_before"][0], out["load_after"][0]))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, name="bench.qr"))
