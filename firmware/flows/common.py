"""Pieces several flows share: a keypad entry field and a menu."""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.ui.screen import BODY_ROWS, ROW_COLUMNS


def entry_keys(**more):
    """A typing state's "on" table: digits, BKSP and CLEAR to type(), and more."""
    out = {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type"}
    out.update(more)
    return out


class EntryFlow(Flow):
    """A flow with a typed field (self.field, a Field) and an error row (self.error):
    a key typed clears the error; CANCEL clears what was typed, or, with nothing typed,
    leaves the flow."""

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def cancel_key(self, ev):
        if self.field.value:
            self.field.clear()
            self.error = None
            return None
        self.finish(None)
        return None


class Field:
    """Digits typed on the keypad: BKSP takes one back, CLEAR empties it."""

    def __init__(self, max_len, masked=False):
        self.max_len = max_len
        self.masked = masked
        self.value = ""

    def key(self, name):
        """Apply a key; True when the field changed. A full field refuses more digits."""
        if keys.is_digit(name):
            if len(self.value) + len(name) > self.max_len:
                return False
            self.value += name
            return True
        if name == keys.BKSP and self.value:
            self.value = self.value[:-1]
            return True
        if name == keys.CLEAR and self.value:
            self.value = ""
            return True
        return False

    def clear(self):
        # Rebinding drops the reference; a str cannot be wiped in place in Python.
        self.value = ""

    def shown(self):
        if self.masked:
            return "*" * len(self.value) if self.value else "_"
        return self.value or "_"


class PinEntry:
    """The customer's PIN typed on the keypad, for the sale and chip flows. The flow
    decides what ENTER does with it; this keeps the field and its one rule."""
    PIN_MAX = 12

    def enter_pin(self):
        self.pin = Field(self.PIN_MAX, masked=True)

    def type_pin(self, ev):
        self.error = None
        self.pin.key(ev.get("key"))

    def pin_too_short(self):
        if len(self.pin.value) < 4:
            self.error = "err_pin_short"
            return True
        return False


TAP_PAUSE_MS = 1200         # the same key again within this: its next character


class MultiTap:
    """Text typed on the digit keys, as on a phone: taps maps a key to its characters;
    the key pressed again within TAP_PAUSE_MS gives its next one, another key (or a
    pause) the next place. cases: F2 switches upper and lower case for what comes next
    (a Wi-Fi passphrase); without, the characters are as taps has them (a name)."""

    def __init__(self, clock, taps, max_len, cases=False):
        self.clock = clock
        self.taps = taps
        self.max_len = max_len
        self.cases = cases
        self.upper = False
        self.value = ""
        self._last = None
        self._at = 0
        self._turn = 0

    def key(self, name):
        """Apply a key; True when the text changed (or the case did)."""
        if name == keys.DOUBLE_ZERO:
            name = "0"
        now = self.clock()
        if name in self.taps:
            chars = self.taps[name]
            if name == self._last and now - self._at < TAP_PAUSE_MS and self.value:
                self._turn = (self._turn + 1) % len(chars)
                self.value = self.value[:-1] + self._case(chars[self._turn])
            else:
                if len(self.value) >= self.max_len:
                    return False
                self._turn = 0
                self.value += self._case(chars[0])
            self._last, self._at = name, now
            return True
        self._last = None
        if self.cases and name == keys.F2:
            self.upper = not self.upper
            return True
        if name == keys.BKSP and self.value:
            self.value = self.value[:-1]
            return True
        if name == keys.CLEAR and self.value:
            self.value = ""
            return True
        return False

    def _case(self, ch):
        if not self.cases:
            return ch
        return ch.upper() if self.upper else ch

    def text(self):
        return self.value.strip()

    def clear(self):
        self.value = ""

    def shown(self, columns=ROW_COLUMNS - 1):
        """The end of the text that fits, spaces as _, and the cursor."""
        return (self.value.replace(" ", "_"))[-columns:] + "|"


class AmountField:
    """An amount typed ATM-style in minor units: 1, 2, 5, 0 reads 12.50.

    The digits fill from the right, so the person never types the decimal point; 00
    adds two zeros; BKSP takes the last digit back; CLEAR empties. More than max_minor
    is refused as it is typed (the screen says why), never silently cut.
    """

    def __init__(self, currency, max_minor):
        from firmware.core.money import format_amount
        self._format = format_amount
        self.currency = currency
        self.max_minor = max_minor
        self.value = 0
        self.too_big = False

    def key(self, name):
        self.too_big = False
        if keys.is_digit(name):
            new = self.value * (10 ** len(name)) + int(name)
            if new > self.max_minor:
                self.too_big = True
                return False
            self.value = new
            return True
        if name == keys.BKSP and self.value:
            self.value //= 10
            return True
        if name == keys.CLEAR and self.value:
            self.value = 0
            return True
        return False

    def shown(self):
        return self._format(self.value, self.currency)


class MenuFlow(Flow):
    """A list of entries; UP/DOWN move, a digit picks the nth entry, ENTER opens it.

    Subclasses give TITLE and entries(): a list of (message id, method name). Opening
    calls the method, which returns a state name or starts a child flow.
    """
    TITLE = ""
    INITIAL = "menu"
    STATES = {
        "menu": {"timeout": "menu_timeout_s",  # untouched menus fall back to idle
                 "on": {keys.UP: "up", keys.DOWN: "down", keys.ENTER: "open",
                        "digit": "pick", keys.CANCEL: "cancel", keys.MENU: "cancel"}},
        "notice": {"timeout": 8000,
                   "on": {keys.ENTER: "back", keys.CANCEL: "back", "timeout": "back",
                          keys.UP: "notice_up", keys.DOWN: "notice_down"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.index = 0
        self.notice_lines = []
        self.notice_top = 0

    def entries(self):
        return []

    def up(self, ev):
        n = len(self.entries())
        self.index = (self.index - 1) % n if n else 0

    def down(self, ev):
        n = len(self.entries())
        self.index = (self.index + 1) % n if n else 0

    def pick(self, ev):
        number = ev.get("key")
        if number == "00" or number == "0":
            return None
        i = int(number) - 1
        if i < len(self.entries()):
            self.index = i
            return self.open(ev)
        return None

    def open(self, ev):
        entries = self.entries()
        if not entries:
            return None
        return getattr(self, entries[self.index][1])()

    def say(self, *lines):
        """Show a short notice in the menu's place; any key or 4 s goes back."""
        self.notice_lines = list(lines)
        self.notice_top = 0
        return "notice"

    def notice_up(self, ev):
        self.notice_top = max(0, self.notice_top - 1)

    def notice_down(self, ev):
        self.notice_top = max(0, min(len(self.notice_lines) - BODY_ROWS, self.notice_top + 1))

    def back(self, ev):
        return "menu"

    def child_done(self, child, result):
        return "menu"

    def render(self):
        t = self.t
        if self.state == "notice":
            self.term.show(t(self.TITLE), self.notice_lines, t("footer_ok"), top=self.notice_top)
            return
        lines = ["%d %s" % (i + 1, t(e[0])) for i, e in enumerate(self.entries())]
        self.term.show(t(self.TITLE), lines, t("footer_menu"), selected=self.index)
