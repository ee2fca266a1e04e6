"""The terminal's data in one file: made before every update, brought back with
`handpos backup restore` (docs/updates.md, "The backup file").

One uncompressed tar:

    backup.json    {"format", "tid", "created_utc", "release", "files": [{"name", "size",
                    "sha256"}], "config_path"}
    backup.mac     HMAC-SHA256 of backup.json's bytes under a key derived from the
                   terminal's data key (drivers/sqlite_durable.mac_key(data key, "backup"))
    data/<name>    the journal, the offline queue, the store (operators, settings, the
                   audit trail), the catalogue, members.db when there is one (each a
                   consistent copy: SQLite's VACUUM INTO, so no free page of old data
                   rides along), terminal.state, and keys/ exactly as at rest (wrapped
                   under the device's key root)
    config.toml    the configuration file the terminal ran with

Nothing in it is in clear that is not in clear on the SD card: the keys stay wrapped
under the key root, which never leaves the device (OTP, TPM). So the file is only of use
to the terminal that made it: restore unwraps the backup's own keys with this device's
root, and checks the MAC with the data key found there. Another terminal's backup does
not unwrap (or names another TID); a damaged one fails its MAC or a file's hash. Either
is refused with one line, and nothing is written.
"""
import hashlib
import hmac
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time

FORMAT = "handpos-backup/1"
DATABASES = ("handpos.db", "journal.db", "saf.db", "catalogue.db", "members.db")
PLAIN = ("terminal.state",)
KEEP = 3                    # backups kept in DATA/backups (the oldest go)
MAX_MEMBER = 2 * 1024 ** 3


class BackupError(Exception):
    """Refused: str() is the one line saying why and what to do."""


def _mac_key(data_key):
    from drivers.sqlite_durable import mac_key
    return mac_key(data_key, "backup")


def _copy_db(src, dest):
    """A consistent copy of a live or stopped database (WAL included), compacted."""
    db = sqlite3.connect("file:%s?mode=ro" % src, uri=True)
    try:
        db.execute("VACUUM INTO ?", (dest,))
    finally:
        db.close()


def create(data_dir, keys, tid, config_path=None, release="", out_dir=None, now=time.gmtime):
    """Write DATA/backups/backup-TID-STAMP.hpbak (or in out_dir); its path.
    keys: the terminal's open KeyStore (its data key MACs the file)."""
    out_dir = out_dir or os.path.join(data_dir, "backups")
    os.makedirs(out_dir, mode=0o700, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", now())
    path = os.path.join(out_dir, "backup-%s-%s.hpbak" % (tid, stamp))
    members = []
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        for name in DATABASES:
            src = os.path.join(data_dir, name)
            if os.path.exists(src):
                dest = os.path.join(tmp, name)
                _copy_db(src, dest)
                members.append(("data/" + name, dest))
        for name in PLAIN:
            if os.path.exists(os.path.join(data_dir, name)):
                members.append(("data/" + name, os.path.join(data_dir, name)))
        kdir = os.path.join(data_dir, "keys")
        if os.path.isdir(kdir):
            for name in sorted(os.listdir(kdir)):
                full = os.path.join(kdir, name)
                if os.path.isfile(full) and not name.endswith(".tmp"):
                    members.append(("data/keys/" + name, full))
        if config_path and os.path.isfile(config_path):
            members.append(("config.toml", config_path))
        blobs = []
        for name, full in members:
            with open(full, "rb") as f:
                blobs.append((name, f.read()))
        doc = {"format": FORMAT, "tid": tid, "created_utc": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", now()), "release": release,
            "config_path": os.path.abspath(config_path) if config_path else "",
            "files": [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                      for n, d in blobs]}
        body = json.dumps(doc, indent=1, sort_keys=True).encode()
        mac = hmac.new(_mac_key(keys.key("data")), body, hashlib.sha256).digest()
        part = path + ".part"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name, data in [("backup.json", body), ("backup.mac", mac)] + blobs:
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime = len(data), 0o600, 0
                    tar.addfile(info, io.BytesIO(data))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(part, path)
    _prune(out_dir)
    return path


def _prune(out_dir):
    names = sorted(n for n in os.listdir(out_dir) if n.endswith(".hpbak"))
    for name in names[:-KEEP]:
        try:
            os.unlink(os.path.join(out_dir, name))
        except OSError:
            pass


def read(path):
    """(doc, mac, {name: bytes}) of the backup at path; BackupError when it is not one
    or is cut short or a file's hash is not the one listed."""
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise BackupError("no backup file %s" % path)
    except IsADirectoryError:
        raise BackupError("%s is a folder, not a backup file" % path)
    except OSError as exc:
        raise BackupError("the backup %s cannot be read (%s)" % (path, exc.strerror))
    files = {}
    try:
        with raw, tarfile.open(fileobj=raw, mode="r:") as tar:
            for info in tar:
                if not info.isfile() or info.size > MAX_MEMBER:
                    raise BackupError("damaged backup: %s is not a file" % info.name)
                data = tar.extractfile(info).read()
                if len(data) != info.size:
                    raise BackupError("damaged backup: cut short in %s" % info.name)
                files[info.name] = data
    except (tarfile.TarError, EOFError) as exc:
        raise BackupError("damaged backup: %s (cut short, or not a backup file)" % exc)
    try:
        doc = json.loads(files.pop("backup.json").decode("utf-8"))
        mac = files.pop("backup.mac")
        assert doc.get("format") == FORMAT
    except (KeyError, ValueError, UnicodeError, AssertionError, AttributeError):
        raise BackupError("damaged backup: %s is not a handpos backup (no readable "
                          "backup.json)" % path)
    listed = {}
    for entry in doc.get("files", []):
        name = entry.get("name", "")
        data = files.get(name)
        if data is None:
            raise BackupError("damaged backup: %s is missing from it" % name)
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise BackupError("damaged backup: %s does not match its hash" % name)
        listed[name] = data
    if set(files) - set(listed):
        raise BackupError("damaged backup: it holds %s, which it does not list"
                          % sorted(set(files) - set(listed))[0])
    return doc, mac, listed


def _safe_name(name):
    parts = name.split("/")
    return name == "config.toml" or (
        len(parts) in (2, 3) and parts[0] == "data" and ".." not in parts and
        all(p and not p.startswith(".") for p in parts[1:]) and
        (len(parts) == 2 or parts[1] == "keys"))


def check(path, tid, open_keys):
    """The backup's (doc, files) when it is this terminal's and whole; BackupError else.
    open_keys(folder) opens a KeyStore folder with this device's key root (raising a
    StorageFault when the root cannot unwrap it)."""
    from firmware.core.store import StorageFault
    doc, mac, files = read(path)
    bad = [n for n in files if not _safe_name(n)]
    if bad:
        raise BackupError("damaged backup: it names %s, outside a terminal's data" % bad[0])
    if doc.get("tid") != tid:
        raise BackupError("this backup is from terminal %s, and this is %s: restore it on "
                          "that terminal" % (doc.get("tid"), tid))
    key_files = dict((n[len("data/keys/"):], d) for n, d in files.items()
                     if n.startswith("data/keys/"))
    if not key_files:
        raise BackupError("damaged backup: it holds no keys")
    with tempfile.TemporaryDirectory() as tmp:
        kdir = os.path.join(tmp, "keys")
        os.makedirs(kdir, mode=0o700)
        for name, data in key_files.items():
            fd = os.open(os.path.join(kdir, name), os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        try:
            keys = open_keys(kdir)
        except StorageFault as exc:
            raise BackupError("this backup's keys do not open with this terminal's key root "
                              "(made on another device, or damaged): %s" % exc)
        want = hmac.new(_mac_key(keys.key("data")), json.dumps(
            doc, indent=1, sort_keys=True).encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(want, mac):
        raise BackupError("damaged backup: its seal does not match (altered, or made on "
                          "another device)")
    return doc, files


def restore(path, data_dir, tid, open_keys, config_path=None):
    """Put the backup's files back in data_dir (the terminal stopped: the caller holds
    its locks): each written beside and renamed over, the databases' -wal/-shm removed
    first so SQLite does not replay an old log over a restored file. Returns the doc."""
    doc, files = check(path, tid, open_keys)
    staged = []
    stage = os.path.join(data_dir, ".restore")
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(os.path.join(stage, "keys"), mode=0o700)
    for name, data in sorted(files.items()):
        if name == "config.toml":
            continue
        rel = name[len("data/"):]
        tmp = os.path.join(stage, rel)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        staged.append((tmp, os.path.join(data_dir, rel)))
    os.makedirs(os.path.join(data_dir, "keys"), mode=0o700, exist_ok=True)
    for tmp, dest in staged:
        if dest.endswith(".db"):
            for suffix in ("-wal", "-shm", "-journal"):
                if os.path.exists(dest + suffix):
                    os.unlink(dest + suffix)
        os.replace(tmp, dest)
    shutil.rmtree(stage, ignore_errors=True)
    config = files.get("config.toml")
    if config is not None and config_path:
        try:
            with open(config_path, "rb") as f:
                same = f.read() == config
        except OSError:
            same = False
        if not same:
            tmp = config_path + ".restore"
            with open(tmp, "wb") as f:
                f.write(config)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, config_path)
    return doc
