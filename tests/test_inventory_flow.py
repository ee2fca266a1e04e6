"""Stock on the real terminal (issue 12, items 6 and 7): MENU > Stock's screens, the
idle screen's low-stock mark, and adding an item a scan did not find
(firmware/flows/inventory.py).

The terminal is the simulated board with the demo catalogue (config/demo_catalogue.csv,
codes from tools/sim/demo_codes.py) loaded into its own catalogue.db, as `handpos sim`
does; keys go through the keypad driver and scans through the HID scanner driver.
"""
import pytest

from tools.sim import demo_codes

WATER, COLA = demo_codes.ITEMS[0], demo_codes.ITEMS[1]     # PLU 1 (48, low at 12), PLU 2
NOODLES = demo_codes.ITEMS[10]                              # PLU 12: 3 on hand, low at 5
UNKNOWN = "6901234599992"       # a good EAN-13 check digit, in no catalogue


def _item(h, plu):
    return h.term.catalogue.find_by_plu(plu)


def _settle(h):
    """Let the loop run what the last screen asked for (the low-stock check)."""
    h.run(100)
    h.run(100)
    return h.text()


def _stock_menu(h):
    """MENU, then UP to the home menu's last entry, Stock."""
    h.press("MENU", "UP")
    assert "Stock" in h.text(), h.text()
    h.press("ENTER")
    assert h.flow() == ("stock", "menu"), h.text()
    return h.text()


def _to_idle(h):
    for _ in range(5):
        if h.flow() == ("idle", "idle"):
            return
        h.press("CANCEL")
    assert h.flow() == ("idle", "idle"), h.text()


def _cashier(h, op_id="7", pin="1357"):
    """A cashier, then logged in instead of the supervisor."""
    h.term.auth.create(op_id, "Cashier " + op_id, "cashier", pin)
    h.press("MENU", "8")                # log out
    h.login(op_id, pin)
    assert h.term.role() == "cashier", h.text()


def test_receive_as_supervisor_raises_stock_and_records_the_supervisor(shop):
    h = shop()
    water0 = h.stock("1")
    text = _stock_menu(h)
    assert "Receive stock" in text and "Low stock list" in text
    h.press("2")                                # Receive: no PIN for a supervisor
    assert h.flow() == ("stock_move", "item"), h.text()
    assert "Scan or type PLU" in h.text()
    h.scan(WATER)
    assert h.flow() == ("stock_move", "qty"), h.text()
    assert "Mineral water" in h.text() and "Qty received" in h.text()
    h.press("2", "4", "ENTER")
    text = h.text()
    assert "Received +24" in text and "%d -> %d" % (water0, water0 + 24) in text, text
    assert h.stock("1") == water0             # nothing written before ENTER
    h.press("ENTER")
    text = h.text()
    assert "Saved" in text and "On hand %d" % (water0 + 24) in text, text
    assert h.stock("1") == water0 + 24
    last = h.term.catalogue.movements(_item(h, "1")["id"])[-1]
    assert (last["reason"], last["delta"], last["operator"]) == ("received", 24, "1")
    assert _audit(h)[0] == ("stock_received", "1", "PLU 1 +24 -> %d" % (water0 + 24))
    # the next item straight away: a kg item by PLU, in grams
    apples0 = h.stock("101")
    h.press("1", "0", "1", "ENTER")
    assert "Grams received" in h.text(), h.text()
    h.press("1", "2", "5", "0", "ENTER")
    assert "+1.250 kg" in h.text() and "12.500 -> 13.750" in h.text(), h.text()
    h.press("ENTER")
    assert "On hand 13.750 kg" in h.text(), h.text()
    assert h.stock("101") == apples0 + 1250
    h.press("CANCEL")
    assert h.flow() == ("stock", "menu")


def _audit(h):
    """(event, operator, detail) of the audit log, newest first."""
    return [tuple(row[1:4]) for row in h.term.store.audit_log(50)]


def test_a_cashier_is_asked_for_a_supervisor_and_the_supervisor_is_recorded(shop):
    h = shop()
    _cashier(h)
    cola0 = h.stock("2")
    _stock_menu(h)
    h.press("1")                                # looking needs no supervisor
    assert h.flow() == ("stock_lookup", "item"), h.text()
    h.press("CANCEL")
    h.press("2")                                # receiving does
    assert h.flow() == ("supervisor", "id"), h.text()
    assert "Receive stock" in h.text()
    h.press("1", "ENTER", "9", "9", "9", "9", "ENTER")      # a wrong PIN
    assert "Wrong" in h.text() and h.flow() == ("supervisor", "id"), h.text()
    h.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    assert h.flow() == ("stock_move", "item"), h.text()
    h.scan(COLA)
    h.press("6", "ENTER", "ENTER")
    assert "On hand %d" % (cola0 + 6) in h.text(), h.text()
    last = h.term.catalogue.movements(_item(h, "2")["id"])[-1]
    assert (last["reason"], last["delta"], last["operator"]) == ("received", 6, "1")
    assert _audit(h)[0] == ("stock_received", "1", "PLU 2 +6 -> %d at 7" % (cola0 + 6))
    # a cashier's cancelled approval changes nothing and goes back to the menu
    h.press("CANCEL")
    h.press("5")                                # change price
    assert h.flow() == ("supervisor", "id")
    h.press("CANCEL")
    assert h.flow() == ("stock", "menu"), h.text()


def test_a_count_sets_what_is_on_hand(shop):
    h = shop()
    _stock_menu(h)
    h.press("3")                                # Count
    h.press("2", "ENTER")                       # PLU 2, cola
    assert "Qty on the shelf" in h.text(), h.text()
    h.press("ENTER")                            # nothing typed: asked for a number
    assert "Type a quantity" in h.text()
    h.press("3", "0", "ENTER")
    assert "Counted -6" in h.text() and "36 -> 30" in h.text(), h.text()
    h.press("ENTER")
    assert "Saved" in h.text() and "On hand 30" in h.text()
    assert h.stock("2") == 30
    last = h.term.catalogue.movements(_item(h, "2")["id"])[-1]
    assert (last["reason"], last["delta"], last["on_hand"]) == ("counted", -6, 30)
    h.press("2", "ENTER", "3", "0", "ENTER", "ENTER")     # counted again: the same
    assert "Count matches" in h.text(), h.text()
    assert h.term.catalogue.movements(_item(h, "2")["id"])[-1]["id"] == last["id"]
    assert _audit(h)[0] == ("stock_counted", "1", "PLU 2 +0 -> 30")
    h.press("2", "ENTER", "0", "ENTER", "ENTER")          # an empty shelf is a count too
    assert h.stock("2") == 0


def test_a_write_off_below_zero_is_refused_in_words_when_negative_stock_is_off(shop):
    h = shop()
    cat = h.term.catalogue
    cat.allow_negative_stock = False            # [retail] allow_negative_stock = false
    noodles = _item(h, "12")
    moves0 = len(cat.movements())
    _stock_menu(h)
    h.press("4")                                # Write off: the reasons first
    text = h.text()
    assert "1 Damaged" in text and "2 Lost" in text and "3 To supplier" in text, text
    h.press("1")
    assert "Damaged" in h.text() and h.flow() == ("stock_move", "item")
    h.scan(NOODLES)
    assert "Qty to take off" in h.text()
    h.press("5", "ENTER")                       # 3 on hand
    text = h.text()
    assert "Not enough stock" in text and "On hand 3" in text, text
    assert h.flow() == ("stock_move", "qty")
    # the catalogue itself refuses too: stock taken between the question and ENTER
    h.press("CLEAR", "2", "ENTER")
    assert "Damaged -2" in h.text() and "3 -> 1" in h.text(), h.text()
    cat.count(noodles["id"], 1, "9", "test")
    moves0 = len(cat.movements())
    h.press("ENTER")
    text = h.text()
    assert "Not enough stock" in text and "On hand 1" in text, text
    assert len(cat.movements()) == moves0 and cat.stock(noodles["id"]) == 1   # nothing written
    h.press("CLEAR", "1", "ENTER", "ENTER")
    assert "On hand 0" in h.text(), h.text()
    last = cat.movements(noodles["id"])[-1]
    assert (last["reason"], last["delta"], last["operator"]) == ("damaged", -1, "1")
    h.press("CANCEL")                           # back to the reasons: lost
    assert h.flow() == ("stock_move", "reason")
    h.press("DOWN", "ENTER")
    assert "Lost" in h.text()


def test_bad_input_is_named_on_the_screen(shop):
    h = shop()
    _stock_menu(h)
    h.press("2")                                # Receive
    h.press("9", "9", "9", "ENTER")
    assert "No PLU 999" in h.text(), h.text()
    h.scan(UNKNOWN)
    assert "Not found" in h.text() and UNKNOWN in h.text(), h.text()
    h.scan(demo_codes.BAD_CHECK)
    assert "Bad barcode" in h.text() and "Scan again" in h.text()
    h.press("1", "ENTER")
    h.press("0", "ENTER")
    assert "Quantity above 0" in h.text(), h.text()
    h.press("CLEAR", *"9999999999")
    h.press("ENTER")
    assert "Max %d" % (999999999 - h.stock("1")) in h.text(), h.text()
    h.press("CANCEL", "1", "0", "1", "ENTER", "ENTER")   # a kg item: grams
    assert "Type a quantity" in h.text()
    h.press("0", "ENTER")
    assert "Weight above 0" in h.text()
    h.press("CLEAR", *"9999999999")
    h.press("ENTER")
    assert "Max 999987.499 kg" in h.text(), h.text()       # 12.500 kg on hand
    h.press("CANCEL", "CANCEL")
    assert h.flow() == ("stock", "menu"), h.text()


def test_a_new_price_is_what_the_next_scan_sells_at(shop):
    h = shop()
    _stock_menu(h)
    h.press("5")                                # Change price
    h.scan(WATER)
    text = h.text()
    assert "Now 1.29" in text and "Mineral water" in text, text
    h.press("ENTER")
    assert "Enter an amount" in h.text()
    h.press("1", "2", "9", "ENTER")
    assert "Price unchanged" in h.text()
    h.press("CLEAR", "1", "5", "9", "ENTER")
    assert "1.29 -> 1.59" in h.text(), h.text()
    h.press("ENTER")
    assert "Saved" in h.text() and "Price 1.59" in h.text(), h.text()
    change = h.term.catalogue.price_changes(_item(h, "1")["id"])[-1]
    assert (change["old"], change["new"], change["operator"]) == (129, 159, "1")
    assert _audit(h)[0] == ("price_changed", "1", "PLU 1 129 -> 159")
    _to_idle(h)
    text = h.scan(WATER)                      # a new cart sells it at 1.59
    assert h.flow()[0] == "cart" and "1.59" in text and "1.29" not in text, text


def test_the_idle_mark_and_the_list_follow_the_stock(shop):
    h = shop()
    text = _settle(h)
    assert h.flow() == ("idle", "idle")
    assert "Low stock: 1" in text, text        # the demo's instant noodles: 3, low at 5
    cat = h.term.catalogue
    cat.count(_item(h, "1")["id"], 13, "1", "test")   # water: one above its level (12)
    h.scan(WATER)                             # a cash sale takes it to 12
    h.press("ENTER", "2", "ENTER", "ENTER", "CANCEL")
    h.run(3000, until=lambda: h.flow() == ("idle", "idle"))
    assert h.stock("1") == 12
    text = _settle(h)
    assert "Low stock: 2" in text, text
    _stock_menu(h)
    h.press("6")                                # the list
    text = h.text()
    assert "Low stock" in text and "On hand / low at" in text and "Mineral water" in text, text
    h.press("DOWN", "DOWN")
    text = h.text()
    assert "12 / 12" in text and "Instant noodles" in text, text
    h.press("DOWN")
    assert "3 / 5" in h.text(), h.text()
    h.press("CANCEL")
    # received above the level: off the list and off the idle screen
    h.press("2", "1", "2", "ENTER", "1", "0", "ENTER", "ENTER")
    assert "On hand 13" in h.text(), h.text()
    _to_idle(h)
    text = _settle(h)
    assert "Low stock: 1" in text, text
    h.press("MENU", "UP", "ENTER", "6")
    assert "Mineral water" in h.text() and "Instant noodles" not in h.text(), h.text()


def test_an_item_a_scan_did_not_find_is_added_and_then_found(shop):
    from firmware.flows.inventory import AddItemFlow
    h = shop()
    h.term.config["retail"]["default_tax_rate"] = 13000
    _cashier(h)
    ended = []
    finished = h.term.flow_finished

    def watch(flow, result):
        ended.append((flow.NAME, result))
        finished(flow, result)
    h.term.flow_finished = watch
    h.term.push(AddItemFlow(h.term, UNKNOWN))
    assert h.flow() == ("supervisor", "id") and "New item" in h.text(), h.text()
    h.press("1", "ENTER", "2", "5", "8", "0", "ENTER")
    text = h.text()
    assert h.flow() == ("add_item", "unit") and UNKNOWN in text, text
    assert "1 Sold each" in text and "2 Sold by kg" in text
    h.press("1")
    assert "Price each" in h.text(), h.text()
    h.press("ENTER")
    assert "Enter an amount" in h.text()
    h.press("2", "5", "0", "ENTER")
    text = h.text()
    assert "Price 2.50" in text and "New PLU 103" in text, text
    h.press("ENTER")
    name, item = ended[-1]
    assert name == "add_item" and item["plu"] == 103 and item["price"] == 250
    assert (item["name_en"], item["name_zh"], item["unit"], item["tax_rate"]) == (
        "Item " + UNKNOWN, "商品 " + UNKNOWN, "each", 13000)
    assert h.term.catalogue.stock(item["id"]) == 0
    assert _audit(h)[0] == ("item_added", "1", "PLU 103 code %s price 250 each at 7" % UNKNOWN)
    assert h.flow() == ("idle", "idle")
    text = h.scan(UNKNOWN)                    # now the catalogue knows it
    assert h.flow()[0] == "cart" and "Item %s" % UNKNOWN[:6] in text and "2.50" in text, text


def test_f4_on_a_barcode_the_cart_did_not_find_adds_it_and_sells_it(shop):
    """The cart's way in (firmware/flows/cart.py): Not found, F4, the questions, and the
    new item is the cart's first line."""
    h = shop()
    text = h.scan(UNKNOWN)
    assert "Not found" in text and UNKNOWN in text, text
    h.press("F4")
    assert h.flow() == ("add_item", "unit"), h.text()
    h.press("2", "1", "2", "8", "0", "ENTER")     # by the kg, 12.80 a kilogram
    assert "Price 12.80/kg" in h.text(), h.text()
    h.press("ENTER")
    assert h.flow()[0] == "cart", h.text()
    if h.flow() == ("cart", "weight"):          # a kg item: its weight, as a scan would ask
        h.press("5", "0", "0", "ENTER")
    text = h.text()
    assert "0.500 kg Item" in text and "Total 6.40" in text, text
    assert h.term.catalogue.find_by_barcode(UNKNOWN)["unit"] == "kg"


def test_a_code_that_is_no_barcode_or_a_scale_label_is_not_added(shop):
    from firmware.flows.inventory import AddItemFlow
    h = shop()
    n = h.term.catalogue.item_count()
    h.term.push(AddItemFlow(h.term, demo_codes.BAD_CHECK))
    assert "Bad barcode" in h.text() and h.flow() == ("add_item", "refused"), h.text()
    h.press("ENTER")
    assert h.flow() == ("idle", "idle")
    h.term.push(AddItemFlow(h.term, "2100999003509"))      # a scale label, PLU 00999
    assert "Scale label" in h.text() and "PLU 00999 unknown" in h.text(), h.text()
    h.press("CANCEL")
    h.term.push(AddItemFlow(h.term, COLA))      # known by now: offered as it is
    assert "Known: PLU 2" in h.text(), h.text()
    h.press("CANCEL")
    # a supervisor backs out at the price: nothing is added
    h.term.push(AddItemFlow(h.term, UNKNOWN))
    assert h.flow() == ("add_item", "unit")     # logged in as a supervisor: no PIN
    h.press("2")
    assert "Price per kg" in h.text()
    h.press("CANCEL", "CANCEL")
    assert h.flow() == ("idle", "idle")
    assert h.term.catalogue.item_count() == n


def test_look_up_shows_the_item_and_scrolls_its_movements(shop):
    h = shop()
    cat = h.term.catalogue
    water = _item(h, "1")
    cat.record_movement(water["id"], -2, "damaged", "4", "")
    _stock_menu(h)
    h.scan(WATER)                             # a scan on the menu looks it up
    assert h.flow() == ("stock_lookup", "show"), h.text()
    assert h.term.screen.lines[:3] == ["Mineral water", "550ml", "Price 1.29"], h.text()
    assert "PLU 1" in h.term.screen.title
    for _ in range(3):
        h.press("DOWN")
    shown = h.term.screen.lines[h.term.screen.first_visible():][:3]
    assert shown == ["On hand 46", "Low at 12", "Last movements"], h.text()
    for _ in range(3):
        h.press("DOWN")
    shown = h.term.screen.lines[h.term.screen.first_visible():][:3]
    assert shown[0] == "Damaged -2" and shown[1].endswith(" ID 4"), shown    # newest first
    assert shown[2] == "Counted +48", shown     # the demo import's stock
    for _ in range(3):
        h.press("DOWN")
    assert h.term.screen.lines[-1].endswith(" import"), h.term.screen.lines
    h.press("UP")
    assert h.term.screen.first_visible() == 6
    h.press("ENTER")                            # another item: a kg one, by PLU
    h.press("1", "0", "1", "ENTER")
    assert h.term.screen.lines[:4] == ["Apples", "Price 4.40/kg", "On hand 12.500 kg",
                                       "Low at 3.000 kg"], h.term.screen.lines


def test_no_catalogue_is_said_on_the_screen(shop):
    h = shop()
    h.term.catalogue = None
    _stock_menu(h)
    h.press("2")
    assert "No catalogue" in h.text() and "Import a CSV first" in h.text(), h.text()
    assert h.flow() == ("stock", "notice")


def test_newest_movement_and_last_movements_read_little():
    from firmware.flows.inventory import last_movements, newest_movement
    from firmware.retail.catalogue import MemoryCatalogue
    cat = MemoryCatalogue()
    a = cat.add_item(1, "A", 100)
    b = cat.add_item(2, "B", 100)
    assert newest_movement(cat, 0) == 0
    for i in range(1000):
        cat.record_movement(b if i % 50 else a, 1, "received", "1", "")
    asked = []
    movements = cat.movements

    def counted(*args, **kw):
        asked.append(kw.get("limit"))
        return movements(*args, **kw)
    cat.movements = counted
    assert newest_movement(cat, 0) == 1000
    assert len(asked) < 25
    del asked[:]
    assert newest_movement(cat, 1000) == 1000 and asked == [1]     # nothing moved: one row
    assert newest_movement(cat, 990) == 1000
    found = last_movements(cat, a, 3, 1000)
    assert [m["id"] for m in found] == [951, 901, 851]
    assert [m["id"] for m in last_movements(cat, a, 30, 1000)][-1] == 1     # all it has


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_stock_screens_lose_no_text(shop, language):
    """A walk through every stock screen; the suite's no_text_lost fixture fails the
    test if a screen cut or dropped words."""
    h = shop()
    h.term.set_language(language)
    cat = h.term.catalogue
    cat.allow_negative_stock = False
    long_name = cat.add_item(900, "Fuji apples from Yantai, Shandong, extra large grade", 300,
                             name_zh="山东烟台红富士苹果特级大果精选装", low_stock=5)
    cat.record_movement(long_name, 2, "received", "123456", "")
    _settle(h)
    h.press("MENU", "UP", "ENTER")
    assert h.flow() == ("stock", "menu")
    h.press("1")
    h.scan(WATER)
    for _ in range(30):
        h.press("DOWN")
    h.press("ENTER", "9", "0", "0", "ENTER")
    for _ in range(10):
        h.press("DOWN")
    h.press("CANCEL", "1", "0", "1", "ENTER")
    for _ in range(6):
        h.press("DOWN")
    h.press("CANCEL", "CANCEL")
    for entry, qty in (("2", "5"), ("3", "40")):
        h.press(entry, "9", "0", "0", "ENTER", *qty)      # a long name: cut with a mark
        h.press("ENTER", "ENTER")
        h.press("1", "0", "1", "ENTER", *qty)
        h.press("ENTER", "ENTER")
        h.press("9", "9", "9", "ENTER", "1", "ENTER", "ENTER", *"9999999999")
        h.press("ENTER", "CANCEL", "CANCEL")
        assert h.flow() == ("stock", "menu"), h.text()
    h.press("4", "3", "1", "2", "ENTER", "9", "9", "ENTER", "CLEAR", "1", "ENTER", "ENTER")
    h.press("CANCEL", "CANCEL")
    h.press("5", "9", "0", "0", "ENTER", "1", "ENTER", "ENTER")      # a long name again
    assert h.flow() == ("stock_price", "item"), h.text()
    h.press("1", "0", "2", "ENTER", "ENTER", *"9999999999")
    h.press("CLEAR", "7", "5", "0", "ENTER", "ENTER", "CANCEL")
    assert h.flow() == ("stock", "menu"), h.text()
    h.press("6")
    for _ in range(8):
        h.press("DOWN")
    h.press("CANCEL", "CANCEL")
    from firmware.flows.inventory import AddItemFlow
    for code in (UNKNOWN, demo_codes.BAD_CHECK, demo_codes.SCALE_PRICE, COLA):
        h.term.push(AddItemFlow(h.term, code))
        h.press("2", "1", "2", "3", "4", "ENTER", "CANCEL", "CANCEL", "CANCEL")
        h.run(500, until=lambda: h.flow()[0] in ("idle", "home"))
