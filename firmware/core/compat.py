"""The few things CPython and MicroPython spell differently.

Everything in firmware/ that would differ between the two imports it from here,
so the difference is written once and tested once (tests/portable/test_compat.py).
"""
import sys
import time

try:
    from micropython import const  # noqa: F401
except ImportError:
    def const(value):
        return value

MICROPYTHON = sys.implementation.name == "micropython"

if hasattr(time, "monotonic_ns"):
    def monotonic_ms():
        return time.monotonic_ns() // 1000000
else:
    # MicroPython: ticks_ms wraps (after 2**30 ms, about 12 days, on 32-bit ports), so
    # keep a running total from ticks_diff. The terminal's once-a-minute clock tick
    # calls this far more often than the wrap period.
    _ticks = [time.ticks_ms(), 0]

    def monotonic_ms():
        now = time.ticks_ms()
        _ticks[1] += time.ticks_diff(now, _ticks[0])
        _ticks[0] = now
        return _ticks[1]


def print_exception(exc, file=None):
    """Write a traceback the way the running interpreter can."""
    if hasattr(sys, "print_exception"):
        sys.print_exception(exc, file or sys.stderr)
        return
    import traceback
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=file or sys.stderr)
