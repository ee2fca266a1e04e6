"""The catalogue and stock on the device: catalogue.db in the data folder (SQLite, WAL,
synchronous=FULL), the same contract as firmware.retail.catalogue.MemoryCatalogue.

Tables: items (one row per PLU), barcodes (lookup key -> item, each key once),
categories (English and Chinese names), stock (quantity on hand per item), movements
(every stock change: item, delta, reason, operator, UTC time, reference, on hand
after), prices (every price change a supervisor made), meta (the catalogue's
currency), flags (rows that failed their integrity check), promotions (the automatic
promotions, firmware/retail/promotions.py rules as JSON, in the import file's order;
docs/promotions.md). docs/retail.md has the
columns and units.

Every movement is written with its stock change in one transaction (BEGIN IMMEDIATE),
committed to the card before the call returns. When negative stock is not allowed
([retail] allow_negative_stock = false) a movement that would take an item below zero
raises StockShort and writes nothing.

Integrity, as for the journal and the queue (docs/storage.md): every row carries a MAC
(HMAC-SHA256 under a key derived from the device data key for "catalogue"), checked
whenever it is read and before it is rewritten. A row that fails (a price or a barcode
edited on the card) is never acted on: the lookup raises ItemDamaged (the item cannot
be sold at a price nobody set), browsing leaves it out, and it is listed in `flags`
for support, never deleted or rewritten. mac_key None switches MACs off (bench
comparisons, tools that have no key).

Every error of the medium (full, I/O, damaged file) leaves as a StorageFault of the
part "catalogue" (firmware/core/store.py), reported to the guard's listener.
"""
import json
import os
import time

from drivers.sqlite_durable import Guard, flag_row, guarded, mac_ok, open_schema, probe, \
    quick_check, record_mac, transaction
from firmware.core.store import StorageFault
from firmware.retail.catalogue import (EACH, PLU_MAX, PRICE_MAX, QTY_MAX, BadItem,
                                       CatalogueError, DuplicateBarcode, DuplicatePLU,
                                       ItemDamaged, StockShort, UnknownItem, _int_in, _name,
                                       check_barcode, check_movement, new_item, plu_number)

PART = "catalogue"
FILE = "catalogue.db"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL, mac BLOB);
CREATE TABLE IF NOT EXISTS categories (
    id INTEGER PRIMARY KEY, name_en TEXT NOT NULL UNIQUE, name_zh TEXT NOT NULL DEFAULT '',
    mac BLOB);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, plu INTEGER NOT NULL UNIQUE, name_en TEXT NOT NULL,
    name_zh TEXT NOT NULL DEFAULT '', price INTEGER NOT NULL,
    category INTEGER REFERENCES categories(id), tax_rate INTEGER NOT NULL DEFAULT 0,
    unit TEXT NOT NULL DEFAULT 'each', active INTEGER NOT NULL DEFAULT 1, low_stock INTEGER,
    mac BLOB);
CREATE INDEX IF NOT EXISTS items_browse ON items(category, active, name_en, id);
CREATE TABLE IF NOT EXISTS barcodes (
    code TEXT PRIMARY KEY, item INTEGER NOT NULL REFERENCES items(id), mac BLOB) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS barcodes_item ON barcodes(item);
CREATE TABLE IF NOT EXISTS stock (
    item INTEGER PRIMARY KEY REFERENCES items(id), on_hand INTEGER NOT NULL, mac BLOB);
CREATE TABLE IF NOT EXISTS movements (
    id INTEGER PRIMARY KEY AUTOINCREMENT, item INTEGER NOT NULL REFERENCES items(id),
    delta INTEGER NOT NULL, reason TEXT NOT NULL, operator TEXT NOT NULL, utc TEXT NOT NULL,
    ref TEXT NOT NULL, on_hand INTEGER NOT NULL, mac BLOB);
CREATE INDEX IF NOT EXISTS movements_item ON movements(item, id);
CREATE INDEX IF NOT EXISTS movements_ref ON movements(ref);
CREATE TABLE IF NOT EXISTS prices (
    id INTEGER PRIMARY KEY AUTOINCREMENT, item INTEGER NOT NULL REFERENCES items(id),
    old INTEGER NOT NULL, new INTEGER NOT NULL, operator TEXT NOT NULL, utc TEXT NOT NULL,
    mac BLOB);
CREATE TABLE IF NOT EXISTS promotions (
    id TEXT PRIMARY KEY, pos INTEGER NOT NULL, body TEXT NOT NULL, mac BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flags (
    tbl TEXT NOT NULL, row TEXT NOT NULL, utc TEXT NOT NULL, what TEXT NOT NULL,
    PRIMARY KEY (tbl, row));
"""
ITEM_COLS = ("id", "plu", "name_en", "name_zh", "price", "category", "tax_rate", "unit",
             "active", "low_stock")
# fields equal to these are left out of a MAC (so a column added later, with its
# default, leaves older rows' MACs valid)
ITEM_DEFAULTS = {"name_zh": "", "category": None, "tax_rate": 0, "unit": EACH, "active": 1,
                 "low_stock": None}
MOVE_COLS = ("id", "item", "delta", "reason", "operator", "utc", "ref", "on_hand")
PRICE_COLS = ("id", "item", "old", "new", "operator", "utc")
_ITEM_SQL = "SELECT %s, mac FROM items" % ", ".join(ITEM_COLS)


class CatalogueOpenError(StorageFault):
    """catalogue.db cannot be opened (a StorageFault: the terminal shows it)."""


class CurrencyMismatch(CatalogueError):
    def __init__(self, stored, configured):
        CatalogueError.__init__(self, "currency", "the catalogue's prices are in %s and the "
                                "configuration's currency is %s: export it, convert the prices, "
                                "and import them into a new catalogue" % (stored, configured))
        self.stored = stored
        self.configured = configured


def _utc():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SQLiteCatalogue:
    fault_class = StorageFault
    durable = True

    def __init__(self, path, mac_key=None, on_fault=None, allow_negative_stock=True,
                 currency=None, now=None):
        self.path = path
        self.key = mac_key
        self.allow_negative_stock = allow_negative_stock
        self.now = now or _utc
        self.guard = Guard(PART, on_fault, path)
        self.db, self._flagged = open_schema(path, self.guard, SCHEMA, SCHEMA_VERSION,
                                             CatalogueOpenError, PART, ("PRAGMA foreign_keys=ON",))
        self.currency = self._meta("currency")
        if currency is not None and self.currency is not None and currency != self.currency:
            self.db.close()
            raise CurrencyMismatch(self.currency, currency)
        self.configured_currency = currency

    # -- integrity -------------------------------------------------------------
    def _mac(self, table, fields, defaults=None):
        return record_mac(self.key, table, fields, defaults) if self.key is not None else None

    def _ok(self, table, fields, mac, defaults=None):
        return self.key is None or mac_ok(self.key, table, fields, mac, defaults)

    def _flag(self, table, row, what):
        flag_row(self.db, self._flagged, table, row, what, _utc())

    def _damaged(self, table, row, item_id, what="its record failed its integrity check"):
        self._flag(table, row, what)
        raise ItemDamaged(item_id, "%s (%s)" % (what, table))

    def damaged(self):
        """[(table, row, utc, what)] of the rows that failed their check: for support."""
        rows = self.db.execute("SELECT tbl, row, utc, what FROM flags ORDER BY tbl, row").fetchall()
        seen = {(r[0], r[1]) for r in rows}
        return rows + [(t, r, "", "MAC failed") for t, r in sorted(self._flagged)
                       if (t, r) not in seen]

    def _meta(self, key):
        row = self.db.execute("SELECT value, mac FROM meta WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        if not self._ok("meta", {"key": key, "value": row[0]}, row[1]):
            self._flag("meta", key, "MAC failed")
            fault = StorageFault("corrupt", PART, "the catalogue's %s failed its integrity "
                                 "check: restore catalogue.db from the device backup" % key)
            self.guard.report(fault)
            raise fault
        return row[0]

    def _set_meta(self, key, value):
        self.db.execute("INSERT INTO meta VALUES (?,?,?) ON CONFLICT(key) DO UPDATE SET "
                        "value=excluded.value, mac=excluded.mac",
                        (key, value, self._mac("meta", {"key": key, "value": value})))

    def _claim_currency(self):
        """Inside a write: the catalogue's prices are in the configured currency from
        its first item on."""
        if self.currency is None and self.configured_currency is not None:
            self._set_meta("currency", self.configured_currency)
            self.currency = self.configured_currency

    @guarded
    def probe(self):
        probe(self.db)

    def selftest(self, max_ms=2000):
        return quick_check(self.db, max_ms)

    def quick_check(self, max_ms=2000):
        return quick_check(self.db, max_ms)

    # -- rows ------------------------------------------------------------------
    def _item(self, row):
        """The item dict of an items row (ITEM_COLS + mac), checked."""
        rec = dict(zip(ITEM_COLS, row[:-1]))
        if not self._ok("items", rec, row[-1], ITEM_DEFAULTS):
            self._damaged("items", rec["id"], rec["id"])
        rec["active"] = bool(rec["active"])
        return rec

    def _item_or_none(self, row):
        """For listings: a damaged item is flagged and left out, not raised."""
        try:
            return self._item(row)
        except ItemDamaged:
            return None

    @staticmethod
    def _item_mac_fields(item):
        rec = {k: item[k] for k in ITEM_COLS}
        rec["active"] = 1 if item["active"] else 0
        return rec

    def _item_values(self, item):
        rec = self._item_mac_fields(item)
        return tuple(rec[k] for k in ITEM_COLS) + (self._mac("items", rec, ITEM_DEFAULTS),)

    def _code_mac(self, code, item_id):
        return self._mac("barcodes", {"code": code, "item": item_id})

    def _stock_mac(self, item_id, on_hand):
        return self._mac("stock", {"item": item_id, "on_hand": on_hand})

    # -- reading ---------------------------------------------------------------
    @guarded
    def get(self, item_id):
        row = self.db.execute(_ITEM_SQL + " WHERE id=?", (item_id,)).fetchone()
        return self._item(row) if row else None

    @guarded
    def find_by_barcode(self, key):
        """The item a scan's lookup key names, or None. ItemDamaged when its barcode
        or item record was altered on the card."""
        row = self.db.execute("SELECT item, mac FROM barcodes WHERE code=?", (key,)).fetchone()
        if row is None:
            return None
        if not self._ok("barcodes", {"code": key, "item": row[0]}, row[1]):
            self._damaged("barcodes", key, row[0])
        item = self.db.execute(_ITEM_SQL + " WHERE id=?", (row[0],)).fetchone()
        if item is None:
            self._damaged("barcodes", key, row[0], "its barcode names no item")
        return self._item(item)

    @guarded
    def find_by_plu(self, plu):
        plu = plu_number(plu)           # as typed or read off a scale label: "01234"
        if plu is None:
            return None
        row = self.db.execute(_ITEM_SQL + " WHERE plu=?", (plu,)).fetchone()
        return self._item(row) if row else None

    @guarded
    def barcodes_of(self, item_id):
        codes = []
        for code, mac in self.db.execute("SELECT code, mac FROM barcodes WHERE item=? "
                                         "ORDER BY code", (item_id,)).fetchall():
            if self._ok("barcodes", {"code": code, "item": item_id}, mac):
                codes.append(code)
            else:
                self._flag("barcodes", code, "MAC failed")
        return codes

    @guarded
    def categories(self):
        cats = []
        for cid, en, zh, mac in self.db.execute("SELECT id, name_en, name_zh, mac FROM "
                                                "categories ORDER BY id").fetchall():
            if self._ok("categories", {"id": cid, "name_en": en, "name_zh": zh}, mac):
                cats.append({"id": cid, "name_en": en, "name_zh": zh})
            else:
                self._flag("categories", cid, "MAC failed")
        return cats

    def _where_category(self, category):
        return ("category IS NULL", ()) if category is None else ("category=?", (category,))

    @guarded
    def items_in(self, category, offset=0, limit=20):
        """Active items of a category (None: those in none), by English name; a damaged
        one is left out (and flagged)."""
        where, args = self._where_category(category)
        rows = self.db.execute(_ITEM_SQL + " WHERE %s AND active=1 ORDER BY name_en, id "
                               "LIMIT ? OFFSET ?" % where, args + (limit, offset)).fetchall()
        return [i for i in map(self._item_or_none, rows) if i is not None]

    @guarded
    def count_in(self, category):
        where, args = self._where_category(category)
        return self.db.execute("SELECT COUNT(*) FROM items WHERE %s AND active=1" % where,
                               args).fetchone()[0]

    @guarded
    def items(self, offset=0, limit=None):
        """Every item, active or not, by PLU; damaged ones left out (see damaged())."""
        rows = self.db.execute(_ITEM_SQL + " ORDER BY plu LIMIT ? OFFSET ?",
                               (-1 if limit is None else limit, offset)).fetchall()
        return [i for i in map(self._item_or_none, rows) if i is not None]

    @guarded
    def item_count(self):
        return self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def _on_hand(self, item_id):
        """The verified quantity on hand (inside a read or a write)."""
        row = self.db.execute("SELECT on_hand, mac FROM stock WHERE item=?", (item_id,)).fetchone()
        if row is None:
            if self.db.execute("SELECT 1 FROM items WHERE id=?", (item_id,)).fetchone() is None:
                raise UnknownItem(item_id)
            self._damaged("stock", item_id, item_id, "its stock record is missing")
        if not self._ok("stock", {"item": item_id, "on_hand": row[0]}, row[1]):
            self._damaged("stock", item_id, item_id)
        return row[0]

    @guarded
    def stock(self, item_id):
        return self._on_hand(item_id)

    @guarded
    def low_stock(self):
        """[(item, on hand)] of active items at or under their low-stock level, by PLU."""
        rows = self.db.execute(
            "SELECT %s, i.mac, s.on_hand, s.mac FROM items i JOIN stock s ON s.item=i.id "
            "WHERE i.active=1 AND i.low_stock IS NOT NULL AND s.on_hand <= i.low_stock "
            "ORDER BY i.plu" % ", ".join("i." + c for c in ITEM_COLS)).fetchall()
        low = []
        for row in rows:
            item = self._item_or_none(row[:-2])
            if item is None:
                continue
            if not self._ok("stock", {"item": item["id"], "on_hand": row[-2]}, row[-1]):
                self._flag("stock", item["id"], "MAC failed")
                continue
            low.append((item, row[-2]))
        return low

    def _move(self, row):
        rec = dict(zip(MOVE_COLS, row[:-1]))
        if not self._ok("movements", rec, row[-1]):
            self._flag("movements", rec["id"], "MAC failed")
            return None
        rec["item_id"] = rec.pop("item")
        return rec

    @guarded
    def movements(self, item_id=None, after=0, limit=None):
        """Movements (oldest first) with id > after, of one item or all; a damaged one
        is left out (and flagged)."""
        sql = "SELECT %s, mac FROM movements WHERE id>?" % ", ".join(MOVE_COLS)
        args = [after]
        if item_id is not None:
            sql += " AND item=?"
            args.append(item_id)
        sql += " ORDER BY id LIMIT ?"
        args.append(-1 if limit is None else limit)
        return [m for m in map(self._move, self.db.execute(sql, args).fetchall()) if m]

    @guarded
    def has_ref(self, ref):
        """True when a movement with this reference (a sale's record number) exists:
        the stock of that sale was taken."""
        return self.db.execute("SELECT 1 FROM movements WHERE ref=? LIMIT 1",
                               (ref,)).fetchone() is not None

    @guarded
    def price_changes(self, item_id=None):
        sql = "SELECT %s, mac FROM prices" % ", ".join(PRICE_COLS)
        args = ()
        if item_id is not None:
            sql += " WHERE item=?"
            args = (item_id,)
        found = []
        for row in self.db.execute(sql + " ORDER BY id", args).fetchall():
            rec = dict(zip(PRICE_COLS, row[:-1]))
            if not self._ok("prices", rec, row[-1]):
                self._flag("prices", rec["id"], "MAC failed")
                continue
            rec["item_id"] = rec.pop("item")
            found.append(rec)
        return found

    # -- writing ---------------------------------------------------------------
    def _txn(self, body):
        return transaction(self.db, body)

    @guarded
    def add_category(self, name_en, name_zh=""):
        _name("category", name_en, True)
        _name("category_zh", name_zh, False)

        def body():
            if self.db.execute("SELECT 1 FROM categories WHERE name_en=?", (name_en,)).fetchone():
                raise CatalogueError("duplicate_category", "category %s exists" % name_en)
            cid = self.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM categories").fetchone()[0]
            self._put_category(cid, name_en, name_zh)
            return cid
        return self._txn(body)

    def _put_category(self, cid, name_en, name_zh):
        self.db.execute("INSERT INTO categories VALUES (?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                        "name_en=excluded.name_en, name_zh=excluded.name_zh, mac=excluded.mac",
                        (cid, name_en, name_zh, self._mac("categories", {
                            "id": cid, "name_en": name_en, "name_zh": name_zh})))

    @guarded
    def add_item(self, plu, name_en, price, name_zh="", category=None, tax_rate=0,
                 unit=EACH, active=True, low_stock=None, barcodes=(), operator=""):
        """A new item (plu None: the next free PLU) with no stock; its id. Nothing is
        added when a field, the PLU or a barcode is refused."""
        codes = list(barcodes)
        for key in codes:
            check_barcode(key)
        if len(set(codes)) != len(codes):
            raise BadItem("barcode", "the same barcode twice")

        def body():
            number = plu
            if number is None:
                number = self.db.execute("SELECT COALESCE(MAX(plu), 0) + 1 FROM items").fetchone()[0]
                if number > PLU_MAX:
                    raise BadItem("plu", "no free PLU after %d" % PLU_MAX)
            item = new_item(number, name_en, price, name_zh, category, tax_rate, unit, active,
                            low_stock)
            taken = self.db.execute("SELECT id FROM items WHERE plu=?", (number,)).fetchone()
            if taken:
                raise DuplicatePLU(number, taken[0])
            if category is not None and not self.db.execute(
                    "SELECT 1 FROM categories WHERE id=?", (category,)).fetchone():
                raise BadItem("category", "no category %r" % (category,))
            for key in codes:
                held = self.db.execute("SELECT item FROM barcodes WHERE code=?", (key,)).fetchone()
                if held:
                    raise DuplicateBarcode(key, held[0])
            self._claim_currency()
            item["id"] = self.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM items").fetchone()[0]
            self.db.execute("INSERT INTO items (%s, mac) VALUES (%s)" % (
                ", ".join(ITEM_COLS), ",".join("?" * (len(ITEM_COLS) + 1))), self._item_values(item))
            self.db.execute("INSERT INTO stock VALUES (?,?,?)", (item["id"], 0,
                                                                 self._stock_mac(item["id"], 0)))
            for key in codes:
                self.db.execute("INSERT INTO barcodes VALUES (?,?,?)",
                                (key, item["id"], self._code_mac(key, item["id"])))
            return item["id"]
        return self._txn(body)

    @guarded
    def add_barcode(self, item_id, key):
        check_barcode(key)

        def body():
            self._checked_item(item_id)
            held = self.db.execute("SELECT item FROM barcodes WHERE code=?", (key,)).fetchone()
            if held:
                raise DuplicateBarcode(key, held[0])
            self.db.execute("INSERT INTO barcodes VALUES (?,?,?)",
                            (key, item_id, self._code_mac(key, item_id)))
        self._txn(body)

    def _checked_item(self, item_id):
        row = self.db.execute(_ITEM_SQL + " WHERE id=?", (item_id,)).fetchone()
        if row is None:
            raise UnknownItem(item_id)
        return self._item(row)

    @guarded
    def set_price(self, item_id, price, operator):
        """Change an item's price, recorded with the operator; returns the old price.
        An item whose record was altered is not re-sealed (ItemDamaged)."""
        _int_in("price", price, 0, PRICE_MAX)

        def body():
            item = self._checked_item(item_id)
            old = item["price"]
            item["price"] = price
            self._write_item(item)
            rec = {"id": self._next_id("prices"), "item": item_id, "old": old, "new": price,
                   "operator": operator, "utc": self.now()}
            self.db.execute("INSERT INTO prices (%s, mac) VALUES (?,?,?,?,?,?,?)"
                            % ", ".join(PRICE_COLS), tuple(rec[k] for k in PRICE_COLS) +
                            (self._mac("prices", rec),))
            return old
        return self._txn(body)

    def _write_item(self, item):
        values = self._item_values(item)
        self.db.execute("UPDATE items SET %s, mac=? WHERE id=?" % ", ".join(
            "%s=?" % c for c in ITEM_COLS[1:]), values[1:] + (item["id"],))

    @guarded
    def record_movement(self, item_id, delta, reason, operator, ref=""):
        """Move stock; returns the new quantity on hand."""
        return self.record_movements([(item_id, delta, reason)], operator, ref)[0]

    @guarded
    def record_movements(self, moves, operator, ref=""):
        """Several movements [(item_id, delta, reason)] (a sale's lines) in one
        transaction, all or none; returns the quantities on hand after each."""
        for item_id, delta, reason in moves:
            check_movement(delta, reason, operator, ref)

        def body():
            utc = self.now()
            after = []
            for item_id, delta, reason in moves:
                after.append(self._apply_move(item_id, delta, reason, operator, utc, ref))
            return after
        return self._txn(body)

    def _apply_move(self, item_id, delta, reason, operator, utc, ref):
        on_hand = self._on_hand(item_id)
        if delta < 0 and on_hand + delta < 0 and not self.allow_negative_stock:
            raise StockShort(item_id, on_hand, delta)
        on_hand += delta
        if not -QTY_MAX <= on_hand <= QTY_MAX:
            raise BadItem("delta", "would leave %d on hand" % on_hand)
        self.db.execute("UPDATE stock SET on_hand=?, mac=? WHERE item=?",
                        (on_hand, self._stock_mac(item_id, on_hand), item_id))
        self._insert_move(item_id, delta, reason, operator, utc, ref, on_hand)
        return on_hand

    def _next_id(self, table):
        """The id the next row of an AUTOINCREMENT table gets (inside a write, so that
        its MAC can be written with it): ids are never reused, even after a delete."""
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name=?", (table,)).fetchone()
        return (row[0] if row else 0) + 1

    def _insert_move(self, item_id, delta, reason, operator, utc, ref, on_hand):
        rec = {"id": self._next_id("movements"), "item": item_id, "delta": delta,
               "reason": reason, "operator": operator, "utc": utc, "ref": ref,
               "on_hand": on_hand}
        self.db.execute("INSERT INTO movements (%s, mac) VALUES (?,?,?,?,?,?,?,?,?)"
                        % ", ".join(MOVE_COLS), tuple(rec[k] for k in MOVE_COLS) +
                        (self._mac("movements", rec),))

    @guarded
    def count(self, item_id, on_hand, operator, ref=""):
        """A stock count: a "counted" movement from what the books say to on_hand;
        returns the delta (0: nothing recorded)."""
        _int_in("on_hand", on_hand, 0, QTY_MAX)
        check_movement(0, "counted", operator, ref)

        def body():
            delta = on_hand - self._on_hand(item_id)
            if delta:
                self._apply_move(item_id, delta, "counted", operator, self.now(), ref)
            return delta
        return self._txn(body)

    # -- bulk import (tools/catalogue_csv.py) -----------------------------------
    @guarded
    def import_view(self, plus, codes):
        """What an import checks its lines against, for the PLUs and barcode keys of the
        file only: ({plu: (id, unit, name_en, stock_ok)} of the PLUs that exist, unit
        None when the item's record fails its check), {barcode: (plu, name_en)} of the
        keys some item holds). Rows that fail their check are flagged."""
        items = {}
        for plu in plus:
            row = self.db.execute(_ITEM_SQL + " WHERE plu=?", (plu,)).fetchone()
            if row is None:
                continue
            item = self._item_or_none(row)
            got = self.db.execute("SELECT on_hand, mac FROM stock WHERE item=?",
                                  (row[0],)).fetchone()
            stock_ok = got is not None and self._ok("stock", {"item": row[0], "on_hand": got[0]},
                                                    got[1])
            if not stock_ok:
                self._flag("stock", row[0], "MAC failed" if got else "missing")
            items[plu] = (row[0], item["unit"] if item else None, row[3], stock_ok)
        held = {}
        for code in codes:
            row = self.db.execute("SELECT i.plu, i.name_en FROM barcodes b JOIN items i "
                                  "ON i.id=b.item WHERE b.code=?", (code,)).fetchone()
            if row is not None:
                held[code] = (row[0], row[1])
        return items, held

    @guarded
    def export_rows(self, after_plu=0, limit=2000):
        """The next items by PLU after after_plu, for an export: [(plu, item, [barcodes],
        on hand)], item None when its record fails its check, on hand None when its
        stock's does (both flagged); barcodes whose rows fail are left out (flagged)."""
        rows = self.db.execute(_ITEM_SQL + " WHERE plu>? ORDER BY plu LIMIT ?",
                               (after_plu, limit)).fetchall()
        out = []
        for row in rows:
            item = self._item_or_none(row)
            codes = self.barcodes_of(row[0])
            got = self.db.execute("SELECT on_hand, mac FROM stock WHERE item=?",
                                  (row[0],)).fetchone()
            on_hand = None
            if got is not None and self._ok("stock", {"item": row[0], "on_hand": got[0]}, got[1]):
                on_hand = got[0]
            else:
                self._flag("stock", row[0], "MAC failed" if got else "missing")
            out.append((row[1], item, codes, on_hand))
        return out

    @guarded
    def category_names(self):
        """{id: (name_en, name_zh)} of every category whose row holds its check."""
        return {c["id"]: (c["name_en"], c["name_zh"]) for c in self.categories()}

    @guarded
    def apply_import(self, records, operator, ref, progress=None):
        """Write an import's checked records in one transaction (all or nothing).

        records: [{"plu", "fields": {name_en, name_zh, price, tax_rate, unit, active,
        low_stock} (only those the file gives), "category": (name_en, name_zh) or None
        or absent, "barcodes": [keys] or absent, "stock": on hand or absent}], already
        checked against import_view() by the caller: PLUs unique, barcodes free.
        An existing item takes the fields given; a new one the defaults for the rest.
        Stock given and different from the books: a "counted" movement of the
        difference. Returns {"added", "updated", "unchanged", "moved"}."""
        counts = {"added": 0, "updated": 0, "unchanged": 0, "moved": 0}

        def body():
            self._claim_currency()
            utc = self.now()
            cats = {en: [cid, zh] for cid, en, zh in
                    self.db.execute("SELECT id, name_en, name_zh FROM categories")}
            next_cat = max([c[0] for c in cats.values()] or [0]) + 1
            next_id = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM items").fetchone()[0] + 1
            # the barcodes the file takes off its items go first: a later line may give
            # one to an item of an earlier line
            taken_off = set()
            for rec in records:
                if "barcodes" in rec:
                    gone = [c for c in self._codes_of_plu(rec["plu"]) if c not in rec["barcodes"]]
                    if gone:
                        taken_off.add(rec["plu"])
                        self.db.executemany("DELETE FROM barcodes WHERE code=?",
                                            [(c,) for c in gone])
            done = 0
            for rec in records:
                cat_id = None
                if rec.get("category"):
                    en, zh = rec["category"]
                    if en not in cats:
                        cats[en] = [next_cat, zh]
                        self._put_category(next_cat, en, zh)
                        next_cat += 1
                    elif zh and cats[en][1] != zh:
                        cats[en][1] = zh
                        self._put_category(cats[en][0], en, zh)
                    cat_id = cats[en][0]
                row = self.db.execute(_ITEM_SQL + " WHERE plu=?", (rec["plu"],)).fetchone()
                if row is None:
                    item = {"id": next_id, "plu": rec["plu"], "name_en": "", "name_zh": "",
                            "price": 0, "category": None, "tax_rate": 0, "unit": EACH,
                            "active": True, "low_stock": None}
                    next_id += 1
                    old = None
                else:
                    item = self._item(row)
                    old = dict(item)
                item.update(rec["fields"])
                if "category" in rec:
                    item["category"] = cat_id
                if old is None:
                    self.db.execute("INSERT INTO items (%s, mac) VALUES (%s)" % (
                        ", ".join(ITEM_COLS), ",".join("?" * (len(ITEM_COLS) + 1))),
                        self._item_values(item))
                    # a new item's stock row is written once, at the count it starts with
                    on_hand = rec.get("stock") or 0
                    self.db.execute("INSERT INTO stock VALUES (?,?,?)",
                                    (item["id"], on_hand, self._stock_mac(item["id"], on_hand)))
                    if on_hand:
                        self._insert_move(item["id"], on_hand, "counted", operator, utc, ref,
                                          on_hand)
                        counts["moved"] += 1
                    counts["added"] += 1
                    changed = True
                else:
                    changed = item != old
                    if changed:
                        self._write_item(item)
                if "barcodes" in rec:
                    have = [] if old is None else [r[0] for r in self.db.execute(
                        "SELECT code FROM barcodes WHERE item=?", (item["id"],))]
                    if rec["plu"] in taken_off or sorted(have) != sorted(rec["barcodes"]):
                        changed = True
                        self.db.executemany("INSERT INTO barcodes VALUES (?,?,?)", [
                            (c, item["id"], self._code_mac(c, item["id"]))
                            for c in rec["barcodes"] if c not in have])
                if rec.get("stock") is not None and old is not None:
                    delta = rec["stock"] - self._on_hand(item["id"])
                    if delta:
                        self._apply_move(item["id"], delta, "counted", operator, utc, ref)
                        counts["moved"] += 1
                        changed = True
                if old is not None:
                    counts["updated" if changed else "unchanged"] += 1
                done += 1
                if progress is not None and done % 1000 == 0:
                    progress(done)
            if progress is not None:
                progress(done)
        self._txn(body)
        return counts

    # -- promotions (handpos promotions import; firmware/retail/promotions.py) ---------
    @guarded
    def promotions(self):
        """The promotions' rules in the import file's order; a row that fails its check
        is left out and flagged (that promotion is not given: shelf prices stand)."""
        rules = []
        for ident, pos, body, mac in self.db.execute(
                "SELECT id, pos, body, mac FROM promotions ORDER BY pos").fetchall():
            if not self._ok("promotions", {"id": ident, "pos": pos, "body": body}, mac):
                self._flag("promotions", ident, "MAC failed")
                continue
            try:
                rule = json.loads(body)
            except ValueError:
                self._flag("promotions", ident, "not JSON")
                continue
            rule["order"] = pos
            rules.append(rule)
        return rules

    @guarded
    def replace_promotions(self, rules, ref=""):
        """The promotions become rules (checked by firmware.retail.promotions.parse), in
        one transaction: the old set goes, the new one is all there or none of it."""
        rows = []
        for pos in range(len(rules)):
            rule = dict(rules[pos])
            rule.pop("order", None)
            body = json.dumps(rule, sort_keys=True, ensure_ascii=False)
            rows.append((rule["id"], pos, body,
                         self._mac("promotions", {"id": rule["id"], "pos": pos, "body": body})))

        def body():
            self.db.execute("DELETE FROM promotions")
            self.db.executemany("INSERT INTO promotions VALUES (?,?,?,?)", rows)
            self.db.execute("DELETE FROM flags WHERE tbl='promotions'")
            self._flagged = {f for f in self._flagged if f[0] != "promotions"}
            self._set_meta("promotions_from", ref)
        self._txn(body)
        return len(rows)

    def _codes_of_plu(self, plu):
        return [r[0] for r in self.db.execute("SELECT b.code FROM barcodes b JOIN items i "
                                              "ON i.id=b.item WHERE i.plu=?", (plu,))]

    def close(self):
        self.db.close()


def open_catalogue(data_dir, data_key=None, config=None, on_fault=None, now=None):
    """catalogue.db of a data folder, as the terminal and the tools open it: MACs under
    the device data key's "catalogue" key, negative stock and currency from config."""
    from drivers.sqlite_durable import mac_key
    retail = (config or {}).get("retail", {})
    money = (config or {}).get("money", {})
    return SQLiteCatalogue(os.path.join(data_dir, FILE),
                           mac_key(data_key, PART) if data_key is not None else None,
                           on_fault=on_fault,
                           allow_negative_stock=retail.get("allow_negative_stock", True),
                           currency=money.get("currency"), now=now)
