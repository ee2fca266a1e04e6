"""Offline approval and store-and-forward, end to end in one process: the real drivers,
the real queue (AES-GCM in SQLite), TLS to the host simulator through the fault proxy,
whose "network cut" resets every connection as a dead mobile link would."""
import json

import pytest


TID = "HP000001"
SWIPE_OK = {"entry_modes": ["chip", "tap", "swipe"]}


def _queue(h):
    return h.term.payments.queue


def test_network_cut_swipe_is_approved_offline_queued_and_uploaded_once(online, hostsim, net):
    h = online(**SWIPE_OK)
    net.set("reset", existing=True, new=True)
    rec = h.swipe_sale("2000")
    assert rec["state"] == "approved" and rec["offline"] == 1 and rec["upload"] == "pending"
    assert "APPROVED" in h.text() and "OFFLINE" in h.text()
    assert len(rec["rrn"]) == 12 and rec["auth_code"] == "Y1"
    queued = _queue(h).pending()
    assert [(q["kind"], q["amount"], q["stan"]) for q in queued] == [("advice", 2000, rec["stan"])]
    paper = h.sim.vprinter.receipts and h.sim.vprinter.receipts[-1].text()
    h.run(5000, until=lambda: h.sim.vprinter.receipts)
    paper = h.sim.vprinter.receipts[-1].text()
    assert "OFFLINE APPROVED" in paper and "pending upload" in paper
    assert "4111111111111111" not in paper
    assert hostsim.ledger.count(TID, status="approved") == 0      # nothing reached the host
    h.to_idle(3)
    h.run(1000, until=lambda: "Q1" in h.text())     # the count follows within 100 ms
    assert "Offline 1: 20.00" in h.text() and "Q1" in h.text()
    # the payment's card data is sealed on the card: not in the queue file in clear
    raw = open(_queue(h).path, "rb").read()
    assert b"4111111111111111" not in raw
    net.set("pass")
    assert h.upload_all(), _queue(h).records()
    assert hostsim.ledger.count(TID, status="approved") == 1
    assert hostsim.ledger.approved_total(TID) == 2000
    assert h.term.payments.journal.get(rec["id"])["upload"] == "uploaded"
    h.run(500)
    assert "queued" not in h.text() and "Q1" not in h.text()


def test_stripes_are_not_approved_offline_by_default(online, hostsim, net):
    h = online()
    net.set("reset", existing=True, new=True)
    rec = h.swipe_sale("2000")
    assert rec["state"] == "failed" and rec["reason"] == "reason_host_down"
    assert "NOT CHARGED" in h.text() and "Host unreachable" in h.text()
    assert _queue(h).pending() == []


@pytest.mark.parametrize("digits,why,words", [
    ("15000", "off_over_limit", "Over offline limit"),
])
def test_over_the_merchants_limit_is_not_approved_offline(online, hostsim, net, digits, why, words):
    h = online(**SWIPE_OK)
    net.set("reset", existing=True, new=True)
    rec = h.swipe_sale(digits)
    assert rec["state"] == "failed" and rec["reason"] == why
    assert words in h.text() and "NOT CHARGED" in h.text()
    assert _queue(h).pending() == []


def test_count_limit_refuses_the_next_offline_payment(online, hostsim, net):
    h = online(limits={"USD": {"count": 1}}, **SWIPE_OK)
    net.set("reset", existing=True, new=True)
    assert h.swipe_sale("1000")["offline"] == 1
    h.to_idle(3)
    rec = h.swipe_sale("1000")
    assert rec["state"] == "failed" and rec["reason"] == "off_full"
    assert "Offline store full" in h.text()


def test_no_reply_is_reversed_and_approved_offline_with_a_new_stan(online, hostsim, net):
    h = online(**SWIPE_OK)
    rec = h.swipe_sale("2099")             # .99: the host books the 0200 and never answers
    assert rec["state"] == "approved" and rec["offline"] == 1
    first = [r for r in h.term.payments.journal.find() if r["id"] != rec["id"]][-1]
    assert first["state"] in ("reversal_pending", "reversed") and first["stan"] != rec["stan"]
    assert h.upload_all()
    h.run(3000, until=lambda: h.term.payments.journal.get(first["id"])["state"] == "reversed")
    # the host holds the offline approval once and the unanswered 0200 reversed
    assert hostsim.ledger.approved_total(TID) == 2099
    assert hostsim.ledger.count(TID, status="approved") == 1
    assert len(hostsim.ledger.reversals(TID)) == 1


def test_refunds_never_go_offline(online, hostsim, net):
    h = online(**SWIPE_OK)
    sale = h.swipe_sale("3000")
    assert sale["state"] == "approved" and not sale["offline"]
    h.to_idle(3)
    net.set("reset", existing=True, new=True)
    pay = h.term.payments
    assert pay.offline_refusal("refund", 1000, "swipe", "pin") == "off_not_sale"


def test_host_declines_after_upload_alerts_prints_and_waits_for_a_supervisor(online, hostsim, net):
    h = online(**SWIPE_OK)
    net.set("reset", existing=True, new=True)
    rec = h.swipe_sale("1251")             # .51: the host will refuse the advice
    assert rec["offline"] == 1
    h.to_idle(3)
    printed = len(h.sim.vprinter.receipts)
    net.set("pass")
    h.press("MENU", "9", "1")               # offline queue > upload now
    assert h.run(20000, until=lambda: h.flow() and h.flow()[0] == "notice")
    assert "OFFLINE SALE" in h.text() and "Host declined it" in h.text()
    h.run(5000, until=lambda: any("NOTICE" in r.text() for r in h.sim.vprinter.receipts[printed:]))
    [notice] = [r.text() for r in h.sim.vprinter.receipts if "NOTICE" in r.text()]
    assert "DECLINED AFTER UPLOAD" in notice and "NOT paid" in notice and "USD 12.51" in notice
    assert h.term.payments.journal.get(rec["id"])["state"] == "declined"
    assert hostsim.ledger.count(TID, status="approved") == 0
    h.press("ENTER")                        # the notice; then out of upload and the menus
    h.press("ENTER")
    h.run(200)
    h.press("CANCEL", "CANCEL")
    h.run(500)
    assert "1 need supervisor" in h.text(), h.text()
    # Menu 9 (offline queue) > 2 records > ENTER > supervisor's PIN
    h.press("MENU", "9", "2")
    assert "DECLINED" in h.text()
    h.press("ENTER")
    h.press(*"2580")
    h.press("ENTER")
    assert "Acknowledged" in h.text()
    assert h.term.payments.queue_summary()["attention"] == []


def test_logout_refused_until_uploaded_or_exported(online, hostsim, net, tmp_path):
    from board.export import TEST_EXPORT_KEY, TEST_EXPORT_SIGNING_SEED
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from drivers.saf_queue import SafQueue
    h = online(**SWIPE_OK)
    net.set("reset", existing=True, new=True)
    rec = h.swipe_sale("1800")
    h.to_idle(3)
    h.press("MENU", "8")                    # log out
    assert "1 offline not sent" in h.text() and "Upload or export first" in h.text()
    assert h.term.operator is not None
    h.press("ENTER")
    h.press("9", "3")                       # offline queue > export (supervisor)
    h.press(*"2580")
    h.press("ENTER")
    h.press("2", "ENTER")                   # the replacement: HP000002, shown whole first
    assert "HP000002" in h.text() and "1 records" in h.text()
    h.press("ENTER")
    assert "Exported 1 records" in h.text() and "for HP000002" in h.text()
    name = "".join(h.term.screen.lines[2:])      # the file name, wrapped over rows
    path = str(tmp_path / "terminal" / "export" / name)
    doc = json.load(open(path))
    assert "4111111111111111" not in json.dumps(doc)
    h.press("ENTER", "CANCEL")
    h.run(200)
    h.press("8")
    assert h.term.operator is None           # exported: logout allowed
    # a replacement terminal imports and forwards it
    public = Ed25519PrivateKey.from_private_bytes(TEST_EXPORT_SIGNING_SEED).public_key()
    other = SafQueue(str(tmp_path / "other.db"), bytes(32), tid="HP000002")
    assert other.import_file(path, public, TEST_EXPORT_KEY) == 1
    [imported] = other.pending()
    assert imported["tid"] == TID and imported["stan"] == rec["stan"] and imported["amount"] == 1800
    assert other.load(imported["id"])["msg"]["t"] == "0220"


def test_void_before_upload_withdraws_the_advice(online, hostsim, net):
    h = online(**SWIPE_OK)
    net.set("reset", existing=True, new=True)
    rec = h.swipe_sale("2200")
    h.to_idle(3)
    h.press("MENU", "3")                    # void: supervisor, then the latest sale
    h.press(*"2580")
    h.press("ENTER")
    h.press("ENTER")                        # the latest
    h.press("ENTER")                        # yes
    h.run(3000, until=lambda: h.flow() == ("void", "result"))
    assert "VOIDED" in h.text()
    assert h.term.payments.journal.get(rec["id"])["state"] == "voided"
    assert _queue(h).pending() == []
    [q] = _queue(h).records()
    assert q["state"] == "cancelled" and q["closed_by"] == "1"
    net.set("pass")
    h.run(3000)
    assert hostsim.ledger.count(TID) == 0


def test_restart_withdraws_an_advice_whose_approval_was_never_shown(online, hostsim, net):
    h = online(**SWIPE_OK)
    pay = h.term.payments
    # a power cut between queueing the advice and writing APPROVED
    rec = pay._new("sale", "card", 1500, "offline_pending", stan=pay.next_stan(), offline=1)
    qid = _queue(h).add("advice", rec["stan"], 1500, "USD", {"msg": {"t": "0220"}, "journal_id": rec["id"]})
    pay.recover()
    assert pay.journal.get(rec["id"])["state"] == "failed"
    assert _queue(h).get(qid)["state"] == "cancelled"


def test_upload_now_left_alone_goes_back_while_the_host_is_silent(online, hostsim, net):
    """Found by the half-hour storm: Upload now had no timeout, and a host that never
    answered kept the terminal on that screen for good."""
    h = online(**SWIPE_OK)
    net.set("reset", existing=True, new=True)
    assert h.swipe_sale("2000")["offline"] == 1
    h.to_idle()
    net.set("drop")                                 # the host never answers
    h.press("MENU", "9", "1")
    assert h.flow() == ("upload", "working")
    h.advance(h.term.config["ui"]["menu_timeout_s"] * 1000 + 1000)
    h.run(2000, until=lambda: h.flow()[0] != "upload")
    assert h.flow()[0] != "upload", h.text()
    assert _queue(h).pending()                      # nothing lost: it waits for the host
