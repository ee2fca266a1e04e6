"""The host simulator's side of store and forward: advices (0220/0221) booked once or
declined after upload, chip advices' TCs checked, reversal advices (0420/0421), originals
that arrive after their reversal, the reconciliation queries, and a clean stop()."""
import gc
import socket
import sqlite3
import warnings

import pytest

from drivers.hostlink import frame, make_client_context
from drivers.iso8583_spec import decode, encode
from tools.cards import emv_issuer
from tools.host.hostsim import LATE_ORIGINAL, NOW, HostSim, Ledger

# pyemv drives cryptography's TripleDES through names cryptography now calls deprecated.
pytestmark = pytest.mark.filterwarnings(
    "ignore::cryptography.utils.CryptographyDeprecationWarning")

TID = "HP000001"
PAN = "4111111111111111"
PSN = "01"
DE7 = "1121093015"

# What the terminal put in the card's data object lists for a 12.34 sale.
TERMINAL = {"9F02": "000000001234", "9F03": "000000000000", "9F1A": "0840",
            "95": "0000000000", "5F2A": "0840", "9A": "261121", "9C": "00",
            "9F37": "1A2B3C4D", "82": "3900", "9F36": "0007"}


@pytest.fixture
def sim(tmp_path):
    host = HostSim(str(tmp_path), tls=False, slow_ms=100)
    yield host
    host.ledger.close()


def request(stan, amount=1234, mti="0200", de7=DE7, tid=TID, **extra):
    msg = {"t": mti, "2": PAN, "3": "000000", "4": "%012d" % amount, "7": de7, "11": stan,
           "12": "093015", "13": "1121", "22": "051", "41": tid, "42": "000000000000001",
           "49": "840"}
    msg.update(extra)
    return msg


def advice(stan, amount=1234, mti="0220", **extra):
    """An offline approval as the terminal forwards it: its own auth code in DE38."""
    extra.setdefault("38", "Y3    ")
    return request(stan, amount, mti, **extra)


def reversal(stan, original, mti="0420", reason="68", de7="1121093100"):
    """The terminal's reversal of original: no card data, DE7 its own transmission's,
    DE39 why (docs/host-protocol.md section 9), DE90 naming the original."""
    de90 = original["t"][:3] + "0" + original["11"] + original["7"] + "0" * 22
    msg = {k: v for k, v in original.items() if k not in ("2", "14", "23", "35", "37", "38",
                                                          "52", "53", "55", "61")}
    msg.update({"t": mti, "7": de7, "11": stan, "39": reason, "90": de90})
    return msg


def answer(sim, msg):
    """What the simulator sends back, through the real encoder and decoder."""
    reply = sim.handle(decode(encode(msg)))
    assert reply is not None and reply.delivery == NOW
    return decode(reply.payload())


def tlv(tags):
    out = b""
    for tag, value in tags.items():
        value = bytes.fromhex(value) if isinstance(value, str) else value
        out += bytes.fromhex(tag) + bytes((len(value),)) + value
    return out.hex().upper()


def chip_de55(cid=0x40, amount=1234, spoil=False, changed=None):
    """DE55 of a chip advice: the terminal's data and the card's second GENERATE AC (a TC
    by default) computed with the test issuer's key, as the virtual card does."""
    tags = dict(TERMINAL, **{"9F02": "%012d" % amount})
    tags["9F10"] = emv_issuer.build_iad(bytes((0x03, cid | 0x20, 0x00, 0x00)))
    icc_mk = emv_issuer.derive_icc_mk(emv_issuer.keys_for_pan(PAN)["imk_ac"], PAN, PSN)
    ac = bytearray(emv_issuer.compute_ac(icc_mk, tags))
    if spoil:
        ac[0] ^= 0x01
    tags.update({"9F26": bytes(ac), "9F27": bytes((cid,))})
    tags.update(changed or {})                      # after the card computed its cryptogram
    return tlv(tags)


def chip_advice(stan, amount=1234, **de55):
    return advice(stan, amount, **{"55": chip_de55(amount=amount, **de55), "23": "0" + PSN})


def booked(sim, stan):
    return [b for b in sim.ledger.money_bookings(TID) if b["stan"] == stan]


# -- advices ----------------------------------------------------------------------------

def test_advice_booked_with_rrn_and_de38_echoed(sim):
    reply = answer(sim, advice("000101"))
    assert reply["t"] == "0230" and reply["11"] == "000101" and reply["39"] == "00"
    assert reply["38"] == "Y3    "
    assert len(reply["37"]) == 12                          # the host's own: none was sent
    [row] = booked(sim, "000101")
    assert (row["mti"], row["kind"], row["status"], row["amount"]) == ("0220", "sale",
                                                                       "approved", 1234)
    assert row["rrn"] == reply["37"]
    assert sim.ledger.net_total(TID) == 1234


def test_advice_keeps_the_terminals_rrn(sim):
    reply = answer(sim, advice("000102", **{"37": "603213000102"}))
    assert reply["39"] == "00" and reply["37"] == "603213000102" and reply["38"] == "Y3    "
    assert booked(sim, "000102")[0]["rrn"] == "603213000102"


@pytest.mark.parametrize("change, why", [
    ({"35": PAN + "=30121200000000"}, "track data (DE35)"),
    ({"45": "B" + PAN + "^TEST/CARD^3012120"}, "track data (DE45)"),
    ({"38": None}, "approval code (DE38)"),
    ({"39": "Y1"}, "DE39 in an advice"),
    ({"2": None, "35": PAN + "=30121200000000"}, "track data (DE35)"),
    ({"2": None}, "without the PAN"),
])
def test_advice_that_breaks_the_profile_is_a_format_error_and_not_booked(sim, change, why):
    # the profile (docs/host-protocol.md section 5): the card as DE2 + DE14, never track
    # data; the offline code in DE38; no DE39, which is the host's answer (the advices
    # of the release before carried DE35 and DE39 Y1: issue 14 item 7)
    msg = advice("000108")
    for field, value in change.items():
        if value is None:
            del msg[field]
        else:
            msg[field] = value
    reply = answer(sim, msg)
    assert reply["t"] == "0230" and reply["39"] == "30"
    assert booked(sim, "000108") == []
    assert why in sim.ledger.exchanges(TID, "000108")[0]["note"]


def test_repeated_advice_is_answered_again_and_never_booked_twice(sim):
    first = answer(sim, advice("000103"))
    repeat = answer(sim, advice("000103", mti="0221", de7="1121094500"))
    assert repeat == first
    restarted = answer(sim, advice("000103"))              # the terminal restarted: 0220 again
    assert restarted == first
    assert len(booked(sim, "000103")) == 1
    assert sim.ledger.net_total(TID) == 1234
    notes = [e["note"] for e in sim.ledger.exchanges(TID, "000103")]
    assert len(notes) == 3 and all("duplicate" in n for n in notes[1:])


@pytest.mark.parametrize("cents, code", [(5, "05"), (51, "51")])
def test_advice_declined_after_upload_is_not_booked_but_recorded(sim, cents, code):
    reply = answer(sim, advice("000104", 1200 + cents))
    assert reply["t"] == "0230" and reply["39"] == code and reply["38"] == "Y3    "
    assert booked(sim, "000104") == []
    [exchange] = sim.ledger.exchanges(TID, "000104")
    assert exchange["response"]["39"] == code
    assert "declined after upload" in exchange["note"] and "not booked" in exchange["note"]
    repeat = answer(sim, advice("000104", 1200 + cents, mti="0221"))
    assert repeat == reply
    assert booked(sim, "000104") == [] and sim.ledger.net_total(TID) == 0


@pytest.mark.parametrize("cents", [54, 55, 91, 97, 98, 99])
def test_advice_is_answered_at_once_and_booked_whatever_the_online_rule(sim, cents):
    # .54: the terminal judged the card's expiry offline; .97-.99 would stall a forwarder
    reply = answer(sim, advice("000105", 1200 + cents, **{"14": "2001"}))
    assert reply["39"] == "00"
    assert booked(sim, "000105")[0]["status"] == "approved"


def test_refund_advice_counts_against_the_total(sim):
    answer(sim, advice("000106", 5000))
    reply = answer(sim, advice("000107", 1500, **{"3": "200000"}))
    assert reply["39"] == "00" and booked(sim, "000107")[0]["kind"] == "refund"
    assert sim.ledger.net_total(TID) == 3500


# -- chip advices: the card's TC -----------------------------------------------------------

def test_chip_advice_with_the_cards_tc_is_booked(sim):
    reply = answer(sim, chip_advice("000110"))
    assert reply["39"] == "00" and "55" not in reply        # the card is done: no tag 91
    assert booked(sim, "000110")[0]["status"] == "approved"
    assert "TC verified" in sim.ledger.exchanges(TID, "000110")[0]["note"]


@pytest.mark.parametrize("case", [{"spoil": True}, {"cid": 0x00}])
def test_chip_advice_with_a_wrong_tc_or_an_aac_is_declined_after_upload(sim, case):
    reply = answer(sim, chip_advice("000111", **case))
    assert reply["t"] == "0230" and reply["39"] == "05"
    assert booked(sim, "000111") == []
    assert sim.ledger.exchanges(TID, "000111")[0]["response"]["39"] == "05"


def test_chip_advice_whose_de55_was_changed_after_the_card_signed_it(sim):
    msg = chip_advice("000112", 1234, changed={"9F02": "000000001000"})
    assert answer(sim, msg)["39"] == "05"
    assert booked(sim, "000112") == []
    assert "TC wrong" in sim.ledger.exchanges(TID, "000112")[0]["note"]


def test_chip_advice_without_the_cryptogram_data_is_a_format_error(sim):
    reply = answer(sim, advice("000113", **{"55": tlv({"9F27": "40", "9F36": "0007"})}))
    assert reply["39"] == "30"
    assert booked(sim, "000113") == []


# -- reversal advices (0420/0421) ------------------------------------------------------------

def test_reversal_advice_of_an_advice_reverses_its_booking_once(sim):
    original = advice("000120", 2000)
    answer(sim, original)
    assert sim.ledger.net_total(TID) == 2000
    reply = answer(sim, reversal("000121", original))
    assert reply["t"] == "0430" and reply["11"] == "000121" and reply["39"] == "00"
    assert reply["90"].startswith("0220000120" + DE7)
    assert booked(sim, "000120")[0]["status"] == "reversed"
    assert sim.ledger.net_total(TID) == 0
    again = answer(sim, reversal("000121", original, mti="0421"))
    assert again == reply
    assert len(sim.ledger.reversals(TID)) == 1


def test_reversal_advice_of_an_online_sale(sim):
    original = request("000122", 3000)
    sim.handle(original)
    reply = answer(sim, reversal("000123", original))
    assert reply["t"] == "0430" and reply["39"] == "00"
    assert booked(sim, "000122")[0]["status"] == "reversed"


@pytest.mark.parametrize("reason", ["17", "20", "22", "68"])
def test_a_reversal_keeps_its_reason_and_its_own_de7(sim, reason):
    original = request("000126", 3000)
    sim.handle(original)
    reply = answer(sim, reversal("000127", original, reason=reason, de7="1121093200"))
    assert reply["t"] == "0430" and reply["39"] == "00" and reply["7"] == "1121093200"
    [row] = sim.ledger.reversals(TID)
    assert (row["reason"], row["de7"], row["orig_de7"]) == (reason, "1121093200", DE7)
    assert "reason %s" % reason in sim.ledger.exchanges(TID, "000127")[0]["note"]
    assert "profile" not in sim.ledger.exchanges(TID, "000127")[0]["note"]


@pytest.mark.parametrize("reason", [None, "05"])
def test_a_reversal_without_a_known_reason_is_applied_and_noted(sim, reason):
    # a reversal is never refused (the cardholder would stay charged): the breach of
    # the profile is noted in the exchange, for the acquirer's integrator to see
    original = request("000128", 3000)
    sim.handle(original)
    msg = reversal("000129", original, reason=reason or "68")
    if reason is None:
        del msg["39"]
    reply = answer(sim, msg)
    assert reply["t"] == "0430" and reply["39"] == "00"
    assert booked(sim, "000128")[0]["status"] == "reversed"
    note = sim.ledger.exchanges(TID, "000129")[0]["note"]
    assert "profile: " in note and ("no reason" in note if reason is None else "05" in note)


def test_reversal_advice_of_an_unknown_stan_is_acknowledged(sim):
    reply = answer(sim, reversal("000125", advice("000124")))
    assert reply["t"] == "0430" and reply["39"] == "00"
    [row] = sim.ledger.reversals(TID)
    assert row["booking"] is None and row["orig_stan"] == "000124"
    assert sim.ledger.money_bookings(TID) == []


# -- originals that arrive after their reversal ---------------------------------------------------

def test_sale_arriving_after_its_reversal_is_declined_and_not_booked(sim):
    original = request("000130", 2500)
    ack = answer(sim, reversal("000131", original, mti="0400"))   # overtook the sale
    assert ack["t"] == "0410" and ack["39"] == "00"
    late = answer(sim, original)
    assert late["t"] == "0210" and late["39"] == LATE_ORIGINAL == "12"
    assert "37" not in late and "38" not in late
    assert booked(sim, "000130") == []
    exchange = sim.ledger.exchanges(TID, "000130")[-1]
    assert "reversed before it arrived" in exchange["note"]
    # its repeat is the same request: the same answer, still nothing booked
    assert answer(sim, dict(original, t="0201")) == late
    assert sim.ledger.net_total(TID) == 0


def test_reversal_without_de90_also_stops_its_late_original(sim):
    original = request("000132", 2500)
    answer(sim, dict(original, t="0400"))       # names its original by TID + STAN + DE7
    assert answer(sim, original)["39"] == LATE_ORIGINAL
    assert booked(sim, "000132") == []


def test_a_reversal_stops_only_the_request_it_names(sim):
    answer(sim, reversal("000134", request("000133", 2500), mti="0400"))
    other_de7 = answer(sim, request("000133", 2500, de7="1121093100"))
    other_terminal = answer(sim, request("000133", 2500, tid="HP000002"))
    advice_same_stan = answer(sim, advice("000133", 2500))
    assert [r["39"] for r in (other_de7, other_terminal, advice_same_stan)] == ["00"] * 3


def test_advice_arriving_after_its_reversal_advice_is_declined_and_not_booked(sim):
    original = advice("000140", 1800)
    answer(sim, reversal("000141", original))
    late = answer(sim, original)
    assert late["t"] == "0230" and late["39"] == LATE_ORIGINAL
    assert booked(sim, "000140") == []
    assert "reversed before it arrived" in sim.ledger.exchanges(TID, "000140")[-1]["note"]


# -- reconciliation queries --------------------------------------------------------------------

def test_money_bookings_and_net_total(sim):
    answer(sim, request("000150", 1000))                      # sale, stands
    sold = answer(sim, request("000151", 2000))               # sale, voided below
    answer(sim, request("000152", 400, **{"3": "200000"}))   # refund
    answer(sim, request("000153", 1051))                      # declined: never booked
    reversed_sale = request("000154", 700)
    answer(sim, reversed_sale)
    answer(sim, reversal("000155", reversed_sale, mti="0400"))
    answer(sim, request("000156", 2000, **{"3": "020000", "37": sold["37"]}))   # the void
    answer(sim, advice("000157", 300))                        # offline sale
    answer(sim, request("000158", 9900, mti="0100"))          # pre-authorisation: no money
    rows = [(b["mti"], b["stan"], b["kind"], b["status"], b["amount"])
            for b in sim.ledger.money_bookings(TID)]
    assert rows == [
        ("0200", "000150", "sale", "approved", 1000),
        ("0200", "000151", "sale", "voided", 2000),
        ("0200", "000152", "refund", "approved", 400),
        ("0200", "000154", "sale", "reversed", 700),
        ("0200", "000156", "void", "approved", 2000),
        ("0220", "000157", "sale", "approved", 300),
    ]
    assert all(b["de7"] == DE7 for b in sim.ledger.money_bookings(TID))
    assert sim.ledger.net_total(TID) == 1000 - 400 + 300
    assert sim.ledger.net_total(TID) == sim.ledger.approved_total(TID)
    assert sim.ledger.money_bookings("HP000009") == [] and sim.ledger.net_total("HP000009") == 0


def test_a_ledger_from_before_reversals_kept_de7_still_opens(tmp_path):
    path = str(tmp_path / "ledger.sqlite")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE reversals (id INTEGER PRIMARY KEY, at TEXT, tid TEXT, stan TEXT,"
               " orig_mti TEXT, orig_stan TEXT, booking INTEGER)")
    db.execute("INSERT INTO reversals (at, tid, stan, orig_mti, orig_stan, booking)"
               " VALUES ('2026-01-01T00:00:00.000+00:00', ?, '000002', '0200', '000001', NULL)",
               (TID,))
    db.commit()
    db.close()
    ledger = Ledger(path)
    try:
        assert ledger.reversals(TID)[0]["orig_de7"] is None
        assert ledger.reversals(TID)[0]["reason"] is None       # kept from issue 14/7 on
        ledger.record_reversal({"t": "0400", "11": "000004", "41": TID}, "0200", "000003", None,
                               DE7)
        assert ledger.reversal_for(TID, "000003", "0200", DE7)["stan"] == "000004"
        assert ledger.reversal_for(TID, "000003", "0200", "1121093100") is None
    finally:
        ledger.close()


# -- stop() -------------------------------------------------------------------------------------

def _exchange(conn, msg):
    conn.sendall(frame(encode(msg)))
    head = b""
    while len(head) < 2:
        head += conn.recv(2 - len(head))
    size = int.from_bytes(head, "big")
    body = b""
    while len(body) < size:
        body += conn.recv(size - len(body))
    return decode(body)


@pytest.mark.parametrize("tls", [True, False])
def test_stop_closes_every_connection_before_it_returns(tmp_path, tls):
    sim = HostSim(str(tmp_path / "host"), tls=tls, log=lambda line: None)
    host, port = sim.start("127.0.0.1", 0)
    raw = socket.create_connection((host, port), timeout=10)
    conn = make_client_context(sim.ca_file).wrap_socket(raw, server_hostname=host) if tls else raw
    try:
        assert _exchange(conn, advice("000160"))["39"] == "00"
        thread = sim._thread
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            sim.stop()                              # the terminal still holds its connection
            gc.collect()
        assert not thread.is_alive()
        assert sim._connections == set() and sim._writers == set()
        assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
        try:
            closed = conn.recv(1) == b""
        except (ConnectionError, OSError):
            closed = True                           # cut off after the grace period
        assert closed
    finally:
        conn.close()


def test_stop_without_start_closes_the_ledger(tmp_path):
    sim = HostSim(str(tmp_path), tls=False)
    sim.stop()
    with pytest.raises(sqlite3.ProgrammingError):
        sim.ledger.count()
