"""The simulator's control socket: JSON lines over a Unix socket.

Tests and scripts drive the whole terminal through it as a black box: keys go in as
evdev events through the same pipe and keypad driver a person's keys take, the screen
comes back as the text of the screen model, receipts as the virtual printer's paper.

Requests (one JSON object a line) and their answers:
  {"cmd": "press", "keys": ["1", "ENTER"]}     -> {"ok": true} once the keys were handled
  {"cmd": "screen"}                            -> {"ok": true, "text", "title", "lines", ...}
  {"cmd": "wait", "text": "Menu", "timeout_ms": 5000}
                                               -> {"ok": true, "screen": ...} when the screen
                                                  shows text, {"ok": false, "error": ...} else
  {"cmd": "receipts"}                          -> {"ok": true, "receipts": ["...", ...]}
  {"cmd": "paper", "present": false}           -> {"ok": true}  (the virtual printer's paper)
  {"cmd": "swipe", "card": "visa_pin"}         -> {"ok": true}  (a test card through the HID
                                                  reader driver; or "track1"/"track2" given)
  {"cmd": "scan", "code": "6901234567892"}     -> {"ok": true, "code": ...} once the scanner
                                                  driver has read it: the code typed through
                                                  the HID scanner driver as a keyboard-wedge
                                                  scanner types it, then Enter (no "code":
                                                  the next of tools/sim/demo_codes.py;
                                                  "garbled": true: a misread)
  {"cmd": "journal"}                           -> {"ok": true, "records": [...]}
  {"cmd": "insert", "card": "online_pin"}      -> a tools/cards/vcard.py card into the chip reader
  {"cmd": "tap", "card": "no_cvm"}             -> a contactless tap (the card leaves after it)
  {"cmd": "remove"}                            -> the card out of the reader
  {"cmd": "network", "up": false}              -> cut the simulated network (the fault proxy
                                                  resets every connection) or bring it back;
                                                  "link": "host" or "qr" cuts one link only
  {"cmd": "wifi", "up": false}                 -> the fake nmcli says the Wi-Fi dropped (the
                                                  device disconnected, no address) or is back
  {"cmd": "queue"}                             -> the store-and-forward queue: records (no
                                                  card data), totals, the forwarder's progress
  {"cmd": "state"}                             -> operator, language, flows, printer, frames
  {"cmd": "snapshot", "path": "x.png"}         -> {"ok": true}  (the current frame as PNG)
  {"cmd": "qr_pay", "channel": "wechat"}       -> {"ok": true, "url": ..., "answer": {...}}: the
                                                  merchant's code on the screen (screen.qr)
                                                  paid as a phone would, through the QR
                                                  simulator's POST /sim/pay at [qr] address;
                                                  {"ok": false, "error": "no QR code on the
                                                  screen"} when none is shown
  {"cmd": "quit"}                              -> {"ok": true}, then the simulator exits
Anything else gets {"ok": false, "error": "..."} and the connection stays usable.
"""
import fcntl
import json
import os
import socket
import struct
import termios

from firmware.core.reactor import DeadDescriptor

MAX_LINE = 65536


def screen_dict(screen):
    if screen is None:
        return {"text": "", "title": "", "lines": [], "footer": "", "big": "", "selected": -1,
                "masked": "", "alert": None, "qr": ""}
    return {"text": screen.text(), "title": screen.title, "lines": screen.lines,
            "footer": screen.footer, "big": screen.big, "selected": screen.selected,
            "masked": screen.masked, "alert": screen.alert, "qr": getattr(screen, "qr", "")}


class ControlServer:
    def __init__(self, path, sim):
        self.path = path
        self.sim = sim
        self.reactor = sim.reactor
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.sock.setblocking(False)
        self.reactor.add_reader(self.sock, self._accept)
        self.clients = {}

    def _accept(self, fd, revents):
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.clients[conn.fileno()] = [conn, b""]
        self.reactor.add_reader(conn, self._readable, on_dead=self._gone)

    def _gone(self, fd, reason):
        entry = self.clients.pop(fd, None)
        if entry:
            entry[0].close()

    def _readable(self, fd, revents):
        entry = self.clients[fd]
        try:
            data = entry[0].recv(65536)
        except BlockingIOError:
            return
        if not data:
            raise DeadDescriptor("client closed")
        entry[1] += data
        while b"\n" in entry[1]:
            line, entry[1] = entry[1].split(b"\n", 1)
            self._request(entry[0], line)
        if len(entry[1]) > MAX_LINE:
            entry[1] = b""
            self._reply(entry[0], {"ok": False, "error": "request line too long"})

    def _reply(self, conn, obj):
        try:
            conn.setblocking(True)
            conn.sendall((json.dumps(obj, ensure_ascii=False) + "\n").encode())
            conn.setblocking(False)
        except OSError:
            pass

    def _request(self, conn, line):
        try:
            req = json.loads(line)
            cmd = req["cmd"]
        except (ValueError, KeyError, TypeError):
            self._reply(conn, {"ok": False, "error": "not a JSON object with a \"cmd\""})
            return
        handler = getattr(self, "cmd_" + str(cmd), None)
        if handler is None:
            self._reply(conn, {"ok": False, "error": "unknown cmd %r" % cmd})
            return
        try:
            handler(conn, req)
        except (KeyError, TypeError, ValueError) as exc:
            self._reply(conn, {"ok": False, "error": "bad request: %s" % exc})
        except Exception as exc:
            if not getattr(exc, "storage_fault", False):
                raise
            # the terminal's own screen says so; the client gets an answer, not a wait
            self._reply(conn, {"ok": False, "error": "storage: %s" % exc})

    # -- commands -------------------------------------------------------------
    def cmd_press(self, conn, req):
        names = req["keys"]
        if isinstance(names, str):
            names = [names]
        unknown = [k for k in names if k not in self.sim.key_codes]
        if unknown:
            self._reply(conn, {"ok": False, "error": "unknown key(s): %s; known: %s"
                               % (", ".join(map(str, unknown)), " ".join(sorted(self.sim.key_codes)))})
            return
        for name in names:
            self.sim.press(name)
        self._when_keys_handled(conn, {"ok": True})

    def _when_keys_handled(self, conn, answer, device=None):
        # The keys sit in the keypad pipe until the keypad driver reads them; answer
        # only once it has, so a client's next request sees their effect.
        device = device or self.sim.keypad_device
        if _pending_bytes(device.fileno()) and self.reactor.watching(device):
            self.reactor.call_later(1, self._when_keys_handled, conn, answer, device)
            return
        self._reply(conn, answer)

    def cmd_scan(self, conn, req):
        code = req.get("code")
        if code is not None and (not isinstance(code, str) or not code):
            self._reply(conn, {"ok": False, "error": "\"code\" is the barcode's text, "
                               "like \"6901234567892\""})
            return
        try:
            code = self.sim.scan(code, garbled=bool(req.get("garbled")))
        except ValueError as exc:       # a character no US keyboard layout types
            self._reply(conn, {"ok": False, "error": "a scanner cannot type that code: %s" % exc})
            return
        if code is None:
            self._reply(conn, {"ok": False, "error": "this board has no scanner"})
            return
        self._when_keys_handled(conn, {"ok": True, "code": code}, self.sim.scanner_device)

    def cmd_screen(self, conn, req):
        answer = {"ok": True}
        answer.update(screen_dict(self.sim.terminal.screen))
        self._reply(conn, answer)

    def cmd_wait(self, conn, req):
        text = req["text"]
        deadline = self.reactor.clock() + int(req.get("timeout_ms", 5000))
        self._wait(conn, text, deadline)

    def _wait(self, conn, text, deadline):
        screen = self.sim.terminal.screen
        if screen is not None and text in screen.text():
            self._reply(conn, {"ok": True, "screen": screen_dict(screen)})
        elif self.reactor.clock() >= deadline:
            self._reply(conn, {"ok": False, "error": "timed out waiting for %r" % text,
                               "screen": screen_dict(screen)})
        else:
            self.reactor.call_later(10, self._wait, conn, text, deadline)

    def cmd_receipts(self, conn, req):
        self._reply(conn, {"ok": True, "receipts": [r.text() for r in self.sim.vprinter.receipts]})

    def cmd_swipe(self, conn, req):
        from tools.cards.stripes import TEST_CARDS
        card = req.get("card")
        if card is not None and card not in TEST_CARDS and card != "unreadable":
            self._reply(conn, {"ok": False, "error": "unknown test card %r; known: %s"
                               % (card, ", ".join(sorted(TEST_CARDS) + ["unreadable"]))})
            return
        self.sim.swipe(req.get("track1"), req.get("track2"), card)
        self._reply(conn, {"ok": True})

    def cmd_insert(self, conn, req):
        self._chip(conn, "insert", req)

    def cmd_tap(self, conn, req):
        self._chip(conn, "tap", req)

    def cmd_remove(self, conn, req):
        self._chip(conn, "remove", req)

    def _chip(self, conn, action, req):
        slot = self.sim.chip
        if slot is None:
            self._reply(conn, {"ok": False, "error": "this board has no chip reader"})
            return
        if action == "remove":
            slot.remove()
        else:
            card = req.get("card", "online_pin")
            if card not in slot.vcard.PROFILES:
                self._reply(conn, {"ok": False, "error": "unknown card profile %r; known: %s"
                                   % (card, ", ".join(sorted(slot.vcard.PROFILES)))})
                return
            getattr(slot, action)(card)
        self._reply(conn, {"ok": True})

    def cmd_journal(self, conn, req):
        self._reply(conn, {"ok": True, "records": self.sim.terminal.payments.journal.find()})

    def cmd_network(self, conn, req):
        link = req.get("link")
        if link not in (None, "host", "qr"):
            self._reply(conn, {"ok": False, "error": "unknown link %r: \"host\" (the card "
                               "host), \"qr\" (the QR acquirer) or none for both" % link})
            return
        if not self.sim.set_network(bool(req["up"]), link):
            self._reply(conn, {"ok": False, "error": "no fault proxy%s: the simulator runs "
                               "without its %s simulator" % (
                                   " for the %s link" % link if link else "",
                                   "QR acquirer" if link == "qr" else "host")})
            return
        self._reply(conn, {"ok": True, "up": self.sim.network_up, "links": self.sim.links_up})

    def cmd_wifi(self, conn, req):
        if not self.sim.set_wifi(bool(req.get("up", False))):
            self._reply(conn, {"ok": False, "error": "no fake nmcli: the board profile has "
                               "no [network] nmcli = \"sim\""})
            return
        self._reply(conn, {"ok": True, "up": bool(req.get("up", False))})

    def cmd_queue(self, conn, req):
        pay = self.sim.terminal.payments
        totals = {cur: list(v) for cur, v in pay.queue.totals().items()}
        self._reply(conn, {"ok": True, "records": pay.queue.records(), "totals": totals,
                           "progress": pay.forwarder.progress()})

    def cmd_paper(self, conn, req):
        self.sim.vprinter.set_paper(bool(req["present"]))
        self._reply(conn, {"ok": True})

    def cmd_state(self, conn, req):
        term = self.sim.terminal
        self._reply(conn, {"ok": True, "operator": term.operator["id"] if term.operator else None,
                           "role": term.role(), "language": term.t.lang,
                           "flows": [f.NAME + ":" + str(f.state) for f in term.flows],
                           "printer": term.printer_state, "frames": self.sim.frames,
                           "cl_lights": term.cl_lights, "host_link": term.link_state,
                           "qr_link": term.payments.qr.link_state
                           if term.payments is not None and term.payments.qr is not None
                           else None,
                           "pins_ever_on": sorted({h[0] for h in self.sim.pins.history if h[1]}),
                           "selftests": {k: [v[0], v[1]] for k, v in term.selftests.items()}})

    def cmd_snapshot(self, conn, req):
        self.sim.save_frame(req["path"])
        self._reply(conn, {"ok": True})

    def cmd_qr_pay(self, conn, req):
        screen = self.sim.terminal.screen
        url = getattr(screen, "qr", "") if screen is not None else ""
        if not url:
            self._reply(conn, {"ok": False, "error": "no QR code on the screen"})
            return
        qr = dict(self.sim.terminal.config["qr"])
        if self.sim.qr_proxy is not None:   # the phone's own network: past the proxy
            qr["address"] = "127.0.0.1:%d" % self.sim.qr_proxy.upstream_port
        try:
            status, answer = phone_pay(qr, url, req.get("channel", "wechat"))
        except (OSError, ValueError) as exc:
            self._reply(conn, {"ok": False, "url": url,
                               "error": "the QR simulator did not answer: %s" % exc})
            return
        if status != 200:
            self._reply(conn, {"ok": False, "url": url, "answer": answer,
                               "error": "the QR simulator said %d: %s" % (
                                   status, answer.get("msg", ""))})
            return
        self._reply(conn, {"ok": True, "url": url, "answer": answer})

    def cmd_quit(self, conn, req):
        self._reply(conn, {"ok": True})
        self.sim.quit()

    def close(self):
        for fd in list(self.clients):
            self.reactor.remove(fd)
            self._gone(fd, "closing")
        self.reactor.remove(self.sock)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def phone_pay(qr_config, code_url, channel="wechat", timeout=5.0):
    """A customer's phone paying the merchant's code: POST /sim/pay to the QR acquirer
    simulator (tools/host/qrsim.py) at [qr] address, over HTTPS with its CA (the address
    of an in-process QrSim in the tests). -> (HTTP status, the answer's JSON object).
    Blocks for at most timeout: the simulator answers from its own threads or process."""
    import http.client
    import ssl
    host, port = qr_config["address"].rsplit(":", 1)
    host = host.strip("[]")
    if qr_config.get("ca_file"):
        context = ssl.create_default_context(cafile=qr_config["ca_file"])
    else:                               # the lab without a CA: the loopback simulator
        context = ssl._create_unverified_context()
    conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context)
    try:
        body = json.dumps({"code_url": code_url, "channel": channel}).encode()
        conn.request("POST", "/sim/pay", body=body,
                     headers={"Content-Type": "application/json; charset=utf-8"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        answer = json.loads(data.decode("utf-8"))
    except ValueError:
        answer = {"msg": data[:200].decode("utf-8", "replace")}
    return resp.status, answer if isinstance(answer, dict) else {"msg": str(answer)}


def _pending_bytes(fd):
    buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return struct.unpack("i", buf)[0]


class ControlClient:
    """A blocking client for tests and scripts."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def call(self, cmd, **args):
        args["cmd"] = cmd
        self.sock.sendall((json.dumps(args) + "\n").encode())
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("simulator closed the control socket")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def press(self, *names):
        answer = self.call("press", keys=list(names))
        if not answer["ok"]:
            raise ValueError(answer["error"])
        return answer

    def scan(self, code=None, garbled=False):
        """Scan code (None: the next demo code) through the simulated HID scanner."""
        args = {"garbled": True} if garbled else {}
        if code is not None:
            args["code"] = code
        answer = self.call("scan", **args)
        if not answer["ok"]:
            raise ValueError(answer["error"])
        return answer["code"]

    def screen(self):
        return self.call("screen")

    def wait(self, text, timeout_ms=5000):
        answer = self.call("wait", text=text, timeout_ms=timeout_ms)
        if not answer["ok"]:
            raise AssertionError("%s; screen was:\n%s" % (answer["error"], answer["screen"]["text"]))
        return answer["screen"]

    def close(self):
        self.sock.close()
