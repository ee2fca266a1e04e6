"""Automatic promotions: rules, their time windows, and the pricer the cart calls.

A rule (a dict, as parse() makes it from the import file; docs/promotions.md):

  id, name_en, name_zh   what the receipt and the list screen say
  window                 start, end: local dates (inclusive) as day numbers, or None;
                         days: ISO weekdays 1 (Mon) .. 7 (Sun), or None (every day);
                         hours: [from, to) in local minutes of the day, or None. A span
                         that crosses midnight (22:00-02:00) belongs to the day it
                         starts: Friday's 22:00-02:00 runs into Saturday 01:59.
  scope                  "items" (plus: PLUs), "categories" (categories: ids or names,
                         as the catalogue gives the line's category), "cart"
  conditions             min_qty (pieces; a weighed line counts 1), min_amount (minor
                         units of the lines' gross), members_only, tiers
  reward                 "percent" (value: thousandths of a percent), "amount" (value off
                         each piece, or each kg of a weighed line; off the lines' total
                         for a cart-scope rule), "price" (value: the unit price, per kg
                         for a weighed line; a percent of the cart is a
                         percent of each line), "buy_get" (buy, get: of every buy + get
                         pieces the get cheapest are free), "cheapest_free" (every: of
                         every n pieces the cheapest is free), "points" (value: points
                         multiplier in thousandths, 2000 = double points; no money)

The decision rule (one automatic money promotion per line, the best for the customer):
  1. A rule applies to the lines of its scope that are items (a keyed amount never
     takes a promotion), not voided and not taken by an earlier rule; its conditions
     are met by those lines. Its saving is what it takes off them.
  2. A candidate is a rule on one line when the rule works per line (a percent, an
     amount off each piece or a fixed price, with no minimum quantity or amount: its
     saving on a line does not depend on the others), else a rule on its group of
     lines (buy X get Y, cheapest free, an amount off the cart, any rule with a
     minimum). Repeatedly, the candidate with the largest saving on lines still free is
     given to them (a tie: the earlier rule in the file, then the earlier line); its
     lines are taken. A group's saving is worked out again on its lines still free.
     Savings never grow when lines are taken, so this is computed with a heap that
     re-checks a group's saving only when it comes to the top. It is greedy: a group
     rule is never split up to give one of its lines something smaller.
  3. Points multipliers are not money and take no line: each line earns at the largest
     multiplier of the points rules that apply to it (1x when none).

Spreading (exact to the minor unit): a percent, amount or fixed-price rule is worked out
and rounded per line (half up, tax.round_div). A cart-scope amount, or a cart-scope
percent with a minimum, is worked out once on its lines' total and a buy-X-get-Y or
cheapest-free saving once on its group; each is spread over the lines it comes from
by the largest-remainder method (tax.spread): a line's weight is its gross for a
cart-scope rule, and for buy-X-get-Y the money of its pieces that fall in a complete
group (pieces ranked by unit price, dearest first: of each buy + get in turn the last
get are free). Shares add up to the saving exactly; no line gets more than its gross.
"""
from firmware.core.dates import days_from_civil as day_number, weekday
from firmware.retail.tax import WHOLE, percent_of, round_div, spread

try:
    from heapq import heappop, heappush
except ImportError:             # a MicroPython without heapq: a small binary heap
    def heappush(heap, item):
        heap.append(item)
        i = len(heap) - 1
        while i > 0:
            parent = (i - 1) // 2
            if heap[parent] <= heap[i]:
                break
            heap[parent], heap[i] = heap[i], heap[parent]
            i = parent

    def heappop(heap):
        last = heap.pop()
        if not heap:
            return last
        top, heap[0] = heap[0], last
        i, n = 0, len(heap)
        while True:
            small, left, right = i, 2 * i + 1, 2 * i + 2
            if left < n and heap[left] < heap[small]:
                small = left
            if right < n and heap[right] < heap[small]:
                small = right
            if small == i:
                return top
            heap[small], heap[i] = heap[i], heap[small]
            i = small

SCOPES = ("items", "categories", "cart")
REWARDS = ("percent", "amount", "price", "buy_get", "cheapest_free", "points")
# the file's key of each reward -> its kind
REWARD_KEYS = (("percent_off", "percent"), ("amount_off", "amount"), ("price", "price"),
               ("buy", "buy_get"), ("cheapest_free", "cheapest_free"),
               ("points_x", "points"))
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NAME_MAX = 32
ID_MAX = 16
LIST_MAX = 1000             # PLUs or categories in one rule
RULES_MAX = 5000
POINTS_X_MAX = 100000       # 100x
ONE_X = 1000


# -- dates ------------------------------------------------------------------------------
def date_text(day):
    """A day number as YYYY-MM-DD."""
    z = day + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return "%04d-%02d-%02d" % (y + (1 if m <= 2 else 0), m, d)


def parse_date(text):
    """'2026-05-01' -> its day number; ValueError when it is no date."""
    if not isinstance(text, str) or len(text) != 10 or text[4] != "-" or text[7] != "-":
        raise ValueError("not a date YYYY-MM-DD")
    for k in (0, 1, 2, 3, 5, 6, 8, 9):
        if not "0" <= text[k] <= "9":
            raise ValueError("not a date YYYY-MM-DD")
    y, m, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
    if not 1 <= m <= 12 or d < 1 or d > _month_days(y, m):
        raise ValueError("no such day")
    return day_number(y, m, d)


def _month_days(y, m):
    if m == 2:
        return 29 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def parse_clock(text):
    """'14:30' -> 870; '24:00' is the end of the day."""
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
        raise ValueError("not a time HH:MM")
    for k in (0, 1, 3, 4):
        if not "0" <= text[k] <= "9":
            raise ValueError("not a time HH:MM")
    h, mi = int(text[0:2]), int(text[3:5])
    if mi > 59 or h > 24 or (h == 24 and mi):
        raise ValueError("no such time")
    return h * 60 + mi


def clock_text(minutes):
    return "%02d:%02d" % (minutes // 60, minutes % 60)


def is_open(rule, now):
    """True when rule's window holds the local moment now = (y, m, d, h, mi, ...)."""
    day = day_number(now[0], now[1], now[2])
    minute = now[3] * 60 + now[4]
    hours = rule.get("hours")
    if hours:
        start, end = hours
        if start < end:
            if not start <= minute < end:
                return False
        elif minute >= start:
            pass                        # the evening part: the day itself
        elif minute < end:
            day -= 1                    # after midnight: the day the span started
        else:
            return False
    days = rule.get("days")
    if days and weekday(day) not in days:
        return False
    if rule.get("start") is not None and day < rule["start"]:
        return False
    if rule.get("end") is not None and day > rule["end"]:
        return False
    return True


def window_text(rule, lang="en"):
    """The window in short words for the list screen: '05-01..05-31', 'Mon-Fri',
    '11:00-14:00' (each part None when the rule has none)."""
    dates = None
    if rule.get("start") is not None or rule.get("end") is not None:
        a = date_text(rule["start"])[5:] if rule.get("start") is not None else ""
        b = date_text(rule["end"])[5:] if rule.get("end") is not None else ""
        dates = a + ".." + b
    days = None
    if rule.get("days") and len(rule["days"]) < 7:
        days = days_text(rule["days"], lang)
    hours = None
    if rule.get("hours"):
        hours = clock_text(rule["hours"][0]) + "-" + clock_text(rule["hours"][1])
    return dates, days, hours


DAY_WORDS = {"en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
             "zh": ("一", "二", "三", "四", "五", "六", "日")}


def days_text(days, lang="en"):
    """[1, 2, 3, 4, 5] -> 'Mon-Fri'; [6, 7] -> 'Sat-Sun'; [1, 3] -> 'Mon,Wed'
    (Chinese: 周一至五, 周一,三)."""
    words = DAY_WORDS.get(lang, DAY_WORDS["en"])
    days = sorted(days)
    runs = []
    for d in days:
        if runs and runs[-1][1] == d - 1:
            runs[-1][1] = d
        else:
            runs.append([d, d])
    parts = []
    for a, b in runs:
        if lang == "zh":
            parts.append(words[a - 1] if a == b else words[a - 1] + "至" + words[b - 1])
        else:
            parts.append(words[a - 1] if a == b else words[a - 1] + "-" + words[b - 1])
    return ("周" if lang == "zh" else "") + ",".join(parts)


# -- reading the import file -------------------------------------------------------------
def _decimal(text, places, what):
    """'12.5' with places 3 -> 12500; ints are whole units. ValueError naming what."""
    if isinstance(text, bool):
        raise ValueError("%s: a number, not %r" % (what, text))
    if isinstance(text, int):
        text = "%d" % text
    elif isinstance(text, float):
        text = repr(text)
    if not isinstance(text, str):
        raise ValueError("%s: a number like \"1.50\"" % what)
    parts = text.strip().split(".")
    if len(parts) > 2 or not parts[0] and (len(parts) < 2 or not parts[1]):
        raise ValueError("%s '%s': not a number" % (what, text))
    whole = parts[0]
    frac = parts[1] if len(parts) == 2 else ""
    for ch in whole + frac:
        if not "0" <= ch <= "9":
            raise ValueError("%s '%s': not a number" % (what, text))
    if len(frac) > places:
        raise ValueError("%s '%s': at most %d decimals" % (what, text, places))
    return int(whole or "0") * 10 ** places + int((frac + "0" * places)[:places] or "0")


def _count(value, what, low=1, high=9999):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError("%s: a whole number from %d to %d" % (what, low, high))
    return value


def _text(value, what, required, size=NAME_MAX):
    if value is None or value == "":
        if required:
            raise ValueError("%s: is empty" % what)
        return ""
    if not isinstance(value, str):
        raise ValueError("%s: text, in quotes" % what)
    if value != value.strip():
        raise ValueError("%s: leading or trailing spaces" % what)
    if len(value) > size:
        raise ValueError("%s: longer than %d characters" % (what, size))
    for ch in value:
        if ord(ch) < 32 or ord(ch) == 127:
            raise ValueError("%s: holds a control character" % what)
    return value


FIELDS = ("id", "name_en", "name_zh", "from", "to", "days", "hours", "plus",
          "categories", "cart", "min_qty", "min_amount", "members_only", "tiers",
          "percent_off", "amount_off", "price", "buy", "get", "cheapest_free", "points_x")


def parse_rule(raw, currency_places, order=0):
    """One promotion of the file -> (rule, [problems]); rule None when it has any."""
    problems = []
    if not isinstance(raw, dict):
        return None, ["is not an object {...}"]
    for key in raw:
        if key not in FIELDS:
            problems.append("unknown field '%s' (the fields are in docs/promotions.md)" % key)
    rule = {"order": order}

    def take(fn):
        try:
            fn()
        except ValueError as exc:
            problems.append(str(exc))

    def ident():
        rule["id"] = _text(raw.get("id"), "id", True, ID_MAX)
        for ch in rule["id"]:
            if not (ch.isalpha() or ch.isdigit() or ch in "-_.") or ord(ch) > 126:
                raise ValueError("id '%s': letters, digits, - _ . only" % rule["id"])
    take(ident)

    def names():
        rule["name_en"] = _text(raw.get("name_en"), "name_en", True)
    take(names)

    def name_zh():
        rule["name_zh"] = _text(raw.get("name_zh"), "name_zh", False)
    take(name_zh)

    def dates():
        rule["start"] = parse_date_field(raw.get("from"), "from")
        rule["end"] = parse_date_field(raw.get("to"), "to")
        if rule["start"] is not None and rule["end"] is not None and rule["end"] < rule["start"]:
            raise ValueError("to %s is before from %s" % (raw.get("to"), raw.get("from")))
    take(dates)

    def days():
        value = raw.get("days")
        rule["days"] = None
        if value is None:
            return
        if not isinstance(value, list) or not value:
            raise ValueError("days: a list like [\"mon\", \"fri\"]")
        got = []
        for name in value:
            key = name.lower() if isinstance(name, str) else name
            if key not in DAY_NAMES:
                raise ValueError("days: unknown day %r (mon tue wed thu fri sat sun)" % (name,))
            number = DAY_NAMES.index(key) + 1
            if number in got:
                raise ValueError("days: %s twice" % key)
            got.append(number)
        rule["days"] = sorted(got)
    take(days)

    def hours():
        value = raw.get("hours")
        rule["hours"] = None
        if value is None:
            return
        if not isinstance(value, str) or value.count("-") != 1:
            raise ValueError("hours: like \"11:00-14:00\"")
        a, b = value.split("-")
        try:
            start, end = parse_clock(a.strip()), parse_clock(b.strip())
        except ValueError as exc:
            raise ValueError("hours %r: %s" % (value, exc))
        if start == end:
            raise ValueError("hours %s: starts and ends at the same time" % value)
        if start == 24 * 60:
            raise ValueError("hours %s: starts at the end of the day" % value)
        rule["hours"] = [start, end]     # "18:00-00:00" crosses midnight: to its end
    take(hours)

    def scope():
        given = [k for k in ("plus", "categories", "cart") if raw.get(k) not in (None, False)]
        if len(given) != 1:
            raise ValueError("scope: exactly one of plus, categories or cart: true (%s)"
                             % (", ".join(given) or "none given"))
        key = given[0]
        rule["plus"], rule["categories"] = [], []
        if key == "cart":
            if raw["cart"] is not True:
                raise ValueError("cart: true or left out")
            rule["scope"] = "cart"
            return
        value = raw[key]
        if not isinstance(value, list) or not value or len(value) > LIST_MAX:
            raise ValueError("%s: a list of 1 to %d" % (key, LIST_MAX))
        if key == "plus":
            rule["scope"] = "items"
            for plu in value:
                if isinstance(plu, str) and plu.isdigit():
                    plu = int(plu)
                _count(plu, "plus: PLU %r" % (plu,), 1, 999999)
                if plu in rule["plus"]:
                    raise ValueError("plus: PLU %d twice" % plu)
                rule["plus"].append(plu)
        else:
            rule["scope"] = "categories"
            for name in value:
                _text(name, "categories", True, 64)
                if name in rule["categories"]:
                    raise ValueError("categories: %s twice" % name)
                rule["categories"].append(name)
    take(scope)

    def conditions():
        rule["min_qty"] = _count(raw["min_qty"], "min_qty") if raw.get("min_qty") is not None else 0
        rule["min_amount"] = (_decimal(raw["min_amount"], currency_places, "min_amount")
                              if raw.get("min_amount") is not None else 0)
        members = raw.get("members_only", False)
        if members not in (True, False):
            raise ValueError("members_only: true or false")
        tiers = raw.get("tiers")
        if tiers is None:
            tiers = []
        if not isinstance(tiers, list):
            raise ValueError("tiers: a list like [\"gold\"]")
        for tier in tiers:
            _text(tier, "tiers", True, 16)
        rule["members_only"] = bool(members) or bool(tiers)
        rule["tiers"] = list(tiers)
    take(conditions)

    def reward():
        given = [(key, kind) for key, kind in REWARD_KEYS if raw.get(key) is not None]
        if len(given) != 1:
            raise ValueError("reward: exactly one of percent_off, amount_off, price, buy (with "
                             "get), cheapest_free, points_x (%s)"
                             % (", ".join(k for k, kind in given) or "none given"))
        key, kind = given[0]
        rule["reward"] = kind
        rule["value"] = 0
        rule["buy"] = rule["get"] = 0
        if kind != "buy_get" and raw.get("get") is not None:
            raise ValueError("get: only with buy")
        if kind == "percent":
            rule["value"] = _decimal(raw[key], 3, "percent_off")
            if not 0 < rule["value"] <= WHOLE:
                raise ValueError("percent_off '%s': more than 0 and at most 100" % raw[key])
        elif kind in ("amount", "price"):
            rule["value"] = _decimal(raw[key], currency_places, key)
            if rule["value"] < (1 if kind == "amount" else 0):
                raise ValueError("%s: more than 0" % key)
            if kind == "price" and rule.get("scope") == "cart":
                raise ValueError("price: a fixed price is for plus or categories, not the cart")
        elif kind == "buy_get":
            rule["buy"] = _count(raw["buy"], "buy", 1, 99)
            if raw.get("get") is None:
                raise ValueError("buy: needs get (buy 2, get 1)")
            rule["get"] = _count(raw["get"], "get", 1, 99)
        elif kind == "cheapest_free":
            every = _count(raw[key], "cheapest_free", 2, 99)
            rule["buy"], rule["get"] = every - 1, 1
        else:
            rule["value"] = _decimal(raw[key], 3, "points_x")
            if not ONE_X < rule["value"] <= POINTS_X_MAX:
                raise ValueError("points_x '%s': more than 1 and at most 100" % raw[key])
    take(reward)
    if problems:
        return None, problems
    return rule, []


def parse_date_field(value, what):
    if value is None:
        return None
    try:
        return parse_date(value)
    except ValueError as exc:
        raise ValueError("%s %r: %s" % (what, value, exc))


def label(rule_or_raw, number):
    """How a problem names a promotion: 'promotion 3 (LUNCH10)'."""
    ident = rule_or_raw.get("id") if isinstance(rule_or_raw, dict) else None
    if isinstance(ident, str) and ident:
        return "promotion %d (%s)" % (number, ident)
    return "promotion %d" % number


def parse(doc, currency_places, today=None, plus=None, categories=None):
    """The promotions of an import file's JSON (a dict with "promotions": [...]).

    today: the local day number, for refusing expired promotions (None: not checked);
    plus: the PLUs the catalogue has (None: not checked); categories: {name_en: id} of
    the catalogue (None: the names are kept). Returns (rules, problems): every problem
    is a line naming the promotion by its place in the file (1 is the first) and id;
    rules is [] whenever there is a problem (nothing is half-imported)."""
    problems = []
    if isinstance(doc, dict):
        extra = [k for k in doc if k not in ("promotions", "currency")]
        for key in extra:
            problems.append("unknown top-level field '%s' (promotions, currency)" % key)
        raws = doc.get("promotions")
    else:
        raws = None
    if not isinstance(raws, list):
        return [], problems + ["the file is not {\"promotions\": [ ... ]}"]
    if len(raws) > RULES_MAX:
        return [], problems + ["%d promotions: at most %d" % (len(raws), RULES_MAX)]
    rules = []
    expired = {}
    seen = {}
    for k in range(len(raws)):
        raw = raws[k]
        rule, bad = parse_rule(raw, currency_places, k)
        where = label(raw, k + 1)
        for why in bad:
            problems.append("%s: %s" % (where, why))
        if rule is None:
            continue
        if rule["id"] in seen:
            problems.append("%s: id %s is also promotion %d" % (where, rule["id"], seen[rule["id"]]))
            continue
        seen[rule["id"]] = k + 1
        if today is not None and rule["end"] is not None and rule["end"] < today:
            problems.append("%s: expired on %s (today is %s): take it out of the file"
                            % (where, date_text(rule["end"]), date_text(today)))
            expired[rule["id"]] = True
        if plus is not None and rule["scope"] == "items":
            for plu in rule["plus"]:
                if plu not in plus:
                    problems.append("%s: PLU %d is not in the catalogue" % (where, plu))
        if rule["scope"] == "categories" and categories is not None:
            ids = []
            for name in rule["categories"]:
                if name not in categories:
                    problems.append("%s: no category '%s' in the catalogue" % (where, name))
                else:
                    ids.append(categories[name])
            rule["category_names"] = list(rule["categories"])
            rule["categories"] = ids
        rules.append(rule)
    problems += overlaps([r for r in rules if r["id"] not in expired])
    if problems:
        return [], problems
    return rules, []


def _windows_meet(a, b):
    """True when two rules' windows share some moment (dates, days and hours each meet;
    a close enough reading for naming likely mistakes)."""
    lo = max(a["start"] if a["start"] is not None else -10 ** 9,
             b["start"] if b["start"] is not None else -10 ** 9)
    hi = min(a["end"] if a["end"] is not None else 10 ** 9,
             b["end"] if b["end"] is not None else 10 ** 9)
    if lo > hi:
        return False
    if a["days"] and b["days"]:
        shared = False
        for d in a["days"]:
            if d in b["days"]:
                shared = True
        if not shared:
            return False
    if a["hours"] and b["hours"]:
        return _spans_meet(_spans(a["hours"]), _spans(b["hours"]))
    return True


def _spans(hours):
    start, end = hours
    if start < end:
        return [(start, end)]
    return [(start, 24 * 60), (0, end)]


def _spans_meet(xs, ys):
    for a0, a1 in xs:
        for b0, b1 in ys:
            if a0 < b1 and b0 < a1:
                return True
    return False


def overlaps(rules):
    """Problems naming rules that give the same kind of thing (money, or points) on the
    same scope (a PLU both list, a category both list, or both the whole cart) in windows
    that meet. Two such rules are most often a mistake (last month's file pasted into
    this one). A rule on an item and another on its category, or on the cart, do not
    count: the decision rule settles those, one per line, the best for the customer."""
    problems = []
    by_key = {}
    for rule in rules:
        layer = "points" if rule["reward"] == "points" else "money"
        if rule["scope"] == "cart":
            keys = [("cart", None)]
        elif rule["scope"] == "items":
            keys = [("plu", p) for p in rule["plus"]]
        else:
            keys = [("category", c) for c in rule.get("category_names", rule["categories"])]
        for key in keys:
            by_key.setdefault((layer,) + key, []).append(rule)
    named = {}
    for key in sorted(by_key, key=lambda k: (k[0], k[1], "%s" % (k[2],))):
        group = by_key[key]
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                a, b = group[i], group[j]
                pair = (a["id"], b["id"])
                if pair in named or not _windows_meet(a, b):
                    continue
                named[pair] = True
                what = {"cart": "the whole cart", "plu": "PLU %s" % (key[2],),
                        "category": "category %s" % (key[2],)}[key[1]]
                problems.append("promotions %d (%s) and %d (%s) overlap on %s at the same "
                                "times: give them different days, hours or dates, or keep one"
                                % (a["order"] + 1, a["id"], b["order"] + 1, b["id"], what))
    return problems


# -- working out a rule on lines ---------------------------------------------------------
def _free_before(n, buy, get):
    """How many of the first n positions (ranked dearest first) are free."""
    size = buy + get
    return (n // size) * get + max(0, n % size - buy)


def _group_saving(lines, indexes, buy, get):
    """buy-X-get-Y over the pieces of lines[indexes]: (saving, {index: weight}) where a
    line's weight is the money of its pieces in complete groups."""
    ranked = []
    for i in indexes:
        line = lines[i]
        if line.grams is None:
            ranked.append((-line.price, i))
    ranked.sort()
    pieces = 0
    for neg, i in ranked:
        pieces += lines[i].quantity
    size = buy + get
    complete = (pieces // size) * size
    saving = 0
    weights = {}
    pos = 0
    for neg, i in ranked:
        n = lines[i].quantity
        price = -neg
        if pos < complete:
            inside = min(pos + n, complete) - pos
            free = _free_before(min(pos + n, complete), buy, get) - _free_before(pos, buy, get)
            saving += free * price
            if inside > 0 and price > 0:
                weights[i] = inside * price
        pos += n
    return saving, weights


class _Line:
    """What the pricer reads of a cart line (so the engine is tested without a cart)."""

    def __init__(self, plu, price, quantity=1, grams=None, category=None, kind="item",
                 void=False):
        self.plu = plu
        self.price = price
        self.quantity = quantity
        self.grams = grams
        self.category = category
        self.kind = kind
        self.void = void

    def gross_amount(self):
        if self.grams is not None:
            return round_div(self.price * self.grams, 1000)
        return self.price * self.quantity


def _conditions_met(rule, lines, indexes, member):
    if rule["members_only"]:
        if member is None:
            return False
        if rule["tiers"] and member.get("tier") not in rule["tiers"]:
            return False
    if rule["min_qty"] or rule["min_amount"]:
        qty = amount = 0
        for i in indexes:
            line = lines[i]
            qty += 1 if line.grams is not None else line.quantity
            amount += line.gross_amount()
        if qty < rule["min_qty"] or amount < rule["min_amount"]:
            return False
    return True


def evaluate(rule, lines, indexes, member, gross):
    """The rule on lines[indexes]: (saving, {index: share}) with every share > 0, or
    (0, {}) when it gives nothing (conditions not met, nothing off)."""
    if not indexes or not _conditions_met(rule, lines, indexes, member):
        return 0, {}
    kind = rule["reward"]
    value = rule["value"]
    shares = {}
    saving = 0
    if kind in ("buy_get", "cheapest_free"):
        saving, weights = _group_saving(lines, indexes, rule["buy"], rule["get"])
        if saving <= 0:
            return 0, {}
        order = sorted(weights)
        parts = spread(saving, [weights[i] for i in order])
        for k in range(len(order)):
            if parts[k]:
                shares[order[k]] = parts[k]
        return saving, shares
    if rule["scope"] == "cart":
        base = 0
        for i in indexes:
            base += gross[i]
        if kind == "percent":
            saving = percent_of(base, value)
        else:
            saving = min(value, base)
        parts = spread(saving, [gross[i] for i in indexes])
        for k in range(len(indexes)):
            if parts[k]:
                shares[indexes[k]] = parts[k]
        return saving, shares
    for i in indexes:
        line = lines[i]
        g = gross[i]
        if kind == "percent":
            off = percent_of(g, value)
        elif kind == "amount":
            off = round_div(value * line.grams, 1000) if line.grams is not None \
                else value * line.quantity
        else:                           # a fixed unit price: what it takes off, if any
            target = round_div(value * line.grams, 1000) if line.grams is not None \
                else value * line.quantity
            off = g - target
        off = max(0, min(off, g))
        if off:
            shares[i] = off
            saving += off
    return saving, shares


def per_line(rule):
    """True for a rule whose saving on a line does not depend on the other lines: a
    percent, an amount off each piece or a fixed price, with no minimum. Its candidates
    are its lines one by one; any other rule's is its group of lines."""
    if rule["reward"] not in ("percent", "amount", "price"):
        return False
    if rule["min_qty"] or rule["min_amount"]:
        return False
    return not (rule["scope"] == "cart" and rule["reward"] == "amount")


def _matches(rule, line, category):
    if rule["scope"] == "cart":
        return True
    if rule["scope"] == "items":
        return line.plu in rule["plus"]
    return category is not None and category in rule["categories"]


def decide(rules, lines, member=None, categories=None):
    """The decision rule over lines (cart lines, or _Line): [(rule or None, amount,
    points_x)] per line. rules: the open rules, in file order (rule["order"]);
    categories: per line, its category (None for none), else line.category is read."""
    n = len(lines)
    gross = [0] * n
    eligible = []
    for i in range(n):
        line = lines[i]
        if line.void or line.kind != "item":
            continue
        gross[i] = line.gross_amount()
        eligible.append(i)
    cats = categories if categories is not None else [getattr(l, "category", None) for l in lines]
    return _decide(_Index(rules), lines, eligible, gross, cats, member)


class _Index:
    """The rules by what they touch: PLU, category, the cart; money and points apart."""

    def __init__(self, rules):
        self.by_plu = {}
        self.by_cat = {}
        self.cart = []
        self.rules = rules
        for r in range(len(rules)):
            rule = rules[r]
            if rule["scope"] == "cart":
                self.cart.append(r)
            elif rule["scope"] == "items":
                for plu in rule["plus"]:
                    self.by_plu.setdefault(plu, []).append(r)
            else:
                for cat in rule["categories"]:
                    self.by_cat.setdefault(cat, []).append(r)

    def touching(self, plu, category):
        got = self.by_plu.get(plu, [])
        if category is not None and category in self.by_cat:
            got = got + self.by_cat[category]
        if self.cart:
            got = got + self.cart
        return got


def _decide(index, lines, eligible, gross, cats, member):
    rules = index.rules
    groups = {}
    for i in eligible:
        for r in index.touching(lines[i].plu, cats[i]):
            groups.setdefault(r, []).append(i)
    out = [(None, 0, ONE_X) for _ in range(len(lines))]
    points = {}
    heap = []
    for r in groups:
        rule = rules[r]
        if rule["reward"] == "points":
            if _conditions_met(rule, lines, groups[r], member):
                for i in groups[r]:
                    if rule["value"] > points.get(i, ONE_X):
                        points[i] = rule["value"]
            continue
        if per_line(rule):
            if not _conditions_met(rule, lines, groups[r], member):
                continue
            for i in groups[r]:
                saving, shares = evaluate(rule, lines, [i], member, gross)
                if saving > 0:
                    heappush(heap, (-saving, rule["order"], r, i))
            continue
        saving, shares = evaluate(rule, lines, groups[r], member, gross)
        if saving > 0:
            heappush(heap, (-saving, rule["order"], r, -1))
    taken = {}
    while heap:
        neg, order, r, one = heappop(heap)
        rule = rules[r]
        if one >= 0:                    # a rule that works per line, on this line
            if one not in taken:
                taken[one] = r
                out[one] = (rule, -neg, ONE_X)
            continue
        free = [i for i in groups[r] if i not in taken]
        saving, shares = evaluate(rule, lines, free, member, gross)
        if saving <= 0:
            continue
        if saving != -neg:              # lines were taken since: its place again
            heappush(heap, (-saving, order, r, -1))
            continue
        took = free
        if rule["reward"] in ("buy_get", "cheapest_free"):
            took = [i for i in free if i in shares]     # leftover pieces stay free
        for i in took:
            taken[i] = r
        for i in shares:
            out[i] = (rule, shares[i], ONE_X)
    for i in points:
        out[i] = (out[i][0], out[i][1], points[i])
    return out


def promo_of(rule, amount):
    """The record a cart line keeps of its promotion (cart.Line.promo)."""
    return {"id": rule["id"], "name_en": rule["name_en"], "name_zh": rule.get("name_zh", ""),
            "amount": amount}


# -- the pricer the cart calls ------------------------------------------------------------
class Pricer:
    """Pricer(rules, now, category_of=None): a callable for cart.set_pricer.

    now() gives the local time (y, m, d, h, mi, ...) (term.system.local_time);
    category_of(item_id) the item's category (the catalogue's), asked once per item.
    The open rules and their index are worked out once a minute; a call whose lines,
    prices, quantities and member are those of the last call returns the last answer,
    so a manual discount or a redemption does not decide promotions again."""

    def __init__(self, rules, now, category_of=None):
        self.rules = sorted(rules, key=lambda r: r["order"])
        self.now = now
        self.category_of = category_of
        self._cats = {}
        self._minute = None
        self._index = None
        self._last = None
        self.calls = 0                  # how many times the rules were decided again

    def open_rules(self, now=None):
        """The rules whose windows hold now (a local time tuple)."""
        now = now if now is not None else self.now()
        return [r for r in self.rules if is_open(r, now)]

    def _index_now(self):
        now = self.now()
        minute = tuple(now[:5])
        if minute != self._minute:
            self._minute = minute
            self._index = _Index(self.open_rules(now))
            self._last = None
        return self._index

    def _category(self, line):
        if self.category_of is None or line.item_id is None:
            return None
        if line.item_id not in self._cats:
            try:
                self._cats[line.item_id] = self.category_of(line.item_id)
            except Exception:           # a damaged item: no category promotions for it
                self._cats[line.item_id] = None
        return self._cats[line.item_id]

    def __call__(self, cart):
        index = self._index_now()
        member = cart.member
        lines = cart.lines
        key = [(member or {}).get("tier"), member is not None]
        for line in lines:
            key.append((line.kind, line.plu, line.item_id, line.price, line.quantity,
                        line.grams, line.void))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        self.calls += 1
        n = len(lines)
        gross = [0] * n
        cats = [None] * n
        eligible = []
        for i in range(n):
            line = lines[i]
            if line.void or line.kind != "item":
                continue
            gross[i] = line.gross_amount()
            cats[i] = self._category(line)
            eligible.append(i)
        decided = _decide(index, lines, eligible, gross, cats, member)
        result = []
        for rule, amount, points_x in decided:
            result.append((promo_of(rule, amount) if rule is not None else None, points_x))
        self._last = (key, result)
        return result
