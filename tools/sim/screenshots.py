"""Regenerate the README's pictures: drive the simulator and keep the frames that matter.

    python -m tools.sim.screenshots docs/img
"""
import os
import shutil
import subprocess
import sys
import tempfile

from PIL import Image

from tools.bench.terminal import start_sim
from tools.sim.control import ControlClient


def sheet(paths, out, columns=2):
    images = [Image.open(p).convert("RGB") for p in paths]
    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * w + (columns - 1) * 8, rows * h + (rows - 1) * 8), "#808080")
    for i, im in enumerate(images):
        canvas.paste(im, ((i % columns) * (w + 8), (i // columns) * (h + 8)))
    canvas.save(out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0] if argv else "docs/img"
    os.makedirs(out, exist_ok=True)
    from tools.host.hostsim import HostSim
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl")
        snap = os.path.join(tmp, "snap")
        host = HostSim(os.path.join(tmp, "host"), tls=True, log=lambda *a: None)
        address = "%s:%d" % host.start("127.0.0.1", 0)
        config = os.path.join(tmp, "handpos.toml")
        with open(config, "w") as f:
            f.write('[host]\naddress = "%s"\nca_file = "%s"\n[security]\ntest_keys = true\n[lab]\nenabled = true\n'
                    % (address, host.ca_file))
        proc = start_sim(tmp, sock, snapshot=snap, extra=["--config", config, "--host", "external"])
        c = ControlClient(sock)
        shots = {}

        def keep(name):
            path = os.path.join(tmp, name + ".png")
            c.call("snapshot", path=path)
            shots[name] = path

        c.wait("Welcome", 10000)
        keep("welcome")
        c.press("ENTER", "1")
        keep("new-id")
        c.press("ENTER", "2", "5", "8")
        keep("new-pin")
        c.press("0", "ENTER", "2", "5", "8", "0", "ENTER", "ENTER")
        c.wait("Operator ID")
        c.press("1", "ENTER", "2", "5", "8", "0")
        keep("login-pin")
        c.press("ENTER")
        c.wait("MENU")
        keep("idle")
        c.press("MENU")
        keep("menu-en")
        c.press("7", "1")
        keep("selftest")
        c.press("ENTER", "2")
        c.wait("Test page printed")
        c.press("ENTER", "CANCEL", "6", "ENTER", "ENTER", "CANCEL")
        c.wait("主菜单")
        keep("menu-zh")
        c.press("CANCEL", "MENU", "6", "ENTER", "ENTER", "CANCEL", "CANCEL")   # back to English
        c.wait("MENU menu")
        c.press("1", "2", "5", "0")
        keep("sale-amount")
        c.press("ENTER")
        keep("sale-method")
        c.press("1")
        keep("sale-swipe")
        c.call("swipe", card="visa_pin")
        c.wait("Customer PIN")
        c.press("1", "2", "3", "4")
        keep("sale-pin")
        c.press("ENTER")
        c.wait("APPROVED", 10000)
        keep("sale-approved")
        c.press("ENTER", "CANCEL")
        c.wait("MENU menu")
        c.press("9", "9", "ENTER", "2", "2", "0", "0", "ENTER")
        keep("sale-change")
        # the card sale's merchant copy must be on the paper (and in the snapshots)
        # before the simulator goes: the test page and the card receipt, at least
        import time
        deadline = time.monotonic() + 20
        while len(c.call("receipts")["receipts"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        c.call("quit")
        c.close()
        proc.wait(10)
        host.stop()
        sheet([shots[n] for n in ("sale-amount", "sale-method", "sale-swipe", "sale-pin",
                                  "sale-approved", "sale-change")],
              os.path.join(out, "sale.png"))
        sheet([shots[n] for n in ("welcome", "new-id", "new-pin", "login-pin", "idle", "menu-en")],
              os.path.join(out, "first-run.png"))
        sheet([shots["menu-zh"], shots["selftest"]], os.path.join(out, "menu-zh.png"))
        receipts = sorted(f for f in os.listdir(snap) if f.startswith("receipt_"))
        shutil.copy(os.path.join(snap, receipts[0]), os.path.join(out, "receipt-test-page.png"))
        shutil.copy(os.path.join(snap, receipts[1]), os.path.join(out, "receipt-card.png"))
    print("pictures written to %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
