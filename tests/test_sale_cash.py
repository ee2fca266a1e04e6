"""Cash sales, refunds, voids and reprints on the whole simulated board."""


def _ready(harness, **ui):
    h = harness(**ui)
    h.first_supervisor()
    h.login()
    return h


def _paper(h, n):
    h.run(5000, until=lambda: len(h.sim.vprinter.receipts) >= n)
    return [r.text() for r in h.sim.vprinter.receipts]


def test_cash_sale_change_drawer_and_receipts(harness):
    h = _ready(harness)
    h.press("1", "2", "5", "0")                    # a digit on idle starts a sale
    assert "USD 12.50" in h.text()
    h.press("ENTER")
    assert "1 Card" in h.text() and "2 Cash" in h.text()
    h.press("2")
    assert "Total 12.50" in h.text()
    h.press("2", "0", "0", "0", "ENTER")
    assert h.term.screen.big == "7.50"               # change due, large
    records = h.term.payments.journal.find()
    assert len(records) == 1 and records[0]["state"] == "approved"
    assert records[0]["amount"] == 1250 and records[0]["tendered"] == 2000
    paper = _paper(h, 1)
    assert "CASH" in paper[0] and "USD 12.50" in paper[0]
    assert "Cash given" in paper[0] and "7.50" in paper[0]
    assert "MERCHANT COPY" in paper[0]
    assert h.sim.vprinter.receipts[0].drawer_kicked
    h.press("ENTER")
    assert "Customer copy?" in h.text()
    h.press("ENTER")
    paper = _paper(h, 2)
    assert "CUSTOMER COPY" in paper[1]
    assert not h.sim.vprinter.receipts[1].drawer_kicked
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    assert h.flow() == ("idle", "idle")
    assert h.term.payments.journal.get(records[0]["id"])["receipt_printed"] == 1


def test_amount_entry_keys_and_limits(harness):
    h = _ready(harness)
    h.term.config["money"]["max_amount"] = 50000          # 500.00
    h.press("MENU", "1")
    h.press("ENTER")
    assert "Enter an amount" in h.text()
    h.press("4", "00")
    assert "USD 4.00" in h.text()
    h.press("BKSP")
    assert "USD 0.40" in h.text()
    h.press("CLEAR", "5", "0", "0", "0", "0")
    assert "USD 500.00" in h.text()
    h.press("1")                                          # 5000.01 is refused as typed
    assert "Above the maximum" in h.text() and "USD 500.00" in h.text()
    h.press(".")                                          # no decimal point to type
    assert "USD 500.00" in h.text()
    h.press("ENTER", "2", "1", "0", "ENTER")
    assert "Less than the total" in h.text()
    h.press("CANCEL", "CANCEL", "CANCEL")
    assert h.term.payments.journal.find() == []           # nothing was recorded


def test_cash_refund_needs_a_supervisor_and_never_exceeds_the_sale(harness):
    h = _ready(harness)
    h.press("1", "2", "5", "0", "ENTER", "2", "ENTER", "ENTER", "CANCEL")
    sale = h.term.payments.journal.find()[0]
    h.press("MENU", "2")
    assert "Supervisor" in h.text()
    h.press("9", "9", "9", "9", "ENTER")                  # wrong PIN of supervisor 1
    assert "Wrong ID or PIN" in h.text()
    h.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    assert "ENTER = latest" in h.text()
    h.press("ENTER")
    assert "#%d" % sale["id"] in h.text() and "12.50" in h.text()
    h.press("ENTER")
    assert "Up to 12.50" in h.text()
    h.press("5", "0", "0", "ENTER")
    assert "Pay back" in h.text() and h.term.screen.big == "5.00"
    paper = _paper(h, 2)                                  # the sale's, then the refund's
    assert "REFUND" in paper[1] and "-USD 5.00" in paper[1]
    assert h.term.payments.journal.get(sale["id"])["refunded"] == 500
    h.press("ENTER", "CANCEL")
    h.run(2000, until=lambda: h.flow() == ("idle", "idle"))
    h.press("MENU", "2", "2", "5", "8", "0", "ENTER", "ENTER", "ENTER")
    assert "Up to 7.50" in h.text()
    h.press("8", "0", "0")                                # 8.00 > 7.50 left: refused
    assert "Above the maximum" in h.text()


def test_cash_void_opens_the_drawer_and_marks_the_sale(harness):
    h = _ready(harness)
    h.press("3", "0", "0", "ENTER", "2", "ENTER", "ENTER", "CANCEL")
    h.run(2000, until=lambda: h.flow() == ("idle", "idle"))
    h.press("MENU", "3", "2", "5", "8", "0", "ENTER")   # supervisor PIN (logged in as one)
    h.press("ENTER", "ENTER")
    h.wait_for("VOIDED")
    sale = h.term.payments.journal.find(kind="sale")[0]
    assert sale["state"] == "voided"
    paper = _paper(h, 2)
    assert "VOID" in paper[-1] and h.sim.vprinter.receipts[-1].drawer_kicked
    h.press("ENTER")
    h.press("MENU", "3", "2", "5", "8", "0", "ENTER", "ENTER")
    assert "Nothing to choose" in h.text()                # a voided sale cannot be voided again


def test_reprint_of_the_last_receipt(harness):
    h = _ready(harness)
    h.press("MENU", "4")
    assert "Nothing to reprint" in h.text()
    h.press("ENTER", "CANCEL")
    h.press("9", "9", "ENTER", "2", "ENTER", "ENTER", "CANCEL")
    h.run(2000, until=lambda: h.flow() == ("idle", "idle"))
    h.press("MENU", "4")                                  # the receipt's number, or ENTER
    assert "ENTER = #1" in h.text()
    h.press("ENTER")
    assert "USD 0.99" in h.text()                         # which one, to confirm
    h.press("ENTER")
    assert "Reprinting #1" in h.text()
    paper = _paper(h, 2)
    assert "DUPLICATE" in paper[-1] and "USD 0.99" in paper[-1]
    assert not h.sim.vprinter.receipts[-1].drawer_kicked
    assert any(r[1] == "reprint" and r[3] == "#1" for r in h.term.store.audit_log()), \
        h.term.store.audit_log()                          # who reprinted what, kept


def test_paper_out_in_the_middle_of_a_sale_is_told_and_finishes(harness):
    h = _ready(harness)
    h.sim.vprinter.set_paper(False)
    h.press("5", "0", "0", "ENTER", "2", "ENTER")
    h.run(3000, until=lambda: "no paper" in h.text())
    assert "Printer: no paper" in h.text()
    assert h.term.payments.journal.find()[0]["state"] == "approved"   # the money is recorded
    h.sim.vprinter.set_paper(True)
    paper = _paper(h, 1)
    assert "USD 5.00" in paper[0]
    assert paper[0].count("TOTAL") == 1                  # no line printed twice


def test_chinese_receipt_when_the_terminal_speaks_chinese(harness):
    h = harness(language="zh")
    h.boot()
    h.wait_for("欢迎")
    h.press("ENTER", "1", "ENTER", "2", "5", "8", "0", "ENTER", "2", "5", "8", "0", "ENTER", "ENTER")
    h.wait_for("操作员号")
    h.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    h.press("1", "2", "5", "0", "ENTER", "2", "ENTER")
    assert "找零" in h.text()
    paper = _paper(h, 1)[0]
    for words in ("消费", "现金", "合计", "实收", "找零", "交易成功", "商户存根"):
        assert words in paper, words
