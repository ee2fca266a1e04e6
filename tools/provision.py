"""`handpos provision FILE`: a terminal set up for service in one run (docs/key-ceremony.md).

The file (TOML) names the terminal and merchant IDs, the host and its CA, the QR
acquirer, the first supervisor, and carries the keys as TR-31 key blocks wrapped under
the key block protection key that the key ceremony sealed in this terminal
(`handpos keys kbpk load`, tools/kbpk.py). The run:

  check        the whole file: a line per problem, and nothing applied while any
               stands (every block is unwrapped and judged here, before any is loaded)
  data folder  the key root and key store (made on a fresh terminal, as its first start
               makes them), handpos.db
  config       the configuration file's settings, written whole (validated first)
  data key     into the key store (only while nothing is sealed under the old one)
  dukpt        the DUKPT initial key and KSN / initial key ID, as the sealed DUKPT state
  export keys  the merchant's queue export key and signing seed
  qr key       the QR acquirer's merchant key, sealed
  supervisor   the first supervisor with a one-time PIN (shown once; changed at login)
  echo         0800/0810 echo test (DE70 301) to the host
  test sale    a 0200 sale the host books as test (DE48 "TEST", docs/host-protocol.md),
               with the test PIN encrypted under the DUKPT key just loaded

Resumable: DATA/provision.progress (sealed like the keys: it names KCVs and a one-time
PIN's operator) records each step done, and, before a key is written, the key it is
about to write; a second run of the same file goes on from the first step not done. A
key is written whole or not at all (temporary file, fsync, rename), so a SIGKILL leaves
the old key or the new one, never half of one.
"""
import binascii
import hashlib
import json
import os
import socket
import sys
import time

from tools import kbpk as kbpk_mod
from tools import tr31

PROGRESS = "provision.progress"
STEPS = ("data folder", "configuration", "data key", "dukpt", "export keys", "qr key",
         "supervisor", "echo", "test sale")
TEST_PAN = "4111111111111111"         # the test Visa of tools/cards/stripes.py
TEST_EXPIRY = "3012"
TEST_PIN = b"1234"                    # every test card's PIN (docs/payments.md)
TRIAL_AMOUNT = 100                    # 1.00: the host simulator approves it
# files a data key seals or MACs: with any of them there, the data key stays
DATA_KEY_USERS = ("journal.db", "saf.db", "catalogue.db", "members.db",
                  os.path.join("keys", "mfa.sealed"))

SECTIONS = {
    "terminal": ("id", "merchant_id", "merchant_name", "merchant_address"),
    "host": ("address", "ca_file", "tls", "pin_security"),
    "qr": ("address", "ca_file", "mch_id", "key"),
    "supervisor": ("id", "name"),
    "keys": ("kbpk_kcv", "dukpt", "ksn", "initial_key_id", "data", "export", "export_sign"),
    "trial": ("amount",),
}
REQUIRED = (("terminal", "id"), ("terminal", "merchant_id"), ("host", "address"),
            ("host", "ca_file"), ("supervisor", "id"), ("keys", "kbpk_kcv"), ("keys", "dukpt"))


class Refused(Exception):
    def __init__(self, lines):
        Exception.__init__(self, lines[0] if lines else "")
        self.lines = list(lines)


# -- the file ---------------------------------------------------------------------------

def read_file(path):
    """(doc, raw bytes), or Refused."""
    import tomllib
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 20)
    except FileNotFoundError:
        raise Refused(["%s: no such file" % path])
    except OSError as exc:
        raise Refused(["%s: cannot be read: %s" % (path, exc.strerror)])
    try:
        return tomllib.loads(raw.decode("utf-8")), raw
    except (UnicodeError, tomllib.TOMLDecodeError) as exc:
        raise Refused(["%s: not a TOML provisioning file: %s" % (path, exc)])


def _shown(value):
    if isinstance(value, str) and len(value) > 24:
        return '"%s..."' % value[:16]
    return json.dumps(value, ensure_ascii=False)


def check(doc, path, kbpk, config_now):
    """Every problem of the file, one line each; and what it says, judged: {"settings":
    {(section, key): value}, "keys": {slot: (key, header)}, "ksn"/"ikid", "supervisor",
    "amount"}. Nothing is applied here."""
    from firmware.core import config as schema
    from firmware.security import auth
    problems = []

    def bad(section, key, value, why):
        problems.append("%s: %s.%s = %s: %s" % (path, section, key, _shown(value), why))

    base = os.path.dirname(os.path.abspath(path))
    for section in doc:
        if section not in SECTIONS:
            problems.append("%s: [%s]: not a provisioning section (known: %s)"
                            % (path, section, ", ".join(SECTIONS)))
        elif not isinstance(doc[section], dict):
            problems.append("%s: %s: must be a section [%s]" % (path, section, section))
        else:
            for key in doc[section]:
                if key not in SECTIONS[section]:
                    bad(section, key, doc[section][key], "not a setting of [%s] (known: %s)"
                        % (section, ", ".join(SECTIONS[section])))
    for section, key in REQUIRED:
        if not isinstance(doc.get(section), dict) or key not in doc[section]:
            problems.append("%s: %s.%s is missing" % (path, section, key))

    def get(section, key, default=None):
        sec = doc.get(section)
        return sec.get(key, default) if isinstance(sec, dict) else default

    settings = {}
    for section, key in (("terminal", "id"), ("terminal", "merchant_id"),
                         ("terminal", "merchant_name"), ("terminal", "merchant_address"),
                         ("host", "address"), ("host", "tls"), ("host", "pin_security"),
                         ("qr", "address"), ("qr", "mch_id")):
        value = get(section, key)
        if value is None:
            continue
        why = schema.SCHEMA[section][key][1](value)
        if why:
            bad(section, key, value, why)
        else:
            settings[(section, key)] = value
    for section in ("host", "qr"):
        ca = get(section, "ca_file")
        if ca is None:
            continue
        full = ca if not isinstance(ca, str) or os.path.isabs(ca) else os.path.join(base, ca)
        why = _ca_problem(full)
        if why:
            bad(section, "ca_file", ca, why)
        else:
            settings[(section, "ca_file")] = full
    if get("qr", "mch_id") is not None or get("qr", "key") is not None:
        settings[("qr", "enabled")] = True

    sup = get("supervisor", "id")
    if sup is not None and not (isinstance(sup, str) and auth.valid_id(sup)):
        bad("supervisor", "id", sup, "must be 1 to 6 digits, in quotes")
    name = get("supervisor", "name", "SUPERVISOR")
    if not (isinstance(name, str) and 0 < len(name) <= 16 and name.strip() == name):
        bad("supervisor", "name", name, "must be text of 1 to 16 characters")
    amount = get("trial", "amount", TRIAL_AMOUNT)
    if not (isinstance(amount, int) and not isinstance(amount, bool) and 1 <= amount <= 9999
            and amount % 100 in (0,) + tuple(n for n in range(1, 100) if n not in
                                             (5, 51, 54, 55, 91, 93, 97, 98, 99))):
        bad("trial", "amount", amount, "must be 1 to 9999 minor units, not one the host "
            "simulator declines or delays (ending in 05, 51, 54, 55, 91, 93, 97, 98, 99)")

    keys = {}
    want_kcv = get("keys", "kbpk_kcv")
    scheme = settings.get(("host", "pin_security"), config_now["host"]["pin_security"])
    if kbpk is None:
        problems.append("%s: keys: this terminal has no KBPK: hold the key ceremony first "
                        "(handpos keys kbpk load, docs/key-ceremony.md)" % path)
    elif want_kcv is not None:
        have = tr31.kcv(kbpk["key"], kbpk["algorithm"])
        if not isinstance(want_kcv, str) or not have.startswith(want_kcv.upper()) or \
                len(want_kcv) < 6:
            bad("keys", "kbpk_kcv", want_kcv, "the blocks were made for a KBPK of this check "
                "value, and this terminal's KBPK is %s: hold the ceremony with the right "
                "components, or ask for blocks under this KBPK" % have)
        else:
            slots = [("dukpt", "dukpt_aes" if scheme == "aes-dukpt" else "dukpt_tdes"),
                     ("data", "data"), ("export", "export"), ("export_sign", "export_sign")]
            if get("qr", "key") is not None:
                slots.append(("qr.key", "qr"))
            for field, slot in slots:
                section, key = field.split(".") if "." in field else ("keys", field)
                text = get(section, key)
                if text is None:
                    continue
                try:
                    keys[slot] = tr31.open_block(slot, text, kbpk["key"], kbpk["algorithm"])
                except tr31.BlockRefused as exc:
                    bad(section, key, text, "refused: %s" % exc)
    out = {"settings": settings, "keys": keys, "supervisor": sup, "name": name,
           "amount": amount, "scheme": scheme}
    dukpt = keys.get("dukpt_tdes") or keys.get("dukpt_aes")
    if dukpt is not None:
        try:
            if "dukpt_tdes" in keys:
                out["ksn"] = tr31.initial_ksn(dukpt[1], get("keys", "ksn"))
            else:
                out["ikid"] = tr31.initial_key_id(dukpt[1], get("keys", "initial_key_id"))
        except tr31.BlockRefused as exc:
            bad("keys", "dukpt", get("keys", "dukpt"), "refused: %s" % exc)
    if "qr" in keys:
        from drivers import keystore
        mch = get("qr", "mch_id") or config_now["qr"]["mch_id"]
        try:
            text = keys["qr"][0].decode("ascii")
        except UnicodeError:
            text = ""
        why = keystore.qr_key_problem(mch, text)
        if why:
            bad("qr", "key", get("qr", "key"), "refused: %s" % why)
        out["qr"] = (mch, text)
    if problems:
        raise Refused(problems)
    return out


def _ca_problem(path):
    if not isinstance(path, str) or not path:
        return "must be the path of the host's CA certificate (PEM)"
    try:
        from cryptography import x509
        with open(path, "rb") as f:
            x509.load_pem_x509_certificates(f.read())
    except FileNotFoundError:
        return "no such file"
    except (OSError, ValueError) as exc:
        return "not a PEM certificate (%s)" % exc
    return None


# -- the configuration file -------------------------------------------------------------

def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def set_toml(text, values):
    """text with each (section, key) set to value: the key's line replaced in its
    section, or added at the end of the section, or a new section at the end. The rest
    of the file (comments, order) is kept."""
    lines = text.splitlines()
    for (section, key), value in values.items():
        line = "%s = %s" % (key, _toml_value(value))
        start = None
        for i, raw in enumerate(lines):
            if raw.strip() == "[%s]" % section:
                start = i
                break
        if start is None:
            lines += ["", "[%s]" % section, line]
            continue
        end = len(lines)
        for i in range(start + 1, len(lines)):
            if lines[i].strip().startswith("["):
                end = i
                break
        for i in range(start + 1, end):
            if lines[i].split("=", 1)[0].strip() == key and "=" in lines[i]:
                lines[i] = line
                break
        else:
            at = end
            while at > start + 1 and not lines[at - 1].strip():
                at -= 1
            lines.insert(at, line)
    return "\n".join(lines) + "\n"


# -- progress ---------------------------------------------------------------------------

class Progress:
    """The steps done, sealed in DATA/provision.progress under the data folder's key
    root; written whole after every step."""

    def __init__(self, keys, folder, file_hash):
        from drivers.keystore import SealedFile
        self.sealed = SealedFile(os.path.join(folder, PROGRESS),
                                 keys.root.kek(b"handpos provision v1"), "provision progress")
        self.file_hash = file_hash
        self.doc = {"file": file_hash, "done": {}, "intent": {}}

    def load(self):
        from drivers.keystore import SealedMissing
        try:
            doc = json.loads(self.sealed.read().decode())
        except SealedMissing:
            return False
        self.doc = doc
        return True

    def done(self, step):
        return step in self.doc["done"]

    def mark(self, step, detail=None):
        self.doc["done"][step] = detail or {}
        self.doc["intent"].pop(step, None)
        self.sealed.write(json.dumps(self.doc, sort_keys=True).encode())

    def intend(self, step, what):
        self.doc["intent"][step] = what
        self.sealed.write(json.dumps(self.doc, sort_keys=True).encode())

    def intent(self, step):
        return self.doc["intent"].get(step)


def _hook(step):
    """Tests stop a run here (SIGKILL from outside) to prove it resumes: the step's
    name in $HANDPOS_PROVISION_PAUSE makes the run say so and wait."""
    if os.environ.get("HANDPOS_PROVISION_PAUSE") == step:
        sys.stdout.write("provision: paused at %s\n" % step)
        sys.stdout.flush()
        time.sleep(3600)


# -- the run ----------------------------------------------------------------------------

class Run:
    def __init__(self, args, config, config_file, profile, data_dir, out, say):
        self.args = args
        self.config = config
        self.config_file = config_file
        self.profile = profile
        self.data_dir = data_dir
        self.out = out
        self.say = say
        self.keys = None
        self.store = None

    def step(self, n, name, text):
        self.out("[%d/%d] %s: %s" % (n, len(STEPS), name, text))

    def open_store(self):
        if self.store is None:
            from drivers.store_sqlite import SQLiteStore
            from drivers import audittrail
            self.store = SQLiteStore(os.path.join(self.data_dir, "handpos.db"))
            self.store.attach_audit_chain(audittrail.open_chain(self.keys))
        return self.store

    def audit(self, event, detail, operator=""):
        try:
            self.open_store()._audit(event, operator, detail)
        except Exception as exc:        # the keys are in; the trail says what it can
            self.say("not in the audit trail: %s" % exc)

    def close(self):
        if self.store is not None:
            self.store.close()


def prepare_data(config, profile, data_dir, say):
    """The data folder with its key root and keys, as a first start makes them; the
    DataDir. Refused when its keys do not open."""
    from board import datadir
    cfg = dict(config)
    cfg["storage"] = dict(config["storage"], data_dir=data_dir)
    try:
        dd = datadir.prepare(profile, cfg, say)
    except datadir.StartRefused as exc:
        raise Refused(exc.problems)
    if dd.keys is None:
        raise Refused(["the terminal's keys do not open: %s" % dd.fault])
    return dd


def provision(args, config, config_file, profile, data_dir, out, say, mfa_gate):
    """The whole run; Refused with the lines to print."""
    doc, raw = read_file(args.file)
    dd = prepare_data(config, profile, data_dir, say)
    keys = dd.keys
    try:
        kbpk = kbpk_mod.read(keys)
    except Exception as exc:
        raise Refused([str(exc)])
    plan = check(doc, args.file, kbpk, config)
    progress = Progress(keys, data_dir, hashlib.sha256(raw).hexdigest())
    resumed = progress.load()
    if resumed and args.restart:
        progress.doc = {"file": progress.file_hash, "done": {}, "intent": progress.doc["intent"]}
        resumed = False
    if resumed and progress.doc["file"] != progress.file_hash and \
            progress.done("test sale"):
        # the last run finished: this file is a new provisioning (a later visit); the
        # key loads still refuse what would repeat a used DUKPT key
        progress.doc = {"file": progress.file_hash, "done": {}, "intent": {}}
        resumed = False
    if resumed and progress.doc["file"] != progress.file_hash:
        raise Refused(["a provisioning run of another file stopped here (after: %s): run that "
                       "file again to finish it, or give --restart to start this one"
                       % (", ".join(progress.doc["done"]) or "nothing")])
    run = Run(args, config, config_file, profile, data_dir, out, say)
    run.keys = keys
    try:
        store = run.open_store()
        # a terminal in service already has people who can give a second factor: key
        # loading asks it ([mfa] key_load); a new one has nobody yet (docs/key-ceremony.md)
        ours = progress.done("supervisor")
        if store.operator_count() and not ours:
            refused = mfa_gate(keys)
            if refused:
                raise Refused([])
        if resumed:
            out("provision: resuming %s: done before: %s"
                % (args.file, ", ".join(progress.doc["done"]) or "nothing"))
        run.step(1, "data folder", "%s, keys under %s" % (data_dir, dd.root.detail()))
        if not progress.done("data folder"):
            progress.mark("data folder")
        _configuration(run, plan, progress)
        _data_key(run, plan, progress)
        _dukpt(run, plan, progress)
        _export_keys(run, plan, progress)
        _qr_key(run, plan, progress)
        _supervisor(run, plan, progress, dd)
        _trial(run, plan, progress)
        run.audit("provisioned", "terminal %s merchant %s" % (
            plan["settings"].get(("terminal", "id"), ""),
            plan["settings"].get(("terminal", "merchant_id"), "")))
    finally:
        run.close()
    return plan


def _configuration(run, plan, progress):
    from board.configfile import ConfigError, load_config
    from drivers.keystore import write_atomic
    n = STEPS.index("configuration") + 1
    if progress.done("configuration"):
        run.step(n, "configuration", "done before (%s)" % run.config_file)
        return
    values = dict(plan["settings"])
    values[("storage", "data_dir")] = run.data_dir
    try:
        with open(run.config_file, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise Refused(["%s: cannot be read: %s" % (run.config_file, exc.strerror)])
    new = set_toml(text, values)
    tmp = run.config_file + ".provision-check"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(new)
    try:
        run.config_now = load_config(tmp)
    except ConfigError as exc:
        raise Refused(exc.problems + ["nothing was written into %s" % run.config_file])
    finally:
        os.unlink(tmp)
    write_atomic(run.config_file, new.encode("utf-8"), part="config", what=run.config_file)
    os.chmod(run.config_file, 0o644)        # a configuration holds no secret: readable
    progress.mark("configuration")
    run.audit("provision_config", "; ".join("%s.%s" % k for k in sorted(plan["settings"])))
    run.step(n, "configuration", "%d settings written into %s" % (len(values), run.config_file))


def _data_key(run, plan, progress):
    n = STEPS.index("data key") + 1
    got = plan["keys"].get("data")
    if got is None:
        run.step(n, "data key", "none in the file: the terminal's own stays")
        return
    key, h = got
    shown = "KCV %s" % tr31.key_kcv(key, h.algorithm)
    if progress.done("data key") or run.keys.key("data") == key:
        if not progress.done("data key"):
            progress.mark("data key", {"kcv": shown})
        run.step(n, "data key", "loaded before (%s)" % shown)
        return
    used = [name for name in DATA_KEY_USERS if os.path.lexists(os.path.join(run.data_dir, name))]
    if used:
        raise Refused(["refused: keys.data: this terminal already sealed data under its data key "
                       "(%s): a terminal in service keeps it (a new one would make that data "
                       "unreadable); take the data key out of the file, or provision a "
                       "terminal without data" % ", ".join(used)])
    run.keys.replace("data", key)
    progress.mark("data key", {"kcv": shown})
    run.audit("key_loaded", "data key %s" % shown)
    run.step(n, "data key", "loaded (%s)" % shown)


def _dukpt_state_id(state):
    """The key-identifying part of a sealed DUKPT state's KSN (the counter cleared)."""
    ksn = state.get("ksn", "")
    if state.get("kind") == "aes-dukpt":
        return ksn[:16]
    from firmware.security import dukpt
    return dukpt.ksn_hex(dukpt.ksn_with_counter(ksn, 0))


def _dukpt(run, plan, progress):
    from board.compose import DUKPT_FILE, DUKPT_LOADED
    from drivers.keystore import SealedMissing
    n = STEPS.index("dukpt") + 1
    slot = "dukpt_aes" if "dukpt_aes" in plan["keys"] else "dukpt_tdes"
    key, h = plan["keys"][slot]
    if slot == "dukpt_tdes":
        from firmware.security import dukpt
        ident = dukpt.ksn_hex(dukpt.ksn_with_counter(plan["ksn"], 0))
        what = "TDES DUKPT initial key, initial KSN %s" % plan["ksn"]
    else:
        ident = plan["ikid"]
        what = "AES DUKPT initial key (%s), initial key ID %s" % (
            {16: "AES-128", 24: "AES-192", 32: "AES-256"}[len(key)], plan["ikid"])
    shown = "KCV %s" % tr31.key_kcv(key, h.algorithm)
    if progress.done("dukpt"):
        run.step(n, "dukpt", "loaded before (%s, %s)" % (what, shown))
        return
    sealed = run.keys.sealed(DUKPT_FILE, "dukpt", "dukpt state", part="pinkey")
    try:
        state = json.loads(sealed.read().decode())
    except SealedMissing:
        state = None
    except Exception:
        state = None                    # a damaged state: the E-53 repair loads a new key
    if state is not None and _dukpt_state_id(state) == ident:
        if progress.intent("dukpt") == ident:
            # written by this run before a stop: the key is whole (written atomically)
            progress.mark("dukpt", {"kcv": shown, "id": ident})
            run.step(n, "dukpt", "loaded before the stop (%s, %s)" % (what, shown))
            return
        raise Refused(["refused: keys.dukpt: this initial key (%s) was loaded on this terminal "
                       "before and its KSNs have been used: loading it again would repeat "
                       "them; ask the acquirer for a new KSN" % ident])
    progress.intend("dukpt", ident)
    _hook("dukpt")

    def save(new_state):
        sealed.write(json.dumps(new_state).encode())
    buf = bytearray(key)
    try:
        if slot == "dukpt_tdes":
            from firmware.security import dukpt
            dukpt.DukptTerminal(buf, bytes.fromhex(plan["ksn"]), save)
        else:
            from firmware.security import dukpt_aes
            dukpt_aes.AesDukptTerminal(bytes(buf), bytes.fromhex(plan["ikid"]), save)
    finally:
        for i in range(len(buf)):
            buf[i] = 0
    run.open_store().set_setting(DUKPT_LOADED, "1")
    progress.mark("dukpt", {"kcv": shown, "id": ident})
    run.audit("key_loaded", "%s %s" % (what, shown))
    run.step(n, "dukpt", "loaded (%s, %s)" % (what, shown))


def _export_keys(run, plan, progress):
    from board.export import KEY_FILES
    from drivers.keystore import write_atomic
    n = STEPS.index("export keys") + 1
    got = [(name, plan["keys"].get(slot)) for name, slot in
           ((KEY_FILES[0][0], "export"), (KEY_FILES[1][0], "export_sign"))]
    if not any(k for _, k in got):
        run.step(n, "export keys", "none in the file")
        return
    shown = ", ".join("%s %s" % (name, tr31.key_kcv(k[0], k[1].algorithm))
                      for name, k in got if k)
    if not progress.done("export keys"):
        for name, k in got:
            if k:
                write_atomic(os.path.join(run.keys.folder, name), bytes(k[0]))
        progress.mark("export keys", {"kcv": shown})
        run.audit("key_loaded", "export keys %s" % shown)
    run.step(n, "export keys", "loaded (%s)" % shown)


def _qr_key(run, plan, progress):
    from drivers import keystore
    n = STEPS.index("qr key") + 1
    if "qr" not in plan:
        run.step(n, "qr key", "none in the file")
        return
    mch, text = plan["qr"]
    shown = "mch_id %s, key %s (SHA-256)" % (mch, keystore.qr_fingerprint(text))
    if not progress.done("qr key"):
        keystore.write_qr_key(run.keys, mch, text,
                              time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        progress.mark("qr key", {"kcv": shown})
        run.audit("qr_key_loaded", shown)
    run.step(n, "qr key", "loaded (%s)" % shown)


def _one_time_pin(op_id):
    from firmware.security import auth
    while True:
        pin = "%06d" % (int.from_bytes(os.urandom(4), "big") % 1000000)
        if not auth.weak_pin(pin, op_id):
            return pin


def _supervisor(run, plan, progress, dd):
    from board import datadir
    from board.compose import pin_hasher
    from firmware.security.auth import Auth
    n = STEPS.index("supervisor") + 1
    op_id = plan["supervisor"]
    if progress.done("supervisor"):
        run.step(n, "supervisor", "%s made before (its one-time PIN was shown then)" % op_id)
        return
    store = run.open_store()
    auth = Auth(store, lambda: int(time.monotonic() * 1000), os.urandom,
                hasher=pin_hasher(dd), utc=lambda: time.gmtime()[:6])
    pin = _one_time_pin(op_id)
    existing = store.get_operator(op_id)
    if existing is not None and existing["role"] != "supervisor":
        raise Refused(["refused: supervisor.id: operator %s exists and is a %s"
                       % (op_id, existing["role"])])
    if existing is not None and progress.intent("supervisor") != op_id:
        # a terminal provisioned before (a later visit): the supervisor's PIN is theirs
        progress.mark("supervisor", {"id": op_id, "kept": True})
        run.step(n, "supervisor", "%s exists: kept, with their own PIN" % op_id)
        return
    progress.intend("supervisor", op_id)
    if existing is None:
        auth.create(op_id, plan["name"], "supervisor", pin, must_change=True)
    else:                               # made by a run stopped before it showed the PIN
        auth.set_pin(op_id, pin, must_change="reset")
    dd.set_state(datadir.IN_SERVICE, run.config_now["terminal"]["id"]
                 if hasattr(run, "config_now") else "")
    run.audit("operator_added", "supervisor %s (provisioning, one-time PIN)" % op_id)
    run.step(n, "supervisor", "%s (%s), one-time PIN %s: give it to the supervisor alone; "
             "the first login must change it" % (op_id, plan["name"], pin))
    progress.mark("supervisor", {"id": op_id})


# -- the trial transaction --------------------------------------------------------------

class Host:
    """A blocking ISO 8583 exchange with the host: the provisioning tool is no event
    loop (the terminal's link, drivers/hostlink.py, is)."""

    def __init__(self, config, timeout):
        from drivers.hostlink import make_client_context
        host, port = config["host"]["address"].rsplit(":", 1)
        self.timeout = timeout
        raw = socket.create_connection((host, int(port)), timeout=timeout)
        if config["host"]["tls"]:
            ctx = make_client_context(config["host"]["ca_file"])
            self.sock = ctx.wrap_socket(raw, server_hostname=host)
        else:
            self.sock = raw
        self.sock.settimeout(timeout)

    def exchange(self, msg):
        from drivers.hostlink import frame
        from drivers.iso8583_spec import decode, encode
        self.sock.sendall(frame(encode(msg)))
        head = self._read(2)
        return decode(self._read(int.from_bytes(head, "big")))

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise OSError("the host closed the connection")
            data += chunk
        return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _trial(run, plan, progress):
    from board.compose import DUKPT_FILE
    from drivers.journal_sqlite import SQLiteJournal
    from drivers.sqlite_durable import mac_key
    from firmware.payments import hostmsg
    from firmware.core.money import numeric
    config = getattr(run, "config_now", None)
    if config is None:
        from board.configfile import load_config
        config = load_config(run.config_file)
    n_echo, n_sale = STEPS.index("echo") + 1, STEPS.index("test sale") + 1
    if progress.done("echo") and progress.done("test sale"):
        run.step(n_sale, "test sale", "done before (%s)" % progress.doc["done"]["test sale"].get(
            "rrn", ""))
        return
    # STANs from the journal's counter, as the terminal takes them: never one it reuses
    journal = SQLiteJournal(os.path.join(run.data_dir, "journal.db"),
                            mac_key(run.keys.key("data"), "journal"))
    try:
        def stan():
            return "%06d" % journal.next_counter("stan", 999999)
        utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        where = config["host"]["address"]
        try:
            host = Host(config, config["host"]["response_timeout_s"])
        except (OSError, ValueError) as exc:
            raise Refused(["trial: the host %s cannot be reached (%s): check [host] address, "
                           "ca_file and the network; the keys are loaded: run provision again "
                           "to do the trial" % (where, exc)])
        try:
            echo = hostmsg.network_request(config, stan(), utc, "301")
            reply = _ask(host, echo, where)
            if reply.get("39") != "00":
                raise Refused(["trial: the host answered the echo test with %s: ask the "
                               "acquirer whether terminal %s is set up"
                               % (reply.get("39"), config["terminal"]["id"])])
            progress.mark("echo")
            run.step(n_echo, "echo", "0800/0810 with %s: 00" % where)
            _hook("test sale")
            msg = _test_sale(run, plan, config, stan(), utc, DUKPT_FILE, hostmsg, numeric)
            reply = _ask(host, msg, where)
        finally:
            host.close()
    finally:
        journal.close()
    code = reply.get("39")
    if code == "55":
        raise Refused(["trial: the host could not verify the test PIN (55): the DUKPT key "
                       "loaded is not the one the host derives from its BDK: compare the "
                       "key's KCV with the acquirer's"])
    if code != "00":
        raise Refused(["trial: the host declined the test sale (%s)" % code])
    if reply.get("48") != hostmsg_test_marker():
        raise Refused(["trial: the host approved the test sale (RRN %s) but did not mark it "
                       "as test (no DE48 TEST in its answer): ask the acquirer to reverse it"
                       % reply.get("37")])
    progress.mark("test sale", {"rrn": reply.get("37", ""), "stan": msg["11"]})
    run.audit("provision_trial", "echo 00, test sale %s RRN %s (test, not settled)"
              % (msg["4"], reply.get("37", "")))
    run.step(n_sale, "test sale", "approved as test (RRN %s, not in the settlement totals)"
             % reply.get("37", ""))


def hostmsg_test_marker():
    return "TEST"


def _ask(host, msg, where):
    from firmware.payments import hostmsg
    try:
        reply = host.exchange(msg)
    except (OSError, ValueError) as exc:
        raise Refused(["trial: no answer from the host %s to the %s (%s)"
                       % (where, msg["t"], exc)])
    why = hostmsg.check_response(msg, reply)
    if why:
        raise Refused(["trial: the host's answer to the %s is not one: %s" % (msg["t"], why)])
    return reply


def _test_sale(run, plan, config, stan, utc, dukpt_file, hostmsg, numeric):
    """0200 DE3 000000 with DE48 TEST: a keyed test card with the test PIN encrypted under
    the DUKPT key just loaded (the state saved before the key is used, as at a sale)."""
    sealed = run.keys.sealed(dukpt_file, "dukpt", "dukpt state", part="pinkey")

    def save(state):
        sealed.write(json.dumps(state).encode())
    state = json.loads(sealed.read().decode())
    pin = bytearray(TEST_PIN)
    if state.get("kind") == "aes-dukpt":
        from firmware.security import dukpt_aes
        key = dukpt_aes.AesDukptTerminal.from_state(state, save)
    else:
        from firmware.security import dukpt
        key = dukpt.DukptTerminal.from_state(state, save)
    try:
        ksn, block = key.encrypt_pin(pin, TEST_PAN)
    finally:
        for i in range(len(pin)):
            pin[i] = 0
    local = time.localtime()[:6]
    msg = {"t": "0200", "3": hostmsg.PROC_SALE, "4": hostmsg.amount12(plan["amount"]),
           "7": hostmsg.de7(utc), "11": stan}
    msg["12"], msg["13"] = hostmsg.local_fields(local)
    msg.update({"22": hostmsg.ENTRY_MODES["manual"] + "1", "25": "00",
                "41": config["terminal"]["id"], "42": config["terminal"]["merchant_id"],
                "49": numeric(config["money"]["currency"]), "48": hostmsg_test_marker()})
    msg.update(hostmsg.card_fields(pan=TEST_PAN, expiry=TEST_EXPIRY))
    msg.update(hostmsg.pin_fields(binascii.hexlify(bytes(ksn)).decode().upper(),
                                  binascii.hexlify(bytes(block)).decode().upper()))
    return msg


# -- the command ------------------------------------------------------------------------

def _say(line):
    sys.stderr.write("handpos provision: " + line + "\n")
    sys.stderr.flush()


def _out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def tool_setup(args, say, nothing, command):
    """(config, config file to write, profile, data_dir) of a provisioning tool, or None
    after one line. --config FILE: that file is the terminal's configuration and gets
    the settings; --data DIR alone: a simulator's folder, whose configuration is made
    beside it as DIR.toml from config/sim.toml (start it: handpos sim --config DIR.toml)."""
    from tools import cli
    from board.configfile import ConfigError, config_path, load_config, load_profile
    os.umask(0o077)
    if args.data and not args.config and not os.environ.get("HANDPOS_CONFIG"):
        data_dir = os.path.abspath(args.data)
        config_file = data_dir.rstrip("/") + ".toml"
        if not os.path.exists(config_file):
            with open(cli.SIM_CONFIG, "r", encoding="utf-8") as f:
                text = f.read()
            # no host until the provisioning file names one
            text = set_toml(text, {("storage", "data_dir"): data_dir,
                                   ("host", "address"): "", ("host", "ca_file"): ""})
            fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        board = args.board or "sim"
    else:
        config_file = config_path(args.config)
        board = args.board or "pizero2w"
    try:
        config = load_config(config_file)
        profile = load_profile(board)
    except ConfigError as exc:
        for line in exc.problems:
            say(line)
        say("refused: fix the configuration first; %s" % nothing)
        return None
    if not args.data:
        data_dir = config["storage"]["data_dir"]
        if not os.path.isabs(data_dir):
            data_dir = os.path.join(cli.REPO, data_dir)
        data_dir = os.path.abspath(data_dir)
    if os.path.isdir(data_dir) and os.stat(data_dir).st_uid != os.geteuid():
        say("refused: the data directory %s belongs to uid %d, and this is uid %d: run it as "
            "the terminal's user (sudo -u handpos handpos %s ...); %s"
            % (data_dir, os.stat(data_dir).st_uid, os.geteuid(), command, nothing))
        return None
    return config, config_file, profile, data_dir


def command(args):
    """`handpos provision FILE`: exit 0 provisioned, 2 refused (one line per problem)."""
    from tools import cli
    nothing = "nothing was applied"
    found = tool_setup(args, _say, nothing, "provision")
    if found is None:
        return 2
    config, config_file, profile, data_dir = found
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    held, why = cli._hold_stopped(data_dir)
    if why:
        _say("refused: %s; %s" % (why, nothing))
        return 2

    def gate(keys):
        return cli._mfa_gate(args, config, profile, data_dir, "key_load", "provision", _say,
                             nothing, keys=keys, audit=True)
    try:
        provision(args, config, config_file, profile, data_dir, _out, _say, gate)
    except Refused as exc:
        for line in exc.lines:
            _say(line)
        return 2
    finally:
        for lock in held:
            lock.close()
    # a simulator's folder: its host is the one the trial sale just reached, already
    # running, so the simulator must not start a host simulator of its own there
    _out("provision: terminal provisioned; start it%s"
         % (" with: handpos sim --config %s --host external" % config_file
            if config_file.endswith(os.path.basename(data_dir) + ".toml") else ""))
    return 0
