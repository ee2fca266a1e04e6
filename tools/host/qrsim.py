"""The QR acquirer simulator: an aggregated-payment (聚合支付) acquirer on loopback.

It follows docs/qr-protocol.md: HTTPS, `POST /v1/<op>`, one JSON object per request and
per response, every one signed with HMAC-SHA256 over a canonical string. The ops are
pay (the cashier scanned the customer's payment code), query, cancel, create (a code
the merchant shows), close and refund. Outcomes are chosen by the cents of total_fee
(total_fee % 100), so a tester can make any case happen from the keypad:

    cents   pay answers                          booked
    .11     USERPAYING; SUCCESS --wait-ms later  yes, when the wait is over
    .12     USERPAYING; PAYERROR 2 x --wait-ms   no (the customer gave up)
    .51     FAIL NOTENOUGH                       no
    .91     FAIL SYSTEMERROR                     yes: the client must query
    .97     SUCCESS after --slow-ms              yes
    .98     SUCCESS, body cut short              yes
    .99     nothing; the connection is held      yes
    other   SUCCESS at once                      yes

A created (merchant-presented) order is paid by `POST /sim/pay {"code_url": ...}` (a
phone, loopback only, not signed): .51 fails NOTENOUGH, .12 is USERPAYING and then
PAYERROR, anything else is paid at once. `GET /sim/ledger` returns the books.

The ledger (SQLite, DIR/qrledger.sqlite) keeps every order, refund, nonce and exchange;
an answer is sent only after what it reports is committed, so a SIGKILL loses nothing a
terminal was told. The TLS material is hostsim's (DIR/tls/, made on first run).
"""
import argparse
import calendar
import datetime
import hashlib
import hmac
import http.server
import ipaddress
import json
import os
import re
import secrets
import select
import signal
import socket
import sqlite3
import ssl
import sys
import threading
import time

from tools.host.hostsim import ensure_tls, server_context

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8443
DEFAULT_DATA = ".qrsim"
DEFAULT_KEY = b"handpos-test-qr-key-000000000001"
DEFAULT_SLOW_MS = 35000
DEFAULT_WAIT_MS = 10000        # .11 is paid this long after the pay; .12 fails after twice it
DEFAULT_QR_EXPIRY_S = 300      # a created order's code_url is good this long
MAX_SKEW_S = 300
NONCE_KEEP_S = 24 * 3600
MAX_BODY = 64 * 1024
MAX_HOLD_S = 600               # .99: the longest a silent connection is held open
IDLE_TIMEOUT_S = 60            # a keep-alive connection idle this long is closed
CODE_URL_BASE = "https://qr.test/p/"     # + 14 characters: 32 in all, 2 px a module on the panel

# error codes (`code`)
SUCCESS = "SUCCESS"
SIGN_ERROR = "SIGN_ERROR"
REPLAY = "REPLAY"
BAD_TIME = "BAD_TIME"
PARAM_ERROR = "PARAM_ERROR"
ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
SYSTEM_ERROR = "SYSTEM_ERROR"

# trade states
USERPAYING = "USERPAYING"
NOTPAY = "NOTPAY"
CLOSED = "CLOSED"
REVOKED = "REVOKED"
PAYERROR = "PAYERROR"
REFUND = "REFUND"
PAID_STATES = (SUCCESS, REFUND)

# deliveries of a pay answer
NOW = "now"
SLOW = "slow"
TRUNCATED = "truncated"
SILENT = "silent"

OPS = ("pay", "query", "cancel", "create", "close", "refund")

_ORDER_NO = re.compile(r"^[A-Za-z0-9_-]{6,32}$")
_REFUND_NO = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NONCE = re.compile(r"^[0-9A-Fa-f]{16,32}$")
_TIMESTAMP = re.compile(r"^[0-9]{14}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_WECHAT = re.compile(r"^1[0-5][0-9]{16}$")           # 18 digits, 10-15
_ALIPAY = re.compile(r"^(2[5-9]|30)[0-9]{14,22}$")   # 16-24 digits, 25-30
_UNIONPAY = re.compile(r"^62[0-9]{17}$")             # 19 digits, 62


# -- signatures ------------------------------------------------------------------------

def field_text(value):
    """A field's text in the canonical string (docs/qr-protocol.md, 3)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise ValueError("a field must be a string, an integer or a boolean, not %s"
                     % type(value).__name__)


def canonical_string(fields):
    """Every top-level field but `sign` whose value is not null and not "", sorted by
    key (UTF-8 byte order), as key=value joined with &."""
    parts = []
    for key in sorted(fields, key=lambda k: k.encode("utf-8")):
        value = fields[key]
        if key == "sign" or value is None or (isinstance(value, str) and value == ""):
            continue
        parts.append("%s=%s" % (key, field_text(value)))
    return "&".join(parts)


def make_sign(fields, key):
    """Lowercase hex HMAC-SHA256 under key (bytes) over the canonical string."""
    return hmac.new(key, canonical_string(fields).encode("utf-8"), hashlib.sha256).hexdigest()


def signed(fields, key):
    """A copy of fields with its `sign` (null values dropped)."""
    out = {k: v for k, v in fields.items() if v is not None and k != "sign"}
    out["sign"] = make_sign(out, key)
    return out


def verify(fields, key):
    given = fields.get("sign")
    if not isinstance(given, str):
        return False
    try:
        expected = make_sign(fields, key)
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(expected, given)


def channel_of(auth_code):
    """wechat, alipay or unionpay from a payment code's digits, or None."""
    if not isinstance(auth_code, str):
        return None
    if _WECHAT.match(auth_code):
        return "wechat"
    if _ALIPAY.match(auth_code):
        return "alipay"
    if _UNIONPAY.match(auth_code):
        return "unionpay"
    return None


def utc_stamp(epoch):
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(epoch))


def parse_stamp(text):
    return calendar.timegm(time.strptime(text, "%Y%m%d%H%M%S"))


def _iso(epoch):
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(
        timespec="milliseconds")


class Refusal(Exception):
    """A request answered with an error code (not SUCCESS)."""

    def __init__(self, code, msg, status=200):
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


# -- the ledger --------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    mch_id TEXT, out_trade_no TEXT, kind TEXT, terminal_id TEXT, channel TEXT, auth_code TEXT,
    total_fee INTEGER, currency TEXT, body TEXT, state TEXT, err_code TEXT,
    paid_fee INTEGER DEFAULT 0, refunded_fee INTEGER DEFAULT 0, transaction_id TEXT,
    token TEXT, delivery TEXT, created REAL, paid REAL, ended REAL, updated REAL,
    due REAL, due_state TEXT, expires REAL,
    PRIMARY KEY (mch_id, out_trade_no));
CREATE UNIQUE INDEX IF NOT EXISTS orders_token ON orders (token);
CREATE TABLE IF NOT EXISTS refunds (
    mch_id TEXT, out_refund_no TEXT, out_trade_no TEXT, refund_fee INTEGER, refund_id TEXT,
    kind TEXT, created REAL, PRIMARY KEY (mch_id, out_refund_no));
CREATE TABLE IF NOT EXISTS auth_codes (auth_code TEXT PRIMARY KEY, mch_id TEXT,
    out_trade_no TEXT, used REAL);
CREATE TABLE IF NOT EXISTS nonces (mch_id TEXT, terminal_id TEXT, nonce TEXT, seen REAL,
    PRIMARY KEY (mch_id, terminal_id, nonce));
CREATE TABLE IF NOT EXISTS tombstones (mch_id TEXT, out_trade_no TEXT, at REAL,
    PRIMARY KEY (mch_id, out_trade_no));
CREATE TABLE IF NOT EXISTS exchanges (id INTEGER PRIMARY KEY, at REAL, peer TEXT, path TEXT,
    status INTEGER, request TEXT, response TEXT, delivery TEXT);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER);
"""

_TIME_COLUMNS = ("created", "paid", "ended", "updated")


class QrLedger:
    """The simulator's books: one SQLite file, one lock. Readable from a test's thread."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.RLock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # a SIGKILL loses nothing committed under NORMAL; only a power cut might
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.closed = False

    def close(self):
        with self.lock:
            if not self.closed:
                self.closed = True
                self.db.close()

    def all(self, sql, args=()):
        with self.lock:
            return [dict(r) for r in self.db.execute(sql, args).fetchall()]

    def one(self, sql, args=()):
        rows = self.all(sql, args)
        return rows[0] if rows else None

    def run(self, sql, args=()):
        with self.lock:
            return self.db.execute(sql, args).lastrowid

    def next_sequence(self, name):
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
            value = (row[0] if row else 0) + 1
            self.db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                            (name, value))
            return value

    def order(self, mch_id, out_trade_no):
        return self.one("SELECT * FROM orders WHERE mch_id=? AND out_trade_no=?",
                        (mch_id, out_trade_no))

    def update_order(self, order, **changes):
        sets = ", ".join("%s=?" % k for k in changes)
        self.run("UPDATE orders SET %s WHERE mch_id=? AND out_trade_no=?" % sets,
                 tuple(changes.values()) + (order["mch_id"], order["out_trade_no"]))
        order.update(changes)

    def orders(self):
        rows = self.all("SELECT * FROM orders ORDER BY created, out_trade_no")
        out = []
        for row in rows:
            item = {k: row[k] for k in ("mch_id", "out_trade_no", "kind", "terminal_id",
                                        "channel", "total_fee", "currency", "state",
                                        "err_code", "paid_fee", "refunded_fee",
                                        "transaction_id", "delivery")}
            for k in _TIME_COLUMNS:
                item[k] = _iso(row[k])
            out.append(item)
        return out

    def refunds(self):
        rows = self.all("SELECT * FROM refunds ORDER BY created, out_refund_no")
        for row in rows:
            row["created"] = _iso(row["created"])
        return rows

    def totals(self):
        """Paid, refunded and net minor units per mch_id and currency."""
        return self.all("SELECT mch_id, currency, SUM(paid_fee) AS paid, SUM(refunded_fee)"
                        " AS refunded, SUM(paid_fee) - SUM(refunded_fee) AS net"
                        " FROM orders GROUP BY mch_id, currency ORDER BY mch_id, currency")

    def snapshot(self):
        return {"orders": self.orders(), "refunds": self.refunds(), "totals": self.totals()}


class _Tx:
    """with sim.tx(): one atomic step (BEGIN IMMEDIATE ... COMMIT) under the lock."""

    def __init__(self, ledger):
        self.ledger = ledger

    def __enter__(self):
        self.ledger.lock.acquire()
        if self.ledger.closed:
            self.ledger.lock.release()
            raise Refusal(SYSTEM_ERROR, "the simulator is stopping")
        self.ledger.db.execute("BEGIN IMMEDIATE")
        return self.ledger

    def __exit__(self, kind, exc, tb):
        try:
            if kind is None or isinstance(exc, Refusal):
                self.ledger.db.execute("COMMIT")    # a refusal may have consumed a nonce
            else:
                self.ledger.db.execute("ROLLBACK")
        finally:
            self.ledger.lock.release()
        return False


# -- the acquirer's decisions ------------------------------------------------------------

class Answer:
    """What to send: the HTTP status, the (signed) fields, how to deliver them."""

    def __init__(self, status, fields, delivery=NOW):
        self.status, self.fields, self.delivery = status, fields, delivery


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _need_str(fields, name, pattern=None, what=None, required=True):
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise Refusal(PARAM_ERROR, "%s is missing" % name)
        return ""
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        raise Refusal(PARAM_ERROR, "%s must be %s" % (name, what or "a string"))
    return value


def _need_fee(fields, name):
    value = fields.get(name)
    if value is None:
        raise Refusal(PARAM_ERROR, "%s is missing" % name)
    if not _is_int(value) or value <= 0:
        raise Refusal(PARAM_ERROR, "%s must be an integer above 0 (minor units)" % name)
    return value


class QrSim:
    """The simulated QR acquirer. start()/stop() serve it over HTTPS from a thread;
    handle_request() decides (tests may call it directly)."""

    def __init__(self, data_dir, key=DEFAULT_KEY, slow_ms=DEFAULT_SLOW_MS,
                 wait_ms=DEFAULT_WAIT_MS, clock=None, tls=True, qr_expiry_s=DEFAULT_QR_EXPIRY_S,
                 log=None):
        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = data_dir
        self.key = key.encode("ascii") if isinstance(key, str) else bytes(key)
        self.slow_ms = int(slow_ms)
        self.wait_ms = int(wait_ms)
        self.qr_expiry_s = int(qr_expiry_s)
        self.clock = clock or time.time
        self.log = log or (lambda line: None)
        self.ledger = QrLedger(os.path.join(data_dir, "qrledger.sqlite"))
        self.tls = ensure_tls(data_dir) if tls else None
        self.ca_file = self.tls["ca"] if tls else None
        self.address = None
        self.url = None
        self._server = None
        self._thread = None
        self._stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._connections = set()
        self._handlers = set()

    def tx(self):
        return _Tx(self.ledger)

    # -- answers --------------------------------------------------------------------------
    def answer(self, code, msg, status=200, delivery=NOW, **extra):
        fields = {"code": code, "msg": msg, "nonce": secrets.token_hex(16)}
        fields.update({k: v for k, v in extra.items() if v is not None})
        return Answer(status, signed(fields, self.key), delivery)

    def refused(self, refusal):
        return self.answer(refusal.code, refusal.msg, refusal.status)

    # -- requests -------------------------------------------------------------------------
    def handle_request(self, op, fields):
        """A parsed JSON object for POST /v1/<op> -> Answer. Never raises."""
        try:
            if op not in OPS:
                raise Refusal(PARAM_ERROR, "unknown path", 404)
            for name, value in fields.items():
                if not (value is None or isinstance(value, (str, bool, int))):
                    raise Refusal(PARAM_ERROR, "%s: nested objects, arrays and fractional "
                                  "numbers are not allowed" % name)
            mch_id = _need_str(fields, "mch_id")
            terminal_id = _need_str(fields, "terminal_id")
            nonce = _need_str(fields, "nonce", _NONCE, "16 to 32 hex digits")
            stamp = _need_str(fields, "timestamp", _TIMESTAMP, "UTC YYYYMMDDhhmmss")
            _need_str(fields, "sign")
            try:
                sent_at = parse_stamp(stamp)
            except ValueError:
                raise Refusal(PARAM_ERROR, "timestamp must be UTC YYYYMMDDhhmmss")
            try:
                canonical_string(fields).encode("utf-8")
            except UnicodeEncodeError:
                raise Refusal(PARAM_ERROR, "a string is not valid UTF-8")
            if not verify(fields, self.key):
                raise Refusal(SIGN_ERROR, "the signature does not match")
            now = self.clock()
            if abs(now - sent_at) > MAX_SKEW_S:
                raise Refusal(BAD_TIME, "timestamp is more than %d s away from the server's "
                              "clock (%s UTC)" % (MAX_SKEW_S, utc_stamp(now)))
            with self.tx() as led:
                if led.db.execute("SELECT 1 FROM nonces WHERE mch_id=? AND terminal_id=? AND "
                                  "nonce=?", (mch_id, terminal_id, nonce.lower())).fetchone():
                    raise Refusal(REPLAY, "this nonce was used before")
                led.db.execute("INSERT INTO nonces VALUES (?,?,?,?)",
                               (mch_id, terminal_id, nonce.lower(), now))
                if led.next_sequence("nonce_prune") % 500 == 0:
                    led.db.execute("DELETE FROM nonces WHERE seen < ?", (now - NONCE_KEEP_S,))
                return getattr(self, "_op_" + op)(led, fields, mch_id, terminal_id, now)
        except Refusal as refusal:
            return self.refused(refusal)
        except Exception as exc:          # a bug or a closed ledger: say so, do not crash
            self.log("error: %r" % (exc,))
            return self.answer(SYSTEM_ERROR, "internal error: %s" % type(exc).__name__)

    # -- order states ---------------------------------------------------------------------
    def _settle_due(self, led, order, now):
        """A pending order whose scripted wait is over takes its outcome."""
        if order is None:
            return order
        if order["state"] == USERPAYING and order["due"] is not None and now >= order["due"]:
            if order["due_state"] == SUCCESS:
                self._book(led, order, order["due"])
            else:
                led.update_order(order, state=order["due_state"], err_code="USERPAYING_FAILED",
                                 ended=order["due"], updated=now, due=None)
        elif (order["state"] == NOTPAY and order["expires"] is not None
              and now >= order["expires"]):
            led.update_order(order, state=CLOSED, err_code="ORDER_EXPIRED",
                             ended=order["expires"], updated=now)
        return order

    def settle_all(self, now=None):
        now = self.clock() if now is None else now
        with self.tx() as led:
            for row in led.all("SELECT * FROM orders WHERE state IN (?, ?)", (USERPAYING, NOTPAY)):
                self._settle_due(led, row, now)

    def _book(self, led, order, at):
        txid = "%s%s%08d" % ({"wechat": "42", "alipay": "20", "unionpay": "62"}.get(
            order["channel"], "90"), utc_stamp(at), led.next_sequence("transaction"))
        led.update_order(order, state=SUCCESS, err_code=None, paid_fee=order["total_fee"],
                         transaction_id=txid, paid=at, updated=at, due=None)

    def _find(self, led, fields, mch_id, now):
        out_trade_no = _need_str(fields, "out_trade_no", _ORDER_NO,
                                 "6 to 32 characters of A-Z a-z 0-9 _ -")
        order = self._settle_due(led, led.order(mch_id, out_trade_no), now)
        return out_trade_no, order

    def _new_order_checks(self, led, mch_id, out_trade_no, order):
        if led.one("SELECT 1 AS x FROM tombstones WHERE mch_id=? AND out_trade_no=?",
                   (mch_id, out_trade_no)):
            return "ORDERREVERSED", "this out_trade_no was cancelled before it was seen"
        if order is not None:
            if order["state"] in PAID_STATES:
                return "ORDERPAID", "this out_trade_no is already paid"
            if order["state"] == REVOKED:
                return "ORDERREVERSED", "this out_trade_no was cancelled"
            return "OUT_TRADE_NO_USED", "this out_trade_no is already used (%s)" % order["state"]
        return None

    def _paid_fields(self, order):
        if order["state"] not in PAID_STATES and not order["transaction_id"]:
            return {}
        return {"transaction_id": order["transaction_id"], "channel": order["channel"],
                "total_fee": order["total_fee"], "paid_time": utc_stamp(order["paid"])}

    def _op_pay(self, led, fields, mch_id, terminal_id, now):
        out_trade_no, order = self._find(led, fields, mch_id, now)
        auth_code = _need_str(fields, "auth_code")
        total_fee = _need_fee(fields, "total_fee")
        currency = _need_str(fields, "currency", _CURRENCY, "3 capital letters (ISO 4217)")
        body = _need_str(fields, "body", required=False)
        common = {"out_trade_no": out_trade_no}

        if (order is not None and order["kind"] == "pay" and order["state"] == USERPAYING
                and order["auth_code"] == auth_code and order["total_fee"] == total_fee):
            return self.answer(SUCCESS, "waiting for the customer", result=USERPAYING, **common)
        refused = self._new_order_checks(led, mch_id, out_trade_no, order)
        if refused:
            return self.answer(SUCCESS, "not paid", result="FAIL", err_code=refused[0],
                               err_msg=refused[1], **common)
        channel = channel_of(auth_code)
        if channel is None:
            return self.answer(SUCCESS, "not paid", result="FAIL", err_code="AUTH_CODE_INVALID",
                               err_msg="not a WeChat Pay, Alipay or UnionPay payment code",
                               **common)
        if led.one("SELECT 1 AS x FROM auth_codes WHERE auth_code=?", (auth_code,)):
            return self.answer(SUCCESS, "not paid", result="FAIL", err_code="AUTHCODEEXPIRE",
                               err_msg="this payment code was used already: ask the customer "
                                       "to refresh it", **common)
        led.run("INSERT INTO auth_codes VALUES (?,?,?,?)", (auth_code, mch_id, out_trade_no, now))

        cents = total_fee % 100
        delivery = {97: SLOW, 98: TRUNCATED, 99: SILENT}.get(cents, NOW)
        led.run("INSERT INTO orders (mch_id, out_trade_no, kind, terminal_id, channel, auth_code,"
                " total_fee, currency, body, state, delivery, created, updated)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (mch_id, out_trade_no, "pay", terminal_id, channel, auth_code, total_fee,
                 currency, body, NOTPAY, delivery, now, now))
        order = led.order(mch_id, out_trade_no)
        if cents == 51:
            led.update_order(order, state=PAYERROR, err_code="NOTENOUGH", ended=now)
            return self.answer(SUCCESS, "not paid", result="FAIL", err_code="NOTENOUGH",
                               err_msg="insufficient balance", **common)
        if cents in (11, 12):
            wait = self.wait_ms / 1000.0 * (1 if cents == 11 else 2)
            led.update_order(order, state=USERPAYING, due=now + wait,
                             due_state=SUCCESS if cents == 11 else PAYERROR)
            return self.answer(SUCCESS, "waiting for the customer to confirm: query",
                               result=USERPAYING, **common)
        self._book(led, order, now)
        if cents == 91:
            return self.answer(SUCCESS, "outcome unknown", result="FAIL", err_code="SYSTEMERROR",
                               err_msg="system error: query the order", **common)
        return self.answer(SUCCESS, "paid", delivery=delivery, result=SUCCESS,
                           **dict(common, **self._paid_fields(order)))

    def _op_query(self, led, fields, mch_id, terminal_id, now):
        out_trade_no, order = self._find(led, fields, mch_id, now)
        if order is None:
            raise Refusal(ORDER_NOT_FOUND, "no such order")
        extra = self._paid_fields(order)
        extra.update(out_trade_no=out_trade_no, trade_state=order["state"],
                     total_fee=order["total_fee"], refunded_fee=order["refunded_fee"],
                     err_code=order["err_code"] if order["state"] == PAYERROR else None)
        return self.answer(SUCCESS, "ok", **extra)

    def _op_cancel(self, led, fields, mch_id, terminal_id, now):
        out_trade_no, order = self._find(led, fields, mch_id, now)
        if order is None:
            # remember it: a pay for this out_trade_no held up on the way is refused later
            led.run("INSERT OR IGNORE INTO tombstones VALUES (?,?,?)", (mch_id, out_trade_no, now))
            raise Refusal(ORDER_NOT_FOUND, "no such order: nothing was charged")
        if order["state"] != REVOKED:
            changes = {"state": REVOKED, "ended": now, "updated": now, "due": None}
            left = order["paid_fee"] - order["refunded_fee"]
            if left > 0:
                changes["refunded_fee"] = order["paid_fee"]
                led.run("INSERT INTO refunds VALUES (?,?,?,?,?,?,?)",
                        (mch_id, "cancel:" + out_trade_no, out_trade_no, left,
                         self._refund_id(led, now), "cancel", now))
            led.update_order(order, **changes)
        return self.answer(SUCCESS, "cancelled", out_trade_no=out_trade_no, result=SUCCESS,
                           recall="N", refunded_fee=order["refunded_fee"])

    def _op_create(self, led, fields, mch_id, terminal_id, now):
        out_trade_no, order = self._find(led, fields, mch_id, now)
        total_fee = _need_fee(fields, "total_fee")
        currency = _need_str(fields, "currency", _CURRENCY, "3 capital letters (ISO 4217)")
        body = _need_str(fields, "body", required=False)
        common = {"out_trade_no": out_trade_no}
        if (order is not None and order["kind"] == "native" and order["state"] == NOTPAY
                and order["total_fee"] == total_fee):
            return self.answer(SUCCESS, "created", result=SUCCESS,
                               code_url=CODE_URL_BASE + order["token"],
                               expires_in=max(1, int(order["expires"] - now)), **common)
        refused = self._new_order_checks(led, mch_id, out_trade_no, order)
        if refused:
            return self.answer(SUCCESS, "not created", result="FAIL", err_code=refused[0],
                               err_msg=refused[1], **common)
        token = secrets.token_urlsafe(10)
        led.run("INSERT INTO orders (mch_id, out_trade_no, kind, terminal_id, total_fee,"
                " currency, body, state, token, delivery, created, updated, expires)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (mch_id, out_trade_no, "native", terminal_id, total_fee, currency, body, NOTPAY,
                 token, NOW, now, now, now + self.qr_expiry_s))
        return self.answer(SUCCESS, "created", result=SUCCESS, code_url=CODE_URL_BASE + token,
                           expires_in=self.qr_expiry_s, **common)

    def _op_close(self, led, fields, mch_id, terminal_id, now):
        out_trade_no, order = self._find(led, fields, mch_id, now)
        if order is None:
            raise Refusal(ORDER_NOT_FOUND, "no such order")
        if order["state"] in PAID_STATES:
            return self.answer(SUCCESS, "not closed", out_trade_no=out_trade_no, result="FAIL",
                               err_code="ORDERPAID",
                               err_msg="the order was paid: query it, keep it or cancel it")
        if order["state"] in (NOTPAY, USERPAYING):
            led.update_order(order, state=CLOSED, ended=now, updated=now, due=None)
        return self.answer(SUCCESS, "closed", out_trade_no=out_trade_no, result=SUCCESS,
                           trade_state=order["state"])

    def _refund_id(self, led, now):
        return "50%s%08d" % (utc_stamp(now), led.next_sequence("refund"))

    def _op_refund(self, led, fields, mch_id, terminal_id, now):
        out_trade_no, order = self._find(led, fields, mch_id, now)
        out_refund_no = _need_str(fields, "out_refund_no", _REFUND_NO,
                                  "1 to 64 characters of A-Z a-z 0-9 _ -")
        refund_fee = _need_fee(fields, "refund_fee")
        common = {"out_trade_no": out_trade_no, "out_refund_no": out_refund_no}
        if order is None:
            raise Refusal(ORDER_NOT_FOUND, "no such order")
        done = led.one("SELECT * FROM refunds WHERE mch_id=? AND out_refund_no=?",
                       (mch_id, out_refund_no))
        if done is not None:
            if done["out_trade_no"] != out_trade_no or done["refund_fee"] != refund_fee:
                return self.answer(SUCCESS, "not refunded", result="FAIL",
                                   err_code="OUT_REFUND_NO_USED",
                                   err_msg="this out_refund_no was used for another refund",
                                   **common)
            return self.answer(SUCCESS, "refunded", result=SUCCESS, refund_id=done["refund_id"],
                               refund_fee=refund_fee, refunded_fee=order["refunded_fee"],
                               **common)
        if not order["paid_fee"]:
            return self.answer(SUCCESS, "not refunded", result="FAIL", err_code="ORDERNOTPAID",
                               err_msg="the order is not paid (%s)" % order["state"], **common)
        left = order["paid_fee"] - order["refunded_fee"]
        if refund_fee > left:
            return self.answer(SUCCESS, "not refunded", result="FAIL", err_code="REFUND_EXCEED",
                               err_msg="at most %d can still be refunded" % left, **common)
        refund_id = self._refund_id(led, now)
        led.run("INSERT INTO refunds VALUES (?,?,?,?,?,?,?)",
                (mch_id, out_refund_no, out_trade_no, refund_fee, refund_id, "refund", now))
        led.update_order(order, refunded_fee=order["refunded_fee"] + refund_fee,
                         state=REFUND if order["state"] in PAID_STATES else order["state"],
                         updated=now)
        return self.answer(SUCCESS, "refunded", result=SUCCESS, refund_id=refund_id,
                           refund_fee=refund_fee, refunded_fee=order["refunded_fee"], **common)

    # -- the phone ------------------------------------------------------------------------
    def phone_pay(self, fields):
        """POST /sim/pay: a customer's phone pays a created order. -> (status, dict)."""
        code_url = fields.get("code_url")
        channel = fields.get("channel", "wechat")
        if (not isinstance(code_url, str) or not code_url.startswith(CODE_URL_BASE)
                or channel not in ("wechat", "alipay", "unionpay")):
            return 400, {"code": PARAM_ERROR, "msg": "code_url (and channel: wechat, alipay or "
                                                     "unionpay) expected"}
        now = self.clock()
        with self.tx() as led:
            order = led.one("SELECT * FROM orders WHERE token=?", (code_url[len(CODE_URL_BASE):],))
            if order is None:
                return 200, {"code": ORDER_NOT_FOUND, "msg": "no order has this code_url"}
            order = self._settle_due(led, order, now)
            reply = {"code": SUCCESS, "msg": "ok", "out_trade_no": order["out_trade_no"]}
            if order["state"] != NOTPAY:
                err = {SUCCESS: "ORDERPAID", REFUND: "ORDERPAID", CLOSED: "ORDERCLOSED",
                       REVOKED: "ORDERREVERSED", USERPAYING: "USERPAYING",
                       PAYERROR: "ORDERCLOSED"}[order["state"]]
                reply.update(result="FAIL", err_code=err, trade_state=order["state"])
                return 200, reply
            cents = order["total_fee"] % 100
            led.update_order(order, channel=channel, updated=now)
            if cents == 51:
                led.update_order(order, state=PAYERROR, err_code="NOTENOUGH", ended=now)
                reply.update(result="FAIL", err_code="NOTENOUGH")
            elif cents == 12:
                led.update_order(order, state=USERPAYING, due=now + 2 * self.wait_ms / 1000.0,
                                 due_state=PAYERROR)
                reply.update(result=USERPAYING)
            else:
                self._book(led, order, now)
                reply.update(result=SUCCESS, transaction_id=order["transaction_id"])
            reply["trade_state"] = order["state"]
            return 200, reply

    def ledger_snapshot(self):
        self.settle_all()
        with self.ledger.lock:
            return self.ledger.snapshot()

    def record_exchange(self, peer, path, status, request, response, delivery):
        try:
            with self.ledger.lock:
                if not self.ledger.closed:
                    self.ledger.run("INSERT INTO exchanges (at, peer, path, status, request,"
                                    " response, delivery) VALUES (?,?,?,?,?,?,?)",
                                    (self.clock(), peer, path, status, request, response,
                                     delivery))
        except sqlite3.Error as exc:
            self.log("cannot record an exchange: %s" % exc)

    # -- serving --------------------------------------------------------------------------
    def start(self, host=DEFAULT_HOST, port=0):
        """Serve from a background thread; returns (host, port)."""
        sim = self

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 64

            def get_request(self):
                sock, addr = self.socket.accept()
                with sim._conn_lock:
                    sim._connections.add(sock)
                return sock, addr

            def shutdown_request(self, request):
                with sim._conn_lock:
                    sim._connections.discard(request)
                super().shutdown_request(request)

            def handle_error(self, request, client_address):
                sim.log("connection from %s: %s" % (client_address[0], sys.exc_info()[1]))

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        Server.address_family = family
        server = Server((host, port), _Handler)
        server.sim = self
        if self.tls:
            server.socket = server_context(self.tls).wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self.address = server.server_address[:2]
        shown = "[%s]" % self.address[0] if family == socket.AF_INET6 else self.address[0]
        self.url = "%s://%s:%d" % ("https" if self.tls else "http", shown, self.address[1])
        self._stopping.clear()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="qrsim", daemon=True)
        self._thread.start()
        return self.address

    def stop(self, grace_s=2.0):
        """Stop serving: every connection closed (held ones too), the ledger closed."""
        self._stopping.set()
        server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()
            with self._conn_lock:
                open_ = list(self._connections)
            for sock in open_:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            deadline = time.monotonic() + grace_s
            with self._conn_lock:
                handlers = list(self._handlers)
            for thread in handlers:
                thread.join(max(0.0, deadline - time.monotonic()))
            self._thread.join(grace_s)
        self._server = None
        self._thread = None
        self.ledger.close()


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qrsim/1"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    disable_nagle_algorithm = True    # headers and body are two writes: no 40 ms stall

    @property
    def sim(self):
        return self.server.sim

    def setup(self):
        super().setup()
        with self.sim._conn_lock:
            self.sim._handlers.add(threading.current_thread())

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        with self.sim._conn_lock:
            self.sim._handlers.discard(threading.current_thread())

    def handle(self):
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()
            super().handle()
        except (ssl.SSLError, ConnectionError, socket.timeout, OSError) as exc:
            self.sim.log("connection from %s ended: %s" % (self.client_address[0], exc))
            self.close_connection = True

    def log_message(self, fmt, *args):
        self.sim.log("%s %s" % (self.client_address[0], fmt % args))

    # -- plumbing -------------------------------------------------------------------------
    def _send(self, status, body, headers=(), cut=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()

    def _json_bytes(self, fields):
        return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def _read_body(self):
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise Refusal(PARAM_ERROR, "send a Content-Length, not a chunked body", 411)
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise Refusal(PARAM_ERROR, "Content-Length is missing", 411)
        if int(length) > MAX_BODY:
            self.close_connection = True
            raise Refusal(PARAM_ERROR, "the body is longer than %d bytes" % MAX_BODY, 413)
        return self.rfile.read(int(length))

    def _deliver(self, answer, request_text=""):
        body = self._json_bytes(answer.fields)
        sim = self.sim
        sim.record_exchange(self.client_address[0], self.path, answer.status, request_text,
                            body.decode("utf-8"), answer.delivery)
        if answer.delivery == SLOW:
            if sim._stopping.wait(sim.slow_ms / 1000.0):
                self.close_connection = True
                return
        elif answer.delivery == SILENT:
            self._hold()
            return
        elif answer.delivery == TRUNCATED:
            self.close_connection = True
            self._send(answer.status, body, cut=max(1, len(body) // 2))
            return
        self._send(answer.status, body)

    def _hold(self):
        """.99: say nothing; close when the client gives up (or at MAX_HOLD_S, or stop)."""
        self.close_connection = True
        sock = self.connection
        deadline = time.monotonic() + MAX_HOLD_S
        while not self.sim._stopping.is_set() and time.monotonic() < deadline:
            try:
                ready, _, _ = select.select([sock], [], [], 0.1)
                if ready and not sock.recv(4096):
                    break
            except (OSError, ValueError, ssl.SSLError):
                break

    # -- methods --------------------------------------------------------------------------
    def do_POST(self):
        sim = self.sim
        request_text = ""
        try:
            if self.path.startswith("/sim/"):
                return self._sim_post()
            if not self.path.startswith("/v1/"):
                self._read_body_quietly()
                raise Refusal(PARAM_ERROR, "unknown path", 404)
            op = self.path[len("/v1/"):]
            raw = self._read_body()
            ctype = self.headers.get("Content-Type", "application/json")
            if not ctype.split(";")[0].strip().lower() == "application/json":
                raise Refusal(PARAM_ERROR, "Content-Type must be application/json", 415)
            request_text = raw.decode("utf-8", "replace")
            fields = _parse_json(raw)
            answer = sim.handle_request(op, fields)
        except Refusal as refusal:
            answer = sim.refused(refusal)
        self._deliver(answer, request_text)

    def _read_body_quietly(self):
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= MAX_BODY:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def do_GET(self):
        if self.path == "/sim/ledger":
            if not _is_loopback(self.client_address[0]):
                return self._send(403, self._json_bytes({"code": PARAM_ERROR,
                                                         "msg": "loopback only"}))
            return self._send(200, self._json_bytes(self.sim.ledger_snapshot()))
        if self.path.startswith("/v1/"):
            answer = self.sim.answer(PARAM_ERROR, "use POST", 405)
            return self._send(405, self._json_bytes(answer.fields), headers=[("Allow", "POST")])
        answer = self.sim.answer(PARAM_ERROR, "unknown path", 404)
        self._send(404, self._json_bytes(answer.fields))

    def _sim_post(self):
        if not _is_loopback(self.client_address[0]):
            self._read_body_quietly()
            return self._send(403, self._json_bytes({"code": PARAM_ERROR, "msg": "loopback only"}))
        if self.path != "/sim/pay":
            self._read_body_quietly()
            return self._send(404, self._json_bytes({"code": PARAM_ERROR, "msg": "unknown path"}))
        try:
            fields = _parse_json(self._read_body())
            status, reply = self.sim.phone_pay(fields)
        except Refusal as refusal:
            status, reply = refusal.status, {"code": refusal.code, "msg": refusal.msg}
        self._send(status, self._json_bytes(reply))


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate key %r" % key)
        out[key] = value
    return out


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


def _parse_json(raw):
    """One JSON object (UTF-8, no duplicate keys) -> dict, or Refusal 400 PARAM_ERROR."""
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                           parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refusal(PARAM_ERROR, "the body is not a JSON object: %s" % exc, 400)
    if not isinstance(value, dict):
        raise Refusal(PARAM_ERROR, "the body must be one JSON object", 400)
    return value


# -- the command ---------------------------------------------------------------------------

def _key(value):
    if value.startswith("hex:"):
        try:
            return bytes.fromhex(value[4:])
        except ValueError:
            raise argparse.ArgumentTypeError("hex: must be followed by hex digits")
    try:
        return value.encode("ascii")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("the key must be ASCII (or hex:...)")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m tools.host.qrsim",
                                description="the QR acquirer simulator (HTTPS, JSON, signed)")
    p.add_argument("--dir", default=DEFAULT_DATA,
                   help="directory for the ledger and the test CA (default %s)" % DEFAULT_DATA)
    p.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %s)"
                   % DEFAULT_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help="port (default %d; 0 picks a free one)" % DEFAULT_PORT)
    p.add_argument("--key", type=_key, default=DEFAULT_KEY,
                   help="the merchant key: ASCII text, or hex:... (default: the test key %s)"
                        % DEFAULT_KEY.decode())
    p.add_argument("--slow-ms", type=int, default=DEFAULT_SLOW_MS,
                   help="delay of the slow (.97) answer, ms (default %d)" % DEFAULT_SLOW_MS)
    p.add_argument("--wait-ms", type=int, default=DEFAULT_WAIT_MS,
                   help=".11 is paid this long after the pay, .12 gives up after twice it, ms "
                        "(default %d)" % DEFAULT_WAIT_MS)
    p.add_argument("--no-tls", action="store_true", help="plain HTTP (lab use only)")
    p.add_argument("--quiet", action="store_true", help="print only the start-up lines")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    data = os.path.abspath(args.dir)

    def log(line):
        if not args.quiet:
            sys.stdout.write("%s qrsim: %s\n" % (time.strftime("%H:%M:%S"), line))
            sys.stdout.flush()

    sim = QrSim(data, key=args.key, slow_ms=args.slow_ms, wait_ms=args.wait_ms,
                tls=not args.no_tls, log=log)
    try:
        sim.start(args.host, args.port)
    except OSError as exc:
        sys.stderr.write("qrsim: cannot listen on %s:%d: %s\n"
                         % (args.host, args.port, exc.strerror or exc))
        sim.ledger.close()
        return 1
    print("qrsim: listening on %s" % sim.url)
    if sim.tls:
        print("qrsim: %s test CA: %s" % ("made a new" if sim.tls["created"] else "using the",
                                         sim.ca_file))
    print("qrsim: ledger %s" % sim.ledger.path)
    sys.stdout.flush()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
