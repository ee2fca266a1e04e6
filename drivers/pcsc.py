"""The chip card reader: PC/SC through pcscd, with pyscard's low-level API.

pcscd owns the reader (a CCID reader on the terminal, vsmartcard's vpcd in tests and
the simulator); this driver is one of its clients. pyscard offers no file descriptor
to wait on, so the driver has two helper threads, each with its own PC/SC context
(pcsc-lite serialises the calls on one context, and a status wait would hold up an
APDU):

- the monitor waits in SCardGetStatusChange (never longer than wait_ms, and stop()
  cancels the wait at once) and posts reader and card changes to the loop;
- the worker sends the APDUs, one at a time in the order they were asked for, and
  posts each answer to the loop.

Everything the terminal sees arrives on the loop through Reactor.post():

    on_event("reader_ready", reader_name)   the reader was found (at start or again)
    on_event("inserted", atr)               a card is in (or in the field); atr is
                                            bytes, b"" for a card that did not answer
                                            the reset (mute: upside down, no chip)
    on_event("removed", None)               the card is gone
    on_event("reader_lost", message)        no reader: unplugged, never found, or
                                            pcscd gone; message says what to check

on_event always gets two arguments. After "reader_lost" the monitor keeps looking
(pcscd restarted, reader plugged back in) and says "reader_ready" when it is back.

exchange(apdu, callback) calls callback(result) exactly once, from the loop and never
from inside exchange(), with one of

    {"ok": True, "rapdu": bytes}            the card's data and status word
    {"ok": False, "reason": "card_removed" | "reader_error" | "timeout",
     "detail": "what happened, in words"}

An exchange belongs to the card the loop last heard "inserted" for: if that card has
gone, even when another has been put in since, the APDU is not sent and the answer is
card_removed. T=0's transport status words are handled here, so the core sees whole
answers under either protocol: 61xx is followed by GET RESPONSE and the pieces joined,
6Cxx has the command sent again with the Le the card asked for.
"""
import logging
import queue
import threading
import time

log = logging.getLogger("handpos.pcsc")

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"   # pcsc-lite's "a reader came or went"

WAIT_MS = 2000            # longest single status wait; stop() cancels one sooner
RETRY_MS = 1000           # between looks for pcscd or the reader once it is lost
EXCHANGE_TIMEOUT_MS = 10000   # EMV allows a card seconds per command, not tens
MAX_ROUNDS = 64           # transmits per exchange: 64 GET RESPONSEs carry 16 KB
REMOVAL_GRACE_MS = 1000   # how long a failed transmit waits to learn the card left
JOIN_S = 3.0              # stop() waits this long per thread (more than WAIT_MS)

# Words in reader names that mean a contactless interface (ACS "PICC", Identiv "CL",
# and readers that say it outright).
CONTACTLESS_WORDS = ("PICC", "CL", "CONTACTLESS", "NFC")

_U32 = 0xFFFFFFFF


def _code(hr):
    # pyscard hands back PC/SC codes as ints whose sign depends on the platform.
    return hr & _U32


def reader_kind(name, atr=None):
    """"contactless" or "contact": a hint from the reader's name, then the card's ATR.

    A dual-interface reader that shows one slot for both says nothing in its name;
    there the ATR tells, because PC/SC readers give contactless cards a made-up ATR
    that starts 3B 8n 80 01 (PC/SC part 3, 3.1.3.2.3).
    """
    words = (name or "").upper().replace("-", " ").replace("_", " ").split()
    if any(w in CONTACTLESS_WORDS for w in words):
        return "contactless"
    if atr and len(atr) >= 4 and atr[0] == 0x3B and atr[1] & 0xF0 == 0x80 \
            and atr[2] == 0x80 and atr[3] == 0x01:
        return "contactless"
    return "contact"


def with_le(apdu, le):
    """The same short command asking for le bytes, or None when it cannot be rebuilt."""
    n = len(apdu)
    if n == 4:                          # case 1: add an Le
        return apdu + bytes([le])
    if n == 5:                          # case 2: replace it
        return apdu[:4] + bytes([le])
    lc = apdu[4]
    if lc == 0:                         # extended length: T=0 never has it
        return None
    if n == 5 + lc:                     # case 3: add an Le
        return apdu + bytes([le])
    if n == 6 + lc:                     # case 4: replace it
        return apdu[:-1] + bytes([le])
    return None


def get_response(cla, le):
    # The logical channel (CLA bits 0-1) carries over; the class byte of a
    # proprietary command (80 AE GENERATE AC) does not: GET RESPONSE is 00 C0.
    return bytes([cla & 0x03, 0xC0, 0x00, 0x00, le])


class _Failed(Exception):
    def __init__(self, reason, detail):
        Exception.__init__(self, detail)
        self.reason = reason
        self.detail = detail


class _Job:
    """One exchange (or a power-off) on its way through the worker."""

    QUEUED, RUNNING, ABANDONED, DONE = "queued", "running", "abandoned", "done"

    def __init__(self, apdu, callback, generation, power_off=False):
        self.apdu = apdu
        self.callback = callback
        self.generation = generation
        self.power_off = power_off
        self.timer = None
        self.finished = False    # the callback has been called (loop thread only)
        self._state = self.QUEUED
        self._lock = threading.Lock()

    def claim(self):
        """Worker: take the job unless the loop has given up on it already."""
        with self._lock:
            if self._state != self.QUEUED:
                return False
            self._state = self.RUNNING
            return True

    def settle(self):
        """Worker, after the card answered: False when nobody waits for the answer."""
        with self._lock:
            waited = self._state == self.RUNNING
            self._state = self.DONE
            return waited

    def abandon(self):
        with self._lock:
            if self._state in (self.QUEUED, self.RUNNING):
                self._state = self.ABANDONED


class PcscReader:
    """One PC/SC reader, picked by name, reporting cards and exchanging APDUs.

    reader_name_match is a part of the reader's name as pcscd lists it ("Virtual
    PCD", "ACR39U", "Identiv uTrust 3700 F CL"), matched without regard to case, or
    a function name -> bool; the first reader pcscd lists that matches is used.
    scard is the PC/SC module (smartcard.scard unless one is injected).
    """

    def __init__(self, reactor, reader_name_match, on_event, on_dead=None, scard=None,
                 exchange_timeout_ms=EXCHANGE_TIMEOUT_MS, wait_ms=WAIT_MS,
                 retry_ms=RETRY_MS):
        if scard is None:
            # Imported here: a board without a chip reader needs no pyscard.
            from smartcard import scard
        self.scard = scard
        self.reactor = reactor
        self.match = reader_name_match
        self.on_event = on_event
        self.on_dead = on_dead
        self.exchange_timeout_ms = exchange_timeout_ms
        self.wait_ms = int(wait_ms)
        self.retry_s = retry_ms / 1000.0
        # What the loop knows (written on the loop thread only).
        self.running = False
        self.reader = None        # pcscd's full name of the reader in use
        self.atr = None           # the card's ATR while the loop knows of a card
        self.lost = None          # why there is no reader, once there is none
        self.stuck = []           # threads stop() could not end in time
        self.exchanges = 0        # exchanges answered by the card
        self.failures = 0         # exchanges that ended otherwise
        self._card = None         # generation of the card the loop was told about
        self._pending = set()     # jobs whose callback is still due
        # Shared with the threads.
        self._lock = threading.Lock()
        self._present = False     # monitor's view: a card is in
        self._generation = 0      # +1 per card insertion the monitor sees
        self._monitor_ctx = None
        self._found = None        # the reader the monitor follows, for the worker
        self._stop = threading.Event()
        self._jobs = queue.Queue()
        self._threads = []
        self._run = 0             # +1 per start(): which threads speak for this one
        self._local = threading.local()
        # Worker thread only.
        self._io_ctx = None
        self._hcard = None
        self._protocol = None
        self._hcard_generation = None
        self._hcard_reader = None

    @property
    def kind(self):
        """"contactless" or "contact" (see reader_kind): a hint for the screens."""
        return reader_kind(self.reader, self.atr)

    # -- life -----------------------------------------------------------------
    def start(self):
        if self.running:
            return
        self.running = True
        self.lost = None
        self.stuck = []
        self._run += 1
        self._stop = threading.Event()
        self._jobs = queue.Queue()
        self._threads = [
            threading.Thread(target=self._monitor, args=(self._run, self._stop),
                             name="pcsc-monitor", daemon=True),
            threading.Thread(target=self._worker, args=(self._run, self._stop, self._jobs),
                             name="pcsc-io", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self):
        """End both threads (waiting at most JOIN_S for each) and power the card off.

        Exchanges still due are answered reader_error. A thread stuck inside pcscd
        (a card that never answers) is left behind as a daemon thread and named in
        self.stuck.
        """
        if not self.running:
            return
        self.running = False
        self._stop.set()
        with self._lock:
            contexts = (self._monitor_ctx, self._io_ctx)
        for ctx in contexts:
            if ctx is not None:
                try:
                    self.scard.SCardCancel(ctx)
                except Exception as exc:  # already released: the wait ends by itself
                    log.debug("card reader: cancel: %s", exc)
        self._jobs.put(None)
        for thread in self._threads:
            thread.join(JOIN_S)
            if thread.is_alive():
                self.stuck.append(thread.name)
                log.warning("card reader: %s did not stop within %.0f s", thread.name, JOIN_S)
        self._threads = []
        for job in list(self._pending):
            job.abandon()
            if job.power_off and not self.stuck:
                result = {"ok": True}       # the worker powered the card off leaving
            else:
                result = _fail("reader_error",
                               "the card reader was stopped before the card answered")
            self.reactor.post(self._finish, job, result)
        with self._lock:
            self._present = False
        self._card = None
        self.atr = None

    # -- requests from the loop ---------------------------------------------
    def exchange(self, apdu, callback, timeout_ms=None):
        """Send one command APDU to the card; callback(result) later, on the loop.

        timeout_ms (exchange_timeout_ms unless given) counts from this call, so it
        covers the time spent behind earlier exchanges too.
        """
        apdu = bytes(apdu)
        if len(apdu) < 4:
            raise ValueError("an APDU has at least CLA INS P1 P2, got %s" % apdu.hex())
        job = _Job(apdu, callback, self._card)
        self._pending.add(job)
        if not self.running:
            self.reactor.post(self._finish, job, _fail(
                "reader_error", "the card reader is not started"))
        elif self.lost is not None:
            self.reactor.post(self._finish, job, _fail("reader_error", self.lost))
        elif self._card is None:
            self.reactor.post(self._finish, job, _fail(
                "card_removed", "there is no card in the reader"))
        else:
            ms = self.exchange_timeout_ms if timeout_ms is None else timeout_ms
            job.timer = self.reactor.call_later(ms, self._expire, job, ms)
            self._jobs.put(job)

    def power_off(self, callback=None):
        """Power the card down once the exchanges already asked for are done.

        The end of every card session (EMV: before asking for the card to be taken
        out). A later exchange with the same card powers it up again (a cold reset).
        callback({"ok": True}), if given, comes when it is done.
        """
        job = _Job(b"", callback, self._card, power_off=True)
        if self.running:
            self._pending.add(job)
            self._jobs.put(job)
        elif callback is not None:
            self.reactor.post(callback, {"ok": True})

    def _expire(self, job, ms):
        if job.finished:
            return
        job.abandon()
        self._finish(job, _fail("timeout", "the card did not answer within %.1f s" % (ms / 1000.0)))

    def _finish(self, job, result):
        if job.finished:
            return          # answered already: a late reply after a timeout, or stop()
        job.finished = True
        self._pending.discard(job)
        if job.timer is not None:
            job.timer.cancel()
        if not job.power_off:
            if result.get("ok"):
                self.exchanges += 1
            else:
                self.failures += 1
        if job.callback is not None:
            job.callback(result)

    # -- what the loop hears ------------------------------------------------
    def _post(self, callback, *args):
        self.reactor.post(callback, *args)

    def _post_event(self, callback, *args):
        # Tagged with the thread's run: a thread from before a stop() and start()
        # still finishing must not speak for the new one.
        self.reactor.post(self._deliver, self._local.run, callback, args)

    def _deliver(self, run, callback, args):
        if self.running and run == self._run:
            callback(*args)

    def _ready(self, name):
        self.reader = name
        self.lost = None
        log.info("card reader: using %r", name)
        self.on_event("reader_ready", name)

    def _inserted(self, generation, atr):
        self._card = generation
        self.atr = atr
        self.on_event("inserted", atr)

    def _removed(self, generation):
        if self._card != generation:
            return
        self._card = None
        self.atr = None
        self.on_event("removed", None)

    def _lost(self, message):
        self.lost = message
        log.warning("%s", message)
        self.on_event("reader_lost", message)
        if self.on_dead is not None:
            self.on_dead(message)

    # -- the monitor thread ---------------------------------------------------
    def _monitor(self, run, stop):
        self._local.run, self._local.stop = run, stop
        said = [None]       # the last loss reported: each is said once, not per retry
        try:
            while not self._local.stop.is_set():
                hr, ctx = self.scard.SCardEstablishContext(self.scard.SCARD_SCOPE_USER)
                if _code(hr) != 0:
                    self._say_lost(said, explain(_code(hr), self.scard))
                    self._local.stop.wait(self.retry_s)
                    continue
                with self._lock:
                    self._monitor_ctx = ctx
                try:
                    if not self._local.stop.is_set():
                        self._watch(ctx, said)
                finally:
                    with self._lock:
                        self._monitor_ctx = None
                    self._card_gone()
                    self.scard.SCardReleaseContext(ctx)
                self._local.stop.wait(self.retry_s)
        except Exception as exc:  # a bug here must still be seen on the terminal
            log.exception("card reader monitor failed")
            self._card_gone()
            self._post_event(self._lost, "card reader: the driver failed (%s): restart "
                                         "the terminal and report it" % exc)

    def _say_lost(self, said, message):
        if said[0] != message:
            said[0] = message
            self._card_gone()
            self._post_event(self._lost, message)

    def _watch(self, ctx, said):
        """Find the reader, then follow its card until the reader or pcscd goes."""
        scard = self.scard
        while True:
            name, seen, code = self._find(ctx)
            if self._local.stop.is_set():
                return
            if code:
                self._say_lost(said, explain(code, scard))
                return
            if name is not None:
                break
            self._say_lost(said, no_reader_message(self.match, seen))
            # Sleep until pcscd's reader list changes (or wait_ms passes).
            hr, _ = scard.SCardGetStatusChange(ctx, self.wait_ms,
                                               [(PNP_NOTIFICATION, scard.SCARD_STATE_UNAWARE)])
            code = _code(hr)
            if code == scard.SCARD_E_CANCELLED:
                return
            if code not in (0, scard.SCARD_E_TIMEOUT, scard.SCARD_E_UNKNOWN_READER):
                self._say_lost(said, explain(code, scard))
                return
        said[0] = None
        with self._lock:
            self._found = name
        self._post_event(self._ready, name)

        state = scard.SCARD_STATE_UNAWARE
        known = None        # (event counter, atr) of the card in, if one is
        while not self._local.stop.is_set():
            hr, states = scard.SCardGetStatusChange(ctx, self.wait_ms, [(name, state)])
            code = _code(hr)
            if code == scard.SCARD_E_TIMEOUT:
                continue
            if code == scard.SCARD_E_CANCELLED:
                return
            if code != 0:
                self._say_lost(said, explain(code, scard, name))
                return
            event = states[0][1]
            if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                self._say_lost(said, explain(scard.SCARD_E_READER_UNAVAILABLE, scard, name))
                return
            # pcsc-lite counts insertions and removals in the top 16 bits: a card
            # swapped between two looks shows as present both times.
            counter = (event >> 16) & 0xFFFF
            if event & scard.SCARD_STATE_PRESENT:
                atr = bytes(states[0][2] or b"")
                if event & scard.SCARD_STATE_MUTE:
                    atr = b""
                if known is not None and known != (counter, atr):
                    self._card_gone()
                    known = None
                if known is None:
                    known = (counter, atr)
                    with self._lock:
                        self._generation += 1
                        self._present = True
                        generation = self._generation
                    self._post_event(self._inserted, generation, atr)
            elif event & scard.SCARD_STATE_EMPTY:
                known = None
                self._card_gone()
            state = event & ~scard.SCARD_STATE_CHANGED

    def _find(self, ctx):
        """(name or None, names pcscd lists, error code or 0)."""
        scard = self.scard
        hr, names = scard.SCardListReaders(ctx, [])
        code = _code(hr)
        if code == scard.SCARD_E_NO_READERS_AVAILABLE:
            return None, [], 0
        if code != 0:
            return None, [], code
        names = list(names or [])
        for name in names:
            if self._matches(name):
                return name, names, 0
        return None, names, 0

    def _matches(self, name):
        if callable(self.match):
            return bool(self.match(name))
        return str(self.match).lower() in name.lower()

    def _card_gone(self):
        with self._lock:
            if not self._present:
                return
            self._present = False
            generation = self._generation
        self._post_event(self._removed, generation)

    # -- the worker thread ----------------------------------------------------
    def _worker(self, run, stop, jobs):
        self._local.run, self._local.stop = run, stop
        try:
            while True:
                job = jobs.get()
                if job is None or self._local.stop.is_set():
                    break
                if job.power_off:
                    self._disconnect(self.scard.SCARD_UNPOWER_CARD)
                    job.settle()
                    self._post(self._finish, job, {"ok": True})
                    continue
                if not job.claim():
                    continue        # timed out while it queued: never sent
                try:
                    result = {"ok": True, "rapdu": self._perform(job)}
                except _Failed as exc:
                    result = _fail(exc.reason, exc.detail)
                if not job.settle():
                    # Its requester gave up (timeout): the card is in an unknown
                    # state, so the next exchange starts from a fresh power-up.
                    self._disconnect(self.scard.SCARD_UNPOWER_CARD)
                self._post(self._finish, job, result)
        except Exception as exc:
            log.exception("card reader worker failed")
            self._post_event(self._lost, "card reader: the driver failed (%s): restart "
                                         "the terminal and report it" % exc)
        finally:
            self._disconnect(self.scard.SCARD_UNPOWER_CARD)
            if self._io_ctx is not None:
                self.scard.SCardReleaseContext(self._io_ctx)
                self._io_ctx = None

    def _perform(self, job):
        if not self._same_card(job.generation):
            raise _Failed("card_removed", "the card was taken out")
        if self._hcard is not None and self._hcard_generation != job.generation:
            self._disconnect(self.scard.SCARD_LEAVE_CARD)
        if self._hcard is None:
            self._connect(job.generation)
            if not self._same_card(job.generation):
                # Swapped while connecting: this handle is the next card's.
                self._disconnect(self.scard.SCARD_LEAVE_CARD)
                raise _Failed("card_removed", "the card was taken out")
        return self._transmit_whole(job.apdu)

    def _same_card(self, generation):
        with self._lock:
            return self._present and self._generation == generation

    def _connect(self, generation):
        scard = self.scard
        with self._lock:
            reader = self._found
        for _ in range(2):
            fresh = self._io_ctx is None
            if fresh:
                hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
                if _code(hr) != 0:
                    raise _Failed("reader_error", explain(_code(hr), scard))
                self._io_ctx = ctx
            # Exclusive: nothing else may slip an APDU into the middle of a payment.
            hr, hcard, protocol = scard.SCardConnect(
                self._io_ctx, reader, scard.SCARD_SHARE_EXCLUSIVE,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
            code = _code(hr)
            if code == 0:
                self._hcard, self._protocol = hcard, protocol
                self._hcard_generation, self._hcard_reader = generation, reader
                return
            if self._check_context(code) and not fresh:
                continue    # a context from before pcscd restarted: once more, anew
            raise self._failure(code, reader, generation)

    def _transmit_whole(self, apdu):
        """Send apdu; follow 61xx with GET RESPONSE and 6Cxx with a resend (T=0)."""
        scard = self.scard
        command = apdu
        data = bytearray()
        resent = False
        for _ in range(MAX_ROUNDS):
            hr, response = scard.SCardTransmit(self._hcard, self._protocol, list(command))
            code = _code(hr)
            if code != 0:
                generation = self._hcard_generation
                self._disconnect(scard.SCARD_LEAVE_CARD)
                self._check_context(code)
                raise self._failure(code, self._hcard_reader, generation)
            response = bytes(response)
            if len(response) < 2:
                raise _Failed("reader_error", "the card's answer %r has no status word"
                              % response.hex())
            sw1, sw2 = response[-2], response[-1]
            if sw1 == 0x61:
                data += response[:-2]
                command = get_response(apdu[0], sw2)
                resent = False
                continue
            if sw1 == 0x6C and not resent:
                again = with_le(command, sw2)
                if again is not None:
                    command = again
                    resent = True
                    continue
            return bytes(data) + response
        raise _Failed("reader_error", "the card kept asking for GET RESPONSE (%d rounds): "
                                      "it is faulty or not a payment card" % MAX_ROUNDS)

    def _failure(self, code, reader, generation):
        scard = self.scard
        reason = _reason(code, scard)
        if reason == "reader_error" and code in (
                scard.SCARD_E_NOT_TRANSACTED, scard.SCARD_W_UNRESPONSIVE_CARD,
                scard.SCARD_W_UNPOWERED_CARD, scard.SCARD_W_RESET_CARD) \
                and self._left(reader, generation):
            return _Failed("card_removed", "the card was taken out during the exchange")
        return _Failed(reason, explain(code, scard, reader))

    def _left(self, reader, generation):
        """After a failed transmit: was it because the card is being pulled out?

        The reader cannot tell at once; pcscd sees the slot empty at its next look
        (it looks every 400 ms), so wait for that, at most REMOVAL_GRACE_MS.
        """
        scard = self.scard
        if self._io_ctx is None or not reader:
            return not self._same_card(generation)
        deadline = time.monotonic() + REMOVAL_GRACE_MS / 1000.0
        state = scard.SCARD_STATE_UNAWARE
        while self._same_card(generation):
            left = int((deadline - time.monotonic()) * 1000)
            if left < 0:
                return False
            hr, states = scard.SCardGetStatusChange(self._io_ctx, left, [(reader, state)])
            if _code(hr) != 0:
                return _code(hr) != scard.SCARD_E_TIMEOUT and not self._same_card(generation)
            state = states[0][1] & ~scard.SCARD_STATE_CHANGED
            if not state & scard.SCARD_STATE_PRESENT:
                return True
        return True

    def _check_context(self, code):
        """True when pcscd restarted or went: the context is dropped, the next call
        makes another."""
        scard = self.scard
        if code not in (scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED,
                        scard.SCARD_E_INVALID_HANDLE, scard.SCARD_F_COMM_ERROR):
            return False
        self._hcard = None
        if self._io_ctx is not None:
            scard.SCardReleaseContext(self._io_ctx)
            self._io_ctx = None
        return True

    def _disconnect(self, disposition):
        if self._hcard is None:
            return
        hcard, self._hcard = self._hcard, None
        try:
            self.scard.SCardDisconnect(hcard, disposition)
        except Exception as exc:  # a card already gone has nothing to power down
            log.debug("card reader: disconnect: %s", exc)

    # -- health ---------------------------------------------------------------
    def selftest(self):
        """(ok, detail)."""
        if self.stuck:
            return False, ("card reader: %s did not stop: pcscd or the reader hangs; "
                           "restart pcscd (systemctl restart pcscd)" % ", ".join(self.stuck))
        if not self.running:
            return False, "card reader not started"
        if self.lost is not None:
            return False, self.lost
        if self.reader is None:
            return False, "card reader: still looking for a reader matching %r" % (self.match,)
        if self._card is None:
            card = "no card"
        elif self.atr:
            card = "card in (%s, ATR %s)" % (self.kind, self.atr.hex(" ").upper())
        else:
            card = "a card that does not answer (no ATR)"
        return True, "card reader %r ok: %s; %d exchanges, %d failed" % (
            self.reader, card, self.exchanges, self.failures)


def _fail(reason, detail):
    return {"ok": False, "reason": reason, "detail": detail}


def _reason(code, scard):
    if code in (scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD):
        return "card_removed"
    if code == scard.SCARD_E_TIMEOUT:
        return "timeout"
    return "reader_error"


def no_reader_message(match, seen):
    what = "sees no reader" if not seen else "sees only " + ", ".join(repr(s) for s in seen)
    return ("card reader: no reader matching %r (pcscd %s): check the reader's USB cable "
            "and the reader name in the board profile" % (match, what))


def explain(code, scard, reader=None):
    """A PC/SC error in words, saying what to check."""
    name = repr(reader) if reader else "the reader"
    if code == scard.SCARD_E_NO_SERVICE:
        return "card reader: pcscd is not running: start it (systemctl start pcscd)"
    if code == scard.SCARD_E_SERVICE_STOPPED:
        return "card reader: pcscd stopped: start it again (systemctl restart pcscd)"
    if code in (scard.SCARD_F_COMM_ERROR, scard.SCARD_E_INVALID_HANDLE):
        return ("card reader: lost contact with pcscd (restarted or crashed): check "
                "systemctl status pcscd")
    if code == getattr(scard, "SCARD_W_SECURITY_VIOLATION", None):
        return ("card reader: pcscd refused this program (polkit): allow its user in "
                "/etc/polkit-1/rules.d, or run pcscd with --disable-polkit")
    if code in (scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE):
        return ("card reader: %s was unplugged or stopped answering: check its USB "
                "cable" % name)
    if code in (scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD):
        return "the card was taken out"
    if code in (scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_W_UNPOWERED_CARD):
        return "the card does not answer: it may be upside down, dirty or damaged"
    if code == scard.SCARD_W_UNSUPPORTED_CARD:
        return "the card's ATR is not one the reader can use"
    if code == scard.SCARD_E_SHARING_VIOLATION:
        return ("card reader: another program holds the card in %s (close pcsc_scan, "
                "opensc-tool and the like)" % name)
    if code == scard.SCARD_W_RESET_CARD:
        return "card reader: another program reset the card"
    try:
        words = scard.SCardGetErrorMessage(code)
    except Exception:
        words = "unknown"
    return "card reader: PC/SC error 0x%08X (%s) on %s" % (code, words, name)
