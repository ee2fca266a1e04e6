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
                "0400": "0410", "0401": "0410", "0420": "0430", "0421": "0430",
                "0500": "0510", "0800": "0810"}


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


def _card_message(mti, rec, config, local, track2, emv):
    """The fields a card payment's request and advice share: the common ones, the
    entry mode (DE22), track 2 (DE35), chip data (DE55) and PAN sequence (DE23)."""
    msg = {"t": mti}
    msg.update(_common(rec, config, local))
    msg["22"] = ENTRY_MODES.get(rec["entry"], "02") + "1"
    if track2:
        msg["35"] = track2
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


def financial_request(rec, config, local, track2, pin=None, original=None, emv=None):
    """0200 for a sale, refund or void; pin is (ksn_hex, block_hex) or None; emv is
    {"de55": hex of the kernel's TLVs, "pan_seq": "01" or None} for chip and tap."""
    msg = _card_message("0200", rec, config, local, track2, emv)
    if pin is not None:
        msg.update(pin_fields(pin[0], pin[1]))
    if original is not None and original.get("rrn"):
        msg["37"] = original["rrn"]
        # DE38 is the issuer's six-character code; an offline approval's Y1/Y3 is the
        # terminal's own word (DE39 of its advice), which DE38 cannot carry
        if original.get("auth_code") and not original.get("offline"):
            msg["38"] = original["auth_code"]
    return msg


def reversal_request(rec, config, local, stan, original_mti="0200"):
    """0420 reversal advice undoing rec, which went as original_mti with rec's STAN and
    DE7. It waits in the store-and-forward queue; the forwarder sends a repeat as 0421."""
    msg = {"t": "0420"}
    msg.update(_common(rec, config, local))
    msg["11"] = stan
    msg["22"] = ENTRY_MODES.get(rec["entry"], "02") + "1"
    # DE90: original MTI, STAN, DE7, acquirer and forwarding institution IDs (none).
    msg["90"] = original_mti + rec["stan"] + de7(rec["utc"]) + "0" * 22
    return msg


def advice_request(rec, config, local, track2, emv, arc):
    """0220 for a payment approved offline (repeats go as 0221): the host books what
    the terminal already approved. DE37 is the terminal's own RRN, DE39 the
    authorisation response code it approved on (Y1, Y3); no DE38, which is the
    issuer's to give."""
    msg = _card_message("0220", rec, config, local, track2, emv)
    msg["37"] = rec["rrn"]
    msg["39"] = arc
    return msg


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
