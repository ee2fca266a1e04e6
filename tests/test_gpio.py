"""Buzzer and LED timing on the mock pin back end, driven by real reactor timers.

The reactor gets a fake clock: each pass moves the clock to the next timer's deadline
and runs the loop with a zero wait, so the pin history has exact times and the tests
never sleep.
"""
import pytest

from drivers.gpio import LED, Buzzer, GpioError, MockPins, RPiGPIOPins
from firmware.core.reactor import Reactor

BUZZER_PIN = 18
LED_PIN = 23
T0 = 1000


class FakeClock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def reactor(clock):
    r = Reactor(clock=clock)
    yield r
    r.close()


@pytest.fixture
def pins(clock):
    return MockPins(clock=clock)


@pytest.fixture
def run_until(reactor, clock):
    """Advance the fake clock timer by timer until cond() holds (bounded)."""
    def run(cond, limit=100):
        for _ in range(limit):
            if cond():
                return
            wait = reactor.next_timeout()
            if wait < 0:
                break                    # nothing left to happen
            clock.now += wait
            reactor.run_once(0)
        assert cond(), "condition not reached"
    return run


@pytest.fixture
def run_to(reactor, clock):
    """Fire every timer due up to time t, in order, and leave the clock at t."""
    def run(t, limit=1000):
        for _ in range(limit):
            wait = reactor.next_timeout()
            if wait < 0 or clock.now + wait > t:
                break
            clock.now += wait
            reactor.run_once(0)
        clock.now = t
        reactor.run_once(0)
    return run


def idle(reactor):
    return reactor.next_timeout() < 0


def test_setup_drives_the_pin_to_off(pins, reactor):
    Buzzer(pins, BUZZER_PIN, reactor)
    LED(pins, LED_PIN, reactor, active_high=False)
    assert pins.history == [(BUZZER_PIN, 0, T0), (LED_PIN, 1, T0)]


def test_error_pattern_level_history(pins, reactor, run_until):
    buzzer = Buzzer(pins, BUZZER_PIN, reactor)
    buzzer.beep("error")                   # 80 on, 60 off, 80 on, 60 off, 300 on
    assert buzzer.is_active
    run_until(lambda: not buzzer.is_active)
    assert pins.levels_of(BUZZER_PIN) == [
        (0, T0), (1, T0), (0, T0 + 80), (1, T0 + 140), (0, T0 + 220),
        (1, T0 + 280), (0, T0 + 580)]
    assert idle(reactor)
    assert pins.levels[BUZZER_PIN] == 0


def test_custom_pattern_with_trailing_pause(pins, reactor, run_until, clock):
    buzzer = Buzzer(pins, BUZZER_PIN, reactor)
    buzzer.beep([(10, 20), (0, 5), (30, 40)])
    run_until(lambda: not buzzer.is_active)
    assert pins.levels_of(BUZZER_PIN)[1:] == [
        (1, T0), (0, T0 + 10), (1, T0 + 35), (0, T0 + 65)]
    assert clock.now == T0 + 105           # active until the last pause is over


def test_new_beep_replaces_the_running_one(pins, reactor, run_to, run_until):
    buzzer = Buzzer(pins, BUZZER_PIN, reactor)
    buzzer.beep("alert")                   # 200 on / 150 off, three times
    run_to(T0 + 250)                       # in the first pause
    buzzer.beep("ok")                      # 120 on
    run_until(lambda: idle(reactor))
    assert pins.levels_of(BUZZER_PIN) == [
        (0, T0), (1, T0), (0, T0 + 200), (1, T0 + 250), (0, T0 + 370)]


def test_new_beep_while_sounding_keeps_sounding_for_the_new_length(
        pins, reactor, run_to, run_until):
    buzzer = Buzzer(pins, BUZZER_PIN, reactor)
    buzzer.beep("error")
    run_to(T0 + 50)                        # the first 80 ms tone is on
    buzzer.beep("key")                     # 25 ms: the old tone's timers must not fire
    run_until(lambda: idle(reactor))
    assert pins.levels_of(BUZZER_PIN) == [(0, T0), (1, T0), (0, T0 + 75)]


def test_unknown_pattern_name(pins, reactor):
    buzzer = Buzzer(pins, BUZZER_PIN, reactor)
    with pytest.raises(ValueError, match="siren"):
        buzzer.beep("siren")
    with pytest.raises(ValueError):
        buzzer.beep([(-1, 10)])


def test_led_blinks_the_given_number_of_times(pins, reactor, run_until):
    led = LED(pins, LED_PIN, reactor)
    led.blink(100, 50, times=3)
    run_until(lambda: not led.is_active)
    levels = pins.levels_of(LED_PIN)
    assert [lv for lv, _ in levels].count(1) == 3
    assert levels == [(0, T0), (1, T0), (0, T0 + 100), (1, T0 + 150), (0, T0 + 250),
                      (1, T0 + 300), (0, T0 + 400)]
    assert not led.is_lit and idle(reactor)


def test_led_blinks_until_told_otherwise(pins, reactor, run_to):
    led = LED(pins, LED_PIN, reactor)
    led.blink(10, 10)
    run_to(T0 + 995)                       # rising edges at T0, T0+20 ... T0+980
    assert [lv for lv, _ in pins.levels_of(LED_PIN)].count(1) == 50
    led.on()                               # a steady light ends the blinking
    assert led.is_lit and not led.is_active
    assert idle(reactor)
    led.off()
    assert pins.levels[LED_PIN] == 0


def test_active_low_led(pins, reactor, run_until):
    led = LED(pins, LED_PIN, reactor, active_high=False)
    led.blink(5, 5, times=1)
    run_until(lambda: not led.is_active)
    assert pins.levels_of(LED_PIN) == [(1, T0), (0, T0), (1, T0 + 5)]


def test_selftest_reads_the_pin_back(pins, reactor):
    buzzer = Buzzer(pins, BUZZER_PIN, reactor)
    ok, detail = buzzer.selftest()
    assert ok, detail
    assert pins.levels[BUZZER_PIN] == 0

    class StuckLow(MockPins):              # a pin shorted to ground
        def read(self, pin):
            return 0
    stuck = StuckLow(clock=pins.clock)
    ok, detail = LED(stuck, LED_PIN, reactor, name="led0").selftest()
    assert not ok and "led0" in detail


def test_mock_pins_refuse_writes_to_pins_not_set_up(pins):
    with pytest.raises(GpioError, match="GPIO5"):
        pins.write(5, 1)
    pins.setup_input(6, pull="up")
    assert pins.read(6) == 1
    pins.drive(6, 0)
    assert pins.read(6) == 0


class FakeRPiGPIO:
    """The RPi.GPIO module's surface, recording calls (the back end's transport)."""
    BCM, BOARD, OUT, IN, HIGH, LOW = 11, 10, 0, 1, 1, 0
    PUD_OFF, PUD_DOWN, PUD_UP = 20, 21, 22

    def __init__(self, mode=None):
        self.mode = mode
        self.calls = []
        self.out = {}

    def getmode(self):
        return self.mode

    def setmode(self, mode):
        self.mode = mode
        self.calls.append(("setmode", mode))

    def setwarnings(self, flag):
        pass

    def setup(self, pin, direction, **kw):
        self.calls.append(("setup", pin, direction, kw))
        if direction == self.OUT:
            self.out[pin] = kw.get("initial", self.LOW)

    def output(self, pin, level):
        self.calls.append(("output", pin, level))
        self.out[pin] = level

    def input(self, pin):
        return self.out.get(pin, 0)

    def cleanup(self, pins=None):
        self.calls.append(("cleanup", pins))


def test_rpi_gpio_back_end_uses_bcm_and_cleans_only_its_pins(reactor, run_until):
    gpio = FakeRPiGPIO()
    pins = RPiGPIOPins(module=gpio)
    assert gpio.mode == gpio.BCM
    buzzer = Buzzer(pins, BUZZER_PIN, reactor)
    buzzer.beep([(10, 0)])
    run_until(lambda: not buzzer.is_active)
    assert ("setup", BUZZER_PIN, gpio.OUT, {"initial": gpio.LOW}) in gpio.calls
    assert [c for c in gpio.calls if c[0] == "output"] == [
        ("output", BUZZER_PIN, gpio.HIGH), ("output", BUZZER_PIN, gpio.LOW)]
    assert buzzer.selftest()[0]
    pins.cleanup()
    assert gpio.calls[-1] == ("cleanup", [BUZZER_PIN])


def test_rpi_gpio_back_end_refuses_board_numbering():
    with pytest.raises(GpioError, match="BCM"):
        RPiGPIOPins(module=FakeRPiGPIO(mode=FakeRPiGPIO.BOARD))
