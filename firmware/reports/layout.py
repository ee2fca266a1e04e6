"""An X or Z report laid out: rows for the 128x64 panel (18 columns, scrolled with
UP/DOWN) and a 32-column receipt, in the terminal's language (a Chinese glyph takes two
columns: firmware/ui/receipt.display_width).

The report is a document (document()): the header's facts and the batch's figures
(firmware/reports/totals.py summarize()). A Z's document is what the journal stores,
so a reprint lays out the very figures of the day, in the language of the reprint,
marked DUPLICATE. Both outputs come from one list of rows (rows()), so the panel and the
paper say the same things in the same order:

  merchant, TID and MID, X REPORT or Z REPORT, DUPLICATE (a reprint), batch, the time
  range of its records, when the report was made (and reprinted)
  TOTALS      sales, refunds, net (bold), voids (beside the net, never in it), offline
              approvals not yet uploaded, declines (after upload apart), unresolved
  BY METHOD   cash, card, QR: each its net, then its sales, refunds and voids (a count
              and an amount each, lines of nothing left out); card by brand and by entry
              mode, QR by channel and by entry (customer's code, merchant's code)
  BY OPERATOR, BY HOUR (local)   the same blocks
  ITEMS       each item: what was sold (pieces or kg) and its amount, what came back;
              then what was not itemised; CATEGORIES their net
  MEMBERS     the members' sales and refunds, the points earned and redeemed by the
              sales and moved back by the refunds
  DISCOUNTS   each automatic promotion (its name, lines, amount), the operators' line
              and cart discounts, the money paid with points
  the totals check, END OF REPORT
"""
from firmware.core.money import format_amount
from firmware.reports.totals import check
from firmware.retail.cart import format_weight
from firmware.ui.receipt import WIDTH, Receipt, display_width
from firmware.ui.screen import ROW_COLUMNS, wrap

DOC_VERSION = 1
METHOD_IDS = {"cash": "rpt_cash", "card": "rpt_card", "qr": "rpt_qr"}
METHOD_ORDER = ("cash", "card", "qr")
ENTRY_IDS = {"chip": "rpt_e_chip", "tap": "rpt_e_tap", "swipe": "rpt_e_swipe",
             "fallback": "rpt_e_fallback", "manual": "rpt_e_manual", "qr": "rpt_qr_scan",
             "qr_show": "rpt_qr_show"}


def document(report, config, batch, totals, made_utc, made_local, synced=True):
    """The report as data: report "X" or "Z", the terminal's [terminal] names, the
    batch, its totals, when it was made (UTC and local 'YYYY-MM-DD HH:MM') and whether
    the clock was synchronised then."""
    term = config["terminal"]
    return {"v": DOC_VERSION, "report": report, "batch": batch,
            "merchant": term.get("merchant_name", ""), "tid": term.get("id", ""),
            "mid": term.get("merchant_id", ""), "made_utc": made_utc,
            "made_local": made_local, "synced": bool(synced), "totals": totals}


# -- rows ----------------------------------------------------------------------------
# ("center", text, bold) | ("pair", left, right, bold) | ("rule",) | ("ids", tid, mid)

def _pair(out, left, right="", bold=False):
    out.append(("pair", left, right, bold))


def _center(out, text, bold=False):
    out.append(("center", text, bold))


def _block(out, t, money, name, tally, indent=""):
    """A tally: its name and net, then each of its kinds that has records."""
    _pair(out, indent + name, money(tally["net"]), True)
    sub = indent + "  "
    if tally["sale_n"]:
        _pair(out, sub + t("rpt_sales", n=tally["sale_n"]), money(tally["sale"]))
    if tally["refund_n"]:
        _pair(out, sub + t("rpt_refunds", n=tally["refund_n"]), money(-tally["refund"]))
    if tally["void_n"]:
        _pair(out, sub + t("rpt_voids", n=tally["void_n"]), money(tally["void"]))


def _entry_name(t, entry):
    msg = ENTRY_IDS.get(entry)
    if msg is not None:
        return t(msg)
    return entry or t("rpt_other")


def _sorted(keys):
    """Keys in a stable order, "" (nothing recorded) last."""
    named = sorted(k for k in keys if k)
    return named + [k for k in keys if not k]


def _measure(item, pieces, grams):
    parts = []
    if item[pieces]:
        parts.append("%d" % item[pieces])
    if item[grams]:
        parts.append(format_weight(item[grams]))
    return " + ".join(parts) if parts else "0"


def _name(t, d, fallback):
    if t.lang == "zh" and d.get("name_zh"):
        return d["name_zh"]
    return d.get("name_en") or d.get("name_zh") or t(fallback)


def rows(doc, t, duplicate=False, reprinted_local=""):
    """The report's rows (see the module's doc)."""
    s = doc["totals"]
    cur = s["currency"] or "USD"

    def money(minor):
        return format_amount(minor, cur)

    out = []
    if doc.get("merchant"):
        _center(out, doc["merchant"], True)
    out.append(("ids", doc.get("tid", ""), doc.get("mid", "")))
    _center(out, t("rpt_z_head" if doc["report"] == "Z" else "rpt_x_head"), True)
    if duplicate:
        _center(out, "** " + t("rpt_duplicate") + " **", True)
    _pair(out, t("rpt_batch", n=doc["batch"]), cur)
    if doc.get("settled"):                      # how the host and the terminal agreed
        _pair(out, t("rpt_settled"), t("rpt_settled_" + doc["settled"]))
    if s["first_local"]:
        _pair(out, t("rpt_from"), s["first_local"])
        _pair(out, t("rpt_to"), s["last_local"])
    _pair(out, t("rpt_made"), doc["made_local"] + ("" if doc.get("synced", True) else "?"))
    if duplicate and reprinted_local:
        _pair(out, t("rpt_reprinted"), reprinted_local)
    out.append(("rule",))

    total = s["total"]
    _center(out, t("rpt_totals"), True)
    if not (total["sale_n"] or total["refund_n"] or total["void_n"]):
        _pair(out, t("rpt_no_records"))
    _pair(out, t("rpt_sales", n=total["sale_n"]), money(total["sale"]))
    _pair(out, t("rpt_refunds", n=total["refund_n"]), money(-total["refund"]))
    _pair(out, t("rpt_net"), money(total["net"]), True)
    _pair(out, t("rpt_voids", n=total["void_n"]), money(total["void"]))
    off = s["offline_pending"]
    if off["n"]:
        _pair(out, t("rpt_offline", n=off["n"]), money(off["amount"]))
    dec = s["declines"]
    _pair(out, t("rpt_declines", n=dec["n"]), money(dec["amount"]))
    if dec["after_upload_n"]:
        _pair(out, "  " + t("rpt_declined_after", n=dec["after_upload_n"]),
              money(dec["after_upload"]))
    if s["unresolved"]["n"]:
        _pair(out, t("rpt_unresolved", n=s["unresolved"]["n"]), money(s["unresolved"]["amount"]))
    if s["other_currency"]:
        _pair(out, t("rpt_other_currency", n=s["other_currency"]))

    methods = s["methods"]
    if methods:
        out.append(("rule",))
        _center(out, t("rpt_methods"), True)
        order = [m for m in METHOD_ORDER if m in methods] + \
            [m for m in _sorted(methods) if m not in METHOD_ORDER]
        for method in order:
            _block(out, t, money, t(METHOD_IDS[method]) if method in METHOD_IDS
                   else (method or t("rpt_other")), methods[method])
            if method == "card":
                _pair(out, "  " + t("rpt_by_brand"))
                for brand in _sorted(s["card_brands"]):
                    _block(out, t, money, brand or t("rpt_other"), s["card_brands"][brand], "  ")
                _pair(out, "  " + t("rpt_by_entry"))
                for entry in _sorted(s["card_entries"]):
                    _block(out, t, money, _entry_name(t, entry), s["card_entries"][entry], "  ")
            elif method == "qr":
                _pair(out, "  " + t("rpt_by_channel"))
                for channel in _sorted(s["qr_channels"]):
                    _block(out, t, money, channel or t("rpt_other"), s["qr_channels"][channel],
                           "  ")
                _pair(out, "  " + t("rpt_by_entry"))
                for entry in _sorted(s["qr_entries"]):
                    _block(out, t, money, _entry_name(t, entry), s["qr_entries"][entry], "  ")

    if s["operators"]:
        out.append(("rule",))
        _center(out, t("rpt_operators"), True)
        for op in _sorted(s["operators"]):
            _block(out, t, money, t("rpt_operator", id=op or "-"), s["operators"][op])

    if s["hours"]:
        out.append(("rule",))
        _center(out, t("rpt_hours"), True)
        days = s["first_local"][:10] != s["last_local"][:10]
        for hour in _sorted(s["hours"]):
            label = (hour[5:10] + " " if days else "") + hour[11:13] + ":00" if hour else "?"
            _block(out, t, money, label, s["hours"][hour])

    items = s["items"]
    un = s["unitemised"]
    if items:
        out.append(("rule",))
        _center(out, t("rpt_items"), True)
        order = sorted(items, key=lambda k: (-items[k]["sale"], _name(t, items[k], "rpt_keyed")))
        for key in order:
            item = items[key]
            _pair(out, _name(t, item, "rpt_keyed"))
            _pair(out, "  " + t("rpt_sold", q=_measure(item, "n", "g")), money(item["sale"]))
            if item["refund"] or item["rn"] or item["rg"]:
                _pair(out, "  " + t("rpt_back", q=_measure(item, "rn", "rg")),
                      money(-item["refund"]))
        if un["sale_n"] or un["refund_n"]:
            _pair(out, t("rpt_unitemised"))
            if un["sale_n"]:
                _pair(out, "  " + t("rpt_sales", n=un["sale_n"]), money(un["sale"]))
            if un["refund_n"]:
                _pair(out, "  " + t("rpt_refunds", n=un["refund_n"]), money(-un["refund"]))
        cats = s["categories"]
        out.append(("rule",))
        _center(out, t("rpt_categories"), True)
        order = sorted((k for k in cats if k != "-"), key=lambda k: _name(t, cats[k], "rpt_other"))
        if "-" in cats:
            order.append("-")
        for key in order:
            _pair(out, _name(t, cats[key], "rpt_no_category"), money(cats[key]["net"]))

    _loyalty_rows(out, t, money, s)

    out.append(("rule",))
    # checked again as laid out: a stored Z proves its figures at each reprint too
    ok = s["check"]["ok"] and check(s)["ok"]
    _center(out, t("rpt_check_ok") if ok else t("rpt_check_bad"), True)
    _center(out, t("rpt_end"))
    return out


def _loyalty_rows(out, t, money, s):
    """MEMBERS and DISCOUNTS, when the batch has any (a Z stored before them has none)."""
    from firmware.retail.members import group
    m = s.get("members")
    p = s.get("points")
    if m and (m["sale_n"] or m["refund_n"]):
        out.append(("rule",))
        _center(out, t("rpt_members"), True)
        _pair(out, t("rpt_member_sales", n=m["sale_n"]), money(m["sale"]))
        if m["refund_n"]:
            _pair(out, t("rpt_member_refunds", n=m["refund_n"]), money(-m["refund"]))
        _pair(out, t("rpt_points_earned"), group(p["earned"]))
        _pair(out, t("rpt_points_redeemed"), group(p["redeemed"]))
        if m["refund_n"] and p.get("back_known"):
            _pair(out, t("rpt_points_back"), group(p["back"]))
    d = s.get("discounts")
    if d and (d["promotions"] or d["line"] or d["cart"] or d["points"]):
        out.append(("rule",))
        _center(out, t("rpt_discounts"), True)
        promos = d["promotions"]
        for pid in sorted(promos, key=lambda k: (-promos[k]["amount"], k)):
            promo = promos[pid]
            _pair(out, _name(t, promo, "rpt_other"))
            _pair(out, "  " + t("rpt_promo_lines", n=promo["n"]), money(-promo["amount"]))
        for key, msg in (("line", "rpt_disc_line"), ("cart", "rpt_disc_cart"),
                         ("points", "rpt_disc_points")):
            if d[key]:
                _pair(out, t(msg), money(-d[key]))


# -- the panel -----------------------------------------------------------------------

def _width(text):
    """display_width, without looking at each character of a text that is all ASCII (most
    rows of a report: figures, codes, English)."""
    if len(text.encode()) == len(text):
        return len(text)
    return display_width(text)


def _fit_pair(left, right, width):
    """left and right on one row of width columns, or left wrapped and right alone
    against the right edge."""
    if not right:
        return wrap(left, width) if _width(left) > width else [left]
    used = _width(left) + _width(right)
    if used + 1 <= width:
        return [left + " " * (width - used) + right]
    out = wrap(left, width)
    if display_width(right) > width:
        out.extend(wrap(right, width))
    else:
        out.append(" " * (width - display_width(right)) + right)
    return out


def screen_lines(doc, t, duplicate=False, reprinted_local="", width=ROW_COLUMNS):
    """The report as body rows of width columns, to be scrolled (nothing is cut)."""
    out = []
    for row in rows(doc, t, duplicate, reprinted_local):
        if row[0] == "rule":
            out.append("-" * width)
        elif row[0] == "center":
            out.extend(wrap(row[1], width) if _width(row[1]) > width else [row[1]])
        elif row[0] == "ids":           # a MID is 15 digits: a row each
            out.extend(_fit_pair("TID", row[1], width))
            out.extend(_fit_pair("MID", row[2], width))
        else:
            out.extend(_fit_pair(row[1], row[2], width))
    return out


# -- paper ---------------------------------------------------------------------------

def receipt(doc, t, duplicate=False, reprinted_local="", width=WIDTH):
    """The report on 58 mm paper (32 columns)."""
    from firmware.retail.receipt_lines import pair_wrapped
    r = Receipt(width=width, lang=t.lang)
    for row in rows(doc, t, duplicate, reprinted_local):
        if row[0] == "rule":
            r.rule()
        elif row[0] == "center":
            for part in (wrap(row[1], width) if _width(row[1]) > width else [row[1]]):
                r.add(part, "center", bold=row[2])
        elif row[0] == "ids":
            pair_wrapped(r, "TID " + row[1], "MID " + row[2])
        elif row[2]:
            used = _width(row[1]) + _width(row[2])
            if used + 1 <= width:           # what Receipt.pair makes, measured once
                r.add(row[1] + " " * (width - used) + row[2], "left", row[3])
            else:
                pair_wrapped(r, row[1], row[2], row[3])
        else:
            for part in (wrap(row[1], width) if _width(row[1]) > width else [row[1]]):
                r.add(part, "left", bold=row[3])
    return r
