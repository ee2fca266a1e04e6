"""Nothing in clear at rest (issue 11 item 10; DESIGN.md "Keys", "Card security").

One end-to-end run of payments through the real terminal in this process (the sim
board's drivers on their stand-in transports, TLS to the host simulator through the
fault proxy, chip cards answering the chip reader's interface directly): chip with
online PIN, swipe with PIN (once with the host slow, to copy the folder mid-request),
swipe with signature, a refund, a void, offline approvals with the network cut (swipe
with PIN, chip with offline PIN), a supervisor's queue export, the upload, receipts on
the pty printer. While it runs the test collects what must never be at rest in clear:

  card data    every test PAN used (ASCII digits, grouped by four, packed BCD, base64),
               its track 2 (ASCII with '=', hex with 'D', BCD) and track 1
  PIN blocks   every encrypted PIN block the terminal sent (DE52, taken from its requests
               and seen again at the host), and the clear blocks (ISO-0 from PIN and PAN,
               the block the DUKPT object was handed, the card's offline-PIN block)
  DUKPT keys   every future key register the terminal held, read from its DukptTerminal
               before and after each PIN transaction (each key whole and as 8-byte halves,
               raw and as hex text), the initial key
  device keys  the data key (what the queue holds in memory and what keys/data.key holds),
               the MAC keys derived from it, the test export keys

and scans every byte the terminal wrote: the whole data folder as raw bytes (each
database with its -wal and -shm, free pages included, the key folder, the export file),
the printer's wire bytes and the receipts, the console, log records, stdout and stderr.
Views of the folder: a copy taken mid-run after a PIN payment, a copy taken while a PIN
request waited for the host, the folder as a power cut leaves it (never closed), and the
folder after a clean close. A hit names the view, file, offset and what was found.

Releases before the key root kept the DUKPT registers in clear in handpos.db (and its
WAL) and the data key in keys/data.key; both are now sealed under the device's key
hierarchy (docs/keys.md), and the checks below cover every file.
"""
import base64
import binascii
import contextlib
import io
import logging
import os
import shutil
import sqlite3

import pytest

from tests.conftest import ChipSlot, SimHarness

PIN = "1234"
SUPERVISOR_PIN = "2580"
OFFLINE_OK = {"entry_modes": ["chip", "tap", "swipe"]}

CARD, PINBLOCK, DUKPT, DEVICE_KEY = "card data", "PIN block", "DUKPT key", "device key"


# -- what must not be found -----------------------------------------------------------
class Needles:
    """Byte strings to look for, each with a group and a label saying what it is."""

    def __init__(self):
        self.items = {}                  # bytes -> (group, label); the first label wins

    def add(self, group, label, value):
        value = bytes(value)
        if len(value) >= 6 and value not in self.items:
            self.items[value] = (group, label)

    def text(self, group, label, text):
        """A text as ASCII and inside base64 (at each of the three alignments)."""
        self.add(group, label + " (ASCII)", text.encode())
        self._b64(group, label, text.encode())

    def secret(self, group, label, value, halves=True):
        """A key or block: raw, hex text (both cases), base64; keys also by 8-byte half."""
        value = bytes(value)
        if len(set(value)) <= 2:          # an erased register: zeros are everywhere
            return
        self.add(group, label + " (raw)", value)
        self.add(group, label + " (hex)", binascii.hexlify(value).upper())
        self.add(group, label + " (hex)", binascii.hexlify(value))
        self._b64(group, label, value)
        if halves and len(value) > 8:
            for i in range(0, len(value), 8):
                self.secret(group, "%s, bytes %d-%d" % (label, i, i + 7), value[i:i + 8], False)

    def _b64(self, group, label, value):
        for pad in range(3):
            enc = base64.b64encode(b"\0" * pad + value)
            # only the characters that depend on value alone
            start = (pad * 4 + 2) // 3
            end = len(enc) - ((len(value) + pad) % 3 and 4 or 0)
            if end - start >= 8:
                self.add(group, label + " (base64)", enc[start:end])

    def groups(self, *names):
        out = Needles()
        out.items = {k: v for k, v in self.items.items() if v[0] in names}
        return out


def add_pan(needles, pan):
    needles.text(CARD, "PAN %s" % pan, pan)
    needles.add(CARD, "PAN %s (grouped by four)" % pan,
                " ".join(pan[i:i + 4] for i in range(0, len(pan), 4)).encode())
    whole = len(pan) // 2
    needles.add(CARD, "PAN %s (packed BCD)" % pan, bytes.fromhex(pan[:2 * whole]))
    needles.add(CARD, "PAN %s track 2 (ASCII '=')" % pan, (pan + "=").encode())
    needles.add(CARD, "PAN %s track 2 (hex 'D')" % pan, (pan + "D").encode())
    needles.add(CARD, "PAN %s track 2 (hex 'd')" % pan, (pan + "d").encode())
    if len(pan) % 2:                    # the separator shares the PAN's last byte
        needles.add(CARD, "PAN %s track 2 (BCD 'D')" % pan, bytes.fromhex(pan + "D"))


def add_stripe(needles, name):
    from tools.cards.stripes import TEST_CARDS, card_tracks
    pan, holder, expiry, service = TEST_CARDS[name]
    add_pan(needles, pan)
    track1, track2 = card_tracks(name)
    # the data between the sentinels, and what follows the PAN (expiry, service code,
    # discretionary data): track data even where the PAN was cut away
    needles.text(CARD, "track 1 of %s" % name, track1.strip("%?"))
    needles.text(CARD, "track 2 of %s" % name, track2.strip(";?"))
    needles.text(CARD, "track 1 tail of %s" % name, "^" + expiry + service)
    needles.text(CARD, "track 2 tail of %s" % name, "=" + expiry + service)


def add_chip(needles, profile):
    from tools.cards.vcard import PROFILES, VirtualCard
    pan = PROFILES[profile]["pan"]
    add_pan(needles, pan)
    track2 = VirtualCard(profile).track2                # tag 57, BCD with 'D'
    needles.secret(CARD, "track 2 equivalent (tag 57) of %s" % pan, track2, halves=False)
    needles.add(CARD, "track 2 equivalent of %s (hex text)" % pan,
                binascii.hexlify(track2).upper().rstrip(b"F"))


# -- looking ---------------------------------------------------------------------------
def scan_bytes(data, needles):
    """[(offset, group, label)] of every needle in data; a hit inside a longer hit of
    the same group (a key's half inside the key) is left out."""
    hits = []
    for needle, (group, label) in needles.items.items():
        at = data.find(needle)
        while at >= 0:
            hits.append((at, at + len(needle), group, label))
            at = data.find(needle, at + 1)
    hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
    out = []
    for start, end, group, label in hits:
        if any(s <= start and end <= e and g == group for s, e, g, _ in out):
            continue
        out.append((start, end, group, label))
    return [(s, g, lbl) for s, e, g, lbl in out]


def scan_tree(root, needles):
    """{relative path: size} of every file under root, and [(path, offset, group, label)]."""
    files, hits = {}, []
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            with open(path, "rb") as f:
                data = f.read()
            files[rel] = len(data)
            hits.extend((rel,) + h for h in scan_bytes(data, needles))
    return files, hits


def scan_streams(streams, needles):
    hits = []
    for name, data in streams.items():
        hits.extend((name,) + h for h in scan_bytes(data, needles))
    return hits


# -- the run -----------------------------------------------------------------------------
def dukpt_keys(dk):
    """{key bytes: where it sat} of every live key register of a DUKPT terminal: from
    its registers in memory where it has them, and from state() (the interface both
    the TDES and the AES terminal offer)."""
    found = {}

    def take(n, raw):
        raw = bytes(raw)
        if len(raw) % 8 == 1:               # TDES: 16 key bytes and the register's LRC
            raw = raw[:-1]
        if raw and len(set(raw)) > 2:
            found.setdefault(raw, "future key register #%d" % n)
    for n, reg in enumerate(getattr(dk, "_regs", None) or (), 1):
        take(n, reg)
    for n, entry in enumerate(dk.state().get("registers") or (), 1):
        if entry:
            take(n, binascii.unhexlify(entry))
    return found


class Run:
    """What the run left behind and what it saw on the way."""

    def __init__(self, base):
        self.base = base
        self.data = str(base / "terminal")
        self.views = {}                     # name -> folder to scan
        self.needles = Needles()
        self.streams = {}                   # name -> bytes (console, logs, printer...)
        self.pin_blocks = []                # (ksn hex, encrypted block hex) sent
        self.host_blocks = []               # the same, as the host received them
        self.clear_blocks = []
        self.register_reads = 0
        self.keys_seen = {}
        self.receipts = []
        self.notes = []
        self.console = []
        self.data_key = b""
        self.text_lost = []

    def copy(self, name):
        dest = str(self.base / ("view-" + name))
        shutil.copytree(self.data, dest)
        self.views[name] = dest


class _Capture(logging.Handler):
    def __init__(self):
        logging.Handler.__init__(self, logging.DEBUG)
        self.lines = []

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.lines.append(repr(record.__dict__))


def _settle(h, flows, ms=15000):
    h.run(ms, until=lambda: h.flow() in flows)
    return h.flow()


def _drive(run, h, net):
    from board.compose import TEST_BDK, TEST_KSN
    from board.export import TEST_EXPORT_KEY, TEST_EXPORT_SIGNING_SEED
    from firmware.security import dukpt as dukpt_mod
    from firmware.security.pinblock import encode as iso0

    pay = h.term.payments
    dk = pay.dukpt
    assert dk is not None, "the terminal has no DUKPT key"

    def snap(when):
        keys = dukpt_keys(dk)
        assert keys, "no DUKPT register could be read %s: the test must learn the new " \
                     "DukptTerminal's registers" % when
        run.register_reads += 1
        for key, where in keys.items():
            run.keys_seen.setdefault(key, "%s (read %s)" % (where, when))

    # every clear PIN block (TDES: ISO-0) or PIN field (AES: ISO-4) the DUKPT terminal
    # is handed, copied before it is wiped: both schemes put it through transaction()
    transaction = dk.transaction

    def spy_transaction(clear=None, *a, **kw):
        if clear is not None:
            run.clear_blocks.append(bytes(clear))
        return transaction(clear, *a, **kw)
    dk.transaction = spy_transaction

    # every request as the terminal hands it to its host link (before the wire)
    link = pay.host
    request = link.request

    def spy_request(msg, *a, **kw):
        if "52" in msg:
            run.pin_blocks.append((msg.get("53"), msg["52"]))
        return request(msg, *a, **kw)
    link.request = spy_request

    # the printer's wire: every byte the ESC/POS driver sent
    wire = bytearray()
    feed = h.sim.vprinter.feed

    def spy_feed(data):
        wire.extend(data)
        return feed(data)
    h.sim.vprinter.feed = spy_feed

    chip = ChipSlot(h, t0=False)
    pay.chip_reader = chip

    def finish(customer_copy=False):
        if h.flow() == ("sale", "result"):
            h.press("ENTER" if customer_copy else "CANCEL")
        if customer_copy and h.flow() == ("sale", "copy"):
            h.press("ENTER")
        chip.remove()
        h.run(300)
        h.to_idle()

    def pin_at_prompt():
        h.press(*PIN)
        h.press("ENTER")

    snap("at start")

    # 1. chip, online PIN, approved; both copies printed
    add_chip(run.needles, "online_pin")
    h.press("1", "2", "5", "0", "ENTER", "1")
    h.wait_for("Insert, tap or swipe")
    chip.insert("online_pin")
    h.wait_for("Customer PIN")
    snap("before the chip PIN sale")
    pin_at_prompt()
    _settle(h, (("sale", "result"), ("sale", "copy")))
    chip_sale = pay.journal.last()
    assert chip_sale["state"] == "approved" and chip_sale["cvm"] == "pin", (chip_sale, h.text())
    snap("after the chip PIN sale")
    finish(customer_copy=True)
    run.copy("mid-run copy")                # a copy of the live folder after a PIN payment

    # 2. swipe with PIN, the host slow: the folder copied while the request waits
    add_stripe(run.needles, "visa_pin")
    net.set("delay", down_ms=1500)
    h.press("2", "0", "0", "0", "ENTER", "1")
    h.sim.swipe(card="visa_pin")
    h.run(2000, until=lambda: h.flow()[1] != "card")
    assert h.flow() == ("sale", "pin"), (h.flow(), h.text())
    snap("before the swipe PIN sale")
    pin_at_prompt()
    assert h.run(3000, until=lambda: h.flow() == ("sale", "authorising")), h.text()
    run.copy("power cut mid-request")      # what the card holds while the 0200 is out
    _settle(h, (("sale", "result"), ("sale", "copy")))
    net.set("pass")
    swipe_sale = pay.journal.last()
    assert swipe_sale["state"] == "approved" and swipe_sale["cvm"] == "pin", (swipe_sale, h.text())
    snap("after the swipe PIN sale")
    finish()

    # 3. a refund of part of it, on the same card
    h.press("MENU", "2", *SUPERVISOR_PIN)
    h.press("ENTER", "ENTER", "ENTER")
    h.press("7", "5", "0", "ENTER")
    h.wait_for("swipe")
    h.sim.swipe(card="visa_pin")
    h.run(2000, until=lambda: h.flow()[1] not in ("card",))
    if h.flow()[1] == "pin":
        snap("before the refund's PIN")
        pin_at_prompt()
    _settle(h, (("refund", "result"), ("refund", "copy")))
    refund = pay.journal.last()
    assert refund["kind"] == "refund" and refund["state"] == "approved", (refund, h.text())
    snap("after the refund")
    h.press("CANCEL")
    h.run(300)
    h.to_idle()

    # 4. swipe with signature, then voided
    add_stripe(run.needles, "mc_signature")
    signed = h.swipe_sale("700", card="mc_signature", pin=None)
    assert signed["state"] == "approved" and signed["cvm"] == "signature", signed
    h.to_idle()
    h.press("MENU", "3", *SUPERVISOR_PIN)
    h.press("ENTER", "ENTER", "ENTER")
    h.wait_for("VOIDED", 8000)
    assert pay.journal.get(signed["id"])["state"] == "voided"
    h.press("CANCEL")
    h.run(300)
    h.to_idle()

    # 5. the network cut: a swipe with PIN and a chip with offline PIN approved offline
    net.set("reset", existing=True, new=True)
    snap("before the offline swipe PIN sale")
    offline_swipe = h.swipe_sale("1800", card="visa_pin", pin=PIN)
    assert offline_swipe["state"] == "approved" and offline_swipe["offline"] == 1, \
        (offline_swipe, h.text())
    snap("after the offline swipe PIN sale")
    h.to_idle()
    add_chip(run.needles, "dda")
    h.press("3", "0", "0", "0", "ENTER", "1")
    h.wait_for("Insert, tap or swipe")
    chip.insert("dda")
    h.wait_for("Customer PIN")
    snap("before the offline-PIN chip sale")
    pin_at_prompt()
    _settle(h, (("sale", "result"), ("sale", "copy")))
    offline_chip = pay.journal.last()
    assert offline_chip["state"] == "approved" and offline_chip["offline"] == 1, \
        (offline_chip, h.text())
    snap("after the offline-PIN chip sale")
    finish()

    # 6. a supervisor exports the queue, then the network is back and it is uploaded
    queued = len(pay.queue.pending())
    assert queued >= 2, pay.queue.records()
    h.press("MENU", "9", "3", *SUPERVISOR_PIN)
    h.press("ENTER")
    if h.flow() == ("queue_export", "target"):   # the terminal that may import it
        h.press("2", "ENTER")
    if h.flow() == ("queue_export", "confirm"):
        h.press("ENTER")
    assert "Exported %d records" % queued in h.text(), h.text()
    h.press("ENTER", "CANCEL")
    h.run(300)
    h.to_idle()
    net.set("pass")
    assert h.upload_all(), pay.queue.records()
    h.run(500)
    snap("at the end")

    # the clear PIN blocks: ISO-0 of each PIN payment's PIN and PAN, and the EMV
    # plaintext block (format 2) an offline-PIN card is sent in its VERIFY
    from tools.cards.stripes import TEST_CARDS
    from tools.cards.vcard import PROFILES
    assert len(run.clear_blocks) >= 3, "the DUKPT terminal was handed no PIN block to encrypt"
    if isinstance(dk, dukpt_mod.DukptTerminal):
        for pan in (PROFILES["online_pin"]["pan"], TEST_CARDS["visa_pin"][0]):
            block = iso0(bytearray(PIN.encode()), pan)
            assert bytes(block) in run.clear_blocks
            run.clear_blocks.append(bytes(block))
    run.clear_blocks.append(bytes.fromhex("2%X%s" % (len(PIN), PIN)).ljust(8, b"\xff"))
    for block in set(run.clear_blocks):
        run.needles.secret(PINBLOCK, "clear PIN block %s" % block.hex().upper(), block, False)
    for ksn, block in run.pin_blocks + run.host_blocks:
        run.needles.secret(PINBLOCK, "encrypted PIN block %s (KSN %s)" % (block, ksn),
                           binascii.unhexlify(block), False)

    for key, where in run.keys_seen.items():
        run.needles.secret(DUKPT, "DUKPT key %s, %s" % (key.hex().upper()[:8] + "...", where), key)
    if isinstance(dk, dukpt_mod.DukptTerminal) and len(TEST_KSN) == dukpt_mod.KSN_BYTES:
        ipek = dukpt_mod.derive_ipek(TEST_BDK, TEST_KSN)
        run.needles.secret(DUKPT, "DUKPT initial key (IPEK)", ipek)

    key = pay.queue.key
    run.data_key = bytes(key)
    run.needles.secret(DEVICE_KEY, "device data key", key)
    run.needles.secret(DEVICE_KEY, "the queue's MAC key", pay.queue.mac_key)
    journal_mac = getattr(pay.journal, "key", None)          # its MAC key
    if isinstance(journal_mac, (bytes, bytearray)):
        run.needles.secret(DEVICE_KEY, "the journal's MAC key", journal_mac)
    run.needles.secret(DEVICE_KEY, "test export key", TEST_EXPORT_KEY)
    run.needles.secret(DEVICE_KEY, "test export signing seed", TEST_EXPORT_SIGNING_SEED)

    run.receipts = [r.text() for r in h.sim.vprinter.receipts]
    run.streams["printer wire"] = bytes(wire)
    for n, text in enumerate(run.receipts, 1):
        run.streams["receipt %d" % n] = text.encode()


@pytest.fixture(scope="module")
def at_rest(tmp_path_factory):
    from tools.host.faultproxy import FaultProxy
    from tools.host.hostsim import HostSim
    base = tmp_path_factory.mktemp("at_rest")
    run = Run(base)

    hostsim = HostSim(str(base / "host"), tls=True, slow_ms=60000, log=lambda *a: None)
    _, port = hostsim.start("127.0.0.1", 0)
    handle = hostsim.handle

    def host_handle(msg):
        if "52" in msg:
            run.host_blocks.append((msg.get("53"), msg["52"]))
        return handle(msg)
    hostsim.handle = host_handle
    net = FaultProxy(0, port)
    net.start()

    from drivers import display
    lost = []                           # screens that lost text (tests/conftest.py's rule)
    display.watch_text_loss(lost.append)
    capture = _Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    out, err = io.StringIO(), io.StringIO()
    h = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            h = SimHarness(base / "terminal", host=("127.0.0.1:%d" % net.port, hostsim.ca_file),
                           synced=True, offline=OFFLINE_OK)
            run.console = h.console
            h.first_supervisor()
            h.login()
            h.run(3000, until=lambda: h.term.link_state == "up")
            _drive(run, h, net)
            run.copy("power cut at the end")    # never closed: WAL and -shm as they are
            h.close()
            h = None
        run.views["after a clean close"] = run.data
    finally:
        if h is not None:
            h.close()
        root.removeHandler(capture)
        root.setLevel(level)
        display.unwatch_text_loss(lost.append)
        net.stop()
        hostsim.stop()
    # a file the terminal made beside its data folder (the lab's key root stands for the
    # device's OTP or TPM there) is a device secret: it must not be in the folder either;
    # the simulated NetworkManager's state (terminal-net/, the fake nmcli's: Wi-Fi names,
    # addresses) is the network's, not the device's, and is plain JSON like the folder's
    for folder, dirs, names in os.walk(str(base)):
        if folder == str(base):
            dirs[:] = [d for d in dirs
                       if d not in ("terminal", "host", "terminal-net")
                       and not d.startswith("view-")]
        for name in names:
            path = os.path.join(folder, name)
            if os.path.getsize(path) <= 4096:
                with open(path, "rb") as f:
                    run.needles.secret(DEVICE_KEY, "%s beside the data folder" % name, f.read())
                run.notes.append("outside the data folder: %s" % os.path.relpath(path, str(base)))
    run.text_lost = [str(loss) for loss in lost]
    run.streams["console"] = "\n".join(run.console).encode()
    run.streams["log records"] = "\n".join(capture.lines).encode()
    run.streams["stdout"] = out.getvalue().encode()
    run.streams["stderr"] = err.getvalue().encode()
    return run


# -- the checks ----------------------------------------------------------------------------
def _hits(run, groups, only=None, skip=()):
    """Every hit of the groups' needles in every view (only: these files alone; skip:
    not these), and in the captured streams when no file list is given."""
    needles = run.needles.groups(*groups)
    out = []
    for view, folder in run.views.items():
        files, hits = scan_tree(folder, needles)
        out.extend((view,) + h for h in hits
                   if (only is None or h[0] in only) and h[0] not in skip)
    if only is None:
        out.extend(("captured",) + h for h in scan_streams(run.streams, needles))
    return out


def _report(hits, limit=60):
    """One line per view, file and secret: where it is first, and how often."""
    seen = {}
    for view, path, off, group, label in hits:
        seen.setdefault((view, path, label), []).append(off)
    lines = []
    for (view, path, label), offsets in seen.items():
        more = " and %d more places" % (len(offsets) - 1) if len(offsets) > 1 else ""
        lines.append("%s: %s @ %d (0x%X)%s: %s" % (view, path, offsets[0], offsets[0], more, label))
    if len(lines) > limit:
        lines = lines[:limit] + ["... and %d more" % (len(lines) - limit)]
    return "found in clear:\n  " + "\n  ".join(lines)


def test_the_run_wrote_and_saw_what_the_scan_needs(at_rest):
    """The scan below is not vacuous: every view holds the databases (the live ones with
    their WAL), the export and the key folder; the needles hold every card used, every
    PIN block sent and the key registers read along the way."""
    run = at_rest
    assert set(run.views) == {"mid-run copy", "power cut mid-request", "power cut at the end",
                              "after a clean close"}
    for view, folder in run.views.items():
        files, _ = scan_tree(folder, Needles())
        for name in ("handpos.db", "journal.db", "saf.db"):
            assert name in files, (view, sorted(files))
        if view != "after a clean close":
            for name in ("handpos.db-wal", "journal.db-wal", "saf.db-wal"):
                assert files.get(name), (view, sorted(files))
        assert any(f.startswith("keys" + os.sep) for f in files), (view, sorted(files))
    final, _ = scan_tree(run.views["power cut at the end"], Needles())
    assert any(f.startswith("export" + os.sep) for f in final), sorted(final)

    labels = [label for group, label in run.needles.items.values()]
    for pan in ("4761739001010010", "4111111111111111", "5555555555554444", "5200828282828210"):
        assert "PAN %s (ASCII)" % pan in labels
    # three PIN payments (chip, swipe, and the swipe whose request never reached the host)
    assert len(run.pin_blocks) == 3 and len(set(b for _, b in run.pin_blocks)) == 3
    assert set(run.host_blocks) <= set(run.pin_blocks) and len(run.host_blocks) >= 2
    assert len(run.clear_blocks) >= 3
    assert run.register_reads >= 8 and len(run.keys_seen) > 21
    assert any(label.startswith("device data key") for label in labels)
    assert len(run.receipts) >= 5 and run.streams["printer wire"]
    assert "\n".join(run.receipts).count("**** ") >= 4    # card receipts were printed
    assert not run.text_lost, "a screen lost text during the run:\n  " + "\n  ".join(run.text_lost)


def test_no_card_data_and_no_pin_block_in_clear_anywhere(at_rest):
    """Full PANs (digits, BCD, base64), track 1 and 2 (and their tails), the clear and
    the encrypted PIN blocks: in no file of any view, on no receipt, in no log."""
    hits = _hits(at_rest, (CARD, PINBLOCK))
    assert not hits, _report(hits)


def test_no_dukpt_key_in_clear_anywhere(at_rest):
    """The DUKPT registers and the initial key appear nowhere in clear: not in
    handpos.db or its WAL (where releases before the key root kept them), the journal,
    the queue, the export, the sealed key files, a receipt, the console or a log."""
    hits = _hits(at_rest, (DUKPT,))
    assert not hits, _report(hits)


def test_receipts_show_no_more_than_the_last_four(at_rest):
    """DESIGN.md: the PAN is shown as its last four on receipts; not even the first six
    (which the journal may keep) are printed."""
    paper = "\n".join(at_rest.receipts) + at_rest.streams["printer wire"].decode("latin-1")
    for group, label in at_rest.needles.items.values():
        if label.startswith("PAN ") and label.endswith("(ASCII)"):
            pan = label.split()[1]
            assert pan[:6] not in paper, "the first six of %s on paper" % pan


def test_no_device_key_in_clear_anywhere(at_rest):
    """The data key (as the queue holds it), the MAC keys derived from it and the
    merchant's test export keys are in no file of the data folder (the key folder holds
    them wrapped under the device's root), export, receipt or log."""
    hits = _hits(at_rest, (DEVICE_KEY,))
    assert not hits, _report(hits)


def test_the_scan_finds_secrets_planted_in_the_runs_files(at_rest, tmp_path):
    """The checks above can fail: secrets planted in a copy of the run's folder (a PAN
    in a log line, a track 2 in BCD in a deleted row's free space, a DUKPT key as hex
    in the export, a PIN block as raw bytes in a WAL, the data key in base64 on the
    console) are each found, in the right file at the right offset, and nothing else
    is new."""
    run = at_rest
    folder = str(tmp_path / "planted")
    shutil.copytree(run.views["power cut at the end"], folder)
    before = set(scan_tree(folder, run.needles)[1])
    planted = []                        # (file, offset, group)

    def append(rel, data):
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        size = os.path.getsize(path) if os.path.exists(path) else 0
        with open(path, "ab") as f:
            f.write(data)
        return size

    line = b"swipe read: 4111111111111111=30121200000000\n"
    planted.append(("logs/handpos.log", append("logs/handpos.log", b"started\n" + line) + 8
                    + line.index(b"4111"), CARD))
    key = sorted(run.keys_seen)[0]
    export = [f for f in os.listdir(os.path.join(folder, "export"))][0]
    rel = os.path.join("export", export)
    planted.append((rel, append(rel, b'{"k":"' + key.hex().upper().encode() + b'"}') + 6, DUKPT))
    block = binascii.unhexlify(run.pin_blocks[0][1])
    planted.append(("saf.db-wal", append("saf.db-wal", b"\x00" * 7 + block) + 7, PINBLOCK))

    # a row written and deleted with secure_delete off: its bytes stay in the file's free
    # space, where no query sees them and the scan must
    from tools.cards.vcard import VirtualCard
    track2 = VirtualCard("online_pin").track2
    db = sqlite3.connect(os.path.join(folder, "journal.db"), isolation_level=None)
    db.execute("PRAGMA secure_delete=OFF")
    db.execute("CREATE TABLE scratch (v BLOB)")
    db.execute("INSERT INTO scratch VALUES (?)", (b"\xAA" * 500 + track2 + b"\xAA" * 500,))
    db.execute("DELETE FROM scratch")
    db.close()
    with open(os.path.join(folder, "journal.db"), "rb") as f:
        raw = f.read()
    assert raw.find(track2) >= 0, "SQLite overwrote the deleted row: nothing planted"
    planted.append(("journal.db", raw.find(track2), CARD))

    after = set(scan_tree(folder, run.needles)[1])
    new = after - before
    found = {(path, off, group) for path, off, group, label in new}
    for where in planted:
        assert where in found, (where, _report([("planted",) + h for h in sorted(new)]))
    assert {path for path, off, group in found} == {path for path, off, group in planted}, \
        _report([("planted",) + h for h in sorted(new)])

    console = b"queue key " + base64.b64encode(bytes(run.data_key))
    hits = scan_streams({"console": console}, run.needles)
    assert hits and hits[0][0] == "console" and hits[0][2] == DEVICE_KEY, hits

