"""Network settings for the technician: Wi-Fi, the address, the host; each tested on the spot.

  1 Status    the link, address, gateway and DNS as NetworkManager has them
  2 Wi-Fi     scan, pick a network, the passphrase typed by multi-tap on the digit keys
              (each key cycles its letters, then its digit; F2 upper/lower case) or
              scanned from a Wi-Fi QR code (WIFI:S:<ssid>;T:WPA;P:<passphrase>;;, which
              also works on the list), then join and test the host
  3 Address   DHCP, or a static address (address, prefix, gateway, DNS typed with the
              dot key), checked whole before anything is changed, then applied and tested
  4 Host      the acquirer host's address and port, tested (TCP and TLS) before saved

Bad input says one line and changes nothing: a wrong static address, a port out of
range, a passphrase too short. The work is done by term.network (drivers/network.py
over nmcli); this flow only asks and shows.
"""
from firmware.core import events, keys
from firmware.flows.common import Field, MenuFlow, MultiTap
from firmware.ui.screen import BODY_ROWS, ROW_COLUMNS, wrap

WAIT_MS = 60000
HOST_SETTING = "host.address"       # the host a technician set here (board/service.py)
# multi-tap: each key's characters in turn, its digit last; 1 holds the signs
TAPS = {"1": ".-_@!?#*+/1", "2": "abc2", "3": "def3", "4": "ghi4", "5": "jkl5",
        "6": "mno6", "7": "pqrs7", "8": "tuv8", "9": "wxyz9", "0": " 0"}
PSK_MIN, PSK_MAX = 8, 63


# -- checks (pure: the tests call them too) --------------------------------------------------
def parse_ipv4(text):
    """(a, b, c, d) for a dotted quad, None for anything else (no leading zeros)."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    out = []
    for p in parts:
        if not p or not p.isdigit() or len(p) > 3 or (len(p) > 1 and p[0] == "0"):
            return None
        v = int(p)
        if v > 255:
            return None
        out.append(v)
    return tuple(out)


def _int(q):
    return (q[0] << 24) | (q[1] << 16) | (q[2] << 8) | q[3]


def check_static(address, prefix, gateway, dns):
    """None when the static settings can work, else the message id of the first problem."""
    a = parse_ipv4(address)
    if a is None:
        return "net_bad_address"
    if not prefix.isdigit() or not 8 <= int(prefix) <= 30:
        return "net_bad_prefix"
    p = int(prefix)
    mask = (0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF
    ai = _int(a)
    if a[0] in (0, 127) or a[0] >= 224:
        return "net_bad_address"
    if ai & ~mask & 0xFFFFFFFF in (0, ~mask & 0xFFFFFFFF):
        return "net_bad_host_part"          # the network's own address or its broadcast
    if gateway:
        g = parse_ipv4(gateway)
        if g is None:
            return "net_bad_gateway"
        if _int(g) & mask != ai & mask or _int(g) == ai:
            return "net_gw_outside"
    if dns:
        for one in dns.split(","):
            if parse_ipv4(one) is None:
                return "net_bad_dns"
    return None


def check_host(text):
    """None for an IPv4 address or a host name, else the message id of the problem."""
    if not text:
        return "net_bad_host"
    if text.replace(".", "").isdigit():
        return None if parse_ipv4(text) is not None else "net_bad_host"
    for ch in text:
        if not (ch.isalpha() or ch.isdigit() or ch in ".-"):
            return "net_bad_host"
    return None


def check_port(text):
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        return "net_bad_port"
    return None


def check_psk(text, security="WPA2"):
    """WPA passphrases are 8 to 63 printable characters; an open network takes none."""
    if not security:
        return None
    if len(text) < PSK_MIN:
        return "net_psk_short"
    if len(text) > PSK_MAX:
        return "net_psk_long"
    for ch in text:
        if not " " <= ch <= "~":
            return "net_psk_chars"
    return None


def parse_wifi_qr(text):
    """{"ssid", "security", "psk"} from a Wi-Fi QR code (WIFI:S:..;T:WPA;P:..;;, with
    backslash escapes), None for any other text."""
    if not text.startswith("WIFI:"):
        return None
    fields = {}
    cur = []
    key = None
    i = len("WIFI:")
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if ch == ":" and key is None:
            key = "".join(cur)
            cur = []
        elif ch == ";":
            if key is not None:
                fields[key] = "".join(cur)
            key = None
            cur = []
        else:
            cur.append(ch)
        i += 1
    if not fields.get("S"):
        return None
    kind = fields.get("T", "")
    return {"ssid": fields["S"], "security": "" if kind in ("", "nopass") else kind,
            "psk": fields.get("P", "")}


class AddressField(Field):
    """Digits and the dot key: an IPv4 address as it is typed."""

    def key(self, name):
        if name == keys.DOT:
            if len(self.value) >= self.max_len:
                return False
            self.value += "."
            return True
        return Field.key(self, name)


STATES = dict(MenuFlow.STATES)
STATES["notice"] = {"timeout": 60000,
                    "on": {keys.ENTER: "back", keys.CANCEL: "back", "timeout": "back",
                           keys.UP: "notice_up", keys.DOWN: "notice_down"}}
STATES["wait"] = {"timeout": WAIT_MS, "on": {keys.CANCEL: "abandon", "timeout": "waited_out"}}
STATES["wifi_list"] = {"timeout": "menu_timeout_s",
                       "on": {keys.UP: "wifi_up", keys.DOWN: "wifi_down", keys.ENTER: "wifi_pick",
                              "digit": "wifi_digit", keys.CANCEL: "back", events.SCAN: "scanned",
                              events.SCAN_ERROR: "scan_failed"}}
STATES["psk"] = {"timeout": "entry_timeout_s",
                 "on": {"digit": "type_psk", keys.BKSP: "type_psk", keys.CLEAR: "type_psk",
                        keys.F2: "type_psk", keys.ENTER: "psk_done", keys.CANCEL: "back",
                        events.SCAN: "scanned", events.SCAN_ERROR: "scan_failed"}}
STATES["addr_mode"] = {"timeout": "menu_timeout_s",
                       "on": {"1": "use_dhcp", "2": "use_static", keys.CANCEL: "back"}}
STATES["field"] = {"timeout": "entry_timeout_s",
                   "on": {"digit": "type_field", keys.DOT: "type_field", keys.BKSP: "type_field",
                          keys.CLEAR: "type_field", keys.ENTER: "field_done",
                          keys.CANCEL: "back"}}
STATES["confirm"] = {"timeout": "entry_timeout_s",
                     "on": {keys.ENTER: "confirmed", keys.CANCEL: "back"}}

# the static address's fields, in order: (name, prompt, max length, may be empty)
STATIC_FIELDS = (("address", "net_f_address", 15, False), ("prefix", "net_f_prefix", 2, False),
                 ("gateway", "net_f_gateway", 15, True), ("dns", "net_f_dns", 15, True))
HOST_FIELDS = (("host", "net_f_host", 15, False), ("port", "net_f_port", 5, False))


class NetworkFlow(MenuFlow):
    NAME = "network"
    TITLE = "net_title"
    STATES = STATES

    def __init__(self, term):
        MenuFlow.__init__(self, term)
        self.net = getattr(term, "network", None)
        self.job = 0                # answers of an abandoned wait are dropped
        self.wait_what = ""
        self.nets = []
        self.wifi_index = 0
        self.ssid = ""
        self.security = ""
        self.psk = None
        self.error = None
        self.fields = ()
        self.field_at = 0
        self.values = {}
        self.field = None
        self.mode = ""              # "static" | "host": what the fields are for
        self.pending = None         # what ENTER on the confirm screen applies

    def entries(self):
        return [("net_status", "show_status"), ("net_wifi", "wifi"),
                ("net_address", "address"), ("net_host", "host")]

    def _me(self):
        return self.term.operator["id"] if self.term.operator else ""

    def _no_driver(self):
        return self.say(*(wrap(self.t("ts_no_driver")) + wrap(self.t("ts_do_no_driver"))))

    # -- waiting on the driver ------------------------------------------------------------
    def _wait(self, what):
        self.job += 1
        self.wait_what = what
        return self.job

    def _answer(self, job, fn, *args):
        if job != self.job or self.finished or self.state != "wait":
            return
        nxt = fn(*args)
        if nxt is not None and not self.finished:
            self.goto(nxt)

    def abandon(self, ev):
        self.job += 1
        return "menu"

    def waited_out(self, ev):
        self.job += 1
        return self.say(self.t("ts_no_answer"))

    # -- 1 status -------------------------------------------------------------------------
    def show_status(self):
        if self.net is None:
            return self._no_driver()
        job = self._wait("net_reading")
        self.net.status(lambda st, err: self._answer(job, self._status_shown, st, err))
        return "wait"

    def _status_rows(self, st, err):
        t = self.t
        if st is None:
            return wrap(err or t("fail"))
        rows = []
        for d in st["devices"]:
            kind = t("ts_wifi") if d["type"] == "wifi" else t("ts_eth")
            from firmware.flows.troubleshoot import _state
            rows.append("%s: %s" % (kind, t("ts_st_" + _state(d["state"]))))
            if d["connection"]:
                rows += wrap("  " + d["connection"])
        if st["address"]:
            rows.append(st["address"])
            rows.append("%s %s" % (t("net_method"), t("net_dhcp") if st["method"] != "manual"
                                   else t("net_static")))
            if st["gateway"]:
                rows.append("GW " + st["gateway"])
            for dns in st["dns"]:
                rows.append("DNS " + dns)
        else:
            rows.append(t("net_no_address"))
        rows.append("Host " + (self.term.config["host"]["address"] or "-"))
        out = []
        for row in rows:
            out += wrap(row)
        return out

    def _status_shown(self, st, err):
        self.term.net_status = st
        return self.say(*self._status_rows(st, err))

    # -- 2 Wi-Fi --------------------------------------------------------------------------
    def wifi(self):
        if self.net is None:
            return self._no_driver()
        job = self._wait("net_scanning")
        self.net.scan(lambda nets, err: self._answer(job, self._scanned_list, nets, err))
        return "wait"

    def _scanned_list(self, nets, err):
        if err:
            return self.say(*wrap(err))
        if not nets:
            return self.say(self.t("net_no_wifi"), self.t("net_wifi_qr"))
        self.nets = nets
        self.wifi_index = 0
        return "wifi_list"

    def wifi_up(self, ev):
        self.error = None
        self.wifi_index = (self.wifi_index - 1) % len(self.nets)

    def wifi_down(self, ev):
        self.error = None
        self.wifi_index = (self.wifi_index + 1) % len(self.nets)

    def wifi_digit(self, ev):
        i = int(ev.get("key")) - 1 if ev.get("key") not in ("0", "00") else -1
        if 0 <= i < len(self.nets):
            self.wifi_index = i
            return self.wifi_pick(ev)
        return None

    def wifi_pick(self, ev):
        net = self.nets[self.wifi_index]
        self.ssid, self.security = net["ssid"], net["security"]
        self.error = None
        if not self.security:
            return self._join("")
        self.psk = MultiTap(self.term.reactor.clock, TAPS, PSK_MAX, cases=True)
        return "psk"

    def type_psk(self, ev):
        self.error = None
        self.psk.key(ev.get("key"))

    def psk_done(self, ev):
        problem = check_psk(self.psk.value, self.security)
        if problem:
            self.term.beep("error")
            self.error = problem
            return None
        psk = self.psk.value
        self.psk.clear()
        return self._join(psk)

    def scanned(self, ev):
        found = parse_wifi_qr(ev.get("code") or "")
        if found is None:
            self.term.beep("error")
            self.error = "net_not_wifi_qr"
            return None
        self.ssid, self.security = found["ssid"], found["security"]
        problem = check_psk(found["psk"], self.security)
        if problem:
            self.term.beep("error")
            self.error = problem
            return None
        return self._join(found["psk"])

    def scan_failed(self, ev):
        self.error = "scan_failed"

    def _join(self, psk):
        job = self._wait("net_joining")
        ssid = self.ssid
        self.term.store.audit("net_wifi_join", self._me(), ssid)
        self.net.join(ssid, psk, lambda ok, err: self._answer(job, self._joined, ssid, ok, err))
        psk = None
        return "wait"

    def _joined(self, ssid, ok, err):
        if not ok:
            self.term.store.audit("net_wifi_failed", self._me(), "%s: %s" % (ssid, err))
            return self.say(*([self.t("net_join_failed")] + wrap(err or "")))
        return self._test([self.t("net_joined")] + wrap(ssid))

    # -- the test after a change ----------------------------------------------------------
    def _test(self, head, host=None, port=None, then=None):
        """The host tried now (TCP and TLS): head, then its result; then(ok) after."""
        if host is None:
            address = self.term.config["host"]["address"]
            if not address:
                return self.say(*(head + [self.t("ts_no_host")]))
            host, port = address.rsplit(":", 1)
        job = self._wait("net_testing")
        self.net.probe(host, int(port), lambda res: self._answer(job, self._tested, head, res,
                                                                 then))
        return "wait"

    def _tested(self, head, res, then):
        t = self.t
        ok = res["tcp"] and res["tls"] is not False
        rows = list(head)
        if ok:
            rows.append(t("net_test_ok"))
        else:
            rows.append(t("net_test_fail"))
            rows += wrap(t("ts_cause_" + res["cause"]))
        if then is not None:
            return then(ok, rows)
        return self.say(*rows)

    # -- 3 address ------------------------------------------------------------------------
    def address(self):
        if self.net is None:
            return self._no_driver()
        return "addr_mode"

    def use_dhcp(self, ev):
        job = self._wait("net_applying")
        self.term.store.audit("net_ipv4", self._me(), "dhcp")
        self.net.set_ipv4({"method": "auto"}, lambda ok, err: self._answer(
            job, self._applied, ok, err))
        return "wait"

    def use_static(self, ev):
        return self._fields("static", STATIC_FIELDS)

    def _applied(self, ok, err):
        if not ok:
            return self.say(*([self.t("net_apply_failed")] + wrap(err or "")))
        return self._test([self.t("net_applied")])

    # -- 4 host ---------------------------------------------------------------------------
    def host(self):
        return self._fields("host", HOST_FIELDS)

    # -- the fields -----------------------------------------------------------------------
    def _fields(self, mode, fields):
        self.mode = mode
        self.fields = fields
        self.field_at = 0
        self.values = {}
        self.error = None
        self._field()
        return "field"

    def _field(self):
        name, prompt, size, optional = self.fields[self.field_at]
        self.field = AddressField(size)
        if self.mode == "host" and name == "port":
            self.field = Field(size)

    def type_field(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def field_done(self, ev):
        name, prompt, size, optional = self.fields[self.field_at]
        value = self.field.value
        if not value and not optional:
            self.term.beep("error")
            self.error = "net_needed"
            return None
        self.values[name] = value
        if self.field_at + 1 < len(self.fields):
            self.field_at += 1
            self._field()
            return "field"
        if self.mode == "static":
            v = self.values
            problem = check_static(v["address"], v["prefix"], v.get("gateway", ""),
                                   v.get("dns", ""))
            if problem:
                return self._refused(problem)
            cfg = {"method": "manual", "address": v["address"], "prefix": int(v["prefix"]),
                   "gateway": v.get("gateway", ""), "dns": v.get("dns", "")}
            job = self._wait("net_applying")
            self.term.store.audit("net_ipv4", self._me(), "static %s/%s gw %s dns %s" % (
                cfg["address"], cfg["prefix"], cfg["gateway"] or "-", cfg["dns"] or "-"))
            self.net.set_ipv4(cfg, lambda ok, err: self._answer(job, self._applied, ok, err))
            return "wait"
        problem = check_host(self.values["host"]) or check_port(self.values["port"])
        if problem:
            return self._refused(problem)
        if self.net is None:
            return self._host_tested(None, [])
        address = "%s:%s" % (self.values["host"], int(self.values["port"]))
        return self._test([address], self.values["host"], self.values["port"],
                          self._host_tested)

    def _refused(self, problem):
        """Bad input: one clear line, nothing applied; the first field again."""
        self.term.beep("error")
        self.term.store.audit("net_refused", self._me(), "%s %s" % (self.mode, problem))
        self.field_at = 0
        self._field()
        self.error = problem
        return "field"

    def _host_tested(self, ok, rows):
        self.pending = "%s:%d" % (self.values["host"], int(self.values["port"]))
        self.notice_lines = rows
        return "confirm"

    def confirmed(self, ev):
        address, self.pending = self.pending, None
        if address is None:
            return "menu"
        old = self.term.config["host"]["address"]
        self.term.store.set_setting(HOST_SETTING, address)
        self.term.config["host"]["address"] = address
        apply = getattr(self.term, "apply_host", None)
        now = apply(address) if apply is not None else False
        self.term.store.audit("net_host", self._me(), "%s -> %s" % (old or "-", address))
        return self.say(self.t("net_host_saved"), address,
                        self.t("net_host_now") if now else self.t("net_host_restart"))

    def back(self, ev):
        self.job += 1
        if self.psk is not None:
            self.psk.clear()
        return "menu"

    # -- drawing --------------------------------------------------------------------------
    def render(self):
        t = self.t
        err = [t(self.error)] if self.error else []
        if self.state == "wait":
            self.term.show(t(self.TITLE), [t(self.wait_what)], t("footer_back"))
        elif self.state == "wifi_list":
            rows = []
            for i, n in enumerate(self.nets):
                lock = "*" if n["security"] else " "
                rows.append("%d%s%s" % (i + 1, lock, n["ssid"])[:ROW_COLUMNS - 4]
                            + " %d" % min(99, n["signal"]))
            self.term.show(t("net_wifi"), err + rows, t("net_footer_list"),
                           selected=self.wifi_index + len(err))
        elif self.state == "psk":
            head = err or wrap(self.ssid)[:1]
            self.term.show(t("net_psk"), head + [self.psk.shown()],
                           t("net_footer_psk_up") if self.psk.upper else t("net_footer_psk"))
        elif self.state == "addr_mode":
            self.term.show(t("net_address"), ["1 " + t("net_dhcp"), "2 " + t("net_static")],
                           t("footer_back"))
        elif self.state == "field":
            name, prompt, size, optional = self.fields[self.field_at]
            rows = (err or [t(prompt)]) + ([t("net_optional")] if optional and not err else [])
            title = t("net_host") if self.mode == "host" else t("net_static")
            self.term.show(title, rows[:BODY_ROWS - 1], t("footer_entry"),
                           masked=self.field.shown())
        elif self.state == "confirm":
            self.term.show(t("net_host"), self.notice_lines + [t("net_save_q")],
                           t("net_footer_save"), top=max(0, len(self.notice_lines) + 1
                                                         - BODY_ROWS))
        else:
            MenuFlow.render(self)
