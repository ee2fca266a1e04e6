"""The terminal's configuration: what each key may hold, and one clear line per mistake.

Parsing TOML is the board's job (MicroPython has no tomllib); this module takes the
parsed dict, fills defaults, and refuses anything it does not understand, naming the
key, the value given and what is allowed.
"""
from firmware.core.money import CURRENCIES

LANGUAGES = ("en", "zh")
# how a card may be read for an offline approval (DE22's entry modes)
ENTRY_MODES = ("chip", "tap", "swipe", "fallback")
LIMIT_KEYS = ("per_payment", "total", "count")
# the PIN encryption schemes a host profile may name ([host] pin_security)
PIN_SCHEMES = ("tdes-dukpt", "aes-dukpt")
# the default offline limits in major units: 100.00 a payment, 1,000.00 and 500 stored
DEFAULT_LIMITS = (100, 1000, 500)
# what a limit or anomaly hit does ([limits] always asks a supervisor)
ACTIONS = ("supervisor", "decline")


def _alnum(length):
    def check(value):
        if isinstance(value, str) and len(value) == length and _is_alnum(value):
            return None
        return "must be exactly %d letters or digits" % length
    return check


def _is_alnum(text):
    for ch in text:
        if not ("0" <= ch <= "9" or "A" <= ch <= "Z" or "a" <= ch <= "z"):
            return False
    return True


def _text(max_len):
    def check(value):
        if isinstance(value, str) and 0 < len(value) <= max_len and value.strip() == value:
            return None
        return "must be text of 1 to %d characters without leading or trailing spaces" % max_len
    return check


def _optional_text(max_len):
    def check(value):
        if value == "":
            return None
        return _text(max_len)(value)
    return check


def _int_range(low, high):
    def check(value):
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return None
        return "must be a whole number from %d to %d" % (low, high)
    return check


def _boolean(value):
    return None if isinstance(value, bool) else "must be true or false"


def _choice(options):
    def check(value):
        return None if value in options else "must be one of: " + ", ".join(options)
    return check


def _pin_security(value):
    if value in PIN_SCHEMES:
        return None
    return ("must be \"tdes-dukpt\" (TDES DUKPT, ANSI X9.24-1, ISO 9564 format 0 in DE52) or "
            "\"aes-dukpt\" (AES DUKPT, ANSI X9.24-3, ISO 9564 format 4 in DE61): the one "
            "the acquirer's host profile names")


def _clock_time(value):
    """A local time of day "HH:MM" (24 h), or "" for off."""
    if value == "":
        return None
    if isinstance(value, str) and len(value) == 5 and value[2] == ":" and \
            value[:2].isdigit() and value[3:].isdigit() and int(value[:2]) < 24 and \
            int(value[3:]) < 60:
        return None
    return "must be a local time \"HH:MM\" (24 h, e.g. \"21:30\") or \"\" for off"


def _currency(value):
    if value in CURRENCIES:
        return None
    return "must be an ISO 4217 code this terminal knows: " + ", ".join(sorted(CURRENCIES))


def _host_address(value):
    if value == "":
        return None
    if isinstance(value, str) and value.count(":") == 1:
        host, port = value.split(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return None
    return "must be host:port (port 1-65535), or \"\" for no host"


def _optional_path(value):
    return None if isinstance(value, str) else "must be a path, or \"\""


def _entry_modes(value):
    if isinstance(value, list) and value and all(v in ENTRY_MODES for v in value) \
            and len(set(value)) == len(value):
        return None
    return "must be a list of one or more of: " + ", ".join(ENTRY_MODES)


def _subset(options):
    """A list of distinct values from options (may be empty)."""
    def check(value):
        if isinstance(value, list) and all(v in options for v in value) \
                and len(set(value)) == len(value):
            return None
        return "must be a list of distinct values from: " + ", ".join(options)
    return check


# [mfa]: what asks for a second factor (firmware/security/mfa.py, docs/mfa.md)
MFA_ACTIONS = ("pin_reset", "key_load", "export", "update", "factory_reset")
MFA_ROLES = ("cashier", "supervisor", "technician")


def _limits(value):
    """[offline.limits.USD] per_payment / total / count, in the currency's minor units."""
    if not isinstance(value, dict):
        return "must be tables such as [offline.limits.USD]"
    for cur in value:
        if cur not in CURRENCIES:
            return "%s: not an ISO 4217 code this terminal knows" % cur
        table = value[cur]
        if not isinstance(table, dict):
            return "%s: must be a table with per_payment, total and count" % cur
        for key in table:
            if key not in LIMIT_KEYS:
                return "%s.%s: unknown key; allowed: %s" % (cur, key, ", ".join(LIMIT_KEYS))
            v = table[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                return "%s.%s = %s: must be a whole number, 0 or more" % (cur, key, _show(v))
        merged = limits_for({"offline": {"limits": value}}, cur)
        if merged[0] > merged[1]:
            return "%s: per_payment may not be more than total" % cur
    return None


# [retail] scale_rules: how the store's scales and labellers lay out the EAN-13s they
# print (firmware/retail/barcode.py reads them; docs/retail.md shows examples)
SCALE_LAYOUTS = ("price", "weight")
# GS1 restricted circulation prefixes: 02 (UPC-A number system 2), 04, 20 to 29
SCALE_PREFIXES = ("02", "04", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29")
SCALE_RULE_KEYS = ("prefixes", "layout", "plu_digits", "check", "decimals")
# prices from 20 to 24 and weights in grams from 25 to 29, a 5-digit PLU and no
# verifier digit: the common out-of-the-box layout of retail scales; set the store's
# own when its scales print another
DEFAULT_SCALE_RULES = [
    {"prefixes": ["20", "21", "22", "23", "24"], "layout": "price", "plu_digits": 5,
     "check": False, "decimals": 2},
    {"prefixes": ["25", "26", "27", "28", "29"], "layout": "weight", "plu_digits": 5,
     "check": False, "decimals": 3},
]


def _scale_rules(value):
    """A list of tables [[retail.scale_rules]]; every mistake its own line, each line
    naming the rule by its place (#1 is the first table)."""
    if not isinstance(value, list):
        return [" = %s: must be tables [[retail.scale_rules]] with prefixes and layout"
                % _show(value)]
    problems = []
    seen = {}
    for i in range(len(value)):
        rule = value[i]
        where = " #%d" % (i + 1)
        if not isinstance(rule, dict):
            problems.append("%s = %s: must be a table with %s" % (where, _show(rule), ", ".join(SCALE_RULE_KEYS)))
            continue
        for key in rule:
            if key not in SCALE_RULE_KEYS:
                problems.append("%s.%s: unknown key; allowed: %s" % (where, key, ", ".join(SCALE_RULE_KEYS)))
        prefixes = rule.get("prefixes")
        if not isinstance(prefixes, list) or not prefixes \
                or not all(isinstance(p, str) and p in SCALE_PREFIXES for p in prefixes):
            problems.append("%s.prefixes = %s: must be a list of two-digit prefixes from: %s"
                            % (where, _show(prefixes), ", ".join(SCALE_PREFIXES)))
        else:
            for p in prefixes:
                if p in seen:
                    problems.append("%s.prefixes: \"%s\" is already in rule #%d; a prefix "
                                    "belongs to one rule" % (where, p, seen[p]))
                else:
                    seen[p] = i + 1
        layout = rule.get("layout")
        if layout not in SCALE_LAYOUTS:
            problems.append("%s.layout = %s: must be \"price\" (the label carries the price) "
                            "or \"weight\" (the label carries the weight)" % (where, _show(layout)))
        plu = rule.get("plu_digits", 5)
        if isinstance(plu, bool) or not isinstance(plu, int) or not 4 <= plu <= 6:
            problems.append("%s.plu_digits = %s: must be a whole number from 4 to 6" % (where, _show(plu)))
            plu = 5
        check = rule.get("check", False)
        if not isinstance(check, bool):
            problems.append("%s.check = %s: must be true or false" % (where, _show(check)))
        elif check and 10 - plu - 1 not in (4, 5):
            problems.append("%s.check = true: a price/weight verifier digit covers a 4- or "
                            "5-digit value; use plu_digits 4 or 5, or check = false" % where)
        decimals = rule.get("decimals", 3 if layout == "weight" else 2)
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 3:
            problems.append("%s.decimals = %s: must be a whole number from 0 to 3" % (where, _show(decimals)))
    return problems or None


def scale_rules(given, currency):
    """The rules with every key filled; without given rules, the defaults with price
    decimals cut to what the currency has (0 for JPY)."""
    if given is None:
        rules = []
        for rule in DEFAULT_SCALE_RULES:
            rule = dict(rule)
            rule["prefixes"] = list(rule["prefixes"])
            if rule["layout"] == "price":
                rule["decimals"] = min(rule["decimals"], CURRENCIES[currency][1])
            rules.append(rule)
        return rules
    out = []
    for rule in given:
        layout = rule["layout"]
        out.append({"prefixes": list(rule["prefixes"]), "layout": layout,
                    "plu_digits": rule.get("plu_digits", 5), "check": rule.get("check", False),
                    "decimals": rule.get("decimals", 3 if layout == "weight" else 2)})
    return out


def _percent_limit(value):
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100000:
        return None
    return ("must be a whole number of thousandths of a percent from 0 to 100000 "
            "(10 % is 10000, 100 % is 100000)")


def _digit_strings(value):
    """A list of prefixes of digits (1 to 4 each); [] for none."""
    if isinstance(value, list) and all(isinstance(v, str) and 0 < len(v) <= 4 and v.isdigit()
                                       for v in value):
        return None
    return "must be a list of digit strings of 1 to 4 digits (e.g. [\"1\"]), or []"


def _digits_or_empty(max_len):
    def check(value):
        if isinstance(value, str) and len(value) <= max_len and (value == "" or value.isdigit()):
            return None
        return "must be up to %d digits, or \"\"" % max_len
    return check


def _path(value):
    if isinstance(value, str) and value:
        return None
    return "must be a path"


# section -> key -> (default, check)
SCHEMA = {
    "terminal": {
        "id": ("HP000001", _alnum(8)),
        "merchant_id": ("000000000000001", _alnum(15)),
        "merchant_name": ("HANDPOS DEMO SHOP", _text(40)),
        "merchant_address": ("1 TEST STREET", _text(40)),
    },
    "host": {
        "address": ("", _host_address),
        "tls": (True, _boolean),
        "ca_file": ("", _optional_path),          # the pinned CA of the host's certificate
        "response_timeout_s": (30, _int_range(5, 120)),
        # how PINs travel to this host (docs/host-protocol.md, DE52/DE53/DE61)
        "pin_security": ("tdes-dukpt", _pin_security),
    },
    # QR payments through an aggregated-payment acquirer (docs/qr-protocol.md)
    "qr": {
        "enabled": (False, _boolean),
        "address": ("", _host_address),             # host:port of its HTTPS API
        "ca_file": ("", _optional_path),            # the pinned CA of its certificate
        "mch_id": ("", _optional_text(32)),         # the merchant's number there
        # the merchant's signing key in the configuration: the lab's only ([lab]
        # enabled); a field terminal's comes sealed in its key store
        "key": ("", _optional_text(128)),
        "poll_s": (5, _int_range(1, 30)),           # a waiting order is queried this often
        "pay_timeout_s": (45, _int_range(15, 300)), # then cancelled
        # the merchant's code on the screen: the customer opens the app and scans it
        # first, so it waits longer; then the order is closed
        "show_timeout_s": (120, _int_range(30, 600)),
        "request_timeout_s": (10, _int_range(3, 60)),
    },
    # operators' PINs and the second person (docs/operators.md)
    "auth": {
        "max_failures": (5, _int_range(3, 10)),      # wrong PINs in a row, then a lockout
        "lockout_min": (15, _int_range(1, 1440)),    # kept across restarts
        "pin_max_age_days": (90, _int_range(0, 3650)),   # then a new PIN at login; 0: never
        "pin_history": (4, _int_range(0, 12)),       # earlier PINs a new one may not repeat
        # refunds, voids, price overrides, operator management, limit overrides, queue
        # export and a Z's reprint need a supervisor other than the operator acting
        "second_person": (True, _boolean),
    },
    "security": {
        # load the ANSI X9.24 test key when no key was loaded (simulator, lab only)
        "test_keys": (False, _boolean),
    },
    # a lab terminal: the only place plain TCP, the published test keys and the test CA
    # are allowed; the idle screen says LAB while it is on
    "lab": {
        "enabled": (False, _boolean),
    },
    # a second factor (TOTP from a phone app) for these roles: at login when at_login,
    # and before each of actions (docs/mfa.md)
    "mfa": {
        "at_login": (False, _boolean),
        "actions": (list(MFA_ACTIONS), _subset(MFA_ACTIONS)),
        "roles": (["supervisor", "technician"], _subset(MFA_ROLES)),
    },
    "money": {
        "currency": ("USD", _currency),
        # the largest amount one payment may take, in minor units
        "max_amount": (1000000, _int_range(1, 99999999999)),
        "cash": (True, _boolean),
    },
    # limits on what is taken and given back (docs/limits.md), in [money]'s minor units;
    # 0: no limit. Over one, a supervisor approves or the payment does not go. The
    # terminal's own count every operator's payments of its local day; cashier_* count
    # the payments of one operator whose role is cashier
    "limits": {
        "per_payment": (0, _int_range(0, 99999999999)),         # one sale
        "daily_total": (0, _int_range(0, 99999999999)),         # the day's sales
        "daily_count": (0, _int_range(0, 999999)),              # the day's sales, counted
        "refund_per_payment": (0, _int_range(0, 99999999999)),  # one refund
        "refund_daily_total": (0, _int_range(0, 99999999999)),  # the day's refunds
        "cashier_per_payment": (0, _int_range(0, 99999999999)),
        "cashier_daily_total": (0, _int_range(0, 99999999999)),
        "cashier_daily_count": (0, _int_range(0, 999999)),
        "cashier_refund_per_payment": (0, _int_range(0, 99999999999)),
        "cashier_refund_daily_total": (0, _int_range(0, 99999999999)),
    },
    # patterns that ask a second look (docs/limits.md); each *_action is "supervisor"
    # (a supervisor approves or it does not go) or "decline"; a count of 0 turns a rule off
    "anomaly": {
        # one card this many times (this one included) within same_card_min minutes
        "same_card_count": (3, _int_range(0, 99)),
        "same_card_min": (10, _int_range(1, 1440)),
        "same_card_action": ("supervisor", _choice(ACTIONS)),
        # a sale above this many times the median of the terminal's recent sales...
        "high_amount_factor": (10, _int_range(0, 1000)),
        # ...the median of its last high_amount_sales approved sales, once it has at
        # least high_amount_min_sales of them
        "high_amount_sales": (50, _int_range(3, 500)),
        "high_amount_min_sales": (10, _int_range(3, 500)),
        "high_amount_action": ("supervisor", _choice(ACTIONS)),
        # the last this many card payments all declined
        "decline_run": (3, _int_range(0, 99)),
        "decline_run_action": ("supervisor", _choice(ACTIONS)),
        # one operator's refunds and voids (this one included) within backs_min minutes
        "backs_count": (5, _int_range(0, 99)),
        "backs_min": (60, _int_range(1, 1440)),
        "backs_action": ("supervisor", _choice(ACTIONS)),
        # a refund to a card no sale of this terminal was paid with
        "refund_new_card": (True, _boolean),
        "refund_new_card_action": ("supervisor", _choice(ACTIONS)),
    },
    # the cash drawer's shifts (docs/close-of-day.md): true refuses a cash sale of an
    # operator who has no open shift ("Open a shift first")
    "shifts": {
        "required": (False, _boolean),
    },
    # settlement with the host and the Z (docs/close-of-day.md, "Settlement"): local
    # times "HH:MM", "" for off
    "settlement": {
        # from this time on the idle screen says "Settle the batch" while the open batch
        # has records (all day when its first record is from an earlier day)
        "remind_after": ("", _clock_time),
        # at this time, once a day, an idle terminal settles by itself and prints the Z
        "auto_at": ("", _clock_time),
    },
    "ui": {
        "language": ("en", _choice(LANGUAGES)),
        "idle_logout_s": (300, _int_range(30, 86400)),
        "menu_timeout_s": (60, _int_range(10, 3600)),
        "entry_timeout_s": (60, _int_range(10, 600)),
        "card_timeout_s": (60, _int_range(10, 300)),
    },
    # offline approvals when the host cannot be reached (docs/offline.md)
    "offline": {
        "enabled": (True, _boolean),
        "entry_modes": (["chip", "tap"], _entry_modes),     # stripes off by default
        "pin_required": (False, _boolean),   # only cards verified by offline PIN
        "max_age_h": (72, _int_range(1, 720)),
        "warn_age_h": (24, _int_range(1, 720)),
        "limits": ({}, _limits),             # per currency; defaults DEFAULT_LIMITS
    },
    "storage": {
        "data_dir": ("/var/lib/handpos", _path),
    },
    # signed application updates (docs/updates.md): the A/B release folders, where a
    # technician's USB stick is mounted, and how a new release proves itself
    "update": {
        "release_root": ("/opt/handpos", _path),        # releases/{a,b}, current, marks
        "usb_path": ("/media/usb", _path),              # bundles (*.hpup) found here
        "health_timeout_s": (180, _int_range(30, 3600)),    # to pass the health check
        "boots_max": (2, _int_range(1, 5)),             # starts on trial, then rolled back
        "echo": (True, _boolean),                       # the health check echoes the host
        # how apply stops and starts the terminal ("" : the technician does it)
        "stop_command": ("systemctl stop handpos.service", _optional_text(200)),
        "start_command": ("systemctl start handpos.service", _optional_text(200)),
    },
    # selling items (docs/retail.md); amounts in the currency's minor units
    "retail": {
        # shelf prices include the tax (VAT, as in China and Europe); false adds the tax
        # on top of the prices, as in the United States
        "tax_inclusive": (True, _boolean),
        "scale_rules": (None, _scale_rules),          # None: DEFAULT_SCALE_RULES
        "max_quantity": (9999, _int_range(1, 999999)),     # of one line, items counted
        "max_weight_g": (99999, _int_range(1, 9999999)),   # of one line, items weighed
        "max_line_amount": (1000000, _int_range(1, 99999999999)),
        "max_lines": (200, _int_range(1, 1000)),
        "max_total": (1000000, _int_range(1, 99999999999)),
        # a sale, a damage or a loss may take an item's stock below zero (the goods are
        # in the customer's hand whatever the books say); false refuses the movement
        "allow_negative_stock": (True, _boolean),
        # what a cashier may give on the cart without a supervisor (firmware/flows/cart.py):
        # a discount of more than this percent of what it comes off (thousandths of a
        # percent, 10000 = 10 %; 0: every discount needs a supervisor)...
        "max_discount_percent": (10000, _percent_limit),
        # ...or of more than this amount (minor units; 0: every discount)
        "max_discount_amount": (1000, _int_range(0, 99999999999)),
        # true: a price changed below the item's own needs a supervisor
        "override_needs_supervisor": (True, _boolean),
        # true: the cashier may key a price for an unknown barcode (a misc line named by
        # the code); false: only a supervisor adding the item sells it
        "keyed_unknown": (False, _boolean),
        # the tax rate of an item a supervisor adds on the terminal (thousandths of a
        # percent: 13000 is 13 %), until the catalogue import gives it its own
        "default_tax_rate": (0, _int_range(0, 100000)),
    },
    # members and points (docs/members.md); amounts in [money]'s minor units
    "members": {
        "enabled": (True, _boolean),
        # a member's phone: this many digits (11, a mainland China mobile), starting with
        # one of phone_prefixes ("1" there; [] for any); a number typed with the country
        # code in front (86...) is taken without it
        "phone_digits": (11, _int_range(6, 15)),
        "phone_prefixes": (["1"], _digit_strings),
        "country_code": ("86", _digits_or_empty(4)),
        # points earned per unit of the currency paid (after every discount), by tier, in
        # thousandths of a point: 1000 is 1 point per yuan; rounded down per sale
        "earn_basic": (1000, _int_range(0, 1000000)),
        "earn_silver": (1500, _int_range(0, 1000000)),
        "earn_gold": (2000, _int_range(0, 1000000)),
        # what a point is worth when redeemed, in minor units (1: 100 points are 1.00)
        "point_value": (1, _int_range(1, 100000)),
        "redeem_min": (100, _int_range(1, 100000000)),   # fewest points taken at once
        # the largest share of a sale points may pay (thousandths of a percent: 50000 = 50 %)
        "redeem_max_percent": (50000, _percent_limit),
    },
}


def _show(value):
    if isinstance(value, str):
        return '"%s"' % value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):       # as TOML writes it
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def validate(raw):
    """Return (config, errors): config with every default filled, errors as lines."""
    errors = []
    config = {}
    if not isinstance(raw, dict):
        return None, ["the configuration must be a table of sections"]
    for section in raw:
        if section not in SCHEMA:
            errors.append("[%s]: unknown section; allowed: %s" % (section, ", ".join(sorted(SCHEMA))))
    for section in SCHEMA:
        given = raw.get(section, {})
        keys = SCHEMA[section]
        config[section] = {}
        if not isinstance(given, dict):
            errors.append("%s = %s: must be a section [%s]" % (section, _show(given), section))
            given = {}
        for key in given:
            if key not in keys:
                errors.append("%s.%s: unknown key; allowed: %s" % (section, key, ", ".join(sorted(keys))))
        for key in keys:
            default, check = keys[key]
            if key in given:
                value = given[key]
                problem = check(value)
                if isinstance(problem, list):     # a list of tables: one line each
                    for line in problem:
                        errors.append("%s.%s%s" % (section, key, line))
                    value = default
                elif problem:
                    errors.append("%s.%s = %s: %s" % (section, key, _show(value), problem))
                    value = default
            else:
                value = default
            config[section][key] = value
    host = config["host"]
    if host["address"] and host["tls"] and not host["ca_file"]:
        errors.append("host.ca_file = \"\": the host's CA certificate is needed when host.tls "
                      "is true")
    errors += lab_problems(config)
    retail = config["retail"]
    retail["scale_rules"] = scale_rules(retail["scale_rules"], config["money"]["currency"])
    exp = CURRENCIES[config["money"]["currency"]][1]
    for i in range(len(retail["scale_rules"])):
        rule = retail["scale_rules"][i]
        if rule["layout"] == "price" and rule["decimals"] > exp:
            errors.append("retail.scale_rules #%d.decimals = %d: %s has %d decimals, so a "
                          "label price with more cannot be charged; use decimals = %d or less"
                          % (i + 1, rule["decimals"], config["money"]["currency"], exp, exp))
    errors += limit_problems(config)
    off = config["offline"]
    if off["warn_age_h"] >= off["max_age_h"]:
        errors.append("offline.warn_age_h = %d: must be less than offline.max_age_h (%d)"
                      % (off["warn_age_h"], off["max_age_h"]))
    return config, errors


def limit_problems(config):
    """A per payment limit above the day's total it belongs to can never be reached:
    one line each (both set, 0 being none); and a median wanted from fewer sales than
    it may take."""
    problems = []
    lim = config["limits"]
    for prefix in ("", "cashier_"):
        for per, day in (("per_payment", "daily_total"),
                         ("refund_per_payment", "refund_daily_total")):
            p, d = lim[prefix + per], lim[prefix + day]
            if p and d and p > d:
                problems.append("limits.%s%s = %d: more than limits.%s%s (%d); lower it, or "
                                "raise the day's" % (prefix, per, p, prefix, day, d))
    an = config["anomaly"]
    if an["high_amount_min_sales"] > an["high_amount_sales"]:
        problems.append("anomaly.high_amount_min_sales = %d: more than "
                        "anomaly.high_amount_sales (%d), the sales the median is taken of"
                        % (an["high_amount_min_sales"], an["high_amount_sales"]))
    return problems


def lab_problems(config):
    """Lab settings outside the lab, one line each: plain TCP to a host and the
    published test keys need [lab] enabled = true (a field terminal never has it)."""
    if config["lab"]["enabled"]:
        return []
    problems = []
    if config["host"]["address"] and not config["host"]["tls"]:
        problems.append("host.tls = false: plain TCP is for the lab only; use TLS with the "
                        "acquirer's CA, or set [lab] enabled = true on a lab terminal")
    if config["security"]["test_keys"]:
        problems.append("security.test_keys = true: the published test keys are for the lab "
                        "only; load the acquirer's keys, or set [lab] enabled = true on a lab "
                        "terminal")
    if config["qr"]["key"]:
        problems.append("qr.key: a merchant key in the configuration file is for the lab "
                        "only; remove it and load the key into the terminal's key store "
                        "(handpos qr-key load), or set [lab] enabled = true on a lab terminal")
    return problems


def limits_for(config, currency):
    """(per_payment, total, count) of offline approvals in currency's minor units."""
    unit = 10 ** CURRENCIES[currency][1]
    given = config["offline"].get("limits", {}).get(currency, {})
    return (given.get("per_payment", DEFAULT_LIMITS[0] * unit),
            given.get("total", DEFAULT_LIMITS[1] * unit),
            given.get("count", DEFAULT_LIMITS[2]))


def defaults():
    return validate({})[0]
