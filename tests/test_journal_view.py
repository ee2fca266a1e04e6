"""The journal on the terminal (issue 14 item 4): MENU > Reports > 4 Journal lists the
transactions newest first, finds them by amount, card's last 4, receipt number, STAN or
date, opens one, and prints its receipt again marked DUPLICATE with an audit line.

The whole board runs (tests/conftest.py SimHarness); card sales go to the host
simulator. A journal of 2,000 records scrolls while only the records near the screen
are read (each read verifies a MAC).
"""
import re

from firmware.flows import journal_view
from firmware.payments.journal import record


def _cash(h, digits):
    """A cash sale of digits (minor units), exact, no customer copy; back on idle."""
    h.press(*digits)
    h.press("ENTER", "2", "ENTER", "ENTER", "CANCEL")
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    assert h.flow() == ("idle", "idle"), h.text()
    return h.term.payments.journal.last()


def _journal(h):
    """MENU > Reports > Journal."""
    h.press("MENU", "5")
    assert h.flow() == ("reports", "menu"), h.text()
    h.press("4")
    assert h.flow() == ("journal", "list"), h.text()
    return h.text()


def _rows(h):
    """The list's rows as the control socket sees them (the marker stripped)."""
    lines = h.text().splitlines()[1:-1]
    return [line[2:] for line in lines]


def _selected(h):
    [row] = [line[2:] for line in h.text().splitlines() if line.startswith("> ")]
    return row


def _find(h, kind, *digits):
    """F1, the kind of search (1 amount .. 5 date), the digits, ENTER."""
    h.press("F1")
    assert h.flow() == ("journal", "find"), h.text()
    h.press(str(kind))
    assert h.flow() == ("journal", "value"), h.text()
    h.press(*digits)
    h.press("ENTER")
    _searched(h)
    return h.text()


def _searched(h):
    flow = h.term.current()
    h.run(10000, until=lambda: not (flow.NAME == "journal" and flow.searching()))


def _to_idle(h):
    for _ in range(6):
        if h.flow() == ("idle", "idle"):
            return
        h.press("CANCEL")
    assert h.flow() == ("idle", "idle"), h.text()


def _to_list(h):
    """CANCEL back to the whole journal's list."""
    for _ in range(4):
        flow = h.term.current()
        if flow.NAME == "journal" and flow.state == "list" and flow.listing is flow.all:
            return
        h.press("CANCEL")
    assert False, h.text()


def _duplicate(h, number, n=1):
    """The text of the n-th DUPLICATE receipt of record number on the virtual paper."""
    def copies():
        return [r for r in h.sim.vprinter.receipts
                if "DUPLICATE" in r.text() and re.search(r"#%d\n" % number, r.text())]
    h.run(5000, until=lambda: len(copies()) >= n)
    assert len(copies()) >= n, [r.text() for r in h.sim.vprinter.receipts]
    return copies()[n - 1]


def _long_digit_runs(text):
    """Runs of 13-19 digits that pass the Luhn check: a card number in clear."""
    found = []
    for run in re.findall(r"\d{13,19}", text):
        total = 0
        for i, ch in enumerate(reversed(run)):
            d = int(ch)
            if i % 2:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        if total % 10 == 0:
            found.append(run)
    return found


def test_the_list_is_newest_first_and_a_record_opens(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    for digits in ("1250", "500", "99"):
        _cash(h, digits)
    _journal(h)
    rows = _rows(h)
    assert [r.split()[:2] for r in rows] == [["#3", "0.99"], ["#2", "5.00"], ["#1", "12.50"]]
    assert all(re.match(r"\d\d:\d\d$", r.split()[-1]) for r in rows), rows   # today: the time
    h.press("DOWN")
    assert _selected(h).startswith("#2 5.00")
    h.press("ENTER")
    assert h.flow() == ("journal", "record")
    text = h.text()
    assert text.splitlines()[0].startswith("#2 Sale")
    for word in ("Cash", "USD 5.00", "Approved", "Operator 1", "Batch 1"):
        assert word in text, text
    h.press("CANCEL")
    assert h.flow() == ("journal", "list") and _selected(h).startswith("#2 ")
    h.press("CANCEL")                                 # the whole journal: back to Reports
    assert h.flow() == ("reports", "menu"), h.text()


def test_reprint_from_the_journal_is_a_duplicate_and_audited(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    _cash(h, "700")
    _cash(h, "250")
    _journal(h)
    h.press("DOWN", "ENTER")                          # #1, 7.00
    h.press("F1")
    assert "Reprinting #1" in h.text(), h.text()
    copy = _duplicate(h, 1)
    paper = copy.text()
    assert "** DUPLICATE **" in paper and "USD 7.00" in paper and "MERCHANT COPY" in paper
    assert "REPRINT" not in paper
    assert not copy.drawer_kicked                     # a copy opens no drawer
    seq, event, operator, detail = h.term.store.audit_log(1)[0]
    assert (event, operator, detail) == ("reprint", "1", "#1")
    # MENU > Reprint says the same word: one mark for every receipt printed again
    _to_idle(h)
    h.press("MENU", "4", "ENTER", "ENTER")               # the latest: #2
    assert "USD 2.50" in _duplicate(h, 2).text()


def test_a_receipt_that_took_no_money_is_not_reprinted(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    journal = h.term.payments.journal
    journal.add(record(kind="sale", method="card", state="failed", amount=300,
                       reason="reason_host_down", operator="1", utc="2026-01-02T03:04:05Z",
                       pan_masked="411111******1111", last4="1111", card_label="VISA"))
    _journal(h)
    assert _selected(h).startswith("#1 3.00 F"), h.text()    # F: not done
    h.press("ENTER", "F1")
    assert "Nothing to reprint" in h.text() and "Host unreachable" in h.text()
    h.run(500)
    assert not any("DUPLICATE" in r.text() for r in h.sim.vprinter.receipts)
    assert h.term.store.audit_log(1)[0][1] != "reprint"


def test_card_sale_opened_and_found_every_way(online):
    h = online()
    card = h.swipe_sale("1234")
    h.to_idle()
    _cash(h, "1234")                                  # the same amount, cash
    _cash(h, "800")
    journal = h.term.payments.journal
    assert card["state"] == "approved" and card["stan"], card
    _journal(h)
    # open the card sale: masked number, brand, entry, STAN, RRN, auth code
    h.press("DOWN", "DOWN", "ENTER")
    rec = journal.get(card["id"])
    lines = []
    for _ in range(12):
        lines.extend(h.text().splitlines()[1:-1])
        h.press("DOWN")
    text = "\n".join(lines)
    for want in (rec["pan_masked"], "VISA swiped", "USD 12.34", "Approved",
                 "STAN " + rec["stan"], "RRN " + rec["rrn"], "Auth " + rec["auth_code"]):
        assert want in text, (want, text)
    assert "4111111111111111" not in text and not _long_digit_runs(text)
    h.press("CANCEL")

    # by amount: the card sale and the cash sale of 12.34, newest first
    found = _find(h, 1, "1", "2", "3", "4")
    assert found.splitlines()[0].startswith("USD 12.34")
    assert [r.split()[0] for r in _rows(h)] == ["#%d" % (card["id"] + 1), "#%d" % card["id"]]
    h.press("CANCEL")                                 # back to the whole journal
    assert h.flow() == ("journal", "list") and len(_rows(h)) == 3

    # by the card's last four digits
    _find(h, 2, *card["last4"])
    assert [r.split()[0] for r in _rows(h)] == ["#%d" % card["id"]]
    assert h.text().splitlines()[0].startswith("Card *" + card["last4"])
    h.press("CANCEL")

    # by STAN, typed without its leading zeros
    _find(h, 4, *str(int(card["stan"])))
    assert [r.split()[0] for r in _rows(h)] == ["#%d" % card["id"]]
    h.press("CANCEL")

    # by date: today on the terminal's clock, all three; another day, none
    y, m, d = h.term.system.local_time()[:3]
    _find(h, 5, *("%04d%02d%02d" % (y, m, d)))
    assert len(_rows(h)) == 3
    h.press("CANCEL")
    _find(h, 5, "2", "0", "2", "0", "0", "1", "0", "1")
    assert "Nothing found" in h.text()
    h.press("CANCEL")

    # by receipt number: the record opens at once; ENTER goes back to the list
    h.press("F1", "3", *str(card["id"]))
    h.press("ENTER")
    assert h.flow() == ("journal", "record")
    assert h.text().startswith("#%d Sale" % card["id"])
    h.press("ENTER")
    assert h.flow() == ("journal", "list")


def test_bad_search_values_are_named(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    _cash(h, "100")
    _journal(h)
    h.press("F1", "5", "2", "0", "2", "6", "0", "2", "3", "0", "ENTER")
    assert "No such date" in h.text() and h.flow() == ("journal", "value")
    h.press("CANCEL", "2", "1", "2", "3", "ENTER")     # three digits for the last four
    assert "Type 4 digits" in h.text()
    h.press("CANCEL", "3", "9", "9", "ENTER")          # no such receipt
    assert "No such number" in h.text()
    h.press("CANCEL", "1", "ENTER")                   # no amount
    assert "Type an amount" in h.text()
    h.press("CANCEL", "CANCEL")
    assert h.flow() == ("journal", "list")


def test_a_damaged_record_is_named_not_shown(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    for digits in ("100", "200", "300"):
        _cash(h, digits)
    journal = h.term.payments.journal
    journal.db.execute("UPDATE txns SET amount=20000 WHERE id=2")  # changed on the card
    _journal(h)
    assert [r.split()[0] for r in _rows(h)] == ["#3", "#1"]
    h.press("F1", "3", "2", "ENTER")
    assert "Record damaged" in h.text(), h.text()


def _cashier(h):
    """Operator 7, a cashier, added by the supervisor and logged in."""
    h.add_operator("1", "7", "1357")            # a cashier, ID 7
    h.run(500, until=lambda: h.flow() == ("idle", "idle"))
    h.press("MENU", "8")                        # log out
    h.login("7", "1357")
    assert h.term.role() == "cashier", h.text()


def test_a_cashier_browses_and_reprints_a_supervisors_sale_audited(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    _cash(h, "450")                             # taken by the supervisor, operator 1
    _cashier(h)
    _journal(h)
    h.press("ENTER")
    assert "Operator 1" in h.text()
    h.press("F1")
    assert "USD 4.50" in _duplicate(h, 1).text()
    assert h.term.store.audit_log(1)[0][1:] == ("reprint", "7", "#1")


def test_chinese_screens_fit(online):
    """Every journal screen in Chinese: the suite's no_text_lost fixture fails the test
    if any row, title or footer is cut."""
    h = online()
    h.term.set_language("zh")
    h.run(100)
    card = h.swipe_sale("123456")
    h.to_idle()
    journal = h.term.payments.journal
    journal.add(record(kind="refund", method="qr", state="declined", amount=99999,
                       rc="NOTENOUGH", reason="qr_no_balance", operator="123456",
                       utc="2026-01-02T03:04:05Z", pan_masked="1345**********6789",
                       last4="6789", card_label="WeChat Pay", entry="qr",
                       rrn="4200001234202601020123456789", stan="000042"))
    h.press("MENU", "5", "4")
    assert h.flow() == ("journal", "list"), h.text()
    assert "交易流水" in h.text()
    for _ in range(3):
        h.press("DOWN")
    for opened in (card["id"], card["id"] + 1):
        h.press("F1", "3", *str(opened))
        h.press("ENTER")
        assert h.flow() == ("journal", "record"), h.text()
        for _ in range(16):
            h.press("DOWN")
        h.press("F1")
        _to_list(h)
    for kind in range(1, 6):
        for digits in ("1234", "123456", "20260102"):
            h.press("F1", str(kind), *digits)
            h.press("ENTER")
            _searched(h)
            for _ in range(3):
                h.press("DOWN")
            _to_list(h)
    assert "重打印副本" in "\n".join(r.text() for r in h.sim.vprinter.receipts)


def _bulk(journal, n, day="2026-03-0"):
    """n cash sales straight into the journal (synchronous off while they go in: a
    test's speed, not the terminal's way)."""
    journal.db.execute("PRAGMA synchronous=OFF")
    try:
        for i in range(n):
            journal.add(record(kind="sale", method="cash", state="approved",
                               amount=100 + i, operator="1", tz_min=0,
                               utc="%s%dT%02d:%02d:00Z" % (day, 1 + i // 1440 % 9,
                                                          i // 60 % 24, i % 60)))
    finally:
        journal.db.execute("PRAGMA synchronous=FULL")


def test_2000_records_scroll_without_reading_them_all(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    journal = h.term.payments.journal
    _bulk(journal, 2000)
    checked = []
    real = journal._checked

    def counting(rec, mac):
        checked.append(rec["id"])
        return real(rec, mac)
    journal._checked = counting
    _journal(h)
    assert _selected(h).startswith("#2000 20.99"), h.text()
    for _ in range(40):
        h.press("DOWN")
    assert _selected(h).startswith("#1960 "), h.text()
    for _ in range(40):
        h.press("UP")
    assert _selected(h).startswith("#2000 "), h.text()
    # 40 rows down and back: the rows passed and a few below them, never the journal
    assert len(set(checked)) < 80, len(set(checked))
    flow = h.term.current()
    assert len(flow.listing.cache) <= 2 * journal_view.WINDOW + 1

    # a search by amount reads the records of that amount, no others (the journal's
    # index): record #6, found at once, nothing left to look through
    del checked[:]
    h.press("F1", "1", "1", "0", "5", "ENTER")        # 1.05: record #6
    assert not flow.searching() and flow.listing.done
    assert [r.split()[0] for r in _rows(h)] == ["#6"]
    assert set(checked) == {6} and flow.listing.looked == 1
    h.press("CANCEL", "F1", "1", "9", "9", "ENTER")   # 0.99: none, and nothing read
    assert "Nothing found" in h.text() and flow.listing.looked == 0

    # a date reads the records stamped within 14 hours of it, a chunk a turn, the
    # keypad live meanwhile: 2026-03-01 lies under the 560 records of the 2nd
    h.press("CANCEL")
    del checked[:]
    h.press("F1", "5", *"20260301")
    h.press("ENTER")
    assert flow.searching() and flow.listing.looked < 2000
    assert "Searching" in h.text()                    # the footer counts what it looked at
    _searched(h)
    assert _selected(h).startswith("#1440 "), h.text()
    assert 560 < flow.listing.looked < 600 and len(set(checked)) < 600

    # CANCEL stops a search where it is
    h.press("CANCEL", "F1", "5", *"20260301")
    h.press("ENTER")
    assert flow.searching()
    h.press("CANCEL")
    assert not flow.searching() and h.flow() == ("journal", "list")
    assert _selected(h).startswith("#2000 ")


def test_searches_read_only_the_records_that_match(harness):
    """Card records among 1,500 cash sales: by last 4, by STAN (the sale's own, and a
    reversal's), by amount, each one verifies the records it lists and no others."""
    h = harness()
    h.first_supervisor()
    h.login()
    journal = h.term.payments.journal
    _bulk(journal, 1500)
    card = dict(kind="sale", method="card", operator="1", tz_min=0, card_label="VISA",
                pan_masked="424242******4242", last4="4242", utc="2026-03-02T12:00:00Z")
    a = journal.add(record(state="approved", amount=17777, stan="000501", **card))
    b = journal.add(record(state="reversed", amount=18888, stan="000502", rev_stan="000503",
                           **card))
    _bulk(journal, 300, day="2026-04-0")
    checked = []
    real = journal._checked

    def counting(rec, mac):
        checked.append(rec["id"])
        return real(rec, mac)
    journal._checked = counting
    _journal(h)
    flow = h.term.current()
    for kind, digits, want in ((2, "4242", [b, a]), (4, "502", [b]), (4, "503", [b]),
                               (4, "501", [a]), (1, "18888", [b])):
        del checked[:]
        _find(h, kind, *digits)
        assert [r.split()[0] for r in _rows(h)] == ["#%d" % i for i in want], h.text()
        assert sorted(set(checked)) == sorted(want), (digits, checked)
        assert flow.listing.looked == len(want)
        h.press("CANCEL")
