"""Stock on the terminal (issue 12): look an item up, receive, count and write off
stock, change a price, list what runs low, and add an item a scan did not find.

MENU > Stock (StockFlow, docs/retail.md "Stock on the terminal") opens a menu; each
entry is a flow of its own that chooses items by a scan or a typed PLU and goes on to
the next item until CANCEL:

  Look up item     name, price, on hand, low-stock level; UP/DOWN its last movements
  Receive stock    a quantity in (grams for a kg item): a "received" movement
  Count stock      what is on the shelf: a "counted" movement of the difference
  Write off stock  damaged, lost or returned to the supplier: a movement out
  Change price     the new price, old -> new confirmed
  Low stock list   the items at or under their level, on hand / level

Receiving, counting, writing off, pricing and adding an item need a supervisor: the one
logged in, or one who types their ID and PIN on the spot (SupervisorFlow). Every
change is confirmed on a screen that shows before -> after, is written by the
catalogue in one transaction (firmware/retail/catalogue.py: a refusal writes nothing),
records the supervisor as its operator and goes into the audit log.

The idle screen's low-stock mark is low_stock_count(): a cached count that drawing
never pays for (LowStockMark says how it stays true).
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.core.money import format_amount
from firmware.core.store import is_fault
from firmware.flows.common import AmountField, Field, MenuFlow
from firmware.flows.supervisor import SupervisorFlow
from firmware.retail import barcode
from firmware.retail.catalogue import (KG, PLU_MAX, PRICE_MAX, QTY_MAX, BadItem,
                                       DuplicateBarcode, ItemDamaged, StockShort,
                                       UnknownItem)
from firmware.retail.cart import format_weight
from firmware.ui.receipt import display_width, fit
from firmware.ui.screen import BODY_ROWS, ROW_COLUMNS, wrap

ENTRY = "entry_timeout_s"
CHOOSING = "idle_logout_s"      # between two items a person walks to the next shelf
PLU_DIGITS = 6                  # PLU_MAX has six digits
QTY_DIGITS = 10                 # one more than QTY_MAX: too much is refused in words
MOVES_SHOWN = 10                # movements a look-up lists, newest first
REF = ""                        # the keypad types no delivery note: the operator and time say who

# the words of each movement reason (firmware.retail.catalogue.REASONS)
REASON_IDS = {"sale": "inv_r_sale", "refund": "inv_r_refund", "void": "inv_r_void",
              "received": "inv_r_received", "damaged": "inv_r_damaged",
              "lost": "inv_r_lost", "counted": "inv_r_counted",
              "returned": "inv_r_returned"}
# what a supervisor may take off the shelf by hand (sales, refunds and voids move
# stock by themselves; a count says what is there)
WRITE_OFFS = ("damaged", "lost", "returned")


def _states(base, extra):
    """A flow's STATES: base's, with extra's added (dicts, no dict merge syntax)."""
    out = {}
    for name in base:
        out[name] = base[name]
    for name in extra:
        out[name] = extra[name]
    return out


def is_kg(item):
    return item.get("unit") == KG


def qty_text(item, n):
    """A quantity in the item's unit: 24, or 12.500 kg (grams shown as kilograms)."""
    if is_kg(item):
        sign = "-" if n < 0 else ""
        return sign + format_weight(abs(n))
    return "%d" % n


def signed_text(item, n):
    """A movement's change, signed: +24, -1, +1.250 (a kg item's unit is on its rows)."""
    sign = "+" if n > 0 else ("-" if n < 0 else "")
    if is_kg(item):
        return sign + "%d.%03d" % (abs(n) // 1000, abs(n) % 1000)
    return sign + "%d" % abs(n)


def item_name(t, item):
    """The item's name in the screen's language (English when there is no Chinese)."""
    return ((item.get("name_zh") if t.lang == "zh" else "") or item.get("name_en", "")
            or t("ct_plu", plu=item.get("plu", "")))


def one_row(text):
    """text on one row; a longer one (a name, a long Code 128 code) cut with a mark
    that says so (the ellipsis is two columns wide in the panel's font)."""
    if display_width(text) <= ROW_COLUMNS:
        return text
    return fit(text, ROW_COLUMNS - 2) + "\u2026"


def name_row(t, item):
    return one_row(item_name(t, item))


def operator_text(t, op):
    """Who moved stock: an operator's ID as such; "import" and the like as they are."""
    if op and op.isdigit():
        return t("inv_op", id=op)
    return op or "-"


def price_text(t, item, price, currency):
    amount = format_amount(price, currency)
    return t("inv_price_is_kg", price=amount) if is_kg(item) else t("inv_price_is", price=amount)


def rows_of(text):
    """text as whole rows: wrapped, never cut, for the screens that scroll."""
    return wrap(text, ROW_COLUMNS)


def _local_when(term, utc):
    """'MM-DD HH:MM' local time of a record's UTC stamp, with today's offset."""
    from firmware.payments.receipts import _local
    try:
        offset = term.system.utc_offset_min()
    except Exception:           # a system with no zone: UTC
        offset = 0
    date, time_ = _local({"utc": utc or "", "tz_min": offset})
    if not time_:
        return utc or ""
    return date[5:] + " " + time_[:5]


def catalogue_refusal(exc):
    """True for a refusal of the catalogue (a CatalogueError, say why on screen); a
    storage fault has the terminal's fault screen already; anything else is a bug."""
    return hasattr(exc, "what") and not is_fault(exc)


# -- finding an item ------------------------------------------------------------------
def find_by_code(term, code, symbology=None):
    """(item, None) for a scanned code, or (None, [message id, values] rows) of why not.
    A scale label finds the item by its PLU; a UPC-E also tries its EAN-8 reading."""
    catalogue = term.catalogue
    code = code or ""
    rules = term.config["retail"]["scale_rules"]
    label = barcode.parse_scale(code, rules, term.config["money"]["currency"])
    if label is not None:
        if not label.get("ok"):
            return None, [("ct_bad_barcode", {}), ("scan_again", {})]
        item = catalogue.find_by_plu(label["plu"])
        if item is None:
            return None, [("ct_not_found", {}), ("inv_label_plu", {"plu": label["plu"]})]
        return item, None
    found = barcode.classify(code, symbology)
    if found.kind == "receipt":
        return None, [("ct_receipt", {})]
    if not found.ok:
        return None, [("ct_bad_barcode", {}), ("scan_again", {})]
    for key in [found.key] + list(found.alt_keys or ()):
        item = catalogue.find_by_barcode(key)
        if item is not None:
            return item, None
    return None, [("ct_not_found", {}), ("=", {"text": code})]


def newest_movement(catalogue, known=0):
    """The id of the newest stock movement, known being one no newer: a query of one
    row while nothing moved since, a few dozen after many movements (ids only grow,
    and the catalogue has no call that names the last one)."""
    def moved_after(i):
        return bool(catalogue.movements(after=i, limit=1))
    if not moved_after(known):
        return known
    low, step = known, 1
    high = known + step
    while moved_after(high):
        low = high
        step *= 2
        high = known + step
    while high - low > 1:
        mid = (low + high) // 2
        if moved_after(mid):
            low = mid
        else:
            high = mid
    return high


def last_movements(catalogue, item_id, n=MOVES_SHOWN, newest=None):
    """An item's last n movements, newest first. They are read from a window of the
    latest movement ids that grows until it holds n (or reaches the first one), so an
    item sold for years is not read whole to show its end."""
    if newest is None:
        newest = newest_movement(catalogue, 0)
    window = 256
    while True:
        after = max(0, newest - window)
        found = catalogue.movements(item_id, after=after)
        if len(found) >= n or after == 0:
            found.reverse()
            return found[:n]
        window *= 8


# -- the idle screen's mark -------------------------------------------------------------
LOW_RECHECK_MS = 300000     # and counted again at least this often, whatever the ids say


class LowStockMark:
    """How many items are at or under their low-stock level, for the idle screen.

    Drawing the idle screen never reads the catalogue: count() returns the figure kept
    here and asks for a check on the next turn of the loop. The check costs one
    one-row query while nothing moved: the set of low items changes only when stock
    moves (levels and active flags change only by a CSV import, with the terminal
    stopped), and every movement, a sale's, a void's, a refund's or one of this
    module's, gets a new id, so the catalogue's low_stock() is asked again only when
    the newest movement id is not the one it was counted at (and, as a backstop, when
    the count is older than LOW_RECHECK_MS). A changed count redraws the idle screen.
    A storage fault during the check is the terminal's (its fault screen); the mark
    keeps its figure.
    """

    def __init__(self, term):
        self.term = term
        self.n = 0
        self.catalogue = None       # the catalogue the figure is of
        self.seen = None            # the newest movement id when it was counted
        self.at = 0                 # the terminal's clock (ms) then
        self.due = False

    def count(self):
        if self.term.catalogue is None:
            return 0
        if not self.due:
            self.due = True
            self.term.reactor.call_soon(self.check)
        return self.n if self.catalogue is self.term.catalogue else 0

    def check(self):
        self.due = False
        term = self.term
        catalogue = term.catalogue
        if catalogue is None:
            return
        now = term.reactor.clock()
        try:
            same = self.catalogue is catalogue and self.seen is not None
            newest = newest_movement(catalogue, self.seen if same else 0)
            if same and newest == self.seen and now - self.at < LOW_RECHECK_MS:
                return
            n = len(catalogue.low_stock())
        except Exception as exc:
            if is_fault(exc) or hasattr(exc, "what"):
                return
            raise
        changed = n != self.n or self.catalogue is not catalogue
        self.catalogue, self.seen, self.at, self.n = catalogue, newest, now, n
        flow = term.current()
        if changed and flow is not None and flow.NAME == "idle":
            term.refresh()


def low_stock_mark(term):
    mark = getattr(term, "low_stock_mark", None)
    if mark is None:
        mark = LowStockMark(term)
        term.low_stock_mark = mark
    return mark


def low_stock_count(term):
    """The idle screen's "Low stock: n" (0: no row), without reading the catalogue."""
    return low_stock_mark(term).count()


# -- the menu ---------------------------------------------------------------------------
class StockFlow(MenuFlow):
    """MENU > Stock. A scan on the menu looks the item up."""
    NAME = "stock"
    TITLE = "inv_title"
    ENTRIES = (("inv_menu_lookup", "lookup"), ("inv_menu_receive", "receive"),
               ("inv_menu_count", "count"), ("inv_menu_adjust", "adjust"),
               ("inv_menu_price", "price"), ("inv_menu_low", "low"),
               ("inv_menu_promos", "promotions"))
    STATES = _states(MenuFlow.STATES, {
        "menu": _states(MenuFlow.STATES["menu"], {
            "on": _states(MenuFlow.STATES["menu"]["on"], {"scan": "scan_lookup"})}),
    })

    def entries(self):
        return list(self.ENTRIES)

    def _open(self, flow):
        if self.term.catalogue is None:
            self.term.beep("error")
            return self.say(self.t("ct_no_catalogue"), self.t("inv_import_first"))
        self.term.push(flow)
        return None

    def lookup(self):
        return self._open(LookupFlow(self.term))

    def scan_lookup(self, ev):
        return self._open(LookupFlow(self.term, ev.get("code"), ev.get("symbology")))

    def receive(self):
        return self._open(MoveFlow(self.term, "received"))

    def count(self):
        return self._open(MoveFlow(self.term, "counted"))

    def adjust(self):
        return self._open(MoveFlow(self.term, "adjust"))

    def price(self):
        return self._open(PriceFlow(self.term))

    def low(self):
        return self._open(LowStockFlow(self.term))

    def promotions(self):
        from firmware.flows.promotions_view import PromotionsFlow
        return self._open(PromotionsFlow(self.term))


# -- what the item flows share ------------------------------------------------------------
class ItemStep(Flow):
    """A supervisor's approval (PURPOSE: the message SupervisorFlow shows; "" none
    needed), then items chosen one after the other by a scan or a typed PLU ("item").
    Errors and notes are rows of (message id, values) shown in place of the prompt."""
    PURPOSE = ""
    FIRST = "item"              # the state after the approval
    ITEM_STATES = {
        "supervisor": {"enter": "approve", "timeout": None, "on": {}},
        "item": {"timeout": CHOOSING,
                 "on": {"scan": "scanned", "scan_error": "scan_failed",
                        "digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                        keys.ENTER: "plu_done", keys.CANCEL: "item_cancel"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.approver = None
        self.item = None
        self.field = Field(PLU_DIGITS)
        self.error = None
        self.note = None
        self.rows = []
        self.top = 0

    # approval
    def approve(self):
        if not self.PURPOSE:
            return self.FIRST
        if self.term.role() == "supervisor":
            self.approver = self.term.operator
            return self.FIRST
        self.term.push(SupervisorFlow(self.term, self.PURPOSE))
        return None

    def child_done(self, child, result):
        if child.NAME != "supervisor":
            return None         # a notice over this flow (a device lost, the queue)
        if result is None:
            self.finish(None)
            return None
        self.approver = result
        return self.FIRST

    def operator_id(self):
        op = self.approver or self.term.operator or {}
        return op.get("id", "")

    def audit(self, event, detail):
        """Into the audit log, by the approver; the one at the keypad too when another."""
        op = self.operator_id()
        at_keys = (self.term.operator or {}).get("id", "")
        if at_keys and at_keys != op:
            detail += " at " + at_keys
        self.term.store.audit(event, op, detail)

    # choosing an item
    def type(self, ev):
        self.error = None
        self.note = None
        self.field.key(ev.get("key"))

    def item_cancel(self, ev):
        """CANCEL clears a typed PLU; with nothing typed it leaves."""
        self.error = None
        self.note = None
        if self.field.value:
            self.field.clear()
            return "item"
        return self.leave()

    def leave(self):
        self.finish(None)
        return None

    def refuse(self, rows):
        self.error = rows
        self.term.beep("error")

    def scan_failed(self, ev):
        self.error = [("scan_failed", {}), ("scan_again", {})]
        self.note = None
        return "item"

    def scanned(self, ev):
        return self.lookup_code(ev.get("code"), ev.get("symbology"))

    def lookup_code(self, code, symbology=None):
        self.field.clear()
        self.note = None
        try:
            item, why = find_by_code(self.term, code, symbology)
        except Exception as exc:
            return self.failed(exc, "item")
        if item is None:
            self.refuse(why)
            return "item"
        return self.chosen(item)

    def plu_done(self, ev):
        plu = self.field.value
        if not plu:
            return None
        self.field.clear()
        self.note = None
        try:
            item = self.term.catalogue.find_by_plu(plu)
        except Exception as exc:
            return self.failed(exc, "item")
        if item is None:
            self.refuse([("ct_no_plu", {"plu": plu})])
            return "item"
        return self.chosen(item)

    def chosen(self, item):
        """An item was found: the flow's next state."""
        self.item = item
        self.error = None
        return "item"

    def failed(self, exc, back):
        """A catalogue call refused: its words, and back to a state; a storage fault:
        the terminal's fault screen has taken over."""
        if not catalogue_refusal(exc):
            if is_fault(exc):
                return None
            raise exc
        self.refuse(self.why(exc))
        return None if self.finished else back

    def why(self, exc):
        item = self.item or {}
        if isinstance(exc, StockShort):
            return [("inv_short", {}), ("inv_on_hand", {"n": qty_text(item, exc.on_hand)})]
        if isinstance(exc, ItemDamaged):
            return [("inv_damaged", {}), ("inv_damaged_hint", {})]
        if isinstance(exc, UnknownItem):
            return [("ct_not_found", {})]
        if isinstance(exc, DuplicateBarcode):
            return [("inv_code_taken", {})]
        if isinstance(exc, BadItem) and exc.field == "plu":
            return [("inv_no_free_plu", {})]
        # anything else the catalogue refused: its short code, for whoever supports it
        return [("inv_not_saved", {}), ("=", {"text": exc.what})]

    # drawing
    def texts(self, rows):
        out = []
        for msg_id, values in rows:
            out.append(values["text"] if msg_id == "=" else self.t(msg_id, **values))
        return out

    def show_item(self, title):
        """The item state: what went wrong, or what was just done, or the prompt; the
        typed PLU under it."""
        t = self.t
        if self.error:
            rows, alert = self.texts(self.error), "error"
        elif self.note:
            rows, alert = self.texts(self.note), "ok"
        else:
            rows, alert = [t("ct_scan")], None
        rows = [one_row(r) for r in rows[:2]]
        self.term.show(title, rows, t("footer_entry"), masked=self.field.shown(), alert=alert)

    def scroll_up(self, ev):
        self.top = max(0, self.top - 1)

    def scroll_down(self, ev):
        self.top = max(0, min(len(self.rows) - BODY_ROWS, self.top + 1))

    def show_rows(self, title, footer, alert=None):
        """self.rows, scrolled by UP/DOWN when more than fit."""
        self.top = max(0, min(self.top, len(self.rows) - BODY_ROWS))
        self.term.show(title, self.rows, footer, alert=alert,
                       top=self.top if len(self.rows) > BODY_ROWS else -1)


# -- look up ----------------------------------------------------------------------------
class LookupFlow(ItemStep):
    """An item's name, price, stock and level; UP/DOWN its last movements. No approval:
    anyone logged in may look."""
    NAME = "stock_lookup"
    INITIAL = "item"
    STATES = _states(ItemStep.ITEM_STATES, {
        "show": {"timeout": "menu_timeout_s",
                 "on": {keys.UP: "scroll_up", keys.DOWN: "scroll_down", "scan": "scanned",
                        keys.ENTER: "again", keys.CANCEL: "again"}},
    })

    def __init__(self, term, code=None, symbology=None):
        ItemStep.__init__(self, term)
        self.first = (code, symbology) if code is not None else None

    def start(self):
        Flow.start(self)
        if self.first is not None and not self.finished:
            code, symbology = self.first
            self.first = None
            nxt = self.lookup_code(code, symbology)
            if nxt is not None and not self.finished:
                self.goto(nxt)

    def chosen(self, item):
        self.item = item
        self.error = None
        try:
            self.rows = self.describe(item)
        except Exception as exc:
            return self.failed(exc, "item")
        self.top = 0
        return "show"

    def describe(self, item):
        t = self.t
        cat = self.term.catalogue
        currency = self.term.config["money"]["currency"]
        rows = rows_of(item_name(t, item))
        rows += rows_of(price_text(t, item, item["price"], currency))
        rows += rows_of(t("inv_on_hand", n=qty_text(item, cat.stock(item["id"]))))
        level = item.get("low_stock")
        rows += rows_of(t("inv_low_none") if level is None
                        else t("inv_low_at", n=qty_text(item, level)))
        if not item.get("active", True):
            rows.append(t("inv_inactive"))
        mark = low_stock_mark(self.term)
        hint = mark.seen if mark.catalogue is cat and mark.seen is not None else 0
        moves = last_movements(cat, item["id"], MOVES_SHOWN, newest_movement(cat, hint))
        rows.append(t("inv_moves") if moves else t("inv_no_moves"))
        for m in moves:
            reason = t(REASON_IDS.get(m["reason"], "inv_r_other"))
            rows += rows_of(t("inv_mv", reason=reason, delta=signed_text(item, m["delta"])))
            rows += rows_of(t("inv_mv_when", when=_local_when(self.term, m.get("utc")),
                              op=operator_text(t, m.get("operator"))))
        return rows

    def again(self, ev):
        self.item = None
        self.rows = []
        return "item"

    def render(self):
        t = self.t
        if self.state == "item":
            self.show_item(t("inv_lookup_title"))
        elif self.state == "show":
            self.show_rows(t("inv_item_title", plu=self.item["plu"]), t("footer_back"))


# -- receive, count, adjust ------------------------------------------------------------------
class MoveFlow(ItemStep):
    """kind "received" (goods in), "counted" (what is on the shelf) or "adjust" (a
    reason of WRITE_OFFS, then goods out). Each item: quantity, before -> after,
    ENTER writes it; then the next item."""
    NAME = "stock_move"
    INITIAL = "supervisor"
    STATES = _states(ItemStep.ITEM_STATES, {
        "reason": {"timeout": ENTRY,
                   "on": {keys.UP: "reason_up", keys.DOWN: "reason_down", "digit": "reason_pick",
                          keys.ENTER: "reason_done", keys.CANCEL: "cancel"}},
        "qty": {"timeout": ENTRY,
                "on": {"digit": "type_qty", keys.BKSP: "type_qty", keys.CLEAR: "type_qty",
                       keys.ENTER: "qty_done", keys.CANCEL: "to_item"}},
        "confirm": {"timeout": ENTRY,
                    "on": {keys.ENTER: "commit", keys.CANCEL: "to_qty",
                           keys.UP: "scroll_up", keys.DOWN: "scroll_down"}},
    })
    PURPOSES = {"received": "inv_menu_receive", "counted": "inv_menu_count",
                "adjust": "inv_menu_adjust"}
    TITLES = {"received": "inv_receive_title", "counted": "inv_count_title",
              "adjust": "inv_adjust_title"}

    def __init__(self, term, kind):
        ItemStep.__init__(self, term)
        self.kind = kind
        self.PURPOSE = self.PURPOSES[kind]
        self.FIRST = "reason" if kind == "adjust" else "item"
        self.reason = None if kind == "adjust" else kind
        self.choice = 0
        self.qty = None
        self.before = 0
        self.after = 0

    # the reason of a write-off
    def reason_up(self, ev):
        self.choice = (self.choice - 1) % len(WRITE_OFFS)

    def reason_down(self, ev):
        self.choice = (self.choice + 1) % len(WRITE_OFFS)

    def reason_pick(self, ev):
        name = ev.get("key")
        if name in ("0", "00") or int(name) > len(WRITE_OFFS):
            return None
        self.choice = int(name) - 1
        return self.reason_done(ev)

    def reason_done(self, ev):
        self.reason = WRITE_OFFS[self.choice]
        self.note = None
        return "item"

    def leave(self):
        if self.kind == "adjust":        # back to the reasons, then out
            self.note = None
            return "reason"
        self.finish(None)
        return None

    # the item and its quantity
    def chosen(self, item):
        self.item = item
        self.error = None
        self.field = Field(QTY_DIGITS)
        return "qty"

    def to_item(self, ev):
        self.field = Field(PLU_DIGITS)
        self.error = None
        return "item"

    def type_qty(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def limit(self, on_hand):
        """The most this movement may be: the catalogue's bounds for a movement and for
        what is on hand after it (firmware/retail/catalogue.py QTY_MAX)."""
        if self.kind == "counted":
            return QTY_MAX
        if self.kind == "received":
            return min(QTY_MAX, QTY_MAX - on_hand)
        return min(QTY_MAX, QTY_MAX + on_hand)

    def qty_done(self, ev):
        item = self.item
        typed = self.field.value
        if not typed:
            self.refuse([("inv_type_qty", {})])
            return None
        n = int(typed)
        if n <= 0 and self.kind != "counted":
            self.refuse([("ct_weight_zero" if is_kg(item) else "ct_qty_zero", {})])
            return None
        try:
            on_hand = self.term.catalogue.stock(item["id"])
        except Exception as exc:
            return self.failed(exc, "qty")
        if self.kind == "adjust" and n > on_hand and \
                not getattr(self.term.catalogue, "allow_negative_stock", True):
            self.refuse([("inv_short", {}), ("inv_on_hand", {"n": qty_text(item, on_hand)})])
            return None
        most = self.limit(on_hand)
        if n > most:
            self.refuse([("inv_max", {"n": qty_text(item, max(0, most))})])
            return None
        self.qty = n
        self.before = on_hand
        if self.kind == "counted":
            self.after = n
        elif self.kind == "received":
            self.after = on_hand + n
        else:
            self.after = on_hand - n
        self.rows = self.confirm_rows()
        self.top = 0
        return "confirm"

    def delta(self):
        return self.after - self.before

    def confirm_rows(self):
        t = self.t
        item = self.item
        rows = [name_row(t, item)]
        reason = t(REASON_IDS[self.reason])
        unit = " kg" if is_kg(item) else ""
        rows += rows_of(t("inv_mv", reason=reason, delta=signed_text(item, self.delta()) + unit))
        # the numbers alone: the unit is on the row above, and both fit one row
        rows += rows_of(t("inv_before_after", a=signed_text(item, self.before).lstrip("+"),
                          b=signed_text(item, self.after).lstrip("+")))
        return rows

    def to_qty(self, ev):
        self.error = None
        return "qty"

    def commit(self, ev):
        item = self.item
        cat = self.term.catalogue
        op = self.operator_id()
        try:
            if self.kind == "counted":
                delta = cat.count(item["id"], self.qty, op, REF)
                on_hand = self.qty
            else:
                delta = self.delta()
                on_hand = cat.record_movement(item["id"], delta, self.reason, op, REF)
        except Exception as exc:
            return self.failed(exc, "qty")
        self.audit("stock_" + self.reason, "PLU %d %s%d -> %d" % (
            item["plu"], "+" if delta >= 0 else "", delta, on_hand))
        self.term.beep("ok")
        saved = "inv_count_same" if self.kind == "counted" and not delta else "inv_saved"
        self.note = [(saved, {}), ("inv_on_hand", {"n": qty_text(item, on_hand)})]
        self.item = None
        self.field = Field(PLU_DIGITS)
        return "item"

    def render(self):
        t = self.t
        s = self.state
        title = t(REASON_IDS[self.reason]) if self.kind == "adjust" and self.reason \
            else t(self.TITLES[self.kind])
        if s == "reason":
            rows = ["%d %s" % (i + 1, t(REASON_IDS[r])) for i, r in enumerate(WRITE_OFFS)]
            self.term.show(t("inv_adjust_title"), rows, t("footer_menu"), selected=self.choice)
        elif s == "item":
            self.show_item(title)
        elif s == "qty":
            if self.error:
                rows, alert = self.texts(self.error), "error"
            else:
                rows = [name_row(t, self.item), t(self.prompt())]
                alert = None
            rows = [one_row(r) for r in rows[:2]]
            self.term.show(title, rows, t("footer_entry"), masked=self.field.shown(),
                           alert=alert)
        elif s == "confirm":
            self.show_rows(title, t("footer_confirm"))

    def prompt(self):
        kg = is_kg(self.item)
        if self.kind == "received":
            return "inv_g_received" if kg else "inv_qty_received"
        if self.kind == "counted":
            return "inv_g_counted" if kg else "inv_qty_counted"
        return "inv_g_out" if kg else "inv_qty_out"


# -- change a price ----------------------------------------------------------------------
class PriceEntry:
    """A price typed on the keypad (PriceFlow, AddItemFlow): self.amount, self.currency."""

    def most(self):
        """The highest price: the catalogue's, and [retail] max_line_amount (the highest
        a line may be, and so a unit price)."""
        return min(PRICE_MAX, self.term.config["retail"]["max_line_amount"])

    def to_price(self, ev):
        self.error = None
        return "price"

    def type_price(self, ev):
        self.error = None
        self.amount.key(ev.get("key"))
        if self.amount.too_big:         # refused as it is typed, with the limit
            self.refuse([("cart_price", {"limit": format_amount(self.most(), self.currency)})])


class PriceFlow(PriceEntry, ItemStep):
    """A supervisor changes an item's price: the new price, old -> new, ENTER."""
    NAME = "stock_price"
    INITIAL = "supervisor"
    PURPOSE = "inv_menu_price"
    STATES = _states(ItemStep.ITEM_STATES, {
        "price": {"timeout": ENTRY,
                  "on": {"digit": "type_price", keys.BKSP: "type_price",
                         keys.CLEAR: "type_price", keys.ENTER: "price_done",
                         keys.CANCEL: "to_item"}},
        "confirm": {"timeout": ENTRY,
                    "on": {keys.ENTER: "commit", keys.CANCEL: "to_price"}},
    })

    def __init__(self, term):
        ItemStep.__init__(self, term)
        self.currency = term.config["money"]["currency"]
        self.amount = None

    def chosen(self, item):
        self.item = item
        self.error = None
        self.amount = AmountField(self.currency, self.most())
        return "price"

    def to_item(self, ev):
        self.error = None
        return "item"

    def price_done(self, ev):
        if self.amount.value <= 0:
            self.refuse([("err_amount_zero", {})])
            return None
        if self.amount.value == self.item["price"]:
            self.refuse([("inv_price_same", {})])
            return None
        return "confirm"

    def commit(self, ev):
        item = self.item
        new = self.amount.value
        try:
            old = self.term.catalogue.set_price(item["id"], new, self.operator_id())
        except Exception as exc:
            return self.failed(exc, "price")
        self.audit("price_changed", "PLU %d %d -> %d" % (item["plu"], old, new))
        self.term.beep("ok")
        item["price"] = new
        self.note = [("inv_saved", {}), ("=", {"text": price_text(self.t, item, new, self.currency)})]
        self.item = None
        return "item"

    def render(self):
        t = self.t
        s = self.state
        title = t("inv_price_title")
        if s == "item":
            self.show_item(title)
        elif s == "price":
            if self.error:
                rows, alert = self.texts(self.error), "error"
            else:
                now = format_amount(self.item["price"], self.currency)
                rows = [name_row(t, self.item),
                        t("inv_price_now_kg" if is_kg(self.item) else "inv_price_now", price=now)]
                alert = None
            rows = [one_row(r) for r in rows[:2]]
            self.term.show(title, rows, t("footer_entry"), masked=self.amount.shown(), alert=alert)
        elif s == "confirm":
            old = format_amount(self.item["price"], self.currency)
            new = format_amount(self.amount.value, self.currency)
            unit = "/kg" if is_kg(self.item) else ""
            self.rows = [name_row(t, self.item)]
            self.rows += rows_of(t("inv_before_after", a=old, b=new + unit))
            self.show_rows(title, t("footer_confirm"))


# -- the low-stock list ---------------------------------------------------------------------
class LowStockFlow(ItemStep):
    """The items at or under their level, by PLU: name, then on hand / level."""
    NAME = "stock_low"
    INITIAL = "list"
    STATES = {
        "list": {"enter": "load", "timeout": "menu_timeout_s",
                 "on": {keys.UP: "scroll_up", keys.DOWN: "scroll_down",
                        keys.ENTER: "cancel", keys.CANCEL: "cancel"}},
    }

    def load(self):
        t = self.t
        try:
            low = self.term.catalogue.low_stock()
        except Exception as exc:
            if catalogue_refusal(exc):
                low = []
            elif is_fault(exc):
                return None
            else:
                raise
        if not low:
            self.rows = [t("inv_low_empty")]
            return None
        self.rows = [t("inv_low_head")]
        for item, on_hand in low:
            self.rows.append(name_row(t, item))
            text = t("inv_low_row", n=qty_text(item, on_hand).replace(" kg", ""),
                     level=qty_text(item, item["low_stock"]))
            self.rows.append("  " + text if display_width(text) + 2 <= ROW_COLUMNS else text)
        self.top = 0
        return None

    def render(self):
        if self.state == "list":
            self.show_rows(self.t("inv_low_title"), self.t("footer_back"))


# -- an item a scan did not find ---------------------------------------------------------
class AddItemFlow(PriceEntry, ItemStep):
    """AddItemFlow(term, code, symbology=None): a supervisor adds the item of a barcode
    the catalogue does not know, from the cart. Unit (each / kg), price, confirm; it is
    named "Item <code>" in English ("商品 <code>" in Chinese), since a keypad types no
    names (the merchant names it later by CSV export and import), with the next free
    PLU, the barcode, the [retail] default_tax_rate and no stock.
    Finishes with the new item (the catalogue's dict), or None: cancelled or refused
    (a code that is no valid barcode, a scale label, no catalogue). A code found by
    then (the same barcode added meanwhile) is offered as it is: ENTER returns it."""
    NAME = "add_item"
    INITIAL = "check"
    PURPOSE = "inv_add_title"
    FIRST = "unit"
    UNITS = (("inv_unit_each", "each"), ("inv_unit_kg", KG))
    STATES = _states(ItemStep.ITEM_STATES, {
        "check": {"enter": "check", "timeout": None, "on": {}},
        "refused": {"timeout": ENTRY,
                    "on": {keys.ENTER: "cancel", keys.CANCEL: "cancel", "timeout": "cancel"}},
        "known": {"timeout": ENTRY,
                  "on": {keys.ENTER: "take_known", keys.CANCEL: "cancel"}},
        "unit": {"timeout": ENTRY,
                 "on": {keys.UP: "unit_move", keys.DOWN: "unit_move", "digit": "unit_pick",
                        keys.ENTER: "unit_done", keys.CANCEL: "cancel"}},
        "price": {"timeout": ENTRY,
                  "on": {"digit": "type_price", keys.BKSP: "type_price",
                         keys.CLEAR: "type_price", keys.ENTER: "price_done",
                         keys.CANCEL: "to_unit"}},
        "confirm": {"timeout": ENTRY,
                    "on": {keys.ENTER: "commit", keys.CANCEL: "to_price"}},
    })

    def __init__(self, term, code, symbology=None):
        ItemStep.__init__(self, term)
        self.code = code or ""
        self.symbology = symbology
        self.key = None
        self.unit = 0
        self.currency = term.config["money"]["currency"]
        self.amount = AmountField(self.currency, self.most())
        self.plu = None

    def check(self):
        cat = self.term.catalogue
        if cat is None:
            self.error = [("ct_no_catalogue", {}), ("inv_import_first", {})]
            return "refused"
        label = barcode.parse_scale(self.code, self.term.config["retail"]["scale_rules"],
                                    self.currency)
        if label is not None:           # a weighed item is found by the label's PLU
            self.error = [("inv_scale_label", {}), ("inv_label_plu", {"plu": label["plu"]})]
            return "refused"
        found = barcode.classify(self.code, self.symbology)
        if found.kind == "receipt":
            self.error = [("ct_receipt", {})]
            return "refused"
        if not found.ok:
            self.error = [("ct_bad_barcode", {}), ("scan_again", {})]
            return "refused"
        self.key = found.key
        try:
            item, why = find_by_code(self.term, self.code, self.symbology)
        except Exception as exc:
            self.failed(exc, "refused")
            return None if self.finished else "refused"
        if item is not None:
            self.item = item
            return "known"
        return "supervisor"

    def take_known(self, ev):
        self.finish(self.item)

    def unit_move(self, ev):
        self.unit = 1 - self.unit

    def unit_pick(self, ev):
        if ev.get("key") in ("1", "2"):
            self.unit = int(ev.get("key")) - 1
            return self.unit_done(ev)
        return None

    def unit_done(self, ev):
        self.error = None
        return "price"

    def to_unit(self, ev):
        self.error = None
        return "unit"

    def price_done(self, ev):
        if self.amount.value <= 0:
            self.refuse([("err_amount_zero", {})])
            return None
        try:
            last = self.term.catalogue.items(max(0, self.term.catalogue.item_count() - 1), 1)
        except Exception as exc:
            return self.failed(exc, "price")
        # the PLU add_item will give it (the highest + 1); "?" when the highest item's
        # record is damaged and left out (add_item still finds the right one)
        self.plu = (last[0]["plu"] + 1) if last else (1 if not self.term.catalogue.item_count() else "?")
        if self.plu != "?" and self.plu > PLU_MAX:
            self.refuse([("inv_no_free_plu", {})])
            return None
        return "confirm"

    def names(self):
        from firmware.ui.i18n import CATALOGUES
        code = self.code.strip()        # a name has no spaces at its ends
        en = CATALOGUES["en"]["inv_new_name"].format(code=code)
        zh = CATALOGUES["zh"].get("inv_new_name", "").format(code=code)
        return en, zh

    def commit(self, ev):
        cat = self.term.catalogue
        name_en, name_zh = self.names()
        unit = self.UNITS[self.unit][1]
        try:
            item_id = cat.add_item(None, name_en, self.amount.value, name_zh=name_zh,
                                   tax_rate=self.term.config["retail"]["default_tax_rate"],
                                   unit=unit, barcodes=[self.key], operator=self.operator_id())
            item = cat.get(item_id)
        except Exception as exc:
            return self.failed(exc, "confirm")
        self.audit("item_added", "PLU %d code %s price %d %s" % (
            item["plu"], self.key, item["price"], unit))
        self.term.beep("ok")
        self.finish(item)
        return None

    def render(self):
        t = self.t
        s = self.state
        title = t("inv_add_title")
        code = one_row(self.code)
        if s == "refused":
            self.term.show(title, [one_row(r) for r in self.texts(self.error)[:2]] + [code],
                           t("footer_ok"), alert="error")
        elif s == "known":
            self.term.show(title, [t("inv_known", plu=self.item["plu"]),
                                   name_row(t, self.item)],
                           t("footer_entry"), alert="warn")
        elif s == "unit":
            rows = [code] + ["%d %s" % (i + 1, t(u[0])) for i, u in enumerate(self.UNITS)]
            self.term.show(title, rows, t("footer_menu"), selected=self.unit + 1)
        elif s == "price":
            if self.error:
                rows, alert = self.texts(self.error), "error"
            else:
                rows = [code, t("inv_price_kg" if self.unit else "inv_price_each")]
                alert = None
            rows = [one_row(r) for r in rows[:2]]
            self.term.show(title, rows, t("footer_entry"), masked=self.amount.shown(), alert=alert)
        elif s == "confirm":
            if self.error:
                rows, alert = [code] + self.texts(self.error)[:2], "error"
            else:
                item = {"unit": self.UNITS[self.unit][1]}
                rows = [code, price_text(t, item, self.amount.value, self.currency),
                        t("inv_new_plu", plu=self.plu)]
                alert = None
            self.term.show(title, [one_row(r) for r in rows], t("footer_confirm"),
                           alert=alert)
