"""The release root: two release folders side by side, the `current` link that picks one,
and the marks that say which is good, which is on trial and the lowest version that may
ever be installed again (docs/updates.md, "A/B releases").

    ROOT/releases/a/  ROOT/releases/b/    one release each (its files, its manifest.json)
    ROOT/current -> releases/a            switched by rename(2): atomic on a power cut
    ROOT/marks.json                       {"good", "pending", "min_version", "versions", "bad"}
    ROOT/update.log                       one JSON object a line: every step, numbered
    ROOT/incoming/                        a release being written (never run from here)

The order of the writes is what makes a power cut safe:
  1. the new release is written under incoming/ and fsynced, then renamed to the free slot;
  2. marks.json gets "pending" naming that slot (written beside, fsynced, renamed);
  3. `current` is switched.
Cut before 2: current and the marks still name the old release. Cut between 2 and 3:
the pending slot is not the current one, and the launcher (deploy/handpos-launch, the
stable program outside the release folders that systemd starts) drops the pending mark.
Cut after 3: the launcher counts the new release's boots and rolls it back unless its
health check marks it good in time.

The launcher keeps its own copy of the few lines that read and write these files (it
must not run code out of a release folder it may have to reject); tests/test_update_power.py
runs it against what this module writes, so the two cannot drift apart.

Stdlib only, no firmware import: the audit hand-over (audit_log) takes the store.
"""
import json
import os
import shutil
import time

SLOTS = ("a", "b")
MARKS = "marks.json"
LOG = "update.log"
CURRENT = "current"
AUDITED_SETTING = "update.audited_upto"     # the last update.log line the terminal audited


class UpdateError(Exception):
    """Refused or failed: str() is the one line to show."""


def utc():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def version_tuple(text):
    try:
        parts = tuple(int(p) for p in str(text).split("."))
    except ValueError:
        return (0,)
    return parts if len(parts) == 3 else (0,)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path, doc):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(json.dumps(doc, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


class ReleaseRoot:
    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.releases = os.path.join(self.root, "releases")
        self.current_link = os.path.join(self.root, CURRENT)
        self.marks_path = os.path.join(self.root, MARKS)
        self.log_path = os.path.join(self.root, LOG)
        self.incoming = os.path.join(self.root, "incoming")

    # -- what is there ---------------------------------------------------------------
    def exists(self):
        return os.path.lexists(self.current_link)

    def slot_dir(self, slot):
        return os.path.join(self.releases, slot)

    def current_slot(self):
        """The slot `current` points at, or None (no release root yet, or a bad link)."""
        try:
            target = os.readlink(self.current_link)
        except OSError:
            return None
        slot = os.path.basename(os.path.normpath(target))
        return slot if slot in SLOTS else None

    def other_slot(self):
        cur = self.current_slot()
        return "b" if cur == "a" else "a"

    def current_dir(self):
        slot = self.current_slot()
        return self.slot_dir(slot) if slot else None

    def marks(self):
        """The marks; {} when there are none yet. A damaged file: {"damaged": why}."""
        try:
            with open(self.marks_path) as f:
                doc = json.load(f)
            return doc if isinstance(doc, dict) else {"damaged": "not an object"}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            return {"damaged": str(exc)}

    def write_marks(self, marks):
        write_json_atomic(self.marks_path, marks)

    def version_of(self, slot):
        try:
            with open(os.path.join(self.slot_dir(slot), "manifest.json")) as f:
                return json.load(f).get("version")
        except (OSError, ValueError, AttributeError):
            return None

    def min_version(self):
        return self.marks().get("min_version") or "0.0.0"

    # -- the log the terminal audits ---------------------------------------------------
    def log_lines(self):
        out = []
        try:
            with open(self.log_path) as f:
                for line in f:
                    try:
                        doc = json.loads(line)
                    except ValueError:
                        continue        # a line cut by a power cut: not a step
                    if isinstance(doc, dict) and isinstance(doc.get("n"), int):
                        out.append(doc)
        except FileNotFoundError:
            pass
        return out

    def log(self, event, detail=""):
        """Append one numbered step to update.log (fsynced: it is the audit's source)."""
        lines = self.log_lines()
        n = lines[-1]["n"] + 1 if lines else 1
        os.makedirs(self.root, exist_ok=True)
        with open(self.log_path, "a") as f:
            f.write(json.dumps({"n": n, "utc": utc(), "event": event, "detail": detail},
                               sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return n

    # -- the steps of an install -------------------------------------------------------
    def ensure(self):
        for d in (self.root, self.releases, self.incoming):
            os.makedirs(d, exist_ok=True)
        self.clean_incoming()

    def clean_incoming(self):
        """What a cut install left under incoming/: never a release, removed."""
        if os.path.isdir(self.incoming):
            for name in os.listdir(self.incoming):
                shutil.rmtree(os.path.join(self.incoming, name), ignore_errors=True)

    def stage(self, fill, slot):
        """Make releases/slot from fill(folder): written under incoming/ first, synced,
        then renamed into place (the old content of the slot goes first). The slot must
        not be the current one."""
        if slot == self.current_slot():
            raise UpdateError("slot %s runs now: it cannot be written" % slot)
        self.ensure()
        tmp = os.path.join(self.incoming, "%s.%d" % (slot, os.getpid()))
        os.makedirs(tmp)
        result = fill(tmp)
        _sync_tree(tmp)
        dest = self.slot_dir(slot)
        if os.path.lexists(dest):
            old = os.path.join(self.incoming, "%s.old.%d" % (slot, os.getpid()))
            os.rename(dest, old)            # out of the way in one step, removed below
            fsync_dir(self.releases)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, dest)
        fsync_dir(self.releases)
        fsync_dir(self.incoming)
        return result

    def mark_pending(self, slot, version, floor, boots_max, health_s):
        marks = self.marks()
        marks.pop("damaged", None)
        marks["pending"] = {"slot": slot, "version": version, "floor": floor,
                            "from": self.current_slot(), "boots": 0, "boots_max": boots_max,
                            "health_s": health_s, "since": utc(), "failed": ""}
        marks.setdefault("versions", {})[slot] = version
        self.write_marks(marks)

    def switch(self, slot):
        """Point `current` at releases/slot: a new link beside it, renamed over it."""
        tmp = self.current_link + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.join("releases", slot), tmp)
        os.replace(tmp, self.current_link)
        fsync_dir(self.root)

    def confirm(self, slot):
        """The trial release passed its health check: good from now on, and nothing
        older than its floor installs again (anti-rollback)."""
        marks = self.marks()
        pending = marks.get("pending") or {}
        if pending.get("slot") != slot:
            raise UpdateError("no release on trial in slot %s" % slot)
        marks["good"] = slot
        floor = pending.get("floor") or pending.get("version")
        if version_tuple(floor) > version_tuple(marks.get("min_version") or "0.0.0"):
            marks["min_version"] = floor
        marks["pending"] = None
        marks.setdefault("bad", {}).pop(slot, None)
        self.write_marks(marks)
        return marks

    def fail(self, slot, why):
        """The trial release failed its health check: the launcher rolls it back at its
        next start (the caller stops the terminal so that systemd starts it again)."""
        marks = self.marks()
        pending = marks.get("pending") or {}
        if pending.get("slot") != slot:
            return False
        pending["failed"] = why or "health check failed"
        self.write_marks(marks)
        return True


def _sync_tree(folder):
    for base, dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(base, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(base)


def audit_log(root, store, console=None):
    """At the terminal's start: every update.log line it has not audited yet becomes an
    audit row (the terminal is the trail's one writer: docs/audit.md), in order. How
    many were audited. Nothing happens without a release root."""
    if not root or not os.path.isdir(root):
        return 0
    try:
        # "n utc": the last line audited and its time; a bare number from before
        mark = (store.get_setting(AUDITED_SETTING) or "0").split(" ", 1)
        done, done_utc = int(mark[0]), (mark[1] if len(mark) > 1 else None)
    except Exception:
        return 0
    lines = ReleaseRoot(root).log_lines()
    if done_utc is not None and not [x for x in lines
                                     if x["n"] == done and x.get("utc") == done_utc]:
        done = 0        # not the log audited before (a release root made anew): all of it
    n = 0
    for line in lines:
        if line["n"] <= done:
            continue
        try:
            store._audit("update_" + str(line.get("event", "step")), "",
                         ("#%d %s %s" % (line["n"], line.get("utc", ""),
                                         line.get("detail", "")))[:500])
            store.set_setting(AUDITED_SETTING, "%d %s" % (line["n"], line.get("utc", "")))
        except Exception as exc:
            if console:
                console("update log: not audited (%s)" % exc)
            return n
        n += 1
    return n
