"""The catalogue and its stock on and off the terminal as CSV: `handpos catalogue import
FILE.csv`, `handpos catalogue export FILE.csv`, `handpos catalogue movements FILE.csv`
(docs/retail.md, "CSV import and export", has the columns, examples and every error).

An import is one transaction: by default every line is good or nothing is imported
(every bad line is listed with its line number and reason); --partial imports the good
lines and lists the others. Lines are matched to items by PLU: a new PLU adds an item, a
known one is updated with the columns the file has (a column the file leaves out keeps
its value). A stock column sets the quantity on hand: the difference is recorded as a
"counted" movement. An export imported again gives the same catalogue, and exported
again the same file, byte for byte.
"""
import csv
import io
import os
import sys
import time

from firmware.core.money import CURRENCIES, exponent
from firmware.retail import barcode
from firmware.retail.catalogue import (EACH, KG, PLU_MAX, PRICE_MAX, QTY_MAX,
                                       TAX_MAX, UNITS, BadItem, CatalogueError, _name)

COLUMNS = ("plu", "barcodes", "name_en", "name_zh", "category", "category_zh", "price",
           "tax_rate", "unit", "stock", "low_stock", "active")
MOVEMENT_COLUMNS = ("id", "utc", "plu", "name_en", "reason", "delta", "on_hand", "unit",
                    "operator", "ref")
OPERATOR = "import"             # the operator of the stock counts an import records
TRUE = ("1", "yes", "y", "true")
FALSE = ("0", "no", "n", "false")
BARCODE_REASONS = {"check_digit": "wrong check digit", "length": "wrong length",
                   "chars": "characters no barcode has",
                   "receipt": "the shape of a receipt's code (R and digits), which the "
                              "terminal keeps for refunds"}


class FileRefused(Exception):
    """The whole file cannot be imported (its header, its currency): one line each in
    problems, with the line number where there is one."""

    def __init__(self, problems):
        Exception.__init__(self, "; ".join(problems))
        self.problems = problems


# -- numbers ----------------------------------------------------------------------------
def parse_decimal(text, places):
    """'12.80' with places 2 -> 1280; '-0.452' with places 3 -> -452. Raises ValueError
    naming what is wrong. No floats: the digits are read as they are written."""
    sign = 1
    body = text
    if body[:1] in ("-", "+"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    whole, dot, frac = body.partition(".")
    if not whole and not frac or not (whole.isdigit() or whole == "") \
            or not (frac.isdigit() or frac == "") or (dot and not frac and not whole):
        raise ValueError("not a number")
    if not whole.isascii() or not frac.isascii():
        raise ValueError("not a number")
    if len(frac) > places:
        if frac[places:].strip("0"):
            raise ValueError("more than %d decimal%s" % (places, "" if places == 1 else "s"))
        frac = frac[:places]
    if len(whole.lstrip("0")) > 12:
        raise ValueError("too large")
    return sign * (int(whole or "0") * 10 ** places + int((frac + "0" * places)[:places] or "0"))


def format_decimal(value, places, trim=False):
    """1280, 2 -> '12.80'; with trim the decimals that are zero go: 13000, 3 -> '13'."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    if places == 0:
        return sign + str(value)
    text = "%d.%0*d" % (value // 10 ** places, places, value % 10 ** places)
    if trim:
        text = text.rstrip("0").rstrip(".")
    return sign + text


def _quantity_places(unit):
    return 3 if unit == KG else 0       # kilograms with grams, or whole pieces


def _parse_quantity(text, unit, what):
    try:
        return parse_decimal(text, _quantity_places(unit))
    except ValueError as exc:
        if unit == EACH and "decimal" in str(exc):
            raise ValueError("%s %r: whole pieces for an item sold each" % (what, text))
        raise ValueError("%s %r: %s" % (what, text, exc))


# -- reading the file -------------------------------------------------------------------
def read_rows(data):
    """(line number, [cells]) of each non-empty row of CSV bytes, UTF-8 with or without
    a BOM, the header first; cells None for a row that is not UTF-8 (a bad line of its
    own). Decoded as it goes: a 100,000-line file is never held twice in memory."""
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig",
                              errors="surrogateescape", newline="")
    reader = csv.reader(stream)
    start = 1
    try:
        for cells in reader:
            line = start
            start = reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue                    # an empty line (the last one, mostly)
            if any(_not_utf8(c) for c in cells):
                cells = None
            yield line, cells
    except csv.Error as exc:
        raise FileRefused(["line %d: %s: the file is not CSV from there on"
                           % (reader.line_num, exc)])


def _not_utf8(text):
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            return True
    return False


def read_header(header, currency):
    """{column: index} of the header line, the price column for currency taken as
    "price". Raises FileRefused naming every problem."""
    line, cells = header
    if cells is None:
        raise FileRefused(["line %d: not UTF-8 text: save the file as UTF-8 (CSV UTF-8 in "
                           "Excel)" % line])
    names = [c.strip().lower() for c in cells]
    problems = []
    index = {}
    other_prices = []
    own = "price_" + currency.lower()
    for i, name in enumerate(names):
        if name == own:
            key = "price"
            if "price" in index:
                problems.append("line %d: both price and %s: keep one" % (line, cells[i].strip()))
        elif name.startswith("price_") and name[6:].upper() in CURRENCIES:
            other_prices.append(cells[i].strip())
            continue
        else:
            key = name
            if key == "price" and "price" in index:
                problems.append("line %d: both price and price_%s: keep one" % (line, currency))
        if key not in COLUMNS:
            problems.append("line %d: unknown column %r; the columns are: %s"
                            % (line, cells[i].strip(), ", ".join(COLUMNS)))
        elif key in index and key != "price":
            problems.append("line %d: column %s twice" % (line, key))
        index.setdefault(key, i)
    if "plu" not in index:
        problems.append("line %d: no plu column: every line names its item by PLU" % line)
    if "price" not in index and other_prices:
        problems.append("line %d: the prices are in %s and this terminal sells in %s: add "
                        "a price (or price_%s) column" % (line, ", ".join(other_prices),
                                                          currency, currency))
    if problems:
        raise FileRefused(problems)
    return index


class Line:
    """One data line, read: plu, the item fields it gives, category, barcodes, the
    stock and low-stock texts (read once the unit is known)."""
    __slots__ = ("number", "plu", "fields", "category", "barcodes", "stock_text",
                 "low_text", "stock", "error")

    def __init__(self, number):
        self.number = number
        self.plu = None
        self.fields = {}
        self.category = None            # absent; ("", "") for "no category"
        self.barcodes = None            # absent; else [keys]
        self.stock_text = None
        self.low_text = None
        self.stock = None
        self.error = None


def read_line(number, cells, index, currency, rules, width, shared=None):
    """A Line; its error set to the first reason it cannot be imported. width: the
    number of columns of the header; shared: a dict the lines of one file share values
    through."""
    ln = Line(number)
    if cells is None:
        ln.error = "not UTF-8 text: save the file as UTF-8 (CSV UTF-8 in Excel)"
        return ln
    if len(cells) != width and (len(cells) < width or any(c.strip() for c in cells[width:])):
        ln.error = "%d fields, the header has %d" % (len(cells), width)
        return ln

    def cell(name):
        i = index.get(name)
        if i is None:
            return None
        return cells[i].strip() if i < len(cells) else ""
    try:
        _read_cells(ln, cell, currency, rules, {} if shared is None else shared)
    except ValueError as exc:
        ln.error = str(exc)
    except BadItem as exc:
        ln.error = "%s: %s" % (exc.field, exc.reason)
    return ln


def _read_cells(ln, cell, currency, rules, shared):
    plu = cell("plu")
    if not plu or not plu.isdigit() or not plu.isascii() or not 1 <= int(plu) <= PLU_MAX:
        raise ValueError("bad PLU %r: a number from 1 to %d" % (plu, PLU_MAX))
    ln.plu = int(plu)
    for name in ("name_en", "name_zh"):
        value = cell(name)
        if value is not None:
            _name(name, value, name == "name_en")
            ln.fields[name] = value
    price = cell("price")
    if price is not None:
        try:
            value = parse_decimal(price, exponent(currency))
        except ValueError as exc:
            raise ValueError("bad price %r: %s (%s has %d decimals)"
                             % (price, exc, currency, exponent(currency)))
        if not 0 <= value <= PRICE_MAX:
            raise ValueError("bad price %r: from 0 to %s" % (
                price, format_decimal(PRICE_MAX, exponent(currency))))
        ln.fields["price"] = value
    tax = cell("tax_rate")
    if tax is not None:
        text = tax[:-1].strip() if tax.endswith("%") else tax
        try:
            value = parse_decimal(text or "0", 3)
        except ValueError as exc:
            raise ValueError("bad tax rate %r: %s (a percentage: 13, 8.875, 0)" % (tax, exc))
        if not 0 <= value <= TAX_MAX:
            raise ValueError("bad tax rate %r: from 0 to 100 (percent)" % tax)
        ln.fields["tax_rate"] = value
    unit = cell("unit")
    if unit is not None:
        unit = unit.lower() or EACH
        if unit not in UNITS:
            raise ValueError("unknown unit %r: each or kg" % cell("unit"))
        ln.fields["unit"] = unit
    active = cell("active")
    if active is not None:
        word = active.lower()
        if word not in TRUE + FALSE + ("",):
            raise ValueError("bad active %r: 1 or 0 (yes or no)" % active)
        ln.fields["active"] = word not in FALSE
    cat = cell("category")
    cat_zh = cell("category_zh")
    if cat is not None:
        _name("category", cat, False)
        _name("category_zh", cat_zh or "", False)
        if cat_zh and not cat:
            raise ValueError("category_zh %r without a category" % cat_zh)
        # one tuple per category, however many lines name it (a 100,000-line file
        # names a few dozen)
        pair = (cat, cat_zh or "") if cat else ("", "")
        ln.category = shared.setdefault(pair, pair)
    codes = cell("barcodes")
    if codes is not None:
        ln.barcodes = []
        for code in [c.strip() for c in codes.split("|")]:
            if not code:
                continue
            key = barcode_key(code, rules)
            if key not in ln.barcodes:
                ln.barcodes.append(key)
    ln.stock_text = cell("stock") or None
    low = cell("low_stock")
    if low is not None:
        ln.low_text = low
    return ln


def barcode_key(code, rules):
    """The lookup key an item's barcode is stored under; ValueError with the reason
    from firmware/retail/barcode.py for a code that cannot be one."""
    got = barcode.classify(code)
    if not got.ok:
        why = BARCODE_REASONS.get(got.reason, got.reason)
        if got.reason == "check_digit" and barcode.is_digits(code):
            body = code[:-1] if got.kind != "upce" else None
            if body:
                why += " (it ends in %s; the check digit is %d)" % (code[-1],
                                                                    barcode.check_digit(body))
        raise ValueError("bad barcode %r: %s" % (code, why))
    rule = barcode.scale_rule_for(got.key, rules)
    if rule is not None:
        raise ValueError("barcode %r is read as a scale label ([retail] scale_rules, prefix "
                         "%s): a weighed item is found by its PLU" % (code, got.key[:2]))
    return got.key


def _finish_line(ln, unit, allow_negative):
    """Read stock and low_stock in the unit the item will have."""
    if ln.low_text is not None:
        if ln.low_text == "":
            ln.fields["low_stock"] = None
        else:
            value = _parse_quantity(ln.low_text, unit, "bad low_stock")
            if not 0 <= value <= QTY_MAX:
                raise ValueError("bad low_stock %r: 0 or more" % ln.low_text)
            ln.fields["low_stock"] = value
    if ln.stock_text is not None:
        value = _parse_quantity(ln.stock_text, unit, "bad stock")
        if not -QTY_MAX <= value <= QTY_MAX:
            raise ValueError("bad stock %r: too large" % ln.stock_text)
        if value < 0 and not allow_negative:
            raise ValueError("stock %s is below zero, which [retail] allow_negative_stock = "
                             "false does not allow" % ln.stock_text)
        ln.stock = value


# -- checking the lines against each other and the catalogue ----------------------------
def plan(lines, view, allow_negative, partial):
    """Mark every line that cannot be imported (ln.error). view: the catalogue's
    import_view() of the file's PLUs and barcodes. With partial, a line refused can
    keep a barcode where it is, which can refuse another line: checked until nothing
    changes."""
    items, held = view
    first_plu = {}
    first_cat_zh = {}
    for ln in lines:
        if ln.error:
            continue
        if ln.plu in first_plu:
            ln.error = "PLU %d is also on line %d" % (ln.plu, first_plu[ln.plu])
            continue
        first_plu[ln.plu] = ln.number
        known = items.get(ln.plu)
        try:
            if known is not None and known[1] is None:
                raise ValueError("PLU %d: its record in the catalogue failed its integrity "
                                 "check, so it is not changed (docs/retail.md: damaged "
                                 "records)" % ln.plu)
            if known is None:
                missing = [f for f in ("name_en", "price") if f not in ln.fields]
                if missing:
                    raise ValueError("PLU %d is a new item and needs %s"
                                     % (ln.plu, " and ".join(missing)))
            unit = ln.fields.get("unit") or (known[1] if known else EACH)
            _finish_line(ln, unit, allow_negative)
            if ln.stock is not None and known is not None and not known[3]:
                raise ValueError("PLU %d: its stock record failed its integrity check, so "
                                 "its stock is not changed" % ln.plu)
            if ln.category and ln.category[0]:
                en, zh = ln.category
                if zh and en in first_cat_zh and first_cat_zh[en][0] != zh:
                    raise ValueError("category %s is %s here and %s on line %d"
                                     % (en, zh, first_cat_zh[en][0], first_cat_zh[en][1]))
                if zh:
                    first_cat_zh.setdefault(en, (zh, ln.number))
        except ValueError as exc:
            ln.error = str(exc)
    # barcodes: each on one item once the import is done
    while True:
        refused = _barcode_conflicts(lines, held)
        if not refused:
            break
        for ln, why in refused:
            ln.error = why
        if not partial:
            break


def _barcode_conflicts(lines, codes):
    """[(line, reason)] of the good lines whose barcodes are taken."""
    good = [ln for ln in lines if not ln.error]
    # items whose barcodes the file replaces: their stored codes are free
    relisted = {ln.plu for ln in good if ln.barcodes is not None}
    bad_plu = {ln.plu: ln.number for ln in lines if ln.error and ln.plu is not None}
    owner = {}
    refused = []
    for ln in good:
        if ln.barcodes is None:
            continue
        why = None
        for key in ln.barcodes:
            if key in owner:
                why = "barcode %s is also on line %d" % (key, owner[key])
                break
            held = codes.get(key)
            if held is not None and held[0] != ln.plu and held[0] not in relisted:
                if held[0] in bad_plu:
                    why = ("barcode %s stays on PLU %s, whose line %d is not imported"
                           % (key, held[0], bad_plu[held[0]]))
                else:
                    why = "barcode %s is already on PLU %s (%s) in the catalogue" % (
                        key, held[0], held[1])
                break
        if why:
            refused.append((ln, why))
            continue
        for key in ln.barcodes:
            owner[key] = ln.number
    return refused


# -- import -----------------------------------------------------------------------------
class Progress:
    """A bar on stream when it is a terminal (at most ten redraws a second), else
    nothing until the end."""

    def __init__(self, stream, total, tty=None):
        self.stream = stream
        self.total = max(total, 1)
        self.tty = stream.isatty() if tty is None else tty
        self.label = ""
        self.last = 0.0
        self.drawn = False

    def update(self, done, label=None):
        if label is not None:
            self.label = label
        if not self.tty:
            return
        now = time.monotonic()
        if done < self.total and now - self.last < 0.1:
            return
        self.last = now
        width = 30
        filled = width * min(done, self.total) // self.total
        self.stream.write("\r%-9s [%s%s] %3d%%  %s/%s lines" % (
            self.label, "#" * filled, "." * (width - filled), 100 * min(done, self.total) // self.total,
            "{:,}".format(done), "{:,}".format(self.total)))
        self.stream.flush()
        self.drawn = True

    def end(self):
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def import_csv(catalogue, data, currency, rules, allow_negative, partial=False,
               ref="", progress=None):
    """Import CSV bytes into catalogue (drivers.catalogue_sqlite.SQLiteCatalogue).

    Returns {"lines", "bad": [(line, reason)], "imported": lines written (0 when
    nothing was), "added", "updated", "unchanged", "moved"}. Raises FileRefused for a
    file that cannot be read at all."""
    rows = read_rows(data)
    header = next(rows, None)
    if header is None:
        raise FileRefused(["the file is empty: the first line names the columns (%s)"
                           % ", ".join(COLUMNS)])
    index = read_header(header, currency)
    width = len(header[1])
    lines = []
    shared = {}
    for number, cells in rows:
        lines.append(read_line(number, cells, index, currency, rules, width, shared))
        if progress is not None and len(lines) % 500 == 0:
            progress.update(number, "checking")
    if progress is not None:
        progress.update(progress.total, "checking")
    plus = {ln.plu for ln in lines if ln.plu is not None}
    keys = {k for ln in lines if ln.barcodes for k in ln.barcodes}
    plan(lines, catalogue.import_view(plus, keys), allow_negative, partial)
    bad = [(ln.number, ln.error) for ln in lines if ln.error]
    result = {"lines": len(lines), "bad": bad, "imported": 0, "added": 0, "updated": 0,
              "unchanged": 0, "moved": 0}
    if bad and not partial:
        return result
    records = []
    for ln in lines:
        if ln.error:
            continue
        rec = {"plu": ln.plu, "fields": ln.fields}
        if ln.category is not None:
            rec["category"] = ln.category if ln.category[0] else None
        if ln.barcodes is not None:
            rec["barcodes"] = ln.barcodes
        if ln.stock is not None:
            rec["stock"] = ln.stock
        records.append(rec)
    if records:
        def step(done):
            if progress is not None:
                progress.update(done, "writing")
        if progress is not None:
            progress.total = len(records)
        counts = catalogue.apply_import(records, OPERATOR, ref[:64], step)
        result.update(counts)
        result["imported"] = len(records)
    return result


# -- export -----------------------------------------------------------------------------
def _writer(f):
    return csv.writer(f, lineterminator="\r\n")


def export_csv(catalogue, currency, bom=True):
    """(CSV bytes of every item, [damaged items left out]): the columns of COLUMNS,
    items by PLU, quantities in the item's unit (kg with 3 decimals)."""
    names = catalogue.category_names()
    out = io.StringIO()
    w = _writer(out)
    w.writerow(COLUMNS)
    places = exponent(currency)
    left_out = []
    after = 0
    while True:
        page = catalogue.export_rows(after)
        if not page:
            break
        for plu, item, codes, on_hand in page:
            if item is None:
                left_out.append("PLU %d: its record failed its integrity check" % plu)
                continue
            if on_hand is None:
                left_out.append("PLU %d: its stock record failed its integrity check" % plu)
                continue
            if item["category"] is not None and item["category"] not in names:
                left_out.append("PLU %d: its category's record failed its integrity check" % plu)
                continue
            qp = _quantity_places(item["unit"])
            en, zh = names.get(item["category"], ("", ""))
            w.writerow([plu, "|".join(codes), item["name_en"], item["name_zh"], en, zh,
                        format_decimal(item["price"], places),
                        format_decimal(item["tax_rate"], 3, trim=True), item["unit"],
                        format_decimal(on_hand, qp),
                        "" if item["low_stock"] is None else format_decimal(item["low_stock"], qp),
                        1 if item["active"] else 0])
        after = page[-1][0]
    data = out.getvalue().encode("utf-8")
    return (b"\xef\xbb\xbf" + data if bom else data), left_out


def export_movements(catalogue, after=0, bom=True):
    """CSV bytes of the stock movements with id > after, oldest first."""
    out = io.StringIO()
    w = _writer(out)
    w.writerow(MOVEMENT_COLUMNS)
    items = {}
    n = 0
    while True:
        page = catalogue.movements(after=after, limit=5000)
        if not page:
            break
        for m in page:
            if m["item_id"] not in items:
                try:
                    items[m["item_id"]] = catalogue.get(m["item_id"])
                except CatalogueError:      # damaged: its movements still go out
                    items[m["item_id"]] = {"plu": "", "name_en": "(damaged item %d)"
                                           % m["item_id"], "unit": ""}
            item = items[m["item_id"]]
            qp = _quantity_places(item["unit"])
            w.writerow([m["id"], m["utc"], item["plu"], item["name_en"], m["reason"],
                        format_decimal(m["delta"], qp), format_decimal(m["on_hand"], qp),
                        item["unit"], m["operator"], m["ref"]])
            n += 1
        after = page[-1]["id"]
    data = out.getvalue().encode("utf-8")
    return (b"\xef\xbb\xbf" + data if bom else data), n


def write_file(path, data):
    """data to path through a temporary file and a rename: a reader never sees half."""
    tmp = "%s.tmp%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- the demo catalogue -----------------------------------------------------------------
DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config",
                    "demo_catalogue.csv")


def scale_rules_of(config):
    return config["retail"].get("scale_rules") or barcode.DEFAULT_SCALE_RULES


def load_demo(data_dir, data_key, config, path=DEMO):
    """Import the demo catalogue into a data folder's new catalogue.db (the simulator's
    first start); the import's result."""
    from drivers.catalogue_sqlite import open_catalogue
    cat = open_catalogue(data_dir, data_key, config)
    try:
        with open(path, "rb") as f:
            data = f.read()
        return import_csv(cat, data, config["money"]["currency"], scale_rules_of(config),
                          config["retail"]["allow_negative_stock"], ref="demo catalogue")
    finally:
        cat.close()


# -- the command ------------------------------------------------------------------------
def _say(line):
    sys.stderr.write("handpos catalogue: " + line + "\n")
    sys.stderr.flush()


def command(args, config, profile, data_dir, hold_stopped):
    """`handpos catalogue import|export|movements FILE` on the data folder data_dir.
    hold_stopped(data_dir) -> (locks, None) or (None, why): the terminal's and the
    simulator's locks, held while an import writes. Returns the exit status."""
    from board import datadir
    from drivers.catalogue_sqlite import CurrencyMismatch, open_catalogue, FILE
    from drivers.keystore import KeyStoreError
    from firmware.core.store import StorageFault
    if not os.path.isdir(data_dir):
        _say("refused: no data directory %s: check --config (storage.data_dir) or --data; "
             "nothing was %s" % (data_dir, "imported" if args.action == "import" else "written"))
        return 2
    if args.action != "import" and not os.path.exists(os.path.join(data_dir, FILE)):
        _say("no catalogue in %s (%s): import one first; nothing was written" % (data_dir, FILE))
        return 2
    held = []
    if args.action == "import":
        owner = os.stat(data_dir).st_uid
        if owner != os.geteuid():
            _say("refused: the data directory %s belongs to uid %d, and this is uid %d: run "
                 "it as the terminal's user (sudo -u handpos handpos catalogue ...); nothing "
                 "was imported" % (data_dir, owner, os.geteuid()))
            return 2
        held, why = hold_stopped(data_dir)
        if why:
            _say("refused: %s; nothing was imported" % why)
            return 2
    try:
        try:
            data_key = datadir.open_keys(profile, data_dir).key("data")
        except (KeyStoreError, StorageFault) as exc:
            hint = ""
            if os.path.exists(os.path.join(data_dir, "sim.lock")) and \
                    profile.get("board", {}).get("name") != "sim":
                hint = " (a simulator's data folder: add --board sim)"
            _say("refused: the terminal's keys do not open: %s%s" % (exc, hint))
            return 2
        try:
            cat = open_catalogue(data_dir, data_key, config)
        except CurrencyMismatch as exc:
            _say("refused: %s" % exc.detail)
            return 2
        except StorageFault as exc:
            _say("refused: %s" % exc)
            return 2
        try:
            if args.action == "import":
                return _import(args, cat, config)
            if args.action == "export":
                data, left_out = export_csv(cat, config["money"]["currency"], bom=not args.no_bom)
                write_file(args.file, data)
                for line in left_out:
                    _say("left out: " + line)
                n = data.count(b"\n") - 1
                print("handpos catalogue: %s items written to %s%s"
                      % ("{:,}".format(n), args.file,
                         "; %d damaged left out (docs/retail.md)" % len(left_out) if left_out else ""))
                return 1 if left_out else 0
            data, n = export_movements(cat, args.after, bom=not args.no_bom)
            write_file(args.file, data)
            print("handpos catalogue: %s movements written to %s" % ("{:,}".format(n), args.file))
            return 0
        except StorageFault as exc:
            _say("stopped: %s; nothing was %s" % (exc, "imported" if args.action == "import"
                                                   else "written"))
            return 2
        finally:
            cat.close()
    finally:
        for lock in held:
            lock.close()


def _import(args, cat, config):
    try:
        with open(args.file, "rb") as f:
            data = f.read()
    except OSError as exc:
        _say("cannot read %s: %s; nothing was imported" % (args.file, exc.strerror))
        return 2
    progress = Progress(sys.stderr, data.count(b"\n"))
    try:
        result = import_csv(cat, data, config["money"]["currency"], scale_rules_of(config),
                            config["retail"]["allow_negative_stock"], partial=args.partial,
                            ref="import " + os.path.basename(args.file), progress=progress)
    except FileRefused as exc:
        progress.end()
        for line in exc.problems:
            _say(line)
        _say("nothing was imported")
        return 2
    progress.end()
    for number, why in result["bad"]:
        _say("line %d: %s" % (number, why))
    n, bad = result["lines"], len(result["bad"])
    good = n - bad

    def count(x):
        return "{:,}".format(x)
    if bad and not args.partial:
        _say("%s bad line%s of %s; nothing was imported: correct %s, or import the %s good "
             "lines with --partial" % (count(bad), "" if bad == 1 else "s", count(n),
                                       "it" if bad == 1 else "them", count(good)))
        return 2
    print("handpos catalogue: %s lines read, %s imported (%s new, %s changed, %s unchanged; "
          "%s stock counts)%s" % (count(n), count(result["imported"]), count(result["added"]),
                                  count(result["updated"]), count(result["unchanged"]),
                                  count(result["moved"]),
                                  "; %s bad lines left out" % count(bad) if bad else ""))
    return 1 if bad else 0
