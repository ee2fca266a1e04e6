"""Moving the offline queue off a broken terminal: the merchant's transfer keys, the
signed export file a supervisor writes for one named terminal, and the import the
field technician runs on that terminal (`handpos import-queue`, tools/cli.py)."""
import os
import stat

from drivers import saf_queue

# The merchant's transfer keys for moving a queue off a broken terminal: loaded into
# DATA/keys/ like the DUKPT key; test mode falls back to these published test values.
TEST_EXPORT_KEY = bytes(range(32))
TEST_EXPORT_SIGNING_SEED = bytes(range(32, 64))
KEY_FILES = (("export.key", TEST_EXPORT_KEY), ("export_sign.key", TEST_EXPORT_SIGNING_SEED))


class ExportKeyError(saf_queue.KeyFileError):
    """An export key file that must not be used; screen is the message id the export
    screen shows (the console and the CLI get the whole sentence)."""

    def __init__(self, message, screen):
        saf_queue.KeyFileError.__init__(self, message)
        self.screen = screen


def _read_key_file(path):
    """The 32 bytes of a transfer key file that only this user owns and can read.

    A key others can read is no longer the merchant's secret; one another user owns
    could have been swapped by them (and a root-run import next to it would leave
    root-owned database files the terminal cannot open); a short one was cut off in
    the copy. Each is refused, naming the fix, whichever side (export or import) loads it.
    """
    try:
        with open(path, "rb") as f:         # FileNotFoundError: the caller decides
            st = os.fstat(f.fileno())
            data = f.read(saf_queue.KEY_BYTES + 1)
    except PermissionError:
        raise ExportKeyError("export key %s cannot be read by this user (uid %d): run handpos "
                             "as the user that owns the terminal's data (sudo -u handpos ...)"
                             % (path, os.geteuid()), "exp_key_owner")
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        raise ExportKeyError("export key %s is not a regular file: load the merchant's export "
                             "keys again" % path, "exp_key_size")
    if st.st_uid != os.geteuid():
        raise ExportKeyError("export key %s is owned by uid %d, not this user (uid %d): run "
                             "handpos as the user that owns the terminal's data (sudo -u "
                             "handpos ...), or chown the file to it"
                             % (path, st.st_uid, os.geteuid()), "exp_key_owner")
    if mode & 0o077:
        raise ExportKeyError("export key %s can be read or changed by other users (mode %03o): "
                             "chmod 600 %s, and ask the merchant whether to change the keys"
                             % (path, mode, path), "exp_key_mode")
    if len(data) != saf_queue.KEY_BYTES:
        raise ExportKeyError("export key %s holds %s bytes, not %d (truncated, or not a key): "
                             "load the merchant's export keys again"
                             % (path, len(data) if len(data) <= saf_queue.KEY_BYTES
                                else "more than %d" % saf_queue.KEY_BYTES,
                                saf_queue.KEY_BYTES), "exp_key_size")
    return data


def export_keys(config, data_dir=None):
    """(32-byte export key, Ed25519 signing seed): DATA/keys/export.key and
    export_sign.key, or the test values when [security] test_keys is on and the file
    is absent. A file that is there is checked (owner, mode, length) in test mode too."""
    folder = os.path.join(data_dir or config["storage"]["data_dir"], "keys")
    keys = []
    for name, test in KEY_FILES:
        try:
            keys.append(_read_key_file(os.path.join(folder, name)))
        except FileNotFoundError:
            if not config["security"]["test_keys"]:
                raise ExportKeyError("no %s in %s: the technician loads the merchant's export "
                                     "keys" % (name, folder), "export_no_keys")
            keys.append(test)
    return keys[0], keys[1]


def export_queue(queue, config, system, target, valid_h=72):
    """Write the queue's pending records for the terminal `target` to import within
    valid_h hours: DATA/export/saf-ORIGIN-to-TARGET-TIME.json, one file per terminal
    the records belong to (this one's, and any queue it imported earlier and has not
    yet uploaded). Returns ([paths], records)."""
    key, seed = export_keys(config)
    folder = os.path.join(config["storage"]["data_dir"], "export")
    os.makedirs(folder, mode=0o700, exist_ok=True)      # private, like the whole data folder
    y, mo, d, h, mi, s = system.utc_time()
    stamp = "%04d%02d%02dT%02d%02d%02dZ" % (y, mo, d, h, mi, s)
    synced = system.clock_synced()
    paths, n = [], 0
    for origin in queue.origins() or [queue.tid]:
        path = os.path.join(folder, "saf-%s-to-%s-%s.json" % (origin, target, stamp))
        n += queue.export(path, seed, key, target, origin_tid=origin, valid_s=valid_h * 3600,
                          clock_synced=synced)
        paths.append(path)
    return paths, n


def import_queue(config, path, data_dir=None, profile=None):
    """Queue the records of the export file at path on this terminal (the terminal
    itself must not be running: the caller holds its data directory's locks). profile
    is the board's (its key root unwraps the terminal's data key).

    Returns SafQueue.import_export's summary; raises saf_queue.SafError (ExportError,
    KeyFileError) or a StorageFault of the keys with one line naming the problem and
    the way out, nothing imported.
    """
    from board import datadir
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    data_dir = data_dir or config["storage"]["data_dir"]
    key, seed = export_keys(config, data_dir)
    verify = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    # the device data key, as the terminal unwraps it for its queue
    data_key = datadir.open_keys(profile, data_dir).key("data")
    queue = saf_queue.SafQueue(os.path.join(data_dir, "saf.db"), data_key,
                               tid=config["terminal"]["id"])
    try:
        return queue.import_export(path, verify, key)
    finally:
        queue.close()
