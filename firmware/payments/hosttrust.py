"""Whether the acquirer host may be trusted: after a failed certificate check, no
offline approval until a technician has looked (docs/payments.md, "Host certificate
not trusted").

A certificate the terminal cannot trust means a man in the middle, or a host, CA file
or clock set up wrong. Taken for a link down, it would let a man in the middle turn
every card payment into an offline approval. So the alarm is kept in the store's
settings (a restart does not forget it), offline approval stays off while it is up,
and only a technician's PIN clears it. A later connection to a trusted host does not
clear it by itself: online authorisation goes on (each connection checks the host's
certificate afresh), but someone must find out who answered before.
"""
from firmware.core.store import is_fault

SETTING = "host.untrusted"           # "" or "KIND UTC", e.g. "ca 2025-03-01T09:30:00Z"
KINDS = ("ca", "name", "expired", "other")


def parse(value):
    """A stored value -> None (trusted) or {"kind", "utc"}."""
    if not value:
        return None
    parts = value.split(" ")
    kind = parts[0] if parts[0] in KINDS else "other"
    return {"kind": kind, "utc": parts[1] if len(parts) > 1 else ""}


class HostTrust:
    """The alarm's state, read once from the store and kept up to date in memory."""

    def __init__(self, store):
        self.store = store
        self._state = False              # False: not read yet; None: trusted
        self._reported = []              # kinds audited since the alarm went up

    def state(self):
        """None while the host is trusted, else {"kind", "utc"}. A store that cannot
        be read counts as untrusted (read again next time): offline approval needs
        the store anyway, and the storage fault's own screen says why."""
        if self._state is False:
            try:
                self._state = parse(self.store.get_setting(SETTING))
            except Exception as exc:
                if not is_fault(exc):
                    raise
                return {"kind": "other", "utc": ""}
        return self._state

    def untrusted(self):
        return self.state() is not None

    def seen(self, kind, utc, detail):
        """A certificate check failed. Audited once per kind while the alarm is up (the
        forwarder tries again every minute at most); True when the alarm goes up now."""
        if kind not in KINDS:
            kind = "other"
        if kind in self._reported and self._state:
            return False
        self._reported.append(kind)
        self.store.audit("host_untrusted", "", "%s: %s" % (kind, detail))
        if self.state() is not None:
            return False
        self._state = {"kind": kind, "utc": utc}
        try:
            self.store.set_setting(SETTING, "%s %s" % (kind, utc))
        except Exception as exc:        # kept in memory; the storage fault is shown
            if not is_fault(exc):
                raise
        return True

    def clear(self, technician):
        """A technician has looked: offline approval may go on. Audited with who."""
        old = self.state() or {"kind": "", "utc": ""}
        self.store.set_setting(SETTING, "")
        self._state = None
        self._reported = []
        self.store.audit("host_trust_cleared", technician,
                         "%s since %s" % (old["kind"], old["utc"]))
