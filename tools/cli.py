"""The `handpos` command: run the terminal, the simulator, or check a configuration."""
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


def _config_or_exit(path):
    return _or_exit(load_config, path, "refusing to start until the configuration is fixed")


def _profile_or_exit(name):
    return _or_exit(load_profile, name)


def cmd_run(args):
    config = _config_or_exit(config_path(args.config))
    profile = _profile_or_exit(args.board)
    from board import compose
    built = compose.build(profile, config)
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
    return 0


def start_hostsim(address, data_dir):
    """Start `handpos hostsim` beside the simulated terminal; returns (process, CA path)
    or (None, why)."""
    import socket
    import subprocess
    import time
    os.makedirs(data_dir, exist_ok=True)
    log = open(os.path.join(data_dir, "hostsim.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "tools", "hostsim", "--listen", address,
                             "--data", data_dir, "--quiet"], cwd=REPO, stdout=log, stderr=log)
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None, "it exited (see %s)" % os.path.join(data_dir, "hostsim.log")
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return proc, os.path.join(data_dir, "tls", "ca.pem")
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    return None, "it did not open %s in time" % address


def cmd_sim(args):
    from tools.sim import simulator as simmod
    if args.config:
        config = _config_or_exit(args.config)
    elif os.path.exists(SIM_CONFIG):
        config = _config_or_exit(SIM_CONFIG)
    else:
        config = schema.defaults()
    config["storage"]["data_dir"] = os.path.abspath(args.data)
    profile = _profile_or_exit(args.board)
    synced = {"auto": None, "yes": True, "no": False}[args.clock_synced]
    if not args.headless and not sys.stdin.isatty():
        sys.stderr.write("handpos sim: standard input is not a terminal; "
                         "use --headless --control PATH to drive it from a program\n")
        return 2
    hostsim = None
    proxy = None
    address = config["host"]["address"]
    if args.host == "auto" and address.split(":")[0] in ("127.0.0.1", "localhost"):
        hostsim, ca = start_hostsim(address, os.path.join(config["storage"]["data_dir"], "host"))
        if hostsim is None:
            sys.stderr.write("handpos sim: the host simulator did not start (%s); "
                             "the terminal runs without it\n" % ca)
        else:
            config["host"]["ca_file"] = ca
            # the terminal reaches it through a fault proxy, so that a person (key N)
            # or a test (control "network") can cut the network and bring it back
            from tools.host.faultproxy import FaultProxy
            proxy = FaultProxy(0, int(address.rsplit(":", 1)[1]))
            proxy.start()
            config["host"]["address"] = "127.0.0.1:%d" % proxy.port
    elif args.host == "off":
        config["host"]["address"] = ""
    pcscd = None
    chip_port = None
    if profile.get("chip") and args.chip == "auto":
        # a pcscd of the simulator's own, with only the Virtual PCD reader, on a
        # private socket: the chip reader driver goes through real PC/SC
        from tools.cards.vcard import PrivatePcscd
        try:
            pcscd = PrivatePcscd(os.path.join(config["storage"]["data_dir"], "pcscd"))
            pcscd.start()
            os.environ["PCSCLITE_CSOCK_NAME"] = pcscd.socket_path
            chip_port = pcscd.port
        except (RuntimeError, OSError) as exc:
            sys.stderr.write("handpos sim: no chip reader (%s)\n" % exc)
            pcscd = None
            profile.pop("chip", None)
    elif args.chip == "off":
        profile.pop("chip", None)
    sim = simmod.Simulator(profile, config, snapshot_dir=args.snapshot,
                           control_path=args.control, synced=synced,
                           auth_iterations=args.pin_iterations, chip_port=chip_port,
                           proxy=proxy)
    simmod.install_signal_handlers(sim)
    try:
        if args.headless:
            if args.control:
                sys.stdout.write("handpos sim: control socket at %s\n" % args.control)
                sys.stdout.flush()
            sim.run()
        else:
            simmod.run_interactive(sim)
    finally:
        sim.close()
        if hostsim is not None:
            hostsim.terminate()
            hostsim.wait(10)
        if pcscd is not None:
            pcscd.stop()
    return 0


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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
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
    p.add_argument("--config", help="configuration file (default config/sim.toml)")
    p.add_argument("--data", default=os.path.join(REPO, ".sim"), help="data directory (default .sim/)")
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

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
