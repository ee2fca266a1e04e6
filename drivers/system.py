"""What the core asks of the operating system: local time, clock sync, battery, entropy."""
import ctypes
import ctypes.util
import glob
import os
import time

TIME_ERROR = 5   # adjtimex(2): the clock is not synchronised


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: modes, then longs; only status matters here, the
    # rest is room for the kernel to write into.
    _fields_ = [("modes", ctypes.c_uint), ("_pad", ctypes.c_long * 50)]


def kernel_clock_synced():
    """True when the kernel says NTP (or chrony, or timesyncd) disciplines the clock."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        tx.modes = 0
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return False
    return state not in (-1, TIME_ERROR)


def read_battery(root="/sys/class/power_supply"):
    """(percent, charging) from the first battery the kernel knows, None on mains."""
    for supply in sorted(glob.glob(os.path.join(root, "*"))):
        try:
            with open(os.path.join(supply, "type")) as f:
                if f.read().strip() != "Battery":
                    continue
            with open(os.path.join(supply, "capacity")) as f:
                pct = int(f.read().strip())
            status = ""
            if os.path.exists(os.path.join(supply, "status")):
                with open(os.path.join(supply, "status")) as f:
                    status = f.read().strip()
            return max(0, min(100, pct)), status == "Charging"
        except (OSError, ValueError):
            continue
    return None


class LinuxSystem:
    def __init__(self, power_supply_root="/sys/class/power_supply", synced=None):
        self.power_supply_root = power_supply_root
        self._synced = synced   # a board may pin this (the simulator says what the host says)

    def local_time(self):
        return time.localtime()[:6]

    def utc_time(self):
        return time.gmtime()[:6]

    def utc_offset_min(self):
        return -(time.altzone if time.localtime().tm_isdst > 0 else time.timezone) // 60

    def clock_synced(self):
        return kernel_clock_synced() if self._synced is None else self._synced

    def battery(self):
        return read_battery(self.power_supply_root)

    def random_bytes(self, n):
        return os.urandom(n)
