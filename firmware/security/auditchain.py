"""The audit trail's chain: each record sealed to the one before it by an HMAC-SHA256
under the device's audit key (docs/audit.md).

    mac(n) = HMAC(audit key, "handpos audit v1" | prev | seq | utc | event | operator | detail)
    prev(n) = mac(n-1), and GENESIS for the first record of the chain

Every record keeps its own prev, so a record can be checked alone (was it written by
this terminal, at this number?) and its link to the record before it checked apart
(is the record it was written after still there?). That is what lets verify() say
which of edited, removed, inserted or moved each problem is, by number. The chain's
head (the last sequence number and its MAC) is kept outside the database by the
caller (a sealed file on the device), so that removing the last records shows too.

Portable: hashlib.sha256 only; no f-strings, dataclasses or typing (MicroPython).
"""
import hashlib

from firmware.security.auth import _equal as _same    # in time that does not leak where

VERSION = b"handpos audit v1"
GENESIS = b"\x00" * 32
MAC_LEN = 32
BROKEN_EVENT = "audit_broken"           # a break the terminal found, sealed in the chain
START_EVENT = "audit_chain_start"       # the chain began (older records sealed as found)
# how many records whose MAC fails are tried at other numbers, to tell a moved record
# from an edited one (each try is one HMAC per candidate number)
MOVED_TRIES = 64

# what verify() found, one word each (a problem's kind)
EDITED = "edited"
INSERTED = "inserted"
REMOVED = "removed"
MOVED = "moved"
UNSEALED = "unsealed"
HEAD = "head"


_pads = {}                          # key -> (inner pad, outer pad): a few keys a process


def _hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104) on hashlib alone: MicroPython has no hmac module."""
    pads = _pads.get(key)
    if pads is None:
        k = hashlib.sha256(key).digest() if len(key) > 64 else key
        k = k + b"\x00" * (64 - len(k))
        pads = (bytes(b ^ 0x36 for b in k), bytes(b ^ 0x5C for b in k))
        if len(_pads) > 8:
            _pads.clear()
        _pads[key] = pads
    inner = hashlib.sha256(pads[0] + msg).digest()
    return hashlib.sha256(pads[1] + inner).digest()


def _field(value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif not isinstance(value, bytes):
        value = str(value).encode("utf-8")
    return ("%d:" % len(value)).encode() + value


def encode(prev, seq, utc, event, operator, detail):
    """The bytes a record's MAC is taken over: every field length-prefixed, so no two
    different records encode alike (an edit that moves text between fields shows)."""
    return b"".join((VERSION, _field(bytes(prev)), _field("%d" % seq), _field(utc or ""),
                     _field(event or ""), _field(operator or ""), _field(detail or "")))


def seal(key, prev, seq, utc, event, operator, detail):
    """The MAC of record seq written after the record whose MAC is prev."""
    return _hmac_sha256(key, encode(prev, seq, utc, event, operator, detail))


def authentic(key, row, seq=None):
    """True when row (seq, utc, event, operator, detail, prev, mac) is as this terminal
    wrote it, at number seq (default: its own)."""
    s, utc, event, operator, detail, prev, mac = row
    if prev is None or mac is None:
        return False
    return _same(seal(key, bytes(prev), s if seq is None else seq, utc, event, operator,
                      detail), bytes(mac))


class Head:
    """The chain's last record as sealed outside the database: its number and MAC, the
    chain's first number, and the last number of the records that were written before
    the chain and sealed as found when it began (0: none)."""

    def __init__(self, seq, mac, start=1, sealed_to=0, since=""):
        self.seq = seq
        self.mac = bytes(mac)
        self.start = start
        self.sealed_to = sealed_to
        self.since = since

    def to_dict(self):
        return {"seq": self.seq, "mac": _hex(self.mac), "start": self.start,
                "sealed_to": self.sealed_to, "since": self.since}

    @staticmethod
    def from_dict(doc):
        return Head(int(doc["seq"]), _unhex(doc["mac"]), int(doc.get("start", 1)),
                    int(doc.get("sealed_to", 0)), doc.get("since", ""))


def _hex(b):
    return "".join("%02x" % x for x in b)


def _unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


def span(a, b):
    return "#%d" % a if a == b else "#%d-#%d" % (a, b)


class Verdict:
    """What verify() found: problems, each (seq, kind, text), in number order; breaks,
    the breaks the terminal found earlier and sealed (seq, utc, detail); checked, the
    records read."""

    def __init__(self):
        self.problems = []
        self.breaks = []
        self.checked = 0
        self.first = None
        self.last = None

    def ok(self):
        return not self.problems

    def first_bad(self):
        return self.problems[0][0] if self.problems else None

    def add(self, seq, kind, text):
        self.problems.append((seq, kind, text))

    def by_seq(self):
        """{seq: text} of the problems, for a listing of the records."""
        out = {}
        for seq, kind, text in self.problems:
            out[seq] = out[seq] + "; " + text if seq in out else text
        return out


def verify(key, rows, head=None, start_prev=None, whole=True):
    """Check rows, (seq, utc, event, operator, detail, prev, mac) in number order.

    head: the sealed Head, or None when there is none (then the last records cannot be
    checked). start_prev: the MAC the first row must follow (default GENESIS; a tail
    check passes the first row's own prev). whole: rows are the whole trail (records
    missing before the first one are then reported)."""
    v = Verdict()
    rows = list(rows)
    v.checked = len(rows)
    if rows:
        v.first, v.last = rows[0][0], rows[-1][0]
    if start_prev is None:
        start_prev = GENESIS
    # 1. each record on its own: as written, here (ok), as written elsewhere (moved),
    # not as written (bad), or without a MAC at all (unsealed)
    status = []
    failing = [r[0] for r in rows if r[5] is not None and r[6] is not None
               and not authentic(key, r)]
    tries = failing[:MOVED_TRIES]
    failing = set(failing)
    for r in rows:
        if r[5] is None or r[6] is None:
            status.append((UNSEALED, r[0]))
        elif r[0] not in failing:
            status.append(("ok", r[0]))
        else:
            orig = None
            if r[0] in tries:
                for s in tries:
                    if s != r[0] and authentic(key, r, s):
                        orig = s
                        break
            status.append((MOVED, orig) if orig is not None else ("bad", r[0]))
    pointed = {}                            # a MAC -> True when a record follows it
    for r in rows:
        if r[5] is not None:
            pointed[bytes(r[5])] = True
    if head is not None:
        pointed[head.mac] = True
    # 2. what each record is
    chain = []                              # (original seq, row) of records in the chain
    for r, (what, orig) in zip(rows, status):
        seq = r[0]
        if what == UNSEALED:
            v.add(seq, UNSEALED, "#%d has no MAC: added without the audit key (by hand, "
                  "or by a program that does not seal)" % seq)
        elif what == MOVED:
            v.add(seq, MOVED, "#%d holds the record written as #%d: the records were "
                  "reordered" % (seq, orig))
            chain.append((orig, r))
        elif what == "bad":
            if bytes(r[6]) in pointed:
                v.add(seq, EDITED, "#%d was edited: its content no longer matches its MAC"
                      % seq)
                chain.append((seq, r))
            else:
                v.add(seq, INSERTED, "#%d was not written by this terminal: inserted, or "
                      "edited together with its MAC" % seq)
        else:
            chain.append((seq, r))
    # 3. the links: each record of the chain must follow the one before it
    chain.sort(key=lambda c: c[0])
    prev_mac = start_prev
    prev_seq = None
    for orig, r in chain:
        if bytes(r[5]) != prev_mac:
            if prev_seq is None:
                if whole:
                    start = head.start if head is not None else 1
                    if orig > start:
                        v.add(start, REMOVED, "%s removed: the trail starts at #%d" % (
                            span(start, orig - 1), orig))
                    else:
                        v.add(orig, REMOVED, "the records before #%d were removed" % orig)
            elif orig > prev_seq + 1:
                v.add(prev_seq + 1, REMOVED, "%s removed (between #%d and #%d)" % (
                    span(prev_seq + 1, orig - 1), prev_seq, orig))
            else:
                v.add(orig, REMOVED, "the record #%d was written after is gone: records "
                      "were removed and the rest renumbered, or replaced" % orig)
        prev_mac = bytes(r[6])
        prev_seq = orig
    # 4. the end: the sealed head names the last record written
    if head is None:
        if rows:
            v.add(rows[-1][0], HEAD, "the chain's sealed head is missing: whether records "
                  "after #%d were removed cannot be told" % rows[-1][0])
    else:
        at = [r for orig, r in chain if orig == head.seq]
        if at:
            if bytes(at[0][6]) != head.mac:
                v.add(head.seq, HEAD, "#%d is not the record the sealed head names: "
                      "replaced" % head.seq)
        elif prev_seq is None or prev_seq < head.seq:
            last = prev_seq if prev_seq is not None else head.start - 1
            if last + 1 <= head.seq:
                v.add(last + 1, REMOVED, "%s removed: the trail ends at #%d, its sealed "
                      "head says #%d" % (span(last + 1, head.seq), last, head.seq))
    for r in rows:
        if r[2] == BROKEN_EVENT:
            v.breaks.append((r[0], r[1], r[4]))
    v.problems.sort(key=lambda p: p[0])
    return v


class MemoryBox:
    """Where a chain's head is kept when the board has nowhere better: in memory (the
    head then guards only while the process lives). A box has read() -> dict or None
    (raising ValueError, saying why, when it holds something unreadable) and write(dict)."""

    def __init__(self):
        self.doc = None

    def read(self):
        return dict(self.doc) if self.doc is not None else None

    def write(self, doc):
        self.doc = dict(doc)


class AuditChain:
    """The sealing side of a store's audit trail: the key, the box holding the head, the
    head as it stands. The store asks link() for a new record's prev and MAC, writes the
    record, then tells written(); attach() runs once when the store opens."""
    START_EVENT = START_EVENT
    BROKEN_EVENT = BROKEN_EVENT
    # the records the boot's tail check starts from: what came before was reported
    ANCHORS = (BROKEN_EVENT, START_EVENT)

    def __init__(self, key, box=None):
        self.key = bytes(key)
        self.box = box if box is not None else MemoryBox()
        self.head = None            # the head as it stands (Head), None: unknown
        self.opened_head = None     # the head found at open (after a power cut's lag)
        self.head_problem = None    # why there was no head at open (missing, damaged)

    def read_head(self):
        """The sealed Head, or None (head_problem then says why, or stays None when the
        box is simply empty)."""
        try:
            doc = self.box.read()
        except ValueError as exc:
            self.head_problem = str(exc)
            return None
        if doc is None:
            return None
        try:
            return Head.from_dict(doc)
        except (KeyError, ValueError, TypeError):
            self.head_problem = "the sealed head holds no chain head"
            return None

    def attach(self, any_sealed, rows_after, last_row, old_rows, utc, seal_row):
        """Run once when a store opens. A store with no sealed record and an empty box
        begins the chain (start(): its older records sealed as found); else the head is
        taken up (_open()). Returns the detail of the record saying the chain began (the
        store writes it), or None."""
        head = self.read_head()
        if head is not None and not any_sealed and head.seq == head.sealed_to:
            head = None     # a start cut short (its head written, its records not): again
        if head is None and self.head_problem is None and not any_sealed:
            return self.start(old_rows(), utc, seal_row)
        self._open(head, rows_after, last_row)
        return None

    def _open(self, head, rows_after, last_row):
        """The head at a store's open: the sealed one, moved on over records written
        after it that chain to it (a power cut between a record and its head); without
        one, the store's last record (the chain then goes on, and verify() says the
        head was missing). rows_after(seq) gives the rows after seq in number order;
        last_row is the last row or None."""
        if head is not None:
            moved = False
            for r in rows_after(head.seq):
                if r[5] is not None and bytes(r[5]) == head.mac and authentic(self.key, r):
                    head = Head(r[0], r[6], head.start, head.sealed_to, head.since)
                    moved = True
                else:
                    break
            if moved:
                self._write(head)
        elif last_row is not None:
            if self.head_problem is None:
                self.head_problem = "the chain's sealed head is missing"
            self.head = Head(last_row[0], last_row[6] or GENESIS)
            self.opened_head = None
            return
        self.head = self.opened_head = head

    def start(self, rows, utc, seal_row):
        """Begin the chain over rows, the records written before it (number order):
        each sealed as found, seal_row(seq, prev, mac) storing it. Returns the detail
        of the record that says so."""
        prev = GENESIS
        for r in rows:
            mac = seal(self.key, prev, r[0], r[1], r[2], r[3], r[4])
            seal_row(r[0], prev, mac)
            prev = mac
        if rows:
            head = Head(rows[-1][0], prev, rows[0][0], rows[-1][0], utc)
            detail = "%s written before the chain, sealed as found" % span(rows[0][0],
                                                                       rows[-1][0])
        else:
            head = Head(0, GENESIS, 1, 0, utc)
            detail = "a new trail"
        self.head_problem = None
        self._write(head)
        self.head = self.opened_head = head
        return detail

    def next_seq(self, highest):
        """The number of the next record: after both the highest in the store and the
        head (records removed from the end, even with the store's counter set back,
        leave a gap that verify() names)."""
        return max(highest or 0, self.head.seq if self.head is not None else 0) + 1

    def link(self, seq, utc, event, operator, detail):
        """(prev, mac) of a new record seq: it follows the head as it stands (not the
        store's last row: records removed under a running terminal show)."""
        prev = self.head.mac if self.head is not None else GENESIS
        return prev, seal(self.key, prev, seq, utc, event, operator, detail)

    def written(self, seq, mac):
        h = self.head
        head = Head(seq, mac, h.start if h else 1, h.sealed_to if h else 0,
                    h.since if h else "")
        self.head = head
        self._write(head)

    def _write(self, head):
        self.box.write(head.to_dict())
        self.head = head

    def verify(self, rows, whole=True):
        """verify() of the rows against the head as the box holds it now."""
        self.head_problem = None
        return verify(self.key, rows, self.read_head(), whole=whole)

    def check_tail(self, rows):
        """The boot self-test's check: rows, the last records since the last break the
        terminal found (or the chain's start), against the head found at open."""
        rows = list(rows)
        start_prev = bytes(rows[0][5]) if rows and rows[0][5] is not None else None
        head = self.opened_head
        v = verify(self.key, rows, head, start_prev=start_prev, whole=False)
        if head is None and self.head_problem and not rows:
            v.add(0, HEAD, self.head_problem)
        elif head is None and self.head_problem:
            # verify() said the head is missing; say why (damaged, or gone)
            v.problems = [p for p in v.problems if p[1] != HEAD]
            v.add(rows[-1][0], HEAD, "%s: whether records after #%d were removed cannot "
                  "be told" % (self.head_problem, rows[-1][0]))
            v.problems.sort(key=lambda p: p[0])
        return v
