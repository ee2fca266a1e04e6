"""The keypad driver: evdev key events in, firmware key names out.

The device is injected: an evdev.InputDevice on the terminal (a gpio-keys or
matrix-keypad overlay, a USB keypad), drivers.evdev_pipe.PipeInputDevice in tests and
the simulator. Either way this driver reads kernel input events from a descriptor the
reactor watches; it never blocks and never polls.
"""
import logging

from evdev import ecodes

from drivers.evdev_input import EvdevInput
from firmware.core import keys as fkeys

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


class Keypad(EvdevInput):
    """Calls on_key(name) once per key press.

    Auto-repeat is ignored: a held key must not enter "000" into an amount. A press
    of a code the keymap lacks is counted in self.unknown and dropped. When the
    device goes away (EOF, ENODEV) the reactor drops the descriptor and this calls
    on_dead(reason).
    """

    WHAT = "keypad"
    CHECK = "its cable or overlay"
    LEAKS = "keys"
    GRAB_FAILED = "keys may also reach the console"
    _log = log

    def __init__(self, device, keymap, reactor, on_key, on_dead=None):
        super().__init__(device, reactor, on_dead)
        self.codes = compile_keymap(keymap)
        self.on_key = on_key
        self.pressed = 0         # key presses delivered
        self.unknown = 0         # presses of codes the keymap does not know
        self.last_unknown = None

    def _events(self, events):
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

    def _selftest_running(self, name):
        missing = self._unsupported()
        if missing and len(missing) == len(self.codes):
            return False, ("keypad %s sends none of the mapped keys: check the keymap in "
                           "the board profile against evtest" % name)
        detail = "keypad %s ok: %d keys mapped, %d presses, %d unknown" % (
            name, len(self.codes), self.pressed, self.unknown)
        if missing:
            # One keymap may serve several keypads; a key this one lacks is a note.
            detail += "; the device has no %s" % ", ".join(missing)
        return True, detail + self._grab_note()

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
