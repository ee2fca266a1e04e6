"""`handpos sim`: the terminal on a PC, with the same core and drivers as the handheld.

Only the transports differ: the keypad driver reads real evdev events from a pipe the
simulator writes (your keyboard, or the control socket), the display driver draws
into luma's dummy device which the simulator copies to your terminal, the printer
driver writes ESC/POS to a pty whose far end is a virtual printer showing the paper.
"""
import curses
import locale
import os
import signal
import sys

import evdev
from luma.core.device import dummy

from board import compose
from drivers.display import image_to_png
from drivers.evdev_pipe import PipeInputDevice
from drivers.gpio import MockPins
from drivers.printer import open_serial
from drivers.system import LinuxSystem
from tools.cards.stripes import card_tracks
from tools.sim.vprinter import VirtualPrinter, make_pty

def payment_code(channel):
    """A made-up customer payment code of channel (wechat: 18 digits from 13; alipay: 18
    digits from 28), fresh each call: the acquirer takes a code once."""
    import random
    prefix = {"wechat": "13", "alipay": "28"}[channel]
    return prefix + "".join(random.choice("0123456789") for _ in range(16))


# PC keys that are not letters or digits, as curses reports them, to evdev codes.
CURSES_KEYS = {
    10: "KEY_ENTER", 13: "KEY_ENTER", curses.KEY_ENTER: "KEY_ENTER",
    27: "KEY_ESC", 127: "KEY_BACKSPACE", 8: "KEY_BACKSPACE", curses.KEY_BACKSPACE: "KEY_BACKSPACE",
    curses.KEY_DC: "KEY_DELETE", curses.KEY_UP: "KEY_UP", curses.KEY_DOWN: "KEY_DOWN",
    curses.KEY_F1: "KEY_F1", curses.KEY_F2: "KEY_F2", curses.KEY_F3: "KEY_F3",
    curses.KEY_F4: "KEY_F4", ord("."): "KEY_DOT",
}
# Simulator controls: these never reach the keypad.
SIM_PAPER = ord("P")
SIM_QUIT = ord("Q")
SIM_NETWORK = ord("N")
SIM_SCAN = ord("s")             # the next demo barcode (tools/sim/demo_codes.py)
SIM_SCAN_GARBLED = ord("S")     # a misread: a code with a key no US layout types
SIM_SCAN_RECEIPT = ord("R")     # the barcode of the last receipt on the paper (a refund)
# a customer's payment code on the phone, a fresh one each time (made-up digits)
SIM_QR_CODES = {ord("w"): "wechat", ord("y"): "alipay"}

HELP = ("keys: 0-9  z=00  .  Enter=ENTER  Esc/x=CANCEL  Bksp=BKSP  c/Del=CLEAR  "
        "F1-F4  Up/Down  m=MENU   P=paper in/out  N=network cut/back  Q=quit")
HELP_CARDS = ("swipe: !=Visa PIN  @=MC signature  #=chip card  $=expired  %=bad number  "
              "^=unreadable   (PIN of every test card: 1234)")

# Published test card numbers only. Expiry December 2030.
CARD_KEYS = {ord("!"): "visa_pin", ord("@"): "mc_signature", ord("#"): "visa_chip",
             ord("$"): "expired", ord("%"): "bad_luhn", ord("^"): "unreadable"}
# Chip cards (tools/cards/vcard.py profiles) put into pcscd's vpcd reader: insert, tap, remove.
CHIP_KEYS = {ord("i"): ("insert", "online_pin"), ord("o"): ("insert", "offline_pin"),
             ord("a"): ("insert", "declines_aac"), ord("k"): ("insert", "blocked_app"),
             ord("d"): ("insert", "dda"), ord("t"): ("tap", "no_cvm"), ord("r"): ("remove", None)}
HELP_SCAN = ("scan: s=next demo barcode (items, scale labels, a bad check digit)  S=garbled read  "
             "R=the last receipt's barcode  w=WeChat Pay code  y=Alipay code")
HELP_CHIP = ("chip: i=insert (online PIN)  o=offline PIN  a=card declines  k=blocked  d=DDA  "
             "t=tap  r=remove")


class ChipSlot:
    """The card in pcscd's Virtual PCD reader: a tools/cards/vcard.py card connected to vpcd
    in a thread (vpcd sees a connection as a card inserted, its end as removal)."""

    def __init__(self, port=None, log=None):
        from tools.cards import vcard
        self.vcard = vcard
        self.port = port or vcard.VPCD_PORT
        self.log = log
        self.profile = None
        self._stop = None
        self._thread = None

    def insert(self, profile, remove_after_ms=None):
        import threading
        self.remove()
        self._stop = threading.Event()
        self.profile = profile
        self._thread = threading.Thread(
            target=self.vcard.run_vpcd_card, name="vcard",
            kwargs={"profile": profile, "port": self.port, "stop_event": self._stop,
                    "remove_after_ms": remove_after_ms, "log": self.log}, daemon=True)
        self._thread.start()

    def tap(self, profile):
        # a tap: the card stays in the field for the one exchange a contactless
        # transaction needs, then leaves
        self.insert(profile, remove_after_ms=1500)

    def remove(self):
        if self._stop is not None:
            self._stop.set()
            self._thread.join(3)
        self._stop = self._thread = self.profile = None


def pc_key_to_code(ch):
    """The evdev code name a PC key sends, or None for keys a keypad has no use for."""
    if ch in CURSES_KEYS:
        return CURSES_KEYS[ch]
    if 0 <= ch < 256:
        c = chr(ch)
        if c.isdigit():
            return "KEY_" + c
        if c.isalpha():
            return "KEY_" + c.upper()
    return None


class Simulator:
    def __init__(self, profile, config, snapshot_dir=None, control_path=None,
                 synced=None, auth_iterations=None, console=None, clock=None, chip_port=None,
                 proxy=None, qr_proxy=None):
        self.snapshot_dir = snapshot_dir
        self.proxy = proxy              # tools.host.faultproxy between terminal and host, if any
        self.qr_proxy = qr_proxy        # and one between the terminal and the QR acquirer
        self.network_up = True
        self.links_up = {"host": True, "qr": True}
        self.frames = 0
        self.receipts_saved = 0
        self.last_image = None
        self.ui = None
        if snapshot_dir:
            os.makedirs(snapshot_dir, exist_ok=True)

        self.keypad_device = PipeInputDevice()
        self.msr_device = PipeInputDevice(name="handpos-sim-msr")
        self.scanner_device = PipeInputDevice(name="handpos-sim-scanner")
        self.scans = 0                  # demo codes scanned so far (the next one's index)
        self.last_scan = None
        self.printer_master, printer_slave = make_pty()
        spec = profile["display"]
        self.luma = dummy(width=spec.get("width", 128), height=spec.get("height", 64), mode="1")
        transports = {
            "luma_device": self.luma,
            "keypad_device": self.keypad_device,
            "printer_port": open_serial(printer_slave, profile["printer"].get("baud", 9600)),
            "pins": MockPins(),
            "system": LinuxSystem(synced=synced),
            "on_frame": self._on_frame,
            "clock": clock,
            "msr_device": self.msr_device,
            "scanner_device": self.scanner_device,
        }
        # issue 17: the fake nmcli under the network driver, its state beside the data
        # folder (DATA-net/nmcli.json); the control socket's "wifi" drops the Wi-Fi there
        self.nmcli_state = None
        if profile.get("network", {}).get("nmcli") == "sim":
            from tools.sim import fake_nmcli
            net_dir = os.path.abspath(config["storage"]["data_dir"]).rstrip("/") + "-net"
            os.makedirs(net_dir, mode=0o700, exist_ok=True)
            self.nmcli_state = os.path.join(net_dir, "nmcli.json")
            if not os.path.exists(self.nmcli_state):
                fake_nmcli.make_state(self.nmcli_state)
            transports["nmcli_path"] = fake_nmcli.install(os.path.join(net_dir, "bin"),
                                                          self.nmcli_state)
        kwargs = {"auth_iterations": auth_iterations}
        if console is not None:
            kwargs["console"] = console
        self.built = compose.build(profile, config, transports, **kwargs)
        self.reactor = self.built.reactor
        self.terminal = self.built.terminal
        self.pins = transports["pins"]

        self.vprinter = VirtualPrinter(self.printer_master)
        self.vprinter.on_receipt = self._on_receipt
        self.vprinter.attach(self.reactor)

        # POS key name -> evdev code, from the board's keymap (first code wins)
        self.key_codes = {}
        for code_name, pos_key in profile["keypad"]["keymap"].items():
            self.key_codes.setdefault(pos_key, evdev.ecodes.ecodes[code_name])

        self.chip = ChipSlot(chip_port) if profile.get("chip") else None

        self.control = None
        if control_path:
            from tools.sim.control import ControlServer
            self.control = ControlServer(control_path, self)

    # -- events from the terminal's parts -------------------------------------
    def _on_frame(self, image):
        self.frames += 1
        self.last_image = image
        if self.snapshot_dir:
            image_to_png(image, os.path.join(self.snapshot_dir, "frame_%04d.png" % self.frames))
        if self.ui is not None:
            self.ui.draw()

    def _on_receipt(self, receipt):
        self.receipts_saved += 1
        if self.snapshot_dir:
            self.vprinter.render_png(receipt, os.path.join(
                self.snapshot_dir, "receipt_%04d.png" % self.receipts_saved))
        if self.ui is not None:
            self.ui.draw()

    # -- driving ----------------------------------------------------------------
    def press(self, name):
        self.keypad_device.press(self.key_codes[name])

    def swipe(self, track1=None, track2=None, card=None):
        """Swipe through the HID reader driver: the tracks typed as a wedge reader types."""
        from drivers.msr import keystrokes
        if card is not None:
            track1, track2 = card_tracks(card)
        self.msr_device.inject_events(keystrokes((track1 or "") + (track2 or "")))

    def scan(self, code=None, garbled=False):
        """Scan through the HID scanner driver: code (default: the next demo code) typed
        as a keyboard-wedge scanner types it, then Enter. garbled puts a key no US
        layout types in the middle (a scanner on another layout). The code scanned, or
        None when the board has no scanner."""
        from drivers.scanner import scan_keystrokes
        from tools.sim.demo_codes import SCAN_ORDER
        if self.built.scanner is None:
            return None
        if code is None:
            code = SCAN_ORDER[self.scans % len(SCAN_ORDER)]
            if not garbled:             # a misread: the same code is scanned again next
                self.scans += 1
        events = scan_keystrokes(code)
        if garbled:
            f13 = evdev.ecodes.KEY_F13
            events[4:4] = [(evdev.ecodes.EV_KEY, f13, 1), (evdev.ecodes.EV_KEY, f13, 0)]
        self.scanner_device.inject_events(events)
        self.last_scan = code + (" (garbled)" if garbled else "")
        return code

    def scan_receipt(self):
        """Scan the barcode the virtual printer last drew (the customer's receipt, brought
        back for a refund): the code, or None when no receipt on the paper has one."""
        for receipt in reversed(self.vprinter.receipts):
            codes = [c for c in receipt.barcodes if c]
            if codes:
                return self.scan(codes[-1])
        self.last_scan = "(no receipt with a barcode yet)"
        return None

    def press_code(self, code_name):
        code = evdev.ecodes.ecodes.get(code_name)
        if code is not None:
            self.keypad_device.press(code)

    def set_network(self, up, link=None):
        """Cut the simulated network (every connection reset, new ones too) or bring it
        back: both links, or only link "host" (the card host) or "qr" (the QR acquirer).
        False when there is no fault proxy for it (no host or QR simulator)."""
        proxies = {"host": self.proxy, "qr": self.qr_proxy}
        names = [link] if link else [n for n in proxies if proxies[n] is not None]
        if not names or any(proxies.get(n) is None for n in names):
            return False
        for name in names:
            if up:
                proxies[name].set("pass")
            else:
                proxies[name].set("reset", existing=True, new=True)
            self.links_up[name] = bool(up)
        self.network_up = all(self.links_up[n] for n in proxies if proxies[n] is not None)
        return True

    def set_wifi(self, up):
        """The fake nmcli's Wi-Fi drops (the device disconnected, no address, nothing in
        a scan) or comes back; False without the fake nmcli."""
        if self.nmcli_state is None:
            return False
        from tools.sim import fake_nmcli
        fake_nmcli.set_wifi(self.nmcli_state, up)
        return True

    def save_frame(self, path):
        if self.last_image is not None:
            image_to_png(self.last_image, path)

    def start(self):
        self.terminal.start()

    def run(self):
        self.start()
        self.reactor.run()

    def quit(self):
        self.reactor.stop()

    def close(self):
        if self.control is not None:
            self.control.close()
        for proxy in (self.proxy, self.qr_proxy):
            if proxy is not None:
                proxy.stop()
        if self.chip is not None:
            self.chip.remove()
        self.vprinter.close()           # the pty pair goes with it
        self.built.close()
        for device in (self.keypad_device, self.msr_device, self.scanner_device):
            device.close_writer()
            device.close()


class CursesUI:
    """Draws the panel and the paper into the PC's terminal; reads the PC's keys."""

    def __init__(self, sim, stdscr):
        self.sim = sim
        self.scr = stdscr
        curses.curs_set(0)
        stdscr.nodelay(True)
        stdscr.keypad(True)
        curses.set_escdelay(25)
        sim.reactor.add_reader(sys.stdin.fileno(), self._keys)
        self.last_pc_key = ""

    def _keys(self, fd, revents):
        while True:
            ch = self.scr.getch()
            if ch == -1:
                break
            if ch == curses.KEY_RESIZE:
                self.scr.clear()
                continue
            if ch == SIM_QUIT or ch == 3:
                self.sim.quit()
                return
            if ch == SIM_PAPER:
                self.sim.vprinter.set_paper(not self.sim.vprinter.paper)
                continue
            if ch == SIM_NETWORK:
                self.sim.set_network(not self.sim.network_up)
                continue
            if ch in (SIM_SCAN, SIM_SCAN_GARBLED):
                self.sim.scan(garbled=ch == SIM_SCAN_GARBLED)
                continue
            if ch == SIM_SCAN_RECEIPT:
                self.sim.scan_receipt()
                continue
            if ch in SIM_QR_CODES:
                self.sim.scan(payment_code(SIM_QR_CODES[ch]))
                continue
            if ch in CARD_KEYS:
                self.sim.swipe(card=CARD_KEYS[ch])
                continue
            if ch in CHIP_KEYS and self.sim.chip is not None:
                action, card = CHIP_KEYS[ch]
                if action == "remove":
                    self.sim.chip.remove()
                else:
                    getattr(self.sim.chip, action)(card)
                continue
            code = pc_key_to_code(ch)
            if code is not None:
                self.last_pc_key = code
                self.sim.press_code(code)
        self.draw()

    def _panel_rows(self, image, braille):
        w, h = image.size
        px = image.load()
        rows = []
        if not braille:
            for y in range(0, h, 2):
                row = []
                for x in range(w):
                    top = px[x, y]
                    bottom = px[x, y + 1] if y + 1 < h else 0
                    row.append("█" if top and bottom else "▀" if top else "▄" if bottom else " ")
                rows.append("".join(row))
            return rows
        dots = ((0, 0, 0x01), (0, 1, 0x02), (0, 2, 0x04), (1, 0, 0x08), (1, 1, 0x10),
                (1, 2, 0x20), (0, 3, 0x40), (1, 3, 0x80))
        for y in range(0, h, 4):
            row = []
            for x in range(0, w, 2):
                bits = 0
                for dx, dy, bit in dots:
                    if x + dx < w and y + dy < h and px[x + dx, y + dy]:
                        bits |= bit
                row.append(chr(0x2800 + bits))
            rows.append("".join(row))
        return rows

    def _put(self, y, x, text):
        maxy, maxx = self.scr.getmaxyx()
        if 0 <= y < maxy and x < maxx:
            try:
                self.scr.addstr(y, x, text[:max(0, maxx - x - 1)])
            except curses.error:
                pass

    def draw(self):
        sim = self.sim
        maxy, maxx = self.scr.getmaxyx()
        self.scr.erase()
        image = sim.last_image
        width = image.size[0] if image is not None else 128
        braille = maxx < width + 40 or maxy < 40
        rows = self._panel_rows(image, braille) if image is not None else []
        panel_w = (width // 2 if braille else width) + 2
        self._put(0, 0, "┌" + "─" * (panel_w - 2) + "┐")
        for i, row in enumerate(rows):
            self._put(1 + i, 0, "│" + row + "│")
        self._put(1 + len(rows), 0, "└" + "─" * (panel_w - 2) + "┘")
        # the paper, right of the panel
        px = panel_w + 2
        paper = sim.vprinter.receipts[-1].text().split("\n") if sim.vprinter.receipts else []
        self._put(0, px, "paper (%d receipt%s)%s" % (len(sim.vprinter.receipts),
                                                   "" if len(sim.vprinter.receipts) == 1 else "s",
                                                   "" if sim.vprinter.paper else "  NO PAPER"))
        room = maxy - 6
        for i, line in enumerate(paper[-room:] if room > 0 else []):
            self._put(1 + i, px, "|" + line.ljust(32)[:32] + "|")
        term = sim.terminal
        y = max(len(rows) + 3, 3)
        if maxx - px < 36:
            y = max(y, 3)
        net = "" if sim.proxy is None and sim.qr_proxy is None else (
            "   network: up" if sim.network_up else "   network: CUT" if not any(
                sim.links_up[n] for n, p in (("host", sim.proxy), ("qr", sim.qr_proxy)) if p)
            else "   network: %s CUT" % " ".join(
                n.upper() for n in ("host", "qr") if not sim.links_up[n]))
        self._put(maxy - 5, 0, "printer: %s   host: %s%s   language: %s   operator: %s   last key: %s" % (
            term.printer_state, term.link_state, net, term.t.lang,
            term.operator["id"] if term.operator else "-", term.last_key or "-"))
        self._put(maxy - 4, 0, HELP_SCAN + ("   [last: %s]" % sim.last_scan if sim.last_scan else ""))
        self._put(maxy - 3, 0, HELP)
        self._put(maxy - 2, 0, HELP_CARDS)
        if sim.chip is not None:
            self._put(maxy - 1, 0, HELP_CHIP + ("   [card: %s]" % sim.chip.profile if sim.chip.profile else ""))
        self.scr.refresh()


def run_interactive(sim):
    locale.setlocale(locale.LC_ALL, "")

    def main(stdscr):
        sim.ui = CursesUI(sim, stdscr)
        sim.run()

    curses.wrapper(main)


def install_signal_handlers(sim):
    def stop(signum, frame):
        sim.quit()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
