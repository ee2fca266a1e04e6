"""Receipts for journal records, in the terminal's language, 32 columns.

The card number is printed as its last four digits only; nothing else of the card
(track data, expiry, PIN) is ever on paper.
"""
from firmware.core.money import format_amount
from firmware.ui.receipt import Receipt

KIND_IDS = {"sale": "rcpt_sale", "refund": "rcpt_refund", "void": "rcpt_void"}
ENTRY_IDS = {"swipe": "entry_swipe", "fallback": "entry_fallback", "chip": "entry_chip",
             "tap": "entry_tap", "manual": "entry_manual"}
METHOD_IDS = {"card": "rcpt_card", "cash": "rcpt_cash", "qr": "rcpt_qr"}

def _local(rec):
    """The record's local date and time from its UTC stamp and offset."""
    utc = rec["utc"]           # YYYY-MM-DDTHH:MM:SSZ
    if len(utc) < 19:
        return utc, ""
    y, mo, d = int(utc[0:4]), int(utc[5:7]), int(utc[8:10])
    minutes = int(utc[11:13]) * 60 + int(utc[14:16]) + rec["tz_min"]
    days = 0
    while minutes < 0:
        minutes += 1440
        days -= 1
    while minutes >= 1440:
        minutes -= 1440
        days += 1
    if days:
        y, mo, d = _add_days(y, mo, d, days)
    return "%04d-%02d-%02d" % (y, mo, d), "%02d:%02d:%s" % (minutes // 60, minutes % 60, utc[17:19])


def _add_days(y, mo, d, days):
    lengths = [31, 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28,
               31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    d += days
    if d < 1:
        mo -= 1
        if mo < 1:
            mo, y = 12, y - 1
        d = [31, 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28,
             31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1]
    elif d > lengths[mo - 1]:
        d = 1
        mo += 1
        if mo > 12:
            mo, y = 1, y + 1
    return y, mo, d


def _cart(rec):
    """The cart an item sale's record carries, or None (a keyed amount, or a copy this
    release cannot read: the receipt then has the total alone)."""
    if not rec.get("cart"):
        return None
    import json
    from firmware.retail.cart import Cart, CartError
    try:
        return Cart.from_dict(json.loads(rec["cart"]))
    except (ValueError, KeyError, TypeError, CartError):
        return None


def build(rec, config, t, copy="merchant", synced=True, reprint=False, original=None,
          member_rows=None):
    """A Receipt for a journal record. copy: merchant | customer. member_rows: a member's
    sale's rows from the members' store (firmware/retail/loyalty.receipt_block)."""
    r = Receipt(lang=t.lang)
    term = config["terminal"]
    cur = rec["currency"]
    r.add(term["merchant_name"], "center", bold=True)
    r.add(term["merchant_address"], "center")
    r.pair("TID " + term["id"], "MID " + term["merchant_id"])
    date, time = _local(rec)
    r.pair(date, time + ("" if synced else "?"))
    if not synced:
        r.add(t("rcpt_time_unverified"), "center")
    r.rule()
    r.add(t(KIND_IDS.get(rec["kind"], "rcpt_sale")) + " - " +
          t(METHOD_IDS.get(rec["method"], "rcpt_cash")), "center", bold=True)
    if rec["method"] == "qr":           # the channel and the code, masked as stored
        r.pair(rec["card_label"] or t("rcpt_qr"), rec["pan_masked"])
    if rec["method"] == "card":
        r.pair(rec["card_label"] or t("rcpt_card"), "**** " + rec["last4"])
        r.pair(t("rcpt_entry"), t(ENTRY_IDS.get(rec["entry"], "entry_swipe")))
    if rec["aid"]:                      # chip and contactless: what disputes need
        r.pair(rec["app_label"] or "AID", rec["aid"])
        r.pair("TVR " + rec["tvr"], "TSI " + rec["tsi"])
        if rec["cryptogram"]:
            r.pair(t("rcpt_cryptogram"), rec["cryptogram"])
    if rec["stan"]:                     # cash never goes to the host: no STAN
        r.pair(t("rcpt_stan"), rec["stan"])
    if rec["rrn"] and rec["method"] == "qr":
        r.add(t("rcpt_qr_txn"))            # the acquirer's transaction id: long
        r.add(rec["rrn"], "right")
    elif rec["rrn"]:
        r.pair(t("rcpt_rrn"), rec["rrn"])
    if rec["auth_code"]:
        r.pair(t("rcpt_auth"), rec["auth_code"])
    if original is not None:
        r.pair(t("rcpt_original"), "#%d" % original["id"] +
               ((" STAN " + original["stan"]) if original["stan"] else ""))
    r.pair(t("rcpt_txn"), "#%d" % rec["id"])
    r.rule()
    sign = "-" if rec["kind"] in ("refund", "void") else ""
    cart = _cart(rec)
    if cart is not None:                # an item sale: its lines, tax and total
        from firmware.retail.receipt_lines import add_lines, add_totals
        add_lines(r, cart, t)
        add_totals(r, cart, t, total=False, member_rows=member_rows)
        r.rule()
    elif rec["kind"] == "refund" and original is not None:
        # a refund of items: the lines it gives back, with the sale's names and prices
        from firmware.retail.refund import part_of, sold_cart
        part = part_of(rec)
        sold = sold_cart(original) if part is not None else None
        if sold is not None:
            from firmware.retail.receipt_lines import itemise_refund
            itemise_refund(r, sold, part, t, total=False)
            r.rule()
    r.pair(t("rcpt_total"), sign + format_amount(rec["amount"], cur, with_code=True), bold=True)
    if rec["method"] == "cash" and rec["tendered"] and rec["kind"] == "sale":
        r.pair(t("rcpt_tendered"), format_amount(rec["tendered"], cur))
        r.pair(t("rcpt_change"), format_amount(rec["tendered"] - rec["amount"], cur))
    r.rule()
    if rec["offline"] and rec["state"] == "approved":
        r.add(t("rcpt_offline"), "center", bold=True, size=2)
        if rec["upload"] != "uploaded":
            r.add(t("rcpt_pending_upload"), "center")
    elif rec["state"] == "approved" or rec["state"] == "voided":
        r.add(t("rcpt_approved"), "center", bold=True, size=2)
        if rec["state"] == "voided":
            r.add(t("rcpt_voided_later"), "center")
    elif rec["state"] == "declined" and rec["method"] == "qr" and rec["reason"]:
        r.add(t("rcpt_declined"), "center", bold=True, size=2)
        r.add(t(rec["reason"]), "center")
    elif rec["state"] == "declined":
        r.add(t("rcpt_declined"), "center", bold=True, size=2)
        r.add(t("rc_" + rec["rc"]) if t("rc_" + rec["rc"]) != "rc_" + rec["rc"] else
              t("rc_other", rc=rec["rc"]), "center")
    elif rec["state"] == "sending":     # a QR refund or void still being asked
        r.add(t("pending_word"), "center", bold=True, size=2)
        r.add(t("qr_pending"), "center")
    else:
        r.add(t("rcpt_not_charged"), "center", bold=True)
        if rec["reason"]:
            r.add(t(rec["reason"]), "center")
    if rec["method"] == "card" and rec["state"] == "approved" and rec["cvm"] == "pin":
        r.add(t("rcpt_pin_verified"), "center")
    r.blank()
    if rec["kind"] == "sale" and rec["state"] == "approved":
        # what a refund scans to pick this sale (online or offline approved; see
        # retail/receipt_code.py): never on a sale that took no money or was voided
        from firmware.retail.receipt_code import encode
        r.barcode(encode(term["id"], rec["id"]))
    r.add(t("rcpt_merchant_copy") if copy == "merchant" else t("rcpt_customer_copy"), "center")
    if reprint:
        r.add(t("rcpt_reprint"), "center", bold=True)
    r.add(t("rcpt_thanks"), "center")
    r.kick_drawer = rec["method"] == "cash" and copy == "merchant" and not reprint \
        and rec["state"] == "approved"
    return r


def declined_notice(rec, config, t, synced=True):
    """The printed notice of an offline approval the host declined after upload: the
    merchant was not paid and must contact the customer."""
    r = Receipt(lang=t.lang)
    term = config["terminal"]
    r.add(t("rcpt_notice"), "center", bold=True, size=2)
    r.add(t("rcpt_declined_after"), "center", bold=True)
    r.pair("TID " + term["id"], "MID " + term["merchant_id"])
    date, time = _local(rec)
    r.pair(date, time + ("" if synced else "?"))
    r.rule()
    r.pair(rec["card_label"] or t("rcpt_card"), "**** " + rec["last4"])
    r.pair(t("rcpt_stan"), rec["stan"])
    r.pair(t("rcpt_rrn"), rec["rrn"])
    r.pair(t("rcpt_txn"), "#%d" % rec["id"])
    r.pair(t("rcpt_total"), format_amount(rec["amount"], rec["currency"], with_code=True),
           bold=True)
    r.add(t("rc_" + rec["rc"]) if t("rc_" + rec["rc"]) != "rc_" + rec["rc"] else
          t("rc_other", rc=rec["rc"]), "center")
    r.rule()
    r.add(t("rcpt_not_paid"), "center", bold=True)
    r.add(t("rcpt_contact_customer"), "center")
    return r
