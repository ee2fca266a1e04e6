"""The display and printer models: what a person reads, column by column."""
from firmware.ui.receipt import WIDTH, Receipt, display_width, fit
from firmware.ui.screen import BODY_ROWS, Screen, Status

CJK_TOTAL = "\u5408\u8ba1"            # 合计, 2 glyphs, 4 columns
CJK_LONG = "\u5408\u8ba1\u91d1\u989d"  # 合计金额, 8 columns
FULLWIDTH_A = "\uff21"                # Ａ


# -- screen --------------------------------------------------------------------

def test_screen_text_rows_title_status_body_footer():
    status = Status(clock="09:05", synced=True, link="up")
    screen = Screen(title="Sale", lines=["Card", "Cash"], footer="OK  Back",
                    selected=1, status=status)
    assert screen.text() == "Sale | 09:05 L+\n  Card\n> Cash\nOK  Back"


def test_screen_text_without_selection_big_line_and_pin_field():
    screen = Screen(title="Amount", lines=["Insert card"], big="12.50", masked="****")
    assert screen.text() == "Amount\n12.50\nInsert card\n****"


def test_screens_compare_by_content():
    a = Screen(title="T", lines=["x"], status=Status(clock="10:00"))
    b = Screen(title="T", lines=["x"], status=Status(clock="10:00"))
    c = Screen(title="T", lines=["x"], status=Status(clock="10:01"))
    assert a == b
    assert a != c
    assert not (a == "T")


def test_first_visible_keeps_the_selected_row_on_screen():
    for count in range(0, 9):
        lines = ["row %d" % i for i in range(count)]
        for selected in range(-1, count):
            first = Screen(lines=lines, selected=selected).first_visible()
            assert first >= 0
            # never scrolled past the end: the body stays full when it can
            assert first <= max(0, count - BODY_ROWS), (count, selected, first)
            if selected >= 0:
                assert first <= selected < first + BODY_ROWS, (count, selected, first)


def test_first_visible_scrolls_one_row_at_a_time():
    lines = ["row %d" % i for i in range(8)]
    seen = [Screen(lines=lines, selected=s).first_visible() for s in range(8)]
    assert seen == [0, 0, 0, 1, 2, 3, 4, 5]


def test_status_marks_an_unsynchronised_clock():
    assert Status(clock="12:34", synced=False).text().split(" ")[0] == "12:34?"
    assert Status(clock="12:34", synced=True).text().split(" ")[0] == "12:34"
    assert "?" not in Status(clock="12:34", synced=True, link="up").text()


def test_status_shows_link_battery_queue_and_printer():
    text = Status(clock="09:05", synced=True, link="down", battery=80, charging=True,
                  pending=2, printer="paper_out").text()
    assert text == "09:05 L- B80+ Q2 P!"
    assert "Q" not in Status(pending=0).text()
    assert "B" not in Status(battery=None).text()
    assert "P" not in Status(printer="ok").text()


# -- receipt -----------------------------------------------------------------

def test_display_width_counts_cjk_as_two_columns():
    assert display_width("") == 0
    assert display_width("TOTAL 12.50") == 11
    assert display_width(CJK_TOTAL) == 4
    assert display_width(FULLWIDTH_A) == 2
    assert display_width("A" + CJK_TOTAL + "1") == 6


def test_fit_never_splits_a_wide_glyph():
    assert fit(CJK_LONG, 5) == CJK_TOTAL
    assert fit("a" + CJK_TOTAL, 2) == "a"
    assert fit("a" + CJK_TOTAL, 3) == "a\u5408"
    assert fit("abc", 10) == "abc"
    assert fit(CJK_LONG, 0) == ""
    for text in (CJK_LONG, "a" + CJK_LONG + "bc", "ab" + FULLWIDTH_A + "c"):
        for width in range(0, 12):
            cut = fit(text, width)
            assert text.startswith(cut)
            assert display_width(cut) <= width
            rest = text[len(cut):]
            # as much as fits: the next glyph would not
            assert not rest or display_width(cut + rest[0]) > width


def test_receipt_pair_fills_exactly_the_width():
    receipt = Receipt().pair("Total", "12.50").pair(CJK_TOTAL, "CNY 8.00")
    lines = receipt.pair("Total", CJK_TOTAL).text().split("\n")
    assert WIDTH == 32
    assert lines[0] == "Total" + " " * 22 + "12.50"
    assert lines[1].startswith(CJK_TOTAL) and lines[1].endswith("CNY 8.00")
    assert lines[2] == "Total" + " " * 23 + CJK_TOTAL
    for line in lines:
        assert display_width(line) == 32, line


def test_receipt_pair_cuts_the_left_text_and_keeps_a_gap():
    line = Receipt().pair("x" * 40, "1234.56").text()
    assert display_width(line) == 32
    assert line.endswith(" 1234.56")
    line = Receipt().pair("x" * 40, CJK_LONG).text()
    assert line == "x" * 23 + " " + CJK_LONG
    line = Receipt().pair(CJK_LONG * 4, "99.00").text()   # 32 columns of CJK on the left
    assert display_width(line) <= 32
    assert line.endswith(" 99.00")
    assert display_width(line) >= 31   # only a split glyph's column may be lost


def test_receipt_rule_center_right_and_double_size():
    receipt = Receipt().rule().add("ABC", align="center").add("ABC", align="right")
    receipt.add("BIG", align="center", size=2).rule("=").blank()
    lines = receipt.text().split("\n")
    assert lines[0] == "-" * 32
    assert lines[1] == " " * 14 + "ABC"
    assert lines[2] == " " * 29 + "ABC"
    assert lines[3] == " " * 6 + "BIG"     # 16 columns at double width
    assert lines[4] == "=" * 32
    assert lines[5] == ""


def test_receipt_centres_cjk_by_columns_not_characters():
    line = Receipt().add(CJK_TOTAL, align="center").text()
    assert line == " " * 14 + CJK_TOTAL
    line = Receipt().add(CJK_LONG * 5, align="right").text()   # 40 columns: cut to 32
    assert line == CJK_LONG * 4


def test_a_scrolled_text_shows_from_its_top_and_never_past_the_end():
    lines = ["a", "b", "c", "d", "e"]
    assert Screen(lines=lines, top=0).first_visible() == 0
    assert Screen(lines=lines, top=1).first_visible() == 1
    assert Screen(lines=lines, top=9).first_visible() == 2
    assert Screen(lines=lines[:2], top=1).first_visible() == 0
    assert Screen(lines=lines, top=0).scrolls() and Screen(lines=lines, selected=0).scrolls()
    assert not Screen(lines=lines).scrolls()


def test_wrap_breaks_long_words_into_rows_that_fit():
    from firmware.ui.screen import wrap
    from firmware.ui.receipt import display_width
    name = "saf-HP000001-20261130T122840Z.json"
    rows = wrap(name)
    assert "".join(rows) == name and len(rows) == 3
    assert rows[0] == "saf-HP000001-" and all(display_width(r) <= 18 for r in rows)
    assert wrap("short") == ["short"] and wrap("") == [""]
    assert wrap("a" * 40) == ["a" * 18, "a" * 18, "a" * 4]
    zh = wrap("离线交易已上传到主机请核对")
    assert all(display_width(r) <= 18 for r in zh) and "".join(zh) == "离线交易已上传到主机请核对"
