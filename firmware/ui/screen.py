"""What the core asks the display to show: a model, not pixels.

A display driver turns a Screen into pixels for its panel; the control socket turns it
into text. Strings in a Screen are already translated (firmware.ui.i18n).

Layout on a 128x64 panel with a 12 px font: a title bar with the status icons on its
right, three body rows (or one big line, e.g. an amount), and a footer of key hints.

A QR screen (qr set: the text to encode, e.g. a code URL) is laid out differently: the
symbol fills the panel's height on the left and the title, big line, body lines and
footer stand in a narrow column on its right, with no status bar. The model carries
only the text; the display driver makes the symbol.
"""

BODY_ROWS = 3
# What one body row holds, in the columns of firmware.ui.receipt.display_width (a
# Latin letter one, an ideograph two): 124 px of a 12 px font whose capitals take up to
# 7 px (WenQuanYi 9 pt), so 18 columns are safe whatever the letters.
ROW_COLUMNS = 18

# Printer states worth a mark in the status bar; "ok" shows nothing.
PRINTER_MARKS = {"paper_out": "P!", "paper_near_end": "P-", "cover_open": "P^",
                 "offline": "P?", "error": "P?", "missing": "P?"}


class Status:
    """The status bar: the same on every screen."""

    def __init__(self, clock="--:--", synced=False, link="none", battery=None,
                 charging=False, pending=0, printer="ok"):
        self.clock = clock          # "HH:MM" local time
        self.synced = synced        # False: the clock has never been synchronised
        self.link = link            # up | down | none (no host configured)
        self.battery = battery      # 0..100, or None on mains / no gauge
        self.charging = charging
        self.pending = pending      # offline payments waiting for upload
        self.printer = printer      # ok | paper_out | paper_near_end | cover_open | offline | missing

    def text(self):
        parts = [self.clock + ("" if self.synced else "?")]
        parts.append({"up": "L+", "down": "L-"}.get(self.link, "L "))
        if self.battery is not None:
            parts.append("B%d%s" % (self.battery, "+" if self.charging else ""))
        if self.pending:
            parts.append("Q%d" % self.pending)
        mark = PRINTER_MARKS.get(self.printer)
        if mark:
            parts.append(mark)
        return " ".join(parts)

    def key(self):
        return (self.clock, self.synced, self.link, self.battery, self.charging,
                self.pending, self.printer)


class Screen:
    def __init__(self, title="", lines=None, footer="", selected=-1, big="",
                 alert=None, status=None, masked="", top=-1, qr=""):
        self.title = title
        self.lines = list(lines or ())
        self.footer = footer
        self.selected = selected    # index into lines of the highlighted menu row, -1 none
        self.big = big              # one large centred line (amount, clock), "" none
        self.alert = alert          # None | "ok" | "error" | "warn": how the title bar reads
        self.status = status        # Status or None (the boot screens have none)
        self.masked = masked        # the entry field under the prompt (stars for a PIN)
        self.top = top              # >= 0: the body is a text scrolled by UP/DOWN, this
                                    # its first row shown (a scroll bar marks the rest)
        self.qr = qr                # text drawn as a QR code left of the rest, "" none

    def first_visible(self, rows=BODY_ROWS):
        """The first body row shown: the scrolled text's top, or so that the selected
        row is always on screen."""
        n = len(self.lines)
        if n <= rows:
            return 0
        if self.top >= 0:
            return min(self.top, n - rows)
        if self.selected < rows:
            return 0
        return min(self.selected - rows + 1, n - rows)

    def scrolls(self):
        """True when rows past the panel can be brought into view (menu or scrolled text)."""
        return self.selected >= 0 or self.top >= 0

    def text(self):
        """The screen as plain text, one row a line: the control socket's view."""
        rows = [self.title + ((" | " + self.status.text()) if self.status else "")]
        if self.big:
            rows.append(self.big)
        for i, line in enumerate(self.lines):
            rows.append(("> " if i == self.selected else "  ") + line if self.selected >= 0 else line)
        if self.masked:
            rows.append(self.masked)
        if self.footer:
            rows.append(self.footer)
        if self.qr:
            rows.append("[QR] " + self.qr)
        return "\n".join(rows)

    def key(self):
        return (self.title, tuple(self.lines), self.footer, self.selected, self.big,
                self.alert, self.masked, self.top, self.status.key() if self.status else None,
                self.qr)

    def __eq__(self, other):
        return isinstance(other, Screen) and self.key() == other.key()

    def __ne__(self, other):
        return not self.__eq__(other)


def wrap(text, columns=ROW_COLUMNS):
    """text as rows of at most columns, broken after a space, '-', '_' or '/' where one
    is near the end of a row, anywhere otherwise (a file name, a long number)."""
    from firmware.ui.receipt import display_width
    rows = []
    while display_width(text) > columns:
        used = 0
        cut = 0
        soft = 0
        for i, ch in enumerate(text):
            used += display_width(ch)
            if used > columns:
                break
            cut = i + 1
            if ch in " -_/":
                soft = i + 1
        if soft > columns // 2:
            cut = soft
        rows.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text or not rows:
        rows.append(text)
    return rows
