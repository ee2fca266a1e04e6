"""Members at the till (docs/members.md): find one, enrol one, redeem points, erase one.

  MemberFlow(term, cart)   the phone typed, or a member card / QR scanned. Found: the
                           masked phone, the tier and the points; ENTER puts the member
                           on the cart (cart.set_member) and the flow ends with
                           {"number", "tier", "points", "masked"}. Not found: ENTER
                           enrols. A phone of the wrong shape or an unknown card: a
                           clear line, and the sale goes on (CANCEL: no member).
                           cart None: a look-up only (the Members menu).
  EnrolFlow(term, phone)   the phone (unless given), a name typed by multi-tap on the
                           digit keys (2=ABC ... 9=WXYZ, 0 a space, 1 . - ') or left
                           empty, the privacy notice printed, the customer's consent
                           asked; then the member number shown and a member card
                           printed (its barcode is the card code). Without consent
                           nothing is kept.
  RedeemFlow(term, cart)   the balance and the most the sale can take, points typed,
                           cart.set_redemption; 0 or nothing typed removes a redemption.
  MembersMenuFlow(term)    the home menu's Members: look up, enrol, erase (a supervisor,
                           with the second person of permissions.SECOND_PERSON).

Nothing here shows or prints a phone unmasked, and the journal, the audit and the
cart see only the member number.
"""
from firmware.core import keys
from firmware.core.fsm import Flow
from firmware.core.money import format_amount
from firmware.flows.common import EntryFlow, Field, MenuFlow, MultiTap
from firmware.retail import members as mb

ENTRY = "entry_timeout_s"
PHONE_MAX = 15
POINTS_MAX = 9
# multi-tap letters of the digit keys (a phone keypad's); 0 is a space
TAPS = {"1": ".-'", "2": "ABC", "3": "DEF", "4": "GHI", "5": "JKL", "6": "MNO", "7": "PQRS",
        "8": "TUV", "9": "WXYZ", "0": " "}


def _store(term):
    return getattr(term, "members", None)


def _me(term):
    return term.operator["id"] if term.operator else ""


def _utc(term):
    y, mo, d, h, mi, s = term.system.utc_time()
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, h, mi, s)


def _is_damaged(exc):
    return exc.__class__.__name__ == "MemberDamaged"


def _fault(term, exc):
    """A storage fault of members.db: the terminal shows it (the guard told it)."""
    from firmware.core.store import is_fault
    return is_fault(exc)


def public(member):
    """What leaves these flows: the number, tier, points and the masked phone."""
    return {"number": member["number"], "tier": member["tier"], "points": member["points"],
            "masked": mb.mask_phone(member.get("phone", ""))}


class MemberFlow(EntryFlow):
    NAME = "member"
    INITIAL = "entry"
    STATES = {
        "entry": {"timeout": ENTRY,
                  "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                         keys.ENTER: "lookup", keys.CANCEL: "cancel_key", "scan": "scanned",
                         "scan_error": "scan_failed", "timeout": "cancel"}},
        "found": {"timeout": ENTRY,
                  "on": {keys.ENTER: "use", keys.CANCEL: "again", "timeout": "cancel"}},
        "unknown": {"timeout": ENTRY,
                    "on": {keys.ENTER: "enrol", keys.CANCEL: "again", "timeout": "cancel"}},
        "enrolling": {"timeout": None, "on": {}},
    }

    def __init__(self, term, cart=None, enrol=True):
        Flow.__init__(self, term)
        self.cart = cart
        self.may_enrol = enrol
        self.rule = mb.rules(term.config)
        self.field = Field(PHONE_MAX)
        self.error = None               # (message id, values)
        self.member = None
        self.phone = None               # the digits of a phone not found (for enrolment)

    def start(self):
        if _store(self.term) is None:
            self.term.beep("error")
            from firmware.flows.notice import NoticeFlow
            self.finish(None)
            self.term.push(NoticeFlow(self.term, self.t("mb_title"), [self.t("mb_off")]))
            return
        Flow.start(self)

    def _refuse(self, msg_id, values=None):
        self.term.beep("error")
        self.error = (msg_id, values or {})
        return "entry"

    def lookup(self, ev):
        if not self.field.value:
            return None
        digits, why = mb.normalise_phone(self.field.value, self.rule)
        if digits is None:
            return self._refuse(why[0], why[1])
        self.field.clear()
        try:
            member = _store(self.term).find_by_phone(digits)
        except Exception as exc:
            return self._failed(exc)
        if member is None:
            self.phone = digits
            return "unknown"
        return self._found(member)

    def scanned(self, ev):
        return self.take_code(ev.get("code"))

    def take_code(self, code):
        """A scanned code (here, or handed over by the cart's scan): a member card or
        QR finds its member; anything else is named and refused."""
        number = mb.parse_code(code)
        if number is None:
            return self._refuse("mb_unknown_card" if mb.looks_like_member_code(code)
                                else "mb_not_member_code")
        try:
            member = _store(self.term).get(number)
            if member is None:
                gone = _store(self.term).retired(number)
                return self._refuse("mb_gone" if gone else "mb_unknown_card")
        except Exception as exc:
            return self._failed(exc)
        return self._found(member)

    def scan_failed(self, ev):
        self.error = ("scan_failed", {})
        return None

    def _failed(self, exc):
        if _is_damaged(exc):
            return self._refuse("mb_damaged")
        if _fault(self.term, exc):
            self.finish(None)           # the fault screen is on its way
            return None
        raise exc

    def _found(self, member):
        self.member = member
        self.error = None
        return "found"

    def use(self, ev):
        if self.cart is not None:
            from firmware.retail.cart import CartError
            try:
                self.cart.set_member({"number": self.member["number"], "tier": self.member["tier"]})
            except CartError as exc:
                self.error = (exc.msg_id, {"limit": exc.limit_text(self.cart.currency)})
                self.term.beep("error")
                return "entry"
        self.finish(public(self.member))
        return None

    def again(self, ev):
        self.member = None
        self.phone = None
        return "entry"

    def enrol(self, ev):
        if not self.may_enrol:
            return "entry"
        self.term.push(EnrolFlow(self.term, self.phone))
        return "enrolling" if not self.finished else None

    def child_done(self, child, result):
        if child.NAME != "enrol":
            return None
        if result is None:
            return "entry"
        return self._found(result)

    def render(self):
        t = self.t
        if self.state == "entry":
            first = t(self.error[0], **self.error[1]) if self.error else t("mb_phone_or_scan")
            self.term.show(t("mb_title"), [first], t("footer_entry"),
                           masked=self.field.shown(), alert="error" if self.error else None)
        elif self.state == "found":
            self.term.show(t("mb_title"), mb.summary_rows(t, self.member),
                           t("footer_mb_found" if self.cart is not None else "footer_ok"),
                           alert="ok")
        elif self.state == "unknown":
            rows = [t("mb_not_found"), mb.mask_phone(self.phone)]
            if self.may_enrol:
                rows.append(t("mb_offer_enrol"))
            self.term.show(t("mb_title"), rows,
                           t("footer_mb_enrol") if self.may_enrol else t("footer_back"))


class EnrolFlow(EntryFlow):
    NAME = "enrol"
    INITIAL = "phone"
    STATES = {
        "phone": {"enter": "enter_phone", "timeout": ENTRY,
                  "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                         keys.ENTER: "phone_done", keys.CANCEL: "cancel", "timeout": "cancel"}},
        "name": {"timeout": ENTRY,
                 "on": {"digit": "tap", keys.BKSP: "tap", keys.CLEAR: "tap",
                        keys.ENTER: "name_done", keys.CANCEL: "cancel", "timeout": "cancel"}},
        "consent": {"enter": "print_notice", "timeout": ENTRY,
                    "on": {keys.ENTER: "agreed", keys.CANCEL: "refused", "timeout": "refused"}},
        "done": {"timeout": ENTRY,
                 "on": {keys.ENTER: "close", keys.CANCEL: "close", "timeout": "close"}},
        "not_kept": {"timeout": 8000,
                     "on": {keys.ENTER: "cancel", keys.CANCEL: "cancel", "timeout": "cancel"}},
    }

    def __init__(self, term, phone=None):
        Flow.__init__(self, term)
        self.rule = mb.rules(term.config)
        self.phone = phone
        self.field = Field(PHONE_MAX)
        self.name = MultiTap(term.reactor.clock, TAPS, mb.NAME_MAX)
        self.error = None
        self.member = None
        self.outcome = None             # not_kept: "mb_not_enrolled" | "mb_exists"

    def start(self):
        if _store(self.term) is None:
            self.term.beep("error")
            from firmware.flows.notice import NoticeFlow
            self.finish(None)
            self.term.push(NoticeFlow(self.term, self.t("mb_enrol"), [self.t("mb_off")]))
            return
        Flow.start(self)

    def enter_phone(self):
        if self.phone:
            return "name"
        return None

    def phone_done(self, ev):
        digits, why = mb.normalise_phone(self.field.value, self.rule)
        if digits is None:
            self.term.beep("error")
            self.error = why
            return None
        self.field.clear()
        try:
            if _store(self.term).find_by_phone(digits) is not None:
                return self._not_kept("mb_exists")
        except Exception as exc:
            if not _is_damaged(exc):
                raise
            return self._not_kept("mb_damaged")
        self.phone = digits
        return "name"

    def tap(self, ev):
        self.name.key(ev.get("key"))

    def name_done(self, ev):
        return "consent"

    def print_notice(self):
        """The privacy notice on paper before the question: the customer reads what is
        kept, why, for how long and how to delete it, then says yes or no."""
        from firmware.ui.receipt import Receipt
        r = Receipt(lang=self.t.lang)
        mb.notice_receipt(self.t, r, self.term.config["terminal"]["merchant_name"])
        self.term.print_receipt(r)

    def agreed(self, ev):
        from firmware.core.store import is_fault
        try:
            member = _store(self.term).enrol(self.phone, self.name.text(),
                                             consent_utc=_utc(self.term))
        except Exception as exc:
            if getattr(exc, "what", None) == "exists":
                return self._not_kept("mb_exists")
            if is_fault(exc):
                self.finish(None)
                return None
            raise
        self.member = member
        self.term.store.audit("member_enrolled", _me(self.term), "member %s" % member["number"])
        self._print_card()
        self.term.beep("ok")
        return "done"

    def _print_card(self):
        from firmware.ui.receipt import Receipt
        from firmware.ui.screen import wrap
        m = self.member
        r = Receipt(lang=self.t.lang)
        r.add(self.t("rcpt_mb_card_head"), "center", bold=True)
        r.add(self.term.config["terminal"]["merchant_name"], "center")
        r.blank()
        r.barcode(mb.card_code(m["number"]))
        r.pair(self.t("mb_number"), m["number"])
        r.pair(self.t("mb_rc_member"), mb.mask_phone(m["phone"]))
        r.pair(self.t("mb_card_joined"), m["consent_utc"][:10])
        r.blank()
        for row in wrap(self.t("rcpt_mb_card_keep"), r.width):
            r.add(row)
        self.term.print_receipt(r)

    def refused(self, ev):
        self.term.store.audit("member_not_enrolled", _me(self.term), "no consent")
        return self._not_kept("mb_not_enrolled")

    def _not_kept(self, outcome):
        self.outcome = outcome
        self.phone = None
        self.name = MultiTap(self.term.reactor.clock, TAPS, mb.NAME_MAX)
        return "not_kept"

    def close(self, ev):
        self.finish(self.member)

    def render(self):
        t = self.t
        title = t("mb_enrol")
        if self.state == "phone":
            first = t(self.error[0], **self.error[1]) if self.error else t("mb_phone")
            self.term.show(title, [first], t("footer_entry"), masked=self.field.shown(),
                           alert="error" if self.error else None)
        elif self.state == "name":
            self.term.show(title, [t("mb_name"), t("mb_name_keys")], t("footer_mb_name"),
                           masked=self.name.shown())
        elif self.state == "consent":
            self.term.show(title, [t("mb_notice_printed"), t("mb_consent_1"), t("mb_consent_2")],
                           t("footer_confirm"))
        elif self.state == "done":
            self.term.show(title, [t("mb_enrolled"), self.member["number"], t("mb_card_printed")],
                           t("footer_continue"), alert="ok")
        elif self.state == "not_kept":
            rows = [t(self.outcome)]
            if self.outcome == "mb_not_enrolled":
                rows.append(t("mb_nothing_kept"))
            self.term.show(title, rows, t("footer_ok"), alert="warn")


class RedeemFlow(EntryFlow):
    NAME = "redeem"
    INITIAL = "points"
    STATES = {
        "points": {"timeout": ENTRY,
                   "on": {"digit": "type", keys.BKSP: "type", keys.CLEAR: "type",
                          keys.ENTER: "done", keys.CANCEL: "cancel_key", "timeout": "cancel"}},
    }

    def __init__(self, term, cart):
        Flow.__init__(self, term)
        self.cart = cart
        self.rule = mb.rules(term.config)
        self.field = Field(POINTS_MAX)
        self.error = None
        self.balance = 0

    def start(self):
        from firmware.flows.notice import NoticeFlow
        member = getattr(self.cart, "member", None)
        why = None
        if _store(self.term) is None:
            why = "mb_off"
        elif not member:
            why = "mb_rd_no_member"
        else:
            try:
                found = _store(self.term).get(member["number"])
                if found is None:
                    why = "mb_gone"
                else:
                    self.balance = found["points"]
            except Exception as exc:
                if not _is_damaged(exc):
                    if _fault(self.term, exc):
                        self.finish(None)
                        return
                    raise
                why = "mb_damaged"
        if why is not None:
            self.term.beep("error")
            self.finish(None)
            self.term.push(NoticeFlow(self.term, self.t("mb_rd_title"), [self.t(why)]))
            return
        Flow.start(self)

    def payable(self):
        return mb.before_points(self.cart)

    def most(self):
        return mb.redeem_most(self.balance, self.payable(), self.rule)

    def done(self, ev):
        from firmware.retail.cart import CartError
        points = int(self.field.value or "0")
        if points == 0:
            if getattr(self.cart, "redeem", None):
                self.cart.set_redemption(0, 0)
            self.finish({"points": 0, "amount": 0})
            return None
        amount, why = mb.check_redeem(points, self.balance, self.payable(), self.rule,
                                      self.cart.currency)
        if why is None:
            try:
                self.cart.set_redemption(points, amount)
            except CartError as exc:
                most = (exc.limit or 0) // self.rule["point_value"]
                why = ("mb_rd_share", {"n": mb.group(most),
                                       "amount": format_amount(exc.limit or 0, self.cart.currency)})
        if why is not None:
            self.term.beep("error")
            self.field.clear()
            self.error = why
            return None
        self.finish({"points": points, "amount": amount})
        return None

    def render(self):
        t = self.t
        cur = self.cart.currency
        most = self.most()
        rows = [t("mb_rd_balance_is", n=mb.group(self.balance))]
        if self.error is not None:
            rows.append(t(self.error[0], **self.error[1]))
        elif most:
            rows.append(t("mb_rd_most", n=mb.group(most),
                          amount=format_amount(most * self.rule["point_value"], cur)))
        else:
            rows.append(t("mb_rd_none"))
        self.term.show(t("mb_rd_title"), rows, t("footer_entry"), masked=self.field.shown(),
                       alert="error" if self.error else None)


class EraseFlow(Flow):
    """A supervisor erases a member: the phone, the name, the points and their history
    leave the terminal; the number stays retired, so past sales name no one."""
    NAME = "member_erase"
    INITIAL = "supervisor"
    STATES = {
        "supervisor": {"enter": "ask_supervisor", "timeout": None, "on": {}},
        "find": {"enter": "ask_member", "timeout": None, "on": {}},
        "confirm": {"timeout": ENTRY,
                    "on": {keys.ENTER: "erase", keys.CANCEL: "cancel", "timeout": "cancel"}},
        "done": {"timeout": 8000,
                 "on": {keys.ENTER: "cancel", keys.CANCEL: "cancel", "timeout": "cancel"}},
    }

    def __init__(self, term):
        Flow.__init__(self, term)
        self.supervisor = None
        self.member = None

    def ask_supervisor(self):
        from firmware.flows.supervisor import SupervisorFlow
        self.term.push(SupervisorFlow(self.term, "mb_erase"))

    def ask_member(self):
        self.term.push(MemberFlow(self.term, None, enrol=False))

    def child_done(self, child, result):
        if child.NAME not in ("supervisor", "member"):
            return None
        if result is None:
            self.finish(None)
            return None
        if child.NAME == "supervisor":
            self.supervisor = result
            return "find"
        self.member = result
        return "confirm"

    def erase(self, ev):
        from firmware.core.store import is_fault
        number = self.member["number"]
        try:
            _store(self.term).erase(number)
        except Exception as exc:
            if is_fault(exc):
                self.finish(None)
                return None
            raise
        # the audit names the number (which now points to no one), never the phone or name
        self.term.store.audit("member_erased", self.supervisor["id"],
                              "member %s for %s" % (number, _me(self.term) or "-"))
        self.term.beep("ok")
        return "done"

    def render(self):
        t = self.t
        if self.state == "confirm":
            self.term.show(t("mb_erase"), [t("mb_erase_confirm"), self.member["masked"],
                                           t("mb_erase_keeps")], t("footer_confirm"), alert="warn")
        elif self.state == "done":
            self.term.show(t("mb_erase"), [t("mb_erased"), t("mb_erased_2")], t("footer_ok"),
                           alert="ok")


class MembersMenuFlow(MenuFlow):
    NAME = "members_menu"
    TITLE = "mb_menu_title"

    def entries(self):
        return [("mb_lookup", "lookup"), ("mb_enrol", "enrol"), ("mb_erase", "erase")]

    def lookup(self):
        self.term.push(MemberFlow(self.term, None))
        return None

    def enrol(self):
        self.term.push(EnrolFlow(self.term))
        return None

    def erase(self):
        self.term.push(EraseFlow(self.term))
        return None
