"""Refund of an item sale by its lines: choose what comes back, never more than was
sold and not yet refunded, then the money goes back the way it came (flows.sale's
RefundFlow) and the goods go back on the shelf (firmware/retail/stock.py).

  UP/DOWN     choose a line
  digits      how many of it (grams for a weighed line); ENTER sets it, 0 takes it off
  F1          all that is left of the line, or none of it
  ENTER       with nothing typed: the refund's total, then ENTER again to pay it back
  CANCEL      clears what is typed; else back, nothing refunded

The money of a part of a line is firmware/retail/cart.py's refund(): partial refunds
of a line add up to exactly what it was sold for, tax included.
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.core.money import format_amount
from firmware.flows.common import EntryFlow, Field
from firmware.retail import refund as refunds
from firmware.retail.cart import CartError, format_weight
from firmware.ui.receipt import display_width, fit
from firmware.ui.screen import ROW_COLUMNS

ENTRY = "entry_timeout_s"
MEASURE_MAX = 6


def _measure_text(line, n):
    return format_weight(n) if line.weighed() else "%d" % n


class RefundLinesFlow(EntryFlow):
    NAME = "refund_lines"
    INITIAL = "lines"
    STATES = {
        "lines": {"timeout": ENTRY,
                  "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                         keys.UP: "up", keys.DOWN: "down", keys.F1: "whole",
                         keys.ENTER: "enter", keys.CANCEL: "cancel_key", "timeout": "cancel"}},
        "confirm": {"timeout": ENTRY,
                    "on": {keys.ENTER: "pay", keys.CANCEL: "back", "timeout": "back"}},
        # the refund's payment runs above this state
        "paying": {"timeout": None, "on": {}},
    }

    def __init__(self, term, original):
        Flow.__init__(self, term)
        self.original = original
        self.cart = refunds.sold_cart(original)
        journal = term.payments.journal
        self.done_before = refunds.refunded_lines(journal, original)
        # [(line index, what is left of it)] in the sale's order
        self.left = [(r["line"], r["remaining"]) for r in
                     refunds.remaining(journal, original, self.cart)]
        self.picked = {}                # line index -> pieces or grams to refund
        self.pos = 0                    # the chosen entry of self.left
        self.field = Field(MEASURE_MAX)
        self.error = None               # (message id, values)
        self.part = None

    # -- choosing -------------------------------------------------------------------
    def _chosen(self):
        return self.left[self.pos]

    def up(self, ev):
        self.field.clear()
        self.pos = max(0, self.pos - 1)

    def down(self, ev):
        self.field.clear()
        self.pos = min(len(self.left) - 1, self.pos + 1)

    def _set(self, index, measure):
        if measure:
            self.picked[index] = measure
        else:
            self.picked.pop(index, None)

    def whole(self, ev):
        self.field.clear()
        self.error = None
        index, left = self._chosen()
        self._set(index, 0 if self.picked.get(index) == left else left)

    def enter(self, ev):
        if self.field.value:
            n = int(self.field.value)
            self.field.clear()
            index, left = self._chosen()
            if n > left:
                self.error = ("rf_max", {"n": _measure_text(self.cart.line(index), left)})
                self.term.beep("error")
                return None
            self.error = None
            self._set(index, n)
            return None
        if not self.picked:
            self.error = ("rf_none", {})
            self.term.beep("error")
            return None
        picks = [(index, self.picked[index]) for index, left in self.left if index in self.picked]
        try:
            self.part = refunds.make_part(self.cart, picks, self.done_before)
        except CartError as exc:        # the picks were checked: a journal changed under us
            self.error = ("rf_max", {"n": "%s" % exc.limit})
            return None
        if self.original["method"] == "card" and not self.term.payments.card_ready():
            self.error = (self.term.payments.card_unready_reason(), {})
            self.term.beep("error")
            return None
        self.error = None
        return "confirm"

    def back(self, ev):
        self.part = None
        return "lines"

    # -- paying back ----------------------------------------------------------------
    def pay(self, ev):
        from firmware.flows.sale import RefundFlow
        self.term.push(RefundFlow(self.term, original=self.original, part=self.part))
        return "paying" if not self.finished else None

    def child_done(self, child, result):
        if child.NAME != "refund":
            return None         # a notice over this flow
        if result is not None and result.get("state") == "approved":
            from firmware.retail import stock
            stock.give_back_refund(self.term, result)
            from firmware.retail import loyalty
            loyalty.refund(self.term, result)   # a member's points follow the money
            self.finish(result)
            return None
        self.part = None
        self.error = ("rf_not_done", {}) if result is not None else None
        return "lines"

    # -- drawing --------------------------------------------------------------------
    def _row(self, index, left):
        line = self.cart.line(index)
        picked = self.picked.get(index, 0)
        right = (_measure_text(line, picked) if line.weighed() else "%d/%d" % (picked, left)) \
            if picked else ("-" if line.weighed() else "0/%d" % left)
        room = ROW_COLUMNS - display_width(right) - 1
        name = fit(line.name(self.t.lang) or self.t("ct_misc"), room)
        return name + " " * (room - display_width(name) + 1) + right

    def _total(self):
        if not self.picked:
            return 0
        picks = [(i, self.picked[i]) for i, left in self.left if i in self.picked]
        try:
            return refunds.make_part(self.cart, picks, self.done_before)["total"]
        except CartError:
            return 0

    def render(self):
        t = self.t
        cur = self.original["currency"]
        if self.state == "confirm":
            n = 0
            for index in self.picked:
                n += 1 if self.cart.line(index).weighed() else self.picked[index]
            how = t("rf_to_card", last4=self.original["last4"]) \
                if self.original["method"] == "card" else t("rf_cash")
            self.term.show(t("rf_title"), [t("rf_items", n=n),
                           t("rf_total", amount=format_amount(self.part["total"], cur)), how],
                           t("footer_confirm"))
            return
        if self.state != "lines":
            return
        start = max(0, min(self.pos - 1, len(self.left) - 2))
        rows = []
        sel = -1
        for k in range(start, min(start + 2, len(self.left))):
            if k == self.pos:
                sel = len(rows)
            rows.append(self._row(self.left[k][0], self.left[k][1]))
        index, left = self._chosen()
        line = self.cart.line(index)
        if self.error is not None:
            last = t(self.error[0], **self.error[1])
        elif self.field.value:
            last = t("rf_grams" if line.weighed() else "rf_qty", n=self.field.shown(),
                     max="%d" % left)
        else:
            last = t("rf_total", amount=format_amount(self._total(), cur))
        self.term.show(t("rf_title"), rows + [last], t("footer_rf_lines"), selected=sel,
                       alert="error" if self.error is not None else None)
