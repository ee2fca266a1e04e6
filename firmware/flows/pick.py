"""Choosing a past transaction by the number printed on its receipt (ENTER alone:
the latest one that fits, or the one the caller proposes)."""
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
                          keys.ENTER: "number_done", keys.CANCEL: "cancel"}},
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

    def number_done(self, ev):
        journal = self.term.payments.journal
        if self.field.value:
            rec = journal.get(int(self.field.value))
            if rec is None:
                self.error = "err_no_such_txn"
                return None
            why = self.eligible(rec)
            if why:
                self.error = why
                return None
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
        what = t("rcpt_card") + " *" + rec["last4"] if rec["method"] == "card" else t("rcpt_cash")
        self.term.show(t(self.purpose), ["#%d %s" % (rec["id"], what),
                                         "%s %s" % (rec["currency"], format_amount(rec["amount"], rec["currency"])),
                                         rec["utc"][:16].replace("T", " ")],
                       t("footer_confirm"))
