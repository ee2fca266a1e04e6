"""The chaos driver for QR payments (issue 13 item 8).

    python -m tools.host.qr_chaos [--payments N] [--kills K] [--seed S] [--workdir DIR] [--keep]

The QR acquirer simulator (tools/host/qrsim.py, in-process, TLS) sits behind a fault
proxy (tools/host/faultproxy.py) that flaps at random; the terminal is a headless
simulator subprocess (`python -m tools sim --host off --chip off`, its [qr] pointed at
the proxy) driven through its control socket, SIGKILLed at random phases of a QR
payment and restarted on the same data directory. The terminal, its restart, the
login and the proxy's flapping are tools/host/chaos.py's (imported, not copied).

Each payment: amount, ENTER, 3 (customer code), a fresh WeChat (18 digits from 13) or
Alipay (18 digits from 28) code scanned; its cents pick the acquirer's script (.11
wait then pay, .12 give up, .51 refused, .91 system error but paid, .97 slow, .98
truncated, .99 no answer). Some are cancelled while waiting. Kill phases: on the code
screen ("code"), right after the scan with the pay out ("paying"), while waiting for
the customer ("waiting"), while cancelling ("cancelling"); each is forced at least
once.

At the end the proxy passes, the terminal restarts (it recovers at start: queries and
cancels) and is given time; then the books are reconciled (reconcile()):
  1. every journal record of method "qr" is final (approved, declined, reversed,
     failed): none "sending" or "reversal_pending";
  2. every approved QR sale is paid (SUCCESS or REFUND) in the ledger with the same
     total_fee, under exactly one order "HP000001-<id:06d>";
  3. every declined, reversed or failed record's order is not paid (REVOKED, CLOSED,
     PAYERROR, NOTPAY or absent);
  4. every paid order in the ledger has an approved journal record;
  5. the terminal's total of approved QR sales equals the ledger's paid total.
Exit 1 on any mismatch (or when the driver could not go on).
"""
import argparse
import collections
import json
import os
import random
import shutil
import sys
import tempfile
import time

from tools.host import chaos
from tools.host.chaos import ChaosError, Flapper, Terminal
from tools.host.faultproxy import FaultProxy
from tools.host.qrsim import DEFAULT_KEY, QrSim

TID = chaos.TID
MCH_ID = "100000000001"
WAIT_MS = 3000
SLOW_MS = 8000
POLL_S = 1
PAY_TIMEOUT_S = 15
REQUEST_TIMEOUT_S = 3
RESULT_WAIT_S = 90           # the longest a payment may stay on the QR screen
DRAIN_S = 60

KILL_PHASES = ("code", "paying", "waiting", "cancelling")
SCRIPTED_CENTS = (11, 12, 51, 91, 97, 98, 99)
ORDINARY_CENTS = [c for c in range(100) if c not in SCRIPTED_CENTS + (5, 54, 55)]
FINAL = ("approved", "declined", "reversed", "failed")
PAID_STATES = ("SUCCESS", "REFUND")
UNPAID_STATES = ("REVOKED", "CLOSED", "PAYERROR", "NOTPAY")


def out_trade_no(rec_id, tid=TID):
    return "%s-%06d" % (tid, rec_id)


def make_plan(payments, kills, seed):
    """[{amount, channel, cancel, kill}] for a seed; every kill phase at least once."""
    rng = random.Random("qrplan-%s" % seed)
    plan = []
    for _ in range(payments):
        cents = rng.choice(SCRIPTED_CENTS + (0,)) or rng.choice(ORDINARY_CENTS)
        plan.append({"amount": rng.randint(1, 99) * 100 + cents,
                     "channel": rng.choice(("wechat", "alipay")),
                     "cancel": False, "kill": None})
    slots = list(range(payments))
    rng.shuffle(slots)
    phases = list(KILL_PHASES)[:payments]
    phases += [rng.choice(KILL_PHASES) for _ in range(max(0, kills - len(phases)))]
    for i, phase in zip(slots, phases):
        plan[i]["kill"] = phase
    for p in plan:
        if p["kill"] == "paying":
            p["amount"] = p["amount"] // 100 * 100 + rng.choice((97, 99))
        elif p["kill"] in ("waiting", "cancelling"):
            p["amount"] = p["amount"] // 100 * 100 + rng.choice((11, 12))
        elif p["kill"] is None and p["amount"] % 100 in (11, 12) and rng.random() < 0.5:
            p["cancel"] = True
    # one cancel while waiting without a kill, when there is room
    if not any(p["cancel"] for p in plan):
        free = [p for p in plan if p["kill"] is None]
        if free:
            free[0]["amount"] = free[0]["amount"] // 100 * 100 + 11
            free[0]["cancel"] = True
    return plan


def reconcile(records, orders, tid=TID):
    """The mismatches (strings) between the terminal's QR journal records and the
    acquirer's orders (QrLedger.orders()); and the two totals."""
    bad = []
    qr = [r for r in records if r.get("method") == "qr"]
    mine = collections.defaultdict(list)
    for o in orders:
        if o.get("terminal_id") in (None, tid) or o["out_trade_no"].startswith(tid + "-"):
            mine[o["out_trade_no"]].append(o)
    for r in qr:
        if r["state"] not in FINAL:
            bad.append("record #%d is %s, not final" % (r["id"], r["state"]))
    approved_ids = set()
    terminal_total = 0
    for r in qr:
        if r.get("kind", "sale") != "sale":
            continue
        number = out_trade_no(r["id"], tid)
        found = mine.get(number, [])
        if r["state"] == "approved":
            approved_ids.add(number)
            terminal_total += r["amount"]
            if len(found) != 1:
                bad.append("approved #%d: %d orders %s at the acquirer" % (r["id"], len(found),
                                                                          number))
                continue
            o = found[0]
            if o["state"] not in PAID_STATES:
                bad.append("approved #%d: order %s is %s" % (r["id"], number, o["state"]))
            if o["total_fee"] != r["amount"]:
                bad.append("approved #%d: amount %d, order %s total_fee %d"
                           % (r["id"], r["amount"], number, o["total_fee"]))
        elif r["state"] in ("declined", "reversed", "failed"):
            for o in found:
                if o["state"] not in UNPAID_STATES or (o.get("paid_fee") or 0) - (
                        o.get("refunded_fee") or 0) > 0:
                    bad.append("%s #%d: order %s is %s (paid %s, refunded %s)"
                               % (r["state"], r["id"], number, o["state"], o.get("paid_fee"),
                                  o.get("refunded_fee")))
    ledger_total = 0
    for number, found in sorted(mine.items()):
        for o in found:
            net = (o.get("paid_fee") or 0) - (o.get("refunded_fee") or 0)
            if o["state"] in PAID_STATES or net > 0:
                ledger_total += net
                if number not in approved_ids:
                    bad.append("order %s is %s (paid %s) with no approved journal record"
                               % (number, o["state"], o.get("paid_fee")))
    if terminal_total != ledger_total:
        bad.append("terminal's approved QR total %d != the acquirer's paid total %d"
                   % (terminal_total, ledger_total))
    return bad, terminal_total, ledger_total


class QrChaos(chaos.Chaos):
    """chaos.Chaos's terminal handling (to_idle, login, restart) around QR payments."""

    def __init__(self, payments=6, kills=3, seed=None, workdir=None, keep=False, log=None,
                 drain_s=DRAIN_S):
        chaos.Chaos.__init__(self, sales=payments, kills=kills, seed=seed, workdir=workdir,
                             keep=keep, log=log, drain_s=drain_s)
        self.payments = int(payments)
        self.qrsim = None
        self.codes = 0
        self.outcomes = collections.Counter()
        self.kill_phases_met = collections.Counter()
        self.cancels = 0
        self.killed_states = collections.Counter()

    # -- parts ------------------------------------------------------------------------
    def _setup(self):
        if self.given_workdir:
            self.workdir = os.path.abspath(self.given_workdir)
            os.makedirs(self.workdir, exist_ok=True)
        else:
            self.workdir = tempfile.mkdtemp(prefix="handpos-qrchaos-")
        self.qrsim = QrSim(os.path.join(self.workdir, "qr"), wait_ms=WAIT_MS, slow_ms=SLOW_MS)
        _, qr_port = self.qrsim.start()
        self.proxy = FaultProxy(0, qr_port)
        port = self.proxy.start()
        config_path = os.path.join(self.workdir, "handpos.toml")
        with open(config_path, "w") as f:
            f.write(
                '[terminal]\nid = "%s"\n'
                '[qr]\nenabled = true\naddress = "127.0.0.1:%d"\nca_file = "%s"\n'
                'mch_id = "%s"\nkey = "%s"\npoll_s = %d\npay_timeout_s = %d\n'
                'request_timeout_s = %d\n'
                '[security]\ntest_keys = true\n[lab]\nenabled = true\n'
                '[ui]\nidle_logout_s = 86400\nentry_timeout_s = 600\nmenu_timeout_s = 3600\n'
                % (TID, port, self.qrsim.ca_file, MCH_ID, DEFAULT_KEY.decode(), POLL_S,
                   PAY_TIMEOUT_S, REQUEST_TIMEOUT_S))
        self.term = QrTerminal(self.workdir, config_path, self.note)
        self.flapper = Flapper(self.proxy, random.Random("qrflaps-%s" % self.seed), self.note)

    def _cleanup(self):
        for step in (lambda: self.flapper and self.flapper.stop(),
                     lambda: self.term and self.term.stop(),
                     lambda: self.proxy and self.proxy.stop(),
                     lambda: self.qrsim and self.qrsim.stop()):
            try:
                step()
            except Exception as exc:
                self.errors.append("cleanup: %r" % (exc,))
        if self.workdir and not self.given_workdir and not self.keep and self.ok():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _code(self, channel):
        self.codes += 1
        prefix = "13" if channel == "wechat" else "28"
        tail = "%d%06d%03d" % (self.seed % 10000000, self.codes, os.getpid() % 1000)
        return (prefix + tail.rjust(16, "0"))[:18]

    def _qr_records(self):
        return [r for r in self.term.journal() if r["method"] == "qr"]

    # -- one payment --------------------------------------------------------------------
    def _start(self, amount):
        for _ in range(6):
            self.to_idle()
            self.term.press(*str(amount))
            if self.term.top()[0] != "sale:amount":
                continue
            self.term.press("ENTER")
            if self.term.top()[0] != "sale:method":
                continue
            self.term.press("3")
            if self._wait_top(["qr:code"], 3) == "qr:code":
                return
        raise ChaosError("could not start a QR payment of %d; screen:\n%s"
                         % (amount, self.term.screen().get("text")))

    def _scan(self, code):
        answer = self.term.call("scan", code=code)
        if not answer.get("ok"):
            raise ChaosError("scan: %s" % answer.get("error"))

    def _wait_done(self, i):
        deadline = time.monotonic() + RESULT_WAIT_S
        while True:
            top, _ = self.term.top()
            if not top.startswith("qr:"):
                return top
            if time.monotonic() > deadline:
                raise ChaosError("payment %d: still on the QR screen after %d s; screen:\n%s"
                                 % (i, RESULT_WAIT_S, self.term.screen().get("text")))
            time.sleep(0.05)

    def _kill(self, i, phase):
        recs = self._qr_records() if phase != "code" else []
        # the state the record was killed in: "sending" (pay out, waiting) or
        # "reversal_pending" (cancelling) show the hard case was really met
        self.killed_states[phase + ":" + (recs[-1]["state"] if recs else "-")] += 1
        self._kill_and_restart(i, phase)
        self.kill_phases_met[phase] += 1

    def _payment(self, i, step):
        amount, kill = step["amount"], step["kill"]
        self._start(amount)
        if kill == "code":
            self._kill(i, kill)
            return
        code = self._code(step["channel"])
        if kill == "paying":
            with self.flapper.hold():
                self.proxy.set("pass")
                self._scan(code)
                time.sleep(0.2)
                self._kill(i, kill)
            return
        if kill in ("waiting", "cancelling") or step["cancel"]:
            with self.flapper.hold():
                self.proxy.set("pass")
                self._scan(code)
                time.sleep(1.2)                    # USERPAYING, queried every second
                if kill == "waiting":
                    self._kill(i, kill)
                    return
                if kill == "cancelling":
                    self.proxy.set("drop")         # the cancel stays out
                self.term.press("CANCEL")
                self.cancels += 1
                self.note("payment %d: CANCEL while waiting" % i)
                if kill == "cancelling":
                    time.sleep(0.5)
                    self._kill(i, kill)
                    self.proxy.set("pass")
                    return
        else:
            self._scan(code)
        top = self._wait_done(i)
        recs = self._qr_records()
        last = recs[-1] if recs else {}
        self.outcomes[last.get("state", "?")] += 1
        self.note("payment %d (%d): %s, screen %s" % (i, amount, last.get("state"), top))

    # -- the run ------------------------------------------------------------------------
    def _drain(self):
        """Proxy to pass, a restart (recovery at start), then time until all are final."""
        self.flapper.stop()
        self.proxy.set("pass")
        self.term.kill()
        self._restart()
        deadline = time.monotonic() + self.drain_s
        while True:
            recs = self._qr_records()
            if all(r["state"] in FINAL for r in recs) or time.monotonic() > deadline:
                return recs
            time.sleep(0.5)

    def run(self):
        self.t0 = time.monotonic()
        plan = make_plan(self.payments, self.kills_planned, self.seed)
        report = {"seed": self.seed, "payments": self.payments}
        try:
            self._setup()
            self.note("seed %s, %d payments; workdir %s" % (self.seed, self.payments,
                                                            self.workdir))
            self.term.start()
            self.to_idle()
            self.flapper.start()
            for i, step in enumerate(plan, 1):
                self.note("payment %d: %d (%s)%s%s" % (
                    i, step["amount"], step["channel"], " cancel" if step["cancel"] else "",
                    " kill at " + step["kill"] if step["kill"] else ""))
                self._payment(i, step)
                self.sales_done += 1
            records = self._drain()
            orders = self.qrsim.ledger.orders()
            bad, term_total, ledger_total = reconcile(records, orders)
            self.mismatches.extend(bad)
            report.update(terminal_total=term_total, ledger_total=ledger_total,
                          journal=dict(collections.Counter(r["state"] for r in records)),
                          ledger=dict(collections.Counter(o["state"] for o in orders)))
        except ChaosError as exc:
            self.errors.append("%s: %s" % (type(exc).__name__, exc))
        finally:
            report.update(proxy_faults=dict(self.flapper.applied) if self.flapper else {})
            self._cleanup()
        report.update(ok=self.ok(), payments_done=self.sales_done,
                      kills=len(self.kills), kill_phases=dict(self.kill_phases_met),
                      killed_states=dict(self.killed_states),
                      cancels=self.cancels, outcomes=dict(self.outcomes),
                      mismatches=list(self.mismatches), errors=list(self.errors),
                      workdir=self.workdir, timeline=list(self.timeline))
        return report


class _HostOff:
    """chaos's subprocess module, seen by chaos.Terminal.start only, with the terminal's
    "--host external" made "--host off" (no card host at all)."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def Popen(self, argv, **kw):
        argv = list(argv)
        argv[argv.index("--host") + 1] = "off"
        return self._real.Popen(argv, **kw)


class QrTerminal(Terminal):
    """chaos.Terminal started with no card host (--host off) and no chip reader."""

    def start(self, timeout_s=30):
        real = chaos.subprocess
        chaos.subprocess = _HostOff(real)
        try:
            Terminal.start(self, timeout_s)
        finally:
            chaos.subprocess = real


def format_report(report):
    lines = ["QR chaos: %s (seed %s)" % ("OK" if report["ok"] else "FAILED", report["seed"]),
             "payments %d/%d, kills %d %s, cancels %d" % (
                 report["payments_done"], report["payments"], report["kills"],
                 json.dumps(report["kill_phases"], sort_keys=True), report["cancels"]),
             "killed in %s" % json.dumps(report["killed_states"], sort_keys=True),
             "journal %s" % json.dumps(report.get("journal", {}), sort_keys=True),
             "ledger  %s" % json.dumps(report.get("ledger", {}), sort_keys=True),
             "totals: terminal %s, acquirer %s" % (report.get("terminal_total"),
                                                   report.get("ledger_total")),
             "proxy faults %s" % json.dumps(report["proxy_faults"], sort_keys=True)]
    for m in report["mismatches"]:
        lines.append("MISMATCH " + m)
    for e in report["errors"]:
        lines.append("ERROR " + e)
    if not report["ok"]:
        lines.append("workdir %s" % report["workdir"])
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.host.qr_chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--payments", type=int, default=12)
    p.add_argument("--kills", type=int, default=4)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    report = QrChaos(args.payments, args.kills, args.seed, args.workdir, args.keep, log).run()
    print(format_report(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
