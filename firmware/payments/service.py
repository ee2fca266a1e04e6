"""The payments service: journal first, then the host; reversals until acknowledged.

Order of every card payment:
  1. the PIN becomes an ISO 9564 block encrypted under the next DUKPT key (the key
     counter is saved before the block exists) and the PIN's bytes are wiped;
  2. the journal record is written with state "sending" (durable);
  3. the request goes to the host; the card data is wiped;
  4. the answer is checked (MTI, STAN, TID, amount): an approval is written as
     "approved" before the screen says so; anything the terminal cannot be sure of
     (no answer, a reply it cannot trust, a link lost after sending, CANCEL after
     sending) becomes "reversal_pending", and a 0420 reversal advice waits in the
     store-and-forward queue until the host acknowledges it (repeats 0421). After a
     restart, every "sending" record is reversed.
  5. when the host could not be reached, a sale may be approved offline within the
     merchant's policy (firmware/payments/offline.py) and the card's own decision: its advice
     (0220) is in the queue, durably, before the screen says APPROVED OFFLINE; the
     forwarder (firmware/payments/forwarder.py) uploads it when an echo succeeds.
"""
from firmware.payments import hostmsg, offline
from firmware.payments.forwarder import Forwarder
from firmware.payments.hosttrust import HostTrust
from firmware.payments.journal import record
from firmware.payments.memqueue import MemoryQueue
from firmware.payments.receipts import build as build_receipt
from firmware.core.store import is_fault

STAN_LIMIT = 999999
COUNT_DELAY_MS = 500        # the status bar's queue count: at most twice a second (each count
                            # reads and checks every record still to upload)
# the reasons of a record whose host could not be asked (an offline decision may follow)
UNREACHABLE = ("reason_host_down", "reason_no_reply", "reason_link_lost")
EXPORTED_SETTING = "queue.exported_upto"     # the last queue id a supervisor exported
# the kernel's cardholder verification -> the journal's
CVM = {"online_pin": "pin", "offline_pin": "pin", "signature": "signature", "none": "none"}


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
    from firmware.cards.emv import tlv
    try:
        import binascii
        return tlv.find_value(tlv.parse(binascii.unhexlify(de55_hex)), 0x91)
    except (ValueError, TypeError):
        return None


def _hex(data):
    return "".join("%02X" % b for b in data)


def _icc_data(outcome):
    """The chip's final data (its last cryptogram and what it covers) as DE55 hex, for
    the settlement's batch upload; "" when the kernel gave none."""
    emv = outcome.get("emv")
    if not emv:
        return ""
    from firmware.cards.emv import tlv
    try:
        return tlv.de55_hex(emv)
    except (ValueError, TypeError):
        return ""


class Payments:
    def __init__(self, term, journal, host=None, dukpt=None, card_readers=0, chip_reader=None,
                 emv=None, queue=None):
        self.term = term
        self.queue = queue if queue is not None else MemoryQueue(term.config["terminal"]["id"])
        self.forwarder = Forwarder(term, self, self.queue, host)
        self.trust = HostTrust(term.store)  # a host certificate that failed: no offline
        self.chip_reader = chip_reader    # drivers.pcsc.PcscReader (chip and contactless)
        self.emv = emv                    # the EMV kernel's terminal configuration
        self.journal = journal
        self.host = host
        self.dukpt = dukpt
        self.card_readers = card_readers
        self.expecting_card = False
        self._cancelled = set()
        self._cancel_reason = {}     # journal id -> why it was cancelled (a message key)
        self._held = {}              # journal id -> track 2 kept for a stripe offline approval
        self._void_waiters = {}
        self._count_timer = None
        # the JSON of the cart the running sale pays for (firmware/flows/cart.py sets it
        # through the sale flow): each record the sale makes carries it
        self.cart = None
        self.qr = None                  # firmware/payments/qr.py QrPayments, when [qr] is on
        self.qr_refunds = None          # firmware/payments/qr_refund.py, with it
        self.exporter = None         # callable(target, valid_h) -> (paths, count): the board's signed export      # original id -> callback of the void flow
        self._jobs = {}              # printer job -> journal id of a merchant copy

    # -- readiness --------------------------------------------------------------
    def card_unready_reason(self):
        if self.host is None:
            return "err_no_host"
        if not self.card_readers and self.chip_reader is None:
            return "err_no_reader"
        if self.dukpt is None:
            return "err_no_key"
        if getattr(self.dukpt, "KIND", "tdes-dukpt") != \
                self.term.config["host"].get("pin_security", "tdes-dukpt"):
            return "err_no_key"     # a key of the other scheme: this host could not read its PINs
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
        if self.cart and kind in ("sale", "refund") and "cart" not in extra:
            # every way a sale is recorded carries its items (a refund of items: the
            # lines it gives back, firmware/retail/refund.py)
            extra["cart"] = self.cart
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
    def _unrecorded(self, kind, method, amount, exc, **extra):
        """What a flow is handed when the journal could not take a payment: nothing
        happened (no id, state failed, the reason in words); the terminal shows the
        storage fault (the drivers reported it)."""
        if not is_fault(exc):
            raise exc
        rec = record(kind=kind, method=method, amount=amount, state="failed",
                     currency=self.term.config["money"]["currency"], reason="reason_storage")
        rec.update(extra)
        return rec

    def cash(self, kind, amount, tendered, original=None):
        try:
            rec = self._new(kind, "cash", amount, "approved", tendered=tendered,
                            original_id=original["id"] if original else 0)
        except Exception as exc:        # the card is full or failing: nothing taken
            return self._unrecorded(kind, "cash", amount, exc, tendered=tendered)
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
        cvm = CVM.get(outcome.get("cvm"), rec["cvm"])
        self.journal.update(txn_id, tvr=outcome.get("tvr") or "", tsi=outcome.get("tsi") or "",
                            cryptogram=outcome.get("cryptogram") or "", cvm=cvm,
                            icc_data=_icc_data(outcome))
        if rec["state"] == "approved" and (outcome.get("reversal") or not outcome.get("approved")):
            self._to_reversal(txn_id, "reason_card_declined", str(outcome.get("reason")))
        elif rec["state"] != "approved" and not outcome.get("online"):
            if outcome.get("approved"):         # Y3: the card approved it offline
                return self.chip_offline(rec["kind"], rec["amount"], outcome, rec["entry"], rec)
            if outcome.get("arc") == "Z3" and rec["reason"] in UNREACHABLE:
                # the card's offline decision is the reason only when the host could
                # not be asked; CANCEL, a card pulled out, a bad reply keep their words
                why = self.offline_refusal(rec["kind"], rec["amount"], rec["entry"],
                                           outcome.get("cvm")) or "off_card_declined"
                self.journal.update(txn_id, reason=why)
        return self.journal.get(txn_id)

    def chip_offline(self, kind, amount, outcome, entry, attempt=None):
        """An approval the card gave offline (Y1 at once, Y3 when the host could not be
        reached) becomes a queued advice, within the merchant's policy."""
        from firmware.cards.emv import tlv
        card = outcome.get("card") or {}
        info = {"pan": card.get("pan"), "expiry": card.get("expiry"),
                "pan_masked": outcome.get("pan_masked") or "",
                "last4": outcome.get("last4") or "", "entry": entry}
        emv = {"de55": tlv.de55_hex(outcome.get("emv") or {}), "pan_seq": outcome.get("pan_seq")}
        return self.approve_offline(attempt, info, emv, outcome.get("arc") or "Y1",
                                    outcome.get("cvm"), outcome, kind=kind, amount=amount)

    def online_preferred(self, kind, amount, entry):
        """Ask the host first unless it is known to be down and this payment could be
        approved offline (then a chip may approve at once, Y1)."""
        if self.host is None or self.term.link_state != "down":
            return True
        return self.offline_refusal(kind, amount, entry, None) is not None

    def authorise(self, kind, amount, card, pin, callback, original=None, emv=None):
        """Send a card payment; callback(record) once its outcome is in the journal."""
        pin_fields = None
        cvm = "signature"
        if pin:
            from firmware.security.dukpt import DukptError
            digits = bytearray(pin.encode())
            try:
                ksn, block = self.dukpt.encrypt_pin(digits, card.pan)
            except DukptError as exc:
                return self._refused(kind, amount, card, "err_key_exhausted", callback, str(exc))
            except Exception as exc:    # the key's counter could not be stored: never sent
                return self._not_written(kind, amount, card, exc, callback)
            finally:
                for i in range(len(digits)):
                    digits[i] = 0
            pin_fields = (_hex(ksn), _hex(block))
            cvm = "pin"
        extra = {}
        if emv is not None:
            extra = {"aid": emv.get("aid") or "", "app_label": emv.get("label") or ""}
        try:
            stan = self.next_stan()
            rec = self._new(kind, "card", amount, "sending", stan=stan, pan_masked=card.masked,
                            last4=card.last4, entry=card.entry_mode, cvm=cvm,
                            card_label=brand(card.masked),
                            original_id=original["id"] if original else 0, **extra)
        except Exception as exc:        # not written down, so never sent
            return self._not_written(kind, amount, card, exc, callback)
        msg = hostmsg.financial_request(rec, self.term.config, self.term.system.local_time(),
                                        card.track2, pin_fields, original, emv,
                                        pan=card.pan, expiry=card.expiry)
        if emv is None and kind == "sale" and card.entry_mode in \
                self.term.config["offline"]["entry_modes"] and self.term.config["offline"]["enabled"]:
            # a stripe the merchant accepts offline: its PAN and expiry (what an advice
            # carries, not the track) stay until the answer, in case the host cannot be
            # reached (a chip card's kernel keeps its own)
            self._held[rec["id"]] = (card.pan, card.expiry, card.masked, card.last4,
                                     card.entry_mode)
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

    def _not_written(self, kind, amount, card, exc, callback):
        """A card payment the card (SD) could not record: NOT CHARGED, never sent."""
        rec = self._unrecorded(kind, "card", amount, exc, pan_masked=card.masked,
                               last4=card.last4, entry=card.entry_mode)
        card.wipe()
        self.term.reactor.call_soon(callback, rec)
        return rec

    def _refused(self, kind, amount, card, reason, callback, detail=""):
        rec = self._new(kind, "card", amount, "failed", pan_masked=card.masked,
                        last4=card.last4, entry=card.entry_mode, reason=reason)
        card.wipe()
        self.term.store.audit("card_refused", rec["operator"], "#%d %s %s" % (rec["id"], reason, detail))
        self.term.reactor.call_soon(callback, self.journal.get(rec["id"]))
        return rec

    def _answer(self, txn_id, request, result, callback):
        try:
            self._answer_recorded(txn_id, request, result, callback)
        except Exception as exc:
            # the answer could not be written down: the journal still says "sending",
            # so the request is reversed once the card takes writes again (recover)
            rec = self._unrecorded("sale", "card", 0, exc)
            self._cancelled.discard(txn_id)
            self._cancel_reason.pop(txn_id, None)
            self._held.pop(txn_id, None)
            rec["id"] = txn_id
            callback(rec)

    def _answer_recorded(self, txn_id, request, result, callback):
        kind = result["kind"]
        rec = self.journal.get(txn_id)
        if kind == "response":
            resp = result["msg"]
            problem = hostmsg.check_response(request, resp)
            if problem:
                self._to_reversal(txn_id, "reason_bad_reply", problem)
            elif txn_id in self._cancelled:
                self._to_reversal(txn_id, self._cancel_reason.pop(txn_id, "reason_cancelled"), "")
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
        elif result.get("unbuildable"):
            self.journal.update(txn_id, state="failed", reason="reason_bad_request")
        elif result.get("untrusted"):
            # not a link down: whoever answered is not the host (docs/payments.md)
            self.journal.update(txn_id, state="failed", reason="reason_host_untrusted")
            self.term.on_host_untrusted(result["untrusted"], result.get("reason", ""))
        else:
            self.journal.update(txn_id, state="failed", reason="reason_host_down")
        cancelled = txn_id in self._cancelled
        self._cancelled.discard(txn_id)
        self._cancel_reason.pop(txn_id, None)
        held = self._held.pop(txn_id, None)
        bad_request = bool(result.get("unbuildable"))
        if kind == "response":
            self.forwarder.link_ok()
        elif not bad_request:
            self.forwarder.link_failed()
        rec = self.journal.get(txn_id)
        if kind == "response" and rec["state"] in ("approved", "declined"):
            rec["issuer_data"] = _issuer_auth_data(result["msg"].get("55"))
        self.term.store.audit("card_" + rec["kind"], rec["operator"],
                              "#%d %s %s" % (txn_id, rec["state"], rec["rc"] or rec["reason"]))
        unreachable = kind != "response" and not cancelled and not bad_request \
            and not result.get("untrusted")
        rec["host_unreachable"] = unreachable
        if unreachable and held is not None:
            pan, expiry, masked, last4, entry = held
            card = {"pan": pan, "expiry": expiry, "pan_masked": masked, "last4": last4,
                    "entry": entry}
            rec = self.approve_offline(rec, card, None, "Y1", rec["cvm"])
        held = None
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
            self._restock(original["id"])
            self.term.store.audit("void", who, "#%d of #%d" % (rec["id"], original["id"]))
            self.term.reactor.call_soon(callback, self.journal.get(rec["id"]))
            return rec
        card = dict(original_id=original["id"], pan_masked=original["pan_masked"],
                    last4=original["last4"], entry=original["entry"],
                    card_label=original["card_label"], offline=original["offline"])
        if original["offline"] and original["upload"] == "pending":
            return self._void_before_upload(original, who, card, callback)
        rev_stan = self.next_stan()
        rec = self._new("void", "card", original["amount"], "sending", stan=rev_stan, **card)
        self.term.store.audit("void", who, "#%d of #%d" % (rec["id"], original["id"]))
        self._void_waiters[original["id"]] = callback
        self._to_reversal(original["id"], "reason_voided", who, purpose="void", rev_stan=rev_stan)
        # the host may be out of reach: the void flow hears "queued" in time
        wait = (self.term.config["host"]["response_timeout_s"] + 5) * 1000
        self.term.reactor.call_later(wait, lambda: self._void_wait_over(original["id"]))
        return rec

    def _restock(self, txn_id):
        """An item sale voided: its items go back on the shelf (once)."""
        from firmware.retail import loyalty, stock
        rec = self.journal.get(txn_id)
        stock.give_back(self.term, rec)
        loyalty.void(self.term, rec)        # a member's points taken back (once)

    def _void_wait_over(self, original_id):
        waiter = self._void_waiters.pop(original_id, None)
        if waiter is not None:
            waiter(self._void_record(original_id))    # still "sending": queued

    def reversal_failed(self, qrec, payload):
        """A queued reversal got no answer this time (it goes again, as 0421)."""
        rec = self._local(qrec, payload)
        if rec is not None:
            self.journal.update(rec["id"], reversal_attempts=qrec["attempts"] + 1)
            self._void_wait_over(rec["id"])

    def _void_before_upload(self, original, who, card, callback):
        """An offline sale the host has not heard of: its advice is withdrawn, nothing
        goes to the host. One already on its way must be answered first."""
        queued = self.queue.find("advice", original["stan"])
        try:
            if queued is None:
                raise ValueError("no queued advice")
            self.queue.cancel(queued["id"], "voided before upload", who)
        except Exception as exc:
            rec = self._new("void", "card", original["amount"], "failed",
                            reason="reason_void_uploading", **card)
            self.term.store.audit("void_refused", who, "#%d %s" % (original["id"], exc))
            self.forwarder.upload_now()
            self.term.reactor.call_soon(callback, self.journal.get(rec["id"]))
            return rec
        rec = self._new("void", "card", original["amount"], "approved", **card)
        self.journal.update(original["id"], state="voided", upload="")
        self._restock(original["id"])
        self.term.store.audit("void", who, "#%d of #%d (offline, before upload)"
                              % (rec["id"], original["id"]))
        self.refresh_pending()
        self.term.reactor.call_soon(callback, self.journal.get(rec["id"]))
        return rec

    def back_in_flight(self, original_id):
        """A refund or void of this sale whose outcome is not known yet (sent, or being
        reversed): another must wait for it, or the two together could give back more
        than was paid (found by tools/host/qr_chaos.py --overlap)."""
        for state in ("created", "sending", "reversal_pending"):
            for rec in self.journal.find(state=state):
                if rec["original_id"] == original_id and rec["kind"] in ("refund", "void"):
                    return rec
        return None

    def _void_record(self, original_id):
        for rec in self.journal.find(kind="void"):
            if rec["original_id"] == original_id:
                return rec
        return None

    def cancel(self, txn_id, reason="reason_cancelled"):
        """CANCEL while the request is out: whatever the host says, it is reversed."""
        self._cancelled.add(txn_id)
        self._cancel_reason[txn_id] = reason

    # -- reversals --------------------------------------------------------------
    def _to_reversal(self, txn_id, reason, detail, purpose="reversal", rev_stan=None):
        """rec could not be trusted (or is voided): a 0420 waits in the queue."""
        self.journal.update(txn_id, state="reversal_pending", reason=reason)
        self.term.store.audit("reversal_needed", "", "#%d %s %s" % (txn_id, reason, detail))
        self._queue_reversal(self.journal.get(txn_id), purpose, rev_stan)

    def _queue_reversal(self, rec, purpose, rev_stan=None):
        """Put rec's reversal in the queue once (keyed by rec's STAN); True when it is there.

        A full or failing SD card is audited and tried again at the next start and
        whenever the forwarder runs (sync_reversals)."""
        try:
            if self.queue.find("reversal", rec["stan"]) is not None:
                return True
            stan = rev_stan or rec["rev_stan"] or self.next_stan()
            if rec["rev_stan"] != stan:
                self.journal.update(rec["id"], rev_stan=stan)
            original_mti = "0220" if rec["offline"] else "0200"
            msg = hostmsg.reversal_request(rec, self.term.config, self.term.system.local_time(),
                                           stan, original_mti, purpose)
            self.queue.add("reversal", rec["stan"], rec["amount"], rec["currency"],
                           {"msg": msg, "journal_id": rec["id"], "purpose": purpose},
                           created_utc=rec["utc"])
        except Exception as exc:
            self.term.store.audit("queue_error", "", "reversal of #%d: %s" % (rec["id"], exc))
            return False
        self.refresh_pending()
        self.forwarder.queued()
        return True

    def _reconcile_queue(self):
        """The queue knows an upload is done but the journal does not (a record written
        by an older build, or a lost journal write): bring the journal up to date."""
        try:
            for rec in self.journal.find(state="approved"):
                if rec["offline"] and rec["upload"] == "pending":
                    q = self.queue.find("advice", rec["stan"])
                    if q is not None and q["state"] == "acked":
                        self.journal.update(rec["id"], upload="uploaded")
                    elif q is not None and q["state"] == "declined_after_upload":
                        self.journal.update(rec["id"], state="declined", rc=q["rc"],
                                            upload="declined")
            for rec in self.pending_reversals():
                q = self.queue.find("reversal", rec["stan"])
                if q is not None and q["state"] == "acked":
                    self._reversal_done(rec, "void" if rec["reason"] == "reason_voided"
                                        else "reversal", {"39": q["rc"] or "00"})
        except Exception as exc:
            self.term.store.audit("queue_error", "", "reconcile: %s" % exc)

    def sync_reversals(self):
        """Every record waiting for a reversal has one in the queue (after a crash
        between the journal and the queue, or a full disk)."""
        for rec in self.pending_reversals():
            self._queue_reversal(rec, "void" if rec["reason"] == "reason_voided" else "reversal")

    def pending_reversals(self):
        """Card reversals waiting for the host (a QR order's cancel is the QR service's)."""
        return [r for r in self.journal.find(state="reversal_pending") if r["method"] != "qr"]

    def kick_reversals(self, delay_ms=0):
        self.forwarder.kick(delay_ms)

    # -- what the forwarder reports -------------------------------------------------
    def _local(self, qrec, payload):
        """The journal record a queue record belongs to (None for one imported from
        another terminal: that terminal's journal has it)."""
        if qrec.get("tid", self.queue.tid) != self.queue.tid:
            return None
        return self.journal.get(payload.get("journal_id") or 0)

    def forwarded(self, qrec, payload, resp):
        """The host has a queued message: a reversal is done, an advice is booked."""
        rec = self._local(qrec, payload)
        self.term.store.audit("uploaded", "", "%s STAN %s TID %s: %s"
                              % (qrec["kind"], qrec["stan"], qrec["tid"], resp.get("39")))
        if rec is not None and qrec["kind"] == "reversal":
            self.journal.update(rec["id"], reversal_attempts=qrec["attempts"] + 1)
            self._reversal_done(rec, payload.get("purpose"), resp)
        elif rec is not None:
            self.journal.update(rec["id"], upload="uploaded")
        self.refresh_pending()

    def _reversal_done(self, rec, purpose, resp):
        txn_id = rec["id"]
        waiter = self._void_waiters.pop(txn_id, None)
        if purpose == "void" or rec["reason"] == "reason_voided":
            self.journal.update(txn_id, state="voided")
            self._restock(txn_id)
            void = self._void_record(txn_id)
            if void is not None:
                self.journal.update(void["id"], state="approved", rc=resp.get("39", ""))
        else:
            self.journal.update(txn_id, state="reversed")
        self.term.store.audit("reversed", "", "#%d" % txn_id)
        if waiter is not None:
            waiter(self._void_record(txn_id))

    def declined_after_upload(self, qrec, payload, rc):
        """The host refused a payment approved offline: the merchant was not paid. An
        alert on the screen, a printed notice, and the record stays listed until a
        supervisor acknowledges it."""
        rec = self._local(qrec, payload)
        self.term.store.audit("declined_after_upload", "", "STAN %s TID %s amount %d rc %s"
                              % (qrec["stan"], qrec["tid"], qrec["amount"], rc))
        if rec is not None:
            self.journal.update(rec["id"], state="declined", rc=rc, upload="declined")
            self.print_notice(rec["id"])
        self.refresh_pending()
        self.term.queue_alert()

    def queue_alert(self, what, qrec):
        self.term.store.audit("queue_" + what, "", "record %d STAN %s" % (qrec["id"], qrec["stan"]))
        self.refresh_pending()
        self.term.queue_alert()

    def refresh_pending(self):
        """The status bar's count and the idle screen's lines follow the queue (counted
        once however many records changed within COUNT_DELAY_MS)."""
        if self._count_timer is None:
            self._count_timer = self.term.reactor.call_later(COUNT_DELAY_MS, self._count_pending)

    def _count_pending(self):
        self._count_timer = None
        try:
            totals = self.queue.totals()
        except Exception:
            return
        n = 0
        for cur in totals:
            n += totals[cur][0]
        if n != self.term.pending:
            self.term.pending = n
            self.term.refresh()

    def damaged_records(self):
        """[(id, utc, what)] of journal records flagged altered: a supervisor's to see
        (never acted on, never deleted); [] when the journal cannot be read at all (its
        own fault screen says so)."""
        try:
            return list(self.journal.damaged())
        except Exception as exc:
            if not is_fault(exc):
                raise
            return []

    def queue_summary(self):
        """What the idle screen and the offline menu show: counts and amounts still to
        upload, how old the oldest is, and records a supervisor must see."""
        try:
            totals = self.queue.totals("advice")
            age = self.queue.oldest_age_s()
            attention = [r for r in self.queue.outstanding()
                         if r["state"] in ("declined_after_upload", "corrupt")]
        except Exception:
            totals, age, attention = {}, None, []
        return {"totals": totals, "age_s": age, "age_flag": offline.age_flag(self.term.config, age),
                "attention": attention}

    # -- protection and export --------------------------------------------------
    def unexported_pending(self):
        """How many queued records neither the host nor an export file has: logout
        (and later settlement, software update, factory reset) refuse while any are."""
        try:
            pending = self.queue.pending()
        except Exception:
            return 0
        covered = int(self.term.store.get_setting(EXPORTED_SETTING) or 0)
        return len([r for r in pending if r["id"] > covered])

    def export_queue(self, supervisor, target, valid_h):
        """A supervisor's export of every record still to upload, for the terminal
        `target` alone to import within valid_h hours; (ok, lines to show)."""
        t = self.term.t
        if self.exporter is None:
            return False, [t("export_no_keys")]
        try:
            pending = self.queue.pending()
            paths, n = self.exporter(target, valid_h)
        except Exception as exc:
            self.term.store.audit("queue_export_failed", supervisor, str(exc))
            why = getattr(exc, "screen", None)      # a key file refused: in words
            if why:
                return False, [t("export_failed"), t(why), t("sf_technician")]
            return False, [t("export_failed"), str(exc)[:60]]
        if pending:
            self.term.store.set_setting(EXPORTED_SETTING, str(max(r["id"] for r in pending)))
        names = [p.rsplit("/", 1)[-1] for p in paths]
        self.term.store.audit("queue_exported", supervisor, "%d records for %s to %s"
                              % (n, target, ", ".join(names)))
        return True, [t("exported_n", n=n), t("exp_for", tid=target)] + names

    # -- offline approval -------------------------------------------------------
    def offline_refusal(self, kind, amount, entry, cvm):
        """None when the merchant allows approving this payment offline, else why not."""
        cur = self.term.config["money"]["currency"]
        try:
            queued = self.queue.totals("advice").get(cur, (0, 0))
            age = self.queue.oldest_age_s()
        except Exception:
            return "off_no_queue"
        return offline.refusal(self.term.config, kind, amount, cur, entry, cvm, queued, age,
                               queue_ok=getattr(self.queue, "durable", False),
                               host_trusted=not self.trust.untrusted())

    def approve_offline(self, attempt, card, emv, arc, cvm, outcome=None, kind="sale",
                        amount=None):
        """Approve a payment the host could not be asked about: within policy, its
        advice durably queued first. attempt is the failed online record (None when
        the card approved offline at once, Y1). Returns the record to show."""
        if attempt is not None:
            kind, amount = attempt["kind"], attempt["amount"]
        refusal = self.offline_refusal(kind, amount, card["entry"], cvm)
        if refusal is not None:
            return self._offline_refused(attempt, kind, amount, card, refusal)
        extra = {}
        if outcome is not None:
            extra = {"aid": outcome.get("aid") or "", "app_label": outcome.get("label") or "",
                     "tvr": outcome.get("tvr") or "", "tsi": outcome.get("tsi") or "",
                     "cryptogram": outcome.get("cryptogram") or "",
                     "icc_data": _icc_data(outcome)}
        stan = self.next_stan()
        utc, _ = self._stamp()
        rec = self._new(kind, "card", amount, "offline_pending", stan=stan,
                        rrn=hostmsg.offline_rrn(utc, stan), auth_code=arc,
                        pan_masked=card["pan_masked"], last4=card["last4"], entry=card["entry"],
                        cvm=CVM.get(cvm, cvm), card_label=brand(card["pan_masked"]), offline=1,
                        **extra)
        msg = hostmsg.advice_request(rec, self.term.config, self.term.system.local_time(),
                                     card.get("pan"), card.get("expiry"), emv, arc)
        try:
            self.queue.add("advice", stan, amount, rec["currency"],
                           {"msg": msg, "journal_id": rec["id"], "purpose": "advice"},
                           created_utc=rec["utc"])
        except Exception as exc:
            msg = None
            self.journal.update(rec["id"], state="failed", reason="off_disk")
            self.term.store.audit("offline_refused", rec["operator"], "#%d %s" % (rec["id"], exc))
            return self.journal.get(rec["id"])
        msg = None
        self.journal.update(rec["id"], state="approved", upload="pending")
        if attempt is not None:
            self.journal.update(attempt["id"], reason="reason_offline_instead")
        self.term.store.audit("offline_approved", rec["operator"],
                              "#%d %s %d" % (rec["id"], arc, amount))
        self.refresh_pending()
        self.forwarder.queued()
        return self.journal.get(rec["id"])

    def _offline_refused(self, attempt, kind, amount, card, refusal):
        if attempt is None:
            attempt = self._new(kind, "card", amount, "failed", pan_masked=card["pan_masked"],
                                last4=card["last4"], entry=card["entry"], reason=refusal)
        elif attempt["state"] == "failed":
            self.journal.update(attempt["id"], reason=refusal)
        self.term.store.audit("offline_refused", attempt["operator"], "#%d %s" % (attempt["id"], refusal))
        rec = self.journal.get(attempt["id"])
        rec["offline_refusal"] = refusal
        return rec

    # -- network management -----------------------------------------------------
    def sign_on(self, code="001", callback=None):
        """0800: 001 sign-on at start, 301 echo (Diagnostics). The link state in the
        status bar follows from whether the host answers."""
        if self.host is None:
            return False
        utc, _ = self._stamp()
        try:
            stan = self.next_stan()
        except Exception as exc:        # no STAN can be recorded: no message goes
            if not is_fault(exc):
                raise
            return False
        msg = hostmsg.network_request(self.term.config, stan, utc, code)

        def answered(result):
            ok = result["kind"] == "response" and result["msg"].get("39") == "00"
            if ok and code != "301":
                self.forwarder.link_ok()
            self.term.store.audit("network_" + code, "", "ok" if ok else result.get("reason", result["kind"]))
            if callback is not None:
                callback(ok)
        # as long as a payment would wait, and no longer than 10 s: an echo that hangs
        # on a link gone quiet would hold the forwarder up
        timeout = min(10000, int(self.term.config["host"]["response_timeout_s"] * 1000))
        self.host.request(msg, max(1, timeout), answered)
        return True

    # -- start-up ---------------------------------------------------------------
    def recover(self):
        """Resolve what a crash or power cut left: reverse every request without an
        answer; return approvals whose receipt never printed (the idle screen offers
        a reprint)."""
        for rec in self.journal.find(state="sending"):
            if rec["method"] == "qr":
                continue                # the QR acquirer's own: firmware/payments/qr.py
            if rec["kind"] == "void" and rec["method"] == "card":
                self._recover_void(rec)
                continue
            self._to_reversal(rec["id"], "reason_restart", "restart")
        for rec in self.journal.find(state="offline_pending"):
            # the advice may be queued, but APPROVED was never shown: withdraw it
            queued = self.queue.find("advice", rec["stan"])
            try:
                if queued is not None and queued["state"] == "pending":
                    self.queue.cancel(queued["id"], "restart before the approval was shown")
                self.journal.update(rec["id"], state="failed", reason="reason_restart")
            except Exception as exc:
                self.term.store.audit("queue_error", "", "#%d %s" % (rec["id"], exc))
        self._reconcile_queue()
        self.sync_reversals()
        self.refresh_pending()
        self.forwarder.queued()
        return [r for r in self.journal.find(state="approved") if not r["receipt_printed"]]

    def _recover_void(self, void):
        """A card void is the reversal of its sale (which carries the void's STAN), never
        a request of its own: after a restart it waits for that reversal, is done, or
        never started. Reversing it too would reverse a STAN the host never saw."""
        orig = self.journal.get(void["original_id"]) if void["original_id"] else None
        if orig is not None and orig["state"] == "voided":
            self.journal.update(void["id"], state="approved")
        elif orig is None or orig["state"] != "reversal_pending":
            self.journal.update(void["id"], state="failed", reason="reason_restart")

    # -- receipts ---------------------------------------------------------------
    def print_receipt(self, txn_id, copy="merchant", reprint=False):
        try:
            rec = self.journal.get(txn_id) if txn_id else None
        except Exception as exc:
            if not is_fault(exc):
                raise
            rec = None
        if rec is None:
            return None                 # nothing recorded: nothing to print
        original = self.journal.get(rec["original_id"]) if rec["original_id"] else None
        from firmware.retail import loyalty
        receipt = build_receipt(rec, self.term.config, self.term.t, copy,
                                synced=self.term.system.clock_synced(), reprint=reprint,
                                original=original,
                                member_rows=loyalty.receipt_block(self.term, rec))
        job = self.term.print_receipt(receipt)
        if job is not None and copy == "merchant":
            self._jobs[job] = txn_id
        return job

    def print_notice(self, txn_id):
        from firmware.payments.receipts import declined_notice
        rec = self.journal.get(txn_id)
        return self.term.print_receipt(declined_notice(rec, self.term.config, self.term.t,
                                                       synced=self.term.system.clock_synced()))

    def printed(self, job):
        """The printer took the last byte of a job: a merchant copy is on paper."""
        txn_id = self._jobs.pop(job, None)
        if txn_id is not None:
            try:
                self.journal.update(txn_id, receipt_printed=1)
            except Exception as exc:    # offered as a reprint after the fault
                if not is_fault(exc):
                    raise

    RECEIPT_STATES = ("approved", "declined", "reversed", "voided", "reversal_pending")

    def last_receipt(self):
        # the newest of each state, not the whole journal: each read verifies only the
        # rows it returns (a MAC each), and a journal holds tens of thousands
        rows = [r for r in (self.journal.last(state=s) for s in self.RECEIPT_STATES) if r]
        return max(rows, key=lambda r: r["id"]) if rows else None

    def unprinted(self):
        """Approvals of the open batch whose merchant copy never reached the paper and
        is not on its way to it, oldest first (what Reprint offers first)."""
        on_the_way = set(self._jobs.values())
        batch = self.batch()
        return [r for r in self.journal.find(state="approved", batch=batch)
                if not r["receipt_printed"] and r["id"] not in on_the_way]
