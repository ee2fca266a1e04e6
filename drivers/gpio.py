"""GPIO outputs: the buzzer and the LEDs, over a pin back end chosen by the board.

As in gpiozero, devices (Buzzer, LED) are separate from pin back ends (RPiGPIOPins on
the terminal, MockPins in tests and the simulator). A back end only sets up, writes
and reads levels; timing belongs to the devices, and it runs on reactor timers:
nothing here sleeps, so a beep never holds up the keypad.

Pin numbers are BCM (GPIO18, not physical pin 12).
"""
from firmware.core.compat import monotonic_ms


class GpioError(Exception):
    """The GPIO back end cannot be used; the message says what to install or check."""


# -- pin back ends -------------------------------------------------------------------

class MockPins:
    """Pins in memory: records every level written, with the time it was written.

    history: [(pin, level, t_ms)] for every output level set (setup included);
    levels: {pin: current level}. Give it the reactor's clock so the times in the
    history are the times the reactor's timers fired.
    """

    def __init__(self, clock=None):
        self.clock = clock or monotonic_ms
        self.history = []
        self.levels = {}
        self.modes = {}          # pin -> "out" | "in"
        self.pulls = {}

    def setup_output(self, pin, initial=0):
        self.modes[pin] = "out"
        self._set(pin, 1 if initial else 0)

    def setup_input(self, pin, pull=None):
        self.modes[pin] = "in"
        self.pulls[pin] = pull
        self.levels.setdefault(pin, 1 if pull == "up" else 0)

    def write(self, pin, level):
        if self.modes.get(pin) != "out":
            # RPi.GPIO refuses this too; catching it here catches it before the board.
            raise GpioError("gpio: GPIO%d is not set up as an output" % pin)
        self._set(pin, 1 if level else 0)

    def read(self, pin):
        if pin not in self.modes:
            raise GpioError("gpio: GPIO%d is not set up" % pin)
        return self.levels[pin]

    def drive(self, pin, level):
        """The outside world sets an input (a paper sensor, a drawer switch)."""
        if self.modes.get(pin) != "in":
            raise GpioError("gpio: GPIO%d is not set up as an input" % pin)
        self.levels[pin] = 1 if level else 0

    def cleanup(self):
        self.modes.clear()

    def _set(self, pin, level):
        self.levels[pin] = level
        self.history.append((pin, level, self.clock()))

    def levels_of(self, pin):
        """[(level, t_ms)] written to one pin, in order."""
        return [(level, t) for p, level, t in self.history if p == pin]


class RPiGPIOPins:
    """Pins through the RPi.GPIO API: RPi.GPIO itself, or rpi-lgpio on a Pi 5 (same
    module name, built on the kernel's gpiochip interface)."""

    PULLS = {"up": "PUD_UP", "down": "PUD_DOWN", None: "PUD_OFF"}

    def __init__(self, module=None):
        self.gpio = module if module is not None else self._import()
        self.pins = set()
        mode = self.gpio.getmode()
        if mode is None:
            self.gpio.setmode(self.gpio.BCM)
        elif mode != self.gpio.BCM:
            # luma's SPI interface also sets BCM; anything else is a numbering clash.
            raise GpioError("gpio: the pins are already numbered in mode %r; handpos and "
                            "the board profile use BCM numbers" % (mode,))
        self.gpio.setwarnings(False)

    @staticmethod
    def _import():
        try:
            import RPi.GPIO as GPIO
        except ImportError:
            raise GpioError("gpio: the RPi.GPIO module is missing: install python3-rpi.gpio, "
                            "or python3-rpi-lgpio on a Pi 5")
        except RuntimeError as exc:
            # RPi.GPIO on a Pi 5 ("Cannot determine SOC peripheral base address") or
            # on a machine that is no Pi at all.
            raise GpioError("gpio: RPi.GPIO cannot drive this board (%s): on a Pi 5 replace "
                            "it with rpi-lgpio (apt install python3-rpi-lgpio)" % exc)
        return GPIO

    def setup_output(self, pin, initial=0):
        self.gpio.setup(pin, self.gpio.OUT,
                        initial=self.gpio.HIGH if initial else self.gpio.LOW)
        self.pins.add(pin)

    def setup_input(self, pin, pull=None):
        self.gpio.setup(pin, self.gpio.IN,
                        pull_up_down=getattr(self.gpio, self.PULLS[pull]))
        self.pins.add(pin)

    def write(self, pin, level):
        self.gpio.output(pin, self.gpio.HIGH if level else self.gpio.LOW)

    def read(self, pin):
        return 1 if self.gpio.input(pin) else 0

    def cleanup(self):
        # Only our pins: the display's DC/RST pins belong to luma.
        if self.pins:
            self.gpio.cleanup(sorted(self.pins))
            self.pins.clear()


# -- devices -------------------------------------------------------------------------

class OutputDevice:
    """An on/off output that can also play a pattern of (on_ms, off_ms) steps."""

    kind = "output"

    def __init__(self, pins, pin, reactor, active_high=True, name=None):
        self.pins = pins
        self.pin = int(pin)
        self.reactor = reactor
        self.active_high = active_high
        self.name = name or "%s on GPIO%d" % (self.kind, self.pin)
        self.is_on = False
        self._timer = None
        self._pattern = None
        self._step = 0
        self._cycle = 0
        self._cycles = None
        pins.setup_output(self.pin, initial=0 if active_high else 1)

    # -- levels ---------------------------------------------------------------------
    def _set(self, on):
        if on != self.is_on:
            self.is_on = on
            self.pins.write(self.pin, 1 if on == self.active_high else 0)

    def on(self):
        self._stop_pattern()
        self._set(True)

    def off(self):
        self._stop_pattern()
        self._set(False)

    @property
    def is_active(self):
        """True while a pattern is playing."""
        return self._pattern is not None

    # -- patterns -------------------------------------------------------------------
    def _play(self, pattern, cycles=1):
        steps = [(int(on), int(off)) for on, off in pattern]
        if any(on < 0 or off < 0 for on, off in steps):
            raise ValueError("%s: negative time in pattern %r" % (self.name, pattern))
        if cycles is None and not any(on or off for on, off in steps):
            raise ValueError("%s: an endless pattern needs some time in it" % self.name)
        self._stop_pattern()        # a new pattern replaces the one playing
        if not steps or cycles == 0:
            self._set(False)
            return
        self._pattern = steps
        self._cycles = cycles
        self._step = 0
        self._cycle = 0
        self._start_step()

    def _start_step(self):
        if self._step == len(self._pattern):
            self._cycle += 1
            if self._cycles is not None and self._cycle >= self._cycles:
                self._pattern = None
                self._timer = None
                return
            self._step = 0
        on_ms, off_ms = self._pattern[self._step]
        if on_ms:
            self._set(True)
            self._timer = self.reactor.call_later(on_ms, self._off_phase, off_ms)
        else:
            self._off_phase(off_ms)

    def _off_phase(self, off_ms):
        self._set(False)
        self._step += 1
        if off_ms:
            self._timer = self.reactor.call_later(off_ms, self._start_step)
        else:
            self._start_step()

    def _stop_pattern(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pattern = None

    def close(self):
        self.off()

    def selftest(self):
        """(ok, detail): switch on and off and read the pin back."""
        self._stop_pattern()
        was = self.is_on
        try:
            self._set(True)
            high = self.pins.read(self.pin)
            self._set(False)
            low = self.pins.read(self.pin)
            self._set(was)
        except Exception as exc:
            return False, "%s: cannot drive the pin (%s)" % (self.name, exc)
        want_on, want_off = (1, 0) if self.active_high else (0, 1)
        if (high, low) != (want_on, want_off):
            return False, ("%s: pin reads %d/%d after on/off: check the pin number in the "
                           "board profile" % (self.name, high, low))
        return True, "%s ok" % self.name


class Buzzer(OutputDevice):
    """An active buzzer: sounds while its pin is on."""

    kind = "buzzer"

    PATTERNS = {
        "key": [(25, 0)],                              # a tick under the finger
        "ok": [(120, 0)],                              # one clean beep
        "error": [(80, 60), (80, 60), (300, 0)],       # short-short-long
        "alert": [(200, 150), (200, 150), (200, 150)],  # take the card, paper out
    }

    def beep(self, pattern="key"):
        """Play a named pattern or a list of (on_ms, off_ms), replacing any playing."""
        if isinstance(pattern, str):
            try:
                pattern = self.PATTERNS[pattern]
            except KeyError:
                raise ValueError("buzzer: no pattern %r (have %s)"
                                 % (pattern, ", ".join(sorted(self.PATTERNS))))
        self._play(pattern, 1)

    def silence(self):
        self.off()


class LED(OutputDevice):
    kind = "led"

    def blink(self, on_ms=500, off_ms=500, times=None):
        """Blink times times (None: until on() or off()), ending off."""
        self._play([(on_ms, off_ms)], times)

    def toggle(self):
        if self.is_on:
            self.off()
        else:
            self.on()

    @property
    def is_lit(self):
        return self.is_on
