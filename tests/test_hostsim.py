"""The acquirer host simulator's decisions and books: outcomes by amount, duplicates
booked once, reversals applied, advices, settlement, echo, PIN verification."""
import os
import stat

import pytest

from drivers.iso8583_spec import decode, encode
from tools.host import hostsim
from tools.host.hostsim import DEFAULT_BDK, GARBLED, NOW, SILENT, SLOW, HostSim, build_parser, ensure_tls

TID = "HP000001"
PAN = "4111111111111111"
TRACK2 = "4012888888881881=28121011234567890"
DE7 = "1121093015"


@pytest.fixture
def sim(tmp_path):
    host = HostSim(str(tmp_path), tls=False, slow_ms=100)
    yield host
    host.ledger.close()


def sale(stan, amount=1000, mti="0200", tid=TID, de7=DE7, **extra):
    msg = {"t": mti, "2": PAN, "3": "000000", "4": "%012d" % amount, "7": de7, "11": stan,
           "22": "051", "41": tid, "42": "000000000000001", "49": "840"}
    msg.update(extra)
    return msg


def reversal(stan, original, mti="0400"):
    return dict(original, t=mti, **{"11": stan, "90": "0200" + original["11"] + original["7"]
                                    + "0" * 22})


def answer(sim, msg):
    """What the simulator sends back, through the real encoder and decoder."""
    reply = sim.handle(decode(encode(msg)))
    assert reply is not None
    payload = reply.payload()
    return (decode(payload) if payload and reply.delivery != GARBLED else None), reply.delivery


# -- outcomes -----------------------------------------------------------------------

@pytest.mark.parametrize("cents, code, delivery", [
    (0, "00", NOW), (1, "00", NOW), (5, "05", NOW), (51, "51", NOW), (54, "54", NOW),
    (55, "55", NOW), (91, "91", NOW), (97, "00", SLOW), (98, "00", GARBLED), (99, "00", SILENT),
])
def test_outcome_table(sim, cents, code, delivery):
    reply = sim.handle(sale("000001", 4200 + cents))
    assert reply.delivery == delivery
    assert reply.msg["39"] == code and reply.msg["t"] == "0210"
    booked = sim.ledger.find("000001", TID)
    assert (booked is not None) == (code == "00")
    if code == "00":
        assert len(reply.msg["38"]) == 6 and len(reply.msg["37"]) == 12
        assert booked["rrn"] == reply.msg["37"] and booked["amount"] == 4200 + cents
        assert booked["pan"] == "411111******1111"     # the ledger never holds a PAN


def test_garbled_reply_does_not_decode_and_silence_sends_nothing(sim):
    from drivers.iso8583_spec import HostMessageError
    garbled = sim.handle(sale("000001", 1098))
    with pytest.raises(HostMessageError):
        decode(garbled.payload())
    assert sim.handle(sale("000002", 1099)).payload() is None


def test_every_request_and_response_is_in_the_ledger(sim):
    answer(sim, sale("000001", 1000))
    answer(sim, sale("000002", 1051))
    rows = sim.ledger.exchanges(TID)
    assert [(r["mti"], r["response"]["39"]) for r in rows] == [("0200", "00"), ("0200", "51")]
    assert rows[0]["request"]["2"] == "411111******1111"
    for suffix in ("", "-wal"):
        if os.path.exists(sim.ledger.path + suffix):
            with open(sim.ledger.path + suffix, "rb") as f:
                assert PAN.encode() not in f.read()


def test_undecodable_request_is_recorded_and_not_answered(sim):
    assert sim.handle_raw(b"0200garbage") is None
    assert sim.ledger.undecodable_count() == 1


# -- duplicates -------------------------------------------------------------------------

def test_same_tid_stan_de7_is_a_duplicate_answered_with_the_original(sim):
    first, _ = answer(sim, sale("000010", 2500))
    again, _ = answer(sim, sale("000010", 2500))
    assert again == first                         # same RRN, same auth code
    assert sim.ledger.count(TID) == 1
    assert sim.ledger.approved_total(TID) == 2500


def test_a_new_de7_or_another_terminal_is_not_a_duplicate(sim):
    answer(sim, sale("000010", 2500))
    answer(sim, sale("000010", 2500, de7="1121093016"))
    answer(sim, sale("000010", 2500, tid="HP000002"))
    assert sim.ledger.count(TID) == 2
    assert sim.ledger.count("HP000002") == 1


def test_repeat_mti_gets_the_original_answer_even_with_a_new_de7(sim):
    first, _ = answer(sim, sale("000011", 1000))
    repeat, delivery = answer(sim, sale("000011", 1000, mti="0201", de7="1121093100"))
    assert repeat == first and delivery == NOW
    assert sim.ledger.count(TID) == 1


def test_repeat_of_a_silent_original_is_answered_now_and_booked_once(sim):
    assert sim.handle(sale("000012", 1099)).delivery == SILENT
    repeat, delivery = answer(sim, sale("000012", 1099, mti="0201"))
    assert repeat["39"] == "00" and delivery == NOW
    assert sim.ledger.count(TID) == 1


def test_repeat_with_another_amount_is_not_the_same_request(sim):
    # e.g. a terminal whose journal was reset reusing a STAN: never the old answer
    answer(sim, sale("000014", 1000))
    other, _ = answer(sim, sale("000014", 2000, mti="0201"))
    assert other["4"] == "%012d" % 2000
    assert sim.ledger.count(TID) == 2


def test_repeat_never_seen_before_is_processed_as_new(sim):
    reply, _ = answer(sim, sale("000013", 1000, mti="0201"))
    assert reply["39"] == "00" and reply["t"] == "0210"
    assert sim.ledger.count(TID) == 1


# -- reversals ---------------------------------------------------------------------------

def test_reversal_by_de90_is_applied_once(sim):
    original = sale("000020", 1099)
    sim.handle(original)                          # booked, never answered
    assert sim.ledger.approved_total(TID) == 1099
    reply, _ = answer(sim, reversal("000021", original))
    assert reply["t"] == "0410" and reply["39"] == "00" and reply["90"].startswith("0200000020")
    assert sim.ledger.find("000020", TID)["status"] == "reversed"
    assert sim.ledger.approved_total(TID) == 0
    again, _ = answer(sim, reversal("000021", original, mti="0401"))
    assert again == reply
    assert len(sim.ledger.reversals(TID)) == 1


def test_reversal_without_de90_uses_tid_and_stan(sim):
    original = sale("000030", 1500)
    sim.handle(original)
    reply, _ = answer(sim, dict(original, t="0400"))
    assert reply["39"] == "00"
    assert sim.ledger.find("000030", TID)["status"] == "reversed"


def test_reversal_naming_another_de7_leaves_the_booking_alone(sim):
    original = sale("000035", 1500)
    sim.handle(original)
    answer(sim, reversal("000036", dict(original, **{"7": "0101000000"})))
    assert sim.ledger.find("000035", TID)["status"] == "approved"


def test_reversal_of_an_unknown_transaction_is_acknowledged(sim):
    reply, _ = answer(sim, reversal("000041", sale("000040", 1000)))
    assert reply["t"] == "0410" and reply["39"] == "00"
    assert sim.ledger.reversals(TID)[0]["booking"] is None


def test_reversal_only_touches_its_own_terminal(sim):
    mine = sale("000050", 1000)
    sim.handle(mine)
    sim.handle(sale("000050", 1000, tid="HP000002"))
    answer(sim, reversal("000051", mine))
    assert sim.ledger.find("000050", "HP000002")["status"] == "approved"
    assert sim.ledger.find("000050", TID)["status"] == "reversed"


def test_void_by_rrn_and_its_reversal(sim):
    first, _ = answer(sim, sale("000060", 3000))
    void = sale("000061", 3000, **{"3": "020000", "37": first["37"]})
    reply, _ = answer(sim, void)
    assert reply["39"] == "00"
    assert sim.ledger.find("000060", TID)["status"] == "voided"
    assert sim.ledger.approved_total(TID) == 0
    answer(sim, reversal("000062", void))         # the void is undone
    assert sim.ledger.find("000060", TID)["status"] == "approved"
    assert sim.ledger.approved_total(TID) == 3000
    unknown, _ = answer(sim, sale("000063", 3000, **{"3": "020000", "37": "000000000000"}))
    assert unknown["39"] == "25"


# -- advices, uploads, settlement, network ---------------------------------------------------

@pytest.mark.parametrize("card, why", [
    ({"2": PAN, "35": TRACK2}, "the card twice"),
    ({}, "no card"),
])
def test_a_card_request_carries_its_card_once(sim, card, why):
    # docs/host-protocol.md section 5: DE35 (a stripe's track 2 or a chip's tag 57) or
    # DE2 (with DE14), exactly one
    msg = {k: v for k, v in sale("000060").items() if k not in ("2",)}
    msg.update(card)
    reply, _ = answer(sim, msg)
    assert reply["39"] == "30" and sim.ledger.find("000060", TID) is None
    assert why in sim.ledger.exchanges(TID, "000060")[0]["note"]
    reply, _ = answer(sim, dict(msg, t="0100", **{"11": "000061"}))
    assert reply["t"] == "0110" and reply["39"] == "30"


def test_a_chip_request_with_its_track_2_equivalent_in_de35(sim):
    msg = {k: v for k, v in sale("000062").items() if k != "2"}
    reply, _ = answer(sim, dict(msg, **{"35": TRACK2}))
    assert reply["39"] == "00" and sim.ledger.find("000062", TID)["pan"] == "401288******1881"


def test_advice_booked_once_with_its_repeat(sim):
    advice = sale("000070", 1234, mti="0220", **{"38": "OFF001"})
    reply, _ = answer(sim, advice)
    assert reply["t"] == "0230" and reply["39"] == "00"
    again, _ = answer(sim, dict(advice, t="0221", **{"7": "1121100000"}))
    assert again == reply
    assert sim.ledger.count(TID, mti="0220") == 1
    assert sim.ledger.approved_total(TID) == 1234


def totals(sales=0, sales_amount=0, refunds=0, refunds_amount=0):
    return "%03d%012d%03d%012d" % (sales, sales_amount, refunds, refunds_amount)


def settle(stan, de63, proc="920000", batch="000001"):
    return {"t": "0500", "3": proc, "7": DE7, "11": stan, "41": TID, "42": "000000000000001",
            "60": batch, "63": de63}


def test_settlement_totals_compared_and_batch_closed(sim):
    answer(sim, sale("000080", 1000))
    answer(sim, sale("000081", 2000))
    answer(sim, sale("000082", 500, **{"3": "200000"}))          # a refund
    answer(sim, sale("000083", 1051))                            # declined: not counted
    wrong, _ = answer(sim, settle("000084", totals(2, 3001, 1, 500)))
    assert wrong["t"] == "0510" and wrong["39"] == "95"
    right, _ = answer(sim, settle("000085", totals(2, 3000, 1, 500)))
    assert right["39"] == "00"
    assert sim.ledger.approved_total(TID) == 2500
    assert sim.ledger.approved_total(TID, unsettled_only=True) == 0
    assert [s["code"] for s in sim.ledger.settlements(TID)] == ["95", "00"]


def test_batch_upload_then_settlement_after_upload(sim):
    answer(sim, sale("000090", 1000))
    upload = sale("000091", 700, mti="0320", **{"60": "0200" + "000077", "37": "600000000077",
                                                 "38": "ABC123"})
    reply, _ = answer(sim, upload)
    assert reply["t"] == "0330" and reply["39"] == "00"
    assert sim.ledger.find("000077", TID)["amount"] == 700
    closed, _ = answer(sim, settle("000092", totals(2, 1700), proc="960000"))
    assert closed["39"] == "00"
    assert sim.ledger.approved_total(TID, unsettled_only=True) == 0


@pytest.mark.parametrize("code, rc", [("001", "00"), ("002", "00"), ("301", "00"), ("161", "00"),
                                      ("999", "12")])
def test_network_management(sim, code, rc):
    reply, _ = answer(sim, {"t": "0800", "7": DE7, "11": "000100", "41": TID, "70": code})
    assert reply["t"] == "0810" and reply["39"] == rc and reply["70"] == code


# -- PIN ----------------------------------------------------------------------------------------

KSN = "FFFF9876543210E00000"


def pin_fields(pin, pan=PAN, bdk=DEFAULT_BDK):
    from firmware.security import dukpt
    term = dukpt.DukptTerminal(dukpt.derive_ipek(bdk, KSN), KSN, save=lambda state: None)
    ksn, block = term.encrypt_pin(bytearray(pin), pan)
    return {"52": bytes(block).hex().upper(), "53": bytes(ksn).hex().upper()}


def test_right_pin_approves_wrong_pin_is_55(sim):
    good, _ = answer(sim, sale("000110", 1000, **pin_fields(b"1234")))
    assert good["39"] == "00"
    bad, _ = answer(sim, sale("000111", 1000, **pin_fields(b"4321")))
    assert bad["39"] == "55"
    assert sim.ledger.find("000111", TID) is None


def test_pin_with_track2_pan_and_another_bdk(sim):
    pan = TRACK2.split("=")[0]
    msg = sale("000112", 1000, **pin_fields(b"1234", pan=pan))
    del msg["2"]
    msg["35"] = TRACK2
    assert answer(sim, msg)[0]["39"] == "00"
    other = sale("000113", 1000, **pin_fields(b"1234", bdk="00" * 16))
    assert answer(sim, other)[0]["39"] == "55"     # another key decrypts to noise


def test_pin_block_without_ksn_is_a_format_error(sim):
    fields = pin_fields(b"1234")
    reply, _ = answer(sim, sale("000114", 1000, **{"52": fields["52"]}))
    assert reply["39"] == "30"


def test_wrong_pin_keeps_the_amounts_delivery(sim):
    reply = sim.handle(sale("000115", 1097, **pin_fields(b"9999")))
    assert reply.msg["39"] == "55" and reply.delivery == SLOW


# -- TLS material and the command line ------------------------------------------------------------

def test_tls_material_made_once_and_key_private(tmp_path):
    from cryptography import x509
    first = ensure_tls(str(tmp_path))
    assert first["created"]
    assert stat.S_IMODE(os.stat(first["key"]).st_mode) == 0o600
    again = ensure_tls(str(tmp_path))
    assert not again["created"] and again["ca"] == first["ca"]
    with open(first["cert"], "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(a) for a in san.get_values_for_type(x509.IPAddress)]


def test_command_line_options():
    args = build_parser().parse_args([])
    assert args.listen == ("127.0.0.1", 8583) and not args.no_tls
    assert args.slow_ms == hostsim.DEFAULT_SLOW_MS and args.bdk == DEFAULT_BDK
    args = build_parser().parse_args(["--listen", "0.0.0.0:9000", "--no-tls", "--slow-ms", "50",
                                      "--bdk", "00112233445566778899aabbccddeeff"])
    assert args.listen == ("0.0.0.0", 9000) and args.no_tls and args.slow_ms == 50
    assert args.bdk == "00112233445566778899AABBCCDDEEFF"
    for bad in (["--listen", "nowhere"], ["--bdk", "1234"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(bad)


def test_main_reports_a_port_in_use(tmp_path, capsys):
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        rc = hostsim.main(["--listen", "127.0.0.1:%d" % port, "--data", str(tmp_path), "--no-tls"])
    finally:
        busy.close()
    assert rc == 1
    assert "cannot listen" in capsys.readouterr().err
