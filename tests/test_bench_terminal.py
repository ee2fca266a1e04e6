"""tools/bench/terminal.py finishes, and never hangs, with no system pcscd (issue 9).

The benches run in child processes: libpcsclite reads PCSCLITE_CSOCK_NAME once per
process, and a child's run is bounded by the test. No timing asserts on the figures.
"""
import os
import subprocess
import sys
import time

import pytest

from tools.bench import BenchError, one_line, run_main, time_limit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = ("chip reader:", "key press -> new frame:", "-line cart: UP/DOWN -> new frame",
           "card sale, inside the terminal",
           "cold start:", "idle CPU over", "resident memory, idle:")


def _env(tmp_path):
    # a socket no pcscd answers on: what a machine without a system pcscd gives the
    # PC/SC client (the bench points it at its own pcscd, or runs without the reader)
    return dict(os.environ, PCSCLITE_CSOCK_NAME=str(tmp_path / "no-pcscd.comm"))


def test_quick_terminal_bench_finishes_without_a_system_pcscd(tmp_path):
    run = subprocess.run([sys.executable, "-m", "tools.bench.terminal", "--quick"], cwd=ROOT,
                         env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=90)
    out = run.stdout.decode()
    assert run.returncode == 0, out + run.stderr.decode()
    for figure in FIGURES:
        assert figure in out, figure
    chip = [line for line in out.splitlines() if line.startswith("chip reader:")]
    assert len(chip) == 1 and ("private pcscd" in chip[0] or "off, " in chip[0]), chip


# What used to hang for ever: the simulator's chip reader kept, and no pcscd to answer
# it. The driver reports the reader lost, a notice covers the menu, and the key bench
# waited for a frame that never came. Now the wait ends with one line naming the screen.
STUCK = r"""
import contextlib, sys
from tools.bench import run_main, terminal as t
t.STEP_S = 2.0
t.KEY_FRAME_S = 2.0

class NoPcscd(t.ChipReader):
    @contextlib.contextmanager
    def for_simulator(self, profile):
        yield None

sys.exit(run_main(lambda argv: t.bench_keys(20, NoPcscd("off", "unused")), name="bench"))
"""


def test_a_chip_reader_without_pcscd_stops_the_bench_with_one_line(tmp_path):
    pytest.importorskip("smartcard.scard")
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-c", STUCK], cwd=ROOT, env=_env(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    err = run.stderr.decode()
    assert run.returncode == 1, err
    stopped = [line for line in err.splitlines() if line.startswith("bench: stopped: ")]
    assert len(stopped) == 1, err
    assert "not within 2 s" in stopped[0] or "no new frame within 2 s" in stopped[0], stopped
    assert "the screen:" in stopped[0]
    assert time.monotonic() - t0 < 45


def test_time_limit_ends_a_blocked_wait():
    t0 = time.monotonic()
    with pytest.raises(BenchError, match="sleeping did not finish within 0 s"):
        with time_limit(0.2, "sleeping"):
            time.sleep(10)
    assert time.monotonic() - t0 < 5
    with time_limit(5, "nothing"):         # the timer is gone afterwards
        pass
    time.sleep(0.3)


def test_run_main_says_why_in_one_line(capsys):
    def stuck(argv):
        raise AssertionError("timed out waiting for 'MENU'; screen was:\nLog in\nOperator ID")
    assert run_main(stuck, name="bench") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("bench: stopped: AssertionError: timed out waiting for 'MENU'")
    assert one_line(ValueError("a\n\n b ")) == "a / b"
