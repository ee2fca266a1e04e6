"""The chaos driver for QR payments (issue 13 item 8).

    python -m tools.host.qr_chaos [--payments N] [--kills K] [--shows N] [--refunds N]
                                  [--voids N] [--more-kills K] [--overlap] [--seed S]
                                  [--workdir DIR] [--keep] [--quiet]

The QR acquirer simulator (tools/host/qrsim.py, in-process, TLS) sits behind a fault
proxy (tools/host/faultproxy.py) that flaps at random; the terminal is a headless
simulator subprocess (`python -m tools sim --host off --chip off`, its [qr] pointed at
the proxy) driven through its control socket, SIGKILLed at random phases and restarted
on the same data directory. The terminal, its restart, the login and the proxy's
flapping are tools/host/chaos.py's (imported, not copied). The simulator here is
ChaosQrSim: qrsim able to lose the answers of an op (the request acted on and committed,
its answer never sent: the terminal cannot tell it from a link that died on the way
back).

The steps, in a seeded order (make_plan):

Customer-code payments (--payments, --kills): amount, ENTER, 3 (customer code), a fresh
WeChat (18 digits from 13) or Alipay (18 digits from 28) code scanned; its cents pick
the acquirer's script (.11 wait then pay, .12 give up, .51 refused, .91 system error but
paid, .97 slow, .98 truncated, .99 no answer). Some are cancelled while waiting. Kill
phases: on the code screen ("code"), right after the scan with the pay out ("paying"),
while waiting for the customer ("waiting"), while cancelling ("cancelling"); each is
forced at least once.

Merchant-presented codes (--shows): amount, ENTER, 4: the terminal creates the order and
shows its code_url; the "phone" is qrsim's /sim/pay (QrSim.phone_pay, in this process:
a phone has its own network, not the terminal's flapping one) fed the URL read off the
terminal's screen. Each ends one way: "pay" (the phone pays: at once, or .12 gives up,
or .51 has no balance), "timeout" (left until the terminal closes it: the simulator's
codes expire after SHOW_EXPIRY_S, so the terminal's shown time is about 11 s), "cancel"
(CANCEL: closed), "pay_cancel" (the phone pays and CANCEL comes at once: the close says
ORDERPAID and the payment is kept); each end at least once when there are enough. Kill
phases: "shown" (the code on screen; the phone does not pay, pays just before the kill,
or pays while the terminal is down) and "closing" (after CANCEL: the close answered but
the answer lost, the close never arriving, or killed once the close timed out and the
cancel is out, the record "reversal_pending").

Refunds (--refunds) and voids (--voids) of approved QR sales (either kind of code): MENU
2 (refund) or 3 (void), the logged-in supervisor's PIN, the sale's number, ENTER; a
refund's amount is the whole of what is left or a part (the first two: one of each).
The sale is picked (seeded) among those the terminal would take that have no refund or
void of their own still in flight; when there is none an extra sale is made first.
Kill phases: "refunding" and "voiding" (the refund or cancel booked at the acquirer and
its answer lost, or held at the proxy and never arriving).

Every kill phase of a kind is forced at least once when the kind has steps (the forced
ones in their hardest way: booked and the answer lost, the phone paying while the
terminal is down, the link held passing); --more-kills adds kills to the other
merchant-code, refund and void steps, each other way of each phase once (in a seeded
order) before any twice. A forced case the terminal refuses while it knows the acquirer
unreachable ("QR needs network"), or fails "not sent" while its link is still stuck from
an earlier fault, is tried again for up to STUCK_S (report: "retried").

--overlap adds a last step of two cases the terminal must refuse: a void of a sale whose
refund is booked at the acquirer but not yet answered, and a refund of a sale whose void
has not reached the acquirer yet. Before the flows refused them ("Refund/void pending")
the terminal took both and counted the whole sale and the refund given back (rule 7
below); the step now reports "refused" for each, or "met" if one got through.

At the end the proxy passes, the terminal restarts (it recovers at start: queries,
closes, cancels, asks again) and is given time; then the books are reconciled
(reconcile()):
  1. every journal record of method "qr" is final (approved, declined, reversed,
     failed, voided): none "sending" or "reversal_pending" (refunds and voids too);
  2. every approved QR sale is paid (SUCCESS or REFUND) in the ledger with the same
     total_fee, under exactly one order "HP000001-<id:06d>", of the kind its entry says
     (a merchant-presented code "native", a scanned one "pay");
  3. every declined, reversed or failed sale's order is not paid (REVOKED, CLOSED,
     PAYERROR, NOTPAY or absent); a merchant-presented one's is not left open (NOTPAY,
     USERPAYING: a phone could still pay it);
  4. every paid order in the ledger has an approved journal record;
  5. the terminal's total (approved QR sales less approved QR refunds) equals the
     ledger's (paid less refunded);
  6. every approved refund is in the ledger's refunds exactly once, under its own
     number (out_refund_no "HP000001-<refund id:06d>"), for its sale's order, with its
     amount; no declined or failed refund is there; every refund in the ledger has an
     approved refund record;
  7. per sale: its `refunded` is the sum of its approved refunds; what the terminal gave
     back (those refunds, and the whole amount when voided) is never more than it was
     paid, and is the order's refunded_fee at the acquirer;
  8. a voided sale has exactly one approved void and its order is REVOKED, refunded in
     full; an approved void's sale is voided.
Exit 1 on any mismatch (or when the driver could not go on).
"""
import argparse
import collections
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time

from tools.host import chaos
from tools.host.chaos import SUPERVISOR_PIN, ChaosError, Flapper, Terminal
from tools.host.faultproxy import FaultProxy
from tools.host.qrsim import DEFAULT_KEY, SILENT, QrSim

TID = chaos.TID
MCH_ID = "100000000001"
WAIT_MS = 3000
SLOW_MS = 8000
POLL_S = 1
PAY_TIMEOUT_S = 15
REQUEST_TIMEOUT_S = 3
SHOW_TIMEOUT_S = 30          # [qr] show_timeout_s (its least); the code's expiry cuts it
SHOW_EXPIRY_S = 16           # the simulator's expires_in: shown for 16 - 5 s
RESULT_WAIT_S = 90           # the longest a payment may stay on the QR screen
DRAIN_S = 60
STUCK_S = 30                 # how long a forced case tries again while the link is stuck

KILL_PHASES = ("code", "paying", "waiting", "cancelling")
SHOW_KILL_PHASES = ("shown", "closing")
BACK_KILL_PHASES = ("refunding", "voiding")
ALL_KILL_PHASES = KILL_PHASES + SHOW_KILL_PHASES + BACK_KILL_PHASES
SHOW_ENDS = ("pay", "timeout", "cancel", "pay_cancel")
# how a kill of each new phase is done; the first of each is the forced one's
KILL_VARIANTS = {"shown": ("down", "before", "none"), "closing": ("lost", "drop", "late"),
                 "refunding": ("lost", "drop"), "voiding": ("lost", "drop")}
CHANNELS = ("wechat", "alipay", "unionpay")
SCRIPTED_CENTS = (11, 12, 51, 91, 97, 98, 99)
ORDINARY_CENTS = [c for c in range(100) if c not in SCRIPTED_CENTS + (5, 54, 55)]
FINAL = ("approved", "declined", "reversed", "failed", "voided")
PAID_STATES = ("SUCCESS", "REFUND")
UNPAID_STATES = ("REVOKED", "CLOSED", "PAYERROR", "NOTPAY")
OPEN_STATES = ("NOTPAY", "USERPAYING")
SHOW_ENTRY = "qr_show"       # firmware/payments/qr.py: a merchant-presented code's record


def out_trade_no(rec_id, tid=TID):
    return "%s-%06d" % (tid, rec_id)


def make_plan(payments, kills, seed, shows=0, refunds=0, voids=0, more_kills=0,
              overlap=False):
    """The steps for a seed: customer-code payments [{kind "pay", amount, channel,
    cancel, kill}] (every kill phase at least once), then, mixed in, merchant-code ones
    [{kind "show", amount, channel, end, kill, variant}], refunds [{kind "refund",
    whole, share, pick, kill, variant}] and voids [{kind "void", pick, kill, variant}];
    with overlap a last [{kind "overlap"}]. Without the new kinds the plan is the one
    this seed always gave."""
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
    for p in plan:
        p["kind"] = "pay"
    if not (shows or refunds or voids or overlap):
        return plan

    rng = random.Random("qrplan-more-%s" % seed)
    show_steps = [{"kind": "show", "amount": rng.randint(1, 99) * 100 + rng.choice(ORDINARY_CENTS),
                   "channel": rng.choice(CHANNELS), "end": None, "kill": None, "variant": None}
                  for _ in range(shows)]
    for step, phase in zip(rng.sample(show_steps, min(shows, len(SHOW_KILL_PHASES))),
                           SHOW_KILL_PHASES):
        step["kill"], step["variant"] = phase, KILL_VARIANTS[phase][0]
    # the first shows left end each way once; more_kills take from the others
    covering = [s for s in show_steps if s["kill"] is None][:len(SHOW_ENDS)]
    ends = list(SHOW_ENDS)
    rng.shuffle(ends)
    for step, end in zip(covering, ends):
        step["end"] = end
    refund_steps = [{"kind": "refund", "whole": (n == 0) if n < 2 else rng.random() < 0.4,
                     "share": round(rng.uniform(0.1, 0.9), 3), "pick": rng.random(),
                     "kill": None, "variant": None} for n in range(refunds)]
    void_steps = [{"kind": "void", "pick": rng.random(), "kill": None, "variant": None}
                  for _ in range(voids)]
    for steps, phase in ((refund_steps, "refunding"), (void_steps, "voiding")):
        if steps:
            step = rng.choice(steps)
            step["kill"], step["variant"] = phase, KILL_VARIANTS[phase][0]
    # more_kills: each other way of each phase once (in a seeded order), then at random
    free = {kind: [s for s in steps if s["kill"] is None and s.get("end") is None]
            for kind, steps in (("show", show_steps), ("refund", refund_steps),
                                ("void", void_steps))}
    ways = [(phase, way) for phase in SHOW_KILL_PHASES + BACK_KILL_PHASES
            for way in KILL_VARIANTS[phase][1:]]
    rng.shuffle(ways)
    kind_of = {"shown": "show", "closing": "show", "refunding": "refund", "voiding": "void"}
    for _ in range(max(0, more_kills)):
        ways = [w for w in ways if free[kind_of[w[0]]]]
        if ways:
            phase, way = ways.pop(0)
        else:
            kinds = [k for k in sorted(free) if free[k]]
            if not kinds:
                break
            phase = rng.choice([p for p in kind_of if kind_of[p] == rng.choice(kinds)])
            way = rng.choice(KILL_VARIANTS[phase])
        steps = free[kind_of[phase]]
        step = steps.pop(rng.randrange(len(steps)))
        step["kill"], step["variant"] = phase, way
    for step in show_steps:
        if step["kill"] is None and step["end"] is None:
            step["end"] = rng.choice(SHOW_ENDS)
            if step["end"] == "pay" and rng.random() < 0.5:
                # the phone's own scripts: the customer gives up, or has no balance
                step["amount"] = step["amount"] // 100 * 100 + rng.choice((12, 51))
    merged = list(plan)
    for step in show_steps:
        merged.insert(rng.randint(0, len(merged)), step)
    backs = refund_steps + void_steps
    rng.shuffle(backs)
    for step in backs:                  # never first: there must be a sale before
        merged.insert(rng.randint(min(1, len(merged)), len(merged)), step)
    if overlap:
        merged.append({"kind": "overlap", "kill": None})
    return merged


def describe(step):
    kind = step["kind"]
    if kind == "pay":
        return "pay %d (%s)%s%s" % (step["amount"], step["channel"],
                                    " cancel" if step["cancel"] else "",
                                    " kill at " + step["kill"] if step["kill"] else "")
    if kind == "show":
        return "show %d (%s) %s" % (step["amount"], step["channel"], step["end"] or (
            "kill at %s (%s)" % (step["kill"], step["variant"])))
    if kind == "refund":
        return "refund %s%s" % ("whole" if step["whole"] else "part %.0f%%" % (
            step["share"] * 100), " kill at refunding (%s)" % step["variant"]
            if step["kill"] else "")
    if kind == "void":
        return "void%s" % (" kill at voiding (%s)" % step["variant"] if step["kill"] else "")
    return kind


def reconcile(records, orders, refunds=(), tid=TID):
    """The mismatches (strings) between the terminal's QR journal records and the
    acquirer's orders (QrLedger.orders()) and refunds (QrLedger.refunds()); and the two
    totals (sales less refunds)."""
    bad = []
    qr = [r for r in records if r.get("method") == "qr"]
    by_number = {out_trade_no(r["id"], tid): r for r in qr}
    mine = collections.defaultdict(list)
    for o in orders:
        if o.get("terminal_id") in (None, tid) or o["out_trade_no"].startswith(tid + "-"):
            mine[o["out_trade_no"]].append(o)
    ledger_refunds = collections.defaultdict(list)      # out_refund_no -> rows
    for f in refunds:
        if f["out_trade_no"] in mine or f["out_trade_no"].startswith(tid + "-"):
            ledger_refunds[f["out_refund_no"]].append(f)
    sales = [r for r in qr if r.get("kind", "sale") == "sale"]
    backs = collections.defaultdict(list)               # sale id -> its refunds and voids
    for r in qr:
        if r.get("kind") in ("refund", "void"):
            backs[r.get("original_id")].append(r)
    for r in qr:
        if r["state"] not in FINAL:
            bad.append("%s#%d is %s, not final" % (
                "" if r.get("kind", "sale") == "sale" else r["kind"] + " ", r["id"], r["state"]))
    approved_ids = set()
    terminal_total = 0
    for r in sales:
        number = out_trade_no(r["id"], tid)
        found = mine.get(number, [])
        shown = r.get("entry") == SHOW_ENTRY
        for o in found:
            if o.get("kind") and o["kind"] != ("native" if shown else "pay"):
                bad.append("#%d (%s): order %s is of kind %s" % (
                    r["id"], "merchant code" if shown else "customer code", number, o["kind"]))
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
                elif shown and o["state"] in OPEN_STATES:
                    bad.append("%s #%d: merchant code order %s is still %s (a phone can "
                               "pay it)" % (r["state"], r["id"], number, o["state"]))
        elif r["state"] == "voided":
            voids = [v for v in backs[r["id"]] if v["kind"] == "void"
                     and v["state"] == "approved"]
            if len(voids) != 1:
                bad.append("voided #%d: %d approved voids" % (r["id"], len(voids)))
            if len(found) != 1:
                bad.append("voided #%d: %d orders %s at the acquirer" % (r["id"], len(found),
                                                                        number))
            for o in found:
                if o["state"] != "REVOKED" or (o.get("refunded_fee") or 0) != (
                        o.get("paid_fee") or 0) or (o.get("paid_fee") or 0) != r["amount"]:
                    bad.append("voided #%d: order %s is %s (paid %s, refunded %s), not "
                               "REVOKED and refunded in full"
                               % (r["id"], number, o["state"], o.get("paid_fee"),
                                  o.get("refunded_fee")))
    # refunds and voids, against the ledger's refunds
    for r in qr:
        if r.get("kind") == "void" and r["state"] == "approved":
            sale = by_number.get(out_trade_no(r.get("original_id") or 0, tid))
            if sale is None or sale["state"] != "voided":
                bad.append("void #%d approved but sale #%s is %s" % (
                    r["id"], r.get("original_id"), sale["state"] if sale else "missing"))
        if r.get("kind") != "refund":
            continue
        number = out_trade_no(r["id"], tid)
        sale_number = out_trade_no(r.get("original_id") or 0, tid)
        rows = ledger_refunds.get(number, [])
        if r["state"] == "approved":
            terminal_total -= r["amount"]
            if len(rows) != 1:
                bad.append("approved refund #%d of #%s: %d refunds %s at the acquirer"
                           % (r["id"], r.get("original_id"), len(rows), number))
                continue
            f = rows[0]
            if f["out_trade_no"] != sale_number or f["refund_fee"] != r["amount"]:
                bad.append("approved refund #%d: %d of %s, the acquirer's %s is %d of %s"
                           % (r["id"], r["amount"], sale_number, number, f["refund_fee"],
                              f["out_trade_no"]))
        elif rows:
            bad.append("%s refund #%d: the acquirer refunded %s under %s"
                       % (r["state"], r["id"], sum(f["refund_fee"] for f in rows), number))
    for number, rows in sorted(ledger_refunds.items()):
        for f in rows:
            if f.get("kind", "refund") != "refund":
                continue                    # a cancel's: the sale's rules above
            r = by_number.get(number)
            if r is None or r.get("kind") != "refund" or r["state"] != "approved":
                bad.append("refund %s of order %s (%d) with no approved refund record"
                           % (number, f["out_trade_no"], f["refund_fee"]))
    # per sale: what it had back
    for r in sales:
        if r["state"] not in ("approved", "voided"):
            continue
        refunded = sum(b["amount"] for b in backs[r["id"]]
                       if b["kind"] == "refund" and b["state"] == "approved")
        if (r.get("refunded") or 0) != refunded:
            bad.append("sale #%d says refunded %d, its approved refunds add up to %d"
                       % (r["id"], r.get("refunded") or 0, refunded))
        given = refunded + (r["amount"] if r["state"] == "voided" else 0)
        if given > r["amount"]:
            bad.append("sale #%d of %d: the terminal gave back %d (refunds %d%s), more than "
                       "was paid" % (r["id"], r["amount"], given, refunded,
                                     ", voided" if r["state"] == "voided" else ""))
        found = mine.get(out_trade_no(r["id"], tid), [])
        if len(found) == 1:
            o = found[0]
            if (o.get("refunded_fee") or 0) != given:
                bad.append("order %s refunded_fee %d, the terminal gave back %d of #%d"
                           % (o["out_trade_no"], o.get("refunded_fee") or 0, given, r["id"]))
            if (o.get("refunded_fee") or 0) > (o.get("paid_fee") or 0):
                bad.append("order %s refunded %d of %d paid" % (
                    o["out_trade_no"], o.get("refunded_fee") or 0, o.get("paid_fee") or 0))
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


class ChaosQrSim(QrSim):
    """qrsim whose answers to the ops in .lose are lost: the request is acted on and
    committed as always, then the connection is held silent (the .99 delivery) until
    the terminal gives up on it: booked at the acquirer, unknown to the terminal."""

    def __init__(self, *args, **kw):
        QrSim.__init__(self, *args, **kw)
        self.lose = frozenset()
        self.lost = collections.Counter()

    def handle_request(self, op, fields):
        answer = QrSim.handle_request(self, op, fields)
        if op in self.lose:
            self.lost[op] += 1
            answer.delivery = SILENT
        return answer


class QrChaos(chaos.Chaos):
    """chaos.Chaos's terminal handling (to_idle, login, restart) around QR payments,
    merchant-presented codes, refunds and voids."""

    def __init__(self, payments=6, kills=3, seed=None, workdir=None, keep=False, log=None,
                 drain_s=DRAIN_S, shows=0, refunds=0, voids=0, more_kills=0, overlap=False):
        chaos.Chaos.__init__(self, sales=payments, kills=kills, seed=seed, workdir=workdir,
                             keep=keep, log=log, drain_s=drain_s)
        self.payments = int(payments)
        self.shows = int(shows)
        self.refunds = int(refunds)
        self.voids = int(voids)
        self.more_kills = int(more_kills)
        self.overlap = bool(overlap)
        self.rng = random.Random("qrrun-%s" % self.seed)
        self.qrsim = None
        self.codes = 0
        self.outcomes = collections.Counter()
        self.kind_outcomes = collections.defaultdict(collections.Counter)
        self.done = collections.Counter()
        self.kill_phases_met = collections.Counter()
        self.cancels = 0
        self.killed_states = collections.Counter()
        self.kill_variants = collections.Counter()
        self.phone = collections.Counter()
        self.extra_sales = 0
        self.skipped = []
        self.overlap_met = None
        self._holds = 0
        self.retried = collections.Counter()    # forced cases tried again, and why

    # -- parts ------------------------------------------------------------------------
    def _setup(self):
        if self.given_workdir:
            self.workdir = os.path.abspath(self.given_workdir)
            os.makedirs(self.workdir, exist_ok=True)
        else:
            self.workdir = tempfile.mkdtemp(prefix="handpos-qrchaos-")
        self.qrsim = ChaosQrSim(os.path.join(self.workdir, "qr"), wait_ms=WAIT_MS,
                                slow_ms=SLOW_MS, qr_expiry_s=SHOW_EXPIRY_S)
        _, qr_port = self.qrsim.start()
        self.proxy = FaultProxy(0, qr_port)
        port = self.proxy.start()
        config_path = os.path.join(self.workdir, "handpos.toml")
        with open(config_path, "w") as f:
            f.write(
                '[terminal]\nid = "%s"\n'
                '[qr]\nenabled = true\naddress = "127.0.0.1:%d"\nca_file = "%s"\n'
                'mch_id = "%s"\nkey = "%s"\npoll_s = %d\npay_timeout_s = %d\n'
                'request_timeout_s = %d\nshow_timeout_s = %d\n'
                '[security]\ntest_keys = true\n[lab]\nenabled = true\n'
                '[ui]\nidle_logout_s = 86400\nentry_timeout_s = 600\nmenu_timeout_s = 3600\n'
                # one supervisor approves its own refunds and voids here
                '[auth]\nsecond_person = false\n'
                # the same test cards, refunds and voids by the dozen: no anomaly rule
                '[anomaly]\nsame_card_count = 0\nhigh_amount_factor = 0\ndecline_run = 0\n'
                'backs_count = 0\nrefund_new_card = false\n'
                % (TID, port, self.qrsim.ca_file, MCH_ID, DEFAULT_KEY.decode(), POLL_S,
                   PAY_TIMEOUT_S, REQUEST_TIMEOUT_S, SHOW_TIMEOUT_S))
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

    def _record(self, rec_id):
        for r in self.term.journal():
            if r["id"] == rec_id:
                return r
        return None

    def _last_id(self):
        return max([r["id"] for r in self.term.journal()] or [0])

    def _new_record(self, after_id, kind):
        recs = [r for r in self._qr_records() if r["id"] > after_id and r["kind"] == kind]
        return recs[-1] if recs else None

    def _until(self, check, timeout_s, step_s=0.05):
        """Poll check() until it is true (returned) or timeout_s passes (None)."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                return None
            time.sleep(step_s)

    def _outcome(self, kind, rec):
        state = rec["state"] if rec else "none"
        self.kind_outcomes[kind][state] += 1
        return state

    # -- one customer-code payment ----------------------------------------------------------
    def _start(self, amount, method="3", want="qr:code"):
        """Amount, ENTER, the method: on the customer's code screen (3), or the
        merchant's code flow (4; or its result at once when the create could not leave).
        While the terminal knows the acquirer unreachable it refuses ("QR needs
        network", and probes): tried again for up to STUCK_S, as a cashier would."""
        deadline = time.monotonic() + STUCK_S
        tries = 0
        while tries < 6 or time.monotonic() < deadline:
            tries += 1
            self.to_idle()
            self.term.press(*str(amount))
            if self.term.top()[0] != "sale:amount":
                continue
            self.term.press("ENTER")
            if self.term.top()[0] != "sale:method":
                continue
            self.term.press(method)
            top = self._wait_top([want, "sale:result"], 3)
            if top == want or (want.endswith(":") and top.startswith(want)) or (
                    top == "sale:result" and method == "4"):
                return top
            if "network" in (self.term.screen().get("text") or ""):
                self.retried["start: needs network"] += 1
                time.sleep(0.5)
        raise ChaosError("could not start a QR payment of %d; screen:\n%s"
                         % (amount, self.term.screen().get("text")))

    def _scan(self, code):
        answer = self.term.call("scan", code=code)
        if not answer.get("ok"):
            raise ChaosError("scan: %s" % answer.get("error"))

    def _wait_done(self, i, prefix="qr:"):
        deadline = time.monotonic() + RESULT_WAIT_S
        while True:
            top, _ = self.term.top()
            if not top.startswith(prefix):
                return top
            if time.monotonic() > deadline:
                raise ChaosError("step %d: still on %s after %d s; screen:\n%s"
                                 % (i, top, RESULT_WAIT_S, self.term.screen().get("text")))
            time.sleep(0.05)

    def _kill(self, i, phase, rec_id=None, variant=None, while_down=None):
        """SIGKILL, note the state its record was in (rec_id, else the last QR record's;
        none on the code screen), run while_down() with the terminal down, restart."""
        if rec_id is not None:
            rec = self._record(rec_id)
            state = rec["state"] if rec else "?"
        else:
            recs = self._qr_records() if phase != "code" else []
            state = recs[-1]["state"] if recs else "-"
        # "sending" (pay, refund or cancel out, code shown, close out) or
        # "reversal_pending" (cancelling) show the hard case was really met
        self.killed_states[phase + ":" + state] += 1
        if variant:
            self.kill_variants[phase + ":" + variant] += 1
        self._kill_and_restart(i, phase, while_down, step="step")
        self.kill_phases_met[phase] += 1

    def _pay(self, i, step):
        amount, kill = step["amount"], step["kill"]
        self._start(amount)
        if kill == "code":
            self._kill(i, kill)
            return
        code = self._code(step["channel"])
        if kill == "paying":
            with self._held():
                self.proxy.set("pass")
                self._scan(code)
                time.sleep(0.2)
                self._kill(i, kill)
            return
        if kill in ("waiting", "cancelling") or step["cancel"]:
            with self._held():
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
        self._outcome("pay", last)
        self.note("payment %d (%d): %s, screen %s" % (i, amount, last.get("state"), top))

    _payment = _pay

    # -- one merchant-presented code ---------------------------------------------------------
    def _wait_code(self, timeout_s=20):
        """The code_url on the screen; None when the flow ended (or timeout_s passed)
        without one (the create failed, or is being closed)."""
        deadline = time.monotonic() + timeout_s
        while True:
            top, _ = self.term.top()
            if not top.startswith("qr_show:"):
                return None
            url = self.term.screen().get("qr")
            if url:
                return url
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    @contextlib.contextmanager
    def _held(self):
        """The flapper held (Flapper.hold), nested or not: released by the outermost."""
        if self._holds:
            self._holds += 1
            try:
                yield
            finally:
                self._holds -= 1
            return
        self._holds = 1
        try:
            with self.flapper.hold():
                yield
        finally:
            self._holds = 0

    def _clear_faults(self):
        """While the terminal is down after a forced kill: the link passes again."""
        self.qrsim.lose = frozenset()
        self.proxy.set("pass")

    def _phone_pays(self, url, channel):
        status, answer = self.qrsim.phone_pay({"code_url": url, "channel": channel})
        said = answer.get("trade_state") or answer.get("err_code") or answer.get("code")
        self.phone["%s %s" % (answer.get("result") or answer.get("code"), said)] += 1
        self.note("phone paid %s (%s): %s %s" % (url[-14:], channel, status, said))

    def _show(self, i, step):
        amount, kill = step["amount"], step["kill"]
        before = self._last_id()
        if kill:
            with self._held():
                self.proxy.set("pass")
                url, rec = self._shown(i, amount)
                self._show_kill(i, step, url, rec["id"])
                self.proxy.set("pass")
            return
        self._start(amount, "4", "qr_show:")
        url = self._wait_code()
        if url is not None:
            end = step["end"]
            if end in ("pay", "pay_cancel"):
                self._phone_pays(url, step["channel"])
            if end in ("cancel", "pay_cancel"):
                if end == "cancel":
                    time.sleep(self.rng.uniform(0, 1.5))
                self.term.press("CANCEL")
                self.cancels += 1
        top = self._wait_done(i, "qr_show:")
        rec = self._new_record(before, "sale")
        state = self._outcome("show", rec)
        self.note("show %d (%d, %s): %s%s, screen %s" % (
            i, amount, step["end"], state, "" if url else " (no code shown)", top))

    def _shown(self, i, amount):
        """A merchant's code on the screen, the link passing: (code_url, record). A link
        still stuck from an earlier fault (a connect in its handshake holds the requests
        behind it for up to the link's 15 s connect timeout) fails creates meanwhile;
        each try leaves a final record."""
        deadline = time.monotonic() + STUCK_S
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            before = self._last_id()
            self._start(amount, "4", "qr_show:")
            url = self._wait_code()
            rec = self._new_record(before, "sale")
            if url and rec is not None:
                return url, rec
            self._wait_done(i, "qr_show:")
            rec = self._new_record(before, "sale")
            self.note("step %d: no code shown (%s, %s); again" % (
                i, rec["state"] if rec else "no record", rec["reason"] if rec else ""))
            self.retried["show " + (rec["reason"] if rec else "none")] += 1
        raise ChaosError("step %d: the merchant's code was not shown in %d tries with the "
                         "link passing; screen:\n%s" % (i, tries, self.term.screen().get("text")))

    def _show_kill(self, i, step, url, rec_id):
        phase, variant = step["kill"], step["variant"]
        if phase == "shown":
            if variant == "before":
                self._phone_pays(url, step["channel"])
            self._kill(i, phase, rec_id, variant, while_down=(
                (lambda: self._phone_pays(url, step["channel"])) if variant == "down" else None))
            return
        number = out_trade_no(rec_id)
        if variant == "lost":                # closed at the acquirer, the answer lost
            self.qrsim.lose = frozenset(["close"])
            try:
                self.term.press("CANCEL")
                self.cancels += 1
                closed = self._until(lambda: (self.qrsim.ledger.order(MCH_ID, number) or {})
                                     .get("state") == "CLOSED", 5)
                if not closed:
                    self.note("step %d: the close did not reach the acquirer" % i)
                self._kill(i, phase, rec_id, variant, while_down=self._clear_faults)
            finally:
                self.qrsim.lose = frozenset()
            return
        self.proxy.set("drop")               # the close (and the cancel after) stay out
        self.term.press("CANCEL")
        self.cancels += 1
        if variant == "late":                # the close timed out: a cancel is out
            if not self._until(lambda: (self._record(rec_id) or {}).get("state")
                               == "reversal_pending", REQUEST_TIMEOUT_S + 6, 0.1):
                self.note("step %d: the close did not turn into a cancel" % i)
        else:
            time.sleep(0.5)
        self._kill(i, phase, rec_id, variant, while_down=self._clear_faults)

    # -- refunds and voids -------------------------------------------------------------------
    def _targets(self, kind):
        """Approved QR sales the terminal would refund (or void), with no refund or
        void of their own in flight (with overlap, those too)."""
        recs = self._qr_records()
        busy = {r["original_id"] for r in recs
                if r["kind"] in ("refund", "void") and r["state"] not in FINAL}
        ok = []
        for r in recs:
            if r["kind"] != "sale" or r["state"] != "approved":
                continue
            if kind == "refund" and r["amount"] - r["refunded"] <= 0:
                continue
            if kind == "void" and r["refunded"]:
                continue
            if r["id"] in busy and not self.overlap:
                continue
            ok.append(r)
        return ok

    def _extra_sale(self, i):
        """An approved QR sale to give back when none is left: a customer code paid at
        once, the link passing (tried again while a link stuck from an earlier fault
        fails it: "not sent", nothing charged)."""
        deadline = time.monotonic() + STUCK_S
        with self._held():
            self.proxy.set("pass")
            while time.monotonic() < deadline:
                amount = self.rng.randint(1, 99) * 100 + self.rng.choice(ORDINARY_CENTS)
                before = self._last_id()
                self._start(amount)
                self._scan(self._code("wechat"))
                self._wait_done(i)
                self.extra_sales += 1
                rec = self._new_record(before, "sale")
                self.note("step %d: an extra sale of %d to give back: %s %s" % (
                    i, amount, rec["state"] if rec else "none", rec["reason"] if rec else ""))
                if rec and rec["state"] == "approved":
                    return rec
                self.retried["sale " + (rec["reason"] if rec else "none")] += 1
        return None

    def _target(self, i, step):
        ok = self._targets(step["kind"])
        if not ok:
            rec = self._extra_sale(i)
            if rec is None:
                return None
            ok = [rec]
        return ok[min(len(ok) - 1, int(step["pick"] * len(ok)))]

    def _open_pick(self, key):
        """MENU, 2 (refund) or 3 (void), the supervisor's PIN: on the pick's number."""
        for _ in range(4):
            self.to_idle()
            self.term.press("MENU")
            if not self._wait_top(["home:"], 3).startswith("home:"):
                continue
            self.term.press(key)
            if self._wait_top(["supervisor:pin"], 3) != "supervisor:pin":
                continue
            self.term.press(*SUPERVISOR_PIN)
            self.term.press("ENTER")
            if self._wait_top(["pick:number"], 3) == "pick:number":
                return
        raise ChaosError("could not get to the %s pick; screen:\n%s"
                         % ("refund" if key == "2" else "void", self.term.screen().get("text")))

    def _pick(self, rec_id):
        self.term.press(*str(rec_id))
        self.term.press("ENTER")
        if self._wait_top(["pick:confirm"], 3) != "pick:confirm":
            raise ChaosError("the terminal would not take #%d; screen:\n%s"
                             % (rec_id, self.term.screen().get("text")))
        self.term.press("ENTER")

    def _ask_refund(self, sale, amount):
        """Up to the amount typed; the last ENTER is the caller's."""
        self._open_pick("2")
        self._pick(sale["id"])
        if self._wait_top(["refund:amount"], 3) != "refund:amount":
            raise ChaosError("no refund amount screen; screen:\n%s"
                             % self.term.screen().get("text"))
        self.term.press(*str(amount))

    def _ask_void(self, sale):
        """Up to the sale's confirmation; the last ENTER is the caller's."""
        self._open_pick("3")
        self.term.press(*str(sale["id"]))
        self.term.press("ENTER")
        if self._wait_top(["pick:confirm"], 3) != "pick:confirm":
            raise ChaosError("the terminal would not void #%d; screen:\n%s"
                             % (sale["id"], self.term.screen().get("text")))

    def _refund_amount(self, sale, step):
        left = sale["amount"] - sale["refunded"]
        if step["whole"] or left < 2:
            return left
        return max(1, min(left - 1, int(left * step["share"])))

    def _back(self, i, step):
        """A refund or a void of a sale, killed on the way or not."""
        kind = step["kind"]
        sale = self._target(i, step)
        if sale is None:
            self.skipped.append("step %d: no sale to %s" % (i, kind))
            self.note(self.skipped[-1])
            return
        amount = self._refund_amount(sale, step) if kind == "refund" else sale["amount"]
        self.note("step %d: %s %d of #%d (%d, refunded %d)" % (
            i, kind, amount, sale["id"], sale["amount"], sale["refunded"]))
        before = self._last_id()
        op, busy = ("refund", "refund:qr_refund") if kind == "refund" else (
            "cancel", "void:working")
        if step["kill"]:
            with self._held():
                self.proxy.set("pass")
                self._back_killed(i, step, sale, amount, op, busy)
            return
        if kind == "refund":
            self._ask_refund(sale, amount)
        else:
            self._ask_void(sale)
        self.term.press("ENTER")
        top = self._wait_done(i, busy)
        rec = self._new_record(before, kind)
        state = self._outcome(kind, rec)
        self.note("step %d: %s of #%d: %s, screen %s" % (i, kind, sale["id"], state, top))

    def _back_killed(self, i, step, sale, amount, op, busy):
        """The refund or void out (its answer to be lost, or the request held at the
        proxy), then the kill. A refund whose first request cannot leave (a link still
        stuck from an earlier fault) ends "failed", nothing done: asked again."""
        kind, phase, way = step["kind"], step["kill"], step["variant"]
        deadline = time.monotonic() + STUCK_S
        while True:
            before = self._last_id()
            if kind == "refund":
                self._ask_refund(sale, amount)
            else:
                self._ask_void(sale)
            if way == "lost":
                self.qrsim.lose = frozenset([op])
            else:
                self.proxy.set("drop")
            try:
                self.term.press("ENTER")
                rec = self._until(lambda: self._new_record(before, kind), 3)
                if rec is None:
                    raise ChaosError("step %d: no %s record; screen:\n%s"
                                     % (i, kind, self.term.screen().get("text")))
                if way != "lost":
                    time.sleep(0.3)
                    self._kill(i, phase, rec["id"], way, while_down=self._clear_faults)
                    return
                # (behind a request of a recovery, it waits its turn)
                number = out_trade_no(sale["id"])
                booked = self._until(lambda: self._booked(op, rec["id"], number) or (
                    self._record(rec["id"]) or {}).get("state") == "failed", 12, 0.1)
                now = self._record(rec["id"]) or {}
                if now.get("state") == "failed" and time.monotonic() < deadline:
                    self.retried["%s %s" % (kind, now.get("reason"))] += 1
                    self.note("step %d: the %s was not sent (%s); again" % (
                        i, kind, now.get("reason")))
                    self.qrsim.lose = frozenset()
                    self._wait_done(i, busy)
                    continue
                if booked and now.get("state") != "failed":
                    self.kill_variants[phase + ":booked"] += 1
                else:
                    self.note("step %d: the %s did not reach the acquirer" % (i, op))
                self._kill(i, phase, rec["id"], way, while_down=self._clear_faults)
                return
            finally:
                self.qrsim.lose = frozenset()
                self.proxy.set("pass")

    def _booked(self, op, rec_id, sale_number):
        if op == "refund":
            return any(f["out_refund_no"] == out_trade_no(rec_id)
                       for f in self.qrsim.ledger.refunds())
        return (self.qrsim.ledger.order(MCH_ID, sale_number) or {}).get("state") == "REVOKED"

    _refund = _back
    _void = _back

    def _overlap(self, i, step):
        """A refund and a void of one sale, both let through while the other is still
        pending (the terminal takes both today): a void of a sale whose refund is booked
        at the acquirer but not yet answered, and a refund of a sale whose void's cancel
        has not reached the acquirer yet. self.overlap_met says whether each was made."""
        self.overlap_met = {}
        with self._held():
            self.proxy.set("pass")
            self.overlap_met["void_over_refund"] = self._void_over_refund(i)
            self.proxy.set("pass")
            self.overlap_met["refund_over_void"] = self._refund_over_void(i)
            self.proxy.set("pass")

    def _void_over_refund(self, i):
        sale = self._extra_sale(i)
        if sale is None:
            return "missed: no sale"
        amount = max(1, sale["amount"] // 3)
        before = self._last_id()
        self.qrsim.lose = frozenset(["refund"])     # booked, the answers lost
        try:
            self._ask_refund(sale, amount)
            self.term.press("ENTER")
            refund = self._until(lambda: self._new_record(before, "refund"), 3)
            booked = refund is not None and self._until(
                lambda: self._booked("refund", refund["id"], None), 12, 0.1)
            top = self._wait_done(i, "refund:qr_refund")
            refund = self._new_record(before, "refund")
            self.note("step %d: refund %d of #%d %s, left %s (screen %s)" % (
                i, amount, sale["id"], "booked" if booked else "not booked",
                refund["state"] if refund else "none", top))
            if not booked or refund is None or refund["state"] != "sending":
                return "missed: refund %s" % (refund["state"] if refund else "not recorded")
            if self._refused(lambda: self._ask_void(sale)):
                self.note("step %d: void of #%d with its refund pending: refused" % (
                    i, sale["id"]))
                return "refused"
            self.term.press("ENTER")
            top = self._wait_done(i, "void:working")
            void = self._new_record(before, "void")
        finally:
            self.qrsim.lose = frozenset()
        self.note("step %d: void of #%d with its refund pending: %s (screen %s)" % (
            i, sale["id"], void["state"] if void else "none", top))
        self._outcome("overlap", void)
        return "met" if void and void["state"] == "approved" else (
            "missed: void %s" % (void["state"] if void else "not recorded"))

    def _refund_over_void(self, i):
        sale = self._extra_sale(i)
        if sale is None:
            return "missed: no sale"
        before = self._last_id()
        self._ask_void(sale)
        # every connection reset: the cancel cannot reach the acquirer, and the link is
        # not left stuck in a handshake; retried 2 s, then 15 s later
        self.proxy.set("reset", existing=True, new=True)
        try:
            self.term.press("ENTER")
            top = self._wait_done(i, "void:working")
            void = self._new_record(before, "void")
        finally:
            self.proxy.set("pass")
        order = self.qrsim.ledger.order(MCH_ID, out_trade_no(sale["id"])) or {}
        self.note("step %d: void of #%d left %s, order %s (screen %s)" % (
            i, sale["id"], void["state"] if void else "none", order.get("state"), top))
        if void is None or void["state"] != "sending" or order.get("state") == "REVOKED":
            return "missed: void %s" % (void["state"] if void else "not recorded")
        amount = max(1, sale["amount"] // 3)
        if self._refused(lambda: self._ask_refund(sale, amount)):
            self.note("step %d: refund of #%d with its void pending: refused" % (i, sale["id"]))
            return "refused"
        self.term.press("ENTER")
        top = self._wait_done(i, "refund:qr_refund")
        refund = self._new_record(before, "refund")
        self.note("step %d: refund %d of #%d with its void pending: %s (screen %s)" % (
            i, amount, sale["id"], refund["state"] if refund else "none", top))
        self._outcome("overlap", refund)
        return "met" if refund and refund["state"] == "approved" else (
            "missed: refund %s" % (refund["state"] if refund else "not recorded"))

    def _refused(self, ask):
        """True when ask() stops on the pick with "Refund/void pending" (the terminal
        refuses a second give-back of a sale while one is in flight); the pick is left."""
        try:
            ask()
        except ChaosError as exc:
            if "Refund/void pending" not in str(exc):
                raise
            for _ in range(4):
                self.term.press("CANCEL")
                if self._wait_top(["idle:idle"], 2) == "idle:idle":
                    break
            return True
        return False

    # -- the run ------------------------------------------------------------------------
    def _drain(self):
        """Proxy to pass, a restart (recovery at start), then time until all are final."""
        self.flapper.stop()
        self.proxy.set("pass")
        self.qrsim.lose = frozenset()
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
        plan = make_plan(self.payments, self.kills_planned, self.seed, self.shows,
                         self.refunds, self.voids, self.more_kills, self.overlap)
        report = {"seed": self.seed, "payments": self.payments, "steps": len(plan),
                  "plan": dict(collections.Counter(s["kind"] for s in plan))}
        try:
            self._setup()
            self.note("seed %s, %d steps %s; workdir %s" % (
                self.seed, len(plan), json.dumps(report["plan"], sort_keys=True),
                self.workdir))
            self.term.start()
            self.to_idle()
            self.flapper.start()
            for i, step in enumerate(plan, 1):
                self.note("step %d: %s" % (i, describe(step)))
                getattr(self, "_" + step["kind"])(i, step)
                self.done[step["kind"]] += 1
                self.sales_done += 1
            records = self._drain()
            orders = self.qrsim.ledger.orders()
            refunds = self.qrsim.ledger.refunds()
            bad, term_total, ledger_total = reconcile(records, orders, refunds)
            self.mismatches.extend(bad)
            report.update(terminal_total=term_total, ledger_total=ledger_total,
                          journal=dict(collections.Counter(
                              ("%s %s" % (r["kind"], r["state"]) if r["kind"] != "sale"
                               else r["state"]) for r in records)),
                          shown=dict(collections.Counter(
                              r["state"] for r in records
                              if r["kind"] == "sale" and r["entry"] == SHOW_ENTRY)),
                          ledger=dict(collections.Counter(o["state"] for o in orders)),
                          ledger_refunds=dict(collections.Counter(f["kind"] for f in refunds)))
        except ChaosError as exc:
            self.errors.append("%s: %s" % (type(exc).__name__, exc))
        finally:
            report.update(proxy_faults=dict(self.flapper.applied) if self.flapper else {},
                          lost_answers=dict(self.qrsim.lost) if self.qrsim else {})
            self._cleanup()
        report.update(ok=self.ok(), payments_done=self.done["pay"], steps_done=self.sales_done,
                      done=dict(self.done), kills=len(self.kills),
                      kill_phases=dict(self.kill_phases_met),
                      killed_states=dict(self.killed_states),
                      kill_variants=dict(self.kill_variants),
                      cancels=self.cancels, outcomes=dict(self.outcomes),
                      kind_outcomes={k: dict(v) for k, v in self.kind_outcomes.items()},
                      phone=dict(self.phone), extra_sales=self.extra_sales,
                      overlap=self.overlap_met, retried=dict(self.retried),
                      skipped=list(self.skipped),
                      elapsed_s=round(time.monotonic() - self.t0, 1),
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
    dump = lambda value: json.dumps(value, sort_keys=True)  # noqa: E731
    lines = ["QR chaos: %s (seed %s, %s s)" % ("OK" if report["ok"] else "FAILED",
                                               report["seed"], report.get("elapsed_s")),
             "steps %d/%d %s, done %s, extra sales %d" % (
                 report["steps_done"], report["steps"], dump(report["plan"]),
                 dump(report["done"]), report["extra_sales"]),
             "payments %d/%d, kills %d %s, cancels %d" % (
                 report["payments_done"], report["payments"], report["kills"],
                 dump(report["kill_phases"]), report["cancels"]),
             "killed in %s" % dump(report["killed_states"]),
             "kill variants %s" % dump(report["kill_variants"]),
             "outcomes %s; customer codes %s" % (dump(report["kind_outcomes"]),
                                                 dump(report["outcomes"])),
             "phone %s; forced cases tried again %s" % (dump(report["phone"]),
                                                        dump(report["retried"])),
             "journal %s; merchant codes %s" % (dump(report.get("journal", {})),
                                                dump(report.get("shown", {}))),
             "ledger  %s, refunds %s" % (dump(report.get("ledger", {})),
                                         dump(report.get("ledger_refunds", {}))),
             "totals: terminal %s, acquirer %s" % (report.get("terminal_total"),
                                                   report.get("ledger_total")),
             "proxy faults %s; answers lost %s" % (dump(report["proxy_faults"]),
                                                   dump(report["lost_answers"]))]
    if report.get("overlap"):
        lines.append("overlap (a refund and a void, each over the other pending): %s"
                     % dump(report["overlap"]))
    for s in report["skipped"]:
        lines.append("SKIPPED " + s)
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
    p.add_argument("--payments", type=int, default=12, help="customer-code payments (12)")
    p.add_argument("--kills", type=int, default=4, help="kills among them (4)")
    p.add_argument("--shows", type=int, default=6, help="merchant-presented codes (6)")
    p.add_argument("--refunds", type=int, default=5, help="QR refunds (5)")
    p.add_argument("--voids", type=int, default=3, help="QR voids (3)")
    p.add_argument("--more-kills", type=int, default=2,
                   help="random kills of shows, refunds and voids beyond the forced (2)")
    p.add_argument("--overlap", action="store_true",
                   help="end with a void of a sale whose refund is pending")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    report = QrChaos(args.payments, args.kills, args.seed, args.workdir, args.keep, log,
                     shows=args.shows, refunds=args.refunds, voids=args.voids,
                     more_kills=args.more_kills, overlap=args.overlap).run()
    print(format_report(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
