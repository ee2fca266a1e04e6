"""A batch's figures from its journal records: what the X and Z reports show.

Pure and portable: records in, one dict out (JSON-able, so a Z can be stored and laid
out again later in either language). Money is integer minor units: amounts are only
added and subtracted, never divided or rounded here; every figure is a sum of the
records' own amounts (and of the cart lines' own totals for items), so the report
agrees with the journal and the receipts to the minor unit.

What counts (docs/close-of-day.md, "X and Z reports", says the same for people):

  sales     records of kind "sale" in state "approved" (offline approvals included,
            uploaded or not)
  refunds   kind "refund", state "approved"
  voids     kind "void", state "approved": the void record carries the sale's amount.
            A voided sale is in state "voided", so it is not a sale any more: it is
            counted once, under voids, and in no net.
  net       sales - refunds. Voids are shown beside it, never in it.

Nothing else moves money on the report: declined records are counted under declines
(with those the host declined after an offline upload apart), records still without
an outcome (created, sending, offline_pending, reversal_pending) under unresolved, and
failed and reversed ones not at all.

Every breakdown (method; card brand and card entry mode; QR channel and QR entry; the
operator; the local hour) is a "tally" of the same records:
  {"sale_n", "sale", "refund_n", "refund", "void_n", "void", "net"}
A record goes to the operator who was logged in when it was written and to the local
hour of its own UTC time plus its own offset (tz_min). A refund or void of a QR payment
is listed under the entry of the sale it gives back (qr: the customer's code scanned,
qr_show: the merchant's code shown), since its own record says "qr" either way.

Items and categories come from the carts: an approved sale's cart (its lines not voided,
each line's recorded total), and an approved refund's part ({"refund": part}: each
line's amount, the line named through the refunded sale's cart). A record whose cart
cannot be read, does not name its lines, or whose lines do not add up to its amount is
"not itemised": its whole amount goes to unitemised, so that

  sum of the items' sales + unitemised sales     = sales
  sum of the items' refunds + unitemised refunds = refunds

Members, points and discounts (issue 16) come from the carts too:

  members     the approved sales whose cart names a member, and the approved refunds
              of such sales: a tally ({"sale_n", "sale", "refund_n", "refund", "net"})
  points      earned and redeemed by those sales (the cart's points_earned and its
              redemption), and the points the refunds moved back (net: given back
              minus taken back) as the members' ledger recorded them, when the caller
              can ask it (points_back(refund record) -> int or None)
  discounts   what the approved sales gave: per automatic promotion (its id, names,
              lines and amount), the operators' line and cart discounts, and the money
              paid with points. Refunds give back the lines' totals (promotions
              included), so a discount is reported where it was given: on the sale.

The check ("check": {"ok", "failed"}) proves each breakdown adds up to the totals.
"""
import json

from firmware.core.dates import civil_from_days, days_from_civil

VERSION = 1
KINDS = ("sale", "refund", "void")
UNRESOLVED = ("created", "sending", "offline_pending", "reversal_pending")
MISC = "misc"               # the item key of keyed amounts (cart lines of kind "misc")
NO_CATEGORY = "-"           # the category key of items in none (and keyed amounts)
TALLY_FIELDS = ("sale_n", "sale", "refund_n", "refund", "void_n", "void", "net")


def tally():
    return {"sale_n": 0, "sale": 0, "refund_n": 0, "refund": 0, "void_n": 0, "void": 0,
            "net": 0}


def _count(t, kind, amount):
    t[kind + "_n"] += 1
    t[kind] += amount
    if kind == "sale":
        t["net"] += amount
    elif kind == "refund":
        t["net"] -= amount


def _group(groups, key, kind, amount):
    t = groups.get(key)
    if t is None:
        t = groups[key] = tally()
    _count(t, kind, amount)


# -- local time ----------------------------------------------------------------------

def local_minute(utc, tz_min):
    """'YYYY-MM-DD HH:MM' local, from a record's UTC stamp (YYYY-MM-DDTHH:MM:SSZ) and its
    offset in minutes; "" when the stamp is not one."""
    try:
        y, mo, d = int(utc[0:4]), int(utc[5:7]), int(utc[8:10])
        minutes = int(utc[11:13]) * 60 + int(utc[14:16]) + (tz_min or 0)
    except (ValueError, TypeError, IndexError):
        return ""
    days = days_from_civil(y, mo, d) + minutes // 1440
    minutes = minutes % 1440
    y, mo, d = civil_from_days(days)
    return "%04d-%02d-%02d %02d:%02d" % (y, mo, d, minutes // 60, minutes % 60)


# -- carts ---------------------------------------------------------------------------

def _json(text):
    if not text:
        return None
    try:
        d = json.loads(text)
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


def _active_lines(cart):
    """[(index, line dict)] of the lines not voided, or None when cart is no cart copy."""
    lines = cart.get("lines")
    if not isinstance(lines, list):
        return None
    out = []
    for i in range(len(lines)):
        line = lines[i]
        if not isinstance(line, dict):
            return None
        if not line.get("void"):
            out.append((i, line))
    return out


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _item_key(line):
    if line.get("kind") == "item" and line.get("item_id") is not None:
        return "i%s" % (line.get("item_id"),)
    return MISC


class _Items:
    """Items and categories of the batch, and what could not be itemised."""

    def __init__(self, category_of):
        self.category_of = category_of
        self.items = {}
        self.categories = {}
        self.unitemised = {"sale_n": 0, "sale": 0, "refund_n": 0, "refund": 0}
        self._cats = {}             # item key -> category key (asked once an item)

    def _item(self, line):
        key = _item_key(line)
        item = self.items.get(key)
        if item is None:
            if key == MISC:
                item = {"name_en": "", "name_zh": "", "plu": None}
            else:
                item = {"name_en": line.get("name_en") or "", "name_zh": line.get("name_zh") or "",
                        "plu": line.get("plu")}
            item.update({"cat": self._category(key, line), "n": 0, "g": 0, "rn": 0, "rg": 0,
                         "sale": 0, "refund": 0, "net": 0})
            self.items[key] = item
        return item

    def _category(self, key, line):
        cat = None
        if key != MISC and self.category_of is not None:
            try:
                cat = self.category_of(line.get("item_id"))
            except Exception:           # a catalogue that cannot answer: "Other"
                cat = None
        ckey = NO_CATEGORY
        if cat is not None:
            ckey = "%s" % (cat[0],)
            if ckey not in self.categories:
                self.categories[ckey] = {"name_en": cat[1] or "", "name_zh": cat[2] or "",
                                         "sale": 0, "refund": 0, "net": 0}
        if ckey not in self.categories:
            self.categories[ckey] = {"name_en": "", "name_zh": "", "sale": 0, "refund": 0,
                                     "net": 0}
        return ckey

    def _book(self, item, kind, amount):
        cat = self.categories[item["cat"]]
        item[kind] += amount
        cat[kind] += amount
        sign = 1 if kind == "sale" else -1
        item["net"] += sign * amount
        cat["net"] += sign * amount

    def _not_itemised(self, kind, amount):
        self.unitemised[kind + "_n"] += 1
        self.unitemised[kind] += amount

    def sale(self, rec, cart=None):
        if cart is None:
            cart = _json(rec.get("cart"))
        lines = _active_lines(cart) if cart is not None else None
        if not lines or not self._adds_up(lines, "total", rec["amount"]):
            self._not_itemised("sale", rec["amount"])
            return
        for _, line in lines:
            item = self._item(line)
            if line.get("grams") is not None:
                item["g"] += line["grams"]
            else:
                item["n"] += line.get("quantity") or 0
            self._book(item, "sale", line["total"])

    def refund(self, rec, sale):
        d = _json(rec.get("cart"))
        part = d.get("refund") if d is not None else None
        sold = _json(sale.get("cart")) if sale is not None else None
        if not isinstance(part, dict) or sold is None or not isinstance(sold.get("lines"), list):
            self._not_itemised("refund", rec["amount"])
            return
        lines = part.get("lines")
        if not isinstance(lines, list) or not lines \
                or not self._adds_up([(0, x) for x in lines], "amount", rec["amount"]):
            self._not_itemised("refund", rec["amount"])
            return
        named = []
        for back in lines:
            index = back.get("line")
            if not _int(index) or not 0 <= index < len(sold["lines"]) \
                    or not isinstance(sold["lines"][index], dict) or not _int(back.get("measure")):
                self._not_itemised("refund", rec["amount"])
                return
            named.append((sold["lines"][index], back))
        for line, back in named:
            item = self._item(line)
            if line.get("grams") is not None:
                item["rg"] += back["measure"]
            else:
                item["rn"] += back["measure"]
            self._book(item, "refund", back["amount"])

    @staticmethod
    def _adds_up(lines, field, amount):
        total = 0
        for _, line in lines:
            value = line.get(field)
            if not _int(value):
                return False
            total += value
        return total == amount


# -- the summary ---------------------------------------------------------------------

class _Loyalty:
    """Member sales, points and discounts of the batch (see the module's doc)."""

    def __init__(self, points_back):
        self.points_back = points_back
        self.members = {"sale_n": 0, "sale": 0, "refund_n": 0, "refund": 0, "net": 0}
        self.points = {"earned": 0, "redeemed": 0, "back": 0, "back_known": points_back is not None}
        self.discounts = {"promotions": {}, "line": 0, "cart": 0, "points": 0}

    def sale(self, rec, cart):
        if cart is None:
            return
        member = cart.get("member")
        if isinstance(member, dict) and member.get("number"):
            _count(self.members, "sale", rec["amount"])
            earned = cart.get("points_earned")
            if _int(earned):
                self.points["earned"] += earned
            redeem = cart.get("redeem")
            if isinstance(redeem, dict) and _int(redeem.get("points")):
                self.points["redeemed"] += redeem["points"]
        lines = _active_lines(cart)
        if not lines:
            return
        d = self.discounts
        for _, line in lines:
            for field, key in (("line_discount", "line"), ("cart_discount", "cart"),
                               ("points_discount", "points")):
                if _int(line.get(field)):
                    d[key] += line[field]
            promo = line.get("promo")
            amount = line.get("promo_discount")
            if isinstance(promo, dict) and _int(amount) and amount:
                pid = "%s" % (promo.get("id"),)
                got = d["promotions"].get(pid)
                if got is None:
                    got = d["promotions"][pid] = {"name_en": promo.get("name_en") or pid,
                                                  "name_zh": promo.get("name_zh") or "",
                                                  "n": 0, "amount": 0}
                got["n"] += 1
                got["amount"] += amount

    def refund(self, rec, sale):
        cart = _json(sale.get("cart")) if sale is not None else None
        member = cart.get("member") if cart is not None else None
        if not (isinstance(member, dict) and member.get("number")):
            return
        _count(self.members, "refund", rec["amount"])
        if self.points_back is not None:
            back = self.points_back(rec)
            if _int(back):
                self.points["back"] += back


def summarize(records, originals=None, category_of=None, currency=None, points_back=None):
    """The figures of one batch.

    records      the batch's journal records (journal.find(batch=n)), any order
    originals    {id: record} of sales refunded by these records that are not among
                 them (sold in an earlier batch), so a refund of lines can name its items
    category_of  callable(item_id) -> (category key, name_en, name_zh) or None (no
                 category); None: every item under "Other"
    points_back  callable(refund record) -> the points that refund moved back to its
                 member (given back minus taken back), or None when not known
    currency     the report's currency (the terminal's); records in another are left out
                 and counted in "other_currency". None: the first record's.
    """
    records = sorted(records, key=lambda r: r["id"])
    by_id = {}
    for rec in records:
        by_id[rec["id"]] = rec
    if currency is None:
        currency = records[0]["currency"] if records else ""
    out = {
        "v": VERSION, "currency": currency, "records": len(records),
        "first_utc": "", "last_utc": "", "first_local": "", "last_local": "",
        "total": tally(), "methods": {}, "card_brands": {}, "card_entries": {},
        "qr_channels": {}, "qr_entries": {}, "operators": {}, "hours": {},
        "offline_pending": {"n": 0, "amount": 0},
        "declines": {"n": 0, "amount": 0, "after_upload_n": 0, "after_upload": 0},
        "unresolved": {"n": 0, "amount": 0},
        "other_currency": 0,
    }
    items = _Items(category_of)
    loyalty = _Loyalty(points_back)
    hour_of = {}                # (utc up to the hour, tz_min) -> local hour key
    first = last = None
    for rec in records:
        if rec["currency"] != currency:
            out["other_currency"] += 1
            continue
        if rec["utc"]:
            if first is None or rec["utc"] < first["utc"]:
                first = rec
            if last is None or rec["utc"] > last["utc"]:
                last = rec
        state, kind, amount = rec["state"], rec["kind"], rec["amount"]
        if state == "declined":
            dec = out["declines"]
            dec["n"] += 1
            dec["amount"] += amount
            if rec["upload"] == "declined":
                dec["after_upload_n"] += 1
                dec["after_upload"] += amount
            continue
        if state in UNRESOLVED:
            out["unresolved"]["n"] += 1
            out["unresolved"]["amount"] += amount
            continue
        if state != "approved" or kind not in KINDS:
            continue                # failed, reversed, voided (counted by its void)
        _count(out["total"], kind, amount)
        method = rec["method"]
        _group(out["methods"], method, kind, amount)
        if method == "card":
            _group(out["card_brands"], rec["card_label"], kind, amount)
            _group(out["card_entries"], rec["entry"], kind, amount)
        elif method == "qr":
            entry = rec["entry"]
            if kind != "sale" and rec["original_id"]:
                sale = by_id.get(rec["original_id"]) or (originals or {}).get(rec["original_id"])
                if sale is not None and sale["entry"]:
                    entry = sale["entry"]
            _group(out["qr_channels"], rec["card_label"], kind, amount)
            _group(out["qr_entries"], entry, kind, amount)
        _group(out["operators"], rec["operator"], kind, amount)
        # an offset of whole hours keeps a UTC hour in one local hour; one of 330 or 345
        # minutes splits it, so then the minute decides
        when = (rec["utc"][:16] if rec["tz_min"] % 60 else rec["utc"][:13], rec["tz_min"])
        hour = hour_of.get(when)
        if hour is None:
            hour = hour_of[when] = local_minute(rec["utc"], rec["tz_min"])[:13]
        _group(out["hours"], hour, kind, amount)
        if kind == "sale":
            if rec["offline"] and rec["upload"] == "pending":
                out["offline_pending"]["n"] += 1
                out["offline_pending"]["amount"] += amount
            cart = _json(rec.get("cart"))
            items.sale(rec, cart)
            loyalty.sale(rec, cart)
        elif kind == "refund":
            sale = None
            if rec["original_id"]:
                sale = by_id.get(rec["original_id"]) or (originals or {}).get(rec["original_id"])
            items.refund(rec, sale)
            loyalty.refund(rec, sale)
    if first is not None:
        out["first_utc"], out["last_utc"] = first["utc"], last["utc"]
        out["first_local"] = local_minute(first["utc"], first["tz_min"])
        out["last_local"] = local_minute(last["utc"], last["tz_min"])
    out["items"] = items.items
    out["categories"] = items.categories
    out["unitemised"] = items.unitemised
    out["members"] = loyalty.members
    out["points"] = loyalty.points
    out["discounts"] = loyalty.discounts
    out["check"] = check(out)
    return out


def refunded_sales(records):
    """The ids of the sales that records refund and that are not among them: what
    summarize()'s originals must hold (the caller reads them, one get() each)."""
    ids = {}
    for rec in records:
        ids[rec["id"]] = True
    wanted = []
    for rec in records:
        if rec["kind"] == "refund" and rec["state"] == "approved" and rec["original_id"] \
                and rec["original_id"] not in ids and rec["original_id"] not in wanted:
            wanted.append(rec["original_id"])
    return wanted


# -- the check -----------------------------------------------------------------------

def _sum(groups, fields=TALLY_FIELDS):
    out = {}
    for f in fields:
        out[f] = 0
    for key in groups:
        for f in fields:
            out[f] += groups[key][f]
    return out


def _same(a, b, fields=TALLY_FIELDS):
    for f in fields:
        if a[f] != b[f]:
            return False
    return True


def check(s):
    """{"ok", "failed": [names]}: every breakdown of s adds up to its totals."""
    failed = []
    total = s["total"]
    t = total
    if t["net"] != t["sale"] - t["refund"]:
        failed.append("net")
    for name in ("methods", "operators", "hours"):
        if not _same(_sum(s[name]), total):
            failed.append(name)
    for method, names in (("card", ("card_brands", "card_entries")),
                          ("qr", ("qr_channels", "qr_entries"))):
        want = s["methods"].get(method) or tally()
        for name in names:
            if not _same(_sum(s[name]), want):
                failed.append(name)
    money = ("sale", "refund", "net")
    items = _sum(s["items"], money)
    if not _same(_sum(s["categories"], money), items, money):
        failed.append("categories")
    un = s["unitemised"]
    if items["sale"] + un["sale"] != t["sale"] or items["refund"] + un["refund"] != t["refund"] \
            or items["net"] != (t["sale"] - un["sale"]) - (t["refund"] - un["refund"]):
        failed.append("items")
    m = s.get("members")            # a stored Z from before issue 16 has none
    if m is not None and (m["sale"] > t["sale"] or m["refund"] > t["refund"]
                          or m["net"] != m["sale"] - m["refund"]):
        failed.append("members")
    return {"ok": not failed, "failed": failed}
