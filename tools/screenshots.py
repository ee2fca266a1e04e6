"""Regenerate the README's pictures: drive the simulator and keep the frames that matter.

    python -m tools.screenshots docs/img
"""
import os
import shutil
import subprocess
import sys
import tempfile

from PIL import Image

from tools.bench import start_sim
from tools.control import ControlClient


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
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "ctl")
        snap = os.path.join(tmp, "snap")
        proc = start_sim(tmp, sock, snapshot=snap)
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
        c.call("quit")
        c.close()
        proc.wait(10)
        sheet([shots[n] for n in ("welcome", "new-id", "new-pin", "login-pin", "idle", "menu-en")],
              os.path.join(out, "first-run.png"))
        sheet([shots["menu-zh"], shots["selftest"]], os.path.join(out, "menu-zh.png"))
        receipts = sorted(f for f in os.listdir(snap) if f.startswith("receipt_"))
        shutil.copy(os.path.join(snap, receipts[-1]), os.path.join(out, "receipt-test-page.png"))
    print("pictures written to %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
