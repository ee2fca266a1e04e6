"""The display driver: a firmware Screen model drawn on a luma device.

The same class drives an SSD1306/SH1106 over I2C or SPI on the terminal and luma's own
`dummy` device in tests and the simulator; only the device under it changes.

Everything is drawn in mode "1" with a CJK bitmap font (WenQuanYi 12 px): anti-aliased
vector glyphs turn to mush on a 128x64 monochrome panel, bitmap glyphs stay crisp.
Row geometry comes from the font's measured ink, so a 13 px or 16 px font or a taller
panel lays itself out without new numbers here.
"""
import logging
import os

import segno
from PIL import Image, ImageDraw, ImageFont

from firmware.ui.screen import BODY_ROWS, Screen


FONT_PACKAGE = "xfonts-wqy"

# Directories searched for fonts, in order. The Debian packages install here.
FONT_DIRS = (
    "/usr/share/fonts/X11/misc",
    "/usr/share/fonts/truetype/wqy",
    "/usr/share/fonts/truetype/unifont",
    "/usr/local/share/fonts",
    os.path.expanduser("~/.local/share/fonts"),
    os.path.expanduser("~/.fonts"),
)

# CJK fonts that read well on a small monochrome panel, by pixel size. The PCF files
# are bitmap strikes that FreeType opens only at their own size; the .ttc faces
# carry embedded bitmaps at small sizes (fonts-wqy-zenhei) and work as a fallback.
KNOWN_FONTS = {
    12: ("wenquanyi_9pt.pcf", "wqy-zenhei.ttc"),
    13: ("wenquanyi_10pt.pcf", "wenquanyi_13px.pcf", "wqy-zenhei.ttc"),
    15: ("wenquanyi_11pt.pcf", "wqy-zenhei.ttc"),
    16: ("wenquanyi_12pt.pcf", "unifont.otf", "unifont.ttf", "wqy-zenhei.ttc"),
}

log = logging.getLogger("handpos.display")

# -- QR screens -------------------------------------------------------------------------
# The symbol is drawn dark modules on lit pixels (a phone reads dark-on-light; inverted
# codes are not read by every scanner app), at a whole number of pixels a module, with
# a lit quiet zone of QR_QUIET modules on every side, as large as the panel's height
# allows. Error level L: a lit panel under glass is never torn, creased or smudged the
# way paper is, so the symbol spends its modules on data; L keeps it one version
# smaller, hence larger modules, than M would (segno raises the level when that costs
# no extra module). Never a Micro QR: phone cameras do not read those.
# On 64 px with a 2-module quiet zone: up to version 2 (25 modules, QR_SCALE2_CHARS
# bytes at L) gets 2 px a module; versions 3-10 (up to QR_MAX_CHARS bytes) only 1 px,
# which is logged, since small phones struggle with it; longer text is not drawn.
QR_ERROR = "L"
QR_QUIET = 2
QR_SCALE2_CHARS = 32
QR_MAX_CHARS = 271


def qr_symbol(text):
    """The segno QR code the display draws for text (model 2, level L or better)."""
    return segno.make(text, error=QR_ERROR.lower(), micro=False, boost_error=True)


def qr_scale(modules, height, quiet=QR_QUIET):
    """Pixels a module for a symbol of modules a side on a panel height px high
    (0: it does not fit even at one pixel)."""
    return height // (modules + 2 * quiet)


# What a frame looks like in a PNG: lit pixels in the pale blue-white of an OLED.
PNG_ON = (225, 240, 255)
PNG_OFF = (12, 12, 18)


# -- text that did not make it onto the panel ----------------------------------------
# A screen whose words do not fit is a bug in the screen, not in the panel: the driver
# cuts the text (with a visible "...") so the terminal goes on, and reports each loss
# so that it can be found. Watchers are process-wide (the test suite fails any test
# during which a screen lost text); with HANDPOS_TEXT_LOSS_LOG set, a simulator in
# another process appends one JSON line per loss to that file as well.
TEXT_LOSS_LOG_ENV = "HANDPOS_TEXT_LOSS_LOG"
_loss_watchers = []


class TextLoss:
    """One piece of a screen that the panel could not show whole."""

    def __init__(self, part, text, shown, title):
        self.part = part        # "title", "line 3", "footer", "big", "entry"
        self.text = text        # what the screen asked for
        self.shown = shown      # what the panel shows of it ("" when dropped)
        self.title = title      # the screen's title, to find the screen

    def __str__(self):
        how = "cut to %r" % (self.shown + "...") if self.shown else "not shown"
        return "screen %r: %s %r %s" % (self.title, self.part, self.text, how)

    def as_dict(self):
        return {"part": self.part, "text": self.text, "shown": self.shown, "title": self.title}


def watch_text_loss(fn):
    """Call fn(loss) for every TextLoss any display in this process reports."""
    _loss_watchers.append(fn)


def unwatch_text_loss(fn):
    if fn in _loss_watchers:
        _loss_watchers.remove(fn)


def _report_loss(loss):
    for fn in list(_loss_watchers):
        fn(loss)
    path = os.environ.get(TEXT_LOSS_LOG_ENV)
    if path:
        import json
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(loss.as_dict(), ensure_ascii=False) + "\n")
        except OSError:
            pass             # a diagnostic aid: never let it stop the screen


class DisplayError(Exception):
    """The display cannot be used; the message says what to check."""


class FontNotFoundError(DisplayError):
    pass


def find_font(size=12, dirs=None):
    """Path of a CJK bitmap font for size-pixel text, or FontNotFoundError."""
    dirs = FONT_DIRS if dirs is None else dirs
    names = KNOWN_FONTS.get(size, ())
    for name in names:
        for folder in dirs:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and _opens(path, size):
                return path
    raise FontNotFoundError(
        "display: no %d px CJK bitmap font found (looked for %s in %s): install the "
        "Debian package %s (sudo apt install %s)"
        % (size, ", ".join(names) or "any known font", ", ".join(dirs), FONT_PACKAGE,
           FONT_PACKAGE))


def _opens(path, size):
    try:
        ImageFont.truetype(path, size)
        return True
    except OSError:
        return False


def load_font(path, size=None):
    """Open a font at size, or at the one size a bitmap (PCF) font has."""
    sizes = [size] if size else [12] + [s for s in range(8, 33) if s != 12]
    for s in sizes:
        try:
            return ImageFont.truetype(path, s), s
        except OSError:
            continue
    raise FontNotFoundError("display: cannot open font %s%s: check the file, or install %s"
                            % (path, " at %d px" % size if size else "", FONT_PACKAGE))


# -- small pixel glyphs for the status bar -----------------------------------------
# '#' is a lit pixel in the foreground colour. Drawn by hand because the 12 px font's
# own symbols are a full 12 px wide and the status bar has no room for them.
GLYPHS = {
    "query": ("##.",
              "..#",
              ".#.",
              "...",
              ".#."),
    "link_up": ("......##",
                "......##",
                "...##.##",
                "...##.##",
                "##.##.##",
                "##.##.##"),
    "link_down": ("...#...#",
                  "....#.#.",
                  ".....#..",
                  "....#.#.",
                  "...#...#",
                  "##.##.##"),
    "bolt": ("...#",
             "..#.",
             ".##.",
             "####",
             ".##.",
             ".#..",
             "#..."),
    "printer": ("#######",
                "#.....#",
                "#..#..#",
                "#..#..#",
                "#..#..#",
                "#.....#",
                "#..#..#",
                "#.....#",
                "#######"),
    "check": ("......#",
              ".....##",
              "#...##.",
              "##.##..",
              ".###...",
              "..#...."),
    "warn": ("....#....",
             "...###...",
             "...#.#...",
             "..##.##..",
             "..##.##..",
             ".###.###.",
             ".#######.",
             "####.####",
             "#########"),
    "error": ("#######",
              "###.###",
              "###.###",
              "###.###",
              "###.###",
              "#######",
              "###.###",
              "#######"),
}


def _glyph(draw, x, y, name, fill):
    rows = GLYPHS[name]
    for dy, row in enumerate(rows):
        for dx, ch in enumerate(row):
            if ch == "#":
                draw.point((x + dx, y + dy), fill=fill)


def _glyph_size(name):
    rows = GLYPHS[name]
    return max(len(r) for r in rows), len(rows)


class Layout:
    """Where the title, body rows and footer go on a panel of a given size.

    128x64 with a 12 px font: title bar 0-12, body rows at 14, 26, 38, footer at 52.
    A short panel (128x32) drops the footer; a tall one (128x128) spaces its rows.
    """

    def __init__(self, width, height, line_h):
        self.width = width
        self.height = height
        self.line_h = line_h
        self.title_h = min(height, line_h + 1)   # one spare row above the glyphs
        self.body_top = self.title_h + 1
        if height >= self.body_top + line_h + 2 + line_h:
            self.footer_top = height - line_h
            body_bottom = self.footer_top - 2
        else:
            self.footer_top = None                # 128x32: title and one row only
            body_bottom = height
        space = max(0, body_bottom - self.body_top)
        # Stacked CJK rows with no leading run into each other; a tall panel can
        # afford two rows of air and still show more than the 64 px panel does.
        self.pitch = line_h + 2 if space // (line_h + 2) > BODY_ROWS else line_h
        self.rows = space // self.pitch
        self.body_h = self.rows * self.pitch
        if self.footer_top is None:
            self.body_top += (space - self.body_h) // 2

    def row_y(self, index):
        return self.body_top + index * self.pitch


class LumaDisplay:
    """Draws firmware Screen models on a luma device (mode "1" frames)."""

    def __init__(self, device, font_path=None, on_frame=None, font_size=None, on_loss=None):
        self.device = device
        self.on_loss = on_loss    # on_loss(TextLoss): the log, on a real terminal
        self.losses = []          # what the last screen rendered could not show
        self._lost_key = None     # the screen whose losses were last reported
        self.font_path = font_path or find_font(font_size or 12)
        self.font, self.font_size = load_font(self.font_path, font_size)
        self.on_frame = on_frame
        self.size = tuple(device.size)
        self.frames = 0           # frames actually pushed to the panel
        self.image = None         # the last frame pushed
        self.screen = None        # the last screen shown
        self._pushed = None       # bytes of the last frame pushed
        self._measure()
        self.layout = Layout(self.size[0], self.size[1], self.line_h)

    # -- font metrics ---------------------------------------------------------------
    def _measure(self):
        ascent, descent = self.font.getmetrics()
        probe = Image.new("1", (64, ascent + descent + 8))
        draw = ImageDraw.Draw(probe)
        draw.fontmode = "1"
        # The tallest CJK ideograph and the Latin descenders bound every row.
        draw.text((0, 4), "国", font=self.font, fill=1)
        if probe.getbbox() is None:
            raise FontNotFoundError("display: font %s draws no Chinese glyphs: install %s"
                                    % (self.font_path, FONT_PACKAGE))
        draw.text((0, 4), "国g|", font=self.font, fill=1)
        box = probe.getbbox()
        self.ink_top = box[1] - 4             # first inked row below the draw origin
        self.line_h = box[3] - box[1]         # 12 for WenQuanYi 9pt
        self.baseline = ascent - self.ink_top  # baseline, from the top of the ink
        self.ellipsis_w = 6

    # -- text -----------------------------------------------------------------------
    def text_width(self, text, tracking=0):
        """Advance of text in px, with tracking px added between characters."""
        return int(self.font.getlength(text)) + tracking * max(0, len(text) - 1)

    def fit(self, text, width, tracking=0):
        """(text, cut): the longest prefix that fits width px, room left for '...'."""
        if self.text_width(text, tracking) <= width:
            return text, False
        room = width - self.ellipsis_w
        out = ""
        for ch in text:
            if self.text_width(out + ch, tracking) + tracking > room:
                break
            out += ch
        return out, True

    def _text_mask(self, text, width, scale=1, tracking=0):
        """A mode "1" mask of text no wider than width, one line_h tall (times scale)."""
        limit = max(0, width // scale)
        shown, cut = self.fit(text, limit, tracking)
        end = self.text_width(shown, tracking) + (tracking if cut else 0)
        w = min(limit, end + (self.ellipsis_w if cut else 0))
        if w <= 0:
            return None
        mask = Image.new("1", (w, self.line_h))
        draw = ImageDraw.Draw(mask)
        draw.fontmode = "1"
        if tracking:
            x = 0
            for ch in shown:
                draw.text((x, -self.ink_top), ch, font=self.font, fill=1)
                x += self.text_width(ch) + tracking
        else:
            draw.text((0, -self.ink_top), shown, font=self.font, fill=1)
        if cut:
            # Three one-pixel dots on the baseline: the font's own ellipsis is a
            # full 12 px CJK glyph and would eat two Latin letters.
            x = end + 1
            for i in range(3):
                draw.rectangle((x + 2 * i, self.baseline - 2, x + 2 * i, self.baseline - 1),
                               fill=1)
        if scale != 1:
            mask = mask.resize((mask.width * scale, mask.height * scale), Image.NEAREST)
        return mask

    def _draw_text(self, image, box, text, fill, align="left", scale=1, inset=1, tracking=0,
                   part=None):
        """Draw text inside box (x0, y0, x1, y1 exclusive), clipped to it, vertically
        centred in it (an odd spare row goes above: the glyphs' ink has none).
        A text that does not fit is cut with "..." and, when part names it, recorded."""
        x0, y0, x1, y1 = box
        avail = x1 - x0 - 2 * inset
        if not text:
            return
        if avail <= 0 or y1 <= y0:
            self._lost(part, text, "")
            return
        if part is not None:
            shown, cut = self.fit(text, max(0, avail // scale), tracking)
            if cut:
                self._lost(part, text, shown)
        mask = self._text_mask(text, avail, scale, tracking)
        if mask is None:
            return
        h = min(mask.height, y1 - y0)
        mask = mask.crop((0, 0, min(mask.width, avail), h))
        if align == "center":
            x = x0 + inset + (avail - mask.width) // 2
        elif align == "right":
            x = x1 - inset - mask.width
        else:
            x = x0 + inset
        y = y0 + max(0, (y1 - y0 - mask.height + 1) // 2)
        image.paste(fill, (x, y, x + mask.width, y + mask.height), mask)

    def _lost(self, part, text, shown):
        if part is not None and self._losses is not None:
            self._losses.append(TextLoss(part, text, shown, self._title))

    # -- rendering ------------------------------------------------------------------
    _losses = None
    _title = ""

    def render(self, screen):
        """The frame for screen: a mode "1" image of the device's size. What did not
        fit is in self.losses afterwards."""
        lay = self.layout
        self._losses, self._title = [], screen.title
        image = Image.new("1", self.size, 0)
        draw = ImageDraw.Draw(image)
        draw.fontmode = "1"
        if getattr(screen, "qr", ""):
            self._draw_qr_screen(image, draw, screen)
            self.losses, self._losses = self._losses, None
            return image
        self._draw_title(image, draw, screen)
        if lay.rows:
            self._draw_body(image, draw, screen)
        else:
            for i, line in enumerate(screen.lines):
                self._lost("line %d" % (i + 1), line, "")
            for part, text in (("big", screen.big), ("entry", screen.masked)):
                if text:
                    self._lost(part, text, "")
        if screen.footer:
            if lay.footer_top is not None:
                self._draw_text(image, (0, lay.footer_top, lay.width, lay.height),
                                screen.footer, 1, part="footer")
            else:
                self._lost("footer", screen.footer, "")
        self.losses, self._losses = self._losses, None
        return image

    def _draw_title(self, image, draw, screen):
        lay = self.layout
        w, h = lay.width, lay.title_h
        error = screen.alert == "error"
        # The bar is inverted (dark text on a lit band) except for an error, which
        # is drawn unlit with a lit badge: the change of the whole bar is what
        # catches the eye at arm's length.
        bg, fg = (0, 1) if error else (1, 0)
        if bg:
            draw.rectangle((0, 0, w - 1, h - 1), fill=1)
        else:
            draw.line((0, h - 1, w - 1, h - 1), fill=1)   # still reads as a bar
        base = 1 + self.baseline      # baseline row of the title text
        x = 2
        badge = {"error": "error", "warn": "warn", "ok": "check"}.get(screen.alert)
        if badge:
            gw, gh = _glyph_size(badge)
            _glyph(draw, x, base - gh, badge, fg)
            x += gw + 3
        right = w - 1
        if screen.status is not None:
            want = self.text_width(screen.title) + 2
            right = self._draw_status(image, draw, screen.status, x, right, want, base, fg)
        self._draw_text(image, (x, 0, right - 2, h), screen.title, fg, inset=0, part="title")

    def _status_items(self, status):
        """[(tag, width, draw(draw, x, baseline, fill))] for each mark, left to right."""
        items = []

        def text_item(tag, text, extra_w=0, extra=None):
            # The advance includes a blank column after the last glyph; the gap
            # between marks already provides it.
            width = self.text_width(text) - 1

            def draw_it(draw, x, base, fill):
                draw.text((x, base - self.baseline - self.ink_top), text, font=self.font,
                          fill=fill)
                if extra is not None:
                    extra(draw, x + width + 2, base, fill)
            return (tag, width + extra_w, draw_it)

        def glyph_item(tag, name):
            gw, gh = _glyph_size(name)
            return (tag, gw, lambda d, x, b, f: _glyph(d, x, b - gh, name, f))

        if status.synced:
            items.append(text_item("clock", status.clock))
        else:
            # A small raised '?' after the time: the clock was never synchronised.
            cap = self._cap_height()
            items.append(text_item("clock", status.clock, 2 + _glyph_size("query")[0],
                                   lambda d, x, b, f: _glyph(d, x, b - cap, "query", f)))
        if status.link in ("up", "down"):
            items.append(glyph_item("link", "link_" + status.link))
        if status.battery is not None:
            level, charging = status.battery, status.charging
            items.append(("battery", 17 if charging else 12,
                          lambda d, x, b, f: self._battery(d, x, b, f, level, charging)))
        if status.pending:
            items.append(text_item("pending", "Q%d" % status.pending))
        if status.printer != "ok":
            items.append(glyph_item("printer", "printer"))
        return items

    def _cap_height(self):
        """Height of a digit above the baseline."""
        return self.baseline - (self.font.getbbox("0")[1] - self.ink_top)

    def _battery(self, draw, x, base, fill, level, charging):
        # 11x7 outline, a 1x3 terminal, up to 7 px of charge inside.
        top = base - 7
        draw.rectangle((x, top, x + 10, top + 6), outline=fill)
        draw.rectangle((x + 11, top + 2, x + 11, top + 4), fill=fill)
        level = max(0, min(100, int(level)))
        cells = (level * 7 + 50) // 100
        if cells:
            draw.rectangle((x + 2, top + 2, x + 1 + cells, top + 4), fill=fill)
        if charging:
            _glyph(draw, x + 13, base - 7, "bolt", fill)

    # A title that does not fit beside the marks may take the place of these, in
    # this order, if that lets it fit whole; a printer or queue warning always stays.
    # A title too long for that is cut instead, the marks kept.
    STATUS_DROP_ORDER = ("clock", "link", "battery")
    STATUS_GAP = 3

    def _draw_status(self, image, draw, status, title_x, right, want, base, fill):
        """Draw the marks right-aligned ending at right; returns their left edge."""
        gap = self.STATUS_GAP

        def left_edge(items):
            if not items:
                return right
            return right - sum(w for _, w, _ in items) - gap * (len(items) - 1)
        full = self._status_items(status)
        choices = [full]
        for tag in self.STATUS_DROP_ORDER:
            choices.append([item for item in choices[-1] if item[0] != tag])
        items = next((c for c in choices if left_edge(c) - title_x >= want), None)
        if items is None:
            floor = self.layout.width // 4
            items = next((c for c in choices if left_edge(c) - title_x >= floor), choices[-1])
        x = left = left_edge(items)
        for _, w, fn in items:
            fn(draw, x, base, fill)
            x += w + gap
        return left

    def _draw_body(self, image, draw, screen):
        lay = self.layout
        w, pitch = lay.width, lay.pitch
        slots = lay.rows
        y = lay.body_top
        if screen.big:
            # Double size when it fits across and there are two rows for it, with a
            # pixel between characters if that still fits (a doubled '¥' touches
            # the digit after it otherwise).
            scale, tracking = 1, 0
            # Double size only when the rows under it still hold every line (a menu
            # or scrolled text needs one): the words under a big word matter too.
            below = (1 if screen.scrolls() else len(screen.lines)) if screen.lines else 0
            below += 1 if screen.masked else 0
            if slots - 2 >= below:
                for t in (1, 0):
                    if self.text_width(screen.big, t) * 2 <= w - 4:
                        scale, tracking = 2, t
                        break
            if not screen.lines and not screen.masked:
                y += (lay.body_h - scale * pitch) // 2     # alone: in the middle
            self._draw_text(image, (0, y, w, y + scale * pitch), screen.big, 1,
                            align="center", scale=scale, tracking=tracking, part="big")
            y += scale * pitch
            slots -= min(slots, scale)
        line_rows = slots - (1 if screen.masked else 0)
        lines = screen.lines
        n = len(lines)
        if line_rows > 0 and n:
            first = screen.first_visible(line_rows)
            shown = lines[first:first + line_rows]
            scroll = n > line_rows
            text_right = w - 4 if scroll else w
            for i, line in enumerate(shown):
                top = y + i * pitch
                box = (0, top, text_right, top + pitch)
                part = "line %d" % (first + i + 1)
                if first + i == screen.selected:
                    draw.rectangle((0, top, text_right - 1, top + pitch - 1), fill=1)
                    self._draw_text(image, box, line, 0, inset=2, part=part)
                else:
                    self._draw_text(image, box, line, 1, inset=2, part=part)
            if not screen.scrolls():
                # Only a menu or a scrolled text moves its window: rows past the
                # panel on any other screen can never be seen.
                for i in range(first + len(shown), n):
                    self._lost("line %d" % (i + 1), lines[i], "")
            if scroll:
                self._scrollbar(draw, y, y + line_rows * pitch, first, line_rows, n)
            y += len(shown) * pitch
            slots -= len(shown)
        elif n:
            for i in range(n):
                self._lost("line %d" % (i + 1), lines[i], "")
        if screen.masked and slots <= 0:
            self._lost("entry", screen.masked, "")
        if screen.masked and slots > 0:
            # PIN stars read better large, when the rows are free.
            scale = 2 if (slots >= 2 and self.text_width(screen.masked) * 2 <= w - 4) else 1
            self._draw_text(image, (0, y, w, y + scale * pitch), screen.masked, 1,
                            align="center", scale=scale, part="entry")

    # -- QR screens -----------------------------------------------------------------
    qr_scale = 0          # pixels a module of the last QR drawn (0: not drawn)
    qr_box = None         # (x0, y0, x1, y1) of its lit square, quiet zone included
    _qr_cache = (None, None)
    _qr_logged = None

    def _qr(self, text):
        if self._qr_cache[0] != text:
            try:
                symbol = qr_symbol(text)
            except segno.DataOverflowError:
                symbol = None
            self._qr_cache = (text, symbol)
        return self._qr_cache[1]

    def _draw_qr_screen(self, image, draw, screen):
        """The QR symbol on the left, as tall as the panel lets it be; the title (a lit
        band), big line, body lines and footer in the column on its right."""
        lay = self.layout
        w, h = lay.width, lay.height
        symbol = self._qr(screen.qr)
        modules = symbol.symbol_size(border=0)[0] if symbol is not None else 0
        scale = qr_scale(modules, h) if symbol is not None else 0
        self.qr_scale, self.qr_box = scale, None
        if scale < 2 and self._qr_logged != screen.qr:
            # once per code, not at every redraw of the clock
            self._qr_logged = screen.qr
            if scale:
                log.warning("display: QR code of %d characters needs version %s (%d "
                            "modules): drawn at 1 px a module, hard for a phone to read; "
                            "code URLs up to %d characters get 2 px", len(screen.qr),
                            symbol.version, modules, QR_SCALE2_CHARS)
            else:
                log.error("display: QR code of %d characters does not fit the %d px "
                          "panel (at most %d characters): not drawn", len(screen.qr), h,
                          QR_MAX_CHARS)
        left = 0
        if scale:
            side = (modules + 2 * QR_QUIET) * scale
            y0 = (h - side) // 2
            draw.rectangle((0, y0, side - 1, y0 + side - 1), fill=1)
            origin_x, origin_y = QR_QUIET * scale, y0 + QR_QUIET * scale
            for r, row in enumerate(symbol.matrix):
                for c, dark in enumerate(row):
                    if dark:
                        x = origin_x + c * scale
                        y = origin_y + r * scale
                        draw.rectangle((x, y, x + scale - 1, y + scale - 1), fill=0)
            self.qr_box = (0, y0, side, y0 + side)
            left = side + 2
        else:
            self._lost("qr", screen.qr, "")
        # The column: the title in a lit band, the rest spread evenly below it.
        line_h = self.line_h
        top = 0
        if screen.title:
            top = line_h + 1
            draw.rectangle((left, 0, w - 1, top - 1), fill=1)
            self._draw_text(image, (left, 0, w, top), screen.title, 0, align="center",
                            part="title")
            top += 1
        rows = [("big", screen.big)] if screen.big else []
        rows += [("line %d" % (i + 1), line) for i, line in enumerate(screen.lines)]
        if screen.masked:
            rows.append(("entry", screen.masked))
        footer = [("footer", screen.footer)] if screen.footer else []
        room = max(0, (h - top) // line_h - len(footer))
        for part, text in rows[room:]:
            self._lost(part, text, "")
        rows = rows[:room] + footer
        if not rows:
            return
        gap = (h - top - len(rows) * line_h) // (len(rows) + 1)
        y = top + gap
        for part, text in rows:
            self._draw_text(image, (left, y, w, y + line_h), text, 1, align="center",
                            part=part)
            y += line_h + gap

    def _scrollbar(self, draw, top, bottom, first, rows, n):
        # A dotted track with a solid 2 px thumb at the right edge.
        x = self.layout.width - 2
        for yy in range(top, bottom, 2):
            draw.point((x, yy), fill=1)
        track = bottom - top
        thumb = max(4, track * rows // n)
        pos = top + (track - thumb) * first // max(1, n - rows)
        draw.rectangle((x - 1, pos, x, pos + thumb - 1), fill=1)

    # -- the panel ------------------------------------------------------------------
    def show(self, screen):
        """Draw screen; push it to the panel only if a pixel changed. True if pushed."""
        self.screen = screen
        image = self.render(screen)
        if self.losses:
            key = tuple(str(loss) for loss in self.losses)
            if key != self._lost_key:       # once per screen, not once per clock tick
                self._lost_key = key
                for loss in self.losses:
                    if self.on_loss is not None:
                        self.on_loss(loss)
                    _report_loss(loss)
        else:
            self._lost_key = None
        data = image.tobytes()
        if data == self._pushed:
            return False
        self._push(image)
        self._pushed = data
        self.image = image
        self.frames += 1
        if self.on_frame is not None:
            self.on_frame(image)
        return True

    def _push(self, image):
        mode = getattr(self.device, "mode", "1")
        self.device.display(image if mode == "1" else image.convert(mode))

    def selftest(self):
        """(ok, detail): the font draws Chinese and the panel takes a frame."""
        name = type(self.device).__name__
        where = "%s %dx%d" % (name, self.size[0], self.size[1])
        if self.layout.rows < 1:
            return False, "display: %s is too small for one row of %d px text" % (
                where, self.line_h)
        try:
            image = self.image or self.render(Screen(title="handpos", lines=["自检 self-test"]))
            self._push(image)
        except Exception as exc:
            return False, "display: %s did not take a frame (%s): check the cable and " \
                          "the address in the board profile" % (where, exc)
        return True, "display: %s ok, font %s %d px, %d body rows" % (
            where, os.path.basename(self.font_path), self.font_size, self.layout.rows)


class NullDisplay:
    """Stands in when the panel is missing, so the terminal still runs (the control
    socket and the log still show what the screen would say)."""

    def __init__(self, reason="no display configured"):
        self.reason = reason
        self.screen = None
        self.frames = 0
        self.shown = 0          # screens received

    def show(self, screen):
        self.screen = screen
        self.shown += 1
        return False

    def selftest(self):
        return False, "display: none (%s)" % self.reason


def image_to_png(image, path, scale=4):
    """Save a frame as a PNG, scale x scale pixels per dot, lit dots light on dark."""
    rgb = Image.new("RGB", image.size, PNG_OFF)
    rgb.paste(PNG_ON, (0, 0, image.width, image.height), image.convert("1"))
    if scale != 1:
        rgb = rgb.resize((image.width * scale, image.height * scale), Image.NEAREST)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    rgb.save(path, "PNG")
    return path


def open_luma_device(spec):
    """Build a luma device from a board profile's display spec.

    spec: {"model": "ssd1306"|"sh1106"|"dummy", "bus": "i2c"|"spi", "port": 1,
    "address": 0x3C, "width": 128, "height": 64, "rotate": 0} and for SPI
    "device" (chip select), "dc", "reset", "speed_hz".
    """
    model = spec.get("model", "ssd1306")
    width = int(spec.get("width", 128))
    height = int(spec.get("height", 64))
    rotate = int(spec.get("rotate", 0))
    if model == "dummy":
        from luma.core.device import dummy
        return dummy(width=width, height=height, rotate=rotate, mode="1")
    try:
        import luma.oled.device as oled
        from luma.core import error as luma_error
        from luma.core.interface import serial
    except ImportError as exc:
        raise DisplayError("display: luma.oled is not installed (%s): pip install luma.oled"
                           % exc)
    cls = getattr(oled, model, None)
    if cls is None or not isinstance(cls, type):
        raise DisplayError("display: unknown model %r in the board profile: use ssd1306, "
                           "sh1106 or dummy" % model)
    bus = spec.get("bus", "i2c")
    port = int(spec.get("port", 1 if bus == "i2c" else 0))
    address = spec.get("address", 0x3C)
    if isinstance(address, str):
        address = int(address, 0)
    if bus == "i2c":
        where = "no I2C device at 0x%02X on bus %d" % (address, port)
        advice = ("check the cable, the address (i2cdetect -y %d) and that i2c is enabled "
                  "(raspi-config)" % port)
    elif bus == "spi":
        where = "no SPI display on spidev%d.%d" % (port, int(spec.get("device", 0)))
        advice = ("check the cable, the DC/RST pins in the board profile and that spi is "
                  "enabled (raspi-config)")
    else:
        raise DisplayError("display: unknown bus %r in the board profile: use i2c or spi" % bus)
    try:
        if bus == "i2c":
            interface = serial.i2c(port=port, address=address)
        else:
            interface = serial.spi(port=port, device=int(spec.get("device", 0)),
                                   gpio_DC=int(spec.get("dc", 24)),
                                   gpio_RST=int(spec.get("reset", 25)),
                                   bus_speed_hz=int(spec.get("speed_hz", 8000000)))
        # Creating the device sends the init sequence: a missing panel fails here.
        return cls(interface, width=width, height=height, rotate=rotate)
    except ImportError as exc:
        raise DisplayError("display: %s: a library is missing (%s): install python3-smbus2 "
                           "for I2C, python3-spidev and RPi.GPIO for SPI" % (where, exc))
    except luma_error.DevicePermissionError as exc:
        raise DisplayError("display: permission denied for the %s bus (%s): add the user to "
                           "the '%s' group" % (bus, exc, "i2c" if bus == "i2c" else "spi"))
    except (luma_error.Error, OSError) as exc:
        raise DisplayError("display: %s (%s): %s" % (where, exc, advice))
