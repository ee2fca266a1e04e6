"""firmware.cards.magstripe on both Pythons: tracks 1 and 2, the checks, and garbage.

Only published test card numbers appear here (Visa 4111111111111111 and
4012888888881881, Mastercard 5555555555554444, Amex 378282246310005).
MicroPython has no hypothesis, so the fuzz tests draw from a small seeded LCG; the
same tests run under pytest, and tests/test_magstripe_fuzz.py adds hypothesis there.
"""
from firmware.cards import magstripe as ms
from firmware.cards.magstripe import CardData, CardError, mask_pan, last4, parse_swipe, split_tracks

TODAY = (2025, 6)
VISA = "4111111111111111"
VISA2 = "4012888888881881"
MC = "5555555555554444"
AMEX = "378282246310005"
TEST_PANS = (VISA, VISA2, MC, AMEX)


def t1(pan=VISA, name="TEST/CARD A", expiry="2812", svc="101", disc="00000000000000000000",
       lrc=False):
    return ms.encode_track1(pan, name, expiry, svc, disc, lrc=lrc)


def t2(pan=VISA, expiry="2812", svc="101", disc="0000000000", lrc=False):
    return ms.encode_track2(pan, expiry, svc, disc, lrc=lrc)


def error_code(track1, track2, today=TODAY, fallback=False):
    try:
        parse_swipe(track1, track2, today, fallback)
    except CardError as exc:
        assert exc.code in ms.ERRORS, exc.code
        return exc.code
    return None


# -- good swipes ---------------------------------------------------------------------

def test_both_tracks_of_each_test_card_parse():
    for pan in TEST_PANS:
        card = parse_swipe(t1(pan), t2(pan), TODAY)
        assert isinstance(card, CardData)
        assert card.pan == pan
        assert card.name == "TEST/CARD A"
        assert card.expiry == "2812"
        assert card.service_code == "101"
        assert card.track2 == pan + "=28121010000000000"
        assert card.track1 == "B" + pan + "^TEST/CARD A^281210100000000000000000000"
        assert card.discretionary == "0000000000"     # track 2's: what the host gets
        assert card.entry_mode == ms.SWIPE
        assert not card.chip


def test_either_track_alone_is_enough():
    card = parse_swipe(None, t2(MC), TODAY)
    assert (card.pan, card.name, card.track1) == (MC, "", None)
    card = parse_swipe(t1(AMEX), None, TODAY)
    assert (card.pan, card.name, card.track2) == (AMEX, "TEST/CARD A", None)
    assert card.discretionary == "00000000000000000000"
    # an empty or unread track beside a good one is no obstacle
    assert parse_swipe("", t2(), TODAY).pan == VISA
    assert parse_swipe("%E?", t2(), TODAY).pan == VISA
    assert parse_swipe(t1(), ";E?", TODAY).pan == VISA


def test_sentinels_lrc_and_line_ends_are_optional():
    plain1 = "B" + VISA + "^TEST/CARD A^2812101"
    plain2 = VISA + "=2812101"
    for track1, track2 in (
            (plain1, plain2),
            ("%" + plain1, ";" + plain2),
            (plain1 + "?", plain2 + "?"),
            (t1(lrc=True), t2(lrc=True)),
            (t1() + "\r\n", "\t" + t2() + "\r"),
            (t1().encode(), bytearray(t2().encode()))):
        card = parse_swipe(track1, track2, TODAY)
        assert card.pan == VISA, (track1, track2)
        assert card.expiry == "2812"


def test_lrc_is_checked_when_the_reader_sends_it():
    good1, good2 = t1(lrc=True), t2(lrc=True)
    assert parse_swipe(good1, good2, TODAY).pan == VISA
    bad1 = good1[:-1] + chr(((ord(good1[-1]) - 0x20 + 1) & 0x3F) + 0x20)
    bad2 = good2[:-1] + chr(((ord(good2[-1]) - 0x30 + 1) & 0x0F) + 0x30)
    assert error_code(bad1, None) == ms.UNREADABLE
    assert error_code(None, bad2) == ms.UNREADABLE
    # a misread track 1 beside a good track 2 does not spoil the swipe
    assert parse_swipe(bad1, good2, TODAY).name == ""


def test_known_lrc_values():
    # By hand from ISO/IEC 7811: track 2 codes are char - 0x30, track 1 char - 0x20,
    # sentinels included. ";1=?": 0xB ^ 0x1 ^ 0xD ^ 0xF = 0x8 -> '8'.
    assert ms.encode_track2("1", "", "", "", lrc=True) == ";1=?8"
    # "%B?": 0x05 ^ 0x22 ^ 0x1F = 0x38 -> chr(0x58) 'X'
    assert ms._lrc1("%B?") == "X"


def test_track1_pan_printed_in_groups_and_padded_name():
    card = parse_swipe("%B4111 1111 1111 1111^TEST/CARD A     ^2812101?", None, TODAY)
    assert card.pan == VISA
    assert card.name == "TEST/CARD A"


def test_track3_and_noise_between_tracks_are_dropped():
    t3 = ";011234567890123445=724724100000000000030300XXXX040400099010=********************==1=0000000000000000?"
    assert split_tracks(t1() + t2() + t3) == (t1(), t2())
    assert split_tracks("\x00\r\n" + t1() + "\r\n" + t2() + "\r\n") == (t1(), t2())


# -- splitting what a reader sends -----------------------------------------------------

def test_split_tracks_by_sentinels_separators_and_line_ends():
    a, b = t1(lrc=True), t2(lrc=True)
    assert split_tracks(a + b) == (a, b)
    assert split_tracks(b + a) == (a, b)
    assert split_tracks((a + b).encode()) == (a, b)
    assert split_tracks(b) == (None, b)
    assert split_tracks(a + "\r") == (a, None)
    plain1, plain2 = "B" + VISA + "^X/Y^2812101", VISA + "=2812101"
    assert split_tracks(plain1 + "\r\n" + plain2 + "\r\n") == (plain1, plain2)
    assert split_tracks(plain1 + "\t" + plain2) == (plain1, plain2)
    assert split_tracks("%E?;E?") == ("%E?", ";E?")
    assert split_tracks("") == (None, None)
    assert split_tracks(None) == (None, None)
    assert split_tracks("hello") == (None, None)
    # an LRC right after '?' stays with its track; the next track starts after it
    assert split_tracks(a + "B" + VISA + "^A^2812101") == (a, None)



def test_an_lrc_that_looks_like_a_start_sentinel_stays_with_its_track():
    semi = [t2(disc="%02d" % n, lrc=True) for n in range(100)]
    semi = [tr for tr in semi if tr[-1] == ";"]
    assert semi, "some discretionary data gives the LRC ';'"
    b = semi[0]
    a = t1(lrc=True)
    for text in (b, b + "\r\n", b + a, a + b, a + b + ";E?", b + "%E?"):
        got1, got2 = split_tracks(text)
        assert got2 == b, text
        assert parse_swipe(got1, got2, TODAY).pan == VISA
    # without an LRC, ';' after '?' is the next track's start sentinel
    assert split_tracks(t1() + t2()) == (t1(), t2())

# -- refusals ------------------------------------------------------------------------

def test_nothing_read_is_unreadable():
    for track1, track2 in ((None, None), ("", ""), ("\r\n", None), ("%E?", ";E?"),
                           ("E", None), ("%?", ";?"), (b"", b"")):
        assert error_code(track1, track2) == ms.UNREADABLE, (track1, track2)


def test_not_a_payment_track_is_bad_track():
    for track1, track2 in (
            ("%A" + VISA + "^X/Y^2812101?", None),                # format code A
            ("%B" + VISA + "TEST2812101?", None),                  # no separators
            ("%B" + VISA + "^TEST/CARD", None),                    # one separator
            (None, ";" + VISA + "2812101?"),                        # no '='
            (None, ";4111111111111111=28?"),                        # no service code
            (None, ";4111111111111111=2813101?"),                   # month 13
            (None, ";4111111111111111=2800101?"),                   # month 0
            (None, ";41111111111=2812101?"),                        # 11 digits
            (None, ";41111111111111111111=2812101?"),               # 20 digits
            (None, ";4111A11111111111=2812101?"),                   # not digits
            ("%B4111111111111111^" + "N" * 27 + "^2812101?", None),  # name too long
            ("%b4111111111111111^x/y^2812101?", None),              # outside the alphabet
            (None, t2(disc="0" * 30)),                              # longer than 40
            (None, t2() + "12"),                                    # data after LRC
            (t1(VISA), t2(MC)),                                     # tracks disagree
            (t1(expiry="2811"), t2(expiry="2812")),
            (t1(svc="201"), t2(svc="101"))):
        assert error_code(track1, track2) == ms.BAD_TRACK, (track1, track2)
    # a clean non-card track says more than a misread one beside it
    assert error_code("%A" + VISA + "^X/Y^2812101?", ";E?") == ms.BAD_TRACK


def test_luhn():
    for pan in TEST_PANS:
        assert ms.luhn_ok(pan)
        assert ms.luhn_digit(pan[:-1]) == pan[-1]
    assert not ms.luhn_ok("4111111111111112")
    assert not ms.luhn_ok("")
    assert not ms.luhn_ok("41111111111111x1")
    assert error_code(t1("4111111111111112"), t2("4111111111111112")) == ms.LUHN
    assert error_code(None, t2("4111111111111121")) == ms.LUHN   # swapped digits


def test_card_is_valid_through_the_end_of_its_expiry_month():
    assert error_code(None, t2(expiry="2506"), today=(2025, 6)) is None
    assert error_code(None, t2(expiry="2505"), today=(2025, 6)) == ms.EXPIRED
    assert error_code(None, t2(expiry="2512"), today=(2026, 1)) == ms.EXPIRED
    assert error_code(None, t2(expiry="2601"), today=(2025, 12)) is None
    assert not ms.expired("2506", (2025, 6))
    assert ms.expired("2506", (2025, 7))
    # two-digit years are read as the year nearest today
    assert ms.expired("99" + "12", (2030, 1))         # 1999
    assert not ms.expired("05" + "01", (2099, 12))    # 2105
    assert not ms.expired("49" + "01", (2000, 1))     # 2049
    # no synchronised clock: the expiry is the host's to check
    assert parse_swipe(None, t2(expiry="0101"), None).expiry == "0101"


def test_chip_cards_must_use_the_chip_unless_it_failed():
    for svc in ("201", "221", "601", "206"):
        assert error_code(t1(svc=svc), t2(svc=svc)) == ms.USE_CHIP, svc
        card = parse_swipe(t1(svc=svc), t2(svc=svc), TODAY, fallback=True)
        assert card.chip
        assert card.entry_mode == ms.FALLBACK
    for svc in ("101", "120", "501", "701"):
        card = parse_swipe(None, t2(svc=svc), TODAY, fallback=True)
        assert not card.chip
        assert card.entry_mode == ms.SWIPE          # no chip: a plain swipe


def test_checks_run_in_the_documented_order():
    # luhn before expired before use_chip; structure before all three
    assert error_code(None, t2("4111111111111112", "2001", "201")) == ms.LUHN
    assert error_code(None, t2(VISA, "2001", "201")) == ms.EXPIRED
    assert error_code(None, t2(VISA, "2812", "201")) == ms.USE_CHIP


def test_error_carries_its_code_and_no_card_data():
    try:
        parse_swipe(t1(VISA), t2(MC), TODAY)
    except CardError as exc:
        assert exc.code == ms.BAD_TRACK
        assert isinstance(exc, ValueError)
        text = str(exc) + exc.detail
        assert VISA not in text and MC not in text
        assert text.startswith("bad_track")
    else:
        assert False, "no CardError"


# -- masking and wiping ----------------------------------------------------------------

def test_mask_pan_and_last4():
    assert mask_pan(VISA) == "411111******1111"
    assert mask_pan(AMEX) == "378282*****0005"
    assert mask_pan("4111111111111") == "411111***1111"         # 13: three hidden
    assert mask_pan("411111111111") == "********1111"           # 12: last four only
    assert mask_pan("1234") == "****"
    assert mask_pan("") == ""
    assert mask_pan(None) == ""
    assert last4(VISA) == "1111"
    assert last4(AMEX) == "0005"
    assert last4("123") == ""
    assert last4(None) == ""


def test_repr_never_shows_the_pan():
    card = parse_swipe(t1(MC), t2(MC), TODAY)
    text = repr(card)
    assert MC not in text
    assert "555555******4444" in text


def test_wipe_drops_the_tracks_and_keeps_what_a_receipt_shows():
    card = parse_swipe(t1(VISA2), t2(VISA2), TODAY)
    card.wipe()
    assert card.pan is None and card.track1 is None and card.track2 is None
    assert card.discretionary is None
    assert card.wiped
    assert card.last4 == "1881"
    assert card.masked == "401288******1881"
    assert card.expiry == "2812"
    assert "wiped" in repr(card)
    card.wipe()                 # twice is harmless


# -- garbage: only CardError, ever -----------------------------------------------------

class Lcg:
    """Numerical Recipes' 32-bit LCG: the same stream on both Pythons."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFF

    def next(self):
        self.state = (1664525 * self.state + 1013904223) & 0xFFFFFFFF
        return self.state >> 8

    def below(self, n):
        return self.next() % n

    def pick(self, seq):
        return seq[self.below(len(seq))]


def _only_card_errors(track1, track2, today=TODAY, fallback=False):
    """parse_swipe either returns a sane CardData or raises CardError."""
    try:
        card = parse_swipe(track1, track2, today, fallback)
    except CardError as exc:
        assert exc.code in ms.ERRORS
        return None
    assert ms._digits(card.pan) and ms.PAN_MIN <= len(card.pan) <= ms.PAN_MAX
    assert ms.luhn_ok(card.pan)
    assert 1 <= int(card.expiry[2:]) <= 12
    assert len(card.service_code) == 3
    assert card.masked == mask_pan(card.pan)
    assert card.entry_mode in (ms.SWIPE, ms.FALLBACK)
    return card


def test_random_bytes_raise_only_card_errors():
    rng = Lcg(7813)
    for _ in range(600):
        data = bytes([rng.below(256) for _ in range(rng.below(100))])
        for track1, track2 in ((data, None), (None, data), (data, data), split_tracks(data)):
            _only_card_errors(track1, track2)


ALPHABET = "%;?^=E B0123456789/\r\n\t\x00" + "ABZ.:<>_" + "4111"


def test_random_track_alphabet_text_raises_only_card_errors():
    rng = Lcg(7811)
    for _ in range(800):
        text = "".join([rng.pick(ALPHABET) for _ in range(rng.below(90))])
        track1, track2 = split_tracks(text)
        _only_card_errors(track1, track2, fallback=bool(rng.below(2)))
        _only_card_errors(text, None)
        _only_card_errors(None, text)


def test_random_unicode_raises_only_card_errors():
    rng = Lcg(4909)
    for _ in range(200):
        chars = []
        for _ in range(rng.below(40)):
            code = rng.below(0x11000)
            if 0xD800 <= code < 0xE000:
                code = 0x41                    # no lone surrogates on MicroPython
            chars.append(chr(code))
        text = "".join(chars)
        _only_card_errors(text, text)
        _only_card_errors(*split_tracks(text))


def test_mutated_good_swipes_parse_sanely_or_raise_card_errors():
    rng = Lcg(2025)
    parsed = refused = 0
    for _ in range(800):
        pan = rng.pick(TEST_PANS)
        svc = rng.pick(("101", "201", "601", "120"))
        raw = list(t1(pan, svc=svc, lrc=bool(rng.below(2))) + t2(pan, svc=svc, lrc=bool(rng.below(2))))
        for _ in range(1 + rng.below(4)):
            op = rng.below(3)
            at = rng.below(len(raw)) if raw else 0
            if op == 0 and raw:
                raw[at] = rng.pick(ALPHABET)
            elif op == 1:
                raw.insert(at, rng.pick(ALPHABET))
            elif raw:
                del raw[at]
        track1, track2 = split_tracks("".join(raw))
        card = _only_card_errors(track1, track2, fallback=bool(rng.below(2)))
        if card is None:
            refused += 1
        else:
            parsed += 1
    # a single changed digit is mostly caught, but the fuzz must reach both outcomes
    assert parsed > 0 and refused > 0, (parsed, refused)


def test_wrong_argument_types_are_programming_errors():
    for bad in (5, 1.5, ["%B"]):
        try:
            parse_swipe(bad, None, TODAY)
        except TypeError:
            pass
        else:
            assert False, "no TypeError for %r" % (bad,)
