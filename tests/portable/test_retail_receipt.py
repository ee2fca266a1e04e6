"""The itemised receipt: 32 columns in English and Chinese, nothing cut, long names
wrapped, and the figures on paper the cart's own."""
from firmware.core.money import format_amount
from firmware.retail.cart import Cart, refund
from firmware.retail.receipt_lines import itemise, itemise_refund, pair_wrapped
from firmware.ui.i18n import Translator
from firmware.ui.receipt import WIDTH, Receipt, display_width

LONG_EN = "Fuji apples from Yantai, Shandong, extra large grade, gift box of twelve"
LONG_ZH = "山东烟台红富士苹果特级大果精选礼盒十二个装"
APPLE = {"id": 1, "plu": "10001", "name_en": LONG_EN, "name_zh": LONG_ZH, "price": 350,
         "tax_rate": 9000, "unit": "each"}
MILK = {"id": 2, "plu": "10002", "name_en": "Milk 1L", "name_zh": "牛奶 1升", "price": 420,
        "tax_rate": 13000, "unit": "each"}
BANANA = {"id": 3, "plu": "10003", "name_en": "Bananas", "name_zh": "香蕉", "price": 1280,
          "tax_rate": 9000, "unit": "kg"}
DEAR = {"id": 4, "plu": "10004", "name_en": "Rice cooker", "name_zh": "电饭煲", "price": 99999999,
        "tax_rate": 13000, "unit": "each"}


def sample(inclusive=True):
    cart = Cart("CNY", tax_inclusive=inclusive)
    cart.add_item(APPLE, quantity=3)
    cart.add_item(BANANA, grams=452)
    cart.add_item(MILK)
    cart.add_misc(1000)
    cart.override_price(0, 300, "sup")
    cart.set_line_discount(0, "percent", 10000)
    cart.void(2)
    cart.set_discount("percent", 5000)
    return cart


def paper(cart, lang):
    return itemise(Receipt(lang=lang), cart, Translator(lang))


def amount_on(receipt, label):
    """The amount at the right end of the first line that starts with label."""
    for line in receipt.lines:
        if line.text.startswith(label):
            return line.text.split()[-1]
    raise AssertionError("no line %r in\n%s" % (label, receipt.text()))


def test_every_line_fits_32_columns_in_both_languages():
    big = Cart("CNY", limits={"max_line_amount": 10 ** 12, "max_total": 10 ** 12,
                              "max_quantity": 9999})
    i = big.add_item(DEAR, quantity=9999)
    big.set_line_discount(i, "amount", 12345678)
    big.override_price(i, 99999998, "sup")
    for cart in (sample(True), sample(False), big):
        for lang in ("en", "zh"):
            receipt = paper(cart, lang)
            for line in receipt.lines:
                assert display_width(line.text) <= WIDTH, (lang, line.text)
                assert display_width(line.render()) <= WIDTH


def test_long_names_wrap_whole():
    for lang, name in (("en", LONG_EN), ("zh", LONG_ZH)):
        receipt = paper(sample(), lang)
        rows = [line.text for line in receipt.lines]
        first = [k for k in range(len(rows)) if name.startswith(rows[k]) and rows[k]][0]
        joined = rows[first]
        k = first + 1
        while len(joined) < len(name):
            joined += (" " if lang == "en" else "") + rows[k]
            k += 1
        assert joined == name
        assert k - first >= 2                       # it did need more than one row


def test_lines_show_quantity_weight_override_discount_void():
    text = paper(sample(), "en").text()
    assert "  3 x 3.00" in text
    assert "  0.452 kg x 12.80/kg" in text
    assert "Price 3.00, was 3.50" in text
    assert "Discount 10%" in text and "-0.90" in text
    assert "Milk 1L\n  1 x 4.20" in text
    milk = text.split("Milk 1L\n")[1].split("\n")[0]
    assert milk.endswith("VOID")
    assert "Misc" in text
    zh = paper(sample(), "zh").text()
    assert "改价 3.00, 原价 3.50" in zh and "香蕉" in zh and "撤销" in zh and "杂项" in zh
    assert LONG_EN[:10] not in zh


def test_totals_on_paper_are_the_carts():
    for inclusive in (True, False):
        cart = sample(inclusive)
        for lang, total_label, sub_label in (("en", "TOTAL", "Subtotal"), ("zh", "合计", "小计")):
            receipt = paper(cart, lang)
            assert amount_on(receipt, total_label) == format_amount(cart.total(), "CNY")
            assert amount_on(receipt, sub_label) == format_amount(cart.totals["subtotal"], "CNY")
        receipt = paper(cart, "en")
        tax_label = "Incl. tax" if inclusive else "Tax"
        printed = [line.text for line in receipt.lines if line.text.startswith(tax_label)]
        assert len(printed) == len(cart.totals["rates"]) == 2
        tax = 0
        for text in printed:
            tax += int(text.split()[-1].replace(".", ""))
        assert tax == cart.totals["tax"]
        assert amount_on(receipt, "Discount 5%") == "-" + format_amount(cart.totals["discount"], "CNY")
        assert "\n5 items\n" in receipt.text()


def test_the_paper_adds_up():
    """A customer adds the amounts of the lines: subtotal, minus the discount, plus the
    taxes when prices are before tax, is the total."""
    for inclusive in (True, False):
        cart = sample(inclusive)
        counted = 0
        for _, line in cart.active():
            counted += line.gross - line.line_discount
        assert counted == cart.totals["subtotal"]
        extra = 0 if inclusive else cart.totals["tax"]
        assert cart.totals["subtotal"] - cart.totals["discount"] + extra == cart.total()


def test_tax_order_and_rate_marks():
    exclusive = paper(sample(False), "en").text()
    assert exclusive.index("Tax 0% (A)") < exclusive.index("TOTAL")
    assert exclusive.index("Tax 9% (B)") < exclusive.index("TOTAL")
    inclusive = paper(sample(True), "en").text()
    assert inclusive.index("TOTAL") < inclusive.index("Incl. tax 9% (B)")
    assert "10.00 A" in inclusive and "5.79 B" in inclusive
    one_rate = Cart("CNY")
    one_rate.add_item(MILK, quantity=2)
    text = paper(one_rate, "en").text()
    assert "8.40\n" in text and "(A)" not in text and "8.40 A" not in text
    assert "Incl. tax 13%" in text


def test_pair_wrapped_keeps_both_sides():
    r = Receipt()
    pair_wrapped(r, "A label much too long to share its line", "1234567.89")
    assert [line.text for line in r.lines] == ["A label much too long to share", "its line",
                                               "1234567.89"]
    assert r.lines[-1].align == "right" and r.lines[-1].render() == " " * 22 + "1234567.89"
    r = Receipt()
    pair_wrapped(r, "Short", "1.00")
    assert len(r.lines) == 1 and r.lines[0].render() == "Short" + " " * 23 + "1.00"


def test_refund_receipt_gives_back_the_refund():
    cart = sample(True)
    result = refund(cart, [(0, 1), (1, 452)])
    receipt = itemise_refund(Receipt(lang="en"), cart, result, Translator("en"))
    assert amount_on(receipt, "TOTAL") == "-" + format_amount(result["total"], "CNY")
    text = receipt.text()
    assert "0.452 kg" in text and "1 x 3.00" in text
    for line in receipt.lines:
        assert display_width(line.text) <= WIDTH
    zh = itemise_refund(Receipt(lang="zh"), cart, result, Translator("zh")).text()
    assert "香蕉" in zh and "合计" in zh
