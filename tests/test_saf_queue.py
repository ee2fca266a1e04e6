"""Store-and-forward queue: encrypted, durable, ordered, and nothing silently dropped."""
import json
import os
import sqlite3
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.saf_queue import (CorruptRecord, ExportError, KeyFileError, QueueFull, SafError,
                               SafQueue)

KEY = bytes(range(32))
EXPORT_KEY = b"E" * 32
T0 = 1_780_000_000          # 2026-05-28, a fixed clock


def _payload(stan, pan="4761739001010119"):
    return {"mti": "0220", "de2": pan, "de35": pan + "=31122011143804400000",
            "de55": "9f2608a1b2c3d4e5f60718", "de4": 1250, "de49": "840", "de11": stan,
            "de37": "612300" + stan, "utc": "2026-05-28T12:00:00Z", "de22": "051"}


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def qpath(tmp_path):
    return str(tmp_path / "saf.db")


@pytest.fixture
def q(qpath, clock):
    queue = SafQueue(qpath, KEY, tid="T0000001", clock=clock)
    yield queue
    queue.close()


def _raw(path, sql, args=()):
    db = sqlite3.connect(path, isolation_level=None)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def test_round_trip_and_card_data_not_in_clear(q, qpath):
    rec_id = q.add("advice", "000123", 1250, "USD", _payload("000123"))
    assert q.load(rec_id) == _payload("000123")
    rec = q.get(rec_id)
    assert (rec["kind"], rec["state"], rec["amount"], rec["currency"], rec["stan"],
            rec["attempts"]) == ("advice", "pending", 1250, "USD", "000123", 0)
    assert rec["created_utc"] == "2026-05-28T20:26:40Z"
    q.close()
    for name in os.listdir(os.path.dirname(qpath)):
        with open(os.path.join(os.path.dirname(qpath), name), "rb") as f:
            assert b"4761739001010119" not in f.read()


def test_nonce_is_fresh_per_record(q, qpath):
    for i in range(5):
        q.add("advice", "%06d" % i, 100, "USD", _payload("000001"))
    nonces = [r[0] for r in _raw(qpath, "SELECT nonce FROM saf")]
    assert len(set(nonces)) == 5 and all(len(n) == 12 for n in nonces)


def test_order_reversals_first_then_oldest(q, clock):
    a1 = q.add("advice", "000001", 100, "USD", _payload("000001"))
    clock.now += 10
    r1 = q.add("reversal", "000002", 200, "USD", _payload("000002"))
    clock.now += 10
    a2 = q.add("advice", "000003", 300, "EUR", _payload("000003"))
    r0 = q.add("reversal", "000004", 50, "USD", _payload("000004"),
               created_utc="2026-05-28T00:00:00Z")
    assert [r["id"] for r in q.pending()] == [r0, r1, a1, a2]
    q.mark_sent(r0)
    q.mark_sent(r0)
    assert q.get(r0)["attempts"] == 2 and q.get(r0)["state"] == "sent"
    assert [r["id"] for r in q.pending()] == [r0, r1, a1, a2]    # unacked: sent again
    q.ack(r0)
    assert [r["id"] for r in q.pending()] == [r1, a1, a2]
    assert q.totals() == {"EUR": (1, 300), "USD": (2, 300)}
    assert q.oldest_age_s(T0 + 100) == 100
    for r in (r1, a1, a2):
        q.ack(r)
    assert q.totals() == {} and q.oldest_age_s(T0) is None


def test_durable_across_reopen(qpath, clock):
    q1 = SafQueue(qpath, KEY, clock=clock)
    ids = [q1.add("advice", "%06d" % i, 100 + i, "USD", _payload("%06d" % i)) for i in range(3)]
    q1.mark_sent(ids[0])
    q1.close()
    q2 = SafQueue(qpath, KEY, clock=clock)
    assert [r["id"] for r in q2.pending()] == ids
    assert q2.get(ids[0])["attempts"] == 1
    assert q2.load(ids[2]) == _payload("000002")
    q2.close()


def test_wrong_key_on_existing_queue_is_refused(qpath, q):
    q.add("advice", "000001", 100, "USD", _payload("000001"))
    q.close()
    with pytest.raises(KeyFileError, match="restore the key"):
        SafQueue(qpath, b"\x00" * 32)


@pytest.mark.parametrize("column,value", [
    ("ciphertext", "flip"), ("nonce", "flip"), ("stan", "000999"), ("kind", "reversal"),
    ("amount", 1), ("currency", "EUR"), ("created_utc", "2026-01-01T00:00:00Z"),
    ("state", "sent"), ("attempts", 7), ("mac", b"")])
def test_tampering_flags_corrupt_and_keeps_listing(q, qpath, column, value):
    rec_id = q.add("advice", "000001", 1250, "USD", _payload("000001"))
    other = q.add("advice", "000002", 1250, "USD", _payload("000002"))
    if column in ("ciphertext", "nonce"):
        blob = _raw(qpath, "SELECT %s FROM saf WHERE id=?" % column, (rec_id,))[0][0]
        value = bytes([blob[0] ^ 1]) + blob[1:]
    _raw(qpath, "UPDATE saf SET %s=? WHERE id=?" % column, (value, rec_id))
    with pytest.raises(CorruptRecord):
        q.load(rec_id)
    assert q.get(rec_id)["state"] == "corrupt"
    assert rec_id not in [r["id"] for r in q.pending()]         # never forwarded
    assert rec_id in [r["id"] for r in q.outstanding()]         # still shown
    with pytest.raises(CorruptRecord):
        q.load(rec_id)
    with pytest.raises(SafError):
        q.ack(rec_id)
    assert q.load(other) == _payload("000002")
    q.acknowledge_by_supervisor(rec_id, "S1")
    assert rec_id not in [r["id"] for r in q.outstanding()]
    assert _raw(qpath, "SELECT ciphertext IS NOT NULL FROM saf WHERE id=?",
                (rec_id,)) == [(1,)]                                # evidence kept


def test_swapped_ciphertexts_fail(q, qpath):
    a = q.add("advice", "000001", 100, "USD", _payload("000001"))
    b = q.add("advice", "000002", 100, "USD", _payload("000002"))
    rows = dict((r[0], r[1:]) for r in _raw(qpath, "SELECT id, nonce, ciphertext FROM saf"))
    _raw(qpath, "UPDATE saf SET nonce=?, ciphertext=? WHERE id=?", rows[b] + (a,))
    with pytest.raises(CorruptRecord):
        q.load(a)
    assert q.load(b) == _payload("000002")


def test_full_database_raises_queuefull_and_keeps_records(q, qpath, clock):
    kept = [q.add("advice", "%06d" % i, 100, "USD", _payload("%06d" % i)) for i in range(3)]
    pages = q.db.execute("PRAGMA page_count").fetchone()[0]
    q.db.execute("PRAGMA max_page_count=%d" % (pages + 2))
    big = dict(_payload("000100"), de55="9f" * 4000)
    with pytest.raises(QueueFull, match="every stored record is kept"):
        for i in range(100):
            q.add("advice", "%06d" % (100 + i), 100, "USD", big)
    assert not q.db.in_transaction
    added = len(q.pending()) - 3
    for rec_id in kept:
        assert q.load(rec_id) == _payload("%06d" % (rec_id - 1))
    q.ack(kept[0])          # acknowledging frees space, even when full
    q.close()
    q2 = SafQueue(qpath, KEY, clock=clock)
    assert len(q2.pending()) == 2 + added
    assert all(q2.load(r["id"]) for r in q2.pending())
    q2.close()


def test_ack_deletes_payload_keeps_tombstone(q, qpath):
    rec_id = q.add("advice", "000001", 1250, "USD", _payload("000001"))
    q.mark_sent(rec_id)
    q.ack(rec_id)
    assert _raw(qpath, "SELECT nonce, ciphertext, state FROM saf WHERE id=?",
                (rec_id,)) == [(None, None, "acked")]
    assert q.get(rec_id)["closed_utc"]
    with pytest.raises(KeyError, match="deleted"):
        q.load(rec_id)
    assert rec_id not in [r["id"] for r in q.outstanding()]
    assert rec_id in [r["id"] for r in q.records()]


def test_declined_stays_until_supervisor_acknowledges(q, qpath):
    rec_id = q.add("advice", "000001", 1250, "USD", _payload("000001"))
    q.mark_sent(rec_id)
    q.declined(rec_id, "05")
    rec = q.get(rec_id)
    assert rec["state"] == "declined_after_upload" and rec["rc"] == "05"
    assert rec_id not in [r["id"] for r in q.pending()]
    assert rec_id in [r["id"] for r in q.outstanding()]
    with pytest.raises(ValueError):
        q.acknowledge_by_supervisor(rec_id, "")
    q.close()
    q = SafQueue(qpath, KEY)
    assert rec_id in [r["id"] for r in q.outstanding()]           # survives a restart
    q.acknowledge_by_supervisor(rec_id, "S1")
    assert rec_id not in [r["id"] for r in q.outstanding()]
    rec = q.get(rec_id)
    assert rec["closed_by"] == "S1" and rec["state"] == "declined_after_upload"
    assert _raw(qpath, "SELECT ciphertext FROM saf WHERE id=?", (rec_id,)) == [(None,)]
    q.close()


def test_bad_inputs(q):
    with pytest.raises(ValueError):
        q.add("sale", "000001", 100, "USD", {})
    with pytest.raises(ValueError):
        q.add("advice", "000001", 1.5, "USD", {})
    with pytest.raises(ValueError, match="JSON"):
        q.add("advice", "000001", 100, "USD", {"de55": b"\x9f"})
    assert q.records() == [] and not q.db.in_transaction


def test_export_import_round_trip(tmp_path, q, clock):
    signer = Ed25519PrivateKey.generate()
    a = q.add("advice", "000001", 100, "USD", _payload("000001"))
    r = q.add("reversal", "000002", 200, "USD", _payload("000002"))
    q.mark_sent(r)
    acked = q.add("advice", "000003", 300, "USD", _payload("000003"))
    q.ack(acked)
    out = str(tmp_path / "export.json")
    assert q.export(out, signer, EXPORT_KEY, "T0000002") == 2
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    with open(out, "rb") as f:
        assert b"4761739001010119" not in f.read()

    new = SafQueue(str(tmp_path / "new.db"), b"N" * 32, tid="T0000002", clock=clock)
    clock.now += 10
    mine = new.add("advice", "000001", 999, "USD", _payload("000001"))   # same STAN, other TID
    assert new.import_file(out, signer.public_key(), EXPORT_KEY) == 2
    with pytest.raises(ExportError, match="already imported"):          # the same file again
        new.import_file(out, signer.public_key(), EXPORT_KEY)
    again = str(tmp_path / "again.json")                                # a new export of them
    assert q.export(again, signer, EXPORT_KEY, "T0000002") == 2
    assert new.import_file(again, signer.public_key(), EXPORT_KEY) == 0  # records kept once
    got = new.pending()
    assert [(x["kind"], x["stan"], x["tid"]) for x in got] == [
        ("reversal", "000002", "T0000001"), ("advice", "000001", "T0000001"),
        ("advice", "000001", "T0000002")]
    assert got[0]["attempts"] == 1                   # it was sent once: repeat MTI next
    assert new.load(got[0]["id"]) == q.load(r)
    assert new.load(got[1]["id"]) == q.load(a)
    assert new.load(mine) == _payload("000001")
    new.close()


def test_import_refuses_bad_signature_and_tampering(tmp_path, q, clock):
    signer = Ed25519PrivateKey.generate()
    q.add("advice", "000001", 100, "USD", _payload("000001"))
    out = str(tmp_path / "export.json")
    q.export(out, signer, EXPORT_KEY, "T0000002")
    new = SafQueue(str(tmp_path / "new.db"), b"N" * 32, tid="T0000002", clock=clock)
    with pytest.raises(ExportError, match="not a queue export signed"):
        new.import_file(out, Ed25519PrivateKey.generate().public_key(), EXPORT_KEY)
    with open(out) as f:
        doc = json.load(f)
    doc["signed"] = doc["signed"].replace('"amount":100', '"amount":1')
    with open(out, "w") as f:
        json.dump(doc, f)
    with pytest.raises(ExportError):
        new.import_file(out, signer.public_key(), EXPORT_KEY)
    q.export(out, signer, EXPORT_KEY, "T0000002")
    with pytest.raises(ExportError, match="export key"):
        new.import_file(out, signer.public_key(), b"X" * 32)
    assert new.records() == []
    new.close()


def test_queue_of_schema_1_gets_its_macs_and_a_flipped_byte_is_caught(qpath, clock):
    q = SafQueue(qpath, KEY, clock=clock)
    rec_id = q.add("advice", "000001", 1250, "USD", _payload("000001"))
    q.close()
    _raw(qpath, "UPDATE saf SET mac=NULL")                 # as schema 1 wrote it
    _raw(qpath, "PRAGMA user_version=1")
    q = SafQueue(qpath, KEY, clock=clock)
    assert q.load(rec_id) == _payload("000001") and q.verify_recent() == []
    q.close()
    data = open(qpath, "rb").read()
    assert b"pending" in data
    with open(qpath, "wb") as f:                           # pending -> pendinf, on the card
        f.write(data.replace(b"pending", b"pendinf"))
    q = SafQueue(qpath, KEY, clock=clock)
    assert q.verify_recent() == [rec_id]
    assert q.pending() == [] and q.get(rec_id)["state"] == "corrupt"
    assert "pendinf" in q.get(rec_id)["last_error"]        # what it said, kept
    q.close()


def test_totals_follow_adds_uploads_and_a_row_altered_on_the_card(q, qpath):
    """totals() is kept up to date by add/mark/ack (a drain does not read the whole
    queue per upload), and a row found altered on the card leaves it."""
    ids = [q.add("advice", "%06d" % i, 100 * i, "USD", _payload("%06d" % i)) for i in (1, 2, 3)]
    q.add("reversal", "000009", 900, "USD", _payload("000009"))
    assert q.totals() == {"USD": (4, 1500)}
    assert q.totals("advice") == {"USD": (3, 600)}
    q.mark_sent_many(ids[:2])
    assert q.totals() == {"USD": (4, 1500)}
    q.ack_many([ids[0]])
    assert q.totals() == {"USD": (3, 1400)}
    q.add("advice", "000004", 50, "CNY", _payload("000004"))
    assert q.totals() == {"USD": (3, 1400), "CNY": (1, 50)}
    q.cancel(ids[2], "voided before upload")
    assert q.totals() == {"USD": (2, 1100), "CNY": (1, 50)}
    # another hand changes an amount in the file: the next read finds the MAC broken
    other = sqlite3.connect(qpath)
    other.execute("UPDATE saf SET amount=1 WHERE id=?", (ids[1],))
    other.commit()
    other.close()
    assert [r["id"] for r in q.pending()] != [] and ids[1] not in [r["id"] for r in q.pending()]
    assert q.totals() == {"USD": (1, 900), "CNY": (1, 50)}


# -- records of the release before (schema 2): an advice's track 2 replaced (issue 14/7) --

TRACK2 = "4761739001010119=31122011143804400000"


def _old_advice(stan):
    """An advice's payload as the release before queued it: full track 2 in DE35, its
    offline code in DE39, no DE2/DE14/DE38."""
    return {"msg": {"t": "0220", "3": "000000", "4": "000000001250", "7": "0528120000",
                    "11": stan, "12": "140000", "13": "0528", "22": "021", "25": "00",
                    "35": TRACK2, "37": "614812" + stan, "39": "Y1", "41": "T0000001",
                    "42": "000000000000001", "49": "840"},
            "journal_id": 7, "purpose": "advice"}


def _old_reversal(stan, purpose):
    return {"msg": {"t": "0420", "3": "000000", "4": "000000001250", "7": "0528120000",
                    "11": stan, "22": "021", "41": "T0000001",
                    "90": "0200000001" + "0528120000" + "0" * 22},
            "journal_id": 8, "purpose": purpose}


def test_queue_of_schema_2_loses_its_advices_track_at_first_open(qpath, clock):
    q = SafQueue(qpath, KEY, tid="T0000001", clock=clock)
    a = q.add("advice", "000001", 1250, "USD", _old_advice("000001"))
    sent = q.add("advice", "000002", 1250, "USD", _old_advice("000002"))
    q.mark_sent(sent)
    void = q.add("reversal", "000003", 1250, "USD", _old_reversal("000004", "void"))
    other = q.add("reversal", "000005", 1250, "USD", _old_reversal("000006", "reversal"))
    keep = q.add("advice", "000007", 1250, "USD", _payload("000007"))    # not a message
    acked = q.add("advice", "000008", 1250, "USD", _old_advice("000008"))
    q.ack(acked)
    q.close()
    _raw(qpath, "PRAGMA user_version=2")                  # as the release before left it
    old = [r[0] for r in _raw(qpath, "SELECT ciphertext FROM saf WHERE id IN (?, ?)",
                              (a, sent))]
    q = SafQueue(qpath, KEY, tid="T0000001", clock=clock)
    assert _raw(qpath, "PRAGMA user_version")[0][0] == 3
    for rec_id in (a, sent):
        payload = q.load(rec_id)
        msg = payload["msg"]
        assert "35" not in msg and "39" not in msg
        assert (msg["2"], msg["14"], msg["38"]) == ("4761739001010119", "3112", "Y1    ")
        assert payload["journal_id"] == 7 and msg["t"] == "0220"
    assert q.get(sent)["state"] == "sent" and q.get(sent)["attempts"] == 1     # as it was
    assert q.load(void)["msg"]["39"] == "17" and q.load(other)["msg"]["39"] == "22"
    assert q.load(keep) == _payload("000007")
    assert q.verify_recent() == []
    q.close()
    for name in os.listdir(os.path.dirname(qpath)):       # the old ciphertexts are gone
        with open(os.path.join(os.path.dirname(qpath), name), "rb") as f:
            data = f.read()
        assert len(old) == 2 and not [ct for ct in old if ct[:32] in data], name
    q = SafQueue(qpath, KEY, tid="T0000001", clock=clock)  # once: nothing to do again
    assert q.load(a)["msg"]["2"] == "4761739001010119"
    q.close()


def test_a_damaged_old_record_is_not_sealed_anew_by_the_upgrade(qpath, clock):
    q = SafQueue(qpath, KEY, tid="T0000001", clock=clock)
    good = q.add("advice", "000001", 1250, "USD", _old_advice("000001"))
    bad = q.add("advice", "000002", 1250, "USD", _old_advice("000002"))
    q.close()
    _raw(qpath, "UPDATE saf SET amount=1 WHERE id=?", (bad,))     # altered on the card
    _raw(qpath, "PRAGMA user_version=2")
    q = SafQueue(qpath, KEY, tid="T0000001", clock=clock)
    assert "2" in q.load(good)["msg"]
    assert q.get(bad)["state"] == "corrupt"
    with pytest.raises(CorruptRecord):
        q.load(bad)
    q.close()


def test_an_export_of_the_release_before_imports_without_the_track(tmp_path, q, clock):
    signer = Ed25519PrivateKey.generate()
    q.add("advice", "000001", 1250, "USD", _old_advice("000001"))     # as it exported them
    out = str(tmp_path / "export.json")
    assert q.export(out, signer, EXPORT_KEY, "T0000002") == 1
    new = SafQueue(str(tmp_path / "new.db"), b"N" * 32, tid="T0000002", clock=clock)
    assert new.import_file(out, signer.public_key(), EXPORT_KEY) == 1
    [rec] = new.pending()
    msg = new.load(rec["id"])["msg"]
    assert "35" not in msg and msg["2"] == "4761739001010119" and msg["38"] == "Y1    "
    new.close()
