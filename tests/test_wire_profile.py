"""The wire and the profile agree (issue 14, item 7).

The traffic of a real session (the terminal in this process, TLS to the host
simulator through the fault proxy) is captured at the host as it crossed the wire and
decoded by a decoder written here from docs/host-protocol.md alone: section 2's
encoding, section 5's table of formats and of what each message type carries (read
from the document at test time, as it is written), section 3's pairs and section 9's
reversal reasons. Nothing of drivers/iso8583*.py is used, so a change to the codec or
to the messages that the document does not say (or a change to the document the wire
does not follow) fails here.
"""
import datetime
import json
import os
import re
import sqlite3
import time

import pytest

from tests.conftest import ChipSlot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "host-protocol.md")
TID = "HP000001"
SWIPE_OK = {"entry_modes": ["chip", "tap", "swipe"]}
LEGEND = ("M", "C", "O", "E", "M if 00", "–")

# pyemv drives cryptography's TripleDES through names cryptography now calls deprecated.
pytestmark = pytest.mark.filterwarnings(
    "ignore::cryptography.utils.CryptographyDeprecationWarning")


# -- the document ------------------------------------------------------------------------

def _section(text, number):
    start = re.search(r"^## %s\. .*$" % number, text, re.M)
    assert start, "docs/host-protocol.md has no section %s" % number
    end = re.search(r"^## ", text[start.end():], re.M)
    return text[start.end():start.end() + end.start() if end else len(text)]


def _tables(block):
    """Every markdown table of a block: lists of rows, each a list of cells, the
    header first (the |---| line left out)."""
    tables, rows = [], []
    for line in block.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


class Profile:
    """What docs/host-protocol.md says, read from its text."""

    def __init__(self, path=DOC):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.formats, self.cells, self.columns = {}, {}, []
        table = _tables(_section(text, 5))[0]
        header = table[0]
        assert header[:3] == ["DE", "name", "format"], header
        for title in header[3:]:
            m = re.match(r"^(\d{4}(?:/\d{4})*) (req|resp)$", title)
            assert m, "section 5: a column this test cannot read: %r" % title
            self.columns.append((tuple(m.group(1).split("/")), m.group(2)))
        for row in table[1:]:
            assert len(row) == len(header), "section 5: row %r has %d cells" % (row[0], len(row))
            field = int(row[0])
            m = re.match(r"^(n|an|ans|z|b|hex)(\.\.)?(\d+)( LLL?VAR)?( |$)", row[2])
            assert m, "section 5: a format this test cannot read: %r" % row[2]
            prefix = {None: 0, " LLVAR": 2, " LLLVAR": 3}[m.group(4)]
            assert bool(m.group(2)) == bool(prefix), row[2]
            self.formats[field] = (m.group(1), int(m.group(3)), prefix)
            for cell in row[3:]:
                assert cell in LEGEND, "section 5, DE%d: %r is not in the legend" % (field, cell)
            self.cells[field] = row[3:]
        # section 3: request, its repeat, its response
        self.pairs = {}
        pairs = _tables(_section(text, 3))[0]
        assert pairs[0][:3] == ["request", "repeat", "response"], pairs[0]
        for row in pairs[1:]:
            self.pairs[row[0]] = (row[1], row[2])
        # section 9: the reasons a reversal gives in DE39
        reasons = [t for t in _tables(_section(text, 9)) if t[0][0] == "DE39"]
        assert reasons, "section 9 has no table of reversal reasons"
        self.reasons = {row[0]: row[2] for row in reasons[0][1:]}

    def column(self, mti):
        """The column of section 5 for a message type (a repeat: its request's)."""
        request = {rep: req for req, (rep, _) in self.pairs.items()}.get(mti, mti)
        direction = "resp" if any(resp == mti for _, resp in self.pairs.values()) else "req"
        for i, (mtis, kind) in enumerate(self.columns):
            if request in mtis and kind == direction:
                return i
        raise AssertionError("section 5 has no column for %s" % mti)

    def rules(self, mti):
        """{DE: code} for a message type."""
        i = self.column(mti)
        return {field: cells[i] for field, cells in self.cells.items()}


@pytest.fixture(scope="module")
def profile():
    return Profile()


# -- a decoder written from section 2 and section 5 --------------------------------------

CHARSETS = {                     # section 2: what each class may hold
    "n": set("0123456789"),
    "an": set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz "),
    "ans": set(chr(c) for c in range(0x20, 0x7F)),
    "z": set("0123456789=D"),
    "hex": set("0123456789ABCDEF"),
}


class Undecodable(AssertionError):
    pass


def decode(raw, profile):
    """{"t": MTI, "2": ..., ...}: binary fields as upper-case hex, the rest as text."""
    if len(raw) < 12 or not raw[:4].isdigit():
        raise Undecodable("no MTI and primary bitmap")
    msg = {"t": raw[:4].decode("ascii")}
    bits = int.from_bytes(raw[4:12], "big") << 64
    at = 12
    if bits >> 127 & 1:                                  # bit 1: a secondary bitmap
        bits |= int.from_bytes(raw[12:20], "big")
        at = 20
        if bits >> 63 & 1:
            raise Undecodable("bit 65 (a tertiary bitmap) is never set")
    for field in range(2, 129):
        if not bits >> (128 - field) & 1:
            continue
        if field not in profile.formats:
            raise Undecodable("DE%d is on the wire but not in section 5" % field)
        cls, size, prefix = profile.formats[field]
        if prefix:
            digits = raw[at:at + prefix]
            if len(digits) != prefix or not digits.isdigit():
                raise Undecodable("DE%d: the length prefix is not %d digits" % (field, prefix))
            length = int(digits)
            if length > size:
                raise Undecodable("DE%d: %d long, at most %d" % (field, length, size))
            at += prefix
        else:
            length = size
        data = raw[at:at + length]
        if len(data) != length:
            raise Undecodable("DE%d runs past the end of the message" % field)
        at += length
        if cls == "b":
            msg[str(field)] = data.hex().upper()
            continue
        text = data.decode("ascii", "replace")
        if not set(text) <= CHARSETS[cls]:
            raise Undecodable("DE%d: characters outside class %s" % (field, cls))
        msg[str(field)] = text
    if at != len(raw):
        raise Undecodable("%d bytes after the last field" % (len(raw) - at))
    return msg


def test_the_decoder_reads_the_documents_own_example(profile):
    # section 1's echo test, byte for byte
    raw = (b"0800" + bytes.fromhex("8220000000800000" "0400000000000000")
           + b"1121093015" + b"000125" + b"HP000001" + b"301")
    assert decode(raw, profile) == {"t": "0800", "7": "1121093015", "11": "000125",
                                    "41": "HP000001", "70": "301"}
    with pytest.raises(Undecodable, match="after the last field"):
        decode(raw + b"0", profile)
    with pytest.raises(Undecodable, match="DE5 is on the wire"):     # not in the profile
        decode(b"0800" + bytes.fromhex("0800000000000000") + b"0" * 12, profile)


def test_section_5_is_a_table_this_test_reads_whole(profile):
    assert {f for f in profile.formats} >= {2, 3, 4, 7, 11, 35, 38, 39, 55, 90}
    assert profile.formats[35] == ("z", 37, 2) and profile.formats[55] == ("b", 255, 3)
    # every message type of section 3 has its column
    for request, (repeat, response) in profile.pairs.items():
        for mti in (request, repeat, response):
            profile.column(mti)
    assert set(profile.reasons) == {"17", "20", "22", "68"}
    advice = profile.rules("0221")
    assert (advice[35], advice[45 if 45 in advice else 35], advice[39]) == ("–", "–", "–")
    assert advice[2] == "M" and advice[14] == "M" and advice[38] == "M"
    reversal = profile.rules("0421")
    assert reversal[39] == "M" and reversal[90] == "M" and reversal[7] == "M"
    assert reversal[2] == reversal[35] == reversal[55] == "–"


# -- checking a message against section 5 -------------------------------------------------

def check_fields(msg, profile, request=None):
    """Problems of msg against its column of section 5 ([] when none). request: the
    request a response answers (for E)."""
    problems = []
    rules = profile.rules(msg["t"])
    for key in msg:
        if key != "t" and int(key) not in rules:
            problems.append("DE%s is not in section 5" % key)
    for field, code in rules.items():
        key, present = str(field), str(field) in msg
        if code == "M" and not present:
            problems.append("DE%d is mandatory" % field)
        elif code == "–" and present:
            problems.append("DE%d must be absent" % field)
        elif code == "M if 00" and msg.get("39") == "00" and not present:
            problems.append("DE%d is mandatory in an approval" % field)
        elif code == "E":
            if request is None:
                problems.append("DE%d: an echo without its request" % field)
            elif present != (key in request) or msg.get(key) != request.get(key):
                problems.append("DE%d: %r does not echo the request's %r"
                                % (field, msg.get(key), request.get(key)))
    return ["%s: %s" % (msg["t"], p) for p in problems]


def check_conditions(msg, profile):
    """The conditions of section 5's notes (the C and O cells) for the terminal's
    requests."""
    out = []
    cls, entry = msg["t"][:3], msg.get("22", "")[:2]
    chip = entry in ("05", "07")
    if cls in ("010", "020"):
        if ("2" in msg) == ("35" in msg):
            out.append("the card once: DE2 or DE35")
        if "14" in msg and "2" not in msg:
            out.append("DE14 only with DE2")
        if chip != ("55" in msg):
            out.append("DE55 exactly for chip and contactless (DE22 %s)" % msg.get("22"))
        if "52" in msg and "61" in msg:
            out.append("DE52 or DE61, never both")
        if ("53" in msg) != ("52" in msg or "61" in msg):
            out.append("DE53 exactly with a PIN block")
    if cls == "022":
        if chip != ("55" in msg):
            out.append("DE55 exactly for a chip's advice")
        if msg.get("38", "")[:1] != "Y" or len(msg.get("38", "")) != 6:
            out.append("DE38 is the offline approval code, Y1 or Y3, space-filled")
    if cls in ("010", "020", "022") and "23" in msg and "55" not in msg:
        out.append("DE23 only with chip data")
    if cls in ("040", "042"):
        if msg.get("39") not in profile.reasons:
            out.append("DE39 %r is not a reason of section 9" % msg.get("39"))
    if cls == "050":
        # section 10: 920000 or 960000, the batch in 6 digits, the totals in 30
        if msg.get("3") not in ("920000", "960000"):
            out.append("DE3 %r is no settlement" % msg.get("3"))
        if len(msg.get("60", "")) != 6 or not msg.get("60", "").isdigit():
            out.append("DE60 is the batch number, 6 digits")
        if len(msg.get("63", "")) != 30 or not msg.get("63", "").isdigit():
            out.append("DE63 is 30 digits of totals")
    if cls == "032":
        # the original as DE90 begins (MTI, STAN, DE7); DE55 exactly for chip and tap
        de60 = msg.get("60", "")
        if len(de60) != 20 or not de60.isdigit() or de60[:4] not in ("0200", "0220"):
            out.append("DE60 is the original's MTI, STAN and DE7 (20 digits)")
        if chip != ("55" in msg):
            out.append("DE55 exactly for a chip's upload (DE22 %s)" % msg.get("22"))
        if len(msg.get("38", "")) != 6:
            out.append("DE38 is the approval code, 6 characters")
    return ["%s STAN %s: %s" % (msg["t"], msg.get("11"), p) for p in out]


def de7_time(value, near):
    """The UTC time DE7 (MMDDhhmmss) names, in the year of near (a datetime)."""
    t = datetime.datetime(near.year, int(value[0:2]), int(value[2:4]), int(value[4:6]),
                          int(value[6:8]), int(value[8:10]), tzinfo=datetime.timezone.utc)
    return t


def test_check_fields_sees_what_breaks_the_table(profile):
    advice = {"t": "0220", "2": "4111111111111111", "3": "000000", "4": "000000002000",
              "7": "1121093015", "11": "000042", "12": "093015", "13": "1121", "14": "3012",
              "22": "021", "25": "00", "37": "603213000042", "38": "Y1    ",
              "41": TID, "42": "000000000000001", "49": "840"}
    assert check_fields(advice, profile) == [] and check_conditions(advice, profile) == []
    old = dict(advice, **{"35": "4111111111111111=30121200000000", "39": "Y1"})
    del old["38"]
    assert sorted(check_fields(old, profile)) == ["0220: DE35 must be absent",
                                                  "0220: DE38 is mandatory",
                                                  "0220: DE39 must be absent"]
    reply = {"t": "0230", "3": "000000", "4": "000000002000", "7": "1121093015",
             "11": "000042", "12": "093015", "13": "1121", "37": "603213000042",
             "38": "Y1    ", "39": "00", "41": TID, "42": "000000000000001", "49": "840"}
    assert check_fields(reply, profile, advice) == []
    assert check_fields(dict(reply, **{"7": "1121093016"}), profile, advice) == \
        ["0230: DE7: '1121093016' does not echo the request's '1121093015'"]


# -- the terminal's side: what it builds and sends ------------------------------------------

def _rec(**over):
    rec = {"kind": "sale", "amount": 2000, "utc": "2026-02-01T13:05:00Z", "stan": "000042",
           "currency": "USD", "entry": "swipe", "rrn": "603213000042",
           "reason": "reason_no_reply"}
    rec.update(over)
    return rec


def test_the_terminal_builds_what_section_5_says(profile):
    from firmware.core import config as schema
    from firmware.payments import hostmsg
    cfg = schema.defaults()
    local = (2026, 2, 1, 14, 5, 0)
    track2 = "4111111111111111=30121201234567890"
    swipe = hostmsg.financial_request(_rec(), cfg, local, track2)
    assert swipe["35"] == track2 and "2" not in swipe and "14" not in swipe
    keyed = hostmsg.financial_request(_rec(entry="manual"), cfg, local, None,
                                      pan="4111111111111111", expiry="3012")
    assert (keyed["2"], keyed["14"]) == ("4111111111111111", "3012") and "35" not in keyed
    advice = hostmsg.advice_request(_rec(), cfg, local, *hostmsg.pan_expiry(track2),
                                    emv=None, arc="Y1")
    assert (advice["2"], advice["14"], advice["38"]) == ("4111111111111111", "3012", "Y1    ")
    assert not {"35", "45", "39"} & set(advice)
    for reason, code in (("reason_no_reply", "68"), ("reason_voided", "17"),
                         ("reason_bad_reply", "20"), ("reason_restart", "22")):
        rev = hostmsg.reversal_request(_rec(reason=reason), cfg, local, "000043")
        assert rev["39"] == code and code in profile.reasons and "7" not in rev
        assert rev["90"] == "0200000042" + "0201130500" + "0" * 22
        wire = hostmsg.transmission(rev, True, (2026, 2, 1, 13, 7, 9))
        assert (wire["t"], wire["7"]) == ("0421", "0201130709")
    # an advice keeps its DE7 when it goes again: it names the advice
    assert hostmsg.transmission(advice, True, (2026, 2, 1, 13, 7, 9))["7"] == advice["7"]


def test_a_payload_of_the_release_before_is_brought_to_this_wire():
    from firmware.payments import hostmsg
    old = {"msg": {"t": "0220", "11": "000042", "35": "4111111111111111=30121201234567890",
                   "39": "Y3"}, "journal_id": 5, "purpose": "advice"}
    new, changed = hostmsg.upgrade_payload(old)
    assert changed and new["journal_id"] == 5 and old["msg"]["35"]       # a copy
    assert new["msg"] == {"t": "0220", "11": "000042", "2": "4111111111111111",
                          "14": "3012", "38": "Y3    "}
    assert hostmsg.upgrade_payload(new) == (new, False)
    void = {"msg": {"t": "0420", "11": "000044"}, "purpose": "void"}
    assert hostmsg.upgrade_payload(void)[0]["msg"]["39"] == "17"
    other = {"msg": {"t": "0420", "11": "000045"}, "purpose": "reversal"}
    assert hostmsg.upgrade_payload(other)[0]["msg"]["39"] == "22"
    assert hostmsg.upgrade_payload({"mti": "0220"}) == ({"mti": "0220"}, False)


# -- a real session, captured ---------------------------------------------------------------

class Capture:
    """The host's capture hook: (direction, UTC datetime, raw) of every message; arm()
    loses the next answer to a request of a type (the link drops it on the way back,
    as a dead mobile link does), so that it goes again as a repeat."""

    def __init__(self, net):
        self.net = net
        self.frames = []
        self.lose = set()

    def __call__(self, direction, raw):
        self.frames.append((direction, datetime.datetime.now(datetime.timezone.utc), raw))
        mti = raw[:4].decode("ascii", "replace")
        if direction == "in" and mti in self.lose:
            self.lose.discard(mti)
            self.net.set("half_open", direction="down", times=1)

    def arm(self, mti):
        self.lose.add(mti)


def _settle(h, flow):
    h.run(20000, until=lambda: h.flow() in ((flow, "result"), (flow, "copy")))


def _chip_sale(h, digits, card):
    h.press(*digits)
    h.press("ENTER", "1")
    h.wait_for("Insert, tap or swipe")
    h.chip.insert(card)
    h.wait_for("Customer PIN")
    h.press(*"1234")
    h.press("ENTER")
    _settle(h, "sale")
    rec = h.term.payments.journal.last()
    h.chip.remove()
    h.to_idle()
    return rec


def _void_latest(h):
    h.press("MENU", "3")                  # void: supervisor PIN, the latest sale, yes
    h.press(*"2580")
    h.press("ENTER")
    h.press("ENTER")
    h.press("ENTER")
    h.wait_for("VOIDED", 15000)
    h.to_idle()


def _session(online, hostsim, net):
    """Swipe and chip sales online, a void, an offline swipe and chip, their advices
    (one answer lost: a 0221), a timeout (.99) reversed (its answer lost: a 0421)."""
    cap = Capture(net)
    hostsim.capture = cap
    h = online(**SWIPE_OK)
    h.chip = ChipSlot(h, t0=False)
    h.term.payments.chip_reader = h.chip
    pay = h.term.payments
    recs = {"swipe": h.swipe_sale("1200")}
    assert recs["swipe"]["state"] == "approved", recs["swipe"]
    h.to_idle()
    recs["chip"] = _chip_sale(h, "2500", "online_pin")
    assert recs["chip"]["state"] == "approved", recs["chip"]
    time.sleep(1.1)                     # the void's DE7 a second later than the sale's
    _void_latest(h)
    assert pay.journal.get(recs["chip"]["id"])["state"] == "voided"

    net.set("reset", existing=True, new=True)            # the link goes
    recs["offline"] = h.swipe_sale("2000")
    assert recs["offline"]["offline"] == 1, recs["offline"]
    h.to_idle()
    recs["offline_chip"] = _chip_sale(h, "3000", "dda")
    assert recs["offline_chip"]["offline"] == 1, (recs["offline_chip"], h.text())
    net.set("pass")
    cap.arm("0220")
    assert h.upload_all(40000), pay.queue.records()

    cap.arm("0420")
    offline = h.swipe_sale("2099")            # .99: booked, never answered; then offline
    assert offline["offline"] == 1, offline
    recs["timeout"] = [r for r in pay.journal.find() if r["id"] < offline["id"]][-1]
    h.to_idle()
    assert h.upload_all(40000), pay.queue.records()
    h.run(3000, until=lambda: pay.journal.get(recs["timeout"]["id"])["state"] == "reversed")
    assert pay.journal.get(recs["timeout"]["id"])["state"] == "reversed"
    hostsim.capture = None
    return h, recs, cap.frames


def test_a_captured_session_is_what_the_profile_says(online, hostsim, net, profile):
    h, recs, frames = _session(online, hostsim, net)
    traffic = [(d, at, decode(raw, profile)) for d, at, raw in frames]
    requests = [(at, m) for d, at, m in traffic if d == "in"]
    responses = [(at, m) for d, at, m in traffic if d == "out"]
    seen = set(m["t"] for _, _, m in traffic)
    assert seen >= {"0200", "0210", "0220", "0221", "0230", "0420", "0421", "0430", "0800",
                    "0810"}, sorted(seen)

    problems = []
    for _, msg in requests:
        problems += check_fields(msg, profile) + check_conditions(msg, profile)
    for _, msg in responses:
        # a response answers the first request of its class and STAN (a duplicate gets
        # the original response again, section 9)
        original = next(m for _, m in requests if m["11"] == msg["11"]
                        and m["t"][:2] == msg["t"][:2])
        problems += check_fields(msg, profile, original)
    assert problems == [], "\n".join(problems)

    by_stan = {}
    for at, msg in requests:
        by_stan.setdefault(msg["11"], []).append((at, msg))
    # every online sale: the card as read, in DE35 (a chip's tag 57 too)
    for name in ("swipe", "chip", "timeout"):
        [(_, sale)] = [x for x in by_stan[recs[name]["stan"]] if x[1]["t"] == "0200"]
        assert "35" in sale and "2" not in sale, sale
    # advices: PAN and expiry, never track data, the code in DE38, a repeat the same
    advices = [m for _, m in requests if m["t"][:3] == "022"]
    assert len(advices) >= 4
    for advice in advices:
        assert not {"35", "45", "39"} & set(advice), advice
        assert advice["38"] in ("Y1    ", "Y3    ") and len(advice["2"]) >= 12
        assert len(advice["14"]) == 4
    chip_advice = [m for m in advices if m["11"] == recs["offline_chip"]["stan"]]
    assert chip_advice and all("55" in m and m["22"] == "051" for m in chip_advice)
    [first, repeat] = [m for _, m in by_stan[recs["offline"]["stan"]]]
    assert (first["t"], repeat["t"]) == ("0220", "0221")
    assert dict(repeat, t="0220") == first            # the same advice, DE7 included
    # reversals: why, and DE7 the time of each transmission; the original in DE90
    reversals = [(at, m) for at, m in requests if m["t"][:3] == "042"]
    reasons = {}
    for at, msg in reversals:
        sent = de7_time(msg["7"], at)
        assert abs((at - sent).total_seconds()) <= 3, (msg["t"], msg["7"], at)
        orig_mti, orig_stan, orig_de7 = msg["90"][:4], msg["90"][4:10], msg["90"][10:20]
        [(orig_at, orig)] = [x for x in by_stan[orig_stan] if x[1]["t"] == orig_mti]
        assert orig["7"] == orig_de7 and msg["7"] != orig_de7, (msg, orig)
        assert msg["90"][20:] == "0" * 22
        reasons.setdefault(orig_stan, set()).add((msg["t"], msg["7"], msg["39"]))
    void = reasons[recs["chip"]["stan"]]
    assert [(t, rc) for t, _, rc in void] == [("0420", "17")]
    timeout = sorted(reasons[recs["timeout"]["stan"]])
    assert [(t, rc) for t, _, rc in timeout] == [("0420", "68"), ("0421", "68")]
    assert timeout[0][1] != timeout[1][1]             # the repeat has a DE7 of its own
    # and the host's ledger has each reason
    assert sorted(r["reason"] for r in hostsim.ledger.reversals(TID)) == ["17", "68"]


# -- queued by the release before: still forwarded, in this wire -------------------------

def test_records_queued_by_the_previous_release_go_in_this_wire(harness, hostsim, net, profile,
                                                                tmp_path):
    """A queue written by the release before (schema 2): an advice with its full track 2
    in DE35 and its code in DE39, a void's reversal without a reason. The first open
    under this release seals them anew without the track; they forward as section 5
    says."""
    track2 = "4111111111111111=30121201234567890"
    config = dict(host=("127.0.0.1:%d" % net.port, hostsim.ca_file), synced=True,
                  offline=SWIPE_OK)
    h = harness(**config)
    h.first_supervisor()
    queue = h.term.payments.queue
    path = queue.path
    common = {"3": "000000", "12": "120000", "13": "0101", "25": "00", "41": TID,
              "42": "000000000000001", "49": "840"}
    advice = dict(common, t="0220", **{"4": "000000001500", "7": "0101120000",
                                       "11": "000901", "22": "021", "35": track2,
                                       "37": "601112000901", "39": "Y1"})
    reversal = dict(common, t="0420", **{"4": "000000002500", "7": "0101115900",
                                         "11": "000903", "22": "051",
                                         "90": "0200000902" + "0101115900" + "0" * 22})
    queue.add("advice", "000901", 1500, "USD",
              {"msg": advice, "journal_id": 0, "purpose": "advice"})
    queue.add("reversal", "000902", 2500, "USD",
              {"msg": reversal, "journal_id": 0, "purpose": "void"})
    h.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA user_version=2")                 # as the release before left it
    db.close()

    frames = []
    hostsim.capture = lambda d, raw: frames.append((d, raw))
    h = harness(**config)
    h.boot()
    queue = h.term.payments.queue
    for name in os.listdir(os.path.dirname(path)):       # the track is gone from the card
        if name.startswith(os.path.basename(path)):
            with open(os.path.join(os.path.dirname(path), name), "rb") as f:
                assert b"=30121201234567890" not in f.read(), name
    [stored] = [r for r in queue.pending() if r["kind"] == "advice"]
    msg = queue.load(stored["id"])["msg"]
    assert "35" not in msg and msg["2"] == "4111111111111111" and msg["14"] == "3012"
    assert msg["38"] == "Y1    " and "39" not in msg
    assert h.run(30000, until=lambda: not queue.pending()), queue.records()
    sent = [decode(raw, profile) for d, raw in frames if d == "in"]
    sent = [m for m in sent if m["t"][:2] in ("02", "04")]
    assert sorted(m["t"] for m in sent) == ["0220", "0420"], sent
    problems = []
    for m in sent:
        problems += check_fields(m, profile) + check_conditions(m, profile)
    assert problems == [], "\n".join(problems)
    [rev] = [m for m in sent if m["t"] == "0420"]
    assert rev["39"] == "17" and rev["7"] != "0101115900"
    assert hostsim.ledger.count(TID, status="approved") == 1
    assert json.dumps(hostsim.ledger.exchanges(TID)).count("4111111111111111") == 0


# -- settlement, in balance and out of balance (section 10) --------------------------------

def _settle_on_keys(h):
    """MENU > Reports > Settle & Z, the supervisor's PIN, ENTER on the totals; the
    result screen."""
    h.press("MENU", "5", "3")
    h.press(*"2580")
    h.press("ENTER")
    h.run(30000, until=lambda: h.flow() in (("settle", "confirm"), ("settle", "result")))
    assert h.flow() == ("settle", "confirm"), h.text()
    h.press("ENTER")
    h.run(30000, until=lambda: h.flow() == ("settle", "result"))
    assert h.flow() == ("settle", "result"), h.text()
    text = h.text()
    h.press("ENTER", "CANCEL", "CANCEL")
    h.run(2000, until=lambda: h.flow() == ("idle", "idle"))
    return text


def _tlv(hex_data):
    """{tag: value hex} of DE55's TLVs (one level, as section 5's DE55 is)."""
    data, out, i = bytes.fromhex(hex_data), {}, 0
    while i < len(data):
        tag = data[i:i + 1]
        i += 1
        if tag[0] & 0x1F == 0x1F:
            while True:
                tag += data[i:i + 1]
                i += 1
                if not tag[-1] & 0x80:
                    break
        length = data[i]
        i += 1
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(data[i:i + n], "big")
            i += n
        out[tag.hex().upper()] = data[i:i + length].hex().upper()
        i += length
    return out


def test_a_captured_settlement_is_what_the_profile_says(online, hostsim, net, profile):
    """Batch 1 settles in balance; batch 2 (a swipe and a chip sale) is told out of
    balance and uploads both, the chip one with its final cryptogram, then closes."""
    frames = []
    hostsim.capture = lambda d, raw: frames.append((d, raw))
    h = online(**SWIPE_OK)
    h.chip = ChipSlot(h, t0=False)
    h.term.payments.chip_reader = h.chip
    first = h.swipe_sale("1200")
    h.to_idle()
    assert "In balance" in _settle_on_keys(h)
    swipe = h.swipe_sale("700")
    h.to_idle()
    chip = _chip_sale(h, "1800", "online_pin")
    assert swipe["batch"] == chip["batch"] == 2 and first["batch"] == 1
    assert chip["icc_data"], chip
    hostsim.disagree()
    assert "Closed on upload" in _settle_on_keys(h)
    hostsim.capture = None

    traffic = [(d, decode(raw, profile)) for d, raw in frames]
    requests = [m for d, m in traffic if d == "in"]
    problems = []
    for direction, msg in traffic:
        if direction == "in":
            problems += check_fields(msg, profile) + check_conditions(msg, profile)
        else:
            original = next(m for m in requests if m["11"] == msg["11"]
                            and m["t"][:2] == msg["t"][:2])
            problems += check_fields(msg, profile, original)
    assert problems == [], "\n".join(problems)

    flow = [(m["t"], m.get("3"), m.get("39")) for _, m in traffic if m["t"][:2] in ("03", "05")]
    assert flow[:4] == [("0500", "920000", None), ("0510", "920000", "00"),
                        ("0500", "920000", None), ("0510", "920000", "95")], flow
    assert sorted(flow[4:8]) == [("0320", "000000", None)] * 2 + [("0330", "000000", "00")] * 2
    assert flow[8:] == [("0500", "960000", None), ("0510", "960000", "00")], flow
    settles = [m for m in requests if m["t"] == "0500"]
    assert [(m["60"], m["63"]) for m in settles] == [
        ("000001", "001000000001200000000000000000"),
        ("000002", "002000000002500000000000000000"),
        ("000002", "002000000002500000000000000000")]
    uploads = {m["60"][4:10]: m for m in requests if m["t"] == "0320"}
    assert sorted(uploads) == sorted([swipe["stan"], chip["stan"]])
    for rec in (swipe, chip):
        up = uploads[rec["stan"]]
        [sale] = [m for m in requests if m["t"] == "0200" and m["11"] == rec["stan"]]
        assert up["60"] == "0200" + sale["11"] + sale["7"]           # the original, named
        assert (up["4"], up["22"], up["12"], up["13"]) == (sale["4"], sale["22"], sale["12"],
                                                           sale["13"])
        assert up["37"] == rec["rrn"] and up["38"].strip() == rec["auth_code"]
        assert up["11"] != sale["11"] and "2" not in up and "35" not in up
    tags = _tlv(uploads[chip["stan"]]["55"])
    assert tags["9F27"] == "40" and len(tags["9F26"]) == 16         # the final TC
    assert "57" not in tags and "5A" not in tags
    # the host booked nothing twice and settled both batches
    booked = hostsim.ledger.money_bookings(TID)
    assert len(booked) == 3 and all(b["settled"] for b in booked)
    assert [s["code"] for s in hostsim.ledger.settlements(TID)] == ["00", "95", "00"]
