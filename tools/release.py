"""Update bundles: `handpos update build` makes one, the terminal verifies one before it
installs anything (docs/updates.md, "The bundle").

A bundle is one uncompressed tar file:

    manifest.json    {"format", "version", "floor", "built_utc", "key_id", "files": [
                      {"path", "size", "sha256", "mode"}, ...]}
    manifest.sig     the Ed25519 signature of manifest.json's bytes, exactly as stored
    files/<path>     each file the manifest lists, in its order, nothing else

The signature covers the manifest and the manifest covers every file by its SHA-256, so
one signature check and one hash per file prove the whole release is the vendor's.
Nothing from the bundle is looked at before its manifest's signature has been checked
against a key the terminal trusts (config/keys/*.pub of the release that runs, not the
bundle's own), and nothing is written anywhere but the folder verify() is asked to fill.

The lab's vendor key is published (tools/keys/LAB-TEST-VENDOR-KEY-NOT-SECRET.pem): a
terminal trusts its public half (config/keys/lab-test-vendor.pub) only with [lab]
enabled = true, as it trusts the test CA and the test keys.
"""
import hashlib
import io
import json
import os
import re
import tarfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMAT = "handpos-update/1"
# what a release is made of (DESIGN.md's house, less the tests)
CONTENT = ("firmware", "drivers", "board", "tools", "config", "pyproject.toml")
SKIP_DIRS = ("__pycache__", "node_modules", ".pytest_cache")
SKIP_EXT = (".pyc", ".pyo")
LAB_KEY = os.path.join(REPO, "tools", "keys", "LAB-TEST-VENDOR-KEY-NOT-SECRET.pem")
KEYS_DIR = os.path.join("config", "keys")
LAB_PREFIX = "lab-"             # a trusted key file named lab-*.pub: [lab] terminals only
MANIFEST_MAX = 4 * 1024 * 1024  # a manifest bigger than this is not one of ours
VERSION_FILE = "firmware/core/version.py"
_VERSION = re.compile(r"^(\d{1,4})\.(\d{1,4})\.(\d{1,4})$")
_SAFE = re.compile(r"^[A-Za-z0-9_.+@-]+(/[A-Za-z0-9_.+@-]+)*$")


class BundleError(Exception):
    """The bundle is refused: str() is the one line that says why and what to do."""


def parse_version(text):
    """'1.2.3' -> (1, 2, 3); BundleError for anything else."""
    m = _VERSION.match(text or "") if isinstance(text, str) else None
    if not m:
        raise BundleError("version %r is not MAJOR.MINOR.PATCH (numbers): build the bundle "
                          "again with --version 1.2.3" % (text,))
    return tuple(int(g) for g in m.groups())


def key_id(public_raw):
    """A short name of a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


# -- keys ------------------------------------------------------------------------------
def load_private(path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except FileNotFoundError:
        raise BundleError("no signing key %s" % path)
    except (ValueError, TypeError) as exc:
        raise BundleError("signing key %s is not a PEM private key (%s)" % (path, exc))
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError("signing key %s is not an Ed25519 key" % path)
    return key


def public_raw(private_key):
    from cryptography.hazmat.primitives import serialization
    return private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)


def trusted_keys(release_dir, lab):
    """{key id: (name, Ed25519PublicKey)} of release_dir/config/keys/*.pub (one key a file:
    64 hex digits of the raw public key); the lab-* ones only when lab is true."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    folder = os.path.join(release_dir, KEYS_DIR)
    keys = {}
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        names = []
    for name in names:
        if not name.endswith(".pub") or (name.startswith(LAB_PREFIX) and not lab):
            continue
        try:
            with open(os.path.join(folder, name)) as f:
                lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
                raw = bytes.fromhex(lines[0])
            keys[key_id(raw)] = (name[:-4], Ed25519PublicKey.from_public_bytes(raw))
        except (OSError, ValueError, IndexError):
            continue        # not a key: never trusted
    return keys


# -- build -----------------------------------------------------------------------------
def release_files(src):
    """The release's files under src, sorted: (relative path, absolute path)."""
    out = []
    for top in CONTENT:
        path = os.path.join(src, top)
        if os.path.isfile(path):
            out.append((top, path))
            continue
        for base, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
            for name in sorted(files):
                if name.endswith(SKIP_EXT) or name.startswith("."):
                    continue
                full = os.path.join(base, name)
                if os.path.islink(full) or not os.path.isfile(full):
                    continue
                out.append((os.path.relpath(full, src).replace(os.sep, "/"), full))
    return out


def _version_py(version):
    return ('"""The application\'s version: one place, below everything that shows it."""\n'
            '\nVERSION = "%s"\n' % version).encode()


def build(out_path, version, key_path=LAB_KEY, src=REPO, floor=None, now=time.gmtime):
    """Write the signed bundle of src's release at out_path (written beside, then
    renamed: a cut build leaves no bundle); returns the manifest."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa
    parse_version(version)
    parse_version(floor or version)
    if floor and parse_version(floor) > parse_version(version):
        raise BundleError("--floor %s is above the version %s" % (floor, version))
    key = load_private(key_path)
    entries, blobs = [], []
    for rel, full in release_files(src):
        with open(full, "rb") as f:
            data = f.read()
        if rel == VERSION_FILE:
            data = _version_py(version)     # the release says the version it is sold as
        mode = 0o755 if os.stat(full).st_mode & 0o111 else 0o644
        entries.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "mode": mode})
        blobs.append(data)
    if not entries:
        raise BundleError("no release files under %s" % src)
    manifest = {"format": FORMAT, "version": version, "floor": floor or version,
                "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", now()),
                "key_id": key_id(public_raw(key)), "files": entries}
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    sig = key.sign(body)
    tmp = out_path + ".part"
    with open(tmp, "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data, mode in [("manifest.json", body, 0o644), ("manifest.sig", sig, 0o644)] + \
                    [("files/" + e["path"], d, e["mode"]) for e, d in zip(entries, blobs)]:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, 0
                tar.addfile(info, io.BytesIO(data))
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, out_path)
    return manifest


# -- verify ----------------------------------------------------------------------------
def _member_bytes(tar, info, limit):
    if not info.isfile():
        raise BundleError("the bundle's %s is not a file: not a handpos bundle" % info.name)
    if info.size > limit:
        raise BundleError("the bundle's %s is too big (%d bytes)" % (info.name, info.size))
    f = tar.extractfile(info)
    data = f.read()
    if len(data) != info.size:
        raise BundleError("the bundle is cut short (in %s): copy it again" % info.name)
    return data


def _check_manifest(manifest):
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError("the manifest is not a %s manifest" % FORMAT)
    parse_version(manifest.get("version"))
    parse_version(manifest.get("floor"))
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise BundleError("the manifest lists no files")
    seen = set()
    for e in files:
        path = e.get("path") if isinstance(e, dict) else None
        if not isinstance(path, str) or not _SAFE.match(path) or ".." in path.split("/") \
                or path.split("/")[0] not in CONTENT or path in seen:
            raise BundleError("the manifest names a file outside the release: %r" % (path,))
        if not isinstance(e.get("size"), int) or not isinstance(e.get("sha256"), str) \
                or e.get("mode") not in (0o644, 0o755):
            raise BundleError("the manifest's entry for %s is incomplete" % path)
        seen.add(path)


def verify(path, keys, into=None):
    """Check the bundle at path against keys (trusted_keys()); with into, write its
    files under that (empty) folder as they are checked. Returns the manifest.

    BundleError with one line for: not a bundle, cut short, a signature no trusted key
    made or that does not match, a file whose hash or size differs, a file missing or
    one too many. On error, into is left for the caller to remove (a half-filled folder
    is never used: install renames it into place only after this returns).
    """
    from cryptography.exceptions import InvalidSignature
    try:
        size = os.path.getsize(path)
        raw = open(path, "rb")
    except FileNotFoundError:
        raise BundleError("no bundle %s" % path)
    except IsADirectoryError:
        raise BundleError("%s is a folder, not a bundle" % path)
    except OSError as exc:
        raise BundleError("the bundle %s cannot be read (%s)" % (path, exc.strerror))
    try:
        with raw, tarfile.open(fileobj=raw, mode="r:") as tar:
            first = tar.next()
            second = tar.next()
            if first is None or first.name != "manifest.json" or second is None or \
                    second.name != "manifest.sig":
                raise BundleError("%s is not a handpos update bundle (no signed manifest "
                                  "at its start)" % path)
            body = _member_bytes(tar, first, MANIFEST_MAX)
            sig = _member_bytes(tar, second, 64)
            try:
                manifest = json.loads(body.decode("utf-8"))
            except (UnicodeError, ValueError):
                manifest = None
            kid = manifest.get("key_id") if isinstance(manifest, dict) else None
            if kid not in keys:
                raise BundleError("bad signature: the bundle is signed by key %s, which this "
                                  "terminal does not trust (config/keys): get a bundle "
                                  "signed by the vendor" % (kid if isinstance(kid, str)
                                                            else "(none)"))
            try:
                keys[kid][1].verify(sig, body)
            except InvalidSignature:
                raise BundleError("bad signature: the manifest does not match its signature "
                                  "by %s (altered or damaged): get the bundle again"
                                  % keys[kid][0])
            _check_manifest(manifest)
            want = list(manifest["files"])
            for e in want:
                info = tar.next()
                if info is None:
                    raise BundleError("the bundle is cut short (%d bytes; %s and %d more "
                                      "files missing): copy it again"
                                      % (size, e["path"], len(want) - want.index(e) - 1))
                if info.name != "files/" + e["path"]:
                    raise BundleError("the bundle holds %s where its manifest says %s: "
                                      "altered or damaged" % (info.name, e["path"]))
                data = _member_bytes(tar, info, max(e["size"], 0) + 1)
                last = info
                if len(data) != e["size"] or hashlib.sha256(data).hexdigest() != e["sha256"]:
                    raise BundleError("wrong hash: %s does not match the signed manifest "
                                      "(altered or damaged): get the bundle again" % e["path"])
                if into is not None:
                    _write(into, e["path"], data, e["mode"])
            extra = tar.next()
            if extra is not None:
                raise BundleError("the bundle holds %s, which its manifest does not list: "
                                  "altered" % extra.name)
            # the archive's end (two zero blocks, then zeros to the record) must be there
            # too: a copy cut in it has every file, but a cut copy is never installed
            end = last.offset_data + (last.size + tarfile.BLOCKSIZE - 1) // \
                tarfile.BLOCKSIZE * tarfile.BLOCKSIZE
            raw.seek(end)
            tail = raw.read(tarfile.RECORDSIZE + 1)
            if len(tail) < 2 * tarfile.BLOCKSIZE:
                raise BundleError("the bundle is cut short (%d bytes; its end is missing): "
                                  "copy it again" % size)
            if tail.strip(b"\0"):
                raise BundleError("the bundle has bytes after its end: altered or damaged: "
                                  "get the bundle again")
    except tarfile.ReadError as exc:
        raise BundleError("the bundle is cut short or is not a bundle (%s): copy it again"
                          % exc)
    except (EOFError, tarfile.TarError) as exc:
        raise BundleError("the bundle is cut short (%s): copy it again" % (exc or "end of file"))
    return manifest


def _write(into, rel, data, mode):
    full = os.path.join(into, *rel.split("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(full, mode)


def manifest_of(path):
    """The manifest of an installed release folder (written there at install), or None."""
    try:
        with open(os.path.join(path, "manifest.json"), "rb") as f:
            return json.loads(f.read().decode())
    except (OSError, ValueError, UnicodeError):
        return None


def check_installed(path):
    """Lines naming every installed file that differs from the release's manifest: a
    release folder changed after its install (the health check's self-test)."""
    manifest = manifest_of(path)
    if manifest is None:
        return ["%s has no readable manifest.json" % path]
    problems = []
    for e in manifest.get("files", []):
        full = os.path.join(path, *e["path"].split("/"))
        try:
            with open(full, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            problems.append("%s is missing" % e["path"])
            continue
        if digest != e["sha256"]:
            problems.append("%s differs from the signed manifest" % e["path"])
    return problems
