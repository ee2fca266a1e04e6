"""The catalogue and stock the core sells from: its interface, and MemoryCatalogue.

On the device the catalogue is SQLite (drivers/catalogue_sqlite.py, catalogue.db in the
data folder). MemoryCatalogue is a real implementation for boards without SQLite and
for the portable tests; both pass the same contract tests
(tests/portable/catalogue_contract.py).

An item is a dict:

  id         the catalogue's own number for it (never reused)
  plu        price look-up number, 1 to 999999, unique: what a cashier types and what a
             scale label carries
  name_en    English name (1 to 64 characters); name_zh Chinese name ("" when none)
  price      integer minor units of the catalogue's currency, per piece (unit "each")
             or per kilogram (unit "kg")
  category   a category id, or None
  tax_rate   thousandths of a percent: 13000 is 13 %, 8875 is 8.875 % (US sales taxes
             have three decimals, which basis points cannot hold), 0 is exempt
  unit       "each" or "kg"
  active     False: kept (history, stock) but not for sale and left out of browsing
  low_stock  the level at or under which the item is low (an integer), or None: never

Quantities (stock on hand, movement deltas) are integers in the item's base unit:
pieces for "each", grams for "kg". Barcodes are the normalised lookup keys of
firmware/retail/barcode.py (classify(code) -> kind, key), many per item, each on one
item only.

Stock moves only through movements (reason, operator, UTC time, a reference such as a
receipt number), each one written with its stock change in one transaction. When
negative stock is not allowed, a movement that would take an item below zero is
refused (StockShort) and nothing is written.
"""
import time

EACH = "each"
KG = "kg"
UNITS = (EACH, KG)
# why stock moved: sales and their undoing, and what a supervisor records
REASONS = ("sale", "refund", "void", "received", "damaged", "lost", "counted", "returned")

PLU_MAX = 999999
PRICE_MAX = 99999999        # minor units: 999,999.99 in a 2-decimal currency
TAX_MAX = 100000            # 100 %, in thousandths of a percent
NAME_MAX = 64
QTY_MAX = 999999999         # pieces or grams on hand, either way
REF_MAX = 64


class CatalogueError(Exception):
    """A request the catalogue refuses; what is a short code the core maps to a message
    id, detail the sentence for the console and the CSV import."""

    def __init__(self, what, detail=""):
        super().__init__(detail or what)
        self.what = what
        self.detail = detail or what


class BadItem(CatalogueError):
    """A field out of its rules; field names it."""

    def __init__(self, field, reason):
        CatalogueError.__init__(self, "bad_" + field, "%s: %s" % (field, reason))
        self.field = field
        self.reason = reason


class DuplicatePLU(CatalogueError):
    def __init__(self, plu, item_id):
        CatalogueError.__init__(self, "duplicate_plu", "PLU %d is already item %s" % (plu, item_id))
        self.plu = plu
        self.item_id = item_id


class DuplicateBarcode(CatalogueError):
    def __init__(self, code, item_id):
        CatalogueError.__init__(self, "duplicate_barcode", "barcode %s is already on item %s"
                                % (code, item_id))
        self.code = code
        self.item_id = item_id


class UnknownItem(CatalogueError):
    def __init__(self, item_id):
        CatalogueError.__init__(self, "unknown_item", "no item %r" % (item_id,))
        self.item_id = item_id


class StockShort(CatalogueError):
    """Negative stock is not allowed and this movement would go below zero."""

    def __init__(self, item_id, on_hand, delta):
        CatalogueError.__init__(self, "stock_short", "item %s has %d on hand; %d would take it "
                                "below zero" % (item_id, on_hand, delta))
        self.item_id = item_id
        self.on_hand = on_hand
        self.delta = delta


class ItemDamaged(CatalogueError):
    """A stored record of this item failed its integrity check (altered on the card):
    it is never sold, priced or moved as it stands. The SQLite catalogue flags it for
    support (damaged()); the rest of the catalogue goes on."""

    def __init__(self, item_id, what):
        CatalogueError.__init__(self, "item_damaged", "item %s: %s" % (item_id, what))
        self.item_id = item_id


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(field, value, low, high):
    if not _is_int(value) or not low <= value <= high:
        raise BadItem(field, "must be a whole number from %d to %d" % (low, high))


def _name(field, value, required):
    if not isinstance(value, str):
        raise BadItem(field, "must be text")
    if value != value.strip():
        raise BadItem(field, "has leading or trailing spaces")
    if required and not value:
        raise BadItem(field, "is empty")
    if len(value) > NAME_MAX:
        raise BadItem(field, "is longer than %d characters" % NAME_MAX)
    for ch in value:
        if ord(ch) < 32 or ch == "\x7f":
            raise BadItem(field, "holds a control character")


def check_item(item):
    """Raise BadItem for the first field of item (a dict with every field but id and
    category) that is out of its rules."""
    _int_in("plu", item["plu"], 1, PLU_MAX)
    _name("name_en", item["name_en"], True)
    _name("name_zh", item["name_zh"], False)
    _int_in("price", item["price"], 0, PRICE_MAX)
    _int_in("tax_rate", item["tax_rate"], 0, TAX_MAX)
    if item["unit"] not in UNITS:
        raise BadItem("unit", "must be each or kg")
    if not isinstance(item["active"], bool):
        raise BadItem("active", "must be true or false")
    if item["low_stock"] is not None:
        _int_in("low_stock", item["low_stock"], 0, QTY_MAX)


def check_barcode(key):
    """A lookup key as firmware/retail/barcode.py normalises it (classify(code).key, or
    one of its alt_keys): what the core looks a scan up by. Returns the kind."""
    from firmware.retail import barcode
    if not isinstance(key, str) or not key:
        raise BadItem("barcode", "is empty")
    code = barcode.classify(key)
    if not code.ok:
        raise BadItem("barcode", "%s: %s" % (key, code.reason))
    if key != code.key and key not in code.alt_keys:
        raise BadItem("barcode", "%s: not a lookup key (that is %s)" % (key, code.key))
    return code.kind


def check_movement(delta, reason, operator, ref):
    if reason not in REASONS:
        raise BadItem("reason", "must be one of: " + ", ".join(REASONS))
    _int_in("delta", delta, -QTY_MAX, QTY_MAX)
    if not isinstance(operator, str) or not isinstance(ref, str) or len(ref) > REF_MAX:
        raise BadItem("ref", "operator and ref must be text, ref at most %d characters"
                      % REF_MAX)


def new_item(plu, name_en, price, name_zh="", category=None, tax_rate=0, unit=EACH,
             active=True, low_stock=None):
    item = {"plu": plu, "name_en": name_en, "name_zh": name_zh, "price": price,
            "category": category, "tax_rate": tax_rate, "unit": unit, "active": active,
            "low_stock": low_stock}
    check_item(item)
    return item


def plu_number(plu):
    """A PLU as the catalogue keys it: digits as typed or read off a scale label
    ("01234") become 1234; anything that is no PLU becomes None."""
    if isinstance(plu, str):
        return int(plu) if plu and len(plu) <= 9 and plu.isdigit() else None
    return plu if _is_int(plu) else None


def utc_now():
    """Wall-clock UTC as the records carry it, YYYY-MM-DDTHH:MM:SSZ."""
    t = time.gmtime()
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (t[0], t[1], t[2], t[3], t[4], t[5])


def _copy(item):
    return dict(item) if item is not None else None


class MemoryCatalogue:
    """The catalogue in memory. allow_negative_stock: [retail] allow_negative_stock;
    now: a callable giving the UTC time text of a movement (the terminal's clock)."""
    durable = False

    def __init__(self, allow_negative_stock=True, now=None):
        self.allow_negative_stock = allow_negative_stock
        self.now = now or utc_now
        self._items = {}            # id -> item
        self._by_plu = {}
        self._codes = {}            # barcode key -> item id
        self._cats = []             # [{"id", "name_en", "name_zh"}]
        self._stock = {}
        self._moves = []
        self._prices = []
        self._next = 1

    # -- reading ---------------------------------------------------------------
    def get(self, item_id):
        return _copy(self._items.get(item_id))

    def find_by_barcode(self, key):
        item_id = self._codes.get(key)
        return None if item_id is None else self.get(item_id)

    def find_by_plu(self, plu):
        """plu: a number, or digits as typed or read off a scale label ("01234")."""
        plu = plu_number(plu)
        item_id = self._by_plu.get(plu)
        return None if item_id is None else self.get(item_id)

    def barcodes_of(self, item_id):
        return sorted(k for k in self._codes if self._codes[k] == item_id)

    def categories(self):
        return [dict(c) for c in self._cats]

    def _browse(self, category):
        found = [i for i in self._items.values() if i["active"] and i["category"] == category]
        found.sort(key=lambda i: (i["name_en"], i["id"]))
        return found

    def items_in(self, category, offset=0, limit=20):
        """Active items of a category (None: those in none), by English name."""
        return [dict(i) for i in self._browse(category)[offset:offset + limit]]

    def count_in(self, category):
        return len(self._browse(category))

    def items(self, offset=0, limit=None):
        """Every item, active or not, by PLU."""
        found = sorted(self._items.values(), key=lambda i: i["plu"])
        end = len(found) if limit is None else offset + limit
        return [dict(i) for i in found[offset:end]]

    def item_count(self):
        return len(self._items)

    def stock(self, item_id):
        if item_id not in self._items:
            raise UnknownItem(item_id)
        return self._stock.get(item_id, 0)

    def low_stock(self):
        """[(item, on hand)] of active items at or under their low-stock level, by PLU."""
        low = []
        for item in self.items():
            level = item["low_stock"]
            if item["active"] and level is not None and self._stock.get(item["id"], 0) <= level:
                low.append((item, self._stock.get(item["id"], 0)))
        return low

    def movements(self, item_id=None, after=0, limit=None):
        """Movements (oldest first) with id > after, of one item or all."""
        found = [dict(m) for m in self._moves if m["id"] > after and
                 (item_id is None or m["item_id"] == item_id)]
        return found if limit is None else found[:limit]

    def has_ref(self, ref):
        """True when a movement with this reference (a sale's record number) exists."""
        for m in self._moves:
            if m["ref"] == ref:
                return True
        return False

    def price_changes(self, item_id=None):
        return [dict(p) for p in self._prices if item_id is None or p["item_id"] == item_id]

    # -- writing ---------------------------------------------------------------
    def add_category(self, name_en, name_zh=""):
        _name("category", name_en, True)
        _name("category_zh", name_zh, False)
        for c in self._cats:
            if c["name_en"] == name_en:
                raise CatalogueError("duplicate_category", "category %s exists" % name_en)
        cat = {"id": len(self._cats) + 1, "name_en": name_en, "name_zh": name_zh}
        self._cats.append(cat)
        return cat["id"]

    def add_item(self, plu, name_en, price, name_zh="", category=None, tax_rate=0,
                 unit=EACH, active=True, low_stock=None, barcodes=(), operator=""):
        """A new item (plu None: the next free PLU); its id. Nothing is added when a
        field, the PLU or a barcode is refused."""
        if plu is None:
            plu = self._free_plu()
        item = new_item(plu, name_en, price, name_zh, category, tax_rate, unit, active,
                        low_stock)
        if plu in self._by_plu:
            raise DuplicatePLU(plu, self._by_plu[plu])
        if category is not None and category not in [c["id"] for c in self._cats]:
            raise BadItem("category", "no category %r" % (category,))
        codes = list(barcodes)
        for key in codes:
            check_barcode(key)
            if key in self._codes:
                raise DuplicateBarcode(key, self._codes[key])
        if len(set(codes)) != len(codes):
            raise BadItem("barcode", "the same barcode twice")
        item["id"] = self._next
        self._next += 1
        self._items[item["id"]] = item
        self._by_plu[plu] = item["id"]
        for key in codes:
            self._codes[key] = item["id"]
        return item["id"]

    def _free_plu(self):
        plu = max(self._by_plu) + 1 if self._by_plu else 1
        if plu > PLU_MAX:
            raise BadItem("plu", "no free PLU after %d" % PLU_MAX)
        return plu

    def add_barcode(self, item_id, key):
        if item_id not in self._items:
            raise UnknownItem(item_id)
        check_barcode(key)
        if key in self._codes:
            raise DuplicateBarcode(key, self._codes[key])
        self._codes[key] = item_id

    def set_price(self, item_id, price, operator):
        """Change an item's price, recorded with the operator; returns the old price."""
        item = self._items.get(item_id)
        if item is None:
            raise UnknownItem(item_id)
        _int_in("price", price, 0, PRICE_MAX)
        old = item["price"]
        item["price"] = price
        self._prices.append({"id": len(self._prices) + 1, "item_id": item_id, "old": old,
                             "new": price, "operator": operator, "utc": self.now()})
        return old

    def record_movement(self, item_id, delta, reason, operator, ref=""):
        """Move stock; returns the new quantity on hand."""
        return self.record_movements([(item_id, delta, reason)], operator, ref)[0]

    def record_movements(self, moves, operator, ref=""):
        """Several movements [(item_id, delta, reason)] (a sale's lines), all or none;
        returns the quantities on hand after each."""
        after = {}
        for item_id, delta, reason in moves:
            check_movement(delta, reason, operator, ref)
            if item_id not in self._items:
                raise UnknownItem(item_id)
            on_hand = after.get(item_id, self._stock.get(item_id, 0))
            if delta < 0 and on_hand + delta < 0 and not self.allow_negative_stock:
                raise StockShort(item_id, on_hand, delta)
            after[item_id] = on_hand + delta
        utc = self.now()
        result = []
        for item_id, delta, reason in moves:
            on_hand = self._stock.get(item_id, 0) + delta
            self._stock[item_id] = on_hand
            self._moves.append({"id": len(self._moves) + 1, "item_id": item_id,
                                "delta": delta, "reason": reason, "operator": operator,
                                "utc": utc, "ref": ref, "on_hand": on_hand})
            result.append(on_hand)
        return result

    def count(self, item_id, on_hand, operator, ref=""):
        """A stock count: a "counted" movement from what the books say to on_hand;
        returns the delta (0: nothing recorded)."""
        _int_in("on_hand", on_hand, 0, QTY_MAX)
        delta = on_hand - self.stock(item_id)
        if delta:
            self.record_movement(item_id, delta, "counted", operator, ref)
        return delta

    def damaged(self):
        return []

    def close(self):
        pass
