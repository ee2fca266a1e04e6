"""firmware.core.compat: the spellings that differ between CPython and MicroPython."""
import io
import sys
import time

from firmware.core import compat
from firmware.core.compat import const, monotonic_ms, print_exception

FIVE = const(5)


def _sleep_ms(ms):
    if hasattr(time, "sleep_ms"):
        time.sleep_ms(ms)
    else:
        time.sleep(ms / 1000)


def test_const_returns_its_value():
    assert FIVE == 5
    assert const(0x7F) == 127
    assert const(-1) == -1


def test_micropython_flag_matches_the_interpreter():
    assert compat.MICROPYTHON == (sys.implementation.name == "micropython")


def test_monotonic_ms_is_a_non_decreasing_int_that_moves():
    first = monotonic_ms()
    assert isinstance(first, int)
    last = first
    for _ in range(500000):
        now = monotonic_ms()
        assert isinstance(now, int)
        assert now >= last, "clock went back from %d to %d" % (last, now)
        last = now
        if now > first:
            break
    assert last > first, "monotonic_ms did not move"


def test_monotonic_ms_counts_milliseconds():
    before = monotonic_ms()
    _sleep_ms(50)
    elapsed = monotonic_ms() - before
    # seconds would give 0, microseconds or nanoseconds thousands and more
    assert 45 <= elapsed < 2000, elapsed


def _explode(n):
    raise ValueError("boom %d" % n)


def test_print_exception_writes_a_traceback_to_the_given_file():
    try:
        _explode(42)
    except ValueError as exc:
        caught = exc
    out = io.StringIO()
    print_exception(caught, out)
    text = out.getvalue()
    assert text.startswith("Traceback"), text
    assert "_explode" in text, text           # the frame that raised
    assert "test_compat" in text, text        # and the file it is in
    assert text.rstrip().endswith("ValueError: boom 42"), text


def test_print_exception_of_an_exception_never_raised():
    out = io.StringIO()
    print_exception(KeyError("k"), out)
    assert "KeyError" in out.getvalue()


def test_assignment_expressions_are_portable():
    # MicroPython 1.27 compiles ":=", so tests/test_boundaries.py lets firmware/ use it
    data = [3, 0, 5]
    doubled = [y for x in data if (y := x * 2)]
    assert doubled == [6, 10]
    assert y == 10      # a comprehension's := binds in the enclosing function
    left = list(data)
    taken = []
    while (item := left.pop() if left else None) is not None:
        taken.append(item)
    assert taken == [5, 0, 3]
