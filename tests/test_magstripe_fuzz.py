"""firmware.cards.magstripe under hypothesis (CPython only; the portable tests carry an LCG
fuzz for MicroPython). Whatever a reader delivers, the parser returns a sane CardData
or raises CardError: never IndexError, never a crash in the loop.
"""
from hypothesis import given, settings, strategies as st

from firmware.cards import magstripe as ms
from firmware.cards.magstripe import CardError, parse_swipe, split_tracks

TODAY = (2025, 6)
TEST_PANS = ("4111111111111111", "4012888888881881", "5555555555554444", "378282246310005")

# What a magstripe reader can plausibly send, weighted towards the track alphabets.
reader_text = st.text(alphabet=st.sampled_from(
    list("%;?^=E B0123456789/.\r\n\t\x00ABCXYZ:<>_")), max_size=120)
maybe_data = st.one_of(st.none(), st.binary(max_size=120), reader_text,
                       st.text(max_size=60))
today = st.one_of(st.none(), st.tuples(st.integers(1970, 2199), st.integers(1, 12)))


def sane_or_card_error(track1, track2, when, fallback):
    try:
        card = parse_swipe(track1, track2, when, fallback)
    except CardError as exc:
        assert exc.code in ms.ERRORS
        return None
    assert card.pan.isdigit() and ms.PAN_MIN <= len(card.pan) <= ms.PAN_MAX
    assert ms.luhn_ok(card.pan)
    assert card.expiry.isdigit() and 1 <= int(card.expiry[2:]) <= 12
    assert card.service_code.isdigit() and len(card.service_code) == 3
    if card.chip:
        assert fallback and card.entry_mode == ms.FALLBACK
    else:
        assert card.entry_mode == ms.SWIPE
    if when is not None:
        assert not ms.expired(card.expiry, when)
    assert card.pan not in repr(card)
    return card


@settings(max_examples=600, deadline=None)
@given(maybe_data, maybe_data, today, st.booleans())
def test_any_two_tracks_give_a_card_or_a_card_error(track1, track2, when, fallback):
    sane_or_card_error(track1, track2, when, fallback)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300), reader_text, st.text(max_size=100)))
def test_split_then_parse_anything_a_reader_sends(data):
    track1, track2 = split_tracks(data)
    for track in (track1, track2):
        assert track is None or (isinstance(track, str) and track)
    sane_or_card_error(track1, track2, TODAY, False)


@st.composite
def good_swipe(draw):
    pan = draw(st.sampled_from(TEST_PANS))
    expiry = "%02d%02d" % (draw(st.integers(26, 49)), draw(st.integers(1, 12)))
    svc = draw(st.sampled_from(("101", "120", "201", "601", "501")))
    name = draw(st.text(alphabet=st.sampled_from(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ /.")),
                        min_size=2, max_size=26))
    disc2 = draw(st.text(alphabet=st.sampled_from(list("0123456789")), max_size=12))
    disc1 = draw(st.text(alphabet=st.sampled_from(list("0123456789")), max_size=20))
    lrc = draw(st.booleans())
    return (pan, name, expiry, svc,
            ms.encode_track1(pan, name, expiry, svc, disc1, lrc=lrc),
            ms.encode_track2(pan, expiry, svc, disc2, lrc=lrc))


@settings(max_examples=300, deadline=None)
@given(good_swipe(), st.sampled_from(("", "\r", "\r\n", "\t")))
def test_every_well_formed_swipe_round_trips(swipe, sep):
    pan, name, expiry, svc, track1, track2 = swipe
    got1, got2 = split_tracks(track1 + sep + track2 + sep)
    assert (got1, got2) == (track1, track2)
    card = parse_swipe(got1, got2, TODAY, fallback=True)
    assert (card.pan, card.name, card.expiry, card.service_code) == (pan, name.strip(), expiry, svc)
    assert card.track2 == track2[1:track2.index("?")]


@settings(max_examples=400, deadline=None)
@given(good_swipe(), st.lists(st.tuples(st.integers(0, 2), st.integers(0, 200),
                                        st.sampled_from(list("%;?^=E 0123456789\r"))),
                              min_size=1, max_size=5))
def test_damaged_swipes_never_crash(swipe, edits):
    raw = list(swipe[4] + swipe[5])
    for op, at, ch in edits:
        at = at % (len(raw) + 1)
        if op == 0 and at < len(raw):
            raw[at] = ch
        elif op == 1:
            raw.insert(at, ch)
        elif at < len(raw):
            del raw[at]
    sane_or_card_error(*split_tracks("".join(raw)), TODAY, bool(at % 2))
