"""The magnetic-stripe test cards the simulator swipes: published test PANs only.

The keys !, @, #, $, % of the simulator swipe these; ^ swipes an unreadable stripe.
"""
from firmware.cards import magstripe

TEST_CARDS = {
    "visa_pin": ("4111111111111111", "TEST/VISA PIN", "3012", "120"),
    "mc_signature": ("5555555555554444", "TEST/MASTERCARD", "3012", "101"),
    "visa_chip": ("4012888888881881", "TEST/VISA CHIP", "3012", "201"),
    "expired": ("378282246310005", "TEST/AMEX EXPIRED", "2001", "101"),
    "bad_luhn": ("4111111111111112", "TEST/BAD NUMBER", "3012", "101"),
}


def card_tracks(name):
    """(track1, track2) as a reader's sentinels frame them, for a named test card."""
    if name == "unreadable":
        return "%E?", ";E?"
    pan, holder, expiry, service = TEST_CARDS[name]
    return (magstripe.encode_track1(pan, holder, expiry, service, "0000000"),
            magstripe.encode_track2(pan, expiry, service, "0000000"))
