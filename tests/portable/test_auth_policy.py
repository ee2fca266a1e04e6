"""The operators' PIN rules (firmware/security/auth.py) on the portable store: the
lockout and its count kept in the store (a new Auth, as after a restart, still sees
them), PIN history, weak PINs, PIN age. Runs under CPython and MicroPython."""
from firmware.core.store import MemoryStore
from firmware.security.auth import Auth, Policy, epoch_of, weak_pin


class Clock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


class Utc:
    def __init__(self):
        self.t = (2026, 12, 1, 8, 0, 0)

    def __call__(self):
        return self.t


def _rand(n):
    return b"\x05" * n


def _auth(store, clock, utc):
    return Auth(store, clock, _rand, iterations=2, policy=Policy(lockout_ms=15 * 60000), utc=utc)


def test_epoch_of_known_dates():
    assert epoch_of((1970, 1, 1, 0, 0, 0)) == 0
    assert epoch_of((2000, 3, 1, 0, 0, 1)) == 951868801
    assert epoch_of((2026, 12, 1, 8, 0, 0)) == 1796112000


def test_weak_pins():
    assert weak_pin("1111") and weak_pin("1234") and weak_pin("98765")
    assert weak_pin("1212") and weak_pin("454545")
    assert weak_pin("4321") and not weak_pin("2580") and not weak_pin("4719")
    assert weak_pin("1357", "1357") and weak_pin("7777", "7")
    assert weak_pin("1212", "12") and not weak_pin("3691", "12")


def test_a_lockout_is_kept_in_the_store_and_ends():
    store, clock, utc = MemoryStore(), Clock(), Utc()
    auth = _auth(store, clock, utc)
    auth.create("1", "S", "supervisor", "2580")
    for _ in range(4):
        assert auth.check("1", "9991") == (None, "wrong_pin")
    again = _auth(store, Clock(), utc)          # a restart: the count of 4 is kept
    assert again.check("1", "9991") == (None, "locked")
    third = _auth(store, Clock(), utc)          # and the lockout
    assert third.locked_for("1") == 15 * 60000
    assert third.check("1", "2580") == (None, "locked")
    utc.t = (2026, 12, 1, 8, 15, 1)             # the UTC clock says it is over
    fourth = _auth(store, Clock(), utc)
    assert fourth.locked_for("1") == 0
    op, reason = fourth.check("1", "2580")
    assert reason == "ok" and op["id"] == "1" and op["must_change"] == ""


def test_a_kept_lockout_never_lasts_longer_than_a_lockout():
    store, utc = MemoryStore(), Utc()
    auth = _auth(store, Clock(), utc)
    auth.create("1", "S", "supervisor", "2580")
    for _ in range(5):
        auth.check("1", "9991")
    utc.t = (2026, 11, 1, 8, 0, 0)              # the clock was set back a month
    later = _auth(store, Clock(), utc)
    assert later.locked_for("1") == 15 * 60000


def test_history_age_and_reset():
    store, utc = MemoryStore(), Utc()
    auth = _auth(store, Clock(), utc)
    auth.create("2", "C", "cashier", "3691")
    assert auth.pin_problem("2", "3691") == "err_pin_reused"
    assert auth.pin_problem("2", "1234") == "err_pin_weak"
    assert auth.pin_problem("2", "12") == "err_pin_format"
    auth.set_pin("2", "4719", must_change="reset")
    assert auth.must_change("2") == "reset"
    assert auth.pin_problem("2", "3691") == "err_pin_reused"
    auth.set_pin("2", "5038")
    assert auth.must_change("2") == ""
    for pin in ("3691", "4719", "5038"):
        assert auth.reused("2", pin)
    assert not auth.reused("2", "6048")
    utc.t = (2027, 3, 2, 8, 0, 0)               # 91 days on
    assert auth.pin_age_days("2") == 91 and auth.must_change("2") == "expired"
