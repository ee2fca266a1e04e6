"""The keypad driver: evdev key events in, firmware key names out.

The device is injected: an evdev.InputDevice on the terminal (a gpio-keys or
matrix-keypad overlay, a USB keypad), drivers.evdev_pipe.PipeInputDevice in tests and
the simulator. Either way this driver reads kernel input events from a descriptor the
reactor watches; it never blocks and never polls.
"""
import errno
import logging

from evdev import ecodes

from firmware import keys as fkeys

log = logging.getLogger("handpos.keypad")

KEY_DOWN, KEY_UP, KEY_REPEAT = 1, 0, 2


class KeymapError(ValueError):
    pass


def compile_keymap(keymap):
    """{evdev key name: firmware key name} -> {key code: firmware key name}."""
    codes = {}
    for ev_name, key in keymap.items():
        code = ecodes.ecodes.get(ev_name)
        if code is None or not ev_name.startswith(("KEY_", "BTN_")):
            raise KeymapError("keypad: %r in the keymap is not an evdev key name (like "
                              "KEY_KP1 or KEY_ENTER; see evtest for what the keypad sends)"
                              % ev_name)
        if key not in fkeys.ALL:
            raise KeymapError("keypad: %s maps to %r, which is not a terminal key (one of %s)"
                              % (ev_name, key, ", ".join(fkeys.ALL)))
        if code in codes and codes[code] != key:
            raise KeymapError("keypad: %s maps to both %r and %r" % (ev_name, codes[code], key))
        codes[code] = key
    return codes


class Keypad:
    """Calls on_key(name) once per key press.

    Auto-repeat is ignored: a held key must not enter "000" into an amount. A press
    of a code the keymap lacks is counted in self.unknown and dropped. When the
    device goes away (EOF, ENODEV) the reactor drops the descriptor and this calls
    on_dead(reason).
    """

    def __init__(self, device, keymap, reactor, on_key, on_dead=None):
        self.device = device
        self.codes = compile_keymap(keymap)
        self.reactor = reactor
        self.on_key = on_key
        self.on_dead = on_dead
        self.running = False
        self.grabbed = False
        self.grab_error = None   # the OSError a failed grab raised, if any
        self.lost = None         # why the device went away, once it has
        self.pressed = 0         # key presses delivered
        self.unknown = 0         # presses of codes the keymap does not know
        self.last_unknown = None
        self._fd = None

    def start(self):
        if self.running:
            return
        try:
            # Exclusive: otherwise the console on tty1 also types the digits.
            self.device.grab()
            self.grabbed = True
            self.grab_error = None
        except OSError as exc:
            self.grab_error = exc
            log.warning("keypad %s: cannot grab it (%s); keys may also reach the console",
                        self._name(), exc)
        self._fd = self.device.fileno()
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
        self.running = False

    def _readable(self, fd, revents):
        try:
            events = list(self.device.read())
        except BlockingIOError:
            return   # woken with nothing to read: harmless
        # EOFError and OSError(ENODEV) go up to the reactor, which calls _dead.
        for event in events:
            if event.type != ecodes.EV_KEY or event.value != KEY_DOWN:
                continue
            name = self.codes.get(event.code)
            if name is None:
                self.unknown += 1
                self.last_unknown = event.code
                continue
            self.pressed += 1
            self.on_key(name)

    def _dead(self, fd, reason):
        self.running = False
        self.grabbed = False
        self._fd = None
        self.lost = reason
        log.warning("keypad %s lost: %s", self._name(), reason)
        if self.on_dead is not None:
            self.on_dead(reason)

    def _name(self):
        return repr(getattr(self.device, "name", "?"))

    def selftest(self):
        """(ok, detail)."""
        name = self._name()
        if self.lost is not None:
            return False, ("keypad %s lost (%s): check its cable or overlay, then restart"
                           % (name, self.lost))
        if not self.running:
            return False, "keypad %s not started" % name
        missing = self._unsupported()
        if missing and len(missing) == len(self.codes):
            return False, ("keypad %s sends none of the mapped keys: check the keymap in "
                           "the board profile against evtest" % name)
        detail = "keypad %s ok: %d keys mapped, %d presses, %d unknown" % (
            name, len(self.codes), self.pressed, self.unknown)
        if missing:
            # One keymap may serve several keypads; a key this one lacks is a note.
            detail += "; the device has no %s" % ", ".join(missing)
        if self.grab_error is not None:
            reason = errno.errorcode.get(getattr(self.grab_error, "errno", None) or 0,
                                         str(self.grab_error))
            detail += "; not grabbed (%s): keys also reach the console" % reason
        return True, detail

    def _unsupported(self):
        """Mapped evdev names the device says it cannot send (real devices only)."""
        caps = getattr(self.device, "capabilities", None)
        if caps is None:
            return []
        try:
            supported = set(caps().get(ecodes.EV_KEY, ()))
        except OSError:
            return []
        if not supported:
            return []
        return sorted(_key_name(c) for c in self.codes if c not in supported)


def _key_name(code):
    name = ecodes.KEY.get(code) or ecodes.BTN.get(code) or str(code)
    return name[0] if isinstance(name, (list, tuple)) else name
