"""`handpos diag report --data DIR [--output FILE]`: the diagnostic report of a terminal's
data folder, as the terminal prints it (firmware/flows/troubleshoot.py report_lines),
for support: read-only beside a running terminal or from a copied folder.

It reads the journal read-only and verified (SQLite mode=ro, the data key through the
board's key root), counts the offline queue's records without unsealing any, and reads
the audit trail's latest lines; it asks the network driver for the link (the device's
nmcli, or the simulator's fake beside its data folder). No card data: the journal's
rows are reduced to state, code and reason, and every line goes through the report's
scrub and the log masker (drivers/logmask.py).
"""
import os
import sqlite3
import sys
import time


def _ro(path):
    return sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)


def _network(profile, data_dir):
    """The network status through the driver, or None (no nmcli, no answer in 10 s)."""
    from drivers import network
    from firmware.core.reactor import Reactor
    program, env = (profile.get("network") or {}).get("nmcli", "nmcli"), None
    if program == "sim":
        folder = data_dir.rstrip("/") + "-net/bin"
        if not os.path.isdir(folder):
            return None
        program, env = "nmcli", network.nmcli_env(folder)
    reactor = Reactor()
    runner = network.NmcliRunner(reactor, program, env, timeout_ms=10000)
    got = []
    network.NmcliNetwork(reactor, runner).status(lambda st, err: got.append(st))
    end = time.monotonic() + 11
    while not got and time.monotonic() < end:
        reactor.run_once(100)
    runner.close()
    reactor.close()
    return got[0] if got else None


def gather(config, profile, data_dir, keys):
    from drivers.journal_sqlite import SQLiteJournal
    from drivers.sqlite_durable import mac_key
    from drivers.system import LinuxSystem
    from firmware.core.version import VERSION
    from firmware.flows import troubleshoot as ts
    from firmware.payments.service import EXPORTED_SETTING
    now = time.gmtime()
    facts = {"version": VERSION, "tid": config["terminal"]["id"],
             "utc": time.strftime("%Y-%m-%d %H:%M", now), "synced": True,
             "selftests": [], "printer": "not read (offline report)",
             "battery": LinuxSystem().battery(), "link": "not read (offline report)",
             "host": config["host"]["address"], "errors": [], "pending": 0, "unexported": 0,
             "shift_open": False, "batch": 0, "batch_records": 0, "failures": [],
             "network": _network(profile, data_dir)}
    codes = []
    store = _ro(os.path.join(data_dir, "handpos.db"))
    try:
        rows = store.execute("SELECT seq, event, operator, detail FROM audit "
                             "ORDER BY seq DESC LIMIT 200").fetchall()
        for seq, event, operator, detail in rows:
            if event in ts.ERROR_EVENTS or event.endswith("_fault"):
                facts["errors"].append((seq, event, detail))
        facts["errors"] = facts["errors"][:10]
        row = store.execute("SELECT value FROM settings WHERE key=?",
                            (EXPORTED_SETTING,)).fetchone()
        exported = int(row[0]) if row and row[0] else 0
    finally:
        store.close()
    queue = _ro(os.path.join(data_dir, "saf.db"))
    try:
        ids = [r[0] for r in queue.execute("SELECT id FROM saf WHERE state='pending'")]
    finally:
        queue.close()
    facts["pending"] = len(ids)
    facts["unexported"] = len([i for i in ids if i > exported])
    journal = SQLiteJournal.open_readonly(os.path.join(data_dir, "journal.db"),
                                          mac_key(keys.key("data"), "journal"))
    try:
        facts["batch"] = journal.counter("batch") or 1
        facts["batch_records"] = len(journal.find(batch=facts["batch"]))
        facts["shift_open"] = bool(journal.shifts(state="open"))
        for rec in journal.latest(5, states=ts.FAILED_STATES):
            facts["failures"].append({k: rec[k] for k in (
                "id", "utc", "kind", "method", "state", "rc", "reason", "amount", "currency")})
    finally:
        journal.close()
    if facts["network"] is not None and facts["network"].get("active") is None:
        codes.append("N1")
    facts["code"] = ts.make_support_code(codes, now[:6])
    return facts


def command(args, config, profile, data_dir, keys):
    from drivers import logmask
    from firmware.flows import troubleshoot as ts
    from firmware.ui import i18n
    t = i18n.Translator("en")
    lines = ts.report_lines(gather(config, profile, data_dir, keys), t, logmask.mask_pans)
    text = "\n".join(lines) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        sys.stdout.write("handpos diag report: written to %s\n" % args.output)
    else:
        sys.stdout.write(text)
    return 0


def cli(args):
    """The `handpos diag report` entry (tools/cli.py): the data folder and its keys as
    the other technician's tools find them, then command()."""
    from tools import cli as climod

    def say(line):
        sys.stderr.write("handpos diag report: %s\n" % line)
    found = climod._tool_data_dir(args, say, "no report was written", "diag report")
    if found is None:
        return 2
    config, profile, data_dir = found
    keys = climod._open_tool_keys(profile, data_dir, say, "no report was written")
    if keys is None:
        return 2
    try:
        return command(args, config, profile, data_dir, keys)
    except (sqlite3.Error, OSError) as exc:
        say("refused: %s cannot be read (%s); no report was written" % (data_dir, exc))
        return 2
