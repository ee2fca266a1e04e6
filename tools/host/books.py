"""The terminal's books read without the terminal, for the chaos driver's reconciliation.

The journal (DATA/journal.db) and the store-and-forward queue (DATA/saf.db) are SQLite
in WAL mode. The files are copied (with their -wal and -shm) into a scratch directory
and the copies opened: the terminal's own files are never opened for writing, not even
by SQLite's recovery of a WAL, and this works on a terminal killed mid-write. Only
clear columns are read (the queue's payloads stay sealed).

A database that SQLite cannot read (a flipped byte in a page header, a torn file) is
not an exception here: read_books() says so in "problems", and the reconciliation
names it, because a terminal that cannot be audited is a finding.
"""
import os
import shutil
import sqlite3
import tempfile

JOURNAL = "journal.db"
QUEUE = "saf.db"


def _copy_db(src_dir, name, dst_dir):
    src = os.path.join(src_dir, name)
    if not os.path.exists(src):
        return None
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(src + suffix):
            shutil.copyfile(src + suffix, os.path.join(dst_dir, name + suffix))
    return os.path.join(dst_dir, name)


def _rows(path, sql):
    db = sqlite3.connect(path)
    try:
        db.row_factory = sqlite3.Row
        # a flipped byte may leave text that is not UTF-8: read it, marked, not fail
        db.text_factory = lambda b: b.decode("utf-8", "replace")
        return [dict(r) for r in db.execute(sql).fetchall()]
    finally:
        db.close()


def _tables(path):
    return {r["name"] for r in _rows(path, "SELECT name FROM sqlite_master WHERE type='table'")}


def read_books(data_dir):
    """{"journal": [records], "queue": [records], "flags": [{id, utc, what}],
    "integrity": {"journal": "ok" | what quick_check said, ...}, "problems": [str]}"""
    out = {"journal": [], "queue": [], "flags": [], "integrity": {}, "problems": []}
    scratch = tempfile.mkdtemp(prefix="handpos-books-")
    try:
        for name, key in ((JOURNAL, "journal"), (QUEUE, "queue")):
            try:
                path = _copy_db(data_dir, name, scratch)
            except OSError as exc:
                out["problems"].append("%s: cannot copy: %s" % (name, exc))
                continue
            if path is None:
                out["problems"].append("%s: missing" % name)
                continue
            try:
                check = _rows(path, "PRAGMA quick_check")
                words = [list(r.values())[0] for r in check]
                out["integrity"][key] = "ok" if words == ["ok"] else "; ".join(words[:5])
                tables = _tables(path)
                if key == "journal":
                    out["journal"] = _rows(path, "SELECT * FROM txns ORDER BY id")
                    if "flags" in tables:
                        out["flags"] = _rows(path, "SELECT * FROM flags ORDER BY id")
                else:
                    out["queue"] = _rows(path, "SELECT id, kind, state, amount, stan, tid, "
                                               "attempts, last_error, rc FROM saf ORDER BY id")
            except sqlite3.Error as exc:
                out["problems"].append("%s: unreadable: %s" % (name, exc))
                out["integrity"].setdefault(key, "unreadable: %s" % exc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for rec in out["journal"]:
        for k in list(rec):
            if isinstance(rec[k], bytes):
                rec[k] = rec[k].hex()
    return out


def money(mismatches, journal, bookings):
    """Money at stake in the reconciliation's findings, by kind:
    lost (approved on the terminal, the host has nothing: the merchant was not paid; or
    booked at the host, unknown to the terminal: charged without a record), doubled
    (booked more than once), unreversed (reversed on the terminal, approved at the host)."""
    out = {"lost": 0, "lost_amount": 0, "doubled": 0, "doubled_amount": 0,
           "unreversed": 0, "unreversed_amount": 0}
    for m in mismatches:
        amount = 0
        for part in m.split():
            if part.count(".") == 1 and part.replace(".", "").isdigit():
                amount = int(part.replace(".", ""))
                break
        if m.startswith("1:") and "booked" in m and "times" in m:
            out["doubled"] += 1
            out["doubled_amount"] += amount
        elif m.startswith("1:") and ("not booked" in m or "still queued" in m):
            out["lost"] += 1
            out["lost_amount"] += amount
        elif m.startswith("3:"):
            out["lost"] += 1
            out["lost_amount"] += amount
        elif m.startswith("2:") or m.startswith("5:"):
            out["unreversed"] += 1
            out["unreversed_amount"] += amount
    return out
