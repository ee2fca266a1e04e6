"""The terminal's one event loop: file descriptors plus a timer heap.

It blocks in select.poll until a descriptor is ready or the next timer is due, so an
idle terminal sleeps in the kernel and uses no CPU. Driver threads (only where a
library offers no descriptor) hand work to the loop with post(), which wakes it
through a self-pipe.
"""
import errno
import heapq
import os
import select

from firmware.core.compat import monotonic_ms, print_exception

POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
POLLERR = select.POLLERR
POLLHUP = select.POLLHUP
POLLNVAL = getattr(select, "POLLNVAL", 0x20)

# errno values that mean the device behind a descriptor has gone (unplugged USB
# reader, removed evdev node): the descriptor is dropped and reported, not retried.
DEAD_ERRNOS = (errno.ENODEV, errno.EIO, errno.EBADF, getattr(errno, "ENXIO", 6))


class DeadDescriptor(Exception):
    """Raised by a handler to say its descriptor reached EOF or lost its device."""


class Timer:
    def __init__(self, deadline, seq, callback, args):
        self.deadline = deadline
        self.seq = seq
        self.callback = callback
        self.args = args
        self.active = True

    def cancel(self):
        self.active = False

    def __lt__(self, other):
        if self.deadline != other.deadline:
            return self.deadline < other.deadline
        return self.seq < other.seq


def _fileno(fd):
    return fd if isinstance(fd, int) else fd.fileno()


class Reactor:
    def __init__(self, clock=None, poller=None):
        self.clock = clock or monotonic_ms
        self._poll = poller if poller is not None else select.poll()
        self._handlers = {}          # fd -> [callback, on_dead, events]
        self._timers = []            # heap of Timer
        self._seq = 0
        self._soon = []              # callbacks posted from other threads
        self._wake_r = None
        self._wake_w = None
        self._running = False
        self.on_error = self._default_error
        self.errors = 0
        if hasattr(os, "pipe"):
            self._wake_r, self._wake_w = os.pipe()
            if hasattr(os, "set_blocking"):
                os.set_blocking(self._wake_r, False)
                os.set_blocking(self._wake_w, False)
            self.add_reader(self._wake_r, self._drain_wakeups)

    # -- descriptors ---------------------------------------------------------
    def add_reader(self, fd, callback, on_dead=None, events=POLLIN):
        """Call callback(fd, revents) whenever fd is ready.

        A callback that raises DeadDescriptor, EOFError or an OSError meaning the
        device is gone gets its descriptor removed and on_dead(fd, reason) called.
        """
        fd = _fileno(fd)
        self._handlers[fd] = [callback, on_dead, events]
        self._poll.register(fd, events)

    def modify(self, fd, events):
        fd = _fileno(fd)
        entry = self._handlers.get(fd)
        if entry is not None and entry[2] != events:
            entry[2] = events
            self._poll.modify(fd, events)

    def remove(self, fd):
        fd = _fileno(fd)
        if self._handlers.pop(fd, None) is not None:
            try:
                self._poll.unregister(fd)
            except (KeyError, OSError, ValueError):
                pass

    def watching(self, fd):
        return _fileno(fd) in self._handlers

    # -- timers ---------------------------------------------------------------
    def call_later(self, delay_ms, callback, *args):
        self._seq += 1
        timer = Timer(self.clock() + max(0, int(delay_ms)), self._seq, callback, args)
        heapq.heappush(self._timers, timer)
        return timer

    def call_soon(self, callback, *args):
        return self.call_later(0, callback, *args)

    def post(self, callback, *args):
        """Thread-safe: run callback(*args) on the loop as soon as it wakes."""
        self._soon.append((callback, args))
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"\x00")
            except OSError:
                pass  # pipe full: the loop is already due to wake

    def _drain_wakeups(self, fd, revents):
        try:
            while os.read(fd, 512):
                pass
        except OSError:
            pass

    # -- running --------------------------------------------------------------
    def next_timeout(self):
        """Milliseconds until the next live timer, -1 when there is none."""
        while self._timers and not self._timers[0].active:
            heapq.heappop(self._timers)
        if self._soon:
            return 0
        if not self._timers:
            return -1
        return max(0, self._timers[0].deadline - self.clock())

    def run_once(self, max_wait_ms=-1):
        timeout = self.next_timeout()
        if max_wait_ms >= 0 and (timeout < 0 or timeout > max_wait_ms):
            timeout = max_wait_ms
        for fd, revents in self._poll.poll(timeout):
            self._dispatch(fd, revents)
        self._run_posted()
        self._run_timers()

    def _dispatch(self, fd, revents):
        entry = self._handlers.get(fd)
        if entry is None:
            return
        callback, on_dead = entry[0], entry[1]
        if revents & POLLNVAL:
            self._dead(fd, on_dead, "closed")
            return
        readable = revents & (POLLIN | POLLOUT)
        if readable or not (revents & (POLLERR | POLLHUP)):
            try:
                callback(fd, revents)
            except (DeadDescriptor, EOFError) as exc:
                self._dead(fd, on_dead, str(exc) or "eof")
                return
            except OSError as exc:
                if exc.args and exc.args[0] in DEAD_ERRNOS:
                    self._dead(fd, on_dead, errno.errorcode.get(exc.args[0], "oserror"))
                    return
                self._error(exc)
                return
            except Exception as exc:  # a bug in one handler must not stop the terminal
                self._error(exc)
                return
        elif revents & (POLLERR | POLLHUP):
            self._dead(fd, on_dead, "hangup" if revents & POLLHUP else "error")

    def _dead(self, fd, on_dead, reason):
        self.remove(fd)
        if on_dead is not None:
            try:
                on_dead(fd, reason)
            except Exception as exc:
                self._error(exc)

    def _run_posted(self):
        # What was posted before this pass; anything posted meanwhile waits a turn.
        batch, self._soon = self._soon, []
        for callback, args in batch:
            self._call(callback, args)

    def _run_timers(self):
        # Only timers that existed when this pass began: one that re-arms itself with
        # no delay runs on the next pass, after the descriptors have had their turn.
        now = self.clock()
        last_seq = self._seq
        while self._timers:
            timer = self._timers[0]
            if timer.active and (timer.deadline > now or timer.seq > last_seq):
                break
            heapq.heappop(self._timers)
            if timer.active:
                timer.active = False
                self._call(timer.callback, timer.args)

    def _call(self, callback, args):
        try:
            callback(*args)
        except Exception as exc:
            self._error(exc)

    def _error(self, exc):
        self.errors += 1
        self.on_error(exc)

    def _default_error(self, exc):
        print_exception(exc)

    def run(self):
        self._running = True
        while self._running:
            self.run_once()

    def stop(self):
        self._running = False
        self.post(lambda: None)

    def close(self):
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                self.remove(fd)
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_r = self._wake_w = None
