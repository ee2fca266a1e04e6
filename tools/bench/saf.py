"""The offline queue's figures: what a durable, encrypted offline approval costs on this disk.

  fsync        write 200 bytes to the end of a file and os.fsync it: the floor any
               "on disk before it returns" promise pays, measured on the same folder
  add / ack    drivers.saf_queue.SafQueue.add() of a realistic advice (track 2, ~200 hex
               digits of DE55, local time fields), then ack() of each (median, p99)
  vs library   the same enqueue-then-drain workload on persist-queue's SQLiteAckQueue,
               as shipped and with PRAGMA synchronous=FULL, beside our queue in one run
  drain        (not yet built) 10,000 queued advices into the host simulator

Every figure is measured in one run on this machine, in a temporary folder under the
repository (or --folder); the file system type is printed because fsync on tmpfs costs
nothing and would make every figure here meaningless.

Run with --quick for a short smoke run (used by the test suite to keep this working).

No chip reader and no pcscd here: nothing in this bench touches PC/SC. Every wait is
bounded (the host simulator's start, the drain, each part as a whole); a part that
cannot finish stops the run with one line saying what it waited for, and status 1.
"""
import argparse
import contextlib
import importlib.metadata
import inspect
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time

from drivers.saf_queue import SafQueue
from tools.bench import BenchError, run_main, time_limit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAM_FS = ("tmpfs", "ramfs", "devtmpfs")
FSYNC_BYTES = 200
TID = "T0000001"


# ---------------------------------------------------------------------------- helpers

def _ms(seconds):
    return seconds * 1000.0


def _summary(samples_ms):
    """median and p99 (the same p99 rule as tools/bench/terminal.py)."""
    ordered = sorted(samples_ms)
    return (statistics.median(ordered),
            ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))])


def _unescape_mount(field):
    # /proc/mounts writes space, tab, newline and backslash as octal escapes
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _write_cache(device):
    """The block device's cache mode ("write back" or "write through"), or ""."""
    name = os.path.basename(device)
    base = os.path.join("/sys/class/block", name)
    if not name or not os.path.exists(base):
        return ""
    base = os.path.realpath(base)
    for folder in (base, os.path.dirname(base)):     # a partition's queue is its disk's
        try:
            with open(os.path.join(folder, "queue", "write_cache")) as f:
                return f.read().strip()
        except OSError:
            continue
    return ""


def filesystem_of(path):
    """{mount, fstype, device, options, write_cache, in_ram} of the mount holding path."""
    path = os.path.realpath(path)
    best = {"mount": "?", "fstype": "?", "device": "?", "options": ""}
    try:
        with open("/proc/mounts") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            continue
        device, mount, fstype, options = (_unescape_mount(x) for x in fields[:4])
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        # the longest mount point wins; a later line for the same point shadows an earlier
        if inside and (best["mount"] == "?" or len(mount) >= len(best["mount"])):
            best = {"mount": mount, "fstype": fstype, "device": device, "options": options}
    best["write_cache"] = _write_cache(best["device"]) if best["device"].startswith("/dev/") else ""
    best["in_ram"] = best["fstype"] in RAM_FS
    return best


@contextlib.contextmanager
def _workdir(folder, what):
    """A fresh folder on the disk under test (the repository's by default), removed after."""
    parent = folder or ROOT
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bench_saf-%s-" % what, dir=parent) as tmp:
        yield tmp


def _de55(amount, when):
    """About 200 hex digits of ICC data, shaped like a real ARQC's."""
    def tlv(tag, value):
        return tag + "%02X" % (len(value) // 2) + value
    rnd = lambda n: os.urandom(n).hex().upper()      # noqa: E731
    date = time.strftime("%y%m%d", time.localtime(when))
    return "".join((
        tlv("9F26", rnd(8)),                         # application cryptogram
        tlv("9F27", "80"),                           # ARQC
        tlv("9F10", "06010A03A0B800" + rnd(11)),     # issuer application data
        tlv("9F37", rnd(4)),                         # unpredictable number
        tlv("9F36", "%04X" % (int.from_bytes(os.urandom(1), "big") + 1)),
        tlv("95", "0000008000"),                     # TVR
        tlv("9A", date),
        tlv("9C", "00"),
        tlv("9F02", "%012d" % amount),
        tlv("5F2A", "0840"),
        tlv("82", "3900"),                           # AIP
        tlv("9F1A", "0840"),
        tlv("9F03", "%012d" % 0),
        tlv("9F34", "1F0302"),                       # CVM results
    ))


def advice_payload(stan, amount, when=None):
    """One offline-approved chip sale's advice fields, as the flows would queue them."""
    when = time.time() if when is None else when
    local = time.localtime(when)
    return {
        "mti": "0220", "entry": "chip", "de22": "051",
        "de2": "4761739001010010",
        "track2": "4761739001010010=29122011234567890",
        "de55": _de55(amount, when),
        "de4": amount, "de49": "840", "de11": stan, "de37": "%06d%s" % (int(when) % 1000000, stan),
        "de12": time.strftime("%H%M%S", local),      # local time of the transaction
        "de13": time.strftime("%m%d", local),        # local date
        "de7": time.strftime("%m%d%H%M%S", time.gmtime(when)),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
        "auth": "Y1",                                # offline approved (Y1, floor limit)
    }


def _open_saf(folder):
    return SafQueue(os.path.join(folder, "saf.db"), os.urandom(32), tid=TID)


# ---------------------------------------------------------------------------- benches

def bench_fsync(n, folder):
    """write(200 bytes) + os.fsync, appended n times to one file in folder (ms)."""
    samples = []
    path = os.path.join(folder, "fsync.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        block = os.urandom(FSYNC_BYTES)
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            samples.append(_ms(time.perf_counter() - t0))
    finally:
        os.close(fd)
    median, p99 = _summary(samples)
    return {"fsync_median_ms": median, "fsync_p99_ms": p99, "fsyncs": len(samples)}


def bench_enqueue(n, folder=None):
    """Raw fsync beside SafQueue.add() and SafQueue.ack() on the same disk and folder.

    n writes of 200 bytes + fsync; then n advices added to a fresh queue (fresh 32-byte
    key), each timed; then each acked, timed. Returns medians and p99s in ms, the ratio
    add / fsync, the file system, and the queue's counts afterwards (pending_after is 0
    when every record was acknowledged).
    """
    with _workdir(folder, "enqueue") as tmp:
        fs = filesystem_of(tmp)
        out = dict(bench_fsync(n, tmp))
        q = _open_saf(tmp)
        try:
            adds, acks, ids = [], [], []
            for i in range(n):
                stan, amount = "%06d" % (i + 1), 100 + i
                payload = advice_payload(stan, amount)
                t0 = time.perf_counter()
                ids.append(q.add("advice", stan, amount, "USD", payload))
                adds.append(_ms(time.perf_counter() - t0))
            queued = len(q.pending())
            for rec_id in ids:
                t0 = time.perf_counter()
                q.ack(rec_id)
                acks.append(_ms(time.perf_counter() - t0))
            states = [r["state"] for r in q.records()]
            pending_after = len(q.pending())
        finally:
            q.close()
    out["add_median_ms"], out["add_p99_ms"] = _summary(adds)
    out["ack_median_ms"], out["ack_p99_ms"] = _summary(acks)
    out["add_over_fsync"] = out["add_median_ms"] / out["fsync_median_ms"]
    out["ack_over_fsync"] = out["ack_median_ms"] / out["fsync_median_ms"]
    out.update(records=len(ids), queued=queued, acked=states.count("acked"),
               pending_after=pending_after, fs=fs, folder=folder or ROOT)
    return out


def _pragmas(db):
    return {"journal_mode": db.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                db.execute("PRAGMA synchronous").fetchone()[0], "?")}


def _run_workload(n, put, drain_one, finish):
    """put n advices (each timed), then drain n (each timed); records per second overall."""
    puts, drains = [], []
    t_start = time.perf_counter()
    for i in range(n):
        stan, amount = "%06d" % (i + 1), 100 + i
        payload = advice_payload(stan, amount)
        t0 = time.perf_counter()
        put(stan, amount, payload)
        puts.append(_ms(time.perf_counter() - t0))
    t_put = time.perf_counter() - t_start
    t_mid = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        drain_one()
        drains.append(_ms(time.perf_counter() - t0))
    t_drain = time.perf_counter() - t_mid
    out = finish()
    out["enqueue_median_ms"], out["enqueue_p99_ms"] = _summary(puts)
    out["dequeue_ack_median_ms"], out["dequeue_ack_p99_ms"] = _summary(drains)
    out["enqueue_per_s"] = n / t_put
    out["records_per_s"] = n / (t_put + t_drain)      # queued and acknowledged
    return out


def _saf_workload(n, folder):
    """Our queue: add(); then the drain side, load() (decrypt, check the tag) + ack()."""
    q = _open_saf(folder)
    order = []

    def put(stan, amount, payload):
        q.add("advice", stan, amount, "USD", payload)

    def drain_one():
        if not order:
            order.extend(r["id"] for r in reversed(q.pending()))   # one listing, as a forwarder
        rec_id = order.pop()
        q.load(rec_id)
        q.ack(rec_id)

    def finish():
        states = [r["state"] for r in q.records()]
        return dict(_pragmas(q.db), records=len(states), acked=states.count("acked"),
                    left=len(q.pending()))
    try:
        return _run_workload(n, put, drain_one, finish)
    finally:
        q.close()


def _pq_workload(n, folder, synchronous=None):
    """persist-queue's ack queue: put(); then get() + ack(id)."""
    import persistqueue
    q = persistqueue.SQLiteAckQueue(os.path.join(folder, "pq"), multithreading=False,
                                    auto_commit=True)
    if synchronous:
        # multithreading=False: one connection does both put and get
        q._putter.execute("PRAGMA synchronous=%s" % synchronous)

    def put(stan, amount, payload):
        q.put(payload)

    def drain_one():
        item = q.get(block=False, raw=True)
        q.ack(id=item["pqid"])

    def finish():
        return dict(_pragmas(q._putter), records=q.acked_count() + q.unack_count()
                    + q.ready_count() + q.ack_failed_count(),
                    acked=q.acked_count(), left=q.qsize() + q.unack_count())
    try:
        return _run_workload(n, put, drain_one, finish)
    finally:
        q.close()


def _pq_pragmas_in_source():
    """The PRAGMA statements persist-queue's SQLite code runs (read from its source)."""
    import persistqueue.sqlackqueue
    import persistqueue.sqlbase
    found = []
    for mod in (persistqueue.sqlbase, persistqueue.sqlackqueue):
        for m in re.finditer(r"PRAGMA[^'\"]*", inspect.getsource(mod), re.IGNORECASE):
            stmt = m.group(0).strip().rstrip(";")
            if stmt not in found:
                found.append(stmt)
    return found


def _sqlite_defaults():
    db = sqlite3.connect(":memory:")
    try:
        opts = [r[0] for r in db.execute("PRAGMA compile_options")]
    finally:
        db.close()
    return {"sqlite_version": sqlite3.sqlite_version,
            "compile_synchronous": [o for o in opts if "SYNCHRONOUS" in o]}


def bench_persist_queue(n, folder=None):
    """persist-queue's SQLiteAckQueue beside SafQueue, the same workload in one run.

    Workload: n advices enqueued one by one (each its own commit), then drained one by
    one. persist-queue: put(); get() + ack(id=...) (get() itself commits the row's
    "unacked" status, so a drain step is two commits). SafQueue: add(); load() + ack()
    (one commit; the forwarder's mark_sent() before the wire would add a second).
    persist-queue runs twice: as shipped, and with PRAGMA synchronous=FULL executed on
    its connection (its only connection, multithreading=False) so both queues promise
    the same durability. Reported: the PRAGMAs in its source and the values in effect.

    What persist-queue does NOT do that SafQueue does:
      - no encryption at rest: the advice (PAN, track 2, DE55) is pickled in clear into
        the database file, readable by anyone holding the SD card; SafQueue seals each
        payload with AES-GCM under the device data key.
      - no integrity check: a row edited or moved on disk is returned as if genuine (and
        with the default pickle serializer, unpickling a tampered row can run code);
        SafQueue binds each ciphertext to its row, kind, STAN, amount, currency, TID and
        time, and a record failing its tag is flagged corrupt, kept, never forwarded.
      - it does not pin durability: it runs only PRAGMA journal_mode=WAL and leaves
        synchronous at the SQLite build's default (FULL here, NORMAL on builds made with
        SQLITE_DEFAULT_WAL_SYNCHRONOUS=1, where a commit is not fsynced);
        SafQueue always sets synchronous=FULL (drivers/sqlite_durable.py).
      - acked rows keep their payload until clear_acked_data(), and deleted pages keep
        the old bytes; SafQueue drops the payload at ack() with secure_delete=ON and
        keeps a tombstone for the batch report.
      - no business states: no reversals-before-advices order, no
        declined-after-upload record waiting for a supervisor, no QueueFull with every
        record kept, no signed export to move a broken terminal's queue.
    """
    try:
        version = importlib.metadata.version("persist-queue")
        import persistqueue     # noqa: F401
    except (importlib.metadata.PackageNotFoundError, ImportError):
        raise RuntimeError("persist-queue is not installed: run `make setup` "
                           "(or pip install persist-queue)")
    out = {"persist_queue_version": version, "pq_pragmas_in_source": _pq_pragmas_in_source(),
           "records": n}
    out.update(_sqlite_defaults())
    with _workdir(folder, "pq") as tmp:
        out["fs"] = filesystem_of(tmp)
        for name, run in (("safqueue", lambda d: _saf_workload(n, d)),
                          ("pq_default", lambda d: _pq_workload(n, d)),
                          ("pq_full", lambda d: _pq_workload(n, d, synchronous="FULL"))):
            sub = os.path.join(tmp, name)
            os.makedirs(sub)
            out[name] = run(sub)
    for name in ("pq_default", "pq_full"):
        out["saf_over_%s_enqueue" % name] = (out["safqueue"]["enqueue_median_ms"]
                                             / out[name]["enqueue_median_ms"])
        out["saf_over_%s_drain" % name] = (out["safqueue"]["dequeue_ack_median_ms"]
                                           / out[name]["dequeue_ack_median_ms"])
    return out


# ---------------------------------------------------------------------------- placeholder

def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_drain(n=10000, folder=None, window=None):
    """Drain n queued 0220 advices into the host simulator (its own process, TLS on
    loopback) through the real forwarder, host link and queue in one event loop.

    Returns records per second from "Upload now" to an empty queue, the time it took,
    and what the host booked (each advice exactly once). Each record costs two durable
    queue writes here (marked sent before it goes, acknowledged after) and one booking
    in the host's SQLite ledger.
    """
    import shutil
    import subprocess
    from drivers.hostlink import HostLink, make_client_context
    from drivers.saf_queue import SafQueue
    from drivers.system import LinuxSystem
    from firmware.core import config as schema
    from firmware.payments import forwarder as fwd
    from firmware.payments import hostmsg
    from firmware.payments.journal import MemoryJournal
    from firmware.payments.service import Payments
    from firmware.core.reactor import Reactor
    from firmware.core.store import MemoryStore
    from firmware.terminal import Terminal
    from tools.cli import start_hostsim
    from tools.host.hostsim import Ledger

    work = tempfile.mkdtemp(prefix=".bench_drain-", dir=folder or ROOT)
    port = _free_port()
    proc, ca = start_hostsim("127.0.0.1:%d" % port, os.path.join(work, "host"))
    if proc is None:
        shutil.rmtree(work, ignore_errors=True)
        raise BenchError("drain: the host simulator did not start (%s)" % ca)
    try:
        cfg = schema.defaults()
        cfg["host"].update(address="127.0.0.1:%d" % port, tls=True, ca_file=ca)
        reactor = Reactor()
        term = Terminal(reactor, cfg, MemoryStore(), LinuxSystem(synced=True), auth_iterations=10)
        link = HostLink(reactor, "127.0.0.1", port, ssl_context=make_client_context(ca),
                        window=window or fwd.WINDOW)
        queue = SafQueue(os.path.join(work, "saf.db"), os.urandom(32), tid=cfg["terminal"]["id"])
        pay = Payments(term, MemoryJournal(), link, None, card_readers=1, queue=queue)
        pay.forwarder.window = window or fwd.WINDOW
        term.payments = pay
        local = (2026, 11, 21, 12, 0, 0)
        for i in range(n):
            stan = "%06d" % (i + 1)
            rec = dict(_ADVICE_REC, stan=stan, amount=100 * (1 + i % 90),
                       rrn=hostmsg.offline_rrn(_ADVICE_REC["utc"], stan))
            # a stripe advice: a chip one's DE55 carries a TC the host checks against
            # the card's keys, which only a card (tools/cards/vcard.py) can make
            msg = hostmsg.advice_request(rec, cfg, local, *hostmsg.pan_expiry(TRACK2), None, "Y1")
            queue.add("advice", stan, rec["amount"], "USD",
                      {"msg": msg, "journal_id": 0, "purpose": "advice"})
        t0 = time.perf_counter()
        pay.forwarder.upload_now()
        limit = drain_limit_s(n)
        deadline = time.monotonic() + limit
        # the forwarder says when it found the queue empty (asking the queue in this
        # loop would add a query per pass to what is measured)
        reactor.run_once(0)
        while pay.forwarder.state != "idle" and time.monotonic() < deadline:
            reactor.run_once(50)
        elapsed = time.perf_counter() - t0
        stopped = pay.forwarder.state != "idle"
        left = len(queue.pending())
        link.close()
        queue.close()
        ledger = Ledger(os.path.join(work, "host", "ledger.sqlite"))
        booked = ledger.count(cfg["terminal"]["id"], status="approved")
        ledger.close()
        return {"n": n, "seconds": elapsed, "per_second": (n - left) / elapsed if elapsed else 0,
                "left": left, "booked": booked, "window": pay.forwarder.window,
                "stopped_at_limit_s": limit if stopped else None}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def drain_limit_s(n):
    """How long a drain of n advices may take before the bench stops it (and says so)."""
    return max(120, n / 50)


_ADVICE_REC = {"kind": "sale", "amount": 0, "utc": "2026-11-21T12:00:00Z", "stan": "",
               "entry": "swipe", "rrn": "", "currency": "USD"}
TRACK2 = "4761739001010010=29122011234567890"


# ---------------------------------------------------------------------------- report

def _row(figure, median, p99, note):
    fmt = lambda v: v if isinstance(v, str) else "%.3f ms" % v     # noqa: E731
    return "%-38s | %11s | %11s | %s" % (figure, fmt(median), fmt(p99), note)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--folder", help="where to make the temporary files (default: the "
                        "repository, i.e. the disk the terminal's data would be on)")
    args = parser.parse_args(argv)
    n = 50 if args.quick else 1000
    print("handpos offline queue bench (%s, python %s, SQLite %s), %d records"
          % (os.uname().machine, sys.version.split()[0], sqlite3.sqlite_version, n))

    with time_limit(120 + n * 0.2, "SafQueue add/ack"):
        enq = bench_enqueue(n, args.folder)
    fs = enq["fs"]
    print("file system: %s on %s (%s), mounted at %s, device write cache: %s"
          % (fs["fstype"], fs["device"], fs["options"], fs["mount"], fs["write_cache"] or "?"))
    if fs["in_ram"]:
        print("WARNING: %s is in RAM: fsync costs nothing here and these figures say nothing "
              "about an SD card; use --folder on a real disk" % fs["fstype"])
    if enq["fsync_median_ms"] < 0.5:
        print("note: fsync returns in %.3f ms here (a flash card's takes milliseconds): this disk "
              "acknowledges flushes early, so the queue figures below are mostly CPU"
              % enq["fsync_median_ms"])
    try:
        with time_limit(120 + n * 0.5, "persist-queue side by side"):
            pq = bench_persist_queue(n, args.folder)
    except RuntimeError as exc:
        pq = None
        pq_error = str(exc)

    print()
    print(_row("figure", "median", "p99", "note"))
    print("-" * 38 + "-+-" + "-" * 11 + "-+-" + "-" * 11 + "-+-" + "-" * 40)
    print(_row("write 200 B + fsync", enq["fsync_median_ms"], enq["fsync_p99_ms"],
               "appended to one file, %d times" % enq["fsyncs"]))
    print(_row("SafQueue.add()", enq["add_median_ms"], enq["add_p99_ms"],
               "AES-GCM + WAL commit, synchronous=FULL"))
    print(_row("SafQueue.ack()", enq["ack_median_ms"], enq["ack_p99_ms"],
               "%d/%d acked, %d pending after" % (enq["acked"], enq["records"],
                                                  enq["pending_after"])))
    if pq:
        s = pq["safqueue"]
        print(_row("SafQueue add() [side by side]", s["enqueue_median_ms"], s["enqueue_p99_ms"],
                   "journal_mode=%s synchronous=%s" % (s["journal_mode"], s["synchronous"])))
        print(_row("SafQueue load()+ack()", s["dequeue_ack_median_ms"], s["dequeue_ack_p99_ms"],
                   "%.0f records/s queued+acked, %d left" % (s["records_per_s"], s["left"])))
        for name, label in (("pq_default", "as shipped"), ("pq_full", "synchronous=FULL set")):
            r = pq[name]
            print(_row("persist-queue put() (%s)" % ("default" if name == "pq_default" else "FULL"),
                       r["enqueue_median_ms"], r["enqueue_p99_ms"],
                       "%s: journal_mode=%s synchronous=%s"
                       % (label, r["journal_mode"], r["synchronous"])))
            print(_row("persist-queue get()+ack() (%s)" % ("default" if name == "pq_default"
                                                           else "FULL"),
                       r["dequeue_ack_median_ms"], r["dequeue_ack_p99_ms"],
                       "%.0f records/s queued+acked, %d left" % (r["records_per_s"], r["left"])))
    else:
        print(_row("persist-queue", "-", "-", pq_error))
    drains = []
    for window in (1, None):
        count = 200 if args.quick else 10000
        # the drain stops itself at drain_limit_s; this also bounds the set-up (the host
        # simulator's start, queueing the advices) and the clean-up
        with time_limit(drain_limit_s(count) + 60 + count * 0.02, "drain %d advices" % count):
            d = bench_drain(count, args.folder, window=window)
        drains.append(d)
        if d["stopped_at_limit_s"]:
            note = "stopped at the %.0f s limit; %d booked by the host, %d left" % (
                d["stopped_at_limit_s"], d["booked"], d["left"])
        else:
            note = "%.1f s to empty; %d booked by the host, %d left" % (
                d["seconds"], d["booked"], d["left"])
        print(_row("drain %d advices, window %d" % (d["n"], d["window"]),
                   "%.0f /s" % d["per_second"], "-", note))
    print("forwarder window %d vs 1: %.2fx; jPOS-EE's store and forward paces one a second by "
          "default" % (drains[1]["window"], drains[1]["per_second"] / drains[0]["per_second"]))

    print()
    print("ratios (medians, this run):")
    print("  %-62s %.2fx" % ("SafQueue.add() / fsync", enq["add_over_fsync"]))
    print("  %-62s %.2fx" % ("SafQueue.ack() / fsync", enq["ack_over_fsync"]))
    if pq:
        for name, label in (("pq_default", "as shipped"), ("pq_full", "synchronous=FULL")):
            print("  %-62s %.2fx" % ("SafQueue add / persist-queue put (%s)" % label,
                                         pq["saf_over_%s_enqueue" % name]))
            print("  %-62s %.2fx" % ("SafQueue load+ack / persist-queue get+ack (%s)" % label,
                                         pq["saf_over_%s_drain" % name]))
        print("persist-queue %s runs: %s; SQLite %s compiled with %s"
              % (pq["persist_queue_version"], "; ".join(pq["pq_pragmas_in_source"]) or "no PRAGMA",
                 pq["sqlite_version"], ", ".join(pq["compile_synchronous"]) or "default options"))
        print("persist-queue stores the advice pickled in clear, with no integrity check "
              "(see bench_persist_queue's docstring)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, name="bench.saf"))
