"""Choosing a past transaction by the number printed on its receipt, typed or its
receipt's barcode scanned (ENTER alone: the latest one that fits, or the one the caller
proposes)."""
from firmware.core import keys
from firmware.flows.common import Field
from firmware.core.fsm import Flow
from firmware.core.money import format_amount


class PickFlow(Flow):
    NAME = "pick"
    INITIAL = "number"
    STATES = {
        "number": {"timeout": "entry_timeout_s",
                   "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                          keys.ENTER: "number_done", keys.CANCEL: "cancel",
                          "scan": "scanned", "scan_error": "scan_failed"}},
        "confirm": {"timeout": "entry_timeout_s",
                    "on": {keys.ENTER: "confirm", keys.CANCEL: "again"}},
    }

    def __init__(self, term, purpose, eligible, proposed=None):
        Flow.__init__(self, term)
        self.purpose = purpose          # message id: "menu_void", "menu_refund"
        self.eligible = eligible        # record -> None if it fits, else a message id
        self.proposed = proposed        # the record ENTER alone picks (None: the latest)
        self.field = Field(9)
        self.rec = None
        self.error = None

    def type(self, ev):
        self.error = None
        self.field.key(ev.get("key"))

    def scanned(self, ev):
        """The receipt's barcode (firmware/retail/receipt_code.py): its number, as if
        typed; another terminal's receipt, a misread or an item's code are named."""
        from firmware.retail import receipt_code
        self.field.clear()
        try:
            number = receipt_code.parse(ev.get("code"), self.term.config["terminal"]["id"])
        except receipt_code.OtherTerminal:
            return self._refuse("pick_other_tid")
        except receipt_code.Misread:
            return self._refuse("scan_again")
        except receipt_code.ReceiptCodeError:
            return self._refuse("pick_not_receipt")
        return self._pick(number)

    def scan_failed(self, ev):
        self.error = "scan_again"       # the terminal gave the error tone already

    def _refuse(self, msg_id):
        self.error = msg_id
        self.term.beep("error")
        return None

    def _pick(self, number):
        rec = self.term.payments.journal.get(number)
        if rec is None:
            self.error = "err_no_such_txn"
            return None
        why = self.eligible(rec)
        if why:
            self.error = why
            return None
        self.error = None
        self.rec = rec
        return "confirm"

    def number_done(self, ev):
        journal = self.term.payments.journal
        if self.field.value:
            return self._pick(int(self.field.value))
        elif self.proposed is not None:
            rec = self.proposed
        else:
            fits = [r for r in journal.find() if self.eligible(r) is None]
            if not fits:
                self.error = "err_nothing_to_pick"
                return None
            rec = fits[-1]
        self.rec = rec
        return "confirm"

    def again(self, ev):
        self.rec = None
        return "number"

    def confirm(self, ev):
        self.finish(self.rec)

    def render(self):
        t = self.t
        err = [t(self.error)] if self.error else []
        if self.state == "number":
            hint = t("pick_latest") if self.proposed is None else \
                t("pick_enter_n", n=self.proposed["id"])
            self.term.show(t(self.purpose), [t("pick_txn")] + err, t("footer_entry"),
                           masked=self.field.shown() if self.field.value else hint)
            return
        rec = self.rec
        if rec["method"] in ("card", "qr"):
            what = t("rcpt_" + rec["method"]) + " *" + rec["last4"]
        else:
            what = t("rcpt_cash")
        self.term.show(t(self.purpose), ["#%d %s" % (rec["id"], what),
                                         "%s %s" % (rec["currency"], format_amount(rec["amount"], rec["currency"])),
                                         rec["utc"][:16].replace("T", " ")],
                       t("footer_confirm"))
