"""X and Z reports, and what a sale costs the SD card (issue 14 item 8):
`python -m tools.bench.reports [--quick] [--dir DIR]`.

  X report     the open batch's figures read and laid out, as MENU > Reports > X does it:
               firmware/flows/report_view.make_doc (journal.find(batch=n), the earlier
               sales its refunds name, summarize) plus the panel's rows and the paper's
               32 columns (layout.screen_lines and layout.receipt). Median of repeats,
               with the read / summarize / layout parts apart. Goal: 50 ms.
  Z report     make_z(term, batch, print_it=False): the same figures, the doc stored with
               journal.save_z; a Z is made once per batch, so each sample is another
               closed batch of the same size. Goal: 50 ms.
               Both over a journal.db of 100,000 records (SQLiteJournal, WAL, MACs):
               149 closed batches of 500, 5 of 5,000, the open one of 500: cash, card
               (brands, chip/tap/swipe), QR (WeChat Pay/Alipay, both entries), 40 % with
               a cart of 1-6 lines, refunds of lines, voids, declines, offline approvals
               still to upload. The figures are for batches of 500 and of 5,000 records.
  bytes a sale the journal's records a sale; the bytes of its rows and index entries
               (SQLite's dbstat) and of its pages (page_count) it grows by a sale (what
               the card keeps); the journal's WAL bytes a sale (what the card is written:
               a frame of a whole page for each page a commit touches); cash, card with
               signature, card with PIN
  fsyncs a sale  counted for real: the terminal (the simulator's whole board, in its own
               process, against tools/host/hostsim.py in this one) runs under
               `strace -f -y -e trace=fsync,fdatasync,...`; the sales are between two
               marker calls (getppid) and every fsync-family call on a file of the
               terminal's data folder in between is counted, by file. Without strace
               this figure is skipped and the line says so.

The machine's load average before and after is printed. Every part is bounded by
time_limit: one that cannot finish stops the run with one line.
"""
import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

from tools.bench import BenchError, run_main, time_limit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEP_S = 20.0               # one step of a sale in the child
MARKER = "getppid"          # the syscall the child makes around the measured sales
SYNC_CALLS = ("fsync", "fdatasync", "syncfs", "sync_file_range", "msync")
TZ_MIN = 480                # the bench's shop is at UTC+8

FULL = {"closed": 149, "closed_rows": 500, "big": 5, "big_rows": 5000, "open_rows": 500,
        "x_repeats": 30, "z_small": 20, "sales": 20}
QUICK = {"closed": 6, "closed_rows": 50, "big": 2, "big_rows": 300, "open_rows": 50,
         "x_repeats": 3, "z_small": 3, "sales": 2}


def _summary(samples):
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


# ------------------------------------------------------------------------ a day's records

CATS = (("Drinks", "饮料"), ("Fruit", "水果"), ("Snacks", "零食"), ("Household", "日用品"))
CARD_LABELS = ("VISA", "VISA", "MASTERCARD", "UNIONPAY", "AMEX")
CARD_ENTRIES = ("chip", "tap", "tap", "swipe")
QR_LABELS = ("WeChat Pay", "Alipay")


def _catalogue(n_items=60):
    """A MemoryCatalogue of n_items in four categories: what the carts name."""
    from firmware.retail.catalogue import MemoryCatalogue
    cat = MemoryCatalogue()
    cats = [cat.add_category(en, zh) for en, zh in CATS]
    items = []
    for i in range(n_items):
        unit = "kg" if i % 10 == 9 else "each"
        item_id = cat.add_item(1000 + i, "Item %d of the shop" % i, 99 + 37 * i,
                               name_zh="商品%d" % i, category=cats[i % len(cats)] if i % 13 else None,
                               tax_rate=13000 if i % 3 else 9000, unit=unit)
        items.append(cat.get(item_id))
    return cat, items


def _carts(items, rnd, n=80):
    """n cart copies (JSON) of 1-6 lines, some weighed, some discounted, a line voided."""
    from firmware.retail.cart import Cart
    out = []
    for _ in range(n):
        cart = Cart("USD")
        for _ in range(rnd.randint(1, 6)):
            item = rnd.choice(items)
            if item["unit"] == "kg":
                cart.add_item(item, grams=rnd.randint(120, 2400))
            else:
                cart.add_item(item, quantity=rnd.randint(1, 4))
        if len(cart.lines) > 2 and rnd.random() < 0.2:
            cart.void(0)
        if rnd.random() < 0.1:
            cart.set_discount("percent", 5000)
        out.append((cart, json.dumps(cart.to_dict())))
    return out


def _utc(rnd, day, minute):
    """A UTC stamp of day (0 = 2026-11-01) at local minute (TZ_MIN ahead of UTC)."""
    from firmware.core.dates import civil_from_days, days_from_civil
    minutes = minute - TZ_MIN
    days = days_from_civil(2026, 11, 1) + day + minutes // 1440
    minutes %= 1440
    y, mo, d = civil_from_days(days)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, minutes // 60, minutes % 60,
                                                rnd.randint(0, 59))


def fill_batch(journal, batch, rows, carts, rnd, day, open_batch=False):
    """rows journal records of one day's batch, written through journal.add/update."""
    from firmware.payments.journal import record
    from firmware.retail.refund import make_part, part_json
    item_sales = []
    written = 0
    stan = 0
    step = max(1, (12 * 60) // max(1, rows))
    minute = 8 * 60
    while written < rows:
        minute = min(20 * 60 + 59, minute + rnd.randint(0, step * 2))
        stan += 1
        base = {"batch": batch, "currency": "USD", "operator": rnd.choice("1223"),
                "utc": _utc(rnd, day, minute), "tz_min": TZ_MIN, "receipt_printed": 1}
        roll = rnd.random()
        cart = None
        if rnd.random() < 0.4:
            cart = rnd.choice(carts)
        amount = cart[0].total() if cart else rnd.randint(50, 20000)
        if roll < 0.02 and item_sales and written + 1 < rows:            # a refund of lines
            sale, sold = item_sales.pop(rnd.randrange(len(item_sales)))
            active = sold.active()
            index, line = active[0]
            part = make_part(sold, [(index, line.measure())], {})
            journal.add(record(kind="refund", method="cash", amount=part["total"],
                               state="approved", original_id=sale, cart=part_json(part),
                               **base))
            written += 1
            continue
        if roll < 0.03 and written + 2 <= rows:                           # a voided sale
            sale = journal.add(record(kind="sale", method="cash", amount=amount,
                                      state="voided", **base))
            journal.add(record(kind="void", method="cash", amount=amount, state="approved",
                               original_id=sale, **base))
            written += 2
            continue
        if roll < 0.05:                                                   # a decline
            journal.add(record(kind="sale", method="card", amount=amount, state="declined",
                               rc="05", stan="%06d" % stan, card_label=rnd.choice(CARD_LABELS),
                               entry=rnd.choice(CARD_ENTRIES), pan_masked="411111******1111",
                               last4="1111", **base))
            written += 1
            continue
        extra = {"cart": cart[1]} if cart else {}
        if roll < 0.65:
            rec = record(kind="sale", method="cash", amount=amount, state="approved",
                         tendered=amount, **dict(base, **extra))
        elif roll < 0.92:
            offline = 1 if open_batch and rnd.random() < 0.05 else 0
            rec = record(kind="sale", method="card", amount=amount, state="approved",
                         stan="%06d" % stan, rrn="6%011d" % stan, auth_code="%06d" % stan,
                         card_label=rnd.choice(CARD_LABELS), entry=rnd.choice(CARD_ENTRIES),
                         pan_masked="411111******1111", last4="1111", cvm="pin",
                         offline=offline, upload="pending" if offline else "",
                         **dict(base, **extra))
        else:
            rec = record(kind="sale", method="qr", amount=amount, state="approved",
                         rrn="4200%014d" % stan, card_label=rnd.choice(QR_LABELS),
                         entry=rnd.choice(("qr", "qr", "qr_show")),
                         pan_masked="1345**********6789", last4="6789", **dict(base, **extra))
        sale = journal.add(rec)
        if cart:
            item_sales.append((sale, cart[0]))
        written += 1
    return written


def build_journal(path, sizes, seed=14):
    """journal.db of sizes' batches (closed small, closed big, the open one); the open
    batch's number and the numbers of the closed batches by size."""
    from drivers.journal_sqlite import SQLiteJournal
    rnd = random.Random(seed)
    _, items = _catalogue()
    carts = _carts(items, rnd)
    journal = SQLiteJournal(path, mac_key=b"bench-journal-mac-key-0123456789")
    # building only: 100,000 durable commits would take the SD card's time, not the
    # report's; the reports are measured with the journal as the terminal opens it
    journal.db.execute("PRAGMA synchronous=OFF")
    plan = [("small", sizes["closed_rows"])] * sizes["closed"] + \
        [("big", sizes["big_rows"])] * sizes["big"] + [("open", sizes["open_rows"])]
    batches = {"small": [], "big": [], "open": []}
    rows = 0
    for day, (what, n) in enumerate(plan):
        batch = journal.next_counter("batch", 999999)
        rows += fill_batch(journal, batch, n, carts, rnd, day, open_batch=(what == "open"))
        batches[what].append(batch)
    journal.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    journal.close()
    return batches["open"][0], batches, rows


def batch_index(path):
    """The names of txns' indexes that lead with its batch column."""
    db = sqlite3.connect(path)
    try:
        names = []
        for row in db.execute("PRAGMA index_list(txns)").fetchall():
            cols = [r[2] for r in db.execute("PRAGMA index_info(%s)" % row[1]).fetchall()]
            if cols and cols[0] == "batch":
                names.append(row[1])
        return names
    finally:
        db.close()


class _System:
    def utc_time(self):
        return time.gmtime()[:6]

    def local_time(self):
        return time.gmtime(time.time() + TZ_MIN * 60)[:6]

    def clock_synced(self):
        return True


class _Store:
    def audit(self, event, operator="", detail=""):
        pass


class _Payments:
    def __init__(self, journal, batch):
        self.journal = journal
        self._batch = batch

    def batch(self):
        return self._batch


class BenchTerm:
    """What make_doc and make_z use of the terminal: config, the journal, the catalogue,
    the clock, the language, an audit that keeps nothing, no printer."""

    def __init__(self, journal, batch, catalogue, lang="en"):
        from firmware.core import config as schema
        from firmware.ui.i18n import Translator
        self.config = schema.defaults()
        self.payments = _Payments(journal, batch)
        self.catalogue = catalogue
        self.system = _System()
        self.store = _Store()
        self.t = Translator(lang)
        self.operator = {"id": "1"}

    def print_receipt(self, receipt):
        return None


def bench_reports(sizes, folder):
    """Builds the 100,000-record journal in folder, then times X and Z."""
    from drivers.journal_sqlite import SQLiteJournal
    from firmware.flows import report_view
    from firmware.reports import layout, totals
    path = os.path.join(folder, "journal.db")
    t0 = time.perf_counter()
    open_batch, batches, rows = build_journal(path, sizes)
    out = {"build_s": time.perf_counter() - t0, "rows": rows,
           "db_mib": os.path.getsize(path) / 1048576.0, "batch_index": batch_index(path)}
    journal = SQLiteJournal(path, mac_key=b"bench-journal-mac-key-0123456789")
    try:
        catalogue, _ = _catalogue()
        for name, batch in (("x_small", open_batch), ("x_big", batches["big"][-1])):
            term = BenchTerm(journal, batch, catalogue)
            whole, screen, paper, read, summ = [], [], [], [], []
            for _ in range(sizes["x_repeats"]):
                a = time.perf_counter()
                doc = report_view.make_doc(term, "X", batch)
                layout.screen_lines(doc, term.t)
                b = time.perf_counter()
                layout.receipt(doc, term.t).text()
                c = time.perf_counter()
                screen.append((b - a) * 1000)
                paper.append((c - b) * 1000)
                whole.append((c - a) * 1000)
                r0 = time.perf_counter()
                records = journal.find(batch=batch)
                r1 = time.perf_counter()
                totals.summarize(records, {}, report_view.CategoryOf(catalogue), "USD")
                r2 = time.perf_counter()
                read.append((r1 - r0) * 1000)
                summ.append((r2 - r1) * 1000)
            if not doc["totals"]["check"]["ok"]:
                raise BenchError("X report of batch %d: the totals check failed: %s"
                                 % (batch, doc["totals"]["check"]["failed"]))
            out[name] = {"batch": batch, "records": doc["totals"]["records"],
                         "samples": len(whole), "median_ms": _summary(whole)[0],
                         "p99_ms": _summary(whole)[1], "read_ms": statistics.median(read),
                         "summarize_ms": statistics.median(summ),
                         "screen_ms": statistics.median(screen),
                         "screen_p99_ms": _summary(screen)[1],
                         "paper_ms": statistics.median(paper),
                         "screen_rows": len(layout.screen_lines(doc, term.t)),
                         "paper_lines": len(layout.receipt(doc, term.t).lines)}
        for name, chosen in (("z_small", batches["small"][-sizes["z_small"]:]),
                             ("z_big", batches["big"])):
            samples = []
            for batch in chosen:
                term = BenchTerm(journal, batch, catalogue)
                a = time.perf_counter()
                doc = report_view.make_z(term, batch, print_it=False)
                samples.append((time.perf_counter() - a) * 1000)
                if doc["batch"] != batch or not doc["totals"]["check"]["ok"]:
                    raise BenchError("Z report of batch %d came out wrong" % batch)
                again = report_view.make_z(term, batch, print_it=False)
                if again != doc or len(journal.z_reports(batch=batch)) != 1:
                    raise BenchError("Z report of batch %d was stored twice" % batch)
            out[name] = {"samples": len(samples), "records": doc["totals"]["records"],
                         "median_ms": _summary(samples)[0], "p99_ms": _summary(samples)[1]}
    finally:
        journal.close()
    return out


# ------------------------------------------------------------------ sales on the board

def _child(spec):
    """In the process strace watches: the simulator's board, spec["n"] sales of one kind
    between two markers; prints what the journal's files did, as JSON."""
    from board.configfile import load_profile
    from firmware.core import config as schema
    from tools.sim.simulator import Simulator
    config = schema.defaults()
    config["storage"]["data_dir"] = spec["data_dir"]
    config["host"].update(address=spec["host"], tls=True, ca_file=spec["ca_file"])
    config["security"]["test_keys"] = True
    config["lab"]["enabled"] = True
    config["ui"]["menu_timeout_s"] = 3600
    config["ui"]["idle_logout_s"] = 3600
    from firmware.payments.anomaly import OFF     # one test card, many times
    config["anomaly"].update(OFF)
    profile = load_profile("sim")
    profile.pop("chip", None)
    sim = Simulator(profile, config, synced=True, auth_iterations=50)
    try:
        term, reactor = sim.terminal, sim.reactor
        sim.start()
        term.auth.create("1", "Supervisor 1", "supervisor", "2580")
        term.login(term.store.get_operator("1"))
        term.go_home()

        def spin(until, what):
            deadline = time.monotonic() + STEP_S
            while not until():
                if time.monotonic() > deadline:
                    raise BenchError("%s sale: %s not within %.0f s; the screen: %s" % (
                        spec["kind"], what, STEP_S, term.screen.text() if term.screen else ""))
                reactor.run_once(5)

        def state():
            flow = term.current()
            return (flow.NAME, flow.state) if flow is not None else None

        def sale(i):
            before = term.payments.journal.last()
            for key in str(10 + i) + "00":          # cents 00: the host approves
                sim.press(key)
            sim.press("ENTER")
            spin(lambda: state() == ("sale", "method"), "the methods")
            if spec["kind"] == "cash":
                sim.press("2")
                sim.press("ENTER")
            else:
                sim.press("1")
                spin(lambda: state() == ("sale", "card"), "the card screen")
                sim.swipe(card="visa_pin" if spec["kind"] == "card_pin" else "mc_signature")
                if spec["kind"] == "card_pin":
                    spin(lambda: state() == ("sale", "pin"), "the PIN screen")
                    for key in "1234":
                        sim.press(key)
                    sim.press("ENTER")
            rec = {}

            def settled():
                last = term.payments.journal.last()
                if last is None or (before is not None and last["id"] == before["id"]):
                    return False
                rec.update(last)
                return last["state"] in ("approved", "declined", "failed", "reversed")
            spin(settled, "the outcome")
            if rec["state"] != "approved":
                raise BenchError("%s sale: %s (%s)" % (spec["kind"], rec["state"], rec["reason"]))
            for _ in range(6):
                if state() == ("idle", "idle") and not term.printer.busy \
                        and term.payments.journal.get(rec["id"])["receipt_printed"]:
                    break
                sim.press("CANCEL")
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline and not (
                        state() == ("idle", "idle") and not term.printer.busy):
                    reactor.run_once(5)
            spin(lambda: state() == ("idle", "idle") and not term.printer.busy
                 and term.payments.journal.get(rec["id"])["receipt_printed"],
                 "the idle screen with the merchant copy on paper")

        journal_path = term.payments.journal.path
        db = sqlite3.connect(journal_path)      # a reader of its own: sees what is committed
        wal_path = journal_path + "-wal"
        # the WAL emptied, so no checkpoint falls among the sales (SQLite makes one each
        # 1000 pages); the first commit after it syncs the WAL's new header once, which
        # the first sale, not counted, takes
        checkpoint = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if checkpoint[0]:
            raise BenchError("the journal's WAL could not be emptied before the sales: %r"
                             % (checkpoint,))
        sale(0)                                 # the first of its kind: not counted
        for _ in range(20):
            reactor.run_once(5)
        before = _journal_bytes(db)
        wal0 = os.path.getsize(wal_path)
        records0 = term.payments.journal.last()["id"]
        writes = _count_writes(term.payments.journal)
        os.getppid()                            # the marker: counting starts
        for i in range(spec["n"]):
            sale(i + 1)
        os.getppid()                            # counting ends
        writes = dict(writes)
        wal = os.path.getsize(wal_path) - wal0
        after = _journal_bytes(db)
        db.close()
        records = term.payments.journal.last()["id"] - records0
    finally:
        sim.close()
    print(json.dumps({"pages_growth": (after["pages"] - before["pages"]) * after["page_size"],
                      "payload_growth": (None if after["payload"] is None else
                                         after["payload"] - before["payload"]),
                      "wal_bytes": wal, "page_size": after["page_size"],
                      "records": records, "writes": writes, "data_dir": spec["data_dir"]}))
    return 0


def _count_writes(journal):
    """{what: count} of the journal's writes from now on (each one a commit): add,
    next_counter(name), update(fields)."""
    counts = {}

    def counted(name, orig, what):
        def call(*args, **kw):
            key = what(args, kw)
            counts[key] = counts.get(key, 0) + 1
            return orig(*args, **kw)
        setattr(journal, name, call)
    counted("add", journal.add, lambda a, kw: "add")
    counted("next_counter", journal.next_counter, lambda a, kw: "counter " + a[0])
    counted("update", journal.update, lambda a, kw: "update " + ",".join(sorted(kw)))
    return counts


def _journal_bytes(db):
    """The journal's size as its readers see it (WAL included): pages, and the bytes of
    the txns rows and their index entries (SQLite's dbstat, None where it is missing)."""
    page = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    try:
        payload = db.execute("SELECT SUM(payload) FROM dbstat WHERE name IN (SELECT name "
                             "FROM sqlite_master WHERE tbl_name='txns')").fetchone()[0]
    except sqlite3.Error:
        payload = None
    return {"page_size": page, "pages": pages, "payload": payload}


def count_syncs(trace_path, data_dir):
    """{file name: count} of the fsync-family calls on files of data_dir between the two
    markers of the trace (strace -f -y output), and how many markers there were."""
    counts = {}
    markers = 0
    data_dir = os.path.realpath(data_dir)
    with open(trace_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split(None, 1)
            call = parts[1] if len(parts) > 1 and parts[0].isdigit() else line
            name = call.split("(", 1)[0].strip()
            if name == MARKER:
                markers += 1
                continue
            if markers != 1 or name not in SYNC_CALLS:
                continue
            start, end = call.find("<"), call.find(">")
            target = call[start + 1:end] if 0 <= start < end else "?"
            if not os.path.realpath(target).startswith(data_dir):
                continue
            key = os.path.relpath(target, data_dir)
            counts[key] = counts.get(key, 0) + 1
    return counts, markers


def bench_sales(kind, n, folder):
    """n sales of kind (cash | card | card_pin) on the board in a child process, under
    strace when there is one: bytes and fsyncs a sale."""
    from tools.host.hostsim import HostSim
    strace = shutil.which("strace")
    tmp = tempfile.mkdtemp(prefix="handpos-bench-sales-", dir=folder)
    host = HostSim(os.path.join(tmp, "host"), tls=True, log=lambda *a: None)
    started = host.start("127.0.0.1", 0)
    try:
        if not started:
            raise BenchError("sales: the host simulator did not start within 10 s")
        data_dir = os.path.join(tmp, "terminal")
        spec = {"kind": kind, "n": n, "data_dir": data_dir, "host": "%s:%d" % started,
                "ca_file": host.ca_file}
        cmd = [sys.executable, "-m", "tools.bench.reports", "--child", json.dumps(spec)]
        trace = os.path.join(tmp, "strace.txt")
        if strace:
            cmd = [strace, "-f", "-qq", "-y", "-e", "trace=%s,%s" % (",".join(SYNC_CALLS), MARKER),
                   "-e", "signal=none", "-o", trace] + cmd
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=60 + n * 15)
        if proc.returncode != 0:
            raise BenchError("%s sales: the terminal's process ended with %d: %s" % (
                kind, proc.returncode, (proc.stderr.strip().splitlines() or ["?"])[-1]))
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        out.update(kind=kind, sales=n, strace=bool(strace))
        if strace:
            counts, markers = count_syncs(trace, data_dir)
            if markers != 2:
                raise BenchError("%s sales: %d markers in the trace, not 2" % (kind, markers))
            out["fsyncs"] = counts
            out["fsyncs_total"] = sum(counts.values())
    finally:
        host.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------- main

def run(quick, folder):
    sizes = QUICK if quick else FULL
    out = {"load_before": os.getloadavg(), "sizes": sizes}
    tmp = tempfile.mkdtemp(prefix="handpos-bench-reports-", dir=folder)
    try:
        rows = sizes["closed"] * sizes["closed_rows"] + sizes["big"] * sizes["big_rows"] + \
            sizes["open_rows"]
        with time_limit(120 + rows / 200.0, "the journal of %d records and its reports" % rows):
            out["reports"] = bench_reports(sizes, tmp)
        out["sales"] = []
        for kind in ("cash", "card", "card_pin"):
            with time_limit(90 + sizes["sales"] * 15, "%d %s sales" % (sizes["sales"], kind)):
                out["sales"].append(bench_sales(kind, sizes["sales"], tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["load_after"] = os.getloadavg()
    return out


KIND_NAMES = {"cash": "cash sale", "card": "card sale (signature)",
              "card_pin": "card sale (PIN)"}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench.reports", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--dir", default=None,
                        help="where the journal and the terminals' data go (default: the "
                             "system's temporary folder; put it on the disk to measure)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(json.loads(args.child))
    print("handpos bench: X and Z reports, a sale's bytes and fsyncs (%s, %d cores, python %s, "
          "SQLite %s)" % (os.uname().machine, os.cpu_count(), sys.version.split()[0],
                          sqlite3.sqlite_version))
    sys.stdout.flush()
    from tools.bench.saf import filesystem_of
    fs = filesystem_of(args.dir or tempfile.gettempdir())
    print("file system: %s at %s%s" % (fs["fstype"], fs["mount"], " (in RAM: the bytes hold, "
                                        "an fsync costs nothing there)" if fs["in_ram"] else ""))
    out = run(args.quick, args.dir)
    rep = out["reports"]
    print("journal: %d records in %.1f MiB (built in %.1f s); index on txns(batch): %s"
          % (rep["rows"], rep["db_mib"], rep["build_s"],
             ", ".join(rep["batch_index"]) or "none (every find(batch=) scans the table)"))
    for name in ("x_small", "x_big"):
        x = rep[name]
        print("X report, a batch of %d records: median %.1f ms, p99 %.1f ms, figures and both "
              "layouts (%d runs); on screen (figures and %d panel rows) median %.1f ms, p99 "
              "%.1f ms; the paper's %d lines %.1f ms more; of the figures: read %.1f ms, "
              "summarize %.1f ms"
              % (x["records"], x["median_ms"], x["p99_ms"], x["samples"], x["screen_rows"],
                 x["screen_ms"], x["screen_p99_ms"], x["paper_lines"], x["paper_ms"],
                 x["read_ms"], x["summarize_ms"]))
    for name in ("z_small", "z_big"):
        z = rep[name]
        print("Z report (make_z, no print), a batch of %d records: median %.1f ms, p99 %.1f ms "
              "(%d batches)" % (z["records"], z["median_ms"], z["p99_ms"], z["samples"]))
    for s in out["sales"]:
        n = float(s["sales"])
        line = ("%s: %.1f journal records a sale, %s B of rows and index entries a sale, "
                "the journal %.0f B larger a sale (whole pages); journal WAL written %.0f B a "
                "sale (%.1f pages of %d B)"
                % (KIND_NAMES[s["kind"]], s["records"] / n,
                   "?" if s["payload_growth"] is None else "%.0f" % (s["payload_growth"] / n),
                   s["pages_growth"] / n, s["wal_bytes"] / n,
                   s["wal_bytes"] / n / (s["page_size"] + 24), s["page_size"]))
        line += "; journal writes a sale: %s" % ", ".join(
            "%s %.2f" % (k, s["writes"][k] / n) for k in sorted(s["writes"]))
        if s["strace"]:
            files = ", ".join("%s %.2f" % (k, s["fsyncs"][k] / n) for k in sorted(s["fsyncs"]))
            line += "; fsyncs a sale %.2f (%s) over %d sales" % (s["fsyncs_total"] / n, files,
                                                                 s["sales"])
        else:
            line += "; fsyncs: not counted (no strace: apt-get install strace)"
        print(line)
    print("  load average before %.2f, after %.2f (1 min)"
          % (out["load_before"][0], out["load_after"][0]))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, name="bench.reports"))
