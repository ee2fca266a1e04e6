import os
import sys
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from firmware.core import config as schema  # noqa: E402


class SimHarness:
    """The whole simulated board in this process: real drivers on stand-in transports."""

    def __init__(self, tmp_path, language="en", host=None, synced=False, chip=False, offline=None,
                 qr=None, auth=None, mfa=None, **ui):
        from board.configfile import load_profile
        from tools.sim.simulator import Simulator
        config = schema.defaults()
        config["storage"]["data_dir"] = str(tmp_path)
        config["ui"]["language"] = language
        config["ui"].update(ui)
        config["security"]["test_keys"] = True
        config["lab"]["enabled"] = True
        # one supervisor runs most tests: it approves its own refunds here; the tests of
        # the second person (tests/test_operators.py) turn it on
        config["auth"]["second_person"] = False
        config["auth"].update(auth or {})
        # likewise the authenticator code for a queue export and a factory reset: asked
        # only where a test asks for it (tests/test_mfa.py, tests/test_operators.py,
        # tests/test_factory_reset.py)
        if mfa is None:
            config["mfa"]["actions"] = [a for a in config["mfa"]["actions"]
                                        if a not in ("export", "factory_reset")]
        else:
            config["mfa"].update(mfa)
        if offline:
            config["offline"].update(offline)
        # issue 15: the anomaly rules are on by default, and the suites swipe one test
        # card again and again: off here unless a test turns them on
        # (tests/test_anomaly.py sets term.config["anomaly"], read at each payment)
        from firmware.payments.anomaly import OFF
        config["anomaly"].update(OFF)
        if qr is not None:              # the [qr] section: the QR acquirer (tests/test_qr_pay.py)
            config["qr"].update(qr)
        if host is not None:            # (address, ca_file or None for plain TCP)
            config["host"].update(address=host[0], tls=host[1] is not None,
                                  ca_file=host[1] or "", response_timeout_s=5)
        self.console = []
        self.skew = 0       # ms the test has moved the terminal's clock forward
        profile = load_profile("sim")
        if not chip:                # the chip reader needs pcscd: only the tests that ask
            profile.pop("chip", None)
        self.sim = Simulator(profile, config, synced=synced, auth_iterations=50,
                             console=self.console.append, clock=self._clock,
                             chip_port=vpcd_port_of_process() if chip else None)
        self.term = self.sim.terminal
        self.reactor = self.sim.reactor
        self.sim.start()

    def run(self, ms=0, until=None, limit=20000):
        """Run the loop for up to ms of real time, or until until() holds."""
        deadline = self.reactor.clock() + ms
        for _ in range(limit):
            if until is not None and until():
                return True
            left = deadline - self.reactor.clock()
            if left <= 0 and until is None:
                self.reactor.run_once(0)
                return True
            if left <= 0:
                return until()
            self.reactor.run_once(min(left, 50))
        return until() if until else True

    def _clock(self):
        from firmware.core.compat import monotonic_ms
        return monotonic_ms() + self.skew

    def advance(self, ms):
        """Move the terminal's clock forward and let every timer due by then fire."""
        self.skew += ms
        self.run(0)
        self.run(0)

    def press(self, *names):
        """Keys through the evdev pipe and the keypad driver, as a person's would go."""
        for name in names:
            self.sim.press(name)
            self.run(2000, until=lambda: not self._pending())
        return self.text()

    def _pending(self):
        from tools.sim.control import _pending_bytes
        return _pending_bytes(self.sim.keypad_device.fileno()) > 0

    def text(self):
        return self.term.screen.text() if self.term.screen else ""

    def wait_for(self, text, ms=5000):
        ok = self.run(ms, until=lambda: text in self.text())
        assert ok, "waited %d ms for %r; screen:\n%s" % (ms, text, self.text())
        return self.text()

    def flow(self):
        f = self.term.current()
        return (f.NAME, f.state) if f else None

    def close(self):
        self.sim.close()

    # common journeys
    def boot(self):
        """Let the self-test see the printer answer, then skip its pause."""
        def answered():
            f = self.term.current()
            return f is None or f.NAME != "boot" or f.results.get("printer", (0, ""))[1] != "checking"
        self.run(3000, until=answered)
        if self.term.current() is not None and self.term.current().NAME == "boot":
            self.advance(1600)

    def first_supervisor(self, op_id="1", pin="2580"):
        self.boot()
        self.wait_for("Welcome")
        self.press("ENTER", *op_id)
        self.press("ENTER", *pin)
        self.press("ENTER", *pin)
        self.press("ENTER")
        self.wait_for("Operator ID")

    # -- payments, for the tests of card sales, offline approval and their faults ----
    def swipe_sale(self, digits, card="visa_pin", pin="1234"):
        """A card sale with a swiped test card (tools/cards/stripes.py); its record."""
        self.press(*digits)
        self.press("ENTER", "1")
        self.sim.swipe(card=card)
        self.run(2000, until=lambda: self.flow()[1] != "card")
        if pin is not None and self.flow() == ("sale", "pin"):
            self.press(*pin)
            self.press("ENTER")
        self.run(15000, until=lambda: self.flow() in (("sale", "result"), ("sale", "copy")))
        return self.term.payments.journal.last()

    def to_idle(self, tries=4):
        """CANCEL through a sale's result and receipts back to the idle screen."""
        for _ in range(tries):
            if self.flow() == ("idle", "idle"):
                break
            self.press("CANCEL")
            self.run(3000, until=lambda: self.flow() in (("idle", "idle"), ("sale", "copy"),
                                                         ("sale", "closing")))
        assert self.flow() == ("idle", "idle"), self.text()

    def upload_all(self, ms=20000):
        """Upload now, as MENU 9 > 1 does; True once the offline queue is empty."""
        self.term.payments.forwarder.upload_now()
        return self.run(ms, until=lambda: not self.term.payments.queue.pending())

    # -- selling items ----------------------------------------------------------------
    def load_demo_catalogue(self):
        """The simulator's demo catalogue (config/demo_catalogue.csv) into this
        terminal's catalogue.db, as `handpos sim` loads it on a fresh data folder."""
        from tools import catalogue_csv
        config = self.term.config
        catalogue_csv.load_demo(config["storage"]["data_dir"],
                                self.sim.built.datadir.keys.key("data"), config)
        self.run(100)

    def scan(self, code):
        """A barcode through the HID scanner driver, as a scanner types it; the screen
        once the terminal has taken it."""
        from tools.sim.control import _pending_bytes
        assert self.sim.scan(code) == code
        self.run(1000, until=lambda: _pending_bytes(self.sim.scanner_device.fileno()) == 0)
        self.run(100)
        return self.text()

    def wait_for_flow(self, *flows, ms=8000):
        """Run until the current (flow, state) is one of flows; the screen if not."""
        self.run(ms, until=lambda: self.flow() in flows)
        assert self.flow() in flows, (self.flow(), self.text())

    def stock(self, plu):
        """What the catalogue has on hand of the item with this PLU."""
        item = self.term.catalogue.find_by_plu(plu)
        return self.term.catalogue.stock(item["id"])

    def add_operator(self, role_key, op_id, pin, sup_pin="2580"):
        """Settings > Operators > Add, as the supervisor logged in (its own PIN approves:
        the harness turns [auth] second_person off unless a test asks); back to idle."""
        self.press("MENU", "6", "3")                 # Settings > Operators
        self.press(*sup_pin)
        self.press("ENTER")
        assert self.flow() == ("operators", "list"), (self.flow(), self.text())
        self.press("ENTER", role_key, *op_id)        # + Add operator
        self.press("ENTER", *pin)
        self.press("ENTER", *pin)
        self.press("ENTER")
        assert "Created: ID %s" % op_id in self.text(), self.text()
        self.press("ENTER", "CANCEL", "CANCEL", "CANCEL")
        self.run(500, until=lambda: self.flow() == ("idle", "idle"))
        # the supervisor's PIN is a one-time one; the tests that log in as the new
        # operator skip its first change (tests/test_operators.py walks it)
        assert self.term.auth.must_change(op_id) == "reset"
        self.term.store.set_setting("op.%s.must_change" % op_id, "")

    def login(self, op_id="1", pin="2580"):
        if self.term.current() is not None and self.term.current().NAME == "boot":
            self.boot()
        self.wait_for("Operator ID")
        self.press(*op_id)
        self.press("ENTER", *pin)
        self.press("ENTER")


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(**kw):
        h = SimHarness(tmp_path / "terminal", **kw)
        made.append(h)
        return h
    yield make
    for h in made:
        h.close()


@pytest.fixture
def shop(harness):
    """shop(**harness options): a terminal with the demo catalogue (tools/sim/demo_codes.py,
    config/demo_catalogue.csv: USD prices, 13 % VAT included), supervisor 1 (PIN 2580)
    logged in."""
    def make(**kw):
        h = harness(**kw)
        h.first_supervisor()
        h.login()
        h.load_demo_catalogue()
        return h
    return make


class TestClock:
    """A clock a test moves by hand (the QR acquirer simulator's): epoch seconds."""
    def __init__(self):
        import time
        self.now = time.time()

    def __call__(self):
        return self.now


@pytest.fixture
def acquirer(tmp_path):
    """The QR acquirer simulator (tools/host/qrsim.py) in this process, TLS with its own
    test CA, on acquirer.test_clock (.11 orders wait 10 s of it for the customer)."""
    from tools.host.qrsim import QrSim
    clock = TestClock()
    sim = QrSim(str(tmp_path / "qrsim"), clock=clock, wait_ms=10000)
    sim.start()
    sim.test_clock = clock
    yield sim
    sim.stop()


def qr_config(acquirer, **extra):
    """The [qr] section of a terminal that pays through acquirer (the lab's key)."""
    from tools.host.qrsim import DEFAULT_KEY
    cfg = {"enabled": True, "address": "%s:%d" % tuple(acquirer.address[:2]),
           "ca_file": acquirer.ca_file, "mch_id": "100000000001", "key": DEFAULT_KEY.decode()}
    cfg.update(extra)
    return cfg


def qr_order(acquirer, rec, tid="HP000001"):
    """The acquirer's ledger row of a journal record's order."""
    return acquirer.ledger.order("100000000001", "%s-%06d" % (tid, rec["id"]))


@pytest.fixture
def qr_shop(harness, acquirer):
    """qr_shop(qr={...}, language=..., **harness options): a logged-in terminal whose
    [qr] section pays through acquirer."""
    def make(qr=None, language="en", **kw):
        h = harness(qr=qr_config(acquirer, **(qr or {})), **kw)
        h.first_supervisor()
        h.login()
        if language != "en":
            h.term.set_language(language)
            h.run(100)
        return h
    return make


@pytest.fixture
def hostsim(tmp_path):
    """The acquirer simulator on an ephemeral loopback port, TLS with its own test CA."""
    from tools.host.hostsim import HostSim
    sim = HostSim(str(tmp_path / "host"), tls=True, slow_ms=60000, log=lambda *a: None)
    host, port = sim.start("127.0.0.1", 0)
    sim.address = "%s:%d" % (host, port)
    yield sim
    sim.stop()


@pytest.fixture
def net(hostsim):
    """The fault proxy between terminal and host: net.set("reset", existing=True,
    new=True) cuts the network as a dead mobile link would, net.set("pass") restores it."""
    from tools.host.faultproxy import FaultProxy
    proxy = FaultProxy(0, int(hostsim.address.rsplit(":", 1)[1]))
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def online(harness, hostsim, net):
    """online(**offline_policy): a logged-in terminal with a trusted clock whose host
    link goes through net, the link up; h.host is the host simulator."""
    def make(**offline):
        h = harness(host=("127.0.0.1:%d" % net.port, hostsim.ca_file), synced=True,
                    offline=offline or None)
        h.first_supervisor()
        h.login()
        h.run(3000, until=lambda: h.term.link_state == "up")
        h.host = hostsim
        return h
    return make


# -- a pcscd of each test process's own ------------------------------------------------
# The PC/SC tests (tests/test_pcsc.py), the boards built whole with the sim profile's chip
# reader and the harness's chip=True terminals talk to pcscd's Virtual PCD reader. Each
# pytest process (one per xdist worker) gets a pcscd of its own: a private socket
# (PCSCLITE_CSOCK_NAME, which libpcsclite reads once per process, so it is set before
# any test runs and children inherit it) and private vpcd ports (HANDPOS_TEST_VPCD_PORT),
# so that two workers never put cards in one reader. Where it cannot start (no pcscd,
# or a system pcscd running and no mount namespace to start beside it), the tests use
# the machine's pcscd as before and should run in one process.
PCSCD_PORT_ENV = "HANDPOS_TEST_VPCD_PORT"
_PCSCD = []


def _start_private_pcscd(config):
    if hasattr(config, "workerinput"):
        pass                                        # an xdist worker: runs tests
    elif config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None):
        return                                      # the xdist controller runs none
    if os.environ.get("PCSCLITE_CSOCK_NAME"):
        return                                      # someone chose a pcscd already
    import tempfile
    from tools.cards.vcard import PrivatePcscd
    daemon = PrivatePcscd(tempfile.mkdtemp(prefix="handpos-pcscd-"), auto_exit=False)
    try:
        daemon.start()
    except (RuntimeError, OSError) as exc:
        config.handpos_pcscd_problem = str(exc)
        return
    os.environ["PCSCLITE_CSOCK_NAME"] = daemon.socket_path
    os.environ[PCSCD_PORT_ENV] = str(daemon.port)
    _PCSCD.append(daemon)


def pytest_unconfigure(config):
    while _PCSCD:
        daemon = _PCSCD.pop()
        daemon.stop()
        os.environ.pop("PCSCLITE_CSOCK_NAME", None)
        os.environ.pop(PCSCD_PORT_ENV, None)
        import shutil
        shutil.rmtree(daemon.workdir, ignore_errors=True)


def vpcd_port_of_process():
    """The vpcd port of this process's pcscd (None: the machine's, vpcd's default)."""
    port = os.environ.get(PCSCD_PORT_ENV)
    return int(port) if port else None


# -- the tests that share fixed ports ---------------------------------------------------
# Under pytest-xdist (`make test` runs the suite in parallel workers) the tests that start
# simulators as processes on the configuration's fixed loopback ports run in one worker,
# one after the other.
SHARED = {
    "ports": ("test_newcomer.py", "test_sim_e2e.py", "test_crash_recovery.py",
              "test_chaos.py", "test_qr_chaos.py"),
}


def pytest_collection_modifyitems(config, items):
    groups = {}
    for group, files in SHARED.items():
        for name in files:
            groups[name] = group
    for item in items:
        group = groups.get(os.path.basename(str(item.fspath)))
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


# -- every screen readable: a test during which a screen lost text fails -------------
def pytest_configure(config):
    _start_private_pcscd(config)
    config.addinivalue_line(
        "markers", "text_loss_allowed: the test cuts text on purpose (the display's own "
        "tests of cutting); any other screen that loses text fails its test")


@pytest.fixture(autouse=True)
def no_text_lost(request, tmp_path_factory, monkeypatch):
    """Fails the test when any screen drawn during it (in this process, or by a simulator
    it started) could not show all its text: a cut line, title or footer, or rows past
    the panel on a screen that does not scroll. drivers/display.py reports each loss."""
    from drivers import display
    lost = []
    log = tmp_path_factory.mktemp("textloss") / "lost.jsonl"
    monkeypatch.setenv(display.TEXT_LOSS_LOG_ENV, str(log))
    display.watch_text_loss(lost.append)
    try:
        yield
    finally:
        display.unwatch_text_loss(lost.append)
    if request.node.get_closest_marker("text_loss_allowed"):
        return
    seen = [str(loss) for loss in lost]
    if log.exists():
        import json
        for row in log.read_text(encoding="utf-8").splitlines():
            loss = display.TextLoss(**json.loads(row))
            if str(loss) not in seen:
                seen.append(str(loss))
    if seen:
        pytest.fail("a screen lost text (fix the layout, never the font):\n  "
                    + "\n  ".join(seen[:20]), pytrace=False)


# -- a reactor on a clock the test moves (the wedge drivers' tests: HID scanner, MSR) --
class FakeClock:
    def __init__(self, now=10000):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def reactor(clock):
    from firmware.core.reactor import Reactor
    r = Reactor(clock=clock)
    yield r
    r.close()


@pytest.fixture
def run_until(reactor):
    """Bounded reactor passes (each blocks at most 20 ms in poll) until cond() holds."""
    def run(cond, limit=200):
        for _ in range(limit):
            if cond():
                return
            reactor.run_once(20)
        assert cond(), "condition not reached in %d reactor passes" % limit
    return run


# -- a card that fills up (a small tmpfs over the data folder; tests run as root) --------
class SmallDisk:
    def __init__(self, path, size="2m"):
        self.path = str(path)
        self.filler = os.path.join(self.path, "filler")
        os.makedirs(self.path, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs",
                            self.path], capture_output=True)
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.decode().strip())

    def fill(self):
        """Take every free byte (the kernel answers ENOSPC)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 16, 1 << 12, 1 << 9, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError:
                        break
        finally:
            os.close(fd)
        st = os.statvfs(self.path)
        assert st.f_bavail == 0

    def free(self):
        os.unlink(self.filler)

    def umount(self):
        subprocess.run(["umount", "-l", self.path], capture_output=True)


@pytest.fixture
def disk(tmp_path):
    d = SmallDisk(tmp_path / "terminal")
    yield d
    d.umount()


# -- a chip reader answered by a virtual card on the loop -------------------------------
class ChipSlot:
    """drivers/pcsc.PcscReader's interface (exchange, card events) answered by a
    tools/cards/vcard.py card on the loop: what the chip flow sees of a real reader.
    card_options go to every VirtualCard it makes (t0=False: T=1 framing, since T=0's
    GET RESPONSE is the PC/SC driver's, which is not here)."""

    def __init__(self, h, **card_options):
        self.h = h
        self.card = None
        self.card_options = card_options

    def exchange(self, apdu, callback):
        from tools.cards.vcard import CardRemoved
        if self.card is None:
            result = {"ok": False, "reason": "card_removed", "detail": "no card"}
        else:
            try:
                result = {"ok": True, "rapdu": self.card.transmit(bytes(apdu))}
            except CardRemoved as exc:
                result = {"ok": False, "reason": "card_removed", "detail": str(exc)}
        self.h.reactor.call_soon(callback, result)

    def power_off(self, callback=None):
        if callback is not None:
            self.h.reactor.call_soon(callback, {"ok": True})

    def _card(self, profile, overrides):
        from tools.cards.vcard import VirtualCard
        options = dict(self.card_options)
        options.update(overrides)
        return VirtualCard(profile, **options)

    def insert(self, profile, **overrides):
        self.card = self._card(profile, overrides)
        self.h.term.on_card_event("inserted", self.card.atr)

    def tap(self, profile):
        self.card = self._card(profile, {})
        self.h.term.on_card_event("tapped", self.card.atr)

    def remove(self):
        if self.card is not None:
            self.card.remove()
        self.card = None
        self.h.term.on_card_event("removed")
