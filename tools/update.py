"""`handpos update build|apply|status|confirm|health` and `handpos backup create|restore`
(docs/updates.md).

apply, step by step (each said on stderr and written to ROOT/update.log, which the
terminal turns into audit rows at its next start: it stays the trail's one writer):

  1 verify   the bundle against the keys the running release trusts; its version
             against the running one and the installed minimum (anti-rollback)
  2 check    no sale or shift open, no offline record unexported (read as the
             terminal reads them, read-only, while it still runs)
  3 stop     the terminal stopped ([update] stop_command) and its data folder held;
             checked again (a sale may have begun meanwhile)
  4 backup   DATA/backups/backup-TID-TIME.hpbak
  5 install  the bundle written into the free release folder, checked as it is written
  6 mark     the new release marked as on trial (marks.json "pending")
  7 switch   `current` pointed at it (rename: atomic)
  8 start    the data folder let go, the terminal started ([update] start_command):
             the launcher counts its boots and runs its health check; --wait waits
             for the verdict (marked good, or rolled back)

A refusal at 1-3 leaves everything as it was (the terminal started again if 3 stopped
it). A power cut anywhere leaves a state the launcher settles (drivers/updater.py).
"""
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request

from drivers import updater
from tools import release

REPO = release.REPO
DOWNLOAD_MAX = 256 * 1024 * 1024
UNFINISHED = ("created", "sending")         # a payment the terminal has not finished
STEPS = ("verify", "check", "stop", "backup", "install", "mark", "switch", "start")


class Refused(Exception):
    pass


_quiet = []         # set once stderr is gone


def _say(line, prog="update"):
    """One line on stderr. Started from the terminal's Update entry, stderr is the
    terminal's pipe, which breaks when step 3 stops the terminal: apply goes on (every
    step is in update.log anyway), it never dies half-way over a lost screen."""
    if _quiet:
        return
    try:
        sys.stderr.write("handpos %s: %s\n" % (prog, line))
        sys.stderr.flush()
    except (OSError, ValueError):
        _quiet.append(True)


def _checkpoint(name):
    """A fault-injection point for tests/test_update_power.py: the process SIGKILLs
    itself here when HANDPOS_UPDATE_CRASH_AT names it (a power cut at that step)."""
    if os.environ.get("HANDPOS_UPDATE_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _root(args, config):
    return updater.ReleaseRoot(getattr(args, "root", None) or config["update"]["release_root"])


def running_release(root):
    """(folder whose config/keys are trusted, version) of the release that runs now."""
    slot = root.current_slot()
    if slot:
        return root.slot_dir(slot), root.version_of(slot) or "0.0.0"
    from firmware.core.version import VERSION
    return REPO, VERSION


# -- build -----------------------------------------------------------------------------
def cmd_build(args):
    from firmware.core.version import VERSION
    version = args.version or VERSION
    out = args.output or "handpos-%s.hpup" % version
    try:
        manifest = release.build(out, version, key_path=args.key or release.LAB_KEY,
                                 src=args.source or REPO, floor=args.floor)
    except release.BundleError as exc:
        _say("refused: %s; no bundle written" % exc)
        return 2
    lab = " (the LAB test key: lab terminals only)" if not args.key else ""
    print("handpos update: %s written: version %s, %d files, signed by key %s%s"
          % (out, version, len(manifest["files"]), manifest["key_id"], lab))
    return 0


# -- the terminal's state --------------------------------------------------------------
def busy(config, profile, data_dir, data_key=None, stopped=False):
    """Why the terminal may not be updated now, or None: a payment not finished, a
    shift open, offline records neither uploaded nor exported. Read the way the
    terminal reads them: the journal through its read-only mode with every row's MAC
    checked (as `handpos journal export`), the queue and the store's export mark
    (firmware/payments/service.py unexported_pending) read-only beside a running
    terminal, through the queue driver itself once it is stopped."""
    from drivers.journal_sqlite import SQLiteJournal
    from drivers.sqlite_durable import mac_key
    jpath = os.path.join(data_dir, "journal.db")
    if not os.path.exists(jpath):
        return None                         # a terminal that never sold anything
    if data_key is None:
        from board import datadir
        data_key = datadir.open_keys(profile, data_dir).key("data")
    journal = SQLiteJournal.open_readonly(jpath, mac_key(data_key, "journal"))
    try:
        open_txns = journal.find(states=UNFINISHED)
        shifts = journal.shifts(state="open")
    finally:
        journal.close()
    if open_txns:
        rec = open_txns[-1]
        return ("a payment is not finished (record #%d, %s): let the terminal finish it "
                "(start it; it resolves it at start), then try again" % (rec["id"], rec["state"]))
    if shifts:
        return ("a shift is open (operator %s): close it (Reports > Shift > Close) first"
                % shifts[0]["operator"])
    n = unexported(config, data_dir, data_key, stopped)
    if n:
        return ("%d offline record%s not uploaded or exported: upload them (Offline queue > "
                "Upload now) or export them first" % (n, "" if n == 1 else "s"))
    return None


def unexported(config, data_dir, data_key, stopped):
    qpath = os.path.join(data_dir, "saf.db")
    if not os.path.exists(qpath):
        return 0
    covered = 0
    spath = os.path.join(data_dir, "handpos.db")
    if os.path.exists(spath):
        db = sqlite3.connect("file:%s?mode=ro" % spath, uri=True)
        try:
            row = db.execute("SELECT value FROM settings WHERE key=?",
                             ("queue.exported_upto",)).fetchone()
            covered = int(row[0]) if row and row[0] else 0
        finally:
            db.close()
    if stopped:
        from drivers.saf_queue import SafQueue
        q = SafQueue(qpath, data_key, tid=config["terminal"]["id"])
        try:
            return len([r for r in q.pending() if r["id"] > covered])
        finally:
            q.close()
    db = sqlite3.connect("file:%s?mode=ro" % qpath, uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM saf WHERE state IN ('pending', 'sent') "
                          "AND id > ?", (covered,)).fetchone()[0]
    except sqlite3.Error:
        return 1            # a queue this release cannot count: never taken for empty
    finally:
        db.close()


# -- apply -----------------------------------------------------------------------------
def fetch(source, dest_dir, timeout=60):
    """A bundle from http(s):// copied to dest_dir, or a path as it is; the local path."""
    if not source.startswith(("http://", "https://")):
        return source
    os.makedirs(dest_dir, exist_ok=True)
    dest = os.path.join(dest_dir, "download.hpup")
    try:
        with urllib.request.urlopen(source, timeout=timeout) as resp, open(dest, "wb") as f:
            total = 0
            while True:
                chunk = resp.read(65536)
                if not chunk:
                    break
                total += len(chunk)
                if total > DOWNLOAD_MAX:
                    raise Refused("%s is bigger than %d MB: not a bundle"
                                  % (source, DOWNLOAD_MAX // 2 ** 20))
                f.write(chunk)
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) != total:
                raise Refused("the download of %s was cut short (%d of %s bytes): try again"
                              % (source, total, length))
    except (OSError, ValueError) as exc:
        raise Refused("%s cannot be downloaded (%s): check the address and the network"
                      % (source, getattr(exc, "reason", None) or exc))
    return dest


def _run_command(text, what):
    if not text:
        return None
    try:
        done = subprocess.run(shlex.split(text), timeout=120, capture_output=True, text=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "%s (%s) failed: %s" % (what, text, exc)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return "%s (%s) failed with status %d %s" % (what, text, done.returncode, last[0])
    return None


def apply(args, config, profile, data_dir, config_file, hold, out=_say):
    """The steps above; the exit status. hold(data_dir) is cli._hold_stopped."""
    root = _root(args, config)
    up = config["update"]
    step_no = [0]

    def step(name, detail):
        step_no[0] = STEPS.index(name) + 1
        out("[%d/%d] %s: %s" % (step_no[0], len(STEPS), name, detail))
        root.log("apply_" + name, detail)

    def refuse(why, restart=False):
        if restart:
            failed = _run_command(up["start_command"], "the start command")
            if failed:
                why += "; and %s: start the terminal by hand" % failed
        out("refused: %s; nothing was installed" % why)
        root.log("refused", why)
        return 2

    os.makedirs(root.root, exist_ok=True)
    trust_dir, running = running_release(root)
    keys = release.trusted_keys(trust_dir, config["lab"]["enabled"])
    if not keys:
        return refuse("the running release trusts no vendor key (config/keys): install "
                      "the vendor's public key")
    try:
        path = fetch(args.bundle, os.path.join(root.root, "incoming"))
        manifest = release.verify(path, keys)
    except (release.BundleError, Refused) as exc:
        return refuse(str(exc))
    version = manifest["version"]
    floor = root.min_version()
    if updater.version_tuple(version) < updater.version_tuple(floor):
        return refuse("version %s is older than the installed minimum %s (anti-rollback): "
                      "get the current release" % (version, floor))
    pending = root.marks().get("pending")
    if pending and pending.get("slot") == root.current_slot() and not pending.get("failed"):
        return refuse("%s %s is still on trial: wait for its health check (handpos update "
                      "status), then try again" % (pending["slot"], pending.get("version")))
    if version == running and not args.reinstall:
        return refuse("version %s already runs (--reinstall to write it again)" % version)
    step("verify", "bundle %s version %s signed by %s, running %s, minimum %s"
         % (os.path.basename(args.bundle), version, keys[manifest["key_id"]][0], running, floor))
    _checkpoint("verified")

    from firmware.core.store import StorageFault
    try:
        why = busy(config, profile, data_dir) if os.path.isdir(data_dir) else None
    except StorageFault as exc:
        why = "the terminal's data cannot be read (%s): let a technician look first" % exc
    if why:
        return refuse(why)
    step("check", "no payment, shift or offline record open")

    stopped = bool(up["stop_command"])
    failed = _run_command(up["stop_command"], "the stop command")
    if failed:
        return refuse(failed, restart=True)
    locks = []
    if os.path.isdir(data_dir):
        locks, why = hold(data_dir)
        if locks is None:
            return refuse(why, restart=stopped)
    try:
        keystore = None
        if os.path.isdir(os.path.join(data_dir, "keys")):
            from board import datadir
            try:
                keystore = datadir.open_keys(profile, data_dir)
                why = busy(config, profile, data_dir, keystore.key("data"), stopped=True)
            except StorageFault as exc:
                why = "the terminal's keys or data do not open (%s)" % exc
            if why:
                return refuse(why, restart=stopped)
        step("stop", "terminal stopped%s, data folder held" % ("" if stopped else " (was)"))
        _checkpoint("stopped")

        if keystore is not None:
            from tools import backup
            made = backup.create(data_dir, keystore, config["terminal"]["id"], config_file,
                                 release=running)
            step("backup", made)
        else:
            step("backup", "no data yet: nothing to back up")
        _checkpoint("backed_up")

        slot = root.other_slot()

        def fill(folder):
            release.verify(path, keys, into=folder)
            _checkpoint("installing")
            _write_manifest(folder, path, keys)
        try:
            root.stage(fill, slot)
        except release.BundleError as exc:      # the file changed since step 1
            root.clean_incoming()
            return refuse(str(exc), restart=stopped)
        step("install", "version %s in %s" % (version, root.slot_dir(slot)))
        _checkpoint("installed")

        root.mark_pending(slot, version, manifest.get("floor") or version, up["boots_max"],
                          up["health_timeout_s"])
        step("mark", "slot %s on trial (%d starts, %d s to pass its health check)"
             % (slot, up["boots_max"], up["health_timeout_s"]))
        _checkpoint("marked")

        root.switch(slot)
        step("switch", "current -> releases/%s" % slot)
        _checkpoint("switched")
    finally:
        for lock in locks:
            lock.close()
    failed = _run_command(up["start_command"], "the start command")
    step("start", failed or ("terminal started: the launcher runs the health check"
                             if up["start_command"] else
                             "start the terminal (the launcher runs the health check)"))
    if failed:
        return 1
    if args.wait:
        return wait_verdict(root, slot, args.wait, out)
    return 0


def _write_manifest(folder, path, keys):
    """The release folder's own manifest.json: what `update status` and the health
    check's self-test read (the bundle's, already verified)."""
    import json
    import tarfile
    with tarfile.open(path, "r:") as tar:
        body = tar.extractfile(tar.next()).read()
    manifest = json.loads(body.decode())
    fd = os.open(os.path.join(folder, "manifest.json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(json.dumps(manifest, indent=1, sort_keys=True).encode())
        f.flush()
        os.fsync(f.fileno())


def wait_verdict(root, slot, seconds, out=_say):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        marks = root.marks()
        pending = marks.get("pending")
        if not pending or pending.get("slot") != slot:
            if marks.get("good") == slot and root.current_slot() == slot:
                out("health check passed: %s %s marked good" % (slot, root.version_of(slot)))
                return 0
            out("rolled back: %s" % marks.get("bad", {}).get(slot, "the new release failed"))
            return 1
        time.sleep(0.5)
    out("no verdict within %d s: the release is still on trial (handpos update status)"
        % seconds)
    return 1


def hold_stopped(data_dir):
    """cli._hold_stopped, except beside the simulator that started this apply from its
    Update entry (HANDPOS_UPDATE_BESIDE_SIM names its pid, which is this process's
    parent and the holder of the data folder's sim.lock): the simulator cannot stop
    itself the way systemd stops the device's terminal, so its lock is not asked for;
    its screen shows the update and takes no sale meanwhile (docs/simulator.md)."""
    from tools import cli
    beside = os.environ.get("HANDPOS_UPDATE_BESIDE_SIM", "")
    if beside and beside == str(os.getppid()):
        lock, holder = cli.lock_data_dir(data_dir, cli.SIM_LOCK)
        if lock is None and holder == beside:
            lock, holder = cli.lock_data_dir(data_dir, cli.RUN_LOCK)
            if lock is None:
                return None, ("the terminal is running on %s (pid %s): stop it first"
                              % (data_dir, holder))
            return [lock], None
        if lock is not None:
            lock.close()
    return cli._hold_stopped(data_dir)


def update_gate(args, config, profile, data_dir):
    """The second factor before an apply ([mfa] actions has "update"; docs/mfa.md): the
    code of a supervisor or technician (--operator, on the tty or --code-stdin), or the
    terminal's grant (--grant-stdin) when its Update entry took the technician's code on
    the keypad. None: go on; else the exit status, after one line. A data folder with
    no store yet (a first install) has no operator to ask and no data to protect."""
    from firmware.security import mfa
    from tools import cli
    nothing = "nothing was installed"

    def say(line):
        _say(line)
        try:
            _root(args, config).log("refused", line[len("refused: "):]
                                    if line.startswith("refused: ") else line)
        except OSError:
            pass
    if "update" not in (config.get("mfa") or {}).get("actions", mfa.DEFAULT_ACTIONS):
        return None
    if not os.path.exists(os.path.join(data_dir, "handpos.db")):
        return None
    if not getattr(args, "grant_stdin", False):
        return cli._mfa_gate(args, config, profile, data_dir, "update", "update apply", say,
                             nothing)
    keys = cli._open_tool_keys(profile, data_dir, say, nothing)
    if keys is None:
        return 2
    import hmac as hmaclib
    from drivers import update_runner
    line = sys.stdin.readline(256) if sys.stdin is not None else ""
    parts = line.split()
    if len(parts) != 3 or not parts[1].isdigit():
        say("refused: --grant-stdin, but no grant from the terminal on standard input; %s"
            % nothing)
        return 2
    op_id, utc, mac = parts[0], int(parts[1]), parts[2]
    want = update_runner.grant_mac(update_runner.grant_key(keys.key("data")), args.bundle,
                                   op_id, utc)
    if not hmaclib.compare_digest(want, mac):
        say("refused: the terminal's grant does not match this bundle and this device; %s"
            % nothing)
        return 2
    if abs(time.time() - utc) > update_runner.GRANT_S:
        say("refused: the terminal's grant is older than %d s: start the update again on "
            "the terminal; %s" % (update_runner.GRANT_S, nothing))
        return 2
    return None


# -- status, health, confirm -----------------------------------------------------------
def status_lines(root):
    marks = root.marks()
    cur = root.current_slot()
    lines = ["release root %s" % root.root]
    if cur is None:
        return lines + ["no release installed here (the checkout runs)"]
    for slot in updater.SLOTS:
        if os.path.isdir(root.slot_dir(slot)):
            tags = [t for t, on in (("current", slot == cur), ("good", marks.get("good") == slot),
                                    ("on trial", (marks.get("pending") or {}).get("slot") == slot))
                    if on]
            bad = marks.get("bad", {}).get(slot)
            lines.append("%s: %s%s%s" % (slot, root.version_of(slot) or "?",
                                         " (%s)" % ", ".join(tags) if tags else "",
                                         "; rolled back: %s" % bad if bad else ""))
    pending = marks.get("pending")
    if pending:
        lines.append("on trial: %s %s, start %s of %s%s" % (
            pending["slot"], pending.get("version"), pending.get("boots"),
            pending.get("boots_max"), "; failed: " + pending["failed"]
            if pending.get("failed") else ""))
    lines.append("installed minimum (anti-rollback): %s" % (marks.get("min_version") or "none"))
    for line in root.log_lines()[-5:]:
        lines.append("log #%d %s %s %s" % (line["n"], line.get("utc"), line.get("event"),
                                           line.get("detail", "")[:100]))
    return lines


def health(args, config, profile, data_dir, root, wait_s=0):
    """The release's health check: (ok, lines). self-test: this release's files are its
    manifest's and its code imports and its ciphers give their known answers; the
    terminal from this release is up (holds the data folder) and its boot self-test
    reported no failure; the databases open with the device keys; the host answers an
    echo (when a host is configured and [update] echo is on)."""
    lines = []
    slot = root.current_slot()
    here = os.path.abspath(os.getcwd())
    if slot and os.path.abspath(root.slot_dir(slot)) == here:
        problems = release.check_installed(here)
        if problems:
            return False, ["self-test: " + problems[0]]
    try:
        import firmware.terminal  # noqa: F401  the whole core imports
        import board.compose  # noqa: F401
        _known_answers()
    except Exception as exc:
        return False, ["self-test: %s: %s" % (type(exc).__name__, exc)]
    lines.append("self-test: release files, imports and ciphers ok")
    up, why = _terminal_up(data_dir, wait_s)
    if not up:
        return False, lines + ["terminal: " + why]
    lines.append("terminal: " + why)
    from board import datadir
    from firmware.core.store import StorageFault
    try:
        keys = datadir.open_keys(profile, data_dir)
        _open_databases(data_dir, keys)
    except (StorageFault, sqlite3.Error) as exc:
        return False, lines + ["databases: %s" % exc]
    failures = _selftest_failures(data_dir, root)
    if failures:
        return False, lines + ["boot self-test: " + failures]
    lines.append("databases: open, checks pass")
    if config["update"]["echo"] and config["host"]["address"]:
        ok, said = echo(config)
        if not ok:
            return False, lines + ["host echo: " + said]
        lines.append("host echo: " + said)
    else:
        lines.append("host echo: skipped (no host, or [update] echo = false)")
    return True, lines


def _known_answers():
    """The ciphers the release pays with give their published answers (X9.24's TDES
    DUKPT test vector)."""
    from firmware.security import des
    # FIPS 81 / SP 800-17's single-DES answer, through the TDES the PIN blocks use
    # (a TDES key of three equal parts is single DES)
    key = bytes.fromhex("0123456789ABCDEF" * 2)
    got = des.tdes_encrypt(key, b"Now is t")
    if bytes(got) != bytes.fromhex("3FA40E8A984D4815"):
        raise ValueError("TDES gives %s for the known answer" % bytes(got).hex())


def _terminal_up(data_dir, wait_s):
    """The terminal holds its run lock (it started and opened its data folder) and has
    held it for 3 s; waits up to wait_s."""
    import fcntl
    path = os.path.join(data_dir, "run.lock")
    deadline = time.monotonic() + max(wait_s, 0)
    since = None
    while True:
        held = False
        try:
            with open(path, "a+") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(f, fcntl.LOCK_UN)
                except OSError:
                    held = True
                    f.seek(0)
                    pid = f.read().strip()
        except OSError:
            pass
        if held:
            since = since or time.monotonic()
            if time.monotonic() - since >= 3:
                return True, "running (pid %s)" % pid
        else:
            since = None
        if time.monotonic() >= deadline:
            return False, "not running (its data folder %s is not held)" % data_dir
        time.sleep(0.2)


def _open_databases(data_dir, keys):
    from drivers.journal_sqlite import SQLiteJournal
    from drivers.sqlite_durable import mac_key
    for name in ("handpos.db", "journal.db", "saf.db"):
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            continue
        db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
        try:
            got = db.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            db.close()
        if got != "ok":
            raise sqlite3.DatabaseError("%s: %s" % (name, got))
    jpath = os.path.join(data_dir, "journal.db")
    if os.path.exists(jpath):
        j = SQLiteJournal.open_readonly(jpath, mac_key(keys.key("data"), "journal"))
        j.close()


def _selftest_failures(data_dir, root):
    """What the boot self-test (and the storage) reported since the trial began, less
    the parts that already failed in the last self-test before it (a printer unplugged
    under the old release is not the new release's fault); "" when nothing new."""
    since = (root.marks().get("pending") or {}).get("since") or ""
    path = os.path.join(data_dir, "handpos.db")
    if not since or not os.path.exists(path):
        return ""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        rows = db.execute("SELECT utc, event, detail FROM audit WHERE event IN ('selftest', "
                          "'storage_fault') ORDER BY seq").fetchall()
    except sqlite3.Error:
        rows = []
    finally:
        db.close()
    before = [d for u, e, d in rows if e == "selftest" and u < since][-1:]
    known = set(p.strip() for p in before[0].split(",")) if before else set()
    found = []
    for u, e, d in rows:
        if u < since:
            continue
        if e == "storage_fault":
            found.append("storage: " + d)
        else:
            found += [p.strip() for p in d.split(",") if p.strip() not in known]
    return "; ".join(dict.fromkeys(found))


def echo(config, timeout=10):
    """An 0800 echo (301) to the configured host over a connection of its own, TLS with
    the pinned CA as the terminal connects (drivers/tlsconnect.py); (ok, words)."""
    import socket
    import struct
    from drivers import iso8583_spec
    from drivers.tlsconnect import make_client_context
    from firmware.payments.hostmsg import network_request
    host, port = config["host"]["address"].rsplit(":", 1)
    msg = network_request(config, "%06d" % (int(time.time()) % 999999 + 1),
                          time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "301")
    try:
        raw = iso8583_spec.encode(msg)
        sock = socket.create_connection((host, int(port)), timeout=timeout)
        if config["host"]["tls"]:
            sock = make_client_context(config["host"]["ca_file"]).wrap_socket(
                sock, server_hostname=host)
        with sock:
            sock.sendall(struct.pack(">H", len(raw)) + raw)
            head = _read(sock, 2)
            reply = iso8583_spec.decode(_read(sock, struct.unpack(">H", head)[0]))
    except (OSError, ValueError, iso8583_spec.HostMessageError) as exc:
        return False, "no answer from %s (%s)" % (config["host"]["address"], exc)
    if reply.get("t") == "0810" and reply.get("39") == "00":
        return True, "answered by %s" % config["host"]["address"]
    return False, "%s answered %s %s" % (config["host"]["address"], reply.get("t"), reply.get("39"))


def _read(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


# -- the commands ----------------------------------------------------------------------
def _context(args, prog, nothing):
    """(config, profile, data_dir, config file) as the other technician's tools take
    them (tools/cli.py _tool_data_dir), or None after one line."""
    from board.configfile import config_path
    from tools import cli
    say = lambda line: _say(line, prog)     # noqa: E731
    got = cli._tool_data_dir(args, say, nothing, prog + " " + args.action)
    if got is None:
        return None
    config, profile, data_dir = got
    if args.data and not args.config and not os.environ.get("HANDPOS_CONFIG"):
        config_file = cli.SIM_CONFIG if os.path.exists(cli.SIM_CONFIG) else None
    else:
        config_file = config_path(args.config)
    return config, profile, data_dir, config_file


def command(args):
    """`handpos update ACTION`; the exit status."""
    if args.action == "build":
        return cmd_build(args)
    if args.action == "status":
        from tools import cli
        config = cli._config_or_exit(cli.config_path(args.config)) if not args.data or \
            args.config or os.environ.get("HANDPOS_CONFIG") else cli._sim_config(args)
        for line in status_lines(_root(args, config)):
            print(line)
        return 0
    nothing = {"apply": "nothing was installed", "health": "not checked",
               "confirm": "nothing was marked"}[args.action]
    if args.action == "apply":
        # the data folder may not exist yet (a first install): then nothing to check
        from tools import cli
        if args.data and not args.config and not os.environ.get("HANDPOS_CONFIG"):
            config, board = cli._sim_config(args), args.board or "sim"
        else:
            config, board = cli._config_or_exit(cli.config_path(args.config)), \
                args.board or "pizero2w"
        os.umask(0o077)
        data_dir = os.path.abspath(args.data or config["storage"]["data_dir"])
        config_file = None if (args.data and not args.config and
                               not os.environ.get("HANDPOS_CONFIG")) else \
            cli.config_path(args.config)
        profile = cli._profile_or_exit(board)
        refused = update_gate(args, config, profile, data_dir)
        if refused:
            return refused
        return apply(args, config, profile, data_dir, config_file, hold_stopped)
    got = _context(args, "update", nothing)
    if got is None:
        return 2
    config, profile, data_dir, _ = got
    root = _root(args, config)
    ok, lines = health(args, config, profile, data_dir, root, wait_s=args.wait)
    for line in lines:
        print(line)
    if args.action == "health":
        return 0 if ok else 1
    slot = root.current_slot()
    pending = root.marks().get("pending") or {}
    if not ok:
        _say("refused: the health check failed (%s); nothing was marked" % lines[-1])
        return 1
    if pending.get("slot") != slot or slot is None:
        _say("nothing on trial: %s is %s" % (slot, "good" if slot else "not a release root"))
        return 0
    root.confirm(slot)
    root.log("marked_good", "%s %s by hand: %s" % (slot, pending.get("version"), lines[-1]))
    print("handpos update: %s %s marked good; installed minimum now %s"
          % (slot, pending.get("version"), root.min_version()))
    return 0


def backup_command(args):
    """`handpos backup create|restore`; the exit status."""
    from board import datadir
    from drivers import keyroot
    from drivers.keystore import KeyStore
    from firmware.core.store import StorageFault
    from tools import backup, cli
    nothing = "nothing was written" if args.action == "create" else "nothing was restored"
    got = _context(args, "backup", nothing)
    if got is None:
        return 2
    config, profile, data_dir, config_file = got
    say = lambda line: _say(line, "backup")     # noqa: E731
    tid = config["terminal"]["id"]
    if args.action == "create":
        try:
            keys = datadir.open_keys(profile, data_dir)
        except StorageFault as exc:
            say("refused: the terminal's keys do not open (%s); %s" % (exc, nothing))
            return 2
        path = backup.create(data_dir, keys, tid, config_file, out_dir=args.output_dir)
        print("handpos backup: %s written (terminal %s)" % (path, tid))
        return 0
    locks, why = cli._hold_stopped(data_dir)
    if locks is None:
        say("refused: %s; %s" % (why, nothing))
        return 2

    def open_keys(folder):
        try:
            root = keyroot.open_root(profile.get("keyroot"), data_dir)
        except keyroot.KeyRootError as exc:
            from drivers.keystore import KeyStoreError
            raise KeyStoreError("corrupt", str(exc))
        return KeyStore(folder, root).open()
    try:
        doc = backup.restore(args.file, data_dir, tid, open_keys, config_file)
    except backup.BackupError as exc:
        say("refused: %s; %s" % (exc, nothing))
        return 2
    finally:
        for lock in locks:
            lock.close()
    print("handpos backup: %s restored into %s (made %s by release %s); start the terminal"
          % (args.file, data_dir, doc.get("created_utc"), doc.get("release") or "?"))
    return 0
