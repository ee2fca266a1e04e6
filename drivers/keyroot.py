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
import re
import stat
import subprocess
import tempfile

KINDS = ("file", "otp", "tpm")
SECRET_LEN = 32
DEFAULT_LABEL = b"handpos kek v1"


class KeyRootError(Exception):
    """The key root cannot be used; the message says why and what the technician does."""


class KeyRootMissing(KeyRootError):
    """There is no key root yet, and create=True would make one (no file, no sealed object).

    The caller decides whether that is a terminal's first start (then open again with
    create=True) or a lost root (stop service). An OTP key that is not programmed is a
    plain KeyRootError: only a technician can write OTP, once.
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


# --- helpers for the roots read through a command -------------------------------------

COMMAND_TIMEOUT = 60     # seconds; a TPM doing RSA/ECC key generation may take a while


def _run(argv, what, env=None, input=None, missing=None):
    """Run a tool; (returncode, stdout bytes, stderr text). Tool not found -> KeyRootError."""
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, env=env,
                              timeout=COMMAND_TIMEOUT, close_fds=True)
    except FileNotFoundError:
        raise KeyRootError(missing or "%s not found: install it" % argv[0])
    except PermissionError:
        raise KeyRootError("%s (%s) cannot be run by this user: check its mode and owner"
                           % (what, argv[0]))
    except subprocess.TimeoutExpired:
        raise KeyRootError("%s (%s) gave no answer in %d s: check the device, then restart"
                           % (what, argv[0], COMMAND_TIMEOUT))
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")


def _last_error(text):
    """The line of a tool's stderr that says most: its last ERROR line, or its last line."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("ERROR") and "Unable to run" not in l]
    line = (errors or lines or ["no message"])[-1]
    return line[:160]


# --- Raspberry Pi OTP -----------------------------------------------------------------

OTP_TAG_READ = 0x00030081       # firmware mailbox: read the customer (device) private key
OTP_KEY_WORDS = 8
VCMAILBOX_DEFAULT = "vcmailbox"
VCIO_DEFAULT = "/dev/vcio"


class OtpRoot(KeyRoot):
    """The Raspberry Pi 4/5 OTP customer private key (8 words), read through the firmware
    mailbox with `vcmailbox`, in the byte order `rpi-otp-private-key` prints and writes."""

    kind = "otp"
    strong = True

    def __init__(self, vcmailbox=VCMAILBOX_DEFAULT, device=VCIO_DEFAULT):
        KeyRoot.__init__(self)
        self.vcmailbox = vcmailbox
        self.device = device
        self._secret = self._read()

    def describe(self):
        return "Keys: OTP"

    def detail(self):
        return "Key root: Raspberry Pi OTP customer private key (via %s)" % self.vcmailbox

    def _read(self):
        n = OTP_KEY_WORDS
        size = str(8 + 4 * n)   # value buffer: offset, count, then the key words
        argv = [self.vcmailbox, "0x%08x" % OTP_TAG_READ, size, size, "0", str(n)] + ["0"] * n
        code, out, err = _run(argv, "the firmware mailbox tool",
                              missing="vcmailbox not found (%s): install raspi-utils "
                                      "(libraspberrypi-bin on older systems)" % self.vcmailbox)
        text = out.decode("ascii", "replace")
        if "Can't open device file" in text or "Can't open device file" in err:
            if os.path.exists(self.device):
                raise KeyRootError("cannot open the firmware mailbox %s: add the user handpos "
                                   "runs as to the video group" % self.device)
            raise KeyRootError("no firmware mailbox (%s): this board is not a Raspberry Pi with "
                               "the OTP key; use a board profile with another [keyroot] kind"
                               % self.device)
        words = None
        for line in reversed(text.splitlines()):
            tokens = line.split()
            if tokens and all(re.match(r"^0x[0-9a-fA-F]{1,8}$", t) for t in tokens):
                words = [int(t, 16) for t in tokens]
                break
        if code != 0 or words is None:
            raise KeyRootError("the firmware mailbox read failed (%s, exit %d): %s"
                               % (self.vcmailbox, code, _last_error(text + "\n" + err)))
        if len(words) < 7 + n or words[2] != OTP_TAG_READ:
            raise KeyRootError("%s answered something else than the OTP key: %s"
                               % (self.vcmailbox, " ".join("0x%08x" % w for w in words[:8])))
        if words[1] != 0x80000000:
            raise KeyRootError("the firmware refused the OTP key read (code 0x%08x): update "
                               "the firmware (rpi-eeprom-update / apt full-upgrade)" % words[1])
        if not words[4] & 0x80000000 or words[6] != n:
            raise KeyRootError("the firmware does not read the OTP customer key: this board has "
                               "none (only the Pi 4, 400, CM4 and Pi 5 do) or its firmware is "
                               "too old (update it)")
        key = b"".join(w.to_bytes(4, "big") for w in words[7:7 + n])
        if key == bytes(len(key)):
            raise KeyRootError("the OTP customer key is not programmed: provision the device "
                               "(rpi-otp-private-key -w $(openssl rand -hex 32))")
        return key


# --- TPM 2.0 --------------------------------------------------------------------------

TPM_TCTI_DEFAULT = "device:/dev/tpmrm0"
TPM_HANDLE_DEFAULT = "0x81010001"


def _persistent_handle(handle):
    try:
        value = handle if isinstance(handle, int) else int(str(handle), 0)
    except ValueError:
        value = -1
    if not 0x81000000 <= value <= 0x817FFFFF:
        raise KeyRootError("[keyroot] handle %r is not an owner persistent handle: use one in "
                           "0x81000000-0x817FFFFF, e.g. \"%s\"" % (handle, TPM_HANDLE_DEFAULT))
    return "0x%08x" % value


class TpmRoot(KeyRoot):
    """A 32-byte secret sealed in a TPM 2.0 under a persistent handle (tpm2-tools).

    The secret is sealed without a policy: anything on this device that may talk to the
    TPM can unseal it, but an SD card in another device cannot.
    """

    kind = "tpm"
    strong = True

    def __init__(self, tcti=TPM_TCTI_DEFAULT, handle=TPM_HANDLE_DEFAULT, tools=None,
                 create=False):
        KeyRoot.__init__(self)
        self.tcti = tcti or TPM_TCTI_DEFAULT
        self.handle = _persistent_handle(handle or TPM_HANDLE_DEFAULT)
        self.tools = tools          # folder holding the tpm2_* programs; None: the PATH
        try:
            self._secret = self._unseal()
        except KeyRootMissing:
            if not create:
                raise
            self.provision()
            self._secret = self._unseal()

    def describe(self):
        return "Keys: TPM"

    def detail(self):
        return "Key root: TPM 2.0, sealed object %s via %s" % (self.handle, self.tcti)

    def _tool(self, name):
        return os.path.join(self.tools, name) if self.tools else name

    def _env(self):
        env = dict(os.environ)
        env["TPM2TOOLS_TCTI"] = self.tcti
        return env

    def _call(self, name, args, input=None, what=None):
        code, out, err = _run([self._tool(name)] + args, what or name, env=self._env(),
                              input=input,
                              missing="%s not found: install tpm2-tools" % self._tool(name))
        if code != 0:
            self._explain(name, err)
        return out

    def _explain(self, name, err):
        low = err.lower()
        if "permission denied" in low:
            raise KeyRootError("no permission to use the TPM at %s: add the user handpos runs "
                               "as to the tss group" % self.tcti)
        if ("could not load tcti" in low or "tcti:io failure" in low or "cannot connect" in low
                or "failed to open specified tcti device" in low or "no such file" in low):
            raise KeyRootError("TPM not reachable at %s: check the TPM module and its overlay "
                               "(dtoverlay=tpm-slb9670) and the [keyroot] tcti (%s)"
                               % (self.tcti, _last_error(err)))
        raise KeyRootError("TPM %s failed at %s: %s" % (name, self.tcti, _last_error(err)))

    def _unseal(self):
        code, out, err = _run([self._tool("tpm2_unseal"), "-c", self.handle],
                              "tpm2_unseal", env=self._env(),
                              missing="tpm2_unseal not found: install tpm2-tools")
        if code != 0:
            low = err.lower()
            if "(0x18b)" in low or "handle is not correct" in low:
                raise KeyRootMissing("no key root sealed in the TPM at %s: a new terminal "
                                     "provisions one at first start; otherwise restore the "
                                     "terminal's TPM or re-provision it" % self.handle)
            if "esys_unseal(" in low:
                # the handle holds an object, but not one this user can unseal
                raise KeyRootError("the TPM object at %s is not a key root (%s): free the "
                                   "handle or set another [keyroot] handle"
                                   % (self.handle, _last_error(err)))
            self._explain("tpm2_unseal", err)
        if len(out) != SECRET_LEN:
            raise KeyRootError("the TPM object at %s holds %d bytes, not %d: it is not this "
                               "terminal's key root; free the handle or set another [keyroot] "
                               "handle" % (self.handle, len(out), SECRET_LEN))
        return out

    def _flush(self):
        # Without a resource manager (a TPM opened raw, swtpm) the objects each tool loads
        # stay loaded and the TPM runs out of slots; with /dev/tpmrm0 this does nothing.
        try:
            self._call("tpm2_flushcontext", ["-t"])
        except KeyRootError:
            pass

    def provision(self):
        """Seal a new random secret under the handle. Refused if the handle is taken."""
        with tempfile.TemporaryDirectory(prefix="handpos-tpm-") as work:
            os.chmod(work, 0o700)
            primary = os.path.join(work, "primary.ctx")
            pub, priv = os.path.join(work, "seal.pub"), os.path.join(work, "seal.priv")
            sealed = os.path.join(work, "seal.ctx")
            try:
                self._call("tpm2_createprimary", ["-Q", "-C", "o", "-g", "sha256", "-G", "ecc",
                                                  "-c", primary])
                self._flush()
                # the secret goes in on a pipe: it never touches a file
                self._call("tpm2_create", ["-Q", "-C", primary, "-g", "sha256",
                                           "-i", "-", "-u", pub, "-r", priv],
                           input=os.urandom(SECRET_LEN))
                self._flush()
                self._call("tpm2_load", ["-Q", "-C", primary, "-u", pub, "-r", priv,
                                         "-c", sealed])
                self._call("tpm2_evictcontrol", ["-Q", "-C", "o", "-c", sealed, self.handle])
            finally:
                self._flush()


# --- the board's choice ---------------------------------------------------------------

SPEC_KEYS = {"file": ("kind", "path"),
             "otp": ("kind", "vcmailbox", "device"),
             "tpm": ("kind", "tcti", "handle", "tools")}


def check_spec(spec):
    """The problems of a [keyroot] table, one line each; [] when it can be opened."""
    if not spec:
        return ["the board profile has no [keyroot] table: add one "
                "(kind = \"otp\", \"tpm\" or \"file\")"]
    if not isinstance(spec, dict):
        return ["[keyroot] must be a table, with kind = \"otp\", \"tpm\" or \"file\""]
    kind = spec.get("kind")
    if kind not in KINDS:
        return ["[keyroot] kind %r is not known: use one of %s" % (kind, ", ".join(KINDS))]
    problems = ["[keyroot] %s: not a setting of kind %r (known: %s)"
                % (k, kind, ", ".join(SPEC_KEYS[kind][1:])) for k in sorted(spec)
                if k not in SPEC_KEYS[kind]]
    for k in SPEC_KEYS[kind][1:]:
        if k in spec and not isinstance(spec[k], str) and not (k == "handle"
                                                              and isinstance(spec[k], int)):
            problems.append("[keyroot] %s = %r: must be a string" % (k, spec[k]))
    if kind == "file" and not spec.get("path"):
        problems.append("[keyroot] kind = \"file\" needs a path: add path = \"...\" "
                        "(relative paths start beside the data folder)")
    if kind == "tpm" and "handle" in spec:
        try:
            _persistent_handle(spec["handle"])
        except KeyRootError as exc:
            problems.append(str(exc))
    return problems


def open_root(spec, data_dir, create=False):
    """The key root the board profile's [keyroot] table names.

    create=True makes a new root where there is none (a terminal's first start, which
    the caller decides); an existing root is opened, never replaced.
    """
    problems = check_spec(spec)
    if problems:
        raise KeyRootError("; ".join(problems))
    kind = spec["kind"]
    if kind == "file":
        return FileRoot(spec["path"], data_dir, create=create)
    if kind == "otp":
        return OtpRoot(spec.get("vcmailbox") or VCMAILBOX_DEFAULT,
                       spec.get("device") or VCIO_DEFAULT)
    return TpmRoot(spec.get("tcti"), spec.get("handle"), spec.get("tools"), create=create)
