"""The audit chain (firmware/security/auditchain.py) on the memory store: a person's
edits to the trail are each reported by number, as edited, removed, inserted or moved;
on CPython and under MicroPython. The SQLite store and the CLI: tests/test_audit_chain.py."""
import hashlib

from firmware.core.store import MemoryStore
from firmware.security import auditchain
from firmware.security.auditchain import AuditChain, MemoryBox

KEY = bytes(range(32))


def trail(n=10, box=None):
    store = MemoryStore()
    store.audit_clock = lambda: "2026-12-01T10:00:00Z"
    box = box if box is not None else MemoryBox()
    store.attach_audit_chain(AuditChain(KEY, box))
    for i in range(n):
        store.audit("login", "1", "row %d" % i)
    return store, box


def found(store):
    v = store.audit_verify()
    return [(seq, kind) for seq, kind, text in v.problems]


def at(store, seq):
    for i, r in enumerate(store._audit):
        if r[0] == seq:
            return i
    raise KeyError(seq)


def test_hmac_is_rfc_4231():
    # RFC 4231 test case 2: the portable HMAC and hashlib agree with the published MAC
    mac = auditchain._hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert auditchain._hex(mac) == ("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b9"
                                    "64ec3843")
    long_key = b"\xaa" * 131
    got = auditchain._hmac_sha256(long_key, b"Test Using Larger Than Block-Size Key - "
                                            b"Hash Key First")
    assert auditchain._hex(got) == ("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546"
                                    "040f0ee37f54")
    assert hashlib.sha256(b"").digest()     # the one primitive it needs


def test_untouched_trail_verifies():
    store, box = trail()
    v = store.audit_verify()
    assert v.ok(), v.problems
    assert v.checked == 11                 # the chain's start record and ten more
    assert store._audit[0][2] == auditchain.START_EVENT
    assert box.read()["seq"] == 11
    assert store.audit_check_tail().ok()
    assert [r[1] for r in store.audit_log(2)] == ["login", "login"]


def test_edited_record_named():
    store, box = trail()
    i = at(store, 5)
    store._audit[i] = store._audit[i][:4] + ("row changed",) + store._audit[i][5:]
    assert found(store) == [(5, auditchain.EDITED)]
    assert store.audit_check_tail().first_bad() == 5


def test_edited_last_record_named():
    store, box = trail()
    store._audit[-1] = store._audit[-1][:3] + ("2",) + store._audit[-1][4:]
    assert found(store) == [(11, auditchain.EDITED)]


def test_middle_record_removed():
    store, box = trail()
    del store._audit[at(store, 6)]
    assert found(store) == [(6, auditchain.REMOVED)]
    text = store.audit_verify().problems[0][2]
    assert "#6" in text and "removed" in text


def test_last_records_removed():
    store, box = trail()
    del store._audit[-3:]
    assert found(store) == [(9, auditchain.REMOVED)]
    assert "#9-#11" in store.audit_verify().problems[0][2]


def test_first_records_removed():
    store, box = trail()
    del store._audit[0:2]
    assert found(store) == [(1, auditchain.REMOVED)]


def test_every_record_removed():
    store, box = trail()
    del store._audit[:]
    assert found(store) == [(1, auditchain.REMOVED)]


def test_forged_record_inserted():
    store, box = trail()
    # a record with a made-up MAC after the last, and one without any
    store._audit.append((12, "2026-12-01T10:00:00Z", "refund", "1", "forged",
                         store._audit[-1][6], b"\x01" * 32))
    store._audit.append((13, "2026-12-01T10:00:00Z", "refund", "1", "forged", None, None))
    assert found(store) == [(12, auditchain.INSERTED), (13, auditchain.UNSEALED)]


def test_swapped_records_named_as_moved():
    store, box = trail()
    i, j = at(store, 4), at(store, 5)
    a, b = store._audit[i], store._audit[j]
    store._audit[i] = (4,) + b[1:]
    store._audit[j] = (5,) + a[1:]
    assert found(store) == [(4, auditchain.MOVED), (5, auditchain.MOVED)]
    assert "#5" in store.audit_verify().problems[0][2]


def test_renumbered_after_a_removal():
    store, box = trail()
    del store._audit[at(store, 6)]
    store._audit = [(r[0] - 1,) + r[1:] if r[0] > 6 else r for r in store._audit]
    v = store.audit_verify()
    assert v.problems and v.first_bad() == 6, v.problems


def test_head_missing_is_reported_and_the_chain_goes_on():
    store, box = trail(3)
    box.doc = None
    again = MemoryStore()
    again._audit = list(store._audit)
    again.attach_audit_chain(AuditChain(KEY, box))
    v = again.audit_check_tail()
    assert [p[1] for p in v.problems] == [auditchain.HEAD]
    again.audit("login", "1", "after")          # continues from the last record
    assert again._audit[-1][5] == store._audit[-1][6]
    assert again.audit_verify().ok()            # a head written again since


def test_power_cut_before_the_head_is_not_a_break():
    store, box = trail(3)
    stale = box.read()
    store.audit("logout", "1", "")
    box.doc = stale                             # the record written, its head not
    again = MemoryStore()
    again._audit = list(store._audit)
    again.attach_audit_chain(AuditChain(KEY, box))
    assert again.audit_check_tail().ok()
    assert box.read()["seq"] == store._audit[-1][0]


def test_records_before_the_chain_are_sealed_once():
    store = MemoryStore()
    for i in range(4):
        store.audit("login", "1", "old %d" % i)         # no key yet: unsealed
    assert [r[6] for r in store._audit] == [None] * 4
    box = MemoryBox()
    store.attach_audit_chain(AuditChain(KEY, box))
    assert store._audit[-1][2] == auditchain.START_EVENT
    assert "#1-#4" in store._audit[-1][4]
    assert box.read()["sealed_to"] == 4
    assert store.audit_verify().ok()
    again = MemoryStore()                               # a later start seals nothing new
    again._audit = list(store._audit)
    again.attach_audit_chain(AuditChain(KEY, box))
    assert len(again._audit) == 5 and again.audit_verify().ok()


def test_an_unsealed_record_after_the_start_is_not_sealed():
    store, box = trail(2)
    store._audit.append((4, "", "refund", "1", "by hand", None, None))
    again = MemoryStore()
    again._audit = list(store._audit)
    again.attach_audit_chain(AuditChain(KEY, box))
    assert [(s, k) for s, k, t in again.audit_verify().problems] == [(4, auditchain.UNSEALED)]


def test_tail_check_starts_after_the_last_break_found():
    store, box = trail()
    i = at(store, 3)
    store._audit[i] = store._audit[i][:4] + ("changed",) + store._audit[i][5:]
    assert store.audit_check_tail().first_bad() == 3
    store.audit(auditchain.BROKEN_EVENT, "", "#3 was edited")
    assert store.audit_check_tail().ok()                # found once, sealed
    v = store.audit_verify()
    assert v.first_bad() == 3 and v.breaks and v.breaks[0][0] == 12


def test_removed_tail_stays_visible_after_new_records():
    store, box = trail(5)
    del store._audit[-2:]                               # #5, #6 gone
    again = MemoryStore()
    again._audit = list(store._audit)
    again.attach_audit_chain(AuditChain(KEY, box))
    assert again.audit_check_tail().first_bad() == 5
    again.audit(auditchain.BROKEN_EVENT, "", "#5-#6 removed")
    assert again._audit[-1][0] == 7                     # numbered after the head
    assert [(s, k) for s, k, t in again.audit_verify().problems] == [(5, auditchain.REMOVED)]


def test_another_key_fails_every_record():
    store, box = trail(3)
    other = AuditChain(b"\x01" * 32, box)
    v = other.verify(list(store._audit))
    assert len(v.problems) >= 4


def test_head_round_trip():
    h = auditchain.Head(7, b"\xab" * 32, 2, 3, "2026-12-01T10:00:00Z")
    back = auditchain.Head.from_dict(h.to_dict())
    assert (back.seq, back.mac, back.start, back.sealed_to, back.since) == (
        7, b"\xab" * 32, 2, 3, "2026-12-01T10:00:00Z")


def test_fields_do_not_run_into_each_other():
    a = auditchain.encode(auditchain.GENESIS, 1, "u", "ab", "c", "")
    b = auditchain.encode(auditchain.GENESIS, 1, "u", "a", "bc", "")
    assert a != b
