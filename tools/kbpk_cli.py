"""`handpos keys kbpk load|status`: the key ceremony on the command line (the ceremony
itself, the KBPK's sealing and reading are tools/kbpk.py's; the data folder's setup is
tools/provision.py's, which reads the KBPK too: this module sits above both)."""
import os
import sys

from tools import kbpk, provision, tr31


def _say(line):
    sys.stderr.write("handpos keys: " + line + "\n")
    sys.stderr.flush()


def _out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def command(args):
    """`handpos keys kbpk load|status`."""
    from tools import cli
    nothing = "no KBPK was loaded" if args.action == "load" else "nothing was read"
    found = provision.tool_setup(args, _say, nothing, "keys kbpk " + args.action)
    if found is None:
        return 2
    config, _, profile, data_dir = found
    if args.action == "status":
        if not os.path.isdir(data_dir):
            _out("handpos keys: no KBPK: no data folder %s" % data_dir)
            return 1
        keys = cli._open_tool_keys(profile, data_dir, _say, nothing)
        if keys is None:
            return 2
        try:
            doc = kbpk.read(keys)
        except Exception as exc:
            _say("damaged: %s" % exc)
            return 2
        if doc is None:
            _out("handpos keys: no KBPK loaded: hold the key ceremony (handpos keys kbpk load)")
            return 1
        _out("handpos keys: KBPK %s, KCV %s, from %d components (%s), loaded %s"
             % (doc["algorithm"].upper(), doc["kcv"], len(doc["custodians"]),
                ", ".join(doc["custodians"]), doc["loaded_utc"]))
        return 0
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    held, why = cli._hold_stopped(data_dir)
    if why:
        _say("refused: %s; %s" % (why, nothing))
        return 2
    try:
        try:
            dd = provision.prepare_data(config, profile, data_dir, _say)
        except provision.Refused as exc:
            for line in exc.lines:
                _say("refused: %s" % line)
            return 2
        keys = dd.keys
        store_path = os.path.join(data_dir, "handpos.db")
        if os.path.exists(store_path):
            from drivers.store_sqlite import SQLiteStore
            store = SQLiteStore(store_path)
            try:
                people = store.operator_count()
            finally:
                store.close()
            if people:
                refused = cli._mfa_gate(args, config, profile, data_dir, "key_load",
                                        "keys kbpk load", _say, nothing, keys=keys, audit=True)
                if refused:
                    return refused
        custodians = list(args.custodian or [])
        if len(custodians) > args.components:
            _say("refused: %d custodians named for %d components; %s"
                 % (len(custodians), args.components, nothing))
            return 2
        if len(args.component_file or []) > args.components:
            _say("refused: %d component files for %d components; %s"
                 % (len(args.component_file), args.components, nothing))
            return 2
        _out("key ceremony: %d custodians, each with one component of an %s KBPK; "
             "each custodian types their own, unseen by the others"
             % (args.components, args.algorithm.upper()))
        try:
            comps = kbpk.gather(args.components, args.algorithm, args.component_file or [],
                           custodians, _out)
            key = kbpk.combine(comps, args.algorithm)
        except kbpk.CeremonyRefused as exc:
            _say("refused: %s; %s" % (exc, nothing))
            return 2
        names = [custodians[i] if i < len(custodians) else "custodian %d" % (i + 1)
                 for i in range(args.components)]
        kcv = tr31.kcv(key, args.algorithm)
        if args.expect_kcv and not kcv.startswith(args.expect_kcv.upper()):
            _say("refused: the components make a KBPK of KCV %s, not %s: a component was "
                 "typed wrong, or is not of this key; %s" % (kcv, args.expect_kcv.upper(),
                                                           nothing))
            return 2
        try:
            old = kbpk.read(keys)
        except Exception:
            old = None
        doc = kbpk.write(keys, args.algorithm, key, names)
        from tools.cli import _qr_audit
        unaudited = _qr_audit(data_dir, "kbpk_loaded", "%s KCV %s, %d components (%s)%s"
                              % (args.algorithm.upper(), kcv, len(names), ", ".join(names),
                                 "; replaces KCV %s" % old["kcv"] if old else ""), keys)
        if unaudited and "no store yet" not in unaudited:
            _say("not in the audit trail: %s" % unaudited)
        _out("handpos keys: KBPK loaded: %s, KCV %s, sealed in %s%s; the custodians destroy "
             "their component copies now (docs/key-ceremony.md)"
             % (args.algorithm.upper(), doc["kcv"], kbpk.sealed(keys).path,
                "; replaces KCV %s" % old["kcv"] if old else ""))
        return 0
    finally:
        for lock in held:
            lock.close()
