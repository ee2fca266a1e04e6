"""What keeping keys at rest costs (issue 11): `python -m tools.bench.keys [--quick]`.

1. The DUKPT state after each counter step (one PIN), two ways of keeping a used key
   off the card (docs/keys.md says which the terminal uses and why):
     sealed file   the state AES-GCM sealed into a small file, written to a temporary
                   file, fsync, rename, fsync of the folder (drivers/keystore.py)
     secure sqlite the state in handpos.db's settings with PRAGMA secure_delete=ON and
                   a WAL checkpoint (TRUNCATE) after each step, so no old page image
                   with a used key stays in the WAL or in free space
   and, for reference, what releases before the key root paid: a plain settings
   UPDATE (which left every used key in the WAL and in free pages).
   After each run the files are searched for the used keys: a way that leaves one is
   reported as leaking, whatever it costs.
2. An operator login: the PIN hash, PBKDF2 20,000 (the portable one) against scrypt
   N=2^14 r=8 with the pepper (the device's).
3. A start: opening the key root and unwrapping the keys.

Medians (and p90) of wall time in ms, on the file system of the folder given (default:
a temporary folder; give one on the SD card to measure the card).
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from tools.bench import time_limit


def _median(xs):
    return statistics.median(xs)


def _p90(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.9))]


def _terminal(save):
    from firmware.security import dukpt
    bdk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    ksn = bytes.fromhex("FFFF9876543210E00000")
    return dukpt.DukptTerminal(dukpt.derive_ipek(bdk, ksn), ksn, save)


def _used_keys_left(folder, used):
    """How many of the used keys' hex strings are still in any file under folder."""
    found = 0
    blobs = []
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as f:
            blobs.append(f.read())
    for key in used:
        if any(key.encode() in b or bytes.fromhex(key) in b for b in blobs):
            found += 1
    return found


def _pins(term, n, pan="4111111111111111"):
    times = []
    used = set()
    for _ in range(n):
        before = [r for r in term.state()["registers"] if r]
        t0 = time.perf_counter()
        term.encrypt_pin(bytearray(b"1234"), pan)
        times.append((time.perf_counter() - t0) * 1000)
        after = set(r for r in term.state()["registers"] if r)
        used.update(r for r in before if r not in after)
    return times, used


def bench_dukpt_state(n, base):
    from drivers.keystore import SealedFile
    from drivers.store_sqlite import SQLiteStore
    out = {}

    folder = tempfile.mkdtemp(prefix="sealed-", dir=base)
    sealed = SealedFile(os.path.join(folder, "dukpt.state"), os.urandom(32), "dukpt state")
    times, used = _pins(_terminal(lambda st: sealed.write(json.dumps(st).encode())), n)
    out["sealed_file"] = {"median_ms": _median(times), "p90_ms": _p90(times),
                          "used_keys_left": _used_keys_left(folder, used), "used": len(used)}
    shutil.rmtree(folder)

    for label, secure in (("secure_sqlite", True), ("plain_sqlite", False)):
        folder = tempfile.mkdtemp(prefix=label + "-", dir=base)
        store = SQLiteStore(os.path.join(folder, "handpos.db"))
        if secure:
            store.db.execute("PRAGMA secure_delete=ON")

        def save(st, store=store, secure=secure):
            store.set_setting("dukpt.state", json.dumps(st))
            if secure:
                store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        times, used = _pins(_terminal(save), n)
        left = _used_keys_left(folder, used)        # while it runs: WAL included
        store.close()
        out[label] = {"median_ms": _median(times), "p90_ms": _p90(times),
                      "used_keys_left": left, "used": len(used)}
        shutil.rmtree(folder)
    return out


def bench_pin_hash(n):
    from drivers.pinhash import ScryptPepper
    from firmware.security.auth import ITERATIONS, pbkdf2_sha256
    salt = os.urandom(16)
    s = ScryptPepper(os.urandom(32))
    out = {}
    for label, fn in (("pbkdf2_20000", lambda: pbkdf2_sha256(b"2580", salt, ITERATIONS)),
                      ("scrypt_pepper_2^14", lambda: s.hash(b"2580", salt, s.cost))):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        out[label] = {"median_ms": _median(times), "p90_ms": _p90(times)}
    return out


def bench_key_open(n, base):
    from drivers.keyroot import open_root
    from drivers.keystore import KeyStore
    folder = tempfile.mkdtemp(prefix="keys-", dir=base)
    data = os.path.join(folder, "data")
    os.makedirs(data, mode=0o700)
    open_root({"kind": "file", "path": "root/root.key"}, data, create=True)
    KeyStore(os.path.join(data, "keys"), open_root({"kind": "file", "path": "root/root.key"},
                                                   data)).open(create=True)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        root = open_root({"kind": "file", "path": "root/root.key"}, data)
        KeyStore(os.path.join(data, "keys"), root).open()
        times.append((time.perf_counter() - t0) * 1000)
    shutil.rmtree(folder)
    return {"median_ms": _median(times), "p90_ms": _p90(times)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench.keys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--dir", default=None, help="the folder to measure in (the SD card)")
    args = parser.parse_args(argv)
    pins = 20 if args.quick else 300
    hashes = 3 if args.quick else 15
    print("keys at rest (issue 11): %s PINs, %s hashes, in %s"
          % (pins, hashes, args.dir or tempfile.gettempdir()))
    with time_limit(600, "the DUKPT state bench"):
        state = bench_dukpt_state(pins, args.dir)
    for label in ("sealed_file", "secure_sqlite", "plain_sqlite"):
        r = state[label]
        print("  dukpt state per PIN, %-14s median %7.2f ms  p90 %7.2f ms  used keys left "
              "on disk: %d of %d" % (label, r["median_ms"], r["p90_ms"], r["used_keys_left"],
                                     r["used"]))
    ratio = state["secure_sqlite"]["median_ms"] / state["sealed_file"]["median_ms"]
    print("  secure sqlite / sealed file: %.2fx" % ratio)
    with time_limit(300, "the PIN hash bench"):
        hashes_out = bench_pin_hash(hashes)
    for label, r in hashes_out.items():
        print("  operator PIN hash %-20s median %7.1f ms  p90 %7.1f ms"
              % (label, r["median_ms"], r["p90_ms"]))
    with time_limit(120, "the key open bench"):
        opened = bench_key_open(hashes * 4, args.dir)
    print("  key root + unwrap at start       median %7.2f ms  p90 %7.2f ms"
          % (opened["median_ms"], opened["p90_ms"]))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    from tools.bench import run_main
    sys.exit(run_main(main, name="bench.keys"))
