"""Shifts and cash on the memory journal (tests/portable/shift_contract.py), the
logic of firmware/payments/shifts.py and its paper, on CPython and under MicroPython."""
from firmware.core import config as schema
from firmware.payments import shifts
from firmware.payments.journal import MemoryJournal, ShiftError
from firmware.ui.i18n import Translator
from tests.portable import shift_contract as contract


def test_open_and_read():
    contract.check_open_and_read(MemoryJournal)


def test_pay_ins_and_outs():
    contract.check_moves(MemoryJournal)


def test_close_records_counted_expected_and_difference():
    contract.check_close(MemoryJournal)


def test_expected_cash_of_a_shift():
    contract.check_figures(MemoryJournal)


def test_z_reports_are_kept():
    contract.check_z_reports(MemoryJournal)


class FixedClock:
    def __init__(self, utc=(2026, 3, 1, 8, 30, 0), offset=480, synced=True):
        self.utc = utc
        self.offset = offset
        self.synced = synced

    def utc_time(self):
        return self.utc

    def utc_offset_min(self):
        return self.offset

    def clock_synced(self):
        return self.synced


def _service(currency="USD"):
    audit = []
    system = FixedClock()
    j = MemoryJournal()
    s = shifts.Shifts(j, lambda *a: audit.append(a), system, currency)
    return s, j, audit, system


def test_the_service_writes_then_audits_each_step():
    s, j, audit, system = _service()
    shift = s.open("7", 10000, 2)
    assert shift["opened_utc"] == "2026-03-01T08:30:00Z" and shift["tz_min"] == 480
    assert shift["batch"] == 2 and shift["currency"] == "USD" and s.current("7") == shift
    assert audit[-1] == ("shift_open", "7", "#1 float 100.00 USD batch 2")
    move = s.move(shift, "pay_out", 1500, "bank", "7", "1")
    assert move["reason"] == "bank" and move["supervisor"] == "1"
    assert audit[-1] == ("shift_pay_out", "7", "#1 shift 1 15.00 bank approved by 1")
    try:
        s.move(shift, "pay_in", 100, "lunch", "7", "1")     # not a reason of the list
        raise AssertionError("a reason off the list was taken")
    except ShiftError as exc:
        assert exc.what == "reason"
    assert len(j.cash_moves()) == 1
    system.utc = (2026, 3, 1, 17, 5, 0)
    row = s.close(shift, 8400, [(5000, 1), (1000, 3), (100, 4)])
    assert row["expected"] == 8500 and row["difference"] == -100
    assert row["closed_utc"] == "2026-03-01T17:05:00Z"
    assert shifts.counts_from_json(row["denominations"]) == [(5000, 1), (1000, 3), (100, 4)]
    assert audit[-1] == ("shift_close", "7", "#1 counted 84.00 expected 85.00 difference -1.00")
    assert s.current("7") is None and s.last_closed("7")["id"] == row["id"]
    assert s.last_closed("8") is None


def test_denominations_by_currency():
    assert shifts.denominations("CNY") == (10000, 5000, 2000, 1000, 500, 100, 50, 10)
    assert shifts.denominations("USD") == (10000, 5000, 2000, 1000, 500, 100, 25, 10, 5, 1)
    assert shifts.denominations("JPY") == ()
    counts = [(10000, 2), (25, 3), (1, 4)]
    assert shifts.counted_total(counts) == 20079
    assert shifts.counts_from_json(shifts.counts_json(counts)) == counts
    assert shifts.counts_from_json("") == [] and shifts.counts_from_json("{bad") == []


def test_difference_words_and_signs():
    assert shifts.difference_word(5) == "over" and shifts.difference_word(-5) == "short"
    assert shifts.difference_word(0) == "balanced"
    assert shifts.signed(250, "USD") == "+2.50" and shifts.signed(-250, "USD") == "-2.50"
    assert shifts.signed(0, "CNY") == "0.00"


def test_a_cash_sale_needs_an_open_shift_only_when_required():
    config = schema.defaults()
    j = MemoryJournal()
    assert config["shifts"]["required"] is False
    assert shifts.cash_refusal(config, j, "1") is None
    config["shifts"]["required"] = True
    assert shifts.cash_refusal(config, j, "1") == "sh_open_first"
    j.shift_open("1", 0, "2026-03-01T08:30:00Z", 0, 1)
    assert shifts.cash_refusal(config, j, "1") is None
    assert shifts.cash_refusal(config, j, "2") == "sh_open_first"


def _report(lang, currency):
    s, j, audit, system = _service(currency)
    config = schema.defaults()
    config["money"]["currency"] = currency
    shift = s.open("7", 10000, 1)
    s.move(shift, "pay_in", 2000, "change", "7", "1")
    row = s.close(shift, 12500, [(10000, 1), (2000, 1), (500, 1)])
    r = shifts.report(row, shifts.figures(j, row), config, Translator(lang), name="Li")
    return r


def test_the_shift_report_on_32_columns():
    from firmware.ui.receipt import display_width
    r = _report("en", "USD")
    text = r.text()
    for line in text.split("\n"):
        assert display_width(line) <= 32, line
    assert "SHIFT REPORT" in text
    lines = text.split("\n")
    for left, right in (("Opened", "2026-03-01 16:30"),         # local: UTC+8
                        ("Operator", "7 Li"), ("Float", "100.00"),
                        ("Pay ins (1)", "20.00"), ("  Change (sup. 1)", "20.00"),
                        ("Pay outs (0)", "0.00"), ("Expected", "USD 120.00"),
                        ("Counted", "USD 125.00"), ("Difference OVER", "+5.00"),
                        ("  20.00 x 1", "20.00")):
        assert _pair(left, right) in lines, (left, right, text)


def _pair(left, right):
    return left + " " * (32 - len(left) - len(right)) + right


def test_the_shift_report_in_chinese_keeps_to_32_columns():
    from firmware.ui.receipt import display_width
    r = _report("zh", "CNY")
    text = r.text()
    for line in text.split("\n"):
        assert display_width(line) <= 32, line
    assert "交班报表" in text and "备用金" in text and "长款" in text and "+5.00" in text
    assert "零钱" in text and "CNY 125.00" in text


def test_the_pay_slip_opens_the_drawer():
    s, j, audit, system = _service()
    shift = s.open("7", 0, 1)
    move = s.move(shift, "pay_out", 1999, "expenses", "7", "1")
    r = shifts.move_slip(move, shift, schema.defaults(), Translator("en"))
    text = r.text()
    assert r.kick_drawer and "PAY OUT" in text and "-USD 19.99" in text
    assert "Expenses" in text and "2026-03-01" in text
