"""`handpos promotions import FILE | list`: the automatic promotions of catalogue.db.

The file is JSON (docs/promotions.md): {"promotions": [{...}, ...]}, optionally with
"currency". An import replaces every promotion with the file's, in one transaction,
only when every promotion in it is good: otherwise each problem is a line on stderr
and nothing changes. It writes only while the terminal is stopped, as the catalogue
import does.
"""
import json
import os
import sys
import time

from firmware.core.money import CURRENCIES, format_amount
from firmware.retail import promotions as P
from firmware.retail.tax import format_rate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "config", "demo_promotions.json")


def _say(line):
    sys.stderr.write("handpos promotions: " + line + "\n")
    sys.stderr.flush()


def today():
    y, m, d = time.localtime()[:3]
    return P.day_number(y, m, d)


def read(data, catalogue, currency, day=None):
    """(rules, problems) of a file's bytes, checked against catalogue (its PLUs and
    categories) and day (a local day number: expired promotions are refused)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], ["not UTF-8 text: save the file as UTF-8"]
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return [], ["not JSON: %s" % exc]
    problems = []
    if isinstance(doc, dict) and doc.get("currency") not in (None, currency):
        problems.append("the file's amounts are in %s and the terminal's currency is %s"
                        % (doc.get("currency"), currency))
    plus = set()
    for item in catalogue.items():
        plu = item["plu"]
        plus.add(plu)
    categories = {}
    for cat in catalogue.categories():
        categories[cat["name_en"]] = cat["id"]
    rules, more = P.parse(doc, CURRENCIES[currency][1], today=day, plus=plus,
                          categories=categories)
    problems += more
    return ([] if problems else rules), problems


def import_file(catalogue, path, currency, day=None):
    """(count imported, problems): nothing is written when there is a problem."""
    with open(path, "rb") as f:
        data = f.read()
    rules, problems = read(data, catalogue, currency, day)
    if problems:
        return 0, problems
    return catalogue.replace_promotions(rules, ref=os.path.basename(path)), []


def load_demo(data_dir, data_key, config, path=DEMO):
    """The demo promotions into a data folder's catalogue.db (the simulator's first
    start, after the demo catalogue): (count, problems)."""
    from drivers.catalogue_sqlite import open_catalogue
    cat = open_catalogue(data_dir, data_key, config)
    try:
        return import_file(cat, path, config["money"]["currency"], today())
    finally:
        cat.close()


def describe(rule, currency):
    """One promotion in words for `list`: its reward and scope."""
    kind = rule["reward"]
    if kind == "percent":
        what = "%s off" % format_rate(rule["value"])
    elif kind == "amount":
        what = "%s off" % format_amount(rule["value"], currency)
    elif kind == "price":
        what = "price %s" % format_amount(rule["value"], currency)
    elif kind == "buy_get":
        what = "buy %d get %d" % (rule["buy"], rule["get"])
    elif kind == "cheapest_free":
        what = "cheapest of %d free" % (rule["buy"] + rule["get"])
    else:
        what = "points x%s" % format_rate(rule["value"]).rstrip("%")
    if rule["scope"] == "cart":
        where = "the cart"
    elif rule["scope"] == "items":
        where = "PLU " + ",".join("%d" % p for p in rule["plus"])
    else:
        where = "category " + ",".join(rule.get("category_names") or
                                       ["%s" % c for c in rule["categories"]])
    cond = []
    if rule["min_qty"]:
        cond.append("min qty %d" % rule["min_qty"])
    if rule["min_amount"]:
        cond.append("min %s" % format_amount(rule["min_amount"], currency))
    if rule["tiers"]:
        cond.append("tiers " + ",".join(rule["tiers"]))
    elif rule["members_only"]:
        cond.append("members")
    return "%s on %s%s" % (what, where, (" (" + ", ".join(cond) + ")") if cond else "")


def list_lines(rules, currency, now):
    """The lines of `list`: id, name, window, what, and whether it is on now."""
    out = []
    day = P.day_number(now[0], now[1], now[2])
    for rule in rules:
        dates, days, hours = P.window_text(rule)
        if rule.get("start") is not None or rule.get("end") is not None:
            dates = "%s..%s" % (P.date_text(rule["start"]) if rule.get("start") is not None else "",
                                P.date_text(rule["end"]) if rule.get("end") is not None else "")
        window = " ".join(w for w in (dates, days or "every day", hours or "all day") if w)
        if P.is_open(rule, now):
            state = "on now"
        elif rule.get("end") is not None and rule["end"] < day:
            state = "expired"
        else:
            state = "not now"
        out.append("%-12s %s | %s | %s | %s" % (rule["id"], rule["name_en"], window,
                                               describe(rule, currency), state))
    return out


def command(args, config, profile, data_dir, hold_stopped):
    """`handpos promotions import FILE | list` on data_dir; the exit status."""
    from board import datadir
    from drivers.catalogue_sqlite import FILE, CurrencyMismatch, open_catalogue
    from drivers.keystore import KeyStoreError
    from firmware.core.store import StorageFault
    nothing = "nothing was imported" if args.action == "import" else "nothing was listed"
    if not os.path.exists(os.path.join(data_dir, FILE)):
        _say("no catalogue in %s (%s): import the catalogue first; %s" % (data_dir, FILE, nothing))
        return 2
    held = []
    if args.action == "import":
        held, why = hold_stopped(data_dir)
        if why:
            _say("refused: %s; %s" % (why, nothing))
            return 2
    try:
        try:
            data_key = datadir.open_keys(profile, data_dir).key("data")
            cat = open_catalogue(data_dir, data_key, config)
        except CurrencyMismatch as exc:
            _say("refused: %s" % exc.detail)
            return 2
        except (KeyStoreError, StorageFault) as exc:
            _say("refused: %s; %s" % (exc, nothing))
            return 2
        currency = config["money"]["currency"]
        try:
            if args.action == "list":
                rules = cat.promotions()
                if not rules:
                    print("handpos promotions: none (handpos promotions import FILE)")
                    return 0
                for line in list_lines(rules, currency, time.localtime()[:6]):
                    print(line)
                return 0
            try:
                n, problems = import_file(cat, args.file, currency, today())
            except OSError as exc:
                _say("cannot read %s: %s; %s" % (args.file, exc.strerror, nothing))
                return 2
            for line in problems:
                _say(line)
            if problems:
                _say("%d problem%s; %s: correct the file and import it again"
                     % (len(problems), "" if len(problems) == 1 else "s", nothing))
                return 2
            print("handpos promotions: %d promotion%s imported from %s (the ones before "
                  "replaced)" % (n, "" if n == 1 else "s", args.file))
            return 0
        except StorageFault as exc:
            _say("stopped: %s; %s" % (exc, nothing))
            return 2
        finally:
            cat.close()
    finally:
        for lock in held:
            lock.close()
