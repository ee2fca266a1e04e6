"""What every catalogue (MemoryCatalogue, drivers.catalogue_sqlite.SQLiteCatalogue)
does: each check_* takes make(allow_negative_stock) -> a new, empty catalogue.

Portable: tests/portable/test_catalogue_memory.py runs these under MicroPython too,
tests/test_catalogue.py against SQLite. Plain asserts, no pytest.
"""
from firmware.retail.catalogue import (BadItem, DuplicateBarcode, DuplicatePLU, StockShort,
                                       UnknownItem)

WATER = "6901234567892"         # EAN-13, check digit 2
COLA = "4006381333931"
CHIPS = "5012345678900"
APPLE = "9780201379624"
UPCA_KEY = "0012345678905"      # UPC-A 012345678905 as its lookup key
EAN8 = "96385074"
NOW = "2026-03-01T08:30:00Z"


def fixed_now():
    return NOW


def raises(cls, fn, *args, **kwargs):
    """fn(*args) must raise cls; returns the exception."""
    try:
        fn(*args, **kwargs)
    except cls as exc:
        return exc
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), cls.__name__))


def _shop(cat):
    drinks = cat.add_category("Drinks", "饮料")
    fruit = cat.add_category("Fruit", "水果")
    water = cat.add_item(101, "Water 550ml", 200, name_zh="矿泉水", category=drinks,
                         tax_rate=13000, barcodes=[WATER, EAN8], low_stock=5)
    cola = cat.add_item(102, "Cola 330ml", 350, name_zh="可乐", category=drinks,
                        tax_rate=13000, barcodes=[COLA])
    apple = cat.add_item(4131, "Apples", 1280, name_zh="苹果", category=fruit, tax_rate=9000,
                         unit="kg", low_stock=2000)
    return drinks, fruit, water, cola, apple


def check_find(make):
    cat = make(True)
    drinks, fruit, water, cola, apple = _shop(cat)
    item = cat.find_by_barcode(WATER)
    assert item["id"] == water and item["plu"] == 101 and item["name_zh"] == "矿泉水"
    assert item["price"] == 200 and item["tax_rate"] == 13000 and item["unit"] == "each"
    assert item["category"] == drinks and item["active"] is True and item["low_stock"] == 5
    assert cat.find_by_barcode(EAN8)["id"] == water
    assert cat.find_by_barcode(CHIPS) is None
    assert cat.find_by_plu(4131)["id"] == apple
    assert cat.find_by_plu("04131")["id"] == apple     # as a scale label carries it
    assert cat.find_by_plu(999) is None
    assert cat.get(cola)["name_en"] == "Cola 330ml"
    assert cat.get(9999) is None
    assert cat.barcodes_of(water) == sorted([WATER, EAN8])
    assert cat.item_count() == 3
    assert [i["plu"] for i in cat.items()] == [101, 102, 4131]
    assert [i["plu"] for i in cat.items(1, 1)] == [102]


def check_refusals_add_nothing(make):
    cat = make(True)
    drinks, fruit, water, cola, apple = _shop(cat)
    e = raises(DuplicatePLU, cat.add_item, 101, "Other", 100)
    assert e.item_id == water
    e = raises(DuplicateBarcode, cat.add_item, 103, "Other", 100, barcodes=[CHIPS, COLA])
    assert e.code == COLA and e.item_id == cola
    assert cat.find_by_barcode(CHIPS) is None and cat.find_by_plu(103) is None
    for field, args, kw in (
            ("price", (104, "Neg", -1), {}),
            ("unit", (104, "Pound", 100), {"unit": "lb"}),
            ("tax_rate", (104, "Tax", 100), {"tax_rate": 100001}),
            ("name_en", (104, "", 100), {}),
            ("name_en", (104, " padded", 100), {}),
            ("plu", (0, "Zero", 100), {}),
            ("plu", (1000000, "Big", 100), {}),
            ("low_stock", (104, "Low", 100), {"low_stock": -1}),
            ("category", (104, "Cat", 100), {"category": 99}),
            ("barcode", (104, "Bad check", 100), {"barcodes": ["6901234567893"]}),
            ("barcode", (104, "UPC-A as scanned", 100), {"barcodes": ["012345678905"]}),
            ("barcode", (104, "Twice", 100), {"barcodes": [CHIPS, CHIPS]})):
        e = raises(BadItem, cat.add_item, *args, **kw)
        assert e.field == field, (field, e.field, e.detail)
    assert cat.item_count() == 3 and cat.find_by_plu(104) is None
    assert cat.find_by_barcode(CHIPS) is None
    new = cat.add_item(None, "Next free", 100, barcodes=[UPCA_KEY])
    assert cat.get(new)["plu"] == 4132
    assert cat.find_by_barcode(UPCA_KEY)["id"] == new
    cat.add_barcode(new, CHIPS)
    assert cat.find_by_barcode(CHIPS)["id"] == new
    raises(DuplicateBarcode, cat.add_barcode, cola, CHIPS)
    raises(UnknownItem, cat.add_barcode, 9999, APPLE)


def check_browse(make):
    cat = make(True)
    drinks, fruit, water, cola, apple = _shop(cat)
    assert [(c["name_en"], c["name_zh"]) for c in cat.categories()] == [
        ("Drinks", "饮料"), ("Fruit", "水果")]
    assert [i["name_en"] for i in cat.items_in(drinks)] == ["Cola 330ml", "Water 550ml"]
    assert [i["name_en"] for i in cat.items_in(drinks, 1, 5)] == ["Water 550ml"]
    assert [i["name_en"] for i in cat.items_in(drinks, 0, 1)] == ["Cola 330ml"]
    assert cat.count_in(drinks) == 2 and cat.count_in(fruit) == 1
    loose = cat.add_item(500, "Bag", 10)
    cat.add_item(501, "Old bag", 10, active=False)
    assert [i["id"] for i in cat.items_in(None)] == [loose]      # inactive: not for sale
    assert cat.count_in(None) == 1
    assert cat.find_by_plu(501)["active"] is False               # but still found
    assert len(cat.items()) == 5


def check_movements_and_stock(make):
    cat = make(True)
    drinks, fruit, water, cola, apple = _shop(cat)
    assert cat.stock(water) == 0
    assert cat.record_movement(water, 24, "received", "7", "PO-1") == 24
    assert cat.record_movement(water, -2, "sale", "3", "000123") == 22
    assert cat.record_movement(water, 1, "refund", "3", "000124") == 23
    assert cat.record_movement(apple, 5000, "received", "7", "") == 5000     # grams
    assert cat.record_movement(apple, -452, "sale", "3", "000125") == 4548
    assert cat.stock(water) == 23 and cat.stock(apple) == 4548 and cat.stock(cola) == 0
    moves = cat.movements(water)
    assert [(m["delta"], m["reason"], m["operator"], m["ref"], m["on_hand"]) for m in moves] == [
        (24, "received", "7", "PO-1", 24), (-2, "sale", "3", "000123", 22),
        (1, "refund", "3", "000124", 23)]
    assert moves[0]["item_id"] == water and moves[0]["utc"] == NOW
    every = cat.movements()
    assert len(every) == 5 and every[3]["item_id"] == apple
    assert [m["delta"] for m in cat.movements(after=every[2]["id"])] == [5000, -452]
    assert len(cat.movements(limit=2)) == 2
    assert cat.count(water, 20, "7", "count-1") == -3
    assert cat.count(water, 20, "7", "count-2") == 0       # nothing to record
    last = cat.movements(water)[-1]
    assert (last["delta"], last["reason"], last["on_hand"]) == (-3, "counted", 20)
    assert len(cat.movements(water)) == 4
    e = raises(BadItem, cat.record_movement, water, 1, "stolen", "7", "")
    assert e.field == "reason"
    raises(UnknownItem, cat.record_movement, 9999, 1, "received", "7", "")
    raises(UnknownItem, cat.stock, 9999)
    assert cat.stock(water) == 20 and len(cat.movements()) == 6


def check_negative_refused(make):
    cat = make(False)
    drinks, fruit, water, cola, apple = _shop(cat)
    cat.record_movement(water, 2, "received", "7", "")
    cat.record_movement(cola, 5, "received", "7", "")
    e = raises(StockShort, cat.record_movement, water, -3, "sale", "3", "000200")
    assert (e.item_id, e.on_hand, e.delta) == (water, 2, -3)
    # a sale's lines are all or nothing: the cola line is not written either
    raises(StockShort, cat.record_movements, [(cola, -1, "sale"), (water, -2, "sale"),
                                              (water, -1, "sale")], "3", "000201")
    assert cat.stock(water) == 2 and cat.stock(cola) == 5 and len(cat.movements()) == 2
    assert cat.record_movements([(cola, -1, "sale"), (water, -2, "sale")], "3", "000202") == [4, 0]
    raises(StockShort, cat.record_movement, water, -1, "damaged", "7", "")
    assert cat.record_movement(water, 1, "refund", "3", "000202") == 1


def check_negative_allowed(make):
    cat = make(True)
    drinks, fruit, water, cola, apple = _shop(cat)
    assert cat.record_movement(water, -3, "sale", "3", "000300") == -3
    assert cat.record_movements([(water, -1, "sale"), (cola, -1, "sale")], "3", "000301") == [-4, -1]
    assert cat.stock(water) == -4


def check_low_stock(make):
    cat = make(True)
    drinks, fruit, water, cola, apple = _shop(cat)
    # water level 5, apple level 2000 g, cola none; all at 0
    assert [(i["id"], n) for i, n in cat.low_stock()] == [(water, 0), (apple, 0)]
    cat.record_movement(water, 6, "received", "7", "")
    cat.record_movement(apple, 2000, "received", "7", "")
    assert [(i["id"], n) for i, n in cat.low_stock()] == [(apple, 2000)]
    cat.record_movement(apple, 1, "counted", "7", "")
    cat.record_movement(water, -1, "sale", "3", "")
    assert [(i["id"], n) for i, n in cat.low_stock()] == [(water, 5)]


def check_set_price(make):
    cat = make(True)
    drinks, fruit, water, cola, apple = _shop(cat)
    assert cat.set_price(water, 250, "7") == 200
    assert cat.find_by_barcode(WATER)["price"] == 250
    e = raises(BadItem, cat.set_price, water, -5, "7")
    assert e.field == "price"
    raises(UnknownItem, cat.set_price, 9999, 100, "7")
    changes = cat.price_changes(water)
    assert [(c["old"], c["new"], c["operator"], c["utc"]) for c in changes] == [
        (200, 250, "7", NOW)]
    assert cat.get(water)["price"] == 250 and cat.price_changes(cola) == []


CHECKS = (check_find, check_refusals_add_nothing, check_browse, check_movements_and_stock,
          check_negative_refused, check_negative_allowed, check_low_stock, check_set_price)
