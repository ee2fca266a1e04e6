"""The payments service: journal first, then the host; reversals until acknowledged.

Order of every card payment:
  1. the PIN becomes an ISO 9564 block encrypted under the next DUKPT key (the key
     counter is saved before the block exists) and the PIN's bytes are wiped;
  2. the journal record is written with state "sending" (durable);
  3. the request goes to the host; the card data is wiped;
  4. the answer is checked (MTI, STAN, TID, amount): an approval is written as
     "approved" before the screen says so; anything the terminal cannot be sure of
     (no answer, a reply it cannot trust, a link lost after sending, CANCEL after
     sending) becomes "reversal_pending", and a 0400 (then 0401 repeats) goes out until
     the host acknowledges it. After a restart, every "sending" record is reversed.
"""
from firmware import hostmsg
from firmware.journal import record
from firmware.receipts import build as build_receipt

STAN_LIMIT = 999999
REVERSAL_BACKOFF_MS = (2000, 5000, 15000, 30000, 60000, 120000, 300000)


def brand(pan):
    """The scheme's name from the first digits (which the masked PAN keeps)."""
    if pan.startswith("4"):
        return "VISA"
    if pan[:2] in ("51", "52", "53", "54", "55") or "2221" <= pan[:4] <= "2720":
        return "MASTERCARD"
    if pan[:2] in ("34", "37"):
        return "AMEX"
    if pan[:2] == "62":
        return "UNIONPAY"
    return ""


def _issuer_auth_data(de55_hex):
    """Tag 91 of the host's DE55, for the card's second GENERATE AC; None if absent."""
    if not de55_hex:
        return None
    from firmware.emv import tlv
    try:
        import binascii
        return tlv.find_value(tlv.parse(binascii.unhexlify(de55_hex)), 0x91)
    except (ValueError, TypeError):
        return None


def _hex(data):
    return "".join("%02X" % b for b in data)


class Payments:
    def __init__(self, term, journal, host=None, dukpt=None, card_readers=0, chip_reader=None,
                 emv=None):
        self.term = term
        self.chip_reader = chip_reader    # drivers.pcsc.PcscReader (chip and contactless)
        self.emv = emv                    # the EMV kernel's terminal configuration
        self.journal = journal
        self.host = host
        self.dukpt = dukpt
        self.card_readers = card_readers
        self.expecting_card = False
        self._cancelled = set()
        self._reversal_busy = False
        self._reversal_timer = None
        self._void_waiters = {}      # original id -> callback of the void flow
        self._jobs = {}              # printer job -> journal id of a merchant copy

    # -- readiness --------------------------------------------------------------
    def card_unready_reason(self):
        if self.host is None:
            return "err_no_host"
        if not self.card_readers and self.chip_reader is None:
            return "err_no_reader"
        if self.dukpt is None:
            return "err_no_key"
        if self.dukpt.exhausted:
            return "err_key_exhausted"
        return None

    def card_ready(self):
        return self.card_unready_reason() is None

    def expect_card(self, flag):
        self.expecting_card = flag

    # -- records ----------------------------------------------------------------
    def _stamp(self):
        y, mo, d, h, mi, s = self.term.system.utc_time()
        return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, h, mi, s), self.term.system.utc_offset_min()

    def _new(self, kind, method, amount, state, **extra):
        utc, tz = self._stamp()
        op = self.term.operator["id"] if self.term.operator else ""
        rec = record(kind=kind, method=method, amount=amount, state=state,
                     currency=self.term.config["money"]["currency"], operator=op, utc=utc,
                     tz_min=tz, batch=self.batch(), **extra)
        rec["id"] = self.journal.add(rec)
        return rec

    def batch(self):
        return self.journal.counter("batch") or 1

    def next_stan(self):
        return "%06d" % self.journal.next_counter("stan", STAN_LIMIT)

    # -- cash -------------------------------------------------------------------
    def cash(self, kind, amount, tendered, original=None):
        rec = self._new(kind, "cash", amount, "approved", tendered=tendered,
                        original_id=original["id"] if original else 0)
        if original is not None and kind == "refund":
            self.journal.update(original["id"], refunded=original["refunded"] + amount)
        self.term.store.audit("cash_" + kind, rec["operator"], "#%d %d" % (rec["id"], amount))
        return rec

    # -- card -------------------------------------------------------------------
    # -- chip ---------------------------------------------------------------------
    def emv_config(self):
        return self.emv

    def card_exchange(self, apdu, callback):
        """An APDU to the chip; callback({"ok", "rapdu" | "reason"}) on the loop."""
        self.chip_reader.exchange(bytes(apdu), callback)
        if isinstance(apdu, bytearray):       # an offline PIN VERIFY: the kernel wipes it too
            for i in range(len(apdu)):
                apdu[i] = 0

    def chip_complete(self, txn_id, outcome):
        """The card's final word after the host's. The host approved but the card said
        no (or went away): the approval is reversed. Returns the updated record."""
        rec = self.journal.get(txn_id)
        # the kernel knows how the cardholder was verified (an offline PIN never
        # reached this service)
        cvm = {"online_pin": "pin", "offline_pin": "pin", "signature": "signature",
               "none": "none"}.get(outcome.get("cvm"), rec["cvm"])
        self.journal.update(txn_id, tvr=outcome.get("tvr") or "", tsi=outcome.get("tsi") or "",
                            cryptogram=outcome.get("cryptogram") or "", cvm=cvm)
        if rec["state"] == "approved" and (outcome.get("reversal") or not outcome.get("approved")):
            self._to_reversal(txn_id, "reason_card_declined", str(outcome.get("reason")))
        return self.journal.get(txn_id)

    def authorise(self, kind, amount, card, pin, callback, original=None, emv=None):
        """Send a card payment; callback(record) once its outcome is in the journal."""
        pin_fields = None
        cvm = "signature"
        if pin:
            from firmware.dukpt import DukptError
            digits = bytearray(pin.encode())
            try:
                ksn, block = self.dukpt.encrypt_pin(digits, card.pan)
            except DukptError as exc:
                return self._refused(kind, amount, card, "err_key_exhausted", callback, str(exc))
            finally:
                for i in range(len(digits)):
                    digits[i] = 0
            pin_fields = (_hex(ksn), _hex(block))
            cvm = "pin"
        stan = self.next_stan()
        extra = {}
        if emv is not None:
            extra = {"aid": emv.get("aid") or "", "app_label": emv.get("label") or ""}
        rec = self._new(kind, "card", amount, "sending", stan=stan, pan_masked=card.masked,
                        last4=card.last4, entry=card.entry_mode, cvm=cvm,
                        card_label=brand(card.masked),
                        original_id=original["id"] if original else 0, **extra)
        msg = hostmsg.financial_request(rec, self.term.config, self.term.system.local_time(),
                                        card.track2, pin_fields, original, emv)
        card.wipe()
        # Keep only what checking the reply needs; the request dict (track data, PIN
        # block) is dropped once the link has encoded it.
        check = {}
        for k in ("t", "11", "41", "4"):
            if k in msg:
                check[k] = msg[k]
        timeout = self.term.config["host"]["response_timeout_s"] * 1000
        self.host.request(msg, timeout, lambda result: self._answer(rec["id"], check, result, callback))
        msg = None
        return rec

    def _refused(self, kind, amount, card, reason, callback, detail=""):
        rec = self._new(kind, "card", amount, "failed", pan_masked=card.masked,
                        last4=card.last4, entry=card.entry_mode, reason=reason)
        card.wipe()
        self.term.store.audit("card_refused", rec["operator"], "#%d %s %s" % (rec["id"], reason, detail))
        self.term.reactor.call_soon(callback, self.journal.get(rec["id"]))
        return rec

    def _answer(self, txn_id, request, result, callback):
        kind = result["kind"]
        rec = self.journal.get(txn_id)
        if kind == "response":
            resp = result["msg"]
            problem = hostmsg.check_response(request, resp)
            if problem:
                self._to_reversal(txn_id, "reason_bad_reply", problem)
            elif txn_id in self._cancelled:
                self._to_reversal(txn_id, "reason_cancelled", "")
            elif resp["39"] == "00":
                self.journal.update(txn_id, state="approved", rc="00",
                                    auth_code=(resp.get("38") or "").strip(),
                                    rrn=resp.get("37") or "")
                if rec["original_id"] and rec["kind"] == "refund":
                    orig = self.journal.get(rec["original_id"])
                    self.journal.update(orig["id"], refunded=orig["refunded"] + rec["amount"])
            else:
                self.journal.update(txn_id, state="declined", rc=resp["39"],
                                    rrn=resp.get("37") or "")
        elif kind == "timeout":
            self._to_reversal(txn_id, "reason_no_reply", "")
        elif result.get("sent"):
            self._to_reversal(txn_id, "reason_link_lost", result.get("reason", ""))
        else:
            self.journal.update(txn_id, state="failed", reason="reason_host_down")
        self._cancelled.discard(txn_id)
        rec = self.journal.get(txn_id)
        if kind == "response" and rec["state"] in ("approved", "declined"):
            rec["issuer_data"] = _issuer_auth_data(result["msg"].get("55"))
        self.term.store.audit("card_" + rec["kind"], rec["operator"],
                              "#%d %s %s" % (txn_id, rec["state"], rec["rc"] or rec["reason"]))
        callback(rec)

    def void(self, original, supervisor, callback):
        """Void an approved sale of this batch; callback(void record) once known.

        Cash: done at once (the drawer opens with the void receipt). Card: the sale
        is reversed at the host; the void record stays "sending" until the reversal
        is acknowledged, retried (0401) as long as it takes, across restarts.
        """
        who = supervisor["id"]
        if original["method"] == "cash":
            rec = self._new("void", "cash", original["amount"], "approved",
                            original_id=original["id"], tendered=0)
            self.journal.update(original["id"], state="voided")
            self.term.store.audit("void", who, "#%d of #%d" % (rec["id"], original["id"]))
            self.term.reactor.call_soon(callback, self.journal.get(rec["id"]))
            return rec
        stan = self.next_stan()
        rec = self._new("void", "card", original["amount"], "sending", stan=stan,
                        original_id=original["id"], pan_masked=original["pan_masked"],
                        last4=original["last4"], entry=original["entry"],
                        card_label=original["card_label"])
        self.journal.update(original["id"], state="reversal_pending", reason="reason_voided",
                            rev_stan=stan, reversal_attempts=0)
        self.term.store.audit("void", who, "#%d of #%d" % (rec["id"], original["id"]))
        self._void_waiters[original["id"]] = callback
        self.kick_reversals()
        return rec

    def _void_record(self, original_id):
        for rec in self.journal.find(kind="void"):
            if rec["original_id"] == original_id:
                return rec
        return None

    def cancel(self, txn_id):
        """CANCEL while the request is out: whatever the host says, it is reversed."""
        self._cancelled.add(txn_id)

    # -- reversals --------------------------------------------------------------
    def _to_reversal(self, txn_id, reason, detail):
        self.journal.update(txn_id, state="reversal_pending", reason=reason)
        self.term.store.audit("reversal_needed", "", "#%d %s %s" % (txn_id, reason, detail))
        self.kick_reversals()

    def pending_reversals(self):
        return self.journal.find(state="reversal_pending")

    def kick_reversals(self, delay_ms=0):
        if self._reversal_busy or self.host is None:
            return
        if self._reversal_timer is not None:
            if delay_ms:
                return
            self._reversal_timer.cancel()
        self._reversal_timer = self.term.reactor.call_later(delay_ms, self._send_reversal)

    def _send_reversal(self):
        self._reversal_timer = None
        pending = self.pending_reversals()
        if not pending or self._reversal_busy:
            return
        rec = pending[0]
        stan = rec["rev_stan"] or self.next_stan()
        repeat = rec["reversal_attempts"] > 0
        self.journal.update(rec["id"], rev_stan=stan, reversal_attempts=rec["reversal_attempts"] + 1)
        msg = hostmsg.reversal_request(rec, self.term.config, self.term.system.local_time(),
                                       stan, repeat)
        self._reversal_busy = True
        timeout = self.term.config["host"]["response_timeout_s"] * 1000
        self.host.request(msg, timeout, lambda result: self._reversal_answer(rec["id"], msg, result))

    def _reversal_answer(self, txn_id, request, result):
        self._reversal_busy = False
        rec = self.journal.get(txn_id)
        ok = result["kind"] == "response" and hostmsg.check_response(request, result["msg"]) is None
        waiter = self._void_waiters.pop(txn_id, None)
        if ok:
            if rec["reason"] == "reason_voided":
                self.journal.update(txn_id, state="voided")
                void = self._void_record(txn_id)
                if void is not None:
                    self.journal.update(void["id"], state="approved",
                                        rc=result["msg"].get("39", ""))
            else:
                self.journal.update(txn_id, state="reversed")
            self.term.store.audit("reversed", "", "#%d" % txn_id)
            if waiter is not None:
                waiter(self._void_record(txn_id))
            self.term.refresh()
            self.kick_reversals()
            return
        if waiter is not None:
            waiter(self._void_record(txn_id))     # still "sending": the screen says queued
        attempts = rec["reversal_attempts"]
        delay = REVERSAL_BACKOFF_MS[min(attempts - 1, len(REVERSAL_BACKOFF_MS) - 1)]
        self.kick_reversals(delay)

    # -- network management -----------------------------------------------------
    def sign_on(self, code="001", callback=None):
        """0800: 001 sign-on at start, 301 echo (Diagnostics). The link state in the
        status bar follows from whether the host answers."""
        if self.host is None:
            return False
        utc, _ = self._stamp()
        msg = hostmsg.network_request(self.term.config, self.next_stan(), utc, code)

        def answered(result):
            ok = result["kind"] == "response" and result["msg"].get("39") == "00"
            self.term.store.audit("network_" + code, "", "ok" if ok else result.get("reason", result["kind"]))
            if callback is not None:
                callback(ok)
        self.host.request(msg, 10000, answered)
        return True

    # -- start-up ---------------------------------------------------------------
    def recover(self):
        """Resolve what a crash or power cut left: reverse every request without an
        answer; return approvals whose receipt never printed (the idle screen offers
        a reprint)."""
        for rec in self.journal.find(state="sending"):
            self.journal.update(rec["id"], state="reversal_pending", reason="reason_restart")
            self.term.store.audit("reversal_needed", "", "#%d restart" % rec["id"])
        self.kick_reversals()
        return [r for r in self.journal.find(state="approved") if not r["receipt_printed"]]

    # -- receipts ---------------------------------------------------------------
    def print_receipt(self, txn_id, copy="merchant", reprint=False):
        rec = self.journal.get(txn_id)
        original = self.journal.get(rec["original_id"]) if rec["original_id"] else None
        receipt = build_receipt(rec, self.term.config, self.term.t, copy,
                                synced=self.term.system.clock_synced(), reprint=reprint,
                                original=original)
        job = self.term.print_receipt(receipt)
        if job is not None and copy == "merchant":
            self._jobs[job] = txn_id
        return job

    def printed(self, job):
        """The printer took the last byte of a job: a merchant copy is on paper."""
        txn_id = self._jobs.pop(job, None)
        if txn_id is not None:
            self.journal.update(txn_id, receipt_printed=1)

    def last_receipt(self):
        rows = [r for r in self.journal.find() if r["state"] in
                ("approved", "declined", "reversed", "voided", "reversal_pending")]
        return rows[-1] if rows else None
