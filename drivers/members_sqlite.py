"""Members and their points on the device: members.db in the data folder (SQLite, WAL,
synchronous=FULL, secure_delete on), docs/members.md.

Tables:
  members  number (issued by the terminal, firmware/retail/members.py), phone_key (HMAC-
           SHA256 of the normalised phone under a lookup key: how a typed phone finds
           its member without the phone being stored in clear), phone and name
           (AES-256-GCM, each its own random nonce, the associated data naming the
           member and the field, so a ciphertext moved to another row or field does
           not open), tier, points (the balance), consent_utc, enrolled_utc
  ledger   every change of a balance: member, record (the journal record's id), kind
           (earn | redeem | refund | void | adjust), points (signed), utc; one row per
           (record, kind), so a sale's points are never applied twice (a crash and the
           catch-up at the next start, a void of a voided sale)
  retired  the numbers of erased members (never issued again; a past sale that names
           one points to no one)
  flags    rows that failed their integrity check, for support

Keys: three, each derived from the device data key (HMAC-SHA256 as a KDF, as
drivers/mfa_store.py and drivers/sqlite_durable.mac_key do): the field key (AES-GCM),
the lookup key (phone hashes) and the record MAC key. Nothing in this file opens
without the device.

Integrity: every row carries a MAC (drivers/sqlite_durable.record_mac), checked when it
is read and before it is rewritten; a row that fails is never acted on (MemberDamaged:
the sale goes on without the member) and is listed in flags.

Erasure: the member's row and ledger go in one transaction; secure_delete overwrites
the freed bytes, and a WAL checkpoint (TRUNCATE) puts the pages back in the database
and empties the -wal file, so neither file keeps the phone's or the name's bytes (nor
their ciphertext, nor the phone's hash). The number is kept in retired.

Every error of the medium leaves as a StorageFault of the part "members".
"""
import hashlib
import hmac
import os
import time

from drivers.sqlite_durable import Guard, flag_row, guarded, mac_ok, open_schema, probe, \
    quick_check, record_mac, transaction
from firmware.core.store import StorageFault
from firmware.retail import members as rules

PART = "members"
FILE = "members.db"
SCHEMA_VERSION = 1
KINDS = ("earn", "redeem", "refund", "void", "adjust")
SCHEMA = """
CREATE TABLE IF NOT EXISTS members (
    number TEXT PRIMARY KEY, phone_key BLOB NOT NULL UNIQUE, phone BLOB NOT NULL,
    name BLOB NOT NULL, tier TEXT NOT NULL, points INTEGER NOT NULL,
    consent_utc TEXT NOT NULL, enrolled_utc TEXT NOT NULL, mac BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, member TEXT NOT NULL, record INTEGER NOT NULL,
    kind TEXT NOT NULL, points INTEGER NOT NULL, utc TEXT NOT NULL, mac BLOB,
    UNIQUE (record, kind));
CREATE INDEX IF NOT EXISTS ledger_member ON ledger(member, id);
CREATE TABLE IF NOT EXISTS retired (number TEXT PRIMARY KEY, utc TEXT NOT NULL, mac BLOB);
CREATE TABLE IF NOT EXISTS flags (
    tbl TEXT NOT NULL, row TEXT NOT NULL, utc TEXT NOT NULL, what TEXT NOT NULL,
    PRIMARY KEY (tbl, row));
"""
MEMBER_COLS = ("number", "phone_key", "phone", "name", "tier", "points", "consent_utc",
               "enrolled_utc")
LEDGER_COLS = ("id", "member", "record", "kind", "points", "utc")
NONCE = 12


class MembersOpenError(StorageFault):
    """members.db cannot be opened (a StorageFault: the terminal shows it)."""


class MemberError(Exception):
    """A change refused: what is "exists" (that phone is a member already), "unknown"
    (no such member), "tier", "kind" or "retired"."""

    def __init__(self, what, detail=""):
        Exception.__init__(self, "%s %s" % (what, detail))
        self.what = what
        self.detail = detail


class MemberDamaged(Exception):
    """A member's row (or its ledger) failed its integrity check: flagged, not used."""

    def __init__(self, number, detail=""):
        Exception.__init__(self, "member %s: %s" % (number, detail))
        self.number = number


def _utc():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def derive(data_key, purpose):
    """A key of its own for purpose, from the device data key."""
    return hmac.new(bytes(data_key), b"handpos members key v1|" + purpose.encode(),
                    hashlib.sha256).digest()


class SQLiteMembers:
    fault_class = StorageFault
    durable = True

    def __init__(self, path, data_key, on_fault=None, now=None, random_bytes=None):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from drivers.sqlite_durable import mac_key
        self.path = path
        self.now = now or _utc
        self.random_bytes = random_bytes or os.urandom
        self._aead = AESGCM(derive(data_key, "fields"))
        self._lookup = derive(data_key, "phone lookup")
        self.key = mac_key(data_key, PART)
        self.guard = Guard(PART, on_fault, path)
        # freed bytes are overwritten: an erased member's ciphertext does not stay
        # in a free page or a cell's old place
        self.db, self._flagged = open_schema(path, self.guard, SCHEMA, SCHEMA_VERSION,
                                             MembersOpenError, PART, ("PRAGMA secure_delete=ON",))

    # -- keys and fields ---------------------------------------------------------------
    def phone_key(self, digits):
        return hmac.new(self._lookup, b"phone|" + digits.encode(), hashlib.sha256).digest()

    def _seal(self, number, field, text):
        nonce = self.random_bytes(NONCE)
        return nonce + self._aead.encrypt(nonce, text.encode("utf-8"), self._aad(number, field))

    @staticmethod
    def _aad(number, field):
        return ("handpos member|%s|%s" % (number, field)).encode()

    def _open(self, number, field, blob):
        from cryptography.exceptions import InvalidTag
        blob = bytes(blob)
        try:
            return self._aead.decrypt(blob[:NONCE], blob[NONCE:],
                                      self._aad(number, field)).decode("utf-8")
        except (InvalidTag, ValueError, UnicodeError):
            self._damaged("members", number, "its %s does not open" % field)

    # -- integrity -----------------------------------------------------------------------
    def _mac(self, table, fields):
        return record_mac(self.key, table, fields)

    def _flag(self, table, row, what):
        flag_row(self.db, self._flagged, table, row, what, _utc())

    def _damaged(self, table, row, what="its record failed its integrity check"):
        self._flag(table, row, what)
        raise MemberDamaged(row, "%s (%s)" % (what, table))

    def damaged(self):
        """[(table, row, utc, what)] of the rows that failed their check: for support."""
        return self.db.execute("SELECT tbl, row, utc, what FROM flags ORDER BY tbl, row").fetchall()

    def _row(self, row):
        rec = dict(zip(MEMBER_COLS, row[:-1]))
        rec["phone_key"] = bytes(rec["phone_key"])
        rec["phone"] = bytes(rec["phone"])
        rec["name"] = bytes(rec["name"])
        if not mac_ok(self.key, "members", rec, row[-1]):
            self._damaged("members", rec["number"])
        return rec

    def _member(self, rec):
        """The member a checked row stands for, phone and name opened."""
        number = rec["number"]
        return {"number": number, "tier": rec["tier"], "points": rec["points"],
                "phone": self._open(number, "phone", rec["phone"]),
                "name": self._open(number, "name", rec["name"]),
                "consent_utc": rec["consent_utc"], "enrolled_utc": rec["enrolled_utc"]}

    def _write(self, rec):
        values = dict(rec)
        self.db.execute("INSERT OR REPLACE INTO members VALUES (?,?,?,?,?,?,?,?,?)",
                        tuple(values[k] for k in MEMBER_COLS) + (self._mac("members", values),))

    def _raw(self, number):
        row = self.db.execute("SELECT %s, mac FROM members WHERE number=?"
                              % ", ".join(MEMBER_COLS), (number,)).fetchone()
        return self._row(row) if row is not None else None

    @guarded
    def probe(self):
        probe(self.db)

    def selftest(self, max_ms=2000):
        return quick_check(self.db, max_ms)

    def quick_check(self, max_ms=2000):
        return quick_check(self.db, max_ms)

    @guarded
    def verify_recent(self, n=200):
        """Numbers of the members and ledger ids (of the latest n each) that fail their MAC."""
        bad = []
        for row in self.db.execute("SELECT %s, mac FROM members LIMIT ?" % ", ".join(MEMBER_COLS),
                                   (n,)).fetchall():
            try:
                self._row(row)
            except MemberDamaged:
                bad.append(row[0])
        for row in self.db.execute("SELECT %s, mac FROM ledger ORDER BY id DESC LIMIT ?"
                                   % ", ".join(LEDGER_COLS), (n,)).fetchall():
            rec = dict(zip(LEDGER_COLS, row[:-1]))
            if not mac_ok(self.key, "ledger", rec, row[-1]):
                self._flag("ledger", rec["id"], "MAC failed")
                bad.append("ledger %d" % rec["id"])
        return bad

    # -- members -------------------------------------------------------------------------
    @guarded
    def enrol(self, phone, name="", tier="basic", consent_utc=None):
        """A new member for phone (normalised digits) and name (may be ""); the member
        dict. MemberError("exists") when the phone is a member already."""
        if tier not in rules.TIERS:
            raise MemberError("tier", tier)
        key = self.phone_key(phone)
        utc = self.now()

        def body():
            if self.db.execute("SELECT 1 FROM members WHERE phone_key=?", (key,)).fetchone():
                raise MemberError("exists")
            while True:
                number = rules.new_number(self.random_bytes)
                if not self.db.execute("SELECT 1 FROM members WHERE number=? UNION ALL "
                                       "SELECT 1 FROM retired WHERE number=?",
                                       (number, number)).fetchone():
                    break
            rec = {"number": number, "phone_key": key, "phone": self._seal(number, "phone", phone),
                   "name": self._seal(number, "name", name or ""), "tier": tier, "points": 0,
                   "consent_utc": consent_utc or utc, "enrolled_utc": utc}
            self._write(rec)
            return number
        number = transaction(self.db, body)
        return self.get(number)

    @guarded
    def get(self, number):
        """The member (phone and name opened), or None; MemberDamaged for a row that
        fails its check."""
        rec = self._raw(number)
        return self._member(rec) if rec is not None else None

    @guarded
    def find_by_phone(self, phone):
        row = self.db.execute("SELECT %s, mac FROM members WHERE phone_key=?"
                              % ", ".join(MEMBER_COLS), (self.phone_key(phone),)).fetchone()
        return self._member(self._row(row)) if row is not None else None

    @guarded
    def retired(self, number):
        """True when number was a member's and was erased."""
        return self.db.execute("SELECT 1 FROM retired WHERE number=?", (number,)).fetchone() \
            is not None

    @guarded
    def count(self):
        return self.db.execute("SELECT COUNT(*) FROM members").fetchone()[0]

    @guarded
    def set_tier(self, number, tier):
        if tier not in rules.TIERS:
            raise MemberError("tier", tier)

        def body():
            rec = self._raw(number)
            if rec is None:
                raise MemberError("unknown", number)
            rec["tier"] = tier
            self._write(rec)
        transaction(self.db, body)

    # -- points --------------------------------------------------------------------------
    @guarded
    def applied(self, record, kind):
        """The points a (record, kind) entry moved, or None when there is none."""
        row = self.db.execute("SELECT %s, mac FROM ledger WHERE record=? AND kind=?"
                              % ", ".join(LEDGER_COLS), (record, kind)).fetchone()
        if row is None:
            return None
        rec = dict(zip(LEDGER_COLS, row[:-1]))
        if not mac_ok(self.key, "ledger", rec, row[-1]):
            self._damaged("ledger", rec["id"])
        return rec["points"]

    @guarded
    def apply(self, number, record, kind, points, utc=None):
        """points (signed) onto number's balance, with its ledger row, in one
        transaction: the new balance, or None when (record, kind) was applied already
        (nothing changes then). MemberError("unknown") for a member that is not (an
        erased one), MemberDamaged for a row that fails its check."""
        if kind not in KINDS:
            raise MemberError("kind", kind)
        utc = utc or self.now()

        def body():
            if self.db.execute("SELECT 1 FROM ledger WHERE record=? AND kind=?",
                               (record, kind)).fetchone():
                return None
            rec = self._raw(number)
            if rec is None:
                raise MemberError("retired" if self.retired(number) else "unknown", number)
            cur = self.db.execute("INSERT INTO ledger (member, record, kind, points, utc) "
                                  "VALUES (?,?,?,?,?)", (number, record, kind, points, utc))
            entry = {"id": cur.lastrowid, "member": number, "record": record, "kind": kind,
                     "points": points, "utc": utc}
            self.db.execute("UPDATE ledger SET mac=? WHERE id=?",
                            (self._mac("ledger", entry), entry["id"]))
            rec["points"] += points
            self._write(rec)
            return rec["points"]
        return transaction(self.db, body)

    @guarded
    def ledger(self, number):
        """[{id, member, record, kind, points, utc}] of number, oldest first (checked)."""
        out = []
        for row in self.db.execute("SELECT %s, mac FROM ledger WHERE member=? ORDER BY id"
                                   % ", ".join(LEDGER_COLS), (number,)):
            rec = dict(zip(LEDGER_COLS, row[:-1]))
            if not mac_ok(self.key, "ledger", rec, row[-1]):
                self._damaged("ledger", rec["id"])
            out.append(rec)
        return out

    # -- erasure -------------------------------------------------------------------------
    @guarded
    def erase(self, number):
        """The member's row and ledger gone, the number retired; the freed bytes
        overwritten and the WAL emptied, so nothing of the phone or the name is left in
        members.db or members.db-wal. False when there was no such member."""
        def body():
            if self.db.execute("SELECT 1 FROM members WHERE number=?", (number,)).fetchone() is None:
                return False
            self.db.execute("DELETE FROM members WHERE number=?", (number,))
            self.db.execute("DELETE FROM ledger WHERE member=?", (number,))
            self.db.execute("DELETE FROM flags WHERE tbl='members' AND row=?", (number,))
            utc = self.now()
            self.db.execute("INSERT OR REPLACE INTO retired VALUES (?,?,?)",
                            (number, utc, self._mac("retired", {"number": number, "utc": utc})))
            return True
        done = transaction(self.db, body)
        if done:
            self.scrub()
        return done

    @guarded
    def scrub(self):
        """The WAL's pages into the database and the -wal file emptied: the old page
        images (with an erased member's cells) are nowhere but overwritten."""
        busy, logged, moved = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise StorageFault("io", PART, "the WAL could not be emptied (another reader); "
                               "the erasure is done, its bytes leave at the next checkpoint")
        return logged, moved

    def close(self):
        self.db.close()


def open_members(data_dir, data_key, on_fault=None, now=None, random_bytes=None):
    """members.db of a data folder, as the terminal and the tools open it."""
    return SQLiteMembers(os.path.join(data_dir, FILE), data_key, on_fault=on_fault, now=now,
                         random_bytes=random_bytes)
