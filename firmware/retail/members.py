"""Members and their points: the rules, without storage (docs/members.md).

Phone numbers. A member is found by the phone number typed on the keypad. [members]
says what a phone number is: phone_digits digits (11 for a mainland China mobile),
starting with one of phone_prefixes ("1"); a number typed with the country code in
front (86 138...) is taken without it. The phone is shown only masked: the first three
and the last four digits, stars between (138****5678).

Member numbers. Issued by the terminal at enrolment: 12 digits, random (never derived
from the phone), the first not 0, the last a Luhn check digit. Never 13-19 digits, so
a member number can never be taken for a card number (the log filter and the card
rules look for 13-19), and the check digit refuses a mistyped or misread one.

Member codes (what a scanner sends for a member):
  card barcode  "M" + the number, e.g. M483920174632: Code 128 (the "M" set B, the 12
                digits six set C pairs: 8 data symbols, on 58 mm paper with room), the
                card printed at enrolment. The letter keeps it apart from every item
                barcode (EAN/UPC are digits only) and from a receipt's (R...).
  member QR     "HPMEMBER:1:" + the number, e.g. HPMEMBER:1:483920174632 (format 1; QR
                alphanumeric mode), for a code shown on the member's phone.
parse_code(code) gives the member number of either, or None for anything else.

Points (all integers, one rounding each):
  earned    = floor(sum over the lines not voided of line.total x line.points_x
                    x earn rate of the tier / (one currency unit x 1000 x 1000))
            line.total is what the line was paid after every discount (promotion, line,
            cart, points); points_x is the promotions' multiplier in thousandths (1000
            = 1x); the earn rate is thousandths of a point per currency unit.
  redeemed  points x point_value minor units off the sale; at least redeem_min points,
            never more than the balance, never more than redeem_max_percent of what the
            sale comes to before the points.
  refunds   a refund of n of a sale's T minor units (after r refunded before) takes back
            F(r + n) - F(r) of the points earned and gives back G(r + n) - G(r) of the
            points redeemed, F(x) = round(earned x x / T), G likewise: any sequence of
            partial refunds adds up to exactly what the sale earned and redeemed.
"""
from firmware.core.money import CURRENCIES
from firmware.retail.tax import round_div

TIERS = ("basic", "silver", "gold")
NUMBER_DIGITS = 12
CARD_PREFIX = "M"
QR_PREFIX = "HPMEMBER:1:"
NAME_MAX = 24               # characters of a name typed on the keypad

DEFAULTS = {"enabled": True, "phone_digits": 11, "phone_prefixes": ["1"], "country_code": "86",
            "earn_basic": 1000, "earn_silver": 1500, "earn_gold": 2000, "point_value": 1,
            "redeem_min": 100, "redeem_max_percent": 50000}
PERCENT_WHOLE = 100000      # thousandths of a percent in 100 %


def rules(config):
    """The [members] settings of a configuration (the defaults for what it lacks)."""
    out = dict(DEFAULTS)
    out.update((config or {}).get("members") or {})
    return out


# -- phone numbers ------------------------------------------------------------------------
def normalise_phone(text, rule):
    """(digits, None) for a valid phone number, or (None, (message id, values)) saying
    what is wrong with it: a clear line for the screen."""
    digits = ""
    for ch in text or "":
        if "0" <= ch <= "9":
            digits += ch
    want = rule["phone_digits"]
    cc = rule.get("country_code") or ""
    if cc and len(digits) == want + len(cc) and digits.startswith(cc):
        digits = digits[len(cc):]
    if len(digits) != want:
        return None, ("mb_phone_len", {"n": "%d" % want})
    prefixes = rule.get("phone_prefixes") or []
    if prefixes:
        for p in prefixes:
            if digits.startswith(p):
                return digits, None
        return None, ("mb_phone_prefix", {"p": "/".join(prefixes)})
    return digits, None


def mask_phone(digits):
    """138****5678: the first three and the last four digits (fewer for a short one)."""
    if not digits:
        return ""
    n = len(digits)
    if n >= 9:
        head, tail = 3, 4
    elif n >= 5:
        head, tail = 2, 2
    else:
        return "*" * n
    return digits[:head] + "*" * (n - head - tail) + digits[n - tail:]


# -- member numbers and codes ---------------------------------------------------------------
def luhn_digit(digits):
    """The Luhn check digit to put after digits."""
    total = 0
    double = True
    for i in range(len(digits) - 1, -1, -1):
        d = ord(digits[i]) - 48
        if double:
            d *= 2
            if d > 9:
                d -= 9
        total += d
        double = not double
    return "%d" % ((10 - total % 10) % 10)


def valid_number(text):
    """A member number: 10 to 12 digits (12 issued), the first not 0, Luhn-checked."""
    if not isinstance(text, str) or not 10 <= len(text) <= NUMBER_DIGITS:
        return False
    for ch in text:
        if not "0" <= ch <= "9":
            return False
    return text[0] != "0" and luhn_digit(text[:-1]) == text[-1]


def new_number(random_bytes):
    """A fresh member number from the terminal's random source (random_bytes(n))."""
    raw = random_bytes(16)
    value = 0
    for b in raw:
        value = value * 256 + b
    body = "%d" % (1 + value % 9)
    value //= 9
    for k in range(NUMBER_DIGITS - 2):
        body += "%d" % (value % 10)
        value //= 10
    return body + luhn_digit(body)


def card_code(number):
    """What the member card's barcode holds."""
    return CARD_PREFIX + number


def qr_code(number):
    """What the member's QR code holds."""
    return QR_PREFIX + number


def parse_code(code):
    """The member number a scanned code stands for, or None when it is no member code
    (an item, a receipt, a misread member code: the check digit refuses it)."""
    if not isinstance(code, str):
        return None
    code = code.strip()
    if code[:1] == CARD_PREFIX and code[1:2] != "":
        number = code[1:]
    elif code.upper().startswith(QR_PREFIX):
        number = code[len(QR_PREFIX):]
    else:
        return None
    return number if valid_number(number) else None


def looks_like_member_code(code):
    """True for a code in a member code's shape (right prefix) even if it fails its
    check: the screen then says "unknown member card" instead of "not found"."""
    if not isinstance(code, str):
        return False
    code = code.strip()
    return code.upper().startswith(QR_PREFIX) or (
        code[:1] == CARD_PREFIX and len(code) > 1 and code[1:].isdigit())


# -- points -------------------------------------------------------------------------------
def unit_of(currency):
    """Minor units in one unit of the currency (100 for CNY)."""
    return 10 ** CURRENCIES[currency][1]


def earn_rate(rule, tier):
    return rule.get("earn_" + tier, rule["earn_basic"]) if tier in TIERS else rule["earn_basic"]


def line_points_x(line):
    x = getattr(line, "points_x", None)
    return 1000 if x is None else x


def earn_points(cart, tier, rule):
    """The points a member of tier earns with cart as it stands: see the module's
    rule. 0 for no member (tier None)."""
    if tier is None:
        return 0
    weighted = 0
    for index, line in cart.active():
        if line.total > 0:
            weighted += line.total * line_points_x(line)
    return weighted * earn_rate(rule, tier) // (unit_of(cart.currency) * 1000000)


def before_points(cart):
    """What the sale comes to before any points are redeemed (the base of the share and
    the most a redemption can take: after promotions and discounts, before tax when
    prices are before tax)."""
    left = getattr(cart, "left_to_redeem", None)
    if left is not None:
        return left()
    totals = cart.totals
    return totals["total"] + totals.get("points_discount", 0)


def redeem_most(balance, payable, rule):
    """The most points that can be redeemed on a sale of payable minor units (before
    points) by a member with balance: within the share and the balance; 0 when that is
    below the minimum."""
    share = payable * rule["redeem_max_percent"] // PERCENT_WHOLE
    most = share // rule["point_value"]
    if balance < most:
        most = balance
    if most < rule["redeem_min"]:
        return 0
    return most


def check_redeem(points, balance, payable, rule, currency):
    """(amount in minor units, None) when points may be redeemed, else (0, (message id,
    values)): the clear line for the screen."""
    from firmware.core.money import format_amount
    if points < rule["redeem_min"]:
        return 0, ("mb_rd_min", {"n": "%d" % rule["redeem_min"]})
    if points > balance:
        return 0, ("mb_rd_balance", {"n": group(balance)})
    share = payable * rule["redeem_max_percent"] // PERCENT_WHOLE
    if points * rule["point_value"] > share:
        return 0, ("mb_rd_share", {"n": group(share // rule["point_value"]),
                                   "amount": format_amount(share, currency)})
    return points * rule["point_value"], None


def refund_points(earned, redeemed, sale_total, before, amount):
    """(points taken back, points given back) for a refund of amount minor units of a
    sale of sale_total after before minor units were refunded: telescoping, so that
    refunds adding up to the sale return exactly earned and redeemed."""
    if sale_total <= 0:
        return 0, 0
    after = before + amount
    if after > sale_total:
        after = sale_total
    taken = round_div(earned * after, sale_total) - round_div(earned * before, sale_total)
    given = round_div(redeemed * after, sale_total) - round_div(redeemed * before, sale_total)
    return taken, given


def group(n):
    """1234 -> '1,234' (points on screens and receipts)."""
    sign = "-" if n < 0 else ""
    text = "%d" % abs(n)
    out = ""
    while len(text) > 3:
        out = "," + text[-3:] + out
        text = text[:-3]
    return sign + text + out


# -- what the screen and the receipt say ------------------------------------------------
def tier_name(t, tier):
    return t("mb_tier_" + tier) if tier in TIERS else tier


def summary_rows(t, member):
    """The found screen's rows: masked phone, tier, points."""
    return [t("mb_member", phone=mask_phone(member.get("phone", ""))),
            tier_name(t, member["tier"]),
            t("mb_pts", n=group(member["points"]))]


NOTICE_PARAGRAPHS = ("rcpt_mb_notice_what", "rcpt_mb_notice_why", "rcpt_mb_notice_how", "rcpt_mb_notice_long",
                     "rcpt_mb_notice_delete")


def notice_receipt(t, receipt, merchant="", width=None):
    """The privacy notice onto receipt (firmware.ui.receipt.Receipt), in t's language,
    wrapped to the paper."""
    from firmware.ui.screen import wrap
    width = width or receipt.width
    receipt.add(t("rcpt_mb_notice_head"), "center", bold=True)
    if merchant:
        receipt.add(merchant, "center")
    for msg in NOTICE_PARAGRAPHS:
        receipt.blank()
        for row in wrap(t(msg), width):
            receipt.add(row)
    return receipt
