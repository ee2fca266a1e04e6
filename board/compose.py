"""The composition root: from a board profile and a configuration, a running terminal.

Each part is built on its own; a part that fails is named (on the console here, on the
screen by the boot self-test) and the terminal goes on with the rest. Storage is the
exception that proves it: a database that cannot be opened is never replaced by an
empty one in memory (a terminal that had data would forget what it owes the host and
start its STANs again); it stands as firmware.core.store.Unavailable, the terminal
shows the storage fault and takes no payment (docs/storage.md). Tests and the
simulator pass `transports` to put stand-ins under the real drivers:

  luma_device    a luma device (luma.core.device.dummy) instead of opening the panel
  keypad_device  an evdev-like device (drivers.evdev_pipe.PipeInputDevice)
  printer_port   an open serial port (a pty slave) instead of the profile's tty
  pins           a pin back end (drivers.gpio.MockPins)
  system         a drivers.system.LinuxSystem (or one with the clock pinned)
  clock          the reactor's monotonic clock in ms (tests move it forward)
  on_frame       called with each new frame the display pushes (the simulator's view)
  msr_device     an evdev-like device for the HID magnetic stripe reader
  msr_port       an open serial port for a serial stripe reader ([msr] serial = tty)
  scanner_device an evdev-like device for the HID barcode scanner
  scanner_port   an open serial port for a serial barcode scanner ([scanner] serial = tty)
  scard          a PC/SC module for the chip reader (default: pyscard's smartcard.scard)
"""
import os
import sys

from drivers import display as display_drv
from drivers import gpio as gpio_drv
from drivers import keypad as keypad_drv
from drivers import printer as printer_drv
import json

from drivers import msr as msr_drv
from drivers import scanner as scanner_drv
from drivers.evdev_pipe import open_input_device
from board import datadir
from drivers.journal_sqlite import JournalError, SQLiteJournal
from drivers import audittrail
from drivers.keystore import KeyStoreError, SealedMissing
from drivers.sdnotify import Notifier
from drivers.store_sqlite import SQLiteStore, StoreError
from drivers.system import LinuxSystem
from firmware.security import dukpt
from firmware.cards.emv import params as emv_params
from firmware.payments.service import Payments
from firmware.core.reactor import Reactor
from firmware.core.store import CORRUPT, StorageFault, Unavailable
from firmware.terminal import Terminal
from board.export import export_queue

# ANSI X9.24-1 test key: BDK 0123456789ABCDEFFEDCBA9876543210, initial KSN below.
# Loaded only when [security] test_keys = true and no real key was loaded.
TEST_BDK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
TEST_KSN = bytes.fromhex("FFFF9876543210E00000")
DUKPT_SETTING = "dukpt.state"      # where releases before the key root kept it, in clear
DUKPT_LOADED = "dukpt.loaded"      # set once a PIN key was in use: its loss is a fault
DUKPT_FILE = "dukpt.state"         # DATA/keys/: sealed under the hierarchy's dukpt key


def _console(line):
    sys.stderr.write("handpos: " + line + "\n")
    sys.stderr.flush()


class Built:
    """Everything the composition made, so that it can be closed in order."""

    def __init__(self):
        self.reactor = None
        self.terminal = None
        self.display = None
        self.keypad = None
        self.printer = None
        self.printer_port = None
        self.pins = None
        self.buzzer = None
        self.led = None
        self.cl_leds = []
        self.store = None
        self.journal = None
        self.queue = None
        self.msr = None
        self.scanner = None
        self.scanner_port = None
        self.chip = None
        self.host = None
        self.selftests = {}
        self.datadir = None
        self.catalogue = None
        self.members = None

    def close(self):
        if self.terminal is not None:
            self.terminal.stop()
        if getattr(self, "qr_link", None) is not None:
            self.qr_link.close("the terminal stops")
        if self.keypad is not None:
            try:
                self.keypad.stop()
            except OSError:
                pass
        if self.printer is not None:
            self.printer.close()
        if self.printer_port is not None:
            try:
                self.printer_port.close()
            except OSError:
                pass
        if self.msr is not None:
            try:
                self.msr.stop()
            except OSError:
                pass
        if self.scanner is not None:
            try:
                self.scanner.stop()
            except OSError:
                pass
        if self.scanner_port is not None:
            self.scanner_port.close()
        if self.chip is not None:
            self.chip.stop()
        if self.host is not None:
            self.host.close("shutting down")
        if self.queue is not None:
            self.queue.close()
        if self.journal is not None:
            self.journal.close()
        if self.catalogue is not None:
            self.catalogue.close()
        if self.members is not None:
            self.members.close()
        if self.store is not None:
            self.store.close()
        if self.reactor is not None:
            self.reactor.close()


def build(profile, config, transports=None, console=_console, auth_iterations=None):
    from board.configfile import ConfigError, lab_problems
    problems = lab_problems(config)
    if problems:            # whoever built this config skipped load_config's check
        raise ConfigError(problems)
    tr = transports or {}
    # the data folder private, its keys open (or their fault): before any database
    dd = datadir.prepare(profile, config, console)
    b = Built()
    b.datadir = dd
    b.reactor = Reactor(clock=tr.get("clock"))
    tests = b.selftests
    tests["keys"] = (dd.keys is not None,
                     dd.root.describe() if dd.keys is not None else str(dd.fault))

    # storage first: without it nothing else can be trusted to persist
    path = os.path.join(config["storage"]["data_dir"], "handpos.db")
    try:
        b.store = SQLiteStore(path)
        tests["storage"] = (True, "ok")
        # the audit trail sealed under the device's audit key (docs/audit.md)
        audittrail.attach(b.store, dd.keys, console)
        # what an update, its launcher and its health check did while the terminal was
        # stopped or starting: audited now, the trail's one writer (docs/updates.md)
        from drivers import updater
        updater.audit_log(config["update"]["release_root"], b.store, console)
    except StoreError as exc:
        console(str(exc))
        b.store = Unavailable(exc)
        tests["storage"] = (False, str(exc))

    # display
    spec = profile["display"]
    try:
        device = tr.get("luma_device") or display_drv.open_luma_device(spec)
        b.display = display_drv.LumaDisplay(device, on_frame=tr.get("on_frame"))
        tests["display"] = b.display.selftest()
    except Exception as exc:   # any failure of the panel or its font leaves a console
        console("display: %s" % exc)
        b.display = display_drv.NullDisplay()
        tests["display"] = (False, str(exc))

    # GPIO: buzzer and status LED
    gp = profile["gpio"]
    try:
        if tr.get("pins") is not None:
            b.pins = tr["pins"]
        elif gp.get("backend") == "rpi":
            b.pins = gpio_drv.RPiGPIOPins()
        else:
            b.pins = gpio_drv.MockPins()
        b.buzzer = gpio_drv.Buzzer(b.pins, gp["buzzer"], b.reactor)
        tests["buzzer"] = b.buzzer.selftest()
        b.led = gpio_drv.LED(b.pins, gp["led"], b.reactor)
        tests["led"] = b.led.selftest()
        # the four contactless status lights, where the board has them
        b.cl_leds = [gpio_drv.LED(b.pins, pin, b.reactor) for pin in gp.get("cl_leds", ())]
    except Exception as exc:
        console("gpio: %s: buzzer and LED off" % exc)
        b.buzzer = b.led = None
        tests["buzzer"] = tests["led"] = (False, str(exc))

    system = tr.get("system") or LinuxSystem()

    # the terminal exists before keypad and printer so their events have a target
    b.terminal = Terminal(b.reactor, config, b.store, system, display=b.display,
                          buzzer=b.buzzer, led=b.led, watchdog=Notifier(),
                          selftests=tests, auth_iterations=auth_iterations,
                          pin_hasher=pin_hasher(dd, auth_iterations))
    term = b.terminal
    term.key_root = dd.root
    if dd.fault is not None:
        _fault(term, dd.fault)
    term.cl_leds = b.cl_leds
    term.mfa = build_mfa(dd, term, system, console)
    term.updates = build_updates(b, profile, config, tr, dd)
    if isinstance(b.store, SQLiteStore):
        b.store.guard.on_fault = term.storage_fault
    elif term.fault is None:
        term.fault = b.store.fault

    # printer
    pr = profile["printer"]
    try:
        b.printer_port = tr.get("printer_port") or printer_drv.open_serial(pr["port"], pr.get("baud", 9600))
        b.printer = printer_drv.EscPosPrinter(b.printer_port, b.reactor, term.on_printer_event,
                                              width=pr.get("width", 32))
        term.printer = b.printer
        term.printer_state = b.printer.state
        tests["printer"] = (True, "port open")
    except Exception as exc:
        console("printer: %s" % exc)
        term.printer_state = "missing"
        tests["printer"] = (False, str(exc))

    # keypad
    kp = profile["keypad"]
    try:
        device = tr.get("keypad_device") or open_input_device(kp["device"])
        b.keypad = keypad_drv.Keypad(device, kp["keymap"], b.reactor, term.on_key,
                                     on_dead=lambda reason: term.on_device_lost("keypad", reason))
        b.keypad.start()
        tests["keypad"] = b.keypad.selftest()
    except Exception as exc:
        console("keypad: %s" % exc)
        tests["keypad"] = (False, str(exc))

    build_scanner(b, profile, tr, console)
    _build_payments(b, profile, config, tr, console)
    return b


def build_scanner(b, profile, tr, console):
    """The profile's [scanner], where the board has one: a USB HID (keyboard-wedge)
    scanner by its evdev name or node (device, end_keys), or a serial one (serial =
    tty, baud). Codes go to the terminal as they came: the core checks them."""
    spec = profile.get("scanner")
    if not spec:
        return
    term = b.terminal
    lost = lambda reason: term.on_device_lost("scanner", reason)
    limits = {k: spec[k] for k in ("gap_ms", "max_chars") if k in spec}
    try:
        if spec.get("serial"):
            port = tr.get("scanner_port")
            if port is None:
                port = b.scanner_port = scanner_drv.open_serial(spec["serial"], spec.get("baud", 9600))
            b.scanner = scanner_drv.SerialScanner(port, b.reactor, term.on_scan,
                                                  on_error=term.on_scan_error, on_dead=lost,
                                                  **limits)
        else:
            device = tr.get("scanner_device") or open_input_device(
                spec["device"], check="that the scanner is plugged in (USB)")
            b.scanner = scanner_drv.HidScanner(device, b.reactor, term.on_scan, on_dead=lost,
                                               on_error=term.on_scan_error,
                                               end_keys=spec.get("end_keys", scanner_drv.END_KEYS),
                                               **limits)
        b.scanner.start()
        b.selftests["scanner"] = b.scanner.selftest()
    except Exception as exc:
        console("scanner: %s" % exc)
        b.selftests["scanner"] = (False, str(exc))


def pin_hasher(dd, auth_iterations=None):
    """scrypt with the pepper from the key hierarchy; None (the portable PBKDF2) while
    the keys cannot be opened (the terminal shows that fault and takes nobody's PIN).
    auth_iterations (tests, the simulator's fast start) makes it cheap."""
    if dd.keys is None:
        return None
    from drivers.pinhash import ScryptPepper
    return ScryptPepper(dd.keys.key("pepper"), cost=1 << 8 if auth_iterations else 1 << 14)


def load_dukpt(dd, store, config, console, term=None):
    """The DUKPT terminal from its sealed state file, or the test key where the lab
    allows; None without a PIN key. A state file that is missing on a terminal that
    has used a PIN key, or that does not open, is a fault (term.fault): a new key at
    counter 1 would send KSNs the host has already seen."""
    if dd.keys is None:
        return None
    sealed = dd.keys.sealed(DUKPT_FILE, "dukpt", "dukpt state", part="pinkey")

    def save(state):
        try:
            sealed.write(json.dumps(state).encode())
        except StorageFault as exc:     # a full card: the terminal stops and says so
            if term is not None:
                term.storage_fault(exc)
            raise

    def fault(exc):
        from firmware.core.store import fault_code
        if not isinstance(exc, StorageFault):
            exc = KeyStoreError(CORRUPT, str(exc), part="pinkey")
        console("%s PIN key: %s" % (fault_code(exc), exc))
        if term is not None:
            _fault(term, exc)
        return None

    try:
        legacy = store.get_setting(DUKPT_SETTING)
        if legacy:                  # clear registers of an older release: sealed, purged
            if not sealed.exists():
                sealed.write(legacy.encode())
            store.set_setting(DUKPT_LOADED, "1")
            store.purge_setting(DUKPT_SETTING)
            console("PIN key: the DUKPT state moved from handpos.db into the sealed %s"
                    % sealed.path)
        loaded = store.get_setting(DUKPT_LOADED)
    except StorageFault as exc:     # the store's fault is on the screen already
        console("PIN key: cannot be read (%s)" % exc)
        return None
    try:
        state = json.loads(sealed.read().decode())
        kind = state.get("kind", "tdes-dukpt")
        if kind == "aes-dukpt":
            from firmware.security import dukpt_aes
            return dukpt_aes.AesDukptTerminal.from_state(state, save)
        return dukpt.DukptTerminal.from_state(state, save)
    except SealedMissing:
        if loaded:
            return fault(KeyStoreError(CORRUPT, "the PIN key state %s is missing but this "
                                       "terminal has used a PIN key: a technician loads a new "
                                       "key (a reloaded one would repeat KSNs)" % sealed.path,
                                       part="pinkey"))
    except StorageFault as exc:
        return fault(exc)
    except (ValueError, AttributeError, UnicodeError, dukpt.DukptError) as exc:
        return fault(KeyStoreError(CORRUPT, "the PIN key state %s is damaged (%s): a "
                                   "technician loads a new key" % (sealed.path, exc),
                                   part="pinkey"))
    if config["security"]["test_keys"]:
        console("PIN key: no key loaded; using the published TEST key (security.test_keys)")
        try:
            key = test_dukpt(config, save)
            save(key.state())
            store.set_setting(DUKPT_LOADED, "1")
        except StorageFault as exc:
            return fault(exc)
        return key
    return None


def test_dukpt(config, save):
    """A DUKPT terminal on the published test key of the host profile's PIN scheme:
    ANSI X9.24-1's for TDES DUKPT, X9.24-3-2017's (AES-128 BDK
    FEDCBA9876543210F1F1F1F1F1F1F1F1, initial key ID 1234567890123456) for AES DUKPT."""
    if config["host"].get("pin_security") == "aes-dukpt":
        from firmware.security import dukpt_aes, pinblock
        ikid = bytes.fromhex("1234567890123456")
        initial = dukpt_aes.derive_initial_key(
            bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1"), ikid)
        try:
            return dukpt_aes.AesDukptTerminal(initial, ikid, save)
        finally:
            pinblock.wipe(initial)
    return dukpt.DukptTerminal(dukpt.derive_ipek(TEST_BDK, TEST_KSN), TEST_KSN, save)


def _build_payments(b, profile, config, tr, console):
    term = b.terminal
    tests = b.selftests
    dd = b.datadir
    b.journal, b.queue = open_payments_storage(config, console, term, dd)
    datadir.settle_state(dd, b.store, config, console)
    b.catalogue = term.catalogue = open_catalogue_storage(config, console, term, dd)
    b.members = term.members = open_members_storage(config, console, term, dd)
    term.first_run_ok = datadir.first_run_allowed(dd, b.journal, b.queue)
    term.on_in_service = lambda: dd.set_state(datadir.IN_SERVICE, config["terminal"]["id"])
    try:
        if dd.state == datadir.NEW and b.store.operator_count() > 0:
            term.on_in_service()
    except StorageFault as exc:
        console("data folder: %s" % exc)

    readers = 0
    spec = profile.get("msr")
    if spec:
        try:
            lost = lambda reason: term.on_device_lost("msr", reason)
            if spec.get("serial"):
                # a serial reader sends CR/LF-framed tracks on a tty
                port = tr.get("msr_port") or msr_drv.open_serial(spec["serial"], spec.get("baud", 9600))
                b.msr = msr_drv.SerialMsr(port, b.reactor, term.on_swipe,
                                          on_error=term.on_swipe_error, on_dead=lost)
            else:
                device = tr.get("msr_device") or open_input_device(spec["device"])
                b.msr = msr_drv.HidMsr(device, b.reactor, term.on_swipe, on_dead=lost,
                                       on_error=term.on_swipe_error)
            b.msr.start()
            tests["msr"] = b.msr.selftest()
            readers += 1
        except Exception as exc:
            console("card reader: %s" % exc)
            tests["msr"] = (False, str(exc))

    chip = None
    spec = profile.get("chip")
    if spec:
        try:
            from drivers import pcsc

            def card_event(kind, atr=None):
                if kind == "inserted" and pcsc.reader_kind(chip.reader, atr) == "contactless":
                    kind = "tapped"
                term.on_card_event(kind, atr)
            chip = pcsc.PcscReader(b.reactor, spec["reader"], card_event,
                                   on_dead=lambda reason: term.on_device_lost("chip", reason),
                                   scard=tr.get("scard"))
            chip.start()
            b.chip = chip
            tests["chip"] = (True, "reader %r" % spec["reader"])
        except Exception as exc:   # pyscard missing, no PC/SC service
            console("chip reader: %s" % exc)
            tests["chip"] = (False, str(exc))
            chip = None

    key = load_dukpt(dd, b.store, config, console, term)
    # issue 17: a host a technician set on the terminal, then term.network (nmcli, the
    # simulator's fake under the same driver), the wipe and restart (board/service.py)
    from board import service
    service.host_override(b.store, config, console)
    service.attach(b, profile, config, tr, console)
    address = config["host"]["address"]
    if address:
        from drivers.hostlink import HostLink, make_client_context
        host, port = address.rsplit(":", 1)
        try:
            ctx = make_client_context(config["host"]["ca_file"]) if config["host"]["tls"] else None
            b.host = HostLink(b.reactor, host, int(port), ssl_context=ctx, on_link=term.on_link,
                              on_unmatched=lambda raw, why: term.store.audit("host_unmatched", "", why),
                              on_untrusted=term.on_host_untrusted)
        except Exception as exc:   # a missing or unreadable CA file
            console("host: %s" % exc)
            term.link_state = "down"
    term.payments = Payments(term, b.journal, b.host, key, card_readers=readers,
                             chip_reader=chip, emv=emv_params.defaults(config, load_ca_keys(config)),
                             queue=b.queue)
    term.payments.qr = build_qr(b, config, console, term)
    if term.payments.qr is not None:
        from firmware.payments.qr_refund import QrRefunds
        term.payments.qr_refunds = QrRefunds(term.payments.qr)
    if isinstance(b.queue, Unavailable) or hasattr(b.queue, "export"):
        term.payments.exporter = lambda target, valid_h: export_queue(
            term.payments.queue, config, term.system, target, valid_h)
    check_storage(b, config, console)
    term.probe_storage = lambda: probe_storage(b, config, console)


def build_qr(b, config, console, term):
    """The QR payments service over the acquirer's HTTPS link (firmware/payments/qr.py,
    drivers/qrlink.py), or None when [qr] is off or incomplete, or no merchant key is
    loaded (qr_merchant; the sale's QR entries then say "QR not set up")."""
    cfg = config["qr"]
    if not cfg["enabled"]:
        return None
    merchant = qr_merchant(b.datadir, config, console, term)
    if merchant is None:
        return None
    mch_id, key = merchant
    if not cfg["address"]:
        console("qr: [qr] address not set: QR payments are off")
        return None
    import time
    from drivers.qrlink import QrLink
    from firmware.payments.qr import QrPayments
    from firmware.payments.qrmsg import QrMessages, nonce_from_bytes
    try:
        host, port = cfg["address"].rsplit(":", 1)
        link = QrLink(b.reactor, (host, int(port)), cfg["ca_file"] or None,
                      on_untrusted=lambda kind, reason: term.store.audit(
                          "qr_untrusted", "", "%s %s" % (kind, reason)))
    except Exception as exc:   # a missing or unreadable CA file
        console("qr: %s" % exc)
        return None
    b.qr_link = link
    messages = QrMessages(mch_id, config["terminal"]["id"], key,
                          lambda: nonce_from_bytes(os.urandom(16)), time.time)
    qr = QrPayments(term, term.payments, link, messages, config)
    link.on_link = qr.link_changed      # the acquirer's own reachability, not the card host's
    return qr


def build_updates(b, profile, config, tr, dd):
    """term.updates, Settings > Update's bundles and apply (drivers/update_runner.py): on
    the device `handpos update apply` as the transient unit handpos-update (systemd-run),
    from the profile's [update] runner = "child" (the simulator) a child process beside
    the terminal. The grant key lets apply take the code the keypad checked."""
    from board.configfile import config_path
    from drivers import update_runner
    board = profile.get("board", {}).get("name", "pizero2w")
    key = update_runner.grant_key(dd.keys.key("data")) if dd.keys is not None else None
    config_file = tr.get("config_file")
    if (profile.get("update") or {}).get("runner") == "child":
        data_dir = os.path.abspath(config["storage"]["data_dir"])
        env = dict(os.environ)
        env["HANDPOS_UPDATE_BESIDE_SIM"] = str(os.getpid())
        argv = update_runner.child_argv(sys.executable, data_dir, board, config_file)
        return update_runner.UpdateRunner(b.reactor, config, argv, env=env, key=key)
    argv = update_runner.systemd_argv(sys.executable, config_file or config_path(), board)
    return update_runner.UpdateRunner(b.reactor, config, argv, key=key, new_session=False)


def build_mfa(dd, term, system, console):
    """The operators' second factor (docs/mfa.md): TOTP enrolments sealed in
    DATA/keys/mfa.sealed under a key derived from the data key (drivers/mfa_store.py);
    codes checked against the system's UTC. Without keys (a fault that stops service
    anyway) enrolments would live in memory only, and the console says so."""
    from drivers.mfa_store import SealedSecrets
    from firmware.security import mfa

    def now():
        return mfa.utc_seconds(system.utc_time())
    if dd is not None and dd.keys is not None:
        secrets = SealedSecrets(dd.keys)
    else:
        console("mfa: the terminal's keys do not open: TOTP enrolments are not kept")
        secrets = mfa.MemorySecrets()
    # the store through the terminal: a store reopened after a fault is the one used
    return mfa.Mfa(secrets, lambda: term.store, now, system.random_bytes)


def qr_merchant(dd, config, console, term):
    """(mch_id, key) of the QR acquirer's merchant: sealed in the key store by a
    technician (`handpos qr-key load`, DATA/keys/qr.merchant), else the configuration's
    [qr] key, which only a lab configuration may hold. None, said on the console, when
    there is none or the sealed one does not open: QR payments are off, the rest of
    the terminal (cards, cash) goes on."""
    from drivers import keystore
    cfg = config["qr"]
    if dd is not None and dd.keys is None:
        console("qr: the terminal's keys do not open: QR payments are off")
        return None
    try:
        sealed = keystore.read_qr_key(dd.keys) if dd is not None else None
    except StorageFault as exc:
        console("qr: the merchant key does not open: %s: QR payments are off" % exc)
        try:
            term.store.audit("qr_key_damaged", "", str(exc))
        except (StorageFault, AttributeError):
            pass
        return None
    if sealed is not None:
        if cfg["mch_id"] and cfg["mch_id"] != sealed["mch_id"]:
            console("qr: [qr] mch_id %s differs from the loaded merchant key's %s: %s is used"
                    % (cfg["mch_id"], sealed["mch_id"], sealed["mch_id"]))
        if cfg["key"]:
            console("qr: the merchant key loaded in the key store is used, not [qr] key")
        return sealed["mch_id"], sealed["key"]
    if not cfg["key"]:
        console("qr: no merchant key loaded: a technician runs `handpos qr-key load`: "
                "QR payments are off")
        return None
    if not cfg["mch_id"]:
        console("qr: [qr] mch_id not set: QR payments are off")
        return None
    return cfg["mch_id"], cfg["key"]


def open_payments_storage(config, console, term, dd):
    """(journal, queue): the journal MACed under a key derived from the device data key,
    the store-and-forward queue sealed under the data key itself. Either one that
    cannot be opened stands as Unavailable, with the fault on the terminal: never an
    empty journal or queue in memory."""
    from drivers import saf_queue
    from drivers.sqlite_durable import mac_key
    folder = config["storage"]["data_dir"]
    tid = config["terminal"]["id"]
    qpath = os.path.join(folder, "saf.db")
    if dd.keys is None:
        # without the data key neither the queue nor the journal's MACs can be trusted
        fault = dd.fault
        _fault(term, fault)
        return Unavailable(fault), Unavailable(fault, tid)
    key = dd.keys.key("data")
    try:
        journal = SQLiteJournal(os.path.join(folder, "journal.db"), mac_key(key, "journal"),
                                on_fault=term.storage_fault)
    except JournalError as exc:
        console(str(exc))
        _fault(term, exc)
        journal = Unavailable(exc)
    try:
        queue = saf_queue.SafQueue(qpath, key, tid=tid, on_fault=term.storage_fault)
    except saf_queue.SafError as exc:
        console("offline queue: %s" % exc)
        if not isinstance(exc, StorageFault):
            exc = StorageFault("corrupt", "queue", str(exc))
        _fault(term, exc)
        queue = Unavailable(exc, tid)
    return journal, queue


def open_catalogue_storage(config, console, term, dd):
    """The catalogue and stock (catalogue.db), MACed under the data key; None without
    keys. One that cannot be opened is the terminal's storage fault (part catalogue)
    like any database: the items' prices and stock are not guessed."""
    if dd.keys is None:
        return None
    from drivers.catalogue_sqlite import CatalogueError, open_catalogue
    try:
        return open_catalogue(config["storage"]["data_dir"], dd.keys.key("data"), config,
                              on_fault=term.storage_fault)
    except StorageFault as exc:
        console("catalogue: %s" % exc)
        _fault(term, exc)
    except CatalogueError as exc:       # another currency's catalogue: named, not used
        console("catalogue: %s" % exc)
        term.selftests["catalogue"] = (False, str(exc))
    return None


def open_members_storage(config, console, term, dd):
    """The members and their points (members.db, docs/members.md): phone and name sealed
    under keys derived from the data key; None without keys or with [members] enabled
    false (the sale then has no member). One that cannot be opened is the terminal's
    storage fault (part members), like any database."""
    if dd.keys is None or not config.get("members", {}).get("enabled", True):
        return None
    from drivers.members_sqlite import open_members
    try:
        return open_members(config["storage"]["data_dir"], dd.keys.key("data"),
                            on_fault=term.storage_fault,
                            random_bytes=getattr(term.system, "random_bytes", None))
    except StorageFault as exc:
        console("members: %s" % exc)
        _fault(term, exc)
    return None


def _fault(term, fault):
    from firmware.core.store import fault_code
    term.selftests["storage"] = (False, "%s %s" % (fault_code(fault), fault))
    if term.fault is None or fault.kind == "corrupt":
        term.fault = fault


def check_storage(b, config, console, max_ms=1500):
    """The boot self-test of storage: a time-bounded PRAGMA quick_check of each database
    and the MACs of its recent records; what failed goes to term.storage_report, and
    any of it fails "storage" in the self-test."""
    term = b.terminal
    report = []
    parts = [("store", b.store), ("journal", b.journal), ("queue", b.queue)]
    if b.catalogue is not None:
        parts.append(("catalogue", b.catalogue))
    if b.members is not None:
        parts.append(("members", b.members))
    for part, db in parts:
        if isinstance(db, Unavailable):
            report.append((db.fault.kind, part, 0))
            continue
        check = getattr(db, "quick_check", None) or getattr(db, "selftest", None)
        try:
            ok, detail = check(max_ms)
            if ok is False:
                console("storage: %s quick_check: %s" % (part, detail))
                report.append(("corrupt", part, 0))
            elif ok is None:
                report.append(("unchecked", part, 0))
            if hasattr(db, "verify_recent"):
                bad = db.verify_recent()
                if bad:
                    console("storage: %s records failing their MAC: %s"
                            % (part, ", ".join(str(i) for i in bad[:20])))
                    report.append(("bad", part, len(bad)))
        except StorageFault as exc:
            console("storage: %s" % exc)
            report.append((exc.kind, part, 0))
    term.storage_report = report
    check_audit(b, console)
    if [r for r in report if r[0] != "unchecked"]:
        ok, detail = term.selftests.get("storage", (True, ""))
        what = "; ".join("%s %s" % (part, what) for what, part, n in report)
        term.selftests["storage"] = (False, what if ok else detail)
        try:
            term.store.audit("storage_check", "", what)
        except StorageFault:
            pass


def check_audit(b, console):
    """The boot self-test of the audit trail: the records since the last break found
    (at most 200) and the chain's sealed head. A broken trail does not stop service (it
    is a record of what happened, not what the terminal needs to take payments): the
    self-test and Diagnostics say "Audit trail: FAIL, broken at #n", the idle screen
    keeps a notice, the console names each problem, and the finding is itself sealed
    into the trail (audit_broken), so the next start checks from there."""
    term = b.terminal
    check = getattr(b.store, "audit_check_tail", None)
    if check is None or getattr(b.store, "audit_chain", None) is None:
        return
    try:
        verdict = check()
    except StorageFault as exc:         # the store's own fault is shown already
        console("audit: the trail could not be checked: %s" % exc)
        return
    if verdict is None:
        return
    if verdict.ok():
        term.selftests["audit"] = (True, "ok")
        return
    first = verdict.first_bad()
    term.audit_broken = first
    # None, not False: listed as broken, without holding the self-test's screen
    term.selftests["audit"] = (None, "broken at #%d" % first)
    texts = [text for seq, kind, text in verdict.problems]
    for text in texts[:20]:
        console("audit: %s" % text)
    if len(texts) > 20:
        console("audit: %d more problems: handpos audit verify lists them" % (len(texts) - 20))
    detail = "; ".join(texts[:5]) + ("; %d more" % (len(texts) - 5) if len(texts) > 5 else "")
    term.store.audit(b.store.audit_chain.BROKEN_EVENT, "", detail)


def probe_storage(b, config, console):
    """The terminal's retry: each database takes a real write again, or raises its
    StorageFault. A database that could not be opened at start is opened now."""
    term = b.terminal
    if isinstance(b.store, Unavailable):
        store = SQLiteStore(os.path.join(config["storage"]["data_dir"], "handpos.db"),
                            on_fault=term.storage_fault)
        b.store = term.store = term.auth.store = store
        audittrail.attach(store, b.datadir.keys if b.datadir else None, console)
    if isinstance(b.journal, Unavailable) or isinstance(b.queue, Unavailable):
        journal, queue = open_payments_storage(config, lambda line: None, _Sink(), b.datadir)
        for db in (journal, queue):
            if isinstance(db, Unavailable):
                raise db.fault
        journal.guard.on_fault = queue.guard.on_fault = term.storage_fault
        b.journal = term.payments.journal = journal
        b.queue = term.payments.queue = term.payments.forwarder.queue = queue
    for db in (b.store, b.journal, b.queue):
        db.probe()


class _Sink:
    """A terminal stand-in for opening storage again (faults go to the caller)."""
    fault = None

    def __init__(self):
        self.selftests = {}

    def storage_fault(self, fault):
        pass


def load_ca_keys(config):
    """The payment schemes' CA public keys for offline data authentication: the bundled
    test CA (config/emv_test_ca.json) only in test mode; a field terminal gets its keys
    with the acquirer's parameters (not yet built: SDA/DDA then fail, and the TVR says
    so, which online authorisation tolerates)."""
    if not config["security"]["test_keys"]:
        return []
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "config", "emv_test_ca.json")
    try:
        with open(path) as f:
            return json.load(f)["ca_keys"]
    except (OSError, ValueError, KeyError):
        return []
