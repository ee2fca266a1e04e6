"""The benchmarks (`make bench`, `python -m tools.bench`): terminal.py and saf.py.

What they share: a benchmark never hangs. Every wait in them has its own bound, and
each part runs under `time_limit`, a net under those bounds; a part that cannot
finish ends the run with one line saying what it waited for (`BenchError`, printed by
`run_main`) and exit status 1, never with a silent wait.
"""
import contextlib
import signal
import subprocess
import sys
import threading


class BenchError(Exception):
    """A benchmark could not finish; the message says why, for the person running it."""


def one_line(exc):
    """An exception's message on one line (a control socket's screen dump has several)."""
    text = str(exc).strip() or exc.__class__.__name__
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())


@contextlib.contextmanager
def time_limit(seconds, what):
    """Raise BenchError("<what> did not finish within N s") if the block takes longer.

    SIGALRM, so it also ends a wait blocked in a system call; main thread only (in any
    other thread the block just runs, bounded by its own waits)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise BenchError("%s did not finish within %.0f s" % (what, seconds))
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_main(main, argv=None, name="bench"):
    """main(argv), with a BenchError (or a stray exception from a bounded wait: a socket
    timeout, a screen that never came) turned into one line on stderr and status 1."""
    try:
        return main(argv)
    except BenchError as exc:
        message = one_line(exc)
    except (AssertionError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
        message = "%s: %s" % (exc.__class__.__name__, one_line(exc))
    except KeyboardInterrupt:
        message = "interrupted"
    sys.stdout.flush()
    sys.stderr.write("%s: stopped: %s\n" % (name, message))
    sys.stderr.flush()
    return 1
