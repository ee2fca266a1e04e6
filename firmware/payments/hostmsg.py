"""ISO 8583 request dicts of this terminal's host profile (docs/host-protocol.md).

A message is a dict: "t" the MTI, data elements keyed by their number as a string,
values as str (binary fields as upper-case hex). The driver encodes it.
"""
from firmware.core.money import numeric

FORMAT4_BYTES = 16       # an ISO 9564-1 format 4 (AES) PIN block; format 0 is 8

PROC_SALE = "000000"
PROC_VOID = "020000"
PROC_REFUND = "200000"
PROCESSING = {"sale": PROC_SALE, "void": PROC_VOID, "refund": PROC_REFUND}

# POS entry mode (DE22): PAN entry (2 digits) + PIN entry capability (1 digit: 1 = can
# take a PIN). 02 magnetic stripe, 80 fallback to stripe after a chip failure.
ENTRY_MODES = {"swipe": "02", "fallback": "80", "chip": "05", "tap": "07", "manual": "01"}
RESPONSE_MTI = {"0100": "0110", "0200": "0210", "0220": "0230", "0221": "0230",
                "0320": "0330", "0321": "0330",
                "0400": "0410", "0401": "0410", "0420": "0430", "0421": "0430",
                "0500": "0510", "0501": "0510", "0800": "0810"}

# Settlement (docs/host-protocol.md, section 10): DE3 of the 0500 that sends the batch's
# totals, and of the one that closes it after a batch upload (0320s)
PROC_SETTLE = "920000"
PROC_SETTLE_AFTER_UPLOAD = "960000"
SETTLE_BALANCED = "00"          # 0510: the host's totals agree, the batch is closed
SETTLE_OUT_OF_BALANCE = "95"    # 0510: they differ, the host wants the batch uploaded
COUNT_MAX = 999                 # DE63's counts are n3


def de7(utc):
    """MMDDhhmmss from a record's YYYY-MM-DDTHH:MM:SSZ stamp."""
    return utc[5:7] + utc[8:10] + utc[11:13] + utc[14:16] + utc[17:19]


def local_fields(local):
    """DE12 hhmmss and DE13 MMDD of the local time (y, mo, d, h, mi, s)."""
    return "%02d%02d%02d" % (local[3], local[4], local[5]), "%02d%02d" % (local[1], local[2])


def amount12(minor):
    return "%012d" % minor


def _common(rec, config, local):
    t12, t13 = local_fields(local)
    return {"3": PROCESSING.get(rec["kind"], PROC_SALE), "4": amount12(rec["amount"]),
            "7": de7(rec["utc"]), "11": rec["stan"], "12": t12, "13": t13,
            "25": "00", "41": config["terminal"]["id"], "42": config["terminal"]["merchant_id"],
            "49": numeric(rec["currency"])}


def pan_expiry(track2):
    """(PAN, YYMM) of track 2 data (a stripe's, or a chip's tag 57 as PAN=YYMM...), or
    (None, None) when it has no separator."""
    for sep in ("=", "D"):
        if track2 and sep in track2:
            pan, rest = track2.split(sep, 1)
            return pan, (rest[:4] if len(rest) >= 4 and rest[:4].isdigit() else None)
    return None, None


def card_fields(track2=None, pan=None, expiry=None):
    """Where the card travels in an online request (docs/host-protocol.md, DE2/DE35):
    track 2 as read (the stripe's, or the chip's track 2 equivalent, tag 57) in DE35;
    without one, the PAN in DE2 and the expiry in DE14. Never both."""
    if track2:
        return {"35": track2}
    out = {}
    if pan:
        out["2"] = pan
    if expiry:
        out["14"] = expiry
    return out


def _card_message(mti, rec, config, local, card, emv):
    """The fields a card payment's request and advice share: the common ones, the
    entry mode (DE22), the card (card_fields), chip data (DE55) and PAN sequence (DE23)."""
    msg = {"t": mti}
    msg.update(_common(rec, config, local))
    msg["22"] = ENTRY_MODES.get(rec["entry"], "02") + "1"
    msg.update(card)
    if emv is not None:
        msg["55"] = emv["de55"]
        if emv.get("pan_seq"):
            msg["23"] = ("000" + str(emv["pan_seq"]))[-3:]
    return msg


def pin_fields(ksn_hex, block_hex):
    """Where an encrypted PIN block and its KSN travel (docs/host-protocol.md): DE53 the
    KSN in hex (20 digits for TDES DUKPT, 24 for AES DUKPT); an 8-byte ISO format 0
    block in DE52 (b8, as ISO 8583:1987 has it), a 16-byte ISO format 4 block (AES) in
    DE61, a private binary LLLVAR, since DE52 has no room for it."""
    fields = {"53": ksn_hex}
    if len(block_hex) == 2 * FORMAT4_BYTES:
        fields["61"] = block_hex
    else:
        fields["52"] = block_hex
    return fields


def financial_request(rec, config, local, track2, pin=None, original=None, emv=None, pan=None,
                      expiry=None):
    """0200 for a sale, refund or void; pin is (ksn_hex, block_hex) or None; emv is
    {"de55": hex of the kernel's TLVs, "pan_seq": "01" or None} for chip and tap.
    track2 goes in DE35 (a chip's too: its tag 57); pan and expiry (DE2, DE14) only
    when there is no track 2 (a card read without one)."""
    msg = _card_message("0200", rec, config, local, card_fields(track2, pan, expiry), emv)
    if pin is not None:
        msg.update(pin_fields(pin[0], pin[1]))
    if original is not None and original.get("rrn"):
        msg["37"] = original["rrn"]
        # DE38 here is the issuer's code of the sale being refunded; an offline
        # approval's Y1/Y3 is the card's own decision, which no issuer gave
        if original.get("auth_code") and not original.get("offline"):
            msg["38"] = original["auth_code"]
    return msg


# Why a reversal is sent (DE39 of 0420/0421, ISO 8583:1987 response codes; the table
# is in docs/host-protocol.md, section 9): the journal's reason -> the code. 68 and 20:
# the terminal does not know what the host did; 17: someone meant to undo it; 22: the
# terminal or the card failed after the request went.
REVERSAL_REASONS = {
    "reason_no_reply": "68",            # response received too late (or not at all)
    "reason_link_lost": "68",           # the connection broke after the request went
    "reason_offline_instead": "68",     # (the same, then approved offline)
    "reason_bad_reply": "20",           # invalid response: an answer not to be trusted
    "reason_cancelled": "17",           # customer cancellation: CANCEL after sending
    "reason_card_removed": "17",        # the card pulled out before the end
    "reason_voided": "17",              # the merchant voided the sale
    "reason_card_declined": "22",       # the chip refused after the host approved
    "reason_restart": "22",             # suspected malfunction: power lost mid-request
}
REVERSAL_OTHER = "22"


def reversal_reason(reason, purpose=None):
    """DE39 of a reversal: why it is sent (REVERSAL_REASONS)."""
    if reason in REVERSAL_REASONS:
        return REVERSAL_REASONS[reason]
    return REVERSAL_REASONS["reason_voided"] if purpose == "void" else REVERSAL_OTHER


def reversal_request(rec, config, local, stan, original_mti="0200", purpose=None):
    """0420 reversal advice undoing rec, which went as original_mti with rec's STAN and
    DE7. It waits in the store-and-forward queue; the forwarder sends it (a repeat as
    0421) through transmission(), which stamps DE7 with the time of each sending: the
    original's DE7 is in DE90. DE39 says why (reversal_reason of rec's reason). No card
    data: DE90 and DE41 name the original, and the terminal keeps no PAN for it."""
    msg = {"t": "0420"}
    msg.update(_common(rec, config, local))
    del msg["7"]
    msg["11"] = stan
    msg["22"] = ENTRY_MODES.get(rec["entry"], "02") + "1"
    msg["39"] = reversal_reason(rec.get("reason"), purpose)
    # DE90: original MTI, STAN, DE7, acquirer and forwarding institution IDs (none).
    msg["90"] = original_mti + rec["stan"] + de7(rec["utc"]) + "0" * 22
    return msg


def advice_code(arc):
    """DE38 of an advice: the offline approval code (Y1, Y3), an6 space-filled."""
    return (str(arc or "Y1") + "      ")[:6]


def advice_request(rec, config, local, pan, expiry, emv, arc):
    """0220 for a payment approved offline (repeats go as 0221): the host books what
    the terminal already approved. The card as DE2 PAN and DE14 expiry, never track
    data (the queue keeps the advice until the host has it: no track 2 stored after
    the sale); DE37 the terminal's own RRN; DE38 the offline approval code (Y1: the
    card approved offline at once, Y3: the host could not be reached). No DE39, which
    is the host's answer."""
    msg = _card_message("0220", rec, config, local, card_fields(None, pan, expiry), emv)
    msg["37"] = rec["rrn"]
    msg["38"] = advice_code(arc)
    return msg


def upgrade_payload(payload):
    """A queued record's payload in this release's wire: (payload, changed).

    Records queued by the release before kept an advice's full track 2 (DE35) and its
    offline code in DE39, and a reversal without a reason: an advice gets DE2 and DE14
    from its track, which is dropped (track 1 too), and its code moves to DE38; a
    reversal gets DE39 (17 for a void, else 22: its cause was not kept)."""
    msg = payload.get("msg") if isinstance(payload, dict) else None
    if not isinstance(msg, dict):
        return payload, False
    mti = str(msg.get("t", ""))
    new = dict(msg)
    if mti[:3] == "022":
        if "35" in new:
            pan, expiry = pan_expiry(new.pop("35"))
            if pan and "2" not in new:
                new["2"] = pan
            if expiry and "14" not in new:
                new["14"] = expiry
        new.pop("45", None)
        if "39" in new:
            code = new.pop("39")
            if "38" not in new:
                new["38"] = advice_code(code)
    elif mti[:3] == "042" and "39" not in new:
        new["39"] = reversal_reason(None, payload.get("purpose"))
    if new == msg:
        return payload, False
    out = dict(payload)
    out["msg"] = new
    return out, True


def transmission(msg, repeat, utc):
    """The message as it goes on the wire now, from a queued record's msg: the repeat
    MTI when it went before (0221, 0421); a reversal's DE7 the time of this sending
    (utc: (y, mo, d, h, mi, s) in UTC). An advice keeps the DE7 it was recorded with:
    with DE11 and DE41 it names the advice for the host's duplicate check and for the
    DE90 of a reversal of it."""
    out = dict(msg)
    if repeat:
        out["t"] = repeat_mti(out["t"])
    if out["t"][:3] in ("040", "042"):
        out["7"] = "%02d%02d%02d%02d%02d" % tuple(utc[1:6])
    return out


_DAYS_BEFORE = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)


def offline_rrn(utc, stan):
    """The terminal's own RRN (DE37) for an offline approval, YDDDHHSSSSSS from the
    record's UTC stamp and STAN (the same shape the host's RRNs have)."""
    y, mo, d, h = int(utc[0:4]), int(utc[5:7]), int(utc[8:10]), int(utc[11:13])
    leap = 1 if mo > 2 and (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 0
    return "%d%03d%02d%s" % (y % 10, _DAYS_BEFORE[mo - 1] + d + leap, h, stan)


def repeat_mti(mti):
    """0220 -> 0221, 0420 -> 0421: the MTI of a message sent again."""
    return mti[:3] + "1"


def settlement_totals(sales_n, sales, refunds_n, refunds):
    """DE63 of a 0500: sales count n3, sales amount n12, refunds count n3, refunds amount
    n12, amounts in minor units (30 digits). A count above 999 goes as 999: the host
    cannot agree with it, answers 95 and the batch upload carries every transaction."""
    return "%03d%012d%03d%012d" % (min(sales_n, COUNT_MAX), sales, min(refunds_n, COUNT_MAX),
                                   refunds)


def settlement_request(config, stan, utc, local, batch, totals, after_upload=False):
    """0500 for the batch numbered batch (DE60, 6 digits) with its totals (DE63 of
    settlement_totals(*totals)): DE3 920000, or 960000 to close it after a batch upload.
    utc is the stamp of this transmission (DE7), local the terminal's time (DE12/13)."""
    t12, t13 = local_fields(local)
    return {"t": "0500", "3": PROC_SETTLE_AFTER_UPLOAD if after_upload else PROC_SETTLE,
            "7": de7(utc), "11": stan, "12": t12, "13": t13,
            "41": config["terminal"]["id"], "42": config["terminal"]["merchant_id"],
            "60": "%06d" % batch, "63": settlement_totals(*totals)}


def original_mti(rec):
    """How the host first heard of a journal record: 0220 (the advice of an offline
    approval) or 0200."""
    return "0220" if rec.get("offline") else "0200"


def batch_upload_request(rec, config, stan, utc):
    """0320: one transaction of the batch, as the host first heard of it, for a batch
    upload after a 0510 95. Its own STAN (DE11) and DE7 (this transmission, utc); the
    original in DE60 as its MTI, STAN and DE7 (20 digits, as DE90 begins), so the host
    books it at most once however often it is uploaded; DE12/DE13 the transaction's own
    local time; DE37/DE38 its RRN and approval code (a host's, or the offline Y1/Y3);
    DE55 the chip's data with its final cryptogram when it was read by chip or tap. No
    card number: the terminal keeps none after the sale, and DE60 names the original."""
    msg = {"t": "0320"}
    msg.update(_common(rec, config, record_local(rec["utc"], rec.get("tz_min") or 0)))
    msg["7"] = de7(utc)
    msg["11"] = stan
    msg["22"] = ENTRY_MODES.get(rec["entry"], "02") + "1"
    msg["37"] = rec.get("rrn") or offline_rrn(rec["utc"], rec["stan"])
    msg["38"] = (str(rec.get("auth_code") or "") + "      ")[:6]
    msg["60"] = original_mti(rec) + rec["stan"] + de7(rec["utc"])
    if rec.get("icc_data") and rec.get("entry") in ("chip", "tap"):
        msg["55"] = rec["icc_data"]
    return msg


def _month_days(y, mo):
    if mo == 2:
        return 29 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 28
    return 30 if mo in (4, 6, 9, 11) else 31


def record_local(utc, tz_min):
    """(y, mo, d, h, mi, s) local of a record's UTC stamp and its offset in minutes
    (less than a day either way)."""
    y, mo, d = int(utc[0:4]), int(utc[5:7]), int(utc[8:10])
    minutes = int(utc[11:13]) * 60 + int(utc[14:16]) + int(tz_min)
    if minutes < 0:
        minutes += 1440
        d -= 1
        if d < 1:
            mo -= 1
            if mo < 1:
                mo, y = 12, y - 1
            d = _month_days(y, mo)
    elif minutes >= 1440:
        minutes -= 1440
        d += 1
        if d > _month_days(y, mo):
            d, mo = 1, mo + 1
            if mo > 12:
                mo, y = 1, y + 1
    return (y, mo, d, minutes // 60, minutes % 60, int(utc[17:19]))


def network_request(config, stan, utc, code):
    """0800: code 001 sign-on, 301 echo test."""
    return {"t": "0800", "7": de7(utc), "11": stan, "41": config["terminal"]["id"], "70": code}


def check_response(request, response):
    """None when response is a believable answer to request, else why not.

    A reply that cannot be trusted is never taken as an approval: the caller reverses.
    """
    expect = RESPONSE_MTI.get(request["t"])
    if response.get("t") != expect:
        return "MTI %s, expected %s" % (response.get("t"), expect)
    if response.get("11") != request.get("11"):
        return "STAN differs"
    rc = response.get("39")
    if not rc or len(rc) != 2:
        return "no response code"
    if response.get("41") not in (None, request.get("41")):
        return "terminal ID differs"
    if "4" in request and response.get("4") not in (None, request["4"]):
        return "amount differs"
    return None
