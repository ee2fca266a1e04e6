"""The QR acquirer simulator (tools/host/qrsim.py) over real HTTPS: signatures both ways,
every op and scripted outcome, refusals, idempotent cancel and refund, the ledger after
a restart, and the worked signature examples of docs/qr-protocol.md."""
import http.client
import itertools
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time

import pytest

from tools.host import qrsim
from tools.host.qrsim import DEFAULT_KEY, QrSim, canonical_string, make_sign, verify

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "qr-protocol.md")
WAIT_MS = 300
SLOW_MS = 1500
MCH = "100000000001"
TID = "HP000001"
WECHAT = "134567890123456789"
_codes = itertools.count(1)
_orders = itertools.count(1)


def wechat_code():
    return "13%016d" % next(_codes)


def order_no():
    return "T%s-%05d" % (secrets.token_hex(3), next(_orders))


class Clock:
    """The simulator's clock: real time plus an offset a test can move."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self):
        return time.time() + self.offset


class Client:
    """A terminal's side, written from docs/qr-protocol.md: signs, sends, verifies."""

    def __init__(self, sim, clock=time.time, timeout=5.0, key=DEFAULT_KEY):
        self.sim, self.clock, self.key = sim, clock, key
        self.ctx = ssl.create_default_context(cafile=sim.ca_file)
        self.timeout = timeout
        self.conn = None

    def connect(self, timeout=None):
        host, port = self.sim.address
        return http.client.HTTPSConnection(host, port, context=self.ctx,
                                           timeout=timeout or self.timeout)

    def fields(self, **fields):
        out = {"mch_id": MCH, "terminal_id": TID, "nonce": secrets.token_hex(16),
               "timestamp": qrsim.utc_stamp(self.clock())}
        out.update(fields)
        out["sign"] = make_sign(out, self.key)
        return out

    def post(self, path, body, conn=None, content_type="application/json; charset=utf-8"):
        if conn is None:
            if self.conn is None:
                self.conn = self.connect()
            conn = self.conn
        if isinstance(body, dict):
            body = json.dumps(body, ensure_ascii=False).encode("utf-8")
        conn.request("POST", path, body, {"Content-Type": content_type})
        resp = conn.getresponse()
        return resp.status, resp.read()

    def call(self, op, conn=None, raw=None, **fields):
        """POST /v1/<op>; returns (status, the verified response object)."""
        status, data = self.post("/v1/" + op, raw if raw is not None else self.fields(**fields),
                                 conn)
        reply = json.loads(data.decode("utf-8"))
        assert verify(reply, self.key), reply          # every answer is signed
        assert set(reply) >= {"code", "msg", "nonce", "sign"}
        assert reply["sign"] == reply["sign"].lower() and len(reply["sign"]) == 64
        return status, reply

    def ok(self, op, **fields):
        status, reply = self.call(op, **fields)
        assert status == 200 and reply["code"] == "SUCCESS", reply
        return reply

    def pay(self, fee, auth_code=None, out_trade_no=None, **extra):
        return self.ok("pay", out_trade_no=out_trade_no or order_no(),
                       auth_code=auth_code or wechat_code(), total_fee=fee, currency="CNY",
                       body="test", **extra)

    def query(self, out_trade_no):
        return self.ok("query", out_trade_no=out_trade_no)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@pytest.fixture(scope="module")
def clock():
    return Clock()


@pytest.fixture(scope="module")
def sim(tmp_path_factory, clock):
    s = QrSim(str(tmp_path_factory.mktemp("qrsim")), slow_ms=SLOW_MS, wait_ms=WAIT_MS,
              clock=clock)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def client(sim, clock):
    c = Client(sim, clock)
    yield c
    c.close()


def phone_pay(client, code_url, channel=None):
    body = {"code_url": code_url}
    if channel:
        body["channel"] = channel
    status, data = client.post("/sim/pay", body)
    return status, json.loads(data)


# -- signatures ----------------------------------------------------------------------------

EXAMPLE_1 = {"mch_id": "100000000001", "terminal_id": "HP000001",
             "nonce": "5f2b9c0e7a3d41b8a0c4e6f1d2b3a495", "timestamp": "20261130101500",
             "out_trade_no": "HP000001-000123", "auth_code": "134567890123456789",
             "total_fee": 1250, "currency": "CNY", "body": "咖啡 x1"}
CANONICAL_1 = ("auth_code=134567890123456789&body=咖啡 x1&currency=CNY&mch_id=100000000001"
               "&nonce=5f2b9c0e7a3d41b8a0c4e6f1d2b3a495&out_trade_no=HP000001-000123"
               "&terminal_id=HP000001&timestamp=20261130101500&total_fee=1250")
SIGN_1 = "37845c3e89dbd5dba727adea5bbbdc4986e5101f48b1782d0115129f333687e0"

EXAMPLE_2 = {"code": "SUCCESS", "msg": "paid", "nonce": "0c1d2e3f405162738495a6b7c8d9eafb",
             "result": "SUCCESS", "out_trade_no": "HP000001-000123",
             "transaction_id": "422026113010150100000001", "channel": "wechat",
             "total_fee": 1250, "paid_time": "20261130101501"}
CANONICAL_2 = ("channel=wechat&code=SUCCESS&msg=paid&nonce=0c1d2e3f405162738495a6b7c8d9eafb"
               "&out_trade_no=HP000001-000123&paid_time=20261130101501&result=SUCCESS"
               "&total_fee=1250&transaction_id=422026113010150100000001")
SIGN_2 = "ea6a440ed49052b3811061f0798506825a0bf51a68b300d5de801ce4049faca3"

EXAMPLE_3 = {"mch_id": "100000000001", "terminal_id": "HP000001",
             "nonce": "00112233445566778899aabbccddeeff", "timestamp": "20261130102000",
             "out_trade_no": "HP000001-000124", "total_fee": 800, "currency": "CNY", "body": ""}
CANONICAL_3 = ("currency=CNY&mch_id=100000000001&nonce=00112233445566778899aabbccddeeff"
               "&out_trade_no=HP000001-000124&terminal_id=HP000001&timestamp=20261130102000"
               "&total_fee=800")
SIGN_3 = "c25569ad539e6bf5bf2955699d5a015af90bcc97563e657fd7852983964de764"


@pytest.mark.parametrize("fields, canonical, sign", [
    (EXAMPLE_1, CANONICAL_1, SIGN_1), (EXAMPLE_2, CANONICAL_2, SIGN_2),
    (EXAMPLE_3, CANONICAL_3, SIGN_3)])
def test_worked_examples_match_the_document(fields, canonical, sign):
    assert DEFAULT_KEY == b"handpos-test-qr-key-000000000001"
    assert canonical_string(fields) == canonical
    assert make_sign(fields, DEFAULT_KEY) == sign
    assert verify(dict(fields, sign=sign), DEFAULT_KEY)
    doc = open(DOC, encoding="utf-8").read()
    assert canonical in doc and sign in doc


def test_canonical_rules():
    fields = {"b": 1, "a": "x", "sign": "zz", "n": None, "e": "", "t": True, "f": False,
              "Z": "upper", "_": "u"}
    # byte order: upper case before underscore before lower case; sign, null and "" left out
    assert canonical_string(fields) == "Z=upper&_=u&a=x&b=1&f=false&t=true"
    with pytest.raises(ValueError):
        canonical_string({"a": 1.5})
    with pytest.raises(ValueError):
        canonical_string({"a": {"b": 1}})
    assert not verify(dict(EXAMPLE_1, sign=SIGN_1.upper()), DEFAULT_KEY)   # lowercase only
    assert not verify(dict(EXAMPLE_1, total_fee=1251, sign=SIGN_1), DEFAULT_KEY)


def test_channels():
    assert qrsim.channel_of("134567890123456789") == "wechat"
    assert qrsim.channel_of("101234567890123456") == "wechat"
    assert qrsim.channel_of("164567890123456789") is None            # 16 is not WeChat
    assert qrsim.channel_of("2812345678901234") == "alipay"          # 16 digits
    assert qrsim.channel_of("301234567890123456789012") == "alipay"  # 24 digits
    assert qrsim.channel_of("3012345678901234567890123") is None     # 25 digits
    assert qrsim.channel_of("6212345678901234567") == "unionpay"
    assert qrsim.channel_of("621234567890123456") is None            # 18 digits
    assert qrsim.channel_of("13456789012345678a") is None


# -- pay -----------------------------------------------------------------------------------

@pytest.mark.parametrize("code, channel", [("134567890123456789", "wechat"),
                                           ("281234567890123456", "alipay"),
                                           ("6212345678901234567", "unionpay")])
def test_pay_success_by_channel(client, code, channel):
    code = code[:-4] + "%04d" % next(_codes)
    no = order_no()
    reply = client.pay(1250, auth_code=code, out_trade_no=no)
    assert reply["result"] == "SUCCESS" and reply["channel"] == channel
    assert reply["total_fee"] == 1250 and reply["out_trade_no"] == no
    assert len(reply["paid_time"]) == 14 and reply["transaction_id"]
    q = client.query(no)
    assert q["trade_state"] == "SUCCESS" and q["transaction_id"] == reply["transaction_id"]
    assert q["refunded_fee"] == 0 and q["total_fee"] == 1250


def test_pay_refusals(client):
    no = order_no()
    bad = client.pay(1000, auth_code="991234567890123456", out_trade_no=no)
    assert (bad["result"], bad["err_code"]) == ("FAIL", "AUTH_CODE_INVALID")
    _, q = client.call("query", out_trade_no=no)
    assert q["code"] == "ORDER_NOT_FOUND"                # nothing was made or charged

    code = wechat_code()
    first = client.pay(1000, auth_code=code, out_trade_no=no)   # the same no is still free
    assert first["result"] == "SUCCESS"
    again = client.pay(1000, auth_code=code)                    # a payment code is single-use
    assert (again["result"], again["err_code"]) == ("FAIL", "AUTHCODEEXPIRE")
    dup = client.pay(1000, out_trade_no=no)                     # a second pay: refused
    assert (dup["result"], dup["err_code"]) == ("FAIL", "ORDERPAID")

    status, reply = client.call("pay", out_trade_no="short", auth_code=wechat_code(),
                                total_fee=100, currency="CNY", body="x")
    assert status == 200 and reply["code"] == "PARAM_ERROR"
    for fee in (0, -5, "100", True):
        _, reply = client.call("pay", out_trade_no=order_no(), auth_code=wechat_code(),
                               total_fee=fee, currency="CNY", body="x")
        assert reply["code"] == "PARAM_ERROR", fee


def test_notenough(client):
    no = order_no()
    reply = client.pay(1051, out_trade_no=no)
    assert (reply["result"], reply["err_code"]) == ("FAIL", "NOTENOUGH")
    assert client.query(no)["trade_state"] == "PAYERROR"


def test_systemerror_is_really_paid(client):
    no = order_no()
    reply = client.pay(2091, out_trade_no=no)
    assert (reply["result"], reply["err_code"]) == ("FAIL", "SYSTEMERROR")
    assert client.query(no)["trade_state"] == "SUCCESS"


def test_userpaying_then_success(client):
    no = order_no()
    assert client.pay(1511, out_trade_no=no)["result"] == "USERPAYING"
    assert client.query(no)["trade_state"] == "USERPAYING"
    time.sleep(WAIT_MS / 1000.0 + 0.1)
    q = client.query(no)
    assert q["trade_state"] == "SUCCESS" and q["transaction_id"] and q["channel"] == "wechat"


def test_userpaying_then_payerror(client, clock):
    no = order_no()
    assert client.pay(1512, out_trade_no=no)["result"] == "USERPAYING"
    clock.offset += WAIT_MS / 1000.0 * 1.5          # after .11's wait, before .12's
    assert client.query(no)["trade_state"] == "USERPAYING"
    clock.offset += WAIT_MS / 1000.0
    q = client.query(no)
    assert q["trade_state"] == "PAYERROR" and "transaction_id" not in q


def test_slow_answer(client, sim):
    no = order_no()
    conn = client.connect(timeout=0.5)
    with pytest.raises(socket.timeout):
        client.call("pay", conn=conn, out_trade_no=no, auth_code=wechat_code(), total_fee=1097,
                    currency="CNY", body="x")
    conn.close()
    assert client.query(no)["trade_state"] == "SUCCESS"       # booked all the same
    started = time.monotonic()
    reply = client.pay(1197)                                    # a patient client gets it
    assert reply["result"] == "SUCCESS"
    assert time.monotonic() - started >= SLOW_MS / 1000.0 - 0.05


def test_truncated_answer(client):
    no = order_no()
    conn = client.connect()
    conn.request("POST", "/v1/pay", json.dumps(client.fields(
        out_trade_no=no, auth_code=wechat_code(), total_fee=1098, currency="CNY", body="x")),
        {"Content-Type": "application/json; charset=utf-8"})
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    conn.close()
    assert client.query(no)["trade_state"] == "SUCCESS"


def test_no_answer(client, sim):
    no = order_no()
    conn = client.connect(timeout=0.4)
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        client.call("pay", conn=conn, out_trade_no=no, auth_code=wechat_code(), total_fee=1099,
                    currency="CNY", body="x")
    assert time.monotonic() - started < 2
    conn.close()                                      # the client gives up ...
    assert client.query(no)["trade_state"] == "SUCCESS"
    deadline = time.monotonic() + 2                   # ... and the server lets go too
    while len(sim._handlers) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sim._handlers) <= 1                    # only the client's keep-alive one


# -- cancel, close, create, refund -------------------------------------------------------

def test_cancel_paid_is_refunded_and_idempotent(client):
    no = order_no()
    client.pay(3000, out_trade_no=no)
    for _ in range(2):
        reply = client.ok("cancel", out_trade_no=no)
        assert (reply["result"], reply["recall"]) == ("SUCCESS", "N")
        assert reply["refunded_fee"] == 3000
    q = client.query(no)
    assert q["trade_state"] == "REVOKED" and q["refunded_fee"] == 3000


def test_cancel_pending_stops_it(client, clock):
    no = order_no()
    assert client.pay(3011, out_trade_no=no)["result"] == "USERPAYING"
    assert client.ok("cancel", out_trade_no=no)["result"] == "SUCCESS"
    clock.offset += WAIT_MS / 1000.0 * 3
    q = client.query(no)
    assert q["trade_state"] == "REVOKED" and q["refunded_fee"] == 0
    assert "transaction_id" not in q


def test_cancel_unknown_and_the_late_pay(client):
    no = order_no()
    for _ in range(2):
        _, reply = client.call("cancel", out_trade_no=no)
        assert reply["code"] == "ORDER_NOT_FOUND"
    late = client.pay(1000, out_trade_no=no)          # the pay held up on the way arrives
    assert (late["result"], late["err_code"]) == ("FAIL", "ORDERREVERSED")
    _, q = client.call("query", out_trade_no=no)
    assert q["code"] == "ORDER_NOT_FOUND"


def test_create_and_phone_pay(client):
    no = order_no()
    created = client.ok("create", out_trade_no=no, total_fee=800, currency="CNY", body="面包")
    assert created["result"] == "SUCCESS" and created["expires_in"] > 0
    assert created["code_url"].startswith("https://qr.test/p/") and len(created["code_url"]) == 32
    again = client.ok("create", out_trade_no=no, total_fee=800, currency="CNY", body="面包")
    assert again["code_url"] == created["code_url"]             # a retried create
    assert client.query(no)["trade_state"] == "NOTPAY"
    status, paid = phone_pay(client, created["code_url"], channel="alipay")
    assert status == 200 and paid["result"] == "SUCCESS"
    q = client.query(no)
    assert q["trade_state"] == "SUCCESS" and q["channel"] == "alipay"
    closed = client.ok("close", out_trade_no=no)
    assert (closed["result"], closed["err_code"]) == ("FAIL", "ORDERPAID")
    assert phone_pay(client, created["code_url"])[1]["err_code"] == "ORDERPAID"


def test_create_then_close(client):
    no = order_no()
    created = client.ok("create", out_trade_no=no, total_fee=900, currency="CNY", body="x")
    for _ in range(2):
        assert client.ok("close", out_trade_no=no)["result"] == "SUCCESS"
    assert client.query(no)["trade_state"] == "CLOSED"
    _, late = phone_pay(client, created["code_url"])
    assert (late["result"], late["err_code"]) == ("FAIL", "ORDERCLOSED")
    _, reply = client.call("close", out_trade_no=order_no())
    assert reply["code"] == "ORDER_NOT_FOUND"
    assert phone_pay(client, "https://qr.test/p/nosuch")[1]["code"] == "ORDER_NOT_FOUND"


def test_create_phone_outcomes(client, clock):
    poor, slow = order_no(), order_no()
    url = client.ok("create", out_trade_no=poor, total_fee=851, currency="CNY")["code_url"]
    assert phone_pay(client, url)[1]["err_code"] == "NOTENOUGH"
    assert client.query(poor)["trade_state"] == "PAYERROR"
    url = client.ok("create", out_trade_no=slow, total_fee=812, currency="CNY")["code_url"]
    assert phone_pay(client, url)[1]["result"] == "USERPAYING"
    assert client.query(slow)["trade_state"] == "USERPAYING"
    clock.offset += WAIT_MS / 1000.0 * 2 + 0.1
    assert client.query(slow)["trade_state"] == "PAYERROR"


def test_created_code_expires(client, clock):
    no = order_no()
    url = client.ok("create", out_trade_no=no, total_fee=700, currency="CNY")["code_url"]
    clock.offset += qrsim.DEFAULT_QR_EXPIRY_S + 1
    assert client.query(no)["trade_state"] == "CLOSED"
    assert phone_pay(client, url)[1]["err_code"] == "ORDERCLOSED"


def test_refund(client):
    no = order_no()
    client.pay(5000, out_trade_no=no)
    first = client.ok("refund", out_trade_no=no, out_refund_no="R-" + no, refund_fee=1200)
    assert first["result"] == "SUCCESS" and first["refunded_fee"] == 1200 and first["refund_id"]
    again = client.ok("refund", out_trade_no=no, out_refund_no="R-" + no, refund_fee=1200)
    assert again["refund_id"] == first["refund_id"] and again["refunded_fee"] == 1200
    other = client.ok("refund", out_trade_no=no, out_refund_no="R-" + no, refund_fee=1300)
    assert (other["result"], other["err_code"]) == ("FAIL", "OUT_REFUND_NO_USED")
    over = client.ok("refund", out_trade_no=no, out_refund_no="R2-" + no, refund_fee=3801)
    assert (over["result"], over["err_code"]) == ("FAIL", "REFUND_EXCEED")
    rest = client.ok("refund", out_trade_no=no, out_refund_no="R3-" + no, refund_fee=3800)
    assert rest["refunded_fee"] == 5000
    q = client.query(no)
    assert q["trade_state"] == "REFUND" and q["refunded_fee"] == 5000
    # a cancel after refunds: nothing left to give back, still acknowledged
    assert client.ok("cancel", out_trade_no=no)["refunded_fee"] == 5000

    unpaid = order_no()
    client.ok("create", out_trade_no=unpaid, total_fee=100, currency="CNY")
    r = client.ok("refund", out_trade_no=unpaid, out_refund_no="R-" + unpaid, refund_fee=100)
    assert (r["result"], r["err_code"]) == ("FAIL", "ORDERNOTPAID")
    _, r = client.call("refund", out_trade_no=order_no(), out_refund_no="R-x", refund_fee=1)
    assert r["code"] == "ORDER_NOT_FOUND"


# -- refusals --------------------------------------------------------------------------------

def test_bad_sign(client):
    fields = client.fields(out_trade_no=order_no())
    fields["sign"] = "0" * 64
    status, reply = client.call("query", raw=fields)
    assert (status, reply["code"]) == (200, "SIGN_ERROR")
    wrong = Client(client.sim, client.clock, key=b"another-key-000000000000000000001")
    status, data = wrong.post("/v1/query", wrong.fields(out_trade_no=order_no()))
    reply = json.loads(data)
    wrong.close()
    assert reply["code"] == "SIGN_ERROR" and verify(reply, DEFAULT_KEY)   # signed by the acquirer


def test_replayed_nonce(client):
    no = order_no()
    fields = client.fields(out_trade_no=no, auth_code=wechat_code(), total_fee=100,
                           currency="CNY", body="x")
    assert client.call("pay", raw=fields)[1]["result"] == "SUCCESS"
    status, reply = client.call("pay", raw=fields)
    assert (status, reply["code"]) == (200, "REPLAY")
    other = dict(fields, terminal_id="HP000002")       # nonces are per terminal
    other["sign"] = make_sign(other, DEFAULT_KEY)
    assert client.call("pay", raw=other)[1]["err_code"] == "ORDERPAID"


def test_stale_timestamp(client, clock):
    for skew in (-301, 301):
        fields = client.fields(out_trade_no=order_no())
        fields["timestamp"] = qrsim.utc_stamp(clock() + skew)
        fields["sign"] = make_sign(fields, DEFAULT_KEY)
        status, reply = client.call("query", raw=fields)
        assert (status, reply["code"]) == (200, "BAD_TIME")
    fields = client.fields(out_trade_no=order_no())
    fields["timestamp"] = qrsim.utc_stamp(clock() - 250)
    fields["sign"] = make_sign(fields, DEFAULT_KEY)
    assert client.call("query", raw=fields)[1]["code"] == "ORDER_NOT_FOUND"


def test_transport_refusals(client):
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe", b'{"a": 1, "a": 2}', b"{\"a\": NaN}"):
        status, data = client.post("/v1/pay", body)
        reply = json.loads(data)
        assert status == 400 and reply["code"] == "PARAM_ERROR", body
        assert verify(reply, DEFAULT_KEY)
    status, data = client.post("/v2/pay", client.fields())
    assert status == 404
    status, data = client.post("/v1/steal", client.fields())
    assert status == 404 and json.loads(data)["code"] == "PARAM_ERROR"
    status, data = client.post("/v1/query", client.fields(out_trade_no=order_no()),
                               content_type="text/plain")
    assert status == 415
    conn = client.connect()
    conn.request("GET", "/v1/query")
    resp = conn.getresponse()
    assert resp.status == 405
    resp.read()
    conn.close()
    # a JSON object that is not a request: 200, PARAM_ERROR
    for extra in ({"total_fee": 12.5}, {"body": {"a": 1}}, {"body": [1]}):
        fields = client.fields(out_trade_no=order_no(), auth_code=wechat_code(), currency="CNY")
        fields.update(extra)
        status, reply = client.call("pay", raw=fields)
        assert (status, reply["code"]) == (200, "PARAM_ERROR"), extra
    fields = client.fields(out_trade_no=order_no())
    del fields["nonce"]
    assert client.call("query", raw=fields)[1]["code"] == "PARAM_ERROR"
    fields = client.fields(out_trade_no=order_no(), nonce="abc")
    assert client.call("query", raw=fields)[1]["code"] == "PARAM_ERROR"


def test_keep_alive(client):
    conn = client.connect()
    for _ in range(3):
        assert client.call("query", conn=conn, out_trade_no=order_no())[1]["code"] == \
            "ORDER_NOT_FOUND"
    sock = conn.sock
    client.call("query", conn=conn, out_trade_no=order_no())
    assert conn.sock is sock                          # one connection throughout
    conn.close()


# -- the ledger ------------------------------------------------------------------------------

def test_ledger_survives_a_restart(tmp_path):
    data = str(tmp_path / "sim")
    first = QrSim(data, slow_ms=SLOW_MS, wait_ms=WAIT_MS)
    first.start()
    c = Client(first)
    paid, refunded = order_no(), order_no()
    c.pay(1000, out_trade_no=paid)
    c.pay(2000, out_trade_no=refunded)
    c.ok("refund", out_trade_no=refunded, out_refund_no="RF1", refund_fee=500)
    replay = c.fields(out_trade_no=paid)
    c.call("query", raw=replay)
    status, data_ = c.post("/sim/ledger", b"{}")
    assert status == 404
    conn = c.connect()
    conn.request("GET", "/sim/ledger")
    before = json.loads(conn.getresponse().read())
    conn.close()
    c.close()
    first.stop()

    second = QrSim(data, slow_ms=SLOW_MS, wait_ms=WAIT_MS)
    assert second.tls["created"] is False             # the same CA: the terminal's pin holds
    second.start()
    try:
        c = Client(second)
        conn = c.connect()
        conn.request("GET", "/sim/ledger")
        after = json.loads(conn.getresponse().read())
        conn.close()
        assert after == before
        by_no = {o["out_trade_no"]: o for o in after["orders"]}
        assert by_no[paid]["state"] == "SUCCESS" and by_no[paid]["paid_fee"] == 1000
        assert by_no[refunded]["state"] == "REFUND" and by_no[refunded]["refunded_fee"] == 500
        assert after["totals"] == [{"mch_id": MCH, "currency": "CNY", "paid": 3000,
                                    "refunded": 500, "net": 2500}]
        assert [r["out_refund_no"] for r in after["refunds"]] == ["RF1"]
        assert c.call("query", raw=replay)[1]["code"] == "REPLAY"     # nonces are kept too
        assert c.query(paid)["trade_state"] == "SUCCESS"
        c.close()
    finally:
        second.stop()


def _start_command(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tools.host.qrsim", "--dir", str(tmp_path),
                             "--port", "0", "--wait-ms", "100", "--quiet"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [proc.stdout.readline() for _ in range(3)]
    assert lines[0].startswith("qrsim: listening on https://127.0.0.1:"), lines
    assert str(tmp_path / "tls" / "ca.pem") in lines[1]
    assert "qrledger.sqlite" in lines[2]
    return proc, int(lines[0].rsplit(":", 1)[1])


class _Remote:
    """A started command as Client sees a QrSim."""

    def __init__(self, tmp_path, port):
        self.address = ("127.0.0.1", port)
        self.ca_file = str(tmp_path / "tls" / "ca.pem")


def _ledger(remote):
    ctx = ssl.create_default_context(cafile=remote.ca_file)
    conn = http.client.HTTPSConnection(*remote.address, timeout=5, context=ctx)
    conn.request("GET", "/sim/ledger")
    data = json.loads(conn.getresponse().read())
    conn.close()
    return data


def test_command_line_and_sigkill(tmp_path):
    proc, port = _start_command(tmp_path)
    try:
        remote = _Remote(tmp_path, port)
        assert _ledger(remote)["orders"] == []
        c = Client(remote)
        no = order_no()
        assert c.pay(4200, out_trade_no=no)["result"] == "SUCCESS"
        c.close()
        proc.kill()                                   # SIGKILL right after the answer
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    proc, port = _start_command(tmp_path)
    try:
        remote = _Remote(tmp_path, port)
        orders = _ledger(remote)["orders"]
        assert [(o["out_trade_no"], o["state"], o["paid_fee"]) for o in orders] == \
            [(no, "SUCCESS", 4200)]
        proc.terminate()                              # SIGTERM: a clean stop
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_a_client_without_tls_does_not_hurt(client, sim):
    with socket.create_connection(sim.address, timeout=2) as raw:
        raw.sendall(b"POST /v1/pay HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
        try:
            raw.recv(100)
        except (socket.timeout, ConnectionError):
            pass
    assert client.call("query", out_trade_no=order_no())[1]["code"] == "ORDER_NOT_FOUND"
