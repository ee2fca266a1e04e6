"""The technician's hooks the composition root hands the terminal (issue 17):

  term.network        drivers/network.NmcliNetwork from the profile's [network] table:
                      nmcli = "nmcli" (the device's, the default) or a path, or "sim":
                      the simulator's fake nmcli (tools/sim/fake_nmcli.py), put on the
                      driver's PATH by the simulator (transports["nmcli_path"]); the
                      probe uses the host link's TLS context
  term.apply_host     a host address set on the terminal (firmware/flows/network.py) to
                      the running host link: its next connection goes there
  term.factory_wipe   the factory reset's wipe (firmware/flows/factory_reset.py)
  term.restart        the application's restart: the loop stops, `handpos run` exits and
                      systemd (Restart=always) starts it again
  term.mask_text      drivers/logmask.mask_pans, for what leaves in a report

A host address a technician set (store setting host.address) replaces the
configuration's at start (host_override), so the host link is built for it.
"""
import os

from drivers import logmask
from drivers.keystore import _shred    # the overwrite-then-unlink the key store uses

HOST_SETTING = "host.address"
LOCKS = ("sim.lock", "run.lock")        # held by the running process: left in place


def host_override(store, config, console):
    """The host address a technician set on the terminal, over the configuration's."""
    try:
        address = store.get_setting(HOST_SETTING)
    except Exception:           # the store's own fault is shown elsewhere
        return
    if address and address != config["host"]["address"]:
        console("host: %s (set on the terminal; the configuration says %s)"
                % (address, config["host"]["address"] or "none"))
        config["host"]["address"] = address


def build_network(b, profile, config, tr, console):
    from drivers import network
    spec = profile.get("network") or {}
    program = spec.get("nmcli", "nmcli")
    env = None
    if program == "sim":
        folder = tr.get("nmcli_path")
        if folder is None:
            console("network: the sim profile's fake nmcli was not set up: no network settings")
            return None
        env = network.nmcli_env(folder)
        program = "nmcli"
    ctx = None
    host = config["host"]
    if host["address"] and host["tls"] and host["ca_file"]:
        try:
            from drivers.hostlink import make_client_context
            ctx = make_client_context(host["ca_file"])
        except Exception as exc:        # the host link says so too
            console("network: the host's CA: %s" % exc)
    runner = network.NmcliRunner(b.reactor, program, env)
    b.network = network.NmcliNetwork(b.reactor, runner, ctx)
    return b.network


def attach(b, profile, config, tr, console):
    """Everything above onto b.terminal."""
    term = b.terminal
    term.network = build_network(b, profile, config, tr, console)
    term.apply_host = lambda address: apply_host(b, address)
    term.factory_wipe = lambda who: wipe(b, config, console, who)
    term.restart = b.reactor.stop
    term.mask_text = logmask.mask_pans


def apply_host(b, address):
    """True when the running host link now goes to address (its open connection
    closed); False when there is none (the next start builds it)."""
    link = b.host
    if link is None:
        return False
    host, port = address.rsplit(":", 1)
    link.host, link.port = host, int(port)
    link.server_hostname = host
    link.close("host address changed")
    return True


def wipe(b, config, console, who):
    """Close every database, then overwrite and remove every file of the data folder
    (the keys with them); the folder itself stays, empty (0700). How many files went."""
    folder = config["storage"]["data_dir"]
    console("factory reset by %s: wiping %s (the key root is kept)" % (who, folder))
    if getattr(b, "network", None) is not None:
        b.network.close()
    if b.host is not None:
        b.host.close("factory reset")
    for db in (b.queue, b.journal, b.catalogue, b.members, b.store):
        close = getattr(db, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:
                console("factory reset: closing %r: %s" % (db, exc))
    count = 0
    for base, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            path = os.path.join(base, name)
            if base == folder and name in LOCKS:
                continue
            if os.path.islink(path):
                os.unlink(path)
            else:
                _shred(path)
            count += 1
        for name in dirs:
            try:
                os.rmdir(os.path.join(base, name))
            except OSError as exc:
                console("factory reset: %s: %s" % (os.path.join(base, name), exc.strerror))
    console("factory reset: %d files overwritten and removed; the terminal starts as new"
            % count)
    return count
