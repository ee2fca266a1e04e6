"""`handpos journal export --day YYYY-MM-DD --format csv|json [--output FILE]`: one
terminal day of the transaction journal for the back office (docs/close-of-day.md,
"Export for the back office").

One row per record whose local day (its UTC stamp plus the offset it was recorded with)
is the day asked for, oldest first. Card numbers only as the journal keeps them, masked
(first six and last four at most; a value that shows more digits is masked again here).

The amounts add up to the Z report: amount_minor is signed (a sale +, a refund -, a void
- : a void gives the voided sale's money back) and in_net is 1 for the records the Z's
net counts (an approved sale or refund: net = approved sales - approved refunds). A
voided sale keeps its state "voided" and in_net 0, and so does its void record: the
pair is the Z's voids line, not its net. So, for each currency,

    sum(amount_minor for rows with in_net = 1) == the Z report's net

to the cent, for a day that is one batch (batch is a column, for days that are not).

The journal is read, never written: drivers/journal_sqlite.py's read-only journal
(SQLite's read-only mode) in one read transaction, so it runs while the terminal does
(WAL: a reader does not stop the writer, and sees the journal as it was when it began).
Every record it returns has passed its MAC check there, as the terminal's reads do; one
that fails is left out and named on stderr by its number, and the exit status is 1.

Exit status: 0 written; 1 written without the damaged records named on stderr; 2
nothing written (the one line on stderr says why).
"""
import csv
import datetime
import io
import json
import os
import re
import sqlite3
import sys

from firmware.core.money import CURRENCIES, format_amount

COLUMNS = ("id", "local_time", "kind", "method", "brand", "entry", "pan_masked",
           "amount", "amount_minor", "currency", "state", "in_net", "stan", "rrn",
           "auth_code", "operator", "batch", "offline", "upload", "original_id")
NEGATIVE = ("refund", "void")           # kinds that give money back
IN_NET = ("sale", "refund")             # kinds the Z's net counts, when approved
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Refused(Exception):
    """Nothing can be exported: the one line says why."""


def _say(line):
    sys.stderr.write("handpos journal: " + line + "\n")
    sys.stderr.flush()


# -- the day ------------------------------------------------------------------------
def parse_day(text):
    """'2026-06-30' -> date; Refused naming the form otherwise."""
    if not _DAY.match(text or ""):
        raise Refused("--day %r is not a day: write it YYYY-MM-DD (2026-06-30)" % (text,))
    try:
        return datetime.date(int(text[:4]), int(text[5:7]), int(text[8:]))
    except ValueError:
        raise Refused("--day %s is not a day of the calendar" % text)


def local_time(rec):
    """The record's wall-clock time where it was taken: '2026-06-30T14:05:33+08:00'
    (None when its stamp cannot be read)."""
    try:
        utc = datetime.datetime.strptime(rec["utc"], "%Y-%m-%dT%H:%M:%SZ")
        tz = int(rec["tz_min"])
    except (TypeError, ValueError):
        return None
    local = utc + datetime.timedelta(minutes=tz)
    sign = "-" if tz < 0 else "+"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + "%s%02d:%02d" % (sign, abs(tz) // 60, abs(tz) % 60)


# -- card numbers -------------------------------------------------------------------
def masked(text):
    """A stored masked number as it may leave the terminal: at most the first six and
    the last four digits (DESIGN.md); a value showing more is masked again here."""
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    if len(digits) <= 10:
        return text
    hide = set(digits[6:-4])
    return "".join("*" if i in hide else ch for i, ch in enumerate(text))


# -- rows ---------------------------------------------------------------------------
def signed_minor(rec):
    return -rec["amount"] if rec["kind"] in NEGATIVE else rec["amount"]


def in_net(rec):
    return 1 if rec["state"] == "approved" and rec["kind"] in IN_NET else 0


def row(rec):
    """The export's row of a journal record: {column: value}, text and integers."""
    minor = signed_minor(rec)
    cur = rec["currency"]
    amount = format_amount(minor, cur) if cur in CURRENCIES else str(minor)
    return {"id": rec["id"], "local_time": local_time(rec) or rec["utc"],
            "kind": rec["kind"], "method": rec["method"], "brand": rec["card_label"],
            "entry": rec["entry"], "pan_masked": masked(rec["pan_masked"]),
            "amount": amount, "amount_minor": minor, "currency": cur,
            "state": rec["state"], "in_net": in_net(rec), "stan": rec["stan"],
            "rrn": rec["rrn"], "auth_code": rec["auth_code"], "operator": rec["operator"],
            "batch": rec["batch"], "offline": rec["offline"], "upload": rec["upload"],
            "original_id": rec["original_id"]}


def deliver(args, data, out=None):
    """The export's bytes to --output (whole or not there) or to standard output."""
    if args.output:
        write_output(args.output, data)
    else:
        target = out if out is not None else sys.stdout.buffer
        target.write(data)
        target.flush()


def to_csv(rows, columns=COLUMNS):
    """The back office's CSV: a header row, UTF-8, CRLF (the audit export's too)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([r[c] for c in columns])
    return out.getvalue().encode("utf-8")


def to_json(rows, columns=COLUMNS):
    return (json.dumps([dict((c, r[c]) for c in columns) for r in rows], indent=1,
                       ensure_ascii=False) + "\n").encode("utf-8")


# -- reading ------------------------------------------------------------------------
def journal_path(data_dir):
    """The data folder's journal.db, or Refused when there is none."""
    path = os.path.join(data_dir, "journal.db")
    if not os.path.exists(path):
        raise Refused("no journal in %s (journal.db): the terminal has recorded nothing "
                      "there yet; check --data or --config" % os.path.dirname(path))
    return path


def open_read_only(path, mac_key, rejected):
    """The journal for reading only (SQLiteJournal.open_readonly: SQLite's read-only
    mode, a WAL reader beside the running terminal). Nothing in the journal is written;
    of a stopped terminal's journal SQLite leaves the -wal (empty) and -shm (its index
    of the WAL) beside it, as any reader does, with journal.db's mode (0600, the
    terminal's own user: the data folder's checks pass), for the terminal to take over.
    rejected: {id: the record as read} of those that fail their MAC, filled as they
    are met."""
    from drivers.journal_sqlite import SCHEMA_VERSION, JournalError, SQLiteJournal

    def reject(table, rec):
        if table == "txns":
            rejected.setdefault(rec["id"], rec)
    try:
        return SQLiteJournal.open_readonly(path, mac_key, on_rejected=reject)
    except JournalError as exc:
        if exc.schema is not None and exc.schema > SCHEMA_VERSION:
            raise Refused("the journal %s was written by a newer handpos (schema %d): export "
                          "it with that release" % (path, exc.schema))
        if exc.schema is not None:
            raise Refused("the journal %s was written by an older release whose records "
                          "carry no MAC: start the terminal once under this release, then "
                          "export" % path)
        raise Refused("the journal %s cannot be read (%s): check the file, or copy it "
                      "from the device backup" % (path, exc.cause or exc.detail))


def read_day(journal, day, rejected):
    """(records of the day oldest first, [(id, utc) of damaged records]) for a date.

    Candidates are the records stamped within a day either side (an offset is at most
    14 h), read through the journal's index of stamps, each one verified there. A
    damaged record (rejected: the journal's on_rejected) is named when its stamp says
    this day or its number lies among the day's records (its stamp may be what changed).
    """
    lo = (day - datetime.timedelta(days=1)).isoformat()
    hi = (day + datetime.timedelta(days=2)).isoformat()
    want = day.isoformat()
    with journal.snapshot():            # one snapshot: the running terminal writes on
        near = journal.find(utc_from=lo, utc_to=hi)
        ids = [r["id"] for r in near] + list(rejected)
        if ids:                         # the damaged among the day's numbers too
            journal.txns_after(min(ids) - 1, max(ids))
    good = []
    for rec in near:
        stamp = local_time(rec)
        if stamp is not None and stamp[:10] == want:
            good.append(rec)
    first = good[0]["id"] if good else None
    last = good[-1]["id"] if good else None
    bad = []
    for txn_id in sorted(rejected):
        rec = rejected[txn_id]
        stamp = local_time(rec)
        if (stamp is not None and stamp[:10] == want) or \
                (first is not None and first <= txn_id <= last):
            bad.append((txn_id, str(rec["utc"])))
    return good, bad


def write_output(path, data):
    """data to path whole (a file beside it renamed into place), or Refused."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, ".%s.part" % os.path.basename(path))
    if os.path.isdir(path):
        raise Refused("cannot write %s: it is a folder; give a file name" % path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise Refused("cannot write %s: %s; choose a folder you can write to"
                      % (path, exc.strerror or exc))


# -- the command --------------------------------------------------------------------
def command(args, profile, data_dir, out=None):
    """`handpos journal export` on the terminal's data folder data_dir; the exit status.
    out: where the data goes without --output (standard output's bytes)."""
    from drivers.sqlite_durable import mac_key
    from firmware.core.store import StorageFault
    try:
        day = parse_day(args.day)
        path = journal_path(data_dir)
        from board import datadir
        try:
            data_key = datadir.open_keys(profile, data_dir).key("data")
        except StorageFault as exc:     # KeyStoreError among them
            hint = ""
            if os.path.exists(os.path.join(data_dir, "sim.lock")) and \
                    profile.get("board", {}).get("name") != "sim":
                hint = " (a simulator's data folder: add --board sim)"
            raise Refused("the terminal's keys do not open: %s%s" % (exc, hint))
        rejected = {}
        journal = open_read_only(path, mac_key(data_key, "journal"), rejected)
        try:
            good, bad = read_day(journal, day, rejected)
        except (sqlite3.Error, StorageFault) as exc:
            raise Refused("the journal cannot be read (%s): try again; if it stays, "
                          "copy journal.db from the device backup"
                          % getattr(exc, "detail", exc))
        finally:
            journal.close()
        rows = [row(rec) for rec in good]
        deliver(args, to_json(rows) if args.format == "json" else to_csv(rows), out)
    except Refused as exc:
        _say("refused: %s; nothing was written" % exc)
        return 2
    for txn_id, utc in bad:
        _say("record #%d (stamped %s) failed its integrity check: left out of the export; "
             "a supervisor sees it under Diagnostics > Damaged records (docs/storage.md)"
             % (txn_id, utc or "?"))
    where = args.output or "standard output"
    if not rows:
        _say("no transactions on %s (local time): %s holds %s" % (
            day.isoformat(), where, "an empty list" if args.format == "json" else
            "the header alone"))
    else:
        _say("%d transaction%s of %s written to %s%s" % (
            len(rows), "" if len(rows) == 1 else "s", day.isoformat(), where,
            "; %d damaged left out" % len(bad) if bad else ""))
    return 1 if bad else 0
