"""The host simulator's settlement (docs/host-protocol.md sections 10 and 11): its batch
totals, the 0320 booked at most once by the original DE60 names, the batch it closed
last asked again, .93 left out until uploaded, and the controls tests and the lab use
(disagree, fail_settlement, delay_answers, the command line's flags)."""
import pytest

from drivers.iso8583_spec import decode, encode
from tools.host.hostsim import NOW, SLOW, HostSim, build_parser

TID = "HP000001"
DE7 = "0301130509"


@pytest.fixture
def sim(tmp_path):
    host = HostSim(str(tmp_path), tls=False, slow_ms=100)
    yield host
    host.ledger.close()


def answer(sim, msg):
    reply = sim.handle(decode(encode(msg)))
    return decode(reply.payload()), reply


def sale(stan, amount, proc="000000", de7=DE7, mti="0200"):
    return {"t": mti, "2": "4111111111111111", "3": proc, "4": "%012d" % amount, "7": de7,
            "11": stan, "22": "021", "41": TID, "42": "000000000000001", "49": "840",
            **({"37": "606013" + stan, "38": "Y1    "} if mti == "0220" else {})}


def totals(sales=0, sales_amount=0, refunds=0, refunds_amount=0):
    return "%03d%012d%03d%012d" % (sales, sales_amount, refunds, refunds_amount)


def settle(stan, de63, proc="920000", batch="000001"):
    return {"t": "0500", "3": proc, "7": DE7, "11": stan, "12": "213000", "13": "0301",
            "41": TID, "42": "000000000000001", "60": batch, "63": de63}


def upload(stan, original, amount, proc="000000", mti="0200", de7=DE7, **extra):
    msg = {"t": "0320", "3": proc, "4": "%012d" % amount, "7": "0302010000", "11": stan,
           "12": "210509", "13": "0301", "22": "021", "25": "00", "37": "606013" + original,
           "38": "A1B2C3", "41": TID, "42": "000000000000001", "49": "840",
           "60": mti + original + de7}
    msg.update(extra)
    return msg


def test_a_batch_that_agrees_closes_and_one_asked_again_still_agrees(sim):
    answer(sim, sale("000001", 1000))
    answer(sim, sale("000002", 250, proc="200000"))
    answer(sim, sale("000003", 1051))                      # declined: not counted
    reply, _ = answer(sim, settle("000004", totals(1, 1000, 1, 250)))
    assert (reply["t"], reply["39"], reply["63"], reply["60"]) == \
        ("0510", "00", totals(1, 1000, 1, 250), "000001")
    # the 0510 was lost and a sale came meanwhile: asked again for the same batch
    answer(sim, sale("000005", 700))
    again, _ = answer(sim, settle("000006", totals(2, 1700, 1, 250)))
    assert again["39"] == "00"
    assert all(b["settled"] for b in sim.ledger.money_bookings(TID))
    # the next batch is on its own
    answer(sim, sale("000007", 300))
    wrong, _ = answer(sim, settle("000008", totals(2, 1700, 1, 250), batch="000002"))
    assert wrong["39"] == "95"
    right, _ = answer(sim, settle("000009", totals(1, 300), batch="000002"))
    assert right["39"] == "00"


def test_an_upload_is_booked_once_by_the_original_it_names(sim):
    answer(sim, sale("000001", 1000))
    known, _ = answer(sim, upload("000010", "000001", 1000))
    assert known["t"] == "0330" and known["39"] == "00" and known["60"] == "0200000001" + DE7
    lacked, _ = answer(sim, upload("000011", "000002", 450))       # never reached the host
    again, _ = answer(sim, upload("000012", "000002", 450))        # uploaded once more
    assert lacked["39"] == again["39"] == "00"
    assert sim.ledger.count(TID, mti="0320") == 1
    assert sim.ledger.approved_total(TID) == 1450
    notes = [x["note"] for x in sim.ledger.exchanges(TID) if x["mti"] == "0320"]
    assert notes == ["uploaded transaction already known", "uploaded transaction booked",
                     "uploaded transaction already known"]
    # the same STAN on another day is another transaction: DE7 tells them apart
    answer(sim, upload("000013", "000002", 450, de7="0302090000"))
    assert sim.ledger.count(TID, mti="0320") == 2
    bad, _ = answer(sim, upload("000014", "000003", 100, **{"60": "02000000"}))
    assert bad["39"] == "30"


def test_a_chip_upload_carries_its_cryptogram(sim):
    de55 = "9F2608" + "11" * 8 + "9F270140" + "9F3602001C"
    reply, _ = answer(sim, upload("000020", "000005", 1800, **{"22": "051", "55": de55}))
    assert reply["39"] == "00"
    [x] = sim.ledger.exchanges(TID)
    assert x["note"].endswith("TC " + "11" * 8)
    bad, _ = answer(sim, upload("000021", "000006", 1800, **{"22": "051", "55": "9F3602001C"}))
    assert bad["39"] == "30"


def test_93_is_left_out_of_the_batch_until_uploaded(sim):
    reply, _ = answer(sim, sale("000001", 1293))
    assert reply["39"] == "00"                             # approved for the cardholder
    answer(sim, sale("000002", 1000))
    out, _ = answer(sim, settle("000003", totals(2, 2293)))
    assert out["39"] == "95"
    assert sim.ledger.approved_total(TID) == 2293          # booked all the same
    answer(sim, upload("000004", "000001", 1293))
    answer(sim, upload("000005", "000002", 1000))
    assert sim.ledger.count(TID, mti="0320") == 0          # both known: nothing new
    closed, _ = answer(sim, settle("000006", totals(2, 2293), proc="960000"))
    assert closed["39"] == "00"
    assert [s["code"] for s in sim.ledger.settlements(TID)] == ["95", "00"]
    assert all(b["settled"] for b in sim.ledger.money_bookings(TID))


def test_told_to_disagree_or_to_fail(sim):
    answer(sim, sale("000001", 1000))
    sim.disagree(tid="HP000009")                           # another terminal's
    sim.disagree()
    told, _ = answer(sim, settle("000002", totals(1, 1000)))
    assert told["39"] == "95"
    assert "told to disagree" in sim.ledger.exchanges(TID, "000002")[0]["note"]
    sim.fail_settlement("96")
    failed, _ = answer(sim, settle("000003", totals(1, 1000), proc="960000"))
    assert failed["39"] == "96"
    assert not any(b["settled"] for b in sim.ledger.money_bookings(TID))
    closed, _ = answer(sim, settle("000004", totals(1, 1000), proc="960000"))
    assert closed["39"] == "00"


def test_late_answers_are_processed_at_once(sim):
    answer(sim, sale("000001", 1000))
    sim.delay_answers("0500", 5000)
    reply, how = answer(sim, settle("000002", totals(1, 1000)))
    assert (how.delivery, how.delay_ms, reply["39"]) == (SLOW, 5000, "00")
    assert all(b["settled"] for b in sim.ledger.money_bookings(TID))   # closed meanwhile
    _, how = answer(sim, settle("000003", totals(1, 1000)))
    assert how.delivery == NOW


def test_the_command_line_controls():
    args = build_parser().parse_args(["--disagree", "2", "--settle-error", "96"])
    assert args.disagree == 2 and args.settle_error == "96"
