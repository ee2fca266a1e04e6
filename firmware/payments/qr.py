"""QR payments (issue 13): the customer's payment code scanned by the cashier, through
the aggregated-payment acquirer (docs/qr-protocol.md), with the guarantees of a card:

  * the journal record is durable before the request leaves (state "sending", method
    "qr", the code masked in pan_masked, its channel in card_label);
  * an answer is believed only when its sign, order and amount check out
    (firmware/payments/qrmsg.py); anything else is unknown, and unknown is queried;
  * "waiting for the customer" (USERPAYING) is queried every poll_s until pay_timeout_s
    from the start; then, or at CANCEL, the order is cancelled (state
    "reversal_pending", durable) and the cancel repeated until the acquirer
    acknowledges it, after a restart too;
  * after a crash an order in flight ("sending") is queried, then kept or cancelled.

The merchant's code (show(), entry "qr_show"): the record first ("sending", no channel
until paid), then `create`; its code_url goes to the listener ("shown") to be drawn,
and the order is queried every poll_s until show_timeout_s (never past the code's own
expiry). CANCEL or the time up closes it (`close`): closed, the record is "reversed"
(nothing charged); paid meanwhile (close says ORDERPAID), it is queried and kept; a
close without a believable answer becomes a cancel, repeated until acknowledged.

Nothing here blocks: the link (drivers/qrlink.py) answers on the loop. A listener
(the flow) hears listener(event, rec, info): "shown" (the merchant's code; info: url,
seconds left), "waiting" (info: seconds left), "closing", "cancelling", "done" (rec:
the final record).

Order numbers are the terminal's ID and the record's number, "HP000001-000123": unique
per merchant across terminals, and found again from the journal alone after a crash.
"""
from firmware.payments import qrmsg

CHANNEL_LABELS = {"wechat": "WeChat Pay", "alipay": "Alipay", "unionpay": "UnionPay QR"}
# the acquirer's refusals the screen names; any other is "Declined, code X"
REFUSALS = {"NOTENOUGH": "qr_no_balance", "AUTHCODEEXPIRE": "qr_code_expired",
            "AUTH_CODE_INVALID": "qr_code_invalid", "PAYERROR": "qr_gave_up",
            "USERPAYING_FAILED": "qr_gave_up", "CLOSED": "qr_gave_up",
            "REVOKED": "qr_gave_up", "ORDERPAID": "qr_code_used"}
CANCEL_RETRY_MS = (2000, 5000, 15000, 30000, 60000)
SHOW_ENTRY = "qr_show"          # the entry of a record paid by the merchant's code
EXPIRY_MARGIN_MS = 5000         # a shown order is closed this long before its code expires
PROBE_MS = 15000                # while the acquirer is unreachable, a connect this often


def out_trade_no(tid, rec_id):
    return "%s-%06d" % (tid, rec_id)


def rec_id_of(number, tid):
    """The record number in this terminal's order number, or None."""
    prefix = tid + "-"
    if not number or not number.startswith(prefix):
        return None
    try:
        return int(number[len(prefix):])
    except ValueError:
        return None


class _Order:
    def __init__(self, rec_id, amount, listener, started_ms):
        self.rec_id = rec_id
        self.amount = amount
        self.listener = listener
        self.started_ms = started_ms
        self.cancel_asked = False
        self.timer = None
        self.busy = False           # a request of this order is on the link
        self.tries = 0
        self.shown = False          # the merchant's code (create), not the customer's (pay)
        self.timeout_ms = None      # None: the service's pay_timeout_s
        self.reason = None          # why a shown order is being closed


class QrPayments:
    def __init__(self, term, payments, link, messages, config):
        self.term = term
        self.payments = payments    # firmware/payments/service.py: the journal's owner
        self.link = link
        self.msg = messages
        cfg = config["qr"]
        self.poll_ms = cfg["poll_s"] * 1000
        self.pay_timeout_ms = cfg["pay_timeout_s"] * 1000
        self.show_timeout_ms = cfg.get("show_timeout_s", 120) * 1000
        self.request_ms = cfg["request_timeout_s"] * 1000
        self.tid = config["terminal"]["id"]
        self.orders = {}            # rec id -> _Order (in flight or being cancelled)
        self.recent = []            # hashes of the codes lately paid: a rescan is named
        # the acquirer's reachability, from the QR link itself (not the card host's:
        # either may be reachable without the other); "unknown" until a connect tells
        self.link_state = "unknown"
        self._probe_timer = None

    # -- what a flow asks ---------------------------------------------------------------
    def refusal(self, code):
        """None when code may be paid now, else a message id."""
        if qrmsg.classify_code(code) is None:
            return "qr_code_invalid"
        if self._hash(code) in self.recent:
            return "qr_code_used"
        if self.needs_network():
            return "qr_needs_network"
        return None

    # -- the acquirer's reachability -------------------------------------------------------
    def needs_network(self):
        """True while the acquirer is known unreachable: a QR payment is refused at once
        (never approved offline) and a connect is tried now, so that the next try finds
        a network that came back."""
        if self.link_state != "down":
            return False
        self.probe()
        return True

    def link_changed(self, state):
        """The QR link's on_link: "up" or "down". While down, a connect every PROBE_MS."""
        if state == self.link_state:
            return
        self.link_state = state
        if state == "down":
            self._probe_later()
        elif self._probe_timer is not None:
            self._probe_timer.cancel()
            self._probe_timer = None
        self.term.refresh()

    def probe(self):
        """Connect to the acquirer without a request (nothing is sent): the link then
        says up or down."""
        self.link.probe()

    def _probe_later(self):
        if self._probe_timer is not None:
            self._probe_timer.cancel()
        self._probe_timer = self.term.reactor.call_later(PROBE_MS, self._probe_tick)

    def _probe_tick(self):
        self._probe_timer = None
        if self.link_state == "down":
            self.probe()
            self._probe_later()

    def pay(self, kind, amount, code, listener):
        """Record, then send, the payment of amount by the customer's code; the record
        (state "sending"). A code is never kept: only its mask and last four."""
        channel = qrmsg.classify_code(code)
        rec = self.payments._new(kind, "qr", amount, "sending",
                                 pan_masked=qrmsg.mask_code(code), last4=code[-4:],
                                 card_label=CHANNEL_LABELS.get(channel, channel or ""),
                                 entry="qr")
        self.recent = ([self._hash(code)] + self.recent)[:20]
        order = _Order(rec["id"], amount, listener, self.term.reactor.clock())
        self.orders[rec["id"]] = order
        self.term.store.audit("qr_" + kind, rec["operator"], "#%d %d %s" % (
            rec["id"], amount, rec["pan_masked"]))
        body = self.msg.pay(self._number(rec["id"]), code, amount,
                            self.term.config["money"]["currency"], self._body(rec))
        code = None
        self._send(order, "pay", body, self._paid)
        return rec

    def show(self, kind, amount, listener):
        """Record, then create, an order paid by the merchant's code (the customer scans
        the screen, or paper); the record (state "sending"). The listener hears "shown"
        with the code_url to draw."""
        rec = self.payments._new(kind, "qr", amount, "sending", card_label="",
                                 entry=SHOW_ENTRY)
        order = _Order(rec["id"], amount, listener, self.term.reactor.clock())
        order.shown = True
        order.timeout_ms = self.show_timeout_ms
        self.orders[rec["id"]] = order
        self.term.store.audit("qr_show_" + kind, rec["operator"], "#%d %d" % (rec["id"], amount))
        body = self.msg.create(self._number(rec["id"]), amount,
                               self.term.config["money"]["currency"], self._body(rec))
        self._send(order, "create", body, self._created)
        return rec

    def cancel(self, rec_id):
        """CANCEL pressed: the order is cancelled (a shown one closed) as soon as its
        request in flight ends (at once when none is)."""
        order = self.orders.get(rec_id)
        if order is None or order.cancel_asked:
            return
        order.cancel_asked = True
        if not order.busy:
            self._cancel_timer(order)
            self._give_up(order, "reason_cancelled")

    def in_flight(self):
        return [rid for rid in self.orders]

    # -- the acquirer's answers ---------------------------------------------------------
    def _send(self, order, op, body, then):
        order.busy = True
        self.link.request(op, body, self.request_ms,
                          lambda result: self._answer(order, body, result, then))

    def _answer(self, order, request, result, then):
        order.busy = False
        reply = None
        if result.get("kind") == "response" and result.get("status") == 200:
            reply = result.get("json")
            if reply is not None and self.msg.check_response(request, reply) is not None:
                self.term.store.audit("qr_bad_answer", "", "#%d %s" % (
                    order.rec_id, self.msg.check_response(request, reply)))
                reply = None            # not the acquirer's word: unknown
        then(order, reply, result)

    def _paid(self, order, reply, result):
        if reply is None and result.get("kind") != "response" and not result.get("sent"):
            # nothing reached the acquirer: nothing can have been charged
            return self._end(order, "failed", reason="reason_qr_down")
        if reply is not None and reply.get("code") == "SUCCESS":
            outcome = reply.get("result")
            if outcome == "SUCCESS":
                return self._approve(order, reply)
            if outcome == "FAIL" and reply.get("err_code") not in ("SYSTEMERROR", "", None):
                return self._decline(order, reply.get("err_code"))
        # USERPAYING, SYSTEMERROR, an error code, or no believable answer: ask
        self._poll_later(order)

    def _created(self, order, reply, result):
        if reply is None and result.get("kind") != "response" and not result.get("sent"):
            return self._end(order, "failed", reason="reason_qr_down")
        if reply is not None and reply.get("code") == "SUCCESS":
            url = reply.get("code_url")
            if reply.get("result") == "SUCCESS" and isinstance(url, str) and url:
                expires = reply.get("expires_in")
                if isinstance(expires, int) and not isinstance(expires, bool) and expires > 0:
                    # never show a code the acquirer will no longer take
                    used = self.term.reactor.clock() - order.started_ms
                    order.timeout_ms = min(order.timeout_ms, max(
                        used, used + expires * 1000 - EXPIRY_MARGIN_MS))
                if order.cancel_asked:
                    return self._give_up(order, "reason_cancelled")
                left = self._left_ms(order)
                self._notify(order, "shown", {"url": url, "left_s": (left + 999) // 1000})
                return self._poll_later(order)
            if reply.get("result") == "FAIL" and reply.get("err_code") not in (
                    "SYSTEMERROR", "", None):
                # refused (a number used, a parameter): no order, nothing to pay
                return self._end(order, "failed", rc=(reply.get("err_code") or "")[:16],
                                 reason="qrs_refused")
        # no believable answer: the order may exist, its code was never shown; close it
        self._give_up(order, "qrs_no_code")

    def _give_up(self, order, reason):
        if order.shown:                 # closed, not reversed: nothing was ever paid
            if reason == "reason_cancelled":
                reason = "qrs_cancelled"
            return self._start_close(order, reason)
        return self._start_cancel(order, reason)

    def _poll_later(self, order):
        if order.cancel_asked:
            return self._give_up(order, "reason_cancelled")
        left = self._left_ms(order)
        if left <= 0:
            return self._give_up(order, "qrs_timed_out" if order.shown else "qr_timed_out")
        self._notify(order, "waiting", {"left_s": (left + 999) // 1000})
        self._cancel_timer(order)
        order.timer = self.term.reactor.call_later(min(self.poll_ms, left), self._query, order)

    def _query(self, order):
        order.timer = None
        if order.cancel_asked:
            return self._give_up(order, "reason_cancelled")
        self._send(order, "query", self.msg.query(self._number(order.rec_id)), self._queried)

    def _queried(self, order, reply, result):
        state = reply.get("trade_state") if reply is not None and reply.get("code") == "SUCCESS" \
            else None
        if state == "SUCCESS":
            return self._approve(order, reply)
        if state in ("PAYERROR", "CLOSED", "REVOKED"):
            return self._decline(order, state)
        self._poll_later(order)

    def _approve(self, order, reply):
        if order.cancel_asked and not order.shown:  # paid after CANCEL was pressed: given back
            return self._start_cancel(order, "reason_cancelled")
        # a customer who scanned the merchant's code has paid: the payment is kept
        fields = {"rrn": str(reply.get("transaction_id") or ""), "rc": "00"}
        channel = reply.get("channel")
        if order.shown and isinstance(channel, str) and channel:
            fields["card_label"] = CHANNEL_LABELS.get(channel, channel)[:32]
        return self._end(order, "approved", **fields)

    def _decline(self, order, err):
        return self._end(order, "declined", rc=(err or "")[:16],
                         reason=REFUSALS.get(err, "qr_declined"))

    # -- closing a shown order --------------------------------------------------------------
    def _start_close(self, order, reason):
        self._cancel_timer(order)
        order.cancel_asked = True
        order.reason = reason
        self._notify(order, "closing", {})
        self._send(order, "close", self.msg.close(self._number(order.rec_id)), self._closed)

    def _closed(self, order, reply, result):
        code = reply.get("code") if reply is not None else None
        if code == "SUCCESS" and reply.get("result") == "SUCCESS":
            return self._end(order, "reversed", reason=order.reason)
        if code == "SUCCESS" and reply.get("result") == "FAIL" \
                and reply.get("err_code") == "ORDERPAID":
            # paid as it was being closed: ask for the payment, then keep it
            return self._query_paid(order)
        # ORDER_NOT_FOUND (the create never arrived: a cancel makes sure a late one is
        # refused), or no believable answer: cancel until acknowledged
        return self._start_cancel(order, order.reason)

    def _query_paid(self, order):
        order.timer = None
        self._send(order, "query", self.msg.query(self._number(order.rec_id)), self._paid_query)

    def _paid_query(self, order, reply, result):
        state = reply.get("trade_state") if reply is not None and reply.get("code") == "SUCCESS" \
            else None
        if state in ("SUCCESS", "REFUND"):
            return self._approve(order, reply)
        if state in ("PAYERROR", "CLOSED", "REVOKED"):
            return self._end(order, "reversed", reason=order.reason)
        # not known yet: the order is paid, ask again
        delay = CANCEL_RETRY_MS[min(order.tries, len(CANCEL_RETRY_MS) - 1)]
        order.tries += 1
        order.timer = self.term.reactor.call_later(delay, self._query_paid, order)

    # -- cancelling -----------------------------------------------------------------------
    def _start_cancel(self, order, reason):
        self._cancel_timer(order)
        try:
            self.payments.journal.update(order.rec_id, state="reversal_pending", reason=reason)
        except Exception as exc:        # the card is full: keep trying from memory
            self.term.store.audit("qr_journal", "", "#%d %s" % (order.rec_id, exc))
        self._notify(order, "cancelling", {})
        self._send_cancel(order)

    def _send_cancel(self, order):
        order.timer = None
        self._send(order, "cancel", self.msg.cancel(self._number(order.rec_id)), self._cancelled)

    def _cancelled(self, order, reply, result):
        if reply is not None and (reply.get("code") == "ORDER_NOT_FOUND" or (
                reply.get("code") == "SUCCESS" and reply.get("result") == "SUCCESS")):
            # acknowledged, or the acquirer never had the order: nothing charged
            rec = self.payments.journal.get(order.rec_id)
            return self._end(order, "reversed", reason=rec["reason"] or "reason_cancelled")
        delay = CANCEL_RETRY_MS[min(order.tries, len(CANCEL_RETRY_MS) - 1)]
        order.tries += 1
        order.timer = self.term.reactor.call_later(delay, self._send_cancel, order)
        if order.tries == 1:
            # the person need not wait: the terminal keeps cancelling on its own
            self._notify(order, "done", {})
            order.listener = None

    # -- the end -------------------------------------------------------------------------
    def _end(self, order, state, **fields):
        self._cancel_timer(order)
        self.orders.pop(order.rec_id, None)
        fields["state"] = state
        try:
            self.payments.journal.update(order.rec_id, **fields)
        except Exception as exc:
            self.term.store.audit("qr_journal", "", "#%d %s" % (order.rec_id, exc))
        rec = self.payments.journal.get(order.rec_id)
        self.term.store.audit("qr_" + state, rec["operator"] if rec else "", "#%d %s" % (
            order.rec_id, fields.get("rc") or fields.get("reason") or ""))
        if order.listener is None and rec is not None and rec["state"] == "approved" \
                and not rec["receipt_printed"] \
                and rec["id"] not in [r["id"] for r in self.term.unprinted]:
            # paid while the terminal was down (found by the recovery's query): no screen
            # said APPROVED, so the idle screen says a receipt waits (MENU > Reprint)
            self.term.unprinted.append(rec)
            self.term.refresh()
        self._notify(order, "done", {})
        return None

    def _notify(self, order, event, info):
        if order.listener is not None:
            rec = self.payments.journal.get(order.rec_id)
            order.listener(event, rec, info)

    # -- after a restart --------------------------------------------------------------------
    def recover(self):
        """Orders a crash left: "sending" ones are queried (then kept or cancelled), and
        "reversal_pending" ones cancelled again until acknowledged."""
        n = 0
        for rec in self.payments.journal.find(state="sending"):
            if rec["method"] != "qr" or rec["kind"] != "sale" or rec["id"] in self.orders:
                continue
            order = _Order(rec["id"], rec["amount"], None,
                           self.term.reactor.clock() - self.pay_timeout_ms)
            if rec["entry"] == SHOW_ENTRY:  # a shown code: paid is kept, else closed
                order.shown = True
                order.timeout_ms = self.pay_timeout_ms
            self.orders[rec["id"]] = order
            self._send(order, "query", self.msg.query(self._number(rec["id"])), self._queried)
            n += 1
        for rec in self.payments.journal.find(state="reversal_pending"):
            if rec["method"] != "qr" or rec["id"] in self.orders:
                continue
            order = _Order(rec["id"], rec["amount"], None, 0)
            order.cancel_asked = True
            self.orders[rec["id"]] = order
            self._send_cancel(order)
            n += 1
        if not n:
            self.probe()                # at start: is the acquirer there?
        return n

    # -- small parts ------------------------------------------------------------------------
    def _number(self, rec_id):
        return out_trade_no(self.tid, rec_id)

    def _body(self, rec):
        return self.term.config["terminal"]["merchant_name"][:32]

    def _left_ms(self, order):
        timeout = order.timeout_ms if order.timeout_ms is not None else self.pay_timeout_ms
        return order.started_ms + timeout - self.term.reactor.clock()

    def _cancel_timer(self, order):
        if order.timer is not None:
            order.timer.cancel()
            order.timer = None

    @staticmethod
    def _hash(code):
        import hashlib
        return hashlib.sha256(code.encode()).digest()[:12]
