"""The catalogue's figures (issue 12): `python -m tools.bench.catalogue [--quick]`.

  import    a 100,000-line CSV (two barcodes an item on one in ten, names in English
            and Chinese, 40 categories, stock on every line) into a new catalogue.db
            through tools/catalogue_csv.py, as `handpos catalogue import` does it: one
            transaction, a MAC on every row (seconds, lines per second, file size, the
            peak resident memory of the Python that imported it)
  scan      what a scan costs once the code is read: barcode.classify() and
            find_by_barcode() of a random item's code, MAC checked (median, p99 in ms);
            also a code that is in no item and find_by_plu()
  memory    the resident memory (VmRSS) of a fresh Python that opened that catalogue and
            looked up 2,000 codes, beside one that imported the same modules only

Every figure is measured in one run, in a temporary folder under the repository (or
--folder: give one on the SD card to measure the card). The machine's load average
before and after is printed: timing on a busy machine says little.
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from tools.bench import BenchError, time_limit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = bytes(range(32))          # a data key of the bench's own: the MACs cost the same
CURRENCY = "CNY"
CATEGORIES = 40


def _summary(samples_ms):
    """median and p99 (the same p99 rule as the other benches)."""
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def item_code(i):
    from firmware.retail.barcode import check_digit
    body = "69%010d" % i
    return body + str(check_digit(body))


def make_csv(n):
    """CSV bytes of n items (PLU 1..n) and the first barcode of each."""
    lines = ["plu,barcodes,name_en,name_zh,category,category_zh,price,tax_rate,unit,stock,"
             "low_stock,active"]
    codes = []
    for i in range(1, n + 1):
        code = item_code(i)
        codes.append(code)
        more = "|" + item_code(n + i) if i % 10 == 0 else ""
        kg = i % 50 == 0
        lines.append("%d,%s%s,Item %d of the shelf,商品%d号,Group %d,第%d类,%d.%02d,%s,%s,%s,%s,1"
                     % (i, code, more, i, i, i % CATEGORIES, i % CATEGORIES, 1 + i % 300,
                        i % 100, "9" if i % 3 else "13", "kg" if kg else "each",
                        "%d.%03d" % (i % 20, i % 1000) if kg else str(i % 200),
                        "2.000" if kg else "5"))
    return ("\n".join(lines) + "\n").encode("utf-8"), codes


_IMPORT_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from drivers.catalogue_sqlite import SQLiteCatalogue
from drivers.sqlite_durable import mac_key
from firmware.retail.barcode import DEFAULT_SCALE_RULES
from tools import catalogue_csv
with open(sys.argv[3], "rb") as f:
    data = f.read()
cat = SQLiteCatalogue(sys.argv[2], mac_key(bytes(range(32)), "catalogue"), currency="CNY")
t0 = time.perf_counter()
got = catalogue_csv.import_csv(cat, data, "CNY", DEFAULT_SCALE_RULES, True, ref="bench")
seconds = time.perf_counter() - t0
cat.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
cat.close()
hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")]
print(json.dumps({"seconds": seconds, "added": got["added"], "bad": got["bad"][:3],
                  "hwm_kib": hwm[0]}))
"""


def bench_import(n, folder):
    """Import n lines into a new catalogue.db in folder, in a Python of its own (so that
    its peak memory is the import's): {seconds, per_s, db_bytes, peak_kib, ...}."""
    import json
    data, codes = make_csv(n)
    path = os.path.join(folder, "catalogue.db")
    csv_path = os.path.join(folder, "items.csv")
    with open(csv_path, "wb") as f:
        f.write(data)
    proc = subprocess.run([sys.executable, "-c", _IMPORT_SCRIPT, ROOT, path, csv_path],
                          cwd=ROOT, capture_output=True, text=True, timeout=60 + n * 0.01)
    if proc.returncode != 0:
        raise BenchError("the import failed: %s" % (proc.stderr.strip().splitlines()
                                                     or ["?"])[-1])
    got = json.loads(proc.stdout)
    if got["bad"] or got["added"] != n:
        raise BenchError("the import refused lines: %r" % (got["bad"],))
    return {"n": n, "seconds": got["seconds"], "per_s": n / got["seconds"],
            "csv_bytes": len(data), "db_bytes": os.path.getsize(path),
            "peak_kib": got["hwm_kib"], "path": path, "codes": codes}


def bench_lookups(path, codes, scans, seed=12):
    """Random scans against the catalogue at path: medians and p99s in ms."""
    from drivers.catalogue_sqlite import SQLiteCatalogue
    from drivers.sqlite_durable import mac_key
    from firmware.retail import barcode
    rnd = random.Random(seed)
    cat = SQLiteCatalogue(path, mac_key(KEY, "catalogue"), currency=CURRENCY)
    try:
        for code in rnd.sample(codes, min(50, len(codes))):       # warm the page cache
            cat.find_by_barcode(barcode.classify(code).key)
        hit, miss, plu = [], [], []
        n = len(codes)
        for _ in range(scans):
            code = codes[rnd.randrange(n)]
            t0 = time.perf_counter()
            item = cat.find_by_barcode(barcode.classify(code).key)
            hit.append((time.perf_counter() - t0) * 1000)
            if item is None:
                raise BenchError("scan of %s found nothing" % code)
            unknown = item_code(3 * n + rnd.randrange(n))
            t0 = time.perf_counter()
            if cat.find_by_barcode(barcode.classify(unknown).key) is not None:
                raise BenchError("unknown code %s found an item" % unknown)
            miss.append((time.perf_counter() - t0) * 1000)
            number = 1 + rnd.randrange(n)
            t0 = time.perf_counter()
            cat.find_by_plu(number)
            plu.append((time.perf_counter() - t0) * 1000)
    finally:
        cat.close()
    out = {"scans": scans}
    for name, samples in (("scan", hit), ("unknown", miss), ("plu", plu)):
        out[name + "_median_ms"], out[name + "_p99_ms"] = _summary(samples)
    return out


_RSS_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
from drivers.catalogue_sqlite import SQLiteCatalogue
from drivers.sqlite_durable import mac_key
from firmware.retail import barcode
from tools.bench.catalogue import item_code
if sys.argv[2] != "-":
    n = int(sys.argv[3])
    cat = SQLiteCatalogue(sys.argv[2], mac_key(bytes(range(32)), "catalogue"))
    step = max(1, n // 2000)
    for i in range(1, n + 1, step):
        assert cat.find_by_barcode(barcode.classify(item_code(i)).key) is not None
for line in open("/proc/self/status"):
    if line.startswith(("VmRSS", "VmHWM")):
        print(line.split(":")[0], int(line.split()[1]))
"""


def _rss_of(args):
    proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, ROOT] + args, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise BenchError("the memory probe failed: %s" % (proc.stderr.strip().splitlines()
                                                           or ["?"])[-1])
    got = dict(line.split() for line in proc.stdout.splitlines())
    return int(got["VmRSS"]), int(got["VmHWM"])


def bench_memory(path, n):
    """Resident memory in KiB of a Python with the catalogue open (after 2,000 lookups)
    and of one with the same modules imported only."""
    rss, hwm = _rss_of([path, str(n)])
    base, base_hwm = _rss_of(["-", "0"])
    return {"rss_kib": rss, "hwm_kib": hwm, "base_kib": base, "delta_kib": rss - base}


def bench(n, scans, folder=None):
    parent = folder or ROOT
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bench_catalogue-", dir=parent) as tmp:
        from tools.bench.saf import filesystem_of
        out = {"fs": filesystem_of(tmp), "load_before": os.getloadavg()}
        with time_limit(60 + n * 0.01, "importing %d items" % n):
            imported = bench_import(n, tmp)
        with time_limit(60 + scans * 0.05, "%d scans" % scans):
            out["lookups"] = bench_lookups(imported["path"], imported["codes"], scans)
        with time_limit(120, "the memory probe"):
            out["memory"] = bench_memory(imported["path"], n)
        del imported["codes"], imported["path"]
        out["import"] = imported
        out["load_after"] = os.getloadavg()
    return out


def _mib(kib):
    return kib / 1024.0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench.catalogue", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--folder", default=None, help="where to make the temporary catalogue "
                        "(default: the repository's disk)")
    args = parser.parse_args(argv)
    n, scans = (2000, 200) if args.quick else (100000, 2000)
    import sqlite3
    print("catalogue (issue 12): %s items, %s scans (python %s, SQLite %s, %d CPUs)"
          % ("{:,}".format(n), "{:,}".format(scans), sys.version.split()[0],
             sqlite3.sqlite_version, os.cpu_count() or 0))
    out = bench(n, scans, args.folder)
    fs = out["fs"]
    print("  file system: %s on %s, mounted at %s" % (fs["fstype"], fs["device"], fs["mount"]))
    imp, look, mem = out["import"], out["lookups"], out["memory"]
    print("  import %s lines (one transaction)     %7.2f s   %8s lines/s   catalogue.db %.1f MiB "
          "(CSV %.1f MiB), peak memory of the import %.0f MiB"
          % ("{:,}".format(imp["n"]), imp["seconds"], "{:,.0f}".format(imp["per_s"]),
             imp["db_bytes"] / 1048576.0, imp["csv_bytes"] / 1048576.0, _mib(imp["peak_kib"])))
    print("  scan: classify + find_by_barcode   median %6.3f ms  p99 %6.3f ms"
          % (look["scan_median_ms"], look["scan_p99_ms"]))
    print("  scan of a code in no item          median %6.3f ms  p99 %6.3f ms"
          % (look["unknown_median_ms"], look["unknown_p99_ms"]))
    print("  find_by_plu                        median %6.3f ms  p99 %6.3f ms"
          % (look["plu_median_ms"], look["plu_p99_ms"]))
    print("  resident memory, catalogue open    %.1f MiB (peak %.1f MiB); the same Python "
          "without it %.1f MiB: +%.1f MiB" % (_mib(mem["rss_kib"]), _mib(mem["hwm_kib"]),
                                              _mib(mem["base_kib"]), _mib(mem["delta_kib"])))
    print("  load average before %.2f, after %.2f (1 min)"
          % (out["load_before"][0], out["load_after"][0]))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    from tools.bench import run_main
    sys.exit(run_main(main, name="bench.catalogue"))
