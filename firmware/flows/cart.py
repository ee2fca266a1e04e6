"""Selling items: the cart, built by scans, typed PLUs and keyed amounts, then paid.

A scan on the idle screen (or F1 there, to type a PLU) opens the cart. On the cart:

  scan        adds the item (a scale label's price or weight comes with it)
  digits      a PLU; ENTER adds it (a kg item then asks for its weight in grams)
  ENTER       with nothing typed: pay (the sale's methods: card, cash)
  UP/DOWN     choose a line          F1  its quantity (the multiply key)
  F2          void the line          F3  a keyed amount (a "misc" line)
  CANCEL      clears what is typed; on an empty entry asks to abandon the cart

The cart's figures are firmware/retail/cart.py's; the payment is the sale flow's
(firmware/flows/sale.py), which writes the cart into the journal record, so the
receipt is itemised from what was recorded. Stock goes down once the payment is
approved (firmware/retail/stock.py), and again never (the record says it was taken).
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.core.money import format_amount
from firmware.flows.common import AmountField, Field
from firmware.retail import barcode
from firmware.retail.cart import Cart, CartError, format_weight
from firmware.retail.tax import round_div
from firmware.ui.receipt import display_width, fit
from firmware.ui.screen import ROW_COLUMNS

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
                        keys.CANCEL: "cancel_key", "timeout": "abandon"}},
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
    }

    def __init__(self, term, scan=None, symbology=None):
        Flow.__init__(self, term)
        self.cart = Cart.from_config(term.config)
        self.field = Field(PLU_MAX)
        self.amount = AmountField(self.cart.currency, term.config["money"]["max_amount"])
        self.selected = -1              # the line UP/DOWN chose; -1: the newest
        self.error = None               # (message id, values) shown in place of a row
        self.pending = None             # the kg item waiting for its weight
        self.first = (scan, symbology) if scan is not None else None

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
        return self.add_scanned(ev.get("code"), ev.get("symbology"))

    def scan_failed(self, ev):
        self.error = ("scan_failed", {})    # the terminal gave the error tone already
        return "cart"

    def add_scanned(self, code, symbology=None):
        code = code or ""
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
        if not found.ok:
            return self._refuse("ct_bad_barcode", {})
        item = catalogue.find_by_barcode(found.key)
        if item is None or not item.get("active", True):
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

    def _refuse(self, msg_id, values):
        self.error = (msg_id, values)
        self.term.beep("error")
        return "cart"

    def _cart_error(self, exc):
        return self._refuse(exc.msg_id, {"limit": exc.limit_text(self.cart.currency)})

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
        return "misc"

    def type_amount(self, ev):
        self.error = None
        self.amount.key(ev.get("key"))

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
        return "cart"

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
        self.term.push(SaleFlow(self.term, cart=self.cart))
        return "paying"

    def child_done(self, child, result):
        """The payment's end: approved, the cart is sold (stock goes down) and done;
        anything else, the cart stays for another way to pay."""
        if result is not None and result.get("state") == "approved":
            from firmware.retail import stock
            stock.take(self.term, result)
            self.finish(result)
            return None
        self.error = ("ct_not_paid", {})
        return "cart"

    # -- drawing --------------------------------------------------------------------
    def _row(self, line):
        """One cart line in a row: the name cut to what is left beside the amount."""
        t = self.t
        name = line.name(t.lang) or t("ct_misc")
        if line.weighed():
            name = format_weight(line.grams) + " " + name
        elif line.quantity != 1:
            name = "%dx %s" % (line.quantity, name)
        amount = format_amount(line.gross - line.line_discount, self.cart.currency)
        room = ROW_COLUMNS - display_width(amount) - 1
        name = fit(name, room)
        return name + " " * (room - display_width(name) + 1) + amount

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
                           t("ct_void_q")], t("footer_yes_no"))
            return
        if s == "misc":
            self.term.show(t("ct_misc_title"), [self.amount.shown()], t("footer_entry"))
            return
        if s == "abandon_q":
            self.term.show(t("ct_abandon_title"), [total, t("ct_abandon_q")],
                           t("footer_yes_no"))
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
            rows, last = [], [t("ct_scan"), t("ct_misc_hint")]
        else:
            last = [total]
        rows += last
        footer = t("footer_cart_line") if self.selected != -1 and active else t("footer_cart")
        self.term.show(t("ct_title", n=self.cart.totals["items"]), rows, footer,
                       selected=sel, alert="error" if self.error is not None else None)
