"""The device-bound key root: the one secret the key hierarchy is wrapped under.

A board profile's [keyroot] table names where it lives:

    kind = "otp"                      Raspberry Pi 4/5 OTP customer private key, read
                                      through the firmware mailbox (`vcmailbox`)
    kind = "tpm"                      a secret sealed in a TPM 2.0 under a persistent
                                      handle, read with tpm2-tools
    kind = "file", path = "..."       a root-only file: the lab and the simulator.
                                      Weaker: whoever copies the SD card copies it.

The root secret never leaves this module: callers get keys derived from it with
`kek(label)` (HKDF-SHA256), one label per use, so a key for one job says nothing
about another's or about the root.

A root that cannot be opened raises KeyRootError saying what is wrong and what to do.
Nothing here falls back to another root or makes a new one unless told to: a new root
means every key wrapped under the old one is lost.
"""
import errno
import hashlib
import hmac
import os
import stat

KINDS = ("file", "otp", "tpm")
SECRET_LEN = 32
DEFAULT_LABEL = b"handpos kek v1"


class KeyRootError(Exception):
    """The key root cannot be used; the message says why and what the technician does."""


class KeyRootMissing(KeyRootError):
    """There is no key root yet (no file, no sealed object).

    The caller decides whether that is a terminal's first start (then open again with
    create=True) or a lost root (stop service).
    """


def hkdf_sha256(ikm, info, length=32, salt=b""):
    """RFC 5869 HKDF with SHA-256: extract, then expand."""
    if length > 255 * 32:
        raise ValueError("HKDF-SHA256 gives at most 8160 bytes")
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    out, block, n = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([n]), hashlib.sha256).digest()
        out += block
        n += 1
    return out[:length]


class KeyRoot:
    """What every root offers. Subclasses set kind and strong and fill _secret."""

    kind = None
    strong = True

    def __init__(self):
        self._secret = None

    def kek(self, label=DEFAULT_LABEL):
        """32 bytes derived from the root secret for the use named by label."""
        if isinstance(label, str):
            label = label.encode()
        return hkdf_sha256(self._secret, bytes(label), SECRET_LEN)

    def describe(self):
        """One short line (at most 18 columns) for the About screen and the self-test."""
        raise NotImplementedError

    def detail(self):
        """A longer line for logs, `handpos` tools and the technician."""
        raise NotImplementedError

    def __repr__(self):
        # never the secret, even in a traceback
        return "<%s %s>" % (type(self).__name__, self.detail())


# --- file ---------------------------------------------------------------------------

def resolve_file_path(path, data_dir):
    """Relative paths are taken from data_dir's parent, never from inside data_dir."""
    if not path:
        raise KeyRootError("[keyroot] kind = \"file\" needs a path: add path = \"...\" "
                           "to the board profile")
    if os.path.isabs(path):
        return os.path.normpath(path)
    parent = os.path.dirname(os.path.abspath(data_dir.rstrip("/") or "/"))
    return os.path.normpath(os.path.join(parent, path))


def _inside(path, folder):
    folder = os.path.abspath(folder)
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def _fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileRoot(KeyRoot):
    """32 random bytes in a 0600 file owned by this user, outside the data folder."""

    kind = "file"
    strong = False

    def __init__(self, path, data_dir, create=False):
        KeyRoot.__init__(self)
        self.path = resolve_file_path(path, data_dir)
        if data_dir and _inside(self.path, data_dir):
            raise KeyRootError("key root file %s is inside the data folder %s: a copy of the "
                               "data would carry its key; set [keyroot] path outside it"
                               % (self.path, os.path.abspath(data_dir)))
        try:
            self._secret = self._read()
        except KeyRootMissing:
            if not create:
                raise
            self._create()
            self._secret = self._read()

    def describe(self):
        return "Keys: file (weak)"

    def detail(self):
        return "Key root: file %s (weak: not bound to the device)" % self.path

    def _check_folder(self, folder):
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            return
        if st.st_uid not in (os.geteuid(), 0):
            raise KeyRootError("key root folder %s belongs to uid %d, not this user (%d): "
                               "chown it or move the key root" % (folder, st.st_uid, os.geteuid()))
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise KeyRootError("key root folder %s is writable by other users (mode %03o): "
                               "chmod 700 %s" % (folder, stat.S_IMODE(st.st_mode), folder))

    def _read(self):
        self._check_folder(os.path.dirname(self.path))
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            raise KeyRootMissing("key root file %s is missing: restore it from the terminal's "
                                 "backup; without it the terminal's keys cannot be opened"
                                 % self.path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise KeyRootError("key root file %s is a symbolic link: put the file itself "
                                   "there" % self.path)
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise KeyRootError("key root file %s cannot be read by this user: chown it to "
                                   "the user handpos runs as" % self.path)
            raise KeyRootError("key root file %s cannot be opened: %s"
                               % (self.path, exc.strerror))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KeyRootError("key root %s is not a regular file: restore the key root "
                                   "file there" % self.path)
            if st.st_uid != os.geteuid():
                raise KeyRootError("key root file %s is owned by uid %d, not this user (%d): "
                                   "chown it to the user handpos runs as"
                                   % (self.path, st.st_uid, os.geteuid()))
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise KeyRootError("key root file %s is %s by other users (mode %03o): "
                                   "chmod 600 %s"
                                   % (self.path, "readable" if mode & 0o044 else "open to",
                                      mode, self.path))
            data = b""
            while len(data) <= SECRET_LEN:
                chunk = os.read(fd, SECRET_LEN + 1 - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
        if len(data) != SECRET_LEN:
            raise KeyRootError("key root file %s holds %s bytes, not %d (truncated or not a "
                               "key root): restore it from the terminal's backup"
                               % (self.path, "more than %d" % SECRET_LEN if len(data) > SECRET_LEN
                                  else len(data), SECRET_LEN))
        return data

    def _create(self):
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)     # makedirs' mode is cut by the umask
            _fsync_dir(os.path.dirname(folder) or "/")
        self._check_folder(folder)
        tmp = os.path.join(folder, ".%s.%d.tmp" % (os.path.basename(self.path), os.getpid()))
        try:
            os.unlink(tmp)              # left by a start that died at this point
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            try:
                os.fchmod(fd, 0o600)
                data = os.urandom(SECRET_LEN)
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                # link, not rename: a root that appeared meanwhile is kept, never replaced
                os.link(tmp, self.path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
        _fsync_dir(folder)


# --- the board's choice ---------------------------------------------------------------

def open_root(spec, data_dir, create=False):
    """The key root the board profile's [keyroot] table names.

    create=True makes a new root where there is none (a terminal's first start, which
    the caller decides); an existing root is opened, never replaced.
    """
    if not spec:
        raise KeyRootError("the board profile has no [keyroot] table: add one "
                           "(kind = \"otp\", \"tpm\" or \"file\")")
    kind = spec.get("kind")
    if kind == "file":
        return FileRoot(spec.get("path"), data_dir, create=create)
    raise KeyRootError("[keyroot] kind %r is not known: use one of %s"
                       % (kind, ", ".join(KINDS)))
