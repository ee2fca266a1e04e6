"""What the evdev input drivers (keypad, HID card reader) share: the device's life.

An EvdevInput grabs its device on start() (a failed grab is noted, not fatal), has
the reactor watch its descriptor, lets go of both on stop(), and notes a device that
went away (EOF, ENODEV) and calls on_dead(reason). Subclasses decode the events
(_events) and say in their own words what the device is and what to check:

    WHAT         what the device is called in logs and self-tests ("keypad")
    CHECK        what to check once it is lost ("its cable or overlay")
    LEAKS        what reaches the console when it is not grabbed ("keys")
    GRAB_FAILED  the warning's tail when the grab fails
    _log         the driver's logger
"""
import errno


class EvdevInput:
    WHAT = "input device"
    CHECK = "its cable"
    LEAKS = "events"
    GRAB_FAILED = "events may also reach the console"
    _log = None

    def __init__(self, device, reactor, on_dead=None):
        self.device = device
        self.reactor = reactor
        self.on_dead = on_dead
        self.running = False
        self.grabbed = False
        self.grab_error = None   # the OSError a failed grab raised, if any
        self.lost = None         # why the device went away, once it has
        self._fd = None

    def start(self):
        if self.running:
            return
        try:
            # Exclusive: otherwise the console on tty1 also gets what the device types.
            self.device.grab()
            self.grabbed = True
            self.grab_error = None
        except OSError as exc:
            self.grab_error = exc
            self._log.warning("%s %s: cannot grab it (%s); %s",
                              self.WHAT, self._name(), exc, self.GRAB_FAILED)
        self._fd = self.device.fileno()
        self._reset()
        self.reactor.add_reader(self._fd, self._readable, self._dead)
        self.running = True
        self.lost = None

    def stop(self):
        if self.grabbed:
            try:
                self.device.ungrab()
            except OSError:
                pass  # already gone: nothing to release
            self.grabbed = False
        if self._fd is not None:
            self.reactor.remove(self._fd)
            self._fd = None
        self._reset()
        self.running = False

    def _readable(self, fd, revents):
        try:
            # list(): evdev's read() is a generator, so EAGAIN comes on first use
            events = list(self.device.read())
        except BlockingIOError:
            return   # woken with nothing to read: harmless
        # EOFError and OSError(ENODEV) go up to the reactor, which calls _dead.
        self._events(events)

    def _events(self, events):
        """Decode what one read returned."""
        raise NotImplementedError

    def _reset(self):
        """Forget decoding state; called on start, stop and loss."""

    def _dead(self, fd, reason):
        self.running = False
        self.grabbed = False
        self._fd = None
        self.lost = reason
        self._reset()
        self._log.warning("%s %s lost: %s", self.WHAT, self._name(), reason)
        if self.on_dead is not None:
            self.on_dead(reason)

    def _name(self):
        return repr(getattr(self.device, "name", "?"))

    def selftest(self):
        """(ok, detail)."""
        name = self._name()
        if self.lost is not None:
            return False, ("%s %s lost (%s): check %s, then restart"
                           % (self.WHAT, name, self.lost, self.CHECK))
        if not self.running:
            return False, "%s %s not started" % (self.WHAT, name)
        return self._selftest_running(name)

    def _selftest_running(self, name):
        """(ok, detail) for a started device that has not been lost."""
        return True, "%s %s ok" % (self.WHAT, name) + self._grab_note()

    def _grab_note(self):
        """'; not grabbed ...' after a failed grab, else ''."""
        if self.grab_error is None:
            return ""
        reason = errno.errorcode.get(getattr(self.grab_error, "errno", None) or 0,
                                     str(self.grab_error))
        return "; not grabbed (%s): %s also reach the console" % (reason, self.LEAKS)
