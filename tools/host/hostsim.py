"""The acquirer host simulator: an ISO 8583 switch on loopback for the terminal to talk to.

It speaks the terminal's profile (drivers/iso8583_spec.py, docs/host-protocol.md):
frames with a 2-byte big-endian length, TLS with a test CA it makes on first run.
Outcomes are deterministic, chosen by the last two digits of the amount (DE4), so a
tester can make any case happen from the keypad:

    amount ends in   response                delivery
    .05              05 do not honour        at once
    .51              51 insufficient funds   at once
    .54              54 expired card         at once
    .55              55 incorrect PIN        at once
    .91              91 issuer unavailable   at once
    .97              00 approved, booked     after --slow-ms (default 35 s: past the
                                             terminal's timeout, so it must reverse)
    .98              00 approved, booked     a garbled reply (undecodable)
    .99              00 approved, booked     no reply at all
    .93              00 approved, booked     at once, but left out of the host's batch
                                             totals until a batch upload (0320) brings
                                             it: the settlement is out of balance (95)
    anything else    00 approved, booked     at once, with a 6-character auth code
                                             (DE38) and an RRN (DE37)

A PIN block is checked first. A TDES one (DE52) is decrypted with the DUKPT key
derived from the BDK and the KSN in DE53 (ANSI X9.24-1) and decoded as ISO 9564
format 0; an AES one (DE61) is deciphered with the AES DUKPT PIN key derived from the
AES BDK and the 12-byte KSN in DE53 (ANSI X9.24-3) and decoded as ISO 9564 format 4.
The right PIN for every test card is 1234, anything else is answered 55.

.97, .98 and .99 book the approval although the terminal never gets a usable answer:
that is the case a reversal exists for, and the ledger shows whether it arrived.

Advices (0220, repeated as 0221) report payments the terminal approved offline. The
host can no longer stop them, only accept them or decline them after upload, and it
answers every advice at once (no slow, garbled or silent delivery: a store-and-forward
queue must be able to empty):

    amount ends in   0230 response                           booked
    .05              05 declined after upload                no
    .51              51 declined after upload                no
    anything else    00 accepted, with an RRN (DE37: the     yes; .54 too: the terminal
                     terminal's or a new one), DE38 echoed   judged the expiry offline

A chip advice's DE55 carries the card's TC: it is checked like an online ARQC, and a
wrong cryptogram (or an AAC: the card declined) is declined 05 after upload. An advice
carries the card as DE2 PAN and DE14 expiry and the offline approval code in DE38:
one with track data (DE35, DE45), without DE2 or DE38, or with a DE39 is answered 30
(format error) and not booked.

A card request (0100, 0200 other than a void by RRN) carries the card once: DE35 (a
stripe's track 2, or a chip's track 2 equivalent) or DE2, never both and never
neither; anything else is answered 30. A reversal (0400/0420 and repeats) is always
applied and answered 00, and its reason (DE39: 17, 20, 22 or 68) is kept with it in
the ledger; one without a reason, or with another code, is noted as a breach of the
profile in the exchange's note ("profile:").

A request whose reversal arrived first (0400/0420 naming it in DE90, e.g. because the
request was held up on the way) is answered LATE_ORIGINAL (12, invalid transaction)
and never booked: the terminal has already given it up.

Settlement (docs/host-protocol.md section 10). The host keeps each terminal's batch
totals from what it booked: approved sales and refunds (0200, 0220, 0320), neither
reversed nor voided, not yet settled (and, when the 0500 repeats the batch it closed
last, what that closing settled: a terminal that lost the 0510 asks again). A 0500
920000 whose DE63 agrees is answered 00 and the batch closed; otherwise 95, and the
terminal uploads the batch: each 0320 names its original in DE60 (MTI, STAN, DE7) and
is booked at most once (an original the host has is not booked again; one it lacked
is). 960000 closes the batch with every unsettled booking. For tests and the lab:
disagree() (or --disagree N) answers the next 920000s 95 whatever the totals;
fail_settlement() (or --settle-error CODE) answers the next 0500 with an error code and
closes nothing; delay_answers() holds a message type's answers (late, after the
terminal gave up); reorder_uploads() answers 0320s in reverse order.

The ledger (SQLite, DIR/ledger.sqlite) keeps every request and response (card data
masked), the bookings, reversals and settlements. A request seen before (the same
TID + STAN + DE7 and message class, or a repeat MTI such as 0201/0221/0401/0421 for a
TID + STAN already answered) is answered with the original response and never booked
twice.
"""
import argparse
import asyncio
import concurrent.futures
import datetime
import ipaddress
import json
import os
import secrets
import sqlite3
import ssl
import sys
import threading
import time

from drivers.hostlink import MAX_FRAME, frame, make_rrn, transmission_time
from drivers.iso8583_spec import HostMessageError, decode, encode, is_repeat, masked, \
    response_mti

DEFAULT_LISTEN = "127.0.0.1:8583"
DEFAULT_DATA = ".hostsim"
DEFAULT_SLOW_MS = 35000
# The test base derivation key of ANSI X9.24-1 (its published test vectors use it).
DEFAULT_BDK = "0123456789ABCDEFFEDCBA9876543210"
# The AES-128 test BDK of ANSI X9.24-3-2017's published test vectors.
DEFAULT_AES_BDK = "FEDCBA9876543210F1F1F1F1F1F1F1F1"
TEST_PIN = b"1234"

# How long a repeat MTI (0201, 0401, ...) is matched to an earlier request by TID + STAN.
DUPLICATE_WINDOW_H = 24

NOW = "now"
SLOW = "slow"
GARBLED = "garbled"
SILENT = "silent"

# Last two digits of DE4 -> (response code, delivery, what it is for).
OUTCOMES = {
    5: ("05", NOW, "declined: do not honour"),
    51: ("51", NOW, "declined: insufficient funds"),
    54: ("54", NOW, "declined: expired card"),
    55: ("55", NOW, "declined: incorrect PIN"),
    91: ("91", NOW, "issuer or switch inoperative: try again later"),
    97: ("00", SLOW, "approved and booked; the reply comes after --slow-ms"),
    98: ("00", GARBLED, "approved and booked; the reply is garbled"),
    99: ("00", SILENT, "approved and booked; no reply at all"),
    93: ("00", NOW, "approved and booked; left out of the batch totals until uploaded"),
}
# the amount (last two digits) whose booking the host leaves out of its batch totals
# until a batch upload brings it: a settlement that is out of balance, on purpose
LOST_IN_BATCH = 93
APPROVED = ("00", NOW, "approved")

# Last two digits of DE4 -> (response code, note) for an advice; any other amount is
# accepted and booked. Advices are always answered at once.
ADVICE_DECLINES = {
    5: ("05", "declined after upload: do not honour"),
    51: ("51", "declined after upload: insufficient funds"),
}

# Why a terminal reverses (DE39 of 0400/0420, docs/host-protocol.md section 9).
REVERSAL_REASONS = {
    "17": "customer cancellation (CANCEL, the card pulled out, a void)",
    "20": "invalid response (an answer the terminal could not trust)",
    "22": "suspected malfunction (a restart mid-request, the card refused after approval)",
    "68": "response received too late (no answer in time, the link broke)",
}

# Track data: never in an advice (the terminal keeps no track after the sale).
TRACK_FIELDS = ("35", "45")

# The answer to a request whose reversal overtook it. Not 94 (duplicate): nothing was
# booked; not 05: the card is not at fault; not 91/96: trying again would not help.
LATE_ORIGINAL = "12"

# Cryptogram information data (9F27), bits 8-7: what kind of cryptogram 9F26 is.
_CID_KINDS = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}

# How long stop() lets open connections close politely before cutting them, and how
# long any TLS connection may take to close (asyncio's default is 30 s).
STOP_GRACE_S = 0.25
TLS_CLOSE_S = 5.0

# A reply that cannot be decoded: an 0210 whose bitmap announces DE2 and stops there.
GARBLED_REPLY = b"0210" + b"\x40" + b"\x00" * 7 + b"1"

# Network management codes (DE70) the simulator answers.
NETWORK_CODES = {"001": "sign-on", "002": "sign-off", "161": "key change", "301": "echo test"}

_ALNUM = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


# -- TLS material -------------------------------------------------------------------

def tls_paths(data_dir):
    tls_dir = os.path.join(data_dir, "tls")
    return {"dir": tls_dir, "ca": os.path.join(tls_dir, "ca.pem"),
            "cert": os.path.join(tls_dir, "server.pem"), "key": os.path.join(tls_dir, "server.key")}


def _still_valid(cert_path, margin_days=1):
    from cryptography import x509
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return False
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    return left > datetime.timedelta(days=margin_days)


def _write(path, data, mode=0o644):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ensure_tls(data_dir, names=("localhost",), addresses=("127.0.0.1", "::1")):
    """The test CA and the server's certificate, made on first use; returns their paths.

    The CA's private key is not kept: a new server certificate means a new CA, and
    the terminal pins the new ca.pem.
    """
    paths = tls_paths(data_dir)
    if all(os.path.exists(paths[k]) for k in ("ca", "cert", "key")) and _still_valid(paths["cert"]):
        paths["created"] = False
        return paths
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(paths["dir"], mode=0o700, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(hours=1)     # a Pi's clock may lag a little

    def usage(**on):
        names_ = ("digital_signature", "content_commitment", "key_encipherment",
                  "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                  "encipher_only", "decipher_only")
        return x509.KeyUsage(**{n: on.get(n, False) for n in names_})

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "handpos test acquirer"),
        x509.NameAttribute(NameOID.COMMON_NAME, "handpos hostsim test CA %s" % secrets.token_hex(4)),
    ])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (x509.CertificateBuilder()
               .subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
               .add_extension(ca_ski, critical=False)
               .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))

    pem = serialization.Encoding.PEM
    _write(paths["key"], key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), 0o600)
    _write(paths["cert"], cert.public_bytes(pem))
    _write(paths["ca"], ca_cert.public_bytes(pem))
    paths["created"] = True
    return paths


def server_context(paths):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths["cert"], paths["key"])
    return ctx


# -- the ledger -----------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS exchanges (
    id INTEGER PRIMARY KEY, at TEXT, tid TEXT, stan TEXT, mti TEXT, class TEXT, de7 TEXT,
    request TEXT, response TEXT, delivery TEXT, note TEXT);
CREATE INDEX IF NOT EXISTS exchanges_key ON exchanges (tid, stan, class, de7);
CREATE TABLE IF NOT EXISTS undecodable (
    id INTEGER PRIMARY KEY, at TEXT, size INTEGER, reason TEXT);
CREATE TABLE IF NOT EXISTS bookings (
    id INTEGER PRIMARY KEY, at TEXT, tid TEXT, stan TEXT, mti TEXT, de7 TEXT, kind TEXT,
    amount INTEGER, currency TEXT, pan TEXT, rrn TEXT, auth_code TEXT, invoice TEXT,
    status TEXT, batch TEXT, settled INTEGER DEFAULT 0, ref INTEGER, missing INTEGER DEFAULT 0);
CREATE INDEX IF NOT EXISTS bookings_key ON bookings (tid, stan);
CREATE TABLE IF NOT EXISTS reversals (
    id INTEGER PRIMARY KEY, at TEXT, tid TEXT, stan TEXT, orig_mti TEXT, orig_stan TEXT,
    booking INTEGER, orig_de7 TEXT, reason TEXT, de7 TEXT);
CREATE TABLE IF NOT EXISTS settlements (
    id INTEGER PRIMARY KEY, at TEXT, tid TEXT, batch TEXT, proc TEXT, terminal TEXT,
    host TEXT, code TEXT);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER);
"""

# Bookings that move money, and which way (pre-authorisations 0100 only hold funds).
_MONEY_MTIS = ("0200", "0220", "0320")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _since(hours):
    then = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours)
    return then.isoformat(timespec="milliseconds")


class Ledger:
    """The simulator's books. Safe to query from a test's thread while the server runs."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # A simulator's books: losing the last exchange to a power cut is acceptable,
        # an fsync per message would slow every test.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # ledgers made before reversals kept the original's DE7, their own and a reason
        columns = [r[1] for r in self._db.execute("PRAGMA table_info(reversals)")]
        for column in ("orig_de7", "reason", "de7"):
            if column not in columns:
                self._db.execute("ALTER TABLE reversals ADD COLUMN %s TEXT" % column)
        # and bookings before the host could leave one out of its batch totals
        if "missing" not in [r[1] for r in self._db.execute("PRAGMA table_info(bookings)")]:
            self._db.execute("ALTER TABLE bookings ADD COLUMN missing INTEGER DEFAULT 0")

    def close(self):
        with self._lock:
            self._db.close()

    def _all(self, sql, args=()):
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    def _one(self, sql, args=()):
        rows = self._all(sql, args)
        return rows[0] if rows else None

    def _run(self, sql, args=()):
        with self._lock:
            return self._db.execute(sql, args).lastrowid

    def transaction(self):
        """with ledger.transaction(): one atomic step (check, book, record)."""
        return _Tx(self)

    # -- recording -----------------------------------------------------------------
    def next_sequence(self, name):
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
            value = (row[0] if row else 0) % 999999 + 1
            self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))
            return value

    def record_exchange(self, msg, response, delivery, note=""):
        mti = msg["t"]
        return self._run(
            "INSERT INTO exchanges (at, tid, stan, mti, class, de7, request, response, delivery, note)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            (_now(), msg.get("41", ""), msg.get("11", ""), mti, mti[:3], msg.get("7", ""),
             json.dumps(masked(msg), sort_keys=True),
             json.dumps(response, sort_keys=True) if response is not None else None, delivery, note))

    def record_undecodable(self, size, reason):
        self._run("INSERT INTO undecodable (at, size, reason) VALUES (?,?,?)", (_now(), size, reason))

    def prior_response(self, msg):
        """The response already given to this request, or None if it is new."""
        mti = msg["t"]
        tid, stan = msg.get("41", ""), msg.get("11", "")
        if is_repeat(mti):
            # A repeat names its original by TID + STAN alone, which identify a request
            # for a day (STANs wrap); it must also be the same request (amount).
            since = _since(DUPLICATE_WINDOW_H)
            rows = self._all("SELECT request, response FROM exchanges WHERE tid=? AND stan=?"
                             " AND class=? AND at>=? AND response IS NOT NULL ORDER BY id",
                             (tid, stan, mti[:3], since))
            row = next((r for r in rows if json.loads(r["request"]).get("4") == msg.get("4")), None)
        else:
            row = self._one("SELECT response FROM exchanges WHERE tid=? AND stan=? AND class=?"
                            " AND de7=? AND response IS NOT NULL ORDER BY id LIMIT 1",
                            (tid, stan, mti[:3], msg.get("7", "")))
        return json.loads(row["response"]) if row else None

    def book(self, msg, kind, rrn, auth_code, status="approved", mti=None, ref=None):
        amount = int(msg.get("4", "0") or 0)
        return self._run(
            "INSERT INTO bookings (at, tid, stan, mti, de7, kind, amount, currency, pan, rrn,"
            " auth_code, invoice, status, batch, ref) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (_now(), msg.get("41", ""), msg["11"], mti or msg["t"][:3] + "0", msg.get("7", ""),
             kind, amount, msg.get("49", ""), _masked_pan(msg), rrn, auth_code,
             msg.get("62", ""), status, None, ref))

    def booking(self, booking_id):
        return self._one("SELECT * FROM bookings WHERE id=?", (booking_id,))

    def find_by_rrn(self, tid, rrn):
        return self._one("SELECT * FROM bookings WHERE tid=? AND rrn=? AND kind!='void'"
                         " ORDER BY id DESC", (tid, rrn))

    def find_original(self, tid, stan, mti=None, de7=None):
        """The booking a reversal or upload refers to, or None.

        With a DE7 (from DE90) only that exact request matches; without one, the latest
        booking with this TID + STAN of the last DUPLICATE_WINDOW_H hours (STANs wrap).
        """
        sql = "SELECT * FROM bookings WHERE tid=? AND stan=?"
        args = [tid, stan]
        if mti:
            sql += " AND mti=?"
            args.append(mti[:3] + "0")
        if de7 and de7.strip("0"):
            sql += " AND de7=?"
            args.append(de7)
        else:
            sql += " AND at>=?"
            args.append(_since(DUPLICATE_WINDOW_H))
        return self._one(sql + " ORDER BY id DESC", args)

    def set_status(self, booking_id, status):
        self._run("UPDATE bookings SET status=? WHERE id=?", (status, booking_id))

    def record_reversal(self, msg, orig_mti, orig_stan, booking_id, orig_de7=None):
        self._run("INSERT INTO reversals (at, tid, stan, orig_mti, orig_stan, booking, orig_de7,"
                  " reason, de7) VALUES (?,?,?,?,?,?,?,?,?)",
                  (_now(), msg.get("41", ""), msg["11"], orig_mti, orig_stan, booking_id,
                   orig_de7 or "", msg.get("39", ""), msg.get("7", "")))

    def reversal_for(self, tid, stan, mti, de7=None):
        """The reversal already recorded for a request, or None: the same TID and STAN,
        the same message class (0100, 0200, 0220) when the reversal named one, the same
        DE7 when both know it, otherwise within DUPLICATE_WINDOW_H hours (STANs wrap).
        A reversal overtakes its original when the original is held up on the way."""
        since = _since(DUPLICATE_WINDOW_H)
        for r in self._all("SELECT * FROM reversals WHERE tid=? AND orig_stan=? ORDER BY id",
                           (tid, stan)):
            if r["orig_mti"] and r["orig_mti"][:3] != mti[:3]:
                continue
            known = r["orig_de7"] if r["orig_de7"] and r["orig_de7"].strip("0") else None
            if known and de7:
                if known == de7:
                    return r
            elif r["at"] >= since:
                return r
        return None

    def _totals(self, where, args):
        rows = self._all("SELECT kind, COUNT(*) AS n, COALESCE(SUM(amount), 0) AS total"
                         " FROM bookings WHERE %s AND status='approved' AND mti IN (%s)"
                         " GROUP BY kind" % (where, ",".join("?" * len(_MONEY_MTIS))),
                         list(args) + list(_MONEY_MTIS))
        by = {r["kind"]: (r["n"], r["total"]) for r in rows}
        sale = by.get("sale", (0, 0))
        refund = by.get("refund", (0, 0))
        return (sale[0], sale[1], refund[0], refund[1])

    def unsettled_totals(self, tid):
        """(sales count, sales amount, refunds count, refunds amount) not yet settled,
        without the bookings the host left out of its batch (.93, until uploaded)."""
        return self._totals("tid=? AND settled=0 AND missing=0", (tid,))

    def batch_totals(self, tid, batch):
        """The host's totals of the terminal's batch: what is not yet settled, and when
        the last batch this terminal closed is this one (its 0510 may have been lost),
        what that closing settled too."""
        totals = self.unsettled_totals(tid)
        last = self._one("SELECT batch FROM settlements WHERE tid=? AND code='00'"
                         " ORDER BY id DESC LIMIT 1", (tid,))
        if last is not None and last["batch"] == batch:
            before = self._totals("tid=? AND settled=1 AND batch=?", (tid, batch))
            totals = tuple(a + b for a, b in zip(totals, before))
        return totals

    def close_batch(self, tid, batch):
        """Every unsettled booking of the terminal goes into the batch (and is found)."""
        self._run("UPDATE bookings SET settled=1, batch=?, missing=0 WHERE tid=? AND settled=0",
                  (batch, tid))

    def set_missing(self, booking_id, missing):
        self._run("UPDATE bookings SET missing=? WHERE id=?", (1 if missing else 0, booking_id))

    def find_uploaded(self, tid, stan, mti, de7=None):
        """The booking a 0320 names (DE60: the original's MTI, STAN and DE7), booked
        first by that request or by an earlier upload of it; None when the host lacks it.
        Without a DE7, the latest of the last DUPLICATE_WINDOW_H hours."""
        sql = "SELECT * FROM bookings WHERE tid=? AND stan=? AND mti IN (?, '0320')"
        args = [tid, stan, mti[:3] + "0"]
        if de7 and de7.strip("0"):
            sql += " AND de7=?"
            args.append(de7)
        else:
            sql += " AND at>=?"
            args.append(_since(DUPLICATE_WINDOW_H))
        return self._one(sql + " ORDER BY id DESC", args)

    def record_settlement(self, tid, batch, proc, terminal, host, code):
        self._run("INSERT INTO settlements (at, tid, batch, proc, terminal, host, code)"
                  " VALUES (?,?,?,?,?,?,?)", (_now(), tid, batch, proc, terminal, host, code))

    # -- the query API for tests and people ----------------------------------------------
    def approved_total(self, tid, unsettled_only=False):
        """Sales minus refunds, in minor units, approved and neither reversed nor voided."""
        sql = ("SELECT kind, COALESCE(SUM(amount), 0) AS total FROM bookings WHERE tid=?"
               " AND status='approved' AND mti IN (%s)" % ",".join("?" * len(_MONEY_MTIS)))
        if unsettled_only:
            sql += " AND settled=0"
        rows = self._all(sql + " GROUP BY kind", [tid] + list(_MONEY_MTIS))
        by = {r["kind"]: r["total"] for r in rows}
        return by.get("sale", 0) - by.get("refund", 0)

    def net_total(self, tid):
        """What the terminal's merchant is owed, in minor units: approved sales minus
        approved refunds, neither reversed nor voided, settled or not. (approved_total
        under the name a reconciliation reads.)"""
        return self.approved_total(tid)

    def money_bookings(self, tid):
        """Every booking of a terminal that moves money (0200, 0220, 0320), oldest first,
        as dicts: id, mti, stan, de7, amount, kind (sale, refund, void), status
        (approved, reversed, voided), rrn, settled. Declines are never booked: they are
        in exchanges()."""
        return self._all("SELECT id, mti, stan, de7, amount, kind, status, rrn, settled"
                         " FROM bookings WHERE tid=? AND mti IN (%s) ORDER BY id"
                         % ",".join("?" * len(_MONEY_MTIS)), [tid] + list(_MONEY_MTIS))

    def count(self, tid=None, status=None, mti=None, kind=None):
        """How many bookings match (None matches anything)."""
        sql, args = "SELECT COUNT(*) AS n FROM bookings WHERE 1=1", []
        for column, value in (("tid", tid), ("status", status), ("mti", mti), ("kind", kind)):
            if value is not None:
                sql += " AND %s=?" % column
                args.append(value)
        return self._one(sql, args)["n"]

    def find(self, stan, tid=None):
        """The latest booking with this STAN (and TID), as a dict, or None."""
        if tid is None:
            return self._one("SELECT * FROM bookings WHERE stan=? ORDER BY id DESC", (stan,))
        return self._one("SELECT * FROM bookings WHERE stan=? AND tid=? ORDER BY id DESC",
                         (stan, tid))

    def exchanges(self, tid=None, stan=None):
        sql, args = "SELECT * FROM exchanges WHERE 1=1", []
        if tid is not None:
            sql += " AND tid=?"
            args.append(tid)
        if stan is not None:
            sql += " AND stan=?"
            args.append(stan)
        rows = self._all(sql + " ORDER BY id", args)
        for r in rows:
            r["request"] = json.loads(r["request"])
            r["response"] = json.loads(r["response"]) if r["response"] else None
        return rows

    def reversals(self, tid=None):
        if tid is None:
            return self._all("SELECT * FROM reversals ORDER BY id")
        return self._all("SELECT * FROM reversals WHERE tid=? ORDER BY id", (tid,))

    def settlements(self, tid=None):
        if tid is None:
            return self._all("SELECT * FROM settlements ORDER BY id")
        return self._all("SELECT * FROM settlements WHERE tid=? ORDER BY id", (tid,))

    def undecodable_count(self):
        return self._one("SELECT COUNT(*) AS n FROM undecodable")["n"]


class _Tx:
    def __init__(self, ledger):
        self.ledger = ledger

    def __enter__(self):
        self.ledger._lock.acquire()
        self.ledger._db.execute("BEGIN IMMEDIATE")
        return self.ledger

    def __exit__(self, kind, value, tb):
        try:
            self.ledger._db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.ledger._lock.release()
        return False


# -- PIN verification ------------------------------------------------------------------------

class PinVerifier:
    """Decrypts DE52 (TDES DUKPT, format 0) or DE61 (AES DUKPT, format 4) under the PIN
    key for the KSN in DE53 and checks the PIN."""

    def __init__(self, bdk_hex, aes_bdk_hex=DEFAULT_AES_BDK):
        self.bdk = bytes.fromhex(bdk_hex)
        if len(self.bdk) != 16:
            raise ValueError("the BDK is 32 hex digits (a double-length TDES key)")
        self.aes_bdk = bytes.fromhex(aes_bdk_hex)
        if len(self.aes_bdk) not in (16, 24, 32):
            raise ValueError("the AES BDK is 32, 48 or 64 hex digits (AES-128/192/256)")

    @staticmethod
    def available():
        try:
            from firmware.security import dukpt, dukpt_aes, pinblock  # noqa: F401
        except ImportError:
            return False
        return True

    def check(self, block_hex, ksn_hex, pan):
        """True for PIN 1234, False for any other PIN or a block that is not ISO-0
        under this key (a wrong key or PAN looks the same). ValueError when the KSN
        itself is unusable."""
        from firmware.security import dukpt, pinblock
        clear = dukpt.decrypt_pin_block(self.bdk, ksn_hex, block_hex)
        try:
            pin = pinblock.decode(clear, pan)
        except ValueError:
            return False
        finally:
            pinblock.wipe(clear)
        try:
            return bytes(pin) == TEST_PIN
        finally:
            pinblock.wipe(pin)

    def check_aes(self, block_hex, ksn_hex, pan):
        """The same for an AES DUKPT format 4 block (DE61) and its 12-byte KSN: True
        for PIN 1234, False for any other PIN or a block that does not decipher to
        format 4 for this PAN. ValueError when the KSN itself is unusable."""
        from firmware.security import dukpt_aes, pinblock
        field = dukpt_aes.decrypt_pin_field(self.aes_bdk, ksn_hex, block_hex, pan)
        try:
            pin = pinblock.format4_pin(field)
        except ValueError:
            return False
        finally:
            pinblock.wipe(field)
        try:
            return bytes(pin) == TEST_PIN
        finally:
            pinblock.wipe(pin)


def _masked_pan(msg):
    pan = _pan_of(msg)
    return masked({"2": pan}).get("2", "") if pan else ""


def _expiry_of(msg):
    """YYMM from DE14, or from the track 2 (equivalent) data in DE35."""
    if msg.get("14"):
        return msg["14"]
    track2 = msg.get("35", "")
    for sep in ("=", "D"):
        if sep in track2:
            rest = track2.split(sep, 1)[1]
            return rest[:4] if len(rest) >= 4 and rest[:4].isdigit() else None
    return None


def _pan_of(msg):
    if msg.get("2"):
        return msg["2"]
    track2 = msg.get("35", "")
    for sep in ("=", "D"):
        if sep in track2:
            return track2.split(sep, 1)[0]
    return None


def _card_problem(msg):
    """Why a card request does not carry its card as the profile says, or None: DE35
    (track 2, or a chip's track 2 equivalent) or DE2 (with DE14), exactly one."""
    if "35" in msg and "2" in msg:
        return "format error: the card twice, in DE2 and DE35"
    if "35" not in msg and "2" not in msg:
        return "format error: no card (DE2 or DE35)"
    return None


def _advice_problem(msg):
    """Why an advice breaks the profile, or None: the card as DE2 (and DE14), no track
    data, the offline approval code in DE38 and no DE39 (the host's to give)."""
    track = [f for f in TRACK_FIELDS if f in msg]
    if track:
        return "format error: track data (DE%s) in an advice" % "/DE".join(track)
    if "2" not in msg:
        return "format error: an advice without the PAN (DE2)"
    if not msg.get("38", "").strip():
        return "format error: an advice without its approval code (DE38)"
    if "39" in msg:
        return "format error: DE39 in an advice (the approval code goes in DE38)"
    return None


# -- the host ----------------------------------------------------------------------------------

class Reply:
    """What to send back for one request: a message (or raw bytes) and how."""

    def __init__(self, msg=None, delivery=NOW, raw=None, delay_ms=None):
        self.msg = msg
        self.delivery = delivery
        self.raw = raw
        self.delay_ms = delay_ms      # a SLOW reply's own delay (delay_answers())

    def payload(self):
        if self.delivery == SILENT:
            return None
        if self.delivery == GARBLED:
            return GARBLED_REPLY
        if self.raw is not None:
            return self.raw
        return encode(self.msg) if self.msg is not None else None


class HostSim:
    """The simulated acquirer: handle() decides, serve()/start() put it on a socket."""

    def __init__(self, data_dir, tls=True, slow_ms=DEFAULT_SLOW_MS, bdk=DEFAULT_BDK, log=None,
                 aes_bdk=DEFAULT_AES_BDK, capture=None):
        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = data_dir
        # capture(direction, raw): every frame's message as it crossed the wire, "in"
        # from the terminal, "out" to it (without the length prefix); set it at any
        # time. The ledger keeps requests masked; this is the traffic itself, for a
        # test that decodes it with its own decoder (tests/test_wire_profile.py).
        self.capture = capture
        self.slow_ms = int(slow_ms)
        self.log = log or (lambda line: None)
        self.pins = PinVerifier(bdk, aes_bdk)
        self.ledger = Ledger(os.path.join(data_dir, "ledger.sqlite"))
        self.tls = ensure_tls(data_dir) if tls else None
        self.ca_file = self.tls["ca"] if tls else None
        self.address = None
        self._loop = None
        self._thread = None
        self._server = None
        self._writers = set()         # one per open connection
        self._connections = set()     # their handler tasks
        self._timers = set()          # slow replies not yet sent
        self._stopping = False
        # settlement controls for tests and the lab (see disagree() and the others)
        self._controls = threading.Lock()
        self._disagree = []           # TIDs (None: any) whose next 920000 is answered 95
        self._settle_errors = []      # codes for the next 0500s, whatever they say
        self._delays = {}             # MTI class ("050") -> [ms, times left]
        self._reorder = 0             # 0330s held and sent in reverse, this many at a time
        self._held = {}               # writer -> {"payloads", "timer"}: 0330s held
        self._handlers = {
            "010": self._authorisation, "020": self._financial, "022": self._advice,
            "032": self._upload, "040": self._reversal, "042": self._reversal,
            "050": self._settlement, "080": self._network,
        }

    # -- settlement controls (tests, the lab) ---------------------------------------------
    def disagree(self, times=1, tid=None):
        """The next `times` settlements (0500 920000) of terminal tid (None: any) are
        answered 95, out of balance, whatever the totals: the terminal must upload its
        batch (0320s), then close it with 960000."""
        with self._controls:
            self._disagree.extend([tid] * int(times))

    def fail_settlement(self, code="96", times=1):
        """The next `times` 0500s (920000 or 960000) are answered with code and close
        nothing: a host in trouble."""
        with self._controls:
            self._settle_errors.extend([str(code)] * int(times))

    def delay_answers(self, mti, ms, times=1):
        """The answers to the next `times` requests of mti's type ("0500", "0320") leave
        ms later: after the terminal's timeout, a late answer it must not take. The
        request itself is processed at once (a batch may close meanwhile)."""
        with self._controls:
            self._delays[mti[:3]] = [int(ms), int(times)]

    def reorder_uploads(self, count):
        """0330s are held until `count` are (or half a second has passed), then sent in
        reverse order: a host that answers out of order. 0 stops it."""
        with self._controls:
            self._reorder = max(0, int(count))

    def _scripted(self, msg, reply):
        with self._controls:
            late = self._delays.get(msg["t"][:3])
            if late and late[1] > 0 and reply.delivery == NOW:
                late[1] -= 1
                reply.delivery, reply.delay_ms = SLOW, late[0]
        return reply

    # -- deciding -----------------------------------------------------------------------
    def handle_raw(self, raw):
        """The Reply to one received frame's bytes, or None when there is nothing to say."""
        try:
            msg = decode(raw)
        except HostMessageError as exc:
            self.ledger.record_undecodable(len(raw), exc.reason)
            self.log("undecodable request (%d bytes): %s" % (len(raw), exc.reason))
            return None
        return self.handle(msg)

    def handle(self, msg):
        mti = msg["t"]
        try:
            response_mti(mti)
        except HostMessageError:
            self.ledger.record_exchange(msg, None, SILENT, "not a request")
            self.log("%s is not a request: ignored" % mti)
            return None
        with self.ledger.transaction() as ledger:
            prior = ledger.prior_response(msg)
            if prior is not None:
                ledger.record_exchange(msg, prior, NOW, "duplicate: original response repeated")
                self.log("%s STAN %s TID %s: duplicate, answered %s again"
                         % (mti, msg.get("11"), msg.get("41"), prior.get("39")))
                return self._scripted(msg, Reply(prior, NOW))
            try:
                response, delivery, note = self._handlers[mti[:3]](msg)
            except Exception as exc:      # a simulator bug answers 96, as a real switch would
                response, delivery = self._response(msg, "96"), NOW
                note = "system malfunction: %s: %s" % (type(exc).__name__, exc)
            ledger.record_exchange(msg, response, delivery, note)
        self.log("%s STAN %s TID %s amount %s: %s %s (%s)"
                 % (mti, msg.get("11"), msg.get("41", "-"), msg.get("4", "-"),
                    response.get("39"), delivery, note))
        return self._scripted(msg, Reply(response, delivery))

    def _response(self, msg, code, *extra):
        out = {"t": response_mti(msg["t"]), "11": msg["11"], "39": code,
               "7": msg.get("7") or transmission_time()}
        for field in ("3", "4", "12", "13", "24", "41", "42", "49", "60", "62", "70") + extra:
            if field in msg:
                out[field] = msg[field]
        return out

    def _new_rrn(self):
        return make_rrn(self.ledger.next_sequence("rrn"))

    def _approval_codes(self):
        return self._new_rrn(), "".join(secrets.choice(_ALNUM) for _ in range(6))

    def _decide(self, msg):
        """(response code, delivery, note) for an authorisation or financial request.

        The amount picks the outcome; a wrong PIN turns it into 55 but keeps the
        amount's delivery, so a slow or silent case stays slow or silent.
        """
        code, delivery, note = OUTCOMES.get(int(msg["4"]) % 100, APPROVED)
        expiry = _expiry_of(msg)
        if expiry and expiry < time.strftime("%y%m", time.gmtime()) and code == "00":
            # the issuer judges expiry too: a terminal without a synchronised clock
            # leaves it to the host
            code, note = "54", "expired card (%s)" % expiry
        if "55" in msg:
            code, note = self._check_arqc(msg, code, note)
        if "52" not in msg and "61" not in msg:
            return code, delivery, note
        pan = _pan_of(msg)
        if not msg.get("53") or not pan:
            return "30", NOW, "PIN block without KSN (DE53) or PAN: format error"
        if "52" in msg and "61" in msg:
            return "30", NOW, "two PIN blocks (DE52 and DE61): format error"
        if not self.pins.available():
            return "96", NOW, "cannot verify PINs: firmware/security/dukpt.py is missing"
        # the KSN's length says the scheme: 10 bytes TDES DUKPT, 12 bytes AES DUKPT
        aes = "61" in msg
        want = 24 if aes else 20
        if len(msg["53"]) != want:
            return "30", NOW, ("%s PIN block with a %d-digit KSN in DE53 (must be %d): format "
                               "error" % ("an AES (DE61)" if aes else "a TDES (DE52)",
                                          len(msg["53"]), want))
        if aes and len(msg["61"]) != 32:
            return "30", NOW, "DE61 is not a 16-byte format 4 PIN block: format error"
        try:
            if aes:
                ok = self.pins.check_aes(msg["61"], msg["53"], pan)
            else:
                ok = self.pins.check(msg["52"], msg["53"], pan)
        except ValueError as exc:
            return "30", NOW, "PIN block unusable: %s" % exc
        if not ok:
            return "55", delivery, "wrong PIN"
        return code, delivery, note + (", PIN verified (AES DUKPT)" if aes else ", PIN verified")

    def _check_arqc(self, msg, code, note):
        """Chip and contactless: the ARQC in DE55 must be the card's (test issuer keys)."""
        from tools.cards import emv_issuer
        try:
            ok = emv_issuer.verify_arqc(bytes.fromhex(msg["55"]), pan=_pan_of(msg),
                                        psn=msg.get("23", "")[-2:] or None)
        except (emv_issuer.De55Error, ValueError) as exc:
            return "30", note + ", DE55 unusable: %s" % exc
        if not ok:
            return "05", note + ", ARQC wrong: declined"
        return code, note + ", ARQC verified"

    def _emv_reply(self, msg, response):
        """Tag 91 (ARPC + ARC) in DE55 so that the card can authenticate the issuer."""
        if "55" not in msg or response.get("39") == "30":
            return response
        from tools.cards import emv_issuer
        try:
            tags = emv_issuer.normalise_tags(bytes.fromhex(msg["55"]))
            de55 = emv_issuer.response_de55(tags["9F26"], response["39"], pan=_pan_of(msg),
                                            psn=msg.get("23", "")[-2:] or None)
        except (emv_issuer.De55Error, KeyError, ValueError):
            return response
        response["55"] = de55.hex().upper()
        return response

    def _overtaken(self, msg):
        """A note when this request's reversal arrived before it (the request was held
        up on the way), else None. Such a request is declined and never booked: the
        terminal gave it up when it reversed it."""
        rev = self.ledger.reversal_for(msg.get("41", ""), msg["11"], msg["t"], msg.get("7"))
        if rev is None:
            return None
        return "reversed before it arrived (reversal STAN %s): not booked" % rev["stan"]

    def _authorisation(self, msg):
        late = self._overtaken(msg)
        if late:
            return self._response(msg, LATE_ORIGINAL), NOW, late
        bad = _card_problem(msg)
        if bad:
            return self._response(msg, "30"), NOW, bad
        code, delivery, note = self._decide(msg)
        if code != "00":
            return self._response(msg, code), delivery, note
        rrn, auth = self._approval_codes()
        self.ledger.book(msg, "auth", rrn, auth)
        return self._response(msg, "00") | {"37": rrn, "38": auth}, delivery, note

    def _financial(self, msg):
        late = self._overtaken(msg)
        if late:
            return self._response(msg, LATE_ORIGINAL), NOW, late
        proc = msg["3"]
        if proc[:2] == "02":
            return self._void(msg)
        bad = _card_problem(msg)
        if bad:
            return self._response(msg, "30"), NOW, bad
        code, delivery, note = self._decide(msg)
        if code != "00":
            return self._emv_reply(msg, self._response(msg, code)), delivery, note
        rrn, auth = self._approval_codes()
        # a test sale (DE48 "TEST", a provisioning's trial: docs/host-protocol.md) is booked
        # as kind "test": authorised like a sale, never in the batch totals or the money
        test = proc[:2] == "00" and msg.get("48") == "TEST"
        booking = self.ledger.book(msg, "test" if test else "refund" if proc[:2] == "20"
                                   else "sale", rrn, auth)
        if int(msg["4"]) % 100 == LOST_IN_BATCH:
            self.ledger.set_missing(booking, True)
        return self._emv_reply(msg, self._response(msg, "00", *(("48",) if test else ())) |
                               {"37": rrn, "38": auth}), delivery, note

    def _void(self, msg):
        """0200 with processing code 02: undo the sale whose RRN is in DE37."""
        tid, rrn = msg.get("41", ""), msg.get("37") or ""
        orig = self.ledger.find_by_rrn(tid, rrn)
        if orig is None:
            return self._response(msg, "25"), NOW, "void: no transaction with RRN %s" % rrn
        if orig["settled"]:
            return self._response(msg, "12"), NOW, "void: the transaction is already settled"
        if orig["status"] != "approved":
            return self._response(msg, "12"), NOW, "void: the transaction is %s" % orig["status"]
        self.ledger.set_status(orig["id"], "voided")
        self.ledger.book(msg, "void", rrn, orig["auth_code"], ref=orig["id"])
        return (self._response(msg, "00", "37") | {"38": orig["auth_code"]}, NOW,
                "voided %s STAN %s" % (orig["mti"], orig["stan"]))

    def _advice(self, msg):
        """0220/0221: a payment the terminal approved offline. The host can only accept it
        or decline it after upload, and answers at once whatever the amount."""
        late = self._overtaken(msg)
        if late:
            return self._response(msg, LATE_ORIGINAL, "37", "38"), NOW, late
        bad = _advice_problem(msg)
        if bad:
            return self._response(msg, "30", "37", "38"), NOW, bad + ": not booked"
        code, note = ADVICE_DECLINES.get(int(msg["4"]) % 100, ("00", "advice accepted"))
        if "55" in msg:
            code, note = self._check_tc(msg, code, note)
        if code != "00":
            return self._response(msg, code, "37", "38"), NOW, note + ": not booked"
        kind = "refund" if msg["3"][:2] == "20" else "sale"
        rrn = msg.get("37") or self._new_rrn()
        self.ledger.book(msg, kind, rrn, msg.get("38", ""))
        return self._response(msg, "00", "38") | {"37": rrn}, NOW, note + ": booked"

    def _check_tc(self, msg, code, note):
        """A chip advice: 9F26 must be the card's cryptogram over DE55 (a TC is computed
        as an ARQC is), and not an AAC, with which the card declined."""
        from tools.cards import emv_issuer
        try:
            tags = emv_issuer.normalise_tags(bytes.fromhex(msg["55"]))
            ok = emv_issuer.verify_arqc(tags, pan=_pan_of(msg),
                                        psn=msg.get("23", "")[-2:] or None)
        except (emv_issuer.De55Error, ValueError) as exc:
            return "30", note + ", DE55 unusable: %s" % exc
        cid = tags.get("9F27", b"")
        kind = _CID_KINDS.get(cid[0] & 0xC0, "cryptogram") if len(cid) == 1 else "cryptogram"
        if not ok:
            return "05", note + ", %s wrong: declined after upload" % kind
        if kind == "AAC":
            return "05", note + ", the card declined (AAC): declined after upload"
        return code, note + ", %s verified" % kind

    def _upload(self, msg):
        """0320: one transaction of a batch upload, named by DE60 (its original's MTI,
        STAN and DE7). An original the host has is not booked again (one it left out of
        the batch totals is found); one it lacks is booked, once however often it comes."""
        de60 = msg["60"]
        if len(de60) not in (10, 20) or not de60.isdigit():
            return self._response(msg, "30"), NOW, ("DE60 must be the original's MTI + STAN"
                                                    " (+ DE7)")
        orig_mti, orig_stan, orig_de7 = de60[:4], de60[4:10], de60[10:20]
        tid = msg.get("41", "")
        note = ""
        if "55" in msg:
            from tools.cards import emv_issuer
            try:
                tags = emv_issuer.normalise_tags(bytes.fromhex(msg["55"]))
                cid = tags.get("9F27", b"")
                if len(tags.get("9F26", b"")) != 8 or len(cid) != 1:
                    raise emv_issuer.De55Error("no cryptogram (9F26, 9F27)")
            except (emv_issuer.De55Error, ValueError) as exc:
                return self._response(msg, "30"), NOW, "DE55 unusable: %s" % exc
            note = ", %s %s" % (_CID_KINDS.get(cid[0] & 0xC0, "cryptogram"),
                                tags["9F26"].hex().upper())
        orig = self.ledger.find_uploaded(tid, orig_stan, orig_mti, orig_de7)
        if orig is None:
            upload = dict(msg, **{"11": orig_stan, "7": orig_de7 or msg.get("7", "")})
            kind = "refund" if msg["3"][:2] == "20" else "sale"
            self.ledger.book(upload, kind, msg.get("37") or self._new_rrn(),
                             msg.get("38", "").strip(), mti="0320")
            return self._response(msg, "00"), NOW, "uploaded transaction booked" + note
        if orig["missing"]:
            self.ledger.set_missing(orig["id"], False)
            return (self._response(msg, "00"), NOW,
                    "uploaded transaction found (it was left out of the batch)" + note)
        return self._response(msg, "00"), NOW, "uploaded transaction already known" + note

    def _reversal(self, msg):
        tid = msg.get("41", "")
        de90 = msg.get("90")
        if de90 and de90[:4] != "0000":
            orig_mti, orig_stan, orig_de7 = de90[:4], de90[4:10], de90[10:20]
        else:
            orig_mti, orig_stan, orig_de7 = None, msg["11"], None
        orig = self.ledger.find_original(tid, orig_stan, orig_mti, orig_de7)
        if orig is None:
            note = "reversal of an unknown transaction: acknowledged"
            booking = None
        elif orig["settled"]:
            note = "reversal of a settled transaction: acknowledged, not applied"
            booking = orig["id"]
        elif orig["status"] == "approved":
            self.ledger.set_status(orig["id"], "reversed")
            note = "reversal applied to %s STAN %s" % (orig["mti"], orig["stan"])
            booking = orig["id"]
            if orig["kind"] == "void" and orig["ref"]:
                # the void is undone: the sale it voided stands again
                self.ledger.set_status(orig["ref"], "approved")
                note += " (a void: the sale stands again)"
        else:
            note = "original already %s" % orig["status"]
            booking = orig["id"]
        self.ledger.record_reversal(msg, orig_mti or (orig["mti"] if orig else ""), orig_stan,
                                    booking, orig_de7 or msg.get("7"))
        # applied and acknowledged whatever its reason says: an unanswered reversal
        # would leave the cardholder charged; a missing or unknown reason is noted
        reason = msg.get("39")
        if reason in REVERSAL_REASONS:
            note += "; reason %s: %s" % (reason, REVERSAL_REASONS[reason])
        elif reason:
            note += "; profile: reason %s is not one of %s" % (reason,
                                                               ", ".join(sorted(REVERSAL_REASONS)))
        else:
            note += "; profile: no reason (DE39)"
        return self._response(msg, "00", "90"), NOW, note

    def _settlement(self, msg):
        tid = msg.get("41", "")
        batch, totals, proc = msg["60"], msg["63"], msg["3"]
        if len(totals) < 30 or not totals[:30].isdigit():
            return self._response(msg, "30"), NOW, "DE63 must be 30 digits of totals"
        if proc not in ("920000", "960000"):
            return self._response(msg, "12"), NOW, "DE3 %s is no settlement" % proc
        terminal = (int(totals[0:3]), int(totals[3:15]), int(totals[15:18]), int(totals[18:30]))
        host = self.ledger.batch_totals(tid, batch)
        with self._controls:
            error = self._settle_errors.pop(0) if self._settle_errors else None
            told = False
            if error is None and proc[:2] == "92":
                for i, who in enumerate(self._disagree):
                    if who in (None, tid):
                        del self._disagree[i]
                        told = True
                        break
        if error is not None:
            code, note = error, "told to fail: answered %s, nothing closed" % error
        elif proc[:2] == "96":
            # closed on what the terminal uploaded: the host has booked what it lacked
            code, note = "00", "batch %s closed after upload (host %r, terminal %r)" % (
                batch, host, terminal)
        elif told or host != terminal:
            code = "95"
            note = "totals differ: host %r, terminal %r" % (host, terminal)
            if host == terminal:
                note = "told to disagree: totals %r answered 95" % (host,)
        else:
            code, note = "00", "totals agree: batch %s closed" % batch
        if code == "00":
            self.ledger.close_batch(tid, batch)
        self.ledger.record_settlement(tid, batch, proc, json.dumps(terminal), json.dumps(host), code)
        return self._response(msg, code, "63"), NOW, note

    def _network(self, msg):
        what = NETWORK_CODES.get(msg["70"])
        if what is None:
            return self._response(msg, "12"), NOW, "unknown network management code %s" % msg["70"]
        return self._response(msg, "00"), NOW, what

    # -- serving ----------------------------------------------------------------------------
    async def serve(self, host="127.0.0.1", port=8583):
        loop = asyncio.get_running_loop()
        self._loop = loop
        loop.set_exception_handler(self._loop_error)
        ctx = server_context(self.tls) if self.tls else None
        tls_options = {"ssl_shutdown_timeout": TLS_CLOSE_S} if ctx else {}
        self._server = await asyncio.start_server(self._connection, host, port, ssl=ctx,
                                                  **tls_options)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self._server

    def _loop_error(self, loop, context):
        # A client that rejects our certificate ends its handshake: say so, briefly.
        if self._stopping:
            return
        exc = context.get("exception")
        self.log("connection problem: %s" % (exc or context.get("message")))

    async def _connection(self, reader, writer):
        task = asyncio.current_task()
        self._connections.add(task)
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        self.log("terminal connected from %s:%s" % tuple(peer[:2]) if peer else "terminal connected")
        try:
            while True:
                head = await reader.readexactly(2)
                size = int.from_bytes(head, "big")
                if size > MAX_FRAME:
                    self.log("frame of %d bytes announced: connection dropped" % size)
                    break
                if size == 0:
                    continue                  # keep-alive
                raw = await reader.readexactly(size)
                self._captured("in", raw)
                reply = self.handle_raw(raw)
                if reply is None:
                    continue
                payload = reply.payload()
                if payload is None:
                    continue
                if reply.delivery == SLOW:
                    self._send_later(writer, payload, reply.delay_ms)
                elif self._reorder and reply.msg is not None and reply.msg.get("t") == "0330":
                    self._hold(writer, payload)
                else:
                    self._send(writer, payload)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            # the handler ends only when its transport is closed: stop() waits for that
            held = self._held.pop(writer, None)
            if held is not None and held["timer"] is not None:
                held["timer"].cancel()
                self._timers.discard(held["timer"])
            try:
                await _close(writer)
            finally:
                self._writers.discard(writer)
                self._connections.discard(task)

    def _send(self, writer, payload):
        if not writer.is_closing():
            self._captured("out", payload)
            writer.write(frame(payload))

    def _captured(self, direction, raw):
        capture = self.capture
        if capture is not None:
            try:
                capture(direction, bytes(raw))
            except Exception as exc:      # a broken capture must not stop the host
                self.log("capture failed: %s" % exc)

    def _send_later(self, writer, payload, ms=None):
        def due():
            self._timers.discard(handle)
            self._send(writer, payload)
        delay = self.slow_ms if ms is None else ms
        handle = asyncio.get_running_loop().call_later(delay / 1000.0, due)
        self._timers.add(handle)

    def _hold(self, writer, payload):
        """reorder_uploads(): keep the 0330 until enough are held, then send them all in
        reverse; what is held half a second goes anyway (reversed)."""
        held = self._held.setdefault(writer, {"payloads": [], "timer": None})
        held["payloads"].append(payload)

        def flush():
            out = self._held.pop(writer, None)
            if out is None:
                return
            if out["timer"] is not None:
                out["timer"].cancel()
                self._timers.discard(out["timer"])
            for p in reversed(out["payloads"]):
                self._send(writer, p)
        if len(held["payloads"]) >= self._reorder:
            flush()
        elif held["timer"] is None:
            held["timer"] = asyncio.get_running_loop().call_later(0.5, flush)
            self._timers.add(held["timer"])

    def start(self, host="127.0.0.1", port=0):
        """Serve from a background thread (tests, the simulator); returns (host, port)."""
        ready = threading.Event()
        failed = []
        loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.serve(host, port))
            except Exception as exc:
                failed.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                _finish(loop)

        self._thread = threading.Thread(target=run, name="hostsim", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failed:
            raise failed[0]
        return self.address

    async def _shutdown(self, grace_s):
        """Stop listening and close every connection; returns when their handlers have
        ended. A peer that does not finish the TLS close within grace_s is cut off."""
        self._stopping = True
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()
        if self._server is not None:
            self._server.close()
            close_clients = getattr(self._server, "close_clients", None)   # Python 3.13+:
            if close_clients is not None:                                   # handshakes too
                close_clients()
        for writer in list(self._writers):
            writer.close()
        pending = [t for t in self._connections if not t.done()]
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace_s)
        if pending:
            for writer in list(self._writers):
                writer.transport.abort()
            _, pending = await asyncio.wait(pending, timeout=grace_s)
        for task in pending:          # only a handler that ignored both: should not happen
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace_s)
        if self._server is not None:
            # from Python 3.12 this also waits for the connections' transports to close
            try:
                await asyncio.wait_for(self._server.wait_closed(), grace_s)
            except asyncio.TimeoutError:
                pass

    def stop(self, grace_s=STOP_GRACE_S):
        """Stop serving (after start()): every connection closed and its handler ended,
        the loop closed, the ledger closed. The ledger stays readable until then."""
        thread, loop = self._thread, self._loop
        if thread is not None and thread.is_alive() and loop is not None:
            try:
                future = asyncio.run_coroutine_threadsafe(self._shutdown(grace_s), loop)
                future.result(4 * grace_s + 5)
            except concurrent.futures.TimeoutError:
                self.log("stopping: the connections did not close in time")
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(10)
        self._thread = None
        self.ledger.close()


async def _close(writer):
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, ssl.SSLError, OSError):
        pass                          # the connection is gone either way


def _finish(loop):
    """Close a loop whose run_forever() has returned, ending what is left on it first."""
    try:
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


# -- the command ------------------------------------------------------------------------------------

def _listen(value):
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("must be host:port, e.g. 127.0.0.1:8583")
    return host or "127.0.0.1", int(port)


def _bdk(value):
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) != 16:
        raise argparse.ArgumentTypeError("must be 32 hex digits (a double-length TDES key)")
    return value.upper()


def _aes_bdk(value):
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) not in (16, 24, 32):
        raise argparse.ArgumentTypeError("must be 32, 48 or 64 hex digits (an AES-128, -192 "
                                         "or -256 key)")
    return value.upper()


def build_parser():
    p = argparse.ArgumentParser(prog="handpos hostsim",
                                description="the acquirer host simulator (ISO 8583 over TCP/TLS)")
    p.add_argument("--listen", type=_listen, default=DEFAULT_LISTEN,
                   help="address to listen on (default %s)" % DEFAULT_LISTEN)
    p.add_argument("--data", default=DEFAULT_DATA,
                   help="directory for the ledger and the test CA (default %s)" % DEFAULT_DATA)
    p.add_argument("--no-tls", action="store_true", help="plain TCP (the terminal's host.tls = false)")
    p.add_argument("--slow-ms", type=int, default=DEFAULT_SLOW_MS,
                   help="delay of the slow (.97) reply, ms (default %d)" % DEFAULT_SLOW_MS)
    p.add_argument("--bdk", type=_bdk, default=DEFAULT_BDK,
                   help="DUKPT base derivation key, 32 hex digits (default: the ANSI X9.24 test BDK)")
    p.add_argument("--aes-bdk", type=_aes_bdk, default=DEFAULT_AES_BDK,
                   help="AES DUKPT base derivation key, 32/48/64 hex digits (default: the "
                        "ANSI X9.24-3 test BDK)")
    p.add_argument("--disagree", type=int, default=0, metavar="N",
                   help="answer the first N settlements (0500 920000) 95, out of balance, "
                        "whatever the totals: the terminal uploads its batch (0320s)")
    p.add_argument("--settle-error", default="", metavar="CODE",
                   help="answer the first settlement message (0500) with this response code "
                        "(2 characters, e.g. 96) and close nothing")
    p.add_argument("--quiet", action="store_true", help="print only the start-up lines")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    data = os.path.abspath(args.data)

    def log(line):
        if not args.quiet:
            sys.stdout.write("%s hostsim: %s\n" % (time.strftime("%H:%M:%S"), line))
            sys.stdout.flush()

    if args.settle_error and (len(args.settle_error) != 2 or not args.settle_error.isalnum()):
        sys.stderr.write("hostsim: --settle-error must be a 2-character response code\n")
        return 2
    sim = HostSim(data, tls=not args.no_tls, slow_ms=args.slow_ms, bdk=args.bdk, log=log,
                  aes_bdk=args.aes_bdk)
    if args.disagree > 0:
        sim.disagree(args.disagree)
    if args.settle_error:
        sim.fail_settlement(args.settle_error)
    host, port = args.listen

    async def run():
        server = await sim.serve(host, port)
        print("hostsim: listening on %s:%d (%s)" % (sim.address[0], sim.address[1],
                                                    "TLS" if sim.tls else "plain TCP, no TLS"))
        if sim.tls:
            print("hostsim: %s test CA: %s" % ("made a new" if sim.tls["created"] else "using the",
                                             sim.tls["ca"]))
            print("hostsim: pin it in the terminal's configuration: [host] ca_file = \"%s\""
                  % sim.tls["ca"])
        print("hostsim: ledger %s" % sim.ledger.path)
        if not sim.pins.available():
            print("hostsim: firmware/security/dukpt.py not found: PIN transactions are answered 96")
        sys.stdout.flush()
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        sys.stderr.write("hostsim: cannot listen on %s:%d: %s\n" % (host, port, exc.strerror or exc))
        return 1
    finally:
        sim.ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
