"""The store-and-forward queue: offline approvals and reversals waiting for the host.

SQLite in WAL mode with synchronous=FULL, like the journal: add() is on the SD card
before it returns, so an offline APPROVED is never shown for a record a power cut
could lose. The advice fields carry card data the host has not yet authorised
(DE2 PAN, DE14 expiry, DE55; never track data: docs/host-protocol.md, and a queue
of an older release has its advices' track 2 replaced at its first open), so each
payload is JSON sealed with AES-GCM under the device data key, a fresh 96-bit
nonce per record, and associated data naming the record (id, kind,
STAN, amount, currency, TID, time): a ciphertext moved to another row, or a clear
column edited, fails its tag. Only what the forwarder needs to order, count and show
the merchant stays in clear.

Nothing is silently dropped: a record whose tag fails is flagged corrupt and stays
listed (never forwarded, never deleted); a record the host declined after upload
stays listed until a supervisor acknowledges it; an acknowledged record keeps a
tombstone without its payload.

States: pending -> sent -> acked (tombstone)
                         -> declined_after_upload -> (supervisor acknowledged)
        pending -> cancelled (never sent: the approval was never shown, or a
                   supervisor voided it before upload; a tombstone says who and why)
        any   -> corrupt (GCM tag or record MAC failed)

Every row also carries a MAC (HMAC-SHA256 under a key derived from the data key) over
all its columns, the clear ones included: a flipped state, attempts or amount byte is
caught when the row is read, and the row is flagged corrupt (its last_error says what
its state was), never forwarded, never deleted. A queue of schema 1 gets its MACs at
its first open under this version. Errors of the medium (full, I/O, damaged file)
leave as StorageFaults (firmware/core/store.py): QueueFull for a full card.
"""
import base64
import calendar
import json
import os
import sqlite3

from drivers.sqlite_durable import Guard, guarded, mac_key, mac_ok, open_durable, probe, record_mac, transaction
import time

from firmware.core.store import StorageFault

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                                Ed25519PublicKey)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KINDS = ("reversal", "advice")
STATES = ("pending", "sent", "acked", "declined_after_upload", "corrupt", "cancelled")
KEY_BYTES = 32
NONCE_BYTES = 12
GOOD_ROWS_KEPT = 100000     # about 4 MiB of hashes; past it the set starts again
SCHEMA_VERSION = 3          # 2: every row carries a MAC; 3: no track data in advices
EXPORT_FORMAT = "handpos-saf-export"
EXPORT_VERSION = 2          # 2: an export ID, a target terminal and an expiry, all signed
EXPORT_VALID_S = 72 * 3600  # an export is imported within this, by its terminal's clock
EXPORT_CLOCK_SLACK_S = 600  # an export made this much "later" than the importer's clock is refused
EXPORT_ID_BYTES = 16

SCHEMA = """
CREATE TABLE IF NOT EXISTS saf (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, state TEXT NOT NULL,
    amount INTEGER NOT NULL, currency TEXT NOT NULL, stan TEXT NOT NULL,
    tid TEXT NOT NULL, created_utc TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',
    rc TEXT NOT NULL DEFAULT '', closed_by TEXT NOT NULL DEFAULT '',
    closed_utc TEXT NOT NULL DEFAULT '',
    nonce BLOB, ciphertext BLOB);
CREATE INDEX IF NOT EXISTS saf_state ON saf(state);
CREATE INDEX IF NOT EXISTS saf_origin ON saf(tid, stan, kind);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS imports (
    export_id TEXT PRIMARY KEY, source_tid TEXT NOT NULL, created_utc TEXT NOT NULL,
    imported_utc TEXT NOT NULL, records INTEGER NOT NULL, added INTEGER NOT NULL);
"""
_CLEAR = ("id", "kind", "state", "amount", "currency", "stan", "tid", "created_utc",
          "attempts", "last_error", "rc", "closed_by", "closed_utc")
_KEY_CHECK = b"handpos saf data key check"
_MACCED = _CLEAR + ("nonce", "ciphertext")
_MAC_DEFAULTS = {"attempts": 0, "last_error": "", "rc": "", "closed_by": "", "closed_utc": "",
                 "nonce": None, "ciphertext": None}


class SafError(Exception):
    pass


class QueueFault(SafError, StorageFault):
    """The card under the queue failed (full, I/O, damaged): nothing was changed."""

    def __init__(self, kind, part="queue", detail=""):
        StorageFault.__init__(self, kind, part, detail)


class QueueFull(QueueFault):
    def __init__(self, kind="full", part="queue", detail=""):
        QueueFault.__init__(self, kind, part, detail)
        self.args = ("offline queue is full (%s): this change was not saved and every stored "
                     "record is kept; connect to the host to upload, or free space on the SD "
                     "card" % detail,)


def _queue_fault(kind, part, detail):
    return QueueFull(kind, part, detail) if kind == "full" else QueueFault(kind, part, detail)


class CorruptRecord(SafError):
    corrupt = True          # what the forwarder (firmware, no imports from here) checks


class KeyFileError(SafError):
    pass


class ExportError(SafError):
    pass


def _utc(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _epoch(utc):
    return calendar.timegm(time.strptime(utc, "%Y-%m-%dT%H:%M:%SZ"))


def _check_key(key, what):
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        raise KeyFileError("%s must be %d bytes" % (what, KEY_BYTES))
    return bytes(key)


def _aad(rec, rec_id):
    # rec_id None: an export record, bound to its origin instead of a local row
    fields = ("" if rec_id is None else str(rec_id), rec["kind"], rec["stan"],
              str(rec["amount"]), rec["currency"], rec["tid"], rec["created_utc"])
    for f in fields:
        if "|" in f:
            raise ValueError("saf: %r may not contain '|'" % f)
    return ("handpos-saf-v1|" + "|".join(fields)).encode()


def _export_aad(clear, export_id):
    # an export's record is bound to its origin and to the export that carries it
    if "|" in export_id:
        raise ValueError("saf: an export ID may not contain '|'")
    return ("handpos-saf-export-v2|%s|" % export_id).encode() + _aad(clear, None)


def _valid_tid(tid):
    return len(tid) == 8 and all(c.isascii() and c.isalnum() for c in tid)


def _seal(key, payload, aad):
    try:
        clear = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError("saf: the payload must be JSON (hex-encode binary fields): %s" % exc)
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, clear, aad)


def _open(key, nonce, ciphertext, aad):
    """The payload, or None when the tag (or what it protects) does not check."""
    if not nonce or not ciphertext or len(nonce) != NONCE_BYTES:
        return None
    try:
        payload = json.loads(AESGCM(key).decrypt(bytes(nonce), bytes(ciphertext), aad))
    except (InvalidTag, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _write_atomic(path, data, mode=0o600):
    """Write a new file under a temporary name and rename it: readers see all or nothing."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = "%s.tmp%d" % (path, os.getpid())
    try:
        os.unlink(tmp)              # left by a crash before a reboot reused the pid
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)         # whatever the umask says
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp, folder


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class SafQueue:
    durable = True          # on the SD card before add() returns: offline approvals allowed
    fault_class = staticmethod(_queue_fault)

    def __init__(self, path, data_key, tid="", clock=time.time, on_fault=None):
        self.key = _check_key(data_key, "the device data key")
        self.mac_key = mac_key(self.key, "queue")
        # rows whose MAC held, as hash(row content with its MAC): listing the queue for
        # the status bar's count checks a row again only when a byte of it changed, not
        # the whole queue per upload (which made a drain of 10,000 quadratic)
        self._good = set()
        # {id: (kind, currency, amount)} of the records still to upload, read (and
        # checked) once, then kept up to date by add and ack, the writes of a drain;
        # any other write drops it and the next totals() reads the queue again
        self._open = None
        self.path = path
        self.tid = tid
        self.clock = clock
        self.guard = Guard("queue", on_fault, path)
        try:
            self.db = open_durable(path)
            self.guard.db = self.db
            self.db.execute("PRAGMA secure_delete=ON")     # acked payloads are zeroed
            self.db.executescript(SCHEMA)
            if "mac" not in {r[1] for r in self.db.execute("PRAGMA table_info(saf)")}:
                self.db.execute("ALTER TABLE saf ADD COLUMN mac BLOB")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SafError("%s was written by a newer handpos (schema %d)" % (path, version))
            if version < SCHEMA_VERSION:
                self._migrate(version)
            row = self.db.execute("SELECT value FROM meta WHERE name='key_check'").fetchone()
        except (sqlite3.Error, OSError) as exc:
            fault = self.guard.fault(exc, _queue_fault)
            if fault is None:
                raise SafError("offline queue: cannot open %s (%s): check the SD card and "
                               "free space" % (path, exc))
            raise _queue_fault(fault.kind, "queue", "cannot open %s (%s): check the SD card "
                               "and free space" % (path, exc))
        if row is None:
            nonce, check = _seal(self.key, {"check": _KEY_CHECK.decode()}, b"key_check")
            self._write(self.db.execute, "INSERT INTO meta VALUES ('key_check', ?)",
                        (nonce + check,))
        elif _open(self.key, row[0][:NONCE_BYTES], row[0][NONCE_BYTES:], b"key_check") is None:
            self.db.close()
            raise KeyFileError("the device data key does not open the offline queue %s: "
                               "restore the key file that belongs to it; do not delete the "
                               "queue (it holds approvals not yet sent)" % path)

    def _migrate(self, version):
        """Once, in one transaction: a queue of schema 1 (no MACs) gets every row sealed
        as it stands; one of schema 1 or 2 gets its payloads in this release's wire."""
        def body():
            if version < 2:
                for (rec_id,) in self.db.execute("SELECT id FROM saf").fetchall():
                    self._reseal(rec_id)
            if version < 3:
                self._upgrade_payloads()
            self.db.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)
        transaction(self.db, body)

    def _upgrade_payloads(self):
        """Schema 2 kept an advice's full track 2 (DE35) and a reversal without a reason:
        each payload still held is opened, brought to this release's wire by
        firmware/payments/hostmsg.upgrade_payload (PAN and expiry instead of the track)
        and sealed again under a fresh nonce (secure_delete zeroes the old pages). A row
        whose MAC or tag fails is left as it is: it is flagged corrupt when read, never
        sealed anew."""
        from firmware.payments.hostmsg import upgrade_payload
        rows = self.db.execute("SELECT %s, mac FROM saf WHERE ciphertext IS NOT NULL AND "
                               "state != 'corrupt'" % ", ".join(_MACCED)).fetchall()
        for row in rows:
            fields, mac = dict(zip(_MACCED, row[:-1])), row[-1]
            if not mac_ok(self.mac_key, "saf", fields, mac, _MAC_DEFAULTS):
                continue
            aad = _aad(fields, fields["id"])
            payload = _open(self.key, fields["nonce"], fields["ciphertext"], aad)
            if payload is None:
                continue
            payload, changed = upgrade_payload(payload)
            if changed:
                nonce, ct = _seal(self.key, payload, aad)
                self.db.execute("UPDATE saf SET nonce=?, ciphertext=? WHERE id=?",
                                (nonce, ct, fields["id"]))
                self._reseal(fields["id"])

    # MACs
    def _raw(self, rec_id):
        row = self.db.execute("SELECT %s, mac FROM saf WHERE id=?" % ", ".join(_MACCED),
                              (rec_id,)).fetchone()
        return None if row is None else (dict(zip(_MACCED, row[:-1])), row[-1])

    def _reseal(self, rec_id):
        """The row's MAC over what it now holds (inside the caller's transaction)."""
        raw = self._raw(rec_id)
        if raw is not None:
            self.db.execute("UPDATE saf SET mac=? WHERE id=?",
                            (record_mac(self.mac_key, "saf", raw[0], _MAC_DEFAULTS), rec_id))

    def _verified(self, fields, mac):
        """fields (a row with nonce and ciphertext) if its MAC holds; else the row is
        flagged corrupt (its old state kept in last_error) and returned as such."""
        seen = hash((mac,) + tuple(fields[k] for k in _MACCED))
        if seen in self._good:
            return fields
        if mac_ok(self.mac_key, "saf", fields, mac, _MAC_DEFAULTS):
            if len(self._good) >= GOOD_ROWS_KEPT:
                self._good.clear()
            self._good.add(seen)
            return fields
        why = "record MAC failed (state was %r)" % (fields.get("state"),)
        self._open = None                 # its amount, if counted, no longer is
        try:
            def flag():
                self.db.execute("UPDATE saf SET state='corrupt', last_error=? WHERE id=?",
                                (why, fields["id"]))
                self._reseal(fields["id"])
            if self.db.in_transaction:
                flag()
            else:
                self._txn(flag)
        except (SafError, sqlite3.Error):
            pass        # refused again at the next read anyway
        flagged = dict(fields)
        flagged["state"] = "corrupt"
        flagged["last_error"] = why
        return flagged

    # writes
    def _write(self, fn, *args):
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:
            fault = self.guard.fault(exc, _queue_fault)
            if fault is not None:
                raise fault
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise SafError("offline queue: write failed (%s): check the SD card" % exc)

    def _txn(self, body, keeps_totals=False):
        if not keeps_totals:
            self._open = None
        return self._txn_run(body)

    def _txn_run(self, body):
        def run():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                result = body()
                self.db.execute("COMMIT")
            except Exception as exc:
                if self.db.in_transaction and not isinstance(exc, sqlite3.Error):
                    self.db.execute("ROLLBACK")
                raise
            return result
        return self._write(run)

    def _insert(self, rec, payload):
        cur = self.db.execute(
            "INSERT INTO saf (kind, state, amount, currency, stan, tid, created_utc, attempts)"
            " VALUES (?, 'pending', ?, ?, ?, ?, ?, ?)",
            (rec["kind"], rec["amount"], rec["currency"], rec["stan"], rec["tid"],
             rec["created_utc"], rec.get("attempts", 0)))
        rec_id = cur.lastrowid
        nonce, ct = _seal(self.key, payload, _aad(rec, rec_id))
        self.db.execute("UPDATE saf SET nonce=?, ciphertext=? WHERE id=?", (nonce, ct, rec_id))
        self._reseal(rec_id)
        return rec_id

    @guarded
    def add(self, kind, stan, amount, currency, payload, created_utc=None):
        """Queue an offline approval (advice) or a reversal; on disk when this returns."""
        if kind not in KINDS:
            raise ValueError("saf: kind must be one of %s, not %r" % (KINDS, kind))
        if not isinstance(amount, int) or amount < 0:
            raise ValueError("saf: amount must be a whole number of minor units")
        rec = {"kind": kind, "stan": str(stan), "amount": amount, "currency": str(currency),
               "tid": self.tid, "created_utc": created_utc or _utc(self.clock())}
        _aad(rec, 0)        # reject bad clear fields before touching the disk
        rec_id = self._txn(lambda: self._insert(rec, payload), keeps_totals=True)
        if self._open is not None:
            self._open[rec_id] = (kind, rec["currency"], amount)
        return rec_id

    def _update(self, rec_id, sql, args=(), states=None):
        rec = self.get(rec_id)
        if rec is None:
            raise KeyError("offline queue has no record %r" % rec_id)
        if states is not None and rec["state"] not in states:
            raise SafError("offline queue record %d is %s, not %s"
                           % (rec_id, rec["state"], " or ".join(states)))
        def body():
            self.db.execute("UPDATE saf SET %s WHERE id=?" % sql, tuple(args) + (rec_id,))
            self._reseal(rec_id)
        self._txn(body)

    @guarded
    def mark_sent(self, rec_id):
        """The advice is on the wire: the next send of it uses the repeat MTI."""
        self._update(rec_id, "state='sent', attempts=attempts+1", (), ("pending", "sent"))

    @guarded
    def mark_sent_many(self, ids):
        """mark_sent for a window of records in one durable transaction."""
        def body():
            for rec_id in ids:
                self.db.execute("UPDATE saf SET state='sent', attempts=attempts+1 WHERE id=? "
                                "AND state IN ('pending', 'sent')", (rec_id,))
                self._reseal(rec_id)
        self._txn(body, keeps_totals=True)          # still to upload, the same amounts

    @guarded
    def ack_many(self, ids):
        """ack for every record the host answered in one pass of the loop, in one
        durable transaction (an ack lost to a crash only makes the host see a repeat,
        which it answers without booking twice)."""
        closed = _utc(self.clock())

        def body():
            for rec_id in ids:
                self.db.execute("UPDATE saf SET state='acked', nonce=NULL, ciphertext=NULL, "
                                "closed_utc=? WHERE id=? AND state IN ('pending', 'sent')",
                                (closed, rec_id))
                self._reseal(rec_id)
        self._txn(body, keeps_totals=True)
        if self._open is not None:
            for rec_id in ids:
                self._open.pop(rec_id, None)

    @guarded
    def note_error(self, rec_id, error):
        """The upload failed (no answer, link down): kept for the next try."""
        self._update(rec_id, "last_error=?", (str(error),))

    @guarded
    def ack(self, rec_id):
        """The host has it: drop the card data, keep a tombstone for the batch report."""
        self._update(rec_id, "state='acked', nonce=NULL, ciphertext=NULL, closed_utc=?",
                     (_utc(self.clock()),), ("pending", "sent"))

    @guarded
    def declined(self, rec_id, rc):
        """The host declined an approval already given offline: the merchant must see it."""
        self._update(rec_id, "state='declined_after_upload', rc=?, last_error=?",
                     (str(rc), "declined by host (%s)" % rc), ("pending", "sent"))

    @guarded
    def cancel(self, rec_id, why, operator=""):
        """Withdraw a record the host has never seen (state pending, never sent).

        For an approval a crash kept off the screen, or a sale voided before upload.
        The card data goes; the tombstone keeps why and who.
        """
        rec = self.get(rec_id)
        if rec is not None and (rec["attempts"] or rec["state"] != "pending"):
            raise SafError("offline queue record %d was already sent (%s): it must be "
                           "reversed at the host, not withdrawn" % (rec_id, rec["state"]))
        self._update(rec_id, "state='cancelled', nonce=NULL, ciphertext=NULL, last_error=?, "
                     "closed_by=?, closed_utc=?", (str(why), str(operator or "terminal"),
                                                   _utc(self.clock())), ("pending",))

    @guarded
    def acknowledge_by_supervisor(self, rec_id, operator):
        """A supervisor has seen a declined or corrupt record: it leaves the list.

        A declined record's card data goes; a corrupt record's ciphertext stays as
        evidence (it cannot be read anyway).
        """
        if not operator:
            raise ValueError("saf: the supervisor's id is required")
        rec = self.get(rec_id)
        if rec is not None and rec["state"] == "declined_after_upload":
            self._update(rec_id, "closed_by=?, closed_utc=?, nonce=NULL, ciphertext=NULL",
                         (str(operator), _utc(self.clock())))
        else:
            self._update(rec_id, "closed_by=?, closed_utc=?",
                         (str(operator), _utc(self.clock())), ("corrupt",))

    # reads
    def _rows(self, where="", args=(), order="id", states=None):
        """Rows, each checked against its MAC (a failing one comes back flagged corrupt,
        and is left out when states does not include corrupt)."""
        cur = self.db.execute("SELECT %s, mac FROM saf %s ORDER BY %s"
                              % (", ".join(_MACCED), where, order), args)
        out = []
        for row in cur.fetchall():
            fields = self._verified(dict(zip(_MACCED, row[:-1])), row[-1])
            if states is not None and fields["state"] not in states:
                continue
            out.append({k: fields[k] for k in _CLEAR})
        return out

    @guarded
    def get(self, rec_id):
        rows = self._rows("WHERE id=?", (rec_id,))
        return rows[0] if rows else None

    @guarded
    def pending(self, limit=None):
        """What to upload, in order: reversals first, then advices, oldest first."""
        order = "CASE kind WHEN 'reversal' THEN 0 ELSE 1 END, created_utc, id"
        if limit is not None:
            order += " LIMIT %d" % int(limit)
        return self._rows("WHERE state IN ('pending', 'sent')", (), order,
                          states=("pending", "sent"))

    @guarded
    def outstanding(self):
        """What the merchant must see: still to upload, declined, or unreadable."""
        return self._rows("WHERE state IN ('pending', 'sent') OR "
                          "(state IN ('declined_after_upload', 'corrupt') AND closed_by='')")

    @guarded
    def find(self, kind, stan, tid=None):
        """The record of this kind for this STAN (and TID, default this terminal's)."""
        rows = self._rows("WHERE kind=? AND stan=? AND tid=?",
                          (kind, str(stan), self.tid if tid is None else tid))
        return rows[-1] if rows else None

    @guarded
    def records(self):
        """Every record, tombstones included."""
        return self._rows()

    @guarded
    def load(self, rec_id):
        raw = self._raw(rec_id)
        if raw is None:
            raise KeyError("offline queue has no record %r" % rec_id)
        rec = self._verified(raw[0], raw[1])
        nonce, ct = rec["nonce"], rec["ciphertext"]
        if rec["state"] == "corrupt":
            raise CorruptRecord("offline queue record %d is corrupt: it will not be sent; "
                                "report it to the acquirer" % rec_id)
        if nonce is None and ct is None and (rec["state"] in ("acked", "cancelled")
                                             or rec["closed_by"]):
            raise KeyError("offline queue record %d was closed: its card data is deleted"
                           % rec_id)
        payload = _open(self.key, nonce, ct, _aad(rec, rec_id))
        if payload is None:
            try:
                def flag():
                    self.db.execute("UPDATE saf SET state='corrupt', last_error=? WHERE id=?",
                                    ("integrity check failed", rec_id))
                    self._reseal(rec_id)
                self._txn(flag)
            except SafError:
                pass        # flagging can wait; it is refused again next time anyway
            raise CorruptRecord("offline queue record %d failed its integrity check: it is "
                                "kept and will not be sent; report it to the acquirer" % rec_id)
        return payload

    @guarded
    def totals(self, kind=None):
        """{currency: (count, amount)} still to upload (of one kind, or all)."""
        # from the rows themselves, each checked when read: a flipped amount never
        # reaches a total
        if self._open is None:
            rows = self._rows("WHERE state IN ('pending', 'sent')", (),
                              states=("pending", "sent"))
            self._open = dict((r["id"], (r["kind"], r["currency"], r["amount"])) for r in rows)
        out = {}
        for k, currency, amount in self._open.values():
            if kind is None or k == kind:
                n, a = out.get(currency, (0, 0))
                out[currency] = (n + 1, a + amount)
        return out

    @guarded
    def oldest_age_s(self, now=None):
        """Seconds since the oldest record still to upload was made; None if none."""
        row = self.db.execute("SELECT MIN(created_utc) FROM saf WHERE state IN "
                              "('pending', 'sent')").fetchone()
        if row[0] is None:
            return None
        return max(0, int((self.clock() if now is None else now) - _epoch(row[0])))

    # moving the queue off a broken terminal
    @guarded
    def origins(self):
        """The terminal IDs of the records still to upload, this terminal's first: one
        export file each (an import takes only records of the file's own TID)."""
        tids = sorted(set(r["tid"] for r in self.pending()))
        return sorted(tids, key=lambda tid: tid != self.tid)

    @guarded
    def export(self, path, signing_key, export_key, target_tid, origin_tid=None,
               valid_s=EXPORT_VALID_S, clock_synced=None):
        """Write every record of origin_tid (default: this terminal's) still to upload,
        for target_tid alone to import, once, within valid_s seconds; returns how many.

        export_key is the 32-byte transfer key the merchant's terminals share (not the
        device data key, which never leaves this terminal). The signed body carries a
        random export ID, the target's TID and the expiry (by this terminal's UTC
        clock; clock_synced says whether that clock was synchronised). Records stay
        queued here.
        """
        export_key = _check_key(export_key, "the export key")
        target = str(target_tid)
        origin = self.tid if origin_tid is None else str(origin_tid)
        if not _valid_tid(target):
            raise ExportError("the target terminal ID %r is not 8 letters or digits: name the "
                              "terminal that will import the queue" % target)
        if target == self.tid:
            raise ExportError("the target %s is this terminal: name the terminal that will "
                              "import the queue" % target)
        if not isinstance(valid_s, int) or valid_s <= 0:
            raise ValueError("saf: valid_s must be a positive number of seconds")
        if isinstance(signing_key, (bytes, bytearray)):
            signing_key = Ed25519PrivateKey.from_private_bytes(bytes(signing_key))
        export_id = os.urandom(EXPORT_ID_BYTES).hex()
        now = int(self.clock())
        records = []
        for rec in self.pending():
            if rec["tid"] != origin:
                continue
            payload = self.load(rec["id"])      # a corrupt record stops the export
            clear = {k: rec[k] for k in ("kind", "stan", "amount", "currency", "tid",
                                         "created_utc", "attempts")}
            nonce, ct = _seal(export_key, payload, _export_aad(clear, export_id))
            clear["nonce"] = base64.b64encode(nonce).decode()
            clear["ciphertext"] = base64.b64encode(ct).decode()
            records.append(clear)
        body = json.dumps({"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                           "export_id": export_id, "tid": origin, "exported_by": self.tid,
                           "target_tid": target, "created_utc": _utc(now),
                           "expires_utc": _utc(now + valid_s), "clock_synced": clock_synced,
                           "records": records},
                          sort_keys=True, separators=(",", ":"))
        sig = signing_key.sign(body.encode())
        data = json.dumps({"signed": body, "ed25519": sig.hex()}).encode() + b"\n"
        tmp, folder = _write_atomic(path, data)
        os.replace(tmp, path)
        _fsync_dir(folder)
        return len(records)

    def _checked_export(self, path, verify_key, export_key):
        """The export file's signed body, every check but the replay one passed, with its
        records opened: (doc, [(clear, payload)]). Raises ExportError naming the problem
        and the way out; nothing is written."""
        export_key = _check_key(export_key, "the export key")
        if isinstance(verify_key, (bytes, bytearray)):
            verify_key = Ed25519PublicKey.from_public_bytes(bytes(verify_key))
        name = os.path.basename(path)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise ExportError("%s cannot be read (%s): nothing was imported; check the file's "
                              "path" % (path, exc.strerror or exc))
        try:
            outer = json.loads(raw)
            body, sig = outer["signed"], bytes.fromhex(outer["ed25519"])
            verify_key.verify(sig, body.encode())
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except (ValueError, KeyError, TypeError, AttributeError, InvalidSignature):
            raise ExportError("%s is not a queue export signed with this merchant's export key "
                              "(altered, damaged, or another merchant's): nothing was imported; "
                              "copy the file again from the old terminal's export folder, or "
                              "load this merchant's export keys" % name)
        version = doc.get("version")
        if doc.get("format") != EXPORT_FORMAT:
            raise ExportError("%s is not a queue export: nothing was imported" % name)
        if version == 1:
            raise ExportError("%s is an export without a target terminal or expiry (version 1, "
                              "an older handpos): nothing was imported; export the queue again "
                              "on %s with this release" % (name, doc.get("tid") or "the old terminal"))
        if version != EXPORT_VERSION:
            raise ExportError("%s was written by a newer handpos (export version %r): nothing "
                              "was imported; update this terminal's software first"
                              % (name, version))
        try:
            export_id, origin = str(doc["export_id"]), str(doc["tid"])
            by, target = str(doc.get("exported_by") or origin), str(doc["target_tid"])
            made, expires = _epoch(doc["created_utc"]), _epoch(doc["expires_utc"])
            records = list(doc["records"])
        except (KeyError, TypeError, ValueError):
            raise ExportError("%s is a damaged queue export (a field is missing): nothing was "
                              "imported; export the queue again on the old terminal" % name)
        if target != self.tid:
            raise ExportError("%s is for terminal %s, and this is %s: nothing was imported; "
                              "import it on %s, or export the queue again on %s naming %s"
                              % (name, target, self.tid or "a terminal without an ID", target,
                                 by, self.tid or "this terminal"))
        self._refuse_replay(name, export_id)
        now = self.clock()
        if made > now + EXPORT_CLOCK_SLACK_S:
            raise ExportError("%s was made at %s, later than this terminal's clock (%s): "
                              "nothing was imported; set this terminal's clock (connect it to "
                              "a network, or timedatectl set-time), then import again"
                              % (name, doc["created_utc"], _utc(now)))
        if now > expires:
            unsynced = (" (%s's clock was not synchronised: check its time first)" % by
                        if doc.get("clock_synced") is False else "")
            raise ExportError("%s expired at %s (made %s on %s, valid %d h): nothing was "
                              "imported; export the queue again on %s and import the new "
                              "file%s" % (name, doc["expires_utc"], doc["created_utc"], by,
                                          (expires - made) // 3600, by, unsynced))
        batch = []
        for clear in records:
            try:
                rec_tid, stan = clear["tid"], str(clear["stan"])
                if rec_tid != origin:
                    raise ExportError(
                        "%s holds a record of terminal %s (STAN %s) in an export of %s: "
                        "nothing was imported; the file is not a sound export, export the "
                        "queue again on %s" % (name, rec_tid, stan, origin, by))
                if clear["kind"] not in KINDS or not isinstance(clear["amount"], int) \
                        or clear["amount"] < 0 or not isinstance(clear.get("attempts", 0), int):
                    raise ValueError("bad record")
                payload = _open(export_key, base64.b64decode(clear["nonce"]),
                                base64.b64decode(clear["ciphertext"]),
                                _export_aad(clear, export_id))
            except (KeyError, TypeError, ValueError):
                payload = None
            if payload is None:
                raise ExportError("%s: a record does not open under this terminal's export key "
                                  "(STAN %s): nothing was imported; load this merchant's export "
                                  "key" % (name, clear.get("stan") if isinstance(clear, dict)
                                           else "?"))
            batch.append((clear, payload))
        return doc, batch

    def _refuse_replay(self, name, export_id):
        row = self.db.execute("SELECT source_tid, imported_utc, records, added FROM imports "
                              "WHERE export_id=?", (export_id,)).fetchone()
        if row is not None:
            raise ExportError("%s was already imported here at %s (export %s of %s, %d "
                              "records, %d added): nothing was imported again; its records "
                              "are in this queue, nothing to do"
                              % (name, row[1], export_id[:8], row[0], row[2], row[3]))

    @guarded
    def import_export(self, path, verify_key, export_key):
        """Queue the records of a signed export made for this terminal, once.

        Refused, with one line naming the problem and the way out, and nothing added:
        a bad signature, another target, an export already imported here (its ID is
        kept in the imports table, in the same transaction as its records), an expired
        file (or one made after this terminal's clock), a record of another TID than
        the file's. Records already here (same TID, STAN and kind) are skipped.
        Returns {export_id, tid, records, added, created_utc, expires_utc}.
        """
        doc, batch = self._checked_export(path, verify_key, export_key)
        name = os.path.basename(path)
        export_id = str(doc["export_id"])
        now = _utc(self.clock())

        def body_txn():
            self._refuse_replay(name, export_id)      # another import since the check
            added = 0
            for clear, payload in batch:
                seen = self.db.execute("SELECT 1 FROM saf WHERE tid=? AND stan=? AND kind=?",
                                       (clear["tid"], clear["stan"], clear["kind"])).fetchone()
                if not seen:
                    # an export of an older release: its advices without track data
                    from firmware.payments.hostmsg import upgrade_payload
                    self._insert(clear, upgrade_payload(payload)[0])
                    added += 1
            self.db.execute("INSERT INTO imports (export_id, source_tid, created_utc, "
                            "imported_utc, records, added) VALUES (?, ?, ?, ?, ?, ?)",
                            (export_id, str(doc["tid"]), str(doc["created_utc"]), now,
                             len(batch), added))
            return added
        added = self._txn(body_txn)
        return {"export_id": export_id, "tid": str(doc["tid"]), "records": len(batch),
                "added": added, "created_utc": str(doc["created_utc"]),
                "expires_utc": str(doc["expires_utc"])}

    def import_file(self, path, verify_key, export_key):
        """import_export, returning how many records were added."""
        return self.import_export(path, verify_key, export_key)["added"]

    @guarded
    def imports(self):
        """The exports imported here, oldest first: dicts of export_id, source_tid,
        created_utc, imported_utc, records, added."""
        cols = ("export_id", "source_tid", "created_utc", "imported_utc", "records", "added")
        return [dict(zip(cols, row)) for row in self.db.execute(
            "SELECT %s FROM imports ORDER BY imported_utc, export_id" % ", ".join(cols))]

    @guarded
    def probe(self):
        probe(self.db)

    @guarded
    def quick_check(self, max_ms=2000):
        from drivers.sqlite_durable import quick_check
        return quick_check(self.db, max_ms)

    @guarded
    def verify_recent(self, n=200):
        """Ids among the last n rows whose MAC failed (each is flagged corrupt)."""
        bad = []
        for row in self.db.execute("SELECT %s, mac FROM saf ORDER BY id DESC LIMIT ?"
                                   % ", ".join(_MACCED), (n,)).fetchall():
            fields = dict(zip(_MACCED, row[:-1]))
            if not mac_ok(self.mac_key, "saf", fields, row[-1], _MAC_DEFAULTS):
                self._verified(fields, row[-1])
                bad.append(fields["id"])
        return sorted(bad)

    def close(self):
        self.db.close()
