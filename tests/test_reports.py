"""X and Z reports on the whole simulated board (issue 14 item 2): a mixed day made
through the keypad, the card reader, the scanner and the QR acquirer (cash, a swiped
card, a WeChat Pay code, an item sale and a refund of two of its lines, a void, a
decline, an offline approval still to upload, a cashier's sale), then MENU > Reports >
X report on screen (scrolled) and on paper, to the cent, in English and in Chinese; the
Z made and stored once per batch, the last Z shown and reprinted DUPLICATE, audited, and
"Not printed" when there is no printer.

The figures by hand (USD):
  sales   12.50 cash + 20.00 card + 30.00 QR + 5.76 items (cash) + 7.00 cash (cashier 2)
          + 15.00 card offline (cashier 2) = 90.26, 6 sales; the 3.00 voided is no sale
  refunds 2.98 (two colas, cash)                     net 87.28
  voids   1, 3.00          declined 1, 20.05          offline unsent 1, 15.00
  cash    sales 3: 25.26, refund 2.98, void 3.00: net 22.28
  card    2 sales, VISA, swiped: 35.00                QR  WeChat Pay, customer code: 30.00
  operator 1: sales 68.26, refund 2.98, void 3.00: net 65.28;  operator 2: 22.00
  items   water 1 sold 1.29; cola 3 sold 4.47, 2 back -2.98;  Drinks 2.78
"""
import json

import pytest

from tests.conftest import qr_config
from tools.sim import demo_codes

WATER, COLA = demo_codes.ITEMS[0], demo_codes.ITEMS[1]
WECHAT = "134567890123456789"
SWIPE_OK = {"entry_modes": ["chip", "tap", "swipe"]}


@pytest.fixture
def board(harness, hostsim, net, acquirer):
    """Host through the fault proxy (offline swipes allowed), the QR acquirer, the demo
    catalogue, supervisor 1 logged in."""
    h = harness(host=("127.0.0.1:%d" % net.port, hostsim.ca_file), synced=True,
                offline=SWIPE_OK, qr=qr_config(acquirer))
    h.first_supervisor()
    h.login()
    h.run(3000, until=lambda: h.term.link_state == "up")
    h.load_demo_catalogue()
    return h


def _last(h):
    return h.term.payments.journal.last()


def _cash_sale(h, digits):
    h.press(*digits)
    h.press("ENTER", "2", "ENTER")
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy", "result"))
    rec = _last(h)
    assert rec["state"] == "approved" and rec["method"] == "cash", rec
    h.to_idle()
    return rec


def _mixed_day(h, net):
    _cash_sale(h, "1250")
    card = h.swipe_sale("2000")
    assert card["state"] == "approved" and card["card_label"] == "VISA", card
    h.to_idle()
    h.press("3", "0", "0", "0", "ENTER", "3")            # QR: the customer's code
    h.scan(WECHAT)
    h.wait_for_flow(("sale", "result"))
    assert _last(h)["card_label"] == "WeChat Pay" and _last(h)["state"] == "approved"
    h.to_idle()
    h.scan(WATER)                                        # items: water and three colas
    h.scan(COLA)
    h.press("F1", "3", "ENTER")
    assert "Total 5.76" in h.text(), h.text()
    h.press("ENTER", "2", "ENTER")
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy", "result"))
    items = _last(h)
    assert items["amount"] == 576 and items["cart"]
    h.to_idle()
    h.press("MENU", "2", *"2580")                        # two colas back, cash
    h.press("ENTER", *str(items["id"]))
    h.press("ENTER")
    h.press("ENTER")
    h.press("DOWN", "2", "ENTER")
    assert "Refund 2.98" in h.text(), h.text()
    h.press("ENTER", "ENTER")
    h.run(3000, until=lambda: h.flow() and h.flow()[1] in ("change", "copy"))
    assert _last(h)["kind"] == "refund" and _last(h)["amount"] == 298
    h.to_idle()
    _cash_sale(h, "300")                                 # voided at once
    h.press("MENU", "3", *"2580")
    h.press("ENTER", "ENTER", "ENTER")
    h.wait_for("VOIDED")
    h.to_idle()
    declined = h.swipe_sale("2005")
    assert declined["state"] == "declined", declined
    h.to_idle()
    h.term.auth.create("2", "Ann", "cashier", "1357")    # the cashier's turn
    h.press("F4")
    h.login("2", "1357")
    assert h.term.operator["id"] == "2"
    _cash_sale(h, "700")
    net.set("reset", existing=True, new=True)            # the host gone: offline
    offline = h.swipe_sale("1500")
    assert offline["offline"] == 1 and offline["upload"] == "pending", offline
    h.to_idle()


def _paper(h, n):
    h.run(5000, until=lambda: len(h.sim.vprinter.receipts) >= n)
    return h.sim.vprinter.receipts[n - 1].text()


def _report_paper(h, head, after=0):
    """The newest receipt after the first `after` whose text has head (a sale's receipt
    may still be printing when the report is asked for)."""
    def found():
        return [r.text() for r in h.sim.vprinter.receipts[after:] if head in r.text()]
    h.run(5000, until=found)
    assert found(), [r.text() for r in h.sim.vprinter.receipts[after:]]
    return found()[-1]


def _amount(text, label):
    """The amount at the end of the first line that starts with label."""
    for line in text.split("\n"):
        if line.strip().startswith(label):
            return line.split()[-1]
    raise AssertionError("no %r in\n%s" % (label, text))


def test_x_report_of_a_mixed_day_on_screen_and_paper_in_both_languages(board, net):
    h = board
    _mixed_day(h, net)
    batch = h.term.payments.batch()
    h.press("MENU", "5")
    assert h.flow()[0] == "reports", h.text()
    h.press("2")                                         # X report: a cashier may
    assert h.flow() == ("x_report", "view"), h.text()
    screen = h.term.screen
    assert screen.title == "X report" and screen.top == 0
    text = h.text()
    for words in ("X REPORT", "Batch %d" % batch, "Sales 6", "90.26", "Refunds 1", "-2.98",
                  "NET", "87.28", "Voids 1", "3.00", "Offline unsent 1", "15.00",
                  "Declined 1", "20.05", "Customer code", "WeChat Pay", "VISA", "Swiped",
                  "Operator 1", "Operator 2", "Cola", "back 2", "Drinks", "Totals check OK"):
        assert words in text, (words, text)
    h.press("DOWN", "DOWN", "DOWN")
    assert h.term.screen.top == 3
    h.press("UP")
    assert h.term.screen.top == 2
    for _ in range(len(screen.lines) + 5):               # never past the last page
        h.press("DOWN")
    assert h.term.screen.top == len(h.term.screen.lines) - 3
    nothing_reset = [r["id"] for r in h.term.payments.journal.find(batch=batch)]

    before = len(h.sim.vprinter.receipts)
    h.press("F1")
    paper = _report_paper(h, "X REPORT", before)
    assert "DUPLICATE" not in paper
    assert _amount(paper, "Sales 6") == "90.26"
    assert _amount(paper, "Refunds 1") == "-2.98"
    assert _amount(paper, "NET") == "87.28"
    assert _amount(paper, "Voids 1") == "3.00"
    assert _amount(paper, "Declined 1") == "20.05"
    assert _amount(paper, "Offline unsent 1") == "15.00"
    assert _amount(paper, "Cash") == "22.28"
    assert _amount(paper, "Card") == "35.00"
    assert _amount(paper, "QR") == "30.00"
    assert _amount(paper, "Operator 1") == "65.28"
    assert _amount(paper, "Operator 2") == "22.00"
    assert _amount(paper, "Drinks") == "2.78"
    assert "sold 3" in paper and "Totals check OK" in paper
    assert max(len(line) for line in paper.split("\n")) <= 32
    h.run(3000, until=lambda: "Printed" in h.text())
    assert "Printed" in h.text()
    assert [r for r in h.term.store.audit_log(50) if r[1] == "x_printed" and r[2] == "2"]
    h.press("CANCEL")
    assert h.flow()[0] == "reports"
    # nothing was reset or stored: the batch is what it was
    assert h.term.payments.batch() == batch
    assert [r["id"] for r in h.term.payments.journal.find(batch=batch)] == nothing_reset

    h.term.set_language("zh")
    h.press("2")
    text = h.text()
    for words in ("X报表", "批次 %d" % batch, "销售 6笔", "90.26", "净额", "87.28", "撤销 1笔",
                  "离线未上传 1笔", "扫顾客付款码", "操作员 2", "饮料", "合计核对无误"):
        assert words in text, (words, text)
    h.press("F1")
    paper = _report_paper(h, "X报表", before)
    assert "X报表" in paper and _amount(paper, "净额") == "87.28"
    from firmware.ui.receipt import display_width
    assert max(display_width(line) for line in paper.split("\n")) <= 32


def test_z_is_stored_once_and_the_last_z_is_a_duplicate(board):
    from firmware.flows.report_view import make_z, stored_z
    h = board
    _cash_sale(h, "1250")
    _cash_sale(h, "500")
    journal = h.term.payments.journal
    batch = h.term.payments.batch()
    before = len(h.sim.vprinter.receipts)
    doc = make_z(h.term, batch)
    assert doc["report"] == "Z" and doc["batch"] == batch
    assert doc["totals"]["total"]["net"] == 1750 and doc["totals"]["total"]["sale_n"] == 2
    paper = _report_paper(h, "Z REPORT", before)
    assert "DUPLICATE" not in paper
    assert _amount(paper, "NET") == "17.50"
    assert h.term.payments.batch() == batch                # the settlement moves it on
    # started again for the same batch: the stored Z, never a second one
    _cash_sale(h, "100")
    again = make_z(h.term, batch)
    assert again == doc and again["totals"]["total"]["net"] == 1750
    assert len(journal.z_reports(batch=batch)) == 1
    assert stored_z(journal, batch) == doc
    assert "Z REPORT" in _report_paper(h, "DUPLICATE", before)

    h.press("MENU", "5", "5")                              # Last Z
    assert h.flow() == ("last_z", "view"), h.text()
    text = h.text()
    assert "Z REPORT" in text and "DUPLICATE" in text and "17.50" in text
    assert "Reprinted" in text
    printer = h.term.printer
    h.term.printer = None                                  # no printer: said, no harm
    h.press("F1")                                          # a supervisor says yes first
    assert h.flow() == ("supervisor", "pin"), h.text()
    h.press("2", "5", "8", "0", "ENTER")
    assert "Not printed" in h.text()
    h.term.printer = printer
    n = len(h.sim.vprinter.receipts)
    h.press("F1", "2", "5", "8", "0", "ENTER")
    paper = _report_paper(h, "DUPLICATE", n)
    assert "** DUPLICATE **" in paper and "Z REPORT" in paper and "Reprinted" in paper
    assert _amount(paper, "NET") == "17.50"
    events = [r[1] for r in h.term.store.audit_log(50)]
    assert events.count("z_report") == 1 and events.count("z_reprinted") >= 2
    assert json.loads(json.dumps(doc)) == doc


def test_last_z_without_any_says_so(harness):
    h = harness()
    h.first_supervisor()
    h.login()
    h.press("MENU", "5", "5")
    assert "No Z report yet" in h.text()
    n = len(h.sim.vprinter.receipts)
    h.press("F1")
    h.run(300)
    assert len(h.sim.vprinter.receipts) == n
    h.press("CANCEL")
    assert h.flow()[0] == "reports"


def test_a_z_whose_stored_copy_fails_its_check_is_made_again_not_stored(tmp_path):
    """The journal keeps one Z a batch (save_z of a second raises ZExists): when the
    stored one fails its check, make_z returns and prints the Z it made, and the audit
    line says it was not stored; the damaged one stays, flagged."""
    from drivers.journal_sqlite import SQLiteJournal
    from drivers.sqlite_durable import mac_key
    from firmware.flows.report_view import make_z, stored_z
    from firmware.payments.journal import record
    from tools.bench.reports import BenchTerm, _catalogue
    journal = SQLiteJournal(str(tmp_path / "journal.db"), mac_key(b"k" * 32, "journal"))
    journal.add(record(amount=1250, state="approved", batch=1, utc="2026-06-30T02:00:00Z"))
    term = BenchTerm(journal, 1, _catalogue()[0])
    audit = []
    term.store.audit = lambda event, op="", detail="": audit.append((event, detail))
    doc = make_z(term, 1, print_it=False)
    assert make_z(term, 1, print_it=False) == doc == stored_z(journal, 1)
    assert audit == [("z_report", "batch 1 net 1250")]
    journal.db.execute("UPDATE z_reports SET doc=replace(doc, '1250', '9250')")  # on the card
    again = make_z(term, 1, print_it=False)
    assert again["report"] == "Z" and again["totals"]["total"]["net"] == 1250
    assert audit[-1] == ("z_report", "batch 1 net 1250 not stored: the stored Z fails its check")
    assert journal.db.execute("SELECT COUNT(*) FROM z_reports").fetchone()[0] == 1
    assert [what for _, _, what in journal.damaged()] == ["Z report 1: MAC failed"]
    journal.close()
