"""The `handpos` command: run the terminal, the simulator, check a configuration,
import a moved offline queue, take the catalogue on and off as CSV, load the QR
acquirer's merchant key, export a day of the journal for the back office, or check and
export the audit trail."""
import argparse
import os
import sys

from board.configfile import ConfigError, config_path, load_config, load_profile
from firmware.core import config as schema

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM_CONFIG = os.path.join(REPO, "config", "sim.toml")


def _or_exit(load, what, last_line=None):
    """load(what), or one line per problem on stderr and exit status 2."""
    try:
        return load(what)
    except ConfigError as exc:
        for line in exc.problems + ([last_line] if last_line else []):
            sys.stderr.write("handpos: " + line + "\n")
        sys.exit(2)


def _sim_config(args):
    """The simulator's configuration: --config, $HANDPOS_CONFIG, config/sim.toml, else
    the defaults with the data in .sim."""
    if args.config:
        return _config_or_exit(args.config)
    if os.environ.get("HANDPOS_CONFIG"):
        return _config_or_exit(os.environ["HANDPOS_CONFIG"])
    if os.path.exists(SIM_CONFIG):
        return _config_or_exit(SIM_CONFIG)
    config = schema.defaults()
    config["storage"]["data_dir"] = ".sim"
    return config


def _config_or_exit(path):
    return _or_exit(load_config, path, "refusing to start until the configuration is fixed")


def _profile_or_exit(name):
    return _or_exit(load_profile, name)


def cmd_run(args):
    config = _config_or_exit(config_path(args.config))
    profile = _profile_or_exit(args.board)
    # held while the terminal runs, so that `handpos import-queue` refuses meanwhile
    # (and a terminal does not start in the middle of an import)
    lock, holder = lock_data_dir(config["storage"]["data_dir"], RUN_LOCK)
    if lock is None:
        sys.stderr.write("handpos: another handpos process%s is using the data directory %s "
                         "(a terminal, or a queue import): wait for it to finish, or stop it\n"
                         % (" (pid %s)" % holder if holder else "", config["storage"]["data_dir"]))
        return 2
    from board import compose
    try:
        built = compose.build(profile, config)
    except ConfigError as exc:          # a data folder others may read, lab settings
        for line in exc.problems:
            sys.stderr.write("handpos: %s\n" % line)
        sys.stderr.write("handpos: refusing to start\n")
        lock.close()
        return 2
    import signal

    def stop(signum, frame):
        built.reactor.stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        built.terminal.start()
        built.reactor.run()
    finally:
        built.close()
        lock.close()
    return 0


class PortTaken(str):
    """Why the host simulator did not start, when the reason is that its port is taken."""


def port_taken(host, port):
    """True when something on this machine already listens on host:port (so a server
    cannot bind it). SO_REUSEADDR as asyncio's servers use it: a port left in TIME_WAIT
    by a simulator that just quit is not taken."""
    import errno
    import socket
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, kind, proto, _, sockaddr in infos:
        s = socket.socket(family, kind, proto)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
        finally:
            s.close()
    return False


def _die_with_parent():
    """In the forked child: SIGTERM when the simulator goes, even if it is killed, so no
    host simulator is left holding the port."""
    import signal
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_hostsim(address, data_dir, timeout=20):
    """Start `handpos hostsim` beside the simulated terminal; returns (process, CA path)
    or (None, why), why a PortTaken when another program listens on the address."""
    import subprocess
    import time
    host, port = address.rsplit(":", 1)
    if port_taken(host, int(port)):
        return None, PortTaken("%s is already in use" % address)
    os.makedirs(data_dir, exist_ok=True)
    log_path = os.path.join(data_dir, "hostsim.log")
    log_from = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tools", "hostsim", "--listen", address,
                                 "--data", data_dir, "--quiet"], cwd=REPO, stdout=log, stderr=log,
                                preexec_fn=_die_with_parent)

    def said():
        with open(log_path, "rb") as f:
            f.seek(log_from)
            return f.read().decode("utf-8", "replace")
    # ready when it says it listens (a connection test would also succeed against
    # another program holding the port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exited = proc.poll() is not None
        text = said()
        if "hostsim: listening on" in text:
            return proc, os.path.join(data_dir, "tls", "ca.pem")
        if exited:
            if "already in use" in text:
                return None, PortTaken("%s is already in use" % address)
            last = [line for line in text.splitlines() if line.strip()][-1:]
            return None, "it exited%s; see %s" % (": " + last[0] if last else "", log_path)
        time.sleep(0.05)
    proc.terminate()
    proc.wait(10)
    return None, "it did not open %s within %d s; see %s" % (address, timeout, log_path)


def start_qrsim(data_dir, timeout=20):
    """Start the QR acquirer simulator (tools/host/qrsim.py) on a free loopback port
    beside the simulated terminal; returns (process, address, CA path) or (None, why, None)."""
    import re
    import subprocess
    import time
    os.makedirs(data_dir, exist_ok=True)
    log_path = os.path.join(data_dir, "qrsim.log")
    log_from = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tools.host.qrsim", "--dir", data_dir,
                                 "--host", "127.0.0.1", "--port", "0", "--quiet"], cwd=REPO,
                                stdout=log, stderr=log, preexec_fn=_die_with_parent)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exited = proc.poll() is not None
        with open(log_path, "rb") as f:
            f.seek(log_from)
            text = f.read().decode("utf-8", "replace")
        found = re.search(r"qrsim: listening on https://([0-9.]+:[0-9]+)", text)
        if found and "ledger" in text:
            return proc, found.group(1), os.path.join(data_dir, "tls", "ca.pem")
        if exited:
            return None, "it exited; see %s" % log_path, None
        time.sleep(0.05)
    proc.terminate()
    proc.wait(10)
    return None, "it did not start within %d s; see %s" % (timeout, log_path), None


HEADLESS_HINT = ("to run it without a screen: .venv/bin/handpos sim --headless --control "
                 "/tmp/pos.sock (docs/simulator.md)")


def no_terminal_reason():
    """Why the interactive simulator cannot draw here, or None."""
    if not sys.stdout.isatty():
        return "its output is piped or redirected"
    if not sys.stdin.isatty():
        return "its input is not a terminal"
    import curses
    try:
        curses.setupterm(None, sys.stdout.fileno())
    except curses.error:
        return "TERM=%r is no terminal type this machine knows" % os.environ.get("TERM", "")
    return None


SIM_LOCK = "sim.lock"        # held by a simulator on its data directory
RUN_LOCK = "run.lock"        # held by `handpos run` (the device, under systemd)


def lock_data_dir(data_dir, name=SIM_LOCK):
    """Hold data_dir for this simulator (released when the process ends, however it ends);
    None when another simulator holds it, with the pid it wrote."""
    import fcntl
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    # 0600 like everything in the data folder (a lock others can read fails its check)
    f = os.fdopen(os.open(os.path.join(data_dir, name), os.O_RDWR | os.O_CREAT, 0o600), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        pid = f.read().strip()
        f.close()
        return None, pid
    f.seek(0)
    f.truncate()
    f.write("%d\n" % os.getpid())
    f.flush()
    return f, None


def free_port_near(host, start):
    """The first port from start on that nothing listens on (for a suggestion)."""
    for port in range(start, min(start + 100, 65536)):
        if not port_taken(host, port):
            return port
    return start


def _free_name(data_dir):
    """.sim -> .sim2 (or .sim3, ...): a data directory no simulator uses yet."""
    n = 2
    while os.path.exists("%s%d" % (data_dir, n)):
        n += 1
    return _show_path("%s%d" % (data_dir, n))


def _show_path(path):
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _command_with(args, options):
    """The command line the person ran, as `.venv/bin/handpos sim ...`, with options
    ({"--host-port": "8584"}) set: what to type to get past a refusal."""
    import shlex
    words, argv, i = [], list(getattr(args, "argv", None) or ["sim"]), 0
    while i < len(argv):
        word = argv[i]
        name = word.split("=", 1)[0]
        if name in options:
            i += 1 if "=" in word else 2
            continue
        words.append(word)
        i += 1
    for name, value in options.items():
        words += [name, value]
    return ".venv/bin/handpos " + " ".join(shlex.quote(w) for w in words)


def _say(line):
    sys.stderr.write("handpos sim: " + line + "\n")
    sys.stderr.flush()


def cmd_sim(args):
    # Refuse before anything starts (host simulator, pcscd): the interactive simulator
    # draws with curses, which needs a terminal on both sides.
    if not args.headless:
        why = no_terminal_reason()
        if why:
            _say("the simulator needs a terminal and %s; %s" % (why, HEADLESS_HINT))
            return 2
    from tools.sim import simulator as simmod
    config = _sim_config(args)
    # --data, else the configuration's own folder (repository-relative): the Chinese
    # simulator keeps its operators and language apart from the English one's
    data_dir = args.data or os.path.join(REPO, config["storage"]["data_dir"] or ".sim")
    data_dir = config["storage"]["data_dir"] = os.path.abspath(data_dir)
    profile = _profile_or_exit(args.board)
    synced = {"auto": None, "yes": True, "no": False}[args.clock_synced]
    lock, holder = lock_data_dir(data_dir)
    if lock is None:
        address = config["host"]["address"]
        extra = {"--data": _free_name(data_dir)}
        if args.host == "auto" and address.split(":")[0] in ("127.0.0.1", "localhost"):
            extra["--host-port"] = str(free_port_near(address.rsplit(":", 1)[0], 8584))
        _say("another simulator%s is running with the data directory %s; quit it (Q in its "
             "window), or give this one its own: %s"
             % (" (pid %s)" % holder if holder else "", _show_path(data_dir),
                _command_with(args, extra)))
        return 2
    # simulators before the key root kept their host simulator and pcscd inside the
    # data folder, whose files must now all be private: they move beside it
    for name in ("host", "pcscd"):
        old, new = os.path.join(data_dir, name), "%s-%s" % (data_dir, name)
        if os.path.isdir(old) and not os.path.lexists(new):
            os.rename(old, new)
    # and their files were 0644: the simulator's own test data is made private here,
    # saying so (a terminal, `handpos run`, refuses instead: docs/keys.md)
    from board.datadir import make_private
    fixed = make_private(data_dir)
    if fixed:
        _say("made the simulator's data folder private (%d files and folders were open to "
             "other users)" % fixed)
    address = config["host"]["address"]
    local_host = args.host == "auto" and address.split(":")[0] in ("127.0.0.1", "localhost")
    if args.host_port is not None and not local_host:
        _say("--host-port is the port of the host simulator this command starts, which it "
             "does only with --host auto and a host.address on 127.0.0.1 (here: %s, --host %s)"
             % (address or '""', args.host))
        return 2
    hostsim = proxy = pcscd = sim = qrsim = qr_proxy = None
    try:
        if local_host and not config["qr"]["address"]:
            # the QR acquirer simulator beside the card host: QR payments in `make run`
            qrsim, qr_address, qr_ca = start_qrsim(data_dir + "-qr")
            if qrsim is None:
                _say("the QR acquirer simulator did not start (%s): QR payments are off"
                     % qr_address)
            else:
                from tools.host.faultproxy import FaultProxy
                from tools.host.qrsim import DEFAULT_KEY
                # through a fault proxy of its own, so that N (or the control socket's
                # "network") cuts the QR link as well, or the QR link alone
                qr_proxy = FaultProxy(0, int(qr_address.rsplit(":", 1)[1]))
                qr_proxy.start()
                config["qr"].update(enabled=True, address="127.0.0.1:%d" % qr_proxy.port,
                                    ca_file=qr_ca, mch_id="100000000001",
                                    key=DEFAULT_KEY.decode())
        if local_host:
            host, port = address.rsplit(":", 1)
            if args.host_port is not None:
                port = str(args.host_port)
            hostsim, ca = start_hostsim("%s:%s" % (host, port), data_dir + "-host")
            if hostsim is None and isinstance(ca, PortTaken):
                other = free_port_near(host, int(port) + 1)
                _say("port %s is taken (another simulator or program listens on %s:%s), so "
                     "the host simulator cannot start there; quit the other one, or give this "
                     "one another port: %s"
                     % (port, host, port, _command_with(args, {"--host-port": str(other)})))
                return 2
            if hostsim is None:
                _say("the host simulator did not start (%s); without it card payments "
                     "cannot be authorised; to run without a host: .venv/bin/handpos sim "
                     "--host off" % ca)
                return 2
            config["host"]["ca_file"] = ca
            # the terminal reaches it through a fault proxy, so that a person (key N)
            # or a test (control "network") can cut the network and bring it back
            from tools.host.faultproxy import FaultProxy
            proxy = FaultProxy(0, int(port))
            proxy.start()
            config["host"]["address"] = "127.0.0.1:%d" % proxy.port
        elif args.host == "off":
            config["host"]["address"] = ""
        chip_port = None
        if profile.get("chip") and args.chip == "auto":
            # a pcscd of the simulator's own, with only the Virtual PCD reader, on a
            # private socket: the chip reader driver goes through real PC/SC
            from tools.cards.vcard import PrivatePcscd
            try:
                pcscd = PrivatePcscd(data_dir + "-pcscd")
                pcscd.start()
                os.environ["PCSCLITE_CSOCK_NAME"] = pcscd.socket_path
                chip_port = pcscd.port
            except (RuntimeError, OSError) as exc:
                _say("no chip reader (%s)" % exc)
                pcscd = None
                profile.pop("chip", None)
        elif args.chip == "off":
            profile.pop("chip", None)
        # a fresh data folder gets the demo catalogue, so that there are goods to scan
        new_catalogue = not os.path.exists(os.path.join(data_dir, "catalogue.db"))
        try:
            sim = simmod.Simulator(profile, config, snapshot_dir=args.snapshot,
                                   control_path=args.control, synced=synced,
                                   auth_iterations=args.pin_iterations, chip_port=chip_port,
                                   proxy=proxy, qr_proxy=qr_proxy)
        except ConfigError as exc:      # a data folder others may read, lab settings
            for line in exc.problems:
                _say(line)
            _say("refusing to start")
            return 2
        proxy = qr_proxy = None         # the simulator stops them
        if new_catalogue:
            _load_demo_catalogue(sim, data_dir, config)
        simmod.install_signal_handlers(sim)
        if args.headless:
            if args.control:
                sys.stdout.write("handpos sim: control socket at %s\n" % args.control)
                sys.stdout.flush()
            sim.run()
        else:
            simmod.run_interactive(sim)
    finally:
        if sim is not None:
            sim.close()
        for p in (proxy, qr_proxy):
            if p is not None:
                p.stop()
        if hostsim is not None:
            hostsim.terminate()
            hostsim.wait(10)
        if qrsim is not None:
            qrsim.terminate()
            qrsim.wait(10)
        if pcscd is not None:
            pcscd.stop()
        lock.close()
    return 0


def _load_demo_catalogue(sim, data_dir, config):
    from tools import catalogue_csv
    from firmware.core.store import StorageFault
    keys = sim.built.datadir.keys if sim.built.datadir is not None else None
    if keys is None:
        return                          # the keys' fault is on the screen
    try:
        got = catalogue_csv.load_demo(data_dir, keys.key("data"), config)
    except (catalogue_csv.FileRefused, StorageFault, OSError) as exc:
        _say("the demo catalogue was not loaded: %s" % exc)
        return
    _say("loaded the demo catalogue: %d items (%s)"
         % (got["added"], _show_path(catalogue_csv.DEMO)))
    # and its promotions beside it (a time-limited discount, a buy-2-get-1)
    from tools import promotions_file
    try:
        n, problems = promotions_file.load_demo(data_dir, keys.key("data"), config)
    except (StorageFault, OSError) as exc:
        _say("the demo promotions were not loaded: %s" % exc)
        return
    for line in problems:
        _say("demo promotions: " + line)
    if n:
        _say("loaded the demo promotions: %d (%s)" % (n, _show_path(promotions_file.DEMO)))


def cmd_check_config(args):
    path = config_path(args.config)
    try:
        load_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line)
        return 2
    print("%s: OK" % path)
    return 0


def _import_say(line):
    sys.stderr.write("handpos import-queue: " + line + "\n")
    sys.stderr.flush()


def cmd_import_queue(args):
    """On the replacement terminal, with the terminal stopped: queue the records of a
    supervisor's export made for this terminal (docs/offline.md)."""
    config = _config_or_exit(config_path(args.config))
    os.umask(0o077)             # a database file it makes is private, like the terminal's
    data_dir = args.data or config["storage"]["data_dir"]
    if not os.path.isabs(data_dir):
        data_dir = os.path.join(REPO, data_dir)     # as the simulator reads it
    data_dir = os.path.abspath(data_dir)
    if not os.path.isdir(data_dir):
        _import_say("refused: no data directory %s: check --config (storage.data_dir) or "
                    "--data; nothing was imported" % data_dir)
        return 2
    owner = os.stat(data_dir).st_uid
    if owner != os.geteuid():
        _import_say("refused: the data directory %s belongs to uid %d, and this is uid %d: run "
                    "it as the terminal's user (sudo -u handpos handpos import-queue ...); "
                    "nothing was imported" % (data_dir, owner, os.geteuid()))
        return 2
    # The terminal keeps its queue's totals in memory and would not see records
    # written under it: refuse while it runs, and hold its locks while importing.
    held = []
    try:
        for name, what, stop in (
                (RUN_LOCK, "the terminal", "sudo systemctl stop handpos"),
                (SIM_LOCK, "the simulator", "Q in its window")):
            lock, holder = lock_data_dir(data_dir, name)
            if lock is None:
                _import_say("refused: %s is running on %s%s: stop it first (%s), import, "
                            "then start it again; nothing was imported"
                            % (what, data_dir, " (pid %s)" % holder if holder else "", stop))
                return 2
            held.append(lock)
        from board.export import import_queue
        from drivers.saf_queue import SafError
        from firmware.core.store import StorageFault
        try:
            got = import_queue(config, args.file, data_dir, _profile_or_exit(args.board))
        except (SafError, StorageFault) as exc:
            _import_say("refused: %s" % exc)
            return 2
        skipped = got["records"] - got["added"]
        unaudited = _import_audit(data_dir, _profile_or_exit(args.board),
                                  "queue_imported", "%d of %d records of terminal %s, export %s"
                                  % (got["added"], got["records"], got["tid"],
                                     got["export_id"][:8]))
        print("handpos import-queue: %d records of terminal %s queued on %s (export %s, made "
              "%s)%s; start the terminal: it uploads them when it reaches the host"
              % (got["added"], got["tid"], config["terminal"]["id"], got["export_id"][:8],
                 got["created_utc"],
                 "; %d already in this queue, skipped" % skipped if skipped else ""))
        if unaudited:
            _import_say("not in the audit trail: %s" % unaudited)
        return 0
    finally:
        for lock in held:
            lock.close()


def _import_audit(data_dir, profile, event, detail):
    """The import's audit row, sealed into the trail (the terminal stopped meanwhile, so
    the chain has one writer); why not, or None."""
    from board import datadir
    from firmware.core.store import StorageFault
    try:
        keys = datadir.open_keys(profile, data_dir)
    except StorageFault as exc:
        return str(exc)
    return _qr_audit(data_dir, event, detail, keys)


def _hold_stopped(data_dir):
    """The terminal's and the simulator's locks on data_dir, for a tool that writes its
    databases while neither runs: (locks, None), or (None, why) holding nothing."""
    held = []
    for name, what, stop in ((RUN_LOCK, "the terminal", "sudo systemctl stop handpos"),
                             (SIM_LOCK, "the simulator", "Q in its window")):
        lock, holder = lock_data_dir(data_dir, name)
        if lock is None:
            for got in held:
                got.close()
            return None, ("%s is running on %s%s: stop it first (%s), then try again"
                          % (what, data_dir, " (pid %s)" % holder if holder else "", stop))
        held.append(lock)
    return held, None


def cmd_catalogue(args):
    """Catalogue and stock as CSV (docs/retail.md); an import only while the terminal
    is stopped, since it writes the catalogue under it."""
    from tools import catalogue_csv
    if args.data and not args.config and not os.environ.get("HANDPOS_CONFIG"):
        # a data folder alone is a simulator's, as `handpos sim --data DIR` takes it
        config = _sim_config(args)
        board = args.board or "sim"
    else:
        config = _config_or_exit(config_path(args.config))
        board = args.board or "pizero2w"
    os.umask(0o077)             # a database file it makes is private, like the terminal's
    data_dir = args.data or config["storage"]["data_dir"]
    if not os.path.isabs(data_dir):
        data_dir = os.path.join(REPO, data_dir)     # as the simulator reads it
    data_dir = os.path.abspath(data_dir)
    profile = _profile_or_exit(board)
    if args.action != "import" and os.path.isdir(data_dir):
        # export and movements write the shop's data out: [mfa] "export"; they run
        # beside the terminal, so the check writes no audit row (docs/audit.md)
        refused = _mfa_gate(args, config, profile, data_dir, "export",
                            "catalogue " + args.action, _catalogue_say, "nothing was written")
        if refused:
            return refused
    return catalogue_csv.command(args, config, profile, data_dir, _hold_stopped)


def _catalogue_say(line):
    sys.stderr.write("handpos catalogue: " + line + "\n")
    sys.stderr.flush()


def cmd_promotions(args):
    """The automatic promotions (docs/promotions.md): import replaces them all from a
    JSON file, only while the terminal is stopped; list prints them with their windows."""
    from tools import promotions_file
    got = _tool_data_dir(args, promotions_file._say,
                         "nothing was imported" if args.action == "import" else "nothing listed",
                         "promotions " + args.action)
    if got is None:
        return 2
    config, profile, data_dir = got
    return promotions_file.command(args, config, profile, data_dir, _hold_stopped)


def _qr_say(line):
    sys.stderr.write("handpos qr-key: " + line + "\n")
    sys.stderr.flush()


def _tool_data_dir(args, say, nothing, command):
    """The configuration and the data folder a technician's tool works on: --config,
    else a data folder alone (--data without a configuration) as the simulator's, as
    `handpos sim --data DIR` takes it. (config, profile, data_dir), or None after one
    line through say() saying why not (no such folder, another user's)."""
    if args.data and not args.config and not os.environ.get("HANDPOS_CONFIG"):
        config = _sim_config(args)
        board = args.board or "sim"
    else:
        config = _config_or_exit(config_path(args.config))
        board = args.board or "pizero2w"
    profile = _profile_or_exit(board)
    os.umask(0o077)             # whatever it writes is private, like the terminal's files
    data_dir = args.data or config["storage"]["data_dir"]
    if not os.path.isabs(data_dir):
        data_dir = os.path.join(REPO, data_dir)     # as the simulator reads it
    data_dir = os.path.abspath(data_dir)
    if not os.path.isdir(data_dir):
        say("refused: no data directory %s: check --config (storage.data_dir) or --data; %s"
            % (data_dir, nothing))
        return None
    owner = os.stat(data_dir).st_uid
    if owner != os.geteuid():
        say("refused: the data directory %s belongs to uid %d, and this is uid %d: run it as "
            "the terminal's user (sudo -u handpos handpos %s ...); %s"
            % (data_dir, owner, os.geteuid(), command, nothing))
        return None
    return config, profile, data_dir


def _open_tool_keys(profile, data_dir, say, nothing):
    """The terminal's key store, opened through the board's key root as the queue
    import opens it (board/datadir.py open_keys); None after one line saying why not."""
    from board import datadir
    from firmware.core.store import StorageFault
    try:
        return datadir.open_keys(profile, data_dir)
    except StorageFault as exc:         # KeyStoreError among them
        hint = ""
        if os.path.exists(os.path.join(data_dir, SIM_LOCK)) and \
                profile.get("board", {}).get("name") != "sim":
            hint = " (a simulator's data folder: add --board sim)"
        say("refused: the terminal's keys do not open: %s%s; %s" % (exc, hint, nothing))
        return None


QR_KEY_INPUT_MAX = 4096


def _read_qr_key(args):
    """(key text, None) or (None, why): the merchant key from --key-file, else stdin (a
    prompt without echo on a terminal). One line; surrounding white space dropped."""
    if args.key_file:
        try:
            with open(args.key_file, "rb") as f:
                raw = f.read(QR_KEY_INPUT_MAX + 1)
        except FileNotFoundError:
            return None, "no key file %s" % args.key_file
        except IsADirectoryError:
            return None, "the key file %s is a folder" % args.key_file
        except OSError as exc:
            return None, "the key file %s cannot be read (%s)" % (args.key_file, exc.strerror)
    elif sys.stdin is None:
        return None, "no key: give --key-file FILE, or the key on standard input"
    elif sys.stdin.isatty():
        import getpass
        try:
            raw = getpass.getpass("merchant key (not shown): ").encode("utf-8", "replace")
        except (EOFError, KeyboardInterrupt):
            return None, "no key was typed"
    else:
        raw = sys.stdin.buffer.read(QR_KEY_INPUT_MAX + 1)
    source = "the key file" if args.key_file else "the key on standard input"
    if len(raw) > QR_KEY_INPUT_MAX:
        return None, "%s is longer than %d bytes: it is not a merchant key" % (
            source, QR_KEY_INPUT_MAX)
    try:
        text = raw.decode("utf-8")
    except UnicodeError:
        return None, "%s is not text: the merchant key is printable ASCII" % source
    lines = [line.strip() for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if len(lines) > 1:
        return None, "%s holds %d lines: put the key alone on one line" % (source, len(lines))
    return (lines[0] if lines else ""), None


def _qr_audit(data_dir, event, detail, keys, operator=""):
    """An audit row in the terminal's store (stopped meanwhile: the chain must have one
    writer), sealed into its chain, when it has a store; the reason when it could not be
    written, else None."""
    from drivers.store_sqlite import SQLiteStore
    from firmware.core.store import StorageFault
    path = os.path.join(data_dir, "handpos.db")
    if not os.path.exists(path):
        return "no store yet (%s)" % path
    try:
        store = SQLiteStore(path)
    except StorageFault as exc:
        return str(exc)
    try:
        from drivers import audittrail
        # sealed into the chain as the terminal seals it (docs/audit.md)
        store.attach_audit_chain(audittrail.open_chain(keys))
        store._audit(event, operator, detail)     # the raising form: audit() keeps quiet
    except StorageFault as exc:
        return str(exc)
    finally:
        store.close()
    return None


MFA_CODE_INPUT_MAX = 64


def _mfa_options(a, action):
    """--operator and --code-stdin of a command that [mfa] actions may guard."""
    a.add_argument("--operator", default=None, metavar="ID",
                   help="the supervisor or technician whose authenticator code (TOTP, or a "
                        "recovery code) allows this, when [mfa] actions has %r (docs/mfa.md)"
                        % action)
    a.add_argument("--code-stdin", action="store_true",
                   help="read the code from one line of standard input (default: ask for it "
                        "on the terminal, not shown)")


def _read_mfa_code(args, op_id):
    """(code, None) or (None, why): the code typed on the terminal (not shown), or one
    line of standard input with --code-stdin; spaces dropped (a recovery code is printed
    as 12345 67890)."""
    if args.code_stdin:
        if sys.stdin is None:
            return None, "--code-stdin, but there is no standard input"
        line = sys.stdin.readline(MFA_CODE_INPUT_MAX + 1)
        if len(line) > MFA_CODE_INPUT_MAX:
            return None, "the line on standard input is not a code"
    else:
        try:
            with open("/dev/tty"):
                pass
        except OSError:
            return None, ("no terminal to ask the code on: type it at a terminal, or give it "
                          "on standard input with --code-stdin")
        import getpass
        try:
            line = getpass.getpass("authenticator code of operator %s (or a recovery code; "
                                   "not shown): " % op_id)
        except (EOFError, KeyboardInterrupt):
            return None, "no code was typed"
    return "".join(line.split()), None


def _mfa_gate(args, config, profile, data_dir, action, command, say, nothing, keys=None,
              audit=False):
    """The second factor a command needs when [mfa] actions has action (docs/mfa.md "On
    the command line"): --operator, a supervisor or technician per [mfa] roles, gives
    the code of their authenticator app (or a recovery code), checked by the terminal's
    own service over its sealed enrolments (DATA/keys/mfa.sealed) and its store's
    lockout, so a code spent on the keypad is spent here and wrong codes here count
    there. None when the command may go on (no code needed, or the right one given);
    else 2, after one line through say(). audit: write mfa_ok / mfa_failed / ... into
    the trail: only a command holding the terminal stopped may (the chain has one
    writer); the others write no audit row."""
    cfg = config.get("mfa") or {}
    from firmware.security import mfa
    if action not in cfg.get("actions", mfa.DEFAULT_ACTIONS):
        return None
    roles = list(cfg.get("roles", mfa.DEFAULT_ROLES))
    op_id = args.operator
    if not op_id:
        say("refused: %s needs the authenticator code of a %s ([mfa] actions has %r): give "
            "--operator ID; %s" % (command, " or ".join(roles), action, nothing))
        return 2
    if keys is None:
        keys = _open_tool_keys(profile, data_dir, say, nothing)
        if keys is None:
            return 2
    import time
    from drivers.keystore import KeyStoreError
    from drivers.mfa_store import SealedSecrets
    from drivers.store_sqlite import SQLiteStore
    from firmware.core.store import StorageFault
    path = os.path.join(data_dir, "handpos.db")
    if not os.path.exists(path):
        say("refused: no store yet (%s), so no operator %s: start the terminal once; %s"
            % (path, op_id, nothing))
        return 2
    try:
        store = SQLiteStore(path)
    except StorageFault as exc:
        say("refused: %s; %s" % (exc, nothing))
        return 2
    try:
        return _mfa_check(args, store, SealedSecrets(keys), roles, op_id, action, command,
                          say, nothing, mfa, time.time, audit and (data_dir, keys))
    except KeyStoreError as exc:        # the sealed enrolments do not open
        say("refused: TOTP data damaged (%s): call a technician; %s" % (exc, nothing))
        return 2
    except StorageFault as exc:         # the store: a full or failing card
        say("refused: %s; %s" % (exc, nothing))
        return 2
    finally:
        store.close()


def _mfa_check(args, store, secrets, roles, op_id, action, command, say, nothing, mfa, now,
               audit_to):
    op = store.get_operator(op_id)
    if op is None:
        say("refused: unknown operator %s; %s" % (op_id, nothing))
        return 2
    if not op.get("active", True):
        say("refused: operator %s is disabled; %s" % (op_id, nothing))
        return 2
    if op["role"] not in roles:
        say("refused: operator %s is a %s: only a %s gives the code for %s ([mfa] roles); %s"
            % (op_id, op["role"], " or ".join(roles), action, nothing))
        return 2
    service = mfa.Mfa(secrets, store, now, os.urandom)
    what = "%s (handpos %s)" % (action, command)

    def audit(event, detail):
        if audit_to:
            unaudited = _qr_audit(audit_to[0], event, detail, audit_to[1], operator=op_id)
            if unaudited:
                say("not in the audit trail: %s" % unaudited)
    if not service.enrolled(op_id):
        audit("mfa_not_enrolled", what)
        say("refused: operator %s has no authenticator: enrol TOTP on the terminal first: "
            "Settings > Enrol TOTP; %s" % (op_id, nothing))
        return 2
    left = service.locked_for(op_id)
    if left:
        say("refused: operator %s is locked out after %d wrong codes: try again in %d min; %s"
            % (op_id, service.max_failures, (left + 59) // 60, nothing))
        return 2
    code, why = _read_mfa_code(args, op_id)
    if why:
        say("refused: %s; %s" % (why, nothing))
        return 2
    if not code.isdigit() or len(code) not in (6, 10):
        # not counted, as the keypad takes only 6 (or with F2 10) digits
        say("refused: a code is the 6 digits the app shows, or a 10-digit recovery code; %s"
            % nothing)
        return 2
    recovery = len(code) == 10
    # read, checked and spent under the sealed file's lock (Mfa holds it)
    answer = service.verify_recovery(op_id, code) if recovery else service.verify(op_id, code)
    if answer == mfa.OK:
        if recovery:
            left = service.recovery_left(op_id)
            audit("mfa_recovery_used", "%s; %d left" % (what, left))
            say("operator %s: recovery code accepted (%d left); it is spent" % (op_id, left))
        else:
            audit("mfa_ok", what)
        return None
    audit("mfa_failed", "%s: %s%s" % (what, answer, " (recovery code)" if recovery else ""))
    if answer == mfa.LOCKED:
        audit("mfa_locked", "%d min" % (service.lockout_s // 60))
        say("refused: wrong code; operator %s is now locked out for %d min; %s"
            % (op_id, service.lockout_s // 60, nothing))
    elif answer == mfa.NOT_ENROLLED:      # removed meanwhile
        say("refused: operator %s has no authenticator: enrol TOTP on the terminal first: "
            "Settings > Enrol TOTP; %s" % (op_id, nothing))
    elif answer == mfa.REPLAY:
        say("refused: that code was used already: wait for the app's next code; %s" % nothing)
    else:
        say("refused: wrong code (%d of %d before a %d-min lockout); %s"
            % (service.failures(op_id), service.max_failures, service.lockout_s // 60,
               nothing))
    return 2


def cmd_qr_key(args):
    """`handpos qr-key load|status`: the QR acquirer's merchant key, sealed in the
    terminal's key store (docs/keys.md)."""
    from drivers import keystore
    if args.action == "load":
        return _qr_key_load(args, keystore)
    return _qr_key_status(args, keystore)


def _qr_key_load(args, keystore):
    nothing = "no key was loaded"
    if args.key is not None:
        _qr_say("refused: the key is never given on the command line (every user of this "
                "machine sees it in ps and the shell keeps it): put it in a file "
                "(--key-file FILE) or give it on standard input; %s" % nothing)
        return 2
    found = _tool_data_dir(args, _qr_say, nothing, "qr-key load")
    if found is None:
        return 2
    config, profile, data_dir = found
    mch_id = args.mch_id if args.mch_id is not None else config["qr"]["mch_id"]
    if not mch_id:
        _qr_say("refused: no merchant number: give --mch-id (or set [qr] mch_id); %s" % nothing)
        return 2
    held, why = _hold_stopped(data_dir)
    if why:
        _qr_say("refused: %s; %s" % (why, nothing))
        return 2
    try:
        keys = _open_tool_keys(profile, data_dir, _qr_say, nothing)
        if keys is None:
            return 2
        if args.code_stdin and not args.key_file:
            _qr_say("refused: --code-stdin takes standard input, where the key would come "
                    "from: give the key with --key-file FILE; %s" % nothing)
            return 2
        # the terminal is stopped (its locks held): the check's rows go into the trail
        refused = _mfa_gate(args, config, profile, data_dir, "key_load", "qr-key load",
                            _qr_say, nothing, keys=keys, audit=True)
        if refused:
            return refused
        key, why = _read_qr_key(args)
        if why:
            _qr_say("refused: %s; %s" % (why, nothing))
            return 2
        problem = keystore.qr_key_problem(mch_id, key)
        if problem:
            _qr_say("refused: %s; %s" % (problem, nothing))
            return 2
        try:
            old = keystore.read_qr_key(keys)
        except keystore.KeyStoreError:
            old = None                  # a damaged one is what this load mends
        import time
        from firmware.core.store import StorageFault
        utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        fingerprint = keystore.qr_fingerprint(key)
        try:
            keystore.write_qr_key(keys, mch_id, key, utc)
        except StorageFault as exc:
            _qr_say("refused: %s; %s" % (exc, nothing))
            return 2
        replaced = ""
        if old is not None:
            replaced = "; replaces mch_id %s, key %s" % (old["mch_id"],
                                                         keystore.qr_fingerprint(old["key"]))
        unaudited = _qr_audit(data_dir, "qr_key_loaded", "mch_id %s key %s%s"
                              % (mch_id, fingerprint, replaced), keys)
        print("handpos qr-key: loaded the merchant key of mch_id %s (key %s, SHA-256) into %s%s; "
              "QR payments use it from the terminal's next start"
              % (mch_id, fingerprint, keystore.qr_sealed(keys).path, replaced))
        if unaudited:
            _qr_say("not in the audit trail: %s" % unaudited)
        return 0
    finally:
        for lock in held:
            lock.close()


def _qr_key_status(args, keystore):
    nothing = "nothing was read"
    found = _tool_data_dir(args, _qr_say, nothing, "qr-key status")
    if found is None:
        return 2
    config, profile, data_dir = found
    path = os.path.join(data_dir, "keys", keystore.QR_FILE)
    lab = " (the configuration's [qr] key, the lab's, is used)" if config["qr"]["key"] else ""
    if not os.path.lexists(path):
        print("handpos qr-key: no merchant key loaded in %s%s; a technician runs `handpos "
              "qr-key load`" % (os.path.dirname(path), lab))
        return 1
    # a file sealed under the "qr" key: opening the store writes nothing here, so it may
    # be asked while the terminal runs
    keys = _open_tool_keys(profile, data_dir, _qr_say, nothing)
    if keys is None:
        return 2
    try:
        got = keystore.read_qr_key(keys)
    except keystore.KeyStoreError as exc:
        _qr_say("damaged: %s" % exc)
        return 2
    if got is None:                     # gone since
        print("handpos qr-key: no merchant key loaded in %s%s; a technician runs `handpos "
              "qr-key load`" % (os.path.dirname(path), lab))
        return 1
    differs = ""
    if config["qr"]["mch_id"] and config["qr"]["mch_id"] != got["mch_id"]:
        differs = "; [qr] mch_id %s in the configuration is not used" % config["qr"]["mch_id"]
    print("handpos qr-key: loaded: mch_id %s, key %s (SHA-256), loaded %s, in %s%s"
          % (got["mch_id"], keystore.qr_fingerprint(got["key"]), got["loaded_utc"], path,
             differs))
    return 0


def _journal_say(line):
    sys.stderr.write("handpos journal: " + line + "\n")
    sys.stderr.flush()


def cmd_journal(args):
    """`handpos journal export`: one local day of the journal as CSV or JSON for the
    back office (docs/close-of-day.md). Read-only, so the terminal may run meanwhile."""
    from tools import journal_export
    found = _tool_data_dir(args, _journal_say, "nothing was written", "journal export")
    if found is None:
        return 2
    config, profile, data_dir = found
    # beside the running terminal: the check writes no audit row (docs/audit.md)
    refused = _mfa_gate(args, config, profile, data_dir, "export", "journal export",
                        _journal_say, "nothing was written")
    if refused:
        return refused
    return journal_export.command(args, profile, data_dir)


def _audit_say(line):
    sys.stderr.write("handpos audit: " + line + "\n")
    sys.stderr.flush()


def cmd_audit(args):
    """`handpos audit verify|export`: the audit trail checked against its chain, or
    written out for the back office (docs/audit.md). Read-only: the terminal may run."""
    from tools import audit_trail
    found = _tool_data_dir(args, _audit_say, "nothing was checked", "audit " + args.action)
    if found is None:
        return 2
    config, profile, data_dir = found
    if args.action == "export":
        # read-only beside the running terminal: the check writes no audit row either
        refused = _mfa_gate(args, config, profile, data_dir, "export", "audit export",
                            _audit_say, "nothing was written")
        if refused:
            return refused
    return audit_trail.command(args, profile, data_dir)


def _port(value):
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise argparse.ArgumentTypeError("must be a port number, 1-65535")
    return int(value)


def _data_options(a):
    """--config, --data and --board of a tool that opens a terminal's data folder (its
    keys through the board's key root), the terminal's or a simulator's."""
    a.add_argument("--config", help="configuration file (default $HANDPOS_CONFIG or "
                                    "/etc/handpos/handpos.toml)")
    a.add_argument("--data", help="data directory (default: the configuration's "
                                  "storage.data_dir); a simulator's, as handpos sim takes it")
    a.add_argument("--board", default=None, help="board profile name or path (its key root "
                                                  "opens the terminal's keys; default pizero2w, "
                                                  "or sim when --data is given without --config)")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # every log record on its way out has its card numbers masked (DESIGN.md): the
    # terminal, the simulator and the host simulators all start here
    from drivers import logmask
    logmask.install()
    if argv and argv[0] == "hostsim":
        from tools.host import hostsim
        return hostsim.main(argv[1:])
    parser = argparse.ArgumentParser(prog="handpos", description="handheld point-of-sale terminal")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the terminal on its board")
    p.add_argument("--board", default="pizero2w", help="board profile name or path")
    p.add_argument("--config", help="configuration file (default $HANDPOS_CONFIG or /etc/handpos/handpos.toml)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sim", help="run the terminal simulator")
    p.add_argument("--board", default="sim")
    p.add_argument("--config", help="configuration file (default $HANDPOS_CONFIG, else "
                                    "config/sim.toml; config/sim-cn.toml: CNY and 中文)")
    p.add_argument("--data", help="data directory (default: the configuration's "
                                  "storage.data_dir, .sim/ or .sim-cn/)")
    p.add_argument("--headless", action="store_true", help="no screen: drive it through --control")
    p.add_argument("--control", help="path of a Unix socket taking JSON-line commands")
    p.add_argument("--snapshot", help="save every new frame and receipt as PNG in this directory")
    p.add_argument("--clock-synced", choices=("auto", "yes", "no"), default="yes",
                   help="whether the terminal trusts its clock (default yes: the PC's clock, "
                        "which expiry checks and offline chip approvals need; auto: ask the "
                        "kernel, as the handheld does)")
    p.add_argument("--host", choices=("auto", "off", "external"), default="auto",
                   help="auto: start the host simulator when the config's host is on loopback; "
                        "off: no host; external: use the configured host as it is")
    p.add_argument("--host-port", type=_port, default=None, metavar="PORT",
                   help="port of the host simulator that --host auto starts (default: the "
                        "port of the config's host.address, 8583); for a second simulator")
    p.add_argument("--chip", choices=("auto", "off"), default="auto",
                   help="auto: a private pcscd with the Virtual PCD reader for the chip cards "
                        "(needs Debian's pcscd and vsmartcard-vpcd); off: no chip reader")
    p.add_argument("--pin-iterations", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_sim)

    # listed for --help; the simulator parses its own options (see main below)
    sub.add_parser("hostsim", help="the acquirer host simulator (ISO 8583 over TLS)")

    p = sub.add_parser("check-config", help="check a configuration file and name every problem")
    p.add_argument("config", nargs="?")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("import-queue", help="queue a supervisor's offline-queue export on "
                                            "this (replacement) terminal, stopped")
    p.add_argument("file", help="the export file (saf-OLDTID-to-THISTID-TIME.json)")
    p.add_argument("--board", default="pizero2w", help="board profile name or path (its key "
                                                        "root opens this terminal's keys)")
    p.add_argument("--config", help="configuration file (default $HANDPOS_CONFIG or "
                                    "/etc/handpos/handpos.toml)")
    p.add_argument("--data", help="data directory (default: the configuration's "
                                  "storage.data_dir)")
    p.set_defaults(func=cmd_import_queue)

    p = sub.add_parser("catalogue", help="import or export the catalogue and its stock "
                                         "as CSV (docs/retail.md)")
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (("import", "import items and stock from a CSV file (the terminal "
                                    "stopped): all good lines or nothing"),
                         ("export", "write every item and its stock to a CSV file"),
                         ("movements", "write the stock movements to a CSV file")):
        a = actions.add_parser(action, help=text)
        a.add_argument("file", help="the CSV file (UTF-8)")
        _data_options(a)
        if action == "import":
            a.add_argument("--partial", action="store_true",
                           help="import the good lines even when some are bad")
        else:
            a.add_argument("--no-bom", action="store_true",
                           help="no UTF-8 byte order mark (Excel needs it to read UTF-8)")
            _mfa_options(a, "export")
        if action == "movements":
            a.add_argument("--after", type=int, default=0, metavar="ID",
                           help="only the movements after this id (the last one exported)")
        a.set_defaults(func=cmd_catalogue)

    p = sub.add_parser("promotions", help="the automatic promotions: import them from a JSON "
                                          "file, or list them (docs/promotions.md)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("import", help="replace the promotions with a JSON file's (the "
                                          "terminal stopped): all good or nothing")
    a.add_argument("file", help="the JSON file (UTF-8)")
    _data_options(a)
    a.set_defaults(func=cmd_promotions)
    a = actions.add_parser("list", help="every promotion with its window and whether it is on now")
    _data_options(a)
    a.set_defaults(func=cmd_promotions)

    p = sub.add_parser("qr-key", help="load the QR acquirer's merchant key into the "
                                      "terminal's key store (docs/keys.md), or show it")
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (("load", "seal the merchant number and key (from --key-file or "
                                  "standard input, never the command line) in the key store, "
                                  "the terminal stopped"),
                         ("status", "whether a merchant key is loaded: mch_id, key "
                                    "fingerprint, when (exit 1 when none)")):
        # no abbreviations: `--key SECRET` must not be taken for --key-file
        a = actions.add_parser(action, help=text, allow_abbrev=False)
        _data_options(a)
        if action == "load":
            a.add_argument("--mch-id", default=None, metavar="ID",
                           help="the merchant number at the acquirer (default: [qr] mch_id)")
            a.add_argument("--key-file", default=None, metavar="FILE",
                           help="a file holding the key on one line (default: read it from "
                                "standard input, or ask for it without echo)")
            a.add_argument("--key", default=None, help=argparse.SUPPRESS)   # refused, said why
            _mfa_options(a, "key_load")
        a.set_defaults(func=cmd_qr_key)

    # issue 17: signed updates and the backup (docs/updates.md)
    p = sub.add_parser("update", help="signed application updates: build a bundle, apply "
                                      "one, see or settle the release on trial (docs/updates.md)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("build", help="sign the release's files into a bundle (the LAB "
                                         "test key unless --key)", allow_abbrev=False)
    a.add_argument("--version", help="the release's version, MAJOR.MINOR.PATCH (default "
                                     "firmware/core/version.py's)")
    a.add_argument("--floor", help="lowest version allowed after this one is marked good "
                                   "(anti-rollback; default its own version)")
    a.add_argument("--key", metavar="PEM", help="the vendor's Ed25519 private key")
    a.add_argument("--source", metavar="DIR", help="the tree to take the files from "
                                                   "(default this checkout)")
    a.add_argument("--output", "-o", metavar="FILE", help="default handpos-VERSION.hpup")
    for action, text in (
            ("apply", "verify, back up, install beside the running release, switch, restart"),
            ("status", "the release folders, the one on trial, the minimum, the last steps"),
            ("confirm", "run the health check now and mark the release on trial good"),
            ("health", "the health check alone (the launcher runs it)")):
        a = actions.add_parser(action, help=text, allow_abbrev=False)
        _data_options(a)
        a.add_argument("--root", help="the release root (default [update] release_root)")
        if action == "apply":
            a.add_argument("bundle", help="a bundle file (a USB stick's) or an http(s) URL")
            a.add_argument("--reinstall", action="store_true",
                           help="write the running version again")
            _mfa_options(a, "update")
            a.add_argument("--grant-stdin", action="store_true",
                           help="the terminal's Update entry: its grant (the technician's "
                                "code taken on the keypad) on standard input")
        if action in ("apply", "health", "confirm"):
            a.add_argument("--wait", type=int, default=0, metavar="S",
                           help="apply: wait S seconds for the verdict; health: for the "
                                "terminal to come up")
    for a in actions.choices.values():
        a.set_defaults(func=lambda a: __import__("tools.update").update.command(a))
    p = sub.add_parser("backup", help="the terminal's data in one file, and back "
                                      "(docs/updates.md)")
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (("create", "journal, queue, store, catalogue, members, keys (as "
                                    "wrapped at rest) and configuration in one file"),
                         ("restore", "bring a backup of this terminal back, the terminal "
                                     "stopped")):
        a = actions.add_parser(action, help=text, allow_abbrev=False)
        _data_options(a)
        if action == "restore":
            a.add_argument("file", help="the backup file (.hpbak)")
        else:
            a.add_argument("--output-dir", metavar="DIR", help="default DATA/backups")
        a.set_defaults(func=lambda a: __import__("tools.update").update.backup_command(a))

    p = sub.add_parser("diag", help="the diagnostic report for support, no card data "
                                    "(docs/field-repair.md)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("report", help="the report the terminal prints (self-test aside), "
                                          "from its data folder; read-only, it may run")
    a.add_argument("--output", metavar="FILE", help="write to FILE (default: standard output)")
    _data_options(a)
    a.set_defaults(func=lambda a: __import__("tools.diag_report").diag_report.cli(a))

    p = sub.add_parser("journal", help="the transaction journal for the back office "
                                       "(docs/close-of-day.md)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("export", help="one local day of transactions as CSV or JSON, "
                                          "card numbers masked; read-only, the terminal may run")
    a.add_argument("--day", required=True, metavar="YYYY-MM-DD",
                   help="the day on the terminal's clock (each record's UTC plus its offset)")
    a.add_argument("--format", choices=("csv", "json"), default="csv",
                   help="csv (a header row, UTF-8) or json (a list of objects); default csv")
    a.add_argument("--output", metavar="FILE", help="write to FILE (default: standard output)")
    _data_options(a)
    _mfa_options(a, "export")
    a.set_defaults(func=cmd_journal)

    p = sub.add_parser("audit", help="the audit trail: check its chain, or export it for "
                                     "the back office (docs/audit.md)")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("verify", help="check every record against the chain; names each "
                                          "edited, removed, inserted or reordered record by "
                                          "number (exit 1), 0 when intact")
    _data_options(a)
    a.set_defaults(func=cmd_audit)
    a = actions.add_parser("export", help="every record with its check, as CSV or JSON; "
                                          "read-only, the terminal may run")
    a.add_argument("--format", choices=("csv", "json"), default="csv",
                   help="csv (a header row, UTF-8) or json (a list of objects); default csv")
    a.add_argument("--output", metavar="FILE", help="write to FILE (default: standard output)")
    _data_options(a)
    _mfa_options(a, "export")
    a.set_defaults(func=cmd_audit)

    # issue 17: provisioning (docs/key-ceremony.md)
    p = sub.add_parser("provision", help="set up a terminal from a provisioning file: IDs, "
                                         "host, supervisor, TR-31 key blocks, a trial sale "
                                         "(docs/key-ceremony.md)", allow_abbrev=False)
    p.add_argument("file", help="the provisioning file (TOML)")
    _data_options(p)
    p.add_argument("--restart", action="store_true",
                   help="forget the steps a stopped run of another file recorded")
    _mfa_options(p, "key_load")
    p.set_defaults(func=lambda a: __import__("tools.provision").provision.command(a))
    p = sub.add_parser("keys", help="the key block protection key (KBPK) and its ceremony "
                                    "(docs/key-ceremony.md)")
    kinds = p.add_subparsers(dest="kind", required=True)
    k = kinds.add_parser("kbpk", help="load the KBPK from custodians' components, or show it")
    actions = k.add_subparsers(dest="action", required=True)
    for action, text in (("load", "the key ceremony: 2 or 3 components (XOR), each typed "
                                  "unseen or read from a file, KCVs shown, sealed"),
                         ("status", "the KBPK's KCV and custodians (exit 1 when none)")):
        a = actions.add_parser(action, help=text, allow_abbrev=False)
        _data_options(a)
        if action == "load":
            a.add_argument("--components", type=int, choices=(2, 3), default=2,
                           help="how many custodians hold a component (default 2)")
            a.add_argument("--algorithm", choices=("aes", "tdes"), default="aes",
                           help="aes (TR-31 version D blocks, default) or tdes (version B)")
            a.add_argument("--custodian", action="append", metavar="NAME",
                           help="a custodian's name, in the order of the components")
            a.add_argument("--component-file", action="append", metavar="FILE",
                           help="a component on one line, in hex (default: typed unseen)")
            a.add_argument("--expect-kcv", metavar="KCV",
                           help="the KBPK's check value from the key's owner: refused "
                                "when the components make another")
            _mfa_options(a, "key_load")
        a.set_defaults(func=lambda a: __import__("tools.kbpk_cli").kbpk_cli.command(a))

    args = parser.parse_args(argv)
    args.argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
