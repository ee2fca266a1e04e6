"""The terminal's keys at rest: wrapped under the device key root, sealed in small files.

    key root (drivers/keyroot.py: OTP, TPM, or a root-only file in the lab)
      └─ KEK = HKDF(root, "handpos kek v1")
           └─ DATA/keys/keys.wrapped: each key AES-256-GCM under the KEK
                data    the offline queue's records, the journal's and queue's MACs
                dukpt   the DUKPT state file (DATA/keys/dukpt.state)
                pepper  the operator PIN hashes
                audit   the audit trail's MACs
                qr      the QR acquirer's merchant key file (DATA/keys/qr.merchant)

Copying the data folder copies only ciphertext: without the device's root nothing in
it opens. A wrapped-keys file that does not open under this device's root (an SD card
moved to another terminal, a root replaced, a byte flipped) is a fault that names what
happened; nothing here ever makes new keys over old ones, because new keys would make
every record sealed under the old ones unreadable.

Every file this module writes is written whole or not at all: a temporary file in the
same folder, fsync, rename, fsync of the folder; mode 0600 whatever the umask.
"""
import errno
import json
import os
import stat

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.core.store import CORRUPT, FULL, IO, StorageFault

WRAPPED = "keys.wrapped"
LEGACY_DATA_KEY = "data.key"        # the clear data key of releases before the key root
NAMES = ("data", "dukpt", "pepper", "audit", "qr")
KEY_BYTES = 32
FORMAT = "handpos-keys"
KEK_LABEL = b"handpos kek v1"


class KeyStoreError(StorageFault):
    """The keys cannot be used: a storage fault of the part "keys" (the terminal stops
    service and says so); the message says what happened and what to do."""

    def __init__(self, kind, detail, part="keys"):
        StorageFault.__init__(self, kind, part, detail)
        # keys that do not open stay a fault until a technician acts (no retry mends
        # them); a full or failing card during a key update is retried like any other
        self.standing = kind == CORRUPT

    def __str__(self):
        return self.detail


class SealedMissing(KeyStoreError):
    """A sealed file that is not there (the caller decides whether that is news)."""

    def __init__(self, detail, part="keys"):
        KeyStoreError.__init__(self, CORRUPT, detail, part)


def _os_fault(exc, what, part="keys"):
    if exc.errno == errno.ENOSPC:
        return KeyStoreError(FULL, "%s: the SD card is full; free space, nothing was "
                                   "changed" % what, part)
    return KeyStoreError(IO, "%s: %s; check the SD card" % (what, exc.strerror), part)


def check_private(path, st=None, part="keys"):
    """None, or one line naming a file or folder that others may read, or that is not
    this user's, with the command that fixes it."""
    st = st or os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "%s is a symbolic link: put the file itself there" % path
    if st.st_uid != os.geteuid():
        return "%s belongs to uid %d, not to the user handpos runs as (%d): chown %d %s" % (
            path, st.st_uid, os.geteuid(), os.geteuid(), path)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        if mode & 0o077:
            return "%s is open to other users (mode %03o): chmod 700 %s" % (path, mode, path)
    elif mode & 0o077:
        return "%s is open to other users (mode %03o): chmod 600 %s" % (path, mode, path)
    return None


def write_atomic(path, data, part="keys", what=None):
    """path holds data, whole, 0600, on the card before this returns; or it is as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    what = what or path
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise _os_fault(exc, what, part)


def _read_private(path, part, limit=65536):
    """The bytes of a private file, refusing one that others may read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SealedMissing("%s is missing" % path, part)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyStoreError(CORRUPT, "%s is a symbolic link: put the file itself there"
                                % path, part)
        raise _os_fault(exc, path, part)
    try:
        problem = check_private(path, os.fstat(fd), part)
        if problem:
            raise KeyStoreError(CORRUPT, problem, part)
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise _os_fault(exc, path, part)
    finally:
        os.close(fd)


class SealedFile:
    """A small secret file: AES-256-GCM under key, its purpose bound in as associated
    data (a file sealed for one purpose does not open as another). Each write is a
    whole new file with a fresh nonce, replacing the last atomically."""

    def __init__(self, path, key, purpose, part="keys"):
        self.path = path
        self._aead = AESGCM(bytes(key))
        self.aad = b"handpos sealed|" + purpose.encode()
        self.part = part

    def exists(self):
        return os.path.lexists(self.path)

    def read(self):
        raw = _read_private(self.path, self.part)
        if len(raw) < 12 + 16:
            raise KeyStoreError(CORRUPT, "%s is truncated (%d bytes): it cannot be used; a "
                                "technician loads the key again" % (self.path, len(raw)), self.part)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], self.aad)
        except InvalidTag:
            raise KeyStoreError(CORRUPT, "%s does not open under this terminal's keys (damaged, "
                                "or from another terminal): a technician loads the key again"
                                % self.path, self.part)

    def write(self, clear):
        nonce = os.urandom(12)
        write_atomic(self.path, nonce + self._aead.encrypt(nonce, bytes(clear), self.aad),
                     self.part)


def _shred(path):
    """Overwrite a clear key file before unlinking it. The SD card's wear levelling may
    keep the old block: this removes it from the file system, not from the flash."""
    try:
        size = os.path.getsize(path)
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.write(fd, os.urandom(size))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(path)
    except FileNotFoundError:
        pass


class KeyStore:
    """The wrapped keys of one terminal. open() or create(); then key(name)."""

    def __init__(self, folder, root):
        self.folder = folder
        self.root = root
        self.path = os.path.join(folder, WRAPPED)
        self._keys = {}
        self.migrated = False           # True when a clear data.key was wrapped this start

    def exists(self):
        return os.path.lexists(self.path) or os.path.lexists(
            os.path.join(self.folder, LEGACY_DATA_KEY))

    def _aead(self):
        return AESGCM(self.root.kek(KEK_LABEL))

    def open(self, create=False):
        """Unwrap every key. create=True is a terminal's first start: the keys are made
        (or a clear data.key of an older release is wrapped, then shredded). Raises
        KeyStoreError."""
        try:
            raw = _read_private(self.path, "keys")
        except SealedMissing:
            legacy = os.path.join(self.folder, LEGACY_DATA_KEY)
            if os.path.lexists(legacy):
                return self._migrate(legacy)
            if not create:
                raise KeyStoreError(CORRUPT, "the terminal's keys (%s) are missing but it has "
                                    "data: restore the key folder from the device backup; "
                                    "nothing was deleted" % self.path)
            self._keys = dict((n, os.urandom(KEY_BYTES)) for n in NAMES)
            self._write()
            return self
        self._keys = self._unwrap(raw)
        missing = [n for n in NAMES if n not in self._keys]
        if missing:                     # a key a later release added: made once, kept
            for name in missing:
                self._keys[name] = os.urandom(KEY_BYTES)
            self._write()
        return self

    def _unwrap(self, raw):
        try:
            doc = json.loads(raw.decode())
            if doc.get("format") != FORMAT or doc.get("version") != 1:
                raise ValueError("format")
            wrapped = doc["keys"]
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeError):
            raise KeyStoreError(CORRUPT, "%s is damaged (not a key file): restore the key "
                                "folder from the device backup" % self.path)
        aead = self._aead()
        keys = {}
        for name in wrapped:
            try:
                blob = bytes.fromhex(wrapped[name])
                key = aead.decrypt(blob[:12], blob[12:], b"handpos key|" + name.encode())
            except (ValueError, TypeError, InvalidTag):
                raise KeyStoreError(CORRUPT, "%s does not open under this device's key root "
                                    "(%s): the SD card is from another terminal, the key root "
                                    "was replaced, or the file is damaged; put the card back "
                                    "in its own terminal or restore the backup"
                                    % (self.path, self.root.describe()))
            if len(key) != KEY_BYTES:
                raise KeyStoreError(CORRUPT, "%s: key %s has the wrong length" % (self.path, name))
            keys[name] = key
        return keys

    def _write(self):
        aead = self._aead()
        wrapped = {}
        for name in sorted(self._keys):
            nonce = os.urandom(12)
            wrapped[name] = (nonce + aead.encrypt(nonce, self._keys[name],
                                                  b"handpos key|" + name.encode())).hex()
        doc = {"format": FORMAT, "version": 1, "root": self.root.kind, "keys": wrapped}
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise _os_fault(exc, self.folder)
        write_atomic(self.path, json.dumps(doc, sort_keys=True).encode() + b"\n")

    def _migrate(self, legacy):
        raw = _read_private(legacy, "keys")
        if len(raw) != KEY_BYTES:
            raise KeyStoreError(CORRUPT, "data key %s is damaged (%d bytes, expected %d): "
                                "restore it from the device backup" % (legacy, len(raw), KEY_BYTES))
        self._keys = dict((n, os.urandom(KEY_BYTES)) for n in NAMES)
        self._keys["data"] = raw
        self._write()                   # the wrapped copy is on the card first ...
        _shred(legacy)                  # ... then the clear one goes
        self.migrated = True
        return self

    def key(self, name):
        return self._keys[name]

    def replace(self, name, key):
        """Put a key loaded at provisioning (tools/provision.py) in place of name, the
        file written whole or not at all; on failure the old key stays, in memory too."""
        if name not in NAMES or len(key) != KEY_BYTES:
            raise ValueError("a %d-byte key for one of %s" % (KEY_BYTES, ", ".join(NAMES)))
        old = self._keys.get(name)
        self._keys[name] = bytes(key)
        try:
            self._write()
        except BaseException:
            self._keys[name] = old
            raise

    def sealed(self, filename, name, purpose, part="keys"):
        """A SealedFile in the key folder under one of the keys."""
        return SealedFile(os.path.join(self.folder, filename), self._keys[name], purpose, part)


# -- the QR acquirer's merchant key (issue 13): loaded by a technician (`handpos qr-key
# load`, tools/cli.py), read by the composition root (board/compose.py build_qr)
QR_FILE = "qr.merchant"
QR_PURPOSE = "qr merchant key"
QR_PART = "qrkey"
QR_KEY_LEN = (16, 128)          # characters: HMAC-SHA256 keys as acquirers issue them
QR_MCH_ID_LEN = (6, 32)         # digits


def qr_sealed(keys):
    """The SealedFile of the merchant key in keys' folder, under the "qr" key."""
    return keys.sealed(QR_FILE, "qr", QR_PURPOSE, part=QR_PART)


def qr_fingerprint(key):
    """What may be shown of a merchant key: the first 8 hex digits of its SHA-256."""
    import hashlib
    if isinstance(key, str):
        key = key.encode()
    return hashlib.sha256(key).hexdigest()[:8]


def qr_key_problem(mch_id, key):
    """None, or one line saying what is wrong with a merchant number and key (the key
    as text: printable ASCII, no spaces, of a sensible length). Never quotes the key."""
    lo, hi = QR_MCH_ID_LEN
    if not isinstance(mch_id, str) or not mch_id:
        return "no merchant number: give --mch-id (or set [qr] mch_id)"
    if not (mch_id.isascii() and mch_id.isdigit() and lo <= len(mch_id) <= hi):
        return ("the merchant number %r is not %d to %d digits" % (mch_id, lo, hi))
    lo, hi = QR_KEY_LEN
    if not isinstance(key, str) or not key:
        return "the merchant key is empty"
    if not all(0x21 <= ord(c) <= 0x7e for c in key):
        return ("the merchant key holds spaces, control or non-ASCII characters: it must be "
                "the key as the acquirer gave it, printable ASCII on one line")
    if not lo <= len(key) <= hi:
        return "the merchant key is %d characters long: an acquirer's key is %d to %d" % (
            len(key), lo, hi)
    return None


def read_qr_key(keys):
    """{"mch_id", "key", "loaded_utc"} from the sealed file, or None when there is none.
    Raises KeyStoreError (part qrkey) for a file that does not open or is not a
    merchant key, saying a technician loads it again."""
    sealed = qr_sealed(keys)
    try:
        raw = sealed.read()
    except SealedMissing:
        return None
    try:
        doc = json.loads(raw.decode())
        if qr_key_problem(doc["mch_id"], doc["key"]) or not isinstance(doc["loaded_utc"], str):
            raise ValueError("content")
    except (ValueError, KeyError, TypeError, UnicodeError):
        raise KeyStoreError(CORRUPT, "%s opens but holds no merchant key: a technician loads "
                            "the key again (handpos qr-key load)" % sealed.path, QR_PART)
    return {"mch_id": doc["mch_id"], "key": doc["key"], "loaded_utc": doc["loaded_utc"]}


def write_qr_key(keys, mch_id, key, loaded_utc):
    """Seal the merchant number and key (whole, or the old file stays). ValueError for a
    bad number or key; KeyStoreError when the card does not take it."""
    problem = qr_key_problem(mch_id, key)
    if problem:
        raise ValueError(problem)
    doc = {"mch_id": mch_id, "key": key, "loaded_utc": loaded_utc}
    qr_sealed(keys).write(json.dumps(doc, sort_keys=True).encode())
