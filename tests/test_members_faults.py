"""A card that fills up while a member is enrolled: the words on the screen, no
half-written member, and the enrolment going through once space returns."""
from tests.test_members_flows import _enrol_from_lookup

PHONE = "13900001111"


def test_enrolment_on_a_full_card_says_storage_full_and_keeps_nothing(harness, disk):
    h = harness()
    h.first_supervisor()
    h.login()
    members = h.term.members
    _enrol_from_lookup(h, PHONE)
    disk.fill()
    errors = h.reactor.errors
    h.press("ENTER")                              # the customer agrees: the write fails
    text = h.text()
    assert "STORAGE FULL" in text and "Nothing lost" in text, text
    assert h.reactor.errors == errors             # words, no traceback
    disk.free()
    h.advance(30100)                              # the terminal's own retry timer
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    assert h.flow() == ("idle", "idle"), h.text()
    assert members.find_by_phone(PHONE) is None   # nothing half-written
    _enrol_from_lookup(h, PHONE)                  # and once there is room it goes
    h.press("ENTER")
    h.run(2000, until=lambda: members.find_by_phone(PHONE) is not None)
    assert members.find_by_phone(PHONE) is not None
