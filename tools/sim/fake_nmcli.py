#!/usr/bin/env python3
"""A stand-in for NetworkManager's nmcli, for the simulator and the tests.

It answers the commands drivers/network.py runs, in nmcli's terse output (-t, fields
named with -f, ':' in values escaped as '\\:'), with nmcli's exit statuses, from a JSON
state file it reads and writes on every run:

    {"devices": {"wlan0": {"type": "wifi", "state": "connected", "connection": "ShopNet"},
                 "eth0": {"type": "ethernet", "state": "unavailable", "connection": ""}},
     "connections": {"ShopNet": {"type": "wifi", "ssid": "ShopNet", "device": "wlan0",
                                 "psk": "...", "ipv4": {"method": "auto", "address": "",
                                 "gateway": "", "dns": ""}}},
     "dhcp": {"address": "192.168.8.23/24", "gateway": "192.168.8.1", "dns": "192.168.8.1"},
     "wifi": [{"ssid": "ShopNet", "signal": 82, "security": "WPA2", "psk": "..."}, ...],
     "runs": [[argv...], ...]}

The state file is named by $FAKE_NMCLI_STATE (or --state FILE before the arguments).
make_state(path) writes the simulator's starting state; set_wifi(path, up) is the
control socket's "wifi" command (the access point gone, or back). The simulator puts
this file on the driver's PATH as `nmcli` (install(folder, state)), so the driver runs
it as it runs the real one.
"""
import json
import os
import stat
import sys

# nmcli's exit statuses (nmcli(1))
OK, USAGE, FAILED, ACTIVATION, NOT_FOUND = 0, 2, 1, 4, 10

DEFAULT_STATE = {
    "devices": {
        "wlan0": {"type": "wifi", "state": "connected", "connection": "ShopNet"},
        "eth0": {"type": "ethernet", "state": "unavailable", "connection": ""},
        "lo": {"type": "loopback", "state": "unmanaged", "connection": ""},
    },
    "connections": {
        "ShopNet": {"type": "wifi", "ssid": "ShopNet", "device": "wlan0",
                    "psk": "handpos-demo",
                    "ipv4": {"method": "auto", "address": "", "gateway": "", "dns": ""}},
    },
    "dhcp": {"address": "192.168.8.23/24", "gateway": "192.168.8.1", "dns": "192.168.8.1"},
    "wifi": [
        {"ssid": "ShopNet", "signal": 82, "security": "WPA2", "psk": "handpos-demo"},
        {"ssid": "Cafe:Guest", "signal": 64, "security": "WPA1 WPA2", "psk": "espresso42"},
        {"ssid": "Market", "signal": 40, "security": "WPA2", "psk": "stall-2024"},
        {"ssid": "OpenAir", "signal": 22, "security": "", "psk": ""},
    ],
    "wifi_up": True,
    "runs": [],
}


def make_state(path, state=None):
    doc = json.loads(json.dumps(state or DEFAULT_STATE))
    _write(path, doc)
    return doc


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def set_wifi(path, up):
    """The control command: the access point drops (the Wi-Fi device disconnected, its
    address gone, no network in a scan) or comes back (reconnected as before)."""
    doc = load(path)
    doc["wifi_up"] = bool(up)
    dev = doc["devices"].get("wlan0")
    if dev is not None:
        if up:
            last = dev.get("last_connection") or dev.get("connection")
            if last:
                dev.update(state="connected", connection=last)
        else:
            if dev.get("connection"):
                dev["last_connection"] = dev["connection"]
            dev.update(state="disconnected", connection="")
    _write(path, doc)


def install(folder, state_path):
    """An executable `nmcli` in folder running this file on state_path; the folder."""
    os.makedirs(folder, exist_ok=True)
    script = os.path.join(folder, "nmcli")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nFAKE_NMCLI_STATE=%s exec %s %s \"$@\"\n"
                % (_sh(state_path), _sh(sys.executable), _sh(os.path.abspath(__file__))))
    os.chmod(script, stat.S_IRWXU)
    return folder


def _sh(text):
    return "'" + text.replace("'", "'\\''") + "'"


def _esc(value):
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def _terse(rows, fields):
    return "".join(":".join(_esc(row.get(f, "")) for f in fields) + "\n" for row in rows)


def _ip4(doc, conn):
    """The IPv4 a connection has while up: its static settings, or the DHCP lease."""
    ipv4 = conn.get("ipv4", {})
    if ipv4.get("method") == "manual":
        return {"address": ipv4.get("address", ""), "gateway": ipv4.get("gateway", ""),
                "dns": ipv4.get("dns", "")}
    return dict(doc.get("dhcp", {}))


class Fail(Exception):
    def __init__(self, code, text):
        Exception.__init__(self, text)
        self.code = code


def run(doc, argv, out):
    args = list(argv)
    terse = False
    fields = None
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("-t", "--terse"):
            terse = True
        elif opt in ("-f", "--fields"):
            fields = args.pop(0).split(",")
        elif opt in ("-w", "--wait"):
            args.pop(0)
        else:
            raise Fail(USAGE, "Error: Option '%s' is unknown." % opt)
    if args[:2] == ["device", "status"]:
        rows = [{"DEVICE": name, "TYPE": d["type"], "STATE": d["state"],
                 "CONNECTION": d.get("connection", "")} for name, d in doc["devices"].items()]
        out.write(_terse(rows, fields or ["DEVICE", "TYPE", "STATE", "CONNECTION"]))
        return
    if args[:2] == ["device", "show"]:
        dev = doc["devices"].get(args[2] if len(args) > 2 else "")
        if dev is None:
            raise Fail(NOT_FOUND, "Error: Device '%s' not found." % args[2])
        lines = [("GENERAL.CONNECTION", dev.get("connection", ""))]
        conn = doc["connections"].get(dev.get("connection", ""))
        if dev["state"] == "connected" and conn is not None:
            ip = _ip4(doc, conn)
            lines += [("IP4.ADDRESS[1]", ip["address"]), ("IP4.GATEWAY", ip["gateway"])]
            for i, dns in enumerate([d for d in ip["dns"].split(",") if d]):
                lines.append(("IP4.DNS[%d]" % (i + 1), dns))
        want = fields or ["GENERAL.CONNECTION", "IP4.ADDRESS", "IP4.GATEWAY", "IP4.DNS"]
        for name, value in lines:
            if name.split("[")[0] in want:
                out.write("%s:%s\n" % (name, _esc(value)) if terse else
                          "%-20s%s\n" % (name + ":", value))
        return
    if args[:3] == ["device", "wifi", "list"]:
        rows = []
        if doc.get("wifi_up", True):
            current = doc["devices"].get("wlan0", {}).get("connection", "")
            ssid_now = doc["connections"].get(current, {}).get("ssid")
            for net in doc["wifi"]:
                rows.append({"IN-USE": "*" if net["ssid"] == ssid_now else "",
                             "SSID": net["ssid"], "SIGNAL": net["signal"],
                             "SECURITY": net["security"]})
        out.write(_terse(rows, fields or ["IN-USE", "SSID", "SIGNAL", "SECURITY"]))
        return
    if args[:3] == ["device", "wifi", "connect"]:
        ssid = args[3]
        opts = dict(zip(args[4::2], args[5::2]))
        net = [n for n in doc["wifi"] if n["ssid"] == ssid] if doc.get("wifi_up", True) else []
        if not net:
            raise Fail(NOT_FOUND, "Error: No network with SSID '%s' found." % ssid)
        net = net[0]
        if net["security"] and opts.get("password") != net["psk"]:
            raise Fail(ACTIVATION, "Error: Connection activation failed: Secrets were "
                                   "required, but not provided.")
        conn = doc["connections"].get(ssid) or {"type": "wifi", "ssid": ssid, "device": "wlan0",
                                                "ipv4": {"method": "auto", "address": "",
                                                         "gateway": "", "dns": ""}}
        conn["psk"] = opts.get("password", "")
        doc["connections"][ssid] = conn
        doc["devices"]["wlan0"].update(state="connected", connection=ssid)
        out.write("Device 'wlan0' successfully activated with 'fake-%s'.\n" % len(ssid))
        return
    if args[:2] == ["connection", "show"]:
        conn = doc["connections"].get(args[2] if len(args) > 2 else "")
        if conn is None:
            raise Fail(NOT_FOUND, "Error: %s - no such connection profile." % args[2])
        values = {"connection.id": args[2], "ipv4.method": conn["ipv4"]["method"],
                  "ipv4.addresses": conn["ipv4"]["address"]}
        for name in fields or sorted(values):
            out.write("%s:%s\n" % (name, _esc(values.get(name, ""))))
        return
    if args[:2] == ["connection", "modify"]:
        conn = doc["connections"].get(args[2] if len(args) > 2 else "")
        if conn is None:
            raise Fail(NOT_FOUND, "Error: unknown connection '%s'." % args[2])
        props = dict(zip(args[3::2], args[4::2]))
        ipv4 = dict(conn["ipv4"])
        for key, value in props.items():
            if key == "ipv4.method":
                if value not in ("auto", "manual"):
                    raise Fail(USAGE, "Error: invalid ipv4.method '%s'." % value)
                ipv4["method"] = value
            elif key == "ipv4.addresses":
                ipv4["address"] = value
            elif key == "ipv4.gateway":
                ipv4["gateway"] = value
            elif key == "ipv4.dns":
                ipv4["dns"] = value
            else:
                raise Fail(USAGE, "Error: invalid property '%s'." % key)
        if ipv4["method"] == "manual" and not ipv4["address"]:
            raise Fail(USAGE, "Error: Failed to modify connection '%s': ipv4.addresses: "
                              "this property cannot be empty for 'method=manual'" % args[2])
        conn["ipv4"] = ipv4
        return
    if args[:2] == ["connection", "up"]:
        name = args[2] if len(args) > 2 else ""
        conn = doc["connections"].get(name)
        if conn is None:
            raise Fail(NOT_FOUND, "Error: unknown connection '%s'." % name)
        if conn["type"] == "wifi" and not doc.get("wifi_up", True):
            raise Fail(ACTIVATION, "Error: Connection activation failed: The Wi-Fi network "
                                   "could not be found.")
        doc["devices"][conn["device"]].update(state="connected", connection=name)
        out.write("Connection successfully activated\n")
        return
    raise Fail(USAGE, "Error: argument '%s' not understood (fake nmcli)." % " ".join(args))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    path = os.environ.get("FAKE_NMCLI_STATE")
    if argv[:1] == ["--state"]:
        path, argv = argv[1], argv[2:]
    if not path:
        sys.stderr.write("Error: FAKE_NMCLI_STATE is not set (fake nmcli).\n")
        return FAILED
    doc = load(path)
    doc.setdefault("runs", []).append(["nmcli"] + ["***" if i and argv[i - 1] == "password"
                                                   else a for i, a in enumerate(argv)])
    try:
        run(doc, argv, sys.stdout)
        code = OK
    except Fail as exc:
        sys.stderr.write(str(exc) + "\n")
        code = exc.code
    except IndexError:
        sys.stderr.write("Error: missing argument (fake nmcli).\n")
        code = USAGE
    _write(path, doc)
    return code


if __name__ == "__main__":
    sys.exit(main())
