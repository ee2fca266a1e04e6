"""The operators' TOTP enrolments at rest: one file sealed under the key hierarchy.

DATA/keys/mfa.sealed holds, for each enrolled operator, the TOTP key (whoever reads
it makes valid codes), the last time step accepted (so a code is never taken twice,
even across a restart) and the hashes of the recovery codes. It is AES-256-GCM
(drivers/keystore.py SealedFile) under a key of its own derived from the device data
key, written whole (temporary file, fsync, rename), so nothing of it is in clear on
the SD card, in handpos.db or its WAL. The lockout counters are no secret and stay in
the store's settings (firmware/security/mfa.py).

The interface is firmware/security/mfa.py's secrets: get, put, remove.
"""
import hashlib
import hmac
import json
import os

from drivers.keystore import SealedMissing

FILE = "mfa.sealed"
LOCK = "mfa.lock"           # held while the file is read, changed and written again
PURPOSE = "mfa totp enrolments"
FORMAT = "handpos-mfa"


def sealing_key(data_key):
    """The enrolments' own key (HMAC-SHA256 of the data key as a KDF): the data key
    itself seals the offline queue and nothing else."""
    return hmac.new(bytes(data_key), b"handpos sealed key v1|mfa", hashlib.sha256).digest()


class SealedSecrets:
    durable = True

    def __init__(self, keys):
        from drivers.keystore import SealedFile
        self.sealed = SealedFile(os.path.join(keys.folder, FILE),
                                 sealing_key(keys.key("data")), PURPOSE)
        self._records = None
        self._seen = None           # the file as it was when _records was read or written
        self._lock_path = os.path.join(keys.folder, LOCK)
        self._held = None           # (the lock file, depth) while held

    @property
    def path(self):
        return self.sealed.path

    def _load(self):
        """Every enrolment; raises KeyStoreError (a StorageFault) for a file that does
        not open: nobody's second factor is then guessed or dropped."""
        # read again when another program (`handpos journal export --operator`, run
        # beside the terminal) wrote the file since: a code it took is then spent here too
        seen = self._stat()
        if self._records is None or seen != self._seen:
            self._records = None
            try:
                raw = self.sealed.read()
            except SealedMissing:
                self._records = {}
                self._seen = seen
                return self._records
            try:
                doc = json.loads(raw.decode())
                if doc.get("format") != FORMAT or not isinstance(doc.get("operators"), dict):
                    raise ValueError("format")
            except (ValueError, UnicodeError, AttributeError):
                from drivers.keystore import KeyStoreError
                from firmware.core.store import CORRUPT
                raise KeyStoreError(CORRUPT, "%s opens but holds no enrolments: restore the "
                                    "key folder from the backup, or enrol the operators "
                                    "again after a technician removes it" % self.path)
            self._records = doc["operators"]
            self._seen = seen
        return self._records

    def _stat(self):
        """What changes when the file is written whole (a new file renamed in), or None."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _write(self, records):
        doc = {"format": FORMAT, "version": 1, "operators": records}
        self.sealed.write(json.dumps(doc, sort_keys=True).encode())
        self._records = records
        self._seen = self._stat()

    def hold(self):
        """The file to this program while the with-block runs: the terminal and a
        command-line check (tools/cli.py) both write it, each after reading it, and
        neither must write over what the other wrote meanwhile. Re-entrant."""
        return _Held(self)

    def get(self, op_id):
        rec = self._load().get(op_id)
        return dict(rec) if rec is not None else None

    def put(self, op_id, record):
        with self.hold():               # read again under the lock: others' records kept
            records = dict(self._load())
            records[op_id] = dict(record)
            self._write(records)        # the file first, then the copy in memory

    def remove(self, op_id):
        with self.hold():
            records = dict(self._load())
            if records.pop(op_id, None) is not None:
                self._write(records)


class _Held:
    def __init__(self, secrets):
        self.secrets = secrets

    def __enter__(self):
        import fcntl
        s = self.secrets
        if s._held is None:
            fd = os.open(s._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                os.close(fd)
                raise
            s._held = [fd, 0]
        s._held[1] += 1
        return s

    def __exit__(self, *exc):
        s = self.secrets
        s._held[1] -= 1
        if s._held[1] == 0:
            fd, s._held = s._held[0], None
            os.close(fd)                # and with it the lock
        return False
