"""The audit trail's chain on the device: its MAC key from the key hierarchy's "audit"
key, its head sealed in DATA/keys/audit.head (docs/audit.md).

The head (the last record's number and MAC) lives outside handpos.db on purpose: a
person who removes the last records from the database cannot also set the head back,
since it is sealed (AES-256-GCM) under a key only the device's root unwraps.
"""
import hashlib
import hmac
import json

from drivers.keystore import KeyStoreError, SealedMissing
from firmware.security.auditchain import AuditChain

HEAD_FILE = "audit.head"
HEAD_PURPOSE = "audit chain head"
# the chain's MACs are under a key derived from the "audit" key, which itself seals the
# head file (AES-GCM): one key, one algorithm
CHAIN_LABEL = b"handpos audit chain v1"


def chain_key(audit_key):
    return hmac.new(bytes(audit_key), CHAIN_LABEL, hashlib.sha256).digest()


class SealedHead:
    """The box auditchain.AuditChain keeps its head in: a SealedFile of JSON."""

    def __init__(self, sealed):
        self.sealed = sealed
        self.path = sealed.path

    def read(self):
        try:
            raw = self.sealed.read()
        except SealedMissing:
            return None
        except KeyStoreError as exc:
            raise ValueError("the chain's sealed head does not open (%s)" % exc)
        try:
            doc = json.loads(raw.decode())
            if not isinstance(doc, dict):
                raise ValueError("not a head")
            return doc
        except (ValueError, UnicodeError):
            raise ValueError("the chain's sealed head %s holds no head" % self.path)

    def write(self, doc):
        self.sealed.write(json.dumps(doc, sort_keys=True).encode())


def open_chain(keys):
    """The chain of the terminal whose keys are open (drivers.keystore.KeyStore)."""
    return AuditChain(chain_key(keys.key("audit")),
                      SealedHead(keys.sealed(HEAD_FILE, "audit", HEAD_PURPOSE, part="store")))


def attach(store, keys, console):
    """Seal store's audit trail from now on; True when it is. A store or head that the
    card refuses is said on the console and the trail goes on unsealed (its lines then
    show as written without the key): an audit line never stops the terminal."""
    if keys is None or not hasattr(store, "attach_audit_chain"):
        return False
    try:
        store.attach_audit_chain(open_chain(keys))
        return True
    except Exception as exc:        # StorageFault among them; never stops the start
        store.audit_chain = None
        console("audit: the trail cannot be sealed: %s" % exc)
        return False
