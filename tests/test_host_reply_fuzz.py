"""Fuzzed host replies: the terminal never crashes or hangs, approves only on a reply it
can trust, and reverses whenever it cannot be sure.

Two layers, 11,000 cases in all:
- on the wire (1,000 cases): a real HostLink and the real payments service talk to a
  loopback server that answers each authorisation with a reply hypothesis made
  (well-formed or not, right or wrong STAN/MTI/TID/amount, truncated, oversize,
  duplicated, garbage, silence) and every reversal properly, so the queue drains;
- the decision (10,000 cases): the payments service given decoded replies of every
  shape through the HostLink contract (request -> one callback), which is what the
  link delivers once framing and decoding are done; the link's own handling of bytes is
  the first layer's and tests/test_iso8583_spec.py's 10,000-case decode fuzz.
"""
import socket
import struct
import threading
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from board.compose import TEST_BDK, TEST_KSN
from drivers import iso8583_spec
from drivers.hostlink import HostLink
from drivers.system import LinuxSystem
from firmware.core import config as schema
from firmware.security import dukpt
from firmware.cards import magstripe
from firmware.payments.journal import MemoryJournal
from firmware.payments.memqueue import MemoryQueue
from firmware.payments.service import Payments
from firmware.core.reactor import Reactor
from firmware.core.store import MemoryStore
from firmware.terminal import Terminal
from tools.cards.stripes import card_tracks

CASES = 1000


class FuzzHost:
    """Answers 0200 with the current recipe, 0420/0421 with a proper 0430, 0800 with 0810."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.recipe = None
        self.stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn):
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
                    n = struct.unpack(">H", buf[:2])[0]
                    frame, buf = buf[2:2 + n], buf[2 + n:]
                    try:
                        req = iso8583_spec.decode(frame)
                    except iso8583_spec.HostMessageError:
                        continue
                    if req["t"] in ("0420", "0421"):
                        out = self._frame({"t": "0430", "11": req["11"], "39": "00", "41": req.get("41", "")})
                    elif req["t"] == "0800":
                        out = self._frame({"t": "0810", "11": req["11"], "39": "00", "70": req["70"]})
                    elif req["t"] == "0200" and self.recipe is not None:
                        out = self.recipe(req)
                    else:
                        out = b""
                    try:
                        conn.sendall(out)
                    except OSError:
                        return

    @staticmethod
    def _frame(msg):
        raw = iso8583_spec.encode(msg)
        return struct.pack(">H", len(raw)) + raw


def reply_recipes():
    """A reply for a request: (function request -> bytes, trusted_rc or None)."""
    rc = st.sampled_from(["00", "05", "51", "55", "91", "12", "00"])
    field_fuzz = st.fixed_dictionaries({
        "mti": st.sampled_from(["0210", "0210", "0210", "0200", "0410", "0110", "0230"]),
        "stan": st.sampled_from(["same", "same", "other"]),
        "tid": st.sampled_from(["same", "same", "absent", "other"]),
        "amount": st.sampled_from(["same", "absent", "other"]),
        "rc": st.one_of(rc, st.just(None)),
        "auth": st.text(alphabet="ABC123 ", min_size=0, max_size=6),
        "twice": st.booleans(),
    })
    raw = st.binary(max_size=64)
    kind = st.sampled_from(["fields", "fields", "fields", "raw", "truncated", "oversize", "silence"])
    return st.tuples(kind, field_fuzz, raw)


def build(kind, f, raw):
    def recipe(req):
        if kind == "silence":
            return b""
        if kind == "raw":
            return struct.pack(">H", len(raw)) + raw
        if kind == "oversize":
            return struct.pack(">H", 60000) + raw
        msg = {"t": f["mti"], "11": req["11"] if f["stan"] == "same" else "%06d" % ((int(req["11"]) + 1) % 999999)}
        if f["rc"] is not None:
            msg["39"] = f["rc"]
        if f["tid"] == "same":
            msg["41"] = req["41"]
        elif f["tid"] == "other":
            msg["41"] = "ZZ999999"
        if f["amount"] == "same":
            msg["4"] = req["4"]
        elif f["amount"] == "other":
            msg["4"] = "%012d" % (int(req["4"]) + 1)
        if f["auth"]:
            msg["38"] = (f["auth"] + "      ")[:6]
        try:
            out = FuzzHost._frame(msg)
        except iso8583_spec.HostMessageError:
            return struct.pack(">H", 3) + b"bad"
        if kind == "truncated":
            return out[:max(1, len(out) // 2)]
        return out + out if f["twice"] else out

    trusted = (kind == "fields" and f["mti"] == "0210" and f["stan"] == "same" and f["rc"] is not None
               and f["tid"] != "other" and f["amount"] != "other")
    return recipe, (f["rc"] if trusted else None)


class Rig:
    def __init__(self):
        self.host = FuzzHost()
        cfg = schema.defaults()
        cfg["host"]["address"] = "127.0.0.1:%d" % self.host.port
        cfg["host"]["tls"] = False
        cfg["lab"]["enabled"] = True
        self.reactor = Reactor()
        self.errors = []
        self.reactor.on_error = self.errors.append
        self.term = Terminal(self.reactor, cfg, MemoryStore(), LinuxSystem(synced=False),
                             auth_iterations=10)
        self.link = HostLink(self.reactor, "127.0.0.1", self.host.port, idle_close_ms=600000)
        key = dukpt.DukptTerminal(dukpt.derive_ipek(TEST_BDK, TEST_KSN), TEST_KSN, lambda s: None)
        self.pay = Payments(self.term, MemoryJournal(), self.link, key, card_readers=1)
        self.term.payments = self.pay
        self.tracks = card_tracks("visa_pin")

    def sale(self, amount, timeout_s):
        stan = self.pay.journal.counters["stan"]
        self.pay.journal = MemoryJournal()
        # STANs go on across cases, as on a terminal: a STAN used again within the
        # link's memory of recent replies would be taken for a duplicate
        self.pay.journal.counters["stan"] = stan
        # a fresh journal starts its STANs again: a fresh queue keys its reversals
        self.pay.queue = self.pay.forwarder.queue = MemoryQueue("HP000001")
        self.pay.forwarder.queued()         # forget what it read from the last one
        self.term.config["host"]["response_timeout_s"] = timeout_s
        card = magstripe.parse_swipe(self.tracks[0], self.tracks[1], None)
        done = []
        self.pay.authorise("sale", amount, card, "1234", done.append)
        for _ in range(2000):
            if done:
                break
            self.reactor.run_once(20)
        return done

    def drain_reversals(self):
        # "retry now" every 50 ms (as a person pressing Upload now would), and let
        # the loop sleep in between: the host answers from its own thread
        deadline = time.monotonic() + 40
        nudge = 0
        while time.monotonic() < deadline:
            if not self.pay.pending_reversals():
                return True
            if time.monotonic() >= nudge:
                self.pay.kick_reversals()
                nudge = time.monotonic() + 0.05
            self.reactor.run_once(20)
        return False


RIG = {}


def rig():
    if "r" not in RIG:
        RIG["r"] = Rig()
    return RIG["r"]


@settings(max_examples=CASES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(reply_recipes(), st.integers(min_value=1, max_value=999999))
def test_fuzzed_replies_never_approve_what_cannot_be_trusted(case, amount):
    r = rig()
    recipe, trusted_rc = build(*case)
    r.host.recipe = recipe
    # A trustworthy reply arrives within milliseconds: give it all the time it needs.
    # For the rest any outcome but an approval is right, so a short timeout keeps
    # ten thousand cases quick (a late reply is then simply unmatched).
    done = r.sale(amount, 5 if trusted_rc is not None else 0.005)
    assert len(done) == 1, "the sale never ended: a hang"
    rec = done[0]
    if trusted_rc == "00":
        assert rec["state"] == "approved"
    elif trusted_rc is not None:
        assert rec["state"] == "declined" and rec["rc"] == trusted_rc
    else:
        assert rec["state"] in ("reversal_pending", "reversed", "failed"), (case, rec)
        assert rec["state"] != "approved"
    assert r.errors == []
    fwd = r.pay.forwarder
    assert r.drain_reversals(), ("a reversal was never acknowledged", fwd.state, fwd.echoing,
                                 fwd.verified, fwd.timer, fwd._cache, fwd._acks, fwd.inflight,
                                 r.pay.queue.records())


DECISION_CASES = 10000


class ContractHost:
    """The HostLink contract (request -> exactly one callback, from the loop) with the
    reply decided by the test: what the real link hands on after framing/decoding."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.answer = None
        self.requests = []

    def request(self, msg, timeout_ms, callback):
        self.requests.append(msg)
        if msg["t"] in ("0420", "0421"):
            result = {"kind": "response", "msg": {"t": "0430", "11": msg["11"], "39": "00"}}
        elif msg["t"] == "0800":
            result = {"kind": "response", "msg": {"t": "0810", "11": msg["11"], "39": "00"}}
        else:
            result = self.answer(msg)
        self.reactor.call_soon(callback, result)

    def close(self, reason=""):
        pass


def decoded_replies():
    """A result dict as the link delivers it, for a given request."""
    text = st.text(alphabet="0123456789ABZ ", max_size=14)
    return st.one_of(
        st.fixed_dictionaries({"kind": st.just("timeout")}),
        st.fixed_dictionaries({"kind": st.just("error"), "sent": st.booleans(),
                               "reason": st.sampled_from(["reset", "tls", "refused"])}),
        st.fixed_dictionaries({
            "kind": st.just("response"),
            "mti": st.sampled_from(["0210", "0210", "0210", "0200", "0410", "0110", "", "0211"]),
            "stan": st.one_of(st.just("same"), text),
            "tid": st.one_of(st.sampled_from(["same", "absent"]), text),
            "amount": st.one_of(st.sampled_from(["same", "absent"]), text),
            "rc": st.one_of(st.sampled_from(["00", "05", "51", "55", "91", "00"]), text, st.none()),
            "auth": st.one_of(st.none(), text),
            "rrn": st.one_of(st.none(), text)}))


def realise(spec, req):
    if spec["kind"] != "response":
        return dict(spec), None
    msg = {"t": spec["mti"]}
    msg["11"] = req["11"] if spec["stan"] == "same" else spec["stan"]
    if spec["tid"] == "same":
        msg["41"] = req["41"]
    elif spec["tid"] != "absent":
        msg["41"] = spec["tid"]
    if spec["amount"] == "same":
        msg["4"] = req["4"]
    elif spec["amount"] != "absent":
        msg["4"] = spec["amount"]
    if spec["rc"] is not None:
        msg["39"] = spec["rc"]
    if spec["auth"] is not None:
        msg["38"] = spec["auth"]
    if spec["rrn"] is not None:
        msg["37"] = spec["rrn"]
    trusted = (msg["t"] == "0210" and msg["11"] == req["11"] and isinstance(msg.get("39"), str)
               and len(msg["39"]) == 2 and msg.get("41", req["41"]) == req["41"]
               and msg.get("4", req["4"]) == req["4"])
    return {"kind": "response", "msg": msg}, (msg["39"] if trusted else None)


DECISION = {}


def decision_rig():
    if "r" not in DECISION:
        r = Rig.__new__(Rig)
        cfg = schema.defaults()
        cfg["host"]["address"] = "127.0.0.1:9"
        cfg["host"]["tls"] = False
        cfg["lab"]["enabled"] = True
        r.reactor = Reactor()
        r.errors = []
        r.reactor.on_error = r.errors.append
        r.term = Terminal(r.reactor, cfg, MemoryStore(), LinuxSystem(synced=False), auth_iterations=10)
        r.link = ContractHost(r.reactor)
        key = dukpt.DukptTerminal(dukpt.derive_ipek(TEST_BDK, TEST_KSN), TEST_KSN, lambda s: None)
        r.pay = Payments(r.term, MemoryJournal(), r.link, key, card_readers=1)
        r.term.payments = r.pay
        r.tracks = card_tracks("visa_pin")
        DECISION["r"] = r
    return DECISION["r"]


@settings(max_examples=DECISION_CASES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(decoded_replies(), st.integers(min_value=1, max_value=10 ** 12 - 1), st.booleans())
def test_every_decoded_reply_leads_to_a_safe_outcome(spec, amount, with_pin):
    r = decision_rig()
    seen = {}

    def answer(req):
        result, seen["trusted"] = realise(spec, req)
        return result
    r.link.answer = answer
    stan = r.pay.journal.counters["stan"]
    r.pay.journal = MemoryJournal()       # each case on its own books
    r.pay.journal.counters["stan"] = stan
    r.pay.queue = r.pay.forwarder.queue = MemoryQueue("HP000001")
    r.pay.forwarder.queued()
    card = magstripe.parse_swipe(r.tracks[0], r.tracks[1], None)
    done = []
    r.pay.authorise("sale", amount, card, "1234" if with_pin else "", done.append)
    for _ in range(20):
        if done:
            break
        r.reactor.run_once(0)
    assert len(done) == 1
    rec = done[0]
    trusted = seen["trusted"]
    if trusted == "00":
        assert rec["state"] == "approved"
    elif trusted is not None:
        assert rec["state"] == "declined" and rec["rc"] == trusted
    elif spec["kind"] == "error" and not spec["sent"]:
        assert rec["state"] == "failed"               # nothing left the terminal
    else:
        assert rec["state"] in ("reversal_pending", "reversed"), (spec, rec)
    for _ in range(20):
        if not r.pay.pending_reversals():
            break
        r.pay.kick_reversals()
        r.reactor.run_once(0)
    assert r.pay.pending_reversals() == []
    assert r.errors == []
