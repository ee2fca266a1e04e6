"""The data folder at start: its modes, whether this terminal ever had data, its keys.

Three questions are answered here before any database is opened:

- Is the folder private? It must be 0700 and everything in it 0600 (folders 0700),
  owned by the user handpos runs as. Anything else refuses the start with one line per
  file naming the fix (StartRefused): a card reader's world-readable database is not
  something to run on and fix later.
- Did this terminal ever have data? Only a terminal that never had any may offer the
  first run ("create a supervisor"). The answer is kept outside the databases, in
  DATA/terminal.state, so a deleted or damaged handpos.db is a fault, never a new
  terminal that anyone can make themselves supervisor of.
- Do its keys open? The device key root (board profile [keyroot], drivers/keyroot.py)
  unwraps DATA/keys/keys.wrapped (drivers/keystore.py). A root or keys that cannot be
  used are a storage fault of the part "keys": service stops with a technician message.
"""
import json
import os
import time

from board.configfile import ConfigError
from drivers import keyroot
from drivers.keystore import KeyStore, KeyStoreError, check_private, write_atomic
from firmware.core.store import CORRUPT, IO, StorageFault

STATE_FILE = "terminal.state"
DATABASES = ("handpos.db", "journal.db", "saf.db")
NEW = "new"                     # keys made, no supervisor yet: the first run may go on
IN_SERVICE = "in service"       # a supervisor exists: an empty store is now a fault


class StartRefused(ConfigError):
    """The terminal will not start; problems are the lines to print (as for a bad
    configuration: `handpos run` and `handpos sim` print them and exit 2)."""


def private_tree_problems(folder, limit=10):
    """One line per file or folder under folder (itself included) that is not private."""
    problems = []
    for base, dirs, files in os.walk(folder):
        links = [d for d in dirs if os.path.islink(os.path.join(base, d))]
        for path in [base] + [os.path.join(base, n) for n in sorted(links) + sorted(files)]:
            try:
                problem = check_private(path)
            except FileNotFoundError:
                continue            # gone meanwhile (a temporary file)
            if problem:
                problems.append(problem)
                if len(problems) == limit:
                    problems.append("... and maybe more: fix these and start again")
                    return problems
    return problems


def make_private(folder):
    """chmod 700 every folder and 600 every file under folder that others may use;
    how many were changed. For the simulator's own data only: a terminal refuses."""
    import stat
    changed = 0
    for base, dirs, files in os.walk(folder):
        for path, want in [(base, 0o700)] + [(os.path.join(base, n), 0o600) for n in files]:
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
                os.chmod(path, stat.S_IMODE(st.st_mode) & want)
                changed += 1
    return changed


class DataDir:
    """What start found: .keys (KeyStore or None), .fault (StorageFault or None),
    .state (NEW or IN_SERVICE), .root (the key root or None)."""

    def __init__(self, folder):
        self.folder = folder
        self.keys = None
        self.fault = None
        self.root = None
        self.state = None
        self.state_path = os.path.join(folder, STATE_FILE)

    def had_data(self):
        """Anything a terminal in service leaves behind."""
        names = [STATE_FILE] + list(DATABASES) + [os.path.join("keys", n) for n in
                                                  ("keys.wrapped", "data.key", "dukpt.state")]
        return any(os.path.lexists(os.path.join(self.folder, n)) for n in names)

    def _read_state(self):
        try:
            with open(self.state_path, "rb") as f:
                return json.loads(f.read().decode()).get("state")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, UnicodeError, AttributeError):
            return "damaged"

    def set_state(self, state, tid=""):
        """Record NEW or IN_SERVICE (atomically; a failure leaves the old one)."""
        doc = {"state": state, "tid": tid,
               "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_atomic(self.state_path, json.dumps(doc).encode() + b"\n", part="store",
                     what=self.state_path)
        self.state = state


def prepare(profile, config, console):
    """Make the data folder private, find out whether it had data, open its keys.

    Raises StartRefused for a folder or file others may read. Key trouble does not
    raise: it is .fault, for the terminal to show."""
    folder = config["storage"]["data_dir"]
    os.umask(0o077)                 # every file from here on: 0600, folders 0700
    dd = DataDir(folder)
    try:
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700)
    except OSError as exc:          # a card that takes no folder: the storage fault shows
        console("data folder %s cannot be made (%s): check the SD card" % (folder, exc.strerror))
        dd.fault = KeyStoreError(IO, "data folder %s: %s" % (folder, exc.strerror), part="store")
        return dd
    problems = private_tree_problems(folder)
    if problems:
        raise StartRefused(problems)
    fresh = not dd.had_data()
    dd.state = dd._read_state()
    keys = KeyStore(os.path.join(folder, "keys"), None)
    upgrading = not os.path.lexists(keys.path) and keys.exists()   # a clear data.key
    try:
        dd.root = keyroot.open_root(profile.get("keyroot"), folder, create=fresh or upgrading)
        keys.root = dd.root
        dd.keys = keys.open(create=fresh)
        if keys.migrated:
            console("keys: the clear data key was wrapped under the key root (%s) and "
                    "removed" % dd.root.detail())
    except keyroot.KeyRootError as exc:
        console("E-43 key root: %s" % exc)
        dd.fault = KeyStoreError(CORRUPT, str(exc))
        dd.keys = None
    except StorageFault as exc:
        from firmware.core.store import fault_code
        console("%s keys: %s" % (fault_code(exc), exc))
        dd.fault = exc if isinstance(exc, KeyStoreError) else KeyStoreError(exc.kind, str(exc))
        dd.keys = None
    if fresh:
        _record(dd, NEW, config, console)
    elif dd.state not in (NEW, IN_SERVICE):
        # an older release, or a state file lost or damaged: settled by settle_state()
        # once the store is open (a supervisor there: in service)
        console("data folder: %s is %s" % (dd.state_path, "missing" if dd.state is None
                                            else "damaged"))
        dd.state = None
    return dd


def _record(dd, state, config, console):
    try:
        dd.set_state(state, config["terminal"]["id"])
    except StorageFault as exc:
        console("data folder: %s" % exc)
        if dd.fault is None:
            dd.fault = exc


def settle_state(dd, store, config, console):
    """A data folder without a state (an older release's, or one whose state file was
    lost): in service when its store has operators; else still new, and the first run
    then also needs an empty journal and queue (first_run_allowed)."""
    if dd.state is not None or dd.keys is None:
        return
    try:
        state = IN_SERVICE if store.operator_count() > 0 else NEW
    except StorageFault:
        return                      # the store's fault is shown; decided at a later start
    console("data folder: this terminal is %s" % state)
    _record(dd, state, config, console)


def first_run_allowed(dd, journal, queue):
    """The first run is offered only to a terminal that never had data: its state file
    says NEW (made at its first start, before any database) and its journal and queue
    are empty."""
    if dd is None:
        return True
    if dd.state != NEW:
        return False
    for db, ask in ((journal, "last"), (queue, "records")):
        try:
            if getattr(db, ask)():
                return False
        except StorageFault:
            return False
    return True


def open_keys(profile, folder):
    """The keys of a terminal that has them, for a tool run beside it (the queue
    import): never made here. Raises KeyStoreError saying what is missing or wrong."""
    keys = KeyStore(os.path.join(folder, "keys"), None)
    if not keys.exists():
        raise KeyStoreError(CORRUPT, "this terminal has no keys (%s): start the terminal once "
                            "so that it makes them, stop it, then try again" % keys.path)
    try:
        keys.root = keyroot.open_root(profile.get("keyroot"), folder)
        return keys.open()
    except keyroot.KeyRootError as exc:
        raise KeyStoreError(CORRUPT, str(exc))
