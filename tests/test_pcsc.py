"""The PC/SC card reader driver through the real stack: pyscard, libpcsclite, pcscd and
vsmartcard's vpcd reader, with a small virtual card of this file's own on vpcd's
socket and the real firmware Reactor.

pcscd is the test process's own (tests/conftest.py starts one per pytest process on a
private socket and private vpcd ports, so parallel workers never share a reader); where
that could not start, the machine's: the session fixture uses a running one (leaving it
running) or starts its own and always stops it. Without pcscd, vpcd or pyscard the
tests are skipped with the reason; with HANDPOS_REQUIRE_PCSCD=1 (CI) they fail instead.
"""
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from drivers import pcsc
from drivers.pcsc import PcscReader, get_response, reader_kind, with_le
from firmware.core.reactor import Reactor

PRIVATE = bool(os.environ.get("HANDPOS_TEST_VPCD_PORT"))        # tests/conftest.py's pcscd
PCSCD_SOCKET = os.environ.get("PCSCLITE_CSOCK_NAME") or "/run/pcscd/pcscd.comm"
VPCD_CONF = "/etc/reader.conf.d/vpcd"
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
# vpcd's first slot: the private pcscd's, or the Debian reader.conf's
VPCD_HOST, VPCD_PORT = "127.0.0.1", int(os.environ.get("HANDPOS_TEST_VPCD_PORT") or 35963)
VPCD_READER = "Virtual PCD 00 00"

# T=0 only (no TD1), 8 historical bytes "HANDPOS1".
ATR = bytes.fromhex("3B68000048414E44504F5331")
FCI = bytes(i & 0xFF for i in range(300))      # one 61 00 and one 61 2C to fetch
RECORD = bytes(range(0xA0, 0xB0))              # 16 bytes: asked for with Le 00 -> 6C 10
CHALLENGE = bytes(range(1, 9))


def _unavailable(reason):
    if os.environ.get("HANDPOS_REQUIRE_PCSCD") == "1":
        pytest.fail(reason + " (HANDPOS_REQUIRE_PCSCD=1: CI needs these tests to run)")
    pytest.skip(reason)


# -- a card on vpcd's socket ------------------------------------------------------
class MiniCard:
    """A virtual card speaking the vpcd protocol: a 2-byte big-endian length, then
    either a 1-byte control (00 off, 01 on, 02 reset, 04 ATR please) or an APDU.

    00 84 00 00 08          8 bytes of challenge, 90 00
    00 A4 ...               61 00, then FCI through GET RESPONSE (61 2C, 90 00)
    00 B0 00 00 Le          6C 10 unless Le is 10, then the 16-byte record, 90 00
    00 EE 00 00             61 01 for ever (GET RESPONSE too)
    00 5A n 00              answers 90 00 after n tenths of a second
    """

    def __init__(self, port=VPCD_PORT):
        self.port = port
        self.log = []            # every message from vpcd: ints for controls, bytes APDUs
        self.talking = threading.Event()
        self._sock = None
        self._thread = None
        self._pending = b""
        self._endless = False

    def insert(self, timeout=5.0):
        self.talking.clear()
        self._sock = socket.create_connection((VPCD_HOST, self.port), timeout=timeout)
        self._sock.settimeout(None)
        self._thread = threading.Thread(target=self._serve, args=(self._sock,),
                                        name="minicard", daemon=True)
        self._thread.start()
        if not self.talking.wait(timeout):
            self.remove()
            pytest.fail("vpcd on port %d did not talk to the test card within %.0f s: is "
                        "another virtual card connected to it (tools/cards/vcard.py)?"
                        % (self.port, timeout))

    def remove(self):
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)   # ends the serving thread's recv
        except OSError:
            pass
        self._thread.join(5)
        sock.close()

    def _serve(self, sock):
        buf = b""
        while True:
            try:
                chunk = sock.recv(4096)
                # vpcd writes the length and the message separately; an ACK at once
                # saves its second write waiting out our delayed ACK (40 ms a message).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 2:
                (size,) = struct.unpack(">H", buf[:2])
                if len(buf) < 2 + size:
                    break
                message, buf = buf[2:2 + size], buf[2 + size:]
                self.talking.set()
                answer = self._answer(message)
                if answer is not None:
                    try:
                        sock.sendall(struct.pack(">H", len(answer)) + answer)
                    except OSError:
                        return

    def _answer(self, message):
        if len(message) == 1:
            self.log.append(message[0])
            return ATR if message[0] == 0x04 else None
        self.log.append(bytes(message))
        ins, p1 = message[1], message[2]
        le = message[4] if len(message) == 5 else None
        if ins == 0x84:
            return CHALLENGE + b"\x90\x00"
        if ins == 0xA4:
            self._pending, self._endless = FCI, False
            return b"\x61\x00"
        if ins == 0xEE:
            self._endless = True
            return b"\x61\x01"
        if ins == 0xC0:
            if self._endless:
                return b"\xAA\x61\x01"
            size = le or 256
            part, self._pending = self._pending[:size], self._pending[size:]
            if self._pending:
                return part + bytes([0x61, min(len(self._pending), 256) & 0xFF])
            return part + b"\x90\x00"
        if ins == 0xB0:
            if le != len(RECORD):
                return bytes([0x6C, len(RECORD)])
            return RECORD + b"\x90\x00"
        if ins == 0x5A:
            time.sleep(p1 / 10.0)
            return b"\x90\x00"
        return b"\x6D\x00"

    def apdus(self):
        return [m for m in self.log if isinstance(m, bytes)]


# -- pcscd ----------------------------------------------------------------------
def _pcscd_answers():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.connect(PCSCD_SOCKET)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _start_pcscd(binary, log_path):
    cmd = [binary, "--foreground", "--auto-exit"]
    if os.geteuid() != 0:
        # pcscd needs root for /run/pcscd; a CI user with passwordless sudo has it.
        sudo = shutil.which("sudo")
        if sudo is None or subprocess.run([sudo, "-n", "true"], capture_output=True).returncode:
            _unavailable("pcscd is not running and this user cannot start it (it needs root "
                         "for /run/pcscd): start it first (sudo systemctl start pcscd)")
        cmd = [sudo, "-n"] + cmd
    log = open(log_path, "wb")
    # Its own session: a sudo in front relays our SIGTERM only when it comes from
    # outside pcscd's process group.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None and not _pcscd_answers():
        time.sleep(0.05)
    if proc.poll() is not None or not _pcscd_answers():
        _stop_pcscd(proc)
        with open(log_path, "rb") as f:
            tail = f.read()[-2000:].decode("utf-8", "replace")
        pytest.fail("pcscd did not start:\n" + tail)
    return proc


def _stop_pcscd(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _list_readers(scard, ctx, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        hr, readers = scard.SCardListReaders(ctx, [])
        readers = list(readers or []) if hr == 0 else []
        if any(r.startswith("Virtual PCD") for r in readers) or time.monotonic() > deadline:
            return readers
        time.sleep(0.1)


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory):
    """A pcscd with vpcd's readers: the running one, or one started (and stopped) here."""
    try:
        from smartcard import scard
    except ImportError as exc:
        _unavailable("pyscard is not installed (%s): pip install pyscard (needs swig and "
                     "libpcsclite-dev)" % exc)
    binary = shutil.which("pcscd") or ("/usr/sbin/pcscd" if os.path.exists("/usr/sbin/pcscd")
                                       else None)
    if binary is None:
        _unavailable("pcscd is not installed (Debian: apt-get install pcscd)")
    if not (os.path.exists(VPCD_DRIVER) and (PRIVATE or os.path.exists(VPCD_CONF))):
        _unavailable("vsmartcard's vpcd reader driver is not installed (Debian: apt-get "
                     "install vsmartcard-vpcd)")
    proc = None
    if not _pcscd_answers():
        proc = _start_pcscd(binary, str(tmp_path_factory.mktemp("pcscd") / "pcscd.log"))
    try:
        # Held for the session so an --auto-exit pcscd cannot leave between tests.
        hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hr != 0:
            pytest.fail("pcscd refused a context: %s" % scard.SCardGetErrorMessage(hr))
        try:
            readers = _list_readers(scard, ctx)
            if not any(r.startswith("Virtual PCD") for r in readers):
                _unavailable("the running pcscd has no Virtual PCD reader (it lists %r): "
                             "restart it after installing vsmartcard-vpcd (systemctl "
                             "restart pcscd)" % readers)
            yield {"readers": readers, "started": proc is not None}
        finally:
            scard.SCardReleaseContext(ctx)
    finally:
        if proc is not None:
            _stop_pcscd(proc)


# -- the loop -------------------------------------------------------------------
@pytest.fixture
def reactor():
    r = Reactor()
    yield r
    r.close()


def run_until(reactor, done, timeout_s=5.0):
    """Run the real loop in bounded steps until done() holds or time is up."""
    deadline = time.monotonic() + timeout_s
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        reactor.run_once(int(min(left * 1000, 50)) + 1)
    return True


class Rig:
    def __init__(self, reactor, match="Virtual PCD", **kw):
        self.reactor = reactor
        self.events = []
        self.dead = []
        self.loop_thread = threading.get_ident()
        self.reader = PcscReader(reactor, match, self._on_event, on_dead=self.dead.append, **kw)

    def _on_event(self, kind, arg):
        assert threading.get_ident() == self.loop_thread
        self.events.append((kind, arg))

    def kinds(self):
        return [k for k, _ in self.events]

    def wait_for(self, kind, timeout_s=5.0, count=1):
        ok = run_until(self.reactor, lambda: self.kinds().count(kind) >= count, timeout_s)
        assert ok, "no %r within %.0f s; events so far: %r" % (kind, timeout_s, self.events)

    def exchange(self, apdu, timeout_s=5.0, **kw):
        results = []

        def done(result):
            assert threading.get_ident() == self.loop_thread
            results.append(result)

        self.reader.exchange(bytes.fromhex(apdu) if isinstance(apdu, str) else apdu, done, **kw)
        assert results == []          # never from inside exchange()
        assert run_until(self.reactor, lambda: results, timeout_s), "no answer to %s" % apdu
        assert len(results) == 1
        return results[0]


@pytest.fixture
def rig(pcscd, reactor):
    r = Rig(reactor)
    yield r
    r.reader.stop()


def _reader_state(timeout_s, want_present):
    """Wait until pcscd sees the first vpcd slot empty (or holding a card)."""
    from smartcard import scard
    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hr == 0
    try:
        deadline = time.monotonic() + timeout_s
        state = scard.SCARD_STATE_UNAWARE
        while True:
            left = int((deadline - time.monotonic()) * 1000)
            hr, states = scard.SCardGetStatusChange(ctx, max(left, 0), [(VPCD_READER, state)])
            if hr != 0:
                return False
            state = states[0][1] & ~scard.SCARD_STATE_CHANGED
            if bool(state & scard.SCARD_STATE_PRESENT) == want_present:
                return True
    finally:
        scard.SCardReleaseContext(ctx)


@pytest.fixture
def card(pcscd):
    # vpcd notices a card has gone only at its next look (every 400 ms): a card put in
    # sooner would take the old one's place unseen, so each test starts from empty.
    assert _reader_state(3, want_present=False), "%s still holds a card" % VPCD_READER
    c = MiniCard()
    yield c
    c.remove()
    _reader_state(3, want_present=False)


@pytest.fixture
def inserted(rig, card):
    rig.reader.start()
    rig.wait_for("reader_ready")
    card.insert()
    rig.wait_for("inserted")
    return rig


# -- the tests ------------------------------------------------------------------
def test_finds_the_reader_by_name_and_reports_the_card_with_its_atr(rig, card):
    rig.reader.start()
    rig.wait_for("reader_ready")
    assert rig.events == [("reader_ready", "Virtual PCD 00 00")]
    assert rig.reader.reader == "Virtual PCD 00 00"
    assert rig.reader.kind == "contact"
    ok, detail = rig.reader.selftest()
    assert ok and "no card" in detail

    card.insert()
    rig.wait_for("inserted")
    assert rig.events[-1] == ("inserted", ATR)
    ok, detail = rig.reader.selftest()
    assert ok and "3B 68 00 00" in detail, detail


def test_an_apdu_goes_to_the_card_and_its_answer_comes_back_on_the_loop(inserted, card):
    result = inserted.exchange("0084000008")
    assert result == {"ok": True, "rapdu": CHALLENGE + b"\x90\x00"}
    assert card.apdus() == [bytes.fromhex("0084000008")]
    assert inserted.reader.exchanges == 1


def test_61xx_is_followed_by_get_response_and_the_pieces_joined(inserted, card):
    select_ppse = bytes.fromhex("00A404000E325041592E5359532E444446303100")
    result = inserted.exchange(select_ppse)
    assert result == {"ok": True, "rapdu": FCI + b"\x90\x00"}
    assert card.apdus() == [select_ppse, bytes.fromhex("00C0000000"), bytes.fromhex("00C000002C")]


def test_6cxx_has_the_command_sent_again_with_the_right_le(inserted, card):
    result = inserted.exchange("00B0000000")
    assert result == {"ok": True, "rapdu": RECORD + b"\x90\x00"}
    assert card.apdus() == [bytes.fromhex("00B0000000"), bytes.fromhex("00B0000010")]


def test_a_card_that_never_stops_saying_61xx_is_a_bounded_reader_error(inserted, card,
                                                                        monkeypatch):
    monkeypatch.setattr(pcsc, "MAX_ROUNDS", 8)      # the real 64 only takes longer
    result = inserted.exchange("00EE0000")
    assert result["ok"] is False and result["reason"] == "reader_error"
    assert "GET RESPONSE (8 rounds)" in result["detail"]
    assert card.apdus() == [bytes.fromhex("00EE0000")] + [bytes.fromhex("00C0000001")] * 7


def test_taking_the_card_out_is_reported_and_later_exchanges_say_card_removed(inserted, card):
    card.remove()
    inserted.wait_for("removed")
    assert inserted.events[-1] == ("removed", None)
    result = inserted.exchange("0084000008")
    assert result["ok"] is False and result["reason"] == "card_removed", result
    assert card.apdus() == []

    # Another card (a new connection to vpcd) is a new insertion.
    card.insert()
    inserted.wait_for("inserted", count=2)
    assert inserted.exchange("0084000008")["ok"] is True


def test_an_exchange_racing_the_removal_never_succeeds(inserted, card):
    assert inserted.exchange("0084000008")["ok"] is True     # connected and powered
    card.remove()                                            # the loop has not heard yet
    result = inserted.exchange("0084000008")
    assert result["ok"] is False and result["reason"] == "card_removed", result
    inserted.wait_for("removed")


def test_an_exchange_the_card_is_too_slow_for_times_out_and_the_next_one_works(inserted, card):
    result = inserted.exchange("005A0800", timeout_ms=300)   # the card takes 0.8 s
    assert result["ok"] is False and result["reason"] == "timeout", result
    # The worker finishes the slow one, powers the card off, then powers it up again.
    assert inserted.exchange("0084000008")["ok"] is True
    assert 0x00 in card.log[card.log.index(bytes.fromhex("005A0800")):]
    assert inserted.reader.failures == 1


def test_power_off_then_exchange_powers_the_card_up_again(inserted, card):
    apdu = bytes.fromhex("0084000008")
    assert inserted.exchange(apdu)["ok"] is True
    done = []
    inserted.reader.power_off(done.append)
    assert run_until(inserted.reactor, lambda: done) and done == [{"ok": True}]
    # vpcd's "power off" reaches the card's thread just after pcscd returns.
    assert run_until(inserted.reactor, lambda: 0x00 in card.log[card.log.index(apdu):], 1)
    assert inserted.exchange(apdu)["ok"] is True
    again = card.log[card.log.index(apdu) + 1:]
    assert again.index(0x00) < again.index(0x01) < again.index(apdu)


def test_a_name_that_matches_no_reader_is_a_clear_error(pcscd, reactor):
    r = Rig(reactor, match="Nonexistent Reader 9000")
    r.reader.start()
    try:
        r.wait_for("reader_lost")
        message = r.events[-1][1]
        assert "no reader matching 'Nonexistent Reader 9000'" in message
        assert "'Virtual PCD 00 00'" in message and "USB cable" in message
        assert r.dead == [message]
        assert r.reader.selftest() == (False, message)
        assert r.exchange("0084000008") == {"ok": False, "reason": "reader_error",
                                            "detail": message}
        # Said once, not once per look.
        run_until(reactor, lambda: False, 0.3)
        assert r.kinds() == ["reader_lost"]
    finally:
        r.reader.stop()


def test_stop_is_prompt_when_idle(pcscd, reactor):
    r = Rig(reactor)
    r.reader.start()
    r.wait_for("reader_ready")
    time.sleep(0.1)           # let the monitor settle into its (2 s) status wait
    t0 = time.monotonic()
    r.reader.stop()
    assert time.monotonic() - t0 < 1.0          # SCardCancel, not the wait's timeout
    assert r.reader.stuck == []
    assert not any(t.name.startswith("pcsc-") for t in threading.enumerate())
    assert r.reader.selftest() == (False, "card reader not started")


def test_stop_during_an_exchange_is_bounded_and_answers_everything_once(inserted, card):
    slow, queued = [], []
    inserted.reader.exchange(bytes.fromhex("005A0600"), slow.append)     # a 0.6 s card
    inserted.reader.exchange(bytes.fromhex("0084000008"), queued.append)
    run_until(inserted.reactor, lambda: bytes.fromhex("005A0600") in card.log, 2)
    t0 = time.monotonic()
    inserted.reader.stop()
    assert time.monotonic() - t0 < pcsc.JOIN_S
    assert inserted.reader.stuck == []
    assert run_until(inserted.reactor, lambda: slow and queued, 1)
    run_until(inserted.reactor, lambda: False, 0.1)
    assert slow == [{"ok": True, "rapdu": b"\x90\x00"}]          # the card did answer
    assert len(queued) == 1 and queued[0]["reason"] == "reader_error"
    assert "stopped" in queued[0]["detail"]
    assert bytes.fromhex("0084000008") not in card.log          # never sent


class _NoPcscd:
    """smartcard.scard as it behaves when pcscd is not running."""

    def __init__(self, real):
        self._real = real
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._real, name)

    def SCardEstablishContext(self, scope):
        self.calls += 1
        return self._real.SCARD_E_NO_SERVICE, 0


def test_no_pcscd_is_reported_with_what_to_do(reactor):
    try:
        from smartcard import scard
    except ImportError:
        _unavailable("pyscard is not installed")
    fake = _NoPcscd(scard)
    r = Rig(reactor, scard=fake, retry_ms=50)
    r.reader.start()
    try:
        r.wait_for("reader_lost")
        assert r.events == [("reader_lost", "card reader: pcscd is not running: start it "
                                            "(systemctl start pcscd)")]
        run_until(reactor, lambda: fake.calls >= 3, 2)     # keeps looking, says it once
        assert r.kinds() == ["reader_lost"]
    finally:
        r.reader.stop()
    assert r.reader.stuck == []


# -- the pieces that need no pcscd --------------------------------------------------
def test_with_le_rebuilds_each_short_case():
    assert with_le(bytes.fromhex("00B00000"), 0x10) == bytes.fromhex("00B0000010")
    assert with_le(bytes.fromhex("00B0000000"), 0x10) == bytes.fromhex("00B0000010")
    assert with_le(bytes.fromhex("00DC010C02AABB"), 0x05) == bytes.fromhex("00DC010C02AABB05")
    assert with_le(bytes.fromhex("00A4040002AABB00"), 0x20) == bytes.fromhex("00A4040002AABB20")
    assert with_le(bytes.fromhex("00B000000000FF"), 0x10) is None     # extended length
    assert get_response(0x80, 0x2C) == bytes.fromhex("00C000002C")
    assert get_response(0x01, 0x00) == bytes.fromhex("01C0000000")    # logical channel 1


def test_reader_kind_hints_contactless_from_the_name_or_the_atr():
    assert reader_kind("ACS ACR1252 1S CL Reader PICC 00 00") == "contactless"
    assert reader_kind("Identiv uTrust 3700 F CL Reader 01 00") == "contactless"
    assert reader_kind("Gemalto PC Twin Reader 00 00") == "contact"
    assert reader_kind("Generic EMV Smartcard Reader 00 00", ATR) == "contact"
    pseudo = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
    assert reader_kind("Generic Dual Interface 00 00", pseudo) == "contactless"
