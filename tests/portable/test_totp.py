"""firmware.security.totp and firmware.security.mfa against the RFCs' own answers.

These run under CPython (pytest) and MicroPython (tools/mpy_runner.mjs), where SHA-1
and SHA-512 are the module's own code (MicroPython's hashlib has only sha256); on
CPython the written-out hashes are also checked against hashlib.

Sources:
- RFC 4226 Appendix D: HOTP values of the secret "12345678901234567890", counts 0-9.
- RFC 6238 Appendix B: 8-digit TOTP, 30 s steps, the seeds of 20, 32 and 64 bytes
  for HMAC-SHA1, -SHA256 and -SHA512, at the six listed times.
- RFC 4648 section 10: base32 test vectors.
- FIPS 180-4 / NIST examples: SHA-1 and SHA-512 of "abc".
"""
import binascii
import hashlib

from firmware.core.store import MemoryStore
from firmware.security import mfa, totp

SEED1 = b"12345678901234567890"
SEED256 = b"12345678901234567890123456789012"
SEED512 = b"1234567890123456789012345678901234567890123456789012345678901234"


def hx(data):
    return binascii.hexlify(bytes(data)).decode()


def test_rfc4226_appendix_d_hotp():
    expected = ["755224", "287082", "359152", "969429", "338314",
                "254676", "287922", "162583", "399871", "520489"]
    for count in range(10):
        assert totp.hotp(SEED1, count) == expected[count], count


def test_rfc6238_appendix_b_totp():
    table = [
        (59, "94287082", "46119246", "90693936"),
        (1111111109, "07081804", "68084774", "25091201"),
        (1111111111, "14050471", "67062674", "99943326"),
        (1234567890, "89005924", "91819424", "93441116"),
        (2000000000, "69279037", "90698825", "38618901"),
        (20000000000, "65353130", "77737706", "47863826"),
    ]
    for t, sha1, sha256, sha512 in table:
        assert totp.totp(SEED1, t, 8, algorithm="SHA1") == sha1, t
        assert totp.totp(SEED256, t, 8, algorithm="SHA256") == sha256, t
        assert totp.totp(SEED512, t, 8, algorithm="SHA512") == sha512, t
    # T as the RFC's table gives it (hex of the step)
    assert totp.time_step(1111111109) == 0x23523EC
    assert totp.time_step(20000000000) == 0x27BC86AA


def test_portable_hashes_known_answers():
    assert hx(totp.sha1_portable(b"abc")) == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert hx(totp.sha1_portable(b"")) == "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    assert hx(totp.sha512_portable(b"abc")) == (
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
    # where hashlib has them (CPython), the written-out ones agree at every padding edge
    for name, mine in (("sha1", totp.sha1_portable), ("sha512", totp.sha512_portable)):
        ctor = getattr(hashlib, name, None)
        if ctor is None:
            continue
        for n in (0, 1, 55, 56, 63, 64, 65, 111, 112, 119, 120, 127, 128, 129, 200):
            msg = bytes((i * 7 + n) & 0xFF for i in range(n))
            assert mine(msg) == ctor(msg).digest(), (name, n)


def test_base32_rfc4648_vectors_without_padding():
    for clear, coded in ((b"", ""), (b"f", "MY"), (b"fo", "MZXQ"), (b"foo", "MZXW6"),
                         (b"foob", "MZXW6YQ"), (b"fooba", "MZXW6YTB"),
                         (b"foobar", "MZXW6YTBOI")):
        assert totp.b32encode(clear) == coded
        assert totp.b32decode(coded) == clear
        assert totp.b32decode(coded.lower() + "=" * 3) == clear
    assert totp.b32decode("mzxw 6ytb-oi") == b"foobar"
    try:
        totp.b32decode("MZ1")
        assert False, "1 is not base32"
    except ValueError:
        pass
    assert totp.b32encode(SEED1) == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


def test_key_uri_is_the_short_standard_form():
    uri = totp.key_uri(SEED1, "handpos", "HP000001-1")
    assert uri == "otpauth://totp/handpos:HP000001-1?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    uri = totp.key_uri(SEED1, "Joe's Café", "HP000001-1", with_issuer_param=True)
    assert uri.startswith("otpauth://totp/Joe%27s%20Caf%C3%A9:HP000001-1?secret=")
    assert uri.endswith("&issuer=Joe%27s%20Caf%C3%A9")


def test_match_window_and_replay():
    now = 1234567890
    step = totp.time_step(now)
    code = totp.totp(SEED1, now)
    assert totp.match(SEED1, code, now) == step
    assert totp.match(SEED1, code, now + 30) == step          # one step late: taken
    assert totp.match(SEED1, code, now - 30) == step          # one step early: taken
    assert totp.match(SEED1, code, now + 60) is None          # two steps: refused
    assert totp.match(SEED1, code, now, last_step=step) is None
    assert totp.match(SEED1, code, now, last_step=step - 1) == step
    assert totp.match(SEED1, "12345", now) is None
    assert totp.match(SEED1, "abcdef", now) is None


def test_recovery_codes_are_keypad_digits_and_distinct():
    state = [0]

    def rnd(n):
        out = bytes((state[0] + i * 37) & 0xFF for i in range(n))
        state[0] += n
        return out
    codes = totp.recovery_codes(rnd)
    assert len(codes) == 8 and len(set(codes)) == 8
    for c in codes:
        assert len(c) == 10 and c.isdigit()
    assert totp.show_recovery("1234567890") == "12345 67890"


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def _counter_random():
    state = [1]

    def rnd(n):
        out = bytes(((state[0] + i) * 73) & 0xFF for i in range(n))
        state[0] += n
        return out
    return rnd


def test_mfa_enrol_verify_replay_recovery_lockout():
    clock = Clock(1700000000)
    store = MemoryStore()
    secrets = mfa.MemorySecrets()
    m = mfa.Mfa(secrets, store, clock, _counter_random())
    secret = m.new_secret()
    assert len(secret) == 20 and not m.enrolled("7")
    assert m.confirm("7", secret, "000000" if totp.totp(secret, clock.now) != "000000"
                     else "111111") is None
    assert not m.enrolled("7")                      # a wrong confirmation keeps nothing
    codes = m.confirm("7", secret, totp.totp(secret, clock.now))
    assert len(codes) == 8 and m.enrolled("7")
    rec = secrets.get("7")
    assert rec["secret"] == totp.b32encode(secret)
    for c in codes:                                 # only hashes of the codes are kept
        assert c not in str(rec)
    # the code that confirmed the enrolment is spent already
    assert m.verify("7", totp.totp(secret, clock.now)) == mfa.REPLAY
    clock.now += 30
    good = totp.totp(secret, clock.now)
    assert m.verify("7", good) == mfa.OK
    assert m.verify("7", good) == mfa.REPLAY
    assert m.failures("7") == 1                  # a good code cleared the first
    # a recovery code once
    assert m.verify_recovery("7", codes[3]) == mfa.OK
    assert m.failures("7") == 0
    assert m.verify_recovery("7", codes[3]) == mfa.WRONG
    assert m.recovery_left("7") == 7
    # five wrong in a row (the spent recovery code was the first) lock for 15 minutes,
    # kept in the store's settings
    assert m.failures("7") == 1
    for i in range(3):
        assert m.verify("7", "000000" if good != "000000" else "111111") in (mfa.WRONG, mfa.REPLAY)
    assert m.verify("7", "999999" if good != "999999" else "111111") == mfa.LOCKED
    assert store.get_setting("mfa_fail:7").startswith("0,")
    again = mfa.Mfa(secrets, store, clock, _counter_random())   # a restart
    assert again.locked_for("7") == 15 * 60
    clock.now += 30
    assert again.verify("7", totp.totp(secret, clock.now)) == mfa.LOCKED
    clock.now += 15 * 60
    assert again.locked_for("7") == 0
    assert again.verify("7", totp.totp(secret, clock.now)) == mfa.OK
    assert again.verify("8", "123456") == mfa.NOT_ENROLLED


def test_required_by_config():
    cfg = {"mfa": {"at_login": False, "actions": list(mfa.DEFAULT_ACTIONS),
                   "roles": list(mfa.DEFAULT_ROLES)}}
    sup = {"id": "1", "role": "supervisor"}
    cash = {"id": "2", "role": "cashier"}
    assert mfa.required(cfg, sup, "export")
    assert not mfa.required(cfg, sup, "login")
    assert not mfa.required(cfg, cash, "export")
    assert not mfa.required(cfg, sup, "sale")
    cfg["mfa"]["at_login"] = True
    assert mfa.required(cfg, sup, "login")
    assert not mfa.required(cfg, None, "login")


def test_utc_seconds_as_totp_counts_them():
    # RFC 6238's times, and the turns of a leap year and of the century
    assert mfa.utc_seconds((1970, 1, 1, 0, 0, 59)) == 59
    assert mfa.utc_seconds((2005, 3, 18, 1, 58, 29)) == 1111111109
    assert mfa.utc_seconds((2009, 2, 13, 23, 31, 30)) == 1234567890
    assert mfa.utc_seconds((2033, 5, 18, 3, 33, 20)) == 2000000000
    assert mfa.utc_seconds((2603, 10, 11, 11, 33, 20)) == 20000000000
    assert mfa.utc_seconds((2024, 2, 29, 0, 0, 0)) == 1709164800
    assert mfa.utc_seconds((2000, 3, 1, 0, 0, 0)) == 951868800
