"""Selling items: the cart, built by scans, typed PLUs and keyed amounts, then paid.

A scan on the idle screen (or F1 there, to type a PLU) opens the cart. On the cart:

  scan        adds the item (a scale label's price or weight comes with it)
  digits      a PLU; ENTER adds it (a kg item then asks for its weight in grams)
  ENTER       with nothing typed: pay (the sale's methods: card, cash)
  UP/DOWN     choose a line          F1  its quantity (the multiply key)
  F2          void the line          F3  a keyed amount (a "misc" line)
  MENU        the cart's menu: 1 line discount, 2 cart discount, 3 price (of the
              chosen line), 4 browse the categories, 5 member, 6 redeem points
  CANCEL      clears what is typed; on an empty entry asks to abandon the cart

An unknown barcode says "Not found" with its code; ENTER there keys a price for it
(a misc line named by the code) when [retail] keyed_unknown allows it, F4 adds the item
to the catalogue (firmware/flows/inventory.py, which asks a supervisor) and sells it.

Discounts and price overrides above the [retail] limits (max_discount_percent,
max_discount_amount, override_needs_supervisor) need a supervisor's PIN, asked on the
spot unless a supervisor is the one logged in; every one is in the audit log.

The cart's figures are firmware/retail/cart.py's; the payment is the sale flow's
(firmware/flows/sale.py), which writes the cart into the journal record, so the
receipt is itemised from what was recorded. Stock goes down once the payment is
approved (firmware/retail/stock.py), and again never (the record says it was taken);
a member's points move then too (firmware/retail/loyalty.py apply).

Automatic promotions (firmware/retail/promotions.py) come from the catalogue
(promotions() of catalogue.db) when the cart opens, priced at the terminal's local time
at every change; a row shows what the line comes to after its promotion and discount.
A member card or member QR scanned on the cart opens the member's screen
(firmware/flows/members.py) instead of looking for an item.
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.core.money import format_amount
from firmware.flows.common import AmountField, Field, MenuFlow
from firmware.flows.supervisor import SupervisorFlow
from firmware.retail import barcode
from firmware.retail.cart import Cart, CartError, format_weight
from firmware.retail.tax import PERCENT, WHOLE, format_rate, round_div
from firmware.ui.receipt import display_width, fit
from firmware.ui.screen import BODY_ROWS, ROW_COLUMNS

ENTRY = "entry_timeout_s"
PLU_MAX = 13
QTY_MAX = 4
GRAMS_MAX = 5


class CartFlow(Flow):
    NAME = "cart"
    INITIAL = "cart"
    STATES = {
        "cart": {"timeout": "idle_logout_s",
                 "on": {"scan": "scanned", "scan_error": "scan_failed",
                        "digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                        keys.ENTER: "enter", keys.UP: "up", keys.DOWN: "down",
                        keys.F1: "ask_qty", keys.F2: "ask_void", keys.F3: "ask_misc",
                        keys.MENU: "open_menu",
                        keys.CANCEL: "cancel_key", "timeout": "abandon"}},
        # an unknown barcode: "Not found" and its code, and what can be done about it
        "unknown": {"timeout": ENTRY,
                    "on": {"scan": "scanned", "scan_error": "scan_failed",
                           "digit": "unknown_digit", keys.ENTER: "unknown_enter",
                           keys.F4: "unknown_add", keys.CANCEL: "back", keys.BKSP: "back",
                           keys.CLEAR: "back", "timeout": "back"}},
        "keyed": {"timeout": ENTRY,
                  "on": {"digit": "type_amount", keys.BKSP: "type_amount",
                         keys.CLEAR: "type_amount", keys.ENTER: "keyed_done",
                         keys.CANCEL: "keyed_back", "timeout": "back"}},
        "weight": {"timeout": ENTRY,
                   "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                          keys.ENTER: "weight_done", keys.CANCEL: "back", "timeout": "back"}},
        "qty": {"timeout": ENTRY,
                "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                       keys.ENTER: "qty_done", keys.CANCEL: "back", "timeout": "back"}},
        "void_q": {"timeout": ENTRY,
                   "on": {keys.ENTER: "void_done", keys.CANCEL: "back", "timeout": "back"}},
        "misc": {"timeout": ENTRY,
                 "on": {"digit": "type_amount", keys.BKSP: "type_amount",
                        keys.CLEAR: "type_amount", keys.ENTER: "misc_done",
                        keys.CANCEL: "back", "timeout": "back"}},
        "abandon_q": {"timeout": ENTRY,
                      "on": {keys.ENTER: "abandon", keys.CANCEL: "back", "timeout": "back"}},
        # the sale flow runs above this state and takes the payment
        "paying": {"timeout": None, "on": {}},
        # the cart's menu (and what it opens), or the adding of an unknown item, runs
        # above this state; their own states time out
        "menu": {"timeout": None, "on": {}},
        "adding": {"timeout": None, "on": {}},
    }

    def __init__(self, term, scan=None, symbology=None):
        Flow.__init__(self, term)
        self.cart = Cart.from_config(term.config)
        self.field = Field(PLU_MAX)
        self.amount = AmountField(self.cart.currency, term.config["money"]["max_amount"])
        self.selected = -1              # the line UP/DOWN chose; -1: the newest
        self.error = None               # (message id, values) shown in place of a row
        self.pending = None             # the kg item waiting for its weight
        self.unknown = None             # (code, symbology) of the barcode not found
        self.child = None               # the cart menu or the adding of an item, above
        self.first = (scan, symbology) if scan is not None else None
        pricer = make_pricer(term)
        if pricer is not None:
            self.cart.set_pricer(pricer)

    def start(self):
        Flow.start(self)
        if self.first is not None and not self.finished:
            code, symbology = self.first
            self.first = None
            nxt = self.add_scanned(code, symbology)
            if nxt is not None and not self.finished:
                self.goto(nxt)

    # -- adding ---------------------------------------------------------------------
    def scanned(self, ev):
        if self.field.value:            # a scan while a PLU is typed: the scan wins
            self.field.clear()
        self.unknown = None
        return self.add_scanned(ev.get("code"), ev.get("symbology"))

    def scan_failed(self, ev):
        self.unknown = None
        self.error = ("scan_failed", {})    # the terminal gave the error tone already
        return "cart"

    def add_scanned(self, code, symbology=None):
        code = code or ""
        if _member_code(code):
            return self._member_scan(code)
        catalogue = self.term.catalogue
        if catalogue is None:
            return self._refuse("ct_no_catalogue", {})
        rules = self.term.config["retail"]["scale_rules"]
        label = barcode.parse_scale(code, rules, self.cart.currency)
        if label is not None:
            item = catalogue.find_by_plu(label["plu"])
            if item is None or not item.get("active", True):
                return self._refuse("ct_not_found", {"code": code})
            if label.get("price") is not None:
                return self._add(item, price=label["price"], barcode=code)
            return self._add(item, grams=label["grams"], barcode=code)
        found = barcode.classify(code, symbology)
        if found.kind == "receipt":     # a receipt brought back: refunds are elsewhere
            return self._refuse("ct_receipt", {})
        if not found.ok:
            return self._refuse("ct_bad_barcode", {})
        item = catalogue.find_by_barcode(found.key)
        for key in found.alt_keys:      # an 8-digit code read both ways: the other one
            if item is None:
                item = catalogue.find_by_barcode(key)
        if item is None:
            self.unknown = (code, symbology)
            self.error = None
            self.term.beep("error")
            return "unknown"
        if not item.get("active", True):
            return self._refuse("ct_not_found", {"code": code})
        return self._add(item, barcode=code)

    def _add(self, item, grams=None, price=None, barcode=None):
        if item.get("unit") == "kg" and grams is None and price is None:
            self.pending = item
            self.field = Field(GRAMS_MAX)
            return "weight"
        more = grams if grams is not None else 1
        if price is not None and item.get("unit") == "kg" and item.get("price"):
            more = round_div(price * 1000, item["price"])   # the label's weight, as the cart
        if self._short(item, more):
            return self._refuse("ct_no_stock", {"n": self._on_hand_text(item)})
        try:
            self.cart.add_item(item, grams=grams, price=price, barcode=barcode)
        except CartError as exc:
            return self._cart_error(exc)
        self.selected = -1
        self.error = None
        self.term.beep("key")
        return "cart"

    def _short(self, item, more):
        """True when [retail] allow_negative_stock is off and the cart would then hold
        more of the item than is on hand: refused here, before it is sold (after the
        payment the goods are in the customer's hand whatever the books say)."""
        catalogue = self.term.catalogue
        if item.get("id") is None or getattr(catalogue, "allow_negative_stock", True):
            return False
        held = 0
        for index, line in self.cart.active():
            if line.item_id == item["id"]:
                held += line.stock_quantity()
        return held + more > catalogue.stock(item["id"])

    def _on_hand_text(self, item):
        n = max(0, self.term.catalogue.stock(item["id"]))
        return format_weight(n) if item.get("unit") == "kg" else "%d" % n

    def _refuse(self, msg_id, values, state="cart"):
        self.error = (msg_id, values)
        self.term.beep("error")
        return state

    def _cart_error(self, exc, state="cart"):
        return self._refuse(exc.msg_id, {"limit": exc.limit_text(self.cart.currency)}, state)

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def enter(self, ev):
        plu = self.field.value
        if plu:
            self.field.clear()
            if self.term.catalogue is None:
                return self._refuse("ct_no_catalogue", {})
            item = self.term.catalogue.find_by_plu(plu)
            if item is None or not item.get("active", True):
                return self._refuse("ct_no_plu", {"plu": plu})
            return self._add(item)
        if self.cart.empty():
            return self._refuse("ct_empty", {})
        return self.pay()

    def weight_done(self, ev):
        grams = int(self.field.value or "0")
        self.field = Field(PLU_MAX)
        item, self.pending = self.pending, None
        if grams <= 0:
            return self._refuse("ct_weight_zero", {})
        return self._add(item, grams=grams)

    # -- changing lines -------------------------------------------------------------
    def _chosen(self):
        active = [i for i, line in self.cart.active()]
        if not active:
            return None
        if self.selected in active:
            return self.selected
        return active[-1]

    def up(self, ev):
        active = [i for i, line in self.cart.active()]
        if active:
            pos = active.index(self._chosen())
            self.selected = active[max(0, pos - 1)]

    def down(self, ev):
        active = [i for i, line in self.cart.active()]
        if active:
            pos = active.index(self._chosen())
            self.selected = active[min(len(active) - 1, pos + 1)]

    def ask_qty(self, ev):
        index = self._chosen()
        if index is None:
            return self._refuse("ct_empty", {})
        if self.cart.line(index).weighed():
            return self._refuse("ct_weighed_qty", {})
        self.selected = index
        self.field = Field(QTY_MAX)
        return "qty"

    def qty_done(self, ev):
        qty = int(self.field.value or "0")
        self.field = Field(PLU_MAX)
        if qty <= 0:
            return self._refuse("ct_qty_zero", {})
        line = self.cart.line(self.selected)
        item = {"id": line.item_id, "unit": "each"}
        if qty > line.quantity and self._short(item, (qty - line.quantity) * (
                line.stock_quantity() // max(1, line.quantity))):
            return self._refuse("ct_no_stock", {"n": self._on_hand_text(item)})
        try:
            self.cart.set_quantity(self.selected, qty)
        except CartError as exc:
            return self._cart_error(exc)
        self.error = None
        return "cart"

    def ask_void(self, ev):
        index = self._chosen()
        if index is None:
            return self._refuse("ct_empty", {})
        self.selected = index
        return "void_q"

    def void_done(self, ev):
        op = self.term.operator["id"] if self.term.operator else ""
        try:
            self.cart.void(self.selected, op)
        except CartError as exc:
            return self._cart_error(exc)
        self.selected = -1
        self.error = None
        return "cart"

    def ask_misc(self, ev):
        self.amount = AmountField(self.cart.currency, self.term.config["money"]["max_amount"])
        self.error = None
        return "misc"

    def type_amount(self, ev):
        self.error = None
        self.amount.key(ev.get("key"))
        if self.amount.too_big:         # refused as it is typed, with the limit
            self._refuse("cart_price", {"limit": format_amount(self.amount.max_minor,
                                                               self.cart.currency)})

    def misc_done(self, ev):
        if self.amount.value <= 0:
            return self._refuse("err_amount_zero", {})
        try:
            self.cart.add_misc(self.amount.value)
        except CartError as exc:
            return self._cart_error(exc)
        self.error = None
        return "cart"

    def back(self, ev):
        self.field = Field(PLU_MAX)
        self.pending = None
        self.unknown = None
        return "cart"

    # -- the cart's menu (MENU) -----------------------------------------------------
    def open_menu(self, ev):
        self.field.clear()
        self.error = None
        self._push(CartMenuFlow(self.term, self.cart, self._chosen()), "menu")
        return None

    def _member_scan(self, code):
        """A member card or QR: the member's screen, handed the code (ENTER there puts
        the member on the cart)."""
        from firmware.flows.members import MemberFlow
        flow = MemberFlow(self.term, self.cart)
        self._push(flow, "menu")
        if not flow.finished:
            nxt = flow.take_code(code)
            if nxt is not None and not flow.finished:
                flow.goto(nxt)
        return None

    def _push(self, flow, state):
        """A flow above the cart, the cart waiting in state (no time limit there: the
        flow above has its own)."""
        self.child = flow
        self.goto(state)
        self.term.push(flow)

    # -- an unknown barcode ---------------------------------------------------------
    def unknown_digit(self, ev):
        """A digit: the cashier goes on with a PLU instead."""
        self.unknown = None
        self.type(ev)
        return "cart"

    def unknown_enter(self, ev):
        """ENTER keys a price for the code when the merchant allows it; else it only
        puts the "Not found" away (it never pays from here)."""
        if not self.term.config["retail"]["keyed_unknown"]:
            return self.back(ev)
        self.amount = AmountField(self.cart.currency, self._max_price())
        self.error = None
        return "keyed"

    def _max_price(self):
        return min(self.term.config["money"]["max_amount"], self.cart.limits["max_line_amount"])

    def keyed_back(self, ev):
        self.error = None
        return "unknown"

    def keyed_done(self, ev):
        if self.amount.value <= 0:
            return self._refuse("err_amount_zero", {}, "keyed")
        code = self.unknown[0]
        try:
            self.cart.add_misc(self.amount.value, name_en=code)
        except CartError as exc:
            return self._cart_error(exc, "keyed")
        # for the merchant, who may add the item to the catalogue later
        self.term.store.audit("unknown_keyed", self._me(), "%s %s" % (
            code, format_amount(self.amount.value, self.cart.currency)))
        self.unknown = None
        self.selected = -1
        self.error = None
        self.term.beep("key")
        return "cart"

    def unknown_add(self, ev):
        """F4: the item goes into the catalogue (a supervisor, its unit and price: the
        inventory flow's questions) and then into the cart as a scan would."""
        try:
            from firmware.flows.inventory import AddItemFlow
        except ImportError:
            return self._refuse("ct_add_missing", {}, "unknown")
        code, symbology = self.unknown
        self._push(AddItemFlow(self.term, code, symbology), "adding")
        return None

    def _me(self):
        return self.term.operator["id"] if self.term.operator else ""

    # -- ending ---------------------------------------------------------------------
    def cancel_key(self, ev):
        if self.field.value:
            self.field.clear()
            self.error = None
            return None
        if self.cart.empty():
            self.finish(None)
            return None
        return "abandon_q"

    def abandon(self, ev):
        if not self.cart.empty():
            op = self.term.operator["id"] if self.term.operator else ""
            self.term.store.audit("cart_abandoned", op, "%d lines %d" % (
                self.cart.totals["lines"], self.cart.total()))
        self.finish(None)

    def pay(self):
        from firmware.flows.sale import SaleFlow
        if self.cart.total() > self.term.config["money"]["max_amount"]:
            return self._refuse("err_amount_max", {})
        if self.cart.total() <= 0:      # all given away: nothing for a payment to take
            return self._refuse("ct_nothing_to_pay", {})
        loyalty = _loyalty()
        if loyalty is not None:         # the points it earns: a figure of the sale
            loyalty.prepare(self.term, self.cart)
        self.term.push(SaleFlow(self.term, cart=self.cart))
        return "paying"

    def child_done(self, child, result):
        """The payment's end: approved, the cart is sold (stock goes down) and done;
        anything else, the cart stays for another way to pay. The menu's end: an item
        chosen by browsing goes in; the adding of an unknown item: the new item goes in
        as its scan would have."""
        if child is self.child:
            self.child = None
            if self.state == "adding":
                if result is None:
                    return "unknown"
                code = self.unknown[0] if self.unknown else None
                self.unknown = None
                return self._add(result, barcode=code)
            if result is not None and result[0] == BrowseFlow.NAME:
                return self._add(result[1])
            if result is not None and result[0] == "scan":
                return self.scanned(result[1])
            return "cart"
        if child.NAME != "sale":
            return None                 # a notice over the cart
        if result is not None and result.get("state") == "approved":
            from firmware.retail import stock
            stock.take(self.term, result)
            loyalty = _loyalty()
            if loyalty is not None:     # once per record; catch_up at start if not here
                loyalty.apply(self.term, result)
            self.finish(result)
            return None
        self.error = ("ct_not_paid", {})
        return "cart"

    # -- drawing --------------------------------------------------------------------
    def _row(self, line):
        return line_row(line, self.cart, self.t)

    def _error_rows(self):
        return [self.t(self.error[0], **self.error[1])] if self.error is not None else []

    def _message(self):
        """The error's rows: a barcode not found names its code on a row of its own."""
        msg_id, values = self.error
        if msg_id == "ct_not_found":
            return [self.t(msg_id), values["code"][:ROW_COLUMNS]]
        if msg_id in ("ct_bad_barcode", "scan_failed"):
            return [self.t(msg_id), self.t("scan_again")]
        return [self.t(msg_id, **values)]

    def render(self):
        t = self.t
        s = self.state
        cur = self.cart.currency
        total = t("ct_sum", amount=format_amount(self.cart.total(), cur))
        if s == "weight":
            item = self.pending or {}
            name = (item.get("name_zh") if t.lang == "zh" else "") or item.get("name_en", "")
            self.term.show(t("ct_weight_title"), [fit(name, ROW_COLUMNS),
                           t("ct_grams", g=self.field.shown())], t("footer_entry"))
            return
        if s == "qty":
            line = self.cart.line(self.selected)
            self.term.show(t("ct_qty_title"), [fit(line.name(t.lang) or t("ct_misc"),
                           ROW_COLUMNS), t("ct_qty", n=self.field.shown())], t("footer_entry"))
            return
        if s == "void_q":
            self.term.show(t("ct_void_title"), [self._row(self.cart.line(self.selected)),
                           t("ct_void_q")], t("footer_confirm"))
            return
        if s == "misc":
            self.term.show(t("ct_misc_title"), self._error_rows(), t("footer_entry"),
                           masked=self.amount.shown())
            return
        if s == "unknown":
            code = self.unknown[0] if self.unknown else ""
            if self.error is not None:
                last = self._error_rows()[0]
            elif self.term.config["retail"]["keyed_unknown"]:
                last = t("ct_unknown_price")
            else:
                last = total
            self.term.show(t("ct_title", n=self.cart.totals["items"]),
                           [t("ct_not_found"), fit(code, ROW_COLUMNS), last],
                           t("ct_footer_unknown"), alert="error")
            return
        if s == "keyed":
            code = self.unknown[0] if self.unknown else ""
            self.term.show(t("ct_keyed_title"), [fit(code, ROW_COLUMNS)] + self._error_rows(),
                           t("footer_entry"), masked=self.amount.shown())
            return
        if s == "abandon_q":
            self.term.show(t("ct_abandon_title"), [total, t("ct_abandon_q")],
                           t("footer_confirm"))
            return
        if s != "cart":
            return
        active = self.cart.active()
        chosen = self._chosen()
        rows = []
        sel = -1
        if active:
            # the two lines around the chosen one (the newest at the bottom)
            indexes = [i for i, line in active]
            pos = indexes.index(chosen)
            start = max(0, min(pos - 1, len(indexes) - 2))
            for k in range(start, min(start + 2, len(indexes))):
                if indexes[k] == chosen and self.selected != -1:
                    sel = len(rows)
                rows.append(self._row(self.cart.line(indexes[k])))
        if self.error is not None:
            last = self._message()
            rows = rows[len(rows) - (3 - len(last)):] if len(last) < 3 else []
            if sel >= len(rows):
                sel = -1
        elif self.field.value:
            last = [t("ct_plu", plu=self.field.shown())]
        elif not active:
            rows, last = [], [t("ct_scan"), t("ct_misc_hint"), t("ct_menu_hint")]
        else:
            last = [total]
        rows += last
        footer = t("footer_cart_line") if self.selected != -1 and active else t("footer_cart")
        self.term.show(t("ct_title", n=self.cart.totals["items"]), rows, footer,
                       selected=sel, alert="error" if self.error is not None else None)


# -- promotions and members -----------------------------------------------------------
def make_pricer(term):
    """The pricer of the terminal's promotions (None when there are none, or the
    catalogue has no promotions to give): priced at term.system.local_time, a line's
    category read from the catalogue."""
    catalogue = term.catalogue
    load = getattr(catalogue, "promotions", None)
    if load is None:
        return None
    try:
        rules = load()
    except Exception as exc:
        from firmware.core.store import is_fault
        if is_fault(exc):
            return None                 # the fault screen says it; shelf prices meanwhile
        raise
    if not rules:
        return None
    from firmware.retail.promotions import Pricer

    def category_of(item_id):
        item = catalogue.get(item_id)
        return item.get("category") if item else None
    return Pricer(rules, term.system.local_time, category_of)


def _member_code(code):
    """True for a member card's or member QR's code, when members are built in."""
    try:
        from firmware.retail import members
    except ImportError:
        return False
    return members.parse_code(code) is not None or members.looks_like_member_code(code)


def _loyalty():
    try:
        from firmware.retail import loyalty
    except ImportError:
        return None
    return loyalty


# -- rows ---------------------------------------------------------------------------
def pair(label, amount):
    """A label and an amount on one row, the label cut to what the amount leaves."""
    room = ROW_COLUMNS - display_width(amount) - 1
    label = fit(label, room)
    return label + " " * (room - display_width(label) + 1) + amount


def line_row(line, cart, t):
    """One cart line in a row: the name cut to what is left beside the amount."""
    name = line.name(t.lang) or t("ct_misc")
    if line.weighed():
        name = format_weight(line.grams) + " " + name
    elif line.quantity != 1:
        name = "%dx %s" % (line.quantity, name)
    return pair(name, format_amount(line.gross - line.promo_discount - line.line_discount,
                                    cart.currency))


def item_name(item, lang):
    """A catalogue item's (or category's) name in lang; the English when the Chinese is
    empty."""
    if lang == "zh" and item.get("name_zh"):
        return item["name_zh"]
    return item.get("name_en") or ""


class PercentField:
    """A percent typed as it reads: 5, 12.5, 8.875 (the keypad's DOT, at most three
    decimals), kept in thousandths of a percent, the cart's unit (5000, 12500, 8875).
    It is not held to 100 %: the cart refuses more and the screen says its limit."""
    WHOLE_DIGITS = 3

    def __init__(self):
        self.text = ""

    def key(self, name):
        whole, frac = (self.text.split(".") + [None])[:2]
        if keys.is_digit(name):
            if frac is None and len(whole) + len(name) <= self.WHOLE_DIGITS:
                self.text += name
            elif frac is not None and len(frac) + len(name) <= 3:
                self.text += name
        elif name == keys.DOT and frac is None:
            self.text = (self.text or "0") + "."
        elif name == keys.BKSP:
            self.text = self.text[:-1]
        elif name == keys.CLEAR:
            self.text = ""

    def value(self):
        whole, frac = (self.text.split(".") + [""])[:2]
        return int(whole or "0") * PERCENT + int((frac + "000")[:3])

    def shown(self):
        return (self.text or "_") + "%"


# -- the cart's menu ----------------------------------------------------------------
class CartMenuFlow(MenuFlow):
    """MENU on the cart. Ends with (the name of the flow it opened, its result) when
    that flow did something, so the cart can add a browsed item; CANCEL in an opened
    flow comes back here."""
    NAME = "cart_menu"
    TITLE = "ct_menu_title"
    STATES = dict(MenuFlow.STATES)
    STATES["sub"] = {"timeout": None, "on": {}}     # an entry's flow runs above
    # a scan while the menu is up goes to the cart, as it would have without the menu
    STATES["menu"] = {"timeout": MenuFlow.STATES["menu"]["timeout"],
                      "on": dict(MenuFlow.STATES["menu"]["on"], scan="scanned")}

    def __init__(self, term, cart, index):
        MenuFlow.__init__(self, term)
        self.cart = cart
        self.line_index = index         # the chosen line, None when the cart is empty

    def entries(self):
        return [("ct_line_discount", "line_discount"), ("ct_cart_discount", "cart_discount"),
                ("ct_price", "price"), ("ct_browse", "browse"), ("ct_member", "member"),
                ("ct_redeem", "redeem")]

    def scanned(self, ev):
        self.finish(("scan", ev))

    def _open(self, flow):
        self.goto("sub")
        self.term.push(flow)
        return None

    def _empty(self):
        self.term.beep("error")
        return self.say(self.t("ct_empty"))

    def line_discount(self):
        if self.line_index is None:
            return self._empty()
        return self._open(DiscountFlow(self.term, self.cart, self.line_index))

    def cart_discount(self):
        if self.cart.empty():
            return self._empty()
        return self._open(DiscountFlow(self.term, self.cart, None))

    def price(self):
        if self.line_index is None:
            return self._empty()
        return self._open(PriceFlow(self.term, self.cart, self.line_index))

    def browse(self):
        if self.term.catalogue is None:
            self.term.beep("error")
            return self.say(self.t("ct_no_catalogue"))
        return self._open(BrowseFlow(self.term))

    def member(self):
        """The member of the sale (B's MemberFlow: phone typed, card or QR scanned)."""
        try:
            from firmware.flows.members import MemberFlow
        except ImportError:
            self.term.beep("error")
            return self.say(self.t("ct_no_members"))
        return self._open(MemberFlow(self.term, self.cart))

    def redeem(self):
        """Points paid with (RedeemFlow asks how many and sets the redemption)."""
        try:
            from firmware.flows.members import RedeemFlow
        except ImportError:
            self.term.beep("error")
            return self.say(self.t("ct_no_members"))
        if self.cart.empty():
            return self._empty()
        if self.cart.member is None:
            self.term.beep("error")
            return self.say(self.t("ct_member_first"))
        return self._open(RedeemFlow(self.term, self.cart))

    def child_done(self, child, result):
        if child.NAME == "notice":
            return None                 # a notice over the menu
        if result is None:
            return "menu"
        self.finish((child.NAME, result))
        return None


# -- discounts and prices -----------------------------------------------------------
class _CartChange(Flow):
    """A change to the cart that may need a supervisor: typed, then shown as it would
    leave the cart (worked out on a copy, so a refusal names its limit before anyone
    is asked), approved when it is above the [retail] limits, then made on the cart.
    Subclasses give change(cart, operator), needs_supervisor(copy), PURPOSE (the
    supervisor screen's words) and EVENT (the audit log's)."""
    PURPOSE = ""
    EVENT = ""

    def __init__(self, term, cart, index):
        Flow.__init__(self, term)
        self.cart = cart
        self.index = index
        self.preview = None
        self.error = None

    def _me(self):
        return self.term.operator["id"] if self.term.operator else ""

    def _refuse(self, msg_id, values=None):
        self.error = (msg_id, values or {})
        self.term.beep("error")
        return None

    def _error_rows(self):
        return [self.t(self.error[0], **self.error[1])] if self.error is not None else []

    def try_change(self):
        """The change on a copy of the cart: "confirm", or None with the refusal shown."""
        copy = self.cart.copy()         # with the pricer: the preview re-prices as the cart
        try:
            self.change(copy, "")
        except CartError as exc:
            return self._refuse(exc.msg_id, {"limit": exc.limit_text(self.cart.currency)})
        self.preview = copy
        self.error = None
        return "confirm"

    def approve(self, ev):
        """ENTER on the preview: made at once within the limits or by a supervisor
        logged in; else a supervisor's ID and PIN first."""
        if self.term.role() == "supervisor":
            return self.apply(self._me())
        if not self.needs_supervisor(self.preview):
            return self.apply(None)
        self.goto("supervisor")
        self.term.push(SupervisorFlow(self.term, self.PURPOSE))
        return None

    def child_done(self, child, result):
        if child.NAME != "supervisor":
            return None                 # a notice over this flow
        if result is None:
            self.error = ("ct_not_approved", {})
            return "confirm"
        return self.apply(result["id"])

    def apply(self, supervisor):
        """The change on the cart itself, by the supervisor when one approved it."""
        me = self._me()
        try:
            self.change(self.cart, supervisor or me)
        except CartError as exc:        # the preview took it: only a changed cart gets here
            self._refuse(exc.msg_id, {"limit": exc.limit_text(self.cart.currency)})
            return "confirm"
        detail = self.describe()
        if supervisor is not None and supervisor != me:
            detail += " for %s" % me
        self.term.store.audit(self.EVENT, supervisor or me, detail)
        self.finish(True)
        return None

    def _money(self, amount):
        return format_amount(amount, self.cart.currency)


class DiscountFlow(_CartChange):
    """A line's discount (index) or the cart's (index None): percent or amount, the
    value, the preview, the supervisor above the limits. A cashier may give, without a
    supervisor, a discount of at most [retail] max_discount_percent of what it comes
    off and at most max_discount_amount; removing one needs nobody."""
    NAME = "cart_discount"
    INITIAL = "kind"
    PURPOSE = "ct_sup_discount"
    STATES = {
        "kind": {"timeout": ENTRY,
                 "on": {keys.UP: "kind_up", keys.DOWN: "kind_down", "digit": "kind_pick",
                        keys.ENTER: "kind_done", keys.CANCEL: "cancel"}},
        "value": {"timeout": ENTRY,
                  "on": {"digit": "type", keys.DOT: "type", keys.BKSP: "type",
                         keys.CLEAR: "type", keys.ENTER: "value_done", keys.CANCEL: "to_kind"}},
        "confirm": {"timeout": ENTRY,
                    "on": {keys.ENTER: "approve", keys.CANCEL: "to_value"}},
        "supervisor": {"timeout": None, "on": {}},
    }

    def __init__(self, term, cart, index):
        _CartChange.__init__(self, term, cart, index)
        self.EVENT = "cart_discount" if index is None else "line_discount"
        self.choice = 0
        self.kind = None
        self.field = None

    def _current(self):
        return self.cart.discount if self.index is None else self.cart.line(self.index).discount

    def kinds(self):
        out = [("ct_kind_percent", "percent"), ("ct_kind_amount", "amount")]
        if self._current() is not None:
            out.append(("ct_kind_remove", None))
        return out

    def kind_up(self, ev):
        self.choice = (self.choice - 1) % len(self.kinds())

    def kind_down(self, ev):
        self.choice = (self.choice + 1) % len(self.kinds())

    def kind_pick(self, ev):
        n = int(ev.get("key")) - 1 if ev.get("key") != "00" else -1
        if 0 <= n < len(self.kinds()):
            self.choice = n
            return self.kind_done(ev)
        return None

    def kind_done(self, ev):
        self.kind = self.kinds()[self.choice][1]
        self.error = None
        if self.kind is None:           # remove: less off never needs a supervisor
            return self.apply(None)
        if self.kind == "percent":
            self.field = PercentField()
        else:
            self.field = AmountField(self.cart.currency, self.term.config["money"]["max_amount"])
        return "value"

    def to_kind(self, ev):
        self.error = None
        return "kind"

    def to_value(self, ev):
        self.error = None
        return "value"

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def _value(self):
        return self.field.value() if self.kind == "percent" else self.field.value

    def value_done(self, ev):
        if self._value() <= 0:
            return self._refuse("ct_value_zero")
        return self.try_change()

    def change(self, cart, operator):
        if self.index is None:
            cart.set_discount(self.kind, self._value() if self.kind else 0, operator)
        else:
            cart.set_line_discount(self.index, self.kind, self._value() if self.kind else 0)

    def _taken(self, cart):
        """(what the discount comes off, what it takes off) in cart."""
        if self.index is None:
            return cart.totals["subtotal"], cart.totals["discount"]
        line = cart.line(self.index)
        return line.gross - line.promo_discount, line.line_discount   # after its promotion

    def needs_supervisor(self, preview):
        retail = self.term.config["retail"]
        base, taken = self._taken(preview)
        if taken > retail["max_discount_amount"]:
            return True
        if self.kind == "percent":
            return self._value() > retail["max_discount_percent"]
        return taken * WHOLE > retail["max_discount_percent"] * base

    def describe(self):
        where = "cart" if self.index is None else "line %d" % (self.index + 1)
        if self.kind is None:
            return where + " removed"
        base, taken = self._taken(self.cart)
        what = format_rate(self._value()) if self.kind == "percent" else "amount"
        return "%s %s -%s of %s" % (where, what, self._money(taken), self._money(base))

    def _off_row(self, cart):
        base, taken = self._taken(cart)
        label = self.t("ct_off", rate=format_rate(self._value())) if self.kind == "percent" \
            else self.t("ct_off_amount")
        return pair(label, "-" + self._money(taken))

    def _head(self, cart):
        """The first row: the line (name and amount), or the cart's subtotal."""
        if self.index is None:
            return pair(self.t("ct_subtotal"), self._money(cart.totals["subtotal"]))
        return line_row(cart.line(self.index), cart, self.t)

    def render(self):
        t = self.t
        title = t("ct_cart_discount" if self.index is None else "ct_line_discount")
        if self.state == "kind":
            rows = ["%d %s" % (i + 1, t(k[0])) for i, k in enumerate(self.kinds())]
            self.term.show(title, rows, t("footer_menu"), selected=self.choice)
        elif self.state == "value":
            prompt = "ct_pct_prompt" if self.kind == "percent" else "ct_amount_prompt"
            rows = [self._head(self.cart)] + (self._error_rows() or [t(prompt)])
            self.term.show(title, rows, t("footer_entry"), masked=self.field.shown(),
                           alert="error" if self.error else None)
        elif self.state == "confirm":
            cart = self.preview
            last = self._error_rows() or [t("ct_sum", amount=self._money(cart.total()))]
            self.term.show(title, [self._head(cart), self._off_row(cart)] + last,
                           t("footer_confirm"), alert="error" if self.error else None)


class PriceFlow(_CartChange):
    """The chosen line's unit price (per kg for a weighed line), overridden. With
    [retail] override_needs_supervisor, a price below the item's own (the catalogue's,
    or the label's) needs a supervisor; a keyed amount is the cashier's own figure and
    never does. The first price is kept for the receipt ("Price 1.00, was 1.49")."""
    NAME = "cart_price"
    INITIAL = "price"
    PURPOSE = "ct_sup_price"
    EVENT = "price_override"
    STATES = {
        "price": {"timeout": ENTRY,
                  "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                         keys.ENTER: "price_done", keys.CANCEL: "cancel"}},
        "confirm": {"timeout": ENTRY,
                    "on": {keys.ENTER: "approve", keys.CANCEL: "to_price"}},
        "supervisor": {"timeout": None, "on": {}},
    }

    def __init__(self, term, cart, index):
        _CartChange.__init__(self, term, cart, index)
        limit = min(term.config["money"]["max_amount"], cart.limits["max_line_amount"])
        self.field = AmountField(cart.currency, limit)

    def _was(self):
        line = self.cart.line(self.index)
        return line.original_price if line.original_price is not None else line.price

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))
        if self.field.too_big:          # refused as it is typed, with the limit
            self._refuse("cart_price", {"limit": self._money(self.field.max_minor)})

    def price_done(self, ev):
        if self.field.value <= 0:
            return self._refuse("err_amount_zero")
        return self.try_change()

    def to_price(self, ev):
        self.error = None
        return "price"

    def change(self, cart, operator):
        cart.override_price(self.index, self.field.value, operator)

    def needs_supervisor(self, preview):
        line = self.cart.line(self.index)
        return (self.term.config["retail"]["override_needs_supervisor"]
                and line.kind == "item" and self.field.value < self._was())

    def describe(self):
        return "line %d %s was %s" % (self.index + 1, self._money(self.field.value),
                                      self._money(self._was()))

    def _unit(self, amount):
        text = self._money(amount)
        return self.t("ct_per_kg", amount=text) if self.cart.line(self.index).weighed() else text

    def render(self):
        t = self.t
        line = self.cart.line(self.index)
        name = fit(line.name(t.lang) or t("ct_misc"), ROW_COLUMNS)
        alert = "error" if self.error else None
        if self.state == "price":
            rows = [name] + (self._error_rows() or [pair(t("ct_was"), self._unit(line.price))])
            self.term.show(t("ct_price"), rows, t("footer_entry"), masked=self.field.shown(),
                           alert=alert)
        elif self.state == "confirm":
            last = self._error_rows() or [pair(t("ct_was"), self._unit(self._was()))]
            self.term.show(t("ct_price"), [name, pair(t("ct_now"), self._unit(self.field.value))]
                           + last, t("footer_confirm"), alert=alert)


# -- browsing -----------------------------------------------------------------------
class BrowseFlow(Flow):
    """The catalogue's categories, then a category's items a page at a time (UP/DOWN,
    wrapping); ENTER ends with the item, which the cart adds as a typed PLU (a kg item
    then asks its weight). Categories with nothing for sale are left out; items in no
    category are under "Other"."""
    NAME = "cart_browse"
    INITIAL = "cats"
    STATES = {
        "cats": {"timeout": ENTRY,
                 "on": {keys.UP: "up", keys.DOWN: "down", "digit": "pick",
                        keys.ENTER: "open_cat", keys.CANCEL: "cancel"}},
        "items": {"timeout": ENTRY,
                  "on": {keys.UP: "up", keys.DOWN: "down", keys.ENTER: "take",
                         keys.CANCEL: "to_cats"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        cat = term.catalogue
        self.cats = [c for c in cat.categories() if cat.count_in(c["id"]) > 0]
        if cat.count_in(None) > 0:
            self.cats.append({"id": None, "name_en": "", "name_zh": ""})
        self.cat = 0                    # the category chosen
        self.index = 0                  # the item chosen in it
        self.count = 0
        self.page = []                  # the items on screen, from page_start
        self.page_start = -1

    def _n(self):
        return self.count if self.state == "items" else len(self.cats)

    def up(self, ev):
        n = self._n()
        if n:
            self._move((self._at() - 1) % n)

    def down(self, ev):
        n = self._n()
        if n:
            self._move((self._at() + 1) % n)

    def _at(self):
        return self.index if self.state == "items" else self.cat

    def _move(self, i):
        if self.state == "items":
            self.index = i
        else:
            self.cat = i

    def pick(self, ev):
        n = int(ev.get("key")) - 1 if ev.get("key") != "00" else -1
        if 0 <= n < len(self.cats):
            self.cat = n
            return self.open_cat(ev)
        return None

    def open_cat(self, ev):
        if not self.cats:
            return None
        self.count = self.term.catalogue.count_in(self.cats[self.cat]["id"])
        self.index = 0
        self.page_start = -1
        return "items"

    def to_cats(self, ev):
        return "cats"

    def _page(self):
        """The items of the page holding the chosen one, read once per page."""
        start = self.index - self.index % BODY_ROWS
        if start != self.page_start:
            self.page = self.term.catalogue.items_in(self.cats[self.cat]["id"], start, BODY_ROWS)
            self.page_start = start
        return self.page

    def take(self, ev):
        page = self._page()
        k = self.index - self.page_start
        if 0 <= k < len(page):
            self.finish(page[k])
        return None

    def _cat_name(self, c):
        return item_name(c, self.t.lang) or self.t("ct_browse_other")

    def render(self):
        t = self.t
        if self.state == "cats":
            if not self.cats:
                self.term.show(t("ct_browse"), [t("ct_browse_none")], t("footer_back"))
                return
            rows = ["%d %s" % (i + 1, self._cat_name(c)) for i, c in enumerate(self.cats)]
            self.term.show(t("ct_browse"), [fit(r, ROW_COLUMNS) for r in rows],
                           t("footer_menu"), selected=self.cat)
            return
        cur = self.term.config["money"]["currency"]
        rows = []
        for item in self._page():
            price = format_amount(item["price"], cur)
            if item.get("unit") == "kg":
                price = t("ct_per_kg", amount=price)
            rows.append(pair(item_name(item, t.lang), price))
        # the category's name is data: cut to what a title holds beside the status marks
        title = fit(self._cat_name(self.cats[self.cat]), 10)
        pos = "%d/%d" % (self.index + 1, self.count)
        self.term.show(title, rows, t("ct_footer_add", pos=pos),
                       selected=self.index - self.page_start)
