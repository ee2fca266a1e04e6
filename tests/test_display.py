"""The display driver rendering into luma's own dummy device (mode "1")."""
import os

import pytest
from hypothesis import given, settings, HealthCheck
from hypothesis import strategies as st
from luma.core.device import dummy
from PIL import Image

from drivers.display import (FONT_PACKAGE, PNG_OFF, PNG_ON, DisplayError, FontNotFoundError,
                             LumaDisplay, NullDisplay, find_font, image_to_png,
                             open_luma_device)
from firmware.ui.screen import Screen, Status

MENU_EN = ["Sale", "Refund", "Void", "Settlement", "Reports"]
MENU_ZH = ["销售", "退货", "撤销交易", "结算", "报表"]


def make(width=128, height=64, **kw):
    return LumaDisplay(dummy(width=width, height=height, mode="1"), **kw)


@pytest.fixture(scope="module")
def display():
    return make()


def lit(image, box):
    """Fraction of lit pixels in box (x0, y0, x1, y1 exclusive)."""
    region = image.crop(box)
    hist = region.histogram()            # mode "1": lit pixels count as 1 (Pillow 13)
    return (hist[1] + hist[255]) / (region.width * region.height)


def ink_box(image, box):
    """Bounding box of lit pixels inside box, in image coordinates, or None."""
    inner = image.crop(box).getbbox()
    if inner is None:
        return None
    return (box[0] + inner[0], box[1] + inner[1], box[0] + inner[2], box[1] + inner[3])


def row_box(d, index):
    y = d.layout.row_y(index)
    return (0, y, d.size[0], y + d.layout.pitch)


# -- pushing frames ------------------------------------------------------------------

def test_identical_screen_pushes_one_frame():
    frames = []
    d = make(on_frame=frames.append)
    screen = Screen(title="Menu", lines=MENU_EN, selected=0, footer="OK")
    assert d.show(screen) is True
    first = d.device.image.copy()
    assert d.show(Screen(title="Menu", lines=MENU_EN, selected=0, footer="OK")) is False
    assert d.frames == 1 and len(frames) == 1
    assert d.device.image.tobytes() == first.tobytes()
    assert d.device.image.mode == "1" and d.device.image.size == (128, 64)


def test_changed_screen_pushes_again():
    frames = []
    d = make(on_frame=frames.append)
    d.show(Screen(title="Menu", lines=MENU_EN, selected=0))
    before = d.device.image.tobytes()
    d.show(Screen(title="Menu", lines=MENU_EN, selected=1))
    assert d.frames == 2 and len(frames) == 2
    assert d.device.image.tobytes() != before
    assert frames[-1].tobytes() == d.device.image.tobytes()


def test_status_change_pushes_only_when_pixels_change():
    d = make()
    d.show(Screen(title="Idle", status=Status(clock="10:00", synced=True)))
    d.show(Screen(title="Idle", status=Status(clock="10:01", synced=True)))
    assert d.frames == 2
    d.show(Screen(title="Idle", status=Status(clock="10:01", synced=True)))
    assert d.frames == 2


# -- layout ----------------------------------------------------------------------------

def test_layout_128x64(display):
    lay = display.layout
    assert lay.rows == 3 and lay.pitch == 12
    assert lay.title_h == 13 and lay.body_top == 14 and lay.footer_top == 52


def test_title_bar_is_inverted(display):
    image = display.render(Screen(title="Menu", lines=["Sale"]))
    bar = (0, 0, 128, display.layout.title_h)
    assert lit(image, bar) > 0.8                      # a lit band ...
    assert lit(image, (0, 0, 40, display.layout.title_h)) < 1.0   # ... with dark text
    assert image.getpixel((127, 0)) == 1
    assert lit(image, (0, display.layout.title_h, 128, display.layout.body_top)) == 0


def test_error_title_is_drawn_differently_but_readably(display):
    normal = display.render(Screen(title="Declined"))
    error = display.render(Screen(title="Declined", alert="error"))
    bar = (0, 0, 128, display.layout.title_h)
    assert lit(error, bar) < 0.5 < lit(normal, bar)   # not inverted: the bar changes
    assert ink_box(error, (12, 0, 128, display.layout.title_h)) is not None  # text shows


def test_selected_row_is_inverted(display):
    image = display.render(Screen(title="Menu", lines=MENU_EN[:3], selected=1))
    assert lit(image, row_box(display, 1)) > 0.6
    assert lit(image, row_box(display, 0)) < 0.3
    assert lit(image, row_box(display, 2)) < 0.3


def test_scrolling_keeps_the_selection_visible_with_an_indicator(display):
    image = display.render(Screen(title="Menu", lines=MENU_EN, selected=4))
    # Rows show Void, Settlement, Reports; the last one is the selection.
    assert lit(image, row_box(display, 2)) > 0.6
    scrolled_top = display.render(Screen(title="Menu", lines=MENU_EN[2:5]))
    assert image.crop((0, 14, 100, 26)).tobytes() == scrolled_top.crop((0, 14, 100, 26)).tobytes()
    # A scroll mark at the right edge, only when the lines do not all fit.
    edge = (126, display.layout.body_top, 128, display.layout.body_top + 36)
    assert lit(image, edge) > 0
    few = display.render(Screen(title="Menu", lines=MENU_EN[:3]))
    assert lit(few, edge) == 0


def test_chinese_text_draws_pixels(display):
    image = display.render(Screen(title="主菜单", lines=MENU_ZH[:3]))
    for i in range(3):
        assert ink_box(image, row_box(display, i)) is not None
    # Ideographs, not replacement boxes: two different words draw differently.
    a = display.render(Screen(lines=["销售"]))
    b = display.render(Screen(lines=["退货"]))
    assert a.tobytes() != b.tobytes()
    assert display.fit("销售", 24) == ("销售", False)   # 12 px each


def test_long_chinese_line_is_cut_inside_its_row(display):
    line = "余额不足，请更换支付方式再试一次" * 2
    image = display.render(Screen(title="交易失败", lines=[line, "代码 51"]))
    box = ink_box(image, row_box(display, 0))
    assert box is not None
    assert box[2] <= 126                          # the row's 2 px right inset is kept
    assert box[1] >= display.layout.row_y(0) and box[3] <= display.layout.row_y(1)
    shown, cut = display.fit(line, 124)
    assert cut and display.text_width(shown) <= 124 - display.ellipsis_w


def test_long_title_never_runs_into_the_status_marks(display):
    status = Status(clock="12:34", synced=True, link="up", battery=80, pending=2)
    bare = display.render(Screen(title="", status=status))
    h = display.layout.title_h
    # Where the status marks start: the first column with a dark pixel in the bar.
    left = min(x for x in range(128) for y in range(h) if not bare.getpixel((x, y)))
    assert 40 < left < 100
    long = display.render(Screen(title="Settlement report for all batches", status=status))
    region = (left - 2, 0, 128, display.layout.title_h)
    assert long.crop(region).tobytes() == bare.crop(region).tobytes()
    # And the title does show, cut, left of them.
    assert lit(long, (0, 0, left - 2, display.layout.title_h)) < \
        lit(bare, (0, 0, left - 2, display.layout.title_h))


def test_a_title_that_fits_without_the_clock_takes_its_place(display):
    status = Status(clock="12:34", synced=False, link="down", battery=80, pending=2,
                    printer="paper_out")
    without_clock = display.render(Screen(title="Declined", status=Status(
        clock="", synced=True, link="down", battery=80, pending=2, printer="paper_out")))
    image = display.render(Screen(title="Declined", status=status))
    assert image.tobytes() == without_clock.tobytes()


_TEXT = st.text(alphabet=st.sampled_from(list("AWmi1.,:¥ 销售退货撤消结算报表，。中文国")),
                min_size=0, max_size=40)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=_TEXT, line=_TEXT, footer=_TEXT)
def test_no_text_overflows_its_box(display, title, line, footer):
    image = display.render(Screen(title=title, lines=[line], footer=footer, selected=0))
    lay = display.layout
    # The selected row band stays lit exactly across the row; nothing spills
    # into the gaps above and below the body.
    assert lit(image, (0, lay.title_h, 128, lay.body_top)) == 0
    assert lit(image, (0, lay.row_y(1), 128, lay.footer_top)) == 0
    foot = ink_box(image, (0, lay.footer_top, 128, 64))
    if foot is not None:
        assert foot[2] <= 127
    for text in (title, line, footer):
        shown, cut = display.fit(text, 100)
        assert display.text_width(shown) <= 100
        assert text.startswith(shown) and (cut or shown == text)


def test_big_amount_is_larger(display):
    big = display.render(Screen(title="Sale", big="¥12.50"))
    small = display.render(Screen(title="Sale", lines=["¥12.50"]))
    body = (0, display.layout.body_top, 128, display.layout.footer_top)
    b, s = ink_box(big, body), ink_box(small, body)
    assert (b[2] - b[0]) >= 1.8 * (s[2] - s[0])
    assert (b[3] - b[1]) >= 1.8 * (s[3] - s[1])
    assert abs((b[0] + b[2]) / 2 - 64) <= 3        # centred


def test_big_amount_leaves_a_row_for_a_line(display):
    image = display.render(Screen(title="Sale", big="¥12.50", lines=["Insert card"]))
    assert ink_box(image, row_box(display, 2)) is not None


def test_masked_pin_is_centred(display):
    image = display.render(Screen(title="PIN", lines=["¥12.50"], masked="****"))
    box = ink_box(image, (0, display.layout.row_y(1), 128, display.layout.footer_top))
    assert box is not None
    assert abs((box[0] + box[2]) / 2 - 64) <= 3


def test_status_marks_show_what_changed(display):
    base = dict(clock="09:30", synced=True, link="up", battery=100)
    full = display.render(Screen(status=Status(**base)))
    empty = display.render(Screen(status=Status(**dict(base, battery=0))))
    assert full.tobytes() != empty.tobytes()
    for change in (dict(synced=False), dict(link="down"), dict(pending=3),
                   dict(printer="paper_out"), dict(charging=True)):
        other = display.render(Screen(status=Status(**dict(base, **change))))
        assert other.tobytes() != full.tobytes(), change


def test_footer_at_the_bottom(display):
    image = display.render(Screen(title="T", footer="OK 确认"))
    box = ink_box(image, (0, display.layout.title_h, 128, 64))
    assert box[1] >= display.layout.footer_top and box[3] <= 64


@pytest.mark.text_loss_allowed             # a 128x32 panel has no footer row, by design
def test_128x32_shows_title_and_one_row():
    d = make(128, 32)
    assert d.layout.rows == 1 and d.layout.footer_top is None
    d.show(Screen(title="Menu", lines=MENU_EN, selected=1, footer="OK"))
    image = d.device.image
    assert image.size == (128, 32)
    assert lit(image, (0, 0, 128, d.layout.title_h)) > 0.8
    assert lit(image, row_box(d, 0)) > 0.6          # "Refund", selected, scrolled to
    assert d.frames == 1
    assert [str(loss) for loss in d.losses] == ["screen 'Menu': footer 'OK' not shown"]


def test_128x128_shows_more_rows():
    d = make(128, 128)
    assert d.layout.rows >= 7 and d.layout.footer_top == 128 - 12
    image = d.render(Screen(title="菜单", lines=MENU_ZH * 2, selected=6))
    assert lit(image, row_box(d, 6)) > 0.6


def test_selftest_on_dummy():
    ok, detail = make().selftest()
    assert ok, detail
    assert "wenquanyi" in detail


def test_null_display():
    d = NullDisplay(reason="no panel in profile")
    screen = Screen(title="Idle")
    assert d.show(screen) is False
    assert d.screen is screen and d.frames == 0
    ok, detail = d.selftest()
    assert not ok and "no panel" in detail


def test_image_to_png(display, tmp_path):
    display_ = make()
    display_.show(Screen(title="Menu", lines=MENU_EN, selected=1))
    path = image_to_png(display_.device.image, str(tmp_path / "out" / "menu.png"))
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (512, 256)
        rgb = png.convert("RGB")
        assert rgb.getpixel((2, 2)) == PNG_ON        # title bar
        assert rgb.getpixel((2, 4 * 51)) == PNG_OFF  # the gap above the footer
        # Nearest neighbour: every 4x4 block is one colour.
        block = rgb.crop((40, 60, 44, 64)).getcolors()
        assert len(block) == 1


def test_find_font():
    path = find_font(12)
    assert os.path.basename(path) == "wenquanyi_9pt.pcf"


def test_find_font_names_the_package_when_missing(tmp_path):
    with pytest.raises(FontNotFoundError) as info:
        find_font(12, dirs=[str(tmp_path)])
    assert FONT_PACKAGE in str(info.value) and "apt install" in str(info.value)


def test_open_luma_device_dummy_and_errors():
    dev = open_luma_device({"model": "dummy", "width": 128, "height": 32})
    assert dev.size == (128, 32) and dev.mode == "1"
    with pytest.raises(DisplayError, match="sh1107x"):
        open_luma_device({"model": "sh1107x"})


@pytest.mark.skipif(os.path.exists("/dev/i2c-7"), reason="this machine has an I2C bus 7")
def test_open_luma_device_says_what_to_check():
    with pytest.raises(DisplayError) as info:
        open_luma_device({"model": "ssd1306", "bus": "i2c", "port": 7, "address": 0x3C})
    message = str(info.value)
    assert "0x3C" in message and "bus 7" in message


# -- text that does not fit is reported, once a screen --------------------------------

@pytest.mark.text_loss_allowed
def test_cut_and_dropped_text_is_reported_once_per_screen():
    seen = []
    d = make(on_loss=seen.append)
    d.show(Screen(title="Cash", lines=["Cash given (ENTER=exact amount)", "b", "c", "d lost"],
                  footer="OK"))
    assert [(loss.part, loss.shown) for loss in seen] == [("line 1", "Cash given (ENTER="),
                                                          ("line 4", "")]
    assert "cut to 'Cash given (ENTER=...'" in str(seen[0]) and "not shown" in str(seen[1])
    d.show(Screen(title="Cash", lines=["Cash given (ENTER=exact amount)", "b", "c", "d lost"],
                  footer="OK", status=Status(clock="12:35")))
    assert len(seen) == 2                     # the clock ticked: the same loss, not again
    d.show(Screen(title="Cash", lines=["Cash given", "b", "c"], footer="OK"))
    assert d.losses == [] and len(seen) == 2
    d.show(Screen(title="Cash", lines=["x" * 40]))
    assert len(seen) == 3 and seen[2].part == "line 1"


@pytest.mark.text_loss_allowed
def test_losses_reach_process_watchers_and_the_log_file(tmp_path, monkeypatch):
    from drivers import display as display_mod
    log = tmp_path / "lost.jsonl"
    monkeypatch.setenv(display_mod.TEXT_LOSS_LOG_ENV, str(log))
    seen = []
    display_mod.watch_text_loss(seen.append)
    try:
        make().show(Screen(title="支付失败，请更换支付方式后再试一次"))
    finally:
        display_mod.unwatch_text_loss(seen.append)
    assert len(seen) == 1 and seen[0].part == "title"
    assert "支付失败" in log.read_text(encoding="utf-8")


def test_menus_and_scrolled_texts_lose_nothing(display):
    display.show(Screen(title="Menu", lines=MENU_EN, selected=0, footer="OK"))
    assert display.losses == []
    text = ["Printer: OK", "Buzzer: OK", "Storage: OK", "Clock: not synced", "Battery: mains"]
    image = display.render(Screen(title="Self-test", lines=text, top=2))
    assert display.losses == []
    # rows 3-5 show, with the scroll mark at the right edge
    row = (0, display.layout.row_y(0), 100, display.layout.row_y(1))
    assert image.crop(row).tobytes() == \
        display.render(Screen(title="Self-test", lines=text[2:])).crop(row).tobytes()
    edge = (126, display.layout.body_top, 128, display.layout.body_top + 36)
    assert lit(image, edge) > 0
    display.render(Screen(title="Self-test", lines=text))        # the same text, no scrolling
    assert [loss.part for loss in display.losses] == ["line 4", "line 5"]
