"""Magnetic stripe card data: ISO/IEC 7813 tracks 1 and 2 to a CardData, or a CardError.

Track 1 (format B, 79 characters at most):  %B PAN ^ NAME ^ YYMM SVC discretionary ? LRC
Track 2 (40 characters at most):            ;  PAN = YYMM SVC discretionary ? LRC

Readers deliver these in different shapes: with or without the sentinels, with or
without the LRC, with CR, LF or Tab between tracks, with "E" in place of a track they
could not read ("%E?", ";E?"). All of those are accepted here. Whatever else arrives,
the functions below raise CardError and nothing else, so a flow can show the error's
code in words and never crash on a bad swipe.

Error codes, in the order they are checked (a flow maps each to a message id):
  unreadable  nothing usable came off the stripe: no data, the reader's "E", a wrong
              LRC. Swiping again may help.
  bad_track   data came off the stripe but is not a payment card track: wrong format
              code, no separators, a PAN or date that is not digits, tracks 1 and 2
              that disagree. Swiping again will not help.
  luhn        the PAN fails its check digit.
  expired     the card's expiry month is over.
  use_chip    the service code says the card has a chip (first digit 2 or 6) and this
              is not a fallback after a chip failure: the chip must be used.
Expiry is checked before use_chip: an expired chip card would only be refused again
after the cardholder had been sent to insert it.

Card data in memory: Python strings are immutable and shared, so no str holding a PAN
or a track can be overwritten in place. CardData.wipe() drops this object's references
(and keeps only what a receipt may show); the characters themselves stay in freed
heap memory until it is reused, as do copies made on the way (the reader's decoding,
slices, concatenations, CPython's interning of short strings). What can be zeroed in
place is a bytearray: the drivers assemble swipes in fixed-size bytearrays and zero them
as soon as the tracks are handed over. Real protection of track data in memory needs
a reader that encrypts at the head (a secure card reader module), which the Reader
interface allows.
"""

UNREADABLE = "unreadable"
BAD_TRACK = "bad_track"
LUHN = "luhn"
EXPIRED = "expired"
USE_CHIP = "use_chip"
ERRORS = (UNREADABLE, BAD_TRACK, LUHN, EXPIRED, USE_CHIP)

# Entry modes (ISO 8583 DE22 point-of-service entry mode 90 and 80).
SWIPE = "swipe"
FALLBACK = "fallback"

TRACK1_MAX = 79      # characters, sentinels and LRC included (ISO/IEC 7811-2)
TRACK2_MAX = 40
PAN_MIN = 12
PAN_MAX = 19
NAME_MAX = 26

# First digit of the service code that means "integrated circuit card": 2 for
# international interchange, 6 for national.
CHIP_SERVICE_DIGITS = "26"

_CONTROL = "\r\n\t"


class CardError(ValueError):
    """A swipe that cannot be used. code is one of ERRORS; detail is for the log and
    never contains card data."""

    def __init__(self, code, detail=""):
        super().__init__("%s: %s" % (code, detail) if detail else code)
        self.code = code
        self.detail = detail


class CardData:
    """One card read off the stripe.

    pan, name ('' when only track 2 was read), expiry 'YYMM', service_code (three
    digits), track2 (the track 2 equivalent data PAN=YYMMSVCdiscretionary, without
    sentinels or LRC; None when only track 1 was read), track1 (B PAN^NAME^..., without
    sentinels or LRC; None when only track 2 was read), entry_mode (SWIPE or FALLBACK).
    masked and last4 are computed once and survive wipe().
    """

    def __init__(self, pan, name, expiry, service_code, track2=None, track1=None,
                 entry_mode=SWIPE, discretionary=""):
        self.pan = pan
        self.name = name
        self.expiry = expiry
        self.service_code = service_code
        self.track2 = track2
        self.track1 = track1
        self.entry_mode = entry_mode
        self.discretionary = discretionary
        self.masked = mask_pan(pan)
        self.last4 = last4(pan)
        self.wiped = False

    @property
    def chip(self):
        """The service code says this card has a chip."""
        return bool(self.service_code) and self.service_code[0] in CHIP_SERVICE_DIGITS

    def wipe(self):
        """Forget the PAN, the tracks and the discretionary data (which holds the
        card verification value). Call it once the authorisation request has been
        built. See the module docstring for what this cannot do to a str."""
        self.pan = None
        self.track1 = None
        self.track2 = None
        self.discretionary = None
        self.wiped = True

    def __repr__(self):
        # Never the PAN: a CardData that ends up in a log shows what a screen may.
        return "CardData(%s, exp %s, svc %s, %s%s)" % (
            self.masked, self.expiry, self.service_code, self.entry_mode,
            ", wiped" if self.wiped else "")


# -- PAN helpers ---------------------------------------------------------------------

def mask_pan(pan):
    """First six and last four digits, the rest '*' (the most DESIGN.md allows).

    A PAN shorter than 13 characters would show all but two digits that way, so only
    its last four are shown; four characters or fewer are all masked.
    """
    if not pan:
        return ""
    n = len(pan)
    if n <= 4:
        return "*" * n
    if n < 13:
        return "*" * (n - 4) + pan[-4:]
    return pan[:6] + "*" * (n - 10) + pan[-4:]


def last4(pan):
    """The last four digits (what a receipt shows), '' when there are not four."""
    if not pan or len(pan) < 4:
        return ""
    return pan[-4:]


def luhn_ok(pan):
    """The ISO/IEC 7812 check digit (Luhn mod 10) of an all-digit string."""
    if not _digits(pan):
        return False
    total = 0
    double = False
    i = len(pan) - 1
    while i >= 0:
        d = ord(pan[i]) - 48
        if double:
            d += d
            if d > 9:
                d -= 9
        total += d
        double = not double
        i -= 1
    return total % 10 == 0


def luhn_digit(partial):
    """The check digit that makes partial + digit pass luhn_ok (for test cards)."""
    for d in "0123456789":
        if luhn_ok(partial + d):
            return d
    raise ValueError("not digits")


def expired(expiry, today):
    """True when a card with expiry 'YYMM' is no longer valid in month today.

    today is (year, month) with a four-digit year. A card is valid through the last
    day of its expiry month. The two-digit year is read as the year nearest today
    (within 50 years either way): in 2030, '99' is 1999 and '05' is 2005.
    """
    year, month = today
    if not (1 <= month <= 12):
        raise ValueError("today's month must be 1..12, got %r" % (month,))
    card_year = (year // 100) * 100 + int(expiry[:2])
    if card_year < year - 50:
        card_year += 100
    elif card_year >= year + 50:
        card_year -= 100
    return (card_year, int(expiry[2:4])) < (year, month)


# -- tracks --------------------------------------------------------------------------

def _digits(text):
    # Not str.isdigit: CPython says True for '²' and '٣'.
    if not text:
        return False
    for ch in text:
        if ch < "0" or ch > "9":
            return False
    return True


def _text(data):
    """str from str, bytes or bytearray (one character per byte); None stays None."""
    if data is None or isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray)):
        return "".join([chr(b) for b in data])
    raise TypeError("track data must be str, bytes or None, not %s" % type(data).__name__)


def _strip_control(text):
    start, end = 0, len(text)
    while start < end and (text[start] in _CONTROL or text[start] == "\x00"):
        start += 1
    while end > start and (text[end - 1] in _CONTROL or text[end - 1] == "\x00"):
        end -= 1
    return text[start:end]


def _lrc1(text):
    """Track 1 LRC: XOR of the 6-bit character codes, sentinels included."""
    lrc = 0
    for ch in text:
        lrc ^= (ord(ch) - 0x20) & 0x3F
    return chr(lrc + 0x20)


def _lrc2(text):
    """Track 2 LRC: XOR of the 4-bit character codes, sentinels included."""
    lrc = 0
    for ch in text:
        lrc ^= (ord(ch) - 0x30) & 0x0F
    return chr(lrc + 0x30)


def _track1_char(ch):
    return " " <= ch <= "_"           # the 6-bit alphabet: 0x20..0x5F


def _track2_char(ch):
    return "0" <= ch <= "?"           # the 4-bit alphabet: 0x30..0x3F


def _body(text, track, start, max_len, char_ok, lrc_fn):
    """The data between the sentinels, checked for alphabet, length and LRC."""
    text = _strip_control(text)
    if not text:
        raise CardError(UNREADABLE, "track %d empty" % track)
    if text[0] == start:
        text = text[1:]
    end = text.find("?")
    if end < 0:
        body, lrc = text, ""
    else:
        body, lrc = text[:end], text[end + 1:]
    if body == "E":
        raise CardError(UNREADABLE, "the reader could not read track %d" % track)
    if not body:
        raise CardError(UNREADABLE, "track %d empty" % track)
    if len(lrc) > 1:
        raise CardError(BAD_TRACK, "track %d: data after the end sentinel" % track)
    if len(body) + 3 > max_len:
        raise CardError(BAD_TRACK, "track %d longer than %d characters" % (track, max_len))
    for ch in body:
        if not char_ok(ch):
            raise CardError(BAD_TRACK, "track %d: character 0x%02x outside its alphabet"
                            % (track, ord(ch) & 0xFFFF))
    if lrc:
        if not char_ok(lrc):
            raise CardError(UNREADABLE, "track %d: LRC outside the alphabet" % track)
        if lrc_fn(start + body + "?") != lrc:
            raise CardError(UNREADABLE, "track %d: LRC mismatch (misread)" % track)
    return body


def _tail(tail, track):
    """(expiry, service code, discretionary) from YYMMSVC..."""
    if len(tail) < 7 or not _digits(tail[:7]):
        raise CardError(BAD_TRACK, "track %d: no expiry date and service code" % track)
    month = int(tail[2:4])
    if not (1 <= month <= 12):
        raise CardError(BAD_TRACK, "track %d: expiry month %d" % (track, month))
    return tail[:4], tail[4:7], tail[7:]


def _check_pan(pan, track):
    if not _digits(pan):
        raise CardError(BAD_TRACK, "track %d: PAN is not digits" % track)
    if not (PAN_MIN <= len(pan) <= PAN_MAX):
        raise CardError(BAD_TRACK, "track %d: PAN of %d digits" % (track, len(pan)))


def parse_track1(data):
    """(pan, name, expiry, service_code, discretionary, body) from track 1.

    body is the track without sentinels and LRC. Raises CardError.
    """
    body = _body(_text(data), 1, "%", TRACK1_MAX, _track1_char, _lrc1)
    if body[0] != "B":
        raise CardError(BAD_TRACK, "track 1: format code is not B (not a payment card)")
    first = body.find("^")
    second = body.find("^", first + 1) if first >= 0 else -1
    if second < 0:
        raise CardError(BAD_TRACK, "track 1: field separators missing")
    # Some issuers print the PAN on track 1 in groups: the spaces are not digits.
    pan = body[1:first].replace(" ", "")
    _check_pan(pan, 1)
    name = body[first + 1:second]
    if len(name) > NAME_MAX:
        raise CardError(BAD_TRACK, "track 1: name longer than %d characters" % NAME_MAX)
    expiry, service, disc = _tail(body[second + 1:], 1)
    return pan, name.strip(), expiry, service, disc, body


def parse_track2(data):
    """(pan, expiry, service_code, discretionary, body) from track 2.

    body is the track 2 equivalent data: the track without sentinels and LRC.
    """
    body = _body(_text(data), 2, ";", TRACK2_MAX, _track2_char, _lrc2)
    sep = body.find("=")
    if sep < 0:
        raise CardError(BAD_TRACK, "track 2: field separator missing")
    pan = body[:sep]
    _check_pan(pan, 2)
    expiry, service, disc = _tail(body[sep + 1:], 2)
    if disc and not _digits(disc):
        raise CardError(BAD_TRACK, "track 2: discretionary data is not digits")
    return pan, expiry, service, disc, body


def _present(data):
    return data is not None and len(_strip_control(data)) > 0


def parse_swipe(track1, track2, today, fallback=False):
    """The CardData of one swipe, or CardError.

    track1, track2: what the reader delivered for each track (str, bytes or None).
    today: (year, month) from a synchronised clock; None when the clock is not
    synchronised, in which case the expiry is left to the host. fallback: this swipe
    follows a chip failure on the same transaction, so a chip card may be swiped
    (entry mode FALLBACK).

    Either track is enough; when both are read they must agree. Track 2 is preferred
    for what they share: it is what the host authorises.
    """
    track1 = _text(track1)
    track2 = _text(track2)
    t1 = t2 = None
    failures = []
    if _present(track1):
        try:
            t1 = parse_track1(track1)
        except CardError as exc:
            failures.append(exc)
    if _present(track2):
        try:
            t2 = parse_track2(track2)
        except CardError as exc:
            failures.append(exc)
    if t1 is None and t2 is None:
        if not failures:
            raise CardError(UNREADABLE, "no track data")
        # A track read cleanly but not a card's says more than one misread.
        for exc in failures:
            if exc.code == BAD_TRACK:
                raise exc
        raise failures[0]
    if t1 is not None and t2 is not None:
        if t1[0] != t2[0] or t1[2] != t2[1] or t1[3] != t2[2]:
            raise CardError(BAD_TRACK, "tracks 1 and 2 disagree")
    if t2 is not None:
        pan, expiry, service, disc, body2 = t2
    else:
        pan, expiry, service, disc, body2 = t1[0], t1[2], t1[3], t1[4], None
    name = t1[1] if t1 is not None else ""
    body1 = t1[5] if t1 is not None else None
    if not luhn_ok(pan):
        raise CardError(LUHN, "PAN check digit wrong")
    if today is not None and expired(expiry, today):
        raise CardError(EXPIRED, "card expired")
    chip = service[0] in CHIP_SERVICE_DIGITS
    if chip and not fallback:
        raise CardError(USE_CHIP, "service code %s: chip card" % service)
    return CardData(pan, name, expiry, service, track2=body2, track1=body1,
                    entry_mode=FALLBACK if chip else SWIPE, discretionary=disc)


# -- what readers deliver ------------------------------------------------------------

def split_tracks(data):
    """(track1, track2) from everything a reader sent for one swipe; None for a track
    that is not there. Track 3 (a second ';' track) is dropped.

    Tracks are told apart by their start sentinels ('%' track 1, ';' track 2) and
    otherwise by their separators ('^' track 1, '=' track 2); CR, LF and Tab end a
    track. One character after an end sentinel is its LRC. An LRC that happens to be
    '%' or ';' is told from a start sentinel by what follows it: another sentinel, a
    line end or nothing.
    """
    text = _text(data)
    if not text:
        return None, None
    segments = []
    cur = []
    ended = False       # cur has its end sentinel
    have_lrc = False
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        i += 1
        if ended and not have_lrc and ch not in _CONTROL:
            follow = text[i] if i < n else ""
            if (ch != "%" and ch != ";") or follow == "" or follow in "%;" or follow in _CONTROL:
                cur.append(ch)
                have_lrc = True
                continue
        if ch == "%" or ch == ";":
            if cur:
                segments.append("".join(cur))
            cur = [ch]
            ended = have_lrc = False
        elif ch in _CONTROL:
            if cur:
                segments.append("".join(cur))
            cur = []
            ended = have_lrc = False
        elif have_lrc:
            segments.append("".join(cur))
            cur = [ch]
            ended = have_lrc = False
        else:
            cur.append(ch)
            if ch == "?":
                ended = True
    if cur:
        segments.append("".join(cur))
    track1 = track2 = None
    for seg in segments:
        if seg[0] == "%":
            kind = 1
        elif seg[0] == ";":
            kind = 2
        elif "^" in seg:
            kind = 1
        elif "=" in seg:
            kind = 2
        else:
            continue            # noise between tracks
        if kind == 1 and track1 is None:
            track1 = seg
        elif kind == 2 and track2 is None:
            track2 = seg
    return track1, track2


# -- making tracks (test cards, the simulator's virtual swipe) -------------------------

def encode_track1(pan, name, expiry, service_code, discretionary="", lrc=False):
    text = "%B" + pan + "^" + name + "^" + expiry + service_code + discretionary + "?"
    return text + _lrc1(text) if lrc else text


def encode_track2(pan, expiry, service_code, discretionary="", lrc=False):
    text = ";" + pan + "=" + expiry + service_code + discretionary + "?"
    return text + _lrc2(text) if lrc else text
