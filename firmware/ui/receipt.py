"""What the core asks the printer to print: a model, not ESC/POS.

A 58 mm printer gives 32 columns of the standard font (12x24 dots); a CJK glyph takes
two columns. The printer driver turns the model into its command set; text() gives
what the paper shows, for the control socket, reprints and tests.
"""

WIDTH = 32


def display_width(text):
    """Columns the text takes on paper: CJK and full-width forms take two."""
    width = 0
    for ch in text:
        width += 2 if _wide(ord(ch)) else 1
    return width


def _wide(code):
    return (0x1100 <= code <= 0x115F or 0x2E80 <= code <= 0xA4CF or 0xAC00 <= code <= 0xD7A3
            or 0xF900 <= code <= 0xFAFF or 0xFE30 <= code <= 0xFE4F or 0xFF00 <= code <= 0xFF60
            or 0xFFE0 <= code <= 0xFFE6)


def fit(text, width):
    """Cut text to at most width columns, never splitting a wide glyph."""
    out = ""
    used = 0
    for ch in text:
        w = 2 if _wide(ord(ch)) else 1
        if used + w > width:
            break
        out += ch
        used += w
    return out


class Line:
    kind = "text"

    def __init__(self, text, align="left", bold=False, size=1):
        self.text = text
        self.align = align      # left | center | right
        self.bold = bold
        self.size = size        # 1 normal, 2 double width and height

    def columns(self, width=WIDTH):
        return width // self.size

    def render(self, width=WIDTH):
        cols = self.columns(width)
        text = fit(self.text, cols)
        pad = cols - display_width(text)
        if self.align == "center":
            text = " " * (pad // 2) + text
        elif self.align == "right":
            text = " " * pad + text
        return text


class BarcodeLine(Line):
    """A Code 128 symbol of data, centred, with its human-readable text under it.
    render() gives that text, so the receipt's text() still reads it; the printer
    driver prints the bars (kind "barcode")."""
    kind = "barcode"

    def __init__(self, data, text=None):
        Line.__init__(self, data if text is None else text, "center")
        self.data = data


# A QR code's module on paper, in printer dots (0.125 mm at 203 dpi): 6 dots make a
# 0.75 mm module, which a phone reads at arm's length off thermal paper.
QR_MODULE_DOTS = 6


class QrLine(Line):
    """A QR code (model 2, error level M) of data, centred, on its own; render() gives
    the blank line the printer feeds after it (kind "qr"). size: dots a module."""
    kind = "qr"

    def __init__(self, data, size=QR_MODULE_DOTS):
        Line.__init__(self, "", "center")
        self.data = data
        self.module = size


class Receipt:
    def __init__(self, width=WIDTH, lang="en"):
        self.width = width
        self.lang = lang
        self.lines = []
        self.kick_drawer = False
        self.cut = True
        self.feed_after = 3

    def add(self, text, align="left", bold=False, size=1):
        self.lines.append(Line(text, align, bold, size))
        return self

    def pair(self, left, right, bold=False):
        """Left text and right text on one line, e.g. a label and an amount."""
        room = self.width - display_width(right) - 1
        left = fit(left, max(0, room))
        gap = self.width - display_width(left) - display_width(right)
        self.lines.append(Line(left + " " * max(1, gap) + right, "left", bold, 1))
        return self

    def barcode(self, data, text=None):
        """A Code 128 barcode of data (printable ASCII), text under it (data itself
        when None)."""
        self.lines.append(BarcodeLine(data, text))
        return self

    def qr(self, data, size=QR_MODULE_DOTS, text=""):
        """A QR code of data (a code URL) between blank lines, its quiet zone on paper,
        and text centred under it when given. size: dots a module (1-16)."""
        self.lines.append(Line(""))
        self.lines.append(QrLine(data, size))
        if text:
            self.lines.append(Line(text, "center"))
        return self

    def rule(self, ch="-"):
        self.lines.append(Line(ch * self.width))
        return self

    def blank(self):
        self.lines.append(Line(""))
        return self

    def text(self):
        return "\n".join(line.render(self.width) for line in self.lines)
