"""The paper of a promoted sale (issue 16): each promotion its own line by its name, the
points redemption, the member block (the number's tail only), in both languages; and a
member card scanned on the cart goes to the member's screen, not to the catalogue."""
import sys
import os

from firmware.retail import promotions as P
from firmware.retail.cart import Cart
from firmware.retail.receipt_lines import itemise
from firmware.ui.i18n import Translator
from firmware.ui.receipt import Receipt

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "portable"))
from test_promotions import item, rule  # noqa: E402


def _sale():
    cart = Cart("CNY")
    rules = [rule("COLA21", 0, plus=[2], buy=2, get=1, name_en="Cola buy 2 get 1",
                  name_zh="可乐买二送一"),
             rule("MILK10", 1, plus=[9], percent_off="10", name_zh="牛奶九折")]
    cart.set_pricer(P.Pricer(rules, lambda: (2026, 5, 4, 12, 0, 0)))
    cart.add_item(item(2, 350), quantity=3)
    cart.add_item(item(9, 300))
    cart.set_member({"number": "818212785369", "tier": "gold"})
    cart.set_redemption(100, 100)
    cart.points_earned = 6
    return Cart.from_dict(cart.to_dict())          # the receipt is made from the journal


def test_the_receipt_names_each_promotion_and_the_points():
    cart = _sale()
    paper = itemise(Receipt(lang="en"), cart, Translator("en")).text()
    for words in ("Cola buy 2 get 1", "-3.50", "Promo MILK10", "-0.30",
                  "Points 100", "-1.00", "Member ...5369", "Points earned", "Points redeemed"):
        assert words in paper, (words, paper)
    assert "818212785369" not in paper               # the tail only
    assert "TOTAL                       8.70" in paper, paper  # 10.50 - 3.50 + 3.00 - 0.30 - 1.00
    lines = paper.splitlines()
    assert lines.index(next(l for l in lines if "Cola buy 2 get 1" in l)) == \
        lines.index(next(l for l in lines if "3 x 3.50" in l)) + 1     # under its line


def test_the_receipt_in_chinese_uses_the_chinese_names():
    paper = itemise(Receipt(lang="zh"), _sale(), Translator("zh")).text()
    for words in ("可乐买二送一", "积分抵扣 100", "会员 ...5369", "本次积分"):
        assert words in paper, (words, paper)


def test_a_member_card_scanned_on_the_cart_opens_the_member_screen(shop):
    from firmware.retail import members as mb
    h = shop()
    h.scan("6901234567892")                         # water: the cart opens
    number = mb.new_number(lambda n: bytes(range(1, n + 1)))
    h.scan(mb.card_code(number))                    # nobody has this card
    assert h.flow()[0] == "member", (h.flow(), h.text())
    assert "Not found" not in h.text(), h.text()
    h.press("CANCEL")
    h.run(200)
    assert h.flow() == ("cart", "cart"), (h.flow(), h.text())
    assert "Total 1.29" in h.text(), h.text()
