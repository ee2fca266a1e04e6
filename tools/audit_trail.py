"""`handpos audit verify` and `handpos audit export`: the terminal's audit trail checked
record by record against its chain, and written out for the back office (docs/audit.md).

Both only read: the store is opened read-only (nothing created, migrated or sealed),
so they may run beside the terminal. Exit status: 0 the trail is intact, 1 it is not
(each problem named by record number), 2 it could not be checked at all.
"""
import os
import sqlite3
import sys

from tools import journal_export

COLUMNS = ("seq", "utc", "event", "operator", "detail", "mac", "check")


class Refused(Exception):
    """The trail cannot be read: the one line says why."""


def _say(line):
    sys.stderr.write("handpos audit: " + line + "\n")
    sys.stderr.flush()


def read_rows(data_dir):
    """Every record of the store's trail, in number order, read-only."""
    path = os.path.join(data_dir, "handpos.db")
    if not os.path.exists(path):
        raise Refused("no store in %s (handpos.db): the terminal has recorded nothing there "
                      "yet; check --data or --config" % data_dir)
    try:
        db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    except sqlite3.Error as exc:
        raise Refused("%s does not open (%s): check the SD card" % (path, exc))
    db.text_factory = lambda raw: raw.decode("utf-8", "replace")
    try:
        columns = [r[1] for r in db.execute("PRAGMA table_info(audit)")]
        if "mac" not in columns:
            raise Refused("the trail in %s is not sealed yet: it is sealed at the terminal's "
                          "first start under this release" % path)
        return db.execute("SELECT seq, utc, event, operator, detail, prev, mac FROM audit "
                          "ORDER BY seq").fetchall()
    except sqlite3.Error as exc:
        raise Refused("the trail in %s cannot be read (%s): copy handpos.db from the device "
                      "backup and check that" % (path, exc))
    finally:
        db.close()


def check(profile, data_dir):
    """(rows, verdict, chain) of the terminal's trail; Refused when it cannot be read."""
    from board import datadir
    from drivers import audittrail
    from firmware.core.store import StorageFault
    try:
        keys = datadir.open_keys(profile, data_dir)
    except StorageFault as exc:         # KeyStoreError among them
        hint = ""
        if os.path.exists(os.path.join(data_dir, "sim.lock")) and \
                profile.get("board", {}).get("name") != "sim":
            hint = " (a simulator's data folder: add --board sim)"
        raise Refused("the terminal's keys do not open: %s%s" % (exc, hint))
    rows = read_rows(data_dir)
    chain = audittrail.open_chain(keys)
    verdict = chain.verify(rows)
    if chain.head_problem:              # damaged rather than missing: say which
        verdict.problems = [p if p[1] != "head" else (p[0], p[1], chain.head_problem + ": "
                                                      "whether the last records were removed "
                                                      "cannot be told") for p in verdict.problems]
    return rows, verdict, chain


def verify(args, profile, data_dir, out=None):
    out = out or sys.stdout
    try:
        rows, verdict, chain = check(profile, data_dir)
    except Refused as exc:
        _say("not checked: %s" % exc)
        return 2
    head = chain.read_head()
    for seq, kind, text in verdict.problems:
        out.write("#%d %s: %s\n" % (seq, kind, text))
    for seq, utc, detail in verdict.breaks:
        out.write("#%d the terminal found the trail broken (%s): %s\n" % (seq, utc, detail))
    if rows:
        what = "%s (%d records)" % (_span(rows[0][0], rows[-1][0]), len(rows))
    else:
        what = "no records"
    before = ""
    if head is not None and head.sealed_to:
        before = "; %s were written before the chain and sealed as found on %s" % (
            _span(head.start, head.sealed_to), head.since or "?")
    if verdict.ok():
        out.write("handpos audit: the trail is intact: %s, each sealed to the one before; "
                  "the sealed head names #%d%s\n" % (what, head.seq if head else 0, before))
        out.flush()
        return 0
    out.flush()
    _say("the trail is NOT intact: %d problem%s in %s, first at #%d%s" % (
        len(verdict.problems), "" if len(verdict.problems) == 1 else "s", what,
        verdict.first_bad(), before))
    return 1


def _span(a, b):
    return "#%d" % a if a == b else "#%d-#%d" % (a, b)


def export_rows(rows, verdict):
    """One dict a record (COLUMNS), in number order; a record removed from the trail is a
    row of its own with only its number and what happened to it."""
    problems = verdict.by_seq()
    present = set(r[0] for r in rows)
    out = []
    for seq, utc, event, operator, detail, prev, mac in rows:
        out.append({"seq": seq, "utc": utc, "event": event, "operator": operator,
                    "detail": detail, "mac": bytes(mac).hex() if mac is not None else "",
                    "check": problems.get(seq, "ok")})
    for seq, text in problems.items():
        if seq not in present:
            out.append({"seq": seq, "utc": "", "event": "", "operator": "", "detail": "",
                        "mac": "", "check": text})
    out.sort(key=lambda r: r["seq"])
    return out


def to_csv(rows):
    return journal_export.to_csv(rows, COLUMNS)     # the back office reads both alike


def to_json(rows):
    return journal_export.to_json(rows, COLUMNS)


def export(args, profile, data_dir, out=None):
    from tools.journal_export import Refused as WriteRefused
    try:
        rows, verdict, chain = check(profile, data_dir)
        listed = export_rows(rows, verdict)
        journal_export.deliver(args, to_json(listed) if args.format == "json"
                               else to_csv(listed), out)
    except (Refused, WriteRefused) as exc:
        _say("refused: %s; nothing was written" % exc)
        return 2
    where = args.output or "standard output"
    if verdict.ok():
        _say("%d records written to %s; the trail is intact" % (len(rows), where))
        return 0
    _say("%d records written to %s; the trail is NOT intact: %d problem%s, first at #%d "
         "(the check column says what)" % (len(rows), where, len(verdict.problems),
                                           "" if len(verdict.problems) == 1 else "s",
                                           verdict.first_bad()))
    return 1


def command(args, profile, data_dir):
    if args.action == "verify":
        return verify(args, profile, data_dir)
    return export(args, profile, data_dir)
