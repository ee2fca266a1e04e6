"""Shifts and cash (issue 14, item 1) on the whole simulated board: MENU > Reports >
Shift opens a shift with the float, takes pay ins and pay outs with a supervisor's
PIN, closes with the cash counted (the total or note by note) against what is
expected, and prints the shift report. Also: two operators' shifts in one batch, the
shift that must be open for a cash sale, a restart, a full card, a flipped byte, the
SQLite journal keeping the same contract as the memory one."""
import os
import sqlite3

from tests.portable import shift_contract as contract


def _ready(harness, **kw):
    h = harness(**kw)
    h.first_supervisor()
    h.login()
    return h


def _to_idle(h):
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    assert h.flow() == ("idle", "idle"), h.text()


def _shift_menu(h):
    h.press("MENU", "5", "1")
    assert h.flow() == ("shift", "menu"), h.text()
    return h.text()


def _leave_menu(h):
    h.press("CANCEL", "CANCEL", "CANCEL")
    _to_idle(h)


def _open(h, digits):
    text = _shift_menu(h)
    assert "1 Open shift" in text, text
    h.press("1", *digits)
    h.press("ENTER")
    assert "Shift open" in h.text(), h.text()
    h.press("ENTER")
    assert "1 Pay in" in h.text(), h.text()
    _leave_menu(h)
    return h.term.payments.journal.shift_current(h.term.operator["id"])


def _cash_sale(h, digits):
    h.press(*digits)
    h.press("ENTER", "2", "ENTER", "ENTER", "CANCEL")
    _to_idle(h)
    return h.term.payments.journal.last(kind="sale")


def _move(h, entry, digits, reason, pin="2580", sup_id=None):
    """Pay in (entry 1) or pay out (2) from the shift menu, approved; back at the menu."""
    _shift_menu(h)
    h.press(entry, *digits)
    h.press("ENTER", reason)
    if sup_id is not None:
        h.press(*sup_id)
        h.press("ENTER")
    h.press(*pin)
    h.press("ENTER")
    assert h.flow() == ("shift_move", "result"), h.text()
    h.press("ENTER")
    _leave_menu(h)


def _paper(h, marker, ms=5000):
    h.run(ms, until=lambda: h.sim.vprinter.receipts and marker in h.sim.vprinter.receipts[-1].text())
    text = h.sim.vprinter.receipts[-1].text()
    assert marker in text, text
    return text


def _pair(left, right, width=32):
    from firmware.ui.receipt import display_width
    return left + " " * (width - display_width(left) - display_width(right)) + right


def _add_cashier(h):
    """Operator 7, a cashier (PIN 1357), added by the supervisor logged in."""
    h.add_operator("1", "7", "1357")            # a cashier, ID 7
    _to_idle(h)


def test_a_shift_from_float_to_close_counts_its_cash_and_prints_its_report(harness):
    h = _ready(harness)
    shift = _open(h, "10000")                                # a float of 100.00
    assert shift["float"] == 10000 and shift["state"] == "open" and shift["batch"] == 1
    sale = _cash_sale(h, "1250")
    _cash_sale(h, "300")
    h.press("MENU", "3", "2", "5", "8", "0", "ENTER", "ENTER", "ENTER")   # void the 3.00
    h.wait_for("VOIDED")
    h.press("ENTER")
    _to_idle(h)
    h.press("MENU", "2", "2", "5", "8", "0", "ENTER", "ENTER", "ENTER")   # refund 5.00 of 12.50
    assert "Up to 12.50" in h.text(), h.text()
    h.press("5", "0", "0", "ENTER", "ENTER", "CANCEL")
    _to_idle(h)
    _move(h, "1", "2000", "1")                                # pay in 20.00: change
    _move(h, "2", "700", "2")                                 # pay out 7.00: supplier
    assert "-USD 7.00" in _paper(h, "PAY OUT") and h.sim.vprinter.receipts[-1].drawer_kicked
    _shift_menu(h)
    h.press("3")                                              # status
    status = h.term.screen.lines
    assert status == ["Float 100.00", "Cash in 35.50", "Cash out 15.00", "Expected 120.50"]
    h.press("ENTER", "4")                                     # close: the total counted
    assert "Cash in the drawer" in h.text() and "F1 notes" in h.text()
    assert "120.50" not in h.text()                           # counted before it is shown
    h.press("1", "2", "0", "0", "0", "ENTER")
    assert h.term.screen.lines == ["Expected 120.50", "Counted 120.00", "SHORT -0.50"]
    h.press("ENTER")
    assert h.flow() == ("shift_close", "closed")
    assert "SHORT -0.50" in h.text() and "Printing report" in h.text(), h.text()
    paper = _paper(h, "SHIFT REPORT")
    lines = paper.split("\n")
    for left, right in (("Shift", "#1"), ("Operator", "1 Supervisor 1"), ("Batch", "1"),
                        ("Float", "100.00"), ("Cash sales (2)", "15.50"),
                        ("Cash refunds (1)", "-5.00"), ("Cash voids (1)", "-3.00"),
                        ("Pay ins (1)", "20.00"), ("  Change (sup. 1)", "20.00"),
                        ("Pay outs (1)", "-7.00"), ("  Supplier (sup. 1)", "-7.00"),
                        ("Expected", "USD 120.50"), ("Counted", "USD 120.00"),
                        ("Difference SHORT", "-0.50")):
        assert _pair(left, right) in lines, (left, right, paper)
    assert [l for l in lines if l.startswith("Opened ") or l.startswith("Closed ")]
    h.run(2000, until=lambda: "Printed" in h.text())
    assert "Printed" in h.text(), h.text()
    h.press("ENTER")
    assert h.term.screen.lines == ["1 Open shift", "2 Print last shift"]
    row = h.term.payments.journal.shift_get(shift["id"])
    assert (row["state"], row["counted"], row["expected"], row["difference"]) == \
        ("closed", 12000, 12050, -50)
    assert row["denominations"] == "" and row["txn_until"] > row["txn_after"]
    assert h.term.payments.journal.get(sale["id"])["refunded"] == 500
    audit = [(e, who, d) for _, e, who, d in h.term.store.audit_log(50)]
    assert ("shift_open", "1", "#1 float 100.00 USD batch 1") in audit
    assert ("shift_pay_in", "1", "#1 shift 1 20.00 change approved by 1") in audit
    assert ("shift_pay_out", "1", "#2 shift 1 7.00 supplier approved by 1") in audit
    assert ("shift_close", "1", "#1 counted 120.00 expected 120.50 difference -0.50") in audit


def test_two_operators_in_one_batch_count_their_own_sales(harness):
    h = _ready(harness)
    _add_cashier(h)
    _open(h, "5000")
    _cash_sale(h, "1000")
    h.press("MENU", "8")                                      # log out, the shift open
    assert h.term.operator is None
    assert h.term.screen.lines == ["Shift still open", "Operator 1", "Close it later"]
    h.press("ENTER")
    h.login("7", "1357")
    assert h.term.role() == "cashier"
    _open(h, "2000")
    _cash_sale(h, "400")
    _cash_sale(h, "250")
    _shift_menu(h)
    h.press("4", "2", "6", "5", "0", "ENTER")
    assert h.term.screen.lines == ["Expected 26.50", "Counted 26.50", "Balanced"]
    h.press("ENTER")
    paper = _paper(h, "SHIFT REPORT")
    assert _pair("Operator", "7 Cashier 7") in paper.split("\n"), paper
    assert _pair("Cash sales (2)", "6.50") in paper.split("\n"), paper
    assert _pair("Difference BALANCED", "0.00") in paper.split("\n"), paper
    h.press("ENTER")
    _leave_menu(h)
    h.press("MENU", "8")                                      # closed: no notice
    h.run(1000, until=lambda: "Operator ID" in h.text())
    assert "Operator ID" in h.text() and "Shift still open" not in h.text()
    h.login()
    _shift_menu(h)
    h.press("3")
    assert h.term.screen.lines[-1] == "Expected 60.00"        # 50.00 and 1's own 10.00
    j = h.term.payments.journal
    both = j.shifts(batch=1)
    assert [(s["operator"], s["state"]) for s in both] == [("1", "open"), ("7", "closed")]
    assert both[1]["expected"] == 2650 and both[1]["difference"] == 0


def test_a_pay_out_needs_a_supervisor(harness):
    h = _ready(harness)
    _add_cashier(h)
    h.press("MENU", "8")
    h.login("7", "1357")
    _open(h, "1000")
    _shift_menu(h)
    h.press("2", "5", "0", "0")
    assert "USD 5.00" in h.text()
    h.press("ENTER")
    assert h.flow() == ("shift_move", "reason") and "2 Supplier" in h.text()
    h.press("2")
    assert h.flow()[0] == "supervisor" and "Approve pay out" in h.text()
    h.press("7", "ENTER", "1", "3", "5", "7", "ENTER")        # the cashier: no supervisor
    assert "Not a supervisor" in h.text(), h.text()
    h.press("1", "ENTER", "9", "9", "9", "9", "ENTER")        # a wrong PIN
    assert "Wrong ID or PIN" in h.text(), h.text()
    h.press("CANCEL")
    assert h.flow() == ("shift_move", "reason") and "Not approved" in h.text(), h.text()
    assert h.term.payments.journal.cash_moves() == []         # nothing without approval
    h.press("ENTER", "1", "ENTER", "2", "5", "8", "0", "ENTER")
    assert h.flow() == ("shift_move", "result") and h.term.screen.big == "5.00"
    move, = h.term.payments.journal.cash_moves()
    assert (move["kind"], move["amount"], move["reason"], move["operator"], move["supervisor"]) \
        == ("pay_out", 500, "supplier", "7", "1")
    refused = [d for _, e, who, d in h.term.store.audit_log(50) if e == "supervisor_refused"]
    assert len(refused) == 2


def test_closing_by_denomination_in_chinese(harness):
    h = _ready(harness)
    h.term.config["money"]["currency"] = "CNY"
    h.term.set_language("zh")
    h.run(100)
    h.press("MENU", "5", "1")
    assert h.term.screen.title == "班次" and "1 开班" in h.text(), h.text()
    h.press("1")
    assert "清点备用金" in h.text()
    h.press("2", "0", "0", "0", "0", "ENTER")
    assert "已开班" in h.text() and "备用金 200.00" in h.text(), h.text()
    h.press("ENTER")
    _leave_menu(h)
    _cash_sale(h, "5860")
    h.press("MENU", "5", "1")
    assert "4 交班" in h.text(), h.text()
    h.press("2", "1", "0", "0", "0", "ENTER")                   # pay out 10.00, then pay it back in
    assert h.term.screen.title == "原因" and "3 费用" in h.text(), h.text()
    h.press("CANCEL")
    assert "支出现金" in h.text()
    h.press("ENTER", "5")
    assert "批准支出现金" in h.text(), h.text()
    h.press("2", "5", "8", "0", "ENTER")
    assert "其他" in h.text() and h.term.screen.big == "10.00", h.text()
    h.press("ENTER", "1", "1", "0", "0", "0", "ENTER", "1", "2", "5", "8", "0", "ENTER")
    assert "零钱" in h.text(), h.text()
    h.press("ENTER", "3")
    assert h.term.screen.lines == ["备用金 200.00", "收入 68.60", "支出 10.00", "应有 258.60"]
    h.press("ENTER")
    h.press("4")
    assert "F1按面额" in h.text()
    h.press("F1")
    assert "面额 100.00 数量" in h.text() and "合计 0.00" in h.text(), h.text()
    h.press("2", "ENTER")                      # 2 x 100
    h.press("1", "ENTER")                      # 1 x 50
    assert "面额 20.00 数量" in h.text() and "合计 250.00" in h.text(), h.text()
    h.press("UP")                              # back: the 50s keep their count
    assert "面额 50.00 数量" in h.text() and "x 1" in h.text(), h.text()
    h.press("DOWN", "ENTER", "ENTER")          # 20s and 10s: none
    h.press("1", "ENTER")                      # 1 x 5
    h.press("3", "ENTER")                      # 3 x 1
    h.press("1", "ENTER")                      # 1 x 0.50
    assert "面额 0.10 数量" in h.text() and "合计 258.50" in h.text(), h.text()
    h.press("ENTER")                           # no 0.10 coins
    assert h.term.screen.lines == ["应有 258.60", "实点 258.50", "短款 -0.10"]
    h.press("CANCEL")                          # count again: the last denomination
    assert "面额 0.10 数量" in h.text()
    h.press("ENTER")
    h.press("ENTER")
    assert "已交班" in h.text() and "短款 -0.10" in h.text(), h.text()
    paper = _paper(h, "交班报表")
    lines = paper.split("\n")
    for left, right in (("备用金", "200.00"), ("现金销售 (1)", "58.60"),
                        ("应有现金", "CNY 258.60"), ("实点现金", "CNY 258.50"),
                        ("差额 短款", "-0.10"), ("  100.00 x 2", "200.00"),
                        ("  0.50 x 1", "0.50")):
        assert _pair(left, right) in lines, (left, right, paper)
    assert "按面额清点" in paper and "  20.00 x 0" not in paper
    row = h.term.payments.journal.shifts()[0]
    import json
    assert json.loads(row["denominations"]) == [[10000, 2], [5000, 1], [2000, 0], [1000, 0],
                                                [500, 1], [100, 3], [50, 1], [10, 0]]
    assert (row["counted"], row["expected"], row["difference"]) == (25850, 25860, -10)
    assert row["currency"] == "CNY"
    h.press("ENTER")
    _leave_menu(h)
    _shift_menu(h)
    h.press("1", "ENTER")                                       # the next shift: no float
    assert "已开班" in h.text() and "备用金 0.00" in h.text(), h.text()
    h.press("ENTER")
    _leave_menu(h)
    h.press("MENU", "8")
    assert h.term.screen.lines == ["班次仍未交班", "操作员 1", "请稍后交班"]


def test_cash_needs_an_open_shift_when_the_configuration_says_so(harness):
    h = _ready(harness)
    h.term.config["shifts"]["required"] = True
    h.press("5", "0", "0", "ENTER", "2")
    assert h.flow() == ("sale", "method") and "Open a shift first" in h.text(), h.text()
    assert h.term.payments.journal.find() == []
    h.press("CANCEL", "CANCEL")
    _to_idle(h)
    _open(h, "0")
    rec = _cash_sale(h, "500")
    assert rec["state"] == "approved" and rec["amount"] == 500


def test_a_restart_keeps_the_shift_open(harness):
    h = _ready(harness)
    _open(h, "10000")
    _cash_sale(h, "1250")
    h.close()
    h = harness()
    h.login()
    text = _shift_menu(h)
    assert "1 Pay in" in text and "4 Close shift" in text, text
    h.press("3")
    assert h.term.screen.lines[-1] == "Expected 112.50"


def test_a_full_card_writes_no_half_shift(harness, disk):
    h = _ready(harness)
    j = h.term.payments.journal
    errors = h.reactor.errors
    disk.fill()
    _shift_menu(h)
    h.press("1", "1", "0", "0", "0", "0", "ENTER")            # open
    text = h.text()
    assert "STORAGE FULL" in text and "Nothing lost" in text, text
    assert j.shifts() == [] and h.reactor.errors == errors
    disk.free()
    h.advance(30100)
    _to_idle(h)
    shift = _open(h, "10000")
    disk.fill()
    _shift_menu(h)
    h.press("2", "7", "0", "0", "ENTER", "2", "2", "5", "8", "0", "ENTER")   # pay out
    assert "STORAGE FULL" in h.text(), h.text()
    assert j.cash_moves() == [] and h.reactor.errors == errors
    disk.free()
    h.advance(30100)
    _to_idle(h)
    disk.fill()
    _shift_menu(h)
    h.press("4", "9", "0", "0", "0", "ENTER")                 # close
    assert h.term.screen.lines[-1] == "SHORT -10.00"
    h.press("ENTER")
    assert "STORAGE FULL" in h.text(), h.text()
    row = j.shift_get(shift["id"])
    assert row["state"] == "open" and row["counted"] == 0 and h.reactor.errors == errors
    disk.free()
    h.advance(30100)
    _to_idle(h)
    _shift_menu(h)
    h.press("4", "9", "0", "0", "0", "ENTER", "ENTER")
    assert h.flow() == ("shift_close", "closed"), h.text()
    assert j.shift_get(shift["id"])["difference"] == -1000
    _paper(h, "SHIFT REPORT")


def test_no_printer_or_no_paper_closes_the_shift_and_it_prints_again_later(harness):
    h = _ready(harness)
    _open(h, "5000")
    h.sim.vprinter.set_paper(False)
    before = len(h.sim.vprinter.receipts)
    _shift_menu(h)
    h.press("4", "5", "0", "0", "0", "ENTER", "ENTER")
    assert h.flow() == ("shift_close", "closed")
    h.run(3000, until=lambda: "Not printed" in h.text())      # the printer says: no paper
    assert h.term.printer_state == "paper_out"
    assert h.term.screen.lines == ["Balanced", "Not printed", "Shift: print again"]
    assert h.term.payments.journal.shifts()[0]["state"] == "closed"
    h.sim.vprinter.set_paper(True)                              # the held job goes out
    _paper(h, "SHIFT REPORT")
    h.run(3000, until=lambda: "Printed" in h.text())
    assert "Printed" in h.text(), h.text()
    h.press("ENTER")
    h.press("2")                                                # Print last shift
    assert "Printing report" in h.text(), h.text()
    paper = _paper(h, h.term.t("rcpt_reprint"))
    assert "SHIFT REPORT" in paper and len(h.sim.vprinter.receipts) == before + 2
    h.press("ENTER")
    _leave_menu(h)
    h.term.printer = None                                       # a board without one
    _open(h, "100")
    _shift_menu(h)
    h.press("4", "1", "0", "0", "ENTER", "ENTER")
    assert h.term.screen.lines == ["Balanced", "Not printed", "Shift: print again"]
    h.press("ENTER", "2")                                       # Print last shift
    assert h.term.screen.lines == ["Not printed", "No printer", "Shift: print again"]


def test_a_flipped_byte_in_a_shift_row_is_flagged_never_acted_on(harness):
    h = _ready(harness)
    _open(h, "10000")
    _move(h, "1", "2000", "1")
    folder = h.term.config["storage"]["data_dir"]
    h.close()
    db = sqlite3.connect(os.path.join(folder, "journal.db"))
    db.execute('UPDATE shifts SET "float"=1000000 WHERE id=1')      # 10,000.00 in the drawer
    db.execute("UPDATE cash_moves SET amount=200 WHERE id=1")
    db.commit()
    db.close()
    h = harness()
    h.boot()
    assert "Journal: 2 bad" in h.text(), h.text()                   # the self-test names them
    h.press("ENTER")
    h.login()
    assert "! Bad records: 2" in h.text(), h.text()
    j = h.term.payments.journal
    assert j.shift_get(1) is None and j.shifts() == [] and j.shift_current("1") is None
    assert j.cash_moves() == []
    assert [(r[0], r[2]) for r in j.damaged()] == [(1, "cash move 1: MAC failed"),
                                                   (1, "shift 1: MAC failed")]
    text = _shift_menu(h)
    assert "1 Open shift" in text and "Pay in" not in text, text    # never acted on
    _leave_menu(h)
    h.press("MENU", "7", "7")                                       # Diagnostics > Damaged
    assert "shift 1: MAC failed" in h.text() or "shift 1: MAC" in h.text(), h.text()
    db = sqlite3.connect(os.path.join(folder, "journal.db"))
    assert db.execute("SELECT COUNT(*) FROM shifts").fetchone()[0] == 1   # never deleted
    db.close()


# -- the SQLite journal: the contract, and a journal of the release before ------------
def _sqlite(tmp_path):
    from drivers.journal_sqlite import SQLiteJournal
    from drivers.sqlite_durable import mac_key
    n = [0]

    def make():
        n[0] += 1
        return SQLiteJournal(str(tmp_path / ("journal%d.db" % n[0])), mac_key(b"k" * 32, "journal"))
    return make


def test_the_sqlite_journal_keeps_the_shift_contract(tmp_path):
    make = _sqlite(tmp_path)
    contract.check_open_and_read(make)
    contract.check_moves(make)
    contract.check_close(make)
    contract.check_figures(make)
    contract.check_z_reports(make)


def test_a_schema_2_journal_gets_the_shift_tables_and_keeps_its_seals(tmp_path):
    import pytest
    from drivers.journal_sqlite import SCHEMA_VERSION, SQLiteJournal
    from drivers.sqlite_durable import mac_key
    from firmware.core.store import StorageFault
    from firmware.payments.journal import record
    path = str(tmp_path / "journal.db")
    key = mac_key(b"k" * 32, "journal")
    j = SQLiteJournal(path, key)
    j.next_counter("batch", 999999)
    j.add(record(state="approved", amount=1250, batch=1))
    j.close()
    db = sqlite3.connect(path)                      # as the release before left it
    for table in ("shifts", "cash_moves", "z_reports", "row_flags"):
        db.execute("DROP TABLE %s" % table)
    db.execute("DROP INDEX txns_batch")
    db.execute("UPDATE counters SET value=7 WHERE name='batch'")   # altered meanwhile
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    j = SQLiteJournal(path, key)
    assert j.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    names = {r[0] for r in j.db.execute("SELECT name FROM sqlite_master")}
    assert {"shifts", "cash_moves", "z_reports", "row_flags", "txns_batch"} <= names
    assert j.find(batch=1)[0]["amount"] == 1250            # records keep their MACs
    with pytest.raises(StorageFault):                      # never sealed again as it stands
        j.counter("batch")
    sid = j.shift_open("1", 500, contract.OPEN, 0, 1, "USD")
    assert j.shift_get(sid)["float"] == 500 and j.verify_recent() == []
    plan = " ".join(r[-1] for r in j.db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM txns WHERE batch=1").fetchall())
    assert "txns_batch" in plan, plan
    j.close()
