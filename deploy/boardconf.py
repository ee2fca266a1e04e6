#!/usr/bin/env python3
"""What a board profile asks of the Raspberry Pi's boot files, for deploy/install.sh.

    boardconf.py lines PROFILE             the config.txt lines, one a line
    boardconf.py extra PROFILE             the pyproject extra with its GPIO library
    boardconf.py config-txt PROFILE FILE   put the lines into FILE (a marked block)
    boardconf.py cmdline PROFILE FILE      drop the serial console when the profile
                                           puts a device on the header's UART
    --check (after the command): change nothing, exit 1 when FILE would change

Edits are idempotent: the block between the marks is replaced whole, so a second run
with the same profile leaves the file as it was, byte for byte. Standard library
only (python3 >= 3.11 for tomllib, as on Raspberry Pi OS Bookworm): it runs before the
application's venv exists.
"""
import os
import sys
import tomllib

BEGIN = "# handpos: begin (deploy/install.sh writes this block; edit the board profile instead)"
END = "# handpos: end"
KEYPAD_OVERLAY = "handpos-keypad"
# the header's UART, under the names a profile may give it
HEADER_UARTS = ("/dev/serial0", "/dev/ttyAMA0", "/dev/ttyS0")
SERIAL_CONSOLES = ("serial0", "ttyAMA0", "ttyS0")


class BoardError(Exception):
    pass


def load(path):
    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.exists(path) and os.sep not in path:
        path = os.path.join(here, "..", "board", "profiles", path + ".toml")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise BoardError("no such board profile: %s" % path)
    except tomllib.TOMLDecodeError as exc:
        raise BoardError("%s: not valid TOML: %s" % (path, exc))


def keypad_line(profile):
    """The dtoverlay line of the matrix keypad, or None when the profile gives no pins."""
    kp = profile.get("keypad", {})
    rows, cols = kp.get("rows"), kp.get("cols")
    if not rows and not cols:
        return None
    if len(rows or ()) != 6 or len(cols or ()) != 4:
        raise BoardError("[keypad] rows must list 6 GPIOs and cols 4 (the overlay's 6x4 "
                         "matrix); got %r and %r" % (rows, cols))
    params = ["row%d=%d" % (i, p) for i, p in enumerate(rows)]
    params += ["col%d=%d" % (i, p) for i, p in enumerate(cols)]
    return "dtoverlay=%s,%s" % (KEYPAD_OVERLAY, ",".join(params))


def lines(profile):
    board = profile.get("board", {})
    if "config_txt" not in board:
        raise BoardError("board %r has no [board] config_txt: it is not a Raspberry Pi "
                         "board profile" % board.get("name"))
    out = list(board["config_txt"])
    kp = keypad_line(profile)
    if kp:
        out.append(kp)
    return out


def extra(profile):
    return profile.get("board", {}).get("pip_extra", "pi")


def block(profile):
    # [all]: config.txt may end inside a [pi4] or [cm4] filter section, and lines after
    # it would then apply to that model only
    return "\n".join([BEGIN, "[all]"] + lines(profile) + [END]) + "\n"


def edit_config_txt(text, profile):
    new = block(profile)
    start = text.find(BEGIN)
    if start >= 0:
        end = text.find(END, start)
        if end < 0:
            raise BoardError("config.txt has the handpos begin mark but not its end mark "
                             "(%r): fix the file by hand" % END)
        end = text.find("\n", end)
        end = len(text) if end < 0 else end + 1
        return text[:start] + new + text[end:]
    if text and not text.endswith("\n"):
        text += "\n"
    return text + ("\n" if text else "") + new


def uses_header_uart(profile):
    ports = [profile.get(s, {}).get(k) for s, k in
             (("printer", "port"), ("scanner", "serial"), ("msr", "serial"))]
    return any(p in HEADER_UARTS for p in ports if p)


def edit_cmdline(text, profile):
    """cmdline.txt is one line; the kernel's console on the UART would print boot messages
    into the printer and a getty would answer it, so it goes when a device is there."""
    if not uses_header_uart(profile):
        return text
    words = text.split()
    kept = [w for w in words
            if not (w.startswith("console=") and w[8:].split(",")[0] in SERIAL_CONSOLES)]
    if kept == words:
        return text
    return " ".join(kept) + "\n"


def _edit(path, fn, profile, check):
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        raise BoardError("%s: no such file (Raspberry Pi OS Bookworm keeps it in "
                         "/boot/firmware)" % path)
    new = fn(old, profile)
    if new == old:
        print("unchanged %s" % path)
        return 0
    if check:
        print("would change %s" % path)
        return 1
    tmp = path + ".handpos-tmp"
    with open(tmp, "w") as f:
        f.write(new)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)               # a power cut leaves the old file or the new one
    print("changed %s" % path)
    return 0


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    try:
        if len(args) == 2 and args[0] == "lines":
            print("\n".join(lines(load(args[1]))))
            return 0
        if len(args) == 2 and args[0] == "extra":
            print(extra(load(args[1])))
            return 0
        if len(args) == 3 and args[0] == "config-txt":
            return _edit(args[2], edit_config_txt, load(args[1]), check)
        if len(args) == 3 and args[0] == "cmdline":
            return _edit(args[2], edit_cmdline, load(args[1]), check)
    except BoardError as exc:
        sys.stderr.write("boardconf: %s\n" % exc)
        return 2
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
